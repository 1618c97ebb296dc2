"""What the system looks like: the run summary (Markdown), the system graph and history (HTML)
and the committed path's confusion matrix, for the CLI and the pipeline's dashboards in the
Kubeflow UI. The status document and the terminal tables are `mu2net.status`.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mu2net.config import Config
from mu2net.history import change_text, changes, run_info, run_text
from mu2net.hparams import mutations_text
from mu2net.schema import Path, SystemView
from mu2net.status import status_dict

HISTORY_LIMIT = 500
SEARCH_LIMIT = 6  # cycles whose search the HTML page shows


# === run summary ============================================================================


def one_line(commit: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
    """`task: version N committed: test 0.8123, val 0.8301, score 0.8299, ...`; when nothing
    was published, `task: no change: version N kept ...: test ...` (the kept path's); when this
    run lost a same-task race, that its path was discarded and that the numbers are those of
    the other run's path, which the version keeps."""
    state = "committed" if commit.get("created") else "already committed"
    head = f"{commit['task']}: version {commit['version']} {state}"
    decision = str(commit.get("decision") or "")
    if commit.get("note"):
        head = f"{commit['task']}: {commit['note']}"
    elif "kept the existing path" in decision:
        head += (f" keeping another run's path; this run's path was discarded ({decision}); "
                 "the kept path's numbers")
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
    # new in this run (commits since issue 24 list them); older records: the task's own
    new = list(commit["new_components"]) if "new_components" in commit else \
        [c.id for c in path.components if c.creator == path.task]
    if commit.get("note"):
        outcome = f"published nothing: {commit['note']}"
    else:
        outcome = (f"{'created' if commit.get('created') else 'found (retried run)'} version "
                   f"{commit['version']}" + (f" after {commit['rebases']} rebase(s)"
                                             if commit.get("rebases") else ""))
    lines = [
        f"# {commit['task']}: system version {commit['version']}",
        "",
        f"Run `{commit['run_id']}` searched from base version {commit['base_version']} with "
        f"the `{config.name}` config (method version `{config.method_version}`); the commit "
        f"{outcome}.",
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
              *_search_summary(path.metrics.get("search")),
              f"The system now has {len(view.paths)} tasks and {view.total_params():,} "
              "parameters in task paths."]
    return "\n".join(lines) + "\n"


def _search_summary(rec: Any) -> list[str]:
    """The cycle's search in one sentence (the Markdown summary)."""
    if not isinstance(rec, Mapping) or not rec.get("children"):
        return []
    children = rec["children"]
    parents = {k: sum(c[2] == k for c in children) for k in ("self", "other", "root")}
    scores = [c[6] for c in children if c[6] is not None]
    return [f"Search: {len(children)} children over {len(rec.get('mu', []))} generations, "
            f"{sum(bool(c[7]) for c in children)} kept; parents {parents['self']} of this "
            f"task, {parents['other']} of other tasks, {parents['root']} the root; best child "
            f"score {max(scores) if scores else float('nan'):.4f}. The graph and the search "
            "plots are in the `system` HTML artifact.", ""]


# === system graph, search and history (HTML) ================================================


def history_rows(store: Any, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """Per version, oldest first: the task it changed, its method version, each task's and the
    mean test accuracy, total parameters, the sum of the tasks' separate models' parameters,
    and the search record of the cycle it committed (if any).

    Incremental: the oldest version of the window is loaded whole, each later one reads only
    the paths its index changed, and the totals follow by counting component users, so the
    rows cost O(tasks + limit x changed tasks) path reads, not O(tasks x limit)."""
    rows: list[dict[str, Any]] = []
    parent = None
    paths: dict[str, Path] = {}
    users: dict[str, list[int]] = {}  # component id -> [paths using it, its parameters]
    totals = {"deployed": 0, "separate": 0}
    accs: dict[str, float] = {}

    def count(path: Path, step: int) -> None:
        totals["separate"] += step * path.num_params
        for comp in path.components:
            entry = users.setdefault(comp.id, [0, comp.num_params])
            entry[0] += step
            if entry[0] == (1 if step > 0 else 0):  # first user came, or last user left
                totals["deployed"] += step * entry[1]

    for version in reversed(store.versions(limit=limit)):
        if parent is None or version.parent != parent.number:  # the window's first: whole
            changed = list(version.tasks) + [t for t in paths if t not in version.tasks]
            fetched = dict(store.load_system(version.number).paths.items())  # in parallel
        else:
            changed = [t for t, h in version.tasks.items() if parent.tasks.get(t) != h]
            changed += [t for t in parent.tasks if t not in version.tasks]
            fetched = {t: store.read_path(version.tasks[t]) for t in changed
                       if t in version.tasks}
        for task in changed:
            if task in paths:
                count(paths.pop(task), -1)
                accs.pop(task, None)
            if task in fetched:
                paths[task] = fetched[task]
                count(fetched[task], +1)
                if "test_accuracy" in fetched[task].metrics:
                    accs[task] = float(fetched[task].metrics["test_accuracy"])
        accs = {t: accs[t] for t in version.tasks if t in accs}  # the index's order
        prov = version.provenance
        task = prov.get("task")
        path = paths.get(task) if task else None
        deployed = totals["deployed"] if paths else store.read_path(version.root).num_params
        rows.append({"version": version.number, "task": task or "(root)",
                     "kind": prov.get("kind", ""),
                     "method_version": prov.get("method_version", ""),
                     **run_info(prov),
                     "change": change_text({**prov, **changes(version, parent)}),
                     "tasks": len(paths), "accuracies": dict(accs),
                     "mean_test_accuracy": float(np.mean(list(accs.values()))) if accs
                     else None,
                     "task_test_accuracy": accs.get(task),
                     "total_params": deployed,
                     "separate_params": totals["separate"],
                     "search": (path.metrics.get("search") if path is not None
                                and prov.get("kind") == "extension" else None)})
        parent = version
    return rows


def report_figures(store: Any, version: int | None = None
                   ) -> tuple[dict[str, Any], SystemView, list[dict[str, Any]],
                              dict[str, tuple[Any, dict[str, str]]]]:
    """(status document, view, history rows, {figure name: (figure, hover titles)})."""
    from mu2net import figures, plots

    doc = status_dict(store, version)
    view = store.load_system(doc["version"])
    rows = [r for r in history_rows(store) if r["version"] <= view.number]
    out: dict[str, tuple[Any, dict[str, str]]] = {"graph": figures.system_graph(view)}
    for r in search_rows(rows)[:SEARCH_LIMIT]:
        out[f"search-v{r['version']}"] = (plots.search_figure(r["search"], r["task"],
                                                             r["version"]), {})
    out["accuracy"] = (plots.accuracy_figure(rows), {})
    out["params"] = (plots.params_figure(rows), {})
    out["methods"] = (plots.method_figure(doc), {})
    return doc, view, rows, out


def search_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """History rows that committed a cycle with a search record, newest first (a record
    carried over unchanged by a later version is shown once)."""
    seen, out = set(), []
    for r in reversed(rows):
        rec = r.get("search")
        if not isinstance(rec, Mapping):
            continue
        key = (r["task"], rec.get("cycle"), rec.get("base_version"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def system_html(store: Any, version: int | None = None, *,
                figures_out: dict[str, tuple[Any, dict[str, str]]] | None = None) -> str:
    """One self-contained HTML page (figures inline as SVG, no network): the system graph,
    the tasks, the search of the latest cycles and the history plots."""
    from mu2net.figures import to_svg

    doc, view, rows, figs = report_figures(store, version)
    if figures_out is not None:
        figures_out.update(figs)
    esc = html.escape
    svg = {name: to_svg(fig, titles) for name, (fig, titles) in figs.items()}
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mu2net system "
           f"version {doc['version']}</title><style>{STYLE}</style></head><body>",
           f"<h1>System version {doc['version']}</h1>",
           f"<p>This version was {esc(run_text(doc['run']))}.</p>",
           f"<p>{len(doc['tasks'])} tasks, {doc['total_params']:,} parameters in task paths "
           f"(separately fine-tuned: {sum(p.num_params for p in view.paths.values()):,}). "
           "Hover a node or a line for its component or task.</p>",
           "<h2>System graph</h2>", f"<figure id='fig-graph'>{svg['graph']}</figure>",
           "<h2>Tasks</h2><table><tr><th class='l'>task</th><th>test acc</th><th>val acc</th>"
           "<th>score</th><th>accounted params</th><th>MFLOPs</th><th class='l'>method</th>"
           "<th>components (own / reused)</th></tr>"]
    for name, t in doc["tasks"].items():
        own = sum(c.creator == name for c in view.paths[name].components)
        out.append(f"<tr><td class='l'>{esc(name)}</td><td>{_cell(t['test_accuracy'])}</td>"
                   f"<td>{_cell(t['validation_accuracy'])}</td><td>{_cell(t['score'])}</td>"
                   f"<td>{t['accounted_params']:,}</td><td>{t['flops'] / 1e6:.2f}</td>"
                   f"<td class='l'>{esc(t['method_version'])}</td>"
                   f"<td>{own} / {len(view.paths[name].components) - own}</td></tr>")
    out.append("</table><h2>Search, per cycle (newest first)</h2>")
    cycles = search_rows(rows)
    if not cycles:
        out.append("<p>No committed cycle with a search record yet.</p>")
    for k, r in enumerate(cycles[:SEARCH_LIMIT]):
        out.append(_search_section(r, svg[f"search-v{r['version']}"], open_=k == 0))
    out += ["<h2>History</h2>"] + [f"<figure id='fig-{n}'>{svg[n]}</figure>"
                                   for n in ("accuracy", "params", "methods")]
    out += versions_table(rows)
    out.append("</table></details></body></html>")
    return "\n".join(out)


def versions_table(rows: list[Mapping[str, Any]]) -> list[str]:
    """The history's versions table, newest first (the report and the run's page); a row's
    `tasks` and `total_params` may be None (an index written before provenance totals)."""
    esc = html.escape
    out = ["<details open><summary>Versions</summary><table><tr><th>version</th>"
           "<th class='l'>committed (UTC)</th><th class='l'>change</th>"
           "<th class='l'>run id</th><th class='l'>KFP run</th><th class='l'>method</th>"
           "<th class='l'>code</th><th>tasks</th><th>task test acc</th>"
           "<th>mean test acc</th><th>total params</th></tr>"]
    for r in reversed(rows):
        params = "-" if r["total_params"] is None else f"{r['total_params']:,}"
        out.append(f"<tr><td>{r['version']}</td>"
                   f"<td class='l'>{esc((r['committed_at'] or '-')[:19].replace('T', ' '))}</td>"
                   f"<td class='l'>{esc(r['change'])}</td>"
                   f"<td class='l'>{esc(r['run_id'] or '-')}</td>"
                   f"<td class='l'>{esc(r['kfp_run_id'] or '-')}</td>"
                   f"<td class='l'>{esc(r['method_version'])}</td>"
                   f"<td class='l'>{esc(r['code_version'] or '-')}</td>"
                   f"<td>{'-' if r['tasks'] is None else r['tasks']}</td>"
                   f"<td>{_cell(r['task_test_accuracy'])}</td>"
                   f"<td>{_cell(r['mean_test_accuracy'])}</td><td>{params}</td></tr>")
    return out


def _search_section(row: Mapping[str, Any], svg: str, *, open_: bool) -> str:
    rec = row["search"]
    esc = html.escape
    kept = sum(bool(c[7]) for c in rec["children"])
    head = (f"<details{' open' if open_ else ''}><summary>version {row['version']}: "
            f"{esc(row['task'])}, cycle {rec.get('cycle', 0) + 1} ({esc(rec.get('mode', ''))}"
            f" from version {rec.get('base_version')}), {len(rec['children'])} children, "
            f"{kept} kept</summary><figure>{svg}</figure>")
    table = ["<table><tr><th>gen</th><th>child</th><th class='l'>parent</th>"
             "<th class='l'>mutations</th><th>val acc</th><th>score</th><th>kept</th></tr>"]
    published = rec.get("published")
    for g, i, kind, parent, mutations, val, score, ok in rec["children"]:
        mark = " (published)" if published == [g, i] else ""
        table.append(f"<tr><td>{g}</td><td>{i}</td><td class='l'>{esc(kind)}: {esc(parent)}"
                     f"</td><td class='l'>{esc(mutations_text(mutations))}</td>"
                     f"<td>{_cell(val)}</td><td>{_cell(score)}</td>"
                     f"<td>{'yes' if ok else 'no'}{mark}</td></tr>")
    return head + "".join(table) + "</table></details>"


def write_report(store: Any, out: str, version: int | None = None) -> list[str]:
    """`out` (the HTML page) and beside it `<stem>-<figure>.svg` and `.png` of each figure;
    returns the files written."""
    from mu2net.figures import to_png, to_svg

    figs: dict[str, tuple[Any, dict[str, str]]] = {}
    text = system_html(store, version, figures_out=figs)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(out))[0]
    written = [out]
    with open(out, "w") as fh:
        fh.write(text)
    for name, (fig, titles) in figs.items():
        base = os.path.join(folder, f"{stem}-{name}")
        with open(base + ".svg", "w") as fh:
            fh.write('<?xml version="1.0" encoding="utf-8"?>\n' + to_svg(fig, titles))
        with open(base + ".png", "wb") as fb:
            fb.write(to_png(fig))
        written += [base + ".svg", base + ".png"]
    return written


STYLE = ("body{font-family:sans-serif;font-size:13px;max-width:1400px}"
         "table{border-collapse:collapse;margin:6px 0}"
         "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
         "th{background:#f3f3f3}td.l,th.l{text-align:left}figure{margin:8px 0}"
         "svg{max-width:100%;height:auto}summary{cursor:pointer;margin:4px 0}")


def _cell(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"
