"""Fail early (issue 24, point 2): `compile` and `submit` need a store the user chose, from
--store or $MU2NET_STORE; there is no default bucket. Every command that takes --store also
reads $MU2NET_STORE."""

import json

import pytest
import yaml
from mu2net_helpers import random_root_store

from mu2net.cli import main
from mu2net.config import get_config


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch):
    monkeypatch.delenv("MU2NET_STORE", raising=False)


def test_compile_without_a_store_is_refused_naming_flag_and_variable(tmp_path, capsys):
    out = tmp_path / "build"
    assert main(["compile", "--config", "testing", "--target", "cpu", "--out", str(out),
                 "--registry", "r.example/p"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--store" in err and "MU2NET_STORE" in err
    assert not out.exists()


def test_submit_without_package_or_store_is_refused_before_compiling(capsys):
    assert main(["submit", "--host", "http://127.0.0.1:9", "--task", "demo:digits",
                 "--config", "testing", "--target", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--store" in err and "MU2NET_STORE" in err


def test_compile_takes_the_store_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MU2NET_STORE", "gs://my-bucket/store")
    out = tmp_path / "build"
    assert main(["compile", "--config", "testing", "--target", "cpu", "--out", str(out),
                 "--registry", "r.example/p"]) == 0
    text = (out / "onboard-testing-cpu.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["store_uri"]["defaultValue"] == "gs://my-bucket/store"
    assert "mu2net-models" not in text


def test_library_build_has_no_default_bucket():
    from pipelines.onboard_task import build_pipeline

    pipeline = build_pipeline("testing", "cpu", "img:1")
    spec = pipeline.pipeline_spec
    default = spec.root.input_definitions.parameters["store_uri"].default_value
    assert default.string_value == ""


def test_read_commands_take_the_store_from_the_environment(tmp_path, monkeypatch, capsys):
    random_root_store(tmp_path, get_config("testing"))
    monkeypatch.setenv("MU2NET_STORE", str(tmp_path / "store"))
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 0
    # the flag wins over the variable
    monkeypatch.setenv("MU2NET_STORE", str(tmp_path / "nowhere"))
    assert main(["status", "--json", "--store", str(tmp_path / "store")]) == 0


def test_a_command_needing_a_store_without_one_names_flag_and_variable(capsys):
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "--store" in err and "MU2NET_STORE" in err
