"""Task sources named by a spec string, loaded into a validated `ArrayTask`.

* `tfds:NAME[/CONFIG][:VERSION]` -- a TensorFlow Datasets dataset already prepared in
  `data_dir` (local or `gs://`; nothing can be downloaded at run time). Its `(image, label)`
  supervised keys (or `image` / `label` features) are read; `val` / `valid` count as validation.
* `imagefolder:URI` -- one sub-folder per class, optionally under `train/`, `validation/` (or
  `val/`), `test/`, on local disk or `gs://`. Named after the last path element.
* `demo:NAME` -- a task of the suite (`mu2net.tasks.suite`), real packaged data.

Missing validation / test splits are carved per docs/method.md §5.5. `gs://` locations are
mirrored to a temporary local folder through google-cloud-storage (see `locations`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import pathlib
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from mu2net.errors import SchemaError, TaskError
from mu2net.gcloud import default_client, parse_gs_uri
from mu2net.images import ImageRefused, decode_image
from mu2net.schema import TASK_NAME_RE, validate_task_name
from mu2net.tasks.base import ArrayTask
from mu2net.tasks.locations import mirror_gs_prefix
from mu2net.tasks.prepare import (
    build_task,
    carve_missing_splits,
    permutation,
    shrink_image,
    stack_images,
)
from mu2net.tasks.validate import check_class_folders, check_class_names

KINDS = ("tfds", "imagefolder", "demo")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test"}
DEFAULT_MAX_BAD_FRACTION = 0.01
_ORDER_SEED = 0  # image folders list files class by class: permute before carving splits


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec: `kind` is one of KINDS, `target` the rest of the string, `name` the task
    name given with it (`NAME=KIND:TARGET`, what `--name` writes), or ""."""

    kind: str
    target: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name + '=' if self.name else ''}{self.kind}:{self.target}"

    def default_name(self) -> str:
        """The task name when none is given: the dataset (and config), the folder's last path
        element, or the demo name (`task_name_from`)."""
        if self.name:
            return _checked_name(self.name)
        if self.kind == "tfds":
            raw = self.target.split(":")[0].replace("/", "_")
        elif self.kind == "imagefolder":
            raw = self.target.rstrip("/").rsplit("/", 1)[-1]
        else:
            raw = self.target
        return _checked_name(task_name_from(raw), f"derived from {str(self)!r}; pass --name")


NAME_HASH_CHARS = 8


def task_name_from(raw: str) -> str:
    """A task name for a dataset or folder name, distinct for distinct names.

    A name that is already a valid task name is kept. Any other is NFKD-normalised and folded
    to ASCII (accents dropped: `café` -> `cafe`), characters a task name cannot hold become
    '_', and, because that folding loses information (`café` and `cafë` both fold to `cafe`),
    `-` and the first 8 hex digits of the sha256 of the original name are appended
    (`cafe-1b0c5c8e`); the folded part is cut so the whole stays within 128 characters. Two
    different folder names therefore collide only if their hashes' first 32 bits do."""
    if TASK_NAME_RE.match(raw):
        return raw
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", folded).lstrip("_.-")
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:NAME_HASH_CHARS]
    keep = 127 - NAME_HASH_CHARS
    return f"{name[:keep]}-{digest}" if name else f"t{digest}"


def _checked_name(name: str, hint: str = "") -> str:
    try:
        return validate_task_name(name)
    except SchemaError as exc:
        raise TaskError(f"{exc}{' (' + hint + ')' if hint else ''}") from exc


def named_spec(spec: str, name: str) -> str:
    """`spec` with the task name `name` attached (`NAME=SPEC`), checked: what `--name` passes
    through the queue and the pipeline, so every later step derives the same task name."""
    source = parse_spec(spec)
    _checked_name(name, "--name")
    return str(dataclasses.replace(source, name=name))


def parse_spec(spec: str) -> SourceSpec:
    """Parse `tfds:NAME[/CONFIG]`, `imagefolder:URI` or `demo:NAME`, optionally preceded by
    `TASK=` to name the task (`cafe=imagefolder:/data/café`)."""
    name = ""
    if isinstance(spec, str) and "=" in spec.partition(":")[0]:
        name, _, spec = spec.partition("=")
        _checked_name(name, "the name before '=' in a task spec")
    kind, sep, target = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or kind not in KINDS:
        raise TaskError(f"task source {spec!r} is invalid: expected one of "
                        "'tfds:NAME[/CONFIG]', 'imagefolder:URI', 'demo:NAME'")
    if not target.strip():
        raise TaskError(f"task source {spec!r} names nothing after {kind + ':'!r}")
    if kind == "tfds" and not re.fullmatch(r"[a-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?",
                                           target):
        raise TaskError(f"task source {spec!r}: TFDS names look like 'name', 'name/config' or "
                        "'name/config:version' (lower-case letters, digits, '_')")
    return SourceSpec(kind, target, name)


