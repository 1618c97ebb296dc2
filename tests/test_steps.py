"""The glue between pipeline steps and the library (mu2net/steps.py), the re-evolution rule,
the status JSON and the CLI's error handling, on a real local store (no training)."""

import json
import os

import numpy as np
import pytest
from mu2net_helpers import random_root_store

from mu2net import queue, steps, tensorboard
from mu2net.blobs import STAGED_IN_STORE
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.errors import ConfigError, SchemaError, TaskError
from mu2net.schema import Extension, Path
from mu2net.search_state import SearchState
from mu2net.status import status_dict
from mu2net.task_info import TaskInfo

CONFIG = get_config("testing")


@pytest.fixture
def store(tmp_path):
    """A local store at version 0 (random root)."""
    return random_root_store(tmp_path, CONFIG)


def commit_task(store, task, val_acc, run_id):
    """Publish a path for `task` made only of the root's frozen components (no training),
    counting its cycles as `close_cycle` does; each is a new model (an hparam differs), since
    a path equal to the published one is not published again."""
    system = store.load_system()
    root, published = system.root, system.paths.get(task)
    cycles = 1 if published is None else int(published.metrics["num_cycles"]) + 1
    path = Path(task=task, components=root.components,
                hparams={**root.hparams, "opt_lr": 0.01 * cycles},
                method_version=CONFIG.method_version, parent=root.hash, parent_task="_root",
                metrics={"validation_accuracy": val_acc, "test_accuracy": val_acc - 0.01,
                         "num_cycles": cycles})
    mode = "iterate" if published is not None else "onboard"
    ext = Extension(task=task, base_version=store.head(), path=path, blob_files={},
                    run_id=run_id, config_name=CONFIG.name, mode=mode)
    return store.commit(ext)


def task_info(name, source):
    return TaskInfo(name=name, source=source, num_classes=2, class_names=("a", "b"),
                    split_sizes={"train": 4, "validation": 2, "test": 2}, image_shape=(8, 8, 1),
                    content_hash="0" * 64)


def test_config_hash_mismatch_is_refused():
    assert steps.load_config(CONFIG.to_json(), CONFIG.config_hash) == CONFIG
    other = get_config("cpu_demo")
    with pytest.raises(ConfigError, match="config hash mismatch.*recompile"):
        steps.load_config(CONFIG.to_json(), other.config_hash)


def test_run_id_prefers_the_explicit_one():
    assert steps.resolve_run_id("mine", "job-1") == "mine"
    assert steps.resolve_run_id("", "job-1") == "job-1"
    with pytest.raises(ConfigError, match="run id is empty"):
        steps.resolve_run_id("", "{{$.pipeline_job_uuid}}")


def test_gain_rule_prefers_low_accuracy_and_few_cycles(store):
    commit_task(store, "a", 0.9, "r1")   # gain 0.10 / 2 = 0.050
    commit_task(store, "b", 0.6, "r2")   # after 2 cycles: 0.40 / 3 = 0.133
    commit_task(store, "b", 0.6 + 1e-9, "r3")
    commit_task(store, "c", 0.7, "r4")   # 0.30 / 2 = 0.150
    assert {t: p.metrics["num_cycles"] for t, p in store.load_system().paths.items()} == {
        "a": 1, "b": 2, "c": 1}
    ranking = queue.gain_ranking(store.load_system())
    assert [name for _, name in ranking] == ["c", "b", "a"]
    assert ranking[0][0] == pytest.approx(0.3 / 2)
    assert queue.pick_task_to_iterate(store) == "c"


def test_next_takes_the_queue_then_the_task_with_most_to_gain(store):
    with pytest.raises(TaskError, match="nothing to do: the queue .* is empty"):
        queue.resolve_request(store, "next", "onboard", "run-0")
    entry = store.enqueue("demo:digits")
    got = queue.resolve_request(store, "next", "onboard", "run-1")
    assert got == {"spec": "demo:digits", "mode": "onboard", "name": None,
                   "queue_entry": entry.id, "data_dir": ""}
    # a retried step of the same run gets the same entry; another run finds the queue empty
    assert queue.resolve_request(store, "next", "onboard", "run-1")["queue_entry"] == entry.id
    # an entry that failed in this run is not replaced by another one on a retry
    failing = store.enqueue("demo:nope")
    assert queue.resolve_request(store, "next", "onboard", "run-9")["queue_entry"] == failing.id
    store.finish(failing.id, error="TaskError: unknown")
    store.enqueue("demo:mnist_5k")
    with pytest.raises(TaskError, match=f"queue entry {failing.id} .* already failed"):
        queue.resolve_request(store, "next", "onboard", "run-9")
    store.take_next("run-other")
    commit_task(store, "digits", 0.5, "r1")
    store.put_task_info(task_info("digits", "demo:digits"))
    got = queue.resolve_request(store, "next", "onboard", "run-2")
    assert got == {"spec": "demo:digits", "mode": "iterate", "name": "digits",
                   "queue_entry": "", "data_dir": ""}
    # a queued iterate request may name the task instead of its source
    queued = store.enqueue("digits", "iterate")
    assert queue.resolve_request(store, "next", "onboard", "run-7") == {
        "spec": "demo:digits", "mode": "iterate", "name": "digits", "queue_entry": queued.id,
        "data_dir": ""}
    # an unusable entry is marked failed, not left running
    bad = store.enqueue("unknown-task", "iterate")
    with pytest.raises(TaskError, match="no recorded source"):
        queue.resolve_request(store, "next", "onboard", "run-8")
    assert [e.state for e in store.queue() if e.id == bad.id] == ["failed"]
    # iterate by task name uses the recorded source
    assert queue.resolve_request(store, "digits", "iterate", "run-3")["spec"] == "demo:digits"
    with pytest.raises(TaskError, match="no recorded source"):
        queue.resolve_request(store, "unknown", "iterate", "run-4")
    with pytest.raises(SchemaError, match="mode='later' is invalid"):
        queue.resolve_request(store, "demo:x", "later", "run-5")


