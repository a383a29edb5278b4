"""``course grade``: autograde every submission of a lab with nbgrader, then report per task.

Each submission is graded by its own ``nbgrader autograde`` process, so one that crashes or
hangs its kernel costs only its own grade. Its kernel, the only process that runs submitted code,
runs in the sandbox of :mod:`autograder.sandbox`; without one, grading refuses to start unless
the instructor asks for ``--no-sandbox``. Scores come from the gradebook, grouped by task (the
number in each grade cell's ``grade_id``), and are written to ``grades.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from tqdm.auto import tqdm

from . import notebooks, suspicious
from . import sandbox as _sandbox
from ._paths import (
    AUTOGRADED_DIR,
    REPO_ROOT,
    SUBMITTED_DIR,
    CourseError,
    resolve_labs,
    tool_env,
)
from .build import generate_release
from .config import DEFAULT_CELL_TIMEOUT, DEFAULT_NOTEBOOK_TIMEOUT, PARENT_ENV, GradeConfig
from .instructor_cells import CourseFailure
from .safe_output import csv_cell, one_line, printable, safe_name
from .staging import stage_submission

DEFAULT_SUBMISSION_TIMEOUT = DEFAULT_NOTEBOOK_TIMEOUT
__all__ = ["DEFAULT_CELL_TIMEOUT", "DEFAULT_SUBMISSION_TIMEOUT", "GradeConfig", "GradeOptions",
           "grade"]


@dataclass
class StudentResult:
    """One student's grade for one lab.

    ``tasks`` maps task number -> (automatic score, automatic maximum); ``manual`` is the
    maximum of the manually graded cells still to be marked by a person, ``manual_score`` the
    points of those a person has marked (``course export`` writes the final grades);
    ``course_failures`` the instructor cells that failed through no fault of the student's
    (their grade does not mean anything until the course is fixed and they are graded again).
    """

    student: str
    lab: str
    tasks: dict[int, tuple[float, float]] = field(default_factory=dict)
    manual: float = 0.0
    manual_score: float = 0.0
    problem: str = ""
    course_failures: list[CourseFailure] = field(default_factory=list)

    @property
    def auto_score(self) -> float:
        return sum(s for s, _ in self.tasks.values())

    @property
    def auto_max(self) -> float:
        return sum(m for _, m in self.tasks.values())


def default_db_url(root: Path) -> str:
    """The SQLite gradebook in the course root; workers wait up to 60 s for its write lock."""
    return f"sqlite:///{root / 'gradebook.db'}?timeout=60"


def find_students(lab: str, root: Path) -> list[str]:
    """Students with an entry ``submitted/<student>/<lab>``, sorted.

    Entries are listed without following links: a symbolic link to a classmate's folder is
    still that student's (staging then grades it as blank and says why).
    """
    submitted = root / SUBMITTED_DIR
    if not submitted.is_dir():
        return []
    found = []
    for entry in submitted.iterdir():
        try:
            (entry / lab).lstat()  # exists (a folder, or a link staging will refuse)
        except OSError:
            continue
        found.append(entry.name)
    return sorted(found)


class GradingInterrupted(CourseError):
    """Ctrl-C during ``course grade``: what was graded and what was not."""

    def __init__(self, done: list[str], left: list[str]) -> None:
        super().__init__(f"interrupted: {len(done)} submission(s) graded and recorded, "
                         f"{len(left)} not graded ({', '.join(left)}); run the same command "
                         "again to grade them.")
        self.done, self.left = done, left


GradeOptions = GradeConfig  # the name the tests and benchmarks use


def _worker_env(jobs: int) -> dict[str, str]:
    """Tool environment; with several jobs, each kernel gets its share of the CPU threads."""
    env = tool_env()
    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = threads
    return env


def stage(lab: str, student: str, root: Path, release: Path, tmp: Path) -> tuple[Path, list[str]]:
    """Stage one student's submission into ``tmp/submitted``, scanned; return it and notes."""
    staged = tmp / "submitted"
    report = stage_submission(root / SUBMITTED_DIR / student / lab, release, staged / student / lab)
    notes = list(report.notes)
    for path in sorted((staged / student / lab).glob("*.ipynb")):
        try:
            notes.extend(suspicious.scan_notebook(notebooks.read(path), path.name))
        except Exception:  # noqa: BLE001 - the scan only flags; grading goes on
            notes.append(f"{path.name}: not scanned for tampering (unreadable code)")
    return staged, notes


