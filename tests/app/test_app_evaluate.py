"""The Evaluate page (AppTest): metrics from the run's saved report, the confusion matrix, per-class table, gallery."""

from __future__ import annotations

import pytest
from app_util import ROOT, chart_data, chart_spec, charts, marks, open_page, record_downloads, shown, texts

from cnn_core.evaluation.reports import run_report


@pytest.fixture
def app_env(app_root, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(app_root))
    return app_root


def test_evaluate_shows_the_runs_metrics_matrix_and_table(app_env):
    at = open_page("evaluate")
    assert at.selectbox(key="ev_run").value == "digits-lenet"  # newest usable run is the default
    rep = run_report("digits-lenet", "test", app_env)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == f"{rep['accuracy']:.1%}"
    assert metrics["Macro-F1"] == f"{rep['macro_f1']:.3f}"
    assert metrics["Images"] == "360"

    matrix = next(c for c in charts(at) if c.key and c.key.startswith("ev_cm_"))
    assert {"rect", "text"} <= marks(chart_spec(matrix))
    cells = chart_data(matrix)
    assert len(cells) == 100 and set(cells["true"]) == set(cells["predicted"]) == set(rep["classes"])
    got = {(r.true, r.predicted): r.count for r in cells.itertuples()}
    cm = rep["confusion_matrix"]
    assert all(got[(t, p)] == cm[i][j] for i, t in enumerate(rep["classes"]) for j, p in enumerate(rep["classes"]))

    table = at.dataframe[0].value
    assert list(table["class"]) == rep["classes"]
    assert table["f1"].round(6).tolist() == [round(c["f1"], 6) for c in rep["per_class"]]
    assert "Training curves" in texts(at)
    curves = [chart_data(c) for c in charts(at) if "epoch" in chart_data(c)]
    assert len(curves) == 2 and curves[0]["epoch"].max() == 12
    assert set(curves[0]["split"]) == {"train", "validation"}


def test_picking_a_cell_shows_those_test_images_most_confident_first(app_env):
    at = open_page("evaluate")
    rep = run_report("digits-lenet", "test", app_env)
    at.selectbox(key="ev_true_digits-lenet").set_value("3").run()
    at.selectbox(key="ev_pred_digits-lenet").set_value("3").run()
    gallery = at.get("image")[-1]
    expected = sorted((c for t, p, c in zip(rep["y_true"], rep["y_pred"], rep["confidence"]) if t == p == 3),
                      reverse=True)[:24]
    assert len(gallery.value) == len(expected) > 0
    assert gallery.captions == [f"{c:.0%} sure" for c in expected]


def test_a_run_without_checkpoint_and_a_broken_checkpoint_are_explained_not_crashed(app_env):
    at = open_page("evaluate")
    at.selectbox(key="ev_run").set_value("failed-run").run()
    assert not at.exception
    assert "has no checkpoint yet" in texts(at) and "no such folder" in texts(at)
    at.selectbox(key="ev_run").set_value("broken-ckpt").run()
    assert not at.exception
    assert any("cannot be evaluated" in shown(e) and "not readable" in shown(e) for e in at.error)
    at.selectbox(key="ev_run").set_value("digits-simple").run()  # and the page still works afterwards
    assert not at.exception and not at.error and len(at.metric) == 4


def test_no_runs_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(tmp_path / "empty"))
    at = open_page("evaluate")
    assert "no trained runs" in shown(at.info[0]) and "Train" in shown(at.info[0])
    assert not at.metric


@pytest.fixture
def own_run(runs, digits_run):
    """A private copy of the finished digits run: exporting writes into the run folder."""
    import shutil

    shutil.copytree(digits_run, runs / "mine")
    return runs / "mine"


def test_model_card_is_shown_and_downloadable(own_run, monkeypatch):
    fetch = record_downloads(monkeypatch)
    at = open_page("evaluate")
    card = (own_run / "model_card.md").read_text()
    shown = at.expander[0]
    assert "Model card" in shown.label and [c.value for c in shown.code] == [card.strip()]
    button = next(b for b in at.get("download_button") if b.label == "Download model_card.md")
    assert fetch(button).decode() == card


