"""Run folders: ``checkpoints/<run>/`` with ``config.json``, ``status.json``, ``metrics.csv``, ``progress.json``,
``last.pt``, ``best.pt``, the saved evaluations ``report-test.json`` and ``report-val.json`` (and a model card,
exports, TensorBoard files). This module is the only code that
knows those names, what a run's states mean, and which checkpoint is "the" checkpoint of a run.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import settings
from ..core.errors import CheckpointError, CnnError
from ..core.files import TMP_MARK, alive, atomic_write_bytes, atomic_write_text, clean_stale_tmp, read_json, write_json
from .checkpoint import checkpoint_problem, load_checkpoint, save_checkpoint

# states a run's status.json may hold (plus "interrupted" and "unusable", which only a reader concludes)
ACTIVE = ("queued", "running")
FINISHED = ("finished", "stopped_early")
RESUMABLE = ("cancelled", "interrupted", "failed", "diverged")  # with a last.pt to continue from
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                 "images_per_second"]


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """--checkpoints, else $CNN_CHECKPOINTS, else ./checkpoints."""
    return settings.runs_root(explicit)


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


class RunDir:
    """One run folder. Every read and write of a run's files goes through here."""

    CONFIG, STATUS, METRICS, PROGRESS = "config.json", "status.json", "metrics.csv", "progress.json"
    BEST, LAST, SPLIT, CARD = "best.pt", "last.pt", "split.json", "model_card.md"
    REPORTS = {"test": "report-test.json", "val": "report-val.json"}

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def root(self) -> Path:
        return self.path.parent

    def file(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------------------------------ making

    @classmethod
    def create(cls, root: str | os.PathLike | None, name: str | None, model: str, dataset: str) -> RunDir:
        """A fresh run folder; a taken name gets a -2, -3, ... suffix rather than overwriting a run.
        Stale temp files of crashed writers in the root are cleared on the way."""
        root_path = runs_root(root)
        base = validate_run_name(name) if name is not None else default_run_name(model, dataset)
        root_path.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(root_path)
        for i in range(1, 10_000):
            candidate = root_path / (base if i == 1 else f"{base[:58]}-{i}")
            try:
                candidate.mkdir()
                return cls(candidate)
            except FileExistsError:
                continue
        raise CnnError(f"too many runs named {base!r}; choose another name")

    @classmethod
    def resolve(cls, run: str | os.PathLike | RunDir, root: str | os.PathLike | None = None) -> RunDir:
        """A run given by name, or by path to its folder.

        Without a slash it is a name: it only ever means ``root/<name>`` (never a folder next to the working
        directory) and must be a valid run name. A path is accepted only if it is a real run folder: a
        directory whose config.json names a model and a dataset. So ``--resume ../../somewhere`` cannot adopt
        an arbitrary folder and write checkpoints into it."""
        if isinstance(run, RunDir):
            return run
        root_path = runs_root(root)
        text = os.fspath(run)
        try:
            if "/" not in text and os.sep not in text:  # a name ("." and ".." are names too, and invalid ones)
                if RUN_NAME.fullmatch(text) and cls(root_path / text).is_run():
                    return cls(root_path / text)
            elif cls(text).is_run():
                return cls(text)
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system, ...
            pass
        names = ", ".join(r.name for r in list_run_dirs(root_path)[:10]) or "none yet"
        raise CnnError(f"no run {text!r} in {root_path}; runs: {names}")

    def is_run(self) -> bool:
        cfg = self.config() if self.path.is_dir() else {}
        return isinstance(cfg.get("model"), str) and isinstance(cfg.get("dataset"), str)

    # ------------------------------------------------------------------------------------- json files

    def config(self) -> dict[str, Any]:
        return read_json(self.path / self.CONFIG)

    def write_config(self, cfg: dict[str, Any]) -> None:
        write_json(self.path / self.CONFIG, cfg)

    def status(self) -> dict[str, Any]:
        return read_json(self.path / self.STATUS)

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json (atomically) and stamp the time; returns the new status."""
        st = self.status()
        st.update(fields, updated=time.time())
        write_json(self.path / self.STATUS, st)
        return st

    def final_status(self, **fields: Any) -> None:
        """A run's last words, if the disk takes them: a full disk must not hide the error that ended it."""
        try:
            self.update_status(**fields)
        except CnnError:
            pass

    def progress(self) -> dict[str, Any]:
        return read_json(self.path / self.PROGRESS)

    def write_progress(self, info: dict[str, Any]) -> None:
        try:
            write_json(self.path / self.PROGRESS, {**info, "updated": time.time()})
        except CnnError:
            pass  # progress is a nicety; a full disk is reported where it matters (checkpoints)

    def clear_progress(self) -> None:
        (self.path / self.PROGRESS).unlink(missing_ok=True)

    def report(self, split: str) -> dict[str, Any]:
        """The saved evaluation of ``split`` (test or val), or {} when there is none."""
        return read_json(self.path / self.REPORTS[split])

    def write_report(self, split: str, report: dict[str, Any]) -> None:
        write_json(self.path / self.REPORTS[split], report, compact=True)

    # ---------------------------------------------------------------------------------------- metrics

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Rewrite metrics.csv atomically with ``row`` added (or replacing the same epoch, after a resume)."""
        rows = [r for r in self.metrics() if int(r["epoch"]) != int(row["epoch"])] + [row]
        rows.sort(key=lambda r: int(r["epoch"]))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path / self.METRICS, buf.getvalue())

    def metrics(self) -> list[dict[str, float]]:
        path = self.path / self.METRICS
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

    # ------------------------------------------------------------------------------------ checkpoints

    def has(self, which: str) -> bool:
        """Whether best.pt or last.pt (``which`` = "best" or "last") exists, exactly that file."""
        return (self.path / f"{which}.pt").is_file()

    def has_checkpoint(self) -> bool:
        return self.has("best") or self.has("last")

    def checkpoint(self, which: str = "best") -> Path:
        """best.pt, falling back to last.pt for a run that has not finished an improving epoch."""
        for name in ((f"{which}.pt", self.LAST) if which == "best" else (f"{which}.pt",)):
            if (self.path / name).is_file():
                return self.path / name
        raise CheckpointError(f"run {self.name} has no {which}.pt yet (still on its first epoch, or failed)")

    def load(self, which: str = "best") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint(which))

    def save(self, payload: dict[str, Any], which: str) -> None:
        save_checkpoint(payload, self.path / f"{which}.pt")

    def checkpoint_mtime(self) -> float:
        """Changes whenever a checkpoint does: part of every cache key of what a checkpoint computes."""
        times = []
        for name in (self.BEST, self.LAST):
            try:
                times.append((self.path / name).stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    # ---------------------------------------------------------------------------------------- insight

    INSIGHT = "insight.json"  # what training last saw inside the model (workflows.insight writes it)
    INSIGHT_IMAGES = {"image": "insight-image.png", "heatmap": "insight-heatmap.png", "filters": "insight-filters.png"}

    def insight(self) -> dict[str, Any]:
        """The latest epoch's look inside the model, with ``files``: the path of each of its images that exists
        (image, heatmap, filters); {} before the first epoch ends."""
        info = read_json(self.path / self.INSIGHT)
        if info:
            info["files"] = {k: self.path / n for k, n in self.INSIGHT_IMAGES.items() if (self.path / n).is_file()}
        return info

    def write_insight(self, info: dict[str, Any], images: dict[str, bytes]) -> None:
        """PNG bytes by key of INSIGHT_IMAGES first, then the JSON: a reader that finds the JSON finds its images
        (or, for a moment, the next epoch's)."""
        for key, data in images.items():
            atomic_write_bytes(self.path / self.INSIGHT_IMAGES[key], data)
        write_json(self.path / self.INSIGHT, info)

    # ----------------------------------------------------------------------------------------- states

    def state(self) -> str:
        """The status's state, except that a run whose process is gone reads "interrupted" when it was running
        (resume it from last.pt) and "cancelled" when it was still waiting in a server's queue."""
        st = self.status()
        state = str(st.get("state", "unknown"))
        pid = _num(st.get("pid"), int, 0)
        if state in ACTIVE and pid > 0 and not alive(pid):
            return "interrupted" if state == "running" else "cancelled"
        return state

    def discard_unstarted(self) -> bool:
        """Delete the folder of a run that never trained (no checkpoint, no metrics): a queued run that was
        cancelled or could not start leaves nothing behind. Returns whether it went."""
        if self.has_checkpoint() or (self.path / self.METRICS).exists():
            return False
        keep = {self.CONFIG, self.STATUS, self.SPLIT, self.PROGRESS}
        try:
            if any(p.name not in keep and TMP_MARK not in p.name for p in self.path.iterdir()):
                return False
            shutil.rmtree(self.path)
        except OSError:
            return False
        return True

    def info(self) -> RunInfo:
        """What a runs list shows; never raises. A run whose checkpoint cannot be loaded is "unusable", with
        why."""
        cfg, st = self.config(), self.status()
        state = self.state()
        message = str(st.get("message") or "")
        ckpt = next((self.path / n for n in (self.BEST, self.LAST) if (self.path / n).is_file()), None)
        if state not in ACTIVE:
            if ckpt is None:
                state = "unusable" if state != "failed" else state
            elif problem := checkpoint_problem(ckpt):
                state, message = "unusable", problem
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return RunInfo(self.name, self.path, str(cfg.get("model", "?")), str(cfg.get("dataset", "?")), state,
                       _num(st.get("epochs_run"), int, None) or len(self.metrics()),
                       _num(st.get("best_val_accuracy"), float, None), _num(st.get("test_accuracy"), float, None),
                       _num(st.get("updated"), float, mtime), message)


def list_run_dirs(root: str | os.PathLike | None = None) -> list[RunDir]:
    """Every run folder in the root, newest first."""
    root_path = runs_root(root)
    if not root_path.is_dir():
        return []
    found = [p for p in root_path.iterdir() if p.is_dir() and (p / RunDir.CONFIG).is_file()]
    return [RunDir(p) for p in sorted(found, key=_mtime, reverse=True)]


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:  # deleted while we looked
        return 0.0


@dataclass
class RunInfo:
    name: str
    path: Path
    model: str
    dataset: str
    state: str  # running | finished | diverged | cancelled | failed | interrupted | unusable | ...
    epochs_run: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    updated: float
    message: str = ""

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.name, "path": str(self.path), "model": self.model, "dataset": self.dataset,
                "state": self.state, "epochs_run": self.epochs_run, "best_val_accuracy": self.best_val_accuracy,
                "test_accuracy": self.test_accuracy, "updated": self.updated, "message": self.message}


def _num(v: Any, kind: type, default: Any) -> Any:
    try:
        return kind(v) if v is not None else default
    except (TypeError, ValueError, OverflowError):
        return default


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    return [r.info() for r in list_run_dirs(root)]
