"""Optional TensorBoard logging: per-epoch scalars as event files inside the run folder, so that
``tensorboard --logdir checkpoints`` shows every run by its name. Nothing here imports tensorboard until a
logger is actually made, so training without ``--tensorboard`` never needs the package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import CnnError
from .callbacks import Callback, FitState

INSTALL_HINT = "TensorBoard logging needs the tensorboard package: pip install tensorboard"

# metrics.csv column -> TensorBoard tag; train and val share a chart because they share a section
TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_accuracy": "accuracy/train",
        "val_accuracy": "accuracy/val", "lr": "learning_rate", "images_per_second": "speed/images_per_second",
        "epoch_seconds": "speed/epoch_seconds"}


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        raise CnnError(INSTALL_HINT) from None
    return SummaryWriter


class TensorBoard(Callback):
    """Writes one point per scalar per epoch (step = epoch number) into the run folder. Made before the run
    folder is (the package is checked here), opened when the run starts."""

    def __init__(self) -> None:
        self.writer_class = _summary_writer_class()
        self.writer: Any = None

    def on_setup(self, state: FitState) -> None:
        self.writer = self.writer_class(log_dir=str(state.run.path))

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for key, tag in TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), step)
        self.writer.flush()  # a live `tensorboard` sees each epoch as it ends

    def on_fit_end(self, state: FitState) -> None:
        self.close()

    def on_exception(self, state: FitState, outcome: str, message: str) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a run folder's event files as ``{tag: [(step, value), ...]}`` (needs tensorboard)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise CnnError(INSTALL_HINT) from None
    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(run_dir).glob("events.out.tfevents.*")):  # a resumed run adds a second file
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    for tag in out:
        out[tag] = sorted(dict(out[tag]).items())  # a resumed epoch's point replaces the one it repeats
    return out
