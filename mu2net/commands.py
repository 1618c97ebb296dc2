"""The `mu2net` subcommands that run, deploy and inspect the system (registered by cli.py).

Heavy imports (TensorFlow, kfp) happen inside the command that needs them. The commands that
talk to kfp (`compile`, `submit`, `schedule`, `onboard`, `iterate`, `demo`) reach the
`pipelines` package through importlib: the library itself never imports kfp.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from mu2net.config import CONFIG_NAMES, TARGETS, get_config
from mu2net.errors import ConfigError, StoreError, TaskError

DEFAULT_WORKDIR = "local_outputs"
DEMO_TASKS = ("demo:mnist_5k", "demo:glyph_letters")
DEFAULT_STORE = "gs://mu2net-models/shared"


def _pipelines(module: str) -> Any:
    """`pipelines.<module>`, which imports kfp (the library must not)."""
    return importlib.import_module(f"pipelines.{module}")


def _store(uri: str, config_name: str | None = None) -> Any:
    from mu2net.store import open_store

    if config_name is None:
        return open_store(uri)
    from mu2net.store.versioned import config_scorer

    return open_store(uri, scorer=config_scorer(get_config(config_name)))


def _say(text: str) -> None:
    """Progress to the real stdout (kfp.local redirects sys.stdout while a run is going)."""
    sys.__stdout__.write(text + "\n")
    sys.__stdout__.flush()


def _params(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is invalid: expected NAME=VALUE")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


# === compile / submit / schedule ===========================================================


def _images(args: argparse.Namespace) -> tuple[str, str, str]:
    """(training image, light image, code version) for a compile."""
    from mu2net.version import code_version, image_ref

    version = args.code_version or code_version()
    train = args.image or image_ref(args.registry, args.target, version)
    light = args.light_image or (args.image if args.image else
                                 image_ref(args.registry, "cpu", version))
    return train, light, version


def compile_to(args: argparse.Namespace) -> str:
    onboard = _pipelines("onboard_task")
    train, light, version = _images(args)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, onboard.pipeline_name(args.config, args.target) + ".yaml")
    onboard.compile_pipeline(args.config, args.target, path, image=train, light_image=light,
                             store_uri=args.store or DEFAULT_STORE, code_version=version)
    return path


def _cmd_compile(args: argparse.Namespace) -> int:
    path = compile_to(args)
    train, light, version = _images(args)
    print(f"compiled {path}\n  training image {train}\n  light image    {light}\n"
          f"  code version   {version}")
    return 0


def _package(args: argparse.Namespace) -> str:
    if args.package:
        return args.package
    args.out = tempfile.mkdtemp(prefix="mu2net-compile-")
    return compile_to(args)


def _run_params(args: argparse.Namespace) -> dict[str, Any]:
    """The run's parameters: `--param` pairs, then the named flags (`--store-uri` before
    `--store`, which was the only one read before: `--store-uri` was parsed and ignored)."""
    params = _params(args.param)
    store_uri = args.store_uri if args.store_uri is not None else args.store
    for name, value in (("task_spec", getattr(args, "task_spec", None)), ("mode", args.mode),
                        ("store_uri", store_uri), ("seed", args.seed),
                        ("data_dir", args.data_dir)):
        if value is not None:
            params[name] = value
    return params


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _pipelines("client")
    out = client.submit(args.host, _package(args), params=_run_params(args),
                        run_name=args.run_name, experiment=args.experiment,
                        pipeline_name=args.pipeline_name, version_name=args.version_name,
                        token=args.token, namespace=args.namespace,
                        service_account=args.service_account)
    print(f"uploaded {out['pipeline_name']} version {out['version_name']} "
          f"({out['version_id']}); run {out['run_id']}: {out['run_url']}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    client = _pipelines("client")
    client.validate_cron(args.cron)
    out = client.schedule(args.host, _package(args), cron=args.cron, params=_run_params(args),
                          name=args.name, experiment=args.experiment,
                          pipeline_name=args.pipeline_name, version_name=args.version_name,
                          token=args.token, namespace=args.namespace,
                          service_account=args.service_account)
    print(f"uploaded {out['pipeline_name']} version {out['version_name']}; recurring run "
          f"{out['recurring_run_id']} on '{out['cron']}' (max_concurrency=1, no catchup): "
          "each run takes the next queued task, else re-evolves the task with the most to gain")
    return 0


# === local runs =============================================================================


def check_cycles(cycles: Any) -> int:
    """`cycles` if it is a valid number of search cycles per task (an integer >= 1)."""
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise ConfigError(f"--cycles {cycles!r} is invalid: expected an integer >= 1 "
                          "(search cycles per task)")
    return cycles


def cycle_requests(spec: str, cycles: int) -> list[tuple[str, str]]:
    """The pipeline runs that onboard one task in `cycles` search cycles, as in the paper:
    an `onboard` run of the spec, then `cycles - 1` `iterate` runs of the task it creates
    (by name, so each re-evolves the path the previous cycle committed)."""
    check_cycles(cycles)
    from mu2net.tasks.sources import parse_spec

    name = parse_spec(spec).default_name()
    return [(spec, "onboard")] + [(name, "iterate")] * (cycles - 1)


def _request_task(spec: str, mode: str) -> str:
    """The task name a (spec, mode) request works on: an iterate request may name the task."""
    if mode == "iterate" and ":" not in spec:
        return spec
    from mu2net.tasks.sources import parse_spec

    return parse_spec(spec).default_name()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def _cycle_result(store: Any, task: str) -> dict[str, Any]:
    """The task's accuracies in the store's newest version (what the cycle just committed)."""
    head = store.head()
    path = store.load_system(head).paths.get(task)
    metrics = dict(path.metrics) if path is not None else {}
    return {"version": head, "validation": metrics.get("validation_accuracy"),
            "test": metrics.get("test_accuracy"), "path_cycles": metrics.get("num_cycles")}


def _accuracy_table(label: str, rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{label}: accuracy per cycle",
             f"  {'cycle':>5}  {'version':>7}  {'validation':>10}  {'test':>6}"]
    for i, row in enumerate(rows, start=1):
        lines.append(f"  {i:>5}  {row['version']!s:>7}  {_fmt(row['validation']):>10}  "
                     f"{_fmt(row['test']):>6}")
    return "\n".join(lines)


def _run_cycles(store_uri: str, tasks: Sequence[Sequence[tuple[str, str]]],
                args: argparse.Namespace) -> int:
    """Run each task's cycles (local pipeline runs, one (spec, mode) each) one after another,
    printing the task's accuracy after every cycle and, for several cycles, a table."""
    local_run = _pipelines("local_run")
    from mu2net.version import code_version

    store = _store(store_uri)
    if store.head() is None:
        raise StoreError(f"store {store_uri!r} is empty: run `mu2net init --store {store_uri} "
                         "--root ...` first")
    config = get_config(args.config)
    total = len(tasks)
    runs = sum(len(cycles) for cycles in tasks)
    started = time.monotonic()
    for i, cycles in enumerate(tasks, start=1):
        label = f"[{i}/{total}] {cycles[0][0]}"
        name = _request_task(*cycles[0])
        rows: list[dict[str, Any]] = []
        for c, (spec, mode) in enumerate(cycles, start=1):
            prefix = f"{label}: cycle {c}/{len(cycles)}"
            _say(f"{prefix}: {mode} {spec}, {config.search.generations_per_cycle} "
                 f"generations x {config.search.children_per_generation} children "
                 f"({config.name} config)")
            out = local_run.run_local(
                config_name=args.config, task_spec=spec, mode=mode, store_uri=store_uri,
                workdir=args.workdir, seed=args.seed, data_dir=args.data_dir or "",
                code_version=code_version(), verbose=args.verbose,
                progress=lambda line, prefix=prefix: _say(f"{prefix}:   {line}"))
            _say(f"{prefix}: {out['line']} ({out['seconds']:.1f} s)")
            row = _cycle_result(store, name)
            rows.append(row)
            _say(f"{prefix}: validation {_fmt(row['validation'])}, test {_fmt(row['test'])} "
                 f"(version {row['version']})")
        if len(rows) > 1:
            _say(_accuracy_table(label, rows))
    _say(f"done: {runs} cycle(s) of {total} task(s) in {time.monotonic() - started:.1f} s; "
         f"store head is version {store.head()}")
    return 0


