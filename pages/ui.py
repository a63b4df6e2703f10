"""What the pages share: run pickers, cached cnn_core calls, Altair charts and small formatters.

No torch here and no second copy of core logic: every number comes from a cnn_core function.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageOps

from cnn_core.config import train_config as config
from cnn_core.config.argv import flag_text
from cnn_core.core import settings
from cnn_core.core.errors import CnnError
from cnn_core.data import data_dir, dataset_info, folder_datasets, is_photo_dataset, list_datasets, resolve_under_roots
from cnn_core.data.uploads import import_zip
from cnn_core.evaluation.examples import class_examples
from cnn_core.evaluation.explain import explain, grad_cam, overlay
from cnn_core.evaluation.predictor import Predictor
from cnn_core.evaluation.reports import run_report, split_images
from cnn_core.imaging.loader import MAX_BYTES
from cnn_core.jobs import limits
from cnn_core.jobs import manager as jobs
from cnn_core.models import model_table
from cnn_core.runs.rundir import FINISHED, RunDir, RunInfo, runs_root
from cnn_core.training.lr_curve import EXPLODE

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]  # tableau10: train and validation (or runs) must not be two shades of one colour
DISPLAY_SIDE = 640  # pixels: photos are shown (and sent to the browser) at most this large
LOW_CONFIDENCE = 0.5  # below this top probability the photo may show none of the classes
STATE_ICONS = {"finished": ":material/check_circle:", "stopped_early": ":material/check_circle:",
               "running": ":material/progress_activity:", "queued": ":material/schedule:",
               "cancelled": ":material/stop_circle:", "interrupted": ":material/warning:",
               "diverged": ":material/error:", "failed": ":material/error:", "unusable": ":material/block:"}


# ------------------------------------------------------------------------------------------ text, not markdown

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|:<>~$=^&])")


def esc(value: Any) -> str:
    """``value`` to put inside markdown (alerts, captions, labels) so that it shows as itself: a class folder
    named ``[Free answers](https://...)`` or ``![x](https://...)`` stays those characters, never a link, an image
    fetched from elsewhere, emphasis or a colour directive. Every user-controlled name, path and message
    goes through here (or through st.text / a dataframe cell, which are text already)."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))


def error(e: Exception | str) -> None:
    """A one-line error whose text (it may quote a path, a class or a file name) is shown as text."""
    st.error(esc(e))


# ------------------------------------------------------------------------------------------------- roles

OPERATOR, VISITOR_ID = "_ui_operator", "_ui_visitor"


@st.cache_resource(show_spinner=False)
def _own_token() -> str:
    """The operator secret when the server was started without scripts/serve.py (plain `streamlit run`): made
    once per server process and printed to its terminal, so only the person at that terminal can use it."""
    token = secrets.token_urlsafe(18)
    print(f"cnn_core: the operator link is this server's address with ?operator={token}", file=sys.stderr,
          flush=True)
    return token


def server_secret() -> str:
    """The operator secret: scripts/serve.py's (``CNN_OPERATOR_TOKEN``), else the one this server made itself."""
    return settings.operator_token() or _own_token()


def claim_operator() -> None:
    """On every run (the router calls it): a session that opened the operator link (``?operator=SECRET``) is the
    operator's from then on; the secret then leaves the address bar, so a shared screen does not show it."""
    given = st.query_params.get("operator")
    if given is None:
        return
    if secrets.compare_digest(str(given), server_secret()):
        st.session_state[OPERATOR] = True
    del st.query_params["operator"]


def is_operator() -> bool:
    return bool(st.session_state.get(OPERATOR))


def address_id(address: str, secret: str) -> str:
    """A visitor's id from their network address, keyed with the server's secret (HMAC-SHA-256): the same address
    is the same id while this server runs, and the id (recorded in runs' status.json, shown to nobody) neither
    reveals the address nor can be made for another address without the secret."""
    return hmac.new(secret.encode(), address.encode(), hashlib.sha256).hexdigest()[:16]


def visitor_id() -> str:
    """Whose jobs are whose: the client's address (``address_id``), so that a reload or a second tab is the same
    visitor, with the same limits and the Cancel of their own jobs (people behind one address, one NAT, are one
    visitor). A browser on this machine has no address (Streamlit gives none for localhost): this session's own
    token then."""
    address = st.context.ip_address
    if isinstance(address, str) and address:  # a str: AppTest's stand-in runtime answers a mock
        return address_id(address, server_secret())
    if VISITOR_ID not in st.session_state:
        st.session_state[VISITOR_ID] = secrets.token_hex(8)
    return st.session_state[VISITOR_ID]


def follow(job: Any, panel: Any, watching_key: str) -> None:
    """A job's panel in a frame, redrawn every second while the job is active (a fragment: the rest of the page
    stays put); the panel reruns the whole page once the job ends."""
    if job is None:
        return
    with st.container(border=True):
        if job.active:
            st.session_state[watching_key] = job.id
        st.fragment(panel, run_every=1.0 if job.active else None)(job.id)


def may_cancel(job: Any) -> bool:
    """The operator may stop any job; a visitor only their own."""
    return is_operator() or (bool(job.owner) and job.owner == visitor_id())


def cancel(manager: Any, job: Any) -> None:
    """Cancel ``job`` as this session (the manager checks the right again) and redraw the page."""
    try:
        manager.cancel(job.id, by=visitor_id(), operator=is_operator())
    except CnnError as e:
        error(e)
        return
    st.rerun()


def not_yours(job: Any) -> None:
    st.caption("Started " + ("from a terminal on the server" if getattr(job, "origin", "") == "terminal" else
                             "by someone else") + ": only they or the operator can stop it.")


def owner() -> str:
    """The owner recorded on this session's jobs ("" for the operator's, as for the command line)."""
    return "" if is_operator() else visitor_id()


def visitor_note(can: str, cannot: str) -> None:
    """One line telling a visitor what this page lets them do, instead of buttons that would fail."""
    if not is_operator():
        st.caption(f":material/person: You are a visitor: you can {can}. Only the operator (the student who "
                   f"started this server) can {cannot}.")


# ---------------------------------------------------------------------------------------------- the router

ROUTED, GOTO = "_ui_routed", "_ui_goto"


def require_router(page_file: str) -> None:
    """Make sure this page runs under the app's router (streamlit_app.py's st.navigation).

    Until some session has run st.navigation, Streamlit serves a ``pages/`` folder the old way: the first visitor
    after a server start who opens e.g. /predict directly gets that script alone, with every file of the folder
    (ui.py too) listed as a page. Such a visit goes to the router once, which then switches to this page."""
    claim_operator()  # before a switch of page, which drops the address's query
    if not st.session_state.get(ROUTED):
        st.session_state[GOTO] = f"pages/{Path(page_file).name}"
        st.switch_page(Path(page_file).resolve().parents[1] / "streamlit_app.py")


def routed() -> str | None:
    """Called by the router before it runs a page: marks the session routed; the page a first visit asked for."""
    st.session_state[ROUTED] = True
    return st.session_state.pop(GOTO, None)


# ------------------------------------------------------------------------------------------------------ runs

def root() -> Path:
    return runs_root()


@st.cache_data(show_spinner=False)
def smallest_model() -> str:
    """The default choice of the Train and Sweep pages: the fastest model to train, from the registry."""
    return min(model_table(), key=lambda r: r["params"])["model"]


def best_for_photos(runs: list[RunInfo]) -> int:
    """Where a photo from a phone is best sent: the most accurate finished run on colour photos (not a digits
    model, which would read a cat as a digit); the newest run when there is none."""
    photo = [(r.test_accuracy or 0.0, -i) for i, r in enumerate(runs)
             if r.state in FINISHED and is_photo_dataset(r.dataset)]
    return -max(photo)[1] if photo else 0


def has_checkpoint(run: RunInfo) -> bool:
    return run.run.has_checkpoint()


def checkpoint_mtime(run_dir: Path) -> float:
    """Part of every cache key, so a resumed or retrained run is never served from a stale cache."""
    return RunDir(run_dir).checkpoint_mtime()


def run_label(run: RunInfo) -> str:
    acc = f", test {run.test_accuracy:.1%}" if run.test_accuracy is not None else ""
    return f"{run.name} — {run.model} on {run.dataset} ({run.state.replace('_', ' ')}{acc})"


def no_runs_message() -> None:
    st.info(f"There are no trained runs in {esc(root())} yet. Train one on the **Train** page (LeNet-5 on the "
            "bundled *digits* dataset takes under a minute), or from a terminal: "
            "`python -m cnn_core train --model lenet5 --dataset digits --epochs 10`.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")


def pick_run(label: str, key: str, runs: list[RunInfo], help: str | None = None, first: int | None = None
             ) -> RunInfo | None:
    """A selectbox over ``runs`` (newest first), opening on ``first`` (default: the newest with a checkpoint);
    explains what to do when there are none."""
    if not runs:
        no_runs_message()
        return None
    names = [r.name for r in runs]
    if st.session_state.get(key) not in names:
        st.session_state.pop(key, None)  # a run that was deleted or renamed meanwhile
    by_name = {r.name: r for r in runs}
    if first is None:
        first = next((i for i, r in enumerate(runs) if has_checkpoint(r)), 0)
    name = st.selectbox(label, names, index=first, format_func=lambda n: run_label(by_name[n]), key=key,
                        help=help)
    return by_name[name]


# -------------------------------------------------------------------------------------------------- datasets

FOLDER = "folder:…"  # the choice that reveals a path box for a folder of class subfolders (the operator's)
SHARED = "shared:…"  # the choice that lists the photo folders found under the data roots (anyone's)
UPLOAD = "zip:…"  # the choice that reveals an upload of a zip of class folders


def first_present_dataset() -> str:
    """A page's first dataset: the first built-in that is here (nothing to download), else the first."""
    present = [d for d in list_datasets() if dataset_info(d).locate(data_dir())]
    return (present or list_datasets())[0]


def dataset_label(name: str) -> str:
    if name == FOLDER:
        return "A folder of class subfolders on the server (any path)"
    if name == SHARED:
        return "A photo folder on this server (from the class's data folders)"
    if name == UPLOAD:
        return "Your own photos (upload a zip of class folders)"
    info = dataset_info(name)
    return f"{name} — {info.description}" + ("" if info.locate(data_dir()) else " (not here: will download)")


def choose_dataset(prefix: str) -> tuple[str, str | None]:
    """The dataset choice of the Train page, for any page (widget keys ``<prefix>_dataset``, ...): a built-in, a
    zip upload or a photo folder under the data roots (anyone's), a free server path (the operator's only).
    Returns (choice, dataset): the dataset as TrainConfig names it, "" until the upload or path is given, None
    for a refused zip (its reason is on the page already)."""
    sources = list_datasets() + [UPLOAD] + ([SHARED] if shared_folders() else []) + (
        [FOLDER] if is_operator() else [])
    if st.session_state.get(f"{prefix}_dataset") not in sources:
        st.session_state.pop(f"{prefix}_dataset", None)
    choice = st.selectbox("Dataset", sources, key=f"{prefix}_dataset", format_func=dataset_label)
    if choice == UPLOAD:
        return choice, zip_dataset(prefix)
    if choice == SHARED:
        return choice, shared_dataset(prefix)
    if choice == FOLDER:
        return choice, server_folder(prefix)
    return choice, choice


def shared_dataset(prefix: str) -> str | None:
    """A pick list of the photo folders under the data roots (never a free path): ``folder:PATH`` of the one
    picked, checked to lie under the roots; None (its one-line reason shown) when it is gone since the list was
    made (an upload that expired within the list's minute of cache)."""
    rows = {r["name"]: r for r in shared_folders()}
    name = st.selectbox("Photo folder", list(rows), key=f"{prefix}_shared",
                        format_func=lambda n: f"{n} — {rows[n]['classes']} classes, {rows[n]['files']:,} files")
    if not name:
        return ""
    try:
        return f"folder:{resolve_under_roots(name)}"
    except CnnError as e:
        error(e)
        return None


def server_folder(prefix: str) -> str:
    """The operator's path box: ``folder:PATH`` once "Use this folder" was pressed for the path shown."""
    path = st.text_input("Folder on the server", key=f"{prefix}_folder", placeholder="/path/to/photos",
                         help="One subfolder per class (cats/, dogs/, ...), or train/ and test/ with those inside.")
    if st.button("Use this folder", key=f"{prefix}_folder_use", icon=":material/folder_open:",
                 help="Reads the folder now (typing does not: a path is scanned only when you ask)."):
        st.session_state[f"{prefix}_folder_used"] = path.strip()
    used = st.session_state.get(f"{prefix}_folder_used")
    return f"folder:{used}" if used and used == path.strip() else ""


def zip_dataset(prefix: str) -> str | None:
    """The upload box; an accepted zip becomes ``folder:PATH`` (its per-class counts shown), no upload yet "",
    a refused one None (its one-line reason shown)."""
    up = st.file_uploader("Zip of class folders", type="zip", key=f"{prefix}_zip",
                          max_upload_size=MAX_BYTES // 2**20,
                          help="One folder per class inside (cats/, dogs/, ...), or train/ and test/ with those "
                               "inside. The same zip uploaded again is not unpacked twice.")
    if up is None:
        return ""
    try:
        data = up.getvalue()
        limits.check_disk(settings.uploads_dir(), len(data), limits.load_limits(), "the unpacked zip")
        info = import_zip(data, in_use=jobs.manager().datasets_in_use())  # no upload expires under a job
    except CnnError as e:
        error(e)
        return None
    counts = info["counts"]
    st.dataframe(pd.DataFrame([{"class": c, **{s: counts[s].get(c, 0) for s in counts}} for c in info["classes"]]),
                 hide_index=True)
    for note in info["notes"]:
        (st.warning if note.startswith("warning") else st.caption)(esc(note))
    return f"folder:{info['path']}"


# ------------------------------------------------------------------------------------- cached cnn_core calls

@st.cache_data(ttl=60, show_spinner="Looking for photo folders…")
def shared_folders() -> list[dict[str, Any]]:
    """The photo folders under the data roots (a bounded scan, cached for a minute: it is the same for everyone)."""
    return folder_datasets()


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def predictor(run: str, runs_root: str, mtime: float) -> Predictor:
    """Shared by every session (read-only); ``mtime`` keys a changed checkpoint."""
    return Predictor.from_run(run, runs_root)


@st.cache_data(max_entries=32, show_spinner="Reading the run's evaluation…")
def evaluation(run: str, runs_root: str, mtime: float, split: str = "test") -> dict[str, Any]:
    """The run's saved report (evaluated afresh only when its checkpoint is newer)."""
    return run_report(run, split, runs_root)


@st.cache_data(max_entries=64, show_spinner=False)
def images_of(run: str, runs_root: str, mtime: float, split: str, indices: tuple[int, ...]) -> list[np.ndarray]:
    return split_images(run, split, list(indices), runs_root)


@st.cache_data(max_entries=32, show_spinner="Reading the run's losses…")
def loss_evaluation(run: str, runs_root: str, mtime: float, split: str = "test") -> dict[str, Any]:
    """The run's report with p(true class) per image: an older saved report is evaluated again when the data is
    here (see run_report's ``with_losses``)."""
    return run_report(run, split, runs_root, with_losses=True)


@st.cache_data(max_entries=64, show_spinner="Drawing the heatmaps…")
def heatmaps_of(run: str, runs_root: str, mtime: float, split: str, indices: tuple[int, ...],
                targets: tuple[int, ...], side: int = 64) -> list[np.ndarray]:
    """Gallery pictures with their heatmaps: each split image (enlarged to about ``side``) beside Grad-CAM for
    its class in ``targets`` (the report's prediction) over it."""
    pred = predictor(run, runs_root, mtime)
    out = []
    for pic, target in zip(images_of(run, runs_root, mtime, split, indices), targets):
        im = Image.fromarray(pic)
        big = enlarge(im, side).convert("RGB")
        out.append(np.asarray(side_by_side([big, overlay(big, grad_cam(pred, im, target).map)])))
    return out


@st.cache_data(max_entries=64, show_spinner="Looking inside the model…")
def explained(run: str, runs_root: str, mtime: float, digest: str, _data: bytes, target: str | None = None
              ) -> dict[str, Any]:
    """What the Why? and Inside views show of one photo (cached by the photo's ``digest``, not its bytes):
    the heatmap of ``target`` (default: the top class) over the photo and over the model's view, predict's top
    classes, each stage's strongest maps and the first layer's filters."""
    pred = predictor(run, runs_root, mtime)
    ex = explain(pred, _data, target, k=8, top=10)
    return {"label": ex.heatmap.label, "probability": ex.heatmap.probability, "grid": ex.heatmap.grid,
            **ex.overlays(DISPLAY_SIDE // 2, 224), "input": enlarge(ex.view, 160), "top_k": ex.top_k,
            "shape": (pred.channels, pred.size, pred.size), "prepared": pred.prepare is not None,
            "stages": [{"name": s.name, "shape": s.shape, "grid": s.grid()} for s in ex.stages],
            "filters": ex.filters}


@st.cache_data(max_entries=16, ttl=600, show_spinner=False)
def examples_of(run: str, runs_root: str, mtime: float) -> list[tuple[str, np.ndarray]]:
    """One image per class of the run's test split; [] when its data is absent or unreadable (Predict shows no
    strip then: the strip is a courtesy, not something to fail over)."""
    try:
        return class_examples(run, runs_root)
    except CnnError:
        return []


def example_strip(where: Any, run: RunInfo) -> None:
    """What the model knows, as pictures: a row of one example per class, when the run's data is here."""
    examples = examples_of(run.name, str(root()), checkpoint_mtime(run.path))
    if examples:
        where.image([tile(im, 56, 2) for _, im in examples], caption=[esc(name) for name, _ in examples], width=60)


def load_predictor(run: RunInfo) -> Predictor | None:
    """The run's predictor, or an error on the page (and None) when its checkpoint is unusable."""
    try:
        return predictor(run.name, str(root()), checkpoint_mtime(run.path))
    except CnnError as e:
        st.error(f"Run **{esc(run.name)}** cannot be used: {esc(e)}")
        return None


def explanation(run: RunInfo, data: bytes, target: str | None = None) -> dict[str, Any] | None:
    """``explained`` for a run and a photo's bytes (cached by their digest), or a one-line error and None."""
    try:
        return explained(run.name, str(root()), checkpoint_mtime(run.path), hashlib.sha256(data).hexdigest(), data,
                         target)
    except CnnError as e:
        st.error(f"Run **{esc(run.name)}** cannot explain this photo: {esc(e)}")
        return None


def load_evaluation(run: RunInfo, split: str = "test") -> dict[str, Any] | None:
    try:
        return evaluation(run.name, str(root()), checkpoint_mtime(run.path), split)
    except CnnError as e:
        st.error(f"Run **{esc(run.name)}** cannot be evaluated: {esc(e)}")
        return None


# ---------------------------------------------------------------------------------------------------- images

def enlarge(im: Image.Image | np.ndarray, side: int = 128) -> Image.Image:
    """Blow a tiny image up with hard pixel edges, so a 32x32 input looks like 32x32 and not like a blur."""
    im = Image.fromarray(im) if isinstance(im, np.ndarray) else im
    scale = max(1, side // max(im.size))
    return im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)


def tile(im: Image.Image | np.ndarray, side: int = 96, gap: int = 4) -> Image.Image:
    """A gallery picture: enlarged, with a white margin so that a row of them does not read as one image."""
    big = enlarge(im, side).convert("RGB")
    return ImageOps.expand(big, border=gap, fill="white")


def side_by_side(images: Sequence[Image.Image], gap: int = 2) -> Image.Image:
    """Pictures of one height in a row, a white gap between them, inside a white margin (as ``tile``)."""
    out = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1), max(im.height for im in images)),
                    "white")
    x = 0
    for im in images:
        out.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return ImageOps.expand(out, border=4, fill="white")


