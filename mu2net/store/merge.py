"""How a commit applies one extension to the head index it races for (`ExtensionMerge`):
an extension sets only its own task's path, so extensions of different tasks always merge;
a same-task race is decided by score, both paths read against the version they would be part
of (`with_path`: the head's summary updated from the one path, no other path read)."""

from __future__ import annotations

from typing import Any

from mu2net.errors import StoreError
from mu2net.schema import Path, SystemVersion
from mu2net.store.base import ScoreFn
from mu2net.system_view import with_path


def validation_accuracy(path: Path) -> float:
    """The fallback comparison of a same-task race when no scorer is given."""
    if "validation_accuracy" not in path.metrics:
        raise StoreError(f"path of task {path.task!r} has no metrics.validation_accuracy, so a "
                         "same-task race cannot be decided; pass a scorer to the store")
    return float(path.metrics["validation_accuracy"])


class ExtensionMerge:
    """Applies one extension to a head index; decides a same-task race by score."""

    def __init__(self, store: Any, task: str, path: Path, path_hash: str,
                 base_hash: str | None, scorer: ScoreFn | None) -> None:
        self.store, self.task, self.path, self.path_hash = store, task, path, path_hash
        self.base_hash, self.scorer = base_hash, scorer

    def __call__(self, head: SystemVersion) -> tuple[dict[str, str], dict[str, Any]]:
        tasks = dict(head.tasks)
        current = tasks.get(self.task)
        if current in (None, self.base_hash, self.path_hash):
            tasks[self.task] = self.path_hash  # nobody else committed this task since the base
            return tasks, {}
        existing = self.store.read_path(current)
        incoming_tasks = {**tasks, self.task: self.path_hash}
        if self.scorer is None:
            s_in, s_ex = validation_accuracy(self.path), validation_accuracy(existing)
        else:  # both read against the merged version they would be part of
            view = self.store.load_system(head.number)
            merged = with_path(view, self.task, self.path)
            s_in, s_ex = self.scorer(self.path, merged), self.scorer(existing, view)
        kept = "incoming" if s_in >= s_ex else "existing"  # ties go to the newer path
        decision = {"kind": "same_task_race", "task": self.task, "at_version": head.number,
                    "kept": kept, "incoming": {"path": self.path_hash, "score": s_in},
                    "existing": {"path": current, "score": s_ex}}
        return (incoming_tasks if kept == "incoming" else tasks), {"decision": decision}
