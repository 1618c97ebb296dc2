"""The multi-user overlay (manifests/kubeflow-profile): a profile namespace's `default-editor`
gets Workload Identity and its `kfp-launcher` a gs:// pipeline root; it renders with
`kubectl kustomize`, validates strictly, follows its parameters, and agrees with what the
vendored KFP 2.17.0 multi-user install does and with the CLI's `--namespace`."""

import pathlib
import shutil
import sys

import yaml
from test_manifests import by_kind, needs_vendored_base, render, validate_all

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fake_kfp_api import FakeKfpApi  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROFILE = ROOT / "manifests" / "kubeflow-profile"
MULTI_USER = (ROOT.parent / "shared" / "vendor" / "kubeflow-pipelines-2.17.0" / "manifests" /
              "kustomize" / "base" / "installs" / "multi-user")
WI = "iam.gke.io/gcp-service-account"


def test_the_profile_overlay_renders_and_validates_strictly():
    docs = render(PROFILE)
    validate_all(docs)
    objects = by_kind(docs)
    assert set(objects) == {("ServiceAccount", "default-editor"), ("ConfigMap", "kfp-launcher")}
    for obj in docs:
        assert obj["metadata"]["namespace"] == "kubeflow-user-example-com"
    editor = objects[("ServiceAccount", "default-editor")]
    assert editor["metadata"]["annotations"][WI] == \
        "mu2net-pipelines@PROJECT_ID.iam.gserviceaccount.com"
    root = objects[("ConfigMap", "kfp-launcher")]["data"]["defaultPipelineRoot"]
    assert root == "gs://PROJECT_ID-mu2net/pipeline-root/kubeflow-user-example-com"
    assert "set-by-params" not in yaml.safe_dump_all(docs)
    assert not [d for d in docs if d["kind"] == "Namespace"]  # the profile owns it


def test_the_profile_overlay_follows_its_parameters(tmp_path):
    copy = tmp_path / "kubeflow-profile"
    shutil.copytree(PROFILE, copy)
    params = copy / "params.yaml"
    params.write_text(params.read_text().replace("kubeflow-user-example-com", "team-a")
                      .replace("PROJECT_ID", "proj"))
    docs = render(copy)
    validate_all(docs)
    assert {d["metadata"]["namespace"] for d in docs} == {"team-a"}
    objects = by_kind(docs)
    assert objects[("ServiceAccount", "default-editor")]["metadata"]["annotations"][WI] == \
        "mu2net-pipelines@proj.iam.gserviceaccount.com"
    assert objects[("ConfigMap", "kfp-launcher")]["data"]["defaultPipelineRoot"] == \
        "gs://proj-mu2net/pipeline-root/team-a"


@needs_vendored_base
def test_what_the_overlay_relies_on_in_the_kfp_multi_user_install():
    # runs in a profile namespace run as default-editor unless a run names another KSA
    env = (MULTI_USER / "api-service" / "params.env").read_text().splitlines()
    assert "DEFAULTPIPELINERUNNERSERVICEACCOUNT=default-editor" in env
    # the profile controller creates the namespace's kfp-launcher (a minio:// root) and only
    # recreates it when deleted, so the root this overlay applies stays
    sync = (MULTI_USER / "pipelines-profile-controller" / "sync.py").read_text()
    assert '"name": "kfp-launcher"' in sync and '"defaultPipelineRoot": f"minio://' in sync
    decorator = yaml.safe_load((MULTI_USER / "pipelines-profile-controller" /
                                "decorator-controller.yaml").read_text())
    strategies = {a["resource"]: a["updateStrategy"]["method"]
                  for a in decorator["spec"]["attachments"]}
    assert strategies["configmaps"] == "OnDelete"


def test_cli_namespace_puts_the_experiment_in_the_profile_and_leaves_the_ksa_to_it(tmp_path):
    from mu2net.cli import main
    from pipelines.onboard_task import compile_pipeline

    package = compile_pipeline("testing", "gpu", str(tmp_path / "p.yaml"),
                               image="reg.example/mu2net-gpu:1", light_image="reg.example/c:1")
    namespace = by_kind(render(PROFILE))[("ConfigMap", "kfp-launcher")]["metadata"]["namespace"]
    with FakeKfpApi() as api:
        assert main(["submit", "--host", api.host, "--package", package, "--task",
                     "demo:digits", "--namespace", namespace]) == 0
    experiment = api.calls("POST", "/apis/v2beta1/experiments")[0].body
    assert experiment["namespace"] == namespace
    run = api.calls("POST", "/apis/v2beta1/runs")[0].body
    assert not run.get("service_account")  # the API server's default: default-editor
