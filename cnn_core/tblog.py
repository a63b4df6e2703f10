"""Optional TensorBoard logging: per-epoch scalars as event files inside the run folder, so that
``tensorboard --logdir checkpoints`` shows every run by its name. Nothing here imports tensorboard until a
logger is actually made, so training without ``--tensorboard`` never needs the package."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CnnError

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


def require_tensorboard() -> None:
    """Fail with the install hint before any run folder is made."""
    _summary_writer_class()


class TensorBoardLogger:
    """An ``on_epoch_end`` callback writing one point per scalar per epoch (step = epoch number)."""

    def __init__(self, run_dir: str | os.PathLike, then: Callable[[dict], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.then = then  # the caller's own on_epoch_end, still called after logging
        self.writer: Any = _summary_writer_class()(log_dir=str(self.run_dir))

    def __call__(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for key, tag in TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), step)
        self.writer.flush()  # a live `tensorboard` sees each epoch as it ends
        if self.then is not None:
            self.then(row)

    def close(self) -> None:
        self.writer.close()


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
