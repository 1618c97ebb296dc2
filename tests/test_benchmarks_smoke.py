"""Every benchmark script's `--smoke` mode runs and produces what its full run reports, so the
scripts cannot rot. Its tables are parsed and each number checked for what holds at any speed
(finite, positive, ratios that match their columns, invariants such as a commit's bytes beside
its index): zeroed or NaN numbers fail. Whether one thing is faster than another is not
asserted here (performance claims live in the results files, measured side by side)."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
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


def number(cell: str) -> float:
    """A table cell as a number: `1,234`, `**8.1**`, `1.00`, `9.68 GB`, `398 kB`."""
    match = re.fullmatch(r"\**\s*(-?[\d,]*\.?\d+|nan|inf)\s*(?:GB|kB|MB|ms|s|h)?\s*\**",
                         cell.strip())
    assert match, f"not a number: {cell!r}"
    return float(match.group(1).replace(",", ""))


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in `text`, as rows of {header: cell} (header names repeated in a
    table, like `x`, get a suffix: `x`, `x_2`)."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-:| ]+\|$",
                                                                   lines[i + 1]):
            headers = [c.strip() for c in line.strip("|").split("|")]
            names = [h if headers[:k].count(h) == 0 else f"{h}_{headers[:k].count(h) + 1}"
                     for k, h in enumerate(headers)]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(names, (c.strip() for c in row.strip("|").split("|")))))
            found.append(rows)
    return found


def positive(value: float) -> float:
    assert math.isfinite(value) and value > 0, value
    return value


def header_ok(text: str) -> None:
    assert "Revision " in text and "machine: " in text and "cores" in text
    assert "Command: `python benchmarks/" in text


def test_quality_vs_finetune_smoke(tmp_path):
    run("quality_vs_finetune.py", "--smoke", "--out-dir", str(tmp_path))
    text = (tmp_path / "quality_vs_finetune.md").read_text()
    header_ok(text)
    names = {"mu2net": "mu2Net+ (evolve)", "finetune": "fine-tuning (converged, lr sweep)",
             "finetune_equal": "fine-tuning (search's examples incl. its lr sweep)",
             "finetune_matched": "fine-tuning (search's examples)",
             "topk_1": "top 1 block(s) + head fine-tuned (rest frozen)",
             "adapters_32": "residual adapters (dim 32) + head on the frozen root",
             "probe": "linear probe", "scratch": "from scratch",
             "logreg": "logistic regression (pixels)"}
    for row in ("| **mean** |", "## Done when", "| cycle 1 | cycle 2 |", "## Time per method",
                "## Parameter-matched baselines", "## Convergence"):
        assert row in text, row
    assert text.count("PASS ") + text.count("FAIL ") == 9  # eight checks and the verdict
    assert "ended by early stopping: early-stopped: FT " in text
    assert "beats every parameter-matched baseline of equal or larger size: mu2Net+ " in text
    data = json.loads((tmp_path / "quality_vs_finetune.json").read_text())
    assert data["seeds"] == [0, 1] and data["cycles"] == 2 and "partial" not in data
    keys = {(r["method"], r["seed"], r["task"]) for r in data["rows"]}
    assert keys == {(m, s, t) for m in names for s in (0, 1) for t in data["tasks"]}
    patience, cap = data["baselines"]["ft_patience"], data["baselines"]["ft_max_epochs"]
    for r in data["rows"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["examples"] > 0 and r["flops"] > 0 and r["accounted_params"] > 0
        if r["method"] in ("finetune", "topk_1", "adapters_32"):  # each run's convergence
            for lr, sweep_run in r["sweep"].items():
                best, epochs = sweep_run["best_epoch"], sweep_run["epochs"]
                assert 1 <= best <= epochs <= cap, (r["method"], lr, sweep_run)
                assert not sweep_run["stopped_early"] or epochs - best >= patience
    by_key = {(r["method"], r["seed"], r["task"]): r for r in data["rows"]}
    for (method, seed, task), r in by_key.items():
        mu, ft = by_key[("mu2net", seed, task)], by_key[("finetune", seed, task)]
        if method == "mu2net":  # one record per cycle, cumulative cost
            assert [c["cycle"] for c in r["cycles"]] == [1, 2]
            assert r["cycles"][-1]["examples"] == r["examples"]
            assert r["cycles"][0]["examples"] < r["cycles"][1]["examples"]
            assert r["cycles"][-1]["test_accuracy"] == r["test_accuracy"]
        elif method == "finetune_matched":  # the search's budget at fine-tuning's lr
            assert r["examples"] <= mu["examples"]
            assert r["lr"] == ft["lr"]
        elif method == "finetune_equal":  # the search's budget, its sweep included
            assert r["examples"] <= mu["examples"]
            assert sum(v["examples"] for v in r["sweep"].values()) == r["examples"]
        elif method == "topk_1":  # its top block, encoder_norm and head; the rest shared
            assert r["blocks"] == 1
            assert 0 < r["own_params"] < ft["own_params"] == r["params"]
            assert r["shared_params"] + r["own_params"] == r["params"]
        elif method == "adapters_32":  # adapters before both blocks + norm + head
            assert r["adapter_dim"] == 32 and r["params"] > ft["params"]
            assert r["shared_params"] == ft["params"] - ft["head_params"] - 2 * 16
    # the tables' numbers parse: summary, parameter-matched and convergence
    summary, *_ = (t for t in tables(text) if t and "mean test accuracy %" in t[0])
    assert [row["method"] for row in summary] == list(names.values())
    for row in summary:
        assert 0 <= number(row["mean test accuracy %"].split("±")[0]) <= 100
        positive(number(row["params of deployed set"]))
        positive(number(row["training examples"]))
    deployed = {row["method"]: number(row["params of deployed set"]) for row in summary}
    assert deployed[names["probe"]] < deployed[names["adapters_32"]]
    assert deployed[names["topk_1"]] <= deployed[names["finetune"]]  # equal for one task
    for seed in (0, 1):  # frozen root components once, each task's own components
        topk = [r for r in data["rows"] if r["method"] == "topk_1" and r["seed"] == seed]
        assert data["tasks"] == ["digits"] and len(topk) == 1
    (matched,) = (t for t in tables(text) if t and "x mu2Net+" in t[0])
    assert [row["method"] for row in matched] == ["mu2Net+", "top-1 (matched)", "adapt-32"]
    for row in matched:
        params = positive(number(row["params of deployed set"]))
        assert number(row["x mu2Net+"]) == pytest.approx(params / number(matched[0][
            "params of deployed set"]), abs=0.01)
        assert row["on the front"] in ("yes", "no")
    (convergence,) = (t for t in tables(text) if t and "ended by early stopping" in t[0])
    assert {row["method"] for row in convergence} == {"FT", "top-1", "adapt-32", "probe",
                                                      "scratch"}
    for row in convergence:
        total = positive(number(row["runs"]))
        assert number(row["ended by early stopping"]) + number(row["at the cap"]) == total
    assert set(data["method_seconds"]) == set(names)
    assert (tmp_path / "quality_vs_finetune.png").read_bytes()[:4] == b"\x89PNG"


def test_quality_vs_finetune_renders_a_json_before_the_baselines_split(tmp_path):
    """`--render` of a run recorded before early stopping was recorded per run and before the
    parameter-matched baselines: the cap decides (a run at the cap has not converged)."""
    data = json.loads(open(os.path.join(REPO, "benchmarks", "results", "history",
                                        "quality_vs_finetune_cap25.json")).read())
    rows = [r for r in data["rows"] if r["method"] != "finetune_matched"]
    for r in rows:
        for sweep_run in (r.get("sweep") or {}).values():
            sweep_run.pop("best_epoch", None), sweep_run.pop("stopped_early", None)
            if "epochs" in sweep_run:
                sweep_run["epochs"] = min(sweep_run["epochs"], 24)  # below the cap of 25
    data["baselines"]["ft_max_epochs"] = 25
    data["method_seconds"].pop("finetune_matched")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**data, "rows": rows}))
    run("quality_vs_finetune.py", "--render", str(old), "--out-dir", str(tmp_path))
    text = (tmp_path / "quality_vs_finetune.md").read_text()
    assert "PASS  every fine-tuning run (whole model, top-k, adapters; every lr) ended by " \
           "early stopping" in text
    assert "FAIL  mu2Net+ beats every parameter-matched baseline of equal or larger size: no " \
           "parameter-matched baseline in this run" in text
    assert "| FT matched |" not in text
    finetune = next(r for r in rows if r["method"] == "finetune")
    finetune["sweep"][next(iter(finetune["sweep"]))]["epochs"] = 25  # one run at the cap
    old.write_text(json.dumps({**data, "rows": rows}))
    run("quality_vs_finetune.py", "--render", str(old), "--out-dir", str(tmp_path))
    text = (tmp_path / "quality_vs_finetune.md").read_text()
    assert "FAIL  every fine-tuning run (whole model, top-k, adapters; every lr)" in text
    assert (tmp_path / "quality_vs_finetune.png").read_bytes()[:4] == b"\x89PNG"


def test_quality_vs_finetune_renders_a_run_without_fine_tuning(tmp_path):
    """A run of other baselines only (`--baselines logreg`, e.g. a search-budget A/B) renders:
    the done-when block says fine-tuning was not run, the tables leave it out."""
    data = json.loads(open(os.path.join(REPO, "benchmarks", "results",
                                        "quality_vs_finetune.json")).read())
    kept = ("mu2net", "logreg")
    data["rows"] = [r for r in data["rows"] if r["method"] in kept]
    data["method_seconds"] = {m: s for m, s in data["method_seconds"].items() if m in kept}
    data["baselines"]["baselines"] = ["logreg"]
    old = tmp_path / "no_ft.json"
    old.write_text(json.dumps(data))
    run("quality_vs_finetune.py", "--render", str(old), "--out-dir", str(tmp_path))
    text = (tmp_path / "quality_vs_finetune.md").read_text()
    assert "FAIL  finetune in this run: not run (--baselines)" in text
    assert "| mnist_5k | 2.0 | not run |" in text


def test_step_efficiency_smoke(tmp_path):
    out = tmp_path / "step.md"
    run("step_efficiency.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| tiny (testing) | all trainable |" in text
    assert "| tiny (testing) | lower half frozen |" in text
    (rows,) = tables(text)
    params = {}
    for row in rows:
        total, trainable = re.fullmatch(r"([\d,]+) \(([\d,]+)\)",
                                        row["params (trainable)"]).groups()
        params[row["setting"]] = (number(total), number(trainable))
        positive(number(row["child img/s"])), positive(number(row["plain Keras img/s"]))
        positive(number(row["child / plain"]))
    (total, every), (total_frozen, some) = params["all trainable"], params["lower half frozen"]
    assert total == every == total_frozen > some > 0


def test_execution_mode_smoke(tmp_path):
    out = tmp_path / "execution.md"
    run("execution_mode.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| testing | 8 | 4 |" in text and "auto picked the slower mode in" in text
    (rows,) = tables(text)
    slower = 0
    for row in rows:
        eager, traced = positive(number(row["eager s"])), positive(number(row["traced s"]))
        assert number(row["eager / traced"]) == pytest.approx(eager / traced, abs=0.01)
        assert row["faster"] == ("eager" if eager < traced else "traced")
        assert row["auto picks"] in ("eager", "traced")
        slower += row["auto picks"] != row["faster"]
    assert f"auto picked the slower mode in {slower} of {len(rows)} cases" in text


def test_orchestration_overhead_smoke(tmp_path):
    # The local pipeline starts one subprocess per step: about a minute even when tiny, but the
    # only smoke that compares the pipeline's result with evolve's, so it runs in `make test`.
    out = tmp_path / "orch.md"
    run("orchestration_overhead.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    assert "| yes |" in text  # the pipeline and evolve committed the same path


def test_store_scaling_smoke(tmp_path):
    INDEX = "of which index + summary"  # noqa: N806
    out = tmp_path / "store.md"
    run("store_scaling.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    found = tables(text)
    assert found
    for rows in found:
        assert [int(number(r["tasks"])) for r in rows] == [10, 100]
        for row in rows:
            for column in ("commit ms", "bytes written", INDEX, "load one task ms",
                           "x", "x_2", "x_3"):
                positive(number(row[column]))
        first, second = rows
        assert number(first["x"]) == number(first["x_2"]) == number(first["x_3"]) == 1.0
        assert number(second["x_2"]) == pytest.approx(
            number(second["bytes written"]) / number(first["bytes written"]), abs=0.01)
        # A commit writes the task's new blobs and path document (the same at any size) plus
        # the index and the summary, which grow with the tasks: the rest is equal.
        assert (number(first["bytes written"]) - number(first[INDEX])
                == number(second["bytes written"]) - number(second[INDEX]))
        assert number(second[INDEX]) > number(first[INDEX])


def test_accelerator_step_smoke_and_refusal():
    proc = run("accelerator_step.py", "--smoke")
    assert "images/s" in proc.stdout and "bfloat16" in proc.stdout
    import jax

    if jax.devices()[0].platform == "cpu":
        refused = run("accelerator_step.py", check=False)
        assert refused.returncode == 2
        assert "no accelerator visible" in refused.stderr


def test_accelerator_sizing_smoke(tmp_path):
    out = tmp_path / "sizing.md"
    proc = run("accelerator_sizing.py", "--smoke", "--out", str(out))
    text = out.read_text()
    assert text in proc.stdout + "\n" or text.strip() in proc.stdout
    sizing, steps = tables(text)
    for row in sizing:
        parts = [positive(number(row[c])) for c in ("weights", "grads+momentum", "activations")]
        assert number(row["total"]) == pytest.approx(sum(parts), abs=0.11)
        positive(number(row["child h"]))
    chosen = [r for r in sizing if r["chosen"] == "yes"]
    assert {r["config"] for r in chosen} == {"gpu on gpu", "tpu on tpu"}
    gpu = next(r for r in chosen if r["config"] == "gpu on gpu")
    assert (gpu["precision"], gpu["px"]) == ("mixed_bfloat16", "224")
    assert number(gpu["total"]) < 24  # fits one L4's 24 GB
    for row in steps:
        before, after = row["blob copies (before)"], row["blob references (now)"]
        if "(at commit)" in before:  # new blobs are written once either way
            assert number(before.replace("(at commit)", "")) == number(after) > 0
        else:  # references are kilobytes where copies were gigabytes
            assert before.endswith("GB") and after.endswith("kB")
            assert positive(number(before)) * 1e9 > 1000 * positive(number(after)) * 1e3


def test_recipe_speed_smoke():
    proc = run("recipe/speed.py", "--smoke")
    (line,) = [x for x in proc.stdout.splitlines() if "images/s" in x]
    speed, params = re.fullmatch(r"patch 4 width 64 depth 4: (\d+) images/s, ([\d,]+) params",
                                 line).groups()
    assert positive(number(speed)) and number(params) == 141_066


def test_recipe_finetune_curve_smoke():
    proc = run("recipe/finetune_curve.py", "--smoke")
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("lr ")]
    test, best, curve = re.fullmatch(
        r"lr 0.1 epochs 1 area 0.5 size 28: test ([\d.]+), best validation ([\d.]+), "
        r"curve \[([\d., ]+)\], \d+ s", line).groups()
    # one epoch from the shipped pretrained root lifts digits far above chance (0.1)
    assert 0.3 < number(test) <= 1.0 and 0.3 < number(best) <= 1.0
    assert max(number(c) for c in curve.split(",")) == pytest.approx(number(best), abs=5e-4)


def test_recipe_search_cycles_smoke(tmp_path):
    records = tmp_path / "cycles.json"
    proc = run("recipe/search_cycles.py", "--smoke", "--json", str(records))
    lines = proc.stdout.splitlines()
    (cycle,) = [x for x in lines if x.startswith("digits cycle 1:")]
    test, validation = re.search(r"test ([\d.]+), validation ([\d.]+)", cycle).groups()
    assert 0 <= number(test) <= 1 and 0 < number(validation) <= 1
    children = [x for x in lines if x.lstrip().startswith("gen ")]
    assert len(children) == 4  # testing: 2 generations x 2 children
    kept = [float(re.search(r"val ([\d.]+)", x).group(1)) for x in children if "kept True" in x]
    assert kept and max(kept) == pytest.approx(number(validation), abs=1e-3)
    accounted = re.search(r"digits: accounted ([\d,]+), new ([\d,]+)", proc.stdout).groups()
    total = re.search(r"total params ([\d,]+)", proc.stdout).group(1)
    assert 0 < number(accounted[1]) <= number(accounted[0]) <= number(total)
    # the stuck-lineage record: one per cycle, every child classed, summarised at the end
    (cycle_record,) = json.loads(records.read_text())["cycles"]
    assert cycle_record["kept"] and cycle_record["mode"] == "onboard"
    assert len(cycle_record["rows"]) == 4
    assert cycle_record["test_accuracy"] == pytest.approx(number(test), abs=1e-4)
    summary = json.loads(proc.stdout.split("stuck lineages: ", 1)[1].splitlines()[0])
    assert summary["iterate_cycles"] == 0 and summary["stuck_fraction"] is None


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


def test_system_growth_smoke(tmp_path):
    out = tmp_path / "system_growth.md"
    run("system_growth.py", "--smoke", "--output", str(out))
    text = out.read_text()
    header_ok(text)
    [rows] = tables(text)
    ops = {row["operation"] for row in rows}
    for op in ("start", "plan", "train (store part)", "select", "commit", "report step",
               "run total", "status --json", "report", "queue next (gain ranking)", "rollback",
               "gc (dry run)", "gc (apply)", "store check --quick", "store check",
               "repair (dry run)"):
        assert op in ops, op
    assert len(rows) == 2 * len(ops)  # every operation at both sizes
    for row in rows:
        for key, cell in row.items():
            if key == "operation":
                continue
            value = number(cell)
            # A read-only operation writes nothing: its bytes written are 0, not missing.
            assert math.isfinite(value) and value >= 0 if key == "bytes written" \
                else positive(value), (row, key)
        if row["tasks"] == "3":
            assert number(row["x"]) == 1.0


def test_task_sequence_smoke(tmp_path):
    """Three derived tasks onboarded through the step functions: the tables parse, every
    number is finite, parameters only grow, the recomputed accuracy is the committed one, and
    no test prediction changed between a task's commit and the final version."""
    proc = run("task_sequence.py", "--smoke", "--out-dir", str(tmp_path))
    text = (tmp_path / "task_sequence.md").read_text()
    header_ok(text)
    changed = re.search(r"^changed predictions: (\d+)$", text, re.M)
    assert changed and int(changed.group(1)) == 0, proc.stdout[-2000:]
    per_task, steps, derived = tables(text)
    assert [row["#"] for row in per_task] == ["1", "2", "3"]
    assert [row["version"] for row in per_task] == ["1", "2", "3"]
    for row in per_task:
        for key in ("train s", "overhead s", "CPU s", "system params", "separate params",
                    "ratio", "new params", "layers", "size"):
            positive(number(row[key]))
        assert number(row["load"]) >= 0
        assert number(row["ratio"]) == pytest.approx(
            number(row["system params"]) / number(row["separate params"]), abs=0.006)
        assert 0 <= number(row["test acc"]) <= 1
    totals = [number(row["system params"]) for row in per_task]
    assert totals == sorted(totals)
    assert {row["step"] for row in steps} >= {"ingest", "train", "commit", "report"}
    assert [row["task"] for row in derived] == [row["task"] for row in per_task]
    data = json.loads((tmp_path / "task_sequence.json").read_text())
    assert set(data["check"]) == {row["task"] for row in per_task}
    for row in data["rows"]:
        assert row["test_accuracy_recomputed"] == pytest.approx(row["test_accuracy"])
    assert all(rec["bit_identical"] and rec["path_unchanged"] and rec["changed"] == 0
               for rec in data["check"].values())
    assert (tmp_path / "task_sequence.png").stat().st_size > 0


