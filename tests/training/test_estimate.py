"""Sizing up a configuration before training: parameters, batches and a measured time per epoch."""

from __future__ import annotations

import math

from cnn_core.config import TrainConfig
from cnn_core.engine.prepared import prepare_data
from cnn_core.models import build_model, count_parameters, get_spec, list_models, model_table
from cnn_core.training.estimate import estimate_epoch


def test_estimate_counts_and_times_a_digits_epoch():
    cfg = TrainConfig(model="lenet5", dataset="digits", batch_size=64, precision="fp32")
    est = estimate_epoch(cfg, budget_seconds=0.5)
    prep = prepare_data(cfg)
    assert est.params == count_parameters(build_model("lenet5", 10, 1, 32))
    assert (est.classes, est.channels, est.input_size) == (10, 1, 32)
    assert (est.train_images, est.val_images) == (len(prep.y_train), len(prep.y_val))
    assert est.batches_per_epoch == math.ceil(len(prep.y_train) / 64)
    assert est.device.startswith("CPU") and est.precision == "fp32"
    assert est.seconds_per_batch > 0
    assert est.seconds_per_epoch > est.seconds_per_batch * est.batches_per_epoch  # plus the validation pass


def test_estimate_without_measuring_respects_max_batches():
    est = estimate_epoch(TrainConfig(model="simple_cnn", dataset="digits", max_batches=3), measure=False)
    assert est.batches_per_epoch == 3 and est.seconds_per_epoch is None and est.seconds_per_batch is None


def test_model_table_covers_the_registry():
    rows = model_table()
    assert [r["model"] for r in rows] == list_models()
    for r in rows:
        spec = get_spec(r["model"])
        assert r["params"] == count_parameters(build_model(spec.name, 10, 3, spec.default_size))
        assert r["description"] == spec.description


def test_a_huge_batch_is_timed_on_a_capped_step_and_scaled():
    """Sizing up AlexNet at 224 px with batch 1,024 measures steps of at most MAX_STEP_PIXELS, not 1,024 images."""
    from cnn_core.training.estimate import MAX_STEP_PIXELS

    cfg = TrainConfig(model="alexnet", dataset="digits", batch_size=1024, input_size=224, precision="fp32",
                      max_batches=2)
    est = estimate_epoch(cfg, budget_seconds=0.1)
    assert est.measured_batch == MAX_STEP_PIXELS // (224 * 224) < 1024
    assert est.seconds_per_batch > 0

