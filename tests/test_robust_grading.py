"""Batch grading survives bad submissions (issue: the autograder).

A two-task fixture lab (``tests/fixtures/course``, runs in a second) receives one submission per
failure mode; all are graded in one batch, two at a time, and each must get exactly its
expected score while every other student is unaffected. Kernels run in the sandbox wherever the
machine has one (always in CI: tests/test_sandbox.py fails there without it), so timeouts,
kernel deaths and the memory cap are checked through bubblewrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks, sandbox
from autograder.grade import GradeOptions, collect_scores, default_db_url, grade
from autograder.samples import ALL, make_submission

from ._course import FIXTURE_COURSE, fixture_course

pytestmark = pytest.mark.slow

LAB = "minilab"
NB = "quiz.ipynb"
OPTIONS = GradeOptions(jobs=2, cell_timeout=10, notebook_timeout=300, memory_mb=2048,
                       sandbox=sandbox.detect().active)


def _edit(folder: Path, change) -> None:
    """Apply ``change(cells)`` to the submission's notebook."""
    nb = notebooks.read(folder / NB)
    change(nb.cells)
    notebooks.write(nb, folder / NB)


def _cell(cells, grade_id):
    return next(c for c in cells if notebooks.nbgrader_meta(c).get("grade_id") == grade_id)


def _set(grade_id, source):
    return lambda cells: _cell(cells, grade_id).__setitem__("source", source)


ADD = "def add(a, b):\n    return a + b"
MEAN = "def mean(values):\n    return float(np.mean(values))"


def _build_class(root: Path) -> dict[str, tuple[float, float]]:
    """Write the submissions; return student -> expected (task 1, task 2) points."""
    sub = root / "submitted"

    def make(student, solve=ALL, overrides=None):
        return make_submission(LAB, sub / student / LAB, solve=solve, overrides=overrides,
                               root=root)

    make("solution")
    make("blank", solve=[])
    make("partial", solve=["task1_add"])
    # loops in its own cell (stopped at the cell's time limit) and in the test's call
    make("endless_loop", overrides={"task2_mean": "def mean(values):\n    while True:\n"
                                                  "        pass\nmean([1])"})
    make("memory_hog", overrides={"task2_mean": "hog = bytearray(6 * 2**30)\n" + MEAN})
    make("exits", overrides={"task2_mean": "import os\nos._exit(1)"})
    make("segfault", overrides={"task2_mean": "import ctypes\nctypes.string_at(0)"})
    # the kernel dies during Task 1's test (a call into the notebook): Task 2 still grades
    make("dies_in_test", overrides={"task1_add": "def add(a, b):\n    import os\n"
                                                 "    os._exit(1)"})
    # right on the visible test's [1, 2, 3] only; the student also weakened the test cell
    _edit(make("weakened_test", overrides={"task2_mean": "def mean(values):\n"
                                                         "    return float(values[1])"}),
          _set("test_task2_mean", '"""Task 2: mean of a list."""\nassert True'))
    _edit(make("deleted_test"), lambda cells: cells.remove(_cell(cells, "test_task1_add")))
    _edit(make("deleted_test_blank", solve=["task1_add"]),
          lambda cells: cells.remove(_cell(cells, "test_task2_mean")))

    def duplicate_and_retype(cells):
        first = _cell(cells, "task1_add")
        copy = nbformat.from_dict(dict(first))
        copy["id"] = "copied-cell"  # Jupyter gives a copied cell an id of its own
        cells.insert(cells.index(first) + 1, copy)
        _cell(cells, "task2_mean")["cell_type"] = "markdown"
        _cell(cells, "task2_mean").pop("outputs", None)
        _cell(cells, "task2_mean").pop("execution_count", None)

    _edit(make("duplicated_cell"), duplicate_and_retype)
    (make("corrupt_json") / NB).write_text('{"cells": [ this is not json')
    (sub / "empty_folder" / LAB).mkdir(parents=True)
    shutil.copyfile(make("extra_notebook") / NB, sub / "extra_notebook" / LAB / "notes.ipynb")
    make("renamed_notebook")
    (sub / "renamed_notebook" / LAB / NB).rename(sub / "renamed_notebook" / LAB / "quiz (1).ipynb")
    make("noisy_stderr", overrides={
        "task1_add": "import sys, warnings\ndef add(a, b):\n    warnings.warn('noise', "
                     "UserWarning)\n    print('debug', file=sys.stderr)\n    return a + b"})
    make("huge_print", overrides={"task1_add": "print('x' * 10_000_000)\n" + ADD})
    make("random_state", overrides={"task1_add": "print('draw', np.random.rand())\n" + ADD})
    make("patches_abs", overrides={"task2_mean": "import builtins\nbuiltins.abs = lambda x: 0\n"
                                                 "def mean(values):\n    return float(values[1])"})
    make("hides_errors", overrides={
        "task1_add": "get_ipython().showtraceback = lambda *a, **k: None\n"
                     "def add(a, b):\n    return a - b"})
    return {
        "solution": (2, 3), "blank": (0, 0), "partial": (2, 0), "endless_loop": (2, 0),
        "memory_hog": (2, 0), "exits": (2, 0), "segfault": (2, 0), "dies_in_test": (0, 3),
        "weakened_test": (2, 0),
        "deleted_test": (2, 3), "deleted_test_blank": (2, 0), "duplicated_cell": (2, 3),
        "corrupt_json": (0, 0), "empty_folder": (0, 0), "extra_notebook": (2, 3),
        "renamed_notebook": (0, 0), "noisy_stderr": (2, 3), "huge_print": (2, 3),
        "random_state": (2, 3), "patches_abs": (2, 0), "hides_errors": (0, 3),
    }


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    fixture_course(root)
    expected = _build_class(root)
    before = _digest(root / "submitted")
    results = {r.student: r for r in grade(LAB, root=root, options=OPTIONS)}
    return root, expected, results, before


