"""Stage one submission for grading: a clean, repaired copy, so that one broken or hostile file
never stops a batch nor earns points it should not.

``submitted/`` is never modified, and is read only as :mod:`autograder.intake` allows: regular
files, never through a link, within size caps, no names that would shadow the kernel's
modules. The staged copy holds every notebook the lab expects:

- a missing notebook, or one that cannot be read or parsed, is replaced by the blank student
  copy (it scores 0) and reported; notebooks the lab does not have are left out and reported;
- every other notebook is rebuilt from what a student may change (each cell's type, source,
  id and Markdown attachments) on the release's notebook metadata; other metadata is left out
  and malformed values are repaired; outputs too, except under the instructor's own cells,
  which keep their text and PNG/JPEG figures (checked, capped, nothing active), for fast
  grading to show where it does not run those cells (``autograder/fast.py``);
- graded and locked cells are matched to the release by ``grade_id``: each gets exactly the
  release's nbgrader metadata back, test and locked cells the release's source too; a graded
  cell that appears twice keeps its first copy (nbgrader would abort the whole batch, nbgrader
  issue 1083), one whose type was changed gets its type back, a deleted one is put back where
  the release had it, and a cell claiming a ``grade_id`` the lab does not have is not graded;
- ``timestamp.txt`` holds the time the submission arrived, never the student's own.

Every repair is described in one short line; the grade table and CSV show them.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nbformat

from . import notebooks
from .intake import MAX_DROP_NOTES, TIMESTAMP_FILE, Submission, read_submission, show

MAX_CELLS = 2_000  # cells kept per notebook; later ones are dropped
MAX_ATTACHMENTS = 100  # attachments of one Markdown cell
MAX_CLAIM_TEXT = 200  # longest grading-metadata text value looked at
MAX_KEPT_OUTPUTS = 20  # outputs kept under one instructor cell
MAX_KEPT_OUTPUT_BYTES = 5_000_000  # their size (the graded copy's cap on a cell's figures)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
GRADING_FLAGS = ("grade", "solution", "locked", "task", "points")
CELL_TYPES = ("code", "markdown", "raw")
_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MISSING = object()
_NOT_PLAIN = "(not a plain value)"  # stands for a nested or huge claimed value: equals nothing


@dataclass
class StagingReport:
    """What was repaired in one submission, one short line per repair."""

    notes: list[str] = field(default_factory=list)

    def add(self, note: str) -> None:
        self.notes.append(note)


class Unreadable(ValueError):
    """A notebook that cannot be rebuilt; the message says why, briefly."""


class NotARelease(Unreadable):
    """A notebook with cells but not one of the release's graded cells (no nbgrader metadata):
    a copy of ``solutions/``, or a notebook made outside the release."""


def stage_submission(submission: Path, release: Path, dest: Path) -> StagingReport:
    """Write a repaired copy of ``submission`` (a ``<student>/<lab>`` folder) into ``dest``.

    Args:
        submission: ``<root>/submitted/<student>/<lab>``; only read.
        release: ``release/<lab>``, the blank student copy (trusted).
        dest: folder to create; receives one notebook per release notebook, the student's
            other files and ``timestamp.txt`` (the collection time).
    Returns:
        The repairs made.
    """
    report = StagingReport()
    dest.mkdir(parents=True, exist_ok=True)
    expected = sorted(p.name for p in release.glob("*.ipynb"))
    got = read_submission(submission, expected, dest)
    if got.blank:
        report.add(got.blank)
    elif not got.any_notebook:
        report.add("no notebooks submitted")
    for name in got.extra[:MAX_DROP_NOTES]:
        report.add(f"{show(name)}: not part of this lab; ignored")
    if len(got.extra) > MAX_DROP_NOTES:
        report.add(f"{len(got.extra) - MAX_DROP_NOTES} more notebooks not part of this lab; "
                   "ignored")
    for note in got.notes:
        report.add(note)
    if got.timestamp is not None:
        (dest / TIMESTAMP_FILE).write_text(got.timestamp, encoding="utf-8")
    for name in expected:
        blank = read_release(release / name)
        nb = _stage_notebook(name, got, blank, report)
        try:
            notebooks.write(nb, dest / name)
        except Exception as exc:  # a repaired notebook nbformat cannot write: grade as blank
            if nb is blank:
                raise  # the release itself is broken: the instructor's to fix, not a student's
            report.add(f"{name}: not a readable notebook ({_why(exc)}); graded as blank")
            notebooks.write(blank, dest / name)
    return report


def read_release(path: Path) -> nbformat.NotebookNode:
    """The release notebook at ``path``, read once while its file is unchanged.

    Shared between the submissions of a batch (and their threads): never modify it; the
    staging functions copy what they take from it.
    """
    info = path.stat()
    return _read_release(path, (info.st_ino, info.st_mtime_ns, info.st_size))


@lru_cache(maxsize=16)
def _read_release(path: Path, _version: tuple[int, int, int]) -> nbformat.NotebookNode:
    return notebooks.read(path)


def _stage_notebook(name: str, got: Submission, blank: nbformat.NotebookNode,
                    report: StagingReport) -> nbformat.NotebookNode:
    """The notebook to grade for ``name``: the student's, repaired, else ``blank``."""
    if name in got.notebooks:
        local = StagingReport()  # a notebook that fails half-way keeps only its failure note
        try:
            nb = sanitize_notebook(got.notebooks[name], blank, name, local)
        except NotARelease:
            report.add(f"{name}: not a release notebook (no nbgrader metadata; a copy of "
                       "solutions/ or a notebook made elsewhere?); graded as blank")
            return blank
        except Exception as exc:  # any malformed value costs this notebook, never the batch
            report.add(f"{name}: not a readable notebook ({_why(exc)}); graded as blank")
            return blank
        report.notes.extend(local.notes)
        return nb
    if name in got.refused:
        report.add(f"{name}: {got.refused[name]} (graded as blank)")
    elif got.any_notebook and not got.blank:
        report.add(f"{name}: missing; graded as blank")
    return blank


