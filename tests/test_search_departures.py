"""The search's departures from docs/method.md (issue 26), each a `SearchConfig` field that is
off by default: a child compared on its final validation, a child budget in epochs of the
task, the own-lineage parent fallback, cloning every root block, an annealed same-task
learning rate; and the stuck-lineage measurement (`mu2net.lineage`)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
from mu2net_helpers import digits_task, random_image_batches, tiny_config

from mu2net.config import Config, get_config
from mu2net.errors import ConfigError
from mu2net.lineage import cycle_record, noise_margin, summarise
from mu2net.model import build_model, component_names, init_component
from mu2net.mutations import ancestry, anneal_lr, plan_components, value_index
from mu2net.schema import ROOT_TASK, Path, SystemVersion, SystemView
from mu2net.search import plan_generation
from mu2net.search_state import Candidate, SearchState, derive_rng

CONFIG = tiny_config(examples_between_validations=64, test_examples=128)
_CACHE: dict = {}


def with_search(config: Config, **changes) -> Config:
    return config.replace(search=dataclasses.replace(config.search, **changes))


def departure_defaults() -> dict:
    """Each departure field's `SearchConfig` default: the paper's behaviour."""
    from mu2net.config import SEARCH_DEPARTURES, SearchConfig

    return {f: SearchConfig.__dataclass_fields__[f].default for f in SEARCH_DEPARTURES}


def _root():
    if "root" not in _CACHE:
        from mu2net.root import build_root

        _CACHE["root"] = build_root(CONFIG, mode="random", seed=0)[0]
        _CACHE["info"] = digits_task("digits", limit=60).info
    return _CACHE["root"]


def _path(task, hparams_changes=None, accuracy=0.5, curve=None):
    root = _root()
    hp = {**root.hparams, "num_classes": 10, **(hparams_changes or {})}
    metrics = {"validation_accuracy": accuracy}
    if curve is not None:
        metrics["validation_curve"] = curve
    return Path(task, root.components, hp, CONFIG.method_version, parent=root.hash,
                parent_task=root.task, metrics=metrics)


def _system(*paths):
    root = _root()
    by_task = {p.task: p for p in paths}
    version = SystemVersion(len(paths), None if not paths else len(paths) - 1, root.hash,
                            {t: p.hash for t, p in by_task.items()})
    return SystemView(version, root, by_task)


def _state(population=(), seed=0, config=CONFIG, mode="onboard"):
    _root()
    return SearchState(task="digits", task_info=_CACHE["info"], config_name=config.name,
                       method_version=config.method_version, base_version=0, seed=seed,
                       run_id="r", mode=mode, population=tuple(population))


# === config ==================================================================================


def test_every_departure_is_off_in_every_named_config_but_those_an_ab_switched_on():
    defaults = departure_defaults()
    assert defaults == {"child_quality": "best", "child_epochs": 0.0, "own_lineage_fallback": 0.0,
                        "clone_root_blocks": False, "same_task_lr_steps": 0}
    for name in ("testing", "cpu_demo", "gpu", "tpu"):
        search = get_config(name).search
        on = {f: getattr(search, f) for f, default in defaults.items()
              if getattr(search, f) != default}
        assert on == SWITCHED_ON.get(name, {}), name
    # the paper's K on the accelerator configs
    assert get_config("gpu").search.children_per_generation == 4
    assert get_config("tpu").search.children_per_generation == 4


@pytest.mark.parametrize("field,value,match", [
    ("child_quality", "last", "search.child_quality='last'.*'best', 'final'"),
    ("child_epochs", -1.0, "search.child_epochs=-1.0"),
    ("own_lineage_fallback", 1.5, r"search.own_lineage_fallback=1.5 .*\[0, 1\]"),
    ("same_task_lr_steps", -2, "search.same_task_lr_steps=-2"),
])
def test_bad_departure_values_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        with_search(CONFIG, **{field: value})


def test_departures_round_trip_through_json_and_change_the_method_version():
    config = with_search(CONFIG, child_quality="final", child_epochs=8.0,
                         own_lineage_fallback=0.75, clone_root_blocks=True,
                         same_task_lr_steps=1)
    assert Config.from_json(config.to_json()) == config
    assert config.method_version != CONFIG.method_version


# === a child's budget in epochs of its task ==================================================


def test_child_budget_follows_the_task_size_within_the_cap():
    from mu2net.training import child_budget

    today = get_config("cpu_demo")  # 8 validations of <= 4,096 examples, batch 64
    assert child_budget(today, 8000).examples == 8 * 4096  # 4 epochs of an 8,000-image task
    assert child_budget(today, 3500).steps_per_validation == math.ceil(3500 / 64)
    epochs = with_search(today, child_epochs=8.0, examples_between_validations=16384)
    assert child_budget(epochs, 8000).steps_per_validation == math.ceil(8000 / 64)  # 8 epochs
    assert child_budget(epochs, 3500) == child_budget(today, 3500)  # a small task: as today
    # the cap still binds
    assert child_budget(epochs, 50_000).steps_per_validation == 16384 // 64
    # fractional epochs: 2 epochs of 1,000 over 8 validations = 250 examples each
    assert child_budget(with_search(today, child_epochs=2.0), 1000).steps_per_validation == 4


# === children compared on their final validation =============================================


def _train(quality, best_start=-math.inf, lr=0.1):
    from mu2net.model import component_layers
    from mu2net.training import Budget, make_optimizer, train_model

    arch = CONFIG.architecture
    h = {**CONFIG.hparams.defaults(), "num_classes": 5, "adapter_layers": []}
    names = component_names(h)
    params = {n: init_component(n, arch, h, i) for i, n in enumerate(names)}
    model = build_model(arch, h, params, trainable=names)
    train_ds, val_ds = random_image_batches()
    budget = Budget(16, 2, 3)
    outcome = train_model(model, train_ds, val_ds, budget=budget,
                          optimizer=make_optimizer({**h, "opt_lr": lr}, budget.total_steps,
                                                   CONFIG),
                          trainable=names, score_fn=lambda q: q, best_start=best_start,
                          quality=quality)
    final = {n: layer.get_params() for n, layer in component_layers(model).items()
             if n in names}
    return outcome, final


def test_final_quality_retains_the_last_validation_and_its_weights():
    best, _ = _train("best")
    assert best.quality == max(best.curve)
    # the bar is compared with the final validation only: >= passes, above it fails
    final, weights = _train("final", best_start=best.curve[-1])
    assert final.curve == best.curve  # same seeds, same training
    assert final.quality == final.curve[-1] and final.improved
    for name, params in weights.items():
        for key, value in params.items():
            np.testing.assert_array_equal(final.params[name][key], value)
    rejected, _ = _train("final", best_start=best.curve[-1] + 1e-6)
    assert not rejected.improved and rejected.best_score == best.curve[-1] + 1e-6


def test_unknown_child_quality_is_refused():
    with pytest.raises(ConfigError, match="quality='last'"):
        _train("last")


# === the own-lineage fallback =================================================================


def _fallback_counts(config, mode, runs=120):
    # decay selection passes over a member with many offspring (0.5 ** 60), so every child
    # falls back to the uniform draw
    own = Candidate(_path("digits", {"opt_lr": 0.02}, accuracy=0.7), 0.7, 60)
    system = _system(_path("letters"), own.path)
    counts = Counter()
    for seed in range(runs):
        _, specs = plan_generation(_state([own], seed, config, mode), system, config)
        counts.update(s.parent_task for s in specs)
    return counts


def test_own_lineage_fallback_keeps_iterate_children_in_the_lineage():
    off = _fallback_counts(CONFIG, "iterate")
    assert off["digits"] / 240 == pytest.approx(1 / 3, abs=0.08)  # root, letters, own
    always = _fallback_counts(with_search(CONFIG, own_lineage_fallback=1.0), "iterate")
    assert always == Counter({"digits": 240})
    half = _fallback_counts(with_search(CONFIG, own_lineage_fallback=0.5), "iterate")
    assert half["digits"] / 240 == pytest.approx(0.5 + 0.5 / 3, abs=0.08)
    # an onboard cycle (no published path yet) keeps the paper's draw
    onboard = _fallback_counts(with_search(CONFIG, own_lineage_fallback=1.0), "onboard")
    assert onboard[ROOT_TASK] > 0 and onboard["letters"] > 0


# === cloning every root block =================================================================


def _root_plan(config, seed):
    root = _root()
    hparams = {**root.hparams, "num_classes": 10, "adapter_layers": []}
    slots, _ = plan_components(hparams, ancestry(root, {}, root), "digits",
                               config.architecture, {}, derive_rng(seed, "plan"), config,
                               init_seed=lambda name: 1)
    return {s.name: s.action for s in slots}


def test_clone_root_blocks_clones_everything_a_root_child_takes_from_the_root():
    reused = Counter(a for seed in range(20) for a in _root_plan(CONFIG, seed).values())
    assert reused["reuse"] > 0  # the paper: each root component cloned with probability mu
    config = with_search(CONFIG, clone_root_blocks=True)
    for seed in range(20):
        actions = _root_plan(config, seed)
        assert "reuse" not in actions.values(), actions
        assert actions["head"] == "init"  # a head is never taken from the root


def test_clone_root_blocks_leaves_a_same_task_parent_alone():
    own = _path("digits")  # its components are the root's, but the parent is the task's
    config = with_search(CONFIG, clone_root_blocks=True)
    hparams = {**own.hparams, "adapter_layers": []}
    actions = [s.action for seed in range(10) for s in plan_components(
        dict(hparams), ancestry(own, {}, _root()), "digits", config.architecture, {},
        derive_rng(seed, "plan"), config, init_seed=lambda name: 1)[0]]
    assert "reuse" in actions


# === an annealed same-task learning rate ====================================================


def test_anneal_lr_steps_down_the_value_list_and_clips():
    config = with_search(CONFIG, same_task_lr_steps=2)
    values = config.hparams.get("opt_lr").values
    h = {"opt_lr": values[5]}
    anneal_lr(h, config)
    assert h["opt_lr"] == values[3]
    h = {"opt_lr": values[1]}
    anneal_lr(h, config)
    assert h["opt_lr"] == values[0]


def test_same_task_children_start_below_their_parents_lr():
    values = CONFIG.hparams.get("opt_lr").values
    parent_lr = values[-2]
    own = Candidate(_path("digits", {"opt_lr": parent_lr}, accuracy=0.7), 0.7, 0)
    system = _system(_path("letters"))

    def lr_indices(config):
        out = []
        for seed in range(30):
            _, specs = plan_generation(_state([own], seed, config), system, config)
            out += [value_index(s.hparams["opt_lr"], values) for s in specs
                    if s.parent_task == "digits"]
        return out

    top = len(values) - 2
    assert set(lr_indices(CONFIG)) <= {top - 1, top, top + 1}
    annealed = lr_indices(with_search(CONFIG, same_task_lr_steps=3))
    assert annealed and set(annealed) <= {top - 4, top - 3, top - 2}


# === the stuck-lineage measurement ===========================================================


def _entry(g, i, parent_task, score, improved, parent_score=None, curve=(0.5,), path="p"):
    return {"generation": g, "index": i, "parent": "x", "parent_task": parent_task,
            "improved": improved, "score": score, "parent_score": parent_score,
            "validation_accuracy": max(curve), "validation_curve": list(curve),
            "mutations": [], "path": path}


def test_noise_margin_is_two_standard_errors():
    assert noise_margin(0.9, 500) == pytest.approx(2 * math.sqrt(0.09 / 500))
    assert noise_margin(1.0, 500) == 0.0


def test_cycle_record_classes_children_and_the_cause_of_a_stuck_cycle():
    start = _path("digits", accuracy=0.9, curve=[0.85, 0.9, 0.88])
    history = (
        _entry(0, 0, "digits", 0.895, False, 0.9, curve=[0.89, 0.895, 0.89], path="a"),
        _entry(0, 1, "digits", 0.80, False, 0.9, curve=[0.8], path="b"),
        _entry(1, 0, ROOT_TASK, 0.70, True, None, curve=[0.7], path="c"),
        _entry(1, 1, "letters", 0.95, True, None, curve=[0.95], path="d"),
    )
    state = _state([Candidate(start, 0.9, 4)], mode="iterate").replace(history=history)
    record = cycle_record(state, start, 0.9, 500)
    assert not record["kept"] and record["cause"] == "noise"
    assert [r["outcome"] for r in record["rows"]] == ["near", "below", "wasted", "useful"]
    assert (record["self"], record["restarts"]) == (2, 2)
    assert record["start_inflation"] == pytest.approx(0.02)
    assert record["rows"][0]["final_margin"] == pytest.approx(0.895 * 0.89 / 0.895 - 0.9,
                                                              abs=1e-4)
    # no near miss: "worse"; no same-task child at all: "restarts"
    worse = state.replace(history=history[1:])
    assert cycle_record(worse, start, 0.9, 500)["cause"] == "worse"
    restarts = state.replace(history=history[2:3])
    assert cycle_record(restarts, start, 0.9, 500)["cause"] == "restarts"
    # a kept child: the cycle ends with one of its children
    child = _path("digits", {"opt_lr": 0.02}, accuracy=0.93)
    kept_state = state.replace(population=(Candidate(child, 0.93, 0),
                                           Candidate(start, 0.9, 4)),
                               history=(_entry(0, 0, "digits", 0.93, True, 0.9,
                                               path=child.hash),))
    kept = cycle_record(kept_state, start, 0.9, 500)
    assert kept["kept"] and kept["cause"] is None

    summary = summarise([record, kept, cycle_record(worse, start, 0.9, 500),
                         {**record, "mode": "onboard"}])
    assert summary["iterate_cycles"] == 3 and summary["stuck"] == 2
    assert summary["stuck_fraction"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["causes"] == {"noise": 1, "restarts": 0, "worse": 1}
    assert summary["outcomes"]["restart:wasted"] == 2
    assert summary["own_lineage_share"] == pytest.approx(4 / 8, abs=1e-3)


# === why no "re-measured parent bar" mechanism ===============================================


def test_a_parent_re_measured_on_the_same_subset_reproduces_its_recorded_bar(tmp_path):
    """The bar a child faces is its parent's best validation on the task's fixed subset.
    Evaluating the parent again on that subset gives the same number: the bar's inflation is
    the choice among V checkpoints (what `child_quality="final"` removes), not evaluation
    noise, so re-measuring on the same subset would change nothing."""
    from mu2net_helpers import root_system

    from mu2net.blobs import ChainBlobs, FileBlobs
    from mu2net.predict import path_accuracy
    from mu2net.search import start_cycle, train_child
    from mu2net.training import validation_subset

    system, store = root_system(CONFIG, str(tmp_path / "store"))
    task = digits_task("digits", limit=300)
    state = start_cycle(system, task.info, CONFIG, seed=1, run_id="r")
    state, specs = plan_generation(state, system, CONFIG)
    child = train_child(specs[0], state, system, task, CONFIG, store, str(tmp_path / "out"))
    assert child.improved
    images, labels = validation_subset(task.info.name, *task.arrays("validation"),
                                       CONFIG.search.validation_examples)
    again = path_accuracy(child.path, images, labels,
                          ChainBlobs([FileBlobs(child.new_blobs), store]))
    assert again == pytest.approx(child.path.metrics["validation_accuracy"], abs=1e-6)


# The method versions the named configs had before the departures existed (main at b932905).
RECORDED_METHOD_VERSIONS = {"testing": "m-6b1c18729fce", "cpu_demo": "m-50f3b2918935",
                            "gpu": "m-57609aa9427a", "tpu": "m-917b600c092f"}
# The departures a named config switches on, each chosen by a recorded A/B (config.py's
# docstring names it); every other field of every named config stays at the paper's.
SWITCHED_ON: dict[str, dict] = {}


@pytest.mark.parametrize("name", sorted(RECORDED_METHOD_VERSIONS))
def test_departures_at_their_defaults_keep_the_method_version_and_old_config_json_loads(name):
    """A config JSON recorded before the departures existed (no such fields, its method version
    of then) still loads, as the named config with every departure at its default: upgrading
    must not invalidate a store's recorded configs or an in-flight search. Setting a departure
    is a new method version, and the named configs set only those in `SWITCHED_ON`."""
    config = get_config(name)
    defaults = departure_defaults()
    paper = with_search(config, **defaults)
    recorded = paper.to_dict()
    for field in defaults:
        del recorded["search"][field]
    recorded["method_version"] = RECORDED_METHOD_VERSIONS[name]
    assert Config.from_dict(recorded) == paper
    assert paper.method_version == RECORDED_METHOD_VERSIONS[name]
    assert config == with_search(paper, **SWITCHED_ON.get(name, {}))
    assert (config.method_version == paper.method_version) == (name not in SWITCHED_ON)
    assert with_search(paper, clone_root_blocks=True).method_version != paper.method_version
