"""The system's status: the pinned `status` JSON and the terminal tables of `mu2net status`.

`status_dict` is a pinned format (README, `mu2net status --json`):

    {"version": N,                      # the head
     "run": {"run_id", "committed_at", "code_version", "kfp_run_id"},  # mu2net.history.run_info
     "method_versions": {MV: [TASK, ...]},  # tasks whose published path each method version made
     "total_params": N,                 # distinct components of all task paths (v0: the root's)
     "tasks": {NAME: {"test_accuracy": x, "validation_accuracy": x, "score": x,
                      "accounted_params": N, "accounted_params_exact": x,
                      "flops": N, "method_version": "m-...",
                      "components": [component id, ...]}}}

Accounted parameters amortise shared components over their users (docs/method.md §2.5), so
a change of one task can change another's: `accounted_params` is rounded, `_exact` the fraction.

Scores and accounted parameters are computed from the version read, never stored. A path's
score needs the score constants it was judged by: each path document records them
(`score_constants`), so a config edited later or a config file never loses a score. Paths
written before the constants were recorded (the old format) take them from the named config
with the path's method version; such an old path whose method version no named config has any
more gets `"score": null`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from mu2net.config import CONFIG_NAMES, Config, get_config
from mu2net.errors import StoreError
from mu2net.history import run_info, run_text
from mu2net.schema import ROOT_TASK, Path, SystemView


def config_for_method(method_version: str) -> Config | None:
    """The named config whose method version this is, if any (hashing the named configs once
    per process: the status asks for every task)."""
    return _named_methods().get(method_version)


@functools.cache
def _named_methods() -> dict[str, Config]:
    out: dict[str, Config] = {}
    for name in reversed(CONFIG_NAMES):  # the first name wins, as the loop it replaces did
        config = get_config(name)
        out[config.method_version] = config
    return out


def path_flops(path: Path) -> int:
    from mu2net.predict import arch_from_path
    from mu2net.scoring import forward_flops

    if "flops" in path.metrics:
        return int(path.metrics["flops"])
    return int(forward_flops(arch_from_path(path), path.hparams))


def path_entry(path: Path, view: SystemView) -> dict[str, Any]:
    """One task's line of the status JSON."""
    from mu2net.scoring import path_score_config, score_value

    constants = path_score_config(path)
    accounted = view.accounted_params(path)
    flops = path_flops(path)
    val = path.metrics.get("validation_accuracy")
    score = None
    if constants is not None and val is not None:
        score = score_value(float(val), accounted, flops, constants)
    return {"test_accuracy": _float(path.metrics.get("test_accuracy")),
            "validation_accuracy": _float(val), "score": _float(score),
            "accounted_params": round(accounted), "accounted_params_exact": float(accounted),
            "flops": flops,
            "method_version": path.method_version,
            "components": list(path.component_ids)}


def _float(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def status_dict(store: Any, version: int | None = None) -> dict[str, Any]:
    """The pinned status document of a version (default: the head)."""
    number = store.head() if version is None else version
    if number is None:
        raise StoreError(f"store {store.uri!r} is empty: create version 0 with `mu2net init`")
    view = store.load_system(number)
    tasks = {name: path_entry(path, view) for name, path in sorted(view.paths.items())}
    methods: dict[str, list[str]] = {}
    for name, entry in tasks.items():
        methods.setdefault(entry["method_version"], []).append(name)
    return {"version": view.number, "run": run_info(view.version.provenance),
            "method_versions": dict(sorted(methods.items())),
            "total_params": deployed_params(view), "tasks": tasks}


def deployed_params(view: SystemView) -> int:
    """Parameters of the deployed set: every distinct component of every task path; with no
    task yet (version 0), the root path's (the model the first task starts from)."""
    return view.total_params() if view.paths else view.root.num_params


def status_text(doc: Mapping[str, Any]) -> str:
    """A human table of the status document."""
    run, where = doc.get("run") or {}, "in task paths" if doc["tasks"] else "in the root"
    lines = [f"version {doc['version']}: {len(doc['tasks'])} tasks, "
             f"{doc['total_params']:,} parameters {where}"]
    lines.append(run_text(run))
    header = f"{'task':<24} {'test acc':>8} {'val acc':>8} {'score':>8} " \
             f"{'accounted params':>16} {'MFLOPs':>9}  method"
    lines.append(header)
    for name, t in doc["tasks"].items():
        lines.append(f"{name:<24} {_fmt(t['test_accuracy'])} {_fmt(t['validation_accuracy'])} "
                     f"{_fmt(t['score'])} {t['accounted_params']:>16,} "
                     f"{t['flops'] / 1e6:>9.2f}  {t['method_version']}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return f"{'-':>8}" if x is None else f"{x:>8.4f}"


# === paths for terminals ====================================================================

MARKERS = {"root": "R", "other": "S", "own": "O", "adapter": "A"}


def paths_text(view: SystemView) -> str:
    """Per task one line: per layer position a marker and the component's blob prefix
    (R root, S another task's, O its own, A its own adapter; `.`: not in the path)."""
    from mu2net.figures import position_key

    positions = sorted({c.name for p in view.paths.values() for c in p.components},
                       key=position_key)
    short = {name: name.replace("encoderblock_", "b").replace("residual_adapter_", "a")
             .replace("posembed_input", "pos").replace("embedding", "emb")
             .replace("encoder_norm", "norm") for name in positions}
    width = max((len(t) for t in view.paths), default=4)
    lines = [f"paths of version {view.number} (R root, S another task's frozen, O own, "
             "A own adapter; then the blob's first 4 hex digits)",
             f"{'task':<{width}}  " + " ".join(f"{short[n]:<5}" for n in positions)]
    for task, path in sorted(view.paths.items()):
        by_name = {c.name: c for c in path.components}
        cells = []
        for name in positions:
            c = by_name.get(name)
            if c is None:
                cells.append(f"{'.':<5}")
                continue
            kind = ("root" if c.creator == ROOT_TASK else "other" if c.creator != task
                    else "adapter" if name.startswith("residual_adapter") else "own")
            cells.append(MARKERS[kind] + c.blob[:4])
        lines.append(f"{task:<{width}}  " + " ".join(cells))
    return "\n".join(lines)
