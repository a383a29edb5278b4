"""``course check``: a student's self-check runs a notebook in a fresh kernel and reports tests."""

from __future__ import annotations

import pytest

from autograder.cli import main
from autograder.samples import ALL, make_submission

from ._course import LAB1, lab_notebooks

pytestmark = pytest.mark.slow


def test_blank_release_notebook_fails_and_names_its_tasks(tmp_path, capsys):
    release = lab_notebooks("release")[0]  # 1_inference
    before = release.read_bytes()
    assert main(["check", str(release)]) == 1
    out = capsys.readouterr().out
    for task in ("test_task1_model", "test_task2_transform", "test_task3_inference",
                 "test_task4_graph"):
        assert f"{task}" in out and "FAILED" in out
    assert "NotImplementedError" in out
    assert "Visible tests: 0/25 points (0/4 cells passed)" in out
    assert release.read_bytes() == before, "course check must not modify the notebook"


def test_solved_notebook_passes_and_exits_zero(tmp_path, capsys):
    folder = make_submission(LAB1, tmp_path / "mine", solve=ALL)
    assert main(["check", str(folder / "1_inference.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and out.count("passed") >= 4
    assert "Visible tests: 25/25 points (4/4 cells passed)" in out
