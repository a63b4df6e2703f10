"""Watching the filters form: at each epoch's end, the first layer's filters and one fixed validation image's
prediction and Grad-CAM heatmap go into the run folder (``RunDir.write_insight``), for the Train page to show
while the run trains. The image is the first of the validation split (the test split's when there is none), so
every epoch, and a resumed run, looks at the same one; it is explained as it is, without test-time flips.

Cheap by design: one forward and one backward pass on one image, on one thread (two threads on a busy 2-core
host waited 110-390 ms at each parallel region, one thread takes 3-6 ms), and three small PNGs: about 25 ms an
epoch for LeNet-5 and FastNet on a CPU. A model the registry cannot explain, or a failure here, switches it off
for the run with one line said; it never fails a run.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..engine.device import threads
from ..evaluation.explain import cam_map, filters_image, overlay
from ..models.registry import get_spec
from ..training.callbacks import Callback, FitState

VIEW_SIDE = 160  # pixels: the fixed image and its heatmap, enlarged without smoothing


class Insight(Callback):
    """Each epoch: ``insight.json`` (epoch, true and predicted class, top 3, layer) and its three images."""

    def __init__(self) -> None:
        self.off = False
        self.x: torch.Tensor | None = None  # (1, C, H, W) uint8, the fixed image
        self.label = ""
        self.shown = False  # the fixed image itself is written once per process

    def on_fit_start(self, state: FitState) -> None:
        prep = state.prep
        x, y = prep.split("val") if len(prep.y_val) else prep.split("test")
        if not len(y) or not get_spec(state.cfg.model).explain_layer:
            self.off = True
            return
        self.x, self.label = x[:1].cpu(), prep.classes[int(y[0])]
        import captum.attr  # noqa: F401 - its import (0.4 s, with matplotlib) here, not in an epoch's time

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        if self.off:
            return
        start = time.perf_counter()
        try:
            info, images = self.look(state)
            state.run.write_insight({**info, "seconds": round(time.perf_counter() - start, 4)}, images)
        except Exception as e:  # noqa: BLE001 - a window on training must never be what stops it
            self.off = True
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            state.say(f"the look inside the model is off for this run: {msg}")

    def look(self, state: FitState) -> tuple[dict[str, Any], dict[str, bytes]]:
        model, prep = state.model, state.prep
        layer = get_spec(state.cfg.model).explain_layer
        device = next(model.parameters()).device
        x = prep.normalize()(self.x.to(device))  # (1, C, size, size)
        was_training = model.training
        model.eval()
        try:
            with threads(1), torch.no_grad():
                probs = torch.softmax(model(x).float(), 1)[0].cpu().numpy()
            index = int(probs.argmax())
            with threads(1):
                heat, grid = cam_map(model, layer, x, index)
        finally:
            model.train(was_training)
        view = self.view(prep.size)
        top = np.argsort(-probs)[:3]
        info = {"epoch": state.epoch, "label": self.label, "predicted": prep.classes[index],
                "probability": round(float(probs[index]), 5), "layer": layer, "grid": list(grid),
                "top_k": [{"label": prep.classes[i], "probability": round(float(probs[i]), 5)} for i in top]}
        images = {"heatmap": png(overlay(view, heat, VIEW_SIDE)), "filters": png(filters_image(model))}
        if not self.shown:
            images["image"] = png(view.resize((VIEW_SIDE, VIEW_SIDE), Image.Resampling.NEAREST))
            self.shown = True
        return info, images

    def view(self, size: int) -> Image.Image:
        """The fixed image at the model's input size, as a picture."""
        arr = self.x[0].numpy()  # (C, H, W) uint8
        im = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
        return im if im.size == (size, size) else im.resize((size, size), Image.Resampling.BILINEAR)


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()

