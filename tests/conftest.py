"""Shared pytest set-up: an isolated TORCH_HOME holding stand-in weights.

Nothing in the test suite may reach the network or write into a user's real torch cache, so
before anything imports torchvision weights we point ``TORCH_HOME`` at a private folder inside
the repository (``.cache/torch-standin``) unless the caller (the Makefile) already chose one.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: tests never open windows

REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_STANDIN_HOME = REPO_ROOT / ".cache" / "torch-standin"
os.environ.setdefault("TORCH_HOME", str(_DEFAULT_STANDIN_HOME))
