"""Tests for course_lib.plotting: every helper returns a Figure, headless, with labelled axes."""

from __future__ import annotations

import matplotlib.pyplot as plt  # the Agg backend is selected in conftest.py
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from course_lib.plotting import (
    compare_attributions,
    compare_signed_maps,
    overlay_attribution,
    show_filter_grid,
    show_image,
    show_image_grid,
    show_trust_table,
)
from course_lib.preprocessing import normalize


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _pil(width: int = 8, height: int = 6) -> Image.Image:
    return Image.new("RGB", (width, height), (200, 50, 10))


def _normalised(height: int = 6, width: int = 8) -> torch.Tensor:
    x = torch.zeros(1, 3, height, width)
    x[:, 0] = 1.0  # pure red on the 0..1 scale
    return normalize(x)


def _shown_array(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


# --------------------------------------------------------------------------- show_image


@pytest.mark.parametrize(
    "img",
    [
        _pil(),
        np.full((6, 8, 3), 255, dtype=np.uint8),
        np.full((6, 8, 3), 0.5, dtype=np.float64),
        np.zeros((6, 8)),
        _normalised(),
        _normalised()[0],
        torch.rand(6, 8),
    ],
    ids=["pil", "uint8", "float", "2d-array", "1x3xHxW", "3xHxW", "2d-tensor"],
)
def test_show_image_accepts_every_kind(img):
    fig = show_image(img, title="picture")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "picture"
    shown = _shown_array(ax)
    assert shown.shape[:2] == (6, 8)
    if shown.ndim == 3:  # colour images are shown on the 0..1 scale
        assert shown.shape[2] == 3
        assert shown.min() >= 0.0 and shown.max() <= 1.0


def test_show_image_denormalises_tensors():
    fig = show_image(_normalised())
    shown = _shown_array(fig.axes[0])
    np.testing.assert_allclose(shown[0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    fig2 = show_image(torch.full((3, 2, 2), 0.25), denormalize=False)
    np.testing.assert_allclose(_shown_array(fig2.axes[0]), 0.25)


def test_show_image_scales_pil_and_uint8_to_unit_range():
    shown = _shown_array(show_image(_pil()).axes[0])
    np.testing.assert_allclose(shown[0, 0], [200 / 255, 50 / 255, 10 / 255], atol=1e-6)


def test_show_image_draws_into_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    returned = show_image(_pil(), ax=right, title="right")
    assert returned is fig
    assert right.get_title() == "right"
    assert not left.get_images() and len(right.get_images()) == 1


@pytest.mark.parametrize(
    ("img", "error", "pattern"),
    [
        (np.zeros((3, 6, 8)), ValueError, "channels first"),
        (np.zeros((2, 2, 2, 3)), ValueError, r"\(H, W, 3\)"),
        (torch.zeros(2, 3, 4, 4), ValueError, r"\(1, 3, H, W\)"),
        ([[0, 1], [1, 0]], TypeError, "PIL image"),
    ],
)
def test_show_image_rejects_unsupported_inputs(img, error, pattern):
    with pytest.raises(error, match=pattern):
        show_image(img)


# --------------------------------------------------------------------------- show_image_grid


def test_show_image_grid_layout_and_titles():
    images = [_pil(), _normalised(), np.zeros((5, 5, 3)), torch.rand(4, 4), _pil(3, 3)]
    titles = ["a", "b", "c", "d", "e"]
    fig = show_image_grid(images, titles=titles, ncols=2, suptitle="grid")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 5  # the sixth grid cell is removed
    assert [ax.get_title() for ax in fig.axes] == titles
    assert fig.get_suptitle() == "grid"
    rows = {ax.get_subplotspec().rowspan.start for ax in fig.axes}
    assert rows == {0, 1, 2}


def test_show_image_grid_defaults_and_figsize():
    fig = show_image_grid([_pil()] * 3, figsize=(6, 2))
    assert len(fig.axes) == 3
    assert tuple(fig.get_size_inches()) == (6, 2)
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0}


def test_show_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one image"):
        show_image_grid([])
    with pytest.raises(ValueError, match="Expected 2 titles"):
        show_image_grid([_pil(), _pil()], titles=["only one"])
    with pytest.raises(ValueError, match="ncols"):
        show_image_grid([_pil()], ncols=0)


# --------------------------------------------------------------------------- show_filter_grid


def test_show_filter_grid_labels_rows_and_columns():
    rng = np.random.default_rng(0)
    rows = [
        [rng.normal(size=(5, 5)) * 100 for _ in range(3)],  # any range: scaled per panel
        [rng.random((5, 5, 3)) for _ in range(3)],
        [torch.rand(3, 5, 5) for _ in range(2)],  # a shorter row leaves a blank panel
    ]
    fig = show_filter_grid(
        rows,
        row_labels=["early", "middle", "late"],
        col_labels=["filter 0", "filter 1", "filter 2"],
        suptitle="filters",
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 9
    grid = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title() for ax in grid[0]] == ["filter 0", "filter 1", "filter 2"]
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["early", "middle", "late"]
    assert fig.get_suptitle() == "filters"
    assert not grid[2, 2].get_images()
    first = _shown_array(grid[0, 0])
    assert first.min() == pytest.approx(0.0) and first.max() == pytest.approx(1.0)
    assert _shown_array(grid[2, 0]).shape == (5, 5, 3)


def test_show_filter_grid_checks_label_counts():
    rows = [[np.zeros((2, 2))] * 2]
    with pytest.raises(ValueError, match="Expected 1 row_labels"):
        show_filter_grid(rows, row_labels=["a", "b"], col_labels=["x", "y"])
    with pytest.raises(ValueError, match="Expected 2 col_labels"):
        show_filter_grid(rows, row_labels=["a"], col_labels=["x"])
    with pytest.raises(ValueError, match="at least one"):
        show_filter_grid([], row_labels=[], col_labels=[])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        show_filter_grid([[np.zeros((2, 2, 2))]], row_labels=["a"], col_labels=["x"])


# --------------------------------------------------------------------------- overlay_attribution


def test_overlay_sums_abs_over_channels_and_scales_to_unit_range():
    attribution = torch.zeros(1, 3, 6, 8)
    attribution[0, 0, 0, 0] = -4.0  # |-4| + 0 + 0 = 4: the largest after abs
    attribution[0, 1, 5, 7] = 2.0
    fig = overlay_attribution(_normalised(), attribution, title="IG")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "IG"
    base, heat = ax.get_images()
    assert heat.get_alpha() == 0.5
    heat_values = np.asarray(heat.get_array())
    assert heat_values.shape == (6, 8)
    assert heat_values[0, 0] == pytest.approx(1.0)
    assert heat_values[5, 7] == pytest.approx(0.5)
    assert heat_values[3, 3] == pytest.approx(0.0)
    assert len(fig.axes) == 2  # image axes + colorbar


def test_overlay_resizes_a_small_map_to_the_image():
    cam = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # 1 x 1 x 2 x 2, like Grad-CAM
    fig = overlay_attribution(_pil(16, 12), cam, colorbar=False, alpha=0.3, cmap="viridis")
    assert len(fig.axes) == 1
    heat = fig.axes[0].get_images()[1]
    values = np.asarray(heat.get_array())
    assert values.shape == (12, 16)
    assert values.min() == pytest.approx(0.0) and values.max() == pytest.approx(1.0)
    assert values[0, 0] < values[0, -1] < values[-1, 0] < values[-1, -1]  # bilinear ordering
    assert heat.get_cmap().name == "viridis"


def test_overlay_accepts_numpy_maps_and_constant_maps():
    fig = overlay_attribution(np.zeros((4, 4, 3)), np.full((4, 4), 7.0), colorbar=False)
    heat = np.asarray(fig.axes[0].get_images()[1].get_array())
    assert np.all(heat == 0.0)


def test_overlay_draws_into_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    returned = overlay_attribution(_pil(), np.ones((6, 8)), ax=axes[1], colorbar=False)
    assert returned is fig
    assert len(axes[1].get_images()) == 2 and not axes[0].get_images()


@pytest.mark.parametrize(
    ("attribution", "kwargs", "pattern"),
    [
        (torch.zeros(2, 3, 6, 8), {}, "batch"),
        (torch.zeros(6), {}, r"\(H, W\)"),
        (torch.full((6, 8), float("nan")), {}, "NaN"),
        (torch.zeros(6, 8), {"alpha": 1.5}, "alpha"),
    ],
)
def test_overlay_rejects_bad_input(attribution, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        overlay_attribution(_pil(), attribution, **kwargs)


# --------------------------------------------------------------------------- compare_attributions


def test_compare_attributions_panels_and_titles():
    attributions = {
        "Saliency": torch.rand(1, 3, 6, 8),
        "Integrated Gradients": np.random.default_rng(1).normal(size=(3, 6, 8)),
        "Grad-CAM": torch.rand(1, 1, 3, 4),
    }
    fig = compare_attributions(_normalised(), attributions, title="cat")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["Original", *attributions]
    assert len(fig.axes[0].get_images()) == 1
    assert all(len(ax.get_images()) == 2 for ax in fig.axes[1:])
    assert fig.get_suptitle() == "cat"


def test_compare_attributions_shows_the_standin_note():
    note = "stand-in weights: not a real model"
    fig = compare_attributions(_pil(), {"A": np.ones((6, 8))}, title="demo", standin_note=note)
    assert fig.get_suptitle() == f"demo\n{note}"
    fig2 = compare_attributions(_pil(), {"A": np.ones((6, 8))}, standin_note=note)
    assert fig2.get_suptitle() == note


def test_compare_attributions_wraps_rows():
    maps = {f"m{i}": np.ones((6, 8)) for i in range(4)}
    fig = compare_attributions(_pil(), maps, ncols=2)
    assert len(fig.axes) == 5  # 3 x 2 grid, one spare cell removed
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1, 2}


def test_compare_attributions_needs_an_attribution():
    with pytest.raises(ValueError, match="at least one attribution"):
        compare_attributions(_pil(), {})


# --------------------------------------------------------------------------- compare_signed_maps


def test_compare_signed_maps_keeps_signs_with_symmetric_shared_limits():
    drop = np.array([[0.2, -0.5], [0.0, 0.1]])
    other = torch.tensor([[0.05, 0.0], [-0.1, 0.3]])
    fig = compare_signed_maps(_normalised(), {"mine": drop, "other": other[None, None]},
                              title="occlusion", standin_note="stand-in", label="drop of p")
    image_axes = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in image_axes] == ["Original", "mine", "other"]
    for ax in image_axes[1:]:
        overlay = ax.get_images()[1]
        assert overlay.get_clim() == (-0.5, 0.5)  # centred at 0, the largest |value| of all maps
        assert overlay.get_cmap().name == "RdBu_r"
    shown = np.asarray(image_axes[1].get_images()[1].get_array())
    assert shown.shape == (6, 8) and shown.min() < 0 < shown.max()  # resized, signs kept
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "drop of p"]
    assert len(colorbars) == 1
    assert fig.get_suptitle() == "occlusion\nstand-in"


