"""The mu2Net+ search as pure steps over a JSON-able `SearchState` (docs/method.md §5.2).

One search cycle of one task:

    state = start_cycle(system, task_info, config, seed=..., run_id=...)
    while state.generation < config.search.generations_per_cycle:
        state, specs = plan_generation(state, system, config)      # K child specs
        results = [train_child(s, state, system, task, config, blobs, out_dir) for s in specs]
        state = select(state, results, config)                      # population update
    extension = close_cycle(state, task, config, blobs)             # best path, frozen

`evolve` is exactly that loop. Each step is a function of its JSON-able inputs only (seeded by
`derive_seed(state.seed, task, cycle, generation, child, purpose)`), so the pipeline can run
every step in its own pod, retry it, and get the same result; a test checks that the steps
with every state, spec and result saved and reloaded give the same extension as `evolve`.

The system read by a cycle (`SystemView`) is never modified: children reuse its components
frozen or clone them into new components owned by the task; new parameters are written as new
content-addressed blobs (`ChildResult.new_blobs`, then `SearchState.staged_blobs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from mu2net.blobs import BlobSource, ChainBlobs, FileBlobs, ParamsCache
from mu2net.config import Config
from mu2net.errors import SchemaError, TaskError
from mu2net.model import build_model, component_size
from mu2net.mutations import (
    ParentPool,
    ancestry,
    anneal_lr,
    default_hparams,
    mutate_adapters,
    mutate_hparams,
    plan_components,
    sample_ds_hparams,
    slot_params,
)
from mu2net.params_io import param_shapes, params_sha256, write_file_atomic, write_params
from mu2net.schema import Component, Extension, Path, SystemView, check_mode, lock_holders
from mu2net.scoring import forward_flops, path_score, score_constants, score_value
from mu2net.search_state import (
    Candidate,
    ChildResult,
    ChildSpec,
    SearchState,
    derive_seed,
    finite_or_none,
    history_entry,
    search_record,
)
from mu2net.task_info import TaskInfo
from mu2net.tasks.base import TaskData

# === Helpers ================================================================================


def _blob_source(state: SearchState, blobs: BlobSource) -> ParamsCache:
    """Staged (uncommitted) blobs of this cycle first, then the given source (the store):
    the one place the chain is built."""
    return ParamsCache(ChainBlobs([FileBlobs(state.staged_blobs), blobs]))


def _check_task(state: SearchState, task: TaskData) -> None:
    if task.info.name != state.task:
        raise TaskError(f"task data is for {task.info.name!r} but the search is for "
                        f"{state.task!r}")
    if task.info.content_hash != state.task_info.content_hash:
        raise TaskError(f"task {state.task!r} data has content hash "
                        f"{task.info.content_hash[:12]}, but the search started on "
                        f"{state.task_info.content_hash[:12]}: the prepared data changed")


def _check_config(state: SearchState, config: Config) -> None:
    if config.method_version != state.method_version:
        raise SchemaError(f"config {config.name!r} has method version {config.method_version} "
                          f"but the search state was started with {state.method_version}")


def planned_accounted_params(spec: ChildSpec, system: SystemView, config: Config) -> float:
    """Accounted params (docs/method.md §2.5) of the child before its new blobs exist: a reused
    component is divided among its users and this task, a new one counts fully."""
    users = system.component_users()
    total = 0.0
    for slot in spec.plan:
        size = component_size(slot.name, config.architecture, spec.hparams)
        if slot.action == "reuse":
            total += size / len(lock_holders(slot.source, spec.task, users))
        else:
            total += size
    return total


# === Steps ==================================================================================


def start_cycle(system: SystemView, task_info: TaskInfo, config: Config, *, seed: int,
                run_id: str, mode: str = "onboard", kept_cycles: int | None = None) -> SearchState:
    """The state at the start of one cycle. `onboard`: the task is new to the system and the
    population starts empty. `iterate`: the task's published path is the population's first
    member, scored against the system, and its own unshared components become trainable
    (they are always cloned, never modified). `kept_cycles` (iterate: required): cycles since
    that path was published that kept it (`store.kept_cycles(system, task)`): they count, so
    this cycle's seeds differ from theirs (else a kept cycle is replayed draw for draw)."""
    check_mode(mode)
    population: tuple[Candidate, ...] = ()
    cycle = 0
    published = system.paths.get(task_info.name)
    if mode == "onboard" and published is not None:
        raise TaskError(f"task {task_info.name!r} is already in system version "
                        f"{system.number}: use mode='iterate' to search it again")
    if mode == "iterate":
        if published is None:
            raise TaskError(f"task {task_info.name!r} is not in system version "
                            f"{system.number}: use mode='onboard'")
        if kept_cycles is None:
            raise TaskError(f"kept_cycles=None for an iterate cycle of {task_info.name!r}: pass "
                            "store.kept_cycles(system, task)")
        score = path_score(published, system, config.architecture, config.score)
        # Offspring counts persist across cycles (mu3Net keeps the retained path object, with
        # its count, from one cycle to the next), so decay selection keeps decaying.
        population = (Candidate(published, score, int(published.metrics.get("offspring", 0))),)
        cycle = int(published.metrics.get("num_cycles", 1)) + int(kept_cycles)
    return SearchState(task=task_info.name, task_info=task_info, config_name=config.name,
                       method_version=config.method_version, base_version=system.number,
                       seed=int(seed), run_id=run_id, mode=mode, cycle=cycle, generation=0,
                       population=population)


