"""Training a run further (``fit(resume=RUN, epochs=N)``) and failed starts that must leave no run folder."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.runs.checkpoint import load_checkpoint
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows.run import train_run

DIGITS = TrainConfig(model="lenet5", dataset="digits", epochs=2, batch_size=64, lr=0.05, schedule="onecycle",
                     precision="fp32", seed=0)


def test_a_finished_run_trains_further_to_the_total_asked(runs):
    train_run(DIGITS, name="two")
    first = RunDir(runs / "two").metrics()
    summary = train_run(resume="two", epochs=4)
    run = RunDir(runs / "two")
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[:2] == first  # the first two epochs are kept
    assert summary["state"] == "finished" and summary["epochs_run"] == 4
    assert run.status()["state"] == "finished" and run.status()["epochs"] == 4 and run.config()["epochs"] == 4
    best = max(rows, key=lambda r: r["val_accuracy"])  # the first best epoch wins a tie (only "better" replaces)
    assert load_checkpoint(run.file(RunDir.BEST))["epoch"] == best["epoch"] == summary["best_epoch"]
    assert summary["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    # the added epochs run a fresh one-cycle schedule: epoch 3 starts at its warm-up rate, as epoch 1 did
    assert rows[2]["lr"] == pytest.approx(rows[0]["lr"]) and rows[1]["lr"] > rows[0]["lr"]
    last = load_checkpoint(run.file(RunDir.LAST))
    assert last["epoch"] == 4 and last["schedule_restarts"] == [2] and last["config"]["epochs"] == 4
    card = run.file(RunDir.CARD).read_text()
    assert "4 of 4" in card and "onecycle, restarted after epoch 2 (trained further)" in card


def test_an_extension_stopped_halfway_resumes_into_the_same_schedule(runs):
    cfg = DIGITS.replace(max_batches=6, schedule="cosine")
    train_run(cfg, name="straight")
    train_run(cfg, name="halted")
    train_run(resume="straight", epochs=5)
    stop = {"now": False}
    at_three = Hooks(epoch=lambda row: stop.update(now=row["epoch"] == 3), stop=lambda: stop["now"])
    halted = train_run(resume="halted", epochs=5, callbacks=[at_three])
    assert halted["state"] == "cancelled"
    train_run(resume="halted")  # the config says 5 now: a plain resume finishes the extension
    a, b = (load_checkpoint(runs / name / "last.pt") for name in ("straight", "halted"))
    assert a["epoch"] == b["epoch"] == 5 and a["schedule_restarts"] == b["schedule_restarts"] == [2]
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6), k
    lrs = [[r["lr"] for r in RunDir(runs / name).metrics()] for name in ("straight", "halted")]
    assert lrs[0] == lrs[1] and lrs[0][2] == lrs[0][0]  # epoch 3 restarted at the configured rate


def test_what_cannot_be_continued_says_so_in_one_line(runs):
    train_run(DIGITS.replace(max_batches=2), name="done")  # 2 x 2 steps: one-cycle over 4
    with pytest.raises(CnnError, match=r"has finished \(2 epochs\); .*--epochs N with N above 2"):
        train_run(resume="done")
    for epochs in (1, 2):
        with pytest.raises(CnnError, match="has trained 2 epochs already; .*more than 2"):
            train_run(resume="done", epochs=epochs)
    assert RunDir(runs / "done").config()["epochs"] == 2  # a refused request changes nothing
    empty = RunDir.create(runs, "empty", "lenet5", "digits")
    empty.write_config(DIGITS.to_dict())
    with pytest.raises(CnnError, match="run empty has no last.pt to continue from"):
        train_run(resume="empty", epochs=4)
    with pytest.raises(CnnError, match="epochs= extends a resumed run"):
        train_run(DIGITS, epochs=4)


@pytest.fixture
def made(monkeypatch):
    """Every RunDir.create call of the test, recorded (and still made): a failed start must make none."""
    calls = []
    real = RunDir.create.__func__

    def create(cls, *args, **kwargs):
        calls.append(args)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(RunDir, "create", classmethod(create))
    return calls


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


@pytest.mark.parametrize("change, said", [
    ({"dataset": "digitz"}, "unknown dataset 'digitz'"),
    ({"dataset": "folder:/nonexistent"}, "does not exist"),
    ({"dataset": "cifar10"}, "CIFAR-10 not found"),
    ({"model": "resnet18_pretrained"}, "unavailable"),
    ({"train_subset": 3}, "too small"),
])
def test_a_failed_start_never_makes_a_run_folder(runs, made, tmp_path, monkeypatch, change, said):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _offline)  # an absent cifar10 cannot be downloaded
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    empty = tmp_path / "no-datasets"
    empty.mkdir()
    with pytest.raises(CnnError, match=said):
        train_run(DIGITS.replace(**change), name="never", data_dir=empty)
    assert made == [] and not (runs.exists() and any(runs.iterdir()))


def test_a_folder_dataset_keeps_its_split_in_the_run(runs, tmp_path):
    from PIL import Image

    for c, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), (colour[0], i * 10, colour[2])).save(tmp_path / "photos" / c / f"{i}.png")
    cfg = TrainConfig(model="lenet5", dataset=f"folder:{tmp_path / 'photos'}", epochs=1, batch_size=8)
    summary = train_run(cfg, name="photos")
    split = RunDir(summary["run_dir"]).file(RunDir.SPLIT)
    assert split.is_file() and '"red"' in split.read_text()  # made before the folder, moved in with it


def test_a_finished_run_whose_extension_fails_to_start_stays_finished(runs, tmp_path):
    """Its photos deleted, a finished run asked for more epochs says why in one line and is left as it was:
    finished, with its own epochs (the attempt noted beside its status), and still resumable later."""
    import shutil

    from PIL import Image

    for c, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), (colour[0], i * 10, colour[2])).save(tmp_path / "photos" / c / f"{i}.png")
    train_run(TrainConfig(model="lenet5", dataset=f"folder:{tmp_path / 'photos'}", epochs=1, batch_size=8),
              name="gone")
    run = RunDir(runs / "gone")
    before = run.status()
    shutil.rmtree(tmp_path / "photos")
    with pytest.raises(CnnError, match="photos"):
        train_run(resume="gone", epochs=3)
    after = run.status()
    assert after["state"] == "finished" and after["test_accuracy"] == before["test_accuracy"]
    assert run.config()["epochs"] == 1 and "training further failed to start" in after["last_attempt"]
    assert run.has("best") and run.has("last")
