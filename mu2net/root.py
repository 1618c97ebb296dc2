"""The root model: system version 0 (docs/method.md §2.1).

Three ways to make it, each returning the root `Path` (owner `schema.ROOT_TASK`, every
component created by the root) and its blobs `{sha256: npz bytes}` for `ModelStore.init`:

* `build_root(config, mode="random")`: a configurable ViT from seeded random init. For tests
  only: the method starts from a pretrained root.
* `build_root(config, mode="npz", npz_path=...)`: import a vit_jax / big_vision AugReg `.npz`
  checkpoint (keys like `Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel`), keeping the
  first `num_layers` blocks and resizing the position embeddings to the config's image size.
* `pretrain_root(config, task)`: random init, then all components trained on one task (the
  demos' stand-in for ImageNet-21k pretraining; uses Adam, as the AugReg roots were).

A pretrained root is cached once per recipe by `mu2net.root_cache` (`cached_pretrained_root`);
`PRETRAIN_RECIPE` below enters its key.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mu2net.blobs import MemoryBlobs
from mu2net.config import Config
from mu2net.errors import SchemaError, TaskError
from mu2net.model import (
    build_model,
    component_names,
    component_shapes,
    grid_size,
    init_component,
    resize_posembed,
)
from mu2net.mutations import default_hparams
from mu2net.params_io import param_shapes, params_to_npz_bytes, sha256_bytes
from mu2net.predict import path_accuracy
from mu2net.schema import ROOT_TASK, Component, Path
from mu2net.search_state import derive_seed
from mu2net.tasks.base import TaskData

ROOT_MODES = ("random", "npz")
DEFAULT_ROOT_CLASSES = 10
# Bump when `pretrain_root` changes how it trains in a way its arguments do not show (data
# augmentation, optimizer, init): every cached root then gets a new key and is rebuilt.
PRETRAIN_RECIPE = 1


def root_hparams(config: Config, num_classes: int) -> dict[str, Any]:
    """The root path's hparams: the config's defaults at the root's depth and image size."""
    arch = config.architecture
    hparams = default_hparams(config.hparams)
    hparams.update(num_layers=arch.num_layers, ds_image_size=arch.image_size,
                   num_classes=int(num_classes), adapter_layers=[])
    return hparams


def root_from_params(config: Config, params: Mapping[str, Mapping[str, np.ndarray]],
                     hparams: Mapping[str, Any], metrics: Mapping[str, Any] | None = None
                     ) -> tuple[Path, dict[str, bytes]]:
    """The root path of given component parameters, and its blobs."""
    blobs: dict[str, bytes] = {}
    components = []
    for name in component_names(hparams):
        expected = component_shapes(name, config.architecture, hparams)
        got = param_shapes(params[name])
        if got != expected:
            raise SchemaError(f"root component {name!r} has shapes {got}, expected {expected}")
        data = params_to_npz_bytes(params[name])
        digest = sha256_bytes(data)
        blobs[digest] = data
        components.append(Component(id=Component.make_id(ROOT_TASK, name, digest), name=name,
                                    creator=ROOT_TASK, shapes=got, blob=digest))
    path = Path(task=ROOT_TASK, components=tuple(components), hparams=dict(hparams),
                method_version=config.method_version, metrics=dict(metrics or {}))
    return path, blobs


