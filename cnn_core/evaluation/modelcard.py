"""``model_card.md``: what a lab report needs about one finished run, written beside its checkpoints.

Data and split sizes, the model and its parameter count, the full config and seed, device and library
versions, training time, the best epoch, validation and test metrics with a per-class table, the training
curve, and the exact command that trains the same run again.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from ..config.argv import TUNING_FLAGS, config_args
from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from ..core.files import atomic_write_text
from ..core.version import __version__
from ..engine.prepared import Prepared, prepare_data
from ..models.registry import get_spec
from ..runs.checkpoint import load_checkpoint
from ..runs.rundir import FINISHED, RunDir
from .reports import run_report

CARD = RunDir.CARD


def reproduce_command(cfg: TrainConfig, name: str | None = None) -> str:
    """A ``python -m cnn_core train`` line giving every option explicitly, so that later changes to model
    defaults or presets cannot change what it trains."""
    flagged = cfg.replace(extra={k: v for k, v in cfg.extra.items() if k in TUNING_FLAGS})  # the rest: see the card
    return shlex.join(["python", "-m", "cnn_core", "train", *config_args(flagged), *(["--name", name] if name else [])])


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}%" if v is not None else "-"


def build_model_card(run_dir: RunDir, data_dir: str | os.PathLike | None = None,
                     prep: Prepared | None = None, report: dict[str, Any] | None = None) -> str:
    """The card's markdown. ``prep`` (the training's own data) saves loading the dataset again, ``report``
    (fit's own test report of the best checkpoint) reading or evaluating it again."""
    cfg = TrainConfig.from_dict(run_dir.config())
    st = run_dir.status()
    if st.get("state") not in FINISHED:
        raise CnnError(f"run {run_dir.name} is {st.get('state', 'not started')}; a model card needs a finished run")
    path = run_dir.checkpoint("best")
    ckpt = load_checkpoint(path)
    if prep is None:
        prep = prepare_data(cfg, data_dir, split_file=run_dir.file(RunDir.SPLIT))
    rep = report if report is not None else run_report(run_dir, "test", data_dir=data_dir, prep=prep)
    history = run_dir.metrics()
    best = next((r for r in history if r["epoch"] == st.get("best_epoch")), {})
    inp, spec = ckpt["input"], get_spec(cfg.model)
    restarts = [int(e) for e in st.get("schedule_restarts") or []]  # where training further began

    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(st.get("updated", time.time()))))
    out = [f"# Model card: {run_dir.name}", "",
           f"{cfg.model} trained on {cfg.dataset}: test accuracy {_pct(rep['accuracy'])} (macro-F1 "
           f"{rep['macro_f1']:.4f}), best validation accuracy {_pct(st.get('best_val_accuracy'))} at epoch "
           f"{st.get('best_epoch')} of {st.get('epochs_run')}. Finished {finished} ({st.get('state')}).", ""]
    if st.get("state") == "stopped_early":
        why = str(st.get("message") or f"stopped early: no better validation accuracy for {cfg.patience} epochs")
        out += [f"{why[0].upper()}{why[1:]}.", ""]
    if cfg.max_batches:
        out += [f"Note: trained with max_batches={cfg.max_batches} (a smoke test), not on the whole dataset.", ""]

    out += ["## Data", "", f"Dataset `{cfg.dataset}` ({len(prep.classes)} classes), read from "
            f"`{prep.dataset.source}`. The validation split is {cfg.val_fraction:g} of the training images, "
            f"stratified and seeded with the run's seed; the test split is never used for choosing the model.", "",
            _table(["split", "images"], [["train", len(prep.y_train)], ["validation", len(prep.y_val)],
                                         ["test", len(prep.y_test)]]), "",
            f"Input: {inp['channels']} channel(s), {inp['size']}x{inp['size']} pixels, normalised with mean "
            f"{[round(v, 4) for v in inp['mean']]} and std {[round(v, 4) for v in inp['std']]} (on 0..1 values).",
            f"Augmentation: {_augmentation(cfg)}.", ""]

    out += ["## Model", "", f"`{cfg.model}`: {spec.description}.", "",
            f"Parameters: {int(st.get('params', 0)):,}. "
            f"Constructor arguments: `{json.dumps(ckpt['model']['kwargs'])}`.", ""]

    out += ["## Training", "",
            _table(["setting", "value"], [
                ["optimizer", f"{cfg.optimizer}, lr {cfg.lr:g}" + (f", momentum {cfg.momentum:g}"
                                                                   if cfg.optimizer == "sgd" else "")],
                ["weight decay (L2)", f"{cfg.weight_decay:g}"], ["schedule", cfg.schedule + "".join(
                    f", restarted after epoch {e} (trained further)" for e in restarts)],
                ["lookahead", "on" if cfg.lookahead else "off"],
                ["test-time augmentation", ("mirror" + (f" and {cfg.tta_shift}-pixel shifts" if cfg.tta_shift
                                                        else "")) if cfg.tta else "off"],
                ["batch size", cfg.batch_size], ["epochs", f"{st.get('epochs_run')} of {cfg.epochs}"],
                ["early stopping", f"after {cfg.patience} epoch(s) without a better validation accuracy"
                                   if cfg.patience else "off"],
                ["seed", cfg.seed], ["device", st.get("device", "?")], ["precision", st.get("precision", "?")],
                ["train time", f"{float(st.get('train_seconds', 0)):.1f} s (+ {float(st.get('data_seconds', 0)):.1f}"
                               " s loading data)"],
                ["throughput", f"{float(st.get('images_per_second', 0)):,.0f} images/s"],
                ["versions", f"torch {torch.__version__}, torchvision {importlib.metadata.version('torchvision')}, "
                             f"cnn_core {__version__}, Python {platform.python_version()} ({platform.machine()})"],
                ["checkpoint", f"{path.name} (epoch {ckpt.get('epoch')}, saved by torch "
                               f"{ckpt.get('torch_version', '?')})"]]), ""]

    out += ["## Results", "",
            _table(["metric", "validation", "test"], [
                ["accuracy", _pct(st.get("best_val_accuracy")), _pct(rep["accuracy"])],
                ["loss", f"{best['val_loss']:.4f}" if "val_loss" in best else "-", "-"],
                ["macro-F1", "-", f"{rep['macro_f1']:.4f}"],
                ["images", len(prep.y_val), rep["count"]]]), "",
            "Validation: the best epoch's, from training. Test: the best checkpoint on the whole test split.", "",
            "### Per class (test)", "",
            _table(["class", "precision", "recall", "F1", "support"],
                   [[r["class"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", r["support"]]
                    for r in rep["per_class"]]), ""]
    if rep["most_confused"]:
        out += ["Most confused (true -> predicted): " + ", ".join(
            f"{m['true']} -> {m['predicted']} ({m['count']})" for m in rep["most_confused"]) + ".", ""]

    out += ["## Training curve", "",
            _table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"],
                   [[r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_accuracy']:.4f}", f"{r['val_loss']:.4f}",
                     f"{r['val_accuracy']:.4f}", f"{r['lr']:.3g}", f"{r['epoch_seconds']:.1f}"] for r in history]), ""]

    out += ["## Full config", "", "```json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True), "```", "",
            "## Reproduce", "", "```", reproduce_command(cfg, run_dir.name), "```", "",
            "The same config and seed on the same kind of device give the same metrics; another device (or "
            "precision) may differ in the last digits."]
    if restarts:
        out += [f"It was trained further (`train --resume {run_dir.name} --epochs N`) after epoch "
                f"{', '.join(map(str, restarts))}, each time on a fresh schedule: the command above trains "
                f"{cfg.epochs} epochs in one go, which is not the same run."]
    if cfg.extra:
        out += [f"The model arguments `{json.dumps(cfg.extra)}` have no command-line flag: pass them as "
                "`TrainConfig(extra=...)` from Python."]
    return "\n".join(out) + "\n"


def write_model_card(run: str | os.PathLike | RunDir, root: str | os.PathLike | None = None,
                     data_dir: str | os.PathLike | None = None, prep: Prepared | None = None,
                     report: dict[str, Any] | None = None) -> Path:
    """(Re)write ``model_card.md`` of a finished run and return its path."""
    run_dir = RunDir.resolve(run, root)
    path = run_dir.file(CARD)
    atomic_write_text(path, build_model_card(run_dir, data_dir, prep, report))
    return path


def read_model_card(run: str | os.PathLike | RunDir, root: str | os.PathLike | None = None) -> str | None:
    """The card's markdown, or None when the run has none (not finished, or trained before cards existed)."""
    path = RunDir.resolve(run, root).file(CARD)
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def rename_in_card(run_dir: RunDir, old: str, new: str) -> None:
    """After a rename: the card's title and its reproduce command name the run by its new name."""
    path = run_dir.file(CARD)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\n") == f"# Model card: {old}":
            lines[i] = f"# Model card: {new}\n"
        elif line.startswith("python -m cnn_core train ") and line.rstrip("\n").endswith(f" --name {old}"):
            lines[i] = line.rstrip("\n")[: -len(old)] + new + "\n"
    atomic_write_text(path, "".join(lines))


def _augmentation(cfg: TrainConfig) -> str:
    if not cfg.augment:
        return "none"
    flips = "flips alternating by epoch" if cfg.flip_mode == "alternate" else "random flips"
    return (f"random crop after {cfg.crop_padding} pixel(s) of {'mirrored' if cfg.crop_fill == 'reflect' else 'zero'} "
            f"padding, {flips} (flips only where labels allow)")
