"""The static scan that flags submissions reaching into grading machinery (suspicious.py)."""

from __future__ import annotations

import nbformat
import pytest

from autograder.suspicious import scan_notebook, scan_source


@pytest.mark.parametrize("source, words", [
    ("get_ipython().input_transformers_cleanup.append(f)", "IPython input transformers"),
    ("get_ipython().ast_transformers.append(t)", "IPython AST transformers"),
    ("get_ipython().events.register('post_run_cell', f)", "IPython event hooks"),
    ("import sys\nsys.excepthook = None", "sys.excepthook"),
    ("print(In[3], _ih)", "the input history"),
    ("import builtins\nbuiltins.abs = lambda x: 0", "the builtins"),
    ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)", "signal handlers"),
    ("from ipykernel.comm import Comm", "the kernel's internals"),
    ("import sys\nsys.modules['torch'] = None", "sys.modules"),
])
def test_scan_names_what_the_code_touches(source, words):
    assert words in scan_source(source)


@pytest.mark.parametrize("source", [
    "%matplotlib inline\nimport torch\nx = torch.zeros(3)",
    "from IPython.display import display\ndisplay(1)",
    "def grad_cam(model, input, target, layer):\n    return model(input)",
    "this is not python (",
])
def test_ordinary_code_is_not_flagged(source):
    assert scan_source(source) == set()


def test_only_the_students_cells_are_read():
    nb = nbformat.v4.new_notebook()
    instructor = nbformat.v4.new_code_cell("print(get_ipython())")
    instructor.metadata["nbgrader"] = {"grade_id": "setup", "locked": True, "solution": False,
                                       "grade": False}
    answer = nbformat.v4.new_code_cell("get_ipython().events.register('x', f)")
    answer.metadata["nbgrader"] = {"grade_id": "task1", "solution": True, "grade": False}
    nb.cells = [instructor]
    assert scan_notebook(nb, "quiz.ipynb") == []
    nb.cells.append(answer)
    assert scan_notebook(nb, "quiz.ipynb") == [
        "quiz.ipynb: FLAGGED FOR REVIEW, uses IPython event hooks, the IPython shell"]
