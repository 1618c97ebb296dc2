"""The per-version component-users summary and lazily read paths (issue 22, item 2): the stored
summary equals the one computed from all paths at every version of random commit sequences
(rollbacks and same-task races included); a plan on a lazy view draws the same children as on
an eager one while reading only the paths it touches; indices written before summaries still
load (computed from their paths, said in the log); damage and newer formats are refused; gc
keeps summaries; the run's report step reads no other task's path and no old index."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random

import pytest
from mu2net_helpers import digits_task, random_root_store, tiny_config

from mu2net.errors import IntegrityError
from mu2net.schema import ROOT_TASK, Path, SystemVersion, SystemView
from mu2net.search import plan_generation, start_cycle
from mu2net.search_state import Candidate
from mu2net.store.base import ObjectBackend
from mu2net.store.documents import parse_document
from mu2net.store.layout import encode, encode_index, path_key, summary_key, version_key
from mu2net.store.local import LocalBackend
from mu2net.store.maintenance import check_store
from mu2net.store.synthetic import synthetic_blob, synthetic_component, synthetic_extension
from mu2net.store.versioned import VersionedStore
from mu2net.system_view import LazyPaths, SystemSummary

CONFIG = tiny_config()


class Reads(ObjectBackend):
    """Passes everything to `inner`, recording the keys read."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner, self.uri, self.keys = inner, inner.uri, []

    def read(self, key):
        self.keys.append(key)
        return self.inner.read(key)

    def read_range(self, key, start, length):
        self.keys.append(key)
        return self.inner.read_range(key, start, length)

    def write(self, key, data, *, if_generation_match=None):
        return self.inner.write(key, data, if_generation_match=if_generation_match)

    def exists(self, key):
        return self.inner.exists(key)

    def list(self, prefix):
        return self.inner.list(prefix)

    def list_info(self, prefix):
        return self.inner.list_info(prefix)

    def delete(self, key):
        self.inner.delete(key)

    def sweep_partial(self, older_than, dry_run=True):
        return self.inner.sweep_partial(older_than, dry_run)


def _root(folder: str) -> tuple[Path, dict[str, str]]:
    comps, files = [], {}
    for name in ("embedding", "encoderblock_0", "encoderblock_1", "head"):
        data = synthetic_blob(f"root/{name}", 32)
        comp = synthetic_component(ROOT_TASK, name, data)
        files[comp.blob] = os.path.join(folder, comp.blob)
        with open(files[comp.blob], "wb") as fh:
            fh.write(data)
        comps.append(comp)
    return Path(task=ROOT_TASK, components=tuple(comps), hparams={}, method_version="m1"), files


def _eager(store: VersionedStore, number: int) -> SystemView:
    """The version with every path read, and no stored summary (the old computation)."""
    version = store.read_version(number)
    paths = {t: store.read_path(h) for t, h in version.tasks.items()}
    return SystemView(version=version, root=store.read_path(version.root), paths=paths)


def _check_summary(store: VersionedStore, number: int) -> None:
    eager = _eager(store, number)
    version = eager.version
    assert version.summary is not None, f"version {number} has no summary"
    stored = store.read_summary(version.summary)
    assert stored.users() == eager.component_users(), f"version {number}"
    assert stored.to_dict() == SystemSummary.from_paths(eager.paths.items()).to_dict()
    lazy = store.load_system(number)
    assert lazy.component_users() == eager.component_users()
    assert lazy.total_params() == eager.total_params()
    for path in eager.paths.values():
        assert lazy.accounted_params(path) == eager.accounted_params(path)


def _race_scorer(path: Path, view: SystemView) -> float:
    """Reads accounted params from the merged (lazy) view, checking it against its paths."""
    eager = SystemView(version=view.version, root=view.root, paths=dict(view.paths.items()))
    assert view.component_users() == eager.component_users()
    return float(path.metrics["validation_accuracy"]) - 1e-9 * view.accounted_params(path)


