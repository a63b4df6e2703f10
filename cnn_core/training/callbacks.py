"""The callback protocol of ``fit``, and the callbacks that keep a run's folder.

``fit`` knows nothing about files, reports or screens: at each hook it calls every callback in its list, on
the main process only (rank 0 under torchrun). The run folder's own files are callbacks too, and ``fit``
always puts them first (``run_files``), so a caller's callback sees metrics and status already written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config.train_config import TrainConfig
from ..data import photo_preparation
from ..engine.prepared import Prepared
from ..models.registry import saved_kwargs
from ..runs.checkpoint import FORMAT
from ..runs.rundir import RunDir


@dataclass
class FitState:
    """What a callback may look at (read-only, by convention). ``row`` is the epoch just ended."""

    cfg: TrainConfig
    run: RunDir
    data_dir: Any = None
    prep: Prepared | None = None
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    lookahead: Any = None  # a Lookahead when the config asks for it
    epoch: int = 0
    start_epoch: int = 1
    schedule_restarts: list[int] = field(default_factory=list)  # epochs after which an extension restarted it
    best: float = -1.0
    best_epoch: int = 0
    improved: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    device: str = ""  # named for people: "CPU (2 threads, bf16)"
    data_seconds: float = 0.0
    # the best model's (logits, labels) on the test and val splits, for reports (single process only)
    best_logits: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = field(default=lambda _text: None, repr=False)  # a line to every on_message


    def release(self) -> None:
        """Drop the model, optimizer, data and logits (after a failure, to hand their memory back)."""
        self.prep = self.model = self.optimizer = self.scheduler = self.lookahead = None
        self.best_logits = {}


class Callback:
    """Every hook is optional; the defaults do nothing."""

    def on_setup(self, state: FitState) -> None:
        """The run folder is open (config.json written). A resumed or prepared run loads its data next; a new
        run's folder is made only once its data and model are ready (a failed start leaves no folder)."""

    def on_fit_start(self, state: FitState) -> None:
        """Data loaded, model built (and restored, when resuming), before the first batch."""

    def on_batch_end(self, state: FitState, batch: int, batches: int, loss: float) -> None:
        """``loss``: the mean training loss of the epoch so far."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        """``row``: the epoch's metrics.csv row."""

    def on_fit_end(self, state: FitState) -> None:
        """Training is over, ``state.summary`` holds the result (test accuracy of the best checkpoint)."""

    def on_exception(self, state: FitState, outcome: str, message: str) -> None:
        """Training ended early: ``outcome`` is cancelled, diverged or failed."""

    def on_message(self, text: str) -> None:
        """A line for a person (what the CLI prints)."""

    def should_stop(self) -> bool:
        """True stops training at the next batch; last.pt keeps the last finished epoch."""
        return False


# ------------------------------------------------------------------------------------------- the run folder

class StatusFile(Callback):
    """status.json: the run's state for every reader (pages, jobs, ``runs``)."""

    def on_setup(self, state: FitState) -> None:
        state.run.update_status(state="running", pid=os.getpid(), message="loading data", device=state.device)

    def on_fit_start(self, state: FitState) -> None:
        prep = state.prep
        state.run.update_status(state="running", message="training", epochs=state.cfg.epochs,
                                data_seconds=round(state.data_seconds, 2),
                                params=sum(p.numel() for p in state.model.parameters()),
                                classes=prep.classes, notes=prep.dataset.notes,
                                schedule_restarts=state.schedule_restarts)

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        state.run.update_status(epochs_run=state.epoch, best_val_accuracy=round(state.best, 5),
                                best_epoch=state.best_epoch)

    def on_fit_end(self, state: FitState) -> None:
        state.run.update_status(**{"message": "", **state.summary}, pid=None)  # why it stopped, if early

    def on_exception(self, state: FitState, outcome: str, message: str) -> None:
        state.run.final_status(state=outcome, message=message, pid=None)


class MetricsFile(Callback):
    """metrics.csv: one row per epoch (a resumed epoch replaces its earlier row)."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        state.run.append_metrics(row)


class Checkpoints(Callback):
    """best.pt when validation accuracy improved, last.pt (with optimizer and scheduler) every epoch."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        payload = checkpoint_payload(state)
        # best.pt first: a crash between the two leaves last.pt one epoch behind, and the resumed run redoes the
        # epoch and its best.pt. The other order would resume believing in a best.pt never written.
        if state.improved:
            state.run.save({**payload, "optimizer": None, "scheduler": None, "lookahead": None}, "best")
        state.run.save(payload, "last")


class ProgressFile(Callback):
    """progress.json, at most once a second: the current epoch and batch, for the app's progress bar."""

    def __init__(self, every: float = 1.0) -> None:
        self.every, self.last = every, 0.0

    def on_setup(self, state: FitState) -> None:
        state.run.clear_progress()  # a resumed run's progress.json is its last process's: never show it again

    def on_batch_end(self, state: FitState, batch: int, batches: int, loss: float) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or batch == batches:
            self.last = now
            state.run.write_progress(progress_info(state, batch, batches, loss))

    def on_fit_end(self, state: FitState) -> None:
        state.run.clear_progress()


def run_files() -> list[Callback]:
    """The callbacks every fit runs first: the run folder is how every other reader learns about a run."""
    return [MetricsFile(), Checkpoints(), StatusFile(), ProgressFile()]


def progress_info(state: FitState, batch: int, batches: int, loss: float) -> dict[str, Any]:
    return {"epoch": state.epoch, "epochs": state.cfg.epochs, "start_epoch": state.start_epoch, "batch": batch,
            "batches": batches, "loss": loss, "elapsed": time.perf_counter() - state.started}


def checkpoint_payload(state: FitState) -> dict[str, Any]:
    """A self-describing checkpoint: the model's name and constructor arguments, classes, preprocessing, config,
    metrics, epoch, and the optimizer and scheduler state for resuming."""
    cfg, prep, model = state.cfg, state.prep, state.model
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "model": {"name": cfg.model, "kwargs": saved_kwargs(cfg.model, {
            "num_classes": len(prep.classes), "in_channels": prep.channels, "input_size": prep.size, **cfg.extra})},
        "state_dict": sd,
        "classes": list(prep.classes),
        "input": {"size": prep.size, "channels": prep.channels, "mean": list(prep.mean), "std": list(prep.std),
                  "prepare": photo_preparation(cfg.dataset)},  # a photo of a digit made to look like the data
        "config": cfg.to_dict(),
        "metrics": state.history,
        "epoch": state.epoch,
        "best_val_accuracy": state.best,
        "optimizer": state.optimizer.state_dict() if state.optimizer is not None else None,
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "lookahead": state.lookahead.state_dict() if state.lookahead is not None else None,
        "schedule_restarts": list(state.schedule_restarts),  # where a longer run restarted its schedule
        "torch_version": str(torch.__version__),
        "rng": torch.get_rng_state(),  # dropout draws continue exactly after a resume
    }
