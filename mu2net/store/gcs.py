"""`ObjectBackend` on Google Cloud Storage (`gs://bucket/prefix`), through google-cloud-storage.

GCS has no atomic rename, so atomicity comes from request preconditions: a create-only write
sends `if_generation_match=0`, a compare-and-swap sends the generation read before; a lost race
comes back as HTTP 412 (`PreconditionFailed`), raised here as `ConflictError`.

Writes that carry a precondition must be single-shot (multipart) uploads: the client switches to
a resumable upload above 8 MiB, and the emulator used in tests does not enforce preconditions
on those. Every commit-point object of the store (index, head pointer, queue entries, leases)
is far smaller; a larger one is refused here rather than sent unprotected. Blobs may be larger:
they are content-addressed, so a create-only blob upload that is not enforced can only write the
same bytes again.

A download returns the object's generation in its response headers, so `read` gets the bytes and
the generation they belong to in one request. A download whose bytes do not match the checksum
header (`DataCorruption`) is requested again, a bounded number of times: the bytes were damaged
in transit, or (in the emulator, seen in CI) an object overwritten mid-download was served with
the previous generation's checksum. Reads are idempotent and every commit-point object is
checked again by its precondition, so a retried read cannot publish stale state.

Under heavy overwrite contention the emulator also, rarely (1 in ~20,000 reads in a stress run),
pairs an object's newer bytes with an older generation header; a compare-and-swap on that pair
fails and is re-read, so the store stays correct. Real GCS serves each generation consistently.

The client library retries a conditional upload whose response was lost; the retry then fails
its precondition although the first attempt succeeded. The store is written for that: every
`ConflictError` is followed by a re-read, and commits are idempotent per run id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption

from mu2net.errors import ConflictError, StoreError
from mu2net.store.base import ObjectBackend, ObjectInfo

if TYPE_CHECKING:
    from mu2net.store.versioned import VersionedStore

# The client's switch-over point from a single-shot multipart upload to a resumable one.
SINGLE_SHOT_MAX_BYTES = 8 * 1024 * 1024
# Downloads tried per read before a checksum mismatch is raised as a StoreError.
DOWNLOAD_ATTEMPTS = 5


class GcsBackend(ObjectBackend):
    """Objects under `gs://<bucket>/<prefix>/`. The bucket must exist."""

    def __init__(self, bucket: str, prefix: str = "", *,
                 client: storage.Client | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.uri = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.client = client if client is not None else default_client()
        self.bucket = self.client.bucket(bucket)

    def _name(self, key: str) -> str:
        if not key or key.startswith("/") or "//" in key:
            raise StoreError(f"object key {key!r} is invalid: use '/'-separated non-empty names")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def _download(self, blob: storage.Blob, key: str, **kwargs: Any) -> bytes:
        """`blob`'s bytes, downloaded again when they fail their checksum."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                return blob.download_as_bytes(**kwargs)
            except DataCorruption as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise StoreError(f"{self.uri}/{key}: {DOWNLOAD_ATTEMPTS} downloads in a row "
                                     f"failed their checksum ({exc})") from exc
        raise AssertionError("unreachable")

    def read(self, key: str) -> tuple[bytes, int] | None:
        blob = self.bucket.blob(self._name(key))
        try:
            data = self._download(blob, key)
        except gexc.NotFound:
            return None
        if blob.generation is None:
            raise StoreError(f"{self.uri}/{key}: the download carried no generation header")
        return data, int(blob.generation)

    def read_range(self, key: str, start: int, length: int) -> bytes | None:
        if length <= 0:
            return b"" if self.exists(key) else None
        try:  # `end` is inclusive
            return self._download(self.bucket.blob(self._name(key)), key,
                                  start=start, end=start + length - 1)
        except gexc.NotFound:
            return None
        except gexc.RequestRangeNotSatisfiable:  # start beyond the end of the object
            return b""

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if if_generation_match not in (None, 0) and len(data) > SINGLE_SHOT_MAX_BYTES:
            raise StoreError(f"{self.uri}/{key}: a compare-and-swap write of {len(data)} bytes "
                             f"exceeds the single-shot upload limit ({SINGLE_SHOT_MAX_BYTES})")
        blob = self.bucket.blob(self._name(key))
        try:
            blob.upload_from_string(data, content_type="application/octet-stream",
                                    if_generation_match=if_generation_match)
        except gexc.PreconditionFailed:
            what = ("already exists (create-only write lost the race)"
                    if if_generation_match == 0 else
                    f"is no longer at generation {if_generation_match} (another writer moved it)")
            raise ConflictError(f"{self.uri}/{key} {what}") from None
        return int(blob.generation)

    def exists(self, key: str) -> bool:
        return self.bucket.blob(self._name(key)).exists()

    def list(self, prefix: str) -> Iterator[str]:
        for info in self.list_info(prefix):
            yield info.key

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        for blob in self.client.list_blobs(self.bucket, prefix=full):
            yield ObjectInfo(key=self._key(blob.name), size=int(blob.size or 0),
                             generation=int(blob.generation), updated=blob.updated.timestamp())

    def delete(self, key: str) -> None:
        try:
            self.bucket.blob(self._name(key)).delete()
        except gexc.NotFound:
            pass


def default_client() -> storage.Client:
    """Application-default credentials; against an emulator (`STORAGE_EMULATOR_HOST` set, as
    the tests and `fake-gcs-server` do) an anonymous client for project `test`."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project="test", credentials=AnonymousCredentials())
    return storage.Client()


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of `gs://bucket[/prefix]`."""
    if not uri.startswith("gs://") or not uri[len("gs://"):].split("/", 1)[0]:
        raise StoreError(f"store URI {uri!r} is invalid: expected gs://bucket[/prefix]")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    return bucket, prefix.strip("/")


def open_gcs(uri: str, *, client: storage.Client | None = None,
             **options: Any) -> VersionedStore:
    """The versioned store under `gs://bucket/prefix`. `options` go to `VersionedStore`
    (`cache_dir=`, `scorer=`)."""
    from mu2net.store.versioned import VersionedStore

    bucket, prefix = parse_gs_uri(uri)
    return VersionedStore(GcsBackend(bucket, prefix, client=client), **options)