def _local_args(p: argparse.ArgumentParser, default_config: str = "cpu_demo") -> None:
    p.add_argument("--store", required=True, help="store URI (a folder or gs://bucket/prefix)")
    p.add_argument("--config", default=default_config, choices=CONFIG_NAMES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="kfp.local pipeline root and logs (default: %(default)s)")
    p.add_argument("--data-dir", default="", help="data_dir for tfds: sources")
    p.add_argument("--verbose", action="store_true", help="show kfp's own log lines")


def _cycles(args: argparse.Namespace) -> int:
    """--cycles, or the config's `onboard_cycles` when not given."""
    cycles = getattr(args, "cycles", None)
    return check_cycles(get_config(args.config).onboard_cycles if cycles is None else cycles)


def _cycles_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cycles", type=int, default=None, metavar="N",
                   help="search cycles per task: one onboard run, then N-1 iterate runs "
                        "(default: the config's onboard_cycles)")


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    """The options of a pretrained root (`init --root pretrain:...`, `root build`)."""
    p.add_argument("--config", default="cpu_demo", choices=CONFIG_NAMES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="")
    p.add_argument("--examples", type=int, default=0,
                   help="pretraining examples (default: the config's root_pretrain_examples)")
    _root_cache_arg(p)


def _root_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root-cache", default="", metavar="DIR",
                   help="folder of pretrained roots (default: the repository's roots/)")


