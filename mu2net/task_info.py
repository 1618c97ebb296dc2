"""The prepared-task document (`TaskInfo`) and its splits: what ingestion writes beside a
task's images and what training, the search and the store read about a task.

It is a document of the shared vocabulary (`mu2net.schema`: same `schema` tag, same field
checks), kept in its own module because it describes data, not the system's model: the task
readers depend on it without the component / path / version documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mu2net.errors import SchemaError
from mu2net.schema import _check_hash, _check_tag, _get, _schema_tag, validate_task_name

SPLITS = ("train", "validation", "test")  # every prepared task has these, in this order


@dataclass(frozen=True)
class TaskInfo:
    """A prepared task: what training reads. `content_hash` identifies the prepared data."""

    name: str
    source: str
    num_classes: int
    class_names: tuple[str, ...]
    split_sizes: Mapping[str, int]
    image_shape: tuple[int, int, int]
    content_hash: str
    description: str = ""

    def __post_init__(self) -> None:
        validate_task_name(self.name)
        if self.num_classes < 2:
            raise SchemaError(f"task_info.num_classes={self.num_classes} is invalid: a "
                              "classification task needs at least 2 classes")
        if len(self.class_names) != self.num_classes:
            raise SchemaError(f"task_info.class_names has {len(self.class_names)} names for "
                              f"num_classes={self.num_classes}")
        if set(self.split_sizes) != set(SPLITS):
            raise SchemaError(f"task_info.split_sizes keys {sorted(self.split_sizes)} are "
                              f"invalid: expected {list(SPLITS)}")
        _check_hash("task_info", "content_hash", self.content_hash)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": _schema_tag("task_info"), "name": self.name, "source": self.source,
                "num_classes": self.num_classes, "class_names": list(self.class_names),
                "split_sizes": dict(self.split_sizes), "image_shape": list(self.image_shape),
                "content_hash": self.content_hash, "description": self.description}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskInfo:
        _check_tag(d, "task_info")
        sizes = _get(d, "task_info", "split_sizes", dict)
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SchemaError(f"task_info.split_sizes[{key!r}]={value!r} is invalid: "
                                  "expected a non-negative integer")
        shape = _get(d, "task_info", "image_shape", list)
        if len(shape) != 3 or not all(isinstance(s, int) for s in shape):
            raise SchemaError(f"task_info.image_shape={shape!r} is invalid: expected [h, w, c]")
        return cls(name=_get(d, "task_info", "name", str),
                   source=_get(d, "task_info", "source", str),
                   num_classes=_get(d, "task_info", "num_classes", int),
                   class_names=tuple(_get(d, "task_info", "class_names", list)),
                   split_sizes=sizes, image_shape=tuple(shape),
                   content_hash=_get(d, "task_info", "content_hash", str),
                   description=_get(d, "task_info", "description", str, optional=True) or "")
