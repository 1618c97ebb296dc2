"""The baselines mu2Net+ is measured against: what a user would otherwise train per task.

Every network baseline starts from the shared root (or from random init: `scratch`) and uses
the library's training code (`training.train_model`: SGD with momentum 0.9, warmup 10 % +
cosine over the whole budget, global-norm clip 1, best validation checkpoint on the search's
fixed validation subset), its input pipeline and batch size, and the root path's data
hyperparameters.

* finetune: every component of the root with a new head, one validation per epoch, trained
  to convergence (by default `quality.plateau`'s schedule: the lr divided by 10 on each
  plateau of `patience` epochs, the run stopped on the last one; else the library's cosine
  over the cap and early stopping) within a cap meant never to be reached, best-validation
  checkpoint, and a learning-rate sweep picked by validation accuracy. Each run records its
  best epoch and whether early stopping ended it (a run at the cap has not converged);
* finetune_equal: the same sweep, but the whole sweep together trains on the examples the
  search spent on the task (each lr gets an equal share, no early stop): equal compute, the
  sweep included;
* finetune_matched: one run at the lr finetune picked on the search's examples (the sweep that
  picked it is not charged);
* topk_<k>: the top k encoder blocks, encoder_norm and a new head trained, everything below
  frozen from the root (trained like finetune): the parameter-matched baseline a user would
  deploy at mu2Net+'s size (the bottom is shared by every task);
* adapters_<d>: a residual adapter of inner size d before every block of the frozen root
  (docs/method.md §2.1, `model.ResidualAdapter`: an identity at init), encoder_norm and a new
  head trained (trained like finetune);
* probe, scratch, logreg: a new head on the frozen root's features, the architecture from
  random init, logistic regression on pixels.

Every result carries `shared_params` (parameters the task's model shares with every other
task's: frozen root components) and `own_params` (those only this task deploys), so a deployed
set of tasks counts shared components once, as `SystemView.total_params` does for mu2Net+.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def stopped_early(curve: list[float], patience: int | None) -> bool:
    """Whether early stopping ended the run: the last `patience` validations were not above the
    best before them (`training.Retention`'s rule; a run that also reached its cap at that
    very validation counts, a run cut by the cap with the accuracy still rising does not)."""
    if patience is None or not curve:
        return False
    return len(curve) - (int(np.argmax(curve)) + 1) >= patience


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
                                     "epochs": r["validations"], "examples": r["examples"],
                                     "best_epoch": r["best_validation"],
                                     "stopped_early": r["stopped_early"]}
                      for r in runs}}


def train_network(prep: Prepared, config, hparams: dict[str, Any],
                  weights: dict[str, dict[str, np.ndarray]], trainable: list[str], *,
                  lr: float, budget, patience: int | None, data_seed: int,
                  decays: int | None = None) -> dict[str, Any]:
    """The `trainable` components of a model built from `weights` trained, the others frozen;
    best validation checkpoint tested. `decays` (with a patience): the plateau schedule of
    `quality.plateau` (the lr divided by 10 on each of `decays` plateaus, stopped on the
    next), else the library's warmup + cosine over the budget."""
    from mu2net.model import build_model
    from mu2net.tasks.preprocess import make_dataset
    from mu2net.training import make_optimizer, set_params, train_model
    from quality.plateau import train_plateau

    start = time.perf_counter()
    model = build_model(config.architecture, hparams, weights, trainable=trainable)
    train_ds = make_dataset(*prep.train, image_size=prep.size, batch_size=prep.batch,
                            training=True, seed=data_seed, ds_hparams=prep.ds_hparams or None,
                            repeat=True)
    val_ds = make_dataset(*prep.validation, image_size=prep.size, batch_size=prep.batch,
                          training=False, seed=0)
    if decays is not None and patience is not None:
        done = train_plateau(model, train_ds, val_ds, hparams=hparams, lr=lr, budget=budget,
                             trainable=trainable, patience=patience, decays=decays,
                             config=config)
        curve, early, extra = done["curve"], done["stopped_early"], {
            "decayed_at": done["decayed_at"]}
    else:
        optimizer = make_optimizer({**hparams, "opt_lr": lr}, budget.total_steps, config)
        outcome = train_model(model, train_ds, val_ds, budget=budget, optimizer=optimizer,
                              trainable=trainable, score_fn=lambda q: q, best_start=-math.inf,
                              patience=patience)
        set_params(model, outcome.params)
        curve, early, extra = outcome.curve, stopped_early(outcome.curve, patience), {}
    test = eval_accuracy(model, *prep.test, prep.size)
    out = {"lr": lr, "validation_accuracy": max(curve), "test_accuracy": test,
           "examples": len(curve) * budget.steps_per_validation * budget.batch_size,
           "validations": len(curve), "best_validation": int(np.argmax(curve)) + 1,
           "stopped_early": early, "max_epochs": budget.validations, **extra,
           "seconds": time.perf_counter() - start}
    print(f"    {prep.name} {len(trainable)} trainable components, lr {lr}: best epoch "
          f"{out['best_validation']} of {out['validations']} (cap {budget.validations}"
          f"{', early stop' if early else ''}{', lr /10 after ' if extra.get('decayed_at') else ''}"
          f"{extra.get('decayed_at') or ''}), val {max(curve):.4f}, test {test:.4f}, "
          f"{out['seconds']:.0f} s", flush=True)
    return out


