"""The glue between pipeline steps and the library: artifact folders <-> library objects.

Every KFP component (`components/*.py`) calls exactly one `*_step` function here with local
folder paths and plain values; these functions read the inputs, call one library step
(`mu2net.search`, `mu2net.tasks.ingest`, the store) and write the outputs. They never import
kfp, so tests call them directly, and `mu2net onboard` runs them through `kfp.local`.

Artifact layouts (all JSON is canonical). No artifact holds parameters: a child stages its new
component blobs once, content-addressed, in the store under the run's lease
(`store.stage_blobs`), and states and results name them by hash (`STAGED_IN_STORE`); the commit
publishes a version that references them and the report step frees the lease.

* task (Dataset):        request.json (spec, mode, queue entry) + NAME/ (prepared task);
                         read only by the steps that need images: train children and the
                         commit (its test-split pass)
* info (Artifact):       request.json alone (the request with its `task_info`: name, classes,
                         source, data dir, split sizes, image shape): what the light steps read
* state / plan (Artifact): state.json (SearchState) [+ specs.json]
* result (Model):        result.json (ChildResult)
* extension (Model):     extension.json + commit.json

The store's head is pinned once, by `start_step`, as the cycle's base version: every later step
reads that version (`state.base_version`), never the moving head, so a cycle sees one
consistent system however long it runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from mu2net.blobs import STAGED_IN_STORE
from mu2net.config import Config, canonical_json
from mu2net.errors import ConfigError, SchemaError, StoreError
from mu2net.params_io import write_file_atomic
from mu2net.resources import lease_ttl
from mu2net.scoring import path_metrics
from mu2net.tensorboard import finite_scalars

REQUEST_FILE = "request.json"
STATE_FILE = "state.json"
SPECS_FILE = "specs.json"
RESULT_FILE = "result.json"
EXTENSION_FILE = "extension.json"
COMMIT_FILE = "commit.json"
FAULT_ENV = "MU2NET_FAULT_AFTER_COMMIT"  # tests: path of a marker file, see commit_step


# === small helpers ==========================================================================


def load_config(config_json: str, config_hash: str) -> Config:
    """The config a step was compiled with; refuses JSON whose hash is not the recorded one
    (a pipeline compiled from one config must not run with another's components)."""
    config = Config.from_json(config_json)
    if config.config_hash != config_hash:
        raise ConfigError(f"config hash mismatch: the pipeline passed {config_hash!r} but its "
                          f"config JSON ({config.name!r}) hashes to {config.config_hash!r}; "
                          "recompile the pipeline")
    return config


def resolve_run_id(run_id: str, job_id: str) -> str:
    """The explicit run id if given, else the pipeline run's id (shared by retries)."""
    rid = (run_id or "").strip() or (job_id or "").strip()
    if not rid or rid.startswith("{{"):
        raise ConfigError(f"run id is empty (run_id={run_id!r}, job id={job_id!r}): pass "
                          "run_id")
    return rid


def _write_json(path: str, doc: Any) -> None:
    write_file_atomic(path, canonical_json(doc).encode())


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SchemaError(f"{what} {path!r} is missing: the producing step did not finish"
                          ) from None


def _open_store(store_uri: str, config: Config | None = None) -> Any:
    """The store; with a config, same-task commit races are decided by the method's score."""
    from mu2net.store import open_store

    return open_store(store_uri, config)


# === search state and child results in artifact folders ===================================


def _in_store(blobs: Mapping[str, str], what: str) -> None:
    local = sorted(blob for blob, location in blobs.items() if location != STAGED_IN_STORE)
    if local:
        raise SchemaError(f"{what} lists blobs that are not staged in the store: {local}; "
                          "artifacts carry hashes only (stage them with store.stage_blobs)")


def _save(obj: Any, blobs: Mapping[str, str], what: str, folder: str, name: str) -> None:
    _in_store(blobs, what)
    os.makedirs(folder, exist_ok=True)
    _write_json(os.path.join(folder, name), obj.to_dict())


def save_state(state: Any, folder: str) -> None:
    """Write a SearchState; its staged blobs are already in the store (hashes only)."""
    _save(state, state.staged_blobs, "search state", folder, STATE_FILE)


def load_state(folder: str) -> Any:
    from mu2net.search_state import SearchState

    return SearchState.from_dict(_read_json(os.path.join(folder, STATE_FILE), "search state"))


def save_result(result: Any, folder: str) -> None:
    """Write a ChildResult; its new blobs are already in the store (hashes only)."""
    _save(result, result.new_blobs, "child result", folder, RESULT_FILE)


def load_result(folder: str) -> Any:
    from mu2net.search_state import ChildResult

    return ChildResult.from_dict(_read_json(os.path.join(folder, RESULT_FILE), "child result"))


def load_task_dir(task_dir: str) -> tuple[dict[str, Any], Any]:
    """(request, TaskData) of an ingest step's output folder."""
    from mu2net.tasks.ingest import load_prepared, prepared_dir

    request = _read_json(os.path.join(task_dir, REQUEST_FILE), "task request")
    return request, load_prepared(prepared_dir(task_dir, request["task"]))


# === steps ==================================================================================


def ingest_step(*, task_spec: str, mode: str, store_uri: str, data_dir: str, run_id: str,
                config_json: str, config_hash: str, task_dir: str, info_dir: str = "",
                default_data_dir: str = "", target: str = "cpu") -> dict[str, Any]:
    """Resolve the request and prepare the task under `task_dir/NAME`, its images no larger
    than the largest `ds_image_size` of the config; the request (with the task's info) goes
    to `task_dir` and `info_dir`. The data folder is `queue.effective_data_dir` of the run's
    `data_dir`, the one recorded with the queue entry or task, and `default_data_dir` (the
    compiled default). A queue entry taken here records the run's deadline on `target`."""
    from mu2net.queue import effective_data_dir, ingest_request, resolve_request
    from mu2net.resources import run_deadline_seconds

    config = load_config(config_json, config_hash)
    store = _open_store(store_uri)
    request = resolve_request(store, task_spec, mode, run_id,
                              deadline_s=run_deadline_seconds(config, target))
    request["data_dir"] = effective_data_dir(data_dir, request["data_dir"], default_data_dir)
    largest = max(int(size) for size in config.hparams.get("ds_image_size").values)
    info = ingest_request(store, request, task_dir, request["data_dir"] or None,
                          max_image_size=largest)
    doc = {**request, "task": info.name, "task_info": info.to_dict(), "run_id": run_id}
    for folder in (task_dir, info_dir):
        if folder:
            os.makedirs(folder, exist_ok=True)
            _write_json(os.path.join(folder, REQUEST_FILE), doc)
    return {"task": info.name, "spec": request["spec"], "mode": request["mode"],
            "data_dir": request["data_dir"],
            "queue_entry": request["queue_entry"], "num_classes": info.num_classes,
            "train_examples": info.split_sizes["train"], "content_hash": info.content_hash}


def start_step(*, info_dir: str, store_uri: str, seed: int, run_id: str, config_json: str,
               config_hash: str, state_dir: str, target: str = "cpu") -> dict[str, Any]:
    """Pin the head as the base version and write the cycle's initial search state."""
    from mu2net import search
    from mu2net.task_info import TaskInfo

    config = load_config(config_json, config_hash)
    store = _open_store(store_uri, config)
    base = store.head()
    if base is None:
        raise StoreError(f"store {store_uri!r} is empty: create version 0 with `mu2net init`")
    request = _read_json(os.path.join(info_dir, REQUEST_FILE), "task request")
    system = store.load_system(base)
    state = search.start_cycle(system, TaskInfo.from_dict(request["task_info"]), config,
                               seed=int(seed), run_id=run_id, mode=request["mode"],
                               kept_cycles=store.kept_cycles(system, request["task"]))
    store.acquire_lease(run_id, ttl_s=lease_ttl(config, target), base_version=base)
    save_state(state, state_dir)
    return {"base_version": base, "task": state.task, "mode": state.mode, "run_id": run_id,
            "method_version": config.method_version}


def plan_step(*, state_dir: str, generation: int, store_uri: str, config_json: str,
              config_hash: str, plan_dir: str) -> list[str]:
    """Plan one generation; returns the child specs as JSON strings (the ParallelFor items)."""
    from mu2net import search

    config = load_config(config_json, config_hash)
    state = load_state(state_dir)
    if state.generation != generation:
        raise SchemaError(f"plan of generation {generation} got a search state at generation "
                          f"{state.generation}: the pipeline wiring is out of order")
    store = _open_store(store_uri, config)
    state, specs = search.plan_generation(state, store.load_system(state.base_version), config)
    save_state(state, plan_dir)
    items = [canonical_json(spec.to_dict()) for spec in specs]
    _write_json(os.path.join(plan_dir, SPECS_FILE), [spec.to_dict() for spec in specs])
    return items


def train_step(*, spec_json: str, plan_dir: str, task_dir: str, store_uri: str,
               config_json: str, config_hash: str, result_dir: str,
               tensorboard_dir: str, data_parallel: str | None = None,
               target: str = "cpu") -> dict[str, Any]:
    """Train one child; stage its new blobs in the store, write its result (hashes only) and
    its TensorBoard events.
    `data_parallel`: auto|off|on (`mu2net.distribute`), as the entry point read it. `target`:
    the device target the pipeline was compiled for; a gpu/tpu child refuses to start without
    its accelerator instead of training on the CPU for hours."""
    from mu2net import search
    from mu2net.distribute import require_accelerator
    from mu2net.progress import emitter
    from mu2net.search_state import ChildSpec

    config = load_config(config_json, config_hash)
    require_accelerator(target)
    state = load_state(plan_dir)
    spec = ChildSpec.from_dict(json.loads(spec_json))
    store = _open_store(store_uri, config)
    _, task = load_task_dir(task_dir)
    with tempfile.TemporaryDirectory(prefix="mu2net-child-") as scratch:
        result = search.train_child(spec, state, store.load_system(state.base_version), task,
                                    config, store, scratch, data_parallel=data_parallel,
                                    progress=emitter(f"generation {spec.generation + 1} child "
                                                     f"{spec.index + 1} training"))
        staged = store.stage_blobs(state.run_id, result.new_blobs, ttl_s=lease_ttl(config, target),
                                   base_version=state.base_version)
    result = dataclasses.replace(result, new_blobs=dict.fromkeys(result.new_blobs,
                                                                 STAGED_IN_STORE))
    save_result(result, result_dir)
    from mu2net.tensorboard import write_tensorboard

    metrics = {**result.metrics, "score": result.score, "improved": float(bool(result.improved))}
    write_tensorboard(metrics, tensorboard_dir)
    return {"metrics": finite_scalars(metrics), "score": float(result.score)
            if math.isfinite(result.score) else -1.0,
            "metadata": {"improved": bool(result.improved),
                         "new_blobs": len(result.new_blobs), "staged_bytes": staged}}


def select_step(*, plan_dir: str, result_dirs: Sequence[str], store_uri: str,
                config_json: str, config_hash: str, state_dir: str,
                target: str = "cpu") -> dict[str, Any]:
    """Accept improved children, prune the population; their staged blobs go forward by
    hash."""
    from mu2net import search

    config = load_config(config_json, config_hash)
    state = load_state(plan_dir)
    results = [load_result(folder) for folder in result_dirs]
    store = _open_store(store_uri, config)
    state = search.select(state, results, config)
    save_state(state, state_dir)
    # Renew the run's lease; it already names every staged blob (each child's stage_blobs).
    store.acquire_lease(state.run_id, ttl_s=lease_ttl(config, target),
                        base_version=state.base_version)
    best = state.best()
    best_score = best.score if best is not None and math.isfinite(best.score) else -1.0
    return {"best_score": float(best_score),
            "metrics": {"accepted": float(sum(bool(r.improved) for r in results)),
                        "children": float(len(results)),
                        "population": float(len(state.population)),
                        "best_score": float(best_score)}}


def _maybe_inject_fault(marker: str) -> None:
    """Test hook: with a marker file path (the commit component passes
    $MU2NET_FAULT_AFTER_COMMIT), the first commit step to get here creates the marker and fails
    (after the store's compare-and-swap), so the retry's idempotency can be tested through the
    real pipeline."""
    if marker and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("injected\n")
        raise RuntimeError(f"injected fault after the commit's compare-and-swap ({FAULT_ENV})")


def commit_step(*, state_dir: str, task_dir: str, store_uri: str, code_version: str,
                config_json: str, config_hash: str, extension_dir: str,
                fault_marker: str = "", target: str = "cpu") -> dict[str, Any]:
    """Close the cycle and commit its extension (idempotent per run id)."""
    from mu2net import search

    config = load_config(config_json, config_hash)
    state = load_state(state_dir)
    store = _open_store(store_uri, config)
    request, task = load_task_dir(task_dir)
    extension = search.close_cycle(state, task, config, store, code_version=code_version)
    store.acquire_lease(state.run_id, ttl_s=lease_ttl(config, target),
                        base_version=state.base_version)
    result = store.commit(extension, min_gain=config.publish.min_improvement)
    _maybe_inject_fault(fault_marker)
    if request.get("queue_entry"):
        store.finish(request["queue_entry"], run_id=state.run_id)  # idempotent
    # The lease stays until the report has read the committed version (report_step frees it).
    view = store.load_system(result.version)
    committed = view.paths[extension.task]
    doc = extension.to_dict()
    _write_json(os.path.join(extension_dir, EXTENSION_FILE), doc)
    # `note`: why nothing was published (no change, below the gate); then `version` is the
    # kept head and `path_hash` the task's path there.
    new = [] if result.note else [c.id for c in committed.components
                                  if c.blob in extension.blob_files]
    commit_doc = {"version": result.version, "created": result.created,
                  "bytes_written": result.bytes_written, "rebases": result.rebases,
                  "decision": result.decision, "task": extension.task,
                  "base_version": extension.base_version, "run_id": extension.run_id,
                  "path_hash": committed.hash, "published": not result.note,
                  "note": result.note, "new_components": new}
    _write_json(os.path.join(extension_dir, COMMIT_FILE), commit_doc)
    return {"version": int(result.version),
            "metrics": {**path_metrics(committed, view, config),
                        "version": float(result.version),
                        "new_components": float(len(new))},
            "metadata": {k: v for k, v in commit_doc.items() if v is not None}}


def report_step(*, extension_dir: str, info_dir: str, store_uri: str, config_json: str,
                config_hash: str, markdown_path: str, html_path: str) -> dict[str, Any]:
    """The run's dashboards: Markdown summary, the run's HTML page, and the
    confusion matrix of this run's path on the test split (from the commit step's artifact:
    the test split is evaluated once per cycle). The HTML is the run's page
    (`mu2net.run_page`: its task, its cycle's search, recent history), bounded whatever the
    system's size; the whole system's page is `mu2net report`."""
    from mu2net import report, run_page

    config = load_config(config_json, config_hash)
    store = _open_store(store_uri, config)
    commit = _read_json(os.path.join(extension_dir, COMMIT_FILE), "commit record")
    request = _read_json(os.path.join(info_dir, REQUEST_FILE), "task request")
    version = int(commit["version"])
    view = store.load_system(version)
    path = view.paths[commit["task"]]
    # Measured once, by the commit step's close of the cycle, on this run's path.
    extension = _read_json(os.path.join(extension_dir, EXTENSION_FILE), "extension")
    confusion = [list(row) for row in extension.get("test_confusion") or []]
    metrics = path_metrics(path, view, config)
    line = report.one_line(commit, metrics)
    with open(markdown_path, "w") as fh:
        fh.write(report.run_markdown(commit, metrics, view, config, confusion))
    with open(html_path, "w") as fh:  # bounded: the run's task and recent history only
        fh.write(run_page.run_html(store, view, commit["task"]))
    store.release_lease(commit["run_id"])  # the last step that reads the run's version
    return {"line": line, "class_names": list(request["task_info"]["class_names"]),
            "confusion_matrix": confusion}
