"""The 1/8-scale JPEG decoder (cnn_core.jpegdc): the same pixels as Pillow's draft decode on every layout it
takes, on one thread or two wherever the second one starts guessing, Pillow for everything else, and damaged
files that never crash it."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_core import images, jpegdc
from cnn_core.errors import ImageError

ROOT = Path(__file__).resolve().parents[1]


def photo(w: int, h: int, seed: int = 0, mode: str = "RGB", **save) -> bytes:
    """A photo-like JPEG: smooth random shapes (a bicubic blow-up of noise), saved with ``save`` options."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 9), max(2, w // 9), 3), np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    return buf.getvalue()


def pillow_eighth(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    im.draft(im.mode, (im.width // 8, im.height // 8))
    im.load()
    return np.asarray(im)


@pytest.fixture(scope="module", autouse=True)
def compiled():
    assert jpegdc.library() is not None, f"the fast JPEG decoder could not be built: {jpegdc.unavailable()}"


LAYOUTS = [  # (width, height, Pillow save options)
    (640, 480, {"subsampling": 2, "quality": 90}),  # 4:2:0, the phone default
    (517, 389, {"subsampling": 2, "quality": 75}),  # sizes that are no multiple of an MCU
    (333, 250, {"subsampling": 1, "quality": 95}),  # 4:2:2
    (301, 203, {"subsampling": 0, "quality": 60}),  # 4:4:4
    (480, 360, {"subsampling": 2, "quality": 85, "optimize": True}),  # the file's own Huffman tables
    (400, 300, {"subsampling": 2, "quality": 20}),  # coarse quantisation, many empty blocks
    (400, 300, {"subsampling": 2, "quality": 100}),  # fine quantisation, long codes
    (256, 200, {"subsampling": 2, "restart_marker_blocks": 7}),  # restart markers
    (250, 170, {"subsampling": 0, "restart_marker_rows": 1}),
    (16, 16, {"subsampling": 2}),  # the smallest size with a 1/8 scale: 2x2 pixels
]


@pytest.mark.parametrize("w,h,save", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_colour_photos_decode_to_exactly_pillows_pixels(w, h, save, threads):
    data = photo(w, h, seed=w, **save)
    got = jpegdc.decode_eighth(data, threads)
    assert got is not None
    want = pillow_eighth(data)
    assert got.shape == want.shape == ((h + 7) // 8, (w + 7) // 8, 3)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("w,h,save", [(409, 307, {}), (640, 480, {"optimize": True}),
                                      (300, 200, {"restart_marker_rows": 2})])
def test_grey_photos_decode_to_exactly_pillows_pixels(w, h, save):
    data = photo(w, h, seed=3, mode="L", **save)
    for threads in (1, 2):
        got = jpegdc.decode_eighth(data, threads)
        assert got is not None and got.ndim == 2
        np.testing.assert_array_equal(got, pillow_eighth(data))


def test_the_two_threads_meet_and_any_starting_point_gives_the_same_pixels():
    data = photo(1600, 1200, seed=7, subsampling=2, quality=92)
    want = pillow_eighth(data)
    alone, met = jpegdc.decode(data, threads=1)
    assert met == 0
    np.testing.assert_array_equal(alone, want)
    total, meetings = (1600 // 16) * (1200 // 16), []
    for _ in range(5):  # a busy machine may schedule the second thread too late to meet; then the first
        both, met = jpegdc.decode(data, threads=2)  # decodes alone, with the same pixels
        np.testing.assert_array_equal(both, want)
        meetings.append(met)
        if 0.3 * total < met < 0.7 * total:
            break
    assert 0.3 * total < meetings[-1] < 0.7 * total, meetings  # the second thread took over about half
    # wherever the second thread starts guessing (even inside a marker-free run of bytes it can never
    # meet from, or right at the end), the first thread's exact hand-over keeps the pixels the same
    scan = len(jpegdc.parse(data).scan)
    for split in (1, 17, scan // 10, scan // 3, (2 * scan) // 3, scan - 40, scan - 1):
        got, _ = jpegdc.decode(data, threads=2, split=split)
        np.testing.assert_array_equal(got, want, err_msg=f"second thread from byte {split}")


@pytest.mark.parametrize("save,mode", [({"progressive": True}, "RGB"), ({"keep_rgb": True}, "RGB"),
                                       ({}, "CMYK")])
def test_files_it_does_not_take_are_left_to_pillow(save, mode):
    data = photo(480, 320, mode=mode, **save)
    assert jpegdc.decode_eighth(data) is None
    got = images.load_image(data, draft_size=32)  # the loader still decodes them, through Pillow
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (32, 32))
    assert got.size == im.size == (60, 40)


def test_a_truncated_photo_is_refused_as_before():
    data = photo(800, 600, subsampling=2)
    cut = data[: len(data) * 2 // 3]
    for threads in (1, 2):
        assert jpegdc.decode_eighth(cut, threads) is None
    with pytest.raises(ImageError, match="truncated"):
        images.load_image(cut, draft_size=32)


def test_the_loader_uses_it_for_big_jpegs_with_the_same_result_and_orientation(monkeypatch):
    im = Image.open(io.BytesIO(photo(960, 640, seed=5, subsampling=2)))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": a phone held upright
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=90)
    data = buf.getvalue()
    calls = []
    real = jpegdc.decode_eighth
    monkeypatch.setattr(jpegdc, "decode_eighth", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    fast = images.load_image(data, draft_size=32)
    assert len(calls) == 1 and calls[0] is not None  # decoded by jpegdc
    monkeypatch.setattr(jpegdc, "decode_eighth", lambda *a, **k: None)
    slow = images.load_image(data, draft_size=32)  # Pillow's draft decode, as before
    assert fast.size == slow.size == (80, 120)  # upright: portrait
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(slow))
    images.load_image(photo(200, 150), draft_size=32)  # under 8x the model's size: no 1/8 decode asked
    assert len(calls) == 1


def test_without_a_c_compiler_images_still_load_through_pillow(tmp_path):
    data = photo(640, 480, subsampling=2)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    code = ("import json, sys, numpy as np; from cnn_core import jpegdc, images; "
            "im = images.load_image(sys.argv[1], draft_size=32); "
            "print(json.dumps([jpegdc.unavailable(), np.asarray(im).tolist()]))")
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "CNN_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    why, pixels = json.loads(out.stdout)
    assert why and "no-such-cc" in why
    assert np.array_equal(np.asarray(pixels, np.uint8), pillow_eighth(data))


FUZZ = r"""
import io, json, sys
import numpy as np
from PIL import Image, ImageFile
from cnn_core import jpegdc

def pillow(data):
    try:
        im = Image.open(io.BytesIO(data)); im.draft(im.mode, (im.width // 8, im.height // 8)); im.load()
        return np.asarray(im)
    except Exception:
        return None

rng = np.random.default_rng(int(sys.argv[1]))
bases = [open(p, "rb").read() for p in sys.argv[2:]]
accepted = refused = differ = 0
for i in range(150):
    data = bytearray(bases[i % len(bases)])
    start = data.find(b"\xff\xda")  # damage the scan mostly, the headers sometimes
    lo = 2 if i % 5 == 0 else start
    for _ in range(int(rng.integers(1, 6))):
        at = int(rng.integers(lo, len(data)))
        data[at] = int(rng.integers(0, 256))
    if i % 7 == 0:
        data = data[: int(rng.integers(start, len(data)))]
    data = bytes(data)
    split = int(rng.integers(0, len(data)))
    for threads, s in ((1, 0), (2, 0), (2, split)):
        got, _ = jpegdc.decode(data, threads, s)
        if got is None:
            refused += 1
            continue
        accepted += 1
        want = pillow(data)
        if want is None or want.shape != got.shape or not np.array_equal(want, got):
            differ += 1
print(json.dumps({"accepted": accepted, "refused": refused, "differ": differ}))
"""


def test_damaged_files_are_decoded_like_pillow_or_refused_and_never_crash(tmp_path):
    """Random damage to headers and entropy-coded data, truncation, and odd second-thread starts, in a child
    process (a memory error would kill it, and fail here, rather than take pytest down)."""
    bases = []
    for i, (w, h, save) in enumerate([(320, 240, {"subsampling": 2}), (200, 136, {"subsampling": 0}),
                                      (256, 200, {"subsampling": 2, "restart_marker_blocks": 5}),
                                      (240, 180, {"subsampling": 1, "optimize": True})]):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(photo(w, h, seed=i, **save))
        bases.append(str(p))
    bases.append(str(tmp_path / "grey.jpg"))
    Path(bases[-1]).write_bytes(photo(256, 256, mode="L"))
    out = subprocess.run([sys.executable, "-c", FUZZ, "11", *bases], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, f"the decoder crashed (exit {out.returncode}): {out.stderr[-2000:]}"
    counts = json.loads(out.stdout)
    assert counts["differ"] == 0, counts
    assert counts["accepted"] > 50 and counts["refused"] > 50, counts  # both outcomes were exercised
