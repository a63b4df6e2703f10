"""The experiment subcommands of ``python -m cnn_core``: ``sweep`` and ``export``. Registered through
``cli.extend`` so that cli.py stays the same for everyone else."""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable
from typing import Any

from .cli import _bool, add_train_options, command, config_args, config_from_args, extend, flag_text
from .config import TrainConfig
from .errors import CnnError

# flag -> (TrainConfig field, how one value is read); each takes a comma-separated list in a sweep
SWEEP_FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--batch-size": ("batch_size", int), "--lr": ("lr", float), "--optimizer": ("optimizer", str),
    "--augment": ("augment", _bool), "--weight-decay": ("weight_decay", float),
}


def split_values(text: str, convert: Callable[[str], Any]) -> list[Any]:
    """``"0.1, 0.01"`` -> [0.1, 0.01]: one sweep flag's comma-separated values (also the app's text boxes)."""
    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        raise CnnError(f"expected comma-separated values, got {text!r}")
    try:
        return [convert(t) for t in items]
    except (ValueError, argparse.ArgumentTypeError):
        kind = "on/off" if convert is _bool else convert.__name__
        raise CnnError(f"cannot read {text!r} as a list of {kind}") from None


def _sweep_flag(field: str) -> tuple[str, Callable[[str], Any]]:
    for flag, (f, convert) in SWEEP_FLAGS.items():
        if f == field:
            return flag, convert
    raise CnnError(f"{field!r} cannot be swept from the command line; choose from: "
                   + ", ".join(f for f, _ in SWEEP_FLAGS.values()))


def field_values(field: str, text: str) -> list[Any]:
    """The values of a sweepable TrainConfig field, read from text exactly as its sweep flag reads them."""
    return split_values(text, _sweep_flag(field)[1])


def cli_grid(grid: dict[str, list[Any]], base: TrainConfig) -> dict[str, list[Any]]:
    """``grid`` as ``sweep`` reads it back from sweep_args: every sweep flag's field, in the flags' order, with
    the base's one value for a field not swept (a sweep flag cannot set the base without being swept)."""
    for field in grid:
        _sweep_flag(field)  # refuses a field that has no sweep flag
    return {f: list(grid[f]) if f in grid else [getattr(base, f)] for f, _ in SWEEP_FLAGS.values()}


def sweep_args(grid: dict[str, list[Any]], base: TrainConfig) -> list[str]:
    """The ``sweep`` flags that train cli_grid(grid, base) on top of ``base``: config_args for the rest of the
    base, then each sweep flag with its comma-separated values (the inverse of cmd_sweep's parsing)."""
    full = cli_grid(grid, base)
    flags = {_sweep_flag(field)[0]: values for field, values in full.items()}
    args = config_args(base)
    out = [a for i in range(0, len(args), 2) if args[i] not in flags for a in args[i:i + 2]]  # flag, value pairs
    for flag, values in flags.items():
        out += [flag, ",".join(flag_text(v) for v in values)]
    return out


def _values(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            return split_values(text, convert)
        except CnnError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
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
