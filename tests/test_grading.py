"""Autograding Lab 1 with real nbgrader into a real SQLite gradebook.

A throwaway course folder receives sample submissions made from the lab's own notebooks: the
solution, the untouched release, and copies with known-wrong answers
(``autograder/samples/<lab>/wrong``). The wrong answers are grouped so that each submission
breaks one task per notebook: each must lose exactly the points of its broken tasks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from autograder import notebooks
from autograder.grade import GradeOptions, format_table, grade, write_csv
from autograder.samples import ALL, make_submission, wrong_answers

from ._course import LAB1, copy_course, graded_cells

pytestmark = pytest.mark.slow

WRONG_GROUPS = {
    "wrong_a": ("task1_model", "task5_visualize_filter", "task6_ig"),
    "wrong_b": ("task2_transform", "task7_visualize"),
    "wrong_c": ("task3_inference", "task8_noise_tunnel"),
    "wrong_d": ("task4_graph", "task9_compare"),
}


def _task_points(cell_type: str = "code") -> dict[int, float]:
    """Points per task of the lab's test cells (or, with "markdown", of its written answers)."""
    points: dict[int, float] = {}
    for _, cell in graded_cells(LAB1):
        meta = notebooks.nbgrader_meta(cell)
        if meta.get("grade") and cell.cell_type == cell_type:
            task = notebooks.task_of(meta["grade_id"])
            points[task] = points.get(task, 0.0) + meta["points"]
    return points


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = copy_course(tmp_path_factory.mktemp("course"))
    wrong = wrong_answers(LAB1)
    plans = {
        "solution": {"solve": ALL},
        "blank": {"solve": []},
        **{name: {"solve": ALL, "overrides": {g: wrong[g] for g in ids}}
           for name, ids in WRONG_GROUPS.items()},
    }
    for student, plan in plans.items():
        make_submission(LAB1, root / "submitted" / student / LAB1, **plan)
    before = _digest(root / "submitted")
    results = {r.student: r for r in grade(LAB1, root=root, options=GradeOptions(jobs=2))}
    return root, results, before


def test_every_wrong_answer_is_used():
    used = {g for ids in WRONG_GROUPS.values() for g in ids}
    assert used == set(wrong_answers(LAB1)), "each shipped wrong answer should be graded"
    tasks = [notebooks.task_of(g) for g in used]
    assert sorted(tasks) == sorted(_task_points()), "one wrong answer per task"


def test_solution_scores_full_marks(graded):
    _, results, _ = graded
    solution = results["solution"]
    assert solution.problem == ""
    assert {t: s for t, (s, _) in solution.tasks.items()} == _task_points()
    assert solution.auto_score == solution.auto_max == sum(_task_points().values())
    assert solution.manual == sum(_task_points("markdown").values()) == 14  # for a person


def test_blank_release_scores_zero(graded):
    _, results, _ = graded
    blank = results["blank"]
    assert blank.auto_max == sum(_task_points().values())
    assert {t: s for t, (s, _) in blank.tasks.items()} == dict.fromkeys(_task_points(), 0.0)


@pytest.mark.parametrize("student", sorted(WRONG_GROUPS))
def test_each_wrong_answer_loses_exactly_its_task(graded, student):
    _, results, _ = graded
    points = _task_points()
    broken = {notebooks.task_of(g) for g in WRONG_GROUPS[student]}
    expected = {t: (0.0 if t in broken else p) for t, p in points.items()}
    assert {t: s for t, (s, _) in results[student].tasks.items()} == expected


def test_submissions_are_never_modified(graded):
    root, _, before = graded
    assert _digest(root / "submitted") == before


def test_gradebook_csv_and_table(graded, tmp_path):
    root, results, _ = graded
    assert (root / "gradebook.db").stat().st_size > 0
    csv_text = write_csv(list(results.values()), tmp_path / "grades.csv").read_text()
    assert csv_text.splitlines()[0].startswith("student,lab,task1,task2")
    assert any(line.startswith("solution,lab1_interpretability,5,5,10,5,15,10,5,10,15,80,80,14")
               for line in csv_text.splitlines()), csv_text
    table = format_table(list(results.values()))
    assert "T6/10" in table and "blank" in table and "0/80" in table
