"""Datasets as uint8 tensors: the registry of named datasets, ``prefix:ARG`` kinds (folder:PATH), loading, and
the seeded stratified split.

Every dataset becomes ``x`` of shape (N, C, H, W) dtype uint8 and ``y`` int64 (see ``cache`` for how they are
decoded once and kept on disk).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core import settings
from ..core.errors import DataError


@dataclass
class Dataset:
    """A dataset's train and test parts as uint8 tensors (N, C, H, W)."""

    name: str
    classes: list[str]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    flip: bool  # is a horizontal flip a label-preserving augmentation here (not for digits)
    source: str  # where it was read from, for the record
    x_val: torch.Tensor | None = None  # a validation split of its own (a folder's 8:1:1); None: carve from train
    y_val: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)  # what the user should hear: skipped files, tiny classes

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def native_size(self) -> int:
        return int(self.x_train.shape[-1])


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    classes: int
    flip: bool
    loader: Callable[[Path, Path], Dataset]  # (data_dir, cache_dir) -> Dataset
    locate: Callable[[Path], str | None]  # where it would be read from, None when absent and download is needed
    channels: int = 3  # 1: grayscale images (digits), 3: colour photos
    digit_box: float | None = None  # handwritten digits: how much of the frame the ink's longer side fills


_DATASETS: dict[str, DatasetInfo] = {}
_PREFIXES: dict[str, Callable[..., Dataset]] = {}  # "folder" -> loader(arg, data, cache, size[, split_file=])


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $CNN_DATA_DIR, else ./data."""
    return settings.data_dir(explicit)


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_choices() -> str:
    """What a dataset may be, for messages: "cifar10, digits, mnist or folder:PATH"."""
    return f"{', '.join(list_datasets())} or {', '.join(f'{p}:PATH' for p in sorted(_PREFIXES))}"


def dataset_info(name: str) -> DatasetInfo:
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {dataset_choices()}")
    return _DATASETS[name]


def dataset_present(name: str, data_dir_: str | os.PathLike | None = None) -> bool:
    """Whether a registered dataset is here to load, without downloading it. A ``prefix:ARG`` dataset (a
    folder) counts as here: loading it says in one line what is wrong."""
    return ":" in name or dataset_info(name).locate(data_dir(data_dir_)) is not None


def dataset_table(data_dir_: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """Every registered dataset, for a listing: name, description, whether it is here, and where (or what
    happens when it is not)."""
    ddir = data_dir(data_dir_)
    rows = []
    for name in list_datasets():
        info = dataset_info(name)
        where = info.locate(ddir)
        rows.append({"dataset": name, "present": where is not None, "where": where or "not found (will try download)",
                     "description": info.description})
    return rows


def register_prefix(prefix: str, loader: Callable[..., Dataset]) -> None:
    """Datasets named ``prefix:ARG`` (e.g. folder:PATH) load through ``loader(ARG, data_dir, cache_dir, size)``,
    plus ``split_file=`` when the caller has one (see load_dataset)."""
    _PREFIXES[prefix] = loader


def check_dataset_name(name: str) -> None:
    """A one-line DataError for an unknown dataset name or kind, without loading anything (a job is refused
    before its run folder is made)."""
    prefix = name.split(":", 1)[0] if ":" in name else None
    if prefix is None:
        dataset_info(name)
    elif prefix not in _PREFIXES:
        raise DataError(f"unknown dataset kind {prefix!r}; use one of: {dataset_choices()}")


def load_dataset(name: str, data_dir_: str | os.PathLike | None = None, image_size: int = 32,
                 split_file: Path | None = None) -> Dataset:
    """Load a dataset by name; ``image_size`` only matters for datasets whose images vary in size.
    ``split_file``: where a dataset that splits itself (folder:PATH) keeps a run's split, reused when present."""
    check_dataset_name(name)
    ddir, cdir = data_dir(data_dir_), settings.cache_dir()
    if ":" in name:
        prefix, arg = name.split(":", 1)
        if split_file is not None:
            return _PREFIXES[prefix](arg, ddir, cdir, image_size, split_file=split_file)
        return _PREFIXES[prefix](arg, ddir, cdir, image_size)
    return dataset_info(name).loader(ddir, cdir)


def stratified_split(y: np.ndarray | torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of each class held out, seeded; sorted for determinism. Falls
    back to a plain seeded split when a side is too small to hold every class (scikit-learn would raise)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    n, k, smallest = _class_counts(y)
    held = math.ceil(fraction * n)  # how scikit-learn counts a float test_size
    if held < 1 or held >= n:
        raise DataError(f"cannot hold out {fraction:.0%} of {n} images and keep some of each part; use more images")
    stratify = y if smallest >= 2 and held >= k and n - held >= k else None
    keep, out = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(out)


def stratified_subset(y: np.ndarray | torch.Tensor, size: int, seed: int) -> np.ndarray:
    """Sorted indices of exactly ``size`` images, stratified and seeded (all when ``size`` >= len(y)); a one-line
    DataError when ``size`` cannot give each class one image."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    n, k, smallest = _class_counts(y)
    if size >= n:
        return np.arange(n)
    if size < k:
        raise DataError(f"a train subset of {size} is too small: train on at least {k} images, so that each of "
                        f"the {k} classes has one")
    stratify = y if smallest >= 2 and n - size >= k else None
    keep, _ = train_test_split(np.arange(n), train_size=size, random_state=seed, stratify=stratify)
    return np.sort(keep)


def _class_counts(y: np.ndarray) -> tuple[int, int, int]:
    """(images, classes present, images of the smallest class)."""
    counts = np.bincount(y) if len(y) else np.zeros(1, dtype=np.int64)
    present = counts[counts > 0]
    return len(y), len(present), int(present.min()) if len(present) else 0


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, exact: from each channel's
    histogram of the 256 byte values (one pass, no float copy of the images)."""
    values = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = hist.sum()
        m = (hist * values).sum() / n
        var = (hist * (values - m) ** 2).sum() / n
        mean.append(round(float(m), 6))
        std.append(round(max(float(var.clamp_min(1e-12).sqrt()), 1e-3), 6))
    return mean, std


def register_dataset(name: str, description: str, classes: int, flip: bool, loader: Callable[[Path, Path], Dataset],
                     locate: Callable[[Path], str | None], channels: int = 3, digit_box: float | None = None) -> None:
    if name in _DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")
    _DATASETS[name] = DatasetInfo(name, description, classes, flip, loader, locate, channels, digit_box)


def photo_preparation(name: str) -> dict[str, object] | None:
    """How a photo must be prepared to look like ``name``'s images, as a checkpoint records it: for digit
    datasets ``{"kind": "digits", "box": ...}`` (see imaging.digits), None for photos and folders."""
    info = _DATASETS.get(name)
    if info is None or info.digit_box is None:
        return None
    return {"kind": "digits", "box": info.digit_box}


def is_photo_dataset(name: str) -> bool:
    """Whether models trained on ``name`` look at colour photos (folder:PATH datasets are photos) rather than
    grayscale digits: what Predict offers first for a photo from a phone."""
    return ":" in name or (name in _DATASETS and _DATASETS[name].channels == 3)
