"""Report and status polish (issue 24, point 9): an unambiguous `accounted params` header, an
integer `accounted_params` (the exact fraction beside it), the root's parameters at version 0,
a search-plot legend that covers no point, readable mutation names, and a mistyped --store told
to check the path."""

import json

import pytest
from mu2net_helpers import random_root_store
from test_report import record, synthetic_store

from mu2net import plots, report
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.hparams import mutation_label, mutations_text

CONFIG = get_config("testing")


def test_status_header_says_accounted_params(tmp_path):
    store = synthetic_store(tmp_path, 3)
    text = report.status_text(report.status_dict(store))
    header = text.splitlines()[2]
    assert "accounted params" in header and "acc.params" not in text


def test_accounted_params_are_integers_with_the_exact_fraction_beside(tmp_path):
    store = synthetic_store(tmp_path, 4)  # tasks share the root's frozen components
    doc = report.status_dict(store)
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
    doc = report.status_dict(store)
    assert doc["total_params"] == root.num_params > 0
    assert f"{root.num_params:,} parameters in the root" in report.status_text(doc)
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