def thumbnail(im: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """A display copy: a 12-megapixel phone photo need not travel back to the browser in full."""
    small = im.copy()
    small.thumbnail((side, side))
    return small


def why_and_inside(run: RunInfo, data: bytes, key: str) -> None:
    """A photo's "Why?" view (the heatmap over the photo and over what the model sees, for the top class or, on a
    tap, the runner-up) and its "Inside the network" view (input, each stage's strongest maps, the class
    probabilities; the first layer's filters beside them), in the spirit of CNN Explainer."""
    ex = explanation(run, data)
    if ex is None:
        return
    with st.expander("Why? Where the model finds its evidence", expanded=True, icon=":material/visibility:"):
        labels = [t["label"] for t in ex["top_k"][:2]]
        target = st.segmented_control(
            "Heatmap of", labels, key=f"{key}_why", default=labels[0], required=True,
            format_func=lambda c: f"{esc(c)} ({'top class' if c == labels[0] else 'runner-up'})",
            help="Grad-CAM: where in the image the evidence for that class lies (bright: strong evidence).")
        if target and target != labels[0]:
            ex = explanation(run, data, target) or ex
        said = f"{esc(ex['label'])} ({ex['probability']:.0%})"
        if ex["prepared"]:  # the model saw the digit cut out of the photo: the map belongs to that view alone
            st.image(ex["view"], caption=f"{said}: over what the model sees ({ex['shape'][1]}x{ex['shape'][2]}, "
                     "the digit found and centred)", width=224)
        else:
            on_photo, on_view = st.columns([3, 2])
            on_photo.image(ex["photo"], caption=f"{said}: over the photo", width="stretch")
            on_view.image(ex["view"], caption=f"over what the model sees ({ex['shape'][1]}x{ex['shape'][2]})",
                          width="stretch")
    with st.expander("Inside the network: what each stage sees", icon=":material/layers:"):
        c, h, w = ex["shape"]
        st.caption(f"The image flows left to right (on a phone, top to bottom): the input ({c}×{h}×{w}), then each "
                   "convolutional stage's strongest activation maps (bright: that feature is found there), shaped "
                   "channels × height × width, then the class probabilities.")
        st.image([ex["input"], *[s["grid"] for s in ex["stages"]]], width=168,
                 caption=[f"input {c}×{h}×{w}"] + [f"{i}. {esc(s['name'])}: {'×'.join(map(str, s['shape']))}"
                                                 for i, s in enumerate(ex["stages"], 1)])
        probs, filters = st.columns([3, 2])
        probs.altair_chart(probability_chart(ex["top_k"][:5]), width="stretch", key=f"{key}_inside_probs")
        filters.image(ex["filters"], caption="the first layer's filters (gray is zero)", width="stretch")


def show_insight(run_dir: RunDir) -> None:
    """What training last saw inside the model (``RunDir.insight``, rewritten each epoch, so a followed job's
    panel shows the filters form): the fixed validation image, its heatmap and the first layer's filters."""
    info = run_dir.insight()
    try:
        pics = {k: p.read_bytes() for k, p in info.get("files", {}).items()}
    except OSError:  # the run was deleted meanwhile
        return
    if "heatmap" not in pics:
        return
    st.markdown(f"**Inside the model after epoch {info.get('epoch', '?')}**")
    st.caption(f"Each epoch it looks at the same validation image, a **{esc(info.get('label', '?'))}**: it says "
               f"**{esc(info.get('predicted', '?'))}** ({info.get('probability', 0):.0%}). The heatmap is where it "
               "finds its evidence; the filters are what its first layer looks for, formed as it trains.")
    names = {"image": "the image", "heatmap": f"heatmap of {esc(info.get('predicted', '?'))}",
             "filters": "first-layer filters"}
    shown = [k for k in names if k in pics]
    st.image([pics[k] for k in shown], caption=[names[k] for k in shown], width=160)


# ---------------------------------------------------------------------------------------------------- charts

def curves_frame(rows: Sequence[dict[str, float]]) -> pd.DataFrame:
    """metrics.csv rows as long form: epoch, metric (loss|accuracy), split (train|validation), value."""
    out = []
    for r in rows:
        for split, prefix in (("train", "train_"), ("validation", "val_")):
            for metric in ("loss", "accuracy"):
                if f"{prefix}{metric}" in r:
                    out.append({"epoch": int(r["epoch"]), "metric": metric, "split": split,
                                "value": float(r[f"{prefix}{metric}"])})
    return pd.DataFrame(out, columns=["epoch", "metric", "split", "value"])


def curve_chart(df: pd.DataFrame, metric: str, color: str = "split", title: str | None = None) -> alt.Chart:
    """One metric over epochs, a line per ``color`` value, with points (a 1-epoch run is still visible)."""
    data = df[df["metric"] == metric] if "metric" in df else df
    y_scale = alt.Scale(domain=[0, 1]) if metric == "accuracy" else alt.Scale(zero=False)
    return (alt.Chart(data)
            .mark_line(point=True)
            .encode(x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
                    y=alt.Y("value:Q", title=title or metric, scale=y_scale,
                            axis=alt.Axis(format=".0%") if metric == "accuracy" else alt.Axis()),
                    color=alt.Color(f"{color}:N", title=None, scale=alt.Scale(range=PALETTE),
                                    # runs have long names: one per line under the chart, never cut off
                                    legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)
                                    if color == "run" else alt.Legend(orient="top")),
                    tooltip=["epoch:Q", f"{color}:N", alt.Tooltip("value:Q", format=".4f")])
            .properties(height=300))


