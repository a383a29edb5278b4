"""``course check``: a student's self-check runs a notebook in a fresh kernel and reports tests."""

from __future__ import annotations

import shutil

import pytest

from autograder import notebooks
from autograder._paths import CourseError
from autograder.check import (
    CellError,
    CheckReport,
    CheckRow,
    _error_frame,
    _error_line,
    _manual_points,
    find_notebook,
    format_check,
)
from autograder.cli import main
from autograder.samples import ALL, make_submission

from ._course import LAB1, lab_notebooks

pytestmark = pytest.mark.slow

BROKEN_TRANSFORM = """# TODO (Task 2): `transform` = Resize(256) -> CenterCrop(224) -> ...
transform = T.Compose([
    T.Resize(256)
    T.CenterCrop(224),
    T.ToTensor(),
])"""


def test_blank_release_notebook_fails_and_names_its_tasks(tmp_path, capsys):
    release = lab_notebooks("release")[0]  # 1_inference
    before = release.read_bytes()
    assert main(["check", str(release)]) == 1
    out = capsys.readouterr().out
    for task in ("test_task1_model", "test_task2_transform", "test_task3_inference",
                 "test_task4_graph"):
        assert f"{task}" in out and "FAILED" in out
    assert "NotImplementedError" in out
    first = out.index("First error: Task 1's answer cell (task1_model) is not answered yet")
    assert first < out.index("test_task1_model"), "the root cause comes before the test rows"
    assert "✓" not in out
    assert "Visible tests: 0/25 points (0/4 cells passed)" in out
    assert release.read_bytes() == before, "course check must not modify the notebook"


