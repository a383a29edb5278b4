"""`make dist`: the wheel and sdist of this package, e.g. for Colab (README, "On Colab").

The wheel is built as the Makefile builds it (``python -m build --no-isolation``, offline), holds
every module of ``course_lib`` (what a student's notebook imports) and of ``autograder`` with its
sample answers, and installs with ``pip install --no-deps`` into a fresh environment where
``import course_lib, autograder`` works from the installed copy, which has the ``course``
command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from autograder._paths import REPO_ROOT

PIP_ENV = {"PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}


def _modules(package: str) -> set[str]:
    """Every file of a package in this repository that a distribution must carry."""
    root = REPO_ROOT / package
    return {p.relative_to(REPO_ROOT).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    try:
        import build  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must build the wheel, but `build` is not installed (the dev extra)")
        pytest.skip("`build` is not installed: pip install -c constraints.txt -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-m build --no-isolation --outdir dist ." in makefile, "make dist builds differently"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), "."],
        cwd=REPO_ROOT, env={**os.environ, **PIP_ENV}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_wheel_holds_course_lib_autograder_and_the_course_command(dist):
    (wheel,) = dist.glob("cnn_interpretability_course-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    missing = (_modules("course_lib") | _modules("autograder")) - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert re.search(r"^course = autograder\.cli:main$", entry_points, re.M), entry_points
    assert not [n for n in names if n.startswith(("tests/", "source/", "solutions/"))]


def test_the_sdist_builds_the_same_package(dist):
    (sdist,) = dist.glob("cnn_interpretability_course-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "course_lib/__init__.py",
            "autograder/cli.py"} <= names


@pytest.mark.slow  # importing torch in a fresh process: 10 to 40 s on a 2-core machine
def test_the_wheel_installs_and_imports_without_this_repository(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, env={**os.environ, **PIP_ENV})
    # The dependencies (torch, ...) come from the test's environment, *after* the fresh
    # environment's own site-packages, as a plain path: this repository's editable install
    # (a finder in a .pth file there) is not activated, so the wheel's copy is what imports.
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    deps = sysconfig.get_paths()["purelib"]
    (site / "zz_course_deps.pth").write_text(deps + "\n")
    probe = "import course_lib, autograder; print(course_lib.__file__, autograder.__file__)"
    result = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, env={k: v for k, v in os.environ.items()
                                            if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-3000:]
    files = result.stdout.split()
    assert len(files) == 2 and all(Path(f).is_relative_to(site) for f in files), files
    script = env_dir / "bin" / "course"
    assert script.is_file() and "autograder.cli" in script.read_text(), "no `course` command"
