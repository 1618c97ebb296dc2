"""Issue 22: `store check` and `repair` bounded by gc's retention window (`--all` for the full
audit), and `gc` finding the newest index without listing `versions/`. On the local backend
and the GCS emulator (`store_uri`).

The store: version 0 (root), 1 (cifar a1), 2 (cifar a2) committed now, then 3 (svhn b1)
committed at T, long after. At T + 5 with a 10 s window, gc retains versions 2 and 3 (3 is
the newest; 2 was the head until T); a1's path is referenced by version 1 only, outside."""

from __future__ import annotations

import time

import pytest
from test_store import Delegate, make_extension, make_store
from test_store_maintenance import three_versions

from mu2net.cli import main
from mu2net.store.layout import HEAD_KEY, blob_key, path_key, version_key
from mu2net.store.maintenance import check_store
from mu2net.store.repair import repair_store

WINDOW_S = 10.0


def four_versions(store_uri: str, folder: str):
    """Versions 0..3 as the module docstring says; returns (store, a1, a2, b1, T)."""
    store, a1, a2 = three_versions(store_uri, folder)
    root = store.load_system(0).root
    t = time.time() + 1000
    store.clock = lambda: t
    b1 = make_extension(folder, root, "svhn", "b1", 2)
    store.commit(b1)
    return store, a1, a2, b1, t


def at(store_uri: str, now: float, wrap=None):
    return make_store(store_uri, wrap=wrap, clock=lambda: now)


def test_default_check_covers_the_window_gc_retains(store_uri, tmp_path) -> None:
    _, a1, _, _, t = four_versions(store_uri, str(tmp_path))
    report = check_store(at(store_uri, t + 5), retention_s=WINDOW_S)
    assert report.ok, report.problems
    assert (report.full, report.covered, report.head, report.versions) == (False, [2, 3], 3, 2)
    assert "versions 2..3" in report.text()
    # the same window as gc's: what only version 1 references is what gc would collect
    a1_only = sorted(blob_key(c.blob) for c in a1.path.components if c.name != "embedding")
    assert at(store_uri, t + 5).gc(retention_s=WINDOW_S) == a1_only
    full = check_store(at(store_uri, t + 5), retention_s=WINDOW_S, full=True)
    assert full.ok and (full.full, full.versions) == (True, 4)


@pytest.mark.parametrize("damage", ["index_2", "blob_of_a2", "path_of_b1"])
def test_check_finds_damage_inside_the_window(store_uri, tmp_path, damage) -> None:
    store, _, a2, b1, t = four_versions(store_uri, str(tmp_path))
    if damage == "index_2":
        store.backend.write(version_key(2), b'{"tasks": {}}')
    elif damage == "blob_of_a2":
        store.backend.write(blob_key(a2.path.component("head").blob), b"not its bytes")
    else:
        store.backend.write(path_key(b1.path.hash), b"{}")
    report = check_store(at(store_uri, t + 5), retention_s=WINDOW_S)
    assert not report.ok
    assert report.covered[1] == 3 and report.covered[0] <= 2


@pytest.mark.parametrize("damage", ["index_1", "path_of_a1", "index_0_deleted"])
def test_check_finds_damage_outside_the_window_only_with_all(store_uri, tmp_path,
                                                             damage) -> None:
    store, a1, _, _, t = four_versions(store_uri, str(tmp_path))
    if damage == "index_1":
        store.backend.write(version_key(1), b'{"tasks": {}}')
    elif damage == "path_of_a1":
        store.backend.write(path_key(a1.path.hash), b"{}")
    else:
        store.backend.delete(version_key(0))  # a gap below the window
    bounded = check_store(at(store_uri, t + 5), retention_s=WINDOW_S)
    assert bounded.ok, bounded.problems
    assert bounded.covered == [2, 3]
    full = check_store(at(store_uri, t + 5), retention_s=WINDOW_S, full=True)
    assert not full.ok
    repair = repair_store(at(store_uri, t + 5), retention_s=WINDOW_S, full=True)
    assert repair.unrepairable or repair.actions


class Recording(Delegate):
    """Records every listing and index read."""

    listed: list[str] = []
    indices: list[str] = []

    def list(self, prefix: str):
        Recording.listed.append(prefix)
        return super().list(prefix)

    def list_info(self, prefix: str):
        Recording.listed.append(prefix)
        return super().list_info(prefix)

    def read(self, key: str):
        if key.startswith("versions/"):
            Recording.indices.append(key)
        return super().read(key)


