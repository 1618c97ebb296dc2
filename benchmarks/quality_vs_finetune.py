"""Quality versus size and compute: the mu2Net+ search against fine-tuning and a linear probe.

One run, one shared root, three methods, paired seeds:

* root: a ViT of the config's architecture pretrained on the suite's root task
  (`fashion_mnist`) once, shared by every method and seed (the common starting point; its
  cost is reported apart and charged to no method);
* mu2net: the suite tasks onboarded one after another with `search.evolve` on a local store,
  each extension committed so that later tasks can reuse earlier tasks' components;
* finetune: per task a separate copy of the whole root with a new head, every component
  trained, given the same number of training examples as the search spent on that task (the
  sum over its children: every child trains its whole budget). The learning-rate sweep comes
  out of that budget: each of the `--ft-lrs` gets an equal share; the one with the best
  validation accuracy is kept;
* probe: the frozen root with a new head per task (a linear probe), same budget and sweep
  rule (`--probe-lrs`). The root is frozen, so its cls features are computed once per split
  and the head is trained on them: exactly the same function as running the frozen root
  each step (the default data hyperparameters do no augmentation), much cheaper.

Fine-tuning and probe use the library's training code (`training.train_model`: SGD with
momentum 0.9, warmup 10 % + cosine, global-norm clip 1, best-of-4 validation checkpoints on the
search's fixed validation subset), the same input pipeline and the same batch size. Test
accuracy is measured once per method on each task's whole test split (mu2net: by `close_cycle`).
Each seed seeds the search, the heads' init and the data order of all three methods.

Run:
    # the committed results (cpu_demo with half its per-child budget, so the whole run fits in
    # ~49 min on 2 shared cores; without the two flags cpu_demo as is needs ~1.5 h):
    .venv/bin/python benchmarks/quality_vs_finetune.py --examples-between-validations 2048 \
        --root-examples 90000
    .venv/bin/python benchmarks/quality_vs_finetune.py --smoke      # testing config, ~20 s

Writes `benchmarks/results/quality_vs_finetune.{md,json,png}` (the smoke run: a temp folder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

FULL_TASKS = ("mnist_5k", "digits", "glyph_letters", "glyph_digits", "glyph_styles")
SMOKE_TASKS = ("digits",)
METHODS = ("mu2net", "finetune", "probe")
PROBE_VALIDATIONS = 4


# === building blocks ========================================================================


def root_params(root, blobs: dict[str, bytes]) -> dict[str, dict[str, np.ndarray]]:
    from mu2net.params_io import npz_bytes_to_params

    return {c.name: npz_bytes_to_params(blobs[c.blob]) for c in root.components}


def task_hparams(root, num_classes: int) -> dict[str, Any]:
    hparams = dict(root.hparams)
    hparams["num_classes"] = int(num_classes)
    return hparams


def split_budget(examples: int, parts: int, batch: int, validations: int):
    """A training budget of about `examples / parts` examples in `validations` chunks."""
    from mu2net.training import Budget

    steps = max(validations, examples // (parts * batch))
    return Budget(batch, max(1, steps // validations), validations)


def test_split(task, config) -> tuple[np.ndarray, np.ndarray]:
    """The test examples `close_cycle` measures mu2net on (the config may cap them)."""
    images, labels = task.arrays("test")
    limit = config.search.test_examples
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def eval_accuracy(model, images: np.ndarray, labels: np.ndarray, size: int) -> float:
    import keras

    from mu2net.tasks.preprocess import make_dataset

    ds = make_dataset(images, labels, image_size=size, batch_size=256, training=False, seed=0)
    preds = [np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=1)
             for x, _ in ds]
    return float(np.mean(np.concatenate(preds) == np.asarray(labels)))


def sweep(train_one, lrs: list[float]) -> dict[str, Any]:
    """Train once per lr; keep the run with the best validation accuracy (ties: first)."""
    runs = [train_one(lr) for lr in lrs]
    best = max(runs, key=lambda r: r["validation_accuracy"])
    return {**best, "examples": sum(r["examples"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs),
            "sweep": {str(r["lr"]): round(r["validation_accuracy"], 4) for r in runs}}


def finetune(root, params, task, config, budget_examples: int, lrs: list[float],
             seed: int) -> dict[str, Any]:
    """Every component of a copy of the root trained, with a new head; best lr by validation."""
    from mu2net.model import build_model, component_names, init_component
    from mu2net.search_state import derive_seed
    from mu2net.tasks.preprocess import make_dataset
    from mu2net.training import make_optimizer, set_params, train_model, validation_subset

    arch = config.architecture
    name = task.info.name
    hparams = task_hparams(root, task.info.num_classes)
    size = int(hparams["ds_image_size"])
    names = component_names(hparams)
    images, labels = task.arrays("train")
    val_images, val_labels = validation_subset(name, *task.arrays("validation"),
                                               config.search.validation_examples)
    test_images, test_labels = test_split(task, config)
    batch = min(config.search.batch_size, len(labels))
    ds_hparams = {k: v for k, v in hparams.items() if k.startswith("ds_")}

    def train_one(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        weights = {n: {k: np.array(v) for k, v in params[n].items()} for n in names[:-1]}
        weights["head"] = init_component("head", arch, hparams,
                                         derive_seed(seed, name, "finetune", "head"))
        model = build_model(arch, hparams, weights, trainable=names)
        budget = split_budget(budget_examples, len(lrs), batch, 4)
        train_ds = make_dataset(images, labels, image_size=size, batch_size=batch,
                                training=True, seed=derive_seed(seed, name, "finetune", "data"),
                                ds_hparams=ds_hparams, repeat=True)
        val_ds = make_dataset(val_images, val_labels, image_size=size, batch_size=batch,
                              training=False, seed=0)
        run_hparams = {**hparams, "opt_lr": lr}
        outcome = train_model(model, train_ds, val_ds, budget=budget,
                              optimizer=make_optimizer(run_hparams, budget.total_steps, config),
                              trainable=names, score_fn=lambda q: q, best_start=-math.inf)
        set_params(model, outcome.params)
        test = eval_accuracy(model, test_images, test_labels, size)
        return {"lr": lr, "validation_accuracy": outcome.quality, "test_accuracy": test,
                "examples": outcome.examples, "seconds": time.perf_counter() - start}

    return sweep(train_one, lrs)


def cls_features(model, images: np.ndarray, size: int) -> np.ndarray:
    """The frozen root's encoder_norm output on the cls token: [N, 1, width]."""
    import keras

    from mu2net.tasks.preprocess import make_dataset

    features = keras.Model(model.inputs, model.get_layer("encoder_norm").output)
    ds = make_dataset(images, np.zeros(len(images), np.int64), image_size=size, batch_size=256,
                      training=False, seed=0)
    out = [keras.ops.convert_to_numpy(features(x, training=False))[:, :1] for x, _ in ds]
    return np.concatenate(out).astype(np.float32)


