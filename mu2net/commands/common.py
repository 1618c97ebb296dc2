"""Helpers every command module shares: opening a store for a command, progress output,
and the `pipelines` package (reached through importlib: the library never imports kfp)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from mu2net.config import get_config
from mu2net.errors import ConfigError, StoreError

DEFAULT_WORKDIR = "local_outputs"
CACHE_ENV = "MU2NET_CACHE_DIR"  # where the CLI caches store reads (see user_cache_dir)


def _pipelines(module: str) -> Any:
    """`pipelines.<module>`, which imports kfp (the library must not)."""
    return importlib.import_module(f"pipelines.{module}")


def _store(uri: str, config_name: str | None = None, *, create: bool = False) -> Any:
    """The store at `uri`. Only `init` creates a local store's folder (`create=True`): other
    commands read or extend an existing store, so a mistyped --store leaves nothing behind."""
    from mu2net.store import open_store

    _check_store_uri(uri)
    config = get_config(config_name) if config_name is not None else None
    return open_store(uri, config, create=create, cache_dir=user_cache_dir())


def user_cache_dir() -> str:
    """The store's local cache for commands run by a user (read here, at the entry point):
    `$MU2NET_CACHE_DIR`, else `$XDG_CACHE_HOME/mu2net/store`, by default
    `~/.cache/mu2net/store`. Tests point it at a temporary folder. A cache folder that is a
    file or cannot be created or written is refused here, naming the variable, so its errors
    are never blamed on the store."""
    if os.environ.get(CACHE_ENV):
        path, origin = os.environ[CACHE_ENV], f"${CACHE_ENV}"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        path, origin = os.path.join(base, "mu2net", "store"), "the default; set $" + CACHE_ENV
    problem = ""
    if os.path.exists(path) and not os.path.isdir(path):
        problem = "it is a file, not a folder"
    else:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            problem = exc.strerror or str(exc)
        else:
            if not os.access(path, os.W_OK | os.X_OK):
                problem = "it is not writable"
    if problem:
        raise ConfigError(f"the local store cache {path!r} ({origin}) cannot be used: "
                          f"{problem}; point ${CACHE_ENV} at a writable folder")
    return path


def _check_store_uri(uri: str) -> None:
    if not uri.strip():
        raise StoreError("--store is empty: give a local folder or gs://bucket/prefix")
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" not in local and os.path.exists(local) and not os.path.isdir(local):
        raise StoreError(f"--store {uri!r} is a file, not a store folder: give the folder "
                         "`mu2net init` created (or gs://bucket/prefix)")


def _say(text: str) -> None:
    """Progress to the real stdout (kfp.local redirects sys.stdout while a run is going)."""
    sys.__stdout__.write(text + "\n")
    sys.__stdout__.flush()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _root_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root-cache", default="", metavar="DIR",
                   help="folder of pretrained roots (default: the repository's roots/)")
