"""The per-version `SystemSummary` in the store (`SummaryOps`, mixed into `VersionedStore`):
reading it (verified, content-addressed under `summaries/`), building the next one at commit
from the previous version's and the paths that changed, and auditing it (`store check`).

An index of format 2 names its summary (`SystemVersion.summary`). An index of format 1 was
written before summaries existed: its summary is computed from its N paths, explicitly (the
format check in `version_summary`, logged), so old versions still load; the first commit on
top of such a head writes a format 2 index, and every later commit builds on it in
O(changed paths).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mu2net.errors import IntegrityError, StoreError
from mu2net.schema import Path, SystemVersion
from mu2net.store.documents import parse_document
from mu2net.store.layout import Lru, summary_key
from mu2net.system_view import SystemSummary, lock_holders

log = logging.getLogger(__name__)


class SummaryOps:
    """Summaries of `VersionedStore` (see the module docstring)."""

    backend: Any
    uri: str
    _summaries: Lru

    def read_summary(self, summary_hash: str) -> SystemSummary:
        """A summary document, checked against its hash and its schema."""
        cached = self._summaries.get(summary_hash)
        if cached is not None:
            return cached
        key = summary_key(summary_hash)
        data = self._read_verified("summaries", key, summary_hash, "system summary")
        summary = parse_document("system_summary", data, f"{self.uri}/{key}")
        self._summaries.put(summary_hash, summary)
        return summary

    def version_summary(self, version: SystemVersion,
                        paths: Mapping[str, Path] | None = None) -> SystemSummary:
        """The summary of `version`: the stored one (index format 2), else computed from its
        paths (format 1, written before summaries: O(N) path reads, said in the log)."""
        if version.summary is not None:
            return self.read_summary(version.summary)
        log.info("version %d of %s predates the stored component-users summary (index format "
                 "1): computing it from its %d paths", version.number, self.uri,
                 len(version.tasks))
        if paths is None:
            got = self._read_paths(version.tasks.values())
            paths = {task: got[h] for task, h in version.tasks.items()}
        for task, path in paths.items():
            self._check_owner(path, task, version.number)
        return SystemSummary.from_paths(paths.items())

    def _write_summary(self, summary: SystemSummary) -> int:
        """Create-only write of a summary document; bytes written (0 if present)."""
        self._summaries.put(summary.hash, summary)
        return self._create(summary_key(summary.hash), summary.canonical)

    def next_summary(self, head: SystemVersion, tasks: Mapping[str, str], task: str
                     ) -> tuple[SystemSummary, dict[str, Any]]:
        """The summary of the version that sets `tasks` on top of `head`, built from `head`'s
        summary and the paths that changed (never a scan of all paths, for a format 2 head),
        and the totals its provenance records for the history (`mu2net.run_page`)."""
        summary = self.version_summary(head)
        for name in sorted(set(head.tasks) | set(tasks)):
            old, new = head.tasks.get(name), tasks.get(name)
            if old != new:
                summary = summary.replace_path(
                    name, self.read_path(old) if old else None,
                    self.read_path(new) if new else None)
        path = self.read_path(tasks[task]) if task in tasks else None
        return summary, summary_totals(summary, head.tasks, tasks, task, path)


def summary_totals(summary: SystemSummary, before: Mapping[str, str], after: Mapping[str, str],
                   task: str, path: Path | None) -> dict[str, Any]:
    """What a version's provenance records for the history (`totals`), from its summary: the
    system's tasks, parameters (distinct and separate) and mean test accuracy, how `task`
    changed (`before` -> `after` task tables), and its path's accuracies and accounted
    parameters (`path`: the task's path in the version)."""
    totals: dict[str, Any] = {
        "tasks": len(after), "total_params": summary.total_params(),
        "separate_params": summary.separate_params(),
        "mean_test_accuracy": summary.mean_test_accuracy(),
        "change": ("added" if task not in before else "unchanged"
                   if before[task] == after.get(task) else "updated")}
    if path is not None:
        users = {cid: users for cid, (_, users) in summary.components.items()}
        totals.update(
            test_accuracy=_metric(path, "test_accuracy"),
            validation_accuracy=_metric(path, "validation_accuracy"),
            accounted_params=sum(c.num_params / len(lock_holders(c, task, users))
                                 for c in path.components))
    return totals


def _metric(path: Path, name: str) -> float | None:
    value = path.metrics.get(name)
    return float(value) if isinstance(value, int | float) else None


def check_summaries(store: Any, versions: Mapping[int, SystemVersion],
                    paths: Mapping[str, Path], head: int | None) -> list[str]:
    """Problems of the summaries the indices name (`store check`): each must exist, hash to
    its name and parse; the head's must equal the one computed from its paths (when they
    all load; a broken path is reported by the check already)."""
    problems: list[str] = []
    seen: dict[str, SystemSummary | None] = {}
    for number, version in sorted(versions.items()):
        if version.summary is None or version.summary in seen:
            continue
        try:
            seen[version.summary] = store.read_summary(version.summary)
        except (IntegrityError, StoreError) as exc:
            seen[version.summary] = None
            problems.append(f"version {number}: {exc}")
    version = versions.get(head) if head is not None else None
    if version is not None and seen.get(version.summary or "") is not None:
        mapped = {task: paths.get(h) for task, h in version.tasks.items()}
        if all(p is not None for p in mapped.values()):
            expected = SystemSummary.from_paths(mapped.items())
            if expected.to_dict() != seen[version.summary].to_dict():
                problems.append(f"the summary {summary_key(version.summary)} of the head "
                                f"(version {head}) does not match its paths (component users "
                                "or accuracies differ): accounted parameters read at the head "
                                "are wrong, and later commits build on it")
    return problems
