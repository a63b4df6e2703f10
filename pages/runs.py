"""Runs: every run in the checkpoints folder, and renaming or deleting one (each confirmed first).

cnn_core.history does the work and the safety checks (only run folders directly inside the checkpoints root,
never a symbolic link, never a run that is training); this page adds the "are you sure?" and refuses the runs
a job on this server is training or about to train.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnn_core.core.errors import CnnError
from cnn_core.jobs import limits
from cnn_core.jobs import manager as jobs
from cnn_core.workflows import history
from pages import ui

ui.require_router(__file__)  # before anything else: see ui.require_router


def busy_message(name: str) -> str | None:
    if name in jobs.manager().active_runs(ui.root()):
        return (f"run {name} is being trained (or waits in the queue) on this server; cancel its job on the Train "
                "or Sweep page first")
    return None


def do_rename() -> None:
    """Button callback (before the rerun, so it may reset the widgets); its verdict goes to rn_said."""
    ss = st.session_state
    if not ui.is_operator():  # the form is not shown to visitors; this holds even if a request says otherwise
        return
    name = ss.rn_run
    if not ss.rn_confirm_rename:
        ss.rn_said = ("warning", f"Tick “Yes, rename {name}” first.")
        return
    if busy_message(name):
        ss.rn_said = ("error", busy_message(name))
        return
    try:
        target = history.rename_run(name, ss.rn_new.strip(), ui.root())
    except CnnError as e:
        ss.rn_said = ("error", str(e))
        return
    ss.rn_said = ("success", f"Renamed {name} to {target.name}.")
    ss.rn_run, ss.rn_new, ss.rn_confirm_rename = target.name, "", False


def do_delete() -> None:
    ss = st.session_state
    if not ui.is_operator():
        return
    name = ss.rn_run
    if ss.rn_confirm_delete.strip() != name:
        ss.rn_said = ("warning", f"Type the run's name, {name}, to confirm.")
        return
    if busy_message(name):
        ss.rn_said = ("error", busy_message(name))
        return
    try:
        history.delete_run(name, ui.root())
    except CnnError as e:
        ss.rn_said = ("error", str(e))
        return
    ss.rn_said = ("success", f"Deleted {name}.")
    left = [r["run"] for r in history.runs_table(ui.root())]
    if left:
        ss.rn_run = left[0]  # the picker shows the run the forms now act on, never the deleted name
    else:
        del ss.rn_run
    reset_forms()


def reset_forms() -> None:
    """Another run picked (or the last one gone): nothing typed or ticked for the previous one carries over."""
    ss = st.session_state
    ss.rn_new, ss.rn_confirm_delete, ss.rn_confirm_rename = "", "", False


def show_limits() -> None:
    """The operator's panel for the class's limits (jobs.limits: read on every request, so they apply at once)."""
    with st.expander("Class limits (what each visitor may ask of this server)"):
        try:
            now = limits.load_limits()
        except CnnError as e:
            ui.error(e)
            now = limits.Limits()
        a, b = st.columns(2)
        boxes = [(a, "queued_per_visitor", "Waiting jobs per visitor", 100), (a, "running_per_visitor",
                 "Training jobs per visitor", 100), (a, "job_minutes", "Minutes per job (estimated)", 10_000),
                 (b, "sweep_runs", "Runs per sweep", 500), (b, "min_free_gb", "Free disk to keep (GB, everyone)",
                                                           10_000)]
        values = {}
        for col, field, label, top in boxes:
            value = getattr(now, field)
            lo, hi = (0, top) if isinstance(value, int) else (0.0, float(top))
            values[field] = col.number_input(label, lo, hi, value, key=f"rn_lim_{field}")
        if st.button("Save limits", key="rn_limits"):
            try:
                limits.save_limits(values)
                st.success("Saved; they apply to the next request.")
            except CnnError as e:
                ui.error(e)


st.title("Runs")
kind, said = st.session_state.pop("rn_said", (None, ""))
if kind:
    getattr(st, kind)(ui.esc(said))  # the last rename or delete: done, or why not (names shown as text)
rows = history.runs_table(ui.root())
if not rows:
    ui.no_runs_message()
    st.stop()

st.dataframe(pd.DataFrame([{"run": r["run"], "model": r["model"], "dataset": r["dataset"], "state": r["state"],
                            "best val accuracy": r["best_val_accuracy"], "test accuracy": r["test_accuracy"],
                            "epochs": r["epochs_run"], "created": r["created_text"],
                            "exports": ", ".join(r["exports"])} for r in rows]),
             hide_index=True, width="stretch",
             column_config={"best val accuracy": st.column_config.NumberColumn(format="percent"),
                            "test accuracy": st.column_config.NumberColumn(format="percent")})
st.caption(f"{len(rows)} run{'s' * (len(rows) != 1)} in {ui.esc(ui.root())}, newest first.")

st.subheader("Rename or delete a run")
if not ui.is_operator():
    ui.visitor_note("browse every run here and evaluate, compare and predict with them",
                    "rename or delete runs, or change the class's limits")
    st.stop()
show_limits()
by_name = {r["run"]: r for r in rows}
if st.session_state.get("rn_run") not in by_name:
    st.session_state.pop("rn_run", None)  # renamed or deleted meanwhile
name = st.selectbox("Run", list(by_name), key="rn_run", on_change=reset_forms,
                    format_func=lambda n: f"{n} — {by_name[n]['model']} on {by_name[n]['dataset']} "
                                          f"({by_name[n]['state'].replace('_', ' ')})")
rename_col, delete_col = st.columns(2, gap="large")
with rename_col.container(border=True):
    st.markdown("**Rename**")
    st.text_input("New name", key="rn_new", max_chars=64,
                  help="Letters, digits, - and _, starting with a letter or digit. Its model card and any sweep "
                       "that lists it follow the new name.")
    st.checkbox(f"Yes, rename {ui.esc(name)}", key="rn_confirm_rename")
    st.button("Rename", key="rn_rename", icon=":material/edit:", on_click=do_rename)
with delete_col.container(border=True):
    st.markdown("**Delete**")
    st.text_input(f"Type {ui.esc(name)} to confirm", key="rn_confirm_delete",
                  help="Deletes the run's folder with its checkpoints, metrics, model card and exports.")
    st.button("Delete for good", key="rn_delete", icon=":material/delete:", type="primary", on_click=do_delete)
