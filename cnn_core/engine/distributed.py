"""Data-parallel training with PyTorch's own engine: ``torchrun`` starts N processes, each runs ``fit``.

    torchrun --standalone --nproc_per_node=N -m cnn_core train --model resnet18 --dataset cifar10 ...

Nothing here invents distribution; it wires ``torch.distributed`` the way PyTorch's DDP examples do:

- **Process group.** ``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK; ``setup`` joins the group. On a CUDA machine
  the backend is ``cpu:gloo,cuda:nccl`` (gradients on ``cuda:LOCAL_RANK`` travel over NCCL, the small metric
  and control messages over gloo); without CUDA it is ``gloo``. One process (no torchrun, or
  ``--nproc_per_node=1``) is the plain single-process run: no group, nothing changes.
- **Scaling rule.** ``--batch-size`` is the GLOBAL batch: each rank takes ``batch_size // world_size`` images per
  step (an error if it does not divide) and DDP averages the gradients, so one optimizer step sees the same
  images and the same mean gradient as a single-process step, and ``--lr`` means the same for any N.
- **Shards.** Each epoch every rank draws the single-process shuffled order (same seed, same epoch, so the same
  permutation everywhere), cuts it to a multiple of N and deals it round-robin: rank r takes positions r, r+N,
  ... Shards are disjoint, step k of the N ranks together is exactly step k of a single-process run, and the
  at most N-1 images cut off are a different random few each epoch (DistributedSampler with drop_last=True
  does the same). Validation and test images are split without cutting, and their loss/accuracy are summed
  over ranks, so the metrics are those of the whole split.
- **Batch norm.** On GPUs the BN layers become SyncBatchNorm (statistics over the global batch, as in one
  process). PyTorch has no CPU SyncBatchNorm, so on CPUs each rank normalises with its own slice's statistics
  (plain DDP) and DDP keeps the running statistics equal by broadcasting rank 0's.
- **Files.** Rank 0 creates the run folder and writes config.json, metrics.csv, status.json, progress.json and
  the checkpoints, and prints; the others receive the run name, and on resume the checkpoint, from rank 0
  (``from_main``), so machines need not share a disk. Checkpoints hold the unwrapped model, so they load and
  resume in one process or in N (the checkpoint does not depend on N).
- **Failure.** A rank that fails ends the job: torchrun stops the others. Rank 0 marks the run failed when it
  gets the chance; last.pt and best.pt are written atomically, so those from finished epochs stay valid.

Debugging aid: with CNN_DDP_RECORD=DIR each rank appends its training indices per epoch to
``DIR/rank<r>.jsonl`` (with its pid), to check what each rank read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..core import settings
from ..core.errors import CnnError
from .batches import Batches, epoch_permutation

T = TypeVar("T")


class PeerFailed(CnnError):
    """Another process of the job failed or was stopped, so this one cannot go on."""


# ------------------------------------------------------------------------------------- pure shard arithmetic

def per_rank_batch(batch_size: int, world: int | None = None) -> int:
    """The images each rank takes per step: the global batch split evenly."""
    world = world_size() if world is None else world
    if batch_size % world:
        fits = [n for n in range(2, min(batch_size, 64) + 1) if batch_size % n == 0][:6]
        raise CnnError(f"batch size {batch_size} is the global batch and must split evenly over {world} processes; "
                       f"use a multiple of {world} (e.g. {batch_size // world * world or world}), or a process "
                       f"count that divides it ({', '.join(map(str, fits)) or 'none'})")
    return batch_size // world


def shard_indices(n: int, rank: int, world: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's training images for ``epoch``, in the order it trains on them: the single-process order, cut
    to a multiple of ``world``, dealt round-robin."""
    order = epoch_permutation(n, seed, epoch)
    return order[:n - n % world][rank::world]


def eval_indices(n: int, rank: int, world: int) -> torch.Tensor:
    """This rank's part of an evaluation split: every image exactly once over all ranks, none cut off."""
    return torch.arange(n)[rank::world]


def world_size() -> int:
    return settings.world_size()


def is_main() -> bool:
    """Rank 0 (or no torchrun at all): the process that writes files and prints."""
    return settings.rank() == 0


# ------------------------------------------------------------------------------------------ launching

