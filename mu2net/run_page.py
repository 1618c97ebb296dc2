"""The run's page: the report step's HTML dashboard, bounded whatever the system's size.

The report step runs once per pipeline run, so it reads only what the run touched: the
committed version's index and summary (`mu2net.system_view.SystemSummary`), the run's task's
path, the root, and the provenance (a ranged read of each index's head) of the last
`RUN_HISTORY` versions, whose `totals` (recorded at commit: the changed task's accuracies and
accounted parameters, the system's tasks, parameters and mean test accuracy) give the history
rows without reading any older index or path. Its cost does not grow with the history nor
with the number of tasks (one summary document, O(N) bytes, aside). The whole system's page
(every task, the graph of all paths, 500 versions of history) is `mu2net report`
(`mu2net.report.system_html`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from mu2net.errors import IntegrityError, StoreError
from mu2net.history import change_text, run_info, run_text
from mu2net.report import STYLE, _cell, _search_section, versions_table
from mu2net.schema import SystemView
from mu2net.status import path_entry

RUN_HISTORY = 50  # versions the run's page shows (`mu2net report`: report.HISTORY_LIMIT)


def _change(prov: Mapping[str, Any]) -> str:
    """The version's change from its provenance alone."""
    kind, task, change = prov.get("kind"), prov.get("task"), (prov.get("totals") or {}).get(
        "change")
    if kind in ("init", "seed") or not task:
        return "root" if kind == "init" else str(kind or "?")
    if change is None:  # an index written before totals were recorded
        return f"{kind}: {task}"
    key = ("rolled_back" if kind == "rollback" else change) if change != "unchanged" else ""
    return change_text({**prov, **({key: [task]} if key else {})})


def provenance_rows(store: Any, newest: int, limit: int = RUN_HISTORY) -> list[dict[str, Any]]:
    """History rows of versions newest-limit+1 .. newest, oldest first, from provenances."""
    rows = []
    for number in range(max(0, newest - limit + 1), newest + 1):
        try:
            prov = store.provenance(number)
        except IntegrityError:
            raise
        except StoreError:  # a gap: damage that `store check` reports
            continue
        totals = prov.get("totals") or {}
        task = prov.get("task") or None
        acc = totals.get("test_accuracy")
        rows.append({"version": number, "task": task or "(root)", "kind": prov.get("kind", ""),
                     "method_version": prov.get("method_version", ""), **run_info(prov),
                     "change": _change(prov), "tasks": totals.get("tasks"),
                     "accuracies": {task: acc} if task and acc is not None else {},
                     "mean_test_accuracy": totals.get("mean_test_accuracy"),
                     "task_test_accuracy": acc,
                     "accounted_params": totals.get("accounted_params"),
                     "total_params": totals.get("total_params"),
                     "separate_params": totals.get("separate_params")})
    return rows


def run_html(store: Any, view: SystemView, task: str, *,
             figures_out: dict[str, tuple[Any, dict[str, str]]] | None = None) -> str:
    """The run's page for `task` at the committed `view` (lazily loaded from the store)."""
    from mu2net import figures, plots

    path = view.paths[task]
    own_view = SystemView(version=view.version, root=view.root, paths={task: path},
                          summary=view.stored_summary())
    rows = provenance_rows(store, view.number)
    figs: dict[str, tuple[Any, dict[str, str]]] = {"graph": figures.system_graph(own_view)}
    search = path.metrics.get("search")
    if isinstance(search, Mapping) and search.get("children"):
        figs["search"] = (plots.search_figure(search, task, view.number), {})
    # The run's task's line and the mean over every task (a figure of the same size however
    # many tasks the recent versions touched).
    mine = [{**r, "accuracies": {t: a for t, a in r["accuracies"].items() if t == task}}
            for r in rows]
    figs["accuracy"] = (plots.accuracy_figure(mine, mean_of=len(view.paths)), {})
    # No parameters-against-tasks figure: over a few recent versions the number of tasks
    # barely moves; the versions table gives the totals (`mu2net report` draws it).
    if figures_out is not None:
        figures_out.update(figs)
    from mu2net.figures import to_svg

    svg = {name: to_svg(fig, titles) for name, (fig, titles) in figs.items()}
    esc = html.escape
    t = path_entry(path, view)
    own = sum(c.creator == task for c in path.components)
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mu2net run: "
           f"{esc(task)}, version {view.number}</title><style>{STYLE}</style></head><body>",
           f"<h1>{esc(task)}: system version {view.number}</h1>",
           f"<p>This version was {esc(run_text(run_info(view.version.provenance)))}. The "
           f"system has {len(view.paths)} tasks and {view.total_params():,} parameters in "
           "task paths. This page shows the run's task; the whole system (every task, its "
           "graph, the longer history): <code>mu2net report</code>.</p>",
           "<h2>The task's path</h2>", f"<figure id='fig-graph'>{svg['graph']}</figure>",
           "<table><tr><th class='l'>task</th><th>test acc</th><th>val acc</th><th>score</th>"
           "<th>accounted params</th><th>MFLOPs</th><th class='l'>method</th>"
           "<th>components (own / reused)</th></tr>",
           f"<tr><td class='l'>{esc(task)}</td><td>{_cell(t['test_accuracy'])}</td>"
           f"<td>{_cell(t['validation_accuracy'])}</td><td>{_cell(t['score'])}</td>"
           f"<td>{t['accounted_params']:,}</td><td>{t['flops'] / 1e6:.2f}</td>"
           f"<td class='l'>{esc(t['method_version'])}</td>"
           f"<td>{own} / {len(path.components) - own}</td></tr></table>"]
    if "search" in svg:
        out += ["<h2>Search of this cycle</h2>",
                _search_section({"version": view.number, "task": task, "search": search},
                                svg["search"], open_=True)]
    out += [f"<h2>History (the last {len(rows)} versions)</h2>"]
    out.append(f"<figure id='fig-accuracy'>{svg['accuracy']}</figure>")
    out += versions_table(rows)
    out.append("</table></details></body></html>")
    return "\n".join(out)
