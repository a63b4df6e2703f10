"""Shared fixtures. Tests run on the CPU; real datasets come from $CNN_DATA_DIR (CI: ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
os.environ.setdefault("CNN_DATA_DIR", str(SHARED))
os.environ.setdefault("CNN_THREADS", "2")


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A private checkpoints folder for one test."""
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("CNN_CHECKPOINTS", str(root))
    return root


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """One real, short LeNet-5 training on digits, shared by the tests that only read a finished run."""
    from cnn_core.config import TrainConfig
    from cnn_core.train import fit

    root = tmp_path_factory.mktemp("shared-runs")
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=12, batch_size=64, lr=0.05, schedule="onecycle",
                      seed=0)
    summary = fit(cfg, name="digits-lenet", root=root)
    return Path(summary["run_dir"])


def have_dataset(name: str) -> bool:
    from cnn_core.data import data_dir, dataset_info

    return dataset_info(name).locate(data_dir()) is not None
