"""Local runs through kfp.local: `onboard`, `iterate` and `demo` (the main job)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from mu2net.commands.admin import _cmd_init
from mu2net.commands.common import (
    DEFAULT_WORKDIR,
    _check_store_uri,
    _fmt,
    _pipelines,
    _root_cache_arg,
    _say,
    _store,
    config_arg,
    missing_local_store,
    store_arg,
)
from mu2net.config import get_config
from mu2net.errors import ConfigError, StoreError, TaskError

DEMO_TASKS = ("demo:mnist_5k", "demo:glyph_letters")


MAX_CYCLES = 1000  # search cycles per task; the paper uses a handful, each one a pipeline run


def check_cycles(cycles: Any) -> int:
    """`cycles` if it is a valid number of search cycles per task (1..`MAX_CYCLES`): checked
    before any list of runs is built, so a typo cannot exhaust memory."""
    if (isinstance(cycles, bool) or not isinstance(cycles, int) or not
            1 <= cycles <= MAX_CYCLES):
        raise ConfigError(f"--cycles {cycles!r} is invalid: expected an integer from 1 to "
                          f"{MAX_CYCLES} (search cycles per task)")
    return cycles


def cycle_requests(spec: str, cycles: int) -> list[tuple[str, str]]:
    """The pipeline runs that onboard one task in `cycles` search cycles, as in the paper:
    an `onboard` run of the spec, then `cycles - 1` `iterate` runs of the task it creates
    (by name, so each re-evolves the path the previous cycle committed)."""
    check_cycles(cycles)
    from mu2net.tasks.sources import parse_spec

    name = parse_spec(spec).default_name()
    return [(spec, "onboard")] + [(name, "iterate")] * (cycles - 1)


def _request_task(spec: str, mode: str) -> str:
    """The task name a (spec, mode) request works on: an iterate request may name the task."""
    if mode == "iterate" and ":" not in spec:
        return spec
    from mu2net.tasks.sources import parse_spec

    return parse_spec(spec).default_name()


def _cycle_result(store: Any, task: str) -> dict[str, Any]:
    """The task's accuracies in the store's newest version (what the cycle just committed)."""
    head = store.head()
    path = store.load_system(head).paths.get(task)
    metrics = dict(path.metrics) if path is not None else {}
    return {"version": head, "validation": metrics.get("validation_accuracy"),
            "test": metrics.get("test_accuracy"), "path_cycles": metrics.get("num_cycles")}


def _accuracy_table(label: str, rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{label}: accuracy per cycle",
             f"  {'cycle':>5}  {'version':>7}  {'validation':>10}  {'test':>6}"]
    for i, row in enumerate(rows, start=1):
        lines.append(f"  {i:>5}  {row['version']!s:>7}  {_fmt(row['validation']):>10}  "
                     f"{_fmt(row['test']):>6}")
    return "\n".join(lines)


def _run_cycles(store_uri: str, tasks: Sequence[Sequence[tuple[str, str]]],
                args: argparse.Namespace) -> int:
    """Run each task's cycles (local pipeline runs, one (spec, mode) each) one after another,
    printing the task's accuracy after every cycle and, for several cycles, a table."""
    local_run = _pipelines("local_run")
    from mu2net.progress import duration
    from mu2net.version import entry_point_version

    store = _store(store_uri)
    if store.head() is None:
        raise StoreError(f"store {store_uri!r} is empty: run `mu2net init --store {store_uri} "
                         "--root ...` first")
    config = get_config(args.config)
    total = len(tasks)
    runs = sum(len(cycles) for cycles in tasks)
    started = time.monotonic()
    for i, cycles in enumerate(tasks, start=1):
        label = f"[{i}/{total}] {cycles[0][0]}"
        name = _request_task(*cycles[0])
        rows: list[dict[str, Any]] = []
        for c, (spec, mode) in enumerate(cycles, start=1):
            prefix = f"{label}: cycle {c}/{len(cycles)}"
            _say(f"{prefix}: {mode} {spec}, {config.search.generations_per_cycle} "
                 f"generations x {config.search.children_per_generation} children "
                 f"({config.name} config)")
            out = local_run.run_local(
                config_name=args.config, task_spec=spec, mode=mode, store_uri=store_uri,
                workdir=args.workdir, seed=args.seed, data_dir=args.data_dir or "",
                code_version=entry_point_version(), verbose=args.verbose,
                progress=lambda line, prefix=prefix: _say(f"{prefix}:   {line}"))
            _say(f"{prefix}: {out['line']} ({duration(out['seconds'])})")
            row = _cycle_result(store, name)
            rows.append(row)
            _say(f"{prefix}: validation {_fmt(row['validation'])}, test {_fmt(row['test'])} "
                 f"(version {row['version']})")
        if len(rows) > 1:
            _say(_accuracy_table(label, rows))
    _say(f"done: {runs} cycle(s) of {total} task(s) in "
         f"{duration(time.monotonic() - started)}; store head is version {store.head()}")
    return 0


