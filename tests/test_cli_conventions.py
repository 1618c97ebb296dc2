"""The command line's conventions (issue 24, point 6): `--version`, help on no command, grouped
commands, every option described with its default, one `--store`, `--at` for a system version,
`--json` where scripts read the output, `KF_PIPELINES_ENDPOINT`, no TensorFlow start-up lines,
shell completion. Each test runs the real parser (`mu2net.cli`), most in-process."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mu2net_helpers import commit_root_path, random_root_store
from PIL import Image

from mu2net import cli
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.version import package_version

CONFIG = get_config("testing")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def walk(parser: argparse.ArgumentParser, prefix: str = "mu2net"):
    """(command path, parser) of the top-level parser and every subcommand, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prefix} {name}")


def commands() -> list[str]:
    parser = cli._build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_version_flag_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mu2net {package_version()} (code version ")


def test_no_command_prints_the_grouped_command_list_and_exits_0(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for group in ("Run:", "Inspect:", "Operate:", "Deploy and serve:"):
        assert f"\n  {group}\n" in out
    for name in commands():
        assert f"\n    {name} " in out, name
    assert "Other:" not in out  # every command belongs to a named group


def test_a_command_group_without_its_action_prints_its_help(capsys):
    assert main(["store"]) == 0
    out = capsys.readouterr().out
    assert "check" in out and "repair" in out and "cat" in out


def test_every_option_is_described_and_shows_its_default():
    parser = cli._build_parser()
    missing, hidden_defaults = [], []
    for where, p in walk(parser):
        formatter = p._get_formatter()
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:  # a deprecated spelling, hidden on purpose
                assert isinstance(action, cli_common().DeprecatedOption), (where, action)
                continue
            name = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip():
                missing.append(f"{where} {name}")
                continue
            shown = formatter._expand_help(action) if action.help else ""
            empty = (action.default is None or action.default is False
                     or action.default is argparse.SUPPRESS
                     or (isinstance(action.default, str | list) and not action.default))
            if action.option_strings and not action.required and not empty \
                    and "default" not in shown:
                hidden_defaults.append(f"{where} {name}")
    assert missing == []
    assert hidden_defaults == []


def cli_common():
    from mu2net.commands import common

    return common


def test_status_takes_at_for_a_system_version_and_warns_on_the_old_spelling(tmp_path, capsys):
    store = random_root_store(tmp_path, CONFIG)
    _commit(store, "digits")
    assert main(["status", "--store", store.uri, "--at", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 0
    assert main(["status", "--store", store.uri, "--version", "0", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["version"] == 0
    assert captured.err.strip() == "mu2net: warning: --version is deprecated; use --at"
    status_help = next(p for w, p in walk(cli._build_parser()) if w == "mu2net status")
    assert "--at" in status_help.format_help() and "--version" not in status_help.format_help()


def test_submit_has_one_store_option_in_its_help():
    submit = next(p for w, p in walk(cli._build_parser()) if w == "mu2net submit")
    text = submit.format_help()
    assert "--store " in text and "--store-uri" not in text
    args = submit.parse_args(["--store-uri", "gs://b/x"])
    assert args.store == "gs://b/x"


@pytest.mark.parametrize("command", ["submit", "schedule", "rollback", "gc", "export",
                                     "report", "status", "versions", "show", "diff", "predict",
                                     "queue"])
def test_json_where_scripts_read_the_output(command):
    p = next(p for w, p in walk(cli._build_parser()) if w == f"mu2net {command}")
    assert any("--json" in a.option_strings for a in p._actions)


def test_rollback_and_gc_print_json(tmp_path, capsys):
    store = random_root_store(tmp_path, CONFIG)
    _commit(store, "digits")
    _commit(store, "digits", accuracy=0.7)
    assert main(["rollback", "--store", store.uri, "--task", "digits", "--to-version", "1",
                 "--run-id", "rb-1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"task": "digits", "to_version": 1, "version": 3, "created": True,
                   "run_id": "rb-1"}
    assert main(["gc", "--store", store.uri, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["applied"] is False and isinstance(doc["keys"], list)


def test_report_prints_json(tmp_path, capsys):
    store = random_root_store(tmp_path, CONFIG)
    _commit(store, "digits")
    out = tmp_path / "r" / "report.html"
    assert main(["report", "--store", store.uri, "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == str(out) and all(os.path.isfile(f) for f in doc["figures"])


def test_kfp_host_defaults_to_kf_pipelines_endpoint(monkeypatch, capsys):
    """kfp.Client reads KF_PIPELINES_ENDPOINT when no host is given; so does --host. Without
    either the command says which two things would do."""
    from mu2net.commands import deploy

    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    submit = next(p for w, p in walk(cli._build_parser()) if w == "mu2net submit")
    with pytest.raises(Exception, match="pass --host URL or set KF_PIPELINES_ENDPOINT"):
        deploy._host(submit.parse_args([]))
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://127.0.0.1:9")
    assert deploy._host(submit.parse_args([])) == "http://127.0.0.1:9"
    assert deploy._host(submit.parse_args(["--host", "http://h:1"])) == "http://h:1"
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT")
    assert main(["submit", "--task", "demo:digits"]) == 2  # refused before compiling
    assert "pass --host URL or set KF_PIPELINES_ENDPOINT" in capsys.readouterr().err


def test_shell_completion_through_argcomplete(tmp_path):
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"
    line = "mu2net sta"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n",
           "PYTHONPATH": REPO}
    subprocess.run([sys.executable, "-m", "mu2net.cli"], env=env, cwd=REPO, timeout=60,
                   check=False, capture_output=True)
    assert "status" in out.read_text().split()


def test_cli_works_without_argcomplete(tmp_path):
    """argcomplete is optional at import: a blocked import leaves the CLI working."""
    code = ("import sys; sys.modules['argcomplete'] = None; from mu2net.cli import main; "
            "sys.exit(main(['config', 'testing', '--method-version']))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": REPO},
                          cwd=REPO, timeout=60, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == CONFIG.method_version


def test_predict_and_export_print_no_tensorflow_lines(tmp_path):
    store = random_root_store(tmp_path, CONFIG)
    _commit(store, "digits")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    export = ["export", "--store", store.uri, "--task", "digits", "--out", str(tmp_path / "out")]
    for argv in (["predict", "--store", store.uri, "--task", "digits", str(image)], export,
                 [*export, "--format", "savedmodel", "--force"]):
        done = subprocess.run([sys.executable, "-m", "mu2net.cli", *argv], env=env, cwd=REPO,
                              timeout=300, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
        # the command's own lines: one, and for a .keras export the note on how to load it
        lines = done.stdout.splitlines()
        keras_file = argv is export
        assert len(lines) == 1 + keras_file, done.stdout
        assert not keras_file or "load_keras_model('digits.keras')" in lines[1]


def _commit(store, task, accuracy=0.5):
    return commit_root_path(store, task, accuracy, f"run-{task}-{store.head()}", config=CONFIG)
