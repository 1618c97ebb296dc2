"""A run that times out or dies gives its queue entry back (issue 21): the entry records the
run's deadline when the run takes it (`resources.run_deadline_seconds`), and the next take (or
`mu2net queue list`) returns an overdue entry to pending, failing it for good after
`MAX_RUN_ATTEMPTS` runs. An injected clock stands in for time; nothing sleeps."""

import json
import time

import pytest
from mu2net_helpers import random_root_store

from mu2net import steps
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.resources import lease_ttl, run_deadline_seconds, timed_pools
from mu2net.store.queue import MAX_RUN_ATTEMPTS

CONFIG = get_config("testing")
T0 = 1_000_000.0


@pytest.fixture
def clocked(tmp_path):
    store = random_root_store(tmp_path, CONFIG)
    now = [T0]
    store.clock = lambda: now[0]
    return store, now


def test_run_deadline_covers_every_step_of_the_run():
    for name, target in (("testing", "cpu"), ("gpu", "gpu"), ("tpu", "tpu")):
        config = get_config(name)
        train, commit = timed_pools(config, target)
        bound = run_deadline_seconds(config, target)
        generations = config.search.generations_per_cycle
        assert bound >= generations * train.timeout_s + commit.timeout_s
        assert bound > lease_ttl(config, target) - 3600  # a run outlasts one lease period


def test_overdue_entry_goes_back_to_pending_then_fails_after_max_attempts(clocked):
    store, now = clocked
    entry = store.enqueue("demo:digits", entry_id="a-first")  # same clock: ids give the order
    other = store.enqueue("demo:mnist_5k", entry_id="b-second")
    for attempt in range(1, MAX_RUN_ATTEMPTS + 1):
        taken = store.take_next(f"run-{attempt}", deadline_s=3600)
        assert (taken.id, taken.extra["attempts"]) == (entry.id, attempt)
        assert taken.extra["deadline_at"] == now[0] + 3600
        now[0] += 3599  # within the deadline: nothing moves, the next take gets `other`
        assert store.give_back_overdue() == []
        now[0] += 2  # the run died: past its deadline
        if attempt < MAX_RUN_ATTEMPTS:
            (back,) = store.give_back_overdue()
            assert (back.id, back.state, back.run_id) == (entry.id, "pending", "")
            assert back.extra["overdue_runs"] == [f"run-{i}" for i in range(1, attempt + 1)]
            assert "deadline_at" not in back.extra
    # the last attempt fails the entry for good, with a one-line reason; the queue goes on
    taken = store.take_next("run-next", deadline_s=3600)
    assert taken.id == other.id
    (failed,) = [e for e in store.queue() if e.id == entry.id]
    assert failed.state == "failed"
    assert failed.error.startswith(f"{MAX_RUN_ATTEMPTS} runs passed their deadline")
    assert f"run-{MAX_RUN_ATTEMPTS}" in failed.error and "\n" not in failed.error


def test_entries_without_a_deadline_keep_the_lease_rule(clocked):
    """Entries taken by older code (no deadline_at) are left alone by the give-back; the
    dead-run rule of take_next (no live lease, unchanged for 6 h) still applies to them."""
    store, now = clocked
    entry = store.enqueue("demo:digits")
    store.take_next("old-run")  # no deadline_s: as before
    now[0] += 30 * 24 * 3600
    assert store.give_back_overdue() == []
    assert store.take_next("new-run").id == entry.id  # taken over by the lease rule


def test_a_retried_take_of_a_live_run_keeps_its_deadline(clocked):
    store, now = clocked
    store.enqueue("demo:digits")
    first = store.take_next("run-1", deadline_s=100)
    now[0] += 50
    again = store.take_next("run-1", deadline_s=100)
    assert again.extra == first.extra  # the retry gets the same entry, same deadline


def test_ingest_step_records_the_run_deadline_and_queue_list_gives_back(
        clocked, tmp_path, capsys, monkeypatch):
    import mu2net.store as store_module

    store, now = clocked
    entry = store.enqueue("demo:digits")
    started = time.time()
    steps.ingest_step(task_spec="next", mode="onboard", store_uri=store.uri, data_dir="",
                      run_id="run-1", task_dir=str(tmp_path / "task"), target="cpu",
                      config_json=CONFIG.to_json(), config_hash=CONFIG.config_hash)
    (held,) = store.queue()
    # the step opened its own store (real clock): deadline = take time + the run's bound
    assert held.extra["attempts"] == 1
    taken_at = held.extra["deadline_at"] - run_deadline_seconds(CONFIG, "cpu")
    assert started <= taken_at <= time.time()
    # `mu2net queue list` after the deadline (the CLI's store gets the injected clock): the
    # entry is pending again, and the command says so on stderr (stdout stays JSON)
    real_open = store_module.open_store

    def open_with_clock(uri, *args, **kwargs):
        opened = real_open(uri, *args, **kwargs)
        opened.clock = lambda: held.extra["deadline_at"] + 1
        return opened

    monkeypatch.setattr(store_module, "open_store", open_with_clock)
    assert main(["queue", "list", "--store", store.uri, "--json"]) == 0
    out = capsys.readouterr()
    assert f"gave back {entry.id}" in out.err
    (listed,) = json.loads(out.out)
    assert (listed["id"], listed["state"]) == (entry.id, "pending")


def test_a_run_that_outlived_its_deadline_leaves_the_given_back_entry_alone(clocked):
    """Its commit stands; finishing an entry it no longer holds neither raises (that would
    fail the committed run's commit step) nor takes the entry from its new run."""
    store, now = clocked
    entry = store.enqueue("demo:digits")
    store.take_next("slow-run", deadline_s=60)
    now[0] += 61
    store.take_next("new-run", deadline_s=60)  # gives it back, then takes it again
    left = store.finish(entry.id, run_id="slow-run")
    assert (left.state, left.run_id) == ("running", "new-run")
    assert store.finish(entry.id, run_id="new-run").state == "done"
