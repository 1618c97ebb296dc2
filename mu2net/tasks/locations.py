"""Where task data lives: files that Debian packages ship, and `gs://` prefixes.

Packaged data is looked up under `/usr/share` first, then under the project's
`data/debroot/usr/share`, where `scripts/install_system_deps.sh` unpacks the `.deb`s when it is not
run as root. Object storage is read only through google-cloud-storage (TensorFlow's own `gs://`
filesystem cannot reach a local emulator, so it could not be tested): a `gs://` prefix is mirrored
to local disk and read from there.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from mu2net.errors import TaskError
from mu2net.gcloud import REQUEST_TIMEOUT_S, RETRY_DEADLINE_S, default_client, parse_gs_uri

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARE_ROOTS = (pathlib.Path("/usr/share"), PROJECT_ROOT / "data" / "debroot" / "usr" / "share")
INSTALL_HINT = "run `bash scripts/install_system_deps.sh` (or `make setup`) to install it"


def find_share_file(relative: str, package: str) -> pathlib.Path:
    """The path of a file a Debian package installs under /usr/share (or the project's debroot).

    Raises `TaskError` naming the package when neither location has it.
    """
    tried = []
    for root in SHARE_ROOTS:
        candidate = root / relative
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    raise TaskError(f"{relative!r} from the Debian package {package!r} is missing (looked in "
                    f"{', '.join(tried)}): {INSTALL_HINT}")


def mirror_gs_prefix(uri: str, local_dir: str | os.PathLike, *, client: Any = None) -> int:
    """Copy every object under `gs://bucket/prefix/` into `local_dir`, keeping relative paths.

    Returns the number of objects copied. Raises `TaskError` when the bucket cannot be read or
    nothing lies under the prefix (an unreadable location).
    """
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket_name, prefix = parse_gs_uri(uri, TaskError)
    client = client or default_client(error=TaskError)
    local_root = pathlib.Path(local_dir)
    list_prefix = f"{prefix}/" if prefix else ""
    count = 0
    try:
        calls = {"timeout": REQUEST_TIMEOUT_S,
                 "retry": DEFAULT_RETRY.with_timeout(RETRY_DEADLINE_S)}
        for blob in client.list_blobs(bucket_name, prefix=list_prefix, **calls):
            rel = blob.name[len(list_prefix):]
            if not rel or rel.endswith("/"):
                continue  # "folder" placeholder objects
            parts = pathlib.PurePosixPath(rel).parts
            if any(p in ("..", ".") for p in parts):
                raise TaskError(f"object {blob.name!r} under {uri!r} has an unsafe name")
            target = local_root.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target), **calls)
            count += 1
    except (gexc.NotFound, gexc.Forbidden, gexc.Unauthorized) as exc:
        raise TaskError(f"cannot read {uri!r}: {exc.__class__.__name__}: {exc}") from exc
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError,
            requests.exceptions.RequestException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TaskError(f"cannot read {uri!r}: {exc.__class__.__name__}: {first}") from exc
    if count == 0:
        raise TaskError(f"nothing found under {uri!r}: the location is empty or unreadable")
    return count
