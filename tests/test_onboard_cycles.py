"""`mu2net onboard --cycles N`: one onboard run, then N-1 iterate runs of the same task, with
the task's accuracy after each cycle (read from the version the cycle committed)."""

import types

import pytest
from mu2net_helpers import random_root_store

from mu2net.cli import main
from mu2net.commands import cycle_requests
from mu2net.config import get_config
from mu2net.errors import ConfigError, TaskError
from mu2net.tasks.sources import task_name_from


def test_n_cycles_are_one_onboard_run_then_iterate_runs_of_the_task():
    assert cycle_requests("demo:mnist_5k", 1) == [("demo:mnist_5k", "onboard")]
    assert cycle_requests("demo:mnist_5k", 3) == [("demo:mnist_5k", "onboard"),
                                                  ("mnist_5k", "iterate"),
                                                  ("mnist_5k", "iterate")]
    # the iterate runs name the task the spec creates (its default name)
    # (a folder name that is no valid task name is folded, with a hash: see task_name_from)
    assert cycle_requests("imagefolder:/data/My Flowers/", 2)[1] == (
        task_name_from("My Flowers"), "iterate")
    assert task_name_from("My Flowers").startswith("My_Flowers-")
    for bad in (0, -2, 1001, 10**9):
        with pytest.raises(ConfigError, match=rf"--cycles {bad} is invalid: expected an "
                                              "integer from 1 to 1000"):
            cycle_requests("demo:mnist_5k", bad)
    with pytest.raises(TaskError, match="is invalid"):
        cycle_requests("mnist_5k", 2)


