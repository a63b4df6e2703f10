"""Evaluating a run: a checkpoint's classification report on its own test or validation split, with per-image
predictions, confidences and the probability of the true class (whose -log is the image's loss: "top losses")
for galleries.

A run keeps its reports (``report-test.json``, ``report-val.json``, written when training ends), so a page or
the CLI reads them instantly and without the dataset; ``run_report`` recomputes one only when its checkpoint
changed since (a resumed run). A report of 10,000 test images is about 170 KB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..core.errors import CheckpointError, CnnError, DataError
from ..data import data_dir as default_data_dir
from ..data import dataset_present
from ..engine.device import inference_precision, pick_device, set_threads
from ..engine.forward import predict_logits
from ..engine.prepared import Prepared, eval_batches, prepare_data
from ..runs.checkpoint import load_checkpoint, model_from_checkpoint
from ..runs.rundir import RunDir
from .metrics import classification_report, most_confused

SPLITS = tuple(RunDir.REPORTS)  # test, val
CONFIDENCE_DIGITS = 4  # enough to order a gallery; 70 of a 10,000-image report's 110 KB
# significant digits of p(true class): a confidently wrong image's p is 1e-6 or less, which decimals would
# round to 0, losing the very order "top losses" shows
TRUE_DIGITS = 3
P_FLOOR = 1e-30  # a p that underflowed to 0 still has a finite loss (69)
SAVED_KEYS = ("split", "checkpoint", "epoch", "checkpoint_mtime", "accuracy", "macro_f1", "confusion_matrix",
              "per_class", "classes", "count", "most_confused", "y_true", "y_pred", "confidence")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise CnnError(f"split must be test or val, not {split!r}")


def evaluate_run(run: str | os.PathLike | RunDir, split: str = "test", root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, which: str = "best", prep: Prepared | None = None
                 ) -> dict[str, Any]:
    """Metrics of the run's best checkpoint on its own split, plus per-image predictions for galleries: always
    computed (it needs the dataset). ``prep`` (a training's own Prepared data) saves loading it again."""
    _check_split(split)
    set_threads()
    run_dir = RunDir.resolve(run, root)
    path = run_dir.checkpoint(which)
    mtime = path.stat().st_mtime  # before loading: a checkpoint replaced meanwhile makes the report stale, not wrong
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    cfg = TrainConfig.from_dict(ckpt["config"])
    device = pick_device("auto" if cfg.device == "auto" else cfg.device)
    if prep is None:
        prep = prepare_data(cfg, data_dir, device, run_dir.file(RunDir.SPLIT))
    if list(prep.classes) != list(ckpt["classes"]):
        raise CheckpointError(f"the dataset's classes no longer match run {run_dir.name}'s")
    prep.mean, prep.std = list(ckpt["input"]["mean"]), list(ckpt["input"]["std"])
    model = model.to(device, memory_format=torch.channels_last)
    logits, y = predict_logits(model, eval_batches(prep, split), device, inference_precision(cfg.precision, device),
                               cfg.tta, cfg.tta_shift)
    return split_report(logits, y, prep.classes, run=run_dir.name, split=split, checkpoint=path.name,
                        epoch=int(ckpt.get("epoch", 0)), checkpoint_mtime=mtime)


def split_report(logits: torch.Tensor, y: torch.Tensor, classes: list[str], **about: Any) -> dict[str, Any]:
    """The classification report of one split's logits, with per-image predictions for galleries. ``about``:
    run, split, and which checkpoint (checkpoint, epoch, checkpoint_mtime: see ``checkpoint_stamp``)."""
    probs = torch.softmax(logits.float(), 1).numpy()
    pred = probs.argmax(1)
    report = classification_report(y.numpy(), pred, classes)
    report.update(about, most_confused=most_confused(report["confusion_matrix"], classes),
                  y_true=y.numpy().tolist(), y_pred=pred.tolist(),
                  confidence=[round(float(v), CONFIDENCE_DIGITS) for v in probs.max(1)],
                  true_probability=[float(f"{v:.{TRUE_DIGITS}g}") for v in probs[np.arange(len(pred)), y.numpy()]])
    return report


def losses(report: dict[str, Any]) -> np.ndarray | None:
    """Each image's loss, -log p(true class), from a report; None for one saved before reports kept it."""
    p = report.get("true_probability")
    if p is None:
        return None
    return -np.log(np.clip(np.asarray(p, np.float64), P_FLOOR, 1.0))


def top_losses(report: dict[str, Any], n: int) -> list[int] | None:
    """The ``n`` images the model is most confidently wrong about (highest loss first), as split indices."""
    loss = losses(report)
    return None if loss is None else np.argsort(-loss, kind="stable")[:n].tolist()


def checkpoint_stamp(path: Path) -> dict[str, Any]:
    """Which checkpoint a report is of: its file name, epoch and modification time."""
    mtime = path.stat().st_mtime
    return {"checkpoint": path.name, "epoch": int(load_checkpoint(path, mmap=True).get("epoch", 0)),
            "checkpoint_mtime": mtime}


def saved_report(run: str | os.PathLike | RunDir, split: str = "test", root: str | os.PathLike | None = None
                 ) -> dict[str, Any] | None:
    """The run's saved report of ``split`` if it is of the checkpoint the run has now, else None.

    The same modification time means the same file. Another one (a copy, a git checkout) is the same
    checkpoint when its epoch is the report's: a run's best.pt only ever moves to a later epoch."""
    _check_split(split)
    run_dir = RunDir.resolve(run, root)
    rep = run_dir.report(split)
    path = run_dir.checkpoint("best")
    if any(k not in rep for k in SAVED_KEYS) or rep["split"] != split or rep["checkpoint"] != path.name:
        return None
    if rep["checkpoint_mtime"] != path.stat().st_mtime and rep["epoch"] != checkpoint_stamp(path)["epoch"]:
        return None
    return {**rep, "run": run_dir.name}  # a renamed run's report still names it rightly


def run_report(run: str | os.PathLike | RunDir, split: str = "test", root: str | os.PathLike | None = None,
               data_dir: str | os.PathLike | None = None, prep: Prepared | None = None, with_losses: bool = False
               ) -> dict[str, Any]:
    """The run's report of ``split``: the saved one when it is of the current checkpoint (no dataset needed),
    else evaluated afresh and saved for next time. What Evaluate, Compare, the CLI and the model card show.
    ``with_losses``: a saved report from before reports kept p(true class) is evaluated again when the dataset
    is here (without it, it is returned as it is: ``losses`` says None)."""
    run_dir = RunDir.resolve(run, root)
    rep = saved_report(run_dir, split)
    if rep is not None and not (with_losses and "true_probability" not in rep and _data_here(run_dir, data_dir)):
        return rep
    rep = evaluate_run(run_dir, split, data_dir=data_dir, prep=prep)
    try:
        run_dir.write_report(split, rep)
    except CnnError:
        pass  # a read-only copy of the runs still evaluates; it evaluates again next time
    return rep


def _data_here(run_dir: RunDir, data_dir: str | os.PathLike | None) -> bool:
    return dataset_present(TrainConfig.from_dict(run_dir.config()).dataset, data_dir)


def split_images(run: str | os.PathLike | RunDir, split: str, indices: list[int], root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> list[np.ndarray]:
    """The uint8 (H, W, C) images at ``indices`` of a run's split, for a gallery. A dataset that is not here is
    a DataError at once (a gallery never starts a download)."""
    run_dir = RunDir.resolve(run, root)
    cfg = TrainConfig.from_dict(run_dir.config())
    if not _data_here(run_dir, data_dir):
        raise DataError(f"dataset {cfg.dataset} is not in {default_data_dir(data_dir)}; put it there (or set "
                        "CNN_DATA_DIR) to see the images")
    x, _ = prepare_data(cfg, data_dir, split_file=run_dir.file(RunDir.SPLIT)).split(split)
    return [x[i].permute(1, 2, 0).numpy().squeeze(-1) if x.shape[1] == 1 else x[i].permute(1, 2, 0).numpy()
            for i in indices]