def show_curves(rows: Sequence[dict[str, float]], key: str) -> None:
    """Loss and accuracy side by side (stacked on a phone), train against validation."""
    df = curves_frame(rows)
    if df.empty:
        st.caption("No finished epoch yet.")
        return
    left, right = st.columns(2)
    left.altair_chart(curve_chart(df, "loss"), width="stretch", key=f"{key}_loss")
    right.altair_chart(curve_chart(df, "accuracy"), width="stretch", key=f"{key}_acc")


def confusion_frame(cm: Sequence[Sequence[int]], classes: Sequence[str]) -> pd.DataFrame:
    m = np.asarray(cm)
    totals = m.sum(1, keepdims=True)
    share = np.divide(m, totals, out=np.zeros(m.shape, dtype=float), where=totals > 0)
    return pd.DataFrame([{"true": classes[i], "predicted": classes[j], "count": int(m[i, j]),
                          "share": float(share[i, j])} for i in range(len(m)) for j in range(len(m))])


def label_angle(names: Sequence[str]) -> int:
    """Short names (digits) stay level; longer ones stand upright so that every class gets its label."""
    return 0 if max(map(len, names), default=0) <= 3 else -90


def matrix_height(n: int) -> int:
    """Room for every row label (Vega drops labels that would overlap) plus the axes, which fit inside."""
    return max(260, min(900, 34 * n + 110))


