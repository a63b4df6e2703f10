"""A TrainConfig for a model: its registered defaults, then a preset, then explicit options (config.merge)."""

from __future__ import annotations

from typing import Any

from ..config.merge import merge
from ..config.train_config import TrainConfig
from ..core.errors import CnnError
from .pretrained import check_options, is_finetunable
from .registry import get_spec


def make_config(**explicit: Any) -> TrainConfig:
    """The config the CLI, the Train and Sweep pages and the jobs all build; fine-tuning options are checked
    against the model."""
    cfg = merge(explicit, lambda model: get_spec(model).defaults)
    tuning = {k: v for k, v in cfg.extra.items() if k in ("finetune", "backbone_lr")}
    if tuning:
        if not is_finetunable(cfg.model):
            raise CnnError(f"--finetune and --backbone-lr apply to pretrained models (e.g. "
                           f"efficientnet_lite0_pretrained), not {cfg.model}")
        check_options(tuning.get("finetune", "all"), tuning.get("backbone_lr", 0.1))
    return cfg
