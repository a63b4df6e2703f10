"""Training as plain functions: ``fit(cfg, callbacks=[...])`` wires ``train_one_epoch`` and the validation pass,
and tells its callbacks what happens. The loop knows nothing about files, reports or screens: the run folder's
files are callbacks too (``callbacks.run_files``), so the same code runs from the CLI, the app's jobs and a GPU
server, and never imports a UI."""

from __future__ import annotations

import gc
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..engine import distributed
from ..engine.batches import Batches
from ..engine.device import autocast, device_name, pick_device, pick_precision, set_threads
from ..engine.forward import evaluate, predict_logits
from ..engine.prepared import Prepared, eval_batches, prepare_data
from ..models.registry import build_model, count_parameters, get_spec
from ..runs.rundir import FINISHED, RunDir
from .callbacks import Callback, FitState, run_files
from .lookahead import Lookahead
from .optim import make_optimizer, make_scheduler


class Diverged(CnnError):
    """The loss became NaN or infinite. ``advice``: what to change (default: the learning rate)."""

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


class Cancelled(Exception):
    """A callback's should_stop() said so; the last checkpoint is kept."""


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: int
    seconds: float


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               device: torch.device, amp: torch.dtype | None = None, label_smoothing: float = 0.0,
               scaler: torch.amp.GradScaler | None = None, batch: int = 1) -> tuple[float, torch.Tensor]:
    """One optimiser step on one batch: its loss (before the step) and logits. Shared by the epoch loop and
    the learning-rate finder, so both train alike. A NaN or infinite loss raises Diverged (``batch`` names it)."""
    with autocast(device, amp):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    lv = loss.item()
    if not math.isfinite(lv):
        if not bool(torch.isfinite(x).all()):  # not the optimiser's fault: no learning rate fixes this
            raise Diverged(f"the input images held NaN or infinite values at batch {batch}",
                           advice="Check the dataset and its normalisation (a zero standard deviation?)")
        raise Diverged(f"loss became {lv} at batch {batch}")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return lv, logits


def train_one_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
                    amp: torch.dtype | None = None, label_smoothing: float = 0.0,
                    scaler: torch.amp.GradScaler | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    on_batch: Callable[[int, int, float], None] | None = None,
                    after_step: Callable[[int], None] | None = None) -> EpochResult:
    """One pass over ``batches``. ``after_step(i)`` runs after the i-th step on every process (lookahead);
    ``on_batch(i, n, mean loss so far)`` reports progress."""
    model.train()
    start = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    n = len(batches)
    for i, (x, y) in enumerate(batches):
        if should_stop is not None and should_stop():
            raise Cancelled()
        lv, logits = train_step(model, x, y, optimizer, device, amp, label_smoothing, scaler, i + 1)
        scheduler.step()
        if after_step is not None:
            after_step(i + 1)
        loss_sum += lv * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(i + 1, n, loss_sum / seen)
    seconds = time.perf_counter() - start
    return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1), seen, seconds)


# ----------------------------------------------------------------------------------------------------- fit

