"""Verified reads of the versioned store (`ReadOps`, mixed into `VersionedStore`): the head
(pointer plus forward probe, never a listing), indices, path documents and blobs, each checked
against its content hash, through a local cache keyed by hash; plus history and task metadata.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mu2net.errors import ConflictError, IntegrityError, StoreError
from mu2net.schema import (
    ROOT_TASK,
    Path,
    SystemVersion,
    SystemView,
    sha256_hex,
    validate_task_name,
)
from mu2net.store.base import ObjectBackend
from mu2net.store.documents import parse_document
from mu2net.store.layout import (
    HEAD_KEY,
    Lru,
    blob_key,
    check_hash,
    decision_text,
    encode,
    path_key,
    task_data_dir_key,
    task_info_key,
    version_key,
)
from mu2net.system_view import LazyPaths
from mu2net.task_info import TaskInfo

log = logging.getLogger(__name__)

_FETCH_THREADS = 16
_PROVENANCE_PROBE_BYTES = 16 * 1024
GAP_PROBE_SLOTS = 4  # numbers a writer looks past a missing index for later ones


class ReadOps:
    """Reads, history and task metadata of `VersionedStore`."""

    backend: ObjectBackend
    uri: str
    cache_dir: str | None
    _indices: Lru
    _paths: Lru

    def _read_pointer(self) -> tuple[int | None, int]:
        """(version the pointer names or None, its generation or 0 when missing)."""
        hint = f"recompute it from the indices: mu2net store repair --store {self.uri} --apply"
        try:
            got = self.backend.read(HEAD_KEY)
        except IntegrityError as exc:  # a local file edited by hand (no object header)
            raise IntegrityError(f"{exc}; {hint}") from None
        if got is None:
            return None, 0
        data, generation = got
        try:
            number = parse_document("head", data, f"{self.uri}/{HEAD_KEY}")
        except IntegrityError:
            raise IntegrityError(
                f"{self.uri}/{HEAD_KEY} is not a head pointer ({len(data)} bytes: "
                f"{data[:40]!r}); expected {{\"version\": N >= 0}}. {hint[0].upper()}{hint[1:]}"
                ) from None
        return number, generation

    def _probe(self, start: int | None, *, past_gaps: bool = False) -> int | None:
        """The newest index reachable from `start` by `exists(versions/N+1)` requests.

        Writers pass `past_gaps`: after the contiguous run they also look `GAP_PROBE_SLOTS`
        numbers further, so a commit never numbers into a gap left by a deleted index (the
        versions past it would hide it) and always numbers after the newest index present.
        A gap is damage that `store check` reports; a few extra existence requests per commit
        are the price, never a listing."""
        number = -1 if start is None else start
        while True:
            while self.backend.exists(version_key(number + 1)):
                number += 1
            if not past_gaps:
                break
            ahead = next((n for n in range(number + 2, number + 2 + GAP_PROBE_SLOTS)
                          if self.backend.exists(version_key(n))), None)
            if ahead is None:
                break
            log.warning("%s: versions %d..%d are missing, but version %d exists (a gap: see "
                        "`mu2net store check`); numbering after it", self.uri, number + 1,
                        ahead - 1, ahead)
            number = ahead
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
            head = self.head()
            if head is not None and number <= head:
                raise IntegrityError(
                    f"version {number} of {self.uri} is missing although the head is {head}: "
                    f"the store is damaged; see `mu2net store check --store {self.uri}`, then "
                    "`mu2net store repair --apply`")
            raise StoreError(f"version {number} does not exist in {self.uri} (head is {head})")
        return self._parse_index(number, got[0])

    def _parse_index(self, number: int, data: bytes) -> SystemVersion:
        where = f"{self.uri}/{version_key(number)}"
        version = parse_document("index", data, where)
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
            except (json.JSONDecodeError, RecursionError):  # longer than the probe, or damaged
                provenance = None
            if isinstance(provenance, dict):
                return provenance
        return self.read_version(number).provenance

    def provenance(self, number: int) -> Mapping[str, Any]:
        """A version's provenance without its task table (a ranged read of the index's head
        at any number of tasks): the run page's history rows (`mu2net.run_page`)."""
        return self._provenance(number)

    def read_path(self, path_hash: str) -> Path:
        check_hash("path hash", path_hash)
        cached = self._paths.get(path_hash)
        if cached is not None:
            return cached
        data = self._read_verified("paths", path_key(path_hash), path_hash, "path document")
        path = parse_document("path", data, f"{self.uri}/{path_key(path_hash)}")
        self._paths.put(path_hash, path)
        return path

    def _read_paths(self, hashes: Iterable[str]) -> dict[str, Path]:
        """Several path documents, fetched in parallel (the full view of a large system)."""
        wanted = sorted(set(hashes))
        with ThreadPoolExecutor(_FETCH_THREADS) as pool:
            return dict(zip(wanted, pool.map(self.read_path, wanted)))

    def load_system(self, number: int | None = None) -> SystemView:
        """The version with its root path read, its other paths read on first access
        (`LazyPaths`: a run reads only the paths it touches) and its summary (component users,
        for accounted parameters) read on first use: the stored document, or, for an index
        written before summaries (format 1), computed from all its paths."""
        version = self.read_version(self._require_head() if number is None else number)

        def load(task: str, path_hash: str) -> Path:
            path = self.read_path(path_hash)
            self._check_owner(path, task, version.number)
            return path

        def load_all(hashes: Mapping[str, str]) -> dict[str, Path]:
            got = self._read_paths(hashes.values())
            for task, path_hash in hashes.items():
                self._check_owner(got[path_hash], task, version.number)
            return {task: got[path_hash] for task, path_hash in hashes.items()}

        paths = LazyPaths(version.tasks, load, load_all)
        return SystemView(version=version, root=self.read_path(version.root), paths=paths,
                          summary=lambda: self.version_summary(version, paths))

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
        check_hash("blob hash", blob_hash)
        return self._read_verified("blobs", blob_key(blob_hash), blob_hash, "blob")

    def has_blob(self, blob_hash: str) -> bool:
        return self.backend.exists(blob_key(check_hash("blob hash", blob_hash)))

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
                infos.append(parse_document("task_record", got[0], f"{self.uri}/{key}"))
        return infos

    def put_task_data_dir(self, name: str, data_dir: str) -> None:
        """Overwritten by every ingest that read the task from a data folder: the last
        folder its data was found in wins (data can move; the content hash says what it
        was)."""
        validate_task_name(name)
        doc = {"schema": "mu2net/task_data_dir/v1", "task": name, "data_dir": data_dir}
        key = task_data_dir_key(name)
        got = self.backend.read(key)
        if got is None or got[0] != encode(doc):
            self.backend.write(key, encode(doc))

    def task_data_dir(self, name: str) -> str:
        validate_task_name(name)
        key = task_data_dir_key(name)
        got = self.backend.read(key)
        if got is None:
            return ""
        doc = parse_document("task_data_dir", got[0], f"{self.uri}/{key}")
        data_dir = doc["data_dir"]
        return data_dir

    # === history ============================================================================

    def versions(self, limit: int | None = None) -> list[SystemVersion]:
        """The chain from the head back; it stops, with a warning naming the damage, at an
        older index that is missing or damaged (a gap: see `mu2net store check`)."""
        out: list[SystemVersion] = []
        number = self.head()
        while number is not None and (limit is None or len(out) < limit):
            try:
                version = self.read_version(number)
            except StoreError as exc:
                if not out:  # the head itself: nothing to show
                    raise
                log.warning("history stops at version %d: %s", number, exc)
                break
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
