"""``train``: a new run from flags (model defaults, then a preset, then the flags), or an existing one
resumed (``--resume``, with ``--epochs N`` trained further up to N epochs in all) or started (``--prepared``:
a run folder a job prepared)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config.argv import TUNING_FLAGS, add_train_options, explicit_options, flag
from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from .base import command, need_dataset, train_device


def add_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--name", help="run name (letters, digits, - and _; default: model-dataset-date-time)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last.pt, with its own options; with "
                   "--epochs N, up to N epochs in all (a finished run trains further, on a fresh learning-rate "
                   "schedule over the added epochs)")
    p.add_argument("--prepared", metavar="RUN", help="train RUN, whose folder holds its config.json and nothing "
                   "trained yet (how the app's jobs start a run)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files into the run")


@command("train", "train a model; checkpoints go to checkpoints/<run>/", add_args)
def cmd_train(args: argparse.Namespace) -> int:
    from ..engine import distributed
    from ..engine.devicelock import device_lock
    from ..models import make_config
    from ..training.tblog import TensorBoard
    from ..workflows.run import train_run
    from .terminal import LockLabel, terminal_callbacks

    explicit = explicit_options(args)
    existing = args.resume or args.prepared
    if args.resume and args.prepared:
        raise CnnError("give --resume or --prepared, not both")
    if existing:
        _refuse_changes(existing, explicit, args.name, extendable=bool(args.resume))
    if not existing:
        need_dataset(args, "train")
    cfg = None if existing else make_config(**explicit)
    device = train_device((cfg or _saved_config(existing, args.checkpoints)).device)
    # the device first: a busy one refuses at once, before a run folder is made
    with device_lock(device, run=existing or args.name or "a new run") as lock:
        callbacks = [*terminal_callbacks(args.quiet), LockLabel(lock), *([TensorBoard()] if args.tensorboard else [])]
        try:
            summary = train_run(cfg, name=args.name, resume=args.resume, prepared=args.prepared,
                                epochs=args.epochs if existing else None, root=args.checkpoints,
                                data_dir=args.data_dir, callbacks=callbacks)
        except BaseException:
            distributed.teardown()  # under torchrun: leave the process group; otherwise nothing to do
            raise
        distributed.teardown(finished=True)
    if not distributed.is_main():
        return 0  # rank 0 prints for the whole job
    if args.json:
        print(json.dumps(summary))
    elif summary.get("state") == "cancelled":
        print(f"stopped; resume with: python -m cnn_core train --resume {summary['run']}")
    return 0


def _refuse_changes(run: str, explicit: dict[str, Any], name: str | None, extendable: bool) -> None:
    """An existing run trains with its own saved options: flags that would change what it is (model, dataset,
    learning rate, name, ...) are refused, not dropped. Only --epochs may extend a resumed run."""
    flags = [flag(k) for k in explicit if k not in ("extra", "preset") and not (extendable and k == "epochs")]
    flags += [TUNING_FLAGS[k][0] for k in explicit.get("extra", {})]
    flags += ["--preset"] * ("preset" in explicit) + ["--name"] * bool(name)
    if flags:
        also = "; only --epochs may change, to train it further" if extendable else ""
        raise CnnError(f"{', '.join(flags)} cannot change run {run}: it trains with its own saved options{also}; "
                       "train a new run to change them")


def _saved_config(run: str, root: str | None) -> TrainConfig:
    from ..runs.rundir import RunDir

    saved = RunDir.resolve(run, root).config()
    if not saved:
        raise CnnError(f"run {run} has no readable config.json; it cannot be trained")
    return TrainConfig.from_dict(saved)