def probe(root, params, task, config, budget_examples: int, lrs: list[float],
          seed: int) -> dict[str, Any]:
    """A new head on the frozen root, trained on its cached cls features; best lr by
    validation. Seconds include computing the features."""
    import keras
    import tensorflow as tf

    from mu2net.model import (
        build_model,
        component_names,
        component_shapes,
        init_component,
        layer_classes,
    )
    from mu2net.search_state import derive_seed
    from mu2net.training import make_optimizer, set_params, train_model, validation_subset

    arch = config.architecture
    name = task.info.name
    hparams = task_hparams(root, task.info.num_classes)
    size = int(hparams["ds_image_size"])
    names = component_names(hparams)
    start = time.perf_counter()
    weights = {n: params[n] for n in names[:-1]}
    weights["head"] = init_component("head", arch, hparams, 0)
    frozen = build_model(arch, hparams, weights, trainable=())
    images, labels = task.arrays("train")
    val_images, val_labels = validation_subset(name, *task.arrays("validation"),
                                               config.search.validation_examples)
    test_images, test_labels = test_split(task, config)
    feats = {"train": cls_features(frozen, images, size),
             "validation": cls_features(frozen, val_images, size),
             "test": cls_features(frozen, test_images, size)}
    feature_seconds = time.perf_counter() - start
    batch = min(config.search.batch_size, len(labels))
    shapes = component_shapes("head", arch, hparams)
    head_class = layer_classes()["head"]

    def train_one(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        inputs = keras.Input((1, arch.hidden_size))
        head = head_class(shapes, name="head")
        model = keras.Model(inputs, head(inputs))
        head.set_params(init_component("head", arch, hparams,
                                       derive_seed(seed, name, "probe", "head")))
        budget = split_budget(budget_examples, len(lrs), batch, PROBE_VALIDATIONS)
        order_seed = derive_seed(seed, name, "probe", "data") % 2**31
        train_ds = (tf.data.Dataset.from_tensor_slices((feats["train"], labels.astype(np.int32)))
                    .shuffle(len(labels), seed=order_seed, reshuffle_each_iteration=True)
                    .repeat().batch(batch, drop_remainder=True))
        val_ds = tf.data.Dataset.from_tensor_slices(
            (feats["validation"], val_labels.astype(np.int32))).batch(256)
        outcome = train_model(model, train_ds, val_ds, budget=budget,
                              optimizer=make_optimizer({**hparams, "opt_lr": lr},
                                                       budget.total_steps, config),
                              trainable=["head"], score_fn=lambda q: q, best_start=-math.inf)
        set_params(model, outcome.params)
        logits = keras.ops.convert_to_numpy(model(feats["test"], training=False))
        test = float(np.mean(np.argmax(logits, axis=1) == test_labels))
        return {"lr": lr, "validation_accuracy": outcome.quality, "test_accuracy": test,
                "examples": outcome.examples, "seconds": time.perf_counter() - start}

    result = sweep(train_one, lrs)
    result["seconds"] += feature_seconds
    result["feature_seconds"] = feature_seconds
    return result


def onboard(store, task, config, seed: int, workdir: str) -> dict[str, Any]:
    """One search cycle of `task` in process, committed; its cost."""
    from mu2net.search import evolve
    from mu2net.store.versioned import config_scorer
    from mu2net.training import child_budget

    name = task.info.name
    start = time.perf_counter()
    extension = evolve(store.load_system(), task, config, store, seed=seed,
                       run_id=f"bench-{seed}-{name}", workdir=workdir)
    seconds = time.perf_counter() - start
    result = store.commit(extension, scorer=config_scorer(config))
    with open(os.path.join(workdir, "state.json")) as fh:
        history = json.load(fh)["history"]
    budget = child_budget(config, len(task.arrays("train")[1]))
    return {"version": result.version, "children": len(history),
            "retained": sum(1 for h in history if h["improved"]),
            "examples": len(history) * budget.examples, "seconds": seconds,
            "train_seconds": sum(h["train_seconds"] for h in history)}


# === the run ================================================================================


def bench_config(args: argparse.Namespace):
    """The named config, with the search budgets the command line overrides (if any)."""
    import dataclasses

    from mu2net.config import get_config

    config = get_config(args.config)
    changes = {}
    if args.examples_between_validations:
        changes["examples_between_validations"] = args.examples_between_validations
    if args.generations:
        changes["generations_per_cycle"] = args.generations
    if changes:
        config = config.replace(search=dataclasses.replace(config.search, **changes))
    if args.opt_lr_default is not None:
        config = config.replace(hparams=type(config.hparams)(tuple(
            dataclasses.replace(hp, default=args.opt_lr_default) if hp.name == "opt_lr" else hp
            for hp in config.hparams.params)))
    return config


def run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    import dataclasses

    from mu2net.blobs import DirBlobs
    from mu2net.model import component_names, component_shapes
    from mu2net.root import build_root, pretrain_root
    from mu2net.scoring import forward_flops
    from mu2net.store import open_store
    from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task

    config = bench_config(args)
    arch = config.architecture
    tasks = {name: load_suite_task(name) for name in args.tasks}
    t0 = time.perf_counter()
    if args.root_examples == 0:
        root, blobs = build_root(config, "random", seed=0)
        root_metrics = {"source": "random_init:0"}
    else:
        root, blobs, root_metrics = pretrain_root(config, load_suite_task(ROOT_TASK_NAME),
                                                  seed=0, examples=args.root_examples)
    root_seconds = time.perf_counter() - t0
    print(f"root: {root_metrics.get('source')}, test accuracy "
          f"{root_metrics.get('test_accuracy', float('nan')):.4f}, {root_seconds:.0f} s",
          flush=True)
    files = DirBlobs(os.path.join(workdir, "root")).put_all(blobs)
    params = root_params(root, blobs)

    def size(name: str, hparams: dict[str, Any]) -> int:
        return sum(math.prod(s) for s in component_shapes(name, arch, hparams).values())

    rows: list[dict[str, Any]] = []
    systems: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        store = open_store(os.path.join(workdir, f"seed{seed}", "store"), cache_dir=None)
        store.init(root, files, {"source": "benchmarks/quality_vs_finetune.py"})
        costs = {}
        for name, task in tasks.items():
            costs[name] = onboard(store, task, config, seed,
                                  os.path.join(workdir, f"seed{seed}", name))
            print(f"seed {seed} {name}: mu2net {costs[name]['seconds']:.0f} s, "
                  f"{costs[name]['examples']} examples", flush=True)
            for method, fn, lrs in (("finetune", finetune, args.ft_lrs),
                                    ("probe", probe, args.probe_lrs)):
                res = fn(root, params, task, config, costs[name]["examples"], lrs, seed)
                hparams = task_hparams(root, task.info.num_classes)
                full = sum(size(n, hparams) for n in component_names(hparams))
                head = size("head", hparams)
                accounted = (full if method == "finetune"
                             else (full - head) / len(tasks) + head)
                rows.append({"seed": seed, "task": name, "method": method,
                             "test_accuracy": res["test_accuracy"],
                             "validation_accuracy": res["validation_accuracy"],
                             "lr": res["lr"], "sweep": res["sweep"],
                             "examples": res["examples"], "seconds": res["seconds"],
                             "params": full, "head_params": head,
                             "accounted_params": accounted,
                             "flops": forward_flops(arch, hparams)})
                print(f"seed {seed} {name}: {method} {res['test_accuracy']:.4f} "
                      f"(lr {res['lr']}), {res['seconds']:.0f} s", flush=True)
        system = store.load_system()
        for name in tasks:
            path = system.paths[name]
            new = sum(c.num_params for c in path.components if c.creator == name)
            rows.append({"seed": seed, "task": name, "method": "mu2net",
                         "test_accuracy": float(path.metrics["test_accuracy"]),
                         "validation_accuracy": float(path.metrics["validation_accuracy"]),
                         "examples": costs[name]["examples"],
                         "seconds": costs[name]["seconds"],
                         "children": costs[name]["children"],
                         "retained": costs[name]["retained"],
                         "params": path.num_params, "new_params": new,
                         "accounted_params": system.accounted_params(path),
                         "flops": forward_flops(arch, path.hparams),
                         "num_layers": int(path.hparams["num_layers"]),
                         "image_size": int(path.hparams["ds_image_size"]),
                         "reused": sum(1 for c in path.components if c.creator != name),
                         "components": len(path.components),
                         "lineage": sorted({c.creator for c in path.components})})
        systems[seed] = {"total_params": system.total_params(), "version": system.number}
    root_backbone = sum(c.num_params for c in root.components if c.name != "head")
    return {"config": config.name, "method_version": config.method_version,
            "search": dataclasses.asdict(config.search),
            "overrides": {"examples_between_validations": args.examples_between_validations,
                          "generations_per_cycle": args.generations,
                          "opt_lr_default": args.opt_lr_default},
            "tasks": list(tasks), "seeds": list(args.seeds), "ft_lrs": args.ft_lrs,
            "probe_lrs": args.probe_lrs, "root": {
                "examples": args.root_examples, "seconds": root_seconds,
                "test_accuracy": root_metrics.get("test_accuracy"),
                "validation_accuracy": root_metrics.get("validation_accuracy"),
                "backbone_params": root_backbone, "params": root.num_params},
            "systems": {str(k): v for k, v in systems.items()}, "rows": rows,
            "total_seconds": time.perf_counter() - t0}


# === report =================================================================================


def _select(rows, **where) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def deployed_params(data: dict[str, Any], method: str, seed: int) -> int:
    """Parameters of the deployed set of all tasks."""
    rows = _select(data["rows"], method=method, seed=seed)
    if method == "mu2net":
        return int(data["systems"][str(seed)]["total_params"])
    if method == "finetune":
        return int(sum(r["params"] for r in rows))
    return int(data["root"]["backbone_params"] + sum(r["head_params"] for r in rows))


def summary(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for method in METHODS:
        per_seed_acc, per_seed_params = [], []
        for seed in data["seeds"]:
            rows = _select(data["rows"], method=method, seed=seed)
            per_seed_acc.append(statistics.fmean(r["test_accuracy"] for r in rows))
            per_seed_params.append(deployed_params(data, method, seed))
        rows = _select(data["rows"], method=method)
        out[method] = {"acc": per_seed_acc, "params": statistics.fmean(per_seed_params),
                       "flops": statistics.fmean(r["flops"] for r in rows),
                       "examples": sum(r["examples"] for r in rows) / len(data["seeds"]),
                       "seconds": sum(r["seconds"] for r in rows) / len(data["seeds"])}
    return out


def report(data: dict[str, Any], png_name: str) -> str:
    seeds, tasks = data["seeds"], data["tasks"]
    summ = summary(data)
    names = {"mu2net": "mu2Net+ (evolve)", "finetune": "fine-tuning", "probe": "linear probe"}
    root = data["root"]
    lines = [common.header("Quality versus size and compute: mu2Net+ vs fine-tuning and "
                           "linear probe"), ""]
    overrides = {k: v for k, v in data["overrides"].items() if v}
    labels = {"opt_lr_default": "hparams.opt_lr.default"}
    changed = (" with " + ", ".join(f"{labels.get(k, 'search.' + k)}={v}"
                                    for k, v in overrides.items())
               + " overridden on the command line") if overrides else ""
    search = data["search"]
    lines.append(
        f"Config `{data['config']}`{changed} (method version `{data['method_version']}`: "
        f"{search['children_per_generation']} x {search['generations_per_cycle']} children per "
        f"task, each trained {search['validations_per_child']} x <= "
        f"{search['examples_between_validations']:,} examples); tasks "
        f"{', '.join(f'`{t}`' for t in tasks)} onboarded in this order; seeds {seeds} "
        f"(paired: one seed seeds all three methods). Root: pretrained once on `fashion_mnist` "
        f"({root['examples']:,} examples, {root['seconds']:.0f} s, test accuracy "
        f"{(root['test_accuracy'] or math.nan) * 100:.1f} %), shared by all methods and seeds, "
        f"its cost charged to none. Fine-tuning and probe get, per task and seed, the training "
        f"examples the search spent on it, split equally over their learning-rate sweeps "
        f"(fine-tuning {data['ft_lrs']}, probe {data['probe_lrs']}; best by validation). "
        f"Whole run: {data['total_seconds'] / 60:.1f} min.")
    lines.append("")
    lines.append("Accuracy: mean test accuracy (%) over seeds ± the half-width of its 95 % "
                 "confidence interval (t-distribution, n = number of seeds). Parameters of the "
                 "deployed set: mu2Net+ = every distinct component of every task's path "
                 "(`SystemView.total_params`, the root's head excluded); fine-tuning = one whole "
                 "model per task; probe = the root backbone + one head per task. FLOPs: one "
                 "forward pass at batch 1 (`scoring.forward_flops`, 2 x MACs). Examples and "
                 "seconds: training, summed over tasks (mean over seeds); probe seconds include "
                 "computing the frozen features.")
    lines.append("")
    lines.append("## Summary (all tasks)")
    lines.append("")
    lines.append("| method | mean test accuracy % | params of deployed set | x fine-tuning | "
                 "FLOPs / inference (mean) | training examples | training s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    ft_params = summ["finetune"]["params"]
    for method in METHODS:
        s = summ[method]
        lines.append(f"| {names[method]} | {common.fmt_ci(s['acc'])} | {s['params']:,.0f} | "
                     f"{s['params'] / ft_params:.2f} | {s['flops'] / 1e6:.1f} M | "
                     f"{s['examples']:,.0f} | {s['seconds']:,.0f} |")
    lines.append("")
    lines.append(f"![accuracy vs parameters]({png_name})")
    lines.append("")
    lines.append("## Per task: test accuracy %")
    lines.append("")
    lines.append("| task | mu2Net+ | fine-tuning | linear probe | mu2Net+ − fine-tuning "
                 "(paired) | mu2Net+ − probe (paired) |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for task in tasks:
        acc = {m: [_select(data["rows"], method=m, seed=s, task=task)[0]["test_accuracy"]
                   for s in seeds] for m in METHODS}
        d_ft = [a - b for a, b in zip(acc["mu2net"], acc["finetune"])]
        d_pr = [a - b for a, b in zip(acc["mu2net"], acc["probe"])]
        lines.append(f"| {task} | {common.fmt_ci(acc['mu2net'])} | "
                     f"{common.fmt_ci(acc['finetune'])} | {common.fmt_ci(acc['probe'])} | "
                     f"{common.fmt_ci(d_ft)} | {common.fmt_ci(d_pr)} |")
    acc = {m: summ[m]["acc"] for m in METHODS}
    d_ft = [a - b for a, b in zip(acc["mu2net"], acc["finetune"])]
    d_pr = [a - b for a, b in zip(acc["mu2net"], acc["probe"])]
    lines.append(f"| **mean** | {common.fmt_ci(acc['mu2net'])} | "
                 f"{common.fmt_ci(acc['finetune'])} | {common.fmt_ci(acc['probe'])} | "
                 f"{common.fmt_ci(d_ft)} | {common.fmt_ci(d_pr)} |")
    lines.append("")
    lines.append("## Per task: size and compute (mean over seeds)")
    lines.append("")
    lines.append("Accounted params (method.md §2.5): each component's size divided by the "
                 "number of tasks using it, summed over the task's path (mu2Net+: read from the "
                 "final system; probe: the backbone shared by all tasks + its own head; "
                 "fine-tuning: the whole model). New params: parameters of the components the "
                 "task's search created. Layers / image size: of the mu2Net+ path.")
    lines.append("")
    lines.append("| task | accounted params mu2Net+ | new params mu2Net+ | probe | fine-tuning | "
                 "FLOPs mu2Net+ | FLOPs FT/probe | layers | image size | reused components | "
                 "training examples | s mu2Net+ | s FT | s probe |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for task in tasks:
        mu = _select(data["rows"], method="mu2net", task=task)
        ft = _select(data["rows"], method="finetune", task=task)
        pr = _select(data["rows"], method="probe", task=task)

        def avg(rows, key):
            return statistics.fmean(r[key] for r in rows)

        layers = "/".join(str(r["num_layers"]) for r in mu)
        image = "/".join(str(r["image_size"]) for r in mu)
        reused = "/".join(f"{r['reused']} of {r['components']}" for r in mu)
        lines.append(f"| {task} | {avg(mu, 'accounted_params'):,.0f} | "
                     f"{avg(mu, 'new_params'):,.0f} | {avg(pr, 'accounted_params'):,.0f} | "
                     f"{avg(ft, 'accounted_params'):,.0f} | {avg(mu, 'flops') / 1e6:.1f} M | "
                     f"{avg(ft, 'flops') / 1e6:.1f} M | {layers} | {image} | {reused} | "
                     f"{avg(mu, 'examples'):,.0f} | {avg(mu, 'seconds'):,.0f} | "
                     f"{avg(ft, 'seconds'):,.0f} | {avg(pr, 'seconds'):,.0f} |")
    lines.append("")
    lines.append("Layers, image size and reused components are listed per seed. The raw "
                 "per-seed, per-task rows (incl. the learning-rate sweeps' validation "
                 "accuracies) are in the `.json` file next to this one.")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summary(data)
    colors = {"mu2net": "tab:red", "finetune": "tab:blue", "probe": "tab:green"}
    labels = {"mu2net": "mu2Net+", "finetune": "fine-tuning", "probe": "linear probe"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        s = summ[method]
        mean, half = common.mean_ci(s["acc"])
        for ax, x in ((axes[0], s["params"]), (axes[1], s["examples"])):
            ax.errorbar([x], [mean * 100], yerr=None if math.isnan(half) else [half * 100],
                        fmt="o", color=colors[method], capsize=4, label=labels[method])
        per_seed_params = [deployed_params(data, method, seed) for seed in data["seeds"]]
        axes[0].scatter(per_seed_params, [a * 100 for a in s["acc"]], s=10,
                        color=colors[method], alpha=0.4)
    axes[0].set_xscale("log")
    axes[0].set_xlabel(f"parameters of the deployed set ({len(data['tasks'])} tasks)")
    axes[1].set_xlabel("training examples (all tasks)")
    for ax in axes:
        ax.set_ylabel("mean test accuracy % (95 % CI over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{data['config']}: {len(data['tasks'])} tasks, {len(data['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="testing config, 1 small task, 2 seeds, 1 generation, tiny root (CI)")
    parser.add_argument("--config", default=None, help="config variant (default cpu_demo)")
    parser.add_argument("--tasks", nargs="+", default=None, help="suite tasks, in order")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--root-examples", type=int, default=None,
                        help="root pretraining examples (0 = random root; default: config)")
    parser.add_argument("--examples-between-validations", type=int, default=None,
                        help="override the config's search budget per validation")
    parser.add_argument("--generations", type=int, default=None,
                        help="override the config's generations per cycle")
    parser.add_argument("--opt-lr-default", type=float, default=None,
                        help="override the config's default opt_lr (the root path's value, "
                             "where children of the root start)")
    parser.add_argument("--ft-lrs", nargs="+", type=float, default=[0.01, 0.03, 0.1])
    parser.add_argument("--probe-lrs", nargs="+", type=float, default=[0.1, 0.3, 1.0])
    parser.add_argument("--out-dir", default=None,
                        help="results folder (full run: benchmarks/results; smoke: a temp dir)")
    parser.add_argument("--workdir", default=None, help="stores and blobs (default: temp)")
    args = parser.parse_args()
    from mu2net.config import get_config

    args.config = args.config or ("testing" if args.smoke else "cpu_demo")
    args.tasks = args.tasks or list(SMOKE_TASKS if args.smoke else FULL_TASKS)
    args.seeds = args.seeds or ([0, 1] if args.smoke else [0, 1, 2])
    if args.smoke:
        args.generations = args.generations or 1
    elif args.config == "cpu_demo":
        # The budget that keeps the whole run under 60 minutes on 2 cores (measured 48.9 min):
        # half cpu_demo's per-child examples and half its root pretraining. Pass the config's
        # own values explicitly for the full-budget run (about 1.5 h here).
        args.examples_between_validations = args.examples_between_validations or 2048
        args.root_examples = 90_000 if args.root_examples is None else args.root_examples
    if args.root_examples is None:
        args.root_examples = 128 if args.smoke else get_config(args.config).root_pretrain_examples
    if args.smoke:
        args.ft_lrs, args.probe_lrs = args.ft_lrs[:1], args.probe_lrs[:1]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or (tmp if args.smoke else common.RESULTS_DIR)
        data = run(args, args.workdir or os.path.join(tmp, "work"))
        data["header"] = {"revision": common.git_revision(), "date": common.today(),
                          "machine": common.machine(), "command": common.command()}
        base = os.path.join(out_dir, "quality_vs_finetune")
        common.write(base + ".json", json.dumps(data, indent=1, sort_keys=True))
        plot(data, base + ".png")
        text = report(data, "quality_vs_finetune.png")
        common.write(base + ".md", text)
        print(text)


if __name__ == "__main__":
    main()