@pytest.mark.parametrize("seed", range(6))
def test_the_stored_summary_equals_the_users_computed_from_all_paths_at_every_version(
        tmp_path, seed) -> None:
    rng = random.Random(seed)
    store = VersionedStore(LocalBackend(str(tmp_path / "store"), fsync=False),
                           scorer=_race_scorer if seed % 2 else None)
    root, files = _root(str(tmp_path))
    store.init(root, files, {"run_id": "init"})
    _check_summary(store, 0)
    names = [f"t{i}" for i in range(6)]
    for step in range(22):
        head = store.head()
        view = store.load_system(head)
        existing = sorted(view.paths)
        op = rng.random()
        if op < 0.3 and existing and head > 1:  # roll a task back to an earlier path
            task = rng.choice(existing)
            earlier = [n for n in range(1, head) if task in store.read_version(n).tasks]
            if earlier:
                store.rollback_task(task, rng.choice(earlier), f"rb-{step}")
        else:
            # a base older than the head: a same-task race when the task changed since
            base = rng.randint(max(0, head - 3), head) if op < 0.55 else head
            base_view = store.load_system(base)
            task = rng.choice(names)
            others = sorted(t for t in base_view.paths if t != task)
            reuse = {name: rng.choice(others) for name in ("encoderblock_0", "encoderblock_1")
                     if others and rng.random() < 0.5}
            own = tuple(n for n in ("embedding", "encoderblock_0", "encoderblock_1")
                        if n not in reuse and rng.random() < 0.3)
            metrics = {"validation_accuracy": rng.random()}
            if rng.random() < 0.7:
                metrics["test_accuracy"] = rng.random()
            ext = synthetic_extension(base_view, task, str(tmp_path / f"b{step}"), own=own,
                                      reuse=reuse, adapters=[0] if rng.random() < 0.3 else [],
                                      metrics=metrics, run_id=f"run-{step}")
            store.commit(ext)
        _check_summary(store, store.head())
    for number in range(store.head() + 1):  # and every older one, read afresh
        _check_summary(VersionedStore(LocalBackend(str(tmp_path / "store"))), number)


def _plan_store(tmp_path) -> tuple[VersionedStore, list[str]]:
    """A store of 8 tasks: shared components, and parent links between tasks (ancestry)."""
    store = random_root_store(str(tmp_path), CONFIG)
    names = [f"task{i}" for i in range(12)]
    for i, task in enumerate(names):
        view = store.load_system()
        others = sorted(view.paths)
        reuse = {"encoderblock_0": others[-1]} if others and i % 2 else {}
        ext = synthetic_extension(view, task, str(tmp_path / task), own=("encoderblock_0",)
                                  if not reuse else (), reuse=reuse, run_id=f"r-{task}",
                                  metrics={"validation_accuracy": 0.5 + i / 20})
        if others and i % 2:  # parent: another task's path, so the ancestry walks a chain
            parent = view.paths[others[-1]]
            ext = dataclasses.replace(ext, path=dataclasses.replace(
                ext.path, parent=parent.hash, parent_task=parent.task))
        store.commit(ext)
    return store, names


def test_a_plan_on_the_lazy_view_draws_the_same_children_as_on_the_eager_view(tmp_path):
    store, names = _plan_store(tmp_path)
    head = store.head()
    info = digits_task(names[3], limit=60).info
    config = CONFIG.replace(search=dataclasses.replace(CONFIG.search,
                                                       children_per_generation=4))
    drawn = set()
    for seed in range(12):
        eager = _eager(store, head)
        state0 = start_cycle(eager, info, config, seed=seed, run_id="r", mode="iterate",
                             kept_cycles=0)
        published = eager.paths[names[3]]
        # own, unpublished members with many offspring: the uniform fallback draws mostly
        extra = dataclasses.replace(published, hparams={**published.hparams, "opt_lr": 0.01})
        population = tuple(Candidate(c.path, c.score, 30) for c in state0.population) + (
            Candidate(extra, 0.1, 30),)
        state0 = state0.replace(population=population)
        reads = Reads(LocalBackend(str(tmp_path / "store")))
        lazy = VersionedStore(reads).load_system(head)
        assert isinstance(lazy.paths, LazyPaths)
        plans = []
        for view in (eager, lazy):
            state, all_specs = state0, []
            for _ in range(config.search.generations_per_cycle):
                state, specs = plan_generation(state, view, config)
                all_specs += [spec.to_dict() for spec in specs]
                state = state.replace(generation=state.generation + 1)
            plans.append((json.dumps(all_specs, sort_keys=True),
                          json.dumps(state.to_dict(), sort_keys=True)))
            drawn |= {spec["parent_task"] for spec in all_specs}
        assert plans[0] == plans[1]
        # one plan of 4 children reads the root, the task's own path, and the 4 drawn paths
        # with their parents (chains of at most 2 here): not all 12 (plus the root)
        reads = Reads(LocalBackend(str(tmp_path / "store")))
        plan_generation(state0, VersionedStore(reads).load_system(head), config)
        read = {k for k in reads.keys if k.startswith("paths/")}
        assert len(read) <= 1 + 1 + 4 * 2 < len(names) + 1
    assert ROOT_TASK in drawn and len(drawn - {ROOT_TASK, names[3]}) >= 3


