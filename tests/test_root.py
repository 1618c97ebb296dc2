"""The root model: random init, import of a vit_jax / big_vision AugReg `.npz`, pretraining."""

import io
import math

import numpy as np
import pytest
from mu2net_helpers import digits_task, reference_block

from mu2net.blobs import MemoryBlobs
from mu2net.config import get_config
from mu2net.errors import SchemaError
from mu2net.model import component_names, resize_posembed
from mu2net.params_io import npz_bytes_to_params, sha256_bytes
from mu2net.predict import arch_from_path, path_logits
from mu2net.root import build_root, import_augreg_npz, pretrain_root
from mu2net.schema import ROOT_TASK

CONFIG = get_config("testing")  # width 16, 2 heads, mlp 32, patch 4, 2 layers, image 16


def test_random_root_is_seeded_content_addressed_and_owned_by_the_root():
    root, blobs = build_root(CONFIG, mode="random", seed=0)
    again, blobs_again = build_root(CONFIG, mode="random", seed=0)
    other, _ = build_root(CONFIG, mode="random", seed=1)
    assert root == again and blobs == blobs_again and root.hash != other.hash
    assert root.task == ROOT_TASK and root.parent is None
    assert [c.name for c in root.components] == component_names(root.hparams)
    assert root.hparams["num_layers"] == 2 and root.hparams["ds_image_size"] == 16
    for comp in root.components:
        assert comp.creator == ROOT_TASK and comp.id == f"{ROOT_TASK}/{comp.name}/{comp.blob[:16]}"
        assert sha256_bytes(blobs[comp.blob]) == comp.blob
        params = npz_bytes_to_params(blobs[comp.blob])
        assert {k: v.shape for k, v in params.items()} == dict(comp.shapes)
    assert not np.any(npz_bytes_to_params(blobs[root.component("head").blob])["kernel"])
    assert arch_from_path(root).hidden_size == CONFIG.architecture.hidden_size
    with pytest.raises(SchemaError, match="root mode 'imagenet'"):
        build_root(CONFIG, mode="imagenet")


# === AugReg .npz import ======================================================================


def augreg_checkpoint(layers=3, grid=2, hidden=16, heads=2, mlp=32, patch=4, classes=7,
                      seed=0, extra=None):
    """A small checkpoint in the vit_jax / big_vision AugReg `.npz` layout."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    k = hidden // heads
    flat = {"cls": r(1, 1, hidden), "embedding/kernel": r(patch, patch, 3, hidden),
            "embedding/bias": r(hidden), "head/kernel": r(hidden, classes),
            "head/bias": r(classes),
            "Transformer/posembed_input/pos_embedding": r(1, grid * grid + 1, hidden),
            "Transformer/encoder_norm/scale": 1 + r(hidden),
            "Transformer/encoder_norm/bias": r(hidden)}
    for i in range(layers):
        p = f"Transformer/encoderblock_{i}/"
        a = p + "MultiHeadDotProductAttention_1/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            flat[f"{p}{ln}/scale"] = 1 + r(hidden)
            flat[f"{p}{ln}/bias"] = r(hidden)
        for n in ("query", "key", "value"):
            flat[f"{a}{n}/kernel"] = r(hidden, heads, k)
            flat[f"{a}{n}/bias"] = r(heads, k)
        flat[a + "out/kernel"] = r(heads, k, hidden)
        flat[a + "out/bias"] = r(hidden)
        flat[p + "MlpBlock_3/Dense_0/kernel"] = r(hidden, mlp)
        flat[p + "MlpBlock_3/Dense_0/bias"] = r(mlp)
        flat[p + "MlpBlock_3/Dense_1/kernel"] = r(mlp, hidden)
        flat[p + "MlpBlock_3/Dense_1/bias"] = r(hidden)
    flat.update(extra or {})
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return flat, buf.getvalue()


def reference_vit(images, flat, layers, grid):
    """vit_jax's ViT forward in numpy (float64) on the flat checkpoint."""
    x = images.astype(np.float64)
    kernel = flat["embedding/kernel"].astype(np.float64)
    p = kernel.shape[0]
    b, s = x.shape[0], x.shape[1]
    patches = x.reshape(b, s // p, p, s // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
    tokens = np.einsum("bijxyc,xycd->bijd", patches, kernel) + flat["embedding/bias"]
    tokens = tokens.reshape(b, -1, kernel.shape[-1])
    cls = np.broadcast_to(flat["cls"], (b, 1, tokens.shape[-1]))
    x = np.concatenate([cls, tokens], axis=1)
    x = x + resize_posembed(flat["Transformer/posembed_input/pos_embedding"], grid)
    for i in range(layers):
        prefix = f"Transformer/encoderblock_{i}/"
        w = {k[len(prefix):]: v.astype(np.float64) for k, v in flat.items()
             if k.startswith(prefix)}
        x = reference_block(x, w)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + 1e-6) * flat["Transformer/encoder_norm/scale"] + \
        flat["Transformer/encoder_norm/bias"]
    return x[:, 0] @ flat["head/kernel"] + flat["head/bias"]


