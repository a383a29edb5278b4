"""environment.yml (conda users) installs what the Makefile installs, at constraints.txt's versions.

Conda provides only Python and Graphviz's `dot`; every Python package comes from pip, in the same
way as `make` (this package's `dev` extra, editable, under constraints.txt), so that
constraints.txt's promise, "conda users get the same versions", holds by construction.
"""

from __future__ import annotations

import re

import tomllib

from autograder._paths import REPO_ROOT

# what conda itself provides: the interpreter, pip, and the Graphviz binaries (not on PyPI)
CONDA_ONLY = {"python", "pip", "graphviz"}


def _environment() -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of environment.yml's dependencies."""
    conda, pip, in_pip = [], [], False
    text = (REPO_ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not stripped.startswith("- "):
            continue
        item = stripped[2:].strip()
        indent = len(line) - len(line.lstrip())
        if item == "pip:":
            in_pip = True
        elif in_pip and indent > 4:
            pip.append(item)
        else:
            in_pip = False
            conda.append(item)
    return conda, pip


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_conda_provides_only_python_pip_and_graphviz():
    conda, _ = _environment()
    assert {_name(spec) for spec in conda} == CONDA_ONLY, conda
    assert "python=3.11" in conda  # the Python the course is tested with
    channels = (REPO_ROOT / "environment.yml").read_text().split("channels:", 1)[1]
    assert "conda-forge" in channels.split("dependencies:", 1)[0]


def test_pip_installs_the_package_as_the_makefile_does_under_the_constraints():
    _, pip = _environment()
    assert pip == ["-c constraints.txt", "-e .[dev]"], pip
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r'pip install -q -c constraints\.txt -e "\.\[dev\]"', makefile), \
        "the Makefile and environment.yml no longer install the same way"


def test_constraints_pin_exact_versions_of_declared_packages():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pins = [line.strip() for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert pins
    for pin in pins:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.+-]*", pin), \
            f"{pin!r}: constraints.txt pins exact versions (name==version)"
        assert _name(pin) in declared, f"{pin!r} is not a dependency in pyproject.toml"
    for tool in ("torch", "torchvision", "nbgrader", "selenium", "build"):
        assert tool in {_name(pin) for pin in pins}, f"{tool} is not pinned"
