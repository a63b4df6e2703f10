"""A dataset as the trainer will see it, before training: the split the engine makes (prepare_data with the
Train page's defaults), its counts, statistics and duplicates, random images per class, and those images through
the trainer's own augmentation (Batches with the prepared Augment, as the training loop builds them).

CIFAR-10 from the decode cache: 1 to 2 s here to prepare (load 0.15 s, split and copy 0.5 s, normalisation
statistics 0.6 s; a busy 2-core machine), 0.1 s for counts and the duplicate check, 0.3 s for the pictures. The
Data page keeps a look for a few minutes, shared by every session.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..data import channel_stats
from ..data.inspect import SMALL_RULE, class_counts, copies, pick_per_class, small_classes
from ..models.registry import get_spec
from .batches import Batches, Normalize
from .prepared import Prepared, prepare_data

SPLITS = ("train", "val", "test")


@dataclass
class Summary:
    """What a Data page and ``show`` report: plain types, JSON as it is."""

    dataset: str
    classes: list[str]
    counts: dict[str, list[int]]  # split -> images per class, in class order
    small: list[str]  # classes flagged by SMALL_RULE
    height: int
    width: int
    channels: int
    mean: list[float]  # per channel, 0..1 scale, of the training split (what normalisation uses)
    std: list[float]
    copies: dict[str, int]  # "test" / "val": images of that split that are exact copies of a training image
    examples: list[list[int]] = field(default_factory=list)  # a few (test index, train index) copies
    small_rule: str = SMALL_RULE
    split_rule: str = ""  # how the trainer split it, in words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line: sizes, statistics, flagged classes and copies."""
        n = {s: sum(c) for s, c in self.counts.items()}
        stats = "/".join(f"{m:.3f}" for m in self.mean) + " ± " + "/".join(f"{s:.3f}" for s in self.std)
        small = f"small classes: {', '.join(self.small[:5])}" if self.small else "no small class"
        return (f"{self.dataset}: {len(self.classes)} classes, {n['train']} train / {n['val']} val / {n['test']} "
                f"test, {self.height}x{self.width}x{self.channels}, mean ± std {stats}; {small}; "
                f"{self.copies['test']} test and {self.copies['val']} val images also in train")


@dataclass
class Look:
    """A prepared dataset (shared and read-only once made) and its summary."""

    prep: Prepared
    summary: Summary


def look(dataset: str, data_dir: str | os.PathLike | None = None) -> Look:
    """Prepare ``dataset`` as a run with the default settings would (same split, same augmentation) on the CPU,
    and summarise it."""
    cfg = TrainConfig(dataset=dataset)
    prep = prepare_data(cfg, data_dir)
    return Look(prep, summarize(prep, cfg))


def summarize(prep: Prepared, cfg: TrainConfig) -> Summary:
    k = len(prep.classes)
    counts = {s: class_counts(prep.split(s)[1].cpu().numpy(), k) for s in SPLITS}
    if get_spec(cfg.model).mean_std is None:
        mean, std = prep.mean, prep.std  # already the training split's own, computed by prepare_data
    else:
        mean, std = channel_stats(prep.x_train.cpu())
    x_train = prep.x_train.cpu().numpy()
    test = copies(x_train, prep.x_test.cpu().numpy())
    val = copies(x_train, prep.x_val.cpu().numpy())
    own_val = prep.dataset.x_val is not None
    rule = ("the folder's own split (8:1:1 per class, or its train/val/test folders)" if own_val else
            f"validation: {cfg.val_fraction:.0%} of each class of the training images (seed {cfg.seed}); test: the "
            "dataset's own test part")
    return Summary(prep.dataset.name, list(prep.classes), counts, small_classes(counts["train"], prep.classes),
                   int(x_train.shape[-2]), int(x_train.shape[-1]), prep.channels, list(mean), list(std),
                   {"test": len(test), "val": len(val)}, [list(p) for p in test[:8]], split_rule=rule)


def samples(lk: Look, per_class: int, seed: int) -> list[list[np.ndarray]]:
    """Random training images of each class (C, H, W) uint8, seeded: a row per class."""
    x, y = lk.prep.x_train.cpu(), lk.prep.y_train.cpu().numpy()
    return [[x[i].numpy() for i in row] for row in pick_per_class(y, len(lk.prep.classes), per_class, seed)]


def augment_preview(lk: Look, count: int, times: int, seed: int) -> list[list[np.ndarray]]:
    """``count`` random training images, each followed by ``times`` augmented copies: the training loop's own
    Batches and Augment, one draw per epoch as training would make them (only the normalisation is left out,
    so the pictures stay pixels)."""
    prep = lk.prep
    n = len(prep.y_train)
    idx = torch.from_numpy(np.random.default_rng(seed).choice(n, min(count, n), replace=False))
    x, y = prep.x_train.cpu()[idx], prep.y_train.cpu()[idx]
    c, h, w = x.shape[1:]
    as_pixels = Normalize((0.0,) * c, (1 / 255,) * c, w, channels_last=False)  # (x - 0) / (1/255 * 255) == x
    batches = Batches(x, y, len(x), as_pixels, augment=prep.augment, seed=seed)
    draws = []
    for epoch in range(times):
        batches.set_epoch(epoch)
        xb, _ = next(iter(batches))
        draws.append(xb.round().clamp(0, 255).to(torch.uint8).numpy())
    return [[x[i].numpy()] + [d[i] for d in draws] for i in range(len(x))]


def augmentation_text(lk: Look) -> str:
    """What the training augmentation does to this dataset, in words."""
    a = lk.prep.augment
    fill = "mirrored-border" if a.reflect else "zero"
    shift = f"a random crop after {a.pad} pixel{'s' * (a.pad != 1)} of {fill} padding" if a.pad else "no shift"
    if not a.flip:
        flip = "no flips (a mirrored image would change its label)"
    elif a.flip_mode == "alternate":
        flip = "a horizontal flip every other epoch (each image seen both ways in every two epochs)"
    else:
        flip = "a horizontal flip half of the time"
    return f"{shift}, {flip}"
