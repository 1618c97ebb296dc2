"""Training refuses a gpu/tpu target without a visible accelerator
(mu2net.distribute.require_accelerator): this machine has none, so the refusal is real; the
accepted case replaces the backend's device list."""

import pytest

from mu2net import distribute
from mu2net.errors import ConfigError


def test_cpu_target_needs_no_accelerator():
    assert distribute.require_accelerator("cpu", "tensorflow") == []
    assert distribute.target_devices("cpu", "tensorflow")  # the host CPU


@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_accelerator_target_without_one_is_refused(target):
    assert distribute.target_devices(target, "tensorflow") == []
    with pytest.raises(ConfigError, match=rf"device target '{target}': the tensorflow "
                                          rf"backend sees no {target.upper()}.*CPU:0"):
        distribute.require_accelerator(target, "tensorflow")


def test_invalid_target_names_the_choices():
    with pytest.raises(ConfigError, match=r"'cuda' is invalid: expected one of "
                                          r"\['cpu', 'gpu', 'tpu'\]"):
        distribute.require_accelerator("cuda", "tensorflow")


def test_the_guard_passes_and_names_the_devices_when_the_target_is_visible(monkeypatch):
    import tensorflow as tf

    class Device:
        name = "/device:GPU:0"

    real = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: [Device()] if kind == "GPU" else real(kind))
    assert distribute.require_accelerator("gpu", "tensorflow") == ["/device:GPU:0"]


def test_a_gpu_child_step_refuses_before_reading_anything(tmp_path):
    """The train step runs the guard first: a GPU pod that cannot see its GPU fails at once
    (the pipeline passes its compile-time target to every child)."""
    from mu2net import steps
    from mu2net.config import get_config

    config = get_config("testing")
    with pytest.raises(ConfigError, match="device target 'gpu'"):
        steps.train_step(spec_json="{}", plan_dir=str(tmp_path / "none"),
                         task_dir=str(tmp_path / "none"), store_uri=str(tmp_path / "none"),
                         config_json=config.to_json(), config_hash=config.config_hash,
                         result_dir=str(tmp_path / "r"), tensorboard_dir=str(tmp_path / "t"),
                         target="gpu")
    assert not (tmp_path / "r").exists()
