"""``models``, ``datasets`` and ``runs``: what there is to train with, and what has been trained."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from .base import command


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("models", "list registered models with parameter counts and input sizes", _json_flag)
def cmd_models(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["model"]) for r in rows) + 2
    sizes = max(len(r["input_size"]) for r in rows) + 2
    print(f"{'model':<{width}}{'params (10 classes)':>20}  {'input':<{sizes}}description")
    for r in rows:
        print(f"{r['model']:<{width}}{r['params']:>20,}  {r['input_size']:<{sizes}}{r['description']}")
    return 0


def model_rows() -> list[dict[str, Any]]:
    """The registry's table, kept in the cache folder under a key made of the model files and the library
    versions. Building it imports torch and torchvision and builds every model (3 s on this 2-core machine);
    reading it back imports neither, so ``models`` answers in a fraction of a second after its first call."""
    from ..core.errors import CnnError
    from ..core.files import read_json, write_json
    from ..core.settings import cache_dir

    path = cache_dir() / f"model-table-{_models_key()}.json"
    saved = read_json(path).get("rows")
    if isinstance(saved, list):
        return saved
    from ..models import model_table

    rows = model_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"rows": rows})
    except (OSError, CnnError):
        pass  # a read-only cache folder: the table is still right, only not kept
    return rows


def _models_key() -> str:
    """Changes whenever a model file, cnn_core, torch or torchvision changes."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "models").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for package in ("torch", "torchvision"):
        digest.update(importlib.metadata.version(package).encode())
    from ..core.version import __version__

    digest.update(__version__.encode())
    return digest.hexdigest()[:16]


@command("datasets", "list datasets and whether they are present", _json_flag)
def cmd_datasets(args: argparse.Namespace) -> int:
    from ..data import data_dir, dataset_table

    rows = dataset_table(args.data_dir)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"data dir: {data_dir(args.data_dir).resolve()}")
    for r in rows:
        print(f"{r['dataset']:<9} {'yes' if r['present'] else 'no ':<4} {r['description']}\n          {r['where']}")
    print("folder:PATH  any folder of class subfolders (own photos), split 8:1:1 unless it has train/ and test/")
    return 0


@command("runs", "list runs with their state and accuracy", _json_flag)
def cmd_runs(args: argparse.Namespace) -> int:
    from ..runs.rundir import list_runs

    runs = list_runs(args.checkpoints)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], default=str))
        return 0
    width = max([len(r.name) for r in runs] + [3]) + 2
    mw = max([len(r.model) for r in runs] + [5]) + 2
    dw = max([len(r.dataset) for r in runs] + [7]) + 2
    for r in runs:
        acc = f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "-"
        print(f"{r.name:<{width}}{r.model:<{mw}}{r.dataset:<{dw}}{r.state:<14}epochs {r.epochs_run:<5}test {acc}")
    return 0
