"""The learning-rate finder (Smith 2015, "Cyclical learning rates", section 3.3; fastai's ``lr_find``): train a
copy of the model for about 100 mini-batches while the rate rises exponentially from 1e-7 to 10, and watch the
loss; ``lr_curve`` smooths it and suggests a rate (and says how).

It trains with the engine's own data (``prepare_data``, ``Batches`` with the config's augmentation), optimizer
(``make_optimizer``: the config's optimizer, momentum and weight decay) and step (``loop.train_step``), so the
rate it suggests is one for that training. The model given (if any) and its optimizer are never touched: the
finder trains a deep copy (else a fresh model, as ``fit`` would start it) with an optimizer of its own.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..engine.batches import Batches
from ..engine.device import pick_device, pick_precision, set_threads
from ..engine.prepared import Prepared, prepare_data
from ..models.registry import build_model
from .loop import Diverged, train_step
from .lr_curve import END, START, STEPS, WHY, LrFindResult, Smoother, check_range, suggest
from .optim import make_optimizer


def find_lr(cfg: TrainConfig, *, model: nn.Module | None = None, data_dir: str | os.PathLike | None = None,
            steps: int = STEPS, start: float = START, end: float = END, rule: str = "valley",
            on_step: Callable[[int, int], None] | None = None) -> LrFindResult:
    """Sweep the learning rate from ``start`` to ``end`` over ``steps`` batches of ``cfg``'s training data and
    suggest one. ``model`` (optional) is copied, never trained. ``on_step(step, steps)`` after each batch."""
    check_range(steps, start, end, rule)
    set_threads()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    amp = pick_precision(cfg.precision, device)
    prep = prepare_data(cfg, data_dir, device)
    notes = list(prep.dataset.notes)
    net = copy.deepcopy(model) if model is not None else _fresh_model(cfg, prep, notes)
    net = net.to(device, memory_format=torch.channels_last).train()
    batches = Batches(prep.x_train, prep.y_train, cfg.batch_size, prep.normalize(), shuffle=True,
                      augment=prep.augment if cfg.augment else None, seed=cfg.seed, drop_single=True)
    if len(batches) == 0:
        raise CnnError(f"dataset {cfg.dataset} has no training images to find a learning rate on")
    # a model's parts keep their own rates relative to --lr (a pretrained backbone's fraction): scale them all
    optimizer = make_optimizer(cfg.replace(lr=start), net)
    base = [g["lr"] for g in optimizer.param_groups]
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and amp == torch.float16) else None
    lrs, losses, smoothed, smoother, stopped = [], [], [], Smoother(), f"reached {end:g}"
    for i, (x, y) in enumerate(_endless(batches, steps)):
        lr = start * (end / start) ** (i / (steps - 1))
        for g, b in zip(optimizer.param_groups, base):
            g["lr"] = b * lr / start
        try:
            loss, _ = train_step(net, x, y, optimizer, device, amp, cfg.label_smoothing, scaler, i + 1)
        except Diverged as e:
            if e.advice:  # the data, not the rate: say so
                raise CnnError(f"{e}; {e.advice}") from None
            stopped = f"the loss became infinite at {lr:.2g}"
            break
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(smoother.add(loss))
        if on_step is not None:
            on_step(i + 1, steps)
        if smoother.exploded(smoothed[-1]):
            stopped = f"the loss exploded at {lr:.2g} (over {smoother.explode:g}x its lowest)"
            break
    s = suggest(lrs, smoothed)
    return LrFindResult(cfg.model, cfg.dataset, cfg.optimizer, cfg.batch_size, lrs, losses, smoothed, s[rule],
                        rule, WHY[rule], s["valley"], s["steepest"], s["falling"], s["minimum"], stopped,
                        round(time.perf_counter() - t0, 2), notes)


def _fresh_model(cfg: TrainConfig, prep: Prepared, notes: list[str]) -> nn.Module:
    """The model ``fit`` would start from: seeded, pretrained weights loaded, data-dependent layers set."""
    net = build_model(cfg.model, len(prep.classes), prep.channels, prep.size, **cfg.extra)
    if hasattr(net, "load_pretrained"):
        notes.append(net.load_pretrained())
    if hasattr(net, "init_from_data"):
        net.init_from_data(prep.normalize()(prep.x_train[:5000]))
    return net


def _endless(batches: Batches, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches, epoch after epoch when one epoch has fewer (digits: 11 batches of 128)."""
    done, epoch = 0, 0
    while True:
        batches.set_epoch(epoch)
        for xy in batches:
            yield xy
            done += 1
            if done == steps:
                return
        epoch += 1
