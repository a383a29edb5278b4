"""``course grade LAB --scheduler ADDRESS``: grading on a Dask cluster.

Who does what:

- **The coordinator** (the machine running ``course grade``) records the lab in the gradebook,
  stages each submission exactly as for local grading (:func:`autograder.grade.stage`: links
  refused, shadowing modules dropped, the collection time written down) and sends the staged
  files, as bytes, with the lab's ``source/`` folder and an empty private gradebook holding the
  lab's cells (made once, sent to every worker once).
- **A worker** (any machine with this package, its Python environment and bubblewrap) writes
  them into a private scratch course and runs ``python -m autograder.worker`` on it, the same
  process a local worker runs (sandbox, harness, warm kernels, time limits), then sends back the
  graded notebooks. It touches nothing of the coordinator's: the task is pure, so Dask may run
  it again elsewhere when a worker dies.
- **The coordinator alone** records a returned result: it autogrades the same staged
  submission again with :class:`~autograder.nbgrader_ext.ReplayOutputs`, which takes the
  worker's outputs instead of running anything, so its gradebook, feedback and notes come from
  the same code as local grading. Each result is recorded exactly once, up to
  :data:`RECORDERS` at a time (as a local ``--jobs`` pool writes the gradebook).

A lost scheduler stops the batch: what was recorded stays, and :class:`SchedulerLost` says how
to grade the rest (``--missing``: only students without a graded submission of the lab).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from ._paths import AUTOGRADED_DIR, CourseError
from .config import GradeConfig
from .instructor_cells import CourseFailure

# Results recorded at once on the coordinator: each recording is a worker process replaying the
# graded notebooks into the gradebook (no kernel), a few seconds of one core.
RECORDERS = max(1, min(4, os.cpu_count() or 1))


class SchedulerLost(CourseError):
    """The Dask scheduler went away mid-batch: what is recorded stays; the rest is listed."""

    def __init__(self, address: str, done: list[str], left: list[str], why: str,
                 failed: list[str] | None = None) -> None:
        failed = failed or []
        also = (f"; {len(failed)} failed on the cluster and are counted as not graded "
                f"({', '.join(failed)})" if failed else "")
        super().__init__(
            f"lost the Dask scheduler at {address} ({why}): {len(done)} submission(s) graded "
            f"and recorded, {len(left)} not ({', '.join(left)}){also}. Start the scheduler "
            "again and run the same command with --missing to grade only those.")
        self.done, self.left, self.failed = done, left, failed


def _files(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` (staging left no link), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _write(files: dict[str, bytes], folder: Path) -> None:
    for name, data in files.items():
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:  # the coordinator's names; never outside
            raise CourseError(f"refusing to write {name} outside {folder}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def lab_bundle(lab: str, root: Path) -> dict:
    """What every worker needs once: the lab's ``source/`` files and a private gradebook
    (SQLite) that holds the lab's cells, made here with nbgrader's generate_assignment."""
    from .build import generate_release

    with tempfile.TemporaryDirectory(prefix="course-bundle-") as tmp:
        db = Path(tmp) / "gradebook.db"
        generate_release(lab, root, Path(tmp) / "release", db_url=f"sqlite:///{db}")
        return {"lab": lab, "source": _files(root / "source" / lab),
                "gradebook": db.read_bytes()}


def remote_grade(bundle: dict, student: str, staged: dict[str, bytes], config: str) -> dict:
    """On a worker: grade one staged submission as a local worker does; the graded notebooks.

    Returns ``{"outcome": worker outcome or None, "notes": [...], "graded": {name: bytes},
    "host": ...}``.
    """
    from .grade import run_worker, worker_command

    cfg = GradeConfig.from_json(config)
    lab = bundle["lab"]
    with tempfile.TemporaryDirectory(prefix=f"course-{student}-",
                                     ignore_cleanup_errors=True) as tmp:
        root = Path(tmp) / "course"
        _write(bundle["source"], root / "source" / lab)
        (root / "gradebook.db").write_bytes(bundle["gradebook"])
        folder = Path(tmp) / "submitted"
        _write(staged, folder / student / lab)
        db = f"sqlite:///{root / 'gradebook.db'}?timeout=60"
        outcome, notes = run_worker(worker_command(lab, student, root, db, folder, cfg,
                                                   Path(tmp)), root, cfg)
        graded = root / AUTOGRADED_DIR / student / lab
        return {"outcome": outcome, "notes": notes, "host": socket.gethostname(),
                "graded": {p.name: p.read_bytes() for p in sorted(graded.glob("*.ipynb"))}}


def record(lab: str, student: str, root: Path, db_url: str, staged: Path, result: dict,
           cfg: GradeConfig, tmp: Path) -> tuple[str, list[CourseFailure]]:
    """On the coordinator: record a worker's result in the gradebook (feedback and notes
    included), as local grading would have; what went wrong and the failed instructor cells."""
    from .grade import mark_graded, outcome_notes, run_worker, unmark_graded, worker_command

    notes = list(result["notes"])
    unmark_graded(root, lab, student)
    if result["outcome"] is None:  # the worker's worker crashed or timed out: said in notes
        return "; ".join(notes), []
    replay = tmp / "replay"
    replay.mkdir()
    for name, data in result["graded"].items():
        (replay / Path(name).name).write_bytes(data)
    outcome, more = run_worker(worker_command(lab, student, root, db_url, staged, cfg, tmp,
                                              replay=replay), root, cfg.replace(jobs=1))
    notes += more
    failures: list[CourseFailure] = []
    if outcome is not None:
        # the worker's notes (kernel deaths, timeouts) come back from the graded copies
        more, failures = outcome_notes(outcome)
        notes += more
        mark_graded(root, lab, student)  # finished, whatever it found
    return "; ".join(dict.fromkeys(n for n in notes if n)), failures


def grade_on_cluster(lab: str, students: list[str], root: Path, db_url: str, release: Path,
                     cfg: GradeConfig, address: str) -> tuple[dict, dict]:
    """Grade ``students`` through the scheduler at ``address``; record each result here.

    Returns (student -> problems, student -> failed instructor cells), as the local pool does.
    Raises SchedulerLost when the scheduler goes away; Ctrl-C cancels what is not recorded.
    """
    from distributed import Client, as_completed

    from .grade import _RUNNING, _STOPPING, GradingInterrupted, _kill, stage

    problems: dict[str, str] = {}
    failed: dict[str, list[CourseFailure]] = {}
    try:
        client = Client(address, timeout="30s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise CourseError(f"no Dask scheduler answers at {address} ({exc}); start one "
                          "(README, \"Grading on a cluster\") or leave out --scheduler") from exc
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="course-cluster-", ignore_cleanup_errors=True)))
        bundle = client.scatter(lab_bundle(lab, root), broadcast=True)
        futures = {}
        for student in students:
            tmp = scratch / uuid.uuid4().hex[:8]
            tmp.mkdir()
            staged, notes = stage(lab, student, root, release, tmp)
            problems[student] = "; ".join(notes)
            future = client.submit(remote_grade, bundle, student,
                                   _files(staged / student / lab), cfg.to_json(),
                                   key=f"course-grade-{lab}-{student}-{uuid.uuid4().hex[:8]}",
                                   pure=False, retries=1)
            futures[future] = (student, staged, tmp)
        done: list[str] = []  # recorded here
        lost: list[str] = []  # their task raised on the cluster: nothing recorded
        recorders = ThreadPoolExecutor(max_workers=RECORDERS)
        recording: dict[Future, str] = {}
        bar = tqdm(total=len(futures), unit="submission", desc=f"grading {lab} on {address}",
                   file=sys.stderr)
        stack.callback(bar.close)

        def collect(wait: bool) -> None:
            """Take in the recordings that finished (all of them, with ``wait``)."""
            for job in [j for j in recording if wait or j.done()]:
                student = recording.pop(job)
                found, failed[student] = job.result()
                problems[student] = "; ".join(p for p in (problems[student], found) if p)
                done.append(student)

        try:
            for future in as_completed(futures, loop=client.loop):
                student, staged, tmp = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - the task's own; the scheduler's below
                    if not _scheduler_alive(client):
                        raise
                    note = f"grading failed on the cluster: {type(exc).__name__}: {exc}"[:400]
                    problems[student] = "; ".join(p for p in (problems[student], note) if p)
                    lost.append(student)
                    bar.update()
                    continue
                job = recorders.submit(record, lab, student, root, db_url, staged, result,
                                       cfg, tmp)
                job.add_done_callback(lambda _job: bar.update())
                recording[job] = student
                collect(wait=False)
            collect(wait=True)
        except KeyboardInterrupt:
            # As locally: the results being recorded (their replay workers) are stopped,
            # nothing queued is started; what was recorded stays.
            _STOPPING.set()
            recorders.shutdown(wait=False, cancel_futures=True)
            for proc in list(_RUNNING):
                _kill(proc, reap=False)
            client.cancel(list(futures))
            raise GradingInterrupted(sorted(done), sorted(set(students) - set(done))) from None
        except Exception as exc:
            if _scheduler_alive(client):  # not the scheduler's doing: a bug of ours, shown
                raise
            collect(wait=True)  # the results already here are recorded: they need no scheduler
            left = sorted(set(students) - set(done) - set(lost))
            raise SchedulerLost(address, sorted(done), left,
                                f"{type(exc).__name__}: {exc}"[:200], sorted(lost)) from exc
        finally:
            recorders.shutdown(wait=False)
    return problems, failed


def _scheduler_alive(client) -> bool:
    """The client is still connected (it gives up, and closes, once the scheduler has been
    unreachable for its reconnection timeout; its cached identity says nothing then)."""
    return client.status == "running"
