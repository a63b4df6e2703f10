"""The CNN classroom lab in a browser: ``streamlit run streamlit_app.py`` (or ``make run``).

This file is the router (``st.navigation``) and the home page. Every page is a short script in ``pages/`` over
cnn_core: widgets, one library call, render. Training runs in background subprocesses (cnn_core.jobs).

Streamlit would turn every file in ``pages/`` into a page of its own; once ``st.navigation`` runs (below) it
ignores that folder and shows exactly the pages listed in PAGES, so ``pages/ui.py`` (shared helpers) is no
page. Before any session has run it (the first visitor after a start), a page opened directly would run on
its own: each page's first line, ``ui.require_router``, sends that visit through here. Adding a page: one file
in ``pages/`` and one line in PAGES.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnn_core.data import dataset_table
from cnn_core.models import model_table
from cnn_core.runs.rundir import list_runs
from pages import ui

PAGES = [("pages/train.py", "Train", ":material/model_training:", "train",
          "Pick a dataset, a model and its options, and watch it learn."),
         ("pages/data.py", "Data", ":material/image_search:", "data", "Look at a dataset before training on it."),
         ("pages/evaluate.py", "Evaluate", ":material/fact_check:", "evaluate",
          "Accuracy, the confusion matrix, and the test images a model gets wrong."),
         ("pages/predict.py", "Predict", ":material/photo_camera:", "predict",
          "Upload or take a photo and see what a model thinks it shows."),
         ("pages/compare.py", "Compare", ":material/compare_arrows:", "compare",
          "Several runs side by side: accuracy, curves, per-class F1, one photo through all."),
         ("pages/sweep.py", "Sweep", ":material/grid_view:", "sweep",
          "Train every combination of a few settings and chart accuracy against each."),
         ("pages/runs.py", "Runs", ":material/folder_managed:", "runs",
          "Every run with its accuracy and date; rename or delete one.")]


@st.cache_data(show_spinner=False)
def models() -> pd.DataFrame:
    return pd.DataFrame(model_table())


def home() -> None:
    st.title("CNN classroom lab")
    st.write("Train convolutional networks on images, see how good they are, classify your own photos, and put "
             "models side by side. Everything runs on this server; pick a page.")
    cols = st.columns(len(PAGES))
    for col, (page, label, icon, _, text) in zip(cols, PAGES):
        with col.container(border=True):
            st.page_link(page, label=f"**{label}**", icon=icon)
            st.caption(text)

    runs = list_runs(ui.root())
    usable = [r for r in runs if ui.has_checkpoint(r)]
    st.subheader("Trained runs")
    if usable:
        st.write(f"{len(usable)} run{'s' * (len(usable) != 1)} ready to evaluate and predict with, in "
                 f"{ui.esc(ui.root())}. The newest:")
        st.dataframe(pd.DataFrame([{"run": r.name, "model": r.model, "dataset": r.dataset, "state": r.state,
                                    "epochs": r.epochs_run, "test accuracy": r.test_accuracy} for r in usable[:8]]),
                     hide_index=True, column_config={"test accuracy": st.column_config.NumberColumn(format="percent")})
    else:
        ui.no_runs_message()

    st.subheader("Models")
    st.caption("Parameter counts for 10 classes of colour images at the model's default input size; the Train "
               "page shows the count for the dataset you pick.")
    st.dataframe(models(), hide_index=True,
                 column_config={"params": st.column_config.NumberColumn("parameters", format="localized")})

    st.subheader("Datasets")
    st.dataframe(pd.DataFrame([{"dataset": r["dataset"], "description": r["description"],
                                "here": "yes" if r["present"] else "no (downloads on first use)"}
                               for r in dataset_table()]), hide_index=True)
    st.caption("Your own photos work too: a folder with one subfolder per class, as `folder:PATH` on the Train page.")


st.set_page_config(page_title="CNN classroom lab", page_icon=":material/neurology:", layout="wide")
nav = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True)]
                    + [st.Page(p, title=t, icon=i, url_path=u) for p, t, i, u, _ in PAGES])
ui.claim_operator()
if goto := ui.routed():  # a first visit that opened a page directly (see ui.require_router)
    st.switch_page(goto)
nav.run()
