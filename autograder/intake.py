"""Read one submission folder without trusting anything in it.

Students write ``submitted/<student>/<lab>``; the grader must never be tricked into reading or
copying anything else. The rules, one short note for each thing left out (but for
``.ipynb_checkpoints/`` and ``__pycache__/``, which nbgrader leaves out anyway):

- only regular files are read, and never through a symbolic link: every entry is examined with
  ``lstat``, opened with ``O_NOFOLLOW | O_NONBLOCK`` relative to its (equally opened) folder,
  and read only when ``fstat`` on the open descriptor says it is a regular file. Symbolic links
  (the student folder, the lab folder, a notebook, any file or subfolder), FIFOs, sockets and
  devices are left alone;
- sizes are capped (``MAX_NOTEBOOK_BYTES``, ``MAX_FILE_BYTES``, ``MAX_TOTAL_BYTES``), as are
  the number of files copied, the entries examined and the depth of subfolders;
- names with control or undecodable characters or a path separator are dropped, and so is any
  top-level name that would change what the kernel imports or how its tools are set up (it
  runs in the copy of this folder): ``torch.py``, ``numpy/``, ``sitecustomize.py``,
  ``.ipython/``...;
- the student's ``timestamp.txt`` is never trusted: the submission time is the newest inode
  change time (``st_ctime``) of its files, set by the file system when they arrived on the
  grading machine; unzip, ``cp -a``, ``rsync -a`` and ``touch`` cannot set it back.
"""

from __future__ import annotations

import errno
import importlib.machinery
import itertools
import os
import stat
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

MB = 1_000_000
MAX_NOTEBOOK_BYTES = 20 * MB  # one notebook; a larger one is graded as blank
MAX_FILE_BYTES = 50 * MB  # one other file
MAX_TOTAL_BYTES = 200 * MB  # everything read or copied from one submission
MAX_FILES = 500  # files copied besides the notebooks
MAX_ENTRIES = 5_000  # folder entries examined, at every level together (notebooks aside)
MAX_LISTED = 100_000  # names listed in one folder (sorted, then cut to what is left of the above)
MAX_DEPTH = 4  # subfolder levels kept below the lab folder
MAX_DROP_NOTES = 20  # dropped entries named one by one; the rest are counted in one note
MAX_TIMESTAMP_BYTES = 1_000
TIMESTAMP_FILE = "timestamp.txt"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # what nbgrader writes and parse_utc reads
TIMESTAMP_TOLERANCE_S = 60.0

# Top-level names Python or the kernel's tools read from the working folder or at start-up.
START_UP_MODULES = frozenset({"sitecustomize", "usercustomize"})
TOOL_FILES = frozenset({"matplotlibrc", ".pdbrc", "nbgrader_config.py", "jupyter_config.py",
                        "ipython_config.py", "ipython_kernel_config.py"})
# Names nbgrader leaves out of the graded copy anyway: dropped without a note.
IGNORED = frozenset({".ipynb_checkpoints", "__pycache__"})
# Endings of the files ``import X`` loads (longest first), and ``X.pth``.
MODULE_SUFFIXES = tuple(sorted({*importlib.machinery.all_suffixes(), ".pyw", ".pyd", ".pth"},
                               key=lambda suffix: (-len(suffix), suffix)))

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


class Refused(Exception):
    """An entry that is not read; the message says why, e.g. ``a symbolic link; not followed``."""


@dataclass
class Submission:
    """What was read from one submission folder.

    Attributes:
        notebooks: expected notebook name -> its bytes, for those that could be read.
        refused: expected notebook name -> why it was not read (it is graded as blank).
        extra: names of the top-level notebooks the lab does not have.
        any_notebook: whether the folder held any top-level ``*.ipynb`` entry.
        timestamp: the collection time in nbgrader's format, or None when nothing arrived.
        notes: one short line per entry left out and per distrusted ``timestamp.txt``.
        blank: why nothing at all was read (the student or lab folder is a link...), or "".
    """

    notebooks: dict[str, bytes] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    any_notebook: bool = False
    timestamp: str | None = None
    notes: list[str] = field(default_factory=list)
    blank: str = ""


def describe(mode: int) -> str:
    """What kind of file ``mode`` (an ``st_mode``) is: ``a symbolic link``, ``a FIFO``..."""
    return next((text for test, text in _KINDS if test(mode)), "a special file")


def megabytes(size: int) -> str:
    """``size`` in the notes' unit: ``20 MB``."""
    return f"{size / MB:g} MB"


