"""A photo of a handwritten digit prepared the way MNIST's images were made, for models trained on digits.

MNIST digits are light ink on black, the ink's longer side scaled to 20 px (anti-aliased, aspect kept) and
centred by its centre of mass in a 28x28 frame; scikit-learn's 8x8 digits are light ink on black too, and fill
their frame's height. A classmate's photo is dark ink on light paper, small and off-centre, with paper grain
and a shadow: read as it is, the MNIST demo got 2 of 4 printed digits right; prepared, 8 of 8 at 90-100%.
MNIST's own test images come through almost unchanged (the demo: 98.9% raw, 98.7% prepared, n=1000).

The steps are ``STEPS`` (in words, for preprocessing.json, so code without cnn_core can repeat them). Pure
numpy and Pillow; about 5-10 ms a photo.

The same measurements tell when a photo does not look like a digit at all (``DigitView.problem``, for a
warning beside the answer): no ink, a colourful background, many pieces, ink filling the picture, or shapes
that are not pen strokes. Measured with the demo: 1 of 1,040 digits flagged (MNIST, MNIST digits on photographed
paper, scikit-learn's digits at 8x8 and 32x32, printed digits); CIFAR-10 test photos 84-88% flagged, 91% warned
(flagged or under 50% sure). tests/imaging/test_digits.py holds the checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

WORK_SIDE = 256  # px: the photo is analysed at most this large (a 60 px digit in 400 px keeps ~40 px)
SMOOTH = 1.0  # px at WORK_SIDE: a slight blur before anything else, against sensor noise and paper grain
GRID = 32  # px: the picture is shrunk to GRID x GRID to estimate its background
NEIGHBOURHOOD = 13  # px of GRID: the background is a low percentile of each such neighbourhood there
BACKGROUND_PERCENTILE = 20  # the background, as long as ink covers under 80% of a neighbourhood
SHADOW = 60  # grey levels: the most a shadow may darken the paper compared with the picture as a whole
NOISE = 6  # robust standard deviations of the background that ink must exceed ...
SEPARATED = 0.78  # ... unless Otsu's split explains this share of the variance (digits: 0.80-0.95; grain: ~0.7)
MIN_CONTRAST = 40  # grey levels (of 255) the ink must stand out from the background by (median of the ink)
KEEP = 0.12  # pieces of ink at least this fraction of the largest piece are part of the digit
EDGE = 0.1  # of the ink threshold: where the ink's faint anti-aliased edge ends (MNIST's 20 px box includes it)
MARGIN = 0.08  # of the ink's longer side, kept around the crop so the resize sees the edges
STROKE = 0.12  # the stroke width MNIST's digits have, as a fraction of the box (2.4 px of 20)
# Beyond these a photo does not look like a digit. Digits measured: background colourfulness <= 3, at most 3
# pieces, stroke width 0.10-0.30 of the longer side; CIFAR-10 photos mostly beyond. (Ink touching the border is
# no sign: a photo cropped tight to the digit does that, and so does every scikit-learn digit.)
COLOURFUL = 12.0  # colour spread of the background (Hasler and Suesstrunk's opponent channels, no mean term)
MAX_PIECES = 3  # large pieces of ink (a 4 or a 5 written in two strokes has two)
STROKES = (0.07, 0.33)  # stroke width over the ink's longer side: thinner is a line drawing, wider a blob
STROKES_FROM = 24  # px: judged only on ink at least this large (an 8x8 digit's strokes are 1/3 of it)
MAX_COVER = 0.60  # fraction of the picture the ink may cover (a bold 8x8 scikit-learn digit covers ~0.4)

MNIST_BOX = 20 / 28  # the longer side of an MNIST digit in its frame
STEPS = [
    "convert to grayscale (L = 0.299 R + 0.587 G + 0.114 B); shrink (box filter) so the longer side is at "
    f"most {WORK_SIDE} px; Gaussian blur of radius {SMOOTH} x longer side / {WORK_SIDE}",
    "polarity: if the median of the outer 1/16 of the image (on each side) is above the middle of the "
    "image's 0.1th and 99.9th percentiles, invert it (light paper -> light ink on black)",
    f"background: shrink to {GRID}x{GRID} (box filter), take the {BACKGROUND_PERCENTILE}th percentile of each "
    f"{NEIGHBOURHOOD}x{NEIGHBOURHOOD} neighbourhood, resize back bilinearly, cap at the whole image's "
    f"{BACKGROUND_PERCENTILE}th percentile + {SHADOW}; subtract it, clip at 0 -> signal",
    f"ink threshold: t = the larger of Otsu's threshold of the signal and {MIN_CONTRAST // 2}; unless Otsu's "
    f"between-class variance is at least {SEPARATED} of the total, the larger of t and the signal's median + "
    f"{NOISE} x 1.4826 x its median absolute deviation",
    f"ink: the 8-connected pieces above the threshold whose area is at least {KEEP} of the largest piece; "
    f"no digit if there are none or their median signal is below {MIN_CONTRAST}",
    "keep the signal within 2 px (4-neighbour dilation) of the kept ink, zero elsewhere; crop to where that "
    f"exceeds {EDGE} x the threshold, plus {MARGIN} of its longer side on each side; scale so the kept ink's "
    "90th percentile is 255, clip to 0..255",
    f"stroke width = 2 x ink area / ink boundary pixels; if below {STROKE} x the ink's longer side, grey-dilate "
    "(4-neighbour max) by half the difference, in whole pixels",
    "resize (Lanczos) so the ink's longer side becomes box x size (aspect kept)",
    "trim to the pixels >= 0.5, paste into a black size x size frame so the centre of mass lands on pixel "
    "(size/2, size/2), moved back inside where it would stick out; round to uint8",
]


@dataclass(frozen=True)
class DigitView:
    """The prepared image (uint8, light ink on black, size x size) and why the photo does not look like a
    digit (None when it does)."""

    image: np.ndarray
    problem: str | None


def prepare_digit(im: Image.Image, size: int, box: float = MNIST_BOX) -> DigitView:
    """``im`` as a digit model's training images look: see the module docstring."""
    small = _shrink(im.convert("L"))  # grayscale first, as STEPS says, so a gray copy of the photo gives the same
    gray = np.asarray(small.filter(ImageFilter.GaussianBlur(SMOOTH * max(small.size) / WORK_SIDE)), np.float32)
    ink_up = _ink_up(gray)
    signal = np.clip(ink_up - _background(ink_up), 0, None)
    level = ink_level(signal)
    pieces = _pieces(signal > level)
    keep = pieces.kept()
    if not keep.any() or float(np.median(signal[keep])) < MIN_CONTRAST:
        return DigitView(np.zeros((size, size), np.uint8), "no ink stands out from the background")
    soft = signal * _grow(keep, 2)  # the kept ink with its anti-aliased edges
    return DigitView(_render(soft, keep, soft > level * EDGE, size, box), _problem(im, keep, pieces))


