"""The store's layout on a backend: object keys, the stored form of documents, and small
helpers every part of the store shares (verified JSON parsing, timestamps, hash checks)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mu2net.config import canonical_json
from mu2net.errors import IntegrityError, StoreError
from mu2net.schema import HASH_RE, SystemVersion, sha256_hex

HEAD_KEY = "HEAD"
GC_KEY = "GC"  # {"collections": {id: expiry}}: garbage collections that are deleting now
INDEX_MAX_BYTES = 8 * 1024 * 1024  # single-shot upload limit; the index must stay below it


# === layout =================================================================================


def version_key(number: int) -> str:
    return f"versions/{number:012d}.json"


def path_key(path_hash: str) -> str:
    return f"paths/{path_hash}.json"


def summary_key(summary_hash: str) -> str:
    return f"summaries/{summary_hash}.json"


def blob_key(blob_hash: str) -> str:
    return f"blobs/{blob_hash}"


def task_info_key(name: str, content_hash: str) -> str:
    return f"tasks/{name}/{content_hash}.json"


def task_data_dir_key(name: str) -> str:
    return f"task_data_dirs/{name}.json"


def queue_key(entry_id: str) -> str:
    return f"queue/{entry_id}.json"


def alias_key(task: str, alias: str) -> str:
    return f"aliases/{task}/{alias}.json"


def lease_key(run_id: str) -> str:
    return f"leases/{hashlib.sha256(run_id.encode()).hexdigest()[:40]}.json"


def encode(doc: Mapping[str, Any]) -> bytes:
    """The stored form of every JSON document: canonical JSON (its sha256 is its hash)."""
    return canonical_json(doc).encode()


def encode_index(version: SystemVersion) -> bytes:
    """The index object of a version; refuses one over the single-shot upload limit."""
    data = encode(version.to_dict())
    if len(data) >= INDEX_MAX_BYTES:
        raise StoreError(f"index of version {version.number} is {len(data)} bytes, over the "
                         f"{INDEX_MAX_BYTES}-byte single-shot limit")
    return data


def encode_pointer(number: int) -> bytes:
    return encode({"schema": "mu2net/head/v1", "version": number})


# === small helpers ==========================================================================


class Lru:
    """A thread-safe bounded mapping for immutable documents."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_of(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def check_hash(what: str, value: str) -> str:
    if not isinstance(value, str) or not HASH_RE.match(value):
        raise StoreError(f"{what} {value!r} is invalid: expected a sha256 hex digest")
    return value


def read_blob_file(file_path: str, blob_hash: str) -> bytes:
    try:
        with open(file_path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StoreError(f"blob file {file_path!r} for {blob_hash} cannot be read: {exc}") from None
    actual = sha256_hex(data)
    if actual != blob_hash:
        raise IntegrityError(f"blob file {file_path!r} hashes to {actual}, not the {blob_hash} "
                             "it is listed under")
    return data


def decision_text(decision: Mapping[str, Any] | None) -> str:
    """One line describing a recorded same-task race decision ("" when there was none)."""
    if not decision:
        return ""
    inc, ex = decision["incoming"], decision["existing"]
    kept, lost = (inc, ex) if decision["kept"] == "incoming" else (ex, inc)
    return (f"same-task race on {decision['task']!r} at version {decision['at_version']}: kept "
            f"the {decision['kept']} path {kept['path'][:12]} (score {kept['score']:.6g}) over "
            f"{lost['path'][:12]} (score {lost['score']:.6g})")