def test_solved_notebook_passes_and_exits_zero(tmp_path, capsys):
    folder = make_submission(LAB1, tmp_path / "mine", solve=ALL)
    assert main(["check", str(folder / "1_inference.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and out.count("passed") >= 4
    assert "First error" not in out
    for task in (1, 2, 3, 4):
        assert f"✓ Task {task}: visible checks passed\n" in out
    assert "Visible tests: 25/25 points (4/4 cells passed)" in out
    assert "graded by hand" not in out, "1_inference has no written answers"


def test_a_syntax_error_is_reported_first_and_a_bare_name_is_found(tmp_path, capsys, monkeypatch):
    """The notebooks say `course check 1_inference.ipynb`: it works from a folder above the lab,
    and a SyntaxError in Task 2 is named as such, not as Tasks 2 and 3's NameError."""
    make_submission(LAB1, tmp_path / "course" / LAB1, solve=ALL,
                    overrides={"task2_transform": BROKEN_TRANSFORM})
    monkeypatch.chdir(tmp_path / "course")
    assert main(["check", "1_inference.ipynb"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(f"Checked {LAB1}/1_inference.ipynb (found by its name under the "
                          "current folder)")
    assert "Task 2's answer cell (task2_transform) raised SyntaxError: invalid syntax" in out
    assert ".py, line" not in out, "IPython's temporary file name says nothing to a student"
    assert "line 3: T.Resize(256)" in out
    assert out.index("SyntaxError") < out.index("test_task1_model")
    assert "NameError: name 'transform' is not defined  (see the first error above)" in out
    assert "✓ Task 1: visible checks passed" in out and "✓ Task 4: visible checks passed" in out
    assert "✓ Task 2" not in out and "✓ Task 3" not in out
    assert "Visible tests: 10/25 points (2/4 cells passed)" in out
    assert f"{LAB1}/1_inference.ipynb" in captured.err, "says which file runs before it runs"


# --- finding a notebook by its bare name (no kernel) ----------------------------------------

def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}", encoding="utf-8")
    return path


def test_find_notebook_takes_a_path_as_it_is(tmp_path):
    nb = _touch(tmp_path / "lab" / "1_inference.ipynb")
    assert find_notebook(nb, cwd=tmp_path / "elsewhere") == (nb, "")
    assert find_notebook("lab/1_inference.ipynb", cwd=tmp_path) == (nb, "")
    with pytest.raises(CourseError, match="No notebook at lab/2_filters.ipynb"):
        find_notebook("lab/2_filters.ipynb", cwd=tmp_path)


def test_find_notebook_looks_two_folders_down_and_prefers_the_release_copy(tmp_path):
    released = _touch(tmp_path / "release" / LAB1 / "1_inference.ipynb")
    path, how = find_notebook("1_inference", cwd=tmp_path)  # .ipynb may be left out
    assert path == released and how == "found by its name under the current folder"
    _touch(tmp_path / "source" / LAB1 / "1_inference.ipynb")
    path, how = find_notebook("1_inference.ipynb", cwd=tmp_path)
    assert path == released
    assert "the student copy" in how and f"source/{LAB1}/1_inference.ipynb" in how
    _touch(tmp_path / "a" / "b" / "c" / "2_filters.ipynb")  # three levels down: not searched
    _touch(tmp_path / ".ipynb_checkpoints" / "2_filters.ipynb")  # hidden folders are skipped
    with pytest.raises(CourseError, match="No notebook 2_filters.ipynb in"):
        find_notebook("2_filters.ipynb", cwd=tmp_path)


def test_find_notebook_names_the_candidates_when_ambiguous(tmp_path):
    _touch(tmp_path / "alice" / "1_inference.ipynb")
    _touch(tmp_path / "bob" / "1_inference.ipynb")
    with pytest.raises(CourseError) as info:
        find_notebook("1_inference.ipynb", cwd=tmp_path)
    message = str(info.value)
    assert "ambiguous" in message
    assert "alice/1_inference.ipynb" in message and "bob/1_inference.ipynb" in message


def test_check_reports_an_unknown_name_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "1_inference.ipynb"]) == 2
    assert "No notebook 1_inference.ipynb" in capsys.readouterr().err


# --- the report (no kernel) -------------------------------------------------------------------

def test_error_line_reads_ipython_tracebacks():
    syntax = ["\x1b[36m  Cell \x1b[39m\x1b[32mIn[3]\x1b[39m\x1b[32m, line 4\x1b[39m\n"
              "\x1b[31m    \x1b[39m\x1b[31mT.CenterCrop(224),\x1b[39m\n    ^\n",
              "\x1b[31mSyntaxError\x1b[39m: invalid syntax. Perhaps you forgot a comma?\n"]
    assert _error_line(syntax) == (4, "T.CenterCrop(224),")
    runtime = ["-----\n", "NameError            Traceback (most recent call last)\n"
               "Cell In[5], line 2\n      1 import torch\n----> 2 model = resnet()\n",
               "NameError: name 'resnet' is not defined"]
    assert _error_line(runtime) == (2, "model = resnet()")
    assert _error_line(["KernelDied: the kernel died"]) == (None, "")
    assert _error_frame(runtime) == (5, 2, "model = resnet()")


def test_format_check_leads_with_the_first_error_and_ends_with_what_passed():
    rows = CheckReport([
        CheckRow("test_task5_a", 5, 10, True), CheckRow("test_task5_b", 5, 5, True),
        CheckRow("test_task6_a", 6, 5, False, "NameError: name 'f' is not defined")])
    rows.first_error = CellError(4, "task6_f", 6, "ValueError", "bad", 2, "x = f(1)")
    rows.manual_points, rows.manual_tasks = 6.0, (5,)
    text = format_check(rows)
    lines = text.splitlines()
    assert lines[0] == "First error: Task 6's answer cell (task6_f) raised ValueError: bad"
    assert lines[1] == "  line 2: x = f(1)"
    assert "(see the first error above)" in text
    assert "✓ Task 5: visible checks passed" in lines and "✓ Task 6" not in text
    assert "Visible tests: 15/20 points (2/3 cells passed)" in text
    assert lines[-1] == "Written answers (Task 5): 6 points, graded by hand and not counted here."


def test_a_failing_cell_that_is_not_an_answer_is_described_by_its_first_line():
    syntax = CellError(1, "task2_transform", 2, "SyntaxError",
                       "invalid syntax. Perhaps you forgot a comma? (2583739.py, line 3)", 3,
                       "T.Resize(256)")
    assert syntax.describe().splitlines()[0] == (
        "First error: Task 2's answer cell (task2_transform) raised SyntaxError: invalid syntax. "
        "Perhaps you forgot a comma?")
    demo = CellError(8, None, 5, "NotImplementedError", "", 7, "row.append(visualize_filter())",
                     "layers = {...}")
    text = demo.describe()
    assert text.startswith("First error: cell 9 of the notebook under Task 5 (it starts with "
                           "`layers = {...}`) calls an answer that is not written yet")
    assert "Fix it first" not in text
    demo.line_in = "task5_visualize_filter"
    assert "  line 7 of task5_visualize_filter: row.append(visualize_filter())" in demo.describe()
    other = CellError(8, None, 5, "ValueError", "bad shape", None, "", "x = f()")
    assert "raised ValueError: bad shape" in other.describe()
    assert "one of your answers above it" in other.describe()


def test_manual_points_count_the_written_answers():
    filters = lab_notebooks("release")[1]  # 2_filters: three questions of 2 points
    assert _manual_points(notebooks.read(filters)) == (10.0, (5,))
    assert _manual_points(notebooks.read(lab_notebooks("release")[0])) == (0.0, ())


def test_a_copied_lab_folder_is_found_from_its_parent(tmp_path, monkeypatch):
    shutil.copytree(lab_notebooks("release")[0].parent, tmp_path / LAB1)
    monkeypatch.chdir(tmp_path)
    path, how = find_notebook("2_filters.ipynb")
    assert path == tmp_path / LAB1 / "2_filters.ipynb" and how.startswith("found by its name")
