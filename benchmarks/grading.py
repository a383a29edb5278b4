"""What batch grading costs: overhead over plain execution, and the gain of ``--jobs 2``.

1. **Overhead** (every cell run, ``--full``). The same solution notebooks of a lab, once
   executed directly with nbclient (a fresh kernel per notebook, as a student's "Restart and
   run all") and once graded by ``course grade`` (staging, worker process, nbgrader's
   autograde, gradebook writes, feedback).
   Printed: both times and the overhead in percent (target: under 30 %), plus the grading time of
   one full submission.
2. **Throughput.** N solution submissions graded with ``--jobs 1`` and with ``--jobs 2``
   (N defaults to 4). Printed: both times and the throughput ratio (target on a 2-core machine:
   at least 1.6).
3. **The trusted harness.** One solution submission autograded in this process, alternately
   with the test cells run by the harness (``TrustedExecute``, what ``course grade`` does) and
   run inside the kernel as plain nbgrader does (its ``Execute``; the design before the
   harness). Printed: the median of each and their ratio (target: at most 1.10).
4. **Seconds per submission** (``--only-fast``), for each lab given (default: Labs 1 and 2):
   one solution submission graded by ``course grade`` as it does by default (fast: figure cells
   not run, ``autograder/fast.py``; warm kernels, ``autograder/zygote.py``), with ``--full``, and
   as before issue 11 (full, a fresh sandbox per notebook), alternately, ``--repeats`` times
   each; then ``--submissions`` of them as one batch with ``--jobs 2``, the batch's seconds per
   submission. Issue 11's targets: Lab 1 in at most 15 s, Lab 2 in at most 20 s on a 2-core
   CPU. All must give full marks.
5. **A Dask cluster** (``--only-cluster``): the same batch through a local ``dask scheduler``
   with 1 and 2 ``dask worker`` processes, against the local pool (``benchmarks/cluster.py``).
6. **Projection** (with part 4): 500 students x 3 labs on N machines like this one, from the
   batch's seconds per submission, with the assumptions printed.

Variants run alternately in one process; uses the stand-in weights, no network.
Usage: ``python benchmarks/grading.py [--lab lab1_interpretability] [--submissions 4]``;
``--only-fast`` or ``--only-cluster`` for parts 4 and 6 or part 5 alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, make_course, reset_grading, use_standin_torch_home

sys.path.insert(0, str(REPO_ROOT))

from autograder import notebooks  # noqa: E402
from autograder.cluster import RECORDERS  # noqa: E402
from autograder.config import GradeConfig  # noqa: E402
from autograder.grade import GradeOptions, default_db_url, grade  # noqa: E402


def execute_directly(folder: Path) -> float:
    """Run every notebook of ``folder`` in a fresh kernel; return wall seconds."""
    from nbclient import NotebookClient

    start = time.perf_counter()
    for path in sorted(folder.glob("*.ipynb")):
        nb = notebooks.read(path)
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(folder)}}).execute()
    return time.perf_counter() - start


def grade_time(root: Path, lab: str, students: list[str], jobs: int, fast: bool = True,
               warm: bool = True) -> float:
    reset_grading(root)
    start = time.perf_counter()
    results = grade(lab, root=root, students=students, options=GradeOptions(
        jobs=jobs, fast=fast, warm=warm))
    elapsed = time.perf_counter() - start
    bad = [r.student for r in results if r.auto_score != r.auto_max]
    if bad:
        raise SystemExit(f"solution submissions lost points: {bad}")
    return elapsed


def harness_against_kernel(root: Path, lab: str, repeats: int) -> tuple[float, float]:
    """Median seconds to autograde one submission with tests in the harness / in the kernel."""
    import os
    import statistics

    from _common import interleaved
    from nbgrader.preprocessors import Execute

    from autograder import worker
    from autograder._paths import tool_env

    os.environ.update(tool_env())
    cfg = GradeConfig(sandbox=False, sandbox_mode="none")

    def run(executor):
        def go():
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["IPYTHONDIR"] = str(worker.seeded_ipython_dir(Path(tmp), cfg.seed))
                outcome = worker.autograde(root, lab, "student0", default_db_url(root),
                                           root / "submitted", cfg, executor=executor)
            if not outcome["success"]:
                raise SystemExit(f"autograde failed: {outcome['error'][-500:]}")
        return go

    def fresh_gradebook() -> None:  # outside the timing: what course grade does once per lab
        reset_grading(root)
        _prepare_gradebook(root, lab)

    times, _ = interleaved({"harness": run(None), "kernel": run(Execute)}, repeats,
                           setup=fresh_gradebook)
    return statistics.median(times["harness"]), statistics.median(times["kernel"])


VARIANTS = {  # name -> (fast, warm)
    "default": (True, True),
    "--full": (False, True),
    "before issue 11": (False, False),
}


def per_submission(root: Path, lab: str, repeats: int, batch: int) -> dict[str, float]:
    """Median seconds of one submission per variant, then a batch's seconds per submission.

    A lone submission's time includes recording the lab in the gradebook (once per lab and
    run of ``course grade``, a few seconds); the batch's spreads it over ``batch`` students.
    """
    import statistics

    from _common import interleaved

    one = ["student0"]
    times, _ = interleaved({name: (lambda f=f, w=w: grade_time(root, lab, one, 1, f, w))
                            for name, (f, w) in VARIANTS.items()}, repeats)
    found = {name: statistics.median(t) for name, t in times.items()}
    students = [f"student{i}" for i in range(batch)]
    found["batch --jobs 2"] = grade_time(root, lab, students, 2) / batch
    return found


LABS_PER_COURSE = 3
STUDENTS = 500


RECORD_SECONDS = 5.0  # the coordinator's recording of one result (a worker process, no kernel)


def projection(batch_seconds: dict[str, float], workers: tuple[int, ...] = (1, 4, 16)) -> str:
    """Hours to grade 500 students x 3 labs on N machines like this one (2 jobs each)."""
    per_lab = sum(batch_seconds.values()) / len(batch_seconds)
    count = STUDENTS * LABS_PER_COURSE
    lines = [f"6. projection: {STUDENTS} students x {LABS_PER_COURSE} labs, {per_lab:.1f} s per "
             "submission on one 2-core machine grading 2 at a time (the mean of the labs "
             "measured above; Lab 3 assumed alike); N such machines as Dask workers scale "
             f"linearly, but the coordinator records results ({RECORDERS} at a time here, "
             f"about {RECORD_SECONDS:g} s each, assumed from tests/test_cluster.py), which "
             f"bounds the batch at {count * RECORD_SECONDS / RECORDERS / 3600:.1f} h however "
             "many workers:"]
    for n in workers:
        hours = max(count * per_lab / n, count * RECORD_SECONDS / RECORDERS) / 3600
        lines.append(f"   N={n:>2}: {hours:.1f} h")
    return "\n".join(lines)


def _prepare_gradebook(root: Path, lab: str) -> None:
    """Record the lab's cells in the gradebook, as ``course grade`` does before autograding."""
    from autograder.build import generate_release

    with tempfile.TemporaryDirectory() as tmp:
        generate_release(lab, root, Path(tmp), db_url=default_db_url(root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="lab1_interpretability")
    parser.add_argument("--submissions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant in part 3")
    parser.add_argument("--only-harness", action="store_true", help="run part 3 only")
    parser.add_argument("--only-fast", action="store_true", help="run parts 4 and 6 only")
    parser.add_argument("--only-cluster", action="store_true", help="run part 5 only")
    parser.add_argument("--labs", nargs="*", help="labs of part 4 (default: Labs 1 and 2)")
    args = parser.parse_args()
    print(f"TORCH_HOME={use_standin_torch_home()}")
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = make_course(Path(tmp), args.lab, args.submissions)
        if args.only_fast:
            batch = {}
            for lab in args.labs or ["lab1_interpretability", "lab2_inside_convnets"]:
                lab_root = make_course(Path(tmp) / lab, lab, args.submissions)
                found = per_submission(lab_root, lab, args.repeats, args.submissions)
                batch[lab] = found["batch --jobs 2"]
                print(f"4. {lab}, seconds per submission (medians of {args.repeats}; full marks "
                      "every time):")
                for name, seconds in found.items():
                    print(f"   {name:<16} {seconds:6.1f} s")
                print(f"   default vs before issue 11: "
                      f"{found['before issue 11'] / found['default']:.2f}x faster; default vs "
                      f"--full: {found['--full'] / found['default']:.2f}x")
            print(projection(batch))
            return 0
        if args.only_cluster:
            from cluster import dask_vs_local

            found = dask_vs_local(root, args.lab, [f"student{i}" for i in range(
                args.submissions)])
            print(f"5. {args.submissions} submissions of {args.lab}: "
                  + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in found.items()))
            return 0
        if not args.only_harness:
            one = ["student0"]
            folder = root / "submitted" / "student0" / args.lab
            direct = [execute_directly(folder), None]
            graded = [grade_time(root, args.lab, one, jobs=1, fast=False), None]
            direct[1] = execute_directly(folder)
            graded[1] = grade_time(root, args.lab, one, jobs=1, fast=False)
            d, g = min(direct), min(graded)
            print(f"\n1. one submission of {args.lab}: executed directly {d:.1f} s, "
                  f"graded {g:.1f} s, overhead {100 * (g - d) / d:+.0f} % (target < 30 %)")
            students = [f"student{i}" for i in range(args.submissions)]
            serial = grade_time(root, args.lab, students, jobs=1, fast=False)
            parallel = grade_time(root, args.lab, students, jobs=2, fast=False)
            print(f"2. {len(students)} submissions: --jobs 1 {serial:.1f} s, --jobs 2 "
                  f"{parallel:.1f} s, throughput ratio {serial / parallel:.2f}x (target >= 1.6x)")
        harness, kernel = harness_against_kernel(root, args.lab, args.repeats)
        print(f"3. one submission autograded with tests in the harness {harness:.1f} s, in the "
              f"kernel (plain nbgrader) {kernel:.1f} s: ratio {harness / kernel:.2f} "
              "(target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
