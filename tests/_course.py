"""Helpers shared by the notebook, build and grading tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks, sandbox
from autograder._paths import REPO_ROOT

LAB1 = "lab1_interpretability"
LAB2 = "lab2_inside_convnets"
LAB3 = "lab3_trusting_explanations"
LABS = (LAB1, LAB2, LAB3)


def lab_notebooks(kind: str, lab: str = LAB1) -> list[Path]:
    """The notebooks of ``<kind>/<lab>`` (kind: source, release or solutions), sorted."""
    return sorted((REPO_ROOT / kind / lab).glob("*.ipynb"))


def graded_cells(lab: str = LAB1) -> list[tuple[str, nbformat.NotebookNode]]:
    """``(notebook name, cell)`` for every cell of the lab's source with nbgrader metadata."""
    out = []
    for path in lab_notebooks("source", lab):
        for cell in notebooks.read(path).cells:
            if notebooks.nbgrader_meta(cell):
                out.append((path.stem, cell))
    return out


FIXTURE_COURSE = Path(__file__).parent / "fixtures" / "course"
FIXTURE_LAB = "minilab"


def fixture_course(root: Path) -> Path:
    """``root`` made a built course of the two-task fixture lab (source/ and release/)."""
    from autograder.build import build
    shutil.copytree(FIXTURE_COURSE / "source", root / "source")
    build(FIXTURE_LAB, root=root)
    return root


def copy_course(dest: Path) -> Path:
    """A throwaway course root with this repository's source/, release/ and nbgrader config."""
    for name in ("source", "release", "solutions"):
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, dest / name)
    shutil.copyfile(REPO_ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    return dest


def require_sandbox() -> sandbox.Protection:
    """The sandbox in force; in CI its absence is a failure, elsewhere a skip."""
    found = sandbox.detect()
    if not found.active:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the sandbox, but: {found.detail}")
        pytest.skip(f"no sandbox on this machine: {found.detail}")
    return found


def require_dot() -> None:
    """Graphviz's ``dot`` (torchviz renders with it); in CI its absence is a failure."""
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render graphs, but Graphviz's `dot` is not installed")
        pytest.skip("Graphviz's `dot` is not installed (apt-get install graphviz)")


# --- running a task's test cells in this process, without the course's models ----------------

# The line every written question that rests on figures ends with (docs/design.md, "Conventions
# a student can rely on").
STANDIN_LINE = (
    "*If the notebook printed the stand-in weights notice, the figures are not a trained "
    "network's: answer from what you expect with the real weights (run `make fetch-weights` "
    "or see the notebook's introduction) and say so.*")


def grade_id(cell: nbformat.NotebookNode) -> str:
    return notebooks.nbgrader_meta(cell).get("grade_id", "")


def solution_source(path: Path, task: int) -> str:
    """The solution cell of ``task`` in the source notebook ``path``, as a student who solved
    it has it."""
    for cell in notebooks.read(path).cells:
        meta = notebooks.nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and \
                notebooks.task_of(meta["grade_id"]) == task:
            return notebooks.solution_text(cell.source)
    raise LookupError(task)


def mutated(source: str, old: str, new: str) -> str:
    """``source`` with its one occurrence of ``old`` replaced by ``new`` (a near miss)."""
    assert source.count(old) == 1, old
    return source.replace(old, new)


def wrong_answer(lab: str, name: str) -> str:
    """The shipped wrong answer ``autograder/samples/<lab>/wrong/<name>``."""
    return (REPO_ROOT / "autograder" / "samples" / lab / "wrong" / name).read_text("utf-8")


def setup_namespace(path: Path, *, functions: bool = False) -> dict:
    """The imports of the notebook's setup cells (and their functions, if asked), run in a new
    namespace: no model is loaded."""
    import ast

    from autograder.harness import python_source
    from autograder.nbgrader_ext import is_setup_cell

    kinds = (ast.Import, ast.ImportFrom) + ((ast.FunctionDef,) if functions else ())
    namespace: dict = {}
    for cell in notebooks.read(path).cells:
        if is_setup_cell(cell):
            tree = ast.parse(python_source(cell.source))
            kept = [n for n in tree.body if isinstance(n, kinds)]
            exec(compile(ast.Module(kept, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def task_test_cells(path: Path, task: int, *, avoiding: frozenset[str] | set[str] = frozenset()
                    ) -> list[tuple[str, str]]:
    """``(grade_id, source)`` of the task's test cells that read none of the names in
    ``avoiding`` (the course's models, built by setup cells these tests do not run)."""
    import ast

    from autograder.nbgrader_ext import is_test_cell

    out = []
    for cell in notebooks.read(path).cells:
        if is_test_cell(cell) and notebooks.task_of(grade_id(cell)) == task:
            tree = ast.parse(cell.source)
            loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                     and isinstance(n.ctx, ast.Load)}
            own = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}  # a test's own def
            if not (loads - own) & set(avoiding):
                out.append((grade_id(cell), cell.source))
    return out


def failing_cells(namespace: dict, cells: list[tuple[str, str]], *, part: str
                  ) -> dict[str, str]:
    """Run test ``cells`` (``part``: visible, hidden or both) in ``namespace``;
    ``{grade_id: error}`` for the cells that failed."""
    from autograder.harness import split_hidden

    failed = {}
    for cell_id, source in cells:
        visible, hidden = split_hidden(source)
        code = {"visible": visible, "hidden": visible + "\n" + hidden, "both": source}[part]
        try:
            exec(compile(code, cell_id, "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - any failure is the verdict
            failed[cell_id] = f"{type(error).__name__}: {error}"
    return failed
