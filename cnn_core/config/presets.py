"""Named recipes: ``train --preset NAME``. Flags given explicitly on top of a preset win."""

from __future__ import annotations

from typing import Any

from ..core.errors import CnnError
from .train_config import TrainConfig

# Presets: named sets of options; options given explicitly on top of a preset win.
PRESETS: dict[str, dict[str, Any]] = {}


def register_preset(name: str, **options: Any) -> None:
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    TrainConfig(**options)  # validate now, not when a student first uses it
    PRESETS[name] = options


def preset_options(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise CnnError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS)) or 'none'}")
    return dict(PRESETS[name], preset=name)



# LeNet-5 on MNIST for one epoch: the MNIST demo checkpoint shipped with the app.
register_preset("mnist-lenet5", model="lenet5", dataset="mnist", epochs=1, batch_size=64, optimizer="sgd", lr=0.05,
                momentum=0.9, weight_decay=5e-4, schedule="onecycle")

# FastNet on CIFAR-10 in minutes on a 2-core CPU (figures and the ablation of each idea: docs/results.md). Crops
# after 2 px of mirrored padding, flips alternating by epoch, label smoothing, a triangular schedule with
# lookahead, and test-time augmentation over the mirror and 1-px shifts; a small validation split so that nearly
# all 50,000 images train.
register_preset("cifar10-fast", model="fastnet", dataset="cifar10", epochs=10, batch_size=512, optimizer="sgd",
                lr=0.75, momentum=0.85, weight_decay=1.3e-3, schedule="triangle", lookahead=True,
                label_smoothing=0.2, augment=True, crop_padding=2, crop_fill="reflect", flip_mode="alternate",
                tta=True, tta_shift=1, val_fraction=0.04, precision="auto")
