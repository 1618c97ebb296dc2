import dataclasses
import json

import pytest

from mu2net.config import CONFIG_NAMES, Config, get_config
from mu2net.errors import ConfigError
from mu2net.hparams import Hparam


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_round_trip_keeps_method_version(name):
    config = get_config(name)
    again = Config.from_json(config.to_json())
    assert again == config
    assert again.method_version == config.method_version
    assert again.config_hash == config.config_hash


def test_variants_have_distinct_method_versions():
    versions = {get_config(n).method_version for n in CONFIG_NAMES}
    # gpu differs from tpu in its image sizes: an L4 holds 224 px only
    assert len(versions) == 4
    assert get_config("gpu").config_hash != get_config("tpu").config_hash


def test_precision_is_checked_and_recorded_but_not_the_method():
    config = get_config("testing")
    mixed = config.replace(precision="mixed_bfloat16")
    assert mixed.method_version == config.method_version
    assert mixed.config_hash != config.config_hash
    assert Config.from_json(mixed.to_json()).precision == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="precision='bf16' is invalid.*mixed_bfloat16"):
        config.replace(precision="bf16")


def test_method_version_tracks_method_not_placement():
    config = get_config("testing")
    moved = config.replace(image="other:tag")
    assert moved.method_version == config.method_version
    changed = config.replace(search=dataclasses.replace(config.search, population_cap=9))
    assert changed.method_version != config.method_version


def test_tampered_json_is_refused():
    data = json.loads(get_config("testing").to_json())
    data["search"]["batch_size"] = 7
    with pytest.raises(ConfigError, match="method_version"):
        Config.from_dict(data)
    del data["method_version"]
    del data["score"]
    with pytest.raises(ConfigError, match="'score'"):
        Config.from_dict(data)


def test_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="cpu_demo"):
        get_config("cpu-demo")


def test_bad_default_names_field_and_choices():
    with pytest.raises(ConfigError, match=r"hparams.opt_lr.default.*0.01"):
        Hparam("opt_lr", 0.3, (0.01, 0.1))


def test_paper_values_in_gpu_variant():
    config = get_config("gpu")
    assert config.architecture.num_layers == 24 and config.architecture.hidden_size == 1024
    assert config.architecture.image_size == 384
    assert config.search.validations_per_child == 8
    assert config.search.examples_between_validations == 100_000
    assert config.search.batch_size == 16
    assert config.search.children_per_generation * config.search.generations_per_cycle == 16
    assert (config.score.scale, config.score.params_ref, config.score.flops_ref) == (
        0.99, 2.2e9, 3.8e12)
    # sized for one L4 (docs/sizing.md, "Sizing the accelerator configs"); the tpu keeps both sizes
    assert config.hparams.get("ds_image_size").values == (224,)
    assert get_config("tpu").hparams.get("ds_image_size").values == (224, 384)
    assert config.precision == get_config("tpu").precision == "mixed_bfloat16"
    assert config.hparams.get("_mu_").default == 0.2
