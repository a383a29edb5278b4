"""Notebook text transformations shared by the build and the sample submissions.

The source notebooks mark solutions, hidden tests and marking schemes with nbgrader's
delimiters. nbgrader turns them into the student copies; these helpers make the other two
views: the self-study solution (solutions kept, hidden tests and marking schemes removed) and
a filled-in student answer (the solution text without its delimiters).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
BEGIN_SCHEME, END_SCHEME = "BEGIN MARK SCHEME", "END MARK SCHEME"
_TASK_RE = re.compile(r"task(\d+)")


def drop_region(text: str, begin: str, end: str) -> str:
    """Remove every line from one containing ``begin`` to one containing ``end`` inclusive."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if begin in line:
            if inside:
                raise ValueError(f"nested {begin!r} in:\n{text}")
            inside = True
        elif end in line:
            if not inside:
                raise ValueError(f"{end!r} without {begin!r} in:\n{text}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{begin!r} without {end!r} in:\n{text}")
    return "".join(out).rstrip("\n")


def region(text: str, begin: str, end: str) -> str:
    """The lines strictly between the first line holding ``begin`` and the next holding
    ``end`` (a marking scheme, say), or "" when there is no such region."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if begin in line]
    if not starts:
        return ""
    ends = [i for i, line in enumerate(lines) if end in line and i > starts[0]]
    return "\n".join(lines[starts[0] + 1:ends[0] if ends else len(lines)]).strip("\n")


def drop_marker_lines(text: str, *markers: str) -> str:
    """Remove the lines that hold any of ``markers``, keeping what is between them."""
    lines = text.splitlines(keepends=True)
    return "".join(ln for ln in lines if not any(m in ln for m in markers)).rstrip("\n")


def solution_text(cell_source: str) -> str:
    """A source cell as the student who solved it would have it: delimiters and hidden parts gone.

    Markdown answers lose their marking scheme; code loses the solution delimiters.
    """
    text = drop_region(cell_source, BEGIN_SCHEME, END_SCHEME)
    text = drop_region(text, BEGIN_HIDDEN, END_HIDDEN)
    return drop_marker_lines(text, BEGIN_SOLUTION, END_SOLUTION)


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    """The cell's nbgrader metadata, or ``{}``."""
    return cell.get("metadata", {}).get("nbgrader", {})


def task_of(grade_id: str) -> int | None:
    """The task number a ``grade_id`` belongs to (``test_task6_ig_shape`` -> 6), else None."""
    match = _TASK_RE.search(grade_id)
    return int(match.group(1)) if match else None


def to_solution_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The self-study view of a source notebook (a new object; ``nb`` is untouched)."""
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        cell.source = solution_text(cell.source)
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    out.metadata.pop("celltoolbar", None)
    return out


def read(path: Path) -> nbformat.NotebookNode:
    """Read a notebook (version 4)."""
    return nbformat.read(str(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook the same way every time (nbformat's sorted, indented JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
