"""Component layers, assembly of a path's model, posembed resizing, params I/O and blobs."""

import math
import os

import numpy as np
import pytest
from mu2net_helpers import random_image_batches, reference_block

from mu2net.blobs import ChainBlobs, DirBlobs, FileBlobs, MemoryBlobs, ParamsCache
from mu2net.config import get_config
from mu2net.errors import ConfigError, IntegrityError, SchemaError, StoreError
from mu2net.model import (
    build_model,
    component_layers,
    component_names,
    component_shapes,
    init_component,
    load_keras_model,
    model_params,
    resize_posembed,
)
from mu2net.params_io import (
    npz_bytes_to_params,
    params_sha256,
    params_to_npz_bytes,
    write_params,
)

ARCH = get_config("testing").architecture  # width 16, 2 heads, mlp 32, patch 4, 2 layers


def hparams(**changes):
    h = {"num_layers": 2, "ds_image_size": 16, "num_classes": 5, "adapter_layers": [],
         "adapter_dim": 8}
    h.update(changes)
    return h


def fresh_params(h, seed=0):
    return {n: init_component(n, ARCH, h, seed + i) for i, n in enumerate(component_names(h))}


def images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def logits(model, x):
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def test_component_names_follow_forward_order_with_adapters_before_their_block():
    h = hparams(num_layers=3, adapter_layers=[0, 2])
    assert component_names(h) == [
        "cls", "embedding", "posembed_input", "residual_adapter_0", "encoderblock_0",
        "encoderblock_1", "residual_adapter_2", "encoderblock_2", "encoder_norm", "head"]


def test_component_shapes_use_the_vit_jax_layout():
    h = hparams()
    block = component_shapes("encoderblock_0", ARCH, h)
    assert block["MultiHeadDotProductAttention_1/query/kernel"] == (16, 2, 8)
    assert block["MultiHeadDotProductAttention_1/out/kernel"] == (2, 8, 16)
    assert block["MlpBlock_3/Dense_0/kernel"] == (16, 32)
    assert component_shapes("embedding", ARCH, h)["kernel"] == (4, 4, 3, 16)
    assert component_shapes("posembed_input", ARCH, h)["pos_embedding"] == (1, 17, 16)
    assert component_shapes("posembed_input", ARCH, hparams(ds_image_size=20))[
        "pos_embedding"] == (1, 26, 16)
    assert component_shapes("head", ARCH, h) == {"kernel": (16, 5), "bias": (5,)}
    with pytest.raises(SchemaError, match="multiple of patch_size=4"):
        component_shapes("posembed_input", ARCH, hparams(ds_image_size=18))


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_assembly_any_depth_and_only_trainable_components_are_trainable(layers):
    h = hparams(num_layers=layers)
    params = fresh_params(h)
    trainable = ["encoder_norm", "head"] + (["encoderblock_0"] if layers else [])
    model = build_model(ARCH, h, params, trainable=trainable)
    assert logits(model, images()).shape == (3, 5)
    trainable_layers = {layer.name for layer in model.layers
                        if getattr(layer, "trainable_weights", None)}
    assert trainable_layers == set(trainable)
    got = model_params(model)
    assert set(got) == set(component_names(h))
    for name, weights in params.items():
        for key, value in weights.items():
            np.testing.assert_array_equal(got[name][key], value)


def test_assembly_rejects_missing_components_and_wrong_shapes():
    h = hparams()
    params = fresh_params(h)
    del params["encoderblock_1"]
    with pytest.raises(SchemaError, match=r"missing \['encoderblock_1'\]"):
        build_model(ARCH, h, params)
    params = fresh_params(h)
    params["head"] = init_component("head", ARCH, hparams(num_classes=7), 0)
    with pytest.raises(SchemaError, match="head.*shape"):
        build_model(ARCH, h, params)


def test_a_path_model_saves_and_loads_as_a_keras_file(tmp_path):
    h = hparams(adapter_layers=[0])
    params = fresh_params(h)
    params["head"]["kernel"] = np.ones((16, 5), np.float32)
    model = build_model(ARCH, h, params, trainable=["head"])
    model.save(tmp_path / "path.keras")
    again = load_keras_model(str(tmp_path / "path.keras"))
    np.testing.assert_array_equal(logits(again, images()), logits(model, images()))
    assert [layer.name for layer in again.layers if layer.trainable_weights] == ["head"]


def test_new_head_is_zero_and_predicts_uniformly():
    h = hparams()
    model = build_model(ARCH, h, fresh_params(h))
    np.testing.assert_array_equal(logits(model, images()), np.zeros((3, 5), np.float32))


