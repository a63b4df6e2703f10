"""``python -m cnn_core <command>``: models, datasets, train, evaluate, predict.

Exit 0 on success, 2 with a one-line ``error: ...`` on bad input, 1 with a one-line message on an unexpected
failure (set CNN_DEBUG=1 for the traceback). Never a traceback by default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from .config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig, preset_options
from .errors import CnnError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + line
        raise CnnError(f"{message} (see: {self.prog} --help)")


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return wrap


def extend(add_parsers: Callable[[argparse._SubParsersAction], None]) -> None:
    """Other modules (sweep, export, ...) add their subcommands here."""
    _EXTENSIONS.append(add_parsers)


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {v!r}")


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The TrainConfig options as flags; None means 'not given' so presets and model defaults can fill in."""
    p.add_argument("--model", "-m")
    p.add_argument("--dataset", "-d")
    p.add_argument("--preset", help="a named recipe, e.g. cifar10-fast; explicit flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, help="(peak) learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float, help="L2 penalty")
    p.add_argument("--augment", type=_bool, help="on|off: random crop + flip (flip only where labels allow)")
    p.add_argument("--crop-padding", type=int, help="pixels of padding for the random crop (default 4)")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--patience", type=int, help="early stopping after this many epochs without improvement")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--input-size", type=int)
    p.add_argument("--train-subset", type=int, help="train on this many images only (stratified)")
    p.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (smoke tests)")
    p.add_argument("--tta", type=_bool, help="on|off: flip test-time augmentation")
    p.add_argument("--finetune", choices=("all", "head"),
                   help="pretrained models: fine-tune all layers (backbone at --backbone-lr x lr) or the new head only")
    p.add_argument("--backbone-lr", type=float, help="pretrained models: backbone lr as a fraction of --lr (0.1)")


_FLAG_FIELDS = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "augment",
                "crop_padding",
                "schedule", "patience", "seed", "device", "precision", "val_fraction", "label_smoothing",
                "input_size", "train_subset", "max_batches", "tta")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """Model defaults, then the preset, then explicit flags (then ``overrides``)."""
    from .models import get_spec

    opts: dict[str, Any] = {}
    preset = preset_options(args.preset) if getattr(args, "preset", None) else {}
    model = overrides.get("model") or getattr(args, "model", None) or preset.get("model") or "lenet5"
    opts.update(get_spec(model).defaults)
    opts.update(preset)
    opts.update({k: getattr(args, k) for k in _FLAG_FIELDS if getattr(args, k, None) is not None})
    tuning = {k: getattr(args, k) for k in ("finetune", "backbone_lr") if getattr(args, k, None) is not None}
    if tuning:  # model arguments, so they travel in cfg.extra (and in the checkpoint)
        from .models.pretrained import check_options, is_finetunable

        if not is_finetunable(model):
            raise CnnError(f"--finetune and --backbone-lr apply to pretrained models (e.g. "
                           f"efficientnet_lite0_pretrained), not {model}")
        opts["extra"] = {**opts.get("extra", {}), **tuning}
        check_options(opts["extra"].get("finetune", "all"), opts["extra"].get("backbone_lr", 0.1))
    opts.update(overrides)
    opts["model"] = model
    return TrainConfig(**opts)


def config_args(cfg: TrainConfig) -> list[str]:
    """The train flags that rebuild ``cfg`` (the inverse of config_from_args), e.g. to launch it under torchrun."""
    if cfg.extra:
        raise CnnError(f"model arguments (extra: {sorted(cfg.extra)}) have no command-line flags; train this "
                       "config with fit() from Python instead")
    out = ["--preset", cfg.preset] if cfg.preset else []
    for k in _FLAG_FIELDS:
        out += [f"--{k.replace('_', '-')}", flag_text(getattr(cfg, k))]
    return out


def flag_text(v: Any) -> str:
    """A value as its flag reads it back: on/off for booleans, Python's shortest exact text for numbers."""
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m cnn_core", description="Train, evaluate and use CNN image classifiers.")
    p.add_argument("--checkpoints", help="runs folder (default $CNN_CHECKPOINTS or ./checkpoints)")
    p.add_argument("--data-dir", help="datasets folder (default $CNN_DATA_DIR or ./data)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="command")
    sub.required = True
    s = sub.add_parser("models", help="list registered models with parameter counts and input sizes")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("datasets", help="list datasets and whether they are present")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("train", help="train a model; checkpoints go to checkpoints/<run>/")
    add_train_options(s)
    s.add_argument("--name", help="run name (letters, digits, - and _)")
    s.add_argument("--resume", metavar="RUN", help="continue RUN from its last.pt")
    s.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    s.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    s.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files into the run")
    s = sub.add_parser("evaluate", help="metrics of a run's best checkpoint on its test (or val) split")
    s.add_argument("run")
    s.add_argument("--split", choices=("test", "val"), default="test")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("predict", help="classify image files with a run's best checkpoint")
    s.add_argument("run")
    s.add_argument("images", nargs="+")
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("runs", help="list runs with their state and accuracy")
    s.add_argument("--json", action="store_true")
    for add in _EXTENSIONS:
        add(sub)
    return p


# ------------------------------------------------------------------------------------------------ commands

@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from .models import build_model, count_parameters, get_spec, list_models

    rows = []
    for name in list_models():
        spec = get_spec(name)
        params = count_parameters(build_model(name, 10, 3, spec.default_size))
        sizes = "/".join(map(str, spec.sizes)) if spec.sizes else f">={spec.min_size} (default {spec.default_size})"
        rows.append({"model": name, "params": params, "input_size": sizes, "description": spec.description})
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'model':<14}{'params (10 classes)':>20}  {'input':<22}description")
        for r in rows:
            print(f"{r['model']:<14}{r['params']:>20,}  {r['input_size']:<22}{r['description']}")
    return 0


