"""Train: build a TrainConfig from widgets, start it as a background job, and watch it learn; resume a stopped
run, or train a finished one a few epochs more.

The job is a subprocess owned by the process-wide cnn_core.jobs manager, so switching pages, reloading or
closing the tab does not stop it; this page only reads its run folder (polled by a fragment).
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from cnn_core.config import PRESETS, TrainConfig
from cnn_core.config.train_config import FIELDS, meta
from cnn_core.core.errors import CnnError
from cnn_core.data import list_datasets
from cnn_core.engine import distributed
from cnn_core.engine.device import device_name, pick_device
from cnn_core.jobs import estimate as estimates
from cnn_core.jobs import limits
from cnn_core.jobs import manager as jobs
from cnn_core.models import get_spec, list_models, make_config
from cnn_core.runs.rundir import FINISHED, RESUMABLE, list_runs
from cnn_core.training.estimate import Estimate, estimate_epoch
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router

OPTIONS = [n for n in FIELDS if n not in ("model", "dataset", "preset", "extra")]


@st.cache_data(max_entries=64, show_spinner="Sizing up the model on this dataset…")
def size_up(cfg: dict) -> Estimate:
    """Parameters and batches (nothing trains here: timing runs in a subprocess, jobs.estimate)."""
    return estimate_epoch(TrainConfig.from_dict(cfg), measure=False)


def apply_options(cfg: TrainConfig) -> None:
    """Put a config's options into the widgets."""
    for name in OPTIONS:
        st.session_state[f"tr_{name}"] = ui.widget_value(name, getattr(cfg, name))


def on_model_change() -> None:
    apply_options(make_config(model=st.session_state.tr_model))


def on_preset_change() -> None:
    """A recipe: its model's defaults under the recipe's options (the one merge, config.merge)."""
    name = st.session_state.tr_preset
    if name:
        cfg = make_config(preset=name)
        st.session_state.tr_model = cfg.model
        apply_options(cfg)
        if PRESETS[name].get("dataset") in list_datasets():
            st.session_state.tr_dataset = cfg.dataset


def measure(cfg: TrainConfig, timing_key: dict, why: str = "") -> dict:
    """Time a few real steps of ``cfg`` in a subprocess (jobs.estimate): seconds per epoch, the start-up a training
    process spends before its first batch, and whether another job was training meanwhile (then it is slower)."""
    busy = bool(jobs.manager().running())
    with st.spinner(f"Timing a few training steps{why}…"):
        est = estimates.measure(cfg)
    timing = {"epoch": est["seconds_per_epoch"], "startup": est["startup_seconds"],
              "loaded": busy or bool(jobs.manager().running())}
    st.session_state.setdefault("tr_timing", {})[str(timing_key)] = timing
    return timing


def timed_options(cfg: TrainConfig) -> dict:
    """The options an epoch's time depends on: the key of its measured timing."""
    return {k: v for k, v in cfg.to_dict().items()
            if k in ("model", "dataset", "batch_size", "augment", "input_size", "train_subset", "max_batches",
                     "precision", "device", "val_fraction", "seed", "optimizer")}


def job_seconds(cfg: TrainConfig, timing_key: dict) -> float | None:
    """The estimated time of the whole job; a visitor's request is always measured first, so the server can hold
    it to the class's time limit."""
    timing = st.session_state.setdefault("tr_timing", {}).get(str(timing_key))
    if timing is None and not ui.is_operator():
        timing = measure(cfg, timing_key, " (the class has a time limit per job)")
    return timing["epoch"] * cfg.epochs + timing["startup"] if timing else None


# ------------------------------------------------------------------------------------------------ the job

def current_job(manager: jobs.JobManager) -> jobs.Job | None:
    """This session's job, else the one running (any session's), else the newest: reopening shows it.
    Sweeps are jobs too, but they are followed on the Sweep page."""
    mine = manager.get(st.session_state.get("tr_job", ""))
    if mine is not None:
        return mine
    running = [j for j in manager.running() if j.kind == "train"]
    if running:
        return running[0]
    recent = [j for j in manager.jobs() if j.kind == "train"]
    return recent[0] if recent else None


