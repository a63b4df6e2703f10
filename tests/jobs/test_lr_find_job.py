"""The learning-rate finder as a job: `python -m cnn_core lr-find` in the device's queue, under its lock, telling the
app its progress and outcome through its result file (never its output)."""

from __future__ import annotations

import sys

import pytest

from cnn_core.config import TrainConfig
from cnn_core.core import settings
from cnn_core.core.errors import CnnError
from cnn_core.core.files import write_json
from cnn_core.jobs import lrfind
from cnn_core.jobs.limits import limits_path
from cnn_core.jobs.manager import JobManager

TINY = {"model": "lenet5", "dataset": "digits", "epochs": 1, "batch_size": 64, "max_batches": 2,
        "precision": "fp32"}
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]  # a stand-in process that never ends by itself


@pytest.fixture
def manager():
    m = JobManager()
    yield m
    m.shutdown(wait=30)


def test_a_finder_job_runs_the_cli_and_reads_its_result_file(runs, manager):
    cfg = TrainConfig(model="lenet5", dataset="digits", batch_size=128, precision="fp32")
    job = manager.submit_lr_find(cfg, owner="someone")
    assert job.kind == "lr-find" and job.args[:1] == ["lr-find"] and "--out" in job.args
    assert job.file.path.parent == settings.lr_find_dir() and job.status()["config"] == cfg.to_dict()
    manager.wait(job.id, timeout=600)
    assert job.state == "finished", job.message
    r = job.result()
    assert r is not None and r["config"] == cfg.to_dict() and r["falling"][0] <= r["suggestion"] <= r["falling"][1]
    assert job.summary["suggestion"] == r["suggestion"] and job.fraction_done() == 1.0
    assert not runs.exists() or not any(runs.iterdir())  # no run folder


def test_it_waits_in_the_device_queue_behind_a_training(runs):
    m = JobManager(command=SLEEPER)
    try:
        training = m.submit(TrainConfig(**TINY), name="busy", root=runs)
        finder = m.submit_lr_find(TrainConfig(**TINY))
        assert training.state == "running" and finder.state == "queued" and m.position(finder.id) == 1
        assert finder.status()["state"] == "queued" and finder.progress() == {} and finder.result() is None
        m.cancel(finder.id)
        assert finder.state == "cancelled" and not m.queued()
    finally:
        m.shutdown(wait=10)


def test_progress_and_cancel_of_a_running_finder(runs):
    m = JobManager(command=SLEEPER)
    try:
        job = m.submit_lr_find(TrainConfig(**TINY), owner="me")
        assert job.state == "running"
        write_json(job.file.path, {**job.status(), "state": "running", "step": 25, "steps": 100, "elapsed": 5.0})
        assert job.progress()["step"] == 25 and job.fraction_done() == 0.25 and job.eta_seconds() == 15.0
        with pytest.raises(CnnError, match="not yours to cancel"):
            m.cancel(job.id, by="other", operator=False)
        m.cancel(job.id, by="me", operator=False)
        m.wait(job.id, timeout=30)
        assert job.state == "cancelled" and job.status()["state"] == "cancelled" and job.result() is None
    finally:
        m.shutdown(wait=10)


def test_a_failure_is_one_line_from_the_result_file(runs, manager, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "no-datasets"))  # no course datasets on this server
    job = manager.submit_lr_find(TrainConfig(model="lenet5", dataset="mnist"))
    manager.wait(job.id, timeout=300)
    assert job.state == "failed" and "MNIST not found" in job.message and "\n" not in job.message
    assert job.status()["message"] == job.message


def test_visitors_are_held_to_their_share_and_old_results_are_forgotten(runs, monkeypatch):
    m = JobManager(command=SLEEPER)
    try:
        write_json(limits_path(), {"queued_per_visitor": 1, "running_per_visitor": 1})
        m.submit_lr_find(TrainConfig(**TINY), owner="v", operator=False)
        m.submit_lr_find(TrainConfig(**TINY), owner="v", operator=False)
        with pytest.raises(CnnError, match="you already have 1 job"):
            m.submit_lr_find(TrainConfig(**TINY), owner="v", operator=False)
    finally:
        m.shutdown(wait=10)
    monkeypatch.setattr(lrfind, "KEEP", 3)
    for _ in range(5):
        lrfind.new_job("job-x", TrainConfig(**TINY), runs, "cpu", "")
    assert len(list(settings.lr_find_dir().glob("lr-find-*.json"))) == 3
