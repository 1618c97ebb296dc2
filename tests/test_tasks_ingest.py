"""Ingestion writes a prepared task once; bad input changes nothing; onboarding rules."""

import json

import numpy as np
import pytest

from mu2net.errors import SchemaError, TaskError
from mu2net.schema import (
    Component,
    Path,
    SystemVersion,
    SystemView,
    document_hash,
)
from mu2net.task_info import SPLITS
from mu2net.tasks.ingest import (
    INFO_FILE,
    check_onboarding,
    ingest,
    load_prepared,
    read_prepared_info,
)
from mu2net.tasks.suite import load_suite_task


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_ingest_writes_metadata_and_loads_back(tmp_path):
    info = ingest("demo:digits", tmp_path)
    folder = tmp_path / "digits"
    doc = json.loads((folder / INFO_FILE).read_text())
    meta = doc["task_info"]
    assert meta["name"] == "digits" and meta["num_classes"] == 10
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["split_sizes"] == {"train": 1078, "validation": 359, "test": 360}
    assert meta["image_shape"] == [8, 8, 1] and meta["content_hash"] == info.content_hash
    assert all((folder / f).is_file() for split in SPLITS for f in doc["files"][split])
    task = load_prepared(folder)
    source = load_suite_task("digits")
    assert task.info == info == read_prepared_info(folder)
    for split in SPLITS:
        for got, want in zip(task.arrays(split), source.arrays(split)):
            np.testing.assert_array_equal(got, want)
    # Only the task folder: the temporary folder was renamed into place.
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_ingest_twice_is_a_no_op(tmp_path):
    first = ingest("demo:mnist_parity", tmp_path)
    before = _snapshot(tmp_path)
    second = ingest("demo:mnist_parity", tmp_path)
    assert second == first
    assert _snapshot(tmp_path) == before


def test_other_content_under_a_taken_name_is_refused_and_changes_nothing(tmp_path):
    ingest("demo:mnist_5k", tmp_path, name="digits_task")
    before = _snapshot(tmp_path)
    with pytest.raises(TaskError, match="already prepared.*other content"):
        ingest("demo:digits", tmp_path, name="digits_task")
    assert _snapshot(tmp_path) == before


def test_bad_source_writes_nothing(tmp_path):
    with pytest.raises(TaskError):
        ingest("imagefolder:/no/such/folder", tmp_path / "out")
    with pytest.raises(TaskError):
        ingest("demo:no_such_task", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gs_out_root_is_refused(tmp_path):
    with pytest.raises(TaskError, match="local path"):
        ingest("demo:digits", "gs://bucket/prepared")


def test_corrupt_or_tampered_prepared_task_is_detected(tmp_path):
    import tensorflow as tf

    ingest("demo:digits", tmp_path)
    shard = next((tmp_path / "digits").glob("test.tfrecord-*"))
    original = shard.read_bytes()
    # A flipped byte: the TFRecord checksum fails.
    data = bytearray(original)
    data[40] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(TaskError, match="split 'test' is corrupt"):
        load_prepared(tmp_path / "digits")
    # Well-formed records with one changed label: the content hash fails.
    shard.write_bytes(original)
    records = [tf.train.Example.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(str(shard))]
    label = records[0].features.feature["label"].int64_list
    label.value[0] = (label.value[0] + 1) % 10
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    with pytest.raises(TaskError, match="does not match its metadata"):
        load_prepared(tmp_path / "digits")


def test_load_prepared_of_a_plain_folder(tmp_path):
    with pytest.raises(TaskError, match="not a prepared task"):
        load_prepared(tmp_path)


# === onboarding rules =======================================================================


def _view_with(task: str) -> SystemView:
    blob = "0" * 64
    comp = Component(id=Component.make_id("_root", "head", blob), name="head", creator="_root",
                     shapes={"kernel": (4, 2)}, blob=blob)
    root = Path(task="_root", components=(comp,), hparams={}, method_version="m")
    path = Path(task=task, components=(comp,), hparams={}, method_version="m")
    version = SystemVersion(number=3, parent=2, root=document_hash(root.to_dict()),
                            tasks={task: path.hash})
    return SystemView(version=version, root=root, paths={task: path})


def test_onboarding_a_new_task_is_allowed():
    check_onboarding("glyph_letters", None)
    check_onboarding("glyph_letters", _view_with("digits"))


def test_onboarding_an_onboarded_task_needs_iterate():
    view = _view_with("digits")
    with pytest.raises(TaskError, match="already onboarded.*version 3.*iterate"):
        check_onboarding("digits", view)
    check_onboarding("digits", view, mode="iterate")


def test_iterating_an_unknown_task_or_bad_mode_is_refused():
    with pytest.raises(TaskError, match="not onboarded"):
        check_onboarding("digits", _view_with("mnist_5k"), mode="iterate")
    with pytest.raises(SchemaError, match="mode='replace' is invalid"):
        check_onboarding("digits", None, mode="replace")
