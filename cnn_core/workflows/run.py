"""A whole training run: fit, then the test report of its best checkpoint, then its model card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..evaluation.modelcard import write_model_card
from ..evaluation.reports import split_report
from ..training.callbacks import Callback, FitState
from ..training.loop import fit
from .insight import Insight


class ModelCardWriter(Callback):
    """When training ends: the best checkpoint's test report (from fit's own test pass, when it kept the
    logits) and ``model_card.md``. A card that cannot be written is reported, never a reason to fail a
    finished run."""

    def on_fit_end(self, state: FitState) -> None:
        report = None
        if state.test_logits is not None:
            report = split_report(state.test_logits, state.test_labels, state.prep.classes, run=state.run.name,
                                  split="test", checkpoint=state.run.BEST, epoch=state.best_epoch)
        try:
            write_model_card(state.run, data_dir=state.data_dir, prep=state.prep, report=report)
        except CnnError as e:
            state.say(f"model card not written: {e}")


def train_run(cfg: TrainConfig | None = None, *, callbacks: Sequence[Callback] = (), **where: Any) -> dict[str, Any]:
    """``fit`` (same arguments: name, resume, prepared, root, data_dir) with the model card written at the end,
    and a look inside the model each epoch (Insight, before the caller's callbacks: they find it written)."""
    return fit(cfg, callbacks=[Insight(), *callbacks, ModelCardWriter()], **where)
