import math

import numpy as np
import pytest

from mu2net.errors import SchemaError
from mu2net.schema import Path, sha256_hex
from mu2net.search_state import Candidate, SearchState, derive_rng, derive_seed
from mu2net.task_info import TaskInfo


def state():
    info = TaskInfo("digits", "demo:digits", 2, ("a", "b"),
                    {"train": 4, "validation": 1, "test": 1}, (8, 8, 1), sha256_hex(b"d"))
    p1 = Path("digits", (), {"num_layers": 0}, "m-1")
    p2 = Path("digits", (), {"num_layers": 1}, "m-1")
    return SearchState(task="digits", task_info=info, config_name="testing",
                       method_version="m-1", base_version=3, seed=7, run_id="run-1",
                       cycle=1, generation=1,
                       population=(Candidate(p1, -math.inf, 2), Candidate(p2, 0.5, 0)),
                       staged_blobs={sha256_hex(b"b"): "/tmp/b.npz"},
                       history=({"child": 0, "accepted": True},))


def test_round_trip_including_minus_infinity():
    s = state()
    again = SearchState.from_json(s.to_json())
    assert again == s
    assert again.population[0].score == -math.inf
    assert again.best().path.hparams["num_layers"] == 1


def test_rng_is_determined_by_coordinates():
    a = derive_rng(1, "t", 0, 2).random(5)
    assert np.array_equal(a, derive_rng(1, "t", 0, 2).random(5))
    assert not np.array_equal(a, derive_rng(1, "t", 0, 3).random(5))
    assert not np.array_equal(a, derive_rng(2, "t", 0, 2).random(5))
    assert derive_seed(1, "x") == derive_seed(1, "x") != derive_seed(1, "y")
    s = state()
    assert np.array_equal(s.rng("plan").random(3),
                          SearchState.from_json(s.to_json()).rng("plan").random(3))


def test_ties_go_to_most_recent():
    s = state()
    p3 = Path("digits", (), {"num_layers": 2}, "m-1")
    s = s.replace(population=s.population + (Candidate(p3, 0.5, 0),))
    assert s.best().path is p3


def test_invalid_state_names_field():
    doc = state().to_dict()
    doc["generation"] = "1"
    with pytest.raises(SchemaError, match="search_state.generation"):
        SearchState.from_dict(doc)
    doc = state().to_dict()
    del doc["seed"]
    with pytest.raises(SchemaError, match="search_state.seed is missing"):
        SearchState.from_dict(doc)
