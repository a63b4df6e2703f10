"""The same config and seed on the CPU reproduce the same run, number for number."""

import torch

from cnn_core.config import TrainConfig
from cnn_core.runs.checkpoint import load_checkpoint
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows.run import train_run

TIMING = {"epoch_seconds", "images_per_second"}  # wall-clock columns: the only ones allowed to differ


def _numbers(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in RunDir(run_dir).metrics()]


def test_same_seed_same_metrics_other_seed_others(runs):
    # augmentation, shuffling and dropout: every source of randomness a run has
    cfg = TrainConfig(model="simple_cnn", dataset="digits", epochs=2, batch_size=64, optimizer="adam", lr=0.003,
                      augment=True, train_subset=400, seed=3, device="cpu")
    a, b = train_run(cfg, name="first"), train_run(cfg, name="second")
    first, second = _numbers(runs / "first"), _numbers(runs / "second")
    assert len(first) == 2 and first == second
    assert (runs / "first" / "metrics.csv").read_text().splitlines()[0] == \
        (runs / "second" / "metrics.csv").read_text().splitlines()[0]
    assert a["test_accuracy"] == b["test_accuracy"] and a["best_epoch"] == b["best_epoch"]
    wa, wb = load_checkpoint(runs / "first" / "best.pt"), load_checkpoint(runs / "second" / "best.pt")
    assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])

    train_run(cfg.replace(seed=4), name="other-seed")
    assert _numbers(runs / "other-seed") != first  # the seed is really what fixes the numbers
