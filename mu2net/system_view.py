"""A committed version as the search reads it (`SystemView`), and what a run needs from the
whole system without reading every path: the per-version summary (component -> users) and a
lazily read task -> path mapping.

Accounted parameters (docs/method.md §2.5) divide each component among the tasks whose paths
use it, so scoring one path needs every component's users. Computing them means reading all N
path documents of a version; a run of one task would then pay O(N) reads in every step. So
each committed version stores a `SystemSummary` (a content-addressed document the index names,
docs/store.md) built at commit from the previous version's summary and the one path that
changed: O(changed path), never a scan of N paths. It also holds each task's test accuracy, so
the history totals (mean accuracy, deployed and separate parameters) follow without reading
the paths either.

`LazyPaths` is `SystemView.paths` as the store loads it: keys from the index, values read
(verified, cached) on first access, so a step reads only the paths it touches.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mu2net.config import canonical_json
from mu2net.errors import SchemaError
from mu2net.schema import ROOT_TASK, Component, Path, SystemVersion, sha256_hex

SUMMARY_SCHEMA = "mu2net/system_summary/v1"


def lock_holders(component: Component, task: str,
                 users: Mapping[str, set[str]]) -> set[str]:
    """Who shares the cost of `component` in `task`'s path (docs/method.md §2.5): the tasks whose
    published paths use it, the task itself, and the root for a root component (in mu2Net+
    the root is locked and counted as an owner, so reusing a root layer frozen costs half of
    cloning it even before any other task uses it)."""
    holders = set(users.get(component.id, ())) | {task}
    if component.creator == ROOT_TASK:
        holders.add(ROOT_TASK)
    return holders


# === SystemView: a version with its paths resolved ==========================================


@dataclass(frozen=True)
class SystemView:
    """A committed version with its path documents: what the search reads. From the store,
    `paths` reads each path on first access (`LazyPaths`) and `summary`
    is the version's `SystemSummary` (or a callable computing it, for an index of format 1);
    None (a view built by hand): component users are computed from the paths."""

    version: SystemVersion
    root: Path
    paths: Mapping[str, Path]
    summary: Any = None

    @property
    def number(self) -> int:
        return self.version.number

    def all_paths(self) -> list[Path]:
        """The root path, then every task's path in task-name order."""
        return [self.root] + [self.paths[t] for t in sorted(self.paths)]

    def stored_summary(self) -> Any:
        """The version's `SystemSummary`, None for a view built without one."""
        if callable(self.summary):  # computed once, on first use
            object.__setattr__(self, "summary", self.summary())
        return self.summary

    def component_users(self) -> dict[str, set[str]]:
        """component id -> tasks whose published path uses it (the root owns no lock)."""
        return view_summary(self).users()

    @functools.cached_property
    def _users(self) -> dict[str, set[str]]:
        """`component_users()` once per view (every task's accounted params: not O(tasks^2))."""
        return self.component_users()

    def accounted_params(self, path: Path) -> float:
        """docs/method.md §2.5: sum over components of size / |locks ∪ {owner}|, from this view."""
        users = self._users
        return sum(comp.num_params / len(lock_holders(comp, path.task, users))
                   for comp in path.components)

    def total_params(self) -> int:
        """Parameters of the deployed set: every distinct component of every task path."""
        return view_summary(self).total_params()


# === the stored summary =====================================================================


