"""Quality versus size and compute: mu2Net+ against the models a user would otherwise pick.

One run, one shared root, paired seeds (one seed seeds every method):

* root: a ViT of the config's architecture pretrained on the suite's root task
  (`fashion_mnist`), shared by every method and seed; by default the cached pretrained root
  (`mu2net.root_cache.cached_pretrained_root`), or pretrained here (`--root-examples N`), or
  the one `mu2net root build --examples N --root-cache DIR` kept (`--root-examples N
  --root-cache-dir DIR`: one root compared across runs), or random (`--root-examples 0`). Its
  cost is reported apart and charged to no method;
* mu2net: the suite tasks onboarded one after another on a local store, each with `--cycles`
  search cycles (cycle 1 `evolve(mode="onboard")`, then `evolve(mode="iterate")`), each cycle
  committed, so later tasks can reuse earlier tasks' components. Accuracy, examples and
  seconds are recorded after every cycle;
* the baselines (`quality/baselines.py` says what each trains): finetune (the whole root, lr
  sweep `--ft-lrs`, early stopping `--ft-patience` within `--ft-max-epochs`, a cap meant never
  to be reached), finetune_equal (the same sweep on the search's examples in all),
  finetune_matched (one run at finetune's lr on the search's examples), topk_<k> for each
  `--topk-blocks` k and adapters_<d> for each `--adapter-dims` d (parameter-matched: the top
  k blocks, or residual adapters, + head on the frozen root; lr sweep `--pm-lrs`), probe,
  scratch and logreg. `--baselines` picks a subset.

Test accuracy is measured once per method on each task's test split (mu2net: by
`close_cycle`). The seeds run in `--jobs` worker processes of one thread each: on 2 cores two
1-thread processes train the cpu_demo ViT at 1,736 + 1,411 images/s together, one 2-thread
process at 1,838 (measured 2026-12-01). Seconds per method are summed over the workers. The
tables and the plot are `quality/report.py`'s, the numbers and done-when checks
`quality/summary.py`'s.

Run:
    .venv/bin/python benchmarks/quality_vs_finetune.py          # cpu_demo, 5 tasks x 3 seeds
    .venv/bin/python benchmarks/quality_vs_finetune.py --smoke  # testing config, ~1 min
    .venv/bin/python benchmarks/quality_vs_finetune.py --render RUN.json --out-dir DIR

Writes `benchmarks/results/quality_vs_finetune.{md,json,png}` (the smoke run: a temp folder);
the JSON is rewritten after every seed, so a run cut short keeps what it measured. `--render`
rewrites the `.md` and `.png` of a recorded JSON (this version's or an earlier one's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from quality import baselines as bl  # noqa: E402
from quality.report import plot, report  # noqa: E402

FULL_TASKS = ("mnist_5k", "digits", "glyph_letters", "glyph_digits", "glyph_styles")
SMOKE_TASKS = ("digits",)
BASELINES = ("finetune", "finetune_equal", "finetune_matched", "topk", "adapters", "probe",
             "scratch", "logreg")


def onboard(store, task, config, seed: int, cycles: int, workdir: str) -> dict[str, Any]:
    """`cycles` search cycles of `task` in process (onboard, then iterate), each committed;
    the task's committed accuracy and the cumulative cost after every cycle."""
    from mu2net.scoring import config_scorer
    from mu2net.search import evolve
    from mu2net.training import child_budget

    name = task.info.name
    budget = child_budget(config, len(task.arrays("train")[1]))
    examples = seconds = children = retained = 0
    records = []
    for cycle in range(1, cycles + 1):
        cycle_dir = os.path.join(workdir, f"cycle{cycle}")
        start = time.perf_counter()
        system = store.load_system()
        extension = evolve(system, task, config, store, seed=seed,
                           run_id=f"bench-{seed}-{name}-{cycle}", workdir=cycle_dir,
                           mode="onboard" if cycle == 1 else "iterate",
                           kept_cycles=store.kept_cycles(system, name))
        result = store.commit(extension, scorer=config_scorer(config))
        seconds += time.perf_counter() - start
        with open(os.path.join(cycle_dir, "state.json")) as fh:
            history = json.load(fh)["history"]
        examples += len(history) * budget.examples
        children += len(history)
        retained += sum(1 for h in history if h["improved"])
        metrics = store.load_system().paths[name].metrics
        records.append({"cycle": cycle, "version": result.version,
                        "validation_accuracy": float(metrics["validation_accuracy"]),
                        "test_accuracy": float(metrics["test_accuracy"]),
                        "examples": examples, "seconds": seconds,
                        "retained": sum(1 for h in history if h["improved"])})
        print(f"  seed {seed} {name}: mu2net cycle {cycle}/{cycles}: test "
              f"{records[-1]['test_accuracy']:.4f}, val {records[-1]['validation_accuracy']:.4f},"
              f" {examples:,} examples, {seconds:.0f} s", flush=True)
    return {"cycles": records, "examples": examples, "seconds": seconds, "children": children,
            "retained": retained}


