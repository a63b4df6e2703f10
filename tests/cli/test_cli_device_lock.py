"""One training per device from the command line: a second `train` on a busy device is refused in one line and
leaves no run folder; a training killed with SIGKILL does not leave the device locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn_core.engine.devicelock import read_holder
from cnn_core.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]
LONG = ["train", "--model", "lenet5", "--dataset", "digits", "--epochs", "200", "--max-batches", "3", "--quiet"]
SHORT = ["train", "--model", "lenet5", "--dataset", "digits", "--epochs", "1", "--max-batches", "2", "--quiet"]


def start(runs: Path, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.Popen:
    env = {**os.environ, "CNN_CHECKPOINTS": str(runs), "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, "-m", "cnn_core", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def training(runs: Path, name: str) -> subprocess.Popen:
    """A long CLI training, returned once it holds the cpu lock under its run's name and has a status."""
    proc = start(runs, *LONG, "--name", name)
    deadline = time.monotonic() + 120
    while not ((h := read_holder("cpu")) and h.run == name and RunDir(runs / name).status().get("state") == "running"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the training never started"
        time.sleep(0.1)
    return proc


@pytest.fixture
def stop():
    procs: list[subprocess.Popen] = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_a_second_training_on_a_busy_device_is_refused_in_one_line_and_makes_no_run_folder(runs, stop, tmp_path):
    first = training(runs, "first")
    stop(first)
    elsewhere = tmp_path / "elsewhere"  # started from another folder, with another (relative) state folder
    elsewhere.mkdir()
    second = start(runs, *SHORT, "--name", "second", cwd=elsewhere, CNN_STATE_DIR=".cnn_state")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert err.strip() == f"error: cpu is busy training first (pid {first.pid}); wait for it to finish or stop it"
    assert sorted(p.name for p in runs.iterdir()) == ["first"]


def test_a_training_killed_with_sigkill_does_not_keep_the_device_locked(runs, stop):
    first = training(runs, "killed")
    stop(first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    next_one = start(runs, *SHORT, "--name", "next")
    out, err = next_one.communicate(timeout=300)
    assert next_one.returncode == 0, err
    assert RunDir(runs / "next").status()["state"] == "finished" and read_holder("cpu") is None
