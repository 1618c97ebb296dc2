"""The search steps: parent selection, retention, selection, closing a cycle, steps == evolve
with JSON round trips, immutability, and a seeded two-task search on real (sklearn) digits."""

import dataclasses
import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from mu2net_helpers import commit, digits_task, root_system, tiny_config

from mu2net.config import canonical_json
from mu2net.errors import SchemaError, TaskError
from mu2net.params_io import sha256_bytes
from mu2net.predict import predict
from mu2net.schema import ROOT_TASK, Path, SystemVersion, SystemView
from mu2net.search import (
    ChildResult,
    ChildSpec,
    close_cycle,
    evolve,
    plan_generation,
    select,
    start_cycle,
    train_child,
)
from mu2net.search_state import Candidate, SearchState

CONFIG = tiny_config(examples_between_validations=64, test_examples=128)
SEED = 0


def roundtrip(obj, cls):
    return cls.from_dict(json.loads(canonical_json(obj.to_dict())))


def file_hashes(folder):
    return {name: sha256_bytes(open(os.path.join(folder, name), "rb").read())
            for name in sorted(os.listdir(folder))}


# === a seeded two-task search, shared by several tests ======================================


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """Root -> onboard `digits` (A) -> onboard `digits_low` (B, a class subset)."""
    base = str(tmp_path_factory.mktemp("two_tasks"))
    system0, store = root_system(CONFIG, os.path.join(base, "store"))
    task_a = digits_task("digits")
    task_b = digits_task("digits_low", classes=(0, 1, 2, 3, 4))
    ext_a = evolve(system0, task_a, CONFIG, store, seed=SEED, run_id="run-a",
                   workdir=os.path.join(base, "a"))
    state_a = SearchState.from_json(open(os.path.join(base, "a", "state.json")).read())
    system1 = commit(system0, ext_a, store)
    test_images = task_a.arrays("test")[0]
    preds_before = predict(system1, "digits", test_images, store)
    store_before = file_hashes(store.root)
    ext_b = evolve(system1, task_b, CONFIG, store, seed=SEED, run_id="run-b",
                   workdir=os.path.join(base, "b"))
    state_b = SearchState.from_json(open(os.path.join(base, "b", "state.json")).read())
    system2 = commit(system1, ext_b, store)
    return dict(base=base, store=store, system0=system0, system1=system1, system2=system2,
                task_a=task_a, task_b=task_b, ext_a=ext_a, ext_b=ext_b, state_a=state_a,
                state_b=state_b, preds_before=preds_before, store_before=store_before,
                test_images=test_images)


def test_two_task_search_clones_rejects_transfers_and_shares(two_tasks):
    history = list(two_tasks["state_a"].history) + list(two_tasks["state_b"].history)
    assert len(history) == 2 * CONFIG.search.generations_per_cycle * \
        CONFIG.search.children_per_generation
    drawn_clones = [m for h in history for m in h["mutations"]
                    if m.startswith("clone:") and m != "clone:encoder_norm"]
    assert drawn_clones, "no layer-cloning mutation fired"
    assert any(not h["improved"] for h in history), "no child was rejected"
    b_parents = {h["parent_task"] for h in two_tasks["state_b"].history}
    assert b_parents & {ROOT_TASK, "digits"}, "task B never started from another task's path"
    path_a = two_tasks["ext_a"].path
    path_b = two_tasks["ext_b"].path
    shared = set(path_a.component_ids) & set(path_b.component_ids)
    assert shared, "the second task shares no component with the first"
    assert all(not cid.startswith("digits_low/") for cid in shared)
    # every published component of B is either frozen and shared, or new and owned by B
    for comp in path_b.components:
        assert comp.creator in (ROOT_TASK, "digits", "digits_low")
    # the head is B's own, zero-initialised then trained: never borrowed
    assert path_b.component("head").creator == "digits_low"
    assert path_b.hparams["num_classes"] == 5