# === the run ================================================================================


def bench_config(args: argparse.Namespace):
    """The named config, with the search fields (`common.SEARCH_FLAGS`) and the default
    opt_lr the command line overrides (if any)."""
    import dataclasses

    from mu2net.config import get_config

    config, _ = common.with_search_overrides(get_config(args.config), args)
    if args.opt_lr_default is not None:
        config = config.replace(hparams=type(config.hparams)(tuple(
            dataclasses.replace(hp, default=args.opt_lr_default) if hp.name == "opt_lr" else hp
            for hp in config.hparams.params)))
    return config


def make_root(config, args: argparse.Namespace) -> tuple[Any, dict[str, bytes], dict[str, Any]]:
    """The shared root and what to report about it (source, accuracy, cache, seconds)."""
    from mu2net.root import build_root, pretrain_root
    from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task

    start = time.perf_counter()
    cached = False
    if args.root_examples == 0:
        root, blobs = build_root(config, "random", seed=0)
        metrics: dict[str, Any] = {"source": "random_init:0"}
    elif args.root_examples is not None and not args.root_cache_dir:
        root, blobs, metrics = pretrain_root(  # the config's recipe, as the cached root
            config, load_suite_task(ROOT_TASK_NAME), seed=0, examples=args.root_examples)
    else:
        from mu2net.root_cache import cached_pretrained_root, root_cache_file, root_cache_hit

        if args.root_examples is not None:  # the root `mu2net root build --examples N` keeps
            config = config.replace(root_pretrain_examples=args.root_examples)
        kwargs = {"cache_dir": args.root_cache_dir} if args.root_cache_dir else {}
        task = load_suite_task(ROOT_TASK_NAME)
        cache_file = root_cache_file(config, task.info, seed=0, **kwargs)
        cached = root_cache_hit(cache_file)
        root, blobs, metrics = cached_pretrained_root(config, task, seed=0, **kwargs)
        inside = os.path.abspath(cache_file).startswith(common.REPO + os.sep)
        metrics = {**metrics, "cache_file": (os.path.relpath(cache_file, common.REPO) if inside
                                             else cache_file)}
    seconds = time.perf_counter() - start
    info = {"source": str(metrics.get("source", "")), "cached": bool(cached),
            "examples": metrics.get("examples_trained", args.root_examples),
            "test_accuracy": metrics.get("test_accuracy"),
            "validation_accuracy": metrics.get("validation_accuracy"),
            "train_seconds": metrics.get("train_seconds"), "seconds": seconds,
            "cache_file": metrics.get("cache_file"),
            "backbone_params": sum(c.num_params for c in root.components if c.name != "head"),
            "params": root.num_params}
    print(f"root: {info['source']}, test accuracy {info['test_accuracy'] or math.nan:.4f}, "
          f"{'from the cache' if cached else 'built here'}, {seconds:.0f} s", flush=True)
    return root, blobs, info


