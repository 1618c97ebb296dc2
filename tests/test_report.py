"""The report: the system graph's layout and folding, the search record a cycle commits, the
terminal view of paths, progress lines, and the HTML page as headless Chromium renders it.

Stores are synthetic (`synthetic_extension`: no training), so the whole file runs in seconds.
Pictures stay in the tests' temporary folders; set MU2NET_TEST_ARTIFACTS=FOLDER to keep copies
for people to look at (nothing is written into the checkout).
"""

import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest
from mu2net_helpers import random_root_store

from mu2net import figures, report, status
from mu2net.cli import main
from mu2net.config import get_config
from mu2net.errors import ConfigError
from mu2net.progress import StepTimer, bar, duration
from mu2net.search_state import SEARCH_RECORD_SCHEMA, SearchState, search_record
from mu2net.store.synthetic import synthetic_extension
from mu2net.task_info import TaskInfo

CONFIG = get_config("testing")
ARTIFACTS = os.environ.get("MU2NET_TEST_ARTIFACTS", "")
CHROMIUM = "/usr/bin/chromium"


def record(cycle: int, base: int) -> dict:
    """A search record as `search_record` writes it: 3 generations x 2 children."""
    kinds = ("root", "self", "other")
    children = [[g, i, kinds[(g + i) % 3], "_root" if (g + i) % 3 == 0 else "t",
                 ["hp:opt_lr", "clone:encoderblock_1"][:(g + i) % 3],
                 0.5 + 0.1 * g + 0.05 * i, 0.5 + 0.1 * g + 0.04 * i, (g + i) % 2 == 0]
                for g in range(3) for i in range(2)]
    mu = [{"*": 0.1, "hp:opt_lr": 0.1 + 0.05 * g, "clone:encoderblock_1": 0.2 - 0.03 * g}
          for g in range(3)]
    return {"schema": SEARCH_RECORD_SCHEMA, "cycle": cycle, "mode": "onboard",
            "base_version": base, "children": children, "mu": mu, "published": [2, 0]}


def synthetic_store(folder, tasks: int):
    """A local store with `tasks` tasks committed one per version: own blocks, adapters on
    some, and every third task reusing its predecessor's first block."""
    store = random_root_store(folder, CONFIG)
    names = [f"task_{k:02d}" for k in range(tasks)]
    for k, name in enumerate(names):
        view = store.load_system()
        ext = synthetic_extension(
            view, name, os.path.join(folder, "blobs"),
            own=("encoderblock_1", "encoder_norm") if k % 2 else ("encoderblock_0",),
            adapters=(1,) if k % 4 == 1 else (),
            reuse={"encoderblock_0": names[k - 1]} if k and k % 3 == 0 else None,
            metrics={"validation_accuracy": 0.6 + 0.01 * k, "test_accuracy": 0.58 + 0.013 * k,
                     "num_cycles": 1, "search": record(0, view.number)})
        store.commit(ext)
    return store


def keep(path: pathlib.Path, name: str) -> pathlib.Path:
    """`path`, copied as `name` into $MU2NET_TEST_ARTIFACTS when that is set."""
    if not ARTIFACTS:
        return path
    os.makedirs(ARTIFACTS, exist_ok=True)
    target = pathlib.Path(ARTIFACTS) / name
    shutil.copyfile(path, target)
    print(f"artifact: {target}")
    return target