def test_immutability_other_tasks_predictions_are_bit_identical(two_tasks):
    after = predict(two_tasks["system2"], "digits", two_tasks["test_images"], two_tasks["store"])
    np.testing.assert_array_equal(after, two_tasks["preds_before"])
    assert two_tasks["system2"].paths["digits"] == two_tasks["system1"].paths["digits"]
    # nothing already stored was rewritten: only new blobs were added
    now = file_hashes(two_tasks["store"].root)
    for name, digest in two_tasks["store_before"].items():
        assert now[name] == digest
    assert set(now) - set(two_tasks["store_before"]) == {
        f"{b}.npz" for b in two_tasks["ext_b"].blob_files}


def test_extension_holds_the_best_path_with_test_accuracy_and_only_new_blobs(two_tasks):
    ext = two_tasks["ext_b"]
    state = two_tasks["state_b"]
    assert ext.task == "digits_low" and ext.base_version == 1 and ext.run_id == "run-b"
    assert ext.path.metrics["validation_accuracy"] == state.best().path.metrics[
        "validation_accuracy"]
    assert 0.0 <= ext.path.metrics["test_accuracy"] <= 1.0
    assert ext.path.metrics["num_cycles"] == 1
    known = {c.blob for p in two_tasks["system1"].all_paths() for c in p.components}
    new = {c.blob for c in ext.path.components if c.blob not in known}
    assert set(ext.blob_files) == new
    assert {c.creator for c in ext.path.components if c.blob in new} == {"digits_low"}
    for digest, file_path in ext.blob_files.items():
        assert sha256_bytes(open(file_path, "rb").read()) == digest
    # the test accuracy is the path's own: recomputing it from the committed system agrees
    images, labels = two_tasks["task_b"].arrays("test")
    n = ext.path.metrics["test_examples"]
    logits = predict(two_tasks["system2"], "digits_low", images[:n], two_tasks["store"])
    assert float(np.mean(logits.argmax(1) == labels[:n])) == ext.path.metrics["test_accuracy"]


def test_steps_with_json_round_trips_give_the_same_extension_as_evolve(two_tasks, tmp_path):
    system, store, task = two_tasks["system0"], two_tasks["store"], two_tasks["task_a"]
    state = roundtrip(start_cycle(system, task.info, CONFIG, seed=SEED, run_id="run-a"),
                      SearchState)
    while state.generation < CONFIG.search.generations_per_cycle:
        state, specs = plan_generation(state, system, CONFIG)
        state = roundtrip(state, SearchState)
        specs = [roundtrip(s, ChildSpec) for s in specs]
        results = []
        for spec in specs:
            out = str(tmp_path / f"gen{spec.generation}_child{spec.index}")
            results.append(roundtrip(train_child(spec, state, system, task, CONFIG, store, out),
                                     ChildResult))
        state = roundtrip(select(state, results, CONFIG), SearchState)
    ext = close_cycle(state, task, CONFIG, store)
    reference = two_tasks["ext_a"]
    assert ext.path == reference.path
    assert ext.path.hash == reference.path.hash
    assert set(ext.blob_files) == set(reference.blob_files)
    for digest in ext.blob_files:
        assert open(ext.blob_files[digest], "rb").read() == \
            open(reference.blob_files[digest], "rb").read()
    assert {k: v for k, v in ext.to_dict().items() if k != "blob_files"} == \
        {k: v for k, v in reference.to_dict().items() if k != "blob_files"}
    evolved = two_tasks["state_a"]
    assert [h["path"] for h in state.history] == [h["path"] for h in evolved.history]


def test_iterate_mode_starts_from_the_published_path_and_clones_its_own_components(two_tasks):
    system, task = two_tasks["system2"], two_tasks["task_a"]
    with pytest.raises(TaskError, match="already in system version 2"):
        start_cycle(system, task.info, CONFIG, seed=0, run_id="r")
    with pytest.raises(TaskError, match="not in system version 0"):
        start_cycle(two_tasks["system0"], task.info, CONFIG, seed=0, run_id="r", mode="iterate")
    with pytest.raises(TaskError, match="kept_cycles=None for an iterate cycle of 'digits'"):
        start_cycle(system, task.info, CONFIG, seed=0, run_id="r2", mode="iterate")
    state = start_cycle(system, task.info, CONFIG, seed=0, run_id="r2", mode="iterate",
                        kept_cycles=0)
    published = system.paths["digits"]
    assert [c.path for c in state.population] == [published] and state.cycle == 1
    assert state.population[0].offspring == published.metrics["offspring"] >= 1
    state, specs = plan_generation(state, system, CONFIG)
    first = specs[0]
    assert first.parent == published.hash and first.parent_score == state.population[0].score
    users = system.component_users()
    for slot in first.plan:
        src = slot.source
        if src is not None and src.creator == "digits" and users[src.id] == {"digits"}:
            assert slot.action == "clone", slot.name  # own, unshared: trainable, so cloned


