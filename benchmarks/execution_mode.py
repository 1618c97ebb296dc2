"""Eager versus traced training of one whole child, to calibrate `training.resolve_execution`.

Every child is a fresh Keras model trained once, so a traced (`tf.function`) fit pays its
tracing on every child, and eager execution pays Python dispatch on every step. This measures
the wall time of one child's whole training (build, compile, `fit` for the child's steps on an
in-memory batch, no validation) both ways, interleaved so machine load hits both alike, for the
step counts around the threshold: `testing` children train 8 steps of 32, `cpu_demo` children
44 steps of 64 on the smallest real task (`digits`) and 128 on the others (not measured: past
the break-even the traced advantage only grows with steps, and 128 steps would double the
run). The last column is what `execution="auto"` chooses for that child, so a wrong choice is
visible in the table.

Run:
    .venv/bin/python benchmarks/execution_mode.py            # full (~4 min on 2 cores)
    .venv/bin/python benchmarks/execution_mode.py --smoke    # one tiny case, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

RESULTS = os.path.join(common.RESULTS_DIR, "execution_mode.md")

# (variant, batch size, steps): the children the variants actually train.
CASES = [("testing", 32, 8), ("testing", 32, 32), ("testing", 32, 64),
         ("cpu_demo", 64, 8), ("cpu_demo", 64, 16), ("cpu_demo", 64, 44)]
SMOKE_CASES = [("testing", 8, 4)]


def train_once(variant: str, batch: int, steps: int, eager: bool) -> float:
    """Seconds to build, compile and train one fresh child for `steps` steps."""
    from mu2net.config import get_config
    from mu2net.model import component_names
    from mu2net.mutations import default_hparams
    from mu2net.training import compile_model, make_optimizer

    config = get_config(variant)
    hparams = default_hparams(config.hparams)
    hparams.update(num_classes=10, adapter_layers=[])
    ds = common.fixed_batch_dataset(int(hparams["ds_image_size"]), config.architecture.channels,
                                    batch, 10)
    start = time.perf_counter()
    model = common.random_child(config, hparams, component_names(hparams))
    compile_model(model, make_optimizer(hparams, steps, config), run_eagerly=eager)
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def measure(variant: str, batch: int, steps: int, repeats: int) -> dict:
    from mu2net.training import resolve_execution

    eager, graph = [], []
    for _ in range(repeats):
        eager.append(train_once(variant, batch, steps, eager=True))
        graph.append(train_once(variant, batch, steps, eager=False))
    e, g = statistics.median(eager), statistics.median(graph)
    auto = "eager" if resolve_execution("auto", steps) else "graph"
    best = "eager" if e < g else "graph"
    return {"variant": variant, "batch": batch, "steps": steps, "eager_s": e, "graph_s": g,
            "ratio": e / g, "auto": auto, "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    cases = SMOKE_CASES if args.smoke else CASES
    train_once(*cases[0], eager=False)  # import and first-use costs outside the table
    rows = []
    for case in cases:
        row = measure(*case, repeats=1 if args.smoke else args.repeats)
        rows.append(row)
        print(row, flush=True)
    lines = [common.header("Eager versus traced training of one whole child"),
             f"Median of {1 if args.smoke else args.repeats} interleaved repetitions; each is a "
             "fresh child built, compiled and trained (tracing included).\n",
             "| variant | batch | steps | eager s | traced s | eager / traced | auto picks | "
             "faster |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['batch']} | {r['steps']} | {r['eager_s']:.2f} | "
                     f"{r['graph_s']:.2f} | {r['ratio']:.2f} | {r['auto']} | {r['best']} |")
    wrong = [r for r in rows if r["auto"] != r["best"]]
    lines.append(f"\nauto picked the slower mode in {len(wrong)} of {len(rows)} cases.\n")
    common.write(args.output, "\n".join(lines))


if __name__ == "__main__":
    main()
