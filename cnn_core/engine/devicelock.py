"""One training per device across processes: an exclusive ``flock`` on ``settings.lock_dir()/<device>.lock``.

Two trainings on one CPU each run at half speed and a second one on a GPU runs it out of memory, so whoever
trains on a device holds its lock: the CLI's ``train`` and ``sweep``, and the app's jobs (the job manager takes
the lock and hands its file descriptor to the subprocess, which holds it until it exits; ``LOCK_FD_ENV`` tells
the subprocess not to take it again). The kernel drops a flock when its last holder exits, however it died, so
a SIGKILLed training never blocks the next one. The file also says who holds it (pid, run, origin), for the
"busy" message and for a restarted server that adopts the training; a file whose recorded pid is dead counts
as free even when an orphan (a forked child) still holds the old flock: the file is replaced.

The lock folder is one per user and machine (in /tmp, not under the working directory), so a ``train`` started
from any folder meets the app's lock; it is made private (0700) and refused when it belongs to someone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core import settings
from ..core.errors import CnnError
from ..core.files import alive

LOCK_FD_ENV = settings.LOCK_FD_ENV  # set by the job manager: "your parent took the device lock for you"


@dataclass
class Holder:
    """Who trains on a device, as its lock file says."""

    pid: int
    device: str
    run: str = ""
    origin: str = "terminal"  # "terminal" (the CLI) or "app" (a job of the web app)
    root: str = ""  # the runs folder ``run`` is in
    since: float = 0.0

    def describe(self) -> str:
        what = f"training {self.run}" if self.run else "training"
        return f"{self.device} is busy {what} (pid {self.pid})" if self.pid > 0 else f"{self.device} is busy {what}"


class DeviceBusy(CnnError):
    """Another process trains on this device."""

    def __init__(self, holder: Holder) -> None:
        super().__init__(f"{holder.describe()}; wait for it to finish or stop it")
        self.holder = holder


def lock_folder() -> Path:
    """The device locks' folder, made private on first use; a folder of another user (made in /tmp before us,
    to read or fake our locks) is refused in one line."""
    folder = settings.lock_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise CnnError(f"the device lock folder {folder} is not a folder of yours; remove it, or set CNN_LOCK_DIR "
                       "to one")
    return folder


def lock_path(device: str) -> Path:
    return lock_folder() / (re.sub(r"[^A-Za-z0-9_-]+", "-", device) + ".lock")


class DeviceLock:
    """A held device lock. ``release`` (or the holder's exit) frees it; ``hand_over`` leaves it to a child."""

    def __init__(self, device: str, fd: int) -> None:
        self.device, self.fd = device, fd
        self.holder = Holder(os.getpid(), device, since=time.time())

    def describe(self, **fields: object) -> None:
        """Rewrite who holds the lock (the run's name once its folder exists, a child's pid once it runs)."""
        for k, v in fields.items():
            setattr(self.holder, k, v)
        data = json.dumps(asdict(self.holder)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)  # never unlinked: a waiter may have the same file open
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.close()

    def close(self) -> None:
        """Close this process's descriptor without unlocking: a child that inherited it keeps the lock."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_holder(device: str) -> Holder | None:
    """The live holder the lock file names; None when free, released or its process is gone."""
    try:
        info = json.loads(lock_path(device).read_text() or "{}")
        holder = Holder(**info)
    except (OSError, ValueError, TypeError, CnnError):
        return None
    return holder if holder.pid > 0 and alive(holder.pid) else None


def holders() -> list[Holder]:
    """Every device lock held by a live process (a restarted server adopts their trainings)."""
    try:
        found = [read_holder(p.stem) for p in sorted(lock_folder().glob("*.lock"))]
    except (OSError, CnnError):  # no lock folder of ours: nothing to adopt (taking a lock says why)
        return []
    return [h for h in found if h is not None]


def try_lock(device: str, run: str = "", origin: str = "terminal", root: str = "") -> DeviceLock:
    """Take the device's lock now or raise DeviceBusy naming its holder; never waits."""
    path = lock_path(device)
    for _ in range(2):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            _replace_if_dead(device, path)
            continue
        lock = DeviceLock(device, fd)
        lock.describe(run=run, origin=origin, root=root)
        return lock
    raise DeviceBusy(_busy_holder(device))


def _busy_holder(device: str) -> Holder:
    return read_holder(device) or Holder(0, device)


def _recorded_pid(path: Path) -> int:
    try:
        info = json.loads(path.read_text() or "{}")
        return int(info.get("pid") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _replace_if_dead(device: str, path: Path) -> None:
    """A flock held while the recorded pid is dead belongs to an orphan: give the next taker a fresh file. Looked
    at twice, a moment apart: a new holder that has just taken the lock has not written its pid yet."""
    pid = _recorded_pid(path)
    if pid <= 0 or alive(pid):
        return
    time.sleep(0.2)
    if _recorded_pid(path) == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def inherited() -> bool:
    """Whether this process trains under a lock its parent took (a job of the app, or a torchrun worker of one),
    or is a torchrun rank other than 0 (rank 0 holds the lock for the whole job)."""
    return settings.inherited_lock_fd() is not None or settings.rank() != 0


@contextlib.contextmanager
def device_lock(device: str, run: str = "", origin: str = "terminal") -> Iterator[DeviceLock | None]:
    """Hold ``device`` while the block trains; None when a parent holds it for this process already."""
    if inherited():
        yield None
        return
    lock = try_lock(device, run, origin)
    try:
        yield lock
    finally:
        lock.release()
