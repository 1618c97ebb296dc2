"""The report's plots of a cycle's search and of the system's history (test accuracy and
parameters per version, accuracy per method version), drawn from history rows and search
records (see README, "Reading the report").

They are charts of numbers, kept apart from the system graph and its layout in
`mu2net.figures`, whose figure, axis-label and colour helpers they share so every figure of
the report looks and is tagged alike (`<figure>-xlabel` / `<figure>-ylabel` gids).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mu2net.figures import axis_labels, new_figure, task_colors
from mu2net.hparams import mutation_label

# === search =================================================================================


def search_figure(record: Mapping[str, Any], task: str, version: int) -> Any:
    """Score of every child against its generation (kept children filled, the kept front as a
    step line) and the mean learned mutation probability of each action per generation."""
    name = f"search-v{version}"
    fig = new_figure(11.0, 3.6)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.25])
    children = record.get("children", [])
    colors = {"self": "#1f77b4", "other": "#ff7f0e", "root": "#7f7f7f"}
    width = max([1, *(c[1] for c in children)])  # children of a generation spread apart
    for kind, color in colors.items():
        for kept in (True, False):
            pts = [(c[0] + 0.3 * (c[1] / width - 0.5), c[6]) for c in children
                   if c[2] == kind and c[7] == kept and c[6] is not None]
            if pts:
                left.scatter([p[0] for p in pts], [p[1] for p in pts], s=36, color=color,
                             facecolors=color if kept else "none", zorder=3,
                             label=f"parent: {kind}, {'kept' if kept else 'rejected'}")
    start = record.get("start_score")
    front, best = [], -math.inf if start is None else float(start)
    generations = sorted({c[0] for c in children})
    if start is not None:
        left.axhline(start, color="black", lw=0.8, ls=":", label="own path at the start")
    for g in generations:
        kept = [c[6] for c in children if c[0] == g and c[7] and c[6] is not None]
        best = max([best, *kept])
        front.append(best if math.isfinite(best) else None)
    pts = [(g, v) for g, v in zip(generations, front) if v is not None]
    if pts:
        left.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="black",
                  lw=1.5, label="kept front (best so far)")
    left.set_xticks(generations or [0])
    axis_labels(left, f"{name}-score", "generation", "score (validation accuracy, penalised)",
                f"{task}, cycle {record.get('cycle', 0) + 1}: {len(children)} children")
    # beside the axes, never over a point (a legend inside covered the best children)
    _legend(left, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    mu = record.get("mu", [])
    actions = sorted({a for m in mu for a in m})
    varying = sorted(actions, key=lambda a: -_spread([m.get(a) for m in mu]))[:8]
    for a in varying:
        right.plot(range(len(mu)), [m.get(a) for m in mu], marker="o", ms=3,
                   label=mutation_label(a))
    right.set_xticks(range(len(mu)) or [0])
    axis_labels(right, f"{name}-mu", "generation", "mutation probability \u03bc",
                f"learned \u03bc per action ({len(varying)} of {len(actions)} shown)")
    if varying:
        right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend, or a note that there is nothing to plot yet."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        ax.text(0.5, 0.5, "nothing committed yet", transform=ax.transAxes, ha="center",
                color="#777")


def _spread(values: Sequence[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return (max(vals) - min(vals) + 1e-6 * max(vals)) if vals else -1.0


# === history ================================================================================


ACCURACY_LINES = 30  # task lines in the accuracy history; the mean line covers every task


def accuracy_figure(rows: Sequence[Mapping[str, Any]], mean_of: int | None = None) -> Any:
    """Test accuracy of each task against the version (a point where a cycle committed it).
    At most `ACCURACY_LINES` tasks get a line (those committed most recently), so the figure
    stays readable and its size bounded at any number of tasks; the mean covers them all
    (`mean_of`: how many tasks it covers when the rows hold fewer, as the run's page does)."""
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    every = {t for r in rows for t in r.get("accuracies", {})}
    recent: list[str] = []
    for r in reversed(rows):  # newest first: the tasks the latest cycles touched
        if r.get("task") in every and r["task"] not in recent:
            recent.append(r["task"])
        if len(recent) >= ACCURACY_LINES:
            break
    tasks = sorted(recent) if len(every) > ACCURACY_LINES else sorted(every)
    colors = task_colors(tasks)
    many = len(tasks) > 10
    pts_of: dict[str, list[tuple[int, float]]] = {t: [] for t in tasks}
    changed_of: dict[str, list[tuple[int, float]]] = {t: [] for t in tasks}
    for r in rows:  # one pass over the rows, whatever the number of tasks
        accs = r.get("accuracies", {})
        for t in tasks:
            if accs.get(t) is not None:
                pts_of[t].append((r["version"], accs[t]))
                if r.get("task") == t:
                    changed_of[t].append((r["version"], accs[t]))
    for t in tasks:
        pts, changed = pts_of[t], changed_of[t]
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], drawstyle="steps-post",
                          color="#999" if many else colors[t], lw=0.8 if many else 1.6,
                          label=None if many else t)
        line.set_gid(f"accuracy-{t}")
        ax.plot([p[0] for p in changed], [p[1] for p in changed], "o", ms=3,
                color=line.get_color())
    mean = [(r["version"], r["mean_test_accuracy"]) for r in rows
            if r.get("mean_test_accuracy") is not None]
    if mean:
        ax.plot([p[0] for p in mean], [p[1] for p in mean], color="black", lw=2.2,
                ls="--", drawstyle="steps-post",
                label=f"mean over tasks ({mean_of if mean_of is not None else len(every)})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    axis_labels(ax, "accuracy", "system version", "test accuracy (fraction correct)",
                "Test accuracy per task (dots: a cycle of that task committed)")
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def params_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """System parameters against the number of tasks, beside the sum of the tasks' separate
    models (each task's full path counted on its own: fine-tuning a copy per task)."""
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    xs = [r["tasks"] for r in rows]
    top = max([1, *(max(r["total_params"], r.get("separate_params", 0)) for r in rows)])
    scale, unit = (1e6, "millions") if top >= 1e6 else (1e3, "thousands") if top >= 1e3 \
        else (1.0, "count")
    ax.plot(xs, [r["total_params"] / scale for r in rows], "o-", color="#d62728",
            label="this system (distinct components)")
    ax.plot(xs, [r.get("separate_params", 0) / scale for r in rows], "s--", color="#555",
            label="separately fine-tuned models (sum)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    axis_labels(ax, "params", "number of tasks", f"parameters ({unit})",
                "Parameters as tasks are added")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def method_figure(doc: Mapping[str, Any]) -> Any:
    """Mean test accuracy at the version read, per method version (bars, with task counts)."""
    fig = new_figure(7.5, 3.0)
    ax = fig.add_subplot()
    methods = sorted(doc.get("method_versions", {}))
    means, counts = [], []
    for mv in methods:
        accs = [doc["tasks"][n]["test_accuracy"] for n in doc["method_versions"][mv]
                if doc["tasks"][n]["test_accuracy"] is not None]
        means.append(sum(accs) / len(accs) if accs else 0.0)
        counts.append(len(doc["method_versions"][mv]))
    bars = ax.bar(range(len(methods)), means, color="#1f77b4", label="mean test accuracy")
    for bar, n in zip(bars, counts):
        ax.annotate(f"{n} tasks", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, fontsize=8)
    ax.set_ylim(0, 1.05)
    axis_labels(ax, "methods", "method version", "mean test accuracy",
                f"Mean test accuracy per method version (version {doc.get('version')})")
    ax.legend(fontsize=8, loc="lower right")
    return fig
