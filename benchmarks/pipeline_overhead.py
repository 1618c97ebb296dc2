"""Orchestration overhead: one search cycle through the local pipeline (kfp.local, one
subprocess per step, artifacts on disk) versus the same cycle in process (`search.evolve`),
same config, seed, task and base version. Prints seconds and the ratio; checks that both give
the same path.

    .venv/bin/python benchmarks/pipeline_overhead.py [--config testing] [--task demo:digits]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="testing")
    parser.add_argument("--task", default="demo:digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from mu2net.config import get_config
    from mu2net.root import build_root
    from mu2net.search import evolve
    from mu2net.store import open_store
    from mu2net.tasks.sources import load_source
    from pipelines.local_run import run_local

    config = get_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(os.path.join(tmp, "store"))
        root, blobs = build_root(config, "random", seed=0)
        files = {}
        for digest, data in blobs.items():
            files[digest] = os.path.join(tmp, f"{digest}.npz")
            with open(files[digest], "wb") as fh:
                fh.write(data)
        store.init(root, files, {"source": "benchmark"})

        task = load_source(args.task)
        start = time.perf_counter()
        extension = evolve(store.load_system(0), task, config, store, seed=args.seed,
                           run_id="bench", workdir=os.path.join(tmp, "evolve"))
        in_process = time.perf_counter() - start

        start = time.perf_counter()
        out = run_local(config_name=args.config, task_spec=args.task, store_uri=store.uri,
                        workdir=os.path.join(tmp, "work"), seed=args.seed, run_id="bench")
        pipeline = time.perf_counter() - start
        same = store.load_system(1).paths[task.info.name].hash == extension.path.hash

    steps = 4 + 2 * config.search.generations_per_cycle + \
        config.search.generations_per_cycle * config.search.children_per_generation
    print(f"config {args.config}, task {args.task}, seed {args.seed}: "
          f"{config.search.generations_per_cycle} generations x "
          f"{config.search.children_per_generation} children ({steps} pipeline steps)")
    print(f"in-process evolve (incl. test evaluation, no commit): {in_process:8.1f} s")
    print(f"local pipeline (kfp.local, incl. ingest/commit/report): {pipeline:8.1f} s")
    print(f"ratio pipeline / in-process: {pipeline / in_process:.2f}x; overhead "
          f"{pipeline - in_process:.1f} s ({(pipeline - in_process) / steps:.1f} s per step)")
    print(f"same path from both: {same}; {out['line']}")


if __name__ == "__main__":
    main()
