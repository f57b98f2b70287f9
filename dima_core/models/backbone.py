"""Image backbone: ResNet-18/34/50/101 + FPN neck, written out explicitly.

Why not ``torchvision.models.resnet``: on the CPU torch 2.13 build this project pins, the PyPI torchvision wheel
fails to import ("operator torchvision::nms does not exist"), and timm imports torchvision too. So the ResNet
here is a plain re-statement of the torchvision v1.5 architecture (stride on the 3x3 conv of a Bottleneck) whose
parameter and buffer names are *exactly* torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` ...). ImageNet weights saved by torchvision (``torch.save(resnet50().state_dict(), f)``)
load from a **local file** with :func:`load_torchvision_resnet`; nothing is ever downloaded. The classifier
(``fc.*``) and the stages the FPN does not use are reported as skipped.

Shapes: images ``(N, 3, H, W)`` (``N = B * num_cameras``) -> FPN levels, a list of ``(N, C_fpn, H / s, W / s)``
with strides ``s = 2 ** (stage + 1)`` for the configured stages (stage 2 = C3, stride 8 .. stage 4 = C5, stride 32)
plus optional extra stride-2 levels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dima_core.models.config import BackboneConfig

logger = logging.getLogger(__name__)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual (ResNet-18/34). ``(N, C_in, H, W) -> (N, C, H / stride, W / stride)``."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with a residual (ResNet-50/101). Output channels ``4 * channels``."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_SPECS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk with torchvision parameter names, built up to stage ``num_stages`` (1..4; no classifier).

    ``forward(x (N, 3, H, W)) -> [C2, C3, C4, C5][:num_stages]`` where ``C{k+1}`` has
    ``64 * 2**(k-1) * expansion`` channels and stride ``2**(k+1)``.
    """

    def __init__(self, depth: int = 18, num_stages: int = 4):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        block, layers = RESNET_SPECS[depth]
        self.depth = depth
        self.num_stages = num_stages
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        self.stage_channels: list[int] = []
        for k in range(num_stages):
            channels = 64 * 2**k
            stride = 1 if k == 0 else 2
            downsample = None
            if stride != 1 or in_channels != channels * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(in_channels, channels * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(channels * block.expansion),
                )
            blocks = [block(in_channels, channels, stride, downsample)]
            in_channels = channels * block.expansion
            blocks += [block(in_channels, channels) for _ in range(1, layers[k])]
            setattr(self, f"layer{k + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for k in range(self.num_stages):
            x = getattr(self, f"layer{k + 1}")(x)
            outs.append(x)
        return outs


@dataclass
class LoadReport:
    """What :func:`load_torchvision_resnet` did with each key of the file."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, unknown to any ResNet
    skipped: list[str] = field(default_factory=list)  # classifier / stages this model does not build
    mismatched: list[str] = field(default_factory=list)  # same name, different shape

    def summary(self) -> str:
        parts = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        for name in ("missing", "unexpected", "mismatched", "skipped"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                parts.append(f"{name} {len(keys)}: {shown}")
        return "; ".join(parts)


def _unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("expected a state_dict (a mapping of names to tensors)")
    prefix = "module."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in obj.items()}


def load_torchvision_resnet(model: ResNet, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load a torchvision-format ResNet state_dict from a local file into ``model``.

    Keys of the classifier (``fc.*``) and of stages ``model`` does not build are *skipped*. With ``strict`` a
    missing or shape-mismatched key raises ``RuntimeError`` naming them; otherwise they are reported and logged.
    Returns a :class:`LoadReport`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained backbone file not found: {path} (weights are never downloaded)")
    state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    report = LoadReport(path=path)
    to_load = {}
    for key, value in state.items():
        if key in own:
            if own[key].shape != value.shape:
                report.mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
            else:
                to_load[key] = value
                report.loaded.append(key)
        elif key.startswith("fc.") or any(key.startswith(f"layer{k}.") for k in range(model.num_stages + 1, 5)):
            report.skipped.append(key)
        else:
            report.unexpected.append(key)
    report.missing = [k for k in own if k not in to_load and not k.endswith("num_batches_tracked")]
    if strict and (report.missing or report.mismatched):
        raise RuntimeError(f"cannot load ResNet-{model.depth} weights: {report.summary()}")
    model.load_state_dict(to_load, strict=False)
    (logger.warning if report.missing or report.unexpected or report.mismatched else logger.info)(
        "ResNet-%d weights: %s", model.depth, report.summary()
    )
    return report


class FPN(nn.Module):
    """Feature pyramid: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs, extra stride-2 levels.

    ``forward([ (N, C_k, h_k, w_k) ]) -> [ (N, C_fpn, h_k, w_k) ] + extra levels``.
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_extra_levels: int = 0):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 1, 1) for _ in in_channels)
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, 2, 1) for _ in range(num_extra_levels)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for k in range(len(laterals) - 1, 0, -1):
            laterals[k - 1] = laterals[k - 1] + F.interpolate(
                laterals[k], size=laterals[k - 1].shape[-2:], mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.output_convs, laterals, strict=True)]
        for k, conv in enumerate(self.extra_convs):
            outs.append(conv(outs[-1] if k == 0 else F.relu(outs[-1])))
        return outs


class ImageBackbone(nn.Module):
    """Normalise RGB in [0, 1], run the ResNet and the FPN.

    ``forward(images (N, 3, H, W) in [0, 1]) -> list of num_levels tensors (N, fpn_channels, h_l, w_l)``.
    """

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        self.resnet = ResNet(config.depth, num_stages=max(config.out_stages))
        in_channels = [self.resnet.stage_channels[s - 1] for s in config.out_stages]
        self.fpn = FPN(in_channels, config.fpn_channels, config.num_extra_levels)
        self.register_buffer("mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)
        self.load_report: LoadReport | None = None
        if config.pretrained_path:
            self.load_report = load_torchvision_resnet(self.resnet, config.pretrained_path, strict=True)
        self._freeze_stages()

    @property
    def out_channels(self) -> int:
        return self.config.fpn_channels

    def _frozen_modules(self) -> list[nn.Module]:
        k = self.config.frozen_stages
        if k < 0:
            return []
        mods: list[nn.Module] = [self.resnet.conv1, self.resnet.bn1]
        mods += [getattr(self.resnet, f"layer{i}") for i in range(1, min(k, self.resnet.num_stages) + 1)]
        return mods

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageBackbone:
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.config.norm_eval:
                for m in self.resnet.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        stages = self.resnet(x)
        return self.fpn([stages[s - 1] for s in self.config.out_stages])
