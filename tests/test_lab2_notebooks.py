"""Lab 2's first and third notebooks keep the fixes of issue 12.

What a student meets there: visible tests of Tasks 1, 2, 5, 6 and 7 that compare with a reference
on a tiny input (so a classic wrong answer fails where the student sees it, not only when graded),
hidden tests that reject course_lib's own recorder for Task 1, ``sigma`` in input units, the signed
occlusion map, progress bars only when asked for, and the course-wide lines under each written
question. The checks run the test cells of the source notebooks in this process, in a namespace
made of their setup cells' imports (no model is loaded: cells that need the course's models are
left to tests/test_notebooks.py), against the solution and against wrong answers.
"""

from __future__ import annotations

import re
from pathlib import Path

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
ACTIVATIONS = REPO_ROOT / "source" / LAB / "1_activations.ipynb"
OCCLUSION = REPO_ROOT / "source" / LAB / "3_occlusion_saliency_attention.ipynb"
MODEL_NAMES = {"resnet", "vgg", "vit", "input", "target", "labels"}  # built by the setup cells


def _cells(path: Path) -> list:
    return notebooks.read(path).cells




def _light_tests(path: Path, task: int) -> list[tuple[str, str]]:
    """``(grade_id, source)`` of the task's test cells that need none of the course's models."""
    return task_test_cells(path, task, avoiding=MODEL_NAMES)


def _failures(path: Path, task: int, answer: str, *, part: str) -> dict[str, str]:
    """Run ``answer`` then the task's light test cells (``part``: visible, hidden or both);
    ``{grade_id: error}`` for the cells that failed."""
    namespace = setup_namespace(path)
    exec(compile(answer, "answer", "exec"), namespace)
    return failing_cells(namespace, _light_tests(path, task), part=part)


# --------------------------------------------------------------------------- the tests pass

@pytest.mark.parametrize("path, task", [(ACTIVATIONS, 1), (ACTIVATIONS, 2), (OCCLUSION, 5),
                                        (OCCLUSION, 6), (OCCLUSION, 7)],
                         ids=["task1", "task2", "task5", "task6", "task7"])
def test_the_solution_passes_every_light_test_cell(path, task, capsys):
    assert _light_tests(path, task), "each task has a test cell on a tiny input"
    assert _failures(path, task, solution_source(path, task), part="both") == {}
    printed = capsys.readouterr()
    assert printed.err == "", "a test cell drew something on stderr (a progress bar?)"


# --------------------------------------------------------------------------- item 11: visible teeth

def _wrong(name: str) -> str:
    return wrong_answer(LAB, name)


def _mutated(path: Path, task: int, old: str, new: str) -> str:
    return mutated(solution_source(path, task), old, new)


NEAR_MISSES = {
    # shipped wrong answers whose mistake shows on the visible tests' inputs
    "occlusion on logits": (OCCLUSION, 5, lambda: _wrong("task5_occlusion.py")),
    "occlusion clamped at 0": (OCCLUSION, 5, lambda: _wrong("task5_occlusion--clamped.py")),
    "saliency: signed sum": (OCCLUSION, 6, lambda: _wrong("task6_saliency.py")),
    "rollout without I": (OCCLUSION, 7, lambda: _wrong("task7_attention.py")),
    # near misses that passed the old shape-and-range visible checks
    "occlusion, drop counted once": (OCCLUSION, 5, lambda: _mutated(
        OCCLUSION, 5, "return total / count.clamp(min=1)", "return total")),
    "saliency: Lab 1's sum over channels": (OCCLUSION, 6, lambda: _mutated(
        OCCLUSION, 6, "gradient.abs().amax(dim=1)[0]", "gradient.abs().sum(dim=1)[0]")),
    "SmoothGrad: sigma as a fraction of the range": (OCCLUSION, 6, lambda: _mutated(
        OCCLUSION, 6, "input + sigma * torch.randn_like(input)",
        "input + sigma * float(input.max() - input.min()) * torch.randn_like(input)")),
    "SmoothGrad: no noise": (OCCLUSION, 6, lambda: _mutated(
        OCCLUSION, 6, "input + sigma * torch.randn_like(input)",
        "input + 0 * torch.randn_like(input)")),
    "rollout not renormalised": (OCCLUSION, 7, lambda: _mutated(
        OCCLUSION, 7, "        a = a / a.sum(dim=-1, keepdim=True)\n", "")),
    "rollout multiplied in the wrong order": (OCCLUSION, 7, lambda: _mutated(
        OCCLUSION, 7, "rollout = a @ rollout", "rollout = rollout @ a")),
    "rollout of the first head only": (OCCLUSION, 7, lambda: _mutated(
        OCCLUSION, 7, "weights[0].mean(dim=0)", "weights[0, 0]")),
}


@pytest.mark.parametrize("mistake", list(NEAR_MISSES))
def test_a_classic_mistake_fails_a_visible_check(mistake, capsys):
    """The visible checks compare with a reference: silence means something (issue 12, item 11)."""
    path, task, answer = NEAR_MISSES[mistake]
    failed = _failures(path, task, answer(), part="visible")
    assert failed, f"{mistake!r} passes every visible check of Task {task}"
    capsys.readouterr()


# --------------------------------------------------------------------------- item 16: the helper

@pytest.mark.parametrize("sample", ["task1_activations--course_helper.py",
                                    "task1_activations--forward_until.py"])