@pytest.mark.parametrize("command", ["onboard", "demo"])
def test_cli_rejects_zero_cycles_before_doing_anything(tmp_path, capsys, command):
    store = str(tmp_path / "store")
    specs = ["demo:digits"] if command == "onboard" else []
    assert main([command, *specs, "--store", store, "--config", "testing",
                 "--cycles", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("mu2net: error: --cycles 0 is invalid: expected an integer from 1 "
                           "to 1000 (search cycles per task)")
    assert not (tmp_path / "store").exists()  # nothing was created


def test_onboard_defaults_to_the_configs_cycles(monkeypatch, tmp_path):
    from mu2net.commands import local as commands

    seen = []
    monkeypatch.setattr(commands, "_run_cycles", lambda uri, tasks, args: seen.append(tasks) or 0)
    monkeypatch.setattr(commands, "get_config",
                        lambda name: get_config(name).replace(onboard_cycles=2))
    assert main(["onboard", "demo:digits", "--store", str(tmp_path), "--config",
                 "testing"]) == 0
    assert seen == [[[("demo:digits", "onboard"), ("digits", "iterate")]]]


def test_each_cycle_reports_the_accuracy_it_committed_and_a_table_at_the_end(
        monkeypatch, capfd, tmp_path):
    """On a real local store, each cycle an in-process search commits (the library calls the
    pipeline's steps make: ingest, evolve, commit), so the accuracies printed are read with
    the real metric keys of real commits; only kfp.local's subprocesses are left out (the slow
    test below runs them)."""
    import os

    from mu2net.commands import local as commands
    from mu2net.queue import ingest_request, resolve_request
    from mu2net.scoring import config_scorer
    from mu2net.search import evolve
    from mu2net.tasks.ingest import load_prepared, prepared_dir

    config = get_config("testing")
    store = random_root_store(tmp_path, config)
    runs = []

    def run_local(*, task_spec, mode, store_uri, seed, **_):
        runs.append((task_spec, mode))
        work = os.path.join(tmp_path, f"run-{len(runs)}")
        request = resolve_request(store, task_spec, mode, f"run-{len(runs)}")
        info = ingest_request(store, request, os.path.join(work, "task"), None)
        task = load_prepared(prepared_dir(os.path.join(work, "task"), info.name))
        system = store.load_system()
        ext = evolve(system, task, config, store, seed=seed, mode=mode,
                     run_id=f"run-{len(runs)}", workdir=os.path.join(work, "search"),
                     kept_cycles=store.kept_cycles(system, task.info.name))
        store.commit(ext, scorer=config_scorer(config))
        return {"line": f"{ext.task}: version {store.head()} committed", "seconds": 1.0}

    monkeypatch.setattr(commands, "_pipelines",
                        lambda name: types.SimpleNamespace(run_local=run_local))
    assert main(["onboard", "demo:digits", "--store", store.uri, "--config", "testing",
                 "--cycles", "2"]) == 0
    assert runs == [("demo:digits", "onboard"), ("digits", "iterate")]
    assert store.head() == 2
    out = capfd.readouterr().out
    rows = []
    for number in (1, 2):
        metrics = store.load_system(number).paths["digits"].metrics
        assert metrics["num_cycles"] == number
        rows.append([str(number), str(number), f"{metrics['validation_accuracy']:.4f}",
                     f"{metrics['test_accuracy']:.4f}"])
        assert (f"[1/1] demo:digits: cycle {number}/2: validation {rows[-1][2]}, test "
                f"{rows[-1][3]} (version {number})") in out
    table = out[out.index("[1/1] demo:digits: accuracy per cycle"):].splitlines()
    assert [line.split() for line in table[1:4]] == [
        ["cycle", "version", "validation", "test"], *rows]
    assert "done: 2 cycle(s) of 1 task(s)" in out


@pytest.mark.slow
def test_onboard_two_cycles_through_the_local_pipeline(tmp_path, capfd):
    store = random_root_store(tmp_path, get_config("testing"))
    assert main(["onboard", "demo:digits", "--store", store.uri, "--config", "testing",
                 "--cycles", "2", "--workdir", str(tmp_path / "work")]) == 0
    out = capfd.readouterr().out
    assert store.head() == 2
    modes = [v.provenance.get("mode") for v in store.versions()]
    assert modes[:2] == ["iterate", "onboard"]
    rows = []
    for number in (1, 2):
        metrics = store.load_system(number).paths["digits"].metrics
        assert metrics["num_cycles"] == number
        rows.append(f"[1/1] demo:digits: cycle {number}/2: validation "
                    f"{metrics['validation_accuracy']:.4f}, test "
                    f"{metrics['test_accuracy']:.4f} (version {number})")
    for row in rows:
        assert row in out
    assert "[1/1] demo:digits: accuracy per cycle" in out
    table = out[out.index("accuracy per cycle"):].splitlines()
    assert table[1].split() == ["cycle", "version", "validation", "test"]
    assert table[3].split()[:2] == ["2", "2"]
    assert "done: 2 cycle(s) of 1 task(s)" in out


def test_iterate_all_runs_one_cycle_of_every_task_by_expected_gain(monkeypatch, tmp_path):
    """`iterate --all` re-evolves every task once, most to gain first (queue.gain_ranking:
    error left / (1 + cycles so far)), on a real store with three committed tasks."""
    import os

    from mu2net.commands import local as commands
    from mu2net.store.synthetic import synthetic_extension

    store = random_root_store(tmp_path, get_config("testing"))
    for task, accuracy, cycles in (("a", 0.9, 1), ("b", 0.6, 1), ("c", 0.6, 3)):
        view = store.load_system()
        store.commit(synthetic_extension(
            view, task, os.path.join(tmp_path, "blobs"), own=("encoder_norm",),
            metrics={"validation_accuracy": accuracy, "test_accuracy": accuracy,
                     "num_cycles": cycles}))
    seen = []
    monkeypatch.setattr(commands, "_run_cycles",
                        lambda uri, tasks, args: seen.append((uri, tasks)) or 0)
    assert main(["iterate", "--all", "--store", store.uri, "--config", "testing"]) == 0
    # gains: b 0.4/2 = 0.2, c 0.4/4 = 0.1, a 0.1/2 = 0.05
    assert seen == [(store.uri, [[("b", "iterate")], [("c", "iterate")], [("a", "iterate")]])]