def worker_command(lab: str, student: str, root: Path, db_url: str, staged: Path,
                   cfg: GradeConfig, scratch: Path, replay: Path | None = None) -> list[str]:
    """``python -m autograder.worker ...`` for one student (``replay``: record that folder's
    graded notebooks instead of running anything; :mod:`autograder.cluster`)."""
    return [sys.executable, "-m", "autograder.worker", f"--root={root}", f"--lab={lab}",
            f"--student={student}", f"--db={db_url}", f"--staged={staged}",
            f"--config={cfg.to_json()}", f"--scratch={scratch}",
            *([f"--replay={replay}"] if replay is not None else [])]


def run_worker(cmd: list[str], cwd: Path, cfg: GradeConfig) -> tuple[dict | None, list[str]]:
    """Run a worker in its own session (a timeout kills it with its kernel); its outcome, or
    None with notes saying why. A worker that died without a word is started again."""
    notes: list[str] = []
    outcome, err, code = None, "", 0
    for _attempt in range(1 + WORKER_RETRIES):
        env = {**_worker_env(cfg.jobs), PARENT_ENV: str(os.getpid())}
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        _RUNNING.add(proc)
        try:
            out, err = proc.communicate(timeout=cfg.notebook_timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            notes.append(f"grading took longer than {cfg.notebook_timeout:.0f} s and was "
                         "stopped")
            return None, notes
        except BaseException:  # Ctrl-C, or a Dask task cancelled: the worker goes too
            _kill(proc, reap=False)
            raise
        finally:
            _RUNNING.discard(proc)
        code = proc.returncode
        outcome = _last_json(out)
        # A worker that died without a word (killed by the machine, e.g. for memory) is the
        # grader's failure, never the student's (their code runs only in the kernel): the
        # submission is graded again from the start, unless grading is being stopped.
        if outcome is not None or _STOPPING.is_set():
            break
    if outcome is None:
        tail = (err.strip().splitlines() or [f"exit status {code}"])[-1]
        notes.append(f"grader crashed: {tail}" + (f" (graded {1 + WORKER_RETRIES} times)"
                                                  if not _STOPPING.is_set() else ""))
    return outcome, notes


def outcome_notes(outcome: dict) -> tuple[list[str], list[CourseFailure]]:
    """The notes and failed instructor cells a worker's outcome reports."""
    failures = [CourseFailure(**f) for f in outcome.get("course_failures", [])]
    notes = [f.describe() for f in failures] + list(outcome.get("notes", []))
    if not outcome["success"]:
        notes.append(_first_line(outcome["error"]) or "nbgrader reported an error")
    return notes, failures


def autograde_one(lab: str, student: str, root: Path, db_url: str, release: Path,
                  cfg: GradeConfig) -> tuple[str, list[CourseFailure]]:
    """Stage, then autograde one student in a worker process.

    Returns what went wrong ("" when nothing did) and the instructor cells that failed.

    The worker runs in its own session so that a timeout kills it with its kernel; the
    sandbox's scratch copy lives in this function's temporary folder, removed even then.
    """
    # A killed worker's kernel may still be exiting while this folder is removed.
    with tempfile.TemporaryDirectory(prefix=f"course-{student}-",
                                     ignore_cleanup_errors=True) as tmp:
        staged, notes = stage(lab, student, root, release, Path(tmp))
        unmark_graded(root, lab, student)
        outcome, more = run_worker(worker_command(lab, student, root, db_url, staged, cfg,
                                                  Path(tmp)), root, cfg)
        notes += more
    failures: list[CourseFailure] = []
    if outcome is not None:
        more, failures = outcome_notes(outcome)
        notes += more
        mark_graded(root, lab, student)  # finished, whatever it found
    return "; ".join(notes), failures


GRADED_MARKS = ".graded"  # autograded/.graded/<lab>/<student>: a grading that finished


def _mark(root: Path, lab: str, student: str) -> Path:
    return root / AUTOGRADED_DIR / GRADED_MARKS / lab / student


def mark_graded(root: Path, lab: str, student: str) -> None:
    """Write down that ``student``'s grading of ``lab`` finished (``--missing`` reads it:
    nbgrader adds the gradebook's row when grading starts, so a row alone says nothing)."""
    path = _mark(root, lab, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def unmark_graded(root: Path, lab: str, student: str) -> None:
    """Before grading ``student`` again: until it finishes, the submission counts as missing."""
    _mark(root, lab, student).unlink(missing_ok=True)


_RUNNING: set[subprocess.Popen] = set()  # workers in flight, killed on Ctrl-C
_STOPPING = threading.Event()  # set on Ctrl-C: a killed worker is not started again
WORKER_RETRIES = 1  # starts of a worker again after it died without reporting


def _kill(proc: subprocess.Popen, reap: bool = True) -> None:
    """Kill a worker with its kernel (its own session); ``reap`` waits for it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if reap:
        proc.communicate()


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "success" in value:
            return value
    return None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def collect_scores(lab: str, student: str, db_url: str) -> StudentResult:
    """Read one student's per-task scores for ``lab`` from the gradebook."""
    result = StudentResult(student=student, lab=lab)
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            result.problem = "no graded submission in the gradebook"
            for nb in gb.find_assignment(lab).notebooks:  # zero out of the lab's maximum
                for cell in nb.grade_cells:
                    task = notebooks.task_of(cell.name)
                    if cell.cell_type == "markdown" or task is None:
                        result.manual += cell.max_score
                    else:
                        _, max_score = result.tasks.get(task, (0.0, 0.0))
                        result.tasks[task] = (0.0, max_score + cell.max_score)
            return result
        for nb in submission.notebooks:
            for grade in nb.grades:
                task = notebooks.task_of(grade.name)
                if grade.cell_type == "markdown" or task is None:
                    if grade.manual_score is not None:  # marked by a person already
                        result.manual_score += grade.manual_score
                    else:
                        result.manual += grade.max_score
                    continue
                score, max_score = result.tasks.get(task, (0.0, 0.0))
                result.tasks[task] = (score + (grade.auto_score or 0.0),
                                      max_score + grade.max_score)
    return result


def write_csv(results: list[StudentResult], path: Path) -> Path:
    """One row per student and lab: each task's points, the automatic total and its maximum."""
    tasks = sorted({t for r in results for t in r.tasks})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "lab", *[f"task{t}" for t in tasks], "auto_score",
                         "auto_max", "manual_score", "manual_pending", "problem"])
        for r in results:
            row = [r.student, r.lab, *[_fmt(r.tasks[t][0]) if t in r.tasks else "" for t in tasks],
                   _fmt(r.auto_score), _fmt(r.auto_max), _fmt(r.manual_score), _fmt(r.manual),
                   r.problem]
            writer.writerow([csv_cell(cell) for cell in row])  # no cell can start a formula
    return path


