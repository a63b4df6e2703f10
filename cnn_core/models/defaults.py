"""A TrainConfig for a model: its registered defaults, then a preset, then explicit options (config.merge)."""

from __future__ import annotations

from typing import Any

from ..config.argv import TUNING_DEFAULTS, TUNING_FLAGS
from ..config.merge import merge
from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from .pretrained import check_options, is_finetunable
from .registry import get_spec


def make_config(**explicit: Any) -> TrainConfig:
    """The config the CLI, the Train and Sweep pages and the jobs all build; fine-tuning options are checked
    against the model."""
    cfg = merge(explicit, lambda model: get_spec(model).defaults)
    tuning = {k: v for k, v in cfg.extra.items() if k in TUNING_FLAGS}
    if tuning:
        if not is_finetunable(cfg.model):
            raise CnnError(f"{' and '.join(f for f, _, _ in TUNING_FLAGS.values())} apply to pretrained models "
                           f"(e.g. efficientnet_lite0_pretrained), not {cfg.model}")
        check_options(**{**TUNING_DEFAULTS, **tuning})
    return cfg