def test_gc_and_bounded_check_read_no_index_outside_the_window(store_uri, tmp_path) -> None:
    _, a1, _, _, t = four_versions(store_uri, str(tmp_path))
    Recording.listed, Recording.indices = [], []
    planned = at(store_uri, t + 5, Recording).gc(retention_s=WINDOW_S)
    assert "versions/" not in Recording.listed  # today's gc listed every index name
    assert set(Recording.indices) <= {version_key(2), version_key(3)}
    Recording.listed, Recording.indices = [], []
    check_store(at(store_uri, t + 5, Recording), retention_s=WINDOW_S)
    assert "versions/" not in Recording.listed and "paths/" not in Recording.listed
    assert set(Recording.indices) <= {version_key(2), version_key(3)}
    Recording.listed, Recording.indices = [], []
    plan = repair_store(at(store_uri, t + 5, Recording), retention_s=WINDOW_S)
    assert plan.check is not None and plan.check.covered == [2, 3]
    assert "versions/" not in Recording.listed
    assert set(Recording.indices) <= {version_key(2), version_key(3)}
    # apply, then again: the second collection finds nothing (safe to retry)
    Recording.listed = []
    assert at(store_uri, t + 5, Recording).gc(retention_s=WINDOW_S, dry_run=False) == planned
    assert "versions/" not in Recording.listed
    assert at(store_uri, t + 5).gc(retention_s=WINDOW_S, dry_run=False) == []
    assert not at(store_uri, t + 5).has_blob(a1.path.component("head").blob)
    assert check_store(at(store_uri, t + 5), retention_s=WINDOW_S).ok
    # the full audit sees version 1's blobs gone: history, not damage
    full = check_store(at(store_uri, t + 5), retention_s=WINDOW_S, full=True)
    assert full.ok and "older versions cannot be fully loaded" in " ".join(full.notes)


@pytest.mark.parametrize("head", [b"junk", b'{"schema": "mu2net/head/v1", "version": 99}',
                                  None])
def test_gc_with_a_damaged_head_still_finds_the_newest_index(store_uri, tmp_path,
                                                             head) -> None:
    """HEAD damaged, missing or naming no index: gc falls back to listing `versions/`, so the
    newest version's blobs are kept even with no retention at all."""
    store, a1, a2, b1, t = four_versions(store_uri, str(tmp_path))
    if head is None:
        store.backend.delete(HEAD_KEY)
    else:
        store.backend.write(HEAD_KEY, head)
    Recording.listed = []
    collected = at(store_uri, t + 5, Recording).gc(retention_s=0, dry_run=False)
    assert "versions/" in Recording.listed
    fresh = make_store(store_uri)
    for ext in (a2, b1):  # version 3 holds cifar a2 and svhn b1
        assert all(fresh.has_blob(c.blob) for c in ext.path.components)
    assert blob_key(a1.path.component("head").blob) in collected
    report = check_store(at(store_uri, t + 5), retention_s=WINDOW_S)
    assert report.newest == 3 and report.head_damaged == (head is not None)


def test_store_cli_check_says_what_it_covered_and_all_audits_everything(tmp_path,
                                                                       capsys) -> None:
    uri = str(tmp_path / "store")
    four_versions(uri, str(tmp_path))
    assert main(["store", "check", "--store", uri]) == 0
    out = capsys.readouterr().out
    assert "covered: versions 0..3 (the head and gc's retention window of 168 h)" in out
    assert main(["store", "check", "--store", uri, "--retention-hours", "0", "--quick"]) == 0
    assert "covered: versions 2..3" in capsys.readouterr().out  # version 3 is at T, ahead
    make_store(uri).backend.write(version_key(1), b"{}")
    assert main(["store", "check", "--store", uri, "--retention-hours", "0"]) == 0
    capsys.readouterr()
    assert main(["store", "check", "--all", "--store", uri, "--retention-hours", "0"]) == 1
    assert "covered: every index present (--all)" in capsys.readouterr().out
    assert main(["store", "repair", "--all", "--store", uri]) == 1  # an index is history
    assert "cannot repair" in capsys.readouterr().out


class FailsAfterOneDelete(Delegate):
    deletes = 0

    def delete(self, key: str) -> None:
        FailsAfterOneDelete.deletes += 1
        if FailsAfterOneDelete.deletes > 1:
            raise ConnectionError("the collection's pod was killed")
        super().delete(key)


def test_gc_killed_while_deleting_is_finished_by_the_next_gc(store_uri, tmp_path) -> None:
    """Not new behaviour (a pin): a collection killed between deletes leaves a store that
    checks OK, and the next one deletes the rest; nothing the window references is lost."""
    _, a1, a2, b1, t = four_versions(store_uri, str(tmp_path))
    planned = at(store_uri, t + 5).gc(retention_s=WINDOW_S)
    assert len(planned) == 2
    FailsAfterOneDelete.deletes = 0
    with pytest.raises(ConnectionError):
        at(store_uri, t + 5, FailsAfterOneDelete).gc(retention_s=WINDOW_S, dry_run=False)
    assert check_store(at(store_uri, t + 5), retention_s=WINDOW_S).ok
    assert len(at(store_uri, t + 5).gc(retention_s=WINDOW_S, dry_run=False)) == 1
    assert at(store_uri, t + 5).gc(retention_s=WINDOW_S, dry_run=False) == []
    fresh = make_store(store_uri)
    for ext in (a2, b1):
        assert all(fresh.has_blob(c.blob) for c in ext.path.components)
    assert not any(fresh.has_blob(c.blob) for c in a1.path.components if c.name != "embedding")
