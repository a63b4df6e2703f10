"""A server a class shares: the device lock holds the queue while a terminal trains, a restarted server adopts
trainings it did not start, visitors cancel only their own jobs and stay within the operator's limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.engine.devicelock import read_holder
from cnn_core.jobs.limits import GB, free_bytes, save_limits
from cnn_core.jobs.manager import JobManager
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows.run import train_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": "lenet5", "dataset": "digits", "epochs": 1, "batch_size": 64, "max_batches": 2,
        "precision": "fp32"}
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]  # a stand-in process that never trains


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def terminal(runs):
    """Start a long CLI training (as from a shell); returns it once it trains and holds the cpu lock."""
    procs: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "cnn_core", "train", "--model", "lenet5", "--dataset", "digits",
                "--epochs", "200", "--max-batches", "3", "--quiet", "--name", name]
        p = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "CNN_CHECKPOINTS": str(runs)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        wait_for(lambda: p.poll() is not None or (RunDir(runs / name).progress().get("batch", 0) >= 1
                                                  and getattr(read_holder("cpu"), "run", "") == name))
        assert p.poll() is None, p.communicate()
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


@pytest.fixture
def sleepers():
    m = JobManager(command=SLEEPER)
    yield m
    m.shutdown(wait=10)


def test_a_job_waits_while_a_terminal_trains_on_its_device_and_starts_when_it_ends(runs, terminal):
    m = JobManager(lock_poll=0.3)  # made first: this training is not adopted, only its lock says "busy"
    try:
        cli = terminal("from-shell")
        job = m.submit(TrainConfig(**TINY), name="queued-job", root=runs)
        time.sleep(1.0)  # a few looks at the lock
        assert job.state == "queued" and not m.running()
        assert job.message == f"waiting: cpu is training from-shell (pid {cli.pid}), started elsewhere"
        cli.terminate()  # the CLI stops at its next batch and lets go of the device
        assert cli.wait(timeout=60) == 0
        m.wait(job.id, timeout=300)
        assert job.state == "finished", job.message
        assert RunDir(runs / "from-shell").status()["state"] == "cancelled"
    finally:
        m.shutdown(wait=30)


def test_a_new_server_adopts_a_training_from_a_terminal_and_can_cancel_it(runs, terminal):
    cli = terminal("adoptee")
    m = JobManager()
    try:
        [job] = m.jobs()
        assert (job.run, job.state, job.pid, job.device) == ("adoptee", "running", cli.pid, "cpu")
        assert job.adopted and job.origin == "terminal" and job.owner == "" and m.running("cpu") == [job]
        assert job.to_dict()["origin"] == "terminal" and job.message == "started from a terminal"
        wait_for(lambda: job.progress().get("epoch", 0) >= 2)
        assert 0 < job.fraction_done() < 0.05 and job.metrics()
        queued = m.submit(TrainConfig(**TINY), name="after", root=runs)  # the adopted job keeps cpu busy
        assert queued.state == "queued" and m.position(queued.id) == 1
        with pytest.raises(CnnError, match="not yours to cancel"):
            m.cancel(job.id, by="visitor-1", operator=False)
        m.cancel(job.id)
        m.wait(job.id, timeout=60)
        assert cli.wait(timeout=10) == 0  # a clean stop at a batch, not a kill
        assert job.state == "cancelled" and RunDir(runs / "adoptee").info().state == "cancelled"
        m.wait(queued.id, timeout=300)
        assert queued.state == "finished" and queued.started >= job.ended
    finally:
        m.shutdown(wait=30)


def test_visitors_cancel_only_their_own_jobs_and_the_operator_any(runs, sleepers):
    a = sleepers.submit(TrainConfig(**TINY), name="a", root=runs, owner="alice", operator=False, estimated_seconds=60)
    b = sleepers.submit(TrainConfig(**TINY), name="b", root=runs, owner="bob", operator=False, estimated_seconds=60)
    assert (a.owner, a.state, b.state) == ("alice", "running", "queued")
    for by in ("bob", ""):
        with pytest.raises(CnnError, match=r"^job-\d+ \(a\) is not yours to cancel; ask its owner or the operator$"):
            sleepers.cancel(a.id, by=by, operator=False)
    assert a.state == "running"
    assert sleepers.cancel(b.id, by="bob", operator=False).state == "cancelled"
    sleepers.cancel(a.id)  # the operator
    sleepers.wait(a.id, timeout=30)
    assert a.state == "cancelled"


def test_a_visitor_gets_one_running_and_one_waiting_job_each(runs, sleepers):
    visitor = {"owner": "alice", "operator": False, "estimated_seconds": 60}
    sleepers.submit(TrainConfig(**TINY), name="a1", root=runs, **visitor)
    sleepers.submit(TrainConfig(**TINY), name="a2", root=runs, **visitor)
    with pytest.raises(CnnError, match=r"you already have 1 job\(s\) training and 1 waiting \(at most 1 \+ 1\)"):
        sleepers.submit(TrainConfig(**TINY), name="a3", root=runs, **visitor)
    assert not (runs / "a3").exists()
    sleepers.submit(TrainConfig(**TINY), name="b1", root=runs, owner="bob", operator=False,
                    estimated_seconds=60)  # bob has his own
    sleepers.submit(TrainConfig(**TINY), name="op", root=runs)  # the operator is not counted
    assert [j.run for j in sleepers.queued()] == ["a2", "b1", "op"]


def test_a_visitors_long_job_and_big_sweep_are_refused_and_the_operators_are_not(runs, sleepers):
    with pytest.raises(CnnError, match="estimated at 45 minutes; at most 30 minutes per job"):
        sleepers.submit(TrainConfig(**TINY), name="long", root=runs, owner="al", operator=False,
                        estimated_seconds=45 * 60)
    grid = {"lr": [0.001 * (i + 1) for i in range(13)]}
    with pytest.raises(CnnError, match="this sweep has 13 runs; at most 12 per sweep"):
        sleepers.submit_sweep(grid, TrainConfig(**TINY), name="big", root=runs, owner="al", operator=False,
                              estimated_seconds=60)
    assert not runs.exists() or not any(runs.iterdir())
    save_limits({"job_minutes": 60})  # read on every request: the operator changes it without a restart
    sleepers.submit(TrainConfig(**TINY), name="long", root=runs, owner="al", operator=False,
                    estimated_seconds=45 * 60)
    assert sleepers.submit_sweep(grid, TrainConfig(**TINY), name="big", root=runs).kind == "sweep"
    assert sleepers.submit(TrainConfig(**TINY), name="longer", root=runs, estimated_seconds=10 * 3600).run == "longer"


def test_a_visitors_training_or_sweep_that_was_not_timed_is_refused_and_the_operators_is_not(runs, sleepers):
    """Every visitor's training and sweep is held to the time cap: one that comes without its estimate (a page
    path that did not time it) is refused, not waved through."""
    with pytest.raises(CnnError, match=r"^this job could not be timed before it starts, and a visitor's jobs must "
                                       r"be \(at most 30 minutes per job here\): estimate its time first$"):
        sleepers.submit(TrainConfig(**TINY), name="t", root=runs, owner="al", operator=False)
    with pytest.raises(CnnError, match="could not be timed"):
        sleepers.submit_sweep({"lr": [0.01, 0.02]}, TrainConfig(**TINY), name="s", root=runs, owner="al",
                              operator=False)
    assert not runs.exists() or not any(runs.iterdir())
    assert sleepers.submit(TrainConfig(**TINY), name="op", root=runs).state == "running"  # the operator's


def test_a_visitor_resumes_only_their_own_runs_and_only_timed(runs, sleepers):
    done = {"epoch": 0}
    train_run(TrainConfig(**{**TINY, "epochs": 3}), name="halfway", root=runs,
              callbacks=[Hooks(epoch=lambda row: done.update(epoch=row["epoch"]), stop=lambda: done["epoch"] >= 1)])
    RunDir(runs / "halfway").update_status(owner="ann")  # as her job would have recorded it
    with pytest.raises(CnnError, match=r"^run halfway was not trained by a job of yours; only its owner or the "
                                       r"operator can resume it \(train a new run instead\)$"):
        sleepers.resume("halfway", root=runs, owner="bob", operator=False, estimated_seconds=60)
    with pytest.raises(CnnError, match="could not be timed"):
        sleepers.resume("halfway", root=runs, owner="ann", operator=False)
    job = sleepers.resume("halfway", root=runs, owner="ann", operator=False, estimated_seconds=60)
    assert job.resume and job.owner == "ann" and job.start_epoch == 2


def test_a_visitors_learning_rate_finder_is_held_to_the_step_size_of_the_time_estimate(runs, sleepers):
    """The finder is not timed (its cost is its ~100 steps), so each of a visitor's steps is capped instead, at the
    time estimate's own cap: AlexNet at 224 px, batch 1,024 (the issue's 94 s of both cores) is refused."""
    big = TrainConfig(model="alexnet", dataset="digits", batch_size=1024)
    with pytest.raises(CnnError, match=r"^a batch of 1024 images of 224x224 is too large a step for the learning-rate "
                                       r"finder here: use a batch of at most 64, or a smaller input size$"):
        sleepers.submit_lr_find(big, root=runs, owner="al", operator=False)
    assert not sleepers.jobs()
    assert sleepers.submit_lr_find(big.replace(batch_size=64), root=runs, owner="al", operator=False).kind == "lr-find"
    assert sleepers.submit_lr_find(big, root=runs).kind == "lr-find"  # the operator's is not capped


def test_the_datasets_of_running_and_waiting_jobs_are_in_use_until_they_end(runs, sleepers):
    """What an upload's expiry must spare (data.uploads.import_zip's ``in_use``)."""
    training = sleepers.submit(TrainConfig(**TINY), name="a", root=runs)
    finder = sleepers.submit_lr_find(TrainConfig(**{**TINY, "dataset": "folder:/photos/of/cats"}))  # waits
    assert sleepers.datasets_in_use() == {"digits", "folder:/photos/of/cats"}
    sleepers.cancel(finder.id)
    assert sleepers.datasets_in_use() == {"digits"}
    sleepers.cancel(training.id)
    sleepers.wait(training.id, timeout=30)
    assert sleepers.datasets_in_use() == set()


def test_nobody_starts_work_below_the_free_disk_floor(runs, sleepers):
    floor = free_bytes(runs) / GB + 1000  # a floor above what this disk has free
    save_limits({"min_free_gb": floor})
    for who in ({"owner": "al", "operator": False}, {}):
        with pytest.raises(CnnError, match=rf"GB free under {runs}; new work needs {floor:g} GB free"):
            sleepers.submit(TrainConfig(**TINY), name="x", root=runs, **who)
    save_limits({"min_free_gb": 0})
    sleepers.submit(TrainConfig(**TINY), name="x", root=runs)


def test_a_sweep_whose_checkpoints_would_fill_the_disk_is_refused(runs, sleepers):
    big = TrainConfig(**{**TINY, "model": "vgg16"})  # 14.7M parameters: 0.12 GB of checkpoints per run
    save_limits({"min_free_gb": max(0.0, free_bytes(runs) / GB - 1)})  # 1 GB to spare: one run fits, 12 do not
    with pytest.raises(CnnError, match=r"for this job's checkpoints\): delete old runs first"):
        sleepers.submit_sweep({"lr": [0.001 * (i + 1) for i in range(12)]}, big, name="vggs", root=runs)
    assert sleepers.submit(big, name="one-vgg", root=runs).run == "one-vgg"


def test_a_job_of_an_earlier_server_still_running_is_adopted_as_the_apps(runs):
    earlier = JobManager()
    try:
        first = earlier.submit(TrainConfig(**{**TINY, "epochs": 200, "max_batches": 3}), name="kept", root=runs)
        wait_for(lambda: first.progress().get("epoch", 0) >= 2)  # an epoch saved: the folder stays
        later = JobManager()  # the server restarted while its child trains on
        [job] = later.jobs()
        assert (job.run, job.pid, job.origin, job.adopted) == ("kept", first.pid, "app", True)
        assert job.message == "started by an earlier server"
        later.cancel(job.id)
        later.wait(job.id, timeout=60)
        assert job.state == "cancelled" and RunDir(runs / "kept").status()["state"] == "cancelled"
    finally:
        earlier.shutdown(wait=30)


def test_a_sweep_still_running_without_a_server_is_adopted_from_its_folder(runs):
    """The sweep's folder is read through workflows.sweep (sweep_status, sweep_manifest); a stray file or a
    folder that cannot be a sweep's name in the sweeps folder is no sweep, and no error."""
    from cnn_core.core.files import write_json
    from cnn_core.jobs.manager import plan_sweep_job
    from cnn_core.workflows.sweep import open_sweep, sweeps_root

    plan = plan_sweep_job({"lr": [0.01, 0.02]}, TrainConfig(**TINY), name="old-sweep", root=runs)
    folder = open_sweep(plan, runs)
    (sweeps_root(runs) / ".trash").mkdir()
    (sweeps_root(runs) / "notes.txt").write_text("not a sweep")
    sweeper = subprocess.Popen(SLEEPER)
    manager = None
    try:
        write_json(folder / "status.json", {"state": "running", "pid": sweeper.pid, "message": ""})
        manager = JobManager(root=runs)
        [job] = manager.jobs()
        assert (job.kind, job.run, job.runs, job.pid, job.adopted) == ("sweep", "old-sweep", plan.runs,
                                                                       sweeper.pid, True)
    finally:
        sweeper.kill()
        sweeper.wait()
        if manager is not None:
            manager.shutdown(wait=30)