def class_axes(order: list[str]) -> dict[str, Any]:
    """x = predicted (on top, slanted when the names are long), y = true, both in the dataset's class order."""
    angle = label_angle(order)
    return {"x": alt.X("predicted:N", sort=order, title="predicted class",
                       axis=alt.Axis(labelAngle=angle, orient="top", labelLimit=120, labelOverlap=False)),
            "y": alt.Y("true:N", sort=order, title="true class", axis=alt.Axis(labelLimit=120, labelOverlap=False))}


def confusion_chart(cm: Sequence[Sequence[int]], classes: Sequence[str], selectable: bool = True) -> alt.LayerChart:
    """Rows are the true class, columns the prediction; colour is the share of the row, the text the count."""
    df = confusion_frame(cm, classes)
    order = list(classes)
    side = matrix_height(len(order))
    base = alt.Chart(df).encode(**class_axes(order))
    rect = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("share:Q", legend=None,
                        scale=alt.Scale(domain=[0, 1], range=["#ffffff", "#08519c"], interpolate="rgb")),
        tooltip=["true:N", "predicted:N", "count:Q", alt.Tooltip("share:Q", format=".1%", title="share of row")])
    text = base.mark_text(fontSize=12 if len(order) <= 12 else 9).encode(
        text=alt.Text("count:Q"),
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")))
    if selectable:  # the clicked cell gets a frame; nothing is framed until one is clicked
        cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click", clear="dblclick",
                                   empty=False)
        rect = rect.add_params(cell).encode(
            stroke=alt.condition(cell, alt.value("#d62728"), alt.value("white")),
            strokeWidth=alt.condition(cell, alt.value(3), alt.value(1)))
    return alt.layer(rect, text).properties(height=side)


