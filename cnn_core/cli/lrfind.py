"""``lr-find``: the learning-rate finder (training.lr_find) on a configuration given as ``train``'s flags. It trains
a fresh model for about 100 batches and saves nothing but, with ``--out``, its result file (how the app's job
learns the outcome)."""

from __future__ import annotations

import argparse
import json
import math
import time

from ..config.argv import add_train_options, explicit_options
from ..core.errors import CnnError
from .base import command, need_dataset, train_device


def add_args(p: argparse.ArgumentParser) -> None:
    from ..training import lr_curve as lf  # torch-free: the parser must stay light

    add_train_options(p)
    p.add_argument("--steps", type=int, default=lf.STEPS, help=f"mini-batches to train (default {lf.STEPS})")
    p.add_argument("--start", type=float, default=lf.START, help=f"first learning rate (default {lf.START:g})")
    p.add_argument("--end", type=float, default=lf.END, help=f"last learning rate (default {lf.END:g})")
    p.add_argument("--rule", choices=lf.RULES, default="valley",
                   help="how the rate is suggested: valley (fastai's default, steadier) or steepest")
    p.add_argument("--json", action="store_true", help="print the curve (lr, loss, smoothed) and the suggestion")
    p.add_argument("--out", metavar="FILE.json", help="also write the result (and progress, while it runs) here")
    p.add_argument("--quiet", action="store_true", help="no table of the curve (the summary line stays)")


@command("lr-find", "find a learning rate: the loss while the rate rises from 1e-7 to 10, and a suggestion",
         add_args)
def cmd_lr_find(args: argparse.Namespace) -> int:
    from ..engine.devicelock import device_lock
    from ..models import make_config
    from ..training.lr_curve import ResultFile
    from ..training.lr_find import find_lr

    out = ResultFile(args.out) if args.out else None
    try:
        explicit = explicit_options(args)
        need_dataset(args, "lr-find")
        cfg = make_config(**explicit)
        start = time.perf_counter()
        with device_lock(train_device(cfg.device), run="lr-find"):
            result = find_lr(cfg, data_dir=args.data_dir, steps=args.steps, start=args.start, end=args.end,
                             rule=args.rule, on_step=out and (lambda i, n: out.progress(i, n, time.perf_counter()
                                                                                        - start)))
    except CnnError as e:
        if out is not None:
            out.write("failed", message=str(e))
        raise
    if out is not None:
        out.write("finished", **result.to_dict())
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(summary(result.to_dict()))
    if not args.quiet:
        print(decades(result.lrs, result.smoothed))
    return 0


def summary(r: dict) -> str:
    """One line: the suggestion, how it was chosen, where the loss falls, why the curve ends."""
    lo, hi = r["falling"]
    return (f"suggested learning rate {r['suggestion']:.2g} for {r['model']} on {r['dataset']} ({r['optimizer']}, "
            f"batch {r['batch_size']}) by the {r['why']}; the smoothed loss falls between the rates {lo:.2g} and "
            f"{hi:.2g} (lowest at {r['minimum']:.2g}); {len(r['lrs'])} batches, {r['stopped']}")


def decades(lrs: list[float], smoothed: list[float]) -> str:
    """The smoothed loss near each power of ten: a picture of the curve without a plot."""
    rows = ["learning rate  smoothed loss"]
    for e in range(math.floor(math.log10(lrs[0])), math.ceil(math.log10(lrs[-1])) + 1):
        k = min(range(len(lrs)), key=lambda i: abs(math.log10(lrs[i]) - e))
        if abs(math.log10(lrs[k]) - e) < 0.5:
            rows.append(f"{lrs[k]:>13.1e}  {smoothed[k]:.4f}")
    return "\n".join(rows)
