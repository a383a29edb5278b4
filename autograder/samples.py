"""Sample submissions, made from the lab's own notebooks so they never drift from ``source/``.

A submission starts as the student copy (``release/``); each solution cell is then left blank,
filled with the source solution, or replaced by a known-wrong answer kept in
``samples/<lab>/wrong/<grade_id>.py`` or, for a further one of the same cell,
``samples/<lab>/wrong/<grade_id>--<mistake>.py`` (its first line says what is wrong with it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import notebooks
from ._paths import RELEASE_DIR, REPO_ROOT, SAMPLES_DIR, SOURCE_DIR, CourseError

ALL = "all"
# The wrong answers the demo's "dave" hands in, one per notebook, per lab.
DEMO_MISTAKES = {
    "lab1_interpretability": ("task3_inference", "task8_noise_tunnel"),
    "lab2_inside_convnets": ("task3_gradcam", "task6_saliency"),
    "lab3_trusting_explanations": ("task2_deletion_insertion", "task5_fooling"),
}


def solution_cells(lab: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """``grade_id -> solved cell text`` for every solution cell of the lab's source notebooks."""
    cells: dict[str, str] = {}
    for path in sorted((root / SOURCE_DIR / lab).glob("*.ipynb")):
        for cell in notebooks.read(path).cells:
            meta = notebooks.nbgrader_meta(cell)
            if meta.get("solution"):
                cells[meta["grade_id"]] = notebooks.solution_text(cell.source)
    return cells


def wrong_answers(lab: str) -> dict[str, str]:
    """``name -> wrong cell text`` shipped in ``samples/<lab>/wrong/`` (name: the file's stem).

    The name is the answer cell's ``grade_id``, or ``<grade_id>--<mistake>`` when a cell has
    several: :func:`grade_id_of` gives the cell back.
    """
    folder = SAMPLES_DIR / lab / "wrong"
    return {p.stem: p.read_text(encoding="utf-8").rstrip("\n") for p in sorted(folder.glob("*.py"))}


def grade_id_of(name: str) -> str:
    """The answer cell a wrong answer named ``<grade_id>[--<mistake>]`` replaces."""
    return name.split("--", 1)[0]


def wrong_overrides(lab: str, names: Iterable[str]) -> dict[str, str]:
    """``grade_id -> text`` of the named wrong answers, for :func:`make_submission`."""
    wrong = wrong_answers(lab)
    overrides: dict[str, str] = {}
    for name in names:
        grade_id = grade_id_of(name)
        if grade_id in overrides:
            raise CourseError(f"{name} and another wrong answer both replace {grade_id}")
        overrides[grade_id] = wrong[name]
    return overrides


def make_submission(lab: str, dest: Path, solve: Iterable[str] | str = ALL,
                    overrides: Mapping[str, str] | None = None,
                    root: Path = REPO_ROOT) -> Path:
    """Write a student's submission of ``lab`` into ``dest`` (the ``<student>/<lab>`` folder).

    Args:
        lab: the lab name.
        dest: folder to create; it receives every notebook of ``release/<lab>``.
        solve: the solution cells' ``grade_id``s to fill with the source solution, or ``"all"``.
        overrides: ``grade_id -> cell text`` written instead (wins over ``solve``).
        root: the course root holding ``source/`` and ``release/``.
    Returns:
        ``dest``.
    """
    release = root / RELEASE_DIR / lab
    if not release.is_dir():
        raise CourseError(f"{release} is missing: run `course build` first.")
    solved = solution_cells(lab, root)
    overrides = dict(overrides or {})
    wanted = set(solved) if solve == ALL else set(solve)
    unknown = (wanted | set(overrides)) - set(solved)
    if unknown:
        raise CourseError(f"Unknown solution cells {sorted(unknown)}; known: {sorted(solved)}")
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(release.iterdir()):
        if path.suffix != ".ipynb":
            if path.is_file():
                shutil.copyfile(path, dest / path.name)
            continue
        nb = notebooks.read(path)
        for cell in nb.cells:
            grade_id = notebooks.nbgrader_meta(cell).get("grade_id", "")
            if grade_id in overrides:
                cell.source = overrides[grade_id]
            elif grade_id in wanted:
                cell.source = solved[grade_id]
        notebooks.write(nb, dest / path.name)
    return dest


def demo_students(lab: str) -> dict[str, dict]:
    """The demo's class: keyword arguments of :func:`make_submission` per student.

    alice hands in the solution, bob the untouched release, carol solved the first half, dave
    made two classic mistakes (``DEMO_MISTAKES``, answers from ``samples/<lab>/wrong``), and
    erin's first task crashes the kernel of its notebook (``os._exit``): the grader restarts the
    kernel, runs the cells before it again and goes on, so only what needs that answer fails.
    """
    code_cells = sorted(g for g in solution_cells(lab) if notebooks.task_of(g) is not None
                        and not g.endswith("_answer"))
    return {
        "alice": {"solve": ALL},
        "bob": {"solve": []},
        "carol": {"solve": code_cells[: len(code_cells) // 2]},
        "dave": {"solve": ALL, "overrides": wrong_overrides(lab, DEMO_MISTAKES.get(lab, ()))},
        "erin": {"solve": ALL, "overrides": {code_cells[0]: "import os\nos._exit(1)"}},
    }
