"""Real (short) training runs on the embedded digits dataset."""

import json

import pytest
import torch
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.checkpoint import load_checkpoint, model_from_checkpoint
from cnn_core.runs.rundir import METRIC_FIELDS, RunDir
from cnn_core.training.loop import Diverged
from cnn_core.workflows.run import train_run


def test_digits_run_learns_and_writes_its_files(digits_run):
    status = json.loads((digits_run / "status.json").read_text())
    assert status["state"] == "finished"
    assert status["test_accuracy"] > 0.85  # chance is 0.10
    for f in ("config.json", "metrics.csv", "last.pt", "best.pt"):
        assert (digits_run / f).is_file()
    rows = RunDir(digits_run).metrics()
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    assert set(METRIC_FIELDS) <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert status["best_epoch"] == best["epoch"] and status["best_val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert not (digits_run / "progress.json").exists()


def test_checkpoint_describes_itself_and_round_trips_to_identical_logits(digits_run):
    ckpt = load_checkpoint(digits_run / "best.pt")
    assert ckpt["model"]["name"] == "lenet5" and ckpt["classes"] == [str(i) for i in range(10)]
    assert ckpt["input"]["channels"] == 1 and len(ckpt["input"]["mean"]) == 1
    assert ckpt["config"]["dataset"] == "digits" and isinstance(ckpt["config"], dict)
    model = model_from_checkpoint(ckpt)
    x = torch.randn(5, 1, ckpt["input"]["size"], ckpt["input"]["size"])
    again = model_from_checkpoint(load_checkpoint(digits_run / "best.pt"))
    assert torch.equal(model(x), again(x))
    last = load_checkpoint(digits_run / "last.pt")
    assert last["optimizer"]["state"] and last["scheduler"]["last_epoch"] > 0 and last["epoch"] == 12


def test_predictor_uses_training_preprocessing(digits_run):
    from PIL import Image

    from cnn_core.data import load_dataset

    p = Predictor.from_run(digits_run)
    ds = load_dataset("digits")
    images = [Image.fromarray(ds.x_test[i, 0].numpy(), "L") for i in range(60)]
    top = p.top_k(images, k=3)
    acc = sum(t[0]["label"] == ds.classes[int(ds.y_test[i])] for i, t in enumerate(top)) / 60
    assert acc > 0.8
    assert all(abs(sum(e["probability"] for e in p.top_k([im], 10)[0]) - 1) < 1e-3 for im in images[:3])


def _weights(path):
    return load_checkpoint(path)["state_dict"]


def test_resume_continues_with_identical_state(runs):
    cfg = TrainConfig(model="simple_cnn", dataset="digits", epochs=4, batch_size=128, lr=0.01, optimizer="adam",
                      schedule="onecycle", augment=True, seed=1)
    full = train_run(cfg, name="full")
    stop = {"now": False}

    def after_two(row):
        stop["now"] = row["epoch"] == 2

    part = train_run(cfg, name="part", callbacks=[Hooks(epoch=after_two, stop=lambda: stop["now"])])
    assert part["state"] == "cancelled"
    assert load_checkpoint(runs / "part" / "last.pt")["epoch"] == 2
    resumed = train_run(TrainConfig(), resume="part")
    assert resumed["epochs_run"] == 4 and resumed["run"] == "part"
    a, b = _weights(runs / "full" / "last.pt"), _weights(runs / "part" / "last.pt")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert [r["epoch"] for r in RunDir(runs / "part").metrics()] == [1, 2, 3, 4]
    assert resumed["test_accuracy"] == pytest.approx(full["test_accuracy"])


def test_divergence_stops_the_run_and_keeps_best(runs):
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=6, lr=10.0, momentum=0.9, schedule="none",
                      weight_decay=0.0, precision="fp32")
    with pytest.raises(Diverged, match="Lower the learning rate"):
        train_run(cfg, name="boom")
    status = json.loads((runs / "boom" / "status.json").read_text())
    assert status["state"] == "diverged" and "learning rate" in status["message"]
    if (runs / "boom" / "best.pt").exists():  # if an epoch finished first, its best.pt holds finite weights
        sd = _weights(runs / "boom" / "best.pt")
        assert all(torch.isfinite(v.float()).all() for v in sd.values())


