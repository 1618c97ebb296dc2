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


class FakeStore:
    """A store whose head moves on every run; the task's accuracy rises by 0.1 per cycle."""

    def __init__(self):
        self.number, self.uri = 0, "fake"

    def head(self):
        return self.number

    def load_system(self, number):
        acc = 0.5 + 0.1 * number
        path = types.SimpleNamespace(metrics={"validation_accuracy": acc, "num_cycles": number,
                                              "test_accuracy": acc - 0.01})
        return types.SimpleNamespace(paths={"digits": path} if number else {})


def test_each_cycle_reports_the_accuracy_it_committed_and_a_table_at_the_end(
        monkeypatch, capfd):
    from mu2net.commands import local as commands

    store, runs = FakeStore(), []

    def run_local(**kwargs):
        runs.append((kwargs["task_spec"], kwargs["mode"]))
        store.number += 1
        return {"line": f"digits: version {store.number} committed", "seconds": 1.0}

    monkeypatch.setattr(commands, "_store", lambda uri, config_name=None: store)
    monkeypatch.setattr(commands, "_pipelines",
                        lambda name: types.SimpleNamespace(run_local=run_local))
    assert main(["onboard", "demo:digits", "--store", "fake", "--config", "testing",
                 "--cycles", "3"]) == 0
    assert runs == [("demo:digits", "onboard"), ("digits", "iterate"), ("digits", "iterate")]
    out = capfd.readouterr().out
    assert "[1/1] demo:digits: cycle 1/3: validation 0.6000, test 0.5900 (version 1)" in out
    assert "[1/1] demo:digits: cycle 3/3: validation 0.8000, test 0.7900 (version 3)" in out
    table = out[out.index("[1/1] demo:digits: accuracy per cycle"):].splitlines()
    assert [line.split() for line in table[1:5]] == [
        ["cycle", "version", "validation", "test"], ["1", "1", "0.6000", "0.5900"],
        ["2", "2", "0.7000", "0.6900"], ["3", "3", "0.8000", "0.7900"]]
    assert "done: 3 cycle(s) of 1 task(s)" in out


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
