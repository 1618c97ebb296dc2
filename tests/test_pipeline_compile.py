"""Compile every config x target and check the exact placement in the IR and the platform spec,
the unrolled structure, caching, retries, images and the run form's parameters."""

import pytest
import yaml
from kfp import compiler, dsl

from components import build_components
from components.placement import check_pool, place, pool_fields
from mu2net.config import CONFIG_NAMES, TARGETS, Config, NodePool, get_config, gke_gpu_pool
from mu2net.resources import timed_pools
from pipelines.onboard_task import build_pipeline, pipeline_name

TRAIN_IMAGE = "registry.example/mu2net-{target}:1.2.3"
LIGHT_IMAGE = "registry.example/mu2net-cpu:1.2.3"
LIGHT_STEPS = ("ingest-task", "start-cycle", "plan-generation", "select-children",
               "report-run")
POOL_STEPS = ("train-child", "close-and-commit")  # on the target's pool (commit: test inference)

# The exact placement per target: (IR accelerator, node selector labels, tolerations,
# cpu request, memory request, retries); deadlines come from the config's budget.
EXPECTED = {
    "cpu": (None, None, None, "1", "4G", 2),
    "gpu": ({"resourceType": "nvidia.com/gpu", "resourceCount": "1"},
            {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}],
            "6", "24G", 3),
    "tpu": ({"resourceType": "google.com/tpu", "resourceCount": "4"},
            {"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
             "cloud.google.com/gke-tpu-topology": "2x2"},
            [{"effect": "NoSchedule", "key": "google.com/tpu", "operator": "Exists"}],
            "20", "100G", 3),
}
SECURITY = {"runAsGroup": "1000", "runAsNonRoot": True, "runAsUser": "1000"}


def compiled(config_name, target, tmp_path):
    out = tmp_path / f"{config_name}-{target}.yaml"
    pipeline = build_pipeline(config_name, target, TRAIN_IMAGE.format(target=target),
                              light_image=LIGHT_IMAGE, code_version="1.2.3")
    compiler.Compiler().compile(pipeline, str(out))
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def executors_of(spec, component_prefix):
    """executor label -> executor, for every component named component_prefix[-N]."""
    out = {}
    for name, comp in spec["components"].items():
        base = name[len("comp-"):]
        if base == component_prefix or base.startswith(component_prefix + "-") and \
                base[len(component_prefix) + 1:].isdigit():
            label = comp["executorLabel"]
            out[label] = spec["deploymentSpec"]["executors"][label]
    return out


