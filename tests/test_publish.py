"""Publish only what changed (issue 24, point 4): a cycle that keeps its parent's path and a
rollback to the path a task already has publish nothing and say so; an optional
minimum-improvement gate; task aliases (`prod`) that serving reads and gc keeps."""

import dataclasses
import json
import time

import numpy as np
import pytest
from mu2net_helpers import digits_task, random_root_store
from test_store import init_store, make_extension, make_store

from mu2net.cli import main
from mu2net.config import get_config
from mu2net.errors import ConfigError, SchemaError, StoreError
from mu2net.report import one_line
from mu2net.store.layout import blob_key

ACCURACY = lambda path, view: path.metrics["validation_accuracy"]  # noqa: E731


def same_model_new_metrics(ext, run_id, base_version):
    path = dataclasses.replace(ext.path, metrics={**ext.path.metrics, "num_cycles": 2,
                                                  "test_accuracy": 0.4})
    return dataclasses.replace(ext, path=path, run_id=run_id, base_version=base_version,
                               blob_files={}, mode="iterate")


def test_a_cycle_that_keeps_its_parents_path_publishes_nothing(store_uri, tmp_path):
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    assert store.commit(a1).version == 1
    kept = same_model_new_metrics(a1, "a1-iterate", 1)
    assert kept.path.hash != a1.path.hash  # the cycle's metrics differ; the model does not
    result = store.commit(kept)
    assert (result.version, result.created) == (1, False)
    assert result.note.startswith("no change: version 1 kept")
    assert store.head() == 1
    other = make_extension(str(tmp_path), root, "svhn", "b1", 1)
    store.commit(other)
    again = store.commit(kept)  # a retried commit step: still nothing, the head is named
    assert (again.version, again.created, store.head()) == (2, False, 2)
    assert again.note.startswith("no change: version 2 kept")


def test_a_rollback_to_the_path_the_task_has_publishes_nothing(store_uri, tmp_path):
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    store.commit(make_extension(str(tmp_path), root, "cifar", "a1", 0))
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9))
    assert store.rollback_task("cifar", 1, "rb-1").version == 3
    second = store.rollback_task("cifar", 1, "rb-2")  # the same rollback twice
    assert (second.version, second.created, store.head()) == (3, False, 3)
    assert "no change: version 3 kept" in second.note and "already has the path of version 1" \
        in second.note
    assert store.rollback_task("cifar", 3, "rb-3").note  # to the head itself


def test_minimum_improvement_gate(store_uri, tmp_path):
    store = make_store(store_uri, scorer=ACCURACY)
    root = init_store(store, str(tmp_path))
    assert store.commit(make_extension(str(tmp_path), root, "cifar", "a1", 0, accuracy=0.5),
                        min_gain=0.05).created  # a new task has nothing to beat
    small = make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.52)
    result = store.commit(small, min_gain=0.05)
    assert (result.created, result.version, store.head()) == (False, 1, 1)
    assert result.note.startswith("not published: gain 0.02 < gate 0.05")
    assert store.commit(small).created  # gate off (0, the default): published
    big = make_extension(str(tmp_path), root, "cifar", "a3", 2, accuracy=0.6)
    assert store.commit(big, min_gain=0.05).version == 3


def test_the_gate_is_a_publishing_policy_not_part_of_the_method():
    from mu2net.config import PublishConfig

    testing = get_config("testing")
    gated = testing.replace(publish=PublishConfig(min_improvement=0.01))
    assert gated.method_version == testing.method_version
    assert gated.config_hash != testing.config_hash
    assert type(testing).from_json(gated.to_json()) == gated
    old = json.loads(testing.to_json())
    del old["publish"]  # a config recorded before the policy existed
    assert type(testing).from_dict(old) == testing
    with pytest.raises(ConfigError, match=r"publish.min_improvement=-0.1 is invalid"):
        PublishConfig(min_improvement=-0.1)


def test_no_change_says_so_in_the_summary_line_and_report():
    commit = {"task": "digits", "version": 5, "created": False, "run_id": "r", "rebases": 0,
              "base_version": 5, "note": "no change: version 5 kept (x)", "new_components": []}
    line = one_line(commit, {"test_accuracy": 0.9})
    assert line == "digits: no change: version 5 kept (x): test 0.9000"


# === aliases ================================================================================