def _cmd_onboard(args: argparse.Namespace) -> int:
    cycles = _cycles(args)
    return _run_cycles(args.store, [cycle_requests(spec, cycles) for spec in args.specs], args)


def _cmd_iterate(args: argparse.Namespace) -> int:
    if args.all == bool(args.tasks):
        raise ConfigError("iterate needs task names or --all (not both)")
    tasks = list(args.tasks)
    if args.all:
        from mu2net.steps import gain_ranking

        store = _store(args.store)
        head = store.head()
        if head is None:
            raise StoreError(f"store {args.store!r} is empty")
        tasks = [name for _, name in gain_ranking(store.load_system(head))]
        if not tasks:
            raise TaskError(f"store {args.store!r} holds no task to iterate")
    return _run_cycles(args.store, [[(name, "iterate")] for name in tasks], args)


# === init / status / report / queue ==========================================================


def _cmd_init(args: argparse.Namespace) -> int:
    from mu2net.blobs import DirBlobs
    from mu2net.root import build_root
    from mu2net.version import code_version

    config = get_config(args.config)
    store = _store(args.store)
    kind, _, target = args.root.partition(":")
    metrics: dict[str, Any] = {}
    started = time.monotonic()
    if kind == "random" and not target:
        root, blobs = build_root(config, "random", seed=args.seed)
    elif kind == "npz" and target:
        local = _localize(target)
        root, blobs = build_root(config, "npz", npz_path=local)
    elif kind == "pretrain" and target:
        root, blobs, metrics, _ = _pretrained_root(config, target, args)
    else:
        raise ConfigError(f"--root {args.root!r} is invalid: expected random, npz:URI or "
                          "pretrain:SPEC")
    with tempfile.TemporaryDirectory() as tmp:
        result = store.init(root, DirBlobs(tmp).put_all(blobs),
                            {"root": args.root, "config_name": config.name,
                             "code_version": code_version()})
    what = "created" if result.created else "already holds this root as"
    extra = "".join(f", {k} {v:.4f}" for k, v in metrics.items()
                    if k in ("validation_accuracy", "test_accuracy"))
    print(f"store {args.store} {what} version 0: root of {len(root.components)} components, "
          f"{root.num_params:,} parameters (method {config.method_version}{extra}; "
          f"{time.monotonic() - started:.1f} s)")
    return 0


