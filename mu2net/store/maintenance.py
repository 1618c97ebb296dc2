"""Checking and repairing a store: what `mu2net store check` and `mu2net store repair` run.

`check_store` reads every object straight from the backend (never the local cache, which could
hide a damaged store) and verifies every index, path document and blob hash, every reference,
and the head pointer. Old versions whose blobs garbage collection removed on purpose are told
apart from damage: only missing data that a retained version needs is a problem.

`repair_store` fixes what can be fixed without rewriting history, which is immutable:
- the HEAD pointer is recomputed from the newest index of the contiguous run 0..N;
- a task whose path at the head references missing data is rolled back (a new version) to the
  newest earlier version whose path is complete;
- temporary files and orphaned blobs past the retention window are collected (`gc`).
It only plans unless `apply` is true.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from mu2net.errors import IntegrityError, Mu2NetError
from mu2net.schema import Path, SystemVersion, sha256_hex
from mu2net.store.layout import (
    HEAD_KEY,
    blob_key,
    decode_pointer,
    encode_pointer,
    path_key,
    version_key,
)
from mu2net.store.versioned import VersionedStore

_VERSION_KEY_RE = re.compile(r"^versions/(\d{12})\.json$")
_HASH_KEY_RE = re.compile(r"^(?:blobs/|paths/)([0-9a-f]{64})(?:\.json)?$")


@dataclass
class CheckReport:
    """What `check_store` found. `problems` make the store unusable or unsafe; `notes` are
    expected states (old versions collected by gc, orphans waiting for gc)."""

    uri: str
    head_pointer: int | None = None
    head: int | None = None  # the newest index of the contiguous run 0..N
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

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def text(self) -> str:
        lines = [f"store {self.uri}: {'OK' if self.ok else 'DAMAGED'}",
                 f"  head pointer {self.head_pointer}, newest complete index {self.head}; "
                 f"{self.versions} versions, {self.paths} path documents, {self.blobs} blobs "
                 f"({self.bytes_verified:,} bytes hashed)",
                 f"  orphans: {len(self.orphan_blobs)} blobs, {len(self.orphan_paths)} path "
                 f"documents; {len(self.temp_files)} temporary files"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.ok:
            lines.append(f"  to repair: mu2net store repair --store {self.uri} (add --apply)")
        return "\n".join(lines)


def _read_raw(store: VersionedStore, key: str) -> bytes | None:
    got = store.backend.read(key)
    return None if got is None else got[0]


def _scan_versions(store: VersionedStore, report: CheckReport) -> dict[int, SystemVersion]:
    numbers = []
    for key in store.backend.list("versions/"):
        match = _VERSION_KEY_RE.match(key)
        if match is None:
            report.problems.append(f"unexpected object {key} under versions/")
            continue
        numbers.append(int(match.group(1)))
    versions: dict[int, SystemVersion] = {}
    for number in sorted(numbers):
        data = _read_raw(store, version_key(number))
        if data is None:  # deleted while listing
            continue
        try:
            version = SystemVersion.from_dict(json.loads(data))
        except (UnicodeDecodeError, json.JSONDecodeError, Mu2NetError, KeyError,
                TypeError) as exc:
            report.problems.append(f"index {version_key(number)} is corrupt: {exc}")
            continue
        if version.number != number:
            report.problems.append(f"index {version_key(number)} holds version "
                                   f"{version.number}")
            continue
        if number > 0 and version.parent != number - 1:
            report.problems.append(f"version {number} names parent {version.parent}, not "
                                   f"{number - 1}")
        versions[number] = version
    report.versions = len(versions)
    head = -1
    while head + 1 in versions:
        head += 1
    report.head = None if head < 0 else head
    stranded = sorted(n for n in versions if n > head)
    if stranded:
        report.problems.append(f"versions {stranded} lie past a gap after version {head}: the "
                               "head cannot reach them (restore the missing index from a backup)")
    return versions


def _check_head(store: VersionedStore, report: CheckReport) -> None:
    data = _read_raw(store, HEAD_KEY)
    if data is None:
        if report.head is not None:
            report.notes.append("HEAD is missing; readers probe forward from version 0")
        return
    number = decode_pointer(data)
    if number is None:
        report.problems.append(f"HEAD is not a pointer ({len(data)} bytes: {data[:40]!r})")
        return
    report.head_pointer = number
    if report.head is None or number > report.head:
        report.problems.append(f"HEAD names version {number}, past the newest complete index "
                               f"{report.head}")


def _verified(store: VersionedStore, key: str, content_hash: str, report: CheckReport,
              hash_blobs: bool) -> bytes | None | bool:
    """The object's bytes (or True when present and hashing is off); None when missing; False
    when its hash is wrong (recorded as a problem)."""
    if not hash_blobs and key.startswith("blobs/"):
        return True if store.backend.exists(key) else None
    data = _read_raw(store, key)
    if data is None:
        return None
    report.bytes_verified += len(data)
    if sha256_hex(data) != content_hash:
        report.problems.append(f"{key} is tampered or truncated: its {len(data)} bytes do not "
                               f"hash to {content_hash}")
        return False
    return data


def check_store(store: VersionedStore, *, hash_blobs: bool = True) -> CheckReport:
    """Verify the whole store from the backend. `hash_blobs=False` only checks that blobs
    exist (a quick check of a large store)."""
    report = CheckReport(uri=store.uri)
    versions = _scan_versions(store, report)
    _check_head(store, report)
    head = report.head
    path_users: dict[str, list[tuple[int, str]]] = {}
    for number, version in versions.items():
        path_users.setdefault(version.root, []).append((number, "(root)"))
        for task, path_hash in version.tasks.items():
            path_users.setdefault(path_hash, []).append((number, task))
    paths: dict[str, Path] = {}
    broken_paths: dict[str, str] = {}
    for path_hash in sorted(path_users):
        data = _verified(store, path_key(path_hash), path_hash, report, True)
        if not isinstance(data, bytes):
            broken_paths[path_hash] = "its path document is missing" if data is None else (
                "its path document is corrupt")
            continue
        try:
            paths[path_hash] = Path.from_dict(json.loads(data))
        except (UnicodeDecodeError, json.JSONDecodeError, Mu2NetError, KeyError,
                TypeError) as exc:
            report.problems.append(f"{path_key(path_hash)} does not parse: {exc}")
            broken_paths[path_hash] = "its path document does not parse"
    for path_hash, users in path_users.items():
        path = paths.get(path_hash)
        for number, task in users:
            if path is not None and task != "(root)" and path.task != task:
                report.problems.append(f"version {number} maps task {task!r} to a path of "
                                       f"task {path.task!r}")
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
    head_hashes = set()
    if head is not None:
        head_version = versions[head]
        head_hashes = {head_version.root, *head_version.tasks.values()}
        for task, path_hash in sorted(head_version.tasks.items()):
            if path_hash in broken_paths:
                report.broken_tasks[task] = broken_paths[path_hash]
                report.problems.append(f"task {task!r} at the head (version {head}) cannot be "
                                       f"loaded: {broken_paths[path_hash]}")
        if head_version.root in broken_paths:
            report.problems.append(f"the root path at the head cannot be loaded: "
                                   f"{broken_paths[head_version.root]}")
    old_broken = sorted({n for h, reason in broken_paths.items() if h not in head_hashes
                         for n, _ in path_users[h]})
    if old_broken:
        report.notes.append(f"{len(old_broken)} older versions cannot be fully loaded (their "
                            f"blobs were collected by gc, or are damaged): {old_broken[:20]}")
    _find_orphans(store, report, set(path_users), set(blob_users))
    return report


def _find_orphans(store: VersionedStore, report: CheckReport, paths: set[str],
                  blobs: set[str]) -> None:
    for prefix, referenced, out in (("blobs/", blobs, report.orphan_blobs),
                                    ("paths/", paths, report.orphan_paths)):
        for key in store.backend.list(prefix):
            match = _HASH_KEY_RE.match(key)
            if match is None:
                report.problems.append(f"unexpected object {key} under {prefix}")
            elif match.group(1) not in referenced:
                out.append(key)
    report.temp_files = store.backend.sweep_partial(time.time() + 1, dry_run=True)
    if report.orphan_blobs:
        report.notes.append(f"{len(report.orphan_blobs)} blobs no version references (staged "
                            "by running or dead runs; gc collects them past retention)")


@dataclass
class RepairReport:
    """What `repair_store` did (`applied`) or would do."""

    uri: str
    applied: bool
    actions: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)
    check: CheckReport | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["check"] = self.check.to_dict() if self.check else None
        return doc

    def text(self) -> str:
        verb = "done" if self.applied else "planned (dry run; add --apply)"
        lines = [f"repair of {self.uri}: {len(self.actions)} action(s) {verb}"]
        lines += [f"  {a}" for a in self.actions] or ["  nothing to do"]
        lines += [f"  cannot repair: {u}" for u in self.unrepairable]
        return "\n".join(lines)


def _complete_task_version(store: VersionedStore, check: CheckReport, task: str) -> int | None:
    """The newest version before the head whose path of `task` loads completely."""
    assert check.head is not None
    current = store.read_version(check.head).tasks[task]
    for number in range(check.head - 1, -1, -1):
        path_hash = store.read_version(number).tasks.get(task)
        if path_hash is None or path_hash == current:
            continue
        try:
            path = store.read_path(path_hash)
        except Mu2NetError:
            continue
        if all(store.backend.exists(blob_key(c.blob)) for c in path.components):
            return number
    return None


def repair_store(store: VersionedStore, *, apply: bool = False, retention_s: float = 7 * 86400,
                 hash_blobs: bool = True) -> RepairReport:
    """Plan (or, with `apply`, make) the repairs `check_store` shows are possible."""
    check = check_store(store, hash_blobs=hash_blobs)
    report = RepairReport(uri=store.uri, applied=apply, check=check)
    if check.head is None:
        if check.versions:
            report.unrepairable.append("version 0 is missing: the store has no root; restore "
                                       "versions/000000000000.json from a backup")
        return report
    pointer_bad = any(p.startswith("HEAD") for p in check.problems)
    if pointer_bad:
        was = "corrupt" if check.head_pointer is None else check.head_pointer
        report.actions.append(f"set HEAD to version {check.head} (was {was})")
        if apply:
            # Unconditional: the pointer is only a hint and the indices are the truth.
            store.backend.write(HEAD_KEY, encode_pointer(check.head))
    for task, reason in sorted(check.broken_tasks.items()):
        target = _complete_task_version(store, check, task)
        if target is None:
            report.unrepairable.append(f"task {task!r}: {reason}, and no earlier version has a "
                                       "complete path for it")
            continue
        report.actions.append(f"roll task {task!r} back to version {target} ({reason})")
        if apply:
            try:
                store.rollback_task(task, target, f"repair-{uuid.uuid4().hex[:12]}")
            except IntegrityError as exc:
                report.unrepairable.append(f"task {task!r}: rollback failed: {exc}")
    if pointer_bad and not apply:
        report.actions.append("then collect orphans past retention (planned once HEAD is "
                              "fixed; gc needs a readable head)")
        return report
    collected = store.gc(retention_s=retention_s, dry_run=not apply)
    if collected:
        report.actions.append(f"collect {len(collected)} orphaned blobs / temporary files older "
                              f"than {retention_s / 3600:g} h: {collected[:10]}"
                              f"{' ...' if len(collected) > 10 else ''}")
    return report
