"""Checks that refuse a task the method cannot use, before anything is trained or written.

Ingestion (`prepare.build_task`, `sources._read_imagefolder`) calls these, so a bad task fails
in seconds with one line naming the class or folder and how to fix it, instead of being
committed with a misleading accuracy. This module sits below the sources it checks (it imports
none of `sources`, `suite` or `prepare`); the check of a queued spec, which needs the source
parser and the suite, is `mu2net.tasks.specs.check_queue_spec`.
"""

from __future__ import annotations

import os
import pathlib
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

from mu2net.errors import TaskError

# A validation split below this many images (or one per class, if more) cannot tell children
# apart: "child >= parent" on 5 images is a coin toss. Small suite tasks have hundreds.
MIN_VALIDATION_IMAGES = 10


def min_validation_images(num_classes: int) -> int:
    """The smallest validation split a task may have: max(10, one image per class)."""
    return max(MIN_VALIDATION_IMAGES, int(num_classes))


def class_counts(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], num_classes: int
                 ) -> dict[str, np.ndarray]:
    """Images per class in every split: {split: int array [num_classes]}."""
    return {s: np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]
            for s, (_, labels) in splits.items()}


def check_learnable(name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    class_names: Sequence[str], *, carved: Sequence[str] = ()) -> None:
    """Refuse a class without training images: the model can never predict it, yet its test
    images would silently cap the reported accuracy (2 of 3 classes learnable: 0.667).
    `carved`: splits carved automatically from train, which the user cannot edit."""
    counts = class_counts(splits, len(class_names))
    for c, class_name in enumerate(class_names):
        if counts["train"][c]:
            continue
        elsewhere = {s: int(n[c]) for s, n in counts.items() if s != "train" and n[c]}
        if elsewhere and set(elsewhere) <= set(carved):
            total = sum(elsewhere.values())
            raise TaskError(f"task {name!r}: class {class_name!r} has no training image: its "
                            f"{total} image(s) all went to the {' and '.join(sorted(elsewhere))} "
                            "split(s) carved automatically from the training images, so the "
                            f"model can never learn it: add more images of {class_name!r}")
        if elsewhere:
            where = ", ".join(f"{n} in {s}" for s, n in sorted(elsewhere.items()))
            raise TaskError(f"task {name!r}: class {class_name!r} has no training image "
                            f"({where} only), so the model can never learn it: add training "
                            f"images of {class_name!r} or remove it from the other splits")
        raise TaskError(f"task {name!r}: class {class_name!r} has no image in any split: add "
                        f"images of {class_name!r} or remove the class")


def check_validation_size(name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                          num_classes: int) -> None:
    """Refuse a validation split too small to compare children (see MIN_VALIDATION_IMAGES)."""
    have = len(splits["validation"][1])
    need = min_validation_images(num_classes)
    if have < need:
        train = len(splits["train"][1])
        raise TaskError(f"task {name!r}: the validation split has {have} image(s), fewer than "
                        f"the minimum {need} (max({MIN_VALIDATION_IMAGES}, one per class)); "
                        f"with {train} training images: add a validation/ folder (or split) "
                        "with more images, or more training images (validation is carved as "
                        "10-25% of train)")


def check_class_folders(target: str, root: pathlib.Path, split_dirs: Mapping[str, pathlib.Path],
                        class_names: Sequence[str]) -> None:
    """Refuse an image-folder class whose folders (in every split) hold no file, naming the
    folder: such a class is listed but can never be learned."""
    for class_name in class_names:
        folders = [d / class_name for d in split_dirs.values() if (d / class_name).is_dir()]
        if folders and all(_is_empty_dir(f) for f in folders):
            shown = str(folders[0].relative_to(root))
            raise TaskError(f"image folder {target!r}: class folder {shown!r} holds no image, "
                            f"so class {class_name!r} can never be learned: add images to it "
                            "or remove the folder")


def _is_empty_dir(folder: pathlib.Path) -> bool:
    for _, _, files in os.walk(folder):
        if any(not f.startswith(".") for f in files):
            return False
    return True


def check_class_names(target: str, class_names: Sequence[str]) -> None:
    """Refuse a class name holding a control character (a newline, a tab, an escape): the
    predicted label is printed one per line, and such a name splits or garbles it."""
    for name in class_names:
        bad = [ch for ch in name if unicodedata.category(ch).startswith("C")]
        if bad:
            raise TaskError(f"image folder {target!r}: class folder {name!r} holds control "
                            f"character(s) {''.join(sorted(set(bad)))!r}, which would garble "
                            "every label printed: rename the folder")
