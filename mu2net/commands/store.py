"""Store administration on the command line: `store check`, `store repair`, `rollback`, `gc`.

Every command opens the store without the local cache (an administrator must see what is in
the bucket, not a cached copy) and refuses a local path where no store exists instead of
creating one. Changes happen only with `--apply` (repair, gc) or by design (rollback).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from typing import Any

from mu2net.commands.common import _check_store_uri, check_store_exists, help_command, store_arg
from mu2net.errors import StoreError

DEFAULT_RETENTION_HOURS = 7 * 24.0
AMORTISATION_NOTE = (
    "note: a component shared by several tasks counts 1/k of its parameters for each of its "
    "k users (accounted params), so other tasks that share components with this one may show "
    "other accounted params and scores in the new version, although their paths did not change")


def open_existing_store(uri: str) -> Any:
    """The store at `uri`, uncached; a local path must already hold a store."""
    from mu2net.store import open_store

    _check_store_uri(uri)  # empty, or a file: the checks every store command makes
    check_store_exists(uri)
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

    report = check_store(open_existing_store(args.store), hash_blobs=not args.quick,
                         full=args.all, retention_s=_retention_s(args.retention_hours))
    _emit(report.to_dict(), report.text(), args.json)
    return 0 if report.ok else 1


def _cmd_repair(args: argparse.Namespace) -> int:
    from mu2net.store.maintenance import repair_store

    report = repair_store(open_existing_store(args.store), apply=args.apply,
                          retention_s=_retention_s(args.retention_hours),
                          hash_blobs=not args.quick, full=args.all)
    _emit(report.to_dict(), report.text(), args.json)
    return 1 if report.unrepairable else 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    run_id = args.run_id or f"rollback-{uuid.uuid4().hex[:12]}"
    result = store.rollback_task(args.task, args.to_version, run_id)
    if result.note:  # the task already has that path: nothing published
        if args.json:
            _emit({"task": args.task, "to_version": args.to_version, "version": result.version,
                   "created": False, "run_id": run_id, "note": result.note}, "", True)
        else:
            print(f"rollback of {args.task!r}: {result.note}")
        return 0
    if args.json:
        _emit({"task": args.task, "to_version": args.to_version, "version": result.version,
               "created": result.created, "run_id": run_id}, "", True)
        return 0
    verb = "committed" if result.created else "was already committed as"
    print(f"rollback of {args.task!r} to its path at version {args.to_version} {verb} version "
          f"{result.version} (run id {run_id})")
    print(AMORTISATION_NOTE)
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    notes: list[str] = []
    keys = store.gc(retention_s=_retention_s(args.retention_hours), dry_run=not args.apply,
                    notes=notes)
    if args.json:
        _emit({"store": store.uri, "applied": bool(args.apply), "keys": list(keys),
               "notes": notes}, "", True)
        return 0
    verb = "deleted" if args.apply else "would delete (dry run; add --apply)"
    for key in keys:
        print(f"  {key}")
    for note in notes:
        print(f"  note: {note}")
    print(f"gc of {store.uri}: {verb} {len(keys)} object(s)"
          f"{f'; {len(notes)} note(s) above (see `mu2net store check`)' if notes else ''}")
    return 0


def _cmd_cat(args: argparse.Namespace) -> int:
    """`store cat KEY`: an object's JSON as plain text. A local store's files start with a
    16-byte header (magic and generation, mu2net.store.local), so `jq` cannot read them
    directly; this prints the document after it (`--raw`: the stored bytes unchanged)."""
    from mu2net.store.layout import version_key

    store = open_existing_store(args.store)
    key = version_key(int(args.key)) if args.key.isdigit() else args.key.lstrip("/")
    got = store.backend.read(key)
    if got is None:
        raise StoreError(f"no object {key!r} in {store.uri} (keys look like HEAD, "
                         "versions/000000000003.json or 3, paths/HASH.json, queue/ID.json)")
    data, generation = got
    if args.raw:
        sys.stdout.buffer.write(data)
        return 0
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(f"{store.uri}/{key} is not a JSON document ({len(data)} bytes; "
                         "blobs are .npz parameter files): use --raw to write its bytes") from None
    if args.generation:
        doc = {"key": key, "generation": generation, "object": doc}
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0



def _retention_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retention-hours", type=float, default=DEFAULT_RETENTION_HOURS,
                   help="keep versions that were the head, and blobs written, within this many "
                        f"hours; longer than the longest run (default {DEFAULT_RETENTION_HOURS:g})")


def _all_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true",
                   help="audit every index of the history (reads them all: the incident tool); "
                        "default: the head and the versions gc retains (--retention-hours)")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `store check|repair`, `rollback` and `gc` (`add` is the CLI's `add_parser`)."""

    p = add("store", help="check, repair or read a store's objects")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION",
                               title="actions", description="check, repair or cat")
    p.set_defaults(func=help_command(p))
    c = actions.add_parser("check", help="verify the head and gc's retention window (--all: "
                                         "every index), the paths and blobs they reference; "
                                         "list orphans (exit 1 if damaged)")
    store_arg(c)
    _retention_arg(c)
    _all_arg(c)
    c.add_argument("--quick", action="store_true", help="check blobs exist without hashing them")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=_cmd_check)
    r = actions.add_parser("repair", help="recompute HEAD, roll back tasks whose head path is "
                                          "broken, collect orphans (dry run unless --apply)")
    store_arg(r)
    _retention_arg(r)
    _all_arg(r)
    r.add_argument("--apply", action="store_true", help="make the changes (default: plan only)")
    r.add_argument("--quick", action="store_true", help="check blobs exist without hashing them")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=_cmd_repair)
    k = actions.add_parser("cat", help="print one stored object's JSON (a local store's files "
                                       "start with a binary header that jq cannot read)")
    store_arg(k)
    k.add_argument("key", help="object key: HEAD, versions/000000000003.json (or just 3), "
                               "paths/HASH.json, tasks/NAME/HASH.json, queue/ID.json")
    k.add_argument("--generation", action="store_true",
                   help="wrap the document as {key, generation, object}")
    k.add_argument("--raw", action="store_true", help="write the stored bytes unchanged")
    k.set_defaults(func=_cmd_cat)

    p = add("rollback", help="publish a new version whose path of TASK is the one it had at "
                             "--to-version (other tasks unchanged)")
    store_arg(p)
    p.add_argument("--task", required=True, help="the task to roll back")
    p.add_argument("--to-version", type=int, required=True, metavar="N",
                   help="the system version whose path of the task to publish again")
    p.add_argument("--run-id", default="", help="makes a retried rollback idempotent "
                                                "(default: a new rollback-<random> id)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_rollback)

    p = add("gc", help="delete blobs no retained version or active run references (dry run "
                       "unless --apply)")
    store_arg(p)
    _retention_arg(p)
    p.add_argument("--apply", action="store_true", help="delete (default: list only)")
    p.add_argument("--json", action="store_true", help="print the keys as JSON")
    p.set_defaults(func=_cmd_gc)

    from mu2net.commands import aliases

    aliases.register(add)
