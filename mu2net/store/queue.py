"""The task queue in the store: one object per entry, each moved by compare-and-swap, so
concurrent scheduled runs take every entry exactly once (`QueueOps`, mixed into the store)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import check_mode
from mu2net.store.base import ObjectBackend, QueueEntry
from mu2net.store.documents import parse_document
from mu2net.store.layout import encode, epoch_of, iso_time, queue_key

log = logging.getLogger(__name__)

QUEUE_STATES = ("pending", "running", "done", "failed")
_ENTRY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _entry_to_dict(e: QueueEntry) -> dict[str, Any]:
    return {"schema": "mu2net/queue_entry/v1", "id": e.id, "spec": e.spec, "mode": e.mode,
            "state": e.state, "run_id": e.run_id, "error": e.error,
            "enqueued_at": e.enqueued_at, "updated_at": e.updated_at, "extra": dict(e.extra)}


def _entry_from_dict(d: Mapping[str, Any]) -> QueueEntry:
    """An entry from its document (checked by `documents.check_queue_entry`)."""
    return QueueEntry(id=d["id"], spec=d["spec"], mode=d["mode"], state=d["state"],
                      run_id=d.get("run_id") or "", error=d.get("error") or "",
                      enqueued_at=d.get("enqueued_at") or "",
                      updated_at=d.get("updated_at") or "", extra=d.get("extra") or {})



class QueueOps:
    """Queue operations of `VersionedStore`."""

    backend: ObjectBackend
    uri: str
    clock: Callable[[], float]
    max_attempts: int

    def enqueue(self, spec: str, mode: str = "onboard", *, entry_id: str | None = None
                ) -> QueueEntry:
        if not isinstance(spec, str) or not spec:
            raise SchemaError(f"queue_entry.spec={spec!r} is invalid: expected a task source")
        check_mode(mode, "queue_entry.mode")
        now = self.clock()
        if entry_id is None:  # sorts by enqueue time, so the queue lists oldest first
            entry_id = f"{iso_time(now).replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:8]}"
        elif not _ENTRY_ID_RE.match(entry_id):
            raise SchemaError(f"queue_entry.id={entry_id!r} is invalid: use 1-128 characters "
                              "from [A-Za-z0-9_.-], starting with a letter or digit")
        entry = QueueEntry(id=entry_id, spec=spec, mode=mode, state="pending",
                           enqueued_at=iso_time(now), updated_at=iso_time(now))
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
        return _entry_from_dict(parse_document("queue_entry", got[0], where)), got[1]

    def _entries(self) -> list[tuple[QueueEntry, int]]:
        """Every entry that parses, oldest first; a damaged one is skipped and reported (a
        warning, and `damaged_entries`), so one bad object never stops the queue."""
        out = []
        self.damaged_entries: list[str] = []
        for key in self.backend.list("queue/"):
            where = f"{self.uri}/{key}"
            try:
                got = self.backend.read(key)
                if got is not None:  # finished and removed meanwhile
                    entry = _entry_from_dict(parse_document("queue_entry", got[0], where))
                    out.append((entry, got[1]))
            except IntegrityError as exc:
                self.damaged_entries.append(f"{exc}; skipped")
                log.warning("%s; skipping it", exc)
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
                     and now - epoch_of(e.updated_at) > abandoned_after_s]
        for entry, generation in pending + abandoned:
            extra = dict(entry.extra)
            if entry.state == "running":
                extra["abandoned_by"] = [*extra.get("abandoned_by", []), entry.run_id]
            taken = replace(entry, state="running", run_id=run_id, updated_at=iso_time(now),
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
            done = replace(entry, state=state, error=error, updated_at=iso_time(self.clock()))
            try:
                self.backend.write(queue_key(entry_id), encode(_entry_to_dict(done)),
                                   if_generation_match=generation)
                return done
            except ConflictError:
                continue
        raise ConflictError(f"queue entry {entry_id!r} kept changing; retry later")

    def queue(self) -> list[QueueEntry]:
        return [entry for entry, _ in self._entries()]

