"""Prepared data: a dataset split for one run and placed on the training device, with everything the model
needs (input size, channels, normalisation, augmentation)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..data import Dataset, channel_stats, load_dataset, stratified_split, stratified_subset
from ..models.registry import get_spec
from .batches import Augment, Batches, Normalize, augment_for


@dataclass
class Prepared:
    """A dataset split for one run and moved to the training device, with everything the model needs."""

    dataset: Dataset
    classes: list[str]
    channels: int
    size: int
    mean: list[float]
    std: list[float]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    augment: Augment

    def normalize(self) -> Normalize:
        return Normalize(tuple(self.mean), tuple(self.std), self.size)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise CnnError(f"split must be train, val or test, not {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def prepare_data(cfg: TrainConfig, data_dir: str | os.PathLike | None = None,
                 device: torch.device | None = None, split_file: Path | None = None) -> Prepared:
    """Load the dataset, carve the seeded stratified validation split (and training subset), compute the
    normalisation from the training images only, and place the uint8 tensors on ``device``. With ``split_file``
    (a run's), a dataset that splits itself (folder:PATH) keeps its split there and reuses it."""
    spec = get_spec(cfg.model)
    size = spec.pick_size(None, cfg.input_size) if ":" in cfg.dataset else None
    ds = load_dataset(cfg.dataset, data_dir, image_size=size or spec.default_size,
                      split_file=split_file)
    size = size or spec.pick_size(ds.native_size, cfg.input_size)
    if len(ds.classes) < 2:
        raise CnnError(f"dataset {cfg.dataset} has {len(ds.classes)} class; a classifier needs at least two")
    if ds.x_val is not None:  # the dataset's own validation split (a folder's 8:1:1) is used as it is
        keep, val = np.arange(len(ds.y_train)), np.arange(0)
    else:
        keep, val = stratified_split(ds.y_train, cfg.val_fraction, cfg.seed)
    if cfg.train_subset and cfg.train_subset < len(keep):  # exactly train_subset images, one class at least each
        keep = keep[stratified_subset(ds.y_train[keep].numpy(), cfg.train_subset, cfg.seed)]
    keep_t, val_t = torch.from_numpy(keep), torch.from_numpy(val)
    x_train = ds.x_train[keep_t]
    if spec.mean_std is not None:
        mean, std = [list(v) for v in spec.mean_std]
        if len(mean) != ds.channels:  # grayscale into an RGB-trained net: one channel with the average stats
            mean, std = [sum(mean) / len(mean)] * ds.channels, [sum(std) / len(std)] * ds.channels
    else:
        mean, std = channel_stats(x_train)
    dev = device or torch.device("cpu")
    x_val, y_val = (ds.x_val, ds.y_val) if ds.x_val is not None else (ds.x_train[val_t], ds.y_train[val_t])
    return Prepared(ds, ds.classes, ds.channels, size, mean, std,
                    x_train.to(dev), ds.y_train[keep_t].to(dev),
                    x_val.to(dev), y_val.to(dev),
                    ds.x_test.to(dev), ds.y_test.to(dev),
                    augment_for(ds.flip, ds.native_size, cfg.crop_padding, cfg.flip_mode, cfg.crop_fill))


def eval_batches(prep: Prepared, split: str, batch_size: int = 1024) -> Batches:
    x, y = prep.split(split)
    return Batches(x, y, batch_size, prep.normalize())