def test_aliases_name_a_version_and_move_by_compare_and_swap(store_uri, tmp_path):
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9))
    prod = store.set_alias("cifar", "prod", 1)
    assert (prod.version, prod.path, prod.previous) == (1, a1.path.hash, None)
    assert store.resolve_alias("cifar", "prod") == prod
    moved = store.set_alias("cifar", "prod")  # the head
    assert (moved.version, moved.previous) == (2, 1)
    store.set_alias("cifar", "canary", 2)
    assert [(a.task, a.alias) for a in store.aliases()] == [("cifar", "canary"),
                                                           ("cifar", "prod")]
    with pytest.raises(StoreError, match=r"no alias 'beta'.*\['canary', 'prod'\]"):
        store.resolve_alias("cifar", "beta")
    with pytest.raises(SchemaError, match="alias 'Prod!' is invalid"):
        store.set_alias("cifar", "Prod!")
    with pytest.raises(StoreError, match="'svhn' has no path at version 2"):
        store.set_alias("svhn", "prod")
    store.remove_alias("cifar", "canary")
    assert [a.alias for a in store.aliases("cifar")] == ["prod"]


def test_gc_keeps_the_blobs_of_an_aliased_version(store_uri, tmp_path):
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9))
    a1_only = sorted(blob_key(c.blob) for c in a1.path.components if c.name != "embedding")
    store.set_alias("cifar", "prod", 1)
    later = time.time() + 1000  # version 1 is outside a 10 s window by then
    assert store.gc(retention_s=10, now=later, dry_run=False) == []
    store.load_task("cifar", 1)  # still whole
    store.remove_alias("cifar", "prod")
    assert store.gc(retention_s=10, now=later) == a1_only


def test_alias_cli_and_predict_reads_the_aliased_version(tmp_path, capsys):
    """A real task (testing config, one child): a no-change close of its cycle publishes
    nothing; `alias set`, and `predict --task TASK@prod` reads the aliased version."""
    from PIL import Image

    from mu2net.search import close_cycle, evolve, plan_generation, start_cycle

    config = get_config("testing")
    config = config.replace(search=dataclasses.replace(
        config.search, children_per_generation=1, generations_per_cycle=1,
        validations_per_child=1))
    store = random_root_store(tmp_path, config)
    task = digits_task(limit=300)
    ext = evolve(store.load_system(0), task, config, store, seed=0, run_id="r1",
                 workdir=str(tmp_path / "w"))
    assert store.commit(ext).version == 1
    # an iterate cycle whose population never changed: its best is the published path
    system = store.load_system(1)
    assert store.kept_cycles(system, "digits") == 0
    state = start_cycle(system, task.info, config, seed=0, run_id="r2", mode="iterate",
                        kept_cycles=store.kept_cycles(system, "digits"))
    kept = close_cycle(state, task, config, store)
    result = store.commit(kept)
    assert (result.created, store.head()) == (False, 1) and result.note.startswith(
        "no change: version 1 kept")
    # the next cycle counts the one that kept the path: its draws are not a replay of it
    assert store.kept_cycles(store.load_system(1), "digits") == 1
    after = start_cycle(store.load_system(1), task.info, config, seed=0, run_id="r3",
                        mode="iterate", kept_cycles=store.kept_cycles(system, "digits"))
    assert after.cycle == state.cycle + 1
    assert plan_generation(after, system, config)[1] != plan_generation(state, system,
                                                                        config)[1]
    assert store.kept_cycles(system, "letters") == 0  # a task the version does not hold
    uri = store.uri
    assert main(["alias", "set", "digits", "prod", "--at", "1", "--store", uri]) == 0
    assert "digits@prod -> version 1" in capsys.readouterr().out
    assert main(["alias", "list", "--json", "--store", uri]) == 0
    assert [a["alias"] for a in json.loads(capsys.readouterr().out)] == ["prod"]
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    assert main(["predict", str(image), "--task", "digits@prod", "--json", "--store", uri]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["version"], out["alias"]) == (1, "prod")
    assert main(["predict", str(image), "--task", "digits@beta", "--store", uri]) == 2
    assert "no alias 'beta'" in capsys.readouterr().err
    out_dir = tmp_path / "serving"
    assert main(["export", "--task", "digits", "--alias", "prod", "--out", str(out_dir),
                 "--store", uri]) == 0
    meta = json.loads((out_dir / "digits.json").read_text())
    assert (meta["task"], meta["version"], meta["alias"]) == ("digits", 1, "prod")
    assert (out_dir / "digits.keras").exists()
    assert main(["export", "--task", "digits@prod", "--alias", "prod", "--out",
                 str(out_dir), "--store", uri, "--force"]) == 2  # one alias, not two


def test_a_rollback_explains_amortisation(tmp_path, capsys):
    store = make_store(str(tmp_path / "store"))
    root = init_store(store, str(tmp_path))
    store.commit(make_extension(str(tmp_path), root, "cifar", "a1", 0))
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1))
    uri = store.uri
    assert main(["rollback", "--task", "cifar", "--to-version", "1", "--store", uri]) == 0
    assert "accounted params" in capsys.readouterr().out
    assert main(["rollback", "--task", "cifar", "--to-version", "1", "--store", uri]) == 0
    assert "no change: version 3 kept" in capsys.readouterr().out
    assert store.head() == 3



