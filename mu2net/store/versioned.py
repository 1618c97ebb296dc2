"""The versioned shared model on any `ObjectBackend`: layout, commit protocol, verified reads,
history, rollback, garbage collection with run leases, and the task queue.

Layout under the store root (every key but `HEAD`, queue entries and leases is written once):

    HEAD                               {"version": N}: a hint, moved by compare-and-swap
    versions/000000000042.json         index of version 42 (`SystemVersion`), create-only
    paths/<sha256>.json                path documents, content-addressed (canonical JSON)
    blobs/<sha256>                     component parameters (.npz bytes), content-addressed
    tasks/<name>/<content_hash>.json   prepared-task metadata (`TaskInfo`)
    queue/<entry id>.json              task-queue entries, each moved by compare-and-swap
    leases/<sha256(run id)[:40]>.json  run leases that garbage collection respects

Commit protocol. The commit point is the create-only write of `versions/<N+1>`
(`if_generation_match=0`): of several writers that read head N, exactly one creates N+1; that
index exists only once every object it references exists, so a version without an index does not
exist and an index never points at missing data. `HEAD` is then moved from the generation read
with `if_generation_match`; it may lag by a version if a writer dies in between, so the head is
the pointer plus a forward probe (`exists(versions/<N+1>)`, one request): O(1), no listing.
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

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mu2net.config import canonical_json
from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import (
    HASH_RE,
    ROOT_TASK,
    Extension,
    Path,
    SystemVersion,
    SystemView,
    TaskInfo,
    sha256_hex,
    validate_task_name,
)
from mu2net.store.base import (
    CommitResult,
    Lease,
    ModelStore,
    ObjectBackend,
    QueueEntry,
    ScoreFn,
)

log = logging.getLogger(__name__)

HEAD_KEY = "HEAD"
INDEX_MAX_BYTES = 8 * 1024 * 1024  # single-shot upload limit; the index must stay below it
QUEUE_MODES = ("onboard", "iterate")
QUEUE_STATES = ("pending", "running", "done", "failed")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "mu2net", "store")
_ENTRY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_FETCH_THREADS = 16
_PROVENANCE_PROBE_BYTES = 16 * 1024


# === layout =================================================================================


def version_key(number: int) -> str:
    return f"versions/{number:012d}.json"


def path_key(path_hash: str) -> str:
    return f"paths/{path_hash}.json"


def blob_key(blob_hash: str) -> str:
    return f"blobs/{blob_hash}"


def task_info_key(name: str, content_hash: str) -> str:
    return f"tasks/{name}/{content_hash}.json"


def queue_key(entry_id: str) -> str:
    return f"queue/{entry_id}.json"


def lease_key(run_id: str) -> str:
    return f"leases/{hashlib.sha256(run_id.encode()).hexdigest()[:40]}.json"


def encode(doc: Mapping[str, Any]) -> bytes:
    """The stored form of every JSON document: canonical JSON (its sha256 is its hash)."""
    return canonical_json(doc).encode()


def encode_index(version: SystemVersion) -> bytes:
    """The index object of a version; refuses one over the single-shot upload limit."""
    data = encode(version.to_dict())
    if len(data) >= INDEX_MAX_BYTES:
        raise StoreError(f"index of version {version.number} is {len(data)} bytes, over the "
                         f"{INDEX_MAX_BYTES}-byte single-shot limit")
    return data


def encode_pointer(number: int) -> bytes:
    return encode({"schema": "mu2net/head/v1", "version": number})


# === scoring of same-task races =============================================================


def validation_accuracy(path: Path) -> float:
    """The fallback comparison of a same-task race when no scorer is given."""
    if "validation_accuracy" not in path.metrics:
        raise StoreError(f"path of task {path.task!r} has no metrics.validation_accuracy, so a "
                         "same-task race cannot be decided; pass a scorer to the store")
    return float(path.metrics["validation_accuracy"])


def config_scorer(config: Any) -> ScoreFn:
    """The method's score (`mu2net.scoring.path_score`) for a `Config`, as a store scorer:
    `open_store(uri, scorer=config_scorer(cfg))` or `store.commit(ext, scorer=...)`."""
    from mu2net.scoring import path_score  # lazy: the store does not need the model code

    def score(path: Path, system: SystemView) -> float:
        return path_score(path, system, config.architecture, config.score)

    return score


# === small helpers ==========================================================================


class _Lru:
    """A thread-safe bounded mapping for immutable documents."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _check_hash(what: str, value: str) -> str:
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise StoreError(f"{what} {value!r} is invalid: expected a sha256 hex digest")
    return value


