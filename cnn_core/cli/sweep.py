"""``sweep``: train every combination of a few settings, one run at a time, and table the results."""

from __future__ import annotations

import argparse
import json

from ..config.argv import add_train_options, explicit_options
from ..config.train_config import sweepable
from ..core.errors import CnnError
from .base import command, need_dataset, train_device


def add_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p, swept=True)  # every train option sets the base config; the sweepable ones take lists
    p.add_argument("--name", help="sweep name (default: model-dataset-<hash of the settings>)")
    p.add_argument("--continue", dest="resume", metavar="NAME",
                   help="train the sweep NAME as its folder describes it (how the app's jobs run a sweep)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files into each run")


@command("sweep", "train every combination of a few settings, one run at a time", add_args,
         description="Each combination is an ordinary run in checkpoints/; the table is written to "
                     "checkpoints/sweeps/<name>/sweep.csv. Re-running the same command skips finished runs and "
                     "resumes interrupted ones.")
def cmd_sweep(args: argparse.Namespace) -> int:
    from ..engine.devicelock import device_lock
    from ..models import make_config
    from ..training.tblog import TensorBoard
    from ..workflows.sweep import run_sweep, sweep_plan_of, to_markdown
    from .terminal import LockLabel, terminal_callbacks

    explicit = explicit_options(args)
    if args.resume:
        if explicit or args.name:
            raise CnnError(f"--continue {args.resume} trains the sweep as it was planned; give no other settings")
        grid, base = sweep_plan_of(args.resume, args.checkpoints)
        name = args.resume
    else:
        need_dataset(args, "sweep")
        grid = {k: explicit[k] for k in sweepable() if k in explicit}
        if not grid:
            raise CnnError("sweep needs at least one list to sweep: "
                           + ", ".join("--" + k.replace("_", "-") for k in sweepable()) + " (e.g. --lr 0.01,0.001)")
        base = make_config(**{**explicit, **{k: v[0] for k, v in grid.items()}})
        name = args.name
    quiet_line = args.quiet and not args.json
    with device_lock(train_device(base.device), run=f"sweep {name or ''}".strip()) as lock:
        callbacks = [*terminal_callbacks(args.quiet), LockLabel(lock), *([TensorBoard()] if args.tensorboard else [])]
        res = run_sweep(grid, base, name=name, root=args.checkpoints, data_dir=args.data_dir, callbacks=callbacks,
                        on_run_end=(lambda i, n, row: print(f"[{i}/{n}] {row['run']}: {row['state']}", flush=True))
                        if quiet_line else None)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"\nsweep {res['sweep']} ({res['state']}): {res['csv']}\n")
    print(to_markdown(res["rows"], res["keys"]))
    if res["state"] == "cancelled":
        print("\nstopped; run the same command again to continue")
    return 0
