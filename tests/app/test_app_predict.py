"""The Predict page (AppTest): uploads and camera photos through the run's Predictor; bad files get a message."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from app_util import chart_data, charts, digit_png, jpeg, open_page, shown, texts
from datasets_util import have_dataset
from photos_util import colourful_photo, digit_photo
from PIL import Image

from cnn_core.evaluation.predictor import Predictor


@pytest.fixture
def app_env(app_root, monkeypatch):
    monkeypatch.setenv("CNN_CHECKPOINTS", str(app_root))
    return app_root


def test_uploads_get_top_k_bars_and_a_bad_file_its_own_message(app_env):
    at = open_page("predict")
    assert at.selectbox(key="pr_run").value == "digits-lenet"
    assert set(at.file_uploader(key="pr_files").allowed_type) >= {".jpg", ".png", ".webp", ".gif", ".bmp"}
    digit, _ = digit_png(5)
    at.slider(key="pr_k").set_value(4)
    at.file_uploader(key="pr_files").set_value([("digit.png", digit, "image/png"),
                                                ("notes.jpg", b"not an image at all\n", "image/jpeg"),
                                                ("empty.png", b"", "image/png"),
                                                ("cut.jpg", jpeg()[:300], "image/jpeg")]).run()
    assert not at.exception
    errors = [shown(e) for e in at.error]
    assert len(errors) == 3
    assert "notes.jpg" in errors[0] and "not an image file this app can read" in errors[0]
    assert "empty.png" in errors[1] and "empty" in errors[1]
    assert "cut.jpg" in errors[2] and ("truncated" in errors[2] or "decoded" in errors[2])

    p = Predictor.from_run("digits-lenet", app_env)
    expected = p.top_k([p.load(digit)], 4)[0]
    bars = chart_data(charts(at)[0])
    assert list(bars["label"]) == [t["label"] for t in expected]
    assert bars["probability"].tolist() == pytest.approx([t["probability"] for t in expected])
    assert f"{expected[0]['label']} · {expected[0]['probability']:.1%}" in texts(at)
    strip, photo, seen = at.get("image")[:3]  # the strip of its classes (the digits data is bundled), then the upload
    assert strip.captions == [str(i) for i in range(10)]
    assert photo.captions == [r"digit\.png"] and "what the model sees (32x32" in seen.captions[0]


def test_low_confidence_is_flagged(app_env, monkeypatch):
    monkeypatch.setattr(Predictor, "_top", lambda self, probs, k=3: [[{"label": "7", "probability": 0.31},
                                                                      {"label": "1", "probability": 0.29}]])
    at = open_page("predict")
    at.file_uploader(key="pr_files").set_value(("blob.png", digit_png(0)[0], "image/png")).run()
    assert any("Low confidence (31%)" in shown(w) for w in at.warning)


def test_camera_photo_is_classified(app_env):
    at = open_page("predict")
    assert not at.camera_input  # the camera asks for permission, so it waits for the toggle
    at.toggle(key="pr_camera_on").set_value(True).run()
    digit, _ = digit_png(3)
    buf = io.BytesIO()
    Image.open(io.BytesIO(digit)).convert("RGB").save(buf, "JPEG")
    at.camera_input(key="pr_camera").set_value(("shot.jpg", buf.getvalue(), "image/jpeg")).run()
    assert not at.exception and not at.error
    assert len(charts(at)) == 2  # the top-k bars, and the probabilities inside the network
    assert "camera photo" in at.get("image")[1].captions[0]


def test_an_unusable_checkpoint_is_an_error_not_a_crash(app_env):
    at = open_page("predict")
    options = " ".join(at.selectbox(key="pr_run").options)
    assert "broken-ckpt" in options and "failed-run" not in options  # no checkpoint, nothing to predict with
    at.selectbox(key="pr_run").set_value("broken-ckpt").run()
    assert not at.exception
    assert "cannot be used" in shown(at.error[0]) and "not readable" in shown(at.error[0])


def test_predict_opens_on_the_best_model_for_photos(runs):
    """A phone photo goes to a colour model first (the CIFAR-10 demo), not the newest run, a digits model."""
    import os
    import shutil
    import time
    from pathlib import Path

    demos = Path(__file__).resolve().parents[2] / "checkpoints"
    for age, name in enumerate(["demo-mnist-lenet5", "demo-cifar10-lenet5", "demo-cifar10-fast"]):
        shutil.copytree(demos / name, runs / name)
        t = time.time() - 60 * (3 - age)
        os.utime(runs / name, (t, t))
    os.utime(runs / "demo-mnist-lenet5", None)  # the newest
    at = open_page("predict")
    assert at.selectbox(key="pr_run").value == "demo-cifar10-fast"  # the most accurate on photos
    assert "airplane" in texts(at)  # and it says what it can recognise


def test_why_shows_the_heatmap_for_the_top_class_and_on_a_tap_for_the_runner_up(app_env):
    from cnn_core.evaluation.explain import activations, grad_cam

    at = open_page("predict")
    digit, _ = digit_png(5)
    at.file_uploader(key="pr_files").set_value([("digit.png", digit, "image/png")]).run()
    assert not at.exception and not at.error
    p = Predictor.from_run("digits-lenet", app_env)
    im = p.load(digit)
    top = p.top_k([im], 2)[0]
    why = at.expander[0]
    assert why.label.startswith("Why?")
    choice = at.segmented_control(key="pr_0_why")
    assert choice.value == top[0]["label"] and choice.options == [
        f"{t['label']} ({w})" for t, w in zip(top, ("top class", "runner-up"))]
    # a digit model sees the digit cut out of the photo: its heatmap is shown over that view only
    overlays = why.get("image")
    assert len(overlays) == 1 and overlays[0].captions[0].startswith(f"{top[0]['label']} (")
    first = overlays[0].value[0]
    choice.set_value(top[1]["label"]).run()
    assert not at.exception and not at.error
    overlays = at.expander[0].get("image")
    h = grad_cam(p, im, top[1]["label"])
    assert overlays[0].captions[0] == (f"{h.label} ({h.probability:.0%}): over what the model sees (32x32, the "
                                       "digit found and centred)")
    assert overlays[0].value[0] != first  # another heatmap

    inside = at.expander[1]
    assert inside.label.startswith("Inside the network")
    flow = inside.get("image")[0]
    stages = activations(p, im)
    assert flow.captions == ["input 1×32×32"] + [
        f"{i}. {s.name.replace('.', chr(92) + '.')}: {'×'.join(map(str, s.shape))}" for i, s in enumerate(stages, 1)]
    assert len(flow.value) == 1 + len(stages) == 3
    assert inside.get("image")[1].captions == ["the first layer's filters (gray is zero)"]
    bars = chart_data(charts(at)[-1])  # after the top-k bars (k = 3), the top 5 inside
    assert list(bars["label"]) == [t["label"] for t in p.top_k([im], 5)[0]]


@pytest.fixture
def mnist_demo(tmp_path, monkeypatch):
    """Only the committed MNIST demo, as a fresh clone has it."""
    root = tmp_path / "runs"
    demo = Path(__file__).resolve().parents[2] / "checkpoints" / "demo-mnist-lenet5"
    shutil.copytree(demo, root / demo.name)
    monkeypatch.setenv("CNN_CHECKPOINTS", str(root))
    return root


def _upload(at, *photos: tuple[str, Image.Image]):
    files = [(name, _jpeg_bytes(im), "image/jpeg") for name, im in photos]
    return at.file_uploader(key="pr_files").set_value(files).run()


def test_the_mnist_demo_prepares_a_digit_photo_and_warns_on_a_holiday_snap(mnist_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "no-data"))  # a fresh clone: no MNIST, so no strip either
    at = open_page("predict")
    assert at.selectbox(key="pr_run").value == "demo-mnist-lenet5" and not at.exception
    assert "finds the digit in a photo" in texts(at)
    _upload(at, ("four.jpg", digit_photo(4, dark_on_light=True, textured=True, seed=4)),
            ("holiday.jpg", colourful_photo()))
    assert not at.exception and not at.error
    photo, seen = at.get("image")[:2]  # no strip: the data is absent
    assert "the digit found and centred" in seen.captions[0] and photo.captions == [r"four\.jpg"]
    p = Predictor.from_run("demo-mnist-lenet5", mnist_demo)
    best = p.top_k([p.load(_jpeg_bytes(digit_photo(4, True, True, seed=4)))], 1)[0][0]
    assert best["label"] == "4" and f"4 · {best['probability']:.1%}" in texts(at)
    warnings = [shown(w) for w in at.warning]
    assert len(warnings) == 1  # the digit gets none, the holiday snap one line
    assert "does not look like a handwritten digit (a colourful photo)" in warnings[0] and "\n" not in warnings[0]


@pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST is not in the data dir")
def test_the_strip_shows_one_example_per_class_when_the_data_is_here(mnist_demo):
    at = open_page("predict")
    strip = at.get("image")[0]
    assert strip.captions == [str(i) for i in range(10)] and not at.exception


def _jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()
