"""Training-step efficiency: a child assembled from shared components versus the same ViT built
as one plain Keras model, in images per second of training.

* child: `model.build_model` over component parameters (what `search.train_child` trains:
  one Keras layer per component, `keras.ops` einsums, frozen components as non-trainable
  layers);
* plain: the same architecture (same width, depth, heads, MLP, patch size, tokens, GELU-tanh,
  pre-LN, head on the cls token) from stock Keras layers in one functional model (`Conv2D`,
  `MultiHeadAttention`, `LayerNormalization`, `Dense`), frozen parts via `layer.trainable`.

Both train with the library's optimizer (`training.make_optimizer`: SGD with momentum,
warmup-cosine schedule, global-norm clip) and loss, compiled by `training.compile_model`,
driven by `fit` on one fixed in-memory batch repeated (so the input pipeline is not measured),
in the same process. After a warm-up fit per model (graph tracing), repetitions are
interleaved (child, plain, child, plain, ...) so load from other processes hits both alike;
the table reports medians and the ratio child / plain. Settings: every component trainable,
and the lower half of the blocks (with the embedding, cls and position embedding) frozen.

Run:
    .venv/bin/python benchmarks/step_efficiency.py            # full (< 5 min on 2 cores)
    .venv/bin/python benchmarks/step_efficiency.py --smoke    # tiny model, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

RESULTS = os.path.join(common.RESULTS_DIR, "step_efficiency.md")


def architectures(smoke: bool):
    from mu2net.config import ArchitectureConfig, get_config

    if smoke:
        return {"tiny (testing)": get_config("testing").architecture}
    demo = get_config("cpu_demo").architecture
    wide = ArchitectureConfig(image_size=demo.image_size, patch_size=demo.patch_size,
                              hidden_size=128, num_layers=6, num_heads=4, mlp_dim=256,
                              max_layers=6)
    return {"cpu_demo (width 64, depth 4)": demo, "width 128, depth 6": wide}


def child_model(arch, hparams, frozen_lower: bool):
    """The child: components from (random) shared parameters, assembled by the library."""
    from mu2net.config import get_config
    from mu2net.model import component_names

    config = get_config("cpu_demo").replace(architecture=arch)
    names = component_names(hparams)
    trainable = [n for n in names if not (frozen_lower and lower_half(n, arch.num_layers))]
    return common.random_child(config, hparams, trainable)


def lower_half(name: str, depth: int) -> bool:
    """Embedding, cls, position embedding and blocks 0 .. depth/2 - 1."""
    if name in ("embedding", "cls", "posembed_input"):
        return True
    return name.startswith("encoderblock_") and int(name.rsplit("_", 1)[1]) < depth // 2


def plain_model(arch, num_classes: int, frozen_lower: bool):
    """The same ViT from stock Keras layers, in one piece."""
    import keras

    d, p, size = arch.hidden_size, arch.patch_size, arch.image_size
    tokens = (size // p) ** 2

    class ClsPos(keras.layers.Layer):
        """Prepend the cls token and add the position embedding (no stock layer does it)."""

        def build(self, input_shape):  # noqa: ARG002 (the Keras signature)
            self.cls = self.add_weight(shape=(1, 1, d), initializer="zeros", name="cls")
            self.pos = self.add_weight(shape=(1, tokens + 1, d), initializer="random_normal",
                                       name="pos")

        def call(self, x):
            cls = keras.ops.zeros_like(x[:, :1, :]) + self.cls
            return keras.ops.concatenate([cls, x], axis=1) + self.pos

    frozen = []
    inputs = keras.Input((size, size, arch.channels))
    emb = keras.layers.Conv2D(d, p, strides=p, padding="valid", name="embedding")
    x = keras.layers.Reshape((tokens, d))(emb(inputs))
    clspos = ClsPos(name="clspos")
    x = clspos(x)
    frozen += [emb, clspos]
    for i in range(arch.num_layers):
        ln0 = keras.layers.LayerNormalization(epsilon=1e-6)
        att = keras.layers.MultiHeadAttention(arch.num_heads, d // arch.num_heads)
        ln2 = keras.layers.LayerNormalization(epsilon=1e-6)
        up = keras.layers.Dense(arch.mlp_dim, activation=lambda v: keras.ops.gelu(v, True))
        down = keras.layers.Dense(d)
        y = ln0(x)
        x = x + att(y, y)
        x = x + down(up(ln2(x)))
        if i < arch.num_layers // 2:
            frozen += [ln0, att, ln2, up, down]
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    logits = keras.layers.Dense(num_classes)(x[:, 0])
    model = keras.Model(inputs, logits)
    if frozen_lower:
        for layer in frozen:
            layer.trainable = False
    return model


def setup(model, arch, hparams, batch: int, steps: int):
    from mu2net.config import get_config
    from mu2net.training import compile_model, make_optimizer

    config = get_config("cpu_demo")
    compile_model(model, make_optimizer(hparams, 10_000, config), run_eagerly=False)
    ds = common.fixed_batch_dataset(arch.image_size, arch.channels, batch,
                                    int(hparams["num_classes"]))
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # trace + warm up

    def timed() -> float:
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        return batch * steps / (time.perf_counter() - start)

    return timed


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def measure(arch, frozen_lower: bool, batch: int, steps: int, repeats: int) -> dict:
    from mu2net.config import get_config
    from mu2net.model import component_names
    from mu2net.mutations import default_hparams

    hparams = default_hparams(get_config("cpu_demo").hparams)
    hparams.update(num_layers=arch.num_layers, ds_image_size=arch.image_size, num_classes=10,
                   adapter_layers=[])
    assert len(component_names(hparams)) == arch.num_layers + 5
    child = child_model(arch, hparams, frozen_lower)
    plain = plain_model(arch, 10, frozen_lower)
    total_child = int(sum(np.prod(w.shape) for w in child.weights))
    total_plain = int(sum(np.prod(w.shape) for w in plain.weights))
    if total_child != total_plain or trainable_count(child) != trainable_count(plain):
        raise SystemExit(f"models differ: child {total_child} params "
                         f"({trainable_count(child)} trainable), plain {total_plain} "
                         f"({trainable_count(plain)} trainable)")
    run_child = setup(child, arch, hparams, batch, steps)
    run_plain = setup(plain, arch, hparams, batch, steps)
    a, b = [], []
    for _ in range(repeats):
        a.append(run_child())
        b.append(run_plain())
    return {"child": statistics.median(a), "plain": statistics.median(b),
            "ratio": statistics.median(x / y for x, y in zip(a, b)),
            "params": total_child, "trainable": trainable_count(child)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 repeats (CI)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="steps per repetition")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--output", default=None, help=f"results file (full run: {RESULTS})")
    args = parser.parse_args()
    steps = args.steps or (3 if args.smoke else 10)
    repeats = args.repeats or (2 if args.smoke else 5)
    batch = 8 if args.smoke and args.batch == 64 else args.batch
    output = args.output or (None if args.smoke else RESULTS)
    rows = []
    for label, arch in architectures(args.smoke).items():
        for frozen in (False, True):
            r = measure(arch, frozen, batch, steps, repeats)
            rows.append((label, "lower half frozen" if frozen else "all trainable", r))
            print(f"{label}, {rows[-1][1]}: child {r['child']:.0f} img/s, plain "
                  f"{r['plain']:.0f} img/s, child/plain {r['ratio']:.2f}", flush=True)
    table = ["| architecture | setting | params (trainable) | child img/s | plain Keras img/s | "
             "child / plain |", "|---|---|---:|---:|---:|---:|"]
    for label, setting, r in rows:
        table.append(f"| {label} | {setting} | {r['params']:,} ({r['trainable']:,}) | "
                     f"{r['child']:.0f} | {r['plain']:.0f} | {r['ratio']:.2f} |")
    text = (common.header("Training-step efficiency: assembled child vs plain Keras model")
            + f"\nBatch {batch}, {steps} steps per repetition, {repeats} interleaved "
            "repetitions after one warm-up fit per model; medians (ratio: median of the "
            "per-repetition ratios). TensorFlow backend, graph mode, no XLA (as the search "
            "trains). A ratio under 1 means the assembled child is slower.\n\n"
            + "\n".join(table) + "\n")
    print(text)
    if output:
        common.write(output, text)


if __name__ == "__main__":
    main()
