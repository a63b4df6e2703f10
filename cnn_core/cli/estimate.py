"""``estimate``: what a configuration will cost, measured by a few real training steps (its own process, so a
web server that asks never trains in its own)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config.argv import add_train_options, explicit_options
from ..core.errors import CnnError
from ..core.files import write_json
from .base import command, need_dataset


def add_args(p: argparse.ArgumentParser) -> None:
    add_train_options(p)
    p.add_argument("--no-measure", action="store_true", help="only count parameters and batches; train nothing")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--out", metavar="FILE.json", help="also write the estimate (state finished, or failed with its "
                   "message) here: how the app's job learns it")


@command("estimate", "parameters, batches per epoch and a measured time per epoch for a configuration", add_args)
def cmd_estimate(args: argparse.Namespace) -> int:
    from ..models import make_config
    from ..training.estimate import estimate_epoch

    try:
        explicit = explicit_options(args)
        need_dataset(args, "estimate")
        est = estimate_epoch(make_config(**explicit), measure=not args.no_measure, data_dir=args.data_dir)
    except CnnError as e:
        if args.out:
            write_json(Path(args.out), {"state": "failed", "message": str(e)})
        raise
    if args.out:
        write_json(Path(args.out), {"state": "finished", **est.to_dict()})
    if args.json:
        print(json.dumps(est.to_dict()))
        return 0
    print(f"{est.model} on {est.dataset}: {est.params:,} parameters, {est.batches_per_epoch:,} batches per epoch "
          f"({est.train_images:,} training images), {est.device}, {est.precision}")
    if est.seconds_per_epoch is not None:
        print(f"about {est.seconds_per_epoch:.1f} s per epoch (from steps of {est.measured_batch} images)")
    return 0
