"""The one image loader against what a class of phones and browsers sends: every file is generated here.

Usable files must come out upright, in RGB or L, with transparency on white and 16-bit scaled, and must
classify; a digit drawn into each format must still be read as that digit by a real trained model (a wrong
decode, rotation or composite turns it into another class). Refused files get one clear line.
"""

from __future__ import annotations

import dataclasses
import io
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from images_util import encode, png_header_only, with_orientation
from images_util import file_variants as _variants
from PIL import Image

from cnn_core.core.errors import ImageError
from cnn_core.data import load_dataset
from cnn_core.evaluation.predictor import Predictor
from cnn_core.imaging import loader as images
from cnn_core.imaging.loader import load_image, to_model_array

RED = (255, 0, 0)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------ what comes out

@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("via", ["load_image", "predictor_draft"])
def test_exif_rotated_photo_comes_out_upright(orientation, via, request):
    upright = Image.new("RGB", (60, 30), "white")
    upright.paste(RED, (0, 0, 12, 12))  # a marker in the top-left corner of the upright picture
    data = with_orientation(upright, orientation)
    assert Image.open(io.BytesIO(data)).size == (30, 60)  # stored sideways
    if via == "load_image":
        im = load_image(data)
    else:  # the app's path: JPEG decoded at reduced size (draft), then turned
        im = Predictor.from_run(request.getfixturevalue("digits_run")).load(data)
    assert im.size == (60, 30)
    r, g, b = im.getpixel((4, 4))
    assert r > 200 and g < 80 and b < 80, im.getpixel((4, 4))
    assert im.getpixel((55, 25))[1] > 200 and im.getpixel((55, 4))[1] > 200 and im.getpixel((4, 25))[1] > 200


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(fmt):
    ramp = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    src = Image.fromarray(ramp)
    assert src.mode.startswith("I;16")
    im = load_image(encode(src, fmt))
    assert im.mode == "L"
    assert np.asarray(im)[0].tolist() == [0, 64, 128, 255]  # mid-grey stays mid-grey, not white


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode):
    if mode == "P":
        src = Image.new("P", (4, 1), 0)
        src.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        src.putpixel((3, 0), 1)
        src.info["transparency"] = 0  # palette entry 0 (black) is see-through
        data = encode(src, "PNG")
        expect = [(255, 255, 255)] * 3 + [RED]
    else:
        black = (0, 0, 0, 0) if mode == "RGBA" else (0, 0)
        half = (0, 0, 0, 128) if mode == "RGBA" else (0, 128)
        opaque = (0, 0, 0, 255) if mode == "RGBA" else (0, 255)
        src = Image.new(mode, (4, 1))
        for x, px in enumerate([black, black, half, opaque]):
            src.putpixel((x, 0), px)
        data = encode(src, "PNG")
        expect = [(255, 255, 255), (255, 255, 255), (127, 127, 127), (0, 0, 0)]
    im = load_image(data).convert("RGB")
    got = [im.getpixel((x, 0)) for x in range(4)]
    assert all(abs(a - b) <= 1 for p, q in zip(got, expect) for a, b in zip(p, q)), got


def test_cmyk_palette_one_bit_and_gray_become_plain_modes():
    cmyk = Image.new("CMYK", (8, 4), (0, 0, 0, 0))
    cmyk.paste((0, 0, 0, 255), (0, 0, 4, 4))
    for fmt in ("JPEG", "TIFF"):
        im = load_image(encode(cmyk, fmt))
        assert im.mode == "RGB"
        assert max(im.getpixel((1, 1))) < 30 and min(im.getpixel((6, 1))) > 225, fmt
    rgb = Image.new("RGB", (6, 2), (10, 200, 30))
    rgb.paste((250, 250, 0), (3, 0, 6, 2))
    pal = load_image(encode(rgb.quantize(2), "PNG"))
    assert pal.mode == "RGB" and np.abs(np.asarray(pal, int) - np.asarray(rgb, int)).max() <= 8
    bits = load_image(encode(Image.new("L", (8, 8), 200).convert("1"), "PNG"))
    assert bits.mode == "L" and set(np.unique(np.asarray(bits))) <= {0, 255}
    gray = load_image(encode(Image.new("L", (8, 8), 77), "PNG"))
    assert gray.mode == "L" and np.asarray(gray).max() == 77


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    r, g, b = load_image(data).convert("RGB").getpixel((8, 8))
    assert r > 200 and b < 50