def test_compare_signed_maps_draws_an_all_zero_map():
    fig = compare_signed_maps(_pil(), {"zero": np.zeros((6, 8))})
    assert fig.axes[1].get_images()[1].get_clim() == (-1.0, 1.0)


@pytest.mark.parametrize(
    "maps, kwargs, pattern",
    [
        ({}, {}, "at least one map"),
        ({"rgb": np.ones((3, 6, 8))}, {}, "one-channel map"),
        ({"nan": np.full((6, 8), np.nan)}, {}, "NaN"),
        ({"a": np.ones((6, 8))}, {"alpha": 2.0}, "alpha"),
    ],
)
def test_compare_signed_maps_rejects_bad_input(maps, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        compare_signed_maps(_pil(), maps, **kwargs)


# --------------------------------------------------------------------------- trust table


def _cells(fig: Figure) -> dict[str, tuple]:
    """Text of each cell -> its face colour (every value in these tests is distinct)."""
    ax = fig.axes[0]
    faces = {(round(p.get_x()), round(p.get_y())): p.get_facecolor() for p in ax.patches}
    return {t.get_text(): faces[(int(t.get_position()[0]), int(t.get_position()[1]))]
            for t in ax.texts}


def test_trust_table_colours_each_column_by_its_own_direction():
    cmap = plt.get_cmap("RdYlGn")
    fig = show_trust_table(
        {"Saliency": {"randomisation": 0.10, "insertion": 0.30},
         "Guided Backprop": {"randomisation": 0.90, "insertion": 0.50},
         "Grad-CAM": {"randomisation": 0.20, "insertion": None}},
        {"randomisation": "lower", "insertion": "higher"}, title="Trust", fmt="{:.2f}")
    cells = _cells(fig)
    assert cells["0.10"] == pytest.approx(cmap(1.0)) and cells["0.90"] == pytest.approx(cmap(0.0))
    assert cells["0.20"] == pytest.approx(cmap(0.875))  # lower is better: 1 - 0.1 / 0.8
    assert cells["0.50"] == pytest.approx(cmap(1.0)) and cells["0.30"] == pytest.approx(cmap(0.0))
    assert cells["n/a"] == pytest.approx((0.85, 0.85, 0.85, 1.0))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Saliency", "Guided Backprop",
                                                            "Grad-CAM"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "randomisation\n(lower is better)", "insertion\n(higher is better)"]
    assert fig._suptitle.get_text() == "Trust"
    plt.close(fig)