def test_task_sequence_counts_a_changed_prediction():
    """The comparison the sequence's verdict rests on sees one flipped prediction and a
    one-bit change in the logits."""
    import numpy as np

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from task_sequence import compare, digest

    logits = np.array([[0.0, 1.0], [2.0, 1.0], [0.5, 0.25]], np.float32)
    recorded = {"t": {"argmax": np.argmax(logits, 1), "sha256": digest(logits)}}
    assert compare(recorded, {"t": logits.copy()})["t"]["changed"] == 0
    assert compare(recorded, {"t": logits.copy()})["t"]["bit_identical"]
    flipped = logits.copy()
    flipped[2] = [0.25, 0.5]
    assert compare(recorded, {"t": flipped})["t"]["changed"] == 1
    nudged = logits.copy()
    nudged[0, 0] = np.nextafter(np.float32(0), np.float32(1))
    out = compare(recorded, {"t": nudged})["t"]
    assert out["changed"] == 0 and not out["bit_identical"]


def test_readme_where_the_system_stands_is_the_recorded_run():
    """README's "Where the system stands" is rewritten from the recorded full run: its
    done-when block has the run's PASS/FAIL, check by check, and its table the run's means
    (a new run whose README block was not rewritten fails here)."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from quality.summary import done_when, summary

    with open(os.path.join(REPO, "benchmarks", "results", "quality_vs_finetune.json")) as fh:
        data = json.load(fh)
    readme = open(os.path.join(REPO, "README.md")).read()
    section = readme[readme.index("**Where the system stands**"):readme.index("## Concepts")]
    block = section[section.index("```\n") + 4:]
    block = block[:block.index("```")]
    statuses = [line.split()[0] for line in block.splitlines() if line.strip()]
    checks = done_when(data)
    assert statuses == ["PASS" if ok else "FAIL" for _, ok, _ in checks]
    assert f"{data['total_seconds'] / 60:.1f} min on 2 cores" in section
    assert data["header"]["revision"] in section
    for method, row in summary(data).items():
        mean = statistics.fmean(row["acc"])
        assert f"| {mean * 100:.1f}" in section, (method, mean)


def test_every_search_flag_sets_its_search_config_field():
    """`common.SEARCH_FLAGS`, the one table behind both search benchmarks' flags: each flag
    parses to its type and lands in the named `SearchConfig` field; none given changes
    nothing."""
    import argparse
    import dataclasses

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import common

    from mu2net.config import get_config

    config = get_config("cpu_demo")
    values = {int: "3", float: "0.5", str: "final"}
    for flag, (field, kind, _) in common.SEARCH_FLAGS.items():
        parser = argparse.ArgumentParser()
        common.add_search_flags(parser)
        argv = [f"--{flag}"] + ([] if kind is bool else [values[kind]])
        changed, overrides = common.with_search_overrides(config, parser.parse_args(argv))
        expected = True if kind is bool else kind(values[kind])
        assert overrides == {field: expected}
        assert getattr(changed.search, field) == expected
        assert changed.search == dataclasses.replace(config.search, **{field: expected})
    parser = argparse.ArgumentParser()
    common.add_search_flags(parser)
    assert common.with_search_overrides(config, parser.parse_args([])) == (config, {})


def test_recipe_search_cycles_passes_a_departure_flag_to_the_config():
    import dataclasses

    from mu2net.config import get_config

    proc = run("recipe/search_cycles.py", "--smoke", "--clone-root-blocks")
    assert "overrides {'clone_root_blocks': True}" in proc.stdout
    # the run's config is the testing config with the flag set: a method version of its own
    config = get_config("testing")
    cloned = config.replace(search=dataclasses.replace(config.search, clone_root_blocks=True))
    version = re.search(r"config testing (m-[0-9a-f]+)", proc.stdout).group(1)
    assert version == cloned.method_version != config.method_version


def test_recipe_momentum_restore_smoke(tmp_path):
    """A restored trace reaches the optimizer: the parent's trace is non-zero and the child
    that starts from it trains differently from the zero-trace child on the same batches."""
    out = tmp_path / "momentum.json"
    proc = run("recipe/momentum_restore.py", "--smoke", "--json", str(out))
    norm = float(re.search(r"trace norm ([\d.]+)", proc.stdout).group(1))
    assert positive(norm)
    (record,) = json.loads(out.read_text())["records"]
    zero, restored = record["zero"], record["restored"]
    for arm in (zero, restored):
        assert 0 < arm["best_validation"] <= 1 and 0 < arm["test"] <= 1
        assert arm["best_validation"] == max(arm["curve"])
    assert zero["curve"] != restored["curve"]
    diff = re.search(r"restored - zero, test: mean ([-+\d.]+) points", proc.stdout).group(1)
    assert float(diff) == pytest.approx(100 * (restored["test"] - zero["test"]), abs=0.01)


def test_quality_root_examples_with_a_cache_dir_reads_the_root_that_root_build_kept(tmp_path):
    """`--root-examples N --root-cache-dir DIR` compares a root pretrained longer: the
    benchmark reads the root `mu2net root build --examples N --root-cache DIR` wrote (same
    path hash, nothing trained again), and another N is another root."""
    import argparse

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import quality_vs_finetune

    from mu2net.cli import main
    from mu2net.config import get_config

    cache = str(tmp_path / "roots")
    assert main(["root", "build", "--config", "testing", "--task", "demo:fashion_mnist",
                 "--examples", "1280", "--root-cache", cache]) == 0
    kept = [name for name in os.listdir(cache) if name.endswith(".json")]
    assert len(kept) == 1
    built = json.load(open(os.path.join(cache, kept[0])))
    config = get_config("testing")
    args = argparse.Namespace(root_examples=1280, root_cache_dir=cache)
    root, _, info = quality_vs_finetune.make_root(config, args)
    assert info["cached"] and info["examples"] == built["metrics"]["examples_trained"]
    assert root.hash == built["root_path_hash"]
    assert sorted(os.listdir(cache)) == sorted([kept[0], kept[0][:-5] + ".npz"])
    other, _, other_info = quality_vs_finetune.make_root(
        config, argparse.Namespace(root_examples=640, root_cache_dir=cache))
    assert not other_info["cached"]
    assert other_info["examples"] < info["examples"] and other.hash != root.hash
    assert len(os.listdir(cache)) == 4


def test_compare_quality_runs_reports_a_known_shift(tmp_path):
    """The recorded run against a copy whose adapters gained 2 points on one task and seed:
    the adapters' paired difference is that shift, every other method's is zero."""
    base_path = os.path.join(REPO, "benchmarks", "results", "quality_vs_finetune.json")
    other = json.load(open(base_path))
    for row in other["rows"]:
        if row["method"] == "adapters_32" and row["seed"] == 1 and row["task"] == "digits":
            row["test_accuracy"] += 0.02
        if row["method"] == "finetune":  # a sweep without lr 0.2
            del row["sweep"]["0.2"]
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    out = run("recipe/compare_quality_runs.py", base_path, str(other_path)).stdout
    adapters = re.search(r"^adapters_32: .*per seed (\S+) (\S+) (\S+)\)", out, re.M)
    # +2 points on one of five tasks: +0.40 on the mean of seed 1
    assert [float(x) for x in adapters.groups()] == [0.0, 0.4, 0.0]
    assert "digits +0.7, glyph_letters +0.0" in out  # +2 points on one of 3 seeds
    paired = re.findall(r"paired ([-+]\d+\.\d+)", out)
    assert len(paired) == 8 and sorted(paired) == ["+0.00"] * 7 + ["+0.13"]
    finetune = out[out.index("\nfinetune: "):out.index("\nfinetune_equal: ")]
    assert "lr sweeps differ (['0.05', '0.1', '0.2'] / ['0.05', '0.1'])" in finetune
    assert re.findall(r"validation at lr (\S+): .*\(\+0\.00, 15 runs\)", finetune) == [
        "0.05", "0.1"]
    assert "lr sweeps differ" not in out.replace(finetune, "")
