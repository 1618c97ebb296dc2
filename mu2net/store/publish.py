"""What a commit publishes: only what changed (issue 24's publishing rules).

* A cycle that keeps its parent's path (its best path is the model the task already had at the
  cycle's base version: the same components and hyperparameters, whatever metrics the cycle
  added) publishes no version: "no change: version N kept".
* A rollback to the path the task already has at the head publishes no version.
* An optional minimum-improvement gate (`PublishConfig.min_improvement`, off at 0): a path of
  a task the head already has is published only if its score, read against the version it
  would create, beats the head path's score by at least the gate.

Each rule returns the note the commit reports instead of a version (`CommitResult.note`), or
"" to publish. Nothing here writes: a refused commit is repeated safely, and says the same.
The gate is checked against the head at commit time; a commit of the same task racing it is
still decided by score when the index is created (`mu2net.store.merge.ExtensionMerge`).
"""

from __future__ import annotations

from typing import Any

from mu2net.schema import Path
from mu2net.system_view import with_path


def same_model(a: Path, b: Path) -> bool:
    """Whether two paths are the same model: same task, components and hyperparameters
    (metrics and search records may differ)."""
    return (a.task == b.task and a.component_ids == b.component_ids
            and dict(a.hparams) == dict(b.hparams))


def unchanged_note(store: Any, path: Path, base_hash: str | None, head: int) -> str:
    """The note of a cycle whose path is the one the task had at its base version."""
    if base_hash is None:
        return ""
    if base_hash != path.hash and not same_model(store.read_path(base_hash), path):
        return ""
    return (f"no change: version {head} kept (the cycle's best path is the task's current "
            "one; nothing was published)")


def rollback_note(head_hash: str | None, target_hash: str, task: str, to_version: int,
                  head: int) -> str:
    """The note of a rollback to the path the task already has at the head."""
    if head_hash != target_hash:
        return ""
    return (f"no change: version {head} kept (task {task!r} already has the path of version "
            f"{to_version}; nothing was published)")


def gate_note(store: Any, path: Path, scorer: Any, min_gain: float, head: int) -> str:
    """The note of a path whose gain over the head's path of its task is below the gate."""
    if not min_gain or min_gain <= 0:
        return ""
    version = store.read_version(head)
    current = version.tasks.get(path.task)
    if current is None:  # a new task: nothing to beat
        return ""
    if scorer is None:
        from mu2net.errors import StoreError

        raise StoreError("a minimum-improvement gate needs the method's scorer: open the "
                         "store with the config (open_store(uri, config))")
    view = store.load_system(head)
    merged = with_path(view, path.task, path)  # no other path read (the stored summary)
    gain = scorer(path, merged) - scorer(view.paths[path.task], view)
    if gain >= min_gain:
        return ""
    return (f"not published: gain {gain:.4g} < gate {min_gain:.4g} (score against version "
            f"{head}; version {head} kept)")


# === searches that kept the task's path =====================================================


class KeptSearchOps:
    """Counts of the cycles that published nothing, per task path (mixed into the store).

    A cycle that publishes nothing leaves the path's `num_cycles` as it was; without a record,
    the next cycle of that task would start from the same cycle number, hence the same seeds,
    and repeat the search exactly, and the re-evolution rule (`mu2net.queue.gain_ranking`)
    would pick the task again as if it had not been searched. So each such cycle's run id is
    recorded in `searches/<task>.json` ({"path": the task's path hash, "runs": [...]}, by
    compare-and-swap, idempotent per run id); the count restarts when the task's path changes.
    """

    backend: Any
    max_attempts: int

    def record_kept_search(self, task: str, path_hash: str, run_id: str) -> int:
        """Record that run `run_id` searched `task` from `path_hash` and kept it; the count."""
        from mu2net.errors import ConflictError
        from mu2net.store.documents import parse_document
        from mu2net.store.layout import encode

        key = f"searches/{task}.json"
        for _ in range(self.max_attempts):
            got = self.backend.read(key)
            doc = parse_document("kept_searches", got[0], key) if got is not None else {}
            runs = list(doc.get("runs", [])) if doc.get("path") == path_hash else []
            if run_id in runs:
                return len(runs)
            new = {"schema": "mu2net/kept_searches/v1", "task": task, "path": path_hash,
                   "runs": [*runs, run_id]}
            try:
                self.backend.write(key, encode(new),
                                   if_generation_match=got[1] if got is not None else 0)
                return len(new["runs"])
            except ConflictError:
                continue
        raise ConflictError(f"{key} kept changing; retry later")

    def kept_cycles(self, system: Any, task: str) -> int:
        """`kept_searches` of the task's published path in `system` (0 if it has none): what
        `search.start_cycle` needs so that a cycle does not replay one that kept the path."""
        published = system.paths.get(task)
        return 0 if published is None else self.kept_searches(task, published.hash)

    def kept_searches(self, task: str, path_hash: str) -> int:
        """How many cycles searched `task` from `path_hash` and kept it."""
        from mu2net.store.documents import parse_document

        key = f"searches/{task}.json"
        got = self.backend.read(key)
        doc = parse_document("kept_searches", got[0], key) if got is not None else {}
        return len(doc.get("runs", [])) if doc.get("path") == path_hash else 0
