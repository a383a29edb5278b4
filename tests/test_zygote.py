"""Warm kernels (``autograder/zygote.py``): one preloaded sandbox per submission forks its kernels.

A two-notebook copy of the fixture lab is graded through ``course grade``'s path. A probing
student's answer prints what its kernel sees (its pid and parent inside the sandbox, the
processes there, a file an earlier notebook wrote), tries to kill the zygote and leaves a
process running; a second student, graded beside it, shows that submissions never share a
sandbox. Timeouts, kernel deaths, caps and attacks through warm kernels are covered by
``tests/test_robust_grading.py`` and ``tests/test_sandbox.py``, which grade with them too.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks
from autograder.build import build
from autograder.grade import GradeOptions, grade
from autograder.samples import ALL, make_submission
from autograder.zygote import BASE_MODULES, SOCKET_NAME, lab_modules

from ._course import FIXTURE_COURSE, FIXTURE_LAB, require_sandbox

LAB = FIXTURE_LAB
NOTEBOOKS = ("quiz.ipynb", "quiz2.ipynb")
PROBE = '''def add(a, b):
    return a + b

import os, pathlib, subprocess

def _processes():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())

print("PROBE", os.getpid(), os.getppid(), pathlib.Path("seen.txt").exists(), _processes())
pathlib.Path("seen.txt").write_text("an earlier notebook of this submission ran")
try:
    os.kill(1, 9)  # the zygote: pid 1 of the namespace ignores it
except OSError as exc:
    print("KILL", type(exc).__name__)
subprocess.Popen(["sleep", "300"], start_new_session=True)  # left running: a stray
'''
OPTIONS = GradeOptions(jobs=2, cell_timeout=30, notebook_timeout=300, memory_mb=2048)


def test_lab_modules_are_the_source_notebooks_imports(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\n"
                                          "from torch import nn\nfrom . import local\n"
                                          "import matplotlib.pyplot as plt, PIL.Image"),
                nbformat.v4.new_code_cell("def f():\n    import inside_a_function\n"),
                nbformat.v4.new_code_cell("this is not Python (\n"),
                nbformat.v4.new_markdown_cell("import markdown_is_not_code")]
    notebooks.write(nb, tmp_path / "a.ipynb")
    # numpy and torch are in BASE_MODULES already; magics, relative imports, imports inside
    # functions, cells that do not parse and markdown add nothing.
    assert lab_modules(tmp_path) == [*BASE_MODULES, "matplotlib.pyplot", "PIL.Image"]


def test_the_real_labs_preload_what_their_setup_cells_import():
    repo = Path(__file__).resolve().parents[1] / "source"
    assert {"torchvision", "captum.attr", "course_lib.models"} <= set(
        lab_modules(repo / "lab1_interpretability"))
    assert {"pytorch_grad_cam", "course_lib.hooks"} <= set(lab_modules(
        repo / "lab2_inside_convnets"))


def _probes(root: Path, student: str) -> list[tuple[int, int, bool, list[int], str]]:
    """(pid, parent pid, seen.txt existed, processes, kill outcome) per notebook, in order."""
    found = []
    for name in NOTEBOOKS:
        nb = notebooks.read(root / "autograded" / student / LAB / name)
        text = "".join(str(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
        probe = re.search(r"PROBE (\d+) (\d+) (True|False) \[([\d, ]*)\]", text)
        kill = re.search(r"KILL (\w+)", text)
        assert probe, f"{student}/{name} printed no probe: {text[:500]!r}"
        found.append((int(probe[1]), int(probe[2]), probe[3] == "True",
                      [int(p) for p in probe[4].split(",") if p.strip()],
                      kill[1] if kill else ""))
    return found


def _zygotes_running(students) -> list[int]:
    """Host pids of the zygotes of these students' submissions (none once grading is over);
    the scratch folder each sandbox lives in is named after its student."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if SOCKET_NAME.encode() in cmdline and any(
                    f"/course-{s}-".encode() in cmdline for s in students):
                pids.append(int(entry))
    return pids


