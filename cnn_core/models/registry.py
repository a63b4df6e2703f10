"""The one model registry: the CLI, the app and the tests all enumerate it.

Each entry is a builder ``fn(num_classes, in_channels, input_size, **kwargs) -> nn.Module`` returning a plain
fp32 CPU module, plus the metadata a user needs to choose it (input sizes, sensible training defaults) and to
look inside it (the layer Grad-CAM explains, the stages whose activation maps are shown).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..core.errors import CnnError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    description: str
    default_size: int  # input side used when the dataset's own size does not fit
    sizes: tuple[int, ...] = ()  # the only input sides it accepts; () means any side >= min_size
    min_size: int = 8
    defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig options that suit it
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # fixed normalisation (pretrained)
    explain_layer: str = ""  # dotted module path of the last spatial layer (Grad-CAM's), e.g. "blocks.2"
    stages: tuple[str, ...] = ()  # dotted module paths whose outputs are the convolutional stages, input first
    # constructor arguments whose default changed: the old values, for checkpoints saved before (they did not
    # record them); new checkpoints record the current ones (``saved_kwargs``)
    saved_defaults: dict[str, Any] = field(default_factory=dict)

    def accepts(self, size: int) -> bool:
        return size in self.sizes if self.sizes else size >= self.min_size

    def pick_size(self, native: int | None, requested: int = 0) -> int:
        """The input side for a dataset whose images are ``native`` pixels (None: they vary)."""
        if requested:
            if not self.accepts(requested):
                allowed = ", ".join(map(str, self.sizes)) if self.sizes else f">= {self.min_size}"
                raise CnnError(f"{self.name} takes input size {allowed}, not {requested}")
            return requested
        if native is not None and native >= 28 and self.accepts(native):
            return native
        return self.default_size


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, description: str, default_size: int = 32, sizes: tuple[int, ...] = (),
                   min_size: int = 8, defaults: dict[str, Any] | None = None,
                   mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None, explain_layer: str = "",
                   stages: tuple[str, ...] = (), saved_defaults: dict[str, Any] | None = None
                   ) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, fn, description, default_size, sizes, min_size, dict(defaults or {}),
                                    mean_std, explain_layer, tuple(stages), dict(saved_defaults or {}))
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CnnError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, input_size: int | None = None,
                **kwargs: Any) -> nn.Module:
    spec = get_spec(name)
    size = spec.pick_size(None, input_size or 0)
    return spec.builder(num_classes=num_classes, in_channels=in_channels, input_size=size, **kwargs)


def saved_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments a checkpoint records: ``kwargs`` plus the current value of every argument whose
    default has changed before (``saved_defaults``), so that a later change cannot alter what it rebuilds."""
    spec = get_spec(name)
    params = inspect.signature(spec.builder).parameters
    current = {k: _plain(params[k].default) for k in spec.saved_defaults if k in params}
    return {**current, **kwargs}


def described_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's recorded ``kwargs`` build: those, plus the old defaults it was saved under."""
    return {**get_spec(name).saved_defaults, **kwargs}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # JSON-shaped, as a config stores it


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_table(num_classes: int = 10, in_channels: int = 3) -> list[dict[str, Any]]:
    """Every registered model with its parameter count at its default input size, for choosing one. Built on
    the meta device: no memory and no time."""
    import torch

    rows = []
    for name in list_models():
        spec = get_spec(name)
        sizes = "/".join(map(str, spec.sizes)) if spec.sizes else f">={spec.min_size} (default {spec.default_size})"
        with torch.device("meta"):
            params = count_parameters(build_model(name, num_classes, in_channels, spec.default_size))
        rows.append({"model": name, "params": params, "input_size": sizes, "description": spec.description})
    return rows
