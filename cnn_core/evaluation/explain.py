"""Inside the network: why a model says what it says (Grad-CAM), what each convolutional stage sees (activation
maps), and what its first layer looks for (filters), for any registered model and any photo.

The attribution is captum's (``LayerGradCam``, ``LayerActivation``) rather than hand-written hooks: it is
maintained by the PyTorch team, and its hooks keep a copy of the layer's output, so an in-place ReLU after the
hooked layer (LeNet, VGG, AlexNet have them) cannot overwrite what is explained. captum is imported inside the
functions that use it: it brings matplotlib (0.4 s), which ``python -m cnn_core --help`` must not pay.

The registry names the layers (``ModelSpec.explain_layer``: the last spatial layer; ``ModelSpec.stages``).
Everything returned is plain (numpy arrays, PIL images, dicts) for the pages, the CLI and the training callback.
Explanations run on a private copy of a Predictor's model, one explanation at a time: the hooks would otherwise
touch a model that every user of the app shares.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..core.errors import CnnError
from ..engine.batches import Normalize
from ..engine.device import threads
from ..models.registry import ModelSpec, get_spec
from .predictor import Predictor

# inferno's anchors (dark purple -> orange -> pale yellow): bright means "more", readable in gray and by the
# colour-blind; interpolated to a 256-entry lookup table
_ANCHORS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], np.float32)
LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                for c in range(3)], 1).round().astype(np.uint8)  # (256, 3)


@dataclass
class Heatmap:
    """Grad-CAM for one class: where in the image the evidence for ``label`` lies."""

    label: str
    index: int
    probability: float  # what predict says for this class (a TTA model: averaged with the mirror image)
    map: np.ndarray  # (size, size) float32 in [0, 1] over the model's input; all zero when nothing speaks for it
    layer: str  # the dotted module path it was computed at
    grid: tuple[int, int]  # that layer's own (H, W): how coarse the map really is before upsampling

    def to_dict(self, decimals: int = 4) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probability": round(self.probability, 5),
                "layer": self.layer, "grid": list(self.grid), "heatmap": np.round(self.map, decimals).tolist()}


@dataclass
class Stage:
    """One convolutional stage's output for one image."""

    name: str  # dotted module path
    maps: np.ndarray  # (C, H, W) float32 activations
    strongest: list[int]  # the channels with the largest mean activation, strongest first

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.maps.shape)  # type: ignore[return-value]

    def grid(self, cell: int = 48, cols: int = 4) -> Image.Image:
        """The strongest maps side by side, on one colour scale (a brighter map is a stronger one)."""
        return grid_image(self.maps[self.strongest], cell, cols)


