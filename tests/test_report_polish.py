"""Report and status polish (issue 24, point 9): an unambiguous `accounted params` header, an
integer `accounted_params` (the exact fraction beside it), the root's parameters at version 0,
a search-plot legend that covers no point, readable mutation names, and a mistyped --store told
to check the path."""

import json

import pytest
from mu2net_helpers import random_root_store
from test_report import record, synthetic_store

from mu2net import plots, report, status
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.hparams import mutation_label, mutations_text

CONFIG = get_config("testing")


def test_status_header_says_accounted_params(tmp_path):
    store = synthetic_store(tmp_path, 3)
    text = status.status_text(status.status_dict(store))
    header = text.splitlines()[2]
    assert "accounted params" in header and "acc.params" not in text


def test_accounted_params_are_integers_with_the_exact_fraction_beside(tmp_path):
    store = synthetic_store(tmp_path, 4)  # tasks share the root's frozen components
    doc = status.status_dict(store)
    fractional = 0
    for name, entry in doc["tasks"].items():
        exact = store.load_system().accounted_params(store.load_system().paths[name])
        assert isinstance(entry["accounted_params"], int)
        assert entry["accounted_params"] == round(exact)
        assert entry["accounted_params_exact"] == pytest.approx(exact)
        fractional += exact != int(exact)
    assert fractional  # amortisation does make them fractional
    assert '"accounted_params": ' in json.dumps(doc)
    for entry in doc["tasks"].values():
        assert "." not in json.dumps(entry["accounted_params"])


def test_version_0_shows_the_roots_parameters(tmp_path, capsys):
    store = random_root_store(tmp_path, CONFIG)
    root = store.load_system().root
    doc = status.status_dict(store)
    assert doc["total_params"] == root.num_params > 0
    assert f"{root.num_params:,} parameters in the root" in status.status_text(doc)
    rows = report.history_rows(store)
    assert rows[0]["total_params"] == root.num_params


def test_search_plot_legend_covers_no_point():
    rec = record(0, 1)
    # rejected children of the last generation with low scores: the lower right corner,
    # where the legend used to sit
    rec["children"] += [[2, 2, "root", "_root", [], 0.45, 0.45, False],
                        [2, 3, "self", "t", [], 0.5, 0.5, False]]
    fig = plots.search_figure(rec, "task_x", 2)
    fig.canvas.draw()
    left = fig.axes[0]
    box = left.get_legend().get_window_extent()
    points = [p for coll in left.collections for p in coll.get_offsets()]
    assert points
    inside = [p for p in points
              if box.contains(*left.transData.transform(p))]
    assert inside == []


@pytest.mark.parametrize("action, label", [
    ("hp:_mu_", "mutation probability \u03bc"), ("hp:opt_lr", "learning rate"),
    ("hp:ds_image_size", "image size"), ("clone:encoderblock_1", "clone block 1"),
    ("add:residual_adapter_2", "add adapter 2"), ("*", "base \u03bc"),
    ("hp:new_thing", "new thing"),
])
def test_mutation_labels_are_readable(action, label):
    assert mutation_label(action) == label


def test_report_shows_readable_mutation_names(tmp_path):
    store = synthetic_store(tmp_path, 2)
    page = report.system_html(store)
    assert "learning rate" in page and "clone block 1" in page
    assert "hp:opt_lr" not in page and "clone:encoderblock_1" not in page
    fig = plots.search_figure(record(0, 1), "t", 1)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "learning rate" in labels and not any(":" in t for t in labels)
    assert mutations_text([]) == "-"


@pytest.mark.parametrize("command", [["status"], ["versions"], ["report", "--out", "r.html"],
                                     ["queue", "list"]])
def test_a_mistyped_store_is_told_to_check_the_path(tmp_path, capsys, command):
    typo = str(tmp_path / "stroe")
    assert main([command[0], "--store", typo, *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mu2net: error: no store at {typo!r} (check the path; `mu2net init "
                   f"--store {typo} --root ...` creates one)")
    assert not (tmp_path / "stroe").exists()



def test_accuracy_history_draws_at_most_30_task_lines_in_one_pass():
    """At 50 tasks the figure keeps the 30 tasks committed most recently (plus the mean over
    all 50): its size stays bounded at any number of tasks."""
    tasks = [f"t{i:02d}" for i in range(50)]
    rows = [{"version": v, "task": tasks[v % 50], "mean_test_accuracy": 0.5,
             "accuracies": dict.fromkeys(tasks, 0.5)} for v in range(100)]
    fig = plots.accuracy_figure(rows)
    drawn = {line.get_gid() for ax in fig.axes for line in ax.lines
             if (line.get_gid() or "").startswith("accuracy-")}
    assert drawn == {f"accuracy-{t}" for t in tasks[20:]}  # versions 70..99 committed these
    assert any("mean over tasks (50)" in str(t.get_text()) for ax in fig.axes
               for t in (ax.get_legend().get_texts() if ax.get_legend() else []))


def test_status_builds_the_component_users_once_per_view(tmp_path, monkeypatch):
    """Each task's accounted parameters read the same users map: rebuilding it per task made
    `status` and the report O(tasks^2)."""
    from mu2net.root import build_root
    from mu2net.schema import SystemVersion, SystemView
    from mu2net.store.synthetic import synthetic_extension

    root, _ = build_root(CONFIG, "random", seed=0)
    empty = SystemView(version=SystemVersion(number=0, parent=None, root=root.hash, tasks={}),
                       root=root, paths={})
    paths = {f"t{i}": synthetic_extension(empty, f"t{i}", str(tmp_path)).path for i in range(6)}
    view = SystemView(version=SystemVersion(number=1, parent=0, root=root.hash,
                                            tasks={t: p.hash for t, p in paths.items()}),
                      root=root, paths=paths)
    calls = []
    original = SystemView.component_users
    monkeypatch.setattr(SystemView, "component_users",
                        lambda self: calls.append(1) or original(self))
    entries = [status.path_entry(path, view) for path in paths.values()]
    assert len(calls) == 1 and all(e["accounted_params"] > 0 for e in entries)
