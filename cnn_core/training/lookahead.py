"""Lookahead: the weights pulled back, every few steps, to an exponential moving average of themselves.

The idea comes from hlb-CIFAR10 and airbench (Keller Jordan), written anew here. Plain SGD at a high learning
rate jitters around a valley; the average of its recent weights sits nearer the valley's floor. Copying the
average back into the model (rather than only evaluating it, as a plain EMA would) lets training go on from the
better point. The average starts after the first quarter of training (the early weights are far from anything
worth keeping) and tightens as training ends: its decay per update is ``decay**every * progress**3``, so it
barely averages at first and strongly at the end. Each epoch ends on the average, so validation, checkpoints
and the test use it.

It runs inside the training loop on every process (under torchrun every rank holds the same weights, so every
rank computes the same average), and its state is part of last.pt, so a resumed run continues the same average.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Lookahead:
    """``after_step(model, step)`` after each optimiser step (``step`` counts from 1 over the schedule's
    ``total`` steps), ``end_epoch(model)`` after each epoch. Any model: every floating-point tensor of its
    state (weights and batch-norm statistics) is averaged."""

    def __init__(self, total: int, every: int = 5, start: float = 0.25, decay: float = 0.95, power: float = 3.0
                 ) -> None:
        self.total, self.every, self.start, self.decay, self.power = max(1, total), every, start, decay, power
        self.average: list[torch.Tensor] | None = None

    @staticmethod
    def _tensors(model: nn.Module) -> list[torch.Tensor]:
        return [t for t in model.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        if step % self.every or step < self.start * self.total:
            return
        current = self._tensors(model)
        if self.average is None:
            self.average = [t.detach().clone() for t in current]
            return
        rho = self.decay ** self.every * min(1.0, step / self.total) ** self.power
        torch._foreach_lerp_(self.average, current, 1 - rho)
        torch._foreach_copy_(current, self.average)

    @torch.no_grad()
    def end_epoch(self, model: nn.Module) -> None:
        """The epoch ends on the average (the steps since its last update are dropped)."""
        if self.average is not None:
            torch._foreach_copy_(self._tensors(model), self.average)

    def state_dict(self) -> dict[str, Any]:
        return {"average": None if self.average is None else [t.cpu().clone() for t in self.average]}

    def load_state_dict(self, state: dict[str, Any] | None, model: nn.Module) -> None:
        saved = (state or {}).get("average")
        if saved is None:
            self.average = None
            return
        current = self._tensors(model)
        if len(saved) != len(current) or any(a.shape != b.shape for a, b in zip(saved, current)):
            raise ValueError("the saved lookahead average does not match the model")
        self.average = [a.to(b.device, b.dtype) for a, b in zip(saved, current)]
