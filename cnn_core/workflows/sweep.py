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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config.argv import flag_text
from ..config.train_config import FIELDS, TrainConfig, sweepable
from ..core.errors import CnnError, DataError
from ..core.files import atomic_write_text, read_json, write_json
from ..runs.rundir import FINISHED, RunDir, runs_root, validate_run_name
from ..training.callbacks import Callback
from ..training.loop import Diverged
from .run import train_run

SWEEPS = "sweeps"
MAX_RUNS = 500
_RESULT_TYPES = {"epochs_run": "int", "best_epoch": "int", "best_val_accuracy": "float", "test_accuracy": "float",
                 "train_seconds": "float", "images_per_second": "float"}
RESULT_FIELDS = list(_RESULT_TYPES)
DONE = (*FINISHED, "diverged")  # diverged: the same seed would diverge again
_SHORT = {"batch_size": "bs", "lr": "lr", "weight_decay": "wd", "momentum": "mom", "epochs": "ep", "seed": "seed",
          "label_smoothing": "ls", "patience": "pat", "input_size": "px", "train_subset": "n", "val_fraction": "val"}
_FIELD_TYPES = {name: str(f.type) for name, f in FIELDS.items()}
_GRIDABLE = set(sweepable())

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
    return [validate_run_name(n) for n in names]


# ------------------------------------------------------------------------------------------------ the table

def sweeps_root(root: str | os.PathLike | None = None) -> Path:
    return runs_root(root) / SWEEPS


def sweep_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return sweeps_root(root) / validate_run_name(name)


def _csv_value(v: Any) -> str:
    return "" if v is None else flag_text(v)


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
    atomic_write_text(folder / "sweep.csv", buf.getvalue())
    return folder / "sweep.csv"


