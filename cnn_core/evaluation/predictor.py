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
from ..engine.forward import tta_logits
from ..imaging.digits import WORK_SIDE, prepare_digit
from ..imaging.loader import load_image, to_model_array
from ..runs.checkpoint import input_spec, load_checkpoint, model_from_checkpoint
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
    prepare: dict[str, Any] | None = None  # a digit model's photo preparation (imaging.digits), None: resize only
    tta_shift: int = 0  # with tta: also the shifted views (engine.forward.tta_logits)

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)  # the layout Normalize gives
        if self.prepare is not None and self.prepare.get("kind") != "digits":
            raise CheckpointError(f"the checkpoint asks for a photo preparation this version does not know "
                                  f"({self.prepare.get('kind')!r}); update cnn_core")

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
            inp = input_spec(ckpt)
            p = cls(model, list(ckpt["classes"]), int(inp["size"]), int(inp["channels"]), list(inp["mean"]),
                    list(inp["std"]), bool(ckpt.get("config", {}).get("tta", False)), run or Path(path).parent.name,
                    prepare=inp["prepare"], tta_shift=int(ckpt.get("config", {}).get("tta_shift", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"checkpoint {Path(path).name} lacks its preprocessing ({e})") from None
        p.model_name = str(ckpt["model"]["name"])  # model_from_checkpoint built it from this name
        out_features = _num_outputs(model, p)
        if out_features != len(p.classes):
            raise CheckpointError(f"checkpoint {Path(path).name} has {out_features} outputs for "
                                  f"{len(p.classes)} class names")
        return p

    def load(self, source: str | os.PathLike | bytes) -> Image.Image:
        """The shared safe loader, decoding JPEGs only as finely as this model needs (a digit model looks for
        a small digit in the whole photo, so it needs more than its own size)."""
        return load_image(source, draft_size=self.size if self.prepare is None else WORK_SIDE)

    def prepared(self, im: Image.Image) -> tuple[np.ndarray, str | None]:
        """What the model is given, uint8 (C, size, size), and for a digit model why the photo does not look
        like a digit (None when it does, and always for other models)."""
        if self.prepare is None:
            return to_model_array(im, self.size, self.channels), None
        view = prepare_digit(im, self.size, float(self.prepare["box"]))
        arr = np.repeat(view.image[None], self.channels, 0)  # (C, size, size)
        return arr, view.problem and f"it does not look like a handwritten digit ({view.problem})"

    def look(self, im: Image.Image, k: int = 3) -> tuple[list[dict[str, Any]], Image.Image, str | None]:
        """One photo's top ``k``, the image as the model sees it and its doubt, from one preparation (a digit
        model's takes 5-10 ms; a page showing all three would otherwise pay it three times)."""
        arr, doubt = self.prepared(im)
        return self._top(self._probabilities([arr]), k)[0], self._view(arr), doubt

    def doubt(self, im: Image.Image) -> str | None:
        """Why this model's answer on ``im`` means little, before looking at the answer (see ``prepared``)."""
        return self.prepared(im)[1]

    def model_view(self, im: Image.Image) -> Image.Image:
        """The image as the model sees it (prepared or resized, in its channels), for display."""
        return self._view(self.prepared(im)[0])

    def _view(self, arr: np.ndarray) -> Image.Image:
        return Image.fromarray(arr[0] if self.channels == 1 else arr.transpose(1, 2, 0))

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(N, classes) softmax probabilities."""
        return self._probabilities([self.prepared(im)[0] for im in images])

    @torch.inference_mode()
    def _probabilities(self, arrays: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.stack(arrays))
        x = Normalize(tuple(self.mean), tuple(self.std), self.size)(x)
        with threads(1 if len(x) <= SMALL_BATCH else torch.get_num_threads()):
            if self.tta:  # the image and its mirror (and shifted copies) in one forward pass
                logits = tta_logits(self.model, x, self.tta_shift)
            else:
                logits = self.model(x).float()
        return torch.softmax(logits, 1).numpy()

    def top_k(self, images: list[Image.Image], k: int = 3) -> list[list[dict[str, Any]]]:
        return self._top(self.probabilities(images), k)

    def _top(self, probs: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        k = max(1, min(k, len(self.classes)))
        out = []
        for row in probs:
            order = np.argsort(-row)[:k]
            out.append([{"label": self.classes[i], "probability": round(float(row[i]), 5)} for i in order])
        return out

    def predict_files(self, sources: list[str | os.PathLike | bytes], k: int = 3,
                      names: list[str] | None = None) -> list[dict[str, Any]]:
        """Per source ``{"image", "top_k"}`` (plus ``"doubt"`` when a digit model's photo does not look like a
        digit) or ``{"image", "error"}``: one bad file never stops the rest."""
        results: list[dict[str, Any]] = []
        for i, src in enumerate(sources):
            name = names[i] if names else (str(src) if not isinstance(src, (bytes, bytearray)) else f"image {i + 1}")
            try:
                arr, doubt = self.prepared(self.load(src))
                results.append({"image": name, "top_k": self._top(self._probabilities([arr]), k)[0]}
                               | ({"doubt": doubt} if doubt else {}))
            except ImageError as e:
                results.append({"image": name, "error": str(e)})
        return results


def _num_outputs(model: nn.Module, p: Predictor) -> int:
    with torch.inference_mode():
        return int(model(torch.zeros(1, p.channels, p.size, p.size)).shape[1])
