"""Image files as phones, browsers and attackers send them, for every test of the image path (load, predict,
explain): each is generated here, none is stored."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def with_orientation(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG as a phone writes it: pixels stored sideways, EXIF saying how to turn them upright."""
    stored = upright.transpose({6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation])
    exif = stored.getexif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A ~100-byte PNG that declares ``width`` x ``height`` grey pixels: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # four rows; the decoder must never get that far
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def file_variants(pic: Image.Image, photo: bool) -> dict[str, bytes]:
    """The same digit as each kind of file a student might upload."""
    a = np.asarray(pic)
    rgb = pic.convert("RGB")
    clear = np.zeros((32, 32, 4), np.uint8)
    clear[..., 3] = 255 - a  # black ink, where the stroke is see-through: only white behind it shows the digit
    la = np.stack([np.zeros_like(a), 255 - a], -1)
    pal = Image.fromarray(np.where(a > 127, 1, 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal_clear = Image.fromarray(np.where(a > 127, 1, 0).astype(np.uint8), "P")
    pal_clear.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    pal_clear.info["transparency"] = 1
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8))
    out = {
        "jpeg": encode(rgb, "JPEG", quality=95),
        "png": encode(rgb, "PNG"),
        "webp": encode(rgb, "WEBP", lossless=True),
        "bmp": encode(rgb, "BMP"),
        "tiff": encode(rgb, "TIFF"),
        "gif-animation": encode(pic, "GIF", save_all=True, append_images=[noise], duration=100),
        "grayscale": encode(pic, "PNG"),
        "palette": encode(pal, "PNG"),
        "1-bit": encode(pic.convert("1"), "PNG"),
        "16-bit": encode(Image.fromarray(a.astype(np.uint16) * 257), "PNG"),
        "cmyk": encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "rgba-transparent": encode(Image.fromarray(clear, "RGBA"), "PNG"),
        "la-transparent": encode(Image.fromarray(la, "LA"), "PNG"),
        "palette-transparent": encode(pal_clear, "PNG"),
        "exif-6": with_orientation(rgb.resize((64, 64)), 6),
        "exif-8": with_orientation(rgb.resize((64, 64)), 8),
    }
    if photo:  # a 24-megapixel "photo" of the digit (once: it takes a while to encode)
        out["24-megapixel"] = encode(pic.resize((6000, 4000), Image.Resampling.BICUBIC).convert("RGB"), "JPEG",
                                     quality=85)
    return out


def hostile() -> dict[str, bytes]:
    """Files the one image loader refuses, by name."""
    arr = np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)
    jpeg = encode(Image.fromarray(arr), "JPEG")
    return {"empty": b"", "html": b"<!DOCTYPE html><html><body>cat.png</body></html>",
            "truncated jpeg": jpeg[:len(jpeg) // 3], "decompression bomb": png_header_only(20_000, 20_000),
            "icon (Pillow reads it, we do not)": encode(Image.new("RGB", (16, 16), (255, 0, 0)), "ICO")}
