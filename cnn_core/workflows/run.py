"""A whole training run: fit, then the saved test and validation reports of its best checkpoint, then its model
card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..evaluation.modelcard import write_model_card
from ..evaluation.reports import SPLITS, checkpoint_stamp, evaluate_run, split_report
from ..training.callbacks import Callback, FitState
from ..training.loop import fit
from .insight import Insight


class RunReports(Callback):
    """When training ends: the best checkpoint's test and validation reports (from fit's own passes, when it
    kept the logits; else evaluated on its data), saved in the run folder, and ``model_card.md``. A report or
    card that cannot be written is said, never a reason to fail a finished run."""

    def on_fit_end(self, state: FitState) -> None:
        reports = {}
        for split in SPLITS:
            try:
                reports[split] = self.report(state, split)
                state.run.write_report(split, reports[split])
            except CnnError as e:
                state.say(f"{split} report not saved: {e}")
        try:
            write_model_card(state.run, data_dir=state.data_dir, prep=state.prep, report=reports.get("test"))
        except CnnError as e:
            state.say(f"model card not written: {e}")

    @staticmethod
    def report(state: FitState, split: str) -> dict[str, Any]:
        if split not in state.best_logits:  # a distributed run: rank 0 evaluates the best checkpoint alone
            return evaluate_run(state.run, split, data_dir=state.data_dir, prep=state.prep)
        logits, labels = state.best_logits[split]
        return split_report(logits, labels, state.prep.classes, run=state.run.name, split=split,
                            **checkpoint_stamp(state.run.checkpoint("best")))


def train_run(cfg: TrainConfig | None = None, *, callbacks: Sequence[Callback] = (), **where: Any) -> dict[str, Any]:
    """``fit`` (same arguments: name, resume, prepared, root, data_dir) with the reports and model card written at
    the end, and a look inside the model each epoch (Insight, before the caller's callbacks: they find it
    written)."""
    return fit(cfg, callbacks=[Insight(), *callbacks, RunReports()], **where)
