"""The mu2Net+ score (docs/method.md §6.1) and the analytic FLOPs count it uses.

    score(path) = q * s ** (A / P_ref) * s ** (F / F_ref)

q is the path's validation accuracy, A its accounted parameters (docs/method.md §2.5, from the
system being read: a shared component's size is divided among the tasks using it), F the FLOPs
of one forward pass at batch 1 at the path's image size. With s < 1 the size and compute
penalties break ties in favour of sharing, fewer layers and lower resolution.

FLOPs convention: 2 x the multiply-accumulates of the matmuls, einsums and convolutions (patch
embedding, q/k/v/out projections, attention logits and weighted values, MLP, adapters, head on
the cls token). Layer norms, softmax, GELU, bias and position-embedding adds are not counted
(they are O(tokens x width), under 1 % of the total for any ViT). The paper measures F with
XLA's HLO cost analysis, which also counts 2 per MAC; for ViT-L/16 at 384 this convention
gives 3.82e11 (0.38 TFLOPs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from mu2net.config import ArchitectureConfig, ScoreConfig
from mu2net.errors import SchemaError
from mu2net.model import adapter_layers, grid_size
from mu2net.schema import Path, SystemView


def forward_flops(arch: ArchitectureConfig, hparams: Mapping[str, Any]) -> int:
    """FLOPs (2 x MACs) of one forward pass at batch 1 of a path with these hparams."""
    d, m, p, c = arch.hidden_size, arch.mlp_dim, arch.patch_size, arch.channels
    n = grid_size(int(hparams["ds_image_size"]), p) ** 2  # patches
    t = n + 1  # tokens incl. cls
    layers = int(hparams["num_layers"])
    macs = n * p * p * c * d  # patch embedding conv
    per_block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * m  # qkv+out, logits+values, MLP
    macs += layers * per_block
    adapters = [i for i in adapter_layers(hparams) if i < layers]
    if adapters:
        macs += len(adapters) * 2 * t * d * int(hparams["adapter_dim"])
    macs += d * int(hparams["num_classes"])  # head on the cls token
    return 2 * macs


def score_constants(config: ScoreConfig) -> dict[str, float]:
    """The constants a path is judged by, as recorded in its path document."""
    return {"scale": float(config.scale), "params_ref": float(config.params_ref),
            "flops_ref": float(config.flops_ref)}


def recorded_score_config(path: Path) -> ScoreConfig | None:
    """The `ScoreConfig` recorded in a path document, None for a path written before paths
    recorded it (a bad record is a `SchemaError`, never a silent default)."""
    if path.score_constants is None:
        return None
    try:
        return ScoreConfig(**{k: float(v) for k, v in path.score_constants.items()})
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"path of task {path.task!r} has invalid score_constants "
                          f"{dict(path.score_constants)!r}: {exc}") from None


def path_score_config(path: Path) -> ScoreConfig | None:
    """The score constants a path was judged by: recorded in the path; for a path of the old
    format (none recorded), the named config with its method version, if any."""
    from mu2net.status import config_for_method

    recorded = recorded_score_config(path)
    if recorded is not None:
        return recorded
    config = config_for_method(path.method_version)
    return None if config is None else config.score


def score_value(quality: float, accounted_params: float, flops: float,
                config: ScoreConfig) -> float:
    """q * s^(A/P_ref) * s^(F/F_ref). A quality of -inf (nothing measured) stays -inf."""
    if math.isinf(quality) and quality < 0:
        return -math.inf
    return (quality * config.scale ** (accounted_params / config.params_ref)
            * config.scale ** (flops / config.flops_ref))


def path_score(path: Path, system: SystemView, arch: ArchitectureConfig,
               config: ScoreConfig) -> float:
    """The score of a trained path, read against `system` (accounted params change as other
    tasks come to share its components)."""
    if "validation_accuracy" not in path.metrics:
        raise SchemaError(f"path of task {path.task!r} has no metrics.validation_accuracy to "
                          "score")
    return score_value(float(path.metrics["validation_accuracy"]),
                       system.accounted_params(path), forward_flops(arch, path.hparams),
                       config)


def config_scorer(config: Any) -> Callable[[Path, SystemView], float]:
    """The method's score for a `Config`, as the store's judge of same-task commit races:
    `open_store(uri, config=cfg)` or `store.commit(ext, scorer=config_scorer(cfg))`."""

    def score(path: Path, system: SystemView) -> float:
        return path_score(path, system, config.architecture, config.score)

    return score


def path_metrics(path: Path, view: SystemView, config: Any) -> dict[str, float]:
    """A committed path's dashboard numbers (finite scalars), read against a system version:
    its metrics, accounted and own params, FLOPs, and score."""
    from mu2net.tensorboard import finite_scalars

    metrics = finite_scalars(path.metrics)
    metrics["accounted_params"] = float(view.accounted_params(path))
    metrics["params"] = float(path.num_params)
    metrics["flops"] = float(forward_flops(config.architecture, path.hparams))
    if "validation_accuracy" in path.metrics:
        metrics["score"] = float(path_score(path, view, config.architecture, config.score))
    return metrics
