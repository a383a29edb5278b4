"""``course check NOTEBOOK``: a student's self-check of one notebook, without a gradebook.

The notebook runs top to bottom in a fresh kernel, in a temporary copy of its folder (the
student's file is never modified). Each visible test cell is reported with its task, points,
and the first line of its failure message. Hidden tests are not in a student's copy: passing
here means the visible checks pass, not full marks.

The kernel runs in the sandbox of :mod:`autograder.sandbox` where the machine has one (a
student's laptop often has none: then it runs as usual and ``course check`` says so).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from . import notebooks
from ._paths import CourseError, tool_env
from .sandbox import SandboxCells, SandboxKernelManager, detect

DEFAULT_CELL_TIMEOUT = 300


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


class _Client(SandboxCells, NotebookClient):
    """nbclient's client, killing what each cell leaves running in a sandbox."""


def check_notebook(path: Path, cell_timeout: int = DEFAULT_CELL_TIMEOUT,
                   sandbox: bool | None = None) -> list[CheckRow]:
    """Execute a copy of ``path`` and return one row per test cell, in notebook order.

    ``sandbox``: True requires the sandbox, False runs without, None (default) uses it when
    this machine has one.
    """
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"No notebook at {path}.")
    try:
        nb = notebooks.read(path)
    except Exception as exc:  # nbformat raises several unrelated types for a broken file
        raise CourseError(f"{path} is not a readable notebook ({exc}); restore it from the "
                          "release copy and paste your answers back.") from exc
    problem = ""
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        work = Path(tmp) / "nb"
        shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        use_sandbox = detect().active if sandbox is None else sandbox
        if use_sandbox and not detect().active:
            raise CourseError(f"No sandbox available: {detect().detail}.")
        extra = {"kernel_manager_class": SandboxKernelManager} if use_sandbox else {}
        client = _Client(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                         resources={"metadata": {"path": str(work)}}, **extra)
        try:
            client.execute(env=tool_env())
        except CellTimeoutError:
            problem = f"a cell ran longer than {cell_timeout} s"
        except DeadKernelError:
            problem = "the kernel died"
    rows = []
    for cell in nb.cells:
        meta = notebooks.nbgrader_meta(cell)
        if not (meta.get("grade") and cell.cell_type == "code"):
            continue
        error = _first_error(cell)
        ran = cell.get("execution_count") is not None
        message = error or ("" if ran else f"not run: {problem or 'an earlier cell stopped'}")
        rows.append(CheckRow(meta["grade_id"], notebooks.task_of(meta["grade_id"]),
                             float(meta.get("points", 0)), ran and error is None, message))
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
