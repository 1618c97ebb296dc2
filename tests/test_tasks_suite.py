"""The task suite: every task ingests from real packaged data with its stated sizes, and no task
shares an image with the root task."""

import hashlib
import pathlib
import shutil

import numpy as np
import pytest

from mu2net.errors import TaskError
from mu2net.task_info import SPLITS
from mu2net.tasks import glyphs, locations
from mu2net.tasks.ingest import ingest, load_prepared
from mu2net.tasks.suite import ROOT_TASK_NAME, SUITE, load_suite_task, suite_names


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every suite task ingested once (module-wide cache) and loaded back from disk."""
    root = tmp_path_factory.mktemp("suite")
    tasks = {}
    for name in suite_names():
        info = ingest(f"demo:{name}", root)
        tasks[name] = (info, load_prepared(root / name))
    return tasks


def test_suite_has_root_and_five_more():
    names = suite_names()
    assert names[0] == ROOT_TASK_NAME == "fashion_mnist"
    assert len(names) >= 6


@pytest.mark.parametrize("name", list(SUITE))
def test_suite_task_sizes(prepared, name):
    info, task = prepared[name]
    entry = SUITE[name]
    assert dict(info.split_sizes) == entry.sizes
    assert info.num_classes == entry.num_classes == len(info.class_names)
    assert tuple(info.image_shape) == entry.image_shape
    assert task.info == info
    assert info.description == entry.description and info.description
    for split in SPLITS:
        images, labels = task.arrays(split)
        assert images.shape == (entry.sizes[split],) + entry.image_shape
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        # Every class appears in every split, and the pixels are not blank.
        assert set(np.unique(labels)) == set(range(entry.num_classes)), split
        assert images.std() > 10
    if name != "digits":  # the only source too small for 1,000 test images (reported: 360)
        assert info.split_sizes["test"] >= 1000
    # Validation big enough to compare children: >= 10% of train, and >= 500 where the data
    # allows (digits: capped at 25%; glyph_styles: 496, see its description).
    assert info.split_sizes["validation"] >= 0.1 * info.split_sizes["train"]
    if name not in ("digits", "glyph_styles"):
        assert info.split_sizes["validation"] >= 500


def _image_digests(images):
    return {hashlib.sha256(img.tobytes()).digest() for img in images}


def test_no_task_shares_an_image_with_the_root(prepared):
    _, root = prepared[ROOT_TASK_NAME]
    root_digests = set()
    for split in SPLITS:
        root_digests |= _image_digests(root.arrays(split)[0])
    for name, (_, task) in prepared.items():
        if name == ROOT_TASK_NAME or task.info.image_shape != root.info.image_shape:
            continue
        for split in SPLITS:
            assert not _image_digests(task.arrays(split)[0]) & root_digests, (name, split)


def test_root_keeps_source_test_split_and_carves_validation(prepared):
    """Fashion-MNIST has a test split; validation = train[0:10%] of the source train (500
    clamped to 10-25%: 6,000)."""
    from mu2net.tasks import packaged

    raw = packaged.fashion_mnist()
    _, task = prepared[ROOT_TASK_NAME]
    np.testing.assert_array_equal(task.arrays("test")[0], raw["test"][0])
    np.testing.assert_array_equal(task.arrays("validation")[0], raw["train"][0][:6000])
    np.testing.assert_array_equal(task.arrays("train")[1], raw["train"][1][6000:])


def test_mnist_parity_relabels_mnist_5k(prepared):
    _, digits = prepared["mnist_5k"]
    _, parity = prepared["mnist_parity"]
    for split in SPLITS:
        np.testing.assert_array_equal(parity.arrays(split)[0], digits.arrays(split)[0])
        np.testing.assert_array_equal(parity.arrays(split)[1], digits.arrays(split)[1] % 2)
    assert parity.info.class_names == ("even", "odd")


def test_glyph_splits_hold_out_whole_design_groups(prepared):
    groups = {split: {f.group for f in glyphs.FAMILIES if glyphs.split_of_group(f.group) == split}
              for split in SPLITS}
    assert groups["test"] == set(glyphs.TEST_GROUPS)
    assert groups["validation"] == set(glyphs.VALIDATION_GROUPS)
    assert not (groups["train"] & groups["test"]) and not (groups["train"]
                                                             & groups["validation"])
    # The test and validation images of a glyph task differ from every training image.
    _, task = prepared["glyph_letters"]
    train = _image_digests(task.arrays("train")[0])
    assert not _image_digests(task.arrays("test")[0]) & train


def test_glyph_rendering_is_deterministic():
    items = glyphs.style_items()[:8]
    a = glyphs.render("t", items, "Ag", 2, glyphs.Jitter())
    b = glyphs.render("t", items, "Ag", 2, glyphs.Jitter())
    for split in a:
        np.testing.assert_array_equal(a[split][0], b[split][0])
    assert len(a["train"][0]) == 8 * 2 * 2


def test_missing_glyph_is_an_error():
    family = glyphs.FAMILIES[0]
    with pytest.raises(TaskError, match="no glyph"):
        glyphs.render("t", [(family, family.files[0], -1)], "\U000f0001", 1, glyphs.Jitter())


def test_demo_unknown_name_lists_the_suite():
    with pytest.raises(TaskError, match="valid.*fashion_mnist"):
        load_suite_task("cifar10")


def test_packaged_data_falls_back_to_project_debroot(tmp_path, monkeypatch):
    """Without root, install_system_deps.sh unpacks the .deb into data/debroot/usr/share: the
    loaders find the files there when /usr/share lacks them."""
    debroot_share = tmp_path / "debroot" / "usr" / "share"
    src = locations.find_share_file("datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                                    "dataset-fashion-mnist")
    dest = debroot_share / "datasets" / "fashion-mnist" / src.name
    dest.parent.mkdir(parents=True)
    shutil.copy(src, dest)
    monkeypatch.setattr(locations, "SHARE_ROOTS", (tmp_path / "usr" / "share", debroot_share))
    found = locations.find_share_file("datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                                      "dataset-fashion-mnist")
    assert found == dest
    with pytest.raises(TaskError, match="dataset-fashion-mnist.*install_system_deps"):
        locations.find_share_file("datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                                  "dataset-fashion-mnist")


def test_install_script_lists_every_package_the_loaders_read():
    script = (pathlib.Path(__file__).parents[1] / "scripts" / "install_system_deps.sh").read_text()
    packages = {"dataset-fashion-mnist"} | {f.package_of(file) for f in glyphs.FAMILIES
                                            for file in f.files}
    for package in packages:
        assert package in script, package
