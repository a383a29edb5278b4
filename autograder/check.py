"""``course check NOTEBOOK``: a student's self-check of one notebook, without a gradebook.

It runs the notebook the way ``course grade`` does (:class:`~autograder.nbgrader_ext.
TrustedExecute`, the same :class:`~autograder.config.GradeConfig` defaults, the same seeded
kernel agent, the sandbox where the machine has one), limited to the visible part of each test:
the notebook's own cells run in a fresh kernel, in a temporary copy of its folder (the student's
file is never modified), and each test cell runs in this process against that kernel. Each test
is reported with its task, points and failure message. Hidden tests are not in a student's copy:
passing here means the visible checks pass, not full marks. A student's laptop often has no
sandbox: then the kernel runs as Jupyter would and ``course check`` says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import notebooks
from ._paths import CourseError, tool_env
from .config import GradeConfig
from .sandbox import NO_SANDBOX, detect

DEFAULT_CELL_TIMEOUT = GradeConfig().cell_timeout


@dataclass
class CheckRow:
    """One test cell's outcome."""

    grade_id: str
    task: int | None
    points: float
    passed: bool
    message: str = ""


def _first_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            text = f"{out.ename}: {out.evalue}".strip().splitlines()
            return text[0] if text else out.ename
    return None


@contextlib.contextmanager
def _kernel_environment(folder: Path, seed: int) -> Iterator[None]:
    """os.environ as a grading worker sets it (tool PATH, seed, the agent's IPYTHONDIR)."""
    from .worker import seeded_ipython_dir

    saved = dict(os.environ)
    try:
        os.environ.update(tool_env())
        os.environ["IPYTHONDIR"] = str(seeded_ipython_dir(folder, seed))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_notebook(path: Path, cell_timeout: int | None = None,
                   sandbox: bool | None = None) -> list[CheckRow]:
    """Execute a copy of ``path`` as the grader would and return one row per test cell.

    ``sandbox``: True requires the sandbox, False runs without, None (default) uses it when
    this machine has one.
    """
    from .nbgrader_ext import TrustedExecute, is_test_cell

    path = Path(path)
    if not path.is_file():
        raise CourseError(f"No notebook at {path}.")
    try:
        nb = notebooks.read(path)
    except Exception as exc:  # nbformat raises several unrelated types for a broken file
        raise CourseError(f"{path} is not a readable notebook ({exc}); restore it from the "
                          "release copy and paste your answers back.") from exc
    cfg = GradeConfig(visible_only=True)
    if cell_timeout is not None:
        cfg = cfg.replace(cell_timeout=cell_timeout)
    use_sandbox = detect().active if sandbox is None else sandbox
    if use_sandbox and not detect().active:
        raise CourseError(f"No sandbox available: {detect().detail}.")
    mode = detect().mode if use_sandbox else NO_SANDBOX
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        work = Path(tmp) / "nb"
        shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        runner = TrustedExecute(timeout=cfg.cell_timeout, kernel_name="python3",
                                sandbox_mode=mode, seed=cfg.seed, visible_only=True,
                                max_reply_bytes=cfg.max_reply_bytes)
        with _kernel_environment(Path(tmp), cfg.seed):
            runner.preprocess(nb, {"metadata": {"path": str(work)}})
    rows = []
    for cell in nb.cells:
        meta = notebooks.nbgrader_meta(cell)
        if not is_test_cell(cell):
            continue
        error = _first_error(cell)
        rows.append(CheckRow(meta["grade_id"], notebooks.task_of(meta["grade_id"]),
                             float(meta.get("points", 0)), error is None, error or ""))
    return rows


def format_check(rows: list[CheckRow]) -> str:
    """The table ``course check`` prints, with the visible total."""
    lines = [f"{'task':<6}{'test':<46}{'points':>7}  result"]
    for r in rows:
        result = "passed" if r.passed else f"FAILED  {r.message}"[:120]
        lines.append(f"{r.task if r.task is not None else '-':<6}{r.grade_id:<46}"
                     f"{r.points:>7g}  {result}")
    got = sum(r.points for r in rows if r.passed)
    total = sum(r.points for r in rows)
    lines.append(f"Visible tests: {got:g}/{total:g} points "
                 f"({sum(r.passed for r in rows)}/{len(rows)} cells passed). Hidden tests run "
                 "when your work is graded.")
    return "\n".join(lines)
