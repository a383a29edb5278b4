"""Lab 2's Grad-CAM notebook keeps the fixes of issue 12.

What a student meets in ``2_gradcam``: one argument order for the course
(``cam_family(model, input, target, layer, ...)`` as ``grad_cam(model, input, target, layer)``),
visible tests of Tasks 3 and 4 that compare with Captum's and pytorch-grad-cam's maps on a tiny
input (a classic wrong answer fails where the student sees it), hidden tests that reject Captum's or
pytorch-grad-cam's Grad-CAM handed in for Task 3, Score-CAM's progress bar drawn only when asked
for, the 10th class beside the 1st, 2nd and 5th with a question, the collage's top-5 printed before
the question that asks about it, a two-animal collage, a cell for the student's own photograph that
falls back to a sample offline, and the course-wide lines under each written question.

The checks run the test cells of the source notebook in this process, in a namespace made of its
setup cells' imports and functions (no model loaded: cells that need the course's models are left
to tests/test_notebooks.py), against the solution and against wrong answers.
"""

from __future__ import annotations

import inspect
import re

import pytest

from autograder import notebooks
from autograder._paths import REPO_ROOT

from ._course import (
    STANDIN_LINE,
    failing_cells,
    mutated,
    setup_namespace,
    solution_source,
    task_test_cells,
    wrong_answer,
)

LAB = "lab2_inside_convnets"
GRADCAM = REPO_ROOT / "source" / LAB / "2_gradcam.ipynb"
WRONG = REPO_ROOT / "autograder" / "samples" / LAB / "wrong"
MODEL_NAMES = {"resnet", "vgg", "input", "target", "labels", "top5", "top10", "resnet_layer",
               "vgg_layer"}  # built by the setup cells from the course's models


def _cells() -> list:
    return notebooks.read(GRADCAM).cells


def _cell(cell_id: str):
    return next(c for c in _cells() if c.get("id") == cell_id)




def _solution(task: int) -> str:
    return solution_source(GRADCAM, task)


def _light_tests(task: int) -> list[tuple[str, str]]:
    """``(grade_id, source)`` of the task's test cells that need none of the course's models."""
    return task_test_cells(GRADCAM, task, avoiding=MODEL_NAMES)


def _answers(*tasks_and_sources: tuple[int, str | None]) -> dict:
    """The setup cells' imports and functions (``keep_top_channels``), no model loaded, with
    the solution of each task, or the given source in its place."""
    namespace = setup_namespace(GRADCAM, functions=True)
    for task, source in tasks_and_sources:
        code = _solution(task) if source is None else source
        exec(compile(code, f"task{task}", "exec"), namespace)
    return namespace


def _failures(task: int, namespace: dict, *, part: str) -> dict[str, str]:
    """Run the task's light test cells (``part``: visible, hidden or both) in ``namespace``;
    ``{grade_id: error}`` for the cells that failed."""
    return failing_cells(namespace, _light_tests(task), part=part)


def _wrong(name: str) -> str:
    return wrong_answer(LAB, name)


def _mutated(task: int, old: str, new: str) -> str:
    return mutated(_solution(task), old, new)


# --------------------------------------------------------------------------- the tests pass

@pytest.mark.parametrize("task", [3, 4])
def test_the_solution_passes_every_light_test_cell(task, capsys):
    assert len(_light_tests(task)) == 2, "two test cells of the task run on tiny inputs"
    assert _failures(task, _answers((3, None), (4, None)), part="both") == {}
    assert capsys.readouterr().err == "", "a test cell drew something on stderr (a progress bar?)"


# --------------------------------------------------------------------------- item 2: argument order

def test_one_argument_order_for_the_course():
    """(model, input, target, <method's own arguments>) in the solution, the wrong answers, the
    task's text and every call in the notebook."""
    namespace = _answers((3, None), (4, None))
    assert list(inspect.signature(namespace["grad_cam"]).parameters) == [
        "model", "input", "target", "layer"]
    assert list(inspect.signature(namespace["cam_family"]).parameters) == [
        "model", "input", "target", "layer", "score_cam_channels", "progress"]
    for sample in sorted(WRONG.glob("task4_*.py")):
        assert "cam_family(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module" \
            in sample.read_text(encoding="utf-8"), sample.name
    text = " ".join(c.source for c in _cells())
    assert "`cam_family(model, input, target, layer, score_cam_channels=None, progress=False)`" in \
        " ".join(text.split())
    calls = re.findall(r"cam_family\((\w+), (\w+)", text)
    assert calls and all(second in {"input", "_x"} for _, second in calls), calls


