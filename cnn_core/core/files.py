"""Atomic file writes and forgiving reads: a crash leaves the old file or the new, never half of one.

Every file a run, a sweep or a cache writes goes through here. A temp file's name carries its writer's pid,
so ``clean_stale_tmp`` can tell a crash's leftovers from a write in progress.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import CheckpointError

TMP_MARK = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, flush, fsync, rename: a crash leaves the old file or the new, never half.
    A full disk raises CheckpointError and leaves the previous file as it was."""
    path = Path(path)
    # pid first (clean_stale_tmp reads it), then a token: two threads of one process never share a temp file
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f"disk full while saving {path.name}; the previous copy is kept. "
                                  "Free some space (delete old runs) and resume.") from None
        raise CheckpointError(f"could not write {path}: {e.strerror or e}") from None
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """Indented with sorted keys; ``compact``: one line with the keys in their order (a report's thousands of
    per-image predictions, and tables whose columns come in the order they were made)."""
    if compact:
        atomic_write_text(path, json.dumps(obj, separators=(",", ":")) + "\n")
    else:
        atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """The object in a JSON file, or {} when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def clean_stale_tmp(root: Path) -> int:
    """Remove temp files in ``root``'s subfolders left by a crash mid-write (their process is gone). Returns how
    many went.

    A temp file of a live process, this one included, is a write in progress (another run, another thread)
    and stays."""
    removed = 0
    if not root.is_dir():
        return 0
    for p in root.glob(f"*/*{TMP_MARK}*"):
        pid = p.name.rsplit(TMP_MARK, 1)[-1].split("-")[0]
        if pid.isdigit() and alive(int(pid)):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def alive(pid: int) -> bool:
    """Whether the process runs; a zombie (killed, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal check is all we have
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
