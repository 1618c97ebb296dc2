"""Synthetic components for exercising the store without a model: the store keeps bytes, so
deterministic random bytes stand in for `.npz` parameter files. Used by the store's tests and
its scaling benchmark."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mu2net.schema import ROOT_TASK, Component, Extension, Path, SystemView, sha256_hex


def synthetic_blob(seed: str, size: int = 256) -> bytes:
    """`size` random bytes, the same for the same `seed`."""
    rng = np.random.default_rng(int(sha256_hex(seed.encode())[:8], 16))
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def synthetic_component(creator: str, name: str, data: bytes) -> Component:
    """A component whose one parameter is `data` read as float32s."""
    blob = sha256_hex(data)
    return Component(id=Component.make_id(creator, name, blob), name=name, creator=creator,
                     shapes={"w": (len(data) // 4,)}, blob=blob)


def synthetic_extension(view: SystemView, task: str, blob_dir: str, *, own: Sequence[str] = (),
                        adapters: Sequence[int] = (), reuse: Mapping[str, str] | None = None,
                        metrics: Mapping[str, Any] | None = None, run_id: str = "",
                        base_version: int | None = None) -> Extension:
    """A cycle's extension for `task` without training: the root's path with the components
    named in `own` replaced by task-owned ones (random bytes, the root's shapes), one
    residual adapter before each block in `adapters`, and `reuse` (name -> task) taking
    another task's component frozen. Its blobs are written under `blob_dir`. For tests and
    pictures of the report at any number of tasks."""
    comps: list[Component] = []
    files: dict[str, str] = {}
    hidden = 16
    os.makedirs(blob_dir, exist_ok=True)

    def new(name: str, shapes: Mapping[str, tuple[int, ...]]) -> Component:
        data = synthetic_blob(f"{task}/{name}/{run_id}", 64)
        blob = sha256_hex(data)
        files[blob] = os.path.join(blob_dir, blob)
        with open(files[blob], "wb") as fh:
            fh.write(data)
        return Component(id=Component.make_id(task, name, blob), name=name, creator=task,
                         shapes=dict(shapes), blob=blob)

    for c in view.root.components:
        match = re.match(r"encoderblock_(\d+)$", c.name)
        if match and int(match.group(1)) in adapters:
            comps.append(new(f"residual_adapter_{match.group(1)}",
                             {"down": (hidden, 8), "up": (8, hidden)}))
        if reuse and c.name in reuse:
            comps.append(view.paths[reuse[c.name]].component(c.name) or c)
        elif c.name in own or c.name == "head":
            comps.append(new(c.name, c.shapes))
        else:
            comps.append(c)
    published = view.paths.get(task)
    path = Path(task=task, components=tuple(comps), hparams=dict(view.root.hparams),
                method_version=view.root.method_version, parent=view.root.hash,
                parent_task=ROOT_TASK, metrics=dict(metrics or {}))
    return Extension(task=task, base_version=view.number if base_version is None
                     else base_version, path=path, blob_files=files,
                     run_id=run_id or f"synthetic-{task}-{view.number}",
                     config_name="testing", mode="iterate" if published else "onboard")
