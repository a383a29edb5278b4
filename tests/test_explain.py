"""course_lib.explain: the nine library methods Lab 3 tests, called one way."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from course_lib.explain import METHOD_NAMES, Explainer, edge_detector, explanation_methods
from course_lib.testing import tiny_cnn, tiny_input

LAYER = "features.5"


@pytest.fixture()
def model():
    return tiny_cnn(seed=3)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_maps_a_batch_to_one_detached_map_per_row(name, model):
    x = tiny_input(seed=4, batch=2)
    before = x.clone()
    method = explanation_methods(LAYER, patch=4, stride=2)[name]
    model.train()  # the method explains in eval mode and gives the mode back
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = method(model, x, 3)
    assert maps.shape == (2, 16, 16) and maps.dtype == torch.float32
    assert not maps.requires_grad and torch.isfinite(maps).all()
    assert torch.equal(x, before) and model.training
    notices = [w for w in caught if "hooks" in str(w.message)]
    assert not notices, "Captum's hook notices would reach stderr under a test cell"
    assert pickle.loads(pickle.dumps(method)) == method  # crosses to a kernel as an argument


@pytest.mark.parametrize("name", ["Saliency", "Grad-CAM", "Guided Backprop"])
def test_methods_work_under_no_grad(name, model):
    """Captum's sensitivity_max calls the explanation under torch.no_grad()."""
    method = explanation_methods(LAYER)[name]
    x = tiny_input(seed=10)
    with torch.no_grad():
        inside = method(model, x, 2)
    assert torch.allclose(inside, method(model, x, 2))


def test_pixel_methods_sum_the_librarys_attribution_over_channels(model):
    x = tiny_input(seed=5)
    saliency = Saliency(model).attribute(x.clone().requires_grad_(True), target=2).sum(dim=1)
    assert torch.allclose(Explainer("Saliency")(model, x, 2), saliency, atol=1e-7)
    ig = IntegratedGradients(model).attribute(x.clone().requires_grad_(True), target=2, n_steps=8)
    assert torch.allclose(Explainer("Integrated Gradients", steps=8)(model, x, 2), ig.sum(dim=1),
                          atol=1e-6)


def test_cam_methods_follow_the_layer_path_in_the_model_they_are_given(model):
    x = tiny_input(seed=6)
    with GradCAM(model, target_layers=[model.features[2]]) as cam:
        expected = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(1)]))
    assert torch.allclose(Explainer("Grad-CAM", layer="features.2")(model, x, 1), expected,
                          atol=1e-6)
    other = tiny_cnn(seed=7)  # same path, another model: another map
    assert not torch.allclose(Explainer("Grad-CAM", layer="features.2")(other, x, 1), expected)


def test_score_cam_uses_the_channels_asked_for(model):
    x = tiny_input(seed=8)
    few = Explainer("Score-CAM", layer=LAYER, channels=2)(model, x, 4)
    every = Explainer("Score-CAM", layer=LAYER, channels=None)(model, x, 4)
    assert not torch.allclose(few, every)


def test_occlusion_is_the_mean_signed_drop_of_the_logit(model):
    x = tiny_input(seed=9, size=8)
    got = Explainer("Occlusion", patch=4, stride=4)(model, x, 5)[0]
    with torch.no_grad():
        base = model(x)[0, 5]
        expected = torch.zeros(8, 8)
        for i in (0, 4):
            for j in (0, 4):
                hidden = x.clone()
                hidden[..., i:i + 4, j:j + 4] = 0
                expected[i:i + 4, j:j + 4] = base - model(hidden)[0, 5]
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got != 0).any()


def test_bad_arguments_say_what_to_do(model):
    with pytest.raises(ValueError, match="unknown method 'LRP'"):
        Explainer("LRP")
    with pytest.raises(ValueError, match="layer='layer4'"):
        Explainer("Grad-CAM")
    with pytest.raises(ValueError, match="unsqueeze"):
        Explainer("Saliency")(model, tiny_input(seed=1)[0], 0)
    with pytest.raises(ValueError, match="unknown methods"):
        explanation_methods(LAYER, names=("Saliency", "CAM"))


def test_explanation_methods_keeps_the_order_and_the_settings():
    methods = explanation_methods("layer4", names=("Occlusion", "Saliency"), patch=8, stride=4)
    assert list(methods) == ["Occlusion", "Saliency"]
    assert methods["Occlusion"].patch == 8 and methods["Occlusion"].layer == "layer4"
    assert list(explanation_methods("layer4")) == list(METHOD_NAMES)


def test_edge_detector_ignores_the_model_and_finds_edges():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    edges = edge_detector(None, x, 0)
    assert edges.shape == (1, 8, 8)
    inner = edges[0, 1:-1]  # rows away from the zero padding
    assert torch.all(inner[:, 3:5] > 0)
    assert torch.all(inner[:, :2] == 0) and torch.all(inner[:, 6] == 0)  # flat on both sides
    assert torch.equal(edge_detector(tiny_cnn(seed=1), x, 5), edges)