def confusion_diff_chart(cm_a: Sequence[Sequence[int]], cm_b: Sequence[Sequence[int]], classes: Sequence[str],
                         label_a: str, label_b: str) -> alt.LayerChart:
    """B minus A per cell. Colour says "better for B": more on the diagonal, or fewer off it."""
    a, b = np.asarray(cm_a), np.asarray(cm_b)
    d = b - a
    order = list(classes)
    df = pd.DataFrame([{"true": order[i], "predicted": order[j], "difference": int(d[i, j]), "a": int(a[i, j]),
                        "b": int(b[i, j]), "gain": int(d[i, j]) if i == j else -int(d[i, j])}
                       for i in range(len(d)) for j in range(len(d))])
    lim = max(1, int(np.abs(d).max()))
    base = alt.Chart(df).encode(**class_axes(order))
    rect = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("gain:Q", scale=alt.Scale(scheme="redblue", domain=[-lim, lim]),
                        legend=alt.Legend(title=f"blue: better for {label_b[:24]}", orient="bottom")),
        tooltip=["true:N", "predicted:N", alt.Tooltip("difference:Q", format="+d"),
                 alt.Tooltip("a:Q", title=label_a), alt.Tooltip("b:Q", title=label_b)])
    text = base.mark_text(fontSize=12 if len(order) <= 12 else 9).encode(
        text=alt.Text("difference:Q", format="+d"),
        opacity=alt.condition(alt.datum.difference == 0, alt.value(0.3), alt.value(1.0)))
    return alt.layer(rect, text).properties(height=matrix_height(len(order)))