def test_graph_folds_many_tasks_into_others(tmp_path):
    store = synthetic_store(tmp_path, 24)
    view = store.load_system()
    layout = figures.graph_layout(view, max_tasks=12)
    assert len(layout.shown) == 11 and len(layout.folded) == 13
    assert sorted(layout.shown + layout.folded) == sorted(view.paths)
    # the shown tasks are those with the most accounted parameters
    least_shown = min(view.accounted_params(view.paths[t]) for t in layout.shown)
    assert all(view.accounted_params(view.paths[t]) <= least_shown for t in layout.folded)
    others = [line for line in layout.lines if line.gid.startswith("path-others-")]
    assert sorted(t for line in others for t in line.tasks) == layout.folded
    assert [line.gid for line in layout.lines[:11]] == [f"path-{t}" for t in layout.shown]
    # folded tasks' own components merge into one node per position
    folded_nodes = [n for n in layout.nodes.values() if n.kind == "folded"]
    assert len({n.position for n in folded_nodes}) == len(folded_nodes)
    assert len(layout.nodes) < len({c for p in view.paths.values() for c in p.component_ids})
    assert layout.positions[:3] == ["cls", "embedding", "posembed_input"]
    assert layout.positions[-2:] == ["encoder_norm", "head"]
    assert layout.positions.index("residual_adapter_1") == \
        layout.positions.index("encoderblock_1") - 1
    fig, titles = figures.system_graph(view)
    svg = figures.to_svg(fig, titles)
    assert svg.count('id="path-') == len(layout.lines)
    assert svg.count('id="node-') == len(layout.nodes)
    assert "<title>" in svg and 'id="graph-xlabel"' in svg
    png = tmp_path / "graph-24.png"
    png.write_bytes(figures.to_png(fig))
    keep(png, "graph-24-tasks.png")
    with pytest.raises(ConfigError, match="max_tasks=1 is invalid"):
        figures.graph_layout(view, max_tasks=1)


