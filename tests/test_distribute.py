"""Data parallelism inside a child's training (mu2net.distribute): the choice of devices, and
real two-replica training runs that must match the single-device run.

Logical devices must exist before the backend initialises, so each backend runs in a
subprocess: TensorFlow with two logical CPU devices (MirroredStrategy), JAX with
`XLA_FLAGS=--xla_force_host_platform_device_count=2` (keras.distribution.DataParallel). Each
trains the same child once with `data_parallel="off"` and once with `"on"` (same global
batch, so the same math up to float reduction order). Gradient clipping is set tight so that
it fires at every step: clipping per replica before the all-reduce (Keras' tf.distribute
default) would change the update by tens of percent and fail the comparison.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mu2net import distribute
from mu2net.errors import ConfigError
from mu2net.training import resolve_execution

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    backend = {backend!r}
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import mu2net.search as search
    from mu2net import distribute
    from mu2net.model import component_layers
    from mu2net.params_io import npz_bytes_to_params
    from mu2net_helpers import digits_task, root_system, tiny_config

    assert keras.backend.backend() == backend, keras.backend.backend()
    out_dir = sys.argv[1]
    # 305 digits: 183 train (batch 32), 61 validation (a last batch of 29: padded under 2
    # replicas); clipping at 1e-3 fires at every step.
    config = tiny_config(examples_between_validations=64, grad_clip_norm=1e-3)
    system, store = root_system(config, os.path.join(out_dir, "store"))
    task = digits_task("digits", limit=305)
    state = search.start_cycle(system, task.info, config, seed=1, run_id="dp")
    state, specs = search.plan_generation(state, system, config)
    spec = specs[0]

    built = []
    real_build = search.build_model

    def recording_build(arch, hparams, params, trainable=(), precision="float32"):  # recorded
        model = real_build(arch, hparams, params, trainable=trainable, precision=precision)
        built.append((model, {{n: {{k: np.array(v) for k, v in w.items()}}
                               for n, w in params.items()}}))
        return model

    search.build_model = recording_build

    def replica_values(variable):
        value = variable.value
        if backend == "tensorflow":
            return [np.asarray(v) for v in getattr(value, "values", [value])]
        return [np.asarray(s.data) for s in value.addressable_shards]

    report = {{"auto_replicas": distribute.choose(32).replicas,
              "on_devices": list(distribute.choose(32, mode="on").devices)}}
    runs = {{}}
    for mode in ("off", "on"):
        result = search.train_child(spec, state, system, task, config, store,
                                    os.path.join(out_dir, mode), data_parallel=mode)
        model, initial = built[-1]
        layers = component_layers(model)
        frozen_ok, frozen_copies = True, 0
        for name in initial:
            if name in spec.trainable:
                continue
            for key, var in layers[name].w.items():
                for value in replica_values(var):
                    frozen_copies += 1
                    frozen_ok &= value.tobytes() == initial[name][key].tobytes()
        var = layers["head"].w["kernel"]
        if backend == "tensorflow":
            placed = len(getattr(var.value, "values", [var.value]))
        else:
            placed = len(var.value.sharding.device_set)
        blobs = {{d: npz_bytes_to_params(open(p, "rb").read())
                 for d, p in result.new_blobs.items()}}
        new = {{c.name: {{k: v.tolist() for k, v in blobs[c.blob].items()}}
               for c in result.path.components if c.blob in blobs}}
        init = {{n: {{k: v.tolist() for k, v in initial[n].items()}} for n in new}}
        runs[mode] = {{"replicas": result.metrics["replicas"], "placed_on": placed,
                      "losses": result.metrics["train_losses"],
                      "curve": result.metrics["validation_curve"],
                      "improved": result.improved, "new": new, "initial": init,
                      "frozen_ok": bool(frozen_ok), "frozen_copies": frozen_copies,
                      "reused": [c.id for c, s in zip(result.path.components, spec.plan)
                                 if s.action == "reuse"],
                      "planned_reuse": [s.source.id for s in spec.plan if s.action == "reuse"]}}
    report["runs"] = runs
    print("RESULT " + json.dumps(report))
""")


