"""Run leases and garbage collection (`CollectionOps`, mixed into the store).

A collection deletes blobs that no retained version and no active lease references. It decides
from a scan, registers itself in `GC`, looks once more at leases and at versions committed
since the scan, and only then deletes. Writers close the last window: after publishing, they
wait for the collections registered at that moment and restore what those deleted
(`restore_collected`).

Damaged documents never stop a collection silently, nor make it unsafe: a lease that does not
parse protects every blob written after the lease object was (it may be a live run's); an index
or path document within the retention window that does not parse means the collection cannot
tell what it references, so it deletes nothing and says why. A `GC` register that does not
parse holds no collection anyone can wait for: it is reported and rewritten by the next
registration.

Waits are bounded and say so. A collection's registration lasts `GC_REGISTRATION_S` and is
renewed before each delete while it has less than `GC_RENEW_MARGIN_S` left (more than one
delete request can take), so a writer waits at most `GC_REGISTRATION_S` for a collection that
was killed, printing a line every `WAIT_PROGRESS_S`, and ignores a registration past its expiry
with a line that says so; a live collection deletes for at most `GC_DELETE_S`."""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mu2net.blobs import STAGED_IN_STORE
from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import Path, SystemVersion
from mu2net.store.base import Lease, ObjectBackend, ObjectInfo
from mu2net.store.documents import parse_document
from mu2net.store.layout import (
    GC_KEY,
    blob_key,
    check_hash,
    encode,
    epoch_of,
    iso_time,
    lease_key,
    read_blob_file,
    version_key,
)

log = logging.getLogger(__name__)
_VERSION_KEY_RE = re.compile(r"^versions/(\d{12})\.json$")

GC_DELETE_S = 300.0  # one collection deletes for at most this long, then stops
GC_REGISTRATION_S = 180.0  # a registration in GC lasts this long unless renewed
GC_RENEW_MARGIN_S = 120.0  # renewed before a delete when less than this is left (> 1 request)
WAIT_PROGRESS_S = 10.0  # a writer waiting for collections prints a line this often
PARTIAL_WRITE_MIN_AGE_S = 3600.0  # no single object write takes this long


def _lease_to_dict(lease: Lease) -> dict[str, Any]:
    return {"schema": "mu2net/lease/v1", "run_id": lease.run_id,
            "base_version": lease.base_version, "acquired_at": lease.acquired_at,
            "expires_at": lease.expires_at, "blobs": sorted(lease.blobs)}


def _lease_from_dict(d: Mapping[str, Any]) -> Lease:
    """A lease from its document (checked by `documents.check_lease`)."""
    return Lease(run_id=d["run_id"], base_version=d["base_version"],
                 acquired_at=float(d["acquired_at"]), expires_at=float(d["expires_at"]),
                 blobs=tuple(d["blobs"]))


def referenced_paths(version: SystemVersion) -> set[str]:
    """The path documents an index references: what gc keeps and `store check` walks."""
    return {version.root, *version.tasks.values()}


def retention_window(read: Callable[[int], SystemVersion | None], newest: int, *, now: float,
                     retention_s: float, lease_floor: int | None
                     ) -> Iterator[tuple[int, SystemVersion | None]]:
    """The versions gc retains, newest first, as (number, index or None when unreadable): the
    newest index, each version that was the head within `retention_s` (its successor was
    committed since), and each from `lease_floor` (oldest active lease's base) on. An
    unreadable index does not end the window. `store check` covers these by default."""
    cutoff = now - retention_s
    successor_committed = now
    for number in range(newest, -1, -1):
        if not (number == newest or successor_committed >= cutoff
                or (lease_floor is not None and number >= lease_floor)):
            return
        version = read(number)
        yield number, version
        if version is not None:
            successor_committed = epoch_of(version.provenance["committed_at"])


