"""What KFP 2.17.0 and Argo Workflows v4.0.5 do with a compiled task, ported to Python for tests
(no cluster here). Each function names the upstream Go it follows; keep them line-for-line
faithful and change them only against that source (kubeflow/pipelines tag 2.17.0,
argoproj/argo-workflows tag v4.0.5).
"""

from __future__ import annotations

import copy
import re
from typing import Any

# Argo node phases (pkg/apis/workflow/v1alpha1/workflow_types.go, NodePhase)
FAILED, ERROR = "Failed", "Error"
POLICIES = ("Always", "OnFailure", "OnError", "OnTransientError")


def kfp_retry_strategy(retry_policy: dict[str, Any]) -> dict[str, Any]:
    """The Argo `retryStrategy` KFP 2.17.0 puts on a task's executor template, as JSON.

    backend/src/v2/compiler/argocompiler/container.go: addContainerExecutorTemplate sets
    `executor.RetryStrategy = getTaskRetryStrategyFromInput(...)` when the task has an IR
    `retryPolicy`; getTaskRetryStrategyFromInput builds `Limit` and `Backoff{Factor,
    MaxDuration, Duration}` from the template's input parameters, never `RetryPolicy`,
    `Expression` or `Affinity`. getTaskRetryParametersWithValues gives those parameters the
    IR's maxRetryCount, backoff seconds, factor and max seconds; they are shown here
    substituted (Argo resolves `{{inputs.parameters.*}}` before it reads the strategy).
    `omitempty` drops the unset fields from the JSON the merge sees.
    """
    def seconds(duration: str) -> str:
        return str(int(float(duration.rstrip("s"))))  # Duration.Seconds, an int64

    backoff: dict[str, Any] = {"factor": str(retry_policy.get("backoffFactor", 0))}
    if "backoffMaxDuration" in retry_policy:
        backoff["maxDuration"] = seconds(retry_policy["backoffMaxDuration"])
    if "backoffDuration" in retry_policy:
        backoff["duration"] = seconds(retry_policy["backoffDuration"])
    return {"limit": str(retry_policy.get("maxRetryCount", 0)), "backoff": backoff}


