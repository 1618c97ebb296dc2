"""Google Cloud Storage access that the store and the task sources share: `gs://` URIs, the
client, and bounded request times (an unreachable endpoint fails within a minute, not after the
client's default 120 s per call)."""

from __future__ import annotations

from typing import Any

from mu2net.errors import Mu2NetError, StoreError

# Per request: seconds to connect, and seconds a response may stay silent (not a total, so large
# blobs still download). Retries of one call stop after RETRY_DEADLINE_S.
REQUEST_TIMEOUT_S = (10.0, 60.0)
RETRY_DEADLINE_S = 40.0
CREDENTIALS_HINT = ("run `gcloud auth application-default login`, or set "
                    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file")


def parse_gs_uri(uri: str, error: type[Mu2NetError] = StoreError) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of `gs://bucket[/prefix]`."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise error(f"{uri!r} is not a gs:// URI: expected gs://BUCKET[/PREFIX]")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket:
        raise error(f"{uri!r} has no bucket: expected gs://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_client(project: str | None = None, error: type[Mu2NetError] = StoreError) -> Any:
    """A client with application-default credentials. The library itself points at an
    emulator, with anonymous credentials, when `STORAGE_EMULATOR_HOST` is set (tests).

    Raises:
      `error`: no credentials are configured (one line saying how to configure them).
    """
    from google.auth import exceptions as auth_exc
    from google.cloud import storage

    try:
        return storage.Client(project=project)
    except auth_exc.GoogleAuthError as exc:
        raise error(f"no usable Google Cloud credentials: {first_line(exc)}; "
                    f"{CREDENTIALS_HINT}") from exc
