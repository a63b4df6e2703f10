"""Background training jobs: real `python -m cnn_core train` subprocesses on digits, queued per device,
cancelled with SIGTERM, and failures reported with the process's last word."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.jobs.manager import JobManager
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows.run import train_run

pytestmark = pytest.mark.slow

TINY = {"model": "lenet5", "dataset": "digits", "epochs": 1, "batch_size": 64, "max_batches": 2,
        "precision": "fp32"}
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]  # a stand-in process that never trains


@pytest.fixture
def manager():
    m = JobManager()
    yield m
    m.shutdown(wait=30)


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_job_is_its_run_folder_from_the_moment_it_is_queued(runs):
    m = JobManager(command=SLEEPER, queue_limit=1)
    try:
        cfg = TrainConfig(**{**TINY, "lr": 0.0007, "weight_decay": 1.5e-05, "optimizer": "adamw"})
        running = m.submit(cfg, name="a", root=runs)
        waiting = m.submit(cfg, name="b", root=runs)
        # the parent writes the config (the child trains exactly that), and the state the child will take over
        assert RunDir(runs / "b").config() == cfg.to_dict() and RunDir(runs / "b").status()["state"] == "queued"
        assert waiting.args == ["train", "--prepared", "b"] and running.argv[-3:] == ["--prepared", "a", "--quiet"]
        assert RunDir(runs / "b").info().state == "queued"
    finally:
        m.shutdown(wait=10)
    assert running.state == "cancelled" and waiting.state == "cancelled"
    assert not (runs / "a").exists() and not (runs / "b").exists()  # nothing trained: no run folder left behind


def test_second_job_waits_for_the_first_then_runs(runs, manager):
    first = manager.submit(TrainConfig(**TINY), name="first", root=runs)
    second = manager.submit(TrainConfig(**TINY), name="first", root=runs)  # a taken name gets a suffix
    assert second.run == "first-2" and first.device == second.device == "cpu"
    assert first.state == "running" and second.state == "queued" and manager.position(second.id) == 1
    assert [j.id for j in manager.queued("cpu")] == [second.id]
    manager.wait(second.id, timeout=300)
    assert first.state == second.state == "finished", (first.message, second.message)
    assert second.started >= first.ended  # never on top of each other
    for job in (first, second):
        status = job.run_dir.status()
        assert status["state"] == "finished" and job.summary["test_accuracy"] == status["test_accuracy"]
        assert job.run_dir.has("best") and len(job.metrics()) == 1
        assert job.fraction_done() == 1.0


def test_queue_is_bounded_and_a_queued_job_can_leave_it(runs):
    m = JobManager(command=SLEEPER, queue_limit=1)
    try:
        running = m.submit(TrainConfig(**TINY), name="a", root=runs)
        waiting = m.submit(TrainConfig(**TINY), name="b", root=runs)
        with pytest.raises(CnnError, match="busy with a and 1 more"):
            m.submit(TrainConfig(**TINY), name="c", root=runs)
        assert not (runs / "c").exists()  # refused before anything was written for it
        m.cancel(waiting.id)
        assert waiting.state == "cancelled" and not m.queued() and running.state == "running"
        assert not (runs / "b").exists()
        m.cancel(running.id)  # SIGTERM
        m.wait(running.id, timeout=30)
        assert running.state == "cancelled"
    finally:
        m.shutdown(wait=10)


def test_cancel_stops_a_real_run_at_the_next_batch(runs, manager):
    job = manager.submit(TrainConfig(**{**TINY, "epochs": 200, "max_batches": 3}), name="long", root=runs)
    wait_for(lambda: job.status().get("epochs_run", 0) >= 1, timeout=180)  # one epoch saved in last.pt
    assert 0 < job.fraction_done() < 0.5
    manager.cancel(job.id)
    manager.wait(job.id, timeout=120)
    assert job.state == "cancelled" and job.returncode == 0
    status = job.run_dir.status()
    assert status["state"] == "cancelled" and 1 <= status["epochs_run"] < 200
    assert job.run_dir.load("last")["epoch"] == status["epochs_run"]
    assert job.run_dir.info().state == "cancelled"


def test_a_run_that_fails_reports_the_clis_message(runs, manager, tmp_path):
    """A folder that is gone by the time the job starts (its name is fine, so the job is queued): the job
    fails with the command line's own one-line message."""
    job = manager.submit(TrainConfig(**{**TINY, "dataset": f"folder:{tmp_path / 'gone'}"}), name="bad", root=runs)
    manager.wait(job.id, timeout=120)
    assert job.state == "failed" and job.returncode == 2
    assert "does not exist" in job.message and not job.message.startswith("error:")
    assert not (runs / "bad").exists()  # it never trained: the job keeps the message, the runs list stays clean


