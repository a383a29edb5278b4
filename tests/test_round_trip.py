"""The instructor's round trip on the fixture lab, end to end (issue: grades that mean something).

Grade (sandboxed, the course copied to a temporary folder with its own ``course_lib``, while
the installed one lives elsewhere), mark a written answer by hand through nbgrader's gradebook
as the formgrader does, grade again, make feedback by every path an instructor can take (``course
grade``, ``nbgrader generate_feedback``, the formgrader's button), export the final grades: the
manual points are there, no hidden test or marking scheme reaches a student, figures survive.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config.loader import PyFileConfigLoader

from autograder import notebooks
from autograder._paths import REPO_ROOT, tool_env
from autograder.build import build
from autograder.cli import main
from autograder.fast import SKIPPED_NOTE
from autograder.grade import default_db_url
from autograder.nbgrader_ext import is_grader_note
from autograder.samples import ALL, make_submission

from ._course import FIXTURE_COURSE, require_sandbox

pytestmark = pytest.mark.slow

LAB, NB = "minilab", "quiz.ipynb"
HIDDEN = 'add(-4, 10) should be 6'  # text of a hidden test of the fixture
SCHEME = "any correct reason"  # text of the fixture's marking scheme
# An instructor cell that needs the course copy's own course_lib, and one that shows a figure
# larger than the old 100 kB cap on a cell's output.
COPY_IMPORT = "import numpy as np\nfrom course_lib._course_copy import MARK"
FIGURE = """import io
import matplotlib.pyplot as plt
from IPython.display import Image, display
buffer = io.BytesIO()
plt.imsave(buffer, np.random.default_rng(0).random((240, 240, 3)), format="png")
display(Image(buffer.getvalue()))
print("figure", MARK)"""


def _course(root: Path, setup: str = COPY_IMPORT) -> Path:
    """A course folder with its own course_lib (a marker module added) and nbgrader config."""
    shutil.copytree(FIXTURE_COURSE / "source", root / "source")
    shutil.copytree(REPO_ROOT / "course_lib", root / "course_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "course_lib" / "_course_copy.py").write_text('MARK = "from the course copy"\n')
    shutil.copyfile(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    path = root / "source" / LAB / NB
    nb = notebooks.read(path)
    setup_cell = next(c for c in nb.cells
                      if notebooks.nbgrader_meta(c).get("grade_id") == "mini_code_02")
    setup_cell.source = setup
    figure = nbformat.v4.new_code_cell(FIGURE)
    figure.metadata["nbgrader"] = {"grade": False, "grade_id": "mini_figure", "locked": True,
                                   "schema_version": 3, "solution": False, "task": False}
    nb.cells.insert(nb.cells.index(setup_cell) + 1, figure)
    notebooks.write(nb, path)
    build(LAB, root=root)
    for student, solve in (("solution", ALL), ("half", ["task1_add"]), ("blank", [])):
        make_submission(LAB, root / "submitted" / student / LAB, solve=solve, root=root)
    return root


def _grade(root: Path, *options: str) -> subprocess.CompletedProcess:
    """``course grade`` as an instructor runs it: in the course folder, sandboxed."""
    return subprocess.run([sys.executable, "-m", "autograder.cli", "grade", LAB, "--jobs", "2",
                           "--cell-timeout", "60", *options], cwd=root, env=tool_env(),
                          text=True, capture_output=True, timeout=900)


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") == grade_id)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


def _html_of(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.html")))


def _no_secrets(text: str, where: str) -> None:
    assert HIDDEN not in text, f"a hidden test reached {where}"
    assert "BEGIN HIDDEN" not in text and "END HIDDEN" not in text, where
    assert SCHEME not in text, f"the marking scheme reached {where}"


def test_round_trip(tmp_path, monkeypatch):
    require_sandbox()
    assert not str(REPO_ROOT).startswith(str(tmp_path))  # the installed course_lib is elsewhere
    root = _course(tmp_path / "course")

    # 1. Grade, sandboxed, every cell run (--full: fast grading would not run the figure). The
    # kernel imports the copy's course_lib, as the grader does.
    proc = _grade(root, "--full")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(root / "grades.csv")
    assert (rows["solution"]["auto_score"], rows["half"]["auto_score"],
            rows["blank"]["auto_score"]) == ("5", "2", "0"), rows
    assert all(row["problem"] == "" for row in rows.values()), rows
    assert (rows["solution"]["manual_pending"], rows["solution"]["manual_score"]) == ("1", "0")
    graded = notebooks.read(root / "autograded" / "solution" / LAB / NB)
    figure = _cell(graded, "mini_figure")
    assert any("image/png" in o.get("data", {}) for o in figure.outputs), figure.outputs
    assert len(figure.outputs[0]["data"]["image/png"]) > 100_000  # over the old cap
    assert "from the course copy" in "".join(o.get("text", "") for o in figure.outputs)
    # The person marking sees the scheme right after the answer, in the graded copy only.
    answer = next(i for i, c in enumerate(graded.cells)
                  if notebooks.nbgrader_meta(c).get("grade_id") == "task2_answer")
    assert is_grader_note(graded.cells[answer + 1])
    assert SCHEME in graded.cells[answer + 1].source
    assert HIDDEN not in "".join(c.source for c in graded.cells)

    # 2. Mark the written answer by hand, as the formgrader's API handlers do.
    with Gradebook(default_db_url(root)) as gb:
        grade = gb.find_grade("task2_answer", "quiz", LAB, "solution")
        assert grade.needs_manual_grade
        grade.manual_score = 1.0
        comment = gb.find_comment("task2_answer", "quiz", LAB, "solution")
        comment.manual_comment = "Clear and correct."
        gb.db.commit()

    # 3. The student had run the figure cell: their submission carries its outputs. Grade again,
    # fast (the default): the mark stays, the answer is not re-opened for marking, and the
    # figure cell is not run but keeps the submitted figure, large as it is.
    submitted = root / "submitted" / "solution" / LAB / NB
    nb = notebooks.read(submitted)
    _cell(nb, "mini_figure").outputs = figure.outputs
    notebooks.write(nb, submitted)
    proc = _grade(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    regraded = _cell(notebooks.read(root / "autograded" / "solution" / LAB / NB), "mini_figure")
    assert regraded.outputs[0]["text"] == SKIPPED_NOTE, regraded.outputs
    assert regraded.outputs[1:] == figure.outputs
    rows = _rows(root / "grades.csv")
    assert (rows["solution"]["manual_score"], rows["solution"]["manual_pending"]) == ("1", "0")
    with Gradebook(default_db_url(root)) as gb:
        grade = gb.find_grade("task2_answer", "quiz", LAB, "solution")
        assert (grade.manual_score, grade.needs_manual_grade) == (1.0, False)
    grades_csv = hashlib.sha256((root / "grades.csv").read_bytes()).hexdigest()

    # 4. Feedback by every path: course grade's, nbgrader's command, the formgrader's button.
    feedback = root / "feedback" / "solution" / LAB
    text = _html_of(feedback)
    _no_secrets(text, "course grade's feedback")
    assert "Clear and correct." in text and "data:image/png;base64" in text
    shutil.rmtree(root / "feedback")
    subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "generate_feedback", LAB,
                    "--force"], cwd=root, env=tool_env(), check=True, capture_output=True,
                   timeout=300)
    for student in ("solution", "half", "blank"):
        _no_secrets(_html_of(root / "feedback" / student), f"nbgrader generate_feedback "
                                                           f"({student})")
    assert "Clear and correct." in _html_of(root / "feedback" / "solution")
    shutil.rmtree(root / "feedback")
    # The button: formgrader's handler calls NbGraderAPI.generate_feedback with the config the
    # formgrader loaded from the course folder's nbgrader_config.py.
    from nbgrader.apps.api import NbGraderAPI
    monkeypatch.chdir(root)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    api = NbGraderAPI(config=config)
    # The formgrader tells graded from ungraded by the submission's time: the collection time
    # course grade recorded, not a timestamp.txt (none here).
    assert api.get_autograded_students(LAB) == {"solution", "half", "blank"}
    result = api.generate_feedback(LAB, "half", force=True)
    assert result["success"], result.get("log")
    text = _html_of(root / "feedback" / "half")
    _no_secrets(text, "the formgrader's Generate Feedback")
    assert "(the test's code is not shown)" in text

    # 5. Final grades: tests and hand marks per task; nothing else is overwritten.
    assert main(["export", "--course", str(root)]) == 0
    final = _rows(root / "final_grades.csv")
    assert (final["solution"]["task1"], final["solution"]["task2"], final["solution"]["manual"],
            final["solution"]["total"], final["solution"]["max"],
            final["solution"]["status"]) == ("2", "4", "1", "6", "6", "final")
    assert (final["half"]["total"], final["blank"]["total"]) == ("2", "0")
    subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "export"], cwd=root,
                   env=tool_env(), check=True, capture_output=True, timeout=300)
    assert (root / "nbgrader_grades.csv").is_file()
    assert hashlib.sha256((root / "grades.csv").read_bytes()).hexdigest() == grades_csv
    assert _rows(root / "final_grades.csv") == final

    # 6. nbgrader's own autograde (the formgrader's button calls the same API) refuses before
    # it touches anything: it would run the hidden tests in the student's kernel.
    graded_copy = root / "autograded" / "solution" / LAB / NB
    before = graded_copy.read_bytes()
    proc = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde", LAB,
                           "--force"], cwd=root, env=tool_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "course grade <lab>" in proc.stdout + proc.stderr
    result = api.autograde(LAB, "half", force=True, create=True)
    assert not result["success"] and "course grade <lab>" in result["log"]
    assert graded_copy.read_bytes() == before
    with Gradebook(default_db_url(root)) as gb:
        assert gb.find_grade("task2_answer", "quiz", LAB, "solution").manual_score == 1.0


def test_a_failing_instructor_cell_is_reported_not_a_low_grade(tmp_path):
    require_sandbox()
    root = _course(tmp_path / "course", setup="import numpy as np\nimport course_lib.nowhere")
    shutil.rmtree(root / "submitted" / "half")
    error = "ModuleNotFoundError: No module named 'course_lib.nowhere'"
    # Every cell run: the cell fails for both students.
    proc = _grade(root, "--full")
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert f"instructor cell 1 of quiz.ipynb (minilab) failed for 2 of 2 students: {error}" \
        in proc.stderr
    for row in _rows(root / "grades.csv").values():
        assert "quiz.ipynb: instructor cell 1 failed (ModuleNotFoundError" in row["problem"]
        assert "the course's fault" in row["problem"]
    # Fast grading runs the cell only where the student's code reads its `np` (the solution,
    # not the blank copy): it is still reported, for the student it ran for, and the run fails.
    proc = _grade(root)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert (f"instructor cell 1 of quiz.ipynb (minilab) failed for 1 of 2 students (not run "
            f"for 1: fast grading runs it only where a student's code needs it): {error}") \
        in proc.stderr
    rows = _rows(root / "grades.csv")
    assert "quiz.ipynb: instructor cell 1 failed (Module" in rows["solution"]["problem"]
    assert rows["blank"]["problem"] == ""


@pytest.mark.parametrize("cwd_is_course", [True, False])
def test_course_option_anywhere_and_the_current_folder(tmp_path, monkeypatch, capsys,
                                                       cwd_is_course):
    root = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE / "source", root / "source")
    if cwd_is_course:
        monkeypatch.chdir(root)
        assert main(["build", LAB]) == 0
    else:
        monkeypatch.chdir(tmp_path)
        assert main(["build", LAB, "--course", str(root)]) == 0
    assert (root / "release" / LAB / NB).is_file()
    assert main(["build", "--check", "--course", str(root)]) == 0


def test_export_without_a_gradebook_says_what_to_do(tmp_path, capsys):
    shutil.copytree(FIXTURE_COURSE / "source", tmp_path / "source")
    assert main(["export", "--course", str(tmp_path)]) == 2
    assert "run `course grade` first" in capsys.readouterr().err
