"""Using a task's model: `predict` image files, `export` for serving."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from mu2net.commands.aliases import resolve_version, split_task
from mu2net.commands.common import _store, at_arg, json_arg, store_arg
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

    task, alias = split_task(args.task, args.alias)
    target, meta_path = export_targets(args.out, task, args.format, force=args.force)
    store = _store(args.store)
    view, path = _task_path(store, task, resolve_version(store, task, alias, args.at))
    model = path_model(path, store)
    meta = {"task": task, "version": view.number, "path": path.hash, "alias": alias,
            "image_size": int(path.hparams["ds_image_size"]),
            "input": "float32 [N, S, S, 3] in [-1, 1] (resize, then x/127.5-1)",
            "class_names": _class_names(store, task, int(path.hparams["num_classes"])),
            "method_version": path.method_version}
    write_export(model, target, meta_path, meta)
    if args.json:
        print(json.dumps({"task": task, "alias": alias, "version": view.number,
                          "path": path.hash, "export": target, "metadata": meta_path},
                         indent=2))
        return 0
    print(f"exported task {task}{'@' + alias if alias else ''} (version {view.number}) "
          f"to {target}")
    if args.format == "keras":  # custom layers: plain keras.models.load_model cannot build them
        print("  load it where mu2net is installed: from mu2net.model import load_keras_model; "
              f"load_keras_model({os.path.basename(target)!r}) (keras.models.load_model alone "
              "does not know the mu2net layers; --format savedmodel needs no mu2net)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mu2net.predict import files_logits

    store = _store(args.store)
    task, alias = split_task(args.task, args.alias)
    view, path = _task_path(store, task, resolve_version(store, task, alias, args.at))
    logits = files_logits(path, args.files, store)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    names = _class_names(store, task, logits.shape[1])
    rows = []
    for name, p in zip(args.files, probs):
        k = int(np.argmax(p))
        rows.append({"file": name, "label": names[k], "class": k, "probability": float(p[k])})
    if args.json:
        print(json.dumps({"task": task, "version": view.number, "predictions": rows,
                          **({"alias": alias} if alias else {})}, indent=2))
    else:
        for r in rows:
            print(f"{r['file']}: {r['label']} ({r['probability']:.3f})")
    return 0


def _alias_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alias", default=None,
                   help="read the version the task's alias names (e.g. prod; `mu2net alias`); "
                        "same as --task TASK@ALIAS")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
    p = add("export", help="export one task's model for serving (.keras or SavedModel)")
    store_arg(p)
    p.add_argument("--task", required=True, metavar="TASK[@ALIAS]",
                   help="the task whose path to export (TASK@ALIAS: the path the alias names)")
    _alias_arg(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("keras", "savedmodel"), default="keras",
                   help="a .keras file or a TensorFlow SavedModel folder")
    at_arg(p)
    p.add_argument("--force", action="store_true", help="replace an earlier export of the task")
    json_arg(p, "what was written")
    p.set_defaults(func=_cmd_export)

    p = add("predict", help="classify image files with one task's path")
    p.add_argument("files", nargs="+", metavar="FILE", help="image files to classify")
    store_arg(p)
    p.add_argument("--task", required=True, metavar="TASK[@ALIAS]",
                   help="the task whose path classifies (TASK@ALIAS: the path the alias names)")
    _alias_arg(p)
    at_arg(p)
    json_arg(p, "the predictions (label, class, probability) and the version")
    p.set_defaults(func=_cmd_predict)
