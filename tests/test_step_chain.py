"""The seven pipeline steps called in order without KFP, as the pipeline wires them: the glue
layer alone (`mu2net/steps.py`) produces the same path as the search in process, and the run's
lease lasts from `start` to the end of `report`."""

from __future__ import annotations

import json
import os

from mu2net_helpers import random_root_store

from mu2net import steps
from mu2net.config import get_config
from mu2net.search import evolve
from mu2net.store import open_store
from mu2net.tasks.ingest import load_prepared, prepared_dir

CONFIG = get_config("testing")
CFG = {"config_json": CONFIG.to_json(), "config_hash": CONFIG.config_hash}


def run_chain(store_uri: str, work: str, spec: str, *, seed: int, run_id: str) -> dict:
    def folder(name: str) -> str:
        path = os.path.join(work, name)
        os.makedirs(path, exist_ok=True)
        return path

    task_dir = folder("task")
    info_dir = folder("info")  # the light steps read only this
    steps.ingest_step(task_spec=spec, mode="onboard", store_uri=store_uri, data_dir="",
                      run_id=run_id, task_dir=task_dir, info_dir=info_dir, **CFG)
    state_dir = folder("state-start")
    steps.start_step(info_dir=info_dir, store_uri=store_uri, seed=seed, run_id=run_id,
                     state_dir=state_dir, **CFG)
    store = open_store(store_uri)
    leases = {"after start": [lease.run_id for lease in store.leases()]}
    for generation in range(CONFIG.search.generations_per_cycle):
        plan_dir = folder(f"plan-{generation}")
        specs = steps.plan_step(state_dir=state_dir, generation=generation,
                                store_uri=store_uri, plan_dir=plan_dir, **CFG)
        result_dirs = []
        for i, spec_json in enumerate(specs):
            result_dirs.append(folder(f"result-{generation}-{i}"))
            steps.train_step(spec_json=spec_json, plan_dir=plan_dir, task_dir=task_dir,
                             store_uri=store_uri, result_dir=result_dirs[-1],
                             tensorboard_dir=folder(f"tb-{generation}-{i}"), **CFG)
        state_dir = folder(f"state-{generation}")
        steps.select_step(plan_dir=plan_dir, result_dirs=result_dirs, store_uri=store_uri,
                          state_dir=state_dir, **CFG)
    extension_dir = folder("extension")
    commit = steps.commit_step(state_dir=state_dir, task_dir=task_dir, store_uri=store_uri,
                               code_version="test", extension_dir=extension_dir, **CFG)
    leases["after commit"] = [lease.run_id for lease in store.leases()]
    leased_blobs = {blob for lease in store.leases() for blob in lease.blobs}
    steps.report_step(extension_dir=extension_dir, info_dir=info_dir, store_uri=store_uri,
                      markdown_path=os.path.join(work, "report.md"),
                      html_path=os.path.join(work, "report.html"), **CFG)
    leases["after report"] = [lease.run_id for lease in store.leases()]
    return {"commit": commit, "leases": leases, "task_dir": task_dir,
            "leased_blobs": leased_blobs,
            "extension": json.load(open(os.path.join(extension_dir, "extension.json")))}


def test_the_step_chain_commits_what_the_search_finds_in_process(tmp_path) -> None:
    store_uri = random_root_store(tmp_path / "store", CONFIG).uri
    out = run_chain(store_uri, str(tmp_path / "work"), "demo:digits", seed=3, run_id="chain-1")
    assert out["commit"]["version"] == 1
    assert out["leases"] == {"after start": ["chain-1"], "after commit": ["chain-1"],
                             "after report": []}
    assert os.path.getsize(tmp_path / "work" / "report.html") > 0
    store = open_store(store_uri)
    committed = store.load_system(1).paths["digits"]
    digits = load_prepared(prepared_dir(out["task_dir"], "digits"))
    extension = evolve(store.load_system(0), digits, CONFIG, store, seed=3, run_id="chain-1",
                       workdir=str(tmp_path / "evolve"))
    assert extension.path.to_dict() == out["extension"]["path"]
    assert extension.path.hash == committed.hash
    # Steps pass hashes: no artifact holds a parameter file; the new blobs were staged once in
    # the store under the run's lease, which covered them until the report.
    artifacts = [name for _, _, files in os.walk(tmp_path / "work") for name in files
                 if not name.startswith("events.out")]
    assert artifacts and not [name for name in artifacts if name.endswith(".npz")]
    new = set(out["extension"]["blob_files"])
    assert new and new <= out["leased_blobs"]
    assert all(store.has_blob(blob) for blob in new)
