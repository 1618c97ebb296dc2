"""What the system looks like: the pinned `status` JSON, the run summary (Markdown), the system
graph and history (HTML) and the committed path's confusion matrix, for the CLI and the
pipeline's dashboards in the Kubeflow UI.

`status_dict` is a pinned format (README, `mu2net status --json`):

    {"version": N,                      # the head
     "method_versions": {MV: [TASK, ...]},  # tasks whose published path each method version made
     "total_params": N,                 # distinct components over all task paths
     "tasks": {NAME: {"test_accuracy": x, "validation_accuracy": x, "score": x,
                      "accounted_params": x, "flops": N, "method_version": "m-...",
                      "components": [component id, ...]}}}

Scores and accounted parameters are computed from the version read, never stored. A path's
score needs its method's score constants: they come from the named config with that method
version; a path made by a method version no named config has any more gets `"score": null`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mu2net.config import CONFIG_NAMES, Config, get_config
from mu2net.errors import StoreError
from mu2net.schema import Path, SystemView

HISTORY_LIMIT = 500


def config_for_method(method_version: str) -> Config | None:
    """The named config whose method version this is, if any."""
    for name in CONFIG_NAMES:
        config = get_config(name)
        if config.method_version == method_version:
            return config
    return None


def path_flops(path: Path) -> int:
    from mu2net.predict import arch_from_path
    from mu2net.scoring import forward_flops

    if "flops" in path.metrics:
        return int(path.metrics["flops"])
    return int(forward_flops(arch_from_path(path), path.hparams))


def path_entry(path: Path, view: SystemView) -> dict[str, Any]:
    """One task's line of the status JSON."""
    from mu2net.scoring import score_value

    config = config_for_method(path.method_version)
    accounted = view.accounted_params(path)
    flops = path_flops(path)
    val = path.metrics.get("validation_accuracy")
    score = None
    if config is not None and val is not None:
        score = score_value(float(val), accounted, flops, config.score)
    return {"test_accuracy": _float(path.metrics.get("test_accuracy")),
            "validation_accuracy": _float(val), "score": _float(score),
            "accounted_params": accounted, "flops": flops,
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
    return {"version": view.number, "method_versions": dict(sorted(methods.items())),
            "total_params": view.total_params(), "tasks": tasks}


def status_text(doc: Mapping[str, Any]) -> str:
    """A human table of the status document."""
    lines = [f"version {doc['version']}: {len(doc['tasks'])} tasks, "
             f"{doc['total_params']:,} parameters in task paths"]
    header = f"{'task':<24} {'test acc':>8} {'val acc':>8} {'score':>8} {'acc.params':>11} " \
             f"{'MFLOPs':>9}  method"
    lines.append(header)
    for name, t in doc["tasks"].items():
        lines.append(f"{name:<24} {_fmt(t['test_accuracy'])} {_fmt(t['validation_accuracy'])} "
                     f"{_fmt(t['score'])} {t['accounted_params']:>11,.0f} "
                     f"{t['flops'] / 1e6:>9.2f}  {t['method_version']}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return f"{'-':>8}" if x is None else f"{x:>8.4f}"


# === confusion matrix =======================================================================


def confusion_matrix_of(store: Any, path: Path, task: Any, config: Config, *,
                        version: int | None = None) -> list[list[int]]:
    """The path's confusion matrix (rows: true class, columns: predicted) on the test split
    (the same examples `close_cycle` measured the test accuracy on)."""
    from mu2net.predict import path_logits

    images, labels = task.arrays("test")
    if config.search.test_examples:
        images = images[:config.search.test_examples]
        labels = labels[:config.search.test_examples]
    logits = path_logits(path, images, store, batch_size=config.search.batch_size)
    return confusion_matrix(labels, np.argmax(logits, axis=1), task.info.num_classes)


def confusion_matrix(labels: Sequence[int], predicted: Sequence[int], num_classes: int
                     ) -> list[list[int]]:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix.tolist()


# === run summary ============================================================================


def one_line(commit: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
    """`task: version N (new|existing) test 0.8123 val 0.8301 score 0.8299 ...`"""
    state = "committed" if commit.get("created") else "already committed"
    head = f"{commit['task']}: version {commit['version']} {state}"
    parts = []
    for key, label in (("test_accuracy", "test"), ("validation_accuracy", "val"),
                       ("score", "score")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.4f}")
    if "accounted_params" in metrics:
        parts.append(f"accounted params {metrics['accounted_params']:,.0f}")
    return head + (": " + ", ".join(parts) if parts else "")


def run_markdown(commit: Mapping[str, Any], metrics: Mapping[str, float], view: SystemView,
                 config: Config, confusion: Sequence[Sequence[int]]) -> str:
    path = view.paths[commit["task"]]
    reused = [c.id for c in path.components if c.creator != path.task]
    new = [c.id for c in path.components if c.creator == path.task]
    lines = [
        f"# {commit['task']}: system version {commit['version']}",
        "",
        f"Run `{commit['run_id']}` searched from base version {commit['base_version']} with "
        f"the `{config.name}` config (method version `{config.method_version}`); the commit "
        f"{'created' if commit.get('created') else 'found (retried run)'} version "
        f"{commit['version']}" + (f" after {commit['rebases']} rebase(s)"
                                  if commit.get("rebases") else "") + ".",
        "",
        "| metric | value |", "|---|---|",
    ]
    for key in sorted(metrics):
        value = metrics[key]
        lines.append(f"| {key} | {value:,.4f} |" if abs(value) < 1000 else
                     f"| {key} | {value:,.0f} |")
    total = sum(sum(row) for row in confusion)
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    lines += ["", f"Path: {len(path.components)} components, {len(new)} new "
              f"({', '.join(c.split('/')[1] for c in new) or 'none'}), {len(reused)} reused "
              "frozen from other tasks or the root.",
              "", f"Confusion matrix on {total} test examples: {correct} correct.", "",
              f"The system now has {len(view.paths)} tasks and {view.total_params():,} "
              "parameters in task paths."]
    return "\n".join(lines) + "\n"


# === system graph and history (HTML) ========================================================


def history_rows(store: Any, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """Per version, oldest first: the task it changed, its method version, mean test accuracy
    over the tasks and the total parameters of the task paths."""
    rows = []
    for version in reversed(store.versions(limit=limit)):
        view = store.load_system(version.number)
        accs = [float(p.metrics["test_accuracy"]) for p in view.paths.values()
                if "test_accuracy" in p.metrics]
        prov = version.provenance
        rows.append({"version": version.number, "task": prov.get("task", "(root)"),
                     "method_version": prov.get("method_version", ""),
                     "code_version": prov.get("code_version", ""),
                     "tasks": len(view.paths),
                     "mean_test_accuracy": float(np.mean(accs)) if accs else None,
                     "task_test_accuracy": (float(view.paths[prov["task"]].metrics.get(
                         "test_accuracy", float("nan"))) if prov.get("task") in view.paths
                         else None),
                     "total_params": view.total_params()})
    return rows


def sharing(view: SystemView) -> tuple[list[str], list[list[int]], list[tuple[str, list[str]]]]:
    """(tasks, shared-component counts between every pair of tasks, [(component id, users)]
    for every component used by more than one task or created by another owner)."""
    tasks = sorted(view.paths)
    users = view.component_users()
    index = {t: i for i, t in enumerate(tasks)}
    matrix = [[0] * len(tasks) for _ in tasks]
    for owners in users.values():
        for a in owners:
            for b in owners:
                matrix[index[a]][index[b]] += 1
    shared = []
    for cid in sorted(users):
        owners = sorted(users[cid])
        creator = cid.split("/", 1)[0]
        if len(owners) > 1 or creator not in owners:
            shared.append((cid, owners))
    return tasks, matrix, shared


def _svg_lines(rows: Sequence[Mapping[str, Any]], key: str, label: str, color: str) -> str:
    points = [(r["version"], r[key]) for r in rows if r.get(key) is not None]
    if len(points) < 1:
        return ""
    width, height, pad = 560, 160, 30
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    poly = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
                   f"<title>version {x}: {y:,.4g}</title></circle>" for x, y in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{label}">'
            f'<text x="{pad}" y="14" font-size="12">{html.escape(label)} '
            f'({y0:,.4g} .. {y1:,.4g}; versions {x0}..{max(xs)})</text>'
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{poly}"/>{dots}'
            "</svg>")


def system_html(store: Any, version: int | None = None) -> str:
    """A self-contained HTML page: tasks, which tasks share which components, and the
    history of accuracy and parameters per version and per method version."""
    doc = status_dict(store, version)
    view = store.load_system(doc["version"])
    tasks, matrix, shared = sharing(view)
    rows = history_rows(store)
    esc = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mu2net system</title>",
           "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
           "th{background:#f3f3f3}td.l,th.l{text-align:left}</style></head><body>",
           f"<h1>System version {doc['version']}</h1>",
           f"<p>{len(tasks)} tasks, {doc['total_params']:,} parameters in task paths.</p>",
           "<h2>Tasks</h2><table><tr><th class='l'>task</th><th>test acc</th><th>val acc</th>"
           "<th>score</th><th>accounted params</th><th>MFLOPs</th><th class='l'>method</th>"
           "<th>components (own / reused)</th></tr>"]
    for name, t in doc["tasks"].items():
        path = view.paths[name]
        own = sum(c.creator == name for c in path.components)
        out.append(f"<tr><td class='l'>{esc(name)}</td><td>{_cell(t['test_accuracy'])}</td>"
                   f"<td>{_cell(t['validation_accuracy'])}</td><td>{_cell(t['score'])}</td>"
                   f"<td>{t['accounted_params']:,.0f}</td><td>{t['flops'] / 1e6:.2f}</td>"
                   f"<td class='l'>{esc(t['method_version'])}</td>"
                   f"<td>{own} / {len(path.components) - own}</td></tr>")
    out.append("</table><h2>Shared components between tasks</h2>")
    if tasks:
        top = max(max(r) for r in matrix) or 1
        out.append("<table><tr><th></th>" + "".join(f"<th>{esc(t)}</th>" for t in tasks)
                   + "</tr>")
        for t, row in zip(tasks, matrix):
            cells = "".join(f"<td style='background:rgba(30,100,200,{0.1 + 0.8 * v / top:.2f})'>"
                            f"{v}</td>" for v in row)
            out.append(f"<tr><th class='l'>{esc(t)}</th>{cells}</tr>")
        out.append("</table><p>Diagonal: components in the task's path; off-diagonal: "
                   "components two tasks both use.</p>")
    out.append("<table><tr><th class='l'>component</th><th class='l'>created by</th>"
               "<th class='l'>used by</th></tr>")
    for cid, owners in shared:
        out.append(f"<tr><td class='l'>{esc(cid)}</td><td class='l'>"
                   f"{esc(cid.split('/', 1)[0])}</td><td class='l'>"
                   f"{esc(', '.join(owners))}</td></tr>")
    out.append("</table><h2>History</h2>")
    out.append(_svg_lines(rows, "mean_test_accuracy", "mean test accuracy over tasks",
                          "#1f77b4"))
    out.append(_svg_lines(rows, "total_params", "total parameters in task paths", "#d62728"))
    out.append("<table><tr><th>version</th><th class='l'>task</th><th class='l'>method</th>"
               "<th class='l'>code</th><th>tasks</th><th>task test acc</th>"
               "<th>mean test acc</th><th>total params</th></tr>")
    for r in rows:
        out.append(f"<tr><td>{r['version']}</td><td class='l'>{esc(str(r['task']))}</td>"
                   f"<td class='l'>{esc(r['method_version'])}</td>"
                   f"<td class='l'>{esc(r['code_version'])}</td><td>{r['tasks']}</td>"
                   f"<td>{_cell(r['task_test_accuracy'])}</td>"
                   f"<td>{_cell(r['mean_test_accuracy'])}</td>"
                   f"<td>{r['total_params']:,}</td></tr>")
    out.append("</table><h2>Per method version</h2><table><tr><th class='l'>method</th>"
               "<th>versions committed</th><th>tasks at head</th><th>mean test acc at head"
               "</th></tr>")
    by_method: dict[str, int] = {}
    for r in rows[1:]:
        by_method[r["method_version"]] = by_method.get(r["method_version"], 0) + 1
    for mv in sorted(set(by_method) | set(doc["method_versions"])):
        names = doc["method_versions"].get(mv, [])
        accs = [doc["tasks"][n]["test_accuracy"] for n in names
                if doc["tasks"][n]["test_accuracy"] is not None]
        mean = float(np.mean(accs)) if accs else None
        out.append(f"<tr><td class='l'>{esc(mv)}</td><td>{by_method.get(mv, 0)}</td>"
                   f"<td>{len(names)}</td><td>{_cell(mean)}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(x for x in out if x)


def _cell(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"
