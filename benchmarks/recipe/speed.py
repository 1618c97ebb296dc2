"""Training images/s of candidate cpu_demo architectures (random weights, batch 128).

Run: .venv/bin/python benchmarks/recipe/speed.py   (about 1 minute on 2 cores)
     .venv/bin/python benchmarks/recipe/speed.py --smoke   # first candidate, 4 batches of 16
"""

import argparse
import time

import numpy as np

from mu2net.config import ArchitectureConfig, get_config
from mu2net.model import build_model
from mu2net.root import random_root_params
from mu2net.training import compile_model, make_optimizer

CANDIDATES = [(4, 64, 4, 128), (7, 64, 4, 128), (7, 96, 4, 192), (7, 128, 4, 256),
              (7, 128, 6, 256)]  # (patch, width, depth, mlp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="CI's check: the first candidate on 4 batches of 16")
    args = parser.parse_args()
    batch, batches = (16, 4) if args.smoke else (128, 20)
    base = get_config("cpu_demo")
    for patch, width, depth, mlp in CANDIDATES[:1] if args.smoke else CANDIDATES:
        arch = ArchitectureConfig(image_size=28, patch_size=patch, hidden_size=width,
                                  num_layers=depth, num_heads=4, mlp_dim=mlp, max_layers=depth)
        config = base.replace(architecture=arch)
        params, hparams = random_root_params(config, seed=0, num_classes=10)
        model = build_model(arch, hparams, params, trainable=list(params))
        compile_model(model, make_optimizer(hparams, 1000, config), run_eagerly=False)
        x = np.random.default_rng(0).random((batch * batches, 28, 28, 3), dtype=np.float32)
        y = np.random.default_rng(1).integers(0, 10, len(x))
        model.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1, verbose=0)  # trace
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        n = sum(int(np.prod(v.shape)) for c in params.values() for v in c.values())
        print(f"patch {patch} width {width} depth {depth}: {len(x) / seconds:.0f} images/s, "
              f"{n:,} params", flush=True)


if __name__ == "__main__":
    main()
