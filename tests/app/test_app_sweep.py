"""The Sweep page (AppTest): a real tiny sweep on digits started from the page, its progress, table and charts;
a bad grid explained; sweeps already on disk listed without any job."""

from __future__ import annotations

import pytest
from app_util import chart_data, chart_spec, charts, open_page, shown, texts
from test_app_train import SLEEPER, managers  # noqa: F401  (the fixture: a private JobManager as the app's)

from cnn_core.config import TrainConfig
from cnn_core.core.files import read_json
from cnn_core.jobs import estimate as estimates
from cnn_core.models import get_spec, model_table
from cnn_core.workflows.sweep import read_sweep, run_sweep


def setting_chart(at, setting: str):
    """The chart of accuracy against one swept setting (its x axis is titled after it)."""
    return next(c for c in charts(at) if chart_spec(c)["layer"][0]["encoding"]["x"]["title"] == setting)


def fill(at, **values) -> None:
    """One widget at a time, in order, as a person would (choosing a model resets the values)."""
    for key, value in values.items():
        widget = next(w for kind in ("selectbox", "number_input", "text_input", "multiselect")
                      for w in at.get(kind) if w.key == f"sw_{key}")
        widget.set_value(value).run()


def test_a_tiny_sweep_started_from_the_page_fills_its_table_and_charts(runs, managers):  # noqa: F811
    manager = managers()
    at = open_page("sweep")
    assert "No sweeps" in texts(at)
    fill(at, dataset="digits", model="lenet5", epochs=1, max_batches=2, batch_size="64", lr="0.05, 0.01",
         optimizer=["sgd"], augment=["off"], weight_decay="0", name="pg")
    assert {m.label: m.value for m in at.metric}["Runs in this grid"] == "2" and not at.error
    at.button(key="sw_start").click().run()
    assert not at.exception and not at.error
    job = manager.get(at.session_state.sw_job)
    assert job.kind == "sweep" and job.run == "pg" and job.runs == ["pg-bs64-lr0p05-sgd-noaug-wd0",
                                                                    "pg-bs64-lr0p01-sgd-noaug-wd0"]
    manager.wait(job.id, timeout=300)
    assert job.state == "finished", job.message
    at.run()
    assert not at.exception and "Sweep pg finished" in texts(at)
    rows = read_sweep("pg", runs)
    table = at.dataframe[-1].value
    assert list(table["run"]) == job.runs and list(table["state"]) == ["finished", "finished"]
    assert list(table["lr"]) == [0.05, 0.01]
    assert list(table["test_accuracy"]) == pytest.approx([r["test_accuracy"] for r in rows])
    assert all(read_json(runs / r / "config.json")["max_batches"] == 2 for r in job.runs)

    data = chart_data(setting_chart(at, "lr"))
    assert len(charts(at)) == 1  # only lr varied: batch size, optimizer, augment and L2 had one value each
    assert sorted(zip(data["run"], data["metric"])) == sorted(
        (r, m) for r in job.runs for m in ("best validation", "test"))
    test = data[data["metric"] == "test"].set_index("value")["accuracy"]
    assert test["0.05"] == pytest.approx(rows[0]["test_accuracy"]) and test["0.01"] == pytest.approx(
        rows[1]["test_accuracy"])


def test_a_visitors_sweep_is_timed_as_its_first_run_times_its_runs(runs, managers, monkeypatch):  # noqa: F811
    """The class's time cap holds a visitor's sweep too: one run's measured time (in a subprocess) x its runs."""
    manager = managers(SLEEPER)
    timed, per_epoch = [], {"seconds": 1000.0}
    monkeypatch.setattr(estimates, "measure", lambda cfg, timeout=0: timed.append(cfg) or {
        "seconds_per_epoch": per_epoch["seconds"], "startup_seconds": 10.0})
    at = open_page("sweep", operator=False)
    fill(at, dataset="digits", model="lenet5", epochs=1, max_batches=2, batch_size="64", lr="0.05, 0.01",
         optimizer=["sgd"], augment=["off"], weight_decay="0", name="vis")
    at.button(key="sw_start").click().run()
    assert [(c.lr, c.epochs) for c in timed] == [(0.05, 1)]  # its first run, once
    assert "this job is estimated at 34 minutes; at most 30 minutes per job" in texts(at)  # 2 x 1,010 s
    assert not manager.jobs()
    per_epoch["seconds"] = 100.0
    at.button(key="sw_start").click().run()
    job = manager.get(at.session_state.sw_job)
    assert job.kind == "sweep" and job.run == "vis" and job.owner == at.session_state["_ui_visitor"]


