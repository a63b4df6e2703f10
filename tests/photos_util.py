"""Photo folders as students bring them (mixed sizes, formats and modes), for the tests of several layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo(kind: int, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Three classes a small net separates in a few epochs, in color or gray: dark, bright, striped."""
    if kind == 0:
        a = rng.integers(0, 70, (h, w, 3))
    elif kind == 1:
        a = rng.integers(185, 256, (h, w, 3))
    else:
        a = np.zeros((h, w, 3))
        a[::4] = a[1::4] = 255
    return Image.fromarray(a.astype(np.uint8))


def save_any(im: Image.Image, base: Path, i: int) -> None:
    """Mixed sizes, formats and modes, as a phone camera roll and the web deliver them."""
    kind = i % 5
    if kind == 0:
        im.save(base.with_suffix(".jpg"), quality=90)
    elif kind == 1:
        im.convert("L").save(base.with_suffix(".png"))
    elif kind == 2:
        im.convert("RGBA").save(base.with_suffix(".png"))
    elif kind == 3:
        im.convert("P").save(base.with_suffix(".gif"))
    else:
        im.save(base.with_suffix(".webp"))


def make_folder(root: Path, counts: dict[str, int], seed: int = 0, prefix: str = "img") -> Path:
    rng = np.random.default_rng(seed)
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im = photo(k % 3, rng, int(rng.integers(12, 120)), int(rng.integers(12, 120)))
            save_any(im, root / cls / f"{prefix}{i:03d}", i)
    return root


# ------------------------------------------------------------------------------------ photos of digits on paper

FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def _font(size: int):
    """A TrueType font: the machine's DejaVu or Liberation, else Pillow's bundled one (Pillow >= 10.1 with FreeType),
    else None (the digit is drawn with thick strokes instead)."""
    from PIL import ImageFont

    for path in FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size)
    except (TypeError, AttributeError, OSError):
        return None


def _strokes(draw, digit: int, x: int, y: int, h: int, fill: int) -> None:
    """A digit of height ``h`` centred at (x, y) in thick strokes, for a machine without any TrueType font."""
    w, s = h // 2, max(3, h // 9)
    box = [x - w // 2, y - h // 2, x + w // 2, y + h // 2]
    lines = {0: None, 1: [(x, box[1]), (x, box[3])],
             4: [(box[2] - s, box[3]), (box[2] - s, box[1]), (box[0], y + h // 8), (box[2], y + h // 8)],
             7: [(box[0], box[1]), (box[2], box[1]), (x - w // 6, box[3])]}[digit]
    if lines is None:
        draw.ellipse(box, outline=fill, width=s)
    else:
        draw.line(lines, fill=fill, width=s, joint="curve")


def digit_photo(digit: int, dark_on_light: bool = True, textured: bool = False, glyph: int = 60, frame: int = 400,
                at: tuple[float, float] = (0.3, 0.62), seed: int = 0) -> Image.Image:
    """A classmate's photo of a digit: RGB, small (``glyph`` px) and off-centre in the frame, dark ink on light paper
    (or chalk on a board); ``textured``: paper grain, blotches and a shadow across the page."""
    from PIL import ImageDraw

    ink, paper = (35, 225) if dark_on_light else (225, 35)
    im = Image.new("L", (frame, frame), paper)
    draw, font, xy = ImageDraw.Draw(im), _font(glyph), (int(at[0] * frame), int(at[1] * frame))
    if font is not None:
        draw.text(xy, str(digit), fill=ink, font=font, anchor="mm")
    else:
        _strokes(draw, digit, *xy, glyph, ink)
    a = np.asarray(im, np.float32)
    if textured:
        rng = np.random.default_rng(seed)
        shadow = 60 * np.mgrid[:frame, :frame][1] / frame  # darker towards the right
        blotches = Image.fromarray(rng.normal(0, 25, (frame // 8, frame // 8)).astype(np.float32), "F")
        a = a - shadow * (1 if dark_on_light else -1) + rng.normal(0, 12, a.shape)
        a = a + np.asarray(blotches.resize((frame, frame), Image.Resampling.BILINEAR))
    rgb = np.stack([a, a * 0.97, a * 0.88], -1)  # warm light on the page
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def colourful_photo(seed: int = 0, side: int = 320) -> Image.Image:
    """A synthetic holiday snapshot: a sky-to-grass gradient with a few bright coloured shapes."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, side)[:, None, None]
    a = (1 - t) * np.array([90, 160, 235]) + t * np.array([60, 150, 50])
    im = Image.fromarray(np.repeat(a, side, 1).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(20, side - 20, 2))
        r = int(rng.integers(15, 60))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return im
