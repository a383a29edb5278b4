"""``course grade``: autograde every submission of a lab with nbgrader, then report per task.

Each submission is graded by its own ``nbgrader autograde`` process, so one that crashes or
hangs its kernel costs only its own grade. Scores come from the gradebook, grouped by task (the
number in each grade cell's ``grade_id``), and are written to ``grades.csv``.
"""

from __future__ import annotations

import csv
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from . import notebooks
from ._paths import (
    REPO_ROOT,
    SUBMITTED_DIR,
    CourseError,
    nbgrader_cmd,
    resolve_labs,
    tool_env,
)
from .build import generate_release

DEFAULT_SUBMISSION_TIMEOUT = 1800  # seconds for one student's whole lab
DEFAULT_CELL_TIMEOUT = 180  # seconds per cell (nbgrader's own default, 30 s, fails busy machines)
# Settings grading depends on, passed on every autograde command line so that a course folder
# without our nbgrader_config.py grades the same (the config file mirrors them for plain nbgrader;
# tests/test_autograder_units.py keeps the two in step).
IGNORED_STDERR = r"[\s\S]*"  # stderr (warnings, progress bars) never decides a grade


def grading_flags(cell_timeout: int = DEFAULT_CELL_TIMEOUT) -> list[str]:
    """nbgrader command-line settings for autograding."""
    return [
        "--IgnorePattern.enabled=True", f"--IgnorePattern.pattern={IGNORED_STDERR}",
        f"--Execute.timeout={cell_timeout}", "--Execute.interrupt_on_timeout=True",
    ]


@dataclass
class StudentResult:
    """One student's grade for one lab.

    ``tasks`` maps task number -> (automatic score, automatic maximum); ``manual`` is the
    maximum of the manually graded cells still to be marked by a person.
    """

    student: str
    lab: str
    tasks: dict[int, tuple[float, float]] = field(default_factory=dict)
    manual: float = 0.0
    problem: str = ""

    @property
    def auto_score(self) -> float:
        return sum(s for s, _ in self.tasks.values())

    @property
    def auto_max(self) -> float:
        return sum(m for _, m in self.tasks.values())


def default_db_url(root: Path) -> str:
    return f"sqlite:///{root / 'gradebook.db'}"


def find_students(lab: str, root: Path) -> list[str]:
    """Students with a folder ``submitted/<student>/<lab>``, sorted."""
    submitted = root / SUBMITTED_DIR
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if (p / lab).is_dir())


def autograde_one(lab: str, student: str, root: Path, db_url: str,
                  timeout: float = DEFAULT_SUBMISSION_TIMEOUT) -> str:
    """Run ``nbgrader autograde`` for one student; return "" or a one-line problem description."""
    cmd = nbgrader_cmd() + [
        "autograde", lab, f"--student={student}", "--create", "--force",
        f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url={db_url}",
        *grading_flags(),
    ]
    try:
        proc = subprocess.run(cmd, cwd=root, env=tool_env(), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"grading took longer than {timeout:.0f} s and was stopped"
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ERROR" in ln]
        return (lines[-1] if lines else f"nbgrader exited with {proc.returncode}").strip()
    return ""


def collect_scores(lab: str, student: str, db_url: str) -> StudentResult:
    """Read one student's per-task scores for ``lab`` from the gradebook."""
    result = StudentResult(student=student, lab=lab)
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            result.problem = "no graded submission in the gradebook"
            return result
        for nb in submission.notebooks:
            for grade in nb.grades:
                task = notebooks.task_of(grade.name)
                if grade.cell_type == "markdown" or task is None:
                    result.manual += grade.max_score
                    continue
                score, max_score = result.tasks.get(task, (0.0, 0.0))
                result.tasks[task] = (score + (grade.auto_score or 0.0),
                                      max_score + grade.max_score)
    return result


def write_csv(results: list[StudentResult], path: Path) -> Path:
    """One row per student and lab: each task's points, the automatic total and its maximum."""
    tasks = sorted({t for r in results for t in r.tasks})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "lab", *[f"task{t}" for t in tasks], "auto_score",
                         "auto_max", "manual_pending", "problem"])
        for r in results:
            writer.writerow([r.student, r.lab,
                             *[_fmt(r.tasks[t][0]) if t in r.tasks else "" for t in tasks],
                             _fmt(r.auto_score), _fmt(r.auto_max), _fmt(r.manual), r.problem])
    return path


def _fmt(x: float) -> str:
    return f"{x:g}"


def format_table(results: list[StudentResult]) -> str:
    """A plain-text table: student x task, the automatic total, and any problem."""
    if not results:
        return "(no submissions)"
    tasks = sorted({t for r in results for t in r.tasks})
    maxima = {t: max(r.tasks[t][1] for r in results if t in r.tasks) for t in tasks}
    header = ["student", "lab", *[f"T{t}/{_fmt(maxima[t])}" for t in tasks], "auto", "problem"]
    rows = [[r.student, r.lab,
             *[_fmt(r.tasks[t][0]) if t in r.tasks else "-" for t in tasks],
             f"{_fmt(r.auto_score)}/{_fmt(r.auto_max)}", r.problem] for r in results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def grade(lab: str | None = None, root: Path = REPO_ROOT, db_url: str | None = None,
          students: list[str] | None = None,
          timeout: float = DEFAULT_SUBMISSION_TIMEOUT) -> list[StudentResult]:
    """Autograde the submissions under ``<root>/submitted`` and return per-task results.

    Args:
        lab: one lab, or None for every lab in ``source/``.
        root: the course root (``source/``, ``submitted/``, the gradebook).
        db_url: SQLAlchemy URL of the gradebook; ``<root>/gradebook.db`` by default.
        students: restrict to these students (default: everyone who submitted).
        timeout: seconds one student's lab may take before it is stopped.
    """
    root = root.resolve()
    db_url = db_url or default_db_url(root)
    results: list[StudentResult] = []
    for name in resolve_labs(lab, root):
        who = students if students is not None else find_students(name, root)
        if not who:
            continue
        # The gradebook must hold the source cells (points, checksums) before autograding.
        with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
            generate_release(name, root, Path(tmp), db_url=db_url)
        for student in who:
            problem = autograde_one(name, student, root, db_url, timeout)
            result = collect_scores(name, student, db_url)
            result.problem = problem or result.problem
            results.append(result)
    if not results:
        raise CourseError(f"No submissions found under {root / SUBMITTED_DIR}/<student>/<lab>/.")
    return results
