"""Data: look at a dataset before training on it, as the trainer will see it (its split, statistics and own
augmentation): class counts, random images per class, exact copies between the splits.

The prepared dataset and its summary are shared by every session for two minutes (photos added to a folder show
after that): a second look, or a shuffle, then costs the pictures only (0.3 s for CIFAR-10, against 1 to 3 s to
prepare it from the decode cache on a busy 2-core machine).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from cnn_core.core.errors import CnnError
from cnn_core.data import data_dir
from cnn_core.data.inspect import sheet
from cnn_core.engine import preview
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router

PER_CLASS = 8  # random images per class
MAX_CLASSES = 30  # rows of images (a dataset of 101 classes would be a long scroll)
AUGMENTED = 4, 5  # images, augmented draws of each


@st.cache_resource(max_entries=2, ttl=120, show_spinner="Preparing the dataset as the trainer does…")
def looked(dataset: str, ddir: str) -> preview.Look:
    """Shared by every session (read-only)."""
    return preview.look(dataset, ddir)


def counts_chart(s: preview.Summary) -> alt.Chart:
    """Images per class, a stacked bar per class (train, val, test); a flagged class is marked by its name."""
    names = [c + (" ⚠" if c in s.small else "") for c in s.classes]
    rows = [{"class": n, "split": split, "images": s.counts[split][i], "order": k}
            for k, split in enumerate(preview.SPLITS) for i, n in enumerate(names)]
    return alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        y=alt.Y("class:N", sort=names, title=None),
        x=alt.X("images:Q", stack="zero", title="images"),
        color=alt.Color("split:N", sort=list(preview.SPLITS), scale=alt.Scale(range=ui.PALETTE[:3]),
                        legend=alt.Legend(orient="top", title=None)),
        order=alt.Order("order:Q"),
        tooltip=["class", "split", "images"]).properties(height=24 * len(names) + 110)  # axis and legend inside


if "da_seed" not in st.session_state:
    st.session_state.da_seed = 0
if "da_dataset" not in st.session_state:
    st.session_state.da_dataset = ui.first_present_dataset()

st.title("Data")
st.caption("Look before you train: the images of a dataset and how many there are of each class, split and "
           "augmented exactly as a training run with the Train page's defaults would.")
ui.visitor_note("look at the built-in datasets, the class's photo folders and a zip of your own photos",
                "look at any folder of the server")
choice, dataset = ui.choose_dataset("da")
if not dataset:
    if dataset == "":  # None: a refused zip, whose reason is on the page already
        st.info("Upload a zip of your photos (one folder per class)." if choice == ui.UPLOAD else
                "Enter the folder that holds your photos (one subfolder per class), then press Use this folder.")
    st.stop()
try:
    lk = looked(dataset, str(data_dir()))
except CnnError as e:
    ui.error(e)
    st.stop()
s = lk.summary

kind = {1: "grayscale", 3: "RGB"}.get(s.channels, f"{s.channels} channels")
per_channel = " / ".join(f"{m:.3f}" for m in s.mean), " / ".join(f"{v:.3f}" for v in s.std)
st.markdown(f"**{s.height}×{s.width}** pixels, **{s.channels}** channel{'s' * (s.channels > 1)} ({kind}) · "
            f"mean **{per_channel[0]}** · standard deviation **{per_channel[1]}**")
st.caption("Per channel on the 0..1 scale, over the training split: what training normalises with.")

st.subheader("Images per class")
st.altair_chart(counts_chart(s), width="stretch", key="da_counts")
st.caption(f"{sum(s.counts['train']):,} train / {sum(s.counts['val']):,} val / {sum(s.counts['test']):,} test. "
           f"Split: {ui.esc(s.split_rule)}.")
if s.small:
    st.warning(f"Small class{'es' * (len(s.small) > 1)} (⚠): {ui.esc(', '.join(s.small[:10]))} — "
               f"{s.small_rule}. The model sees few examples of them; add photos or expect them to be missed.")

n_test, n_val = s.copies["test"], s.copies["val"]
if n_test or n_val:
    st.warning(f"Split check: {n_test:,} test and {n_val:,} validation images are exact copies of training "
               "images, so accuracy on them partly measures memory, not generalisation.")
    if s.examples:
        st.image(sheet([[lk.prep.x_test[t].cpu().numpy() for t, _ in s.examples]]), width="content",
                 output_format="PNG", caption="some of the test images that are also in train")
else:
    st.caption(f":material/check: Split check: none of the {sum(s.counts['test']):,} test or "
               f"{sum(s.counts['val']):,} validation images is an exact copy of a training image (pixel hashes).")

st.subheader("Random images")
if st.button("Shuffle", key="da_shuffle", icon=":material/shuffle:", help="Other random images of each class."):
    st.session_state.da_seed += 1
rows = preview.samples(lk, PER_CLASS, st.session_state.da_seed)
for name, row in list(zip(s.classes, rows))[:MAX_CLASSES]:
    if row:
        st.image(sheet([row]), caption=ui.esc(name), width="content", output_format="PNG")
if len(s.classes) > MAX_CLASSES:
    st.caption(f"The first {MAX_CLASSES} of {len(s.classes)} classes.")

st.subheader("Augmentation")
st.image(sheet(preview.augment_preview(lk, *AUGMENTED, st.session_state.da_seed)), width="content",
         output_format="PNG",
         caption=f"Left: a training image; then {AUGMENTED[1]} draws of the trainer's own augmentation, one per epoch.")
st.caption(f"With **Augment** on (Train page), each training image gets {preview.augmentation_text(lk)}, anew "
           "every epoch; validation and test images are never augmented.")
