"""The versioned model store, on the local backend and on a real GCS API server.

Every test that takes `store_uri` runs twice: on a local folder, and on `fake-gcs-server`
(started once per session) through the real google-cloud-storage client, which enforces
generation preconditions on single-shot uploads like GCS does. Multi-process tests start fresh
Python processes (`_child`) that open the same store by URI. Components are tiny synthetic
blobs: the store stores bytes, so random bytes stand in for `.npz` files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from conftest import BUCKET

from mu2net.blobs import STAGED_IN_STORE
from mu2net.errors import ConflictError, IntegrityError, SchemaError, StoreError
from mu2net.schema import ROOT_TASK, Extension, Path, SystemVersion, sha256_hex
from mu2net.scoring import config_scorer
from mu2net.store import open_store
from mu2net.store.base import CommitResult, ObjectBackend, ObjectInfo
from mu2net.store.gcs import GcsBackend, parse_gs_uri
from mu2net.store.layout import (
    GC_KEY,
    INDEX_MAX_BYTES,
    blob_key,
    encode,
    encode_index,
    encode_pointer,
    path_key,
    version_key,
)
from mu2net.store.local import LocalBackend, local_root, open_local
from mu2net.store.synthetic import synthetic_blob, synthetic_component
from mu2net.store.versioned import VersionedStore

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
HPARAMS = {"num_layers": 1, "ds_image_size": 32, "num_classes": 10, "adapter_layers": [],
           "adapter_dim": 8}


# === backends ===============================================================================


def make_backend(uri: str, fsync: bool = True) -> ObjectBackend:
    if uri.startswith("gs://"):
        return GcsBackend(*parse_gs_uri(uri))
    return LocalBackend(local_root(uri), fsync=fsync)


def make_store(uri: str, cache_dir: str | None = None, wrap=None, fsync: bool = True,
               **options) -> VersionedStore:
    backend = make_backend(uri, fsync)
    return VersionedStore(wrap(backend) if wrap else backend, cache_dir=cache_dir, **options)


class Delegate(ObjectBackend):
    """Passes everything to an inner backend; subclasses intercept."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner, self.uri = inner, inner.uri

    def read(self, key: str) -> tuple[bytes, int] | None:
        return self.inner.read(key)

    def read_range(self, key: str, start: int, length: int) -> bytes | None:
        return self.inner.read_range(key, start, length)

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        return self.inner.write(key, data, if_generation_match=if_generation_match)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_info(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


class Counting(Delegate):
    """Records every write (key, bytes) at the backend."""

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.writes: list[tuple[str, int]] = []

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        generation = self.inner.write(key, data, if_generation_match=if_generation_match)
        self.writes.append((key, len(data)))
        return generation


class InjectedFault(Exception):
    pass


class Faulty(Delegate):
    """Fails at write number `at`, before or after performing it: raises, or kills the process
    (SIGKILL: no cleanup, no exception handlers)."""

    def __init__(self, inner: ObjectBackend, at: int, when: str, action: str = "raise") -> None:
        super().__init__(inner)
        self.at, self.when, self.action, self.count = at, when, action, 0

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        number, self.count = self.count, self.count + 1
        if number == self.at and self.when == "before":
            self._fail(key)
        generation = self.inner.write(key, data, if_generation_match=if_generation_match)
        if number == self.at and self.when == "after":
            self._fail(key)
        return generation

    def _fail(self, key: str) -> None:
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"{self.when} write {self.at} ({key})")


class NoListing(Delegate):
    def list(self, prefix: str) -> Iterator[str]:
        raise AssertionError(f"listed {prefix!r}")

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        raise AssertionError(f"listed {prefix!r}")


# === synthetic model pieces =================================================================


def write_blob_file(folder: str, data: bytes) -> tuple[str, str]:
    os.makedirs(folder, exist_ok=True)
    blob = sha256_hex(data)
    file_path = os.path.join(folder, blob)
    with open(file_path, "wb") as f:
        f.write(data)
    return blob, file_path


def root_path(folder: str) -> tuple[Path, dict[str, str]]:
    files, comps = {}, []
    for name in ("embedding", "encoderblock_0", "head"):
        data = synthetic_blob(f"root/{name}")
        blob, file_path = write_blob_file(folder, data)
        files[blob] = file_path
        comps.append(synthetic_component(ROOT_TASK, name, data))
    return Path(task=ROOT_TASK, components=tuple(comps), hparams=HPARAMS,
                method_version="m1"), files


def make_extension(folder: str, root: Path, task: str, run_id: str, base_version: int,
                   accuracy: float = 0.5, seed: str = "", reuse: tuple[str, ...] = ()
                   ) -> Extension:
    """A path reusing the root's embedding (frozen) with two new components of its own."""
    files, comps = {}, [root.component("embedding")]
    for name in ("encoderblock_0", "head"):
        data = synthetic_blob(f"{task}/{name}/{seed or run_id}")
        blob, file_path = write_blob_file(folder, data)
        files[blob] = file_path
        comps.append(synthetic_component(task, name, data))
    path = Path(task=task, components=tuple(comps), hparams=HPARAMS, method_version="m1",
                parent=root.hash, parent_task=ROOT_TASK,
                metrics={"validation_accuracy": accuracy})
    return Extension(task=task, base_version=base_version, path=path, blob_files=files,
                     run_id=run_id, config_name="testing", code_version="test")


def init_store(store: VersionedStore, folder: str) -> Path:
    root, files = root_path(folder)
    result = store.init(root, files, {"run_id": "init"})
    assert result.version == 0
    return root


def assert_consistent(store: VersionedStore) -> None:
    """Every version parses, links to its predecessor, and the head's paths and blobs load."""
    head = store.head()
    assert head is not None
    for number in range(head + 1):
        version = store.read_version(number)
        assert version.parent == (number - 1 if number else None)
    view = store.load_system()
    for task in view.paths:
        store.load_task(task)


# === basics =================================================================================


