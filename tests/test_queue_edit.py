"""The queue (issue 24, point 5): `queue add` refuses a task already onboarded (pointing at
`--mode iterate`) and duplicates of a waiting entry; `queue remove ID|TASK`, `queue retry ID`."""

import json

import pytest
from test_store import init_store, make_extension, make_store

from mu2net.cli import main


@pytest.fixture
def store(store_uri, tmp_path):
    store = make_store(store_uri)
    root = init_store(store, str(tmp_path))
    store.commit(make_extension(str(tmp_path), root, "digits", "d1", 0))
    return store


def queue_json(uri, capsys):
    assert main(["queue", "list", "--json", "--store", uri]) == 0
    return json.loads(capsys.readouterr().out)


def test_add_refuses_an_onboarded_task_and_duplicates(store, capsys):
    uri = store.uri
    assert main(["queue", "add", "demo:digits", "--store", uri]) == 2
    err = capsys.readouterr().err
    assert "already onboarded" in err and "--mode iterate" in err and err.count("\n") == 1
    assert main(["queue", "add", "digits", "--mode", "iterate", "--store", uri]) == 0
    assert main(["queue", "add", "digits", "--mode", "iterate", "--store", uri]) == 2
    assert "already has a pending iterate entry" in capsys.readouterr().err
    assert main(["queue", "add", "demo:mnist_5k", "--store", uri]) == 0
    assert main(["queue", "add", "demo:mnist_5k", "--store", uri]) == 2
    assert "already has a pending onboard entry" in capsys.readouterr().err
    # iterating a task that is only queued for onboarding is fine; an unknown one is not
    assert main(["queue", "add", "mnist_5k", "--mode", "iterate", "--store", uri]) == 0
    assert main(["queue", "add", "nope", "--mode", "iterate", "--store", uri]) == 2
    assert "not in system version 1 and not queued" in capsys.readouterr().err
    assert [(e["spec"], e["mode"]) for e in queue_json(uri, capsys)] == [
        ("digits", "iterate"), ("demo:mnist_5k", "onboard"), ("mnist_5k", "iterate")]


def test_remove_by_id_or_task_and_retry_a_failed_entry(store, capsys):
    uri = store.uri
    first = store.enqueue("demo:mnist_5k")
    store.enqueue("mnist_5k", "iterate")
    other = store.enqueue("demo:glyph_letters")
    assert main(["queue", "remove", first.id, "--store", uri]) == 0
    assert f"removed {first.id}" in capsys.readouterr().out
    assert main(["queue", "remove", "mnist_5k", "--store", uri]) == 0  # by task
    assert "(iterate, was pending)" in capsys.readouterr().out
    assert [e["id"] for e in queue_json(uri, capsys)] == [other.id]
    assert main(["queue", "remove", "nothing", "--store", uri]) == 2
    assert "no queue entry 'nothing'" in capsys.readouterr().err
    taken = store.take_next("run-1")
    assert main(["queue", "remove", taken.id, "--store", uri]) == 2  # running: refused
    assert "is running in run 'run-1'" in capsys.readouterr().err
    assert main(["queue", "retry", taken.id, "--store", uri]) == 2
    assert "only a failed entry can be retried" in capsys.readouterr().err
    store.finish(taken.id, error="TaskError: boom")
    assert main(["queue", "retry", taken.id, "--store", uri]) == 0
    assert "is pending again" in capsys.readouterr().out
    [entry] = queue_json(uri, capsys)
    assert (entry["state"], entry["run_id"], entry["error"]) == ("pending", "", "")
    assert entry["extra"]["failures"][0]["error"] == "TaskError: boom"
    assert store.take_next("run-2").id == taken.id  # a run takes it again
