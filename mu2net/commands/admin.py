"""Creating and inspecting a store: `init`, `root build`, `status`, `report`, `queue`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from typing import Any

from mu2net.commands.common import (
    _check_store_uri,
    _fmt,
    _root_cache_arg,
    _say,
    _store,
    at_arg,
    config_arg,
    json_arg,
    store_arg,
)
from mu2net.config import get_config
from mu2net.errors import ConfigError, Mu2NetError, SchemaError, StoreError
from mu2net.schema import MODES


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    """The options of a pretrained root (`init --root pretrain:...`, `root build`)."""
    config_arg(p, "cpu_demo")
    p.add_argument("--seed", type=int, default=0, help="random seed of the root")
    p.add_argument("--data-dir", default="", help="data_dir for tfds: sources")
    p.add_argument("--examples", type=int, default=0,
                   help="pretraining examples (default: the config's root_pretrain_examples)")
    _root_cache_arg(p)


def _cmd_init(args: argparse.Namespace) -> int:
    from mu2net.blobs import DirBlobs
    from mu2net.root import build_root
    from mu2net.version import entry_point_version

    config = get_config(args.config)
    _check_store_uri(args.store)  # the store is created only once the root is built
    kind, _, target = args.root.partition(":")
    metrics: dict[str, Any] = {}
    started = time.monotonic()
    if kind == "random" and not target:
        root, blobs = build_root(config, "random", seed=args.seed)
    elif kind == "npz" and target:
        local = _localize(target)
        try:
            root, blobs = build_root(config, "npz", npz_path=local)
        except SchemaError as exc:
            raise ConfigError(f"--root {args.root!r}: {exc}") from None
        except Mu2NetError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"--root {args.root!r}: {target!r} is not a vit_jax .npz "
                              f"checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    elif kind == "pretrain" and target:
        root, blobs, metrics, _ = _pretrained_root(config, target, args)
    else:
        raise ConfigError(f"--root {args.root!r} is invalid: expected random, npz:URI or "
                          "pretrain:SPEC")
    store = _store(args.store, create=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = store.init(root, DirBlobs(tmp).put_all(blobs),
                            {"root": args.root, "config_name": config.name,
                             "code_version": entry_point_version()})
    what = "created" if result.created else "already holds this root as"
    extra = "".join(f", {k} {v:.4f}" for k, v in metrics.items()
                    if k in ("validation_accuracy", "test_accuracy"))
    print(f"store {args.store} {what} version 0: root of {len(root.components)} components, "
          f"{root.num_params:,} parameters (method {config.method_version}{extra}; "
          f"{time.monotonic() - started:.1f} s)")
    return 0


def _pretrained_root(config: Any, spec: str, args: argparse.Namespace
                     ) -> tuple[Any, dict[str, bytes], dict[str, Any], str]:
    """(root, blobs, metrics, cache file) of a root pretrained on `spec`, from the root cache
    when it holds one with this recipe (`--examples` overrides the config's and the key)."""
    from mu2net.root_cache import (
        ROOT_CACHE_DIR,
        cached_pretrained_root,
        root_cache_file,
        root_cache_hit,
    )
    from mu2net.tasks.sources import load_source

    examples = getattr(args, "examples", 0) or 0
    if examples < 0:
        raise ConfigError(f"--examples {examples} is invalid: expected a positive number of "
                          "pretraining examples (0: the config's root_pretrain_examples)")
    if examples:
        config = config.replace(root_pretrain_examples=examples)
    cache_dir = getattr(args, "root_cache", None) or ROOT_CACHE_DIR
    task = load_source(spec, data_dir=getattr(args, "data_dir", "") or None)
    file_path = root_cache_file(config, task.info, seed=args.seed, cache_dir=cache_dir)
    if root_cache_hit(file_path):
        _say(f"reusing the pretrained root {file_path}")
    else:
        _say(f"pretraining the root on {task.info.name} ({task.info.split_sizes['train']} "
             f"training images, {config.root_pretrain_examples} examples); it will be kept "
             f"as {file_path}")
    root, blobs, metrics = cached_pretrained_root(config, task, seed=args.seed,
                                                  cache_dir=cache_dir)
    return root, blobs, metrics, file_path


def _cmd_root(args: argparse.Namespace) -> int:
    """`root build`: pretrain the config's root once (or find it in the cache)."""
    config = get_config(args.config)
    spec = args.task or config.root_task
    started = time.monotonic()
    root, _, metrics, file_path = _pretrained_root(config, spec, args)
    key = os.path.basename(file_path)[len(config.name) + 1:-len(".npz")]
    print(f"root {file_path}\n  key            {key}\n  pretrained on  {spec} "
          f"({metrics.get('examples_trained', '?')} examples, "
          f"{metrics.get('train_seconds', '?')} s when built)\n"
          f"  validation     {_fmt(metrics.get('validation_accuracy'))}\n"
          f"  test accuracy  {_fmt(metrics.get('test_accuracy'))}\n"
          f"  root path      {root.hash} ({root.num_params:,} parameters; "
          f"{time.monotonic() - started:.1f} s now)")
    return 0


def _localize(uri: str) -> str:
    """A local path for a file URI (gs:// objects are downloaded to a temporary file)."""
    if not uri.startswith("gs://"):
        if not os.path.isfile(uri):
            what = "is a folder" if os.path.isdir(uri) else "does not exist"
            raise ConfigError(f"checkpoint {uri!r} {what}: --root npz:URI names a vit_jax .npz "
                              "file (a local path or gs://bucket/key)")
        return uri
    from google.api_core import exceptions as gexc

    from mu2net.gcloud import REQUEST_TIMEOUT_S, default_client, parse_gs_uri

    bucket, key = parse_gs_uri(uri, ConfigError)
    tmp = tempfile.NamedTemporaryFile(suffix=".npz", delete=False)
    try:
        default_client(error=ConfigError).bucket(bucket).blob(key).download_to_filename(
            tmp.name, timeout=REQUEST_TIMEOUT_S)
    except gexc.GoogleAPIError as exc:
        os.unlink(tmp.name)
        raise ConfigError(f"checkpoint {uri!r} cannot be downloaded: "
                          f"{str(exc).splitlines()[0]}") from None
    return tmp.name


def _cmd_status(args: argparse.Namespace) -> int:
    from mu2net.status import paths_text, status_dict, status_text

    store = _store(args.store)
    doc = status_dict(store, args.at)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(status_text(doc) + "\n\n" + paths_text(store.load_system(doc["version"])))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mu2net.report import write_report

    written = write_report(_store(args.store), args.out, args.at)
    folder = os.path.dirname(written[-1]) or "."
    if args.json:
        print(json.dumps({"report": written[0], "figures": written[1:]}, indent=2))
    else:
        print(f"wrote {args.out} (self-contained: open it in a browser) and "
              f"{len(written) - 1} figure files beside it ({folder})")
    return 0


def _cmd_queue(args: argparse.Namespace) -> int:
    store = _store(args.store)
    if args.action == "add":
        from mu2net.tasks.specs import check_queue_spec

        if not args.specs:
            raise ConfigError("queue add needs at least one task spec")
        from mu2net.commands.local import named_specs

        local = "://" not in args.store or args.store.startswith("file://")
        specs = [check_queue_spec(spec, args.mode, local_store=local)
                 for spec in named_specs(args.specs, args.name)]
        if store.head() is None:
            raise StoreError(f"store {args.store!r} is not initialised: run `mu2net init "
                             f"--store {args.store} --root ...` before queueing tasks")
        from mu2net.queue import check_new_entry

        for spec in specs:  # each checked against the queue as the previous ones left it
            check_new_entry(store, spec, args.mode)
            entry = store.enqueue(spec, args.mode, data_dir=args.data_dir)
            print(f"queued {entry.id}: {entry.spec} ({entry.mode})")
        return 0
    if args.action in ("remove", "retry"):
        return _queue_edit(store, args)
    for moved in store.give_back_overdue():  # runs that timed out or died
        print(f"gave back {moved.id} ({moved.spec}): now {moved.state}"
              + (f": {moved.error}" if moved.error else ""), file=sys.stderr)
    entries = store.queue()
    for reason in getattr(store, "damaged_entries", []):
        print(f"damaged: {reason} (see `mu2net store check`)", file=sys.stderr)
    if args.json:
        print(json.dumps([e.__dict__ | {"extra": dict(e.extra)} for e in entries], indent=2))
        return 0
    if not entries:
        print("queue is empty")
    for e in entries:
        tail = f" run {e.run_id}" if e.run_id else ""
        tail += f" error: {e.error}" if e.error else ""
        print(f"{e.id}  {e.state:<8} {e.mode:<8} {e.spec}{tail}")
    return 0



def _queue_edit(store: Any, args: argparse.Namespace) -> int:
    """`queue remove ID|TASK` and `queue retry ID`."""
    from mu2net.queue import entries_to_remove

    if len(args.specs) != 1:
        raise ConfigError(f"queue {args.action} needs exactly one "
                          f"{'entry id or task' if args.action == 'remove' else 'entry id'}, "
                          f"got {args.specs}")
    if args.action == "retry":
        entry = store.retry_entry(args.specs[0])
        print(f"retrying {entry.id}: {entry.spec} ({entry.mode}) is pending again")
        return 0
    for entry in entries_to_remove(store, args.specs[0]):
        store.remove_entry(entry.id)
        print(f"removed {entry.id}: {entry.spec} ({entry.mode}, was {entry.state})")
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
    p = add("init", help="create system version 0 (the root model) in a store")
    store_arg(p)
    p.add_argument("--root", required=True,
                   help="the root: random | npz:URI (a vit_jax checkpoint) | pretrain:SPEC")
    _pretrain_args(p)
    p.set_defaults(func=_cmd_init)

    p = add("root", help="build the config's pretrained root once, into the root cache")
    p.add_argument("action", choices=("build",), help="build: pretrain (or find) the root")
    p.add_argument("--task", default="",
                   help="pretraining task source (default: the config's root_task)")
    _pretrain_args(p)
    p.set_defaults(func=_cmd_root)

    p = add("status", help="the system's tasks, accuracies, scores, parameters and last run")
    store_arg(p)
    at_arg(p)
    json_arg(p, "the pinned status document (README, `status --json`)")
    p.set_defaults(func=_cmd_status)

    p = add("report", help="write the system graph and history as HTML")
    store_arg(p)
    p.add_argument("--out", required=True, help="the HTML file to write (figures beside it)")
    at_arg(p)
    json_arg(p, "the files written")
    p.set_defaults(func=_cmd_report)

    p = add("queue", help="the store's task queue (what scheduled runs onboard next): add SPEC "
                          "..., list, remove ID|TASK, retry ID (a failed entry)")
    p.add_argument("action", choices=("add", "list", "remove", "retry"),
                   help="add: queue task specs; list: show the entries; remove: drop an entry "
                        "no run holds; retry: a failed entry back to pending")
    p.add_argument("specs", nargs="*", metavar="SPEC|ID|TASK",
                   help="add: task sources (or task names with --mode iterate); remove: an "
                        "entry id or a task; retry: an entry id")
    store_arg(p)
    p.add_argument("--mode", choices=MODES, default="onboard",
                   help="onboard a new task or iterate an existing one")
    p.add_argument("--data-dir", dest="data_dir", default="",
                   help="add: where the entries' tfds: data is (a gs:// or local folder of TFDS "
                        "datasets); recorded with each entry, so every run of it reads there")
    p.add_argument("--name", default=None,
                   help="add: the task's name (one SPEC only; default: derived from the spec)")
    json_arg(p, "the entries")
    p.set_defaults(func=_cmd_queue)
