"""Grade one submission in this process: ``python -m autograder.worker ...``.

``course grade`` starts one worker per submission (``--jobs`` at a time), so a crash, a hang or a
memory blow-up costs one student at most. The worker takes its whole configuration as one JSON
argument (:class:`~autograder.config.GradeConfig`), starts every kernel with the agent of
:mod:`autograder.kernel_agent` (seeds, answers the harness), runs nbgrader's autograde with the
preprocessors of :mod:`autograder.nbgrader_ext` (tests in this process, the notebook in the
kernel), and prints one JSON line with the outcome.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .config import IGNORED_STDERR, PARENT_ENV, GradeConfig, course_id
from .instructor_cells import CourseFailure, course_failures
from .sandbox import NO_SANDBOX, adopt_orphans, course_lib_dir


def seeded_ipython_dir(parent: Path, seed: int) -> Path:
    """An IPYTHONDIR whose startup file is :mod:`autograder.kernel_agent` (seed and agent)."""
    startup = parent / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("kernel_agent.py"), startup / "00-course-agent.py")
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
              cfg: GradeConfig, scratch: str = "", executor: type | None = None,
              replay: str = "") -> dict:
    """Run nbgrader autograde for one student whose staged copy is ``staged/<student>/<lab>``.

    Test cells run in this process (:class:`~autograder.nbgrader_ext.TrustedExecute`), the
    notebook's own cells in the kernel, sandboxed as ``cfg.sandbox_mode`` says, its scratch
    folder made in ``scratch`` (default: the temp folder). ``executor`` replaces
    TrustedExecute: only ``benchmarks/grading.py`` passes one (nbgrader's own Execute, which
    runs tests in the kernel) to measure what the harness costs. ``replay``: a folder of
    notebooks a cluster worker graded; their outputs are recorded, nothing runs
    (:class:`~autograder.nbgrader_ext.ReplayOutputs`).
    """
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )
    from traitlets.config import Config

    from .nbgrader_ext import (
        LimitOutputBytes,
        ShowMarkSchemes,
        ShowVisibleTests,
        TrustedExecute,
        feedback_preprocessors,
        trusted_autograde,
    )
    from .safe_output import SanitizeNotebook

    sandbox = cfg.sandbox_mode or NO_SANDBOX
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    config.CourseDirectory.course_id = course_id(root)
    config.CourseDirectory.submitted_directory = str(staged)
    if replay:
        from .nbgrader_ext import ReplayOutputs

        executor = ReplayOutputs
    config.Autograde.autograde_preprocessors = [
        executor or TrustedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        LimitOutputBytes, SaveAutoGrades, AssignLatePenalties, ShowVisibleTests, CheckCellMetadata,
        ShowMarkSchemes,  # after the grades are saved: graders' notes are not graded cells
        SanitizeNotebook,  # last: the graded copy the formgrader renders holds no active HTML
    ]
    config.ShowMarkSchemes.trusted_dir = str(root / "source" / lab)
    config.ReplayOutputs.replay_dir = replay
    config.Execute.timeout = cfg.cell_timeout
    config.Execute.interrupt_on_timeout = True
    config.TrustedExecute.sandbox_mode = sandbox
    config.TrustedExecute.trusted_dir = str(root / "source" / lab)
    config.TrustedExecute.seed = cfg.seed
    config.TrustedExecute.max_reply_bytes = cfg.max_reply_bytes
    config.TrustedExecute.visible_only = cfg.visible_only
    config.TrustedExecute.fast = cfg.fast
    config.TrustedExecute.warm = cfg.warm  # one preloaded sandbox forks the kernels (zygote.py)
    config.TrustedExecute.submitted_dir = str(staged / student / lab)
    config.TrustedExecute.startup_timeout = cfg.startup_timeout
    config.TrustedExecute.timeout_stretch = cfg.timeout_stretch
    config.TrustedExecute.infrastructure_retries = cfg.infrastructure_retries
    config.SandboxKernelManager.sandbox_mode = sandbox
    config.SandboxKernelManager.max_processes = cfg.max_processes
    config.SandboxKernelManager.cpu_seconds = cfg.cpu_seconds()
    config.SandboxKernelManager.scratch_parent = scratch
    config.SandboxKernelManager.memory_mb = cfg.memory_mb
    config.IgnorePattern.enabled = True
    config.IgnorePattern.pattern = IGNORED_STDERR
    config.LimitOutput.max_lines = 200
    config.LimitOutputBytes.max_bytes = cfg.max_output_bytes
    # Feedback shows each test's name, description and message, never its code, a marking
    # scheme or active HTML (nbgrader_config.py gives nbgrader's own commands the same list).
    config.GenerateFeedback.preprocessors = feedback_preprocessors()
    api = NbGraderAPI(config=config)
    graded = root / "autograded" / student / lab
    marked = hand_marked_answers(db_url, lab, student, graded)
    for attempt in range(1 + GRADEBOOK_RETRIES):
        with trusted_autograde():
            result = api.autograde(lab, student, force=True, create=True)
        if result.get("success") or not _gradebook_busy(result) or attempt == GRADEBOOK_RETRIES:
            break
        time.sleep(5)  # another worker held the gradebook too long: grade the submission again
    outcome = {"success": bool(result.get("success")), "error": result.get("error") or "",
               "log": (result.get("log") or "")[-4000:]}
    if not outcome["success"]:
        # nbgrader's own last line ("Please see the above traceback") says nothing: the cause.
        outcome["error"] = _cause(result) or outcome["error"]
    outcome["notes"] = keep_hand_marks(db_url, lab, student, marked, graded) if outcome[
        "success"] else []
    outcome["notes"] += incidents(graded)
    outcome["course_failures"] = [asdict(f) for f in course_failures_in(graded,
                                                                        root / "source" / lab)]
    if (root / "autograded" / student / lab).is_dir():
        feedback = api.generate_feedback(lab, student, force=True)
        if not feedback.get("success"):
            outcome["error"] += "\nfeedback failed: " + (feedback.get("error") or "")
    return outcome


def _answers(folder: Path) -> dict[tuple[str, str], str]:
    """``(notebook, grade_id)`` -> source of every graded answer cell in ``folder``'s copies."""
    from . import notebooks

    found = {}
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = notebooks.read(path)
        except Exception:  # noqa: BLE001 - an unreadable old copy: nothing to compare with
            continue
        for cell in nb.cells:
            meta = notebooks.nbgrader_meta(cell)
            if meta.get("grade") and meta.get("solution") and isinstance(meta.get("grade_id"), str):
                found[(path.stem, meta["grade_id"])] = cell.source
    return found


