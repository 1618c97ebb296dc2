"""What the system looks like: the pinned `status` JSON, the run summary (Markdown), the system
graph and history (HTML) and the committed path's confusion matrix, for the CLI and the
pipeline's dashboards in the Kubeflow UI.

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

import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mu2net.config import CONFIG_NAMES, Config, get_config
from mu2net.errors import StoreError
from mu2net.history import change_text, changes, run_info, run_text
from mu2net.hparams import mutations_text
from mu2net.schema import ROOT_TASK, Path, SystemView

HISTORY_LIMIT = 500
SEARCH_LIMIT = 6  # cycles whose search the HTML page shows


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
    and the search record of the cycle it committed (if any)."""
    rows: list[dict[str, Any]] = []
    parent = None
    for version in reversed(store.versions(limit=limit)):
        view = store.load_system(version.number)
        accs = {t: float(p.metrics["test_accuracy"]) for t, p in view.paths.items()
                if "test_accuracy" in p.metrics}
        prov = version.provenance
        task = prov.get("task")
        path = view.paths.get(task) if task else None
        rows.append({"version": version.number, "task": task or "(root)",
                     "kind": prov.get("kind", ""),
                     "method_version": prov.get("method_version", ""),
                     **run_info(prov),
                     "change": change_text({**prov, **changes(version, parent)}),
                     "tasks": len(view.paths), "accuracies": accs,
                     "mean_test_accuracy": float(np.mean(list(accs.values()))) if accs
                     else None,
                     "task_test_accuracy": accs.get(task),
                     "total_params": deployed_params(view),
                     "separate_params": sum(p.num_params for p in view.paths.values()),
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
    out.append("<details open><summary>Versions</summary><table><tr><th>version</th>"
               "<th class='l'>committed (UTC)</th><th class='l'>change</th>"
               "<th class='l'>run id</th><th class='l'>KFP run</th><th class='l'>method</th>"
               "<th class='l'>code</th><th>tasks</th><th>task test acc</th>"
               "<th>mean test acc</th><th>total params</th></tr>")
    for r in reversed(rows):
        out.append(f"<tr><td>{r['version']}</td>"
                   f"<td class='l'>{esc((r['committed_at'] or '-')[:19].replace('T', ' '))}</td>"
                   f"<td class='l'>{esc(r['change'])}</td>"
                   f"<td class='l'>{esc(r['run_id'] or '-')}</td>"
                   f"<td class='l'>{esc(r['kfp_run_id'] or '-')}</td>"
                   f"<td class='l'>{esc(r['method_version'])}</td>"
                   f"<td class='l'>{esc(r['code_version'] or '-')}</td><td>{r['tasks']}</td>"
                   f"<td>{_cell(r['task_test_accuracy'])}</td>"
                   f"<td>{_cell(r['mean_test_accuracy'])}</td>"
                   f"<td>{r['total_params']:,}</td></tr>")
    out.append("</table></details></body></html>")
    return "\n".join(out)


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