def show_job(job: jobs.Job, manager: jobs.JobManager) -> None:
    icon = ui.STATE_ICONS.get(job.state, "•")
    what = (f"training **{ui.esc(job.run)}** further, to {job.epochs} epochs, on {job.device}" if job.extending else
            f"{'resuming' if job.resume else 'training'} **{ui.esc(job.run)}** on {job.device}")
    st.markdown(f"#### {icon} {job.state.replace('_', ' ').capitalize()}: {what}")
    if job.state == "queued":
        ahead = manager.running(job.device)
        st.info(f"Waiting for {job.device}: number {manager.position(job.id)} in the queue"
                + (f", behind {ui.esc(ahead[0].run)} ({ahead[0].fraction_done():.0%} done)" if ahead else "")
                + ". It starts by itself; you can close this tab.")
        if not ui.may_cancel(job):
            ui.not_yours(job)
        elif st.button("Cancel", key=f"tr_cancel_{job.id}", icon=":material/close:", help="Leave the queue."):
            ui.cancel(manager, job)
    elif job.state == "running":
        p = job.progress()
        status = job.status()
        if p:
            st.progress(job.fraction_done(), text=f"epoch {p['epoch']}/{p['epochs']} · batch {p['batch']}/"
                                                  f"{p['batches']} · loss {p['loss']:.4f}")
        elif status.get("state") in FINISHED:  # trained; the process still tests the best checkpoint and writes
            st.progress(1.0, text="finishing: testing the best checkpoint and writing the model card…")
        else:
            st.progress(0.0, text=ui.esc(status.get("message") or "starting") + "…")
        c1, c2, c3 = st.columns(3)
        c1.metric("Epoch", f"{p.get('epoch', job.start_epoch)} / {job.epochs}")
        c2.metric("Elapsed", ui.duration(time.time() - job.started if job.started else None))
        c3.metric("Time left", ui.duration(job.eta_seconds()))
        st.caption(f"{status.get('device', job.device)} · runs in the background: switching pages or closing the tab "
                   "does not stop it.")
        stopping = job.message.startswith("stopping")
        if not ui.may_cancel(job):
            ui.not_yours(job)
        elif st.button("Force stop" if stopping else "Cancel", key=f"tr_cancel_{job.id}", icon=":material/stop:",
                       help="Stops at the next batch and keeps the last finished epoch's checkpoint (last.pt); "
                            "resume it later below."):
            ui.cancel(manager, job)
        if stopping:
            st.caption("Stopping at the next batch…")
    elif job.state in FINISHED:
        s = job.summary or job.status()
        st.success(f"Test accuracy **{s.get('test_accuracy') or 0:.1%}** (best validation "
                   f"{s.get('best_val_accuracy') or 0:.1%} at epoch {s.get('best_epoch', '?')}), "
                   f"{ui.duration(s.get('train_seconds'))} of training"
                   + (f" — {ui.esc(job.message or 'stopped early')}." if job.state == "stopped_early" else "."))
        c1, c2 = st.columns(2)
        c1.page_link("pages/evaluate.py", label="Evaluate it", icon=":material/fact_check:")
        c2.page_link("pages/predict.py", label="Try it on a photo", icon=":material/photo_camera:")
    elif job.state == "cancelled":
        resumable = job.run_dir.has("last")
        st.info("Cancelled." + (" Resume it below to continue from its last finished epoch." if resumable else
                                " It had not finished an epoch, so there is nothing to resume."))
    else:
        st.error(f"{job.state.capitalize()}: {ui.esc(job.message or 'no message')}")
    if job.state != "queued":
        ui.show_curves(job.metrics(), key=f"tr_curves_{job.id}")
        ui.show_insight(job.run_dir)


def job_panel(job_id: str) -> None:
    manager = jobs.manager()
    job = manager.get(job_id)
    if job is None:
        return
    show_job(job, manager)
    if not job.active and st.session_state.get("tr_watching") == job.id:
        st.session_state.tr_watching = None
        st.rerun()  # the whole page: stop polling, refresh the run lists


# -------------------------------------------------------------------------------- the learning-rate finder

LR_SETTINGS = ("model", "dataset", "optimizer", "batch_size", "momentum", "weight_decay", "augment")  # shape a curve


def lr_finder(cfg: TrainConfig, manager: jobs.JobManager) -> None:
    """"Find a learning rate" for the form's settings, as a background job in the device's queue (like a training),
    then its curve and "Use this rate", which puts the suggestion into the form's learning-rate box."""
    st.markdown("**Not sure of the learning rate?** Let the finder try them all on a copy of the model.")
    if st.button("Find a learning rate", key="tr_lrfind", icon=":material/query_stats:",
                 help="Trains a fresh copy of the model for about 100 batches while the rate rises from 1e-7 to 10, "
                      "in the background and in the device's queue like a training, then suggests a rate from "
                      "the loss curve. Nothing is saved as a run."):
        try:
            st.session_state.tr_lrfind_job = manager.submit_lr_find(cfg, owner=ui.owner(),
                                                                    operator=ui.is_operator()).id
        except CnnError as e:
            ui.error(e)

    def panel(job_id: str) -> None:
        lr_panel(job_id, cfg)

    ui.follow(manager.get(st.session_state.get("tr_lrfind_job", "")), panel, "tr_lrfind_watching")


