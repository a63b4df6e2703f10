"""Training as plain functions: ``fit(cfg, ...)`` wires ``train_one_epoch`` and ``evaluate`` with callbacks, so
the same code runs from the CLI, the app's worker and a GPU server, and never imports a UI."""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints as ck
from . import distributed, modelcard, tblog
from .config import TrainConfig
from .data import Dataset, channel_stats, load_dataset, stratified_split
from .engine import (
    Augment,
    Batches,
    Normalize,
    augment_for,
    autocast,
    device_name,
    pick_device,
    pick_precision,
    set_threads,
)
from .errors import CnnError
from .inference import split_report
from .models import build_model, count_parameters, get_spec


class Diverged(CnnError):
    """The loss became NaN or infinite. ``advice``: what to change (default: the learning rate)."""

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


class Cancelled(Exception):
    """should_stop() said so; the last checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------- data

@dataclass
class Prepared:
    """A dataset split for one run and moved to the training device, with everything the model needs."""

    dataset: Dataset
    classes: list[str]
    channels: int
    size: int
    mean: list[float]
    std: list[float]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    augment: Augment

    def normalize(self) -> Normalize:
        return Normalize(tuple(self.mean), tuple(self.std), self.size)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise CnnError(f"split must be train, val or test, not {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def prepare_data(cfg: TrainConfig, data_dir: str | os.PathLike | None = None,
                 device: torch.device | None = None, run_dir: Path | None = None) -> Prepared:
    """Load the dataset, carve the seeded stratified validation split (and training subset), compute the
    normalisation from the training images only, and place the uint8 tensors on ``device``. With ``run_dir``,
    a dataset that splits itself (folder:PATH) keeps its split in the run's split.json and reuses it."""
    spec = get_spec(cfg.model)
    size = spec.pick_size(None, cfg.input_size) if ":" in cfg.dataset else None
    ds = load_dataset(cfg.dataset, data_dir, image_size=size or spec.default_size,
                      split_file=Path(run_dir) / "split.json" if run_dir is not None else None)
    size = size or spec.pick_size(ds.native_size, cfg.input_size)
    if len(ds.classes) < 2:
        raise CnnError(f"dataset {cfg.dataset} has {len(ds.classes)} class; a classifier needs at least two")
    if ds.x_val is not None:  # the dataset's own validation split (a folder's 8:1:1) is used as it is
        keep, val = np.arange(len(ds.y_train)), np.arange(0)
    else:
        keep, val = stratified_split(ds.y_train, cfg.val_fraction, cfg.seed)
    if cfg.train_subset and cfg.train_subset < len(keep):
        sub, _ = stratified_split(ds.y_train[keep], 1 - cfg.train_subset / len(keep), cfg.seed)
        keep = keep[sub]
    keep_t, val_t = torch.from_numpy(keep), torch.from_numpy(val)
    x_train = ds.x_train[keep_t]
    if spec.mean_std is not None:
        mean, std = [list(v) for v in spec.mean_std]
        if len(mean) != ds.channels:  # grayscale into an RGB-trained net: one channel with the average stats
            mean, std = [sum(mean) / len(mean)] * ds.channels, [sum(std) / len(std)] * ds.channels
    else:
        mean, std = channel_stats(x_train)
    dev = device or torch.device("cpu")
    x_val, y_val = (ds.x_val, ds.y_val) if ds.x_val is not None else (ds.x_train[val_t], ds.y_train[val_t])
    return Prepared(ds, ds.classes, ds.channels, size, mean, std,
                    x_train.to(dev), ds.y_train[keep_t].to(dev),
                    x_val.to(dev), y_val.to(dev),
                    ds.x_test.to(dev), ds.y_test.to(dev),
                    augment_for(ds.flip, ds.native_size, cfg.crop_padding))


# ---------------------------------------------------------------------------------------- optimisation parts

