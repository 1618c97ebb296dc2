"""Task aliases (`AliasOps`, mixed into the store): a name such as `prod` for the version of a
task that serving and `export` read, moved deliberately (`mu2net alias set TASK prod`) rather
than following the head.

One small document per alias, `aliases/<task>/<alias>.json`, moved by compare-and-swap like
`HEAD` and queue entries: {"version": N, "path": <path hash>, ...}. An alias names a version
that may be older than garbage collection's retention window, so `gc` treats the blobs of
every aliased path as referenced; setting an alias checks the path's blobs are all there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mu2net.errors import ConflictError, SchemaError, StoreError
from mu2net.schema import Path, SystemVersion, validate_task_name
from mu2net.store.base import ObjectBackend
from mu2net.store.documents import parse_document
from mu2net.store.layout import alias_key, blob_key, encode, iso_time

ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Alias:
    """`task@alias` names the task's path at `version` (`path`: that path's hash)."""

    task: str
    alias: str
    version: int
    path: str
    set_at: str = ""
    previous: int | None = None  # the version the alias named before this move

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "mu2net/alias/v1", "task": self.task, "alias": self.alias,
                "version": self.version, "path": self.path, "set_at": self.set_at,
                "previous": self.previous}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> Alias:
        if not isinstance(d, Mapping) or d.get("schema") != "mu2net/alias/v1":
            raise SchemaError(f"{where} is not an alias (schema {d.get('schema')!r})")
        return cls(task=d["task"], alias=d["alias"], version=int(d["version"]), path=d["path"],
                   set_at=d.get("set_at", ""), previous=d.get("previous"))


def check_alias_name(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise SchemaError(f"alias {alias!r} is invalid: expected 1-40 characters from "
                          "[a-z0-9_-], starting with a letter (e.g. prod)")
    return alias


class AliasOps:
    """Alias operations of `VersionedStore`."""

    backend: ObjectBackend
    uri: str
    clock: Callable[[], float]
    max_attempts: int
    _require_head: Callable[[], int]
    read_version: Callable[[int], SystemVersion]
    read_path: Callable[[str], Path]
    _await_collections: Callable[[], None]

    def set_alias(self, task: str, alias: str, version: int | None = None) -> Alias:
        """Point `task@alias` at the task's path at `version` (default: the head)."""
        validate_task_name(task)
        check_alias_name(alias)
        index = self.read_version(self._require_head() if version is None else version)
        if task not in index.tasks:
            raise StoreError(f"task {task!r} has no path at version {index.number}; tasks "
                             f"there: {sorted(index.tasks)[:20]}")
        path_hash = index.tasks[task]
        self._check_alias_blobs(task, index.number, path_hash)
        key = alias_key(task, alias)
        for _ in range(self.max_attempts):
            got = self.backend.read(key)
            previous = (Alias.from_dict(parse_document("alias", got[0], key), key).version
                        if got is not None else None)
            new = Alias(task=task, alias=alias, version=index.number, path=path_hash,
                        set_at=iso_time(self.clock()), previous=previous)
            try:
                self.backend.write(key, encode(new.to_dict()),
                                   if_generation_match=got[1] if got is not None else 0)
                break
            except ConflictError:
                continue
        else:
            raise ConflictError(f"alias {task}@{alias} kept changing; retry later")
        # A collection that decided before this alias existed may still be deleting: wait for
        # it, then make sure the aliased blobs survived.
        self._await_collections()
        self._check_alias_blobs(task, index.number, path_hash)
        return new

    def _check_alias_blobs(self, task: str, number: int, path_hash: str) -> None:
        missing = [c.blob for c in self.read_path(path_hash).components
                   if not self.backend.exists(blob_key(c.blob))]
        if missing:
            raise StoreError(f"task {task!r} at version {number} cannot be aliased: its blobs "
                             f"{missing[:3]} were garbage-collected from {self.uri}; choose a "
                             "newer version")

    def aliases(self, task: str | None = None) -> list[Alias]:
        """Every alias (of one task), sorted by task and name."""
        if task is not None:
            validate_task_name(task)
        out = []
        for key in self.backend.list("aliases/" if task is None else f"aliases/{task}/"):
            got = self.backend.read(key)
            if got is not None:
                doc = parse_document("alias", got[0], f"{self.uri}/{key}")
                out.append(Alias.from_dict(doc, key))
        return sorted(out, key=lambda a: (a.task, a.alias))

    def resolve_alias(self, task: str, alias: str) -> Alias:
        """The alias `task@alias`; a missing one names the task's aliases."""
        validate_task_name(task)
        check_alias_name(alias)
        key = alias_key(task, alias)
        got = self.backend.read(key)
        if got is None:
            known = [a.alias for a in self.aliases(task)]
            raise StoreError(f"task {task!r} has no alias {alias!r} in {self.uri}; its "
                             f"aliases: {known} (set one with `mu2net alias set {task} "
                             f"{alias}`)")
        return Alias.from_dict(parse_document("alias", got[0], f"{self.uri}/{key}"), key)

    def remove_alias(self, task: str, alias: str) -> Alias:
        found = self.resolve_alias(task, alias)
        self.backend.delete(alias_key(task, alias))
        return found