def test_cycles_that_kept_the_path_count_for_the_next_cycle_and_the_gain_rule(
        store_uri, tmp_path):
    """Without a record, a cycle after one that published nothing would start at the same
    cycle number (the same seeds: the same search again) and the re-evolution rule would
    rank the task as if it had not been searched."""
    from mu2net.queue import gain_ranking

    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0, accuracy=0.6)
    store.commit(a1)
    store.commit(make_extension(str(tmp_path), root, "svhn", "b1", 1, accuracy=0.6))
    path_hash = a1.path.hash
    assert store.kept_searches("cifar", path_hash) == 0
    for run in ("k1", "k2", "k2"):  # k2 retried: counted once
        assert store.commit(same_model_new_metrics(a1, run, 2)).note
    assert store.kept_searches("cifar", path_hash) == 2
    view = store.load_system()
    assert [name for _, name in gain_ranking(view)] == ["cifar", "svhn"]  # a tie: by name
    assert [name for _, name in gain_ranking(view, store)] == ["svhn", "cifar"]
    # a new path of the task restarts the count
    a2 = make_extension(str(tmp_path), root, "cifar", "a2", 2, accuracy=0.7)
    store.commit(a2)
    assert store.kept_searches("cifar", a2.path.hash) == 0


def test_the_pipeline_steps_of_a_no_change_cycle_succeed_and_say_so(tmp_path):
    """Through the pipeline's glue (`mu2net.steps`): a task onboarded in one tiny cycle, then
    an iterate cycle whose population never changed. Its commit step succeeds, publishes
    nothing, and is safe to run again; the report says "no change: version 1 kept"; the next
    cycle starts at a later cycle number (other seeds)."""
    import os

    from mu2net import steps
    from mu2net.store import open_store

    config = get_config("testing")
    config = config.replace(search=dataclasses.replace(
        config.search, children_per_generation=1, generations_per_cycle=1,
        validations_per_child=1))
    cfg = {"config_json": config.to_json(), "config_hash": config.config_hash}
    uri = random_root_store(tmp_path, config).uri

    def folder(name):
        os.makedirs(tmp_path / name, exist_ok=True)
        return str(tmp_path / name)

    def start(spec, mode, run_id):
        task_dir, info_dir = folder(f"task-{run_id}"), folder(f"info-{run_id}")
        steps.ingest_step(task_spec=spec, mode=mode, store_uri=uri, data_dir="", run_id=run_id,
                          task_dir=task_dir, info_dir=info_dir, **cfg)
        state_dir = folder(f"state-{run_id}")
        steps.start_step(info_dir=info_dir, store_uri=uri, seed=0, run_id=run_id,
                         state_dir=state_dir, **cfg)
        return task_dir, state_dir

    task_dir, state_dir = start("demo:digits", "onboard", "r1")
    specs = steps.plan_step(state_dir=state_dir, generation=0, store_uri=uri,
                            plan_dir=folder("plan"), **cfg)
    steps.train_step(spec_json=specs[0], plan_dir=folder("plan"), task_dir=task_dir,
                     store_uri=uri, result_dir=folder("result"), tensorboard_dir=folder("tb"),
                     **cfg)
    steps.select_step(plan_dir=folder("plan"), result_dirs=[folder("result")], store_uri=uri,
                      state_dir=folder("state-r1-g0"), **cfg)
    first = steps.commit_step(state_dir=folder("state-r1-g0"), task_dir=task_dir,
                              store_uri=uri, code_version="t", extension_dir=folder("ext1"),
                              **cfg)
    assert first["version"] == 1 and first["metadata"]["published"]

    task_dir, state_dir = start("digits", "iterate", "r2")  # no generation: nothing new
    for _ in range(2):  # the step retried
        out = steps.commit_step(state_dir=state_dir, task_dir=task_dir, store_uri=uri,
                                code_version="t", extension_dir=folder("ext2"), **cfg)
        assert out["version"] == 1 and not out["metadata"]["published"]
        assert out["metadata"]["note"].startswith("no change: version 1 kept")
        assert out["metrics"]["new_components"] == 0
    report = steps.report_step(extension_dir=folder("ext2"), info_dir=folder("info-r2"),
                               store_uri=uri,
                               markdown_path=str(tmp_path / "r.md"),
                               html_path=str(tmp_path / "r.html"), **cfg)
    assert report["line"].startswith("digits: no change: version 1 kept")
    assert "published nothing: no change: version 1 kept" in (tmp_path / "r.md").read_text()
    store = open_store(uri)
    assert store.head() == 1 and "r2" not in [lease.run_id for lease in store.leases()]
    _, state_dir = start("digits", "iterate", "r3")
    assert json.load(open(os.path.join(state_dir, "state.json")))["cycle"] == 2