def _why(exc: Exception) -> str:
    """A short reason for a notebook that could not be rebuilt."""
    if isinstance(exc, Unreadable):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"corrupt JSON? {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "too large to read"
    return show(f"{type(exc).__name__}: {exc}", 100)


def sanitize_notebook(raw: bytes, release: nbformat.NotebookNode, name: str,
                      report: StagingReport) -> nbformat.NotebookNode:
    """Rebuild the notebook file ``raw`` on ``release`` and repair it (see the module's doc).

    Args:
        raw: the file's bytes.
        release: the blank student copy of the same notebook; not modified.
        name: the notebook's file name, for the report.
        report: receives one line per repair.
    Returns:
        A valid notebook whose graded cells are exactly the release's.
    Raises:
        NotARelease: the notebook has cells but none of the release's graded cells.
        Exception: of any kind when ``raw`` is not a notebook at all; the caller grades the
            notebook as blank.
    """
    cells = _parse_cells(raw, name, report)
    nb = _rebuild(cells, release, name, report)
    graded = _release_cells(release)
    if nb.cells and graded and not any(notebooks.nbgrader_meta(c).get("grade_id") in graded
                                       for c in nb.cells):
        raise NotARelease(name)
    nb = repair_notebook(nb, release, name, report)
    nbformat.validate(nb)
    return nb


def _parse_cells(raw: bytes, name: str, report: StagingReport) -> list:
    """The JSON list of cells of the notebook file ``raw`` (nbformat 3 is converted).

    Raises:
        Unreadable: not a JSON object with a list of cells.
        ValueError, RecursionError: corrupt or too deeply nested JSON.
    """
    try:
        top = json.loads(raw)
    except UnicodeDecodeError:
        top = json.loads(raw.decode("utf-8", "replace"))
        report.add(f"{name}: bytes that are not UTF-8 were replaced")
    if not isinstance(top, dict):
        raise Unreadable(f"a JSON {type(top).__name__}, not an object")
    if "cells" not in top and "worksheets" in top:
        cells = _upgrade_v3(top)
        report.add(f"{name}: an nbformat 3 notebook; converted to version 4")
        return cells
    cells = top.get("cells")
    if not isinstance(cells, list):
        raise Unreadable("no list of cells")
    return cells