def plan_generation(state: SearchState, system: SystemView,
                    config: Config) -> tuple[SearchState, list[ChildSpec]]:
    """The K = children_per_generation child specs of the next generation.

    Data hyperparameters are sampled once for the generation. Each child's parent is chosen
    by decay selection over the task's population (best first, taken with probability
    0.5 ** offspring), else uniformly over all paths: the root, every task's published path
    and the task's own population, published or not (mu3Net's `uniform_choice` over the whole
    population). The returned state counts the new offspring of same-task parents.
    Departures (off by default): `search.own_lineage_fallback`, `search.same_task_lr_steps`.
    """
    _check_config(state, config)
    g = state.generation
    if g >= config.search.generations_per_cycle:
        raise SchemaError(f"search_state.generation={g} is invalid: the cycle has "
                          f"{config.search.generations_per_cycle} generations; close it")
    best = state.best()
    ds, ds_fired = sample_ds_hparams(config, best.path.hparams if best else None,
                                     state.rng(g, "ds"))
    population = list(state.population)
    # Read lazily: only the drawn parents, their ancestry and the root (not all N paths).
    known = ParentPool(system, [c.path for c in population])
    own = {c.path.hash: j for j, c in enumerate(population)}
    users = system.component_users()
    data_seed = derive_seed(state.seed, state.task, state.cycle, g, "data")
    specs = []
    for i in range(config.search.children_per_generation):
        rng = state.rng(g, i, "parent")
        chosen = None
        # best first; ties: the most recent first (population is in chronological order
        # within equal scores)
        for j in sorted(range(len(population)), key=lambda j: (-population[j].score, -j)):
            if rng.random() < 0.5 ** population[j].offspring:
                chosen = j
                break
        parent = None
        if chosen is None:  # uniform fallback; a member of the own population is `chosen`
            own_p = config.search.own_lineage_fallback  # departure; 0: off, nothing drawn
            if own_p and state.mode == "iterate" and population and rng.random() < own_p:
                parent = population[int(rng.integers(len(population)))].path
            else:
                parent = known.candidate(int(rng.integers(known.candidates())))
            chosen = own.get(parent.hash)
        if chosen is not None:  # a same-task parent: count its offspring, the child must beat it
            cand = population[chosen]
            population[chosen] = Candidate(cand.path, cand.score, cand.offspring + 1)
            parent, parent_score = cand.path, cand.score
        else:
            parent_score = (path_score(parent, system, config.architecture, config.score)
                            if parent.task == state.task else -math.inf)
        hparams = default_hparams(config.hparams)
        hparams.update({k: v for k, v in parent.hparams.items()})
        hparams.update(ds)
        hparams["num_classes"] = state.task_info.num_classes
        hparams.setdefault("adapter_layers", [])
        if parent.task == state.task and config.search.same_task_lr_steps:
            anneal_lr(hparams, config)
        rng = state.rng(g, i, "mutate")
        fired = list(ds_fired)
        fired += mutate_hparams(hparams, config, rng)
        fired += mutate_adapters(hparams, config, rng)
        chain = ancestry(parent, known, system.root)
        slots, clone_fired = plan_components(
            hparams, chain, state.task, config.architecture, users, rng, config,
            init_seed=lambda name, i=i: derive_seed(state.seed, state.task, state.cycle, g, i,
                                                    "init", name))
        fired += clone_fired
        specs.append(ChildSpec(task=state.task, generation=g, index=i, parent=parent.hash,
                               parent_task=parent.task, parent_score=finite_or_none(parent_score),
                               hparams=hparams, plan=tuple(slots), mutations=tuple(fired),
                               data_seed=data_seed, cycle=state.cycle,
                               base_version=state.base_version,
                               method_version=config.method_version))
    return state.replace(population=tuple(population)), specs


