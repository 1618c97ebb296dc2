"""The real kfp.Client against a loopback server recording the v2beta1 requests: upload as a new
version, one run, a recurring run (max_concurrency=1, no_catchup), and the error paths."""

import json
import socket
import sys

import pytest
import yaml

from mu2net.errors import DeployError
from pipelines import client
from pipelines.onboard_task import compile_pipeline

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fake_kfp_api import FakeKfpApi  # noqa: E402

IMAGES = {"image": "reg.example/mu2net-gpu:0.3.0-g1234", "light_image":
          "reg.example/mu2net-cpu:0.3.0-g1234"}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "onboard-testing-gpu.yaml"
    return compile_pipeline("testing", "gpu", str(out), **IMAGES)


def _spec_of(upload_body: bytes) -> dict:
    text = upload_body.decode(errors="replace")
    start = text.index("# PIPELINE DEFINITION")
    end = text.index("\r\n--", start)
    return list(yaml.safe_load_all(text[start:end]))[0]


def test_submit_uploads_a_new_version_and_starts_a_run(package):
    with FakeKfpApi() as api:
        out = client.submit(api.host, package, params={"task_spec": "demo:mnist_5k", "seed": 3},
                            run_name="onboard-mnist")
        again = client.submit(api.host, package, params={"task_spec": "demo:digits"},
                              version_name="second")
    assert out["pipeline_name"] == "onboard-testing-gpu"
    assert out["version_name"].startswith("0.3.0-g1234-")  # the images' code version
    # first submit created the pipeline, the second only a version of it
    assert len(api.calls("POST", "/apis/v2beta1/pipelines/upload")) == 1
    versions = api.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert [v.query["name"][0] for v in versions][1] == "second"
    assert {v.query["pipelineid"][0] for v in versions} == {out["pipeline_id"]}
    assert again["pipeline_id"] == out["pipeline_id"]
    # the uploaded bytes are the compiled pipeline
    assert _spec_of(api.uploads[0])["pipelineInfo"]["name"] == "onboard-testing-gpu"
    run = api.calls("POST", "/apis/v2beta1/runs")[0].body
    assert run["display_name"] == "onboard-mnist"
    assert run["pipeline_version_reference"] == {"pipeline_id": out["pipeline_id"],
                                                 "pipeline_version_id": out["version_id"]}
    assert run["runtime_config"]["parameters"] == {"task_spec": "demo:mnist_5k", "seed": 3}
    assert run["experiment_id"] == out["experiment_id"]
    assert len(api.experiments) == 1  # the experiment is reused
    assert out["run_url"].endswith("/#/runs/details/run-1")


def test_schedule_creates_one_recurring_run_without_catchup(package):
    with FakeKfpApi() as api:
        out = client.schedule(api.host, package, cron="0 0 3 * * *",
                              params={"store_uri": "gs://b/store"}, name="nightly")
    body = api.calls("POST", "/apis/v2beta1/recurringruns")[0].body
    assert body["max_concurrency"] in (1, "1")
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["display_name"] == "nightly"
    assert body["runtime_config"]["parameters"] == {"task_spec": "next",
                                                    "store_uri": "gs://b/store"}
    assert body["pipeline_version_reference"]["pipeline_version_id"] == out["version_id"]
    assert out["recurring_run_id"] == "rr-1"
    assert not api.calls("POST", "/apis/v2beta1/runs")


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "*/30 * * * * *", "0 15 10 ? * MON-FRI",
                                  "0 0 0 1,15 JAN-JUN *", "@daily", "@every 6h30m"])
def test_valid_cron_expressions(cron):
    assert client.validate_cron(cron) == cron


@pytest.mark.parametrize("cron, message", [
    ("0 3 * * *", "it has 5 fields"),
    ("61 0 3 * * *", "second field '61' has '61' outside 0-59"),
    ("0 0 25 * * *", "hour field '25'"),
    ("0 0 3 * FOO *", "month field 'FOO'"),
    ("0 0 3 ? * *", None),
    ("0 0 3 * * 1/0", "step '0'"),
    ("0 0 5-3 * * *", "empty range"),
    ("@every soon", "Go duration"),
    ("", "it has 1 fields"),
])
def test_invalid_cron_is_refused_before_any_request(package, cron, message):
    if message is None:
        assert client.validate_cron(cron)
        return
    with FakeKfpApi() as api:
        with pytest.raises(DeployError, match="cron expression") as info:
            client.schedule(api.host, package, cron=cron)
    assert message in str(info.value)
    assert api.requests == []