def _upgrade_v3(top: dict) -> list:
    """The cells of an nbformat 3 notebook, converted to version 4 by nbformat."""
    from nbformat.v4.convert import upgrade

    nb = upgrade(nbformat.from_dict(top), from_version=3, from_minor=0)
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Unreadable("an nbformat 3 notebook that could not be converted")
    return cells


def _rebuild(cells: list, release: nbformat.NotebookNode, name: str,
             report: StagingReport) -> nbformat.NotebookNode:
    """A new notebook with the release's metadata and the clean parts of ``cells``."""
    problems: Counter[str] = Counter()
    if len(cells) > MAX_CELLS:
        problems[f"cells after the first {MAX_CELLS} dropped"] = len(cells) - MAX_CELLS
    clean = [c for c in (_clean_cell(raw, problems) for raw in cells[:MAX_CELLS])
             if c is not None]
    if problems:
        listed = ", ".join(f"{what}: {count}" for what, count in problems.items())
        report.add(f"{name}: malformed cells repaired ({listed})")
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": release.nbformat_minor,
                               "metadata": release.metadata, "cells": clean})  # copies


def _clean_cell(raw: object, problems: Counter[str]) -> dict | None:
    """The parts of one JSON cell a student may change, checked; None to drop it."""
    if not isinstance(raw, dict):
        problems["cells that are not objects dropped"] += 1
        return None
    kind = raw.get("cell_type")
    if not isinstance(kind, str) or kind not in CELL_TYPES:
        problems["cells of unknown type dropped"] += 1
        return None
    source = _text(raw.get("source", ""))
    if source is None:
        problems["sources that are not text emptied"] += 1
        source = ""
    cell_id = raw.get("id")
    cell: dict = {"cell_type": kind, "metadata": {}, "source": source,
                  "id": cell_id if isinstance(cell_id, str) and _ID_RE.match(cell_id) else ""}
    claim = _claim(raw.get("metadata"))
    if claim is not None:
        cell["metadata"]["nbgrader"] = claim
    if kind == "code":
        cell.update(outputs=_kept_outputs(raw.get("outputs")), execution_count=None)
    elif "attachments" in raw:
        attachments = _attachments(raw["attachments"])
        if attachments is None:
            problems["malformed attachments dropped"] += 1
        elif attachments:
            cell["attachments"] = attachments
    return cell


def _kept_outputs(value: object) -> list[dict]:
    """What may stay of a code cell's outputs: streams, and displays reduced to plain text and
    base64 PNG/JPEG images; anything else (errors, HTML, scripts, widgets) is dropped.
    ``repair_notebook`` keeps them under the instructor's cells only."""
    if not isinstance(value, list):
        return []
    kept: list[dict] = []
    size = 0
    for out in value[:MAX_KEPT_OUTPUTS]:
        if not isinstance(out, dict):
            continue
        new: dict | None = None
        if out.get("output_type") == "stream" and out.get("name") in ("stdout", "stderr"):
            text = _text(out.get("text"))
            new = {"output_type": "stream", "name": out["name"], "text": text} if text else None
        elif out.get("output_type") in ("display_data", "execute_result") and isinstance(
                out.get("data"), dict):
            data = {}
            for mime in ("image/png", "image/jpeg", "text/plain"):
                text = _text(out["data"].get(mime))
                if text and (mime == "text/plain" or _BASE64.fullmatch(text)):
                    data[mime] = text
            new = {"output_type": "display_data", "data": data, "metadata": {}} if data else None
        if new is not None:
            size += len(json.dumps(new))
            if size > MAX_KEPT_OUTPUT_BYTES:
                break
            kept.append(new)
    return kept