def lr_panel(job_id: str, cfg: TrainConfig) -> None:
    manager = jobs.manager()
    job = manager.get(job_id)
    if job is None:
        return
    if job.state == "queued":
        st.info(f"The learning-rate finder waits for {job.device}: number {manager.position(job.id)} in the queue.")
    elif job.state == "running":
        p = job.progress()
        st.progress(job.fraction_done(), text=f"Finding a learning rate: batch {p['step']} of {p['steps']}" if p
                    else "Finding a learning rate: loading the data…")
    elif job.state == "finished" and job.result():
        lr_result(job.result(), cfg)
    elif job.state == "cancelled":
        st.info("The learning-rate finder was cancelled.")
    else:
        ui.error(f"The learning-rate finder {job.state.replace('_', ' ')}: {job.message or 'no message'}")
    if job.active and ui.may_cancel(job) and st.button("Cancel", key=f"tr_lrfind_cancel_{job.id}",
                                                       icon=":material/close:"):
        ui.cancel(manager, job)
    if not job.active and st.session_state.get("tr_lrfind_watching") == job.id:
        st.session_state.tr_lrfind_watching = None
        st.rerun()  # the whole page: stop polling


def lr_result(r: dict, cfg: TrainConfig) -> None:
    """The curve, the suggestion and how it was chosen, and the button that fills the form with it."""
    lr = float(f"{r['suggestion']:.2g}")  # two digits: the curve says no more
    lo, hi = meta("lr").widget_bounds()
    lr = min(max(lr, lo), hi)
    st.altair_chart(ui.lr_chart(r), width="stretch", key="tr_lrfind_chart")
    st.markdown(f"Suggested learning rate **{lr:g}**, by the {ui.esc(r['why'])}.")
    found = r.get("config", {})
    st.caption(f"For {ui.esc(found.get('model'))} on {ui.esc(found.get('dataset'))} with {found.get('optimizer')}, "
               f"batch {found.get('batch_size')}. The smoothed loss falls between the rates {r['falling'][0]:.2g} "
               f"and {r['falling'][1]:.2g} (shaded); the steepest rule would say {r['steepest']:.2g}. "
               f"{len(r['lrs'])} batches; {ui.esc(r['stopped'])}.")
    changed = [k for k in LR_SETTINGS if k in found and found[k] != getattr(cfg, k)]
    if changed:
        st.warning(f"Found for other settings than the form's now ({', '.join(changed)} changed): find again "
                   "for these.")
    if st.button("Use this rate", key="tr_lrfind_use", icon=":material/check:", on_click=use_rate, args=(lr,),
                 help="Puts it into the Learning rate box above."):
        st.rerun()  # the form lies outside this panel


def use_rate(lr: float) -> None:
    st.session_state.tr_lr = lr


# ------------------------------------------------------------------------------------------------- page

manager = jobs.manager()
if "tr_model" not in st.session_state:
    st.session_state.tr_model = ui.smallest_model()
    on_model_change()
    st.session_state.tr_dataset = ui.first_present_dataset()

st.title("Train")
ui.visitor_note("train on the built-in datasets or a zip of your own photos and cancel your own jobs",
                "train on folders of the server or stop other people's jobs")
if not ui.is_operator():
    try:
        lim = limits.load_limits()
        st.caption(f"Class limits: {lim.queued_per_visitor} waiting and {lim.running_per_visitor} training job(s) "
                   f"each, at most {lim.job_minutes:g} minutes per job (measured before it starts), "
                   f"{lim.sweep_runs} runs per sweep.")
    except CnnError as e:
        ui.error(e)
try:
    st.caption(f"Training runs on **{device_name(pick_device('auto'))}**, one job at a time per device; "
               "later requests wait in a queue.")
except CnnError as e:
    ui.error(e)

ui.follow(current_job(manager), job_panel, "tr_watching")

st.subheader("New training run")
st.selectbox("Start from a recipe (optional)", [""] + sorted(PRESETS), key="tr_preset", on_change=on_preset_change,
             format_func=lambda n: n or "—", help="Named sets of options; you can change any of them afterwards.")
