"""Tests for course_lib.preprocessing: ImageNet transforms, (de)normalisation, top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from course_lib.images import sample_image
from course_lib.preprocessing import (
    HELPER_MARK,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Prediction,
    denormalize,
    imagenet_transform,
    made_by_course_lib,
    normalize,
    postprocess,
    preprocess_image,
    tensor_to_image,
)

# (128 / 255 - mean) / std, worked out by hand for a uniform grey (128, 128, 128) image.
GREY_128_NORMALISED = (0.074065, 0.205182, 0.426492)


def test_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_imagenet_transform_steps_and_parameters():
    pipeline = imagenet_transform()
    steps = pipeline.transforms
    assert [type(s) for s in steps] == [
        transforms.Resize,
        transforms.CenterCrop,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert steps[0].size == 256
    assert tuple(steps[1].size) == (224, 224)
    assert tuple(steps[3].mean) == IMAGENET_MEAN
    assert tuple(steps[3].std) == IMAGENET_STD


def test_imagenet_transform_marks_its_pipeline_as_the_helpers():
    """Lab 1's Task 2 gives no points for this pipeline: its tests read the mark."""
    import copy
    import pickle

    pipeline = imagenet_transform(resize=40, crop=32)
    assert made_by_course_lib(pipeline) == "imagenet_transform"
    assert made_by_course_lib(copy.deepcopy(pipeline)) == "imagenet_transform"
    assert made_by_course_lib(pickle.loads(pickle.dumps(pipeline))) == "imagenet_transform"
    assert made_by_course_lib(transforms.Compose(list(pipeline.transforms))) is None
    assert made_by_course_lib(object()) is None
    fake = transforms.Compose([])
    setattr(fake, HELPER_MARK, 1)  # not a helper's name
    assert made_by_course_lib(fake) is None
    assert pipeline(Image.new("RGB", (80, 40))).shape == (3, 32, 32)  # the mark changes nothing


def test_imagenet_transform_custom_sizes():
    steps = imagenet_transform(resize=128, crop=112).transforms
    assert steps[0].size == 128
    assert tuple(steps[1].size) == (112, 112)
    out = imagenet_transform(resize=40, crop=32)(Image.new("RGB", (80, 40)))
    assert out.shape == (3, 32, 32)


@pytest.mark.parametrize(("resize", "crop"), [(224, 256), (0, 0), (256, -1), (256.0, 224)])
def test_imagenet_transform_rejects_bad_sizes(resize, crop):
    with pytest.raises(ValueError, match="resize|crop"):
        imagenet_transform(resize, crop)


def test_preprocess_sample_gives_a_batch_of_one():
    batch = preprocess_image(sample_image("cat"))
    assert batch.shape == (1, 3, 224, 224)
    assert batch.dtype == torch.float32
    assert -2.2 < batch.min() < batch.max() < 2.7


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_preprocess_constant_grey_gives_hand_checked_values(mode):
    img = Image.new("RGB", (300, 260), (128, 128, 128)).convert(mode)
    batch = preprocess_image(img)
    assert batch.shape == (1, 3, 224, 224)
    for channel, expected in enumerate(GREY_128_NORMALISED):
        values = batch[0, channel]
        assert values.min().item() == pytest.approx(expected, abs=1e-5)
        assert values.max().item() == pytest.approx(expected, abs=1e-5)


def test_preprocess_with_custom_transform():
    img = Image.new("RGB", (10, 6), (255, 0, 0))
    batch = preprocess_image(img, transforms.ToTensor())
    assert batch.shape == (1, 3, 6, 10)
    assert batch[0, 0].eq(1).all() and batch[0, 1:].eq(0).all()


def test_preprocess_rejects_non_images_with_a_hint():
    with pytest.raises(TypeError, match="load_image") as info:
        preprocess_image(np.zeros((224, 224, 3), dtype=np.uint8))
    assert "ndarray" in str(info.value)
    with pytest.raises(TypeError, match="PIL image"):
        preprocess_image("cat.jpg")


def test_preprocess_checks_the_transform_output():
    img = Image.new("RGB", (8, 8))
    with pytest.raises(TypeError, match="ToTensor"):
        preprocess_image(img, transforms.Resize(4))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        preprocess_image(img, lambda im: torch.zeros(8, 8))


# --------------------------------------------------------------------------- (de)normalisation


