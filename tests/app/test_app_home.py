"""The home page (AppTest): what the app is, which models exist, the runs ready to use, where to go."""

from __future__ import annotations

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
