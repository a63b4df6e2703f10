"""Explanations that can be wrong: Grad-CAM must find the only evidence of a class, must depend on what the model
learned (Adebayo et al.'s sanity check), activation maps must be the layers' real outputs, and every registered
model must be explainable. Photos go through predict's own loader: refused and accepted alike."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from images_util import encode, file_variants, hostile
from PIL import Image
from scipy.stats import spearmanr

from cnn_core.core.errors import CnnError, ImageError
from cnn_core.engine.batches import Normalize
from cnn_core.engine.device import threads
from cnn_core.evaluation import explain as ex
from cnn_core.evaluation.predictor import Predictor
from cnn_core.models import build_model, get_spec, list_models
from cnn_core.models.lenet import SimpleCNN

SIDE, PATCH = 32, 8


def patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Dim colour noise with one bright 8x8 patch at a random place: red for class 0, blue for class 1. The
    patch is the only evidence of the class."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 120, (n, SIDE, SIDE, 3)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    corners = []
    for i in range(n):
        r, c = (int(v) for v in rng.integers(0, SIDE - PATCH + 1, 2))
        x[i, r:r + PATCH, c:c + PATCH] = (255, 40, 40) if y[i] == 0 else (40, 40, 255)
        corners.append((r, c))
    return x, y, corners


def predictor(model: torch.nn.Module, name: str, classes: list[str], size: int = SIDE, channels: int = 3,
              tta: bool = False) -> Predictor:
    return Predictor(model.eval(), classes, size, channels, [0.3] * channels, [0.25] * channels, tta, "test",
                     model_name=name)


@pytest.fixture(scope="module")
def patch_model():
    """simple_cnn's architecture (narrower: a few seconds on one CPU thread) trained on the patch images."""
    x, y, _ = patches(600, 0)
    mean = [float(v) for v in x.reshape(-1, 3).mean(0) / 255]
    std = [float(v) for v in x.reshape(-1, 3).std(0) / 255]
    xs = Normalize(tuple(mean), tuple(std), SIDE)(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    ys = torch.from_numpy(y)
    torch.manual_seed(0)
    model = SimpleCNN(2, 3, (8, 16, 32)).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    with threads(1):  # beside other jobs, two threads were 10x slower per step than one
        for _ in range(4):
            for idx in torch.randperm(len(xs)).split(64):
                loss = F.cross_entropy(model(xs[idx]), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    p = Predictor(model.eval(), ["red", "blue"], SIDE, 3, mean, std, False, "patches", model_name="simple_cnn")
    return p, patches(100, 1)


def test_grad_cam_peaks_inside_the_patch(patch_model):
    p, (x, y, corners) = patch_model
    hits = right = 0
    for img, label, (r, c) in zip(x, y, corners):
        heat = ex.grad_cam(p, Image.fromarray(img))
        assert heat.map.shape == (SIDE, SIDE) and heat.map.dtype == np.float32
        assert heat.map.min() >= 0 and heat.map.max() == pytest.approx(1.0)
        right += heat.index == label
        r0, c0 = np.unravel_index(heat.map.argmax(), heat.map.shape)
        hits += r <= r0 < r + PATCH and c <= c0 < c + PATCH
    assert right >= 95, "the model should have learned the patches"
    assert hits >= 90, f"the heatmap peaked inside the patch for only {hits} of 100 images"


def test_randomised_weights_change_the_heatmap(patch_model):
    """Adebayo et al. (2018): a saliency method that gives the same map for a model with random weights explains
    the image, not the model. Rank correlation of the trained and the random model's maps must be below 0.5."""
    p, (x, y, _) = patch_model
    torch.manual_seed(5)
    random = Predictor(SimpleCNN(2, 3, (8, 16, 32)).eval(), p.classes, SIDE, 3, p.mean, p.std, False, "random",
                       model_name="simple_cnn")
    rhos = []
    for img, label in zip(x[:50], y[:50]):
        im = Image.fromarray(img)
        rho = spearmanr(ex.grad_cam(p, im, int(label)).map.ravel(),
                        ex.grad_cam(random, im, int(label)).map.ravel()).statistic
        rhos.append(0.0 if np.isnan(rho) else rho)  # a constant map (all zero) shares no ranking
    assert np.median(rhos) < 0.5, f"median rank correlation {np.median(rhos):.2f}"
    same = spearmanr(*(ex.grad_cam(p, Image.fromarray(x[0])).map.ravel() for _ in range(2))).statistic
    assert same == pytest.approx(1.0)  # and the measure itself can tell equal maps


def test_a_class_by_name_and_refusals(patch_model):
    p, (x, y, _) = patch_model
    im = Image.fromarray(x[0])
    assert ex.grad_cam(p, im, "blue").index == 1 and ex.grad_cam(p, im, "red").label == "red"
    with pytest.raises(CnnError, match="choose one of: red, blue"):
        ex.grad_cam(p, im, "green")
    with pytest.raises(CnnError, match="out of range"):
        ex.grad_cam(p, im, 2)
    nameless = Predictor(p.model, p.classes, SIDE, 3, p.mean, p.std, False, "old")
    with pytest.raises(CnnError, match="which model"):
        ex.grad_cam(nameless, im)


def test_explanations_see_what_predict_sees(patch_model):
    """The explained input is the Predictor's own: the private model's logits on it are predict's."""
    p, (x, _, _) = patch_model
    ims = [Image.fromarray(a) for a in x[:8]]
    model, _ = ex._private(p)
    with torch.no_grad():
        probs = torch.cat([torch.softmax(model(ex.model_input(p, im)), 1) for im in ims]).numpy()
    np.testing.assert_allclose(probs, p.probabilities(ims), atol=1e-5)
    e = ex.explain(p, ims[0])
    assert e.top_k == p.top_k([ims[0]])[0] and e.heatmap.label == e.top_k[0]["label"]
    assert e.heatmap.probability == pytest.approx(e.top_k[0]["probability"], abs=1e-5)
    assert e.view.size == (SIDE, SIDE) and set(e.overlays()) == {"photo", "view"}


def test_the_shared_model_is_left_as_it_was(patch_model):
    """Hooks go on a private copy: the model every user shares never has one, during or after."""
    p, (x, _, _) = patch_model
    seen = []
    p.model.register_forward_pre_hook(lambda m, i: seen.append(sum(len(s._forward_hooks) for s in m.modules())))
    ex.explain(p, Image.fromarray(x[0]))
    assert seen and not any(seen)  # predict's forward pass ran on it, hook-free
    assert ex._private(p)[0] is not p.model and all(not m._forward_hooks for m in ex._private(p)[0].modules())
    p.model._forward_pre_hooks.clear()


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_explains(name):
    """Heatmap at the input size, one entry per declared stage equal to that layer's output as a forward hook
    sees it, and the first layer's filters as RGB images."""
    spec = get_spec(name)
    size = 32 if spec.accepts(32) else spec.min_size
    torch.manual_seed(0)
    p = predictor(build_model(name, 4, 3, size), name, ["a", "b", "c", "d"], size)
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8))
    e = ex.explain(p, im, target="c", k=4)
    assert e.heatmap.map.shape == (size, size) and e.heatmap.label == "c" and e.heatmap.layer == spec.explain_layer
    assert [s.name for s in e.stages] == list(spec.stages)
    seen = {}
    hooks = [p.model.get_submodule(s).register_forward_hook(
        lambda m, i, o, s=s: seen.__setitem__(s, o.detach().clone())) for s in spec.stages]
    with torch.no_grad():
        p.model(ex.model_input(p, im))
    for h in hooks:
        h.remove()
    for stage in e.stages:
        assert torch.allclose(torch.from_numpy(stage.maps), seen[stage.name][0], atol=1e-5), stage.name
        assert len(stage.strongest) == min(4, stage.shape[0])
        means = stage.maps.mean((1, 2))
        assert means[stage.strongest[0]] == means.max()
        assert stage.grid().size[0] > 0
    conv = ex.first_conv(p.model)
    f = ex.filters(p.model)
    assert f.shape == (conv.out_channels, *conv.kernel_size, 3) and 0 <= f.min() and f.max() <= 1


