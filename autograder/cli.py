"""The ``course`` command line: ``build``, ``check``, ``grade``, ``export``, ``demo``, ``audit``."""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ._paths import REPO_ROOT, SOURCE_DIR, SUBMITTED_DIR, CourseError, resolve_labs
from .build import build
from .check import check_notebook, format_check
from .config import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_MAX_PROCESSES,
    DEFAULT_NOTEBOOK_TIMEOUT,
    GradeConfig,
)
from .grade import (
    GradingInterrupted,
    course_failure_summary,
    format_table,
    grade,
    write_csv,
)
from .samples import demo_students, make_submission
from .sandbox import Protection, detect, memory_cap_description, require


def _cmd_build(args: argparse.Namespace) -> int:
    report = build(args.lab, root=Path(args.course), check=args.check)
    if args.check:
        if report.clean:
            print("release/ and solutions/ are up to date with source/.")
            return 0
        for kind in ("stale", "missing", "extra"):
            for path in getattr(report, kind):
                print(f"{kind}: {path}")
        print("release/ or solutions/ differ from what source/ generates: run `course build` "
              "and commit the result.", file=sys.stderr)
        return 1
    print(f"Built {len(report.written)} changed file(s)"
          + "".join(f"\n  {p}" for p in report.written))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    protection = detect()
    if protection.active:
        print(protection.describe(), file=sys.stderr, flush=True)
    else:  # a laptop without bubblewrap: the student's own notebook, run as Jupyter would
        print(f"Warning: no sandbox ({protection.detail}); the notebook runs with your rights, "
              "as in Jupyter.", file=sys.stderr, flush=True)
    rows = check_notebook(Path(args.notebook), cell_timeout=args.cell_timeout,
                          sandbox=protection.active)
    if not rows:
        raise CourseError(f"{args.notebook} has no test cells: is it a lab notebook?")
    print(format_check(rows))
    return 0 if all(r.passed for r in rows) else 1


def _report(results, root: Path, protection: Protection) -> int:
    """Print the table and where the grades are; 1 when an instructor cell failed, else 0."""
    csv_path = write_csv(results, root / "grades.csv")
    print(format_table(results))
    print(f"\nGradebook: {root / 'gradebook.db'}\nGrades CSV: {csv_path}")
    print(protection.describe())
    failures = course_failure_summary(results, root)
    if failures:
        print("\nThe course's own cells failed, so these grades do not mean anything yet:\n  "
              + "\n  ".join(failures) + "\nFix the course (or the grading environment) and "
              "grade again.", file=sys.stderr)
        return 1
    return 0


def grade_options(args: argparse.Namespace, root: Path) -> GradeConfig:
    """``course grade``'s settings: defaults, the course's config, then the command line."""
    return GradeConfig.for_course(root, jobs=args.jobs, cell_timeout=args.cell_timeout,
                                  notebook_timeout=args.notebook_timeout, memory_mb=args.memory,
                                  sandbox=not args.no_sandbox, cpu_time=args.cpu_time,
                                  max_processes=args.max_processes,
                                  fast=False if args.full else None)


