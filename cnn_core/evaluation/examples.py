"""A few example images of a run's classes, so Predict can show what a model knows next to its answer."""

from __future__ import annotations

import os

import numpy as np

from ..config.train_config import TrainConfig
from ..data import data_dir, dataset_info
from ..engine.prepared import prepare_data
from ..runs.rundir import RunDir


def has_local_data(dataset: str, data_dir_: str | os.PathLike | None = None) -> bool:
    """Whether ``dataset`` loads without a download (folders are local; a registered dataset must be found)."""
    if ":" in dataset:
        return True
    try:
        return dataset_info(dataset).locate(data_dir(data_dir_)) is not None
    except Exception:  # noqa: BLE001 - an unknown or odd name just has no examples
        return False


def class_examples(run: str | os.PathLike | RunDir, root: str | os.PathLike | None = None,
                   data_dir_: str | os.PathLike | None = None, limit: int = 10) -> list[tuple[str, np.ndarray]]:
    """The first test image of each class (up to ``limit`` classes) as ``(class, uint8 (H, W[, C]))``; [] when
    the run's dataset is not on this machine (never a download). Raises CnnError when it cannot be read."""
    run_dir = RunDir.resolve(run, root)
    cfg = TrainConfig.from_dict(run_dir.config())
    if not has_local_data(cfg.dataset, data_dir_):
        return []
    prep = prepare_data(cfg, data_dir_, split_file=run_dir.file(RunDir.SPLIT))
    x, y = prep.split("test")
    labels = y.numpy()
    out = []
    for c, name in enumerate(prep.classes[:limit]):
        hits = np.flatnonzero(labels == c)
        if len(hits):
            img = x[int(hits[0])].permute(1, 2, 0).numpy()  # (H, W, C)
            out.append((name, img[..., 0] if img.shape[-1] == 1 else img))
    return out
