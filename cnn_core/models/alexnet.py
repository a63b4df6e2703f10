"""AlexNet: 5 conv + 3 fully connected layers, for 224x224 photos as in the Caltech101 report, or 32x32."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_size: int) -> None:
        super().__init__()
        big = input_size >= 64
        if big:  # the original: 11x11 stride-4 stem, 5x5 second conv, overlapping 3x3 stride-2 pools
            stem, k2, hidden, grid = nn.Conv2d(in_channels, 64, 11, 4, 2), 5, 4096, 6
        else:  # small images: a 3x3 stride-2 stem and 2x2 pools keep a 2x2 map after the conv stack
            stem, k2, hidden, grid = nn.Conv2d(in_channels, 64, 3, 2, 1), 3, 1024, 2

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, 2) if big else nn.MaxPool2d(2)

        self.features = nn.Sequential(
            stem, nn.ReLU(inplace=True), pool(),
            nn.Conv2d(64, 192, k2, padding=k2 // 2), nn.ReLU(inplace=True), pool(),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), pool(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(grid)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * grid * grid, hidden), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))  # (B, 256*g*g) -> (B, classes)


@register_model("alexnet", description="AlexNet: 5 conv + 3 fc; 224x224 photos (Caltech101 style) or 32x32",
                default_size=224, min_size=32,
                defaults=dict(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=64, epochs=30, weight_decay=5e-4,
                              augment=True, schedule="cosine"),
                explain_layer="features.11", stages=tuple(f"features.{i}" for i in (1, 4, 7, 9, 11)))  # ReLUs
def alexnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 224) -> nn.Module:
    return AlexNet(num_classes, in_channels, input_size)