def test_report_of_version_0_draws_the_root_path(tmp_path):
    import warnings

    store = random_root_store(tmp_path, CONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "no artists with labels"
        text = report.system_html(store)
    assert text.count('<g id="path-') == 1 and '<g id="path-_root">' in text
    assert "No committed cycle with a search record yet" in text


def test_search_record_is_compact_and_names_parents():
    info = TaskInfo(name="t", source="demo:t", num_classes=2, class_names=("a", "b"),
                    split_sizes={"train": 4, "validation": 2, "test": 2},
                    image_shape=(8, 8, 1), content_hash="0" * 64)
    history = [{"generation": g, "index": i, "parent": "p",
                "parent_task": ("_root", "t", "other")[i], "improved": i != 1,
                "score": 0.5 + g / 10 + i / 100 if i != 2 else -math.inf,
                "validation_accuracy": 0.6, "mutations": ["hp:opt_lr"], "path": f"h{g}{i}",
                "parent_score": 0.42 if i == 1 else None,
                "mu": {"_mu_": 0.1, "_mu_|hp:opt_lr": 0.1 + 0.1 * i}}
               for g in range(2) for i in range(3)]
    state = SearchState(task="t", task_info=info, config_name="testing",
                        method_version=CONFIG.method_version, base_version=3, seed=0,
                        run_id="r", cycle=1, generation=2, history=tuple(history))
    rec = search_record(state)
    assert rec["schema"] == SEARCH_RECORD_SCHEMA and rec["base_version"] == 3
    assert [c[2] for c in rec["children"][:3]] == ["root", "self", "other"]
    assert rec["children"][2][6] is None  # -inf score: JSON has no infinity
    assert rec["mu"][0] == {"*": 0.1, "hp:opt_lr": 0.2}
    assert rec["published"] is None  # empty population: no child's path published
    assert rec["start_score"] == 0.42  # the own path the cycle started from
    assert len(json.dumps(rec)) < 1000


def test_paths_text_marks_root_shared_own_and_adapters(tmp_path):
    store = synthetic_store(tmp_path, 4)
    text = status.paths_text(store.load_system())
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["task", "cls", "emb", "pos"]
    row = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    cols = lines[1].split()[1:]
    assert row["task_00"][cols.index("b0")].startswith("O")
    assert row["task_01"][cols.index("a1")].startswith("A")
    assert row["task_00"][cols.index("a1")] == "."
    assert row["task_03"][cols.index("b0")].startswith("S")  # task_02's block, frozen
    assert row["task_00"][cols.index("emb")].startswith("R")


def test_run_markdown_sums_up_the_search(tmp_path):
    store = synthetic_store(tmp_path, 2)
    view = store.load_system()
    commit = {"task": "task_01", "version": 2, "run_id": "r", "base_version": 1,
              "created": True}
    text = report.run_markdown(commit, {"test_accuracy": 0.6}, view, CONFIG, [[1, 0], [0, 1]])
    assert "Search: 6 children over 3 generations, 3 kept; parents 2 of this task, 2 of " \
           "other tasks, 2 the root; best child score 0.7400" in text


def test_a_bar_is_printed_at_most_once_per_bar_every_s_per_child():
    """While a child trains, its progress lines become a bar at most every BAR_EVERY_S (10 s)
    per child: the first line prints, lines within 10 s of the last printed one do not, and
    another child's bar has its own clock."""
    from mu2net.progress import BAR_EVERY_S

    assert BAR_EVERY_S == 10.0
    now = [0.0]
    timer = StepTimer(clock=lambda: now[0])
    printed = []
    for t, label, done in [(0.0, "child 1", 1), (3.0, "child 1", 2), (9.9, "child 1", 3),
                           (5.0, "child 2", 1), (10.0, "child 1", 4), (14.9, "child 2", 2),
                           (15.0, "child 2", 3), (19.9, "child 1", 5), (20.0, "child 1", 6)]:
        now[0] = t
        printed += [(t, line.split(" [")[0]) for line in
                    timer.feed(f"[mu2net-progress] {label} {done}/10")]
    assert printed == [(0.0, "child 1"), (5.0, "child 2"), (10.0, "child 1"),
                       (15.0, "child 2"), (20.0, "child 1")]


def test_step_timer_reports_each_childs_own_duration():
    now = [0.0]
    timer = StepTimer(clock=lambda: now[0])
    lines = []

    def at(t, text):
        now[0] = t
        lines.extend(timer.feed(text))

    at(0.0, "10:00:00.0 - INFO - Executing task \x1b[96m'train-child-3'\x1b[0m")
    at(0.1, "10:00:00.1 - INFO - Executing task 'train-child-3'")
    at(15.0, "[mu2net-progress] generation 3 child 2 training 1/4")
    at(30.0, "Wrote executor output file to /r/p/for-loop-3-iteration-1/train-child-3/"
             "executor_output.json.")
    at(30.1, "INFO - Task 'train-child-3' finished with status SUCCESS")
    at(30.6, "Wrote executor output file to /r/p/for-loop-3-iteration-0/train-child-3/"
             "executor_output.json.")  # its finish line lost, as kfp.local can
    at(30.7, "Executing task 'train-child-3'")  # a retry: its bar starts again
    at(45.7, "[mu2net-progress] generation 3 child 2 training 1/4")
    at(46.0, "Task 'train-child-3' finished with status FAILURE")
    at(47.0, "Executing task 'select-3'")
    at(49.5, "Task 'select-3' finished with status SUCCESS")
    assert lines == ["generation 3 child 2 training [#####---------------] 1/4 25%, 14.9 s, "
                     "ETA 44.7 s",
                     "train-child-3 child 2 success (30.0 s)",
                     "train-child-3 child 1 success (30.5 s)",
                     "generation 3 child 2 training [#####---------------] 1/4 25%, 15.0 s, "
                     "ETA 45.0 s",
                     "train-child-3 failure (15.3 s)",
                     "select-3 success (2.5 s)"]
    assert bar(4, 4, 8.0).endswith("4/4 100%, 8.0 s")
    assert duration(185) == "3 min 05 s" and duration(3720) == "1 h 02 min"


def test_report_renders_in_headless_chromium(tmp_path):
    """The page of a two-task store: no external request, one node per distinct component,
    one line per task, labelled axes on every plot; the screenshot is kept."""
    store = synthetic_store(tmp_path, 2)
    out = tmp_path / "site" / "report.html"
    assert main(["report", "--store", store.uri, "--out", str(out)]) == 0
    text = out.read_text()
    names = {p.name for p in out.parent.iterdir()}
    for fig in ("graph", "search-v2", "search-v1", "accuracy", "params", "methods"):
        assert {f"report-{fig}.svg", f"report-{fig}.png"} <= names
    # self-contained: nothing fetched by src/href/url(), only in-page references
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?!#)[a-z]+:""", text, re.I)
    assert "url(http" not in text and "@import" not in text
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: as root, `bash scripts/install_system_deps.sh` "
                    "installs Debian's chromium (the browser half of this test)")
    shot, net = tmp_path / "report.png", tmp_path / "net.json"
    chromium(f"--screenshot={shot}", "--window-size=1400,2000", f"--log-net-log={net}",
             url=out.as_uri())
    assert shot.stat().st_size > 10_000
    keep(shot, "report-2-tasks.png")
    assert page_requests(net) == []
    dom = chromium("--dump-dom", url=out.as_uri())
    view = store.load_system()
    components = {c for p in view.paths.values() for c in p.component_ids}
    graph = dom[dom.index("id=\"fig-graph\""):]
    graph = graph[:graph.index("</svg>")]
    assert sorted(re.findall(r'<g id="node-([^"]+)"', graph)) == sorted(components)
    assert sorted(re.findall(r'<g id="path-([^"]+)"', graph)) == sorted(view.paths)
    svgs = re.findall(r"<svg\b.*?</svg>", dom, re.S)
    assert len(svgs) == 6  # graph, the two cycles' searches, accuracy, params, methods
    axes = 0
    for svg in svgs:
        for label in re.findall(r'<g id="[^"]*-xlabel">(.*?)</g>', svg, re.S) + \
                re.findall(r'<g id="[^"]*-ylabel">(.*?)</g>', svg, re.S):
            assert re.sub(r"<[^>]+>", "", label).strip(), f"an empty axis label in {svg[:80]}"
            axes += 1
        assert svg.count("-xlabel\"") == svg.count("-ylabel\"") >= 1
    assert axes == 2 * (1 + 2 * 2 + 3)  # the search figures have two plots each


