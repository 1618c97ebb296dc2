"""Does a same-task child gain from its parent's momentum trace (issue 26, item 4)?

mu3Net restores each cloned component's momentum trace from its ancestor
(docs/method.md §2.2, §5.1); mu2Net+ and this project start every child at a zero trace.
Storing the trace would change the component blob format, so the effect is measured here
first, in isolation, before anything is built:

1. parent: the shipped cpu_demo root with a new head, every component trainable, trained one
   child budget (`training.child_budget`, the config's 8 validations) at the root path's
   hparams (`opt_lr` 0.1, warmup 10 %, momentum 0.9); its final weights and final trace kept;
2. two children of that parent on the same batches (one data seed, another than the
   parent's), one budget each: `zero` starts from a zero trace, `restored` from the
   parent's trace. With `--warmup 0` too: the same pair without warmup, where a restored
   trace meets the peak lr at once (the strongest case for it; warmup 0 is in the
   hparam space a lineage mutates within).

Run: .venv/bin/python benchmarks/recipe/momentum_restore.py mnist_5k,glyph_styles 0 1 2
     .venv/bin/python benchmarks/recipe/momentum_restore.py --smoke   # digits, 1 seed, CI
Prints per task, seed and warmup the children's best and final validation and test
accuracy, and the paired restored-minus-zero differences; `--json FILE` keeps them.
"""

import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quality.baselines import eval_accuracy, prepare, root_params, root_weights  # noqa: E402

from mu2net.config import get_config  # noqa: E402
from mu2net.model import build_model, component_layers, component_names  # noqa: E402
from mu2net.root_cache import cached_pretrained_root  # noqa: E402
from mu2net.search_state import derive_seed  # noqa: E402
from mu2net.tasks.preprocess import make_dataset  # noqa: E402
from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task  # noqa: E402
from mu2net.training import child_budget, make_optimizer, set_params, train_model  # noqa: E402


def train_once(prep, config, hparams, weights, budget, data_seed, trace=None):
    """One child: every component trainable, from `weights` and (if given) a restored trace.
    Returns (final weights, final trace, outcome, test accuracy of the best checkpoint)."""
    names = component_names(hparams)
    model = build_model(config.architecture, hparams, weights, trainable=names)
    optimizer = make_optimizer(hparams, budget.total_steps, config)
    optimizer.build(model.trainable_variables)
    if trace is not None:
        for slot, value in zip(optimizer.traces, trace, strict=True):
            if tuple(slot.shape) != value.shape:
                raise SystemExit(f"trace shape {value.shape} != {tuple(slot.shape)}")
            slot.assign(value)
    train_ds = make_dataset(*prep.train, image_size=prep.size, batch_size=budget.batch_size,
                            training=True, seed=data_seed, ds_hparams=prep.ds_hparams,
                            repeat=True)
    val_ds = make_dataset(*prep.validation, image_size=prep.size,
                          batch_size=config.search.batch_size, training=False, seed=0)
    outcome = train_model(model, train_ds, val_ds, budget=budget, optimizer=optimizer,
                          trainable=names, score_fn=lambda q: q, best_start=-math.inf)
    layers = component_layers(model)
    final = {n: layers[n].get_params() for n in names}
    final_trace = [np.array(t.numpy()) for t in optimizer.traces]
    set_params(model, outcome.params)
    return final, final_trace, outcome, eval_accuracy(model, *prep.test, prep.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="?", help="suite tasks, comma-separated")
    parser.add_argument("seeds", nargs="*", type=int)
    parser.add_argument("--warmups", nargs="+", type=float, default=[0.1, 0.0],
                        help="opt_lr_warmup_ratio of the children (default 0.1 and 0)")
    parser.add_argument("--smoke", action="store_true",
                        help="digits, seed 0, one validation per child (CI)")
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args()
    if args.smoke:
        args.tasks, args.seeds, args.warmups = args.tasks or "digits", args.seeds or [0], [0.0]
    if not args.tasks or not args.seeds:
        parser.error("give TASKS and SEEDS (or --smoke)")
    config = get_config("cpu_demo")
    if args.smoke:
        config = config.replace(search=dataclasses.replace(config.search,
                                                           validations_per_child=1))
    root, blobs, _ = cached_pretrained_root(config, load_suite_task(ROOT_TASK_NAME))
    params = root_params(root, blobs)
    records = []
    for name in args.tasks.split(","):
        task = load_suite_task(name)
        prep = prepare(task, root, config, augment=True)
        budget = child_budget(config, len(prep.train[1]))
        for seed in args.seeds:
            parent_seed = derive_seed(seed, name, "momentum", "parent")
            child_seed = derive_seed(seed, name, "momentum", "child")
            weights, trace, parent, parent_test = train_once(
                prep, config, prep.hparams, root_weights(params, prep, config, seed), budget,
                parent_seed)
            print(f"{name} seed {seed}: parent val {max(parent.curve):.4f} test "
                  f"{parent_test:.4f}, trace norm "
                  f"{math.sqrt(sum(float(np.sum(t * t)) for t in trace)):.3f}", flush=True)
            for warmup in args.warmups:
                hparams = {**prep.hparams, "opt_lr_warmup_ratio": warmup}
                row = {"task": name, "seed": seed, "warmup": warmup,
                       "budget_steps": budget.total_steps,
                       "parent_validation": max(parent.curve), "parent_test": parent_test}
                for arm, start in (("zero", None), ("restored", trace)):
                    _, _, out, test = train_once(prep, config, hparams, weights, budget,
                                                 child_seed, start)
                    row[arm] = {"best_validation": max(out.curve),
                                "final_validation": out.curve[-1], "test": test,
                                "curve": out.curve}
                    print(f"  warmup {warmup} {arm:8s}: val best {max(out.curve):.4f} final "
                          f"{out.curve[-1]:.4f} test {test:.4f}", flush=True)
                records.append(row)
    for warmup in args.warmups:
        rows = [r for r in records if r["warmup"] == warmup]
        for key in ("best_validation", "test"):
            diffs = [100 * (r["restored"][key] - r["zero"][key]) for r in rows]
            print(f"warmup {warmup}: restored - zero, {key}: mean {np.mean(diffs):+.2f} "
                  f"points over {len(diffs)} pairs, per pair "
                  f"{' '.join(f'{d:+.2f}' for d in diffs)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": config.name, "records": records}, fh, indent=1)


if __name__ == "__main__":
    main()