class CollectionOps:
    """Lease and garbage-collection operations of `VersionedStore`."""

    backend: ObjectBackend
    uri: str
    clock: Callable[[], float]
    max_attempts: int
    head: Callable[[], int | None]
    read_version: Callable[[int], SystemVersion]
    read_path: Callable[[str], Path]
    _read_pointer: Callable[[], tuple[int | None, int]]
    _probe: Callable[..., int | None]
    _create: Callable[[str, bytes], int]
    aliases: Callable[[], list[Any]]

    def acquire_lease(self, run_id: str, *, ttl_s: float, base_version: int | None = None,
                      blobs: Sequence[str] = ()) -> Lease:
        if not run_id:
            raise SchemaError("lease run_id is empty")
        for blob_hash in blobs:
            check_hash("lease blob", blob_hash)
        key = lease_key(run_id)
        for _ in range(self.max_attempts):
            now = self.clock()
            got = self.backend.read(key)
            lease = Lease(run_id=run_id, base_version=base_version, acquired_at=now,
                          expires_at=now + ttl_s, blobs=tuple(sorted(set(blobs))))
            generation = 0
            old = None
            if got is not None:
                try:
                    old = _lease_from_dict(parse_document("lease", got[0], f"{self.uri}/{key}"))
                except IntegrityError as exc:  # this run's own lease, damaged: replace it
                    log.warning("%s; replacing it", exc)
                generation = got[1]
            if old is not None:
                bases = [v for v in (old.base_version, base_version) if v is not None]
                lease = replace(lease, acquired_at=old.acquired_at,
                                base_version=min(bases) if bases else None,
                                blobs=tuple(sorted(set(old.blobs) | set(blobs))))
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
        """Every lease that parses (a damaged one is logged and skipped; see `_scan_leases`)."""
        found, damaged = self._scan_leases()
        for reason, _ in damaged:
            log.warning("%s; ignoring it", reason)
        return found

    def _scan_leases(self) -> tuple[list[Lease], list[tuple[str, float]]]:
        """(leases that parse, [(why one does not, when it was written)])."""
        out, damaged = [], []
        for info in self.backend.list_info("leases/"):
            try:
                got = self.backend.read(info.key)
                if got is not None:
                    out.append(_lease_from_dict(parse_document(
                        "lease", got[0], f"{self.uri}/{info.key}")))
            except IntegrityError as exc:
                damaged.append((str(exc), info.updated))
        return sorted(out, key=lambda lease: lease.run_id), damaged

    def gc(self, *, retention_s: float, dry_run: bool = True, now: float | None = None,
           notes: list[str] | None = None) -> list[str]:
        """Blob keys referenced by no retained version, no alias and no active lease, deleted unless
        `dry_run`. A version is retained while it is the newest index present or was the head
        at some time in the last `retention_s` seconds (its successor was committed within the
        window), and from the base version of any active lease on. Blobs written within the
        window or after an active lease was taken are kept too. Choose `retention_s` longer
        than the longest run. Indices and path documents are small and kept for history.
        Interrupted local writes older than the window are swept too (their names are in the
        returned list). What the collection could not read, and so did not delete, is appended
        to `notes` (and logged)."""
        if not retention_s >= 0:
            raise StoreError(f"gc retention_s={retention_s!r} is invalid: expected seconds >= 0 "
                             "(longer than the longest run)")
        reported, notes = notes is not None, [] if notes is None else notes
        now = self.clock() if now is None else now
        cutoff = now - retention_s
        newest = self._newest_present()
        if newest is None:
            return []
        active, damaged_leases = self._scan_leases()
        active = [lease for lease in active if lease.expires_at > now]
        floors = [lease.base_version for lease in active if lease.base_version is not None]
        floor = min(floors) if floors else None
        path_hashes: set[str] = set()
        unreadable: list[str] = []

        def read(number: int) -> SystemVersion | None:
            try:
                return self.read_version(number)
            except IntegrityError as exc:
                unreadable.append(str(exc))
            except StoreError:  # missing: a gap, which `store check` reports
                pass
            return None

        for _, version in retention_window(read, newest, now=now, retention_s=retention_s,
                                           lease_floor=floor):
            if version is not None:
                path_hashes |= referenced_paths(version)
        path_hashes |= self._aliased_paths(unreadable)  # any age: serving reads them
        referenced = self._blobs_of(path_hashes, unreadable)

        def protected(leases: list[Lease]) -> tuple[set[str], float]:
            blobs = {b for lease in leases for b in lease.blobs}
            since = min([lease.acquired_at for lease in leases]
                        + [written for _, written in damaged_leases], default=float("inf"))
            return blobs, min(since, cutoff)

        for reason, _ in damaged_leases:
            notes.append(f"{reason}; it may be a live run's, so every blob written after it is "
                         "kept")
        leased, young = protected(active)
        candidates = [info for info in self.backend.list_info("blobs/")
                      if info.key[len("blobs/"):] not in referenced
                      and info.key[len("blobs/"):] not in leased and info.updated < young]
        if unreadable:
            notes.extend(f"{reason}; gc cannot tell which blobs it references, so it deletes "
                         "none (see `mu2net store check`)" for reason in unreadable)
            candidates = []
        if not dry_run and candidates:
            candidates = self._delete(candidates, newest, protected, notes)
        for note in notes if not reported else ():  # a caller that passed `notes` shows them
            log.warning("gc of %s: %s", self.uri, note)
        # A temporary file is an interrupted write only once it is older than any write
        # takes, whatever the retention asked for: a younger one may be a live writer's.
        swept = self.backend.sweep_partial(min(cutoff, time.time() - PARTIAL_WRITE_MIN_AGE_S),
                                           dry_run=dry_run)
        return sorted(info.key for info in candidates) + swept

    def _delete(self, candidates: list[ObjectInfo], scanned: int,
                protected: Callable[[list[Lease]], tuple[set[str], float]],
                notes: list[str]) -> list[ObjectInfo]:
        """Delete the candidates under a registration in `GC`; the ones deleted."""
        gc_id = uuid.uuid4().hex
        deadline = time.time() + GC_DELETE_S
        expires = self._register_collection(gc_id, time.time() + GC_REGISTRATION_S)
        deleted = []
        try:
            # Leases taken and versions committed while this collection was deciding still
            # count. A writer publishing after this last look waits for the registered
            # collection and restores what it deleted (`restore_collected`).
            leased, young = protected([lease for lease in self._scan_leases()[0]
                                       if lease.expires_at > self.clock()])
            unreadable: list[str] = []
            leased |= self._blobs_of_versions_after(scanned, unreadable)
            leased |= self._blobs_of(self._aliased_paths(unreadable), unreadable)
            if unreadable:
                notes.extend(f"{reason}; deleting nothing" for reason in unreadable)
                return []
            for info in candidates:
                if info.key[len("blobs/"):] in leased or info.updated >= young:
                    continue
                if time.time() > deadline:
                    notes.append(f"stopped after {len(deleted)} deletions ({GC_DELETE_S:.0f} s); "
                                 "run it again")
                    break
                if time.time() > expires - GC_RENEW_MARGIN_S:  # outlive the next delete
                    expires = self._register_collection(gc_id, time.time() + GC_REGISTRATION_S)
                self.backend.delete(info.key)
                deleted.append(info)
        finally:
            self._register_collection(gc_id, None)
        return deleted

    def _newest_present(self) -> int | None:
        """The newest index present, found as writers number commits: `_probe` past gaps from
        the index HEAD names, no listing (the same cost at 10 and 10,000 versions). Only when
        HEAD is missing, damaged or names no index is `versions/` listed, so that no index
        past a wide gap escapes a collection."""
        pointer: int | None
        try:
            pointer = self._read_pointer()[0]
        except IntegrityError:  # a damaged HEAD
            pointer = None
        if pointer is not None and self.backend.exists(version_key(pointer)):
            return self._probe(pointer, past_gaps=True)
        numbers = [int(m.group(1)) for m in map(_VERSION_KEY_RE.match,
                                                self.backend.list("versions/")) if m]
        return self._probe(max(numbers), past_gaps=True) if numbers else None

    def _aliased_paths(self, unreadable: list[str]) -> set[str]:
        """The paths the task aliases name; a damaged alias goes to `unreadable` (gc then
        deletes nothing: it cannot tell which path the alias protects)."""
        try:
            return {alias.path for alias in self.aliases()}
        except IntegrityError as exc:
            unreadable.append(str(exc))
            return set()

    def _blobs_of(self, path_hashes: Iterable[str], unreadable: list[str]) -> set[str]:
        """Blobs of the path documents; the ones that cannot be read go to `unreadable`."""
        blobs: set[str] = set()
        for path_hash in sorted(set(path_hashes)):
            try:
                blobs.update(c.blob for c in self.read_path(path_hash).components)
            except IntegrityError as exc:
                unreadable.append(str(exc))
            except StoreError:  # a missing path document references nothing that exists
                continue
        return blobs

    def _blobs_of_versions_after(self, scanned: int, unreadable: list[str]) -> set[str]:
        """Blobs referenced by the versions committed after version `scanned`."""
        newest = self._newest_present()
        hashes: set[str] = set()
        for number in range(scanned + 1, (newest if newest is not None else -1) + 1):
            if not self.backend.exists(version_key(number)):
                continue
            try:
                version = self.read_version(number)
            except StoreError as exc:
                unreadable.append(str(exc))
                continue
            hashes |= referenced_paths(version)
        return self._blobs_of(hashes, unreadable)

    def restore_collected(self, blob_files: Mapping[str, str]) -> None:
        """Put back the blobs of a just-published version that a garbage collection deleted.

        A collection decides from a scan, then looks once more at leases and new versions
        before it deletes; a version published after that last look is not seen. Every
        collection registers in `GC` while it deletes, so after publishing, a writer waits for
        the collections registered now (any that registers later looks after this version
        exists and keeps its blobs), then restores what they deleted from its own copies."""
        self._await_collections()
        for blob_hash, file_path in sorted(blob_files.items()):
            if file_path == STAGED_IN_STORE:
                continue  # held by the run's lease until the report has read the version
            if not self.backend.exists(blob_key(blob_hash)):
                log.warning("blob %s was collected while a commit referenced it; restoring it",
                            blob_hash)
                self._create(blob_key(blob_hash), read_blob_file(file_path, blob_hash))

    def _collections(self) -> tuple[dict[str, float], int]:
        """The collections registered as deleting: (id -> expiry, generation of `GC`). A
        register that does not parse holds none (logged; the next registration rewrites it)."""
        got = self.backend.read(GC_KEY)
        if got is None:
            return {}, 0
        try:
            return parse_document("gc_registry", got[0], f"{self.uri}/{GC_KEY}"), got[1]
        except IntegrityError as exc:
            log.warning("%s; treating it as empty (the next collection rewrites it)", exc)
            return {}, got[1]

    def _register_collection(self, gc_id: str, expires_at: float | None) -> float:
        """Add (or, with None, remove) a collection in `GC` by compare-and-swap; expired
        entries of killed collections are dropped on the way. Returns `expires_at`."""
        for _ in range(self.max_attempts):
            active, generation = self._collections()
            now = time.time()
            active = {k: v for k, v in active.items() if v > now and k != gc_id}
            if expires_at is not None:
                active[gc_id] = expires_at
            try:
                self.backend.write(GC_KEY, encode({"collections": active}),
                                   if_generation_match=generation)
                return expires_at or 0.0
            except ConflictError:
                time.sleep(random.uniform(0, 0.05))
        raise ConflictError(f"{self.uri}/{GC_KEY} kept changing; retry the collection later")

    def _await_collections(self) -> None:
        """Wait for the collections registered now, at most until each registration expires
        (`GC_REGISTRATION_S` past its last renewal; never past `GC_DELETE_S` plus that),
        printing progress; a registration already expired is ignored with a line."""
        active, _ = self._collections()
        start = last_line = time.time()
        bound = start + GC_DELETE_S + GC_REGISTRATION_S
        while active:
            now = time.time()
            for gc_id, expiry in sorted(active.items()):
                if expiry <= now:
                    log.warning("%s/%s: ignoring garbage collection %s, registered until %s "
                                "(past its deadline: it was killed or lost its connection)",
                                self.uri, GC_KEY, gc_id, iso_time(expiry))
            active = {k: v for k, v in active.items() if v > now}
            if not active:
                return
            if now >= bound:
                log.warning("%s: stopped waiting for garbage collections %s after %.0f s "
                            "(their registrations are implausibly long)", self.uri,
                            sorted(active), now - start)
                return
            if now - last_line >= WAIT_PROGRESS_S:
                log.warning("%s: waiting for garbage collection(s) %s to finish deleting "
                            "(%.0f s so far; at most until %s)", self.uri, sorted(active),
                            now - start, iso_time(min(max(active.values()), bound)))
                last_line = now
            time.sleep(0.05)
            current, _ = self._collections()
            active = {k: current[k] for k in active if k in current}
