"""``course check NOTEBOOK``: a student's self-check of one notebook, without a gradebook.

It runs the notebook the way ``course grade`` does (:class:`~autograder.nbgrader_ext.
TrustedExecute`, the same :class:`~autograder.config.GradeConfig` defaults, the same seeded
kernel agent, the sandbox where the machine has one), limited to the visible part of each test:
the notebook's own cells run in a fresh kernel, in a temporary copy of its folder (the student's
file is never modified), and each test cell runs in this process against that kernel. Each test
is reported with its task, points and failure message. Hidden tests are not in a student's copy:
passing here means the visible checks pass, not full marks. A student's laptop often has no
sandbox: then the kernel runs as Jupyter would and ``course check`` says so.

The report leads with the root cause: the first answer cell that raised (its task, ``grade_id``
and line), since a broken answer makes every later use of its names fail too (a SyntaxError in
Task 2's cell shows up as ``NameError: name 'transform'`` in Tasks 2 and 3). It ends with one
``✓ Task N: visible checks passed`` line per task whose visible tests all pass, and says how many
points of written answers are graded by hand and not counted.

NOTEBOOK may be a bare name (``1_inference.ipynb``, as the notebooks tell students): when no such
file is in the current folder, it is looked for up to two folders down (``<lab>/<name>``,
``release/<lab>/<name>``); the report names the file it checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import notebooks
from ._paths import RELEASE_DIR, CourseError, tool_env
from .config import GradeConfig
from .sandbox import NO_SANDBOX, detect

DEFAULT_CELL_TIMEOUT = GradeConfig().cell_timeout
PASSED_MARK = "✓"
SEARCH_DEPTH = 2  # folders below the current one searched for a bare notebook name
_SKIPPED_DIRS = {"node_modules", "__pycache__", "site-packages"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_FRAME = re.compile(r"^Cell In\s*\[(\d*)\],\s*line (\d+)")
_ARROW_LINE = re.compile(r"^-*>\s*(\d+)\s?(.*)$")
_TEMP_FILE = re.compile(r"\s*\([^()]*\.py, line \d+\)$")


@dataclass
class CheckRow:
    """One test cell's outcome."""

    grade_id: str
    task: int | None
    points: float
    passed: bool
    message: str = ""


@dataclass
class CellError:
    """The first notebook cell (not a test) that raised when the notebook ran."""

    index: int            # position of the cell in the notebook, from 0
    grade_id: str | None  # the answer cell's grade_id; None for another cell
    task: int | None      # the task of the answer cell, or of the last task heading before it
    ename: str
    evalue: str
    line: int | None = None  # line of the cell where it raised, from 1, when known
    code: str = ""           # that line's text
    first_line: str = ""     # the cell's first line, to find a cell that is not an answer
    line_in: str = ""        # the answer cell (grade_id) that ``line`` is in, if not this one

    def describe(self) -> str:
        """Two or three lines that lead the report."""
        # IPython names its temporary file in a SyntaxError: "(3541.py, line 3)" says nothing.
        evalue = _TEMP_FILE.sub("", self.evalue.strip().splitlines()[0] if self.evalue.strip()
                                else "")
        error = f"{self.ename}: {evalue}" if evalue else self.ename
        not_written = self.ename == "NotImplementedError"
        if self.grade_id:
            where = f"Task {self.task}'s answer cell ({self.grade_id})" if self.task else \
                f"the answer cell {self.grade_id}"
            lines = [f"First error: {where} is not answered yet (it still raises "
                     "NotImplementedError)." if not_written
                     else f"First error: {where} raised {error}"]
        else:
            under = f" under Task {self.task}" if self.task else ""
            start = f" (it starts with `{self.first_line[:60]}`)" if self.first_line else ""
            where = f"cell {self.index + 1} of the notebook{under}{start}"
            lines = [f"First error: {where} calls an answer that is not written yet "
                     "(NotImplementedError)." if not_written else f"First error: {where} raised "
                     f"{error}"]
        if self.line is not None:
            where = f" of {self.line_in}" if self.line_in else ""
            lines.append(f"  line {self.line}{where}: {self.code.strip()}"[:160])
        if self.grade_id and not not_written:
            lines.append("  Fix it first: the cells and tests that use what it defines fail "
                         "because of it.")
        elif not self.grade_id and not not_written:
            lines.append("  This cell is the notebook's, not yours: it fails because of what one "
                         "of your answers above it returns or defines.")
        return "\n".join(lines)


class CheckReport(list):
    """The rows of :func:`check_notebook` (a list of :class:`CheckRow`) with what leads them.

    Attributes:
        notebook: the file that was checked.
        first_error: the first answer cell that raised, else the first other cell, else None.
        manual_points: points of written answers in the notebook, graded by hand.
        found_by_search: how a bare name was resolved (a sentence), or "".
    """

    notebook: Path | None = None
    first_error: CellError | None = None
    manual_points: float = 0.0
    manual_tasks: tuple[int, ...] = ()
    found_by_search: str = ""