def load_source(spec: str | SourceSpec, *, data_dir: str | None = None, name: str | None = None,
                max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
                gcs_client: Any = None, max_image_size: int | None = None) -> ArrayTask:
    """Load a source into a validated, content-hashed `ArrayTask`.

    Args:
      spec: the source spec (see the module docstring).
      data_dir: the TFDS data folder (local or gs://) for `tfds:` sources.
      name: the task name; default `SourceSpec.default_name()`.
      max_bad_fraction: image folders fail when more than this fraction of files cannot be read
        as images; fewer are skipped and counted in the description.
      gcs_client: a google-cloud-storage client for gs:// locations (default: `storage.Client()`).
      max_image_size: `tfds:` and image-folder images larger on a side are shrunk to it as
        they are decoded (`prepare.shrink_image`), so the native-size source is never held
        whole in memory; packaged demo tasks are returned as they are.

    Raises:
      TaskError: for every invalid, missing or unreadable source.
    """
    source = spec if isinstance(spec, SourceSpec) else parse_spec(spec)
    task_name = _checked_name(name) if name is not None else source.default_name()
    if source.kind == "demo":
        from mu2net.tasks.suite import load_suite_task

        task = load_suite_task(source.target)
        if task_name != task.info.name:
            task = ArrayTask(info=dataclasses.replace(task.info, name=task_name),
                             splits=task.splits)
        return task
    if source.kind == "tfds":
        return _load_tfds(source, task_name, data_dir, gcs_client, max_image_size)
    return _load_imagefolder(source, task_name, max_bad_fraction, gcs_client, max_image_size)


# === tfds: ==================================================================================


def _tfds_registered() -> set[str]:
    import tensorflow_datasets as tfds

    return set(tfds.list_builders(with_community_datasets=False))