def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # a model may give parts of itself their own learning rate (a pretrained backbone learns slower than its head)
    parts = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else [{"params": model.parameters()}]
    groups = []
    for part in parts:
        params = [p for p in part["params"] if p.requires_grad]
        lr = {"lr": part["lr"]} if "lr" in part else {}
        # no weight decay on biases and batch-norm parameters: L2 on them only fights the normalisation
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay, **lr},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **lr}]
    # one fused kernel per step instead of a dozen small ops per parameter group: LeNet-5's SGD step took 0.18
    # ms against 0.50 ms (throwaway timing script); Adamax has no fused form
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = {"fused": True} if cfg.optimizer != "adamax" and devices <= {"cpu", "cuda"} else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, **fused)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}[cfg.optimizer]
    return cls(groups, lr=cfg.lr, **fused)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch. step: x0.1 at 50% and 75% of training."""
    total_steps = max(1, total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [total_steps // 2, total_steps * 3 // 4], 0.1)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total_steps,
                                                   pct_start=0.25, anneal_strategy="linear",
                                                   cycle_momentum=False)  # keep --momentum as given
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


# -------------------------------------------------------------------------------------------------- epochs

@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: int
    seconds: float


def train_one_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
                    amp: torch.dtype | None = None, label_smoothing: float = 0.0,
                    scaler: torch.amp.GradScaler | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    on_batch: Callable[[int, int, float], None] | None = None) -> EpochResult:
    model.train()
    start = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    n = len(batches)
    for i, (x, y) in enumerate(batches):
        if should_stop is not None and should_stop():
            raise Cancelled()
        with autocast(device, amp):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        lv = loss.item()
        if not math.isfinite(lv):
            if not bool(torch.isfinite(x).all()):  # not the optimiser's fault: no learning rate fixes this
                raise Diverged(f"the input images held NaN or infinite values at batch {i + 1}",
                               advice="Check the dataset and its normalisation (a zero standard deviation?)")
            raise Diverged(f"loss became {lv} at batch {i + 1}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        loss_sum += lv * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(i + 1, n, loss_sum / seen)
    seconds = time.perf_counter() - start
    return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1), seen, seconds)


@torch.inference_mode()
def predict_logits(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
                   tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (float32, on the CPU) and labels; with ``tta`` the mean of the image and its mirror."""
    model.eval()
    outs, ys = [], []
    for x, y in batches:
        with autocast(device, amp):
            logits = model(x).float()
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        outs.append(logits.cpu())
        ys.append(y.cpu())
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, batches: Batches, device: torch.device, amp: torch.dtype | None = None,
             tta: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    logits, y = predict_logits(model, batches, device, amp, tta)
    if len(y) == 0:
        return float("nan"), 0.0
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def eval_batches(prep: Prepared, split: str, batch_size: int = 1024) -> Batches:
    x, y = prep.split(split)
    return Batches(x, y, batch_size, prep.normalize())


# ----------------------------------------------------------------------------------------------------- fit

def checkpoint_payload(cfg: TrainConfig, prep: Prepared, model: nn.Module, epoch: int,
                       history: list[dict], optimizer: torch.optim.Optimizer | None,
                       scheduler: torch.optim.lr_scheduler.LRScheduler | None, best: float) -> dict[str, Any]:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format": ck.FORMAT,
        "model": {"name": cfg.model, "kwargs": {"num_classes": len(prep.classes), "in_channels": prep.channels,
                                                "input_size": prep.size, **cfg.extra}},
        "state_dict": state,
        "classes": list(prep.classes),
        "input": {"size": prep.size, "channels": prep.channels, "mean": list(prep.mean), "std": list(prep.std)},
        "config": cfg.to_dict(),
        "metrics": history,
        "epoch": epoch,
        "best_val_accuracy": best,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "torch_version": str(torch.__version__),
        "rng": torch.get_rng_state(),  # dropout draws continue exactly after a resume
    }


def _status(run_dir: Path, /, **fields: Any) -> None:
    if not distributed.is_main():
        return  # rank 0 keeps the run's files
    st = ck.read_json(run_dir / "status.json")
    st.update(fields, updated=time.time())
    ck.write_json(run_dir / "status.json", st)


def _final_status(run_dir: Path, /, **fields: Any) -> None:
    """A run's last words, if the disk takes them: a full disk must not hide the error that ended the run."""
    try:
        _status(run_dir, **fields)
    except CnnError:
        pass


