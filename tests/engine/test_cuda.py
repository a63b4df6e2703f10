"""On a GPU the cifar10-fast preset runs the same code with the whole dataset on the device. Runs only where
CUDA is visible (this project's CI machine has no GPU: skipped there, with the reason)."""

from __future__ import annotations

import pytest
import torch
from datasets_util import have_dataset
from hooks_util import Hooks

from cnn_core.models import make_config
from cnn_core.workflows.run import train_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible here)")


class _Where(Hooks):
    """Records where the prepared data and the model live once training starts."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, str] = {}

    def on_fit_start(self, state) -> None:
        self.seen = {"x_train": state.prep.x_train.device.type, "x_test": state.prep.x_test.device.type,
                     "model": next(state.model.parameters()).device.type}


@pytest.mark.skipif(not have_dataset("cifar10"),
                    reason="CIFAR-10 is not on this machine (set CNN_DATA_DIR)")
def test_cifar10_fast_trains_and_evaluates_on_the_gpu(runs):
    where = _Where()
    cfg = make_config(preset="cifar10-fast", epochs=2, max_batches=8)
    summary = train_run(cfg, name="gpu", callbacks=[where])
    assert where.seen == {"x_train": "cuda", "x_test": "cuda", "model": "cuda"}
    assert summary["state"] == "finished" and summary["device"] == torch.cuda.get_device_name(0)
    assert summary["test_accuracy"] > 0.2  # 16 steps already beat chance (0.1) by far
    assert summary["precision"] in ("fp16", "bf16")
