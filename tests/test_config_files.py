"""Configs as files (issue 24, point 1): `--config PATH.json|yaml`, validated strictly, with
`mu2net config NAME` as the starting point; the score constants a path was judged by are kept
in its path document, so a config change never turns a stored score into null."""

import dataclasses
import json

import pytest
import yaml
from mu2net_helpers import digits_task, random_root_store

from mu2net.cli import main
from mu2net.config import CONFIG_NAMES, Config, get_config
from mu2net.errors import ConfigError
from mu2net.schema import Path
from mu2net.scoring import score_value
from mu2net.status import status_dict


def starting_point(name, capsys) -> dict:
    assert main(["config", name]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CONFIG_NAMES)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_the_printed_config_round_trips_through_a_file(name, suffix, tmp_path, capsys):
    doc = starting_point(name, capsys)
    path = tmp_path / f"c{suffix}"
    path.write_text(json.dumps(doc) if suffix == ".json" else yaml.safe_dump(doc))
    loaded, named = get_config(str(path)), get_config(name)
    assert loaded == named
    assert (loaded.config_hash, loaded.method_version) == (named.config_hash,
                                                           named.method_version)
    assert main(["config", str(path), "--method-version"]) == 0
    assert capsys.readouterr().out.strip() == named.method_version


def write(tmp_path, doc, name="my.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if name.endswith(".json") else yaml.safe_dump(doc))
    return str(path)


def edited(capsys, **search):
    doc = starting_point("testing", capsys)
    doc.pop("method_version")
    doc["name"] = "my_testing"
    doc["search"].update(search)
    return doc


@pytest.mark.parametrize("change, message", [
    (lambda d: d["search"].update(batch_sise=3),
     r"unknown key 'search.batch_sise'; valid keys of search: \[.*'batch_size'"),
    (lambda d: d.update(colour="red"), r"unknown key 'colour'; valid keys: \[.*'architecture'"),
    (lambda d: d["search"].update(batch_size="64"),
     r"search.batch_size='64' is invalid: expected an integer"),
    (lambda d: d["search"].update(mu_autotune=1),
     r"search.mu_autotune=1 is invalid: expected true or false"),
    (lambda d: d["placement"]["gpu"].update(accelerator_count=1.5),
     r"placement.gpu.accelerator_count=1.5 is invalid: expected an integer"),
    (lambda d: d["score"].update(params_ref="2e5"),
     r"score.params_ref='2e5' is invalid: expected a number \(in YAML"),
    (lambda d: d.pop("architecture"), r"architecture is missing"),
    (lambda d: d["architecture"].update(patch_size=5),
     r"architecture.image_size=16 is invalid: expected a multiple of patch_size=5"),
    (lambda d: d.update(name="Bad Name"), r"name='Bad Name' is invalid"),
    (lambda d: d.update(name="cpu_demo"), r"name='cpu_demo' is a named config's"),
    (lambda d: d.update(method_version="m-000000000000"),
     r"method_version='m-000000000000' does not match the content, which hashes to 'm-"),
])
def test_a_bad_config_file_is_one_line_naming_the_key_and_the_choices(
        change, message, tmp_path, capsys):
    doc = edited(capsys)
    change(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError, match=message) as info:
        get_config(path)
    assert "\n" not in str(info.value) and path in str(info.value)
    assert main(["config", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "my.json" in err


def test_missing_optional_fields_take_defaults_and_ints_read_as_floats(tmp_path, capsys):
    doc = starting_point("testing", capsys)
    del doc["search"]["grad_clip_norm"], doc["onboard_cycles"]
    doc["score"]["scale"], doc["score"]["params_ref"] = 0.99, 1000000
    assert get_config(write(tmp_path, doc, "c.yaml")) == get_config("testing")


def test_unknown_config_names_the_variants_and_files(capsys):
    with pytest.raises(ConfigError, match=r"unknown config 'huge'; valid: \['testing'.*\.yaml"):
        get_config("huge")
    with pytest.raises(ConfigError, match="does not exist"):
        get_config("nope.json")


def test_a_json_config_file_onboards_a_task_and_its_score_survives_a_config_change(
        tmp_path, capsys):
    """The file config (the testing config, edited: one child of one generation, other score
    constants) onboards a task through `get_config`, the CLI's entry; no named config has its
    method version, yet status scores the task from the constants its path records."""
    from mu2net.search import evolve

    doc = edited(capsys, children_per_generation=1, generations_per_cycle=1,
                 validations_per_child=1)
    doc["score"]["params_ref"] = 2.0e6
    config = get_config(write(tmp_path, doc))
    assert config.method_version not in {get_config(n).method_version for n in CONFIG_NAMES}
    store = random_root_store(tmp_path, config)
    task = digits_task(limit=300)
    ext = evolve(store.load_system(0), task, config, store, seed=0, run_id="file-config",
                 workdir=str(tmp_path / "work"))
    assert store.commit(ext).version == 1
    path = store.load_system(1).paths["digits"]
    assert path.score_constants == {"scale": 0.99, "params_ref": 2.0e6, "flops_ref": 1.0e6}
    entry = status_dict(store)["tasks"]["digits"]
    assert entry["score"] == pytest.approx(score_value(
        path.metrics["validation_accuracy"], entry["accounted_params"], entry["flops"],
        config.score))
    assert entry["score"] != pytest.approx(score_value(
        path.metrics["validation_accuracy"], entry["accounted_params"], entry["flops"],
        get_config("testing").score))


def test_old_paths_without_recorded_constants_read_the_named_config(tmp_path):
    """The old format: a path document without `score_constants` takes them from the named
    config of its method version; with no such config its score is null."""
    from mu2net.scoring import path_score_config
    from mu2net.status import path_entry

    config = get_config("testing")
    store = random_root_store(tmp_path, config)
    view = store.load_system(0)
    root = view.root
    old = Path(task="digits", components=root.components, hparams=dict(root.hparams),
               method_version=config.method_version, parent=root.hash,
               metrics={"validation_accuracy": 0.5})
    assert "score_constants" not in old.to_dict()
    assert Path.from_dict(old.to_dict()).score_constants is None
    assert path_score_config(old) == config.score
    assert path_entry(old, view)["score"] is not None
    gone = dataclasses.replace(old, method_version="m-000000000000")
    assert path_entry(gone, view)["score"] is None
    recorded = dataclasses.replace(gone, score_constants={"scale": 0.5, "params_ref": 1.0,
                                                          "flops_ref": 1.0e30})
    assert path_entry(recorded, view)["score"] == pytest.approx(
        0.5 * 0.5 ** (path_entry(recorded, view)["accounted_params"]))


def test_compile_with_a_config_file_names_the_pipeline_after_it(tmp_path, capsys):
    doc = edited(capsys, children_per_generation=3)
    path = write(tmp_path, doc, "my.yaml")
    out = tmp_path / "build"
    assert main(["compile", "--config", path, "--target", "cpu", "--out", str(out),
                 "--registry", "r.example/p", "--store", "gs://b/s"]) == 0
    text = (out / "onboard-my-testing-cpu.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    config_json = spec["root"]["dag"]["tasks"]["ingest-task"]["inputs"]["parameters"][
        "config_json"]["runtimeValue"]["constant"]
    compiled, config = Config.from_json(config_json), get_config(path)  # what components read
    assert compiled.replace(image=config.image) == config
