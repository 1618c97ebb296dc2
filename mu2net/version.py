"""The code version: one string that tags the images, names the pipeline versions and is
recorded in every commit, so a system version can be traced to the code that produced it.

`git describe --tags --always --dirty` when the code runs from a git checkout (tagged releases
give `v0.2.0`, later commits `v0.2.0-3-g1a2b3c4d5e6f`, uncommitted changes add `-dirty`); without
any tag the package version is prefixed (`0.1.0-g1a2b3c4d5e6f`). Inside an image there is no git:
the build passes the same string as the `MU2NET_CODE_VERSION` build argument, which the
Dockerfiles turn into an environment variable. `python -m mu2net.version` prints it (used by
images/build.sh), so the image tag and the tag `mu2net compile` writes are the same string.
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata

ENV_VAR = "MU2NET_CODE_VERSION"
_TAG_RE = re.compile(r"[^A-Za-z0-9_.-]")


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


def code_version(repo: str | None = None) -> str:
    """A Docker-tag-safe code version (see the module docstring for the rules)."""
    baked = os.environ.get(ENV_VAR, "").strip()
    if baked:
        return _TAG_RE.sub("-", baked)[:128]
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    described = _git_describe(repo) if os.path.exists(os.path.join(repo, ".git")) else None
    if described is None:
        version = package_version()
    elif re.match(r"^v?\d", described):
        version = described
    else:  # no tag: only an abbreviated hash, maybe with -dirty
        version = f"{package_version()}-g{described}"
    return _TAG_RE.sub("-", version)[:128]


def image_ref(registry: str, kind: str, version: str | None = None) -> str:
    """`<registry>/mu2net-<kind>:<code version>` (kind: cpu, gpu or tpu)."""
    registry = registry.rstrip("/")
    name = f"mu2net-{kind}:{version or code_version()}"
    return f"{registry}/{name}" if registry else name


if __name__ == "__main__":
    print(code_version())
