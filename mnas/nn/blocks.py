"""nn.Modules for the layers of an ArchConfig: conv-bn-act, depthwise-separable, inverted residual, SE, h-swish.

Every block has the same submodule names whatever its options (nn.Identity placeholders, no `if` branches on
structure in forward), so pruning, export and weight loading see one layout per block type.
"""
import torch
from torch import nn

from mnas.nn.arch import BlockConfig


def make_act(name: str) -> nn.Module:
    """relu / relu6 / hswish (x * ReLU6(x + 3) / 6, MobileNetV3)."""
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}[name](inplace=True)


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite: pool, 1x1 reduce + ReLU, 1x1 expand, hard-sigmoid gate."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(squeeze, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(s))))


def _se(channels: int, squeeze: int) -> nn.Module:
    return SqueezeExcite(channels, squeeze) if squeeze else nn.Identity()


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)


class ConvBnAct(nn.Module):
    """Plain convolution (stem, 1x1 head convs): conv, bn1, act1, se."""

    def __init__(self, cin: int, cfg: BlockConfig):
        super().__init__()
        self.conv = _conv(cin, cfg.out, cfg.kernel, cfg.stride)
        self.bn1 = nn.BatchNorm2d(cfg.out)
        self.act1 = make_act(cfg.act)
        self.se = _se(cfg.out, cfg.se)

    def forward(self, x):
        return self.se(self.act1(self.bn1(self.conv(x))))


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block (and V2/V3 first block): depthwise kxk, bn1, act1, se, pointwise 1x1, bn2, act2.

    act2 is an activation only when cfg.pw_act (V1); V2/V3 keep the pointwise projection linear."""

    def __init__(self, cin: int, cfg: BlockConfig):
        super().__init__()
        self.has_skip = cfg.residual
        self.conv_dw = _conv(cin, cin, cfg.kernel, cfg.stride, groups=cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = make_act(cfg.act)
        self.se = _se(cin, cfg.se)
        self.conv_pw = _conv(cin, cfg.out, 1)
        self.bn2 = nn.BatchNorm2d(cfg.out)
        self.act2 = make_act(cfg.act) if cfg.pw_act else nn.Identity()

    def forward(self, x):
        y = self.act2(self.bn2(self.conv_pw(self.se(self.act1(self.bn1(self.conv_dw(x)))))))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 bottleneck: 1x1 expand, bn1, act1, depthwise kxk, bn2, act2, se, 1x1 linear project, bn3."""

    def __init__(self, cin: int, cfg: BlockConfig):
        super().__init__()
        self.has_skip = cfg.residual
        self.conv_pw = _conv(cin, cfg.exp, 1)
        self.bn1 = nn.BatchNorm2d(cfg.exp)
        self.act1 = make_act(cfg.act)
        self.conv_dw = _conv(cfg.exp, cfg.exp, cfg.kernel, cfg.stride, groups=cfg.exp)
        self.bn2 = nn.BatchNorm2d(cfg.exp)
        self.act2 = make_act(cfg.act)
        self.se = _se(cfg.exp, cfg.se)
        self.conv_pwl = _conv(cfg.exp, cfg.out, 1)
        self.bn3 = nn.BatchNorm2d(cfg.out)

    def forward(self, x):
        y = self.act2(self.bn2(self.conv_dw(self.act1(self.bn1(self.conv_pw(x))))))
        y = self.bn3(self.conv_pwl(self.se(y)))
        return x + y if self.has_skip else y


BLOCKS = {"conv": ConvBnAct, "ds": DepthwiseSeparable, "ir": InvertedResidual}


def build_block(cin: int, cfg: BlockConfig) -> nn.Module:
    return BLOCKS[cfg.type](cin, cfg)


class Classifier(nn.Module):
    """After the head convs: global average pool, optional hidden linear + act (V3), dropout, linear."""

    def __init__(self, features: int, hidden: int, hidden_act: str, dropout: float, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc_hidden = nn.Linear(features, hidden) if hidden else nn.Identity()
        self.act = make_act(hidden_act) if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden or features, num_classes)

    def forward(self, x):
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(self.act(self.fc_hidden(x))))
