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
    timeout_s: int = 3600  # the training and commit pools' deadlines come from the budget
    retries: int = 2  # what a Spot node does to a pod (manifests/components/spot-retries)
    # (precision, TFLOP/s one pod sustains), what `mu2net.resources` sizes deadlines with. CPU:
    # measured (cpu_demo trains at 0.029 TFLOP/s on 2 cores, benchmarks/results/recipe.md),
    # halved for a 1-CPU pod.
    sustained_tflops: tuple[tuple[str, float], ...] = (("float32", 0.014),
                                                       ("mixed_bfloat16", 0.007))

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


# The fraction of the datasheet's dense peak a child sustains, measured on a lent H200: the gpu
# config's child (ViT-L/16, 224 px, batch 16, bfloat16, JAX) trained at 24.1 % of 989 TFLOP/s
# (benchmarks/results/accelerator_gpu_child.md), taken to carry over to these chips. NVIDIA
# L4: 121 TFLOP/s bfloat16, 30.3 float32 (24 GB). TPU v5e: 197 TFLOP/s bfloat16 per chip
# (16 GB HBM); float32 matmuls take several bfloat16 passes, so a quarter of that.
SUSTAINED_FRACTION = 0.24
L4_SUSTAINED_TFLOPS = (("float32", SUSTAINED_FRACTION * 30.3),
                       ("mixed_bfloat16", SUSTAINED_FRACTION * 121.0))
V5E_SUSTAINED_TFLOPS = (("float32", SUSTAINED_FRACTION * 197.0 / 4),
                        ("mixed_bfloat16", SUSTAINED_FRACTION * 197.0))


def _per_pod(per_device: tuple[tuple[str, float], ...], devices: int
             ) -> tuple[tuple[str, float], ...]:
    return tuple((precision, devices * tflops) for precision, tflops in per_device)


def gke_gpu_pool(accelerator: str = "nvidia-l4", count: int = 1) -> NodePool:
    resource, (selector,) = GKE_POOL_LABELS["gpu"]
    return NodePool(kind="gpu", accelerator_type=resource, accelerator_count=count,
                    node_selectors=((selector, accelerator),),
                    toleration_keys=(resource,), cpu_request="6",
                    memory_request="24G", timeout_s=6 * 3600, retries=3,
                    sustained_tflops=_per_pod(L4_SUSTAINED_TFLOPS, count))


def gke_tpu_pool(accelerator: str = "tpu-v5-lite-podslice", topology: str = "2x2",
                 chips: int = 4) -> NodePool:
    resource, (type_label, topology_label) = GKE_POOL_LABELS["tpu"]
    return NodePool(kind="tpu", accelerator_type=resource, accelerator_count=chips,
                    node_selectors=((type_label, accelerator), (topology_label, topology)),
                    toleration_keys=(resource,), cpu_request="20",
                    memory_request="100G", timeout_s=6 * 3600, retries=3,
                    sustained_tflops=_per_pod(V5E_SUSTAINED_TFLOPS, chips))
