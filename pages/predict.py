"""Predict: upload photos (or take one) and see a trained model's top classes, and the image as it sees it.

Every file goes through the one safe loader (Predictor.load): a file that is not a usable image gets its own
message and the others carry on.
"""

from __future__ import annotations

import streamlit as st

from cnn_core.core.errors import ImageError
from cnn_core.imaging.loader import load_image
from cnn_core.runs.rundir import list_runs
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router

st.title("Predict")
runs = [r for r in list_runs(ui.root()) if ui.has_checkpoint(r)]
run = ui.pick_run("Model (a trained run)", "pr_run", runs, first=ui.best_for_photos(runs),
                  help="Opens on the most accurate model of colour photos; digit models know only digits.")
if run is None:
    st.stop()
pred = ui.load_predictor(run)
if pred is None:
    st.stop()

kind = "grayscale" if pred.channels == 1 else "colour"
st.caption(f"{run.model} trained on {ui.esc(run.dataset)}: {len(pred.classes)} classes "
           f"({ui.esc(', '.join(pred.classes[:12]))}"
           f"{', …' if len(pred.classes) > 12 else ''}); it looks at {pred.size}x{pred.size} {kind} images"
           + (", and finds the digit in a photo (light on dark, centred) as its training digits were made."
              if pred.prepare else "."))
strip = st.container()  # examples of the classes, filled once the upload widgets are on the page
k = st.slider("Classes to show", 1, min(10, len(pred.classes)), min(3, len(pred.classes)), key="pr_k",
              help="The most likely classes, best first.")
files = st.file_uploader("Photos", type=ui.UPLOAD_TYPES, accept_multiple_files=True, key="pr_files",
                         help="JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF, up to 10 MB each.")
shot = None
if st.toggle("Use the camera", key="pr_camera_on"):
    shot = st.camera_input("Take a photo", key="pr_camera")

items = [(f.name, f.getvalue()) for f in files or []] + ([("camera photo", shot.getvalue())] if shot else [])
ui.example_strip(strip, run)
if not items:
    st.info("Upload one or more photos (or switch the camera on) to see what the model thinks they show.")
    st.stop()

for n, (name, data) in enumerate(items):
    with st.container(border=True):
        try:
            im = pred.load(data)
        except ImageError as e:
            st.error(f"**{ui.esc(name)}**: {ui.esc(e)}")
            continue
        top, view, doubt = pred.look(im, k)
        best = top[0]
        original, seen, probs = st.columns([2, 1, 3])
        # the model's copy of a JPEG is decoded at reduced size; show the photo itself at screen size
        original.image(ui.thumbnail(load_image(data, draft_size=ui.DISPLAY_SIDE)), caption=ui.esc(name),
                       width="stretch")
        seen.image(ui.enlarge(view, 192), caption=f"what the model sees ({pred.size}x{pred.size}"
                   f"{', the digit found and centred' if pred.prepare else ''})", width="content")
        with probs:
            st.markdown(f"### {ui.esc(best['label'])} · {best['probability']:.1%}")
            st.altair_chart(ui.probability_chart(top), width="stretch", key=f"pr_bars_{n}")
            if doubt:
                st.warning(f"Low confidence: {ui.esc(doubt)}, and this model knows only "
                           f"{ui.esc(', '.join(pred.classes[:12]))}; its answer means little here.")
            elif best["probability"] < ui.LOW_CONFIDENCE:
                st.warning(f"Low confidence ({best['probability']:.0%}): the photo may show none of the classes this "
                           f"model knows, or something it rarely saw in training.")
        ui.why_and_inside(run, data, key=f"pr_{n}")
