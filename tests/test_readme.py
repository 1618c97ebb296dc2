"""README is a user's guide whose promises hold (issue 24, point 7): its first screen says what
the project is, for whom, and gives the two commands (the main job and the tests, the one CI
runs); its Concepts section defines every term `mu2net status` prints, taken from a real status
output; and every relative link in README, CONTRIBUTING and docs/ leads to a file (and heading)
that exists."""

import os
import re
import unicodedata
from pathlib import Path

from mu2net_helpers import random_root_store

from mu2net import report
from mu2net.config import get_config
from mu2net.store.synthetic import synthetic_extension

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
FIRST_SCREEN = "\n".join(README.splitlines()[:40])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def section(text: str, title: str) -> str:
    """The `## title` section of a Markdown text, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def fenced_commands(text: str) -> list[str]:
    """The one-line fenced code blocks of a text, in order."""
    return re.findall(r"^```\n([^\n`]+)\n```$", text, re.MULTILINE)


def test_first_screen_says_what_for_whom_and_the_two_commands():
    assert fenced_commands(FIRST_SCREEN)[:2] == ["make demo", "make test"]
    assert re.search(r"\*\*Who it is for:\*\* \w+", FIRST_SCREEN)
    assert "Kubeflow" in FIRST_SCREEN and "arxiv.org/abs/2209.07326" in FIRST_SCREEN


def test_ci_runs_the_readme_test_command():
    test_command = fenced_commands(FIRST_SCREEN)[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "make demo" not in ci_lines  # CI does not run the demo: the test command is its job


def status_output(tmp_path) -> tuple[list[str], dict]:
    """What `mu2net status` prints for version 0 and for a two-task version (one task with an
    adapter, the other sharing its block frozen), and the latter's status document."""
    store = random_root_store(tmp_path, get_config("testing"))
    lines = report.status_text(report.status_dict(store)).splitlines()
    for task, kwargs in (("alpha", {"own": ("encoderblock_0",), "adapters": (1,)}),
                         ("beta", {"own": ("encoder_norm",),
                                   "reuse": {"encoderblock_0": "alpha"}})):
        store.commit(synthetic_extension(
            store.load_system(), task, os.path.join(tmp_path, "blobs"),
            metrics={"validation_accuracy": 0.7, "test_accuracy": 0.6}, **kwargs))
    doc = report.status_dict(store)
    text = report.status_text(doc) + "\n\n" + report.paths_text(store.load_system(doc["version"]))
    return lines + text.splitlines(), doc


def printed_terms(lines: list[str], doc: dict, defined: set[str]) -> set[str]:
    """The labels in status's output: everything that is not a value (numbers, names, hashes,
    times, ids). Table headers are taken apart with the defined terms; what is left over is a
    term the README does not define and is returned as such."""
    tasks = set(doc["tasks"])
    terms: set[str] = set()
    for line in lines:
        if re.match(r"version \d+: ", line):  # summary: `version N: N tasks, N parameters ...`
            for phrase in re.split(r"[:,]", re.sub(r"[\d,]{2,}|\d", " ", line)):
                terms.add(" ".join(phrase.split()))
        elif line.startswith("committed "):  # the run: time, run id, code version, KFP run
            line = re.sub(r"\d{4}-\d\d-\d\dT\S+Z", " ", line)  # any version's time
            if doc["run"]["run_id"]:
                line = line.replace(doc["run"]["run_id"], " ")
            line = re.sub(r"(?<=\s)-(?=[;)\s]|$)", " ", line)
            terms.update(" ".join(p.split()) for p in re.split(r"[;()]|\bby\b", line))
        elif line.startswith("task ") and "MFLOPs" in line:  # the table's header
            rest = f" {line} "
            for term in sorted(defined, key=len, reverse=True):
                if f" {term} " in rest:
                    terms.add(term)
                    rest = re.sub(rf"(?<= ){re.escape(term)}(?= )", " ", rest)
            terms.update(rest.split())  # anything left is a column README does not define
        elif line.startswith("paths of version"):  # the legend of the path lines
            terms.update({"paths", "version"})
            terms.update(re.findall(r"[(,;] ?([A-Z]) ", line))  # the marker letters
            terms.update(re.findall(r"the (\w+)'s", line))  # what the hex digits are of
        elif line.startswith("task "):  # the layer positions of the path lines
            terms.update(re.sub(r"\d+$", "N", p) for p in line.split())
        elif line.split() and line.split()[0] in tasks:
            cells = line.split()[1:]
            if any(re.fullmatch(r"[A-Z][0-9a-f]{4}|\.", c) for c in cells):  # path line
                terms.update(c[0] for c in cells)
    return {t for t in terms if t}


def defined_status_terms() -> set[str]:
    """The terms of the Concepts section's table of what `status` prints (first column)."""
    concepts = section(README, "Concepts")
    table = concepts.split("### What `mu2net status` prints", 1)[1]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    return {t for row in rows for t in re.findall(r"`([^`]+)`", row.split(" | ")[0])}


def test_concepts_define_every_term_status_prints(tmp_path):
    defined = defined_status_terms()
    lines, doc = status_output(tmp_path)
    printed = printed_terms(lines, doc, defined)
    # the output was really taken apart: every kind of label was found
    assert {"version", "tasks", "parameters in the root", "parameters in task paths",
            "committed", "run", "code version", "KFP run", "test acc", "val acc", "score",
            "accounted params", "MFLOPs", "method", "R", "S", "O", "A", ".", "blob",
            "bN", "aN", "head"} <= printed
    assert sorted(printed - defined) == []


def test_concepts_define_the_method_words_and_the_four_versions():
    concepts = section(README, "Concepts")
    assert "docs/method.md" in concepts
    for word in ("path", "component", "frozen vs cloned", "accounted params", "amortisation",
                 "score", "kept", "published", "system version", "method version",
                 "config hash", "code version"):
        assert f"**{word}**" in concepts, word
    for symbol in ("q", "s", "A", "P", "F"):  # the score's symbols, each explained
        assert f"**{symbol}**" in concepts, symbol


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def test_every_relative_link_resolves():
    documents = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted(REPO.glob("docs/*.md"))]
    broken, checked = [], 0
    for doc in documents:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            checked += 1
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            if not path.exists():
                broken.append(f"{doc.relative_to(REPO)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(REPO)}: {target} (no such heading)")
    assert checked > 40
    assert broken == []


def test_readme_links_the_internals_it_moved_out():
    for target in ("docs/method.md", "docs/store.md", "docs/architecture.md", "docs/sizing.md",
                   "CONTRIBUTING.md"):
        assert f"]({target})" in README, target
    assert "## Operating at scale" in README