def refusal(mode: int) -> str:
    """Why an entry of this ``st_mode`` is not read, as a note's ending."""
    if stat.S_ISLNK(mode):
        return "a symbolic link; not followed"
    return f"{describe(mode)}, not a regular file; not read"


def show(name: str, limit: int = 60) -> str:
    """``name`` safe to print in a note: invisible characters escaped, long names shortened."""
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in name[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_name(name: str) -> str | None:
    """Why ``name`` cannot be copied (control or undecodable characters, a separator), or None."""
    if "/" in name or "\\" in name:
        return "a name with a path separator; dropped"
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name):
        return "a name with control or undecodable characters; dropped"
    return None


@lru_cache(maxsize=4096)
def installed_module(module: str) -> bool:
    """Whether ``import module`` finds something in this Python, outside its working folder.

    The kernel runs with this environment's Python and its working folder first on
    ``sys.path``, so a student's file or folder of that name would be imported instead. The
    grader's own working folder is left out of the search: it is not the kernel's.
    """
    if (module in sys.stdlib_module_names or module in sys.builtin_module_names
            or module in START_UP_MODULES):
        return True
    here = os.getcwd()
    paths = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != here]
    for finder in sys.meta_path:
        try:
            if finder is importlib.machinery.PathFinder:
                spec = importlib.machinery.PathFinder.find_spec(module, paths)
            elif hasattr(finder, "find_spec"):
                spec = finder.find_spec(module, None)
            else:
                continue
        except Exception:  # a finder that fails cannot vouch for the name: treat it as taken
            return True
        if spec is not None:
            return True
    return False


def module_name(name: str, is_dir: bool) -> str | None:
    """The module ``import X`` would load from a top-level entry called ``name``, if any."""
    if is_dir:
        return name if name.isidentifier() else None
    for suffix in MODULE_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)].isidentifier():
            return name[: -len(suffix)]
    return None


def top_level_refusal(name: str, is_dir: bool) -> str | None:
    """Why a top-level entry would change the kernel's imports or tools (so is dropped), or None."""
    module = module_name(name, is_dir)
    if module in START_UP_MODULES:
        return "would be imported by Python at start-up; dropped"
    if module is not None and installed_module(module):
        return f"would shadow the installed module {module}; dropped"
    if is_dir and name.startswith("."):
        return "a hidden folder (tool settings); dropped"
    if not is_dir and name in TOOL_FILES:
        return "a tool settings file; dropped"
    return None


def timestamp_text(ctime: float) -> str:
    """An ``st_ctime`` as the text of nbgrader's ``timestamp.txt`` (UTC)."""
    return datetime.fromtimestamp(ctime, timezone.utc).strftime(TIMESTAMP_FORMAT)


def claimed_time_differs(claimed: bytes, collected: float) -> bool:
    """Whether a student's ``timestamp.txt`` is unreadable or off the collection time by > 60 s."""
    from nbgrader.utils import parse_utc  # nbgrader's own reading of timestamp.txt

    try:
        with warnings.catch_warnings():  # dateutil warns about unknown time zones
            warnings.simplefilter("ignore")
            when = parse_utc(claimed.decode("utf-8", "replace").strip())
        arrived = datetime.fromtimestamp(collected, timezone.utc).replace(tzinfo=None)
        return abs((when - arrived).total_seconds()) > TIMESTAMP_TOLERANCE_S
    except Exception:  # any text that does not parse as a time is as good as a wrong one
        return True


