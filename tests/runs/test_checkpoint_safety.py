"""Checkpoints from the disk are untrusted: loading never runs code, and a broken or foreign checkpoint is one
clear line, "unusable" in every list, and never an exception out of a listing."""

from __future__ import annotations

import json
import os
import pickletools
import shlex
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from cnn_core.cli.main import main
from cnn_core.config import TrainConfig
from cnn_core.core.errors import CheckpointError, CnnError
from cnn_core.evaluation.predictor import Predictor
from cnn_core.models import build_model
from cnn_core.runs import checkpoint
from cnn_core.runs.checkpoint import checkpoint_problem, load_checkpoint, model_from_checkpoint
from cnn_core.runs.rundir import list_runs
from cnn_core.workflows.run import train_run


class Planted:
    """Pickles into "run this command when loaded": what a hostile checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def make_run(root: Path, name: str, source: Path, best: bytes | None = None, last: bytes | None = None) -> Path:
    """A run folder that looks finished (config and status copied from a real run) with the given files."""
    run = root / name
    run.mkdir(parents=True)
    for f in ("config.json", "status.json", "metrics.csv"):
        shutil.copy(source / f, run / f)
    for f, data in (("best.pt", best), ("last.pt", last)):
        if data is not None:
            (run / f).write_bytes(data)
    return run


def saved(obj) -> bytes:
    path = Path(os.environ["CNN_CHECKPOINTS"]) / ".scratch.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    data = path.read_bytes()
    path.unlink()
    return data


def test_a_checkpoint_that_would_run_a_command_is_refused_and_it_never_runs(runs, digits_run, tmp_path,
                                                                            monkeypatch, capsys):
    marker = tmp_path / "pwned"
    good = load_checkpoint(digits_run / "best.pt")
    evil = saved({**good, "classes": [*good["classes"][:9], Planted(marker)]})
    run = make_run(runs, "evil", digits_run, best=evil, last=evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # an environment asking torch to be unsafe

    for path in (run / "best.pt", run / "last.pt"):
        with pytest.raises(CheckpointError, match="could run code; refused"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError):
        Predictor.from_run("evil")
    info = {r.name: r for r in list_runs()}["evil"]
    assert info.state == "unusable" and "could run code" in info.message
    image = tmp_path / "x.png"
    image.write_bytes((digits_run / "config.json").read_bytes())  # the file is never reached anyway
    assert main(["predict", "evil", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could run code" in err[0]
    with pytest.raises(CheckpointError):
        train_run(TrainConfig(), resume="evil")  # resuming loads last.pt
    assert not marker.exists()

    # the control, read without unpickling: the file really carries "call os.system(touch marker)" on load
    planted = (f"{os.system.__module__} system", f"touch {shlex.quote(str(marker))}")
    assert planted in _pickle_calls(run / "best.pt") and planted not in _pickle_calls(digits_run / "best.pt")


def _pickle_calls(path: Path) -> list[tuple[str, str]]:
    """(callable, string argument) for every GLOBAL-then-REDUCE in a torch checkpoint's pickle, found by reading
    its opcodes (pickletools), never by running them."""
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    calls, target, args = [], None, []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name in ("GLOBAL", "STACK_GLOBAL"):
            target, args = arg, []
        elif target and isinstance(arg, str):
            args.append(arg)
        elif op.name == "REDUCE" and target:
            calls.append((target, *args[:1]))
            target = None
    return calls


def _foreign(good: dict, kind: str) -> dict:
    if kind == "another architecture":
        other = build_model("simple_cnn", 10, 1, 32)
        return {**good, "state_dict": other.state_dict()}
    if kind == "another class count":
        three = build_model("lenet5", 3, 1, 32)
        return {**good, "state_dict": three.state_dict()}
    if kind == "another input size":
        return {**good, "model": {**good["model"], "kwargs": {**good["model"]["kwargs"], "in_channels": 3}}}
    if kind == "class names do not match outputs":
        return {**good, "classes": good["classes"][:4]}
    if kind == "unknown model":
        return {**good, "model": {**good["model"], "name": "lenet9000"}}
    if kind == "nonsense arguments":
        return {**good, "model": {**good["model"], "kwargs": {"num_classes": -5}}}
    raise AssertionError(kind)


BROKEN = {
    "empty": ("", "empty"),
    "truncated": ("half", "not readable"),
    "random bytes": ("random", "not readable"),
    "zip-looking random bytes": ("zip", "not readable"),
    "a JSON file": ("json", "not readable"),
    "a plain list": ("list", "not a cnn_core checkpoint"),
}
FOREIGN = {
    "another architecture": "another architecture",
    "another class count": "(3, 84)",
    "another input size": "features.0.weight",
    "class names do not match outputs": "4 class names for 10 outputs",
    "unknown model": "lenet9000",
    "nonsense arguments": "does not describe a model",
}


def _broken_bytes(kind: str, good_file: Path) -> bytes:
    data = good_file.read_bytes()
    rng = torch.Generator().manual_seed(0)
    return {"": b"", "half": data[:len(data) // 2],
            "random": bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist()),
            "zip": b"PK\x03\x04" + bytes(torch.randint(0, 256, (4096,), generator=rng,
                                                        dtype=torch.uint8).tolist()),
            "json": json.dumps({"format": 1}).encode(),
            "list": saved([1, 2, 3])}[kind]


@pytest.mark.parametrize("kind", [*BROKEN, *FOREIGN])
def test_broken_or_foreign_checkpoints_get_one_clear_line_everywhere(kind, runs, digits_run, capsys):
    if kind in BROKEN:
        data, needle = _broken_bytes(BROKEN[kind][0], digits_run / "best.pt"), BROKEN[kind][1]
    else:
        data, needle = saved(_foreign(load_checkpoint(digits_run / "best.pt"), kind)), FOREIGN[kind]
    name = "bad-" + kind.replace(" ", "-")
    run = make_run(runs, name, digits_run, best=data)

    with pytest.raises(CheckpointError) as e:
        model_from_checkpoint(load_checkpoint(run / "best.pt"))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg
    with pytest.raises(CheckpointError) as e:
        Predictor.from_run(name)
    assert str(e.value) == msg
    assert checkpoint_problem(run / "best.pt") == msg

    infos = {r.name: r for r in list_runs()}  # never raises, shows why
    assert infos[name].state == "unusable" and infos[name].message == msg
    assert main(["runs"]) == 0
    assert main(["evaluate", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: {msg}"


def test_a_good_checkpoint_is_listed_as_finished_and_its_check_is_remembered(runs, digits_run, monkeypatch):
    make_run(runs, "good", digits_run, best=(digits_run / "best.pt").read_bytes())
    assert {r.name: r.state for r in list_runs()} == {"good": "finished"}
    calls = []
    real = load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        assert list_runs()[0].state == "finished"
    assert calls == []  # drawing a runs list again costs no reload
    (runs / "good" / "best.pt").write_bytes(b"")  # a changed file is checked again
    assert list_runs()[0].state == "unusable"


def test_garbage_run_files_never_break_a_listing(runs, digits_run):
    odd = {"list-status": ("config.json", "[1, 2]", "status.json", "[]"),
           "text-numbers": ("config.json", '{"model": "lenet5"}', "status.json",
                            '{"state": "finished", "epochs_run": "many", "pid": "x", "updated": "soon", '
                            '"best_val_accuracy": "high"}'),
           "binary-config": ("config.json", "\x00\xff", "status.json", "{"),
           "running-with-bad-pid": ("config.json", "{}", "status.json", '{"state": "running", "pid": -1}')}
    for name, (f1, t1, f2, t2) in odd.items():
        (runs / name).mkdir(parents=True)
        (runs / name / f1).write_text(t1)
        (runs / name / f2).write_text(t2)
    (runs / "text-numbers" / "best.pt").write_bytes((digits_run / "best.pt").read_bytes())
    infos = {r.name: r for r in list_runs()}
    assert set(infos) == set(odd)
    assert infos["text-numbers"].state == "finished" and infos["text-numbers"].epochs_run == 0
    assert infos["text-numbers"].best_val_accuracy is None
    assert infos["list-status"].state == "unusable"
    json.dumps([r.to_dict() for r in infos.values()], default=str)
    with pytest.raises(CnnError, match="no run"):
        Predictor.from_run("list-status")  # its config names no model: not a run
