"""Using a finished run: a loaded model with its preprocessing that classifies images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..core.errors import CheckpointError, ImageError
from ..engine.batches import Normalize
from ..engine.device import threads
from ..imaging.loader import load_image, to_model_array
from ..runs.checkpoint import load_checkpoint, model_from_checkpoint
from ..runs.rundir import RunDir

# Up to this many photos run their forward pass on one thread. Beside a training job that keeps the cores
# busy, a 2-thread pass waited on a descheduled thread at every parallel region (4 ms on one thread, 230 ms
# on two), and alone the second thread saves only ~2 ms on a 2-image fastnet pass.
SMALL_BATCH = 8


@dataclass
class Predictor:
    """A loaded model with the preprocessing it was trained with. Read-only: share it between users."""

    model: nn.Module
    classes: list[str]
    size: int
    channels: int
    mean: list[float]
    std: list[float]
    tta: bool
    run: str
    model_name: str = ""  # its registry name: explanations look up which layers to show

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)  # the layout Normalize gives

    @classmethod
    def from_run(cls, run: str | os.PathLike, root: str | os.PathLike | None = None,
                 which: str = "best") -> Predictor:
        run_dir = RunDir.resolve(run, root)
        return cls.from_checkpoint(run_dir.checkpoint(which), run_dir.name)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, run: str = "") -> Predictor:
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)
        try:
            inp = ckpt["input"]
            p = cls(model, list(ckpt["classes"]), int(inp["size"]), int(inp["channels"]), list(inp["mean"]),
                    list(inp["std"]), bool(ckpt.get("config", {}).get("tta", False)), run or Path(path).parent.name)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {Path(path).name} lacks its preprocessing ({e})") from None
        p.model_name = str(ckpt["model"]["name"])  # model_from_checkpoint built it from this name
        out_features = _num_outputs(model, p)
        if out_features != len(p.classes):
            raise CheckpointError(f"checkpoint {Path(path).name} has {out_features} outputs for "
                                  f"{len(p.classes)} class names")
        return p

    def load(self, source: str | os.PathLike | bytes) -> Image.Image:
        """The shared safe loader, decoding JPEGs only as finely as this model needs."""
        return load_image(source, draft_size=self.size)

    def model_view(self, im: Image.Image) -> Image.Image:
        """The image as the model sees it (resized, in its channels), for display."""
        arr = to_model_array(im, self.size, self.channels)
        return Image.fromarray(arr[0] if self.channels == 1 else arr.transpose(1, 2, 0))

    @torch.inference_mode()
    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(N, classes) softmax probabilities."""
        x = torch.from_numpy(np.stack([to_model_array(im, self.size, self.channels) for im in images]))
        x = Normalize(tuple(self.mean), tuple(self.std), self.size)(x)
        with threads(1 if len(x) <= SMALL_BATCH else torch.get_num_threads()):
            if self.tta:  # the image and its mirror in one forward pass
                logits = self.model(torch.cat([x, x.flip(-1)])).float()
                logits = (logits[:len(x)] + logits[len(x):]) / 2
            else:
                logits = self.model(x).float()
        return torch.softmax(logits, 1).numpy()

    def top_k(self, images: list[Image.Image], k: int = 3) -> list[list[dict[str, Any]]]:
        probs = self.probabilities(images)
        k = max(1, min(k, len(self.classes)))
        out = []
        for row in probs:
            order = np.argsort(-row)[:k]
            out.append([{"label": self.classes[i], "probability": round(float(row[i]), 5)} for i in order])
        return out

    def predict_files(self, sources: list[str | os.PathLike | bytes], k: int = 3,
                      names: list[str] | None = None) -> list[dict[str, Any]]:
        """Per source ``{"image", "top_k"}`` or ``{"image", "error"}``: one bad file never stops the rest."""
        results: list[dict[str, Any]] = []
        for i, src in enumerate(sources):
            name = names[i] if names else (str(src) if not isinstance(src, (bytes, bytearray)) else f"image {i + 1}")
            try:
                im = self.load(src)
                results.append({"image": name, "top_k": self.top_k([im], k)[0]})
            except ImageError as e:
                results.append({"image": name, "error": str(e)})
        return results


def _num_outputs(model: nn.Module, p: Predictor) -> int:
    with torch.inference_mode():
        return int(model(torch.zeros(1, p.channels, p.size, p.size)).shape[1])
