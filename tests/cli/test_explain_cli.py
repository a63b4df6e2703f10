"""``python -m cnn_core explain`` as a script uses it: real subprocesses, files written, JSON, one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from images_util import hostile
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_explain_writes_its_files_and_prints_one_line(digits_run, tmp_path):
    photo = tmp_path / "my digit.png"
    Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((20, 20), np.uint8))).save(photo)
    root = str(digits_run.parent)
    p = cli("--checkpoints", root, "explain", digits_run.name, str(photo), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "explain-my digit"  # by default beside where it runs, named after the photo
    assert len(p.stdout.strip().splitlines()) == 1 and "Grad-CAM for" in p.stdout and str(out.name) in p.stdout
    names = {f.name for f in out.iterdir()}
    assert {"heatmap-photo.png", "heatmap-view.png", "filters.png", "heatmap.npy", "stage-1-features.2.png",
            "stage-2-features.5.png"} == names
    assert Image.open(out / "heatmap-photo.png").size == (512, 512)
    assert np.load(out / "heatmap.npy").shape == (32, 32)
    assert not any(digits_run.parent.glob("**/heatmap*.png"))  # nothing went into the checkpoints

    j = cli("--checkpoints", root, "explain", digits_run.name, str(photo), "--class", "3", "--out",
            str(tmp_path / "o"), "--json", "--top-k", "2")
    assert j.returncode == 0, j.stderr
    res = json.loads(j.stdout)
    assert res["class"] == "3" and len(res["top_k"]) == 2 and res["layer"] == "features.5"
    heat = np.array(res["heatmap"])
    assert heat.shape == (32, 32) and 0 <= heat.min() and heat.max() <= 1
    np.testing.assert_allclose(heat, np.load(res["heatmap_npy"]), atol=1e-4)
    assert [s["shape"] for s in res["stages"]] == [[6, 14, 14], [16, 5, 5]]
    assert all(Path(f).is_file() for f in res["files"].values())


def test_a_bad_file_is_refused_as_predict_refuses_it(digits_run, tmp_path):
    root = str(digits_run.parent)
    for name in ("truncated jpeg", "html"):  # each case's message is checked in tests/evaluation/test_explain.py
        bad = tmp_path / f"{name}.jpg"
        bad.write_bytes(hostile()[name])
        said = cli("--checkpoints", root, "explain", digits_run.name, str(bad))
        predicted = cli("--checkpoints", root, "predict", digits_run.name, str(bad))
        assert said.returncode == predicted.returncode == 2, name
        assert said.stdout == predicted.stdout and len(said.stdout.splitlines()) == 1 and not said.stderr, name
    j = cli("--checkpoints", root, "explain", digits_run.name, str(bad), "--json")
    assert j.returncode == 2 and json.loads(j.stdout)["error"] in predicted.stdout
    assert not list(tmp_path.glob("explain-*"))


def test_an_unknown_class_names_the_choices(digits_run, tmp_path):
    photo = tmp_path / "p.png"
    Image.new("L", (30, 30), 128).save(photo)
    p = cli("--checkpoints", str(digits_run.parent), "explain", digits_run.name, str(photo), "--class", "dog")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "choose one of: 0, 1, 2" in p.stderr
