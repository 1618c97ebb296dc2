"""Submit the compiled onboarding pipeline to a Kubeflow Pipelines API server.

`submit` uploads a compiled pipeline as a new version (creating the pipeline on first upload)
and starts one run; `schedule` does the same upload and creates a recurring run with
`max_concurrency=1` and `no_catchup`, whose runs use `task_spec="next"`: each takes the next
pending task of the store's queue, or re-evolves the task with the most to gain
(`mu2net.steps.pick_task_to_iterate`).

Everything goes through the real `kfp.Client` (tested against a loopback server that records
the v2beta1 requests). Before the client is built, one GET of `/apis/v2beta1/healthz` turns an
unreachable host or an authentication failure into one clear error instead of kfp.Client's
25 s of retries. The library (`mu2net/`) never imports kfp; the CLI reaches this module through
importlib.
"""

import datetime
import json
import os
import re
import urllib.error
import urllib.request
from typing import Any

CRON_FIELDS = (  # name, min, max (robfig/cron with seconds, as the KFP backend parses it)
    ("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
    ("month", 1, 12), ("day of week", 0, 6))
CRON_NAMES = {
    "month": {m: i + 1 for i, m in enumerate(
        "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    "day of week": {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                    "@hourly")
CRON_HELP = ("6 fields 'second minute hour day-of-month month day-of-week' (e.g. '0 0 3 * * *' "
             "= daily at 03:00), or @hourly/@daily/@weekly/@monthly/@yearly, or '@every 6h'")
DEFAULT_EXPERIMENT = "mu2net-onboarding"


def _error(message: str) -> Exception:
    from mu2net.errors import DeployError

    return DeployError(message)


# === cron =================================================================================


def validate_cron(expression: str) -> str:
    """The expression, stripped, if the KFP backend's cron parser accepts it; else DeployError.

    KFP schedules with robfig/cron including a seconds field: a 5-field crontab line is
    rejected here (it would be read shifted by one field)."""
    expr = " ".join(str(expression).split())
    if expr in CRON_DESCRIPTORS:
        return expr
    if expr.startswith("@every "):
        if re.fullmatch(r"@every (\d+(\.\d+)?(ns|us|ms|s|m|h))+", expr):
            return expr
        raise _error(f"cron expression {expression!r} is invalid: '@every' needs a Go duration "
                     "such as 30m or 6h")
    fields = expr.split(" ")
    if len(fields) != 6:
        raise _error(f"cron expression {expression!r} is invalid: it has {len(fields)} fields; "
                     f"expected {CRON_HELP}")
    for (name, low, high), field in zip(CRON_FIELDS, fields):
        problem = _cron_field_problem(field, name, low, high)
        if problem:
            raise _error(f"cron expression {expression!r} is invalid: {name} field {field!r} "
                         f"{problem}; expected {CRON_HELP}")
    return expr


def _cron_field_problem(field: str, name: str, low: int, high: int) -> str:
    names = CRON_NAMES.get(name, {})

    def value(token: str) -> int | None:
        if token.isdigit():
            return int(token)
        return names.get(token.upper())

    for part in field.split(","):
        if part in ("*", "?"):
            if part == "?" and name not in ("day of month", "day of week"):
                return "uses '?' (only allowed in day of month / day of week)"
            continue
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"has step {step!r} (expected a positive integer)"
        if base == "*":
            continue
        start, dash, end = base.partition("-")
        first = value(start)
        last = value(end) if dash else first
        if first is None or last is None:
            return f"has {base!r} (expected numbers {low}-{high}" + (
                f" or names {'/'.join(names)}" if names else "") + ")"
        if not (low <= first <= high and low <= last <= high):
            return f"has {base!r} outside {low}-{high}"
        if first > last:
            return f"has the empty range {base!r}"
    return ""


# === connection =============================================================================


def check_host(host: str, *, token: str | None = None, timeout: float = 10.0) -> dict:
    """GET healthz once; raise DeployError naming the host for refusal, DNS or auth failure."""
    if not re.match(r"^https?://", host or ""):
        raise _error(f"host {host!r} is invalid: expected an http:// or https:// URL of the "
                     "Kubeflow Pipelines API or UI (e.g. http://localhost:8080 after "
                     "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)")
    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(host, exc.code, "healthz") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _error(f"Kubeflow Pipelines at {host} is unreachable ({reason}); check the URL "
                     "and that the API is reachable (port-forward, IAP or ingress)") from None
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise _error(f"{url} did not answer JSON: is {host} a Kubeflow Pipelines "
                     "endpoint?") from None


def _http_error(host: str, status: int | None, what: str) -> Exception:
    if status in (401, 403):
        kind = "authentication failed" if status == 401 else "permission denied"
        return _error(f"{kind} (HTTP {status}) at {host} while calling {what}: pass a valid "
                      "--token (e.g. `gcloud auth print-identity-token`) or use an endpoint "
                      "your identity may use")
    if status == 409:
        return _error(f"{what} at {host} conflicts with an existing object (HTTP 409): choose "
                      "another name (--version-name)")
    if status == 404:
        return _error(f"{host} answered 404 for {what}: is it a Kubeflow Pipelines v2 "
                      "endpoint (API paths /apis/v2beta1/...)?")
    return _error(f"Kubeflow Pipelines at {host} failed {what} with HTTP {status}")


def connect(host: str, *, token: str | None = None, namespace: str | None = None) -> Any:
    """A kfp.Client for the host, after a healthz preflight."""
    import warnings

    import kfp

    check_host(host, token=token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0-beta.2"
        return kfp.Client(host=host, existing_token=token, namespace=namespace or "kubeflow")


def _call(host: str, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one client call; map HTTP and network failures to one-line DeployErrors. kfp.Client
    prints its "... details: URL" links; they go to stderr, so stdout stays the CLI's own (the
    JSON of `submit --json`)."""
    import contextlib
    import sys

    import kfp_server_api
    import urllib3

    try:
        with contextlib.redirect_stdout(sys.stderr):
            return func(*args, **kwargs)
    except kfp_server_api.ApiException as exc:
        raise _http_error(host, exc.status, what) from None
    except urllib3.exceptions.HTTPError as exc:
        raise _error(f"Kubeflow Pipelines at {host} became unreachable during {what}: "
                     f"{exc}") from None


# === upload, run, schedule ==================================================================


def default_version_name(package_path: str) -> str:
    """`<code version in the package's images>-<UTC time>`: unique per upload."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S-%f")
    return f"{package_code_version(package_path) or 'dev'}-{stamp}"


def package_info(package_path: str) -> dict[str, Any]:
    """Name and images of a compiled pipeline YAML."""
    import yaml  # a kfp dependency

    if not os.path.exists(package_path):
        raise _error(f"pipeline package {package_path!r} does not exist; run `mu2net compile` "
                     "first")
    with open(package_path) as fh:
        docs = list(yaml.safe_load_all(fh))
    spec = docs[0]
    images = sorted({e["container"]["image"]
                     for e in spec["deploymentSpec"]["executors"].values()})
    return {"name": spec["pipelineInfo"]["name"], "images": images,
            "inputs": sorted(spec["root"].get("inputDefinitions", {}).get("parameters", {}))}


def package_code_version(package_path: str) -> str:
    tags = {image.rsplit(":", 1)[-1] for image in package_info(package_path)["images"]
            if ":" in image.rsplit("/", 1)[-1]}
    return tags.pop() if len(tags) == 1 else ""


def upload(client: Any, host: str, package_path: str, *, pipeline_name: str | None = None,
           version_name: str | None = None, description: str = "") -> dict[str, str]:
    """Upload the package as a new version of its pipeline (created on first upload)."""
    info = package_info(package_path)
    name = pipeline_name or info["name"]
    version = version_name or default_version_name(package_path)
    pipeline_id = _call(host, "list pipelines", client.get_pipeline_id, name)
    if pipeline_id is None:
        pipeline = _call(host, "upload pipeline", client.upload_pipeline, package_path,
                         pipeline_name=name, description=description or None)
        pipeline_id = pipeline.pipeline_id
    created = _call(host, "upload pipeline version", client.upload_pipeline_version,
                    package_path, pipeline_version_name=version, pipeline_id=pipeline_id,
                    description=description or None)
    return {"pipeline_id": pipeline_id, "pipeline_name": name,
            "version_id": created.pipeline_version_id, "version_name": version}


def _check_params(package_path: str, params: dict[str, Any]) -> None:
    inputs = package_info(package_path)["inputs"]
    unknown = sorted(set(params) - set(inputs))
    if unknown:
        raise _error(f"pipeline parameters {unknown} are invalid: the pipeline takes {inputs}")


def _upload_into_experiment(host: str, package_path: str, params: dict[str, Any], *,
                            experiment: str, pipeline_name: str | None,
                            version_name: str | None, token: str | None,
                            namespace: str | None) -> tuple[Any, dict[str, str], Any]:
    """Check the run parameters, connect, upload a new version, get the experiment."""
    _check_params(package_path, params)
    client = connect(host, token=token, namespace=namespace)
    uploaded = upload(client, host, package_path, pipeline_name=pipeline_name,
                      version_name=version_name)
    exp = _call(host, "create experiment", client.create_experiment, experiment,
                namespace=namespace)
    return client, uploaded, exp


def submit(host: str, package_path: str, *, params: dict[str, Any] | None = None,
           run_name: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
           pipeline_name: str | None = None, version_name: str | None = None,
           token: str | None = None, namespace: str | None = None,
           service_account: str | None = None) -> dict[str, str]:
    """Upload a new pipeline version and start one run of it."""
    params = dict(params or {})
    client, uploaded, exp = _upload_into_experiment(
        host, package_path, params, experiment=experiment, pipeline_name=pipeline_name,
        version_name=version_name, token=token, namespace=namespace)
    name = run_name or f"{uploaded['pipeline_name']}-{params.get('task_spec', 'next')}"
    run = _call(host, "create run", client.run_pipeline, experiment_id=exp.experiment_id,
                job_name=name, params=params, pipeline_id=uploaded["pipeline_id"],
                version_id=uploaded["version_id"], service_account=service_account)
    return {**uploaded, "experiment_id": exp.experiment_id, "run_id": run.run_id,
            "run_url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}


def schedule(host: str, package_path: str, *, cron: str, params: dict[str, Any] | None = None,
             name: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
             pipeline_name: str | None = None, version_name: str | None = None,
             token: str | None = None, namespace: str | None = None,
             service_account: str | None = None) -> dict[str, str]:
    """Upload a new pipeline version and create a recurring run of it: one run at a time, no
    backfill of missed slots, each run onboarding the next queued task (task_spec "next").

    It replaces the experiment's recurring runs of the same name (an upgrade re-runs
    `schedule`): the new one is created first, then the old ones are deleted, so a failure
    half-way leaves a schedule running, never none, and re-running converges on one."""
    cron = validate_cron(cron)
    params = {"task_spec": "next", **(params or {})}
    client, uploaded, exp = _upload_into_experiment(
        host, package_path, params, experiment=experiment, pipeline_name=pipeline_name,
        version_name=version_name, token=token, namespace=namespace)
    job = name or f"{uploaded['pipeline_name']}-recurring"
    previous = recurring_runs_named(client, host, exp.experiment_id, job)
    recurring = _call(host, "create recurring run", client.create_recurring_run,
                      experiment_id=exp.experiment_id, job_name=job, cron_expression=cron,
                      max_concurrency=1, no_catchup=True, params=params,
                      pipeline_id=uploaded["pipeline_id"], version_id=uploaded["version_id"],
                      enabled=True, service_account=service_account)
    replaced = [rr for rr in previous if rr != recurring.recurring_run_id]
    for old in replaced:
        _call(host, f"delete recurring run {old}", client.delete_recurring_run, old)
    return {**uploaded, "experiment_id": exp.experiment_id,
            "recurring_run_id": recurring.recurring_run_id, "cron": cron,
            "replaced": replaced}


def recurring_runs_named(client: Any, host: str, experiment_id: str, name: str) -> list[str]:
    """Ids of the experiment's recurring runs called `name`, every page read. The name is
    also compared here, so a server that ignores the display_name filter cannot make
    `schedule` delete another schedule."""
    wanted = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                         "string_value": name}]})
    ids, token = [], ""
    while True:
        page = _call(host, "list recurring runs", client.list_recurring_runs,
                     page_token=token, page_size=100, experiment_id=experiment_id,
                     filter=wanted)
        ids += [rr.recurring_run_id for rr in page.recurring_runs or []
                if rr.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return ids
