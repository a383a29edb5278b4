"""Which failures in a graded notebook are the course's, not the student's.

A notebook's instructor cells (code the student does not write: imports, loading a model,
plotting) must run for every student. One that fails while using nothing the student wrote is
the course's fault (a package missing in the grading environment, a file not found, a sandbox
mount): its grade would be a silent near-zero, so ``course grade`` reports it as a problem for
that student and names it in a summary, and exits non-zero (see docs/design.md, "Instructor
cells"). A failure that involves the student's code is the student's: the cell uses a name an
answer cell defines, or a name that only an earlier cell which failed would have bound (a figure
cell reading the results of a cell that called the student's unfinished function), or the
traceback passes through a cell the student wrote.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nbformat import NotebookNode

from . import notebooks

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_REF = re.compile(r"(?:Cell In|Input In) ?\[(\d+)\]")
# Outputs the grader adds for what happened to the kernel, said elsewhere (worker.INCIDENTS).
_GRADER_ERRORS = {"KernelDied", "InterruptIgnored", "NotGraded"}
SETUP_ERROR = "SetupError"  # a setup cell failed in the grader's own run (the harness)


@dataclass(frozen=True)
class CourseFailure:
    """One instructor cell that failed for one student, as the instructor reads it."""

    notebook: str  # file name, e.g. ``1_inference.ipynb``
    cell: int  # index in the notebook, counted from 0
    error: str  # ``Type: message`` on one line
    grade_id: str = ""  # the cell's nbgrader id, to find it in another student's copy

    def describe(self) -> str:
        return (f"{self.notebook}: instructor cell {self.cell} failed ({self.error}); the "
                "course's fault, not the student's: fix it and grade again")


def _python(source: str) -> ast.Module | None:
    """The cell's code as Python (IPython magics turned into calls), or None if it won't parse."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython missing or the cell is odd: parse it as it is
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def bound_names(sources: Iterable[str]) -> set[str]:
    """Names the cells bind at top level (functions, classes, assignments, imports, loops).

    Names local to a function, a class body or a comprehension are not the notebook's.
    """
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for source in sources:
        tree = _python(source)
        if tree is not None:
            visit(tree)
    return names


def used_names(source: str) -> set[str] | None:
    """Names the cell reads, or None when it cannot be parsed (then it uses anything)."""
    tree = _python(source)
    if tree is None:
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _cells_by_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    out = {}
    for cell in nb.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str):
            out[grade_id] = cell
    return out


def _is_instructor_code(cell: NotebookNode) -> bool:
    meta = notebooks.nbgrader_meta(cell)
    return cell.cell_type == "code" and not meta.get("solution") and not meta.get("grade")


def _one_line(output: NotebookNode) -> str:
    text = " ".join(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".split())
    return text if len(text) <= 200 else text[:200] + " ..."


def course_failures(graded: NotebookNode, trusted: NotebookNode, name: str
                    ) -> list[CourseFailure]:
    """The instructor cells of ``graded`` that failed through no fault of the student's.

    Args:
        graded: the notebook as the grader ran it (outputs and execution counts).
        trusted: the lab's source notebook (which cells are the instructor's, what the answer
            cells define).
        name: the notebook's file name, for the report.
    """
    trusted_cells = _cells_by_id(trusted)
    instructor = {gid: c.source for gid, c in trusted_cells.items() if _is_instructor_code(c)}
    # What the answers define and the instructor's cells do not (``import torch`` in an answer
    # does not make every use of torch the student's).
    student_names = bound_names(
        c.source for c in trusted_cells.values()
        if c.cell_type == "code" and notebooks.nbgrader_meta(c).get("solution")
    ) - bound_names(instructor.values())
    # Cells the student wrote or could change: every code cell that is not the instructor's
    # own, unchanged (nbgrader puts instructor cells back as the source has them).
    theirs = set()
    for cell in graded.cells:
        if cell.cell_type != "code" or cell.get("execution_count") is None:
            continue
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if instructor.get(grade_id) != cell.source:
            theirs.add(cell.execution_count)
    found = []
    unbound: set[str] = set()  # names only cells that failed would have bound
    for index, cell in enumerate(graded.cells):
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        earlier, unbound = unbound, unbound | bound_names([cell.source])
        if grade_id not in instructor or instructor[grade_id] != cell.source:
            # A test cell whose setup failed in the grader: the harness ran only trusted code.
            found += [CourseFailure(name, index, _one_line(o), grade_id or "") for o in errors[:1]
                      if o.get("ename") == SETUP_ERROR]
            continue
        error = errors[0]
        if error.get("ename") in _GRADER_ERRORS:
            continue
        uses = used_names(cell.source)
        if uses is None or uses & (student_names | earlier):
            continue
        traceback = _ANSI.sub("", "\n".join(error.get("traceback", [])))
        if any(int(n) in theirs for n in _CELL_REF.findall(traceback)):
            continue
        found.append(CourseFailure(name, index, _one_line(error), grade_id))
    return found
