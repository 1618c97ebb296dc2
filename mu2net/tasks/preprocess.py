"""tf.data input pipelines (docs/method.md §5.5).

`make_dataset` turns a split's uint8 arrays into batches of float32 images in [-1, 1] at the
path's image size, 3 channels. Training applies the data hyperparameters (`ds_*`) in the
reference's order: JPEG quality -> grey to 3 channels -> inception crop -> flip -> brightness,
contrast, saturation, hue -> resize -> x/127.5 - 1, clipped. Evaluation only resizes and scales.
TensorFlow stays here, in the input pipeline; model code uses keras.ops only.

Determinism: the training stream is a pure function of (seed, element position). Epoch `e` visits
the examples in the order `stateless_shuffle(range(N), seed, e)` (a full permutation: the arrays
are in memory, so no buffer is needed to shuffle well), and element `g` of the stream is
augmented by stateless ops seeded with (seed, g). So the stream is identical across runs and
processes, and `start_step=k` yields exactly the batches from k on without computing those
before it (a resumed training run sees the same data as an uninterrupted one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mu2net.errors import ConfigError

DS_DEFAULTS: dict[str, Any] = {
    "ds_area_range_min": 1.0,
    "ds_aspect_ratio_range_min": 1.0,
    "ds_flip_left_right": False,
    "ds_brightness_delta": 0.0,
    "ds_contrast_delta": 0.0,
    "ds_saturation_delta": 0.0,
    "ds_hue_delta": 0.0,
    "ds_quality_delta": 0.0,
}
CACHE_LIMIT_BYTES = 1 << 30  # evaluation batches are cached when their floats fit in this


def _augmentation(ds_hparams: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data hparams that affect training, defaults filled in and ranges checked."""
    hp = dict(DS_DEFAULTS)
    for key, value in (ds_hparams or {}).items():
        if key in DS_DEFAULTS:
            hp[key] = value
    for key in ("ds_brightness_delta", "ds_contrast_delta", "ds_saturation_delta",
                "ds_quality_delta"):
        if not 0.0 <= float(hp[key]) < 1.0:
            raise ConfigError(f"{key}={hp[key]!r} is invalid: expected 0 <= x < 1")
    if not 0.0 <= float(hp["ds_hue_delta"]) <= 0.5:
        raise ConfigError(f"ds_hue_delta={hp['ds_hue_delta']!r} is invalid: expected 0..0.5")
    if not 0.0 < float(hp["ds_area_range_min"]) <= 1.0:
        raise ConfigError(f"ds_area_range_min={hp['ds_area_range_min']!r} is invalid: "
                          "expected 0 < x <= 1")
    if not 0.0 < float(hp["ds_aspect_ratio_range_min"]) <= 1.0:
        raise ConfigError(f"ds_aspect_ratio_range_min={hp['ds_aspect_ratio_range_min']!r} is "
                          "invalid: expected 0 < x <= 1")
    return hp


