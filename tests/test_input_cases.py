"""Issue 23's input cases 9-11 (and 8's bound), table-driven: one image decoder for ingestion
and `predict` (16-bit images scaled, never clipped), a minimum image size, class names without
control characters, task names from folder names that cannot collide, `--name`, and the tasks
package's import graph without a circle."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
from PIL import Image
from store_damage import run_cli

from mu2net.errors import TaskError
from mu2net.images import MIN_IMAGE_SIDE, decode_image
from mu2net.predict import read_image
from mu2net.tasks.sources import load_source, parse_spec, task_name_from

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _png16(path: pathlib.Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)  # a 16-bit greyscale PNG
    with Image.open(path) as im:
        assert im.mode.startswith("I"), im.mode


def _png8(path: pathlib.Path, size: tuple[int, int], rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(path)


def _folder(root: pathlib.Path, classes, per_class: int, write) -> pathlib.Path:
    for c in classes:
        for k in range(per_class):
            write(root / c / f"{k:03d}.png")
    return root


# === 9. 16-bit images: one decoder, scaled the same way for training and predict ===========


def test_16bit_images_are_scaled_not_clipped(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 65536, (16, 16)) for _ in range(2))
    _png16(tmp_path / "a.png", a)
    _png16(tmp_path / "b.png", b)
    for reader in (decode_image, read_image):  # predict reads through the same decoder
        got_a, got_b = reader(str(tmp_path / "a.png")), reader(str(tmp_path / "b.png"))
        assert got_a.dtype == np.uint8
        np.testing.assert_array_equal(got_a, np.rint(a * 255 / 65535).astype(np.uint8))
        assert not np.array_equal(got_a, got_b)
        assert (got_a < 255).any()  # clipping made every bright 16-bit image all white


def test_ingestion_reads_16bit_images_as_predict_does(tmp_path) -> None:
    rng = np.random.default_rng(1)
    root = _folder(tmp_path / "wide", ("dark", "bright"), 40,
                   lambda p: _png16(p, rng.integers(0, 30000, (12, 12)) + (
                       30000 if p.parent.name == "bright" else 0)))
    task = load_source(f"imagefolder:{root}")
    images = np.concatenate([task.splits[s][0] for s in task.splits])
    assert images.dtype == np.uint8 and images.max() > 120 and images.min() < 120
    one = next((root / "bright").iterdir())
    assert read_image(str(one)).max() == decode_image(str(one)).max()


# === 10. tiny images and class names with control characters are refused ===================


@pytest.mark.parametrize(("name", "make", "error"), [
    ("1x1-images", lambda root, rng: _folder(root, ("a", "b"), 12,
                                             lambda p: _png8(p, (1, 1), rng)),
     f"smaller than the minimum {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"),
    ("7x40-images", lambda root, rng: _folder(root, ("a", "b"), 12,
                                              lambda p: _png8(p, (7, 40), rng)),
     "7x40 pixels, smaller than the minimum"),
    ("newline-class", lambda root, rng: _folder(root, ("a\nb", "c"), 12,
                                                lambda p: _png8(p, (8, 8), rng)),
     "holds control character(s) '\\n'"),
    ("tab-class", lambda root, rng: _folder(root, ("a\tb", "c"), 12,
                                            lambda p: _png8(p, (8, 8), rng)),
     "control character"),
])
def test_ingestion_refuses(tmp_path, name, make, error) -> None:
    root = make(tmp_path / name, np.random.default_rng(2))
    with pytest.raises(TaskError) as info:
        load_source(f"imagefolder:{root}")
    assert error in str(info.value) and "\n" not in str(info.value).replace("'\\n'", "")


def test_predict_refuses_tiny_images(tmp_path) -> None:
    _png8(tmp_path / "dot.png", (1, 1), np.random.default_rng(3))
    with pytest.raises(TaskError, match="1x1 pixels, smaller than the minimum"):
        read_image(str(tmp_path / "dot.png"))


# === 11. task names from folder names cannot collide; --name =============================


@pytest.mark.parametrize(("a", "b"), [("café", "cafë"), ("a b", "a_b"), ("x" * 200, "x" * 201),
                                      ("日本", "中国")])
def test_folder_names_give_distinct_valid_task_names(a, b) -> None:
    from mu2net.schema import validate_task_name

    name_a = parse_spec(f"imagefolder:/data/{a}").default_name()
    name_b = parse_spec(f"imagefolder:/data/{b}").default_name()
    assert name_a != name_b
    assert validate_task_name(name_a) and validate_task_name(name_b)
    assert task_name_from(a) == name_a  # deterministic


def test_a_valid_folder_name_is_kept() -> None:
    assert parse_spec("imagefolder:/data/my-flowers/").default_name() == "my-flowers"


def test_name_travels_with_the_spec(tmp_path) -> None:
    source = parse_spec("cafe=imagefolder:/data/café")
    assert source.default_name() == "cafe" and source.target == "/data/café"
    assert str(source) == "cafe=imagefolder:/data/café"
    with pytest.raises(TaskError, match="the name before '='"):
        parse_spec("bad name=imagefolder:/data/x")


def test_queue_add_and_onboard_take_a_name(tmp_path) -> None:
    from test_store import init_store, make_store

    store_dir = str(tmp_path / "store")
    init_store(make_store(store_dir), str(tmp_path))
    folder = tmp_path / ("x" * 200)
    folder.mkdir()
    added = run_cli("queue", "add", f"imagefolder:{folder}", "--name", "long_one",
                    "--store", store_dir)
    assert added.rc == 0, added.err
    assert "long_one=imagefolder:" in added.out
    two = run_cli("queue", "add", "demo:digits", "demo:letters", "--name", "x",
                  "--store", store_dir)
    assert two.rc == 2 and "names one task" in two.err
    bad = run_cli("onboard", "demo:digits", "--name", "no spaces", "--store", store_dir)
    assert bad.rc == 2 and "task name 'no spaces' is invalid" in bad.err


# === the import graph of mu2net/tasks has no circle ========================================


def _task_imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("mu2net.tasks."):
                found.add(node.module.split(".")[2])
            elif node.module == "mu2net.tasks":
                found.update(alias.name for alias in node.names)
    return found


def test_tasks_package_has_no_import_circle() -> None:
    folder = ROOT / "mu2net" / "tasks"
    graph = {p.stem: _task_imports(p) & {q.stem for q in folder.glob("*.py")}
             for p in folder.glob("*.py") if p.stem != "__init__"}
    assert not graph["validate"] & {"sources", "suite", "prepare", "specs"}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, f"import circle: {' -> '.join((*trail, node))}"
        for nxt in graph.get(node, ()):
            visit(nxt, (*trail, node))

    for module in graph:
        visit(module, ())


# === 12. messages that name the real cause ================================================


def test_a_lost_same_task_race_says_the_path_was_discarded() -> None:
    from mu2net.report import one_line

    decision = ("same-task race on 't1' at version 3: kept the existing path aaaa (score 0.9) "
                "over bbbb (score 0.5)")
    line = one_line({"task": "t1", "version": 4, "created": True, "decision": decision},
                    {"test_accuracy": 0.9})
    assert "this run's path was discarded" in line and "kept path's numbers" in line
    plain = one_line({"task": "t1", "version": 4, "created": True, "decision": ""},
                     {"test_accuracy": 0.9})
    assert "discarded" not in plain


@pytest.mark.parametrize("kind", ["file", "unwritable-parent"])
def test_an_unusable_cache_dir_is_named_not_blamed_on_the_store(tmp_path, monkeypatch,
                                                                kind) -> None:
    from test_store import init_store, make_store

    store_dir = str(tmp_path / "store")
    init_store(make_store(store_dir), str(tmp_path))
    cache = tmp_path / "cache"
    if kind == "file":
        cache.write_text("not a folder")
    else:
        cache = tmp_path / "afile" / "cache"
        (tmp_path / "afile").write_text("a file where a folder should be")
    monkeypatch.setenv("MU2NET_CACHE_DIR", str(cache))
    outcome = run_cli("status", "--store", store_dir)
    assert outcome.rc == 2
    assert "$MU2NET_CACHE_DIR" in outcome.err and repr(str(cache)) in outcome.err


def test_a_closed_pipe_is_not_an_error(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from test_store import init_store, make_store

    store_dir = str(tmp_path / "store")
    init_store(make_store(store_dir), str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # `mu2net status --store S | true`: the reader is gone before the command writes
    proc = subprocess.Popen([sys.executable, "-m", "mu2net.cli", "queue", "list", "--store",
                             store_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err, err


def test_a_class_lost_to_carved_splits_is_not_blamed_on_the_user() -> None:
    from mu2net.tasks.validate import check_learnable

    images = np.zeros((4, 8, 8), np.uint8)
    splits = {"train": (images, np.array([0, 0, 0, 0])),
              "validation": (images[:1], np.array([1])), "test": (images[:1], np.array([0]))}
    with pytest.raises(TaskError) as carved:
        check_learnable("t", splits, ["a", "b"], carved=("validation", "test"))
    assert "carved automatically" in str(carved.value)
    assert "other splits" not in str(carved.value)
    with pytest.raises(TaskError, match="remove it from the other splits"):
        check_learnable("t", splits, ["a", "b"])  # splits the user made
