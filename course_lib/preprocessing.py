"""ImageNet preprocessing and postprocessing for torchvision classifiers.

Pipeline: a PIL image -> :func:`preprocess_image` -> ``1 x 3 x 224 x 224`` ImageNet-normalised
tensor -> model -> ``1 x 1000`` logits -> :func:`postprocess` -> top-k :class:`Prediction` list.
:func:`tensor_to_image` goes back from a normalised tensor to a displayable ``H x W x 3`` array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from course_lib.images import _to_rgb
from course_lib.labels import imagenet_labels

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Prediction",
    "denormalize",
    "imagenet_transform",
    "normalize",
    "postprocess",
    "preprocess_image",
    "tensor_to_image",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel (R, G, B) mean of ImageNet training images, on the ``0 .. 1`` scale."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel (R, G, B) standard deviation of ImageNet training images, ``0 .. 1`` scale."""

HELPER_MARK = "_course_lib_helper"
"""Attribute that objects built by a course_lib helper carry (the helper's name).

Lab 1 asks students to build a model (Task 1) and a transform (Task 2) themselves; the later
notebooks use :func:`course_lib.models.load_model` and :func:`imagenet_transform` for the same
objects. The tests of those tasks read the mark with :func:`made_by_course_lib` and give no
points for an object the helper built.
"""


_Built = TypeVar("_Built")


def mark_helper_object(obj: _Built, helper: str) -> _Built:
    """Set :data:`HELPER_MARK` on ``obj`` to ``helper`` and return ``obj``."""
    setattr(obj, HELPER_MARK, helper)
    return obj


def made_by_course_lib(obj: object) -> str | None:
    """The name of the course_lib helper that built ``obj``, or None if none did.

    Works on the grader's references to the student's objects too (an attribute read).
    """
    mark = getattr(obj, HELPER_MARK, None)
    return mark if isinstance(mark, str) else None


