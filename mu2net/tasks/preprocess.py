"""tf.data input pipelines (method.md §5.5).

`make_dataset` turns a split's uint8 arrays into batches of float32 images in [-1, 1] at the
path's image size, 3 channels, with fixed batch shapes. Training applies the data
hyperparameters (`ds_*`); evaluation only resizes and scales. TensorFlow stays here, in the input
pipeline; model code uses keras.ops only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def make_dataset(images: np.ndarray, labels: np.ndarray, *, image_size: int, batch_size: int,
                 training: bool, seed: int, ds_hparams: Mapping[str, Any] | None = None,
                 repeat: bool = False):
    """A `tf.data.Dataset` of (images [B, S, S, 3] float32 in [-1, 1], labels [B] int32).

    Training: shuffled with `seed`, augmented with `ds_hparams`, last partial batch dropped
    (fixed shapes: one trace per shape). Evaluation: in order, last batch padded by repeating
    examples is NOT done -- the partial batch is kept, so every example counts once.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(min(len(labels), 10 * batch_size), seed=seed,
                        reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()

    def _prep(image, label):
        image = tf.cast(image, tf.float32)
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.image.resize(image, (image_size, image_size))
        image = tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)
        return image, label

    ds = ds.map(_prep, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)
