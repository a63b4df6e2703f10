"""The device lock itself: one holder at a time, freed by its holder's death, named in the refusal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnn_core.engine.devicelock import DeviceBusy, lock_path, read_holder, try_lock


def test_a_second_taker_is_refused_with_the_holders_run_and_pid_until_the_first_releases():
    first = try_lock("cpu", run="alpha")
    with pytest.raises(DeviceBusy, match=r"^cpu is busy training alpha \(pid \d+\); wait for it"):
        try_lock("cpu", run="beta")  # another open file description: flock refuses even within one process
    first.release()
    assert read_holder("cpu") is None
    try_lock("cpu", run="beta").release()


def test_a_lock_file_naming_a_dead_pid_is_free_even_while_an_orphan_holds_its_flock():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = try_lock("cuda:0", run="ghost")  # the flock stays held, as by a forked child that outlived its parent
    orphan.describe(pid=dead.pid)
    assert read_holder("cuda:0") is None and lock_path("cuda:0").name == "cuda-0.lock"
    fresh = try_lock("cuda:0", run="next")
    assert read_holder("cuda:0").run == "next"
    fresh.release()
    orphan.close()
