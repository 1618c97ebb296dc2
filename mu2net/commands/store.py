"""Store administration on the command line: `store check`, `store repair`, `rollback`, `gc`.

Every command opens the store without the local cache (an administrator must see what is in
the bucket, not a cached copy) and refuses a local path where no store exists instead of
creating one. Changes happen only with `--apply` (repair, gc) or by design (rollback).
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from mu2net.commands.common import _check_store_uri
from mu2net.errors import StoreError

DEFAULT_RETENTION_HOURS = 7 * 24.0


def open_existing_store(uri: str) -> Any:
    """The store at `uri`, uncached; a local path must already hold a store."""
    from mu2net.store import open_store

    _check_store_uri(uri)  # empty, or a file: the checks every store command makes
    folder = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" not in folder and not os.path.isdir(folder):
        raise StoreError(f"no store at {uri!r}: {folder!r} is not a folder (create one with "
                         "`mu2net init --store ... --root ...`)")
    return open_store(uri, cache_dir=None, create=False)


def _retention_s(hours: float) -> float:
    if not hours >= 0:
        raise StoreError(f"--retention-hours {hours!r} is invalid: expected hours >= 0, longer "
                         "than the longest run")
    return hours * 3600.0


def _emit(doc: Any, text: str, as_json: bool) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True) if as_json else text)


def _cmd_check(args: argparse.Namespace) -> int:
    from mu2net.store.maintenance import check_store

    report = check_store(open_existing_store(args.store), hash_blobs=not args.quick)
    _emit(report.to_dict(), report.text(), args.json)
    return 0 if report.ok else 1


def _cmd_repair(args: argparse.Namespace) -> int:
    from mu2net.store.maintenance import repair_store

    report = repair_store(open_existing_store(args.store), apply=args.apply,
                          retention_s=_retention_s(args.retention_hours),
                          hash_blobs=not args.quick)
    _emit(report.to_dict(), report.text(), args.json)
    return 1 if report.unrepairable else 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    run_id = args.run_id or f"rollback-{uuid.uuid4().hex[:12]}"
    result = store.rollback_task(args.task, args.to_version, run_id)
    verb = "committed" if result.created else "was already committed as"
    print(f"rollback of {args.task!r} to its path at version {args.to_version} {verb} version "
          f"{result.version} (run id {run_id})")
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    notes: list[str] = []
    keys = store.gc(retention_s=_retention_s(args.retention_hours), dry_run=not args.apply,
                    notes=notes)
    verb = "deleted" if args.apply else "would delete (dry run; add --apply)"
    for key in keys:
        print(f"  {key}")
    for note in notes:
        print(f"  note: {note}")
    print(f"gc of {store.uri}: {verb} {len(keys)} object(s)"
          f"{f'; {len(notes)} note(s) above (see `mu2net store check`)' if notes else ''}")
    return 0


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="local folder or gs://bucket/prefix")


def _retention_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retention-hours", type=float, default=DEFAULT_RETENTION_HOURS,
                   help="keep versions that were the head, and blobs written, within this many "
                        f"hours; longer than the longest run (default {DEFAULT_RETENTION_HOURS:g})")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `store check|repair`, `rollback` and `gc` (`add` is the CLI's `add_parser`)."""

    p = add("store", help="check or repair a store")
    actions = p.add_subparsers(dest="store_action", required=True)
    c = actions.add_parser("check", help="verify every index, path document, blob hash, "
                                         "reference and the head; list orphans (exit 1 if damaged)")
    _store_arg(c)
    c.add_argument("--quick", action="store_true", help="check blobs exist without hashing them")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_cmd_check)
    r = actions.add_parser("repair", help="recompute HEAD, roll back tasks whose head path is "
                                          "broken, collect orphans (dry run unless --apply)")
    _store_arg(r)
    _retention_arg(r)
    r.add_argument("--apply", action="store_true", help="make the changes (default: plan only)")
    r.add_argument("--quick", action="store_true", help="check blobs exist without hashing them")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_cmd_repair)

    p = add("rollback", help="publish a new version whose path of TASK is the one it had at "
                             "--to-version (other tasks unchanged)")
    _store_arg(p)
    p.add_argument("--task", required=True)
    p.add_argument("--to-version", type=int, required=True)
    p.add_argument("--run-id", default="", help="makes a retried rollback idempotent")
    p.set_defaults(func=_cmd_rollback)

    p = add("gc", help="delete blobs no retained version or active run references (dry run "
                       "unless --apply)")
    _store_arg(p)
    _retention_arg(p)
    p.add_argument("--apply", action="store_true", help="delete (default: list only)")
    p.set_defaults(func=_cmd_gc)
