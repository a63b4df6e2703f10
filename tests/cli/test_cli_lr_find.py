"""``lr-find`` and ``train --early-stop`` as a student types them: real subprocesses, JSON, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_core.cli.main import build_parser
from cnn_core.config.argv import config_args, explicit_options
from cnn_core.config.train_config import TrainConfig
from cnn_core.core.files import read_json
from cnn_core.runs.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def one_line_error(p: subprocess.CompletedProcess, needle: str) -> None:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr


def test_lr_find_json_prints_the_curve_and_the_suggestion_and_writes_its_file(tmp_path):
    out = tmp_path / "found.json"
    p = cli("lr-find", "--model", "lenet5", "--dataset", "digits", "--precision", "fp32", "--steps", "40",
            "--json", "--out", str(out), env={"CNN_CHECKPOINTS": str(tmp_path / "runs")})
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert len(r["lrs"]) == len(r["losses"]) == len(r["smoothed"]) <= 40 and r["lrs"][0] == pytest.approx(1e-7)
    assert r["rule"] == "valley" and "valley rule" in r["why"] and r["suggestion"] == r["valley"]
    assert r["falling"][0] <= r["suggestion"] <= r["falling"][1] and (r["model"], r["dataset"]) == ("lenet5", "digits")
    saved = read_json(out)
    assert saved["state"] == "finished" and saved["suggestion"] == r["suggestion"]
    assert not (tmp_path / "runs").exists()  # it trains no run


def test_lr_find_without_json_says_it_in_one_line_and_a_table(tmp_path):
    p = cli("lr-find", "-m", "lenet5", "-d", "digits", "--precision", "fp32", "--steps", "30", "--rule", "steepest")
    assert p.returncode == 0, p.stderr
    first, header, *rows = p.stdout.splitlines()
    assert first.startswith("suggested learning rate ") and "by the steepest rule" in first
    assert header.split() == ["learning", "rate", "smoothed", "loss"] and 3 <= len(rows) <= 9


@pytest.mark.parametrize("args,needle", [
    (["lr-find", "--model", "lenet5"], "lr-find needs --dataset"),
    (["lr-find", "--model", "lenet6", "--dataset", "digits"], "choose one of"),
    (["lr-find", "--model", "lenet5", "--dataset", "svhn"], "unknown dataset"),
    (["lr-find", "--model", "lenet5", "--dataset", "digits", "--start", "1", "--end", "0.1"], "the rates must rise"),
    (["lr-find", "--model", "lenet5", "--dataset", "digits", "--steps", "5"], "steps must be 20..10000"),
    (["lr-find", "--model", "lenet5", "--dataset", "digits", "--rule", "fastest"], "invalid choice"),
    (["train", "--model", "lenet5", "--dataset", "digits", "--early-stop", "-1"], "early stopping must be"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    one_line_error(cli(*args), needle)


def test_a_failure_is_written_to_the_result_file(tmp_path):
    out = tmp_path / "found.json"
    p = cli("lr-find", "--model", "lenet5", "--dataset", "mnist", "--out", str(out),
            env={"CNN_DATA_DIR": str(tmp_path / "no-datasets")})
    one_line_error(p, "MNIST not found")
    saved = read_json(out)
    assert saved["state"] == "failed" and "MNIST not found" in saved["message"]


def test_early_stop_is_the_patience_flag_and_patience_still_works():
    parse = build_parser().parse_args
    for spelling in ("--early-stop", "--patience"):
        args = parse(["train", "--dataset", "digits", spelling, "3"])
        assert explicit_options(args)["patience"] == 3
    cfg = TrainConfig(patience=4)
    assert config_args(cfg)[config_args(cfg).index("--early-stop") + 1] == "4"
    assert "--early-stop N" in subprocess.run([sys.executable, "-m", "cnn_core", "train", "--help"], cwd=ROOT,
                                              capture_output=True, text=True, timeout=120).stdout
    assert TrainConfig.from_dict({"patience": 5}).patience == 5  # configs saved before keep loading


def test_train_early_stop_says_why(tmp_path):
    p = cli("train", "--model", "lenet5", "--dataset", "digits", "--epochs", "6", "--lr", "1e-6", "--schedule",
            "none", "--momentum", "0", "--early-stop", "1", "--max-batches", "2", "--name", "short", "--json",
            env={"CNN_CHECKPOINTS": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.splitlines()[-1])
    assert s["state"] == "stopped_early" and s["message"].startswith(f"stopped early at epoch {s['epochs_run']}: ")
    assert RunDir(tmp_path / "short").status()["message"] == s["message"]
