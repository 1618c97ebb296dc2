"""Every benchmark script's `--smoke` mode runs and produces what its full run reports, so the
scripts cannot rot. The numbers themselves are not checked here (performance claims live in the
results files, measured side by side)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    proc = subprocess.run([sys.executable, os.path.join("benchmarks", script), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {args} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def header_ok(text: str) -> None:
    assert "Revision " in text and "machine: " in text and "cores" in text
    assert "Command: `python benchmarks/" in text


def test_quality_vs_finetune_smoke(tmp_path):
    run("quality_vs_finetune.py", "--smoke", "--out-dir", str(tmp_path))
    text = (tmp_path / "quality_vs_finetune.md").read_text()
    header_ok(text)
    for row in ("| mu2Net+ (evolve) |", "| fine-tuning (converged, lr sweep) |",
                "| fine-tuning (search's examples) |", "| linear probe |", "| from scratch |",
                "| logistic regression (pixels) |", "| **mean** |", "## Done when",
                "| cycle 1 | cycle 2 |", "## Time per method"):
        assert row in text, row
    assert text.count("PASS ") + text.count("FAIL ") == 7  # six checks and the verdict
    data = json.loads((tmp_path / "quality_vs_finetune.json").read_text())
    assert data["seeds"] == [0, 1] and data["cycles"] == 2 and "partial" not in data
    methods = ("mu2net", "finetune", "finetune_matched", "probe", "scratch", "logreg")
    keys = {(r["method"], r["seed"], r["task"]) for r in data["rows"]}
    assert keys == {(m, s, t) for m in methods for s in (0, 1) for t in data["tasks"]}
    for r in data["rows"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["examples"] > 0 and r["flops"] > 0 and r["accounted_params"] > 0
    by_key = {(r["method"], r["seed"], r["task"]): r for r in data["rows"]}
    for (method, seed, task), r in by_key.items():
        mu = by_key[("mu2net", seed, task)]
        if method == "mu2net":  # one record per cycle, cumulative cost
            assert [c["cycle"] for c in r["cycles"]] == [1, 2]
            assert r["cycles"][-1]["examples"] == r["examples"]
            assert r["cycles"][0]["examples"] < r["cycles"][1]["examples"]
            assert r["cycles"][-1]["test_accuracy"] == r["test_accuracy"]
        elif method == "finetune_matched":  # the search's budget at fine-tuning's lr
            assert r["examples"] <= mu["examples"]
            assert r["lr"] == by_key[("finetune", seed, task)]["lr"]
    assert set(data["method_seconds"]) == set(methods)
    assert (tmp_path / "quality_vs_finetune.png").read_bytes()[:4] == b"\x89PNG"


def test_step_efficiency_smoke(tmp_path):
    out = tmp_path / "step.md"
    run("step_efficiency.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| tiny (testing) | all trainable |" in text
    assert "| tiny (testing) | lower half frozen |" in text


def test_execution_mode_smoke(tmp_path):
    out = tmp_path / "execution.md"
    run("execution_mode.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| testing | 8 | 4 |" in text and "auto picked the slower mode in" in text


@pytest.mark.slow
def test_orchestration_overhead_smoke(tmp_path):
    # The local pipeline starts one subprocess per step: about a minute even when tiny.
    out = tmp_path / "orch.md"
    run("orchestration_overhead.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| yes |" in text  # the pipeline and evolve committed the same path


def test_store_scaling_smoke(tmp_path):
    out = tmp_path / "store.md"
    run("store_scaling.py", "--smoke", "--output", str(out))
    header_ok(out.read_text())


def test_accelerator_step_smoke_and_refusal():
    proc = run("accelerator_step.py", "--smoke")
    assert "images/s" in proc.stdout and "bfloat16" in proc.stdout
    import jax

    if jax.devices()[0].platform == "cpu":
        refused = run("accelerator_step.py", check=False)
        assert refused.returncode == 2
        assert "no accelerator visible" in refused.stderr


def test_pod_bytes_smoke(tmp_path):
    """Bytes per pod before/after the task-info artifact and the shrink at ingest: finite,
    and after < before for every task, in total and for every light step."""
    run("pod_bytes.py", "--smoke", "--out", str(tmp_path / "pod_bytes.md"),
        "--json", str(tmp_path / "pod_bytes.json"))
    header_ok((tmp_path / "pod_bytes.md").read_text())
    data = json.loads((tmp_path / "pod_bytes.json").read_text())
    assert {row["task"] for row in data["rows"]} == {"flowers102", "dtd"}
    for row in data["rows"]:
        assert 0 < row["total_after"] < row["total_before"] < float("inf")
        pods = {p["pod"]: p for p in row["pods"]}
        for light in ("start", "report"):
            assert pods[light]["after"] < 10_000 < pods[light]["before"]
        assert pods["train child"]["count"] == data["generations"] * data["children"]
        assert row["prepared_shape"][:2] == [data["largest_image_size"]] * 2
