"""Before training: what a configuration will cost. Parameter count, batches per epoch and a time per epoch
measured by running a few real training steps (the same ``train_one_epoch`` as ``fit``) on the device in use,
so the estimate includes augmentation, precision and the optimizer, not a guess from FLOPs."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..config.train_config import TrainConfig
from ..engine.batches import Batches
from ..engine.device import device_name, pick_device, pick_precision, set_threads
from ..engine.prepared import prepare_data
from ..models.registry import build_model, count_parameters
from .loop import train_one_epoch
from .optim import make_optimizer, make_scheduler

VAL_COST = 1 / 3  # a forward pass costs about a third of forward + backward + step per image
# One measured step sees at most this many input pixels (64 images of 224x224): a bigger batch is measured
# on fewer images and scaled, so sizing up AlexNet at 224 px with batch 1,024 costs seconds, not minutes.
MAX_STEP_PIXELS = 64 * 224 * 224


@dataclass
class Estimate:
    model: str
    dataset: str
    params: int
    input_size: int
    channels: int
    classes: int
    train_images: int
    val_images: int
    batches_per_epoch: int
    device: str  # named for people: "CPU (2 threads)", "NVIDIA ..."
    precision: str
    seconds_per_batch: float | None = None  # None when not measured
    seconds_per_epoch: float | None = None  # training batches plus the validation pass
    measured_batch: int | None = None  # the batch the steps were timed on (smaller than the real one: scaled)
    measuring_seconds: float | None = None  # time spent in the timed steps themselves

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_epoch(cfg: TrainConfig, *, measure: bool = True, budget_seconds: float = 2.0,
                   data_dir: str | os.PathLike | None = None) -> Estimate:
    """Size up ``cfg`` on its dataset; with ``measure``, time a warm-up step and then as many steps as fit in
    ``budget_seconds`` (1 to 8). Runs in the caller's process: expect a few seconds for the large models."""
    set_threads()
    device = pick_device(cfg.device)
    amp = pick_precision(cfg.precision, device)
    prep = prepare_data(cfg, data_dir, device)
    model = build_model(cfg.model, len(prep.classes), prep.channels, prep.size, **cfg.extra)
    train_b = Batches(prep.x_train, prep.y_train, cfg.batch_size, prep.normalize(), shuffle=True,
                      augment=prep.augment if cfg.augment else None, seed=cfg.seed, max_batches=cfg.max_batches,
                      drop_single=True)
    n_batches = len(train_b)
    est = Estimate(cfg.model, cfg.dataset, count_parameters(model), prep.size, prep.channels, len(prep.classes),
                   len(prep.y_train), len(prep.y_val), n_batches, device_name(device),
                   str(amp).replace("torch.", "") if amp else "fp32")
    if not measure or n_batches == 0:
        return est
    import torch

    model = model.to(device, memory_format=torch.channels_last)
    measured = max(1, min(cfg.batch_size, MAX_STEP_PIXELS // (prep.size * prep.size)))
    train_b.batch_size = measured
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, n_batches * cfg.epochs)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and amp == torch.float16) else None

    def steps(k: int) -> float:
        train_b.max_batches = k
        start = time.perf_counter()
        train_one_epoch(model, train_b, optimizer, scheduler, device, amp, cfg.label_smoothing, scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    warm = steps(1)  # first step pays for allocator and kernel selection
    k = max(1, min(8, n_batches, int(budget_seconds / max(warm, 1e-3))))
    timed = steps(k)
    per_batch = timed / k * cfg.batch_size / measured  # time grows with the images per step
    est.measuring_seconds = warm + timed
    est.measured_batch = measured
    val_batches = est.val_images / cfg.batch_size
    max_val = cfg.max_batches * 1024 / cfg.batch_size if cfg.max_batches else val_batches  # fit caps val alike
    est.seconds_per_batch = per_batch
    est.seconds_per_epoch = per_batch * (n_batches + min(val_batches, max_val) * VAL_COST)
    return est
