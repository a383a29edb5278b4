"""Tests for course_lib.hooks: captured values on hand-computable models, and no leaked hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet34

from course_lib.hooks import (
    LayerNotReachedError,
    StopForward,
    capture_activations,
    capture_gradients,
    count_hooks,
    forward_progress,
    forward_until,
    layer_summary,
)
from course_lib.models import get_module, prepare_for_attribution


class Boom(Exception):
    """Raised inside a with-block to check clean-up after an exception."""


def tiny_net() -> nn.Sequential:
    """y = 3 * relu(W x + b) with W = [[1, 2], [-1, 1]], b = [0, -1]: small integer numbers."""
    first = nn.Linear(2, 2)
    second = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        first.bias.copy_(torch.tensor([0.0, -1.0]))
        second.weight.fill_(3.0)
    return nn.Sequential(first, nn.ReLU(), second)


X = torch.tensor([[1.0, 1.0], [2.0, 5.0]])  # rows: hidden pre-ReLU [3, -1] and [12, 2]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet34().eval()


# --------------------------------------------------------------------------- capture_activations


def test_capture_activations_records_outputs_by_hand() -> None:
    net = tiny_net()
    with capture_activations({"linear": net[0], "relu": net[1], "out": net[2]}) as acts:
        net(X)
    torch.testing.assert_close(acts["linear"], torch.tensor([[3.0, -1.0], [12.0, 2.0]]))
    torch.testing.assert_close(acts["relu"], torch.tensor([[3.0, 0.0], [12.0, 2.0]]))
    torch.testing.assert_close(acts["out"], torch.tensor([[9.0], [42.0]]))
    assert not acts["linear"].requires_grad  # detached by default


def test_capture_activations_keeps_the_latest_pass() -> None:
    net = tiny_net()
    with capture_activations({"out": net[2]}) as acts:
        net(X)
        net(X[:1])
    torch.testing.assert_close(acts["out"], torch.tensor([[9.0]]))


def test_capture_activations_survives_an_in_place_relu() -> None:
    # VGG16 follows every conv with ReLU(inplace=True), which overwrites the conv's output.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True)).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = net[0](x)
    with capture_activations({"conv": net[0]}) as acts, torch.no_grad():
        net(x)
    assert (expected < 0).any()
    assert torch.equal(acts["conv"], expected)


def test_capture_activations_without_detach_keeps_the_graph() -> None:
    net = tiny_net()
    x = X.clone().requires_grad_(True)
    with capture_activations({"relu": net[1]}, detach=False) as acts:
        net(x)
    acts["relu"].sum().backward()
    # d(sum relu(Wx+b))/dx: row 1 only unit 0 is active -> W[0]; row 2 both -> W[0] + W[1]
    torch.testing.assert_close(x.grad, torch.tensor([[1.0, 2.0], [0.0, 3.0]]))


def test_capture_activations_removes_hooks_after_success_and_exception() -> None:
    net = tiny_net()
    modules = {"linear": net[0], "out": net[2]}
    with capture_activations(modules):
        assert count_hooks(net) == 2
        net(X)
    assert count_hooks(net) == 0
    with pytest.raises(Boom), capture_activations(modules):
        net(X)
        raise Boom
    assert count_hooks(net) == 0


def test_capture_activations_names_a_module_that_returns_no_tensor() -> None:
    lstm = nn.LSTM(2, 3, batch_first=True)
    with pytest.raises(TypeError, match="'lstm' to return a Tensor, got tuple"):
        with capture_activations({"lstm": lstm}):
            lstm(torch.zeros(1, 4, 2))
    assert count_hooks(lstm) == 0


# --------------------------------------------------------------------------- capture_gradients


def test_capture_gradients_by_hand() -> None:
    net = tiny_net()
    with capture_gradients({"linear": net[0], "relu": net[1]}) as grads:
        net(X.clone().requires_grad_(True)).sum().backward()
    # d(sum 3 * relu(h))/d relu = 3 everywhere; d/dh = 3 where h > 0 (h = [[3, -1], [12, 2]])
    torch.testing.assert_close(grads["relu"], torch.full((2, 2), 3.0))
    torch.testing.assert_close(grads["linear"], torch.tensor([[3.0, 0.0], [3.0, 3.0]]))


def test_capture_gradients_of_a_parameter_only_graph() -> None:
    """The input needs no grad: the weights do, so the activations have a gradient too."""
    net = tiny_net()
    with capture_gradients({"relu": net[1]}) as grads:
        (2 * net(X)).sum().backward()
    torch.testing.assert_close(grads["relu"], torch.full((2, 2), 6.0))


def test_capture_gradients_skips_outputs_without_grad_and_removes_hooks() -> None:
    net = tiny_net()
    with capture_gradients({"relu": net[1]}) as grads, torch.no_grad():
        net(X)
    assert grads == {}
    assert count_hooks(net) == 0
    with pytest.raises(Boom), capture_gradients({"relu": net[1]}):
        net(X)
        raise Boom
    assert count_hooks(net) == 0


def test_capture_gradients_stops_writing_after_the_block() -> None:
    """A graph built inside the block and used after it must not fill the dict any more."""
    net = tiny_net()
    with capture_gradients({"relu": net[1]}) as grads:
        out = net(X).sum()
    out.backward()
    assert grads == {}


def test_grad_cam_ingredients_on_resnet_last_block(resnet: nn.Module) -> None:
    """The stock ResNet (in-place ReLUs) gives layer4[-1] activations and matching gradients."""
    block = resnet.layer4[-1]
    x = torch.randn(1, 3, 64, 64)
    with capture_activations({"block": block}) as acts, capture_gradients({"block": block}) as g:
        logits = resnet(x)
        logits[0, 7].backward()
    assert acts["block"].shape == g["block"].shape == (1, 512, 2, 2)
    # logit 7 = fc.weight[7] . mean over the 2x2 positions -> d/d(activation) = w / 4
    expected = (resnet.fc.weight[7] / 4).view(1, 512, 1, 1).expand(1, 512, 2, 2)
    torch.testing.assert_close(g["block"], expected)
    assert count_hooks(resnet) == 0


def test_capture_gradients_where_full_backward_hooks_fail(resnet: nn.Module) -> None:
    """bn1's output is then changed by an in-place ReLU, bn2's by ``out += identity``."""
    modules = {"bn1": resnet.bn1, "bn2": resnet.layer4[-1].bn2}
    x = torch.randn(1, 3, 64, 64)
    handle = resnet.bn1.register_full_backward_hook(lambda *_: None)
    try:
        with pytest.raises(RuntimeError, match="BackwardHookFunction is a view"):
            resnet(x)[0, 1].backward()
    finally:
        handle.remove()
    with capture_gradients(modules) as grads:
        resnet(x)[0, 1].backward()
    # reference: the same function with out-of-place ops, where full backward hooks work
    prepared = prepare_for_attribution(resnet)
    reference: dict[str, torch.Tensor] = {}
    handles = [
        get_module(prepared, path).register_full_backward_hook(
            lambda module, grad_in, grad_out, name=name: reference.__setitem__(name, grad_out[0])
        )
        for name, path in [("bn1", "bn1"), ("bn2", "layer4.-1.bn2")]
    ]
    try:
        prepared(x)[0, 1].backward()
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(grads, reference)
    assert grads["bn1"].shape == (1, 64, 32, 32)
    assert count_hooks(resnet) == 0


# --------------------------------------------------------------------------- forward_until


def test_forward_until_returns_the_layer_output_with_graph() -> None:
    net = tiny_net()
    x = X.clone().requires_grad_(True)
    out = forward_until(net, net[1], x)
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0], [12.0, 2.0]]))
    out[1, 1].backward()  # h[1, 1] = -x0 + x1 (active)
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0], [-1.0, 1.0]]))
    assert count_hooks(net) == 0


def test_forward_until_skips_everything_after_the_layer(resnet: nn.Module) -> None:
    calls: list[str] = []
    watched = ("layer2", "layer3", "layer4", "fc")
    handles = [
        getattr(resnet, name).register_forward_pre_hook(lambda *_, n=name: calls.append(n))
        for name in watched
    ]
    try:
        x = torch.randn(1, 3, 64, 64)
        out = forward_until(resnet, resnet.layer2, x)
        assert calls == ["layer2"]
        with torch.no_grad():
            prefix = nn.Sequential(*list(resnet.children())[:6])  # conv1 ... layer2
            torch.testing.assert_close(out.detach(), prefix(x))
    finally:
        for handle in handles:
            handle.remove()
    assert count_hooks(resnet) == 0


def test_forward_until_rejects_a_foreign_layer() -> None:
    net = tiny_net()
    with pytest.raises(LayerNotReachedError, match="not part of it"):
        forward_until(net, nn.ReLU(), X)
    assert count_hooks(net) == 0


def test_forward_until_reports_a_layer_that_never_ran() -> None:
    """MultiheadAttention uses out_proj's weights directly: the submodule's forward never runs."""
    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(1, 3, 4)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = attention

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attention(x, x, x)[0]

    model = SelfAttention()
    with pytest.raises(LayerNotReachedError, match="never called"):
        forward_until(model, attention.out_proj, x)
    assert count_hooks(model) == 0


def test_stop_forward_carries_the_output() -> None:
    output = torch.ones(2)
    stop = StopForward(output)
    assert stop.output is output
    assert isinstance(stop, Exception)


# --------------------------------------------------------------------------- count_hooks


def test_count_hooks_counts_every_kind() -> None:
    net = tiny_net()
    handles = [
        net[0].register_forward_hook(lambda *_: None),
        net[0].register_forward_pre_hook(lambda *_: None),
        net[1].register_full_backward_hook(lambda *_: None),
        net.register_full_backward_pre_hook(lambda *_: None),
    ]
    assert count_hooks(net) == 4
    for handle in handles:
        handle.remove()
    assert count_hooks(net) == 0


# --------------------------------------------------------------------------- forward_progress


def test_forward_progress_counts_rows_and_removes_its_hook() -> None:
    net = tiny_net()
    with forward_progress(net, total=5, desc="test") as bar:
        net(torch.zeros(2, 2))
        net(torch.zeros(3, 2))
        assert count_hooks(net) == 1
    assert bar.n == 5
    assert count_hooks(net) == 0


def test_forward_progress_removes_its_hook_on_error() -> None:
    net = tiny_net()
    with pytest.raises(Boom), forward_progress(net):
        net(torch.zeros(1, 2))
        raise Boom
    assert count_hooks(net) == 0


def test_forward_progress_stretches_its_total_when_it_gets_more() -> None:
    net = tiny_net()
    with forward_progress(net, total=2) as bar:
        net(torch.zeros(3, 2))
        assert (bar.n, bar.total) == (3, 3)


# --------------------------------------------------------------------------- layer_summary


def test_layer_summary_lists_names_types_shapes_and_parameters() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), nn.Linear(4, 2))
    text = layer_summary(net, torch.zeros(1, 3, 8, 8))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "type", "output", "shape", "parameters"]
    assert lines[2].split() == ["0", "Conv2d", "1", "x", "4", "x", "8", "x", "8", "112"]
    assert lines[3].split()[:2] == ["1", "ReLU"]
    assert lines[4].split() == ["2", "Sequential", "1", "x", "4", "0"]
    assert lines[5].split() == ["3", "Linear", "1", "x", "2", "10"]
    assert len(lines) == 7 and lines[-1] == "total parameters: 122"
    assert count_hooks(net) == 0


def test_layer_summary_goes_deeper_and_marks_modules_that_never_ran() -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 3), nn.Tanh())
            self.unused = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    rows = {line.split()[0]: line.split() for line in
            layer_summary(Skips(), torch.zeros(5, 2), depth=2).splitlines()[2:-1]}
    assert list(rows) == ["body", "body.0", "body.1", "unused"]
    assert rows["body.0"][2:] == ["5", "x", "3", "9"]
    assert rows["unused"][2:] == ["-", "12"]
    with pytest.raises(ValueError, match="depth"):
        layer_summary(Skips(), torch.zeros(1, 2), depth=0)


def test_layer_summary_removes_its_hooks_when_the_pass_fails() -> None:
    net = tiny_net()
    with pytest.raises(RuntimeError):
        layer_summary(net, torch.zeros(1, 5))  # wrong input size
    assert count_hooks(net) == 0