def test_mixed_bfloat16_computes_in_bfloat16_keeps_float32_weights_and_logits():
    import keras

    h = hparams()
    params = fresh_params(h)
    params["head"] = {k: np.random.default_rng(1).normal(0, 0.5, v.shape).astype(np.float32)
                      for k, v in params["head"].items()}
    full = build_model(ARCH, h, params)
    mixed = build_model(ARCH, h, params, trainable=list(params), precision="mixed_bfloat16")
    out, ref = logits(mixed, images()), logits(full, images())
    assert out.dtype == np.float32  # the loss sees float32 logits
    assert 0 < np.abs(out - ref).max() < 0.1  # bfloat16 rounding, not another model
    assert {v.dtype for v in mixed.trainable_variables} == {"float32"}
    blocks = [layer for layer in mixed.layers if layer.name == "encoderblock_0"]
    assert blocks[0].compute_dtype == "bfloat16"
    assert keras.ops.convert_to_numpy(mixed.layers[-1].w["kernel"]).dtype == np.float32
    with pytest.raises(ConfigError, match="precision='float16' is invalid.*mixed_bfloat16"):
        build_model(ARCH, h, params, precision="float16")


def test_inserted_adapter_is_the_identity():
    base = hparams()
    params = fresh_params(base)
    # a non-zero head so the logits depend on the features
    params["head"] = {"kernel": np.random.default_rng(3).normal(size=(16, 5)).astype(np.float32),
                      "bias": np.zeros(5, np.float32)}
    without = logits(build_model(ARCH, base, params), images())
    with_adapter = hparams(adapter_layers=[1])
    params_a = dict(params)
    params_a["residual_adapter_1"] = init_component("residual_adapter_1", ARCH, with_adapter, 9)
    assert np.any(params_a["residual_adapter_1"]["Dense_0/kernel"] != 0)
    assert not np.any(params_a["residual_adapter_1"]["Dense_1/kernel"])
    got = logits(build_model(ARCH, with_adapter, params_a), images())
    np.testing.assert_array_equal(got, without)
    # ... and stops being the identity once its second Dense is non-zero.
    params_a["residual_adapter_1"] = {**params_a["residual_adapter_1"],
                                      "Dense_1/bias": np.linspace(-1, 1, 16, dtype=np.float32)}
    assert not np.allclose(logits(build_model(ARCH, with_adapter, params_a), images()), without)


def test_posembed_interpolation_keeps_cls_and_resizes_the_grid_bilinearly():
    d = 4
    old = 2
    # a grid that is linear in (row, col): bilinear zoom keeps it linear
    rows, cols = np.meshgrid(np.arange(old), np.arange(old), indexing="ij")
    grid = np.stack([rows, cols, rows + cols, np.ones_like(rows)], -1).astype(np.float32)
    pos = np.concatenate([np.full((1, 1, d), 7.0, np.float32), grid.reshape(1, old * old, d)], 1)
    out = resize_posembed(pos, 4)
    assert out.shape == (1, 17, d)
    np.testing.assert_array_equal(out[0, 0], pos[0, 0])
    new = out[0, 1:].reshape(4, 4, d)
    # corners keep their values (scipy zoom aligns the corners), the constant channel stays
    np.testing.assert_allclose(new[0, 0], grid[0, 0], atol=1e-6)
    np.testing.assert_allclose(new[-1, -1], grid[-1, -1], atol=1e-6)
    np.testing.assert_allclose(new[..., 3], 1.0, atol=1e-6)
    np.testing.assert_allclose(new[:, 1, 0], new[:, 2, 0], atol=1e-6)  # rows constant along cols
    np.testing.assert_allclose(np.diff(new[:, 0, 0]), 1 / 3, atol=1e-6)  # linear ramp 0..1
    np.testing.assert_array_equal(resize_posembed(pos, 2), pos)
    with pytest.raises(SchemaError, match="square grid"):
        resize_posembed(pos[:, :4], 3)


def test_model_runs_at_a_new_image_size_with_interpolated_posembed():
    h = hparams()
    params = fresh_params(h)
    h20 = hparams(ds_image_size=20)
    params20 = dict(params)
    params20["posembed_input"] = {
        "pos_embedding": resize_posembed(params["posembed_input"]["pos_embedding"], 5)}
    model = build_model(ARCH, h20, params20)
    assert logits(model, images(size=20)).shape == (3, 5)
    with pytest.raises(SchemaError, match="needs|shape"):
        build_model(ARCH, h20, params)  # the 16x16 posembed does not fit


