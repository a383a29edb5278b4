"""``course build``: regenerate ``release/`` and ``solutions/`` from ``source/``.

``release/<lab>`` is what nbgrader's ``generate_assignment`` makes of ``source/<lab>``: solutions
replaced by stubs, hidden tests and marking schemes removed, outputs cleared, checksums added.
``solutions/<lab>`` is the self-study view: solutions kept, hidden tests and marking schemes
removed. Both are written with one serialiser, so building twice gives the same bytes, and
``--check`` can tell a stale copy from a fresh one (CI runs it).
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import notebooks
from ._paths import (
    RELEASE_DIR,
    REPO_ROOT,
    SOLUTIONS_DIR,
    SOURCE_DIR,
    CourseError,
    nbgrader_cmd,
    resolve_labs,
    tool_env,
)
from .config import course_id


@dataclass
class BuildReport:
    """What a build changed (or, with ``check``, would change), as paths relative to the root."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.stale or self.missing or self.extra)


def generate_release(lab: str, root: Path, out_dir: Path, db_url: str | None = None) -> Path:
    """Run nbgrader ``generate_assignment`` for ``lab`` into ``out_dir/<lab>``.

    Args:
        lab: the lab (nbgrader assignment) name.
        root: the course root holding ``source/<lab>``.
        out_dir: folder that receives ``<lab>/`` (absolute).
        db_url: gradebook to record the assignment's cells in (grading needs them); a throwaway
            SQLite file when None.
    Returns:
        ``out_dir / lab``.
    """
    with tempfile.TemporaryDirectory(prefix="course-build-") as tmp:
        db = db_url or f"sqlite:///{Path(tmp) / 'build.db'}"
        cmd = nbgrader_cmd() + [
            "generate_assignment", lab, "--force",
            f"--CourseDirectory.root={root}",
            f"--CourseDirectory.release_directory={out_dir}",
            f"--CourseDirectory.db_url={db}",
            f"--CourseDirectory.course_id={course_id(root)}",
            "--log-level=WARN",
        ]
        proc = subprocess.run(cmd, cwd=root, env=tool_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise CourseError(f"nbgrader generate_assignment failed for {lab}:\n{proc.stdout}"
                          f"{proc.stderr}")
    produced = out_dir / lab
    for path in produced.rglob("*.ipynb"):  # one serialiser for every generated notebook
        notebooks.write(notebooks.read(path), path)
    return produced


def generate_solutions(lab: str, root: Path, out_dir: Path) -> Path:
    """Write the self-study view of every notebook of ``source/<lab>`` into ``out_dir/<lab>``."""
    src = root / SOURCE_DIR / lab
    dest = out_dir / lab
    for path in sorted(src.rglob("*")):
        if ".ipynb_checkpoints" in path.parts or path.is_dir():
            continue
        target = dest / path.relative_to(src)
        if path.suffix == ".ipynb":
            notebooks.write(notebooks.to_solution_notebook(notebooks.read(path)), target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return dest


def _sync(fresh: Path, committed: Path, root: Path, check: bool, report: BuildReport) -> None:
    """Compare ``fresh`` with ``committed``; unless ``check``, make ``committed`` equal to it."""
    new = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    old = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()} \
        if committed.exists() else set()
    rel = committed.relative_to(root)
    for name in sorted(new - old):
        report.missing.append(str(rel / name))
    for name in sorted(old - new):
        report.extra.append(str(rel / name))
    for name in sorted(new & old):
        if not filecmp.cmp(fresh / name, committed / name, shallow=False):
            report.stale.append(str(rel / name))
    if check:
        return
    for name in sorted(new):
        if not (committed / name).exists() or str(rel / name) in report.stale:
            (committed / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / name, committed / name)
            report.written.append(str(rel / name))
    for name in sorted(old - new):
        (committed / name).unlink()


def build(lab: str | None = None, root: Path = REPO_ROOT, check: bool = False) -> BuildReport:
    """Regenerate (or with ``check`` only compare) ``release/`` and ``solutions/``.

    Args:
        lab: one lab, or None for every lab in ``source/``.
        root: the course root.
        check: compare only; nothing is written.
    Returns:
        A :class:`BuildReport`; with ``check``, ``report.clean`` says whether all is up to date.
    """
    root = root.resolve()
    report = BuildReport()
    for name in resolve_labs(lab, root):
        with tempfile.TemporaryDirectory(prefix="course-build-") as tmp:
            tmp_path = Path(tmp)
            release = generate_release(name, root, tmp_path / RELEASE_DIR)
            _sync(release, root / RELEASE_DIR / name, root, check, report)
            solutions = generate_solutions(name, root, tmp_path / SOLUTIONS_DIR)
            _sync(solutions, root / SOLUTIONS_DIR / name, root, check, report)
    return report
