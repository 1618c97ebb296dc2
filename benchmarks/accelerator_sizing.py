"""Sizing the accelerator configs from the FLOPs and memory model (`mu2net.resources`), and the
bytes each pipeline step passes at the gpu config, with blob copies (before) and blob
references (now). Nothing is trained: shapes and budgets only, so it runs anywhere in seconds.

    .venv/bin/python benchmarks/accelerator_sizing.py [--out FILE.md]
    .venv/bin/python benchmarks/accelerator_sizing.py --smoke   # the same tables, a temp file
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mu2net import resources  # noqa: E402
from mu2net.blobs import STAGED_IN_STORE  # noqa: E402
from mu2net.config import Config, canonical_json, get_config  # noqa: E402
from mu2net.model import component_names, component_shapes  # noqa: E402
from mu2net.schema import ROOT_TASK, Component, Path  # noqa: E402
from mu2net.search_state import Candidate, SearchState  # noqa: E402
from mu2net.task_info import TaskInfo  # noqa: E402

GB = 1e9


def sizing_rows(config: Config, target: str, devices: int) -> list[str]:
    pool = config.placement.pool(target)
    rows = []
    for size in (224, 384):
        for precision in ("float32", "mixed_bfloat16"):
            hparams = {**resources.costliest_hparams(config), "ds_image_size": size}
            memory = resources.child_memory_bytes(config, hparams, devices=devices,
                                                  precision=precision)
            hours = (resources.child_flops(config, hparams)
                     / (resources.pool_tflops(pool, precision) * 1e12) / 3600)
            chosen = (precision == config.precision
                      and size in config.hparams.get("ds_image_size").values)
            rows.append(f"| {config.name} on {target} | {precision} | {size} | "
                        f"{memory['weights'] / GB:.1f} | {memory['optimizer'] / GB:.1f} | "
                        f"{memory['activations'] / GB:.1f} | **{memory['total'] / GB:.1f}** | "
                        f"{hours:.1f} | {'yes' if chosen else ''} |")
    return rows


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _path(config: Config, task: str, cloned: int, index: int) -> Path:
    """A ViT-L path that owns its top `cloned` blocks, the encoder norm and the head."""
    hparams = {**config.hparams.defaults(), "num_classes": 100}
    names = component_names(hparams)
    owned = set(names[-2 - cloned:])
    comps = []
    for name in names:
        creator = task if name in owned else ROOT_TASK
        blob = _digest(creator, name, index if name in owned else 0)
        shapes = component_shapes(name, config.architecture, hparams)
        comps.append(Component(id=Component.make_id(creator, name, blob), name=name,
                               creator=creator, shapes=shapes, blob=blob))
    return Path(task=task, components=tuple(comps), hparams=hparams,
                method_version=config.method_version, parent=_digest("parent"),
                parent_task=ROOT_TASK, metrics={"validation_accuracy": 0.9})


def artifact_rows(config: Config, cloned: int) -> list[str]:
    """Bytes per step of one cycle in which every child is retained and owns `cloned` blocks."""
    search = config.search
    info = TaskInfo(name="task", source="tfds:task", num_classes=100,
                    class_names=tuple(f"c{i}" for i in range(100)),
                    split_sizes={"train": 50_000, "validation": 5_000, "test": 10_000},
                    image_shape=(224, 224, 3), content_hash=_digest("data"))
    population, staged = [], {}
    blob_bytes = {}
    children = search.children_per_generation * search.generations_per_cycle
    for index in range(children):
        path = _path(config, "task", cloned, index)
        population.append(Candidate(path, 0.9, 0))
        for comp in path.components:
            if comp.creator == "task":
                staged[comp.blob] = STAGED_IN_STORE
                blob_bytes[comp.blob] = 4 * comp.num_params  # float32 .npz, headers aside
    population = population[-search.population_cap:]
    kept = {c.blob for cand in population for c in cand.path.components if c.blob in staged}
    state = SearchState(task="task", task_info=info, config_name=config.name,
                        method_version=config.method_version, base_version=7, seed=0,
                        run_id="run", generation=search.generations_per_cycle,
                        population=tuple(population),
                        staged_blobs={b: STAGED_IN_STORE for b in kept})
    state_json = len(state.to_json().encode())
    last = population[-1].path
    new_blobs = {c.blob: STAGED_IN_STORE for c in last.components if c.blob in staged}
    child_new = sum(blob_bytes[b] for b in new_blobs)
    # a result is the child's path, its new blobs by hash, its spec's hparams and metrics
    result_json = len(canonical_json({"path": last.to_dict(), "new_blobs": new_blobs,
                                      "hparams": dict(last.hparams),
                                      "metrics": {"validation_curve": [0.9] * 8}}).encode())
    staged_bytes = sum(blob_bytes[b] for b in kept)
    k = search.children_per_generation
    return [
        f"| plan / state artifact (written once per generation) | {staged_bytes / GB:.2f} GB "
        f"| {state_json / 1e3:.0f} kB |",
        f"| read by the generation's {k} children (plan) | {k * staged_bytes / GB:.2f} GB "
        f"| {k * state_json / 1e3:.0f} kB |",
        f"| result artifact of one retained child (JSON approx.) | {child_new / GB:.2f} GB "
        f"| {result_json / 1e3:.0f} kB |",
        f"| select reads {k} results + the plan | {(k * child_new + staged_bytes) / GB:.2f} GB "
        f"| {(k * result_json + state_json) / 1e3:.0f} kB |",
        f"| new blobs written to the store per child (staged once) | {child_new / GB:.2f} GB "
        f"(at commit) | {child_new / GB:.2f} GB |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="results file (default benchmarks/results/accelerator_sizing.md; "
                             "with --smoke a temporary file)")
    parser.add_argument("--smoke", action="store_true",
                        help="CI's check: the same tables (nothing is trained either way), "
                             "written to a temporary file so the results file is left alone")
    parser.add_argument("--cloned", type=int, default=12,
                        help="blocks each retained child owns in the artifact estimate")
    args = parser.parse_args()
    if args.out is None:
        args.out = (os.path.join(tempfile.mkdtemp(), "accelerator_sizing.md") if args.smoke
                    else "benchmarks/results/accelerator_sizing.md")
    gpu, tpu = get_config("gpu"), get_config("tpu")
    lines = ["# Accelerator sizing (modelled, not measured)", "",
             f"`{' '.join(['.venv/bin/python'] + sys.argv)}`", "",
             "Costliest child of each config (all 24 blocks trainable, batch "
             f"{gpu.search.batch_size}, {gpu.search.validations_per_child} x "
             f"{gpu.search.examples_between_validations:,} examples). Throughput: 24 % of the "
             "datasheet peak, as measured for the gpu child on an H200 "
             "(`accelerator_gpu_child.md`, which also measured 7.7 GB peak memory against "
             "the 8.1 GB modelled here; `mu2net/node_pools.py`). Memory in GB; hours of one "
             "child.", "",
             "| config | precision | px | weights | grads+momentum | activations | total | "
             "child h | chosen |", "|---|---|---:|---:|---:|---:|---:|---:|---|",
             *sizing_rows(gpu, "gpu", 1), *sizing_rows(tpu, "tpu", 4), ""]
    train, commit = resources.timed_pools(gpu, "gpu")
    lines += [f"Deadlines at the gpu config on one L4: child {train.timeout_s / 3600:.2f} h, "
              f"commit (test pass) {commit.timeout_s / 3600:.2f} h, lease "
              f"{resources.lease_ttl(gpu, 'gpu') / 3600:.1f} h (the fixed deadline was 6 h).", "",
              f"## Bytes per step at the gpu config ({args.cloned} owned blocks per child, "
              "every child retained)", "",
              "| step | blob copies (before) | blob references (now) |", "|---|---:|---:|",
              *artifact_rows(gpu, args.cloned), ""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