def test_every_submission_gets_exactly_its_expected_score(batch):
    _, expected, results, _ = batch
    got = {s: (r.tasks[1][0], r.tasks[2][0]) for s, r in results.items()}
    assert got == {s: (float(a), float(b)) for s, (a, b) in expected.items()}
    assert all(r.auto_max == 5 and r.manual == 1 for r in results.values())


@pytest.mark.parametrize(("student", "words"), [
    ("endless_loop", "timed out"), ("memory_hog", "out of memory"), ("exits", "kernel died"),
    ("segfault", "kernel died"), ("dies_in_test", "kernel died"),
    ("corrupt_json", "not a readable notebook"),
    ("empty_folder", "no notebooks submitted"), ("extra_notebook", "notes.ipynb: not part"),
    ("renamed_notebook", "quiz.ipynb: missing"), ("duplicated_cell", "appears twice"),
    ("duplicated_cell", "restored to code"), ("deleted_test", "test_task1_add was deleted"),
    ("patches_abs", "FLAGGED FOR REVIEW, uses the builtins"),
    ("hides_errors", "FLAGGED FOR REVIEW, uses the IPython shell, the shell's traceback"),
])
def test_problems_are_named_per_student(batch, student, words):
    _, _, results, _ = batch
    assert words in results[student].problem


def test_a_cell_stopped_at_its_time_limit_says_so_in_one_line(batch):
    root, _, _, _ = batch
    nb = notebooks.read(root / "autograded" / "endless_loop" / LAB / NB)
    answer = next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") ==
                  "task2_mean")
    errors = [o for o in answer.outputs if o.get("output_type") == "error"]
    assert [e["ename"] for e in errors] == ["CellTimeoutError"], answer.outputs
    assert "ran past its time limit (10 s)" in errors[0]["evalue"]
    assert "KeyboardInterrupt" not in str(answer.outputs)


def test_clean_submissions_report_no_problem(batch):
    _, _, results, _ = batch
    for student in ("solution", "blank", "partial", "noisy_stderr", "random_state"):
        assert results[student].problem == "", student


