"""Sweeps: a real small grid on digits, its table, resuming, and the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError, DataError
from cnn_core.core.files import read_json, write_json
from cnn_core.runs.rundir import RUN_NAME, RunDir, list_runs
from cnn_core.workflows.history import delete_run, rename_run
from cnn_core.workflows.sweep import (
    expand_grid,
    list_sweeps,
    read_sweep,
    run_names,
    run_sweep,
    settings_slug,
    swept_keys,
    to_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = TrainConfig(model="lenet5", dataset="digits", epochs=2, batch_size=64, lr=0.05, schedule="onecycle",
                   train_subset=300, seed=0)
GRID = {"batch_size": [64, 128], "optimizer": ["sgd", "adam"]}


def test_grid_is_the_cartesian_product_in_loop_order():
    combos = expand_grid({"batch_size": [32, 64, 128], "lr": [0.005, 0.001], "optimizer": ["sgd", "adam"]})
    assert len(combos) == 12
    assert combos[0] == {"batch_size": 32, "lr": 0.005, "optimizer": "sgd"}
    assert combos[1] == {"batch_size": 32, "lr": 0.005, "optimizer": "adam"}
    assert combos[-1] == {"batch_size": 128, "lr": 0.001, "optimizer": "adam"}
    for grid, msg in [({}, "at least one"), ({"lr": []}, "at least one value"), ({"lr": [0.1, 0.1]}, "twice"),
                      ({"colour": [1, 2]}, "cannot be swept"), ({"extra": [{}]}, "cannot be swept")]:
        with pytest.raises(CnnError, match=msg):
            expand_grid(grid)
    assert len(expand_grid({"augment": [True, False], "weight_decay": [0, 1]})) == 4  # 1 is not True here


def test_runs_are_named_by_their_settings():
    slug = settings_slug({"batch_size": 32, "lr": 0.05, "optimizer": "sgd", "augment": False, "weight_decay": 5e-4})
    assert slug == "bs32-lr0p05-sgd-noaug-wd0p0005"
    assert settings_slug({"lr": 1e-5, "augment": True, "schedule": "onecycle"}) == "lr1e-05-aug-onecycle"
    combos = expand_grid({"lr": [0.1, 0.01]})
    assert run_names("s", combos) == ["s-lr0p1", "s-lr0p01"]
    long = run_names("x" * 60, combos)  # too long for a run name: numbered instead
    assert long == ["x" * 58 + "-001", "x" * 58 + "-002"] and all(RUN_NAME.match(n) for n in long)


def test_real_sweep_tables_every_run_and_resumes_after_a_stop(runs):
    started, stop = [], {"now": False}

    def on_start(i, n, row):
        started.append((i, n, row["run"], row["state"]))

    def on_epoch(row):
        stop["now"] = len(started) == 2 and row["epoch"] == 1  # stop the second run after its first epoch

    first = run_sweep(GRID, BASE, on_run_start=on_start,
                      callbacks=[Hooks(epoch=on_epoch, stop=lambda: stop["now"])])
    name = first["sweep"]
    assert first["state"] == "cancelled" and name.startswith("lenet5-digits-")
    assert [r["state"] for r in first["rows"]] == ["finished", "cancelled", "pending", "pending"]
    assert [r["run"] for r in first["rows"]] == [f"{name}-bs64-sgd", f"{name}-bs64-adam", f"{name}-bs128-sgd",
                                                 f"{name}-bs128-adam"]
    assert [s[:2] for s in started] == [(1, 4), (2, 4)]
    finished_first = (runs / first["rows"][0]["run"] / "last.pt").stat().st_mtime_ns

    started.clear()
    stop["now"] = False
    lines = []
    res = run_sweep(GRID, BASE, on_run_start=on_start, callbacks=[Hooks(log=lines.append)])  # the same command again
    assert res["sweep"] == name and res["state"] == "finished"
    assert [s[0] for s in started] == [2, 3, 4]  # the finished run is skipped ...
    assert (runs / res["rows"][0]["run"] / "last.pt").stat().st_mtime_ns == finished_first
    assert any(l.startswith(f"[2/4] {name}-bs64-adam: resuming") for l in lines)  # ... the stopped one resumed
    assert [r["epoch"] for r in RunDir(runs / res["rows"][1]["run"]).metrics()] == [1, 2]

    rows = res["rows"]
    assert Path(res["csv"]) == runs / "sweeps" / name / "sweep.csv"
    assert [{k: r[k] for k in ("batch_size", "optimizer")} for r in rows] == expand_grid(GRID)
    for r in rows:
        st = read_json(runs / r["run"] / "status.json")
        assert r["state"] == "finished" and r["best_epoch"] in (1, 2)
        for k in ("best_epoch", "best_val_accuracy", "test_accuracy", "train_seconds", "images_per_second"):
            assert r[k] == st[k], k
        assert read_json(runs / r["run"] / "config.json")["batch_size"] == r["batch_size"]
        assert (runs / r["run"] / "model_card.md").is_file()
    assert read_sweep(res["csv"]) == rows == read_sweep(name) == read_sweep(runs / "sweeps" / name)
    assert swept_keys(rows) == ["batch_size", "optimizer"]
    assert sorted(r.name for r in list_runs(runs)) == sorted(r["run"] for r in rows)  # sweeps/ is no run
    assert list_sweeps(runs)[0] | {"created": 0} == {"name": name, "path": str(runs / "sweeps" / name), "runs": 4,
                                                    "done": 4, "grid": GRID, "created": 0}
    table = to_markdown(rows).splitlines()
    assert table[0] == "| run | batch_size | optimizer | best epoch | best val acc | test acc | train s | images/s |"
    assert len(table) == 6 and f"| {rows[3]['run']} | 128 | adam | {rows[3]['best_epoch']} |" in table[5]

    with pytest.raises(CnnError, match="another grid or base config"):
        run_sweep(GRID, BASE.replace(epochs=3), name=name)
    # history operations keep the sweep consistent: a renamed run stays in it, a deleted one shows as missing
    renamed = rename_run(rows[0]["run"], "best-sgd-run")
    assert read_sweep(name)[0]["run"] == "best-sgd-run" and read_sweep(name)[0]["state"] == "finished"
    started.clear()
    assert run_sweep(GRID, BASE, on_run_start=on_start)["state"] == "finished" and started == []
    delete_run(renamed.name)
    assert read_sweep(name)[0]["state"] == "missing"


def test_other_settings_under_a_sweeps_run_name_are_refused_before_training(runs):
    grid = {"lr": [0.05, 0.01]}
    taken = runs / "mine-lr0p01"  # the second run's name, already used by a run with other settings
    taken.mkdir(parents=True)
    write_json(taken / "config.json", BASE.replace(lr=0.01, epochs=9).to_dict())
    with pytest.raises(CnnError, match="already exists with other settings \\(epochs\\)"):
        run_sweep(grid, BASE, name="mine")
    assert sorted(p.name for p in runs.iterdir()) == ["mine-lr0p01"]  # nothing trained, no sweep folder
    with pytest.raises(CnnError, match="optimizer must be one of"):  # every combination is checked first
        run_sweep({"optimizer": ["sgd", "rmsprop"]}, BASE, name="typo")
    assert not (runs / "sweeps").exists()
    with pytest.raises(DataError):  # a dataset problem stops the sweep at its first run
        run_sweep({"lr": [0.1, 0.01]}, BASE.replace(dataset="folder:/no/such/folder"), name="nodata")
    assert [r["state"] for r in read_sweep("nodata")] == ["failed", "pending"]


def test_a_diverging_run_is_tabled_and_the_sweep_goes_on(runs):
    res = run_sweep({"lr": [50.0, 0.05]}, BASE.replace(epochs=1, schedule="none"), name="wild")
    assert [r["state"] for r in res["rows"]] == ["diverged", "finished"]
    assert "diverged" in res["rows"][0]["message"] and res["rows"][1]["test_accuracy"] > 0
    assert "(diverged)" in to_markdown(res["rows"])


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def test_cli_sweep(tmp_path):
    env = {"CNN_CHECKPOINTS": str(tmp_path)}
    p = cli("sweep", "--model", "lenet5", "--dataset", "digits", "--lr", "0.05,0.01", "--optimizer", "sgd",
            "--augment", "on", "--epochs", "1", "--max-batches", "2", "--name", "cli", "--json", env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert [r["run"] for r in res["rows"]] == ["cli-lr0p05-sgd-aug", "cli-lr0p01-sgd-aug"]
    assert [r["lr"] for r in res["rows"]] == [0.05, 0.01] and all(r["augment"] is True for r in res["rows"])
    assert (tmp_path / "sweeps" / "cli" / "sweep.csv").is_file()
    assert read_json(tmp_path / "cli-lr0p01-sgd-aug" / "config.json")["max_batches"] == 2
    p = cli("sweep", "--model", "lenet5", "--dataset", "digits", "--lr", "0.05,0.01", "--optimizer", "sgd",
            "--augment", "on", "--epochs", "1", "--max-batches", "2", "--name", "cli", env=env)
    assert p.returncode == 0 and p.stdout.count("finished already") == 2 and "| cli-lr0p01-sgd-aug |" in p.stdout
    for args, needle in [(["--lr", "0.1,x"], "cannot read '0.1,x'"), ([], "at least one list"),
                         (["--optimizer", "sgd,rmsprop"], "optimizer must be one of"),
                         (["--batch-size", "32,,64"], "comma-separated")]:
        p = cli("sweep", "--model", "lenet5", "--dataset", "digits", *args, env=env)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and needle in lines[0], p.stderr