def _cmd_grade(args: argparse.Namespace) -> int:
    root = Path(args.course).resolve()
    options = grade_options(args, root)
    protection = require(options.sandbox)  # refuses before any work when none is available
    print(protection.describe(), file=sys.stderr, flush=True)
    if options.memory_mb and protection.active:
        print(memory_cap_description(), file=sys.stderr, flush=True)
    results = grade(args.lab, root=root, db_url=args.db, options=options,
                    scheduler=args.scheduler, missing=args.missing)
    return _report(results, root, protection)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Build, then grade sample submissions in a throwaway course folder."""
    repo = Path(args.course).resolve()
    build(None, root=repo)
    demo = Path(args.dir).resolve()
    if demo.exists():
        shutil.rmtree(demo)
    shutil.copytree(repo / SOURCE_DIR, demo / SOURCE_DIR)
    shutil.copyfile(repo / "nbgrader_config.py", demo / "nbgrader_config.py")
    for lab in resolve_labs(None, repo):
        for student, how in demo_students(lab).items():
            make_submission(lab, demo / SUBMITTED_DIR / student / lab, root=repo, **how)
    # The bundled samples are trusted: sandboxed when the machine can, else graded as they are.
    protection = detect()
    if not protection.active:
        protection = Protection(protection.mode, f"the bundled samples are trusted; "
                                                 f"{protection.detail}")
    print(f"Grading the sample submissions in {demo} (this takes a few minutes)...", flush=True)
    print(protection.describe(), file=sys.stderr, flush=True)
    results = grade(None, root=demo, options=GradeConfig.for_course(
        demo, jobs=args.jobs, sandbox=protection.active))
    return _report(results, demo, protection)


def _cmd_export(args: argparse.Namespace) -> int:
    """Write the final grades (tests and marking by hand) from the gradebook."""
    from .export import export, format_final
    grades, path = export(args.lab, Path(args.course).resolve(), db_url=args.db,
                          out=Path(args.out).resolve() if args.out else None)
    print(format_final(grades))
    pending = sum(len(g.pending) for g in grades)
    print(f"\nFinal grades: {path}" + (f"\n{pending} answer(s) still to be marked by hand "
                                        "(status 'pending'; they count 0 so far)."
                                        if pending else ""))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    """Grade blank, random, constant and known-wrong answers against the hidden tests."""
    from .audit import run_audit  # imports torch: only for this command
    return run_audit(args.lab, Path(args.course).resolve(), set(args.task or ()), args.notebook)


COURSE_HELP = ("course root holding source/ (default: the current folder when it holds "
               "nbgrader_config.py or source/, else this repository)")


def course_root(given: str | None, cwd: Path | None = None) -> Path:
    """The course folder: ``--course`` when given, else the current folder when it looks like
    a course (nbgrader's users run commands in the course root), else this repository."""
    if given:
        return Path(given).resolve()
    here = (cwd or Path.cwd()).resolve()
    if (here / "nbgrader_config.py").is_file() or (here / SOURCE_DIR).is_dir():
        return here
    return REPO_ROOT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    parser.add_argument("--course", default=None, help=COURSE_HELP)
    # ``--course`` is accepted after the subcommand too (``course grade lab1 --course DIR``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--course", default=argparse.SUPPRESS, help=COURSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, parents=[common])

    p = command("build", help="regenerate release/ and solutions/ from source/")
    p.add_argument("lab", nargs="?", help="one lab (default: all)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and name the files that are stale")
    p.set_defaults(func=_cmd_build)

    p = command("check", help="run a notebook in a fresh kernel and report its tests")
    p.add_argument("notebook", help="path to a lab notebook (.ipynb)")
    p.add_argument("--cell-timeout", type=int, default=None,
                   help=f"seconds per cell ({DEFAULT_CELL_TIMEOUT}, as course grade)")
    p.set_defaults(func=_cmd_check)

    p = command("grade", help="autograde submitted/<student>/<lab>/ into the gradebook")
    p.add_argument("lab", nargs="?", help="one lab (default: all)")
    p.add_argument("--db", help="gradebook SQLAlchemy URL (default: sqlite gradebook.db)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (1)")
    p.add_argument("--cell-timeout", type=int, default=None,
                   help=f"seconds per cell (nbgrader_config.py's c.Execute.timeout, else "
                        f"{DEFAULT_CELL_TIMEOUT})")
    p.add_argument("--notebook-timeout", type=float, default=None,
                   help=f"seconds for one student's whole lab ({DEFAULT_NOTEBOOK_TIMEOUT})")
    p.add_argument("--memory", type=int, default=None,
                   help="memory cap in MB for each submission's kernel (default: none)")
    p.add_argument("--cpu-time", type=int, default=None,
                   help="CPU seconds for each submission's kernel (default: the notebook "
                        "timeout times the CPU cores)")
    p.add_argument("--max-processes", type=int, default=None,
                   help="processes and threads each sandboxed kernel may run "
                        f"({DEFAULT_MAX_PROCESSES})")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the sandbox (trusted submissions only): submitted code "
                        "then runs with your rights")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="grade on a Dask cluster, e.g. tcp://10.0.0.5:8786: its workers run the "
                        "submissions, this machine records them (README, \"Grading on a "
                        "cluster\")")
    p.add_argument("--missing", action="store_true",
                   help="grade only the students whose grading of the lab did not finish "
                        "(after an interrupted batch); grades.csv still lists everyone")
    p.add_argument("--full", action="store_true",
                   help="run every cell of every notebook, figures included (default: skip the "
                        "instructor cells no test needs; the graded copy keeps the student's own "
                        "outputs of those cells; a cell binding a name the student's code may "
                        "read runs after all)")
    p.set_defaults(func=_cmd_grade)

    p = command("export", help="write final_grades.csv: tests and marking by hand, per "
                                      "task, pending answers marked as such")
    p.add_argument("lab", nargs="?", help="one lab (default: all)")
    p.add_argument("--db", help="gradebook SQLAlchemy URL (default: sqlite gradebook.db)")
    p.add_argument("--out", help="file to write (default: <course>/final_grades.csv)")
    p.set_defaults(func=_cmd_export)

    p = command("demo", help="build, grade the bundled sample submissions, print the table")
    p.add_argument("--dir", default=str(REPO_ROOT / "build" / "demo_course"),
                   help="throwaway course folder (replaced on every run)")
    p.add_argument("--jobs", type=int, default=2, help="submissions graded at once (2)")
    p.set_defaults(func=_cmd_demo)

    p = command("audit", help="check that blank, random, constant and known-wrong "
                                     "answers earn nothing (an instructor's check of the tests)")
    p.add_argument("lab", nargs="?", help="one lab (default: all)")
    p.add_argument("--task", type=int, action="append", help="only this task (repeatable)")
    p.add_argument("--notebook", help="only this notebook (its name without .ipynb)")
    p.set_defaults(func=_cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.course = str(course_root(args.course))
    try:
        return args.func(args)
    except GradingInterrupted as exc:
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 130
    except CourseError as exc:
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
