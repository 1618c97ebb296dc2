"""The ViT as a pool of components, and assembly of one task's Keras model from a path.

A path's model is the vit_jax ViT (docs/method.md §2), split into components:

    images -> embedding (patch conv) -> cls (prepend token) -> posembed_input (add)
           -> [residual_adapter_i] -> encoderblock_i   for i < num_layers
           -> encoder_norm -> head (on the cls token) -> logits

Every component is one Keras layer whose weights use the vit_jax / flax names and shapes
(`MultiHeadDotProductAttention_1/query/kernel` is [hidden, heads, head_dim]), so an AugReg
checkpoint maps onto components without reshaping, and a component's parameters are a flat
`name -> array` dict (`mu2net.params_io`). Layers use `keras.ops` only: the same code runs on
the TensorFlow and JAX backends. Frozen components are non-trainable layers.

Initialisation is done in numpy from an explicit seed (not by Keras initialisers), so a fresh
component is the same on every backend and every retry.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from mu2net.config import PRECISIONS, ArchitectureConfig
from mu2net.errors import ConfigError, SchemaError
from mu2net.schema import COMPONENT_NAME_RE

LN_EPSILON = 1e-6  # flax nn.LayerNorm default, as in vit_jax

_BLOCK_WEIGHTS = (
    "LayerNorm_0/scale", "LayerNorm_0/bias",
    "MultiHeadDotProductAttention_1/query/kernel", "MultiHeadDotProductAttention_1/query/bias",
    "MultiHeadDotProductAttention_1/key/kernel", "MultiHeadDotProductAttention_1/key/bias",
    "MultiHeadDotProductAttention_1/value/kernel", "MultiHeadDotProductAttention_1/value/bias",
    "MultiHeadDotProductAttention_1/out/kernel", "MultiHeadDotProductAttention_1/out/bias",
    "LayerNorm_2/scale", "LayerNorm_2/bias",
    "MlpBlock_3/Dense_0/kernel", "MlpBlock_3/Dense_0/bias",
    "MlpBlock_3/Dense_1/kernel", "MlpBlock_3/Dense_1/bias",
)


# === Architecture from hparams ==============================================================


def grid_size(image_size: int, patch_size: int) -> int:
    if image_size % patch_size:
        raise SchemaError(f"ds_image_size={image_size} is invalid: expected a multiple of "
                          f"patch_size={patch_size}")
    return image_size // patch_size


def adapter_layers(hparams: Mapping[str, Any]) -> list[int]:
    return sorted(int(i) for i in hparams.get("adapter_layers", ()))


def component_names(hparams: Mapping[str, Any]) -> list[str]:
    """The components a path with these hparams needs, in forward order."""
    names = ["cls", "embedding", "posembed_input"]
    adapters = set(adapter_layers(hparams))
    for i in range(int(hparams["num_layers"])):
        if i in adapters:
            names.append(f"residual_adapter_{i}")
        names.append(f"encoderblock_{i}")
    return names + ["encoder_norm", "head"]


def component_kind(name: str) -> str:
    if not COMPONENT_NAME_RE.match(name):
        raise SchemaError(f"component name {name!r} is invalid: expected cls, embedding, "
                          "posembed_input, encoder_norm, head, encoderblock_<i> or "
                          "residual_adapter_<i>")
    return name.rsplit("_", 1)[0] if name[-1].isdigit() else name


def component_shapes(name: str, arch: ArchitectureConfig,
                     hparams: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Weight shapes of one component for a path with these hparams."""
    d, p, m, h = arch.hidden_size, arch.patch_size, arch.mlp_dim, arch.num_heads
    kind = component_kind(name)
    if kind == "cls":
        return {"cls": (1, 1, d)}
    if kind == "embedding":
        return {"kernel": (p, p, arch.channels, d), "bias": (d,)}
    if kind == "posembed_input":
        g = grid_size(int(hparams["ds_image_size"]), p)
        return {"pos_embedding": (1, g * g + 1, d)}
    if kind == "encoderblock":
        k = d // h
        shapes = {}
        for w in _BLOCK_WEIGHTS:
            if w.startswith("LayerNorm"):
                shapes[w] = (d,)
            elif "/out/" in w:
                shapes[w] = (h, k, d) if w.endswith("kernel") else (d,)
            elif "MultiHead" in w:
                shapes[w] = (d, h, k) if w.endswith("kernel") else (h, k)
            elif "Dense_0" in w:
                shapes[w] = (d, m) if w.endswith("kernel") else (m,)
            else:
                shapes[w] = (m, d) if w.endswith("kernel") else (d,)
        return shapes
    if kind == "residual_adapter":
        a = int(hparams["adapter_dim"])
        return {"LayerNorm/scale": (d,), "LayerNorm/bias": (d,), "Dense_0/kernel": (d, a),
                "Dense_0/bias": (a,), "Dense_1/kernel": (a, d), "Dense_1/bias": (d,)}
    if kind == "encoder_norm":
        return {"scale": (d,), "bias": (d,)}
    c = int(hparams["num_classes"])
    return {"kernel": (d, c), "bias": (c,)}


