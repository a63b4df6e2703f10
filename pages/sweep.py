"""Sweep: train every combination of a few settings as one background job, then read the table and charts.

The job is ``python -m cnn_core sweep`` under the shared cnn_core.jobs manager, queued with training jobs on
the same device; the table is the sweep's own sweep.csv, so sweeps started from a terminal show up too.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from cnn_core.config.argv import flag_text, sweep_values
from cnn_core.config.train_config import kind, meta, sweepable
from cnn_core.core.errors import CnnError
from cnn_core.data import list_datasets
from cnn_core.engine.device import pick_device
from cnn_core.jobs import estimate as estimates
from cnn_core.jobs import manager as jobs
from cnn_core.models import get_spec, list_models, make_config
from cnn_core.workflows.sweep import SweepPlan, list_sweeps, read_sweep, sweep_dir, swept_keys
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router

SWEPT = sweepable()  # what a sweep may vary, in its order (the config's metadata says which and in what order)
SHOWN = 5  # the first ones always go into the grid (and the run names); the rest only when given several values
ON_OFF = ["off", "on"]


def on_model_change() -> None:
    """The model's recommended settings as the starting values."""
    d = make_config(model=st.session_state.sw_model)
    for f in SWEPT:
        v = getattr(d, f)
        st.session_state[f"sw_{f}"] = [v] if meta(f).choices else [flag_text(v)] if kind(f) is bool else flag_text(v)
    st.session_state.sw_epochs = d.epochs


def values_widget(name: str) -> None:
    """The values to try of one sweepable setting; label, help and choices from the field's metadata."""
    m, key = meta(name), f"sw_{name}"
    if m.choices or kind(name) is bool:
        st.multiselect(m.label, m.choices or ON_OFF, key=key, help=m.help)
    else:
        st.text_input(f"{m.label}, comma-separated", key=key, help=m.help)


def values_of(name: str) -> list:
    """The values the widget of ``name`` holds, as the config takes them; a one-line CnnError for bad text."""
    v = st.session_state[f"sw_{name}"]
    if meta(name).choices:
        return list(v)
    return [x == "on" for x in v] if kind(name) is bool else sweep_values(name, v)


def sweep_seconds(plan: SweepPlan) -> float | None:
    """A visitor's sweep is timed before it is queued (the class has a time limit per job): a few steps of its
    first run, measured in a subprocess (jobs.estimate), times its runs. The operator's is not timed."""
    if ui.is_operator():
        return None
    first = plan.cfgs[0]
    with st.spinner("Timing a few training steps of its first run (the class has a time limit per job)…"):
        est = estimates.measure(first)
    return len(plan.runs) * (est["seconds_per_epoch"] * first.epochs + est["startup_seconds"])


def current_job(manager: jobs.JobManager) -> jobs.Job | None:
    """This session's sweep, else a running or waiting one (any session's), else the newest."""
    sweeps = [j for j in manager.jobs() if j.kind == "sweep"]
    mine = manager.get(st.session_state.get("sw_job", ""))
    return mine or next((j for j in sweeps if j.active), None) or (sweeps[0] if sweeps else None)


def job_panel(job_id: str) -> None:
    manager = jobs.manager()
    job = manager.get(job_id)
    if job is None:
        return
    icon = ui.STATE_ICONS.get(job.state, "•")
    st.markdown(f"#### {icon} {job.state.replace('_', ' ').capitalize()}: sweep **{ui.esc(job.run)}**, "
                f"{len(job.runs)} runs on {job.device}")
    if job.state == "queued":
        st.info(f"Waiting for {job.device}: number {manager.position(job.id)} in the queue. It starts by itself.")
    elif job.state == "running":
        p = job.progress()
        where = (f" · epoch {p['epoch']}/{p['epochs']} · batch {p['batch']}/{p['batches']}" if "epoch" in p
                 else " · starting")
        text = f"run {p['index']} of {p['total']}: {ui.esc(p['run'])}{where}" if p else "starting…"
        st.progress(job.fraction_done(), text=text)
        c1, c2, c3 = st.columns(3)
        c1.metric("Run", f"{p.get('index', '–')} / {len(job.runs)}")
        c2.metric("Epoch", f"{p.get('epoch', '–')} / {job.epochs}")
        c3.metric("Time left", ui.duration(job.eta_seconds()))
    elif job.state == "finished":
        (st.warning if job.message else st.success)(f"Sweep {ui.esc(job.run)} finished"
                                                     + (f": {ui.esc(job.message)}." if job.message else "."))
    elif job.state == "cancelled":
        st.info(f"Cancelled: {ui.esc(job.message)}.")
    else:
        st.error(f"{job.state.capitalize()}: {ui.esc(job.message or 'no message')}")
    if job.active and not ui.may_cancel(job):
        ui.not_yours(job)
    elif job.active:
        stopping = job.message.startswith("stopping")
        if st.button("Force stop" if stopping else "Cancel", key=f"sw_cancel_{job.id}", icon=":material/stop:",
                     help="The current run stops at its next batch and keeps its last finished epoch; starting the "
                          "same sweep again skips finished runs and resumes that one."):
            ui.cancel(manager, job)
    if not job.active and st.session_state.get("sw_watching") == job.id:
        st.session_state.sw_watching = None
        st.rerun()  # the whole page: the table below now has the last run


