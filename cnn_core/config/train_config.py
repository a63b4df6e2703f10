"""TrainConfig: the one description of a training run, built alike by the CLI, the app and the tests.

Each field carries its metadata (``Meta``: label, help, bounds, choices, whether a sweep may vary it). That
metadata is the only statement of those facts: validation here, the command line's flags and their help
(``config.argv``) and the app's widget bounds all read it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CnnError

OPTIMIZERS = ("sgd", "adam", "adamw", "adamax")
SCHEDULES = ("none", "step", "cosine", "onecycle", "triangle")
FLIP_MODES = ("random", "alternate")
CROP_FILLS = ("zeros", "reflect")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Meta:
    """What a person (or a parser, or a widget) needs to know about one TrainConfig field.

    ``lo``/``hi`` are the bounds, inclusive unless ``lo_open``/``hi_open``; ``ui_lo``/``ui_hi`` are the
    closed bounds a number widget uses where a bound is open. ``say`` names the field in messages."""

    label: str
    help: str
    say: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    ui_lo: float | None = None
    ui_hi: float | None = None
    choices: tuple[str, ...] = ()
    sweep: int = 0  # a sweep may vary it (> 0); sweeps order their settings (and so name their runs) by this
    flag: bool = True  # has a `train --flag`
    short: str = ""  # a one-letter flag, e.g. -m
    cli: str = ""  # the flag's name when it is not the field's (--early-stop for patience); the field's name
    # then stays a second name of the same flag

    def widget_bounds(self) -> tuple[float | None, float | None]:
        lo = self.ui_lo if self.ui_lo is not None else self.lo
        hi = self.ui_hi if self.ui_hi is not None else self.hi
        return lo, hi


def _f(default: Any, label: str, help: str, **meta: Any) -> Any:
    kind = dict if isinstance(default, dict) else None
    m = Meta(label, help, **meta)
    if kind is dict:
        return field(default_factory=dict, metadata={"meta": m})
    return field(default=default, metadata={"meta": m})


@dataclass
class TrainConfig:
    model: str = _f("lenet5", "Model", "a registered model (see: python -m cnn_core models)", short="-m")
    dataset: str = _f("digits", "Dataset", "a registered dataset (see: python -m cnn_core datasets) or folder:PATH "
                      "(a folder of class folders)", short="-d")
    epochs: int = _f(10, "Epochs", "passes over the training images", lo=1, hi=1000)
    batch_size: int = _f(128, "Batch size", "images per step (the global batch under torchrun)", say="batch size",
                         lo=1, hi=8192, sweep=1)
    optimizer: str = _f("sgd", "Optimizer", "the update rule", choices=OPTIMIZERS, sweep=3)
    lr: float = _f(0.05, "Learning rate", "the (peak) learning rate", say="learning rate", lo=0, hi=100,
                   lo_open=True, ui_lo=1e-6, sweep=2)
    momentum: float = _f(0.9, "Momentum", "SGD momentum (Nesterov when > 0)", lo=0, hi=1, hi_open=True, ui_hi=0.99,
                         sweep=6)
    weight_decay: float = _f(5e-4, "Weight decay (L2)", "L2 penalty, applied by the optimizer (not to biases or "
                             "batch-norm parameters)", say="weight decay", lo=0, hi=1, hi_open=True, ui_hi=0.99,
                             sweep=5)
    augment: bool = _f(False, "Augment (random crops; flips where they keep the label)",
                       "on|off: random crop + flip (flip only where labels allow)", sweep=4)
    crop_padding: int = _f(4, "Crop padding (pixels)", "augmentation: pixels of zero padding before the random crop "
                           "(at most 1 for tiny images)", say="crop padding", lo=0, hi=16)
    flip_mode: str = _f("random", "Flips (random: a coin per image; alternate: mirrored every other epoch)",
                        "augmentation: random flips each image by a coin per epoch; alternate by a fixed coin in odd "
                        "epochs and the opposite in even ones (each image seen both ways every two epochs)",
                        say="flip mode", choices=FLIP_MODES)
    crop_fill: str = _f("zeros", "Crop padding fill", "augmentation: what the crop's padding holds: zeros (a black "
                        "frame) or reflect (the border mirrored)", say="crop fill", choices=CROP_FILLS)
    schedule: str = _f("cosine", "Learning-rate schedule", "how the rate changes over training (stepped per batch)",
                       choices=SCHEDULES, sweep=7)
    lookahead: bool = _f(False, "Lookahead (weights pulled back to their running average)",
                         "on|off: every 5 steps after the first quarter of training, the weights are replaced by "
                         "their exponential moving average, which tightens towards the end; epochs end on it")
    patience: int = _f(0, "Early stopping (epochs without a better validation accuracy, 0 = off)",
                       "stop when validation accuracy has not improved for this many epochs; best.pt keeps the "
                       "best epoch (0: off)", say="early stopping", lo=0, hi=1000, cli="--early-stop")
    seed: int = _f(0, "Seed", "seeds the split, the initial weights, the order and the augmentation", lo=0,
                   hi=2**31 - 1, sweep=9)
    device: str = _f("auto", "Device", "auto: CUDA when visible, else the CPU", choices=DEVICES)
    precision: str = _f("auto", "Precision", "auto: bf16 autocast on CPUs with native bf16, fp16 AMP on CUDA",
                        choices=PRECISIONS)
    val_fraction: float = _f(0.1, "Validation fraction", "share of the training images held out for validation "
                             "(stratified, seeded)", say="validation fraction", lo=0, hi=0.5, lo_open=True,
                             hi_open=True, ui_lo=0.01, ui_hi=0.49)
    label_smoothing: float = _f(0.0, "Label smoothing", "cross-entropy label smoothing", say="label smoothing", lo=0,
                                hi=1, hi_open=True, ui_hi=0.99, sweep=8)
    input_size: int = _f(0, "Input size (0 = the model's choice)", "input side in pixels (0: the model's choice for "
                         "this dataset)", say="input size", lo=0, hi=512)
    train_subset: int = _f(0, "Train on only this many images (0 = all)", "train on this many images only, "
                           "stratified (0: all)", say="train subset", lo=0, hi=10_000_000)
    max_batches: int = _f(0, "Batches per epoch at most (0 = all)", "stop each epoch after this many batches "
                          "(0: all); for smoke tests and benchmarks", say="max batches", lo=0, hi=1_000_000)
    tta: bool = _f(False, "Test-time augmentation (average with the mirror image)",
                   "on|off: evaluate with horizontal-flip test-time augmentation")
    tta_shift: int = _f(0, "Test-time shifts (pixels; with test-time augmentation)",
                        "with --tta, also average over two copies shifted this many pixels diagonally each way "
                        "(mirrored borders): 6 views instead of 2 for the test and the final reports; each epoch's "
                        "validation keeps the mirror only (0: mirror only)", say="TTA shift", lo=0, hi=4)
    preset: str = _f("", "Recipe", "a named recipe, e.g. cifar10-fast; explicit flags override it")
    extra: dict[str, Any] = _f({}, "Model arguments", "model-specific keyword arguments (no flag: see --finetune)",
                               flag=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check(f.name, getattr(self, f.name))
        if self.input_size and self.input_size < 8:
            raise CnnError("input size must be 0 (model default) or 8..512")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from plain types, ignoring keys this version does not know (older or newer runs)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def meta(name: str) -> Meta:
    return FIELDS[name].metadata["meta"]


def kind(name: str) -> type:
    """The field's value type: bool, int, float, str or dict."""
    return {"bool": bool, "int": int, "float": float, "str": str}.get(str(FIELDS[name].type), dict)