def _fmt(x: float) -> str:
    return f"{x:g}"


def format_table(results: list[StudentResult]) -> str:
    """A plain-text table per lab: student x task (with the task's points), the total, problems."""
    if not results:
        return "(no submissions)"
    labs = list(dict.fromkeys(r.lab for r in results))
    return "\n\n".join(_lab_table([r for r in results if r.lab == lab]) for lab in labs)


def _lab_table(results: list[StudentResult]) -> str:
    """One lab's table; the tasks' maxima in the header are those of this lab."""
    tasks = sorted({t for r in results for t in r.tasks})
    maxima = {t: max(r.tasks[t][1] for r in results if t in r.tasks) for t in tasks}
    header = ["student", "lab", *[f"T{t}/{_fmt(maxima[t])}" for t in tasks], "auto", "problem"]
    rows = [[one_line(r.student), r.lab,
             *[_fmt(r.tasks[t][0]) if t in r.tasks else "-" for t in tasks],
             f"{_fmt(r.auto_score)}/{_fmt(r.auto_max)}", one_line(r.problem)] for r in results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def course_failure_summary(results: list[StudentResult], root: Path | None = None) -> list[str]:
    """One line per instructor cell that failed, with how many of the lab's students it hit.

    ``instructor cell 3 of 1_inference.ipynb (lab1) failed for 3 of 3 students:
    ModuleNotFoundError: No module named 'course_lib'`` (the most frequent error is named).
    Given the course ``root``, the line also counts the other students for whom fast grading
    did not run the cell (their graded copy says so), so that "1 of 3" is not read as "the
    other two were fine".
    """
    students: dict[str, int] = {}
    hits: dict[tuple[str, str, int], list[CourseFailure]] = {}
    by_lab: dict[str, list[str]] = {}
    for r in results:
        students[r.lab] = students.get(r.lab, 0) + 1
        by_lab.setdefault(r.lab, []).append(r.student)
        for f in r.course_failures:
            hits.setdefault((r.lab, f.notebook, f.cell), []).append(f)
    lines = []
    for (lab, notebook, cell), failures in sorted(hits.items()):
        errors = [f.error for f in failures]
        common = max(set(errors), key=errors.count)
        grade_id = next((f.grade_id for f in failures if f.grade_id), "")
        skipped = (sum(_not_run(root / AUTOGRADED_DIR / s / lab / notebook, grade_id)
                       for s in by_lab[lab]) if root is not None and grade_id else 0)
        not_run = (f" (not run for {skipped}: fast grading runs it only where a student's code "
                   "needs it)" if skipped else "")
        lines.append(f"instructor cell {cell} of {notebook} ({lab}) failed for {len(errors)} of "
                     f"{students[lab]} students{not_run}: {common}")
    return lines


def _not_run(graded: Path, grade_id: str) -> bool:
    """Whether fast grading skipped the cell ``grade_id`` in this graded copy."""
    from .fast import SKIPPED_NOTE

    try:
        nb = notebooks.read(graded)
    except Exception:  # noqa: BLE001 - no graded copy (not graded, or unreadable): not counted
        return False
    return any(notebooks.nbgrader_meta(c).get("grade_id") == grade_id and c.cell_type == "code"
               and c.get("outputs") and c.outputs[0].get("text") == SKIPPED_NOTE
               for c in nb.cells)


def _results(lab: str, who: list[str], db_url: str, problems: dict[str, str],
             failed: dict[str, list[CourseFailure]]) -> list[StudentResult]:
    """Each student's scores from the gradebook, with what went wrong while grading."""
    results = []
    for student in who:
        try:
            result = collect_scores(lab, student, db_url)
        except Exception as exc:  # noqa: BLE001 - a gradebook row one student broke
            result = StudentResult(student=student, lab=lab, problem=(
                f"scores unreadable: {type(exc).__name__}: {str(exc)[:200]}"))
        result.problem = "; ".join(p for p in (problems.get(student, ""), result.problem) if p)
        result.course_failures = failed.get(student, [])
        results.append(result)
    return results


def _gradebook_exists(db_url: str) -> bool:
    """False for a SQLite gradebook file not made yet (opening it would make it)."""
    if not db_url.startswith("sqlite:///"):
        return True
    return Path(db_url[len("sqlite:///"):].split("?", 1)[0]).exists()


def graded_students(lab: str, db_url: str, root: Path) -> set[str]:
    """Students whose grading of ``lab`` finished: a submission in the gradebook and the mark
    :func:`mark_graded` writes once the worker reported (``--missing`` skips them; a grading
    that was killed, timed out or crashed the grader is graded again)."""
    if not _gradebook_exists(db_url):
        return set()
    with Gradebook(db_url) as gb:
        try:
            rows = {s.student.id for s in gb.find_assignment(lab).submissions}
        except MissingEntry:
            return set()
    return {s for s in rows if _mark(root, lab, s).is_file()}


def grade(lab: str | None = None, root: Path = REPO_ROOT, db_url: str | None = None,
          students: list[str] | None = None,
          options: GradeConfig | None = None, scheduler: str | None = None,
          missing: bool = False) -> list[StudentResult]:
    """Autograde the submissions under ``<root>/submitted`` and return per-task results.

    Args:
        lab: one lab, or None for every lab in ``source/``.
        root: the course root (``source/``, ``submitted/``, the gradebook).
        db_url: SQLAlchemy URL of the gradebook; ``<root>/gradebook.db`` by default.
        students: restrict to these students (default: everyone who submitted).
        options: jobs, timeouts, caps, sandbox (see :class:`~autograder.config.GradeConfig`).
        scheduler: a Dask scheduler's address: the submissions are graded on its workers and
            recorded here (:mod:`autograder.cluster`); None grades them on this machine.
        missing: grade only the students without a graded submission of the lab (after an
            interrupted batch).

    Raises:
        SandboxUnavailable: ``options.sandbox`` is set and this machine offers no sandbox.
    """
    root = root.resolve()
    _STOPPING.clear()
    db_url = db_url or default_db_url(root)
    options = options or GradeConfig.for_course(root)
    options = options.replace(sandbox_mode=_sandbox.require(options.sandbox).mode)
    results: list[StudentResult] = []
    for name in resolve_labs(lab, root):
        who = students if students is not None else find_students(name, root)
        if missing:  # those graded before go into the table as they are
            done = graded_students(name, db_url, root)
            results.extend(_results(name, [s for s in who if s in done], db_url, {}, {}))
            who = [s for s in who if s not in done]
        refused = [s for s in who if not safe_name(s)]
        who = [s for s in who if safe_name(s)]
        results.extend(StudentResult(student=printable(s), lab=name, problem=(
            "folder name not allowed (control characters, a path separator, or a leading dot "
            "or dash): rename the folder and grade again; not graded")) for s in refused)
        if not who:
            continue
        with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
            # The gradebook must hold the source cells (points, checksums) before autograding,
            # and the blank release is what a missing or corrupt notebook is graded as.
            release = generate_release(name, root, Path(tmp), db_url=db_url)
            if scheduler:
                from .cluster import grade_on_cluster

                problems, failed = grade_on_cluster(name, who, root, db_url, release, options,
                                                    scheduler)
                results.extend(_results(name, who, db_url, problems, failed))
                continue
            pool = ThreadPoolExecutor(max_workers=max(1, options.jobs))
            futures = {pool.submit(autograde_one, name, s, root, db_url, release,
                                   options): s for s in who}
            problems: dict[str, str] = {}
            failed: dict[str, list[CourseFailure]] = {}
            try:
                for future in tqdm(as_completed(futures), total=len(futures), unit="submission",
                                   desc=f"grading {name}", file=sys.stderr):
                    try:
                        problems[futures[future]], failed[futures[future]] = future.result()
                    except Exception as exc:  # noqa: BLE001 - one student's, never the batch's
                        problems[futures[future]] = (f"grading failed: {type(exc).__name__}: "
                                                     f"{str(exc)[:300]}")
            except KeyboardInterrupt:
                # Stop at once: queued students are not started, running workers are killed.
                # Every grade already written to the gradebook stays; run again to finish.
                _STOPPING.set()
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(_RUNNING):
                    _kill(proc, reap=False)  # its own thread reaps it
                left = sorted(set(who) - set(problems))
                raise GradingInterrupted(sorted(problems), left) from None
            pool.shutdown()
        results.extend(_results(name, who, db_url, problems, failed))
    if not results:
        raise CourseError(f"No submissions found under {root / SUBMITTED_DIR}/<student>/<lab>/.")
    return results
