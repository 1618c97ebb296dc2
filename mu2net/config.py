"""One typed, frozen config per pipeline, with named variants.

`get_config(name)` returns one of `testing`, `cpu_demo`, `gpu`, `tpu`, or a config read from a
JSON/YAML file (`mu2net.config_files`). The method-relevant part (architecture, hyperparameter
space, search budgets, score constants) is serialised to canonical JSON and hashed: that hash
is the *method version*, recorded in every path and every system version, so a change to the
method itself can be rolled out to the live system and analysed per version (the continual
development methodology of the mu2Net+ paper). Placement and data locations are deployment
details and do not change the method version.

The `gpu` and `tpu` variants carry the paper's values for the large ViT-L/16 agent
(`docs/method.md` §4.1, §5.1, §6.1). `cpu_demo` and `testing` scale the numbers down for a
2-core machine and keep every mechanism; the differences are listed in each factory's docstring.

Departures from docs/method.md available in `SearchConfig` (issue 26), each off by default in
every named config (so every config runs the paper's mechanism, and keeps its method version):
* `child_quality="final"`: a child is retained, and sets its descendants' bar, by its last
  validation instead of the best of its V (the max of V noisy validations inflates the bar).
* `child_epochs`: a child's budget in passes over the task's train split instead of a fixed
  example count per validation (within `examples_between_validations`).
* `own_lineage_fallback`: in iterate cycles the uniform parent fallback stays in the task's
  own population with this probability instead of restarting from the root or another task.
* `clone_root_blocks`: a child of the root clones every root component it takes.
* `same_task_lr_steps`: a same-task child's `opt_lr` starts that many steps below its parent's.
A/B on digits, 3 seeds x 3 cycles (`benchmarks/results/stuck_lineages.md`): no gain beyond
seed noise from `child_quality` or `clone_root_blocks` (+1.7, one seed's, at 1.0x the root's
size), a loss from `same_task_lr_steps`; `own_lineage_fallback` on 5 tasks: +1.0, noise.
Budget by task size (glyph_uppercase, cap 16,384): +2.3 points at 2x examples, caps kept
(`benchmarks/results/child_budget.md`). Not built: restoring the parent's momentum trace
(mu3Net does): -0.3 / +0.1 test points measured in isolation (stuck_lineages.md, section 5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mu2net.errors import ConfigError
from mu2net.hparams import Hparam, HparamSpace, hparam_space
from mu2net.node_pools import (  # noqa: F401 (re-exported: the config's public names)
    GKE_POOL_LABELS,
    TARGETS,
    NodePool,
    PlacementConfig,
    gke_gpu_pool,
    gke_tpu_pool,
)

CONFIG_NAMES = ("testing", "cpu_demo", "gpu", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16")  # training; weights are always stored in float32
CHILD_QUALITIES = ("best", "final")
SEARCH_DEPARTURES = ("child_quality", "child_epochs", "own_lineage_fallback", "clone_root_blocks",
                     "same_task_lr_steps")


@dataclass(frozen=True)
class ArchitectureConfig:
    """The root ViT. `num_layers` is the root depth; paths may use 0..max_layers blocks."""

    image_size: int = 32
    patch_size: int = 4
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_dim: int = 128
    max_layers: int = 4
    channels: int = 3

    def __post_init__(self) -> None:
        _require(self.image_size % self.patch_size == 0, "architecture.image_size",
                 self.image_size, f"a multiple of patch_size={self.patch_size}")
        _require(self.hidden_size % self.num_heads == 0, "architecture.hidden_size",
                 self.hidden_size, f"a multiple of num_heads={self.num_heads}")
        _require(self.max_layers >= self.num_layers, "architecture.max_layers",
                 self.max_layers, f">= num_layers={self.num_layers}")


@dataclass(frozen=True)
class SearchConfig:
    """Budgets of one cycle (docs/method.md §5.1, §5.2)."""

    children_per_generation: int = 2  # K: trained in parallel (one per node / device group)
    generations_per_cycle: int = 2
    validations_per_child: int = 2
    examples_between_validations: int = 1024  # cap; fewer if the train split is smaller
    batch_size: int = 64
    validation_examples: int = 512
    population_cap: int = 4
    force_mutations: tuple[str, ...] = ("clone:encoder_norm",)
    mutate_adapters: bool = True
    mu_autotune: bool = True
    min_lr_ratio: float = 1e-3  # cosine decays to lr/1000 (mu2Net+)
    grad_clip_norm: float = 1.0
    test_examples: int = 0  # 0 = whole test split
    # departures from docs/method.md, each off by default (listed in the module docstring)
    child_quality: str = "best"  # "final": retain and set bars by the last validation
    child_epochs: float = 0.0  # > 0: passes over the train split per child (within the cap)
    own_lineage_fallback: float = 0.0  # P(uniform fallback stays in the own population)
    clone_root_blocks: bool = False  # a child of the root clones every root component
    same_task_lr_steps: int = 0  # a same-task child's opt_lr starts this many steps lower

    def __post_init__(self) -> None:
        for name in ("children_per_generation", "generations_per_cycle", "validations_per_child",
                     "examples_between_validations", "batch_size", "validation_examples",
                     "population_cap"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, f"search.{name}", value,
                     "an integer >= 1")
        _require(self.child_quality in CHILD_QUALITIES, "search.child_quality",
                 self.child_quality, f"one of {list(CHILD_QUALITIES)}")
        _require(isinstance(self.child_epochs, (int, float)) and self.child_epochs >= 0,
                 "search.child_epochs", self.child_epochs, "a number >= 0 (0: off)")
        _require(isinstance(self.own_lineage_fallback, (int, float))
                 and 0 <= self.own_lineage_fallback <= 1, "search.own_lineage_fallback",
                 self.own_lineage_fallback, "a probability in [0, 1]")
        _require(isinstance(self.same_task_lr_steps, int) and self.same_task_lr_steps >= 0,
                 "search.same_task_lr_steps", self.same_task_lr_steps, "an integer >= 0")


@dataclass(frozen=True)
class ScoreConfig:
    """score = q * scale^(accounted_params/params_ref) * scale^(flops/flops_ref) (§6.1)."""

    scale: float = 0.99
    params_ref: float = 2.2e9
    flops_ref: float = 3.8e12


@dataclass(frozen=True)
class PublishConfig:
    """Publishing policy: which of a cycle's paths become a version. Not part of the method
    (not hashed into the method version): it decides what is kept, not how a path is found
    or scored. `min_improvement`: a path of a task already in the system is published only if
    its score beats the current one by at least this much (0: off, any changed path is
    published; a cycle that keeps its parent's path never is, see `mu2net.store.publish`)."""

    min_improvement: float = 0.0

    def __post_init__(self) -> None:
        _require(self.min_improvement >= 0, "publish.min_improvement", self.min_improvement,
                 "a score gain >= 0 (0: off)")


@dataclass(frozen=True)
class Config:
    """The whole configuration of the onboarding pipeline."""

    name: str
    architecture: ArchitectureConfig
    hparams: HparamSpace
    search: SearchConfig
    score: ScoreConfig
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    root_task: str = "demo:fashion_mnist"
    root_pretrain_examples: int = 60_000
    root_pretrain_lr: float = 1e-3  # Adam peak learning rate of root pretraining
    root_pretrain_batch_size: int = 0  # 0: the search's batch size
    # data augmentation of root pretraining, as (ds_* hparam, value) pairs, and AdamW's
    # weight decay (0: plain Adam)
    root_pretrain_augment: tuple[tuple[str, Any], ...] = ()
    root_pretrain_weight_decay: float = 0.0
    onboard_cycles: int = 1  # search cycles (pipeline runs) per `onboard` of one task
    image: str = "mu2net-cpu:dev"  # container image tag, replaced at compile time
    precision: str = "float32"  # children's training precision (PRECISIONS)

    def __post_init__(self) -> None:
        _require(self.precision in PRECISIONS, "precision", self.precision,
                 f"one of {list(PRECISIONS)}")

    def method_dict(self) -> dict[str, Any]:
        """The parts that define the method (what the method version hashes). The departures
        added later (`SEARCH_DEPARTURES`) count only when set: a config at their defaults keeps
        the method version it had, so searches and recorded config JSON stay valid."""
        search = dataclasses.asdict(self.search)
        defaults = SearchConfig.__dataclass_fields__
        for name in SEARCH_DEPARTURES:
            if search[name] == defaults[name].default:
                del search[name]
        return {"architecture": dataclasses.asdict(self.architecture),
                "hparams": [dataclasses.asdict(hp) for hp in self.hparams.params],
                "search": search, "score": dataclasses.asdict(self.score)}

    @property
    def method_version(self) -> str:
        return "m-" + hashlib.sha256(canonical_json(self.method_dict()).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method_version"] = self.method_version
        return out

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @property
    def config_hash(self) -> str:
        """Hash of the whole config (method and placement); components check it."""
        return hashlib.sha256(canonical_json(dataclasses.asdict(self)).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        data = dict(data)
        recorded = data.pop("method_version", None)
        try:
            config = cls(
                name=data["name"],
                architecture=ArchitectureConfig(**data["architecture"]),
                hparams=HparamSpace(tuple(
                    Hparam(hp["name"], hp["default"], tuple(hp["values"]))
                    for hp in data["hparams"]["params"])),
                search=SearchConfig(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in data["search"].items()}),
                score=ScoreConfig(**data["score"]),
                placement=PlacementConfig(**{
                    k: NodePool(**_tuplify(v)) for k, v in data["placement"].items()}),
                # absent from configs recorded before the publishing policy existed
                publish=PublishConfig(**data.get("publish", {})),
                root_task=data["root_task"],
                root_pretrain_examples=data["root_pretrain_examples"],
                root_pretrain_lr=data["root_pretrain_lr"],
                root_pretrain_batch_size=data["root_pretrain_batch_size"],
                root_pretrain_augment=tuple(tuple(pair)
                                            for pair in data["root_pretrain_augment"]),
                root_pretrain_weight_decay=data["root_pretrain_weight_decay"],
                onboard_cycles=data["onboard_cycles"],
                image=data["image"],
                precision=data["precision"],
            )
        except KeyError as exc:
            raise ConfigError(f"config JSON lacks field {exc.args[0]!r}") from exc
        except TypeError as exc:
            raise ConfigError(f"config JSON has an unexpected field: {exc}") from exc
        if recorded is not None and recorded != config.method_version:
            raise ConfigError(f"config JSON records method_version {recorded!r} but its content "
                              f"hashes to {config.method_version!r}")
        return config

    @classmethod
    def from_json(cls, text: str) -> Config:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# === Named variants =========================================================================


def testing() -> Config:
    """A tiny ViT and budgets of a few hundred examples: for tests only (seconds per child).
    Its population cap is 4 instead of the paper's 16 so that tests reach the cap."""
    arch = ArchitectureConfig(image_size=16, patch_size=4, hidden_size=16, num_layers=2,
                              num_heads=2, mlp_dim=32, max_layers=3)
    space = hparam_space(arch, mu=0.1, image_sizes=(12, 16, 20), warmup=0.1, adapters=True)
    return Config(
        name="testing",
        architecture=arch,
        hparams=space,
        search=SearchConfig(children_per_generation=2, generations_per_cycle=2,
                            validations_per_child=2, examples_between_validations=128,
                            batch_size=32, validation_examples=64, population_cap=4,
                            test_examples=256),
        # Small s and refs so that size and compute visibly move the score in tests.
        score=ScoreConfig(scale=0.99, params_ref=1e6, flops_ref=1e6),
        root_pretrain_examples=2048,
    )


def cpu_demo() -> Config:
    """The 2-core demo, each number chosen by measurement on this 2-core machine (scripts in
    `benchmarks/recipe/`, results in `benchmarks/results/recipe.md`). The mechanism is the
    paper's; only numbers are scaled down:

    * Architecture: ViT 28x28, patch 7 (16 tokens + cls), width 64, 4 blocks, 4 heads, MLP
      128 (145k params), paths of 0..5 blocks, `ds_image_size` in {21, 28, 35} (the paper's
      {224, 384}: sizes the patch divides). Patch 7 trains 1,899 images/s against 958 at
      patch 4 (same width and depth); width 96 would cost 1.3x, width 128 2x.
    * Root: pretrained on Fashion-MNIST (54k train) with Adam 1e-3, batch 128, 16 epochs
      (864k examples), flips and mild crops (area >= 0.95): test 88.3 % (no augmentation,
      12 epochs: 87.9 %; strong crops (area >= 0.5, aspect 0.75) + AdamW 0.05, 20 epochs:
      85.9 %); 4 or 64 epochs transfer worse to the suite's tasks (μ2Net+ -2.0 / -0.7 points,
      benchmarks/results/stronger_root.md). Paid once, shipped in `roots/` (`mu2net root build`).
    * Per child: 8 validations (the paper's number) of <= 4,096 examples, i.e. 8 epochs of
      a 3.5k-image task, batch 64; 2 children per generation (in parallel on 2 pods), 2
      generations per cycle, 3 cycles per onboarding (`onboard_cycles`). On MNIST-5k 8
      validations x 2 generations beat 4 x 3 (93.9 against 90.1 % after 2 cycles), and over
      3 seeds cycles 1-4 give 85.7 / 94.1 / 95.2 / 95.1 %: a third cycle pays, a fourth not.
    * No departure is on. The nearest, `own_lineage_fallback` 0.75 (5 tasks x 3 seeds,
      search alone, paired with the quality run): +1.0 points (-0.1 / +2.1 / +1.2, within
      seed noise), seed spread <= 2.6 points per task (5.7), but MNIST-5k seed 0 -2.2 points
      (stuck_lineages.md, section 6): the next full quality run's first A/B arm.
    * Defaults where the children of the root start: `opt_lr` 0.1 (the paper: 0.01) and
      `ds_area_range_min` 0.5, i.e. crop augmentation on by default as in mu2Net (mu2Net+
      defaults to none): fine-tuning MNIST-5k 30 epochs from the root reached 91.2 % at lr
      0.03 without crops, 92.0 % with, 94.8 % at lr 0.1 with. Every data hparam stays in the
      space (flips and colour moves are off by default and can be switched on by mutation).
    * Validation subset 1,024 examples; population cap 16 and adapter_dim 32 (the paper's);
      adapters enabled as in the paper's small (chars/VDD) agents.
    * Score: s = 0.99 with reference params/FLOPs 2e5 / 2e7 (about 1.4x / 4x the root), so
      a fully cloned path pays 0.7 % relative accuracy against 0.14 % for ViT-L in the paper:
      size still acts as a tie-breaker, a few times stronger.
    """
    arch = ArchitectureConfig(image_size=28, patch_size=7, hidden_size=64, num_layers=4,
                              num_heads=4, mlp_dim=128, max_layers=5)
    return Config(
        name="cpu_demo",
        architecture=arch,
        hparams=hparam_space(arch, mu=0.1, image_sizes=(21, 28, 35), warmup=0.1,
                             adapters=True, lr=0.1, area=0.5),
        search=SearchConfig(children_per_generation=2, generations_per_cycle=2,
                            validations_per_child=8, examples_between_validations=4096,
                            batch_size=64, validation_examples=1024, population_cap=16),
        score=ScoreConfig(scale=0.99, params_ref=2e5, flops_ref=2e7),
        root_pretrain_examples=864_000,
        root_pretrain_lr=1e-3,
        root_pretrain_batch_size=128,
        root_pretrain_augment=(("ds_area_range_min", 0.95), ("ds_flip_left_right", True)),
        root_pretrain_weight_decay=0.0,
        onboard_cycles=3,
    )


def _paper_large(name: str, image_sizes: tuple[int, ...]) -> Config:
    """ViT-L/16 (the AugReg checkpoint at 384 px) with the mu2Net+ large agent's values
    (docs/method.md §4.1, §5.1, §6.1); children start at 224 px."""
    arch = ArchitectureConfig(image_size=384, patch_size=16, hidden_size=1024, num_layers=24,
                              num_heads=16, mlp_dim=4096, max_layers=24)
    return Config(
        name=name,
        architecture=arch,
        hparams=hparam_space(arch, mu=0.2, image_sizes=image_sizes, image_size=224,
                             warmup=0.05, adapters=False),
        search=SearchConfig(children_per_generation=4, generations_per_cycle=4,
                            validations_per_child=8, examples_between_validations=100_000,
                            batch_size=16, validation_examples=10_000, population_cap=16,
                            mutate_adapters=False),
        score=ScoreConfig(scale=0.99, params_ref=2.2e9, flops_ref=3.8e12),
        root_task="tfds:imagenet2012",
        root_pretrain_examples=0,  # the root is imported from the AugReg checkpoint
    )


def gpu() -> Config:
    """Paper values sized for one NVIDIA L4 (24 GB) per child: bfloat16 mixed precision and
    224 px images only (docs/sizing.md, from `mu2net.resources`:
    8.1 GB and about 3 h a child; 384 px would need 22 GB before framework overhead and 9 h,
    float32 at 384 px 40 GB), a departure from the paper's {224, 384}. On a lent H200 this
    child measured 7.7 GB and 24 % MFU. 16 children per cycle as 4 parallel GPU pods x 4
    generations."""
    return _paper_large("gpu", (224,)).replace(image="mu2net-gpu:dev", precision="mixed_bfloat16")


def tpu() -> Config:
    """Paper values; 16 children per cycle as 4 parallel TPU v5e 2x2 slices x 4 generations,
    in bfloat16 (the TPU's native matmul type); the batch of 16 splits over 4 chips of 16 GB,
    so 384 px fits."""
    return _paper_large("tpu", (224, 384)).replace(image="mu2net-tpu:dev",
                                                   precision="mixed_bfloat16")


_FACTORIES = {"testing": testing, "cpu_demo": cpu_demo, "gpu": gpu, "tpu": tpu}


def get_config(name: str) -> Config:
    """The named variant, or the config a `.json`/`.yaml` file describes
    (`mu2net.config_files`); an unknown name lists the valid ones."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    from mu2net.config_files import is_config_file, load_config_file

    if is_config_file(name):
        return load_config_file(name)
    raise ConfigError(f"unknown config {name!r}; valid: {list(CONFIG_NAMES)} or a .json/.yaml "
                      "file (`mu2net config NAME > my.json` writes a starting point)")


# === helpers ================================================================================


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces. Used for every hash in the project."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _tuplify(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        out[key] = value
    return out


def _require(ok: bool, field_name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}={value!r} is invalid: expected {expected}")
