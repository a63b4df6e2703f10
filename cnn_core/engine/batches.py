"""Batches: whole datasets as uint8 tensors on the training device, augmented and normalised per batch.

Nothing is decoded or transformed per image during training. A batch is gathered from the uint8 tensor,
shifted and flipped with tensor ops, converted to float, resized when the model wants another size,
normalised, and laid out channels-last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# -------------------------------------------------------------------------------------------- augmentation

def shift_batch(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, reflect: bool = False) -> torch.Tensor:
    """Random-crop-with-padding for a whole batch: image i is padded by ``pad`` and cropped at (dy[i], dx[i]),
    offsets in [0, 2*pad]. Same result as torchvision's RandomCrop(size, padding=pad) per image, its
    ``padding_mode="reflect"`` with ``reflect`` (the border mirrored instead of black: no dark frame to learn)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if reflect else "constant")  # (B, C, H+2p, W+2p)
    rows = dy.to(x.device)[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx.to(x.device)[:, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def flip_batch(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``mask`` is true."""
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)


def alternate_flips(idx: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """Which of the images ``idx`` are mirrored in ``epoch`` when flips alternate: a fixed coin per image (from its
    index and the seed) in odd epochs, its opposite in even ones. Every image is then seen both ways in every
    two epochs, where independent coins leave a quarter of them one way only."""
    h = (idx.to(torch.int64) + 1) * 0x9E3779B1 + seed * 0x85EBCA6B  # a multiplicative hash, one bit of it
    return (((h >> 15) & 1) == 1) ^ (epoch % 2 == 0)


@dataclass(frozen=True)
class Augment:
    pad: int = 4  # pixels of padding before the random crop (0: no shift)
    flip: bool = True
    flip_mode: str = "random"  # "random": a coin per image and epoch; "alternate": see alternate_flips
    reflect: bool = False  # the padding mirrors the border (else zeros)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, idx: torch.Tensor | None = None, epoch: int = 0,
                 seed: int = 0) -> torch.Tensor:
        """``idx``: the images' indices in the dataset (alternating flips need them; random ones do not)."""
        n = len(x)
        if self.pad:
            dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
            dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
            x = shift_batch(x, self.pad, dy, dx, self.reflect)
        if self.flip:
            if self.flip_mode == "alternate" and idx is not None:
                mask = alternate_flips(idx.cpu(), seed, epoch)
            else:
                mask = torch.rand(n, generator=gen) < 0.5
            x = flip_batch(x, mask)
        return x


def augment_for(dataset_flips: bool, native_size: int, pad: int = 4, flip_mode: str = "random",
                crop_fill: str = "zeros") -> Augment:
    """Random crop with ``pad`` pixels of padding (at most 1 for tiny images such as 8x8 digits), plus flips
    only where flipping keeps the label (never for digits)."""
    pad = pad if native_size >= 28 else min(pad, 1)
    return Augment(pad=pad, flip=dataset_flips, flip_mode=flip_mode, reflect=crop_fill == "reflect")


# ------------------------------------------------------------------------------------------------- batches

@dataclass
class Normalize:
    """uint8 (B, C, H, W) -> float, resized to ``size``, normalised; channels-last for faster convolutions."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    channels_last: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        # (x / 255 - mean) / std, in place on the fresh float copy (subtract first: no cancellation near the mean).
        # Done before the reorder to channels-last: on (C, H, W) rows the per-channel constants broadcast over
        # long runs and vectorise, where channels-last interleaves them every 3 values (3.6x slower, measured).
        mean = (torch.tensor(self.mean, dtype=torch.float64) * 255).to(x.device, torch.float32).view(1, -1, 1, 1)
        scale = (1 / (torch.tensor(self.std, dtype=torch.float64) * 255)).to(x.device, torch.float32).view(1, -1, 1, 1)
        x = x.sub_(mean).mul_(scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` training images in ``epoch``; distributed ranks deal out the same one."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen)


class Batches:
    """Mini-batches from uint8 tensors already on the device. Shuffling is seeded per epoch, so a resumed run
    sees the same order it would have seen without the interruption."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, normalize: Normalize,
                 shuffle: bool = False, augment: Augment | None = None, seed: int = 0, max_batches: int = 0,
                 drop_single: bool = False) -> None:
        self.x, self.y, self.batch_size, self.normalize = x, y, batch_size, normalize
        self.shuffle, self.augment, self.seed, self.max_batches = shuffle, augment, seed, max_batches
        self.drop_single = drop_single  # training: a trailing batch of one image breaks batch norm
        self.epoch = 0
        self.indices: torch.Tensor | None = None  # restricts to a subset (a distributed shard)
        self.rank = 0  # a distributed rank draws its own augmentations, not the same ones as rank 0

    def __len__(self) -> int:
        n = len(self.indices) if self.indices is not None else len(self.x)
        full, rest = divmod(n, self.batch_size)
        batches = full + (1 if rest and not (self.drop_single and rest == 1 and full > 0) else 0)
        return min(batches, self.max_batches) if self.max_batches else batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        base = self.indices if self.indices is not None else torch.arange(len(self.x))
        return base[epoch_permutation(len(base), self.seed, self.epoch)] if self.shuffle else base

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7 + 1_000_003 * self.rank)
        order = self.order().to(self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            xb = self.x.index_select(0, idx)  # same as x[idx]; 0.04 against 0.3 ms for 100 CIFAR images
            if self.augment is not None:
                xb = self.augment(xb, gen, idx, self.epoch, self.seed)
            yield self.normalize(xb), self.y.index_select(0, idx)
