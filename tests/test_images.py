"""Tests for course_lib.images: RGB loading, offline samples, URL errors and collages.

No test touches the network: URL tests use a fake ``requests.get``, a server on 127.0.0.1 and a
closed local port.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import threading
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from course_lib import images
from course_lib.images import (
    SAMPLE_IMAGES,
    Box,
    ImageLoadError,
    SampleImage,
    available_samples,
    collage_with_boxes,
    load_image,
    make_collage,
    sample_credit,
    sample_image,
)

EXPECTED_SAMPLE_SIZES = {  # (width, height)
    "cat": (451, 300),
    "coffee": (600, 400),
    "rocket": (640, 427),
    "astronaut": (512, 512),
    "grace_hopper": (512, 600),
    "motorcycle": (741, 500),
    "raccoon": (299, 224),
}


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int64)


# --------------------------------------------------------------------------- samples


def test_available_samples_lists_the_seven_photographs():
    assert available_samples() == list(EXPECTED_SAMPLE_SIZES)
    assert list(SAMPLE_IMAGES) == available_samples()


@pytest.mark.parametrize("name", list(EXPECTED_SAMPLE_SIZES))
def test_each_sample_loads_as_rgb_with_a_credit(name):
    img = sample_image(name)
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == EXPECTED_SAMPLE_SIZES[name]
    assert _pixels(img).std() > 10  # a real photograph, not a blank canvas
    credit = sample_credit(name)
    assert credit == SAMPLE_IMAGES[name].credit
    assert len(credit) > 40
    assert SAMPLE_IMAGES[name].description


def test_credits_record_the_licences():
    assert "CC0" in sample_credit("cat") and "Stefan van der Walt" in sample_credit("cat")
    assert "CC0" in sample_credit("coffee") and "Rachel Michetti" in sample_credit("coffee")
    assert "public domain" in sample_credit("rocket") and "SpaceX" in sample_credit("rocket")
    assert "public domain" in sample_credit("astronaut")
    assert "public domain" in sample_credit("grace_hopper")
    assert "Middlebury" in sample_credit("motorcycle")
    assert "public domain" in sample_credit("raccoon") and "pixnio.com" in sample_credit("raccoon")
    assert "scipy.datasets.face" in sample_credit("raccoon")


def test_the_raccoon_ships_inside_course_lib_small_and_as_a_wheel_file():
    """The one photograph no installed package ships: a small JPEG in course_lib/data that the
    wheel (make dist, Colab) and the grading sandbox (which mounts course_lib only) both carry."""
    photo = files("course_lib").joinpath("data", "raccoon.jpg")
    assert photo.is_file() and 10_000 < len(photo.read_bytes()) < 60_000
    with Image.open(io.BytesIO(photo.read_bytes())) as img:
        assert img.format == "JPEG" and img.height == 224
    pyproject = Path(images.__file__).resolve().parents[1] / "pyproject.toml"
    assert 'course_lib = ["data/*.jpg"]' in pyproject.read_text(encoding="utf-8")


def test_cat_and_raccoon_collage_for_the_two_animal_question():
    collage = make_collage([sample_image("cat"), sample_image("raccoon")], height=224)
    assert collage.size == (round(451 * 224 / 300) + 299, 224)
    left, right = _pixels(collage)[:, :300], _pixels(collage)[:, 340:]
    assert left.std() > 10 and right.std() > 10


def test_sample_lookup_is_case_insensitive_and_returns_fresh_images():
    first = sample_image("CAT")
    first.paste((0, 0, 0), (0, 0, first.width, first.height))
    second = sample_image("cat")
    assert _pixels(second).max() > 0
    assert sample_credit("Grace Hopper") == sample_credit("grace_hopper")


def test_unknown_sample_lists_available_names():
    with pytest.raises(KeyError) as info:
        sample_image("dog")
    for name in available_samples():
        assert name in str(info.value)
    with pytest.raises(KeyError, match="Did you mean 'coffee'"):
        sample_credit("cofee")


def test_sample_registry_is_read_only():
    with pytest.raises(TypeError):
        SAMPLE_IMAGES["dog"] = SAMPLE_IMAGES["cat"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAMPLE_IMAGES["cat"].credit = "me"  # type: ignore[misc]
    assert isinstance(SAMPLE_IMAGES["cat"], SampleImage)


# --------------------------------------------------------------------------- mode conversion


def _rgba_image() -> Image.Image:
    """2 x 1: an opaque red pixel and a fully transparent blue one."""
    img = Image.new("RGBA", (2, 1))
    img.putpixel((0, 0), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))
    return img


def _palette_image(transparent: bool) -> Image.Image:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    if transparent:
        img.info["transparency"] = 1
    return img


def _sixteen_bit_image() -> Image.Image:
    return Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))


@pytest.mark.parametrize(
    ("make", "suffix", "expected"),
    [
        (lambda: Image.new("L", (2, 1), 100), "png", [[100, 100, 100], [100, 100, 100]]),
        (lambda: Image.new("LA", (2, 1), (100, 255)), "png", [[100] * 3, [100] * 3]),
        (lambda: Image.new("LA", (2, 1), (0, 0)), "png", [[255] * 3, [255] * 3]),
        (_rgba_image, "png", [[255, 0, 0], [255, 255, 255]]),
        (lambda: _palette_image(False), "png", [[255, 0, 0], [0, 255, 0]]),
        (lambda: _palette_image(True), "png", [[255, 0, 0], [255, 255, 255]]),
        (lambda: Image.new("CMYK", (2, 1), (0, 255, 255, 0)), "tiff", [[255, 0, 0]] * 2),
        (lambda: Image.new("1", (2, 1), 1), "png", [[255, 255, 255]] * 2),
        (_sixteen_bit_image, "png", [[0, 0, 0], [128, 128, 128], [255, 255, 255]]),
    ],
    ids=["L", "LA-opaque", "LA-transparent", "RGBA", "P", "P-transparency", "CMYK", "1", "I;16"],
)
def test_load_image_converts_every_mode_to_rgb(tmp_path, make, suffix, expected):
    source = make()
    path = tmp_path / f"image.{suffix}"
    source.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == source.size
    np.testing.assert_array_equal(_pixels(loaded)[0], np.array(expected))


def test_sixteen_bit_file_really_is_sixteen_bit(tmp_path):
    path = tmp_path / "deep.png"
    _sixteen_bit_image().save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # scaled by load_image, not clipped
    assert _pixels(load_image(path))[0, 1, 0] == 128


def test_semi_transparent_pixel_is_blended_with_white(tmp_path):
    path = tmp_path / "half.png"
    Image.new("RGBA", (1, 1), (0, 0, 0, 128)).save(path)
    value = _pixels(load_image(path))[0, 0]
    assert np.all(np.abs(value - 127) <= 1)


def test_load_image_accepts_str_paths_and_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (10, 200, 30)).save(path, exif=exif)
    loaded = load_image(str(path))
    assert loaded.size == (20, 40)


def test_loaded_image_is_detached_from_the_file(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (3, 3), (1, 2, 3)).save(path)
    loaded = load_image(path)
    path.unlink()  # would fail on some systems if the file were still open
    assert _pixels(loaded)[0, 0].tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- local errors


def test_missing_file_names_the_path_and_the_samples(tmp_path):
    missing = tmp_path / "no_such_cat.jpg"
    with pytest.raises(FileNotFoundError) as info:
        load_image(missing)
    assert "no_such_cat.jpg" in str(info.value)
    assert "sample_image" in str(info.value)


def test_text_file_is_an_image_load_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageLoadError, match="notes.txt") as info:
        load_image(path)
    assert isinstance(info.value, ValueError)
    assert "not a readable image" in str(info.value)


def test_truncated_image_is_an_image_load_error(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes(Image.new("RGB", (64, 64), (5, 5, 5)))[:60])
    with pytest.raises(ImageLoadError, match="cut.png"):
        load_image(path)


def test_directory_is_an_image_load_error(tmp_path):
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_unsupported_url_scheme(tmp_path):
    with pytest.raises(ImageLoadError, match="Unsupported URL scheme"):
        load_image("ftp://example.org/cat.jpg")


# --------------------------------------------------------------------------- URLs


def _fake_response(
    content: bytes, *, status: int = 200, content_type: str = "image/png"
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 404: "Not Found"}.get(status, "")
    response._content = content
    response.headers["Content-Type"] = content_type
    response.url = "https://example.org/cat.png"
    return response


def test_url_is_fetched_with_requests_and_the_timeout(monkeypatch):
    calls = []
    payload = _png_bytes(Image.new("LA", (3, 2), (50, 255)))

    def fake_get(url, timeout, **kwargs):
        calls.append((url, timeout))
        return _fake_response(payload)

    monkeypatch.setattr(images.requests, "get", fake_get)
    img = load_image("https://example.org/cat.png", timeout=2.5)
    assert calls == [("https://example.org/cat.png", 2.5)]
    assert img.mode == "RGB" and img.size == (3, 2)
    assert _pixels(img)[0, 0].tolist() == [50, 50, 50]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (requests.Timeout("read timed out"), "no answer within the 3 s timeout"),
        (requests.ConnectionError("name resolution failed"), "connection failed"),
    ],
)
def test_network_failures_become_image_load_errors(monkeypatch, error, reason):
    def fake_get(url, timeout, **kwargs):
        raise error

    monkeypatch.setattr(images.requests, "get", fake_get)
    with pytest.raises(ImageLoadError) as info:
        load_image("https://example.org/cat.png", timeout=3)
    message = str(info.value)
    assert "Could not fetch" in message and "https://example.org/cat.png" in message
    assert reason in message
    assert "available_samples()" in message and "'cat'" in message
    assert info.value.__cause__ is error


def test_http_error_status_is_reported(monkeypatch):
    monkeypatch.setattr(
        images.requests, "get", lambda url, timeout, **kw: _fake_response(b"", status=404)
    )
    with pytest.raises(ImageLoadError, match="HTTP 404 Not Found") as info:
        load_image("https://example.org/cat.png")
    assert "available_samples()" in str(info.value)


def test_non_image_content_is_reported(monkeypatch):
    html = b"<html><body>a page about cats</body></html>"
    monkeypatch.setattr(
        images.requests,
        "get",
        lambda url, timeout, **kw: _fake_response(html, content_type="text/html"),
    )
    with pytest.raises(ImageLoadError) as info:
        load_image("https://example.org/cat.png")
    message = str(info.value)
    assert "text/html" in message and "not a readable image" in message
    assert "available_samples()" in message


def test_closed_local_port_fails_fast_with_a_helpful_message():
    url = "http://127.0.0.1:9/cat.jpg"  # discard port, closed: connection refused at once
    with pytest.raises(ImageLoadError) as info:
        load_image(url, timeout=2.0)
    message = str(info.value)
    assert url in message
    assert "Could not fetch" in message and "connection failed" in message
    assert "available_samples()" in message


def test_local_http_server_round_trip(tmp_path):
    Image.new("RGB", (5, 4), (200, 100, 50)).save(tmp_path / "served.png")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        img = load_image(f"{base}/served.png", timeout=5.0)
        assert img.size == (5, 4)
        assert _pixels(img)[0, 0].tolist() == [200, 100, 50]
        with pytest.raises(ImageLoadError, match="HTTP 404"):
            load_image(f"{base}/missing.png", timeout=5.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- collage


def test_make_collage_places_images_side_by_side_at_one_height():
    red = Image.new("RGB", (100, 50), (255, 0, 0))  # aspect 2:1
    blue = Image.new("RGBA", (30, 60), (0, 0, 255, 255))  # aspect 1:2, other mode
    collage = make_collage([red, blue], height=40)
    assert collage.mode == "RGB"
    assert collage.size == (80 + 20, 40)
    pixels = _pixels(collage)
    assert pixels[20, 40].tolist() == [255, 0, 0]
    assert pixels[20, 90].tolist() == [0, 0, 255]


def test_make_collage_of_two_samples_has_default_height():
    collage = make_collage([sample_image("cat"), sample_image("coffee")])
    assert collage.height == 224
    assert collage.width == round(451 * 224 / 300) + round(600 * 224 / 400)


def test_make_collage_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one image"):
        make_collage([])
    with pytest.raises(ValueError, match="height"):
        make_collage([Image.new("RGB", (2, 2))], height=0)
    with pytest.raises(TypeError, match="element 1"):
        make_collage([Image.new("RGB", (2, 2)), np.zeros((2, 2, 3))])


def _coloured(box: Box, pixels: np.ndarray) -> bool:
    """Every pixel inside ``box`` differs from white, and the rows and columns just outside it
    (within the canvas) are white."""
    inside = pixels[box.top:box.bottom, box.left:box.right]
    if (inside == 255).all(axis=-1).any():
        return False
    height, width = pixels.shape[:2]
    edges = [pixels[box.top:box.bottom, box.left - 1] if box.left > 0 else None,
             pixels[box.top:box.bottom, box.right] if box.right < width else None,
             pixels[box.top - 1, box.left:box.right] if box.top > 0 else None,
             pixels[box.bottom, box.left:box.right] if box.bottom < height else None]
    return all((edge == 255).all() for edge in edges if edge is not None)


def test_collage_with_boxes_says_where_each_image_lies():
    wide = Image.new("RGB", (100, 50), (255, 0, 0))  # 2:1, fills its column's width
    tall = Image.new("RGBA", (30, 60), (0, 0, 255, 255))  # 1:2, fills its column's height
    collage, boxes = collage_with_boxes([wide, tall], size=(120, 80))
    assert collage.mode == "RGB" and collage.size == (120, 80)
    assert boxes == [Box(0, 25, 60, 55), Box(70, 0, 110, 80)]
    pixels = _pixels(collage)
    assert all(_coloured(box, pixels) for box in boxes)
    assert pixels[30, 10].tolist() == [255, 0, 0] and pixels[40, 90].tolist() == [0, 0, 255]


def test_collage_of_two_samples_is_a_model_input_with_its_boxes():
    from course_lib.preprocessing import imagenet_transform, preprocess_image

    collage, (cat, coffee) = collage_with_boxes([sample_image("cat"), sample_image("coffee")])
    assert collage.size == (224, 224)
    assert cat.right <= coffee.left and cat.right - cat.left == coffee.right - coffee.left == 112
    assert (cat.bottom - cat.top, coffee.bottom - coffee.top) == (round(300 * 112 / 451), 75)
    x = preprocess_image(collage, imagenet_transform(224, 224))
    assert x.shape == (1, 3, 224, 224)
    white = x[0, :, 0, 0]  # the corner, outside both photographs: white, normalised
    assert torch.allclose(x[0, :, cat.top - 1, 50], white) and not torch.allclose(
        x[0, :, cat.top + 10, 50], white)


def test_collage_with_boxes_gives_the_last_column_the_pixels_left_over():
    squares = [Image.new("RGB", (10, 10), colour) for colour in ((9, 9, 9), (99, 99, 99),
                                                                   (199, 0, 0))]
    collage, boxes = collage_with_boxes(squares, size=(100, 30))
    assert [b.right - b.left for b in boxes] == [30, 30, 30]  # squares: limited by 33 and 34
    assert boxes[2].left == 66 + (34 - 30) // 2 and boxes[2].right <= 100
    assert all(_coloured(box, _pixels(collage)) for box in boxes)


def test_collage_with_boxes_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one image"):
        collage_with_boxes([])
    with pytest.raises(ValueError, match="size must be"):
        collage_with_boxes([sample_image("cat")], size=0)
    with pytest.raises(ValueError, match="width of at least 3"):
        collage_with_boxes([sample_image("cat")] * 3, size=(2, 10))
    with pytest.raises(TypeError, match="element 1 is ndarray"):
        collage_with_boxes([sample_image("cat"), np.zeros((4, 4, 3))])
