"""Fuzz staging with thousands of mutated submissions (issue: trusted grading).

A seeded mutator (``random.Random(SEED)``, no other dependency: the same cases on every run)
turns the fixture lab's solved and blank notebooks into broken ones: values of the wrong JSON
type at random paths, deleted and inserted keys and cells, grading metadata changed every way,
deep nesting, huge strings, bytes that are not UTF-8, truncated files; every few cases the
submission folder also gets symbolic links, FIFOs and shadowing files. For each case staging
must return, write a notebook that nbformat accepts, grade exactly the release's cells with
the release's metadata and leave ``submitted/`` untouched.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks
from autograder.samples import make_submission
from autograder.staging import stage_submission

from .test_staging import LAB, NB, deadline, digest, graded, locked_sources, make_course

SEED = 20_261_123
CASES = 2_000
FOLDER_EVERY = 8  # every 8th case also plants links, FIFOs or shadowing files
DEEP = "@@deep@@"  # replaced in the JSON text by nesting too deep to build as Python objects
GRADE_IDS = ("task1_add", "test_task1_add", "task2_mean", "test_task2_mean", "task2_answer",
             "mini_md_01", "mini_code_02")
NOTEBOOK_KEYS = ("cells", "metadata", "source", "cell_type", "id", "nbgrader", "grade_id",
                 "points", "grade", "solution", "locked", "outputs", "attachments",
                 "execution_count", "nbformat", "nbformat_minor", "worksheets", "kernelspec")


class Mutator:
    """Deterministic mutations of a notebook's JSON, described for failure messages."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.done: list[str] = []

    def value(self) -> object:
        """A value of a random JSON type, often one a notebook never holds there."""
        rng = self.rng
        choices: list[Callable[[], object]] = [
            lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-5, 5),
            lambda: rng.choice([2**63, 10**30, -(10**20)]),
            lambda: rng.choice([1e308, -1e308, math.nan, math.inf, -math.inf, 0.5]),
            lambda: rng.choice(["", "x", "code", "markdown", "raw", "heading", "\x00", "\ud800",
                                "\u202e", "a" * 300]),
            lambda: rng.choice(GRADE_IDS), lambda: [rng.choice(GRADE_IDS)],
            lambda: [], lambda: {}, lambda: ["line\n", 3], lambda: {"a": [1, {"b": None}]},
            lambda: [[[[[]]]]], lambda: DEEP, lambda: "y" * rng.choice([10_000, 1_000_000]),
        ]
        return rng.choice(choices)()

    def path(self, doc: object) -> list:
        """A random path into ``doc`` (keys and indices), biased towards the cells."""
        rng, path, node = self.rng, [], doc
        if isinstance(doc, dict) and isinstance(doc.get("cells"), list) and doc["cells"] \
                and rng.random() < 0.7:
            index = rng.randrange(len(doc["cells"]))
            path, node = ["cells", index], doc["cells"][index]
        while isinstance(node, dict | list) and node and (not path or rng.random() < 0.7):
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            path.append(key)
            node = node[key]
        return path

    def parent(self, doc: object, path: list) -> object:
        for key in path[:-1]:
            doc = doc[key]
        return doc

    def swap(self, doc: object) -> object:
        path = self.path(doc)
        if not path:
            return self.value()
        self.parent(doc, path)[path[-1]] = self.value()
        self.done.append(f"swap {path}")
        return doc

    def delete(self, doc: object) -> object:
        path = self.path(doc)
        if path:
            del self.parent(doc, path)[path[-1]]
            self.done.append(f"delete {path}")
        return doc

    def insert(self, doc: object) -> object:
        path, node = self.path(doc), doc
        for key in path:
            node = node[key]
        if isinstance(node, dict):
            node[self.rng.choice(NOTEBOOK_KEYS)] = self.value()
        elif isinstance(node, list):
            node.insert(self.rng.randint(0, len(node)), self.value())
        self.done.append(f"insert at {path}")
        return doc

    def cells(self, doc: object) -> object:
        """Reorder, duplicate, drop or retype whole cells."""
        cells = doc.get("cells") if isinstance(doc, dict) else None
        if not isinstance(cells, list) or not cells:
            return doc
        rng, index = self.rng, self.rng.randrange(len(cells))
        action = rng.choice(["duplicate", "drop", "shuffle", "retype", "same_ids", "reverse"])
        if action == "duplicate":
            cells.insert(rng.randint(0, len(cells)), copy.deepcopy(cells[index]))
        elif action == "drop":
            del cells[index]
        elif action == "shuffle":
            rng.shuffle(cells)
        elif action == "reverse":
            cells.reverse()
        elif isinstance(cells[index], dict):
            if action == "retype":
                cells[index]["cell_type"] = rng.choice(["code", "markdown", "raw", "heading", 5])
            else:
                for cell in cells:
                    if isinstance(cell, dict):
                        cell["id"] = "same"
        self.done.append(f"cells {action} {index}")
        return doc

    def grading(self, doc: object) -> object:
        """Change one cell's nbgrader metadata: points, flags, grade_id, or its whole value."""
        cells = doc.get("cells") if isinstance(doc, dict) else None
        if not isinstance(cells, list) or not cells or not isinstance(cells[0], dict):
            return doc
        rng = self.rng
        cell = rng.choice([c for c in cells if isinstance(c, dict)])
        meta = cell.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return doc
        key = rng.choice(["points", "grade", "solution", "locked", "task", "grade_id", "whole"])
        value = rng.choice([self.value(), 1000, -3, "10", True, False, rng.choice(GRADE_IDS),
                            "bonus"])
        if key == "whole":
            meta["nbgrader"] = rng.choice([value, None, {}, {"grade": True, "points": 9}])
        elif isinstance(meta.get("nbgrader"), dict):
            meta["nbgrader"][key] = value
        else:
            meta["nbgrader"] = {key: value}
        self.done.append(f"grading {cell.get('id')!r}.{key} = {value!r:.40}")
        return doc

    def serialise(self, doc: object) -> bytes:
        text = json.dumps(doc, allow_nan=True)
        if DEEP in text:
            depth = self.rng.choice([50, 900, 5_000, 100_000])
            text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth, 1)
            self.done.append(f"nesting {depth}")
        raw = text.encode("utf-8", "surrogatepass")
        rng = self.rng
        if rng.random() < 0.15:
            action = rng.choice(["truncate", "flip", "bad utf-8", "bom", "utf-16", "v3"])
            self.done.append(f"bytes {action}")
            position = rng.randrange(len(raw) or 1)
            if action == "truncate":
                raw = raw[:position]
            elif action == "flip":
                raw = raw[:position] + bytes([rng.randrange(256)]) + raw[position + 1:]
            elif action == "bad utf-8":
                raw = raw[:position] + b"\xff\xfe\x80" + raw[position:]
            elif action == "bom":
                raw = b"\xef\xbb\xbf" + raw
            elif action == "utf-16":
                raw = text.encode("utf-16", "surrogatepass")
            else:
                raw = as_v3(doc)
        return raw

    def mutate(self, base: str) -> bytes:
        """One case: one to four structural mutations of the notebook JSON ``base``, as bytes."""
        self.done = []
        doc = json.loads(base)
        steps = [self.swap, self.delete, self.insert, self.cells, self.grading, self.grading]
        for _ in range(self.rng.randint(1, 4)):
            doc = self.rng.choice(steps)(doc)
        return self.serialise(doc)