def component_size(name: str, arch: ArchitectureConfig, hparams: Mapping[str, Any]) -> int:
    """Parameters of one component: what accounted params and the memory model count."""
    return sum(math.prod(s) for s in component_shapes(name, arch, hparams).values())


# === Initialisation (numpy, seeded) ==========================================================


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...],
                      stddev: float) -> np.ndarray:
    """Normal truncated to +-2 std, rescaled to keep `stddev` (as jax's variance_scaling)."""
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * stddev / 0.87962566103423978).astype(np.float32)


def _lecun_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return _truncated_normal(rng, shape, math.sqrt(1.0 / fan_in))


def _xavier_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
                    fan_out: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def init_component(name: str, arch: ArchitectureConfig, hparams: Mapping[str, Any],
                   seed: int) -> dict[str, np.ndarray]:
    """Fresh parameters, following vit_jax's initialisers: cls, head and the adapter's second
    Dense are zero (a new head predicts uniformly; an inserted adapter is the identity);
    position embeddings N(0, 0.02); attention and MLP kernels Xavier-uniform; patch
    embedding and the adapter's first Dense LeCun-normal; layer norms scale 1, bias 0."""
    rng = np.random.default_rng(seed)
    shapes = component_shapes(name, arch, hparams)
    kind = component_kind(name)
    d = arch.hidden_size
    out: dict[str, np.ndarray] = {}
    for w, shape in shapes.items():
        zeros = np.zeros(shape, np.float32)
        if w.endswith("scale"):
            out[w] = np.ones(shape, np.float32)
        elif kind in ("cls", "head") or (kind == "residual_adapter" and "Dense_1" in w):
            out[w] = zeros
        elif kind == "posembed_input":
            out[w] = (rng.standard_normal(size=shape) * 0.02).astype(np.float32)
        elif kind == "embedding" and w == "kernel":
            out[w] = _lecun_normal(rng, shape, math.prod(shape[:3]))
        elif kind == "residual_adapter" and w == "Dense_0/kernel":
            out[w] = _lecun_normal(rng, shape, d)
        elif kind == "encoderblock" and w.endswith("kernel"):
            if "/out/" in w:
                out[w] = _xavier_uniform(rng, shape, shape[0] * shape[1], shape[2])
            elif "MultiHead" in w:
                out[w] = _xavier_uniform(rng, shape, shape[0], shape[1] * shape[2])
            else:
                out[w] = _xavier_uniform(rng, shape, shape[0], shape[1])
        elif kind == "encoderblock" and "MlpBlock" in w:
            out[w] = (rng.standard_normal(size=shape) * 1e-6).astype(np.float32)
        else:
            out[w] = zeros
    return out


def resize_posembed(pos_embedding: np.ndarray, new_grid: int) -> np.ndarray:
    """Position embeddings for another image size, as vit_jax's `load_pretrained` does: the cls
    entry is kept, the g x g grid is zoomed bilinearly (scipy `zoom`, order 1) to new_grid."""
    from scipy import ndimage

    pos = np.asarray(pos_embedding, np.float32)
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise SchemaError(f"pos_embedding shape {pos.shape} is invalid: expected [1, 1+g*g, D]")
    tok, grid = pos[:, :1], pos[0, 1:]
    old = int(round(math.sqrt(len(grid))))
    if old * old != len(grid):
        raise SchemaError(f"pos_embedding has {len(grid)} grid entries: not a square grid")
    if old == new_grid:
        return pos.copy()
    grid = grid.reshape(old, old, -1)
    zoom = (new_grid / old, new_grid / old, 1)
    grid = ndimage.zoom(grid, zoom, order=1).reshape(1, new_grid * new_grid, -1)
    return np.concatenate([tok, grid.astype(np.float32)], axis=1)


# === Keras layers ===========================================================================


def _keras():
    import keras

    return keras


