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
