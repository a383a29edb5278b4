"""What batch grading costs: overhead over plain execution, and the gain of ``--jobs 2``.

1. **Overhead.** The same solution notebooks of a lab, once executed directly with nbclient (a
   fresh kernel per notebook, as a student's "Restart and run all") and once graded by
   ``course grade`` (staging, worker process, nbgrader's autograde, gradebook writes, feedback).
   Printed: both times and the overhead in percent (target: under 30 %), plus the grading time of
   one full submission.
2. **Throughput.** N solution submissions graded with ``--jobs 1`` and with ``--jobs 2``
   (N defaults to 4). Printed: both times and the throughput ratio (target on a 2-core machine:
   at least 1.6).
3. **The trusted harness.** One solution submission autograded in this process, alternately
   with the test cells run by the harness (``TrustedExecute``, what ``course grade`` does) and
   run inside the kernel as plain nbgrader does (its ``Execute``; the design before the
   harness). Printed: the median of each and their ratio (target: at most 1.10).
4. **Fast grading.** One solution submission graded by ``course grade`` with ``--fast`` (the
   instructor cells no test needs are not run; ``autograder/fast.py``) and without, alternately
   (``--repeats`` times each). Printed: the medians, their ratio, and that both gave full marks
   (issue 11's target: Lab 1 in at most 15 s, Lab 2 in at most 20 s on a 2-core CPU).

Variants run alternately in one process; uses the stand-in weights, no network.
Usage: ``python benchmarks/grading.py [--lab lab1_interpretability] [--submissions 4]``.
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


def grade_time(root: Path, lab: str, students: list[str], jobs: int, fast: bool = False) -> float:
    reset_grading(root)
    start = time.perf_counter()
    results = grade(lab, root=root, students=students, options=GradeOptions(jobs=jobs,
                                                                            fast=fast))
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


def fast_against_full(root: Path, lab: str, repeats: int) -> tuple[float, float]:
    """Median seconds to grade one solution submission with ``--fast`` and without."""
    import statistics

    from _common import interleaved

    one = ["student0"]
    times, _ = interleaved({"fast": lambda: grade_time(root, lab, one, 1, fast=True),
                            "full": lambda: grade_time(root, lab, one, 1)}, repeats)
    return statistics.median(times["fast"]), statistics.median(times["full"])


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
    parser.add_argument("--only-fast", action="store_true", help="run part 4 only")
    args = parser.parse_args()
    print(f"TORCH_HOME={use_standin_torch_home()}")
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = make_course(Path(tmp), args.lab, args.submissions)
        if args.only_fast:
            fast, full = fast_against_full(root, args.lab, args.repeats)
            print(f"4. one submission of {args.lab} graded --fast {fast:.1f} s, in full "
                  f"{full:.1f} s: ratio {full / fast:.2f}x faster, full marks both ways")
            return 0
        if not args.only_harness:
            one = ["student0"]
            folder = root / "submitted" / "student0" / args.lab
            direct = [execute_directly(folder), None]
            graded = [grade_time(root, args.lab, one, jobs=1), None]
            direct[1] = execute_directly(folder)
            graded[1] = grade_time(root, args.lab, one, jobs=1)
            d, g = min(direct), min(graded)
            print(f"\n1. one submission of {args.lab}: executed directly {d:.1f} s, "
                  f"graded {g:.1f} s, overhead {100 * (g - d) / d:+.0f} % (target < 30 %)")
            students = [f"student{i}" for i in range(args.submissions)]
            serial = grade_time(root, args.lab, students, jobs=1)
            parallel = grade_time(root, args.lab, students, jobs=2)
            print(f"2. {len(students)} submissions: --jobs 1 {serial:.1f} s, --jobs 2 "
                  f"{parallel:.1f} s, throughput ratio {serial / parallel:.2f}x (target >= 1.6x)")
        harness, kernel = harness_against_kernel(root, args.lab, args.repeats)
        print(f"3. one submission autograded with tests in the harness {harness:.1f} s, in the "
              f"kernel (plain nbgrader) {kernel:.1f} s: ratio {harness / kernel:.2f} "
              "(target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
