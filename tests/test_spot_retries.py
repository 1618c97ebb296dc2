"""Retries cover what a Spot node does to a pod, and only that.

The overlay (manifests/kfp, rendered against the vendored KFP 2.17.0 base) sets the workflow
controller's `workflowDefaults` and TRANSIENT_ERROR_PATTERN; the compiled pipeline gives each
training step an IR retry policy. What decides a retry on a cluster is Argo's merge of the two
and its retry decision, ported in tests/argo_semantics.py with the Go sources cited.
"""

import os
import pathlib
import subprocess

import pytest
import yaml
from argo_semantics import (
    ERROR,
    FAILED,
    effective_template,
    is_retried,
    kfp_retry_strategy,
    retry_policy_actual,
)
from kfp import compiler

from pipelines.onboard_task import build_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENDORED_RENDER = ROOT.parent / "shared" / "vendor" / "render-offline.sh"

# What a Spot VM going away does to a pod, as the node message Argo records (the pod's
# status.message, else Argo's own): kubelet graceful node shutdown (how GKE stops a Spot VM),
# its admission refusal while shutting down, kubelet critical-pod preemption, node-pressure
# eviction, the pod deleted (drain, scheduler preemption, node deleted), the pod dying around a
# still-running main container.
SPOT_FAILURES = [
    (FAILED, "Pod was terminated in response to imminent node shutdown."),
    (FAILED, "Pod was rejected: Pod was rejected as the node is shutting down."),
    (FAILED, "Preempted in order to admit critical pod"),
    (FAILED, "The node was low on resource: memory. Threshold quantity: 100Mi, available: 0."),
    (FAILED, "Pod was rejected: Allocate failed due to requested number of devices unavailable "
             "for nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected"),
    (ERROR, "pod deleted"),
    (FAILED, "pod failed: neither main nor wait container completed successfully"),
]
# Deterministic failures: retrying burns GPU hours to fail the same way.
DETERMINISTIC_FAILURES = [
    (FAILED, "main: Error (exit code 1)"),  # a Python exception (KFP writes no termination msg)
    (FAILED, "main: Error (exit code 1): ConfigError: task_spec 'tfds:nope' is invalid"),
    (FAILED, "main: OOMKilled (exit code 137)"),  # OOM at a fixed config: deterministic
    (FAILED, "Pod was active on the node longer than the specified deadline"),  # hung step
]


