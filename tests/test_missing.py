"""``course grade --missing`` after an interrupted batch: only the submissions whose grading did
not finish are graded again, and ``grades.csv`` still lists the whole class.

nbgrader adds a submission's gradebook row when its grading starts, so a row alone does not say
that a grading finished: the grader writes a mark once a worker has reported
(``autograder/grade.py``, :func:`~autograder.grade.mark_graded`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.cli import main
from autograder.grade import GradeOptions, _mark, default_db_url, grade, graded_students
from autograder.samples import make_submission

from ._course import fixture_course

pytestmark = pytest.mark.slow
LAB = "minilab"
STUDENTS = ("solution", "blank", "wrong")
OPTIONS = GradeOptions(jobs=2, cell_timeout=20, notebook_timeout=300,
                       sandbox=sandbox.detect().active)


def _class(root: Path) -> Path:
    sub = root / "submitted"
    make_submission(LAB, sub / "solution" / LAB, root=root)
    make_submission(LAB, sub / "blank" / LAB, solve=[], root=root)
    make_submission(LAB, sub / "wrong" / LAB, root=root, overrides={
        "task2_mean": "def mean(values):\n    return float(values[0])"})
    return root


def _csv(root: Path) -> dict[str, tuple[str, str]]:
    with (root / "grades.csv").open(encoding="utf-8") as fh:
        return {row["student"]: (row["auto_score"], row["problem"]) for row in csv.DictReader(fh)}


def _grade_cli(root: Path, *more: str) -> int:
    return main(["--course", str(root), "grade", LAB, "--jobs", "2",
                 *([] if OPTIONS.sandbox else ["--no-sandbox"]), *more])


def test_missing_grades_what_did_not_finish_and_the_table_keeps_everyone(tmp_path, capsys):
    root = _class(fixture_course(tmp_path / "course"))
    assert _grade_cli(root) == 0
    first = _csv(root)
    assert {s: score for s, (score, _) in first.items()} == {
        "solution": "5", "blank": "0", "wrong": "2"}
    assert graded_students(LAB, default_db_url(root), root) == set(STUDENTS)

    # A grading killed halfway: its gradebook row is there, its mark is not.
    _mark(root, LAB, "blank").unlink()
    assert graded_students(LAB, default_db_url(root), root) == {"solution", "wrong"}
    kept = {s: _mark(root, LAB, s).stat().st_mtime_ns for s in ("solution", "wrong")}
    capsys.readouterr()
    assert _grade_cli(root, "--missing") == 0
    assert "1/1" in capsys.readouterr().err  # the progress bar counted one submission
    assert _csv(root) == first  # everyone, the same grades
    assert {s: _mark(root, LAB, s).stat().st_mtime_ns for s in kept} == kept  # not regraded
    assert _mark(root, LAB, "blank").is_file()


def test_a_grading_that_never_reported_is_missing(tmp_path):
    root = _class(fixture_course(tmp_path / "course"))
    # A batch stopped before any worker could finish (its time limit: the worker is killed).
    results = grade(LAB, root=root, options=OPTIONS.replace(notebook_timeout=1))
    assert all("longer than 1 s" in r.problem for r in results), [r.problem for r in results]
    assert graded_students(LAB, default_db_url(root), root) == set()
    again = {r.student: r for r in grade(LAB, root=root, options=OPTIONS, missing=True)}
    assert {s: r.auto_score for s, r in again.items()} == {
        "solution": 5.0, "blank": 0.0, "wrong": 2.0}
    assert graded_students(LAB, default_db_url(root), root) == set(STUDENTS)
