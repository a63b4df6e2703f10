"""What a visitor of a shared server may ask of it: a few jobs each, none too long, and never the last of the disk.

A class of 30 shares one machine, so a visitor (a browser session that is not the operator's) may keep at most
``queued_per_visitor`` jobs waiting and ``running_per_visitor`` training, each estimated at most ``job_minutes``,
and a sweep of at most ``sweep_runs`` runs. Nobody, the operator included, starts work that would leave less
than ``min_free_gb`` free under the runs folder: a full disk fails every run at its next checkpoint.

The limits live in ``state_dir()/limits.json`` and are read on every request, so the operator changes them
without restarting the server.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..config.train_config import TrainConfig
from ..core import settings
from ..core.errors import CnnError
from ..core.files import write_json

GB = 1e9
CHECKPOINTS_PER_RUN = 2  # best.pt and last.pt
BYTES_PER_PARAM = 4  # fp32 weights; the optimizer state is not saved twice


@dataclass(frozen=True)
class Limits:
    """Per-visitor limits (the operator is bound by ``min_free_gb`` only)."""

    queued_per_visitor: int = 1  # jobs waiting in a queue
    running_per_visitor: int = 1  # jobs training at once
    job_minutes: float = 30.0  # a job's estimated training time
    sweep_runs: int = 12  # runs in one sweep
    min_free_gb: float = 2.0  # free disk under the runs folder, after the job's checkpoints

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = int if f.type == "int" else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise CnnError(f"limit {f.name} must be a {'whole ' if kind is int else ''}number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise CnnError(f"limit {f.name} must be a finite number >= 0, got {value!r}")


def limits_path() -> Path:
    return settings.state_dir() / "limits.json"


def load_limits(path: str | os.PathLike | None = None) -> Limits:
    """The limits in force: limits.json over the defaults (no file: the defaults). A bad file is refused in one
    line, never silently replaced by defaults (the operator would think the class limited)."""
    p = Path(path) if path else limits_path()
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return Limits()
    except (OSError, ValueError) as e:
        raise CnnError(f"{p} is not readable JSON ({str(e).splitlines()[0]}); fix or delete it") from None
    return limits_from(data, p)


def limits_from(data: Any, where: str | os.PathLike = "limits") -> Limits:
    """Limits from a dict of some of their fields; unknown names are refused with the valid ones."""
    if not isinstance(data, dict):
        raise CnnError(f"{where} must hold a JSON object of limits, e.g. {json.dumps(asdict(Limits()))}")
    known = [f.name for f in fields(Limits)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CnnError(f"{where}: unknown limit {unknown[0]!r}; choose from: {', '.join(known)}")
    try:
        return Limits(**data)
    except CnnError as e:
        raise CnnError(f"{where}: {e}") from None


def save_limits(limits: Limits | dict[str, Any], path: str | os.PathLike | None = None) -> Limits:
    """Validate and write limits.json (atomically); returns what was saved."""
    checked = limits if isinstance(limits, Limits) else limits_from(limits)
    p = Path(path) if path else limits_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, asdict(checked))
    return checked


def checkpoint_bytes(cfg: TrainConfig) -> int:
    """What one run's checkpoints take on disk: parameters x 4 bytes x 2 checkpoints (10 classes, RGB; built on
    the meta device, so no memory and no time)."""
    import torch

    from ..models.registry import build_model, count_parameters

    with torch.device("meta"):
        params = count_parameters(build_model(cfg.model, 10, 3, cfg.input_size or None, **cfg.extra))
    return params * BYTES_PER_PARAM * CHECKPOINTS_PER_RUN


def check_step_pixels(cfg: TrainConfig) -> None:
    """Refuse a batch whose every step is too large for a job that is not timed (the learning-rate finder: its
    cost is its fixed number of steps). The cap is the time estimate's own (``MAX_STEP_PIXELS``); the side is
    the one asked for, else the model's default, which no built-in dataset's images exceed."""
    from ..models.registry import get_spec
    from ..training.estimate import MAX_STEP_PIXELS

    side = get_spec(cfg.model).pick_size(None, cfg.input_size)
    if cfg.batch_size * side * side > MAX_STEP_PIXELS:
        most = max(1, MAX_STEP_PIXELS // (side * side))
        raise CnnError(f"a batch of {cfg.batch_size} images of {side}x{side} is too large a step for the "
                       f"learning-rate finder here: use a batch of at most {most}, or a smaller input size")


def free_bytes(root: Path) -> int:
    """Free space on the disk that holds ``root`` (or its nearest existing parent: a fresh server has none)."""
    p = root.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_disk(root: Path, needed: int, limits: Limits, what: str = "this job's checkpoints") -> None:
    """Refuse work that would leave less than the floor free (everyone, the operator too); ``needed`` bytes are
    ``what`` the work writes."""
    free = free_bytes(root)
    if free - needed < limits.min_free_gb * GB:
        need = f" (+{needed / GB:.2f} GB for {what})" if needed else ""
        raise CnnError(f"only {free / GB:.1f} GB free under {root}; new work needs {limits.min_free_gb:g} GB free"
                       f"{need}: delete old runs first")


def check_visitor(limits: Limits, queued: int, running: int, estimated_seconds: float | None, runs: int,
                  timed: bool = True) -> None:
    """Refuse a visitor's request that would go over their share of the server. A ``timed`` kind of job (a training,
    a sweep) must come with its estimate: one without could run for days."""
    most = limits.queued_per_visitor + limits.running_per_visitor
    if queued >= limits.queued_per_visitor or queued + running >= most:
        raise CnnError(f"you already have {running} job(s) training and {queued} waiting (at most "
                       f"{limits.running_per_visitor} + {limits.queued_per_visitor}); wait for one to finish or "
                       "cancel it")
    if timed and estimated_seconds is None:
        raise CnnError(f"this job could not be timed before it starts, and a visitor's jobs must be (at most "
                       f"{limits.job_minutes:g} minutes per job here): estimate its time first")
    if estimated_seconds is not None and estimated_seconds > limits.job_minutes * 60:
        raise CnnError(f"this job is estimated at {estimated_seconds / 60:.0f} minutes; at most "
                       f"{limits.job_minutes:g} minutes per job here: fewer epochs, a subset or a smaller model")
    if runs > limits.sweep_runs:
        raise CnnError(f"this sweep has {runs} runs; at most {limits.sweep_runs} per sweep here: sweep fewer values")