def as_v3(doc: object) -> bytes:
    """The cells of ``doc`` as an nbformat 3 notebook (whatever state they are in)."""
    cells = doc.get("cells") if isinstance(doc, dict) else doc
    cells = cells if isinstance(cells, list) else [cells]
    converted = [{**c, "input": c.pop("source", "")} if isinstance(c, dict)
                 and c.get("cell_type") == "code" else c for c in map(copy.copy, cells)]
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {},
                       "worksheets": [{"cells": converted}]}, allow_nan=True).encode()


BLANK_PLANTS = (0, 1, 4)  # plants after which the notebook must be graded as blank


def plant(lab: Path, course: Path, kind: int) -> str:
    """Put one hostile thing into the submission folder; return what, for messages."""
    if kind == 0:
        (lab / NB).unlink()
        (lab / NB).symlink_to(course / "source" / LAB / NB)
        return "notebook linked to the source solution"
    if kind == 1:
        (lab / NB).unlink()
        os.mkfifo(lab / NB)
        return "notebook is a FIFO"
    if kind == 2:
        (lab / "passwd").symlink_to("/etc/passwd")
        (lab / "zero").symlink_to("/dev/zero")
        (lab / "mem").symlink_to("/proc/self/mem")
        return "links to /etc/passwd, /dev/zero, /proc/self/mem"
    if kind == 3:
        os.mkfifo(lab / "pipe")
        (lab / "torch.py").write_text("raise SystemExit")
        (lab / "sub").mkdir()
        (lab / "sub" / "up").symlink_to("../..", target_is_directory=True)
        return "FIFO, torch.py, linked subfolder"
    real = lab.with_name("real")
    lab.rename(real)
    lab.symlink_to(real, target_is_directory=True)
    return "lab folder is a link"


