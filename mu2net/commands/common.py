"""Helpers every command module shares: opening a store for a command, progress output,
and the `pipelines` package (reached through importlib: the library never imports kfp)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from mu2net.config import get_config
from mu2net.errors import StoreError

DEFAULT_WORKDIR = "local_outputs"
CACHE_ENV = "MU2NET_CACHE_DIR"  # where the CLI caches store reads (see user_cache_dir)
STORE_ENV = "MU2NET_STORE"  # the store of every command that takes --store, when not given


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
    `~/.cache/mu2net/store`. Tests point it at a temporary folder."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mu2net", "store")


def _check_store_uri(uri: str) -> None:
    if not uri.strip():
        raise StoreError("--store is empty: give a local folder or gs://bucket/prefix")
    local = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" not in local and os.path.exists(local) and not os.path.isdir(local):
        raise StoreError(f"--store {uri!r} is a file, not a store folder: give the folder "
                         "`mu2net init` created (or gs://bucket/prefix)")


def config_arg(p: argparse.ArgumentParser, default: str) -> None:
    """`--config NAME|FILE`: a named variant or a .json/.yaml file (`mu2net.config_files`),
    checked when the command runs, so a bad file gets its one-line error."""
    from mu2net.config import CONFIG_NAMES

    p.add_argument("--config", default=default, metavar="NAME|FILE",
                   help=f"a named config {list(CONFIG_NAMES)} or a .json/.yaml config file "
                        "(`mu2net config NAME > my.json` writes a starting point; default: "
                        "%(default)s)")


def store_arg(p: argparse.ArgumentParser, *, required: bool = True, help: str = "") -> None:
    """`--store URI`. Not an argparse `required`: `resolve_store` takes `$MU2NET_STORE` when the
    flag is absent and, for a command that needs a store, names both in its one-line error."""
    p.add_argument("--store", default=None, metavar="URI",
                   help=(help or "the store: a local folder or gs://bucket/prefix")
                   + f" (default: ${STORE_ENV})")
    p.set_defaults(store_required=required)


def resolve_store(args: argparse.Namespace) -> None:
    """Fill `args.store` from `$MU2NET_STORE` when --store was not given (the CLI calls this
    once, before the command); a command that needs a store and has neither is refused here,
    before anything runs. There is no default store: a bucket nobody chose is never used."""
    if not hasattr(args, "store") or args.store is not None:
        return
    args.store = os.environ.get(STORE_ENV) or None
    if args.store is None and getattr(args, "store_required", False):
        raise StoreError(f"no store given: pass --store URI (a local folder or "
                         f"gs://bucket/prefix) or set {STORE_ENV}")


def _say(text: str) -> None:
    """Progress to the real stdout (kfp.local redirects sys.stdout while a run is going)."""
    sys.__stdout__.write(text + "\n")
    sys.__stdout__.flush()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _root_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root-cache", default="", metavar="DIR",
                   help="folder of pretrained roots (default: the repository's roots/)")
