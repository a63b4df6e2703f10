"""ResNet-9 (the DAWNBench CIFAR-10 network) and ResNet-18 adapted to 32x32 inputs (3x3 stem, no max-pool)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, 64)
        layers: list[nn.Module] = []
        cin = 64
        for i, (cout, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (B, 512, H/8, W/8)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """prep(64) -> 128+pool+res -> 256+pool -> 512+pool+res -> global max-pool -> fc."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_bn(in_channels, 64),
            conv_bn(64, 128), nn.MaxPool2d(2), Residual(128),
            conv_bn(128, 256), nn.MaxPool2d(2),
            conv_bn(256, 512), nn.MaxPool2d(2), Residual(512),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x))


_RESNET_DEFAULTS = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=128, epochs=30, weight_decay=5e-4,
                        augment=True, schedule="onecycle")


@register_model("resnet9", description="ResNet-9 (DAWNBench): 4 conv stages with two residual blocks, 6.6M params",
                default_size=32, min_size=16, defaults=_RESNET_DEFAULTS,
                explain_layer="net.8", stages=("net.0", "net.3", "net.4", "net.6", "net.8"))
def resnet9(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return ResNet9(num_classes, in_channels)


@register_model("resnet18", description="ResNet-18 for 32x32: 3x3 stem, no max-pool (11,173,962 params)",
                default_size=32, min_size=16, defaults=_RESNET_DEFAULTS,
                explain_layer="blocks.7", stages=("stem", "blocks.1", "blocks.3", "blocks.5", "blocks.7"))
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return ResNet((2, 2, 2, 2), num_classes, in_channels)
