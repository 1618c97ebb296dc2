"""Training of one path (docs/method.md §5.1).

* Loss: mean softmax cross-entropy (no label smoothing, no regulariser, no dropout).
* Optimizer: global-norm clipping at 1.0, then SGD with momentum (optionally Nesterov) in
  optax's form (`trace = g + m * trace; w -= lr * trace`), over the trainable components only;
  frozen components are non-trainable layers the optimizer never sees.
* Schedule: linear warmup from lr/1000 to lr over `int(warmup_ratio * T)` steps, then cosine
  decay to lr/1000 at step T (`SearchConfig.min_lr_ratio`).
* Budget: T = V x B steps, B = ceil(min(N_train, examples_between_validations) / batch); V
  evenly spaced validations on a fixed validation subset. The search always trains all T steps.
  With `SearchConfig.child_epochs` the budget follows the task's size instead (`child_budget`).
* Retention: `best` starts at the same-task parent's score (-inf otherwise); after each
  validation, if score(child) >= best, the trainable components are snapshotted and best is
  raised. The child is *improved* iff a snapshot was taken; its components are then the
  snapshot. With `SearchConfig.child_quality="final"` only the last validation counts.
* Early stopping (optional, off in the search; the benchmarks' baselines use it to train to
  convergence): `patience=P` stops after P validations in a row without a strictly higher
  validation accuracy; the outcome then reports the steps actually trained.

Keras `fit` drives the loop, so the same code runs on the TensorFlow and JAX backends, and on
several devices inside a `mu2net.distribute.Distribution` scope (the model, optimizer, compile
and fit all inside it; the global batch is split across the replicas, and the gradient is
all-reduced before it is clipped, so the update is the single-device one up to float
reduction order).
Determinism: all initial weights come from seeded numpy, the data order from the seeded
tf.data shuffle, and nothing draws from a global RNG, so a child trained twice with the same
spec gives bit-identical weights on the same backend and machine.

Momentum state is not carried over from an ancestor (a mu3Net addition) and is kept in float32
(the paper keeps it in bfloat16). Restoring it would need the trace stored with each
component's blob (a change of the blob format and of every published path's size on disk):
not done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mu2net.config import CHILD_QUALITIES, Config
from mu2net.distribute import active_replicas, replicas_in_sync
from mu2net.errors import ConfigError, TaskError
from mu2net.model import component_layers
from mu2net.search_state import derive_rng

# Up to this many steps a fresh child trains faster eagerly than traced (tracing costs about as
# much as 12-16 eager steps, for the testing and the cpu_demo model alike):
# benchmarks/results/execution_mode.md.
EAGER_MAX_STEPS = 12
EXECUTIONS = ("auto", "graph", "eager")


@dataclass(frozen=True)
class Budget:
    """Steps of one child: `validations` x `steps_per_validation` batches of `batch_size`."""

    batch_size: int  # examples per step
    steps_per_validation: int  # steps between two validations
    validations: int  # validations per child, each scoring a checkpoint

    @property
    def total_steps(self) -> int:
        return self.steps_per_validation * self.validations

    @property
    def examples(self) -> int:
        return self.total_steps * self.batch_size


def child_budget(config: Config, num_train: int) -> Budget:
    """T = V x ceil(E / batch), E = min(N_train, examples_between_validations) examples per
    validation; with `search.child_epochs` = e > 0, E = min(ceil(e x N_train / V),
    examples_between_validations): the child's budget follows the task's size, in passes over
    its train split, within the same cap. The batch shrinks to the train split when the split
    is smaller than one batch."""
    if num_train < 1:
        raise TaskError("the train split is empty: nothing to train on")
    search = config.search
    batch = min(search.batch_size, num_train)
    per_val_examples = num_train
    if search.child_epochs > 0:
        per_val_examples = math.ceil(search.child_epochs * num_train
                                     / search.validations_per_child)
    per_val = math.ceil(min(per_val_examples, search.examples_between_validations) / batch)
    return Budget(batch, max(per_val, 1), search.validations_per_child)


@dataclass
class TrainOutcome:
    """What training one path produced. `params` are the trainable components' weights: the
    retained snapshot if improved, else the final ones."""

    improved: bool
    params: dict[str, dict[str, np.ndarray]]
    curve: list[float]
    quality: float
    best_score: float
    steps: int
    examples: int
    seconds: float
    losses: list[float | None] = field(default_factory=list)
    replicas: int = 1


# === Keras pieces (created lazily: importing this module does not import Keras) =============


_CLASSES: dict[str, type] | None = None


def _classes() -> dict[str, type]:
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import keras

    ops = keras.ops

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warmup lr*r -> lr over `warmup_steps`, cosine lr -> lr*r until `total_steps`
        (optax `warmup_cosine_decay_schedule` with init = end = lr*r)."""

        def __init__(self, peak: float, total_steps: int, warmup_steps: int, min_ratio: float):
            self.peak = float(peak)
            self.total_steps = int(total_steps)
            self.warmup_steps = int(warmup_steps)
            self.min_ratio = float(min_ratio)

        def __call__(self, step):
            step = ops.cast(step, "float32")
            low = self.peak * self.min_ratio
            warm = low + (self.peak - low) * step / max(self.warmup_steps, 1)
            frac = ops.clip((step - self.warmup_steps)
                            / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
            cos = low + (self.peak - low) * 0.5 * (1.0 + ops.cos(math.pi * frac))
            return ops.where(step < self.warmup_steps, warm, cos)

        def get_config(self):
            return {"peak": self.peak, "total_steps": self.total_steps,
                    "warmup_steps": self.warmup_steps, "min_ratio": self.min_ratio}

    class MomentumSGD(keras.optimizers.Optimizer):
        """optax.sgd(momentum, nesterov): trace = g + m*trace; update = g + m*trace if
        nesterov else trace; w -= lr * update. (Keras' SGD multiplies lr into the velocity,
        which differs from optax when the lr changes over time.)"""

        def __init__(self, learning_rate, momentum: float, nesterov: bool, **kwargs):
            super().__init__(learning_rate=learning_rate, **kwargs)
            self.momentum = float(momentum)
            self.nesterov = bool(nesterov)

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.traces = self.add_optimizer_variables(variables, "trace")

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            g = ops.cast(gradient, variable.dtype)
            trace = self.traces[self._get_variable_index(variable)]
            new_trace = g + self.momentum * trace
            self.assign(trace, new_trace)
            update = g + self.momentum * new_trace if self.nesterov else new_trace
            self.assign_sub(variable, lr * update)

        def _clip_gradients(self, grads):
            if replicas_in_sync() > 1:
                return grads  # per-replica gradients: clipped after the all-reduce, below
            return super()._clip_gradients(grads)

        def _all_reduce_sum_gradients(self, grads_and_vars):
            # TF backend only (Keras' tf.distribute hook, called after `_clip_gradients`):
            # under MirroredStrategy clip the summed, global-batch gradient, as one device
            # would; with one replica the gradients were already clipped and pass unchanged.
            pairs = super()._all_reduce_sum_gradients(grads_and_vars)
            if replicas_in_sync() == 1:
                return pairs
            clipped = super()._clip_gradients([g for g, _ in pairs])
            return [(g, v) for g, (_, v) in zip(clipped, pairs, strict=True)]

        def get_config(self):
            return {**super().get_config(), "momentum": self.momentum,
                    "nesterov": self.nesterov}

    class Retention(keras.callbacks.Callback):
        """After each validation: score it; snapshot the trainable components if >= best."""

        def __init__(self, score_fn: Callable[[float], float], best: float,
                     trainable: list[str], patience: int | None = None):
            super().__init__()
            self.score_fn = score_fn
            self.best = best
            self.trainable = trainable
            self.patience = patience
            self.best_quality = -math.inf
            self.stale = 0  # validations since the accuracy last rose strictly
            self.curve: list[float] = []
            self.losses: list[float] = []
            self.snapshot: dict[str, dict[str, np.ndarray]] | None = None

        def on_epoch_end(self, epoch, logs=None):  # noqa: ARG002 (the Keras signature)
            logs = logs or {}
            quality = float(logs["val_accuracy"])
            self.curve.append(quality)
            loss = float(logs.get("loss", math.nan))
            self.losses.append(loss if math.isfinite(loss) else None)  # JSON has no NaN
            score = self.score_fn(quality)
            if score >= self.best:
                layers = component_layers(self.model)
                self.snapshot = {n: layers[n].get_params() for n in self.trainable}
                self.best = score
            if self.patience is None:
                return
            if quality > self.best_quality:
                self.best_quality, self.stale = quality, 0
            else:
                self.stale += 1
            if self.stale >= self.patience:
                self.model.stop_training = True

    _CLASSES = {"WarmupCosine": WarmupCosine, "MomentumSGD": MomentumSGD,
                "Retention": Retention}
    return _CLASSES


def lr_schedule(lr: float, warmup_ratio: float, total_steps: int, min_ratio: float):
    """The warmup + cosine schedule as a Keras `LearningRateSchedule`."""
    return _classes()["WarmupCosine"](lr, total_steps, int(warmup_ratio * total_steps),
                                      min_ratio)


def make_optimizer(hparams: Mapping[str, Any], total_steps: int, config: Config):
    """Clip by global norm, then SGD + momentum on the warmup-cosine schedule."""
    schedule = lr_schedule(float(hparams["opt_lr"]), float(hparams["opt_lr_warmup_ratio"]),
                           total_steps, config.search.min_lr_ratio)
    return _classes()["MomentumSGD"](schedule, momentum=float(hparams["opt_momentum"]),
                                     nesterov=bool(hparams["opt_nesterov"]),
                                     global_clipnorm=config.search.grad_clip_norm)


def compile_model(model, optimizer, *, run_eagerly: bool) -> None:
    import keras

    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  # weighted: padded evaluation examples (weight 0) never count
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  run_eagerly=run_eagerly,
                  # JAX: jit the step (op-by-op dispatch would cripple TPUs); TensorFlow on CPU:
                  # XLA costs seconds of compile per new candidate for ~10 % speed, so stay off.
                  jit_compile=keras.backend.backend() == "jax" and not run_eagerly)


