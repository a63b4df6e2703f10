"""Renaming and deleting runs: only run folders inside the checkpoints root, never a run in training."""

import os

import pytest

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.core.files import read_json, write_json
from cnn_core.evaluation.modelcard import read_model_card
from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.checkpoint import FORMAT, save_checkpoint
from cnn_core.runs.rundir import list_runs
from cnn_core.workflows.history import delete_run, rename_run, runs_table
from cnn_core.workflows.run import train_run


def _fake_run(root, name, **status):
    """A run folder as fit leaves it, without the training (for the path-safety cases)."""
    run = root / name
    run.mkdir(parents=True)
    write_json(run / "config.json", TrainConfig().to_dict())
    write_json(run / "status.json", {"state": "finished", **status})
    # a real (untrained) LeNet-5 checkpoint: run lists check that a checkpoint loads, not only that it exists
    from cnn_core.models import build_model

    model = build_model("lenet5", 10, 1, 32)
    save_checkpoint({"format": FORMAT, "state_dict": model.state_dict(), "classes": [str(i) for i in range(10)],
                        "model": {"name": "lenet5", "kwargs": {"num_classes": 10, "in_channels": 1, "input_size": 32}},
                        "input": {"size": 32, "channels": 1, "mean": [0.3], "std": [0.4]}, "epoch": 1},
                       run / "best.pt")
    return run


def test_rename_moves_the_run_and_everything_that_names_it(runs):
    train_run(TrainConfig(model="lenet5", dataset="digits", epochs=1, batch_size=64, train_subset=200), name="old-name")
    new = rename_run("old-name", "new_name")
    assert new == (runs / "new_name").resolve() and not (runs / "old-name").exists()
    assert [r.name for r in list_runs(runs)] == ["new_name"]
    assert read_json(new / "status.json")["run"] == "new_name"
    card = read_model_card("new_name")
    assert card.startswith("# Model card: new_name\n") and card.count("--name new_name") == 1
    assert "old-name" not in card
    assert Predictor.from_run("new_name").run == "new_name"  # still a working run

    _fake_run(runs, "taken")
    for bad, msg in [("taken", "taken"), ("../escape", "not allowed"), ("a/b", "not allowed"), ("sweeps", "taken")]:
        with pytest.raises(CnnError, match=msg):
            rename_run("new_name", bad)
    assert (runs / "new_name" / "best.pt").is_file() and (runs / "taken" / "best.pt").is_file()
    assert rename_run("new_name", "new_name") == new  # same name: nothing to do


def test_delete_removes_exactly_one_run(runs):
    keep, gone = _fake_run(runs, "keep"), _fake_run(runs, "gone")
    assert delete_run("gone") == gone.resolve()
    assert not gone.exists() and keep.is_dir()
    with pytest.raises(CnnError, match="no run 'gone'"):
        delete_run("gone")


def test_delete_and_rename_refuse_anything_outside_the_root(runs, tmp_path):
    _fake_run(runs, "inside")
    outside = _fake_run(tmp_path / "elsewhere", "precious")  # looks like a run, but is not in the root
    (runs / "link").symlink_to(outside, target_is_directory=True)
    attempts = [str(outside), outside, "../elsewhere/precious", str(runs / ".." / "elsewhere" / "precious"), "link",
                "..", ".", str(runs), "/", str(runs / "inside" / "..")]
    for target in attempts:
        with pytest.raises(CnnError):
            delete_run(target)
        with pytest.raises(CnnError):
            rename_run(target, "renamed")
    assert (outside / "best.pt").is_file() and (outside / "config.json").is_file()
    assert (runs / "inside" / "best.pt").is_file() and not (runs / "renamed").exists()
    assert (runs / "link").is_symlink()
    (runs / "stray").mkdir()  # a folder in the root that is not a run (no config.json)
    (runs / "stray" / "notes.txt").write_text("mine")
    with pytest.raises(CnnError, match="no run 'stray'"):
        delete_run("stray")
    assert (runs / "stray" / "notes.txt").is_file()
    assert delete_run(runs / "inside") == (runs / "inside").resolve()  # a path inside the root is fine


def test_a_run_in_training_is_left_alone(runs):
    _fake_run(runs, "busy", state="running", pid=os.getpid())  # this process is alive: it is training
    with pytest.raises(CnnError, match="running; stop it"):
        delete_run("busy")
    with pytest.raises(CnnError, match="running; stop it"):
        rename_run("busy", "calm")
    assert (runs / "busy" / "best.pt").is_file()
    _fake_run(runs, "crashed", state="running", pid=2**22 + 12345)  # no such process: interrupted, deletable
    delete_run("crashed")
    assert not (runs / "crashed").exists()


def test_runs_table_lists_what_a_runs_page_shows(runs):
    _fake_run(runs, "a", best_val_accuracy=0.9, test_accuracy=0.88, epochs_run=3)
    (runs / "a" / "model.onnx").write_bytes(b"x")
    (runs / "sweeps" / "s").mkdir(parents=True)  # a sweep folder is not a run
    rows = runs_table(runs)
    assert [r["run"] for r in rows] == ["a"]
    r = rows[0]
    assert (r["state"], r["best_val_accuracy"], r["test_accuracy"], r["epochs_run"]) == ("finished", 0.9, 0.88, 3)
    assert r["exports"] == ["model.onnx"] and r["model_card"] is False and r["tensorboard"] is False
    assert r["created_text"][:2] == "20" and r["model"] == "lenet5"
