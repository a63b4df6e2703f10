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
import secrets
import time
import zipfile
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
    """A run name is also a folder name: no separators, no dots, nothing to escape the checkpoints root."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise CnnError(f"run name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                       "starting with a letter or digit")
    return name


def default_run_name(model: str, dataset: str) -> str:
    """model-dataset-YYYYmmdd-HHMMSS, the name a run gets when none is given."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", dataset.split(":")[0])
    return f"{model}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(root: Path, name: str | None, model: str, dataset: str) -> Path:
    """A fresh run folder; a taken name gets a -2, -3, ... suffix rather than overwriting a run."""
    if name is not None:  # None: name it automatically; "" or "   " is a typing slip, refused
        base = validate_run_name(name)
    else:
        base = default_run_name(model, dataset)
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
    """A run given by name, or by path to its folder.

    Without a slash it is a name: it only ever means ``root/<name>`` (never a folder next to the working
    directory) and must be a valid run name. A path is accepted only if it is a real run folder: a directory
    whose config.json names a model and a dataset. So ``--resume ../../somewhere`` cannot adopt an arbitrary
    folder and write checkpoints into it.
    """
    root = runs_root(root)
    text = os.fspath(run)
    try:
        if "/" not in text and os.sep not in text:  # a name ("." and ".." are names too, and invalid ones)
            if RUN_NAME.fullmatch(text) and _is_run_dir(root / text):
                return root / text
        elif _is_run_dir(Path(text)):
            return Path(text)
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system, ...
        pass
    names = ", ".join(r.name for r in list_run_dirs(root)[:10]) or "none yet"
    raise CnnError(f"no run {text!r} in {root}; runs: {names}")


def _is_run_dir(p: Path) -> bool:
    cfg = read_json(p / "config.json") if p.is_dir() else {}
    return isinstance(cfg.get("model"), str) and isinstance(cfg.get("dataset"), str)