def test_normalize_known_values_and_shapes():
    x = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(normalize(x), torch.zeros(3, 2, 2), atol=1e-7)
    ones = torch.ones(2, 3, 4, 5)
    out = normalize(ones)
    assert out.shape == (2, 3, 4, 5)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[:, channel], torch.full((2, 4, 5), value))


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 5, 7)])
def test_denormalize_inverts_normalize(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(denormalize(normalize(x)), x, atol=1e-6)
    assert torch.allclose(normalize(denormalize(x)), x, atol=1e-5)


def test_normalize_is_differentiable():
    x = torch.rand(1, 3, 2, 2, requires_grad=True)
    normalize(x).sum().backward()
    expected = (1 / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(x.grad, expected)
    y = torch.rand(3, 2, 2, requires_grad=True)
    denormalize(y).sum().backward()
    assert torch.allclose(y.grad[:, 0, 0], torch.tensor(IMAGENET_STD))


def test_normalize_preserves_dtype_and_device():
    x64 = torch.rand(3, 2, 2, dtype=torch.float64)
    assert normalize(x64).dtype == torch.float64
    assert denormalize(x64).dtype == torch.float64
    meta = torch.empty(1, 3, 4, 4, device="meta", dtype=torch.float16)
    assert normalize(meta).device.type == "meta"
    assert denormalize(meta).dtype == torch.float16


@pytest.mark.parametrize("function", [normalize, denormalize])
def test_normalize_rejects_wrong_inputs(function):
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\).*\(1, 224, 224\)"):
        function(torch.zeros(1, 224, 224))
    with pytest.raises(ValueError, match=r"got \(224, 224\)"):
        function(torch.zeros(224, 224))
    with pytest.raises(TypeError, match="float"):
        function(torch.zeros(3, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------------------- postprocess


def test_postprocess_agrees_with_softmax_and_topk():
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(1)) * 3
    predictions = postprocess(logits)
    probabilities = torch.softmax(logits[0], dim=0)
    top = torch.topk(probabilities, 5)
    assert len(predictions) == 5
    assert all(isinstance(p, Prediction) for p in predictions)
    assert [p.index for p in predictions] == top.indices.tolist()
    assert np.allclose([p.probability for p in predictions], top.values.tolist(), atol=1e-6)
    assert all(isinstance(p.index, int) and isinstance(p.probability, float) for p in predictions)
    assert predictions == sorted(predictions, key=lambda p: -p.probability)
    assert postprocess(logits[0]) == predictions  # 1-d logits too


def test_postprocess_names_imagenet_classes():
    logits = torch.zeros(1000)
    logits[281] = 10.0
    logits[954] = 8.0
    best, second = postprocess(logits, k=2)
    assert (best.label, best.index) == ("tabby", 281)
    assert (second.label, second.index) == ("banana", 954)
    assert best.probability > 0.8


def test_postprocess_with_custom_labels_and_k_capped():
    logits = torch.tensor([[0.0, 2.0, 1.0]], requires_grad=True)
    predictions = postprocess(logits, {0: "a", 1: "b", 2: "c"})
    assert [p.label for p in predictions] == ["b", "c", "a"]
    assert sum(p.probability for p in predictions) == pytest.approx(1.0)
    assert predictions[0] == Prediction("b", 1, pytest.approx(np.exp(2) / (1 + np.e + np.e**2)))


def test_postprocess_rejects_a_batch():
    with pytest.raises(ValueError, match=r"\(2, 1000\).*one image"):
        postprocess(torch.zeros(2, 1000))


@pytest.mark.parametrize(
    ("logits", "kwargs", "pattern"),
    [
        (torch.zeros(1, 1, 1000), {}, "shape"),
        (torch.zeros(3), {}, "1000 classes"),
        (torch.zeros(3), {"labels": {0: "a", 1: "b"}}, "missing"),
        (torch.zeros(1000), {"k": 0}, "k must be"),
        (torch.tensor([0.0, float("nan")]), {"labels": {0: "a", 1: "b"}}, "NaN"),
    ],
)
def test_postprocess_rejects_bad_input(logits, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        postprocess(logits, **kwargs)


def test_postprocess_rejects_non_tensors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        postprocess(np.zeros(1000))


# --------------------------------------------------------------------------- tensor_to_image


@pytest.mark.parametrize("shape", [(3, 6, 4), (1, 3, 6, 4)])
def test_tensor_to_image_round_trip(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    image = tensor_to_image(normalize(x))
    assert isinstance(image, np.ndarray)
    assert image.shape == (6, 4, 3)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, x.reshape(3, 6, 4).permute(1, 2, 0).numpy(), atol=1e-6)


def test_tensor_to_image_clips_and_detaches():
    x = torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1).requires_grad_()
    image = tensor_to_image(x, denormalize=False)
    assert image.tolist() == [[[0.0, 0.5, 1.0]]]
    grey = preprocess_image(Image.new("RGB", (224, 224), (128, 128, 128)))
    np.testing.assert_allclose(tensor_to_image(grey), np.full((224, 224, 3), 128 / 255), atol=1e-6)


@pytest.mark.parametrize("shape", [(224, 224), (2, 3, 8, 8), (8, 8, 3), (1, 1, 8, 8)])
def test_tensor_to_image_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(1, 3, H, W\)") as info:
        tensor_to_image(torch.zeros(shape))
    assert str(tuple(shape)) in str(info.value)


def test_tensor_to_image_rejects_integer_tensors():
    with pytest.raises(TypeError, match="float"):
        tensor_to_image(torch.zeros(3, 2, 2, dtype=torch.uint8))
