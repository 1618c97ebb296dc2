"""Where component parameters are read from: anything with `get_blob(sha256) -> bytes`.

The model store implements `get_blob` too (`mu2net.store`), so the search and prediction code
take a `BlobSource` and run unchanged on a store, on a local folder (`DirBlobs`, what tests
use), or on the `.npz` files a search cycle staged but has not committed yet (`FileBlobs`).
`ChainBlobs` tries several sources in order. Every source verifies the bytes against the hash.

A pipeline run stages its new blobs in the store itself (content-addressed, held by the run's
lease until the commit), so the steps' artifacts carry only hashes: such a blob's location is
`STAGED_IN_STORE`, and a chain finds it in the store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from mu2net.errors import IntegrityError, StoreError
from mu2net.params_io import npz_bytes_to_params, sha256_bytes, verified
from mu2net.schema import HASH_RE

STAGED_IN_STORE = "store"  # location of a blob staged in the store under the run's lease


@runtime_checkable
class BlobSource(Protocol):
    def get_blob(self, blob_hash: str) -> bytes:
        """Bytes of the blob, verified against the hash. `StoreError` if missing,
        `IntegrityError` (a `StoreError`) if the bytes do not match."""
        ...


def _check(blob_hash: str) -> str:
    if not isinstance(blob_hash, str) or not HASH_RE.match(blob_hash):
        raise StoreError(f"blob hash {blob_hash!r} is invalid: expected a sha256 hex digest")
    return blob_hash


class DirBlobs:
    """Blobs as `<root>/<sha256>.npz` files in one local folder."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)

    def _file(self, blob_hash: str) -> str:
        return os.path.join(self.root, f"{_check(blob_hash)}.npz")

    def put_blob(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        target = self._file(digest)
        if not os.path.exists(target):
            tmp = f"{target}.tmp{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return digest

    def put_all(self, blobs: Mapping[str, bytes]) -> dict[str, str]:
        """Write `{sha256: bytes}` here; `{sha256: file path}`, the `blob_files` that
        `ModelStore.init` and an `Extension` take."""
        return {(digest := self.put_blob(data)): self._file(digest) for data in blobs.values()}

    def put_file(self, blob_hash: str, file_path: str) -> str:
        with open(file_path, "rb") as fh:
            data = verified(fh.read(), blob_hash, file_path)
        return self.put_blob(data)

    def has_blob(self, blob_hash: str) -> bool:
        return os.path.exists(self._file(blob_hash))

    def get_blob(self, blob_hash: str) -> bytes:
        target = self._file(blob_hash)
        if not os.path.exists(target):
            raise StoreError(f"blob {blob_hash} is not in {self.root}")
        with open(target, "rb") as fh:
            return verified(fh.read(), blob_hash, target)


class MemoryBlobs:
    """Blobs held in a dict `{sha256: bytes}` (e.g. a freshly built root before it is stored)."""

    def __init__(self, blobs: Mapping[str, bytes] | None = None) -> None:
        self.blobs = dict(blobs or {})

    def put_blob(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        self.blobs[digest] = data
        return digest

    def get_blob(self, blob_hash: str) -> bytes:
        data = self.blobs.get(_check(blob_hash))
        if data is None:
            raise StoreError(f"blob {blob_hash} is not among the {len(self.blobs)} held in "
                             "memory")
        return verified(data, blob_hash, "memory")


class FileBlobs:
    """Blobs listed as `sha256 -> local file path` (a cycle's staged, uncommitted blobs).

    Plain paths and `file://` URIs are read; any other scheme is a `StoreError` (the caller
    must localise remote artefacts, or put a source that can read them earlier in a chain).
    """

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def get_blob(self, blob_hash: str) -> bytes:
        location = self.files.get(_check(blob_hash))
        if location is None:
            raise StoreError(f"blob {blob_hash} is not among the {len(self.files)} staged files")
        if location == STAGED_IN_STORE:
            raise StoreError(f"blob {blob_hash} is staged in the store, not in a local file")
        local = location[len("file://"):] if location.startswith("file://") else location
        if "://" in local:
            raise StoreError(f"staged blob {blob_hash} is at {location!r}, which is not a local "
                             "file; pass a BlobSource that can read it")
        if not os.path.exists(local):
            raise StoreError(f"staged blob {blob_hash} file {local!r} does not exist")
        with open(local, "rb") as fh:
            return verified(fh.read(), blob_hash, local)


class ChainBlobs:
    """Tries each source in order. A missing blob falls through to the next source; corrupt
    bytes (`IntegrityError`) do not. If no source has it, the error lists every source's."""

    def __init__(self, sources: Sequence[BlobSource]) -> None:
        self.sources = list(sources)

    def get_blob(self, blob_hash: str) -> bytes:
        errors = []
        for source in self.sources:
            try:
                return source.get_blob(blob_hash)
            except IntegrityError:
                raise
            except StoreError as exc:
                errors.append(f"{type(source).__name__}: {exc}")
        raise StoreError(f"blob {blob_hash} found in no source: " + "; ".join(errors))


class ParamsCache:
    """Decoded parameters by blob hash for one process: a frozen component shared by many
    children is read and decoded once. Arrays are returned read-only so no caller can modify
    a published component in place."""

    def __init__(self, source: BlobSource, max_entries: int = 512) -> None:
        self.source = source
        self.max_entries = max_entries
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def params(self, blob_hash: str) -> dict[str, np.ndarray]:
        hit = self._cache.get(blob_hash)
        if hit is None:
            hit = npz_bytes_to_params(self.source.get_blob(blob_hash))
            for array in hit.values():
                array.setflags(write=False)
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[blob_hash] = hit
        return hit