def _make_layer_classes():
    keras = _keras()
    ops = keras.ops

    def layer_norm(x, scale, bias):
        x32 = ops.cast(x, "float32")  # statistics in float32 under mixed precision too
        mean = ops.mean(x32, axis=-1, keepdims=True)
        var = ops.mean(ops.square(x32 - mean), axis=-1, keepdims=True)
        return ops.cast((x32 - mean) * ops.rsqrt(var + LN_EPSILON), x.dtype) * scale + bias

    @keras.saving.register_keras_serializable(package="mu2net")
    class ComponentLayer(keras.layers.Layer):
        """One component: weights named as in vit_jax, created from known shapes."""

        def __init__(self, shapes: Mapping[str, tuple[int, ...]], **kwargs):
            super().__init__(**kwargs)
            self.shapes = {k: tuple(v) for k, v in shapes.items()}
            self.w = {}
            for key, shape in sorted(self.shapes.items()):
                self.w[key] = self.add_weight(shape=shape, initializer="zeros",
                                              name=key.replace("/", "__"), trainable=True)

        def build(self, input_shape):  # noqa: ARG002 (the Keras signature)
            self.built = True

        def get_params(self) -> dict[str, np.ndarray]:
            return {k: np.array(keras.ops.convert_to_numpy(v), dtype=np.float32)
                    for k, v in self.w.items()}

        def set_params(self, params: Mapping[str, np.ndarray]) -> None:
            if set(params) != set(self.w):
                raise SchemaError(f"component {self.name!r} expects weights {sorted(self.w)}, "
                                  f"got {sorted(params)}")
            for k, v in params.items():
                if tuple(np.shape(v)) != self.shapes[k]:
                    raise SchemaError(f"component {self.name!r} weight {k!r} has shape "
                                      f"{tuple(np.shape(v))}, expected {self.shapes[k]}")
                self.w[k].assign(np.asarray(v, np.float32))

        def get_config(self):
            return {**super().get_config(), "shapes": {k: list(v) for k, v in self.shapes.items()}}

    @keras.saving.register_keras_serializable(package="mu2net")
    class PatchEmbedding(ComponentLayer):
        def __init__(self, shapes, patch_size: int, **kwargs):
            super().__init__(shapes, **kwargs)
            self.patch_size = patch_size

        def call(self, x):
            y = ops.conv(x, self.w["kernel"], strides=self.patch_size, padding="valid",
                         data_format="channels_last") + self.w["bias"]
            return ops.reshape(y, (-1, y.shape[1] * y.shape[2], y.shape[3]))

        def get_config(self):
            return {**super().get_config(), "patch_size": self.patch_size}

    @keras.saving.register_keras_serializable(package="mu2net")
    class ClsToken(ComponentLayer):
        def call(self, x):
            return ops.concatenate([ops.zeros_like(x[:, :1, :]) + self.w["cls"], x], axis=1)

    @keras.saving.register_keras_serializable(package="mu2net")
    class PosEmbed(ComponentLayer):
        def call(self, x):
            if x.shape[1] != self.shapes["pos_embedding"][1]:
                raise SchemaError(f"posembed_input has {self.shapes['pos_embedding'][1]} "
                                  f"positions but the input has {x.shape[1]} tokens")
            return x + self.w["pos_embedding"]

    @keras.saving.register_keras_serializable(package="mu2net")
    class EncoderBlock(ComponentLayer):
        def call(self, x):
            w = self.w
            a = "MultiHeadDotProductAttention_1/"
            y = layer_norm(x, w["LayerNorm_0/scale"], w["LayerNorm_0/bias"])
            q = ops.einsum("btd,dhk->bthk", y, w[a + "query/kernel"]) + w[a + "query/bias"]
            k = ops.einsum("btd,dhk->bthk", y, w[a + "key/kernel"]) + w[a + "key/bias"]
            v = ops.einsum("btd,dhk->bthk", y, w[a + "value/kernel"]) + w[a + "value/bias"]
            q = q / math.sqrt(self.shapes[a + "query/kernel"][2])
            logits = ops.cast(ops.einsum("bqhk,bshk->bhqs", q, k), "float32")
            attn = ops.cast(ops.softmax(logits, axis=-1), v.dtype)
            o = ops.einsum("bhqs,bshk->bqhk", attn, v)
            x = x + ops.einsum("bqhk,hkd->bqd", o, w[a + "out/kernel"]) + w[a + "out/bias"]
            y = layer_norm(x, w["LayerNorm_2/scale"], w["LayerNorm_2/bias"])
            y = ops.matmul(y, w["MlpBlock_3/Dense_0/kernel"]) + w["MlpBlock_3/Dense_0/bias"]
            y = ops.gelu(y, approximate=True)  # flax nn.gelu default
            y = ops.matmul(y, w["MlpBlock_3/Dense_1/kernel"]) + w["MlpBlock_3/Dense_1/bias"]
            return x + y

    @keras.saving.register_keras_serializable(package="mu2net")
    class ResidualAdapter(ComponentLayer):
        def call(self, x):
            w = self.w
            y = layer_norm(x, w["LayerNorm/scale"], w["LayerNorm/bias"])
            y = ops.gelu(ops.matmul(y, w["Dense_0/kernel"]) + w["Dense_0/bias"], approximate=True)
            return x + ops.matmul(y, w["Dense_1/kernel"]) + w["Dense_1/bias"]

    @keras.saving.register_keras_serializable(package="mu2net")
    class EncoderNorm(ComponentLayer):
        def call(self, x):
            return layer_norm(x, self.w["scale"], self.w["bias"])

    @keras.saving.register_keras_serializable(package="mu2net")
    class Head(ComponentLayer):
        def call(self, x):
            return ops.matmul(x[:, 0], self.w["kernel"]) + self.w["bias"]

    return {"cls": ClsToken, "embedding": PatchEmbedding, "posembed_input": PosEmbed,
            "encoderblock": EncoderBlock, "residual_adapter": ResidualAdapter,
            "encoder_norm": EncoderNorm, "head": Head}