def _parse_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{where} is not valid JSON ({exc}); the object is corrupt") from None


def _entry_to_dict(e: QueueEntry) -> dict[str, Any]:
    return {"schema": "mu2net/queue_entry/v1", "id": e.id, "spec": e.spec, "mode": e.mode,
            "state": e.state, "run_id": e.run_id, "error": e.error,
            "enqueued_at": e.enqueued_at, "updated_at": e.updated_at, "extra": dict(e.extra)}


def _entry_from_dict(d: Mapping[str, Any], where: str) -> QueueEntry:
    if not isinstance(d, Mapping) or d.get("schema") != "mu2net/queue_entry/v1":
        raise SchemaError(f"{where} is not a queue entry (schema {d.get('schema')!r})")
    return QueueEntry(id=d["id"], spec=d["spec"], mode=d["mode"], state=d["state"],
                      run_id=d["run_id"], error=d["error"], enqueued_at=d["enqueued_at"],
                      updated_at=d["updated_at"], extra=d.get("extra", {}))


def _lease_to_dict(lease: Lease) -> dict[str, Any]:
    return {"schema": "mu2net/lease/v1", "run_id": lease.run_id,
            "base_version": lease.base_version, "acquired_at": lease.acquired_at,
            "expires_at": lease.expires_at, "blobs": sorted(lease.blobs)}


def _lease_from_dict(d: Mapping[str, Any], where: str) -> Lease:
    if not isinstance(d, Mapping) or d.get("schema") != "mu2net/lease/v1":
        raise SchemaError(f"{where} is not a lease (schema {d.get('schema')!r})")
    return Lease(run_id=d["run_id"], base_version=d["base_version"],
                 acquired_at=float(d["acquired_at"]), expires_at=float(d["expires_at"]),
                 blobs=tuple(d["blobs"]))


def decision_text(decision: Mapping[str, Any] | None) -> str:
    """One line describing a recorded same-task race decision ("" when there was none)."""
    if not decision:
        return ""
    inc, ex = decision["incoming"], decision["existing"]
    kept, lost = (inc, ex) if decision["kept"] == "incoming" else (ex, inc)
    return (f"same-task race on {decision['task']!r} at version {decision['at_version']}: kept "
            f"the {decision['kept']} path {kept['path'][:12]} (score {kept['score']:.6g}) over "
            f"{lost['path'][:12]} (score {lost['score']:.6g})")


# === the store ==============================================================================


