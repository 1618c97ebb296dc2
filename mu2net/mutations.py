"""Mutations of mu2Net+ (docs/method.md §3): hyperparameter moves, layer cloning, depth change,
adapter insertion, and the learned per-action mutation probability.

Every hyperparameter moves by an *incremental mutation*: one step up or down its ordered value
list (probability 1/2 each), clipped at the ends. Every mutation action `a` (`hp:<name>`,
`clone:<component>`, `add:residual_adapter_<i>`) fires with its own probability
`hparams["_mu_|" + a]`, inherited from the parent and falling back to `_mu_`; before use it is
itself mutated with probability `_mu_` and stored in the child (the learned mu function).

All randomness comes from the numpy Generator passed in, so a plan is reproducible from its
seed coordinates (`mu2net.search_state.derive_rng`). A plan walks the parent's `ancestry`, and
`slot_params` gives each planned component its initial weights (init, reuse, clone,
interpolated position embedding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mu2net.blobs import ParamsCache
from mu2net.config import ArchitectureConfig, Config
from mu2net.errors import ConfigError, SchemaError
from mu2net.hparams import MU_VALUES, HparamSpace
from mu2net.model import (
    adapter_layers,
    component_names,
    component_shapes,
    grid_size,
    init_component,
    resize_posembed,
)
from mu2net.schema import ROOT_TASK, Component, Path

ACTIONS = ("reuse", "clone", "interpolate", "init")
# hparams mutated per child (the ds_* ones are sampled once per generation, §5.4)
_CHILD_HPARAMS = ("_mu_", "num_layers", "adapter_dim")


def value_index(value: Any, values: Sequence[Any]) -> int:
    """Index of `value` in an ordered value list (floats compared with a tolerance)."""
    for i, v in enumerate(values):
        if isinstance(v, bool) or isinstance(value, bool):
            if type(v) is type(value) and v == value:
                return i
        elif isinstance(v, float) or isinstance(value, float):
            if math.isclose(float(v), float(value), rel_tol=1e-9, abs_tol=1e-12):
                return i
        elif v == value:
            return i
    raise ConfigError(f"value {value!r} is not in the value list {list(values)}")


def incremental_mutation(value: Any, values: Sequence[Any], rng: np.random.Generator) -> Any:
    """One step up or down the ordered `values` with probability 1/2 each, clipped at the
    ends (so at an end the value stays with probability 1/2)."""
    i = value_index(value, values)
    step = 1 if rng.random() < 0.5 else -1
    return values[min(max(i + step, 0), len(values) - 1)]


def do_mutate(hparams: dict[str, Any], action: str, rng: np.random.Generator,
              config: Config) -> bool:
    """Whether `action` fires for this child; updates the child's learned probability in place
    (docs/method.md §3.1, `PPDecay.do_mutate`)."""
    if action in config.search.force_mutations:
        return True
    key = "_mu_|" + action
    mu = float(hparams.get("_mu_", config.hparams.get("_mu_").default))
    p = float(hparams.get(key, mu))
    if config.search.mu_autotune:
        if rng.random() < mu:
            p = incremental_mutation(p, MU_VALUES, rng)
        hparams[key] = p
    return bool(rng.random() < p)


def default_hparams(space: HparamSpace) -> dict[str, Any]:
    return {name: value for name, value in space.defaults().items()}


def sample_ds_hparams(config: Config, best_hparams: Mapping[str, Any] | None,
                      rng: np.random.Generator) -> tuple[dict[str, Any], list[str]]:
    """The data hyperparameters of one generation (docs/method.md §5.4): defaults, or the task's
    best path's values and their learned probabilities, then each mutated once. All children
    of the generation share them (they train on the same stream).

    Returns (ds hparams incl. `_mu_|hp:ds_*` probabilities, fired actions)."""
    space = config.hparams
    keys = sorted(n for n in space.names() if n.startswith("ds_"))
    ds: dict[str, Any] = {k: space.get(k).default for k in keys}
    fired: list[str] = []
    if best_hparams is None:
        return ds, fired
    # The base mu is the default one, not the best path's: mu3Net's generation-level ds dict
    # carries the best path's ds_* values and their learned probabilities, but no `_mu_`.
    probe: dict[str, Any] = {"_mu_": space.get("_mu_").default}
    for k in keys:
        probe[k] = best_hparams.get(k, ds[k])
        if "_mu_|hp:" + k in best_hparams:
            probe["_mu_|hp:" + k] = best_hparams["_mu_|hp:" + k]
    for k in keys:
        if do_mutate(probe, "hp:" + k, rng, config):
            probe[k] = incremental_mutation(probe[k], space.get(k).values, rng)
            fired.append("hp:" + k)
    probe.pop("_mu_")
    return probe, fired


def mutate_hparams(hparams: dict[str, Any], config: Config,
                   rng: np.random.Generator) -> list[str]:
    """Per-child moves of `_mu_`, `num_layers`, `adapter_dim` and every `opt_*` (in name
    order), in place. Returns the fired actions."""
    fired = []
    for name in sorted(config.hparams.names()):
        if name in _CHILD_HPARAMS or name.startswith("opt_"):
            if do_mutate(hparams, "hp:" + name, rng, config):
                hparams[name] = incremental_mutation(hparams[name],
                                                     config.hparams.get(name).values, rng)
                fired.append("hp:" + name)
    return fired


def anneal_lr(hparams: dict[str, Any], config: Config) -> None:
    """A same-task child's `opt_lr` starts `search.same_task_lr_steps` steps down the ordered
    value list from its parent's (clipped at the lowest), in place: along a lineage the peak
    learning rate anneals instead of every child restarting at the parent's peak. A departure
    from docs/method.md (off by default); no randomness is drawn."""
    values = config.hparams.get("opt_lr").values
    i = value_index(hparams["opt_lr"], values)
    hparams["opt_lr"] = values[max(i - config.search.same_task_lr_steps, 0)]


def mutate_adapters(hparams: dict[str, Any], config: Config,
                    rng: np.random.Generator) -> list[str]:
    """Drops adapters of removed layers; with `mutate_adapters`, `add:residual_adapter_i`
    may insert one before each block i that has none (adapters are never removed)."""
    layers = int(hparams["num_layers"])
    kept = [i for i in adapter_layers(hparams) if i < layers]
    fired = []
    if config.search.mutate_adapters and "adapter_dim" in config.hparams.names():
        for i in range(layers):
            if i not in kept and do_mutate(hparams, f"add:residual_adapter_{i}", rng, config):
                kept.append(i)
                fired.append(f"add:residual_adapter_{i}")
    hparams["adapter_layers"] = sorted(kept)
    return fired


@dataclass(frozen=True)
class Slot:
    """How a child obtains one component.

    reuse: the frozen `source` itself (shared, not trained). clone: a trainable copy of
    `source`'s parameters. interpolate: a trainable copy of `source`'s position embeddings
    resized to the child's image size. init: fresh parameters from `seed`.
    """

    name: str
    action: str
    source: Component | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise SchemaError(f"slot.action={self.action!r} is invalid: expected one of "
                              f"{list(ACTIONS)}")
        if (self.source is None) != (self.action == "init"):
            raise SchemaError(f"slot {self.name!r} action {self.action!r}: a source component "
                              "is required for reuse/clone/interpolate and not allowed for init")

    @property
    def trainable(self) -> bool:
        return self.action != "reuse"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "seed": self.seed,
                "source": None if self.source is None else self.source.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Slot:
        for key in ("name", "action", "source", "seed"):
            if key not in d:
                raise SchemaError(f"slot.{key} is missing")
        source = None if d["source"] is None else Component.from_dict(d["source"])
        return cls(name=d["name"], action=d["action"], source=source, seed=d["seed"])


def trainable_for(component: Component, task: str, users: Mapping[str, set[str]]) -> bool:
    """A component is trainable by `task` iff the task created it and no other task's
    published path uses it (root components are never trainable). Such components are
    always cloned by children, so nothing published is modified in place."""
    return component.creator == task and users.get(component.id, set()) <= {task}


def plan_components(hparams: dict[str, Any], ancestry: Sequence[Path], task: str,
                    arch: ArchitectureConfig, users: Mapping[str, set[str]],
                    rng: np.random.Generator, config: Config,
                    init_seed: Any) -> tuple[list[Slot], list[str]]:
    """The child's component plan (docs/method.md §2.4).

    For each component the child's architecture needs, walk the ancestry (parent first, root
    last) for the first component of that name with the right shapes; a head is only taken
    from the same task. Found and trainable (or `clone:<name>` fires): clone; found and frozen:
    reuse. Not found: a position embedding is the root's resized to the new image size; any
    other component is freshly initialised (a new task's head is zero).

    With `search.clone_root_blocks`, a child whose parent is the root clones every component
    it takes from the root (no `clone:` draw).

    `init_seed(name)` gives the seed of a fresh component. Hparams are updated in place with
    the learned clone probabilities. Returns (slots, fired clone actions).
    """
    slots: list[Slot] = []
    fired: list[str] = []
    # departure (search.clone_root_blocks): a child of the root clones every root component
    clone_root = config.search.clone_root_blocks and bool(ancestry) and (
        ancestry[0].task == ROOT_TASK)
    for name in component_names(hparams):
        expected = component_shapes(name, arch, hparams)
        source = None
        for ancestor in ancestry:
            if name == "head" and ancestor.task != task:
                continue  # a head is never borrowed from another task
            comp = ancestor.component(name)
            if comp is not None and {k: tuple(v) for k, v in comp.shapes.items()} == expected:
                source = comp
                break
        if source is None:
            root_pos = ancestry[-1].component("posembed_input") if ancestry else None
            if name == "posembed_input" and root_pos is not None:
                slots.append(Slot(name, "interpolate", root_pos))
            else:
                slots.append(Slot(name, "init", None, int(init_seed(name))))
            continue
        if trainable_for(source, task, users) or (
                clone_root and source.creator == ROOT_TASK):
            slots.append(Slot(name, "clone", source))
        elif do_mutate(hparams, "clone:" + name, rng, config):  # hparams is the child's dict
            slots.append(Slot(name, "clone", source))
            fired.append("clone:" + name)
        else:
            slots.append(Slot(name, "reuse", source))
    return slots, fired


class ParentPool(Mapping[str, Path]):
    """The uniform fallback's choices, in mu3Net's order: the root, every task's published
    path in task-name order, then the task's own population members that are not published
    (`candidates[i]`, `len`); and, as a mapping hash -> path, every path the ancestry may walk
    (the version's paths and the population's). Only the paths drawn or walked are read
    (the view's paths are read lazily), whatever the number of tasks."""

    def __init__(self, system: Any, population: Sequence[Path]) -> None:
        from mu2net.system_view import path_hash_of

        self.system, self.tasks = system, sorted(system.paths)
        self.task_of = {path_hash_of(system, t): t for t in self.tasks}
        published = {system.root.hash, *self.task_of}
        self.extras = [p for p in population if p.hash not in published]
        self.own = {p.hash: p for p in population}

    def candidate(self, i: int) -> Path:
        if i == 0:
            return self.system.root
        if i <= len(self.tasks):
            return self.system.paths[self.tasks[i - 1]]
        return self.extras[i - 1 - len(self.tasks)]

    def candidates(self) -> int:
        return 1 + len(self.tasks) + len(self.extras)

    def __getitem__(self, path_hash: str) -> Path:
        if path_hash in self.own:
            return self.own[path_hash]
        if path_hash == self.system.root.hash:
            return self.system.root
        return self.system.paths[self.task_of[path_hash]]  # KeyError: unknown

    def __iter__(self) -> Any:
        return iter({self.system.root.hash, *self.task_of, *self.own})

    def __len__(self) -> int:
        return len({self.system.root.hash, *self.task_of, *self.own})


def ancestry(parent: Path, known: Mapping[str, Path], root: Path) -> list[Path]:
    """parent, grandparent, ... ending with the root. A parent link that is not known (a path
    retired since) jumps to the root, as mu3Net does for orphaned parents."""
    chain = [parent]
    seen = {parent.hash}
    current = parent
    while current.parent is not None and current.task != root.task:
        nxt = known.get(current.parent)
        if nxt is None or nxt.hash in seen:
            break
        chain.append(nxt)
        seen.add(nxt.hash)
        current = nxt
    if chain[-1].hash != root.hash:
        chain.append(root)
    return chain


def slot_params(slot: Slot, hparams: Mapping[str, Any], config: Config,
                cache: ParamsCache) -> dict[str, np.ndarray]:
    """Initial weights of one component of a child."""
    arch = config.architecture
    if slot.action == "init":
        return init_component(slot.name, arch, hparams, slot.seed)
    source = cache.params(slot.source.blob)
    if slot.action == "interpolate":
        grid = grid_size(int(hparams["ds_image_size"]), arch.patch_size)
        return {"pos_embedding": resize_posembed(source["pos_embedding"], grid)}
    return {k: np.array(v) for k, v in source.items()}  # reuse / clone: a private copy
