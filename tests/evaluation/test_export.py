"""Exports load without cnn_core and give the PyTorch model's outputs on real dataset images."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from cnn_core.config import TrainConfig
from cnn_core.core.errors import CnnError
from cnn_core.core.files import read_json
from cnn_core.engine.prepared import prepare_data
from cnn_core.evaluation.export import ONNX_HINT, export_run
from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.checkpoint import load_checkpoint, model_from_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits_run(digits_run, tmp_path_factory) -> Path:
    """A copy of the shared finished run: exports add files, which tests reading the original must not find."""
    import shutil

    copy = tmp_path_factory.mktemp("export-runs") / digits_run.name
    shutil.copytree(digits_run, copy)
    return copy


def _real_batch(run_dir: Path) -> np.ndarray:
    """Five real test images, preprocessed exactly as training and evaluation do: (5, C, H, W) float32."""
    prep = prepare_data(TrainConfig.from_dict(read_json(run_dir / "config.json")))
    x = prep.normalize()(prep.x_test[[0, 50, 100, 200, 300]])
    return x.contiguous().numpy()


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_export_matches_pytorch_on_real_images_at_batch_1_and_5(digits_run, fmt):
    res = export_run(digits_run, fmt)
    path = Path(res["path"])
    assert path == digits_run / f"model.{fmt}" and res["max_abs_diff"] < 1e-4
    model = model_from_checkpoint(load_checkpoint(digits_run / "best.pt"))
    assert not model.training
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
        run = lambda x: module(torch.from_numpy(x)).detach().numpy()  # noqa: E731
    else:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[0] not in (1, 2, 3, 5)  # symbolic batch dimension
        run = lambda x: session.run(None, {"input": x})[0]  # noqa: E731
    images = _real_batch(digits_run)
    for n in (1, 5):
        x = images[:n]
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = run(x)
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert want.argmax(1).tolist() == run(images).argmax(1).tolist()


def test_preprocessing_json_is_enough_to_reproduce_predictions(digits_run):
    export_run(digits_run, "onnx")
    pre = json.loads((digits_run / "preprocessing.json").read_text())
    assert pre["classes"] == [str(i) for i in range(10)] and pre["input"]["channels"] == 1
    assert pre["input"]["height"] == pre["input"]["width"] == 32 and pre["tta"] is False
    from cnn_core.data import load_dataset

    ds = load_dataset("digits")
    pil = [Image.fromarray(ds.x_test[i, 0].numpy(), "L") for i in range(6)]
    # what a deployment would write, with nothing but the JSON and numpy (a digits model's photo preparation is
    # a list of steps there; its reference implementation stands in for the deployment's own)
    inp = pre["input"]
    prep = inp["prepare"]
    assert prep["kind"] == "digits" and prep["box"] == 1.0 and prep["size"] == 32 and len(prep["steps"]) >= 8
    assert "without cnn_core can reproduce" in prep["about"] and "none" in inp["resize"]
    from cnn_core.imaging.digits import prepare_digit

    arr = np.stack([prepare_digit(im.convert(inp["color"]), prep["size"], prep["box"]).image.astype(np.float32)[None]
                    for im in pil])  # (N, 1, H, W)
    mean = np.array(inp["mean"], dtype=np.float32)[None, :, None, None]
    std = np.array(inp["std"], dtype=np.float32)[None, :, None, None]
    x = ((arr * inp["scale"] - mean) / std).astype(np.float32)
    logits = ort.InferenceSession(str(digits_run / "model.onnx")).run(None, {"input": x})[0]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, Predictor.from_run(digits_run).probabilities(pil), atol=1e-4)


def test_export_errors_are_one_line(digits_run, monkeypatch):
    with pytest.raises(CnnError, match="pt2, onnx"):
        export_run(digits_run, "torchscript")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(CnnError) as e:
        export_run(digits_run, "onnx")
    assert str(e.value) == ONNX_HINT and "pip install onnx onnxscript onnxruntime" in ONNX_HINT


def test_cli_export(digits_run):
    env = {**os.environ, "CNN_CHECKPOINTS": str(digits_run.parent)}
    p = subprocess.run([sys.executable, "-m", "cnn_core", "export", digits_run.name, "--format", "pt2", "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["format"] == "pt2" and res["max_abs_diff"] < 1e-4 and Path(res["path"]).is_file()
    p = subprocess.run([sys.executable, "-m", "cnn_core", "export", "no-such-run"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and p.stderr.startswith("error: no run") and len(p.stderr.splitlines()) == 1