def _stream(dir_fd: int, name: str, cap: int, sink: Callable[[bytes], object]) -> int:
    """Feed the regular file ``name`` of ``dir_fd`` to ``sink``; return its size in bytes.

    Raises:
        Refused: it is a link or not a regular file, cannot be opened, or exceeds ``cap``.
    """
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("a symbolic link; not followed") from None
        raise Refused(f"could not be opened ({exc.strerror}); not read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(refusal(info.st_mode))
        if info.st_size > cap:
            raise Refused(f"larger than {megabytes(cap)}; not read")
        total = 0
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
            if total > cap:
                raise Refused(f"larger than {megabytes(cap)}; not read")
            sink(chunk)
        return total
    finally:
        os.close(fd)


def read_file(dir_fd: int, name: str, cap: int) -> bytes:
    """The bytes of the regular file ``name`` in the folder ``dir_fd``, at most ``cap``.

    Raises:
        Refused: see :func:`_stream`.
    """
    chunks: list[bytes] = []
    _stream(dir_fd, name, cap, chunks.append)
    return b"".join(chunks)


def copy_file(dir_fd: int, name: str, cap: int, target: Path) -> int:
    """Copy the regular file ``name`` of ``dir_fd`` to ``target``; return the bytes copied.

    Raises:
        Refused: see :func:`_stream`; nothing is left at ``target`` then.
    """
    try:
        with target.open("wb") as out:
            return _stream(dir_fd, name, cap, out.write)
    except Refused:
        target.unlink(missing_ok=True)
        raise


def open_folder(name: str | Path, dir_fd: int | None = None) -> int:
    """A descriptor of the folder ``name`` (relative to ``dir_fd``), never through a link.

    Raises:
        Refused: it is a link or not a folder.
        FileNotFoundError: it does not exist.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a link
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise Refused("is a symbolic link; not followed") from None
            raise Refused(f"is {describe(mode)}, not a folder; graded as blank") from None
        raise Refused(f"could not be opened ({exc.strerror}); graded as blank") from None


def list_folder(dir_fd: int, budget: int) -> tuple[list[str], bool]:
    """The first ``budget`` entry names of the folder ``dir_fd`` in sorted order, and whether
    it has more (of at most ``MAX_LISTED`` names, so that the choice does not depend on the
    order the file system lists them in)."""
    with os.scandir(dir_fd) as entries:
        names = sorted(entry.name for entry in itertools.islice(entries, MAX_LISTED + 1))
    return names[:budget], len(names) > budget


class _Reader:
    """One walk over a submission folder: copies what may be copied, notes what is dropped."""

    def __init__(self, expected: Iterable[str], dest: Path) -> None:
        self.expected = set(expected)
        self.dest = dest
        self.result = Submission()
        self.total_bytes = 0
        self.files = 0
        self.entries = 0
        self.newest_ctime: float | None = None
        self.claimed: bytes | None = None
        self.drops: list[str] = []

    def drop(self, rel: str, why: str) -> None:
        self.drops.append(f"{show(rel)}: {why}")

    def lstat(self, dir_fd: int, name: str) -> os.stat_result | None:
        """The entry's ``lstat`` (None when it vanished); records a regular file's ctime."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return None
        if stat.S_ISREG(info.st_mode):
            newest = self.newest_ctime
            self.newest_ctime = info.st_ctime if newest is None else max(info.st_ctime, newest)
        return info

    def read_top(self, lab_fd: int) -> None:
        """Notebooks and ``timestamp.txt`` first (so no other file can use up the caps), then
        the other files and subfolders."""
        names, _ = list_folder(lab_fd, MAX_LISTED)
        others = [n for n in names if not n.endswith(".ipynb") and n != TIMESTAMP_FILE]
        for name in names:
            if name.endswith(".ipynb"):
                self.read_notebook(lab_fd, name)
            elif name == TIMESTAMP_FILE:
                self.read_claimed_time(lab_fd, name)
        if len(others) > MAX_ENTRIES:
            self.drop("lab folder", f"more than {MAX_ENTRIES} entries; the rest were not read")
        self.entries = min(len(others), MAX_ENTRIES)
        for name in others[:MAX_ENTRIES]:
            self.keep(lab_fd, name, name, depth=0)

    def read_notebook(self, lab_fd: int, name: str) -> None:
        self.result.any_notebook = True
        info = self.lstat(lab_fd, name)
        if name not in self.expected:
            self.result.extra.append(name)
            return
        try:
            if info is None:
                raise Refused("vanished while it was read; not read")
            if not stat.S_ISREG(info.st_mode):
                raise Refused(refusal(info.st_mode))
            if self.total_bytes + info.st_size > MAX_TOTAL_BYTES:
                raise Refused(f"over the {megabytes(MAX_TOTAL_BYTES)} cap for all files; not read")
            data = read_file(lab_fd, name, MAX_NOTEBOOK_BYTES)
        except Refused as exc:
            self.result.refused[name] = str(exc)
            return
        self.total_bytes += len(data)
        self.result.notebooks[name] = data

    def read_claimed_time(self, lab_fd: int, name: str) -> None:
        info = self.lstat(lab_fd, name)
        try:
            if info is not None and not stat.S_ISREG(info.st_mode):
                raise Refused(refusal(info.st_mode))
            self.claimed = read_file(lab_fd, name, MAX_TIMESTAMP_BYTES)
        except Refused as exc:
            self.drop(name, str(exc))

    def keep(self, dir_fd: int, name: str, rel: str, depth: int) -> None:
        """Copy the entry ``name`` of ``dir_fd`` to ``dest/rel`` if every rule allows it."""
        if name in IGNORED:
            return
        why = bad_name(name)
        info = self.lstat(dir_fd, name) if why is None else None
        if why is None and info is None:
            why = "vanished while it was read; dropped"
        if why is None and not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            why = refusal(info.st_mode)
        if why is None and depth == 0:
            why = top_level_refusal(name, stat.S_ISDIR(info.st_mode))
        if why is not None:
            self.drop(rel, why)
        elif stat.S_ISDIR(info.st_mode):
            self.keep_folder(dir_fd, name, rel, depth + 1)
        else:
            self.keep_file(dir_fd, name, rel, info.st_size)

    def keep_file(self, dir_fd: int, name: str, rel: str, size: int) -> None:
        if self.files >= MAX_FILES:
            self.drop(rel, f"over the cap of {MAX_FILES} files; dropped")
        elif size > MAX_FILE_BYTES:
            self.drop(rel, f"larger than {megabytes(MAX_FILE_BYTES)}; dropped")
        elif self.total_bytes + size > MAX_TOTAL_BYTES:
            self.drop(rel, f"over the {megabytes(MAX_TOTAL_BYTES)} cap for all files; dropped")
        else:
            try:
                cap = min(MAX_FILE_BYTES, MAX_TOTAL_BYTES - self.total_bytes)
                self.total_bytes += copy_file(dir_fd, name, cap, self.dest / rel)
                self.files += 1
            except Refused as exc:
                self.drop(rel, str(exc))

    def keep_folder(self, dir_fd: int, name: str, rel: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.drop(rel, f"a folder nested deeper than {MAX_DEPTH} levels; dropped")
            return
        try:
            sub_fd = open_folder(name, dir_fd)
        except (Refused, OSError) as exc:
            self.drop(rel, f"folder {exc}" if isinstance(exc, Refused) else "unreadable; dropped")
            return
        try:
            names, more = list_folder(sub_fd, MAX_ENTRIES - self.entries)
            self.entries += len(names)
            if more:
                self.drop(rel, f"more than {MAX_ENTRIES} entries in all; the rest were not read")
            (self.dest / rel).mkdir(parents=True, exist_ok=True)
            for child in names:
                self.keep(sub_fd, child, f"{rel}/{child}", depth)
        finally:
            os.close(sub_fd)

    def finish(self, lab_ctime: float | None) -> Submission:
        """Write the drop notes and the collection time into the result."""
        notes = self.result.notes
        notes.extend(self.drops[:MAX_DROP_NOTES])
        if len(self.drops) > MAX_DROP_NOTES:
            notes.append(f"{len(self.drops) - MAX_DROP_NOTES} more entries dropped (links, "
                         "special files, shadowing names or over the caps)")
        collected = self.newest_ctime if self.newest_ctime is not None else lab_ctime
        if collected is not None:
            self.result.timestamp = timestamp_text(collected)
            if self.claimed and claimed_time_differs(self.claimed, collected):
                notes.append(f"{TIMESTAMP_FILE} ignored: the collection time is used")
        return self.result


def _open_lab(submission: Path) -> int | None:
    """A descriptor of the lab folder ``<submitted>/<student>/<lab>``; None when it is absent.

    Raises:
        Refused: the student or the lab folder is a link or not a folder (the note's text).
    """
    try:
        top = open_folder(submission.parent.parent)
    except (FileNotFoundError, Refused):
        return None  # no submitted/ folder at all: the instructor's, not the student's
    try:
        student = open_folder(submission.parent.name, top)
    except FileNotFoundError:
        return None
    except Refused as exc:
        raise Refused(f"student folder {exc}") from None
    finally:
        os.close(top)
    try:
        return open_folder(submission.name, student)
    except FileNotFoundError:
        return None
    except Refused as exc:
        raise Refused(f"lab folder {exc}") from None
    finally:
        os.close(student)


def read_submission(submission: Path, expected: Iterable[str], dest: Path) -> Submission:
    """Read the expected notebooks of ``submission`` and copy its other files into ``dest``.

    Args:
        submission: ``<root>/submitted/<student>/<lab>``; only read.
        expected: the lab's notebook names (``quiz.ipynb``...).
        dest: an existing folder that receives the other files and subfolders.
    Returns:
        The notebooks' bytes, why others were not read, the notes and the collection time.
    """
    reader = _Reader(expected, dest)
    try:
        lab_fd = _open_lab(submission)
    except Refused as exc:
        reader.result.blank = str(exc)
        return reader.result
    if lab_fd is None:
        return reader.result
    try:
        lab_ctime = os.fstat(lab_fd).st_ctime
        reader.read_top(lab_fd)
    finally:
        os.close(lab_fd)
    return reader.finish(lab_ctime)
