"""Checking and repairing a store: what `mu2net store check` and `mu2net store repair` run.

`check_store` reads every object straight from the backend (never the local cache, which could
hide a damaged store) and verifies the indices it covers, every path document and blob hash
they reference, and the head pointer. By default it covers the versions gc retains (the head
and the retention window: `mu2net.store.check_scope`), so its cost is bounded by the window,
not the history; `full` (`store check --all`, the incident tool) covers every index.
Old versions whose blobs garbage collection removed on purpose are told apart from damage:
only missing data that a retained version needs is a problem.

Every document is read through its schema (`mu2net.store.documents`); one that fails, a local
file edited by hand (no object header) or a symbolic link out of the store is a problem naming
its key, never a crash. Blobs that do not hash to their name are found whether referenced or not.

A gap -- an index missing below the newest one present -- is damage, never a new head: the head
is the newest index present, commits number after it (`ReadOps._probe(past_gaps=True)`), and
repair never moves HEAD back past it. A lost index cannot be rebuilt (its task table is gone):
check keeps reporting the gap, naming the missing files, until they are restored from a backup;
the head, its tasks and new commits are unaffected, and history stops at the gap.

`repair_store` fixes what can be fixed without rewriting history, which is immutable:
- the HEAD pointer (missing, corrupt, hand-edited, naming a missing version, or stopping
  readers before a gap) is set to the newest index present;
- when the newest index is itself damaged, a new version repeats the newest readable one;
- a task whose path at the head references missing data is rolled back (a new version) to the
  newest earlier version whose path is complete;
- damaged leases and a damaged `GC` register are removed (they protect or block nothing
  anyone can read), and junk under a blob's name that no path references is deleted;
- temporary files and orphaned blobs past the retention window are collected (`gc`).
What it cannot fix (a gap, a damaged queue entry or task record) it names, with what to do.
It only plans unless `apply` is true.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mu2net.errors import IntegrityError, StoreError
from mu2net.schema import Path, SystemVersion, sha256_hex
from mu2net.store.check_scope import fetch, info_listing, listing, scan_all, scan_window
from mu2net.store.collect import referenced_paths
from mu2net.store.documents import parse_document
from mu2net.store.layout import GC_KEY, HEAD_KEY, blob_key, path_key
from mu2net.store.summaries import check_summaries
from mu2net.store.versioned import VersionedStore

DEFAULT_RETENTION_S = 7 * 86400.0  # gc's default window, which a default check covers
_HASH_KEY_RE = re.compile(r"^(?:blobs/|paths/)([0-9a-f]{64})(?:\.json)?$")
# Small documents checked against their schema: listing prefix -> document kind.
_DOCUMENTS = {"leases/": "lease", "queue/": "queue_entry", "tasks/": "task_record"}


@dataclass
class CheckReport:
    """What `check_store` found. `problems` make the store unusable or unsafe; `notes` are
    expected states (old versions collected by gc, orphans waiting for gc)."""

    uri: str
    full: bool = True  # every index (`--all`), or only the versions gc retains (`covered`)
    covered: list[int] = field(default_factory=list)  # [oldest, newest] version checked
    retention_s: float = DEFAULT_RETENTION_S
    head_pointer: int | None = None
    head: int | None = None  # the newest index present that reads
    newest: int | None = None  # the newest index present, readable or not
    versions: int = 0
    paths: int = 0
    blobs: int = 0
    bytes_verified: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    orphan_paths: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    broken_tasks: dict[str, str] = field(default_factory=dict)  # task at head -> reason
    head_damaged: bool = False  # HEAD missing, corrupt, or not leading readers to `newest`
    gaps: list[int] = field(default_factory=list)  # versions missing below `newest`
    junk_blobs: list[str] = field(default_factory=list)  # unreferenced, wrong bytes
    damaged: dict[str, str] = field(default_factory=dict)  # other document key -> reason
    damaged_indices: dict[int, str] = field(default_factory=dict)  # present, unreadable

    @property
    def ok(self) -> bool:
        return not self.problems

    def coverage(self) -> str:
        """Which versions this check verified, with what they reference."""
        if self.full:
            return "every index present (--all), every path and blob they reference"
        if not self.covered:
            return "no version (none found)"
        low, high = self.covered
        return (f"versions {low}..{high} (the head and gc's retention window of "
                f"{self.retention_s / 3600:g} h) and the paths and blobs they reference; older "
                "versions and unreferenced blobs' bytes not audited (--all does)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "coverage": self.coverage()}

    def text(self) -> str:
        lines = [f"store {self.uri}: {'OK' if self.ok else 'DAMAGED'}",
                 f"  head pointer {self.head_pointer}, newest index {self.newest} (newest "
                 f"readable {self.head}); {self.versions} versions, {self.paths} path "
                 f"documents, {self.blobs} blobs ({self.bytes_verified:,} bytes hashed)",
                 f"  covered: {self.coverage()}",
                 f"  orphans: {len(self.orphan_blobs)} blobs, {len(self.orphan_paths)} path "
                 f"documents; {len(self.temp_files)} temporary files"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.ok:
            lines.append(f"  to repair: mu2net store repair --store {self.uri} (add --apply)")
        return "\n".join(lines)


def _check_head(store: VersionedStore, report: CheckReport) -> None:
    data, error = fetch(store, HEAD_KEY)
    if data is None:
        if error:
            report.problems.append(f"HEAD cannot be read: {error}")
            report.head_damaged = True
        elif report.newest is not None:
            report.notes.append("HEAD is missing; readers probe forward from version 0")
            report.head_damaged = bool(report.gaps)
        return
    try:
        number = parse_document("head", data, HEAD_KEY)
    except IntegrityError as exc:
        report.problems.append(f"HEAD is not a pointer ({len(data)} bytes: {data[:40]!r}): "
                               f"{exc}")
        report.head_damaged = True
        return
    report.head_pointer = number
    if report.newest is None or number > report.newest:
        report.problems.append(f"HEAD names version {number}, past the newest index "
                               f"{report.newest}")
        report.head_damaged = True
        return
    reached = number
    while reached + 1 <= report.newest and reached + 1 not in report.gaps:
        reached += 1
    if reached < report.newest:
        report.problems.append(f"HEAD names version {number}: readers stop at version "
                               f"{reached}, before the gap, although version {report.newest} "
                               "exists")
        report.head_damaged = True


def _verified(store: VersionedStore, key: str, content_hash: str, report: CheckReport,
              hash_blobs: bool) -> bytes | None | bool:
    """The object's bytes (or True when present and hashing is off); None when missing; False
    when it is damaged (recorded as a problem)."""
    if not hash_blobs and key.startswith("blobs/"):
        try:  # no data read: an existence check that also sees a link out or a bad header
            return True if store.backend.read_range(key, 0, 0) is not None else None
        except StoreError as exc:
            report.problems.append(str(exc))
            return False
    data, error = fetch(store, key)
    if error:
        report.problems.append(error)
        return False
    if data is None:
        return None
    report.bytes_verified += len(data)
    if sha256_hex(data) != content_hash:
        report.problems.append(f"{key} is tampered or truncated: its {len(data)} bytes do not "
                               f"hash to {content_hash}")
        return False
    return data


def check_store(store: VersionedStore, *, hash_blobs: bool = True, full: bool = False,
                retention_s: float = DEFAULT_RETENTION_S) -> CheckReport:
    """Verify the store from the backend: by default the versions gc retains with
    `retention_s` (the head and its window, `check_scope.scan_window`: bounded by the window,
    not the history) and everything they reference; with `full` (`--all`), every index.
    `hash_blobs=False` only checks that blobs exist (a quick check of a large store)."""
    report = CheckReport(uri=store.uri, full=full, retention_s=retention_s)
    versions = scan_all(store, report) if full else scan_window(store, report, retention_s)
    _check_head(store, report)
    head = report.head
    path_hashes, blob_hashes, broken_paths = _verify_reachable(store, versions, report,
                                                                hash_blobs)
    head_hashes = set()
    if head is not None:
        head_version = versions[head]
        head_hashes = referenced_paths(head_version)
        for task, path_hash in sorted(head_version.tasks.items()):
            if path_hash in broken_paths:
                report.broken_tasks[task] = broken_paths[path_hash]
                report.problems.append(f"task {task!r} at the head (version {head}) cannot be "
                                       f"loaded: {broken_paths[path_hash]}")
        if head_version.root in broken_paths:
            report.problems.append(f"the root path at the head cannot be loaded: "
                                   f"{broken_paths[head_version.root]}")
    old_broken = sorted({n for n, _, _ in _uses(versions, set(broken_paths) - head_hashes)})
    if old_broken:
        report.notes.append(f"{len(old_broken)} older versions cannot be fully loaded (their "
                            f"blobs were collected by gc, or are damaged): {old_broken[:20]}")
    _find_orphans(store, report, path_hashes, blob_hashes, hash_blobs, full)
    _check_documents(store, report)
    report.problems += check_summaries(store, versions,
                                       _head_paths(store, versions, head, broken_paths), head)
    return report


def _head_paths(store: VersionedStore, versions: Mapping[int, SystemVersion], head: int | None,
                broken_paths: Mapping[str, str]) -> dict[str, Path]:
    """The head's loadable path documents (already verified by the walk, read again from the
    store's cache): what the head's summary is compared with."""
    if head is None or head not in versions:
        return {}
    hashes = set(versions[head].tasks.values()) - set(broken_paths)
    return {h: store.read_path(h) for h in hashes}


def _verify_reachable(store: VersionedStore, versions: Mapping[int, SystemVersion],
                      report: CheckReport, hash_blobs: bool
                      ) -> tuple[set[str], set[str], dict[str, str]]:
    """Verify every object the checked `versions` reference, each once: path documents (hash,
    schema, owning task), then their blobs (hash, or existence without `hash_blobs`). Every
    object kind an index references is walked here. Returns (path hashes, blob hashes
    referenced, path hash -> why it cannot be loaded)."""
    # hash -> the tasks that name it (not every (version, task) pair: at 10,000 versions of
    # 1,000 tasks that list alone held 10 million tuples); versions are walked again only
    # for the rare hash that is broken or named by the wrong task.
    path_users: dict[str, set[str]] = {}
    for version in versions.values():
        path_users.setdefault(version.root, set()).add("(root)")
        for task, path_hash in version.tasks.items():
            path_users.setdefault(path_hash, set()).add(task)
    paths: dict[str, Path] = {}
    broken_paths: dict[str, str] = {}
    for path_hash in sorted(path_users):
        data = _verified(store, path_key(path_hash), path_hash, report, True)
        if not isinstance(data, bytes):
            broken_paths[path_hash] = "its path document is missing" if data is None else (
                "its path document is corrupt")
            continue
        try:
            paths[path_hash] = parse_document("path", data, path_key(path_hash))
        except IntegrityError as exc:
            report.problems.append(str(exc))
            broken_paths[path_hash] = "its path document does not parse"
    wrong = {(path_hash, task) for path_hash, users in path_users.items()
             if (path := paths.get(path_hash)) is not None
             for task in users if task != "(root)" and path.task != task}
    for number, task, path_hash in _uses(versions, {h for h, _ in wrong}):
        if (path_hash, task) in wrong:
            report.problems.append(f"version {number} maps task {task!r} to a path of "
                                   f"task {paths[path_hash].task!r}")
    blob_users: dict[str, set[str]] = {}
    for path_hash, path in paths.items():
        for component in path.components:
            blob_users.setdefault(component.blob, set()).add(path_hash)
    report.paths, report.blobs = len(paths), len(blob_users)
    for blob_hash in sorted(blob_users):
        state = _verified(store, blob_key(blob_hash), blob_hash, report, hash_blobs)
        if state is None or state is False:
            for path_hash in blob_users[blob_hash]:
                broken_paths.setdefault(path_hash, f"blob {blob_hash} is "
                                        f"{'missing' if state is None else 'corrupt'}")
    return set(path_users), set(blob_users), broken_paths


def _uses(versions: Mapping[int, SystemVersion], hashes: set[str]
          ) -> Iterator[tuple[int, str, str]]:
    """(version, task or "(root)", path hash) for each use of one of `hashes`, by version."""
    if not hashes:
        return
    for number, version in sorted(versions.items()):
        if version.root in hashes:
            yield number, "(root)", version.root
        for task, path_hash in version.tasks.items():
            if path_hash in hashes:
                yield number, task, path_hash


def _find_orphans(store: VersionedStore, report: CheckReport, paths: set[str],
                  blobs: set[str], hash_blobs: bool, full: bool) -> None:
    """Blobs (with `full`, path documents too) that nothing checked references. They are
    hashed for junk (bytes that are not their name's hash block storing the real blob): with
    `full` all of them; by default those written within the retention window, as the next
    gc deletes the older ones. `paths/` (kept for history) is listed only with `full`."""
    young = float("-inf") if full else store.clock() - report.retention_s
    listed = [("blobs/", blobs, report.orphan_blobs)]
    listed += [("paths/", paths, report.orphan_paths)] if full else []
    for prefix, referenced, out in listed:
        for info in info_listing(store, prefix, report):
            key = info.key
            match = _HASH_KEY_RE.match(key)
            if match is None:
                report.problems.append(f"unexpected object {key} under {prefix}")
            elif match.group(1) not in referenced:
                if (hash_blobs and info.updated >= young
                        and _is_junk(store, key, match.group(1))):
                    report.junk_blobs.append(key)
                    report.problems.append(f"{key} does not hold the bytes its name is the hash "
                                           "of (junk, or damaged), and nothing references it")
                else:
                    out.append(key)
    report.temp_files = store.backend.sweep_partial(time.time() + 1, dry_run=True)
    if report.orphan_blobs:
        report.notes.append(f"{len(report.orphan_blobs)} blobs no "
                            f"{'version' if full else 'covered version'} references (staged by "
                            "running or dead runs, or older versions'; gc collects them past "
                            "retention)")


def _is_junk(store: VersionedStore, key: str, content_hash: str) -> bool:
    data, error = fetch(store, key)
    return bool(error) or (data is not None and sha256_hex(data) != content_hash)


def _check_documents(store: VersionedStore, report: CheckReport) -> None:
    """Leases, queue entries, task records and the `GC` register against their schemas."""
    for prefix, kind in _DOCUMENTS.items():
        for key in listing(store, prefix, report):
            data, error = fetch(store, key)
            if data is not None:
                try:
                    parse_document(kind, data, key)
                except IntegrityError as exc:
                    error = str(exc)
            if error:
                report.damaged[key] = error
                report.problems.append(error)
    data, error = fetch(store, GC_KEY)
    if data is not None:
        try:
            parse_document("gc_registry", data, GC_KEY)
        except IntegrityError as exc:
            error = str(exc)
    if error:
        report.damaged[GC_KEY] = error
        report.problems.append(error)



def __getattr__(name: str) -> Any:
    """`repair_store` and `RepairReport` live in `mu2net.store.repair` (built on
    `check_store`); they stay importable from here."""
    if name in ("RepairReport", "repair_store"):
        from mu2net.store import repair

        return getattr(repair, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
