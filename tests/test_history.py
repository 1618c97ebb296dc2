"""History you can query (issue 24, point 3): `mu2net versions|show|diff` with `--json`, who
made each version (run id, time, code version, KFP run where known) in `status` and the report,
and `mu2net store cat` printing a stored object's plain JSON."""

import json
import uuid

import pytest
from mu2net_helpers import commit_root_path, random_root_store

from mu2net.cli import main
from mu2net.config import get_config
from mu2net.history import change_text, kfp_run_id

CONFIG = get_config("testing")
KFP_RUN = str(uuid.UUID(int=42))


def commit(store, task, accuracy, run_id):
    return commit_root_path(store, task, accuracy, run_id, config=CONFIG,
                            code_version="v9.9.9")


@pytest.fixture
def store(tmp_path):
    """Versions 0 (root), 1 (a added, local run), 2 (b added, KFP run), 3 (a updated),
    4 (a rolled back to version 1)."""
    store = random_root_store(tmp_path, CONFIG)
    commit(store, "a", 0.5, "12345678")
    commit(store, "b", 0.6, KFP_RUN)
    commit(store, "a", 0.7, "run-a-2")
    store.rollback_task("a", 1, "rollback-1")
    return store


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_versions_json_lists_run_ids_times_code_versions_and_changes(store, capsys):
    rows = run_json(capsys, "versions", "--store", store.uri, "--json")
    assert [r["version"] for r in rows] == [4, 3, 2, 1, 0]
    assert [r["run_id"] for r in rows] == ["rollback-1", "run-a-2", KFP_RUN, "12345678", None]
    assert [r["kfp_run_id"] for r in rows] == [None, None, KFP_RUN, None, None]
    assert all(r["committed_at"].endswith("Z") for r in rows)
    assert rows[2]["code_version"] == "v9.9.9"
    assert (rows[0]["rolled_back"], rows[0]["to_version"]) == (["a"], 1)
    assert rows[1]["updated"] == ["a"] and rows[2]["added"] == ["b"]
    assert rows[4]["kind"] == "init"
    assert [r["version"] for r in run_json(capsys, "versions", "--store", store.uri,
                                           "--limit", "2", "--json")] == [4, 3]


def test_versions_text_says_what_changed(store, capsys):
    assert main(["versions", "--store", store.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "KFP run" in lines[0] and "run id" in lines[0]
    assert lines[1].split()[0] == "4" and lines[1].endswith("rolled back a to version 1")
    assert lines[2].endswith("updated a") and lines[3].endswith("added b")
    assert KFP_RUN in lines[3] and lines[5].endswith("root")


def test_show_and_diff(store, capsys):
    doc = run_json(capsys, "show", "2", "--store", store.uri, "--json")
    assert doc["version"] == 2 and doc["parent"] == 1 and doc["added"] == ["b"]
    assert doc["kfp_run_id"] == KFP_RUN and set(doc["tasks"]) == {"a", "b"}
    assert doc["provenance"]["run_id"] == KFP_RUN
    assert run_json(capsys, "show", "--store", store.uri, "--json")["version"] == 4
    assert main(["show", "3", "--store", store.uri]) == 0
    text = capsys.readouterr().out
    assert text.startswith("version 3 (parent 2): updated a") and "run-a-2" in text
    diff = run_json(capsys, "diff", "1", "3", "--store", store.uri, "--json")
    assert list(diff["added"]) == ["b"] and list(diff["changed"]) == ["a"]
    assert main(["diff", "1", "4", "--store", store.uri]) == 0
    assert "+ b" in capsys.readouterr().out


def test_status_and_report_show_who_made_the_version(store, tmp_path, capsys):
    doc = run_json(capsys, "status", "--store", store.uri, "--at", "2", "--json")
    assert doc["run"] == {"run_id": KFP_RUN, "committed_at": doc["run"]["committed_at"],
                          "code_version": "v9.9.9", "kfp_run_id": KFP_RUN}
    assert main(["status", "--store", store.uri, "--at", "2"]) == 0
    assert f"by run {KFP_RUN} (code version v9.9.9; KFP run {KFP_RUN})" in \
        capsys.readouterr().out
    out = tmp_path / "report.html"
    assert main(["report", "--store", store.uri, "--out", str(out), "--at", "2"]) == 0
    page = out.read_text()
    assert f"by run {KFP_RUN}" in page and "<th class='l'>KFP run</th>" in page
    assert "added b" in page and "12345678" in page


def test_a_version_that_changed_no_path_says_so():
    """(Versions from before publish-only-what-changed: a rollback to the path a task had.)"""
    row = {"kind": "rollback", "task": "a", "to_version": 4, "added": [], "updated": [],
           "rolled_back": [], "removed": []}
    assert change_text(row) == "rolled back a to version 4: same path, no change"
    assert change_text({**row, "kind": "extension"}) == "a: same path, no change"
    assert change_text({**row, "rolled_back": ["a"]}) == "rolled back a to version 4"


def test_kfp_run_id_is_known_only_for_kubeflow_run_ids():
    assert kfp_run_id({"run_id": KFP_RUN}) == KFP_RUN
    assert kfp_run_id({"run_id": "12345678"}) is None  # kfp.local's 8-digit job ids
    assert kfp_run_id({"run_id": "rollback-abc"}) is None
    assert kfp_run_id({"run_id": "x", "kfp_run_id": "r-1"}) == "r-1"


def test_store_cat_prints_plain_json_of_a_local_store(store, capsys):
    raw = (store.backend.root + "/versions/000000000002.json")
    with open(raw, "rb") as fh:
        with pytest.raises(ValueError):  # the binary header: why jq cannot read the file
            json.loads(fh.read())
    doc = run_json(capsys, "store", "cat", "2", "--store", store.uri)
    assert doc["number"] == 2 and doc["provenance"]["run_id"] == KFP_RUN
    assert run_json(capsys, "store", "cat", "HEAD", "--store", store.uri)["version"] == 4
    wrapped = run_json(capsys, "store", "cat", "versions/000000000001.json", "--generation",
                       "--store", store.uri)
    assert wrapped["key"] == "versions/000000000001.json" and wrapped["generation"] > 0
    path_key = f"paths/{doc['tasks']['b']}.json"
    assert run_json(capsys, "store", "cat", path_key, "--store", store.uri)["task"] == "b"
    assert main(["store", "cat", "versions/000000000099.json", "--store", store.uri]) == 2
    assert "no object 'versions/000000000099.json'" in capsys.readouterr().err