def train_baselines(params, prep, config, args: argparse.Namespace, seed: int,
                    search_examples: int, timed: Callable[..., dict[str, Any]],
                    logreg_cache: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The baselines `--baselines` names on one task and seed, each timed under its name."""
    chosen, out = set(args.baselines), {}
    if "finetune" in chosen:
        out["finetune"] = timed("finetune", bl.finetune, params, prep, config, args, seed)
    if "finetune_equal" in chosen:
        out["finetune_equal"] = timed("finetune_equal", bl.finetune_equal, params, prep,
                                      config, args, seed, search_examples)
    if "finetune_matched" in chosen:
        out["finetune_matched"] = timed(
            "finetune_matched", bl.finetune_matched, params, prep, config, args, seed,
            out["finetune"]["lr"], search_examples)
    if "topk" in chosen:
        for k in args.topk_blocks:
            out[f"topk_{k}"] = timed(f"topk_{k}", bl.top_blocks, params, prep, config, args,
                                     seed, k)
    if "adapters" in chosen:
        for dim in args.adapter_dims:
            out[f"adapters_{dim}"] = timed(f"adapters_{dim}", bl.adapters, params, prep,
                                           config, args, seed, dim)
    if "probe" in chosen:
        out["probe"] = timed("probe", bl.probe, params, prep, config, args, seed)
    if "scratch" in chosen:
        out["scratch"] = timed("scratch", bl.scratch, prep, config, args, seed)
    if "logreg" in chosen:
        if prep.name not in logreg_cache:  # deterministic: one fit serves every seed
            logreg_cache[prep.name] = timed("logreg", bl.logreg, prep, args.logreg_cs,
                                            args.logreg_max_iter)
        out["logreg"] = logreg_cache[prep.name]
    return out


def run(args: argparse.Namespace, workdir: str,
        checkpoint: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every method on every task and seed; `checkpoint(data)` after each seed."""
    import dataclasses

    from mu2net.blobs import DirBlobs
    from mu2net.scoring import forward_flops
    from mu2net.store import open_store
    from mu2net.tasks.suite import load_suite_task

    t0 = time.perf_counter()
    config = bench_config(args)
    arch = config.architecture
    tasks = {name: load_suite_task(name) for name in args.tasks}
    root, blobs, root_info = make_root(config, args)
    files = DirBlobs(os.path.join(workdir, "root")).put_all(blobs)
    params = bl.root_params(root, blobs)
    preps = {name: bl.prepare(task, root, config, args.ft_augment)
             for name, task in tasks.items()}
    wall: dict[str, float] = {"mu2net": 0.0}  # measured wall time per method, the whole run
    logreg_cache: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    systems: dict[int, dict[str, Any]] = {}
    data: dict[str, Any] = {
        "config": config.name, "method_version": config.method_version,
        "search": dataclasses.asdict(config.search), "cycles": args.cycles,
        "overrides": {**common.search_overrides(args), "opt_lr_default": args.opt_lr_default},
        "baselines": {k: getattr(args, k) for k in (
            "ft_lrs", "probe_lrs", "scratch_lrs", "pm_lrs", "ft_epoch_examples",
            "ft_max_epochs", "probe_max_epochs", "scratch_max_epochs", "ft_patience",
            "ft_augment", "logreg_cs", "logreg_max_iter", "topk_blocks", "adapter_dims",
            "baselines", "ft_schedule", "ft_decays")},
        "tasks": list(tasks), "seeds": [], "root": root_info, "rows": rows,
        "systems": {}, "method_seconds": wall}

    def timed(method: str, fn: Callable[..., dict[str, Any]], *fn_args: Any) -> dict[str, Any]:
        start = time.perf_counter()
        out = fn(*fn_args)
        wall[method] = wall.get(method, 0.0) + time.perf_counter() - start
        return out

    for seed in args.seeds:
        store = open_store(os.path.join(workdir, f"seed{seed}", "store"), cache_dir=None)
        store.init(root, files, {"source": "benchmarks/quality_vs_finetune.py"})
        costs = {}
        for name, task in tasks.items():
            prep = preps[name]
            print(f"seed {seed} {name}: {args.cycles} search cycle(s)", flush=True)
            costs[name] = timed("mu2net", onboard, store, task, config, seed, args.cycles,
                                os.path.join(workdir, f"seed{seed}", name))
            results = train_baselines(params, prep, config, args, seed, costs[name]["examples"],
                                      timed, logreg_cache)
            for method, res in results.items():
                row = {"seed": seed, "task": name, "method": method,
                       **{k: v for k, v in res.items() if k != "model"},
                       # shared components amortised over the tasks (docs/method.md §2.5)
                       "accounted_params": res["shared_params"] / len(tasks) + res["own_params"]}
                rows.append(row)
                knob = f"C {res['C']}" if method == "logreg" else f"lr {res['lr']}"
                epochs = ("" if "best_validation" not in res else
                          f", best epoch {res['best_validation']} of {res['validations']}"
                          + (" (early stop)" if res["stopped_early"] else ""))
                print(f"  seed {seed} {name}: {method} {res['test_accuracy']:.4f} ({knob}"
                      f"{epochs}), {res['examples']:,} examples, {res['seconds']:.0f} s",
                      flush=True)
        system = store.load_system()
        for name in tasks:
            path = system.paths[name]
            cost = costs[name]
            rows.append({"seed": seed, "task": name, "method": "mu2net",
                         "test_accuracy": float(path.metrics["test_accuracy"]),
                         "validation_accuracy": float(path.metrics["validation_accuracy"]),
                         "examples": cost["examples"], "seconds": cost["seconds"],
                         "cycles": cost["cycles"], "children": cost["children"],
                         "retained": cost["retained"], "params": path.num_params,
                         "new_params": sum(c.num_params for c in path.components
                                           if c.creator == name),
                         "accounted_params": system.accounted_params(path),
                         "flops": forward_flops(arch, path.hparams),
                         "num_layers": int(path.hparams["num_layers"]),
                         "image_size": int(path.hparams["ds_image_size"]),
                         "reused": sum(1 for c in path.components if c.creator != name),
                         "components": len(path.components),
                         "lineage": sorted({c.creator for c in path.components})})
        systems[seed] = {"total_params": system.total_params(), "version": system.number}
        data["systems"] = {str(k): v for k, v in systems.items()}
        data["seeds"].append(seed)
        data["total_seconds"] = time.perf_counter() - t0
        print(f"seed {seed} done: {data['total_seconds'] / 60:.1f} min so far", flush=True)
        checkpoint(data)
    return data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the smoke and config defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--smoke", action="store_true",
        help="testing config, 1 small task, 2 seeds, 2 cycles of 1 generation, 1 lr per "
             "method, tiny epochs, a 128-example root (CI)")
    add("--config", default=None, help="config variant (default cpu_demo)")
    add("--tasks", nargs="+", default=None, help="suite tasks, in order")
    add("--seeds", nargs="+", type=int, default=None, help="default 0 1 2")
    add("--root-examples", type=int, default=None,
        help="pretrain the root here on N examples (0: random root), or with --root-cache-dir "
             "read the one `mu2net root build --examples N --root-cache DIR` keeps there; "
             "default: the cached pretrained root (mu2net.root_cache.cached_pretrained_root)")
    add("--root-cache-dir", default=None,
        help="folder of cached roots (default: mu2net.root_cache.ROOT_CACHE_DIR)")
    add("--cycles", type=int, default=None,
        help="search cycles per task (default: the config's onboard_cycles, else 1)")
    common.add_search_flags(parser)
    add("--opt-lr-default", type=float, default=None,
        help="override the config's default opt_lr (the root path's value, where children "
             "of the root start)")
    add("--ft-lrs", nargs="+", type=float, default=[0.05, 0.1, 0.2],
        help="fine-tuning lr sweep")
    add("--scratch-lrs", nargs="+", type=float, default=[0.1],
        help="from-scratch lr sweep")
    add("--probe-lrs", nargs="+", type=float, default=[0.1, 0.3, 1.0], help="probe lr sweep")
    add("--ft-epoch-examples", type=int, default=0,
        help="examples between validations of fine-tuning/scratch/probe (0: one pass over the "
             "train split)")
    add("--ft-max-epochs", type=int, default=80,
        help="at most this many epochs of fine-tuning (whole model, top-k, adapters): a cap "
             "meant never to be reached, early stopping ends every run (the report checks)")
    add("--scratch-max-epochs", type=int, default=25, help="at most this many scratch epochs")
    add("--probe-max-epochs", type=int, default=30, help="at most this many probe epochs")
    add("--ft-patience", type=int, default=5,
        help="early stop after this many epochs without a better validation accuracy")
    add("--ft-augment", action=argparse.BooleanOptionalAction, default=True,
        help="train the baselines with the root path's ds_* (augmentation) hparams, the "
             "config's defaults, as the search's children of the root do (default: on)")
    add("--ft-schedule", choices=("plateau", "cosine"), default="plateau",
        help="learning rate of fine-tuning (whole model, top-k, adapters): plateau (warmup "
             "over one epoch, divided by 10 on each plateau of --ft-patience epochs, "
             "--ft-decays times, stopped on the next: quality/plateau.py), or cosine (the "
             "library's warmup + cosine over the --ft-max-epochs cap, stopped after "
             "--ft-patience epochs without a better validation accuracy)")
    add("--ft-decays", type=int, default=2,
        help="plateau schedule: lr divisions by 10 before the plateau that stops the run")
    add("--pm-lrs", nargs="+", type=float, default=None,
        help="lr sweep of the parameter-matched baselines (top-k, adapters; default --ft-lrs)")
    add("--topk-blocks", nargs="+", type=int, default=None,
        help="top-k baselines: train the top k blocks + encoder_norm + head, for each k "
             "(default every k from 1 to the root's depth - 1)")
    add("--adapter-dims", nargs="+", type=int, default=None,
        help="adapter baselines: an adapter of each inner size before every root block "
             "(default the config's adapter_dim default and the largest of its values)")
    add("--baselines", nargs="+", default=list(BASELINES), choices=BASELINES,
        help="the baselines to train (default all; mu2net always runs: the others' budgets "
             "and sizes are read against it)")
    add("--render", default=None, metavar="JSON",
        help="only rewrite the .md and .png of a recorded run's JSON (into --out-dir, "
             "default the JSON's folder), train nothing")
    add("--logreg-cs", nargs="+", type=float, default=[0.01, 0.1, 1.0],
        help="logistic regression C grid")
    add("--logreg-max-iter", type=int, default=2000, help="lbfgs iterations at most")
    add("--out-dir", default=None,
        help="results folder (full run: benchmarks/results; smoke: a temp dir)")
    add("--workdir", default=None, help="stores and blobs (default: temp)")
    add("--jobs", type=int, default=3,
        help="run the seeds in this many worker processes at once (each on --threads "
             "threads); the report merges them. Small models use 2 cores better as two "
             "1-thread processes than as one 2-thread process")
    add("--threads", type=int, default=0,
        help="TensorFlow intra-op threads of this process (0: TensorFlow's default)")
    args = parser.parse_args(argv)
    if args.render:
        return args
    from mu2net.config import get_config

    args.config = args.config or ("testing" if args.smoke else "cpu_demo")
    args.tasks = args.tasks or list(SMOKE_TASKS if args.smoke else FULL_TASKS)
    args.seeds = args.seeds or ([0, 1] if args.smoke else [0, 1, 2])
    if args.smoke:
        args.generations = args.generations or 1
        args.cycles = args.cycles or 2
        args.root_examples = 128 if args.root_examples is None else args.root_examples
        args.ft_epoch_examples = args.ft_epoch_examples or 128  # 3 x 4 steps: eager, no trace
        args.ft_max_epochs = min(args.ft_max_epochs, 3)
        args.scratch_max_epochs = min(args.scratch_max_epochs, 3)
        args.probe_max_epochs = min(args.probe_max_epochs, 3)
        args.ft_patience = min(args.ft_patience, 1)
        args.ft_lrs, args.scratch_lrs = args.ft_lrs[:1], args.scratch_lrs[:1]
        args.probe_lrs = args.probe_lrs[:1]
        args.pm_lrs = (args.pm_lrs or args.ft_lrs)[:1]
        args.topk_blocks = args.topk_blocks or [1]
    config = get_config(args.config)
    if args.topk_blocks is None:
        args.topk_blocks = list(range(1, config.architecture.num_layers))
    if args.adapter_dims is None and "adapter_dim" in config.hparams.names():
        dim = config.hparams.get("adapter_dim")
        args.adapter_dims = [dim.default] if args.smoke else sorted({dim.default,
                                                                     max(dim.values)})
    args.adapter_dims = args.adapter_dims or []
    if "finetune_matched" in args.baselines and "finetune" not in args.baselines:
        parser.error("--baselines finetune_matched needs finetune (it trains at finetune's lr)")
    args.cycles = args.cycles or int(getattr(config, "onboard_cycles", 1))
    return args


