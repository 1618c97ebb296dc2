"""The report's system graph, drawn with matplotlib, and the drawing helpers every figure of
the report shares (see README, "Reading the report"); the search and history plots are in
`mu2net.plots`.

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


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def axis_labels(ax: Any, name: str, xlabel: str, ylabel: str, title: str) -> None:
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
    fig = new_figure(max(7.0, 1.6 + 0.55 * len(layout.positions)) + 2.6, 2.0 + 0.5 * tall)
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
    axis_labels(ax, "graph", "layer position (input \u2192 output)",
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