@pytest.mark.slow
def test_a_submissions_kernels_are_forked_from_one_sandbox_of_its_own(tmp_path):
    require_sandbox()
    root = tmp_path / "course"
    shutil.copytree(FIXTURE_COURSE / "source", root / "source")
    shutil.copyfile(root / "source" / LAB / NOTEBOOKS[0], root / "source" / LAB / NOTEBOOKS[1])
    build(LAB, root=root)
    students = [f"prober-{uuid.uuid4().hex[:6]}", f"neighbour-{uuid.uuid4().hex[:6]}"]
    for student in students:
        make_submission(LAB, root / "submitted" / student / LAB, solve=ALL, root=root,
                        overrides={"task1_add": PROBE})
    results = {r.student: r for r in grade(LAB, root=root, options=OPTIONS)}

    for student, result in results.items():
        # Both notebooks graded as a fresh kernel would grade them: 2 + 3 points each.
        assert result.tasks == {1: (4.0, 4.0), 2: (6.0, 6.0)}, (student, result.problem)
        assert "died" not in result.problem and "timed out" not in result.problem
        first, second = _probes(root, student)
        # Each kernel is a fork of the zygote, pid 1 inside, which a kill from inside misses.
        assert first[1] == second[1] == 1
        assert second[0] > first[0] > 1
        assert first[4] == second[4] == ""  # no error: init ignores the signal
        # The notebooks share the submission's working folder, as on the student's machine,
        # and nothing of another submission: each student's first notebook starts clean.
        assert (first[2], second[2]) == (False, True)
        # The first notebook's stray `sleep` is gone before the second starts: the sandbox
        # holds the zygote and the kernel only.
        assert second[3] == [1, second[0]], second[3]
    assert not _zygotes_running(students)


def test_a_zygote_that_does_not_start_leaves_a_kernel_of_its_own(tmp_path, monkeypatch):
    """No warm sandbox (here: its process exits at once): the kernel starts cold, as before."""
    from jupyter_core.utils import run_sync

    from autograder import sandbox, zygote

    require_sandbox()
    monkeypatch.setattr(zygote, "ZYGOTE_CODE", "import sys\nsys.exit(3)\n")
    monkeypatch.setattr(zygote, "_SHARED", {})
    km = sandbox.SandboxKernelManager(kernel_name="python3", warm=True, preload=["numpy"],
                                      sandbox_mode=sandbox.detect().mode)
    run_sync(km.start_kernel)(cwd=str(tmp_path))
    try:
        assert km.warm_box is None and km.sandbox is not None  # the cold path's own sandbox
        kc = km.blocking_client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        seen: list[dict] = []
        reply = kc.execute_interactive("import os; print(os.getpid(), os.getppid())",
                                       timeout=60, output_hook=seen.append)
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()
    finally:
        run_sync(km.shutdown_kernel)(now=True)
    printed = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    assert printed.split() == ["2", "1"]  # pid 2 under bwrap's init: a kernel of its own


WORKER = '''
import os, sys
from autograder import sandbox, zygote
box = sandbox.Sandbox(sandbox.detect().mode, sandbox.Limits(64, 0))
box.prepare(None, dict(os.environ))
warm = zygote.WarmSandbox(box, dict(os.environ), ["numpy"])
print(warm.zygote_pid(), flush=True)
sys.stdin.read()  # until killed
'''


def test_a_killed_worker_takes_its_warm_sandbox_with_it():
    """SIGKILL gives a worker no time to clean up; its zygote must not outlive it (it would
    hold the worker's output pipe open, and the coordinator would wait on it for ever)."""
    import signal
    import subprocess
    import sys
    import time

    require_sandbox()
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    proc.stdout.close()
    proc.stdin.close()