def _is_instructor_code(meta: dict) -> bool:
    """A release cell the instructor wrote and students cannot change: locked code, not graded."""
    return bool(meta.get("locked")) and not meta.get("solution") and not meta.get("grade")


def _utf8(text: str) -> str:
    """``text`` writable as UTF-8: lone surrogates (from ``\\ud800`` escapes) become ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _text(value: object) -> str | None:
    """A notebook text (a string or a list of strings) as one string; None if it is neither."""
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return _utf8("".join(value))
    return None


def _claim(metadata: object) -> dict | str | None:
    """What a cell's ``metadata.nbgrader`` claims, reduced to short plain values.

    None when it has none; ``"malformed"`` when it is not an object; otherwise the grading
    flags (a nested or long value becomes a marker that equals nothing) and ``grade_id`` (None
    unless it is short text).
    """
    if not isinstance(metadata, dict) or "nbgrader" not in metadata:
        return None
    value = metadata["nbgrader"]
    if not isinstance(value, dict):
        return "malformed" if value else None
    claim = {key: value[key] if _plain(value[key]) else _NOT_PLAIN
             for key in GRADING_FLAGS if key in value}
    if "grade_id" in value:
        grade_id = value["grade_id"]
        claim["grade_id"] = grade_id if isinstance(grade_id, str) and _plain(grade_id) else None
    return claim


def _plain(value: object) -> bool:
    """Whether ``value`` is a JSON scalar short enough to compare."""
    if isinstance(value, str):
        return len(value) <= MAX_CLAIM_TEXT
    return value is None or isinstance(value, bool | int | float)


def _attachments(value: object) -> dict | None:
    """Markdown attachments ``{file: {mime type: text}}`` cleaned, or None if malformed."""
    if not isinstance(value, dict) or len(value) > MAX_ATTACHMENTS:
        return None
    out = {}
    for filename, bundle in value.items():
        if not isinstance(bundle, dict) or not bundle:
            return None
        clean = {}
        for mime, data in bundle.items():
            text = _text(data)
            if text is None:
                return None
            clean[_utf8(mime)] = text
        out[_utf8(filename)] = clean
    return out


def _kind(meta: dict) -> str:
    """What a release cell is, for the notes: test, answer, task or locked cell."""
    if meta.get("solution"):
        return "answer cell"
    if meta.get("grade"):
        return "test cell"
    return "task cell" if meta.get("task") else "locked cell"


def _same(a: object, b: object) -> bool:
    """Equal JSON values (``True`` is not ``1``; NaN equals nothing)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _claims_grading(claim: object) -> bool:
    """Whether a cell's grading metadata claims anything (so its removal is worth a note)."""
    if not isinstance(claim, dict):
        return True
    return claim.get("grade_id") is not None or any(claim.get(k) for k in GRADING_FLAGS)


def _release_cells(release: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The release's cells that carry a ``grade_id``, in order."""
    cells = {}
    for cell in release.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str) and grade_id:
            cells.setdefault(grade_id, cell)
    return cells