left, right = st.columns(2)
with left:
    # a server path: the operator's only; the photo folders under the data roots: anyone's
    choice, dataset = ui.choose_dataset("tr")
    st.selectbox("Model", list_models(), key="tr_model", on_change=on_model_change,
                 format_func=lambda n: f"{n} — {get_spec(n).description}",
                 help="Changing the model loads its recommended options.")
    ui.config_widget("epochs", "tr")
    ui.config_widget("batch_size", "tr")
    st.text_input("Run name (optional)", key="tr_name", max_chars=64,
                  placeholder="model-dataset-date, if left empty",
                  help="Letters, digits, - and _. A name that is taken gets -2, -3, ...")
with right:
    for name in ("optimizer", "lr", "momentum", "weight_decay", "schedule", "lookahead", "augment", "patience"):
        if name != "momentum" or st.session_state.tr_optimizer == "sgd":
            ui.config_widget(name, "tr")
with st.expander("More options"):
    a, b = st.columns(2)
    for name in ("label_smoothing", "val_fraction", "seed", "crop_padding", "crop_fill", "flip_mode"):
        ui.config_widget(name, "tr", a)
    for name in ("tta", "tta_shift"):
        ui.config_widget(name, "tr", b)
    for name in ("train_subset", "max_batches", "input_size", "precision", "device"):
        ui.config_widget(name, "tr", b)
gpus = distributed.visible_gpus()
all_gpus = len(gpus) > 1 and st.checkbox(
    f"Train on all {len(gpus)} GPUs", key="tr_all_gpus", disabled=st.session_state.tr_device == "cpu",
    help="torchrun starts one process per GPU; the batch size is the global batch and must divide evenly among "
         "them. Also used when resuming.")
nproc = len(gpus) if all_gpus and st.session_state.tr_device != "cpu" else 1

cfg: TrainConfig | None = None
try:
    if not dataset:
        raise CnnError("upload a zip of your photos (one folder per class)" if choice == ui.UPLOAD else
                       "enter the folder that holds your photos (one subfolder per class), then press Use this folder")
    cfg = make_config(model=st.session_state.tr_model, dataset=dataset, preset=st.session_state.tr_preset,
                      **{n: st.session_state[f"tr_{n}"] for n in OPTIONS if f"tr_{n}" in st.session_state})
except (CnnError, TypeError) as e:
    if dataset is not None:  # None: a refused zip, whose reason is on the page already
        ui.error(e)

estimate: Estimate | None = None
if cfg is not None:
    timing_key = timed_options(cfg)
    try:
        estimate = size_up(timing_key)
    except CnnError as e:
        ui.error(e)
        cfg = None
if estimate is not None and cfg is not None:
    c1, c2, c3 = st.columns(3)
    c1.metric("Parameters", ui.count(estimate.params),
              help=f"{estimate.params:,} weights for {estimate.classes} classes at "
                   f"{estimate.input_size}x{estimate.input_size}, {estimate.channels} channel(s)")
    c2.metric("Batches per epoch", f"{estimate.batches_per_epoch:,}",
              help=f"{estimate.train_images:,} training and {estimate.val_images:,} validation images")
    timing = st.session_state.get("tr_timing", {}).get(str(timing_key))
    if timing is not None:
        c3.metric("Time per epoch", ui.duration(timing["epoch"]),
                  help=f"measured on {estimate.device} ({estimate.precision})")
        st.caption(f"≈ {ui.duration(timing['epoch'] * cfg.epochs + timing['startup'])} in all for {cfg.epochs} "
                   f"epochs on {estimate.device}, {estimate.precision}, counting about "
                   f"{ui.duration(timing['startup'])} to start; timed from a few real training steps"
                   + (" while another job was training, so it may come out faster." if timing["loaded"] else "."))
    else:
        with c3:
            if st.button("Estimate time per epoch", key="tr_measure", icon=":material/timer:",
                         help="Runs a few training steps in a separate process on this server (a few seconds; "
                              "longer for big models)."):
                try:
                    measure(cfg, timing_key)
                    st.rerun()
                except CnnError as e:
                    ui.error(e)

    lr_finder(cfg, manager)
    busy = manager.running(str(pick_device(cfg.device)))
    label = "Queue training" if busy else "Start training"
    if busy:
        st.caption(f"{busy[0].device} is busy with {ui.esc(busy[0].run)}; a new run waits for it "
                   f"({len(manager.queued(busy[0].device))} already waiting).")
    if st.button(label, type="primary", key="tr_start", icon=":material/play_arrow:"):
        try:
            new = manager.submit(cfg, st.session_state.tr_name.strip() or None, nproc=nproc, owner=ui.owner(),
                                 operator=ui.is_operator(), estimated_seconds=job_seconds(cfg, timing_key))
            st.session_state.tr_job = new.id
            st.rerun()
        except CnnError as e:
            ui.error(e)

