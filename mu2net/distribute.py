"""Data parallelism inside one child's training, from the Keras backend (docs/method.md §5.1 math
unchanged: the same global batch, the same mean loss, the same clipped update).

* TensorFlow backend: `tf.distribute.MirroredStrategy` over the visible GPUs. The model, its
  optimizer and its metrics are created under `strategy.scope()`; `model.fit` splits each
  global batch across the replicas and all-reduces the gradients (`MomentumSGD` in
  `mu2net.training` clips them *after* the all-reduce, as on one device).
* JAX backend: `keras.distribution.DataParallel` over the visible TPU / GPU devices (variables
  replicated, each batch sharded along its first axis; XLA computes the global gradient).
* One device, another backend, or `off`: nothing is entered, so the single-device path is the
  code path it always was (bit-identical results).

The choice is the `mode` argument, auto|off|on (the train component passes
`$MU2NET_DATA_PARALLEL`):
`auto` distributes over accelerators (GPU / TPU) when there are several and the global batch
splits evenly; `on` insists (and, without accelerators, uses several logical CPU devices, which
is how the tests run it: TF logical CPU devices, or JAX with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`), raising if it cannot; `off` never
distributes. Devices must be configured before the backend initialises, so the choice is made
per child from what the process already sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mu2net.errors import ConfigError

ENV_VAR = "MU2NET_DATA_PARALLEL"
MODES = ("auto", "off", "on")
BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class Distribution:
    """How one child trains: on `devices` (empty: one device, nothing distributed) of
    `backend`. `reason` says why (it ends up in logs and errors)."""

    backend: str
    devices: tuple[str, ...] = ()
    reason: str = ""

    @property
    def replicas(self) -> int:
        return max(len(self.devices), 1)

    @property
    def distributed(self) -> bool:
        return len(self.devices) > 1

    @contextlib.contextmanager
    def scope(self) -> Iterator[Distribution]:
        """Enter the backend's distribution: build the model, create the optimizer, compile
        and fit inside it. A no-op when not distributed."""
        if not self.distributed:
            yield self
        elif self.backend == "tensorflow":
            import tensorflow as tf

            strategy = tf.distribute.MirroredStrategy(devices=list(self.devices))
            with strategy.scope():
                yield self
        else:
            import keras

            data_parallel = keras.distribution.DataParallel(devices=list(self.devices))
            with data_parallel.scope():
                yield self


def resolve_mode(mode: str | None = None) -> str:
    """`mode`, else `auto`. Entry points (the train component, the CLI) pass the value of
    `$MU2NET_DATA_PARALLEL`; nothing below them reads the environment."""
    value = mode or "auto"
    if value not in MODES:
        raise ConfigError(f"{ENV_VAR}={value!r} is invalid: expected one of {list(MODES)}")
    return value


def current_backend() -> str:
    import keras

    return keras.backend.backend()


def visible_devices(backend: str, kind: str) -> list[str]:
    """Device names the backend sees: `kind` is `accelerator` (GPU, or TPU on JAX) or `cpu`
    (logical CPU devices: several only when configured before the backend initialised)."""
    if kind not in ("accelerator", "cpu"):
        raise ConfigError(f"device kind {kind!r} is invalid: expected 'accelerator' or 'cpu'")
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices("GPU" if kind == "accelerator"
                                                               else "CPU")]
    if backend == "jax":
        import jax
        import keras

        if kind == "cpu":
            return keras.distribution.list_devices("cpu")
        platform = jax.default_backend()
        return keras.distribution.list_devices(platform) if platform in ("gpu", "tpu") else []
    return []


def choose(batch_sizes: int | Sequence[int], *, mode: str | None = None,
           devices: Sequence[str] | None = None, backend: str | None = None) -> Distribution:
    """The distribution for a child whose global batches (training, evaluation) are
    `batch_sizes`.

    `devices` overrides detection (names in the backend's spelling: `/cpu:0`, `gpu:1`, ...).
    Every global batch must split evenly across the replicas (each replica then computes the
    same share of the mean loss); under `auto` an uneven split trains on one device."""
    sizes = [batch_sizes] if isinstance(batch_sizes, int) else [int(b) for b in batch_sizes]
    mode = resolve_mode(mode)
    backend = backend or current_backend()
    if mode == "off":
        return Distribution(backend, (), f"{ENV_VAR}=off")
    if backend not in BACKENDS:
        if mode == "on":
            raise ConfigError(f"data parallelism on backend {backend!r} is not supported: "
                              f"expected one of {list(BACKENDS)}")
        return Distribution(backend, (), f"backend {backend!r} trains on one device")
    if devices is not None:
        found, source = list(devices), "requested"
    else:
        found, source = visible_devices(backend, "accelerator"), "accelerator"
        if len(found) < 2 and mode == "on":
            found, source = visible_devices(backend, "cpu"), "logical CPU"
    if len(found) < 2:
        if mode == "on":
            raise ConfigError(f"{ENV_VAR}=on needs at least 2 devices; {backend} sees "
                              f"{found or 'none'} (configure GPUs/TPUs, or logical CPU devices "
                              "before the backend starts)")
        return Distribution(backend, (), f"{len(found)} {source} device(s)")
    uneven = [b for b in sizes if b % len(found)]
    if uneven:
        message = (f"global batch {uneven[0]} does not split evenly across {len(found)} "
                   f"{source} devices")
        if mode == "on":
            raise ConfigError(f"{ENV_VAR}=on: {message}: use a batch size divisible by "
                              f"{len(found)}")
        return Distribution(backend, (), f"{message}: one device")
    return Distribution(backend, tuple(found), f"{len(found)} {source} devices")


def active_replicas(model=None) -> int:
    """Replicas the current context (or the model's strategy) really trains on."""
    backend = current_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = model.distribute_strategy if model is not None else tf.distribute.get_strategy()
        return int(strategy.num_replicas_in_sync)
    if backend == "jax":
        import keras

        current = keras.distribution.distribution()
        return 1 if current is None else int(current.device_mesh.devices.size)
    return 1


def replicas_in_sync() -> int:
    """Replicas of the current `tf.distribute` replica context: the number the optimizer's
    all-reduce sums over (1 on one device, outside a replica context, and on JAX, where XLA
    computes the global gradient itself)."""
    if current_backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def pad_evaluation(images: np.ndarray, labels: np.ndarray,
                   replicas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Evaluation data whose every batch splits across `replicas` (JAX shards each batch
    evenly; a short last batch of, say, 29 examples cannot go on 2 devices). Pads with
    copies of the first examples weighted 0, so accuracy (sum of weighted hits / sum of
    weights) is exactly the unpadded one; weights are None when no padding is needed."""
    n = len(labels)
    short = (-n) % max(replicas, 1)
    if short == 0 or n == 0:
        return images, labels, None
    take = np.arange(short) % n
    weights = np.concatenate([np.ones(n, np.float32), np.zeros(short, np.float32)])
    return (np.concatenate([images, images[take]]), np.concatenate([labels, labels[take]]),
            weights)


def with_weights(dataset, weights: np.ndarray | None, batch_size: int):
    """Attach per-example `weights` (batched like `dataset`) as Keras sample weights."""
    if weights is None:
        return dataset
    import tensorflow as tf

    w = tf.data.Dataset.from_tensor_slices(weights).batch(batch_size)
    return tf.data.Dataset.zip((dataset, w)).map(lambda xy, sw: (xy[0], xy[1], sw))


def target_devices(target: str, backend: str | None = None) -> list[str]:
    """The devices of the compile-time device `target` (cpu, gpu, tpu) that the backend sees:
    TensorFlow's logical GPU / TPU devices, or JAX's devices when its platform is `target`."""
    from mu2net.config import TARGETS

    if target not in TARGETS:
        raise ConfigError(f"device target {target!r} is invalid: expected one of "
                          f"{list(TARGETS)}")
    backend = backend or current_backend()
    if target == "cpu":
        return visible_devices(backend, "cpu")
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices(target.upper())]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()] if jax.default_backend() == target else []
    return []


def require_accelerator(target: str, backend: str | None = None) -> list[str]:
    """Refuse to train for a gpu/tpu target when the backend sees no such accelerator.

    Without the guard a GPU pod whose image cannot load the driver (GKE mounts it under
    /usr/local/nvidia and sets no variables) trains on the CPU for hours and nothing
    complains. Returns the accelerator devices (empty for the cpu target); raises
    ConfigError naming the target, the backend and what it does see."""
    devices = target_devices(target, backend)
    if target == "cpu" or devices:
        return [] if target == "cpu" else devices
    backend = backend or current_backend()
    seen = visible_devices(backend, "cpu") if backend in BACKENDS else []
    raise ConfigError(
        f"device target {target!r}: the {backend} backend sees no {target.upper()} (it sees "
        f"{seen or 'no devices'}); refusing to train on the CPU. Check the node pool's "
        "accelerator, the image (GPU: LD_LIBRARY_PATH=/usr/local/nvidia/lib64; TPU: jax[tpu] "
        "with KERAS_BACKEND=jax), or compile with --target cpu")
