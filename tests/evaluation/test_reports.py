"""Saved reports: a run keeps its test and validation evaluation, read back without the dataset, and evaluated
again only when its checkpoint changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_core.core.errors import DataError
from cnn_core.evaluation.reports import (
    SAVED_KEYS,
    evaluate_run,
    losses,
    run_report,
    saved_report,
    split_images,
    split_report,
    top_losses,
)
from cnn_core.runs.checkpoint import load_checkpoint
from cnn_core.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(digits_run, tmp_path) -> RunDir:
    """A private copy of the finished digits run (mtimes kept, as by a backup or an upload)."""
    shutil.copytree(digits_run, tmp_path / "runs" / "copy")
    return RunDir(tmp_path / "runs" / "copy")


def test_a_finished_run_keeps_its_test_and_validation_reports(digits_run):
    run = RunDir(digits_run)
    status = run.status()
    for split, images in (("test", 360), ("val", 144)):
        path = run.file(RunDir.REPORTS[split])
        assert len(path.read_text().splitlines()) == 1  # compact: thousands of per-image entries
        rep = json.loads(path.read_text())
        assert set(SAVED_KEYS) <= set(rep) and rep["split"] == split and rep["count"] == images
        assert rep["checkpoint"] == "best.pt" and rep["epoch"] == status["best_epoch"]
        assert len(rep["y_true"]) == len(rep["y_pred"]) == len(rep["confidence"]) == images
        assert all(0 < c <= 1 and round(c, 4) == c for c in rep["confidence"])
        assert sum(map(sum, rep["confusion_matrix"])) == images
        fresh = evaluate_run(run, split)  # the same checkpoint evaluated again agrees with what training saved
        assert rep["y_true"] == fresh["y_true"]
        assert [list(rep[k][0]) for k in ("per_class", "most_confused")] == [  # tables keep their column order
            list(fresh[k][0]) for k in ("per_class", "most_confused")]
        assert np.mean(np.array(rep["y_pred"]) == np.array(fresh["y_pred"])) > 0.99
    assert json.loads(run.file("report-test.json").read_text())["accuracy"] == pytest.approx(
        status["test_accuracy"], abs=1e-5)


def test_a_saved_report_is_read_without_the_dataset(run, no_data):
    for split in ("test", "val"):
        rep = run_report("copy", split, run.root)
        assert rep == {**json.loads(run.file(RunDir.REPORTS[split]).read_text()), "run": "copy"}
    assert list(no_data.iterdir()) == []


def test_a_renamed_runs_report_names_it_by_its_new_name(run):
    shutil.move(run.path, run.root / "renamed")
    assert run_report("renamed", "test", run.root)["run"] == "renamed"


def test_a_checkpoint_copied_with_a_new_time_keeps_its_report(run, no_data):
    """A git checkout or a copy gives best.pt a new time; its epoch says it is the same checkpoint."""
    t = run.file("best.pt").stat().st_mtime + 3600
    os.utime(run.file("best.pt"), (t, t))
    assert run_report(run, "test")["epoch"] == load_checkpoint(run.file("best.pt"))["epoch"]


def test_a_report_older_than_its_checkpoint_is_evaluated_again_and_saved(run):
    rep = run.report("test")
    run.write_report("test", {**rep, "accuracy": 0.123})  # what the saved file says, so a fresh one differs
    assert run_report(run, "test")["accuracy"] == 0.123
    ckpt = run.load("best")
    run.save({**ckpt, "epoch": ckpt["epoch"] + 3}, "best")  # as a resumed run's better epoch writes it
    assert saved_report(run, "test") is None
    fresh = run_report(run, "test")
    assert fresh["epoch"] == ckpt["epoch"] + 3 and fresh["accuracy"] == pytest.approx(rep["accuracy"], abs=0.01)
    assert run.report("test")["epoch"] == fresh["epoch"]  # saved for next time
    assert saved_report(run, "test") == fresh


def test_a_damaged_or_foreign_report_is_not_trusted(run):
    run.file("report-val.json").write_text("{not json")
    assert saved_report(run, "val") is None
    rep = run.report("test")
    run.write_report("test", {k: v for k, v in rep.items() if k != "y_pred"})
    assert saved_report(run, "test") is None
    run.write_report("test", {**rep, "checkpoint": "last.pt"})
    assert saved_report(run, "test") is None
    assert run_report(run, "val")["count"] == 144  # evaluated again: digits is bundled


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["dark", "bright"]):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray((rng.integers(0, 60, (16, 16, 3)) + 150 * k).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_without_its_dataset_a_run_is_still_evaluated_until_its_checkpoint_changes(tmp_path, monkeypatch):
    from cnn_core.config import TrainConfig
    from cnn_core.workflows.run import train_run

    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    photos = make_folder(tmp_path / "photos")
    root = tmp_path / "runs"
    train_run(TrainConfig(model="lenet5", dataset=f"folder:{photos}", epochs=1, batch_size=8), name="own", root=root)
    shutil.rmtree(photos)
    run = RunDir(root / "own")
    tested = sum(json.loads(run.file(RunDir.SPLIT).read_text())["counts"]["test"].values())
    assert run_report("own", "test", root)["count"] == tested  # the saved report: the photos are gone
    with pytest.raises(DataError, match="does not exist"):
        split_images(run, "test", [0])  # the gallery alone needs them
    ckpt = run.load("best")
    run.save({**ckpt, "epoch": ckpt["epoch"] + 1}, "best")
    with pytest.raises(DataError):  # a newer checkpoint has no saved report, and nothing to evaluate it on
        run_report("own", "test", root)


def test_a_gallery_never_starts_a_download(tmp_path):
    from cnn_core.config import TrainConfig

    run = RunDir.create(tmp_path / "runs", "m", "lenet5", "mnist")
    run.write_config(TrainConfig(model="lenet5", dataset="mnist").to_dict())
    with pytest.raises(DataError, match="dataset mnist is not in .*no-data; put it there"):
        split_images(run, "test", [0], data_dir=tmp_path / "no-data")
    assert not (tmp_path / "no-data").exists()


@pytest.mark.parametrize("run_name, accuracy", [("demo-mnist-lenet5", 0.9887), ("demo-cifar10-fast", 0.9013),
                                                ("demo-cifar10-lenet5", 0.6569)])
def test_the_demo_runs_ship_their_reports(tmp_path, run_name, accuracy):
    """On a fresh clone without the course datasets, `evaluate` reads a demo's saved report (the checkout
    gave its files new times)."""
    shutil.copytree(ROOT / "checkpoints" / run_name, tmp_path / "ck" / run_name)  # copytree keeps mtimes: touch
    for p in (tmp_path / "ck" / run_name).iterdir():
        os.utime(p)
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = {**os.environ, "CNN_CHECKPOINTS": str(tmp_path / "ck"), "CNN_DATA_DIR": str(empty)}
    for split in ("test", "val"):
        p = subprocess.run([sys.executable, "-m", "cnn_core", "evaluate", run_name, "--split", split, "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        rep = json.loads(p.stdout)
        assert rep["run"] == run_name and rep["split"] == split and rep["count"] >= 2000
        if split == "test":
            assert rep["accuracy"] == pytest.approx(accuracy, abs=1e-4)
        saved = json.loads((tmp_path / "ck" / run_name / RunDir.REPORTS[split]).read_text())
        assert len(saved["true_probability"]) == rep["count"]  # top losses work without the dataset
    assert list(empty.iterdir()) == []
    size = sum((tmp_path / "ck" / run_name / f).stat().st_size for f in RunDir.REPORTS.values())
    assert size < 400_000


def test_each_images_loss_is_minus_log_of_its_true_class_probability_and_top_losses_order_by_it():
    import torch

    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 30.0, 0.0], [1.0, 1.1, 0.0], [0.0, 0.0, 2.0]])
    y = torch.tensor([0, 0, 1, 2])  # image 1: confidently wrong (p(true) about 1e-13, which decimals make 0)
    rep = split_report(logits, y, ["a", "b", "c"])
    p_true = torch.softmax(logits, 1)[torch.arange(4), y].numpy()
    assert rep["true_probability"] == pytest.approx(p_true.tolist(), rel=1e-2)
    assert rep["true_probability"][1] > 0
    assert losses(rep) == pytest.approx(-np.log(p_true), rel=1e-2)
    assert top_losses(rep, 3) == [1, 2, 3] and top_losses(rep, 10) == [1, 2, 3, 0]
    old = {k: v for k, v in rep.items() if k != "true_probability"}
    assert losses(old) is None and top_losses(old, 3) is None


def test_a_report_saved_before_losses_is_evaluated_again_for_them_only_when_the_data_is_here(run, monkeypatch):
    from cnn_core.evaluation import reports

    path = run.file(RunDir.REPORTS["test"])
    old = {k: v for k, v in json.loads(path.read_text()).items() if k != "true_probability"}
    path.write_text(json.dumps(old))
    assert "true_probability" not in run_report(run, "test")  # what Evaluate and Compare read: as saved
    with monkeypatch.context() as m:  # digits is bundled: pretend it is a course dataset that is not here
        m.setattr(reports, "dataset_present", lambda *_: False)
        assert "true_probability" not in run_report(run, "test", with_losses=True)  # as saved
    rep = run_report(run, "test", with_losses=True)  # digits is bundled: evaluated again, and saved
    assert len(rep["true_probability"]) == rep["count"] == 360 and rep["y_true"] == old["y_true"]
    assert json.loads(path.read_text())["true_probability"] == rep["true_probability"]
