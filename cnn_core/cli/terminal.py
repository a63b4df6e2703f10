"""The callbacks that make training talk to a terminal: lines on stdout, a tqdm progress bar, SIGTERM as "stop at
the next batch", and the device lock naming the run it trains."""

from __future__ import annotations

import signal
import sys
from typing import Any

from ..engine.devicelock import DeviceLock
from ..training.callbacks import Callback, FitState


class Printer(Callback):
    """Training's lines on stdout (none with ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def on_message(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm, self.bar = tqdm, None

    def on_batch_end(self, state: FitState, batch: int, batches: int, loss: float) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=batches, desc=f"epoch {state.epoch}/{state.cfg.epochs}", leave=False,
                                 disable=None, unit="batch", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(batch - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if batch == batches:
            self.close()

    def on_exception(self, state: FitState, outcome: str, message: str) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopOnSignal(Callback):
    """SIGTERM (the app's Cancel) stops training at the next batch; last.pt keeps the last finished epoch."""

    def __init__(self) -> None:
        self.stop = False
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop = True

    def should_stop(self) -> bool:
        return self.stop


class LockLabel(Callback):
    """The device lock names the run in training once its folder exists (a sweep's: each run in turn), so a
    second training is told which run to wait for."""

    def __init__(self, lock: DeviceLock | None) -> None:
        self.lock = lock

    def on_setup(self, state: FitState) -> None:
        if self.lock is not None:
            self.lock.describe(run=state.run.name, root=str(state.run.root.resolve()))


def terminal_callbacks(quiet: bool) -> list[Callback]:
    return [StopOnSignal(), Printer(quiet), ProgressBar()]
