"""Lab 3 (issue 10): what its three notebooks promise a student, checked without the course's
models.

Each notebook ends with a trust table over the nine methods of ``course_lib.explain``; each task
cites the paper its test comes from; the graded functions with loops draw a progress bar only when
asked and the notebooks' own calls ask; every written question says how long an answer is and
what to do with stand-in weights. Whether the tests have teeth (blank, random, constant and the
shipped wrong answers earn nothing) is tests/test_audit.py's job, and the real grader's scores
are tests/test_grading.py's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autograder import notebooks
from autograder._paths import REPO_ROOT

from ._course import LAB3, STANDIN_LINE, lab_notebooks, setup_namespace, solution_source

SANITY, LOCALISATION, FOOLING = (REPO_ROOT / "source" / LAB3 / name for name in (
    "1_sanity_checks.ipynb", "2_localisation_and_faithfulness.ipynb",
    "3_fooling_and_class_models.ipynb"))


def _cells(path: Path) -> list:
    return notebooks.read(path).cells


def _markdown(path: Path) -> str:
    return " ".join(" ".join(c.source for c in _cells(path) if c.cell_type == "markdown").split())


def _instructor_code(path: Path) -> list[str]:
    return [c.source for c in _cells(path) if c.cell_type == "code"
            and not notebooks.nbgrader_meta(c).get("grade")
            and not notebooks.nbgrader_meta(c).get("solution")]


def test_the_lab_has_three_notebooks_of_two_tasks():
    assert [p.name for p in lab_notebooks("source", LAB3)] == [SANITY.name, LOCALISATION.name,
                                                               FOOLING.name]
    for path, tasks in ((SANITY, {1, 2}), (LOCALISATION, {3, 4}), (FOOLING, {5, 6})):
        found = {notebooks.task_of(notebooks.nbgrader_meta(c)["grade_id"]) for c in _cells(path)
                 if notebooks.nbgrader_meta(c).get("solution") and c.cell_type == "code"}
        assert found == tasks, path.name


@pytest.mark.parametrize("path", [SANITY, LOCALISATION, FOOLING], ids=lambda p: p.stem)
def test_each_notebook_ends_with_a_trust_table_of_the_nine_methods(path):
    code = _instructor_code(path)
    table = [i for i, source in enumerate(code) if "show_trust_table(" in source]
    assert table and table[-1] == len(code) - 1, "the trust table is the notebook's last code cell"
    assert "METHOD_NAMES" in code[-1] or "recorders" in code[-1], "one row per method"
    last = _cells(path)[-1]
    assert last.cell_type == "markdown" and "table" in last.source.lower(), (
        "the notebook closes by saying how to read its table")


@pytest.mark.parametrize("path, papers", [
    (SANITY, ("arxiv.org/abs/1810.03292", "arxiv.org/abs/1806.07421")),  # Adebayo; Petsiuk (RISE)
    (LOCALISATION, ("arxiv.org/abs/1608.00507", "arxiv.org/abs/1901.09392")),  # Zhang; Yeh
    (FOOLING, ("arxiv.org/abs/1312.6199", "arxiv.org/abs/1412.6572",  # Szegedy; Goodfellow
               "arxiv.org/abs/1312.6034")),  # Simonyan (class models)
], ids=["sanity", "localisation", "fooling"])
def test_each_test_cites_its_paper(path, papers):
    text = _markdown(path)
    for paper in papers:
        assert paper in text, paper


def test_every_written_question_says_how_long_and_what_to_do_with_standin_weights():
    questions = [c.source for path in (SANITY, LOCALISATION, FOOLING) for c in _cells(path)
                 if c.cell_type == "markdown"
                 and re.search(r"^### Task \d+: question", c.source, re.MULTILINE)]
    assert len(questions) == 6, "one written question per task"
    for question in questions:
        assert re.search(r"^\*About \d+-\d+ sentences\. A good answer .+\*$", question,
                         re.MULTILINE | re.DOTALL), question[:60]
        assert question.rstrip().endswith(STANDIN_LINE), question[:60]


# The graded functions with loops, a cheap call of each on a tiny model, and the notebook
# calling it.
BARS = {
    "deletion_curve": (SANITY, 2, "tiny, x, 3, torch.rand(16, 16), steps=4"),
    "insertion_curve": (SANITY, 2, "tiny, x, 3, torch.rand(16, 16), steps=4"),
    "explanation_metrics": (LOCALISATION, 4,
                            "tiny, x, 3, {'edges': edge_detector}, n_perturb=2"),
    "fooling_image": (FOOLING, 5, "tiny, x, 3, epsilon=0.1, steps=2"),
    "class_model": (FOOLING, 6, "tiny, 3, steps=2, size=16"),
}


@pytest.mark.parametrize("name", list(BARS))
def test_graded_functions_draw_a_bar_only_when_asked(name, capsys):
    path, task, arguments = BARS[name]
    namespace = setup_namespace(path)
    exec(compile(solution_source(path, task), "answer", "exec"), namespace)
    exec("from course_lib.explain import edge_detector\n"
         "from course_lib.testing import tiny_cnn, tiny_input\n"
         "tiny, x = tiny_cnn(seed=1), tiny_input(seed=1)", namespace)
    eval(f"{name}({arguments})", namespace)
    assert capsys.readouterr().err == "", f"{name} draws a bar by default"
    eval(f"{name}({arguments}, progress=True)", namespace)
    assert capsys.readouterr().err != "", f"{name}(progress=True) draws no bar"


@pytest.mark.parametrize("name", list(BARS))
def test_the_notebooks_own_first_call_asks_for_the_bar(name):
    path = BARS[name][0]
    calls = [line for source in _instructor_code(path) for line in source.splitlines()
             if re.search(rf"\b{name}\(", line)]
    assert calls and "progress=True" in calls[0], (name, calls)


def test_no_pointer_to_files_students_do_not_have():
    for kind in ("source", "release", "solutions"):
        for path in lab_notebooks(kind, LAB3):
            assert "benchmarks/" not in path.read_text(encoding="utf-8"), path
