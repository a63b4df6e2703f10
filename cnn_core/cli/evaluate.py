"""``evaluate``, ``predict`` and ``export``: using a trained run."""

from __future__ import annotations

import argparse
import json

from ..core.errors import CnnError
from .base import command


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--split", choices=("test", "val"), default="test", help="which split (default: test)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


@command("evaluate", "metrics of a run's best checkpoint on its test (or val) split", _evaluate_args,
         description="Metrics of a run's best checkpoint on its test (or val) split: the report saved when training "
                     "ended (no dataset needed), or computed on the dataset when the checkpoint is newer.")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.reports import run_report

    rep = run_report(args.run, args.split, args.checkpoints, args.data_dir)
    if args.json:
        keys = ("run", "split", "checkpoint", "epoch", "accuracy", "macro_f1", "confusion_matrix", "per_class",
                "classes", "count", "most_confused")
        print(json.dumps({k: rep[k] for k in keys}))
        return 0
    print(f"{rep['run']} ({rep['checkpoint']}, epoch {rep['epoch']}) on {rep['split']}: accuracy "
          f"{rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f} over {rep['count']} images")
    width = max([len(c) for c in rep["classes"]] + [5]) + 2
    print(f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for r in rep["per_class"]:
        print(f"{r['class']:<{width}}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>9}")
    print("confusion matrix (rows = true class):")
    for c, row in zip(rep["classes"], rep["confusion_matrix"]):
        print(f"  {c:<{width}}" + " ".join(f"{v:>5}" for v in row))
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=3, help="classes per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("predict", "classify image files with a run's best checkpoint", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    from ..evaluation.predictor import Predictor

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
                doubt = f" (but {r['doubt']})" if "doubt" in r else ""
                print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.1%}" for t in r["top_k"]) + doubt)
    return 2 if any("error" in r for r in results) else 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--format", default="pt2", metavar="pt2|onnx", help="torch.export program or ONNX (default: pt2)")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("export", "write a run's best model as model.pt2 or model.onnx, with preprocessing.json", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from ..evaluation.export import export_run


    res = export_run(args.run, args.format, args.checkpoints)
    if args.json:
        print(json.dumps(res))
        return 0
    check = f"; outputs match PyTorch within {res['max_abs_diff']:.1e}" if res["max_abs_diff"] is not None else ""
    print(f"wrote {res['path']} ({res['bytes'] / 1e6:.2f} MB, from {res['source']}) and {res['preprocessing']}"
          f"{check}")
    return 0
