"""The command line as a student uses it: real subprocesses, exit codes, one-line errors, JSON outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, check=None):
    e = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                       timeout=600)
    if check is not None:
        assert p.returncode == check, (p.stdout, p.stderr)
    return p


def test_models_lists_the_registry_with_parameter_counts():
    out = json.loads(cli("models", "--json", check=0).stdout)
    by = {r["model"]: r for r in out}
    assert by["lenet5"]["params"] == 62006 and by["resnet18"]["params"] == 11173962
    assert {"lenet5", "lenet5_wide", "resnet9", "resnet18", "vgg16", "alexnet"} <= set(by)


def test_models_answers_from_its_cache_without_importing_torch(tmp_path, monkeypatch):
    """The first call builds the table (torch, torchvision: seconds); later calls read it back and import
    neither; a changed model file or library version makes a new key, so a stale table is never shown."""
    env = {"CNN_CACHE_DIR": str(tmp_path)}
    first = json.loads(cli("models", "--json", env=env, check=0).stdout)
    assert len(list(tmp_path.glob("model-table-*.json"))) == 1
    probe = ("import sys, json; from cnn_core.cli.main import main; main(['models', '--json']); "
             "print(json.dumps(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)))")
    p = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                       text=True, timeout=120, check=True)
    rows, imported = p.stdout.strip().splitlines()
    assert json.loads(rows) == first and json.loads(imported) == []

    from cnn_core.cli import listing

    before = listing._models_key()
    monkeypatch.setattr(listing.importlib.metadata, "version", lambda package: "99.0")
    assert listing._models_key() != before


def test_datasets_reports_presence(tmp_path):
    out = json.loads(cli("--data-dir", str(tmp_path), "datasets", "--json", check=0).stdout)
    by = {r["dataset"]: r for r in out}
    assert by["digits"]["present"] and not by["cifar10"]["present"]


@pytest.mark.parametrize("args,needle", [
    (["train", "--model", "lenet6", "--dataset", "digits"], "choose one of"),
    (["train", "--model", "lenet5", "--dataset", "digits", "--lr", "-1"], "learning rate"),
    (["train", "--model", "lenet5", "--dataset", "svhn"], "unknown dataset"),
    (["train", "--model", "lenet5"], "needs --dataset"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["evaluate", "no-such-run"], "no run"),
    (["train", "--resume", "../../etc"], "no run"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path):
    p = cli(*args, env={"CNN_CHECKPOINTS": str(tmp_path)})
    assert p.returncode == 2
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("command", ["train", "estimate", "lr-find", "sweep"])
def test_a_command_without_a_dataset_names_the_registered_ones(command, monkeypatch, capsys):
    """One check (cli.base.need_dataset) whose list comes from the data registry: a new dataset shows up in it."""
    from dataclasses import replace

    from cnn_core.cli.main import main
    from cnn_core.data import registry

    monkeypatch.setitem(registry._DATASETS, "tinyset", replace(registry.dataset_info("digits"), name="tinyset"))
    assert main([command, "--model", "lenet5"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == [f"error: {command} needs --dataset (cifar10, digits, mnist, tinyset or folder:PATH) or --preset"]


def test_train_evaluate_predict_end_to_end(tmp_path):
    env = {"CNN_CHECKPOINTS": str(tmp_path / "ck")}
    p = cli("train", "--model", "lenet5", "--dataset", "digits", "--epochs", "6", "--lr", "0.05", "--schedule",
            "onecycle", "--name", "cli-run", "--json", env=env, check=0)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("run", "run_dir", "epochs_run", "best_val_accuracy", "test_accuracy", "train_seconds"):
        assert k in summary
    assert summary["run"] == "cli-run" and summary["epochs_run"] == 6 and summary["test_accuracy"] > 0.5
    p = cli("train", "--resume", "cli-run", env=env, check=2)  # finished: nothing to resume without --epochs
    assert "has finished (6 epochs)" in p.stderr and "--epochs N" in p.stderr

    rep = json.loads(cli("evaluate", "cli-run", "--json", env=env, check=0).stdout)
    assert rep["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4)
    assert len(rep["confusion_matrix"]) == 10 and sum(map(sum, rep["confusion_matrix"])) == 360
    assert {"class", "precision", "recall", "f1", "support"} <= set(rep["per_class"][0])
    assert 0 <= rep["macro_f1"] <= 1
    val = json.loads(cli("evaluate", "cli-run", "--split", "val", "--json", env=env, check=0).stdout)
    assert sum(map(sum, val["confusion_matrix"])) == 144

    good = tmp_path / "seven.png"
    Image.new("L", (40, 40), 0).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    p = cli("predict", "cli-run", str(good), str(bad), "--top-k", "2", "--json", env=env)
    assert p.returncode == 2  # one image was refused
    res = json.loads(p.stdout)
    assert len(res[0]["top_k"]) == 2 and {"label", "probability"} <= set(res[0]["top_k"][0])
    assert res[1]["image"].endswith("notes.jpg") and "image" in res[1]["error"]
    assert cli("predict", "cli-run", str(good), env=env).returncode == 0


@pytest.mark.parametrize("args, said", [
    (["--dataset", "folder:/no/such/folder"], "does not exist"),
    (["--dataset", "digits", "--train-subset", "3"], "too small"),
    (["--dataset", "digitz"], "unknown dataset 'digitz'"),
])
def test_a_failed_start_is_one_line_and_leaves_no_run_folder(tmp_path, args, said):
    env = {**os.environ, "CNN_CHECKPOINTS": str(tmp_path / "runs")}
    p = subprocess.run([sys.executable, "-m", "cnn_core", "train", "--model", "lenet5", *args, "--epochs", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and said in lines[0], p.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_show_writes_pictures_and_prints_one_line_or_json(tmp_path):
    p = cli("show", "digits", "--out", str(tmp_path), check=0)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digits: 10 classes, 1293 train / 144 val / 360 test, 8x8x1")
    assert "0 test and 0 val images also in train" in lines[0]
    for name in ("digits-samples.png", "digits-augment.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.width > 200
    out = json.loads(cli("show", "digits", "--out", str(tmp_path / "j"), "--json", check=0).stdout)
    assert [sum(out["counts"][s]) for s in ("train", "val", "test")] == [1293, 144, 360]
    assert out["copies"] == {"test": 0, "val": 0} and len(out["mean"]) == 1 and "median" in out["small_rule"]
    assert "no flips" in out["augmentation"] and Path(out["pictures"]["samples"]).is_file()


@pytest.mark.parametrize("dataset, said", [("cifar10", "CIFAR-10 not found in"),
                                           ("folder:holiday_photos", "does not exist")])
def test_show_of_an_absent_dataset_is_one_line_with_an_empty_data_dir(tmp_path, dataset, said):
    dead = "http://127.0.0.1:9"  # nothing listens there: the download attempt fails at once, offline or not
    env = {"CNN_DATA_DIR": str(tmp_path / "data"), "http_proxy": dead, "https_proxy": dead,
           "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "no_proxy": ""}
    p = cli("show", dataset, "--out", str(tmp_path / "out"), env=env)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], p.stderr
    assert not (tmp_path / "out").exists()


def test_resume_with_epochs_trains_a_finished_run_further_and_refuses_other_changes(tmp_path):
    env = {"CNN_CHECKPOINTS": str(tmp_path)}
    cli("train", "--model", "lenet5", "--dataset", "digits", "--epochs", "1", "--max-batches", "3", "--name", "short",
        "--quiet", env=env, check=0)
    for args, said in [(["--lr", "0.1", "--model", "vgg16", "--name", "x"], "--model, --lr, --name cannot change run"),
                       (["--finetune", "head"], "--finetune cannot change run"),
                       (["--epochs", "1"], "has trained 1 epochs already")]:
        p = cli("train", "--resume", "short", *args, env=env, check=2)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and said in lines[0], p.stderr
    p = cli("train", "--prepared", "short", "--epochs", "3", env=env, check=2)
    assert "--epochs cannot change run short" in p.stderr
    p = cli("train", "--resume", "short", "--epochs", "3", "--json", env=env, check=0)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["epochs_run"] == 3 and summary["state"] == "finished"
    assert "extending short from 1 to 3 epochs" in p.stdout
    assert json.loads((tmp_path / "short" / "config.json").read_text())["epochs"] == 3
    (tmp_path / "short" / "last.pt").unlink()
    p = cli("train", "--resume", "short", "--epochs", "5", env=env, check=2)
    assert "run short has no last.pt to continue from" in p.stderr
