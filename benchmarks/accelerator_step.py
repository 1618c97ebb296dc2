"""Accelerator step: a child's training step in bfloat16 on the JAX backend, in images per
second, model FLOP utilisation (MFU) against the chip's stated peak, and peak device memory.
Two models: `vit_b16` (ViT-B/16 at 224, batch 256: the chip's throughput) and `gpu_child` (the
gpu config's costliest child: ViT-L/16 at 224, batch 16, every block trainable), whose memory
and speed check the sizing model of `mu2net.resources` (docs/sizing.md, "Sizing the
accelerator configs").

The child is assembled by the library (`model.build_model` over seeded component parameters,
every component trainable: a child that clones the whole path) and trained with the library's
optimizer (`training.make_optimizer`: SGD + momentum, warmup-cosine, global-norm clip) and loss,
in the library's `mixed_bfloat16` precision (bf16 compute, f32 weights, optimizer state, layer
norms, softmax and logits). The step
is the documented Keras-on-JAX stateless loop (`model.stateless_call`, `jax.value_and_grad`,
`optimizer.stateless_apply`) under `jax.jit`, on one fixed batch already on the device, so
neither the input pipeline nor host transfers are measured. After compiling and warming up,
`--repeats` timings of `--steps` steps each; the median is reported.

MFU = images/s x 3 x forward FLOPs per image (`scoring.forward_flops`, 2 x MACs: backward =
2 x forward) / the chip's stated dense bf16 peak (table below; `--peak-tflops` overrides).

This needs an accelerator (GPU or TPU visible to JAX) and refuses to run without one (exit
status 2). `--smoke` runs the same code path with a tiny ViT on whatever device there is (CI,
CPU, seconds) and writes nothing.

Run:
    .venv/bin/python benchmarks/accelerator_step.py                    # ViT-B/16, accelerator
    .venv/bin/python benchmarks/accelerator_step.py --model gpu_child  # ViT-L/16, accelerator
    .venv/bin/python benchmarks/accelerator_step.py --smoke            # CPU, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported anywhere

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

RESULTS = {"vit_b16": os.path.join(common.RESULTS_DIR, "accelerator_step.md"),
           "gpu_child": os.path.join(common.RESULTS_DIR, "accelerator_gpu_child.md")}

# Dense bf16 peak per chip in TFLOP/s, as the vendors state it (no sparsity).
PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
    ("L4", 121.0), ("A10G", 70.0), ("V100", 125.0),  # V100: fp16 tensor cores (no bf16)
    ("TPU v6 lite", 918.0), ("TPU v6e", 918.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0),
    ("TPU v5p", 459.0), ("TPU v5", 459.0), ("TPU v4", 275.0),
)


def stated_peak(device_kind: str) -> float | None:
    """TFLOP/s for a JAX `device_kind` (first matching name in PEAK_TFLOPS), else None."""
    for name, tflops in PEAK_TFLOPS:
        if name.lower() in device_kind.lower():
            return tflops
    return None


def vit_b16():
    from mu2net.config import ArchitectureConfig

    return ArchitectureConfig(image_size=224, patch_size=16, hidden_size=768, num_layers=12,
                              num_heads=12, mlp_dim=3072, max_layers=12)


def gpu_child():
    """The gpu config's root at the child's 224 px (same FLOPs and memory as a 224 px child)."""
    import dataclasses

    from mu2net.config import get_config

    return dataclasses.replace(get_config("gpu").architecture, image_size=224)


def tiny():
    from mu2net.config import get_config

    return get_config("testing").architecture


def child(arch, num_classes: int):
    """The child model (bf16 compute) and its hparams."""
    from mu2net.config import get_config
    from mu2net.model import build_model, component_names
    from mu2net.root import random_root_params

    config = get_config("gpu").replace(architecture=arch)
    params, hparams = random_root_params(config, seed=0, num_classes=num_classes)
    model = build_model(arch, hparams, params, trainable=component_names(hparams),
                        precision=config.precision)
    return model, hparams, config


def step_fn(model, optimizer, loss_obj):
    """One jitted training step over the model's and optimizer's state."""
    import jax

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_obj(y, logits), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(trainable, non_trainable, opt_vars, x, y):
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return loss, trainable, non_trainable, opt_vars

    return jax.jit(step, donate_argnums=(0, 1, 2))


def measure(arch, batch: int, steps: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from mu2net.scoring import forward_flops
    from mu2net.training import make_optimizer

    model, hparams, config = child(arch, num_classes=1000)
    optimizer = make_optimizer(hparams, 10_000, config)
    optimizer.build(model.trainable_variables)
    loss_obj = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    step = step_fn(model, optimizer, loss_obj)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (batch, arch.image_size, arch.image_size,
                                        arch.channels)), jnp.bfloat16)
    y = jnp.asarray(rng.integers(0, 1000, batch), jnp.int32)
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    start = time.perf_counter()
    loss, *state = step(*state, x, y)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - start
    for _ in range(2):  # warm up
        loss, *state = step(*state, x, y)
    jax.block_until_ready(loss)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss, *state = step(*state, x, y)
        jax.block_until_ready(loss)
        rates.append(batch * steps / (time.perf_counter() - start))
    device = jax.devices()[0]
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    stats = device.memory_stats() or {}
    return {"images_per_s": statistics.median(rates), "rates": rates,
            "flops_per_image": 3 * forward_flops(arch, hparams), "compile_s": compile_s,
            "loss": float(loss), "params": params, "device_kind": device.device_kind,
            "platform": device.platform, "devices": jax.device_count(),
            "compute_dtype": model.get_layer("encoderblock_0").compute_dtype,
            "peak_bytes": stats.get("peak_bytes_in_use"), "hparams": hparams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny ViT on any device (CPU in CI), writes nothing")
    parser.add_argument("--model", choices=sorted(RESULTS), default="vit_b16")
    parser.add_argument("--batch", type=int, default=None,
                        help="per step (default: 256 for vit_b16, the gpu config's 16 for "
                             "gpu_child)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the chip's dense bf16 peak, if not in the built-in table")
    parser.add_argument("--output", default=None, help=f"results file (full run: {RESULTS})")
    args = parser.parse_args()
    import jax

    platform = jax.devices()[0].platform
    if not args.smoke and platform not in ("gpu", "tpu"):
        print(f"accelerator_step: no accelerator visible to JAX (devices: {jax.devices()}); "
              "this benchmark measures an accelerator step and does not run on "
              f"{platform!r}. Use --smoke for the CPU code-path check.", file=sys.stderr)
        raise SystemExit(2)
    from mu2net.config import get_config

    arch = tiny() if args.smoke else {"vit_b16": vit_b16, "gpu_child": gpu_child}[args.model]()
    default_batch = 256 if args.model == "vit_b16" else get_config("gpu").search.batch_size
    batch = args.batch or (4 if args.smoke else default_batch)
    steps = args.steps or (2 if args.smoke else 20)
    repeats = args.repeats or (2 if args.smoke else 5)
    r = measure(arch, batch, steps, repeats)
    peak = args.peak_tflops or stated_peak(r["device_kind"])
    achieved = r["images_per_s"] * r["flops_per_image"] / 1e12
    mfu = f"{100 * achieved / peak:.1f} %" if peak else "n/a (peak unknown: --peak-tflops)"
    label = "tiny ViT (testing)" if args.smoke else {
        "vit_b16": "ViT-B/16 at 224", "gpu_child": "ViT-L/16 at 224 (the gpu config's child)"
    }[args.model]
    peak_gb = f"{r['peak_bytes'] / 1e9:.1f} GB" if r["peak_bytes"] else "not reported"
    modelled = ""
    if args.model == "gpu_child" and not args.smoke:
        from mu2net.resources import child_memory_bytes

        model_gb = child_memory_bytes(get_config("gpu"), r["hparams"])["total"] / 1e9
        modelled = f" (`mu2net.resources` models {model_gb:.1f} GB)"
    text = (common.header(f"Accelerator step: {label}, bf16, JAX backend")
            + f"\nDevice: {r['device_kind']} ({r['platform']}, {r['devices']} visible; one "
            f"used). Model: {label}, {r['params']:,} parameters, all trainable; compute dtype "
            f"{r['compute_dtype']}. Batch {batch}; {repeats} timings of {steps} jitted steps "
            f"after compile ({r['compile_s']:.1f} s) and 2 warm-up steps; median.\n\n"
            "| images/s | model TFLOP/s | stated peak TFLOP/s (dense bf16) | MFU |\n"
            "|---:|---:|---:|---:|\n"
            f"| {r['images_per_s']:,.0f} | {achieved:,.1f} | "
            f"{peak if peak else 'unknown'} | {mfu} |\n\n"
            f"Model FLOPs per image: {r['flops_per_image'] / 1e9:.1f} G (3 x forward, "
            f"`scoring.forward_flops`). Timings (img/s): "
            f"{', '.join(f'{x:,.0f}' for x in r['rates'])}. Final loss {r['loss']:.3f}. "
            f"Peak device memory (JAX's allocator, all of the run): {peak_gb}{modelled}.\n")
    print(text)
    output = args.output or (None if args.smoke else RESULTS[args.model])
    if output:
        common.write(output, text)


if __name__ == "__main__":
    main()
