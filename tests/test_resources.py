"""Deadlines, leases and accelerator memory from the config's budget (`mu2net.resources`)."""

from __future__ import annotations

import dataclasses

import pytest

from mu2net import resources
from mu2net.config import get_config

GPU = get_config("gpu")
L4_BYTES = 24e9


def test_the_gpu_path_has_vit_l16_parameter_count():
    # timm's vit_large_patch16_224 (1000 classes): 304,326,632 parameters
    hparams = {**GPU.hparams.defaults(), "num_classes": 1000}
    assert resources.path_params(GPU, hparams) == 304_326_632


def test_child_deadline_follows_the_budget_not_a_fixed_time():
    train, commit = resources.timed_pools(GPU, "gpu")
    twice = GPU.replace(search=dataclasses.replace(GPU.search,
                                                   examples_between_validations=200_000))
    train2, _ = resources.timed_pools(twice, "gpu")
    work = train.timeout_s - resources.STARTUP_S
    assert 1.9 * work < train2.timeout_s - resources.STARTUP_S < 2.0 * work
    # about 3 h of modelled L4 time a child (bfloat16, 224 px), doubled for safety
    assert 5 * 3600 < train.timeout_s < 7 * 3600
    assert commit.timeout_s < train.timeout_s
    assert resources.lease_ttl(GPU, "gpu") >= train.timeout_s * (train.retries + 1)


def test_small_configs_get_the_floor_and_float32_is_slower():
    demo = get_config("cpu_demo")
    assert [p.timeout_s for p in resources.timed_pools(demo, "cpu")] == [
        resources.MIN_DEADLINE_S] * 2
    fp32 = resources.timed_pools(GPU.replace(precision="float32"), "gpu")[0]
    assert fp32.timeout_s > 3 * resources.timed_pools(GPU, "gpu")[0].timeout_s


def test_a_pool_without_the_precision_is_refused():
    pool = dataclasses.replace(GPU.placement.gpu, sustained_tflops=(("float32", 10.0),))
    with pytest.raises(ValueError, match="no sustained_tflops for precision 'mixed_bfloat16'"):
        resources.deadline_s(1e15, pool, "mixed_bfloat16")


def test_the_gpu_config_fits_one_l4_and_the_paper_default_would_not():
    costliest = resources.costliest_hparams(GPU)
    assert costliest["ds_image_size"] == 224
    memory = resources.child_memory_bytes(GPU, costliest)
    params = 304_326_632  # ViT-L/16 with a 1000-way head (the test above)
    assert memory["params"] == params
    assert memory["weights"] == 6 * params  # float32 master weights + their bfloat16 copy
    assert memory["optimizer"] == 8 * params  # float32 gradients + momentum
    # The lent H200 measured 7.7 GB peak for this child (benchmarks/results/
    # accelerator_gpu_child.md); the model stays within 10 % of that, a third of an L4.
    assert memory["total"] == pytest.approx(7.7e9, rel=0.10)
    assert memory["total"] < L4_BYTES / 2.5
    at_384 = {**costliest, "ds_image_size": 384}
    assert resources.child_memory_bytes(GPU, at_384, precision="float32")["total"] > L4_BYTES
    tpu = get_config("tpu")
    per_chip = resources.child_memory_bytes(tpu, resources.costliest_hparams(tpu), devices=4)
    assert per_chip["total"] < 16e9  # one v5e chip's HBM
