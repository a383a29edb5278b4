"""The package's public surface: everything each module exports is re-exported at the top."""

from __future__ import annotations

import importlib

import pytest

import course_lib

MODULES = ["labels", "images", "preprocessing", "models", "hooks", "plotting", "explain"]


@pytest.mark.parametrize("name", MODULES)
def test_module_exports_are_reexported(name):
    module = importlib.import_module(f"course_lib.{name}")
    for symbol in module.__all__:
        if symbol == "STANDIN_MARKER":
            continue  # an implementation detail of the stand-in writer
        assert getattr(course_lib, symbol) is getattr(module, symbol), f"{name}.{symbol}"
        assert symbol in course_lib.__all__, symbol


def test_all_names_exist():
    missing = [s for s in course_lib.__all__ if not hasattr(course_lib, s)]
    assert not missing
    assert len(set(course_lib.__all__)) == len(course_lib.__all__)