@dataclass
class Explanation:
    """Everything the "Why?" and "Inside the network" views show for one photo."""

    photo: Image.Image  # as loaded (upright, RGB or L)
    view: Image.Image  # what the model sees (its size, its channels)
    top_k: list[dict[str, Any]]  # predict's answer: [{"label", "probability"}, ...]
    heatmap: Heatmap
    stages: list[Stage]
    filters: Image.Image  # the first layer's filters

    def overlays(self, photo_side: int = 512, view_side: int = 224) -> dict[str, Image.Image]:
        """The heatmap over the photo (its longer side at most ``photo_side``) and over the model's view."""
        return {"photo": overlay(self.photo, self.heatmap.map, photo_side),
                "view": overlay(self.view, self.heatmap.map, view_side)}

    def save(self, folder: str | os.PathLike) -> dict[str, str]:
        """heatmap-photo.png, heatmap-view.png, one stage-N-LAYER.png per stage, filters.png and heatmap.npy
        (the map itself, float32) into ``folder`` (made if missing); returns each file's path by name."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        images = {f"heatmap-{k}.png": im for k, im in self.overlays().items()}
        images.update({f"stage-{i}-{s.name}.png": s.grid() for i, s in enumerate(self.stages, 1)})
        images["filters.png"] = self.filters
        for name, im in images.items():
            im.save(out / name)
        np.save(out / "heatmap.npy", self.heatmap.map)
        return {name: str(out / name) for name in [*images, "heatmap.npy"]}


# ------------------------------------------------------------------------------------ for a Predictor

def layers_of(predictor: Predictor) -> ModelSpec:
    """The registry entry naming the layers to explain; a one-line CnnError when there is none."""
    if not predictor.model_name:
        raise CnnError(f"run {predictor.run} does not say which model it is; it cannot be explained")
    spec = get_spec(predictor.model_name)
    if not spec.explain_layer or not spec.stages:
        raise CnnError(f"model {spec.name} declares no layers to explain (explain_layer, stages in its "
                       "@register_model)")
    return spec


def model_input(predictor: Predictor, im: Image.Image) -> torch.Tensor:
    """(1, C, size, size), normalised: the Predictor's own view of the image, so any preparation it does is
    explained too."""
    view = np.asarray(predictor.model_view(im))  # (H, W) or (H, W, 3) uint8
    arr = view[None] if view.ndim == 2 else view.transpose(2, 0, 1)
    return Normalize(tuple(predictor.mean), tuple(predictor.std), predictor.size)(torch.from_numpy(arr.copy())[None])


def class_index(predictor: Predictor, target: str | int) -> int:
    if isinstance(target, str):
        if target not in predictor.classes:
            raise CnnError(f"no class {target!r} in run {predictor.run}; choose one of: "
                           f"{', '.join(predictor.classes)}")
        return predictor.classes.index(target)
    if not 0 <= int(target) < len(predictor.classes):
        raise CnnError(f"class index {target} is out of range 0..{len(predictor.classes) - 1}")
    return int(target)


def grad_cam(predictor: Predictor, im: Image.Image, target: str | int | None = None) -> Heatmap:
    """Grad-CAM for ``target`` (a class name or index; default: the predicted class) at the model's last spatial
    layer. A test-time-augmentation model is explained on the plain image (its mirror is not), though its
    prediction and ``probability`` are predict's (both averaged)."""
    spec = layers_of(predictor)
    probs = predictor.probabilities([im])[0]
    index = int(probs.argmax()) if target is None else class_index(predictor, target)
    model, lock = _private(predictor)
    with lock, threads(1):
        heat, grid = cam_map(model, spec.explain_layer, model_input(predictor, im), index)
    return Heatmap(predictor.classes[index], index, float(probs[index]), heat, spec.explain_layer, grid)


def activations(predictor: Predictor, im: Image.Image, k: int = 8) -> list[Stage]:
    """Each registered stage's activation maps (one forward pass for all), with its ``k`` strongest maps."""
    spec = layers_of(predictor)
    model, lock = _private(predictor)
    with lock, threads(1):
        outs = stage_maps(model, spec.stages, model_input(predictor, im))
    return [Stage(name, maps, strongest(maps, k)) for name, maps in zip(spec.stages, outs)]


def explain(predictor: Predictor, source: str | os.PathLike | bytes | Image.Image, target: str | int | None = None,
            k: int = 8, top: int = 3) -> Explanation:
    """The whole picture for one photo (a path, bytes, or an image already loaded): predict's top ``top``
    classes, Grad-CAM for ``target`` (default: the top class), every stage's ``k`` strongest maps. A file that
    is not a usable image raises predict's own ImageError."""
    photo = source if isinstance(source, Image.Image) else predictor.load(source)
    return Explanation(photo, predictor.model_view(photo), predictor.top_k([photo], top)[0],
                       grad_cam(predictor, photo, target), activations(predictor, photo, k),
                       filters_image(predictor.model))


_PRIVATE: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, threading.Lock]] = weakref.WeakKeyDictionary()
_PRIVATE_LOCK = threading.Lock()


def _private(predictor: Predictor) -> tuple[nn.Module, threading.Lock]:
    """A copy of the predictor's model (in eval mode) that only explanations use, and the lock they take turns
    on; kept while the predictor's model lives."""
    with _PRIVATE_LOCK:
        if predictor.model not in _PRIVATE:
            _PRIVATE[predictor.model] = (copy.deepcopy(predictor.model).eval(), threading.Lock())
        return _PRIVATE[predictor.model]


# -------------------------------------------------------------------------- for a model and its input

