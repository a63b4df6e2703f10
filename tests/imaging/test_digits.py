"""Photos of digits prepared as MNIST was made, with the committed MNIST demo as the judge.

Measured when written (demo-mnist-lenet5, one epoch): the 40 photos below (digits 0-9, dark on light and light on
dark, plain and on textured paper, a 60 px glyph off-centre in 400x400, JPEG) read right 39 of 40 when prepared (a
textured 6 reads as 5 at 51%) and 4 of 40 as they are; 0, 1, 4 and 7 read right in every variant at 70-100%.
MNIST's own test images: 98.7% prepared vs 98.9% raw (n=1000), none flagged; CIFAR-10 test photos: about 85%
flagged as not digits and 91% warned (flagged or under 50%).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets_util import have_dataset
from photos_util import colourful_photo, digit_photo
from PIL import Image

from cnn_core.data import load_dataset
from cnn_core.evaluation.examples import class_examples
from cnn_core.evaluation.export import export_run, load_exported
from cnn_core.evaluation.predictor import Predictor
from cnn_core.imaging.digits import MNIST_BOX, prepare_digit
from cnn_core.runs.checkpoint import input_spec, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DEMO = "demo-mnist-lenet5"
VARIANTS = [(dark, textured) for dark in (True, False) for textured in (False, True)]


@pytest.fixture(scope="module")
def demo() -> Predictor:
    return Predictor.from_run(DEMO, ROOT / "checkpoints")


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_the_committed_demo_infers_its_preparation_and_new_checkpoints_record_it(digits_run):
    ckpt = load_checkpoint(ROOT / "checkpoints" / DEMO / "best.pt")  # weights_only=True, as every load
    assert "prepare" not in ckpt["input"]  # saved before the preparation existed: inferred from its dataset
    assert input_spec(ckpt)["prepare"] == {"kind": "digits", "box": MNIST_BOX}
    assert input_spec(load_checkpoint(ROOT / "checkpoints" / "demo-cifar10-fast" / "best.pt"))["prepare"] is None
    saved = load_checkpoint(digits_run / "best.pt")["input"]
    assert saved["prepare"] == {"kind": "digits", "box": 1.0}  # scikit-learn's digits fill their 8x8 frame


@pytest.mark.parametrize("digit", range(10))
def test_photos_of_digits_read_right_once_prepared(demo, digit):
    got = []
    for dark, textured in VARIANTS:
        im = demo.load(jpeg(digit_photo(digit, dark, textured, seed=digit)))
        best = demo.top_k([im], 1)[0][0]
        got.append((best["label"], best["probability"], demo.doubt(im)))
    assert all(doubt is None for _, _, doubt in got), got  # a digit is never "not a digit"
    right = [label == str(digit) for label, _, _ in got]
    if digit in (0, 1, 4, 7):  # the four: right in every variant, and confidently
        assert all(right) and min(p for _, p, _ in got) > 0.6, got
    else:  # the others: 35 of 36 measured; one miss per digit is the allowance
        assert sum(right) >= 3, got


def test_without_the_preparation_the_demo_misreads_most_of_them(demo):
    """The reason for all this (and proof that the test above can fail): 4 of 40 measured."""
    plain = dataclasses.replace(demo, prepare=None)
    right = sum(plain.top_k([digit_photo(d, dark, textured, seed=d)], 1)[0][0]["label"] == str(d)
                for d in range(10) for dark, textured in VARIANTS)
    assert right <= 15


def test_the_prepared_digit_is_light_on_black_centred_and_fills_the_box(demo):
    arr, doubt = demo.prepared(digit_photo(1, dark_on_light=True, textured=True))
    assert arr.shape == (1, 28, 28) and arr.dtype == np.uint8 and doubt is None
    a = arr[0].astype(float)
    rows, cols = np.nonzero(a > 30)
    assert 18 <= rows.max() - rows.min() + 1 <= 21  # the longer side in the 20 px box
    assert a[:3].max() < 30 and a[:, :3].max() < 30 and a.max() > 200  # black frame, light ink
    ys, xs = np.mgrid[:28, :28]
    assert abs((ys * a).sum() / a.sum() - 14) < 1 and abs((xs * a).sum() / a.sum() - 14) < 1
    assert np.array_equal(np.asarray(demo.model_view(digit_photo(1, True, True))), arr[0])


def test_non_digits_are_doubted(demo):
    assert "colourful" in demo.doubt(colourful_photo())
    assert "no ink" in demo.doubt(Image.new("RGB", (300, 200), (200, 200, 190)))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320), np.uint8))
    assert demo.doubt(noise) is not None
    blob = Image.new("L", (300, 300), 230)
    blob.paste(40, (60, 50, 250, 260))  # a dark cup-like block on a light table
    assert "solid" in demo.doubt(blob) or "fills" in demo.doubt(blob)


def test_scikit_learn_digits_are_never_doubted(demo):
    from sklearn.datasets import load_digits

    d = load_digits()
    ims = [Image.fromarray(np.round(a * 255 / 16).astype(np.uint8)) for a in d.images[:100]]
    assert [demo.doubt(im) for im in ims] == [None] * 100  # measured: 0 of 200, at 8x8 and at 32x32
    assert [demo.doubt(im.resize((32, 32), Image.Resampling.BILINEAR)) for im in ims[:50]] == [None] * 50


def _test_images(name: str, n: int) -> list[tuple[str, Image.Image]]:
    """``n`` random test images of a course dataset, as files would give them."""
    ds = load_dataset(name)
    pick = np.random.default_rng(0).choice(len(ds.y_test), n, replace=False)
    x = ds.x_test[torch.from_numpy(pick)].permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    return [(ds.classes[int(ds.y_test[i])], Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a))
            for i, a in zip(pick, x)]


@pytest.mark.skipif(not have_dataset("cifar10"), reason="CIFAR-10 is not in the data dir")
def test_cifar10_photos_get_the_warning(demo):
    photos = _test_images("cifar10", 200)
    probs = demo.probabilities([im for _, im in photos])
    doubted = [demo.doubt(im) is not None for _, im in photos]
    warned = sum(d or p.max() < 0.5 for d, p in zip(doubted, probs))
    assert sum(doubted) >= 150 and warned >= 170, (sum(doubted), warned)  # measured 85% and 91% of 400


@pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST is not in the data dir")
def test_mnist_digits_come_through_the_preparation(demo):
    digits = _test_images("mnist", 300)
    labels = np.array([int(lab) for lab, _ in digits])
    prepared = (demo.probabilities([im for _, im in digits]).argmax(1) == labels).mean()
    raw = (dataclasses.replace(demo, prepare=None).probabilities([im for _, im in digits]).argmax(1) == labels).mean()
    assert prepared >= raw - 0.015, (prepared, raw)
    assert not any(demo.doubt(im) for _, im in digits[:100])


def test_predict_the_cli_and_the_export_agree(demo, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(ROOT / "checkpoints" / DEMO, root / DEMO)
    photos = [tmp_path / f"digit-{d}.jpg" for d in (0, 1, 4, 7)]
    for d, path in zip((0, 1, 4, 7), photos):
        path.write_bytes(jpeg(digit_photo(d, dark_on_light=d % 2 == 0, textured=True, seed=d)))
    env = {**os.environ, "CNN_CHECKPOINTS": str(root)}
    p = subprocess.run([sys.executable, "-m", "cnn_core", "predict", DEMO, *map(str, photos), "--json", "--top-k", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    cli = [r["top_k"][0] for r in json.loads(p.stdout)]
    export_run(DEMO, "pt2", root)
    pre = json.loads((root / DEMO / "preprocessing.json").read_text())["input"]
    assert pre["prepare"]["kind"] == "digits" and pre["prepare"]["box"] == pytest.approx(20 / 28)
    run = load_exported(root / DEMO / "model.pt2")
    for path, answer in zip(photos, cli):
        im = demo.load(path.read_bytes())
        page = demo.top_k([im], 1)[0][0]  # what Predict and Compare show
        arr = prepare_digit(im.convert(pre["color"]), pre["prepare"]["size"], pre["prepare"]["box"]).image
        assert np.array_equal(arr, demo.prepared(im)[0][0])  # the same prepared array
        x = ((arr[None, None].astype(np.float32) * pre["scale"] - np.array(pre["mean"])[None, :, None, None])
             / np.array(pre["std"])[None, :, None, None]).astype(np.float32)
        exported = torch.softmax(torch.from_numpy(run(x)), 1)[0].numpy()
        assert answer["label"] == page["label"] == str(int(exported.argmax())) == path.stem[-1]
        assert answer["probability"] == pytest.approx(page["probability"], abs=1e-4)
        assert float(exported.max()) == pytest.approx(page["probability"], abs=1e-3)


def test_the_cli_says_when_a_photo_is_not_a_digit(tmp_path):
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(jpeg(colourful_photo()))
    env = {**os.environ, "CNN_CHECKPOINTS": str(ROOT / "checkpoints")}
    p = subprocess.run([sys.executable, "-m", "cnn_core", "predict", DEMO, str(photo)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "does not look like a handwritten digit (a colourful photo)" in p.stdout, p


def test_class_examples_when_the_data_is_here_and_when_it_is_not(digits_run, tmp_path, monkeypatch):
    examples = class_examples(digits_run)
    assert [name for name, _ in examples] == [str(i) for i in range(10)]
    assert all(im.dtype == np.uint8 and im.ndim == 2 and im.max() > 100 for _, im in examples)
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path))  # no course datasets: MNIST is absent, nothing downloads
    assert class_examples(DEMO, ROOT / "checkpoints") == []