def sweepable() -> list[str]:
    """The fields a sweep may vary, in the order a sweep's grid lists them."""
    return sorted((n for n in FIELDS if meta(n).sweep), key=lambda n: meta(n).sweep)


def check(name: str, value: Any) -> None:
    """Raise a one-line CnnError unless ``value`` is valid for field ``name`` (type, choices, bounds)."""
    m, k = meta(name), kind(name)
    say = m.say or name
    if k is str:
        if not isinstance(value, str):
            raise CnnError(f"{say} must be text, got {value!r}")
        if m.choices and value not in m.choices:
            raise CnnError(f"{say} must be one of {', '.join(m.choices)}, got {value!r}")
        if name in ("model", "dataset") and not value:
            raise CnnError("model must be a name (see: python -m cnn_core models)" if name == "model" else
                           "dataset must be a name or folder:PATH")
        return
    if k is bool:
        if not isinstance(value, bool):
            raise CnnError(f"{say} must be true or false, got {value!r}")
        return
    if k is dict:
        if not isinstance(value, dict):
            raise CnnError(f"{name} must be a mapping of model arguments")
        return
    ok = _is_int(value) if k is int else _is_num(value)
    if ok and m.lo is not None:
        ok = value > m.lo if m.lo_open else value >= m.lo
    if ok and m.hi is not None:
        ok = value < m.hi if m.hi_open else value <= m.hi
    if not ok:
        raise CnnError(f"{say} must be {bounds_text(name)}, got {value!r}")


def bounds_text(name: str) -> str:
    """``1..1000`` for whole numbers, ``in (0, 100]`` for real ones."""
    m = meta(name)
    if kind(name) is int:
        if m.hi is None:
            return f"a whole number >= {m.lo:g}"
        return f"a whole number {m.lo:g}..{m.hi:g}"
    return f"in {'(' if m.lo_open else '['}{m.lo:g}, {m.hi:g}{')' if m.hi_open else ']'}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))
