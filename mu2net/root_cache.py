"""The pretrained-root cache: `pretrain_root` (mu2net.root) paid once per recipe.

`cached_pretrained_root` keeps each pretrained root as an AugReg-layout `.npz` (plus a `.json`
sidecar with its metrics) under `roots/<config>-<key>.npz`, the key hashing everything that
determines the weights (`root_cache_key`), so the demo, `mu2net init` and the benchmarks reuse
it. `mu2net root build --config NAME` produces the file. Apart from `mu2net.root` because it is
file bookkeeping (key, layout, sidecar), not model building: changing how a root is made
changes the key through `root.PRETRAIN_RECIPE` and `pretrain_root`'s signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from mu2net.config import Config, canonical_json
from mu2net.errors import IntegrityError, SchemaError
from mu2net.params_io import npz_bytes_to_params, params_to_npz_bytes, write_file_atomic
from mu2net.root import PRETRAIN_RECIPE, import_augreg_npz, pretrain_root, root_from_params
from mu2net.schema import Path
from mu2net.task_info import TaskInfo
from mu2net.tasks.base import TaskData

# The committed cache of pretrained roots: `roots/` at the repository root.
ROOT_CACHE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "roots")

# pretrain_root arguments that the cache key takes from the config and the caller, or that do
# not change the trained weights; its other keyword defaults (warmup, validations, anything
# added later) are read from its signature, so the key follows them.
_KEY_EXCLUDED_ARGS = ("seed", "examples", "batch_size", "lr", "execution")


def _pretrain_defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in inspect.signature(pretrain_root).parameters.items():
        if p.default is inspect.Parameter.empty or name in _KEY_EXCLUDED_ARGS:
            continue
        plain = p.default is None or isinstance(p.default, (bool, int, float, str))
        out[name] = p.default if plain else repr(p.default)
    return out


def _reproduce_command(config: Config, task_info: TaskInfo, seed: int) -> str:
    """The `mu2net root build` line that makes this root again."""
    from mu2net.config import CONFIG_NAMES, get_config

    command = f"mu2net root build --config {config.name} --task {task_info.source}"
    if seed:
        command += f" --seed {seed}"
    named = get_config(config.name) if config.name in CONFIG_NAMES else None
    if named is None or named.root_pretrain_examples != config.root_pretrain_examples:
        command += f" --examples {config.root_pretrain_examples}"
    return command


def root_cache_inputs(config: Config, task_info: TaskInfo, seed: int = 0) -> dict[str, Any]:
    """Everything that determines a pretrained root's weights (what its cache key hashes):
    every `root_pretrain_*` field of the config (batch size 0 resolved to the search's), so a
    recipe field added later enters the key by itself."""
    search = config.search
    recipe = {name[len("root_pretrain_"):]: value
              for name, value in dataclasses.asdict(config).items()
              if name.startswith("root_pretrain_")}
    recipe["batch_size"] = int(config.root_pretrain_batch_size or search.batch_size)
    inputs = {"recipe": PRETRAIN_RECIPE,
              "architecture": dataclasses.asdict(config.architecture),
              **recipe,
              "pretrain_args": _pretrain_defaults(),
              "validation_examples": int(search.validation_examples),
              "min_lr_ratio": float(search.min_lr_ratio),
              "grad_clip_norm": float(search.grad_clip_norm),
              "seed": int(seed),
              "task": task_info.name, "task_content_hash": task_info.content_hash}
    return json.loads(canonical_json(inputs))  # plain JSON: what the sidecar records


def root_cache_key(config: Config, task_info: TaskInfo, seed: int = 0) -> str:
    """16 hex digits naming a pretrained root: a new architecture, recipe, seed or pretraining
    data gives a new key, so a stale root is never reused."""
    text = canonical_json(root_cache_inputs(config, task_info, seed))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def root_cache_file(config: Config, task_info: TaskInfo, *, seed: int = 0,
                    cache_dir: str = ROOT_CACHE_DIR) -> str:
    """`<cache_dir>/<config name>-<key>.npz`, the cached root's weights (sidecar: `.json`)."""
    key = root_cache_key(config, task_info, seed)
    return os.path.join(cache_dir, f"{config.name}-{key}.npz")


def root_cache_sidecar(npz_path: str) -> str:
    """The `.json` beside a cached root's `.npz`; its presence marks a complete entry."""
    return npz_path[:-len(".npz")] + ".json"


def root_cache_hit(npz_path: str) -> bool:
    """Whether the cache holds a complete root at `npz_path` (weights and sidecar)."""
    return os.path.exists(npz_path) and os.path.exists(root_cache_sidecar(npz_path))


def root_to_augreg_flat(params: Mapping[str, Mapping[str, np.ndarray]]
                        ) -> dict[str, np.ndarray]:
    """Component params in the vit_jax / AugReg `.npz` layout (the inverse of
    `import_augreg_npz`), so a cached root is also a checkpoint other tools can read."""
    flat: dict[str, np.ndarray] = {}
    for name, weights in params.items():
        if name not in ("cls", "embedding", "head", "posembed_input", "encoder_norm") and \
                not name.startswith("encoderblock_"):
            raise SchemaError(f"root component {name!r} has no place in the AugReg layout "
                              "(cls, embedding, posembed_input, encoderblock_<i>, "
                              "encoder_norm, head)")
        for weight, value in weights.items():
            if name == "cls" and weight == "cls":
                key = "cls"
            elif name in ("cls", "embedding", "head"):
                key = f"{name}/{weight}"
            else:
                key = f"Transformer/{name}/{weight}"
            flat[key] = np.asarray(value, np.float32)
    return flat


def _load_cached_root(config: Config, npz_path: str, doc: Mapping[str, Any]
                      ) -> tuple[Path, dict[str, bytes], dict[str, Any]]:
    params, hparams = import_augreg_npz(npz_path, config)
    metrics = dict(doc["metrics"])
    root, blobs = root_from_params(config, params, hparams, metrics)
    expected = doc.get("components", {})
    got = {c.name: c.blob for c in root.components}
    if expected and got != expected:
        bad = sorted(n for n in set(got) | set(expected) if got.get(n) != expected.get(n))
        raise IntegrityError(f"cached root {npz_path!r} does not match its sidecar: components "
                             f"{bad} differ; delete both files to pretrain again")
    return root, blobs, metrics


def cached_pretrained_root(config: Config, task: TaskData, *, seed: int = 0,
                           cache_dir: str = ROOT_CACHE_DIR
                           ) -> tuple[Path, dict[str, bytes], dict[str, Any]]:
    """`pretrain_root` paid once: the root from `root_cache_file(...)` if it is there, else
    pretrained now (with the config's `root_pretrain_*` recipe) and written there.

    The loaded root has exactly the blobs and component ids the pretraining produced, and the
    metrics it measured then (so `train_seconds` is the original run's). Returns what
    `pretrain_root` returns: (root path, blobs, metrics).
    """
    npz_path = root_cache_file(config, task.info, seed=seed, cache_dir=cache_dir)
    json_path = root_cache_sidecar(npz_path)
    if root_cache_hit(npz_path):
        with open(json_path) as fh:
            doc = json.load(fh)
        return _load_cached_root(config, npz_path, doc)
    root, blobs, metrics = pretrain_root(config, task, seed=seed)
    params = {c.name: npz_bytes_to_params(blobs[c.blob]) for c in root.components}
    doc = {"key": root_cache_key(config, task.info, seed), "config": config.name,
           "key_inputs": root_cache_inputs(config, task.info, seed),
           "metrics": dict(root.metrics),
           "components": {c.name: c.blob for c in root.components},
           "root_path_hash": root.hash, "method_version": config.method_version,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "reproduce": _reproduce_command(config, task.info, seed)}
    try:
        # the weights first: the sidecar's presence marks a complete entry
        write_file_atomic(npz_path, params_to_npz_bytes(root_to_augreg_flat(params)))
        write_file_atomic(json_path,
                          (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    except OSError as exc:  # a read-only install still gets its root, just not cached
        warnings.warn(f"pretrained root not cached in {cache_dir!r}: {exc}", stacklevel=2)
    return root, blobs, dict(metrics)
