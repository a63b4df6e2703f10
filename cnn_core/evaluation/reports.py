"""Evaluating a run: a checkpoint's classification report on its own test or validation split, with per-image
predictions and confidences for galleries."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..config.train_config import TrainConfig
from ..core.errors import CheckpointError, CnnError
from ..engine.device import inference_precision, pick_device, set_threads
from ..engine.forward import predict_logits
from ..engine.prepared import eval_batches, prepare_data
from ..runs.checkpoint import load_checkpoint, model_from_checkpoint
from ..runs.rundir import RunDir
from .metrics import classification_report, most_confused


def evaluate_run(run: str | os.PathLike | RunDir, split: str = "test", root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, which: str = "best", prep: Any = None) -> dict[str, Any]:
    """Metrics of the run's best checkpoint on its own split, plus per-image predictions for galleries.
    ``prep`` (a training's own Prepared data) saves loading the dataset again."""
    if split not in ("test", "val"):
        raise CnnError(f"split must be test or val, not {split!r}")
    set_threads()
    run_dir = RunDir.resolve(run, root)
    path = run_dir.checkpoint(which)
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
                               cfg.tta)
    return split_report(logits, y, prep.classes, run=run_dir.name, split=split, checkpoint=path.name,
                        epoch=int(ckpt.get("epoch", 0)))


def split_report(logits: torch.Tensor, y: torch.Tensor, classes: list[str], **about: Any) -> dict[str, Any]:
    """The classification report of one split's logits, with per-image predictions for galleries."""
    probs = torch.softmax(logits, 1).numpy()
    pred = probs.argmax(1)
    report = classification_report(y.numpy(), pred, classes)
    report.update(about, most_confused=most_confused(report["confusion_matrix"], classes),
                  y_true=y.numpy().tolist(), y_pred=pred.tolist(),
                  confidence=[round(float(v), 5) for v in probs.max(1)])
    return report


def split_images(run: str | os.PathLike | RunDir, split: str, indices: list[int], root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> list[np.ndarray]:
    """The uint8 (H, W, C) images at ``indices`` of a run's split, for a gallery."""
    run_dir = RunDir.resolve(run, root)
    cfg = TrainConfig.from_dict(run_dir.config())
    x, _ = prepare_data(cfg, data_dir, split_file=run_dir.file(RunDir.SPLIT)).split(split)
    return [x[i].permute(1, 2, 0).numpy().squeeze(-1) if x.shape[1] == 1 else x[i].permute(1, 2, 0).numpy()
            for i in indices]
