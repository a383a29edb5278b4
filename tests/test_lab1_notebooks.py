"""Lab 1's notebooks keep the fixes of issue 12.

What a student meets there: text that suggests only code that runs (`internal_batch_size` an int,
every Captum class the text names imported), the Task 7 TODO that names `VISUALIZATIONS`, one
heading style, the links the seed labs gave, ``stdevs`` in input units, no progress bar from a
graded function unless asked for, the course-wide lines under each written question, the filter
material of the textbook chapter, and tests that give no points to a course_lib helper doing
Tasks 1 to 3. The checks run test cells of the source notebooks in this process, in a namespace
made of their setup cells' imports, against the solution and against shipped wrong answers
(tests/test_lab_contract.py checks the task contract itself; tests/test_notebooks.py runs the
notebooks).
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from autograder import notebooks
from autograder._paths import REPO_ROOT
from autograder.harness import python_source
from autograder.nbgrader_ext import is_test_cell

from ._course import (
    STANDIN_LINE,
    failing_cells,
    grade_id,
    setup_namespace,
    solution_source,
    task_test_cells,
    wrong_answer,
)

LAB = "lab1_interpretability"
INFERENCE = REPO_ROOT / "source" / LAB / "1_inference.ipynb"
FILTERS = REPO_ROOT / "source" / LAB / "2_filters.ipynb"
ATTRIBUTIONS = REPO_ROOT / "source" / LAB / "3_attributions.ipynb"
NOTEBOOKS = (INFERENCE, FILTERS, ATTRIBUTIONS)
ABOUT_LINE = re.compile(r"^\*About \d+-\d+ sentences\. A good answer [^*]+\*$", re.MULTILINE)


def _cells(path: Path) -> list:
    return notebooks.read(path).cells




def _markdown(path: Path) -> str:
    """The notebook's instructor markdown (no answers), whitespace collapsed."""
    return " ".join(" ".join(c.source for c in _cells(path) if c.cell_type == "markdown"
                             and not notebooks.nbgrader_meta(c).get("grade")).split())


def _code(path: Path, cell_id: str) -> str:
    return next(c.source for c in _cells(path) if c.get("id") == cell_id)




def _failures(path: Path, task: int, answers: list[str], *, part: str) -> dict[str, str]:
    """Run ``answers`` then the task's test cells (``part``: visible, hidden or both);
    ``{grade_id: error}`` for the cells that failed."""
    namespace = setup_namespace(path)
    for answer in answers:
        exec(compile(answer, "answer", "exec"), namespace)
    return failing_cells(namespace, task_test_cells(path, task), part=part)


def _wrong(name: str) -> str:
    return wrong_answer(LAB, name)


def _test_ids(path: Path, task: int) -> set[str]:
    return {grade_id(c) for c in _cells(path)
            if is_test_cell(c) and notebooks.task_of(grade_id(c)) == task}


# --------------------------------------------------------------------------- items 1, 6, 7: code

def test_internal_batch_size_is_suggested_as_an_int():
    """Item 1: "`n_steps`/2" written literally makes Captum raise ``TypeError: slice indices must
    be integers``; every expression the text suggests for it evaluates to an int."""
    text = _markdown(ATTRIBUTIONS)
    assert "`n_steps`/2" not in text
    sentences = [s for s in re.split(r"(?<=[.:;])\s", text) if "internal_batch_size" in s]
    suggested = [span.removeprefix("internal_batch_size=") for s in sentences
                 for span in re.findall(r"`([^`]*n_steps[^`]*)`", s) if span != "n_steps"]
    assert suggested, "the text suggests an internal_batch_size"
    for expression in suggested:
        for n_steps in (1, 7, 50):
            value = eval(expression, {"max": max, "min": min, "n_steps": n_steps})  # noqa: S307
            assert isinstance(value, int) and value >= 1, (expression, n_steps, value)


def test_the_task7_todo_names_visualizations():
    todo = next(line for line in _code(ATTRIBUTIONS, "task7-visualize").splitlines()
                if line.startswith("# TODO (Task 7)"))
    assert "VISUALIZATIONS" in todo


def test_every_captum_class_the_text_names_is_imported():
    """Item 6: Task 9 suggested GradientShap, which the notebook did not import."""
    namespace = setup_namespace(ATTRIBUTIONS)
    import captum.attr

    named = {name for name in re.findall(r"`([A-Z][A-Za-z]+)`", _markdown(ATTRIBUTIONS))
             if hasattr(captum.attr, name)}
    assert "GradientShap" in named
    missing = sorted(name for name in named if name not in namespace)
    assert not missing, f"named in the text but not imported by the first cell: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_cell_uses_is_defined_before_it(path):
    """Instructor and answer cells, top to bottom: a name read at a cell's top level, or inside
    its functions, is bound by that cell, an earlier cell, or Python itself."""
    bound = set(dir(builtins))
    for cell in _cells(path):
        if cell.cell_type != "code":
            continue
        meta = notebooks.nbgrader_meta(cell)
        source = notebooks.solution_text(cell.source) if meta.get("solution") else cell.source
        tree = ast.parse(python_source(source))
        stores = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                  and isinstance(n.ctx, ast.Store)}
        stores |= {n.name for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        stores |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        stores |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and n.name}
        stores |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
                   if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Load)}
        free = loads - stores - bound
        assert not free, f"{path.name}: {grade_id(cell)} uses {sorted(free)}, unbound before it"
        bound |= stores


