"""The store's history as users query it (`mu2net versions|show|diff`, `status`, the report):
per version its time, run id, code version, the Kubeflow run where known, and what changed.

A version's provenance records the run id it was committed under. On Kubeflow a run without an
explicit `run_id` parameter commits under the pipeline run's own id, a UUID, so a UUID run id
*is* the KFP run (`kfp_run_id`); a local run (kfp.local ids are 8-digit numbers), a rollback
or an explicit run id has no KFP run. A provenance field `kfp_run_id`, when present, wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mu2net.schema import SystemVersion

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CHANGE_WORDS = {"init": "root", "added": "added", "updated": "updated",
                "rollback": "rolled back"}


def kfp_run_id(provenance: Mapping[str, Any]) -> str | None:
    """The Kubeflow run that committed a version, where known (see the module docstring)."""
    explicit = provenance.get("kfp_run_id")
    if explicit:
        return str(explicit)
    run_id = str(provenance.get("run_id") or "")
    return run_id if _UUID_RE.match(run_id.lower()) else None


def run_info(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Who made a version: run id, commit time, code version, KFP run (None where unknown)."""
    return {"run_id": provenance.get("run_id") or None,
            "committed_at": provenance.get("committed_at") or None,
            "code_version": provenance.get("code_version") or None,
            "kfp_run_id": kfp_run_id(provenance)}


def run_text(run: Mapping[str, Any]) -> str:
    """`committed T by run R (code version C; KFP run K)` ("-" where unknown)."""
    return (f"committed {run.get('committed_at') or '-'} by run {run.get('run_id') or '-'} "
            f"(code version {run.get('code_version') or '-'}; KFP run "
            f"{run.get('kfp_run_id') or '-'})")


def changes(version: SystemVersion, parent: SystemVersion | None) -> dict[str, list[str]]:
    """Tasks added, updated (a new path), rolled back and removed relative to the parent."""
    before = parent.tasks if parent is not None else {}
    after = version.tasks
    changed = sorted(t for t in set(before) & set(after) if before[t] != after[t])
    rolled = changed if version.provenance.get("kind") == "rollback" else []
    return {"added": sorted(set(after) - set(before)),
            "updated": [t for t in changed if t not in rolled], "rolled_back": rolled,
            "removed": sorted(set(before) - set(after))}


def change_text(row: Mapping[str, Any]) -> str:
    """`added mnist`, `updated a, b`, `rolled back a to version 3`, `root`, or what a version
    that changed no path did (a rollback to the path the task already had)."""
    if row.get("kind") == "init":
        return "root"
    parts = []
    for key, word in (("added", "added"), ("updated", "updated"),
                      ("rolled_back", "rolled back"), ("removed", "removed")):
        if row.get(key):
            text = f"{word} {', '.join(row[key])}"
            if key == "rolled_back" and row.get("to_version") is not None:
                text += f" to version {row['to_version']}"
            parts.append(text)
    if parts:
        return "; ".join(parts)
    task = row.get("task") or "?"
    if row.get("kind") == "rollback":  # to the path the task already had
        return f"rolled back {task} to version {row.get('to_version')}: same path, no change"
    return f"{task}: same path, no change" if row.get("task") else "no change"


def version_row(version: SystemVersion, parent: SystemVersion | None) -> dict[str, Any]:
    """One line of `mu2net versions --json`."""
    prov = version.provenance
    return {"version": version.number, "parent": version.parent,
            "kind": prov.get("kind", ""), "task": prov.get("task"),
            "mode": prov.get("mode"), "to_version": prov.get("to_version"),
            "method_version": prov.get("method_version"),
            "config_name": prov.get("config_name"), **run_info(prov),
            **changes(version, parent)}


def version_rows(store: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """The newest `limit` versions (all when None), newest first. Parents come from the same
    chain walk, so a row costs no extra read beyond the oldest row's parent."""
    chain = store.versions(limit=None if limit is None else limit + 1)
    rows = []
    for i, version in enumerate(chain[:limit] if limit is not None else chain):
        parent = chain[i + 1] if i + 1 < len(chain) else (
            store.read_version(version.parent) if version.parent is not None else None)
        rows.append(version_row(version, parent))
    return rows


def show_doc(store: Any, number: int) -> dict[str, Any]:
    """`mu2net show N --json`: the version's row, its provenance and task table."""
    version = store.read_version(number)
    parent = store.read_version(version.parent) if version.parent is not None else None
    shown = store.show(number)
    return {**version_row(version, parent), "root": version.root,
            "tasks": dict(sorted(version.tasks.items())),
            "provenance": dict(version.provenance), "decision": shown.get("decision", "")}


def versions_text(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"{'version':>7}  {'committed (UTC)':<19}  {'run id':<24} {'code version':<22} "
             f"{'KFP run':<36}  change"]
    for r in rows:
        lines.append(f"{r['version']:>7}  {_time(r['committed_at']):<19}  "
                     f"{_short(r['run_id'], 24):<24} {_short(r['code_version'], 22):<22} "
                     f"{r['kfp_run_id'] or '-':<36}  {change_text(r)}")
    return "\n".join(lines)


def show_text(doc: Mapping[str, Any]) -> str:
    lines = [f"version {doc['version']} (parent {doc['parent']}): {change_text(doc)}",
             f"  committed    {doc['committed_at'] or '-'}",
             f"  run id       {doc['run_id'] or '-'}",
             f"  KFP run      {doc['kfp_run_id'] or '-'}",
             f"  code version {doc['code_version'] or '-'}",
             f"  method       {doc['method_version'] or '-'}"
             + (f" ({doc['config_name']} config)" if doc.get("config_name") else ""),
             f"  tasks        {len(doc['tasks'])}"]
    if doc.get("decision"):
        lines.append(f"  decision     {doc['decision']}")
    for task, path_hash in doc["tasks"].items():
        lines.append(f"    {task:<24} path {path_hash[:12]}")
    return "\n".join(lines)


def diff_text(doc: Mapping[str, Any]) -> str:
    lines = [f"from version {doc['from']} to version {doc['to']}"
             + (" (the root changed)" if doc.get("root_changed") else "")]
    for task, path_hash in doc["added"].items():
        lines.append(f"  + {task:<24} path {path_hash[:12]}")
    for task, path_hash in doc["removed"].items():
        lines.append(f"  - {task:<24} path {path_hash[:12]}")
    for task, (old, new) in doc["changed"].items():
        lines.append(f"  ~ {task:<24} path {old[:12]} -> {new[:12]}")
    if len(lines) == 1:
        lines.append("  no task changed")
    return "\n".join(lines)


def _time(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def _short(text: str | None, width: int) -> str:
    text = text or "-"
    return text if len(text) <= width else text[:width - 1] + "\u2026"
