"""Tiny, seeded models for the labs' tests (visible and hidden) and the course's own tests.

They are small enough that every attribution method runs in milliseconds, and built so that the
properties the tests check are not trivially true: convolutions have biases and BatchNorm has
random affine parameters and running statistics, so the network is *not* positively homogeneous
and Integrated Gradients' completeness with a zero baseline is a real check.

:func:`quiet_progress` keeps the progress bars of the code a test calls (the student's own
``tqdm`` loops, pytorch-grad-cam's Score-CAM) from drawing under a test cell.

:class:`HookSpy` tells a test whose code registered the hooks on a module (a student's own, or a
course helper's), and :func:`fixed_vit` is a tiny Vision Transformer whose weights come from a
formula rather than a random generator, so that a test can state the numbers it expects.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn

__all__ = ["TinyCNN", "CountingModel", "HookSpy", "fixed_vit", "tiny_cnn", "tiny_input",
           "in_kernel", "inert_hook", "quiet_progress"]

T = TypeVar("T")


def in_kernel(obj: T) -> T:
    """The object as the student's code left it, for tests that check side effects.

    In a notebook (the student's own kernel) this is ``obj`` itself. When grading, tests run in
    the grader's process and the student's functions in their kernel, which receives a copy of
    every argument: ``in_kernel(model)`` is that copy (after the calls so far), so
    ``count_hooks(in_kernel(model))`` counts the hooks the student's code left on it, while
    ``model`` itself stays the grader's untouched original for computing references.
    """
    # The grader sets autograder.harness.KERNEL_COPY while it runs a test cell; in a notebook
    # that module is not even imported.
    resolve = getattr(sys.modules.get("autograder.harness"), "KERNEL_COPY", None)
    return obj if resolve is None else resolve(obj)


class TinyCNN(nn.Module):
    """conv(3->8) -> BN -> ReLU -> conv(8->16) -> BN -> ReLU -> global average pool -> linear.

    Input: ``batch x 3 x H x W`` (any H, W >= 3). Output: ``batch x num_classes`` logits.
    ``features[2]`` and ``features[5]`` are the two ReLUs (8 and 16 channels): convenient
    layers for filter visualisation and Grad-CAM.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_cnn(seed: int = 0, num_classes: int = 10) -> TinyCNN:
    """A :class:`TinyCNN` in eval mode with seeded weights and randomised BatchNorm."""
    gen = torch.Generator().manual_seed(seed)
    model = TinyCNN(num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (2.0 / fan_in) ** 0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


def tiny_input(seed: int = 0, size: int = 16, batch: int = 1) -> torch.Tensor:
    """A seeded ``batch x 3 x size x size`` input, roughly ImageNet-normalised in scale."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=gen)


class CountingModel(nn.Module):
    """Wraps a model and counts the input rows it is evaluated on (``rows``) and calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        self.calls += 1
        return self.model(x)


def inert_hook(module: nn.Module, args: object, output: object) -> None:
    """A forward hook that does nothing, for a test to put on a model it hands to a student.

    It is a module-level function, so a model carrying it pickles (the grader sends the model to
    the student's kernel): afterwards ``count_hooks(in_kernel(model))`` tells whether the student's
    code left the caller's own hooks alone.
    """
    return None


class HookSpy(nn.Module):
    """Wraps a module; on each call records where the forward hooks registered on it come from.

    ``hook_origins`` lists, call after call, the ``__module__`` of every forward hook function
    registered on the spy when it runs (``"__main__"`` for a function defined in a notebook,
    ``"course_lib.hooks"`` for a course helper's). A test puts the spy where a student's function
    will register its hooks and checks that they are the student's own.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.hook_origins: list[str] = []

    def forward(self, *args, **kwargs):
        self.hook_origins.extend(str(getattr(hook, "__module__", None) or type(hook).__module__)
                                 for hook in self._forward_hooks.values())
        return self.module(*args, **kwargs)


def fixed_vit(*, uniform_attention: bool = False) -> nn.Module:
    """A 2-block torchvision ``VisionTransformer`` for 16 x 16 images, weights from a formula.

    Patches of 8 pixels: 2 x 2 patch tokens plus the class token (5 tokens), 2 heads, hidden size
    8, 3 classes, in eval mode. Every parameter is a fixed function of its position (sines), not a
    draw from a random generator, so its outputs are the same on every machine and torch version
    and a test can compare with stored numbers. Building it leaves torch's global RNG untouched.

    Args:
        uniform_attention: zero every block's query and key projections (weights and biases):
            all attention logits are then 0 and every head attends to the 5 tokens equally, so
            attention rollout can be worked out by hand.
    """
    from torchvision.models import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        vit = VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                                hidden_dim=8, mlp_dim=8, num_classes=3).eval()
    with torch.no_grad():
        for index, (name, param) in enumerate(vit.named_parameters()):
            wave = torch.sin(torch.arange(param.numel(), dtype=torch.float32) * (0.9 + 0.37 * index)
                             + index).reshape(param.shape)
            if name.endswith(("ln.weight", "ln_1.weight", "ln_2.weight")):
                param.copy_(1.0 + 0.3 * wave)  # LayerNorm scales near 1
            else:
                param.copy_(0.8 * wave)
        if uniform_attention:
            for block in vit.encoder.layers:
                attention = block.self_attention
                queries_and_keys = 2 * attention.embed_dim  # in_proj rows: queries, keys, values
                attention.in_proj_weight[:queries_and_keys] = 0.0
                attention.in_proj_bias[:queries_and_keys] = 0.0
    return vit


_DISABLE_POSITION = 10  # tqdm(iterable, desc, total, leave, file, ncols, mininterval,
#                         maxinterval, miniters, ascii, disable, ...)


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Inside the ``with`` block, every tqdm progress bar is created disabled (draws nothing).

    Test cells wrap their calls to the student's functions in it: a function with a progress
    bar (a ``tqdm`` loop of the student's, pytorch-grad-cam's Score-CAM, which always draws one
    on stderr) would otherwise draw a bar, or a red stderr box, under a test that passed. It
    covers ``tqdm.tqdm``, ``tqdm.auto`` and ``tqdm.notebook``, which all initialise through
    ``tqdm.std.tqdm``; bars created outside the block (the student's own calls) are untouched.
    Without tqdm installed it does nothing.
    """
    try:
        from tqdm import std
    except ImportError:  # no tqdm: nothing can draw
        yield
        return
    original = std.tqdm.__dict__["__init__"]  # tqdm wraps it (envwrap): keep the wrapper

    def disabled_init(self, *args, **kwargs):
        if len(args) > _DISABLE_POSITION:  # passed by position (never seen, but legal)
            args = (*args[:_DISABLE_POSITION], True, *args[_DISABLE_POSITION + 1:])
        else:
            kwargs["disable"] = True
        return original.__get__(self, type(self))(*args, **kwargs)

    std.tqdm.__init__ = disabled_init
    try:
        yield
    finally:
        std.tqdm.__init__ = original
