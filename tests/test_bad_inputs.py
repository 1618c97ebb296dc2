"""A clear error for every bad input (issue #13): a non-zero exit, one line, nothing changed.

Each case runs the real command line (`mu2net.cli.main`, in-process) on a copy of one
initialised store: the local backend, and for the store cases also the GCS emulator. It checks
the exit code, that stderr is exactly one `mu2net: error:` line holding the case's key phrase
(no traceback), and that every file under the case's folder (the store copy, outputs, the
working directory) and every object under the GCS prefix is byte-for-byte what it was.
Ingestion cases go through `init --root pretrain:imagefolder:...`, which reads the folder with
the same `load_source` checks as the pipeline's ingest step, in-process.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import struct
import uuid
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from mu2net_helpers import random_root_store
from PIL import Image

from mu2net.cli import main
from mu2net.config import get_config
from mu2net.schema import Extension, Path
from mu2net.store import open_store

CONFIG = get_config("testing")
TASK = "digits"  # a task of the base store: a path of the root's own components
BUCKET = "mu2net-store-test"  # tests/conftest.py creates it in the emulator


# === synthetic data ========================================================================


def _png(path, rng, size=(8, 8), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size[::-1] + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _class_tree(root, rng, counts):
    """`counts`: {"split/class" or "class": number of images}; 0 makes an empty folder."""
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            _png(root / folder / f"{k:03d}.png", rng)
    return root


def _header_only_png(width, height):
    """A PNG whose header claims width x height: a few bytes that would decode to gigabytes."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Read-only inputs shared by the cases."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    _png(root / "digit.png", rng)
    _png(root / "wide.png", rng, size=(40, 24), mode="RGB")
    (root / "notes.txt").write_text("not an image\n")
    (root / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "bomb.png").write_bytes(_header_only_png(100_000, 100_000))
    (root / "big.png").write_bytes(_header_only_png(10_000, 10_000))
    (root / "garbage.npz").write_bytes(b"PK\x03\x04 this is no zip archive")
    (root / "text.npz").write_text("hello\n")
    (root / "empty.npz").write_bytes(b"")
    np.savez(root / "unrelated.npz", weights=np.zeros(3, np.float32))
    (root / "empty.yaml").write_bytes(b"")
    _class_tree(root / "empty_class", rng, {"a": 20, "b": 20, "c": 0})
    _class_tree(root / "test_only", rng, {"train/a": 20, "train/b": 20, "test/a": 3,
                                          "test/b": 3, "test/c": 3})
    _class_tree(root / "tiny", rng, {"a": 12, "b": 12})  # 24 images, no validation folder
    _class_tree(root / "tiny_val", rng, {"train/a": 30, "train/b": 30, "validation/a": 1,
                                         "validation/b": 1, "test/a": 5, "test/b": 5})
    _class_tree(root / "good", rng, {"a": 40, "b": 40})
    return root


def _commit_task(store, task):
    """Publish `task` as the root's frozen body under a head of its own with seeded random
    weights (no training), so that different images get different predictions: the root's
    zero-initialised head would give every input the same uniform output."""
    import tempfile

    from mu2net.model import component_shapes
    from mu2net.params_io import params_to_npz_bytes, sha256_bytes
    from mu2net.schema import Component

    root = store.load_system().root
    hparams = dict(root.hparams)
    rng = np.random.default_rng(7)
    weights = {name: rng.normal(0.0, 1.0, shape).astype(np.float32)
               for name, shape in component_shapes("head", CONFIG.architecture, hparams).items()}
    data = params_to_npz_bytes(weights)
    digest = sha256_bytes(data)
    blob_file = os.path.join(tempfile.mkdtemp(), digest)
    with open(blob_file, "wb") as f:
        f.write(data)
    head = Component(id=Component.make_id(task, "head", digest), name="head", creator=task,
                     shapes={k: tuple(v.shape) for k, v in weights.items()}, blob=digest)
    components = tuple(head if c.name == "head" else c for c in root.components)
    path = Path(task=task, components=components, hparams=hparams,
                method_version=CONFIG.method_version, parent=root.hash, parent_task="_root",
                metrics={"validation_accuracy": 0.5, "test_accuracy": 0.5, "num_cycles": 1})
    store.commit(Extension(task=task, base_version=store.head(), path=path,
                           blob_files={digest: blob_file}, run_id=f"run-{task}",
                           config_name=CONFIG.name, mode="onboard"))
    shutil.rmtree(os.path.dirname(blob_file))


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A local store at version 1 (a random root and the task `digits`), one task queued."""
    folder = tmp_path_factory.mktemp("base")
    store = random_root_store(folder, CONFIG)
    _commit_task(store, TASK)
    store.enqueue("demo:mnist_5k")
    return folder / "store"


@pytest.fixture(scope="module")
def gcs_base(gcs_server):
    """The same system under a fresh prefix of the emulator's bucket."""
    uri = f"gs://{BUCKET}/{uuid.uuid4().hex}"
    assert main(["init", "--store", uri, "--root", "random", "--config", "testing"]) == 0
    store = open_store(uri, cache_dir=None)
    _commit_task(store, TASK)
    store.enqueue("demo:mnist_5k")
    return uri