def strategic_merge(original: Any, patch: Any) -> Any:
    """k8s.io/apimachinery strategicpatch.StrategicMergePatch(original, patch, wfv1.Template{})
    for the JSON shapes met here: maps merge key by key with the patch winning, a null in the
    patch deletes, scalars are replaced. Lists are refused: Argo's Template has merge-keyed
    lists, and no test here merges two lists (a retryStrategy has none)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        out = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(original, list) and isinstance(patch, list):
        raise NotImplementedError("list merge by patchMergeKey is not ported")
    return copy.deepcopy(patch)


def effective_template(workflow_spec: dict[str, Any], workflow_defaults: dict[str, Any],
                       template: dict[str, Any]) -> dict[str, Any]:
    """The template as the controller executes it.

    1. workflow/util/merge.go JoinWorkflowSpec -> MergeTo(patch=workflowDefaults, target=wf):
       `StrategicMergePatch(defaults, workflow)`, "if the target workflow defines a field,
       this takes precedence over the patch" (workflow/controller/operator.go setStoredWfSpec
       calls it with the controller's `workflowDefaults`).
    2. workflow/controller/operator.go mergedTemplateDefaultsInto: the merged spec's
       `templateDefaults` (type-specific fields of other template types unset) merged with the
       template by `StrategicMergePatch(defaults, template)`: the template wins field by field.
    """
    spec = strategic_merge(workflow_defaults.get("spec", {}), workflow_spec)
    defaults = spec.get("templateDefaults")
    if defaults is None:
        return copy.deepcopy(template)
    return strategic_merge(defaults, template)


def retry_policy_actual(strategy: dict[str, Any]) -> str:
    """pkg/apis/workflow/v1alpha1/workflow_types.go RetryStrategy.RetryPolicyActual: the
    explicit policy, else Always when an expression is given, else OnFailure."""
    if strategy.get("retryPolicy"):
        return strategy["retryPolicy"]
    return "OnFailure" if not strategy.get("expression") else "Always"


_NETWORK_SUBSTRINGS = ("Connection closed by foreign host", "net/http: TLS handshake timeout",
                       "i/o timeout", "connection timed out", "connection reset by peer",
                       "http2: client connection lost",
                       "http2: server sent GOAWAY and closed the connection",
                       "connect: connection refused", "invalid connection")
_ETCD_SUBSTRINGS = ("etcdserver: leader changed", "etcdserver: request timed out",
                    "etcdserver: too many requests")


def is_transient_message(message: str, transient_error_pattern: str) -> bool:
    """util/errors/errors.go isTransientErr(argoerrors.InternalError(message)), as
    processNodeRetries calls it.

    InternalError wraps the message in an argoerr whose Cause is a plain pkg/errors error with
    the same text (errors/errors.go), so the typed checks (apierr.IsForbidden, IsTooManyRequests,
    IsConflict, IsInternalError, IsServerTimeout, IsTimeout, IsServiceUnavailable, net error
    types, url.Error, ErrTransient) are all false; what is left are the substring checks of
    isTransientNetworkErr, isTransientEtcdErr, isTransientSqbErr and matchTransientErrPattern:
    `regexp.MatchString(TRANSIENT_ERROR_PATTERN, message)` (unanchored; an empty or unset
    pattern matches nothing).
    """
    if any(s in message for s in _NETWORK_SUBSTRINGS + _ETCD_SUBSTRINGS):
        return True
    if "upper: no more rows in" in message:
        return True
    if not transient_error_pattern:
        return False
    return re.search(transient_error_pattern, message) is not None


def is_retried(strategy: dict[str, Any], phase: str, message: str,
               transient_error_pattern: str = "") -> bool:
    """workflow/controller/operator.go processNodeRetries: whether a finished attempt of a
    node (phase Failed or Error, not daemoned, retries left, no shutdown or deadline, no
    expression) gets another attempt under `strategy`."""
    if phase not in (FAILED, ERROR):
        raise ValueError(f"phase {phase!r}: only Failed and Error nodes are retried")
    policy = retry_policy_actual(strategy)
    if policy == "Always":
        retry_on_failed, retry_on_error = True, True
    elif policy == "OnError":
        retry_on_failed, retry_on_error = False, True
    elif policy == "OnTransientError":
        transient = is_transient_message(message, transient_error_pattern)
        retry_on_failed, retry_on_error = transient, transient
    elif policy == "OnFailure":
        retry_on_failed, retry_on_error = True, False
    else:
        raise ValueError(f"{policy} is not a valid RetryPolicy")
    if (phase == FAILED and not retry_on_failed) or (phase == ERROR and not retry_on_error):
        return False  # "Node not set to be retried"
    return True


def workflow_deadline(started_at: float, active_deadline_seconds: int | None) -> float | None:
    """workflow/controller/operator.go getWorkflowDeadline: the Workflow's start (truncated to
    the second) plus spec.activeDeadlineSeconds; none without one."""
    if active_deadline_seconds is None:
        return None
    return float(int(started_at)) + active_deadline_seconds


def pod_outcome_at(now: float, deadline: float | None, pod_phase: str,
                   on_exit_handler: bool = False) -> str | None:
    """workflow/controller/exec_control.go applyExecutionControl: past the workflow deadline a
    Pending or Running pod that is not part of an onExit handler has its containers terminated
    and its node failed with "Step exceeded its deadline" (operator.go failNodesWithoutCreatedPods
    does the same to Pending nodes whose pod was never created). None: left alone."""
    if pod_phase not in ("Pending", "Running"):
        return None
    if deadline is not None and now > deadline and not on_exit_handler:
        return "Failed: Step exceeded its deadline"
    return None


def pod_active_deadline_exceeded(now: float, pod_start_time: float | None,
                                 active_deadline_seconds: int) -> bool:
    """Kubernetes pkg/kubelet/active_deadline.go pastActiveDeadline: a pod's own
    activeDeadlineSeconds counts from pod.Status.StartTime, which the kubelet sets when it
    accepts the pod on its node; an unscheduled (Pending) pod has none and never times out."""
    if pod_start_time is None:
        return False
    return now - pod_start_time >= active_deadline_seconds
