"""One schema per kind of JSON document the store keeps, checked on every read, in one place.

Every read of a stored document goes through `parse_document(kind, data, where)`: a size limit
for the kind, JSON decoding, a depth limit, then the kind's schema. Whatever fails (bytes that
are not JSON, a list where an object belongs, a lease without `expires_at`, a HEAD nested
200,000 levels deep, a task table mapping a task to 5) is raised as one `IntegrityError` that
names the object (`where`: its URI and key) and the field, never as a `KeyError`, `TypeError`
or `RecursionError` from deeper down. Callers that must go on past a damaged object (`store
check`, gc, repair, the queue listing) catch `IntegrityError` and report it.

Why a module of our own rather than jsonschema or pydantic: the index, path document and task
record already have validating `from_dict` constructors in `mu2net.schema` and
`mu2net.task_info` that name the bad field in the project's message style; a second description
of the same fields in another language would drift from them. What was missing is the frame
around them -- size and depth limits, one error type naming the key, and checkers for the small
documents (HEAD, lease, queue entry, GC registry) -- which is a few dozen lines, with no new
runtime dependency in the pipeline images.

Adding a document kind is one line: `KINDS["alias"] = DocumentKind(64 * 1024, check_alias)`,
where `check_alias(doc, where)` raises `SchemaError` naming the field and returns the value the
readers use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mu2net.errors import IntegrityError, Mu2NetError, SchemaError
from mu2net.schema import HASH_RE, Path, SystemVersion
from mu2net.task_info import TaskInfo

# No stored document nests deeper than ~8 levels (an index: provenance -> decision -> incoming).
MAX_DEPTH = 32
KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class DocumentKind:
    """A stored document kind: its size limit in bytes and its checker, which takes the decoded
    JSON and the object's name, raises `SchemaError` naming the field, and returns the value
    readers use (a typed document, or the checked dict)."""

    max_bytes: int
    check: Callable[[Any, str], Any]
    depth_checked: bool = True  # False: the checker types every value (no deep nesting passes)


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether `doc` nests deeper than `limit` (iterative: deep input cannot recurse here)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child,
                                                                                dict | list))
    return False


def decode_json(data: bytes, where: str, *, max_bytes: int, what: str = "document",
                check_depth: bool = True) -> Any:
    """JSON within a size and depth limit; `IntegrityError` naming `where` otherwise."""
    if len(data) > max_bytes:
        raise IntegrityError(f"{where} is {len(data):,} bytes, over the {max_bytes:,}-byte "
                             f"limit for a {what}; the object is damaged")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = "it is empty" if not data.strip() else f"not valid JSON ({exc})"
        raise IntegrityError(f"{where} is not a {what}: {reason}; the object is corrupt"
                             ) from None
    except RecursionError:
        raise IntegrityError(f"{where} is not a {what}: it nests deeper than the JSON parser "
                             "allows; the object is corrupt") from None
    if check_depth and _depth_exceeds(doc, MAX_DEPTH):
        raise IntegrityError(f"{where} is not a {what}: it nests deeper than {MAX_DEPTH} "
                             "levels; the object is corrupt")
    return doc


def parse_document(kind: str, data: bytes, where: str) -> Any:
    """The checked value of a stored document of `kind` (see `KINDS`)."""
    spec = KINDS[kind]
    doc = decode_json(data, where, max_bytes=spec.max_bytes, what=kind.replace("_", " "),
                      check_depth=spec.depth_checked)
    try:
        return spec.check(doc, where)
    except IntegrityError:
        raise
    except (Mu2NetError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where} is not a valid {kind.replace('_', ' ')}: "
                             f"{_reason(exc)}; the object is damaged") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} is missing"
    return str(exc) or type(exc).__name__


# === field helpers ==========================================================================


def _object(doc: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise SchemaError(f"{kind} document must be a JSON object, got {type(doc).__name__}")
    return doc


def _field(doc: Mapping[str, Any], kind: str, name: str, types: type | tuple[type, ...],
           *, optional: bool = False) -> Any:
    if name not in doc or (optional and doc[name] is None):
        if optional:
            return None
        raise SchemaError(f"{kind}.{name} is missing")
    value = doc[name]
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise SchemaError(f"{kind}.{name}={_short(value)} is invalid: expected "
                          f"{' or '.join(t.__name__ for t in allowed)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(doc: Mapping[str, Any], kind: str, name: str) -> float:
    value = float(_field(doc, kind, name, (int, float)))
    if value != value or value in (float("inf"), float("-inf")):
        raise SchemaError(f"{kind}.{name}={value!r} is invalid: expected a finite number")
    return value


def _tag(doc: Mapping[str, Any], kind: str, *, optional: bool = False) -> None:
    tag = doc.get("schema")
    if (tag is None and optional) or tag == f"mu2net/{kind}/v1":
        return
    raise SchemaError(f"{kind}.schema={_short(tag)} is invalid: expected 'mu2net/{kind}/v1'")


def check_iso_time(value: Any, what: str) -> float:
    """Epoch seconds of an ISO-8601 UTC time as the store writes them."""
    if not isinstance(value, str):
        raise SchemaError(f"{what}={_short(value)} is invalid: expected an ISO-8601 time "
                          "like 2026-01-31T12:00:00.000000Z")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SchemaError(f"{what}={_short(value)} is invalid: expected an ISO-8601 time like "
                          "2026-01-31T12:00:00.000000Z") from None


# === the kinds ==============================================================================


def check_head(doc: Any, where: str) -> int:  # noqa: ARG001
    """HEAD: `{"schema": "mu2net/head/v1", "version": N >= 0}` (schema optional)."""
    d = _object(doc, "head")
    _tag(d, "head", optional=True)
    number = _field(d, "head", "version", int)
    if number < 0:
        raise SchemaError(f"head.version={number} is invalid: expected an integer >= 0")
    return number


def check_index(doc: Any, where: str) -> SystemVersion:  # noqa: ARG001
    """A version's index (`SystemVersion`) with a readable `provenance.committed_at`, which
    garbage collection's retention window is measured from."""
    d = _object(doc, "system_version")
    tasks = _field(d, "system_version", "tasks", dict)
    for task, path_hash in tasks.items():
        if not isinstance(path_hash, str) or not HASH_RE.match(path_hash):
            raise SchemaError(f"system_version.tasks[{task!r}]={_short(path_hash)} is invalid: "
                              "expected a sha256 hex digest")
    version = SystemVersion.from_dict(d)
    check_iso_time(version.provenance.get("committed_at"),
                   "system_version.provenance.committed_at")
    return version


