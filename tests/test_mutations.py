"""Each mutation of docs/method.md §3: incremental moves, the learned per-action probability,
generation-level data hparams, depth change, adapter insertion and layer cloning (the
component plan with its ancestor search)."""

import dataclasses
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from mu2net.blobs import ParamsCache
from mu2net.config import get_config
from mu2net.errors import ConfigError, SchemaError
from mu2net.hparams import MU_VALUES
from mu2net.model import component_names, component_shapes, init_component
from mu2net.mutations import (
    Slot,
    ancestry,
    do_mutate,
    incremental_mutation,
    mutate_adapters,
    mutate_hparams,
    plan_components,
    sample_ds_hparams,
    slot_params,
    value_index,
)
from mu2net.root import build_root
from mu2net.schema import Component, Path, sha256_hex

CONFIG = get_config("testing")
ARCH = CONFIG.architecture
FIXED = CONFIG.replace(search=dataclasses.replace(CONFIG.search, mu_autotune=False))
ROOT, ROOT_BLOBS = build_root(CONFIG, mode="random", seed=0)


def rng(seed=0):
    return np.random.default_rng(seed)


def child_hparams(**changes):
    h = dict(ROOT.hparams)
    h.update(num_classes=3)
    h.update(changes)
    return h


# === incremental mutation and the learned mu =================================================


def test_incremental_mutation_moves_one_step_either_way_and_clips_at_the_ends():
    values = (1, 2, 3, 4)
    r = rng()
    moves = Counter(incremental_mutation(2, values, r) for _ in range(4000))
    assert set(moves) == {1, 3}
    assert moves[1] / 4000 == pytest.approx(0.5, abs=0.03)
    ends = Counter(incremental_mutation(4, values, r) for _ in range(4000))
    assert set(ends) == {3, 4} and ends[4] / 4000 == pytest.approx(0.5, abs=0.03)
    assert {incremental_mutation(0.04, MU_VALUES, r) for _ in range(200)} == {0.02, 0.06}
    assert {incremental_mutation(False, (False, True), r) for _ in range(100)} == {False, True}
    with pytest.raises(ConfigError, match="not in the value list"):
        incremental_mutation(5, values, r)


def test_do_mutate_forced_action_always_fires_and_stores_nothing():
    h = {"_mu_": 0.02}
    assert all(do_mutate(h, "clone:encoder_norm", rng(i), CONFIG) for i in range(50))
    assert h == {"_mu_": 0.02}


def test_do_mutate_learns_a_per_action_probability_that_is_inherited():
    # first use: starts from _mu_, is itself mutated with probability _mu_, stored in the child
    stored = Counter()
    fired = 0
    for seed in range(3000):
        h = {"_mu_": 0.1}
        fired += do_mutate(h, "hp:opt_lr", rng(seed), CONFIG)
        stored[h["_mu_|hp:opt_lr"]] += 1
    assert set(stored) == {0.08, 0.1, 0.12}
    assert stored[0.1] / 3000 == pytest.approx(0.9, abs=0.02)  # meta-mutation with prob _mu_
    assert fired / 3000 == pytest.approx(0.1, abs=0.02)
    # an inherited per-action probability takes precedence over _mu_
    fired = sum(do_mutate({"_mu_": 0.02, "_mu_|hp:opt_lr": 0.3}, "hp:opt_lr", rng(s), CONFIG)
                for s in range(3000))
    assert fired / 3000 == pytest.approx(0.3, abs=0.03)
    # without auto-tuning nothing is stored and the probability is used as is
    h = {"_mu_": 0.1, "_mu_|hp:opt_lr": 1.0}
    assert do_mutate(h, "hp:opt_lr", rng(), FIXED) and h == {"_mu_": 0.1, "_mu_|hp:opt_lr": 1.0}


# === hyperparameter mutations ================================================================


