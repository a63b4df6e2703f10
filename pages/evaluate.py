"""Evaluate: how good is a run, where does it go wrong, and which images does it get wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from cnn_core.core.errors import CnnError, DataError
from cnn_core.evaluation import export
from cnn_core.evaluation.modelcard import read_model_card
from cnn_core.evaluation.reports import top_losses
from cnn_core.jobs import limits
from cnn_core.runs.rundir import RunInfo, list_runs
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router

GALLERY = 24  # images shown for one cell, the most confident first; and top losses


def cell_images(rep: dict, split: str, key_t: str, key_p: str) -> tuple[np.ndarray, list[str], list[int]]:
    """The picked cell's images, the most confident first, their captions and predictions (the pickers drawn
    here)."""
    classes = rep["classes"]
    a, b = st.columns(2)
    true_c = a.selectbox("True class", classes, key=key_t)
    pred_c = b.selectbox("Predicted as", classes, key=key_p)
    y_true, y_pred = np.asarray(rep["y_true"]), np.asarray(rep["y_pred"])
    conf = np.asarray(rep["confidence"])
    ti, pi = classes.index(true_c), classes.index(pred_c)
    idx = np.flatnonzero((y_true == ti) & (y_pred == pi))
    idx = idx[np.argsort(-conf[idx], kind="stable")][:GALLERY]
    verdict = "correct" if ti == pi else "mistakes"
    st.caption(f"{int(((y_true == ti) & (y_pred == pi)).sum())} {split} image(s) of **{ui.esc(true_c)}** predicted "
               f"as **{ui.esc(pred_c)}** ({verdict}); the most confident first"
               + (f", first {GALLERY} shown." if len(idx) == GALLERY else "."))
    return idx, [f"{conf[i]:.0%} sure" for i in idx], rep["y_pred"]


def top_loss_images(run: RunInfo, split: str) -> tuple[np.ndarray, list[str], list[int]]:
    """Across every class, the images with the highest loss, "true → predicted, p" captions, predictions."""
    try:
        full = ui.loss_evaluation(run.name, str(ui.root()), ui.checkpoint_mtime(run.path), split)
    except CnnError as e:
        st.error(f"The losses could not be read: {ui.esc(e)}")
        return np.zeros(0, int), [], []
    classes, y_true, y_pred = full["classes"], full["y_true"], full["y_pred"]
    order = top_losses(full, GALLERY)
    if order is None:  # a report saved before reports kept p(true class), and no dataset to evaluate it again
        conf = np.asarray(full["confidence"])
        wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
        idx = wrong[np.argsort(-conf[wrong], kind="stable")][:GALLERY]
        st.caption("This run's saved report predates losses and its dataset is not here to evaluate it again: "
                   "the most confident mistakes instead.")
        return (idx, [f"{name(classes[y_true[i]])} → {name(classes[y_pred[i]])}, {conf[i]:.0%} sure" for i in idx],
                y_pred)
    p = full["true_probability"]
    st.caption(f"The {len(order)} {split} images with the highest loss (-log p of the true class), every class: "
               "true → predicted, and the probability the model gave the true class.")
    return (np.asarray(order, int), [f"{name(classes[y_true[i]])} → {name(classes[y_pred[i]])}, {chance(p[i])}"
                                     for i in order], y_pred)


def name(label: str) -> str:
    """A class name inside a (markdown) caption, shown as itself and kept short."""
    return ui.esc(label if len(label) <= 14 else label[:13] + "…")


def chance(p: float) -> str:
    return f"p {p:.1%}" if p >= 0.001 else "p < 0.1%"


def gallery(run: RunInfo, split: str, idx: np.ndarray, captions: list[str], y_pred: list[int], heat: bool
            ) -> None:
    """The images (each beside its heatmap when ``heat``), captioned; the one-line note when the data is not here."""
    if not len(idx):
        return
    key = (run.name, str(ui.root()), ui.checkpoint_mtime(run.path), split, tuple(int(i) for i in idx))
    try:
        if heat:
            pics = [Image.fromarray(p) for p in ui.heatmaps_of(*key, tuple(int(y_pred[i]) for i in idx))]
        else:
            pics = [ui.tile(pic) for pic in ui.images_of(*key)]
    except DataError as e:  # the rest of the page comes from the run's saved report: only this needs the data
        st.info(f"No images: {ui.esc(e)}.", icon=":material/image_not_supported:")
        return
    except CnnError as e:
        st.error(f"The images could not be loaded: {ui.esc(e)}")
        return
    # one call: the browser wraps the pictures into rows, several across on a laptop and two or three on a phone
    st.image(pics, caption=captions[:len(pics)], width=136 if heat else 104)

st.title("Evaluate")
runs = list_runs(ui.root())
run = ui.pick_run("Run", "ev_run", runs, help="Runs in the checkpoints folder, newest first.")
if run is None:
    st.stop()
if not ui.has_checkpoint(run):
    st.warning(f"Run **{ui.esc(run.name)}** has no checkpoint yet ({run.state}"
               + (f": {ui.esc(run.message)}" if run.message else "")
               + "). Pick another run, or wait for its first epoch.")
    st.stop()
split = st.segmented_control("Images", ["test", "val"], key="ev_split", default="test", required=True,
                             format_func=lambda s: {"test": "test split", "val": "validation split"}[s],
                             help="The test split was never used for training or for choosing the checkpoint.")
rep = ui.load_evaluation(run, split or "test")
if rep is None:
    st.stop()

classes = rep["classes"]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Accuracy", f"{rep['accuracy']:.1%}")
c2.metric("Macro-F1", f"{rep['macro_f1']:.3f}", help="The mean of the per-class F1 scores: every class counts alike.")
c3.metric("Images", f"{rep['count']:,}")
c4.metric("Checkpoint", f"{rep['checkpoint']}", help=f"epoch {rep['epoch']}")
st.caption(f"{run.model} on {ui.esc(run.dataset)}, {rep['checkpoint']} from epoch {rep['epoch']}, {split} split.")

# the gallery sits right under the matrix: a click shows its images where the student looks, on a phone too
matrix_col, table_col = st.columns([1, 1], gap="large")
with matrix_col:
    st.subheader("Confusion matrix")
    st.caption("Rows: the true class; columns: what the model said. The diagonal is right, the rest are mistakes. "
               "Colour is the share of the row. Click a cell to see its images right below.")
    event = st.altair_chart(ui.confusion_chart(rep["confusion_matrix"], classes), width="stretch",
                            on_select="rerun", selection_mode="cell", key=f"ev_cm_{run.name}_{split}")

    # a clicked cell (when it changed) sets the two pickers; the pickers work alone too
    key_t, key_p = f"ev_true_{run.name}", f"ev_pred_{run.name}"
    picked = (event.selection.get("cell") or [None])[0] if event is not None and event.selection else None
    if picked and (picked.get("true"), picked.get("predicted")) != st.session_state.get("ev_last_click"):
        st.session_state.ev_last_click = (picked["true"], picked["predicted"])
        if picked["true"] in classes and picked["predicted"] in classes:
            st.session_state[key_t], st.session_state[key_p] = picked["true"], picked["predicted"]
            st.session_state.ev_view = "cell"
    if key_t not in st.session_state:
        worst = rep["most_confused"][0] if rep["most_confused"] else {"true": classes[0], "predicted": classes[0]}
        st.session_state[key_t], st.session_state[key_p] = worst["true"], worst["predicted"]

    st.subheader("Images")
    view = st.segmented_control(
        "Show", ["cell", "losses"], key="ev_view", default="cell", required=True,
        format_func=lambda v: {"cell": "one cell", "losses": "top losses"}[v],
        help="One cell of the matrix, the most confident first; or the top losses: across every class, the "
             "images the model is most confidently wrong about (the highest loss, -log p(true class)).")
    heat = st.toggle("Show heatmaps", key="ev_heat",
                     help="Beside each image, where the model found its evidence for what it said (Grad-CAM of "
                          "the predicted class: brighter is stronger evidence).")
    if view == "losses":
        idx, captions, y_pred = top_loss_images(run, split or "test")
    else:
        idx, captions, y_pred = cell_images(rep, split or "test", key_t, key_p)
    gallery(run, split or "test", idx, captions, y_pred, heat)
with table_col:
    st.subheader("Per class")
    per = pd.DataFrame(rep["per_class"])
    st.dataframe(per, hide_index=True, width="stretch",
                 column_config={"class": st.column_config.TextColumn(width=96),  # "automobile" fits
                                "precision": st.column_config.NumberColumn(format="%.3f", width=72),
                                "recall": st.column_config.NumberColumn(format="%.3f", width=64),
                                "f1": st.column_config.NumberColumn("F1", format="%.3f", width=64),
                                "support": st.column_config.NumberColumn("images", width=64)})
    st.markdown("**Most confused pairs**")
    if rep["most_confused"]:
        st.dataframe(pd.DataFrame(rep["most_confused"]), hide_index=True, width="stretch",
                     column_config={"count": st.column_config.NumberColumn("images")})
    else:
        st.caption("No mistakes at all on this split.")

st.subheader("Training curves")
ui.show_curves(run.run.metrics(), key=f"ev_curves_{run.name}")

st.subheader("Model card and exports")
card = read_model_card(run.name, ui.root())
if card is None:
    st.caption("This run has no model card (it is written when a run finishes).")
else:
    with st.expander("Model card: data, model, config, metrics and the command that trains it again"):
        st.code(card, language="markdown", wrap_lines=True)  # its wide tables as text: fits a phone
    st.download_button("Download model_card.md", card, file_name=f"{run.name}-model_card.md", mime="text/markdown",
                       key="ev_card_download", icon=":material/download:")
st.caption("Exports hold the best checkpoint as a standalone model (fp32, any batch size) for code without "
           "cnn_core: `torch.export.load` for .pt2, onnxruntime for .onnx; preprocessing.json says how to feed it.")
cols = st.columns(len(export.FORMATS) + 1)
for col, (fmt, file_name) in zip(cols, export.FORMATS.items()):
    missing = export.missing_packages(fmt)
    if col.button(f"Export {fmt}", key=f"ev_export_{fmt}", icon=":material/output:", disabled=bool(missing)):
        try:
            limits.check_disk(ui.root(), run.run.checkpoint().stat().st_size, limits.load_limits(), "the export")
            with st.spinner(f"Exporting {ui.esc(run.name)} as {fmt}…"):
                res = export.export_run(run.name, fmt, ui.root())
            col.success(f"{file_name}: {res['bytes'] / 1e6:.2f} MB")
        except CnnError as e:
            col.error(ui.esc(e))
    if missing:
        col.caption(f"Needs {', '.join(missing)}: `.venv/bin/pip install onnx onnxscript onnxruntime` "
                    "(into the project's venv).")
    path = run.run.file(file_name)
    if path.is_file():  # read only when clicked: an AlexNet export is hundreds of megabytes
        col.download_button(f"Download {file_name}", lambda p=path: p.read_bytes(),
                            file_name=f"{run.name}-{file_name}", mime="application/octet-stream",
                            key=f"ev_download_{fmt}", icon=":material/download:")
pre = run.run.file(export.PREPROCESSING)
if pre.is_file():
    cols[-1].download_button(f"Download {export.PREPROCESSING}", pre.read_text(), file_name=f"{run.name}-{pre.name}",
                             mime="application/json", key="ev_download_pre", icon=":material/download:")
