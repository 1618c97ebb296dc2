"""The search alone on suite tasks, cycle by cycle, from the shipped cpu_demo root: every
child's parent, mutations, validation accuracy and seconds, and the committed test accuracy.

Run: .venv/bin/python benchmarks/recipe/search_cycles.py mnist_5k 2 [SEED]  # tasks, cycles
     .venv/bin/python benchmarks/recipe/search_cycles.py --smoke   # testing config, digits, 1
"""

import argparse
import json
import os
import tempfile
import time

from mu2net.blobs import DirBlobs
from mu2net.config import get_config
from mu2net.root import build_root
from mu2net.root_cache import cached_pretrained_root
from mu2net.scoring import config_scorer
from mu2net.search import evolve
from mu2net.store import open_store
from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="?", help="suite tasks, comma-separated")
    parser.add_argument("cycles", nargs="?", type=int, help="search cycles per task")
    parser.add_argument("seed", nargs="?", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="CI's check: the testing config from a random root, task digits, "
                             "one cycle")
    args = parser.parse_args()
    if args.smoke:
        args.tasks, args.cycles = args.tasks or "digits", args.cycles or 1
    if not (args.tasks and args.cycles):
        parser.error("give TASKS and CYCLES (or --smoke)")
    return args


def main() -> None:
    args = parse_args()
    tasks, cycles, seed = args.tasks.split(","), args.cycles, args.seed
    if args.smoke:
        config = get_config("testing")
        root, blobs = build_root(config, mode="random", seed=0)
    else:
        config = get_config("cpu_demo")
        root, blobs, _ = cached_pretrained_root(config, load_suite_task(ROOT_TASK_NAME))
    tmp = tempfile.mkdtemp()
    store = open_store(os.path.join(tmp, "store"), cache_dir=None)
    store.init(root, DirBlobs(os.path.join(tmp, "root")).put_all(blobs), {})
    for name in tasks:
        task = load_suite_task(name)
        for cycle in range(cycles):
            start = time.perf_counter()
            workdir = os.path.join(tmp, f"{name}-{cycle}")
            ext = evolve(store.load_system(), task, config, store, seed=seed,
                         run_id=f"recipe-{name}-{cycle}", workdir=workdir,
                         mode="onboard" if cycle == 0 else "iterate")
            store.commit(ext, scorer=config_scorer(config))
            metrics = store.load_system().paths[name].metrics
            print(f"{name} cycle {cycle + 1}: test {metrics['test_accuracy']:.4f}, validation "
                  f"{metrics['validation_accuracy']:.4f}, {time.perf_counter() - start:.0f} s",
                  flush=True)
            with open(os.path.join(workdir, "state.json")) as fh:
                for h in json.load(fh)["history"]:
                    print(f"  gen {h['generation']} child {h['index']} parent {h['parent_task']}"
                          f" kept {h['improved']} val {h['validation_accuracy']:.3f} "
                          f"{h['train_seconds']:.0f} s {h['mutations']}", flush=True)
    system = store.load_system()
    for name, path in system.paths.items():
        print(f"{name}: accounted {system.accounted_params(path):,.0f}, new "
              f"{sum(c.num_params for c in path.components if c.creator == name):,}")
    print(f"total params {system.total_params():,}")


if __name__ == "__main__":
    main()