def test_task1_rejects_course_lib_doing_the_work(sample, capsys):
    """Wrapping course_lib.hooks' recorder (the tests' reference once) or Lab 1's forward_until
    passes the visible checks but fails every hidden check of Task 1 that runs on tiny models."""
    answer = _wrong(sample)
    assert _failures(ACTIVATIONS, 1, answer, part="visible") == {}
    failed = _failures(ACTIVATIONS, 1, answer, part="hidden")
    assert set(failed) == {grade_id for grade_id, _ in _light_tests(ACTIVATIONS, 1)}, failed
    capsys.readouterr()


def test_no_notebook_of_lab2_uses_course_libs_activation_recorder():
    for path in sorted((REPO_ROOT / "source" / LAB).glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"import[^\\n]*\bcapture_activations\b", text), path.name


# --------------------------------------------------------------------------- item 15: progress

def test_graded_functions_draw_a_bar_only_when_asked(capsys):
    namespace = setup_namespace(OCCLUSION)
    for task in (5, 6):
        exec(compile(solution_source(OCCLUSION, task), "answer", "exec"), namespace)
    from course_lib.testing import tiny_cnn, tiny_input
    model, x = tiny_cnn(seed=1), tiny_input(seed=1)
    calls = {"occlusion_sensitivity": dict(patch=4, stride=4, batch_size=4),
             "smoothgrad": dict(n_samples=3, sigma=0.1)}
    for name, kwargs in calls.items():
        namespace[name](model, x, 2, **kwargs)
        assert capsys.readouterr().err == "", f"{name} draws a bar by default"
        namespace[name](model, x, 2, **kwargs, progress=True)
        assert capsys.readouterr().err != "", f"{name}(progress=True) draws no bar"


def test_the_notebooks_own_calls_ask_for_the_bar():
    cells = [c.source for c in _cells(OCCLUSION) if c.cell_type == "code"
             and not notebooks.nbgrader_meta(c).get("grade")
             and not notebooks.nbgrader_meta(c).get("solution")]
    for name in ("occlusion_sensitivity", "smoothgrad"):
        calls = [line for source in cells for line in source.splitlines()
                 if f"{name}(" in line]
        assert calls and all("progress=True" in line for line in calls), (name, calls)


# --------------------------------------------------------------------------- the text

def _markdown(path: Path) -> str:
    return "\n\n".join(c.source for c in _cells(path) if c.cell_type == "markdown"
                       and not notebooks.nbgrader_meta(c).get("grade"))


def test_every_written_question_says_how_long_and_what_to_do_with_standin_weights():
    """Item 12: after each question, its length and coverage, then the stand-in line."""
    for path in (ACTIVATIONS, OCCLUSION):
        questions = [c.source for c in _cells(path) if c.cell_type == "markdown"
                     and re.search(r"^### Task \d+: question", c.source, re.MULTILINE)]
        assert questions, path.name
        for question in questions:
            assert re.search(r"^\*About \d+-\d+ sentences\. A good answer .+\*$",
                             question, re.MULTILINE | re.DOTALL), question[:60]
            assert question.rstrip().endswith(STANDIN_LINE), question[:60]


def test_occlusion_is_shown_signed_and_asked_about():
    """Item 5: a diverging, centred map (never clamped at 0) and a 2-point question on it."""
    figure = next(c.source for c in _cells(OCCLUSION) if c.cell_type == "code"
                  and "occlusion_sensitivity(resnet" in c.source)
    assert "compare_signed_maps(" in figure and "clamp" not in figure
    heading = re.search(r"### Task 5: question \((\d+) points, graded by hand\)",
                        _markdown(OCCLUSION))
    assert heading and heading.group(1) == "2"


def test_sigma_saliency_and_smoothgrad_are_explained():
    """Items 4 and 6: one meaning of sigma, related to the paper's; max versus Lab 1's
    per-channel saliency; SmoothGrad's first appearance in Lab 1."""
    text = " ".join(_markdown(OCCLUSION).split())
    for phrase in ("standard deviation of the Gaussian noise **in the units of the normalised "
                   "input tensor**", "`stdevs`", r"\sigma / (x_{max} - x_{min})", "10-20 %",
                   "about 3 % of its range", "for every channel separately",
                   "maximum over the channels", "Lab 1 (Task 8)", "`NoiseTunnel`"):
        assert phrase in text, phrase
    assert "in input units" in " ".join(c.source for c in _cells(OCCLUSION)
                                        if c.cell_type == "code" and "sigma = 0.15" in c.source)


def test_no_pointer_to_files_students_do_not_have():
    """Item 10: the batching speed-up is stated, not left to benchmarks/."""
    for kind in ("source", "release"):
        for name in (ACTIVATIONS.name, OCCLUSION.name):
            assert "benchmarks/" not in (REPO_ROOT / kind / LAB / name).read_text(encoding="utf-8")
    assert re.search(r"about 2\.4x faster than one forward pass per patch", " ".join(
        _markdown(OCCLUSION).split()))


def test_activations_cite_the_current_textbook_and_list_the_layers_by_name():
    """Item 14 and the summary of VGG16's layers before they are picked by name."""
    text = _markdown(ACTIVATIONS)
    assert "deep-learning-with-python-third-edition" in text and "second-edition" not in text
    assert 'ch. 10, "Interpreting what convnets learn"' in text
    assert "**Do not over-interpret single channels.**" in text
    sources = [c.source for c in _cells(ACTIVATIONS)]
    summary = next(i for i, s in enumerate(sources) if "layer_summary(vgg" in s)
    task1 = next(i for i, s in enumerate(sources) if s.startswith("## Task 1:"))
    assert summary < task1
