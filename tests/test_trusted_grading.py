"""Trusted grading: no submission can forge a score, read a hidden test, or stop the batch.

Every attack the trusted-grading issue lists is a submission of the fixture lab
(``tests/fixtures/course``, two tasks, 2 + 3 points), graded in one batch beside honest
students. Most attackers solve nothing honestly, so any point they get is forged; the others
solve the lab and must keep exactly their honest points. For each attacker: the score is the
honest one, the attempt is named in the problem column, and no hidden test text appears under
``feedback/``, ``autograded/``, in ``grades.csv`` or in anything the attacker's notebook printed.
Every honest student gets the grade they get when graded alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks, sandbox
from autograder.grade import GradeOptions, grade, write_csv
from autograder.samples import ALL, make_submission

from ._course import fixture_course, require_sandbox

pytestmark = pytest.mark.slow

LAB = "minilab"
NB = "quiz.ipynb"
# Lines that exist only in the hidden tests of the fixture lab.
HIDDEN = ("add(-4, 10)", "mean([0.5, 1.5, 4.0])")
HONEST = {"solution": (2.0, 3.0), "partial": (2.0, 0.0), "blank": (0.0, 0.0)}
OPTIONS = GradeOptions(jobs=2, cell_timeout=20, notebook_timeout=400, memory_mb=2048,
                       sandbox=sandbox.detect().active)
ADD = "def add(a, b):\n    return a + b"

# Code a student puts in the answer cell of Task 1, solving nothing: every point is forged.
FORGERS = {
    "input_transformer": "get_ipython().input_transformers_cleanup.append("
                         "lambda lines: ['pass\\n'])",
    "ast_transformer": (
        "import ast\nclass _Drop(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n        return ast.Pass()\n"
        "get_ipython().ast_transformers.append(_Drop())"),
    "post_run_hook": (
        "def _clean(result):\n    result.error_in_exec = None\n"
        "get_ipython().events.register('post_run_cell', _clean)"),
    "pre_run_hook": (
        "def _show(info):\n    print('CELL:', info.raw_cell)\n"
        "get_ipython().events.register('pre_run_cell', _show)"),
    "custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)",
    "patched_run_cell": (
        "_ip = get_ipython()\n_orig = _ip.run_cell\n"
        "def _run(raw_cell, *a, **k):\n    return _orig('pass', *a, **k)\n"
        "_ip.run_cell = _run"),
    "patched_do_execute": (
        "_k = get_ipython().kernel\n_orig = _k.do_execute\n"
        "def _exec(code, *a, **k):\n    return _orig('pass', *a, **k)\n"
        "_k.do_execute = _exec"),
    "excepthook": "import sys, traceback\nsys.excepthook = lambda *a: None\n"
                  "traceback.print_exc = lambda *a, **k: None",
    "eq_anything": (
        "class _Yes:\n    def __eq__(self, other):\n        return True\n"
        "    def __bool__(self):\n        return True\n"
        "    def __float__(self):\n        return 2.0\n"
        "def add(a, b):\n    return _Yes()\ndef mean(values):\n    return _Yes()"),
    "comm_hijack": (
        "_cm = get_ipython().kernel.comm_manager\n"
        "_cm.register_target('course_agent', lambda comm, msg: comm.close())"),
}
# Code appended after the last cell of a solved notebook: it reads what the kernel saw.
READERS = {
    "reads_history": "print(In, _ih, Out)\n"
                     "print(list(get_ipython().history_manager.get_range()))",
}


def _edit(folder: Path, change) -> Path:
    nb = notebooks.read(folder / NB)
    change(nb)
    notebooks.write(nb, folder / NB)
    return folder


def _cell(nb, grade_id):
    return next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") == grade_id)


def _append_code(source: str):
    def change(nb):
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return change


def _meta(which: str, **changes):
    def change(nb):
        _cell(nb, which).metadata["nbgrader"].update(changes)
    return change


def _build_class(root: Path) -> dict[str, tuple[float, float]]:
    """Write honest students and attackers; return student -> expected (task 1, task 2)."""
    sub = root / "submitted"

    def make(student, solve=ALL, overrides=None):
        return make_submission(LAB, sub / student / LAB, solve=solve, overrides=overrides,
                               root=root)

    expected = dict(HONEST)
    make("solution")
    make("partial", solve=["task1_add"])
    make("blank", solve=[])
    for name, code in FORGERS.items():
        make(name, solve=[], overrides={"task1_add": code})
        expected[name] = (0.0, 0.0)
    for name, code in READERS.items():
        _edit(make(name), _append_code(code))
        expected[name] = (2.0, 3.0)
    # files that would shadow what the kernel imports
    shadow = make("shadows_modules", solve=[])
    (shadow / "numpy.py").write_text("raise SystemExit('shadowed')\n")
    (shadow / "torch").mkdir()
    (shadow / "torch" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    (shadow / "sitecustomize.py").write_text("print('sitecustomize ran')\n")
    expected["shadows_modules"] = (0.0, 0.0)
    # symbolic links
    link_nb = make("symlink_source", solve=[])
    (link_nb / NB).unlink()
    (link_nb / NB).symlink_to(root / "source" / LAB / NB)
    expected["symlink_source"] = (0.0, 0.0)
    files = make("symlink_files")
    (files / "passwd.txt").symlink_to("/etc/passwd")
    (files / "grades.db").symlink_to(root / "gradebook.db")
    expected["symlink_files"] = (2.0, 3.0)
    (sub / "symlink_lab").mkdir()
    (sub / "symlink_lab" / LAB).symlink_to(sub / "solution" / LAB)
    expected["symlink_lab"] = (0.0, 0.0)
    # metadata tampering, on a blank notebook: none of it may earn a point
    _edit(make("raises_points", solve=[]), _meta("test_task1_add", points=100))
    _edit(make("test_to_answer", solve=[]), _meta("test_task2_mean", solution=True))
    _edit(make("renamed_test", solve=[]), _meta("test_task2_mean", grade_id="test_other"))
    _edit(make("string_metadata", solve=[]),
          lambda nb: _cell(nb, "test_task1_add").metadata.__setitem__("nbgrader", "x"))
    expected.update(dict.fromkeys(("raises_points", "test_to_answer", "renamed_test",
                                   "string_metadata"), (0.0, 0.0)))
    # a cell that ignores the interrupt: Task 1 keeps its points
    make("ignores_sigint", solve=["task1_add"], overrides={"task2_mean": (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.1)")})
    expected["ignores_sigint"] = (2.0, 0.0)
    # hogs: /tmp and shared memory; the rest of the notebook is graded
    make("tmp_hog", overrides={"task1_add": ADD + (
        "\nchunk = b'x' * 2**26\ntry:\n    with open('/tmp/hog', 'wb') as f:\n"
        "        for _ in range(48):\n            f.write(chunk)\n"
        "except OSError as e:\n    print('stopped:', e)\ndel chunk")})
    expected["tmp_hog"] = (2.0, 3.0)
    # a script in a written answer, and a notebook name that is a spreadsheet formula
    _edit(make("script_answer"), lambda nb: _cell(nb, "task2_answer").__setitem__(
        "source", "<script>alert('xss')</script><img src=x onerror=alert(1)> fine"))
    expected["script_answer"] = (2.0, 3.0)
    formula = make("formula_name")
    shutil.copyfile(formula / NB, formula / "=HYPERLINK(\"x\").ipynb")
    expected["formula_name"] = (2.0, 3.0)
    return expected


def _scores(results) -> dict[str, tuple[float, float]]:
    return {r.student: (r.tasks[1][0], r.tasks[2][0]) for r in results}


def _texts(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*"))
                     if p.is_file())


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    require_sandbox()  # without one the hogs would fill this machine's own /tmp and memory
    root = tmp_path_factory.mktemp("course")
    fixture_course(root)
    sub = root / "submitted"
    for student in HONEST:
        kwargs = {"solution": {}, "partial": {"solve": ["task1_add"]}, "blank": {"solve": []}}
        make_submission(LAB, sub / student / LAB, root=root, **kwargs[student])
    alone = _scores(grade(LAB, root=root, options=OPTIONS))
    expected = _build_class(root)
    results = {r.student: r for r in grade(LAB, root=root, options=OPTIONS)}
    csv = write_csv(list(results.values()), root / "grades.csv")
    return root, expected, results, alone, csv


def test_every_attacker_gets_exactly_its_honest_points(batch):
    _, expected, results, _, _ = batch
    assert _scores(results.values()) == expected


def test_honest_students_grade_the_same_as_alone(batch):
    _, _, results, alone, _ = batch
    assert {s: _scores([results[s]])[s] for s in HONEST} == alone == HONEST


@pytest.mark.parametrize(("student", "words"), [
    ("input_transformer", "IPython input transformers"),
    ("ast_transformer", "IPython AST transformers"),
    ("post_run_hook", "IPython event hooks"),
    ("pre_run_hook", "IPython event hooks"),
    ("custom_exc", "a custom exception handler"),
    ("patched_run_cell", "the shell's run_cell"),
    ("patched_do_execute", "the kernel's execute handler"),
    ("excepthook", "sys.excepthook"),
    ("comm_hijack", "the grader's channel"),
    ("reads_history", "the input history"),
    ("shadows_modules", "numpy.py"),
    ("shadows_modules", "sitecustomize.py"),
    ("symlink_source", "symbolic link"),
    ("symlink_files", "symbolic link"),
    ("symlink_lab", "symbolic link"),
    ("ignores_sigint", "ignored the interrupt"),
    ("formula_name", "not part of this lab"),
])
def test_attempts_are_named_in_the_problem_column(batch, student, words):
    _, _, results, _, _ = batch
    assert words in results[student].problem, results[student].problem


def test_metadata_tampering_is_undone_and_named(batch):
    _, _, results, _, _ = batch
    for student in ("raises_points", "test_to_answer", "renamed_test", "string_metadata"):
        assert results[student].auto_max == 5, student
        assert results[student].problem, student


def test_no_hidden_test_text_anywhere_the_attacker_or_a_student_can_read(batch):
    root, _, _, _, csv = batch
    readable = "\n".join([_texts(root / "feedback"), _texts(root / "autograded"),
                          csv.read_text()])
    for line in HIDDEN:
        assert line not in readable


def test_no_secret_file_reaches_feedback_or_the_graded_copy(batch):
    root, _, _, _, _ = batch
    passwd_line = Path("/etc/passwd").read_text().splitlines()[0]
    for folder in ("feedback", "autograded"):
        assert passwd_line not in _texts(root / folder / "symlink_files")
        assert not list((root / folder).rglob("grades.db"))


def test_feedback_holds_no_script(batch):
    root, _, _, _, _ = batch
    html = _texts(root / "feedback" / "script_answer")
    # The answer may be shown as text (escaped); never as markup a browser runs.
    assert "<script>alert" not in html and "<img src=x onerror" not in html
    assert "fine" in html


def test_the_csv_cannot_run_a_formula(batch):
    import csv as csv_module

    _, _, _, _, path = batch
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv_module.reader(fh):
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), row
