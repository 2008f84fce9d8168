"""The image encoder every reference family shares: a MobileNetV2-style CNN a robot can run.

Inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project, ReLU6, no squeeze-excite), the
EfficientNet-Lite / MobileNetV2 recipe that edge accelerators run well, trained from scratch (our
scenes need no ImageNet features); output stride 16, so a 96 x 96 frame becomes a 6 x 6 grid.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = _conv_bn(cin, hidden, 1) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden) + _conv_bn(hidden, cout, 1, act=False)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class Backbone(nn.Module):
    """pixels [B,3,H,W] -> features [B, channels, H/16, W/16]."""

    # (expansion, output channels, repeats, stride of the first repeat)
    # one cheap block at 48 x 48, where depthwise convolutions cost most on a CPU, deeper ones at 12 and 6
    STAGES = ((2, 24, 1, 2), (4, 48, 2, 2), (4, 96, 3, 2))

    def __init__(self, channels: int = 128):
        super().__init__()
        layers = _conv_bn(3, 16, 3, 2)
        cin = 16
        for expand, cout, repeats, stride in self.STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += _conv_bn(cin, channels, 1)
        self.layers = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.layers(pixels)
