"""The onboarding pipeline: one run is one search cycle of one task, committed to the store.

    ingest -> start (pins the base version) -> for each generation (unrolled at compile time):
    plan -> ParallelFor over its K children (train, on the target node pool) -> Collected ->
    select -> ... -> close the cycle and commit -> report

The config and the device target are bound at compile time (`build_pipeline`), so the pipeline
is named `onboard-<config>-<target>` and every component receives the config JSON and its hash
(and refuses a mismatch). Generations are unrolled with a Python loop and the target is a Python
`if`: a runtime `dsl.If/Else` around a task whose output is `Collected` inside a `ParallelFor`
crashes the kfp 2.17.3 compiler.

Compile:  mu2net compile --config gpu --target gpu --out build/
"""

import importlib
from typing import Any

from kfp import dsl

# The sibling package of components: `components` in a checkout, `mu2net.components` in the
# wheel (setup.cfg maps both folders under mu2net, so nothing else is installed top level).
_COMPONENTS = (__package__ or "pipelines").rpartition("pipelines")[0] + "components"
build_components = importlib.import_module(_COMPONENTS).build_components
place = importlib.import_module(_COMPONENTS + ".placement").place


def pipeline_name(config_name: str, target: str) -> str:
    return f"onboard-{config_name}-{target}".replace("_", "-")


def build_pipeline(config_name: str, target: str, image: str | None = None, *,
                   light_image: str | None = None, store_uri: str = "",
                   data_dir: str = "", code_version: str = "",
                   retry_backoff: str = "60s") -> Any:
    """The pipeline function for one config and device target.

    Args:
        config_name: A named config (testing, cpu_demo, gpu, tpu) or a .json/.yaml config
            file; the config's `name` names the pipeline, and every component reads the config
            from its JSON, never by name.
        target: cpu, gpu or tpu: the node pool children train on.
        image: The training image; default: the config's image.
        light_image: The image of the light steps (CPU nodes); default: `image`.
        store_uri: The store URI offered as the run form's default (empty: none, so every
            run must pass `store_uri`; `mu2net compile` requires one).
        data_dir: The data folder offered as the run form's default (`mu2net compile
            --data-dir`), so scheduled and UI runs read `tfds:` data there; a queue entry's or
            task's recorded folder still wins over it (`mu2net.queue.effective_data_dir`).
        code_version: Recorded in every commit (the image tag `mu2net compile` uses).
        retry_backoff: Wait before retrying a step a Spot node took away (which failures
            are retried is the workflow controller's policy, components/placement.py).
    """
    from mu2net.config import TARGETS, get_config
    from mu2net.errors import ConfigError
    from mu2net.resources import run_deadline_seconds, timed_pools

    if target not in TARGETS:
        raise ConfigError(f"target {target!r} is invalid: expected one of {list(TARGETS)}")
    config = get_config(config_name)
    if image:
        config = config.replace(image=image)
    comps = build_components(config.image, light_image or config.image)
    cfg = {"config_json": config.to_json(), "config_hash": config.config_hash}
    light = config.placement.light
    train_pool, commit_pool = timed_pools(config, target)  # deadlines from the budget
    children = config.search.children_per_generation
    generations = config.search.generations_per_cycle
    job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    default_data_dir = data_dir

    def light_step(task: dsl.PipelineTask, name: str, cache: bool = True) -> dsl.PipelineTask:
        task.set_display_name(name)
        if not cache:
            task.set_caching_options(enable_caching=False)
        return place(task, light, retry_backoff=retry_backoff)

    @dsl.pipeline(name=pipeline_name(config.name, target),
                  description=f"One mu2Net+ search cycle of one task ({config.name} config, "
                              f"method {config.method_version}, children on {target}), "
                              "committed as a new version of the shared model.",
                  # The run's bound: KFP 2.17 compiles it into the Argo Workflow's
                  # activeDeadlineSeconds, which also ends pods stuck Pending (README "Deadlines").
                  pipeline_config=dsl.PipelineConfig(
                      active_deadline_seconds=run_deadline_seconds(config, target)))
    def onboard(task_spec: str = "next", mode: str = "onboard", store_uri: str = store_uri,
                seed: int = 0, data_dir: str = default_data_dir, run_id: str = "") -> str:
        """One search cycle of one task; returns the run's one-line summary.

        Args:
            task_spec: The task source spec (e.g. tfds:cifar10, demo:mnist_5k), the name of a
                task already in the store (mode iterate), or "next": the next pending task of
                the store's queue, else the task with the most to gain.
            mode: onboard (a new task) or iterate (re-evolve an existing task).
            store_uri: The shared model store (gs://bucket/prefix or a local folder).
            seed: The search seed; the same seed and base version give the same extension.
            data_dir: Where task sources read their data (TFDS data_dir). Left at the compiled
                default, a queue entry's or task's recorded folder wins; another value wins
                over both; empty everywhere: TFDS's default folder.
            run_id: Commit id; empty: the pipeline run id (retries of one run share it).
        """
        ingest = light_step(comps.ingest(task_spec=task_spec, mode=mode, store_uri=store_uri,
                                         data_dir=data_dir, run_id=run_id, job_id=job_id,
                                         default_data_dir=default_data_dir, target=target,
                                         **cfg), "ingest task", cache=False)
        task = ingest.outputs["task"]  # images: only train children and the commit read them
        info = ingest.outputs["info"]  # the small task info every light step reads
        start = light_step(comps.start(info=info, store_uri=store_uri, seed=seed,
                                       run_id=run_id, job_id=job_id, target=target, **cfg),
                           "start cycle (pin base version)", cache=False)
        state = start.outputs["state"]
        for generation in range(generations):
            plan = light_step(comps.plan(state=state, generation=generation,
                                         store_uri=store_uri, **cfg),
                              f"generation {generation + 1}: plan")
            with dsl.ParallelFor(plan.outputs["Output"], parallelism=children,
                                 name=f"generation-{generation + 1}-children") as spec:
                child = comps.train(spec=spec, plan=plan.outputs["plan"], task=task,
                                    store_uri=store_uri, target=target, **cfg)
                child.set_display_name(f"generation {generation + 1}: train child")
                place(child, train_pool, retry_backoff=retry_backoff)
            select = light_step(comps.select(plan=plan.outputs["plan"],
                                             results=dsl.Collected(child.outputs["result"]),
                                             store_uri=store_uri, target=target, **cfg),
                                f"generation {generation + 1}: select")
            state = select.outputs["state"]
        # Closing the cycle evaluates the best path on the test split (the cycle's one
        # inference pass; the report reads its result): it runs where children train, never
        # on the light pool, which a ViT-L test pass would outlast.
        commit = comps.commit(state=state, task=task, store_uri=store_uri,
                              code_version=code_version, target=target, **cfg)
        commit.set_display_name("close cycle and commit")
        commit.set_caching_options(enable_caching=False)
        place(commit, commit_pool, retry_backoff=retry_backoff)
        report = light_step(comps.report(extension=commit.outputs["extension"], info=info,
                                         store_uri=store_uri, **cfg), "report", cache=False)
        return report.outputs["Output"]

    return onboard


def compile_pipeline(config_name: str, target: str, out_path: str, **kwargs: Any) -> str:
    """Compile to `out_path` (YAML); returns the path."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(config_name, target, **kwargs), out_path)
    return out_path
