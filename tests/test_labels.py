"""Tests for course_lib.labels: offline ImageNet class names and lookups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from course_lib.labels import (
    LabelIndexError,
    imagenet_labels,
    index_to_label,
    label_to_index,
)

TORCHVISION_CATEGORIES = torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"]


def test_imagenet_labels_has_1000_entries_in_torchvision_order():
    labels = imagenet_labels()
    assert isinstance(labels, dict)
    assert sorted(labels) == list(range(1000))
    assert [labels[i] for i in range(1000)] == list(TORCHVISION_CATEGORIES)


@pytest.mark.parametrize(
    ("index", "name"),
    [(0, "tench"), (1, "goldfish"), (281, "tabby"), (285, "Egyptian cat"), (954, "banana")],
)
def test_known_entries(index, name):
    assert imagenet_labels()[index] == name
    assert index_to_label(index) == name
    assert label_to_index(name) == index


def test_returned_mapping_cannot_corrupt_the_cache():
    labels = imagenet_labels()
    labels[0] = "not a fish"
    del labels[1]
    fresh = imagenet_labels()
    assert fresh[0] == "tench"
    assert fresh[1] == "goldfish"
    assert index_to_label(0) == "tench"


@pytest.mark.parametrize(
    "index",
    [281, np.int64(281), np.int32(281), np.array(281), torch.tensor(281), torch.tensor(281).int()],
)
def test_index_to_label_accepts_int_like_values(index):
    assert index_to_label(index) == "tabby"


def test_index_to_label_accepts_argmax_of_logits():
    logits = torch.zeros(1, 1000)
    logits[0, 954] = 5.0
    assert index_to_label(logits.argmax()) == "banana"


@pytest.mark.parametrize("index", [-1, 1000, 10**6])
def test_index_out_of_range_names_the_valid_range(index):
    with pytest.raises(LabelIndexError, match=r"0\.\.999") as info:
        index_to_label(index)
    assert isinstance(info.value, IndexError)
    assert isinstance(info.value, ValueError)
    assert str(index) in str(info.value)


@pytest.mark.parametrize(
    "index", [2.0, "281", True, torch.tensor([281]), torch.tensor(281.0), None]
)
def test_index_to_label_rejects_non_integers(index):
    with pytest.raises(TypeError, match="index"):
        index_to_label(index)


@pytest.mark.parametrize(
    "name", ["tabby", "TABBY", "  Tabby  ", "egyptian cat", "Egyptian_cat", "Egyptian  cat"]
)
def test_label_to_index_is_case_and_underscore_insensitive(name):
    expected = 281 if name.strip().lower() == "tabby" else 285
    assert label_to_index(name) == expected


def test_label_to_index_round_trips_every_name():
    # Exact spelling wins over case-insensitive matches, so even "Cardigan"/"cardigan" round-trip.
    for index, name in imagenet_labels().items():
        assert label_to_index(name) == index


def test_duplicated_name_returns_exact_case_match_or_first_index():
    # torchvision lists "Cardigan" (corgi, 264) and "cardigan" (sweater, 474).
    assert index_to_label(264) == "Cardigan"
    assert index_to_label(474) == "cardigan"
    assert label_to_index("Cardigan") == 264
    assert label_to_index("cardigan") == 474
    assert label_to_index("CARDIGAN") == 264  # no exact-case match: first index wins


def test_crane_and_maillot_are_disambiguated_in_torchvision_names():
    # The JSON file used by the original lab had "crane" and "maillot" twice each.
    assert label_to_index("crane") == 517
    assert label_to_index("crane bird") == 134
    assert label_to_index("maillot") == 638
    assert label_to_index("maillot tank suit") == 639


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError) as info:
        label_to_index("tabbby")
    message = str(info.value)
    assert "'tabbby' is not an ImageNet class name" in message
    assert "'tabby'" in message


def test_unknown_name_without_close_match_points_to_the_full_list():
    with pytest.raises(KeyError, match="imagenet_labels"):
        label_to_index("qqqqqqqqqqqq")


def test_label_to_index_rejects_non_strings():
    with pytest.raises(TypeError, match="index_to_label"):
        label_to_index(281)