def test_tiny_and_extreme_shapes_reach_the_model_at_its_size():
    for size in [(1, 1), (5000, 3), (3, 5000)]:
        im = load_image(encode(Image.new("RGB", size, (30, 60, 90)), "PNG"))
        assert im.size == size
        assert to_model_array(im, 32, 1).shape == (1, 32, 32)
        assert to_model_array(im, 32, 3).shape == (3, 32, 32)


def test_content_decides_the_format_not_the_name(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(encode(Image.new("RGBA", (5, 5), (0, 0, 0, 0)), "PNG"))
    im = load_image(path)
    assert im.getpixel((2, 2)) == (255, 255, 255)  # a PNG's transparency, composited: it was read as a PNG


# ---------------------------------------------------------------------------------------------- refusals

@pytest.fixture
def refused(tmp_path):
    def check(data: bytes, name: str, needle: str) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        for source in (path, data):
            with pytest.raises(ImageError) as e:
                load_image(source)
            assert needle in one_line(e), str(e.value)
        return str(e.value)
    return check


def _jpeg(seed: int = 0, size: tuple[int, int] = (200, 150)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)
    return encode(Image.fromarray(arr), "JPEG", quality=90)


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as e:
        load_image(tmp_path / "empty.jpg")
    one_line(e)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("name,content", [
    ("notes.jpg", b"Remember: bring the permission slip on Monday.\n"),
    ("page.png", b"<!DOCTYPE html><html><body><img src='cat.png'></body></html>"),
    ("script.jpg", b"#!/bin/sh\nrm -rf /\n"),
    ("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)),
])
def test_text_html_and_unknown_formats_are_refused(refused, name, content):
    msg = refused(content, name, "not an image file")
    assert "JPEG, PNG" in msg and "HEIC" in msg  # says what would work


def test_formats_outside_the_list_are_refused(refused):
    ico = encode(Image.new("RGB", (16, 16), RED), "ICO")
    assert Image.open(io.BytesIO(ico)).format == "ICO"  # Pillow itself would open it
    refused(ico, "icon.png", "image")


@pytest.mark.parametrize("kind", ["jpeg", "progressive-jpeg", "png"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_files_are_refused_after_a_full_decode(refused, kind, keep):
    arr = np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)
    kw = {"progressive": True} if kind == "progressive-jpeg" else {}
    data = encode(Image.fromarray(arr), "PNG" if kind == "png" else "JPEG", **kw)
    cut = data[:int(len(data) * keep)]
    if kind != "png":
        Image.open(io.BytesIO(cut)).verify()  # Pillow's verify() passes it: only decoding every pixel tells
    refused(cut, f"upload.{'png' if kind == 'png' else 'jpg'}", "truncated")


def test_decompression_bomb_is_refused_before_decoding(refused):
    bomb = png_header_only(20_000, 20_000)  # declares 400 MP (400 MB as grey, 1.2 GB as RGB)
    assert len(bomb) < 2048
    msg = refused(bomb, "cute-cat.png", "decompression bomb")
    assert "40 MP" in msg


def test_bomb_is_refused_even_if_another_library_lifts_pillows_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # some libraries do this to silence the warning
    with pytest.raises(ImageError, match="20000x20000 pixels") as e:
        load_image(png_header_only(20_000, 20_000))
    one_line(e)


def test_pillows_lowered_limit_and_its_warning_stop_a_bomb_on_their_own(monkeypatch):
    """With our own size check out of the way, Pillow's limit (lowered to ours) and its warning, turned into
    an error, still stop a 60 MP header before decoding; Pillow's default limit would let it through."""
    monkeypatch.setattr(images, "MAX_PIXELS", 10**12)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 60_000_000
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(png_header_only(10_000, 6_000))


def test_files_over_the_size_cap_are_refused_without_reading_them(tmp_path, monkeypatch):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(images.MAX_BYTES + 1)  # sparse: no disk used
    monkeypatch.setattr(type(big), "read_bytes", lambda self: pytest.fail("read a file over the cap"))
    with pytest.raises(ImageError, match="larger than 10 MB") as e:
        load_image(big)
    one_line(e)
    monkeypatch.undo()
    with pytest.raises(ImageError, match="larger than 10 MB"):
        load_image(_jpeg() + bytes(images.MAX_BYTES))


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow comments on each broken file
def test_mangled_files_only_ever_raise_image_error():
    """Seeded byte-flips in headers and EXIF of every accepted format: decoders fail with TypeError,
    struct.error, ...; the user must still get one line, never a traceback."""
    arr = np.random.default_rng(2).integers(0, 255, (40, 30, 3), np.uint8)
    src = Image.fromarray(arr)
    exif = src.getexif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    seeds = [encode(src, f, exif=exif.tobytes()) for f in ("JPEG", "PNG", "WEBP", "TIFF")]
    seeds += [encode(src, "GIF"), encode(src, "BMP"), encode(src, "TIFF", compression="tiff_lzw")]
    rng = random.Random(5)
    loaded = refused = 0
    for _ in range(2500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.choice([1, 2, 4, 8])):
            data[rng.randrange(min(300, len(data)))] = rng.randrange(256)
        try:
            im = load_image(bytes(data))
            assert im.mode in ("L", "RGB")
            loaded += 1
        except ImageError as e:
            assert "\n" not in str(e)
            refused += 1
    assert loaded > 100 and refused > 100  # both paths were exercised


# ------------------------------------------------------------------------------------- usable: it classifies

@pytest.fixture(scope="module")
def reader(digits_run):
    """The trained digits model, and digit pictures (32x32, as the model saw them) that it reads correctly
    and confidently, but not when they are turned sideways, inverted, blank white or blank black: so a
    decoding mistake in any format shows up as a wrong answer."""
    # without the digit preparation (tests/imaging/test_digits.py): it would undo an inverted image, so a
    # transparency composited on black instead of white would go unnoticed
    p = dataclasses.replace(Predictor.from_run(digits_run), prepare=None)
    ds = load_dataset("digits")
    x = F.interpolate(ds.x_test[:120].float(), size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    pics = [Image.fromarray(a[0].numpy(), "L") for a in x.round().clamp(0, 255).to(torch.uint8)]
    blank = {int(p.probabilities([Image.new("L", (32, 32), v)]).argmax()) for v in (0, 255)}

    def label(ims: list[Image.Image]) -> np.ndarray:
        return p.probabilities(ims).argmax(1)

    probs = p.probabilities(pics)
    bad_views = [label([im.transpose(t) for im in pics])
                 for t in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)]
    bad_views.append(label([Image.fromarray(255 - np.asarray(im)) for im in pics]))
    dithered = label([im.convert("1").convert("L") for im in pics])
    threshold = label([Image.fromarray(np.where(np.asarray(im) > 127, 255, 0).astype(np.uint8)) for im in pics])
    chosen: dict[int, Image.Image] = {}
    for i, im in enumerate(pics):
        y = int(ds.y_test[i])
        if (probs[i].argmax() == y and probs[i].max() > 0.9 and dithered[i] == y and threshold[i] == y
                and y not in blank and all(v[i] != y for v in bad_views) and y not in chosen):
            chosen[y] = im
    assert len(chosen) >= 3, "the digits model should read several digits confidently"
    return p, [(p.classes[y], im) for y, im in list(chosen.items())[:3]]


def test_every_usable_format_is_read_as_the_right_digit(reader, tmp_path):
    p, digits = reader
    for n, (label, pic) in enumerate(digits):
        variants = _variants(pic, photo=n == 0)
        sources = list(variants.values())
        names = list(variants)
        named_wrong = tmp_path / f"digit-{label}.jpg"  # a PNG whose name ends in .jpg, by path as the CLI does
        named_wrong.write_bytes(variants["png"])
        results = p.predict_files([*sources, named_wrong], k=3, names=[*names, "png-named-jpg"])
        wrong = {r["image"]: r.get("error") or r["top_k"][0]["label"] for r in results
                 if r.get("error") or r["top_k"][0]["label"] != label}
        assert not wrong, f"digit {label}: {wrong}"
        if n == 0:
            photo = variants["24-megapixel"]
            assert len(photo) < images.MAX_BYTES and load_image(photo).size == (6000, 4000)  # in full too

def test_odd_shapes_classify_and_bad_files_do_not_stop_the_rest(reader):
    p, _ = reader
    sources = [encode(Image.new("L", (1, 1), 255), "PNG"), b"<html></html>",
               encode(Image.new("RGB", (5000, 3), (90, 90, 90)), "PNG"), _jpeg()[:2000]]
    res = p.predict_files(sources, k=10)
    assert [("error" in r) for r in res] == [False, True, False, True]
    for r in (res[0], res[2]):
        assert {t["label"] for t in r["top_k"]} == set(p.classes)
        assert abs(sum(t["probability"] for t in r["top_k"]) - 1) < 1e-3
