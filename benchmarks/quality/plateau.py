"""Training to convergence with a learning rate that decays on plateaus.

With the library's warmup + cosine schedule stretched over an 80-epoch cap, early stopping
ends a fine-tuning run while the learning rate is still near its peak: on `digits` (seed 0)
the whole-model runs at lr 0.1 / 0.2 stopped at epochs 9 / 15, the top-2 and top-3 runs at
11, right after the 8-epoch warmup, and the kept run (93.9 % test) lost to the same sweep
trained on fewer examples with a complete cosine (95.6 %). Stopping by patience is then noise
on a high learning rate, not convergence.

Here the run warms up linearly over `warmup_epochs`, holds the peak, and each time the
validation accuracy has not risen strictly for `patience` epochs the learning rate is divided
by 10; after `decays` such divisions the next plateau stops the run (early stopping). The
optimizer, loss, gradient clip and best-validation checkpoint are the library's
(`training.make_optimizer`'s `MomentumSGD` class at a settable learning rate,
`training.compile_model`); only the schedule differs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np


def train_plateau(model, train_ds, val_ds, *, hparams: dict[str, Any], lr: float, budget,
                  trainable: list[str], patience: int, decays: int, config,
                  warmup_epochs: int = 1) -> dict[str, Any]:
    """Train until the `decays + 1`-th plateau of `patience` epochs (or `budget.validations`
    epochs, the cap); the trainable components end at their best-validation snapshot.
    Returns the validation curve, the epochs at which the learning rate was divided, and
    whether the patience (not the cap) ended the run."""
    import keras

    from mu2net.model import component_layers
    from mu2net.training import compile_model, make_optimizer, resolve_execution, set_params

    template = make_optimizer({**hparams, "opt_lr": lr}, budget.total_steps, config)
    optimizer = type(template)(float(lr) * config.search.min_lr_ratio,
                               momentum=template.momentum, nesterov=template.nesterov,
                               global_clipnorm=config.search.grad_clip_norm)
    warmup_steps = max(1, warmup_epochs * budget.steps_per_validation)

    class Plateau(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step, self.peak, self.stale, self.decayed = 0, float(lr), 0, []
            self.best, self.curve, self.snapshot = -math.inf, [], None
            self.stopped = False

        def on_train_batch_begin(self, batch, logs=None):  # noqa: ARG002 (Keras signature)
            if self.step < warmup_steps:  # linear warmup from lr * min_lr_ratio to lr
                low = self.peak * config.search.min_lr_ratio
                optimizer.learning_rate.assign(low + (self.peak - low) * self.step
                                               / warmup_steps)
            elif self.step == warmup_steps:
                optimizer.learning_rate.assign(self.peak)
            self.step += 1

        def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (Keras signature)
            quality = float((logs or {})["val_accuracy"])
            self.curve.append(quality)
            if quality >= self.best:  # ties: the later checkpoint, as `Retention`
                layers = component_layers(self.model)
                self.snapshot = {n: layers[n].get_params() for n in trainable}
            if quality > self.best:
                self.best, self.stale = quality, 0
                return
            self.stale += 1
            if self.stale < patience or self.step <= warmup_steps:
                return
            if len(self.decayed) < decays:
                self.peak /= 10.0
                optimizer.learning_rate.assign(self.peak)
                self.decayed.append(len(self.curve))
                self.stale = 0
            else:
                self.stopped = True
                self.model.stop_training = True

    start = time.perf_counter()
    compile_model(model, optimizer, run_eagerly=resolve_execution("auto", budget.total_steps))
    plateau = Plateau()
    model.fit(train_ds, steps_per_epoch=budget.steps_per_validation, epochs=budget.validations,
              validation_data=val_ds, callbacks=[plateau], verbose=0, shuffle=False)
    set_params(model, plateau.snapshot)
    return {"curve": plateau.curve, "quality": max(plateau.curve),
            "best_validation": int(np.argmax(plateau.curve)) + 1,
            "stopped_early": plateau.stopped, "decayed_at": plateau.decayed,
            "examples": len(plateau.curve) * budget.steps_per_validation * budget.batch_size,
            "seconds": time.perf_counter() - start}
