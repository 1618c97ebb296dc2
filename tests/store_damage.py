"""Helpers for the damaged-store tests (`test_store_damage.py`, `test_store_fuzz.py`): a small
committed store built once per backend and copied per case, the kinds of damage an operator's
hand or a dying process leaves, and every read and admin command run in-process through the
CLI's `main` with its output captured and its time bounded."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass

from conftest import BUCKET

from mu2net.cli import main
from mu2net.store.layout import GC_KEY, HEAD_KEY, blob_key
from mu2net.store.synthetic import synthetic_extension

TASKS = ("t1", "t2", "t3", "t4")
COMMAND_BOUND_S = 20.0  # every command on these tiny stores ends well within this


def build_template(folder: str, *, extras: bool = False) -> str:
    """`mu2net init --store S --config testing --root random`, then t1..t4 committed (one
    version each, synthetic parameters: no training). With `extras`, also one document of each
    other kind for damage to hit: a task record, a pending queue entry and a live lease.
    Returns the store's folder."""
    from mu2net_helpers import random_root_store

    from mu2net.config import get_config
    from mu2net.schema import sha256_hex
    from mu2net.task_info import TaskInfo

    store = random_root_store(folder, get_config("testing"))
    for task in TASKS:
        view = store.load_system()
        store.commit(synthetic_extension(view, task, os.path.join(folder, "blobs"),
                                         own=("encoderblock_0",),
                                         metrics={"validation_accuracy": 0.5,
                                                  "test_accuracy": 0.5}))
    if extras:
        store.put_task_info(TaskInfo(
            name="t1", source="demo:digits", num_classes=2, class_names=("a", "b"),
            split_sizes={"train": 8, "validation": 2, "test": 2}, image_shape=(8, 8, 1),
            content_hash=sha256_hex(b"t1 data")))
        store.enqueue("demo:digits", entry_id="pending-digits")
        store.acquire_lease("live-run", ttl_s=10 * 365 * 86400, base_version=4)
    return os.path.join(folder, "store")


def library_reads(uri: str) -> list[str]:
    """The store's reads called directly (what the pipeline and `status` build on: head,
    history, show, diff, one task, the queue's next entry, leases, task records); returns the
    tracebacks of any that raised something other than a one-line `Mu2NetError`."""
    from mu2net.errors import Mu2NetError
    from mu2net.store import open_store

    crashes = []
    store = open_store(uri, cache_dir=None, create=False)
    calls = [("head", store.head), ("versions", lambda: store.versions(limit=10)),
             ("show", lambda: store.show(store.head())),
             ("diff", lambda: store.diff(0, store.head())),
             ("load_system", store.load_system), ("load_task", lambda: store.load_task("t2")),
             ("queue", store.queue), ("take_next", lambda: store.take_next("fuzz-run")),
             ("leases", store.leases), ("task_infos", lambda: store.task_infos("t1"))]
    for name, call in calls:
        try:
            call()
        except Mu2NetError:
            pass
        except BaseException:  # noqa: BLE001 - what the test is looking for
            crashes.append(f"{name}: {traceback.format_exc()}")
    return crashes


def copy_store(template: str, backend: str, tmp: str) -> str:
    """A fresh copy of the template store on `backend` ("local" or "gcs"); returns its URI."""
    if backend == "local":
        target = os.path.join(tmp, f"store-{uuid.uuid4().hex[:8]}")
        shutil.copytree(template, target, symlinks=True)
        return target
    from test_store import make_backend

    uri = f"gs://{BUCKET}/{uuid.uuid4().hex}"
    source, target = make_backend(template), make_backend(uri)
    for key in source.list(""):
        target.write(key, source.read(key)[0])
    return uri


# === damage =================================================================================


