"""Orchestration overhead: one search cycle through the local pipeline versus the same cycle in
process, same config, seed, task and base version.

* in process: `search.evolve` (every step in this Python, the model code already imported)
  then `store.commit`;
* local pipeline: `pipelines.local_run.run_local` (`kfp.local`, one subprocess per step:
  ingest, start, per generation plan -> K children -> select, close and commit, report; every
  step imports the library afresh and passes its state, specs and blobs as artifacts on disk).

Each on a fresh local store initialised with the same root (seeded random init: the weights do
not change the time of a step). Prints and records seconds, the ratio and the overhead per
pipeline step, and whether both committed the same path (they must: the steps are
deterministic functions of their inputs).

Run:
    .venv/bin/python benchmarks/orchestration_overhead.py           # cpu_demo, digits (< 5 min)
    .venv/bin/python benchmarks/orchestration_overhead.py --smoke   # testing config, ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

RESULTS = os.path.join(common.RESULTS_DIR, "orchestration_overhead.md")


def fresh_store(folder: str, config):
    from mu2net.blobs import DirBlobs
    from mu2net.root import build_root
    from mu2net.store import open_store

    store = open_store(os.path.join(folder, "store"), cache_dir=None)
    root, blobs = build_root(config, "random", seed=0)
    store.init(root, DirBlobs(folder).put_all(blobs),
               {"source": "benchmarks/orchestration_overhead.py"})
    return store


def in_process(config, task_spec: str, seed: int, folder: str) -> tuple[float, str]:
    from mu2net.scoring import config_scorer
    from mu2net.search import evolve
    from mu2net.tasks.sources import load_source

    store = fresh_store(folder, config)
    start = time.perf_counter()
    task = load_source(task_spec)
    extension = evolve(store.load_system(0), task, config, store, seed=seed, run_id="bench",
                       workdir=os.path.join(folder, "evolve"))
    store.commit(extension, scorer=config_scorer(config))
    return time.perf_counter() - start, store.load_system().paths[task.info.name].hash


def pipeline(config, task_spec: str, seed: int, folder: str) -> tuple[float, str]:
    from mu2net.commands.common import pipelines_module

    run_local = pipelines_module("local_run").run_local

    store = fresh_store(folder, config)
    start = time.perf_counter()
    run_local(config_name=config.name, task_spec=task_spec, store_uri=store.uri,
              workdir=os.path.join(folder, "work"), seed=seed, run_id="bench")
    seconds = time.perf_counter() - start
    system = store.load_system()
    (path,) = system.paths.values()
    return seconds, path.hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="testing config, 1 repetition")
    parser.add_argument("--config", nargs="+", default=None,
                        help="config variants (default: cpu_demo testing; smoke: testing)")
    parser.add_argument("--task", default="demo:digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", default=None, help=f"results file (full run: {RESULTS})")
    args = parser.parse_args()
    from mu2net.config import get_config

    names = args.config or (["testing"] if args.smoke else ["cpu_demo", "testing"])
    output = args.output or (None if args.smoke else RESULTS)
    rows = []
    for name in names:
        config = get_config(name)
        search = config.search
        steps = 4 + search.generations_per_cycle * (2 + search.children_per_generation)
        for rep in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                a, path_a = in_process(config, args.task, args.seed, os.path.join(tmp, "a"))
                b, path_b = pipeline(config, args.task, args.seed, os.path.join(tmp, "b"))
            rows.append((config, steps, rep, a, b, path_a == path_b))
            print(f"{name} repetition {rep}: in process {a:.1f} s, local pipeline {b:.1f} s, "
                  f"ratio {b / a:.2f}, same path: {path_a == path_b}", flush=True)
    table = ["| config | children (generations x K) | pipeline steps | repetition | "
             "in-process evolve s | local pipeline s | pipeline / in-process | "
             "overhead s per step | same path |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for config, steps, rep, a, b, same in rows:
        search = config.search
        table.append(f"| {config.name} | {search.generations_per_cycle} x "
                     f"{search.children_per_generation} | {steps} | {rep} | {a:.1f} | {b:.1f} | "
                     f"{b / a:.2f} | {(b - a) / steps:.1f} | {'yes' if same else 'NO'} |")
    text = (common.header("Orchestration overhead: local pipeline vs in-process evolve")
            + f"\nTask `{args.task}`, seed {args.seed}. Pipeline steps: ingest, start, plan + "
            "K children + select per generation, close/commit, report. Both from a fresh local "
            "store with the same root; both times include loading the task, the search, the "
            "test evaluation and the commit; the pipeline's also its subprocess start-ups "
            "(each step imports TensorFlow/Keras anew), artifact passing and the report step. "
            "The local pipeline runs the K children of a generation in parallel (ParallelFor) "
            "on the same 2 cores, which in-process `evolve` (children one after another) does "
            "not.\n\n" + "\n".join(table) + "\n")
    print(text)
    if output:
        common.write(output, text)
    if not all(row[-1] for row in rows):
        raise SystemExit("the pipeline and evolve committed different paths")


if __name__ == "__main__":
    main()
