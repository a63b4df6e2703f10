"""Faults while training: a crash mid-write, SIGKILL mid-epoch, a full disk, divergence, GPU out of memory.
Finished work survives each of them, a resume carries on, and each ends in one clear line."""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hooks_util import Hooks
from PIL import Image

from cnn_core.config import TrainConfig
from cnn_core.core import files
from cnn_core.core.errors import CheckpointError, CnnError
from cnn_core.core.files import TMP_MARK, read_json, write_json
from cnn_core.engine.batches import Batches
from cnn_core.evaluation.predictor import Predictor
from cnn_core.models import build_model
from cnn_core.runs.checkpoint import load_checkpoint, save_checkpoint
from cnn_core.runs.rundir import RunDir
from cnn_core.training import loop as train_mod
from cnn_core.training.loop import Diverged
from cnn_core.workflows.run import train_run as fit

ROOT = Path(__file__).resolve().parents[2]
SMALL = TrainConfig(model="lenet5", dataset="digits", epochs=4, batch_size=64, lr=0.05, schedule="onecycle",
                    precision="fp32", seed=0, max_batches=8)

# A file object whose write stops half-way, then fails: the fault (a full disk, the power going) is injected
# into cnn_core.core.files's own open(), so the code under test is the real atomic-write path. Shared with the
# subprocess drivers below, which cannot use monkeypatch.
_FAILING_OPEN = r'''
import builtins as _b

class _HalfWrite:
    def __init__(self, f, fault):
        self.f, self.fault = f, fault
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        self.fault()
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()

def failing_open(should_fail, fault):
    def fake_open(file, mode="r", *args, **kwargs):
        f = _b.open(file, mode, *args, **kwargs)
        return _HalfWrite(f, fault) if "w" in mode and should_fail(str(file)) else f
    return fake_open
'''
_helpers: dict = {}
exec(_FAILING_OPEN, _helpers)  # noqa: S102 - the same few lines the subprocesses run


def fail_writes(monkeypatch, should_fail: Callable[[str], bool], fault: Callable[[], None]) -> None:
    monkeypatch.setattr(files, "open", _helpers["failing_open"](should_fail, fault), raising=False)


def enospc() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def finite(path: Path) -> bool:
    return all(torch.isfinite(v.float()).all() for v in load_checkpoint(path)["state_dict"].values())


# ------------------------------------------------------------------------------------------- atomic writes

