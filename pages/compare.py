"""Compare: several runs side by side, and one photo through all of them."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import streamlit as st

from cnn_core.core.errors import ImageError
from cnn_core.runs.rundir import list_runs
from cnn_core.workflows.sweep import list_sweeps, read_sweep
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router


def load_sweep(usable: list[str]) -> None:
    """A sweep picked: its runs (those with a checkpoint) become the selection."""
    name = st.session_state.cmp_sweep
    if name:
        st.session_state.cmp_runs = [r["run"] for r in read_sweep(name, ui.root()) if r["run"] in usable]

st.title("Compare")
runs = [r for r in list_runs(ui.root()) if ui.has_checkpoint(r)]
if len(runs) < 2:
    if runs:
        st.info("Comparing needs at least two trained runs; there is one. Train another on the **Train** page.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    else:
        ui.no_runs_message()
    st.stop()

by_name = {r.name: r for r in runs}
sweep_runs = {s["name"]: s["runs"] for s in list_sweeps(ui.root())}
if sweep_runs:
    st.selectbox("Load a sweep's runs (optional)", ["", *sweep_runs], key="cmp_sweep", on_change=load_sweep,
                 args=(list(by_name),), format_func=lambda n: f"{n} ({sweep_runs[n]} runs)" if n else "—",
                 help="Selects every trained run of the sweep; add or remove runs below.")
if "cmp_runs" not in st.session_state:
    st.session_state.cmp_runs = [r.name for r in runs[:2]]
st.session_state.cmp_runs = [n for n in st.session_state.cmp_runs if n in by_name]
chosen = st.multiselect("Runs", list(by_name), key="cmp_runs", format_func=lambda n: ui.run_label(by_name[n]))
if len(chosen) < 2:
    st.info("Pick two or more runs.")
    st.stop()

reports: dict[str, dict] = {}
for name in chosen:
    rep = ui.load_evaluation(by_name[name])
    if rep is not None:
        reports[name] = rep

rows = []
for name in chosen:
    status = by_name[name].run.status()
    rep = reports.get(name)
    rows.append({"run": name, "model": by_name[name].model, "dataset": by_name[name].dataset,
                 "test accuracy": rep["accuracy"] if rep else by_name[name].test_accuracy,  # status.json's
                 "macro-F1": rep["macro_f1"] if rep else None,
                 "parameters": status.get("params"), "epochs": status.get("epochs_run", by_name[name].epochs_run),
                 "train time": ui.duration(status.get("train_seconds")), "images/s": status.get("images_per_second"),
                 "device": status.get("device", "?")})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={"test accuracy": st.column_config.NumberColumn(format="percent"),
                            "macro-F1": st.column_config.NumberColumn(format="%.3f"),
                            "parameters": st.column_config.NumberColumn(format="localized"),
                            "images/s": st.column_config.NumberColumn(format="%.0f")})

st.subheader("Validation curves")
curves = pd.concat([ui.curves_frame(by_name[n].run.metrics()).assign(run=n) for n in chosen], ignore_index=True)
curves = curves[curves["split"] == "validation"]
if curves.empty:
    st.caption("No finished epochs to draw.")
else:
    left, right = st.columns(2)
    left.altair_chart(ui.curve_chart(curves, "loss", color="run", title="validation loss"), width="stretch",
                      key="cmp_val_loss")
    right.altair_chart(ui.curve_chart(curves, "accuracy", color="run", title="validation accuracy"),
                       width="stretch", key="cmp_val_acc")

if reports:
    st.subheader("F1 per class")
    f1 = pd.DataFrame([{"run": n, "class": c["class"], "F1": c["f1"]} for n, rep in reports.items()
                       for c in rep["per_class"]])
    st.altair_chart(ui.f1_chart(f1), width="stretch", key="cmp_f1")

st.subheader("Where two runs differ")
same = [n for n in chosen if n in reports]
a_col, b_col = st.columns(2)
run_a = a_col.selectbox("Run A", same, index=0, key="cmp_a")
run_b = b_col.selectbox("Run B", same, index=min(1, len(same) - 1), key="cmp_b")
if run_a and run_b:
    ra, rb = reports[run_a], reports[run_b]
    if run_a == run_b:
        st.caption("Pick two different runs.")
    elif ra["classes"] != rb["classes"]:
        st.info(f"{ui.esc(run_a)} and {ui.esc(run_b)} tell different classes apart; their confusion matrices "
                "cannot be subtracted. Pick two runs trained on the same dataset.")
    else:
        st.caption(f"Confusion matrix of **{ui.esc(run_b)}** minus that of **{ui.esc(run_a)}**, on the test split. "
                   f"Blue cells are better for {ui.esc(run_b)}: more right on the diagonal, fewer mistakes off it.")
        st.altair_chart(ui.confusion_diff_chart(ra["confusion_matrix"], rb["confusion_matrix"], ra["classes"],
                                                run_a, run_b), width="stretch", key="cmp_diff")

st.subheader("One photo, every model")
photo = st.file_uploader("Photo", type=ui.UPLOAD_TYPES, key="cmp_photo")
if photo is not None:
    answers, shown = [], None
    for name in chosen:
        pred = ui.load_predictor(by_name[name])
        if pred is None:
            continue
        try:
            im = pred.load(photo.getvalue())
            top, _, doubt = pred.look(im, 3)
        except ImageError as e:
            st.error(f"**{ui.esc(photo.name)}**: {ui.esc(e)}")
            break
        shown = shown or im
        answers.append({"run": name, "prediction": top[0]["label"], "probability": top[0]["probability"],
                        "runner-up": ", ".join(f"{t['label']} {t['probability']:.0%}" for t in top[1:]),
                        "classes": tuple(pred.classes), "doubt": doubt})
    if answers:
        if len({a["classes"] for a in answers}) > 1:  # a digits model and a photo model have nothing to vote on
            for a in answers:
                a["agrees"] = ""
            st.info("These models know different classes, so they do not vote: each one's answer is below.")
        else:
            majority, n = Counter(a["prediction"] for a in answers).most_common(1)[0]
            for a in answers:
                a["agrees"] = "✓" if a["prediction"] == majority else "✗"
            if n == len(answers):
                st.success(f"All {n} models agree: **{ui.esc(majority)}**.")
            else:
                st.warning(f"The models disagree: {n} of {len(answers)} say **{ui.esc(majority)}**.")
        unsure = [a for a in answers if a["probability"] < ui.LOW_CONFIDENCE or a["doubt"]]
        if unsure:
            why = ", ".join(f"{ui.esc(a['run'])} ({ui.esc(a['doubt'] or format(a['probability'], '.0%'))})"
                            for a in unsure)
            st.warning(f"Low confidence from {why}: the photo may show none of the classes those models know, "
                       "or something they rarely saw in training.")
        img_col, table_col = st.columns([1, 3])
        img_col.image(ui.thumbnail(shown, 320), caption=ui.esc(photo.name), width="stretch")
        table_col.dataframe(pd.DataFrame(answers)[["agrees", "run", "prediction", "probability", "runner-up"]],
                            hide_index=True, width="stretch",
                            column_config={"probability": st.column_config.ProgressColumn(
                                format="percent", min_value=0, max_value=1)})
        st.markdown("**Where each model looks**")
        st.caption("Each model's heatmap (Grad-CAM) for its own answer, over the photo as that model sees it: "
                   "bright is where its evidence lies. Two models can be right for different reasons.")
        views = [(a["run"], ui.explanation(by_name[a["run"]], photo.getvalue())) for a in answers]
        views = [(name, ex) for name, ex in views if ex is not None]
        # one call: side by side on a laptop, two across on a phone
        st.image([ex["view"] for _, ex in views], width=168,
                 caption=[f"{ui.esc(name)}: {ui.esc(ex['label'])} {ex['probability']:.0%}" for name, ex in views])
