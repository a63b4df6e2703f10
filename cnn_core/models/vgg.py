"""VGG-16 with batch norm as used on CIFAR-10: 13 conv layers, one linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_STAGES = tuple(f"features.{i}" for i in (5, 12, 22, 32, 42))  # the ReLU before each pool (torchvision's too)


class VGG(nn.Module):
    def __init__(self, plan: tuple, num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # 1x1 at 32x32 already; makes larger photos work too
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("vgg16", description="VGG-16 with batch norm, CIFAR-10 style (13 conv + 1 linear)",
                default_size=32, min_size=32,
                defaults=dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=128, epochs=30, weight_decay=5e-4,
                              augment=True, schedule="onecycle"),
                explain_layer=VGG16_STAGES[-1], stages=VGG16_STAGES)
def vgg16(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return VGG(_VGG16, num_classes, in_channels)