def check_path(doc: Any, where: str) -> Path:  # noqa: ARG001
    return Path.from_dict(_object(doc, "path"))


def check_system_summary(doc: Any, where: str) -> Any:  # noqa: ARG001
    """`summaries/<sha256>.json`: a version's component users and task accuracies
    (`mu2net.system_view.SystemSummary`)."""
    from mu2net.system_view import SystemSummary

    return SystemSummary.from_dict(_object(doc, "system_summary"))


def check_task_record(doc: Any, where: str) -> TaskInfo:  # noqa: ARG001
    d = _object(doc, "task_info")
    for name in _field(d, "task_info", "class_names", list):
        if not isinstance(name, str):
            raise SchemaError(f"task_info.class_names holds {_short(name)}: expected strings")
    return TaskInfo.from_dict(d)


def check_lease(doc: Any, where: str) -> Mapping[str, Any]:  # noqa: ARG001
    """A run's lease; returns the checked dict."""
    d = _object(doc, "lease")
    _tag(d, "lease")
    _field(d, "lease", "run_id", str)
    base = _field(d, "lease", "base_version", int, optional=True)
    if base is not None and base < 0:
        raise SchemaError(f"lease.base_version={base} is invalid: expected an integer >= 0")
    _number(d, "lease", "acquired_at")
    _number(d, "lease", "expires_at")
    for blob in _field(d, "lease", "blobs", list):
        if not isinstance(blob, str) or not HASH_RE.match(blob):
            raise SchemaError(f"lease.blobs holds {_short(blob)}: expected sha256 hex digests")
    return d


