"""Sweeps: the cartesian product of a few settings, each an ordinary run in ``checkpoints/``, trained one
at a time, with one table row per run.

Layout: the runs are ``checkpoints/<sweep>-<settings>/`` like any other (so every page and command sees
them); the sweep itself is ``checkpoints/sweeps/<sweep>/`` with ``sweep.json`` (grid, base config, run
names) and ``sweep.csv`` (one row per run, rewritten after each run). ``sweeps/`` holds no config.json,
so it is never taken for a run. Running the same sweep again skips finished runs and resumes interrupted
ones; the default sweep name is derived from the grid and base config, so repeating the command is enough.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoints as ck
from .config import TrainConfig
from .errors import CnnError, DataError

SWEEPS = "sweeps"
MAX_RUNS = 500
_RESULT_TYPES = {"epochs_run": "int", "best_epoch": "int", "best_val_accuracy": "float", "test_accuracy": "float",
                 "train_seconds": "float", "images_per_second": "float"}
RESULT_FIELDS = list(_RESULT_TYPES)
DONE = ("finished", "stopped_early", "diverged")  # diverged: the same seed would diverge again
_SHORT = {"batch_size": "bs", "lr": "lr", "weight_decay": "wd", "momentum": "mom", "epochs": "ep", "seed": "seed",
          "label_smoothing": "ls", "patience": "pat", "input_size": "px", "train_subset": "n", "val_fraction": "val"}
_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
_GRIDABLE = set(_FIELD_TYPES) - {"extra", "preset"}

Row = dict[str, Any]


# ------------------------------------------------------------------------------------------------ the grid

def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last setting varying fastest (as nested loops written in the grid's order)."""
    if not grid:
        raise CnnError("a sweep needs at least one setting with values, e.g. --lr 0.01,0.001")
    for key, values in grid.items():
        if key not in _GRIDABLE:
            raise CnnError(f"{key!r} cannot be swept; choose from: {', '.join(sorted(_GRIDABLE))}")
        if not isinstance(values, (list, tuple)) or not values:
            raise CnnError(f"sweep setting {key} needs at least one value")
        if len({(type(v).__name__, v) for v in values}) != len(values):
            raise CnnError(f"sweep setting {key} lists a value twice: {values}")
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())]
    if len(combos) > MAX_RUNS:
        raise CnnError(f"the grid has {len(combos)} runs; at most {MAX_RUNS} in one sweep")
    return combos


def _slug(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text.replace(".", "p")).strip("-") or "x"


def settings_slug(combo: dict[str, Any]) -> str:
    """``bs32-lr0p05-sgd-aug``: names a run by its settings, within the characters a run name allows."""
    parts = []
    for key, value in combo.items():
        if isinstance(value, bool):
            parts.append(("" if value else "no") + {"augment": "aug"}.get(key, key.replace("_", "")))
        elif key in _SHORT:
            parts.append(_SHORT[key] + _slug(value))
        else:
            parts.append(_slug(value))
    return "-".join(parts)


def default_name(grid: dict[str, list[Any]], base: TrainConfig) -> str:
    """Stable for the same command, different for another grid or base config."""
    digest = hashlib.sha1(json.dumps({"grid": grid, "base": base.to_dict()}, sort_keys=True).encode()).hexdigest()
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "-", base.dataset.split(":")[0])
    return f"{base.model}-{dataset}-{digest[:6]}"


def run_names(sweep: str, combos: list[dict[str, Any]]) -> list[str]:
    names = [f"{sweep}-{settings_slug(c)}" for c in combos]
    if any(len(n) > 64 for n in names) or len(set(names)) != len(names):
        names = [f"{sweep[:58]}-{i + 1:03d}" for i in range(len(combos))]  # too long to name by settings
    return [ck.validate_run_name(n) for n in names]


# ------------------------------------------------------------------------------------------------ the table

def sweeps_root(root: str | os.PathLike | None = None) -> Path:
    return ck.runs_root(root) / SWEEPS


def sweep_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return sweeps_root(root) / ck.validate_run_name(name)


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "on" if v else "off"
    return repr(v) if isinstance(v, float) else str(v)


def _parse(key: str, text: str) -> Any:
    if text == "":
        return None
    kind = _RESULT_TYPES.get(key) or _FIELD_TYPES.get(key, "str")
    try:
        if kind == "bool":
            return text in ("on", "True", "true", "1")
        if kind == "int":
            return int(float(text))
        if kind == "float":
            return float(text)
    except ValueError:
        return None
    return text


def write_table(folder: Path, keys: list[str], rows: list[Row]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["run", "state", *keys, *RESULT_FIELDS, "message"], extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(v) for k, v in r.items()})
    ck.atomic_write_text(folder / "sweep.csv", buf.getvalue())
    return folder / "sweep.csv"


