"""The home page (AppTest): what the app is, which models exist, the runs ready to use, where to go."""

from __future__ import annotations

import pytest
from app_util import open_page, texts

from cnn_core.models import list_models


def test_home_lists_models_runs_and_pages(app_root, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(app_root))
    at = open_page()
    assert at.title[0].value == "CNN classroom lab"
    runs, models, datasets = (d.value for d in at.dataframe)
    assert list(models["model"]) == list_models()
    assert (models["params"] > 0).all()
    assert list(runs["run"]) == ["digits-lenet", "digits-simple", "broken-ckpt"]  # usable (has a .pt), newest first
    assert "digits" in set(datasets["dataset"])
    links = {p.proto.label for p in at.get("page_link")}
    assert {"**Train**", "**Evaluate**", "**Predict**", "**Compare**"} <= links


def test_home_without_runs_explains_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(tmp_path / "none"))
    at = open_page()
    assert "no trained runs" in texts(at) and "python -m cnn_core train" in texts(at)


def test_home_shows_the_demo_runs_test_accuracy_without_the_datasets(tmp_path, monkeypatch):
    """As on a fresh clone: the committed demo runs, no course datasets. Their accuracy is their saved report's."""
    import json
    import shutil

    from app_util import ROOT

    monkeypatch.setenv("CNN_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "no-data"))
    shutil.copytree(ROOT / "checkpoints", tmp_path / "checkpoints")
    at = open_page()
    runs = at.dataframe[0].value.set_index("run")
    demos = sorted(p.name for p in (ROOT / "checkpoints").glob("demo-*"))
    assert sorted(runs.index) == demos
    for name in demos:
        saved = json.loads((ROOT / "checkpoints" / name / "report-test.json").read_text())
        assert runs.loc[name, "test accuracy"] == pytest.approx(saved["accuracy"], abs=1e-5)
