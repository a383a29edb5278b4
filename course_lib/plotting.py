"""Figures for the labs: images, image grids, filter grids and attribution heat maps.

Every function builds its own figure (or draws into ``ax`` when one is given) and returns the
:class:`~matplotlib.figure.Figure`; none calls ``plt.show()``, so they work headless (tests, CI,
the Agg backend). New figures are created through pyplot, so in a notebook they appear at the
end of the cell like any ``plt`` plot. When a call is the last line of a cell the returned figure
is shown a second time by Jupyter; end that line with ``;`` to avoid it. In scripts and tests,
close figures with ``plt.close(fig)``.

Accepted images (``img`` arguments): a PIL image, a NumPy array ``H x W x 3`` (uint8
``0 .. 255`` or float ``0 .. 1``) or ``H x W`` (single channel), or a torch tensor
``3 x H x W`` / ``1 x 3 x H x W`` that is ImageNet-normalised (pass ``denormalize=False`` for a
``0 .. 1`` tensor) or ``H x W``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from course_lib.images import _to_rgb
from course_lib.preprocessing import tensor_to_image

__all__ = [
    "compare_attributions",
    "compare_signed_maps",
    "overlay_attribution",
    "show_filter_grid",
    "show_image",
    "show_image_grid",
    "show_trust_table",
]

ImageLike = Image.Image | np.ndarray | torch.Tensor
"""A PIL image, an ``H x W x 3`` / ``H x W`` array, or a ``(1 x) 3 x H x W`` / ``H x W`` tensor."""

AttributionLike = torch.Tensor | np.ndarray
"""An ``H x W`` map, or a ``C x H x W`` / ``1 x C x H x W`` attribution."""


# --------------------------------------------------------------------------- conversions


def _root_figure(ax: Axes) -> Figure:
    """The top-level Figure that holds ``ax`` (also when ``ax`` lives in a SubFigure)."""
    try:
        return ax.get_figure(root=True)  # matplotlib >= 3.10
    except TypeError:  # pragma: no cover - older matplotlib
        fig = ax.figure
        return getattr(fig, "figure", None) or fig


def _as_display_array(img: ImageLike, *, denormalize: bool = True) -> np.ndarray:
    """Convert an image to an ``H x W x 3`` (or ``H x W``) float array in ``0 .. 1``.

    Raises:
        TypeError: for an unsupported type.
        ValueError: for an unsupported shape.
    """
    if isinstance(img, Image.Image):
        return np.asarray(_to_rgb(img), dtype=np.float32) / 255.0
    if isinstance(img, torch.Tensor):
        if img.ndim == 2:
            return _as_display_array(img.detach().cpu().numpy(), denormalize=denormalize)
        return tensor_to_image(img, denormalize=denormalize)
    if isinstance(img, np.ndarray):
        array = img
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 3 and array.shape[-1] == 4:
            array = array[..., :3]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
            hint = (
                " (channels first? use np.transpose(a, (1, 2, 0)))"
                if array.ndim == 3 and array.shape[0] in (1, 3)
                else ""
            )
            raise ValueError(
                f"Expected an image array of shape (H, W, 3) or (H, W), got {array.shape}{hint}."
            )
        if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            return array.astype(np.float32) / (255.0 if array.dtype != np.bool_ else 1.0)
        if array.ndim == 2:
            return array.astype(np.float32)  # single-channel maps keep their range
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise TypeError(
        f"Expected a PIL image, a NumPy array or a torch tensor, got {type(img).__name__}."
    )


def _attribution_to_heatmap(attribution: AttributionLike) -> np.ndarray:
    """Reduce an attribution to a 2-d float64 ``H x W`` map (not yet normalised).

    ``H x W`` is used as is; ``1 x H x W`` and ``1 x 1 x H x W`` (e.g. Grad-CAM) are squeezed;
    ``C x H x W`` and ``1 x C x H x W`` with ``C > 1`` are reduced by summing absolute values
    over channels.
    """
    if isinstance(attribution, torch.Tensor):
        array = attribution.detach().to("cpu", torch.float64).numpy()
    elif isinstance(attribution, np.ndarray):
        array = np.asarray(attribution, dtype=np.float64)
    else:
        raise TypeError(
            f"Expected an attribution as a torch tensor or NumPy array, got "
            f"{type(attribution).__name__}."
        )
    shape = array.shape
    if array.ndim == 4:
        if shape[0] != 1:
            raise ValueError(
                f"Expected the attribution of one image, shape (1, C, H, W), got a batch "
                f"{shape}; pass attribution[i:i+1]."
            )
        array = array[0]
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.abs(array).sum(axis=0)
    if array.ndim != 2:
        raise ValueError(
            f"Expected an attribution of shape (H, W), (C, H, W) or (1, C, H, W), got {shape}."
        )
    if not np.isfinite(array).all():
        raise ValueError("The attribution contains NaN or infinite values.")
    return array


def _resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-d map to ``size = (H, W)``."""
    if heat.shape == size:
        return heat
    tensor = torch.from_numpy(np.ascontiguousarray(heat))[None, None]
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()


