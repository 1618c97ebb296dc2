"""Fine-tuning curves of one suite task from a root checkpoint: which learning rate, crop
augmentation and image size a child needs, per epoch.

Run (the shipped cpu_demo root; each run a few minutes on 2 cores):
    .venv/bin/python benchmarks/recipe/finetune_curve.py roots/cpu_demo-<key>.npz mnist_5k \\
        0.03,30,1.0,28 0.03,30,0.5,28 0.1,30,0.5,28        # lr,epochs,crop area min,size
    .venv/bin/python benchmarks/recipe/finetune_curve.py --smoke   # shipped root, digits, 1 epoch
"""

import argparse
import glob
import math
import os
import time

import keras
import numpy as np

from mu2net.config import get_config
from mu2net.model import build_model, component_names, init_component, resize_posembed
from mu2net.root import import_augreg_npz
from mu2net.tasks.preprocess import make_dataset
from mu2net.tasks.suite import load_suite_task
from mu2net.training import Budget, make_optimizer, set_params, train_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root_file", nargs="?", help="a root checkpoint (.npz)")
    parser.add_argument("task", nargs="?", help="a suite task, e.g. mnist_5k")
    parser.add_argument("runs", nargs="*", metavar="LR,EPOCHS,AREA,SIZE")
    parser.add_argument("--smoke", action="store_true",
                        help="CI's check: the shipped cpu_demo root, task digits, one epoch")
    args = parser.parse_args()
    if args.smoke:
        args.root_file = args.root_file or sorted(glob.glob(f"{REPO}/roots/cpu_demo-*.npz"))[0]
        args.task, args.runs = args.task or "digits", args.runs or ["0.1,1,0.5,28"]
    if not (args.root_file and args.task and args.runs):
        parser.error("give ROOT_FILE TASK and at least one LR,EPOCHS,AREA,SIZE (or --smoke)")
    return args


def main() -> None:
    args = parse_args()
    root_file, task_name, runs = args.root_file, args.task, args.runs
    config = get_config("cpu_demo")
    arch = config.architecture
    params, root_hparams = import_augreg_npz(root_file, config)
    task = load_suite_task(task_name)
    x, y = task.arrays("train")
    vx, vy = task.arrays("validation")
    tx, ty = task.arrays("test")
    print(task_name, task.info.split_sizes, flush=True)
    for run in runs:
        lr, epochs, area, size = (float(v) for v in run.split(","))
        epochs, size = int(epochs), int(size)
        hparams = {**root_hparams, "num_classes": task.info.num_classes, "opt_lr": lr,
                   "ds_image_size": size}
        names = component_names(hparams)
        weights = {n: {k: np.array(v) for k, v in params[n].items()} for n in names[:-1]}
        weights["head"] = init_component("head", arch, hparams, 1)
        weights["posembed_input"] = {"pos_embedding": resize_posembed(
            params["posembed_input"]["pos_embedding"], size // arch.patch_size)}
        model = build_model(arch, hparams, weights, trainable=names)
        budget = Budget(64, math.ceil(len(y) / 64), epochs)
        train = make_dataset(x, y, image_size=size, batch_size=64, training=True, seed=3,
                             ds_hparams={"ds_area_range_min": area}, repeat=True)
        val = make_dataset(vx, vy, image_size=size, batch_size=256, training=False, seed=0)
        start = time.perf_counter()
        out = train_model(model, train, val, budget=budget,
                          optimizer=make_optimizer(hparams, budget.total_steps, config),
                          trainable=names, score_fn=lambda q: q, best_start=-math.inf)
        set_params(model, out.params)
        test = make_dataset(tx, ty, image_size=size, batch_size=256, training=False, seed=0)
        pred = np.concatenate([np.argmax(keras.ops.convert_to_numpy(model(b, training=False)),
                                         1) for b, _ in test])
        print(f"lr {lr} epochs {epochs} area {area} size {size}: test {np.mean(pred == ty):.4f}"
              f", best validation {out.quality:.4f}, curve {[round(c, 3) for c in out.curve]}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