def cam_map(model: nn.Module, layer: str, x: torch.Tensor, index: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Grad-CAM of class ``index`` at ``layer`` for one normalised image ``x`` (1, C, S, S), upsampled to
    (S, S) and scaled to [0, 1]; and the layer's own (H, W). ``model`` must be in eval mode."""
    from captum.attr import LayerGradCam

    cam = LayerGradCam(model, model.get_submodule(layer))
    with torch.enable_grad():
        attr = cam.attribute(x, target=index, relu_attributions=True).detach().float()  # (1, 1, h, w)
    grid = (int(attr.shape[-2]), int(attr.shape[-1]))
    heat = F.interpolate(attr, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = float(heat.max())
    heat = heat / top if top > 0 else torch.zeros_like(heat)
    return heat.clamp_(0, 1).cpu().numpy().astype(np.float32), grid


def stage_maps(model: nn.Module, stages: tuple[str, ...] | list[str], x: torch.Tensor) -> list[np.ndarray]:
    """The outputs (C, H, W) of the named modules for one image, from one forward pass."""
    from captum.attr import LayerActivation

    acts = LayerActivation(model, [model.get_submodule(s) for s in stages]).attribute(x)
    return [np.ascontiguousarray(a[0].detach().float().cpu().numpy()) for a in acts]


def strongest(maps: np.ndarray, k: int) -> list[int]:
    """The ``k`` channels of (C, H, W) with the largest mean activation, strongest first."""
    order = np.argsort(-maps.reshape(len(maps), -1).mean(1), kind="stable")
    return [int(i) for i in order[:max(1, k)]]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first convolution the model registers (its stem in every registered family)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise CnnError("the model has no convolution layer to show filters of")
    return conv


def filters(model: nn.Module) -> np.ndarray:
    """The first layer's filters as images (N, kh, kw, 3) for RGB input, (N, kh, kw, 1) for one channel (other
    counts: their mean), each scaled around its own zero: gray 0.5 is zero, brighter positive."""
    w = first_conv(model).weight.detach().float().cpu()  # (N, Cin, kh, kw)
    if w.shape[1] not in (1, 3):
        w = w.mean(1, keepdim=True)
    peak = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (w / (2 * peak) + 0.5).permute(0, 2, 3, 1).numpy()


def filters_image(model: nn.Module, cell: int = 24, cols: int = 8) -> Image.Image:
    """The first layer's filters in a grid, each enlarged to ``cell`` pixels without smoothing."""
    pixels = (filters(model) * 255).round().astype(np.uint8)  # (N, kh, kw, 1 or 3)
    tiles = [Image.fromarray(t[..., 0] if t.shape[-1] == 1 else t).convert("RGB") for t in pixels]
    return _tile([t.resize((cell, cell), Image.Resampling.NEAREST) for t in tiles], cols)


# ---------------------------------------------------------------------------------------------- images

def colorize(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 through the colour table."""
    return LUT[np.clip(np.nan_to_num(values) * 255 + 0.5, 0, 255).astype(np.uint8)]


def overlay(base: Image.Image, heat: np.ndarray, side: int | None = None, alpha: float = 0.5) -> Image.Image:
    """``heat`` (any size, [0, 1]) over ``base``, stretched to it as the model stretches the photo. ``side``:
    the longer side of the result (small views are enlarged without smoothing, photos shrunk)."""
    base = base.convert("RGB")
    if side and max(base.size) != side:
        scale = side / max(base.size)
        size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
        base = base.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR,
                           reducing_gap=None if scale > 1 else 2.0)
    h = Image.fromarray(np.asarray(heat, np.float32), "F").resize(base.size, Image.Resampling.BILINEAR)
    colour = colorize(np.asarray(h))
    out = (1 - alpha) * np.asarray(base, np.float32) + alpha * colour.astype(np.float32)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def grid_image(maps: np.ndarray, cell: int = 48, cols: int = 4) -> Image.Image:
    """(K, H, W) maps in a grid, on one shared colour scale, each enlarged to ``cell`` pixels."""
    lo, hi = float(maps.min()), float(maps.max())
    scaled = (maps - lo) / (hi - lo) if hi > lo else np.zeros_like(maps)
    return _tile([Image.fromarray(colorize(m)).resize((cell, cell), Image.Resampling.NEAREST) for m in scaled],
                 cols)


def _tile(tiles: list[Image.Image], cols: int, gap: int = 2) -> Image.Image:
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    w, h = tiles[0].size
    out = Image.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, ((i % cols) * (w + gap), (i // cols) * (h + gap)))
    return out