def read_sweep(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Row]:
    """The rows of a sweep (its sweep.csv, its folder, or its name), values typed, each run's state
    refreshed from its folder: a run killed mid-training reads ``interrupted``, a deleted one ``missing``."""
    p = Path(path)
    if p.name != "sweep.csv":
        p = p / "sweep.csv" if p.is_dir() else sweep_dir(str(path), root) / "sweep.csv"
    if not p.is_file():
        names = ", ".join(s["name"] for s in list_sweeps(root)[:10]) or "none yet"
        raise CnnError(f"no sweep {str(path)!r}; sweeps: {names}")
    runs_dir = p.parent.parent.parent  # checkpoints/sweeps/<sweep>/sweep.csv
    with open(p, newline="") as f:
        rows = [{k: _parse(k, v or "") for k, v in r.items() if k} for r in csv.DictReader(f)]
    for r in rows:
        run_dir = runs_dir / str(r.get("run"))
        if not (run_dir / "config.json").is_file():
            r["state"] = "pending" if r.get("state") == "pending" else "missing"
        elif r.get("state") in ("running", "pending"):
            r.update(run_result(run_dir))  # the table is written between runs; the run folder knows better
    return rows


def swept_keys(rows: list[Row]) -> list[str]:
    """The setting columns of a sweep's rows (what a chart puts on its x axis)."""
    return [k for k in (rows[0] if rows else {}) if k in _GRIDABLE]