def imagenet_transform(resize: int = 256, crop: int = 224) -> transforms.Compose:
    """The standard ImageNet evaluation transform.

    The ``Compose`` it returns carries :data:`HELPER_MARK` (Lab 1's Task 2 asks students to
    build this pipeline themselves, and its tests give no points for this one).

    ``Resize(resize)`` (shorter side to ``resize`` pixels, aspect ratio kept) ->
    ``CenterCrop(crop)`` -> ``ToTensor()`` (``0 .. 255`` -> ``0 .. 1``, ``H x W x 3`` ->
    ``3 x H x W``) -> ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``.

    Args:
        resize: length in pixels of the shorter side after resizing.
        crop: side of the square centre crop, at most ``resize``.

    Returns:
        A ``Compose`` mapping an RGB PIL image to a ``3 x crop x crop`` float tensor,
        ImageNet-normalised (values roughly ``-2.1 .. 2.6``).

    Raises:
        ValueError: if a size is not a positive int or ``crop > resize``.
    """
    for name, value in (("resize", resize), ("crop", crop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int (pixels), got {value!r}.")
    if crop > resize:
        raise ValueError(
            f"crop ({crop}) must not exceed resize ({resize}): the centre crop would be padded "
            "with black. Increase resize or decrease crop."
        )
    pipeline = transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return mark_helper_object(pipeline, "imagenet_transform")


def preprocess_image(
    img: Image.Image, transform: Callable[[Image.Image], torch.Tensor] | None = None
) -> torch.Tensor:
    """Turn a PIL image into a model-ready batch of one.

    The image is converted to RGB first (as :func:`course_lib.images.load_image` does), then
    ``transform`` is applied and a batch dimension added.

    Args:
        img: a PIL image of any size and mode.
        transform: maps a PIL image to a ``3 x H x W`` tensor; default
            :func:`imagenet_transform` ``()``.

    Returns:
        A float tensor of shape ``1 x 3 x H x W`` (``1 x 3 x 224 x 224`` with the default
        transform), ImageNet-normalised.

    Raises:
        TypeError: if ``img`` is not a PIL image, or ``transform`` does not return a tensor.
        ValueError: if the transform's output is not ``3 x H x W``.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(
            f"preprocess_image expects a PIL image, got {type(img).__name__}. Load one with "
            "course_lib.images.load_image(path) or sample_image(name); a tensor is already "
            "preprocessed."
        )
    if transform is None:
        transform = imagenet_transform()
    out = transform(_to_rgb(img))
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"transform must return a torch.Tensor, got {type(out).__name__}; end it with "
            "transforms.ToTensor() (and Normalize)."
        )
    if out.ndim != 3 or out.shape[0] != 3:
        raise ValueError(
            f"Expected the transform to return a tensor of shape (3, H, W), got {tuple(out.shape)}."
        )
    return out.unsqueeze(0)


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as ``3 x 1 x 1`` tensors on ``x``'s device and dtype (after checks)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected a torch.Tensor, got {type(x).__name__}.")
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(
            f"Expected a tensor of shape (..., 3, H, W), e.g. (3, 224, 224) or "
            f"(1, 3, 224, 224), got {tuple(x.shape)}."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"Expected a floating-point tensor with values in 0..1, got dtype {x.dtype}; "
            "convert with x.float() / 255."
        )
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise: ``(x - mean) / std`` per channel.

    Args:
        x: ``... x 3 x H x W`` float tensor with values in ``0 .. 1`` (``3 x H x W`` or
            ``batch x 3 x H x W``).

    Returns:
        A new tensor of the same shape, dtype and device, ImageNet-normalised. Differentiable.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.
        ValueError: if the third-from-last dimension is not 3.
    """
    mean, std = _channel_stats(x)
    return (x - mean) / std


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = _channel_stats(x)
    return x * std + mean


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo ImageNet normalisation: ``x * std + mean`` per channel (inverse of :func:`normalize`).

    Args:
        x: ``... x 3 x H x W`` float tensor, ImageNet-normalised.

    Returns:
        A new tensor of the same shape, dtype and device with values back on the ``0 .. 1``
        scale (not clipped). Differentiable.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.
        ValueError: if the third-from-last dimension is not 3.
    """
    return _denormalize(x)


class Prediction(NamedTuple):
    """One entry of a top-k classification.

    Attributes:
        label: class name, e.g. ``"tabby"``.
        index: class index, e.g. ``281``.
        probability: softmax probability in ``0 .. 1``.
    """

    label: str
    index: int
    probability: float


def postprocess(
    logits: torch.Tensor, labels: Mapping[int, str] | None = None, k: int = 5
) -> list[Prediction]:
    """Softmax the logits of one image and return the ``k`` most probable classes.

    Args:
        logits: raw model outputs for one image, shape ``C`` or ``1 x C`` (``C = 1000`` for
            ImageNet). Any device; gradients are not tracked.
        labels: ``{index: name}`` covering ``0 .. C-1``; default :func:`imagenet_labels`
            (then ``C`` must be 1000).
        k: how many classes to return, at least 1; more than ``C`` is capped at ``C``.

    Returns:
        ``k`` :class:`Prediction` tuples sorted by decreasing probability.

    Raises:
        TypeError: if ``logits`` is not a tensor.
        ValueError: for a batch of more than one image, another shape, non-finite logits,
            ``k < 1``, or labels that do not cover every class.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"Expected logits as a torch.Tensor, got {type(logits).__name__}.")
    if logits.ndim == 2 and logits.shape[0] != 1:
        raise ValueError(
            f"Expected the logits of one image, shape (C,) or (1, C), got a batch of shape "
            f"{tuple(logits.shape)}; pass one image's logits, e.g. postprocess(logits[i])."
        )
    if logits.ndim not in (1, 2) or logits.shape[-1] == 0:
        raise ValueError(f"Expected logits of shape (C,) or (1, C), got {tuple(logits.shape)}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    scores = logits.detach().reshape(-1).to("cpu", torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError("The logits contain NaN or infinite values; check the model's input.")
    num_classes = scores.numel()
    if labels is None:
        if num_classes != 1000:
            raise ValueError(
                f"The default ImageNet labels cover 1000 classes but the logits have "
                f"{num_classes}; pass labels={{index: name}} for your classes."
            )
        labels = imagenet_labels()
    missing = [i for i in range(num_classes) if i not in labels]
    if missing:
        raise ValueError(
            f"labels must name every class 0..{num_classes - 1}; {len(missing)} are missing "
            f"(first: {missing[:5]})."
        )
    probabilities = torch.softmax(scores, dim=0)
    top = torch.topk(probabilities, min(k, num_classes))
    return [
        Prediction(label=labels[int(i)], index=int(i), probability=float(p))
        for p, i in zip(top.values, top.indices, strict=True)
    ]


def tensor_to_image(t: torch.Tensor, *, denormalize: bool = True) -> np.ndarray:
    """Convert an image tensor into an array that ``matplotlib.pyplot.imshow`` can show.

    Args:
        t: ``3 x H x W`` or ``1 x 3 x H x W`` tensor, ImageNet-normalised when ``denormalize``
            is true, on the ``0 .. 1`` scale otherwise. Any device; may require grad.
        denormalize: undo ImageNet normalisation before clipping.

    Returns:
        A new float32 NumPy array of shape ``H x W x 3`` with values clipped to ``0 .. 1``.

    Raises:
        TypeError: if ``t`` is not a floating-point tensor.
        ValueError: if the shape is not ``(3, H, W)`` or ``(1, 3, H, W)``.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"Expected a torch.Tensor, got {type(t).__name__}; a PIL image or NumPy array can "
            "be shown directly."
        )
    if not (t.ndim == 3 or (t.ndim == 4 and t.shape[0] == 1)) or t.shape[-3] != 3:
        raise ValueError(
            f"Expected a tensor of shape (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}; "
            "for a batch, pass one image (x[i])."
        )
    if not t.is_floating_point():
        raise TypeError(
            f"Expected a floating-point tensor, got dtype {t.dtype}; convert 0..255 integers "
            "with t.float() / 255 and pass denormalize=False."
        )
    x = t.detach().to("cpu", torch.float32).reshape(t.shape[-3:])
    if denormalize:
        x = _denormalize(x)
    return x.clamp(0.0, 1.0).permute(1, 2, 0).contiguous().numpy()
