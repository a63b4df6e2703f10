"""The training callback that lets the Train page watch the filters form: its files, each epoch, cheaply."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hooks_util import Hooks
from PIL import Image

from cnn_core.config import TrainConfig
from cnn_core.runs.rundir import RunDir
from cnn_core.workflows import insight
from cnn_core.workflows.run import train_run


@pytest.mark.parametrize("model,learned", [("lenet5", True), ("fastnet", False)])  # fastnet's first layer: fixed
def test_each_epoch_writes_filters_and_the_fixed_images_heatmap(runs, model, learned):
    seen = []

    def after_epoch(row):  # the caller's callbacks run after Insight: the epoch's files are there already
        run = RunDir(runs / "watch")
        info = run.insight()
        seen.append(info)
        filters = {k: np.asarray(Image.open(p)).copy() for k, p in info["files"].items() if k == "filters"}
        info["filter_pixels"] = filters["filters"]

    cfg = TrainConfig(model=model, dataset="digits", epochs=3, batch_size=64, max_batches=6, lr=0.1, seed=0,
                      tta=False)
    train_run(cfg, name="watch", root=runs, callbacks=[Hooks(epoch=after_epoch)])
    assert [i["epoch"] for i in seen] == [1, 2, 3]
    classes = [str(d) for d in range(10)]
    for info in seen:
        assert set(info["files"]) == {"image", "heatmap", "filters"}
        assert info["label"] in classes and info["predicted"] in classes and info["layer"]
        assert info["predicted"] == info["top_k"][0]["label"] and len(info["top_k"]) == 3
        assert 0 < info["probability"] <= 1
        assert info["seconds"] < 0.5, info["seconds"]  # ~0.03 s measured; a generous bound for a busy host
    assert len({i["label"] for i in seen}) == 1  # one fixed image
    assert np.array_equal(seen[0]["filter_pixels"], seen[-1]["filter_pixels"]) != learned  # they form, or are set
    on_disk = json.loads((runs / "watch" / RunDir.INSIGHT).read_text())
    assert on_disk["epoch"] == 3 and "files" not in on_disk
    assert Image.open(runs / "watch" / RunDir.INSIGHT_IMAGES["heatmap"]).size == (insight.VIEW_SIDE,) * 2


def test_a_failure_inside_switches_it_off_and_the_run_finishes(runs, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no gradient today")

    monkeypatch.setattr(insight, "cam_map", broken)
    said = []
    cfg = TrainConfig(model="lenet5", dataset="digits", epochs=2, batch_size=64, max_batches=2, seed=0)
    summary = train_run(cfg, name="broken", root=runs, callbacks=[Hooks(log=said.append)])
    assert summary["state"] == "finished" and RunDir(runs / "broken").insight() == {}
    assert sum("look inside the model is off" in line and "no gradient today" in line for line in said) == 1
