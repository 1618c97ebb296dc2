"""Repairing a store: what `mu2net store repair` runs (see `mu2net.store.maintenance` for what
is repaired and what is not, and why). Every step is planned first; `apply` makes it."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from mu2net.errors import Mu2NetError, StoreError
from mu2net.schema import SystemVersion, sha256_hex
from mu2net.store.layout import (
    GC_KEY,
    HEAD_KEY,
    blob_key,
    encode,
    encode_index,
    encode_pointer,
    iso_time,
    version_key,
)
from mu2net.store.maintenance import CheckReport, check_store
from mu2net.store.versioned import VersionedStore


@dataclass
class RepairReport:
    """What `repair_store` did (`applied`) or would do."""

    uri: str
    applied: bool
    actions: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    check: CheckReport | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["check"] = self.check.to_dict() if self.check else None
        return doc

    def text(self) -> str:
        verb = "done" if self.applied else "planned (dry run; add --apply)"
        lines = [f"repair of {self.uri}: {len(self.actions)} action(s) {verb}"]
        lines += [f"  {a}" for a in self.actions] or ["  nothing to do"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  cannot repair: {u}" for u in self.unrepairable]
        return "\n".join(lines)


def _complete_task_version(store: VersionedStore, head: int, task: str) -> int | None:
    """The newest version before `head` whose path of `task` loads completely."""
    current = store.read_version(head).tasks[task]
    for number in range(head - 1, -1, -1):
        try:
            path_hash = store.read_version(number).tasks.get(task)
            if path_hash is None or path_hash == current:
                continue
            path = store.read_path(path_hash)
            if all(store.backend.exists(blob_key(c.blob)) for c in path.components):
                return number
        except Mu2NetError:  # a gap, a damaged index or path document: look further back
            continue
    return None


def _republish(store: VersionedStore, check: CheckReport) -> int:
    """Version `newest + 1` repeating the newest readable index (the newest is damaged)."""
    assert check.newest is not None and check.head is not None
    good = store.read_version(check.head)
    number = check.newest + 1
    version = SystemVersion(number=number, parent=check.newest, root=good.root,
                            tasks=dict(good.tasks), summary=good.summary,
                            provenance={"kind": "repair", "run_id": f"repair-{uuid.uuid4().hex}",
                                        "repeats": check.head, "damaged": check.newest,
                                        "committed_at": iso_time(store.clock())})
    store.backend.write(version_key(number), encode_index(version), if_generation_match=0)
    store.backend.write(HEAD_KEY, encode_pointer(number))
    return number


def _still_junk(store: VersionedStore, key: str) -> bool:
    try:
        got = store.backend.read(key)
    except StoreError:
        return True
    return got is not None and sha256_hex(got[0]) != key[len("blobs/"):]


def _documents(store: VersionedStore, check: CheckReport, report: RepairReport,
               apply: bool) -> None:
    """Damaged leases, `GC` register and junk blobs are removed; the rest is named."""
    for key, reason in sorted(check.damaged.items()):
        if key.startswith("leases/") or key == GC_KEY:
            what = "remove the damaged lease" if key != GC_KEY else "empty the damaged register"
            report.actions.append(f"{what} {key} (it protects or blocks nothing anyone can "
                                  "read)")
            if apply:
                if key == GC_KEY:
                    store.backend.write(GC_KEY, encode({"collections": {}}))
                else:
                    store.backend.delete(key)
        elif key.startswith("queue/"):
            report.unrepairable.append(f"{reason}: its task source cannot be read back; delete "
                                       "the object and `mu2net queue add` the task again")
        else:
            report.unrepairable.append(f"{reason}: delete the object; it is written again when "
                                       "the task is next prepared")
    for key in check.junk_blobs:
        report.actions.append(f"delete {key}: its bytes do not hash to its name and no path "
                              "references it (it would block storing the real blob)")
        if apply and _still_junk(store, key):
            store.backend.delete(key)


def repair_store(store: VersionedStore, *, apply: bool = False, retention_s: float = 7 * 86400,
                 hash_blobs: bool = True, full: bool = False) -> RepairReport:
    """Plan (or, with `apply`, make) the repairs `check_store` shows are possible: by default
    from a check of the versions gc retains with `retention_s`; `full`: of every index."""
    check = check_store(store, hash_blobs=hash_blobs, full=full, retention_s=retention_s)
    report = RepairReport(uri=store.uri, applied=apply, check=check)
    _documents(store, check, report, apply)
    if check.newest is None:
        if check.head_damaged or check.head_pointer is not None:
            report.actions.append("delete HEAD: no index exists for it to name (an empty store "
                                  "has none; `mu2net init` writes it)")
            if apply:
                store.backend.delete(HEAD_KEY)
        return report
    if check.head is None:
        report.unrepairable.append("no index can be read: the store has no usable version; "
                                   "restore versions/ from a backup")
        return report
    if check.gaps:
        report.unrepairable.append(f"versions {check.gaps[:20]} are missing (a gap): a lost "
                                   "index cannot be rebuilt; restore it from a backup. The head "
                                   "and new commits are unaffected")
    for number, reason in sorted(check.damaged_indices.items()):
        if number != check.newest:
            report.unrepairable.append(f"{reason}: an index is immutable history and cannot be "
                                       "rebuilt; restore it from a backup. The head and new "
                                       "commits are unaffected")
    if check.head_damaged:
        was = "missing or corrupt" if check.head_pointer is None else check.head_pointer
        report.actions.append(f"set HEAD to version {check.newest} (was {was}), the newest "
                              "index present")
        if apply:  # unconditional: the pointer is only a hint and the indices are the truth
            store.backend.write(HEAD_KEY, encode_pointer(check.newest))
    if check.newest != check.head:
        report.actions.append(f"publish version {check.newest + 1} repeating version "
                              f"{check.head}, the newest readable index (version "
                              f"{check.newest} is damaged)")
        if apply:
            _republish(store, check)
    readable = check.head
    for task, reason in sorted(check.broken_tasks.items()):
        target = _complete_task_version(store, readable, task)
        if target is None:
            report.unrepairable.append(f"task {task!r}: {reason}, and no earlier version has a "
                                       "complete path for it")
            continue
        report.actions.append(f"roll task {task!r} back to version {target} ({reason})")
        if apply:
            try:
                store.rollback_task(task, target, f"repair-{uuid.uuid4().hex[:12]}")
            except StoreError as exc:
                report.unrepairable.append(f"task {task!r}: rollback failed: {exc}")
    if (check.head_damaged or check.newest != check.head) and not apply:
        report.actions.append("then collect orphans past retention (planned once the head is "
                              "fixed)")
        return report
    notes: list[str] = []
    try:
        collected = store.gc(retention_s=retention_s, dry_run=not apply, notes=notes)
    except StoreError as exc:
        report.unrepairable.append(f"gc: {exc}")
        collected = []
    report.notes.extend(f"gc: {n}" for n in notes)
    if collected:
        report.actions.append(f"collect {len(collected)} orphaned blobs / temporary files older "
                              f"than {retention_s / 3600:g} h: {collected[:10]}"
                              f"{' ...' if len(collected) > 10 else ''}")
    return report