def f1_chart(df: pd.DataFrame) -> alt.Chart:
    """Per-class F1 (columns run, class, F1) as grouped bars, one colour per run."""
    order = list(dict.fromkeys(df["class"]))
    return (alt.Chart(df).mark_bar()
            .encode(x=alt.X("class:N", sort=order, title=None,
                            axis=alt.Axis(labelAngle=label_angle(order), labelOverlap=False)),
                    xOffset=alt.XOffset("run:N"),
                    y=alt.Y("F1:Q", scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("run:N", title=None, scale=alt.Scale(range=PALETTE),
                                    legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)),
                    tooltip=["run:N", "class:N", alt.Tooltip("F1:Q", format=".3f")])
            .properties(height=280))


def probability_chart(top: Sequence[dict[str, Any]]) -> alt.Chart:
    """Horizontal bars, most likely class on top, with the percentage written at the end of each bar."""
    df = pd.DataFrame(top)
    order = list(df["label"])
    base = alt.Chart(df).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=160)),
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.08]),  # room for the label of a 100% bar
                axis=alt.Axis(format=".0%", values=[0, 0.25, 0.5, 0.75, 1]), title=None))
    bars = base.mark_bar(cornerRadiusEnd=3).encode(
        color=alt.condition(alt.datum.probability >= LOW_CONFIDENCE, alt.value("#1f77b4"), alt.value("#9ecae1")),
        tooltip=["label:N", alt.Tooltip("probability:Q", format=".2%")])
    text = base.mark_text(align="left", dx=4).encode(text=alt.Text("probability:Q", format=".1%"))
    return alt.layer(bars, text).properties(height=44 * len(df) + 40)  # the axis fits inside the height