def _unit_range(array: np.ndarray) -> np.ndarray:
    """Min-max scale to ``0 .. 1``; a constant array becomes all zeros."""
    low, high = float(array.min()), float(array.max())
    if high - low <= 0.0:
        return np.zeros_like(array, dtype=np.float64)
    return (array - low) / (high - low)


def _prepare_heatmap(attribution: AttributionLike, size: tuple[int, int]) -> np.ndarray:
    """Attribution -> ``H x W`` map at ``size``, scaled to ``0 .. 1`` for display."""
    return _unit_range(_resize_map(_attribution_to_heatmap(attribution), size))


def _draw_image(ax: Axes, array: np.ndarray, *, cmap: str | None, title: str | None) -> None:
    if array.ndim == 2:
        ax.imshow(array, cmap=cmap)
    else:
        ax.imshow(array)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)


def _grid_shape(count: int, ncols: int | None) -> tuple[int, int]:
    if ncols is None:
        ncols = min(count, 4)
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}.")
    ncols = min(ncols, count)
    return math.ceil(count / ncols), ncols


def _check_titles(titles: Sequence[str] | None, count: int, what: str) -> None:
    if titles is not None and len(titles) != count:
        raise ValueError(f"Expected {count} {what} (one per image), got {len(titles)}.")


# --------------------------------------------------------------------------- public functions


def show_image(
    img: ImageLike,
    *,
    title: str | None = None,
    ax: Axes | None = None,
    denormalize: bool = True,
    cmap: str | None = None,
) -> Figure:
    """Show one image.

    Args:
        img: a PIL image, an ``H x W x 3`` array (uint8 ``0 .. 255`` or float ``0 .. 1``), an
            ``H x W`` map, or a ``3 x H x W`` / ``1 x 3 x H x W`` ImageNet-normalised tensor.
        title: axes title.
        ax: axes to draw into; a new figure is made when ``None``.
        denormalize: for tensors only: undo ImageNet normalisation (set ``False`` for a
            ``0 .. 1`` tensor).
        cmap: colormap for single-channel (``H x W``) images; matplotlib's default if ``None``.

    Returns:
        The figure holding the axes.
    """
    array = _as_display_array(img, denormalize=denormalize)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4), layout="constrained")
    _draw_image(ax, array, cmap=cmap, title=title)
    return _root_figure(ax)


