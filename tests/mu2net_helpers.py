"""Small real tasks and in-memory systems for the method tests (model, search, root).

Tasks come from scikit-learn's bundled digits (1,797 real 8x8 handwritten digits): `digits`
(all 10 classes) and `digits_low` (a class subset, digits 0-4, relabelled). A system is built
in memory (`SystemVersion` + paths) with its blobs in a `DirBlobs` folder, independent of the
model store.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from mu2net.blobs import DirBlobs
from mu2net.config import get_config
from mu2net.root import build_root
from mu2net.schema import Extension, Path, SystemVersion, SystemView
from mu2net.tasks.base import ArrayTask


def digits_task(name: str = "digits", classes: tuple[int, ...] | None = None,
                limit: int | None = None) -> ArrayTask:
    """sklearn digits as uint8 images (0..16 scaled to 0..255), split 60/20/20 by a fixed
    permutation; `classes` keeps a subset, relabelled 0..k-1."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.clip(data.images * 16, 0, 255).astype(np.uint8)
    labels = data.target.astype(np.int64)
    if classes is not None:
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
        labels = np.searchsorted(np.array(sorted(classes)), labels)
    order = np.random.default_rng(1234).permutation(len(labels))
    if limit:
        order = order[:limit]
    images, labels = images[order], labels[order]
    n = len(labels)
    a, b = int(n * 0.6), int(n * 0.8)
    splits = {"train": (images[:a], labels[:a]), "validation": (images[a:b], labels[a:b]),
              "test": (images[b:], labels[b:])}
    num = int(labels.max()) + 1
    return ArrayTask.from_arrays(name, splits, [str(i) for i in range(num)],
                                 source="sklearn:digits")


def root_system(config, blob_dir: str, seed: int = 0) -> tuple[SystemView, DirBlobs]:
    """System version 0 (a random-init root) with its blobs in `blob_dir`."""
    root, blobs = build_root(config, mode="random", seed=seed)
    store = DirBlobs(blob_dir)
    for data in blobs.values():
        store.put_blob(data)
    version = SystemVersion(number=0, parent=None, root=root.hash, tasks={})
    return SystemView(version=version, root=root, paths={}), store


def commit(system: SystemView, ext: Extension, store: DirBlobs) -> SystemView:
    """What the store's commit does, in memory: blobs in, the task's path replaced."""
    for digest, file_path in ext.blob_files.items():
        store.put_file(digest, file_path)
    paths = {**system.paths, ext.task: ext.path}
    version = SystemVersion(number=system.number + 1, parent=system.number,
                            root=system.root.hash, tasks={t: p.hash for t, p in paths.items()})
    return SystemView(version=version, root=system.root, paths=paths)


def tiny_config(**search_changes):
    config = get_config("testing")
    if search_changes:
        config = config.replace(search=dataclasses.replace(config.search, **search_changes))
    return config


def frozen_ids(path: Path) -> set[str]:
    return set(path.component_ids)


def probe_logits(config) -> np.ndarray:
    """Logits of the random root with a non-zero head on fixed inputs (backend comparisons)."""
    import keras

    from mu2net.model import build_model
    from mu2net.root import random_root_params

    params, hparams = random_root_params(config, seed=0, num_classes=10)
    rng = np.random.default_rng(5)
    params["head"] = {"kernel": rng.normal(size=params["head"]["kernel"].shape).astype(np.float32),
                      "bias": rng.normal(size=10).astype(np.float32)}
    model = build_model(config.architecture, hparams, params)
    size = config.architecture.image_size
    x = rng.uniform(-1, 1, (3, size, size, 3)).astype(np.float32)
    return keras.ops.convert_to_numpy(model(x, training=False))


def reference_block(x, w):
    """vit_jax's Encoder1DBlock in numpy (pre-LN attention + MLP, tanh GELU)."""
    def ln(v, s, b):
        mean = v.mean(-1, keepdims=True)
        var = ((v - mean) ** 2).mean(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + 1e-6) * s + b

    def gelu(v):
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))

    a = "MultiHeadDotProductAttention_1/"
    y = ln(x, w["LayerNorm_0/scale"], w["LayerNorm_0/bias"])
    q, k, v = (np.einsum("btd,dhk->bthk", y, w[a + n + "/kernel"]) + w[a + n + "/bias"]
               for n in ("query", "key", "value"))
    logit = np.einsum("bqhk,bshk->bhqs", q / np.sqrt(q.shape[-1]), k)
    att = np.exp(logit - logit.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", att, v)
    x = x + np.einsum("bqhk,hkd->bqd", o, w[a + "out/kernel"]) + w[a + "out/bias"]
    y = ln(x, w["LayerNorm_2/scale"], w["LayerNorm_2/bias"])
    y = gelu(y @ w["MlpBlock_3/Dense_0/kernel"] + w["MlpBlock_3/Dense_0/bias"])
    return x + y @ w["MlpBlock_3/Dense_1/kernel"] + w["MlpBlock_3/Dense_1/bias"]


def random_root_store(folder, config, seed: int = 0):
    """A local store in `folder/store` holding version 0: a seeded random root of `config`."""
    from mu2net.store import open_store

    store = open_store(os.path.join(folder, "store"))
    root, blobs = build_root(config, "random", seed=seed)
    store.init(root, DirBlobs(str(folder)).put_all(blobs), {"source": "test"})
    return store


def random_image_batches(n: int = 64, size: int = 16, classes: int = 5, batch: int = 16):
    """(endless training batches, one-pass validation batches) of the same seeded random
    images and labels: for training-loop tests that need data, not a task."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return (tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch),
            tf.data.Dataset.from_tensor_slices((x, y)).batch(2 * batch))


def write_tfds_dataset(data_dir: str | os.PathLike, name: str, task: ArrayTask) -> str:
    """Write `task`'s three splits as a real TFDS dataset `name` (version 1.0.0) under
    `data_dir`, offline, with TFDS itself (`store_as_tfds_dataset`); returns the folder.
    `tfds:NAME` then loads it with `data_dir` set and fails without it."""
    import tensorflow_datasets as tfds

    shape = tuple(int(x) for x in task.info.image_shape)
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=shape),
        "label": tfds.features.ClassLabel(names=list(task.info.class_names))})

    def examples(split: str):
        images, labels = task.arrays(split)
        for i in range(len(labels)):
            yield f"{split}-{i:05d}", {"image": images[i], "label": int(labels[i])}

    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, data_dir=str(data_dir),
        split_datasets={split: examples(split) for split in ("train", "validation", "test")})
    return str(data_dir)


def commit_root_path(store, task: str, accuracy: float, run_id: str, *, config,
                     code_version: str = ""):
    """Publish `task` as a path of the root's frozen components (no training), a distinct path
    per accuracy (its hparams carry it): an unchanged path would publish nothing."""
    root = store.load_system().root
    path = Path(task=task, components=root.components,
                hparams={**root.hparams, "opt_lr": accuracy},
                method_version=config.method_version, parent=root.hash, parent_task="_root",
                metrics={"validation_accuracy": accuracy, "test_accuracy": accuracy,
                         "num_cycles": 1})
    return store.commit(Extension(task=task, base_version=store.head(), path=path,
                                  blob_files={}, run_id=run_id, config_name=config.name,
                                  code_version=code_version, mode="onboard"))
