"""Where runs read `tfds:` data (issue 21): the data dir recorded with a queue entry and with
a task, its precedence over the run's parameter and the compiled default, and the prepared
data shrunk to the largest image size training uses. Library level, on a real local store and
a real TFDS folder written offline (the whole compiled pipeline: test_pipeline_local.py)."""

import os

import numpy as np
import pytest
from mu2net_helpers import digits_task, random_root_store, write_tfds_dataset

from mu2net import queue, steps
from mu2net.config import get_config
from mu2net.errors import TaskError
from mu2net.schema import Extension, Path
from mu2net.tasks.base import ArrayTask
from mu2net.tasks.ingest import load_prepared, prepared_dir
from mu2net.tasks.prepare import shrink_to

CONFIG = get_config("testing")
CFG = {"config_json": CONFIG.to_json(), "config_hash": CONFIG.config_hash}
NAME = "tiny_digits"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return write_tfds_dataset(tmp_path_factory.mktemp("tfds"), NAME, digits_task())


@pytest.fixture
def store(tmp_path):
    return random_root_store(tmp_path, CONFIG)


def ingest(store, tmp_path, spec, *, mode="onboard", data_dir="", default="", run_id="r"):
    folder = tmp_path / f"task-{run_id}"
    info = tmp_path / f"info-{run_id}"
    return steps.ingest_step(task_spec=spec, mode=mode, store_uri=store.uri, data_dir=data_dir,
                             run_id=run_id, task_dir=str(folder), info_dir=str(info),
                             default_data_dir=default, **CFG)


def publish(store, task, run_id):
    """Publish a path of the root's frozen components for `task` (no training)."""
    system = store.load_system()
    root = system.root
    path = Path(task=task, components=root.components, hparams=dict(root.hparams),
                method_version=CONFIG.method_version, parent=root.hash, parent_task="_root",
                metrics={"validation_accuracy": 0.5, "test_accuracy": 0.5, "num_cycles": 1})
    store.commit(Extension(task=task, base_version=store.head(), path=path, blob_files={},
                           run_id=run_id, config_name=CONFIG.name, mode="onboard"))


def test_compiled_defaults_alone_ingest_a_tfds_task(store, tmp_path, tfds_dir):
    """The fast twin of test_pipeline_local's compiled-package run: the values the compiled
    IR gives the ingest step when a run sets only task_spec (the root's parameter defaults,
    and the ingest task's constant `default_data_dir`) ingest a tfds: task."""
    import yaml

    from pipelines.onboard_task import compile_pipeline

    package = compile_pipeline("testing", "cpu", str(tmp_path / "onboard.yaml"),
                               store_uri=store.uri, data_dir=tfds_dir)
    spec = next(yaml.safe_load_all(open(package)))
    defaults = {name: p.get("defaultValue") for name, p in
                spec["root"]["inputDefinitions"]["parameters"].items()}
    wiring = spec["root"]["dag"]["tasks"]["ingest-task"]["inputs"]["parameters"]
    constant = wiring["default_data_dir"]["runtimeValue"]["constant"]
    assert wiring["data_dir"] == {"componentInputParameter": "data_dir"}
    assert (defaults["data_dir"], defaults["store_uri"], constant) == (tfds_dir, store.uri,
                                                                       tfds_dir)
    out = steps.ingest_step(task_spec="tfds:" + NAME, mode=defaults["mode"],
                            store_uri=defaults["store_uri"], data_dir=defaults["data_dir"],
                            run_id="run-1", task_dir=str(tmp_path / "task"),
                            info_dir=str(tmp_path / "info"), default_data_dir=constant, **CFG)
    assert (out["task"], out["data_dir"]) == (NAME, tfds_dir)
    # the same package run with the data dir left empty (today's default) cannot read it
    with pytest.raises(TaskError, match=NAME):
        steps.ingest_step(task_spec="tfds:" + NAME, mode="onboard", store_uri=store.uri,
                          data_dir="", run_id="run-2", task_dir=str(tmp_path / "t2"), **CFG)


def test_precedence_explicit_then_recorded_then_compiled_default():
    eff = queue.effective_data_dir
    assert eff("gs://explicit", "gs://recorded", "gs://default") == "gs://explicit"
    # left at the compiled default (what KFP passes for an untouched run form field)
    assert eff("gs://default", "gs://recorded", "gs://default") == "gs://recorded"
    assert eff("", "gs://recorded", "gs://default") == "gs://recorded"
    assert eff("gs://default", "", "gs://default") == "gs://default"
    assert eff("", "", "gs://default") == "gs://default"
    assert eff("", "", "") == ""


def test_queue_entry_keeps_the_data_dir_it_was_added_with(store):
    old_style = store.enqueue("demo:digits")
    assert "data_dir" not in old_style.extra  # entries added without one read as before
    entry = store.enqueue("tfds:tiny_digits", data_dir="gs://b/tfds")
    assert [e.extra.get("data_dir", "") for e in store.queue()] == ["", "gs://b/tfds"]
    assert queue.resolve_request(store, "next", "onboard", "run-1")["data_dir"] == ""
    got = queue.resolve_request(store, "next", "onboard", "run-2")
    assert (got["queue_entry"], got["data_dir"]) == (entry.id, "gs://b/tfds")


