"""LeNet-5 as the course tutorials use it, a 3x wider variant, and the simple CNN of the augmentation reports."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class LeNet5(nn.Module):
    """Two 5x5 conv + max-pool stages, then three fully connected layers.

    Each stage pools before its ReLU: the two commute (ReLU is monotone), so the values and gradients are
    those of conv-ReLU-pool, with a quarter of the ReLU work."""

    def __init__(self, num_classes: int, in_channels: int, input_size: int, width: int = 1) -> None:
        super().__init__()
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width
        pad = 2 if input_size == 28 else 0  # the MNIST variant pads 28x28 to the 32x32 the design expects
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=pad), nn.MaxPool2d(2), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * 5 * 5, f1), nn.ReLU(inplace=True),
            nn.Linear(f1, f2), nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1 = self.features[0]
        fast = x.device.type == "cpu" and conv1.out_channels < 8 and not self._observed()
        x = self._features_padded(x) if fast else self.features(x)
        if torch.is_autocast_enabled(x.device.type):  # a 400-120-84-10 head gains nothing from bf16 but casts
            with torch.autocast(x.device.type, enabled=False):
                return self.classifier(x.float().flatten(1))
        return self.classifier(x.flatten(1))  # (B, c2*5*5) -> (B, classes)

    def _observed(self) -> bool:
        """Hooks on the feature layers (an explanation's) see only modules that run: take the plain path then."""
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.features)

    def _features_padded(self, x: torch.Tensor) -> torch.Tensor:
        """``self.features`` with the first conv's 6 filters padded by zero filters to 8 (and the second conv's
        weights by zero input channels to match). The CPU's channels-last max-pool vectorises over 8 channels
        but runs 6 one by one: 2.8 ms against 1.1 ms a batch of 100 in bf16 (throwaway timing script). The
        extra channels are exactly zero and meet zero weights, so the outputs are the same; the parameters,
        their gradients and checkpoints are untouched."""
        conv1, conv2 = self.features[0], self.features[3]
        extra = 8 - conv1.out_channels
        w1 = F.pad(conv1.weight, (0, 0, 0, 0, 0, 0, 0, extra))  # (8, Cin, 5, 5)
        b1 = F.pad(conv1.bias, (0, extra))
        w2 = F.pad(conv2.weight, (0, 0, 0, 0, 0, extra))  # (16, 8, 5, 5)
        x = F.relu(F.max_pool2d(F.conv2d(x, w1, b1, padding=conv1.padding), 2))
        return F.relu(F.max_pool2d(F.conv2d(x, w2, conv2.bias), 2))


_LENET_DEFAULTS = dict(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=128, epochs=10, weight_decay=5e-4)
_LENET_LAYERS = dict(explain_layer="features.5", stages=("features.2", "features.5"))  # each stage's ReLU


@register_model("lenet5", description="LeNet-5: 6/16 filters, 120/84 units (62,006 parameters on CIFAR-10)",
                sizes=(32, 28), default_size=32, defaults=_LENET_DEFAULTS, **_LENET_LAYERS)
def lenet5(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size)


@register_model("lenet5_wide", description="LeNet-5 with 3x the filters and units: 18/48 filters, 360/252 units",
                sizes=(32, 28), default_size=32, defaults=_LENET_DEFAULTS, **_LENET_LAYERS)
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
                defaults=dict(optimizer="adam", lr=0.002, batch_size=128, epochs=15, weight_decay=0.0),
                explain_layer="features.10", stages=("features.2", "features.6", "features.10"))  # ReLUs, pre-pool
def simple_cnn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return SimpleCNN(num_classes, in_channels)
