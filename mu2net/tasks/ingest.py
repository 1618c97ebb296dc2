"""Ingestion: a task source becomes a prepared task folder, written once.

A prepared task is `OUT_ROOT/NAME/` holding TFRecord shards per split (one `tf.train.Example`
per image: `image` = raw uint8 bytes of shape `image_shape`, `label` = int64) and
`task_info.json` (the `TaskInfo`: name, classes, class names, split sizes, image shape, content
hash, and the shard list). The folder is assembled under a temporary name and renamed into
place, so a reader never sees half a task. Ingesting a source whose content is already prepared
under that name is a no-op; different content under a taken name is refused. Any bad input
raises `TaskError` before anything is written.

`OUT_ROOT` is a local path (in a pipeline: the step's output artifact folder or a GCS FUSE
mount); sources may be on gs://.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import uuid
from typing import Any

import numpy as np

from mu2net.errors import TaskError
from mu2net.schema import SystemView, check_mode
from mu2net.task_info import SPLITS, TaskInfo
from mu2net.tasks.base import ArrayTask
from mu2net.tasks.prepare import shrink_to
from mu2net.tasks.sources import DEFAULT_MAX_BAD_FRACTION, load_source, parse_spec

FORMAT = "mu2net/prepared_task/v1"
INFO_FILE = "task_info.json"
SHARD_BYTES = 64 << 20


def prepared_dir(out_root: str | os.PathLike, name: str) -> pathlib.Path:
    """Where `ingest` puts task `name` under `out_root`."""
    return pathlib.Path(out_root) / name


def ingest(spec: str, out_root: str | os.PathLike, *, data_dir: str | None = None,
           name: str | None = None, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
           gcs_client: Any = None, max_image_size: int | None = None) -> TaskInfo:
    """Prepare a task source under `out_root/NAME` (see the module docstring) and return its
    `TaskInfo`. Safe to retry and to run twice: identical content is a no-op.
    `max_image_size`: images larger on a side are shrunk to it (`prepare.shrink_to`); the
    pipeline passes the largest `ds_image_size` its config can pick.

    Raises:
      TaskError: the source is invalid or unreadable, or NAME is already prepared with other
        content.
    """
    root = str(out_root)
    if root.startswith("gs://"):
        raise TaskError(f"out_root {root!r} is invalid: prepared tasks are written to a local "
                        "path (use the step's output folder or a /gcs/ FUSE mount)")
    source = parse_spec(spec)
    task = load_source(source, data_dir=data_dir, name=name,
                       max_bad_fraction=max_bad_fraction, gcs_client=gcs_client,
                       max_image_size=max_image_size)
    task = shrink_to(task, max_image_size)  # packaged tasks, and sizes stacked up
    target = prepared_dir(out_root, task.info.name)
    existing = _existing(target, task.info)
    if existing is not None:
        return existing
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{task.info.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        _write(task, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another writer renamed first (a retried or concurrent step): same content is fine.
            existing = _existing(target, task.info)
            if existing is None:
                raise
            return existing
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return task.info


def _existing(target: pathlib.Path, info: TaskInfo) -> TaskInfo | None:
    """The prepared info at `target` if it holds the same content; None if nothing is there."""
    if not target.exists():
        return None
    found = read_prepared_info(target)
    if found.content_hash != info.content_hash:
        raise TaskError(f"task {info.name!r} is already prepared in {str(target)!r} with other "
                        f"content (hash {found.content_hash[:12]}, new {info.content_hash[:12]}):"
                        " pass another name or out_root")
    return found


def _write(task: ArrayTask, folder: pathlib.Path) -> None:
    import tensorflow as tf

    folder.mkdir(parents=True)
    files: dict[str, list[str]] = {}
    for split in SPLITS:
        images, labels = task.arrays(split)
        shards = max(1, math.ceil(images.nbytes / SHARD_BYTES))
        bounds = np.linspace(0, len(labels), shards + 1).astype(int)
        names = []
        for i in range(shards):
            shard = f"{split}.tfrecord-{i:05d}-of-{shards:05d}"
            with tf.io.TFRecordWriter(str(folder / shard)) as writer:
                for j in range(bounds[i], bounds[i + 1]):
                    example = tf.train.Example(features=tf.train.Features(feature={
                        "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                            value=[images[j].tobytes()])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(
                            value=[int(labels[j])])),
                    }))
                    writer.write(example.SerializeToString())
            names.append(shard)
        files[split] = names
    doc = {"format": FORMAT, "task_info": task.info.to_dict(), "files": files,
           "record": {"image": "raw uint8 bytes, shape task_info.image_shape",
                      "label": "int64 in [0, num_classes)"}}
    (folder / INFO_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _read_doc(folder: pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(folder) / INFO_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TaskError(f"{str(folder)!r} is not a prepared task: {INFO_FILE} is missing") \
            from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise TaskError(f"cannot read {str(path)!r}: {exc}") from exc
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != FORMAT:
        raise TaskError(f"{str(path)!r} has format {found!r}: expected {FORMAT!r}")
    return doc


def read_prepared_info(folder: str | os.PathLike) -> TaskInfo:
    """The `TaskInfo` of a prepared task folder, without reading the images."""
    return TaskInfo.from_dict(_read_doc(pathlib.Path(folder))["task_info"])


def load_prepared(folder: str | os.PathLike) -> ArrayTask:
    """Load a prepared task folder into memory; the content hash is verified.

    Raises:
      TaskError: the folder is not a prepared task, or its data does not match its hash.
    """
    import tensorflow as tf

    folder = pathlib.Path(folder)
    doc = _read_doc(folder)
    info = TaskInfo.from_dict(doc["task_info"])
    shape = tuple(info.image_shape)
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}
    splits = {}
    for split in SPLITS:
        paths = [str(folder / name) for name in doc["files"][split]]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise TaskError(f"prepared task {info.name!r} lacks shard(s) {missing}")
        images, labels = [], []
        ds = tf.data.TFRecordDataset(paths).batch(8192).map(
            lambda x: tf.io.parse_example(x, spec))
        try:
            for batch in ds.as_numpy_iterator():
                flat = np.frombuffer(b"".join(batch["image"]), np.uint8)
                images.append(flat.reshape((len(batch["label"]),) + shape))
                labels.append(batch["label"])
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, ValueError) as exc:
            raise TaskError(f"prepared task {info.name!r} split {split!r} is corrupt: "
                            f"{str(exc).splitlines()[0]}") from exc
        splits[split] = (np.concatenate(images) if images else np.zeros((0,) + shape, np.uint8),
                         np.concatenate(labels) if labels else np.zeros((0,), np.int64))
    task = ArrayTask.from_arrays(info.name, splits, info.class_names, source=info.source,
                                 description=info.description)
    if task.info != info:
        raise TaskError(f"prepared task {info.name!r} in {str(folder)!r} does not match its "
                        f"metadata (content hash {task.info.content_hash[:12]}, recorded "
                        f"{info.content_hash[:12]}): the files were changed or truncated")
    return task


def check_onboarding(name: str, view: SystemView | None, mode: str = "onboard") -> None:
    """Refuse to onboard a task the system already has, unless `mode == 'iterate'` (an
    explicit request to re-evolve it); refuse to iterate a task it does not have.

    Raises:
      TaskError: with the reason and what to request instead.
    """
    check_mode(mode)
    onboarded = view is not None and name in view.paths
    if onboarded and mode == "onboard":
        raise TaskError(f"task {name!r} is already onboarded (system version {view.number}): "
                        "only an explicit iterate request (mode='iterate') re-evolves it")
    if not onboarded and mode == "iterate":
        where = f"system version {view.number}" if view is not None else "an empty store"
        raise TaskError(f"task {name!r} cannot be iterated: it is not onboarded in {where}; "
                        "use mode='onboard'")
