"""Using a task's model: `predict` image files, `export` for serving."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from mu2net.commands.common import (
    _store,
)
from mu2net.errors import TaskError


def _task_path(store: Any, task: str, version: int | None) -> tuple[Any, Any]:
    view = store.load_system(version)
    if task not in view.paths:
        raise TaskError(f"task {task!r} is not in system version {view.number}; tasks: "
                        f"{sorted(view.paths)}")
    return view, view.paths[task]


def _class_names(store: Any, task: str, num_classes: int) -> list[str]:
    infos = store.task_infos(task)
    if infos and len(infos[-1].class_names) == num_classes:
        return list(infos[-1].class_names)
    return [str(i) for i in range(num_classes)]


def _cmd_export(args: argparse.Namespace) -> int:
    from mu2net.predict import export_targets, path_model, write_export

    target, meta_path = export_targets(args.out, args.task, args.format, force=args.force)
    store = _store(args.store)
    view, path = _task_path(store, args.task, args.version)
    model = path_model(path, store)
    meta = {"task": args.task, "version": view.number, "path": path.hash,
            "image_size": int(path.hparams["ds_image_size"]),
            "input": "float32 [N, S, S, 3] in [-1, 1] (resize, then x/127.5-1)",
            "class_names": _class_names(store, args.task, int(path.hparams["num_classes"])),
            "method_version": path.method_version}
    write_export(model, target, meta_path, meta)
    print(f"exported task {args.task} (version {view.number}) to {target}")
    if args.format == "keras":  # custom layers: plain keras.models.load_model cannot build them
        print("  load it where mu2net is installed: from mu2net.model import load_keras_model; "
              f"load_keras_model({os.path.basename(target)!r}) (keras.models.load_model alone "
              "does not know the mu2net layers; --format savedmodel needs no mu2net)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mu2net.predict import files_logits

    store = _store(args.store)
    view, path = _task_path(store, args.task, args.version)
    logits = files_logits(path, args.files, store)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    names = _class_names(store, args.task, logits.shape[1])
    rows = []
    for name, p in zip(args.files, probs):
        k = int(np.argmax(p))
        rows.append({"file": name, "label": names[k], "class": k, "probability": float(p[k])})
    if args.json:
        print(json.dumps({"task": args.task, "version": view.number, "predictions": rows},
                         indent=2))
    else:
        for r in rows:
            print(f"{r['file']}: {r['label']} ({r['probability']:.3f})")
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
    p = add("export", help="export one task's model for serving (.keras or SavedModel)")
    p.add_argument("--store", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("keras", "savedmodel"), default="keras")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--force", action="store_true", help="replace an earlier export of the task")
    p.set_defaults(func=_cmd_export)

    p = add("predict", help="classify image files with one task's path")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--store", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)
