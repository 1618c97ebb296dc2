"""What passes between the steps of one search cycle, serialisable to JSON.

One cycle of one task is: plan generation -> train its K children -> select, repeated for each
generation, then close the cycle. Between steps only a `SearchState` (and child specs / results)
travel, so the pipeline can run each step in its own pod and retry it.

Randomness is never drawn from a global RNG: `derive_rng(seed, task, cycle, generation, child,
purpose)` gives the same stream for the same coordinates, so re-running a step after a crash or a
pod preemption gives the same result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mu2net.config import canonical_json
from mu2net.errors import SchemaError
from mu2net.mutations import Slot
from mu2net.schema import HASH_RE, ROOT_TASK, Path, check_mode, validate_task_name
from mu2net.task_info import TaskInfo

STATE_SCHEMA = "mu2net/search_state/v1"


def derive_rng(seed: int, *coordinates: Any) -> np.random.Generator:
    """A numpy Generator determined only by the seed and the coordinates (strings or ints)."""
    digest = hashlib.sha256(canonical_json([int(seed), *coordinates]).encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(
        [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]))


def derive_seed(seed: int, *coordinates: Any) -> int:
    """A 31-bit integer seed (for Keras / TF initialisers) from the same coordinates."""
    return int(derive_rng(seed, *coordinates).integers(0, 2**31 - 1))


@dataclass(frozen=True)
class Candidate:
    """One path of the task's population with its score at the base version and the number of
    children generated from it (decay parent selection uses 0.5 ** offspring)."""

    path: Path
    score: float
    offspring: int = 0

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinity: -inf (a new task's missing parent) is stored as null.
        return {"path": self.path.to_dict(),
                "score": None if math.isinf(self.score) else self.score,
                "offspring": self.offspring}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        for key in ("path", "score", "offspring"):
            if key not in d:
                raise SchemaError(f"search_state.population[].{key} is missing")
        score = d["score"]
        return cls(path=Path.from_dict(d["path"]),
                   score=-math.inf if score is None else float(score),
                   offspring=int(d["offspring"]))


@dataclass(frozen=True)
class SearchState:
    """The state of one cycle of one task.

    `population` holds the task's paths (the published one, if any, plus accepted children),
    best first. `staged_blobs` maps sha256 -> URI of new component parameters produced by this
    cycle's children and not yet in the store. `generation` is the next generation to plan;
    the cycle is done when it equals the config's generations_per_cycle. `history` records
    one entry per trained child (for dashboards and the run report).
    """

    task: str
    task_info: TaskInfo
    config_name: str
    method_version: str
    base_version: int
    seed: int
    run_id: str
    mode: str = "onboard"
    cycle: int = 0
    generation: int = 0
    population: tuple[Candidate, ...] = ()
    staged_blobs: Mapping[str, str] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        validate_task_name(self.task)
        check_mode(self.mode, "search_state.mode")
        for key in self.staged_blobs:
            if not HASH_RE.match(key):
                raise SchemaError(f"search_state.staged_blobs key {key!r} is not a sha256 digest")

    def rng(self, *coordinates: Any) -> np.random.Generator:
        return derive_rng(self.seed, self.task, self.cycle, *coordinates)

    def best(self) -> Candidate | None:
        """Highest score; ties go to the most recent (later in `population`)."""
        best = None
        for cand in self.population:
            if best is None or cand.score >= best.score:
                best = cand
        return best

    def replace(self, **changes: Any) -> SearchState:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": STATE_SCHEMA, "task": self.task, "task_info": self.task_info.to_dict(),
                "config_name": self.config_name, "method_version": self.method_version,
                "base_version": self.base_version, "seed": self.seed, "run_id": self.run_id,
                "mode": self.mode, "cycle": self.cycle, "generation": self.generation,
                "population": [c.to_dict() for c in self.population],
                "staged_blobs": dict(sorted(self.staged_blobs.items())),
                "history": [dict(h) for h in self.history]}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchState:
        if not isinstance(d, Mapping) or d.get("schema") != STATE_SCHEMA:
            found = d.get("schema") if isinstance(d, Mapping) else d
            raise SchemaError(f"search_state.schema={found!r} is invalid: expected "
                              f"{STATE_SCHEMA!r}")
        required = ("task", "task_info", "config_name", "method_version", "base_version", "seed",
                    "run_id", "mode", "cycle", "generation", "population", "staged_blobs",
                    "history")
        for key in required:
            if key not in d:
                raise SchemaError(f"search_state.{key} is missing")
        for key in ("base_version", "seed", "cycle", "generation"):
            if not isinstance(d[key], int) or isinstance(d[key], bool):
                raise SchemaError(f"search_state.{key}={d[key]!r} is invalid: expected int")
        return cls(task=d["task"], task_info=TaskInfo.from_dict(d["task_info"]),
                   config_name=d["config_name"], method_version=d["method_version"],
                   base_version=d["base_version"], seed=d["seed"], run_id=d["run_id"],
                   mode=d["mode"], cycle=d["cycle"], generation=d["generation"],
                   population=tuple(Candidate.from_dict(c) for c in d["population"]),
                   staged_blobs=dict(d["staged_blobs"]),
                   history=tuple(dict(h) for h in d["history"]))

    @classmethod
    def from_json(cls, text: str) -> SearchState:
        import json

        return cls.from_dict(json.loads(text))


# === what travels between the steps of a generation ========================================


CHILD_SPEC_SCHEMA = "mu2net/child_spec/v1"
CHILD_RESULT_SCHEMA = "mu2net/child_result/v1"
SEARCH_RECORD_SCHEMA = "mu2net/search_record/v1"


def finite_or_none(x: float) -> float | None:
    return None if x is None or math.isinf(x) else float(x)


# === Specs and results ======================================================================


@dataclass(frozen=True)
class ChildSpec:
    """Everything needed to train one child, decided by `plan_generation`.

    `parent` / `parent_task`: the parent path's hash and task (the root, another task, or this
    task). `parent_score`: the score the child must reach to be retained, None (= -inf) unless
    the parent is of the same task. `hparams`: the child's full hparams (incl. the generation's
    `ds_*` and the learned `_mu_|<action>` probabilities). `plan`: per component, reuse a
    frozen component, clone one, resize the root's position embeddings, or init fresh.
    `mutations`: the actions that fired (incl. the generation's `hp:ds_*` and forced ones).
    `data_seed`: the shuffle seed, shared by the generation's children (same batches).
    """

    task: str
    generation: int
    index: int
    parent: str
    parent_task: str
    parent_score: float | None
    hparams: Mapping[str, Any]
    plan: tuple[Slot, ...]
    mutations: tuple[str, ...]
    data_seed: int
    cycle: int = 0
    base_version: int = 0
    method_version: str = ""

    @property
    def trainable(self) -> list[str]:
        return [s.name for s in self.plan if s.trainable]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": CHILD_SPEC_SCHEMA, "task": self.task, "generation": self.generation,
                "index": self.index, "parent": self.parent, "parent_task": self.parent_task,
                "parent_score": finite_or_none(self.parent_score), "hparams": dict(self.hparams),
                "plan": [s.to_dict() for s in self.plan], "mutations": list(self.mutations),
                "data_seed": self.data_seed, "cycle": self.cycle,
                "base_version": self.base_version, "method_version": self.method_version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChildSpec:
        if not isinstance(d, Mapping) or d.get("schema") != CHILD_SPEC_SCHEMA:
            raise SchemaError(f"child_spec.schema is invalid: expected {CHILD_SPEC_SCHEMA!r}")
        try:
            return cls(task=d["task"], generation=int(d["generation"]), index=int(d["index"]),
                       parent=d["parent"], parent_task=d["parent_task"],
                       parent_score=d["parent_score"], hparams=dict(d["hparams"]),
                       plan=tuple(Slot.from_dict(s) for s in d["plan"]),
                       mutations=tuple(d["mutations"]), data_seed=int(d["data_seed"]),
                       cycle=int(d["cycle"]), base_version=int(d["base_version"]),
                       method_version=d["method_version"])
        except KeyError as exc:
            raise SchemaError(f"child_spec.{exc.args[0]} is missing") from None


@dataclass(frozen=True)
class ChildResult:
    """One trained child: its path (new components owned by the task), metrics, whether it was
    retained (`improved`), its score, and `new_blobs` (sha256 -> `.npz` file written in the
    step's out_dir; empty for a rejected child, whose parameters are discarded)."""

    spec: ChildSpec
    path: Path
    metrics: Mapping[str, Any]
    improved: bool
    score: float
    new_blobs: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": CHILD_RESULT_SCHEMA, "spec": self.spec.to_dict(),
                "path": self.path.to_dict(), "metrics": dict(self.metrics),
                "improved": self.improved, "score": finite_or_none(self.score),
                "new_blobs": dict(sorted(self.new_blobs.items()))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChildResult:
        if not isinstance(d, Mapping) or d.get("schema") != CHILD_RESULT_SCHEMA:
            raise SchemaError(f"child_result.schema is invalid: expected "
                              f"{CHILD_RESULT_SCHEMA!r}")
        try:
            score = d["score"]
            return cls(spec=ChildSpec.from_dict(d["spec"]), path=Path.from_dict(d["path"]),
                       metrics=dict(d["metrics"]), improved=bool(d["improved"]),
                       score=-math.inf if score is None else float(score),
                       new_blobs=dict(d["new_blobs"]))
        except KeyError as exc:
            raise SchemaError(f"child_result.{exc.args[0]} is missing") from None


# === the compact record of a cycle, published with its path ================================


def _parent_kind(parent_task: str, task: str) -> str:
    return "self" if parent_task == task else "root" if parent_task == ROOT_TASK else "other"


def _round(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def history_entry(r: ChildResult) -> dict[str, Any]:
    """One trained child as the search history records it (dashboards, the run report)."""
    return {
        "generation": r.spec.generation, "index": r.spec.index, "parent": r.spec.parent,
        "parent_task": r.spec.parent_task, "improved": r.improved,
        "score": finite_or_none(r.score), "parent_score": r.spec.parent_score,
        "validation_accuracy": r.metrics.get("validation_accuracy"),
        "validation_curve": list(r.metrics.get("validation_curve", [])),
        "mutations": list(r.spec.mutations),
        "actions": {s.name: s.action for s in r.spec.plan},
        "num_layers": r.spec.hparams.get("num_layers"),
        "ds_image_size": r.spec.hparams.get("ds_image_size"),
        "train_seconds": r.metrics.get("train_seconds"),
        "accounted_params": r.metrics.get("accounted_params"),
        "flops": r.metrics.get("flops"), "path": r.path.hash,
        "mu": {k: v for k, v in sorted(r.spec.hparams.items()) if k.startswith("_mu_")}}


def search_record(state: SearchState) -> dict[str, Any]:
    """What the cycle's search did, compact enough to travel in the committed path's metrics
    (`metrics["search"]`, SEARCH_RECORD_SCHEMA): the report draws the search from it long
    after the run's artifacts are gone.

    `children`: one row per trained child in training order, `[generation, index, parent kind
    (self | other | root), parent task, mutations, validation accuracy, score, kept]` (kept:
    retained in the population when trained). `mu`: per generation, the mean learned mutation
    probability of each action over its children (`*` is the base `_mu_`). `published`:
    `[generation, index]` of the child whose path the cycle publishes (None: an older path).
    `start_score`: the score of the task's own path the cycle started from (iterate), if any.
    """
    rows, by_generation, published = [], {}, None
    best = state.best()
    for h in state.history:
        rows.append([h["generation"], h["index"], _parent_kind(h["parent_task"], state.task),
                     h["parent_task"], list(h["mutations"]),
                     _round(h.get("validation_accuracy")), _round(h.get("score")),
                     bool(h["improved"])])
        by_generation.setdefault(h["generation"], []).append(h.get("mu") or {})
        if best is not None and h.get("path") == best.path.hash:
            published = [h["generation"], h["index"]]
    mu = []
    for g in sorted(by_generation):
        children = by_generation[g]
        actions = sorted({k for c in children for k in c if k != "_mu_"})
        mean = {"*": _round(np.mean([float(c.get("_mu_", 0.0)) for c in children]))}
        for key in actions:
            mean[key[len("_mu_|"):]] = _round(np.mean([float(c.get(key, c.get("_mu_", 0.0)))
                                                       for c in children]))
        mu.append(mean)
    start = [h["parent_score"] for h in state.history if h["generation"] == 0
             and h["parent_task"] == state.task and h.get("parent_score") is not None]
    return {"schema": SEARCH_RECORD_SCHEMA, "cycle": state.cycle, "mode": state.mode,
            "base_version": state.base_version, "children": rows, "mu": mu,
            "published": published, "start_score": _round(max(start)) if start else None}
