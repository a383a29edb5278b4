"""``course export``: the final grades, automatic and by hand, from the gradebook.

``course grade`` writes what the machine decided (``grades.csv``); a person then marks the
written answers in the formgrader, which stores the points in the gradebook. This module reads
the gradebook and writes one row per student and lab to ``final_grades.csv``: each task's
points (its tests, any score a grader overrode, and its written answers), the automatic, manual
and total points, and what is still waiting for a person. It writes no other file: nbgrader's
own ``nbgrader export`` goes to ``nbgrader_grades.csv`` (see ``nbgrader_config.py``).
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from . import notebooks
from ._paths import CourseError, resolve_labs
from .safe_output import csv_cell, one_line

FINAL_CSV = "final_grades.csv"


@dataclass
class FinalGrade:
    """One student's final grade for one lab.

    ``tasks``: task number -> (points, maximum), tests and written answers together.
    ``pending``: the cells still waiting for a person, as ``grade_id (N points)``.
    """

    student: str
    lab: str
    tasks: dict[int, tuple[float, float]] = field(default_factory=dict)
    auto: float = 0.0
    manual: float = 0.0
    maximum: float = 0.0
    pending: list[str] = field(default_factory=list)
    submitted: bool = True

    @property
    def total(self) -> float:
        return self.auto + self.manual

    @property
    def status(self) -> str:
        if not self.submitted:
            return "no submission"
        return "pending" if self.pending else "final"


def _add(grade: FinalGrade, task: int | None, score: float, maximum: float) -> None:
    if task is None:
        return
    old_score, old_max = grade.tasks.get(task, (0.0, 0.0))
    grade.tasks[task] = (old_score + score, old_max + maximum)


def final_grades(db_url: str, labs: list[str]) -> list[FinalGrade]:
    """Every student of the gradebook, for each lab in ``labs``, sorted by lab then student.

    A cell's points are nbgrader's: a grader's score when one was given (it overrides the
    tests' score), else the tests'; extra credit counts. A cell graded by hand and not yet
    marked, or one nbgrader flags as needing a person, is pending and counts 0 so far.
    """
    out: list[FinalGrade] = []
    with Gradebook(db_url) as gb:
        students = sorted(s.id for s in gb.students)
        for lab in labs:
            try:
                assignment = gb.find_assignment(lab)
            except MissingEntry:
                continue  # never graded: nothing to export
            for student in students:
                out.append(_one(gb, assignment, lab, student))
    return out


def _one(gb: Gradebook, assignment, lab: str, student: str) -> FinalGrade:
    grade = FinalGrade(student=student, lab=lab)
    try:
        submission = gb.find_submission(lab, student)
    except MissingEntry:
        grade.submitted = False
        for nb in assignment.notebooks:
            for cell in nb.grade_cells:
                grade.maximum += cell.max_score
                _add(grade, notebooks.task_of(cell.name), 0.0, cell.max_score)
        return grade
    for nb in submission.notebooks:
        for cell in nb.grades:
            task = notebooks.task_of(cell.name)
            by_hand = cell.auto_score is None  # written answers: no test decides them
            points = float(cell.score or 0.0) + float(cell.extra_credit or 0.0)
            grade.maximum += cell.max_score
            if cell.manual_score is None and (by_hand or cell.needs_manual_grade):
                grade.pending.append(f"{nb.name}:{cell.name} ({cell.max_score:g} points)")
                points = 0.0 if by_hand else points
            if by_hand or cell.manual_score is not None:
                grade.manual += points
            else:
                grade.auto += points
            _add(grade, task, points, cell.max_score)
    return grade


def write_final_csv(grades: list[FinalGrade], path: Path) -> Path:
    """Write ``grades`` to ``path`` (replaced whole, atomically: a reader never sees half)."""
    tasks = sorted({t for g in grades for t in g.tasks})
    header = ["student", "lab", *[f"task{t}" for t in tasks], "auto", "manual", "total", "max",
              "status", "pending"]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for g in grades:
                row = [g.student, g.lab, *[_fmt(g.tasks[t][0]) if t in g.tasks else ""
                                           for t in tasks],
                       _fmt(g.auto), _fmt(g.manual), _fmt(g.total), _fmt(g.maximum), g.status,
                       "; ".join(g.pending)]
                writer.writerow([csv_cell(c) for c in row])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def format_final(grades: list[FinalGrade]) -> str:
    """A plain-text table: student, lab, total/max, status, how many cells are pending."""
    if not grades:
        return "(no grades in the gradebook)"
    rows = [["student", "lab", "auto", "manual", "total", "status"]]
    rows += [[one_line(g.student), g.lab, _fmt(g.auto), _fmt(g.manual),
              f"{_fmt(g.total)}/{_fmt(g.maximum)}",
              g.status + (f" ({len(g.pending)} to mark)" if g.pending else "")] for g in grades]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def export(lab: str | None, root: Path, db_url: str | None = None,
           out: Path | None = None) -> tuple[list[FinalGrade], Path]:
    """Read the gradebook of ``root`` and write the final grades; return them and the file."""
    from .grade import default_db_url

    db_path = root / "gradebook.db"
    if db_url is None and not db_path.is_file():
        raise CourseError(f"No gradebook at {db_path}: run `course grade` first.")
    grades = final_grades(db_url or default_db_url(root), resolve_labs(lab, root))
    return grades, write_final_csv(grades, out or root / FINAL_CSV)


def _fmt(x: float) -> str:
    return f"{x:g}"
