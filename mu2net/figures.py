"""The report's figures, drawn with matplotlib: the system graph, the search of a cycle and the
history plots (see README, "Reading the report").

matplotlib is used without pyplot (`Figure` + its own canvas), so no GUI backend is ever
chosen and headless servers and KFP pods draw the same pictures. Every artist a test or a
reader needs to find carries a `gid`, which matplotlib writes as the SVG element's `id`:
`node-<component id>`, `path-<task>`, `<figure>-xlabel` / `<figure>-ylabel`. Hover text is
added as SVG `<title>` elements after saving (`to_svg`).

The graph's layout is computed here (`graph_layout`, pure data, tested without drawing):
x is the layer position, in the ViT's order; each distinct component is one node; with more
than `max_tasks` tasks, the tasks with the most accounted parameters keep their own line and
the rest are folded into one `others` group whose own components merge into one node per
position.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mu2net.errors import ConfigError
from mu2net.schema import ROOT_TASK, SystemView

MAX_TASKS = 12  # named lines in the graph; more tasks fold into "others"
OTHERS = "others"
ROOT_COLOR = "#b0b0b0"
OTHERS_COLOR = "#7f7f7f"
KINDS = ("root", "task", "adapter", "folded")
_MARKERS = {"root": "s", "task": "o", "adapter": "D", "folded": "h"}
_POSITION = re.compile(r"^(residual_adapter|encoderblock)_(\d+)$")
_FIXED = {"cls": 0, "embedding": 1, "posembed_input": 2, "encoder_norm": 10**6,
          "head": 10**6 + 1}


def position_key(name: str) -> tuple[int, str]:
    """Where a component sits in the ViT, input to output: cls, embedding, posembed_input,
    then per block i its adapter (if any) and encoderblock_i, then encoder_norm and head."""
    match = _POSITION.match(name)
    if match:
        return 3 + 2 * int(match.group(2)) + (match.group(1) == "encoderblock"), name
    return _FIXED.get(name, 10**6 - 1), name


@dataclass
class Node:
    key: str  # the component id, or "others/<position>" for a folded node
    position: int
    kind: str  # one of KINDS
    creator: str
    params: int
    users: list[str]
    y: float = 0.0
    members: int = 1  # components folded into this node


@dataclass
class Line:
    gid: str  # "path-<task>" or "path-others-<k>"
    label: str
    color: str
    nodes: list[str]  # node keys, one per position the path has
    tasks: list[str] = field(default_factory=list)


@dataclass
class Layout:
    positions: list[str]
    nodes: dict[str, Node]
    lines: list[Line]
    shown: list[str]  # tasks with their own line, in legend order
    folded: list[str]  # tasks in the "others" group

    @property
    def rows(self) -> list[str]:
        """Row labels, top (y = 0) to bottom."""
        return (["root"] + [t for t in self.shown if t != ROOT_TASK]
                + ([f"{OTHERS} ({len(self.folded)})"] if self.folded else []))


def _kind(name: str, creator: str) -> str:
    if creator == ROOT_TASK:
        return "root"
    return "adapter" if name.startswith("residual_adapter") else "task"


def task_colors(tasks: Sequence[str]) -> dict[str, str]:
    """A stable colour per task: tab10 up to 10 tasks, tab20 beyond."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab10" if len(tasks) <= 10 else "tab20"]
    return {t: to_hex(cmap(i % cmap.N)) for i, t in enumerate(tasks)}