SWEEP_METRICS = {"best_val_accuracy": "best validation", "test_accuracy": "test"}


def sweep_frame(rows: Sequence[dict[str, Any]], key: str) -> pd.DataFrame:
    """Long form of a sweep table for one setting: run, value (text), metric (best validation | test), accuracy."""
    out = [{"run": r["run"], "value": flag_text(r.get(key)), "metric": label, "accuracy": float(r[col])}
           for r in rows for col, label in SWEEP_METRICS.items() if r.get(col) is not None]
    return pd.DataFrame(out, columns=["run", "value", "metric", "accuracy"])


def sweep_chart(rows: Sequence[dict[str, Any]], key: str) -> alt.LayerChart:
    """Accuracy against one swept setting: a point per run and metric, a line through each value's mean."""
    df = sweep_frame(rows, key)
    order = [flag_text(v) for v in sorted({r.get(key) for r in rows if r.get(key) is not None})]
    base = alt.Chart(df).encode(
        x=alt.X("value:N", sort=order, title=key.replace("_", " "), axis=alt.Axis(labelAngle=0)),
        color=alt.Color("metric:N", title=None, legend=alt.Legend(orient="top"), scale=alt.Scale(range=PALETTE)))
    points = base.mark_point(filled=True, size=70, opacity=0.8).encode(
        y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(zero=False), axis=alt.Axis(format=".0%")),
        tooltip=["run:N", "value:N", "metric:N", alt.Tooltip("accuracy:Q", format=".2%")])
    mean = base.mark_line(strokeDash=[4, 3]).encode(y=alt.Y("mean(accuracy):Q"))
    return alt.layer(points, mean).properties(height=260)


