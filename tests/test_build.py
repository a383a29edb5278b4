"""``course build``: release/ and solutions/ are generated from source/, reproducibly."""

from __future__ import annotations

import pytest

from autograder import notebooks
from autograder.build import build
from autograder.cli import main

from ._course import LAB1, copy_course, lab_notebooks

pytestmark = pytest.mark.slow


def test_committed_release_and_solutions_are_up_to_date(capsys):
    assert main(["build", "--check"]) == 0, capsys.readouterr()


def test_build_is_reproducible_and_check_names_stale_files(tmp_path):
    root = copy_course(tmp_path)
    build(LAB1, root=root)
    first = {p: p.read_bytes() for p in (root / "release").rglob("*.ipynb")}
    build(LAB1, root=root)
    assert {p: p.read_bytes() for p in (root / "release").rglob("*.ipynb")} == first
    assert build(LAB1, root=root, check=True).clean

    stale = root / "release" / LAB1 / "1_inference.ipynb"
    stale.write_text(stale.read_text().replace("Task 1", "Task one"))
    (root / "solutions" / LAB1 / "2_filters.ipynb").unlink()
    (root / "release" / LAB1 / "notes.txt").write_text("hand-made")
    report = build(LAB1, root=root, check=True)
    assert report.stale == [f"release/{LAB1}/1_inference.ipynb"]
    assert report.missing == [f"solutions/{LAB1}/2_filters.ipynb"]
    assert report.extra == [f"release/{LAB1}/notes.txt"]
    assert "Task one" in stale.read_text(), "--check must not write"
    assert main(["--course", str(root), "build", LAB1, "--check"]) == 1
    build(LAB1, root=root)
    assert build(LAB1, root=root, check=True).clean


def _texts(kind: str) -> str:
    return "\n".join(c.source for p in lab_notebooks(kind) for c in notebooks.read(p).cells)


def test_release_hides_solutions_hidden_tests_and_marking_schemes():
    text = _texts("release")
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "MARK SCHEME", "_reference = torchvision",
                   "return make_dot(output, params", "NoiseTunnel(IntegratedGradients(model))"):
        assert secret not in text, secret
    assert text.count("raise NotImplementedError()") == 9  # one per code solution cell of Lab 1
    assert "# TODO (Task 6)" in text


def test_solutions_keep_answers_but_not_hidden_tests_or_marking_schemes():
    text = _texts("solutions")
    assert "return make_dot(output, params" in text
    assert "NoiseTunnel(IntegratedGradients(model))" in text
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "MARK SCHEME", "_reference = torchvision"):
        assert secret not in text, secret
    assert "receptive field" in text  # model answers stay for self-study