def test_submitted_files_are_never_modified(batch):
    root, _, _, before = batch
    assert _digest(root / "submitted") == before


def test_output_is_capped_in_bytes(batch):
    root, _, _, _ = batch
    graded = root / "autograded" / "huge_print" / LAB / NB
    assert graded.stat().st_size < 1_000_000
    assert "output truncated" in graded.read_text()
    assert (root / "feedback" / "huge_print" / LAB / "quiz.html").stat().st_size < 1_000_000


def test_feedback_for_everyone_and_without_hidden_test_code(batch):
    root, expected, _, _ = batch
    for student in expected:
        html = (root / "feedback" / student / LAB / "quiz.html")
        assert html.is_file(), student
    text = (root / "feedback" / "weakened_test" / LAB / "quiz.html").read_text()
    assert "test_task2_mean" in text and "mean([0.5, 1.5, 4.0]) should be 2.0" in text
    assert "assert abs(mean([0.5, 1.5, 4.0])" not in text  # the hidden test's code
    assert "assert True" not in text  # the student's edit was replaced


def test_grading_again_gives_the_same_grades_and_outputs(batch):
    root, _, results, _ = batch
    db = default_db_url(root)
    first = (root / "autograded" / "random_state" / LAB / NB).read_text()
    again = grade(LAB, root=root, students=["random_state", "partial"], options=OPTIONS)
    assert {r.student: r.tasks for r in again} == {
        s: results[s].tasks for s in ("random_state", "partial")}
    assert collect_scores(LAB, "solution", db).tasks == results["solution"].tasks

    def draws(text):
        nb = json.loads(text)
        return [o["text"] for c in nb["cells"] if c["cell_type"] == "code"
                for o in c.get("outputs", []) if "draw" in str(o.get("text", ""))]

    assert draws(first) and draws(first) == draws(
        (root / "autograded" / "random_state" / LAB / NB).read_text())