def show_sweep(name: str) -> None:
    try:
        rows = read_sweep(name, ui.root())
    except CnnError as e:
        ui.error(e)
        return
    keys = swept_keys(rows)
    table = pd.DataFrame(rows)
    varied = [k for k in keys if len({r.get(k) for r in rows}) > 1]
    # what a student compares first, where a phone (three columns wide) shows it: the settings that differ, then
    # the accuracies; the run's name, its state and the rest follow to the right
    first = [*varied, "test_accuracy", "best_val_accuracy", "state", "run"]
    order = [c for c in first if c in table.columns] + [c for c in table.columns if c not in first]
    st.dataframe(table, hide_index=True, width="stretch", column_order=order,
                 column_config={"best_val_accuracy": st.column_config.NumberColumn("best val acc", format="percent"),
                                "test_accuracy": st.column_config.NumberColumn("test acc", format="percent"),
                                "train_seconds": st.column_config.NumberColumn("train s", format="%.1f"),
                                "images_per_second": st.column_config.NumberColumn("images/s", format="%.0f")})
    if not any(r.get("test_accuracy") is not None for r in rows):
        st.caption("No run of this sweep has finished yet.")
    elif varied:
        st.caption("Accuracy against each swept setting: a point per run, the dashed line through the mean.")
        for col, key in zip(st.columns(min(3, len(varied))) * 2, varied):
            col.altair_chart(ui.sweep_chart(rows, key), width="stretch", key=f"sw_chart_{name}_{key}")
    st.page_link("pages/compare.py", label="Compare these runs (pick the sweep there)",
                 icon=":material/compare_arrows:")


# ------------------------------------------------------------------------------------------------- page

manager = jobs.manager()
if "sw_model" not in st.session_state:
    st.session_state.sw_model = ui.smallest_model()
    st.session_state.sw_dataset = "digits" if "digits" in list_datasets() else list_datasets()[0]
    on_model_change()

st.title("Sweep")
ui.visitor_note("run a sweep within the class limits and stop your own", "stop other people's sweeps")
st.caption("Every combination of the values below is trained as an ordinary run, one after another, in the "
           "background; the table and charts fill in as runs finish.")
ui.follow(current_job(manager), job_panel, "sw_watching")

st.subheader("New sweep")
left, right = st.columns(2)
with left:
    st.selectbox("Dataset", list_datasets(), key="sw_dataset")
    st.selectbox("Model", list_models(), key="sw_model", on_change=on_model_change,
                 format_func=lambda n: f"{n} — {get_spec(n).description}",
                 help="Changing the model loads its recommended settings.")
    ui.config_widget("epochs", "sw")
    st.text_input("Sweep name (optional)", key="sw_name", max_chars=40,
                  help="Letters, digits, - and _. Empty: named after the settings, so the same sweep started "
                       "again continues where it stopped.")
    with st.expander("More options"):
        ui.config_widget("max_batches", "sw")
        ui.config_widget("train_subset", "sw")
with right:
    for field in SWEPT[:SHOWN]:
        values_widget(field)
    with st.expander("More settings to sweep"):
        for field in SWEPT[SHOWN:]:
            values_widget(field)

plan = None
try:
    values = {f: values_of(f) for f in SWEPT}
    grid = {f: v for i, (f, v) in enumerate(values.items()) if i < SHOWN or len(v) != 1}
    base = make_config(model=st.session_state.sw_model, dataset=st.session_state.sw_dataset,
                       **{f: st.session_state[f"sw_{f}"] for f in ("epochs", "max_batches", "train_subset")},
                       **{f: v[0] for f, v in values.items() if f not in grid})
    plan = jobs.plan_sweep_job(grid, base, st.session_state.sw_name.strip() or None, ui.root())
except CnnError as e:
    ui.error(e)

if plan is not None:
    n = len(plan.runs)
    c1, c2 = st.columns(2)
    c1.metric("Runs in this grid", n, help=" × ".join(f"{len(v)} {k}" for k, v in plan.grid.items()))
    c2.metric("Epochs in all", n * st.session_state.sw_epochs)
    st.caption(f"Sweep **{ui.esc(plan.name)}**: runs {ui.esc(plan.runs[0])}"
               + (f" … {ui.esc(plan.runs[-1])}" if n > 1 else "")
               + (". Runs that already finished are skipped." if sweep_dir(plan.name, ui.root()).is_dir() else "."))
    busy = manager.running(str(pick_device(base.device)))
    if st.button("Queue sweep" if busy else "Start sweep", type="primary", key="sw_start",
                 icon=":material/play_arrow:"):
        try:
            new = manager.submit_sweep(grid, base, plan.name, owner=ui.owner(), operator=ui.is_operator(),
                                       estimated_seconds=sweep_seconds(plan))
            st.session_state.sw_job, st.session_state.sw_view = new.id, new.run
            st.rerun()
        except CnnError as e:
            ui.error(e)

st.subheader("Sweeps")
sweeps = {s["name"]: s for s in list_sweeps(ui.root())}
if not sweeps:
    st.caption(f"No sweeps in {ui.esc(ui.root() / 'sweeps')} yet.")
    st.stop()
if st.session_state.get("sw_view") not in sweeps:
    st.session_state.pop("sw_view", None)
name = st.selectbox("Sweep", list(sweeps), key="sw_view",
                    format_func=lambda s: f"{s} — {sweeps[s]['done']} of {sweeps[s]['runs']} runs done, "
                                          + time.strftime("%Y-%m-%d %H:%M", time.localtime(sweeps[s]["created"] or 0)))
show_sweep(name)