def _pretrained_root(config: Any, spec: str, args: argparse.Namespace
                     ) -> tuple[Any, dict[str, bytes], dict[str, Any], str]:
    """(root, blobs, metrics, cache file) of a root pretrained on `spec`, from the root cache
    when it holds one with this recipe (`--examples` overrides the config's and the key)."""
    from mu2net.root import (
        ROOT_CACHE_DIR,
        cached_pretrained_root,
        root_cache_file,
        root_cache_hit,
    )
    from mu2net.tasks.sources import load_source

    examples = getattr(args, "examples", 0) or 0
    if examples < 0:
        raise ConfigError(f"--examples {examples} is invalid: expected a positive number of "
                          "pretraining examples (0: the config's root_pretrain_examples)")
    if examples:
        config = config.replace(root_pretrain_examples=examples)
    cache_dir = getattr(args, "root_cache", None) or ROOT_CACHE_DIR
    task = load_source(spec, data_dir=getattr(args, "data_dir", "") or None)
    file_path = root_cache_file(config, task.info, seed=args.seed, cache_dir=cache_dir)
    if root_cache_hit(file_path):
        _say(f"reusing the pretrained root {file_path}")
    else:
        _say(f"pretraining the root on {task.info.name} ({task.info.split_sizes['train']} "
             f"training images, {config.root_pretrain_examples} examples); it will be kept "
             f"as {file_path}")
    root, blobs, metrics = cached_pretrained_root(config, task, seed=args.seed,
                                                  cache_dir=cache_dir)
    return root, blobs, metrics, file_path


def _cmd_root(args: argparse.Namespace) -> int:
    """`root build`: pretrain the config's root once (or find it in the cache)."""
    config = get_config(args.config)
    spec = args.task or config.root_task
    started = time.monotonic()
    root, _, metrics, file_path = _pretrained_root(config, spec, args)
    key = os.path.basename(file_path)[len(config.name) + 1:-len(".npz")]
    print(f"root {file_path}\n  key            {key}\n  pretrained on  {spec} "
          f"({metrics.get('examples_trained', '?')} examples, "
          f"{metrics.get('train_seconds', '?')} s when built)\n"
          f"  validation     {_fmt(metrics.get('validation_accuracy'))}\n"
          f"  test accuracy  {_fmt(metrics.get('test_accuracy'))}\n"
          f"  root path      {root.hash} ({root.num_params:,} parameters; "
          f"{time.monotonic() - started:.1f} s now)")
    return 0


def _localize(uri: str) -> str:
    """A local path for a file URI (gs:// objects are downloaded to a temporary file)."""
    if not uri.startswith("gs://"):
        if not os.path.exists(uri):
            raise ConfigError(f"checkpoint {uri!r} does not exist")
        return uri
    from mu2net.tasks.locations import gcs_client, split_gs_uri

    bucket, key = split_gs_uri(uri)
    tmp = tempfile.NamedTemporaryFile(suffix=".npz", delete=False)
    gcs_client().bucket(bucket).blob(key).download_to_filename(tmp.name)
    return tmp.name


def _cmd_status(args: argparse.Namespace) -> int:
    from mu2net.report import status_dict, status_text

    doc = status_dict(_store(args.store), args.version)
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else status_text(doc))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mu2net.report import system_html

    text = system_html(_store(args.store), args.version)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(text)
    print(f"wrote {args.out}")
    return 0


def _cmd_queue(args: argparse.Namespace) -> int:
    store = _store(args.store)
    if args.action == "add":
        if not args.specs:
            raise ConfigError("queue add needs at least one task spec")
        for spec in args.specs:
            entry = store.enqueue(spec, args.mode)
            print(f"queued {entry.id}: {entry.spec} ({entry.mode})")
        return 0
    entries = store.queue()
    if args.json:
        print(json.dumps([e.__dict__ | {"extra": dict(e.extra)} for e in entries], indent=2))
        return 0
    if not entries:
        print("queue is empty")
    for e in entries:
        tail = f" run {e.run_id}" if e.run_id else ""
        tail += f" error: {e.error}" if e.error else ""
        print(f"{e.id}  {e.state:<8} {e.mode:<8} {e.spec}{tail}")
    return 0


