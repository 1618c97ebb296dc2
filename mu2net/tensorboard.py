"""A child's training curves as TensorBoard events, written beside its result artifact."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any


def finite_scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite scalar metrics (bools and lists dropped): what a KFP Metrics artifact and a
    TensorBoard scalar can hold."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[prefix + key] = float(value)
    return out


def write_tensorboard(metrics: Mapping[str, Any], logdir: str) -> int:
    """Write a child's training curves and final scalars as TensorBoard events; returns the
    number of scalar points written.

    Every list of numbers in `metrics` (`validation_curve`, `train_losses`: one value per
    validation) becomes a curve whose step is the number of examples trained when it was
    measured (`examples_trained` spread evenly over the validations); every scalar is written
    once, at the last step. TensorBoard reads the run's pipeline root recursively, so each
    child's events appear as one run named after its artifact path.

    The events are written with `tf.summary.write` and the scalars plugin's metadata (what
    `tensorboard.summary.scalar` writes), so the images need no `tensorboard` package; only
    the machine viewing them does.
    """
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def scalar(tag: str, value: float, step: int) -> None:
        tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=meta)

    os.makedirs(logdir, exist_ok=True)
    series = {k: [float(x) for x in v] for k, v in metrics.items()
              if isinstance(v, list | tuple) and v
              and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)}
    total = int(metrics.get("examples_trained") or 0)
    longest = max((len(v) for v in series.values()), default=1)
    written = 0
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for name, values in sorted(series.items()):
            for i, value in enumerate(values):
                step = total * (i + 1) // len(values) if total else i + 1
                if math.isfinite(value):
                    scalar(f"curve/{name}", value, step)
                    written += 1
        last = total or longest
        for name, value in sorted(finite_scalars(metrics).items()):
            scalar(f"final/{name}", value, last)
            written += 1
    writer.flush()
    writer.close()
    return written