# === parent selection ========================================================================


def _fake_path(task, hparams_changes=None, accuracy=0.5, parent=None):
    root, _ = _root()
    hp = {**root.hparams, "num_classes": 10, **(hparams_changes or {})}
    return Path(task, root.components, hp, CONFIG.method_version,
                parent=(parent or root).hash, parent_task=(parent or root).task,
                metrics={"validation_accuracy": accuracy})


_ROOT_CACHE = {}


def _root():
    if "root" not in _ROOT_CACHE:
        from mu2net.root import build_root

        _ROOT_CACHE["root"] = build_root(CONFIG, mode="random", seed=0)
    return _ROOT_CACHE["root"]


def _system(*paths):
    root, _ = _root()
    by_task = {p.task: p for p in paths}
    version = SystemVersion(len(paths), None if not paths else len(paths) - 1, root.hash,
                            {t: p.hash for t, p in by_task.items()})
    return SystemView(version, root, by_task)


def _state(population=(), seed=0, config=CONFIG):
    if "info" not in _ROOT_CACHE:
        _ROOT_CACHE["info"] = digits_task("digits", limit=60).info
    return SearchState(task="digits", task_info=_ROOT_CACHE["info"], config_name=config.name,
                       method_version=config.method_version, base_version=0, seed=seed,
                       run_id="r", population=tuple(population))


def test_decay_parent_selection_frequencies():
    config = CONFIG.replace(search=dataclasses.replace(CONFIG.search, children_per_generation=3))
    best = Candidate(_fake_path("digits", accuracy=0.9), 0.9, 0)
    second = Candidate(_fake_path("digits", {"opt_lr": 0.02}, accuracy=0.8), 0.8, 0)
    system = _system(_fake_path("letters"))
    counts = [Counter() for _ in range(3)]
    runs = 400
    for seed in range(runs):
        state, specs = plan_generation(_state([second, best], seed, config), system, config)
        for i, spec in enumerate(specs):
            counts[i][spec.parent] += 1
        assert sum(c.offspring for c in state.population) == sum(
            s.parent_task == "digits" for s in specs)
    b, s = best.path.hash, second.path.hash
    # child 0: the best path has no offspring yet -> taken with probability 1
    assert counts[0] == Counter({b: runs})
    # child 1: best taken with 0.5**1; otherwise the second (0.5**0 = 1)
    assert counts[1][b] / runs == pytest.approx(0.5, abs=0.07)
    assert counts[1][b] + counts[1][s] == runs
    # child 2 after (b, b): best 1/4, second 3/4; after (b, s): best 1/2, second 1/4, other 1/4
    expected_b = 0.5 * 0.25 + 0.5 * 0.5
    assert counts[2][b] / runs == pytest.approx(expected_b, abs=0.07)
    assert sum(counts[2].values()) == runs


def test_uniform_parent_selection_over_all_tasks_and_the_root_for_a_new_task():
    system = _system(_fake_path("letters"), _fake_path("shapes"))
    counts = Counter()
    for seed in range(300):
        _, specs = plan_generation(_state(seed=seed), system, CONFIG)
        for spec in specs:
            counts[spec.parent_task] += 1
            assert spec.parent_score is None  # another task: the child must only be trained
    assert set(counts) == {ROOT_TASK, "letters", "shapes"}
    for task in counts:
        assert counts[task] / 600 == pytest.approx(1 / 3, abs=0.06)


