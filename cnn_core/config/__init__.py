"""Layer 1: TrainConfig and its field metadata, presets, and the config <-> argv mapping."""

from .presets import PRESETS, preset_options, register_preset
from .train_config import DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig

__all__ = ["DEVICES", "OPTIMIZERS", "PRECISIONS", "PRESETS", "SCHEDULES", "TrainConfig", "preset_options",
           "register_preset"]
