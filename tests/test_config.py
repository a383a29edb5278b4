"""GradeConfig (autograder/config.py): one set of grading settings, built once, sent whole."""

from __future__ import annotations

import pytest

from autograder.config import DEFAULT_CELL_TIMEOUT, GradeConfig


def test_json_round_trip_is_exact():
    cfg = GradeConfig(jobs=3, memory_mb=512, sandbox=False, sandbox_mode="none", seed=7)
    assert GradeConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("text, words", [
    ('{"jobs": 2, "surprise": 1}', "unknown grading settings"),
    ('{"jobs": "2"}', "jobs should be int"),
    ('{"sandbox": 1}', "sandbox should be bool"),
    ("[1, 2]", "JSON object"),
])
def test_from_json_refuses_what_it_does_not_know(text, words):
    with pytest.raises(ValueError, match=words):
        GradeConfig.from_json(text)


def test_layers_defaults_then_course_config_then_command_line(tmp_path):
    assert GradeConfig.for_course(tmp_path).cell_timeout == DEFAULT_CELL_TIMEOUT
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.Execute.timeout = 42\n")
    assert GradeConfig.for_course(tmp_path).cell_timeout == 42
    cfg = GradeConfig.for_course(tmp_path, cell_timeout=7, memory_mb=None)
    assert (cfg.cell_timeout, cfg.memory_mb) == (7, 0)


def test_check_and_grade_share_the_defaults():
    from autograder.check import DEFAULT_CELL_TIMEOUT as CHECK_TIMEOUT

    assert CHECK_TIMEOUT == GradeConfig().cell_timeout == DEFAULT_CELL_TIMEOUT


def test_limits_that_guard_only_the_grader_are_generous_and_reach_the_executor():
    """Issue 14: nbclient's 60 s kernel start failed whole notebooks on a loaded machine."""
    from autograder.nbgrader_ext import TrustedExecute

    cfg = GradeConfig()
    assert cfg.startup_timeout >= 300 and cfg.infrastructure_retries >= 1
    assert cfg.timeout_stretch > 1  # a loaded machine does not shorten a cell's time
    runner = TrustedExecute()  # what `course check` builds, with the same defaults
    assert (runner.startup_timeout, runner.timeout_stretch, runner.infrastructure_retries) == (
        cfg.startup_timeout, cfg.timeout_stretch, cfg.infrastructure_retries)
    assert runner.raise_on_iopub_timeout is False and runner.iopub_timeout > 4
    assert GradeConfig.from_json('{"timeout_stretch": 2}').timeout_stretch == 2


def test_fast_grading_is_the_default_and_full_turns_it_off(tmp_path):
    """``course grade`` skips the figure-only cells unless asked for ``--full``."""
    from autograder.cli import build_parser, grade_options

    assert GradeConfig().fast is True
    for argv, fast in ((["grade", "lab1"], True), (["grade", "lab1", "--full"], False)):
        assert grade_options(build_parser().parse_args(argv), tmp_path).fast is fast


def test_course_id_is_the_configs_or_nbgraders_default_never_empty(tmp_path):
    """An empty course_id records labs under a course that does not exist (PostgreSQL's
    foreign key refuses it: tests/test_postgres.py)."""
    from autograder.config import DEFAULT_COURSE_ID, course_id

    assert course_id(tmp_path) == DEFAULT_COURSE_ID
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\n'
                                                 'c.CourseDirectory.course_id = "ml-101"\n')
    assert course_id(tmp_path) == "ml-101"
