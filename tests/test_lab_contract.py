"""The task contract of DESIGN.md, checked on every source notebook (fast, no execution)."""

from __future__ import annotations

import re
from collections import defaultdict

import nbformat
import pytest

from autograder import notebooks
from autograder._paths import list_labs

from ._course import graded_cells, lab_notebooks

LABS = list_labs()
HEADING = re.compile(r"^#+ Task (\d+):.*\((\d+) points(, graded by hand)?\)", re.MULTILINE)


def test_there_is_at_least_one_lab():
    assert "lab1_interpretability" in LABS


@pytest.mark.parametrize("lab", LABS)
def test_source_notebooks_are_valid_and_output_free(lab):
    for path in lab_notebooks("source", lab):
        nb = notebooks.read(path)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name}: source notebooks must carry no outputs"
                assert cell.execution_count is None, f"{path.name}: stale execution count"


@pytest.mark.parametrize("lab", LABS)
def test_grade_ids_are_unique_and_name_their_task(lab):
    ids = [notebooks.nbgrader_meta(c)["grade_id"] for _, c in graded_cells(lab)]
    assert len(ids) == len(set(ids)), f"duplicated grade_id in {lab}"
    for nb_name, cell in graded_cells(lab):
        meta = notebooks.nbgrader_meta(cell)
        if meta.get("grade") or meta.get("solution"):
            assert notebooks.task_of(meta["grade_id"]) is not None, (
                f"{nb_name}: {meta['grade_id']} does not name its task (taskN)")
        if meta.get("grade") and not meta.get("solution"):
            assert meta["grade_id"].startswith("test_task"), meta["grade_id"]


@pytest.mark.parametrize("lab", LABS)
def test_headings_announce_the_points_of_their_task(lab):
    auto, manual = defaultdict(float), defaultdict(float)
    for _, cell in graded_cells(lab):
        meta = notebooks.nbgrader_meta(cell)
        if meta.get("grade"):
            kind = manual if cell.cell_type == "markdown" else auto
            kind[notebooks.task_of(meta["grade_id"])] += meta["points"]
    announced_auto, announced_manual = {}, {}
    for path in lab_notebooks("source", lab):
        for cell in notebooks.read(path).cells:
            if cell.cell_type == "markdown":
                for task, points, by_hand in HEADING.findall(cell.source):
                    target = announced_manual if by_hand else announced_auto
                    target[int(task)] = float(points)
    assert announced_auto == dict(auto), "a '## Task N: ... (P points)' heading is off"
    assert announced_manual == dict(manual), "a '(P points, graded by hand)' heading is off"


@pytest.mark.parametrize("lab", LABS)
def test_solution_cells_keep_a_todo_line_outside_the_solution(lab):
    for nb_name, cell in graded_cells(lab):
        meta = notebooks.nbgrader_meta(cell)
        if not meta.get("solution") or cell.cell_type != "code":
            continue
        task = notebooks.task_of(meta["grade_id"])
        outside = notebooks.drop_region(cell.source, notebooks.BEGIN_SOLUTION,
                                        notebooks.END_SOLUTION)
        assert f"# TODO (Task {task})" in outside, f"{nb_name}: {meta['grade_id']} lacks its TODO"
        assert notebooks.BEGIN_SOLUTION in cell.source, f"{meta['grade_id']} has no solution block"


@pytest.mark.parametrize("lab", LABS)
def test_every_task_has_tests_and_every_test_cell_says_what_it_checks(lab):
    solved = {notebooks.task_of(notebooks.nbgrader_meta(c)["grade_id"])
              for _, c in graded_cells(lab)
              if notebooks.nbgrader_meta(c).get("solution") and c.cell_type == "code"}
    tested = set()
    for nb_name, cell in graded_cells(lab):
        meta = notebooks.nbgrader_meta(cell)
        if meta.get("grade") and cell.cell_type == "code":
            tested.add(notebooks.task_of(meta["grade_id"]))
            assert cell.source.startswith('"""'), f"{nb_name}: {meta['grade_id']} needs a docstring"
            assert notebooks.BEGIN_HIDDEN in cell.source, f"{meta['grade_id']} has no hidden tests"
    assert solved == tested, f"untested: {solved - tested}; tests of no task: {tested - solved}"


@pytest.mark.parametrize("lab", LABS)
def test_manual_answers_carry_a_marking_scheme(lab):
    answers = [c for _, c in graded_cells(lab) if c.cell_type == "markdown"
               and notebooks.nbgrader_meta(c).get("grade")]
    for cell in answers:
        assert notebooks.BEGIN_SCHEME in cell.source, notebooks.nbgrader_meta(cell)["grade_id"]
