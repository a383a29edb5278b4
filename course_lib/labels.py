"""ImageNet class names, offline.

The original lab downloaded ``imagenet_class_index.json`` and built ``{index: name}`` from it.
Here the same 1000 names come from the metadata that ships with torchvision (no network, no
weights), so label lookups work on any machine.

torchvision's names use spaces instead of the JSON file's underscores (``"Egyptian cat"``, not
``"Egyptian_cat"``) and disambiguate two of the JSON file's duplicates (``"crane"`` / ``"crane
bird"``, ``"maillot"`` / ``"maillot tank suit"``). One name still occurs twice when case is
ignored: ``"Cardigan"`` (index 264, the Welsh corgi) and ``"cardigan"`` (index 474, the sweater).
"""

from __future__ import annotations

import difflib
import functools
import numbers
import re

import numpy as np
import torch

__all__ = [
    "NUM_IMAGENET_CLASSES",
    "LabelIndexError",
    "imagenet_labels",
    "index_to_label",
    "label_to_index",
]

NUM_IMAGENET_CLASSES = 1000
"""Number of ImageNet-1k classes (valid indices are ``0 .. 999``)."""


class LabelIndexError(IndexError, ValueError):
    """A class index outside ``0 .. 999`` (both an ``IndexError`` and a ``ValueError``)."""


@functools.lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    """The 1000 class names in index order, read once from torchvision's weight metadata."""
    from torchvision.models import ResNet34_Weights

    categories = tuple(ResNet34_Weights.IMAGENET1K_V1.meta["categories"])
    if len(categories) != NUM_IMAGENET_CLASSES:  # pragma: no cover - guards a torchvision change
        raise RuntimeError(
            f"Expected {NUM_IMAGENET_CLASSES} ImageNet categories in torchvision's metadata, "
            f"got {len(categories)}; check the installed torchvision version."
        )
    return categories


def _normalise_name(name: str) -> str:
    """Case-folded name with underscores as spaces and runs of whitespace collapsed."""
    return re.sub(r"\s+", " ", name.replace("_", " ")).strip().casefold()


@functools.lru_cache(maxsize=1)
def _reverse_index() -> tuple[dict[str, int], dict[str, int]]:
    """Two lookups, ``exact name -> index`` and ``normalised name -> index``, first index wins."""
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for index, name in enumerate(_categories()):
        exact.setdefault(name, index)
        folded.setdefault(_normalise_name(name), index)
    return exact, folded


def imagenet_labels() -> dict[int, str]:
    """Return the ImageNet-1k class names as ``{index: name}``.

    The names are read from torchvision's ``ResNet34_Weights.IMAGENET1K_V1.meta["categories"]``
    (no download) and cached; every call returns a fresh copy, so changing the returned dict
    cannot corrupt later lookups.

    Returns:
        A dict with the 1000 keys ``0 .. 999``, e.g. ``0 -> "tench"``, ``281 -> "tabby"``.
    """
    return dict(enumerate(_categories()))


def _as_index(index: object) -> int:
    """Turn a Python int, NumPy integer or 0-d integer tensor into a Python int."""
    if isinstance(index, torch.Tensor):
        if index.ndim != 0 or index.dtype.is_floating_point or index.dtype.is_complex:
            raise TypeError(
                "Expected a class index as an int or a 0-d integer tensor, got a tensor of "
                f"shape {tuple(index.shape)} and dtype {index.dtype}; pick one element, e.g. "
                "logits.argmax().item() or index[0]."
            )
        if index.dtype == torch.bool:
            raise TypeError("Expected an integer class index, got a bool tensor.")
        return int(index.item())
    if isinstance(index, np.ndarray) and index.ndim == 0:
        index = index[()]
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
        raise TypeError(
            f"Expected an integer class index, got {type(index).__name__} {index!r}; "
            "convert with int(...) if it is a whole number."
        )
    return int(index)


def index_to_label(index: int) -> str:
    """Return the ImageNet class name for a class index.

    Args:
        index: a class index in ``0 .. 999``: a Python int, a NumPy integer or a 0-d integer
            tensor (such as ``logits.argmax()``). Negative indices are rejected rather than
            counted from the end.

    Returns:
        The class name, e.g. ``index_to_label(281) == "tabby"``.

    Raises:
        TypeError: if ``index`` is not an integer (a float, a string, a tensor with elements).
        LabelIndexError: (an ``IndexError`` and ``ValueError``) if it is outside ``0 .. 999``.
    """
    value = _as_index(index)
    categories = _categories()
    if not 0 <= value < len(categories):
        raise LabelIndexError(
            f"ImageNet class index must be in 0..{len(categories) - 1}, got {value}; "
            "did you pass a score instead of an index (use argmax or topk)?"
        )
    return categories[value]


def label_to_index(name: str) -> int:
    """Return the class index for an ImageNet class name (reverse of :func:`index_to_label`).

    Matching ignores case, surrounding whitespace and underscores versus spaces, so the names of
    the original ``imagenet_class_index.json`` (``"Egyptian_cat"``) work too. It is otherwise an
    exact match: ``"cat"`` is not ``"tabby"``.

    Duplicated names: when several classes share a name once case is ignored, a name that
    matches one of them with exactly the same spelling and case returns that class, otherwise the
    first (lowest) index is returned. In torchvision's list this concerns ``"Cardigan"`` (264, a
    corgi) and ``"cardigan"`` (474, a sweater): ``"CARDIGAN"`` gives 264.

    Args:
        name: a class name such as ``"tabby"`` or ``"Egyptian cat"``.

    Returns:
        The class index in ``0 .. 999``.

    Raises:
        TypeError: if ``name`` is not a string.
        KeyError: if no class has that name; the message suggests close matches.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"Expected a class name as a string, got {type(name).__name__}; "
            "for an index use index_to_label instead."
        )
    exact, folded = _reverse_index()
    spaced = re.sub(r"\s+", " ", name.replace("_", " ")).strip()
    if spaced in exact:
        return exact[spaced]
    key = _normalise_name(name)
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=5, cutoff=0.6)
    hint = (
        "close matches: " + ", ".join(repr(_categories()[folded[c]]) for c in close)
        if close
        else "no close matches; see imagenet_labels() for all 1000 names"
    )
    raise KeyError(f"{name!r} is not an ImageNet class name; {hint}.")