def test_unreachable_host_is_one_clear_error(package):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeployError, match=rf"at http://127.0.0.1:{port} is unreachable"):
        client.submit(f"http://127.0.0.1:{port}", package)
    with pytest.raises(DeployError, match="host 'localhost:8080' is invalid"):
        client.submit("localhost:8080", package)


@pytest.mark.parametrize("status, words", [(401, "authentication failed (HTTP 401)"),
                                           (403, "permission denied (HTTP 403)")])
def test_auth_failure_at_healthz(package, status, words):
    with FakeKfpApi(fail={"/apis/v2beta1/healthz": status}) as api:
        with pytest.raises(DeployError) as info:
            client.submit(api.host, package, token="expired")
    assert words in str(info.value) and "--token" in str(info.value)
    assert api.requests[0].headers["authorization"] == "Bearer expired"
    assert len(api.requests) == 1  # no 25 s of kfp.Client healthz retries


def test_permission_denied_on_upload_through_kfp_client(package):
    with FakeKfpApi(fail={"/apis/v2beta1/pipelines/upload": 403}) as api:
        with pytest.raises(DeployError, match=r"permission denied \(HTTP 403\) .* upload "
                                              "pipeline"):
            client.submit(api.host, package, token="t")
    # the real client sent the token too
    upload = api.calls("POST", "/apis/v2beta1/pipelines/upload")[0]
    assert upload.headers["authorization"] == "Bearer t"


def test_unknown_parameters_and_missing_package(package, tmp_path):
    with FakeKfpApi() as api:
        with pytest.raises(DeployError, match=r"pipeline parameters \['task'\] are invalid"):
            client.submit(api.host, package, params={"task": "x"})
        with pytest.raises(DeployError, match="does not exist; run `mu2net compile`"):
            client.submit(api.host, str(tmp_path / "missing.yaml"))
    assert api.requests == []


def test_package_info_reads_name_images_and_inputs(package):
    info = client.package_info(package)
    assert info["name"] == "onboard-testing-gpu"
    assert info["images"] == sorted(IMAGES.values())
    assert "task_spec" in info["inputs"]
    assert client.package_code_version(package) == "0.3.0-g1234"
    assert json.dumps(info)


@pytest.mark.parametrize("flags, expected", [
    (["--store-uri", "gs://b/other"], "gs://b/other"),
    (["--store", "gs://b/store"], "gs://b/store"),
    (["--store", "gs://b/store", "--store-uri", "gs://b/other"], "gs://b/other"),
])
def test_cli_submit_sends_the_store_uri_it_is_given(package, flags, expected, capsys):
    from mu2net.cli import main

    with FakeKfpApi() as api:
        main(["submit", "--host", api.host, "--package", package, "--task", "demo:digits",
              *flags])
    run = api.calls("POST", "/apis/v2beta1/runs")[0].body
    assert run["runtime_config"]["parameters"]["store_uri"] == expected
    assert "run run-1" in capsys.readouterr().out


def test_cli_submit_passes_a_data_dir_for_tfds_sources(package):
    from mu2net.cli import main

    with FakeKfpApi() as api:
        main(["submit", "--host", api.host, "--package", package, "--task", "tfds:cifar10",
              "--data-dir", "gs://b/tensorflow_datasets"])
    params = api.calls("POST", "/apis/v2beta1/runs")[0].body["runtime_config"]["parameters"]
    assert params == {"task_spec": "tfds:cifar10", "data_dir": "gs://b/tensorflow_datasets"}


