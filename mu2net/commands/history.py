"""The store's history on the command line: `versions`, `show VERSION`, `diff A B`, each with
`--json` (the library functions are `mu2net.history` and the store's versions/show/diff)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from mu2net.commands.common import _store, json_arg, store_arg


def _print(doc: object, text: str, as_json: bool) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True) if as_json else text)


def _cmd_versions(args: argparse.Namespace) -> int:
    from mu2net.history import version_rows, versions_text

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} is invalid: expected an integer >= 1")
    rows = version_rows(_store(args.store), args.limit)
    _print(rows, versions_text(rows), args.json)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from mu2net.history import show_doc, show_text

    store = _store(args.store)
    doc = show_doc(store, store.head() if args.version is None else args.version)
    _print(doc, show_text(doc), args.json)
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from mu2net.history import diff_text

    doc = _store(args.store).diff(args.a, args.b)
    _print(doc, diff_text(doc), args.json)
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `versions`, `show` and `diff` (`add` is the CLI's `add_parser`)."""
    p = add("versions", help="the system's versions, newest first: time, run id, code "
                             "version, KFP run, what changed")
    store_arg(p)
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the newest N versions (default: all)")
    json_arg(p, "the versions")
    p.set_defaults(func=_cmd_versions)

    p = add("show", help="one system version: its run, provenance, changes and task table")
    p.add_argument("version", type=int, nargs="?", default=None, metavar="VERSION",
                   help="the system version (default: the head)")
    store_arg(p)
    json_arg(p, "the version")
    p.set_defaults(func=_cmd_show)

    p = add("diff", help="tasks added, removed and changed between two system versions")
    p.add_argument("a", type=int, metavar="A", help="the older system version")
    p.add_argument("b", type=int, metavar="B", help="the newer system version")
    store_arg(p)
    json_arg(p, "the difference")
    p.set_defaults(func=_cmd_diff)