def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": 1, "state_dict": {"w": torch.zeros(1000)}, "epoch": 1}, path)

    def eio() -> None:
        raise OSError(errno.EIO, "Input/output error")
    fail_writes(monkeypatch, lambda f: True, eio)
    with pytest.raises(CheckpointError, match="could not write .*last.pt: Input/output error"):
        save_checkpoint({"format": 1, "state_dict": {"w": torch.ones(1000)}, "epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


CRASH_MID_WRITE = _FAILING_OPEN + r'''
import os, sys, torch
from pathlib import Path
from cnn_core.core import files as ck
from cnn_core.runs.checkpoint import save_checkpoint

def power_cut():
    os._exit(9)  # no cleanup, no exception handlers: the process is simply gone

ck.open = failing_open(lambda f: True, power_cut)
save_checkpoint({"format": 1, "state_dict": {"w": torch.ones(100_000)}, "epoch": 2}, Path(sys.argv[1]))
'''


def test_a_crash_mid_write_keeps_the_previous_checkpoint_and_the_next_fit_cleans_up(runs):
    run = runs / "crashed"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(SMALL.to_dict()))
    save_checkpoint({"format": 1, "state_dict": {"w": torch.zeros(100_000)}, "epoch": 1}, run / "last.pt")
    p = subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, str(run / "last.pt")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 9, p.stderr
    stale = list(run.glob(f"last.pt{TMP_MARK}*"))
    assert len(stale) == 1 and stale[0].stat().st_size > 0  # the dead process's half-written copy
    old = load_checkpoint(run / "last.pt")
    assert old["epoch"] == 1 and not old["state_dict"]["w"].any()
    in_progress = run / f"best.pt{TMP_MARK}{os.getpid()}-0a1b2c3d"  # a live writer's temp file
    in_progress.write_bytes(b"being written")

    fit(SMALL.replace(epochs=1, max_batches=2), name="next")
    assert not stale[0].exists()
    assert in_progress.exists()  # another run's write in progress is left alone


# ---------------------------------------------------------------------------------------------- disk full

def test_disk_full_stops_training_and_keeps_a_consistent_checkpoint_to_resume(runs, monkeypatch):
    disk = {"full": False, "epochs": 0}

    def fills_up(file: str) -> bool:
        if Path(file).name.startswith("best.pt") and disk["epochs"] >= 1:
            disk["full"] = True  # the first improvement after epoch 1 finds the disk full...
        return disk["full"] and Path(file).name.startswith(("best.pt", "last.pt"))  # ...for checkpoints

    fail_writes(monkeypatch, fills_up, enospc)
    with pytest.raises(CheckpointError) as e:
        fit(SMALL, name="full", callbacks=[Hooks(epoch=lambda row: disk.update(epochs=row["epoch"]))])
    msg = str(e.value)
    assert msg == ("disk full while saving best.pt; the previous copy is kept. Free some space (delete old runs) "
                   "and resume.")
    run = runs / "full"
    st = read_json(run / "status.json")
    assert st["state"] == "failed" and st["message"] == msg
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    # what survives agrees with itself: last.pt's best is the best.pt on disk (saving best.pt first ensures it)
    assert best["epoch"] <= last["epoch"] and last["best_val_accuracy"] == best["best_val_accuracy"]
    assert not list(run.glob(f"*{TMP_MARK}*"))

    monkeypatch.setattr(files, "open", open, raising=False)  # space freed
    summary = fit(TrainConfig(), resume="full")
    assert summary["state"] == "finished"
    assert [r["epoch"] for r in RunDir(run).metrics()] == [1, 2, 3, 4]
    assert load_checkpoint(run / "best.pt")["epoch"] == summary["best_epoch"]


def test_a_disk_full_for_every_file_reports_the_first_failure_not_a_later_one(runs, monkeypatch):
    done: list[int] = []
    fail_writes(monkeypatch, lambda f: bool(done), enospc)  # after epoch 1, nothing more fits
    with pytest.raises(CheckpointError, match="disk full while saving metrics.csv; the previous copy is kept"):
        fit(SMALL, name="allfull", callbacks=[Hooks(epoch=lambda row: done.append(row["epoch"]))])
    assert load_checkpoint(runs / "allfull" / "last.pt")["epoch"] == 1


DISK_FULL_CLI = _FAILING_OPEN + r'''
import errno, sys
from cnn_core.cli.main import main
from cnn_core.core import files as ck

seen = []
def full_after_epoch_1(file):
    if ".pt" in file:
        seen.append(file)
    return len(seen) > 2  # epoch 1 writes best.pt and last.pt; nothing fits after that

def enospc():
    raise OSError(errno.ENOSPC, "No space left on device")

ck.open = failing_open(full_after_epoch_1, enospc)
sys.exit(main(sys.argv[1:]))
'''


def test_disk_full_on_the_command_line_is_exit_2_and_one_line(runs):
    env = {**os.environ, "CNN_CHECKPOINTS": str(runs), "CNN_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", DISK_FULL_CLI, "train", "--model", "lenet5", "--dataset", "digits",
                        "--epochs", "3", "--lr", "0.05", "--name", "cli-full", "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: disk full while saving") and "resume" in lines[0], lines
    assert load_checkpoint(runs / "cli-full" / "last.pt")["epoch"] == 1


# ------------------------------------------------------------------------------------------------ SIGKILL

@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_loses_at_most_that_epoch(runs):
    env = {**os.environ, "CNN_CHECKPOINTS": str(runs), "CNN_THREADS": "1"}
    # ResNet-18, 60 batches of 4 per epoch: several seconds an epoch however idle the machine, so progress.json
    # (written about once a second) is seen in the first half of an epoch, the moment to kill it
    train = [sys.executable, "-m", "cnn_core", "train", "--model", "resnet18", "--dataset", "digits", "--epochs",
             "5", "--batch-size", "4", "--max-batches", "60", "--lr", "0.01", "--schedule", "cosine", "--name",
             "killed", "--quiet"]
    proc = subprocess.Popen(train, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = runs / "killed"
    deadline = time.monotonic() + 600
    try:
        while True:  # wait for epoch 2 on disk and the next epoch under way, in its first half
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "training never reached epoch 3"
            done = int(read_json(run / "status.json").get("epochs_run", 0))
            prog = read_json(run / "progress.json")
            if done >= 2 and prog.get("epoch") == done + 1 and 0 < prog["batch"] < prog["batches"] // 2:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    assert RunDir(run).info().state == "interrupted"
    last_epoch = int(load_checkpoint(run / "last.pt")["epoch"])
    assert last_epoch >= done  # at most the epoch it was killed in is lost
    before = RunDir(run).metrics()
    assert [r["epoch"] for r in before][:last_epoch] == list(range(1, last_epoch + 1))

    p = subprocess.run([sys.executable, "-m", "cnn_core", "train", "--resume", "killed", "--json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    after = RunDir(run).metrics()
    assert [r["epoch"] for r in after] == [1, 2, 3, 4, 5]  # no gaps, no duplicates
    assert after[:last_epoch] == before[:last_epoch]  # the finished epochs' history untouched
    assert summary["epochs_run"] == 5 and RunDir(run).info().state == "finished"
    assert load_checkpoint(run / "last.pt")["epoch"] == 5


def test_a_run_whose_process_died_is_interrupted_even_as_an_unreaped_zombie(runs):
    """The app's worker may not have waited for a killed training process yet (a zombie): still not running."""
    run = runs / "zombie"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(SMALL.to_dict()))
    spec = {"name": "lenet5", "kwargs": {"num_classes": 10, "in_channels": 1, "input_size": 32}}
    weights = build_model("lenet5", 10, 1, 32).state_dict()
    save_checkpoint({"format": 1, "model": spec, "state_dict": weights, "classes": list("0123456789"),
                        "epoch": 1}, run / "last.pt")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        write_json(run / "status.json", {"state": "running", "pid": child.pid})
        assert RunDir(run).info().state == "running"
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while RunDir(run).info().state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)  # the kill lands asynchronously; the child stays a zombie (we do not wait)
        assert RunDir(run).info().state == "interrupted"
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------------------------- divergence

def test_learning_rate_10_diverges_with_advice_and_saves_nothing_non_finite(runs):
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=3, lr=10.0, momentum=0.9, schedule="none",
                      weight_decay=0.0, precision="fp32")
    with pytest.raises(Diverged) as e:
        fit(cfg, name="boom")
    msg = str(e.value)
    assert "\n" not in msg and "Lower the learning rate (it was 10)" in msg
    run = runs / "boom"
    assert read_json(run / "status.json")["state"] == "diverged"
    assert read_json(run / "status.json")["message"] == msg
    kept = (run / "best.pt").exists()
    assert ("best.pt is kept" in msg) == kept and ("nothing was saved" in msg) == (not kept)
    assert all(finite(run / f) for f in ("best.pt", "last.pt") if (run / f).exists())


def test_nan_in_the_input_is_named_and_the_best_checkpoint_survives(runs, monkeypatch):
    real_iter = Batches.__iter__

    def poisoned(self):
        for x, y in real_iter(self):
            if self.shuffle and self.epoch == 3:  # the training batches of the third epoch
                x = x.clone()
                x[0, 0, 0, 0] = float("nan")
            yield x, y
    monkeypatch.setattr(Batches, "__iter__", poisoned)
    with pytest.raises(Diverged, match="the input images held NaN or infinite values at batch 1") as e:
        fit(SMALL, name="nan")
    msg = str(e.value)
    assert "best.pt is kept" in msg and "normalisation" in msg and "learning rate" not in msg
    run = runs / "nan"
    assert RunDir(run).info().state == "diverged"
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert load_checkpoint(run / "best.pt")["epoch"] <= 2
    assert finite(run / "best.pt") and finite(run / "last.pt")
    assert len(Predictor.from_run("nan").top_k([Image.new("L", (8, 8), 0)], 3)[0]) == 3  # it still answers


# --------------------------------------------------------------------------------------- GPU out of memory

def test_cuda_out_of_memory_says_use_a_smaller_batch_and_frees_the_worker(runs, monkeypatch):
    real_ce = F.cross_entropy
    calls = {"n": 0}

    def cross_entropy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2's first step (epoch 1: three steps and the validation)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_ce(*args, **kwargs)

    models: list[weakref.ref] = []
    real_build = train_mod.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)
    monkeypatch.setattr(train_mod, "build_model", build)
    cfg = SMALL.replace(epochs=3, max_batches=3, batch_size=32)
    with pytest.raises(CnnError) as e:
        fit(cfg, name="oom")
    assert str(e.value) == "the GPU ran out of memory at batch size 32; try a smaller batch size (e.g. 16)"
    st = read_json(runs / "oom" / "status.json")
    assert st["state"] == "failed" and st["message"] == str(e.value)
    assert load_checkpoint(runs / "oom" / "last.pt")["epoch"] == 1  # the finished epoch is kept
    gc.collect()
    assert len(models) == 1 and models[0]() is None  # the error we hold keeps no tensors of the failed run

    monkeypatch.setattr(F, "cross_entropy", real_ce)
    assert fit(cfg, name="after-oom")["state"] == "finished"  # the same process takes the next job