def hand_marked_answers(db_url: str, lab: str, student: str, graded: Path
                        ) -> dict[tuple[str, str], str]:
    """The answers a person has marked by hand, as the graded copy had them when marked."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            return {}
        marked = {(nb.name, g.name) for nb in submission.notebooks for g in nb.grades
                  if g.manual_score is not None and g.cell_type == "markdown"}
    answers = _answers(graded) if marked else {}
    return {key: answers[key] for key in marked if key in answers}


def keep_hand_marks(db_url: str, lab: str, student: str, marked: dict[tuple[str, str], str],
                    graded: Path) -> list[str]:
    """After grading again, answers marked by hand and unchanged stay marked.

    nbgrader flags every cell with a manual score as needing a person again when it
    autogrades; an answer the student did not change keeps its mark (and comment) and leaves
    the "needs manual grade" list. A changed answer stays flagged, and the note says so.
    """
    if not marked:
        return []
    from nbgrader.api import Gradebook, MissingEntry

    answers = _answers(graded)
    notes = []
    with Gradebook(db_url) as gb:
        for (notebook, grade_id), before in sorted(marked.items()):
            try:
                grade = gb.find_grade(grade_id, notebook, lab, student)
            except MissingEntry:
                continue
            if answers.get((notebook, grade_id)) == before:
                grade.needs_manual_grade = False
            else:
                notes.append(f"{notebook}.ipynb: {grade_id} changed since it was marked by "
                             "hand: mark it again")
        gb.db.commit()
    return notes


GRADEBOOK_RETRIES = 1  # a gradebook locked past its timeout under load is not the student's


def _gradebook_busy(result: dict) -> bool:
    text = f"{result.get('error') or ''}\n{result.get('log') or ''}"
    return "database is locked" in text or "database table is locked" in text


def _cause(result: dict) -> str:
    """The exception that made nbgrader fail, as ``Type: message``, from its log.

    nbgrader logs the traceback of what went wrong, then raises its own NbGraderException
    whose message only points at that traceback.
    """
    log = result.get("log") or ""
    tail = log.rsplit("Traceback (most recent call last):", 1)
    if len(tail) < 2:
        return ""
    lines = tail[1].splitlines()[1:]
    frames = [ln for ln in lines if ln.lstrip().startswith('File "')]
    if not frames:
        return ""
    # The log indents the traceback: frames sit 2 spaces deeper than the exception's line.
    base = len(frames[0]) - len(frames[0].lstrip()) - 2
    for line in lines:
        text = line.strip()
        if text and len(line) - len(line.lstrip()) == base and not text.startswith(
                ("File ", "[")):
            return f"the grader failed: {' '.join(text.split())[:300]}"
    return ""


# The note autograder.fast.explain_missing_names adds to such an error, to find the name.
SKIPPED_NAME = re.compile(r"(`\w+`) is defined only by an instructor cell that fast grading")
INCIDENTS = {
    "KernelDied": "the kernel died",
    "CellTimeoutError": "a cell, or a test's call into the notebook, timed out",
    "InterruptIgnored": "a cell ignored the interrupt (the kernel was restarted)",
    "KernelUnresponsive": "the kernel stopped answering the grader",
    "MemoryError": "out of memory",
    "BlockingIOError": "a process or thread could not start (process cap)",
    "SetupError": "an instructor cell failed in the grader",
}


def incidents(folder: Path) -> list[str]:
    """One line per notebook of ``folder`` whose run hit a kernel death, timeout or memory cap."""
    import nbformat

    from .nbgrader_ext import NOT_GRADED, is_test_cell

    notes = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        seen = {out.get("ename") for cell in nb.cells if cell.cell_type == "code"
                for out in cell.get("outputs", []) if out.get("output_type") == "error"}
        notes += [f"{path.name}: {text}" for ename, text in INCIDENTS.items() if ename in seen]
        unseen = {name for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []) if out.get("output_type") == "error"
                  for name in SKIPPED_NAME.findall(str(out.get("evalue", "")))}
        if unseen:
            notes.append(f"{path.name}: the code read {', '.join(sorted(unseen))}, defined only "
                         "by cells fast grading does not run: grade this student with --full")
        # Set by the grader only on test cells: the notebook could not be run at all.
        not_graded = [out.get("evalue") for cell in nb.cells if is_test_cell(cell)
                      for out in cell.get("outputs", []) if out.get("ename") == NOT_GRADED]
        notes += [f"{path.name}: {str(text)[:400]}" for text in not_graded[:1]]
        removed = nb.metadata.get("autograder", {}).get("sanitized", [])
        if isinstance(removed, list) and removed:
            notes.append(f"{path.name}: FLAGGED FOR REVIEW, active HTML removed ("
                         f"{'; '.join(str(r) for r in removed[:3])}"
                         f"{'; ...' if len(removed) > 3 else ''})")
    return notes


def course_failures_in(folder: Path, trusted_dir: Path) -> list[CourseFailure]:
    """The instructor cells that failed through no fault of the student's, every notebook."""
    from . import notebooks

    found: list[CourseFailure] = []
    for path in sorted(folder.glob("*.ipynb")):
        trusted = trusted_dir / path.name
        if trusted.is_file():
            found += course_failures(notebooks.read(path), notebooks.read(trusted), path.name)
    return found