def test_params_npz_bytes_are_deterministic_and_round_trip(tmp_path):
    params = init_component("encoderblock_0", ARCH, hparams(), 5)
    data = params_to_npz_bytes(params)
    reordered = dict(reversed(list(params.items())))
    assert params_to_npz_bytes(reordered) == data
    assert params_sha256({k: v.copy() for k, v in params.items()}) == params_sha256(params)
    back = npz_bytes_to_params(data)
    assert set(back) == set(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key])
    changed = {**params, "LayerNorm_0/bias": params["LayerNorm_0/bias"] + 1e-7}
    assert params_sha256(changed) != params_sha256(params)
    digest, file_path = write_params(params, str(tmp_path))
    assert os.path.basename(file_path) == f"{digest}.npz"
    assert write_params(params, str(tmp_path)) == (digest, file_path)
    with pytest.raises(SchemaError, match="dtype object"):
        params_to_npz_bytes({"x": np.array([object()])})


def test_npz_with_pickled_objects_is_refused():
    import io

    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        npz_bytes_to_params(buf.getvalue())


def test_blob_sources_verify_and_chain(tmp_path):
    data = params_to_npz_bytes({"scale": np.ones(3, np.float32)})
    store = DirBlobs(str(tmp_path / "store"))
    digest = store.put_blob(data)
    assert store.get_blob(digest) == data and store.has_blob(digest)
    missing = "0" * 64
    with pytest.raises(StoreError, match="not in"):
        store.get_blob(missing)
    staged_file = tmp_path / "staged.npz"
    other = params_to_npz_bytes({"scale": np.zeros(3, np.float32)})
    staged_file.write_bytes(other)
    other_digest = params_sha256({"scale": np.zeros(3, np.float32)})
    chain = ChainBlobs([FileBlobs({other_digest: str(staged_file)}), store])
    # put_all: the {sha256: file} mapping a store init or an extension takes
    files = DirBlobs(str(tmp_path / "staged")).put_all({digest: data, other_digest: other})
    assert files == {h: str(tmp_path / "staged" / f"{h}.npz") for h in (digest, other_digest)}
    assert FileBlobs(files).get_blob(other_digest) == other
    assert chain.get_blob(digest) == data and chain.get_blob(other_digest) == other
    with pytest.raises(StoreError, match="found in no source.*FileBlobs.*DirBlobs"):
        chain.get_blob(missing)
    with pytest.raises(StoreError, match="not a local file"):
        FileBlobs({digest: "gs://bucket/x.npz"}).get_blob(digest)
    # a tampered blob is an integrity error, and a chain does not fall through on it
    (tmp_path / "store" / f"{digest}.npz").write_bytes(other)
    with pytest.raises(IntegrityError, match="hashes to"):
        ChainBlobs([store, MemoryBlobs({digest: data})]).get_blob(digest)


def test_params_cache_returns_read_only_arrays():
    data = params_to_npz_bytes({"scale": np.ones(3, np.float32)})
    cache = ParamsCache(MemoryBlobs({params_sha256({"scale": np.ones(3, np.float32)}): data}))
    arrays = cache.params(next(iter(cache.source.blobs)))
    with pytest.raises(ValueError, match="read-only"):
        arrays["scale"][0] = 5.0


def test_encoder_block_matches_a_numpy_reference():
    """The Keras block computes vit_jax's Encoder1DBlock (pre-LN attention + MLP)."""
    h = hparams(num_layers=1)
    params = fresh_params(h, seed=11)
    w = {k: v.astype(np.float64) for k, v in params["encoderblock_0"].items()}
    model = build_model(ARCH, h, params)
    block = component_layers(model)["encoderblock_0"]
    x = np.random.default_rng(2).normal(size=(2, 17, 16)).astype(np.float32)
    got = np.asarray(block(x))
    np.testing.assert_allclose(got, reference_block(x.astype(np.float64), w), atol=2e-5)


def test_frozen_weights_are_bit_identical_after_training():
    from mu2net.training import Budget, make_optimizer, train_model

    config = get_config("testing")
    h = {**config.hparams.defaults(), **hparams(adapter_layers=[1])}
    params = fresh_params(h, seed=4)
    trainable = ["residual_adapter_1", "encoderblock_1", "encoder_norm", "head"]
    frozen = [n for n in component_names(h) if n not in trainable]
    model = build_model(ARCH, h, params, trainable=trainable)
    train, val = random_image_batches()
    budget = Budget(16, 3, 2)
    optimizer = make_optimizer({**h, "opt_lr": 0.1}, budget.total_steps, config)
    outcome = train_model(model, train, val, budget=budget, optimizer=optimizer,
                          trainable=trainable, score_fn=lambda q: q, best_start=-math.inf)
    assert outcome.improved and len(outcome.curve) == 2
    assert {v.path for v in optimizer.variables if "trace" in v.path}  # momentum exists
    assert len(optimizer.traces) == len(model.trainable_variables)
    after = model_params(model)
    for name in frozen:
        for key, value in params[name].items():
            np.testing.assert_array_equal(after[name][key], value, err_msg=f"{name}/{key}")
    for name in trainable:
        assert any(not np.array_equal(after[name][k], params[name][k]) for k in params[name]), name
