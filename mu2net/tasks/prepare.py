"""From raw splits to a validated `ArrayTask`: default splits, image normalisation, checks.

Every source loader ends in `build_task`, so the checks (empty split, single class, labels out
of range, mixed image sizes) are the same for TFDS, image folders and packaged data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from mu2net.errors import TaskError
from mu2net.task_info import SPLITS
from mu2net.tasks.base import ArrayTask
from mu2net.tasks.validate import check_learnable, check_validation_size

SLICE_PERCENT = 5  # docs/method.md §5.5: a missing test split is train[0:5%]
# A carved validation split: MIN_VALIDATION_EXAMPLES clamped to [10%, 25%] of its pool (why: see
# `validation_size`).
MIN_VALIDATION_EXAMPLES = 500
MIN_VALIDATION_PERCENT = 10
MAX_VALIDATION_PERCENT = 25
Splits = Mapping[str, tuple[np.ndarray, np.ndarray]]


def percent_index(n: int, percent: int) -> int:
    """The example index of `percent`% of n, rounded half up (`train[:5%]` of 60,000 = 3,000)."""
    return (n * percent + 50) // 100


def validation_size(pool: int) -> int:
    """Examples to carve as validation from a pool of `pool` training examples:
    max(10%, min(500, 25%)), the 10% rounded up and the 25% rounded down.

    This departs from docs/method.md §5.5 (validation = train[5:10%]): the paper's datasets make 5%
    thousands of images, but here 5% is 72-200 images, a standard error of 2-3.5 points at 90%
    accuracy, so "child >= parent" on validation admits lucky children. 500 images (1.3 points)
    where the data allows, at least 10%, at most 25% so tiny tasks keep most of their training
    data.
    """
    low = -(-pool * MIN_VALIDATION_PERCENT // 100)
    high = pool * MAX_VALIDATION_PERCENT // 100
    return max(low, min(MIN_VALIDATION_EXAMPLES, high))


def carve_missing_splits(splits: Splits) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                                  list[str]]:
    """Fill missing test / validation splits from the front of train.

    A missing test split is train[0:5%] (docs/method.md §5.5). A missing validation split is the
    next `validation_size(pool)` examples, the pool being train less any carved test: with neither
    present and 10,000 examples, test = train[0:5%] (500), validation = train[500:1450] (950).
    Splits a source brings are kept. Deterministic: it slices, it never shuffles. Returns the
    new splits and one note per carved split.
    """
    if "train" not in splits:
        raise TaskError(f"no 'train' split: found {sorted(splits)}; a task needs training data")
    images, labels = splits["train"]
    out = {s: splits[s] for s in SPLITS if s in splits}
    notes = []
    start = 0
    if "test" not in splits:
        start = percent_index(len(labels), SLICE_PERCENT)
        out["test"] = (images[:start], labels[:start])
        notes.append(f"test = train[0:{SLICE_PERCENT}%]")
    if "validation" not in splits:
        pool = len(labels) - start
        end = start + validation_size(pool)
        out["validation"] = (images[start:end], labels[start:end])
        notes.append(f"validation = train[{start}:{end}] ({end - start} of the {pool} left: "
                     f"{MIN_VALIDATION_EXAMPLES} clamped to {MIN_VALIDATION_PERCENT}-"
                     f"{MAX_VALIDATION_PERCENT}%)")
        start = end
    out["train"] = (images[start:], labels[start:])
    return out, notes


def permutation(n: int, seed: int) -> np.ndarray:
    """A fixed permutation of range(n): for sources stored in class order."""
    return np.random.default_rng(seed).permutation(n)


def stratified_holdout(labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(holdout indices, rest indices): the first `per_class` examples of every class, in the
    given order, are held out; both index lists keep that order."""
    labels = np.asarray(labels)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        held[np.flatnonzero(labels == c)[:per_class]] = True
    return np.flatnonzero(held), np.flatnonzero(~held)


def stack_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, str]:
    """One uint8 [N, H, W, C] array from images of possibly mixed sizes and channels.

    Mixed sizes are resized (bilinear) to the most common size; when any image has colour,
    grey images are repeated to 3 channels. Returns the array and a note ('' if nothing changed).
    """
    from PIL import Image

    if not images:
        return np.zeros((0, 1, 1, 1), np.uint8), ""
    arrays = [a[..., None] if a.ndim == 2 else a for a in images]
    channels = 3 if any(a.shape[-1] == 3 for a in arrays) else 1
    sizes = Counter(a.shape[:2] for a in arrays)
    # Most common size; ties go to the larger image so no image is needlessly shrunk.
    (height, width), _ = max(sizes.items(), key=lambda kv: (kv[1], kv[0][0] * kv[0][1], kv[0]))
    out = np.empty((len(arrays), height, width, channels), np.uint8)
    resized = 0
    for i, a in enumerate(arrays):
        if a.shape[:2] != (height, width):
            mode = "L" if a.shape[-1] == 1 else "RGB"
            pil = Image.fromarray(a[..., 0] if mode == "L" else a, mode)
            a = np.asarray(pil.resize((width, height), Image.BILINEAR))
            a = a[..., None] if a.ndim == 2 else a
            resized += 1
        out[i] = a if a.shape[-1] == channels else np.repeat(a, channels, axis=-1)
    notes = []
    if resized:
        notes.append(f"{resized} of {len(arrays)} images of other sizes resized to "
                     f"{height}x{width}")
    return out, "; ".join(notes)


