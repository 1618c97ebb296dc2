"""The search alone on suite tasks, cycle by cycle, from the shipped cpu_demo root: every
child's parent, mutations, validation accuracy and seconds, and the committed test accuracy;
per cycle whether it kept a child and why not (`mu2net.lineage`).

Run: .venv/bin/python benchmarks/recipe/search_cycles.py mnist_5k 2 [SEED]  # tasks, cycles
     .venv/bin/python benchmarks/recipe/search_cycles.py --smoke   # testing config, digits, 1
Search flags (each overrides one `SearchConfig` field: `common.SEARCH_FLAGS`, shared with
`quality_vs_finetune.py`): --children K, --generations G, --child-quality, --child-epochs,
--own-lineage-fallback, --clone-root-blocks, --same-task-lr-steps, --validation-examples,
--examples-between-validations. `--json FILE`
writes one record per cycle (test accuracy, the lineage record) for `stuck_lineages.py`.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import add_search_flags, with_search_overrides  # noqa: E402

from mu2net.blobs import DirBlobs
from mu2net.config import get_config
from mu2net.lineage import cycle_record, summarise
from mu2net.root import build_root
from mu2net.root_cache import cached_pretrained_root
from mu2net.scoring import config_scorer, path_score
from mu2net.search import evolve
from mu2net.search_state import SearchState
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
    add_search_flags(parser)
    parser.add_argument("--json", help="write the per-cycle records here")
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
    config, overrides = with_search_overrides(config, args)
    print(f"config {config.name} {config.method_version} overrides {overrides}", flush=True)
    records = []
    tmp = tempfile.mkdtemp()
    store = open_store(os.path.join(tmp, "store"), cache_dir=None)
    store.init(root, DirBlobs(os.path.join(tmp, "root")).put_all(blobs), {})
    for name in tasks:
        task = load_suite_task(name)
        for cycle in range(cycles):
            start = time.perf_counter()
            workdir = os.path.join(tmp, f"{name}-{cycle}")
            system = store.load_system()
            published = system.paths.get(name)
            start_score = (None if published is None else
                           path_score(published, system, config.architecture, config.score))
            ext = evolve(system, task, config, store, seed=seed,
                         run_id=f"recipe-{name}-{cycle}", workdir=workdir,
                         mode="onboard" if cycle == 0 else "iterate",
                         kept_cycles=store.kept_cycles(system, name))
            store.commit(ext, scorer=config_scorer(config))
            metrics = store.load_system().paths[name].metrics
            print(f"{name} cycle {cycle + 1}: test {metrics['test_accuracy']:.4f}, validation "
                  f"{metrics['validation_accuracy']:.4f}, {time.perf_counter() - start:.0f} s",
                  flush=True)
            with open(os.path.join(workdir, "state.json")) as fh:
                state = SearchState.from_json(fh.read())
            for h in state.history:
                print(f"  gen {h['generation']} child {h['index']} parent {h['parent_task']}"
                      f" kept {h['improved']} val {h['validation_accuracy']:.3f} "
                      f"{h['train_seconds']:.0f} s {h['mutations']}", flush=True)
            record = cycle_record(state, published, start_score,
                                  min(config.search.validation_examples,
                                      len(task.arrays("validation")[1])))
            print(f"  lineage: kept {record['kept']} cause {record['cause']} self "
                  f"{record['self']} restarts {record['restarts']} start inflation "
                  f"{record['start_inflation']}", flush=True)
            records.append({"seed": seed, "test_accuracy": metrics["test_accuracy"],
                            "validation_accuracy": metrics["validation_accuracy"],
                            "overrides": overrides, **record})
    system = store.load_system()
    for name, path in system.paths.items():
        print(f"{name}: accounted {system.accounted_params(path):,.0f}, new "
              f"{sum(c.num_params for c in path.components if c.creator == name):,}")
    print(f"total params {system.total_params():,}")
    print("stuck lineages:", json.dumps(summarise(records)), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": config.name, "method_version": config.method_version,
                       "overrides": overrides, "seed": seed, "cycles": records}, fh, indent=1)


if __name__ == "__main__":
    main()
