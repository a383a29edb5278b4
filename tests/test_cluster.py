"""``course grade --scheduler``: a real Dask scheduler and workers on 127.0.0.1.

The fixture lab's class of broken submissions (``tests/test_robust_grading.py``: endless loops,
memory hogs, crashes, tampered notebooks...) is graded through two ``dask worker`` processes;
one is killed halfway, and every student must still get exactly the grade local grading gives
(the same expected table that file checks against local grading), recorded once. Then the
scheduler itself is killed mid-batch: ``course grade`` stops with what was recorded and says how
to go on, and ``--missing`` grades only the rest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder.cluster import SchedulerLost
from autograder.grade import _mark, collect_scores, default_db_url, grade, graded_students

from ._course import fixture_course
from .test_robust_grading import LAB, OPTIONS, _build_class

pytestmark = pytest.mark.slow
DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on loopback, each its own group."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--no-dashboard"])
        self.workers: list[subprocess.Popen] = []
        self._wait(lambda: self._listening(), "the scheduler did not start")

    def _start(self, cmd: list[str]) -> subprocess.Popen:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}"}
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    @staticmethod
    def _wait(ready, why: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(why)
            time.sleep(0.2)

    def add_workers(self, n: int) -> None:
        from distributed import Client

        for i in range(n):
            self.workers.append(self._start([
                DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                "--no-dashboard", "--name", f"w{len(self.workers)}-{i}", "--death-timeout",
                "60"]))
        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(len(self.workers), timeout=120)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            self.kill(proc)


@pytest.fixture
def cluster():
    found = Cluster()
    try:
        yield found
    finally:
        found.close()


def _recorded(root: Path) -> int:
    """Submissions of the lab in the gradebook (0 before the gradebook exists)."""
    if not (root / "gradebook.db").exists():
        return 0
    try:
        return len(graded_students(LAB, default_db_url(root), root))
    except Exception:  # noqa: BLE001 - tables still being made by the grader
        return 0


def _in_thread(fn):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_worker_killed_halfway_loses_nothing_and_records_nothing_twice(cluster, tmp_path):
    root = fixture_course(tmp_path / "course")
    expected = _build_class(root)
    cluster.add_workers(2)
    thread, box = _in_thread(lambda: grade(LAB, root=root, options=OPTIONS,
                                           scheduler=cluster.address))
    Cluster._wait(lambda: _recorded(root) >= len(expected) // 3 or not thread.is_alive(),
                  "nothing was recorded", timeout=600)
    assert thread.is_alive(), "the batch ended before a worker could be killed"
    cluster.kill(cluster.workers[0])
    thread.join(timeout=1200)
    assert "error" not in box, box.get("error")
    results = {r.student: r for r in box["value"]}
    got = {s: (r.tasks[1][0], r.tasks[2][0]) for s, r in results.items()}
    wrong = {s: (got.get(s), (float(a), float(b)), results[s].problem if s in results else "")
             for s, (a, b) in expected.items() if got.get(s) != (float(a), float(b))}
    assert not wrong and sorted(got) == sorted(expected), wrong
    with Gradebook(default_db_url(root)) as gb:  # one submission per student, no duplicate
        submissions = gb.find_assignment(LAB).submissions
        assert sorted(s.student.id for s in submissions) == sorted(expected)
    assert (root / "autograded" / "solution" / LAB / "quiz.ipynb").is_file()
    assert (root / "feedback" / "solution" / LAB / "quiz.html").is_file()  # written here


LOST_SCHEDULER_CLASS = ("solution", "blank", "partial", "endless_loop", "exits",
                        "dies_in_test", "weakened_test", "corrupt_json")


def test_a_lost_scheduler_stops_the_batch_and_missing_finishes_it(cluster, tmp_path):
    root = fixture_course(tmp_path / "course")
    # Part of the class is enough here (the whole class goes through the test above).
    expected = {s: v for s, v in _build_class(root).items() if s in LOST_SCHEDULER_CLASS}
    who = sorted(expected)
    cluster.add_workers(1)
    thread, box = _in_thread(lambda: grade(LAB, root=root, options=OPTIONS, students=who,
                                           scheduler=cluster.address))
    Cluster._wait(lambda: _recorded(root) >= 2 or not thread.is_alive(),
                  "nothing was recorded", timeout=600)
    cluster.kill(cluster.scheduler)
    thread.join(timeout=300)
    error = box.get("error")
    assert isinstance(error, SchedulerLost), box
    assert "--missing" in str(error) and error.left
    recorded = graded_students(LAB, default_db_url(root), root)
    assert recorded and recorded <= set(error.done) and not recorded & set(error.left)
    marks = {s: _mark(root, LAB, s).stat().st_mtime_ns for s in recorded}

    again = Cluster()
    try:
        again.add_workers(1)
        results = {r.student: r for r in grade(LAB, root=root, options=OPTIONS, students=who,
                                               scheduler=again.address, missing=True)}
    finally:
        again.close()
    # The table has everyone; only what was missing was graded (the others' marks untouched).
    assert sorted(results) == sorted(expected)
    assert {s: _mark(root, LAB, s).stat().st_mtime_ns for s in recorded} == marks
    assert graded_students(LAB, default_db_url(root), root) >= set(expected) - {
        s for s, r in results.items() if "grader crashed" in r.problem
        or "longer than" in r.problem}
    with Gradebook(default_db_url(root)) as gb:
        assert sorted(s.student.id for s in gb.find_assignment(LAB).submissions) == sorted(
            expected)
    final = {s: collect_scores(LAB, s, default_db_url(root)) for s in expected}
    assert {s: (r.tasks[1][0], r.tasks[2][0]) for s, r in final.items()} == {
        s: (float(a), float(b)) for s, (a, b) in expected.items()}