def render_kfp_overlay() -> list[dict]:
    if not VENDORED_RENDER.exists() and os.environ.get("CI") != "true":  # CI fails instead
        pytest.skip("../shared/vendor (the exact upstream KFP 2.17.0 manifests) is absent")
    out = subprocess.run(["bash", str(VENDORED_RENDER), str(ROOT / "manifests" / "kfp")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr.strip()[-2000:]
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def controller_settings(docs: list[dict]) -> tuple[dict, str]:
    """(workflowDefaults, TRANSIENT_ERROR_PATTERN) of the rendered workflow controller."""
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"] == "workflow-controller-configmap"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"
                     and d["metadata"]["name"] == "workflow-controller"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "workflow-controller"]
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    return yaml.safe_load(configmap["data"]["workflowDefaults"]), env.get(
        "TRANSIENT_ERROR_PATTERN", "")


def training_retry_policy(tmp_path) -> dict:
    """The IR retry policy of a training child of the gpu pipeline, as `mu2net compile`
    writes it."""
    out = tmp_path / "onboard-gpu-gpu.yaml"
    compiler.Compiler().compile(build_pipeline("gpu", "gpu", "mu2net-gpu:1",
                                               light_image="mu2net-cpu:1"), str(out))
    spec = next(yaml.safe_load_all(out.read_text()))
    tasks = {name: task for comp in spec["components"].values() if "dag" in comp
             for name, task in comp["dag"]["tasks"].items()}
    trains = [t for name, t in tasks.items() if name.startswith("train-child")]
    assert trains, sorted(tasks)
    return trains[0]["retryPolicy"]


@pytest.fixture(scope="module")
def effective(tmp_path_factory):
    """(the training step's effective retryStrategy on the cluster, the transient pattern)."""
    defaults, pattern = controller_settings(render_kfp_overlay())
    policy = training_retry_policy(tmp_path_factory.mktemp("compiled"))
    template = {"name": "retry-system-container-impl", "container": {"image": "launcher"},
                "retryStrategy": kfp_retry_strategy(policy)}
    # KFP 2.17.0's Workflow sets no templateDefaults (argo.go Compile; COMPILED_PIPELINE_SPEC
    # _PATCH defaults to "{}"), so the controller's defaults are the only ones merged.
    workflow_spec = {"entrypoint": "entrypoint", "templates": [template]}
    merged = effective_template(workflow_spec, defaults, template)
    return merged["retryStrategy"], pattern, policy


def test_the_training_step_retries_on_transient_errors_with_its_own_limit(effective):
    strategy, pattern, policy = effective
    assert retry_policy_actual(strategy) == "OnTransientError"
    assert strategy["limit"] == str(policy["maxRetryCount"]) == "3"  # the step's, not '2'
    assert strategy["backoff"] == {"duration": "60", "factor": "2.0", "maxDuration": "3600"}
    assert pattern  # OnTransientError without a pattern would retry only network errors


@pytest.mark.parametrize("phase,message", SPOT_FAILURES)
def test_what_a_spot_node_does_to_a_pod_is_retried(effective, phase, message):
    strategy, pattern, _ = effective
    assert is_retried(strategy, phase, message, pattern), message


@pytest.mark.parametrize("phase,message", DETERMINISTIC_FAILURES)
def test_a_bad_input_an_oom_and_a_hung_step_are_not_retried(effective, phase, message):
    strategy, pattern, _ = effective
    assert not is_retried(strategy, phase, message, pattern), message


def test_the_kfp_base_alone_would_not_retry_a_node_shutdown():
    """Why the overlay sets the policy: the base's `OnError` never retries a Failed node, and
    KFP compiles no policy of its own, so a preempted child failed the whole run."""
    base = {"limit": "2", "retryPolicy": "OnError"}  # third-party/argo/base/...-patch.yaml
    template = {"retryStrategy": kfp_retry_strategy({"maxRetryCount": 3})}
    strategy = effective_template({}, {"spec": {"templateDefaults": {"retryStrategy": base}}},
                                  template)["retryStrategy"]
    assert retry_policy_actual(strategy) == "OnError"
    shutdown = SPOT_FAILURES[0]
    assert not is_retried(strategy, *shutdown, "(?i)node shutdown")
    # and with no defaults at all Argo's own default, OnFailure, retries every Python error
    bare = effective_template({}, {}, template)["retryStrategy"]
    assert is_retried(bare, *DETERMINISTIC_FAILURES[1])


def test_our_pattern_extends_the_kfp_bases():
    base_patch = (ROOT.parent / "shared" / "vendor" / "kubeflow-pipelines-2.17.0" / "manifests"
                  / "kustomize" / "third-party" / "argo" / "base"
                  / "workflow-controller-deployment-patch.yaml")
    if not base_patch.exists():
        pytest.skip("../shared/vendor is absent")
    env = yaml.safe_load(base_patch.read_text())["spec"]["template"]["spec"]["containers"][0]
    base = {e["name"]: e["value"] for e in env["env"]}["TRANSIENT_ERROR_PATTERN"].strip()
    _, ours = controller_settings(render_kfp_overlay())
    alternatives = base.removeprefix("(?i)(").removesuffix(")").split("|")
    for alternative in alternatives:  # each of the base's alternatives still matches
        assert is_retried({"retryPolicy": "OnTransientError"}, FAILED, f"x {alternative} y", ours)
