"""The pretrained-root cache: a root is pretrained once per recipe, keyed by its config, and
read back bit for bit (same blobs, same component ids, same root path hash)."""

import dataclasses
import inspect
import json
import os

import pytest
from mu2net_helpers import digits_task

from mu2net.cli import main
from mu2net.config import get_config
from mu2net.errors import IntegrityError
from mu2net.root import build_root, pretrain_root
from mu2net.root_cache import (
    cached_pretrained_root,
    root_cache_file,
    root_cache_inputs,
    root_cache_key,
)
from mu2net.store import open_store

# the testing ViT, pretrained on 256 examples: a few seconds
CONFIG = get_config("testing").replace(root_pretrain_examples=256)


@pytest.fixture(scope="module")
def task():
    return digits_task("digits")


def test_the_second_call_reads_the_cache_and_gives_the_same_root(tmp_path, task):
    cache = str(tmp_path / "roots")
    root, blobs, metrics = cached_pretrained_root(CONFIG, task, seed=0, cache_dir=cache)
    npz_path = root_cache_file(CONFIG, task.info, seed=0, cache_dir=cache)
    json_path = npz_path[:-4] + ".json"
    key = root_cache_key(CONFIG, task.info, 0)
    assert os.path.basename(npz_path) == f"testing-{key}.npz"
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(npz_path),
                                                os.path.basename(json_path)])
    mtimes = (os.stat(npz_path).st_mtime_ns, os.stat(json_path).st_mtime_ns)
    doc = json.load(open(json_path))
    assert doc["key"] == key and doc["key_inputs"] == root_cache_inputs(CONFIG, task.info, 0)
    assert doc["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert doc["reproduce"].startswith("mu2net root build --config testing --task ")

    again, blobs_again, metrics_again = cached_pretrained_root(CONFIG, task, seed=0,
                                                               cache_dir=cache)
    # read, not retrained: files untouched, and the original run's seconds and curve
    assert (os.stat(npz_path).st_mtime_ns, os.stat(json_path).st_mtime_ns) == mtimes
    assert metrics_again == metrics
    assert metrics_again["train_seconds"] == metrics["train_seconds"]
    # the same root, bit for bit
    assert again.hash == root.hash
    assert again.component_ids == root.component_ids
    assert blobs_again == blobs
    assert again.metrics["validation_accuracy"] == root.metrics["validation_accuracy"]
    # the file is an AugReg-layout checkpoint: `npz:` import reads the same weights
    imported, imported_blobs = build_root(CONFIG, "npz", npz_path=npz_path)
    assert imported.component_ids == root.component_ids and imported_blobs == blobs
    # a damaged sidecar (or npz) is refused, not silently used
    doc["components"]["head"] = "0" * 64
    with open(json_path, "w") as fh:
        json.dump(doc, fh)
    with pytest.raises(IntegrityError, match=r"components \['head'\] differ"):
        cached_pretrained_root(CONFIG, task, seed=0, cache_dir=cache)


def test_the_key_follows_everything_that_changes_the_weights(task):
    key = root_cache_key(CONFIG, task.info)
    assert len(key) == 16 and int(key, 16) >= 0
    assert root_cache_key(get_config("testing").replace(root_pretrain_examples=256),
                          task.info) == key  # a fresh copy of the same config
    wider = CONFIG.replace(architecture=dataclasses.replace(CONFIG.architecture,
                                                            mlp_dim=64))
    search = CONFIG.search
    changed = [
        root_cache_key(wider, task.info),
        root_cache_key(CONFIG.replace(root_pretrain_examples=512), task.info),
        root_cache_key(CONFIG.replace(root_pretrain_lr=3e-3), task.info),
        root_cache_key(CONFIG.replace(root_pretrain_batch_size=16), task.info),
        root_cache_key(CONFIG.replace(search=dataclasses.replace(search, grad_clip_norm=0.5)),
                       task.info),
        root_cache_key(CONFIG.replace(search=dataclasses.replace(search, min_lr_ratio=0.01)),
                       task.info),
        root_cache_key(CONFIG, task.info, seed=1),
        *[root_cache_key(CONFIG.replace(**{name: value}), task.info)
          for name, value in (("root_pretrain_weight_decay", 0.05),
                              ("root_pretrain_augment", (("ds_flip_left_right", True),)))
          if hasattr(CONFIG, name)],
        root_cache_key(CONFIG, digits_task("digits", limit=600).info),  # other data
        root_cache_key(CONFIG, dataclasses.replace(task.info, name="digits2")),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    # batch size 0 means the search's: the same recipe, the same key
    assert root_cache_key(CONFIG.replace(root_pretrain_batch_size=search.batch_size),
                          task.info) == key
    # pretrain_root's own defaults (warmup, validations) are part of the recipe
    inputs = root_cache_inputs(CONFIG, task.info)
    defaults = inspect.signature(pretrain_root).parameters
    for name in ("warmup_ratio", "validations"):
        assert inputs["pretrain_args"][name] == defaults[name].default
    # and so is every root_pretrain_* field of the config, present or future
    fields = [f.name for f in dataclasses.fields(CONFIG) if f.name.startswith("root_pretrain_")]
    assert all(name[len("root_pretrain_"):] in inputs for name in fields)


def test_cli_root_build_then_init_reuses_the_cached_root(tmp_path, capsys):
    cache = str(tmp_path / "roots")
    common = ["--config", "testing", "--examples", "256", "--root-cache", cache]
    assert main(["root", "build", "--task", "demo:digits", *common]) == 0
    out = capsys.readouterr().out
    (npz_name,) = [n for n in os.listdir(cache) if n.endswith(".npz")]
    assert f"root {os.path.join(cache, npz_name)}" in out
    assert f"key            {npz_name[len('testing-'):-4]}" in out and "test accuracy  0." in out
    mtime = os.stat(os.path.join(cache, npz_name)).st_mtime_ns

    for name in ("a", "b"):
        store_dir = str(tmp_path / name)
        assert main(["init", "--store", store_dir, "--root", "pretrain:demo:digits",
                     *common]) == 0
    assert "created version 0" in capsys.readouterr().out
    assert sorted(os.listdir(cache)) == [npz_name[:-4] + ".json", npz_name]
    assert os.stat(os.path.join(cache, npz_name)).st_mtime_ns == mtime
    roots = [open_store(str(tmp_path / n)).load_system(0).root for n in ("a", "b")]
    assert roots[0].hash == roots[1].hash
    assert roots[0].metrics["pretrain_task"] == "digits"


def test_the_demo_finds_the_shipped_root_without_pretraining():
    """`make demo` (cpu_demo, seed 0, the default cache folder) reads the root shipped in
    roots/: a config change that moves the cache key would silently make every demo pretrain
    for about 7 minutes, and fails here instead."""
    from mu2net.root_cache import ROOT_CACHE_DIR, root_cache_file, root_cache_hit
    from mu2net.tasks.sources import load_source

    config = get_config("cpu_demo")
    repo_roots = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "roots")
    assert os.path.realpath(ROOT_CACHE_DIR) == os.path.realpath(repo_roots)
    info = load_source(config.root_task).info
    shipped = root_cache_file(config, info, seed=0, cache_dir=ROOT_CACHE_DIR)
    assert root_cache_hit(shipped), (f"the demo would pretrain: {shipped} is not shipped; "
                                     f"roots/ has {sorted(os.listdir(repo_roots))}")
    from mu2net.cli import _build_parser

    demo = _build_parser().parse_args(["demo", "--store", "s"])
    assert (demo.config, demo.seed, demo.root_cache or None) == ("cpu_demo", 0, None)
