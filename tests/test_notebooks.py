"""Execute the notebooks: every source cell runs, every test passes and says so in one line; the
release copy fails only where a student has work to do."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
from nbclient import NotebookClient

from autograder import notebooks
from autograder.fast import names_of

from ._course import LABS, lab_notebooks, require_dot

pytestmark = pytest.mark.slow


def _execute(path: Path, workdir: Path) -> list:
    """Run a copy of ``path`` in ``workdir``; return its executed cells."""
    if "make_dot" in path.read_text(encoding="utf-8"):
        require_dot()
    shutil.copytree(path.parent, workdir, dirs_exist_ok=True)
    nb = notebooks.read(workdir / path.name)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb.cells


def _errors(cells) -> list[tuple[str, str, str]]:
    """``(grade_id or first line, exception name, message)`` for each cell that raised."""
    found = []
    for cell in cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                label = notebooks.nbgrader_meta(cell).get("grade_id") or cell.source[:40]
                found.append((label, out.ename, out.evalue))
    return found


def _defined_names(source: str) -> set[str]:
    """Names a cell defines at its top level (functions, classes, assignment and unpacking
    targets), also inside ``with``, ``for``, ``if`` and ``try`` blocks."""
    names: set[str] = set()
    python = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
    statements = list(ast.parse(python).body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.With, ast.For, ast.If, ast.Try)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements += getattr(node, field, [])
        elif isinstance(node, ast.ExceptHandler):
            statements += node.body
    return names


def _defined_by_students(lab: str) -> set[str]:
    """Names that the solution cells define (functions, classes, variables)."""
    names: set[str] = set()
    for path in lab_notebooks("source", lab):
        for cell in notebooks.read(path).cells:
            if cell.cell_type == "code" and notebooks.nbgrader_meta(cell).get("solution"):
                names |= _defined_names(notebooks.solution_text(cell.source))
    return names


def _all(kind: str) -> list[Path]:
    return [path for lab in LABS for path in lab_notebooks(kind, lab)]


@pytest.mark.parametrize("path", _all("source"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_solved_notebook_passes_every_test_and_says_so_in_one_line(path, tmp_path):
    """The source notebook (solutions, visible and hidden tests) runs top to bottom, and shows
    what a student who solved everything sees: under each test cell one line on stdout,
    "✓ Task N: visible checks passed", and nothing on stderr (no progress bar of a tested
    function, no warning), hidden tests included.

    ``solutions/`` is this notebook less its hidden tests and marking schemes
    (tests/test_build.py); that nothing there needs what they bind is
    :func:`test_no_cell_needs_what_only_hidden_tests_bind`, and that its every cell runs is the
    solution's ``--full`` grading in tests/test_grading.py, so one run checks both views."""
    cells = _execute(path, tmp_path)
    assert _errors(cells) == []
    graded = [c for c in cells if notebooks.nbgrader_meta(c).get("grade")
              and c.cell_type == "code"]
    assert graded and all(c.get("execution_count") is not None for c in graded), (
        "every test cell must have run")
    tests = [c for c in cells if c.cell_type == "code" and c.source.startswith('"""Task ')]
    assert tests and len(tests) == len(graded), "every test cell opens with its task's line"
    for cell in tests:
        task = re.match(r'"""Task (\d+):', cell.source).group(1)
        streams = [o for o in cell.get("outputs", []) if o.output_type == "stream"]
        assert [o.name for o in streams] == ["stdout"], (cell.source[:60], streams)
        line = streams[0].text.strip()
        assert re.fullmatch(rf"✓ Task {task}: visible checks passed( \(test cell \d+ of \d+\))?",
                            line), (cell.source[:60], line)
        assert [o.output_type for o in cell.outputs] == ["stream"], "nothing but the ✓ line"


@pytest.mark.parametrize("lab", LABS)
def test_no_cell_needs_what_only_hidden_tests_bind(lab):
    """The solutions and release views drop the hidden tests: no later cell may read a name
    that only a hidden test binds (it would run in the source notebook and fail in both)."""
    for path in lab_notebooks("source", lab):
        views = [(c.source, notebooks.solution_text(c.source))
                 for c in notebooks.read(path).cells if c.cell_type == "code"]
        bound: set[str] = set()  # by what the views keep, so far
        hidden: set[str] = set()  # by hidden tests only, so far
        for source, view in views:
            seen = names_of(view)
            needed = (seen.reads | seen.fn_reads) & (hidden - bound)
            assert not needed, f"{path.name}: a cell reads {sorted(needed)}, bound by hidden tests"
            bound |= seen.defines
            hidden |= names_of(source).defines - seen.defines


@pytest.mark.parametrize("path", _all("release"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_release_notebook_fails_only_where_students_work(path, tmp_path):
    cells = _execute(path, tmp_path)
    # A NameError is the student's unfinished work when the name comes from a solution cell, or
    # from a cell that itself failed because of one (``ig_attr = ig_attributions(...)``).
    student_names = _defined_by_students(path.parent.name) | {
        name for c in cells if c.cell_type == "code"
        and any(o.output_type == "error" for o in c.get("outputs", []))
        for name in _defined_names(c.source)}
    errors = _errors(cells)
    assert errors, "a blank release must not pass its tests"
    for label, ename, evalue in errors:
        if ename == "NameError":
            name = re.search(r"name '(\w+)' is not defined", evalue)
            assert name and name.group(1) in student_names, (label, evalue)
        else:
            assert ename == "NotImplementedError", (label, ename, evalue)
    tests = [c for c in cells if notebooks.nbgrader_meta(c).get("grade")
             and c.cell_type == "code"]
    assert tests and all(any(o.output_type == "error" for o in c.outputs) for c in tests), (
        "every test cell of a blank notebook must fail")
