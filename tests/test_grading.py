"""Autograding the labs with real nbgrader into a real SQLite gradebook.

A throwaway course folder receives sample submissions made from each lab's own notebooks: the
solution, the untouched release, and copies with known-wrong answers
(``autograder/samples/<lab>/wrong``), several per submission: each must lose exactly the points
of its broken tasks. (``tests/test_audit.py`` runs every wrong answer alone, and random and
constant shortcuts, against the tests in-process; this file checks that the real grader agrees.)
The demo's students join them, and the whole class is graded twice, as ``course grade`` does by
default (fast: the figure cells are not run) and with ``--full``: every score must agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from autograder import notebooks, sandbox
from autograder.grade import GradeOptions, format_table, grade, write_csv
from autograder.samples import (
    ALL,
    demo_students,
    grade_id_of,
    make_submission,
    wrong_answers,
    wrong_overrides,
)

from ._course import LAB1, LAB2, LAB3, LABS, copy_course, graded_cells

pytestmark = pytest.mark.slow

# Each task is broken at most once per submission; several tasks of a notebook may break together
# (tests/test_audit.py checks each wrong answer alone against its whole notebook, so masking
# between two broken tasks would show there). Few submissions keep this test to minutes.
WRONG_GROUPS = {
    LAB1: {
        "wrong_a": ("task1_model", "task2_transform--course_helper", "task3_inference",
                    "task5_visualize_filter", "task6_ig", "task8_noise_tunnel",
                    "task9_compare--random"),
        "wrong_b": ("task1_model--course_helper", "task2_transform", "task3_inference--postprocess",
                    "task4_graph", "task5_visualize_filter--hardcoded", "task7_visualize",
                    "task8_noise_tunnel--range_fraction", "task9_compare"),
    },
    LAB2: {
        # Notebooks: 1 = Tasks 1-2, 2 = Tasks 3-4, 3 = Tasks 5-7.
        "wrong_a": ("task1_activations", "task3_gradcam", "task4_cam_family--all_channels",
                    "task5_occlusion", "task6_saliency"),
        "wrong_b": ("task1_activations--forward_until", "task2_sparsity",
                    "task3_gradcam--max_only", "task5_occlusion--border", "task7_attention"),
        "wrong_c": ("task1_activations--course_helper", "task2_sparsity--nonpositive",
                    "task3_gradcam--hook_left", "task4_cam_family", "task5_occlusion--clamped"),
        "wrong_d": ("task3_gradcam--captum", "task5_occlusion--course_explain"),
    },
    LAB3: {
        # Notebooks: 1 = Tasks 1-2, 2 = Tasks 3-4, 3 = Tasks 5-6.
        "wrong_a": ("task1_randomization", "task3_pointing_game", "task5_fooling"),
        "wrong_b": ("task2_deletion_insertion", "task4_infidelity_sensitivity",
                    "task6_class_model"),
        "wrong_c": ("task1_randomization--pearson", "task3_pointing_game--abs",
                    "task4_infidelity_sensitivity--no_normalize", "task6_class_model--descends"),
        "wrong_d": ("task1_randomization--signed", "task2_deletion_insertion--rectangle",
                    "task3_pointing_game--abs_energy", "task5_fooling--ascend"),
        "wrong_e": ("task3_pointing_game--argmax", "task4_infidelity_sensitivity--one_channel",
                    "task5_fooling--unclipped", "task6_class_model--no_blur"),
        "wrong_f": ("task3_pointing_game--constant_hit",
                    "task4_infidelity_sensitivity--shared_generator", "task5_fooling--unprojected",
                    "task6_class_model--no_l2"),
        "wrong_g": ("task3_pointing_game--inclusive_right",
                    "task4_infidelity_sensitivity--top_class"),
        "wrong_h": ("task4_infidelity_sensitivity--unseeded_sensitivity",),
    },
}
# Grading with --full runs every figure cell: Lab 3's take about two minutes per submission, so its
# comparison of full and fast grades covers the solution, the blank release (its figure cells fail
# on the unfinished answers: the student's failures, not the course's), one submission with three
# wrong answers (one per notebook) and the crashed kernel; the other labs compare the whole class.
FULL_RUN_STUDENTS = {LAB3: ("solution", "blank", "wrong_a", "demo_erin")}
MANUAL_POINTS = {LAB1: 18, LAB2: 23, LAB3: 18}
SOLUTION_CSV = {
    LAB1: "solution,lab1_interpretability,5,5,10,5,15,10,5,10,15,80,80,0,18",
    LAB2: "solution,lab2_inside_convnets,15,10,20,10,15,15,15,100,100,0,23",
    LAB3: "solution,lab3_trusting_explanations,15,15,15,15,15,15,90,90,0,18",
}


def _task_points(lab: str, cell_type: str = "code") -> dict[int, float]:
    """Points per task of the lab's test cells (or, with "markdown", of its written answers)."""
    points: dict[int, float] = {}
    for _, cell in graded_cells(lab):
        meta = notebooks.nbgrader_meta(cell)
        if meta.get("grade") and cell.cell_type == cell_type:
            task = notebooks.task_of(meta["grade_id"])
            points[task] = points.get(task, 0.0) + meta["points"]
    return points


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _class(lab: str, only: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Student -> make_submission's arguments: solution, blank, wrong answers, the demo's
    (``only``: just these students)."""
    students = {
        "solution": {"solve": ALL},
        "blank": {"solve": []},
        **{name: {"solve": ALL, "overrides": wrong_overrides(lab, ids)}
           for name, ids in WRONG_GROUPS[lab].items()},
        **{f"demo_{name}": how for name, how in demo_students(lab).items()
           if name in ("carol", "erin")},  # alice, bob and dave are solution, blank, wrong
    }
    return {name: plan for name, plan in students.items() if only is None or name in only}


def _grade_class(lab: str, root: Path, full: bool = False):
    only = FULL_RUN_STUDENTS.get(lab) if full else None
    for student, plan in _class(lab, only).items():
        make_submission(lab, root / "submitted" / student / lab, **plan)
    before = _digest(root / "submitted")
    # Sandboxed wherever the machine can (always in CI: tests/test_sandbox.py fails without it).
    options = GradeOptions(jobs=2, sandbox=sandbox.detect().active, fast=not full)
    return {r.student: r for r in grade(lab, root=root, options=options)}, before


@pytest.fixture(scope="module", params=LABS)
def graded(request, tmp_path_factory):
    lab = request.param
    root = copy_course(tmp_path_factory.mktemp("course"))
    results, before = _grade_class(lab, root)
    return lab, root, results, before


def test_full_runs_give_the_fast_grades(graded, tmp_path):
    """``course grade --full`` (every cell run) and the default agree on every student."""
    lab, _, fast, _ = graded
    full, _ = _grade_class(lab, copy_course(tmp_path), full=True)
    assert set(full) == set(FULL_RUN_STUDENTS.get(lab, fast))
    assert {s: r.tasks for s, r in full.items()} == {s: fast[s].tasks for s in full}
    assert {s: r.manual for s, r in full.items()} == {s: fast[s].manual for s in full}
    # The blank release's figure cells fail on its unfinished answers: the student's failures,
    # never reported as the course's (a figure cell reading what a failed cell would have bound).
    assert full["blank"].problem == "", full["blank"].problem
    # Every cell of the solution runs, hidden tests gone: tests/test_notebooks.py runs only the
    # source copy, and counts on this for solutions/.
    assert full["solution"].problem == "", full["solution"].problem
    assert fast["demo_erin"].auto_score < fast["solution"].auto_score  # the crash cost points


@pytest.mark.parametrize("lab", LABS)
def test_every_wrong_answer_is_used(lab):
    used = [name for names in WRONG_GROUPS[lab].values() for name in names]
    assert sorted(used) == sorted(wrong_answers(lab)), "each shipped wrong answer is graded once"
    assert {notebooks.task_of(grade_id_of(n)) for n in used} == set(_task_points(lab)), (
        "every task has a wrong answer")
    for names in WRONG_GROUPS[lab].values():  # each task broken at most once per submission
        tasks = [notebooks.task_of(grade_id_of(n)) for n in names]
        assert len(tasks) == len(set(tasks)), names


def test_solution_scores_full_marks(graded):
    lab, _, results, _ = graded
    solution = results["solution"]
    assert solution.problem == ""
    assert {t: s for t, (s, _) in solution.tasks.items()} == _task_points(lab)
    assert solution.auto_score == solution.auto_max == sum(_task_points(lab).values())
    # Written answers are for a person to grade.
    assert solution.manual == sum(_task_points(lab, "markdown").values()) == MANUAL_POINTS[lab]


def test_blank_release_scores_zero(graded):
    lab, _, results, _ = graded
    blank = results["blank"]
    assert blank.auto_max == sum(_task_points(lab).values())
    assert {t: s for t, (s, _) in blank.tasks.items()} == dict.fromkeys(_task_points(lab), 0.0)


def test_each_wrong_answer_loses_exactly_its_task(graded):
    lab, _, results, _ = graded
    points = _task_points(lab)
    for student, grade_ids in WRONG_GROUPS[lab].items():
        broken = {notebooks.task_of(grade_id_of(g)) for g in grade_ids}
        expected = {t: (0.0 if t in broken else p) for t, p in points.items()}
        got = {t: s for t, (s, _) in results[student].tasks.items()}
        assert got == expected, f"{student} ({', '.join(grade_ids)})"


def test_submissions_are_never_modified(graded):
    _, root, _, before = graded
    assert _digest(root / "submitted") == before


def test_gradebook_csv_and_table(graded, tmp_path):
    lab, root, results, _ = graded
    assert (root / "gradebook.db").stat().st_size > 0
    csv_text = write_csv(list(results.values()), tmp_path / "grades.csv").read_text()
    assert csv_text.splitlines()[0].startswith("student,lab,task1,task2")
    assert any(line.startswith(SOLUTION_CSV[lab]) for line in csv_text.splitlines()), csv_text
    table = format_table(list(results.values()))
    total = int(sum(_task_points(lab).values()))
    assert f"T6/{int(_task_points(lab)[6])}" in table and "blank" in table and f"0/{total}" in table