def test_optimizer_and_mu_hparams_move_one_step_along_their_lists():
    always = {f"_mu_|hp:{k}": 1.0 for k in ("opt_lr", "opt_momentum", "opt_nesterov",
                                            "opt_lr_warmup_ratio", "_mu_")}
    never = {"_mu_|hp:num_layers": 0.0, "_mu_|hp:adapter_dim": 0.0}
    for seed in range(20):
        h = child_hparams(**always, **never)
        before = dict(h)
        fired = mutate_hparams(h, FIXED, rng(seed))
        assert sorted(fired) == sorted(f"hp:{k}" for k in (
            "opt_lr", "opt_momentum", "opt_nesterov", "opt_lr_warmup_ratio", "_mu_"))
        for key in ("opt_lr", "opt_momentum", "opt_lr_warmup_ratio", "_mu_"):
            values = CONFIG.hparams.get(key).values
            step = values.index(h[key]) - values.index(before[key])
            at_end = before[key] in (values[0], values[-1])
            assert abs(step) == 1 or (at_end and step == 0), key
        assert h["opt_nesterov"] != before["opt_nesterov"] or before["opt_nesterov"] is False
        assert h["num_layers"] == before["num_layers"]
        assert not any(k.startswith("ds_") and h[k] != before[k] for k in h)


def test_num_layers_mutation_removes_or_adds_one_layer_within_range():
    seen = Counter()
    for seed in range(200):
        h = child_hparams(**{"_mu_|hp:num_layers": 1.0, "_mu_": 0.02})
        mutate_hparams(h, FIXED, rng(seed))
        seen[h["num_layers"]] += 1
    assert set(seen) == {1, 3}  # root has 2 layers; range is 0..3
    tops = set()
    for seed in range(50):
        h = child_hparams(num_layers=3, **{"_mu_|hp:num_layers": 1.0})
        mutate_hparams(h, FIXED, rng(seed))
        tops.add(h["num_layers"])
    assert tops == {2, 3}  # clipped at max_layers=3


def test_data_hparams_are_defaults_without_a_best_path_and_mutated_from_it_otherwise():
    ds, fired = sample_ds_hparams(CONFIG, None, rng())
    assert fired == [] and ds == {k: v for k, v in CONFIG.hparams.defaults().items()
                                  if k.startswith("ds_")}
    best = child_hparams(ds_image_size=20, **{"_mu_|hp:ds_image_size": 0.3, "_mu_": 0.3})
    sizes = Counter()
    for seed in range(300):
        ds, fired = sample_ds_hparams(CONFIG, best, rng(seed))
        sizes[ds["ds_image_size"]] += 1
        assert "_mu_" not in ds and "_mu_|hp:ds_image_size" in ds
        assert ("hp:ds_image_size" in fired) == (ds["ds_image_size"] != 20) or \
            ds["ds_image_size"] == 20
    assert set(sizes) == {16, 20}  # 20 is the top of (12, 16, 20): stays or moves down
    assert 0.6 < sizes[20] / 300 < 0.95


def test_data_hparam_mutation_uses_the_default_mu_not_the_best_paths():
    # The best path's own `_mu_` plays no part (mu3Net's ds dict has no `_mu_`): a best path
    # at mu 0.02 and one at mu 0.30 sample the same data hparams from the same rng, and the
    # learned probabilities move with the default mu (0.1 in the testing config).
    low = child_hparams(ds_image_size=16, _mu_=0.02)
    high = child_hparams(ds_image_size=16, _mu_=0.30)
    moved = 0
    for seed in range(200):
        a, fired_a = sample_ds_hparams(CONFIG, low, rng(seed))
        b, fired_b = sample_ds_hparams(CONFIG, high, rng(seed))
        assert (a, fired_a) == (b, fired_b)
        moved += a["_mu_|hp:ds_image_size"] != 0.1
    assert CONFIG.hparams.get("_mu_").default == 0.1
    assert 0.03 < moved / 200 < 0.2  # meta-mutated with probability 0.1


def test_add_residual_adapter_inserts_before_blocks_and_drops_those_of_removed_layers():
    h = child_hparams(num_layers=3, **{f"_mu_|add:residual_adapter_{i}": 1.0 for i in range(3)})
    assert mutate_adapters(h, FIXED, rng()) == [f"add:residual_adapter_{i}" for i in range(3)]
    assert h["adapter_layers"] == [0, 1, 2]
    h["num_layers"] = 1
    assert mutate_adapters(h, FIXED, rng()) == [] and h["adapter_layers"] == [0]
    off = FIXED.replace(search=dataclasses.replace(FIXED.search, mutate_adapters=False))
    h = child_hparams(**{"_mu_|add:residual_adapter_0": 1.0})
    assert mutate_adapters(h, off, rng()) == [] and h["adapter_layers"] == []