def _first_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            text = f"{out.ename}: {out.evalue}".strip().splitlines()
            return text[0] if text else out.ename
    return None


def _error_frame(traceback: list[str]) -> tuple[int | None, int | None, str]:
    """(execution count, line, code) where a cell raised, read from IPython's traceback text.

    IPython shows each frame of a cell as ``Cell In[3], line 4`` followed by the source with
    ``---->`` at the line that raised; a SyntaxError shows ``Cell In[3], line 4`` and the line
    itself. The innermost frame that belongs to a cell wins: for a cell that calls an answer's
    function, that is the line of the answer that raised.
    """
    found: tuple[int | None, int | None, str] = (None, None, "")
    for entry in traceback or []:
        lines = _ANSI.sub("", str(entry)).splitlines()
        for i, text in enumerate(lines):
            match = _CELL_FRAME.match(text.strip())
            if not match:
                continue
            count = int(match.group(1)) if match.group(1) else None
            number, code = int(match.group(2)), ""
            for following in lines[i + 1:]:
                arrow = _ARROW_LINE.match(following.strip())
                if arrow:
                    number, code = int(arrow.group(1)), arrow.group(2)
                    break
            else:  # a SyntaxError: the next non-empty line is the code
                code = next((t for t in lines[i + 1:] if t.strip()), "")
            found = (count, number, code.strip())
    return found


def _error_line(traceback: list[str]) -> tuple[int | None, str]:
    """(line, code) of :func:`_error_frame`."""
    return _error_frame(traceback)[1:]


def find_cell_error(nb) -> CellError | None:
    """The first answer cell with an error output; if none, the first other non-test cell."""
    from .nbgrader_ext import is_test_cell

    task: int | None = None
    other: CellError | None = None
    by_count = {cell.get("execution_count"): cell for cell in nb.cells
                if cell.cell_type == "code" and cell.get("execution_count") is not None}
    for index, cell in enumerate(nb.cells):
        meta = notebooks.nbgrader_meta(cell)
        if cell.cell_type == "markdown":
            heading = re.search(r"^#+ Task (\d+):", cell.source, re.MULTILINE)
            task = int(heading.group(1)) if heading else task
            continue
        if cell.cell_type != "code" or is_test_cell(cell):
            continue
        answer = bool(meta.get("solution"))
        grade_id = meta.get("grade_id") if answer else None
        if grade_id:
            task = notebooks.task_of(grade_id) or task
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            count, line, code = _error_frame(out.get("traceback", []))
            first_line = next((t.strip() for t in cell.source.splitlines() if t.strip()), "")
            found = CellError(index, grade_id, task, str(out.get("ename", "Error")),
                              str(out.get("evalue", "")), line, code, first_line)
            origin = by_count.get(count) if count is not None else None
            if origin is not None and origin is not cell:  # it raised inside another cell
                origin_meta = notebooks.nbgrader_meta(origin)
                found.line_in = (origin_meta.get("grade_id") if origin_meta.get("solution")
                                 else None) or "another cell"
            if answer:
                return found
            other = other or found
            break
    return other


def _manual_points(nb) -> tuple[float, tuple[int, ...]]:
    """Points and tasks of the written answers (graded by hand) of a notebook."""
    total, tasks = 0.0, []
    for cell in nb.cells:
        meta = notebooks.nbgrader_meta(cell)
        if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
            total += float(meta.get("points", 0) or 0)
            task = notebooks.task_of(str(meta.get("grade_id", "")))
            if task is not None and task not in tasks:
                tasks.append(task)
    return total, tuple(tasks)


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def _candidates(name: str, cwd: Path) -> list[Path]:
    """Files called ``name`` in ``cwd`` and up to SEARCH_DEPTH folders below, sorted."""
    found, level = [], [cwd]
    for depth in range(SEARCH_DEPTH + 1):
        found += [d / name for d in level if (d / name).is_file()]
        if depth == SEARCH_DEPTH:
            break
        below = []
        for folder in level:
            with contextlib.suppress(OSError):
                below += [d for d in folder.iterdir() if d.is_dir() and not d.is_symlink()
                          and not d.name.startswith(".") and d.name not in _SKIPPED_DIRS]
        level = sorted(below)
    return found