# --------------------------------------------------------------------------- item 8: headings

def test_headings_follow_one_style():
    """``## Task N: ... (P points)`` for a task, ``### Task N: question(s) (P points, graded by
    hand)`` for its written questions; never two level-2 headings of one task."""
    level2: dict[int, int] = {}
    for path in NOTEBOOKS:
        for cell in _cells(path):
            if cell.cell_type != "markdown":
                continue
            for line in cell.source.splitlines():
                if not re.match(r"^#+ Task \d+", line):
                    continue
                task = int(re.match(r"^#+ Task (\d+)", line).group(1))
                if line.startswith("## "):
                    assert re.fullmatch(r"## Task \d+: [^()]+ \(\d+ points\)", line), line
                    assert "question" not in line, line
                    level2[task] = level2.get(task, 0) + 1
                else:
                    assert re.fullmatch(
                        r"### Task \d+: questions? \(\d+ points, graded by hand\)", line), line
    assert level2 and all(count == 1 for count in level2.values()), level2


def test_filters_notebook_uses_filter_and_channel_consistently():
    """A filter is one convolution kernel; a picture is the input that maximises one channel of a
    stage's output (that channel's filter's preferred input)."""
    text = _markdown(FILTERS)
    assert "A convolution **filter** is one convolution kernel" in text
    assert "preferred input" in text
    grid = _code(FILTERS, "nb2-code-05")
    assert 'f"channel {i}"' in grid and 'f"filter {i}"' not in grid


# --------------------------------------------------------------------------- item 9

def test_the_parameters_question_is_plain():
    question = " ".join(_code(INFERENCE, "nb1-md-12").split())
    assert "even though the graph is used for one forward pass of a whole batch" not in question
    assert "appears only once" in question and "a number or a whole tensor" in question


# --------------------------------------------------------------------------- item 12

QUESTIONS_WITH_FIGURES = {  # cell id of each question -> does its answer depend on figures?
    FILTERS: {"nb2-md-06": True, "nb2-md-07": False, "nb2-md-08": True, "nb2-md-09": True,
              "nb2-md-10": False},
    ATTRIBUTIONS: {"nb3-md-07": True, "nb3-md-12": True},
}


def test_every_written_question_says_how_long_and_what_to_do_with_standin_weights():
    for path, questions in QUESTIONS_WITH_FIGURES.items():
        cells = _cells(path)
        for index, cell in enumerate(cells):
            after = cells[index + 1] if index + 1 < len(cells) else None
            if after is not None and after.cell_type == "markdown" and \
                    notebooks.nbgrader_meta(after).get("grade"):
                assert cell.get("id") in questions, f"{path.name}: a question not listed here"
        for cell_id, figures in questions.items():
            question = _code(path, cell_id)
            assert ABOUT_LINE.search(question), (path.name, cell_id)
            assert question.rstrip().endswith(STANDIN_LINE) == figures, (path.name, cell_id)


def test_standin_weights_are_explained_in_each_introduction():
    for path in NOTEBOOKS:
        intro = " ".join(_cells(path)[0].source.split())
        assert "*stand-in* weights" in intro and "`make fetch-weights`" in intro, path.name


# --------------------------------------------------------------------------- item 14: links

def test_the_links_of_the_seed_labs_are_there():
    attributions = _markdown(ATTRIBUTIONS)
    # The image tutorial was Resnet_TorchVision_Interpret until Captum renamed it (2023).
    for url in ("https://captum.ai/tutorials/TorchVision_Interpret",
                "https://captum.ai/docs/algorithms_comparison_matrix",
                "https://captum.ai/api/utilities.html#visualization"):
        assert url in attributions, url
    filters = _markdown(FILTERS)
    assert "https://www.manning.com/books/deep-learning-with-python-third-edition" in filters
    assert 'ch. 10, section "Visualizing convnet filters"' in filters
    assert "Chollet and Watson" in filters and "second-edition" not in filters


# --------------------------------------------------------------------------- item 4: sigma

def test_stdevs_means_one_thing_and_the_text_says_so():
    text = _markdown(ATTRIBUTIONS)
    for phrase in ("standard deviation of the Gaussian noise **in the units of the normalised "
                   "input tensor**", r"\sigma / (x_{max} - x_{min})", "10-20 %",
                   "about 3 % of its range", "Lab 2 (notebook 3, Task 6)"):
        assert phrase in text, phrase
    assert "15 % of the input's range" not in text
    signature = _code(ATTRIBUTIONS, "task8-noise-tunnel")
    assert "stdevs: float = 0.15" in signature and "input.max() - input.min()" not in signature
    figure = _code(ATTRIBUTIONS, "nb3-code-09")
    assert "stdevs=stdevs" in figure and "in input units" in figure


