"""Unit tests of the autograder's pieces that need no kernel: notebook text transformations,
sample submissions, the score table and CSV, and the command line's error handling."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import notebooks
from autograder._paths import REPO_ROOT
from autograder.cli import main
from autograder.grade import StudentResult, format_table, write_csv
from autograder.samples import (
    ALL,
    demo_students,
    grade_id_of,
    make_submission,
    solution_cells,
    wrong_answers,
    wrong_overrides,
)

from ._course import LAB1, LABS, lab_notebooks

CELL = """# TODO (Task 6): explain
def f(x):
    ### BEGIN SOLUTION
    return x + 1
    ### END SOLUTION
"""


def test_solution_text_drops_delimiters_hidden_tests_and_marking_schemes():
    assert notebooks.solution_text(CELL) == "# TODO (Task 6): explain\ndef f(x):\n    return x + 1"
    test = '"""doc"""\nassert 1\n### BEGIN HIDDEN TESTS\nassert 2\n### END HIDDEN TESTS\nassert 3'
    assert notebooks.solution_text(test) == '"""doc"""\nassert 1\nassert 3'
    answer = "An answer.\n\nBEGIN MARK SCHEME\n- 1 point\nEND MARK SCHEME\n"
    assert notebooks.solution_text(answer) == "An answer."


@pytest.mark.parametrize("text", [
    "### BEGIN SOLUTION\nx = 1\n",
    "x = 1\n### END SOLUTION\n",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",
])
def test_unbalanced_delimiters_are_reported(text):
    with pytest.raises(ValueError, match="SOLUTION"):
        notebooks.drop_region(text, notebooks.BEGIN_SOLUTION, notebooks.END_SOLUTION)


@pytest.mark.parametrize(("grade_id", "task"), [
    ("task6_ig", 6), ("test_task6_ig_reference", 6), ("task10_x", 10), ("intro", None)])
def test_task_of(grade_id, task):
    assert notebooks.task_of(grade_id) == task


def test_solution_notebook_view_keeps_answers_only():
    source = notebooks.read(lab_notebooks("source")[0])
    view = notebooks.to_solution_notebook(source)
    assert len(view.cells) == len(source.cells)
    assert all("nbgrader" not in c.metadata for c in view.cells)
    assert any("nbgrader" in c.metadata for c in source.cells), "the source must be untouched"


def test_make_submission_fills_chosen_cells(tmp_path):
    wrong = wrong_answers(LAB1)
    dest = make_submission(LAB1, tmp_path / "s", solve=["task2_transform"],
                           overrides={"task3_inference": wrong["task3_inference"]})
    cells = {notebooks.nbgrader_meta(c).get("grade_id"): c.source
             for p in sorted(dest.glob("*.ipynb")) for c in notebooks.read(p).cells}
    assert cells["task2_transform"] == solution_cells(LAB1)["task2_transform"]
    assert cells["task3_inference"].startswith("# WRONG (Task 3)")
    assert "raise NotImplementedError()" in cells["task1_model"]
    assert sorted(p.name for p in dest.glob("*.ipynb")) == [
        p.name for p in lab_notebooks("release")]


def test_make_submission_rejects_unknown_cells(tmp_path):
    from autograder._paths import CourseError
    with pytest.raises(CourseError, match="task42"):
        make_submission(LAB1, tmp_path / "s", solve=["task42_nothing"])


@pytest.mark.parametrize("lab", LABS)
def test_every_wrong_answer_names_its_task_and_mistake(lab):
    wrong = wrong_answers(lab)
    assert wrong, "wrong answers ship with the package"
    for name, text in wrong.items():
        grade_id = grade_id_of(name)
        assert text.startswith(f"# WRONG (Task {notebooks.task_of(grade_id)}): "), name
        assert grade_id in solution_cells(lab), f"{name} replaces no answer cell of {lab}"


def test_wrong_answer_names_map_to_their_cell():
    assert grade_id_of("task5_occlusion--border") == "task5_occlusion"
    assert grade_id_of("task5_occlusion") == "task5_occlusion"
    overrides = wrong_overrides(LAB1, ["task9_compare--random", "task3_inference"])
    assert set(overrides) == {"task9_compare", "task3_inference"}
    assert overrides["task9_compare"].startswith("# WRONG (Task 9): random tensors")
    from autograder._paths import CourseError
    with pytest.raises(CourseError, match="both replace task9_compare"):
        wrong_overrides(LAB1, ["task9_compare--random", "task9_compare"])


def test_demo_class():
    students = demo_students(LAB1)
    assert students["alice"] == {"solve": ALL} and students["bob"] == {"solve": []}
    assert students["carol"]["solve"] and len(students["dave"]["overrides"]) == 2
    assert students["erin"]["overrides"] == {"task1_model": "import os\nos._exit(1)"}


def _results():
    return [
        StudentResult("ann", LAB1, {1: (5.0, 5.0), 2: (0.0, 5.0)}, manual=4.0),
        StudentResult("bo", LAB1, {1: (0.0, 5.0), 2: (2.5, 5.0)}, problem="kernel died"),
    ]


def test_table_shows_each_task_total_and_problem():
    table = format_table(_results()).splitlines()
    assert table[0].split() == ["student", "lab", "T1/5", "T2/5", "auto", "problem"]
    assert table[2].split() == ["ann", LAB1, "5", "0", "5/10"]
    assert table[3].split() == ["bo", LAB1, "0", "2.5", "2.5/10", "kernel", "died"]
    assert format_table([]) == "(no submissions)"


def test_table_has_one_block_per_lab_with_that_labs_points():
    other = StudentResult("ann", "lab2_x", {1: (15.0, 15.0), 3: (0.0, 20.0)})
    blocks = format_table([*_results(), other]).split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines()[0].split()[2:4] == ["T1/5", "T2/5"]
    assert blocks[1].splitlines()[0].split()[2:4] == ["T1/15", "T3/20"]
    assert blocks[1].splitlines()[2].split() == ["ann", "lab2_x", "15", "0", "15/35"]


def test_csv_has_one_row_per_student(tmp_path):
    with write_csv(_results(), tmp_path / "g.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["student"] for r in rows] == ["ann", "bo"]
    assert (rows[0]["task1"], rows[0]["auto_max"], rows[0]["manual_pending"]) == ("5", "10", "4")
    assert rows[1]["problem"] == "kernel died"


def test_cli_reports_course_errors_without_traceback(tmp_path, capsys):
    assert main(["--course", str(tmp_path), "build"]) == 2
    err = capsys.readouterr().err
    assert "No 'source/' folder" in err and "Traceback" not in err
    assert main(["--course", str(tmp_path), "check", str(tmp_path / "missing.ipynb")]) == 2
    assert "No notebook at" in capsys.readouterr().err


def test_cli_rejects_an_unknown_lab(capsys):
    assert main(["build", "lab99", "--check"]) == 2
    assert "Unknown lab 'lab99'" in capsys.readouterr().err


def test_nbgrader_config_mirrors_the_grading_flags():
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.config import DEFAULT_CELL_TIMEOUT, IGNORED_STDERR
    from autograder.nbgrader_ext import HideTestCode, feedback_preprocessors

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    assert config.IgnorePattern.enabled is True
    assert config.IgnorePattern.pattern == IGNORED_STDERR
    assert config.Execute.timeout == DEFAULT_CELL_TIMEOUT
    # nbgrader's own feedback (the formgrader's button) hides tests as course grade's does
    assert config.GenerateFeedback.preprocessors == feedback_preprocessors()
    assert HideTestCode in config.GenerateFeedback.preprocessors
    assert config.CsvExportPlugin.to not in ("", "grades.csv", "final_grades.csv")


def test_grade_options_sandbox_and_caps(monkeypatch):
    from autograder.cli import build_parser
    from autograder.grade import GradeOptions

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert GradeOptions().sandbox is True  # untrusted by default
    assert GradeOptions(notebook_timeout=100).cpu_seconds() == 200
    assert GradeOptions(cpu_time=30).cpu_seconds() == 30
    args = build_parser().parse_args(["grade", LAB1, "--no-sandbox", "--cpu-time", "60",
                                      "--max-processes", "64"])
    assert (args.no_sandbox, args.cpu_time, args.max_processes) == (True, 60, 64)
    assert build_parser().parse_args(["grade"]).no_sandbox is False


def test_incidents_name_the_process_cap(tmp_path):
    import nbformat

    from autograder.worker import incidents

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("import os\nwhile True:\n    os.fork()")
    cell.outputs = [nbformat.v4.new_output("error", ename="BlockingIOError", evalue="[Errno 11]",
                                           traceback=[])]
    nb.cells = [cell]
    nbformat.write(nb, str(tmp_path / "quiz.ipynb"))
    assert incidents(tmp_path) == [
        "quiz.ipynb: a process or thread could not start (process cap)"]


def _png(size: int) -> str:
    return "A" * size  # base64 text of a figure: only its size matters here


def test_output_caps_keep_figures_apart_from_text():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from autograder.nbgrader_ext import LimitOutputBytes

    cell = new_code_cell("show()")
    cell.outputs = [
        new_output("stream", name="stdout", text="x" * 300),
        new_output("display_data", data={"image/png": _png(600), "text/plain": "<Figure>"}),
        new_output("display_data", data={"image/png": _png(600), "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/html": "<b>" + "y" * 500 + "</b>"}),
    ]
    nb = new_notebook(cells=[cell])
    limit = LimitOutputBytes(max_bytes=400, max_image_bytes=1000, max_notebook_image_bytes=5000)
    nb, _ = limit.preprocess(nb, {})
    out = nb.cells[0].outputs
    assert out[0].text == "x" * 300  # text within its own budget
    assert out[1].data["image/png"] == _png(600)  # a long print does not push a figure out
    assert out[2].text.startswith("... figure of 608 bytes removed (over the grader's limit")
    assert out[3].text.startswith("... output of 507 bytes removed")


def test_output_caps_count_figures_over_the_whole_notebook():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from autograder.nbgrader_ext import LimitOutputBytes

    cells = []
    for _ in range(3):
        cell = new_code_cell("show()")
        cell.outputs = [new_output("display_data", data={"image/png": _png(600)})]
        cells.append(cell)
    limit = LimitOutputBytes(max_bytes=400, max_image_bytes=1000, max_notebook_image_bytes=1300)
    nb, _ = limit.preprocess(new_notebook(cells=cells), {})
    kept = ["image/png" in c.outputs[0].get("data", {}) for c in nb.cells]
    assert kept == [True, True, False]
    nb, _ = limit.preprocess(new_notebook(cells=cells[:1]), {})  # a new notebook, a new budget
    assert "image/png" in nb.cells[0].outputs[0].data


def test_mark_schemes_for_graders_and_never_in_feedback(tmp_path):
    import nbformat

    from autograder.nbgrader_ext import DropGraderNotes, ShowMarkSchemes, is_grader_note

    source = REPO_ROOT / "tests" / "fixtures" / "course" / "source" / "minilab" / "quiz.ipynb"
    shutil.copyfile(source, tmp_path / "quiz.ipynb")
    nb = notebooks.read(source)
    forged = nbformat.v4.new_markdown_cell("**Marking scheme**: full marks")
    forged.metadata["autograder"] = {"grader_note": True}
    nb.cells.append(forged)
    resources = {"nbgrader": {"notebook": "quiz"}}
    nb, resources = ShowMarkSchemes(trusted_dir=str(tmp_path)).preprocess(nb, resources)
    notes = [c for c in nb.cells if is_grader_note(c)]
    assert len(notes) == 1 and "- 1 point: any correct reason." in notes[0].source
    assert "> Every value enters the sum with the same weight." in notes[0].source
    assert "full marks" not in "".join(c.source for c in nb.cells)  # the forged one is gone
    assert resources["sanitized"] == ["a cell claiming to be a grader's note removed"]
    nb, _ = DropGraderNotes().preprocess(nb, {})
    assert not any(is_grader_note(c) for c in nb.cells)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_the_grader_that_started_it(tmp_path):
    """A worker runs in its own session, so a killed grader (a Dask worker killed mid-task)
    must not leave it running: ``die_with_grader`` asks Linux to kill it with its parent."""
    grader = tmp_path / "grader.py"
    grader.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'from autograder.worker import "
        "die_with_grader; die_with_grader(); import time; print(\"ready\", flush=True); "
        "time.sleep(120)'], env={**os.environ, 'COURSE_GRADER_PID': str(os.getpid())}, "
        "start_new_session=True, stdout=subprocess.PIPE, text=True)\n"
        "assert child.stdout.readline() == 'ready\\n'\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n", encoding="utf-8")
    with subprocess.Popen([sys.executable, str(grader)], cwd=REPO_ROOT, text=True,
                          stdout=subprocess.PIPE) as proc:
        worker = int(proc.stdout.readline())
        assert _alive(worker)
        proc.kill()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived the grader"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER is "
                    "Linux's")
def test_a_killed_orphan_is_reaped_by_the_worker_that_adopted_it(tmp_path):
    """A killed sandbox leaves its inner process an orphan; the worker adopts it and reaps it
    as it kills it, instead of waiting for the machine's init (1.5 s a submission here)."""
    script = tmp_path / "adopter.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from autograder.sandbox import _kill_until_gone, adopt_orphans\n"
        "assert adopt_orphans()\n"
        "middle = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys; print(subprocess"
        ".Popen([sys.executable, \"-c\", \"import time; time.sleep(120)\"]).pid, flush=True)'], "
        "stdout=subprocess.PIPE, text=True)\n"
        "orphan = int(middle.stdout.readline())\n"
        "middle.wait()\n"
        "stat = open(f'/proc/{orphan}/stat').read()\n"
        "assert int(stat.rsplit(')', 1)[1].split()[1]) == os.getpid(), 'not adopted: ' + stat\n"
        "_kill_until_gone(lambda: [orphan] if os.path.exists(f'/proc/{orphan}') else [], 50)\n"
        "assert not os.path.exists(f'/proc/{orphan}'), 'left a zombie: ' + open(f'/proc/{orphan}"
        "/stat').read()\n"
        "print('reaped')\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "reaped", done.stderr


def test_nbgrader_runs_without_the_unloaded_modules():
    """``nbgrader_cmd`` is nbgrader's own entry point, without what the course never needs
    (``autograder.UNLOADED_MODULES``: 0.8 s of every nbgrader command's start)."""
    from autograder._paths import nbgrader_cmd, tool_env

    probe = [*nbgrader_cmd()[:-1], nbgrader_cmd()[-1].replace(
        "sys.exit(main())", "import nbformat.validator; print(sys.modules.get('rfc3987_syntax'))")]
    shown = subprocess.run(probe, capture_output=True, text=True, env=tool_env(), timeout=120)
    assert shown.stdout.strip() == "None", shown.stderr
    version = subprocess.run([*nbgrader_cmd(), "--version"], capture_output=True, text=True,
                             env=tool_env(), timeout=120)
    assert version.returncode == 0 and "nbgrader version" in version.stdout, version.stderr


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie waits for its new parent only