class VersionedStore(ModelStore):
    """The versioned shared model on one backend. See the module docstring for the protocol.

    Args:
        backend: where the objects live (`LocalBackend`, `GcsBackend`).
        cache_dir: local cache of path documents and blobs keyed by hash (always verified on
            read); None disables it.
        scorer: decides same-task races (`config_scorer(config)` for the method's score);
            None compares `metrics.validation_accuracy`.
        max_attempts: rebases before a commit gives up with `ConflictError`.
    """

    def __init__(self, backend: ObjectBackend, *, cache_dir: str | None = DEFAULT_CACHE_DIR,
                 scorer: ScoreFn | None = None, max_attempts: int = 500,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.uri = backend.uri
        self.cache_dir = cache_dir
        self.scorer = scorer
        self.max_attempts = max_attempts
        self.clock = clock
        self._indices = _Lru(64)
        self._paths = _Lru(100_000)

    def __repr__(self) -> str:
        return f"VersionedStore({self.uri!r})"

    # === versions ===========================================================================

    def _read_pointer(self) -> tuple[int | None, int]:
        """(version the pointer names or None, its generation or 0 when missing)."""
        got = self.backend.read(HEAD_KEY)
        if got is None:
            return None, 0
        data, generation = got
        doc = _parse_json(data, f"{self.uri}/{HEAD_KEY}")
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
            raise IntegrityError(f"{self.uri}/{HEAD_KEY} is not a head pointer: {doc!r}")
        return doc["version"], generation

    def _probe(self, start: int | None) -> int | None:
        number = -1 if start is None else start
        while self.backend.exists(version_key(number + 1)):
            number += 1
        return None if number < 0 else number

    def head(self) -> int | None:
        return self._probe(self._read_pointer()[0])

    def _require_head(self) -> int:
        head = self.head()
        if head is None:
            raise StoreError(f"store {self.uri} is empty: initialise it with a root path first")
        return head

    def read_version(self, number: int) -> SystemVersion:
        cached = self._indices.get(number)
        if cached is not None:
            return cached
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise StoreError(f"version {number!r} is invalid: expected an integer >= 0")
        got = self.backend.read(version_key(number))
        if got is None:
            raise StoreError(f"version {number} does not exist in {self.uri} (head is "
                             f"{self.head()})")
        return self._parse_index(number, got[0])

    def _parse_index(self, number: int, data: bytes) -> SystemVersion:
        where = f"{self.uri}/{version_key(number)}"
        version = SystemVersion.from_dict(_parse_json(data, where))
        if version.number != number:
            raise IntegrityError(f"{where} holds version {version.number}, not {number}")
        self._indices.put(number, version)
        return version

    def _provenance(self, number: int) -> Mapping[str, Any]:
        """A version's provenance from the head of its index: canonical JSON sorts the keys,
        so `provenance` precedes the task table and the scan for a run id reads a few KiB per
        version whatever the number of tasks."""
        cached = self._indices.get(number)
        if cached is not None:
            return cached.provenance
        data = self.backend.read_range(version_key(number), 0, _PROVENANCE_PROBE_BYTES)
        if data is None:
            raise StoreError(f"version {number} does not exist in {self.uri}")
        if len(data) < _PROVENANCE_PROBE_BYTES:  # the whole index
            return self._parse_index(number, data).provenance
        marker = data.find(b'"provenance":')
        if marker >= 0:
            text = data[marker + len(b'"provenance":'):].decode("utf-8", errors="replace")
            try:
                provenance, _ = json.JSONDecoder().raw_decode(text)
            except json.JSONDecodeError:  # longer than the probe: read it all
                provenance = None
            if isinstance(provenance, dict):
                return provenance
        return self.read_version(number).provenance

    def read_path(self, path_hash: str) -> Path:
        _check_hash("path hash", path_hash)
        cached = self._paths.get(path_hash)
        if cached is not None:
            return cached
        data = self._read_verified("paths", path_key(path_hash), path_hash, "path document")
        path = Path.from_dict(_parse_json(data, f"{self.uri}/{path_key(path_hash)}"))
        self._paths.put(path_hash, path)
        return path

    def _read_paths(self, hashes: Iterable[str]) -> dict[str, Path]:
        """Several path documents, fetched in parallel (the full view of a large system)."""
        wanted = sorted(set(hashes))
        with ThreadPoolExecutor(_FETCH_THREADS) as pool:
            return dict(zip(wanted, pool.map(self.read_path, wanted)))

    def load_system(self, number: int | None = None) -> SystemView:
        version = self.read_version(self._require_head() if number is None else number)
        paths = self._read_paths([version.root, *version.tasks.values()])
        for task, path_hash in version.tasks.items():
            self._check_owner(paths[path_hash], task, version.number)
        return SystemView(version=version, root=paths[version.root],
                          paths={t: paths[h] for t, h in version.tasks.items()})

    def _check_owner(self, path: Path, task: str, number: int) -> None:
        if path.task != task:
            raise IntegrityError(f"version {number} maps task {task!r} to a path of task "
                                 f"{path.task!r}; the index is corrupt")

    def load_task(self, task: str, number: int | None = None) -> tuple[Path, dict[str, bytes]]:
        version = self.read_version(self._require_head() if number is None else number)
        if task == ROOT_TASK:
            path_hash = version.root
        elif task in version.tasks:
            path_hash = version.tasks[task]
        else:
            known = sorted(version.tasks)
            raise StoreError(f"task {task!r} has no path at version {version.number}; tasks "
                             f"there: {known[:20]}{' ...' if len(known) > 20 else ''} "
                             f"({len(known)}) or {ROOT_TASK!r}")
        path = self.read_path(path_hash)
        self._check_owner(path, task, version.number)
        return path, {c.blob: self.get_blob(c.blob) for c in path.components}

    # === blobs ==============================================================================

    def put_blob(self, data: bytes) -> str:
        blob_hash = sha256_hex(data)
        self._create(blob_key(blob_hash), data)
        return blob_hash

    def get_blob(self, blob_hash: str) -> bytes:
        _check_hash("blob hash", blob_hash)
        return self._read_verified("blobs", blob_key(blob_hash), blob_hash, "blob")

    def has_blob(self, blob_hash: str) -> bool:
        return self.backend.exists(blob_key(_check_hash("blob hash", blob_hash)))

    def _create(self, key: str, data: bytes) -> int:
        """Create-only write of a content-addressed object; bytes written (0 if present)."""
        if self.backend.exists(key):
            return 0
        try:
            self.backend.write(key, data, if_generation_match=0)
        except ConflictError:  # another writer stored the same content first
            return 0
        return len(data)

    def _read_verified(self, kind: str, key: str, content_hash: str, what: str) -> bytes:
        cache_file = (os.path.join(self.cache_dir, kind, content_hash)
                      if self.cache_dir is not None else None)
        if cache_file is not None:
            try:
                with open(cache_file, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                pass
            else:
                if sha256_hex(data) == content_hash:
                    return data
                log.warning("cached %s %s is corrupt; removing it and reading the store",
                            what, content_hash)
                os.unlink(cache_file)
        got = self.backend.read(key)
        if got is None:
            raise StoreError(f"{what} {content_hash} is missing from {self.uri}/{key}")
        data = got[0]
        actual = sha256_hex(data)
        if actual != content_hash:
            raise IntegrityError(f"{what} {self.uri}/{key} is tampered or truncated: its "
                                 f"{len(data)} bytes hash to {actual}, not {content_hash}; "
                                 "refusing to use it")
        if cache_file is not None:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            tmp = f"{cache_file}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, cache_file)
        return data

    def _upload_files(self, blob_files: Mapping[str, str]) -> tuple[int, set[str]]:
        """Upload an extension's blobs not yet stored: (bytes written, hashes already there)."""
        written, present = 0, set()
        for blob_hash, file_path in sorted(blob_files.items()):
            if self.backend.exists(blob_key(blob_hash)):
                present.add(blob_hash)
                continue
            data = _read_file(file_path, blob_hash)
            try:
                self.backend.write(blob_key(blob_hash), data, if_generation_match=0)
                written += len(data)
            except ConflictError:
                present.add(blob_hash)
        return written, present

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
        now = self.clock()
        version = SystemVersion(number=0, parent=None, root=root_hash, tasks={},
                                provenance={**provenance, "kind": "init", "path": root_hash,
                                            "method_version": root.method_version,
                                            "committed_at": _iso(now)})
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

    def commit(self, extension: Extension, *, scorer: ScoreFn | None = None) -> CommitResult:
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
        written, present = self._upload_files(ext.blob_files)
        self._verify_blobs(path, skip=set(ext.blob_files) - present)
        written += self._create(path_key(path_hash), encode(path.to_dict()))
        provenance = {"kind": "extension", "run_id": ext.run_id, "task": ext.task,
                      "mode": ext.mode, "path": path_hash, "method_version": path.method_version,
                      "code_version": ext.code_version, "config_name": ext.config_name,
                      "base_version": ext.base_version, "started_at": _iso(self.clock())}
        merge = _ExtensionMerge(self, ext.task, path, path_hash, base.tasks.get(ext.task),
                                scorer or self.scorer)
        result = self._publish(merge, provenance, ext.run_id, scanned=head, written=written)
        for blob_hash in sorted(present):  # see _restore_if_collected
            self._restore_if_collected(blob_hash, ext.blob_files[blob_hash])
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
        path = self.read_path(old_hash)
        self._check_owner(path, task, to_version)
        self._verify_blobs(path)
        provenance = {"kind": "rollback", "run_id": run_id, "task": task, "path": old_hash,
                      "to_version": to_version, "method_version": path.method_version,
                      "started_at": _iso(self.clock())}

        def merge(head_version: SystemVersion) -> tuple[dict[str, str], dict[str, Any]]:
            tasks = dict(head_version.tasks)
            replaced = tasks.get(task)
            tasks[task] = old_hash
            return tasks, {"replaced": replaced}

        return self._publish(merge, provenance, run_id, scanned=head, written=0)

    def _publish(self, merge: Callable[[SystemVersion], tuple[dict[str, str], dict[str, Any]]],
                 provenance: Mapping[str, Any], run_id: str, *, scanned: int,
                 written: int) -> CommitResult:
        """Create the next index on top of the head, rebasing until it wins the create."""
        for attempt in range(self.max_attempts):
            pointer, generation = self._read_pointer()
            head = self._probe(pointer)
            if head is None:
                raise StoreError(f"store {self.uri} is empty: initialise it first")
            if head > scanned:  # versions committed meanwhile: a duplicate of this run?
                found = self._find_run(run_id, head, scanned + 1, provenance["task"])
                if found is not None:
                    return found
                scanned = head
            head_version = self.read_version(head)
            tasks, extra = merge(head_version)
            version = SystemVersion(
                number=head + 1, parent=head, root=head_version.root, tasks=tasks,
                provenance={**provenance, **extra, "rebases": attempt,
                            "committed_at": _iso(self.clock())})
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
            provenance = self._provenance(number)
            if provenance.get("run_id") != run_id:
                continue
            if provenance.get("task") != task:
                raise StoreError(f"run id {run_id!r} already committed version {number} for task "
                                 f"{provenance.get('task')!r}, not {task!r}; run ids must be "
                                 "unique per run")
            return CommitResult(version=number, created=False,
                                decision=decision_text(provenance.get("decision")))
        return None

    def _restore_if_collected(self, blob_hash: str, file_path: str) -> None:
        """A blob this commit found already stored (so did not upload) may have been deleted
        by a garbage collection that decided before this commit published; put it back."""
        if not self.backend.exists(blob_key(blob_hash)):
            log.warning("blob %s was collected while a commit referenced it; restoring it",
                        blob_hash)
            self._create(blob_key(blob_hash), _read_file(file_path, blob_hash))

    # === tasks ==============================================================================

    def put_task_info(self, info: TaskInfo) -> None:
        key = task_info_key(info.name, info.content_hash)
        data = encode(info.to_dict())
        try:
            self.backend.write(key, data, if_generation_match=0)
        except ConflictError:
            got = self.backend.read(key)
            if got is None or got[0] != data:
                raise StoreError(f"{self.uri}/{key} already records task {info.name!r} with "
                                 "other metadata for the same content hash") from None

    def task_infos(self, name: str) -> list[TaskInfo]:
        validate_task_name(name)
        infos = []
        for key in self.backend.list(f"tasks/{name}/"):
            got = self.backend.read(key)
            if got is not None:
                infos.append(TaskInfo.from_dict(_parse_json(got[0], f"{self.uri}/{key}")))
        return infos

    # === the task queue =====================================================================

    def enqueue(self, spec: str, mode: str = "onboard", *, entry_id: str | None = None
                ) -> QueueEntry:
        if not isinstance(spec, str) or not spec:
            raise SchemaError(f"queue_entry.spec={spec!r} is invalid: expected a task source")
        if mode not in QUEUE_MODES:
            raise SchemaError(f"queue_entry.mode={mode!r} is invalid: expected one of "
                              f"{list(QUEUE_MODES)}")
        now = self.clock()
        if entry_id is None:  # sorts by enqueue time, so the queue lists oldest first
            entry_id = f"{_iso(now).replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:8]}"
        elif not _ENTRY_ID_RE.match(entry_id):
            raise SchemaError(f"queue_entry.id={entry_id!r} is invalid: use 1-128 characters "
                              "from [A-Za-z0-9_.-], starting with a letter or digit")
        entry = QueueEntry(id=entry_id, spec=spec, mode=mode, state="pending",
                           enqueued_at=_iso(now), updated_at=_iso(now))
        try:
            self.backend.write(queue_key(entry_id), encode(_entry_to_dict(entry)),
                               if_generation_match=0)
        except ConflictError:
            existing, _ = self._read_entry(entry_id)
            if (existing.spec, existing.mode) != (spec, mode):
                raise StoreError(f"queue entry {entry_id!r} already exists for "
                                 f"{existing.spec!r} ({existing.mode})") from None
            return existing
        return entry

    def _read_entry(self, entry_id: str) -> tuple[QueueEntry, int]:
        got = self.backend.read(queue_key(entry_id))
        if got is None:
            raise StoreError(f"queue entry {entry_id!r} does not exist in {self.uri}")
        where = f"{self.uri}/{queue_key(entry_id)}"
        return _entry_from_dict(_parse_json(got[0], where), where), got[1]

    def _entries(self) -> list[tuple[QueueEntry, int]]:
        out = []
        for key in self.backend.list("queue/"):
            got = self.backend.read(key)
            if got is not None:  # finished and removed meanwhile
                where = f"{self.uri}/{key}"
                out.append((_entry_from_dict(_parse_json(got[0], where), where), got[1]))
        return sorted(out, key=lambda pair: pair[0].id)

    def take_next(self, run_id: str, *, abandoned_after_s: float = 6 * 3600
                  ) -> QueueEntry | None:
        if not run_id:
            raise SchemaError("take_next run_id is empty")
        entries = self._entries()
        for entry, _ in entries:  # a retried take returns what this run already holds
            if entry.state == "running" and entry.run_id == run_id:
                return entry
        now = self.clock()
        live = {lease.run_id for lease in self.leases() if lease.expires_at > now}
        # Pending entries first, oldest first; then entries whose run died: running, not
        # updated for `abandoned_after_s`, and holding no live lease (runs renew theirs).
        pending = [(e, g) for e, g in entries if e.state == "pending"]
        abandoned = [(e, g) for e, g in entries
                     if e.state == "running" and e.run_id not in live
                     and now - _epoch(e.updated_at) > abandoned_after_s]
        for entry, generation in pending + abandoned:
            extra = dict(entry.extra)
            if entry.state == "running":
                extra["abandoned_by"] = [*extra.get("abandoned_by", []), entry.run_id]
            taken = replace(entry, state="running", run_id=run_id, updated_at=_iso(now),
                            extra=extra)
            try:
                self.backend.write(queue_key(entry.id), encode(_entry_to_dict(taken)),
                                   if_generation_match=generation)
                return taken
            except ConflictError:
                current, _ = self._read_entry(entry.id)
                if current.state == "running" and current.run_id == run_id:
                    return current  # our write landed; the conflict was the client's retry
        return None

    def finish(self, entry_id: str, *, error: str = "") -> QueueEntry:
        state = "failed" if error else "done"
        for _ in range(self.max_attempts):
            entry, generation = self._read_entry(entry_id)
            if entry.state == state and entry.error == error:
                return entry
            if entry.state != "running":
                raise StoreError(f"queue entry {entry_id!r} is {entry.state}; only a running "
                                 f"entry can become {state}")
            done = replace(entry, state=state, error=error, updated_at=_iso(self.clock()))
            try:
                self.backend.write(queue_key(entry_id), encode(_entry_to_dict(done)),
                                   if_generation_match=generation)
                return done
            except ConflictError:
                continue
        raise ConflictError(f"queue entry {entry_id!r} kept changing; retry later")

    def queue(self) -> list[QueueEntry]:
        return [entry for entry, _ in self._entries()]

    # === history ============================================================================

    def versions(self, limit: int | None = None) -> list[SystemVersion]:
        out: list[SystemVersion] = []
        number = self.head()
        while number is not None and (limit is None or len(out) < limit):
            version = self.read_version(number)
            out.append(version)
            number = version.parent
        return out

    def show(self, number: int) -> dict[str, Any]:
        version = self.read_version(number)
        changes = (self.diff(version.parent, number) if version.parent is not None
                   else {"added": dict(version.tasks), "removed": {}, "changed": {}})
        return {"number": version.number, "parent": version.parent, "root": version.root,
                "num_tasks": len(version.tasks), "provenance": dict(version.provenance),
                "decision": decision_text(version.provenance.get("decision")),
                "added": changes["added"], "removed": changes["removed"],
                "changed": changes["changed"]}

    def diff(self, a: int, b: int) -> dict[str, Any]:
        va, vb = self.read_version(a), self.read_version(b)
        ta, tb = va.tasks, vb.tasks
        return {"from": a, "to": b, "root_changed": va.root != vb.root,
                "added": {t: tb[t] for t in sorted(set(tb) - set(ta))},
                "removed": {t: ta[t] for t in sorted(set(ta) - set(tb))},
                "changed": {t: [ta[t], tb[t]] for t in sorted(set(ta) & set(tb))
                            if ta[t] != tb[t]}}

    # === leases and garbage collection ======================================================

    def acquire_lease(self, run_id: str, *, ttl_s: float, base_version: int | None = None,
                      blobs: Sequence[str] = ()) -> Lease:
        if not run_id:
            raise SchemaError("lease run_id is empty")
        for blob_hash in blobs:
            _check_hash("lease blob", blob_hash)
        key = lease_key(run_id)
        for _ in range(self.max_attempts):
            now = self.clock()
            got = self.backend.read(key)
            lease = Lease(run_id=run_id, base_version=base_version, acquired_at=now,
                          expires_at=now + ttl_s, blobs=tuple(sorted(set(blobs))))
            generation = 0
            if got is not None:
                old = _lease_from_dict(_parse_json(got[0], f"{self.uri}/{key}"), key)
                bases = [v for v in (old.base_version, base_version) if v is not None]
                lease = replace(lease, acquired_at=old.acquired_at,
                                base_version=min(bases) if bases else None,
                                blobs=tuple(sorted(set(old.blobs) | set(blobs))))
                generation = got[1]
            try:
                self.backend.write(key, encode(_lease_to_dict(lease)),
                                   if_generation_match=generation)
                return lease
            except ConflictError:
                continue
        raise ConflictError(f"lease of run {run_id!r} kept changing; retry later")

    def release_lease(self, run_id: str) -> None:
        self.backend.delete(lease_key(run_id))

    def leases(self) -> list[Lease]:
        out = []
        for key in self.backend.list("leases/"):
            got = self.backend.read(key)
            if got is not None:
                out.append(_lease_from_dict(_parse_json(got[0], f"{self.uri}/{key}"), key))
        return sorted(out, key=lambda lease: lease.run_id)

    def gc(self, *, retention_s: float, dry_run: bool = True,
           now: float | None = None) -> list[str]:
        """Blob keys referenced by no retained version and no active lease, deleted unless
        `dry_run`. A version is retained while it is the head or was the head at some time in
        the last `retention_s` seconds (its successor was committed within the window), and
        from the base version of any active lease on. Blobs written within the window or after
        an active lease was taken are kept too. Choose `retention_s` longer than the longest
        run. Indices and path documents are small and kept for history. Interrupted local
        writes older than the window are swept too (their names are in the returned list)."""
        if not retention_s >= 0:
            raise StoreError(f"gc retention_s={retention_s!r} is invalid: expected seconds >= 0 "
                             "(longer than the longest run)")
        now = self.clock() if now is None else now
        cutoff = now - retention_s
        head = self.head()
        if head is None:
            return []
        active = [lease for lease in self.leases() if lease.expires_at > now]
        floors = [lease.base_version for lease in active if lease.base_version is not None]
        floor = min(floors) if floors else None
        path_hashes: set[str] = set()
        number: int | None = head
        successor_committed = now
        while number is not None:
            version = self.read_version(number)
            in_window = successor_committed >= cutoff
            if not (number == head or in_window or (floor is not None and number >= floor)):
                break
            path_hashes.add(version.root)
            path_hashes.update(version.tasks.values())
            successor_committed = _epoch(version.provenance["committed_at"])
            number = version.parent
        referenced = {c.blob for p in self._read_paths(path_hashes).values()
                      for c in p.components}

        def protected(leases: list[Lease]) -> tuple[set[str], float]:
            blobs = {b for lease in leases for b in lease.blobs}
            since = min([lease.acquired_at for lease in leases], default=float("inf"))
            return blobs, min(since, cutoff)

        leased, young = protected(active)
        candidates = [info for info in self.backend.list_info("blobs/")
                      if info.key[len("blobs/"):] not in referenced
                      and info.key[len("blobs/"):] not in leased and info.updated < young]
        if not dry_run and candidates:
            # Leases taken while this collection was deciding still count.
            leased, young = protected([lease for lease in self.leases()
                                       if lease.expires_at > self.clock()])
            candidates = [info for info in candidates
                          if info.key[len("blobs/"):] not in leased and info.updated < young]
            for info in candidates:
                self.backend.delete(info.key)
        swept = self.backend.sweep_partial(cutoff, dry_run=dry_run)
        return sorted(info.key for info in candidates) + swept


class _ExtensionMerge:
    """Applies one extension to a head index; decides a same-task race by score."""

    def __init__(self, store: VersionedStore, task: str, path: Path, path_hash: str,
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
            merged = SystemView(
                version=replace(head, number=head.number + 1, parent=head.number,
                                tasks=incoming_tasks),
                root=view.root, paths={**view.paths, self.task: self.path})
            s_in, s_ex = self.scorer(self.path, merged), self.scorer(existing, view)
        kept = "incoming" if s_in >= s_ex else "existing"  # ties go to the newer path
        decision = {"kind": "same_task_race", "task": self.task, "at_version": head.number,
                    "kept": kept, "incoming": {"path": self.path_hash, "score": s_in},
                    "existing": {"path": current, "score": s_ex}}
        return (incoming_tasks if kept == "incoming" else tasks), {"decision": decision}


def _read_file(file_path: str, blob_hash: str) -> bytes:
    try:
        with open(file_path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StoreError(f"blob file {file_path!r} for {blob_hash} cannot be read: {exc}") from None
    actual = sha256_hex(data)
    if actual != blob_hash:
        raise IntegrityError(f"blob file {file_path!r} hashes to {actual}, not the {blob_hash} "
                             "it is listed under")
    return data
