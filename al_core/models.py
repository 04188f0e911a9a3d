"""CIFAR ResNets (3x3 stem, stride 1, no max-pool) and the loss-prediction module of LL4AL.

`forward` returns (logits, [f1, f2, f3, f4]) so the loss-prediction module reads the four stages;
`width` scales every stage (64 = the standard ResNet: 11.17M / 21.28M / 23.52M parameters).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from al_core.registry import MODELS


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * 4:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    dropout_only_before_classifier = True  # MC-dropout passes may share one backbone pass (al_core.selection)

    def __init__(
        self, block: type, num_blocks: list[int], num_classes: int, in_channels: int = 3, width: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # before the classifier (train.dropout); no parameters, no state
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], 2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)
        # Channels of the four stage outputs, read by the loss-prediction module.
        self.stage_channels = [c * width * block.expansion for c in (1, 2, 4, 8)]

    def _make_layer(self, block: type, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(out)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        # Global average pooling: at 32 x 32 input identical to the study's avg_pool2d(out, 4).
        emb = torch.flatten(F.adaptive_avg_pool2d(f4, 1), 1)
        if self.dropout.p > 0:  # at p = 0 the module is skipped: bit-identical to the model without it
            emb = self.dropout(emb)
        logits = self.linear(emb)
        return logits, [f1, f2, f3, f4]


def fused_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a built-in ResNet with every BatchNorm folded into the convolution it
    follows (torch's `fuse_conv_bn_eval`): the same function, one pass over each activation fewer.

    Any other model (a plugin's, a subclass's) comes back as it is: only these classes are known to
    apply each BatchNorm straight to its convolution's output. Scores move in their last bits
    (BENCHMARKS.md, issue 26).
    """
    if type(model) is not ResNet:
        return model
    net = copy.deepcopy(model).eval()
    for block in [net, *(b for b in net.modules() if type(b) in (BasicBlock, Bottleneck))]:
        for i in (1, 2, 3):
            conv, bn = getattr(block, f"conv{i}", None), getattr(block, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(block, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(block, f"bn{i}", nn.Identity())
        shortcut = getattr(block, "shortcut", None)
        if shortcut is not None and len(shortcut) == 2:
            shortcut[0], shortcut[1] = fuse_conv_bn_eval(shortcut[0], shortcut[1]), nn.Identity()
    return net


def scoring_model(model: nn.Module) -> nn.Module:
    """The network that scores `model`'s inputs, in eval mode: on a CPU its BatchNorm-folded copy
    (measured faster there: BENCHMARKS.md, issue 26), elsewhere `model` itself."""
    model.eval()
    return fused_for_inference(model) if next(model.parameters()).device.type == "cpu" else model


class LossNet(nn.Module):
    """Loss-prediction module (Yoo & Kweon, CVPR 2019): per stage GAP -> FC -> ReLU, concat, FC -> 1."""

    def __init__(self, stage_channels: list[int], hidden: int = 128) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in stage_channels)
        self.out = nn.Linear(hidden * len(stage_channels), 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        parts = [F.relu(fc(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1))) for fc, f in zip(self.fcs, features)]
        return self.out(torch.cat(parts, 1)).view(-1)


def loss_pred_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """LL4AL's pairwise margin ranking loss.

    The batch is split into pairs (i, B-1-i); for each pair the module must rank the predicted losses
    in the order of the true losses by at least `margin`. An odd last sample is left out.
    """
    n = pred.shape[0] // 2 * 2
    if n == 0:
        return pred.sum() * 0.0
    pred, target = pred[:n], target[:n].detach()
    diff_pred = (pred - pred.flip(0))[: n // 2]
    diff_true = (target - target.flip(0))[: n // 2]
    sign = 2 * torch.sign(torch.clamp(diff_true, min=0)) - 1  # +1 where the first loss is larger, else -1
    return torch.clamp(margin - sign * diff_pred, min=0).sum() / (n // 2)


@MODELS.register("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64, dropout: float = 0.0) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width, dropout)


@MODELS.register("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3, width: int = 64, dropout: float = 0.0) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, width, dropout)


@MODELS.register("resnet50")
def resnet50(num_classes: int = 10, in_channels: int = 3, width: int = 64, dropout: float = 0.0) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width, dropout)