# === component plan: cloning, sharing, depth and resolution changes ==========================


def fake_comp(name, creator, hparams):
    shapes = component_shapes(name, ARCH, hparams)
    blob = sha256_hex(f"{creator}:{name}:{sorted(hparams.items())}".encode())
    return Component(Component.make_id(creator, name, blob), name, creator, shapes, blob)


def task_path(task, hparams, reuse_from_root=(), parent=ROOT):
    comps = []
    for name in component_names(hparams):
        root_comp = ROOT.component(name)
        if name in reuse_from_root and root_comp is not None:
            comps.append(root_comp)
        else:
            comps.append(fake_comp(name, task, hparams))
    return Path(task, tuple(comps), dict(hparams), CONFIG.method_version, parent=parent.hash,
                parent_task=parent.task, metrics={"validation_accuracy": 0.5})


def plan(h, ancestry, task="digits", users=None, config=FIXED, seed=0):
    h = dict(h)
    slots, fired = plan_components(h, ancestry, task, ARCH, users or {}, rng(seed), config,
                                   init_seed=lambda name: 1000 + len(name))
    return {s.name: s for s in slots}, fired, h


def test_a_new_task_shares_frozen_root_components_clones_encoder_norm_and_inits_its_head():
    slots, fired, _ = plan(child_hparams(**{"_mu_": 0.0}), [ROOT])
    actions = {n: s.action for n, s in slots.items()}
    assert actions == {"cls": "reuse", "embedding": "reuse", "posembed_input": "reuse",
                       "encoderblock_0": "reuse", "encoderblock_1": "reuse",
                       "encoder_norm": "clone", "head": "init"}
    assert slots["encoderblock_1"].source == ROOT.component("encoderblock_1")
    assert fired == ["clone:encoder_norm"]  # forced (docs/method.md §3.1): always fires


def test_clone_mutation_makes_a_trainable_copy_of_a_frozen_component():
    h = child_hparams(**{"_mu_": 0.0, "_mu_|clone:encoderblock_1": 1.0, "_mu_|clone:cls": 1.0})
    slots, fired, _ = plan(h, [ROOT])
    assert slots["encoderblock_1"].action == "clone" and slots["cls"].action == "clone"
    assert slots["encoderblock_1"].source == ROOT.component("encoderblock_1")
    assert sorted(fired) == ["clone:cls", "clone:encoder_norm", "clone:encoderblock_1"]
    assert slots["encoderblock_0"].action == "reuse"


def test_clone_probability_is_learned_per_component():
    """Each component's clone probability is inherited from the parent's own value for that
    component and moved at most one step of MU_VALUES (clipped at the ends), independently of
    the others (a shared value would put every component in one neighbourhood)."""
    assert CONFIG.search.mu_autotune
    parent = {"cls": 0.1, "embedding": 0.2, "encoderblock_0": 0.02, "encoderblock_1": 0.3}
    allowed = {"cls": {0.08, 0.1, 0.12}, "embedding": {0.18, 0.2, 0.22},
               "encoderblock_0": {0.02, 0.04}, "encoderblock_1": {0.28, 0.3}}
    inherited = {f"_mu_|clone:{name}": mu for name, mu in parent.items()}
    seen: dict[str, set[float]] = {name: set() for name in parent}
    for seed in range(40):
        _, _, h = plan(child_hparams(**inherited, _mu_=0.3), [ROOT], config=CONFIG, seed=seed)
        for name in parent:
            seen[name].add(h[f"_mu_|clone:{name}"])
    for name in parent:
        assert seen[name] <= allowed[name] and len(seen[name]) > 1, (name, seen[name])


def test_image_size_change_interpolates_the_root_posembed():
    h = child_hparams(ds_image_size=20)
    slots, _, _ = plan(h, [ROOT])
    assert list(slots) == component_names(h)  # and plans every component after it
    assert slots["posembed_input"].action == "interpolate"
    assert slots["posembed_input"].source == ROOT.component("posembed_input")