def _local_args(p: argparse.ArgumentParser, default_config: str = "cpu_demo") -> None:
    store_arg(p)
    config_arg(p, default_config)
    p.add_argument("--seed", type=int, default=0, help="random seed of the search")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="kfp.local pipeline root and logs (default: %(default)s)")
    p.add_argument("--data-dir", default="", help="data_dir for tfds: sources")
    p.add_argument("--verbose", action="store_true", help="show kfp's own log lines")


def _cycles(args: argparse.Namespace) -> int:
    """--cycles, or the config's `onboard_cycles` when not given."""
    cycles = getattr(args, "cycles", None)
    return check_cycles(get_config(args.config).onboard_cycles if cycles is None else cycles)


def _cycles_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cycles", type=int, default=None, metavar="N",
                   help="search cycles per task: one onboard run, then N-1 iterate runs "
                        "(default: the config's onboard_cycles)")


def named_specs(specs: Sequence[str], name: str | None) -> list[str]:
    """The specs, the one of them named `name` (`--name`: one spec only)."""
    if not name:
        return list(specs)
    if len(specs) != 1:
        raise ConfigError(f"--name {name!r} names one task, but {len(specs)} specs were given: "
                          "pass one spec with --name")
    from mu2net.tasks.sources import named_spec

    return [named_spec(specs[0], name)]


def _cmd_onboard(args: argparse.Namespace) -> int:
    cycles = _cycles(args)
    specs = named_specs(args.specs, args.name)
    return _run_cycles(args.store, [cycle_requests(spec, cycles) for spec in specs], args)


def _cmd_iterate(args: argparse.Namespace) -> int:
    if args.all == bool(args.tasks):
        raise ConfigError("iterate needs task names or --all (not both)")
    tasks = list(args.tasks)
    if args.all:
        from mu2net.queue import gain_ranking

        store = _store(args.store)
        head = store.head()
        if head is None:
            raise StoreError(f"store {args.store!r} is empty")
        tasks = [name for _, name in gain_ranking(store.load_system(head), store)]
        if not tasks:
            raise TaskError(f"store {args.store!r} holds no task to iterate")
    return _run_cycles(args.store, [[(name, "iterate")] for name in tasks], args)


def _cmd_demo(args: argparse.Namespace) -> int:
    """The README's main command: a pretrained root (from the root cache when it has one),
    then each suite task onboarded in the config's number of cycles, locally."""
    config = get_config(args.config)
    cycles = _cycles(args)
    _check_store_uri(args.store)
    started = time.monotonic()
    if missing_local_store(args.store) or _store(args.store).head() is None:
        init_args = argparse.Namespace(store=args.store, config=args.config, seed=args.seed,
                                       root=f"pretrain:{config.root_task}",
                                       data_dir=args.data_dir or "",
                                       examples=args.root_examples, root_cache=args.root_cache)
        _cmd_init(init_args)
        store = _store(args.store)
    else:
        store = _store(args.store)
        _say(f"store {args.store} already has version {store.head()}: keeping its root")
    view = store.load_system(store.head())
    from mu2net.tasks.sources import parse_spec

    todo = [spec for spec in args.tasks if parse_spec(spec).default_name() not in view.paths]
    if todo:
        _run_cycles(args.store, [cycle_requests(spec, cycles) for spec in todo], args)
    from mu2net.report import write_report
    from mu2net.status import paths_text, status_dict, status_text

    doc = status_dict(store)
    print(status_text(doc) + "\n\n" + paths_text(store.load_system(doc["version"])))
    report = os.path.join(args.workdir, "report.html")
    write_report(store, report)
    _say(f"demo finished in {time.monotonic() - started:.1f} s; wrote the report {report} "
         f"(open it in a browser; figures beside it); inspect with `mu2net status --store "
         f"{args.store}`")
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
    p = add("onboard", help="onboard tasks: N local pipeline cycles per task (kfp.local)")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help="task sources: demo:NAME, tfds:NAME, imagefolder:URI")
    _local_args(p)
    _cycles_arg(p)
    p.add_argument("--name", default=None,
                   help="the task's name (one SPEC only; default: derived from the spec)")
    p.set_defaults(func=_cmd_onboard)

    p = add("iterate", help="re-evolve existing tasks: one local pipeline cycle per task")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="names of tasks in the store")
    p.add_argument("--all", action="store_true",
                   help="every task, the one with the most to gain first")
    _local_args(p)
    p.set_defaults(func=_cmd_iterate)

    p = add("demo", help="the main job: pretrained root + onboard suite tasks, locally")
    _local_args(p)
    p.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), metavar="SPEC",
                   help="task sources to onboard (default: %(default)s)")
    p.add_argument("--root-examples", type=int, default=0,
                   help="root pretraining examples (default: the config's)")
    _cycles_arg(p)
    _root_cache_arg(p)
    p.set_defaults(func=_cmd_demo)
