"""FastNet: a small CIFAR-10 network built to train in minutes on a CPU (the ``cifar10-fast`` preset).

Ideas studied in airbench (Keller Jordan), written anew here: a frozen 2x2 "whitening" first layer set from
the training patches' covariance (its bias learns for the first epochs only), three conv-pool-BN-GELU blocks of
small width (64/192/192: on a 2-core CPU, 10 epochs of it beat 12 of 64/128/128 and 6 of 64/256/256 in the same
time, docs/results.md), batch norm without a learnable scale whose bias learns faster, a max-pooled head with
scaled-down logits. The training recipe (label smoothing, a triangular schedule with lookahead, mirrored-border crops,
alternating flips, shifted test-time views) lives in the engine and the ``cifar10-fast`` preset, not here.

    conv 2x2 whiten (3 -> 24, frozen)            (B, 24, 31, 31)
    block(64):  conv3x3, pool2, BN, GELU, conv3x3, BN, GELU   -> (B, 64, 15, 15)
    block(192):                                                -> (B, 192, 7, 7)
    block(192):                                                -> (B, 192, 3, 3)
    global max-pool, linear (no bias) * 1/9                    -> (B, classes)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class ScaleFreeBN(nn.Module):
    """Batch norm with the scale fixed at 1 and the bias stored divided by ``bias_scale``: with SGD the
    effective bias learns ``bias_scale**2`` times faster, in the optimizer's single learning rate."""

    def __init__(self, features: int, momentum: float = 0.4, eps: float = 1e-5, bias_scale: float = 8.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.momentum, self.eps, self.bias_scale = momentum, eps, bias_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias * self.bias_scale,
                            self.training, self.momentum, self.eps)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = ScaleFreeBN(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = ScaleFreeBN(cout)
        for conv in (self.conv1, self.conv2):  # start close to a shallower net: identity on the first filters
            with torch.no_grad():
                nn.init.dirac_(conv.weight[:min(conv.out_channels, conv.in_channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(F.max_pool2d(self.conv1(x), 2)))  # pool before BN: 4x less normalising work
        return F.gelu(self.bn2(self.conv2(x)))


WIDTHS = (64, 192, 192)  # the blocks' widths (the builder's default too: one place)


class FastNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, int, int] = WIDTHS,
                 whiten_bias_epochs: int = 3) -> None:
        super().__init__()
        self.whiten_bias_epochs = whiten_bias_epochs
        k = 2
        self.whiten = nn.Conv2d(in_channels, 2 * in_channels * k * k, k, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data by init_from_data, then fixed
        nn.init.zeros_(self.whiten.bias)
        chans = [self.whiten.out_channels, *widths]
        self.blocks = nn.Sequential(*(Block(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.fc = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = 1 / 9

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Whitening filters from normalised training images (N, C, H, W): the eigenvectors of the 2x2 patch
        covariance scaled by 1/sqrt(eigenvalue + eps), and their negatives (so GELU keeps both signs)."""
        c, (kh, kw) = images.shape[1], self.whiten.kernel_size
        patches = images.float().unfold(2, kh, 1).unfold(3, kw, 1)  # (N, C, H', W', kh, kw)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw).double()
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        filters = (evecs.T.flip(0) / (evals.flip(0).clamp_min(0) + eps).sqrt()[:, None]).reshape(-1, c, kh, kw)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))
        self.whiten.bias.zero_()

    def start_epoch(self, epoch: int) -> None:
        """The whitening layer's bias learns in the first ``whiten_bias_epochs`` epochs only, then stays: once
        it is fixed, backpropagation stops at the first block (no gradient through the widest layer's input)."""
        self.whiten.bias.requires_grad_(epoch <= self.whiten_bias_epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.gelu(self.whiten(x)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)  # (B, widths[-1])
        return self.fc(x) * self.logit_scale


@register_model("fastnet", description="FastNet: airbench-style whitening + 3 small blocks, for cifar10-fast",
                default_size=32, min_size=16,
                defaults=dict(optimizer="sgd", lr=0.75, momentum=0.85, batch_size=512, epochs=10,
                              weight_decay=1.3e-3, augment=True, crop_fill="reflect", flip_mode="alternate",
                              schedule="triangle", lookahead=True, label_smoothing=0.2, tta=True, tta_shift=1),
                explain_layer="blocks.2", stages=("whiten", "blocks.0", "blocks.1", "blocks.2"),
                saved_defaults={"widths": [64, 128, 128]})  # checkpoints saved before 2026-12-02's widening
def fastnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
            widths: tuple[int, int, int] | list[int] = WIDTHS, whiten_bias_epochs: int = 3) -> nn.Module:
    return FastNet(num_classes, in_channels, tuple(widths), whiten_bias_epochs)