# --------------------------------------------------------------------------- item 11: visible teeth

NEAR_MISSES = {
    # shipped wrong answers whose mistake shows on the visible tests' inputs
    "Grad-CAM weighted by activations": (3, lambda: _wrong("task3_gradcam.py")),
    "library explains the top class": (4, lambda: _wrong("task4_cam_family.py")),
    "Score-CAM on every channel": (4, lambda: _wrong("task4_cam_family--all_channels.py")),
    # near misses that passed the old shape-and-range visible checks
    "Grad-CAM weights of the wrong sign": (3, lambda: _mutated(
        3, "weights = gradient.mean(dim=(2, 3), keepdim=True)",
        "weights = -gradient.mean(dim=(2, 3), keepdim=True)")),
    "Grad-CAM weights summed, not averaged, and no ReLU": (3, lambda: _mutated(
        3, "cam = F.relu((weights * activation).sum(dim=1, keepdim=True))",
        "cam = (weights * activation).sum(dim=1, keepdim=True)")),
    "Grad-CAM of the gradient alone": (3, lambda: _mutated(
        3, "cam = F.relu((weights * activation).sum(dim=1, keepdim=True))",
        "cam = F.relu(gradient.sum(dim=1, keepdim=True))")),
    "Grad-CAM++ for target 0": (4, lambda: _mutated(
        4, "plus = cam(input_tensor=input, targets=targets)[0]",
        "plus = cam(input_tensor=input, targets=[ClassifierOutputTarget(0)])[0]")),
}


@pytest.mark.parametrize("mistake", list(NEAR_MISSES))
def test_a_classic_mistake_fails_a_visible_check(mistake, capsys):
    """The visible checks compare with a reference: silence means something (issue 12, item 11)."""
    task, answer = NEAR_MISSES[mistake]
    namespace = _answers((3, None), (4, None), (task, answer()))
    assert _failures(task, namespace, part="visible"), (
        f"{mistake!r} passes every visible check of Task {task}")
    capsys.readouterr()


def test_task3_rejects_captum_doing_the_work(capsys):
    """Captum's LayerGradCam (the visible reference) handed in passes the visible checks but fails
    every hidden check of Task 3 that runs on tiny models: the hook must be the student's."""
    namespace = _answers((3, _wrong("task3_gradcam--captum.py")), (4, None))
    assert _failures(3, namespace, part="visible") == {}
    failed = _failures(3, namespace, part="hidden")
    assert set(failed) == {grade_id for grade_id, _ in _light_tests(3)}, failed
    assert all("register the forward hook yourself" in error for error in failed.values()), failed
    capsys.readouterr()


# --------------------------------------------------------------------------- item 15: progress

def test_cam_family_draws_scorecams_bar_only_when_asked(capsys):
    from course_lib.testing import tiny_cnn, tiny_input

    cam_family = _answers((3, None), (4, None))["cam_family"]
    model, x = tiny_cnn(seed=1), tiny_input(seed=1)
    quiet = cam_family(model, x, 2, model.features[3])
    assert capsys.readouterr().err == "", "cam_family draws Score-CAM's bar by default"
    shown = cam_family(model, x, 2, model.features[3], progress=True)
    assert capsys.readouterr().err != "", "cam_family(progress=True) draws no bar"
    assert all(bool((quiet[k] == shown[k]).all()) for k in quiet)


def test_the_notebooks_own_call_asks_for_the_bar():
    cells = [c.source for c in _cells() if c.cell_type == "code"
             and not notebooks.nbgrader_meta(c).get("grade")
             and not notebooks.nbgrader_meta(c).get("solution")]
    calls = [line for source in cells for line in source.splitlines() if "cam_family(" in line]
    assert calls and all("progress=True" in line for line in calls), calls


# --------------------------------------------------------------------------- the text and figures