def test_interrupted_run_keeps_recorded_grades_and_can_finish(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from nbgrader.api import Gradebook, MissingEntry

    root = tmp_path / "course"
    fixture_course(root)
    students = [f"s{i}" for i in range(4)]
    for student in students:
        make_submission(LAB, root / "submitted" / student / LAB, root=root)
    db = default_db_url(root)
    cmd = [sys.executable, "-m", "autograder.cli", "--course", str(root), "grade", LAB]
    if not OPTIONS.sandbox:  # a machine without bubblewrap (CI has it: test_sandbox requires it)
        cmd.append("--no-sandbox")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def graded() -> list[str]:
        # Only once the grader has made every table: nbgrader's Gradebook creates missing ones,
        # and doing so beside the grader's own creation fails one of them ("table assignment
        # already exists"). The check reads the file without writing it.
        import sqlite3

        from nbgrader.api import Base

        path = root / "gradebook.db"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db_file:
            tables = {name for (name,) in db_file.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not set(Base.metadata.tables) <= tables:
            return []
        done = []
        with Gradebook(db) as gb:
            for student in students:
                try:
                    if gb.find_submission(LAB, student).score == 5:
                        done.append(student)
                except MissingEntry:
                    pass
        return done

    deadline = time.monotonic() + 240
    while not graded() and time.monotonic() < deadline:
        time.sleep(0.5)
    first = graded()
    assert first, "nothing was graded in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "run the same command again" in err
    assert set(first) <= set(graded()), "a recorded grade was lost"
    assert len(graded()) < len(students), "the run should have stopped early"

    results = grade(LAB, root=root, options=OPTIONS)
    assert {r.student: r.auto_score for r in results} == dict.fromkeys(students, 5.0)


# --- failures of the grader itself: never a silent 0 (issue 14) ------------------------------

SLOW_START = """\
import os, time
_mark = {mark!r}
if {always} or not os.path.exists(_mark):
    open(_mark, "w").close()
    time.sleep(120)  # a kernel that starts too slowly, as on a heavily loaded machine
"""


def _run_alone(tmp_path, monkeypatch, slow_start: str = "", **traits):
    """The fixture's source notebook (solved) run by TrustedExecute alone, without sandbox, as
    ``course check`` runs one; returns the run notebook. ``slow_start``: "once" or "always",
    a kernel whose startup hangs."""
    from autograder.nbgrader_ext import TrustedExecute
    from autograder.worker import seeded_ipython_dir

    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setenv("COURSE_SEED", "0")
    ipython = seeded_ipython_dir(tmp_path, 0)
    monkeypatch.setenv("IPYTHONDIR", str(ipython))
    if slow_start:
        (ipython / "profile_default" / "startup" / "01-slow.py").write_text(SLOW_START.format(
            mark=str(tmp_path / "started"), always=slow_start == "always"))
    nb = notebooks.read(FIXTURE_COURSE / "source" / LAB / NB)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved by the student")]
    runner = TrustedExecute(timeout=30, kernel_name="python3", **traits)
    runner.preprocess(nb, {"metadata": {"path": str(folder)}})
    return nb


def _test_errors(nb) -> dict[str, list[str]]:
    return {notebooks.nbgrader_meta(c)["grade_id"]: [f"{o.ename}: {o.evalue}" for o in c.outputs
                                                      if o.output_type == "error"]
            for c in nb.cells if notebooks.nbgrader_meta(c).get("grade") and c.cell_type == "code"}


def test_a_kernel_too_slow_to_start_is_started_again(tmp_path, monkeypatch):
    nb = _run_alone(tmp_path, monkeypatch, slow_start="once", startup_timeout=20)
    assert _test_errors(nb) == {"test_task1_add": [], "test_task2_mean": []}


def test_a_notebook_the_grader_cannot_run_says_so_in_every_test(tmp_path, monkeypatch):
    from autograder.worker import incidents

    nb = _run_alone(tmp_path, monkeypatch, slow_start="always", startup_timeout=3,
                    infrastructure_retries=1)
    errors = _test_errors(nb)
    assert set(errors) == {"test_task1_add", "test_task2_mean"}
    assert not any(c.outputs for c in nb.cells if c.cell_type == "code"
                   and not notebooks.nbgrader_meta(c).get("grade")), "nothing ran: no output"
    for lines in errors.values():
        assert len(lines) == 1 and lines[0].startswith("NotGraded: NOT GRADED: the grader could "
                                                       "not run this notebook ("), lines
        assert "tried 2 times); grade this student again" in lines[0]
    notebooks.write(nb, tmp_path / "graded" / NB)
    (note,) = incidents(tmp_path / "graded")
    assert note.startswith("quiz.ipynb: NOT GRADED") and "\n" not in note


def test_a_kernel_that_does_not_shut_down_cleanly_keeps_the_grades(tmp_path, monkeypatch):
    from jupyter_client import AsyncKernelManager

    class StuckShutdown(AsyncKernelManager):
        async def shutdown_kernel(self, now=False, restart=False):
            if not now:
                raise RuntimeError("the kernel did not stop in time")
            await super().shutdown_kernel(now=now, restart=restart)

    nb = _run_alone(tmp_path, monkeypatch, kernel_manager_class=StuckShutdown)
    assert _test_errors(nb) == {"test_task1_add": [], "test_task2_mean": []}


def test_a_restarted_kernel_leaves_the_graded_copy_whole(batch):
    """Cells run again after a kernel death never take the place of a notebook's cell (they
    once overwrote the last one: the written answer vanished from the graded copy)."""
    root, _, _, _ = batch
    graded = notebooks.read(root / "autograded" / "exits" / LAB / NB)
    submitted = notebooks.read(root / "submitted" / "exits" / LAB / NB)
    ids = [notebooks.nbgrader_meta(c).get("grade_id") for c in graded.cells
           if not c.metadata.get("autograder", {}).get("grader_note")]
    assert ids == [notebooks.nbgrader_meta(c).get("grade_id") for c in submitted.cells]
    answer = next(c for c in graded.cells
                  if notebooks.nbgrader_meta(c).get("grade_id") == "task2_answer")
    assert answer.cell_type == "markdown" and "same weight" in answer.source
