"""Deploying to Kubeflow: `compile`, `submit`, `schedule`, and `version` (the image tag)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from mu2net.commands.common import (
    STORE_ENV,
    DeprecatedOption,
    _pipelines,
    config_arg,
    store_arg,
)
from mu2net.config import TARGETS, get_config
from mu2net.errors import ConfigError
from mu2net.schema import MODES

HOST_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own default for its host


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

    if not args.registry.strip() and not args.image:  # bare names no cluster can pull
        raise ConfigError("--registry '' leaves the images as bare names (mu2net-<kind>:<tag>) "
                          "that no cluster can pull: give --registry, e.g. "
                          "us-central1-docker.pkg.dev/PROJECT/mu2net, or --image")
    version = args.code_version or entry_point_version()
    train = args.image or image_ref(args.registry, args.target, version)
    light = args.light_image or (args.image if args.image else
                                 image_ref(args.registry, "cpu", version))
    return train, light, version


def compiled_store(args: argparse.Namespace) -> str:
    """The store a compile bakes in as the run form's default: --store (or --store-uri), else
    `$MU2NET_STORE` (filled in by the CLI). There is no default bucket: without one, refused."""
    store = args.store
    if not store:
        raise ConfigError(f"compiling needs a store: pass --store gs://BUCKET/PREFIX (a bucket "
                          f"you own) or set {STORE_ENV}")
    return store


def compile_to(args: argparse.Namespace) -> str:
    onboard = _pipelines("onboard_task")
    store = compiled_store(args)
    train, light, version = _images(args)
    os.makedirs(args.out, exist_ok=True)
    name = get_config(args.config).name  # a config file's `name` names its pipeline
    path = os.path.join(args.out, onboard.pipeline_name(name, args.target) + ".yaml")
    onboard.compile_pipeline(args.config, args.target, path, image=train, light_image=light,
                             store_uri=store, data_dir=args.data_dir or "",
                             code_version=version)
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
    """The run's parameters: `--param` pairs, then the named flags (`--store` is the run's
    store_uri; `--store-uri` is its deprecated spelling)."""
    params = _params(args.param)
    for name, value in (("task_spec", getattr(args, "task_spec", None)), ("mode", args.mode),
                        ("store_uri", args.store), ("seed", args.seed),
                        ("data_dir", args.data_dir)):
        if value is not None:
            params[name] = value
    spec = str(params.get("task_spec", "next"))
    if spec != "next":  # checked here, in a second, rather than failing the run's first step
        from mu2net.tasks.specs import check_queue_spec

        params["task_spec"] = check_queue_spec(spec, str(params.get("mode", "onboard")))
    return params


def _host(args: argparse.Namespace) -> str:
    """--host, else $KF_PIPELINES_ENDPOINT (the variable kfp.Client reads itself)."""
    host = args.host or os.environ.get(HOST_ENV, "")
    if not host:
        raise ConfigError(f"no Kubeflow Pipelines endpoint: pass --host URL or set {HOST_ENV} "
                          "(e.g. http://localhost:8080 after a port-forward)")
    return host


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


def _cmd_submit(args: argparse.Namespace) -> int:
    client = _pipelines("client")
    params = _run_params(args)  # a bad task spec fails here, before compiling or uploading
    out = client.submit(_host(args), _package(args), params=params,
                        run_name=args.run_name, experiment=args.experiment,
                        pipeline_name=args.pipeline_name, version_name=args.version_name,
                        token=args.token, namespace=args.namespace,
                        service_account=args.service_account)
    if args.json:
        _print_json({**out, "parameters": params})
        return 0
    print(f"uploaded {out['pipeline_name']} version {out['version_name']} "
          f"({out['version_id']}); run {out['run_id']}: {out['run_url']}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    client = _pipelines("client")
    client.validate_cron(args.cron)
    params = _run_params(args)
    out = client.schedule(_host(args), _package(args), cron=args.cron, params=params,
                          name=args.name, experiment=args.experiment,
                          pipeline_name=args.pipeline_name, version_name=args.version_name,
                          token=args.token, namespace=args.namespace,
                          service_account=args.service_account)
    if args.json:
        _print_json({**out, "parameters": params})
        return 0
    print(f"uploaded {out['pipeline_name']} version {out['version_name']}; recurring run "
          f"{out['recurring_run_id']} on '{out['cron']}' (max_concurrency=1, no catchup): "
          "each run takes the next queued task, else re-evolves the task with the most to gain"
          + (f"; replaced {', '.join(out['replaced'])}" if out.get("replaced") else ""))
    return 0


def _cmd_version(_args: argparse.Namespace) -> int:
    from mu2net.version import entry_point_version

    print(entry_point_version())
    return 0


def _deploy_args(p: argparse.ArgumentParser, *, compile_only: bool = False) -> None:
    if not compile_only:
        p.add_argument("--host", default=None,
                       help=f"Kubeflow Pipelines endpoint, e.g. http://localhost:8080 "
                            f"(default: ${HOST_ENV})")
        p.add_argument("--package", help="a compiled pipeline YAML (default: compile now)")
        p.add_argument("--token", help="bearer token (e.g. `gcloud auth print-identity-token`)")
        p.add_argument("--namespace", help="KFP namespace (multi-user installs: the profile "
                                           "namespace, manifests/kubeflow-profile)")
        p.add_argument("--experiment", default="mu2net-onboarding",
                       help="KFP experiment the run belongs to")
        p.add_argument("--pipeline-name", help="KFP pipeline to upload into (default: the "
                                               "compiled pipeline's name)")
        p.add_argument("--version-name", help="name of the uploaded pipeline version "
                                              "(default: <code version>-<UTC time>)")
        p.add_argument("--service-account", help="KSA of the run (default: the install's: "
                                                 "pipeline-runner, or default-editor in a "
                                                 "profile namespace)")
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a run parameter (repeatable)")
        p.add_argument("--mode", choices=MODES, default=None,
                       help="onboard a new task or iterate one (default: the compiled default)")
        p.add_argument("--seed", type=int, default=None,
                       help="the run's seed (default: the compiled default)")
        p.add_argument("--store-uri", dest="store", action=DeprecatedOption,
                       replacement="--store")
        p.add_argument("--json", action="store_true",
                       help="print the uploaded pipeline version and run ids as JSON")
    config_arg(p, "gpu")
    p.add_argument("--target", default="gpu", choices=TARGETS,
                   help="the device the training steps run on")
    p.add_argument("--image", help="training image (default: <registry>/mu2net-<target>:<code "
                                   "version>)")
    p.add_argument("--light-image", help="image of the light steps (default: "
                                         "<registry>/mu2net-cpu:<code version>)")
    p.add_argument("--registry", default="", help="image registry prefix, e.g. "
                                                  "us-central1-docker.pkg.dev/PROJECT/mu2net")
    p.add_argument("--code-version", default="", help="the code version recorded by every commit "
                                                     "(default: `mu2net version`)")
    # compile needs a store; submit and schedule with --package send one only when given
    store_arg(p, required=compile_only,
              help="the store URI: the run form's default when compiling, and the run's "
                   "store_uri when submitting (no default bucket)")
    p.add_argument("--data-dir", dest="data_dir", default=None,
                   help="where tfds: sources read prepared data, e.g. a gs:// folder of TFDS "
                        "datasets (ingestion never downloads): the run form's default when "
                        "compiling (so scheduled and UI runs get it), and the run's data_dir "
                        "when submitting; a queue entry's or task's recorded folder wins over "
                        "the compiled default")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's commands (`add` is the CLI's `add_parser`)."""
    p = add("compile", help="compile the onboarding pipeline for a config and device target")
    _deploy_args(p, compile_only=True)
    p.add_argument("--out", required=True, help="output folder for the pipeline YAML")
    p.set_defaults(func=_cmd_compile)

    p = add("submit", help="upload the pipeline as a new version to KFP and start a run")
    _deploy_args(p)
    p.add_argument("--task", dest="task_spec", default=None,
                   help="task_spec of the run (default: next from the queue)")
    p.add_argument("--run-name", help="the KFP run's name (default: <pipeline name>-<task spec>)")
    p.set_defaults(func=_cmd_submit)

    p = add("schedule", help="upload the pipeline and create a recurring run (one at a time, "
                             "no catchup) that onboards the next queued task")
    _deploy_args(p)
    p.add_argument("--cron", required=True,
                   help="6 fields with seconds, e.g. '0 0 3 * * *' (daily 03:00), or @daily")
    p.add_argument("--name", help="recurring run name (default: <pipeline name>-recurring)")
    p.set_defaults(func=_cmd_schedule, task_spec=None)

    p = add("version", help="print the code version (image tag)")
    p.set_defaults(func=_cmd_version)
