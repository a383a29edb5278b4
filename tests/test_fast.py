"""Fast grading (``course grade --fast``, ``autograder/fast.py``): the instructor cells no test
needs are not run, and the grade is the one a full run gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks, sandbox
from autograder.fast import SKIPPED_NOTE, mark_skipped, names_of, plan
from autograder.grade import GradeOptions, grade
from autograder.samples import make_submission

from ._course import FIXTURE_COURSE, fixture_course

LAB = "minilab"
NB = "quiz.ipynb"


# --- reading names ---------------------------------------------------------------------------

def test_names_follow_python_scoping():
    names = names_of(
        "import torch.nn as nn\nfrom math import pi\nx = 1\n"
        "def f(a):\n    b = a + img\n    return [c for c in b if c > pi]\n"
        "class K:\n    size = 3\n"
        "for i in range(2):\n    pass\n")
    assert names.defines == {"nn", "pi", "x", "f", "K", "i"}
    assert names.reads == {"range"}  # `i` is bound by the loop before its body reads it
    assert {"img", "pi"} <= names.fn_reads  # read when `f` runs, whenever that is
    assert not {"a", "b", "c", "size"} & (names.reads | names.fn_reads)  # locals, not globals
    assert names.imports == {"nn": "torch.nn", "pi": "math.pi"}


def test_module_level_reads_are_those_before_the_cell_binds_the_name():
    names = names_of("fig, ax = plt.subplots()\nax.plot(x)\nx = 2\ncount += 1\n"
                     "with open(path) as f:\n    f.read()\nprint(n := 3, n)\n")
    assert names.reads == {"plt", "x", "count", "open", "path", "print"}
    assert {"fig", "ax", "x", "count", "f", "n"} <= names.defines


def test_names_inside_functions_and_global_statements():
    names = names_of("def g():\n    global model\n    model = load()\n    return labels\n")
    assert "model" in names.defines and {"load", "labels"} <= names.fn_reads


def test_magics_are_read_as_python_and_broken_cells_as_nothing():
    names = names_of("%matplotlib inline\n!ls\ny = figure_size * 2\n")
    assert "y" in names.defines and "figure_size" in names.reads
    timed = names_of("%%time\nscores = model(img)\n")  # the body runs as Python
    assert "scores" in timed.defines and {"model", "img"} <= timed.reads
    assert names_of("def broken(:\n    pass") == names_of("")


def test_a_skipped_cell_keeps_the_students_outputs_under_a_note_and_loses_errors():
    cell = nbformat.v4.new_code_cell("plot()")
    picture = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})
    cell.outputs = [picture, nbformat.v4.new_output("error", ename="KernelDied", evalue="fake",
                                                    traceback=[])]
    mark_skipped(cell)
    assert cell.outputs[0].text == SKIPPED_NOTE and cell.outputs[1] == picture
    assert len(cell.outputs) == 2


# --- what a plan skips -----------------------------------------------------------------------

LATER_FIGURE = 'size = "big"\nprint("drawn at size", size)'
REBINDS = "size = 0\ndef add(a, b):\n    return a + b + size"  # reads `size` when called


def _course(root: Path, later: bool = False) -> Path:
    """The fixture lab with its import cell made a setup cell and a figure cell after it (it
    prints, so a graded copy shows whether it ran); ``later``: a second one after Task 1's
    answer, binding ``size``, a name an answer may use too."""
    shutil.copytree(FIXTURE_COURSE / "source", root / "source")
    path = root / "source" / LAB / NB
    nb = notebooks.read(path)
    imports = next(c for c in nb.cells if c.source == "import numpy as np")
    imports.metadata.setdefault("tags", []).append("setup")
    figure = nbformat.v4.new_code_cell('figure = "a bar chart"\nprint("drawn:", figure)')
    figure.metadata["nbgrader"] = {"grade_id": "mini_figure", "locked": True, "solution": False,
                                   "grade": False, "schema_version": 3}
    nb.cells.insert(nb.cells.index(imports) + 1, figure)
    if later:
        answer = next(c for c in nb.cells
                      if notebooks.nbgrader_meta(c).get("grade_id") == "task1_add")
        cell = nbformat.v4.new_code_cell(LATER_FIGURE)
        cell.metadata["nbgrader"] = {**figure.metadata["nbgrader"], "grade_id": "mini_later"}
        nb.cells.insert(nb.cells.index(answer) + 1, cell)
    notebooks.write(nb, path)
    from autograder.build import build

    build(LAB, root=root)
    return root


def _submission(root: Path, student: str, **kwargs) -> nbformat.NotebookNode:
    folder = make_submission(LAB, root / "submitted" / student / LAB, root=root, **kwargs)
    return notebooks.read(folder / NB)


def _trusted(root: Path) -> nbformat.NotebookNode:
    return notebooks.read(root / "source" / LAB / NB)


def test_the_fixture_solution_reads_a_name_of_an_untagged_cell_so_that_cell_runs(tmp_path):
    root = fixture_course(tmp_path / "course")
    result = plan(_submission(root, "s"), _trusted(root))
    assert result.skip == frozenset() and result.needed == ("mini_code_02",)  # `np`


def test_figure_cells_are_skipped_unless_the_students_code_reads_their_names(tmp_path):
    root = _course(tmp_path / "course")
    trusted = _trusted(root)
    assert plan(_submission(root, "solution"), trusted).skip == {"mini_figure"}
    assert plan(_submission(root, "blank", solve=[]), trusted).skip == {"mini_figure"}

    reads = _submission(root, "reads", overrides={
        "task1_add": "def add(a, b):\n    return a + b + len(figure) * 0"})
    result = plan(reads, trusted)
    assert result.skip == frozenset() and result.needed == ("mini_figure",)

    own = _submission(root, "own", overrides={"task1_add": "figure = 'mine'\ndef add(a, b):\n"
                                                           "    return a + b + len(figure) * 0"})
    assert plan(own, trusted).skip == {"mini_figure"}  # the student's own `figure`

    # The figure cell comes before the answers: the student's own module-level reads of
    # `figure` after binding it, and its function's read, see the student's value.
    later = _submission(root, "later", overrides={
        "task1_add": "print(figure)\nfigure = 'mine'\ndef add(a, b):\n"
                     "    return a + b + len(figure) * 0"})
    assert plan(later, trusted).needed == ("mini_figure",)  # the print reads the figure's

    added = _submission(root, "added")
    added.cells.append(nbformat.v4.new_code_cell("print(figure.upper())"))  # an extra cell
    assert plan(added, trusted).needed == ("mini_figure",)


def test_only_the_cells_a_name_comes_from_run_and_those_they_read_from(tmp_path):
    root = _course(tmp_path / "course")
    path = root / "source" / LAB / NB
    nb = notebooks.read(path)
    figure = next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") ==
                  "mini_figure")
    for n, source in enumerate(('caption = figure.title()\nprint(caption)',
                                'unrelated = "another figure"\nprint(unrelated)'), start=2):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {**figure.metadata["nbgrader"], "grade_id": f"mini_fig{n}"}
        nb.cells.insert(nb.cells.index(figure) + n - 1, cell)
    notebooks.write(nb, path)
    from autograder.build import build

    build(LAB, root=root)
    trusted = _trusted(root)
    assert plan(_submission(root, "solution"), trusted).skip == {
        "mini_figure", "mini_fig2", "mini_fig3"}
    reads = _submission(root, "reads", overrides={
        "task1_add": "def add(a, b):\n    return a + b + len(caption) * 0"})
    result = plan(reads, trusted)
    # `caption` comes from mini_fig2, which reads `figure` from mini_figure: both run, in order
    assert result.needed == ("mini_figure", "mini_fig2") and result.skip == {"mini_fig3"}


def test_a_later_figure_cell_runs_when_it_rebinds_a_name_the_students_function_reads(tmp_path):
    root = _course(tmp_path / "course", later=True)
    trusted = _trusted(root)
    assert plan(_submission(root, "solution"), trusted).skip == {"mini_figure", "mini_later"}
    # In a full run `add` sees the figure's `size = "big"` (the figure cell comes after the
    # answer and before the test), so skipping it would change the grade: it runs.
    rebinds = plan(_submission(root, "rebinds", overrides={"task1_add": REBINDS}), trusted)
    assert rebinds.needed == ("mini_later",) and rebinds.skip == {"mini_figure"}
    # Bound again after the figure, at module level, the student's value is the one read.
    again = _submission(root, "again", overrides={"task1_add": REBINDS})
    again.cells.insert(next(i for i, c in enumerate(again.cells) if notebooks.nbgrader_meta(
        c).get("grade_id") == "mini_later") + 1, nbformat.v4.new_code_cell("size = 0"))
    assert plan(again, trusted).skip == {"mini_figure", "mini_later"}
    # A test (run in the harness, which looks the name up in the kernel) reading it counts too.
    tests = _submission(root, "tests")
    test = next(c for c in tests.cells
                if notebooks.nbgrader_meta(c).get("grade_id") == "test_task2_mean")
    test.source += "\nassert size"
    assert plan(tests, trusted).needed == ("mini_later",)


def test_an_import_made_again_by_a_skipped_cell_needs_no_run(tmp_path):
    root = _course(tmp_path / "course", later=True)
    path = root / "source" / LAB / NB
    nb = notebooks.read(path)
    later = next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") ==
                 "mini_later")
    later.source = "import numpy as np\n" + later.source
    notebooks.write(nb, path)
    trusted = _trusted(root)
    assert plan(_submission(root, "solution"), trusted).skip == {"mini_figure", "mini_later"}
    other = _submission(root, "other", overrides={
        "task1_add": "import math as np\ndef add(a, b):\n    return a + b"})
    assert plan(other, trusted).needed == ("mini_later",)  # a different `np` than the student's


# --- a batch graded both ways ----------------------------------------------------------------

OPTIONS = GradeOptions(jobs=2, cell_timeout=20, notebook_timeout=300,
                       sandbox=sandbox.detect().active)


@pytest.mark.slow
def test_fast_grading_gives_the_full_runs_grades_and_keeps_the_students_figures(tmp_path):
    roots = {mode: _course(tmp_path / mode, later=True) for mode in ("fast", "full")}
    for root in roots.values():
        sub = root / "submitted"
        make_submission(LAB, sub / "solution" / LAB, root=root)
        make_submission(LAB, sub / "blank" / LAB, solve=[], root=root)
        make_submission(LAB, sub / "wrong" / LAB, root=root, overrides={
            "task2_mean": "def mean(values):\n    return float(values[0])"})
        make_submission(LAB, sub / "reads" / LAB, root=root, overrides={
            "task1_add": "def add(a, b):\n    return a + b + len(figure) * 0"})
        make_submission(LAB, sub / "rebinds" / LAB, root=root, overrides={"task1_add": REBINDS})
        make_submission(LAB, sub / "hidden" / LAB, root=root, overrides={
            "task1_add": "def add(a, b):\n    return a + b + len(eval('figure')) * 0"})
        folder = sub / "solution" / LAB
        nb = notebooks.read(folder / NB)
        figure = next(c for c in nb.cells
                      if notebooks.nbgrader_meta(c).get("grade_id") == "mini_figure")
        figure.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                 text="drawn on the student's laptop\n")]
        notebooks.write(nb, folder / NB)

    results = {mode: {r.student: r for r in grade(LAB, root=root, options=OPTIONS.replace(
        fast=mode == "fast"))} for mode, root in roots.items()}
    scores = {mode: {s: (r.tasks, r.auto_score) for s, r in res.items()}
              for mode, res in results.items()}
    # Read where no static reading sees it, `figure` is missing: the test fails and says why,
    # in the graded copy and in the problem column, which says to grade with --full.
    hidden = scores["fast"].pop("hidden")
    assert hidden[0][1] == (0.0, 2.0) and scores["full"].pop("hidden")[0][1] == (2.0, 2.0)
    assert "`figure`" in results["fast"]["hidden"].problem
    assert "--full" in results["fast"]["hidden"].problem
    graded = notebooks.read(roots["fast"] / "autograded" / "hidden" / LAB / NB)
    errors = [o for c in graded.cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert any("fast grading does not run (mini_figure" in o.evalue for o in errors), errors
    assert scores["fast"] == scores["full"]
    assert scores["fast"]["solution"][1] == 5 and scores["fast"]["blank"][1] == 0
    assert scores["fast"]["wrong"][1] == 2 and scores["fast"]["reads"][1] == 5
    assert scores["fast"]["rebinds"][1] == 3  # `add` read the later figure's `size = "big"`

    def figure_output(mode: str, student: str) -> str:
        graded = notebooks.read(roots[mode] / "autograded" / student / LAB / NB)
        cell = next(c for c in graded.cells
                    if notebooks.nbgrader_meta(c).get("grade_id") == "mini_figure")
        return "".join(o.get("text", "") for o in cell.outputs)

    assert figure_output("fast", "solution") == SKIPPED_NOTE + "drawn on the student's laptop\n"
    assert figure_output("full", "solution") == "drawn: a bar chart\n"
    assert figure_output("fast", "reads") == "drawn: a bar chart\n"  # its code reads `figure`
    assert all(r.problem == "" for res in results.values() for s, r in res.items()
               if (s, res) != ("hidden", results["fast"]))
