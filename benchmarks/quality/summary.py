"""What a run's JSON says: accuracies per seed, deployed sizes, the early-stopping record,
the parameter-matched points and the done-when checks. Reads the JSON of this version and of
the ones before it (no `finetune_equal`, top-k or adapter rows; no `stopped_early` per run)."""

from __future__ import annotations

import math
import os
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

MAX_MINUTES = 90
# every method's place in tables, before its parameter (top-k blocks, adapter size)
ORDER = ("mu2net", "finetune", "finetune_equal", "finetune_matched", "topk", "adapters",
         "probe", "scratch", "logreg")
NAMES = {"mu2net": "mu2Net+ (evolve)", "finetune": "fine-tuning (converged, lr sweep)",
         "finetune_equal": "fine-tuning (search's examples incl. its lr sweep)",
         "finetune_matched": "fine-tuning (search's examples)", "probe": "linear probe",
         "scratch": "from scratch", "logreg": "logistic regression (pixels)"}
SHORT = {"mu2net": "mu2Net+", "finetune": "FT", "finetune_equal": "FT equal",
         "finetune_matched": "FT matched", "probe": "probe", "scratch": "scratch",
         "logreg": "logreg"}
COLORS = {"mu2net": "tab:red", "finetune": "tab:blue", "finetune_equal": "tab:purple",
          "finetune_matched": "tab:cyan", "topk": "tab:brown", "adapters": "tab:olive",
          "probe": "tab:green", "scratch": "tab:orange", "logreg": "tab:gray"}
# fine-tuning that must converge: the whole model, the top k blocks, adapters
CONVERGED = ("finetune", "topk", "adapters")


def family(method: str) -> str:
    """`topk_2` -> `topk`, `adapters_32` -> `adapters`, others unchanged."""
    return method.rsplit("_", 1)[0] if method.rsplit("_", 1)[-1].isdigit() else method


def _parameter(method: str) -> int:
    return int(method.rsplit("_", 1)[1]) if family(method) != method else 0


def parameter_matched(method: str) -> bool:
    return family(method) in ("topk", "adapters")


def name(method: str) -> str:
    if family(method) == "topk":
        return f"top {_parameter(method)} block(s) + head fine-tuned (rest frozen)"
    if family(method) == "adapters":
        return f"residual adapters (dim {_parameter(method)}) + head on the frozen root"
    return NAMES[method]


def short(method: str) -> str:
    if family(method) == "topk":
        return f"top-{_parameter(method)}"
    if family(method) == "adapters":
        return f"adapt-{_parameter(method)}"
    return SHORT.get(method, method)


def methods_of(data: dict[str, Any]) -> list[str]:
    """The methods of a run, in table order."""
    found = {r["method"] for r in data["rows"]}
    return sorted(found, key=lambda m: (ORDER.index(family(m)), _parameter(m)))


def select(rows, **where) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def deployed_params(data: dict[str, Any], method: str, seed: int) -> int:
    """Parameters of the deployed set of all tasks, shared components counted once:
    mu2Net+ every distinct component of every task's path (`SystemView.total_params`); a
    baseline its frozen root components once (the same for every task) + each task's own."""
    rows = select(data["rows"], method=method, seed=seed)
    if method == "mu2net":
        return int(data["systems"][str(seed)]["total_params"])
    if rows and "shared_params" in rows[0]:
        return int(max(r["shared_params"] for r in rows) + sum(r["own_params"] for r in rows))
    if method == "probe":  # JSON before shared_params
        return int(data["root"]["backbone_params"] + sum(r["head_params"] for r in rows))
    return int(sum(r["params"] for r in rows))  # one whole model per task


def accuracies(data: dict[str, Any], method: str, task: str | None = None) -> list[float]:
    """Test accuracy per seed (of one task, or the mean over tasks)."""
    out = []
    for seed in data["seeds"]:
        rows = select(data["rows"], method=method, seed=seed)
        out.append(statistics.fmean(r["test_accuracy"] for r in rows
                                    if task is None or r["task"] == task))
    return out


def diffs(data: dict[str, Any], method: str, task: str | None = None) -> list[float]:
    """Paired (same seed) differences mu2Net+ - `method`."""
    return [a - b for a, b in zip(accuracies(data, "mu2net", task),
                                  accuracies(data, method, task), strict=True)]


