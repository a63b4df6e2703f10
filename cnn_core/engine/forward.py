"""Forward passes over whole splits: logits (with optional flip test-time augmentation), loss and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batches import Batches
from .device import autocast


@torch.inference_mode()
def predict_logits(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
                   tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (float32, on the CPU) and labels; with ``tta`` the mean of the image and its mirror."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        outs.append(logits.cpu())
        ys.append(y.cpu())
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
             tta: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    logits, y = predict_logits(model, batches, device, amp, tta)
    if len(y) == 0:
        return float("nan"), 0.0
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