def list_run_dirs(root: Path | None = None) -> list[Path]:
    root = runs_root(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file()),
                  key=_mtime, reverse=True)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:  # deleted while we looked
        return 0.0


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


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """The object in a JSON file, or {} when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def clean_stale_tmp(root: Path | None = None) -> int:
    """Remove temp files left by a crash mid-write (their process is gone). Returns how many went.

    A temp file of a live process, this one included, is a write in progress (another run, another thread)
    and stays."""
    root = runs_root(root)
    removed = 0
    if not root.is_dir():
        return 0
    for p in root.glob(f"*/*{TMP_MARK}*"):
        pid = p.name.rsplit(TMP_MARK, 1)[-1].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
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


# ------------------------------------------------------------------------------------------------- loading

def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """Load with ``weights_only=True`` only: a file that would run code is refused, never executed.
    ``mmap``: map the tensors instead of reading them (cheap checks of large files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format; others say so differently
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - every failure here means the same thing to the user
        # torch wraps the unpickler's reason in paragraphs of advice; the reason is the last of them
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Check the doc")]
        reason = lines[-1][:160] if lines else type(e).__name__
        if "global" in reason.lower():  # it names a function or class to import: code, not data
            raise CheckpointError(f"checkpoint {path.name} holds objects that could run code; refused "
                                  f"(only plain tensors and numbers are loaded)") from None
        raise CheckpointError(f"checkpoint {path.name} is not readable, damaged or not a checkpoint ({reason})"
                              ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path.name} is not a cnn_core checkpoint (no format/state_dict)")
    return ckpt


def _build_described(ckpt: dict[str, Any]) -> nn.Module:
    from .models import build_model

    spec = ckpt.get("model")
    try:
        return build_model(spec["name"], **spec.get("kwargs", {}))
    except CnnError as e:  # e.g. a model another version registered
        raise CheckpointError(f"checkpoint is for a model this version cannot build: {e}") from None
    except Exception as e:  # noqa: BLE001 - odd arguments fail in the builder in many ways
        raise CheckpointError(f"checkpoint does not describe a model this version knows ({e})") from None


def check_fits(ckpt: dict[str, Any]) -> None:
    """Raise CheckpointError unless the weights fit the model the checkpoint names, with one output per class
    name. Builds on the meta device: no memory and no time, so listing many runs stays cheap."""
    with torch.device("meta"):
        model = _build_described(ckpt)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = ckpt["state_dict"]
    got = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)} if isinstance(sd, dict) else {}
    name = ckpt["model"]["name"]
    if want.keys() != got.keys():
        odd = sorted(want.keys() ^ got.keys())
        raise CheckpointError(f"checkpoint weights do not fit {name}: {len(odd)} layers differ ({odd[0]}, ...); "
                              "it was saved for another architecture")
    for k, shape in want.items():
        if got[k] != shape:
            raise CheckpointError(f"checkpoint weights do not fit {name}: {k} is {got[k]}, the model has {shape}"
                                  " (another class count or input size?)")
    classes = ckpt.get("classes")
    outputs = ckpt["model"].get("kwargs", {}).get("num_classes")
    if not isinstance(classes, list) or (outputs is not None and len(classes) != outputs):
        n = len(classes) if isinstance(classes, list) else 0
        raise CheckpointError(f"checkpoint has {n} class names for {outputs} outputs")


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights; a mismatch is a clear error."""
    check_fits(ckpt)
    model = _build_described(ckpt)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        detail = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"checkpoint weights do not fit {ckpt['model']['name']} ({detail})") from None
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


_VERDICTS: dict[tuple, str | None] = {}  # checkpoint file version -> why it is unusable (None: usable)


def checkpoint_problem(path: Path) -> str | None:
    """Why this checkpoint cannot be used, or None. Safe (weights_only), cheap (mapped, meta-device model) and
    remembered per file version, so a runs list can check every run each time it is drawn."""
    try:
        st = Path(path).stat()
    except OSError:
        return f"{Path(path).name} is missing"
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERDICTS:
        try:
            check_fits(load_checkpoint(path, mmap=True))
            verdict = None
        except CnnError as e:
            verdict = str(e)
        except Exception as e:  # noqa: BLE001 - a listing must never break on one bad file
            verdict = f"checkpoint {Path(path).name} cannot be used ({type(e).__name__})"
        if len(_VERDICTS) > 4096:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return _VERDICTS[key]


def _num(v: Any, kind: type, default: Any) -> Any:
    try:
        return kind(v) if v is not None else default
    except (TypeError, ValueError, OverflowError):
        return default


def run_info(run_dir: Path) -> RunInfo:
    """What a runs list shows; never raises. A run whose checkpoint cannot be loaded is "unusable", with why."""
    run_dir = Path(run_dir)
    cfg = read_json(run_dir / "config.json")
    st = read_json(run_dir / "status.json")
    state = str(st.get("state", "unknown"))
    message = str(st.get("message") or "")
    pid = _num(st.get("pid"), int, 0)
    if state == "running" and pid > 0 and not _alive(pid):
        state = "interrupted"  # the process died without a word: resume it from last.pt
    ckpt = next((run_dir / n for n in ("best.pt", "last.pt") if (run_dir / n).is_file()), None)
    if ckpt is None and state not in ("running", "queued"):
        state = "unusable" if state != "failed" else state
    elif ckpt is not None and state not in ("running", "queued"):
        problem = checkpoint_problem(ckpt)
        if problem:
            state, message = "unusable", problem
    try:
        mtime = run_dir.stat().st_mtime
    except OSError:
        mtime = 0.0
    return RunInfo(run_dir.name, run_dir, str(cfg.get("model", "?")), str(cfg.get("dataset", "?")), state,
                   _num(st.get("epochs_run"), int, None) or len(read_metrics(run_dir)),
                   _num(st.get("best_val_accuracy"), float, None), _num(st.get("test_accuracy"), float, None),
                   _num(st.get("updated"), float, mtime), message)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    return [run_info(p) for p in list_run_dirs(root)]
