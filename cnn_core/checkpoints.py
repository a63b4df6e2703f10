"""Run directories and checkpoints: atomic writes, safe loads, validated names.

A run lives in ``checkpoints/<run>/``: ``config.json``, ``metrics.csv``, ``status.json``, ``last.pt``,
``best.pt``. A checkpoint describes itself (model name and arguments, classes, input size and normalisation,
config, metrics, epoch, optimizer and scheduler state) in plain types, so it loads with ``weights_only=True``
and rebuilds its model from the file alone.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, CnnError

FORMAT = 1
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                 "images_per_second"]
TMP_MARK = ".tmp-"


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """--checkpoints, else $CNN_CHECKPOINTS, else ./checkpoints."""
    return Path(explicit or os.environ.get("CNN_CHECKPOINTS") or "checkpoints")


def validate_run_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.match(name):
        raise CnnError(f"run name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                       "starting with a letter or digit")
    return name


def default_run_name(model: str, dataset: str) -> str:
    """model-dataset-YYYYmmdd-HHMMSS, the name a run gets when none is given."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", dataset.split(":")[0])
    return f"{model}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(root: Path, name: str | None, model: str, dataset: str) -> Path:
    """A fresh run folder; a taken name gets a -2, -3, ... suffix rather than overwriting a run."""
    base = validate_run_name(name) if name else default_run_name(model, dataset)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        candidate = root / (base if i == 1 else f"{base[:58]}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CnnError(f"too many runs named {base!r}; choose another name")


def resolve_run(run: str | os.PathLike, root: Path | None = None) -> Path:
    """A run given by name (inside the checkpoints root) or by path to its folder."""
    root = runs_root(root)
    p = Path(run)
    candidates = [p] if (p.is_absolute() or len(p.parts) > 1) else [root / p, p]
    for c in candidates:
        if c.is_dir() and ((c / "config.json").is_file() or (c / "last.pt").is_file() or (c / "best.pt").is_file()):
            return c
    names = ", ".join(r.name for r in list_run_dirs(root)[:10]) or "none yet"
    raise CnnError(f"no run {str(run)!r} in {root}; runs: {names}")


def list_run_dirs(root: Path | None = None) -> list[Path]:
    root = runs_root(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()),
                  key=lambda p: p.stat().st_mtime, reverse=True)


# -------------------------------------------------------------------------------------------- atomic writes

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
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
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


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def clean_stale_tmp(root: Path | None = None) -> int:
    """Remove temp files left by a crash mid-write (their process is gone). Returns how many went."""
    root = runs_root(root)
    removed = 0
    if not root.is_dir():
        return 0
    for p in root.glob(f"*/*{TMP_MARK}*"):
        pid = p.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------------------- loading

def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load with ``weights_only=True`` only: a file that would run code is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure here means the same thing to the user
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(f"checkpoint {path.name} holds objects that could run code; refused "
                                  f"(only plain tensors and numbers are loaded)") from None
        raise CheckpointError(f"checkpoint {path.name} is not readable ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path.name} is not a cnn_core checkpoint (no format/state_dict)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights; a mismatch is a clear error."""
    from .models import build_model

    spec = ckpt.get("model", {})
    try:
        model = build_model(spec["name"], **spec.get("kwargs", {}))
    except CnnError:
        raise
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint does not describe a model this version knows ({e})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        detail = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"checkpoint weights do not fit {spec.get('name')} ({detail})") from None
    return model.eval()


# ----------------------------------------------------------------------------------------------- run files

def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Rewrite metrics.csv atomically with ``row`` added (or replacing the same epoch, after a resume)."""
    rows = [r for r in read_metrics(run_dir) if int(r["epoch"]) != int(row["epoch"])] + [row]
    rows.sort(key=lambda r: int(r["epoch"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    out = []
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                try:
                    out.append({k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if k and v != ""})
                except ValueError:
                    continue
    except OSError:
        return []
    return out


@dataclass
class RunInfo:
    name: str
    path: Path
    model: str
    dataset: str
    state: str  # running | finished | diverged | cancelled | failed | unusable | ...
    epochs_run: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    updated: float
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.name, "path": str(self.path), "model": self.model, "dataset": self.dataset,
                "state": self.state, "epochs_run": self.epochs_run, "best_val_accuracy": self.best_val_accuracy,
                "test_accuracy": self.test_accuracy, "updated": self.updated, "message": self.message}


def run_info(run_dir: Path) -> RunInfo:
    cfg = read_json(run_dir / "config.json")
    st = read_json(run_dir / "status.json")
    state = st.get("state", "unknown")
    if state == "running" and st.get("pid") and not _alive(int(st["pid"])):
        state = "interrupted"  # the process died without a word: resume it from last.pt
    has_ckpt = (run_dir / "best.pt").is_file() or (run_dir / "last.pt").is_file()
    if not has_ckpt and state not in ("running", "queued"):
        state = "unusable" if state != "failed" else state
    return RunInfo(run_dir.name, run_dir, cfg.get("model", "?"), cfg.get("dataset", "?"), state,
                   int(st.get("epochs_run", len(read_metrics(run_dir)))), st.get("best_val_accuracy"),
                   st.get("test_accuracy"), float(st.get("updated", run_dir.stat().st_mtime)), st.get("message", ""))


def list_runs(root: Path | None = None) -> list[RunInfo]:
    return [run_info(p) for p in list_run_dirs(root)]