def find_notebook(notebook: str | Path, cwd: Path | None = None) -> tuple[Path, str]:
    """The notebook file meant by ``notebook``, and how it was found ("" when given as a path).

    An existing path is used as it is. A bare name (``1_inference.ipynb`` or ``1_inference``)
    is looked for in ``cwd`` and up to two folders below it (``<lab>/<name>``,
    ``release/<lab>/<name>``); of several, the only one in a ``release`` folder (the student
    copy) wins, else the choice is the student's.

    Raises:
        CourseError: nothing found, or several files and no way to choose (the message names
            them).
    """
    cwd = Path.cwd() if cwd is None else Path(cwd)
    path = Path(notebook)
    if not path.is_absolute():
        path = cwd / path
    if path.is_file():
        return path, ""
    given = str(notebook)
    if Path(given).name != given:  # a path with folders: no guessing
        raise CourseError(f"No notebook at {given}.")
    name = given if given.endswith(".ipynb") else f"{given}.ipynb"
    found = _candidates(name, cwd)
    shown = [_display(p, cwd) for p in found]
    if not found:
        raise CourseError(f"No notebook {name} in {cwd} or the folders up to {SEARCH_DEPTH} "
                          "levels below it. Give its path, e.g. course check "
                          f"{RELEASE_DIR}/<lab>/{name}, or run the command in the notebook's "
                          "folder.")
    if len(found) == 1:
        return found[0], "found by its name under the current folder"
    released = [p for p in found if RELEASE_DIR in p.relative_to(cwd).parts[:-1]]
    if len(released) == 1:
        others = ", ".join(_display(p, cwd) for p in found if p != released[0])
        return released[0], (f"found {_display(released[0], cwd)}, the student copy "
                             f"(also there: {others}; give a path to check another)")
    listing = "\n".join(f"  {text}" for text in shown)
    raise CourseError(f"{name} is ambiguous: {len(found)} notebooks have that name here:\n"
                      f"{listing}\nGive the path of the one to check, e.g. course check "
                      f"{shown[0]}")


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


def check_notebook(path: Path | str, cell_timeout: int | None = None,
                   sandbox: bool | None = None, announce: bool = True) -> CheckReport:
    """Execute a copy of ``path`` as the grader would and return one row per test cell.

    ``path``: a notebook file, or a bare notebook name looked for under the current folder
    (:func:`find_notebook`). ``sandbox``: True requires the sandbox, False runs without, None
    (default) uses it when this machine has one. ``announce``: say on stderr which file runs
    (it takes about as long as running the notebook).
    """
    from .nbgrader_ext import TrustedExecute, is_test_cell

    path, how = find_notebook(path)
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
    if announce:
        print(f"Running {_display(path, Path.cwd())} in a fresh kernel (as long as the whole "
              "notebook takes)...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        work = Path(tmp) / "nb"
        shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        runner = TrustedExecute(timeout=cfg.cell_timeout, kernel_name="python3",
                                sandbox_mode=mode, seed=cfg.seed, visible_only=True,
                                max_reply_bytes=cfg.max_reply_bytes)
        with _kernel_environment(Path(tmp), cfg.seed):
            runner.preprocess(nb, {"metadata": {"path": str(work)}})
    rows = CheckReport()
    rows.notebook, rows.found_by_search = path, how
    rows.first_error = find_cell_error(nb)
    rows.manual_points, rows.manual_tasks = _manual_points(nb)
    for cell in nb.cells:
        meta = notebooks.nbgrader_meta(cell)
        if not is_test_cell(cell):
            continue
        error = _first_error(cell)
        rows.append(CheckRow(meta["grade_id"], notebooks.task_of(meta["grade_id"]),
                             float(meta.get("points", 0)), error is None, error or ""))
    return rows


def passed_tasks(rows: list[CheckRow]) -> list[int]:
    """The tasks whose visible tests all passed, in the notebook's order."""
    order: dict[int, bool] = {}
    for r in rows:
        if r.task is not None:
            order[r.task] = order.get(r.task, True) and r.passed
    return [task for task, ok in order.items() if ok]


def format_check(rows: list[CheckRow]) -> str:
    """The report ``course check`` prints: the file, the first error, the tests, the totals."""
    lines = []
    notebook = getattr(rows, "notebook", None)
    if notebook is not None:
        how = getattr(rows, "found_by_search", "")
        lines.append(f"Checked {_display(notebook, Path.cwd())}" + (f" ({how})" if how else ""))
    first = getattr(rows, "first_error", None)
    if first is not None:
        lines += [first.describe(), ""]
    lines.append(f"{'task':<6}{'test':<46}{'points':>7}  result")
    hint = first is not None and first.grade_id is not None
    for r in rows:
        if r.passed:
            result = "passed"
        else:
            result = f"FAILED  {r.message}"[:120]
            if hint and r.message.startswith("NameError"):
                result += "  (see the first error above)"
        lines.append(f"{r.task if r.task is not None else '-':<6}{r.grade_id:<46}"
                     f"{r.points:>7g}  {result}")
    lines += [f"{PASSED_MARK} Task {task}: visible checks passed" for task in passed_tasks(rows)]
    got = sum(r.points for r in rows if r.passed)
    total = sum(r.points for r in rows)
    lines.append(f"Visible tests: {got:g}/{total:g} points "
                 f"({sum(r.passed for r in rows)}/{len(rows)} cells passed). Hidden tests run "
                 "when your work is graded.")
    manual = getattr(rows, "manual_points", 0.0)
    if manual:
        tasks = getattr(rows, "manual_tasks", ())
        which = f" (Task {', '.join(map(str, tasks))})" if tasks else ""
        lines.append(f"Written answers{which}: {manual:g} points, graded by hand and not "
                     "counted here.")
    return "\n".join(lines)