def show_image_grid(
    images: Sequence[ImageLike],
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    suptitle: str | None = None,
    denormalize: bool = True,
    cmap: str | None = None,
) -> Figure:
    """Show several images in a grid, row by row.

    Args:
        images: images of any kind accepted by :func:`show_image` (they may differ in size).
        titles: one title per image.
        ncols: images per row; default ``min(len(images), 4)``.
        figsize: figure size in inches; default 3 inches per panel.
        suptitle: title over the whole figure.
        denormalize: for tensors: undo ImageNet normalisation.
        cmap: colormap for single-channel images.

    Returns:
        A new figure with exactly one axes per image (unused grid cells are removed).

    Raises:
        ValueError: if ``images`` is empty or ``titles`` has the wrong length.
    """
    items = list(images)
    if not items:
        raise ValueError("show_image_grid needs at least one image, got an empty sequence.")
    _check_titles(titles, len(items), "titles")
    nrows, ncols = _grid_shape(len(items), ncols)
    if figsize is None:
        figsize = (3.0 * ncols, 3.0 * nrows + (0.4 if suptitle else 0.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    flat = axes.ravel()
    for position, img in enumerate(items):
        title = titles[position] if titles is not None else None
        show_image(img, title=title, ax=flat[position], denormalize=denormalize, cmap=cmap)
    for spare in flat[len(items) :]:
        spare.remove()
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def _filter_to_array(item: np.ndarray | torch.Tensor) -> np.ndarray:
    """A filter visualisation -> ``H x W`` or ``H x W x 3`` array scaled to ``0 .. 1``."""
    if isinstance(item, torch.Tensor):
        array = item.detach().to("cpu", torch.float64).numpy()
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3 and array.shape[0] in (1, 3):
            array = np.moveaxis(array, 0, -1)
    else:
        array = np.asarray(item, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(
            f"Expected each filter image as an (H, W) or (H, W, 3) array, got {array.shape}."
        )
    return _unit_range(array)


def show_filter_grid(
    images: Sequence[Sequence[np.ndarray]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    suptitle: str | None = None,
    cmap: str | None = "gray",
) -> Figure:
    """Show filter visualisations as a table: one row per layer, one column per filter.

    Each panel is min-max scaled to ``0 .. 1`` on its own, so patterns of every layer are
    visible whatever their raw range.

    Args:
        images: ``images[r][c]`` is filter ``c`` of layer ``r``: an ``H x W`` or ``H x W x 3``
            array (tensors ``3 x H x W`` / ``1 x 3 x H x W`` are accepted too). Rows may be
            shorter than the longest; missing panels stay blank.
        row_labels: one label per row (e.g. ``["early", "middle", "late"]``), shown on the left.
        col_labels: one label per column (e.g. ``["filter 0", ...]``), shown on top.
        suptitle: title over the whole figure.
        cmap: colormap for single-channel panels.

    Returns:
        A new figure with ``rows x columns`` axes.

    Raises:
        ValueError: if there are no images, or the label counts do not match the grid.
    """
    rows = [list(row) for row in images]
    if not rows or not any(rows):
        raise ValueError("show_filter_grid needs at least one row with one image.")
    nrows, ncols = len(rows), max(len(row) for row in rows)
    if len(row_labels) != nrows:
        raise ValueError(f"Expected {nrows} row_labels (one per row), got {len(row_labels)}.")
    if len(col_labels) != ncols:
        raise ValueError(f"Expected {ncols} col_labels (one per column), got {len(col_labels)}.")
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.0 * ncols + 0.6, 2.0 * nrows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                array = _filter_to_array(row[c])
                if array.ndim == 2:
                    ax.imshow(array, cmap=cmap, vmin=0.0, vmax=1.0)
                else:
                    ax.imshow(array)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if r == 0:
                ax.set_title(col_labels[c])
            if c == 0:
                ax.set_ylabel(row_labels[r])
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


def overlay_attribution(
    img: ImageLike,
    attribution: AttributionLike,
    *,
    ax: Axes | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
    colorbar: bool = True,
    denormalize: bool = True,
) -> Figure:
    """Draw an attribution heat map over the image it explains.

    The attribution is reduced to one ``H x W`` map (``C x H x W`` and ``1 x C x H x W`` by
    summing absolute values over channels; single-channel maps such as Grad-CAM's
    ``1 x 1 x h x w`` are used as they are), resized bilinearly to the image size when it
    differs, and min-max scaled to ``0 .. 1``. For pixels to line up, pass the image the model
    saw (e.g. the preprocessed ``1 x 3 x 224 x 224`` tensor), not the uncropped photograph.

    Args:
        img: the image underneath, any kind accepted by :func:`show_image`.
        attribution: ``H x W``, ``C x H x W`` or ``1 x C x H x W`` tensor or array.
        ax: axes to draw into; a new figure is made when ``None``.
        alpha: opacity of the heat map, ``0 .. 1``.
        cmap: colormap of the heat map.
        title: axes title.
        colorbar: add a colorbar for the (scaled) attribution.
        denormalize: for tensor images: undo ImageNet normalisation.

    Returns:
        The figure holding the axes.

    Raises:
        ValueError: for a bad ``alpha``, an attribution batch of several images, an
            unsupported shape, or non-finite attribution values.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}.")
    base = _as_display_array(img, denormalize=denormalize)
    heat = _prepare_heatmap(attribution, base.shape[:2])
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.imshow(base, cmap="gray" if base.ndim == 2 else None)
    mappable = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    figure = _root_figure(ax)
    if colorbar:
        figure.colorbar(mappable, ax=ax, label="attribution (scaled to 0..1)")
    return figure


def compare_attributions(
    img: ImageLike,
    attributions: Mapping[str, AttributionLike],
    *,
    ncols: int | None = None,
    title: str | None = None,
    standin_note: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    denormalize: bool = True,
) -> Figure:
    """Compare attribution methods side by side on one image.

    The first panel shows the image (titled ``"Original"``); then one panel per method shows
    its heat map over the image, titled with the method's name (see
    :func:`overlay_attribution` for how each map is reduced and scaled).

    Args:
        img: the image the attributions explain, any kind accepted by :func:`show_image`.
        attributions: ``{method name: attribution}``, in display order.
        ncols: panels per row; default all panels in one row, at most 4.
        title: title over the whole figure.
        standin_note: a line shown under the title, e.g. ``"stand-in weights: not a real
            model"``, so that pictures made without the real weights say so.
        alpha: opacity of the heat maps (1.0 shows the maps alone).
        cmap: colormap of the heat maps.
        denormalize: for tensor images: undo ImageNet normalisation.

    Returns:
        A new figure with ``1 + len(attributions)`` axes.

    Raises:
        ValueError: if ``attributions`` is empty (and see :func:`overlay_attribution`).
    """
    if not attributions:
        raise ValueError(
            "compare_attributions needs at least one attribution, e.g. "
            "{'Integrated Gradients': attr}; got an empty mapping."
        )
    base = _as_display_array(img, denormalize=denormalize)
    count = 1 + len(attributions)
    nrows, ncols = _grid_shape(count, ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.2 * ncols, 3.2 * nrows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    flat = axes.ravel()
    _draw_image(flat[0], base, cmap="gray", title="Original")
    for ax, (name, attribution) in zip(flat[1:], attributions.items(), strict=False):
        overlay_attribution(
            base, attribution, ax=ax, alpha=alpha, cmap=cmap, title=str(name), colorbar=False
        )
    for spare in flat[count:]:
        spare.remove()
    lines = [text for text in (title, standin_note) if text]
    if lines:
        fig.suptitle("\n".join(lines))
    return fig


def _signed_map(attribution: AttributionLike) -> np.ndarray:
    """A one-channel map (``H x W``, ``1 x H x W``, ``1 x 1 x H x W``) as a 2-d float64 array."""
    if isinstance(attribution, torch.Tensor):
        array = attribution.detach().to("cpu", torch.float64).numpy()
    elif isinstance(attribution, np.ndarray):
        array = np.asarray(attribution, dtype=np.float64)
    else:
        raise TypeError(
            f"Expected a map as a torch tensor or NumPy array, got {type(attribution).__name__}."
        )
    shape = array.shape
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"Expected a one-channel map of shape (H, W), (1, H, W) or (1, 1, H, W), got {shape}; "
            "a signed map keeps one value per pixel, so reduce the channels first."
        )
    if not np.isfinite(array).all():
        raise ValueError("The map contains NaN or infinite values.")
    return array


def compare_signed_maps(
    img: ImageLike,
    maps: Mapping[str, AttributionLike],
    *,
    title: str | None = None,
    standin_note: str | None = None,
    label: str = "value",
    cmap: str = "RdBu_r",
    alpha: float = 0.75,
    denormalize: bool = True,
) -> Figure:
    """Signed maps over the image they explain, with a diverging colour map centred at 0.

    Unlike :func:`compare_attributions` (which scales each map to ``0 .. 1``, so that its
    smallest value looks like "nothing"), the values keep their sign and size: every panel
    shares the symmetric colour limits ``-m .. m``, ``m`` the largest absolute value of all the
    maps, so 0 is white (with the default ``RdBu_r``), positive values red, negative values blue,
    and one colour bar (labelled ``label``) reads for all panels. Maps are resized bilinearly to
    the image size when they differ.

    Args:
        img: the image the maps explain, any kind accepted by :func:`show_image`.
        maps: ``{name: H x W map}`` (``1 x H x W`` and ``1 x 1 x H x W`` are squeezed), in
            display order.
        title: title over the whole figure.
        standin_note: a line shown under the title (see :func:`compare_attributions`).
        label: the colour bar's label, e.g. ``"drop of p(target)"``.
        cmap: a diverging colormap.
        alpha: opacity of the maps over the grey image (1.0 shows the maps alone).
        denormalize: for tensor images: undo ImageNet normalisation.

    Returns:
        A new figure with ``1 + len(maps)`` image panels and a colour bar.

    Raises:
        ValueError: if ``maps`` is empty, a map has several channels or non-finite values, or
            ``alpha`` is not in ``0 .. 1``.
    """
    if not maps:
        raise ValueError("compare_signed_maps needs at least one map; got an empty mapping.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}.")
    base = _as_display_array(img, denormalize=denormalize)
    grey = base if base.ndim == 2 else base.mean(axis=-1)
    arrays = {str(name): _resize_map(_signed_map(value), grey.shape)
              for name, value in maps.items()}
    limit = max(float(np.abs(array).max()) for array in arrays.values()) or 1.0
    count = 1 + len(arrays)
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count + 0.8, 3.8), squeeze=False,
                             layout="constrained")
    flat = axes.ravel()
    _draw_image(flat[0], base, cmap="gray", title="Original")
    mappable = None
    for ax, (name, array) in zip(flat[1:], arrays.items(), strict=True):
        ax.imshow(grey, cmap="gray")
        mappable = ax.imshow(array, cmap=cmap, alpha=alpha, vmin=-limit, vmax=limit)
        ax.set_axis_off()
        ax.set_title(name)
    fig.colorbar(mappable, ax=list(flat[1:]), label=label, shrink=0.9)
    lines = [text for text in (title, standin_note) if text]
    if lines:
        fig.suptitle("\n".join(lines))
    return fig


# --------------------------------------------------------------------------- trust table

_DIRECTIONS = ("higher", "lower")


def show_trust_table(
    scores: Mapping[str, Mapping[str, float | None]],
    better: Mapping[str, str],
    *,
    title: str | None = None,
    standin_note: str | None = None,
    fmt: str = "{:.2f}",
    cmap: str = "RdYlGn",
) -> Figure:
    """A table of test results, one row per explanation method and one column per test,
    each cell coloured by how well the method does on that test compared with the others.

    Colours are relative within a column: the best method's cell gets the colour map's top
    (green with ``RdYlGn``), the worst its bottom (red), the others in between by value (a
    column whose values are all equal is drawn in the middle colour). ``better`` says which
    end is best, since the tests disagree (a randomisation check's rank correlation should be
    *low*, an insertion curve's area *high*). Each cell shows its value; a missing value
    (``None``, NaN, or a test absent from a method's row) is drawn grey and reads "n/a".

    Args:
        scores: ``{method: {test: value}}``, rows in display order (e.g.
            ``{"Saliency": {"randomisation": 0.12, "deletion AUC": 0.08}, ...}``).
        better: ``{test: "higher" | "lower"}``, columns in display order; every test of
            ``scores`` must be here.
        title: title over the table.
        standin_note: a line shown under the title (see :func:`compare_attributions`).
        fmt: format of the values, e.g. ``"{:.0%}"``.
        cmap: a colour map running from bad to good.

    Returns:
        A new figure holding the table.

    Raises:
        ValueError: if ``scores`` or ``better`` is empty, a direction is neither "higher" nor
            "lower", or a method has a test that ``better`` does not name.
    """
    if not scores:
        raise ValueError("show_trust_table needs at least one method; got an empty mapping.")
    if not better:
        raise ValueError("show_trust_table needs at least one test in `better`; got none.")
    wrong = {test: way for test, way in better.items() if way not in _DIRECTIONS}
    if wrong:
        raise ValueError(f"each direction must be 'higher' or 'lower'; got {wrong}.")
    ways = {str(test): way for test, way in better.items()}
    tests = list(ways)
    methods = [str(m) for m in scores]
    values = np.full((len(methods), len(tests)), np.nan)
    for i, (method, row) in enumerate(scores.items()):
        named = {str(test): value for test, value in row.items()}
        unknown = sorted(set(named) - set(tests))
        if unknown:
            raise ValueError(f"method {method!r} has tests {unknown} that `better` does not "
                             f"name; `better` has {tests}.")
        for j, test in enumerate(tests):
            if named.get(test) is not None:
                values[i, j] = float(named[test])
    goodness = np.full_like(values, np.nan)
    for j, test in enumerate(tests):
        column = values[:, j]
        known = ~np.isnan(column)
        if not known.any():
            continue
        low, high = column[known].min(), column[known].max()
        scaled = np.full_like(column, 0.5) if high == low else (column - low) / (high - low)
        goodness[:, j] = scaled if ways[test] == "higher" else 1.0 - scaled
    colours = plt.get_cmap(cmap)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(tests), 0.8 + 0.45 * len(methods)),
                           layout="constrained")
    for i in range(len(methods)):
        for j in range(len(tests)):
            known = not np.isnan(values[i, j])
            face = colours(goodness[i, j]) if known else (0.85, 0.85, 0.85, 1.0)
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=face, edgecolor="white",
                                       linewidth=2))
            ax.text(j + 0.5, i + 0.5, fmt.format(values[i, j]) if known else "n/a",
                    ha="center", va="center", fontsize=9)
    ax.set_xlim(0, len(tests))
    ax.set_ylim(len(methods), 0)
    ax.set_xticks(np.arange(len(tests)) + 0.5,
                  [f"{t}\n({ways[t]} is better)" for t in tests], fontsize=8)
    ax.set_yticks(np.arange(len(methods)) + 0.5, methods)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    lines = [text for text in (title, standin_note) if text]
    if lines:
        fig.suptitle("\n".join(lines))
    return fig
