"""Where the pipeline's pods run: node pools per device target, and GKE's accelerator labels.
Data only; `components/placement.py` turns a pool into KFP task settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from mu2net.errors import ConfigError

TARGETS = ("cpu", "gpu", "tpu")


def _require(ok: bool, field_name: str, value: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: expected one of {list(TARGETS)}")


@dataclass(frozen=True)
class NodePool:
    """Where one training pod runs; applied to a KFP task by one placement helper."""

    kind: str = "cpu"  # cpu | gpu | tpu
    accelerator_type: str = ""  # Kubernetes extended resource: nvidia.com/gpu, google.com/tpu
    accelerator_count: int = 0
    node_selectors: tuple[tuple[str, str], ...] = ()
    toleration_keys: tuple[str, ...] = ()
    cpu_request: str = "1"
    memory_request: str = "4G"
    cpu_limit: str = ""
    memory_limit: str = ""
    timeout_s: int = 3600
    retries: int = 2  # preemptible nodes

    def __post_init__(self) -> None:
        _require(self.kind in TARGETS, "node_pool.kind", self.kind)


@dataclass(frozen=True)
class PlacementConfig:
    """Node pools per target; the target is chosen at compile time."""

    cpu: NodePool = field(default_factory=NodePool)
    gpu: NodePool = field(default_factory=lambda: gke_gpu_pool())
    tpu: NodePool = field(default_factory=lambda: gke_tpu_pool())
    # Light steps (ingest, start, plan, select, report) always run on CPU nodes; children and
    # the commit (the cycle's test-split inference) run on the target's pool.
    light: NodePool = field(default_factory=lambda: NodePool(cpu_request="1",
                                                             memory_request="2G",
                                                             timeout_s=1800, retries=3))

    def pool(self, target: str) -> NodePool:
        _require(target in TARGETS, "target", target)
        return getattr(self, target)


# GKE's accelerator resource and the node labels each pool kind must select on
# (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus and .../tpus); the pools are
# tainted `<resource>=present:NoSchedule`.
GKE_POOL_LABELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cpu": ("", ()),
    "gpu": ("nvidia.com/gpu", ("cloud.google.com/gke-accelerator",)),
    "tpu": ("google.com/tpu", ("cloud.google.com/gke-tpu-accelerator",
                               "cloud.google.com/gke-tpu-topology")),
}


def gke_gpu_pool(accelerator: str = "nvidia-l4", count: int = 1) -> NodePool:
    resource, (selector,) = GKE_POOL_LABELS["gpu"]
    return NodePool(kind="gpu", accelerator_type=resource, accelerator_count=count,
                    node_selectors=((selector, accelerator),),
                    toleration_keys=(resource,), cpu_request="6",
                    memory_request="24G", timeout_s=6 * 3600, retries=3)


def gke_tpu_pool(accelerator: str = "tpu-v5-lite-podslice", topology: str = "2x2",
                 chips: int = 4) -> NodePool:
    resource, (type_label, topology_label) = GKE_POOL_LABELS["tpu"]
    return NodePool(kind="tpu", accelerator_type=resource, accelerator_count=chips,
                    node_selectors=((type_label, accelerator), (topology_label, topology)),
                    toleration_keys=(resource,), cpu_request="20",
                    memory_request="100G", timeout_s=6 * 3600, retries=3)