def all_tasks(spec):
    """Every task in every DAG (root and sub-DAGs of loops)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: task for dag in dags for name, task in dag["tasks"].items()}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_placement_is_exact(config_name, target, tmp_path):
    spec, k8s = compiled(config_name, target, tmp_path)
    config = get_config(config_name)
    accel, selectors, tolerations, cpu, mem, retries = EXPECTED[target]
    assert spec["pipelineInfo"]["name"] == pipeline_name(config_name, target)

    trains = executors_of(spec, "train-child")
    assert len(trains) == config.search.generations_per_cycle
    commits = executors_of(spec, "close-and-commit")
    assert len(commits) == 1
    train_pool, commit_pool = timed_pools(config, target)  # deadlines from the budget
    deadlines = {**dict.fromkeys(trains, train_pool.timeout_s),
                 **dict.fromkeys(commits, commit_pool.timeout_s)}
    for label, executor in {**trains, **commits}.items():
        container = executor["container"]
        assert container["image"] == TRAIN_IMAGE.format(target=target)
        resources = container["resources"]
        if accel is None:
            assert "accelerator" not in resources
        else:
            assert {k: resources["accelerator"][k] for k in accel} == accel
        assert resources["resourceCpuRequest"] == cpu
        assert resources["resourceMemoryRequest"] == mem
        platform = k8s[label]
        if selectors is None:
            assert "nodeSelector" not in platform and "tolerations" not in platform
        else:
            assert platform["nodeSelector"] == {"labels": selectors}
            assert platform["tolerations"] == tolerations
        assert platform["activeDeadlineSeconds"] == str(deadlines[label])
        assert platform["securityContext"] == SECURITY

    for step in LIGHT_STEPS:
        for label, executor in executors_of(spec, step).items():
            container = executor["container"]
            assert container["image"] == LIGHT_IMAGE
            assert "accelerator" not in container.get("resources", {})
            assert container["resources"]["resourceMemoryRequest"] == "2G"
            assert k8s[label] == {"activeDeadlineSeconds": "1800", "securityContext": SECURITY}

    for name, task in all_tasks(spec).items():
        if "componentRef" in task and name.startswith(POOL_STEPS):
            assert task["retryPolicy"]["maxRetryCount"] == retries
        elif not name.startswith("for-loop"):
            assert task["retryPolicy"]["maxRetryCount"] == 3, name


def test_structure_generations_children_and_caching(tmp_path):
    spec, _ = compiled("cpu_demo", "gpu", tmp_path)
    config = get_config("cpu_demo")
    generations = config.search.generations_per_cycle
    tasks = spec["root"]["dag"]["tasks"]
    loops = {n: t for n, t in tasks.items() if n.startswith("for-loop")}
    assert len(loops) == generations
    for loop in loops.values():
        assert loop["iteratorPolicy"]["parallelismLimit"] == config.search.children_per_generation
    # select of generation g reads the Collected results of generation g's loop
    selects = sorted(n for n in tasks if n.startswith("select-children"))
    assert len(selects) == generations
    for name in selects:
        results = tasks[name]["inputs"]["artifacts"]["results"]
        assert "taskOutputArtifact" in results
        assert results["taskOutputArtifact"]["producerTask"].startswith("for-loop")
    # the commit reads the last select's state; ingest, start, commit and report never cache
    commit = tasks["close-and-commit"]
    last = commit["inputs"]["artifacts"]["state"]["taskOutputArtifact"]["producerTask"]
    assert last == f"select-children-{generations}"
    for name in ("ingest-task", "start-cycle", "close-and-commit", "report-run"):
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False, name
    for name in selects:
        assert tasks[name]["cachingOptions"]["enableCache"] is True


def test_components_receive_config_and_its_hash(tmp_path):
    spec, _ = compiled("testing", "cpu", tmp_path)
    config = get_config("testing").replace(image=TRAIN_IMAGE.format(target="cpu"))
    seen = 0
    for task in all_tasks(spec).values():
        params = task.get("inputs", {}).get("parameters", {})
        if "config_json" in params:
            text = params["config_json"]["runtimeValue"]["constant"]
            digest = params["config_hash"]["runtimeValue"]["constant"]
            assert Config.from_json(text) == config
            assert digest == config.config_hash
            seen += 1
    assert seen == len([t for t in all_tasks(spec) if not t.startswith("for-loop")])


def test_run_form_parameters_have_defaults_and_descriptions(tmp_path):
    spec, _ = compiled("testing", "cpu", tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"task_spec", "mode", "store_uri", "seed", "data_dir", "run_id"}
    assert params["task_spec"]["defaultValue"] == "next"
    assert params["mode"]["defaultValue"] == "onboard"
    assert params["seed"]["defaultValue"] == 0
    for name, param in params.items():
        assert param["isOptional"] is True
        assert len(param["description"]) > 20, name
    assert "next" in params["task_spec"]["description"]


def test_components_do_not_install_kfp_and_import_the_library(tmp_path):
    spec, _ = compiled("testing", "cpu", tmp_path)
    for executor in spec["deploymentSpec"]["executors"].values():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command
        assert "from mu2net import steps" in command


def test_build_components_binds_images():
    comps = build_components("img/train:1", "img/light:1")
    assert comps.train.component_spec.implementation.container.image == "img/train:1"
    assert comps.commit.component_spec.implementation.container.image == "img/train:1"
    for stage in ("ingest", "start", "plan", "select", "report"):
        assert getattr(comps, stage).component_spec.implementation.container.image == \
            "img/light:1"


def test_unknown_target_and_config_are_refused():
    from mu2net.errors import ConfigError

    with pytest.raises(ConfigError, match="target 'fpga' is invalid"):
        build_pipeline("testing", "fpga")
    with pytest.raises(ConfigError, match="unknown config 'huge'"):
        build_pipeline("huge", "cpu")


# === the placement helper on its own ========================================================


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def _noop() -> int:
    return 0


def test_pool_fields_reads_a_dict_pool_as_check_pool_expects():
    fields = pool_fields({"kind": "gpu", "accelerator_type": "nvidia.com/gpu",
                          "accelerator_count": 2,
                          "node_selectors": [["cloud.google.com/gke-accelerator", "nvidia-a100"]],
                          "toleration_keys": ["nvidia.com/gpu"]})
    check_pool(fields)
    assert fields["node_selectors"] == [("cloud.google.com/gke-accelerator", "nvidia-a100")]


@pytest.mark.parametrize("pool, message", [
    (NodePool(kind="gpu", accelerator_type="google.com/tpu", accelerator_count=1),
     "needs accelerator_type 'nvidia.com/gpu'"),
    (NodePool(kind="gpu", accelerator_type="nvidia.com/gpu", accelerator_count=0),
     "accelerator_count=0"),
    (NodePool(kind="gpu", accelerator_type="nvidia.com/gpu", accelerator_count=1,
              toleration_keys=("nvidia.com/gpu",)),
     "lacks node selector 'cloud.google.com/gke-accelerator'"),
    (NodePool(kind="tpu", accelerator_type="google.com/tpu", accelerator_count=4,
              node_selectors=(("cloud.google.com/gke-tpu-accelerator", "x"),),
              toleration_keys=("google.com/tpu",)),
     "lacks node selector 'cloud.google.com/gke-tpu-topology'"),
    (NodePool(kind="cpu", accelerator_type="nvidia.com/gpu", accelerator_count=1),
     "needs accelerator_type ''"),
    (gke_gpu_pool().__class__(**{**gke_gpu_pool().__dict__, "toleration_keys": ()}),
     "lacks a toleration"),
])
def test_place_refuses_inconsistent_pools(pool, message):
    with pytest.raises(ValueError, match=message):
        @dsl.pipeline(name="p")
        def p():
            place(_noop(), pool)


@pytest.mark.parametrize("config_name, target", [("testing", "cpu"), ("gpu", "gpu")])
def test_light_steps_get_the_task_info_not_the_dataset(config_name, target, tmp_path):
    """Only the steps that read images (train children, the commit's test pass) take the
    `task` Dataset; every light step (ingest writes it) reads the small `info` artifact."""
    path = str(tmp_path / "p.yaml")
    compiler.Compiler().compile(build_pipeline(config_name, target), path)
    with open(path) as fh:
        spec = next(yaml.safe_load_all(fh))  # then the platform spec (node pools)
    heavy = ("comp-train-child", "comp-close-and-commit")
    executors = {name: comp for name, comp in spec["components"].items()
                 if "executorLabel" in comp}  # not the ParallelFor DAGs
    light = {name for name in executors if not name.startswith(heavy)}
    assert {n.rsplit("-", 1)[0] if n[-1].isdigit() else n for n in light} >= {
        "comp-ingest-task", "comp-start-cycle", "comp-plan-generation",
        "comp-select-children", "comp-report-run"}
    for name in sorted(executors):
        inputs = executors[name].get("inputDefinitions", {}).get("artifacts", {})
        types = {a["artifactType"]["schemaTitle"] for a in inputs.values()}
        if name in light:
            assert "task" not in inputs and "system.Dataset" not in types, name
        else:
            assert inputs["task"]["artifactType"]["schemaTitle"] == "system.Dataset", name
    for name in ("comp-start-cycle", "comp-report-run"):
        assert "info" in executors[name]["inputDefinitions"]["artifacts"]
    outputs = executors["comp-ingest-task"]["outputDefinitions"]["artifacts"]
    assert set(outputs) == {"task", "info"}
