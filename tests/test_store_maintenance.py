"""`store check` / `store repair`, rollback under a lease, and gc racing commits and rollbacks,
on the local backend and on the GCS emulator (`store_uri` runs each test on both)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from test_store import Delegate, assert_consistent, init_store, make_extension, make_store

from mu2net.cli import main
from mu2net.errors import IntegrityError, StoreError
from mu2net.store.layout import HEAD_KEY, blob_key, path_key, version_key
from mu2net.store.maintenance import check_store, repair_store


def three_versions(store_uri: str, folder: str):
    """Version 0 (root), 1 (cifar a1), 2 (cifar a2, replacing a1)."""
    store = make_store(store_uri)
    root = init_store(store, folder)
    a1 = make_extension(folder, root, "cifar", "a1", 0)
    store.commit(a1)
    a2 = make_extension(folder, root, "cifar", "a2", 1, accuracy=0.9)
    store.commit(a2)
    return store, a1, a2


def own_blob(ext) -> str:
    return ext.path.component("head").blob


def test_check_passes_a_sound_store_and_lists_orphans(store_uri, tmp_path) -> None:
    store, _, _ = three_versions(store_uri, str(tmp_path))
    orphan = store.put_blob(b"staged by a run that died")
    report = check_store(make_store(store_uri))
    assert report.ok, report.problems
    assert (report.head, report.head_pointer, report.versions) == (2, 2, 3)
    assert report.orphan_blobs == [blob_key(orphan)]
    assert report.bytes_verified > 0


@pytest.mark.parametrize("damage", ["tamper_blob", "delete_blob", "delete_path"])
def test_check_finds_damage_at_the_head(store_uri, tmp_path, damage) -> None:
    store, _, a2 = three_versions(store_uri, str(tmp_path))
    if damage == "tamper_blob":
        store.backend.write(blob_key(own_blob(a2)), b"not the bytes it was")
    elif damage == "delete_blob":
        store.backend.delete(blob_key(own_blob(a2)))
    else:
        store.backend.delete(path_key(a2.path.hash))
    report = check_store(make_store(store_uri))
    assert not report.ok
    assert list(report.broken_tasks) == ["cifar"]
    assert any("'cifar' at the head" in p for p in report.problems)


def test_check_tells_collected_history_from_damage(store_uri, tmp_path) -> None:
    store, a1, _ = three_versions(store_uri, str(tmp_path))
    store.backend.delete(blob_key(own_blob(a1)))  # what gc does to version 1 past retention
    report = check_store(make_store(store_uri))
    assert report.ok, report.problems
    assert any("older versions cannot be fully loaded" in n and "[1]" in n
               for n in report.notes)


@pytest.mark.parametrize("head", [b'{"version": 99}', b'{"version": -5}', b"\x00garbage\xff",
                                  b'{"version": true}'])
def test_a_bad_head_pointer_is_named_and_repaired(store_uri, tmp_path, head) -> None:
    store, _, a2 = three_versions(store_uri, str(tmp_path))
    store.backend.write(HEAD_KEY, head)
    fresh = make_store(store_uri)
    with pytest.raises(IntegrityError, match="store repair"):
        fresh.load_task("cifar")
    before = store.backend.read(HEAD_KEY)[0]
    plan = repair_store(make_store(store_uri))
    assert plan.actions[0].startswith("set HEAD to version 2")
    assert store.backend.read(HEAD_KEY)[0] == before  # a dry run changes nothing
    repair_store(make_store(store_uri), apply=True)
    assert make_store(store_uri).load_task("cifar")[0] == a2.path
    assert check_store(make_store(store_uri)).ok


def test_init_refuses_a_bad_head_before_writing_anything(store_uri, tmp_path) -> None:
    from test_store import root_path

    store = make_store(store_uri)
    store.backend.write(HEAD_KEY, b'{"version": -5}')
    root, files = root_path(str(tmp_path))
    with pytest.raises(IntegrityError, match="not a head pointer"):
        store.init(root, files, {"run_id": "init"})
    assert list(store.backend.list("blobs/")) == []


def test_a_deleted_head_index_is_repaired_to_the_newest_complete_one(store_uri,
                                                                     tmp_path) -> None:
    store, a1, _ = three_versions(store_uri, str(tmp_path))
    store.backend.delete(version_key(2))  # HEAD still says 2
    with pytest.raises(IntegrityError, match="version 2 .* is missing although the head is 2"):
        make_store(store_uri).load_system()
    report = check_store(make_store(store_uri))
    assert (report.head_pointer, report.head) == (2, 1) and not report.ok
    repair_store(make_store(store_uri), apply=True)
    assert make_store(store_uri).load_task("cifar")[0] == a1.path


def test_repair_rolls_a_broken_task_back_to_its_last_complete_path(store_uri,
                                                                  tmp_path) -> None:
    store, a1, a2 = three_versions(store_uri, str(tmp_path))
    store.backend.delete(blob_key(own_blob(a2)))
    plan = repair_store(make_store(store_uri))
    assert plan.actions == ["roll task 'cifar' back to version 1 (blob "
                            f"{own_blob(a2)} is missing)"]
    done = repair_store(make_store(store_uri), apply=True)
    assert done.applied and not done.unrepairable
    fresh = make_store(store_uri)
    assert fresh.head() == 3 and fresh.load_task("cifar")[0] == a1.path
    assert fresh.read_version(3).provenance["kind"] == "rollback"
    assert check_store(fresh).ok


def test_repair_says_what_it_cannot_fix(store_uri, tmp_path) -> None:
    store, a1, a2 = three_versions(store_uri, str(tmp_path))
    store.backend.delete(blob_key(own_blob(a1)))
    store.backend.delete(blob_key(own_blob(a2)))
    report = repair_store(make_store(store_uri), apply=True)
    assert report.unrepairable and "no earlier version has a complete path" in \
        report.unrepairable[0]
    assert make_store(store_uri).head() == 2  # nothing published


def test_store_cli_check_repair_rollback_gc(tmp_path, capsys) -> None:
    uri = str(tmp_path / "store")
    store, a1, a2 = three_versions(uri, str(tmp_path))
    assert main(["store", "check", "--store", uri]) == 0
    assert "OK" in capsys.readouterr().out
    store.backend.write(HEAD_KEY, b'{"version": 42}')
    assert main(["store", "check", "--store", uri, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["head"] == 2
    assert main(["store", "repair", "--store", uri]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["store", "repair", "--store", uri, "--apply"]) == 0
    assert main(["rollback", "--store", uri, "--task", "cifar", "--to-version", "1",
                 "--run-id", "rb"]) == 0
    assert "committed version 3" in capsys.readouterr().out
    assert make_store(uri).load_task("cifar")[0] == a1.path
    assert main(["gc", "--store", uri, "--retention-hours", "0"]) == 0
    assert "would delete" in capsys.readouterr().out
    assert main(["gc", "--store", uri, "--retention-hours", "-1"]) == 2
    assert "--retention-hours -1" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere")
    assert main(["store", "check", "--store", missing]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


# === races against garbage collection =======================================================


def test_rollback_restores_blobs_collected_while_it_published(store_uri, tmp_path) -> None:
    """A gc that decided before the rollback's lease deletes the old path's blob right before
    the rollback creates its index: the rollback puts it back from its verified copy."""
    _, a1, _ = three_versions(store_uri, str(tmp_path))
    victim = own_blob(a1)

    class CollectBeforeIndex(Delegate):
        def write(self, key, data, *, if_generation_match=None):
            if key.startswith("versions/"):
                self.inner.delete(blob_key(victim))
            return self.inner.write(key, data, if_generation_match=if_generation_match)

    result = make_store(store_uri, wrap=CollectBeforeIndex).rollback_task("cifar", 1, "rb-1")
    fresh = make_store(store_uri)
    assert fresh.load_task("cifar")[0] == a1.path and result.version == 3
    assert fresh.leases() == []  # the rollback's lease is released


def test_rollback_holds_a_lease_that_gc_respects(store_uri, tmp_path) -> None:
    _, a1, _ = three_versions(store_uri, str(tmp_path))
    seen = {}

    class GcDuringRollback(Delegate):  # a collection running while the rollback holds its lease
        def write(self, key, data, *, if_generation_match=None):
            if key.startswith("versions/"):
                seen["deleted"] = make_store(store_uri).gc(retention_s=0, dry_run=False,
                                                           now=time.time() + 10)
            return self.inner.write(key, data, if_generation_match=if_generation_match)

    make_store(store_uri, wrap=GcDuringRollback).rollback_task("cifar", 1, "rb-1")
    assert blob_key(own_blob(a1)) not in seen["deleted"]
    assert make_store(store_uri).load_task("cifar")[0] == a1.path


def test_gc_keeps_blobs_of_versions_committed_while_it_decided(store_uri, tmp_path) -> None:
    """gc scans, then a commit publishes a version reusing an unreferenced blob: the last look
    before deleting sees the new version and keeps the blob."""
    folder = str(tmp_path)
    store, a1, _ = three_versions(store_uri, folder)
    root = store.load_system(0).root
    again = make_extension(folder, root, "cifar", "a3", 2, seed="a1")  # a1's blobs again

    class CommitAfterScan(Delegate):
        committed = False

        def list_info(self, prefix):
            infos = list(self.inner.list_info(prefix))
            if prefix == "blobs/" and not self.committed:
                self.committed = True
                make_store(store_uri).commit(again)
            return iter(infos)

    deleted = make_store(store_uri, wrap=CommitAfterScan).gc(retention_s=0, dry_run=False,
                                                              now=time.time() + 10)
    assert blob_key(own_blob(a1)) not in deleted
    assert make_store(store_uri).load_task("cifar")[0] == again.path


def _race(store_uri: str, folder: str, rounds: int) -> dict[str, int]:
    """`rounds` commits that reuse collected blobs, each followed by a rollback, against a gc
    loop with no retention; bounded by a count, not a clock, so it checks the same at any speed.

    Odd rounds race: gc runs freely while the round commits and rolls back (a rollback may
    find its blobs collected and be refused, with that reason). Even rounds hold gc between
    passes, so their rollback must succeed. Every round ends only after gc has finished a
    pass since the round began, so the rounds interleave with gc however fast either is.
    After every commit or rollback the head must load completely."""
    store, _, _ = three_versions(store_uri, folder)
    root = store.load_system(0).root
    stop = threading.Event()
    gc_may_run = threading.Event()
    gc_may_run.set()
    passes = threading.Condition()
    state = {"passes": 0, "in_pass": False}
    counts = {"gc_deleted": 0, "commits": 0, "rollbacks": 0, "rollbacks_refused": 0}
    errors: list[BaseException] = []

    def collect() -> None:
        gc_store = make_store(store_uri)
        while not stop.is_set():
            if not gc_may_run.wait(timeout=0.05):
                continue
            with passes:
                state["in_pass"] = True
            try:
                counts["gc_deleted"] += len(gc_store.gc(retention_s=0, dry_run=False,
                                                        now=time.time() + 10))
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)
                return
            finally:
                with passes:
                    state["in_pass"] = False
                    state["passes"] += 1
                    passes.notify_all()

    def wait_for(condition) -> None:
        with passes:
            assert passes.wait_for(lambda: condition() or errors, timeout=120), state

    thread = threading.Thread(target=collect)
    thread.start()
    writer = make_store(store_uri)
    try:
        for i in range(1, rounds + 1):
            held = i % 2 == 0
            if held:  # gc finishes its pass, then waits
                gc_may_run.clear()
                wait_for(lambda: not state["in_pass"])
            begun = state["passes"]
            seed = "x" if i % 2 else "y"  # the same blobs come back every other commit
            ext = make_extension(folder, root, "cifar", f"c{i}", writer.head(), seed=seed)
            writer.commit(ext)
            counts["commits"] += 1
            make_store(store_uri).load_task("cifar")
            try:
                writer.rollback_task("cifar", writer.head() - 1, f"r{i}")
                counts["rollbacks"] += 1
            except StoreError as exc:
                assert not held, f"round {i}: a rollback with gc held was refused: {exc}"
                assert "garbage-collected" in str(exc)
                counts["rollbacks_refused"] += 1
            make_store(store_uri).load_task("cifar")
            gc_may_run.set()
            wait_for(lambda begun=begun: state["passes"] > begun)  # gc ran during or after
    finally:
        gc_may_run.set()
        stop.set()
        thread.join()
    assert not errors, errors
    assert_consistent(make_store(store_uri))
    assert check_store(make_store(store_uri)).ok
    return counts


def test_gc_racing_commits_and_rollbacks_loses_nothing(store_uri, tmp_path) -> None:
    counts = _race(store_uri, str(tmp_path), rounds=6)
    assert counts["commits"] == 6 and counts["gc_deleted"] > 0, counts
    assert counts["rollbacks"] >= 3 and counts["rollbacks"] + counts["rollbacks_refused"] == 6


@pytest.mark.slow
def test_gc_racing_commits_and_rollbacks_loses_nothing_long(store_uri, tmp_path) -> None:
    counts = _race(store_uri, str(tmp_path), rounds=100)
    assert counts["rollbacks"] >= 50 and counts["gc_deleted"] > 0, counts
