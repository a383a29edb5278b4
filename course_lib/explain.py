"""The nine explanation methods of Labs 1 and 2, from the libraries, for Lab 3's tests of them.

Lab 3 does not make explanation maps: it *tests* them (randomisation, deletion and insertion,
the pointing game, infidelity and sensitivity, fooling images), and its "trust table" compares
every method of the first two labs on every test. :func:`explanation_methods` gives those
methods as library implementations (Captum and pytorch-grad-cam), all called the same way::

    methods = explanation_methods("layer4")           # the Grad-CAM layer, a dotted path
    maps = methods["Integrated Gradients"](model, x, target)   # N x 3 x H x W -> N x H x W

Every method is an :class:`Explainer`, a small frozen dataclass: it pickles (the grader sends it
to the student's kernel like any argument), it names the layer by path so that it explains
whatever model it is given (a randomised copy, for Lab 3's Task 1), and it returns one ``H x W``
map per input row, where larger means "more evidence for ``target``":

- pixel methods (Saliency, SmoothGrad, Integrated Gradients, DeepLift, Guided Backprop) sum
  their attribution over the colour channels (Saliency and SmoothGrad are absolute values by
  definition, the others keep their sign);
- CAM methods (Grad-CAM, Grad-CAM++, Score-CAM) are pytorch-grad-cam's maps, upsampled to the
  input and scaled to [0, 1];
- Occlusion is the drop of the target's logit when a patch is set to 0, averaged over the
  patches covering each pixel (signed; Captum's ``Occlusion`` on the model's output).

These are what Lab 3 measures, not what earlier labs grade: the maps are channel sums (Lab 1's
functions return attributions per channel, Lab 2's saliency takes the maximum over channels),
Occlusion drops the logit (Lab 2's Task 5 asks for the probability), and the CAMs use the
library's hooks, which Lab 2's Grad-CAM tests refuse.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.models import get_module

__all__ = ["METHOD_NAMES", "Explainer", "edge_detector", "explanation_methods"]

METHOD_NAMES: tuple[str, ...] = (
    "Saliency", "SmoothGrad", "Integrated Gradients", "DeepLift", "Guided Backprop",
    "Grad-CAM", "Grad-CAM++", "Score-CAM", "Occlusion",
)
_PIXEL = ("Saliency", "SmoothGrad", "Integrated Gradients", "DeepLift", "Guided Backprop")
_CAM = ("Grad-CAM", "Grad-CAM++", "Score-CAM")


def _check_input(method: str, input: Tensor) -> None:
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"{method} explains a batch N x C x H x W; got {shape}. "
                         "Add a batch dimension with input.unsqueeze(0).")


def _top_channels(k: int):
    """A reshape_transform keeping the ``k`` channels of largest spatial variance."""
    def transform(activation: Tensor) -> Tensor:  # N x K x h x w -> N x k x h x w
        spread = activation.flatten(2).var(dim=-1).mean(dim=0)
        return activation[:, spread.topk(min(k, spread.numel())).indices]
    return transform


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Run ``model`` in eval mode inside the block and give its mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Explainer:
    """One explanation method with its settings; call it as ``explainer(model, input, target)``.

    Attributes:
        method: one of :data:`METHOD_NAMES`.
        layer: dotted path of the CAM layer in the model (``"layer4"``, ``"features.5"``);
            only the CAM methods use it.
        samples: SmoothGrad's noisy copies.
        sigma: SmoothGrad's noise standard deviation, in the input's (normalised) units.
        steps: Integrated Gradients' steps (zero baseline).
        channels: Score-CAM's channels (those of largest spatial variance); None for all.
        patch: Occlusion's square side, in pixels (the drop of the target's logit).
        stride: Occlusion's step between patches.
        batch_size: rows per forward pass for SmoothGrad, IG, Score-CAM and Occlusion.
    """

    method: str
    layer: str = ""
    samples: int = 8
    sigma: float = 0.15
    steps: int = 16
    channels: int | None = 16
    patch: int = 56
    stride: int = 28
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHOD_NAMES)}")
        if self.method in _CAM and not self.layer:
            raise ValueError(f"{self.method} needs the path of its layer, e.g. layer='layer4'")

    def __call__(self, model: nn.Module, input: Tensor, target: int) -> Tensor:
        """The maps of class ``target``.

        Args:
            model: classifier, N x 3 x H x W -> N x classes (logits).
            input: N x 3 x H x W batch (not modified).
            target: class index explained for every row.
        Returns:
            N x H x W detached float tensor; larger is more evidence for ``target``. Gradients
            are switched on inside, so a caller's ``torch.no_grad()`` does not break it.
        """
        _check_input(self.method, input)
        x = input.detach().clone()
        # enable_grad: callers such as Captum's sensitivity_max run explanations under no_grad.
        with _eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
            # Captum announces each time that it hooks the ReLUs (DeepLift, Guided Backprop):
            # on stderr, which nbgrader's Validate counts as a failed test cell.
            warnings.filterwarnings("ignore", message=r"Setting .*hooks", category=UserWarning)
            if self.method in _PIXEL:
                return self._pixel(model, x, int(target)).sum(dim=1).detach()
            if self.method in _CAM:
                return self._cam(model, x, int(target))
            return self._occlusion(model, x, int(target))

    def _pixel(self, model: nn.Module, x: Tensor, target: int) -> Tensor:
        from captum.attr import DeepLift, GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency

        x.requires_grad_(True)
        if self.method == "Saliency":
            return Saliency(model).attribute(x, target=target)
        if self.method == "SmoothGrad":
            return NoiseTunnel(Saliency(model)).attribute(
                x, target=target, nt_type="smoothgrad", nt_samples=self.samples,
                nt_samples_batch_size=self.batch_size, stdevs=self.sigma)
        if self.method == "Integrated Gradients":
            return IntegratedGradients(model).attribute(
                x, target=target, n_steps=self.steps, internal_batch_size=self.batch_size)
        if self.method == "DeepLift":
            return DeepLift(model).attribute(x, target=target)
        return GuidedBackprop(model).attribute(x, target=target)

    def _cam(self, model: nn.Module, x: Tensor, target: int) -> Tensor:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from course_lib.testing import quiet_progress

        layers = [get_module(model, self.layer)]
        targets = [ClassifierOutputTarget(target)] * x.shape[0]
        if self.method == "Score-CAM":
            transform = _top_channels(self.channels) if self.channels else None
            with quiet_progress(), ScoreCAM(model, target_layers=layers,
                                            reshape_transform=transform) as cam:
                cam.batch_size = self.batch_size
                maps = cam(input_tensor=x, targets=targets)
        else:
            kind = GradCAM if self.method == "Grad-CAM" else GradCAMPlusPlus
            with kind(model, target_layers=layers) as cam:
                maps = cam(input_tensor=x, targets=targets)
        return torch.from_numpy(maps).float()

    def _occlusion(self, model: nn.Module, x: Tensor, target: int) -> Tensor:
        from captum.attr import Occlusion

        with torch.no_grad():
            drops = Occlusion(model).attribute(
                x, target=target, sliding_window_shapes=(x.shape[1], self.patch, self.patch),
                strides=(x.shape[1], self.stride, self.stride), baselines=0,
                perturbations_per_eval=self.batch_size)
        return drops[:, 0].detach()


def explanation_methods(layer: str, *, names: tuple[str, ...] = METHOD_NAMES, samples: int = 8,
                        steps: int = 16, channels: int | None = 16, patch: int = 56,
                        stride: int = 28, batch_size: int = 16) -> dict[str, Explainer]:
    """The explanation methods of Labs 1 and 2, in :data:`METHOD_NAMES` order.

    Args:
        layer: dotted path of the CAM layer (``"layer4"`` for a torchvision ResNet,
            ``"features.5"`` for ``course_lib.testing.tiny_cnn``).
        names: the methods wanted (default: all nine).
        samples: SmoothGrad's noisy copies.
        steps: Integrated Gradients' steps.
        channels: Score-CAM's channels (None: every channel of the layer; slow on a CPU).
        patch: Occlusion's patch side in pixels.
        stride: Occlusion's stride in pixels.
        batch_size: rows per forward pass where a method makes many.
    Returns:
        ``{name: Explainer}``; each maps an ``N x 3 x H x W`` batch to ``N x H x W``.
    Raises:
        ValueError: for a name not in :data:`METHOD_NAMES`.
    """
    unknown = [name for name in names if name not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHOD_NAMES)}")
    return {name: Explainer(name, layer=layer, samples=samples, steps=steps, channels=channels,
                            patch=patch, stride=stride, batch_size=batch_size)
            for name in names}


def edge_detector(model: nn.Module, input: Tensor, target: int) -> Tensor:
    """A "method" that ignores the model and the class: the Sobel edge strength of the image.

    Adebayo et al. (2018) show that some saliency maps look much like this; an explanation that
    passes the randomisation test must differ from it. Called like an :class:`Explainer`.

    Args:
        model: ignored.
        input: N x C x H x W batch.
        target: ignored.
    Returns:
        N x H x W tensor: the gradient magnitude of the channel mean (3 x 3 Sobel, zero padding).
    """
    _check_input("edge_detector", input)
    grey = input.detach().float().mean(dim=1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T]).unsqueeze(1)  # 2 x 1 x 3 x 3: d/dx, d/dy
    gradients = F.conv2d(grey, kernels, padding=1)
    return gradients.pow(2).sum(dim=1).sqrt()