def test_bf16_and_fp32_agree_on_a_short_run(runs):
    from cnn_core.engine.device import cpu_has_bf16, pick_precision

    if not cpu_has_bf16():  # no native bf16: auto must then choose plain fp32, which is all there is to check
        assert pick_precision("auto", torch.device("cpu")) is None
        return
    base = TrainConfig(model="simple_cnn", dataset="digits", epochs=3, batch_size=64, lr=0.003, optimizer="adam",
                       seed=2)
    a = train_run(base.replace(precision="fp32"), name="fp32")
    b = train_run(base.replace(precision="bf16"), name="bf16")
    la = [r["train_loss"] for r in RunDir(runs / "fp32").metrics()]
    lb = [r["train_loss"] for r in RunDir(runs / "bf16").metrics()]
    assert all(abs(x - y) < 0.08 * max(x, 0.2) + 0.03 for x, y in zip(la, lb)), (la, lb)
    assert abs(a["test_accuracy"] - b["test_accuracy"]) < 0.04
    assert b["precision"] == "bfloat16" and a["precision"] == "fp32"


def test_early_stopping_with_patience(runs):
    """--early-stop 2: the run stops two epochs after its best, keeps that epoch's best.pt, and its status, its
    summary and its model card say why it stopped."""
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=30, lr=1e-5, optimizer="sgd", schedule="none",
                      patience=2, momentum=0.0)
    s = train_run(cfg, name="patient")
    assert s["state"] == "stopped_early" and s["epochs_run"] < 30
    assert s["epochs_run"] == s["best_epoch"] + 2
    why = (f"stopped early at epoch {s['epochs_run']}: no better validation accuracy for 2 epochs; best.pt is "
           f"epoch {s['best_epoch']}")
    run = RunDir(runs / "patient")
    assert s["message"] == why and run.status()["message"] == why and run.status()["state"] == "stopped_early"
    assert load_checkpoint(run.checkpoint("best"))["epoch"] == s["best_epoch"]
    assert load_checkpoint(run.checkpoint("last"))["epoch"] == s["epochs_run"]
    card = run.file(RunDir.CARD).read_text()
    assert f"\nS{why[1:]}.\n" in card
    assert "| early stopping | after 2 epoch(s) without a better validation accuracy |" in card


def test_a_run_that_finishes_says_nothing_of_stopping(digits_run):
    status = RunDir(digits_run).status()
    assert status["state"] == "finished" and status["message"] == ""
    assert "early" not in RunDir(digits_run).file(RunDir.CARD).read_text().split("## Data")[0]


def test_run_names_are_unique_not_overwritten(runs):
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=1, max_batches=2)
    a = train_run(cfg, name="same")
    b = train_run(cfg, name="same")
    assert a["run"] == "same" and b["run"] == "same-2"


def test_onecycle_keeps_the_momentum_given():
    """OneCycleLR cycles momentum (0.95 -> 0.85 -> 0.95) unless told not to, which would silently replace
    --momentum and triple the effective step size while the learning rate anneals."""
    from torch import nn

    from cnn_core.training.optim import make_optimizer, make_scheduler

    cfg = TrainConfig(model="lenet5", dataset="digits", optimizer="sgd", lr=0.1, momentum=0.8, schedule="onecycle")
    opt = make_optimizer(cfg, nn.Linear(4, 2))
    sched = make_scheduler(cfg, opt, 20)
    lrs = []
    for _ in range(20):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[0]["momentum"] == 0.8
    assert max(lrs) > 0.09 and lrs[-1] < 0.01  # the learning rate itself still rises and anneals


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "none"])
def test_every_schedule_steps_through_a_few_batches(schedule):
    """One more epoch of a small folder is a schedule of a handful of steps; OneCycleLR divided by zero at 4."""
    from torch import nn

    from cnn_core.training.optim import make_optimizer, make_scheduler

    cfg = TrainConfig(optimizer="sgd", lr=0.1, schedule=schedule)
    for steps in range(1, 9):
        opt = make_optimizer(cfg, nn.Linear(4, 2))
        sched = make_scheduler(cfg, opt, steps)
        for _ in range(steps):
            assert 0 <= opt.param_groups[0]["lr"] <= 0.1  # the rate each step trains with
            opt.step()
            sched.step()


def test_fused_sgd_steps_match_the_per_tensor_ones_bit_for_bit():
    """make_optimizer uses the fused step; the README relies on it changing no result (FastNet's row)."""
    from cnn_core.models import build_model
    from cnn_core.training.optim import make_optimizer

    cfg = TrainConfig(model="fastnet", dataset="cifar10", lr=0.75, momentum=0.85, weight_decay=1.3e-3)
    torch.manual_seed(0)
    fused_model = build_model("fastnet", 10, 3, 32)
    plain_model = build_model("fastnet", 10, 3, 32)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = make_optimizer(cfg, fused_model)
    assert all(g["fused"] for g in fused.param_groups)
    plain_groups = make_optimizer(cfg, plain_model).param_groups
    plain = torch.optim.SGD([{k: v for k, v in g.items() if k != "fused"} for g in plain_groups], lr=cfg.lr,
                            momentum=cfg.momentum, nesterov=True, foreach=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        for a, b in zip(fused_model.parameters(), plain_model.parameters()):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.equal(a, b)
