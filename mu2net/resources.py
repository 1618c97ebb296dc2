"""What a pipeline step needs, from the config's budget: pod deadlines, the whole run's
deadline, the run's lease and a child's accelerator memory. Fixed hours would either kill a
ViT-L child that is still training or leave a hung CPU pod holding its node for six hours.

A child's work is known before it runs (docs/method.md §5.1): `validations_per_child` x
`examples_between_validations` training examples, each a forward and a backward pass (3
forward passes' FLOPs, `scoring.forward_flops`), plus one validation pass of
`validation_examples` per validation. It is sized at the costliest path the hparam space
allows (deepest, largest image, adapters everywhere), so every child of the config fits.
Time is FLOPs over the pool's sustained throughput (`NodePool.sustained_tflops`, per
precision), times `SAFETY`, plus `STARTUP_S` (image pull, data, tracing).

Memory (one device, no activation recomputation): float32 weights of the whole path, float32
gradients and momentum of its trainable part, a bfloat16 copy of the weights under mixed
precision, and the encoder's activations, s*b*h*(34 + 5*a*s/h) bytes per block at 16 bits
(Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
§4.1), twice that in float32, with the batch split over data-parallel devices.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mu2net.config import Config, NodePool
from mu2net.model import component_names, component_size
from mu2net.scoring import forward_flops

TRAIN_PASSES = 3  # forward + backward of a training step, in forward passes
SAFETY = 2.0  # deadline = SAFETY x the modelled time + start-up
STARTUP_S = 900
MIN_DEADLINE_S = 1800
WHOLE_SPLIT_EXAMPLES = 100_000  # test-split size assumed where the config evaluates it whole
LEASE_MARGIN_S = 3600.0
# A run's time with pods Pending: nodes scaling up from zero for each generation and the
# commit (minutes each), image pulls; beyond it, the run ends (run_deadline_seconds).
PENDING_ALLOWANCE_S = 3600
RETRY_BACKOFF_S = 60  # the pipeline's default retry_backoff (pipelines/onboard_task.py)
INT32_MAX = 2**31 - 1  # KFP's PipelineConfig keeps the run deadline as an int32
NUM_CLASSES = 1000  # head size of the costliest path (ImageNet-1k)


def costliest_hparams(config: Config) -> dict[str, Any]:
    """The hparams of the most expensive path the config's search can produce."""
    hparams = dict(config.hparams.defaults())
    layers = int(config.architecture.max_layers)
    hparams.update(num_layers=layers, num_classes=NUM_CLASSES,
                   ds_image_size=max(config.hparams.get("ds_image_size").values))
    if config.search.mutate_adapters and "adapter_dim" in hparams:
        hparams.update(adapter_layers=list(range(layers)),
                       adapter_dim=max(config.hparams.get("adapter_dim").values))
    return hparams


def child_flops(config: Config, hparams: dict[str, Any] | None = None) -> float:
    """FLOPs of one child: its training examples and its validation passes."""
    search = config.search
    per_example = forward_flops(config.architecture, hparams or costliest_hparams(config))
    train = search.validations_per_child * search.examples_between_validations * TRAIN_PASSES
    evaluate = search.validations_per_child * search.validation_examples
    return float(per_example) * (train + evaluate)


def commit_flops(config: Config) -> float:
    """FLOPs of closing a cycle: the best path's one test-split pass."""
    examples = config.search.test_examples or WHOLE_SPLIT_EXAMPLES
    return float(forward_flops(config.architecture, costliest_hparams(config))) * examples


def pool_tflops(pool: NodePool, precision: str) -> float:
    throughput = dict(pool.sustained_tflops)
    if precision not in throughput:
        raise ValueError(f"node pool {pool.kind!r} has no sustained_tflops for precision "
                         f"{precision!r}; it lists {sorted(throughput)}")
    return float(throughput[precision])


def deadline_s(flops: float, pool: NodePool, precision: str) -> int:
    seconds = flops / (pool_tflops(pool, precision) * 1e12)
    return max(MIN_DEADLINE_S, int(math.ceil(SAFETY * seconds + STARTUP_S)))


def timed_pools(config: Config, target: str) -> tuple[NodePool, NodePool]:
    """(children's pool, commit's pool) of `target` with deadlines from the budget."""
    pool = config.placement.pool(target)
    train = deadline_s(child_flops(config), pool, config.precision)
    commit = deadline_s(commit_flops(config), pool, "float32")  # inference runs in float32
    return (dataclasses.replace(pool, timeout_s=train),
            dataclasses.replace(pool, timeout_s=commit))


def lease_ttl(config: Config, target: str) -> float:
    """The run's lease, renewed by every child and select and by the commit: long enough for
    a generation's children or the commit on `target`, retries included."""
    return max(pool.timeout_s * (pool.retries + 1)
               for pool in timed_pools(config, target)) + LEASE_MARGIN_S


def retry_backoffs_s(retries: int, backoff_s: float = RETRY_BACKOFF_S) -> float:
    """Argo's waits before `retries` retries: backoff, then doubling (placement's factor 2)."""
    return sum(backoff_s * 2 ** attempt for attempt in range(retries))


def light_step_count(config: Config) -> int:
    """Light steps on a run's critical path: ingest, start, plan and select per generation,
    report."""
    return 3 + 2 * int(config.search.generations_per_cycle)


def run_deadline_seconds(config: Config, target: str) -> int:
    """The whole run's bound (the Argo Workflow's activeDeadlineSeconds), from the budget.

    Generations run one after another; a generation's K children run in parallel (the
    pipeline's ParallelFor, and node pools sized to K), so each generation is bounded by one
    child's deadline. A child's deadline is already SAFETY x its modelled time, which leaves
    room for one preemption retry; its further retries are not added (the bound would reach
    days). Then the commit's deadline, every light step with all its retries and backoffs, and
    `PENDING_ALLOWANCE_S` for pods waiting on a node. A pod's own activeDeadlineSeconds counts
    only while it runs; this bound also ends a run whose pods stay Pending (an accelerator
    stock-out, a zero quota), so a `max_concurrency=1` schedule cannot stall silently.
    """
    train, commit = timed_pools(config, target)
    light = config.placement.light
    generations = int(config.search.generations_per_cycle)
    light_step = light.timeout_s * (light.retries + 1) + retry_backoffs_s(light.retries)
    total = (generations * train.timeout_s + commit.timeout_s
             + light_step_count(config) * light_step + PENDING_ALLOWANCE_S)
    return min(int(math.ceil(total)), INT32_MAX)


def path_params(config: Config, hparams: dict[str, Any]) -> int:
    return sum(component_size(name, config.architecture, hparams)
               for name in component_names(hparams))


def child_memory_bytes(config: Config, hparams: dict[str, Any], *, devices: int = 1,
                       precision: str | None = None) -> dict[str, float]:
    """Modelled accelerator memory of training one child with every component trainable."""
    arch = config.architecture
    precision = precision or config.precision
    params = path_params(config, hparams)
    tokens = (int(hparams["ds_image_size"]) // arch.patch_size) ** 2 + 1
    batch = config.search.batch_size / devices
    h, a, s = arch.hidden_size, arch.num_heads, tokens
    per_block = s * batch * h * (34 + 5 * a * s / h)  # bytes at 16 bits
    activations = per_block * int(hparams["num_layers"]) * (1 if precision != "float32" else 2)
    weights = 4 * params + (2 * params if precision != "float32" else 0)
    optimizer = 8 * params  # float32 gradients + momentum
    return {"params": float(params), "weights": float(weights), "optimizer": float(optimizer),
            "activations": float(activations),
            "total": float(weights + optimizer + activations)}
