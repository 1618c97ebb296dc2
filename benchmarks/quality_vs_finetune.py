"""Quality versus size and compute: mu2Net+ against the models a user would otherwise pick.

One run, one shared root, six methods, paired seeds (one seed seeds every method):

* root: a ViT of the config's architecture pretrained on the suite's root task
  (`fashion_mnist`), shared by every method and seed; by default the cached pretrained root
  (`mu2net.root_cache.cached_pretrained_root`), or pretrained here (`--root-examples N`), or random
  (`--root-examples 0`). Its cost is reported apart and charged to no method;
* mu2net: the suite tasks onboarded one after another on a local store, each with `--cycles`
  search cycles (cycle 1 `evolve(mode="onboard")`, then `evolve(mode="iterate")`), each cycle
  committed, so later tasks can reuse earlier tasks' components. Accuracy, examples and
  seconds are recorded after every cycle;
* finetune: per task a copy of the whole root with a new head, every component trained to
  convergence: one validation per epoch (`--ft-epoch-examples`), early stopping
  (`--ft-patience`) within `--ft-max-epochs`, best-validation checkpoint, and a learning-rate
  sweep (`--ft-lrs`) picked by validation accuracy. The strong baseline;
* finetune_matched: the same, but one run at the learning rate finetune picked, trained on as
  many examples as the search spent on the task (all cycles), no early stop;
* probe: a new head on the frozen root (a linear probe) trained like finetune (`--probe-lrs`).
  The root is frozen, so its cls features are computed once per split and the head is trained
  on them: the same function as running the frozen root each step (no augmentation), cheaper;
* scratch: the architecture trained from random init like finetune (`--scratch-lrs`);
* logreg: scikit-learn logistic regression on the raw stored pixels (flattened, scaled to
  [0, 1]), C picked on validation from `--logreg-cs`: the floor a user gets in one line.

The networks use the library's training code (`training.train_model`: SGD with momentum 0.9,
warmup 10 % + cosine over the whole budget, global-norm clip 1, best validation checkpoint on
the search's fixed validation subset), input pipeline and batch size, with the root path's
data hyperparameters, i.e. the augmentation the search's children of the root start with
(`--no-ft-augment`: none). Test accuracy is measured once per method on each task's test
split (mu2net: by `close_cycle`). The seeds run in `--jobs` worker processes of one thread
each: on 2 cores two 1-thread processes train the cpu_demo ViT at 1,736 + 1,411 images/s
together, one 2-thread process at 1,838 (measured 2026-12-01). Seconds per method are summed
over the workers.

Run:
    .venv/bin/python benchmarks/quality_vs_finetune.py          # cpu_demo, 5 tasks x 3 seeds
    .venv/bin/python benchmarks/quality_vs_finetune.py --smoke  # testing config, < 1 min

Writes `benchmarks/results/quality_vs_finetune.{md,json,png}` (the smoke run: a temp folder);
the JSON is rewritten after every seed, so a run cut short keeps what it measured.
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

FULL_TASKS = ("mnist_5k", "digits", "glyph_letters", "glyph_digits", "glyph_styles")
SMOKE_TASKS = ("digits",)
METHODS = ("mu2net", "finetune", "finetune_matched", "probe", "scratch", "logreg")
BASELINES = METHODS[1:]
NAMES = {"mu2net": "mu2Net+ (evolve)", "finetune": "fine-tuning (converged, lr sweep)",
         "finetune_matched": "fine-tuning (search's examples)", "probe": "linear probe",
         "scratch": "from scratch", "logreg": "logistic regression (pixels)"}
SHORT = {"mu2net": "mu2Net+", "finetune": "FT", "finetune_matched": "FT matched",
         "probe": "probe", "scratch": "scratch", "logreg": "logreg"}
COLORS = {"mu2net": "tab:red", "finetune": "tab:blue", "finetune_matched": "tab:cyan",
          "probe": "tab:green", "scratch": "tab:orange", "logreg": "tab:gray"}
MAX_MINUTES = 90


# === building blocks ========================================================================


def root_params(root, blobs: dict[str, bytes]) -> dict[str, dict[str, np.ndarray]]:
    from mu2net.params_io import npz_bytes_to_params

    return {c.name: npz_bytes_to_params(blobs[c.blob]) for c in root.components}


@dataclass
class Prepared:
    """One task's arrays and the hparams every network baseline trains it with."""

    name: str
    num_classes: int
    hparams: dict[str, Any]
    ds_hparams: dict[str, Any]
    batch: int
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]  # the search's fixed validation subset
    test: tuple[np.ndarray, np.ndarray]  # what `close_cycle` measures mu2net on

    @property
    def size(self) -> int:
        return int(self.hparams["ds_image_size"])


