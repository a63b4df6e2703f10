"""Standalone exports of a run's best checkpoint: a ``torch.export`` program (``model.pt2``) or ONNX
(``model.onnx``), fp32, in eval mode, with a dynamic batch dimension, and ``preprocessing.json`` beside it
saying how to turn an image into the input and the output into class names. Nothing in cnn_core is needed
to use them: ``torch.export.load`` or onnxruntime, plus the JSON.
"""

from __future__ import annotations

import importlib.util
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import CnnError
from ..core.files import atomic_write_bytes, write_json
from ..imaging.digits import STEPS
from ..runs.checkpoint import input_spec, load_checkpoint, model_from_checkpoint
from ..runs.rundir import RunDir

FORMATS = {"pt2": "model.pt2", "onnx": "model.onnx"}
PREPROCESSING = "preprocessing.json"
MAX_BATCH = 4096  # upper bound of the dynamic batch dimension
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_HINT = "ONNX export needs extra packages: pip install onnx onnxscript onnxruntime"


def _batch_dim() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}


def _example(ckpt: dict[str, Any]) -> torch.Tensor:
    c, s = int(ckpt["input"]["channels"]), int(ckpt["input"]["size"])
    # a batch of 2, not 1: tracing with 1 would let the exporter treat the batch size as a constant
    return torch.randn(2, c, s, s, generator=torch.Generator().manual_seed(0))  # (B, C, H, W)


def export_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dim(),))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    atomic_write_bytes(path, buf.getvalue())


def missing_packages(fmt: str) -> list[str]:
    """The optional packages an export format needs that are not installed ([] for pt2)."""
    needed = ONNX_PACKAGES[:2] if fmt == "onnx" else ()  # onnxruntime only checks the file afterwards
    return [m for m in needed if importlib.util.find_spec(m) is None]


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    if missing_packages("onnx"):
        raise CnnError(ONNX_HINT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the student's business
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=(_batch_dim(),),
                                    input_names=["input"], output_names=["logits"], verbose=False)
    atomic_write_bytes(path, program.model_proto.SerializeToString())


def preprocessing(ckpt: dict[str, Any], run: str) -> dict[str, Any]:
    """Everything between an image file and the class name, for code that has only the export."""
    inp = input_spec(ckpt)
    c, s = int(inp["channels"]), int(inp["size"])
    prepare = _prepare_steps(inp["prepare"], s)
    return {
        "run": run,
        "model": ckpt["model"]["name"],
        "checkpoint_epoch": int(ckpt.get("epoch", 0)),
        "best_val_accuracy": ckpt.get("best_val_accuracy"),
        "input": {"layout": "NCHW", "dtype": "float32", "channels": c, "color": "L" if c == 1 else "RGB",
                  "height": s, "width": s, "batch": {"min": 1, "max": MAX_BATCH},
                  "resize": "whole image to height x width, bilinear (no crop)" if prepare is None else
                  "none: the steps under 'prepare' give height x width",
                  "scale": 1 / 255, "mean": list(inp["mean"]), "std": list(inp["std"]),
                  "formula": "x[c] = (pixel[c] / 255 - mean[c]) / std[c]", "prepare": prepare},
        "output": {"name": "logits", "shape": ["batch", len(ckpt["classes"])],
                   "probabilities": "softmax over the last axis"},
        "classes": list(ckpt["classes"]),
        # if true, cnn_core averages with the mirror image (engine.forward.tta_logits); with tta_shift N > 0 that
        # mean weighs half, and the same over two copies shifted N pixels diagonally each way (mirrored borders)
        "tta": bool(ckpt.get("config", {}).get("tta", False)),
        "tta_shift": int(ckpt.get("config", {}).get("tta_shift", 0)),
        "torch_version": str(torch.__version__),
    }


def _prepare_steps(prepare: dict[str, Any] | None, size: int) -> dict[str, Any] | None:
    """A digit model's photo preparation, in words precise enough to reimplement without cnn_core."""
    if prepare is None:
        return None
    return {**prepare, "size": size, "steps": list(STEPS),
            "about": "a photo of a handwritten digit is made to look like the training images before the formula "
                     "above: code without cnn_core can reproduce it by following these steps in order (numpy and "
                     "Pillow suffice); cnn_core.imaging.digits.prepare_digit(image, size, box) is the reference"}


def load_exported(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a float32 (N, C, H, W) batch to (N, classes) logits, for either kind of export."""
    path = Path(path)
    if path.suffix == ".pt2":
        module = torch.export.load(str(path)).module()
        return lambda x: module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).detach().numpy()
    if path.suffix == ".onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise CnnError(ONNX_HINT)
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]
    raise CnnError(f"{path.name} is not an export (expected .pt2 or .onnx)")


def export_run(run: str | os.PathLike, fmt: str = "pt2", root: str | os.PathLike | None = None,
               check: bool = True) -> dict[str, Any]:
    """Export ``run``'s best checkpoint into its folder; with ``check``, load the file back and compare its
    outputs to the PyTorch model's on a random batch (``max_abs_diff``; None when onnxruntime is missing)."""
    if fmt not in FORMATS:
        raise CnnError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    run_dir = RunDir.resolve(run, root)
    source = run_dir.checkpoint("best")
    ckpt = load_checkpoint(source)
    model = model_from_checkpoint(ckpt).float().eval()  # plain fp32 on the CPU, whatever it trained with
    example = _example(ckpt)
    out = run_dir.file(FORMATS[fmt])
    try:
        (export_pt2 if fmt == "pt2" else export_onnx)(model, example, out)
    except CnnError:
        raise
    except Exception as e:  # noqa: BLE001 - an exporter failure deserves one line naming the model
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CnnError(f"{ckpt['model']['name']} could not be exported as {fmt}: {first}") from None
    write_json(run_dir.file(PREPROCESSING), preprocessing(ckpt, run_dir.name))
    diff = None
    if check and (fmt == "pt2" or importlib.util.find_spec("onnxruntime") is not None):
        x = torch.randn(3, *example.shape[1:], generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            want = model(x).numpy()
        diff = float(np.abs(load_exported(out)(x.numpy()) - want).max())
    return {"run": run_dir.name, "format": fmt, "path": str(out), "bytes": out.stat().st_size,
            "source": source.name, "preprocessing": str(run_dir.file(PREPROCESSING)), "max_abs_diff": diff}