def run_backend(backend: str, out_dir: Path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop(distribute.ENV_VAR, None)
    code = SCRIPT.format(tests=str(ROOT / "tests"), backend=backend)
    proc = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def assert_same_training(report: dict, devices: list[str]) -> None:
    assert report["auto_replicas"] == 1  # no accelerators here: auto stays on one device
    assert report["on_devices"] == devices
    off, on = report["runs"]["off"], report["runs"]["on"]
    assert (off["replicas"], off["placed_on"]) == (1, 1)
    assert (on["replicas"], on["placed_on"]) == (2, 2)
    # Frozen components: bit-identical on every replica, and the same blobs in the path.
    assert off["frozen_ok"] and on["frozen_ok"]
    assert on["frozen_copies"] == 2 * off["frozen_copies"] > 0
    assert on["reused"] == off["reused"] == on["planned_reuse"]
    # Validation accuracy is a count: identical, padding (weight 0) included.
    assert on["curve"] == off["curve"] and on["improved"] == off["improved"]
    np.testing.assert_allclose(on["losses"], off["losses"], rtol=1e-5)
    assert sorted(on["new"]) == sorted(off["new"]) and len(off["new"]) >= 2
    for name, weights in off["new"].items():
        for key, final in weights.items():
            final, init = np.array(final), np.array(off["initial"][name][key])
            other = np.array(on["new"][name][key])
            update = np.abs(final - init).max()
            # The update itself agrees to float reduction order (well under 1e-3 of it).
            assert np.abs(other - final).max() <= 1e-3 * update + 1e-12, (name, key, update)


def test_tensorflow_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    report = run_backend("tensorflow", tmp_path)
    assert_same_training(report, ["/device:CPU:0", "/device:CPU:1"])


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpu_devices_matches_one_device(tmp_path):
    pytest.importorskip("jax")
    report = run_backend("jax", tmp_path)
    assert_same_training(report, ["cpu:0", "cpu:1"])


# === the choice, in this process (one CPU device, TensorFlow backend) =======================


def test_mode_comes_from_the_argument_and_defaults_to_auto():
    assert distribute.resolve_mode() == "auto"
    assert distribute.resolve_mode("") == "auto"
    assert distribute.resolve_mode("off") == "off"
    assert distribute.resolve_mode("on") == "on"
    with pytest.raises(ConfigError, match=r"MU2NET_DATA_PARALLEL='yes'.*'auto', 'off', 'on'"):
        distribute.resolve_mode("yes")


def test_one_device_means_no_distribution_and_on_refuses(monkeypatch):
    monkeypatch.delenv(distribute.ENV_VAR, raising=False)
    auto = distribute.choose(32)
    assert not auto.distributed and auto.replicas == 1 and auto.backend == "tensorflow"
    with auto.scope():
        import tensorflow as tf

        assert not tf.distribute.has_strategy()
    assert not distribute.choose(32, mode="off", devices=["/cpu:0", "/cpu:1"]).distributed
    assert not distribute.choose(32, devices=["/cpu:0"]).distributed
    with pytest.raises(ConfigError, match="needs at least 2 devices"):
        distribute.choose(32, mode="on")


def test_the_global_batch_must_split_evenly():
    two = ["/cpu:0", "/cpu:1"]
    assert distribute.choose((32, 64), mode="on", devices=two).replicas == 2
    uneven = distribute.choose((31, 64), mode="auto", devices=two)
    assert not uneven.distributed and "31" in uneven.reason
    with pytest.raises(ConfigError, match="global batch 31 does not split evenly across 2"):
        distribute.choose((64, 31), mode="on", devices=two)


def test_padded_evaluation_counts_every_example_once():
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    labels = np.arange(5)
    same = distribute.pad_evaluation(images, labels, 1)
    assert same[0] is images and same[2] is None
    padded, padded_labels, weights = distribute.pad_evaluation(images, labels, 4)
    assert len(padded) == len(padded_labels) == len(weights) == 8
    assert weights.tolist() == [1.0] * 5 + [0.0] * 3
    np.testing.assert_array_equal(padded[5:], images[:3])


def test_several_replicas_always_trace_a_graph():
    assert resolve_execution("auto", 8) is True  # eager for a short run on one device
    assert resolve_execution("auto", 44) is False  # a cpu_demo digits child: traced is 2x faster
    assert resolve_execution("auto", 8, replicas=2) is False
    assert resolve_execution("eager", 8, replicas=2) is True