def test_page_request_detection_sees_an_external_image(tmp_path):
    """The control of the check above: a page with an external image is caught."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (see test_report_renders_in_headless_chromium)")
    page, net = tmp_path / "ext.html", tmp_path / "net.json"
    page.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    chromium(f"--screenshot={tmp_path / 'ext.png'}", "--window-size=200,100",
             f"--log-net-log={net}", url=page.as_uri())
    assert page_requests(net) == ["http://127.0.0.1:9/x.png"]


def chromium(*flags: str, url: str) -> str:
    """Run headless Chromium once with a fresh profile; returns its stdout."""
    with tempfile.TemporaryDirectory(prefix="mu2net-chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *flags, url],
            capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def page_requests(net_log: pathlib.Path) -> list[str]:
    """http(s) requests the page made. The browser's own (time sync, accounts) have the
    initiator "not an origin"; a file:// page's requests have its opaque origin, "null"."""
    doc = json.loads(net_log.read_text())
    start = doc["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in doc["events"]
            if e["type"] == start and e["params"].get("url", "").startswith(("http:", "https:"))
            and e["params"].get("initiator") != "not an origin"]


def test_demo_ends_by_writing_the_report(tmp_path, capfd):
    """`mu2net demo` on a store that has its tasks already: status, paths, then the report."""
    store = random_root_store(tmp_path, CONFIG)
    view = store.load_system()
    store.commit(synthetic_extension(view, "digits", str(tmp_path / "blobs"),
                                     own=("encoderblock_0",),
                                     metrics={"validation_accuracy": 0.5, "test_accuracy": 0.4,
                                              "num_cycles": 1, "search": record(0, 0)}))
    work = tmp_path / "work"
    assert main(["demo", "--store", store.uri, "--config", "testing", "--tasks", "demo:digits",
                 "--workdir", str(work)]) == 0
    out = capfd.readouterr().out  # progress goes to the real stdout (the fd)
    assert "paths of version 1" in out and f"wrote the report {work / 'report.html'}" in out
    assert '<g id="path-digits">' in (work / "report.html").read_text()
