"""Staging reads a submission without trusting it (issue: trusted grading).

Each rule of :mod:`autograder.intake` and :mod:`autograder.staging` is checked on the two-task
fixture lab (``tests/fixtures/course``): links and special files are never followed or opened,
names that would shadow the kernel's modules are dropped, folders are capped, the collection
time replaces the student's ``timestamp.txt``, and tampered or malformed notebooks are repaired
against the release or graded as blank, each with one note.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from autograder import intake, notebooks, staging
from autograder._paths import REPO_ROOT
from autograder.samples import make_submission
from autograder.staging import StagingReport, repair_notebook, stage_submission

FIXTURE = Path(__file__).parent / "fixtures" / "course"
LAB = "minilab"
NB = "quiz.ipynb"


def build_release(root: Path, lab: str = LAB) -> Path:
    """``release/<lab>`` made in-process by nbgrader's own generate_assignment preprocessors.

    The same bytes as ``course build`` (which also records the cells in a gradebook, 15 s),
    with the course's ``nbgrader_config.py`` for the stubs.
    """
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import SaveCells

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    steps = [p for p in GenerateAssignment.class_traits()["preprocessors"].default()
             if p is not SaveCells]
    for path in sorted((root / "source" / lab).glob("*.ipynb")):
        nb, resources = notebooks.read(path), {}
        for step in steps:
            nb, resources = step(config=config).preprocess(nb, resources)
        notebooks.write(nb, root / "release" / lab / path.name)
    return root / "release" / lab


def make_course(root: Path) -> Path:
    """A course root holding the fixture lab's source and release."""
    shutil.copytree(FIXTURE / "source", root / "source")
    build_release(root)
    return root