def test_task8_reads_the_noise_level_back(capsys):
    """stdevs as a fraction of the range (the paper's convention) fails both cells of Task 8."""
    solution = solution_source(ATTRIBUTIONS, 8)
    assert _failures(ATTRIBUTIONS, 8, [solution], part="both") == {}
    wrong = _wrong("task8_noise_tunnel--range_fraction.py")
    assert set(_failures(ATTRIBUTIONS, 8, [wrong], part="both")) == _test_ids(ATTRIBUTIONS, 8)
    capsys.readouterr()


# --------------------------------------------------------------------------- item 15: progress

def test_visualize_filter_draws_a_bar_only_when_asked(capsys):
    namespace = setup_namespace(FILTERS)
    exec(compile(solution_source(FILTERS, 5), "answer", "exec"), namespace)
    from course_lib.testing import tiny_cnn

    model = tiny_cnn(seed=1)
    namespace["visualize_filter"](model, model.features[2], 1, iterations=3, image_size=16)
    assert capsys.readouterr().err == "", "visualize_filter draws a bar by default"
    namespace["visualize_filter"](model, model.features[2], 1, iterations=3, image_size=16,
                                  progress=True)
    assert capsys.readouterr().err != "", "visualize_filter(progress=True) draws no bar"


def test_the_notebooks_own_calls_show_progress():
    """Each call of a graded function with a loop, outside the tests, asks for the bar or sits
    in a loop that draws its own."""
    for cell in _cells(FILTERS):
        meta = notebooks.nbgrader_meta(cell)
        if cell.cell_type != "code" or meta.get("grade") or meta.get("solution"):
            continue
        if "visualize_filter(" in cell.source:
            assert "progress=True" in cell.source or "with tqdm(" in cell.source, grade_id(cell)


# --------------------------------------------------------------------------- item 16: helpers

def test_course_lib_helpers_mark_what_they_build():
    from course_lib.preprocessing import imagenet_transform, made_by_course_lib

    assert made_by_course_lib(imagenet_transform()) == "imagenet_transform"
    namespace = setup_namespace(INFERENCE)
    exec(compile(solution_source(INFERENCE, 2), "answer", "exec"), namespace)
    assert made_by_course_lib(namespace["transform"]) is None


@pytest.mark.parametrize("task, sample, earlier", [
    (1, "task1_model--course_helper.py", []),
    (2, "task2_transform--course_helper.py", []),
    (3, "task3_inference--postprocess.py", [2]),
], ids=["load_model", "imagenet_transform", "postprocess"])
def test_a_course_lib_helper_earns_nothing(task, sample, earlier, capsys):
    """Item 16: the helper that does the task fails every test cell of it; the solution passes."""
    before = [solution_source(INFERENCE, t) for t in earlier]
    solved = solution_source(INFERENCE, task)
    assert _failures(INFERENCE, task, [*before, solved], part="both") == {}
    failed = _failures(INFERENCE, task, [*before, _wrong(sample)], part="both")
    assert set(failed) == _test_ids(INFERENCE, task), failed
    if task < 3:  # said where the student sees it
        assert _failures(INFERENCE, task, [*before, _wrong(sample)], part="visible")
    capsys.readouterr()


# --------------------------------------------------------------------------- what the course lost

def test_the_filters_notebook_has_the_textbook_material():
    cells = {c.get("id"): c.source for c in _cells(FILTERS)}
    textbook = cells["nb2-code-05c"]
    assert "grad.norm()" in textbook and "[border:-border, border:-border]" in textbook
    assert "grid[1], textbook" in textbook  # side by side with the student's Adam version
    conv1 = cells["nb2-code-05b"]
    assert "model.conv1.weight" in conv1 and "amin(dim=(1, 2, 3)" in conv1
    assert 'load_model("vgg16")' in cells["nb2-code-05"]
    seeds = cells["nb2-code-05d"]
    assert "seed=seed" in seeds and "for seed in seeds" in seeds
    assert "**Do not over-interpret single channels.**" in _markdown(FILTERS)


def test_the_university_labs_questions_are_graded():
    answers = {grade_id(c): notebooks.nbgrader_meta(c)["points"] for c in _cells(FILTERS)
               if c.cell_type == "markdown" and notebooks.nbgrader_meta(c).get("grade")}
    assert answers == {f"task5_q{i}_answer": 2 for i in range(1, 6)}
    heading = re.search(r"### Task 5: questions \((\d+) points, graded by hand\)",
                        _code(FILTERS, "nb2-md-06"))
    assert heading and int(heading.group(1)) == sum(answers.values())
    questions = _markdown(FILTERS)
    assert "Do the channels of one stage respond to the same pattern?" in questions
    assert "separate 1000 classes" in questions