def random_root_params(config: Config, *, seed: int, num_classes: int
                       ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    hparams = root_hparams(config, num_classes)
    params = {name: init_component(name, config.architecture, hparams,
                                   derive_seed(seed, ROOT_TASK, "init", name))
              for name in component_names(hparams)}
    return params, hparams


# === AugReg .npz import =====================================================================


def import_augreg_npz(source: str | bytes, config: Config
                      ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Component params and root hparams from a vit_jax / big_vision `.npz` checkpoint.

    The checkpoint's width, patch size, heads and MLP size must match the config's
    architecture; its first `config.architecture.num_layers` blocks are kept (as mu2Net caps
    ViT-Ti to 3 layers); position embeddings are resized to the config's image size. Keys the
    layout does not define (e.g. `pre_logits/*`) are an error rather than silently dropped.
    """
    data = source if isinstance(source, bytes) else _read(source)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        flat = {k: np.asarray(npz[k], np.float32) for k in npz.files}
    arch = config.architecture
    if "head/kernel" not in flat:
        raise SchemaError("checkpoint has no 'head/kernel': not a vit_jax classifier layout")
    num_classes = int(flat["head/kernel"].shape[1])
    hparams = root_hparams(config, num_classes)
    params: dict[str, dict[str, np.ndarray]] = {}
    available = 0
    unknown = []
    for key, value in flat.items():
        parts = key.split("/")
        if parts[0] == "Transformer" and len(parts) >= 3:
            name, weight = parts[1], "/".join(parts[2:])
        elif parts[0] in ("cls", "embedding", "head") and len(parts) <= 2:
            name, weight = parts[0], parts[-1]
        else:
            unknown.append(key)
            continue
        if name.startswith("encoderblock_"):
            available = max(available, int(name.split("_")[1]) + 1)
            if int(name.split("_")[1]) >= arch.num_layers:
                continue
        elif name not in ("cls", "embedding", "posembed_input", "encoder_norm", "head"):
            unknown.append(key)
            continue
        params.setdefault(name, {})[weight] = value
    if unknown:
        raise SchemaError(f"checkpoint keys {sorted(unknown)[:5]} are not part of the vit_jax "
                          "ViT layout (cls, embedding/*, head/*, Transformer/posembed_input/*, "
                          "Transformer/encoderblock_<i>/*, Transformer/encoder_norm/*)")
    if available < arch.num_layers:
        raise SchemaError(f"checkpoint has {available} encoder blocks but the config's root "
                          f"needs num_layers={arch.num_layers}")
    if "posembed_input" in params:
        grid = grid_size(arch.image_size, arch.patch_size)
        params["posembed_input"]["pos_embedding"] = resize_posembed(
            params["posembed_input"]["pos_embedding"], grid)
    for name in component_names(hparams):
        if name not in params:
            raise SchemaError(f"checkpoint lacks component {name!r}")
        expected = component_shapes(name, arch, hparams)
        got = param_shapes(params[name])
        if got != expected:
            raise SchemaError(f"checkpoint component {name!r} has shapes {got}, but config "
                              f"{config.name!r} expects {expected} (hidden_size="
                              f"{arch.hidden_size}, patch_size={arch.patch_size}, num_heads="
                              f"{arch.num_heads}, mlp_dim={arch.mlp_dim})")
    return params, hparams


def _read(file_path: str) -> bytes:
    with open(file_path, "rb") as fh:
        return fh.read()


def build_root(config: Config, mode: str = "random", *, seed: int = 0,
               npz_path: str | None = None, num_classes: int = DEFAULT_ROOT_CLASSES
               ) -> tuple[Path, dict[str, bytes]]:
    """The root path and its blobs `{sha256: npz bytes}` (what `mu2net init` stores).

    Args:
      mode: `random` (seeded init; tests only) or `npz` (an AugReg-layout checkpoint).
      npz_path: the checkpoint, for mode `npz`.
      num_classes: the random root's head size (a root head is never reused by a task).
    """
    if mode == "random":
        params, hparams = random_root_params(config, seed=seed, num_classes=num_classes)
        return root_from_params(config, params, hparams, {"source": f"random_init:{seed}"})
    if mode == "npz":
        if not npz_path:
            raise SchemaError("build_root(mode='npz') needs npz_path")
        params, hparams = import_augreg_npz(npz_path, config)
        return root_from_params(config, params, hparams, {"source": f"npz:{npz_path}"})
    raise SchemaError(f"root mode {mode!r} is invalid: expected one of {list(ROOT_MODES)}")


# === Pretraining ============================================================================


def pretrain_root(config: Config, task: TaskData, *, seed: int = 0,
                  examples: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, warmup_ratio: float = 0.05, validations: int = 10,
                  execution: str = "auto") -> tuple[Path, dict[str, bytes], dict[str, Any]]:
    """A root pretrained on `task`: random init, then every component trained with Adam
    (AdamW when `config.root_pretrain_weight_decay` > 0; warmup + cosine to lr/1000,
    global-norm clip 1.0) on data augmented with `config.root_pretrain_augment` (as the AugReg
    roots were), keeping the best of `validations` checkpoints. `examples`, `batch_size` and
    `lr` default to the config's recipe (`root_pretrain_examples`, `root_pretrain_batch_size`
    or else the search's batch, `root_pretrain_lr`). The root's head has the task's classes;
    tasks never reuse it.

    Returns (root path, blobs, metrics incl. validation/test accuracy and seconds).
    """
    import keras

    from mu2net.tasks.preprocess import make_dataset
    from mu2net.training import Budget, lr_schedule, train_model, validation_subset

    info = task.info
    params, hparams = random_root_params(config, seed=seed, num_classes=info.num_classes)
    model = build_model(config.architecture, hparams, params, trainable=list(params))
    images, labels = task.arrays("train")
    if len(labels) == 0:
        raise TaskError(f"task {info.name!r} has no training examples to pretrain on")
    batch = min(batch_size or config.root_pretrain_batch_size or config.search.batch_size,
                len(labels))
    lr = config.root_pretrain_lr if lr is None else lr
    total = examples or config.root_pretrain_examples
    steps = max(validations, math.ceil(total / batch))
    per_val = math.ceil(steps / validations)
    budget = Budget(batch, per_val, validations)
    size = config.architecture.image_size
    train_ds = make_dataset(images, labels, image_size=size, batch_size=batch, training=True,
                            seed=derive_seed(seed, ROOT_TASK, "pretrain_data"), repeat=True,
                            ds_hparams=dict(config.root_pretrain_augment))
    val_images, val_labels = validation_subset(info.name, *task.arrays("validation"),
                                               config.search.validation_examples)
    val_ds = make_dataset(val_images, val_labels, image_size=size, batch_size=batch,
                          training=False, seed=0)
    schedule = lr_schedule(lr, warmup_ratio, budget.total_steps, config.search.min_lr_ratio)
    if config.root_pretrain_weight_decay > 0:
        optimizer = keras.optimizers.AdamW(schedule,
                                           weight_decay=config.root_pretrain_weight_decay,
                                           global_clipnorm=config.search.grad_clip_norm)
    else:
        optimizer = keras.optimizers.Adam(schedule, global_clipnorm=config.search.grad_clip_norm)
    start = time.perf_counter()
    outcome = train_model(model, train_ds, val_ds, budget=budget, optimizer=optimizer,
                          trainable=list(params), score_fn=lambda q: q,
                          best_start=-math.inf, execution=execution)
    seconds = time.perf_counter() - start
    for name, layer_params in outcome.params.items():
        params[name] = layer_params
    metrics = {"source": f"pretrained:{info.name}", "pretrain_task": info.name,
               "pretrain_task_hash": info.content_hash,
               "validation_accuracy": outcome.quality, "validation_curve": outcome.curve,
               "examples_trained": outcome.examples, "train_seconds": round(seconds, 1)}
    path, blobs = root_from_params(config, params, hparams, metrics)
    test_images, test_labels = task.arrays("test")
    if len(test_labels):
        metrics["test_accuracy"] = path_accuracy(path, test_images, test_labels,
                                                 MemoryBlobs(blobs))
        path, blobs = root_from_params(config, params, hparams, metrics)
    del model
    return path, blobs, dict(metrics)