def read_sweep(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Row]:
    """The rows of a sweep (its sweep.csv, its folder, or its name), values typed, each run's state
    refreshed from its folder: a run killed mid-training reads ``interrupted``, a deleted one ``missing``."""
    p = Path(path)
    if p.name != "sweep.csv":
        p = p / "sweep.csv" if p.is_dir() else sweep_dir(str(path), root) / "sweep.csv"
    meta = read_json(p.parent / "sweep.json")
    if not p.is_file() and not meta.get("runs"):
        names = ", ".join(s["name"] for s in list_sweeps(root)[:10]) or "none yet"
        raise CnnError(f"no sweep {str(path)!r}; sweeps: {names}")
    runs_dir = p.parent.parent.parent  # checkpoints/sweeps/<sweep>/sweep.csv
    if p.is_file():
        with open(p, newline="") as f:
            rows = [{k: _parse(k, v or "") for k, v in r.items() if k} for r in csv.DictReader(f)]
    else:  # planned, not started yet (a queued job): every run pending
        combos = expand_grid(meta["grid"])
        rows = [{"run": run, **combo, "state": "pending"} for run, combo in zip(meta["runs"], combos)]
    for r in rows:
        run_dir = runs_dir / str(r.get("run"))
        if not RunDir(run_dir).is_run():
            r["state"] = r["state"] if r.get("state") in ("pending", "failed") else "missing"  # failed at start
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
        meta = read_json(d / "sweep.json")
        if not meta:
            continue
        rows = read_sweep(d)
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
        lines.append("| " + " | ".join([str(r["run"]) + ("" if r["state"] in FINISHED
                                                          else f" ({r['state']})"), *settings,
                                         f(r.get("best_epoch"), "d"), f(r.get("best_val_accuracy"), ".4f"),
                                         f(r.get("test_accuracy"), ".4f"), f(r.get("train_seconds"), ".1f"),
                                         f(r.get("images_per_second"), ",.0f")]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ running

def run_result(run_dir: Path) -> Row:
    """A run's sweep-table columns, from its status.json."""
    st = RunDir(run_dir).status()
    state = RunDir(run_dir).state()  # "running", or "interrupted" when its process is gone
    return {"state": state, "message": st.get("message", ""), **{k: st.get(k) for k in RESULT_FIELDS}}


@dataclasses.dataclass
class SweepPlan:
    """What a sweep will train, checked: its name, grid, base config, combinations, their configs and run
    names."""

    name: str
    grid: dict[str, list[Any]]
    base: TrainConfig
    combos: list[dict[str, Any]]
    cfgs: list[TrainConfig]
    runs: list[str]


def plan_sweep(grid: dict[str, list[Any]], base_cfg: TrainConfig, name: str | None = None,
               root: str | os.PathLike | None = None) -> SweepPlan:
    """Validate every combination and check every existing run against it, touching nothing; raises the
    CnnError that running this sweep would raise before its first run (the app asks before queueing it)."""
    order = sweepable()  # the one order of a grid's settings, so a sweep's runs are named alike everywhere
    grid = {k: list(v) for k, v in sorted(grid.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)}
    combos = expand_grid(grid)
    cfgs = [base_cfg.replace(**c) for c in combos]  # each validates itself now, not hours later
    name = validate_run_name(name) if name else default_name(grid, base_cfg)
    root_path = runs_root(root)
    folder = sweep_dir(name, root_path)
    meta = read_json(folder / "sweep.json")
    if meta and (meta.get("grid") != json.loads(json.dumps(grid)) or meta.get("base") != base_cfg.to_dict()):
        raise CnnError(f"sweep {name} already exists with another grid or base config; give this one another "
                       f"--name (or delete {folder})")
    names = meta.get("runs") or run_names(name, combos)  # the manifest follows renames
    for run, cfg in zip(names, cfgs):
        saved = RunDir(root_path / run).config()
        if saved and TrainConfig.from_dict(saved).to_dict() != cfg.to_dict():
            diff = [k for k, v in cfg.to_dict().items() if saved.get(k) != v]
            raise CnnError(f"run {run} already exists with other settings ({', '.join(diff)}); give the sweep "
                           "another --name")
        if (root_path / run).exists() and RunDir(root_path / run).state() == "running":
            raise CnnError(f"run {run} is training in another process; wait for it or stop it first")
    return SweepPlan(name, grid, base_cfg, combos, cfgs, list(names))


def run_sweep(grid: dict[str, list[Any]], base_cfg: TrainConfig, *, name: str | None = None,
              root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
              on_run_start: Callable[[int, int, Row], None] | None = None,
              on_run_end: Callable[[int, int, Row], None] | None = None,
              callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train every combination of ``grid`` on top of ``base_cfg``, one run at a time, and return
    ``{"sweep", "dir", "csv", "state", "keys", "rows"}``. ``on_run_start``/``on_run_end`` get (index from 1,
    total, row); ``callbacks`` go to every run's fit (their messages are the sweep's too).

    Every combination is validated, and every existing run checked against it, before anything trains.
    A run that diverges or fails (e.g. out of GPU memory) is tabled and the sweep goes on; a callback's
    ``should_stop`` ends the sweep after the current run saves its epoch (``state`` is then ``cancelled``)."""
    def say(text: str) -> None:
        for c in callbacks:
            c.on_message(text)

    def should_stop() -> bool:
        return any(c.should_stop() for c in callbacks)

    plan = plan_sweep(grid, base_cfg, name, root)
    grid, combos, cfgs, name, names = plan.grid, plan.combos, plan.cfgs, plan.name, plan.runs
    root_path = runs_root(root)
    folder = open_sweep(plan, root_path)
    _set_status(folder, state="running", pid=os.getpid(), message="")
    keys = list(grid)
    rows: list[Row] = []
    for run, combo in zip(names, combos):
        done = RunDir(root_path / run).is_run()
        rows.append({"run": run, **combo, **(run_result(root_path / run) if done else {"state": "pending"})})
    write_table(folder, keys, rows)

    state = "finished"
    n = len(rows)
    for i, (row, cfg) in enumerate(zip(rows, cfgs), 1):
        if row["state"] in DONE:
            say(f"[{i}/{n}] {row['run']}: {row['state']} already")
            continue
        if should_stop():
            state = "cancelled"
            break
        exists = RunDir(root_path / row["run"]).is_run()
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
        failure = ""
        try:
            trained = exists and RunDir(root_path / row["run"]).has("last")  # else made but killed before epoch 1
            summary = train_run(cfg, name=None if exists else row["run"], resume=row["run"] if trained else None,
                                prepared=row["run"] if exists and not trained else None, root=root_path,
                                data_dir=data_dir, callbacks=callbacks)
        except Diverged as e:
            say(f"[{i}/{n}] {row['run']}: {e}")
        except DataError as e:  # a missing or unreadable dataset fails every run alike: stop, do not table eight
            row.update(state="failed", message=str(e))
            write_table(folder, keys, rows)
            raise
        except CnnError as e:
            say(f"[{i}/{n}] {row['run']}: failed: {e}")  # e.g. out of GPU memory at this batch size
            failure = str(e)
        else:
            if summary.get("run") != row["run"]:  # cannot happen unless the name was taken meanwhile
                raise CnnError(f"run {row['run']} was trained as {summary.get('run')}; sweep stopped")
        if RunDir(root_path / row["run"]).is_run():
            row.update(run_result(root_path / row["run"]))
        else:  # it failed before its first epoch and left no folder: the table keeps why
            row.update(state="failed", message=failure)
        write_table(folder, keys, rows)
        if on_run_end is not None:
            on_run_end(i, n, dict(row))
        if row["state"] == "cancelled":
            state = "cancelled"
            break
    rows = read_sweep(folder)
    bad = [r for r in rows if r.get("state") not in FINISHED]
    message = ("stopped; start the same sweep again to continue" if state == "cancelled" else
               f"{len(bad)} of {len(rows)} runs did not finish: " + ", ".join(sorted({str(r['state']) for r in bad}))
               if bad else "")
    _set_status(folder, state=state, pid=None, message=message)
    return {"sweep": name, "dir": str(folder), "csv": str(folder / "sweep.csv"), "state": state, "keys": keys,
            "rows": rows, "message": message}


def open_sweep(plan: SweepPlan, root: str | os.PathLike | None = None) -> Path:
    """The sweep's folder with its sweep.json (grid, base config, run names): what ``sweep --continue`` trains.
    An existing sweep.json is kept (it follows renames)."""
    folder = sweep_dir(plan.name, root)
    folder.mkdir(parents=True, exist_ok=True)
    if not read_json(folder / "sweep.json"):
        write_json(folder / "sweep.json", {"name": plan.name, "grid": plan.grid, "base": plan.base.to_dict(),
                                           "runs": plan.runs, "created": time.time()})
    return folder


def sweep_plan_of(name: str, root: str | os.PathLike | None = None) -> tuple[dict[str, list[Any]], TrainConfig]:
    """The grid and base config a sweep folder was opened with."""
    meta = sweep_manifest(name, root)
    if not meta.get("grid") or not isinstance(meta.get("base"), dict):
        names = ", ".join(s["name"] for s in list_sweeps(root)[:10]) or "none yet"
        raise CnnError(f"no sweep {name!r} to continue; sweeps: {names}")
    return meta["grid"], TrainConfig.from_dict(meta["base"])


def sweep_status(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The sweep's status.json: state running, finished or cancelled, with a message."""
    return read_json(sweep_dir(name, root) / "status.json")


def sweep_manifest(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The sweep's sweep.json (name, grid, base config, run names, created); {} for a folder that has none."""
    return read_json(sweep_dir(name, root) / "sweep.json")


def rename_in_sweeps(root: Path, old: str, new: str) -> None:
    """A renamed run keeps its place in every sweep that trained it: the manifest's run names and the table."""
    folder = sweeps_root(root)
    for meta_path in folder.glob("*/sweep.json") if folder.is_dir() else []:
        meta = read_json(meta_path)
        if old not in meta.get("runs", []):
            continue
        meta["runs"] = [new if r == old else r for r in meta["runs"]]
        write_json(meta_path, meta)
        if (meta_path.parent / "sweep.csv").is_file():
            rows = read_sweep(meta_path.parent)
            for r in rows:
                if r["run"] == old:
                    r.update(run=new, **run_result(root / new))
            write_table(meta_path.parent, list(meta.get("grid", {})), rows)


def _set_status(folder: Path, **fields: Any) -> None:
    st = read_json(folder / "status.json")
    st.update(fields, updated=time.time())
    write_json(folder / "status.json", st)