def test_uniform_fallback_includes_the_tasks_own_unpublished_population():
    # decay selection passes over a member with many offspring (0.5 ** 60), so every child
    # falls back to the uniform choice: the root, letters, or the task's own member.
    own = Candidate(_fake_path("digits", {"opt_lr": 0.02}, accuracy=0.7), 0.7, 60)
    system = _system(_fake_path("letters"))
    counts = Counter()
    for seed in range(300):
        state, specs = plan_generation(_state([own], seed), system, CONFIG)
        for spec in specs:
            counts[spec.parent_task] += 1
            if spec.parent == own.path.hash:  # a same-task parent: the child must beat it
                assert spec.parent_score == own.score
        assert state.population[0].offspring == 60 + sum(
            spec.parent == own.path.hash for spec in specs)
    assert set(counts) == {ROOT_TASK, "letters", "digits"}
    for task in counts:
        assert counts[task] / 600 == pytest.approx(1 / 3, abs=0.06)


def test_offspring_counts_persist_from_one_cycle_to_the_next():
    published = Path("digits", _fake_path("digits").components, _fake_path("digits").hparams,
                      CONFIG.method_version, metrics={"validation_accuracy": 0.8, "offspring": 3,
                                                      "num_cycles": 2})
    system = _system(published, _fake_path("letters"))
    state = start_cycle(system, _state().task_info, CONFIG, seed=0, run_id="r", mode="iterate",
                        kept_cycles=0)
    assert state.population[0].offspring == 3 and state.cycle == 2
    # taken by decay selection with probability 0.5 ** 3, not 1 as for a fresh path
    firsts = Counter(plan_generation(start_cycle(system, _state().task_info, CONFIG, seed=s,
                                                 run_id="r", mode="iterate", kept_cycles=0),
                                     system, CONFIG)[1][0].parent == published.hash
                     for s in range(300))
    assert firsts[True] / 300 == pytest.approx(0.125 + 0.875 / 3, abs=0.07)


def test_generation_shares_data_hparams_and_data_seed_and_plans_are_reproducible():
    system = _system(_fake_path("letters"))
    state = _state([Candidate(_fake_path("digits", {"_mu_": 0.3}), 0.5, 0)], seed=7)
    s1, specs = plan_generation(state, system, CONFIG)
    s2, again = plan_generation(state, system, CONFIG)
    assert [x.to_dict() for x in specs] == [x.to_dict() for x in again] and s1 == s2
    assert len({x.data_seed for x in specs}) == 1
    ds = [{k: v for k, v in x.hparams.items() if k.startswith("ds_")} for x in specs]
    assert all(d == ds[0] for d in ds)
    assert all(x.hparams["num_classes"] == 10 for x in specs)
    with pytest.raises(SchemaError, match="close it"):
        plan_generation(state.replace(generation=2), system, CONFIG)


# === retention and selection =================================================================


def test_retention_rule_keeps_a_child_only_if_it_reaches_its_same_task_parent(tmp_path):
    system, store = root_system(CONFIG, str(tmp_path / "store"))
    task = digits_task("digits", limit=300)
    state = start_cycle(system, task.info, CONFIG, seed=1, run_id="r")
    state, specs = plan_generation(state, system, CONFIG)
    spec = specs[0]
    assert spec.parent_score is None  # a new task: best starts at -inf, always retained
    kept = train_child(spec, state, system, task, CONFIG, store, str(tmp_path / "kept"))
    assert kept.improved and kept.new_blobs
    assert kept.path.metrics["validation_accuracy"] == max(kept.metrics["validation_curve"])
    assert kept.score <= kept.path.metrics["validation_accuracy"]
    # ">=": a parent with exactly the child's score is matched, so the child is retained
    tie = train_child(dataclasses.replace(spec, parent_score=kept.score), state, system, task,
                      CONFIG, store, str(tmp_path / "tie"))
    assert tie.improved and tie.path == kept.path
    # a better parent is not reached: rejected, nothing written
    beaten = train_child(dataclasses.replace(spec, parent_score=kept.score + 1e-9), state,
                         system, task, CONFIG, store, str(tmp_path / "beaten"))
    assert not beaten.improved and beaten.new_blobs == {}
    assert not os.path.exists(str(tmp_path / "beaten"))
    state2 = select(state, [beaten, dataclasses.replace(tie, spec=specs[1])], CONFIG)
    assert len(state2.population) == 1 and state2.generation == 1
    assert set(state2.staged_blobs) == set(tie.new_blobs)
    assert [h["improved"] for h in state2.history] == [False, True]


