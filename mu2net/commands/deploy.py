"""Deploying to Kubeflow: `compile`, `submit`, `schedule`, and `version` (the image tag)."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from mu2net.commands.common import (
    _pipelines,
)
from mu2net.config import CONFIG_NAMES, DEFAULT_STORE, TARGETS
from mu2net.errors import ConfigError
from mu2net.schema import MODES


def _params(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is invalid: expected NAME=VALUE")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _images(args: argparse.Namespace) -> tuple[str, str, str]:
    """(training image, light image, code version) for a compile."""
    from mu2net.version import entry_point_version, image_ref

    version = args.code_version or entry_point_version()
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
    if args.package is not None:
        if not os.path.isfile(args.package) or not os.path.getsize(args.package):
            what = ("is empty" if os.path.isfile(args.package) else "is not a file")
            raise ConfigError(f"--package {args.package!r} {what}: give a pipeline YAML that "
                              "`mu2net compile` wrote, or omit --package to compile now")
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
    spec = str(params.get("task_spec", "next"))
    if spec != "next":  # checked here, in a second, rather than failing the run's first step
        from mu2net.tasks.specs import check_queue_spec

        params["task_spec"] = check_queue_spec(spec, str(params.get("mode", "onboard")))
    return params


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _pipelines("client")
    params = _run_params(args)  # a bad task spec fails here, before compiling or uploading
    out = client.submit(args.host, _package(args), params=params,
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
    params = _run_params(args)
    out = client.schedule(args.host, _package(args), cron=args.cron, params=params,
                          name=args.name, experiment=args.experiment,
                          pipeline_name=args.pipeline_name, version_name=args.version_name,
                          token=args.token, namespace=args.namespace,
                          service_account=args.service_account)
    print(f"uploaded {out['pipeline_name']} version {out['version_name']}; recurring run "
          f"{out['recurring_run_id']} on '{out['cron']}' (max_concurrency=1, no catchup): "
          "each run takes the next queued task, else re-evolves the task with the most to gain")
    return 0


def _cmd_version(_args: argparse.Namespace) -> int:
    from mu2net.version import entry_point_version

    print(entry_point_version())
    return 0


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
        p.add_argument("--mode", choices=MODES, default=None)
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


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
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

    p = add("version", help="print the code version (image tag)")
    p.set_defaults(func=_cmd_version)