def test_the_values_start_from_the_quickest_model_and_follow_the_model(runs, managers):  # noqa: F811
    managers()
    at = open_page("sweep")
    assert at.selectbox(key="sw_model").value == min(model_table(), key=lambda r: r["params"])["model"]
    for name in ("lenet5", "resnet9"):
        at.selectbox(key="sw_model").set_value(name).run()
        want = TrainConfig(**get_spec(name).defaults)
        assert at.text_input(key="sw_lr").value == str(want.lr)
        assert at.number_input(key="sw_epochs").value == want.epochs
        assert at.text_input(key="sw_batch_size").value == str(want.batch_size)
        assert at.multiselect(key="sw_optimizer").value == [want.optimizer]


def test_a_bad_grid_is_explained_and_nothing_starts(runs, managers):  # noqa: F811
    manager = managers()
    at = open_page("sweep")
    fill(at, model="lenet5", lr="0.05, fast")
    assert [shown(e) for e in at.error] == ["cannot read '0.05, fast' as a list of float"]
    assert all(b.key != "sw_start" for b in at.button)
    fill(at, lr="0.05", optimizer=[])
    assert [shown(e) for e in at.error] == ["sweep setting optimizer needs at least one value"]
    fill(at, optimizer=["sgd"], batch_size="32, 32")
    assert "lists a value twice" in shown(at.error[0])
    assert not manager.jobs()


def test_sweeps_on_disk_are_listed_and_shown_without_a_job(runs, managers):  # noqa: F811
    managers()
    base = TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=64, max_batches=2, precision="fp32")
    res = run_sweep({"optimizer": ["sgd", "adam"]}, base, name="disk", root=runs)
    at = open_page("sweep")
    assert at.selectbox(key="sw_view").value == "disk" and "2 of 2 runs done" in at.selectbox(key="sw_view").options[0]
    table = at.dataframe[-1].value
    assert list(table["run"]) == [r["run"] for r in res["rows"]] and list(table["optimizer"]) == ["sgd", "adam"]
    # on a phone the first three columns show: what differs, then the two accuracies (the name comes later)
    assert list(at.dataframe[-1].proto.column_order)[:3] == ["optimizer", "test_accuracy", "best_val_accuracy"]
    data = chart_data(setting_chart(at, "optimizer"))
    assert set(data["value"]) == {"sgd", "adam"} and len(data) == 4


def test_every_sweepable_setting_has_its_values_widget_described_by_the_config(runs, managers):  # noqa: F811
    """The page picks no setting by hand: sweepable() says which, their metadata label, help and choices."""
    from cnn_core.config.train_config import kind, meta, sweepable

    managers()
    at = open_page("sweep")
    for name in sweepable():
        m = meta(name)
        if m.choices or kind(name) is bool:
            w = at.multiselect(key=f"sw_{name}")
            assert list(w.options) == list(m.choices or ("off", "on")), name
        else:
            w = at.text_input(key=f"sw_{name}")
        assert w.label.startswith(m.label) and w.help == m.help, name


def test_a_further_setting_joins_the_grid_only_with_several_values(runs, managers):  # noqa: F811
    managers()
    at = open_page("sweep")
    fill(at, model="lenet5", lr="0.05", optimizer=["sgd"], augment=["off"], weight_decay="0", batch_size="64",
         momentum="0.9, 0.8", name="mo")
    assert {m.label: m.value for m in at.metric}["Runs in this grid"] == "2" and not at.error
    assert "mo-bs64-lr0p05-sgd-noaug-wd0-mom0p8" in texts(at)
    fill(at, momentum="0.8", schedule=["cosine", "step"])
    assert {m.label: m.value for m in at.metric}["Runs in this grid"] == "2" and not at.error
    assert "mo-bs64-lr0p05-sgd-noaug-wd0-step" in texts(at) and "mom0p8" not in texts(at)


def test_a_sweep_charts_values_as_its_flags_and_table_write_them():
    """Two learning rates that round alike stay two points: the chart's text is config.argv.flag_text's."""
    from pages import ui

    rows = [{"run": "a", "lr": 0.123456789, "augment": True, "test_accuracy": 0.5},
            {"run": "b", "lr": 0.1234568, "augment": False, "test_accuracy": 0.6}]
    assert list(ui.sweep_frame(rows, "lr")["value"]) == ["0.123456789", "0.1234568"]
    assert list(ui.sweep_frame(rows, "augment")["value"]) == ["on", "off"]