def test_state_folders_carry_blob_hashes_not_copies(tmp_path):
    digest = "a" * 64
    state = SearchState(task="t", task_info=task_info("t", "demo:t"), config_name="testing",
                        method_version="m", base_version=3, seed=1, run_id="r",
                        staged_blobs={digest: STAGED_IN_STORE})
    steps.save_state(state, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == ["state.json"]  # no parameters travel
    assert steps.load_state(str(tmp_path / "out")) == state
    local = state.replace(staged_blobs={digest: str(tmp_path / "x.npz")})
    with pytest.raises(SchemaError, match="not staged in the store.*aaaa"):
        steps.save_state(local, str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()


def test_tensorboard_events_round_trip(tmp_path):
    import tensorflow as tf

    written = tensorboard.write_tensorboard(
        {"validation_curve": [0.2, 0.5], "train_losses": [2.0, 1.0], "examples_trained": 512,
         "validation_accuracy": 0.5, "improved": True, "mutations": ["a"]}, str(tmp_path))
    points = {}
    for path in tf.io.gfile.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                points[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    assert points == pytest.approx({
        ("curve/validation_curve", 256): 0.2, ("curve/validation_curve", 512): 0.5,
        ("curve/train_losses", 256): 2.0, ("curve/train_losses", 512): 1.0,
        ("final/examples_trained", 512): 512.0, ("final/validation_accuracy", 512): 0.5})
    assert written == len(points)


def test_status_json_is_the_pinned_format(store):
    commit_task(store, "a", 0.8, "r1")
    doc = status_dict(store)
    assert set(doc) == {"version", "run", "method_versions", "total_params", "tasks"}
    assert doc["run"]["run_id"] == "r1" and doc["run"]["committed_at"]
    assert doc["version"] == 1
    assert doc["method_versions"] == {CONFIG.method_version: ["a"]}
    entry = doc["tasks"]["a"]
    assert set(entry) == {"test_accuracy", "validation_accuracy", "score", "accounted_params",
                          "accounted_params_exact", "flops", "method_version", "components"}
    assert entry["validation_accuracy"] == 0.8 and entry["test_accuracy"] == pytest.approx(0.79)
    # q * s^(A/P) * s^(F/F_ref) with the testing config's s, P and F_ref (the score)
    s, p_ref, f_ref = CONFIG.score.scale, CONFIG.score.params_ref, CONFIG.score.flops_ref
    assert (s, p_ref, f_ref) == (0.99, 1e6, 1e6)
    expected = 0.8 * s ** (entry["accounted_params"] / p_ref) * s ** (entry["flops"] / f_ref)
    assert entry["score"] == pytest.approx(expected, rel=1e-9) and entry["score"] < 0.8
    view = store.load_system()
    assert entry["accounted_params_exact"] == view.accounted_params(view.paths["a"])
    assert entry["accounted_params"] == round(view.accounted_params(view.paths["a"]))
    assert isinstance(entry["accounted_params"], int)
    assert entry["components"] == list(view.paths["a"].component_ids)
    assert doc["total_params"] == view.total_params()
    json.dumps(doc, allow_nan=False)


def test_confusion_matrix():
    from mu2net.predict import confusion_matrix

    matrix = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
    assert matrix == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert np.trace(matrix) == 3


def test_report_html_lists_sharing_and_history(store, tmp_path):
    commit_task(store, "a", 0.8, "r1")
    commit_task(store, "b", 0.7, "r2")
    out = tmp_path / "report.html"
    assert main(["report", "--store", store.uri, "--out", str(out)]) == 0
    text = out.read_text()
    assert "System graph" in text and text.count('<g id="path-') == 2  # a line per task
    assert text.count("<tr><td>") >= 3  # one history row per version


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["status", "--store", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no store at" in err[0] and err[0].startswith("mu2net: error:")
    (tmp_path / "empty").mkdir()
    assert main(["status", "--store", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is empty" in err[0] and err[0].startswith("mu2net: error:")
    assert main(["schedule", "--host", "http://127.0.0.1:9", "--cron", "every day",
                 "--config", "testing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cron expression 'every day' is invalid" in err[0]
    assert main(["init", "--store", str(tmp_path / "s"), "--root", "imagenet"]) == 2
    assert "--root 'imagenet' is invalid" in capsys.readouterr().err


def test_cli_status_json_and_queue(store, capsys):
    assert main(["queue", "add", "demo:digits", "demo:mnist_5k", "--store", store.uri]) == 0
    assert main(["queue", "list", "--store", store.uri, "--json"]) == 0
    out = capsys.readouterr().out
    entries = json.loads(out[out.index("["):])
    assert [(e["spec"], e["state"]) for e in entries] == [("demo:digits", "pending"),
                                                          ("demo:mnist_5k", "pending")]
    assert main(["status", "--store", store.uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 0


def test_cli_compile_writes_the_code_version(tmp_path, capsys):
    from mu2net.version import entry_point_version

    version = entry_point_version()  # what the CLI reads
    assert main(["compile", "--config", "testing", "--target", "gpu", "--out", str(tmp_path),
                 "--registry", "r.example/p", "--store", "gs://b/s"]) == 0
    path = tmp_path / "onboard-testing-gpu.yaml"
    text = path.read_text()
    assert f"image: r.example/p/mu2net-gpu:{version}" in text
    assert f"image: r.example/p/mu2net-cpu:{version}" in text
    assert str(path) in capsys.readouterr().out