def test_both_exports_are_made_from_the_page_and_downloadable(own_run, monkeypatch):
    import json

    import numpy as np

    from cnn_core.evaluation.export import load_exported

    fetch = record_downloads(monkeypatch)
    at = open_page("evaluate")
    assert not [b for b in at.get("download_button") if "model." in b.label]  # nothing exported yet
    for fmt in ("pt2", "onnx"):
        at.button(key=f"ev_export_{fmt}").click().run()
        assert not at.exception and not at.error and f"model.{fmt}:" in texts(at)
    buttons = {b.label: b for b in at.get("download_button")}
    pre = json.loads(fetch(buttons["Download preprocessing.json"]))
    assert pre == json.loads((own_run / "preprocessing.json").read_text()) and pre["run"] == "mine"
    shape = (3, pre["input"]["channels"], pre["input"]["height"], pre["input"]["width"])
    for fmt in ("pt2", "onnx"):
        path = own_run / f"model.{fmt}"
        assert path.is_file() and fetch(buttons[f"Download model.{fmt}"]) == path.read_bytes()
        assert load_exported(path)(np.zeros(shape, np.float32)).shape == (3, len(pre["classes"]))


def test_missing_onnx_packages_are_said_in_one_line(own_run, monkeypatch):
    from cnn_core.evaluation import export

    monkeypatch.setattr(export, "missing_packages", lambda fmt: ["onnxscript"] if fmt == "onnx" else [])
    at = open_page("evaluate")
    assert not at.exception and at.button(key="ev_export_onnx").disabled and not at.button(key="ev_export_pt2").disabled
    said = [shown(c) for c in at.caption if "onnxscript" in c.value]
    assert said == ["Needs onnxscript: `.venv/bin/pip install onnx onnxscript onnxruntime` (into the project's venv)."]


def test_a_demo_run_is_evaluated_from_its_saved_report_without_the_dataset(runs, no_data):
    import json
    import shutil

    shutil.copytree(ROOT / "checkpoints" / "demo-mnist-lenet5", runs / "demo-mnist-lenet5")
    at = open_page("evaluate")
    saved = json.loads((runs / "demo-mnist-lenet5" / "report-test.json").read_text())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == "98.9%" == f"{saved['accuracy']:.1%}" and metrics["Images"] == "10,000"
    assert not at.error
    notes = [shown(i) for i in at.info]
    assert len(notes) == 1 and notes[0].startswith("No images: dataset mnist is not in") and "\n" not in notes[0]
    assert "image(s) of **" in "\n".join(c.value for c in at.caption)  # the counts still come from the report
    assert "Per class" in texts(at) and len(at.dataframe[0].value) == 10
    assert list(at.dataframe[0].value) == ["class", "precision", "recall", "f1", "support"]
    assert list(at.dataframe[1].value) == ["true", "predicted", "count"]  # most confused pairs
    at.segmented_control(key="ev_split").set_value("val").run()  # the validation report too
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Images"] == "6,000"
    assert list(no_data.iterdir()) == []


def gallery_of(at):
    return at.get("image")[-1]


def test_the_heatmap_toggle_shows_each_gallery_image_beside_its_heatmap(app_env):
    from pages import ui

    at = open_page("evaluate")
    rep = run_report("digits-lenet", "test", app_env)
    at.selectbox(key="ev_true_digits-lenet").set_value("3").run()
    at.selectbox(key="ev_pred_digits-lenet").set_value("3").run()
    plain = gallery_of(at)
    at.toggle(key="ev_heat").set_value(True).run()
    assert not at.exception and not at.error
    shown_now = gallery_of(at)
    n = sum(t == p == 3 for t, p in zip(rep["y_true"], rep["y_pred"]))
    assert len(shown_now.value) == len(plain.value) == min(n, 24) > 0
    assert shown_now.captions == plain.captions and set(shown_now.value).isdisjoint(plain.value)  # other pictures
    pairs = ui.heatmaps_of("digits-lenet", str(app_env), ui.checkpoint_mtime(app_env / "digits-lenet"), "test",
                           (0,), (rep["y_pred"][0],))
    pair = pairs[0]  # (H, W, 3): the image, then its heatmap in colour, side by side
    half = (pair.shape[1] - 8 - 2) // 2
    left, right = pair[4:-4, 4:4 + half], pair[4:-4, -4 - half:-4]
    assert pair.shape[1] > 1.8 * pair.shape[0] and (left[..., 0] == left[..., 2]).all()  # the digit is gray
    assert not (right[..., 0] == right[..., 2]).all()  # the heatmap is not