def train_child(spec: ChildSpec, state: SearchState, system: SystemView, task: TaskData,
                config: Config, blobs: BlobSource, out_dir: str, *,
                execution: str = "auto", data_parallel: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> ChildResult:
    """Assemble the child from its plan, train it (docs/method.md §5.1) and report it.

    Frozen components are read from `blobs` (or this cycle's staged files) and never written.
    If the child is retained, its new components are written to `out_dir/<sha256>.npz`
    (idempotent, so a retried step rewrites the same files).

    `data_parallel` (`auto|off|on`, default `auto`; the train component passes
    `$MU2NET_DATA_PARALLEL`): train on several visible accelerators with the backend's data
    parallelism (`mu2net.distribute`); `metrics["replicas"]` records how many were used.
    `progress(done, total)`: called after each validation.
    """
    from mu2net import distribute
    from mu2net.tasks.preprocess import make_dataset
    from mu2net.training import child_budget, make_optimizer, train_model, validation_subset

    _check_task(state, task)
    _check_config(state, config)
    if spec.task != state.task:
        raise SchemaError(f"child_spec.task={spec.task!r} does not match the search state's "
                          f"task {state.task!r}")
    arch = config.architecture
    hparams = dict(spec.hparams)
    cache = _blob_source(state, blobs)
    params = {slot.name: slot_params(slot, hparams, config, cache) for slot in spec.plan}
    trainable = spec.trainable

    images, labels = task.arrays("train")
    budget = child_budget(config, len(labels))
    dist = distribute.choose((budget.batch_size, config.search.batch_size), mode=data_parallel)
    size = int(hparams["ds_image_size"])
    ds_hparams = {k: v for k, v in hparams.items() if k.startswith("ds_")}
    train_ds = make_dataset(images, labels, image_size=size, batch_size=budget.batch_size,
                            training=True, seed=spec.data_seed, ds_hparams=ds_hparams,
                            repeat=True)
    val_images, val_labels = validation_subset(state.task, *task.arrays("validation"),
                                               config.search.validation_examples)
    val_weights = None
    if dist.distributed:
        val_images, val_labels, val_weights = distribute.pad_evaluation(
            val_images, val_labels, dist.replicas)
    val_ds = make_dataset(val_images, val_labels, image_size=size,
                          batch_size=config.search.batch_size, training=False, seed=0)
    val_ds = distribute.with_weights(val_ds, val_weights, config.search.batch_size)

    accounted = planned_accounted_params(spec, system, config)
    flops = forward_flops(arch, hparams)

    def score_fn(quality: float) -> float:
        return score_value(quality, accounted, flops, config.score)

    best_start = -math.inf if spec.parent_score is None else float(spec.parent_score)
    with dist.scope():  # variables, optimizer state and metrics live on every replica
        model = build_model(arch, hparams, params, trainable=trainable,
                            precision=config.precision)
        outcome = train_model(model, train_ds, val_ds, budget=budget,
                              optimizer=make_optimizer(hparams, budget.total_steps, config),
                              trainable=trainable, score_fn=score_fn, best_start=best_start,
                              execution=execution, progress=progress,
                              quality=config.search.child_quality)

    components = []
    new_blobs: dict[str, str] = {}
    for slot in spec.plan:
        if slot.action == "reuse":
            components.append(slot.source)
            continue
        weights = outcome.params[slot.name]
        if outcome.improved:
            digest, file_path = write_params(weights, out_dir)
            new_blobs[digest] = file_path
        else:
            digest = params_sha256(weights)
        components.append(Component(id=Component.make_id(state.task, slot.name, digest),
                                    name=slot.name, creator=state.task,
                                    shapes=param_shapes(weights), blob=digest))
    path_metrics = {"validation_accuracy": outcome.quality,
                    "validation_curve": outcome.curve,
                    "examples_trained": outcome.examples, "flops": flops}
    path = Path(task=state.task, components=tuple(components), hparams=hparams,
                method_version=config.method_version, parent=spec.parent,
                parent_task=spec.parent_task, metrics=path_metrics,
                score_constants=score_constants(config.score))
    metrics = {**path_metrics, "train_seconds": round(outcome.seconds, 3),
               "train_losses": outcome.losses, "steps": outcome.steps,
               "accounted_params": accounted, "replicas": outcome.replicas}
    return ChildResult(spec=spec, path=path, metrics=metrics, improved=outcome.improved,
                       score=score_fn(outcome.quality), new_blobs=new_blobs)


def select(state: SearchState, results: Sequence[ChildResult], config: Config, *,
           allow_missing: bool = False) -> SearchState:
    """Retained children join the population; the population is cut to `population_cap` by
    score (ties: the most recent stay); the children's new blobs are staged; one history
    entry per child; the generation advances.

    By default every child of the generation must be present (a lost result is an error);
    `allow_missing=True` accepts a subset (e.g. a child whose pod failed for good)."""
    _check_config(state, config)
    indices = sorted(r.spec.index for r in results)
    expected = list(range(config.search.children_per_generation))
    if len(set(indices)) != len(indices) or not set(indices) <= set(expected) or (
            indices != expected and not allow_missing):
        raise SchemaError(f"select got children {indices} of generation {state.generation}; "
                          f"expected exactly {expected}")
    for r in results:
        if r.spec.generation != state.generation or r.spec.task != state.task:
            raise SchemaError(f"child result of task {r.spec.task!r} generation "
                              f"{r.spec.generation} does not belong to generation "
                              f"{state.generation} of task {state.task!r}")
    population = list(state.population)
    staged = dict(state.staged_blobs)
    history = list(state.history)
    for r in sorted(results, key=lambda r: r.spec.index):
        if r.improved:
            population.append(Candidate(r.path, r.score, 0))
            staged.update(r.new_blobs)
        history.append(history_entry(r))
    # Keep the top `population_cap` (ties: newest kept); store best first, ties oldest first.
    keep = sorted(range(len(population)), key=lambda j: (-population[j].score, -j))
    keep = set(keep[:config.search.population_cap])
    kept = [population[j] for j in range(len(population)) if j in keep]
    kept = [kept[j] for j in sorted(range(len(kept)), key=lambda j: -kept[j].score)]
    return state.replace(population=tuple(kept), staged_blobs=staged, history=tuple(history),
                         generation=state.generation + 1)


def close_cycle(state: SearchState, task: TaskData, config: Config, blobs: BlobSource, *,
                code_version: str = "") -> Extension:
    """The cycle's extension: the best path of the population, with its test accuracy
    (measured once, here, on the test split) and only the blobs of its new components."""
    from mu2net.predict import evaluate_test_split

    _check_task(state, task)
    _check_config(state, config)
    best = state.best()
    if best is None:
        raise SchemaError(f"search of task {state.task!r} has an empty population after "
                          f"{state.generation} generations: nothing to publish")
    images, labels = task.arrays("test")
    if config.search.test_examples:
        images, labels = images[:config.search.test_examples], labels[:config.search.test_examples]
    cache = _blob_source(state, blobs)
    test_accuracy, confusion = evaluate_test_split(best.path, images, labels,
                                               task.info.num_classes, cache,
                                               batch_size=4 * config.search.batch_size)
    metrics = {**best.path.metrics, "test_accuracy": test_accuracy,
               "test_examples": int(len(labels)), "num_cycles": state.cycle + 1,
               "offspring": int(best.offspring), "search": search_record(state)}
    path = Path(task=best.path.task, components=best.path.components,
                hparams=best.path.hparams, method_version=best.path.method_version,
                parent=best.path.parent, parent_task=best.path.parent_task, metrics=metrics,
                score_constants=best.path.score_constants)
    blob_files = {c.blob: state.staged_blobs[c.blob] for c in path.components
                  if c.blob in state.staged_blobs}
    return Extension(task=state.task, base_version=state.base_version, path=path,
                     blob_files=blob_files, run_id=state.run_id, config_name=config.name,
                     code_version=code_version, mode=state.mode,
                     test_confusion=tuple(tuple(row) for row in confusion))


def evolve(system: SystemView, task: TaskData, config: Config, blobs: BlobSource, *,
           seed: int, run_id: str, workdir: str, mode: str = "onboard",
           execution: str = "auto", code_version: str = "",
           data_parallel: str | None = None, kept_cycles: int | None = None) -> Extension:
    """One whole search cycle in process: the same steps the pipeline runs, in a loop. New
    blobs go to `<workdir>/blobs/`; the state after each generation to `<workdir>/state.json`
    (its `history` records every child). `kept_cycles`: see `start_cycle`."""
    state = start_cycle(system, task.info, config, seed=seed, run_id=run_id, mode=mode,
                        kept_cycles=kept_cycles)
    out_dir = os.path.join(workdir, "blobs")
    while state.generation < config.search.generations_per_cycle:
        state, specs = plan_generation(state, system, config)
        results = [train_child(spec, state, system, task, config, blobs, out_dir,
                               execution=execution, data_parallel=data_parallel)
                   for spec in specs]
        state = select(state, results, config)
        write_file_atomic(os.path.join(workdir, "state.json"), state.to_json().encode())
    return close_cycle(state, task, config, blobs, code_version=code_version)



