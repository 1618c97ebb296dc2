"""Two `quality_vs_finetune.py` runs side by side, paired by seed: what changing one thing (the
root, a search flag) did to each method both ran.

For every method in both runs: the mean test accuracy over tasks per seed in each run, the
paired difference (OTHER - BASE) with its 95 % t-interval over seeds, per-task differences,
and the deployed size. Fine-tuning rows kept by different lr sweeps are not comparable by test
accuracy, so the validation accuracy of each lr both sweeps trained is compared as well.

Run: .venv/bin/python benchmarks/recipe/compare_quality_runs.py BASE.json OTHER.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import mean_ci  # noqa: E402
from quality.summary import accuracies, deployed_params, methods_of, select  # noqa: E402


def seed_accuracies(data: dict, method: str, task: str | None = None) -> dict[int, float]:
    """Seed -> test accuracy (mean over tasks, or one task)."""
    return dict(zip(data["seeds"], accuracies(data, method, task)))


def paired(base: dict, other: dict, method: str, task: str | None = None) -> list[float]:
    """OTHER - BASE per seed both ran (mean over tasks, or one task), in points."""
    a, b = seed_accuracies(base, method, task), seed_accuracies(other, method, task)
    return [100 * (b[s] - a[s]) for s in base["seeds"] if s in other["seeds"]]


def sweep_validations(data: dict, method: str) -> dict[tuple[int, str, str], float]:
    """(seed, task, lr) -> validation accuracy of every run of the method's lr sweeps."""
    return {(r["seed"], r["task"], lr): run["validation_accuracy"]
            for r in select(data["rows"], method=method)
            for lr, run in (r.get("sweep") or {}).items()}


def compare(base: dict, other: dict) -> list[str]:
    """The comparison's lines."""
    tasks = [t for t in base["tasks"] if t in other["tasks"]]
    seeds = [s for s in base["seeds"] if s in other["seeds"]]
    lines = [f"base:  {base['header']['command']} (revision {base['header']['revision']})",
             f"other: {other['header']['command']} (revision {other['header']['revision']})",
             f"roots: {base['root'].get('examples')} / {other['root'].get('examples')} "
             f"pretraining examples, test accuracy {base['root'].get('test_accuracy')} / "
             f"{other['root'].get('test_accuracy')}", f"seeds {seeds}, tasks {tasks}", ""]
    for method in [m for m in methods_of(base) if m in methods_of(other)]:
        diff = paired(base, other, method)
        mean, half = mean_ci(diff)
        sizes = [statistics.fmean(deployed_params(d, method, s) for s in seeds)
                 for d in (base, other)]
        per_seed = " ".join(f"{d:+.2f}" for d in diff)
        acc = [100 * statistics.fmean(seed_accuracies(d, method)[s] for s in seeds)
               for d in (base, other)]
        lines.append(f"{method}: {acc[0]:.2f} -> {acc[1]:.2f} %, paired {mean:+.2f} "
                     f"(95 % CI {mean - half:+.2f} to {mean + half:+.2f}; per seed "
                     f"{per_seed}); deployed {sizes[0] / 1e3:.0f}k -> {sizes[1] / 1e3:.0f}k")
        lines.append("  per task: " + ", ".join(
            f"{t} {statistics.fmean(paired(base, other, method, t)):+.1f}" for t in tasks))
        old, new = sweep_validations(base, method), sweep_validations(other, method)
        old_lrs, new_lrs = (sorted({k[2] for k in d}, key=float) for d in (old, new))
        if old_lrs != new_lrs:
            lines.append(f"  lr sweeps differ ({old_lrs} / {new_lrs}): the test accuracies "
                         "above are each sweep's pick; compare the validations at a shared lr")
        for lr in [lr for lr in old_lrs if lr in new_lrs]:
            keys = [(s, t, lr) for s in seeds for t in tasks
                    if (s, t, lr) in old and (s, t, lr) in new]
            if keys:
                delta = statistics.fmean(100 * (new[k] - old[k]) for k in keys)
                lines.append(f"  validation at lr {lr}: "
                             f"{100 * statistics.fmean(old[k] for k in keys):.2f} -> "
                             f"{100 * statistics.fmean(new[k] for k in keys):.2f} % "
                             f"({delta:+.2f}, {len(keys)} runs)")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit(f"usage: {os.path.basename(__file__)} BASE.json OTHER.json, got {args}")
    base, other = (json.load(open(path)) for path in args)
    print("\n".join(compare(base, other)))


if __name__ == "__main__":
    main()