def build_task(name: str, splits: Splits, class_names: Sequence[str], *, source: str,
               description: str = "", carved: Sequence[str] = ()) -> ArrayTask:
    """Check the splits and wrap them as an `ArrayTask` (content-hashed).

    Raises `TaskError` for an empty split, fewer than two classes, labels outside
    [0, num_classes), splits whose image shapes differ, a training split with one class, a
    class without training images, or a validation split too small to compare children
    (`mu2net.tasks.validate`). `carved` names the splits carved from train (not the user's),
    so a message never asks to edit a split the user did not make.
    """
    if len(class_names) < 2:
        raise TaskError(f"task {name!r} has {len(class_names)} class(es) {list(class_names)}: "
                        "a classification task needs at least 2")
    if len(set(class_names)) != len(class_names):
        raise TaskError(f"task {name!r} repeats a class name: {list(class_names)}")
    for split in SPLITS:
        if split not in splits:
            raise TaskError(f"task {name!r} lacks split {split!r}: found {sorted(splits)}")
        images, labels = splits[split]
        if len(labels) == 0:
            raise TaskError(f"task {name!r} split {split!r} is empty")
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() >= len(class_names):
            bad = sorted({int(x) for x in labels if x < 0 or x >= len(class_names)})[:5]
            raise TaskError(f"task {name!r} split {split!r} has labels {bad} out of range: "
                            f"valid 0..{len(class_names) - 1} ({len(class_names)} classes)")
    shapes = {s: tuple(np.asarray(splits[s][0]).shape[1:]) for s in SPLITS}
    if len(set(shapes.values())) != 1:
        raise TaskError(f"task {name!r}: image shapes differ between splits {shapes}")
    present = np.unique(np.asarray(splits["train"][1]))
    if len(present) < 2:
        raise TaskError(f"task {name!r}: the train split holds a single class "
                        f"{class_names[int(present[0])]!r}; a task needs at least 2")
    check_learnable(name, splits, class_names, carved=carved)
    check_validation_size(name, splits, len(class_names))
    return ArrayTask.from_arrays(name, {s: splits[s] for s in SPLITS}, class_names,
                                 source=source, description=description)


def shrink_to(task: ArrayTask, max_size: int | None, *, batch: int = 256) -> ArrayTask:
    """The task with every image no larger than `max_size` on either side: the largest
    `ds_image_size` the config's search can pick, so prepared data is never bigger than what
    training reads. A side over `max_size` becomes `max_size`; a side at or under it is kept
    (nothing is enlarged, and a task already small enough is returned unchanged, same content
    hash). Training resizes every image to a square of its `ds_image_size` without keeping
    the aspect (`mu2net.tasks.preprocess`), with the same bilinear `tf.image.resize`, so
    squeezing the aspect here changes nothing it sees but one uint8 rounding: an image shrunk
    to S x S and resized to S by training is that rounding away from today's direct resize.
    (An inception crop is now taken of the shrunk image: the same crop at lower detail.)
    """
    height, width = (int(x) for x in task.info.image_shape[:2])
    if not max_size or (height <= max_size and width <= max_size):
        return task
    size = shrunk_size((height, width), max_size)
    splits = {}
    for split in SPLITS:
        images, labels = task.arrays(split)
        out = np.empty((len(images), *size, images.shape[-1]), np.uint8)
        for start in range(0, len(images), batch):
            out[start:start + batch] = _resize(images[start:start + batch], size)
        splits[split] = (out, labels)
    note = (f"images shrunk at ingest from {height}x{width} to {size[0]}x{size[1]} (the "
            f"largest image size training uses, {max_size})")
    description = "; ".join(x for x in (task.info.description, note) if x)
    return ArrayTask.from_arrays(task.info.name, splits, task.info.class_names,
                                 source=task.info.source, description=description)


def shrunk_size(height_width: tuple[int, int], max_size: int) -> tuple[int, int]:
    """(height, width) with each side capped at `max_size`."""
    return tuple(min(int(side), int(max_size)) for side in height_width)  # type: ignore[return-value]


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N, H, W, C] resized as training resizes (bilinear `tf.image.resize`), rounded."""
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(images, tf.float32), size).numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def shrink_image(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """One decoded image ([H, W] or [H, W, C] uint8) shrunk like `shrink_to`, as a source
    decodes it: a loader holds the shrunk images only, never the whole source at native size
    (a Flowers-102-sized task is 6 GB at 500 px, 1.2 GB at 224)."""
    height, width = image.shape[:2]
    if not max_size or (height <= max_size and width <= max_size):
        return image
    array = image[..., None] if image.ndim == 2 else image
    out = _resize(array[None], shrunk_size((height, width), max_size))[0]
    return out[..., 0] if image.ndim == 2 else out