def die_with_grader() -> None:
    """Ask Linux to kill this process when the grader that started it dies (its pid is in
    ``COURSE_GRADER_PID``): a worker runs in its own session, so a killed Dask worker or
    coordinator would otherwise leave it grading for nobody. Elsewhere, nothing happens."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the grader was gone before the request was made
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    die_with_grader()
    adopt_orphans()  # a killed sandbox's processes are reaped at once (kill_uid waits for them)
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("--root", required=True)
    parser.add_argument("--lab", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--staged", required=True, help="folder holding <student>/<lab>")
    parser.add_argument("--config", required=True, help="GradeConfig as JSON")
    parser.add_argument("--scratch", default="", help="folder for the sandbox's scratch")
    parser.add_argument("--replay", default="", help="record this folder's graded notebooks "
                        "(a cluster worker's) instead of running the submission")
    args = parser.parse_args(argv)
    cfg = GradeConfig.from_json(args.config)
    if cfg.memory_mb and cfg.sandbox_mode in ("", NO_SANDBOX):
        # Without a sandbox the kernel inherits this process's cap (and so does the harness);
        # a sandboxed kernel gets its own (RLIMIT_DATA inside, a memory cgroup where possible).
        cap_memory(cfg.memory_mb)
    package = course_lib_dir()
    if package is not None and cfg.sandbox_mode in ("", NO_SANDBOX):
        # The kernel imports the course_lib the harness does (a sandboxed kernel: kernel_env).
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.dirname(package), os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="course-worker-") as tmp:
        os.environ["IPYTHONDIR"] = str(seeded_ipython_dir(Path(tmp), cfg.seed))
        try:
            outcome = autograde(Path(args.root), args.lab, args.student, args.db,
                                Path(args.staged), cfg, args.scratch, replay=args.replay)
        except MemoryError:
            outcome = {"success": False, "error": "the grader ran out of memory", "log": ""}
    print(json.dumps(outcome), flush=True)
    return 0


def exit_now(code: int) -> None:
    """End the worker once its outcome is printed: close its warm sandboxes, flush, and leave
    without the interpreter's teardown of torch, the models and nbgrader's objects, which took
    1.5-2 s of every submission here (the gradebook's writes are committed by then)."""
    import logging

    from .zygote import close_all

    close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