def make_dataset(images: np.ndarray, labels: np.ndarray, *, image_size: int, batch_size: int,
                 training: bool, seed: int, ds_hparams: Mapping[str, Any] | None = None,
                 repeat: bool = False, start_step: int = 0, cache: bool | None = None):
    """A `tf.data.Dataset` of (images [B, S, S, 3] float32 in [-1, 1], labels [B] int32).

    Args:
      images: uint8 [N, H, W, C], C = 1 or 3.
      labels: integer labels [N].
      image_size: S, the path's `ds_image_size` (resize, no aspect preservation).
      batch_size: B.
      training: augment with `ds_hparams`, visit examples in a seeded order, drop the last
        partial batch (fixed shapes: one trace). Evaluation keeps the order and the partial
        batch, so every example counts once.
      seed: determines the training stream (order and augmentation).
      ds_hparams: the path's hparams; only the `ds_*` keys are read.
      repeat: training only: an endless stream over epochs; otherwise one epoch.
      start_step: skip this many batches cheaply (resume). The result equals
        `make_dataset(...).skip(start_step)`.
      cache: cache evaluation batches (default: when their float32 size is under 1 GiB).
    """
    import tensorflow as tf

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 [N, H, W, 1|3], got {images.dtype} "
                          f"{images.shape}")
    if len(images) != len(labels):
        raise ConfigError(f"{len(images)} images but {len(labels)} labels")
    if batch_size < 1 or image_size < 1 or start_step < 0:
        raise ConfigError(f"batch_size={batch_size}, image_size={image_size}, "
                          f"start_step={start_step}: expected positive sizes, start_step >= 0")
    labels = np.asarray(labels).astype(np.int32)
    size = (image_size, image_size)

    def finish(batch):  # float [0, 1] -> [-1, 1]
        return tf.clip_by_value(batch * 2.0 - 1.0, -1.0, 1.0)

    if not training:
        ds = tf.data.Dataset.from_tensor_slices((images, labels))

        def prep_eval(x, y):
            x = tf.image.convert_image_dtype(x, tf.float32)
            if x.shape[-1] == 1:
                x = tf.image.grayscale_to_rgb(x)
            return finish(tf.image.resize(x, size)), y

        ds = ds.batch(batch_size).map(prep_eval, num_parallel_calls=tf.data.AUTOTUNE)
        if cache is None:
            cache = len(labels) * image_size * image_size * 3 * 4 <= CACHE_LIMIT_BYTES
        if cache:
            ds = ds.cache()
        return ds.skip(start_step).prefetch(tf.data.AUTOTUNE)

    hp = _augmentation(ds_hparams)
    n = len(labels)
    if n == 0:
        raise ConfigError("the training split is empty: nothing to train on")
    if n < batch_size and not repeat:
        raise ConfigError(f"training split has {n} examples, fewer than batch_size="
                          f"{batch_size}: no full batch (use repeat=True or a smaller batch)")
    base = tf.constant([int(seed) & 0x7FFFFFFF, (int(seed) >> 31) & 0x7FFFFFFF], tf.int64)
    order_seed = tf.random.experimental.stateless_fold_in(base, 1)
    aug_seed = tf.random.experimental.stateless_fold_in(base, 2)
    images_t = tf.constant(images)
    labels_t = tf.constant(labels)

    first = start_step * batch_size
    first_epoch, offset = divmod(first, n)

    def epoch_positions(epoch):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64),
            seed=tf.random.experimental.stateless_fold_in(order_seed, epoch))
        return tf.data.Dataset.from_tensor_slices((epoch * n + tf.range(n, dtype=tf.int64),
                                                   perm))

    epochs = (tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max) if repeat
              else tf.data.Dataset.range(first_epoch, 1))
    ds = epochs.flat_map(epoch_positions).skip(offset)

    quality = float(hp["ds_quality_delta"])
    area_min = float(hp["ds_area_range_min"])
    aspect_min = float(hp["ds_aspect_ratio_range_min"])
    flip = bool(hp["ds_flip_left_right"])
    brightness = float(hp["ds_brightness_delta"])
    contrast = float(hp["ds_contrast_delta"])
    saturation = float(hp["ds_saturation_delta"])
    hue = float(hp["ds_hue_delta"])
    crop = area_min < 1.0
    min_quality = int(round(100 * (1.0 - quality)))

    def augment(position, index):
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(aug_seed, position), num=8)
        x = tf.gather(images_t, index)
        y = tf.gather(labels_t, index)
        if quality > 0.0 and min_quality < 100:
            x = tf.image.stateless_random_jpeg_quality(x, min_quality, 100, seed=seeds[0])
        if x.shape[-1] == 1:
            x = tf.image.grayscale_to_rgb(x)
        if crop:
            begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(x), bounding_boxes=tf.zeros([0, 0, 4], tf.float32), seed=seeds[1],
                min_object_covered=0.0, aspect_ratio_range=(aspect_min, 1.0 / aspect_min),
                area_range=(area_min, 1.0), max_attempts=10,
                use_image_if_no_bounding_boxes=True)
            x = tf.slice(x, begin, crop_size)
        x = tf.image.convert_image_dtype(x, tf.float32)
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=seeds[2])
        if brightness > 0.0:
            x = tf.image.stateless_random_brightness(x, brightness, seed=seeds[3])
        if contrast > 0.0:
            x = tf.image.stateless_random_contrast(x, 1.0 - contrast, 1.0 + contrast,
                                                   seed=seeds[4])
        if saturation > 0.0:
            x = tf.image.stateless_random_saturation(x, 1.0 - saturation, 1.0 + saturation,
                                                     seed=seeds[5])
        if hue > 0.0:
            x = tf.image.stateless_random_hue(x, hue, seed=seeds[6])
        if crop:  # crops differ in size: resize each before batching
            x = tf.image.resize(x, size)
        return tf.clip_by_value(x, 0.0, 1.0), y

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    if not crop:
        ds = ds.map(lambda x, y: (tf.image.resize(x, size), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda x, y: (finish(x), y))
    return ds.prefetch(tf.data.AUTOTUNE)