def lr_chart(result: dict[str, Any]) -> alt.LayerChart:
    """A learning-rate finder's curve (training.lr_curve.LrFindResult's fields) on a log rate axis: each batch's
    loss as faint points, the smoothed loss as a line, the valley shaded and the suggested rate as a red rule.
    The loss axis spans the descent (from the highest smoothed loss before the lowest point, down to the lowest),
    with room above it: the blown-up losses past the explosion would flatten everything else."""
    df = pd.DataFrame({"lr": result["lrs"], "loss": result["losses"], "smoothed": result["smoothed"]})
    lowest = int(df["smoothed"].idxmin())
    low, high = float(df["smoothed"].min()), float(df["smoothed"][:lowest + 1].max())
    span = max(high - low, 1e-3)
    y_scale = alt.Scale(domain=[low - 0.1 * span, min(high + 0.6 * span, EXPLODE * low)])  # marks clip the rest
    decades = [10.0 ** e for e in range(math.floor(math.log10(df["lr"].min())),
                                        math.ceil(math.log10(df["lr"].max())) + 1)]
    x = alt.X("lr:Q", title="learning rate", scale=alt.Scale(type="log"),
              axis=alt.Axis(values=decades, format="~e", labelOverlap=True))
    lo, hi = result["falling"]
    marks = pd.DataFrame({"lo": [lo], "hi": [hi], "suggestion": [result["suggestion"]]})
    valley = alt.Chart(marks).mark_rect(color=PALETTE[2], opacity=0.15).encode(
        x=alt.X("lo:Q", title="learning rate"), x2="hi:Q")
    raw = alt.Chart(df).mark_point(size=12, opacity=0.35, color=PALETTE[7], clip=True).encode(
        x=x, y=alt.Y("loss:Q", scale=y_scale, title="training loss"),
        tooltip=[alt.Tooltip("lr:Q", title="learning rate", format=".2e"), alt.Tooltip("loss:Q", format=".4f")])
    line = alt.Chart(df).mark_line(color=PALETTE[0], clip=True).encode(
        x=x, y=alt.Y("smoothed:Q", scale=y_scale, title="training loss"),
        tooltip=[alt.Tooltip("lr:Q", title="learning rate", format=".2e"),
                 alt.Tooltip("smoothed:Q", format=".4f")])
    rule = alt.Chart(marks).mark_rule(color=PALETTE[3], strokeWidth=2).encode(
        x=alt.X("suggestion:Q", title="learning rate"),
        tooltip=[alt.Tooltip("suggestion:Q", title="suggested", format=".2g")])
    return alt.layer(valley, raw, line, rule).properties(height=260)


# -------------------------------------------------------------------------------------------- config widgets

STEPS = {"lr": 0.001, "weight_decay": 0.0001, "label_smoothing": 0.05, "val_fraction": 0.05, "momentum": 0.01,
         "train_subset": 100}  # how far one click moves a number box


def config_widget(name: str, prefix: str, where: Any = st) -> Any:
    """The widget for TrainConfig field ``name`` (key ``{prefix}_{name}``): its label, help, bounds and choices
    come from the field's metadata, the one place they are stated."""
    m, kind, key = config.meta(name), config.kind(name), f"{prefix}_{name}"
    if m.choices:
        return where.selectbox(m.label, m.choices, key=key, help=m.help)
    if kind is bool:
        return where.checkbox(m.label, key=key, help=m.help)
    lo, hi = m.widget_bounds()
    if kind is int:
        return where.number_input(m.label, int(lo), int(hi), key=key, help=m.help, step=STEPS.get(name, 1))
    return where.number_input(m.label, float(lo), float(hi), key=key, help=m.help, format="%g",
                              step=STEPS.get(name, 0.01))


def widget_value(name: str, value: Any) -> Any:
    """A config value as its widget holds it (number boxes of real-valued fields hold floats)."""
    return float(value) if config.kind(name) is float else value


# ---------------------------------------------------------------------------------------------- formatting

def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def count(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.1f} M" if n >= 1_000_000 else f"{n:,}"
