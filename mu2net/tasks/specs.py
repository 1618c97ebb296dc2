"""The check of a task spec before it is queued or submitted: it parses the spec and looks up
the suite, so it sits above `sources` and `suite` (validation of loaded data, below them, is
`mu2net.tasks.validate`)."""

from __future__ import annotations

import os

from mu2net.errors import SchemaError, TaskError
from mu2net.schema import check_mode, validate_task_name
from mu2net.tasks.sources import parse_spec
from mu2net.tasks.suite import SUITE


def check_queue_spec(spec: str, mode: str = "onboard", *, local_store: bool = False) -> str:
    """Check a spec cheaply (no data is read) before it is queued; returns it stripped.

    A queued spec is read later by a scheduled run, so a typo would only show up as a failed
    run hours later. Checks: the mode; for `iterate`, a task name or a source spec; the spec's
    syntax and scheme (`parse_spec`), a derivable task name, a known demo task, a gs:// URI
    with a bucket, and, next to a local store, a local image folder that exists (relative paths
    are refused: a run does not share the caller's working directory).

    Raises:
      TaskError: naming the spec and the valid forms.
    """
    check_mode(mode)
    spec = spec.strip() if isinstance(spec, str) else spec
    if not isinstance(spec, str) or not spec:
        raise TaskError(f"task spec {spec!r} is empty: expected 'tfds:NAME[/CONFIG]', "
                        "'imagefolder:URI' or 'demo:NAME'")
    if mode == "iterate" and ":" not in spec:
        try:
            return validate_task_name(spec)
        except SchemaError as exc:
            raise TaskError(f"task {spec!r} cannot be iterated: {exc}") from None
    source = parse_spec(spec)
    source.default_name()
    if source.kind == "demo":
        if source.target not in SUITE:
            raise TaskError(f"demo task {source.target!r} is unknown: valid {list(SUITE)}")
    elif source.kind == "imagefolder":
        _check_folder_uri(spec, source.target, local_store)
    return spec


def _check_folder_uri(spec: str, uri: str, local_store: bool) -> None:
    from mu2net.gcloud import parse_gs_uri

    if uri.startswith("gs://"):
        parse_gs_uri(uri, TaskError)
        return
    if "://" in uri and not uri.startswith("file://"):
        raise TaskError(f"task source {spec!r}: scheme {uri.split('://')[0]!r} is unknown: "
                        "expected a gs:// URI or an absolute local path")
    path = _local_path(uri)
    if not os.path.isabs(path):
        raise TaskError(f"task source {spec!r}: {path!r} is a relative path, which a queued "
                        "run cannot resolve: give an absolute path or a gs:// URI")
    if local_store and not os.path.isdir(path):
        raise TaskError(f"task source {spec!r}: {path!r} is not a folder: expected "
                        "ROOT/CLASS/IMAGE or ROOT/{train,validation,test}/CLASS/IMAGE")


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri
