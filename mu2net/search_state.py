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
from mu2net.schema import HASH_RE, Path, TaskInfo, validate_task_name

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
        if self.mode not in ("onboard", "iterate"):
            raise SchemaError(f"search_state.mode={self.mode!r} is invalid: expected 'onboard' "
                              "or 'iterate'")
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