def summary(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    n = len(data["seeds"])
    for method in methods_of(data):
        rows = select(data["rows"], method=method)
        out[method] = {"acc": accuracies(data, method),
                       "params": statistics.fmean(deployed_params(data, method, s)
                                                  for s in data["seeds"]),
                       "flops": statistics.fmean(r["flops"] for r in rows),
                       "examples": sum(r["examples"] for r in rows) / n,
                       "seconds": sum(r["seconds"] for r in rows) / n}
    return out


def runs(data: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """Every training run of `method` (each lr of each sweep of each task and seed):
    seed, task, lr, epochs trained, best epoch (None where the JSON predates it), cap, and
    whether early stopping ended it (before `stopped_early` was recorded: below the cap)."""
    cap_key = {"probe": "probe_max_epochs", "scratch": "scratch_max_epochs"}.get(
        family(method), "ft_max_epochs")
    cap = data["baselines"][cap_key]
    out = []
    for r in select(data["rows"], method=method):
        for lr, run in (r.get("sweep") or {}).items():
            kept = float(lr) == r["lr"]  # JSON before best_epoch: the kept run's is the row's
            out.append({"seed": r["seed"], "task": r["task"], "lr": lr,
                        "epochs": run["epochs"],
                        "best_epoch": run.get("best_epoch",
                                              r.get("best_validation") if kept else None),
                        "cap": cap, "stopped_early": run.get("stopped_early",
                                                             run["epochs"] < cap)})
    return out


def matched_method(data: dict[str, Any]) -> str | None:
    """The top-k baseline whose deployed size is nearest mu2Net+'s (None: no top-k rows)."""
    summ = summary(data)
    topk = [m for m in summ if family(m) == "topk"]
    if not topk or "mu2net" not in summ:
        return None
    return min(topk, key=lambda m: abs(summ[m]["params"] - summ["mu2net"]["params"]))


def front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The accuracy-versus-size front of (params, accuracy, method) points: those no other
    point beats with as few parameters or fewer, by size."""
    out: list[tuple[float, float, str]] = []
    for p in sorted(points, key=lambda q: (q[0], -q[1])):
        if not out or p[1] > out[-1][1]:
            out.append(p)
    return out


def seed_std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _convergence_check(data: dict[str, Any]) -> tuple[str, bool, str]:
    methods = [m for m in methods_of(data) if family(m) in CONVERGED]
    parts, capped = [], []
    for method in methods:
        done = runs(data, method)
        early = sum(r["stopped_early"] for r in done)
        parts.append(f"{short(method)} {early} of {len(done)}")
        capped += [f"{r['task']} s{r['seed']} {short(method)} lr {r['lr']}" for r in done
                   if not r["stopped_early"]]
    total = sum(len(runs(data, m)) for m in methods)
    numbers = "early-stopped: " + ", ".join(parts)
    if capped:
        numbers += f"; at the cap: {', '.join(capped[:6])}" + (
            f" and {len(capped) - 6} more" if len(capped) > 6 else "")
    return ("every fine-tuning run (whole model, top-k, adapters; every lr) ended by early "
            "stopping", total > 0 and not capped, numbers)


def _front_check(summ: dict[str, Any]) -> tuple[str, bool, str]:
    what = "mu2Net+ beats every parameter-matched baseline of equal or larger size"
    mu_params, mu_acc = summ["mu2net"]["params"], statistics.fmean(summ["mu2net"]["acc"])
    matched = [m for m in summ if parameter_matched(m)]
    if not matched:
        return what, False, "no parameter-matched baseline in this run"
    larger = [m for m in matched if summ[m]["params"] >= mu_params]
    beaten = all(mu_acc > statistics.fmean(summ[m]["acc"]) for m in larger)
    cells = ", ".join(f"{short(m)} {statistics.fmean(summ[m]['acc']) * 100:.1f} % at "
                      f"{summ[m]['params'] / mu_params:.2f}x" for m in matched)
    numbers = f"mu2Net+ {mu_acc * 100:.1f} %; {cells}"
    if not larger:
        numbers += "; none of equal or larger size in this run"
    return what, bool(larger) and beaten, numbers


def done_when(data: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's acceptance checks: (what, passed, the numbers)."""
    summ, tasks = summary(data), data["tasks"]
    missing = [m for m in ("finetune", "logreg") if m not in summ]
    if missing:  # a run of some baselines only (--baselines)
        return [(f"{m} in this run", False, "not run (--baselines)") for m in missing]
    mu = {t: statistics.fmean(accuracies(data, "mu2net", t)) for t in tasks}
    lr = {t: statistics.fmean(accuracies(data, "logreg", t)) for t in tasks}
    checks = [("every task: mu2Net+ > logreg", all(mu[t] > lr[t] for t in tasks),
               ", ".join(f"{t} {mu[t] * 100:.1f} vs {lr[t] * 100:.1f}" for t in tasks))]
    if "mnist_5k" in tasks:
        checks.append(("mnist_5k: mu2Net+ >= 95 %", mu["mnist_5k"] >= 0.95,
                       f"{mu['mnist_5k'] * 100:.1f} %"))
    else:
        checks.append(("mnist_5k: mu2Net+ >= 95 %", False, "mnist_5k not in this run"))
    m_mu, m_ft = statistics.fmean(summ["mu2net"]["acc"]), statistics.fmean(summ["finetune"]["acc"])
    mean, half = common.mean_ci(diffs(data, "finetune"))
    low = mean - half if math.isfinite(half) else -math.inf
    checks.append(("mu2Net+ mean >= fine-tuning mean and paired difference's 95 % CI lower "
                   "bound >= -1 point", m_mu >= m_ft and low >= -0.01,
                   f"{m_mu * 100:.1f} vs {m_ft * 100:.1f}; difference "
                   f"{mean * 100:+.1f}, CI lower bound {low * 100:+.1f}"))
    ratio = summ["mu2net"]["params"] / summ["finetune"]["params"]
    checks.append(("mu2Net+ deployed params <= 0.5 x fine-tuning's", ratio <= 0.5,
                   f"{summ['mu2net']['params']:,.0f} vs {summ['finetune']['params']:,.0f} "
                   f"({ratio:.2f}x)"))
    checks.append(_convergence_check(data))
    checks.append(_front_check(summ))
    std = {t: seed_std(accuracies(data, "mu2net", t)) for t in tasks}
    checks.append(("every task: mu2Net+ std across seeds <= 3 points",
                   len(data["seeds"]) > 1 and all(s <= 0.03 for s in std.values()),
                   ", ".join(f"{t} {s * 100:.1f}" for t, s in std.items())))
    minutes = data["total_seconds"] / 60
    checks.append((f"whole run <= {MAX_MINUTES} min", minutes <= MAX_MINUTES,
                   f"{minutes:.1f} min"))
    return checks
