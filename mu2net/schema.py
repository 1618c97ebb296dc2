"""The shared vocabulary of the system: components, paths, system versions, extensions (the
prepared-task document, `TaskInfo`, is in `mu2net.task_info`).

Every document is a frozen dataclass with `to_dict` / `from_dict` and a `schema` tag
(`mu2net/<kind>/v1`). `from_dict` validates types and names the offending field. Documents that
live in the store are content-addressed by `document_hash` (sha256 of canonical JSON).

A *path* is one task's model: an ordered list of components plus hyperparameters. A *system
version* is a small index task -> path-document hash, plus the root path and provenance; it never
holds the components themselves. Numbers derived from the system (accounted params, score) are
computed when read, from the version being read (`SystemView`), never trusted from storage.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mu2net.config import canonical_json
from mu2net.errors import SchemaError

SCHEMA_VERSION = 1
# Index format: 1 (no summary: written before the component-users summary), 2 (names its
# `SystemSummary`, mu2net.system_summary). Readers accept both; a newer one is refused.
INDEX_FORMAT = 2
ROOT_TASK = "_root"  # owner name of the root path (system version 0)
MODES = ("onboard", "iterate")  # what a run does: add a new task, or re-evolve an existing one
COMPONENT_NAME_RE = re.compile(
    r"^(cls|embedding|posembed_input|encoder_norm|head|encoderblock_\d+|residual_adapter_\d+)$")
TASK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_hash(doc: Mapping[str, Any]) -> str:
    """Content address of a JSON document (sha256 of its canonical JSON)."""
    return sha256_hex(canonical_json(doc).encode())


def check_mode(mode: Any, what: str = "mode") -> str:
    """The one check of a run mode (`MODES`), for every layer that receives one."""
    if mode not in MODES:
        raise SchemaError(f"{what}={mode!r} is invalid: expected one of {list(MODES)}")
    return mode


def validate_task_name(name: str) -> str:
    if not isinstance(name, str) or not TASK_NAME_RE.match(name):
        raise SchemaError(f"task name {name!r} is invalid: use 1-128 characters from "
                          "[A-Za-z0-9_.-], starting with a letter or digit")
    return name


# === field validation =======================================================================


def _schema_tag(kind: str) -> str:
    return f"mu2net/{kind}/v{SCHEMA_VERSION}"


def _check_tag(d: Mapping[str, Any], kind: str) -> None:
    if not isinstance(d, Mapping):
        raise SchemaError(f"{kind} document must be a JSON object, got {type(d).__name__}")
    tag = d.get("schema")
    if tag != _schema_tag(kind):
        raise SchemaError(f"{kind}.schema={tag!r} is invalid: expected {_schema_tag(kind)!r}")


def _get(d: Mapping[str, Any], kind: str, name: str, types: type | tuple[type, ...],
         optional: bool = False) -> Any:
    if name not in d:
        if optional:
            return None
        raise SchemaError(f"{kind}.{name} is missing")
    value = d[name]
    if value is None and optional:
        return None
    # bool is an int subclass: do not let True pass as a count.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SchemaError(f"{kind}.{name}={value!r} is invalid: expected {_type_names(types)}")
    if not isinstance(value, types):
        raise SchemaError(f"{kind}.{name}={value!r} is invalid: expected {_type_names(types)}")
    return value


def _type_names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def _check_hash(kind: str, name: str, value: str) -> str:
    if not HASH_RE.match(value):
        raise SchemaError(f"{kind}.{name}={value!r} is invalid: expected a sha256 hex digest")
    return value


# === Component ==============================================================================


@dataclass(frozen=True)
class Component:
    """One layer of the shared pool. Immutable once published.

    `id` is globally unique (`<creator>/<name>/<blob[:16]>`); `blob` is the sha256 of the
    parameters' `.npz` bytes in the store; `shapes` maps weight names to shapes.
    """

    id: str
    name: str
    creator: str
    shapes: Mapping[str, tuple[int, ...]]
    blob: str

    def __post_init__(self) -> None:
        if not COMPONENT_NAME_RE.match(self.name):
            raise SchemaError(f"component.name={self.name!r} is invalid: expected cls, embedding, "
                              "posembed_input, encoder_norm, head, encoderblock_<i> or "
                              "residual_adapter_<i>")
        _check_hash("component", "blob", self.blob)

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())

    @staticmethod
    def make_id(creator: str, name: str, blob: str) -> str:
        return f"{creator}/{name}/{blob[:16]}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": _schema_tag("component"), "id": self.id, "name": self.name,
                "creator": self.creator, "blob": self.blob, "num_params": self.num_params,
                "shapes": {k: list(v) for k, v in sorted(self.shapes.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Component:
        _check_tag(d, "component")
        shapes_raw = _get(d, "component", "shapes", dict)
        shapes = {}
        for key, shape in shapes_raw.items():
            if not isinstance(shape, list) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
                raise SchemaError(f"component.shapes[{key!r}]={shape!r} is invalid: "
                                  "expected a list of non-negative integers")
            shapes[key] = tuple(shape)
        comp = cls(id=_get(d, "component", "id", str), name=_get(d, "component", "name", str),
                   creator=_get(d, "component", "creator", str), shapes=shapes,
                   blob=_get(d, "component", "blob", str))
        recorded = _get(d, "component", "num_params", int, optional=True)
        if recorded is not None and recorded != comp.num_params:
            raise SchemaError(f"component.num_params={recorded} does not match its shapes "
                              f"({comp.num_params})")
        return comp


# === Path ===================================================================================


@dataclass(frozen=True)
class Path:
    """One task's model: ordered components (the ViT parameter order) plus hyperparameters.

    `hparams` holds architecture hparams (`num_layers`, `ds_image_size`, `num_classes`,
    `adapter_layers`, `adapter_dim`), optimizer and data hparams, and the learned per-action
    mutation probabilities (`_mu_|<action>`). `parent` is the parent path's document hash
    (possibly another task's, or the root's). `metrics` are measurements taken when the path was
    trained (validation/test accuracy, curve, examples, seconds); the score is not stored.
    `score_constants` are the score's constants the path was judged by (`ScoreConfig` as a
    dict: scale, params_ref, flops_ref), so its score can be computed from the store alone
    whatever configs exist later; None in paths written before they were recorded (the
    document then has no such key, so those paths keep their hashes).
    """

    task: str
    components: tuple[Component, ...]
    hparams: Mapping[str, Any]
    method_version: str
    parent: str | None = None
    parent_task: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    score_constants: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.task != ROOT_TASK:
            validate_task_name(self.task)
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise SchemaError(f"path.components of task {self.task!r} repeat a name: {names}")
        if self.parent is not None:
            _check_hash("path", "parent", self.parent)

    @property
    def component_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.components)

    def component(self, name: str) -> Component | None:
        for c in self.components:
            if c.name == name:
                return c
        return None

    @property
    def num_params(self) -> int:
        return sum(c.num_params for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": _schema_tag("path"), "task": self.task,
               "components": [c.to_dict() for c in self.components],
               "hparams": dict(self.hparams), "method_version": self.method_version,
               "parent": self.parent, "parent_task": self.parent_task,
               "metrics": dict(self.metrics)}
        if self.score_constants is not None:
            doc["score_constants"] = dict(self.score_constants)
        return doc

    @property
    def hash(self) -> str:
        return document_hash(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Path:
        _check_tag(d, "path")
        comps = _get(d, "path", "components", list)
        return cls(task=_get(d, "path", "task", str),
                   components=tuple(Component.from_dict(c) for c in comps),
                   hparams=_get(d, "path", "hparams", dict),
                   method_version=_get(d, "path", "method_version", str),
                   parent=_get(d, "path", "parent", str, optional=True),
                   parent_task=_get(d, "path", "parent_task", str, optional=True),
                   metrics=_get(d, "path", "metrics", dict),
                   score_constants=_get(d, "path", "score_constants", dict, optional=True))


# === SystemVersion (the per-version index) ==================================================


@dataclass(frozen=True)
class SystemVersion:
    """The small index of one committed version: task -> path-document hash, the root path's
    hash, the parent version and provenance (run id, method version, code version, times);
    from index format 2 on, `summary`: the hash of its `SystemSummary` document."""

    number: int
    parent: int | None
    root: str
    tasks: Mapping[str, str]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    summary: str | None = None

    def __post_init__(self) -> None:
        if self.number < 0:
            raise SchemaError(f"system_version.number={self.number} is invalid: expected >= 0")
        if self.parent is not None and self.parent >= self.number:
            raise SchemaError(f"system_version.parent={self.parent} is invalid: expected < "
                              f"number={self.number}")
        _check_hash("system_version", "root", self.root)
        for task, path_hash in self.tasks.items():
            validate_task_name(task)
            _check_hash("system_version", f"tasks[{task!r}]", path_hash)
        if self.summary is not None:
            _check_hash("system_version", "summary", self.summary)

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": _schema_tag("system_version"), "number": self.number,
               "parent": self.parent, "root": self.root, "tasks": dict(sorted(self.tasks.items())),
               "provenance": dict(self.provenance)}
        if self.summary is not None:  # format 1 indices keep their exact form
            doc.update(format=INDEX_FORMAT, summary=self.summary)
        return doc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SystemVersion:
        _check_tag(d, "system_version")
        fmt = _get(d, "system_version", "format", int, optional=True) or 1
        if fmt not in (1, INDEX_FORMAT):
            raise SchemaError(f"system_version.format={fmt} is invalid: this mu2net reads index "
                              f"formats 1 and {INDEX_FORMAT}; upgrade mu2net to read it")
        return cls(number=_get(d, "system_version", "number", int),
                   parent=_get(d, "system_version", "parent", int, optional=True),
                   root=_get(d, "system_version", "root", str),
                   tasks=_get(d, "system_version", "tasks", dict),
                   provenance=_get(d, "system_version", "provenance", dict),
                   summary=_get(d, "system_version", "summary", str) if fmt > 1 else None)


# === Extension: what one cycle commits ======================================================


@dataclass(frozen=True)
class Extension:
    """The result of one search cycle of one task: its new best path (frozen) and only the
    component blobs that path introduced (`blob_files`: sha256 -> local file). `run_id` makes
    commits idempotent; `base_version` is the version the cycle read."""

    task: str
    base_version: int
    path: Path
    blob_files: Mapping[str, str]
    run_id: str
    config_name: str
    code_version: str = ""
    mode: str = "onboard"  # onboard | iterate
    # Rows: true class, columns: predicted, on the test examples the cycle measured its test
    # accuracy on. Travels with the cycle's artifact to the report; the store keeps only the
    # accuracy (a 1,000-class matrix would not belong in a path document).
    test_confusion: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        validate_task_name(self.task)
        if self.path.task != self.task:
            raise SchemaError(f"extension.path.task={self.path.task!r} does not match "
                              f"extension.task={self.task!r}")
        check_mode(self.mode, "extension.mode")
        for blob in self.blob_files:
            _check_hash("extension", "blob_files", blob)

    @property
    def new_components(self) -> list[Component]:
        return [c for c in self.path.components if c.blob in self.blob_files]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": _schema_tag("extension"), "task": self.task,
                "base_version": self.base_version, "path": self.path.to_dict(),
                "blob_files": dict(sorted(self.blob_files.items())), "run_id": self.run_id,
                "config_name": self.config_name, "code_version": self.code_version,
                "mode": self.mode, "test_confusion": [list(row) for row in self.test_confusion]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Extension:
        _check_tag(d, "extension")
        return cls(task=_get(d, "extension", "task", str),
                   base_version=_get(d, "extension", "base_version", int),
                   path=Path.from_dict(_get(d, "extension", "path", dict)),
                   blob_files=_get(d, "extension", "blob_files", dict),
                   run_id=_get(d, "extension", "run_id", str),
                   config_name=_get(d, "extension", "config_name", str),
                   code_version=_get(d, "extension", "code_version", str, optional=True) or "",
                   mode=_get(d, "extension", "mode", str),
                   test_confusion=tuple(tuple(int(x) for x in row) for row in
                                        d.get("test_confusion") or ()))


def __getattr__(name: str) -> Any:
    """`SystemView` and `lock_holders` live in `mu2net.system_view` (with the stored summary
    and the lazily read paths they work with); they stay importable from here."""
    if name in ("SystemView", "lock_holders"):
        from mu2net import system_view

        return getattr(system_view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
