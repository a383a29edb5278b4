"""environment.yml (conda users) and pyproject.toml (pip, the Makefile) list the same packages."""

from __future__ import annotations

import re

import tomllib

from autograder._paths import REPO_ROOT

# conda-forge names of PyPI packages where they differ
CONDA_NAME = {"torch": "pytorch", "graphviz": "python-graphviz"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def _environment_packages() -> tuple[set[str], set[str]]:
    conda, pip, in_pip = set(), set(), False
    text = (REPO_ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            in_pip = True
            continue
        if stripped.startswith("- "):
            item = stripped[2:].strip()
            indent = len(line) - len(line.lstrip())
            if in_pip and indent > 4:
                if not item.startswith("-e"):
                    pip.add(_name(item))
            else:
                in_pip = False
                conda.add(_name(item))
    return conda, pip


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda, pip = _environment_packages()
    have = {name for name in conda | pip} | {k for k, v in CONDA_NAME.items() if v in conda}
    assert wanted <= have, f"missing from environment.yml: {sorted(wanted - have)}"
    extra = conda - {CONDA_NAME.get(n, n) for n in wanted} - {"python", "pip", "graphviz"}
    assert not extra, f"in environment.yml but not in pyproject.toml: {sorted(extra)}"


def test_environment_yml_installs_the_repo_and_the_graphviz_binary():
    conda, _ = _environment_packages()
    text = (REPO_ROOT / "environment.yml").read_text()
    assert "graphviz" in conda and "- -e ." in text
    assert "python=3.11" in text
