"""The device lock itself: one holder at a time, freed by its holder's death, named in the refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_core.core import settings
from cnn_core.core.errors import CnnError
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


def test_the_lock_folder_is_the_users_own_whatever_the_working_or_state_folder(tmp_path, monkeypatch):
    """A `train` started from another folder (another ./.cnn_state) must meet the app's lock: one folder per user."""
    monkeypatch.delenv("CNN_LOCK_DIR")
    seen = set()
    for cwd, state in ((tmp_path, ".cnn_state"), (Path("/"), "elsewhere")):
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("CNN_STATE_DIR", state)
        seen.add(settings.lock_dir().absolute())
    assert seen == {Path(f"/tmp/cnn_core-locks-{os.getuid()}")}


def test_a_lock_folder_that_is_not_a_folder_of_ours_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "theirs")  # as another user's folder could be planted in /tmp
    monkeypatch.setenv("CNN_LOCK_DIR", str(tmp_path / "link"))
    with pytest.raises(CnnError, match=r"^the device lock folder .*link is not a folder of yours; remove it, or set "
                                        "CNN_LOCK_DIR to one$"):
        try_lock("cpu")
    assert read_holder("cpu") is None and not list((tmp_path / "theirs").iterdir())


def test_the_lock_folder_is_private(state_dir):
    try_lock("cpu").release()
    assert lock_path("cpu").parent == state_dir / "locks"  # each test's own (tests/conftest.py)
    assert (state_dir / "locks").stat().st_mode & 0o777 == 0o700