def graph_layout(view: SystemView, max_tasks: int = MAX_TASKS) -> Layout:
    """Nodes and lines of the system graph of one version (no drawing)."""
    if max_tasks < 2:
        raise ConfigError(f"max_tasks={max_tasks} is invalid: expected at least 2 (one named "
                          "task and the others group)")
    paths = dict(view.paths) or {ROOT_TASK: view.root}
    ranked = sorted(paths, key=lambda t: (-view.accounted_params(paths[t])
                                          if t != ROOT_TASK else 0, t))
    if len(ranked) > max_tasks:
        shown, folded = sorted(ranked[:max_tasks - 1]), sorted(ranked[max_tasks - 1:])
    else:
        shown, folded = sorted(ranked), []
    users: dict[str, set[str]] = {}
    for task, path in paths.items():
        for c in path.components:
            users.setdefault(c.id, set()).add(task)
    positions = sorted({c.name for p in paths.values() for c in p.components}, key=position_key)
    index = {name: i for i, name in enumerate(positions)}
    named = set(shown)
    nodes: dict[str, Node] = {}

    def node_of(c: Any) -> str:
        """A folded task's own component (used by no shown task) merges per position."""
        if c.creator != ROOT_TASK and not users[c.id] & named:
            key = f"{OTHERS}/{c.name}"
            if key not in nodes:
                nodes[key] = Node(key, index[c.name], "folded", OTHERS, 0, [], members=0)
            node = nodes[key]
            if c.id not in node.users:  # `users` of a folded node lists its component ids
                node.users.append(c.id)
                node.params += c.num_params
                node.members += 1
            return key
        if c.id not in nodes:
            nodes[c.id] = Node(c.id, index[c.name], _kind(c.name, c.creator), c.creator,
                               c.num_params, sorted(users[c.id]))
        return c.id

    colors = task_colors(shown)
    lines = [Line(f"path-{t}", "root path (no task yet)" if t == ROOT_TASK else t,
                  ROOT_COLOR if t == ROOT_TASK else colors[t],
                  [node_of(c) for c in paths[t].components], [t]) for t in shown]
    patterns: dict[tuple[str, ...], list[str]] = {}
    for t in folded:
        patterns.setdefault(tuple(node_of(c) for c in paths[t].components), []).append(t)
    for k, (pattern, tasks) in enumerate(sorted(patterns.items(), key=lambda kv: -len(kv[1]))):
        lines.append(Line(f"path-{OTHERS}-{k}", f"{OTHERS} ({len(tasks)} tasks)", OTHERS_COLOR,
                          list(pattern), tasks))
    # y: one row per creator, like a subway map: the root's row on top, then each shown
    # task's row, then the others' row (a folded task's component that a shown task reuses
    # sits in that task's row); a second node in one row and column (a creator's
    # older component that another task still reuses) sits a little lower.
    rows = {t: -k for k, t in enumerate([ROOT_TASK] + [t for t in shown if t != ROOT_TASK])}
    taken: dict[tuple[int, int], int] = {}
    for node in sorted(nodes.values(), key=lambda n: (n.position, n.kind == "folded", n.key)):
        in_use = [rows[t] for t in shown if t in node.users]  # a folded task's, reused
        row = rows.get(node.creator, max(in_use) if in_use else -(len(shown) + 1))
        extra = taken.get((row, node.position), 0)
        taken[(row, node.position)] = extra + 1
        node.y = row - 0.35 * extra
    return Layout(positions, nodes, lines, shown, folded)


