"""The versioned shared-model store; `open_store(uri)` picks the backend by URI scheme."""

from __future__ import annotations

import importlib
from typing import Any

from mu2net.errors import StoreError
from mu2net.store.base import (
    CommitResult,
    Lease,
    ModelStore,
    ObjectBackend,
    ObjectInfo,
    QueueEntry,
    ScoreFn,
)

# scheme -> "module:factory"; factories take the URI and return a ModelStore.
BACKENDS = {
    "file": "mu2net.store.local:open_local",
    "gs": "mu2net.store.gcs:open_gcs",
}


def open_store(uri: str, config: Any = None, **options: Any) -> ModelStore:
    """A store for `gs://bucket/prefix`, `file:///abs/dir` or a plain local path. With a
    `Config`, same-task commit races are decided by the method's score. `options` go to the
    store (`cache_dir=`, `scorer=`; see `mu2net.store.versioned.VersionedStore`)."""
    if not uri:
        raise StoreError("store URI is empty: pass gs://bucket/prefix or a local folder")
    if config is not None:
        from mu2net.scoring import config_scorer  # lazy: most store users need no model code

        options.setdefault("scorer", config_scorer(config))
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if scheme not in BACKENDS:
        raise StoreError(f"store URI {uri!r} has unknown scheme {scheme!r}; valid: "
                         f"{sorted(BACKENDS)} (or a plain local path)")
    module_name, factory = BACKENDS[scheme].split(":")
    return getattr(importlib.import_module(module_name), factory)(uri, **options)


__all__ = ["BACKENDS", "CommitResult", "Lease", "ModelStore", "ObjectBackend", "ObjectInfo",
           "QueueEntry", "ScoreFn", "open_store"]
