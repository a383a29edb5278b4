"""Stage one submission for grading: a repaired copy, so one broken file never stops a batch.

``submitted/`` is never modified. The staged copy holds every notebook the lab expects:

- a missing notebook, or one that is not valid notebook JSON, is replaced by the blank student
  copy (it scores 0) and reported;
- notebooks the lab does not have are left out and reported;
- in each notebook, a graded cell that appears twice keeps its first copy (the others lose their
  grading metadata: nbgrader would abort the whole batch, nbgrader issue 1083), a graded cell
  whose type was changed gets its type back, and a deleted test cell is put back where the
  release had it. Edited test cells are restored by nbgrader itself, from the gradebook.

Every repair is described in one short line; the grade table and CSV show them.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import notebooks


@dataclass
class StagingReport:
    """What was repaired in one submission, one short line per repair."""

    notes: list[str] = field(default_factory=list)

    def add(self, note: str) -> None:
        self.notes.append(note)


def _load(path: Path) -> nbformat.NotebookNode | None:
    """The notebook at ``path``, or None when it is not a valid notebook."""
    try:
        with warnings.catch_warnings():  # e.g. duplicate cell ids: repaired below
            warnings.simplefilter("ignore")
            nb = nbformat.read(str(path), as_version=4)
            nbformat.validate(nb)
    except (OSError, ValueError, json.JSONDecodeError, nbformat.ValidationError,
            AttributeError, KeyError, TypeError):
        return None
    return nb


def _unique_ids(nb: nbformat.NotebookNode) -> None:
    """Give every cell an id of its own (a copied cell may share its original's)."""
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id") or f"cell-{index}"
        while cell_id in seen:
            cell_id = f"{cell_id}-{index}"[:64]
        cell["id"] = cell_id
        seen.add(cell_id)


def _graded_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [notebooks.nbgrader_meta(c).get("grade_id", "") for c in nb.cells]


def repair_notebook(nb: nbformat.NotebookNode, release: nbformat.NotebookNode,
                    name: str, report: StagingReport) -> nbformat.NotebookNode:
    """Make ``nb``'s graded cells match the release's: unique, right type, none missing.

    Args:
        nb: the student's notebook (modified and returned).
        release: the blank student copy of the same notebook.
        name: the notebook's file name, for the report.
        report: receives one line per repair.
    """
    expected = {notebooks.nbgrader_meta(c)["grade_id"]: c for c in release.cells
                if notebooks.nbgrader_meta(c).get("grade_id")}
    seen: set[str] = set()
    for cell in nb.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if not grade_id:
            continue
        if grade_id in seen or grade_id not in expected:
            cell.metadata.pop("nbgrader", None)
            if grade_id in seen:
                report.add(f"{name}: cell {grade_id} appears twice; the later copy is not graded")
            continue
        seen.add(grade_id)
        want = expected[grade_id].cell_type
        if cell.cell_type != want:
            report.add(f"{name}: cell {grade_id} was turned into {cell.cell_type}; restored to "
                       f"{want}")
            restored = nbformat.from_dict(dict(expected[grade_id]))
            restored.source = cell.source
            cell.clear()
            cell.update(restored)
    # Put back deleted graded cells, after the graded cell that precedes them in the release.
    order = list(expected)
    for index, grade_id in enumerate(order):
        if grade_id in seen:
            continue
        meta = notebooks.nbgrader_meta(expected[grade_id])
        kind = "test cell" if meta.get("grade") and not meta.get("solution") else "answer cell"
        report.add(f"{name}: {kind} {grade_id} was deleted; restored from the release")
        ids = _graded_ids(nb)
        previous = [g for g in order[:index] if g in ids]
        position = ids.index(previous[-1]) + 1 if previous else 0
        nb.cells.insert(position, nbformat.from_dict(dict(expected[grade_id])))
        seen.add(grade_id)
    if nb.get("nbformat_minor", 0) >= 5:
        _unique_ids(nb)
    return nb


def stage_submission(submission: Path, release: Path, dest: Path) -> StagingReport:
    """Write a repaired copy of ``submission`` (a ``<student>/<lab>`` folder) into ``dest``.

    Args:
        submission: the student's folder; only read.
        release: ``release/<lab>``, the blank student copy.
        dest: folder to create; receives one notebook per release notebook, plus the student's
            other files.
    Returns:
        The repairs made.
    """
    report = StagingReport()
    dest.mkdir(parents=True, exist_ok=True)
    expected = sorted(p.name for p in release.glob("*.ipynb"))
    submitted = sorted(p.name for p in submission.glob("*.ipynb")) if submission.is_dir() else []
    if not submitted:
        report.add("no notebooks submitted")
    for name in sorted(set(submitted) - set(expected)):
        report.add(f"{name}: not part of this lab; ignored")
    if submission.is_dir():
        for path in submission.iterdir():
            if path.is_file() and path.suffix != ".ipynb" and path.stat().st_size < 50_000_000:
                shutil.copyfile(path, dest / path.name)
    for name in expected:
        blank = notebooks.read(release / name)
        nb = None
        if name in submitted:
            nb = _load(submission / name)
            if nb is None:
                report.add(f"{name}: not a readable notebook (corrupt JSON?); graded as blank")
        elif submitted:
            report.add(f"{name}: missing; graded as blank")
        nb = repair_notebook(nb, blank, name, report) if nb is not None else blank
        notebooks.write(nb, dest / name)
    return report