def test_schedule_twice_leaves_one_recurring_run(package):
    """An upgrade re-runs `schedule`: the second call replaces the first recurring run of the
    same name (created first, then the old one deleted), and leaves other schedules alone."""
    with FakeKfpApi() as api:
        other = client.schedule(api.host, package, cron="@hourly", name="other")
        first = client.schedule(api.host, package, cron="0 0 3 * * *", name="nightly")
        second = client.schedule(api.host, package, cron="0 0 4 * * *", name="nightly")
        third = client.schedule(api.host, package, cron="0 0 4 * * *", name="nightly")
    assert first["replaced"] == [] and other["replaced"] == []
    assert second["replaced"] == [first["recurring_run_id"]]
    assert third["replaced"] == [second["recurring_run_id"]]
    # what the API holds now: one "nightly" (the last), and "other" untouched
    by_name = sorted((rr["display_name"], rr["recurring_run_id"])
                     for rr in api.recurring_runs.values())
    assert by_name == [("nightly", third["recurring_run_id"]),
                       ("other", other["recurring_run_id"])]
    # the client listed the experiment's recurring runs by name and deleted by id
    lists = api.calls("GET", "/apis/v2beta1/recurringruns")
    assert {q.query["experiment_id"][0] for q in lists} == {first["experiment_id"]}
    assert "nightly" in lists[-1].query["filter"][0]
    deleted = [r.path.rsplit("/", 1)[-1] for r in api.requests if r.method == "DELETE"]
    assert deleted == [first["recurring_run_id"], second["recurring_run_id"]]
    created = [r.body["display_name"] for r in api.calls("POST", "/apis/v2beta1/recurringruns")]
    assert created == ["other", "nightly", "nightly", "nightly"]


def test_schedule_finds_duplicates_on_every_page(package):
    """More recurring runs than one list page: every old one of the name is deleted."""
    with FakeKfpApi() as api:
        for _ in range(3):
            client.schedule(api.host, package, cron="@daily", name="nightly")
        # simulate duplicates left by older code (it never deleted): 150 more of the name
        template = dict(next(iter(api.recurring_runs.values())))
        for i in range(150):
            rr_id = f"rr-old-{i}"
            api.recurring_runs[rr_id] = {**template, "recurring_run_id": rr_id}
        out = client.schedule(api.host, package, cron="@daily", name="nightly")
    assert len(out["replaced"]) == 151
    assert list(api.recurring_runs) == [out["recurring_run_id"]]


def test_compile_bakes_the_data_dir_as_the_run_forms_default(tmp_path):
    """`mu2net compile --data-dir` sets the data_dir parameter's default, as --store does for
    store_uri: scheduled and UI runs get it without being told."""
    from mu2net.cli import main

    main(["compile", "--config", "testing", "--target", "cpu", "--out", str(tmp_path),
          "--image", "img:1", "--store", "gs://b/store", "--data-dir", "gs://b/tfds"])
    (path,) = tmp_path.glob("*.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["data_dir"]["defaultValue"] == "gs://b/tfds"
    assert params["store_uri"]["defaultValue"] == "gs://b/store"
    # the ingest step also gets it as the compiled default, to tell it from an explicit value
    ingest = spec["root"]["dag"]["tasks"]["ingest-task"]["inputs"]["parameters"]
    assert ingest["default_data_dir"]["runtimeValue"]["constant"] == "gs://b/tfds"


def test_cli_schedule_compiles_with_its_data_dir(tmp_path):
    """`schedule --data-dir` without --package bakes the folder into the package it uploads
    and passes it as the run parameter."""
    from mu2net.cli import main

    with FakeKfpApi() as api:
        main(["schedule", "--host", api.host, "--config", "testing", "--target", "cpu",
              "--image", "img:1", "--cron", "@daily", "--data-dir", "gs://b/tfds",
              "--store", "gs://b/store"])
    spec = _spec_of(api.uploads[0])
    assert spec["root"]["inputDefinitions"]["parameters"]["data_dir"]["defaultValue"] == \
        "gs://b/tfds"
    body = api.calls("POST", "/apis/v2beta1/recurringruns")[0].body
    assert body["runtime_config"]["parameters"]["data_dir"] == "gs://b/tfds"


def test_cli_submit_and_schedule_print_json_with_the_run_ids(package, capsys, monkeypatch):
    """`--json` for scripts; the host from KF_PIPELINES_ENDPOINT, as kfp.Client reads it."""
    from mu2net.cli import main

    with FakeKfpApi() as api:
        monkeypatch.setenv("KF_PIPELINES_ENDPOINT", api.host)
        assert main(["submit", "--package", package, "--task", "demo:digits", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["run_id"] == "run-1" and doc["parameters"] == {"task_spec": "demo:digits"}
        assert main(["schedule", "--package", package, "--cron", "@daily", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["recurring_run_id"].startswith("rr-") and doc["cron"] == "@daily"
