"""A training callback made of plain functions, for tests that watch or stop a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnn_core.training.callbacks import Callback, FitState


class Hooks(Callback):
    """``epoch(row)`` after each epoch, ``batch(info)`` after each batch, ``stop()`` asked before each batch,
    ``log(line)`` for each message."""

    def __init__(self, epoch: Callable[[dict], Any] | None = None, batch: Callable[[dict], Any] | None = None,
                 stop: Callable[[], bool] | None = None, log: Callable[[str], Any] | None = None) -> None:
        self.epoch, self.batch, self.stop, self.log = epoch, batch, stop, log

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        if self.epoch:
            self.epoch(row)

    def on_batch_end(self, state: FitState, batch: int, batches: int, loss: float) -> None:
        if self.batch:
            self.batch({"epoch": state.epoch, "epochs": state.cfg.epochs, "batch": batch, "batches": batches,
                        "loss": loss})

    def should_stop(self) -> bool:
        return bool(self.stop and self.stop())

    def on_message(self, text: str) -> None:
        if self.log:
            self.log(text)
