"""Grade one submission in this process: ``python -m autograder.worker ...``.

``course grade`` starts one worker per submission (``--jobs`` at a time), so a crash, a hang or a
memory blow-up costs one student at most. The worker caps its own memory (the kernel inherits
the cap), seeds and guards every kernel it starts (:mod:`autograder.kernel_startup`), runs
nbgrader's autograde with the preprocessors of :mod:`autograder.nbgrader_ext`, and prints one
JSON line with the outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .grade import DEFAULT_CELL_TIMEOUT, IGNORED_STDERR
from .sandbox import DEFAULT_MAX_PROCESSES, MODES, NO_SANDBOX


def seeded_ipython_dir(parent: Path, seed: int) -> Path:
    """An IPYTHONDIR whose startup file is :mod:`autograder.kernel_startup` (seed and guard)."""
    startup = parent / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("kernel_startup.py"), startup / "00-course.py")
    os.environ["COURSE_SEED"] = str(seed)
    return parent / "ipython"


def cap_memory(megabytes: int) -> None:
    """Limit this process and its children (the kernel) to ``megabytes`` of data memory.

    RLIMIT_DATA counts heap and anonymous mappings, not the shared libraries mapped read-only
    (PyTorch's CUDA build maps gigabytes of them), so it caps what a notebook can allocate.
    """
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def autograde(root: Path, lab: str, student: str, db_url: str, staged: Path,
              cell_timeout: int, max_output_bytes: int, sandbox: str = NO_SANDBOX,
              max_processes: int = DEFAULT_MAX_PROCESSES, cpu_seconds: int = 0,
              scratch: str = "") -> dict:
    """Run nbgrader autograde for one student whose staged copy is ``staged/<student>/<lab>``.

    ``sandbox`` is a mode of :mod:`autograder.sandbox`; with one, the kernel runs in a sandbox
    with at most ``max_processes`` processes and ``cpu_seconds`` of CPU time (0: no cap), its
    scratch folder made in ``scratch`` (default: the temp folder).
    """
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )
    from traitlets.config import Config

    from .nbgrader_ext import HideTestCode, LimitOutputBytes, RobustExecute

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    config.CourseDirectory.submitted_directory = str(staged)
    config.Autograde.autograde_preprocessors = [
        RobustExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, LimitOutputBytes,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    config.Execute.timeout = cell_timeout
    config.RobustExecute.sandbox_mode = sandbox
    config.SandboxKernelManager.sandbox_mode = sandbox
    config.SandboxKernelManager.max_processes = max_processes
    config.SandboxKernelManager.cpu_seconds = cpu_seconds
    config.SandboxKernelManager.scratch_parent = scratch
    config.Execute.interrupt_on_timeout = True
    config.IgnorePattern.enabled = True
    config.IgnorePattern.pattern = IGNORED_STDERR
    config.LimitOutput.max_lines = 200
    config.LimitOutputBytes.max_bytes = max_output_bytes
    # Feedback shows each test's name, description and message, never its code.
    config.GenerateFeedback.preprocessors = [GetGrades, HideTestCode, CSSHTMLHeaderPreprocessor]
    api = NbGraderAPI(config=config)
    result = api.autograde(lab, student, force=True, create=True)
    outcome = {"success": bool(result.get("success")), "error": result.get("error") or "",
               "log": (result.get("log") or "")[-4000:]}
    outcome["notes"] = incidents(root / "autograded" / student / lab)
    if (root / "autograded" / student / lab).is_dir():
        feedback = api.generate_feedback(lab, student, force=True)
        if not feedback.get("success"):
            outcome["error"] += "\nfeedback failed: " + (feedback.get("error") or "")
    return outcome


INCIDENTS = {
    "KernelDied": "the kernel died",
    "CellTimeoutError": "a cell timed out",
    "MemoryError": "out of memory",
    "BlockingIOError": "a process or thread could not start (process cap)",
}
GUARD_MARK = "[course-guard] restored before this test: "


def incidents(folder: Path) -> list[str]:
    """One line per notebook of ``folder`` whose run hit a kernel death, timeout or memory cap."""
    import nbformat

    notes = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        seen = {out.get("ename") for cell in nb.cells if cell.cell_type == "code"
                for out in cell.get("outputs", []) if out.get("output_type") == "error"}
        notes += [f"{path.name}: {text}" for ename, text in INCIDENTS.items() if ename in seen]
        replaced = sorted({name for cell in nb.cells if cell.cell_type == "code"
                           for out in cell.get("outputs", [])
                           for line in str(out.get("text", "")).splitlines()
                           if line.startswith(GUARD_MARK)
                           for name in line[len(GUARD_MARK):].split(", ")})
        if replaced:
            notes.append(f"{path.name}: FLAGGED FOR REVIEW, replaced {', '.join(replaced)}")
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("--root", required=True)
    parser.add_argument("--lab", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--staged", required=True, help="folder holding <student>/<lab>")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT)
    parser.add_argument("--memory", type=int, default=0, help="MB; 0 = no cap")
    parser.add_argument("--max-output-bytes", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sandbox", choices=MODES, default=NO_SANDBOX)
    parser.add_argument("--max-processes", type=int, default=DEFAULT_MAX_PROCESSES)
    parser.add_argument("--cpu-time", type=int, default=0, help="CPU seconds; 0 = no cap")
    parser.add_argument("--scratch", default="", help="folder for the sandbox's scratch")
    args = parser.parse_args(argv)
    if args.memory:
        cap_memory(args.memory)
    with tempfile.TemporaryDirectory(prefix="course-worker-") as tmp:
        os.environ["IPYTHONDIR"] = str(seeded_ipython_dir(Path(tmp), args.seed))
        try:
            outcome = autograde(Path(args.root), args.lab, args.student, args.db,
                                Path(args.staged), args.cell_timeout, args.max_output_bytes,
                                args.sandbox, args.max_processes, args.cpu_time,
                                args.scratch)
        except MemoryError:
            outcome = {"success": False, "error": "the grader ran out of memory", "log": ""}
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