def graded(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """``grade_id -> nbgrader metadata`` of the cells that carry one."""
    return {notebooks.nbgrader_meta(c)["grade_id"]: dict(notebooks.nbgrader_meta(c))
            for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id")}


def locked_sources(nb: nbformat.NotebookNode) -> dict[str, str]:
    """``grade_id -> source`` of the cells that are not answers (tests, locked text)."""
    return {notebooks.nbgrader_meta(c)["grade_id"]: c.source for c in nb.cells
            if notebooks.nbgrader_meta(c).get("grade_id")
            and not notebooks.nbgrader_meta(c).get("solution")}


def digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's hash, a link's target, a folder's or FIFO's kind."""
    out = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            value = "link:" + os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            value = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            value = intake.describe(info.st_mode)
        out[str(path.relative_to(folder))] = value
    return out


@contextlib.contextmanager
def deadline(seconds: int = 10):
    """Fail (instead of hanging the test run) when the block blocks, e.g. on opening a FIFO."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s: something blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture
def lab(course, tmp_path) -> Path:
    """A fresh solved submission ``<tmp>/submitted/student/minilab`` for one test."""
    return make_submission(LAB, tmp_path / "submitted" / "student" / LAB, root=course)


def stage(course: Path, submission: Path) -> tuple[StagingReport, Path]:
    dest = submission.parents[2] / "staged" / submission.parent.name / submission.name
    with deadline():
        report = stage_submission(submission, course / "release" / LAB, dest)
    return report, dest


def release_nb(course: Path) -> nbformat.NotebookNode:
    return notebooks.read(course / "release" / LAB / NB)


def staged_nb(dest: Path) -> nbformat.NotebookNode:
    nb = notebooks.read(dest / NB)
    nbformat.validate(nb)
    return nb


def assert_blank(course: Path, dest: Path) -> None:
    assert json.loads((dest / NB).read_text()) == json.loads(
        (course / "release" / LAB / NB).read_text())


def assert_release_grading(course: Path, dest: Path) -> nbformat.NotebookNode:
    """The staged notebook is valid and grades exactly as the release says."""
    nb, blank = staged_nb(dest), release_nb(course)
    assert graded(nb) == graded(blank)
    assert locked_sources(nb) == locked_sources(blank)
    return nb


def edit(submission: Path, change) -> None:
    """Apply ``change(cells)`` to the submitted notebook's JSON."""
    doc = json.loads((submission / NB).read_text())
    change(doc["cells"])
    (submission / NB).write_text(json.dumps(doc))


def cell(cells: list, grade_id: str) -> dict:
    return next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


# --- what is kept ---------------------------------------------------------------------------

def test_a_clean_submission_is_staged_unchanged_with_its_files(course, lab):
    (lab / "data.csv").write_text("a,b\n1,2\n")
    (lab / "helpers.py").write_text("def f():\n    return 1\n")
    (lab / "images" / "cats").mkdir(parents=True)
    (lab / "images" / "cats" / "tom.png").write_bytes(b"\x89PNG")
    before = digest(lab.parent.parent)
    report, dest = stage(course, lab)
    assert report.notes == []
    assert json.loads((dest / NB).read_text()) == json.loads((lab / NB).read_text())
    assert (dest / "data.csv").read_text() == "a,b\n1,2\n"
    assert (dest / "helpers.py").is_file()
    assert (dest / "images" / "cats" / "tom.png").read_bytes() == b"\x89PNG"
    assert digest(lab.parent.parent) == before


def test_missing_extra_and_no_notebooks(course, tmp_path):
    sub = tmp_path / "submitted"
    renamed = make_submission(LAB, sub / "renamed" / LAB, root=course)
    (renamed / NB).rename(renamed / "quiz (1).ipynb")
    shutil.copyfile(renamed / "quiz (1).ipynb", renamed / "notes.ipynb")
    report, dest = stage(course, renamed)
    assert "quiz.ipynb: missing; graded as blank" in report.notes
    assert "notes.ipynb: not part of this lab; ignored" in report.notes
    assert not (dest / "notes.ipynb").exists()
    assert_blank(course, dest)
    (sub / "empty" / LAB).mkdir(parents=True)
    report, dest = stage(course, sub / "empty" / LAB)
    assert report.notes == ["no notebooks submitted"]
    assert_blank(course, dest)
    report, dest = stage(course, sub / "absent" / LAB)
    assert report.notes == ["no notebooks submitted"]
    assert_blank(course, dest) and not (dest / "timestamp.txt").exists()


# --- links and special files ----------------------------------------------------------------

def test_a_notebook_linked_to_the_source_solution_is_graded_blank(course, lab):
    (lab / NB).unlink()
    (lab / NB).symlink_to(course / "source" / LAB / NB)
    report, dest = stage(course, lab)
    assert report.notes == ["quiz.ipynb: a symbolic link; not followed (graded as blank)"]
    assert_blank(course, dest)
    assert (lab / NB).is_symlink()


def test_a_linked_lab_folder_is_not_followed(course, lab, tmp_path):
    real = lab.parent / "elsewhere"
    lab.rename(real)
    lab.symlink_to(real, target_is_directory=True)
    report, dest = stage(course, lab)
    assert report.notes == ["lab folder is a symbolic link; not followed"]
    assert_blank(course, dest)
    assert sorted(p.name for p in dest.iterdir()) == [NB]


def test_a_linked_student_folder_is_not_followed(course, lab, tmp_path):
    other = tmp_path / "submitted" / "other"
    other.symlink_to(lab.parent, target_is_directory=True)
    report, dest = stage(course, other / LAB)
    assert report.notes == ["student folder is a symbolic link; not followed"]
    assert_blank(course, dest)


@pytest.mark.parametrize("kind", ["a regular file", "a FIFO (named pipe)"])
def test_a_lab_folder_that_is_not_a_folder(course, tmp_path, kind):
    sub = tmp_path / "submitted" / "s"
    sub.mkdir(parents=True)
    if kind == "a regular file":
        (sub / LAB).write_text("not a folder")
    else:
        os.mkfifo(sub / LAB)
    report, dest = stage(course, sub / LAB)
    assert report.notes == [f"lab folder is {kind}, not a folder; graded as blank"]
    assert_blank(course, dest)


@pytest.mark.parametrize("target", ["/etc/passwd", "/etc/shadow", "/proc/self/mem", "/dev/zero",
                                    "../../../gradebook.db", "/"])
def test_links_to_anything_are_not_copied(course, lab, target):
    (lab / "stolen").symlink_to(target)
    report, dest = stage(course, lab)
    assert report.notes == ["stolen: a symbolic link; not followed"]
    assert not os.path.lexists(dest / "stolen")
    assert_release_grading(course, dest)


def test_links_inside_subfolders_and_linked_subfolders(course, lab):
    (lab / "data").mkdir()
    (lab / "data" / "ok.txt").write_text("ok")
    (lab / "data" / "passwd").symlink_to("/etc/passwd")
    (lab / "source").symlink_to(course / "source", target_is_directory=True)
    report, dest = stage(course, lab)
    assert report.notes == ["data/passwd: a symbolic link; not followed",
                            "source: a symbolic link; not followed"]
    assert (dest / "data" / "ok.txt").read_text() == "ok"
    assert not os.path.lexists(dest / "data" / "passwd")
    assert not os.path.lexists(dest / "source")


def test_fifos_are_never_opened(course, lab):
    (lab / NB).unlink()
    os.mkfifo(lab / NB)
    os.mkfifo(lab / "pipe")
    os.mkfifo(lab / "timestamp.txt")
    report, dest = stage(course, lab)  # a blocking open would hit the deadline
    assert report.notes == [
        "timestamp.txt: a FIFO (named pipe), not a regular file; not read",
        "pipe: a FIFO (named pipe), not a regular file; not read",
        "quiz.ipynb: a FIFO (named pipe), not a regular file; not read (graded as blank)"]
    assert_blank(course, dest)
    assert not os.path.lexists(dest / "pipe")


def test_read_file_refuses_what_fstat_says_is_not_regular(tmp_path):
    """The second check, on the open descriptor: a FIFO swapped in after lstat is not read."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to("/etc/passwd")
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with deadline():
            with pytest.raises(intake.Refused, match="a FIFO"):
                intake.read_file(folder, "pipe", 100)
            with pytest.raises(intake.Refused, match="symbolic link"):
                intake.read_file(folder, "link", 100)
    finally:
        os.close(folder)


def test_device_files_are_never_opened(course, lab):
    try:
        os.mknod(lab / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    except PermissionError:
        pytest.skip("creating a device file needs root")
    (lab / NB).unlink()
    os.mknod(lab / NB, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    report, dest = stage(course, lab)
    assert "zero: a character device, not a regular file; not read" in report.notes
    assert ("quiz.ipynb: a character device, not a regular file; not read (graded as blank)"
            in report.notes)
    assert not os.path.lexists(dest / "zero")
    assert_blank(course, dest)


# --- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "folder", "why"), [
    ("torch.py", False, "would shadow the installed module torch"),
    ("numpy", True, "would shadow the installed module numpy"),
    ("course_lib", True, "would shadow the installed module course_lib"),
    ("random.py", False, "would shadow the installed module random"),
    ("json", True, "would shadow the installed module json"),
    ("numpy.pth", False, "would shadow the installed module numpy"),
    ("torch.pyc", False, "would shadow the installed module torch"),
    ("numpy.cpython-311-x86_64-linux-gnu.so", False, "would shadow the installed module numpy"),
    ("sitecustomize.py", False, "would be imported by Python at start-up"),
    ("usercustomize.py", False, "would be imported by Python at start-up"),
    (".ipython", True, "a hidden folder (tool settings)"),
    (".jupyter", True, "a hidden folder (tool settings)"),
    (".config", True, "a hidden folder (tool settings)"),
    (".local", True, "a hidden folder (tool settings)"),
    ("matplotlibrc", False, "a tool settings file"),
    ("ipython_kernel_config.py", False, "a tool settings file"),
])
def test_names_that_change_the_kernel_are_dropped(course, lab, name, folder, why):
    if folder:
        (lab / name).mkdir()
        (lab / name / "__init__.py").write_text("raise SystemExit")
    else:
        (lab / name).write_text("raise SystemExit")
    report, dest = stage(course, lab)
    assert report.notes == [f"{name}: {why}; dropped"]
    assert not os.path.lexists(dest / name)


def test_the_graders_working_folder_does_not_count_as_installed(tmp_path, monkeypatch):
    (tmp_path / "zz_only_here.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    intake.installed_module.cache_clear()
    assert intake.installed_module("zz_only_here")
    monkeypatch.chdir(tmp_path)  # the kernel's working folder is another one
    intake.installed_module.cache_clear()
    assert not intake.installed_module("zz_only_here")
    intake.installed_module.cache_clear()


def test_ordinary_names_are_kept_and_deep_ones_are_not_checked_for_modules(course, lab):
    for name in ("helpers.py", "my_data.csv", "notes.txt", ".hidden_file", "data.v2.py"):
        (lab / name).write_text("x")
    (lab / "data" / "numpy").mkdir(parents=True)
    (lab / "data" / "torch.py").write_text("x")
    report, dest = stage(course, lab)
    assert report.notes == []
    for name in ("helpers.py", "my_data.csv", "notes.txt", ".hidden_file", "data.v2.py",
                 "data/torch.py"):
        assert (dest / name).is_file(), name
    assert (dest / "data" / "numpy").is_dir()


def test_names_with_control_characters_or_separators_are_dropped(course, lab):
    (lab / "bell\x07.txt").write_text("x")
    (lab / "back\\slash.txt").write_text("x")
    (lab / "rtl\u202etxt.exe").write_text("x")
    with open(os.fsencode(lab) + b"/bad\xff.txt", "w") as fh:
        fh.write("x")
    report, dest = stage(course, lab)
    assert sorted(report.notes) == sorted([
        "back\\slash.txt: a name with a path separator; dropped",
        "bad\\udcff.txt: a name with control or undecodable characters; dropped",
        "bell\\x07.txt: a name with control or undecodable characters; dropped",
        "rtl\\u202etxt.exe: a name with control or undecodable characters; dropped"])
    assert sorted(p.name for p in dest.iterdir()) == [NB, "timestamp.txt"]


def test_checkpoints_and_caches_are_left_out_silently(course, lab):
    (lab / ".ipynb_checkpoints").mkdir()
    (lab / ".ipynb_checkpoints" / "quiz-checkpoint.ipynb").write_text("{}")
    (lab / "__pycache__").mkdir()
    report, dest = stage(course, lab)
    assert report.notes == []
    assert not (dest / ".ipynb_checkpoints").exists() and not (dest / "__pycache__").exists()


# --- caps ----------------------------------------------------------------------------------

def test_folders_deeper_than_the_cap_are_dropped(course, lab):
    deep = lab.joinpath(*[f"d{i}" for i in range(intake.MAX_DEPTH + 1)])
    deep.mkdir(parents=True)
    (deep.parent / "kept.txt").write_text("x")
    (deep / "lost.txt").write_text("x")
    report, dest = stage(course, lab)
    rel = "/".join(f"d{i}" for i in range(intake.MAX_DEPTH + 1))
    assert report.notes == [f"{rel}: a folder nested deeper than {intake.MAX_DEPTH} levels; "
                            "dropped"]
    assert (dest / deep.parent.relative_to(lab) / "kept.txt").is_file()
    assert not (dest / rel).exists()


def test_file_count_and_entry_caps(course, lab, monkeypatch):
    monkeypatch.setattr(intake, "MAX_FILES", 3)
    for i in range(5):
        (lab / f"f{i}.txt").write_text("x")
    report, dest = stage(course, lab)
    assert report.notes == ["f3.txt: over the cap of 3 files; dropped",
                            "f4.txt: over the cap of 3 files; dropped"]
    assert sorted(p.name for p in dest.glob("f*.txt")) == ["f0.txt", "f1.txt", "f2.txt"]
    monkeypatch.setattr(intake, "MAX_FILES", 500)
    monkeypatch.setattr(intake, "MAX_ENTRIES", 4)
    report, dest = stage(course, lab)  # the notebook is read whatever the cap
    assert report.notes == ["lab folder: more than 4 entries; the rest were not read"]
    assert sorted(p.name for p in dest.glob("f*.txt")) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]
    assert_release_grading(course, dest)


def test_size_caps(course, lab, monkeypatch):
    with open(lab / "huge.bin", "wb") as fh:  # sparse: costs no disk
        fh.truncate(intake.MAX_FILE_BYTES + 1)
    report, dest = stage(course, lab)
    assert report.notes == ["huge.bin: larger than 50 MB; dropped"]
    assert not (dest / "huge.bin").exists()
    (lab / "huge.bin").unlink()
    monkeypatch.setattr(intake, "MAX_TOTAL_BYTES", (lab / NB).stat().st_size + 2_500)
    for name in ("a.bin", "b.bin", "c.bin"):
        (lab / name).write_bytes(b"x" * 1_000)
    report, dest = stage(course, lab)
    assert report.notes == [f"c.bin: over the {intake.megabytes(intake.MAX_TOTAL_BYTES)} cap "
                            "for all files; dropped"]
    assert (dest / "b.bin").is_file() and not (dest / "c.bin").exists()


def test_an_oversized_notebook_is_graded_blank(course, lab):
    with open(lab / NB, "r+b") as fh:
        fh.truncate(intake.MAX_NOTEBOOK_BYTES + 1)
    report, dest = stage(course, lab)
    assert report.notes == ["quiz.ipynb: larger than 20 MB; not read (graded as blank)"]
    assert_blank(course, dest)


def test_dropped_entries_are_named_up_to_a_cap(course, lab):
    for i in range(intake.MAX_DROP_NOTES + 5):
        (lab / f"link{i:02d}").symlink_to("/etc/passwd")
    report, _ = stage(course, lab)
    assert len(report.notes) == intake.MAX_DROP_NOTES + 1
    assert report.notes[-1].startswith("5 more entries dropped")


# --- timestamp ------------------------------------------------------------------------------

def newest_ctime(folder: Path) -> float:
    return max(p.lstat().st_ctime for p in folder.rglob("*") if p.is_file()
               and not p.is_symlink())


def test_the_timestamp_is_the_collection_time_not_the_students(course, lab):
    from nbgrader.utils import parse_utc

    os.utime(lab / NB, (0, 0))  # a backdated mtime changes nothing
    (lab / "timestamp.txt").write_text("2001-01-01 00:00:00.000000 UTC")
    report, dest = stage(course, lab)
    assert report.notes == ["timestamp.txt ignored: the collection time is used"]
    written = (dest / "timestamp.txt").read_text()
    expected = datetime.fromtimestamp(newest_ctime(lab), timezone.utc).replace(tzinfo=None)
    assert written.endswith(" UTC") and parse_utc(written) == expected


def test_a_matching_student_timestamp_is_replaced_silently(course, lab):
    now = datetime.now(timezone.utc).strftime(intake.TIMESTAMP_FORMAT)
    (lab / "timestamp.txt").write_text(now)
    report, dest = stage(course, lab)
    assert report.notes == []
    assert (dest / "timestamp.txt").read_text() == intake.timestamp_text(newest_ctime(lab))


@pytest.mark.parametrize("claimed", [b"", b"yesterday-ish", b"\xff\xfe", b"9" * 500])
def test_an_unreadable_student_timestamp_is_ignored(course, lab, claimed):
    (lab / "timestamp.txt").write_bytes(claimed)
    report, dest = stage(course, lab)
    assert report.notes == ([] if not claimed else
                            ["timestamp.txt ignored: the collection time is used"])
    assert (dest / "timestamp.txt").read_text() == intake.timestamp_text(newest_ctime(lab))


def test_a_submission_without_files_takes_its_folders_time(course, tmp_path):
    folder = tmp_path / "submitted" / "s" / LAB
    folder.mkdir(parents=True)
    report, dest = stage(course, folder)
    assert (dest / "timestamp.txt").read_text() == intake.timestamp_text(
        folder.stat().st_ctime)


# --- notebook metadata tampering ------------------------------------------------------------

def _set_meta(target, /, **changes):
    def change(cells):
        cell(cells, target)["metadata"]["nbgrader"].update(changes)
    return change


def _rename(old, new):
    return _set_meta(old, grade_id=new)


def _retype(grade_id, kind):
    def change(cells):
        target = cell(cells, grade_id)
        target["cell_type"] = kind
        target.pop("outputs", None)
        target.pop("execution_count", None)
    return change


def _set_source(grade_id, text):
    def change(cells):
        cell(cells, grade_id)["source"] = text
    return change


def _duplicate(grade_id):
    def change(cells):
        first = cell(cells, grade_id)
        cells.insert(cells.index(first) + 1, {**json.loads(json.dumps(first)), "id": "copy"})
    return change


def _delete(grade_id):
    return lambda cells: cells.remove(cell(cells, grade_id))


def _unclaimed(cells):
    cells.append({"cell_type": "code", "id": "mine", "metadata": {"nbgrader": {
        "grade": True, "points": 100, "solution": False}}, "source": "pass",
        "outputs": [], "execution_count": None})


def _claim_unknown(cells):
    cells.append({"cell_type": "code", "id": "mine", "metadata": {"nbgrader": {
        "grade": True, "points": 100, "grade_id": "bonus"}}, "source": "pass",
        "outputs": [], "execution_count": None})


@pytest.mark.parametrize(("change", "notes"), [
    (_set_meta("test_task1_add", points=200),
     ["the grading metadata of cell test_task1_add was changed; restored from the release"]),
    (_set_meta("test_task1_add", solution=True),  # a test turned into an answer cell
     ["the grading metadata of cell test_task1_add was changed; restored from the release"]),
    (_set_meta("task1_add", grade=True, points=50, solution=False),  # an answer into a test
     ["the grading metadata of cell task1_add was changed; restored from the release"]),
    (_set_meta("task2_answer", points=float("nan")),
     ["the grading metadata of cell task2_answer was changed; restored from the release"]),
    (_set_meta("test_task2_mean", points="3"),
     ["the grading metadata of cell test_task2_mean was changed; restored from the release"]),
    (_set_meta("test_task2_mean", points=True),
     ["the grading metadata of cell test_task2_mean was changed; restored from the release"]),
    (_rename("test_task1_add", "test_task1_addx"),
     ["a cell claims grade id test_task1_addx, which this lab does not have; not graded",
      "test cell test_task1_add was deleted; restored from the release"]),
    (_set_meta("test_task1_add", grade_id=["test_task1_add"]),
     ["a cell has grading metadata without a usable grade id; not graded",
      "test cell test_task1_add was deleted; restored from the release"]),
    (_unclaimed, ["a cell has grading metadata without a usable grade id; not graded"]),
    (_claim_unknown, ["a cell claims grade id bonus, which this lab does not have; not graded"]),
    (_set_source("test_task2_mean", "assert True"),
     ["test cell test_task2_mean was edited; restored from the release"]),
    (_set_source("mini_md_03", "## Task 1: Add (200 points)"),
     ["locked cell mini_md_03 was edited; restored from the release"]),
    (_retype("task2_mean", "markdown"),
     ["cell task2_mean was turned into markdown; restored to code"]),
    (_retype("test_task1_add", "raw"),
     ["cell test_task1_add was turned into raw; restored to code"]),
    (_duplicate("task1_add"), ["cell task1_add appears twice; the later copy is not graded"]),
    (_duplicate("test_task1_add"),
     ["cell test_task1_add appears twice; the later copy is not graded"]),
    (_delete("test_task1_add"),
     ["test cell test_task1_add was deleted; restored from the release"]),
    (_delete("mini_md_01"), ["locked cell mini_md_01 was deleted; restored from the release"]),
])
def test_metadata_tampering_is_undone_against_the_release(course, lab, change, notes):
    edit(lab, change)
    report, dest = stage(course, lab)
    assert report.notes == [f"{NB}: {note}" for note in notes]
    nb = assert_release_grading(course, dest)
    answers = {g: c.source for c in nb.cells
               if (g := notebooks.nbgrader_meta(c).get("grade_id")) and
               notebooks.nbgrader_meta(c).get("solution")}
    assert "return a + b" in answers["task1_add"]  # the student's answers are kept
    assert nb.metadata == release_nb(course).metadata


def test_answer_types_and_sources_survive_a_type_change(course, lab):
    edit(lab, _retype("task2_mean", "markdown"))
    _, dest = stage(course, lab)
    restored = next(c for c in staged_nb(dest).cells if c.get("id") == "task2-mean")
    assert restored.cell_type == "code" and "np.mean" in restored.source
    assert restored.outputs == [] and restored.execution_count is None


def test_the_kernel_and_outputs_come_from_the_release(course, lab):
    doc = json.loads((lab / NB).read_text())
    doc["metadata"]["kernelspec"] = {"name": "evil", "display_name": "evil", "language": "x"}
    cell(doc["cells"], "task1_add")["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "fake"}]
    cell(doc["cells"], "task1_add")["metadata"]["tags"] = ["raises-exception"]
    (lab / NB).write_text(json.dumps(doc))
    report, dest = stage(course, lab)
    assert report.notes == []
    nb = staged_nb(dest)
    assert nb.metadata == release_nb(course).metadata
    answer = next(c for c in nb.cells if c.get("id") == "task1-add")
    assert answer.outputs == [] and set(answer.metadata) == {"deletable", "nbgrader"}



def test_instructor_cells_keep_their_figures_and_nothing_active(course, lab):
    """Fast grading shows what a student's run of an instructor cell drew (autograder/fast.py):
    text and base64 PNG/JPEG survive staging there; HTML, scripts, errors and undecodable
    images do not, and no output survives under any other cell."""
    doc = json.loads((lab / NB).read_text())
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAA"
           "BJRU5ErkJggg==")
    cell(doc["cells"], "mini_code_02")["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": ["drawn ", "here"]},
        {"output_type": "display_data", "metadata": {"isolated": True},
         "data": {"image/png": png, "text/html": "<script>alert(1)</script>",
                  "text/plain": "<Figure>"}},
        {"output_type": "execute_result", "execution_count": 3, "metadata": {},
         "data": {"image/png": "not base64 <img onerror=x>", "application/javascript": "x"}},
        {"output_type": "error", "ename": "KernelDied", "evalue": "fake", "traceback": []},
        "not an output", {"output_type": "stream", "name": "evil", "text": "x"}]
    cell(doc["cells"], "task1_add")["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "answer output"}]
    (lab / NB).write_text(json.dumps(doc))
    _, dest = stage(course, lab)
    nb = staged_nb(dest)
    kept = next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") ==
                "mini_code_02").outputs
    assert kept == [{"output_type": "stream", "name": "stdout", "text": "drawn here"},
                    {"output_type": "display_data", "metadata": {},
                     "data": {"image/png": png, "text/plain": "<Figure>"}}]
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code"
               and notebooks.nbgrader_meta(c).get("grade_id") != "mini_code_02")


# --- malformed notebooks --------------------------------------------------------------------

def _solved_doc(course: Path, tmp_path: Path) -> dict:
    path = make_submission(LAB, tmp_path / "solved", root=course) / NB
    return json.loads(path.read_text())


def _deep(depth: int) -> bytes:
    return b'{"cells": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(("raw", "note"), [
    (b'{"cells": [ this is not json', "not a readable notebook (corrupt JSON? Expecting value"),
    (b"[]", "not a readable notebook (a JSON list, not an object)"),
    (b'"text"', "not a readable notebook (a JSON str, not an object)"),
    (b'{"cells": 5}', "not a readable notebook (no list of cells)"),
    (b'{"nbformat": 4}', "not a readable notebook (no list of cells)"),
    (_deep(100_000), "not a readable notebook (nested too deeply)"),
    (b"", "not a readable notebook (corrupt JSON? Expecting value"),
    (b"\x00" * 100, "not a readable notebook (corrupt JSON?"),
    (b"1" * 5000, "not a readable notebook (ValueError: Exceeds the limit"),
])
def test_unreadable_notebooks_are_graded_blank(course, lab, raw, note):
    (lab / NB).write_bytes(raw)
    report, dest = stage(course, lab)
    assert len(report.notes) == 1 and report.notes[0].startswith(f"{NB}: {note}")
    assert report.notes[0].endswith("; graded as blank")
    assert_blank(course, dest)


def _cells_change(change):
    def apply(doc):
        change(doc["cells"])
        return json.dumps(doc).encode()
    return apply


def _bad_utf8(doc):
    text = json.dumps(doc, ensure_ascii=False).replace("return a + b", "return a + b  # \x00Z")
    return text.encode().replace(b"\x00Z", b"\xff\xfe")


def _surrogates(doc):
    return json.dumps(doc).replace("return a + b", "return a + b  # \\ud800").encode()


def _v3(doc):
    cells = [{"cell_type": c["cell_type"], "metadata": c["metadata"],
              **({"input": c["source"], "language": "python", "outputs": []}
                 if c["cell_type"] == "code" else {"source": c["source"]})}
             for c in doc["cells"]]
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": ""},
                       "worksheets": [{"cells": cells, "metadata": {}}]}).encode()


def _huge_source(doc):
    answer = cell(doc["cells"], "task1_add")
    answer["source"] = "".join(answer["source"]) + "\n# " + "x" * 5_000_000
    return json.dumps(doc).encode()


def _odd_cells(cells):
    cells.insert(0, 42)
    cells.insert(0, {"cell_type": "widget", "source": "x", "metadata": {}})
    cells.insert(0, {"cell_type": "code", "source": 12, "metadata": []})
    cells.insert(0, {"cell_type": "markdown", "source": ["a", 1], "attachments": "x"})
    cells.insert(0, {"cell_type": ["code"], "source": "x"})


def _duplicate_ids(cells):
    for item in cells:
        item["id"] = "same"


def _bad_ids(cells):
    for index, item in enumerate(cells):
        item["id"] = [None, 5, "", "has space", "x" * 65, "ok-id"][index % 6]


def _nested_metadata(cells):
    value: list = []
    for _ in range(500):
        value = [value]
    cell(cells, "task1_add")["metadata"]["deep"] = value
    cell(cells, "task1_add")["metadata"]["nbgrader"]["points"] = value


@pytest.mark.parametrize(("mutate", "notes"), [
    (_bad_utf8, ["bytes that are not UTF-8 were replaced"]),
    (_surrogates, []),
    (_v3, ["an nbformat 3 notebook; converted to version 4"]),
    (_huge_source, []),
    (_cells_change(_odd_cells),
     ["malformed cells repaired (cells of unknown type dropped: 2, sources that are not text "
      "emptied: 2, malformed attachments dropped: 1, cells that are not objects dropped: 1)"]),
    (_cells_change(_duplicate_ids), []),
    (_cells_change(_bad_ids), []),
    (_cells_change(_nested_metadata),
     ["the grading metadata of cell task1_add was changed; restored from the release"]),
    (_cells_change(lambda cells: cells.clear()),
     [f"{kind} {gid} was deleted; restored from the release" for kind, gid in [
         ("locked cell", "mini_md_01"), ("locked cell", "mini_code_02"),
         ("locked cell", "mini_md_03"), ("answer cell", "task1_add"),
         ("test cell", "test_task1_add"), ("locked cell", "mini_md_04"),
         ("answer cell", "task2_mean"), ("test cell", "test_task2_mean"),
         ("locked cell", "mini_md_05"), ("answer cell", "task2_answer")]]),
])
def test_malformed_notebooks_are_repaired(course, lab, tmp_path, mutate, notes):
    (lab / NB).write_bytes(mutate(_solved_doc(course, tmp_path)))
    report, dest = stage(course, lab)
    assert report.notes == [f"{NB}: {note}" for note in notes]
    nb = assert_release_grading(course, dest)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)
    notebooks.write(nb, tmp_path / "again.ipynb")  # writable as UTF-8


def test_the_nbformat_3_notebook_keeps_its_answers(course, lab, tmp_path):
    (lab / NB).write_bytes(_v3(_solved_doc(course, tmp_path)))
    _, dest = stage(course, lab)
    nb = staged_nb(dest)
    answer = next(c for c in nb.cells if notebooks.nbgrader_meta(c).get("grade_id") == "task1_add")
    assert "return a + b" in answer.source


def test_interrupts_are_never_swallowed(course, lab, monkeypatch):
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(staging, "_parse_cells", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stage(course, lab)


def test_repair_notebook_tolerates_any_cell_metadata(course, lab):
    nb = notebooks.read(lab / NB)
    nb.cells[3].metadata["nbgrader"] = "graded!"
    nb.cells[4].metadata["nbgrader"]["points"] = 99
    report = StagingReport()
    fixed = repair_notebook(nb, release_nb(course), NB, report)
    assert graded(fixed) == graded(release_nb(course))
    assert report.notes == [
        f"{NB}: a cell has grading metadata without a usable grade id; not graded",
        f"{NB}: the grading metadata of cell test_task1_add was changed; restored from the "
        "release",
        f"{NB}: answer cell task1_add was deleted; restored from the release"]


def test_submitted_is_never_modified(course, lab):
    os.mkfifo(lab / "pipe")
    (lab / "link").symlink_to("/etc/passwd")
    (lab / "torch.py").write_text("x")
    (lab / "timestamp.txt").write_text("2001-01-01 00:00:00.000000 UTC")
    edit(lab, _set_meta("test_task1_add", points=200))
    before = digest(lab.parent.parent)
    mtimes = {p: p.lstat().st_mtime_ns for p in lab.rglob("*")}
    stage(course, lab)
    assert digest(lab.parent.parent) == before
    assert {p: p.lstat().st_mtime_ns for p in lab.rglob("*")} == mtimes


def test_a_notebook_that_cannot_be_written_is_graded_blank(course, lab, monkeypatch):
    real = notebooks.write

    def picky(nb, path):
        if any("def add(a, b):\n    return a + b" in c.source for c in nb.cells):
            raise ValueError("cannot write this")
        real(nb, path)

    monkeypatch.setattr(notebooks, "write", picky)
    report, dest = stage(course, lab)
    assert report.notes == [
        "quiz.ipynb: not a readable notebook (ValueError: cannot write this); graded as blank"]
    assert_blank(course, dest)


def test_a_solutions_copy_is_one_readable_line_and_graded_as_blank(course, tmp_path):
    # The self-study view has no nbgrader metadata: every graded cell would be "deleted".
    solution = notebooks.to_solution_notebook(notebooks.read(
        course / "source" / LAB / "quiz.ipynb"))
    notebooks.write(solution, tmp_path / "in" / "quiz.ipynb")
    report = stage_submission(tmp_path / "in", course / "release" / LAB, tmp_path / "out")
    assert report.notes == ["quiz.ipynb: not a release notebook (no nbgrader metadata; a copy "
                            "of solutions/ or a notebook made elsewhere?); graded as blank"]
    staged = notebooks.read(tmp_path / "out" / "quiz.ipynb")
    assert [c.source for c in staged.cells] == [
        c.source for c in notebooks.read(course / "release" / LAB / "quiz.ipynb").cells]