def repair_notebook(nb: nbformat.NotebookNode, release: nbformat.NotebookNode,
                    name: str, report: StagingReport) -> nbformat.NotebookNode:
    """Make ``nb``'s graded cells exactly the release's: metadata, type, locked source, none
    twice, none missing; every other cell loses its grading metadata.

    Args:
        nb: the student's notebook (modified and returned); any cell metadata is tolerated.
        release: the blank student copy of the same notebook; not modified.
        name: the notebook's file name, for the report.
        report: receives one line per repair.
    """
    expected = _release_cells(release)
    seen: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata")
        if not isinstance(meta, dict) or "nbgrader" not in meta:
            continue
        claim = meta.pop("nbgrader")
        grade_id = claim.get("grade_id") if isinstance(claim, dict) else None
        if not isinstance(grade_id, str) or grade_id not in expected:
            if isinstance(grade_id, str):
                report.add(f"{name}: a cell claims grade id {show(grade_id)}, which this lab "
                           "does not have; not graded")
            elif _claims_grading(claim):
                report.add(f"{name}: a cell has grading metadata without a usable grade id; "
                           "not graded")
        elif grade_id in seen:
            report.add(f"{name}: cell {grade_id} appears twice; the later copy is not graded")
        else:
            seen.add(grade_id)
            _restore(cell, expected[grade_id], claim, name, report)
    _put_back_deleted(nb, expected, seen, name, report)
    for cell in nb.cells:  # outputs stay under the instructor's code cells only
        if cell.cell_type == "code" and not _is_instructor_code(notebooks.nbgrader_meta(cell)):
            cell.outputs = []
    _fix_ids(nb)
    return nb


def _restore(cell: nbformat.NotebookNode, want: nbformat.NotebookNode, claim: object,
             name: str, report: StagingReport) -> None:
    """Turn ``cell`` into the release's cell ``want``, keeping the student's answer text."""
    meta = want.metadata.nbgrader
    grade_id = meta["grade_id"]
    if not isinstance(claim, dict) or not all(
            _same(claim.get(k, _MISSING), meta.get(k, _MISSING)) for k in GRADING_FLAGS):
        report.add(f"{name}: the grading metadata of cell {grade_id} was changed; restored "
                   "from the release")
    kind = cell.get("cell_type")
    if kind != want.cell_type:
        report.add(f"{name}: cell {grade_id} was turned into {show(str(kind), 20)}; restored "
                   f"to {want.cell_type}")
    fresh = nbformat.from_dict(want)  # a deep copy (JSON values)
    source = _text(cell.get("source", "")) or ""
    if meta.get("solution"):
        fresh.source = source
        if want.cell_type != "code" and kind == want.cell_type and "attachments" in cell:
            fresh["attachments"] = cell["attachments"]
    elif source != want.source:
        report.add(f"{name}: {_kind(meta)} {grade_id} was edited; restored from the release")
    if want.cell_type == "code" and kind == "code" and _is_instructor_code(meta):
        fresh.outputs = cell.get("outputs", [])  # checked by _kept_outputs
    cell_id = cell.get("id")
    if isinstance(cell_id, str) and _ID_RE.match(cell_id):
        fresh["id"] = cell_id
    cell.clear()
    cell.update(fresh)


def _put_back_deleted(nb: nbformat.NotebookNode, expected: dict[str, nbformat.NotebookNode],
                      seen: set[str], name: str, report: StagingReport) -> None:
    """Insert each release cell missing from ``nb`` after the graded cell preceding it there."""
    order = list(expected)
    for index, grade_id in enumerate(order):
        if grade_id in seen:
            continue
        report.add(f"{name}: {_kind(expected[grade_id].metadata.nbgrader)} {grade_id} was "
                   "deleted; restored from the release")
        ids = [notebooks.nbgrader_meta(c).get("grade_id") for c in nb.cells]
        previous = [g for g in order[:index] if g in ids]
        position = ids.index(previous[-1]) + 1 if previous else 0
        nb.cells.insert(position, nbformat.from_dict(expected[grade_id]))
        seen.add(grade_id)


def _fix_ids(nb: nbformat.NotebookNode) -> None:
    """Give every cell a valid id of its own (nbformat 4.5+), or none (older minors)."""
    if nb.get("nbformat_minor", 0) < 5:
        for cell in nb.cells:
            cell.pop("id", None)
        return
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id")
        if not (isinstance(cell_id, str) and _ID_RE.match(cell_id)) or cell_id in seen:
            fresh = (f"cell-{index}-{n}" if n else f"cell-{index}" for n in itertools.count())
            cell_id = next(c for c in fresh if c not in seen)
        cell["id"] = cell_id
        seen.add(cell_id)