def _short(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def node_title(node: Node) -> str:
    """Hover text of a node."""
    if node.kind == "folded":
        return (f"{node.members} components of folded tasks at {node.key.split('/', 1)[1]}, "
                f"{node.params:,} parameters")
    return (f"{node.key}\ncreated by {node.creator} ({node.kind}), {node.params:,} parameters"
            f"\nused by {', '.join(node.users)}")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _labels(ax: Any, name: str, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels with ids `<name>-xlabel` / `<name>-ylabel` (the browser test finds them)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.xaxis.label.set_gid(f"{name}-xlabel")
    ax.yaxis.label.set_gid(f"{name}-ylabel")


def system_graph(view: SystemView, max_tasks: int = MAX_TASKS) -> tuple[Any, dict[str, str]]:
    """(figure, hover titles by gid): positions left to right, one node per distinct component
    (shape: root / task-owned / adapter / folded; face colour: its creator; area: its
    parameters), one coloured line per task through its path."""
    from matplotlib.lines import Line2D

    layout = graph_layout(view, max_tasks)
    tall = len(layout.rows)
    fig = _figure(max(7.0, 1.6 + 0.55 * len(layout.positions)) + 2.6, 2.0 + 0.5 * tall)
    ax = fig.add_subplot()
    creators = {line.tasks[0]: line.color for line in layout.lines if len(line.tasks) == 1
                and not line.gid.startswith(f"path-{OTHERS}-")}
    biggest = max((n.params for n in layout.nodes.values()), default=1) or 1
    titles: dict[str, str] = {}
    spread = min(0.25, 0.6 / max(len(layout.lines), 1))
    for k, line in enumerate(layout.lines):
        dy = (k - (len(layout.lines) - 1) / 2) * spread / 2
        xs = [layout.nodes[key].position for key in line.nodes]
        ys = [layout.nodes[key].y + dy for key in line.nodes]
        width = 2.0 if not line.gid.startswith(f"path-{OTHERS}") else \
            0.8 + 1.2 * math.log10(len(line.tasks))
        label = line.label if not line.gid.startswith(f"path-{OTHERS}-") else \
            f"{OTHERS} ({len(layout.folded)} tasks)" if line.gid == f"path-{OTHERS}-0" \
            else "_nolegend_"
        (artist,) = ax.plot(xs, ys, color=line.color, lw=width, alpha=0.85, zorder=2,
                            label=label)
        artist.set_gid(line.gid)
        titles[line.gid] = f"{line.label}: {len(line.nodes)} components" + (
            f" ({', '.join(line.tasks)})" if len(line.tasks) > 1 else "")
    for node in layout.nodes.values():
        face = ROOT_COLOR if node.kind == "root" else OTHERS_COLOR if node.kind == "folded" \
            else creators.get(node.creator, OTHERS_COLOR)
        size = 6 + 16 * math.sqrt(node.params / biggest)
        (artist,) = ax.plot([node.position], [node.y], marker=_MARKERS[node.kind], ms=size,
                            mfc=face, mec="black", mew=0.8, ls="none", zorder=3)
        artist.set_gid(f"node-{node.key}")
        titles[f"node-{node.key}"] = node_title(node)
        if len(layout.nodes) <= 80:
            ax.annotate(_short(node.params), (node.position, node.y), xytext=(0, -size / 2 - 7),
                        textcoords="offset points", ha="center", fontsize=7, color="#333")
    ax.set_xticks(range(len(layout.positions)), layout.positions, rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks([-k for k in range(tall)], layout.rows, fontsize=8)
    ax.set_xlim(-0.6, len(layout.positions) - 0.4)
    ax.set_ylim(-tall + 0.3, 0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    _labels(ax, "graph", "layer position (input \u2192 output)",
            "created by", f"System graph of version {view.number}: "
            f"{len(view.paths)} tasks, {len(layout.nodes)} nodes")
    kinds = [Line2D([], [], marker=_MARKERS[k], ls="none", mfc="white", mec="black", ms=8,
                    label={"root": "root component (frozen)",
                           "task": "task-created component",
                           "adapter": "residual adapter",
                           "folded": "folded tasks' own components"}[k])
             for k in KINDS if any(n.kind == k for n in layout.nodes.values())]
    handles, _ = ax.get_legend_handles_labels()
    legend = ax.legend(handles=handles + kinds, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       fontsize=8, title="task path (colour = creator)", title_fontsize=8,
                       frameon=False)
    legend.set_gid("graph-legend")
    return fig, titles


# === search =================================================================================


def search_figure(record: Mapping[str, Any], task: str, version: int) -> Any:
    """Score of every child against its generation (kept children filled, the kept front as a
    step line) and the mean learned mutation probability of each action per generation."""
    name = f"search-v{version}"
    fig = _figure(11.0, 3.6)
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
    _labels(left, f"{name}-score", "generation", "score (validation accuracy, penalised)",
            f"{task}, cycle {record.get('cycle', 0) + 1}: {len(children)} children")
    _legend(left, fontsize=7, loc="lower right")
    mu = record.get("mu", [])
    actions = sorted({a for m in mu for a in m})
    varying = sorted(actions, key=lambda a: -_spread([m.get(a) for m in mu]))[:8]
    for a in varying:
        right.plot(range(len(mu)), [m.get(a) for m in mu], marker="o", ms=3, label=a)
    right.set_xticks(range(len(mu)) or [0])
    _labels(right, f"{name}-mu", "generation", "mutation probability \u03bc",
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


def accuracy_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Test accuracy of each task against the version (a point where a cycle committed it)."""
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot()
    tasks = sorted({t for r in rows for t in r.get("accuracies", {})})
    colors = task_colors(tasks)
    many = len(tasks) > 10
    for t in tasks:
        pts = [(r["version"], r["accuracies"][t]) for r in rows
               if r.get("accuracies", {}).get(t) is not None]
        changed = [(r["version"], r["accuracies"][t]) for r in rows if r.get("task") == t
                   and r.get("accuracies", {}).get(t) is not None]
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
                ls="--", drawstyle="steps-post", label=f"mean over tasks ({len(tasks)})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    _labels(ax, "accuracy", "system version", "test accuracy (fraction correct)",
            "Test accuracy per task (dots: a cycle of that task committed)")
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def params_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """System parameters against the number of tasks, beside the sum of the tasks' separate
    models (each task's full path counted on its own: fine-tuning a copy per task)."""
    fig = _figure(7.5, 3.6)
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
    _labels(ax, "params", "number of tasks", f"parameters ({unit})",
            "Parameters as tasks are added")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def method_figure(doc: Mapping[str, Any]) -> Any:
    """Mean test accuracy at the version read, per method version (bars, with task counts)."""
    fig = _figure(7.5, 3.0)
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
    _labels(ax, "methods", "method version", "mean test accuracy",
            f"Mean test accuracy per method version (version {doc.get('version')})")
    ax.legend(fontsize=8, loc="lower right")
    return fig


# === output =================================================================================


_SVG_START = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def to_svg(fig: Any, titles: Mapping[str, str] | None = None) -> str:
    """The figure as an inline `<svg>` element (no XML prolog, no metadata, text as text),
    with a `<title>` (hover text) in each element named in `titles`."""
    import matplotlib as mpl

    buf = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mu2net"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = _METADATA.sub("", _SVG_START.sub("", buf.getvalue(), count=1))
    for gid, title in (titles or {}).items():
        tag = f'<g id="{html.escape(gid, quote=True)}">'
        text = text.replace(tag, f"{tag}<title>{html.escape(title)}</title>", 1)
    return text


def to_png(fig: Any, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