def fit(cfg: TrainConfig | None = None, *, name: str | None = None, resume: str | os.PathLike | None = None,
        prepared: str | os.PathLike | None = None, epochs: int | None = None, root: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``cfg`` into a new run folder and return the summary. Or, instead of ``cfg``: ``resume`` a run from
    its last.pt (with ``epochs``, up to that many epochs in all: a finished run trains further), or train a
    ``prepared`` run, whose folder a job made (config.json written, nothing trained yet).

    A new run's folder is made only once its dataset has loaded and its model is built (pretrained weights
    included), so a failed start leaves nothing behind. ``callbacks`` hear every hook on the main process,
    after the run folder's own (run_files), from ``on_setup`` on; any of them may stop the run
    (``should_stop``), asked on every process."""
    set_threads()
    ddp = distributed.setup()  # started by torchrun: join its process group; otherwise a single process
    before = _finished_files(resume, root) if resume and epochs is not None and ddp.is_main else None
    if resume or prepared:
        run, cfg, last = ddp.from_main(_open_existing, resume or prepared, root, bool(resume), epochs)
    elif epochs is not None:
        raise CnnError("epochs= extends a resumed run; a new run trains its config's epochs")
    else:
        run, cfg, last = None, _checked_new(cfg), None
    hooks = [*run_files(), *callbacks] if ddp.is_main else []  # rank 0 keeps the files and reports
    state = FitState(cfg, run, data_dir)
    state.say = lambda text: [c.on_message(text) for c in hooks]
    should_stop = ddp.agree(lambda: any(c.should_stop() for c in callbacks))

    def emit(hook: str, *args: Any) -> None:
        if state.run is None:
            return  # a new run that failed before its folder was made: no folder, nothing to record
        for c in hooks:
            getattr(c, hook)(state, *args)

    def new_run(split: Path) -> RunDir:
        return _create_run(state.cfg, name, root, split)

    try:
        with ddp.peer_failures():  # a distributed job whose other process died: say so in one line
            return _fit(state, last, new_run, emit, should_stop, ddp)
    except Diverged as e:
        kept = "best.pt is kept" if state.run.has("best") else "no epoch finished, so nothing was saved"
        advice = e.advice or (f"Lower the learning rate (it was {cfg.lr:g}) or use a schedule with warm-up "
                              "(onecycle)")
        msg = f"diverged: {e}; {kept}. {advice}"
        emit("on_exception", "diverged", msg)
        raise Diverged(msg, e.advice) from None
    except Cancelled:
        emit("on_exception", "cancelled", "cancelled; resume it to continue from last.pt")
        return {"run": state.run.name, "run_dir": str(state.run.path), "state": "cancelled", **state.run.status()}
    except torch.cuda.OutOfMemoryError:
        pass  # reported below, outside this block: the error must not keep the failed step's tensors alive
    except CnnError as e:
        emit("on_exception", "failed", str(e))
        _forget_a_failed_start(state, ddp, new=not (resume or prepared))
        _undo_a_failed_extension(state, before, str(e))
        raise
    except BaseException as e:
        emit("on_exception", "failed", f"{type(e).__name__}: {e}"[:300])
        _forget_a_failed_start(state, ddp, new=not (resume or prepared))
        _undo_a_failed_extension(state, before, f"{type(e).__name__}: {e}"[:300])
        raise
    state.release()  # this frame outlives the error (its traceback): it must not keep the failed run's tensors
    gc.collect()  # the model, optimizer and batches of the failed run are unreachable now; hand memory back
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    msg = (f"the GPU ran out of memory at batch size {cfg.batch_size}; try a smaller batch size "
           f"(e.g. {max(1, cfg.batch_size // 2)})")
    emit("on_exception", "failed", msg)
    raise CnnError(msg)


def _forget_a_failed_start(state: FitState, ddp: distributed.Dist, new: bool) -> None:
    """A new run that failed after its folder was made but before its first epoch (e.g. out of memory in the
    first batch) leaves no folder behind either: a runs list of empty failures helps nobody."""
    if new and ddp.is_main and state.run is not None and state.epoch == 0:
        state.run.discard_unstarted()


def _finished_files(resume: str | os.PathLike, root: str | os.PathLike | None) -> tuple[dict, dict] | None:
    """A finished run's config and status before it is trained further, to put back if that fails to start."""
    try:
        run = RunDir.resolve(resume, root)
    except CnnError:
        return None  # _open_existing says why, in its own words
    return (run.config(), run.status()) if run.state() in FINISHED else None


def _undo_a_failed_extension(state: FitState, before: tuple[dict, dict] | None, error: str) -> None:
    """A finished run asked for more epochs that failed before the first of them started (its dataset gone, say)
    stays the finished run it was, with its own epochs; the attempt is noted beside its status."""
    if before is None or state.run is None or state.epoch > 0:
        return
    config, status = before
    state.run.write_config(config)
    state.run.final_status(**status, last_attempt=f"training further failed to start: {error}")


