"""The Runs page (AppTest): the table of runs, and rename and delete through cnn_core.history, each confirmed,
refused for a run a job is training, for a bad name, and for anything that is not a run inside the root."""

from __future__ import annotations

import shutil
import sys

import pytest
from app_util import open_page, shown, texts
from test_app_train import TINY, managers  # noqa: F401  (the fixture: a private JobManager as the app's)

from cnn_core.config import TrainConfig
from cnn_core.core.files import read_json


@pytest.fixture
def two_runs(runs, digits_run):
    """A private checkpoints folder with two copies of the finished digits run (these tests change it)."""
    for name in ("alpha", "beta"):
        shutil.copytree(digits_run, runs / name)
    return runs


def test_the_table_lists_every_run_with_its_accuracy_and_date(two_runs):
    at = open_page("runs")
    table = at.dataframe[0].value
    status = read_json(two_runs / "alpha" / "status.json")
    assert sorted(table["run"]) == ["alpha", "beta"] and set(table["state"]) == {"finished"}
    assert list(table["test accuracy"]) == [status["test_accuracy"]] * 2
    assert list(table["best val accuracy"]) == [status["best_val_accuracy"]] * 2
    assert set(table["model"]) == {"lenet5"} and all(table["created"].str.match(r"\d{4}-\d\d-\d\d \d\d:\d\d"))


def test_rename_needs_the_tick_and_a_valid_free_name(two_runs):
    at = open_page("runs")
    at.selectbox(key="rn_run").set_value("alpha").run()
    at.text_input(key="rn_new").set_value("gamma").run()
    at.button(key="rn_rename").click().run()
    assert "Tick" in shown(at.warning[0]) and (two_runs / "alpha").is_dir()  # not confirmed: nothing happens

    at.checkbox(key="rn_confirm_rename").check().run()
    for bad, said in [("../gamma", "run name '../gamma' is not allowed"), ("beta", "the name 'beta' is taken")]:
        at.text_input(key="rn_new").set_value(bad).run()
        at.button(key="rn_rename").click().run()
        assert len(at.error) == 1 and shown(at.error[0]).startswith(said) and "\n" not in shown(at.error[0])
    assert sorted(p.name for p in two_runs.iterdir()) == ["alpha", "beta"]
    assert not (two_runs.parent / "gamma").exists()

    at.text_input(key="rn_new").set_value("gamma").run()
    at.button(key="rn_rename").click().run()
    assert not at.exception and "Renamed alpha to gamma" in shown(at.success[0])
    assert sorted(p.name for p in two_runs.iterdir()) == ["beta", "gamma"]
    assert sorted(at.dataframe[0].value["run"]) == ["beta", "gamma"] and at.selectbox(key="rn_run").value == "gamma"
    assert read_json(two_runs / "gamma" / "status.json")["run"] == "gamma"  # renamed through cnn_core.history


def test_delete_needs_the_name_typed_and_removes_only_that_run(two_runs):
    at = open_page("runs")
    at.selectbox(key="rn_run").set_value("beta").run()
    at.button(key="rn_delete").click().run()
    assert "Type the run's name, beta" in shown(at.warning[0]) and (two_runs / "beta").is_dir()
    at.text_input(key="rn_confirm_delete").set_value("alpha").run()  # another run's name is no confirmation
    at.button(key="rn_delete").click().run()
    assert at.warning and (two_runs / "alpha").is_dir() and (two_runs / "beta").is_dir()

    at.text_input(key="rn_confirm_delete").set_value("beta").run()
    at.button(key="rn_delete").click().run()
    assert not at.exception and "Deleted beta" in shown(at.success[0])
    assert [p.name for p in two_runs.iterdir()] == ["alpha"] and list(at.dataframe[0].value["run"]) == ["alpha"]


def test_a_link_to_a_run_outside_the_root_is_refused_and_its_target_kept(two_runs, tmp_path, digits_run):
    outside = tmp_path / "elsewhere" / "precious"
    shutil.copytree(digits_run, outside)
    (two_runs / "linked").symlink_to(outside, target_is_directory=True)
    at = open_page("runs")
    at.selectbox(key="rn_run").set_value("linked").run()
    at.text_input(key="rn_confirm_delete").set_value("linked").run()
    at.button(key="rn_delete").click().run()
    assert "is a symbolic link" in shown(at.error[0])
    at.text_input(key="rn_new").set_value("moved").run()
    at.checkbox(key="rn_confirm_rename").check().run()
    at.button(key="rn_rename").click().run()
    assert "is a symbolic link" in shown(at.error[0])
    assert (outside / "best.pt").is_file() and (two_runs / "linked").is_symlink() and not (two_runs / "moved").exists()


def test_a_run_a_job_is_training_is_refused_with_a_clear_message(two_runs, managers):  # noqa: F811
    manager = managers([sys.executable, "-c", "import time; time.sleep(60)"])  # holds the device, never trains
    manager.submit(TrainConfig(**TINY), name="busy", root=two_runs)
    waiting = manager.submit(TrainConfig(**TINY), name="alpha", root=two_runs)  # alpha exists: gets alpha-2
    assert waiting.run == "alpha-2" and waiting.state == "queued"  # its folder exists from now on: listed
    at = open_page("runs")
    at.selectbox(key="rn_run").set_value("alpha-2").run()
    at.text_input(key="rn_confirm_delete").set_value("alpha-2").run()
    at.button(key="rn_delete").click().run()
    assert "run alpha-2 is being trained (or waits in the queue)" in shown(at.error[0])
    assert (two_runs / "alpha-2").is_dir()


def test_no_runs_says_what_to_do(runs):
    at = open_page("runs")
    assert "no trained runs" in texts(at) and not at.dataframe


def test_the_forms_always_act_on_the_run_shown(two_runs):
    """Picking another run clears what was ticked or typed; after a delete the picker shows a run that exists."""
    at = open_page("runs")
    at.selectbox(key="rn_run").set_value("alpha").run()
    at.checkbox(key="rn_confirm_rename").check().run()
    at.text_input(key="rn_confirm_delete").set_value("alpha").run()
    at.selectbox(key="rn_run").set_value("beta").run()
    assert not at.checkbox(key="rn_confirm_rename").value and at.text_input(key="rn_confirm_delete").value == ""
    at.text_input(key="rn_confirm_delete").set_value("beta").run()
    at.button(key="rn_delete").click().run()
    assert not (two_runs / "beta").exists() and at.selectbox(key="rn_run").value == "alpha"
    assert at.selectbox(key="rn_run").options[0].startswith("alpha")
