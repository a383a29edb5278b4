"""One place for grading settings: :class:`GradeConfig`, built once, handed to workers whole.

``course grade`` and ``course check`` build it from three layers, later ones winning: the
defaults below, the course's ``nbgrader_config.py`` (``c.Execute.timeout`` for the cell timeout),
and the command line. A worker receives it as one JSON argument (:meth:`GradeConfig.to_json`)
and reads nothing else, so a course folder grades the same whichever command started it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CELL_TIMEOUT = 180  # seconds per cell (nbgrader's own default, 30 s, fails busy machines)
DEFAULT_NOTEBOOK_TIMEOUT = 1800  # seconds for one student's whole lab
DEFAULT_MAX_PROCESSES = 256  # per sandboxed kernel, threads included (torch, OpenMP, ipykernel)
DEFAULT_MAX_OUTPUT_BYTES = 100_000  # text per cell in the graded copy
DEFAULT_MAX_REPLY_BYTES = 512 * 2**20  # one reply from the kernel to the harness
# Limits that guard only the grader's own machinery, never a student's code: a kernel starting
# (its startup file imports torch: 3 s on an idle 2-core machine, 45 s and more under load, and
# nbclient's 60 s default failed whole notebooks), the grader connecting to it, and one
# notebook's run failing for a reason outside its cells (then it is run again).
DEFAULT_STARTUP_TIMEOUT = 600  # seconds for a kernel to start and answer
DEFAULT_INFRASTRUCTURE_RETRIES = 2  # runs of a notebook again after a failure of the grader
# A cell (or a test's call) gets its timeout in seconds its kernel could run: the time its
# threads waited for a CPU taken by other processes does not count, up to this many times the
# timeout in wall-clock time (a cap, so that no load, real or made by the submission, stretches
# a cell without end).
DEFAULT_TIMEOUT_STRETCH = 4.0
# Settings grading depends on, set by the grading worker itself so that a course folder without
# our nbgrader_config.py grades the same (the config file mirrors them for plain nbgrader;
# tests/test_autograder_units.py keeps the two in step).
IGNORED_STDERR = r"[\s\S]*"  # stderr (warnings, progress bars) never decides a grade
# The worker reads the grader's pid here and asks the kernel to kill it when the grader dies
# (a Dask worker killed mid-task: the worker runs in its own session, which nothing else ends).
PARENT_ENV = "COURSE_GRADER_PID"


@dataclass(frozen=True)
class GradeConfig:
    """How submissions are run and graded; every default lives here.

    Attributes:
        jobs: submissions graded at once.
        cell_timeout: seconds a cell (or one request of a test) may run.
        notebook_timeout: seconds one student's whole lab may take.
        memory_mb: memory cap of each kernel in MB (0: none).
        max_output_bytes: text output kept per cell in the graded copy.
        seed: the seed every kernel (and the harness) starts from.
        sandbox: run kernels in the sandbox (False: ``--no-sandbox``).
        sandbox_mode: the sandbox mode in force (``root``, ``user``, ``none``), set by the
            coordinator once it has checked the machine; empty until then.
        max_processes: processes and threads a sandboxed kernel may run.
        cpu_time: CPU seconds of a kernel (0: the notebook timeout times the CPU cores).
        max_reply_bytes: cap on one reply the kernel sends the harness.
        visible_only: run only the visible part of each test (``course check``).
        fast: skip the instructor cells that no test needs (figures; ``autograder/fast.py``);
            a notebook whose running cells read a name only those cells define runs in full.
            The default; ``course grade --full`` runs every cell.
        warm: fork each submission's sandboxed kernels from one sandbox that has imported the
            lab's modules (``autograder/zygote.py``); False starts a fresh one per notebook.
        startup_timeout: seconds a kernel may take to start and answer (the grader's own
            startup code runs then, never the student's).
        timeout_stretch: on a loaded machine, how many times ``cell_timeout`` a cell may take
            in wall-clock time; within that, time the kernel waited for a CPU does not count.
        infrastructure_retries: how many times a notebook is run again when its run failed
            for a reason outside its cells (a kernel that did not start, the grader's error).
    """

    jobs: int = 1
    cell_timeout: int = DEFAULT_CELL_TIMEOUT
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    memory_mb: int = 0
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    seed: int = 0
    sandbox: bool = True
    sandbox_mode: str = ""
    max_processes: int = DEFAULT_MAX_PROCESSES
    cpu_time: int = 0
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    visible_only: bool = False
    fast: bool = True
    warm: bool = True
    startup_timeout: int = DEFAULT_STARTUP_TIMEOUT
    timeout_stretch: float = DEFAULT_TIMEOUT_STRETCH
    infrastructure_retries: int = DEFAULT_INFRASTRUCTURE_RETRIES

    def cpu_seconds(self) -> int:
        """The CPU-time cap: ``cpu_time``, or the notebook timeout times the CPU cores."""
        return self.cpu_time or int(self.notebook_timeout * (os.cpu_count() or 1))

    def replace(self, **changes: Any) -> GradeConfig:
        """A copy with ``changes`` (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GradeConfig:
        """The config a coordinator sent; unknown or ill-typed fields raise ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a grading config must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown grading settings: {sorted(unknown)}")
        for name, value in data.items():
            expected = type(getattr(cls(), name))
            if expected is float and isinstance(value, int):
                continue
            if type(value) is not expected:
                raise ValueError(f"grading setting {name} should be {expected.__name__}, got "
                                 f"{type(value).__name__}")
        return cls(**data)

    @classmethod
    def for_course(cls, root: Path, **cli: Any) -> GradeConfig:
        """Defaults, then the course's ``nbgrader_config.py``, then the command line.

        ``cli`` holds the command-line values; a value of None means "not given".
        """
        layered: dict[str, Any] = course_settings(root)
        layered.update({k: v for k, v in cli.items() if v is not None})
        return cls(**layered)


DEFAULT_COURSE_ID = "default_course"  # nbgrader's Gradebook() default


def course_id(root: Path) -> str:
    """The course's nbgrader ``course_id``: ``nbgrader_config.py``'s, else nbgrader's default.

    Never empty: nbgrader's commands leave it empty without a config file, and then record a
    lab under a course that does not exist, which PostgreSQL refuses (a foreign key; SQLite
    does not check them).
    """
    config = _nbgrader_config(root)
    value = config.get("CourseDirectory", {}).get("course_id") if config is not None else None
    return value if isinstance(value, str) and value else DEFAULT_COURSE_ID


def _nbgrader_config(root: Path):
    """The course's ``nbgrader_config.py`` as a traitlets Config, or None without one."""
    path = Path(root) / "nbgrader_config.py"
    if not path.is_file():
        return None
    from traitlets.config.loader import PyFileConfigLoader

    try:
        return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    except Exception as exc:  # noqa: BLE001 - the instructor's file: say which and why
        from ._paths import CourseError

        raise CourseError(f"{path} cannot be read ({exc}); fix it and run again.") from exc


def course_settings(root: Path) -> dict[str, Any]:
    """The grading settings a course's ``nbgrader_config.py`` sets (the cell timeout)."""
    config = _nbgrader_config(root)
    if config is None:
        return {}
    settings: dict[str, Any] = {}
    timeout = config.get("Execute", {}).get("timeout")
    if isinstance(timeout, int) and timeout > 0:
        settings["cell_timeout"] = timeout
    return settings