def _checked_new(cfg: TrainConfig | None) -> TrainConfig:
    """A new run's config, checked before anything is loaded: a typo in the model name, a batch N processes
    cannot split evenly."""
    if cfg is None:
        raise CnnError("fit needs a config, or a run to resume")
    get_spec(cfg.model)
    distributed.per_rank_batch(cfg.batch_size)
    return cfg


def _create_run(cfg: TrainConfig, name: str | None, root: str | os.PathLike | None, split: Path) -> RunDir:
    """The new run's folder with its config.json, and the split its data was prepared with (``split``, made
    before the folder existed; under torchrun rank 0 does this)."""
    run = RunDir.create(root, name, cfg.model, cfg.dataset)
    run.write_config(cfg.to_dict())
    if split.is_file():
        shutil.move(split, run.file(RunDir.SPLIT))
    return run


def _open_existing(existing: str | os.PathLike, root: str | os.PathLike | None, resume: bool, epochs: int | None
                   ) -> tuple[RunDir, TrainConfig, dict[str, Any] | None]:
    """A run to resume (with its last.pt) or a prepared one to train, and its config; under torchrun rank 0 does
    this. ``epochs``: the total a resumed run trains to, written to its config.json before it goes on."""
    run = RunDir.resolve(existing, root)
    saved = run.config()
    if not saved:
        raise CnnError(f"run {run.name} has no readable config.json; it cannot be {'resumed' if resume else 'trained'}")
    cfg = TrainConfig.from_dict(saved)
    distributed.per_rank_batch(cfg.batch_size)
    if not resume:
        if epochs is not None:
            raise CnnError("epochs= extends a resumed run; a prepared run trains the epochs of its config.json")
        if run.has("last"):
            raise CnnError(f"run {run.name} has trained already; resume it instead (train --resume {run.name})")
        return run, cfg, None
    if not run.has("last"):
        raise CnnError(f"run {run.name} has no last.pt to continue from (it never finished an epoch); train a new "
                       "run with its options instead")
    last = run.load("last")
    done = int(last["epoch"])
    if epochs is None:
        if run.state() in FINISHED or done >= cfg.epochs:
            raise CnnError(f"run {run.name} has finished ({done} epochs); to train it further, give the total it "
                           f"should reach: --epochs N with N above {done}")
    elif epochs <= done:
        raise CnnError(f"run {run.name} has trained {done} epochs already; --epochs is the total to reach, so give "
                       f"more than {done}")
    elif epochs != cfg.epochs:
        cfg = cfg.replace(epochs=epochs)
        run.write_config(cfg.to_dict())
    return run, cfg, last


@dataclass
class _Kit:
    """What the loop needs beside the state: where it runs and what it feeds the model."""

    device: torch.device
    amp: torch.dtype | None
    net: nn.Module  # the model, or DDP around it: what trains (``state.model`` is what is evaluated and saved)
    train_b: Batches
    val_b: Batches
    scaler: torch.amp.GradScaler | None


def _fit(state: FitState, last: dict[str, Any] | None, new_run: Callable[[Path], RunDir],
         emit: Callable[..., None], should_stop: Callable[[], bool] | None, ddp: distributed.Dist) -> dict[str, Any]:
    kit = _setup(state, last, new_run, emit, ddp)
    emit("on_fit_start")
    outcome = _epochs(state, kit, emit, should_stop, ddp)
    test_acc = _test_best(state, kit.device, kit.amp, ddp)
    state.summary = _summary(state, kit, outcome, test_acc)
    emit("on_fit_end")
    state.say(f"best val acc {state.best:.4f} (epoch {state.best_epoch}); test acc {test_acc:.4f}; "
              f"{state.summary['train_seconds']:.1f}s training")
    return state.summary