def test_a_version_written_before_summaries_loads_and_the_next_commit_writes_one(
        tmp_path, caplog) -> None:
    store = VersionedStore(LocalBackend(str(tmp_path / "store"), fsync=False))
    root, files = _root(str(tmp_path))
    store.init(root, files, {"run_id": "init"})
    view = store.load_system(0)
    for task in ("a", "b"):
        store.commit(synthetic_extension(store.load_system(), task, str(tmp_path / task),
                                         run_id=f"r-{task}",
                                         metrics={"validation_accuracy": 0.5}))
    # Version 3 as an older mu2net wrote it: format 1, no summary.
    head = store.read_version(2)
    old = SystemVersion(number=3, parent=2, root=head.root, tasks=dict(head.tasks),
                        provenance={**head.provenance, "run_id": "old"})
    assert "format" not in old.to_dict() and "summary" not in old.to_dict()
    store.backend.write(version_key(3), encode_index(old), if_generation_match=0)
    fresh = VersionedStore(LocalBackend(str(tmp_path / "store")))
    with caplog.at_level(logging.INFO, logger="mu2net.store.summaries"):
        loaded = fresh.load_system(3)
        assert loaded.component_users() == _eager(fresh, 3).component_users()
    assert "predates the stored component-users summary (index format 1)" in caplog.text
    view = fresh.load_system(3)
    fresh.commit(synthetic_extension(view, "c", str(tmp_path / "c"), run_id="r-c",
                                     metrics={"validation_accuracy": 0.5}))
    assert fresh.read_version(4).to_dict()["format"] == 2
    _check_summary(fresh, 4)


def test_a_newer_index_format_and_a_damaged_summary_are_refused_by_name(tmp_path) -> None:
    store = VersionedStore(LocalBackend(str(tmp_path / "store"), fsync=False))
    root, files = _root(str(tmp_path))
    store.init(root, files, {"run_id": "init"})
    store.commit(synthetic_extension(store.load_system(), "a", str(tmp_path / "a"),
                                     run_id="r-a", metrics={"validation_accuracy": 0.5}))
    doc = store.read_version(1).to_dict()
    store.backend.write(version_key(2), encode({**doc, "number": 2, "parent": 1,
                                                "format": 3}), if_generation_match=0)
    with pytest.raises(IntegrityError, match=r"format=3 is invalid.*upgrade mu2net"):
        VersionedStore(store.backend).read_version(2)
    store.backend.delete(version_key(2))
    summary = store.read_version(1).summary
    store.backend.write(summary_key(summary), b'{"schema": "mu2net/system_summary/v1"}')
    fresh = VersionedStore(store.backend)
    with pytest.raises(IntegrityError, match=r"system summary .*summaries/.* is tampered"):
        fresh.load_system(1).component_users()
    report = check_store(fresh)
    assert any(summary in problem for problem in report.problems), report.problems
    # The summary's checker types every value: deep nesting is refused without the depth walk.
    deep = {"schema": "mu2net/system_summary/v1", "test_accuracy": {},
            "components": {"c": {"params": 1, "users": [["a"] * 1] * 1}}}
    for _ in range(60):
        deep["components"]["c"]["users"] = [deep["components"]["c"]["users"]]
    with pytest.raises(IntegrityError, match=r"components\['c'\].* is invalid"):
        parse_document("system_summary", json.dumps(deep).encode(), "summaries/x.json")
    with pytest.raises(IntegrityError, match="nests deeper than the JSON parser"):
        parse_document("system_summary", b"[" * 100_000, "summaries/x.json")


