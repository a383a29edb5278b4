"""Fast grading: which of a notebook's cells a grade does not need (``course grade --fast``).

A grade is decided by the test cells, which the harness runs in the grader's process on the
setup cells' objects and the student's answers (``docs/design.md``, "Tests that run in both
places"). The other instructor cells (a model loaded for a figure, the figure itself) cost most
of a notebook's run time and decide nothing, so fast grading does not run them: in the graded
copy they keep the outputs the student submitted, under a line saying so, and the person
marking written answers still sees the student's figures.

A student's code may still use a name that only such a cell defines (an extra cell that plots
``img``, a function reading a global ``model``). Names are read statically, with Python's own
scoping (:mod:`symtable`): when a cell that runs reads, at module level or from inside a
function, a global that only skippable cells define, those cells run too, and the cells they
read from (:func:`plan`), so fast grading gives the grade a full run gives. What static
reading cannot see (``globals()["img"]``, ``exec``) fails as it would in any run, with Python's
``NameError`` naming the variable.
"""

from __future__ import annotations

import re
import symtable
from dataclasses import dataclass, field

from nbformat import NotebookNode

from . import notebooks

SKIPPED_NOTE = ("(not run when grading: it draws or prepares a figure and decides no grade; "
                "the outputs below are the ones submitted)\n")


def is_skippable(cell: NotebookNode) -> bool:
    """An instructor code cell of a trusted notebook that no test needs: locked, neither an
    answer, a test nor a setup cell."""
    from .nbgrader_ext import is_setup_cell, is_test_cell

    meta = notebooks.nbgrader_meta(cell)
    return (cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("solution")
            and not is_test_cell(cell) and not is_setup_cell(cell)
            and isinstance(meta.get("grade_id"), str))


@dataclass
class Names:
    """The module-level names a piece of code defines and the globals it reads."""

    defines: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)


def _python(source: str) -> str:
    """The cell as Python: IPython's magics and shell escapes turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def names_of(source: str) -> Names:
    """What a cell defines at module level and which globals it reads, at any depth.

    A cell that does not parse defines and reads nothing (it fails when run, in any mode).
    """
    try:
        table = symtable.symtable(_python(source), "<cell>", "exec")
    except (SyntaxError, ValueError):
        return Names()
    found = Names()
    for sym in table.get_symbols():
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            found.defines.add(sym.get_name())
        if sym.is_referenced():
            found.reads.add(sym.get_name())
    stack = list(table.get_children())
    while stack:
        scope = stack.pop()
        stack.extend(scope.get_children())
        for sym in scope.get_symbols():
            if sym.is_global() and sym.is_referenced():
                found.reads.add(sym.get_name())
            if sym.is_declared_global() and sym.is_assigned():
                found.defines.add(sym.get_name())
    return found


@dataclass(frozen=True)
class Plan:
    """Which cells a fast run skips, by ``grade_id``; ``needed``: the instructor cells it runs
    although no test needs them, because code that runs reads a name only they define."""

    skip: frozenset[str]
    needed: tuple[str, ...] = ()


def plan(submitted: NotebookNode, trusted: NotebookNode) -> Plan:
    """The cells of ``submitted`` a grade does not need, judged against the lab's ``trusted``
    (source) notebook.

    A skippable cell still runs when a cell that runs reads a name that only skippable cells
    define; then every skippable cell defining it runs (in notebook order, as in a full run),
    and so, in turn, do the cells those read from.
    """
    from .nbgrader_ext import is_test_cell  # it imports this module

    skippable = {notebooks.nbgrader_meta(c)["grade_id"]: c.source
                 for c in trusted.cells if is_skippable(c)}
    candidates: dict[str, Names] = {}
    running = Names()
    for cell in submitted.cells:
        if cell.cell_type != "code":
            continue
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if grade_id in skippable:  # the trusted source, as nbgrader's OverwriteCells restores it
            candidates[grade_id] = names_of(skippable[grade_id])
        elif not is_test_cell(cell):  # tests run in the harness, on the grader's own objects
            names = names_of(cell.source)
            running.defines |= names.defines
            running.reads |= names.reads
    reads, needed = set(running.reads), []
    while True:
        wanted = [g for g, names in candidates.items()
                  if g not in needed and names.defines & (reads - running.defines)]
        if not wanted:
            break
        for grade_id in wanted:
            needed.append(grade_id)
            reads |= candidates[grade_id].reads
    order = list(candidates)
    return Plan(frozenset(candidates) - set(needed), tuple(sorted(needed, key=order.index)))


SKIPPED_NAME_NOTE = ("`{name}` is defined only by an instructor cell that fast grading does "
                     "not run ({cell}: it draws or prepares a figure); it is read where Python "
                     "cannot see it in advance (eval, exec). Grade with `course grade --full`")
_UNDEFINED = re.compile(r"name '(\w+)' is not defined")


def explain_missing_names(nb: NotebookNode, trusted: NotebookNode,
                          skipped: frozenset[str]) -> list[str]:
    """Say so under every error of ``nb`` that is a ``NameError`` for a name only a skipped
    cell defines (a student's code that reads it in a way :func:`plan` cannot see); returns
    the names, in order of appearance."""
    defined_by: dict[str, str] = {}
    for cell in trusted.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if grade_id in skipped:
            for name in names_of(cell.source).defines:
                defined_by.setdefault(name, grade_id)
    found: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('evalue', '')}\n" + "\n".join(out.get("traceback", []))
            names = [n for n in _UNDEFINED.findall(text) if n in defined_by]
            for name in dict.fromkeys(names):
                note = SKIPPED_NAME_NOTE.format(name=name, cell=defined_by[name])
                out["evalue"] = f"{out.get('evalue', '')} ({note})"
                out["traceback"] = [*out.get("traceback", []), note]
                if name not in found:
                    found.append(name)
    return found


def mark_skipped(cell: NotebookNode) -> None:
    """The graded copy of a skipped cell: the submitted outputs under one line that says so.

    Submitted error outputs go: an error under an instructor cell would read as the course's
    failure or the grader's (``autograder/instructor_cells.py``, ``worker.incidents``).
    """
    import nbformat

    note = nbformat.v4.new_output("stream", name="stdout", text=SKIPPED_NOTE)
    cell.outputs = [note, *[o for o in cell.get("outputs", [])
                            if o.get("output_type") != "error"]]
    cell.execution_count = None
