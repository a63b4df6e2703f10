"""Devices, precision and threads: where and in which number format training and inference run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..core import settings
from ..core.errors import CnnError


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise CnnError("device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def cpu_has_bf16() -> bool:
    """Native bf16 (AVX512-BF16 or AMX): bf16 autocast is then faster than fp32, otherwise slower."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(preference: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: plain fp32)."""
    if preference == "fp32":
        return None
    if device.type == "cuda":
        if preference == "bf16" or (preference == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16
    if preference == "fp16":
        raise CnnError("fp16 training needs a CUDA GPU; on the CPU use --precision bf16 or fp32")
    if preference == "bf16" or (preference == "auto" and cpu_has_bf16()):
        return torch.bfloat16
    return None


def inference_precision(preference: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for evaluating or predicting with a run trained at ``preference``: the same, except
    that a run trained with fp16 on a GPU is evaluated on a CPU the CPU's way."""
    return pick_precision("auto" if preference == "fp16" and device.type == "cpu" else preference, device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_threads() -> int:
    """Use every core for intra-op work (the default can be fewer inside containers); no inter-op pool."""
    torch.set_num_threads(settings.training_threads())
    return torch.get_num_threads()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads{', bf16' if cpu_has_bf16() else ''})"