def test_every_written_question_says_how_long_and_what_to_do_with_standin_weights():
    """Item 12: after each question, its length and coverage, then the stand-in line."""
    answers = [i for i, c in enumerate(_cells()) if c.cell_type == "markdown"
               and notebooks.nbgrader_meta(c).get("solution")]
    assert len(answers) == 3
    for index in answers:
        question = _cells()[index - 1].source
        assert re.search(r"^\*About \d+-\d+ sentences\. A good answer .+\*$",
                         question, re.MULTILINE | re.DOTALL), question[:60]
        assert question.rstrip().endswith(STANDIN_LINE), question[:60]


def test_the_tenth_class_is_shown_and_asked_about_for_two_points():
    figure = _cell("l2nb2-code-05").source
    assert '"10th": top10[9]' in figure and '"5th": top10[4]' in figure
    assert "k=10" in _cell("l2nb2-code-02").source
    question = _cell("l2nb2-md-05-question").source
    assert question.startswith("### Task 3: questions (6 points, graded by hand)")
    assert "10th class" in question
    assert notebooks.nbgrader_meta(_cell("task3-answer-rank"))["points"] == 2
    assert notebooks.nbgrader_meta(_cell("task3-answer"))["points"] == 4


def test_the_collage_has_two_animals_and_its_top5_is_printed_before_the_question():
    """Item 3: the question reads the collage's probabilities, so a cell prints them first."""
    ids = [c.get("id") for c in _cells()]
    collage, printed, question = (ids.index(i) for i in (
        "l2nb2-code-07", "l2nb2-code-07-top5", "l2nb2-md-08"))
    assert collage < printed < question
    assert 'sample_image("raccoon")' in _cell("l2nb2-code-07").source
    assert "postprocess(logits, labels, k=5)" in _cell("l2nb2-code-07-top5").source
    assert "probabilities printed above" in " ".join(_cell("l2nb2-md-08").source.split())


@pytest.mark.parametrize("given, said", [
    ("", "MY_IMAGE is empty"),
    ("no_such_photo_of_my_dog.jpg", "no file at 'no_such_photo_of_my_dog.jpg'"),
    ("http://127.0.0.1:9/dog.jpg", "connection failed"),  # closed port: as without network
])
def test_the_own_image_cell_falls_back_to_a_sample_and_says_why(given, said, capsys, tmp_path,
                                                                monkeypatch):
    """The student's own photograph: a path or URL, else the offline sample, with the reason."""
    source = _cell("l2nb2-code-08-own").source
    assert re.search(r'^MY_IMAGE = ""', source, re.MULTILINE), "empty by default (runs offline)"
    loading = source.split('print("Image:", shown)')[0].replace(
        'MY_IMAGE = ""', f"MY_IMAGE = {given!r}", 1)
    namespace = setup_namespace(GRADCAM, functions=True)
    monkeypatch.chdir(tmp_path)
    exec(compile(loading + 'print("Image:", shown)', "own", "exec"), namespace)
    printed = capsys.readouterr().out
    assert said in printed and 'the offline sample "raccoon"' in printed, printed
    assert namespace["photo"].size == (299, 224)


def test_the_own_image_cell_loads_a_given_file(capsys, tmp_path):
    from PIL import Image

    path = tmp_path / "mine.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(path)
    source = _cell("l2nb2-code-08-own").source
    loading = source.split('print("Image:", shown)')[0].replace(
        'MY_IMAGE = ""', f"MY_IMAGE = {str(path)!r}", 1)
    namespace = setup_namespace(GRADCAM, functions=True)
    exec(compile(loading, "own", "exec"), namespace)
    assert namespace["photo"].size == (40, 30) and namespace["shown"] == str(path)


def test_citations_faster_scorecam_and_the_current_textbook():
    """Item 14: Faster Score-CAM's source and the third edition of Deep Learning with Python."""
    text = "\n".join(c.source for c in _cells() if c.cell_type == "markdown")
    assert "[Faster Score-CAM](https://github.com/tabayashi0117/Score-CAM#faster-score-cam)" in text
    assert "deep-learning-with-python-third-edition" in text and "second-edition" not in text
    assert "**Weights.**" in _cells()[0].source and "make fetch-weights" in _cells()[0].source