# === snapshots =============================================================================


def tree_digest(root) -> dict[str, str]:
    """Every file (sha256) and folder under `root`, by relative path."""
    out = {}
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        out[rel + "/"] = "dir"
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                out[os.path.join(rel, name)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def gcs_digest(uri) -> dict[str, tuple[str, int]]:
    """Every object under a gs:// prefix: (md5, generation) by name."""
    from mu2net.store.gcs import default_client, parse_gs_uri

    bucket, prefix = parse_gs_uri(uri)
    return {b.name: (b.md5_hash, b.generation)
            for b in default_client().list_blobs(bucket, prefix=f"{prefix}/")}


# === the cases =============================================================================


@dataclasses.dataclass(frozen=True)
class Case:
    """`argv` placeholders: {store} (the case's store), {data} (shared inputs), {tmp} (the
    case's own folder, also the working directory). `setup(tmp)` runs before the snapshot;
    `patch(monkeypatch)` before the command."""

    id: str
    argv: tuple[str, ...]
    phrase: str
    backends: tuple[str, ...] = ("local",)
    setup: Callable | None = None
    patch: Callable | None = None


def _existing_export(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / f"{TASK}.keras").write_bytes(b"an earlier export")


def _unreachable(monkeypatch):
    from mu2net.store import gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    monkeypatch.setattr(gcs, "RETRY_DEADLINE_S", 2.0)


def _no_credentials(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")


def _disk_full(monkeypatch):
    from mu2net.store.local import LocalBackend

    def full(self, path, generation, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(LocalBackend, "_write_tmp", full)


def _head(data: bytes) -> Callable:
    def damage(tmp):
        from mu2net.store.layout import HEAD_KEY
        from mu2net.store.local import LocalBackend

        LocalBackend(str(tmp / "store")).write(HEAD_KEY, data)
    return damage


def _delete_head_index(tmp):
    from mu2net.store.layout import version_key
    from mu2net.store.local import LocalBackend

    LocalBackend(str(tmp / "store")).delete(version_key(1))


BOTH = ("local", "gcs")
PRETRAIN = ("init", "--store", "{tmp}/new_store", "--config", "testing", "--root-cache",
            "{tmp}/roots", "--root")
PREDICT = ("predict", "--store", "{store}", "--task", TASK)
EXPORT = ("export", "--store", "{store}", "--task", TASK)

CASES = [
    # --- a damaged store: every read names the damage and the repair command ------------
    Case("damaged-head-garbage", ("status", "--store", "{store}"), "store repair",
         setup=_head(b"\x00garbage")),
    Case("damaged-head-past-last-index", ("status", "--store", "{store}"), "store repair",
         setup=_head(b'{"version": 99}')),
    Case("damaged-head-negative", ("queue", "add", "demo:digits", "--store", "{store}"),
         "store repair", setup=_head(b'{"version": -5}')),
    Case("damaged-head-index-deleted", ("status", "--store", "{store}"), "store check",
         setup=_delete_head_index),
    Case("damaged-head-init-again", ("init", "--store", "{store}", "--root", "random",
                                     "--config", "testing"), "store repair",
         setup=_head(b'{"version": -5}')),
    # --- administration ---------------------------------------------------------------------
    Case("rollback-unknown-task", ("rollback", "--store", "{store}", "--task", "nope",
                                   "--to-version", "1"), "'nope' has no path at version 1",
         BOTH),
    Case("rollback-version-beyond-head", ("rollback", "--store", "{store}", "--task", TASK,
                                          "--to-version", "7"), "version 7 does not exist",
         BOTH),
    Case("rollback-missing-store", ("rollback", "--store", "{tmp}/no_store", "--task", TASK,
                                    "--to-version", "1"), "no store at"),
    Case("gc-negative-retention", ("gc", "--store", "{store}", "--retention-hours", "-1",
                                   "--apply"), "--retention-hours -1.0 is invalid", BOTH),
    Case("store-check-missing-store", ("store", "check", "--store", "{tmp}/no_store"),
         "no store at"),
    Case("store-repair-store-is-a-file", ("store", "repair", "--store", "{data}/notes.txt"),
         "is a file, not a store folder"),
    # --- queue add: the spec is checked before anything is written -----------------------
    Case("queue-garbage", ("queue", "add", "garbage", "--store", "{store}"),
         "task source 'garbage' is invalid: expected one of", BOTH),
    Case("queue-unknown-kind", ("queue", "add", "foo:bar", "--store", "{store}"),
         "task source 'foo:bar' is invalid", BOTH),
    Case("queue-tfds-traversal", ("queue", "add", "tfds:../../etc", "--store", "{store}"),
         "TFDS names look like", BOTH),
    Case("queue-unknown-demo", ("queue", "add", "demo:nope", "--store", "{store}"),
         "demo task 'nope' is unknown: valid [", BOTH),
    Case("queue-relative-folder", ("queue", "add", "imagefolder:rel/flowers", "--store",
                                   "{store}"), "is a relative path", BOTH),
    Case("queue-missing-folder", ("queue", "add", "imagefolder:{data}/nope", "--store",
                                  "{store}"), "is not a folder"),
    Case("queue-gs-without-bucket", ("queue", "add", "imagefolder:gs:///x", "--store",
                                     "{store}"), "has no bucket", BOTH),
    Case("queue-iterate-bad-name", ("queue", "add", "bad name!", "--mode", "iterate",
                                    "--store", "{store}"), "cannot be iterated", BOTH),
    Case("queue-empty-spec", ("queue", "add", " ", "--store", "{store}"), "is empty", BOTH),
    Case("queue-one-bad-of-two", ("queue", "add", "demo:digits", "garbage", "--store",
                                  "{store}"), "task source 'garbage' is invalid", BOTH),
    Case("queue-uninitialised-local", ("queue", "add", "demo:digits", "--store",
                                       "{tmp}/no_store"), "no store at '{tmp}/no_store'"),
    Case("queue-uninitialised-gcs", ("queue", "add", "demo:digits", "--store",
                                     f"gs://{BUCKET}/never-initialised"),
         "is not initialised: run `mu2net init", ("gcs",)),
    Case("queue-disk-full", ("queue", "add", "demo:glyph_styles", "--store", "{store}"),
         "No space left on device: '{store}'", patch=_disk_full),
    # --- status / report: read-only, never create anything ----------------------------
    Case("status-missing-store", ("status", "--store", "{tmp}/no_store"),
         "no store at '{tmp}/no_store' (check the path; `mu2net init --store {tmp}/no_store"),
    Case("status-empty-store-uri", ("status", "--store", ""), "--store is empty"),
    Case("status-store-is-a-file", ("status", "--store", "{data}/notes.txt"),
         "is a file, not a store folder"),
    Case("status-unknown-scheme", ("status", "--store", "s3://bucket/x"),
         "has unknown scheme 's3'"),
    Case("status-version-beyond-head", ("status", "--store", "{store}", "--at", "99"),
         "version 99 does not exist", BOTH),
    Case("status-negative-version", ("status", "--store", "{store}", "--at", "-1"),
         "version -1 is invalid", BOTH),
    Case("status-gcs-missing-bucket", ("status", "--store", "gs://no-such-bucket-x/p"),
         "bucket 'no-such-bucket-x' does not exist", ("gcs",)),
    Case("status-gcs-unreachable", ("status", "--store", "{store}"),
         "cannot reach Google Cloud Storage", ("gcs",), patch=_unreachable),
    Case("status-gcs-no-credentials", ("status", "--store", "gs://some-bucket/p"),
         "no usable Google Cloud credentials", patch=_no_credentials),
    Case("report-missing-store", ("report", "--store", "{tmp}/no_store", "--out",
                                  "{tmp}/report/r.html"), "no store at '{tmp}/no_store'"),
    # --- predict ---------------------------------------------------------------------
    Case("predict-not-an-image", PREDICT + ("{data}/notes.txt",),
         "notes.txt' is not an image file", BOTH),
    Case("predict-truncated-png", PREDICT + ("{data}/truncated.png",), "truncated.png'"),
    Case("predict-decompression-bomb", PREDICT + ("{data}/bomb.png",),
         "decompression bomb"),
    Case("predict-too-many-pixels", PREDICT + ("{data}/big.png",),
         "is 10000x10000 pixels, more than the 89,478,485 allowed"),
    Case("predict-missing-file", PREDICT + ("{data}/nope.png",),
         "cannot be read: No such file or directory"),
    Case("predict-folder", PREDICT + ("{data}",), "cannot be read: Is a directory"),
    Case("predict-one-bad-of-two", PREDICT + ("{data}/digit.png", "{data}/notes.txt"),
         "notes.txt' is not an image file"),
    Case("predict-unknown-task", ("predict", "--store", "{store}", "--task", "nope",
                                  "{data}/digit.png"), "task 'nope' is not in system version",
         BOTH),
    Case("predict-missing-store", ("predict", "--store", "{tmp}/no_store", "--task", TASK,
                                   "{data}/digit.png"), "no store at '{tmp}/no_store'"),
    # --- export ----------------------------------------------------------------------
    Case("export-out-is-a-file", EXPORT + ("--out", "{data}/notes.txt"),
         "--out '{data}/notes.txt' is a file"),
    Case("export-exists-without-force", EXPORT + ("--out", "{tmp}/out"),
         "already exists in '{tmp}/out' (digits.keras): pass --force", setup=_existing_export),
    Case("export-unknown-task", ("export", "--store", "{store}", "--task", "nope", "--out",
                                 "{tmp}/out"), "task 'nope' is not in system version", BOTH),
    Case("export-missing-store", ("export", "--store", "{tmp}/no_store", "--task", TASK,
                                  "--out", "{tmp}/out"), "no store at '{tmp}/no_store'"),
    # --- init ------------------------------------------------------------------------
    Case("init-npz-not-a-zip", PRETRAIN[:5] + ("--root", "npz:{data}/garbage.npz"),
         "is not a vit_jax .npz checkpoint (BadZipFile"),
    Case("init-npz-text-file", PRETRAIN[:5] + ("--root", "npz:{data}/text.npz"),
         "is not a vit_jax .npz checkpoint"),
    Case("init-npz-empty-file", PRETRAIN[:5] + ("--root", "npz:{data}/empty.npz"),
         "is not a vit_jax .npz checkpoint"),
    Case("init-npz-other-arrays", PRETRAIN[:5] + ("--root", "npz:{data}/unrelated.npz"),
         "--root 'npz:{data}/unrelated.npz': checkpoint has no 'head/kernel'"),
    Case("init-npz-missing", PRETRAIN[:5] + ("--root", "npz:{data}/nope.npz"),
         "checkpoint '{data}/nope.npz' does not exist"),
    Case("init-npz-folder", PRETRAIN[:5] + ("--root", "npz:{data}"), "is a folder"),
    Case("init-npz-empty-uri", PRETRAIN[:5] + ("--root", "npz:"),
         "--root 'npz:' is invalid: expected random, npz:URI or pretrain:SPEC"),
    Case("init-store-is-a-file", ("init", "--store", "{data}/notes.txt", "--root", "random",
                                  "--config", "testing"), "is a file, not a store folder"),
    # --- ingestion: refused before a root, a cache entry or a store is written ------------
    Case("ingest-empty-class-folder", PRETRAIN + ("pretrain:imagefolder:{data}/empty_class",),
         "class folder 'c' holds no image, so class 'c' can never be learned"),
    Case("ingest-class-only-in-test", PRETRAIN + ("pretrain:imagefolder:{data}/test_only",),
         "class 'c' has no training image (3 in test only)"),
    Case("ingest-validation-too-small", PRETRAIN + ("pretrain:imagefolder:{data}/tiny",),
         "the validation split has 5 image(s), fewer than the minimum 10"),
    Case("ingest-validation-folder-too-small",
         PRETRAIN + ("pretrain:imagefolder:{data}/tiny_val",),
         "the validation split has 2 image(s), fewer than the minimum 10"),
    Case("ingest-missing-folder", PRETRAIN + ("pretrain:imagefolder:{data}/nope",),
         "is not a readable folder"),
    # The same refusal from the pipeline's own ingest step (kfp.local): the run stops there.
    Case("onboard-empty-class-folder", ("onboard", "imagefolder:{data}/empty_class", "--store",
                                        "{store}", "--config", "testing", "--cycles", "1",
                                        "--workdir", "{tmp}/../work"),
         "step ingest-task failed: TaskError: image folder '{data}/empty_class': class folder "
         "'c' holds no image"),
    Case("onboard-class-only-in-test", ("onboard", "imagefolder:{data}/test_only", "--store",
                                        "{store}", "--config", "testing", "--cycles", "1",
                                        "--workdir", "{tmp}/../work"),
         "step ingest-task failed: TaskError: task 'test_only': class 'c' has no training "
         "image", BOTH),
    # --- submit ----------------------------------------------------------------------
    Case("submit-empty-package-flag", ("submit", "--host", "http://127.0.0.1:9",
                                       "--package", ""), "--package '' is not a file"),
    Case("submit-empty-package-file", ("submit", "--host", "http://127.0.0.1:9",
                                       "--package", "{data}/empty.yaml"),
         "empty.yaml' is empty: give a pipeline YAML"),
    Case("submit-bad-task-spec", ("submit", "--host", "http://127.0.0.1:9", "--task",
                                  "tfds:../../etc"), "TFDS names look like"),
    Case("schedule-bad-task-spec", ("schedule", "--host", "http://127.0.0.1:9", "--cron",
                                    "@daily", "--param", "task_spec=foo:bar"),
         "task source 'foo:bar' is invalid"),
]

PARAMS = [pytest.param(case, backend, id=f"{case.id}-{backend}")
          for case in CASES for backend in case.backends]


@pytest.mark.parametrize("case,backend", PARAMS)
def test_bad_input_is_one_line_and_changes_nothing(case, backend, data, base_store, tmp_path,
                                                   monkeypatch, capsys, request):
    tmp = tmp_path / "case"
    tmp.mkdir()
    if backend == "local":
        store = str(tmp / "store")
        shutil.copytree(base_store, store)
    else:
        store = request.getfixturevalue("gcs_base")
    if case.setup is not None:
        case.setup(tmp)
    monkeypatch.chdir(tmp)  # `--store ""` must not create anything here either

    def fill(text):
        return text.format(store=store, data=data, tmp=tmp)
    before = tree_digest(tmp)
    before_gcs = gcs_digest(store) if backend == "gcs" else None
    if case.patch is not None:
        case.patch(monkeypatch)
    code = main([fill(a) for a in case.argv])
    monkeypatch.undo()  # the emulator's address again, before the store is read back
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mu2net: error: "), err
    assert fill(case.phrase) in lines[0]
    assert tree_digest(tmp) == before
    if before_gcs is not None:
        assert gcs_digest(store) == before_gcs


def test_there_are_enough_cases():
    assert len(PARAMS) >= 30 and len({p.id for p in PARAMS}) == len(PARAMS)


# === what bad inputs must not break =========================================================


@pytest.mark.parametrize("backend", ["local", "gcs"])
def test_valid_specs_are_still_queued(backend, data, base_store, tmp_path, request, capsys):
    store = (str(shutil.copytree(base_store, tmp_path / "store")) if backend == "local"
             else request.getfixturevalue("gcs_base"))
    specs = ["demo:glyph_styles", "tfds:mnist/config:3.0.1", f"imagefolder:{data}/good",
             f"imagefolder:gs://{BUCKET}/flowers"]
    assert main(["queue", "add", *specs, "--store", store]) == 0
    assert main(["queue", "add", TASK, "--mode", "iterate", "--store", store]) == 0
    queued = [(e.spec, e.mode) for e in open_store(store, cache_dir=None).queue()]
    assert queued[-5:] == [(s, "onboard") for s in specs] + [(TASK, "iterate")]
    capsys.readouterr()


def test_a_small_folder_with_enough_validation_still_loads(data):
    from mu2net.tasks.sources import load_source

    task = load_source(f"imagefolder:{data}/good")  # 80 images: validation 19
    assert task.info.split_sizes["validation"] >= 10


def test_predict_resizes_each_image_on_its_own(data, base_store, tmp_path, capsys):
    """A file's label and probability do not depend on the other files passed with it."""
    import json

    store = str(shutil.copytree(base_store, tmp_path / "store"))
    args = ["predict", "--store", store, "--task", TASK, "--json"]

    def predictions(*files: str) -> list[dict]:
        assert main([*args, *(f"{data}/{name}" for name in files)]) == 0
        return json.loads(capsys.readouterr().out)["predictions"]

    alone = predictions("digit.png")[0]
    # The control that makes this test able to fail: the task's head is not uniform, so the
    # output depends on the image (a predictor that ignored its input would give these equal).
    other = predictions("wide.png")[0]
    assert (other["label"], other["probability"]) != pytest.approx((alone["label"],
                                                                    alone["probability"]))
    # Two wide colour images outnumber it: stacking would resize the digit to 40x24 first.
    together = predictions("wide.png", "digit.png", "wide.png")[1]
    assert together["label"] == alone["label"]
    assert together["probability"] == pytest.approx(alone["probability"], abs=1e-6)


def test_export_replaces_an_earlier_export_only_with_force(base_store, tmp_path, capsys):
    store = str(shutil.copytree(base_store, tmp_path / "store"))
    args = ["export", "--store", store, "--task", TASK, "--out", str(tmp_path / "out")]
    assert main(args) == 0
    first = tree_digest(tmp_path / "out")
    assert main(args) == 2 and "pass --force" in capsys.readouterr().err
    assert tree_digest(tmp_path / "out") == first
    assert main([*args, "--force"]) == 0
    assert set(tree_digest(tmp_path / "out")) == set(first)


@pytest.mark.parametrize("fmt", ["keras", "savedmodel"])
def test_an_export_predicts_what_predict_prints(fmt, data, base_store, tmp_path, capsys):
    """The exported model, loaded back the way README says, gives each image the label and
    probability that `predict` prints for it, and its metadata names the classes in order."""
    import json

    from mu2net.model import load_keras_model
    from mu2net.predict import eval_input, read_image

    store = str(shutil.copytree(base_store, tmp_path / "store"))
    files = [f"{data}/digit.png", f"{data}/wide.png"]
    assert main(["predict", "--store", store, "--task", TASK, "--json", *files]) == 0
    printed = json.loads(capsys.readouterr().out)["predictions"]
    out = tmp_path / "out"
    assert main(["export", "--store", store, "--task", TASK, "--out", str(out),
                 "--format", fmt]) == 0
    meta = json.loads((out / f"{TASK}.json").read_text())
    inputs = np.stack([eval_input(read_image(f), meta["image_size"]) for f in files])
    if fmt == "keras":
        logits = np.asarray(load_keras_model(str(out / f"{TASK}.keras"))(inputs, training=False))
    else:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(out / f"{TASK}_savedmodel"))  # kept: serve's variables
        logits = loaded.serve(inputs).numpy()
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for row, p in zip(printed, probs):
        assert meta["class_names"][int(np.argmax(p))] == row["label"]
        assert float(p.max()) == pytest.approx(row["probability"], abs=1e-5)
    assert meta["task"] == TASK and meta["version"] == 1