def prepare(task, root, config, augment: bool) -> Prepared:
    """The root's hparams with the task's classes; the same splits the search uses."""
    from mu2net.training import validation_subset

    name = task.info.name
    hparams = {**root.hparams, "num_classes": int(task.info.num_classes)}
    train = task.arrays("train")
    val = validation_subset(name, *task.arrays("validation"), config.search.validation_examples)
    images, labels = task.arrays("test")
    limit = config.search.test_examples
    test = (images[:limit], labels[:limit]) if limit else (images, labels)
    ds = {k: v for k, v in hparams.items() if k.startswith("ds_")} if augment else None
    return Prepared(name, int(task.info.num_classes), hparams, ds or {},
                    min(config.search.batch_size, len(train[1])), train, val, test)


def epoch_budget(prep: Prepared, epoch_examples: int, max_epochs: int):
    """Validate every `epoch_examples` (0: one pass over the train split), at most
    `max_epochs` times."""
    from mu2net.training import Budget

    per = math.ceil((epoch_examples or len(prep.train[1])) / prep.batch)
    return Budget(prep.batch, max(1, per), max(1, max_epochs))


def matched_budget(prep: Prepared, examples: int, epoch_examples: int):
    """About `examples` examples (never more), validated about once per epoch."""
    from mu2net.training import Budget

    total = max(1, examples // prep.batch)
    per = math.ceil((epoch_examples or len(prep.train[1])) / prep.batch)
    validations = max(1, min(total, round(total / per)))
    return Budget(prep.batch, total // validations, validations)


def eval_accuracy(model, images: np.ndarray, labels: np.ndarray, size: int) -> float:
    import keras

    from mu2net.tasks.preprocess import make_dataset

    ds = make_dataset(images, labels, image_size=size, batch_size=256, training=False, seed=0)
    preds = [np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=1)
             for x, _ in ds]
    return float(np.mean(np.concatenate(preds) == np.asarray(labels)))


def sweep(train_one: Callable[[float], dict[str, Any]], lrs: list[float]) -> dict[str, Any]:
    """Train once per lr; keep the run with the best validation accuracy (ties: first). The
    cost is the whole sweep's: that is what a user pays to get the kept model."""
    runs = [train_one(lr) for lr in lrs]
    best = max(runs, key=lambda r: r["validation_accuracy"])
    return {**best, "examples": sum(r["examples"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs),
            "sweep": {str(r["lr"]): {"validation_accuracy": round(r["validation_accuracy"], 4),
                                     "epochs": r["validations"], "examples": r["examples"]}
                      for r in runs}}


def train_whole(prep: Prepared, config, weights: dict[str, dict[str, np.ndarray]], *,
                lr: float, budget, patience: int | None, data_seed: int) -> dict[str, Any]:
    """Every component of a model built from `weights` trained; best validation checkpoint
    tested."""
    from mu2net.model import build_model, component_names
    from mu2net.tasks.preprocess import make_dataset
    from mu2net.training import make_optimizer, set_params, train_model

    start = time.perf_counter()
    names = component_names(prep.hparams)
    model = build_model(config.architecture, prep.hparams, weights, trainable=names)
    train_ds = make_dataset(*prep.train, image_size=prep.size, batch_size=prep.batch,
                            training=True, seed=data_seed, ds_hparams=prep.ds_hparams or None,
                            repeat=True)
    val_ds = make_dataset(*prep.validation, image_size=prep.size, batch_size=prep.batch,
                          training=False, seed=0)
    optimizer = make_optimizer({**prep.hparams, "opt_lr": lr}, budget.total_steps, config)
    outcome = train_model(model, train_ds, val_ds, budget=budget, optimizer=optimizer,
                          trainable=names, score_fn=lambda q: q, best_start=-math.inf,
                          patience=patience)
    set_params(model, outcome.params)
    test = eval_accuracy(model, *prep.test, prep.size)
    return {"lr": lr, "validation_accuracy": outcome.quality, "test_accuracy": test,
            "examples": outcome.examples, "validations": len(outcome.curve),
            "best_validation": int(np.argmax(outcome.curve)) + 1,
            "seconds": time.perf_counter() - start}


def root_weights(params, prep: Prepared, config, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """A copy of the root's backbone and a fresh head for the task."""
    from mu2net.model import component_names, init_component
    from mu2net.search_state import derive_seed

    names = component_names(prep.hparams)
    weights = {n: {k: np.array(v) for k, v in params[n].items()} for n in names[:-1]}
    weights["head"] = init_component("head", config.architecture, prep.hparams,
                                     derive_seed(seed, prep.name, "finetune", "head"))
    return weights


def finetune(params, prep: Prepared, config, args: argparse.Namespace,
             seed: int) -> dict[str, Any]:
    """The whole root with a new head, trained to convergence; best lr by validation."""
    from mu2net.search_state import derive_seed

    budget = epoch_budget(prep, args.ft_epoch_examples, args.ft_max_epochs)
    return sweep(lambda lr: train_whole(
        prep, config, root_weights(params, prep, config, seed), lr=lr, budget=budget,
        patience=args.ft_patience, data_seed=derive_seed(seed, prep.name, "finetune", "data")),
        args.ft_lrs)


def finetune_matched(params, prep: Prepared, config, args: argparse.Namespace, seed: int,
                     lr: float, examples: int) -> dict[str, Any]:
    """One fine-tuning run at `lr` on the search's number of examples, no early stop."""
    from mu2net.search_state import derive_seed

    budget = matched_budget(prep, examples, args.ft_epoch_examples)
    return train_whole(prep, config, root_weights(params, prep, config, seed), lr=lr,
                       budget=budget, patience=None,
                       data_seed=derive_seed(seed, prep.name, "finetune", "data"))


def scratch(prep: Prepared, config, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The same architecture from random init (not the root), trained like `finetune`."""
    from mu2net.model import component_names, init_component
    from mu2net.search_state import derive_seed

    def weights() -> dict[str, dict[str, np.ndarray]]:
        return {n: init_component(n, config.architecture, prep.hparams,
                                  derive_seed(seed, prep.name, "scratch", n))
                for n in component_names(prep.hparams)}

    budget = epoch_budget(prep, args.ft_epoch_examples, args.scratch_max_epochs)
    return sweep(lambda lr: train_whole(
        prep, config, weights(), lr=lr, budget=budget, patience=args.ft_patience,
        data_seed=derive_seed(seed, prep.name, "scratch", "data")), args.scratch_lrs)


def cls_features(model, images: np.ndarray, size: int) -> np.ndarray:
    """The frozen root's encoder_norm output on the cls token: [N, 1, width]."""
    import keras

    from mu2net.tasks.preprocess import make_dataset

    features = keras.Model(model.inputs, model.get_layer("encoder_norm").output)
    ds = make_dataset(images, np.zeros(len(images), np.int64), image_size=size, batch_size=256,
                      training=False, seed=0)
    out = [keras.ops.convert_to_numpy(features(x, training=False))[:, :1] for x, _ in ds]
    return np.concatenate(out).astype(np.float32)


def probe(params, prep: Prepared, config, args: argparse.Namespace,
          seed: int) -> dict[str, Any]:
    """A new head on the frozen root, trained like `finetune` on its cached cls features;
    best lr by validation. Seconds include computing the features."""
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
    from mu2net.training import make_optimizer, set_params, train_model

    arch = config.architecture
    names = component_names(prep.hparams)
    start = time.perf_counter()
    weights = {n: params[n] for n in names[:-1]}
    weights["head"] = init_component("head", arch, prep.hparams, 0)
    frozen = build_model(arch, prep.hparams, weights, trainable=())
    feats = {split: cls_features(frozen, getattr(prep, split)[0], prep.size)
             for split in ("train", "validation", "test")}
    feature_seconds = time.perf_counter() - start
    labels = prep.train[1]
    shapes = component_shapes("head", arch, prep.hparams)
    head_class = layer_classes()["head"]
    budget = epoch_budget(prep, args.ft_epoch_examples, args.probe_max_epochs)

    def train_one(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        inputs = keras.Input((1, arch.hidden_size))
        head = head_class(shapes, name="head")
        model = keras.Model(inputs, head(inputs))
        head.set_params(init_component("head", arch, prep.hparams,
                                       derive_seed(seed, prep.name, "probe", "head")))
        order_seed = derive_seed(seed, prep.name, "probe", "data") % 2**31
        train_ds = (tf.data.Dataset.from_tensor_slices((feats["train"], labels.astype(np.int32)))
                    .shuffle(len(labels), seed=order_seed, reshuffle_each_iteration=True)
                    .repeat().batch(prep.batch, drop_remainder=True))
        val_ds = tf.data.Dataset.from_tensor_slices(
            (feats["validation"], prep.validation[1].astype(np.int32))).batch(256)
        outcome = train_model(model, train_ds, val_ds, budget=budget,
                              optimizer=make_optimizer({**prep.hparams, "opt_lr": lr},
                                                       budget.total_steps, config),
                              trainable=["head"], score_fn=lambda q: q, best_start=-math.inf,
                              patience=args.ft_patience)
        set_params(model, outcome.params)
        logits = keras.ops.convert_to_numpy(model(feats["test"], training=False))
        test = float(np.mean(np.argmax(logits, axis=1) == prep.test[1]))
        return {"lr": lr, "validation_accuracy": outcome.quality, "test_accuracy": test,
                "examples": outcome.examples, "validations": len(outcome.curve),
                "best_validation": int(np.argmax(outcome.curve)) + 1,
                "seconds": time.perf_counter() - start}

    result = sweep(train_one, args.probe_lrs)
    result["seconds"] += feature_seconds
    result["feature_seconds"] = feature_seconds
    return result


def logreg(prep: Prepared, cs: list[float], max_iter: int) -> dict[str, Any]:
    """Multinomial logistic regression (lbfgs) on the raw stored pixels scaled to [0, 1]; C by
    validation accuracy. Deterministic, so one fit serves every seed. Examples: the train
    split times the lbfgs iterations (each one a full pass), summed over the C grid. BLAS is
    held to one thread: beside TensorFlow's pool, OpenBLAS' spinning threads made these small
    fits ~200x slower on 2 shared cores."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    def flat(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float32) / 255.0

    start = time.perf_counter()
    x, y = flat(prep.train[0]), prep.train[1]
    runs = []
    for c in cs:
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=max_iter).fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        iterations = int(np.max(model.n_iter_))
        runs.append({"C": c, "model": model, "converged": converged, "iterations": iterations,
                     "validation_accuracy": float(model.score(flat(prep.validation[0]),
                                                              prep.validation[1]))})
    best = max(runs, key=lambda r: r["validation_accuracy"])
    return {"C": best["C"], "validation_accuracy": best["validation_accuracy"],
            "test_accuracy": float(best["model"].score(flat(prep.test[0]), prep.test[1])),
            "examples": len(y) * sum(r["iterations"] for r in runs),
            "converged": all(r["converged"] for r in runs),
            "sweep": {str(r["C"]): {"validation_accuracy": round(r["validation_accuracy"], 4),
                                    "iterations": r["iterations"], "converged": r["converged"]}
                      for r in runs},
            "pixels": int(x.shape[1]), "seconds": time.perf_counter() - start}


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
        published = system.paths.get(name)  # cycles that kept it count (other seeds)
        extension = evolve(system, task, config, store, seed=seed,
                           run_id=f"bench-{seed}-{name}-{cycle}", workdir=cycle_dir,
                           mode="onboard" if cycle == 1 else "iterate",
                           kept_cycles=store.kept_searches(name, published.hash)
                           if published is not None else 0)
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


def make_root(config, args: argparse.Namespace) -> tuple[Any, dict[str, bytes], dict[str, Any]]:
    """The shared root and what to report about it (source, accuracy, cache, seconds)."""
    from mu2net.root import build_root, pretrain_root
    from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task

    start = time.perf_counter()
    cached = False
    if args.root_examples == 0:
        root, blobs = build_root(config, "random", seed=0)
        metrics: dict[str, Any] = {"source": "random_init:0"}
    elif args.root_examples is not None:
        root, blobs, metrics = pretrain_root(  # the config's recipe, as the cached root
            config, load_suite_task(ROOT_TASK_NAME), seed=0, examples=args.root_examples)
    else:
        from mu2net.root_cache import cached_pretrained_root, root_cache_file, root_cache_hit

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


def run(args: argparse.Namespace, workdir: str,
        checkpoint: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every method on every task and seed; `checkpoint(data)` after each seed."""
    import dataclasses

    from mu2net.blobs import DirBlobs
    from mu2net.model import component_names, component_shapes
    from mu2net.scoring import forward_flops
    from mu2net.store import open_store
    from mu2net.tasks.suite import load_suite_task

    t0 = time.perf_counter()
    config = bench_config(args)
    arch = config.architecture
    tasks = {name: load_suite_task(name) for name in args.tasks}
    root, blobs, root_info = make_root(config, args)
    files = DirBlobs(os.path.join(workdir, "root")).put_all(blobs)
    params = root_params(root, blobs)
    preps = {name: prepare(task, root, config, args.ft_augment) for name, task in tasks.items()}
    wall = dict.fromkeys(METHODS, 0.0)  # measured wall time per method, the whole run

    def size(name: str, hparams: dict[str, Any]) -> int:
        return sum(math.prod(s) for s in component_shapes(name, arch, hparams).values())

    logreg_cache: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    systems: dict[int, dict[str, Any]] = {}
    data: dict[str, Any] = {
        "config": config.name, "method_version": config.method_version,
        "search": dataclasses.asdict(config.search), "cycles": args.cycles,
        "overrides": {"examples_between_validations": args.examples_between_validations,
                      "generations_per_cycle": args.generations,
                      "opt_lr_default": args.opt_lr_default},
        "baselines": {k: getattr(args, k) for k in (
            "ft_lrs", "probe_lrs", "scratch_lrs", "ft_epoch_examples", "ft_max_epochs",
            "probe_max_epochs", "scratch_max_epochs", "ft_patience", "ft_augment", "logreg_cs",
            "logreg_max_iter")},
        "tasks": list(tasks), "seeds": [], "root": root_info, "rows": rows,
        "systems": {}, "method_seconds": wall}

    def timed(method: str, fn: Callable[..., dict[str, Any]], *fn_args: Any) -> dict[str, Any]:
        start = time.perf_counter()
        out = fn(*fn_args)
        wall[method] += time.perf_counter() - start
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
            results = {"finetune": timed("finetune", finetune, params, prep, config, args, seed)}
            results["finetune_matched"] = timed(
                "finetune_matched", finetune_matched, params, prep, config, args, seed,
                results["finetune"]["lr"], costs[name]["examples"])
            results["probe"] = timed("probe", probe, params, prep, config, args, seed)
            results["scratch"] = timed("scratch", scratch, prep, config, args, seed)
            if name not in logreg_cache:
                logreg_cache[name] = timed("logreg", logreg, prep, args.logreg_cs,
                                           args.logreg_max_iter)
            results["logreg"] = logreg_cache[name]
            full = sum(size(n, prep.hparams) for n in component_names(prep.hparams))
            head = size("head", prep.hparams)
            for method, res in results.items():
                row = {"seed": seed, "task": name, "method": method,
                       **{k: v for k, v in res.items() if k != "model"}}
                if method == "logreg":
                    pixels = res["pixels"]
                    row.update(params=(pixels + 1) * prep.num_classes,
                               head_params=(pixels + 1) * prep.num_classes,
                               accounted_params=(pixels + 1) * prep.num_classes,
                               flops=2 * pixels * prep.num_classes)
                else:
                    row.update(params=full, head_params=head,
                               accounted_params=((full - head) / len(tasks) + head
                                                 if method == "probe" else full),
                               flops=forward_flops(arch, prep.hparams))
                rows.append(row)
                knob = f"C {res['C']}" if method == "logreg" else f"lr {res['lr']}"
                print(f"  seed {seed} {name}: {method} {res['test_accuracy']:.4f} ({knob}), "
                      f"{res['examples']:,} examples, {res['seconds']:.0f} s", flush=True)
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


# === report =================================================================================


def _select(rows, **where) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def deployed_params(data: dict[str, Any], method: str, seed: int) -> int:
    """Parameters of the deployed set of all tasks."""
    rows = _select(data["rows"], method=method, seed=seed)
    if method == "mu2net":
        return int(data["systems"][str(seed)]["total_params"])
    if method == "probe":
        return int(data["root"]["backbone_params"] + sum(r["head_params"] for r in rows))
    return int(sum(r["params"] for r in rows))  # one whole model per task


def accuracies(data: dict[str, Any], method: str, task: str | None = None) -> list[float]:
    """Test accuracy per seed (of one task, or the mean over tasks)."""
    out = []
    for seed in data["seeds"]:
        rows = _select(data["rows"], method=method, seed=seed)
        out.append(statistics.fmean(r["test_accuracy"] for r in rows
                                    if task is None or r["task"] == task))
    return out


def diffs(data: dict[str, Any], method: str, task: str | None = None) -> list[float]:
    """Paired (same seed) differences mu2Net+ - `method`."""
    return [a - b for a, b in zip(accuracies(data, "mu2net", task),
                                  accuracies(data, method, task), strict=True)]


def summary(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    n = len(data["seeds"])
    for method in METHODS:
        rows = _select(data["rows"], method=method)
        out[method] = {"acc": accuracies(data, method),
                       "params": statistics.fmean(deployed_params(data, method, s)
                                                  for s in data["seeds"]),
                       "flops": statistics.fmean(r["flops"] for r in rows),
                       "examples": sum(r["examples"] for r in rows) / n,
                       "seconds": sum(r["seconds"] for r in rows) / n}
    return out


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def done_when(data: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The issue's acceptance checks: (what, passed, the numbers)."""
    summ, tasks = summary(data), data["tasks"]
    mu = {t: statistics.fmean(accuracies(data, "mu2net", t)) for t in tasks}
    lr = {t: statistics.fmean(accuracies(data, "logreg", t)) for t in tasks}
    checks = [("every task: mu2Net+ > logreg", all(mu[t] > lr[t] for t in tasks),
               ", ".join(f"{t} {mu[t] * 100:.1f} vs {lr[t] * 100:.1f}" for t in tasks))]
    if "mnist_5k" in tasks:
        checks.append(("mnist_5k: mu2Net+ >= 95 %", mu["mnist_5k"] >= 0.95,
                       f"{mu['mnist_5k'] * 100:.1f} %"))
    else:
        checks.append(("mnist_5k: mu2Net+ >= 95 %", False, "mnist_5k not in this run"))
    m_mu, m_ft = statistics.fmean(summ["mu2net"]["acc"]), statistics.fmean(summ["finetune"]["acc"])
    mean, half = common.mean_ci(diffs(data, "finetune"))
    low = mean - half if math.isfinite(half) else -math.inf
    checks.append(("mu2Net+ mean >= fine-tuning mean and paired difference's 95 % CI lower "
                   "bound >= -1 point", m_mu >= m_ft and low >= -0.01,
                   f"{m_mu * 100:.1f} vs {m_ft * 100:.1f}; difference "
                   f"{mean * 100:+.1f}, CI lower bound {low * 100:+.1f}"))
    ratio = summ["mu2net"]["params"] / summ["finetune"]["params"]
    checks.append(("mu2Net+ deployed params <= 0.5 x fine-tuning's", ratio <= 0.5,
                   f"{summ['mu2net']['params']:,.0f} vs {summ['finetune']['params']:,.0f} "
                   f"({ratio:.2f}x)"))
    std = {t: _std(accuracies(data, "mu2net", t)) for t in tasks}
    checks.append(("every task: mu2Net+ std across seeds <= 3 points",
                   len(data["seeds"]) > 1 and all(s <= 0.03 for s in std.values()),
                   ", ".join(f"{t} {s * 100:.1f}" for t, s in std.items())))
    minutes = data["total_seconds"] / 60
    checks.append((f"whole run <= {MAX_MINUTES} min", minutes <= MAX_MINUTES,
                   f"{minutes:.1f} min"))
    return checks


def _per_task_table(tasks: list[str], methods: tuple[str, ...],
                    values: Callable[[str, str | None], list[float]]) -> list[str]:
    """Markdown rows: one per task and a mean row (task None), mean ± CI per method."""
    lines = ["| task | " + " | ".join(SHORT[m] for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]
    for task in [*tasks, None]:
        cells = [common.fmt_ci(values(m, task)) for m in methods]
        lines.append(f"| {task or '**mean**'} | " + " | ".join(cells) + " |")
    return lines


def report(data: dict[str, Any], png_name: str) -> str:
    seeds, tasks = data["seeds"], data["tasks"]
    summ = summary(data)
    root, search, base = data["root"], data["search"], data["baselines"]
    lines = [common.header("Quality versus size and compute: mu2Net+ vs fine-tuning, linear "
                           "probe, training from scratch and logistic regression",
                           data.get("header")), ""]
    overrides = {k: v for k, v in data["overrides"].items() if v}
    labels = {"opt_lr_default": "hparams.opt_lr.default"}
    changed = (" with " + ", ".join(f"{labels.get(k, 'search.' + k)}={v}"
                                    for k, v in overrides.items())
               + " overridden on the command line") if overrides else ""
    root_acc = root["test_accuracy"]
    root_text = (f"`{root['source']}`"
                 + (f", test accuracy {root_acc * 100:.1f} %" if root_acc is not None else "")
                 + (f", {root['examples']:,} training examples" if root.get("examples") else "")
                 + (f", loaded from the cache (`{root['cache_file']}`, pretrained in "
                    f"{root['train_seconds'] or 0:.0f} s when cached)" if root["cached"] else
                    f", built in this run in {root['seconds']:.0f} s"))
    epoch = (f"{base['ft_epoch_examples']:,} examples" if base["ft_epoch_examples"]
             else "one pass over the train split")
    lines.append(
        f"Config `{data['config']}`{changed} (method version `{data['method_version']}`: "
        f"{data['cycles']} search cycle(s) per task, each {search['children_per_generation']} "
        f"x {search['generations_per_cycle']} children trained "
        f"{search['validations_per_child']} x <= {search['examples_between_validations']:,} "
        f"examples); tasks {', '.join(f'`{t}`' for t in tasks)} onboarded in this order; seeds "
        f"{seeds} (paired: one seed seeds every method). Root: {root_text}; shared by all "
        f"methods and seeds, its cost charged to none. Fine-tuning, scratch and probe validate "
        f"every epoch ({epoch}) and stop after {base['ft_patience']} epochs without a better "
        f"validation accuracy (at most {base['ft_max_epochs']} / {base['scratch_max_epochs']} / "
        f"{base['probe_max_epochs']} epochs), keep the best validation checkpoint, and sweep "
        f"the learning rate (fine-tuning {base['ft_lrs']}, scratch {base['scratch_lrs']}, probe "
        f"{base['probe_lrs']}; best by validation); data augmentation: "
        f"{'the root path ds_* hparams' if base['ft_augment'] else 'none'}. Matched "
        f"fine-tuning: one run at fine-tuning's chosen lr on the search's training examples. "
        f"Logistic regression: lbfgs on raw pixels in [0, 1], C in {base['logreg_cs']} by "
        f"validation, max_iter {base['logreg_max_iter']}. Whole run: "
        f"{data['total_seconds'] / 60:.1f} min.")
    lines.append("")
    lines.append("Accuracy: mean test accuracy (%) over seeds ± the half-width of its 95 % "
                 "confidence interval (t-distribution, n = number of seeds); differences are "
                 "paired by seed. Parameters of the deployed set: mu2Net+ = every distinct "
                 "component of every task's path (`SystemView.total_params`, the root's head "
                 "excluded); fine-tuning / matched / scratch = one whole model per task; probe = "
                 "the root backbone + one head per task; logreg = (pixels + 1) x classes per "
                 "task. FLOPs: one forward pass at batch 1 (`scoring.forward_flops`, 2 x MACs; "
                 "logreg 2 x pixels x classes). Examples and seconds: training incl. the whole "
                 "sweep, summed over tasks (mean over seeds); probe seconds include computing the "
                 "frozen features; logreg examples = train split x lbfgs iterations.")
    lines.append("")
    lines.append("## Summary (all tasks)")
    lines.append("")
    lines.append("| method | mean test accuracy % | mu2Net+ − method (paired) | params of deployed "
                 "set | x fine-tuning | FLOPs / inference (mean) | training examples | "
                 "training s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    ft_params = summ["finetune"]["params"]
    for method in METHODS:
        s = summ[method]
        diff = "" if method == "mu2net" else common.fmt_ci(diffs(data, method))
        flops = (f"{s['flops'] / 1e6:.1f} M" if s["flops"] >= 1e5
                 else f"{s['flops'] / 1e3:.1f} k")
        lines.append(f"| {NAMES[method]} | {common.fmt_ci(s['acc'])} | {diff} | "
                     f"{s['params']:,.0f} | {s['params'] / ft_params:.2f} | {flops} | "
                     f"{s['examples']:,.0f} | {s['seconds']:,.0f} |")
    lines.append("")
    lines.append(f"![accuracy vs parameters]({png_name})")
    lines.append("")
    lines.append("## Done when")
    lines.append("")
    lines.append("```")
    checks = done_when(data)
    for what, ok, numbers in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}  {what}: {numbers}")
    lines.append(f"{'PASS' if all(ok for _, ok, _ in checks) else 'FAIL'}  all")
    lines.append("```")
    lines.append("")
    lines.append("## Per task: test accuracy %")
    lines.append("")
    lines += _per_task_table(tasks, METHODS, lambda m, task: accuracies(data, m, task))
    lines.append("")
    lines.append("## Per task: mu2Net+ − baseline (paired, points)")
    lines.append("")
    lines += _per_task_table(tasks, BASELINES, lambda m, task: diffs(data, m, task))
    lines.append("")
    lines.append("## mu2Net+ per search cycle (mean over seeds)")
    lines.append("")
    lines.append("Test accuracy % of the task's committed path after each cycle (validation "
                 "accuracy, cumulative training examples and seconds in brackets).")
    lines.append("")
    cycles = data["cycles"]
    lines.append("| task | " + " | ".join(f"cycle {c}" for c in range(1, cycles + 1)) + " |")
    lines.append("|---|" + "---:|" * cycles)
    for task in tasks:
        per = [r["cycles"] for r in _select(data["rows"], method="mu2net", task=task)]
        cells = []
        for c in range(cycles):
            recs = [p[c] for p in per if len(p) > c]

            def avg(key, recs=recs):
                return statistics.fmean(r[key] for r in recs)

            cells.append(f"{avg('test_accuracy') * 100:.1f} ({avg('validation_accuracy') * 100:.1f}"
                         f"; {avg('examples'):,.0f}; {avg('seconds'):,.0f} s)")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Per task: standard deviation of test accuracy across seeds (points)")
    lines.append("")
    lines.append("| task | mu2Net+ | fine-tuning |")
    lines.append("|---|---:|---:|")
    for task in tasks:
        lines.append(f"| {task} | {_std(accuracies(data, 'mu2net', task)) * 100:.1f} | "
                     f"{_std(accuracies(data, 'finetune', task)) * 100:.1f} |")
    lines.append("")
    lines.append("## Per task: size and compute (mean over seeds)")
    lines.append("")
    lines.append("Accounted params (docs/method.md §2.5): each component's size divided by the "
                 "number of tasks using it, summed over the task's path (mu2Net+: read from the "
                 "final system; probe: the backbone shared by all tasks + its own head; "
                 "fine-tuning: the whole model). New params: parameters of the components the "
                 "task's search created. Layers / image size: of the mu2Net+ path. Epochs: "
                 "validations the chosen run trained (early stopping) / the best one.")
    lines.append("")
    lines.append("| task | accounted params mu2Net+ | new params mu2Net+ | probe | fine-tuning | "
                 "FLOPs mu2Net+ | FLOPs FT | layers | image size | reused components | "
                 "examples mu2Net+ | examples FT | FT epochs | scratch epochs | lr FT | "
                 "lr scratch |")
    lines.append("|---|" + "---:|" * 15)
    for task in tasks:
        mu, ft, pr, sc = (_select(data["rows"], method=m, task=task)
                          for m in ("mu2net", "finetune", "probe", "scratch"))

        def avg(rows, key):
            return statistics.fmean(r[key] for r in rows)

        def epochs(rows):
            return "/".join(f"{r['validations']}:{r['best_validation']}" for r in rows)

        lines.append(
            f"| {task} | {avg(mu, 'accounted_params'):,.0f} | {avg(mu, 'new_params'):,.0f} | "
            f"{avg(pr, 'accounted_params'):,.0f} | {avg(ft, 'accounted_params'):,.0f} | "
            f"{avg(mu, 'flops') / 1e6:.1f} M | {avg(ft, 'flops') / 1e6:.1f} M | "
            + "/".join(str(r["num_layers"]) for r in mu) + " | "
            + "/".join(str(r["image_size"]) for r in mu) + " | "
            + "/".join(f"{r['reused']} of {r['components']}" for r in mu) + " | "
            f"{avg(mu, 'examples'):,.0f} | {avg(ft, 'examples'):,.0f} | {epochs(ft)} | "
            f"{epochs(sc)} | " + "/".join(str(r["lr"]) for r in ft) + " | "
            + "/".join(str(r["lr"]) for r in sc) + " |")
    lines.append("")
    lines.append("Per-seed values are separated by `/`. The raw per-seed, per-task rows (incl. "
                 "the sweeps' validation accuracies and every cycle) are in the `.json` file next "
                 "to this one.")
    lines.append("")
    workers = len(data.get("worker_seconds", {})) or 1
    lines.append("## Time per method (whole run, all seeds)")
    lines.append("")
    lines.append(f"Minutes spent in each method, summed over the {workers} worker process(es) "
                 f"that ran the seeds side by side ({data.get('threads', 'default')} "
                 f"thread(s) each); the whole run took {data['total_seconds'] / 60:.1f} "
                 "minutes of wall time.")
    lines.append("")
    lines.append("| method | minutes (summed over workers) | share |")
    lines.append("|---|---:|---:|")
    spent = {**data["method_seconds"], "root": root["seconds"]}
    total = sum(spent.values())
    for method, seconds in spent.items():
        lines.append(f"| {SHORT.get(method, method)} | {seconds / 60:.1f} | "
                     f"{seconds / total * 100:.0f} % |")
    lines.append(f"| **total** | {total / 60:.1f} | 100 % |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summ = summary(data)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for method in METHODS:
        s = summ[method]
        mean, half = common.mean_ci(s["acc"])
        for ax, x in ((axes[0], s["params"]), (axes[1], s["examples"])):
            ax.errorbar([x], [mean * 100], yerr=None if math.isnan(half) else [half * 100],
                        fmt="o", color=COLORS[method], capsize=4, label=SHORT[method])
        per_seed_params = [deployed_params(data, method, seed) for seed in data["seeds"]]
        axes[0].scatter(per_seed_params, [a * 100 for a in s["acc"]], s=10,
                        color=COLORS[method], alpha=0.4)
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping labels
        ax.set_ylabel("mean test accuracy % (95 % CI over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel(f"parameters of the deployed set ({len(data['tasks'])} tasks)")
    axes[1].set_xlabel("training examples (all tasks, incl. sweeps)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{data['config']}: {len(data['tasks'])} tasks, {len(data['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


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
        help="pretrain the root here on N examples (0: random root); default: the cached "
             "pretrained root (mu2net.root_cache.cached_pretrained_root)")
    add("--root-cache-dir", default=None,
        help="folder of cached roots (default: mu2net.root_cache.ROOT_CACHE_DIR)")
    add("--cycles", type=int, default=None,
        help="search cycles per task (default: the config's onboard_cycles, else 1)")
    add("--examples-between-validations", type=int, default=None,
        help="override the config's search budget per validation")
    add("--generations", type=int, default=None,
        help="override the config's generations per cycle")
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
    add("--ft-max-epochs", type=int, default=25, help="at most this many fine-tuning epochs")
    add("--scratch-max-epochs", type=int, default=25, help="at most this many scratch epochs")
    add("--probe-max-epochs", type=int, default=30, help="at most this many probe epochs")
    add("--ft-patience", type=int, default=5,
        help="early stop after this many epochs without a better validation accuracy")
    add("--ft-augment", action=argparse.BooleanOptionalAction, default=True,
        help="train the baselines with the root path's ds_* (augmentation) hparams, the "
             "config's defaults, as the search's children of the root do (default: on)")
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
    args.cycles = args.cycles or int(getattr(get_config(args.config), "onboard_cycles", 1))
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


def main() -> None:
    args = parse_args()
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
