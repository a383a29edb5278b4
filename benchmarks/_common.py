"""Small timing helpers shared by the benchmark scripts.

The machines this course runs on are shared 2-core CPUs whose speed drifts from second to second,
so a benchmark here never compares a time with a fixed threshold. Instead the variants being
compared run *interleaved* in one process (A, B, B, A, A, B, ...: the order alternates so that a
slow-down halfway through hits both), each is repeated, and the script reports the median time of
each variant and their ratio.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STANDIN_TORCH_HOME = REPO_ROOT / ".cache" / "torch-standin"


def use_standin_torch_home() -> str:
    """Point TORCH_HOME at the repository's stand-in weights unless it is already set.

    Returns:
        The TORCH_HOME in force afterwards.
    """
    if "TORCH_HOME" not in os.environ and STANDIN_TORCH_HOME.is_dir():
        os.environ["TORCH_HOME"] = str(STANDIN_TORCH_HOME)
    return os.environ.get("TORCH_HOME", "(torch default)")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Call ``fn()`` once; return (wall seconds, its result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    repeats: int,
    setup: Callable[[], object] | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each variant ``repeats`` times, alternating their order on every repetition.

    Args:
        variants: name -> zero-argument callable; at least one.
        repeats: how many times each variant runs.
        setup: called before every timed call, outside the timing (e.g. to free memory).

    Returns:
        (name -> list of wall times in seconds, name -> result of the variant's last call).
    """
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, Any] = {}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else reversed(names):
            if setup is not None:
                setup()
            seconds, results[name] = timed(variants[name])
            times[name].append(seconds)
    return times, results


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence of numbers."""
    return statistics.median(values)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain-text table; floats get 3 significant digits, everything else ``str``."""

    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def ratio_rows(
    pairs: Sequence[tuple[str, Sequence[float], Sequence[float]]],
) -> list[list[object]]:
    """Rows (label, median slow s, median fast s, slow/fast, n) for ``print_table``.

    Args:
        pairs: (label, times of the baseline variant, times of the faster variant), seconds.

    Returns:
        One row per pair; the ratio is > 1 when the second variant is faster.
    """
    rows: list[list[object]] = []
    for label, slow, fast in pairs:
        slow_s, fast_s = median(slow), median(fast)
        rows.append([label, slow_s, fast_s, f"{slow_s / fast_s:.2f}x", len(slow)])
    return rows


def make_course(tmp: Path, lab: str, students: int = 1) -> Path:
    """A throwaway course root in ``tmp``: the lab's source and release, and ``students``
    submissions of the solution (``student0``, ``student1``, ...)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from autograder.samples import ALL, make_submission

    root = tmp / "course"
    shutil.copytree(REPO_ROOT / "source" / lab, root / "source" / lab)
    shutil.copytree(REPO_ROOT / "release" / lab, root / "release" / lab)
    for i in range(students):
        make_submission(lab, root / "submitted" / f"student{i}" / lab, solve=ALL)
    return root


def reset_grading(root: Path) -> None:
    """Remove what grading wrote in ``root`` (autograded/, feedback/, the gradebook)."""
    for name in ("autograded", "feedback", "gradebook.db"):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

