"""The mutable hyperparameters of a path (docs/method.md §4.1): each has a default and an ordered
value list that mutations move along one step at a time (`mu2net.mutations`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mu2net.errors import ConfigError

# Mutation probability range of the learned per-action mu (docs/method.md §3.1, §4.1): 0.02 .. 0.30.
MU_VALUES = tuple(round(0.02 * i, 2) for i in range(1, 16))
LR_VALUES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
WARMUP_VALUES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
MOMENTUM_VALUES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
DELTA_VALUES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
AREA_VALUES = (0.05, 0.5, 0.95, 1.0)
ASPECT_VALUES = (0.5, 0.75, 1.0)
BOOL_VALUES = (False, True)


@dataclass(frozen=True)
class Hparam:
    """One mutable hyperparameter: its default and its ordered value list (±1-step moves)."""

    name: str
    default: Any
    values: tuple

    def __post_init__(self) -> None:
        if self.default not in self.values:
            raise ConfigError(f"hparams.{self.name}.default={self.default!r} is invalid: "
                              f"expected one of {list(self.values)}")


@dataclass(frozen=True)
class HparamSpace:
    """Every mutable hyperparameter. Names starting `ds_` are data hyperparameters (sampled once
    per generation), `opt_` optimizer ones; `_mu_` is the base mutation probability."""

    params: tuple[Hparam, ...]

    def get(self, name: str) -> Hparam:
        for hp in self.params:
            if hp.name == name:
                return hp
        raise ConfigError(f"unknown hyperparameter {name!r}; valid: {self.names()}")

    def names(self) -> list[str]:
        return [hp.name for hp in self.params]

    def defaults(self) -> dict[str, Any]:
        return {hp.name: hp.default for hp in self.params}


def hparam_space(arch: Any, *, mu: float, image_sizes: tuple[int, ...], warmup: float,
                 adapters: bool, lr: float = 0.01, area: float = 1.0,
                 image_size: int | None = None) -> HparamSpace:
    """The paper's space (docs/method.md §4.1) at a config's scale: paths of 0 to `max_layers`
    blocks starting at the root's depth, children's images from `image_sizes` starting at
    `image_size` (default: the root's)."""
    params = [
        Hparam("_mu_", mu, MU_VALUES),
        Hparam("num_layers", arch.num_layers, tuple(range(0, arch.max_layers + 1))),
        Hparam("opt_lr", lr, LR_VALUES),
        Hparam("opt_lr_warmup_ratio", warmup, WARMUP_VALUES),
        Hparam("opt_momentum", 0.9, MOMENTUM_VALUES),
        Hparam("opt_nesterov", False, BOOL_VALUES),
        Hparam("ds_image_size", image_size or arch.image_size, image_sizes),
        Hparam("ds_area_range_min", area, AREA_VALUES),
        Hparam("ds_aspect_ratio_range_min", 1.0, ASPECT_VALUES),
        Hparam("ds_flip_left_right", False, BOOL_VALUES),
        Hparam("ds_brightness_delta", 0.0, DELTA_VALUES),
        Hparam("ds_contrast_delta", 0.0, DELTA_VALUES),
        Hparam("ds_saturation_delta", 0.0, DELTA_VALUES),
        Hparam("ds_hue_delta", 0.0, DELTA_VALUES),
        Hparam("ds_quality_delta", 0.0, DELTA_VALUES),
    ]
    if adapters:
        # docs/method.md §4.1: the small agents' adapter_dim default 32 in {8, ..., 128}
        params.append(Hparam("adapter_dim", 32, (8, 16, 32, 64, 128)))
    return HparamSpace(tuple(params))


# Readable names of the hyperparameters, for the report (mutation actions are `hp:<name>`).
HPARAM_LABELS = {
    "_mu_": "mutation probability \u03bc", "num_layers": "depth", "adapter_dim": "adapter size",
    "opt_lr": "learning rate", "opt_lr_warmup_ratio": "warm-up ratio",
    "opt_momentum": "momentum", "opt_nesterov": "Nesterov", "ds_image_size": "image size",
    "ds_area_range_min": "crop area", "ds_aspect_ratio_range_min": "crop aspect ratio",
    "ds_flip_left_right": "flips", "ds_brightness_delta": "brightness",
    "ds_contrast_delta": "contrast", "ds_saturation_delta": "saturation",
    "ds_hue_delta": "hue", "ds_quality_delta": "JPEG quality",
}


def mutation_label(action: str) -> str:
    """A mutation action as a reader says it: `hp:opt_lr` -> `learning rate`,
    `clone:encoderblock_1` -> `clone block 1`, `add:residual_adapter_2` -> `add adapter 2`,
    `*` (in a search record's mu table: the base probability `_mu_`) -> `base μ`."""
    kind, _, target = action.partition(":")
    if action == "*":
        return "base μ"
    if kind == "hp":
        return HPARAM_LABELS.get(target, target.replace("_", " ").strip())
    part = (target.replace("encoderblock_", "block ").replace("residual_adapter_", "adapter ")
            .replace("posembed_input", "position embedding").replace("_", " "))
    return f"{kind} {part}" if target else action


def mutations_text(actions: Sequence[str]) -> str:
    """A child's mutations, readable, comma-separated ("-" for none)."""
    return ", ".join(mutation_label(a) for a in actions) or "-"
