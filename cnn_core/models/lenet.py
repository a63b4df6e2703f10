"""LeNet-5 as the course tutorials use it, a 3x wider variant, and the simple CNN of the augmentation reports."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


class LeNet5(nn.Module):
    """Two 5x5 conv + max-pool stages, then three fully connected layers."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, width: int = 1) -> None:
        super().__init__()
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width
        pad = 2 if input_size == 28 else 0  # the MNIST variant pads 28x28 to the 32x32 the design expects
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 5 * 5, f1), nn.ReLU(inplace=True),
            nn.Linear(f1, f2), nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))  # (B, c2*5*5) -> (B, classes)


_LENET_DEFAULTS = dict(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=128, epochs=10, weight_decay=5e-4)


@register_model("lenet5", description="LeNet-5: 6/16 filters, 120/84 units (62,006 parameters on CIFAR-10)",
                sizes=(32, 28), default_size=32, defaults=_LENET_DEFAULTS)
def lenet5(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size)


@register_model("lenet5_wide", description="LeNet-5 with 3x the filters and units: 18/48 filters, 360/252 units",
                sizes=(32, 28), default_size=32, defaults=_LENET_DEFAULTS)
def lenet5_wide(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size, width=3)


class SimpleCNN(nn.Module):
    """Three conv-BN-ReLU-pool stages and a small head: the 'simple CNN' of the augmentation/L2 lab."""

    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("simple_cnn", description="Simple CNN: three conv-BN-ReLU-pool stages (32/64/128), global pool",
                default_size=32, min_size=8,
                defaults=dict(optimizer="adam", lr=0.002, batch_size=128, epochs=15, weight_decay=0.0))
def simple_cnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return SimpleCNN(num_classes, in_channels)
