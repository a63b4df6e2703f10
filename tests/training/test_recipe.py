"""The fast-training recipe's pieces (issue 19), each usable by any model: alternating flips and mirrored-border
crops (engine.batches), shifted test-time views (engine.forward), lookahead (training.lookahead), the triangular
schedule (training.optim) and FastNet's whitening bias that stops learning after its first epochs."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from hooks_util import Hooks

from cnn_core.config import TrainConfig
from cnn_core.engine.batches import Augment, alternate_flips, shift_batch
from cnn_core.engine.forward import tta_logits
from cnn_core.models.registry import build_model
from cnn_core.runs.checkpoint import load_checkpoint
from cnn_core.training.lookahead import Lookahead
from cnn_core.training.optim import make_optimizer, make_scheduler, triangle
from cnn_core.workflows.run import train_run


def test_reflect_crop_equals_torchvision_reflect_padding():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    dy, dx = torch.randint(0, 5, (16,)), torch.randint(0, 5, (16,))
    got = shift_batch(x, 2, dy, dx, reflect=True)
    for i in range(16):
        ref = TF.crop(TF.pad(x[i], [2], padding_mode="reflect"), int(dy[i]), int(dx[i]), 32, 32)
        assert torch.equal(got[i], ref)
    assert not torch.equal(got, shift_batch(x, 2, dy, dx))  # zeros and mirrored borders differ


def test_alternating_flips_show_every_image_both_ways_every_two_epochs():
    idx = torch.arange(5000)
    odd, even = alternate_flips(idx, seed=0, epoch=1), alternate_flips(idx, seed=0, epoch=2)
    assert bool((odd ^ even).all())  # each image mirrored in exactly one of two consecutive epochs
    assert torch.equal(odd, alternate_flips(idx, seed=0, epoch=3))  # the same coin every odd epoch
    assert 0.45 < odd.float().mean() < 0.55  # a fair coin over the dataset
    assert (odd != alternate_flips(idx, seed=1, epoch=1)).float().mean() > 0.3  # the seed draws other coins
    # through Augment: which images of a batch are mirrored depends on their indices, not on the batch's order
    x = torch.arange(8 * 8, dtype=torch.uint8).view(1, 1, 8, 8).repeat(6, 1, 1, 1)
    aug = Augment(pad=0, flip=True, flip_mode="alternate")
    pick = torch.tensor([4, 9, 17, 23, 31, 42])
    out = aug(x, torch.Generator().manual_seed(0), idx=pick, epoch=1)
    flipped = [bool(torch.equal(o, x[0].flip(-1))) for o in out]
    assert flipped == alternate_flips(pick, 0, 1).tolist()


def test_shifted_test_time_views_are_the_mean_of_six_forward_passes():
    model = build_model("fastnet", 10, 3, 32).eval()
    x = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        def mirrored(v):
            return (model(v) + model(v.flip(-1))) / 2
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = (mirrored(padded[..., :32, :32]) + mirrored(padded[..., 2:, 2:])) / 2
        want = (mirrored(x) + shifted) / 2
        assert torch.allclose(tta_logits(model, x, shift=1), want, atol=1e-5)
        assert torch.allclose(tta_logits(model, x), mirrored(x), atol=1e-5)
        # a split's large batch goes one view at a time: the same numbers
        big = torch.randn(70, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        assert torch.allclose(tta_logits(model, big, 1)[:3], tta_logits(model, big[:3], 1), atol=1e-5)


def test_lookahead_pulls_the_weights_back_to_their_tightening_average():
    model = torch.nn.Linear(2, 1, bias=False)
    ahead = Lookahead(total=100, every=5, start=0.25, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
        for step in range(1, 25):  # before a quarter of training: nothing happens
            ahead.after_step(model, step)
        assert ahead.average is None
        ahead.after_step(model, 25)  # the first update takes the weights as they are
        assert torch.equal(ahead.average[0], model.weight)
        model.weight.fill_(3.0)
        ahead.after_step(model, 27)  # not a multiple of every: untouched
        assert float(model.weight[0, 0]) == 3.0
        ahead.after_step(model, 30)
        rho = 0.9 ** 5 * 0.3 ** 3
        assert float(model.weight[0, 0]) == pytest.approx(rho * 1 + (1 - rho) * 3, rel=1e-6)
        model.weight.fill_(7.0)
        ahead.end_epoch(model)  # the epoch ends on the average
        assert float(model.weight[0, 0]) == pytest.approx(rho * 1 + (1 - rho) * 3, rel=1e-6)


def test_triangle_schedule_rises_to_the_peak_and_ends_above_zero():
    cfg = TrainConfig(model="lenet5", schedule="triangle", lr=0.4)
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.4 * 0.2) and max(lrs) == pytest.approx(0.4, rel=0.02)
    assert lrs.index(max(lrs)) == 23 and lrs[-1] == pytest.approx(0.4 * 0.07)
    assert triangle(0.0) == 0.2 and triangle(0.23) == 1.0 and triangle(1.0) == pytest.approx(0.07)


def test_fastnet_whitening_bias_learns_only_in_its_first_epochs(runs):
    seen = []
    cfg = TrainConfig(model="fastnet", dataset="digits", epochs=3, batch_size=64, lr=0.2, max_batches=3,
                      precision="fp32", extra={"whiten_bias_epochs": 1})
    # the bias after each epoch, read from last.pt: it moves in epoch 1 and never after
    train_run(cfg, name="frozen", callbacks=[Hooks(epoch=lambda row: seen.append(
        load_checkpoint(runs / "frozen" / "last.pt")["state_dict"]["whiten.bias"].clone()))])
    assert len(seen) == 3 and seen[0].abs().sum() > 0
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])


def test_a_lookahead_run_halted_and_resumed_ends_as_an_unhalted_one(runs):
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=4, batch_size=64, lr=0.05, schedule="triangle",
                      lookahead=True, augment=True, flip_mode="alternate", crop_fill="reflect", max_batches=10,
                      precision="fp32", seed=0)
    train_run(cfg, name="straight")
    stop = {"now": False}
    halted = train_run(cfg, name="halted", callbacks=[Hooks(epoch=lambda row: stop.update(now=row["epoch"] == 2),
                                                            stop=lambda: stop["now"])])
    assert halted["state"] == "cancelled"
    assert load_checkpoint(runs / "halted" / "last.pt")["lookahead"]["average"] is not None
    train_run(resume="halted")
    a, b = (load_checkpoint(runs / name / "last.pt") for name in ("straight", "halted"))
    assert a["epoch"] == b["epoch"] == 4
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-6), k
    assert load_checkpoint(runs / "straight" / "best.pt")["lookahead"] is None  # best.pt stays small
