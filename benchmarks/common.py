"""What every benchmark's results file starts with (revision, date, machine, exact command),
and the pieces the training benchmarks share (a child of random root parameters, one fixed
batch).

Imported by the scripts in this folder (run as `python benchmarks/NAME.py`, so this folder is on
`sys.path`). Standard library at import; numpy, TensorFlow and the library are imported by the
functions that need them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")


def machine() -> str:
    """CPU model, cores, memory, OS and Python: enough to tell two machines apart."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        memory = f", {kib / 2**20:.0f} GiB memory"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def git_revision() -> str:
    """`git rev-parse HEAD` (short), flagged when the working tree has uncommitted changes."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=REPO).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True,
                               cwd=REPO).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def command() -> str:
    """The command line that produced the results, relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return shlex.join(["python", script, *sys.argv[1:]])


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def header(title: str, recorded: dict | None = None) -> str:
    """`# title` then revision, date, machine and command lines: those `recorded` with a run
    (so a report re-rendered from its JSON names the run, not the re-rendering), else now."""
    rec = recorded or {"revision": git_revision(), "date": today(), "machine": machine(),
                       "command": command()}
    return (f"# {title}\n\nRevision {rec['revision']}, {rec['date']}; machine: "
            f"{rec['machine']}.\nCommand: `{rec['command']}`\n")


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}", flush=True)


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t-distribution confidence interval (nan for one value)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan
    from scipy.stats import t

    half = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, float(half)


def fmt_ci(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """`mean ± half-width` (by default as percentages)."""
    mean, half = mean_ci(values)
    if math.isnan(half):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


# Every `SearchConfig` field the search benchmarks (`quality_vs_finetune.py`,
# `recipe/search_cycles.py`) let the command line override: flag -> (field, type, help). The
# K x G layout, the budgets, and the departures from docs/method.md (mu2net/config.py's
# docstring lists them, each off in every named config).
SEARCH_FLAGS: dict[str, tuple[str, type, str]] = {
    "children": ("children_per_generation", int, "K of the K x G layout"),
    "generations": ("generations_per_cycle", int, "G of the K x G layout"),
    "examples-between-validations": ("examples_between_validations", int,
                                     "a child's examples per validation, at most"),
    "validation-examples": ("validation_examples", int, "the fixed validation subset's size"),
    "child-epochs": ("child_epochs", float,
                     "a child's budget in passes over the task's train split, within "
                     "--examples-between-validations per validation (a departure)"),
    "child-quality": ("child_quality", str, "best or final (a departure)"),
    "own-lineage-fallback": ("own_lineage_fallback", float,
                             "P(the uniform parent fallback stays in the task's own "
                             "population) once it has a published path (a departure)"),
    "clone-root-blocks": ("clone_root_blocks", bool,
                          "a child of the root clones every root component (a departure)"),
    "same-task-lr-steps": ("same_task_lr_steps", int,
                           "a same-task child's opt_lr starts this many steps below its "
                           "parent's (a departure)"),
}


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per `SEARCH_FLAGS` entry, default None (the config's value)."""
    for flag, (field, kind, text) in SEARCH_FLAGS.items():
        text = f"search.{field}: {text}"
        if kind is bool:
            parser.add_argument("--" + flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument("--" + flag, type=kind, default=None, help=text)


def search_overrides(args: argparse.Namespace) -> dict:
    """`SearchConfig` field -> the command line's value, for every flag (None: not given)."""
    return {field: getattr(args, flag.replace("-", "_"), None)
            for flag, (field, _, _) in SEARCH_FLAGS.items()}


def with_search_overrides(config, args: argparse.Namespace):
    """The config with every search flag given applied, and those overrides."""
    changes = {field: value for field, value in search_overrides(args).items()
               if value is not None}
    if changes:
        config = config.replace(search=dataclasses.replace(config.search, **changes))
    return config, changes


def random_child(config, hparams, trainable: list[str]):
    """A child assembled by the library from the config's random root parameters (seed 0)."""
    from mu2net.model import build_model
    from mu2net.root import random_root_params

    params, _ = random_root_params(config, seed=0, num_classes=int(hparams["num_classes"]))
    return build_model(config.architecture, hparams, params, trainable=trainable)


def fixed_batch_dataset(size: int, channels: int, batch: int, num_classes: int):
    """One seeded random batch repeated forever, so the input pipeline is not measured."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, channels))
    y = rng.integers(0, num_classes, batch)
    return tf.data.Dataset.from_tensors((x.astype(np.float32), y.astype(np.int32))).repeat()
