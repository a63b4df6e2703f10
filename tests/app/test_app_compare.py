"""The Compare page (AppTest): the table, curves, per-class F1, a confusion difference and one photo through all."""

from __future__ import annotations

import numpy as np
import pytest
from app_util import chart_data, charts, digit_png, open_page, shown, texts

from cnn_core.evaluation.predictor import Predictor
from cnn_core.evaluation.reports import run_report


@pytest.fixture
def app_env(app_root, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(app_root))
    return app_root


def test_two_runs_side_by_side(app_env):
    at = open_page("compare")
    assert at.multiselect(key="cmp_runs").value == ["digits-lenet", "digits-simple"]
    table = at.dataframe[0].value
    a, b = (run_report(n, "test", app_env) for n in ("digits-lenet", "digits-simple"))
    assert list(table["run"]) == ["digits-lenet", "digits-simple"]
    assert table["test accuracy"].tolist() == pytest.approx([a["accuracy"], b["accuracy"]])
    assert table["macro-F1"].tolist() == pytest.approx([a["macro_f1"], b["macro_f1"]])
    assert table["parameters"].tolist() == [61706, 94186] and table["epochs"].tolist() == [12, 2]
    assert all(table["device"].str.startswith("CPU"))

    data = [chart_data(c) for c in charts(at)]
    val = [d for d in data if "epoch" in d]
    assert len(val) == 2 and set(val[0]["run"]) == {"digits-lenet", "digits-simple"}
    assert set(val[0]["split"]) == {"validation"}
    f1 = next(d for d in data if "F1" in d)
    assert len(f1) == 20 and f1.set_index(["run", "class"]).loc[("digits-lenet", "3"), "F1"] == pytest.approx(
        a["per_class"][3]["f1"])
    diff = next(d for d in data if "difference" in d)
    expected = np.asarray(b["confusion_matrix"]) - np.asarray(a["confusion_matrix"])  # run B (simple) minus A
    at_cell = diff.set_index(["true", "predicted"])["difference"]
    assert at_cell[("4", "4")] == expected[4, 4] and at_cell[("0", "1")] == expected[0, 1]


def test_one_photo_through_every_model_marks_agreement(app_env):
    at = open_page("compare")
    digit, _ = digit_png(7)
    at.file_uploader(key="cmp_photo").set_value(("digit.png", digit, "image/png")).run()
    assert not at.exception
    answers = at.dataframe[-1].value
    preds = {n: Predictor.from_run(n, app_env) for n in ("digits-lenet", "digits-simple")}
    want = {n: p.top_k([p.load(digit)], 3)[0][0]["label"] for n, p in preds.items()}
    assert dict(zip(answers["run"], answers["prediction"])) == want
    if len(set(want.values())) == 1:
        assert "All 2 models agree" in texts(at) and set(answers["agrees"]) == {"✓"}
    else:
        assert "disagree" in texts(at) and sorted(answers["agrees"]) == ["✓", "✗"]


def test_runs_with_different_classes_are_not_subtracted(app_env, monkeypatch):
    real = run_report

    def renamed(run, split="test", root=None, **kw):
        rep = real(run, split, root, **kw)
        if run == "digits-simple":
            rep = {**rep, "classes": [f"c{c}" for c in rep["classes"]]}
        return rep

    from pages import ui

    monkeypatch.setattr(ui, "run_report", renamed)
    ui.evaluation.clear()  # st.cache_data is process-wide: earlier tests cached the real reports
    try:
        at = open_page("compare")
        at.multiselect(key="cmp_runs").set_value(["digits-lenet", "digits-simple", "broken-ckpt"]).run()
    finally:
        ui.evaluation.clear()
    assert not at.exception
    assert "different classes" in texts(at)
    assert any("broken-ckpt" in shown(e) for e in at.error)  # reported, and the other two still compared
    assert len(at.dataframe[0].value) == 3