class _Progress:
    """Throttled progress.json for the app, and the caller's on_batch."""

    def __init__(self, run_dir: Path, on_batch: Callable[[dict], None] | None) -> None:
        self.run_dir, self.on_batch, self.last = run_dir, on_batch, 0.0
        self.epoch, self.epochs, self.start = 0, 0, time.perf_counter()

    def __call__(self, i: int, n: int, loss: float) -> None:
        if not distributed.is_main():
            return
        info = {"epoch": self.epoch, "epochs": self.epochs, "batch": i, "batches": n, "loss": loss,
                "elapsed": time.perf_counter() - self.start}
        if self.on_batch is not None:
            self.on_batch(info)
        now = time.monotonic()
        if now - self.last >= 1.0 or i == n:
            self.last = now
            try:
                ck.write_json(self.run_dir / "progress.json", {**info, "updated": time.time()})
            except CnnError:
                pass  # progress is a nicety; a full disk is reported where it matters (checkpoints)


def fit(cfg: TrainConfig, *, name: str | None = None, resume: str | os.PathLike | None = None,
        root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
        on_epoch_end: Callable[[dict], None] | None = None, on_batch: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None,
        tensorboard: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into a run folder (or continue ``resume`` from its last.pt) and return the summary.
    ``tensorboard``: also write the per-epoch scalars as TensorBoard event files into the run folder."""
    say = log or (lambda _msg: None)
    if tensorboard:
        tblog.require_tensorboard()  # before a run folder is made
    set_threads()
    ddp = distributed.setup()  # started by torchrun: join its process group; otherwise a single process
    if not ddp.is_main:
        say, on_epoch_end, on_batch, tensorboard = (lambda _msg: None), None, None, False  # rank 0 reports
    run_dir, cfg = ddp.from_main(_open_run, cfg, name, resume, root)
    tb = tblog.TensorBoardLogger(run_dir, then=on_epoch_end) if tensorboard else None
    try:
        with ddp.peer_failures():  # a distributed job whose other process died: say so in one line
            return _fit(cfg, run_dir, bool(resume), data_dir, tb or on_epoch_end, on_batch, should_stop, say, ddp)
    except Diverged as e:
        kept = "best.pt is kept" if (run_dir / "best.pt").is_file() else "no epoch finished, so nothing was saved"
        advice = e.advice or (f"Lower the learning rate (it was {cfg.lr:g}) or use a schedule with warm-up "
                              "(onecycle)")
        msg = f"diverged: {e}; {kept}. {advice}"
        _final_status(run_dir, state="diverged", message=msg, pid=None)
        raise Diverged(msg, e.advice) from None
    except Cancelled:
        _final_status(run_dir, state="cancelled", message="cancelled; resume it to continue from last.pt", pid=None)
        return {"run": run_dir.name, "run_dir": str(run_dir), "state": "cancelled",
                **ck.read_json(run_dir / "status.json")}
    except torch.cuda.OutOfMemoryError:
        pass  # reported below, outside this block: the error must not keep the failed step's tensors alive
    except CnnError as e:
        _final_status(run_dir, state="failed", message=str(e), pid=None)
        raise
    except BaseException as e:
        _final_status(run_dir, state="failed", message=f"{type(e).__name__}: {e}"[:300], pid=None)
        raise
    finally:
        if tb is not None:
            tb.close()
    gc.collect()  # the model, optimizer and batches of the failed run are unreachable now; hand memory back
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    msg = (f"the GPU ran out of memory at batch size {cfg.batch_size}; try a smaller batch size "
           f"(e.g. {max(1, cfg.batch_size // 2)})")
    _final_status(run_dir, state="failed", message=msg, pid=None)
    raise CnnError(msg)


def _open_run(cfg: TrainConfig, name: str | None, resume: str | os.PathLike | None,
              root: str | os.PathLike | None) -> tuple[Path, TrainConfig]:
    """The run folder (new, or the one to resume) and its config; in a distributed job rank 0 does this."""
    root_path = ck.runs_root(root)
    ck.clean_stale_tmp(root_path)
    if resume:
        run_dir = ck.resolve_run(resume, root_path)
        saved = ck.read_json(run_dir / "config.json")
        if not saved:
            raise CnnError(f"run {run_dir.name} has no readable config.json; it cannot be resumed")
        cfg = TrainConfig.from_dict(saved)
        distributed.per_rank_batch(cfg.batch_size)
    else:
        get_spec(cfg.model)  # a typo fails before a folder is made
        distributed.per_rank_batch(cfg.batch_size)  # and so does a batch N processes cannot split evenly
        run_dir = ck.new_run_dir(root_path, name, cfg.model, cfg.dataset)
        ck.write_json(run_dir / "config.json", cfg.to_dict())
    return run_dir, cfg


def _fit(cfg: TrainConfig, run_dir: Path, resuming: bool, data_dir: str | os.PathLike | None,
         on_epoch_end: Callable[[dict], None] | None, on_batch: Callable[[dict], None] | None,
         should_stop: Callable[[], bool] | None, say: Callable[[str], None],
         ddp: distributed.Dist) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    amp = pick_precision(cfg.precision, device)
    _status(run_dir, state="running", pid=os.getpid(), message="loading data", device=device_name(device))
    t_data = time.perf_counter()
    with ddp.local_main_first():  # one process per machine builds a missing dataset cache
        prep = prepare_data(cfg, data_dir, device, run_dir)
    data_seconds = time.perf_counter() - t_data
    for note in prep.dataset.notes:
        say(note)
    model = build_model(cfg.model, len(prep.classes), prep.channels, prep.size, **cfg.extra)
    if hasattr(model, "load_pretrained") and not (resuming and (run_dir / "last.pt").is_file()):
        say(model.load_pretrained())  # ImageNet weights; a resumed run continues from its own last.pt instead
    model = ddp.sync_batchnorm(model.to(device, memory_format=torch.channels_last), device)
    train_b = Batches(prep.x_train, prep.y_train, cfg.batch_size, prep.normalize(), shuffle=True,
                      augment=prep.augment if cfg.augment else None, seed=cfg.seed, max_batches=cfg.max_batches,
                      drop_single=True)
    ddp.shard_train(train_b)  # --batch-size is global: each rank takes its share of every step
    val_b = eval_batches(prep, "val")
    if cfg.max_batches:
        val_b.max_batches = cfg.max_batches
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, cfg.epochs * len(train_b))
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and amp == torch.float16) else None

    start_epoch, best, best_epoch, history = 1, -1.0, 0, []
    if resuming and ddp.from_main((run_dir / "last.pt").is_file):
        last = ddp.from_main(ck.load_checkpoint, run_dir / "last.pt")
        model.load_state_dict(last["state_dict"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["scheduler"])
        if isinstance(last.get("rng"), torch.Tensor):
            torch.set_rng_state(last["rng"])
        start_epoch, best = int(last["epoch"]) + 1, float(last["best_val_accuracy"])
        history = [r for r in ddp.from_main(ck.read_metrics, run_dir) if int(r["epoch"]) <= int(last["epoch"])]
        best_epoch = max(history, key=lambda r: r["val_accuracy"])["epoch"] if history else 0
        say(f"resuming {run_dir.name} at epoch {start_epoch}")
    elif hasattr(model, "init_from_data"):
        model.init_from_data(prep.normalize()(prep.x_train[:5000]))  # e.g. a whitening layer's statistics

    net = ddp.wrap(model, device)  # DDP for training; ``model`` itself is what is evaluated and saved
    should_stop = ddp.agree(should_stop)
    params = count_parameters(model)
    say(f"run {run_dir.name}: {cfg.model} ({params:,} params) on {cfg.dataset} "
        f"({len(prep.y_train)} train / {len(prep.y_val)} val / {len(prep.y_test)} test, {prep.size}x{prep.size}), "
        f"{device_name(device)}{', ' + str(amp).replace('torch.', '') + ' autocast' if amp else ''}")
    if ddp.world > 1:
        say(f"data-parallel over {ddp.world} processes: {train_b.batch_size} images each per step "
            f"(global batch {cfg.batch_size})")
    progress = _Progress(run_dir, on_batch)
    progress.epochs = cfg.epochs
    _status(run_dir, state="running", message="training", epochs=cfg.epochs, params=params,
            data_seconds=round(data_seconds, 2), classes=prep.classes, notes=prep.dataset.notes)
    stale = 0
    state = "finished"
    for epoch in range(start_epoch, cfg.epochs + 1):
        train_b.set_epoch(epoch)
        ddp.start_epoch(train_b, epoch)
        progress.epoch = epoch
        lr = optimizer.param_groups[0]["lr"]
        r = train_one_epoch(net, train_b, optimizer, scheduler, device, amp, cfg.label_smoothing, scaler,
                            should_stop, progress)
        r = ddp.reduce_epoch(r)
        val_loss, val_acc = ddp.evaluate(evaluate, model, val_b, device, amp, cfg.tta)
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss became {val_loss} in epoch {epoch}")
        row = {"epoch": epoch, "train_loss": round(r.loss, 5), "train_accuracy": round(r.accuracy, 5),
               "val_loss": round(val_loss, 5), "val_accuracy": round(val_acc, 5), "lr": lr,
               "epoch_seconds": round(r.seconds, 3), "images_per_second": round(r.images / max(r.seconds, 1e-9), 1)}
        history.append(row)
        improved = val_acc > best
        if improved:
            best, best_epoch, stale = val_acc, epoch, 0
        else:
            stale += 1
        if ddp.is_main:
            ck.append_metrics(run_dir, row)
            payload = checkpoint_payload(cfg, prep, model, epoch, history, optimizer, scheduler, best)
            # best.pt first: a crash between the two leaves last.pt one epoch behind, and the resumed run redoes
            # the epoch and its best.pt. The other order would resume believing in a best.pt never written.
            if improved:
                ck.save_checkpoint({**payload, "optimizer": None, "scheduler": None}, run_dir / "best.pt")
            ck.save_checkpoint(payload, run_dir / "last.pt")
        _status(run_dir, epochs_run=epoch, best_val_accuracy=round(best, 5), best_epoch=best_epoch)
        say(f"epoch {epoch}/{cfg.epochs}  train loss {r.loss:.4f} acc {r.accuracy:.4f}  val loss {val_loss:.4f} "
            f"acc {val_acc:.4f}  {r.seconds:.1f}s  {row['images_per_second']:.0f} img/s")
        if on_epoch_end is not None:
            on_epoch_end(row)
        if cfg.patience and stale >= cfg.patience:
            state = "stopped_early"
            say(f"no better validation accuracy for {cfg.patience} epochs: stopping early")
            break

    # the final report: the best model by validation accuracy, on the test split it has never seen
    best_ckpt = ddp.from_main(ck.load_checkpoint, run_dir / "best.pt")
    model.load_state_dict(best_ckpt["state_dict"])
    test_b = eval_batches(prep, "test")
    if cfg.max_batches:
        test_b.max_batches = cfg.max_batches
    report = None
    if ddp.world == 1:  # one pass gives the accuracy and the model card's per-class table
        logits, y = predict_logits(model, test_b, device, amp, cfg.tta)
        report = split_report(logits, y, prep.classes, run=run_dir.name, split="test", checkpoint="best.pt",
                              epoch=int(best_ckpt["epoch"]))
        test_acc = report["accuracy"]
    else:
        _, test_acc = ddp.evaluate(evaluate, model, test_b, device, amp, cfg.tta)
    train_seconds = sum(r["epoch_seconds"] for r in history)  # resumed runs count their earlier epochs too
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in history)
    summary = {"run": run_dir.name, "run_dir": str(run_dir), "state": state, "model": cfg.model,
               "dataset": cfg.dataset, "epochs_run": len(history), "best_epoch": best_epoch,
               "best_val_accuracy": round(best, 5), "test_accuracy": round(test_acc, 5),
               "train_seconds": round(train_seconds, 2), "data_seconds": round(data_seconds, 2),
               "images_per_second": round(images / max(sum(r["epoch_seconds"] for r in history), 1e-9), 1),
               "params": params, "device": device_name(device),
               "precision": str(amp).replace("torch.", "") if amp else "fp32"}
    _status(run_dir, **summary, message="", pid=None)
    if ddp.is_main:
        (run_dir / "progress.json").unlink(missing_ok=True)
        modelcard.write_after_training(run_dir, data_dir, prep, say, report)
    say(f"best val acc {best:.4f} (epoch {best_epoch}); test acc {test_acc:.4f}; "
        f"{train_seconds:.1f}s training")
    return summary
