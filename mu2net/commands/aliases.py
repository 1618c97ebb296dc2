"""Task aliases on the command line: `alias set|list|remove` (registered by `commands.store`).

An alias such as `prod` names the version of a task that serving reads; `predict` and `export`
take `--alias prod` or `--task TASK@prod`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from mu2net.commands.common import help_command, store_arg
from mu2net.errors import ConfigError


def split_task(task: str, alias: str | None) -> tuple[str, str | None]:
    """(task, alias) from `--task TASK[@ALIAS]` and `--alias`; both at once is refused."""
    name, sep, suffix = task.partition("@")
    if sep and alias:
        raise ConfigError(f"--task {task!r} names alias {suffix!r} and --alias {alias!r} "
                          "another: give one")
    return name, (suffix if sep else alias) or None


def resolve_version(store: Any, task: str, alias: str | None, version: int | None
                    ) -> int | None:
    """The version to read for a task: its alias's, else --at (None: the head)."""
    if alias is None:
        return version
    if version is not None:
        raise ConfigError(f"--at {version} and alias {alias!r} both name a version: give "
                          "one")
    return store.resolve_alias(task, alias).version


def _cmd_set(args: argparse.Namespace) -> int:
    from mu2net.commands.store import open_existing_store

    alias = open_existing_store(args.store).set_alias(args.task, args.alias, args.at)
    moved = f" (was version {alias.previous})" if alias.previous is not None else ""
    print(f"{alias.task}@{alias.alias} -> version {alias.version}, path "
          f"{alias.path[:12]}{moved}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from mu2net.commands.store import open_existing_store

    found = open_existing_store(args.store).aliases(args.task)
    if args.json:
        print(json.dumps([a.to_dict() for a in found], indent=2, sort_keys=True))
    elif not found:
        print("no aliases")
    for a in [] if args.json else found:
        print(f"{a.task}@{a.alias}: version {a.version}, path {a.path[:12]}, set {a.set_at}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from mu2net.commands.store import open_existing_store

    gone = open_existing_store(args.store).remove_alias(args.task, args.alias)
    print(f"removed {gone.task}@{gone.alias} (was version {gone.version}); its blobs are "
          "collectable again once outside gc's retention window")
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("alias", help="name a task's version for serving (e.g. prod): set, list, remove")
    actions = p.add_subparsers(dest="alias_action", metavar="ACTION",
                               help="set, list or remove")
    p.set_defaults(func=help_command(p))
    s = actions.add_parser("set", help="point TASK@ALIAS at the task's path at a version "
                                       "(default: the head); gc keeps aliased paths")
    s.add_argument("task", metavar="TASK", help="the task whose path the alias names")
    s.add_argument("alias", metavar="ALIAS", help="the alias name, e.g. prod")
    s.add_argument("--at", type=int, default=None, metavar="VERSION",
                   help="the system version whose path of TASK the alias names (default: "
                        "the head)")
    store_arg(s)
    s.set_defaults(func=_cmd_set)
    ls = actions.add_parser("list", help="every alias, or one task's")
    ls.add_argument("--task", default=None, help="only this task's aliases (default: all)")
    ls.add_argument("--json", action="store_true", help="a JSON list")
    store_arg(ls)
    ls.set_defaults(func=_cmd_list)
    r = actions.add_parser("remove", help="delete TASK@ALIAS")
    r.add_argument("task", metavar="TASK", help="the task of the alias")
    r.add_argument("alias", metavar="ALIAS", help="the alias to delete")
    store_arg(r)
    r.set_defaults(func=_cmd_remove)