def root_weights(params, prep: Prepared, config, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """A copy of the root's backbone and a fresh head for the task."""
    from mu2net.model import component_names, init_component
    from mu2net.search_state import derive_seed

    names = component_names(prep.hparams)
    weights = {n: {k: np.array(v) for k, v in params[n].items()} for n in names[:-1]}
    weights["head"] = init_component("head", config.architecture, prep.hparams,
                                     derive_seed(seed, prep.name, "finetune", "head"))
    return weights


def _data_seed(seed: int, prep: Prepared) -> int:
    from mu2net.search_state import derive_seed

    return derive_seed(seed, prep.name, "finetune", "data")  # every fine-tuning variant: paired


def _decays(args) -> int | None:
    """The plateau schedule's lr divisions (`--ft-schedule plateau`), None for the cosine."""
    return args.ft_decays if getattr(args, "ft_schedule", "cosine") == "plateau" else None


def _sizes(config, hparams: dict[str, Any], own: list[str]) -> dict[str, int]:
    """`shared_params` (the path's other components, frozen from the root), `own_params`
    (the components named in `own`, deployed per task), the model's `params`, `head_params`
    and `flops` (one forward pass at batch 1, `scoring.forward_flops`)."""
    from mu2net.model import component_names, component_size
    from mu2net.scoring import forward_flops

    sizes = {n: component_size(n, config.architecture, hparams) for n in component_names(hparams)}
    return {"shared_params": sum(v for n, v in sizes.items() if n not in own),
            "own_params": sum(v for n, v in sizes.items() if n in own),
            "params": sum(sizes.values()), "head_params": sizes["head"],
            "flops": forward_flops(config.architecture, hparams)}


def finetune(params, prep: Prepared, config, args, seed: int) -> dict[str, Any]:
    """The whole root with a new head, trained to convergence; best lr by validation."""
    from mu2net.model import component_names

    budget = epoch_budget(prep, args.ft_epoch_examples, args.ft_max_epochs)
    names = component_names(prep.hparams)
    return {**sweep(lambda lr: train_network(
        prep, config, prep.hparams, root_weights(params, prep, config, seed), names, lr=lr,
        budget=budget, patience=args.ft_patience, data_seed=_data_seed(seed, prep),
        decays=_decays(args)), args.ft_lrs), **_sizes(config, prep.hparams, names)}


def finetune_matched(params, prep: Prepared, config, args, seed: int, lr: float,
                     examples: int) -> dict[str, Any]:
    """One fine-tuning run at `lr` on the search's number of examples, no early stop."""
    from mu2net.model import component_names

    budget = matched_budget(prep, examples, args.ft_epoch_examples)
    names = component_names(prep.hparams)
    return {**train_network(prep, config, prep.hparams, root_weights(params, prep, config, seed),
                            names, lr=lr, budget=budget, patience=None,
                            data_seed=_data_seed(seed, prep)),
            **_sizes(config, prep.hparams, names)}


def finetune_equal(params, prep: Prepared, config, args, seed: int,
                   examples: int) -> dict[str, Any]:
    """The fine-tuning lr sweep on the search's examples in all: each of the `ft_lrs` runs on
    an equal share, no early stop (the cosine spans the share); best lr by validation."""
    from mu2net.model import component_names

    budget = matched_budget(prep, examples // len(args.ft_lrs), args.ft_epoch_examples)
    names = component_names(prep.hparams)
    return {**sweep(lambda lr: train_network(
        prep, config, prep.hparams, root_weights(params, prep, config, seed), names, lr=lr,
        budget=budget, patience=None, data_seed=_data_seed(seed, prep)), args.ft_lrs),
        **_sizes(config, prep.hparams, names)}


def top_blocks(params, prep: Prepared, config, args, seed: int, k: int) -> dict[str, Any]:
    """The top `k` blocks, encoder_norm and a new head trained like `finetune`; the rest
    frozen from the root and shared by every task."""
    layers = int(prep.hparams["num_layers"])
    if not 1 <= k <= layers:
        raise SystemExit(f"--topk-blocks {k} is invalid: expected 1..{layers} (the root's "
                         "blocks)")
    own = [f"encoderblock_{i}" for i in range(layers - k, layers)] + ["encoder_norm", "head"]
    budget = epoch_budget(prep, args.ft_epoch_examples, args.ft_max_epochs)
    return {**sweep(lambda lr: train_network(
        prep, config, prep.hparams, root_weights(params, prep, config, seed), own, lr=lr,
        budget=budget, patience=args.ft_patience, data_seed=_data_seed(seed, prep),
        decays=_decays(args)), args.pm_lrs or args.ft_lrs),
        "blocks": k, **_sizes(config, prep.hparams, own)}


def adapters(params, prep: Prepared, config, args, seed: int, dim: int) -> dict[str, Any]:
    """A residual adapter of inner size `dim` before every block of the frozen root,
    encoder_norm and a new head, trained like `finetune`."""
    from mu2net.model import init_component
    from mu2net.search_state import derive_seed

    layers = int(prep.hparams["num_layers"])
    hparams = {**prep.hparams, "adapter_layers": list(range(layers)), "adapter_dim": int(dim)}
    names = [f"residual_adapter_{i}" for i in range(layers)]
    own = [*names, "encoder_norm", "head"]

    def weights() -> dict[str, dict[str, np.ndarray]]:
        out = root_weights(params, prep, config, seed)
        for n in names:
            out[n] = init_component(n, config.architecture, hparams,
                                    derive_seed(seed, prep.name, "adapters", n))
        return out

    budget = epoch_budget(prep, args.ft_epoch_examples, args.ft_max_epochs)
    return {**sweep(lambda lr: train_network(
        prep, config, hparams, weights(), own, lr=lr, budget=budget, patience=args.ft_patience,
        data_seed=_data_seed(seed, prep), decays=_decays(args)), args.pm_lrs or args.ft_lrs),
        "adapter_dim": int(dim), **_sizes(config, hparams, own)}


def scratch(prep: Prepared, config, args, seed: int) -> dict[str, Any]:
    """The same architecture from random init (not the root), trained like `finetune`."""
    from mu2net.model import component_names, init_component
    from mu2net.search_state import derive_seed

    names = component_names(prep.hparams)

    def weights() -> dict[str, dict[str, np.ndarray]]:
        return {n: init_component(n, config.architecture, prep.hparams,
                                  derive_seed(seed, prep.name, "scratch", n)) for n in names}

    budget = epoch_budget(prep, args.ft_epoch_examples, args.scratch_max_epochs)
    return {**sweep(lambda lr: train_network(
        prep, config, prep.hparams, weights(), names, lr=lr, budget=budget,
        patience=args.ft_patience, data_seed=derive_seed(seed, prep.name, "scratch", "data")),
        args.scratch_lrs), **_sizes(config, prep.hparams, names)}


def cls_features(model, images: np.ndarray, size: int) -> np.ndarray:
    """The frozen root's encoder_norm output on the cls token: [N, 1, width]."""
    import keras

    from mu2net.tasks.preprocess import make_dataset

    features = keras.Model(model.inputs, model.get_layer("encoder_norm").output)
    ds = make_dataset(images, np.zeros(len(images), np.int64), image_size=size, batch_size=256,
                      training=False, seed=0)
    out = [keras.ops.convert_to_numpy(features(x, training=False))[:, :1] for x, _ in ds]
    return np.concatenate(out).astype(np.float32)


def probe(params, prep: Prepared, config, args, seed: int) -> dict[str, Any]:
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
                "stopped_early": stopped_early(outcome.curve, args.ft_patience),
                "max_epochs": budget.validations, "seconds": time.perf_counter() - start}

    result = sweep(train_one, args.probe_lrs)
    result["seconds"] += feature_seconds
    result["feature_seconds"] = feature_seconds
    return {**result, **_sizes(config, prep.hparams, ["head"])}


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
    pixels = int(x.shape[1])
    own = (pixels + 1) * prep.num_classes
    return {"C": best["C"], "validation_accuracy": best["validation_accuracy"],
            "test_accuracy": float(best["model"].score(flat(prep.test[0]), prep.test[1])),
            "examples": len(y) * sum(r["iterations"] for r in runs),
            "converged": all(r["converged"] for r in runs),
            "sweep": {str(r["C"]): {"validation_accuracy": round(r["validation_accuracy"], 4),
                                    "iterations": r["iterations"], "converged": r["converged"]}
                      for r in runs},
            "pixels": pixels, "seconds": time.perf_counter() - start,
            "params": own, "head_params": own, "shared_params": 0, "own_params": own,
            "flops": 2 * pixels * prep.num_classes}
