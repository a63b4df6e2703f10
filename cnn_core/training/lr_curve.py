"""The learning-rate finder's curve, read without torch: smoothing, the suggestion rules, the result and its file.
(``lr_find`` trains to make the curve; this module is light, so the command line's parser and the app's job
manager can use it without loading torch.)

The loss of a single batch is noisy, so it is smoothed with an exponential moving average (beta 0.98, bias-
corrected as in Adam: the first values are not pulled towards 0). The finder stops when the smoothed loss
exceeds 4x the lowest so far (the loss has exploded: larger rates only tell the same story) or is not finite.

Suggestion rules, as fastai names them (on the smoothed curve without its first 10% and last 5 points, where
the average is still settling and where the explosion begins):
- **valley** (the default, fastai's since 2.5): L, the length of the longest sequence of points each lower than
  an earlier one; the valley is the L points that end at that sequence's lowest point, and the suggestion the
  rate halfway along them (in log scale). It sits where the loss falls steadily, away from both the flat start
  and the cliff at the end.
- **steepest**: the rate where the smoothed loss falls fastest per decade, before its lowest point (after it, a
  loss that blew up can fall back to chance level: LeNet-5 with SGD on digits does). One noisy dip can place it
  anywhere, which is why it is no longer the default.
On digits (100 batches, fp32), the valley rule said 0.018 for LeNet-5 with SGD at batch 128 (its default is
0.02; tests/training/test_lr_find.py trains with it past 90% in 10 epochs), 0.0013 for LeNet-5 with Adam (Adam's
usual 0.001) and 0.0013 for simple_cnn with SGD at batch 64; the steepest rule said 0.12, 0.0085 and 0.055.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CnnError
from ..core.files import read_json, write_json

START, END, STEPS = 1e-7, 10.0, 100  # learning rates (as --lr gives them) and mini-batches
BETA = 0.98  # smoothing of the loss: an average over about 1 / (1 - BETA) = 50 batches
EXPLODE = 4.0  # stop once the smoothed loss exceeds this many times its lowest
MIN_POINTS = 12  # a curve shorter than this (after trimming its ends) suggests nothing
RULES = ("valley", "steepest")

WHY = {"valley": "valley rule: halfway along the longest stretch where the smoothed loss falls (fastai's "
                 "default; steadier than the steepest point, which one noisy dip can move)",
       "steepest": "steepest rule: where the smoothed loss falls fastest per decade of learning rate (can be "
                   "moved by one noisy dip; the valley rule is steadier)"}


@dataclass
class LrFindResult:
    """The curve (``lrs``: the rate each batch trained at, as --lr gives it; ``losses`` per batch; ``smoothed``)
    and what it suggests: ``suggestion`` by ``rule`` (``why`` says how), both rules' rates, and ``falling``,
    the rates where the valley (the longest stretch where the smoothed loss falls) begins and ends."""

    model: str
    dataset: str
    optimizer: str
    batch_size: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    rule: str
    why: str
    valley: float
    steepest: float
    falling: tuple[float, float]
    minimum: float  # the rate at the lowest smoothed loss
    stopped: str  # why the curve ends where it does
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "falling": list(self.falling)}


class Smoother:
    """The bias-corrected moving average of the loss, and whether it has exploded."""

    def __init__(self, beta: float = BETA, explode: float = EXPLODE) -> None:
        self.beta, self.explode, self.avg, self.n, self.lowest = beta, explode, 0.0, 0, math.inf

    def add(self, loss: float) -> float:
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta ** self.n)
        self.lowest = min(self.lowest, smooth)
        return smooth

    def exploded(self, smooth: float) -> bool:
        return smooth > self.explode * self.lowest


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, Any]:
    """Both rules on a smoothed curve: ``valley`` and ``steepest`` rates, ``falling`` (the valley's ends) and
    ``minimum``. The first 10% and the last 5 points are left out (see the module's docstring)."""
    lo, hi = len(lrs) // 10, len(lrs) - 5
    xs, ys = lrs[lo:hi], smoothed[lo:hi]
    if len(xs) < MIN_POINTS:
        raise CnnError(f"the loss exploded after only {len(lrs)} batches, too soon to suggest a rate; check the "
                       "dataset, or try a smaller batch size")
    first, mid, last = _valley(ys)
    lowest = min(range(len(ys)), key=ys.__getitem__)
    # before the lowest point only: a loss that blew up may come down again to chance level (every class alike)
    slopes = [(ys[k + 1] - ys[k]) / (math.log10(xs[k + 1]) - math.log10(xs[k])) for k in range(max(lowest, 1))]
    steep = min(range(len(slopes)), key=slopes.__getitem__)
    return {"valley": xs[mid], "steepest": xs[steep], "falling": (xs[first], xs[last]), "minimum": xs[lowest]}


def _valley(ys: list[float]) -> tuple[int, int, int]:
    """fastai's ``valley``, faithfully: ``length``, the longest strictly decreasing subsequence of ``ys``; the
    valley is the ``length`` points ending where that subsequence ends (its lowest point), and the suggestion
    halfway along it. Returns (first, suggested, last) indices. (The points of a decreasing subsequence may be
    far apart when the start of the curve is flat and noisy; counting back ``length`` points from its end, as
    fastai does, keeps the valley on the real descent.)"""
    n = len(ys)
    length = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if ys[i] < ys[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
            if length[end] < length[i]:
                end = i
                start = end - length[end]
    third = (end - start) / 3
    return max(start, 0), start + int(third) + int(third / 2), end


def check_range(steps: int, start: float, end: float, rule: str) -> None:
    """Refuse, in one line, a sweep the finder cannot make."""
    if not 20 <= steps <= 10_000:
        raise CnnError(f"steps must be 20..10000, got {steps}")
    if not (math.isfinite(start) and math.isfinite(end) and 0 < start < end <= 1000):
        raise CnnError(f"the rates must rise: 0 < start < end <= 1000, got start {start:g} and end {end:g}")
    if rule not in RULES:
        raise CnnError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


class ResultFile:
    """A finder's JSON file, how a job tells the app what it does (never its output): ``state`` queued, running
    (``step`` of ``steps``, ``elapsed`` seconds), then finished (with the result's fields) or failed
    (``message``). ``config`` is kept throughout: what the curve is for."""

    def __init__(self, path: str | os.PathLike, every: float = 1.0) -> None:
        self.path, self.every, self._last = Path(path), every, 0.0

    def read(self) -> dict[str, Any]:
        return read_json(self.path)

    def write(self, state: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"config": self.read().get("config", {}), **fields, "state": state})

    def progress(self, step: int, steps: int, elapsed: float) -> None:
        """At most once every ``every`` seconds (and at the last step)."""
        now = time.monotonic()
        if now - self._last >= self.every or step == steps:
            self._last = now
            self.write("running", step=step, steps=steps, elapsed=round(elapsed, 2))