def _setup(state: FitState, last: dict[str, Any] | None, new_run: Callable[[Path], RunDir],
           emit: Callable[..., None], ddp: distributed.Dist) -> _Kit:
    """Seed, device, data, model (fresh, pretrained or resumed), batches, optimiser and schedule. An existing
    run's folder hears on_setup first (its status says "loading data"); a new run's folder is made only after
    its data and model are ready."""
    cfg, say = state.cfg, state.say
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    amp = pick_precision(cfg.precision, device)
    state.device = device_name(device)
    if state.run is not None:
        emit("on_setup")
    with tempfile.TemporaryDirectory(prefix="cnn-split-") as staging:
        split = state.run.file(RunDir.SPLIT) if state.run is not None else Path(staging) / RunDir.SPLIT
        prep, model = _data_and_model(state, split, device, last is None, ddp)
        if state.run is None:
            state.run = ddp.from_main(new_run, split)
            emit("on_setup")
    for note in prep.dataset.notes:
        say(note)
    model = ddp.sync_batchnorm(model.to(device, memory_format=torch.channels_last), device)
    train_b = Batches(prep.x_train, prep.y_train, cfg.batch_size, prep.normalize(), shuffle=True,
                      augment=prep.augment if cfg.augment else None, seed=cfg.seed, max_batches=cfg.max_batches,
                      drop_single=True)
    ddp.shard_train(train_b)  # --batch-size is global: each rank takes its share of every step
    val_b = eval_batches(prep, "val")
    if cfg.max_batches:
        val_b.max_batches = cfg.max_batches
    state.model, state.optimizer = model, make_optimizer(cfg, model)
    restarted = False
    if last is not None:
        _restore(state, last, ddp.from_main(state.run.metrics), len(train_b))
        done = state.start_epoch - 1
        restarted = bool(state.schedule_restarts) and state.schedule_restarts[-1] == done
        say(f"extending {state.run.name} from {done} to {cfg.epochs} epochs: a fresh {cfg.schedule} schedule over "
            f"the {cfg.epochs - done} added epochs" if restarted else f"resuming {state.run.name} at epoch {done + 1}")
    else:
        state.scheduler = make_scheduler(cfg, state.optimizer, cfg.epochs * len(train_b))
        if hasattr(model, "init_from_data"):
            model.init_from_data(prep.normalize()(prep.x_train[:5000]))  # e.g. a whitening layer's statistics
    if cfg.lookahead:  # over the schedule's steps: an extension's fresh schedule starts a fresh average
        state.lookahead = Lookahead((cfg.epochs - _phase_start(state)) * len(train_b))
        if last is not None and not restarted:
            state.lookahead.load_state_dict(last.get("lookahead"), model)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and amp == torch.float16) else None
    kit = _Kit(device, amp, ddp.wrap(model, device), train_b, val_b, scaler)
    say(f"run {state.run.name}: {cfg.model} ({count_parameters(model):,} params) on {cfg.dataset} "
        f"({len(prep.y_train)} train / {len(prep.y_val)} val / {len(prep.y_test)} test, {prep.size}x{prep.size}), "
        f"{state.device}{', ' + str(amp).replace('torch.', '') + ' autocast' if amp else ''}")
    if ddp.world > 1:
        say(f"data-parallel over {ddp.world} processes: {train_b.batch_size} images each per step "
            f"(global batch {cfg.batch_size})")
    return kit


def _data_and_model(state: FitState, split: Path, device: torch.device, fresh: bool, ddp: distributed.Dist
                    ) -> tuple[Prepared, nn.Module]:
    """The prepared data (a folder dataset's split kept in ``split``) and the model on the CPU; a ``fresh`` one
    gets its pretrained weights (a resumed run continues from its own last.pt instead)."""
    cfg = state.cfg
    t_data = time.perf_counter()
    with ddp.local_main_first():  # one process per machine builds a missing dataset cache
        prep = prepare_data(cfg, state.data_dir, device, split)
    state.prep, state.data_seconds = prep, time.perf_counter() - t_data
    model = build_model(cfg.model, len(prep.classes), prep.channels, prep.size, **cfg.extra)
    if hasattr(model, "load_pretrained") and fresh:
        state.say(model.load_pretrained())  # ImageNet weights
    return prep, model


