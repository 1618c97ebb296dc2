"""Inference for one task: assemble its path from the system and run it (docs/method.md §8).

Routing is by task only: task -> its published path -> a model of those components. The
architecture is read from the components' shapes and the path's hparams, so a published path
can be served without the config that trained it. Images are preprocessed exactly as for
validation (resize to the path's `ds_image_size`, scale to [-1, 1]), each image on its own, so a
file's label never depends on the other files classified with it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

import numpy as np

from mu2net.blobs import BlobSource, ParamsCache
from mu2net.config import ArchitectureConfig
from mu2net.errors import ConfigError, SchemaError, TaskError
from mu2net.images import MAX_IMAGE_PIXELS, decode_image  # noqa: F401 (MAX_IMAGE_PIXELS: API)
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


def confusion_matrix(labels: Sequence[int], predicted: Sequence[int], num_classes: int
                     ) -> list[list[int]]:
    """Counts by (true class, predicted class)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix.tolist()


def evaluate_test_split(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int,
                    blobs: BlobSource | ParamsCache, *, batch_size: int = 256
                    ) -> tuple[float, list[list[int]]]:
    """(top-1 accuracy, confusion matrix) from one inference pass over labelled images."""
    if len(labels) == 0:
        raise TaskError(f"no examples to measure the accuracy of task {path.task!r} on")
    predicted = np.argmax(path_logits(path, images, blobs, batch_size=batch_size), axis=1)
    accuracy = float(np.mean(predicted == np.asarray(labels)))
    return accuracy, confusion_matrix(labels, predicted, num_classes)


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


# === image files ============================================================================

EXPORT_FORMATS = ("keras", "savedmodel")


def read_image(file_path: str) -> np.ndarray:
    """uint8 [H, W] (grey) or [H, W, 3] of an image file, decoded exactly as ingestion decodes
    training images (`mu2net.images.decode_image`: 16-bit images scaled, tiny ones refused).

    Raises:
      TaskError: the file is missing, not an image, too small or too large.
    """
    return decode_image(file_path)


def eval_input(image: np.ndarray, image_size: int) -> np.ndarray:
    """float32 [S, S, 3] in [-1, 1]: the evaluation preprocessing of one image, alone."""
    from mu2net.tasks.preprocess import make_dataset

    array = image[..., None] if image.ndim == 2 else image
    ds = make_dataset(array[None], np.zeros(1, np.int64), image_size=image_size, batch_size=1,
                      training=False, seed=0, cache=False)
    (batch, _), = ds.as_numpy_iterator()
    return batch[0]


def files_logits(path: Path, files: Sequence[str], blobs: BlobSource | ParamsCache, *,
                 batch_size: int = 256) -> np.ndarray:
    """Logits [N, num_classes] of image files under the path, each file resized on its own to
    the path's input size (never to a size shared with the other files)."""
    size = int(path.hparams["ds_image_size"])
    images = [read_image(f) for f in files]  # every file is checked before TF is loaded
    import keras

    inputs = np.stack([eval_input(image, size) for image in images])
    model = path_model(path, blobs)
    outputs = [keras.ops.convert_to_numpy(model(inputs[i:i + batch_size], training=False))
               for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def export_targets(out: str, task: str, fmt: str, *, force: bool = False) -> tuple[str, str]:
    """(model target, metadata file) of an export under folder `out`, checked before anything
    is read or written: `out` must be a folder (or not exist yet), and an earlier export of the
    task is replaced only with `force`.

    Raises:
      ConfigError: `out` is empty or a file, the format is unknown, or an export exists and
        `force` is not set.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is invalid: valid {list(EXPORT_FORMATS)}")
    if not out:
        raise ConfigError("--out is empty: give the folder to export into")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out!r} is a file: export writes a folder ({task}.keras or "
                          f"{task}_savedmodel/, and {task}.json); give a folder path")
    target = os.path.join(out, f"{task}.keras" if fmt == "keras" else f"{task}_savedmodel")
    meta = os.path.join(out, f"{task}.json")
    existing = [os.path.basename(p) for p in (target, meta) if os.path.lexists(p)]
    if existing and not force:
        raise ConfigError(f"an export of task {task!r} already exists in {out!r} "
                          f"({', '.join(existing)}): pass --force to replace it, or choose "
                          "another --out")
    return target, meta


def write_export(model, target: str, meta_path: str, meta: Mapping[str, object]) -> None:
    """Save `model` to `target` (`.keras` file or SavedModel folder) and `meta` as JSON,
    replacing an earlier export (a stale SavedModel folder is removed first, so no file of the
    old model survives)."""
    import json

    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    if target.endswith(".keras"):
        model.save(target)
    else:
        model.export(target, format="tf_saved_model", verbose=False)  # no endpoint dump
    with open(meta_path, "w") as fh:
        json.dump(dict(meta), fh, indent=2)
