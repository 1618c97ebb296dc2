"""Helpers every command module shares: opening a store for a command, progress output,
and the `pipelines` package (reached through importlib: the library never imports kfp)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import Any

from mu2net.config import get_config
from mu2net.errors import ConfigError, StoreError

DEFAULT_WORKDIR = "local_outputs"
CACHE_ENV = "MU2NET_CACHE_DIR"  # where the CLI caches store reads (see user_cache_dir)
STORE_ENV = "MU2NET_STORE"  # the store of every command that takes --store, when not given


def pipelines_module(module: str) -> Any:
    """`<pipelines>.<module>`, which imports kfp (the library must not). The wheel installs the
    repository's `pipelines/` and `components/` as `mu2net.pipelines` and `mu2net.components`
    (setup.cfg `package_dir`), so that only `mu2net` is installed top level; a checkout on the
    path imports them as the top-level `pipelines` and `components`."""
    import mu2net

    installed = os.path.isdir(os.path.join(os.path.dirname(mu2net.__file__), "pipelines"))
    if not installed and importlib.util.find_spec("pipelines") is not None:
        return importlib.import_module(f"pipelines.{module}")
    return importlib.import_module(f"mu2net.pipelines.{module}")  # wheel, or editable mapping


_pipelines = pipelines_module  # the name command modules use


def _store(uri: str, config_name: str | None = None, *, create: bool = False) -> Any:
    """The store at `uri`. Only `init` creates a local store's folder (`create=True`): other
    commands read or extend an existing store, so a mistyped --store leaves nothing behind
    and is told so (`check_store_exists`)."""
    from mu2net.store import open_store

    _check_store_uri(uri)
    if not create:
        check_store_exists(uri)
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


def no_store_message(uri: str) -> str:
    """What a command reading a store tells a user whose --store names nothing: check the
    path first (a typo), and how a new store is made."""
    return (f"no store at {uri!r} (check the path; `mu2net init --store {uri} --root ...` "
            "creates one)")


def missing_local_store(uri: str) -> bool:
    """Whether `uri` is a local path with no folder (a gs:// prefix is checked by reading)."""
    folder = uri[len("file://"):] if uri.startswith("file://") else uri
    return "://" not in folder and not os.path.isdir(folder)


def check_store_exists(uri: str) -> None:
    """A local --store must be an existing folder."""
    if missing_local_store(uri):
        raise StoreError(no_store_message(uri))


class DeprecatedOption(argparse.Action):
    """A former spelling of an option: hidden from the help, stores into the new option's
    `dest`, and prints a one-line deprecation warning on stderr."""

    def __init__(self, option_strings: Any, dest: str, *, replacement: str,
                 **kwargs: Any) -> None:
        kwargs.update(help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, _parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"mu2net: warning: {option_string} is deprecated; use {self.replacement}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def at_arg(p: argparse.ArgumentParser, what: str = "the system version to read") -> None:
    """`--at N`: a system version (default: the head). `--version N` is its deprecated
    spelling, kept working for scripts written before `mu2net --version` existed."""
    p.add_argument("--at", type=int, default=None, metavar="N",
                   help=f"{what} (default: the head, the newest version)")
    p.add_argument("--version", dest="at", type=int, action=DeprecatedOption,
                   replacement="--at")


def json_arg(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (for scripts)")


def help_command(parser: argparse.ArgumentParser) -> Any:
    """A command function printing `parser`'s help (`mu2net`, or a command group such as
    `mu2net store`, run without its command): help on stdout, exit 0."""
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0
    return show


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