def test_top_losses_show_the_highest_loss_images_of_every_class_first(app_env):
    import numpy as np

    at = open_page("evaluate")
    at.segmented_control(key="ev_view").set_value("losses").run()
    assert not at.exception and not at.error
    rep = run_report("digits-lenet", "test", app_env)
    loss = -np.log(np.clip(np.asarray(rep["true_probability"]), 1e-30, 1))
    order = np.argsort(-loss, kind="stable")[:24]
    assert loss[order[0]] > loss[order[-1]] and len({rep["y_true"][i] for i in order}) > 1  # not one cell
    want = [f"{rep['classes'][rep['y_true'][i]]} → {rep['classes'][rep['y_pred'][i]]}, " +
            (f"p {rep['true_probability'][i]:.1%}" if rep["true_probability"][i] >= 0.001 else "p < 0.1%")
            for i in order]
    assert [shown_caption(c) for c in gallery_of(at).captions] == want
    at.toggle(key="ev_heat").set_value(True).run()
    assert not at.exception and len(gallery_of(at).value) == 24


def shown_caption(text):
    from app_util import _ESCAPED

    return _ESCAPED.sub(r"\1", text)


def test_top_losses_of_a_report_saved_before_losses_and_without_data_fall_back_in_one_line(runs, no_data):
    import json
    import shutil

    shutil.copytree(ROOT / "checkpoints" / "demo-mnist-lenet5", runs / "demo-mnist-lenet5")
    path = runs / "demo-mnist-lenet5" / "report-test.json"
    rep = json.loads(path.read_text())
    del rep["true_probability"]
    path.write_text(json.dumps(rep))
    at = open_page("evaluate")
    at.segmented_control(key="ev_view").set_value("losses").run()
    at.toggle(key="ev_heat").set_value(True).run()
    assert not at.exception and not at.error
    assert any("predates losses" in shown(c) and "most confident mistakes instead" in shown(c) for c in at.caption)
    notes = [shown(i) for i in at.info]
    assert len(notes) == 1 and notes[0].startswith("No images: dataset mnist is not in")


def test_a_demos_top_losses_come_from_its_saved_report_without_the_dataset(runs, no_data):
    import shutil

    shutil.copytree(ROOT / "checkpoints" / "demo-mnist-lenet5", runs / "demo-mnist-lenet5")
    at = open_page("evaluate")
    at.segmented_control(key="ev_view").set_value("losses").run()
    at.toggle(key="ev_heat").set_value(True).run()
    assert not at.exception and not at.error
    assert any("highest loss" in shown(c) for c in at.caption)
    notes = [shown(i) for i in at.info]
    assert len(notes) == 1 and notes[0].startswith("No images: dataset mnist is not in") and "\n" not in notes[0]


def test_an_export_is_refused_in_one_line_when_the_disk_is_nearly_full(own_run):
    from cnn_core.jobs.limits import GB, free_bytes, save_limits

    save_limits({"min_free_gb": free_bytes(own_run) / GB + 1000})  # a floor above what this disk has free
    at = open_page("evaluate")
    at.button(key="ev_export_pt2").click().run()
    assert not at.exception and len(at.error) == 1
    assert "GB for the export): delete old runs first" in shown(at.error[0]) and not (own_run / "model.pt2").exists()


def test_the_run_name_in_the_export_spinner_is_text(runs, digits_run, monkeypatch):
    import shutil

    import streamlit as st

    from cnn_core.evaluation import export

    shutil.copytree(digits_run, runs / "my_run_2")  # a legal name that markdown would set in italics
    said = []
    real = st.spinner
    monkeypatch.setattr(st, "spinner", lambda text="", *a, **k: said.append(text) or real(text, *a, **k))
    monkeypatch.setattr(export, "export_run", lambda run, fmt, root: {"bytes": 1000})
    at = open_page("evaluate")
    at.button(key="ev_export_pt2").click().run()
    assert not at.exception and "Exporting my\\_run\\_2 as pt2…" in said