def test_open_store_picks_backend_by_scheme(tmp_path, gcs_server) -> None:
    assert isinstance(open_store(str(tmp_path / "a")).backend, LocalBackend)
    assert open_store(f"file://{tmp_path}/b").backend.uri == f"file://{tmp_path}/b"
    gcs = open_store(f"gs://{BUCKET}/some/prefix/", cache_dir=None)
    assert isinstance(gcs.backend, GcsBackend) and gcs.uri == f"gs://{BUCKET}/some/prefix"
    with pytest.raises(StoreError, match="unknown scheme 's3'"):
        open_store("s3://bucket/x")
    with pytest.raises(StoreError, match="absolute path"):
        open_store("file://relative/dir")


def test_backend_generations_and_conflicts(store_uri) -> None:
    backend = make_backend(store_uri)
    assert backend.read("a/b") is None and not backend.exists("a/b")
    g1 = backend.write("a/b", b"one", if_generation_match=0)
    assert backend.read("a/b") == (b"one", g1)
    assert [backend.read_range("a/b", s, n) for s, n in [(0, 2), (1, 9), (5, 2)]] == [
        b"on", b"ne", b""]
    assert backend.read_range("a/none", 0, 4) is None
    with pytest.raises(ConflictError):
        backend.write("a/b", b"two", if_generation_match=0)
    g2 = backend.write("a/b", b"two", if_generation_match=g1)
    assert g2 != g1 and backend.read("a/b") == (b"two", g2)
    with pytest.raises(ConflictError):
        backend.write("a/b", b"stale", if_generation_match=g1)
    backend.write("a/c", b"x")
    assert list(backend.list("a/")) == ["a/b", "a/c"]
    assert [(i.key, i.size) for i in backend.list_info("a/")] == [("a/b", 3), ("a/c", 1)]
    backend.delete("a/b")
    backend.delete("a/b")  # missing is fine
    assert backend.read("a/b") is None
    g3 = backend.write("a/b", b"again", if_generation_match=0)
    assert g3 not in (g1, g2)  # no ABA after delete and recreate


def test_list_by_a_partial_name_and_generations_in_list_info(store_uri) -> None:
    # found by the mutation check (README "Mutation score"): a prefix that is not a folder
    backend = make_backend(store_uri)
    gens = {key: backend.write(key, b"x" * i, if_generation_match=0)
            for i, key in enumerate(["a/b1", "a/b2/c", "a/c", "ab"], start=1)}
    backend.write("a/c", b"moved")  # takes the key's lock (a file in the local lock folder)
    gens["a/c"] = backend.read("a/c")[1]
    assert list(backend.list("a/b")) == ["a/b1", "a/b2/c"]
    assert list(backend.list("a/")) == ["a/b1", "a/b2/c", "a/c"]
    assert list(backend.list("")) == ["a/b1", "a/b2/c", "a/c", "ab"]  # no lock files
    assert list(backend.list("a/b2/c")) == ["a/b2/c"]
    assert {i.key: i.generation for i in backend.list_info("")} == gens


def test_open_local_without_create_makes_no_folder(tmp_path) -> None:
    assert open_local(str(tmp_path / "none"), create=False).head() is None
    assert not (tmp_path / "none").exists()
    open_local(str(tmp_path / "new"))
    assert (tmp_path / "new").is_dir()


def test_sweep_partial_lists_then_removes_only_old_temporary_files(tmp_path) -> None:
    backend = LocalBackend(str(tmp_path / "s"), fsync=False)
    backend.write("a/b", b"kept", if_generation_match=0)
    backend.write("a/b", b"kept too")  # leaves a lock file, which is no temporary file
    old = [tmp_path / "s" / ".tmp-old", tmp_path / "s" / "a" / ".tmp-killed"]
    new = tmp_path / "s" / "a" / ".tmp-writing"
    for path in [*old, new]:
        path.write_bytes(b"partial")
    for path in old:
        os.utime(path, (1000.0, 1000.0))
    os.utime(new, (3000.0, 3000.0))
    assert backend.sweep_partial(2000.0) == [".tmp-old", "a/.tmp-killed"]  # dry run
    assert all(p.exists() for p in [*old, new])
    assert backend.sweep_partial(2000.0, dry_run=False) == [".tmp-old", "a/.tmp-killed"]
    assert not any(p.exists() for p in old) and new.exists()
    assert backend.read("a/b")[0] == b"kept too" and list(backend.list("")) == ["a/b"]
    assert backend.sweep_partial(3000.0) == []  # not older than the cutoff