def validation_subset(task_name: str, images: np.ndarray, labels: np.ndarray,
                      limit: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed subset of the validation split (the same for every child and cycle of a task):
    `limit` examples in a permutation seeded by the task name, so a split ordered by class is
    still sampled evenly."""
    if len(labels) == 0:
        raise TaskError(f"task {task_name!r} has an empty validation split: children cannot "
                        "be compared")
    order = derive_rng(0, task_name, "validation_subset").permutation(len(labels))
    keep = np.sort(order[:limit])
    return images[keep], labels[keep]


def resolve_execution(execution: str, total_steps: int, replicas: int = 1) -> bool:
    """Whether to run eagerly: `auto` traces a graph only when enough steps pay for it, and
    always on several replicas (eager tf.distribute synchronises threads at every step)."""
    if execution not in EXECUTIONS:
        raise ConfigError(f"execution={execution!r} is invalid: expected one of "
                          f"{list(EXECUTIONS)}")
    if execution == "auto":
        return replicas == 1 and total_steps <= EAGER_MAX_STEPS
    return execution == "eager"


def train_model(model, train_ds, val_ds, *, budget: Budget, optimizer, trainable: list[str],
                score_fn: Callable[[float], float], best_start: float,
                execution: str = "auto", patience: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                quality: str = "best") -> TrainOutcome:
    """Train `model` for the whole budget with V validations and best-checkpoint retention.

    `train_ds` must yield at least T batches (repeat it); `val_ds` is the fixed subset.
    Improved iff some validation scored >= `best_start` (which is -inf for a new task).
    `quality="final"` (`SearchConfig.child_quality`): only the last validation counts: the
    outcome's quality is the final validation, improved iff it scores >= `best_start`, and the
    params are the final ones (no max-of-V selection bias in the bar the child sets).
    `patience`: stop early once the validation accuracy has not risen strictly for that many
    validations in a row (None: always train the whole budget, as the search does); the
    outcome's steps and examples are those actually trained. `progress(done, total)` is
    called after each validation (the pipeline's progress bars).
    """
    if patience is not None and patience < 1:
        raise ConfigError(f"patience={patience} is invalid: expected None or >= 1")
    if quality not in CHILD_QUALITIES:
        raise ConfigError(f"quality={quality!r} is invalid: expected one of "
                          f"{list(CHILD_QUALITIES)}")
    replicas = active_replicas(model)
    run_eagerly = resolve_execution(execution, budget.total_steps, replicas)
    compile_model(model, optimizer, run_eagerly=run_eagerly)
    # final: no snapshot along the way (best = +inf), the decision is taken after the last one
    retention = _classes()["Retention"](score_fn, math.inf if quality == "final" else best_start,
                                        list(trainable), patience)
    start = time.perf_counter()
    callbacks = [retention]
    if progress is not None:
        import keras

        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress(  # noqa: ARG005 (Keras calls logs=)
                epoch + 1, budget.validations)))
    model.fit(train_ds, steps_per_epoch=budget.steps_per_validation, epochs=budget.validations,
              validation_data=val_ds, callbacks=callbacks, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    if quality == "final":
        value = retention.curve[-1]
        best_score = score_fn(value)
        improved = best_score >= best_start
        if not improved:
            best_score = best_start
    else:
        value = max(retention.curve)
        best_score = retention.best
        improved = retention.snapshot is not None
    if improved and quality == "best":
        params = retention.snapshot
    else:
        layers = component_layers(model)
        params = {n: layers[n].get_params() for n in trainable}
    steps = len(retention.curve) * budget.steps_per_validation  # fewer if stopped early
    return TrainOutcome(improved=improved, params=params, curve=list(retention.curve),
                        quality=value, best_score=best_score, steps=steps,
                        examples=steps * budget.batch_size, seconds=seconds,
                        losses=retention.losses, replicas=replicas)


def set_params(model, params: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    layers = component_layers(model)
    for name, weights in params.items():
        layers[name].set_params(weights)
