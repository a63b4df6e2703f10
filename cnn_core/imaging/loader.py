"""The one image loader for everything a user hands us (uploads, CLI paths, photo folders).

It decodes fully before accepting (a truncated file is refused, not half-read), refuses decompression bombs
by their declared size before decoding, turns phone photos upright (EXIF), composites transparency on
white, scales 16-bit images rather than clipping them, and returns a plain RGB or L image. It never trusts a
file name: the content decides the format.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import ImageError

MAX_BYTES = 10 * 1024 * 1024  # the upload cap (the app's server.maxUploadSize says the same)
MAX_PIXELS = 40_000_000  # a 24-megapixel phone photo passes; a few-KB file declaring 200 MP does not
PARSERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # the only Pillow plugins that ever see the bytes
FORMATS = (*PARSERS, "MPO")  # MPO: a phone's multi-picture JPEG, opened by the JPEG parser
NOT_AN_IMAGE = ("not an image file this app can read: use JPEG, PNG, WebP, BMP, GIF or TIFF "
                "(export HEIC photos as JPEG)")

# Pillow warns above this many pixels and refuses above twice as many; load_image turns the warning into a
# refusal, so a bomb is stopped by Pillow at this limit, and by our own check if another library lifts it.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _too_many_pixels(w: int | None = None, h: int | None = None) -> str:
    size = f"{w}x{h} pixels ({w * h / 1e6:.0f} MP)" if w and h else "more pixels"
    return f"image declares {size} than the {MAX_PIXELS / 1e6:.0f} MP limit allows (a decompression bomb?)"


def read_bytes(source: str | os.PathLike | bytes, max_bytes: int = MAX_BYTES) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path.name}: no such file")
        if path.stat().st_size > max_bytes:
            raise ImageError(f"{path.name}: file is larger than {max_bytes // (1024 * 1024)} MB")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise ImageError(f"file is larger than {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise ImageError("the file is empty")
    return data


def load_image(source: str | os.PathLike | bytes, draft_size: int | None = None,
               max_bytes: int = MAX_BYTES) -> Image.Image:
    """A usable image as RGB (or L for grayscale sources), upright, fully decoded; ImageError otherwise.

    ``draft_size``: for JPEG, let the decoder skip detail below this side (DCT scaling), which makes a
    12-megapixel photo decode several times faster when the model only needs 32x32.
    """
    data = read_bytes(source, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=PARSERS)
            if im.format not in FORMATS:
                raise ImageError(f"unsupported image format {im.format}; use JPEG, PNG, WebP, BMP, GIF or TIFF")
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(_too_many_pixels(w, h))
            if w < 1 or h < 1:
                raise ImageError("image has no pixels")
            if draft_size and im.format in ("JPEG", "MPO"):
                im.draft("RGB" if im.mode != "L" else "L", (draft_size, draft_size))
                im.decodermaxblock = max(im.decodermaxblock, len(data))  # all bytes in one decoder call
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animations: the first frame
            im.load()  # decode everything now: a truncated file fails here, not later
            return _to_plain_mode(_upright(im))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(_too_many_pixels()) from None
    except UnidentifiedImageError:
        raise ImageError(NOT_AN_IMAGE) from None
    except Exception as e:  # noqa: BLE001 - hostile bytes break decoders in many ways (TypeError, struct.error..)
        msg = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        if "truncated" in msg.lower():
            raise ImageError("the image file is truncated (an incomplete upload?)") from None
        raise ImageError(f"the image could not be decoded ({msg})") from None


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block costs the rotation, not the photo."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF raises struct.error, TypeError, ...
        return im


def _to_plain_mode(im: Image.Image) -> Image.Image:
    """RGB or L. Transparency goes on white, 16/32-bit integer grayscale is scaled to 8 bits."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if im.mode == "F":
            hi = max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / hi * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "P":
        pal = im.convert("RGB")
        return pal
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def to_model_array(im: Image.Image, size: int, channels: int) -> np.ndarray:
    """What the model sees: uint8 (C, size, size), the whole image resized (as training resizes folders)."""
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im)
    return arr[None].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()