def test_layer_removal_and_readdition_from_ancestors():
    one = child_hparams(num_layers=1, num_classes=3)
    parent = task_path("digits", one, reuse_from_root=("cls", "embedding", "posembed_input"))
    slots, _, _ = plan(child_hparams(num_layers=1, **{"_mu_": 0.0}), [parent, ROOT])
    assert "encoderblock_1" not in slots  # removed top layer
    # the parent has one block; the second is re-added from the grandparent (the root)
    slots, _, _ = plan(child_hparams(num_layers=2, **{"_mu_": 0.0}), [parent, ROOT])
    assert slots["encoderblock_1"].source == ROOT.component("encoderblock_1")
    assert slots["encoderblock_0"].source == parent.component("encoderblock_0")
    # beyond every ancestor: a fresh block
    slots, _, _ = plan(child_hparams(num_layers=3), [parent, ROOT])
    assert slots["encoderblock_2"].action == "init" and slots["encoderblock_2"].seed == 1014


def test_heads_come_only_from_the_same_task_and_own_unshared_components_are_always_cloned():
    other = task_path("letters", child_hparams(num_classes=3))
    slots, _, _ = plan(child_hparams(**{"_mu_": 0.0}), [other, ROOT], task="digits")
    assert slots["head"].action == "init"  # same shape, but another task's head
    assert slots["encoderblock_0"].action == "reuse"  # frozen: created by another task
    own = task_path("digits", child_hparams(num_classes=3))
    users = {c.id: {"digits"} for c in own.components}
    slots, fired, _ = plan(child_hparams(**{"_mu_": 0.0}), [own, ROOT], users=users)
    assert all(s.action == "clone" for s in slots.values()), slots
    assert slots["head"].source == own.component("head") and fired == []
    # once another task shares a component, it is frozen for its creator too
    users[own.component("encoderblock_0").id] = {"digits", "letters"}
    slots, _, _ = plan(child_hparams(**{"_mu_": 0.0}), [own, ROOT], users=users)
    assert slots["encoderblock_0"].action == "reuse"


def test_adapter_with_another_dim_is_not_reused():
    parent = task_path("digits", child_hparams(adapter_layers=[0], adapter_dim=8))
    slots, _, _ = plan(child_hparams(adapter_layers=[0], adapter_dim=8, **{"_mu_": 0.0}),
                       [parent, ROOT], task="other")
    assert slots["residual_adapter_0"].action == "reuse"
    slots, _, _ = plan(child_hparams(adapter_layers=[0], adapter_dim=16), [parent, ROOT],
                       task="other")
    assert slots["residual_adapter_0"].action == "init"


# === found by the mutation check (README "Mutation score"): each test kills mutants that
# survived the tests above ======================================================================


def test_value_index_tells_bools_from_ints_and_matches_floats_within_tolerance():
    assert value_index(True, (False, True)) == 1 and value_index(False, (False, True)) == 0
    assert value_index(True, (1, True)) == 1 and value_index(1, (True, 1)) == 1  # 1 == True
    assert value_index(0.1 + 0.2, (0.1, 0.3)) == 1  # a float read back from JSON or summed
    assert value_index(1, (0.5, 1.0 + 1e-12)) == 1  # an int against a float list
    assert value_index(1e-13, (0.0, 1.0)) == 0  # near zero: the absolute tolerance
    with pytest.raises(ConfigError, match=r"value 0.31 is not in the value list \[0.1, 0.3\]"):
        value_index(0.31, (0.1, 0.3))


def test_incremental_mutation_steps_up_exactly_when_the_draw_is_below_one_half():
    # the direction is part of a plan's reproducibility from its seed
    for seed in range(40):
        up = np.random.default_rng(seed).random() < 0.5
        assert incremental_mutation(2, (1, 2, 3, 4), rng(seed)) == (3 if up else 1)


def test_do_mutate_falls_back_to_the_configs_mu_when_the_path_has_none():
    assert CONFIG.hparams.get("_mu_").default == 0.1
    fires = sum(do_mutate({}, "hp:opt_lr", rng(seed), FIXED) for seed in range(1000))
    assert 0.07 < fires / 1000 < 0.13
    h: dict = {}
    do_mutate(h, "hp:opt_lr", rng(), CONFIG)  # learned: stored, one step from 0.1 at most
    assert h["_mu_|hp:opt_lr"] in (0.08, 0.1, 0.12)