# === export / predict =======================================================================


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
    from mu2net.predict import path_model

    store = _store(args.store)
    view, path = _task_path(store, args.task, args.version)
    model = path_model(path, store)
    os.makedirs(args.out, exist_ok=True)
    if args.format == "keras":
        target = os.path.join(args.out, f"{args.task}.keras")
        model.save(target)
    else:
        target = os.path.join(args.out, f"{args.task}_savedmodel")
        model.export(target, format="tf_saved_model")
    meta = {"task": args.task, "version": view.number, "path": path.hash,
            "image_size": int(path.hparams["ds_image_size"]),
            "input": "float32 [N, S, S, 3] in [-1, 1] (resize, then x/127.5-1)",
            "class_names": _class_names(store, args.task, int(path.hparams["num_classes"])),
            "method_version": path.method_version}
    with open(os.path.join(args.out, f"{args.task}.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    print(f"exported task {args.task} (version {view.number}) to {target}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mu2net.predict import path_logits
    from mu2net.tasks.prepare import stack_images

    store = _store(args.store)
    view, path = _task_path(store, args.task, args.version)
    images = []
    for name in args.files:
        images.append(_read_image(name))
    stacked, _ = stack_images(images)
    logits = path_logits(path, stacked, store)
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


def _read_image(name: str) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(name) as im:
            im = im.convert("L") if im.mode in ("1", "L", "LA", "I", "I;16") else \
                im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise TaskError(f"image {name!r} cannot be read: {exc}") from None


# === demo ===================================================================================


def _cmd_demo(args: argparse.Namespace) -> int:
    """The README's main command: a pretrained root (from the root cache when it has one),
    then each suite task onboarded in the config's number of cycles, locally."""
    config = get_config(args.config)
    cycles = _cycles(args)
    store = _store(args.store)
    started = time.monotonic()
    if store.head() is None:
        init_args = argparse.Namespace(store=args.store, config=args.config, seed=args.seed,
                                       root=f"pretrain:{config.root_task}",
                                       data_dir=args.data_dir or "",
                                       examples=args.root_examples, root_cache=args.root_cache)
        _cmd_init(init_args)
    else:
        _say(f"store {args.store} already has version {store.head()}: keeping its root")
    view = store.load_system(store.head())
    from mu2net.tasks.sources import parse_spec

    todo = [spec for spec in args.tasks if parse_spec(spec).default_name() not in view.paths]
    if todo:
        _run_cycles(args.store, [cycle_requests(spec, cycles) for spec in todo], args)
    from mu2net.report import status_dict, status_text

    print(status_text(status_dict(store)))
    _say(f"demo finished in {time.monotonic() - started:.1f} s; inspect with `mu2net status "
         f"--store {args.store}` or `mu2net report --store {args.store} --out report.html`")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    from mu2net.version import code_version

    print(code_version())
    return 0


# === registration ===========================================================================


def _deploy_args(p: argparse.ArgumentParser, *, compile_only: bool = False) -> None:
    if not compile_only:
        p.add_argument("--host", required=True,
                       help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080")
        p.add_argument("--package", help="a compiled pipeline YAML (default: compile now)")
        p.add_argument("--token", help="bearer token (e.g. `gcloud auth print-identity-token`)")
        p.add_argument("--namespace", help="KFP namespace (multi-user installs)")
        p.add_argument("--experiment", default="mu2net-onboarding")
        p.add_argument("--pipeline-name", help="default: the compiled pipeline's name")
        p.add_argument("--version-name", help="default: <code version>-<UTC time>")
        p.add_argument("--service-account", help="KSA of the run (default: pipeline-runner)")
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a run parameter (repeatable)")
        p.add_argument("--mode", choices=("onboard", "iterate"), default=None)
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--store-uri", dest="store_uri", default=None,
                       help="the run's store_uri parameter (default: the compiled default)")
        p.add_argument("--data-dir", dest="data_dir", default=None,
                       help="the run's data_dir: where tfds: sources read prepared data, e.g. "
                            "a gs:// folder of TFDS datasets (ingestion never downloads)")
    p.add_argument("--config", default="gpu", choices=CONFIG_NAMES)
    p.add_argument("--target", default="gpu", choices=TARGETS)
    p.add_argument("--image", help="training image (default: <registry>/mu2net-<target>:<code "
                                   "version>)")
    p.add_argument("--light-image", help="image of the light steps (default: "
                                         "<registry>/mu2net-cpu:<code version>)")
    p.add_argument("--registry", default="", help="image registry prefix, e.g. "
                                                  "europe-docker.pkg.dev/PROJECT/mu2net")
    p.add_argument("--code-version", default="", help="default: `mu2net version`")
    p.add_argument("--store", default=None,
                   help="the store URI: the run form's default when compiling, and the run's "
                        "store_uri when submitting (default: " + DEFAULT_STORE + ")")


def register(sub: Any) -> None:
    """Add the commands to the CLI's subparsers."""
    add: Callable[..., argparse.ArgumentParser] = sub.add_parser

    p = add("compile", help="compile the onboarding pipeline for a config and device target")
    _deploy_args(p, compile_only=True)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_compile)

    p = add("submit", help="upload the pipeline as a new version to KFP and start a run")
    _deploy_args(p)
    p.add_argument("--task", dest="task_spec", default=None,
                   help="task_spec of the run (default: next from the queue)")
    p.add_argument("--run-name")
    p.set_defaults(func=_cmd_submit)

    p = add("schedule", help="upload the pipeline and create a recurring run (one at a time, "
                             "no catchup) that onboards the next queued task")
    _deploy_args(p)
    p.add_argument("--cron", required=True,
                   help="6 fields with seconds, e.g. '0 0 3 * * *' (daily 03:00), or @daily")
    p.add_argument("--name", help="recurring run name")
    p.set_defaults(func=_cmd_schedule, task_spec=None)

    p = add("onboard", help="onboard tasks: N local pipeline cycles per task (kfp.local)")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help="task sources: demo:NAME, tfds:NAME, imagefolder:URI")
    _local_args(p)
    _cycles_arg(p)
    p.set_defaults(func=_cmd_onboard)

    p = add("iterate", help="re-evolve existing tasks: one local pipeline cycle per task")
    p.add_argument("tasks", nargs="*", metavar="TASK")
    p.add_argument("--all", action="store_true",
                   help="every task, the one with the most to gain first")
    _local_args(p)
    p.set_defaults(func=_cmd_iterate)

    p = add("init", help="create system version 0 (the root model) in a store")
    p.add_argument("--store", required=True)
    p.add_argument("--root", required=True, help="random | npz:URI | pretrain:SPEC")
    _pretrain_args(p)
    p.set_defaults(func=_cmd_init)

    p = add("root", help="build the config's pretrained root once, into the root cache")
    p.add_argument("action", choices=("build",))
    p.add_argument("--task", default="",
                   help="pretraining task source (default: the config's root_task)")
    _pretrain_args(p)
    p.set_defaults(func=_cmd_root)

    p = add("status", help="the system's tasks, accuracies, scores and parameters")
    p.add_argument("--store", required=True)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--json", action="store_true", help="the pinned JSON format")
    p.set_defaults(func=_cmd_status)

    p = add("report", help="write the system graph and history as HTML")
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--version", type=int, default=None)
    p.set_defaults(func=_cmd_report)

    p = add("queue", help="the store's task queue (what scheduled runs onboard next)")
    p.add_argument("action", choices=("add", "list"))
    p.add_argument("specs", nargs="*", metavar="SPEC")
    p.add_argument("--store", required=True)
    p.add_argument("--mode", choices=("onboard", "iterate"), default="onboard")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_queue)

    p = add("export", help="export one task's model for serving (.keras or SavedModel)")
    p.add_argument("--store", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("keras", "savedmodel"), default="keras")
    p.add_argument("--version", type=int, default=None)
    p.set_defaults(func=_cmd_export)

    p = add("predict", help="classify image files with one task's path")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--store", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = add("demo", help="the main job: pretrained root + onboard suite tasks, locally")
    _local_args(p)
    p.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), metavar="SPEC")
    p.add_argument("--root-examples", type=int, default=0,
                   help="root pretraining examples (default: the config's)")
    _cycles_arg(p)
    _root_cache_arg(p)
    p.set_defaults(func=_cmd_demo)

    p = add("version", help="print the code version (image tag)")
    p.set_defaults(func=_cmd_version)

