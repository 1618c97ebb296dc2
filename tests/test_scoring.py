"""The score q * s^(A/P) * s^(F/F_ref) and the FLOPs count, against hand-computed numbers."""

import math

import pytest

from mu2net.config import ArchitectureConfig, ScoreConfig, get_config
from mu2net.errors import SchemaError
from mu2net.schema import ROOT_TASK, Component, Path, SystemVersion, SystemView, sha256_hex
from mu2net.scoring import (
    config_scorer,
    forward_flops,
    path_metrics,
    path_score,
    path_score_config,
    recorded_score_config,
    score_constants,
    score_value,
)

ARCH = get_config("testing").architecture  # width 16, mlp 32, patch 4, 3 channels


def test_flops_of_the_testing_vit_by_hand():
    h = {"ds_image_size": 16, "num_layers": 2, "num_classes": 10, "adapter_layers": []}
    # 16 patches, 17 tokens. MACs: patch conv 16*(4*4*3)*16 = 12,288; per block
    # 4*17*16^2 (q,k,v,out) + 2*17^2*16 (logits, values) + 2*17*16*32 (MLP) = 44,064;
    # head 16*10 = 160. FLOPs = 2 x MACs.
    assert forward_flops(ARCH, h) == 2 * (12_288 + 2 * 44_064 + 160) == 201_152
    assert forward_flops(ARCH, {**h, "num_layers": 0}) == 2 * (12_288 + 160)
    # an adapter of dim 8 adds two 16x8 matmuls over 17 tokens
    with_adapter = {**h, "adapter_layers": [1], "adapter_dim": 8}
    assert forward_flops(ARCH, with_adapter) == 201_152 + 2 * (2 * 17 * 16 * 8)
    # the adapter of a removed top layer counts for nothing
    assert forward_flops(ARCH, {**with_adapter, "adapter_layers": [2]}) == 201_152
    # a larger image: 25 patches, 26 tokens
    assert forward_flops(ARCH, {**h, "ds_image_size": 20}) == 2 * (
        25 * 768 + 2 * (4 * 26 * 256 + 2 * 26 * 26 * 16 + 2 * 26 * 16 * 32) + 160)


def test_flops_of_vit_l16_at_384_match_the_paper_scale():
    arch = ArchitectureConfig(image_size=384, patch_size=16, hidden_size=1024, num_layers=24,
                              num_heads=16, mlp_dim=4096, max_layers=24)
    flops = forward_flops(arch, {"ds_image_size": 384, "num_layers": 24, "num_classes": 1000})
    assert flops == pytest.approx(3.82e11, rel=0.01)  # ~0.38 TFLOPs (docs/method.md §6.1)
    at_224 = forward_flops(arch, {"ds_image_size": 224, "num_layers": 24, "num_classes": 1000})
    assert at_224 == pytest.approx(1.23e11, rel=0.01)


def test_score_values_by_hand():
    cfg = ScoreConfig(scale=0.99, params_ref=1e6, flops_ref=1e6)
    assert score_value(0.8, 1e6, 2e6, cfg) == pytest.approx(0.8 * 0.99 * 0.99 ** 2)
    assert score_value(0.8, 1e6, 2e6, cfg) == pytest.approx(0.7762392, abs=1e-7)
    assert score_value(0.5, 0, 0, cfg) == 0.5
    # s = 1 switches the penalties off (the paper's chars / VDD configs)
    assert score_value(0.5, 1e9, 1e12, ScoreConfig(1.0, 1.0, 1.0)) == 0.5
    # the large configs: a 303M-param path at 0.38 TFLOPs loses ~0.24 % (docs/method.md §6.1)
    large = ScoreConfig(scale=0.99, params_ref=2.2e9, flops_ref=3.8e12)
    assert score_value(1.0, 303e6, 3.82e11, large) == pytest.approx(0.99 ** (
        303e6 / 2.2e9 + 3.82e11 / 3.8e12))
    assert score_value(1.0, 303e6, 3.82e11, large) == pytest.approx(0.99761, abs=1e-5)
    assert score_value(-math.inf, 1, 1, cfg) == -math.inf


def _comp(name, creator, shapes):
    blob = sha256_hex(f"{creator}/{name}/{shapes}".encode())
    return Component(Component.make_id(creator, name, blob), name, creator, shapes, blob)