# ---------------------------------------------------------------------------------- resume, queue, history

runs = list_runs(ui.root())
active_runs = manager.active_runs(ui.root())
stopped = [r for r in runs if r.state in RESUMABLE and r.run.has("last") and r.name not in active_runs]
resumable = [r for r in stopped if jobs.may_continue(r.run, ui.owner(), ui.is_operator())]
if resumable:
    st.subheader("Resume a stopped run")
    by_name = {r.name: r for r in resumable}
    name = st.selectbox("Stopped run", list(by_name), key="tr_resume_run",
                        format_func=lambda n: f"{ui.run_label(by_name[n])}, {by_name[n].epochs_run} epoch(s) done")
    if st.button("Resume", key="tr_resume", icon=":material/resume:",
                 help="Continues from its last finished epoch with the options it was started with."):
        try:
            saved = TrainConfig.from_dict(by_name[name].run.config())
            left = saved.replace(epochs=max(1, saved.epochs - by_name[name].epochs_run))  # what is still to train
            st.session_state.tr_job = manager.resume(name, nproc=nproc, owner=ui.owner(), operator=ui.is_operator(),
                                                     estimated_seconds=job_seconds(left, timed_options(left))).id
            st.rerun()
        except (CnnError, TypeError) as e:
            ui.error(e)
elif stopped and not ui.is_operator():
    st.caption("Stopped runs can be resumed by the operator, or by the visitor whose job trained them.")

finished = [r for r in runs if r.state in FINISHED and r.run.has("last") and r.name not in active_runs]
extendable = [r for r in finished if jobs.may_continue(r.run, ui.owner(), ui.is_operator())]
if extendable:
    st.subheader("Train a finished run further")
    by_name = {r.name: r for r in extendable}
    name = st.selectbox("Finished run", list(by_name), key="tr_more_run",
                        format_func=lambda n: f"{ui.run_label(by_name[n])}, {by_name[n].epochs_run} epoch(s)")
    more = st.number_input("More epochs", 1, max(1, 1000 - by_name[name].epochs_run), 5, key="tr_more_epochs")
    if st.button(f"Train {more} more epoch{'s' * (more != 1)}", key="tr_more", icon=":material/add:",
                 help="Continues from its last epoch with its own options. The learning-rate schedule starts again "
                      "over the added epochs (a warm restart); best.pt stays the best of all its epochs."):
        try:
            added = TrainConfig.from_dict(by_name[name].run.config()).replace(epochs=int(more))
            st.session_state.tr_job = manager.resume(
                name, nproc=nproc, owner=ui.owner(), operator=ui.is_operator(), epochs=by_name[name].epochs_run + more,
                estimated_seconds=job_seconds(added, timed_options(added))).id
            st.rerun()
        except (CnnError, TypeError) as e:
            ui.error(e)
elif finished and not ui.is_operator():
    st.caption("Finished runs can be trained further by the operator, or by the visitor whose job trained them.")

elsewhere = [r for r in runs if r.state == "running" and r.name not in active_runs]
if elsewhere:
    st.caption("Also training (started from a terminal or an earlier server): "
               + ", ".join(f"{ui.esc(r.name)} ({r.run.progress().get('epoch', '?')}/"
                           f"{r.run.config().get('epochs', '?')} epochs)" for r in elsewhere))

history = manager.jobs()
if history:
    with st.expander(f"Jobs on this server ({len(history)})", expanded=bool(manager.queued())):
        st.dataframe(pd.DataFrame([{"run": f"sweep {j.run}" if j.kind == "sweep" else j.run, "state": j.state,
                                    "device": j.device,
                                    "queue": manager.position(j.id) or None, "message": j.message,
                                    "submitted": time.strftime("%H:%M:%S", time.localtime(j.submitted))}
                                   for j in history]), hide_index=True)
        for j in manager.queued():
            if ui.may_cancel(j) and st.button(f"Remove {ui.esc(j.run)} from the queue", key=f"tr_dequeue_{j.id}"):
                ui.cancel(manager, j)
