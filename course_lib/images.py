"""Loading images as RGB, offline sample photographs, and two-object collages.

Every loader here returns an 8-bit RGB :class:`PIL.Image.Image`, whatever the file holds
(grayscale, alpha, palette, CMYK, 16-bit), so the ImageNet transforms downstream always see three
channels. The sample photographs ship inside scikit-image and matplotlib (the raccoon inside this
package), so the labs run without network access; :func:`load_image` can still fetch a URL when
there is a network.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import requests
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "SAMPLE_IMAGES",
    "Box",
    "ImageLoadError",
    "SampleImage",
    "available_samples",
    "collage_with_boxes",
    "load_image",
    "make_collage",
    "sample_credit",
    "sample_image",
]

_USER_AGENT = "cnn-interpretability-course/0.1 (teaching labs; python-requests)"
_WHITE = (255, 255, 255)


class ImageLoadError(ValueError):
    """An image file or URL that exists (or was named) but could not be read as an image."""


# --------------------------------------------------------------------------- mode conversion


def _composite_on_white(img: Image.Image) -> Image.Image:
    """Flatten an image with transparency onto a white background; returns mode ``"RGB"``."""
    if img.mode == "La":  # premultiplied alpha; Pillow converts it only to "LA"
        img = img.convert("LA")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Scale a 16-bit or 32-bit single-channel image to 8 bits, then replicate to RGB.

    ``"I;16*"`` images are scaled from ``0 .. 65535``. Mode ``"I"`` (how some 16-bit files open)
    is read as 16-bit when its maximum exceeds 255, as 8-bit otherwise. Mode ``"F"`` is read as
    ``0 .. 1`` when its maximum is at most 1, as ``0 .. 255`` otherwise. Pillow's own
    ``convert("RGB")`` would clip these values to 255 instead of scaling them.
    """
    values = np.asarray(img, dtype=np.float64)
    peak = float(np.nanmax(values)) if values.size else 0.0
    if img.mode.startswith("I;16") or (img.mode == "I" and peak > 255):
        scale = 255.0 / 65535.0
    elif img.mode == "F" and peak <= 1.0:
        scale = 255.0
    else:
        scale = 1.0
    grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Return an independent 8-bit RGB copy of ``img``.

    Transparent pixels (alpha channel, or a palette / colour key ``transparency`` entry) are
    composited onto white; 16-bit and float images are scaled, not clipped.

    Raises:
        ImageLoadError: if Pillow cannot convert the mode to RGB.
    """
    if img.mode == "RGB" and "transparency" not in img.info:
        return img.copy()
    if "A" in img.getbands() or img.mode in {"RGBa", "La"} or "transparency" in img.info:
        return _composite_on_white(img)
    if img.mode.startswith("I") or img.mode == "F":
        return _high_bit_depth_to_rgb(img)
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ImageLoadError(
            f"Cannot convert an image of mode {img.mode!r} to RGB ({err}); "
            "save it as an ordinary RGB PNG or JPEG and load that instead."
        ) from err


def _open_as_rgb(source: str | os.PathLike[str] | io.BytesIO) -> Image.Image:
    """Open with Pillow, apply the EXIF orientation, and convert to RGB (file is closed)."""
    with Image.open(source) as img:
        img.load()
        upright = ImageOps.exif_transpose(img)
        return _to_rgb(upright)


# --------------------------------------------------------------------------- loading


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _describe_request_error(err: requests.RequestException, timeout: float) -> str:
    """A short human reason for a failed ``requests.get``."""
    if isinstance(err, requests.Timeout):
        return f"no answer within the {timeout:g} s timeout"
    if isinstance(err, requests.HTTPError) and err.response is not None:
        reason = err.response.reason or ""
        return f"the server answered HTTP {err.response.status_code} {reason}".rstrip()
    if isinstance(err, requests.ConnectionError):
        return f"the connection failed (no network, or the host is unreachable): {err}"
    return f"{type(err).__name__}: {err}"


def _offline_hint() -> str:
    return (
        "Without network access use an offline sample photograph instead: "
        f"sample_image(name) with name in available_samples() = {available_samples()}."
    )


def _fetch_url(url: str, timeout: float) -> Image.Image:
    try:
        response = requests.get(url, timeout=timeout, headers={"User-Agent": _USER_AGENT})
        response.raise_for_status()
    except requests.RequestException as err:
        reason = _describe_request_error(err, timeout)
        raise ImageLoadError(
            f"Could not fetch the image URL {url!r}: {reason}. {_offline_hint()}"
        ) from err
    try:
        return _open_as_rgb(io.BytesIO(response.content))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        content_type = response.headers.get("Content-Type", "unknown")
        raise ImageLoadError(
            f"Could not fetch an image from {url!r}: the server sent {len(response.content)} "
            f"bytes of Content-Type {content_type!r} that are not a readable image "
            f"({err}). Check that the URL points at the image file itself, not a web page. "
            f"{_offline_hint()}"
        ) from err


def load_image(path_or_url: str | os.PathLike[str], *, timeout: float = 10.0) -> Image.Image:
    """Load an image from a local file or an http(s) URL as an 8-bit RGB PIL image.

    Whatever the file holds is converted to mode ``"RGB"``: grayscale (``"L"``), grayscale or
    colour with alpha (``"LA"``, ``"RGBA"``: composited onto white), palette (``"P"``, with or
    without a transparent colour), ``"CMYK"`` and 16-bit (``"I;16"``, scaled to 8 bits). An EXIF
    orientation tag (phone photos) is applied so the picture is upright.

    Args:
        path_or_url: a local path, or a URL starting with ``http://`` or ``https://``.
        timeout: seconds to wait for the server when fetching a URL.

    Returns:
        A new ``PIL.Image.Image`` of mode ``"RGB"`` (``H x W x 3``, values ``0 .. 255``), not tied
        to any open file.

    Raises:
        FileNotFoundError: if a local path does not exist.
        ImageLoadError: if the file is not a readable image, or the URL could not be fetched
            (connection error, timeout, HTTP error status, content that is not an image).
    """
    if isinstance(path_or_url, str) and _is_url(path_or_url.strip()):
        return _fetch_url(path_or_url.strip(), timeout)
    if isinstance(path_or_url, str) and "://" in path_or_url:
        raise ImageLoadError(
            f"Unsupported URL scheme in {path_or_url!r}: expected a local path or an http(s) URL."
        )
    path = Path(path_or_url).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No image file at {str(path)!r} (resolved from the working directory "
            f"{os.getcwd()!r}). Check the path, or use an offline sample: sample_image(name) "
            f"with name in {available_samples()}."
        )
    if path.is_dir():
        raise ImageLoadError(f"{str(path)!r} is a directory; expected an image file inside it.")
    try:
        return _open_as_rgb(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(
            f"The file {str(path)!r} is not a readable image ({err}); expected a PNG, JPEG or "
            "other format Pillow can open."
        ) from err


# --------------------------------------------------------------------------- offline samples


def _skimage_loader(function_name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import skimage.data

        return Image.fromarray(np.asarray(getattr(skimage.data, function_name)()))

    return load


def _load_motorcycle() -> Image.Image:
    import skimage.data

    left, _right, _disparity = skimage.data.stereo_motorcycle()
    return Image.fromarray(np.asarray(left))


def _load_packaged(filename: str) -> Callable[[], Image.Image]:
    """A loader for a photograph shipped in ``course_lib/data``."""

    def load() -> Image.Image:
        from importlib.resources import files

        with files("course_lib").joinpath("data", filename).open("rb") as handle:
            return _open_as_rgb(io.BytesIO(handle.read()))

    return load


def _load_grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@dataclasses.dataclass(frozen=True)
class SampleImage:
    """An offline sample photograph.

    Attributes:
        name: the key used by :func:`sample_image`, e.g. ``"cat"``.
        description: what the photograph shows (and the ImageNet classes it relates to).
        credit: photographer or source, and licence, as recorded by the shipping package.
        loader: a function of no arguments returning the image (any mode; converted to RGB
            by :func:`sample_image`).
    """

    name: str
    description: str
    credit: str
    loader: Callable[[], Image.Image] = dataclasses.field(repr=False, compare=False)


_SAMPLES = (
    SampleImage(
        name="cat",
        description="Chelsea the cat, a tabby (scikit-image `data.chelsea`), 451 x 300.",
        credit=(
            "Photograph by Stefan van der Walt; no copyright restrictions, CC0 by the "
            "photographer (scikit-image, skimage.data.chelsea)."
        ),
        loader=_skimage_loader("chelsea"),
    ),
    SampleImage(
        name="coffee",
        description="A cup of espresso on a saucer (scikit-image `data.coffee`), 600 x 400.",
        credit=(
            "Photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar; no copyright "
            "restrictions, CC0 by the photographer (scikit-image, skimage.data.coffee)."
        ),
        loader=_skimage_loader("coffee"),
    ),
    SampleImage(
        name="rocket",
        description=(
            "Falcon 9 carrying DSCOVR lifting off from Cape Canaveral, 2015 (scikit-image "
            "`data.rocket`), 640 x 427."
        ),
        credit=(
            "Photograph by SpaceX (flickr.com/photos/spacexphotos/16511594820), released into "
            "the public domain (scikit-image, skimage.data.rocket)."
        ),
        loader=_skimage_loader("rocket"),
    ),
    SampleImage(
        name="astronaut",
        description=(
            "Portrait of NASA astronaut Eileen Collins (scikit-image `data.astronaut`), 512 x 512."
        ),
        credit=(
            "NASA photograph from the NASA Great Images database (flic.kr/p/r9qvLn); no known "
            "copyright restrictions, released into the public domain (scikit-image, "
            "skimage.data.astronaut)."
        ),
        loader=_skimage_loader("astronaut"),
    ),
    SampleImage(
        name="grace_hopper",
        description=(
            "Portrait of Rear Admiral Grace Hopper in uniform (matplotlib sample data "
            "`grace_hopper.jpg`), 512 x 600."
        ),
        credit=(
            "U.S. Navy photograph, public domain as a work of the U.S. federal government; "
            "source named in the file: commons.wikimedia.org/wiki/File:Grace_Hopper.jpg "
            "(matplotlib sample data, cbook.get_sample_data('grace_hopper.jpg'))."
        ),
        loader=_load_grace_hopper,
    ),
    SampleImage(
        name="motorcycle",
        description=(
            "A motorcycle in a lab scene, left view of a stereo pair (scikit-image "
            "`data.stereo_motorcycle`), 741 x 500."
        ),
        credit=(
            "Middlebury 2014 stereo dataset by N. Nesic, P. Westling, X. Wang, Y. Kitajima, "
            "G. Krathwohl and D. Scharstein (Middlebury College), down-sampled by "
            "scikit-image; cite D. Scharstein et al., 'High-resolution stereo datasets with "
            "subpixel-accurate ground truth', GCPR 2014 (skimage.data.stereo_motorcycle)."
        ),
        loader=_load_motorcycle,
    ),
    SampleImage(
        name="raccoon",
        description=(
            "A raccoon's face among palm leaves, the picture of SciPy's `datasets.face` reduced to "
            "299 x 224 (course_lib/data/raccoon.jpg, 28 kB). ImageNet has no raccoon class, so "
            "a classifier answers with its nearest classes."
        ),
        credit=(
            "Photograph of a raccoon (Procyon lotor), public domain (raccoon-procyon-lotor.jpg "
            "from public-domain-image.com, now pixnio.com/fauna-animals/raccoons/"
            "raccoon-procyon-lotor); shipped by SciPy as scipy.misc.face (SciPy 1.9 and "
            "earlier) and scipy.datasets.face, reduced from 1024 x 768 for this course."
        ),
        loader=_load_packaged("raccoon.jpg"),
    ),
)

SAMPLE_IMAGES: Mapping[str, SampleImage] = MappingProxyType({s.name: s for s in _SAMPLES})
"""Read-only mapping ``name -> SampleImage`` of the offline sample photographs."""


def available_samples() -> list[str]:
    """Return the names accepted by :func:`sample_image`, in a fixed order.

    Returns:
        ``["cat", "coffee", "rocket", "astronaut", "grace_hopper", "motorcycle", "raccoon"]``.
    """
    return list(SAMPLE_IMAGES)


def _lookup_sample(name: str) -> SampleImage:
    if not isinstance(name, str):
        raise TypeError(f"Expected a sample name as a string, got {type(name).__name__}.")
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in SAMPLE_IMAGES:
        return SAMPLE_IMAGES[key]
    close = difflib.get_close_matches(key, list(SAMPLE_IMAGES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(
        f"Unknown sample image {name!r}; available samples are {available_samples()}.{hint}"
    )


def sample_image(name: str) -> Image.Image:
    """Load one of the offline sample photographs by name.

    Args:
        name: one of :func:`available_samples` (case-insensitive), e.g. ``"cat"``.

    Returns:
        A new ``PIL.Image.Image`` of mode ``"RGB"`` (values ``0 .. 255``) at its original size.

    Raises:
        KeyError: if ``name`` is not a sample; the message lists the available names.
    """
    sample = _lookup_sample(name)
    img = sample.loader()
    return _to_rgb(img)


def sample_credit(name: str) -> str:
    """Return the credit and licence line for a sample photograph.

    Args:
        name: one of :func:`available_samples` (case-insensitive).

    Returns:
        A one-line credit, e.g. ``"Photograph by Stefan van der Walt; ... CC0 ..."``.

    Raises:
        KeyError: if ``name`` is not a sample; the message lists the available names.
    """
    return _lookup_sample(name).credit


# --------------------------------------------------------------------------- collage


def _pil_images(images: Sequence[Image.Image], caller: str) -> list[Image.Image]:
    """``images`` as a list, checked: not empty, every element a PIL image."""
    items = list(images)
    if not items:
        raise ValueError(f"{caller} needs at least one image, got an empty sequence.")
    for position, img in enumerate(items):
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"{caller} expects PIL images; element {position} is "
                f"{type(img).__name__}. Load files with load_image or sample_image first."
            )
    return items


def make_collage(images: Sequence[Image.Image], *, height: int = 224) -> Image.Image:
    """Place images side by side at a common height (e.g. a cat next to a coffee cup).

    Each image is converted to RGB and resized to ``height`` pixels high, keeping its aspect
    ratio (width rounded, at least 1 pixel); the results are concatenated left to right with no
    gap. Useful for two-object inputs to Grad-CAM (the cat beside the raccoon, or the coffee cup).

    Args:
        images: one or more PIL images, any mode and size.
        height: output height in pixels, at least 1.

    Returns:
        A new ``"RGB"`` image of size ``(sum of resized widths, height)``.

    Raises:
        ValueError: if ``images`` is empty or ``height`` is not positive.
        TypeError: if an element is not a PIL image.
    """
    items = _pil_images(images, "make_collage")
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise ValueError(f"height must be a positive int (pixels), got {height!r}.")
    resized: list[Image.Image] = []
    for img in items:
        width = max(1, round(img.width * height / img.height))
        resized.append(_to_rgb(img).resize((width, height), Image.Resampling.BICUBIC))
    collage = Image.new("RGB", (sum(r.width for r in resized), height), _WHITE)
    left = 0
    for part in resized:
        collage.paste(part, (left, 0))
        left += part.width
    return collage


class Box(NamedTuple):
    """Where an object lies in an image, in pixels: columns ``left <= x < right``, rows
    ``top <= y < bottom`` (right and bottom exclusive, as in slicing ``array[top:bottom,
    left:right]`` and PIL's ``crop``)."""

    left: int
    top: int
    right: int
    bottom: int


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (not isinstance(pair, tuple) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ValueError(f"size must be a positive int or a (width, height) pair of them, "
                         f"got {size!r}.")
    return pair


def collage_with_boxes(images: Sequence[Image.Image], *, size: int | tuple[int, int] = 224
                       ) -> tuple[Image.Image, list[Box]]:
    """Place images side by side in a canvas of exactly ``size``, and say where each one went.

    The canvas is cut into as many columns of equal width as there are images (the last column
    takes the pixels left over); each image is resized to fit its column, keeping its aspect
    ratio, and centred in it on white. A 224 x 224 collage needs no resize or crop before a
    classifier (``preprocess_image(collage, imagenet_transform(224, 224))``), so the boxes are
    also positions in the model's input and in any 224 x 224 attribution map of it.

    Args:
        images: one or more PIL images, any mode and size (e.g. ``sample_image("cat")`` and
            ``sample_image("coffee")``).
        size: the canvas's side, or its ``(width, height)``, in pixels; at least one pixel of
            width per image.

    Returns:
        ``(collage, boxes)``: a new ``"RGB"`` image of ``size``, and for each image, in order,
        the :class:`Box` its pixels cover (the whole photograph, background included).

    Raises:
        ValueError: if ``images`` is empty or ``size`` is not positive or too narrow.
        TypeError: if an element is not a PIL image.
    """
    items = _pil_images(images, "collage_with_boxes")
    width, height = _size_pair(size)
    if width < len(items):
        raise ValueError(f"a collage of {len(items)} images needs a width of at least "
                         f"{len(items)} pixels, got {width}.")
    column = width // len(items)
    collage = Image.new("RGB", (width, height), _WHITE)
    boxes: list[Box] = []
    for position, img in enumerate(items):
        start = position * column
        cell = width - start if position == len(items) - 1 else column
        scale = min(cell / img.width, height / img.height)
        w = min(cell, max(1, round(img.width * scale)))
        h = min(height, max(1, round(img.height * scale)))
        left, top = start + (cell - w) // 2, (height - h) // 2
        collage.paste(_to_rgb(img).resize((w, h), Image.Resampling.BICUBIC), (left, top))
        boxes.append(Box(left, top, left + w, top + h))
    return collage, boxes
