"""The hidden tests have teeth: ``course audit`` (autograder/audit.py) on both labs.

Every answer of every lab, replaced by its blank, by a random or a constant shortcut of the
solution (its numbers faked, its side effects kept) or by a shipped wrong answer, must earn
nothing on its task; the solution must earn everything, and a wrong answer must cost no other
task. The fixture lab checks that the audit itself reports weak tests.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from autograder import audit, notebooks
from autograder.samples import grade_id_of, solution_cells, wrong_answers

from ._course import FIXTURE_COURSE, LABS


def test_fake_numbers_keeps_shapes_labels_and_containers():
    torch.manual_seed(0)
    true = {"map": torch.linspace(-1, 3, 12).reshape(3, 4), "label": "cat", "index": 7,
            "parts": (np.arange(6, dtype=np.float32).reshape(2, 3), 0.25)}
    fake = audit.fake_numbers(true, audit.RANDOM)
    assert fake["label"] == "cat" and fake["index"] == 7
    assert fake["map"].shape == (3, 4) and not torch.allclose(fake["map"], true["map"])
    assert float(fake["map"].min()) >= -1 and float(fake["map"].max()) <= 3
    array, number = fake["parts"]
    assert array.dtype == np.float32 and array.shape == (2, 3) and isinstance(number, float)
    constant = audit.fake_numbers(true, audit.CONSTANT)
    assert torch.equal(constant["map"], torch.full((3, 4), 1.0))
    assert constant["parts"][1] == 0.5 and np.all(constant["parts"][0] == 2.5)


def test_random_shortcut_follows_the_torch_seed():
    faked = audit._Faked()
    noisy = audit.shortcut(lambda x: x * 2, audit.RANDOM, faked)
    torch.manual_seed(3)
    first = noisy(torch.ones(5))
    torch.manual_seed(3)
    assert torch.equal(noisy(torch.ones(5)), first) and faked.count == 2
    assert noisy.__wrapped__(torch.ones(2)).tolist() == [2.0, 2.0]


def test_defined_functions():
    source = "import x\ndef f():\n    pass\nclass C: pass\ndef g(): 1"
    assert audit.defined_functions(source) == ["f", "g"]
    assert audit.defined_functions("A written answer, not Python.") == []


def _row(kind, earned, task=2, maximum=None):
    return audit.AuditRow("lab", "nb", kind, kind, task, earned, maximum or {1: 5.0, 2: 10.0},
                          {}, test_ids=["test_task1_a", "test_task2_b", "test_task2_c"])


def test_row_verdicts():
    assert _row(audit.SOLUTION, {1: 5.0, 2: 10.0}, task=None).problem == ""
    assert "loses points" in _row(audit.SOLUTION, {1: 5.0, 2: 5.0}, task=None).problem
    assert _row(audit.RANDOM, {2: 0.0}).problem == ""
    assert "earns 5/10 on Task 2" in _row(audit.RANDOM, {2: 5.0}).problem
    assert _row(audit.WRONG, {1: 5.0, 2: 0.0}).problem == ""
    assert "also costs other tasks {1: 5.0}" in _row(audit.WRONG, {1: 0.0, 2: 0.0}).problem


def _minilab(tmp_path, weak_test: bool):
    """The fixture course, its import cell tagged ``setup``, Task 2's test weakened if asked."""
    course = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE, course)
    path = course / "source" / "minilab" / "quiz.ipynb"
    nb = notebooks.read(path)
    for cell in nb.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if grade_id == "mini_code_02":
            cell.metadata["tags"] = ["setup"]
        if grade_id == "test_task2_mean" and weak_test:
            cell.source = "assert isinstance(mean([1, 2, 3]), float)"
    notebooks.write(nb, path)
    return course


@pytest.mark.parametrize("weak", [False, True])
def test_audit_reports_tests_that_shortcuts_pass(tmp_path, weak):
    rows = audit.audit_lab("minilab", root=_minilab(tmp_path, weak))
    by_name = {(r.task, r.name): r for r in rows}
    assert by_name[(None, "solution")].problem == ""
    assert by_name[(1, "random")].problem == "" and by_name[(1, "constant")].problem == ""
    shortcut = by_name[(2, "random")]
    if weak:
        assert shortcut.earned == {2: 3.0}
        assert shortcut.problem == "earns 3/3 on Task 2: test_task2_mean"
    else:
        assert shortcut.problem == "" and shortcut.failures["test_task2_mean"]


def test_audit_names_a_failing_setup_cell(tmp_path):
    course = _minilab(tmp_path, weak_test=False)
    path = course / "source" / "minilab" / "quiz.ipynb"
    nb = notebooks.read(path)
    nb.cells[1].source = "import numpy_that_does_not_exist"
    notebooks.write(nb, path)
    with pytest.raises(audit.CourseError, match="setup cell 0 failed: ModuleNotFoundError"):
        audit.audit_lab("minilab", root=course)


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_shortcuts_and_wrong_answers_earn_nothing(lab):
    rows = audit.audit_lab(lab)
    defects = [audit.format_row(r) for r in rows if r.problem]
    assert not defects, "\n".join(defects)
    # Every task whose answer defines functions met both shortcuts; every wrong answer ran.
    functions = {notebooks.task_of(g) for g, text in solution_cells(lab).items()
                 if notebooks.task_of(g) is not None and audit.defined_functions(text)}
    tasks = {r.task for r in rows if r.kind == audit.BLANK}
    ran = {(r.task, r.kind) for r in rows}
    assert functions and all({(t, audit.RANDOM), (t, audit.CONSTANT)} <= ran for t in functions)
    assert sorted(r.name for r in rows if r.kind == audit.WRONG) == sorted(wrong_answers(lab))
    assert all(r.earned.get(r.task) == 0 for r in rows if r.kind == audit.WRONG)
    assert {notebooks.task_of(grade_id_of(n)) for n in wrong_answers(lab)} == tasks
