"""How long each source notebook of a lab takes to run top to bottom, and which cells cost most.

docs/design.md asks that each notebook of a lab run on a laptop CPU in about a minute, and nbgrader
kills a cell that runs past ``c.Execute.timeout`` (``nbgrader_config.py``). This script executes
every notebook of ``source/<lab>`` (``--lab``, default ``lab1_interpretability``; solutions and
hidden tests included, as ``nbgrader autograde`` would) with nbclient, kernel ``python3``, in a
temporary copy of the lab folder so that nothing in the repository is written. It prints each
notebook's wall time (kernel start included) and its three slowest cells, timed from the
kernel's own timestamps
(``cell.metadata.execution``: ``iopub.execute_input`` to ``shell.execute_reply``).

The kernel runs with ``TORCH_HOME`` set to the stand-in weights (``.cache/torch-standin`` unless
TORCH_HOME is set) and ``MPLBACKEND=Agg``, and torch's default thread count (a student's view;
``OMP_NUM_THREADS`` is passed on if you set it). Besides the wall time it prints the CPU seconds
the kernel used (it and what it ran, from ``RUSAGE_CHILDREN``): on an idle 2-core machine the wall
time lies between half of that and all of it, which makes it the better guide on a loaded machine,
where the wall time mostly measures the other work. The machine's load average (1, 5 and 15 minutes,
as ``uptime`` prints it) is printed before and after every notebook: on a shared machine the
times mean little without it. If a cell raises, the script prints the error and exits with
status 1 after the remaining notebooks.

``--baseline REF`` also runs each notebook as it is in git revision REF (``source/<lab>`` of that
commit; ``course_lib`` is the working tree's for both), alternating with the working tree's
(REF, now, now, REF, ...; ``--repeats`` pairs), and prints the median of each and their ratio:
the way to see what a change to a notebook saves on a machine whose speed drifts.

    .venv/bin/python benchmarks/notebooks.py [--lab lab2_inside_convnets] [--notebook 2_gradcam]
    .venv/bin/python benchmarks/notebooks.py --notebook 2_filters --baseline HEAD --repeats 2
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
from _common import REPO_ROOT, print_table, use_standin_torch_home
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

SOURCE_DIR = REPO_ROOT / "source"
DEFAULT_LAB = "lab1_interpretability"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class NotebookRun:
    """The outcome of executing one notebook."""

    name: str
    wall_s: float = 0.0
    cells: list[tuple[int, float, str]] = field(default_factory=list)  # index, seconds, 1st line
    error: str | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    variant: str = ""  # "" or, with --baseline, "REF" / "now"
    cpu_s: float = 0.0  # CPU seconds of the kernel (and what it ran, e.g. Graphviz's dot)


def load_text(load: tuple[float, float, float]) -> str:
    """A load average as ``uptime`` prints it: ``2.55, 3.56, 4.07``."""
    return ", ".join(f"{value:.2f}" for value in load)


def _timestamp(value: str) -> datetime:
    """Parse a Jupyter ISO-8601 timestamp (``...Z`` or with an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    """Seconds a code cell ran, from nbclient's timing metadata; None if it did not run."""
    execution = cell.get("metadata", {}).get("execution", {})
    start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
    if not start or not end:
        return None
    return (_timestamp(end) - _timestamp(start)).total_seconds()


def first_line(source: str) -> str:
    """The first non-empty line of a cell's source, shortened for a table."""
    line = next((text.strip() for text in source.splitlines() if text.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def kernel_env() -> dict[str, str]:
    """The environment of the kernel: ours, plus stand-in TORCH_HOME, Agg and the venv's bin."""
    env = dict(os.environ)
    env["TORCH_HOME"] = use_standin_torch_home()
    env["MPLBACKEND"] = "Agg"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_notebook(path: Path, timeout: int) -> NotebookRun:
    """Execute ``path`` in its own folder and collect timings (and the error, if any)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    )
    run = NotebookRun(path.stem, load_before=os.getloadavg())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env())
    except CellExecutionError as err:
        run.error = ANSI_ESCAPE.sub("", str(err))  # tracebacks come with terminal colours
    except Exception as err:  # a dead kernel or a timeout: report it like a cell error
        run.error = f"{type(err).__name__}: {err}"
    run.wall_s = time.perf_counter() - start
    run.load_after = os.getloadavg()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel has exited: counted
    run.cpu_s = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    for index, cell in enumerate(nb.cells):
        seconds = cell_seconds(cell) if cell.cell_type == "code" else None
        if seconds is not None:
            run.cells.append((index, seconds, first_line(cell.source)))
    return run


def report(run: NotebookRun, slowest: int) -> None:
    """Print one notebook's wall time and its slowest cells."""
    total = sum(seconds for _, seconds, _ in run.cells)
    top = sorted(run.cells, key=lambda cell: cell[1], reverse=True)[:slowest]
    label = f"{run.name} ({run.variant})" if run.variant else run.name
    print_table(
        f"{label}: {run.wall_s:.1f} s wall (kernel start included), {run.cpu_s:.1f} s of CPU, "
        f"{total:.1f} s in {len(run.cells)} code cells; load average "
        f"{load_text(run.load_before)} before, {load_text(run.load_after)} after; "
        f"slowest {len(top)}:",
        ("cell", "seconds", "first line"),
        [[index, seconds, line] for index, seconds, line in top],
    )
    if run.error:
        print(f"\nERROR in {run.name}:\n{run.error}")


def select(lab_dir: Path, names: Sequence[str] | None) -> list[Path]:
    """The lab's notebooks, or those named (``2_filters`` or ``2_filters.ipynb``)."""
    available = sorted(lab_dir.glob("*.ipynb"))
    if not available:
        labs = ", ".join(sorted(p.name for p in SOURCE_DIR.iterdir() if p.is_dir()))
        sys.exit(f"no notebooks in {lab_dir}; labs: {labs}")
    if not names:
        return available
    by_stem = {path.stem: path for path in available}
    chosen = []
    for name in names:
        stem = name.removesuffix(".ipynb")
        if stem not in by_stem:
            sys.exit(f"unknown notebook {name!r}; expected one of: {', '.join(by_stem)}")
        chosen.append(by_stem[stem])
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see --help)."""
    parser = argparse.ArgumentParser(
        description="Run a lab's source notebooks with nbclient; print wall and cell times.",
    )
    parser.add_argument("--lab", default=DEFAULT_LAB, help=f"lab folder in source/ ({DEFAULT_LAB})")
    parser.add_argument(
        "--notebook",
        action="append",
        metavar="NAME",
        help="run only this notebook, e.g. 2_filters (repeatable); default all",
    )
    parser.add_argument("--slowest", type=int, default=3, help="slow cells listed (3)")
    parser.add_argument(
        "--timeout", type=int, default=600, help="per-cell timeout in seconds (600)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run each notebook as it is in git revision REF, alternating (e.g. HEAD)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each variant with --baseline (1)"
    )
    return parser.parse_args(argv)


def extract_lab(ref: str, lab: str, dest: Path) -> Path:
    """``source/<lab>`` as it is in git revision ``ref``, written under ``dest``; its folder."""
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, f"source/{lab}"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "source" / lab


def compare(paths: list[Path], lab: str, ref: str, repeats: int, timeout: int,
            slowest: int, tmp: Path) -> list[NotebookRun]:
    """Run each notebook of ``ref`` and of the working tree alternately; print the medians."""
    folders = {ref: extract_lab(ref, lab, tmp / "baseline"), "now": tmp / "now" / lab}
    shutil.copytree(SOURCE_DIR / lab, folders["now"])
    runs: list[NotebookRun] = []
    rows = []
    for path in paths:
        times: dict[str, list[float]] = {ref: [], "now": []}
        cpu: dict[str, list[float]] = {ref: [], "now": []}
        loads: list[float] = []
        for repeat in range(repeats):
            order = [ref, "now"] if repeat % 2 == 0 else ["now", ref]
            for variant in order:
                notebook = folders[variant] / path.name
                if not notebook.is_file():
                    sys.exit(f"{path.name} is not in {ref}'s source/{lab}")
                print(f"running {path.name} ({variant}) ...", flush=True)
                run = run_notebook(notebook, timeout)
                run.variant = variant
                report(run, slowest)
                runs.append(run)
                times[variant].append(run.wall_s)
                cpu[variant].append(run.cpu_s)
                loads += [run.load_before[0], run.load_after[0]]
        before, now = statistics.median(times[ref]), statistics.median(times["now"])
        cpu_before, cpu_now = statistics.median(cpu[ref]), statistics.median(cpu["now"])
        rows.append([path.stem, before, now, now / before, cpu_before, cpu_now,
                     f"{min(loads):.1f}-{max(loads):.1f}"])
    print_table(
        f"Working tree against {ref} (median of {repeats} run(s) each, alternating)",
        ("notebook", f"{ref} wall s", "now wall s", "now/ref", f"{ref} CPU s", "now CPU s",
         "load (1 min)"),
        rows,
    )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Copy the lab to a temporary folder, run the selected notebooks, print the report."""
    args = parse_args(argv)
    lab_dir = SOURCE_DIR / args.lab
    paths = select(lab_dir, args.notebook)
    threads = os.environ.get("OMP_NUM_THREADS", f"torch's default ({os.cpu_count()} cores)")
    print(f"TORCH_HOME={use_standin_torch_home()}, {os.cpu_count()} CPU cores, kernel threads: "
          f"{threads}, load average: {load_text(os.getloadavg())}")
    runs: list[NotebookRun] = []
    with tempfile.TemporaryDirectory(prefix="lab_notebooks_") as tmp:
        if args.baseline:
            runs = compare(paths, args.lab, args.baseline, max(1, args.repeats), args.timeout,
                           args.slowest, Path(tmp))
        else:
            lab_copy = Path(tmp) / lab_dir.name
            shutil.copytree(lab_dir, lab_copy)
            for path in paths:
                print(f"running {path.name} ...", flush=True)
                run = run_notebook(lab_copy / path.name, args.timeout)
                report(run, args.slowest)
                runs.append(run)
    print_table(
        "Summary",
        ("notebook", "wall s", "CPU s", "status", "load before", "load after"),
        [[f"{run.name} ({run.variant})" if run.variant else run.name, run.wall_s, run.cpu_s,
          "ERROR" if run.error else "ok", load_text(run.load_before), load_text(run.load_after)]
         for run in runs],
    )
    print(f"total: {sum(run.wall_s for run in runs):.1f} s")
    failed = [run.name for run in runs if run.error]
    if failed:
        print(f"\nFAILED: a cell raised in {', '.join(failed)} (errors printed above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