def test_gcs_read_retries_a_download_that_fails_its_checksum(gcs_server, monkeypatch) -> None:
    """A checksum mismatch (seen in CI: the emulator served an object overwritten mid-download
    with the old generation's hash) is downloaded again; one that persists is a StoreError."""
    from google.cloud import storage
    from google.cloud.storage.exceptions import DataCorruption

    from mu2net.store import gcs

    backend = make_backend(f"gs://{BUCKET}/{uuid.uuid4().hex}")
    generation = backend.write("HEAD", b"pointer")
    real_download = storage.Blob.download_as_bytes
    failures = {"left": gcs.DOWNLOAD_ATTEMPTS - 1}

    def corrupt_first(blob, *args, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise DataCorruption(None, "Checksum mismatch while downloading")
        return real_download(blob, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "download_as_bytes", corrupt_first)
    assert backend.read("HEAD") == (b"pointer", generation)
    failures["left"] = gcs.DOWNLOAD_ATTEMPTS - 1
    assert backend.read_range("HEAD", 1, 3) == b"oin"
    failures["left"] = gcs.DOWNLOAD_ATTEMPTS
    with pytest.raises(StoreError, match=f"{gcs.DOWNLOAD_ATTEMPTS} downloads in a row"):
        backend.read("HEAD")


def test_init_commit_and_load_one_task(store_uri, tmp_path) -> None:
    store = make_store(store_uri, str(tmp_path / "cache"))
    assert store.head() is None
    with pytest.raises(StoreError, match="empty"):
        store.load_system()
    root = init_store(store, str(tmp_path / "f"))
    assert store.init(*root_path(str(tmp_path / "f")), {"run_id": "again"}).created is False
    other_root = Path(task=ROOT_TASK, components=root.components[:1], hparams=HPARAMS,
                      method_version="m1")
    with pytest.raises(StoreError, match="already initialised"):
        store.init(other_root, {}, {})
    ext = make_extension(str(tmp_path / "f"), root, "cifar", "run-1", 0, accuracy=0.7)
    result = store.commit(ext)
    assert (result.version, result.created, result.rebases) == (1, True, 0)
    version = store.read_version(1)
    assert version.tasks == {"cifar": ext.path.hash}
    prov = version.provenance
    assert (prov["run_id"], prov["task"], prov["method_version"], prov["code_version"],
            prov["config_name"], prov["base_version"]) == ("run-1", "cifar", "m1", "test",
                                                           "testing", 0)
    assert "committed_at" in prov and "score" not in json.dumps(prov)
    path, blobs = store.load_task("cifar")
    assert path == ext.path
    assert set(blobs) == {c.blob for c in path.components}
    assert all(sha256_hex(data) == h for h, data in blobs.items())
    view = store.load_system()
    assert view.paths["cifar"] == ext.path and view.root == root
    assert store.load_task(ROOT_TASK)[0] == root
    with pytest.raises(StoreError, match="'nope' has no path at version 1"):
        store.load_task("nope")


def test_commit_is_idempotent_per_run_id(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    ext = make_extension(str(tmp_path), root, "cifar", "run-1", 0)
    first = store.commit(ext)
    store.commit(make_extension(str(tmp_path), root, "svhn", "run-2", 0))
    again = make_store(store_uri).commit(ext)  # a fresh process retrying
    assert (again.version, again.created) == (first.version, False)
    assert store.head() == 2
    reused = make_extension(str(tmp_path), root, "mnist", "run-1", 0)
    with pytest.raises(StoreError, match="run id 'run-1' already committed version 1"):
        store.commit(reused)


def test_readers_and_writers_never_list(store_uri, tmp_path) -> None:
    root = init_store(make_store(store_uri), str(tmp_path))
    store = make_store(store_uri, wrap=NoListing)
    store.commit(make_extension(str(tmp_path), root, "cifar", "run-1", 0))
    assert store.head() == 1
    store.load_task("cifar")
    store.load_system()
    store.commit(make_extension(str(tmp_path), root, "cifar", "run-1", 0))  # retry scan


def test_commit_writes_only_new_blobs_one_path_one_index_and_pointer(store_uri,
                                                                     tmp_path) -> None:
    root = init_store(make_store(store_uri), str(tmp_path))
    counting: list[Counting] = []
    store = make_store(store_uri, wrap=lambda b: counting.append(Counting(b)) or counting[0])
    ext = make_extension(str(tmp_path), root, "cifar", "run-1", 0)
    result = store.commit(ext)
    new_blobs = sorted(ext.blob_files)
    version = store.read_version(result.version)
    index = encode_index(version)
    summary = store.read_summary(version.summary)  # the version's component users
    expected = ([(blob_key(b), len(synthetic_blob(f"cifar/{n}/run-1")))
                 for b, n in zip(new_blobs, _names_by_blob(ext, new_blobs))]
                + [(path_key(ext.path.hash), len(encode(ext.path.to_dict()))),
                   (f"summaries/{summary.hash}.json", len(encode(summary.to_dict()))),
                   (version_key(1), len(index)), ("HEAD", len(encode_pointer(1)))])
    assert counting[0].writes == expected
    assert result.bytes_written == sum(size for _, size in expected)
    # The root's embedding blob was reused, not written; a blob already present is skipped.
    assert blob_key(root.component("embedding").blob) not in dict(counting[0].writes)
    counting[0].writes.clear()
    ext2 = make_extension(str(tmp_path), root, "svhn", "run-2", 1)
    store.put_blob(synthetic_blob("svhn/head/run-2"))
    counting[0].writes.clear()
    result2 = store.commit(ext2)
    keys = [key for key, _ in counting[0].writes]
    summary2 = store.read_version(result2.version).summary
    assert keys == [blob_key(ext2.path.component("encoderblock_0").blob),
                    path_key(ext2.path.hash), f"summaries/{summary2}.json", version_key(2),
                    "HEAD"]
    assert result2.bytes_written == sum(size for _, size in counting[0].writes)


def _names_by_blob(ext: Extension, blobs: list[str]) -> list[str]:
    by_blob = {c.blob: c.name for c in ext.path.components}
    return [by_blob[b] for b in blobs]


# Seeding 10,000 path documents takes ~40 s on the emulator, so its variant is a slow test.
@pytest.mark.parametrize("store_uri", ["local", pytest.param("gcs", marks=pytest.mark.slow)],
                         indirect=True)
def test_index_stays_under_8_mib_with_10000_tasks(store_uri, tmp_path) -> None:
    store = make_store(store_uri, fsync=False)  # fsync off only to seed quickly
    root = init_store(store, str(tmp_path))
    n = 10_000
    names = [f"task-{i:05d}-" + "x" * 52 for i in range(n)]  # 64-character task names
    seed_tasks(store, root, names)
    ext = make_extension(str(tmp_path), root, "the-new-task", "run-new", 1)
    result = store.commit(ext)
    data, _ = store.backend.read(version_key(result.version))
    assert len(store.read_version(result.version).tasks) == n + 1
    assert len(data) < INDEX_MAX_BYTES, len(data)
    path, _ = make_store(store_uri).load_task("the-new-task")
    assert path == ext.path
    assert make_store(store_uri).load_task(names[1234])[0].task == names[1234]


def seed_tasks(store: VersionedStore, root: Path, names: list[str]) -> int:
    """Version 1 with one small path per name, written straight to the backend (setup only:
    10,000 commits one by one would take minutes). Returns the version number."""
    def put(name: str) -> str:
        path = Path(task=name, components=(root.component("embedding"),), hparams=HPARAMS,
                    method_version="m1", metrics={"validation_accuracy": 0.5})
        store.backend.write(path_key(path.hash), encode(path.to_dict()), if_generation_match=0)
        return path.hash

    with ThreadPoolExecutor(16) as pool:
        hashes = list(pool.map(put, names))
    head = store.head()
    version = SystemVersion(number=head + 1, parent=head, root=root.hash,
                            tasks=dict(zip(names, hashes)),
                            provenance={"run_id": "seed", "task": "", "kind": "seed",
                                        "committed_at": "2000-01-01T00:00:00.000000Z"})
    store.backend.write(version_key(head + 1), encode_index(version), if_generation_match=0)
    return head + 1


# === integrity ==============================================================================


def test_tampered_blob_and_path_are_refused(store_uri, tmp_path) -> None:
    store = make_store(store_uri, str(tmp_path / "cache1"))
    root = init_store(store, str(tmp_path))
    ext = make_extension(str(tmp_path), root, "cifar", "run-1", 0)
    store.commit(ext)
    store.load_task("cifar")  # fills cache1
    blob = ext.path.component("head").blob
    good = store.get_blob(blob)
    store.backend.write(blob_key(blob), good[:-1] + bytes([good[-1] ^ 1]))
    fresh = make_store(store_uri, str(tmp_path / "cache2"))
    with pytest.raises(IntegrityError, match=f"blob .*{blob}.* tampered or truncated"):
        fresh.get_blob(blob)
    with pytest.raises(IntegrityError):
        fresh.load_task("cifar")
    # The cache keyed by hash holds the verified copy; a corrupt cache file is refetched.
    assert store.get_blob(blob) == good
    with open(tmp_path / "cache1" / "blobs" / blob, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(IntegrityError):
        store.get_blob(blob)  # refetched from the (tampered) store and refused
    store.backend.write(path_key(ext.path.hash), encode(ext.path.to_dict()).replace(
        b'"validation_accuracy":0.5', b'"validation_accuracy":0.9'))
    with pytest.raises(IntegrityError, match="path document .* tampered"):
        make_store(store_uri).read_path(ext.path.hash)


def test_commit_refuses_missing_or_mislabelled_blobs(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    ext = make_extension(str(tmp_path), root, "cifar", "run-1", 0)
    missing = Extension(task="cifar", base_version=0, path=ext.path,
                        blob_files={h: f for h, f in ext.blob_files.items()
                                    if h != ext.path.component("head").blob},
                        run_id="run-1", config_name="testing")
    with pytest.raises(StoreError, match="references blobs missing"):
        store.commit(missing)
    assert store.head() == 0
    head_blob = ext.path.component("head").blob
    wrong = dict(ext.blob_files)
    wrong[head_blob] = ext.blob_files[ext.path.component("encoderblock_0").blob]
    with pytest.raises(IntegrityError, match="hashes to"):
        store.commit(Extension(task="cifar", base_version=0, path=ext.path, blob_files=wrong,
                               run_id="run-1", config_name="testing"))
    assert store.head() == 0


# === faults =================================================================================

# A commit with two new blobs writes: blob, blob, path document, index, pointer.
FAULT_POINTS = [(at, when) for at in range(5) for when in ("before", "after")]


def check_after_fault(uri: str, folder: str, root: Path, ext: Extension) -> None:
    """Readable, no partial version, and a retry completes exactly once."""
    store = make_store(uri)
    head = store.head()
    assert head in (1, 2)
    assert_consistent(store)  # a visible version has all its path documents and blobs
    if head == 2:
        assert store.read_version(2).tasks["cifar"] == ext.path.hash
    retry = store.commit(ext)
    assert retry.version == 2 and retry.created == (head == 1)
    assert store.head() == 2
    runs = [store.read_version(n).provenance.get("run_id") for n in range(3)]
    assert runs.count(ext.run_id) == 1
    assert store.load_task("cifar")[0] == ext.path
    assert make_store(uri).commit(ext).created is False


def prepare_fault_case(uri: str, folder: str) -> tuple[Path, Extension]:
    store = make_store(uri)
    root = init_store(store, folder)
    store.commit(make_extension(folder, root, "svhn", "run-0", 0))
    return root, make_extension(folder, root, "cifar", "run-1", 1)


@pytest.mark.parametrize("at,when", FAULT_POINTS)
def test_raise_between_commit_writes(store_uri, tmp_path, at, when) -> None:
    root, ext = prepare_fault_case(store_uri, str(tmp_path))
    faulty = make_store(store_uri, wrap=lambda b: Faulty(b, at, when))
    with pytest.raises(InjectedFault):
        faulty.commit(ext)
    check_after_fault(store_uri, str(tmp_path), root, ext)


def kill_case(uri: str, folder: str, at: int, when: str) -> None:
    root, ext = prepare_fault_case(uri, folder)
    proc = run_child({"kind": "kill_commit", "uri": uri, "folder": folder, "at": at,
                      "when": when})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    check_after_fault(uri, folder, root, ext)


@pytest.mark.parametrize("at,when", [(3, "before"), (3, "after")])  # around the commit point
def test_kill_around_the_commit_point(store_uri, tmp_path, at, when) -> None:
    kill_case(store_uri, str(tmp_path), at, when)


@pytest.mark.slow
@pytest.mark.parametrize("at,when", FAULT_POINTS)
def test_kill_between_every_commit_write(store_uri, tmp_path, at, when) -> None:
    kill_case(store_uri, str(tmp_path), at, when)


# === concurrency ============================================================================


def run_child(args: dict, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-c",
           f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import test_store; "
           "test_store._child(sys.argv[1])", json.dumps(args)]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _child(arg: str) -> None:
    """Entry point of the child processes."""
    args = json.loads(arg)
    folder = args.get("folder", "")
    if args["kind"] == "kill_commit":
        root, _ = root_path(folder)
        ext = make_extension(folder, root, "cifar", "run-1", 1)
        store = make_store(args["uri"], wrap=lambda b: Faulty(b, args["at"], args["when"],
                                                              "kill"))
        store.commit(ext)
        sys.exit(3)  # not reached: the fault kills the process
    if args["kind"] == "commit_many":
        store = make_store(args["uri"], args["cache"])
        root = store.load_system(0).root
        done = []
        for i in range(args["n"]):
            task, run_id = f"w{args['worker']}-t{i}", f"w{args['worker']}-r{i}"
            ext = make_extension(folder, root, task, run_id, store.head(), accuracy=0.5)
            result = store.commit(ext)
            done.append([task, run_id, ext.path.hash, result.version, result.rebases])
        print(json.dumps(done))
    if args["kind"] == "take_all":
        store = make_store(args["uri"])
        taken = []
        while (entry := store.take_next(args["run"] + f"-{len(taken)}")) is not None:
            taken.append(entry.id)
            store.finish(entry.id, error="boom" if len(taken) % 3 == 0 else "")
        print(json.dumps(taken))


def concurrent_commits(uri: str, folder: str, workers: int, per_worker: int) -> None:
    init_store(make_store(uri), folder)
    procs = [run_child({"kind": "commit_many", "uri": uri, "folder": folder, "worker": w,
                        "n": per_worker, "cache": os.path.join(folder, f"cache{w}")},
                       wait=False) for w in range(workers)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        results += json.loads(out)
    total = workers * per_worker
    store = make_store(uri)
    assert store.head() == total
    assert sorted(r[3] for r in results) == list(range(1, total + 1))
    head = store.read_version(total)
    assert head.tasks == {task: path_hash for task, _, path_hash, _, _ in results}
    runs = sorted(store.read_version(n).provenance["run_id"] for n in range(1, total + 1))
    assert runs == sorted(r[1] for r in results)
    assert_consistent(store)


def test_concurrent_commits_small(store_uri, tmp_path) -> None:
    concurrent_commits(store_uri, str(tmp_path), workers=4, per_worker=5)


@pytest.mark.slow
def test_concurrent_commits_8_processes_x_25(store_uri, tmp_path) -> None:
    concurrent_commits(store_uri, str(tmp_path), workers=8, per_worker=25)


def test_same_task_race_keeps_the_higher_score(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    store.commit(make_extension(str(tmp_path), root, "cifar", "run-0", 0, accuracy=0.5))
    better = make_extension(str(tmp_path), root, "cifar", "run-a", 1, accuracy=0.8)
    worse = make_extension(str(tmp_path), root, "cifar", "run-b", 1, accuracy=0.6)
    other = make_extension(str(tmp_path), root, "svhn", "run-c", 1)
    assert store.commit(better).decision == ""  # cifar unchanged since its base: no race
    store.commit(other)
    result = store.commit(worse)  # cifar changed since run-b's base version 1
    assert result.created and "kept the existing path" in result.decision
    head = store.read_version(result.version)
    assert head.tasks["cifar"] == better.path.hash and head.tasks["svhn"] == other.path.hash
    decision = head.provenance["decision"]
    assert (decision["kept"], decision["incoming"]["score"], decision["existing"]["score"]) == (
        "existing", 0.6, 0.8)
    assert store.show(result.version)["decision"] == result.decision
    best = make_extension(str(tmp_path), root, "cifar", "run-d", 1, accuracy=0.9)
    result = store.commit(best)
    assert "kept the incoming path" in result.decision
    assert store.read_version(result.version).tasks["cifar"] == best.path.hash
    assert store.commit(worse).created is False  # idempotent, decision remembered
    assert "kept the existing" in store.commit(worse).decision


def test_same_task_race_scores_at_the_merged_version(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    first = make_extension(str(tmp_path), root, "cifar", "run-a", 0, accuracy=0.7)
    store.commit(first)
    second = make_extension(str(tmp_path), root, "cifar", "run-b", 0, accuracy=0.71)
    seen = []

    def scorer(path, view):  # penalise size heavily: accounted params come from the view
        seen.append((path.task, view.paths[path.task] is path, view.number))
        return path.metrics["validation_accuracy"] - 1e-3 * view.accounted_params(path)

    result = store.commit(second, scorer=scorer)
    assert seen == [("cifar", True, 2), ("cifar", True, 1)]  # incoming at merged, existing
    assert result.decision
    # The method's own score plugs in the same way.
    method = config_scorer(_testing_config())
    assert isinstance(method(first.path, store.load_system()), float)
    third = make_extension(str(tmp_path), root, "cifar", "run-c", 0, accuracy=0.2)
    assert "kept the existing" in make_store(store_uri, scorer=method).commit(third).decision


def _testing_config():
    from mu2net.config import get_config

    return get_config("testing")


def test_concurrent_same_task_race_ends_with_the_best(store_uri, tmp_path) -> None:
    root = init_store(make_store(store_uri), str(tmp_path))
    accuracies = [0.61, 0.93, 0.72, 0.55, 0.88, 0.9]
    exts = [make_extension(str(tmp_path), root, "cifar", f"run-{i}", 0, accuracy=a)
            for i, a in enumerate(accuracies)]
    with ThreadPoolExecutor(len(exts)) as pool:  # one store object per thread
        results = list(pool.map(lambda e: make_store(store_uri).commit(e), exts))
    store = make_store(store_uri)
    assert store.head() == len(exts)
    best = exts[accuracies.index(max(accuracies))]
    assert store.load_system().paths["cifar"] == best.path
    assert sum(1 for r in results if r.decision) == len(exts) - 1


# === history ================================================================================


def test_history_show_diff_and_rollback_of_one_task(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    b1 = make_extension(str(tmp_path), root, "svhn", "b1", 1)
    store.commit(b1)
    a2 = make_extension(str(tmp_path), root, "cifar", "a2", 2, accuracy=0.9)
    store.commit(a2)
    assert [v.number for v in store.versions()] == [3, 2, 1, 0]
    assert [v.number for v in store.versions(limit=2)] == [3, 2]
    assert store.diff(1, 3) == {"from": 1, "to": 3, "root_changed": False,
                                "added": {"svhn": b1.path.hash}, "removed": {},
                                "changed": {"cifar": [a1.path.hash, a2.path.hash]}}
    shown = store.show(3)
    assert shown["changed"] == {"cifar": [a1.path.hash, a2.path.hash]}
    assert shown["provenance"]["run_id"] == "a2" and shown["num_tasks"] == 2
    assert store.show(0)["provenance"]["kind"] == "init"
    result = store.rollback_task("cifar", 1, "rb-1")
    assert (result.version, result.created) == (4, True)
    head = store.read_version(4)
    assert head.tasks == {"cifar": a1.path.hash, "svhn": b1.path.hash}
    assert head.provenance["kind"] == "rollback" and head.provenance["replaced"] == a2.path.hash
    assert store.rollback_task("cifar", 1, "rb-1").created is False
    with pytest.raises(StoreError, match="'svhn' has no path at version 1"):
        store.rollback_task("svhn", 1, "rb-2")
    with pytest.raises(StoreError, match="version 9 does not exist"):
        store.read_version(9)


def test_a_retried_rollback_finds_its_version_after_later_commits(store_uri, tmp_path,
                                                                   monkeypatch) -> None:
    # found by the mutation check (README "Mutation score"): a retry that did not look for its
    # run id rolled the task back a second time
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    first = store.rollback_task("cifar", 1, "rb-1")
    assert (first.version, first.created, first.note) == (3, True, "")
    assert list((tmp_path / "cwd").iterdir()) == []  # its blob copies went to a temporary folder
    assert first.bytes_written == len(encode_index(store.read_version(3))) + len(
        encode_pointer(3))
    provenance = store.show(3)["provenance"]
    assert {"kind": "rollback", "run_id": "rb-1", "task": "cifar", "path": a1.path.hash,
            "to_version": 1, "method_version": "m1"}.items() <= provenance.items()
    assert "started_at" in provenance
    a3 = make_extension(str(tmp_path), root, "cifar", "a3", 3, accuracy=0.95)
    assert store.commit(a3).version == 4
    again = store.rollback_task("cifar", 1, "rb-1")
    assert (again.version, again.created, again.note) == (3, False, "")
    assert store.head() == 4 and store.read_version(4).tasks["cifar"] == a3.path.hash
    # a new run id to the path the head already has: nothing published, and a note says so
    store.rollback_task("cifar", 1, "rb-2")
    kept = store.rollback_task("cifar", 1, "rb-3")
    assert kept == CommitResult(version=5, created=False, note=(
        "no change: version 5 kept (task 'cifar' already has the path of version 1; nothing "
        "was published)"))
    assert store.head() == 5


class RegisterOnFirstWrite(Delegate):
    """Registers another collection in `GC` just before the first write to it, as a
    collection running beside this store would between its read and its write."""

    def __init__(self, inner: ObjectBackend) -> None:
        super().__init__(inner)
        self.raced = False

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if key == GC_KEY and not self.raced:
            self.raced = True
            got = self.inner.read(GC_KEY)
            self.inner.write(GC_KEY, encode({"collections": {"other": time.time() + 600}}),
                             if_generation_match=0 if got is None else got[1])
        return super().write(key, data, if_generation_match=if_generation_match)


def test_collections_register_by_compare_and_swap(store_uri, tmp_path) -> None:
    # found by the mutation check: a register written without its generation dropped the
    # collection that registered between the read and the write
    store = make_store(store_uri, wrap=RegisterOnFirstWrite)
    store._register_collection("mine", time.time() + 600)
    assert set(store._collections()[0]) == {"other", "mine"}
    store._register_collection("mine", None)
    assert set(store._collections()[0]) == {"other"}


# === garbage collection =====================================================================


def test_gc_keeps_referenced_and_leased_blobs(store_uri, tmp_path) -> None:
    store = make_store(store_uri, str(tmp_path / "cache"))
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    a2 = make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9)
    store.commit(a2)  # a1's own blobs are now referenced by version 1 only
    orphan = store.put_blob(b"staged by a run that died")
    leased = store.put_blob(b"staged by a run that is still running")
    # gc keeps blobs written after the oldest live lease was taken; the lease is taken on a
    # clock a second ahead (injected), so the blobs above are older than it on any backend's
    # timestamps, without sleeping
    ahead = make_store(store_uri, str(tmp_path / "cache"), clock=lambda: time.time() + 1)
    ahead.acquire_lease("live-run", ttl_s=1e6, blobs=[leased])
    later = time.time() + 1000  # everything is older than a 10 s window by then
    a1_only = sorted(blob_key(c.blob) for c in a1.path.components
                     if c.name != "embedding")
    assert store.gc(retention_s=1e6) == []  # every version was head within the window
    planned = store.gc(retention_s=10, now=later)
    assert planned == sorted(a1_only + [blob_key(orphan)])
    assert all(store.has_blob(key[len("blobs/"):]) for key in planned)  # dry run by default
    store.acquire_lease("old-run", ttl_s=1e6, base_version=1)
    assert store.gc(retention_s=10, now=later) == [blob_key(orphan)]  # versions >= 1 leased
    store.release_lease("old-run")
    assert store.gc(retention_s=10, now=later, dry_run=False) == planned
    assert not store.has_blob(orphan) and store.has_blob(leased)
    fresh = make_store(store_uri)
    fresh.load_task("cifar")  # the head is intact
    fresh.load_task(ROOT_TASK, 1)
    with pytest.raises(StoreError, match="missing"):
        fresh.load_task("cifar", 1)  # outside the window: its own blobs are gone
    store.release_lease("live-run")
    assert store.leases() == []
    assert store.gc(retention_s=10, now=later, dry_run=False) == [blob_key(leased)]
    assert_consistent(fresh)


def test_gc_keeps_old_blobs_of_a_version_that_was_head_within_the_window(store_uri,
                                                                           tmp_path) -> None:
    # found by the mutation check (README "Mutation score"): blobs younger than the window hid
    # the version rule; here a1's blobs are old, and only version 1 having been the head until
    # 5 s ago keeps them
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    a1 = make_extension(str(tmp_path), root, "cifar", "a1", 0)
    store.commit(a1)
    t = time.time() + 1000
    store.clock = lambda: t  # version 2 committed at t, long after a1's blobs were written
    store.commit(make_extension(str(tmp_path), root, "cifar", "a2", 1, accuracy=0.9))
    a1_only = sorted(blob_key(c.blob) for c in a1.path.components if c.name != "embedding")
    assert store.gc(retention_s=10, now=t + 5) == []
    assert store.gc(retention_s=10, now=t + 20) == a1_only


class LeaseOnFirstWrite(Delegate):
    """Another holder of the same run's lease adds a blob just before this store's first write
    of it (between its read and its write)."""

    def __init__(self, inner: ObjectBackend, blob: str) -> None:
        super().__init__(inner)
        self.blob, self.raced = blob, False

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if key.startswith("leases/") and not self.raced:
            self.raced = True
            VersionedStore(self.inner).acquire_lease("run", ttl_s=1e6, blobs=[self.blob])
        return super().write(key, data, if_generation_match=if_generation_match)


def test_lease_updates_are_compare_and_swap(store_uri) -> None:
    # found by the mutation check: a lease written without its generation (or, first, without
    # create-only) dropped the blobs another holder had just added
    b1, b2, b3, b4 = (sha256_hex(x) for x in (b"1", b"2", b"3", b"4"))
    store = make_store(store_uri, wrap=lambda b: LeaseOnFirstWrite(b, b2))
    store.acquire_lease("run", ttl_s=1e6, blobs=[b1])  # raced while creating it
    assert store.leases()[0].blobs == tuple(sorted([b1, b2]))
    store.backend.raced, store.backend.blob = False, b4
    store.acquire_lease("run", ttl_s=1e6, blobs=[b3])  # raced while renewing it
    assert store.leases()[0].blobs == tuple(sorted([b1, b2, b3, b4]))


def test_a_repeated_init_and_a_corrupt_lease(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    init_store(store, str(tmp_path))
    root, files = root_path(str(tmp_path))
    assert store.init(root, files, {"run_id": "init"}) == CommitResult(version=0, created=False)
    store.backend.write("leases/x.json", encode({"schema": "mu2net/other/v1"}))
    assert store.leases() == []  # a damaged lease is skipped, and says why
    [(reason, _)] = store._scan_leases()[1]
    assert "leases/x.json is not a valid lease: lease.schema='mu2net/other/v1'" in reason


class LeaseWhileCollecting(Delegate):
    """A run leases a blob just as a collection registers (after the collection's first look),
    and every delete records the collections registered at that moment."""

    def __init__(self, inner: ObjectBackend, blob: str) -> None:
        super().__init__(inner)
        self.blob, self.registered_at_delete = blob, []

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        generation = super().write(key, data, if_generation_match=if_generation_match)
        if key == GC_KEY and not self.registered_at_delete:
            VersionedStore(self.inner).acquire_lease("late-run", ttl_s=1e6, blobs=[self.blob])
        return generation

    def delete(self, key: str) -> None:
        if key.startswith("blobs/"):
            self.registered_at_delete.append(VersionedStore(self.inner)._collections()[0])
        super().delete(key)


def test_gc_deletes_while_registered_and_spares_a_blob_leased_meanwhile(store_uri,
                                                                        tmp_path) -> None:
    # found by the mutation check (README "Mutation score"): a registration that had already
    # expired, or a second look that forgot the leases, passed every other test
    store = make_store(store_uri)
    init_store(store, str(tmp_path))
    orphans = [store.put_blob(f"orphan {i}".encode()) for i in range(2)]
    store.backend = LeaseWhileCollecting(store.backend, orphans[1])
    later = time.time() + 1000
    assert store.gc(retention_s=10, now=later, dry_run=False) == [blob_key(orphans[0])]
    assert store.has_blob(orphans[1]) and not store.has_blob(orphans[0])
    [registered] = store.backend.registered_at_delete
    assert len(registered) == 1 and list(registered.values())[0] > time.time() + 60
    assert store._collections()[0] == {}  # unregistered when done


def test_staged_blobs_survive_gc_until_released_and_commit_by_hash(store_uri, tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    ext = make_extension(str(tmp_path / "run"), root, "cifar", "run-1", 0)
    written = store.stage_blobs("run-1", ext.blob_files, ttl_s=1e6, base_version=0)
    assert written == sum(os.path.getsize(f) for f in ext.blob_files.values())
    assert store.stage_blobs("run-1", ext.blob_files, ttl_s=1e6) == 0  # a retry writes nothing
    assert set(ext.blob_files) <= set(store.leases()[0].blobs)
    assert store.leases()[0].base_version == 0  # keeps the run's base version (mutation check)
    later = time.time() + 1000
    assert store.gc(retention_s=10, now=later, dry_run=False) == []  # leased: kept
    by_hash = replace(ext, blob_files=dict.fromkeys(ext.blob_files, STAGED_IN_STORE))
    shutil.rmtree(tmp_path / "run")  # the commit needs no local copy
    assert store.commit(by_hash).version == 1
    store.release_lease("run-1")
    assert store.gc(retention_s=10, now=later) == []  # now referenced by the head
    assert_consistent(store)


def test_commit_of_a_staged_blob_that_was_collected_publishes_nothing(store_uri,
                                                                      tmp_path) -> None:
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    ext = make_extension(str(tmp_path / "run"), root, "cifar", "run-1", 0)
    store.stage_blobs("run-1", ext.blob_files, ttl_s=1e6, base_version=0)
    store.release_lease("run-1")  # as if the lease had expired
    collected = store.gc(retention_s=10, now=time.time() + 1000, dry_run=False)
    assert sorted(blob_key(b) for b in ext.blob_files) == collected
    by_hash = replace(ext, blob_files=dict.fromkeys(ext.blob_files, STAGED_IN_STORE))
    with pytest.raises(StoreError, match="staged .* but is gone: the run's lease expired"):
        store.commit(by_hash)
    assert store.head() == 0


def test_only_the_cli_caches_and_where_its_entry_point_says(tmp_path, monkeypatch) -> None:
    from mu2net.commands.common import _store, user_cache_dir

    assert open_store(str(tmp_path / "s"), create=True).cache_dir is None  # steps, library
    monkeypatch.setenv("MU2NET_CACHE_DIR", str(tmp_path / "cache"))
    assert _store(str(tmp_path / "s")).cache_dir == str(tmp_path / "cache")
    monkeypatch.delenv("MU2NET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == str(tmp_path / "xdg" / "mu2net" / "store")


def test_lease_renewal_merges_blobs(store_uri) -> None:
    store = make_store(store_uri)
    one, two = "1" * 64, "2" * 64
    first = store.acquire_lease("run", ttl_s=60, base_version=3, blobs=[one])
    second = store.acquire_lease("run", ttl_s=120, base_version=5, blobs=[two])
    assert second.blobs == (one, two) and second.base_version == 3
    assert second.acquired_at == first.acquired_at and second.expires_at > first.expires_at
    assert store.leases() == [second]


def test_commit_restores_a_reused_blob_collected_meanwhile(store_uri, tmp_path) -> None:
    root = init_store(make_store(store_uri), str(tmp_path))
    ext = make_extension(str(tmp_path), root, "cifar", "run-1", 0)
    victim = ext.path.component("head").blob
    make_store(store_uri).put_blob(synthetic_blob("cifar/head/run-1"))  # present before commit

    class CollectAfterIndex(Delegate):  # a GC deleting the blob right before publication
        def write(self, key, data, *, if_generation_match=None):
            if key.startswith("versions/"):
                self.inner.delete(blob_key(victim))
            return self.inner.write(key, data, if_generation_match=if_generation_match)

    make_store(store_uri, wrap=CollectAfterIndex).commit(ext)
    assert make_store(store_uri).load_task("cifar")[0] == ext.path


# === task metadata and queue ================================================================


def test_task_info_is_immutable_per_content_hash(store_uri) -> None:
    from mu2net.task_info import TaskInfo

    info = TaskInfo(name="cifar", source="demo:cifar", num_classes=2, class_names=("a", "b"),
                    split_sizes={"train": 10, "validation": 2, "test": 2},
                    image_shape=(28, 28, 1), content_hash="c" * 64)
    store = make_store(store_uri)
    store.put_task_info(info)
    store.put_task_info(info)  # same again: no-op
    assert store.task_infos("cifar") == [info]
    assert store.task_infos("other") == []
    with pytest.raises(StoreError, match="other metadata"):
        store.put_task_info(TaskInfo(**{**info.__dict__, "description": "changed"}))


def test_queue_transitions(store_uri) -> None:
    store = make_store(store_uri)
    assert store.take_next("run-0") is None
    a = store.enqueue("demo:a")
    b = store.enqueue("demo:b", mode="iterate")
    assert [e.id for e in store.queue()] == [a.id, b.id]
    with pytest.raises(SchemaError, match="mode='bogus' is invalid"):
        store.enqueue("demo:c", mode="bogus")
    assert store.enqueue("demo:x", entry_id="fixed").id == "fixed"
    assert store.enqueue("demo:x", entry_id="fixed").state == "pending"  # idempotent
    with pytest.raises(StoreError, match="already exists"):
        store.enqueue("demo:y", entry_id="fixed")
    with pytest.raises(StoreError, match="is pending; only a running entry"):
        store.finish(a.id)
    taken = store.take_next("run-1")
    assert (taken.id, taken.state, taken.run_id) == (a.id, "running", "run-1")
    assert store.take_next("run-1") == taken  # a retried take returns the same entry
    assert store.finish(a.id).state == "done"
    assert store.finish(a.id).state == "done"  # idempotent
    nxt = store.take_next("run-2")
    failed = store.finish(nxt.id, error="ValueError: bad data")
    assert (failed.id, failed.state, failed.error) == (b.id, "failed", "ValueError: bad data")
    assert [e.state for e in store.queue()] == ["done", "failed", "pending"]


def test_queue_under_two_concurrent_takers(store_uri) -> None:
    store = make_store(store_uri)
    ids = [store.enqueue(f"demo:task{i}").id for i in range(16)]
    procs = [run_child({"kind": "take_all", "uri": store_uri, "run": f"taker{i}"}, wait=False)
             for i in range(2)]
    taken = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        taken.append(json.loads(out))
    assert sorted(taken[0] + taken[1]) == ids  # every entry taken exactly once
    assert not set(taken[0]) & set(taken[1])
    entries = store.queue()
    assert all(e.state in ("done", "failed") for e in entries)
    assert len({e.run_id for e in entries}) == len(entries)


def test_concurrent_takers_in_threads_take_each_entry_once(store_uri) -> None:
    store = make_store(store_uri)
    ids = [store.enqueue(f"demo:task{i}").id for i in range(10)]

    def take_all(name: str) -> list[str]:
        mine, own = [], make_store(store_uri)
        while (entry := own.take_next(f"{name}-{len(mine)}")) is not None:
            mine.append(entry.id)
        return mine

    with ThreadPoolExecutor(4) as pool:
        taken = list(pool.map(take_all, ["a", "b", "c", "d"]))
    assert sorted(sum(taken, [])) == ids


def test_conflict_error_is_a_store_error() -> None:
    assert issubclass(ConflictError, StoreError) and issubclass(IntegrityError, StoreError)


@pytest.mark.slow
def test_scaling_benchmark_smoke(tmp_path) -> None:
    script = os.path.join(os.path.dirname(TESTS_DIR), "benchmarks", "store_scaling.py")
    out = tmp_path / "scaling.md"
    proc = subprocess.run([sys.executable, script, "--smoke", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| 100 |" in out.read_text()


def test_queue_entry_of_a_dead_run_is_taken_over(store_uri) -> None:
    store = make_store(store_uri)
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    entry = store.enqueue("demo:a")
    assert store.take_next("dead-run").id == entry.id
    store.acquire_lease("live-run", ttl_s=100_000)
    live = store.enqueue("demo:b")
    assert store.take_next("live-run").id == live.id
    now[0] += 3600  # within the window: nobody may take either
    assert store.take_next("other", abandoned_after_s=7200) is None
    now[0] += 7200  # dead-run never took a lease; live-run's lease is still valid
    taken = store.take_next("other", abandoned_after_s=7200)
    assert (taken.id, taken.run_id, taken.extra["abandoned_by"]) == (entry.id, "other",
                                                                      ["dead-run"])
    assert store.take_next("third", abandoned_after_s=7200) is None
    assert store.finish(entry.id).state == "done"
