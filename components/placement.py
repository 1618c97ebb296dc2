"""Where a pipeline task runs: one helper applies a node pool from the config.

A node pool (`mu2net.config.NodePool`, or a dict with the same fields) is data; `place` turns it
into KFP task settings: the accelerator resource (`nvidia.com/gpu` / `google.com/tpu`, which the
OSS KFP driver writes into `resources.limits`), GKE node selectors, `NoSchedule` tolerations for
the tainted accelerator pools, CPU/memory requests and limits, the pod's active deadline, the
retry count and backoff, and the non-root security context matching the images' user. Node
labels never appear inline in pipelines. Under `kfp.local` these settings are ignored with a
warning.

Which failures are retried is not decided here: KFP 2.17 compiles `set_retry` into an Argo
`retryStrategy` with a limit and a backoff but no policy, and the workflow controller's
`templateDefaults` supply it (manifests/components/spot-retries: `OnTransientError` with a
pattern). So a step is retried when a Spot node takes its pod away (node shutdown, preemption,
eviction, pod deletion), and not for a Python error, an OOM kill or its own deadline
(tests/test_spot_retries.py). Under the KFP base alone (`OnError`) none of a Spot node's
failures would be retried.

GKE facts this relies on (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus and
.../tpus): GPU pools are labelled `cloud.google.com/gke-accelerator=<gpu>` and tainted
`nvidia.com/gpu=present:NoSchedule`; TPU pools are labelled
`cloud.google.com/gke-tpu-accelerator=<type>` and `cloud.google.com/gke-tpu-topology=<AxB>` and
tainted `google.com/tpu=present:NoSchedule`.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from kfp import dsl, kubernetes

IMAGE_UID = 1000  # the `mu2net` user created in images/*.Dockerfile


def pool_fields(pool: Any) -> dict[str, Any]:
    """The node pool as a plain dict (accepts a NodePool dataclass or a mapping)."""
    if dataclasses.is_dataclass(pool) and not isinstance(pool, type):
        fields = dataclasses.asdict(pool)
    elif isinstance(pool, Mapping):
        fields = dict(pool)
    else:
        raise TypeError(f"node pool {pool!r} is invalid: expected a NodePool or a mapping")
    fields.setdefault("node_selectors", ())
    fields.setdefault("toleration_keys", ())
    fields["node_selectors"] = [tuple(kv) for kv in fields["node_selectors"]]
    return fields


def check_pool(fields: Mapping[str, Any]) -> None:
    """Refuse a pool whose accelerator, selectors and kind disagree (a GPU pod without the
    GPU selector would wait forever for a node that cannot come)."""
    from mu2net.config import GKE_POOL_LABELS  # the one table of GKE's resources and labels

    kind = fields.get("kind", "cpu")
    if kind not in GKE_POOL_LABELS:
        raise ValueError(f"node pool kind {kind!r} is invalid: expected one of "
                         f"{list(GKE_POOL_LABELS)}")
    resource, selectors = GKE_POOL_LABELS[kind]
    accel = fields.get("accelerator_type", "")
    count = int(fields.get("accelerator_count", 0))
    if accel != resource:
        raise ValueError(f"node pool kind {kind!r} needs accelerator_type {resource!r}, got "
                         f"{accel!r}")
    if (kind == "cpu") != (count == 0):
        raise ValueError(f"node pool kind {kind!r} has accelerator_count={count}: expected "
                         f"{'0' if kind == 'cpu' else '>= 1'}")
    keys = [k for k, _ in fields["node_selectors"]]
    for key in selectors:
        if key not in keys:
            raise ValueError(f"node pool kind {kind!r} lacks node selector {key!r}; it has "
                             f"{keys}")
    if kind != "cpu" and resource not in fields["toleration_keys"]:
        raise ValueError(f"node pool kind {kind!r} lacks a toleration for the {resource!r} "
                         f"taint; it has {list(fields['toleration_keys'])}")


def place(task: dsl.PipelineTask, pool: Any, *, retry_backoff: str = "60s",
          run_as_non_root: bool = True) -> dsl.PipelineTask:
    """Apply a node pool to a task and return the task (chainable).

    Args:
        task: The pipeline task.
        pool: A `mu2net.config.NodePool` or a dict with its fields.
        retry_backoff: Wait before the first retry (doubles each retry); a reclaimed Spot node
            needs a minute to be replaced, tests pass "0s".
        run_as_non_root: Set the pod's security context to the images' non-root user.
    """
    fields = pool_fields(pool)
    check_pool(fields)
    if fields.get("accelerator_type"):
        task.set_accelerator_type(fields["accelerator_type"])
        task.set_accelerator_limit(int(fields["accelerator_count"]))
    for key, value in fields["node_selectors"]:
        kubernetes.add_node_selector(task, key, value)
    for key in fields["toleration_keys"]:
        kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
    if fields.get("cpu_request"):
        task.set_cpu_request(str(fields["cpu_request"]))
    if fields.get("memory_request"):
        task.set_memory_request(str(fields["memory_request"]))
    if fields.get("cpu_limit"):
        task.set_cpu_limit(str(fields["cpu_limit"]))
    if fields.get("memory_limit"):
        task.set_memory_limit(str(fields["memory_limit"]))
    if int(fields.get("timeout_s", 0)) > 0:
        kubernetes.set_timeout(task, int(fields["timeout_s"]))
    if int(fields.get("retries", 0)) > 0:
        task.set_retry(num_retries=int(fields["retries"]), backoff_duration=retry_backoff,
                       backoff_factor=2.0)
    if run_as_non_root:
        kubernetes.set_security_context(task, run_as_user=IMAGE_UID, run_as_group=IMAGE_UID,
                                        run_as_non_root=True)
    return task
