"""Part 5 of ``benchmarks/grading.py``: a batch through a local Dask cluster against the pool.

Starts a ``dask scheduler`` and ``dask worker`` processes (one thread each) on 127.0.0.1 and
grades the same submissions with ``course grade --scheduler`` on 1 and on 2 workers, and with
the local pool (``--jobs 2``), one after the other. On one 2-core machine the cluster cannot
beat the pool (same cores, plus the coordinator's recording); the point is the overhead of the
cluster path, which a real cluster's extra machines pay for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO_ROOT, reset_grading

sys.path.insert(0, str(REPO_ROOT))

from autograder.grade import GradeOptions, grade  # noqa: E402

DASK = str(Path(sys.executable).parent / "dask")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _timed(root: Path, lab: str, students: list[str], scheduler: str | None) -> float:
    reset_grading(root)
    start = time.perf_counter()
    results = grade(lab, root=root, students=students, options=GradeOptions(jobs=2),
                    scheduler=scheduler)
    elapsed = time.perf_counter() - start
    bad = [r.student for r in results if r.auto_score != r.auto_max]
    if bad:
        raise SystemExit(f"solution submissions lost points: {bad}")
    return elapsed


def dask_vs_local(root: Path, lab: str, students: list[str]) -> dict[str, float]:
    """Seconds to grade ``students`` with the local pool and with 1 and 2 Dask workers."""
    from distributed import Client

    found = {"local --jobs 2": _timed(root, lab, students, None)}
    for workers in (1, 2):
        port = _port()
        address = f"tcp://127.0.0.1:{port}"
        procs = [_start([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                         "--no-dashboard"])]
        try:
            procs += [_start([DASK, "worker", address, "--nthreads", "1", "--no-dashboard"])
                      for _ in range(workers)]
            with Client(address, timeout="60s") as client:
                client.wait_for_workers(workers, timeout=120)
            found[f"dask {workers} worker(s)"] = _timed(root, lab, students, address)
        finally:
            _stop(procs)
    return found
