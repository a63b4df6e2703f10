"""The experiment subcommands of ``python -m cnn_core``: ``sweep`` and ``export``. Registered through
``cli.extend`` so that cli.py stays the same for everyone else."""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable
from typing import Any

from .cli import _bool, add_train_options, command, config_from_args, extend
from .errors import CnnError

# flag -> (TrainConfig field, how one value is read); each takes a comma-separated list in a sweep
SWEEP_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--batch-size": ("batch_size", int), "--lr": ("lr", float), "--optimizer": ("optimizer", str),
    "--augment": ("augment", _bool), "--weight-decay": ("weight_decay", float),
}


def _values(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        try:
            return [convert(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as a list of {convert.__name__}") from None
    parse.__name__ = "list"
    return parse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="train every combination of a few settings, one run at a time",
                       conflict_handler="resolve",
                       description="Each combination is an ordinary run in checkpoints/; the table is written to "
                                   "checkpoints/sweeps/<name>/sweep.csv. Re-running the same command skips "
                                   "finished runs and resumes interrupted ones.")
    add_train_options(s)  # every train option sets the base config; the five below take lists
    for flag, (_, convert) in SWEEP_FLAGS.items():
        s.add_argument(flag, type=_values(convert), metavar="V1,V2,...",
                       help="comma-separated values" + (" (on/off)" if convert is _bool else ""))
    s.add_argument("--name", help="sweep name (default: model-dataset-<hash of the settings>)")
    s.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    s.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    s.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files into each run")
    s = sub.add_parser("export", help="write a run's best model as model.pt2 or model.onnx, with preprocessing.json")
    s.add_argument("run")
    s.add_argument("--format", choices=("pt2", "onnx"), default="pt2")
    s.add_argument("--json", action="store_true")


extend(add_parsers)


@command("sweep")
def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep, to_markdown

    if not args.dataset and not args.preset:
        raise CnnError("sweep needs --dataset (digits, mnist, cifar10 or folder:PATH) or --preset")
    grid = {field: getattr(args, field) for field, _ in SWEEP_FLAGS.values() if getattr(args, field) is not None}
    if not grid:
        raise CnnError("sweep needs at least one list to sweep: " + ", ".join(SWEEP_FLAGS) + " (e.g. --lr 0.01,0.001)")
    base = config_from_args(args, **{k: v[0] for k, v in grid.items()})
    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True  # the current run saves its epoch; re-running the sweep resumes it

    signal.signal(signal.SIGTERM, on_signal)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    res = run_sweep(grid, base, name=args.name, root=args.checkpoints, data_dir=args.data_dir,
                    should_stop=lambda: stop["flag"], log=log, tensorboard=args.tensorboard,
                    on_run_end=(lambda i, n, row: print(f"[{i}/{n}] {row['run']}: {row['state']}", flush=True))
                    if args.quiet and not args.json else None)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"\nsweep {res['sweep']} ({res['state']}): {res['csv']}\n")
    print(to_markdown(res["rows"], res["keys"]))
    if res["state"] == "cancelled":
        print("\nstopped; run the same command again to continue")
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    res = export_run(args.run, args.format, args.checkpoints)
    if args.json:
        print(json.dumps(res))
        return 0
    check = f"; outputs match PyTorch within {res['max_abs_diff']:.1e}" if res["max_abs_diff"] is not None else ""
    print(f"wrote {res['path']} ({res['bytes'] / 1e6:.2f} MB, from {res['source']}) and {res['preprocessing']}"
          f"{check}")
    return 0