def _unknown_tfds(name: str, candidates: set[str], data_dir: str) -> TaskError:
    close = difflib.get_close_matches(name, sorted(candidates), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return TaskError(f"TFDS dataset {name!r} is unknown: neither a registered TFDS builder nor a "
                     f"dataset folder in data_dir {data_dir!r}{hint}")


def _load_tfds(source: SourceSpec, task_name: str, data_dir: str | None,
               gcs_client: Any, max_image_size: int | None = None) -> ArrayTask:
    import tensorflow_datasets as tfds

    ds_name = source.target.split(":")[0].split("/")[0]
    shown_dir = data_dir or "~/tensorflow_datasets"
    with tempfile.TemporaryDirectory(prefix="mu2net-tfds-") as tmp:
        local_dir = data_dir
        if data_dir and data_dir.startswith("gs://"):
            local_dir = tmp
            local_names = _gs_dataset_folders(data_dir, gcs_client)
            if ds_name in local_names:
                mirror_gs_prefix(f"{data_dir.rstrip('/')}/{ds_name}",
                                 pathlib.Path(tmp) / ds_name, client=gcs_client)
        else:
            if data_dir and not pathlib.Path(data_dir).is_dir():
                raise TaskError(f"TFDS data_dir {data_dir!r} is not a readable folder")
            folder = pathlib.Path(data_dir) if data_dir else None
            local_names = ({p.name for p in folder.iterdir() if p.is_dir()}
                           if folder is not None else set())
        registered = _tfds_registered()
        if ds_name not in registered and ds_name not in local_names:
            raise _unknown_tfds(ds_name, registered | local_names, shown_dir)
        try:
            builder = tfds.builder(source.target, data_dir=local_dir)
        except (tfds.core.registered.DatasetNotFoundError, ValueError) as exc:
            raise TaskError(f"TFDS dataset {source.target!r} cannot be opened in data_dir "
                            f"{shown_dir!r}: {str(exc).splitlines()[0]}") from exc
        if not builder.is_prepared():
            raise TaskError(f"TFDS dataset {source.target!r} is not prepared in data_dir "
                            f"{shown_dir!r}: data cannot be downloaded here, so prepare it "
                            "there first (`tfds build` on a machine with access, then copy "
                            "the folder)")
        return _read_tfds_builder(builder, source, task_name, shown_dir, max_image_size)


def _gs_dataset_folders(data_dir: str, client: Any) -> set[str]:
    """Top-level folder names under a gs:// data_dir."""
    from google.api_core import exceptions as gexc


    bucket, prefix = parse_gs_uri(data_dir, TaskError)
    client = client or default_client(error=TaskError)
    list_prefix = f"{prefix}/" if prefix else ""
    try:
        blobs = client.list_blobs(bucket, prefix=list_prefix, delimiter="/")
        list(blobs)  # the prefixes are filled while iterating
    except (gexc.NotFound, gexc.Forbidden, gexc.Unauthorized) as exc:
        raise TaskError(f"cannot read TFDS data_dir {data_dir!r}: {exc}") from exc
    return {p[len(list_prefix):].strip("/") for p in blobs.prefixes}


def _read_tfds_builder(builder: Any, source: SourceSpec, task_name: str,
                       shown_dir: str, max_image_size: int | None = None) -> ArrayTask:
    import tensorflow_datasets as tfds

    info = builder.info
    keys = info.supervised_keys
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
    else:
        image_key, label_key = "image", "label"
    features = info.features
    if image_key not in features or label_key not in features:
        raise TaskError(f"TFDS dataset {source.target!r} has no image/label pair: features "
                        f"{sorted(features.keys())}, supervised keys {keys}")
    label_feature = features[label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
        raise TaskError(f"TFDS dataset {source.target!r}: {label_key!r} is "
                        f"{type(label_feature).__name__}, not a ClassLabel")
    if not isinstance(features[image_key], tfds.features.Image):
        raise TaskError(f"TFDS dataset {source.target!r}: {image_key!r} is "
                        f"{type(features[image_key]).__name__}, not an Image")
    class_names = list(label_feature.names)
    split_map: dict[str, str] = {}
    for split in info.splits.keys():
        ours = SPLIT_ALIASES.get(split)
        if ours and ours not in split_map:
            split_map[ours] = split
    if "train" not in split_map:
        raise TaskError(f"TFDS dataset {source.target!r} has no 'train' split: "
                        f"{sorted(info.splits.keys())}")
    raw: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
    shrunk = 0
    for ours, theirs in split_map.items():
        images, labels = [], []
        ds = builder.as_dataset(split=theirs, shuffle_files=False)
        for example in tfds.as_numpy(ds):
            image = shrink_image(example[image_key], max_image_size)
            shrunk += image is not example[image_key]
            images.append(image)
            labels.append(int(example[label_key]))
        raw[ours] = (images, np.asarray(labels, np.int64))
    splits, notes = _stack_splits(raw)
    notes = _shrink_note(shrunk, max_image_size) + notes
    brought = set(splits)
    splits, carved = carve_missing_splits(splits)
    notes += carved
    description = (f"TFDS {source.target} (version {info.version}) from {shown_dir}"
                   + (f"; {'; '.join(notes)}" if notes else ""))
    return build_task(task_name, splits, class_names, source=str(source),
                      description=description, carved=tuple(set(splits) - brought))


def _shrink_note(shrunk: int, max_image_size: int | None) -> list[str]:
    return ([f"{shrunk} images shrunk as decoded to at most {max_image_size} px a side (the "
             "largest image size training uses)"] if shrunk else [])


def _stack_splits(raw: dict[str, tuple[list[np.ndarray], np.ndarray]]
                  ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Stack every split's images together, so all splits share one size and channel count."""
    order = list(raw)
    everything = [img for s in order for img in raw[s][0]]
    stacked, note = stack_images(everything)
    out, start = {}, 0
    for s in order:
        n = len(raw[s][0])
        out[s] = (stacked[start:start + n], raw[s][1])
        start += n
    return out, [note] if note else []


# === imagefolder: ===========================================================================


def _load_imagefolder(source: SourceSpec, task_name: str, max_bad_fraction: float,
                      gcs_client: Any, max_image_size: int | None = None) -> ArrayTask:
    uri = source.target
    if uri.startswith("gs://"):
        with tempfile.TemporaryDirectory(prefix="mu2net-imagefolder-") as tmp:
            mirror_gs_prefix(uri, tmp, client=gcs_client)
            return _read_imagefolder(pathlib.Path(tmp), source, task_name, max_bad_fraction,
                                     max_image_size)
    root = pathlib.Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if not root.is_dir():
        raise TaskError(f"image folder {uri!r} is not a readable folder")
    return _read_imagefolder(root, source, task_name, max_bad_fraction, max_image_size)


def _visible(path: pathlib.Path) -> bool:
    return not path.name.startswith(".")


def _decode(path: pathlib.Path, target: str) -> np.ndarray | None:
    """uint8 [H, W] or [H, W, 3] (`mu2net.images.decode_image`, as `predict` reads files), or
    None when the file is not a readable image (skipped and counted). A readable image the
    system refuses (too small, no 8-bit form) stops ingestion, naming the file."""
    try:
        return decode_image(str(path))
    except ImageRefused as exc:
        raise TaskError(f"image folder {target!r}: {exc}") from None
    except TaskError:
        return None


def _read_imagefolder(root: pathlib.Path, source: SourceSpec, task_name: str,
                      max_bad_fraction: float, max_image_size: int | None = None) -> ArrayTask:
    if not 0.0 <= max_bad_fraction < 1.0:
        raise TaskError(f"max_bad_fraction={max_bad_fraction} is invalid: expected 0 <= x < 1")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    split_dirs = {SPLIT_ALIASES[p.name]: p for p in dirs if p.name in SPLIT_ALIASES}
    if split_dirs:
        others = [p.name for p in dirs if p.name not in SPLIT_ALIASES]
        if others:
            raise TaskError(f"image folder {source.target!r} mixes split folders "
                            f"{sorted(p.name for p in dirs if p.name in SPLIT_ALIASES)} with "
                            f"other folders {others}: put class folders under train/, "
                            "validation/, test/ or use no split folders")
        if "train" not in split_dirs:
            raise TaskError(f"image folder {source.target!r} has split folders "
                            f"{sorted(split_dirs)} but no train/")
    else:
        split_dirs = {"train": root}
    class_names = sorted({p.name for d in split_dirs.values() for p in d.iterdir()
                          if p.is_dir() and _visible(p)})
    if not class_names:
        raise TaskError(f"image folder {source.target!r} has no class folders: expected "
                        "ROOT/CLASS/IMAGE or ROOT/{train,validation,test}/CLASS/IMAGE")
    check_class_names(source.target, class_names)
    check_class_folders(source.target, root, split_dirs, class_names)
    index = {c: i for i, c in enumerate(class_names)}
    raw: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
    total, bad, shrunk = 0, [], 0
    for split in ("train", "validation", "test"):
        if split not in split_dirs:
            continue
        images, labels = [], []
        for class_dir in sorted(p for p in split_dirs[split].iterdir()
                                if p.is_dir() and _visible(p)):
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p)):
                total += 1
                array = _decode(path, source.target)
                if array is None:
                    bad.append(str(path.relative_to(root)))
                    continue
                image = shrink_image(array, max_image_size)
                shrunk += image is not array
                images.append(image)
                labels.append(index[class_dir.name])
        if not images:
            raise TaskError(f"image folder {source.target!r}: split {split!r} holds no "
                            "readable image")
        raw[split] = (images, np.asarray(labels, np.int64))
    if bad and len(bad) > max_bad_fraction * total:
        raise TaskError(f"image folder {source.target!r}: {len(bad)} of {total} files are not "
                        f"readable images (more than {max_bad_fraction:.1%}), e.g. {bad[:3]}")
    notes = [f"{len(bad)} of {total} files skipped as unreadable images"] if bad else []
    notes += _shrink_note(shrunk, max_image_size)
    splits, stack_notes = _stack_splits(raw)
    notes += stack_notes
    brought = set(splits)
    if "test" not in splits or "validation" not in splits:
        images, labels = splits["train"]
        order = permutation(len(labels), _ORDER_SEED)
        splits["train"] = (images[order], labels[order])
        notes.append(f"train files permuted with seed {_ORDER_SEED} before carving")
        splits, carved = carve_missing_splits(splits)
        notes += carved
    description = f"image folder {source.target}; {len(class_names)} classes" + (
        f"; {'; '.join(notes)}" if notes else "")
    return build_task(task_name, splits, class_names, source=str(source),
                      description=description, carved=tuple(set(splits) - brought))
