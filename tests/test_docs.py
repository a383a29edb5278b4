"""Every reference to the project's documents resolves: quoted sections of docs/design.md exist,
README links point at files and headings that exist, and the paths the documents name are in
the repository (fast, no execution)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
DOCS = [ROOT / "README.md", DESIGN, ROOT / "benchmarks" / "README.md"]


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # an sdist or a copy without .git: walk the usual folders
        files = [p for d in ("autograder", "course_lib", "tests", "benchmarks", "docs")
                 for p in (ROOT / d).rglob("*") if p.is_file()]
        files += [ROOT / n for n in ("README.md", "Makefile", "pyproject.toml")]
    else:
        files = [ROOT / line for line in out.stdout.splitlines()]
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt", ""}
    return [p for p in files if p.is_file() and p.suffix in suffixes
            and not p.is_relative_to(ROOT / "release") and not p.is_relative_to(ROOT / "solutions")]


def _headings(path: Path) -> list[str]:
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", path.read_text(),
                                                    re.MULTILINE)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_the_design_document_is_in_the_repository():
    assert DESIGN.is_file()
    headings = " | ".join(_headings(DESIGN)).lower()
    for topic in ("layout", "data flow", "task contract", "tests that run in both places",
                  "hidden tests", "trust boundary", "weights and offline use", "traps"):
        assert topic in headings, f"docs/design.md has no section on {topic!r}"


def test_no_file_cites_a_design_document_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _tracked_text_files()
                 if p.name != "test_docs.py" and re.search(r"(?<![\w/])DESIGN\.md", p.read_text())]
    assert not offenders, f"these cite DESIGN.md, which is not in the repository: {offenders}"


QUOTED_SECTION = re.compile(r'docs/design\.md`{0,2}[,:]?\s*\(?["“]([^"”]+)["”]')


def test_quoted_design_sections_exist():
    headings = _headings(DESIGN)
    quotes = []
    for path in _tracked_text_files():
        text = re.sub(r"\s*\n\s*(#|//)?\s*", " ", path.read_text())  # comments wrap lines
        quotes += [(path.relative_to(ROOT), q) for q in QUOTED_SECTION.findall(text)]
    assert quotes, "the pattern found no quoted section at all: it is broken"
    missing = [(str(p), q) for p, q in quotes
               if not any(h.lower().startswith(q.lower().rstrip(".")) for h in headings)]
    assert not missing, f"sections quoted but not in docs/design.md: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in map(_slug, _headings(file)):
            broken.append(target)
    assert not broken, f"{doc.name}: links to nothing: {broken}"


PATH_IN_BACKTICKS = re.compile(
    r"`((?:autograder|course_lib|tests|benchmarks|docs|jupyter|source|\.ci)/[\w./<>-]*)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(doc):
    missing = []
    for name in PATH_IN_BACKTICKS.findall(doc.read_text()):
        if "<" in name:  # a pattern such as source/<lab>/
            name = name.split("<")[0]
        if not (ROOT / name).exists():
            missing.append(name)
    assert not missing, f"{doc.name} names paths that are not in the repository: {missing}"