def test_a_killed_process_is_marked_failed_on_disk_too(runs, manager):
    job = manager.submit(TrainConfig(**{**TINY, "epochs": 200}), name="killed", root=runs)
    wait_for(lambda: job.status().get("epochs_run", 0) >= 1, timeout=180)  # an epoch to keep
    os.kill(job.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer would do
    manager.wait(job.id, timeout=60)
    assert job.state == "failed" and "killed by signal 9" in job.message
    status = job.run_dir.status()
    assert status["state"] == "failed" and status["pid"] is None
    assert job.run_dir.info().state == "failed"


def test_a_process_that_dies_says_its_last_line(runs):
    script = ("import sys; print('warming up', file=sys.stderr); "
              "print('error: out of cheese', file=sys.stderr); sys.exit(1)")
    m = JobManager(command=[sys.executable, "-c", script])
    job = m.submit(TrainConfig(**TINY), name="x", root=runs)
    m.wait(job.id, timeout=30)
    assert job.state == "failed" and job.message == "out of cheese"


def test_resume_continues_a_stopped_run_from_its_next_epoch(runs, manager):
    epoch_done = {"n": 0}
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    train_run(cfg, name="stopped", root=runs, callbacks=[Hooks(epoch=lambda row: epoch_done.update(n=row["epoch"]),
                                                               stop=lambda: epoch_done["n"] >= 1)])  # in epoch 2
    assert RunDir(runs / "stopped").info().state == "cancelled"
    job = manager.resume("stopped", root=runs)
    assert job.start_epoch == 2 and job.resume and job.run == "stopped"
    with pytest.raises(CnnError, match="already running or waiting"):
        manager.resume("stopped", root=runs)
    manager.wait(job.id, timeout=300)
    assert job.state == "finished", job.message
    assert [r["epoch"] for r in RunDir(runs / "stopped").metrics()] == [1, 2]
    with pytest.raises(CnnError, match="already finished"):
        manager.resume("stopped", root=runs)


def test_unknown_model_or_dataset_is_refused_before_anything_starts(runs, manager):
    with pytest.raises(CnnError, match="unknown model"):
        manager.submit(TrainConfig(**{**TINY, "model": "lenet6"}), root=runs)
    for dataset, said in (("digitz", "unknown dataset 'digitz'"), ("zip:x", "unknown dataset kind 'zip'")):
        with pytest.raises(CnnError, match=said):
            manager.submit(TrainConfig(**{**TINY, "dataset": dataset}), root=runs)
    assert not manager.jobs() and not runs.exists()


def test_a_finished_run_is_trained_further_by_its_owner_or_the_operator(runs, manager):
    first = manager.submit(TrainConfig(**TINY), name="grow", root=runs, owner="ann", operator=False,
                           estimated_seconds=60)
    manager.wait(first.id, timeout=300)
    assert first.state == "finished" and RunDir(runs / "grow").status()["owner"] == "ann"
    with pytest.raises(CnnError, match="not trained by a job of yours"):
        manager.resume("grow", root=runs, owner="bob", operator=False, epochs=2, estimated_seconds=60)
    with pytest.raises(CnnError, match="has trained 1 epochs already"):
        manager.resume("grow", root=runs, owner="ann", operator=False, epochs=1, estimated_seconds=60)
    job = manager.resume("grow", root=runs, owner="ann", operator=False, epochs=2, estimated_seconds=60)
    assert job.extending and job.args[-2:] == ["--epochs", "2"] and job.start_epoch == 2 and job.owner == "ann"
    manager.wait(job.id, timeout=300)
    assert job.state == "finished", job.message
    assert [r["epoch"] for r in RunDir(runs / "grow").metrics()] == [1, 2]
    operator = manager.resume("grow", root=runs, epochs=3)  # the operator may train any run further
    manager.wait(operator.id, timeout=300)
    assert operator.state == "finished" and RunDir(runs / "grow").config()["epochs"] == 3
    (runs / "grow" / "last.pt").unlink()
    with pytest.raises(CnnError, match="no last.pt to continue from"):
        manager.resume("grow", root=runs, epochs=4)


# ------------------------------------------------------------------------------------------------ sweep jobs

SWEEP_GRID = {"lr": [0.05, 0.01], "augment": [True, False]}


def test_a_sweep_job_trains_what_its_folder_says(runs, manager):
    from cnn_core.workflows.sweep import sweep_plan_of

    base = TrainConfig(**{**TINY, "weight_decay": 1.5e-05, "optimizer": "adamax", "schedule": "onecycle"})
    job = manager.submit_sweep(SWEEP_GRID, base, name="planned", root=runs)
    assert job.args == ["sweep", "--continue", "planned"]
    grid, saved = sweep_plan_of("planned", runs)  # what the child process reads
    assert grid == SWEEP_GRID and saved == base.replace(lr=0.05, augment=True)
    manager.cancel(job.id)
    manager.wait(job.id, timeout=120)


def test_a_sweep_job_waits_behind_a_training_job_then_trains_every_run(runs, manager):
    from cnn_core.workflows.sweep import read_sweep

    first = manager.submit(TrainConfig(**TINY), name="first", root=runs)
    job = manager.submit_sweep({"lr": [0.05, 0.01]}, TrainConfig(**TINY), name="sw", root=runs)
    assert job.kind == "sweep" and job.state == "queued" and manager.position(job.id) == 1
    names = ["sw-lr0p05", "sw-lr0p01"]
    assert job.runs == names and manager.active_runs(runs) == {"first", *names}
    manager.wait(job.id, timeout=300)
    assert first.state == "finished" and job.started >= first.ended
    assert job.state == "finished" and job.message == "" and job.returncode == 0, job.message
    rows = read_sweep("sw", runs)
    assert [(r["run"], r["lr"], r["state"]) for r in rows] == [(names[0], 0.05, "finished"),
                                                                (names[1], 0.01, "finished")]
    assert [r["test_accuracy"] for r in rows] == [r["test_accuracy"] for r in job.summary["rows"]]
    assert job.fraction_done() == 1.0 and job.current_run() is None and not manager.active_runs(runs)


def test_a_bad_sweep_is_refused_before_it_is_queued(runs, manager):
    with pytest.raises(CnnError, match="optimizer must be one of"):
        manager.submit_sweep({"optimizer": ["sgd", "rmsprop"]}, TrainConfig(**TINY), root=runs)
    with pytest.raises(CnnError, match="lists a value twice"):
        manager.submit_sweep({"lr": [0.1, 0.1]}, TrainConfig(**TINY), root=runs)
    assert not manager.jobs() and not runs.exists()


def test_a_running_sweep_reports_which_run_and_epoch_and_cancels_at_a_batch(runs, manager):
    from cnn_core.workflows.sweep import read_sweep

    base = TrainConfig(**{**TINY, "epochs": 200, "max_batches": 3})
    job = manager.submit_sweep(SWEEP_GRID, base, name="long", root=runs)
    with pytest.raises(CnnError, match="sweep long is already running or waiting"):
        manager.submit_sweep(SWEEP_GRID, base, name="long", root=runs)
    wait_for(lambda: job.progress().get("epoch", 0) >= 2, timeout=180)
    p = job.progress()
    first = job.runs[0]
    assert first == "long-lr0p05-aug" and len(job.runs) == 4
    assert (p["run"], p["index"], p["total"], p["epochs"]) == (first, 1, 4, 200)
    assert job.current_run() == first and job.run_dir == RunDir(runs / first)
    assert 0 < job.fraction_done() < 0.25 and job.metrics()
    manager.cancel(job.id)
    manager.wait(job.id, timeout=120)
    assert job.state == "cancelled" and "start the same sweep again" in job.message
    assert [r["state"] for r in read_sweep("long", runs)] == ["cancelled", "pending", "pending", "pending"]
    assert RunDir(runs / first).info().state == "cancelled"


# --------------------------------------------------------------------------------------------- torchrun jobs

def test_a_torchrun_job_with_two_processes_finishes_with_one_set_of_run_files(runs, manager):
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    job = manager.submit(cfg, name="ddp-job", root=runs, nproc=2)
    assert job.argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert job.argv[5:] == ["-m", "cnn_core", "train", "--prepared", "ddp-job", "--quiet"]
    manager.wait(job.id, timeout=300)
    assert job.state == "finished", "\n".join([job.message, *job.stderr_tail])
    assert job.summary["test_accuracy"] is not None  # rank 0's status.json, read like a single process's
    assert [p.name for p in runs.iterdir()] == ["ddp-job"]  # the other rank made no run folder of its own
    assert [int(r["epoch"]) for r in RunDir(runs / "ddp-job").metrics()] == [1, 2]  # one row per epoch, not two
    assert {"config.json", "status.json", "best.pt", "last.pt", "model_card.md"} <= {
        p.name for p in (runs / "ddp-job").iterdir()}


def test_a_process_count_that_cannot_run_is_refused_before_anything_starts(runs, manager):
    with pytest.raises(CnnError, match="split evenly over 3 processes"):
        manager.submit(TrainConfig(**TINY), name="odd", root=runs, nproc=3)  # batch 64
    with pytest.raises(CnnError, match=">= 1"):
        manager.submit(TrainConfig(**TINY), name="none", root=runs, nproc=0)
    assert not manager.jobs() and not runs.exists()