def no_links_or_specials(folder: Path) -> bool:
    return all(stat.S_ISREG(p.lstat().st_mode) or stat.S_ISDIR(p.lstat().st_mode)
               for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The course, and the solved and blank notebooks' JSON."""
    course = make_course(tmp_path_factory.mktemp("course"))
    solved = make_submission(LAB, tmp_path_factory.mktemp("solved") / LAB, root=course)
    return (course, json.loads((solved / NB).read_text()),
            json.loads((course / "release" / LAB / NB).read_text()))


@pytest.fixture
def scratch(tmp_path):
    """A folder for thousands of small files, in memory (``/dev/shm``) where there is one:
    on some disks rewriting a small file takes milliseconds, longer than staging it."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="fuzz-staging-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_mutator_is_deterministic(bases):
    _, solved, _ = bases
    first, again = Mutator(SEED), Mutator(SEED)
    base = json.dumps(solved)
    assert [first.mutate(base) for _ in range(50)] == [again.mutate(base) for _ in range(50)]


def test_fuzzed_submissions_stage_safely(bases, scratch):
    course, solved, blank = bases
    release = course / "release" / LAB
    release_nb = notebooks.read(release / NB)
    want_graded, want_locked = graded(release_nb), locked_sources(release_nb)
    bases_json = (json.dumps(blank), json.dumps(solved))
    # Cases without planted files reuse one folder.
    plain_lab, plain_dest = (scratch / top / "plain" / LAB for top in ("submitted", "staged"))
    plain_lab.mkdir(parents=True)
    mutator = Mutator(SEED)
    for case in range(CASES):
        raw = mutator.mutate(bases_json[case % 2])
        what = f"case {case} (seed {SEED}): {'; '.join(mutator.done)}"
        kind = (case // FOLDER_EVERY) % 5 if case % FOLDER_EVERY == 0 else None
        if kind is None:
            lab, dest = plain_lab, plain_dest
            (dest / NB).unlink(missing_ok=True)
        else:
            lab, dest = (scratch / top / f"s{case}" / LAB for top in ("submitted", "staged"))
            lab.mkdir(parents=True)
        (lab / NB).write_bytes(raw)
        if kind is not None:
            what += "; " + plant(lab, course, kind)
        before = digest(lab.parent)
        try:
            with deadline(20):
                stage_submission(lab, release, dest)
            nb = nbformat.v4.reads((dest / NB).read_text(encoding="utf-8"))
            nbformat.validate(nb)
        except Exception as exc:  # report the case, so that it can be replayed
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}"[:2000])
        ids = [notebooks.nbgrader_meta(c).get("grade_id") for c in nb.cells
               if notebooks.nbgrader_meta(c)]
        assert sorted(ids) == sorted(want_graded), what
        assert graded(nb) == want_graded, what
        assert locked_sources(nb) == want_locked, what
        assert nb.metadata == release_nb.metadata, what
        assert no_links_or_specials(dest), what
        assert digest(lab.parent) == before, what
        if kind in BLANK_PLANTS:
            assert json.loads((dest / NB).read_text()) == blank, what
        if kind is not None:
            shutil.rmtree(lab.parent)
            shutil.rmtree(dest.parent)