def test_fewer_than_two_runs_explains(tmp_path, monkeypatch, digits_run):
    import shutil

    shutil.copytree(digits_run, tmp_path / "only" / digits_run.name)
    monkeypatch.setenv("CNN_CHECKPOINTS", str(tmp_path / "only"))
    at = open_page("compare")
    assert "at least two" in shown(at.info[0]) and not at.dataframe


def test_a_whole_sweep_can_be_loaded(runs, digits_run):
    import shutil

    from cnn_core.config import TrainConfig
    from cnn_core.workflows.sweep import run_sweep

    shutil.copytree(digits_run, runs / digits_run.name)  # another run, newest: not part of the sweep
    base = TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=64, max_batches=2, precision="fp32")
    res = run_sweep({"lr": [0.05, 0.01, 0.002]}, base, name="cmp", root=runs)
    at = open_page("compare")
    at.selectbox(key="cmp_sweep").set_value("cmp").run()
    names = [r["run"] for r in res["rows"]]
    assert not at.exception and at.multiselect(key="cmp_runs").value == names
    assert list(at.dataframe[0].value["run"]) == names
    assert set(next(chart_data(c) for c in charts(at) if "F1" in chart_data(c))["run"]) == set(names)


def test_models_that_know_different_classes_do_not_vote(runs, digits_run, tmp_path):
    """A digits model and a cats/dogs model each answer the photo; nobody counts their answers as votes."""
    import shutil

    import numpy as np
    from PIL import Image

    from cnn_core.config import TrainConfig
    from cnn_core.workflows.run import train_run

    shutil.copytree(digits_run, runs / "digits")
    photos = tmp_path / "pets"
    for k, cls in enumerate(["cats", "dogs"]):
        (photos / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((16, 16, 3), 90 * k + i, dtype=np.uint8)).save(photos / cls / f"{i}.png")
    train_run(TrainConfig(model="lenet5", dataset=f"folder:{photos}", epochs=1, batch_size=4), name="pets",
              root=runs)
    at = open_page("compare")
    at.multiselect(key="cmp_runs").set_value(["digits", "pets"]).run()
    at.file_uploader(key="cmp_photo").set_value(("digit.png", digit_png(3)[0], "image/png")).run()
    assert not at.exception
    assert "know different classes" in texts(at) and "agree" not in texts(at)
    assert set(at.dataframe[-1].value["agrees"]) == {""}


def test_demo_runs_are_compared_from_their_saved_reports_without_the_dataset(runs, no_data):
    import shutil

    from app_util import ROOT

    for name in ("demo-cifar10-fast", "demo-cifar10-lenet5"):
        shutil.copytree(ROOT / "checkpoints" / name, runs / name)
    at = open_page("compare")
    at.multiselect(key="cmp_runs").set_value(["demo-cifar10-fast", "demo-cifar10-lenet5"]).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert table["test accuracy"].tolist() == pytest.approx([0.9013, 0.6569])
    assert table["macro-F1"].notna().all()
    assert "Where two runs differ" in texts(at) and any("difference" in chart_data(c) for c in charts(at))


def test_one_photo_shows_each_models_heatmap_side_by_side(app_env, no_data):
    from cnn_core.evaluation.explain import grad_cam

    at = open_page("compare")
    digit, _ = digit_png(7)
    at.file_uploader(key="cmp_photo").set_value(("digit.png", digit, "image/png")).run()
    assert not at.exception and not at.error
    assert "Where each model looks" in texts(at)
    heat = at.get("image")[-1]
    assert len(heat.value) == 2 and len(set(heat.value)) == 2  # one heatmap per model, and they differ
    for name, caption in zip(("digits-lenet", "digits-simple"), heat.captions):
        p = Predictor.from_run(name, app_env)
        h = grad_cam(p, p.load(digit))
        assert shown_text(caption) == f"{name}: {h.label} {h.probability:.0%}"


def shown_text(markdown):
    from app_util import _ESCAPED

    return _ESCAPED.sub(r"\1", markdown)
