"""Run history: the table of runs for a Runs page, and renaming or deleting a run.

Asking "are you sure?" is the caller's job; these functions make the operations safe by themselves: only a
run folder directly inside the checkpoints root is touched (never a symlink, never the root, never a path
outside it), and never a run that is training right now.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..core.errors import CnnError
from ..evaluation.modelcard import CARD, rename_in_card
from ..runs.rundir import ACTIVE, RunDir, list_run_dirs, list_runs, runs_root, validate_run_name
from .sweep import rename_in_sweeps


def _run_dir(run: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """The run's folder, proven to be a run directly inside the root."""
    root_path = runs_root(root)
    p = Path(run)
    candidate = root_path / validate_run_name(str(run)) if len(p.parts) == 1 and not p.is_absolute() else p
    if not root_path.is_dir():
        raise CnnError(f"no runs folder {root_path}")
    if candidate.is_symlink():
        raise CnnError(f"{candidate} is a symbolic link, not a run folder; remove the link yourself")
    real_root, real = root_path.resolve(), candidate.resolve()
    if real.parent != real_root:
        raise CnnError(f"{run} is not a run inside {root_path}; only runs there can be renamed or deleted")
    if not RunDir(real).is_run():
        names = ", ".join(r.name for r in list_run_dirs(root_path)[:10]) or "none yet"
        raise CnnError(f"no run {str(run)!r} in {root_path}; runs: {names}")
    return real


def _not_training(run_dir: Path, doing: str) -> None:
    state = RunDir(run_dir).state()
    if state in ACTIVE:
        raise CnnError(f"run {run_dir.name} is {state}; stop it before it can be {doing}")


def rename_run(run: str | os.PathLike, new_name: str, root: str | os.PathLike | None = None) -> Path:
    """Rename a run's folder (and its name in its model card and any sweep that lists it); returns the new
    folder. Fails, changing nothing, if the new name is invalid or taken."""
    run_dir = _run_dir(run, root)
    new_name = validate_run_name(new_name)
    if new_name == run_dir.name:
        return run_dir
    target = run_dir.parent / new_name
    if target.exists() or target.is_symlink() or new_name == "sweeps":
        raise CnnError(f"the name {new_name!r} is taken; choose another")
    _not_training(run_dir, "renamed")
    old = run_dir.name
    os.rename(run_dir, target)  # same folder: atomic, and never onto an existing folder (checked above)
    moved = RunDir(target)
    if moved.status():
        moved.update_status(run=new_name, run_dir=str(target))
    rename_in_card(moved, old, new_name)
    rename_in_sweeps(run_dir.parent, old, new_name)
    return target


def delete_run(run: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Delete a run's folder with everything in it; returns the path it had. Confirm with the user first."""
    run_dir = _run_dir(run, root)
    _not_training(run_dir, "deleted")
    shutil.rmtree(run_dir)  # does not follow symlinks inside the run: a link is removed, not its target
    return run_dir


def runs_table(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run, newest first, with what a Runs page lists: name, model, dataset, state, accuracies, epochs,
    when it was created and last updated, and which extra files it has (card, exports, TensorBoard)."""
    rows = []
    for info in list_runs(root):
        created = info.run.file(RunDir.CONFIG).stat().st_mtime
        rows.append({**info.to_dict(), "created": created,
                     "created_text": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)),
                     "updated_text": time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated)),
                     "model_card": info.run.file(CARD).is_file(),
                     "exports": sorted(p.name for p in info.path.glob("model.*") if p.suffix in (".pt2", ".onnx")),
                     "tensorboard": any(info.path.glob("events.out.tfevents.*"))})
    return rows