def test_path_score_divides_shared_components_among_their_users():
    arch = ArchitectureConfig(image_size=8, patch_size=4, hidden_size=4, num_layers=0,
                              num_heads=1, mlp_dim=4, max_layers=0)
    shared = _comp("embedding", ROOT_TASK, {"kernel": (4, 4, 3, 4), "bias": (4,)})  # 196
    hp = {"ds_image_size": 8, "num_layers": 0, "num_classes": 2}
    root = Path(ROOT_TASK, (shared,), hp, "m")
    a = Path("a", (shared, _comp("head", "a", {"kernel": (4, 2), "bias": (2,)})), hp, "m",
             metrics={"validation_accuracy": 0.9})
    b = Path("b", (shared, _comp("head", "b", {"kernel": (4, 2), "bias": (2,)})), hp, "m",
             metrics={"validation_accuracy": 0.9})
    only_a = SystemView(SystemVersion(1, 0, root.hash, {"a": a.hash}), root, {"a": a})
    both = SystemView(SystemVersion(2, 1, root.hash, {"a": a.hash, "b": b.hash}), root,
                      {"a": a, "b": b})
    cfg = ScoreConfig(scale=0.5, params_ref=100.0, flops_ref=1e9)
    flops = forward_flops(arch, hp)  # 2 * (4 patches * 48 * 4 + 4 * 2) = 1552
    assert flops == 1552
    # the root counts as an owner of its components: alone (root + a): 98 + 10 accounted
    # params; shared with b (root + a + b): 196 / 3 + 10
    assert path_score(a, only_a, arch, cfg) == pytest.approx(
        0.9 * 0.5 ** (108 / 100) * 0.5 ** (1552 / 1e9))
    assert path_score(a, both, arch, cfg) == pytest.approx(
        0.9 * 0.5 ** ((196 / 3 + 10) / 100) * 0.5 ** (1552 / 1e9))
    assert path_score(a, both, arch, cfg) > path_score(a, only_a, arch, cfg)
    with pytest.raises(SchemaError, match="validation_accuracy"):
        path_score(root, both, arch, cfg)


def _scored_paths():
    """A root and a task path on the 4-wide arch of the test above (flops 1552, accounted
    params 98 + 10 against root + a)."""
    shared = _comp("embedding", ROOT_TASK, {"kernel": (4, 4, 3, 4), "bias": (4,)})
    hp = {"ds_image_size": 8, "num_layers": 0, "num_classes": 2}
    root = Path(ROOT_TASK, (shared,), hp, "m")
    a = Path("a", (shared, _comp("head", "a", {"kernel": (4, 2), "bias": (2,)})), hp, "m",
             metrics={"validation_accuracy": 0.9, "test_accuracy": 0.8, "seconds": 3.0,
                      "curve": [0.1, 0.2], "converged": True})
    view = SystemView(SystemVersion(1, 0, root.hash, {"a": a.hash}), root, {"a": a})
    return a, view, root


def test_score_constants_are_recorded_under_their_names_and_read_back_exactly():
    # Mutation check: renaming a recorded key made every path document unreadable by score.
    cfg = ScoreConfig(scale=0.97, params_ref=2.5e6, flops_ref=3.5e9)
    recorded = score_constants(cfg)
    assert recorded == {"scale": 0.97, "params_ref": 2.5e6, "flops_ref": 3.5e9}
    a, _, _ = _scored_paths()
    with_constants = Path(a.task, a.components, a.hparams, "m", metrics=a.metrics,
                          score_constants=recorded)
    assert recorded_score_config(with_constants) == cfg
    assert path_score_config(with_constants) == cfg  # the record wins over any named config
    # a path from before paths recorded them: None, and the named config of its method version
    assert recorded_score_config(a) is None
    assert path_score_config(a) is None  # "m" is no config's method version
    testing = get_config("testing")
    old = Path(a.task, a.components, a.hparams, testing.method_version, metrics=a.metrics)
    assert path_score_config(old) == testing.score
    bad = Path(a.task, a.components, a.hparams, "m", score_constants={"scale": "high"})
    with pytest.raises(SchemaError, match=r"task 'a' has invalid score_constants"):
        recorded_score_config(bad)


def test_config_scorer_and_path_metrics_give_the_path_score_against_the_view():
    a, view, root = _scored_paths()
    cfg = get_config("testing")
    arch = ArchitectureConfig(image_size=8, patch_size=4, hidden_size=4, num_layers=0,
                              num_heads=1, mlp_dim=4, max_layers=0)
    score = ScoreConfig(scale=0.5, params_ref=100.0, flops_ref=1e3)
    config = type("C", (), {"architecture": arch, "score": score})()
    expected = 0.9 * 0.5 ** (108 / 100) * 0.5 ** (1552 / 1e3)
    assert config_scorer(config)(a, view) == pytest.approx(expected, rel=1e-12)
    assert path_metrics(a, view, config) == pytest.approx({
        "validation_accuracy": 0.9, "test_accuracy": 0.8, "seconds": 3.0,  # no lists, bools
        "accounted_params": 108.0, "params": 206.0, "flops": 1552.0, "score": expected},
        rel=1e-12)
    # no validation accuracy: no score, the rest still reported
    assert "score" not in path_metrics(root, view, config)
    assert cfg.score.scale < 1  # the named configs do penalise size