def _result(spec_index, score, generation=0, improved=True, tag=""):
    path = _fake_path("digits", {"opt_lr": 0.02 if tag else 0.01}, accuracy=score)
    path = dataclasses.replace(path, metrics={**path.metrics, "tag": f"{spec_index}{tag}"})
    spec = ChildSpec(task="digits", generation=generation, index=spec_index, parent=path.parent,
                     parent_task=ROOT_TASK, parent_score=None, hparams=dict(path.hparams),
                     plan=(), mutations=(), data_seed=1,
                     method_version=CONFIG.method_version)
    blob = sha256_bytes(f"{spec_index}{tag}{generation}".encode())
    return ChildResult(spec=spec, path=path, metrics={"validation_accuracy": score},
                       improved=improved, score=score,
                       new_blobs={blob: f"/tmp/{blob}.npz"} if improved else {})


def test_select_caps_the_population_by_score_and_stages_accepted_blobs():
    config = CONFIG.replace(search=dataclasses.replace(CONFIG.search, population_cap=2))
    state = _state(config=config)
    state = select(state, [_result(0, 0.5), _result(1, 0.7)], config)
    assert [c.score for c in state.population] == [0.7, 0.5]
    state = select(state, [_result(0, 0.6, 1, tag="x"), _result(1, 0.9, 1, improved=False)],
                   config)
    assert [c.score for c in state.population] == [0.7, 0.6]
    assert len(state.staged_blobs) == 3 and state.generation == 2
    assert [h["improved"] for h in state.history] == [True, True, True, False]
    # a tie keeps the newest and makes it the best
    state = select(state, [_result(0, 0.7, 2, tag="y"), _result(1, 0.1, 2, improved=False)],
                   config)
    assert [c.path.metrics["tag"] for c in state.population] == ["1", "0y"]
    assert state.best().path.metrics["tag"] == "0y"
    assert roundtrip(state, SearchState) == state


def test_select_refuses_results_of_another_generation_or_an_incomplete_set():
    state = _state()
    with pytest.raises(SchemaError, match="does not belong to generation 0"):
        select(state, [_result(0, 0.5, 1), _result(1, 0.5, 1)], CONFIG)
    with pytest.raises(SchemaError, match=r"expected exactly \[0, 1\]"):
        select(state, [_result(0, 0.5)], CONFIG)
    assert select(state, [_result(1, 0.5)], CONFIG, allow_missing=True).generation == 1
    with pytest.raises(SchemaError, match="expected exactly"):
        select(state, [_result(1, 0.5), _result(1, 0.6)], CONFIG, allow_missing=True)


def test_specs_and_results_round_trip_through_json():
    system = _system(_fake_path("letters"))
    _, specs = plan_generation(_state(seed=5), system, CONFIG)
    for spec in specs:
        assert roundtrip(spec, ChildSpec) == spec
    result = _result(0, 0.5)
    assert roundtrip(result, ChildResult) == result
    rejected = dataclasses.replace(_result(1, 0.5, improved=False), score=-math.inf)
    assert roundtrip(rejected, ChildResult).score == -math.inf
    with pytest.raises(SchemaError, match="child_spec.schema"):
        ChildSpec.from_dict({"schema": "x"})


def test_train_child_refuses_other_task_data(tmp_path):
    system, store = root_system(CONFIG, str(tmp_path / "store"))
    task = digits_task("digits", limit=100)
    state, specs = plan_generation(start_cycle(system, task.info, CONFIG, seed=1, run_id="r"),
                                   system, CONFIG)
    changed = digits_task("digits", limit=120)
    with pytest.raises(TaskError, match="prepared data changed"):
        train_child(specs[0], state, system, changed, CONFIG, store, str(tmp_path))
