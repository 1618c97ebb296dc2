"""`ObjectBackend` on a local folder: the embedded default store (`file:///abs/dir` or a path).

Each key is one file under the root. The file starts with a 16-byte header (magic + the
object's generation) so that the bytes and their generation are read together in one `read`,
the way a GCS download returns both; the data follows unchanged.

Why this is safe across processes:

* Every write goes to a temporary file in the target folder first, then appears under its key
  in one atomic step, so a reader (or a process killed mid-write) never leaves a partial object.
* Create-only writes (`if_generation_match=0`) publish with `os.link`, which fails if the key
  exists: exactly one of several racing creators wins, with no lock.
* Every other write (compare-and-swap or unconditional) and every delete holds an exclusive
  `fcntl.flock` on a per-key lock file while it compares the generation and renames the new
  file into place (`os.replace`).
* Generations are microsecond timestamps, raised above the previous one when needed, so a key
  that is deleted and recreated does not repeat a generation (no ABA), as on GCS.

Temporary files left by a killed writer are named `.tmp-*`, are never listed, and are removed
by `sweep_partial` (called from the store's garbage collection).

Files edited by hand are damage, reported rather than crashed on: a file without the header
reads as an `IntegrityError` naming its key (an unconditional write, which is how `store repair`
rewrites HEAD, replaces it); a symbolic link that leads out of the store is never followed
(`IntegrityError`), never listed, and nothing outside the store is ever deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mu2net.errors import ConflictError, IntegrityError, StoreError
from mu2net.store.base import ObjectBackend, ObjectInfo

if TYPE_CHECKING:
    from mu2net.store.versioned import VersionedStore

_MAGIC = b"MU2NOBJ1"
_HEADER = struct.Struct(">8sQ")  # magic, generation
_TMP_PREFIX = ".tmp-"
_LOCK_DIR = ".locks"


class LocalBackend(ObjectBackend):
    """Objects as files under `root`. `fsync=False` skips flushing to disk (tests, seeding a
    benchmark): a killed process still leaves no partial object, a power cut might."""

    def __init__(self, root: str, *, fsync: bool = True, create: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.uri = f"file://{self.root}"
        self.fsync = fsync
        self._real_root = os.path.realpath(self.root)
        if create:  # read-only callers (status, report, predict) pass False: no folder appears
            os.makedirs(os.path.join(self.root, _LOCK_DIR), exist_ok=True)

    # === ObjectBackend ======================================================================

    def read(self, key: str) -> tuple[bytes, int] | None:
        try:
            with open(self._file(key), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        return raw[_HEADER.size:], self._parse_header(key, raw[:_HEADER.size])

    def read_range(self, key: str, start: int, length: int) -> bytes | None:
        try:
            with open(self._file(key), "rb") as f:
                self._parse_header(key, f.read(_HEADER.size))
                f.seek(_HEADER.size + start)
                return f.read(length)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        path = self._file(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if if_generation_match == 0:
            generation = _new_generation(0)
            tmp = self._write_tmp(path, generation, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConflictError(f"{self.uri}/{key} already exists (create-only write "
                                    "lost the race)") from None
            finally:
                os.unlink(tmp)
            self._sync_dir(path)
            return generation
        with self._lock(key):
            current = self._current_generation(key, path,
                                               strict=if_generation_match is not None)
            if if_generation_match is not None and current != if_generation_match:
                raise ConflictError(f"{self.uri}/{key} is at generation {current}, not "
                                    f"{if_generation_match} (another writer moved it first)")
            generation = _new_generation(current)
            tmp = self._write_tmp(path, generation, data)
            os.replace(tmp, path)
            self._sync_dir(path)
            return generation

    def exists(self, key: str) -> bool:
        try:
            return os.path.isfile(self._file(key))
        except IntegrityError:  # a link out of the store: something is there, and damaged
            return True

    def list(self, prefix: str) -> Iterator[str]:
        for key, _ in self._walk(prefix):
            yield key

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        for key, path in self._walk(prefix):
            try:
                self._file(key)
            except IntegrityError:  # a link out of the store: never collected, never read
                yield ObjectInfo(key=key, size=0, generation=0, updated=float("inf"))
                continue
            try:
                with open(path, "rb") as f:
                    header = f.read(_HEADER.size)
                    st = os.fstat(f.fileno())
            except FileNotFoundError:  # deleted since the folder was listed
                continue
            try:
                generation, size = self._parse_header(key, header), st.st_size - _HEADER.size
            except IntegrityError:  # edited by hand: listed as it is; reads report it
                generation, size = 0, st.st_size
            yield ObjectInfo(key=key, size=size, generation=generation, updated=st.st_mtime)

    def delete(self, key: str) -> None:
        path = self._file(key, follow=False)  # removes a link itself, never what it points to
        with self._lock(key), contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def sweep_partial(self, older_than: float, dry_run: bool = True) -> list[str]:
        """Temporary files of killed writers last touched before `older_than` (epoch s)."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != _LOCK_DIR]
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    continue
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < older_than:
                        found.append(os.path.relpath(path, self.root))
                        if not dry_run:
                            os.unlink(path)
        return sorted(found)

    # === helpers ============================================================================

    def _file(self, key: str, *, follow: bool = True) -> str:
        """The file of a key; `IntegrityError` when it (or, with `follow=False`, its folder)
        resolves outside the store through a symbolic link."""
        parts = key.split("/")
        if (not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts)
                or any(p.startswith(_TMP_PREFIX) for p in parts) or parts[0] == _LOCK_DIR):
            raise StoreError(f"object key {key!r} is invalid: use '/'-separated names without "
                             f"empty, '.', '..', '{_TMP_PREFIX}*' or leading '{_LOCK_DIR}' parts")
        path = os.path.join(self.root, *parts)
        real = os.path.realpath(path if follow else os.path.dirname(path))
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise IntegrityError(f"{self.uri}/{key} leads out of the store (a symbolic link to "
                                 f"{real}); refusing to follow it: remove the link")
        return path

    def _parse_header(self, key: str, header: bytes) -> int:
        if len(header) != _HEADER.size:
            raise IntegrityError(f"{self.uri}/{key} is truncated (no object header)")
        magic, generation = _HEADER.unpack(header)
        if magic != _MAGIC:
            raise IntegrityError(f"{self.uri}/{key} is not an object written by this backend "
                             f"(header {magic!r}, expected {_MAGIC!r})")
        return generation

    def _current_generation(self, key: str, path: str, *, strict: bool = True) -> int:
        """The generation on disk (0 when missing). Not `strict`: a file without a header
        (edited by hand) counts as generation 0, so an unconditional write replaces it."""
        try:
            with open(path, "rb") as f:
                return self._parse_header(key, f.read(_HEADER.size))
        except FileNotFoundError:
            return 0
        except IntegrityError:
            if strict:
                raise
            return 0

    def _write_tmp(self, path: str, generation: int, data: bytes) -> str:
        tmp = os.path.join(os.path.dirname(path), f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(_MAGIC, generation))
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        return tmp

    def _sync_dir(self, path: str) -> None:
        if not self.fsync:
            return
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        fd = os.open(os.path.join(self.root, _LOCK_DIR, name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _walk(self, prefix: str) -> Iterator[tuple[str, str]]:
        base = prefix if prefix.endswith("/") or not prefix else os.path.dirname(prefix)
        start = os.path.join(self.root, *[p for p in base.split("/") if p])
        real = os.path.realpath(start)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            return  # a folder linked out of the store: never listed (reads report it)
        found = []
        for folder, dirs, files in os.walk(start):
            if folder == self.root:
                dirs[:] = [d for d in dirs if d != _LOCK_DIR]
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                path = os.path.join(folder, name)
                key = os.path.relpath(path, self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    found.append((key, path))
        yield from sorted(found)


def _new_generation(current: int) -> int:
    return max(current + 1, time.time_ns() // 1000)


def local_root(uri: str) -> str:
    """The folder of a `file://` URI or plain path."""
    if uri.startswith("file://"):
        path = uri[len("file://"):]
        if not path.startswith("/"):
            raise StoreError(f"store URI {uri!r} is invalid: a file URI needs an absolute path "
                             "(file:///abs/dir)")
        return path
    if "://" in uri:
        raise StoreError(f"store URI {uri!r} is not a local folder (file:///abs/dir or a path)")
    return os.path.abspath(uri)


def open_local(uri: str, *, fsync: bool = True, create: bool = True,
               **options: Any) -> VersionedStore:
    """The versioned store on a local folder (created if missing, unless `create=False`).
    `options` go to `VersionedStore` (`cache_dir=`, `scorer=`)."""
    from mu2net.store.versioned import VersionedStore

    return VersionedStore(LocalBackend(local_root(uri), fsync=fsync, create=create), **options)