def test_npz_import_maps_the_augreg_layout_caps_depth_and_resizes_posembed(tmp_path):
    flat, data = augreg_checkpoint(layers=3, grid=2)  # pretrained at 8x8: 2x2 patches
    file_path = tmp_path / "Ti_tiny.npz"
    file_path.write_bytes(data)
    root, blobs = build_root(CONFIG, mode="npz", npz_path=str(file_path))
    assert root.hparams["num_layers"] == 2  # capped to the config's root depth
    assert root.hparams["num_classes"] == 7 and root.hparams["ds_image_size"] == 16
    assert [c.name for c in root.components] == component_names(root.hparams)
    params = {c.name: npz_bytes_to_params(blobs[c.blob]) for c in root.components}
    np.testing.assert_array_equal(params["cls"]["cls"], flat["cls"])
    np.testing.assert_array_equal(params["embedding"]["kernel"], flat["embedding/kernel"])
    np.testing.assert_array_equal(
        params["encoderblock_1"]["MultiHeadDotProductAttention_1/query/kernel"],
        flat["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"])
    np.testing.assert_array_equal(params["encoder_norm"]["scale"],
                                  flat["Transformer/encoder_norm/scale"])
    pos = params["posembed_input"]["pos_embedding"]
    assert pos.shape == (1, 17, 16)  # 4x4 grid at 16x16 + cls
    np.testing.assert_array_equal(pos, resize_posembed(
        flat["Transformer/posembed_input/pos_embedding"], 4))
    np.testing.assert_array_equal(pos[0, 0], flat["Transformer/posembed_input/pos_embedding"][0, 0])
    # the assembled Keras model computes vit_jax's ViT on the imported weights
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    got = path_logits(root, images, MemoryBlobs(blobs))
    want = reference_vit(images / 127.5 - 1.0, flat, layers=2, grid=4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(extra={"pre_logits/kernel": np.zeros((16, 16), np.float32)}), "pre_logits/kernel"),
    (dict(hidden=32, heads=2, mlp=32), "expects"),
    (dict(layers=1), "1 encoder blocks"),
    (dict(patch=2, grid=4), "embedding"),
])
def test_npz_import_rejects_checkpoints_that_do_not_fit(kwargs, match):
    _, data = augreg_checkpoint(**kwargs)
    with pytest.raises(SchemaError, match=match):
        import_augreg_npz(data, CONFIG)


# === pretraining =============================================================================


def test_pretrain_root_trains_every_component_on_a_task():
    task = digits_task("digits")
    random_root, _ = build_root(CONFIG, mode="random", seed=0)
    root, blobs, metrics = pretrain_root(CONFIG, task, seed=0, examples=2048, validations=2,
                                         lr=3e-3)
    assert root.task == ROOT_TASK and root.hparams["num_classes"] == 10
    assert set(blobs) == {c.blob for c in root.components}
    # every component moved away from the random init (same seed)
    assert not set(root.component_ids) & set(random_root.component_ids)
    assert metrics["examples_trained"] >= 2048 and len(metrics["validation_curve"]) == 2
    assert root.metrics["validation_accuracy"] == max(metrics["validation_curve"])
    assert metrics["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert math.isclose(root.metrics["test_accuracy"], metrics["test_accuracy"])