def run_seeds_in_workers(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """One worker process per seed, `args.jobs` at a time, each writing its own JSON; the
    rows, systems and per-method seconds are merged. The seeds are independent (each has its
    own store), so the merged data equals a one-process run's up to float reduction order."""
    import subprocess

    argv = sys.argv[1:]
    drop = {"--seeds", "--jobs", "--threads", "--out-dir", "--workdir"}
    kept: list[str] = []
    skipping = False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg.split("=", 1)[0] in drop
            if skipping:
                continue
        elif skipping:
            continue
        kept.append(arg)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    pending = list(args.seeds)
    running: list[tuple[int, Any]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            out = os.path.join(tmp, f"seed{seed}")
            cmd = [sys.executable, os.path.abspath(__file__), *kept, "--seeds", str(seed),
                   "--threads", str(threads), "--out-dir", out, "--workdir",
                   os.path.join(out, "work")]
            print(f"worker for seed {seed}: {' '.join(cmd[1:])}", flush=True)
            running.append((seed, subprocess.Popen(cmd, env=env)))
        time.sleep(2)
        for seed, proc in list(running):
            if proc.poll() is not None:
                running.remove((seed, proc))
                if proc.returncode != 0:
                    # stop the other workers first: leaving this block removes `tmp`, their
                    # stores included, under them
                    for _, other in running:
                        other.terminate()
                        other.wait()
                    raise SystemExit(f"the worker of seed {seed} failed (exit "
                                     f"{proc.returncode})")
    parts = []
    for seed in args.seeds:
        with open(os.path.join(tmp, f"seed{seed}", "quality_vs_finetune.json")) as fh:
            parts.append(json.load(fh))
    data = {k: v for k, v in parts[0].items() if k not in ("header", "partial")}
    data["rows"] = [row for part in parts for row in part["rows"]]
    data["seeds"] = [seed for part in parts for seed in part["seeds"]]
    data["systems"] = {k: v for part in parts for k, v in part["systems"].items()}
    data["method_seconds"] = {m: sum(part["method_seconds"][m] for part in parts)
                              for m in parts[0]["method_seconds"]}
    data["worker_seconds"] = {str(seed): part["total_seconds"]
                              for seed, part in zip(args.seeds, parts, strict=True)}
    data["jobs"], data["threads"] = args.jobs, threads
    data["total_seconds"] = time.perf_counter() - start
    return data


def render(json_path: str, out_dir: str | None) -> None:
    """The .md and .png of a recorded run (its own header: revision, date, command)."""
    with open(json_path) as fh:
        data = json.load(fh)
    base = os.path.join(out_dir or os.path.dirname(os.path.abspath(json_path)),
                        "quality_vs_finetune")
    plot(data, base + ".png")
    common.write(base + ".md", report(data, "quality_vs_finetune.png"))


def main() -> None:
    args = parse_args()
    if args.render:
        render(args.render, args.out_dir)
        return
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or (tmp if args.smoke else common.RESULTS_DIR)
        base = os.path.join(out_dir, "quality_vs_finetune")
        header = {"revision": common.git_revision(), "date": common.today(),
                  "machine": common.machine(), "command": common.command()}

        def checkpoint(data: dict[str, Any]) -> None:
            common.write(base + ".json", json.dumps({**data, "header": header,
                                                     "partial": True}, indent=1,
                                                    sort_keys=True))

        if args.jobs > 1 and len(args.seeds) > 1:
            data = run_seeds_in_workers(args, tmp)
        else:
            data = run(args, args.workdir or os.path.join(tmp, "work"), checkpoint)
        data["header"] = header
        common.write(base + ".json", json.dumps(data, indent=1, sort_keys=True))
        plot(data, base + ".png")
        text = report(data, "quality_vs_finetune.png")
        common.write(base + ".md", text)
        print(text)


if __name__ == "__main__":
    main()