def _epochs(state: FitState, kit: _Kit, emit: Callable[..., None], should_stop: Callable[[], bool] | None,
            ddp: distributed.Dist) -> str:
    """Train and validate epoch after epoch; "finished", or "stopped_early" when patience ran out."""
    cfg, optimizer, ahead = state.cfg, state.optimizer, state.lookahead
    stale = 0
    for epoch in range(state.start_epoch, cfg.epochs + 1):
        state.epoch = epoch
        kit.train_b.set_epoch(epoch)
        ddp.start_epoch(kit.train_b, epoch)
        if ddp.world == 1 and hasattr(state.model, "start_epoch"):  # e.g. stop training a layer after N epochs
            state.model.start_epoch(epoch)  # (not under torchrun: DDP fixes the trained parameters when it wraps)
        lr = optimizer.param_groups[0]["lr"]
        before = (epoch - 1 - _phase_start(state)) * len(kit.train_b)  # steps of this schedule already taken
        r = train_one_epoch(kit.net, kit.train_b, optimizer, state.scheduler, kit.device, kit.amp,
                            cfg.label_smoothing, kit.scaler, should_stop,
                            lambda i, n, loss: emit("on_batch_end", i, n, loss),
                            (lambda i, b=before: ahead.after_step(state.model, b + i)) if ahead else None)
        if ahead is not None:
            ahead.end_epoch(state.model)
        r = ddp.reduce_epoch(r)
        # each epoch's validation with the mirror only (two views, not six: it picks the best epoch, and must not
        # cost much of an epoch); the best checkpoint's reports at the end use every view cfg asks for
        val_loss, val_acc = ddp.evaluate(evaluate, state.model, kit.val_b, kit.device, kit.amp, cfg.tta)
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss became {val_loss} in epoch {epoch}")
        row = {"epoch": epoch, "train_loss": round(r.loss, 5), "train_accuracy": round(r.accuracy, 5),
               "val_loss": round(val_loss, 5), "val_accuracy": round(val_acc, 5), "lr": lr,
               "epoch_seconds": round(r.seconds, 3), "images_per_second": round(r.images / max(r.seconds, 1e-9), 1)}
        state.history.append(row)
        state.improved = val_acc > state.best
        if state.improved:
            state.best, state.best_epoch, stale = val_acc, epoch, 0
        else:
            stale += 1
        emit("on_epoch_end", row)
        state.say(f"epoch {epoch}/{cfg.epochs}  train loss {r.loss:.4f} acc {r.accuracy:.4f}  val loss "
                  f"{val_loss:.4f} acc {val_acc:.4f}  {r.seconds:.1f}s  {row['images_per_second']:.0f} img/s")
        if cfg.patience and stale >= cfg.patience:
            state.say(stopped_early(state))
            return "stopped_early"
    return "finished"


def _phase_start(state: FitState) -> int:
    """The epoch after which the current schedule began: 0, or where an extension restarted it."""
    return state.schedule_restarts[-1] if state.schedule_restarts else 0


def stopped_early(state: FitState) -> str:
    """Why an early-stopped run stopped, for its status.json message, the CLI and the model card."""
    n = state.cfg.patience
    return (f"stopped early at epoch {state.epoch}: no better validation accuracy for {n} epoch{'s' * (n != 1)}; "
            f"best.pt is epoch {state.best_epoch}")


