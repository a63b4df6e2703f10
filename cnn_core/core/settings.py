"""Every environment variable and default path cnn_core reads, in one place (torch-free).

| variable | meaning | default |
|---|---|---|
| CNN_CHECKPOINTS | the runs folder | ./checkpoints |
| CNN_DATA_DIR | where datasets are found (and downloaded to) | ./data |
| CNN_CACHE_DIR | decoded datasets (the data dir may be read-only) | ~/.cache/cnn_core |
| CNN_STATE_DIR | the app's own state: uploads, limits, learning-rate finder results | ./.cnn_state |
| CNN_LOCK_DIR | the device locks, one folder for every process of this user on this machine | /tmp/cnn_core-locks-UID |
| CNN_DEVICE_LOCK_FD | set by the app's job manager for its training process: the device lock it inherits | none |
| CNN_DATA_ROOTS | folders (``:``-separated) whose photo folders visitors may train on | data dir + uploads |
| CNN_OPERATOR_TOKEN | the secret in the operator's link (scripts/serve.py makes it at start) | none |
| CNN_THREADS | intra-op threads for training and evaluation | the usable cores / local processes |
| CNN_DEBUG | the CLI shows tracebacks of unexpected errors | off |
| CNN_DDP_RECORD | a folder where each distributed rank records its shards (tests) | off |
| WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE | set by torchrun | a single process |
"""

from __future__ import annotations

import os
from pathlib import Path


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """--checkpoints, else $CNN_CHECKPOINTS, else ./checkpoints."""
    return Path(explicit or os.environ.get("CNN_CHECKPOINTS") or "checkpoints")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $CNN_DATA_DIR, else ./data."""
    return Path(explicit or os.environ.get("CNN_DATA_DIR") or "data")


def cache_dir() -> Path:
    """$CNN_CACHE_DIR, else ~/.cache/cnn_core: decoded datasets (the data dir may be read-only)."""
    return Path(os.environ.get("CNN_CACHE_DIR") or Path.home() / ".cache" / "cnn_core")


def state_dir() -> Path:
    """$CNN_STATE_DIR, else ./.cnn_state: what the app keeps for itself (uploads, limits). Never the
    shared data folder: a class must not fill the course's datasets folder."""
    return Path(os.environ.get("CNN_STATE_DIR") or ".cnn_state")


def uploads_dir() -> Path:
    """Where zip uploads are unpacked: inside the state folder."""
    return state_dir() / "uploads"


LOCK_FD_ENV = "CNN_DEVICE_LOCK_FD"  # set by the job manager: "your parent took the device lock for you"


def lock_dir() -> Path:
    """$CNN_LOCK_DIR, else /tmp/cnn_core-locks-UID: the device locks. Never relative to the working directory (nor
    inside the state folder, which is): a `train` started from another folder must meet the app's lock."""
    return Path(os.environ.get("CNN_LOCK_DIR") or f"/tmp/cnn_core-locks-{os.getuid()}")


def inherited_lock_fd() -> int | None:
    """$CNN_DEVICE_LOCK_FD: the descriptor of the device lock this process's parent took for it, if any."""
    fd = os.environ.get(LOCK_FD_ENV)
    return int(fd) if fd and fd.isdigit() else None


def lr_find_dir() -> Path:
    """Where the app's learning-rate finder jobs write their results: inside the state folder."""
    return state_dir() / "lr-find"


def data_roots() -> list[Path]:
    """$CNN_DATA_ROOTS (``:``-separated), else the data dir and the uploads folder: the only places whose photo
    folders the app offers to visitors."""
    given = [Path(p) for p in os.environ.get("CNN_DATA_ROOTS", "").split(os.pathsep) if p]
    return given or [data_dir(), uploads_dir()]


def operator_token() -> str | None:
    """$CNN_OPERATOR_TOKEN: the app's operator secret, made by scripts/serve.py when the server starts."""
    return os.environ.get("CNN_OPERATOR_TOKEN") or None


def usable_cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def training_threads() -> int:
    """$CNN_THREADS, else the usable cores shared among torchrun's processes on this machine."""
    n = usable_cores() // local_world_size() or 1
    return max(1, int(os.environ.get("CNN_THREADS", n)))


def debug() -> bool:
    return bool(os.environ.get("CNN_DEBUG"))


def ddp_record_dir() -> Path | None:
    record = os.environ.get("CNN_DDP_RECORD")
    return Path(record) if record else None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def child_env(runs: Path, package_parent: Path) -> dict[str, str]:
    """The environment of a training subprocess: ours, with its runs folder and this package importable."""
    path = os.pathsep.join(filter(None, [str(package_parent), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, CNN_CHECKPOINTS=str(runs), PYTHONPATH=path)
