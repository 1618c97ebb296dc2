"""Checks that refuse a task the method cannot use, before anything is trained or written.

Ingestion (`prepare.build_task`, `sources._read_imagefolder`) and the queue (`check_queue_spec`)
call these, so a bad task fails in seconds with one line naming the class, folder or spec and
how to fix it, instead of being committed with a misleading accuracy.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from mu2net.errors import SchemaError, TaskError

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
                    class_names: Sequence[str]) -> None:
    """Refuse a class without training images: the model can never predict it, yet its test
    images would silently cap the reported accuracy (2 of 3 classes learnable: 0.667)."""
    counts = class_counts(splits, len(class_names))
    for c, class_name in enumerate(class_names):
        if counts["train"][c]:
            continue
        elsewhere = {s: int(n[c]) for s, n in counts.items() if s != "train" and n[c]}
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


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _is_empty_dir(folder: pathlib.Path) -> bool:
    for _, _, files in os.walk(folder):
        if any(not f.startswith(".") for f in files):
            return False
    return True


def check_queue_spec(spec: str, mode: str = "onboard", *, local_store: bool = False) -> str:
    """Check a spec cheaply (no data is read) before it is queued; returns it stripped.

    A queued spec is read later by a scheduled run, so a typo would only show up as a failed
    run hours later. Checks: the mode; for `iterate`, a task name or a source spec; the spec's
    syntax and scheme (`parse_spec`), a derivable task name, a known demo task, a gs:// URI
    with a bucket, and, next to a local store, a local image folder that exists (relative paths
    are refused: a run does not share the caller's working directory).

    Raises:
      TaskError: naming the spec and the valid forms.
    """
    from mu2net.schema import check_mode, validate_task_name
    from mu2net.tasks.sources import parse_spec

    check_mode(mode)
    spec = spec.strip() if isinstance(spec, str) else spec
    if not isinstance(spec, str) or not spec:
        raise TaskError(f"task spec {spec!r} is empty: expected 'tfds:NAME[/CONFIG]', "
                        "'imagefolder:URI' or 'demo:NAME'")
    if mode == "iterate" and ":" not in spec:
        try:
            return validate_task_name(spec)
        except SchemaError as exc:
            raise TaskError(f"task {spec!r} cannot be iterated: {exc}") from None
    source = parse_spec(spec)
    source.default_name()
    if source.kind == "demo":
        from mu2net.tasks.suite import SUITE

        if source.target not in SUITE:
            raise TaskError(f"demo task {source.target!r} is unknown: valid {list(SUITE)}")
    elif source.kind == "imagefolder":
        _check_folder_uri(spec, source.target, local_store)
    return spec


def _check_folder_uri(spec: str, uri: str, local_store: bool) -> None:
    from mu2net.gcloud import parse_gs_uri

    if uri.startswith("gs://"):
        parse_gs_uri(uri, TaskError)
        return
    if "://" in uri and not uri.startswith("file://"):
        raise TaskError(f"task source {spec!r}: scheme {uri.split('://')[0]!r} is unknown: "
                        "expected a gs:// URI or an absolute local path")
    path = _local_path(uri)
    if not os.path.isabs(path):
        raise TaskError(f"task source {spec!r}: {path!r} is a relative path, which a queued "
                        "run cannot resolve: give an absolute path or a gs:// URI")
    if local_store and not os.path.isdir(path):
        raise TaskError(f"task source {spec!r}: {path!r} is not a folder: expected "
                        "ROOT/CLASS/IMAGE or ROOT/{train,validation,test}/CLASS/IMAGE")
