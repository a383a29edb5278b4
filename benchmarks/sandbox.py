"""What the sandbox costs: one Lab 1 submission graded with and without it.

The same solution submission is graded by ``course grade``'s code path (staging, worker,
nbgrader autograde, gradebook, feedback) once with the sandbox (bubblewrap, its own uid, scratch
copy, per-cell cleanup) and once with ``--no-sandbox``, alternately, ``--repeats`` times each.
Printed: every time, the medians and the ratio sandboxed / plain (target: at most 1.10), and the
sandbox start-up and teardown alone (one kernel started and shut down in it, and without it).

Uses the stand-in weights, no network. Needs bubblewrap (``apt-get install bubblewrap``).
Usage: ``python benchmarks/sandbox.py [--lab lab1_interpretability] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO_ROOT,
    interleaved,
    make_course,
    median,
    print_table,
    reset_grading,
    use_standin_torch_home,
)

sys.path.insert(0, str(REPO_ROOT))

from autograder import sandbox  # noqa: E402
from autograder.grade import GradeOptions, grade  # noqa: E402


def grade_once(root: Path, lab: str, use_sandbox: bool) -> float:
    """Grade the one submission from scratch; return wall seconds."""
    reset_grading(root)
    start = time.perf_counter()
    results = grade(lab, root=root, options=GradeOptions(jobs=1, sandbox=use_sandbox))
    elapsed = time.perf_counter() - start
    if any(r.auto_score != r.auto_max for r in results):
        variant = "sandboxed" if use_sandbox else "plain"
        raise SystemExit(f"the solution submission lost points ({variant})")
    return elapsed


def kernel_round_trip(use_sandbox: bool, folder: Path) -> None:
    """Start a kernel, run one trivial cell, shut it down."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    extra = {"kernel_manager_class": sandbox.SandboxKernelManager} if use_sandbox else {}
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}, **extra).execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="lab1_interpretability")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"TORCH_HOME={use_standin_torch_home()}")
    protection = sandbox.detect()
    print(protection.describe())
    if not protection.active:
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        root = make_course(Path(tmp), args.lab)
        folder = root / "submitted" / "student0" / args.lab
        kernel_round_trip(True, folder)  # warm the page cache for both variants
        kt, _ = interleaved({"plain": lambda: kernel_round_trip(False, folder),
                             "sandboxed": lambda: kernel_round_trip(True, folder)},
                            repeats=5, setup=None)
        print_table("Kernel start, one cell, shutdown (s)", ["variant", "median", "all"],
                    [[n, median(t), " ".join(f"{x:.2f}" for x in t)] for n, t in kt.items()])
        times: dict[str, list[float]] = {"plain": [], "sandboxed": []}
        for rep in range(args.repeats):
            order = [False, True] if rep % 2 == 0 else [True, False]
            for use in order:
                seconds = grade_once(root, args.lab, use)
                times["sandboxed" if use else "plain"].append(seconds)
                print(f"  {'sandboxed' if use else 'plain':9s} {seconds:.1f} s", flush=True)
        plain, boxed = median(times["plain"]), median(times["sandboxed"])
        print_table(f"Grading one {args.lab} solution submission (s), {args.repeats} each",
                    ["variant", "median", "all"],
                    [[n, median(t), " ".join(f"{x:.1f}" for x in t)] for n, t in times.items()])
        print(f"\nsandboxed / plain = {boxed / plain:.3f} (target <= 1.10); kernel round trip "
              f"+{median(kt['sandboxed']) - median(kt['plain']):.2f} s; "
              f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