# Fields every queue entry has; other fields (added by newer code) are allowed and kept.
QUEUE_ENTRY_STRINGS = ("id", "spec", "mode", "state", "updated_at")
QUEUE_ENTRY_OPTIONAL_STRINGS = ("run_id", "error", "enqueued_at")


def check_queue_entry(doc: Any, where: str) -> Mapping[str, Any]:  # noqa: ARG001
    """A task-queue entry; unknown fields are allowed (newer code adds some). Returns the
    checked dict."""
    d = _object(doc, "queue_entry")
    _tag(d, "queue_entry")
    for name in QUEUE_ENTRY_STRINGS:
        _field(d, "queue_entry", name, str)
    for name in QUEUE_ENTRY_OPTIONAL_STRINGS:
        _field(d, "queue_entry", name, str, optional=True)
    check_iso_time(d["updated_at"], "queue_entry.updated_at")  # the abandoned-entry test
    _field(d, "queue_entry", "extra", dict, optional=True)
    return d


def check_gc_registry(doc: Any, where: str) -> dict[str, float]:  # noqa: ARG001
    """`GC`: `{"collections": {id: expiry epoch seconds}}`; returns id -> expiry."""
    d = _object(doc, "gc_registry")
    active = _field(d, "gc_registry", "collections", dict)
    return {str(k): _number(active, "gc_registry.collections", k) for k in active}


def check_alias(doc: Any, where: str) -> Mapping[str, Any]:  # noqa: ARG001
    """`aliases/<task>/<alias>.json`: which version's path of a task an alias names."""
    d = _object(doc, "alias")
    _tag(d, "alias")
    _field(d, "alias", "task", str)
    _field(d, "alias", "alias", str)
    if _field(d, "alias", "version", int) < 0:
        raise SchemaError(f"alias.version={d['version']} is invalid: expected an integer >= 0")
    if not HASH_RE.match(_field(d, "alias", "path", str)):
        raise SchemaError(f"alias.path={_short(d['path'])} is invalid: expected a path hash")
    _field(d, "alias", "set_at", str, optional=True)
    _field(d, "alias", "previous", int, optional=True)
    return d


def check_kept_searches(doc: Any, where: str) -> Mapping[str, Any]:  # noqa: ARG001
    """`searches/<task>.json`: the runs whose cycle kept the task's path (published nothing)."""
    d = _object(doc, "kept_searches")
    _tag(d, "kept_searches")
    _field(d, "kept_searches", "task", str)
    _field(d, "kept_searches", "path", str)
    if not all(isinstance(run, str) for run in _field(d, "kept_searches", "runs", list)):
        raise SchemaError("kept_searches.runs holds a non-string run id")
    return d


def check_task_data_dir(doc: Any, where: str) -> Mapping[str, Any]:  # noqa: ARG001
    """`task_data_dirs/<task>.json`: the folder a task was last ingested from."""
    d = _object(doc, "task_data_dir")
    _tag(d, "task_data_dir")
    _field(d, "task_data_dir", "task", str)
    _field(d, "task_data_dir", "data_dir", str)
    return d


KINDS: dict[str, DocumentKind] = {
    "head": DocumentKind(4 * KIB, check_head),
    "index": DocumentKind(8 * MIB, check_index),
    "path": DocumentKind(8 * MIB, check_path),
    # ~70 bytes per component plus ~12 per (component, user): about 1 MiB at 1,000 tasks
    # sharing 10 root components; 64 MiB leaves room for 10,000 tasks.
    # Its checker types every value (components -> {params: int, users: [str]}), so the
    # generic depth walk (O(every user entry), read by each step) is not needed.
    "system_summary": DocumentKind(64 * MIB, check_system_summary, depth_checked=False),
    "task_record": DocumentKind(8 * MIB, check_task_record),
    "lease": DocumentKind(8 * MIB, check_lease),
    "queue_entry": DocumentKind(1 * MIB, check_queue_entry),
    "gc_registry": DocumentKind(1 * MIB, check_gc_registry),
    "alias": DocumentKind(64 * KIB, check_alias),
    "kept_searches": DocumentKind(8 * MIB, check_kept_searches),
    "task_data_dir": DocumentKind(64 * KIB, check_task_data_dir),
}
