"""Using a finished run: classify images, and evaluate a checkpoint on its own test or validation split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import checkpoints as ck
from . import jpegdc
from .config import TrainConfig
from .engine import Normalize, inference_precision, pick_device, set_threads, threads
from .errors import CheckpointError, CnnError, ImageError
from .images import load_image, to_model_array
from .metrics import classification_report, most_confused

# Up to this many photos run their forward pass on one thread. A 2-image fastnet pass is ~2 ms faster on
# two, but afterwards OpenMP's idle worker spins on the second core for tens of milliseconds, right when
# the next photo's JPEG decode (cnn_core.jpegdc) wants both cores: back to back, one thread gave a 49 ms
# median predict and two 54 ms (a 12-MP JPEG, make bench's predict loop in a throwaway script alternating
# the two in one process). Beside a training job that keeps the cores busy, one thread is also the robust
# choice: a 2-thread pass waited on a descheduled thread at every parallel region (4 ms on one thread, 230
# ms on two).
SMALL_BATCH = 8


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """best.pt, falling back to last.pt for a run that has not finished an improving epoch."""
    for name in ((f"{which}.pt", "last.pt") if which == "best" else (f"{which}.pt",)):
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(f"run {run_dir.name} has no {which}.pt yet (still on its first epoch, or failed)")


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

    def __post_init__(self) -> None:
        self.model = self.model.to(memory_format=torch.channels_last)  # the layout Normalize gives
        jpegdc.library()  # build the fast JPEG decoder now (once per machine), not during the first upload

    @classmethod
    def from_run(cls, run: str | os.PathLike, root: str | os.PathLike | None = None,
                 which: str = "best") -> Predictor:
        run_dir = ck.resolve_run(run, ck.runs_root(root))
        return cls.from_checkpoint(checkpoint_path(run_dir, which), run_dir.name)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, run: str = "") -> Predictor:
        ckpt = ck.load_checkpoint(path)
        model = ck.model_from_checkpoint(ckpt)
        try:
            inp = ckpt["input"]
            p = cls(model, list(ckpt["classes"]), int(inp["size"]), int(inp["channels"]), list(inp["mean"]),
                    list(inp["std"]), bool(ckpt.get("config", {}).get("tta", False)), run or Path(path).parent.name)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {Path(path).name} lacks its preprocessing ({e})") from None
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


# ---------------------------------------------------------------------------------------------- evaluation

def evaluate_run(run: str | os.PathLike, split: str = "test", root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None, which: str = "best", prep: Any = None) -> dict[str, Any]:
    """Metrics of the run's best checkpoint on its own split, plus per-image predictions for galleries.
    ``prep`` (a training's own Prepared data) saves loading the dataset again."""
    from .train import eval_batches, predict_logits, prepare_data

    if split not in ("test", "val"):
        raise CnnError(f"split must be test or val, not {split!r}")
    set_threads()
    run_dir = ck.resolve_run(run, ck.runs_root(root))
    path = checkpoint_path(run_dir, which)
    ckpt = ck.load_checkpoint(path)
    model = ck.model_from_checkpoint(ckpt)
    cfg = TrainConfig.from_dict(ckpt["config"])
    device = pick_device("auto" if cfg.device == "auto" else cfg.device)
    if prep is None:
        prep = prepare_data(cfg, data_dir, device, run_dir)
    if list(prep.classes) != list(ckpt["classes"]):
        raise CheckpointError(f"the dataset's classes no longer match run {run_dir.name}'s")
    prep.mean, prep.std = list(ckpt["input"]["mean"]), list(ckpt["input"]["std"])
    model = model.to(device, memory_format=torch.channels_last)
    logits, y = predict_logits(model, eval_batches(prep, split), device, inference_precision(cfg.precision, device),
                               cfg.tta)
    return split_report(logits, y, prep.classes, run=run_dir.name, split=split, checkpoint=path.name,
                        epoch=int(ckpt.get("epoch", 0)))


def split_report(logits: torch.Tensor, y: torch.Tensor, classes: list[str], **about: Any) -> dict[str, Any]:
    """The classification report of one split's logits, with per-image predictions for galleries."""
    probs = torch.softmax(logits, 1).numpy()
    pred = probs.argmax(1)
    report = classification_report(y.numpy(), pred, classes)
    report.update(about, most_confused=most_confused(report["confusion_matrix"], classes),
                  y_true=y.numpy().tolist(), y_pred=pred.tolist(),
                  confidence=[round(float(v), 5) for v in probs.max(1)])
    return report


def split_images(run: str | os.PathLike, split: str, indices: list[int], root: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = None) -> list[np.ndarray]:
    """The uint8 (H, W, C) images at ``indices`` of a run's split, for a gallery."""
    from .train import prepare_data

    run_dir = ck.resolve_run(run, ck.runs_root(root))
    cfg = TrainConfig.from_dict(ck.read_json(run_dir / "config.json"))
    x, _ = prepare_data(cfg, data_dir, run_dir=run_dir).split(split)
    return [x[i].permute(1, 2, 0).numpy().squeeze(-1) if x.shape[1] == 1 else x[i].permute(1, 2, 0).numpy()
            for i in indices]
