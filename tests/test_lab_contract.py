"""The task contract of docs/design.md, checked on every source notebook (fast, no execution)."""

from __future__ import annotations

import ast
import builtins
import re
from collections import defaultdict

import nbformat
import pytest

from autograder import notebooks
from autograder._paths import list_labs
from autograder.harness import python_source, split_hidden
from autograder.nbgrader_ext import is_setup_cell, is_test_cell

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


# --- tests that run in both places (docs/design.md, "Tests that run in both places") --------

def _stores(tree: ast.AST) -> set[str]:
    """Names a piece of code binds anywhere (assignments, defs, imports, arguments, loops)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def _loads(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _cells(path):
    """(setup names, answer names, [(grade_id, test source)]) of one source notebook."""
    setup, answers, tests = set(), set(), []
    for cell in notebooks.read(path).cells:
        meta = notebooks.nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if is_setup_cell(cell):
            setup |= _stores(ast.parse(python_source(cell.source)))
        elif meta.get("solution"):
            answers |= _stores(ast.parse(notebooks.solution_text(cell.source)))
        elif is_test_cell(cell):
            tests.append((meta["grade_id"], cell.source))
    return setup, answers, tests


@pytest.mark.parametrize("lab", LABS)
def test_test_cells_use_only_setup_names_answers_and_their_own(lab):
    """A test runs in the grader: the notebook's other instructor cells never run there."""
    for path in lab_notebooks("source", lab):
        setup, answers, tests = _cells(path)
        for grade_id, source in tests:
            tree = ast.parse(source)
            free = _loads(tree) - _stores(tree) - setup - answers - set(dir(builtins))
            assert not free, (f"{path.name}: {grade_id} uses {sorted(free)}, defined by no "
                              "setup-tagged cell and no answer: tag the cell that defines it "
                              "'setup' (and keep it free of student names)")


@pytest.mark.parametrize("lab", LABS)
def test_setup_cells_never_use_the_students_names(lab):
    for path in lab_notebooks("source", lab):
        nb = notebooks.read(path)
        _, answers, _ = _cells(path)
        for cell in nb.cells:
            if is_setup_cell(cell):
                tree = ast.parse(python_source(cell.source))
                used = (_loads(tree) - _stores(tree)) & answers
                assert not used, f"{path.name}: a setup cell uses the student's {sorted(used)}"
                assert notebooks.nbgrader_meta(cell).get("locked"), "setup cells are locked"


@pytest.mark.parametrize("lab", LABS)
def test_test_cells_follow_the_rules_of_the_harness(lab):
    for path in lab_notebooks("source", lab):
        for grade_id, source in _cells(path)[2]:
            where = f"{path.name}: {grade_id}"
            assert source.count(notebooks.BEGIN_HIDDEN) <= 1, f"{where}: one hidden part"
            for line in source.splitlines():
                if notebooks.BEGIN_HIDDEN in line or notebooks.END_HIDDEN in line:
                    assert line == line.lstrip(), f"{where}: hidden markers at top level"
            assert not re.search(r"^\s*[%!]", source, re.MULTILINE), f"{where}: no magics"
            tree = ast.parse(source)
            kernel_copies = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                             and _calls(node.value, "in_kernel") for t in node.targets
                             if isinstance(t, ast.Name)}
            for node in ast.walk(tree):
                assert not _calls(node, "type"), (
                    f"{where}: type(x) is the proxy's class in the grader; use x.__class__ or "
                    "isinstance")
                if _calls(node, "count_hooks"):
                    arg = node.args[0]
                    assert _calls(arg, "in_kernel") or (
                        isinstance(arg, ast.Name) and arg.id in kernel_copies), (
                        f"{where}: count_hooks() of the grader's own copy cannot fail; count "
                        "the hooks of in_kernel(model)")


def _calls(node: ast.AST, name: str) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == name)


# --- what a student sees under a test cell (issue 13) ----------------------------------------

PASSED_LINE = re.compile(r"✓ Task (\d+): visible checks passed( \(test cell \d+ of \d+\))?")
# Answers that draw progress bars (their own tqdm loop, or pytorch-grad-cam's Score-CAM)
NOISY = re.compile(r"\btqdm\(|\bScoreCAM\(")


def _printed(node: ast.stmt) -> str | None:
    """The text of a ``print("...")`` statement, else None."""
    if (isinstance(node, ast.Expr) and _calls(node.value, "print") and len(node.value.args) == 1
            and isinstance(node.value.args[0], ast.Constant)
            and isinstance(node.value.args[0].value, str)):
        return node.value.args[0].value
    return None


@pytest.mark.parametrize("lab", LABS)
def test_visible_tests_end_by_saying_that_they_passed(lab):
    """The visible part's last statement prints "✓ Task N: visible checks passed"; nothing else
    in a test cell prints (the grader discards the line: it shows only assertion messages)."""
    for path in lab_notebooks("source", lab):
        for grade_id, source in _cells(path)[2]:
            visible = split_hidden(source)[0]
            last = ast.parse(visible).body[-1]
            text = _printed(last)
            match = PASSED_LINE.fullmatch(text or "")
            assert match and int(match.group(1)) == notebooks.task_of(grade_id), (
                f"{path.name}: {grade_id}'s visible part should end with "
                f'print("✓ Task {notebooks.task_of(grade_id)}: visible checks passed")')
            prints = [n for n in ast.walk(ast.parse(source)) if _calls(n, "print")]
            assert len(prints) == 1, f"{path.name}: {grade_id} prints more than its ✓ line"


@pytest.mark.parametrize("lab", LABS)
def test_answers_with_progress_bars_are_called_quietly_in_visible_tests(lab):
    """A student's tqdm loop or Score-CAM draws a bar (on stderr: a red box) under a passing
    test unless the visible test calls it inside ``with quiet_progress():``."""
    for path in lab_notebooks("source", lab):
        noisy = set()
        for cell in notebooks.read(path).cells:
            meta = notebooks.nbgrader_meta(cell)
            if cell.cell_type == "code" and meta.get("solution"):
                tree = ast.parse(notebooks.solution_text(cell.source))
                noisy |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                          and NOISY.search(ast.get_source_segment(
                              notebooks.solution_text(cell.source), node) or "")}
        for grade_id, source in _cells(path)[2]:
            tree = ast.parse(split_hidden(source)[0])
            quiet = {id(node) for with_ in ast.walk(tree) if isinstance(with_, ast.With)
                     and any(_calls(item.context_expr, "quiet_progress") for item in with_.items)
                     for statement in with_.body for node in ast.walk(statement)}
            loud = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name) and node.func.id in noisy
                    and id(node) not in quiet]
            assert not loud, (f"{path.name}: {grade_id} calls {sorted(set(loud))} outside "
                              "`with quiet_progress():` (course_lib.testing)")


def test_the_labs_have_answers_with_progress_bars():
    """The check above has something to check (Score-CAM, occlusion, SmoothGrad)."""
    found = [cell for lab in LABS for _, cell in graded_cells(lab)
             if notebooks.nbgrader_meta(cell).get("solution") and NOISY.search(cell.source)]
    assert len(found) >= 2
