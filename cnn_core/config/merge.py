"""The one order in which a config is put together: the model's recommended options, then the preset, then
what the user gave explicitly (flags, form fields, a sweep's values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .presets import preset_options
from .train_config import FIELDS, TrainConfig


def merge(explicit: dict[str, Any], model_defaults: Callable[[str], dict[str, Any]]) -> TrainConfig:
    """``explicit`` over the preset it names (``preset``) over ``model_defaults(model)``; model arguments
    (``extra``) merge key by key."""
    preset = preset_options(explicit["preset"]) if explicit.get("preset") else {}
    model = explicit.get("model") or preset.get("model") or FIELDS["model"].default
    defaults = model_defaults(model)
    opts = {**defaults, **preset, **explicit, "model": model}
    extra = {**defaults.get("extra", {}), **preset.get("extra", {}), **explicit.get("extra", {})}
    if extra:
        opts["extra"] = extra
    return TrainConfig(**opts)
