"""Forward passes over whole splits: logits (with optional test-time augmentation), loss and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batches import Batches
from .device import autocast


def tta_logits(model: nn.Module, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """Test-time augmentation of a normalised batch: the mean of the logits of the images and their mirrors;
    with ``shift``, that mean weighs half, and the other half is the same over two copies moved ``shift`` pixels
    diagonally, one each way (their borders mirrored). float32 logits. A few images (a photo) go through the
    model in one pass with all their views; a split's batch one view at a time (memory)."""
    views = [x, x.flip(-1)]
    if shift:
        h, w = x.shape[-2:]
        padded = F.pad(x, (shift,) * 4, mode="reflect")
        for v in (padded[..., :h, :w], padded[..., 2 * shift:, 2 * shift:]):
            v = v.contiguous(memory_format=torch.channels_last)
            views += [v, v.flip(-1)]
    if len(x) <= 64:
        out = model(torch.cat(views)).float().view(len(views), len(x), -1)
    else:
        out = torch.stack([model(v).float() for v in views])
    logits = out[:2].mean(0)
    return (logits + out[2:].mean(0)) / 2 if shift else logits


@torch.inference_mode()
def predict_logits(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
                   tta: bool = False, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (float32, on the CPU) and labels; with ``tta`` those of ``tta_logits``."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp):
            logits = tta_logits(model, x, shift) if tta else model(x).float()
        outs.append(logits.cpu())
        ys.append(y.cpu())
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
             tta: bool = False, shift: int = 0) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    logits, y = predict_logits(model, batches, device, amp, tta, shift)
    if len(y) == 0:
        return float("nan"), 0.0
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
