"""The in-memory form of a prepared task, which training and evaluation read.

Training reads `TaskData.arrays(split)`: uint8 images [N, H, W, C] (C = 1 or 3, one size per
task) and int64 labels [N]. Ingestion (`mu2net.tasks.ingest`) writes prepared tasks to disk and
loads them back as `ArrayTask`s; tests build small `ArrayTask`s directly with `from_arrays`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mu2net.errors import TaskError
from mu2net.task_info import SPLITS, TaskInfo


class TaskData(Protocol):
    info: TaskInfo

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [N, H, W, C], int64 labels [N]) of one split."""
        ...


def content_hash(splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 class_names: Sequence[str]) -> str:
    """sha256 over the class names and every split's shapes, pixels and labels, in split order."""
    digest = hashlib.sha256()
    digest.update("\x00".join(class_names).encode())
    for split in SPLITS:
        images, labels = splits[split]
        digest.update(f"{split}:{images.shape}:{labels.shape}".encode())
        digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ArrayTask:
    """A prepared task held in memory."""

    info: TaskInfo
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self.splits:
            raise TaskError(f"split {split!r} is invalid: valid {list(SPLITS)}")
        return self.splits[split]

    @classmethod
    def from_arrays(cls, name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    class_names: Sequence[str], source: str = "arrays",
                    description: str = "") -> ArrayTask:
        """Validate and wrap arrays; computes the content hash."""
        clean = {}
        for split in SPLITS:
            if split not in splits:
                raise TaskError(f"task {name!r} lacks split {split!r}")
            images, labels = splits[split]
            images = np.asarray(images)
            labels = np.asarray(labels, dtype=np.int64)
            if images.ndim == 3:
                images = images[..., None]
            if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
                raise TaskError(f"task {name!r} split {split!r}: images must be uint8 "
                                f"[N, H, W, 1|3], got {images.dtype} {images.shape}")
            if len(images) != len(labels):
                raise TaskError(f"task {name!r} split {split!r}: {len(images)} images but "
                                f"{len(labels)} labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise TaskError(f"task {name!r} split {split!r}: labels must be in "
                                f"[0, {len(class_names) - 1}], got [{labels.min()}, "
                                f"{labels.max()}]")
            clean[split] = (images, labels)
        shape = clean["train"][0].shape[1:]
        info = TaskInfo(name=name, source=source, num_classes=len(class_names),
                        class_names=tuple(class_names),
                        split_sizes={s: int(len(clean[s][1])) for s in SPLITS},
                        image_shape=tuple(int(x) for x in shape),
                        content_hash=content_hash(clean, class_names), description=description)
        return cls(info=info, splits=clean)
