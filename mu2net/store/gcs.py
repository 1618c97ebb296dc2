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

Every request has a connect/read timeout and its retries a deadline (`RETRY_DEADLINE_S`), so an
unreachable endpoint fails in under a minute instead of the client's default 120 s. Missing
credentials, a missing bucket, refused access and an unreachable endpoint are raised as one-line
`StoreError`s naming the store.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from mu2net.errors import ConflictError, StoreError
from mu2net.gcloud import (
    CREDENTIALS_HINT,
    REQUEST_TIMEOUT_S,
    RETRY_DEADLINE_S,
    default_client,
    first_line,
    parse_gs_uri,
)
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
                 client: storage.Client | None = None,
                 deadline_s: float | None = None) -> None:
        self.prefix = prefix.strip("/")
        self.uri = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.client = client if client is not None else default_client()
        self.bucket = self.client.bucket(bucket)
        self.deadline_s = RETRY_DEADLINE_S if deadline_s is None else deadline_s
        self._calls = {"timeout": REQUEST_TIMEOUT_S,
                       "retry": DEFAULT_RETRY.with_timeout(self.deadline_s)}
        self._bucket_seen = False

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Failures of the service or the network as one-line `StoreError`s naming the object;
        the cases a caller decides on (not found, precondition failed) pass through."""
        where = f"{self.uri}/{key}" if key else self.uri
        try:
            yield
        except (gexc.NotFound, gexc.PreconditionFailed, gexc.RequestRangeNotSatisfiable):
            raise
        except gexc.RetryError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise StoreError(f"cannot reach Google Cloud Storage for {where} within "
                             f"{self.deadline_s:.0f} s ({_reason(cause)}): check the network "
                             "(and STORAGE_EMULATOR_HOST, if set)") from exc
        except (gexc.Unauthorized, gexc.Forbidden) as exc:
            raise StoreError(f"access to {where} was refused ({exc.code}): "
                             f"{first_line(exc)}; check the account's permissions on bucket "
                             f"{self.bucket.name!r} or {CREDENTIALS_HINT}") from exc
        except gexc.GoogleAPIError as exc:
            raise StoreError(f"Google Cloud Storage failed on {where}: {first_line(exc)}"
                             ) from exc
        except auth_exc.GoogleAuthError as exc:
            raise StoreError(f"Google Cloud credentials failed for {where}: "
                             f"{first_line(exc)}; {CREDENTIALS_HINT}") from exc
        except requests.exceptions.RequestException as exc:
            raise StoreError(f"cannot reach Google Cloud Storage for {where} "
                             f"({_reason(exc)})") from exc

    def _missing(self) -> None:
        """Called on a 404: a missing object is an answer, a missing bucket an error."""
        if self._bucket_seen:
            return
        with self._errors(""):
            try:
                found = self.bucket.exists(**self._calls)
            except gexc.Forbidden:  # an account may read objects without bucket metadata
                found = True
        if not found:
            raise StoreError(f"bucket {self.bucket.name!r} does not exist (store {self.uri}): "
                             f"create it (`gcloud storage buckets create gs://"
                             f"{self.bucket.name}`) or fix the store URI")
        self._bucket_seen = True

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
                with self._errors(key):
                    return blob.download_as_bytes(**kwargs, **self._calls)
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
            self._missing()
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
            self._missing()
            return None
        except gexc.RequestRangeNotSatisfiable:  # start beyond the end of the object
            return b""

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if if_generation_match not in (None, 0) and len(data) > SINGLE_SHOT_MAX_BYTES:
            raise StoreError(f"{self.uri}/{key}: a compare-and-swap write of {len(data)} bytes "
                             f"exceeds the single-shot upload limit ({SINGLE_SHOT_MAX_BYTES})")
        blob = self.bucket.blob(self._name(key))
        try:
            with self._errors(key):
                blob.upload_from_string(data, content_type="application/octet-stream",
                                        if_generation_match=if_generation_match, **self._calls)
        except gexc.NotFound:
            self._missing()
            raise StoreError(f"{self.uri}/{key} cannot be written: not found") from None
        except gexc.PreconditionFailed:
            what = ("already exists (create-only write lost the race)"
                    if if_generation_match == 0 else
                    f"is no longer at generation {if_generation_match} (another writer moved it)")
            raise ConflictError(f"{self.uri}/{key} {what}") from None
        return int(blob.generation)

    def exists(self, key: str) -> bool:
        with self._errors(key):
            return self.bucket.blob(self._name(key)).exists(**self._calls)

    def list(self, prefix: str) -> Iterator[str]:
        for info in self.list_info(prefix):
            yield info.key

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        try:
            with self._errors(prefix):
                for blob in self.client.list_blobs(self.bucket, prefix=full, **self._calls):
                    yield ObjectInfo(key=self._key(blob.name), size=int(blob.size or 0),
                                     generation=int(blob.generation),
                                     updated=blob.updated.timestamp())
        except gexc.NotFound:
            self._missing()
            raise StoreError(f"{self.uri}/{prefix} cannot be listed: not found") from None

    def delete(self, key: str) -> None:
        try:
            with self._errors(key):
                self.bucket.blob(self._name(key)).delete(**self._calls)
        except gexc.NotFound:
            pass


def _reason(exc: BaseException) -> str:
    """The short cause of a network failure ("Connection refused", "timed out"), not the
    urllib3 chain that names it."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return f"{type(exc).__name__}: {found.group(1).strip()}"
    if "timed out" in text.lower():
        return f"{type(exc).__name__}: timed out"
    return f"{type(exc).__name__}: {first_line(exc)[:160]}"


def open_gcs(uri: str, *, client: storage.Client | None = None, create: bool = True,
             **options: Any) -> VersionedStore:
    """The versioned store under `gs://bucket/prefix`. `options` go to `VersionedStore`
    (`cache_dir=`, `scorer=`). `create` is accepted for symmetry with `open_local`: a bucket
    is never created, and a prefix needs no creating."""
    from mu2net.store.versioned import VersionedStore

    del create
    bucket, prefix = parse_gs_uri(uri)
    return VersionedStore(GcsBackend(bucket, prefix, client=client), **options)
