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
LABS = (LAB1, LAB2)


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