def list_sweeps(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every sweep, newest first: name, folder, grid, run count and how many are done."""
    folder = sweeps_root(root)
    out = []
    for d in sorted(folder.iterdir() if folder.is_dir() else [], key=lambda d: d.stat().st_mtime, reverse=True):
        meta = ck.read_json(d / "sweep.json")
        if not meta:
            continue
        rows = read_sweep(d) if (d / "sweep.csv").is_file() else []
        out.append({"name": d.name, "path": str(d), "grid": meta.get("grid", {}), "runs": len(meta.get("runs", [])),
                    "done": sum(r["state"] in DONE for r in rows), "created": meta.get("created")})
    return out


def to_markdown(rows: list[Row], keys: list[str] | None = None) -> str:
    """The table a lab report shows: settings, best epoch, accuracies, time, throughput."""
    keys = swept_keys(rows) if keys is None else keys
    header = ["run", *keys, "best epoch", "best val acc", "test acc", "train s", "images/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i <= len(keys) else "---:"
                                                            for i in range(len(header))) + "|"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        settings = [_csv_value(r.get(k)) if not isinstance(r.get(k), float) else f"{r[k]:g}" for k in keys]
        lines.append("| " + " | ".join([str(r["run"]) + ("" if r["state"] in ("finished", "stopped_early")
                                                          else f" ({r['state']})"), *settings,
                                         f(r.get("best_epoch"), "d"), f(r.get("best_val_accuracy"), ".4f"),
                                         f(r.get("test_accuracy"), ".4f"), f(r.get("train_seconds"), ".1f"),
                                         f(r.get("images_per_second"), ",.0f")]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ running

def run_result(run_dir: Path) -> Row:
    """A run's sweep-table columns, from its status.json."""
    st = ck.read_json(run_dir / "status.json")
    state = st.get("state", "unknown")
    if state == "running":
        state = ck.run_info(run_dir).state  # or interrupted, when its process is gone
    return {"state": state, "message": st.get("message", ""), **{k: st.get(k) for k in RESULT_FIELDS}}


@dataclasses.dataclass
class SweepPlan:
    """What a sweep will train, checked: its name, grid, combinations, their configs and run names."""

    name: str
    grid: dict[str, list[Any]]
    combos: list[dict[str, Any]]
    cfgs: list[TrainConfig]
    runs: list[str]


def plan_sweep(grid: dict[str, list[Any]], base_cfg: TrainConfig, name: str | None = None,
               root: str | os.PathLike | None = None) -> SweepPlan:
    """Validate every combination and check every existing run against it, touching nothing; raises the
    CnnError that running this sweep would raise before its first run (the app asks before queueing it)."""
    grid = {k: list(v) for k, v in grid.items()}
    combos = expand_grid(grid)
    cfgs = [base_cfg.replace(**c) for c in combos]  # each validates itself now, not hours later
    name = ck.validate_run_name(name) if name else default_name(grid, base_cfg)
    root_path = ck.runs_root(root)
    folder = sweep_dir(name, root_path)
    meta = ck.read_json(folder / "sweep.json")
    if meta and (meta.get("grid") != json.loads(json.dumps(grid)) or meta.get("base") != base_cfg.to_dict()):
        raise CnnError(f"sweep {name} already exists with another grid or base config; give this one another "
                       f"--name (or delete {folder})")
    names = meta.get("runs") or run_names(name, combos)  # the manifest follows renames
    for run, cfg in zip(names, cfgs):
        saved = ck.read_json(root_path / run / "config.json")
        if saved and TrainConfig.from_dict(saved).to_dict() != cfg.to_dict():
            diff = [k for k, v in cfg.to_dict().items() if saved.get(k) != v]
            raise CnnError(f"run {run} already exists with other settings ({', '.join(diff)}); give the sweep "
                           "another --name")
        if (root_path / run).exists() and ck.run_info(root_path / run).state == "running":
            raise CnnError(f"run {run} is training in another process; wait for it or stop it first")
    return SweepPlan(name, grid, combos, cfgs, list(names))


def run_sweep(grid: dict[str, list[Any]], base_cfg: TrainConfig, *, name: str | None = None,
              root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
              on_run_start: Callable[[int, int, Row], None] | None = None,
              on_run_end: Callable[[int, int, Row], None] | None = None,
              on_epoch_end: Callable[[dict], None] | None = None, on_batch: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
              tensorboard: bool = False) -> dict[str, Any]:
    """Train every combination of ``grid`` on top of ``base_cfg``, one run at a time, and return
    ``{"sweep", "dir", "csv", "state", "keys", "rows"}``. The callbacks get (index from 1, total, row).

    Every combination is validated, and every existing run checked against it, before anything trains.
    A run that diverges or fails (e.g. out of GPU memory) is tabled and the sweep goes on; ``should_stop``
    ends the sweep after the current run saves its epoch (``state`` is then ``cancelled``)."""
    from .train import Diverged, fit

    say = log or (lambda _msg: None)
    plan = plan_sweep(grid, base_cfg, name, root)
    grid, combos, cfgs, name, names = plan.grid, plan.combos, plan.cfgs, plan.name, plan.runs
    root_path = ck.runs_root(root)
    folder = sweep_dir(name, root_path)
    meta = ck.read_json(folder / "sweep.json")
    folder.mkdir(parents=True, exist_ok=True)
    if not meta:
        ck.write_json(folder / "sweep.json", {"name": name, "grid": grid, "base": base_cfg.to_dict(),
                                              "runs": names, "created": time.time()})
    keys = list(grid)
    rows: list[Row] = []
    for run, combo in zip(names, combos):
        done = (root_path / run / "config.json").is_file()
        rows.append({"run": run, **combo, **(run_result(root_path / run) if done else {"state": "pending"})})
    write_table(folder, keys, rows)

    state = "finished"
    n = len(rows)
    for i, (row, cfg) in enumerate(zip(rows, cfgs), 1):
        if row["state"] in DONE:
            say(f"[{i}/{n}] {row['run']}: {row['state']} already")
            continue
        if should_stop is not None and should_stop():
            state = "cancelled"
            break
        exists = (root_path / row["run"] / "config.json").is_file()
        if not exists and (root_path / row["run"]).is_dir():
            try:  # a crash between making the folder and writing its config leaves it empty
                (root_path / row["run"]).rmdir()
            except OSError:
                raise CnnError(f"{root_path / row['run']} is in the way of this sweep's run; move it away") from None
        say(f"[{i}/{n}] {row['run']}: " + ("resuming" if exists else "training") + " "
            + ", ".join(f"{k}={_csv_value(v)}" for k, v in combos[i - 1].items()))
        row.update(state="running")
        write_table(folder, keys, rows)
        if on_run_start is not None:
            on_run_start(i, n, dict(row))
        try:
            summary = fit(cfg, name=None if exists else row["run"], resume=row["run"] if exists else None,
                          root=root_path, data_dir=data_dir, on_epoch_end=on_epoch_end, on_batch=on_batch,
                          should_stop=should_stop, log=say, tensorboard=tensorboard)
        except Diverged as e:
            say(f"[{i}/{n}] {row['run']}: {e}")
        except DataError:
            raise  # a missing or unreadable dataset fails every run alike: stop, do not table eight failures
        except CnnError as e:
            say(f"[{i}/{n}] {row['run']}: failed: {e}")  # e.g. out of GPU memory at this batch size
        else:
            if summary.get("run") != row["run"]:  # cannot happen unless the name was taken meanwhile
                raise CnnError(f"run {row['run']} was trained as {summary.get('run')}; sweep stopped")
        row.update(run_result(root_path / row["run"]))
        write_table(folder, keys, rows)
        if on_run_end is not None:
            on_run_end(i, n, dict(row))
        if row["state"] == "cancelled":
            state = "cancelled"
            break
    return {"sweep": name, "dir": str(folder), "csv": str(folder / "sweep.csv"), "state": state, "keys": keys,
            "rows": read_sweep(folder)}
