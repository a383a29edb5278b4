"""Which failures of a graded notebook are the course's (autograder/instructor_cells.py)."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.instructor_cells import CourseFailure, bound_names, course_failures, used_names


def _cell(source: str, grade_id: str, solution: bool = False, grade: bool = False):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": grade,
                                 "locked": not solution, "schema_version": 3}
    return cell


TRUSTED = new_notebook(cells=[
    _cell("import numpy as np\nfrom course_lib import images", "setup"),
    _cell("def area(r):\n    ### BEGIN SOLUTION\n    return np.pi * r * r\n    ### END SOLUTION\n"
          "radius = 2.0", "task1_area", solution=True),
    _cell("print(area(radius))", "show_area"),
    _cell("picture = images.load('cat')", "load_picture"),
    _cell("assert area(1) > 3", "test_task1_area", grade=True),
])


def _graded(errors: dict[int, tuple[str, str, list[str]]], answer: str | None = None):
    """The trusted notebook as the grader ran it: execution counts 1.., ``errors`` by index."""
    nb = nbformat.from_dict(TRUSTED)
    if answer is not None:
        nb.cells[1].source = answer
    for count, cell in enumerate(nb.cells[:4], start=1):
        cell.execution_count = count
        if count - 1 in errors:
            ename, evalue, traceback = errors[count - 1]
            cell.outputs = [new_output("error", ename=ename, evalue=evalue, traceback=traceback)]
    return nb


def test_a_setup_cell_that_cannot_import_is_the_courses_failure():
    nb = _graded({0: ("ModuleNotFoundError", "No module named 'course_lib'",
                      ["\x1b[0;31mModuleNotFoundError\x1b[0m: No module named 'course_lib'"])})
    assert course_failures(nb, TRUSTED, "quiz.ipynb") == [
        CourseFailure("quiz.ipynb", 0, "ModuleNotFoundError: No module named 'course_lib'",
                      "setup")]


def test_a_cell_using_what_the_student_defines_is_the_students():
    # A blank answer: ``area`` raises, ``radius`` may be missing; the cell that shows them
    # fails because of the student, not the course.
    trace = ["Cell \x1b[0;32mIn[3], line 1\x1b[0m", "Cell \x1b[0;32mIn[2], line 2\x1b[0m",
             "NotImplementedError: "]
    nb = _graded({2: ("NotImplementedError", "", trace)})
    assert course_failures(nb, TRUSTED, "quiz.ipynb") == []
    nb = _graded({2: ("NameError", "name 'radius' is not defined", ["NameError"])})
    assert course_failures(nb, TRUSTED, "quiz.ipynb") == []


def test_a_traceback_through_a_students_cell_is_the_students():
    # ``load_picture`` uses nothing of the student's, but the student's cell patched something
    # it calls: the traceback passes through the student's cell (execution count 2).
    trace = ["Cell In[4], line 1", "Cell In[2], line 7, in load", "RuntimeError: nope"]
    nb = _graded({3: ("RuntimeError", "nope", trace)})
    assert course_failures(nb, TRUSTED, "quiz.ipynb") == []
    trace = ["Cell In[4], line 1", "File .../course_lib/images.py:40", "FileNotFoundError: cat"]
    nb = _graded({3: ("FileNotFoundError", "cat", trace)})
    assert [f.cell for f in course_failures(nb, TRUSTED, "quiz.ipynb")] == [3]


def test_a_cell_reading_what_a_failed_cell_would_have_bound_is_not_the_courses():
    # ``show_area`` raised through the student's unfinished ``area`` (its fault); a later figure
    # cell reading ``shown``, which only ``show_area`` binds, fails with a NameError: the
    # student's too. Without the earlier failure, the same NameError is the course's.
    trusted = nbformat.from_dict(TRUSTED)
    trusted.cells[2].source = "shown = area(radius)"
    trusted.cells[3].source = "picture = shown * 2"
    trace = ["Cell In[3], line 1", "Cell In[2], line 2, in area", "NotImplementedError: "]
    nb = nbformat.from_dict(trusted)
    for count, cell in enumerate(nb.cells[:4], start=1):
        cell.execution_count = count
    nb.cells[2].outputs = [new_output("error", ename="NotImplementedError", evalue="",
                                      traceback=trace)]
    nb.cells[3].outputs = [new_output("error", ename="NameError", traceback=["NameError"],
                                      evalue="name 'shown' is not defined")]
    assert course_failures(nb, trusted, "quiz.ipynb") == []
    nb.cells[2].outputs = []
    assert [f.cell for f in course_failures(nb, trusted, "quiz.ipynb")] == [3]


def test_an_instructor_cell_the_submission_changed_is_not_trusted():
    nb = _graded({3: ("FileNotFoundError", "cat", ["FileNotFoundError"])})
    nb.cells[3].source = "picture = images.load('dog')"  # not the course's cell any more
    assert course_failures(nb, TRUSTED, "quiz.ipynb") == []


def test_a_setup_error_in_the_grader_is_the_courses():
    nb = _graded({})
    nb.cells[4].outputs = [new_output("error", ename="SetupError",
                                      evalue="setup cell 'setup' failed: ImportError: x",
                                      traceback=[])]
    (failure,) = course_failures(nb, TRUSTED, "quiz.ipynb")
    assert failure.cell == 4 and failure.error.startswith("SetupError: setup cell 'setup'")
    assert "the course's fault" in failure.describe()


def test_names_bound_at_top_level_only():
    assert bound_names(["import torch.nn as nn\nfrom a import b as c\nx, (y, z) = 1, (2, 3)\n"
                        "def f(q):\n    local = q\n    return [w for w in local]\n"
                        "for i in range(3):\n    pass\n%matplotlib inline"]) == {
        "nn", "c", "x", "y", "z", "f", "i"}
    assert used_names("print(area(radius))") == {"print", "area", "radius"}
    assert used_names("def (:") is None
