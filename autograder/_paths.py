"""Where things live: the repository root, the labs, the nbgrader executables."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = "source"
RELEASE_DIR = "release"
SOLUTIONS_DIR = "solutions"
SUBMITTED_DIR = "submitted"
AUTOGRADED_DIR = "autograded"  # nbgrader's graded copies: autograded/<student>/<lab>/
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


class CourseError(RuntimeError):
    """A problem the instructor can fix; the message says how. Printed without a traceback."""


def list_labs(root: Path = REPO_ROOT) -> list[str]:
    """Names of the labs: the folders of ``<root>/source`` that hold notebooks, sorted."""
    source = root / SOURCE_DIR
    if not source.is_dir():
        raise CourseError(f"No '{SOURCE_DIR}/' folder in {root}: is this a course folder?")
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def resolve_labs(lab: str | None, root: Path = REPO_ROOT) -> list[str]:
    """``[lab]`` when a lab is named (checked to exist), else every lab."""
    labs = list_labs(root)
    if lab is None:
        return labs
    lab = lab.strip("/").split("/")[-1]
    if lab not in labs:
        raise CourseError(f"Unknown lab {lab!r}; the labs in {root / SOURCE_DIR} are: {labs}")
    return [lab]


def tool_env() -> dict[str, str]:
    """Environment for nbgrader subprocesses: this interpreter's ``bin/`` first on PATH.

    nbgrader's gradebook calls the ``alembic`` executable and its kernels start ``python``
    from PATH, so both must be the ones of the environment running this command.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def nbgrader_cmd() -> list[str]:
    """The nbgrader command line of this environment: its ``nbgrader`` command's entry point,
    run by this interpreter without the modules of ``autograder.UNLOADED_MODULES``."""
    from . import UNLOADED_MODULES

    if importlib.util.find_spec("nbgrader") is None:
        raise CourseError("nbgrader is not installed in this environment: run `make test` or "
                          "`pip install -e .` first.")
    return [sys.executable, "-c", "import sys\n"
            f"for name in {UNLOADED_MODULES!r}: sys.modules[name] = None\n"
            "from nbgrader.apps.nbgraderapp import main\nsys.exit(main())"]