def test_gray_models_get_gray_filters_and_views():
    p = predictor(build_model("lenet5", 10, 1, 28), "lenet5", [str(i) for i in range(10)], 28, channels=1)
    e = ex.explain(p, Image.new("RGB", (60, 40), (200, 30, 30)))
    assert ex.filters(p.model).shape == (6, 5, 5, 1) and e.view.mode == "L"
    assert ex.filters_image(p.model).mode == "RGB" and e.heatmap.map.shape == (28, 28)


def test_tta_models_explain_the_plain_image_with_predicts_probability():
    torch.manual_seed(0)
    p = predictor(build_model("fastnet", 3, 3, 32), "fastnet", ["x", "y", "z"], tta=True)
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8))
    heat = ex.grad_cam(p, im)
    assert heat.probability == pytest.approx(float(p.probabilities([im])[0].max()), abs=1e-6)


def test_hostile_files_are_refused_as_predict_refuses_them_and_usable_ones_explained(tmp_path):
    p = predictor(build_model("lenet5", 3, 3, 32), "lenet5", ["a", "b", "c"])
    for name, data in hostile().items():
        said = p.predict_files([data])[0].get("error")
        assert said, f"predict accepted the {name} file"
        with pytest.raises(ImageError) as e:
            ex.explain(p, data)
        assert str(e.value) == said and "\n" not in said, name
    digit = Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((8, 8), np.uint8)))
    files = {**file_variants(digit, photo=False), "1x1": encode(Image.new("L", (1, 1), 255), "PNG"),
             "5000x3": encode(Image.new("RGB", (5000, 3), (90, 90, 90)), "PNG")}
    (tmp_path / "named.jpg").write_bytes(files["png"])
    for name, data in [*files.items(), ("by path", tmp_path / "named.jpg")]:
        assert "error" not in p.predict_files([data])[0], name
        e = ex.explain(p, data)
        assert e.heatmap.map.shape == (32, 32) and len(e.stages) == 2, name


def test_colour_table_and_overlay():
    assert ex.LUT.shape == (256, 3) and tuple(ex.LUT[0]) == (0, 0, 4) and tuple(ex.LUT[-1]) == (252, 255, 164)
    photo = Image.new("RGB", (400, 300), (0, 0, 0))
    heat = np.zeros((8, 8), np.float32)
    heat[:4, :4] = 1.0
    out = np.asarray(ex.overlay(photo, heat, side=200))
    assert out.shape == (150, 200, 3)
    assert out[10, 10].sum() > out[140, 190].sum()  # the hot corner is the bright one, stretched to the photo
    assert ex.overlay(Image.new("L", (32, 32)), heat, side=224).size == (224, 224)


def test_importing_the_library_and_the_cli_leaves_captum_and_matplotlib_out():
    code = ("import sys, cnn_core.cli.main, cnn_core.evaluation.predictor, cnn_core.evaluation.explain, "
            "cnn_core.workflows.run; bad = [m for m in sys.modules if m.split('.')[0] in ('captum', 'matplotlib')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