def test_gc_keeps_the_summaries_and_check_finds_a_wrong_one(tmp_path) -> None:
    store = VersionedStore(LocalBackend(str(tmp_path / "store"), fsync=False))
    root, files = _root(str(tmp_path))
    store.init(root, files, {"run_id": "init"})
    for i in range(3):
        store.commit(synthetic_extension(store.load_system(), "a", str(tmp_path / f"a{i}"),
                                         run_id=f"r-{i}",
                                         metrics={"validation_accuracy": 0.5 + i / 10}))
    store.gc(retention_s=0.0, dry_run=False)
    for number in range(4):
        _check_summary(store, number)
    assert check_store(store).ok
    # A summary that parses but does not match the head's paths (written by a buggy writer).
    head = store.read_version(3)
    wrong = SystemSummary(components={"x/head/0": (1, ("a",))})
    store.backend.write(summary_key(wrong.hash), encode(wrong.to_dict()))
    store.backend.delete(version_key(3))
    store.backend.write(version_key(3), encode_index(dataclasses.replace(head,
                                                                         summary=wrong.hash)))
    report = check_store(VersionedStore(store.backend))
    assert any("does not match its paths" in p for p in report.problems), report.problems


def test_the_run_report_reads_only_its_task_the_summary_and_recent_provenance(tmp_path):
    from mu2net import report, run_page
    from mu2net.scoring import path_metrics

    store = random_root_store(str(tmp_path), CONFIG)
    tasks = [f"t{i:02d}" for i in range(12)]
    for n in range(70):  # 12 tasks, then re-published round robin: 70 versions
        task = tasks[n % len(tasks)]
        store.commit(synthetic_extension(store.load_system(), task, str(tmp_path / f"b{n}"),
                                         run_id=f"r-{n}",
                                         metrics={"validation_accuracy": 0.5,
                                                  "test_accuracy": 0.4 + n / 200}))
    head = store.head()
    reads = Reads(LocalBackend(str(tmp_path / "store")))
    fresh = VersionedStore(reads)
    view = fresh.load_system(head)
    task = store.read_version(head).provenance["task"]
    path = view.paths[task]
    metrics = path_metrics(path, view, CONFIG)
    commit = {"task": task, "version": head, "created": True, "run_id": "r", "rebases": 0,
              "base_version": head - 1, "new_components": [], "note": ""}
    report.run_markdown(commit, metrics, view, CONFIG, [])
    page = run_page.run_html(fresh, view, task)
    version = store.read_version(head)
    allowed_paths = {path_key(version.tasks[task]), path_key(version.root)}
    assert {k for k in reads.keys if k.startswith("paths/")} == allowed_paths
    indices = sorted({int(k[len("versions/"):-len(".json")]) for k in reads.keys
                      if k.startswith("versions/")})
    assert indices[0] == head - run_page.RUN_HISTORY + 1 and indices[-1] == head
    assert {k for k in reads.keys if k.startswith("summaries/")} == {summary_key(
        version.summary)}
    assert f"{len(tasks)} tasks" in page and "mu2net report" in page
    rows = run_page.provenance_rows(fresh, head)
    full = {r["version"]: r for r in report.history_rows(store)}
    for row in rows:  # the provenance totals agree with the history computed from the paths
        other = full[row["version"]]
        assert row["tasks"] == other["tasks"] and row["change"] == other["change"]
        assert row["total_params"] == other["total_params"]
        assert row["separate_params"] == other["separate_params"]
        assert row["mean_test_accuracy"] == pytest.approx(other["mean_test_accuracy"])
        assert row["task_test_accuracy"] == other["task_test_accuracy"]
