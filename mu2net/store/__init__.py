"""The versioned shared-model store; `open_store(uri)` picks the backend by URI scheme."""

from __future__ import annotations

import importlib

from mu2net.errors import StoreError
from mu2net.store.base import CommitResult, ModelStore, ObjectBackend, QueueEntry

# scheme -> "module:factory"; factories take the URI and return a ModelStore.
BACKENDS = {
    "file": "mu2net.store.local:open_local",
    "gs": "mu2net.store.gcs:open_gcs",
}


def open_store(uri: str) -> ModelStore:
    """A store for `gs://bucket/prefix`, `file:///abs/dir` or a plain local path."""
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if scheme not in BACKENDS:
        raise StoreError(f"store URI {uri!r} has unknown scheme {scheme!r}; valid: "
                         f"{sorted(BACKENDS)} (or a plain local path)")
    module_name, factory = BACKENDS[scheme].split(":")
    return getattr(importlib.import_module(module_name), factory)(uri)


__all__ = ["BACKENDS", "CommitResult", "ModelStore", "ObjectBackend", "QueueEntry", "open_store"]
