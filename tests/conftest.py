"""Shared fixtures. Tests run on the CPU; real datasets come from $CNN_DATA_DIR (CI: ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnn_core.core.files import write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
os.environ.setdefault("CNN_DATA_DIR", str(SHARED))
os.environ.setdefault("CNN_THREADS", "2")


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory, monkeypatch) -> Path:
    """A private app state folder per test (limits, uploads) with its own device locks: no test waits on another's
    lock, nor on a training of this machine's user."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("CNN_STATE_DIR", str(folder))
    monkeypatch.setenv("CNN_LOCK_DIR", str(folder / "locks"))
    return folder


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """A private checkpoints folder for one test."""
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("CNN_CHECKPOINTS", str(root))
    return root


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> Path:
    """A checkout without the course datasets: $CNN_DATA_DIR is an empty folder, and a report that tries to load
    a dataset fails the test."""
    from cnn_core.evaluation import reports

    def refuse(*_args, **_kwargs):
        raise AssertionError("a dataset was loaded")

    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CNN_DATA_DIR", str(empty))
    monkeypatch.setattr(reports, "prepare_data", refuse)
    return empty


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """One real, short LeNet-5 training on digits, shared by the tests that only read a finished run."""
    from cnn_core.config import TrainConfig
    from cnn_core.workflows.run import train_run

    root = tmp_path_factory.mktemp("shared-runs")
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=12, batch_size=64, lr=0.05, schedule="onecycle",
                      seed=0)
    summary = train_run(cfg, name="digits-lenet", root=root)
    return Path(summary["run_dir"])


@pytest.fixture(scope="session")
def app_root(digits_run, tmp_path_factory) -> Path:
    """A checkpoints folder as the app meets it: the finished digits run, a second short run to compare it
    with, a run that failed before its first checkpoint, and one whose checkpoint is not a checkpoint."""
    import shutil
    import time

    from cnn_core.config import TrainConfig
    from cnn_core.workflows.run import train_run

    root = tmp_path_factory.mktemp("app-runs")
    shutil.copytree(digits_run, root / digits_run.name)
    train_run(TrainConfig(model="simple_cnn", dataset="digits", epochs=2, batch_size=64, max_batches=4,
                          optimizer="adam", lr=0.003, seed=1), name="digits-simple", root=root)
    failed = root / "failed-run"
    failed.mkdir()
    write_json(failed / "config.json", TrainConfig(dataset="digits").to_dict())
    write_json(failed / "status.json", {"state": "failed", "message": "no such folder: /nowhere"})
    broken = root / "broken-ckpt"
    shutil.copytree(digits_run, broken, ignore=shutil.ignore_patterns("*.pt"))
    (broken / "best.pt").write_bytes(b"this is not a checkpoint")
    write_json(broken / "status.json", {"state": "finished"})
    for age, name in enumerate(["digits-lenet", "digits-simple", "broken-ckpt", "failed-run"]):
        t = time.time() - 60 * age  # newest first in the app's pickers: the finished digits run
        os.utime(root / name, (t, t))
    return root
