"""Inference for one task: assemble its path from the system and run it (method.md §8).

Routing is by task only: task -> its published path -> a model of those components. The
architecture is read from the components' shapes and the path's hparams, so a published path
can be served without the config that trained it. Images are preprocessed exactly as for
validation (resize to the path's `ds_image_size`, scale to [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mu2net.blobs import BlobSource, ParamsCache
from mu2net.config import ArchitectureConfig
from mu2net.errors import SchemaError, TaskError
from mu2net.model import build_model
from mu2net.schema import ROOT_TASK, Path, SystemView


def arch_from_path(path: Path) -> ArchitectureConfig:
    """The ViT dimensions implied by a path's component shapes."""
    emb = path.component("embedding")
    if emb is None:
        raise SchemaError(f"path of task {path.task!r} has no embedding component")
    patch, _, channels, hidden = emb.shapes["kernel"]
    heads, mlp = 1, hidden
    blocks = [c for c in path.components if c.name.startswith("encoderblock_")]
    if blocks:
        heads = blocks[0].shapes["MultiHeadDotProductAttention_1/query/kernel"][1]
        mlp = blocks[0].shapes["MlpBlock_3/Dense_0/kernel"][1]
    layers = int(path.hparams["num_layers"])
    return ArchitectureConfig(image_size=int(path.hparams["ds_image_size"]), patch_size=patch,
                              hidden_size=hidden, num_layers=layers, num_heads=heads,
                              mlp_dim=mlp, max_layers=layers, channels=channels)


def _cache(blobs: BlobSource | ParamsCache) -> ParamsCache:
    return blobs if isinstance(blobs, ParamsCache) else ParamsCache(blobs)


def path_model(path: Path, blobs: BlobSource | ParamsCache):
    """A Keras model of the path with every component frozen."""
    cache = _cache(blobs)
    params: Mapping[str, Mapping[str, np.ndarray]] = {
        c.name: cache.params(c.blob) for c in path.components}
    return build_model(arch_from_path(path), path.hparams, params, trainable=())


def path_logits(path: Path, images: np.ndarray, blobs: BlobSource | ParamsCache, *,
                batch_size: int = 256) -> np.ndarray:
    """Logits [N, num_classes] (float32) of uint8 images [N, H, W, C] under the path."""
    from mu2net.tasks.preprocess import make_dataset

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise TaskError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    model = path_model(path, blobs)
    ds = make_dataset(images, np.zeros(len(images), np.int64),
                      image_size=int(path.hparams["ds_image_size"]), batch_size=batch_size,
                      training=False, seed=0)
    import keras

    outputs = [keras.ops.convert_to_numpy(model(x, training=False)) for x, _ in ds]
    if not outputs:
        return np.zeros((0, int(path.hparams["num_classes"])), np.float32)
    return np.concatenate(outputs).astype(np.float32)


def path_accuracy(path: Path, images: np.ndarray, labels: np.ndarray,
                  blobs: BlobSource | ParamsCache, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of the path on labelled images."""
    if len(labels) == 0:
        raise TaskError(f"no examples to measure the accuracy of task {path.task!r} on")
    logits = path_logits(path, images, blobs, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def predict(system: SystemView, task: str, images: np.ndarray, blobs: BlobSource, *,
            batch_size: int = 256) -> np.ndarray:
    """Logits [N, num_classes] of `task`'s published path in `system` (argmax for labels).
    `task` may be the root's owner name to run the root model."""
    if task == ROOT_TASK:
        path = system.root
    elif task in system.paths:
        path = system.paths[task]
    else:
        raise TaskError(f"task {task!r} is not in system version {system.number}; tasks: "
                        f"{sorted(system.paths)}")
    return path_logits(path, images, blobs, batch_size=batch_size)