@dataclass(frozen=True)
class SystemSummary:
    """component id -> (its parameters, the tasks whose paths use it, sorted), and task ->
    test accuracy of its path (tasks whose path records one). The root owns no lock: only
    task paths count, as in `SystemView.component_users`. Users are kept as sorted tuples,
    the stored order, so a commit updates them by bisection and writes them without sorting
    (at 10,000 tasks a root component has 10,000 users)."""

    components: Mapping[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    test_accuracy: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Iterable[tuple[str, Path]]) -> SystemSummary:
        """The summary of a set of task paths (version 0 and versions written before
        summaries, index format 1)."""
        users: dict[str, set[str]] = {}
        params: dict[str, int] = {}
        accs: dict[str, float] = {}
        for task, path in paths:
            for c in path.components:
                users.setdefault(c.id, set()).add(task)
                params[c.id] = c.num_params
            if "test_accuracy" in path.metrics:
                accs[task] = float(path.metrics["test_accuracy"])
        return cls(components={cid: (params[cid], tuple(sorted(u))) for cid, u in users.items()},
                   test_accuracy=accs)

    def replace_path(self, task: str, old: Path | None, new: Path | None) -> SystemSummary:
        """The summary after `task`'s path changes from `old` to `new` (either may be None:
        a task added or removed): O(components of the two paths x log users)."""
        if old is not None and new is not None and old.component_ids == new.component_ids \
                and old.metrics.get("test_accuracy") == new.metrics.get("test_accuracy"):
            return self
        comps = dict(self.components)
        for c in old.components if old is not None else ():
            params, users = comps[c.id]
            i = bisect.bisect_left(users, task)
            if i < len(users) and users[i] == task:
                users = users[:i] + users[i + 1:]
            if users:
                comps[c.id] = (params, users)
            else:
                del comps[c.id]
        for c in new.components if new is not None else ():
            params, users = comps.get(c.id, (c.num_params, ()))
            i = bisect.bisect_left(users, task)
            if i == len(users) or users[i] != task:
                users = users[:i] + (task,) + users[i:]
            comps[c.id] = (params, users)
        accs = dict(self.test_accuracy)
        accs.pop(task, None)
        if new is not None and "test_accuracy" in new.metrics:
            accs[task] = float(new.metrics["test_accuracy"])
        return SystemSummary(components=comps, test_accuracy=accs)

    def users(self) -> dict[str, set[str]]:
        """`SystemView.component_users()` from the summary (a fresh dict of fresh sets)."""
        return {cid: set(users) for cid, (_, users) in self.components.items()}

    def total_params(self) -> int:
        """Parameters of every distinct component of every task path."""
        return sum(params for params, _ in self.components.values())

    def separate_params(self) -> int:
        """The sum of the task paths' parameters (separately fine-tuned models)."""
        return sum(params * len(users) for params, users in self.components.values())

    def mean_test_accuracy(self) -> float | None:
        accs = list(self.test_accuracy.values())
        return sum(accs) / len(accs) if accs else None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA,
                "components": {cid: {"params": params, "users": list(users)}
                               for cid, (params, users) in sorted(self.components.items())},
                "test_accuracy": dict(sorted(self.test_accuracy.items()))}

    @functools.cached_property
    def canonical(self) -> bytes:
        """The stored form (canonical JSON), encoded once: its sha256 is `hash`."""
        return canonical_json(self.to_dict()).encode()

    @functools.cached_property
    def hash(self) -> str:
        return sha256_hex(self.canonical)

    @classmethod
    def from_dict(cls, d: Any) -> SystemSummary:
        if not isinstance(d, dict):
            raise SchemaError(f"system_summary must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SUMMARY_SCHEMA:
            raise SchemaError(f"system_summary.schema={d.get('schema')!r} is invalid: expected "
                              f"{SUMMARY_SCHEMA!r}")
        comps_raw, accs_raw = d.get("components"), d.get("test_accuracy")
        if not isinstance(comps_raw, dict) or not isinstance(accs_raw, dict):
            raise SchemaError("system_summary.components and .test_accuracy must be objects")
        comps = {}
        for cid, entry in comps_raw.items():
            params = entry.get("params") if isinstance(entry, dict) else None
            users = entry.get("users") if isinstance(entry, dict) else None
            if (not isinstance(params, int) or isinstance(params, bool) or params < 0
                    or not isinstance(users, list) or not users
                    or not all(isinstance(u, str) for u in users)
                    or any(a >= b for a, b in zip(users, users[1:]))):
                raise SchemaError(f"system_summary.components[{cid!r}]={entry!r:.80} is "
                                  "invalid: expected {params: int >= 0, users: [task, ...] "
                                  "sorted, without repeats}")
            comps[cid] = (params, tuple(users))
        accs = {}
        for task, acc in accs_raw.items():
            if not isinstance(acc, int | float) or isinstance(acc, bool):
                raise SchemaError(f"system_summary.test_accuracy[{task!r}]={acc!r} is "
                                  "invalid: expected a number")
            accs[task] = float(acc)
        return cls(components=comps, test_accuracy=accs)


class LazyPaths(Mapping[str, Path]):
    """task -> Path whose keys (and path hashes) come from the index and whose values are read
    on first access through `load(task, hash)` (the store's verified, cached read).

    Iterating the keys reads nothing; `values()` and `items()` read every path (in parallel
    through `load_all`, when given): only what truly needs all N paths calls them (`status`,
    the `report` command, gain ranking). `overrides` replace or add tasks without a read
    (the merged view a same-task race is scored against)."""

    def __init__(self, hashes: Mapping[str, str], load: Callable[[str, str], Path],
                 load_all: Callable[[Mapping[str, str]], Mapping[str, Path]] | None = None,
                 overrides: Mapping[str, Path] | None = None) -> None:
        self._hashes = dict(hashes)
        self._load, self._load_all = load, load_all
        self._loaded: dict[str, Path] = dict(overrides or {})
        self._overrides = dict(overrides or {})
        for task, path in self._overrides.items():
            self._hashes[task] = path.hash

    def hash_of(self, task: str) -> str:
        """The path hash of `task`, from the index (no read)."""
        return self._hashes[task]

    def __getitem__(self, task: str) -> Path:
        path = self._loaded.get(task)
        if path is None:
            path = self._load(task, self._hashes[task])  # KeyError for an unknown task
            self._loaded[task] = path
        return path

    def __iter__(self) -> Iterator[str]:
        return iter(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, task: object) -> bool:
        return task in self._hashes

    def load_all(self) -> None:
        """Read every path not read yet (in parallel when the store gave `load_all`)."""
        missing = {t: h for t, h in self._hashes.items() if t not in self._loaded}
        if missing and self._load_all is not None:
            self._loaded.update(self._load_all(missing))
        for task in missing:
            self[task]

    def values(self) -> Any:
        self.load_all()
        return super().values()

    def items(self) -> Any:
        self.load_all()
        return super().items()

    def with_path(self, task: str, path: Path) -> LazyPaths:
        """The same mapping with `task` set to `path` (no read)."""
        return LazyPaths(self._hashes, self._load, self._load_all,
                         {**self._overrides, task: path})


def path_hash_of(view: SystemView, task: str) -> str:
    """`task`'s path hash in `view`: from the index when the paths are lazy (no read)."""
    paths = view.paths
    return paths.hash_of(task) if isinstance(paths, LazyPaths) else paths[task].hash


def view_summary(view: SystemView) -> SystemSummary:
    """The view's stored summary, or one computed from its paths (an eager view built by
    hand, e.g. in tests)."""
    summary = view.stored_summary()
    return summary if summary is not None else SystemSummary.from_paths(view.paths.items())


def with_path(view: SystemView, task: str, path: Path) -> SystemView:
    """`view` with `task`'s path replaced by `path`, as the version it would create (the
    merged view a same-task race and the publishing gate score against): no path read
    beyond the one replaced, and the summary updated from it."""
    paths = view.paths
    old = paths.get(task)
    merged_paths = (paths.with_path(task, path) if isinstance(paths, LazyPaths)
                    else {**paths, task: path})
    version = replace(view.version, number=view.number + 1, parent=view.number,
                      tasks={**view.version.tasks, task: path.hash})
    summary = view_summary(view).replace_path(task, old, path)
    return SystemView(version=version, root=view.root, paths=merged_paths, summary=summary)
