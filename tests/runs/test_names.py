"""Names and paths a user types: run names are folder names, so they are validated; a bare run name never leaves
the checkpoints root; a path must be a real run folder; uploaded file names are labels, never paths."""

from __future__ import annotations

import builtins
import io
import json
import os
import pathlib
import signal

import pytest
from PIL import Image

from cnn_core.cli.main import main
from cnn_core.config import TrainConfig
from cnn_core.core import files as core_files
from cnn_core.core.errors import CnnError
from cnn_core.core.files import atomic_write_bytes
from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs import checkpoint
from cnn_core.runs.rundir import RunDir, validate_run_name
from cnn_core.workflows.run import train_run

BAD_NAMES = ["", " ", "../x", "..", ".", "/etc/passwd", "/tmp/run", "a/b", "a\\b", "~", "x" * 65, "-flag",
             "_hidden", ".hidden", "my run", "run\n2", "run\x00", "naïve", "名前", "run;rm -rf", "$(id)", "a:b"]
TINY = TrainConfig(model="lenet5", dataset="digits", epochs=1, max_batches=2, batch_size=32)


def listing(folder: pathlib.Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_run_names_are_refused_before_anything_is_written(name, runs, tmp_path):
    before = listing(tmp_path)
    with pytest.raises(CnnError, match="not allowed: use 1-64 letters, digits") as e:
        train_run(TINY, name=name)
    assert "\n" not in str(e.value)
    assert listing(tmp_path) == before  # no folder in the root, nothing beside it


@pytest.mark.parametrize("name", ["a", "Z9", "cifar_resnet-18", "x" * 64, "2024-05-01_lenet"])
def test_good_run_names_are_kept_as_typed(name):
    assert validate_run_name(name) == name


def test_taken_names_get_a_suffix_and_stay_valid(tmp_path):
    root = tmp_path / "ck"
    long = "y" * 64
    made = [RunDir.create(root, n, "lenet5", "digits").path for n in ("same", "same", "same", long, long)]
    assert [p.name for p in made[:3]] == ["same", "same-2", "same-3"]
    assert made[3].name == long and made[4].name != long
    assert all(validate_run_name(p.name) and p.parent == root for p in made)
    auto = RunDir.create(root, None, "lenet5", "folder:/home/x/My Photos").path
    assert auto.parent == root and validate_run_name(auto.name)  # a dataset path never becomes a folder path


def _run_folder(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY.to_dict()))
    return folder


def test_a_bare_name_only_ever_means_a_folder_in_the_root(tmp_path, monkeypatch):
    root = tmp_path / "work" / "checkpoints"
    _run_folder(root / "mine")
    _run_folder(tmp_path / "work" / "decoy")  # a run-looking folder next to the working directory
    (tmp_path / "work" / "config.json").write_text(json.dumps(TINY.to_dict()))  # and the root's parent
    monkeypatch.chdir(tmp_path / "work")
    assert RunDir.resolve("mine", root).path == root / "mine"
    for name in ("decoy", "..", ".", "~", "", "mine\x00", "x" * 5000):
        with pytest.raises(CnnError, match="no run"):
            RunDir.resolve(name, root)


def test_a_path_is_accepted_only_if_it_is_a_real_run_folder(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    real = _run_folder(tmp_path / "elsewhere" / "shared-run")
    monkeypatch.chdir(tmp_path)
    assert RunDir.resolve(real, root).path == real
    assert RunDir.resolve("elsewhere/shared-run", root).path == pathlib.Path("elsewhere/shared-run")
    not_runs = {"somewhere": {"last.pt": b"x"},  # checkpoint-looking files alone do not make a run
                "configless": {"config.json": b"[]"},
                "other-json": {"config.json": b'{"name": "a package.json, say"}'}}
    for folder, files in not_runs.items():
        (tmp_path / folder).mkdir()
        for f, data in files.items():
            (tmp_path / folder / f).write_bytes(data)
        for spelled in (str(tmp_path / folder), f"../{tmp_path.name}/{folder}", f"./{folder}"):
            with pytest.raises(CnnError, match="no run"):
                RunDir.resolve(spelled, root)


def test_resume_cannot_adopt_or_write_into_a_folder_outside_the_root(runs, tmp_path, monkeypatch, capsys):
    victim = tmp_path / "somewhere"
    victim.mkdir()
    (victim / "last.pt").write_bytes(b"precious")
    (victim / "notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # so ../somewhere is the victim
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # cmd_train's SIGTERM hook: not in the test runner
    with pytest.raises(CnnError, match="no run"):
        train_run(TrainConfig(), resume="../somewhere")
    assert main(["train", "--resume", "../somewhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no run")
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before


def test_every_file_a_run_writes_is_inside_its_run_folder(runs, monkeypatch):
    written: list[pathlib.Path] = []
    real = atomic_write_bytes
    for module in (core_files, checkpoint):  # every atomic write: JSON, CSV and checkpoints
        monkeypatch.setattr(module, "atomic_write_bytes", lambda path, data: written.append(path) or real(path, data))
    summary = train_run(TINY, name="contained")
    run = (runs / "contained").resolve()
    assert summary["run_dir"] and pathlib.Path(summary["run_dir"]).resolve() == run
    assert {p.name for p in written} >= {"config.json", "status.json", "metrics.csv", "last.pt", "best.pt"}
    assert all(pathlib.Path(p).resolve().parent == run for p in written)
    assert listing(runs.parent) == {"checkpoints", "checkpoints/contained"} | {
        f"checkpoints/contained/{f}" for f in os.listdir(run)}


def test_uploaded_file_names_are_labels_never_paths(digits_run, tmp_path, monkeypatch):
    p = Predictor.from_run(digits_run)
    upload = io.BytesIO()
    Image.new("L", (20, 20), 0).save(upload, "PNG")
    decoy = tmp_path / "decoy.png"  # a real image at the path the "name" points to: it must not be read
    Image.new("L", (20, 20), 255).save(decoy)
    expected = p.top_k([Image.new("L", (20, 20), 0)], 10)[0]
    names = [str(decoy), "../../etc/passwd", "C:\\Windows\\win.ini"]


    def no_files(*a, **k):
        raise AssertionError(f"a file was opened: {a[:1]}")
    for target, attr in ((builtins, "open"), (os, "open"), (os, "stat"), (pathlib.Path, "read_bytes")):
        monkeypatch.setattr(target, attr, no_files)
    try:
        results = p.predict_files([upload.getvalue()] * 3, k=10, names=names)
    finally:  # pytest itself opens files to report a failure
        monkeypatch.undo()
    assert [r["image"] for r in results] == names
    assert all(r["top_k"] == expected for r in results)  # the uploaded bytes, not the decoy, were classified