def test_trust_table_draws_an_equal_column_in_the_middle_and_a_missing_test_as_na():
    cmap = plt.get_cmap("RdYlGn")
    fig = show_trust_table({"A": {"pointing": 1.0}, "B": {"pointing": 1.0, "energy": 0.4}},
                           {"pointing": "higher", "energy": "higher"}, fmt="{:.1f}")
    ax = fig.axes[0]
    faces = [p.get_facecolor() for p in ax.patches]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1.0", "n/a", "1.0", "0.4"]
    assert faces[0] == pytest.approx(cmap(0.5)) and faces[3] == pytest.approx(cmap(0.5))
    plt.close(fig)


def test_trust_table_rejects_what_it_cannot_draw():
    with pytest.raises(ValueError, match="at least one method"):
        show_trust_table({}, {"a": "higher"})
    with pytest.raises(ValueError, match="at least one test"):
        show_trust_table({"A": {}}, {})
    with pytest.raises(ValueError, match="'higher' or 'lower'.*'up'"):
        show_trust_table({"A": {"a": 1.0}}, {"a": "up"})
    with pytest.raises(ValueError, match=r"method 'A' has tests \['b'\].*has \['a'\]"):
        show_trust_table({"A": {"a": 1.0, "b": 2.0}}, {"a": "higher"})