def _shrink(im: Image.Image) -> Image.Image:
    scale = WORK_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.BOX)
    return im


def otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold of ``values`` (0..255), the level that best splits them into two classes, and how
    well it does: the between-class share of the variance (0.64 for a plain bell curve, ~0.9 for ink on paper)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    best = int(np.argmax(between))
    total = float((hist * (levels - m0[-1] / max(w0[-1], 1)) ** 2).sum()) * w0[-1]
    return best + 0.5, float(between[best]) / total if total > 0 else 0.0


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    bh, bw = max(1, h // 16), max(1, w // 16)
    return np.concatenate([a[:bh].ravel(), a[-bh:].ravel(), a[:, :bw].ravel(), a[:, -bw:].ravel()])


def _ink_up(gray: np.ndarray) -> np.ndarray:
    """Light ink on a dark background, as MNIST has it: a border lighter than the middle of the image's range
    (its 0.1th to 99.9th percentile, so a small digit's ink still counts) means paper, which is inverted."""
    lo, hi = np.percentile(gray, [0.1, 99.9])
    return 255 - gray if float(np.median(_border(gray))) > (lo + hi) / 2 else gray


def ink_level(signal: np.ndarray) -> float:
    """Where ink starts: Otsu's threshold when it separates two clear classes; otherwise the ink is a small
    part of the picture and Otsu is splitting the paper's grain, so at least NOISE robust deviations above
    the median (which is paper)."""
    level, separation = otsu(signal)
    level = max(level, MIN_CONTRAST / 2)
    if separation >= SEPARATED:
        return level
    med = float(np.median(signal))
    return max(level, med + NOISE * 1.4826 * float(np.median(np.abs(signal - med))))


def _background(a: np.ndarray) -> np.ndarray:
    """A smooth estimate of the background under light ink (a shadow's gradient, uneven light): a low
    percentile of each neighbourhood of the picture shrunk to GRID x GRID, resized back up. Never more than
    SHADOW above the whole picture's percentile: where a bold digit fills a neighbourhood, it is not paper."""
    h, w = a.shape
    small = Image.fromarray(a, "F").resize((GRID, GRID), Image.Resampling.BOX)
    n = NEIGHBOURHOOD
    low = small.convert("L").filter(ImageFilter.RankFilter(n, n * n * BACKGROUND_PERCENTILE // 100))
    cap = float(np.percentile(a, BACKGROUND_PERCENTILE)) + SHADOW
    return np.minimum(np.asarray(low.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32), cap)


@dataclass
class _Pieces:
    """The 8-connected pieces of a mask, from its runs of pixels (row, start, end) and their piece labels."""

    shape: tuple[int, int]
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    area: np.ndarray  # per label

    def kept(self) -> np.ndarray:
        """The mask of the large pieces (paper grain and noise make only specks)."""
        out = np.zeros(self.shape, bool)
        if not len(self.area):
            return out
        big = self.area >= KEEP * self.area.max()
        for r, s, e in zip(self.row[big[self.label]], self.start[big[self.label]], self.end[big[self.label]]):
            out[r, s:e] = True
        return out

    def count_large(self) -> int:
        return int((self.area >= KEEP * self.area.max()).sum()) if len(self.area) else 0


def _pieces(mask: np.ndarray) -> _Pieces:
    """Label the runs of each row, then join runs that touch a run of the row above (8-connectivity)."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    row, start = np.nonzero(edges == 1)
    end = np.nonzero(edges == -1)[1]
    n = len(row)
    stride = w + 2
    # runs of the row above that overlap [start - 1, end] of each run: a contiguous range of the sorted runs
    lo = np.searchsorted(row * stride + end, (row - 1) * stride + start, side="left")
    hi = np.searchsorted(row * stride + start, (row - 1) * stride + end, side="right")
    count = np.clip(hi - lo, 0, None)
    a = np.repeat(np.arange(n), count)
    b = (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)) + np.repeat(lo, count)
    label = _join(n, a, b)
    _, label = np.unique(label, return_inverse=True)
    area = np.bincount(label, weights=end - start).astype(np.int64) if n else np.zeros(0, np.int64)
    return _Pieces((h, w), row, start, end, label, area)


def _join(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of a graph on ``n`` nodes with edges (a, b): the smallest node of each."""
    label = np.arange(n)
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # pointer jumping: follow labels to their own labels
        if np.array_equal(new, label):
            return label
        label = new


def _problem(im: Image.Image, keep: np.ndarray, pieces: _Pieces) -> str | None:
    """Why the photo does not look like a digit, or None (the limits are measured: see the constants)."""
    if im.mode not in ("L", "1", "I", "F", "I;16"):
        rgb = _shrink(im.convert("RGB"))
        background = np.asarray(rgb, dtype=np.float32)[~_grow(keep, 3)]
        if len(background) and colourfulness(background) > COLOURFUL:
            return "a colourful photo"
    if pieces.count_large() > MAX_PIECES:
        return f"{pieces.count_large()} separate shapes"
    if keep.mean() > MAX_COVER:
        return "the shape fills most of the picture"
    rows, cols = np.nonzero(keep)
    longer = max(np.ptp(rows) + 1, np.ptp(cols) + 1)
    ratio = stroke_width(keep) / longer
    if longer >= STROKES_FROM and not STROKES[0] <= ratio <= STROKES[1]:
        return "solid shapes, not pen strokes" if ratio > STROKES[1] else "thin lines, not pen strokes"
    return None


def stroke_width(ink: np.ndarray) -> float:
    """The mean stroke width of a mask in pixels: 2 x area / boundary pixels (a w x L stroke has ~2L)."""
    p = np.pad(ink, 1)
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    area = int(ink.sum())
    return 2 * area / max(area - int(inner.sum()), 1)


def colourfulness(rgb: np.ndarray) -> float:
    """How much the colours of (..., 3) pixels vary (Hasler and Suesstrunk 2003 without their mean term, so
    tinted paper or warm light counts as plain): 0 for gray, ~1.5 for paper, ~18 for a typical photo."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()))


def _render(signal: np.ndarray, keep: np.ndarray, extent: np.ndarray, size: int, box: float) -> np.ndarray:
    """Crop the kept ink to its ``extent`` (with the faint edges the threshold leaves out), scale its longer
    side to ``box`` of the frame, centre it by mass."""
    rows, cols = np.nonzero(extent)
    if not len(rows):
        return np.zeros((size, size), np.uint8)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    longer = max(r1 - r0, c1 - c0)
    m = int(np.ceil(MARGIN * longer)) + 1
    crop = np.pad(signal, m)[r0:r1 + 2 * m, c0:c1 + 2 * m]
    crop = np.clip(crop * (255 / max(float(np.percentile(signal[keep], 90)), 1.0)), 0, 255)
    crop = _thicken(crop, keep[r0:r1, c0:c1], longer)
    scale = box * size / longer
    w, h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), "F").resize((w, h), Image.Resampling.LANCZOS))
    small = np.clip(small, 0, 255)
    return _centre(small, size)


def _thicken(crop: np.ndarray, ink: np.ndarray, longer: int) -> np.ndarray:
    """Grey dilation when the strokes are thin for the box (a fine pen on a big digit would shrink to a faint
    trace)."""
    return _grow(crop, int(round((STROKE * longer - stroke_width(ink)) / 2)))


def _grow(a: np.ndarray, steps: int) -> np.ndarray:
    """Grey (or binary) dilation by ``steps`` pixels, one 4-neighbour step at a time."""
    for _ in range(max(0, steps)):
        p = np.pad(a, 1)
        a = np.maximum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
    return a


def _centre(small: np.ndarray, size: int) -> np.ndarray:
    """Paste so the centre of mass lands at the frame's centre, shifted back inside when it would stick out."""
    rows, cols = np.nonzero(small >= 0.5)  # what rounds to black is margin, free to leave the frame
    if not len(rows):
        return np.zeros((size, size), np.uint8)
    small = small[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = small.shape
    total = float(small.sum())
    ys, xs = np.mgrid[:h, :w]
    cy, cx = float((ys * small).sum()) / total, float((xs * small).sum()) / total
    top = int(round(size / 2 - cy))  # MNIST: the centre of mass at pixel (14, 14) of 28x28
    left = int(round(size / 2 - cx))
    top = min(max(top, min(0, size - h)), max(0, size - h))
    left = min(max(left, min(0, size - w)), max(0, size - w))
    frame = np.zeros((size, size), np.float32)
    ys0, xs0 = max(0, top), max(0, left)
    sy, sx = ys0 - top, xs0 - left
    hh, ww = min(h - sy, size - ys0), min(w - sx, size - xs0)
    frame[ys0:ys0 + hh, xs0:xs0 + ww] = small[sy:sy + hh, sx:sx + ww]
    return np.round(frame).astype(np.uint8)