def raw_write(uri: str, key: str, data: bytes) -> None:
    """Replace an object's bytes as a hand edit would: on the local backend the file itself
    (no object header), on GCS the object."""
    if uri.startswith("gs://"):
        from test_store import make_backend

        make_backend(uri).write(key, data)
        return
    path = os.path.join(uri, *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.islink(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def raw_read(uri: str, key: str) -> bytes | None:
    if uri.startswith("gs://"):
        from test_store import make_backend

        got = make_backend(uri).read(key)
        return None if got is None else got[0]
    path = os.path.join(uri, *key.split("/"))
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def raw_delete(uri: str, key: str) -> None:
    if uri.startswith("gs://"):
        from test_store import make_backend

        make_backend(uri).delete(key)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(uri, *key.split("/")))


def keys(uri: str) -> list[str]:
    from test_store import make_backend

    backend = make_backend(uri)
    return sorted(backend.list(""))


WRONG_SHAPES = [b"[]", b"{}", b"null", b"5", b'"text"', b'{"collections": {"x": null}}',
                b'{"version": 1}', b'{"schema": "mu2net/lease/v1"}',
                b'{"tasks": {"digits": 5}}', b"\xff\xfe", b""]


def deeply_nested(depth: int = 200_000) -> bytes:
    return b'{"version": ' + b"[" * depth + b"]" * depth + b"}"


def damage(uri: str, rng: random.Random, outside: str) -> tuple[str, bool]:
    """Damage one object of the store at random: (what was done, whether `store check` must
    flag it). Deleting HEAD, `GC`, a lease or a queue entry leaves a sound store (HEAD is a
    hint; the others may be gone for good reasons), and damage to a key that does not exist
    may change nothing."""
    from test_store import make_backend

    everything = [k for k in keys(uri) if not k.startswith(".")]
    key = rng.choice(everything + [HEAD_KEY, GC_KEY, "leases/" + "0" * 40 + ".json",
                                   "queue/20260101T000000-x.json"])
    kinds = ["truncate", "delete", "wrong_shape", "swap", "nest", "junk"]
    if not uri.startswith("gs://"):
        kinds.append("symlink")
    kind = rng.choice(kinds)
    data = raw_read(uri, key)
    flag = data is not None and kind != "delete" or (
        kind == "delete" and key.startswith(("versions/", "paths/", "blobs/"))
        and key != max(k for k in everything if k.startswith("versions/")))
    if kind == "truncate" and data:
        raw_write(uri, key, data[:rng.randrange(len(data))])
    elif kind == "delete":
        raw_delete(uri, key)
    elif kind == "wrong_shape":
        raw_write(uri, key, rng.choice(WRONG_SHAPES))
    elif kind == "swap":
        other = rng.choice(everything)
        a, b = raw_read(uri, key), raw_read(uri, other)
        if a is not None and b is not None:
            raw_write(uri, key, b)
            raw_write(uri, other, a)
        flag = a is not None and b is not None and a != b and GC_KEY not in (key, other)
        kind = f"swap with {other}"
    elif kind == "nest":
        raw_write(uri, key, deeply_nested(rng.choice([100, 5000, 200_000])))
    elif kind == "junk":
        # Bytes through the backend (a valid header on the local backend): junk under a name.
        make_backend(uri).write(key, os.urandom(rng.randrange(1, 64)))
    elif kind == "symlink":
        target = os.path.join(outside, f"victim-{uuid.uuid4().hex[:6]}")
        with open(target, "wb") as f:
            f.write(data or b"outside the store")
        path = os.path.join(uri, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if rng.random() < 0.3 and key.startswith("blobs/"):  # the whole folder linked out
            folder = os.path.join(uri, "blobs")
            moved = os.path.join(outside, f"blobs-{uuid.uuid4().hex[:6]}")
            shutil.move(folder, moved)
            os.symlink(moved, folder)
            kind = "blobs/ linked out"
        else:
            os.symlink(target, path)
    return f"{kind} {key}", flag


# === running commands =======================================================================


@dataclass
class Outcome:
    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float
    crash: str = ""  # a traceback, when the command raised

    @property
    def last_line(self) -> str:
        lines = [line for line in (self.out + self.err).splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_cli(*argv: str) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    crash, rc = "", None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - what the test is looking for
            crash = traceback.format_exc()
    return Outcome(list(argv), rc, out.getvalue(), err.getvalue(),
                   time.monotonic() - start, crash)


def commands(uri: str, report_to: str = "") -> list[tuple[str, ...]]:
    """Every read and admin command, in the order an operator would try them; with
    `report_to`, `mu2net report` too (the full history; about 3 s, so the slow suite only)."""
    s = ("--store", uri)
    report = [("report", "--out", report_to, *s)] if report_to else []
    return report + [
        ("status", *s), ("status", "--json", *s), ("status", "--version", "1", *s),
        ("store", "check", *s), ("store", "check", "--quick", *s),
        ("queue", "list", *s), ("store", "repair", *s),
        ("gc", "--retention-hours", "0", *s),
        ("rollback", "--task", "t1", "--to-version", "1", *s),
        ("store", "repair", "--apply", "--retention-hours", "0", *s),
        ("gc", "--retention-hours", "0", "--apply", *s),
        ("store", "check", *s), ("status", *s)]


def check_json(uri: str) -> dict | str:
    """`store check --json`'s report, or why there is none (a crash or an error line)."""
    outcome = run_cli("store", "check", "--json", "--store", uri)
    if outcome.crash or outcome.rc not in (0, 1):
        return outcome.crash or outcome.last_line
    return json.loads(outcome.out)


def loadable_tasks(uri: str) -> set[str]:
    """Tasks at the head whose path and blobs load (what a user can still predict with)."""
    from mu2net.errors import Mu2NetError
    from mu2net.store import open_store

    store = open_store(uri, cache_dir=None, create=False)
    try:
        head = store.read_version(store.head())
    except (Mu2NetError, TypeError):
        return set()
    ok = set()
    for task in head.tasks:
        try:
            store.load_task(task, head.number)
            ok.add(task)
        except Mu2NetError:
            pass
    return ok


def referenced_blobs(uri: str) -> set[str]:
    """Blob keys that any present, readable index references through readable paths."""
    from mu2net.errors import Mu2NetError
    from mu2net.store import open_store

    store = open_store(uri, cache_dir=None, create=False)
    blobs = set()
    for key in store.backend.list("versions/"):
        try:
            version = store.read_version(int(key.split("/")[1].split(".")[0]))
        except (Mu2NetError, ValueError):
            continue
        for path_hash in [version.root, *version.tasks.values()]:
            try:
                blobs.update(blob_key(c.blob) for c in store.read_path(path_hash).components)
            except Mu2NetError:
                pass
    return blobs


def present(uri: str, wanted: set[str]) -> set[str]:
    from test_store import make_backend

    backend = make_backend(uri)
    out = set()
    for key in wanted:
        with contextlib.suppress(Exception):
            if backend.exists(key):
                out.add(key)
    return out
