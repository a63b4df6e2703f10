"""A run folder written before the restructure into layers (commit 940a0d4) still lists, evaluates, predicts and
trains further.

The fixture tests/fixtures/old-run-lenet5 was made by that version's own CLI, at 940a0d4^:
``CNN_CHECKPOINTS=... python -m cnn_core train --model lenet5 --dataset digits --epochs 1 --max-batches 3
--momentum 0 --name old-run-lenet5``. To keep it small (266 KB) momentum is 0 (SGD then saves no optimizer
state) and best.pt is left out: it is last.pt's format without the optimizer, and a run without it is evaluated
and predicted from last.pt (RunDir.checkpoint's fallback). Its status.json still names the folder it was made in.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_core.cli.main import main
from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.checkpoint import load_checkpoint

NAME = "old-run-lenet5"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / NAME


@pytest.fixture
def old_run(runs) -> Path:
    folder = runs / NAME
    shutil.copytree(FIXTURE, folder)
    return folder


def test_an_old_run_is_listed_as_finished(old_run, capsys):
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["model"], r["dataset"], r["state"], r["epochs_run"]) for r in rows] == \
        [(NAME, "lenet5", "digits", "finished", 1)]
    assert rows[0]["test_accuracy"] == pytest.approx(0.1)


def test_an_old_run_is_evaluated_on_its_test_split(old_run, capsys):
    assert main(["evaluate", NAME, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["run"] == NAME and rep["split"] == "test" and rep["epoch"] == 1
    assert rep["count"] == 360 and rep["classes"] == [str(d) for d in range(10)]  # digits' test split, as saved
    assert sum(map(sum, rep["confusion_matrix"])) == 360


def test_an_old_run_predicts_an_8x8_digit(old_run):
    one = np.zeros((8, 8), np.uint8)
    one[1:7, 3:5] = 16 * 15  # a bar: the digits' own 8x8 scale
    pred = Predictor.from_run(NAME)
    top = pred.top_k([Image.fromarray(one)], 3)[0]
    assert len(top) == 3 and {t["label"] for t in top} <= set(pred.classes)
    assert 0 < sum(t["probability"] for t in top) <= 1 + 1e-6


def test_an_old_run_trains_its_second_epoch(old_run, capsys):
    assert main(["train", "--resume", NAME, "--epochs", "2", "--quiet"]) == 0
    with open(old_run / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    status = json.loads((old_run / "status.json").read_text())
    assert status["state"] == "finished" and status["epochs_run"] == 2
    assert load_checkpoint(old_run / "last.pt")["epoch"] == 2


def test_a_fastnet_checkpoint_from_before_the_widening_still_loads_and_new_ones_record_their_widths():
    """FastNet's default widths went from 64/128/128 to 64/192/192; checkpoints saved before did not record them
    (their kwargs held only classes, channels and size), so they rebuild with the old ones, and a new checkpoint
    names its widths, so that a later change of the default cannot break it either."""
    from cnn_core.models.fastnet import FastNet
    from cnn_core.models.registry import saved_kwargs
    from cnn_core.runs.checkpoint import FORMAT, model_from_checkpoint

    base = {"num_classes": 10, "in_channels": 3, "input_size": 32}
    old = FastNet(10, 3, (64, 128, 128))
    ckpt = {"format": FORMAT, "model": {"name": "fastnet", "kwargs": dict(base)}, "state_dict": old.state_dict(),
            "classes": [str(i) for i in range(10)]}
    rebuilt = model_from_checkpoint(ckpt)
    assert rebuilt.fc.in_features == 128
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), old.state_dict().values()))

    recorded = saved_kwargs("fastnet", base)
    assert recorded == {**base, "widths": [64, 192, 192]}
    new = FastNet(10, 3)
    ckpt = {**ckpt, "model": {"name": "fastnet", "kwargs": recorded}, "state_dict": new.state_dict()}
    assert model_from_checkpoint(ckpt).fc.in_features == 192
    assert saved_kwargs("fastnet", {**base, "widths": [32, 64, 64]})["widths"] == [32, 64, 64]  # given ones win
    assert saved_kwargs("lenet5", base) == base  # models whose defaults never changed record what they did
