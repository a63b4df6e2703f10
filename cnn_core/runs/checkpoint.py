"""The checkpoint format: what a ``.pt`` file holds, saving it atomically, and loading it safely.

A checkpoint describes itself (model name and arguments, classes, input size and normalisation, config,
metrics, epoch, optimizer and scheduler state) in plain types, so it loads with ``weights_only=True`` and
rebuilds its model from the file alone.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError, CnnError
from ..core.files import atomic_write_bytes
from ..data import photo_preparation
from ..models.registry import build_model, described_kwargs

FORMAT = 1


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """Load with ``weights_only=True`` only: a file that would run code is refused, never executed.
    ``mmap``: map the tensors instead of reading them (cheap checks of large files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format; others say so differently
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - every failure here means the same thing to the user
        # torch wraps the unpickler's reason in paragraphs of advice; the reason is the last of them
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("Check the doc")]
        reason = lines[-1][:160] if lines else type(e).__name__
        if "global" in reason.lower():  # it names a function or class to import: code, not data
            raise CheckpointError(f"checkpoint {path.name} holds objects that could run code; refused "
                                  f"(only plain tensors and numbers are loaded)") from None
        raise CheckpointError(f"checkpoint {path.name} is not readable, damaged or not a checkpoint ({reason})"
                              ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path.name} is not a cnn_core checkpoint (no format/state_dict)")
    return ckpt


def input_spec(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's preprocessing: size, channels, mean, std, and ``prepare`` (how a photo is made to look
    like the training images, None for none). Checkpoints saved before ``prepare`` existed get it from their
    config's dataset, so a committed digits run prepares photos without being rewritten."""
    inp = dict(ckpt["input"])
    if "prepare" not in inp:
        inp["prepare"] = photo_preparation(str(ckpt.get("config", {}).get("dataset", "")))
    return inp


def _build_described(ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt.get("model")
    try:
        return build_model(spec["name"], **described_kwargs(spec["name"], spec.get("kwargs", {})))
    except CnnError as e:  # e.g. a model another version registered
        raise CheckpointError(f"checkpoint is for a model this version cannot build: {e}") from None
    except Exception as e:  # noqa: BLE001 - odd arguments fail in the builder in many ways
        raise CheckpointError(f"checkpoint does not describe a model this version knows ({e})") from None


def check_fits(ckpt: dict[str, Any]) -> None:
    """Raise CheckpointError unless the weights fit the model the checkpoint names, with one output per class
    name. Builds on the meta device: no memory and no time, so listing many runs stays cheap."""
    with torch.device("meta"):
        model = _build_described(ckpt)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = ckpt["state_dict"]
    got = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)} if isinstance(sd, dict) else {}
    name = ckpt["model"]["name"]
    if want.keys() != got.keys():
        odd = sorted(want.keys() ^ got.keys())
        raise CheckpointError(f"checkpoint weights do not fit {name}: {len(odd)} layers differ ({odd[0]}, ...); "
                              "it was saved for another architecture")
    for k, shape in want.items():
        if got[k] != shape:
            raise CheckpointError(f"checkpoint weights do not fit {name}: {k} is {got[k]}, the model has {shape}"
                                  " (another class count or input size?)")
    classes = ckpt.get("classes")
    outputs = ckpt["model"].get("kwargs", {}).get("num_classes")
    if not isinstance(classes, list) or (outputs is not None and len(classes) != outputs):
        n = len(classes) if isinstance(classes, list) else 0
        raise CheckpointError(f"checkpoint has {n} class names for {outputs} outputs")


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights; a mismatch is a clear error."""
    check_fits(ckpt)
    model = _build_described(ckpt)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        detail = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(f"checkpoint weights do not fit {ckpt['model']['name']} ({detail})") from None
    return model.eval()


_VERDICTS: dict[tuple, str | None] = {}  # checkpoint file version -> why it is unusable (None: usable)


def checkpoint_problem(path: Path) -> str | None:
    """Why this checkpoint cannot be used, or None. Safe (weights_only), cheap (mapped, meta-device model) and
    remembered per file version, so a runs list can check every run each time it is drawn."""
    try:
        st = Path(path).stat()
    except OSError:
        return f"{Path(path).name} is missing"
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERDICTS:
        try:
            check_fits(load_checkpoint(path, mmap=True))
            verdict = None
        except CnnError as e:
            verdict = str(e)
        except Exception as e:  # noqa: BLE001 - a listing must never break on one bad file
            verdict = f"checkpoint {Path(path).name} cannot be used ({type(e).__name__})"
        if len(_VERDICTS) > 4096:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return _VERDICTS[key]