def visible_gpus() -> list[str]:
    """Names of the CUDA GPUs this process can use (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def launch_command(train_args: Sequence[str], nproc: int, options: Sequence[str] = ()) -> list[str]:
    """argv of ``torchrun --standalone --nproc_per_node=N -m cnn_core [options] train [train_args]``.

    ``options`` are the global ones (--checkpoints, --data-dir). torchrun is started as
    ``python -m torch.distributed.run`` (the same program) with this interpreter, so no PATH is needed;
    --standalone picks a free port, so two jobs on one machine do not collide."""
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise CnnError(f"number of processes must be a whole number >= 1, got {nproc!r}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "cnn_core", *options, "train", *train_args]


# ------------------------------------------------------------------------------------------ the group

@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job; ``Dist()`` is the single-process run, where every method is a no-op."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def from_main(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run on rank 0 only, its result (or its error, as a CnnError) sent to every rank."""
        if self.world == 1:
            return fn(*args)
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn(*args))
            except Exception as e:
                box[0] = ("error", str(e) if isinstance(e, CnnError) else f"{type(e).__name__}: {e}")
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise CnnError(value)
        return value

    @contextlib.contextmanager
    def peer_failures(self) -> Iterator[None]:
        """A collective that breaks because another rank is gone becomes one clear PeerFailed."""
        try:
            yield
        except RuntimeError as e:  # what gloo and NCCL raise (DistBackendError is one)
            if self.world == 1 or not _lost_peer(e):
                raise
            raise PeerFailed(f"process {self.rank} of {self.world} lost contact with another process of this "
                             "distributed job (it failed or was stopped; torchrun's report names the rank and "
                             "its error). Checkpoints of finished epochs are kept: resume the run to continue"
                             ) from e

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Local rank 0 of each machine goes first (e.g. to build the dataset cache), the others then read it."""
        if self.world > 1 and self.local_rank != 0:
            dist.barrier()
        yield
        if self.world > 1 and self.local_rank == 0:
            dist.barrier()

    def sync_batchnorm(self, model: nn.Module, device: torch.device) -> nn.Module:
        """SyncBatchNorm on GPUs when N > 1 and the model has BN; PyTorch has no CPU SyncBatchNorm."""
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if self.world > 1 and has_bn and device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DDP around ``model`` (which keeps being the one saved); DDP starts by copying rank 0's weights."""
        if self.world == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard_train(self, batches: Batches) -> None:
        """Turn the training batches into this rank's: per-rank batch size and the shard of the first epoch."""
        if self.world == 1:
            return
        batches.batch_size = per_rank_batch(batches.batch_size, self.world)
        batches.shuffle = False  # the shard already comes in the epoch's shuffled order
        batches.rank = self.rank
        batches.indices = shard_indices(len(batches.x), self.rank, self.world, batches.seed, batches.epoch)

    def start_epoch(self, batches: Batches, epoch: int) -> None:
        """This rank's shard for ``epoch``, and its own random stream (dropout) for the epoch."""
        if self.world == 1:
            return
        batches.indices = shard_indices(len(batches.x), self.rank, self.world, batches.seed, epoch)
        torch.manual_seed(int(np.random.SeedSequence([batches.seed, epoch, self.rank]).generate_state(1)[0]))
        if record := settings.ddp_record_dir():
            line = {"rank": self.rank, "world": self.world, "pid": os.getpid(), "epoch": epoch,
                    "batch_size": batches.batch_size, "indices": batches.indices.tolist()}
            with open(Path(record) / f"rank{self.rank}.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")

    def agree(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """``should_stop`` asked on every rank and true for all as soon as it is true for one, so all ranks
        stop at the same batch (one rank stopping alone would leave the others waiting for it)."""
        if self.world == 1 or should_stop is None:
            return should_stop

        def any_rank() -> bool:
            flag = torch.tensor([1.0 if should_stop() else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return any_rank

    def _sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def reduce_epoch(self, result: T) -> T:
        """An EpochResult (loss, accuracy, images, seconds) for all ranks together: image-weighted means,
        total images, the slowest rank's time."""
        if self.world == 1:
            return result
        r: Any = result
        loss_sum, correct, images = self._sum([r.loss * r.images, r.accuracy * r.images, float(r.images)])
        seconds = torch.tensor([r.seconds], dtype=torch.float64)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        return dataclasses.replace(r, loss=loss_sum / max(images, 1), accuracy=round(correct) / max(images, 1),
                                   images=int(images), seconds=float(seconds.item()))

    def evaluate(self, evaluate: Callable[..., tuple[float, float]], model: nn.Module, batches: Batches,
                 *args: Any) -> tuple[float, float]:
        """``evaluate(model, batches, *args)`` -> (loss, accuracy) over the whole split, each rank doing its part.
        ``max_batches`` keeps its single-process meaning: that many batches of the split, not per rank."""
        if self.world == 1:
            return evaluate(model, batches, *args)
        n = len(batches.x)
        if batches.max_batches:
            n, batches.max_batches = min(n, batches.max_batches * batches.batch_size), 0
        batches.indices = eval_indices(n, self.rank, self.world)
        loss, acc = evaluate(model, batches, *args)
        count = len(batches.indices)
        loss_sum, correct, total = self._sum([loss * count if count else 0.0, acc * count, float(count)])
        if total == 0:
            return float("nan"), 0.0
        return loss_sum / total, round(correct) / total


def _lost_peer(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, dist.DistError) or any(w in text for w in ("gloo", "NCCL", "Connection reset",
                                                                     "Connection closed", "Broken pipe"))


def setup() -> Dist:
    """Join the process group torchrun describes (once per process); ``Dist()`` when there is no torchrun."""
    world = world_size()
    if world == 1:
        return Dist()
    rank, local_rank = settings.rank(), settings.local_rank()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise CnnError(f"torchrun started more processes on this machine than the "
                               f"{torch.cuda.device_count()} GPUs visible; use --nproc_per_node="
                               f"{torch.cuda.device_count()}")
            torch.cuda.set_device(local_rank)  # so device "cuda"/"auto" means this rank's own GPU
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank, world, local_rank)


def teardown(finished: bool = False) -> None:
    """destroy_process_group at the end of the job, as PyTorch's examples do. ``finished`` (every rank got to the
    end): meet the others first, so that no rank tears its connections down while another still uses them (one
    rank aborting with "terminate called without an active exception" under load was seen once in a full test
    run). After a failure there is no meeting: the other rank may be gone."""
    if dist.is_available() and dist.is_initialized():
        if finished:
            try:
                dist.barrier()
            except RuntimeError:
                pass  # a peer went away meanwhile: nothing left to wait for
        dist.destroy_process_group()