@command("datasets")
def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import data_dir, dataset_info, list_datasets

    ddir = data_dir(args.data_dir)
    rows = []
    for name in list_datasets():
        info = dataset_info(name)
        where = info.locate(ddir)
        rows.append({"dataset": name, "present": where is not None, "where": where or "not found (will try download)",
                     "description": info.description})
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"data dir: {ddir.resolve()}")
        for r in rows:
            print(f"{r['dataset']:<9} {'yes' if r['present'] else 'no ':<4} {r['description']}\n          {r['where']}")
        print("folder:PATH  any folder of class subfolders (own photos), split 8:1:1 unless it has train/ and test/")
    return 0


class _Bar:
    """A one-line progress bar on stderr when it is a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, info: dict) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and info["batch"] != info["batches"]:
            return
        self.last = now
        done = info["batch"] / max(info["batches"], 1)
        bar = "#" * int(done * 30)
        sys.stderr.write(f"\repoch {info['epoch']}/{info['epochs']} [{bar:<30}] {info['batch']}/{info['batches']} "
                         f"loss {info['loss']:.4f}")
        if info["batch"] == info["batches"]:
            sys.stderr.write("\r" + " " * 90 + "\r")
        sys.stderr.flush()


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .train import fit

    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True  # stop at the next batch; last.pt stays as the last finished epoch left it

    signal.signal(signal.SIGTERM, on_signal)
    if args.resume:
        cfg = None
    else:
        if not args.dataset and not args.preset:
            raise CnnError("train needs --dataset (digits, mnist, cifar10 or folder:PATH) or --preset")
        cfg = config_from_args(args)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    try:
        summary = fit(cfg or TrainConfig(), name=args.name, resume=args.resume, root=args.checkpoints,
                      data_dir=args.data_dir, on_batch=_Bar(), should_stop=lambda: stop["flag"], log=log,
                      tensorboard=args.tensorboard)
    finally:
        distributed.teardown()  # under torchrun: leave the process group; otherwise nothing to do
    if not distributed.is_main():
        return 0  # rank 0 prints for the whole job
    if args.json:
        print(json.dumps(summary))
    elif summary.get("state") == "cancelled":
        print(f"stopped; resume with: python -m cnn_core train --resume {summary['run']}")
    return 0


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .inference import evaluate_run

    rep = evaluate_run(args.run, args.split, args.checkpoints, args.data_dir)
    if args.json:
        keys = ("run", "split", "checkpoint", "epoch", "accuracy", "macro_f1", "confusion_matrix", "per_class",
                "classes", "count", "most_confused")
        print(json.dumps({k: rep[k] for k in keys}))
        return 0
    print(f"{rep['run']} ({rep['checkpoint']}, epoch {rep['epoch']}) on {rep['split']}: accuracy "
          f"{rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f} over {rep['count']} images")
    print(f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for r in rep["per_class"]:
        print(f"{r['class']:<14}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>9}")
    print("confusion matrix (rows = true class):")
    for c, row in zip(rep["classes"], rep["confusion_matrix"]):
        print(f"  {c:<12}" + " ".join(f"{v:>5}" for v in row))
    return 0


@command("predict")
def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import Predictor

    if args.top_k < 1:
        raise CnnError("--top-k must be at least 1")
    pred = Predictor.from_run(args.run, args.checkpoints)
    results = pred.predict_files(args.images, args.top_k)
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: error: {r['error']}")
            else:
                print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.1%}" for t in r["top_k"]))
    return 2 if any("error" in r for r in results) else 0


@command("runs")
def cmd_runs(args: argparse.Namespace) -> int:
    from .checkpoints import list_runs, runs_root

    runs = list_runs(runs_root(args.checkpoints))
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], default=str))
        return 0
    for r in runs:
        acc = f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "-"
        print(f"{r.name:<40} {r.model:<12} {r.dataset:<10} {r.state:<13} epochs {r.epochs_run:<4} test {acc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import cli_experiments, presets  # noqa: F401  (register the named presets, sweep and export)

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except CnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the promise is: never a traceback unless asked for
        if os.environ.get("CNN_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''} "
              "(set CNN_DEBUG=1 for details)", file=sys.stderr)
        return 1