def test_queued_tfds_task_reevolves_from_its_recorded_data_dir(store, tmp_path, tfds_dir):
    """Queued with a data dir, ingested by a run that has none; every later re-evolve (by
    name, or "next" picking the task with most to gain) finds the data there again."""
    store.enqueue(f"tfds:{NAME}", data_dir=tfds_dir)
    out = ingest(store, tmp_path, "next", run_id="r1")
    assert (out["task"], out["data_dir"]) == (NAME, tfds_dir)
    assert store.task_data_dir(NAME) == tfds_dir
    publish(store, NAME, "r1")
    for spec, run_id in ((NAME, "r2"), ("next", "r3")):
        out = ingest(store, tmp_path, spec, mode="iterate", run_id=run_id)
        assert (out["task"], out["mode"], out["data_dir"]) == (NAME, "iterate", tfds_dir)
    # an explicit run parameter still wins (and names a folder without the data: it fails)
    with pytest.raises(TaskError, match="empty' is not a readable folder"):
        ingest(store, tmp_path, NAME, mode="iterate", data_dir=str(tmp_path / "empty"),
               run_id="r4")


def test_reevolve_without_a_recorded_data_dir_fails(store, tmp_path, tfds_dir):
    """What today's main did for every re-evolve of a tfds: task: the run has no data dir."""
    ingest(store, tmp_path, f"tfds:{NAME}", data_dir=tfds_dir, run_id="r1")
    publish(store, NAME, "r1")
    store.put_task_data_dir(NAME, "")  # as a store written before the record existed
    with pytest.raises(TaskError, match=NAME):
        ingest(store, tmp_path, NAME, mode="iterate", run_id="r2")


def test_light_steps_read_only_the_info_artifact(store, tmp_path):
    out = ingest(store, tmp_path, "demo:digits")
    info_files = sorted(os.listdir(tmp_path / "info-r"))
    assert info_files == [steps.REQUEST_FILE]
    assert (tmp_path / "info-r" / steps.REQUEST_FILE).stat().st_size < 4096
    assert os.path.isdir(prepared_dir(tmp_path / "task-r", out["task"]))


def _task(size_hw, n=60, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", n), ("validation", n // 2), ("test", n // 2)):
        images = rng.integers(0, 256, (count, *size_hw, channels), dtype=np.uint8)
        splits[split] = (images, np.arange(count) % 3)
    return ArrayTask.from_arrays("shapes", splits, ["a", "b", "c"], source="arrays")


def test_shrink_keeps_small_tasks_and_shrinks_large_ones_as_training_resizes():
    import tensorflow as tf

    small = _task((28, 28))
    assert shrink_to(small, 35) is small  # same content hash: nothing changes
    large = _task((60, 45))
    shrunk = shrink_to(large, 35)
    assert shrunk.info.image_shape == (35, 35, 3)
    assert shrunk.info.split_sizes == large.info.split_sizes
    assert "shrunk at ingest from 60x45 to 35x35" in shrunk.info.description
    # what training sees at the largest size: today's direct resize vs resize of the shrunk
    # image (which is the identity at 35): one uint8 rounding apart
    images = large.arrays("test")[0]
    direct = tf.image.resize(tf.cast(images, tf.float32), (35, 35)).numpy()
    assert np.abs(shrunk.arrays("test")[0].astype(float) - direct).max() <= 0.5 + 1e-4
    # a side under the bound is kept, never enlarged
    assert shrink_to(_task((20, 50)), 35).info.image_shape == (20, 35, 3)


def test_ingest_step_prepares_data_at_the_largest_image_size(store, tmp_path):
    """The testing config picks ds_image_size up to 20: a 60x45 task is prepared at 20x20,
    and the 8x8 digits are unchanged (their content hash is the source's)."""
    from mu2net.tasks.sources import load_source

    out = ingest(store, tmp_path, "demo:digits", run_id="d")
    assert out["content_hash"] == load_source("demo:digits").info.content_hash
    big = tmp_path / "big"
    for split, count in (("train", 40), ("validation", 20), ("test", 20)):
        for i in range(count):
            folder = big / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(np.full((60, 45, 3), 40 * (i % 2) + i, np.uint8)).save(
                folder / f"{i}.png")
    out = ingest(store, tmp_path, f"imagefolder:{big}", run_id="b")
    task = load_prepared(prepared_dir(tmp_path / "task-b", out["task"]))
    assert max(CONFIG.hparams.get("ds_image_size").values) == 20
    assert task.info.image_shape == (20, 20, 3)


def test_cli_queue_add_records_the_data_dir(store, tfds_dir, capsys):
    from mu2net.cli import main

    assert main(["queue", "add", f"tfds:{NAME}", "--store", store.uri,
                 "--data-dir", tfds_dir]) == 0
    (entry,) = store.queue()
    assert (entry.spec, entry.extra["data_dir"]) == (f"tfds:{NAME}", tfds_dir)


def test_tfds_images_are_shrunk_as_decoded_like_the_whole_task(tmp_path):
    """A tfds: task larger than training's largest size is shrunk image by image as it is
    decoded (the loader never holds the native-size source), to exactly what shrinking the
    loaded task would give."""
    from mu2net.tasks.sources import load_source

    digits = digits_task()
    splits = {s: (np.kron(digits.arrays(s)[0], np.ones((1, 5, 4, 1), np.uint8)),
                  digits.arrays(s)[1]) for s in ("train", "validation", "test")}
    big = ArrayTask.from_arrays("big_digits", splits, digits.info.class_names)
    assert big.info.image_shape == (40, 32, 1)
    data_dir = write_tfds_dataset(tmp_path / "tfds", "big_digits", big)
    native = load_source("tfds:big_digits", data_dir=data_dir)
    assert native.info.image_shape == (40, 32, 1)
    decoded = load_source("tfds:big_digits", data_dir=data_dir, max_image_size=20)
    assert decoded.info.image_shape == (20, 20, 1)
    assert "images shrunk as decoded to at most 20 px" in decoded.info.description
    whole = shrink_to(native, 20)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(decoded.arrays(split)[0], whole.arrays(split)[0])
        np.testing.assert_array_equal(decoded.arrays(split)[1], whole.arrays(split)[1])
