"""The task queue in the store: one object per entry, each moved by compare-and-swap, so
concurrent scheduled runs take every entry exactly once (`QueueOps`, mixed into the store).

An entry's `extra` carries what later runs need (old entries without these keys read as
before): `data_dir`, the data folder the entry was added with (a re-run of the entry reads
its data there, `mu2net.queue.resolve_request`); and, once a run takes it with a deadline
(`take_next(deadline_s=...)`, the run's bound `mu2net.resources.run_deadline_seconds`),
`deadline_at` (epoch seconds) and `attempts`. A running entry past its deadline belongs to a
run that timed out or died: `give_back_overdue` (called by every `take_next` and by
`mu2net queue list`) returns it to pending, or fails it for good after `MAX_RUN_ATTEMPTS`
runs, with a one-line reason.
"""

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

logger = logging.getLogger(__name__)
QUEUE_STATES = ("pending", "running", "done", "failed")
MAX_RUN_ATTEMPTS = 3  # runs that may time out on one entry before it fails for good
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

    def enqueue(self, spec: str, mode: str = "onboard", *, entry_id: str | None = None,
                data_dir: str = "") -> QueueEntry:
        if not isinstance(spec, str) or not spec:
            raise SchemaError(f"queue_entry.spec={spec!r} is invalid: expected a task source")
        check_mode(mode, "queue_entry.mode")
        now = self.clock()
        if entry_id is None:  # sorts by enqueue time, so the queue lists oldest first
            entry_id = f"{iso_time(now).replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:8]}"
        elif not _ENTRY_ID_RE.match(entry_id):
            raise SchemaError(f"queue_entry.id={entry_id!r} is invalid: use 1-128 characters "
                              "from [A-Za-z0-9_.-], starting with a letter or digit")
        if not isinstance(data_dir, str):
            raise SchemaError(f"queue_entry.data_dir={data_dir!r} is invalid: expected a folder "
                              "path or URI (or '')")
        entry = QueueEntry(id=entry_id, spec=spec, mode=mode, state="pending",
                           enqueued_at=iso_time(now), updated_at=iso_time(now),
                           extra={"data_dir": data_dir} if data_dir else {})
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

    def take_next(self, run_id: str, *, abandoned_after_s: float = 6 * 3600,
                  deadline_s: float | None = None) -> QueueEntry | None:
        if not run_id:
            raise SchemaError("take_next run_id is empty")
        if deadline_s is not None and not deadline_s > 0:
            raise SchemaError(f"take_next deadline_s={deadline_s!r} is invalid: expected > 0")
        self.give_back_overdue()
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
            extra["attempts"] = int(extra.get("attempts", 0)) + 1
            if deadline_s is not None:
                extra["deadline_at"] = now + float(deadline_s)
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

    def give_back_overdue(self, *, max_attempts: int = MAX_RUN_ATTEMPTS) -> list[QueueEntry]:
        """Return every running entry past its deadline to pending (its run timed out or
        died), or fail it for good once `max_attempts` runs have taken it; returns the entries
        changed. Entries without a deadline (taken by older code) are left to the lease rule
        of `take_next`. Safe to run concurrently: each move is a compare-and-swap."""
        now = self.clock()
        changed = []
        for entry, generation in self._entries():
            deadline = entry.extra.get("deadline_at")
            if entry.state != "running" or deadline is None or now <= float(deadline):
                continue
            attempts = int(entry.extra.get("attempts", 1))
            overdue = [*entry.extra.get("overdue_runs", []), entry.run_id]
            extra = {k: v for k, v in entry.extra.items() if k != "deadline_at"}
            extra["overdue_runs"] = overdue
            if attempts >= max_attempts:
                moved = replace(entry, state="failed", updated_at=iso_time(now), extra=extra,
                                error=f"{attempts} runs passed their deadline without finishing "
                                      f"(last: run {entry.run_id}, deadline "
                                      f"{iso_time(float(deadline))}): giving up")
            else:
                moved = replace(entry, state="pending", run_id="", updated_at=iso_time(now),
                                extra=extra)
            try:
                self.backend.write(queue_key(entry.id), encode(_entry_to_dict(moved)),
                                   if_generation_match=generation)
            except ConflictError:
                continue  # moved meanwhile (finished, or given back by another caller)
            changed.append(moved)
        return changed

    def _update_entry(self, entry_id: str, change: Callable[[QueueEntry], QueueEntry | None]
                      ) -> tuple[QueueEntry, QueueEntry]:
        """Compare-and-swap one entry: `change(entry)` returns its new state (None: leave it
        as it is; raise to refuse), retried on a concurrent change. Returns (before, after)."""
        for _ in range(self.max_attempts):
            entry, generation = self._read_entry(entry_id)
            new = change(entry)
            if new is None:
                return entry, entry
            try:
                self.backend.write(queue_key(entry_id), encode(_entry_to_dict(new)),
                                   if_generation_match=generation)
                return entry, new
            except ConflictError:
                continue
        raise ConflictError(f"queue entry {entry_id!r} kept changing; retry later")

    def finish(self, entry_id: str, *, error: str = "", run_id: str = "") -> QueueEntry:
        state = "failed" if error else "done"

        def finished(entry: QueueEntry) -> QueueEntry | None:
            if entry.state == state and entry.error == error:
                return None
            if run_id and entry.run_id != run_id:
                # This run outlived its deadline and the entry was given back (another run
                # may hold it): the entry is no longer this run's to finish. Its commit stands;
                # the entry's next run finds the task onboarded and fails it with that reason.
                logger.warning("queue entry %s was given back after run %s passed its "
                               "deadline; it is %s now, left as it is", entry_id, run_id,
                               entry.state)
                return None
            if entry.state != "running":
                raise StoreError(f"queue entry {entry_id!r} is {entry.state}; only a running "
                                 f"entry can become {state}")
            return replace(entry, state=state, error=error, updated_at=iso_time(self.clock()))

        return self._update_entry(entry_id, finished)[1]

    def queue(self) -> list[QueueEntry]:
        return [entry for entry, _ in self._entries()]

    def remove_entry(self, entry_id: str) -> QueueEntry:
        """Delete an entry that no run holds (pending, done or failed). It is first marked
        `removed` by compare-and-swap, so a run taking it at the same moment either got it
        first (then it is running and refused here) or cannot take it any more."""
        def removed(entry: QueueEntry) -> QueueEntry:
            if entry.state == "running":
                raise StoreError(f"queue entry {entry_id!r} ({entry.spec}) is running in run "
                                 f"{entry.run_id!r}: only a pending, done or failed entry can "
                                 "be removed")
            return replace(entry, state="removed", updated_at=iso_time(self.clock()))

        entry, _ = self._update_entry(entry_id, removed)
        self.backend.delete(queue_key(entry_id))
        return entry

    def retry_entry(self, entry_id: str) -> QueueEntry:
        """A failed entry back to pending (the next run takes it again); its run id and error
        move to `extra["failures"]`, so the history stays with the entry."""
        def again(entry: QueueEntry) -> QueueEntry:
            if entry.state != "failed":
                raise StoreError(f"queue entry {entry_id!r} is {entry.state}; only a failed "
                                 "entry can be retried")
            extra = dict(entry.extra)
            extra["failures"] = [*extra.get("failures", []),
                                 {"run_id": entry.run_id, "error": entry.error,
                                  "at": entry.updated_at}]
            return replace(entry, state="pending", run_id="", error="", extra=extra,
                           updated_at=iso_time(self.clock()))

        return self._update_entry(entry_id, again)[1]