def _summary(state: FitState, kit: _Kit, outcome: str, test_acc: float) -> dict[str, Any]:
    """What the run did, for status.json, the CLI's --json and the caller."""
    cfg, history = state.cfg, state.history
    train_seconds = sum(r["epoch_seconds"] for r in history)  # resumed runs count their earlier epochs too
    images = sum(r["images_per_second"] * r["epoch_seconds"] for r in history)
    return {"run": state.run.name, "run_dir": str(state.run.path), "state": outcome,
            "message": stopped_early(state) if outcome == "stopped_early" else "", "model": cfg.model,
            "dataset": cfg.dataset, "epochs_run": len(history), "best_epoch": state.best_epoch,
            "best_val_accuracy": round(state.best, 5), "test_accuracy": round(test_acc, 5),
            "train_seconds": round(train_seconds, 2), "data_seconds": round(state.data_seconds, 2),
            "images_per_second": round(images / max(train_seconds, 1e-9), 1),
            "params": count_parameters(state.model), "device": state.device,
            "precision": str(kit.amp).replace("torch.", "") if kit.amp else "fp32"}


def _restore(state: FitState, last: dict[str, Any], metrics: list[dict[str, float]], steps: int) -> None:
    """Continue where last.pt left off: weights, optimizer, random state, history, best so far, and the
    schedule. A run trained beyond the epochs its saved schedule was made for (extended) gets a fresh schedule
    of the same kind over the added epochs instead, from the configured learning rate (a warm restart; see
    docs/experiments.md): a finished onecycle or cosine schedule ends near zero, where more epochs learn nothing."""
    cfg, optimizer = state.cfg, state.optimizer
    done = int(last["epoch"])
    state.schedule_restarts = [int(e) for e in last.get("schedule_restarts", [])]
    state.model.load_state_dict(last["state_dict"])
    if cfg.epochs > int(last["config"]["epochs"]):
        base = [g["lr"] for g in optimizer.param_groups]  # as configured (a backbone's share included)
        optimizer.load_state_dict(last["optimizer"])  # momentum and Adam's moments carry over
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr
            group.pop("initial_lr", None)  # the old schedule's starting point; the new one sets its own
        state.schedule_restarts.append(done)
        state.scheduler = make_scheduler(cfg, optimizer, (cfg.epochs - done) * steps)
    else:  # the saved schedule goes on: made first, then the saved states over it (the optimizer's lr included)
        start = _phase_start(state)
        state.scheduler = make_scheduler(cfg, optimizer, (cfg.epochs - start) * steps)
        optimizer.load_state_dict(last["optimizer"])
        state.scheduler.load_state_dict(last["scheduler"])
    if isinstance(last.get("rng"), torch.Tensor):
        torch.set_rng_state(last["rng"])
    state.start_epoch, state.best = done + 1, float(last["best_val_accuracy"])
    state.history = [r for r in metrics if int(r["epoch"]) <= done]
    state.best_epoch = max(state.history, key=lambda r: r["val_accuracy"])["epoch"] if state.history else 0


def _test_best(state: FitState, device: torch.device, amp: torch.dtype | None, ddp: distributed.Dist) -> float:
    """The best model by validation accuracy, on the test split it has never seen. In a single process its
    test and validation logits are kept in ``state`` for the callbacks (the saved reports, a model card)."""
    cfg, model = state.cfg, state.model
    model.load_state_dict(ddp.from_main(state.run.load, "best")["state_dict"])
    batches = {split: eval_batches(state.prep, split) for split in ("test", "val")}
    for b in batches.values():
        b.max_batches = cfg.max_batches  # 0: all
    if ddp.world > 1:
        return ddp.evaluate(evaluate, model, batches["test"], device, amp, cfg.tta, cfg.tta_shift)[1]
    state.best_logits = {split: predict_logits(model, b, device, amp, cfg.tta, cfg.tta_shift)
                         for split, b in batches.items()}
    logits, y = state.best_logits["test"]
    return float((logits.argmax(1) == y).float().mean()) if len(y) else 0.0
