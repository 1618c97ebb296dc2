"""The tf.data pipeline (docs/method.md §5.5): shapes, value ranges, determinism, resumption."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mu2net.errors import ConfigError
from mu2net.tasks.preprocess import make_dataset
from mu2net.tasks.suite import load_suite_task

FULL = {"ds_area_range_min": 0.5, "ds_aspect_ratio_range_min": 0.75, "ds_flip_left_right": True,
        "ds_brightness_delta": 0.1, "ds_contrast_delta": 0.1, "ds_saturation_delta": 0.1,
        "ds_hue_delta": 0.1, "ds_quality_delta": 0.2, "ds_image_size": 20, "lr": 0.1}


@pytest.fixture(scope="module")
def data():
    task = load_suite_task("mnist_5k")
    x, y = task.arrays("train")
    return x[:600], y[:600]


def _batches(ds, n=None):
    it = ds if n is None else ds.take(n)
    return [(x.numpy(), y.numpy()) for x, y in it]


def _train(data, **kw):
    args = dict(image_size=20, batch_size=32, training=True, seed=7, ds_hparams=FULL,
                repeat=True)
    args.update(kw)
    return make_dataset(*data, **args)


@pytest.mark.parametrize("hparams", [None, FULL], ids=["plain", "augmented"])
def test_training_batches_shapes_and_range(data, hparams):
    batches = _batches(_train(data, ds_hparams=hparams), 25)  # crosses an epoch boundary
    for x, y in batches:
        assert x.shape == (32, 20, 20, 3) and x.dtype == np.float32
        assert y.shape == (32,) and y.dtype == np.int32
        assert x.min() >= -1.0 and x.max() <= 1.0
    xs = np.concatenate([b[0] for b in batches])
    assert xs.min() == -1.0 and xs.max() > 0.9  # black background, bright strokes survive


def test_training_stream_is_deterministic_and_seeded(data):
    a = _batches(_train(data), 5)
    b = _batches(_train(data), 5)
    c = _batches(_train(data, seed=8), 5)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_start_step_resumes_the_same_stream(data):
    whole = _batches(_train(data), 30)
    resumed = _batches(_train(data, start_step=17), 13)  # 17 * 32 crosses epoch 0 -> 1
    for (xa, ya), (xb, yb) in zip(whole[17:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_each_epoch_visits_every_example_once_in_a_new_order(data):
    x, y = data
    ids = np.arange(len(y)) % 256  # tag every image by a pixel value
    tagged = x.copy()
    tagged[:, 0, 0, 0] = ids.astype(np.uint8)
    seen = []
    for xb, _ in _batches(make_dataset(tagged, y, image_size=28, batch_size=600, training=True,
                                       seed=1, repeat=True), 2):
        seen.append(np.round((xb[:, 0, 0, 0] + 1.0) * 127.5).astype(int))
    for epoch in seen:
        assert sorted(epoch) == sorted(ids.tolist())
    assert not np.array_equal(seen[0], seen[1])


def test_augmentation_changes_images_plain_training_only_resizes(data):
    x, y = data
    plain = _batches(make_dataset(x, y, image_size=28, batch_size=600, training=True, seed=3,
                                  ds_hparams={"ds_area_range_min": 1.0}), 1)[0]
    aug = _batches(make_dataset(x, y, image_size=28, batch_size=600, training=True, seed=3,
                                ds_hparams=FULL), 1)[0]
    np.testing.assert_array_equal(plain[1], aug[1])  # same order, same seed
    order = [int(np.flatnonzero((x.reshape(600, -1) == np.round(
        (img[..., 0] + 1) * 127.5).reshape(1, -1)).all(1))[0]) for img in plain[0][:5]]
    np.testing.assert_array_equal(y[order], plain[1][:5])  # plain images are exact copies
    assert np.abs(plain[0] - aug[0]).mean() > 0.05


def test_single_augmentations_each_act(data):
    x, y = data
    base = _batches(make_dataset(x, y, image_size=28, batch_size=64, training=True, seed=5), 1)
    for key, value in [("ds_quality_delta", 0.5), ("ds_flip_left_right", True),
                       ("ds_brightness_delta", 0.2), ("ds_contrast_delta", 0.2),
                       ("ds_area_range_min", 0.5)]:
        got = _batches(make_dataset(x, y, image_size=28, batch_size=64, training=True, seed=5,
                                    ds_hparams={key: value}), 1)
        assert not np.array_equal(base[0][0], got[0][0]), key
        np.testing.assert_array_equal(base[0][1], got[0][1])


def test_evaluation_keeps_order_and_partial_batch(data):
    x, y = data
    batches = _batches(make_dataset(x, y, image_size=16, batch_size=256, training=False,
                                    seed=0, ds_hparams=FULL))
    assert [len(b[1]) for b in batches] == [256, 256, 88]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    first = batches[0][0][0]
    assert first.shape == (16, 16, 3) and np.array_equal(first[..., 0], first[..., 2])
    assert first.min() >= -1.0 and first.max() <= 1.0


def test_invalid_inputs_are_refused(data):
    x, y = data
    with pytest.raises(ConfigError, match="ds_hue_delta"):
        make_dataset(x, y, image_size=8, batch_size=4, training=True, seed=0,
                     ds_hparams={"ds_hue_delta": 0.9})
    with pytest.raises(ConfigError, match="uint8"):
        make_dataset(x.astype(np.float32), y, image_size=8, batch_size=4, training=False, seed=0)
    with pytest.raises(ConfigError, match="fewer than batch_size"):
        make_dataset(x[:3], y[:3], image_size=8, batch_size=4, training=True, seed=0)


_CHILD = """
import hashlib, numpy as np
from mu2net.tasks.suite import load_suite_task
from mu2net.tasks.preprocess import make_dataset
FULL = %r
x, y = load_suite_task("mnist_5k").arrays("train")
ds = make_dataset(x[:600], y[:600], image_size=20, batch_size=32, training=True, seed=7,
                  ds_hparams=FULL, repeat=True)
h = hashlib.sha256()
for a, b in ds.take(4):
    h.update(a.numpy().tobytes()); h.update(b.numpy().tobytes())
print(h.hexdigest())
"""


@pytest.mark.slow  # a second TensorFlow start-up: 10-25 s on 2 shared cores
def test_stream_is_identical_in_a_fresh_process(data):
    h = hashlib.sha256()
    for a, b in _batches(_train(data), 4):
        h.update(a.tobytes())
        h.update(b.tobytes())
    out = subprocess.run([sys.executable, "-c", _CHILD % (FULL,)], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == h.hexdigest()
