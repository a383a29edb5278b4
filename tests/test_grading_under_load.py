"""A correct submission grades the same on a busy machine as on an idle one (issue 14).

The fixture lab (``tests/fixtures/course``, 2 + 3 points) is graded twice, in the sandbox as
``course grade`` does: once on an idle machine, then while busy-loop processes keep every CPU
several times oversubscribed. The submission is correct but slow, as real lab cells are (Lab 2's
occlusion cell takes 24 s of its 180 s limit on an idle 2-core machine): one of its cells and
each call of its function take a sixth of the cell timeout on an idle machine. Under the load
they take several times their limit in wall-clock time; the grade must not change: full marks,
an empty problem column. Grading wall-clock limits alone (the grader before this test) timed
the cell and the calls out and gave Task 2 no points.

The load is real: each busy loop runs in a session of its own (the kernel's scheduler gives every
session its share, so loops in one session would load the machine less than they seem to), and
the test measures how much a CPU-bound probe slowed before it grades.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from autograder.grade import GradeOptions, grade
from autograder.samples import make_submission

from ._course import fixture_course, require_sandbox

pytestmark = pytest.mark.slow

LAB = "minilab"
CELL_TIMEOUT = 12  # seconds: a cell, or one call of a test into the student's code
WORK_SECONDS = CELL_TIMEOUT / 6  # idle-machine CPU time of the slow cell and of each call
# The load aimed at: a slowdown over 6x times the slow cell out on wall-clock limits alone; the
# grader's cap (GradeConfig.timeout_stretch, 4x the limit) leaves room up to 24x.
SLOWDOWN = 8.0
CORES = len(os.sched_getaffinity(0))


def _crunch(n: int) -> int:
    total = 0
    for i in range(n):
        total += i % 7
    return total


def _seconds(n: int) -> float:
    start = time.perf_counter()
    _crunch(n)
    return time.perf_counter() - start


def _iterations(seconds: float) -> int:
    """Loop iterations that take ``seconds`` of CPU here, on the machine as it is now."""
    n = 200_000
    while _seconds(n) < 0.2:
        n *= 2
    return int(n * seconds / min(_seconds(n) for _ in range(3)))


SLOW_MEAN = '''\
def _crunch(n):
    total = 0
    for i in range(n):
        total += i % 7
    return total

_warm_up = _crunch({cell})  # slow but correct: a few seconds of CPU


def mean(values):
    _crunch({call})  # slow but correct: a few seconds of CPU per call
    return float(np.mean(values))
'''


@contextmanager
def cpu_load():
    """Busy loops, each in its own session, until a CPU-bound probe is SLOWDOWN times slower
    than on the idle machine (or 16 loops per core); yields the slowdown reached."""
    probe = _iterations(0.25)
    idle = min(_seconds(probe) for _ in range(3))
    loops: list[subprocess.Popen] = []
    try:
        slowdown = 1.0
        while slowdown < SLOWDOWN and len(loops) < 16 * CORES:
            for _ in range(2 * CORES):
                loops.append(subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"],
                                              start_new_session=True))
            time.sleep(1)
            slowdown = min(_seconds(probe) for _ in range(2)) / idle
        yield slowdown
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    fixture_course(root)
    n = _iterations(WORK_SECONDS)
    for student in ("idle_machine", "busy_machine"):
        make_submission(LAB, root / "submitted" / student / LAB, root=root,
                        overrides={"task2_mean": SLOW_MEAN.format(cell=n, call=n)})
    return root


def test_a_correct_submission_grades_the_same_under_heavy_cpu_load(course):
    protection = require_sandbox()
    options = GradeOptions(jobs=1, cell_timeout=CELL_TIMEOUT, notebook_timeout=600,
                           memory_mb=2048, sandbox=protection.active)
    (idle,) = grade(LAB, root=course, students=["idle_machine"], options=options)
    assert (idle.tasks, idle.problem) == ({1: (2.0, 2.0), 2: (3.0, 3.0)}, "")

    with cpu_load() as slowdown:
        assert slowdown >= SLOWDOWN, f"the load slowed a CPU-bound loop only {slowdown:.1f}x"
        start = time.monotonic()
        (busy,) = grade(LAB, root=course, students=["busy_machine"], options=options)
        took = time.monotonic() - start
    assert (busy.tasks, busy.problem) == (idle.tasks, idle.problem), (
        f"graded under a {slowdown:.1f}x load in {took:.0f} s")
