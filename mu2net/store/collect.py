"""Run leases and garbage collection (`CollectionOps`, mixed into the store).

A collection deletes blobs that no retained version and no active lease references. It decides
from a scan, registers itself in `GC`, looks once more at leases and at versions committed
since the scan, and only then deletes. Writers close the last window: after publishing, they
wait for the collections registered at that moment and restore what those deleted
(`restore_collected`)."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from mu2net.blobs import STAGED_IN_STORE
from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import Path, SystemVersion
from mu2net.store.base import Lease, ObjectBackend
from mu2net.store.layout import (
    GC_KEY,
    blob_key,
    check_hash,
    encode,
    epoch_of,
    lease_key,
    parse_json,
    read_blob_file,
)

log = logging.getLogger(__name__)

GC_DELETE_S = 300.0  # one collection deletes for at most this long, then stops
PARTIAL_WRITE_MIN_AGE_S = 3600.0  # no single object write takes this long


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



class CollectionOps:
    """Lease and garbage-collection operations of `VersionedStore`."""

    backend: ObjectBackend
    uri: str
    clock: Callable[[], float]
    max_attempts: int
    head: Callable[[], int | None]
    read_version: Callable[[int], SystemVersion]
    _read_paths: Callable[[Iterable[str]], dict[str, Path]]
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
            if got is not None:
                old = _lease_from_dict(parse_json(got[0], f"{self.uri}/{key}"), key)
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
                out.append(_lease_from_dict(parse_json(got[0], f"{self.uri}/{key}"), key))
        return sorted(out, key=lambda lease: lease.run_id)

    def gc(self, *, retention_s: float, dry_run: bool = True,
           now: float | None = None) -> list[str]:
        """Blob keys referenced by no retained version, no alias and no active lease, deleted
        unless `dry_run`. A version is retained while it is the head or was the head at some time in
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
            successor_committed = epoch_of(version.provenance["committed_at"])
            number = version.parent
        path_hashes.update(alias.path for alias in self.aliases())  # any age: serving reads it
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
            gc_id = uuid.uuid4().hex
            deadline = time.time() + GC_DELETE_S
            self._register_collection(gc_id, deadline + GC_DELETE_S)
            try:
                # Leases taken and versions committed while this collection was deciding still
                # count. A writer publishing after this last look waits for the registered
                # collection and restores what it deleted (`_restore_collected`).
                leased, young = protected([lease for lease in self.leases()
                                           if lease.expires_at > self.clock()])
                leased |= self._blobs_of_versions_after(head)
                leased |= {c.blob for p in self._read_paths(
                    {alias.path for alias in self.aliases()}).values() for c in p.components}
                candidates = [info for info in candidates if info.key[len("blobs/"):]
                              not in leased and info.updated < young]
                deleted = []
                for info in candidates:
                    if time.time() > deadline:  # the registration must outlive the deletes
                        log.warning("gc stopped after %d deletions (%.0f s); run it again",
                                    len(deleted), GC_DELETE_S)
                        break
                    self.backend.delete(info.key)
                    deleted.append(info)
                candidates = deleted
            finally:
                self._register_collection(gc_id, None)
        # A temporary file is an interrupted write only once it is older than any write
        # takes, whatever the retention asked for: a younger one may be a live writer's.
        swept = self.backend.sweep_partial(min(cutoff, time.time() - PARTIAL_WRITE_MIN_AGE_S),
                                           dry_run=dry_run)
        return sorted(info.key for info in candidates) + swept


    def _blobs_of_versions_after(self, scanned: int) -> set[str]:
        """Blobs referenced by the versions committed after version `scanned`."""
        newest = self.head()
        hashes: set[str] = set()
        for number in range(scanned + 1, (newest if newest is not None else -1) + 1):
            version = self.read_version(number)
            hashes.add(version.root)
            hashes.update(version.tasks.values())
        return {c.blob for p in self._read_paths(hashes).values() for c in p.components}



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
        """The collections registered as deleting: (id -> expiry, generation of `GC`)."""
        got = self.backend.read(GC_KEY)
        if got is None:
            return {}, 0
        doc = parse_json(got[0], f"{self.uri}/{GC_KEY}")
        active = doc.get("collections") if isinstance(doc, dict) else None
        if not isinstance(active, dict):
            raise IntegrityError(f"{self.uri}/{GC_KEY} is not a collection register: {doc!r}")
        return {str(k): float(v) for k, v in active.items()}, got[1]

    def _register_collection(self, gc_id: str, expires_at: float | None) -> None:
        """Add (or, with None, remove) a collection in `GC` by compare-and-swap; expired
        entries of killed collections are dropped on the way."""
        for _ in range(self.max_attempts):
            active, generation = self._collections()
            now = time.time()
            active = {k: v for k, v in active.items() if v > now and k != gc_id}
            if expires_at is not None:
                active[gc_id] = expires_at
            try:
                self.backend.write(GC_KEY, encode({"collections": active}),
                                   if_generation_match=generation)
                return
            except ConflictError:
                time.sleep(random.uniform(0, 0.05))
        raise ConflictError(f"{self.uri}/{GC_KEY} kept changing; retry the collection later")

    def _await_collections(self) -> None:
        active, _ = self._collections()
        while active:
            now = time.time()
            if all(expiry <= now for expiry in active.values()):
                return
            time.sleep(0.05)
            current, _ = self._collections()
            active = {k: v for k, v in active.items() if k in current}

