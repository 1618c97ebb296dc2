"""Every `docs/method.md §N` the code cites resolves to a section of docs/method.md (issue 24,
point 7), and no citation points at a method.md outside the repository."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("mu2net", "components", "pipelines", "benchmarks", "tests", "README.md",
           "CONTRIBUTING.md", "docs")  # README's internals moved to docs/ and CONTRIBUTING
# `method.md §3.1`, `method.md` §4.1, §5.1, `(method.md §3.1, §4.1)`
CITATION = re.compile(r"([\w./-]*method\.md)`? ((?:§\d+(?:\.\d+)*(?:, )?)+)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)


def citations() -> list[tuple[str, str, str]]:
    """(file, cited file, section) of every citation in the scanned files."""
    out = []
    for top in SCANNED:
        root = REPO / top
        files = [root] if root.is_file() else [p for p in root.rglob("*")
                                               if p.suffix in (".py", ".md", ".yaml", ".sh")]
        for path in files:
            if path == pathlib.Path(__file__):
                continue
            for match in CITATION.finditer(path.read_text(errors="replace")):
                for section in re.findall(r"§(\d+(?:\.\d+)*)", match.group(2)):
                    out.append((str(path.relative_to(REPO)), match.group(1),
                                section))
    return out


def test_docs_method_md_exists_with_numbered_sections():
    text = (REPO / "docs" / "method.md").read_text()
    assert {"2.5", "3.1", "5.5", "6.1"} <= set(HEADING.findall(text))


def test_every_citation_resolves_to_a_section_of_docs_method_md():
    sections = set(HEADING.findall((REPO / "docs" / "method.md").read_text()))
    found = citations()
    assert len(found) >= 30  # the code cites the method throughout
    unresolved = [f"{where}: §{section}" for where, _, section in found
                  if section not in sections]
    assert unresolved == []


def test_citations_name_the_file_in_the_repository():
    wrong = sorted({f"{where}: {cited}" for where, cited, _ in citations()
                    if cited != "docs/method.md"})
    assert wrong == []
