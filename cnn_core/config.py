"""TrainConfig: the one description of a training run, built alike by the CLI, the app and the tests."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CnnError

OPTIMIZERS = ("sgd", "adam", "adamw", "adamax")
SCHEDULES = ("none", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cache_dir() -> Path:
    """$CNN_CACHE_DIR, else ~/.cache/cnn_core: decoded datasets and the compiled JPEG decoder (the data dir
    may be read-only)."""
    return Path(os.environ.get("CNN_CACHE_DIR") or Path.home() / ".cache" / "cnn_core")


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 penalty, applied by the optimizer
    augment: bool = False
    crop_padding: int = 4  # augmentation: pixels of zero padding before the random crop (1 for tiny images)
    schedule: str = "cosine"
    patience: int = 0  # early stopping: epochs without a better val accuracy (0: off)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, fp16 AMP on CUDA
    val_fraction: float = 0.1  # carved from the training split, stratified and seeded
    label_smoothing: float = 0.0
    input_size: int = 0  # 0: the model's choice for this dataset
    train_subset: int = 0  # use only this many training images, stratified (0: all)
    max_batches: int = 0  # stop each epoch after this many batches (0: all); for smoke tests and benchmarks
    tta: bool = False  # evaluate with horizontal-flip test-time augmentation
    preset: str = ""  # the preset this config was built from, for the record
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific keyword arguments

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise CnnError(msg)

        need(isinstance(self.model, str) and self.model != "", "model must be a name (see: python -m cnn_core models)")
        need(isinstance(self.dataset, str) and self.dataset != "", "dataset must be a name or folder:PATH")
        need(_is_int(self.epochs) and 1 <= self.epochs <= 1000, f"epochs must be 1..1000, got {self.epochs!r}")
        need(_is_int(self.batch_size) and 1 <= self.batch_size <= 8192,
             f"batch size must be 1..8192, got {self.batch_size!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        need(self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(_is_num(self.lr) and 0 < self.lr <= 100, f"learning rate must be in (0, 100], got {self.lr!r}")
        need(_is_num(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        need(_is_num(self.weight_decay) and 0 <= self.weight_decay < 1,
             f"weight decay must be in [0, 1), got {self.weight_decay!r}")
        need(_is_num(self.val_fraction) and 0 < self.val_fraction < 0.5,
             f"validation fraction must be in (0, 0.5), got {self.val_fraction!r}")
        need(_is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             f"label smoothing must be in [0, 1), got {self.label_smoothing!r}")
        need(_is_int(self.patience) and self.patience >= 0, "patience must be a whole number >= 0")
        need(_is_int(self.seed) and 0 <= self.seed < 2**31, "seed must be a whole number in [0, 2^31)")
        need(_is_int(self.input_size) and (self.input_size == 0 or 8 <= self.input_size <= 512),
             "input size must be 0 (model default) or 8..512")
        need(_is_int(self.crop_padding) and 0 <= self.crop_padding <= 16, "crop padding must be 0..16 pixels")
        need(_is_int(self.train_subset) and self.train_subset >= 0, "train subset must be a whole number >= 0")
        need(_is_int(self.max_batches) and self.max_batches >= 0, "max batches must be a whole number >= 0")
        need(isinstance(self.augment, bool) and isinstance(self.tta, bool), "augment and tta must be true or false")
        need(isinstance(self.extra, dict), "extra must be a mapping of model arguments")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from plain types, ignoring keys this version does not know (older or newer runs)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# Presets: named sets of options; options given explicitly on top of a preset win.
PRESETS: dict[str, dict[str, Any]] = {}


def register_preset(name: str, **options: Any) -> None:
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    TrainConfig(**options)  # validate now, not when a student first uses it
    PRESETS[name] = options


def preset_options(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise CnnError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS)) or 'none'}")
    return dict(PRESETS[name], preset=name)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))
