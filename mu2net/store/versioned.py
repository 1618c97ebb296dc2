"""The versioned shared model on any `ObjectBackend`: layout, commit protocol, verified reads,
history, rollback, garbage collection with run leases, and the task queue.

Layout under the store root (every key but `HEAD`, queue entries and leases is written once):

    HEAD                               {"version": N}: a hint, moved by compare-and-swap
    GC                                 garbage collections deleting now (compare-and-swap)
    versions/000000000042.json         index of version 42 (`SystemVersion`), create-only
    paths/<sha256>.json                path documents, content-addressed (canonical JSON)
    summaries/<sha256>.json            per-version component users (`SystemSummary`), named
                                       by the index; built at commit from the previous one
    blobs/<sha256>                     component parameters (.npz bytes), content-addressed
    tasks/<name>/<content_hash>.json   prepared-task metadata (`TaskInfo`)
    task_data_dirs/<name>.json         where the task's data was last read (overwritten)
    queue/<entry id>.json              task-queue entries, each moved by compare-and-swap
    aliases/<task>/<alias>.json        task aliases (e.g. prod), each moved by compare-and-swap
    searches/<task>.json               cycles that kept the task's path (compare-and-swap)
    leases/<sha256(run id)[:40]>.json  run leases that garbage collection respects

Commit protocol. The commit point is the create-only write of `versions/<N+1>`
(`if_generation_match=0`): of several writers that read head N, exactly one creates N+1; that
index exists only once every object it references exists, so a version without an index does not
exist and an index never points at missing data. `HEAD` is then moved from the generation read
with `if_generation_match`; it may lag by a version if a writer dies in between, so the head is
the pointer plus a forward probe (`exists(versions/<N+1>)`, one request): O(1), no listing.
A writer also looks a few numbers past a missing index (`reads.GAP_PROBE_SLOTS`), so a commit
never numbers into a gap left by a deleted index: gaps are damage, never a new head.
A writer that loses the create re-reads the head and re-applies its extension (rebase): an
extension sets only its own task's path, so extensions of different tasks always merge; if the
same task was committed since the extension's base version, both paths are scored against the
merged version and the higher one is kept, the decision recorded in the index's provenance.
Every index records its run id; a commit first looks for its run id among the versions since its
base (reading only the head of each index, where the provenance is), so committing one run twice
yields one version, and a run id reused for another task is refused.

Reads verify content hashes (`IntegrityError` on mismatch) and go through a local cache keyed by
hash. Scores and accounted parameters are never stored; they are computed from the version read.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mu2net.blobs import STAGED_IN_STORE
from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import ROOT_TASK, Extension, Path, SystemVersion, validate_task_name
from mu2net.store.aliases import AliasOps
from mu2net.store.base import CommitResult, ModelStore, ObjectBackend, ScoreFn
from mu2net.store.collect import CollectionOps
from mu2net.store.layout import (
    HEAD_KEY,
    Lru,
    blob_key,
    decision_text,
    encode,
    encode_index,
    encode_pointer,
    iso_time,
    path_key,
    read_blob_file,
    version_key,
)
from mu2net.store.merge import ExtensionMerge
from mu2net.store.publish import KeptSearchOps, gate_note, rollback_note, unchanged_note
from mu2net.store.queue import QueueOps
from mu2net.store.reads import ReadOps
from mu2net.store.summaries import SummaryOps
from mu2net.system_view import SystemSummary

log = logging.getLogger(__name__)

ROLLBACK_LEASE_S = 3600.0  # a rollback copies one path's blobs and publishes: minutes at most
_FETCH_THREADS = 16
_PROVENANCE_PROBE_BYTES = 16 * 1024


# === the store ==============================================================================


class VersionedStore(ReadOps, SummaryOps, QueueOps, CollectionOps, AliasOps, KeptSearchOps,
                     ModelStore):
    """The versioned shared model on one backend. See the module docstring for the protocol.

    Args:
        backend: where the objects live (`LocalBackend`, `GcsBackend`).
        cache_dir: local cache of path documents and blobs keyed by hash (always verified on
            read); None (the default: pipeline pods are short-lived) disables it. The CLI
            passes the user's cache folder.
        scorer: decides same-task races (`config_scorer(config)` for the method's score);
            None compares `metrics.validation_accuracy`.
        max_attempts: rebases before a commit gives up with `ConflictError`.
    """

    def __init__(self, backend: ObjectBackend, *, cache_dir: str | None = None,
                 scorer: ScoreFn | None = None, max_attempts: int = 500,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.uri = backend.uri
        self.cache_dir = cache_dir
        self.scorer = scorer
        self.max_attempts = max_attempts
        self.clock = clock
        self._indices = Lru(64)
        self._paths = Lru(100_000)
        self._summaries = Lru(8)

    def __repr__(self) -> str:
        return f"VersionedStore({self.uri!r})"

    # === writes =============================================================================

    def _upload_files(self, blob_files: Mapping[str, str]) -> tuple[int, set[str]]:
        """Upload an extension's blobs not yet stored: (bytes written, hashes already there).
        A blob listed as `STAGED_IN_STORE` must already be there."""
        written, present = 0, set()
        for blob_hash, file_path in sorted(blob_files.items()):
            if self.backend.exists(blob_key(blob_hash)):
                present.add(blob_hash)
                continue
            if file_path == STAGED_IN_STORE:
                raise StoreError(f"blob {blob_hash} was staged in {self.uri} but is gone: the "
                                 "run's lease expired and gc collected it; run the cycle "
                                 "again (nothing was published)")
            data = read_blob_file(file_path, blob_hash)
            try:
                self.backend.write(blob_key(blob_hash), data, if_generation_match=0)
                written += len(data)
            except ConflictError:
                present.add(blob_hash)
        return written, present

    def stage_blobs(self, run_id: str, blob_files: Mapping[str, str], *, ttl_s: float,
                    base_version: int | None = None) -> int:
        # The lease names the blobs before they exist, so no collection can take them between
        # the upload and the commit that references them.
        self.acquire_lease(run_id, ttl_s=ttl_s, base_version=base_version,
                           blobs=sorted(blob_files))
        written, _ = self._upload_files(blob_files)
        return written

    def _verify_blobs(self, path: Path, skip: Iterable[str] = ()) -> None:
        known = set(skip)
        missing = [f"{c.id} ({c.blob})" for c in path.components
                   if c.blob not in known and not self.backend.exists(blob_key(c.blob))]
        if missing:
            raise StoreError(f"path of task {path.task!r} references blobs missing from "
                             f"{self.uri}: {missing}; nothing was published")

    # === commits ============================================================================

    def init(self, root: Path, blob_files: Mapping[str, str], provenance: Mapping[str, Any]
             ) -> CommitResult:
        if root.task != ROOT_TASK:
            raise SchemaError(f"root path.task={root.task!r} is invalid: expected {ROOT_TASK!r}")
        root_hash = root.hash
        existing = self.head()
        if existing is not None:
            return self._init_done(root_hash, existing)
        written, _ = self._upload_files(blob_files)
        self._verify_blobs(root, skip=blob_files)
        written += self._create(path_key(root_hash), encode(root.to_dict()))
        empty = SystemSummary()
        written += self._write_summary(empty)
        now = self.clock()
        version = SystemVersion(number=0, parent=None, root=root_hash, tasks={},
                                summary=empty.hash,
                                provenance={**provenance, "kind": "init", "path": root_hash,
                                            "method_version": root.method_version,
                                            "committed_at": iso_time(now)})
        data = encode_index(version)
        try:
            self.backend.write(version_key(0), data, if_generation_match=0)
        except ConflictError:
            return self._init_done(root_hash, self._require_head())
        written += len(data)
        pointer = encode_pointer(0)
        try:
            self.backend.write(HEAD_KEY, pointer, if_generation_match=0)
            written += len(pointer)
        except ConflictError:
            pass  # the pointer is only a hint; someone created it already
        return CommitResult(version=0, created=True, bytes_written=written)

    def _init_done(self, root_hash: str, head: int) -> CommitResult:
        if self.read_version(0).root == root_hash:
            return CommitResult(version=0, created=False)
        raise StoreError(f"store {self.uri} is already initialised with another root path "
                         f"(head is version {head}); init only creates version 0")

    def commit(self, extension: Extension, *, scorer: ScoreFn | None = None,
               min_gain: float = 0.0) -> CommitResult:
        ext, path = extension, extension.path
        path_hash = path.hash
        blobs = {c.blob for c in path.components}
        stray = sorted(set(ext.blob_files) - blobs)
        if stray:
            raise SchemaError(f"extension.blob_files lists blobs its path does not use: {stray}")
        if not ext.run_id:
            raise SchemaError("extension.run_id is empty: commits are idempotent per run id")
        head = self._require_head()
        if ext.base_version > head:
            raise StoreError(f"extension.base_version={ext.base_version} is newer than the head "
                             f"of {self.uri} (version {head})")
        base = self.read_version(ext.base_version)
        found = self._find_run(ext.run_id, head, ext.base_version + 1, ext.task)
        if found is not None:
            return found
        # Publish only what changed (mu2net.store.publish): nothing written, so a retry of a
        # refused commit is refused again with the same note.
        note = (unchanged_note(self, path, base.tasks.get(ext.task), head)
                or gate_note(self, path, scorer or self.scorer, min_gain, head))
        if note:  # the next cycle of the task must not repeat this one (KeptSearchOps)
            current = self.read_version(head).tasks.get(ext.task)
            if current is not None:
                self.record_kept_search(ext.task, current, ext.run_id)
            return CommitResult(version=head, created=False, note=note)
        written, present = self._upload_files(ext.blob_files)
        self._verify_blobs(path, skip=set(ext.blob_files) - present)
        written += self._create(path_key(path_hash), encode(path.to_dict()))
        provenance = {"kind": "extension", "run_id": ext.run_id, "task": ext.task,
                      "mode": ext.mode, "path": path_hash, "method_version": path.method_version,
                      "code_version": ext.code_version, "config_name": ext.config_name,
                      "base_version": ext.base_version, "started_at": iso_time(self.clock())}
        merge = ExtensionMerge(self, ext.task, path, path_hash, base.tasks.get(ext.task),
                                scorer or self.scorer)
        result = self._publish(merge, provenance, ext.run_id, scanned=head, written=written)
        self.restore_collected(ext.blob_files)
        return result

    def rollback_task(self, task: str, to_version: int, run_id: str) -> CommitResult:
        validate_task_name(task)
        if not run_id:
            raise SchemaError("rollback run_id is empty: rollbacks are idempotent per run id")
        head = self._require_head()
        target = self.read_version(to_version)
        if task not in target.tasks:
            raise StoreError(f"task {task!r} has no path at version {to_version}; tasks there: "
                             f"{sorted(target.tasks)[:20]}")
        old_hash = target.tasks[task]
        found = self._find_run(run_id, head, to_version + 1, task)
        if found is not None:
            return found
        note = rollback_note(self.read_version(head).tasks.get(task), old_hash, task,
                             to_version, head)
        if note:
            return CommitResult(version=head, created=False, note=note)
        path = self.read_path(old_hash)
        self._check_owner(path, task, to_version)
        blobs = sorted({c.blob for c in path.components})
        # The lease keeps a collection that decides from now on off these blobs; one that
        # decided before the lease may still delete them, so they are copied first (verified)
        # and put back after publication, as a commit restores its reused blobs.
        self.acquire_lease(run_id, ttl_s=ROLLBACK_LEASE_S, blobs=blobs)
        try:
            with tempfile.TemporaryDirectory(prefix="mu2net-rollback-") as copies:
                files = {}
                for blob_hash in blobs:
                    try:
                        data = self.get_blob(blob_hash)
                    except IntegrityError:
                        raise
                    except StoreError:  # missing
                        raise StoreError(
                            f"cannot roll task {task!r} back to version {to_version}: its blob "
                            f"{blob_hash} was garbage-collected from {self.uri}; choose a "
                            "newer version (`mu2net status --at N`); nothing was "
                            "published") from None
                    files[blob_hash] = os.path.join(copies, blob_hash)
                    with open(files[blob_hash], "wb") as f:
                        f.write(data)
                provenance = {"kind": "rollback", "run_id": run_id, "task": task,
                              "path": old_hash, "to_version": to_version,
                              "method_version": path.method_version,
                              "started_at": iso_time(self.clock())}

                def merge(head_version: SystemVersion) -> tuple[dict[str, str], dict[str, Any]]:
                    tasks = dict(head_version.tasks)
                    replaced = tasks.get(task)
                    tasks[task] = old_hash
                    return tasks, {"replaced": replaced}

                result = self._publish(merge, provenance, run_id, scanned=head, written=0)
                self.restore_collected(files)
        finally:
            self.release_lease(run_id)
        return result

    def _publish(self, merge: Callable[[SystemVersion], tuple[dict[str, str], dict[str, Any]]],
                 provenance: Mapping[str, Any], run_id: str, *, scanned: int,
                 written: int) -> CommitResult:
        """Create the next index on top of the head, rebasing until it wins the create
        (at most `max_attempts` times, backing off up to 0.5 s; a line every 10 s says so)."""
        started = last_line = time.monotonic()
        for attempt in range(self.max_attempts):
            if time.monotonic() - last_line >= 10:
                last_line = time.monotonic()
                log.warning("commit of run %s on %s: lost %d races in %.0f s to other writers; "
                            "still trying (at most %d)", run_id, self.uri, attempt,
                            last_line - started, self.max_attempts)
            pointer, generation = self._read_pointer()
            head = self._probe(pointer, past_gaps=True)
            if head is None:
                raise StoreError(f"store {self.uri} is empty: initialise it first")
            if head > scanned:  # versions committed meanwhile: a duplicate of this run?
                found = self._find_run(run_id, head, scanned + 1, provenance["task"])
                if found is not None:
                    return found
                scanned = head
            head_version = self.read_version(head)
            tasks, extra = merge(head_version)
            # The next summary from the head's and the changed path: written before the index
            # that names it (an index never points at missing data).
            summary, totals = self.next_summary(head_version, tasks, provenance["task"])
            written += self._write_summary(summary)
            version = SystemVersion(
                number=head + 1, parent=head, root=head_version.root, tasks=tasks,
                summary=summary.hash,
                provenance={**provenance, **extra, "totals": totals, "rebases": attempt,
                            "committed_at": iso_time(self.clock())})
            data = encode_index(version)
            try:
                self.backend.write(version_key(head + 1), data, if_generation_match=0)
            except ConflictError:
                time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(attempt, 7))))
                continue
            written += len(data)
            self._indices.put(version.number, version)
            pointer_data = encode_pointer(version.number)
            try:
                self.backend.write(HEAD_KEY, pointer_data, if_generation_match=generation)
                written += len(pointer_data)
            except ConflictError:
                pass  # a later writer moved the pointer past this version (it probes forward)
            return CommitResult(version=version.number, created=True, bytes_written=written,
                                rebases=attempt,
                                decision=decision_text(version.provenance.get("decision")))
        raise ConflictError(f"commit of run {run_id!r} lost {self.max_attempts} races in a row "
                            f"on {self.uri}; retry later")

    def _find_run(self, run_id: str, newest: int, oldest: int, task: str) -> CommitResult | None:
        """The version run `run_id` committed, looking from `newest` down to `oldest`."""
        for number in range(newest, max(oldest, 0) - 1, -1):
            try:
                provenance = self._provenance(number)
            except IntegrityError:
                raise
            except StoreError:  # missing: a gap (damage that `store check` reports)
                continue
            if provenance.get("run_id") != run_id:
                continue
            if provenance.get("task") != task:
                raise StoreError(f"run id {run_id!r} already committed version {number} for task "
                                 f"{provenance.get('task')!r}, not {task!r}; run ids must be "
                                 "unique per run")
            return CommitResult(version=number, created=False,
                                decision=decision_text(provenance.get("decision")))
        return None