def test_data_hparams_start_from_the_best_paths_learned_probabilities_and_defaults():
    keys = sorted(k for k in CONFIG.hparams.names() if k.startswith("ds_"))
    always = child_hparams(**{f"_mu_|hp:{k}": 1.0 for k in keys})
    for seed in range(20):
        ds, fired = sample_ds_hparams(FIXED, always, rng(seed))
        assert fired == [f"hp:{k}" for k in keys]
        assert {k: ds[f"_mu_|hp:{k}"] for k in keys} == {k: 1.0 for k in keys}
    never = child_hparams(**{f"_mu_|hp:{k}": 0.0 for k in keys})
    del never["ds_image_size"]  # a best path without this hparam: the default
    for seed in range(20):
        ds, fired = sample_ds_hparams(FIXED, never, rng(seed))
        assert fired == [] and ds["ds_image_size"] == CONFIG.hparams.get("ds_image_size").default


def test_a_head_is_found_past_another_tasks_ancestor():
    own = task_path("digits", child_hparams(num_classes=3))
    other = task_path("letters", child_hparams(num_classes=3), parent=own)
    slots, _, _ = plan(child_hparams(**{"_mu_": 0.0}), [other, own, ROOT], task="digits")
    assert slots["head"].action == "clone" and slots["head"].source == own.component("head")


def test_ancestry_walks_known_parents_to_the_root_and_jumps_over_retired_ones():
    a = task_path("digits", child_hparams())
    b = task_path("digits", child_hparams(num_layers=1), parent=a)
    c = task_path("letters", child_hparams(num_layers=1, num_classes=4), parent=b)
    known = {p.hash: p for p in (a, b, c)}
    assert ancestry(c, known, ROOT) == [c, b, a, ROOT]
    assert ancestry(c, {c.hash: c, a.hash: a}, ROOT) == [c, ROOT]  # b retired
    assert ancestry(a, known, ROOT) == [a, ROOT]
    assert ancestry(ROOT, known, ROOT) == [ROOT]


def test_slot_round_trips_and_names_a_missing_key():
    clone = Slot("encoderblock_0", "clone", ROOT.component("encoderblock_0"))
    init = Slot("head", "init", None, 7)
    for slot in (clone, init):
        assert Slot.from_dict(slot.to_dict()) == slot
    assert init.to_dict() == {"name": "head", "action": "init", "seed": 7, "source": None}
    assert clone.trainable and init.trainable
    assert not Slot("cls", "reuse", ROOT.component("cls")).trainable
    d = init.to_dict()
    del d["seed"]
    with pytest.raises(SchemaError, match=r"slot\.seed is missing"):
        Slot.from_dict(d)
    with pytest.raises(SchemaError, match="slot.action='copy' is invalid"):
        Slot("head", "copy", None)
    with pytest.raises(SchemaError, match="source component is required"):
        Slot("head", "clone", None)


def test_slot_params_init_interpolate_and_a_private_copy_of_the_source():
    cache = ParamsCache(SimpleNamespace(get_blob=ROOT_BLOBS.__getitem__))
    h = child_hparams(ds_image_size=20)  # a 5 x 5 grid of 4-pixel patches
    block = slot_params(Slot("encoderblock_0", "init", None, 3), h, CONFIG, cache)
    expected = init_component("encoderblock_0", ARCH, h, 3)  # from the slot's seed
    assert set(block) == set(expected)
    assert all(np.array_equal(block[k], expected[k]) for k in block)
    head = slot_params(Slot("head", "init", None, 3), h, CONFIG, cache)  # sized by the hparams
    assert head["kernel"].shape == (ARCH.hidden_size, 3)
    pos = slot_params(Slot("posembed_input", "interpolate", ROOT.component("posembed_input")),
                      h, CONFIG, cache)
    assert pos["pos_embedding"].shape[-2] == 5 * 5 + 1
    source = ROOT.component("encoderblock_0")
    copy = slot_params(Slot("encoderblock_0", "clone", source), h, CONFIG, cache)
    published = cache.params(source.blob)
    assert set(copy) == set(published)
    assert all(np.array_equal(copy[k], published[k]) for k in copy)
    key = next(iter(copy))
    copy[key][...] = 0  # writable, and the published component is untouched
    assert not np.array_equal(copy[key], published[key]) or not published[key].any()
