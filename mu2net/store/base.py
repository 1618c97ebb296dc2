"""The store interface: a versioned shared model in object storage.

Two layers:

* `ObjectBackend` -- bytes under string keys with GCS-style generation preconditions. One
  implementation per URI scheme (a local folder, `gs://bucket/prefix`). Only this layer knows the
  medium.
* `ModelStore` -- the versioned shared model built on one backend: immutable content-addressed
  blobs and path documents, one immutable index per version, a head pointer moved by
  compare-and-swap, the task queue, history and garbage collection.

Rules every implementation keeps: a version without a committed index does not exist; the head
is read in O(1) from the pointer (never by listing and sorting); a commit writes its new blobs,
one path document, one index and the pointer, never the whole system; every write is safe to
retry.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mu2net.schema import Extension, Path, SystemVersion, SystemView
from mu2net.task_info import TaskInfo

# How a same-task race is decided: the score of a path read against a system view (the merged
# version). `mu2net.scoring.config_scorer(config)` builds the method's scorer.
ScoreFn = Callable[[Path, SystemView], float]


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object (from a listing): data size in bytes, generation, and the
    time of its last write (seconds since the epoch, the medium's clock)."""

    key: str
    size: int
    generation: int
    updated: float


class ObjectBackend(abc.ABC):
    """Bytes under keys (`a/b/c`), with generations for compare-and-swap.

    `generation` is a positive integer that changes on every write of a key; 0 in
    `if_generation_match` means "only if the key does not exist yet".
    """

    uri: str

    @abc.abstractmethod
    def read(self, key: str) -> tuple[bytes, int] | None:
        """(data, generation), or None when the key does not exist."""

    @abc.abstractmethod
    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        """Write in one shot; returns the new generation. Raises `ConflictError` when
        `if_generation_match` is given and does not match the key's current generation."""

    @abc.abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes | None:
        """Up to `length` bytes from offset `start` (fewer at the end), or None when the key
        does not exist. Lets the store read an index's provenance without its task table."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key exists (one metadata request, no data transfer)."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under a prefix. For history and garbage collection only, never for the head."""

    @abc.abstractmethod
    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        """Like `list`, with size, generation and write time (garbage collection's age test)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove a key; a missing key is not an error."""

    def sweep_partial(self, older_than: float, dry_run: bool = True  # noqa: ARG002
                      ) -> list[str]:
        """Leftovers of interrupted writes last touched before `older_than` (epoch seconds),
        removed unless dry_run. Media whose writes are atomic (GCS) have none."""
        return []


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: the version it created (or found, for a retried run), the bytes it
    wrote, how many times it rebased, and the decision taken in a same-task race. `note` is
    set when nothing was published (`mu2net.store.publish`: no change, below the gate); then
    `version` is the head that was kept."""

    version: int
    created: bool
    bytes_written: int = 0
    rebases: int = 0
    decision: str = ""
    note: str = ""


@dataclass(frozen=True)
class QueueEntry:
    """One task-queue item: pending -> running -> done | failed (with the error)."""

    id: str
    spec: str
    mode: str = "onboard"
    state: str = "pending"
    run_id: str = ""
    error: str = ""
    enqueued_at: str = ""
    updated_at: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lease:
    """A running run's claim that garbage collection must respect until `expires_at`: every
    version from `base_version` on, every blob in `blobs`, and every blob written after
    `acquired_at` (times in seconds since the epoch)."""

    run_id: str
    base_version: int | None
    acquired_at: float
    expires_at: float
    blobs: tuple[str, ...] = ()


class ModelStore(abc.ABC):
    """The versioned shared model. See the module docstring for the invariants."""

    uri: str

    # --- versions ---------------------------------------------------------------------------
    @abc.abstractmethod
    def head(self) -> int | None:
        """The newest committed version number (O(1)), or None for an empty store."""

    @abc.abstractmethod
    def read_version(self, number: int) -> SystemVersion:
        """The committed index of a version; `StoreError` if it does not exist."""

    @abc.abstractmethod
    def read_path(self, path_hash: str) -> Path:
        """A path document by its content hash (verified)."""

    @abc.abstractmethod
    def load_system(self, number: int | None = None) -> SystemView:
        """A version (default: head) with its path documents resolved; no blobs are read."""

    @abc.abstractmethod
    def init(self, root: Path, blob_files: Mapping[str, str], provenance: Mapping[str, Any]
             ) -> CommitResult:
        """Create version 0 holding only the root path; refuses a non-empty store."""

    @abc.abstractmethod
    def commit(self, extension: Extension, *, scorer: ScoreFn | None = None,
               min_gain: float = 0.0) -> CommitResult:
        """Publish an extension atomically on top of the head, rebasing on races; idempotent
        per `extension.run_id`. `scorer` decides a same-task race (default: the store's).
        Publishes nothing, saying why in `note`, when the path is the task's path at the
        base version, or (with `min_gain` > 0) when its score gains less than `min_gain` over
        the head's path of the task."""

    @abc.abstractmethod
    def load_task(self, task: str, number: int | None = None) -> tuple[Path, dict[str, bytes]]:
        """One task's path at a version (default: head) and its verified blobs by hash, reading
        only that task's path document and blobs."""

    # --- blobs ------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store bytes under their sha256 (no-op if present); returns the hash."""

    @abc.abstractmethod
    def get_blob(self, blob_hash: str) -> bytes:
        """Bytes of a blob, verified against the hash (`IntegrityError` if tampered);
        served from a local cache keyed by hash when possible."""

    @abc.abstractmethod
    def has_blob(self, blob_hash: str) -> bool:
        """Whether the blob exists."""

    # --- tasks ------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_task_info(self, info: TaskInfo) -> None:
        """Record a prepared task's metadata (immutable per content hash)."""

    @abc.abstractmethod
    def task_infos(self, name: str) -> list[TaskInfo]:
        """Every recorded preparation of a task (empty if none)."""

    @abc.abstractmethod
    def put_task_data_dir(self, name: str, data_dir: str) -> None:
        """Record where a task's data was last read (a re-evolve reads it there again)."""

    @abc.abstractmethod
    def task_data_dir(self, name: str) -> str:
        """The data folder recorded for a task ('' if none)."""

    @abc.abstractmethod
    def enqueue(self, spec: str, mode: str = "onboard", *, entry_id: str | None = None,
                data_dir: str = "") -> QueueEntry:
        """Add a pending task source to the onboarding queue (idempotent per `entry_id`);
        `data_dir` (recorded in `extra`) is where the entry's runs read its data."""

    @abc.abstractmethod
    def take_next(self, run_id: str, *, abandoned_after_s: float = 6 * 3600,
                  deadline_s: float | None = None) -> QueueEntry | None:
        """Atomically move the oldest pending entry to running for this run (None if empty).
        When nothing is pending, an entry whose run died (running, unchanged for
        `abandoned_after_s`, its run holding no live lease) is taken over instead. With
        `deadline_s`, the entry records `deadline_at = now + deadline_s`, after which
        `give_back_overdue` (run first, by every take) returns it to pending."""

    @abc.abstractmethod
    def give_back_overdue(self, *, max_attempts: int = 3) -> list[QueueEntry]:
        """Running entries past their deadline back to pending (failed after
        `max_attempts` runs); returns the entries changed."""

    @abc.abstractmethod
    def finish(self, entry_id: str, *, error: str = "", run_id: str = "") -> QueueEntry:
        """Mark a running entry done, or failed with the error. With `run_id`, an entry this
        run no longer holds (given back after its deadline) is left as it is."""

    @abc.abstractmethod
    def queue(self) -> list[QueueEntry]:
        """All entries, oldest first."""

    # --- history ----------------------------------------------------------------------------
    @abc.abstractmethod
    def versions(self, limit: int | None = None) -> list[SystemVersion]:
        """The committed chain from the head back to version 0 (follows parent links)."""

    @abc.abstractmethod
    def show(self, number: int) -> dict[str, Any]:
        """One version: provenance and the tasks it changed relative to its parent."""

    @abc.abstractmethod
    def diff(self, a: int, b: int) -> dict[str, Any]:
        """Tasks added, removed and changed (path hashes) from version `a` to version `b`."""

    @abc.abstractmethod
    def rollback_task(self, task: str, to_version: int, run_id: str) -> CommitResult:
        """A new version in which one task's path is the one it had at `to_version`; nothing
        (a `note`) when the head already has that path."""

    @abc.abstractmethod
    def gc(self, *, retention_s: float, dry_run: bool = True) -> list[str]:
        """Blobs referenced by no version within the retention window and by no active
        lease; deleted unless dry_run. Returns the keys (to be) removed."""

    # --- leases -----------------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_lease(self, run_id: str, *, ttl_s: float, base_version: int | None = None,
                      blobs: Sequence[str] = ()) -> Lease:
        """Create or renew a run's lease (renewal keeps earlier blobs and the base version)."""

    @abc.abstractmethod
    def stage_blobs(self, run_id: str, blob_files: Mapping[str, str], *, ttl_s: float,
                    base_version: int | None = None) -> int:
        """Put a run's new blobs (sha256 -> local file) into the store's content-addressed
        blobs under the run's lease, before any version references them, so pipeline steps
        pass hashes instead of copies. Idempotent; returns the bytes written."""

    @abc.abstractmethod
    def release_lease(self, run_id: str) -> None:
        """Drop a run's lease; releasing a missing lease is not an error."""

    @abc.abstractmethod
    def leases(self) -> list[Lease]:
        """Every lease on record, expired or not."""
