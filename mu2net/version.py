"""The code version: one string that tags the images, names the pipeline versions and is
recorded in every commit, so a system version can be traced to the code that produced it.

`git describe --tags --always --dirty` when the code runs from a git checkout (tagged releases
give `v0.2.0`, later commits `v0.2.0-3-g1a2b3c4d5e6f`, uncommitted changes add `-dirty`); without
any tag the package version is prefixed (`0.1.0-g1a2b3c4d5e6f`). Inside an image there is no git:
the build passes the same string as the `MU2NET_CODE_VERSION` build argument, which the
Dockerfiles turn into an environment variable. Only entry points read it (`baked_version`) and
pass it on as `code_version(baked=...)`, which then wins over git. `python -m mu2net.version`
prints it (used by images/build.sh), so the image tag and the tag `mu2net compile` writes are
the same string.
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata

ENV_VAR = "MU2NET_CODE_VERSION"
_TAG_RE = re.compile(r"[^A-Za-z0-9_.-]")
# `git describe --always` without any tag: the bare abbreviated hash, maybe with -dirty (a hash
# may start with a digit, like a release tag does)
_UNTAGGED_RE = re.compile(r"^[0-9a-f]{12,40}(-dirty)?$")


def package_version() -> str:
    try:
        return metadata.version("mu2net")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _git_describe(repo: str) -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--tags", "--always", "--dirty", "--abbrev=12"],
                             cwd=repo, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def baked_version() -> str:
    """The code version an image was built with (`MU2NET_CODE_VERSION`), "" outside an image.
    For entry points (the CLI, `python -m mu2net.version`) to pass to `code_version`."""
    return os.environ.get(ENV_VAR, "")


def code_version(repo: str | None = None, baked: str | None = None) -> str:
    """A Docker-tag-safe code version (see the module docstring for the rules); `baked`, the
    version an image was built with (`baked_version()`), wins when given."""
    baked = (baked or "").strip()
    if baked:
        return _TAG_RE.sub("-", baked)[:128]
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    described = _git_describe(repo) if os.path.exists(os.path.join(repo, ".git")) else None
    if described is None:
        version = package_version()
    elif re.match(r"^v?\d", described) and not _UNTAGGED_RE.match(described):
        version = described
    else:  # no tag: only an abbreviated hash, maybe with -dirty
        version = f"{package_version()}-g{described}"
    return _TAG_RE.sub("-", version)[:128]


def entry_point_version() -> str:
    """The code version of this process, for entry points only (it reads the environment):
    the image's baked version, else git / the package version."""
    return code_version(baked=baked_version())


def image_ref(registry: str, kind: str, version: str) -> str:
    """`<registry>/mu2net-<kind>:<code version>` (kind: cpu, gpu or tpu)."""
    registry = registry.rstrip("/")
    name = f"mu2net-{kind}:{version}"
    return f"{registry}/{name}" if registry else name


if __name__ == "__main__":
    print(entry_point_version())