@functools.cache
def layer_classes() -> dict[str, type]:
    """Component kind -> Keras layer class (created on first use: importing this module does
    not import Keras)."""
    return _make_layer_classes()


# === Assembly ===============================================================================


def build_model(arch: ArchitectureConfig, hparams: Mapping[str, Any],
                params: Mapping[str, Mapping[str, np.ndarray]],
                trainable: Collection[str] = (), precision: str = "float32"):
    """A Keras model for one path.

    Args:
      arch: the root architecture (width, heads, patch size).
      hparams: the path's hparams (`num_layers`, `ds_image_size`, `num_classes`,
        `adapter_layers`, `adapter_dim`).
      params: component name -> its weights, for every component the hparams require.
      trainable: names of the components training may update; all others are frozen
        (non-trainable layers), so an optimizer never sees them.
      precision: `float32`, or `mixed_bfloat16` (weights stay float32, activations are
        bfloat16; layer norms, attention softmax and the logits stay float32).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is invalid: expected one of {PRECISIONS}")
    keras = _keras()
    names = component_names(hparams)
    missing = [n for n in names if n not in params]
    extra = sorted(set(params) - set(names))
    if missing or extra:
        raise SchemaError(f"path with num_layers={hparams['num_layers']}, adapters "
                          f"{adapter_layers(hparams)} needs components {names}; missing "
                          f"{missing}, unexpected {extra}")
    unknown = sorted(set(trainable) - set(names))
    if unknown:
        raise SchemaError(f"trainable components {unknown} are not in the path {names}")
    classes = layer_classes()
    size = int(hparams["ds_image_size"])
    grid_size(size, arch.patch_size)
    inputs = keras.Input((size, size, arch.channels), name="images")
    layers = {}
    for name in names:
        kind = component_kind(name)
        shapes = component_shapes(name, arch, hparams)
        kwargs = {"patch_size": arch.patch_size} if kind == "embedding" else {}
        dtype = "float32" if kind == "head" else precision  # logits for the loss in float32
        layers[name] = classes[kind](shapes, name=name, dtype=dtype, **kwargs)
    x = layers["embedding"](inputs)
    x = layers["cls"](x)
    x = layers["posembed_input"](x)
    for name in names[3:-2]:
        x = layers[name](x)
    x = layers["encoder_norm"](x)
    logits = layers["head"](x)
    model = keras.Model(inputs, logits, name="path")
    for name in names:
        layers[name].set_params(params[name])
        layers[name].trainable = name in trainable
    return model


def component_layers(model) -> dict[str, Any]:
    """Component name -> layer of a model built by `build_model`."""
    return {layer.name: layer for layer in model.layers if hasattr(layer, "get_params")}


def model_params(model) -> dict[str, dict[str, np.ndarray]]:
    """Component name -> current weights (numpy copies)."""
    return {name: layer.get_params() for name, layer in component_layers(model).items()}


def load_keras_model(file_path: str):
    """Load a `.keras` file saved from a path model (registers the component layers first)."""
    keras = _keras()
    layer_classes()
    return keras.saving.load_model(file_path)
