"""The learning-rate finder: its suggestion trains, lies where the loss falls, leaves the model alone, and the sweep
stops when the loss explodes."""

from __future__ import annotations

import math

import pytest
import torch

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.models import build_model, make_config
from cnn_core.training.lr_curve import EXPLODE, Smoother, suggest
from cnn_core.training.lr_find import find_lr
from cnn_core.training.optim import make_optimizer
from cnn_core.workflows.run import train_run


def at(r, lr: float) -> float:
    """The smoothed loss at the rate ``lr`` of the curve."""
    return r.smoothed[r.lrs.index(lr)]


def test_the_suggestion_on_digits_trains_lenet5_to_90_percent_and_lies_where_the_loss_falls(runs):
    cfg = make_config(model="lenet5", dataset="digits", precision="fp32")  # SGD, momentum 0.9, batch 128
    r = find_lr(cfg)
    lo, hi = r.falling
    assert r.rule == "valley" and "valley rule" in r.why and r.suggestion == r.valley
    assert r.lrs[0] < lo <= r.suggestion <= hi <= r.minimum  # in the valley, before the lowest point
    # the smoothed loss falls over the valley, is no higher at the suggestion than where the valley begins (LeNet-5
    # with SGD starts on a plateau: equal within its noise, 0.001), and falls on from there
    assert at(r, hi) < at(r, lo) - 0.005
    assert at(r, r.suggestion) < at(r, lo) + 0.001
    assert min(at(r, v) for v in r.lrs if r.suggestion < v <= hi) < at(r, r.suggestion) - 0.005
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) and r.lrs == sorted(r.lrs)
    s = train_run(cfg.replace(lr=r.suggestion, epochs=10), name="found")
    assert s["test_accuracy"] >= 0.90, (r.suggestion, s["test_accuracy"])


def test_the_model_and_its_optimizer_are_left_untouched():
    cfg = TrainConfig(model="lenet5", dataset="digits", precision="fp32", batch_size=64)
    model = build_model("lenet5", 10, 1, 32)
    optimizer = make_optimizer(cfg, model)
    model(torch.randn(4, 1, 32, 32)).sum().backward()
    optimizer.step()  # the optimizer has a state (momentum buffers) to keep
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = {k: v["momentum_buffer"].clone() for k, v in enumerate(optimizer.state.values())}
    groups = [dict(g, params=None) for g in optimizer.param_groups]
    r = find_lr(cfg, model=model, steps=30)
    assert len(r.lrs) > 12
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(opt_state[k], v["momentum_buffer"]) for k, v in enumerate(optimizer.state.values()))
    assert [dict(g, params=None) for g in optimizer.param_groups] == groups


def test_the_sweep_stops_when_the_loss_explodes():
    cfg = TrainConfig(model="lenet5", dataset="digits", precision="fp32", optimizer="adam", batch_size=64)
    r = find_lr(cfg, steps=60, end=100.0)
    assert len(r.lrs) < 60 and r.lrs[-1] < 100
    assert "exploded" in r.stopped or "infinite" in r.stopped
    if "exploded" in r.stopped:
        assert r.smoothed[-1] > EXPLODE * min(r.smoothed)
    assert all(math.isfinite(v) for v in r.losses)


def test_both_rules_on_a_known_curve():
    """Flat and noisy, then a descent from 1e-3 to 0.1, then a blow-up: both rules land on the descent."""
    lrs = [1e-7 * 1e8 ** (i / 99) for i in range(100)]
    raw = [2.3 + 0.02 * math.sin(7 * i) if lr < 1e-3 else 2.3 - 0.9 * math.log10(lr / 1e-3) if lr < 0.1
           else 0.5 * 30 ** math.log10(lr / 0.1) for i, lr in enumerate(lrs)]
    smoother = Smoother(beta=0.7)
    s = suggest(lrs, [smoother.add(v) for v in raw])
    assert 1e-3 < s["valley"] < 0.2 and 1e-3 < s["steepest"] < 0.2
    assert s["falling"][0] <= s["valley"] <= s["falling"][1] <= s["minimum"]


def test_bad_ranges_and_a_curve_too_short_are_one_line_errors():
    cfg = TrainConfig(model="lenet5", dataset="digits")
    with pytest.raises(CnnError, match="the rates must rise"):
        find_lr(cfg, start=1.0, end=0.1)
    with pytest.raises(CnnError, match="steps must be 20..10000"):
        find_lr(cfg, steps=5)
    with pytest.raises(CnnError, match="rule must be one of valley, steepest"):
        find_lr(cfg, rule="fastest")
    with pytest.raises(CnnError, match="too soon to suggest a rate"):
        suggest([1e-3, 1e-2, 1e-1], [2.0, 1.0, 9.0])


def test_no_course_datasets_is_one_line(tmp_path):
    with pytest.raises(CnnError) as e:
        find_lr(TrainConfig(model="lenet5", dataset="mnist"), data_dir=tmp_path / "empty")
    assert "\n" not in str(e.value) and "mnist" in str(e.value)
