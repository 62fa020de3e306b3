"""A slimmable network (Yu & Huang 2019; AutoSlim, ICLR 2020): one network whose every channel unit can run at
any width in multiples of 8, so that each slimming of it is scored without training it.

`Slimming(start)` is the set of a start network's slimmings, in the role a search space plays for the supernet:
every unit of mnas.nn.units (an expansion, a stage's output width with its residual chain, the stem, the head conv,
the hidden layer) keeps `full - k*step` channels, never fewer than max(min_channels, min_width * full).
`random_arch` draws each unit's width uniformly from those choices; `extreme` gives the start network (largest) or
every unit at its floor (smallest). mnas.supernet.train trains it with the same sandwich rule and in-place
distillation as a supernet, cached under runs/supernets/<hash>/ and resumable.

`Slimmable(slimming, num_classes)` holds an ordinary `mnas.nn.models.build(proxy start)` network (same module names
and state_dict, so a trained start network's weights load into it) and runs any slimming by slicing each layer's
first channels, as a pruned network would be cut; `extract(arch)` copies those slices into
`build(proxy arch)`. Channels are kept in order (the first ones), never reordered by importance: training with the
sandwich rule is what makes the first channels the important ones.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch
from mnas.nn.units import Unit, channels, layers, resize, units, with_channels


@dataclass(frozen=True)
class Slimming:
    """The slimmings of `start` (a deployment arch): each unit at full - k*step channels, k >= 0, not below its
    floor."""

    start: ArchConfig
    label: str = "network"
    min_width: float = 0.25
    step: int = 8
    min_channels: int = 8

    def __post_init__(self):
        if not 0 < self.min_width <= 1 or self.step < 1 or self.min_channels < 1:
            raise UserError(f"slimming min_width={self.min_width}, step={self.step}, min_channels="
                            f"{self.min_channels}: use 0 < min_width <= 1 and positive step and min_channels")

    @property
    def name(self) -> str:
        return f"slimmable {self.label}"

    def floor(self, unit: Unit) -> int:
        """The fewest channels `unit` may keep: full minus a multiple of step, >= min_channels and min_width*full."""
        c = channels(self.start, unit)
        lowest = max(self.min_channels, math.ceil(c * self.min_width))
        return c if lowest >= c else c - ((c - lowest) // self.step) * self.step

    def widths(self, unit: Unit) -> list[int]:
        """Every width `unit` may take, widest first."""
        return list(range(channels(self.start, unit), self.floor(unit) - 1, -self.step))

    def random_arch(self, rng: random.Random) -> ArchConfig:
        arch = self.start
        for u in units(self.start):
            arch = resize(arch, u, rng.choice(self.widths(u)))
        return arch

    def extreme(self, largest: bool) -> ArchConfig:
        if largest:
            return self.start
        arch = self.start
        for u in units(self.start):
            arch = resize(arch, u, self.floor(u))
        return arch

    def check(self, arch: ArchConfig) -> None:
        """UserError unless `arch` has the start network's layers with no more channels in any of them."""
        ok = len(arch.blocks) == len(self.start.blocks) and len(arch.head) == len(self.start.head) and \
            bool(arch.hidden) == bool(self.start.hidden) and arch.hidden <= self.start.hidden and all(
                (a.type, a.kernel, a.act, a.residual, a.pw_act, bool(a.se)) ==
                (b.type, b.kernel, b.act, b.residual, b.pw_act, bool(b.se))
                and a.out <= b.out and a.exp <= b.exp and a.se <= b.se
                for a, b in zip(layers(arch), layers(self.start)))
        if not ok:
            raise UserError(f"arch is not a slimming of the slimmable {self.label} (the same layers with at most "
                            f"its channels): {arch.to_string()}")


# ---------------------------------------------------------------------------------------------- sliced layers
# The first channels of an ordinary layer, as many as the input has (and `out` outputs); the supernet's elastic
# layers (mnas.supernet.elastic) run these too.
def sliced_bn(x, bn: nn.BatchNorm2d):
    """BatchNorm over x's channels, the first of bn's: running statistics update in place in the full buffers."""
    c, factor = x.shape[1], 0.0
    if bn.training:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c], bn.training, factor,
                        bn.eps)


def sliced_conv(x, conv: nn.Conv2d, out: int | None = None):
    """conv on x's channels with its first `out` outputs (a depthwise conv: out = x's channels)."""
    c = x.shape[1]
    if conv.groups > 1:
        return F.conv2d(x, conv.weight[:c], None, conv.stride, conv.padding, 1, c)
    return F.conv2d(x, conv.weight[:out, :c], None, conv.stride, conv.padding)


def sliced_se(x, se, squeeze: int):
    if not squeeze:
        return x
    c = x.shape[1]
    s = F.conv2d(x.mean((2, 3), keepdim=True), se.conv_reduce.weight[:squeeze, :c], se.conv_reduce.bias[:squeeze])
    s = F.conv2d(F.relu(s), se.conv_expand.weight[:c, :squeeze], se.conv_expand.bias[:c])
    return x * F.hardsigmoid(s)


def _layer(m, b, x):
    """One layer (mnas.nn.blocks: ConvBnAct, DepthwiseSeparable, InvertedResidual) at the widths of config b."""
    conv, bn, se = sliced_conv, sliced_bn, sliced_se
    if b.type == "conv":
        return se(m.act1(bn(conv(x, m.conv, b.out), m.bn1)), m.se, b.se)
    if b.type == "ds":
        y = se(m.act1(bn(conv(x, m.conv_dw), m.bn1)), m.se, b.se)
        y = m.act2(bn(conv(y, m.conv_pw, b.out), m.bn2))
    else:
        y = m.act2(bn(conv(m.act1(bn(conv(x, m.conv_pw, b.exp), m.bn1)), m.conv_dw), m.bn2))
        y = bn(conv(se(y, m.se, b.se), m.conv_pwl, b.out), m.bn3)
    return x + y if b.residual else y


class Slimmable(nn.Module):
    """Every slimming of `slimming.start` in one network, for a proxy task with `num_classes` classes."""

    def __init__(self, slimming: Slimming, num_classes: int, max_stride: int = 8, in_chans: int = 3):
        super().__init__()
        self.slimming = slimming
        self.largest = proxy_arch(slimming.start.replace(in_chans=in_chans), num_classes, max_stride)
        self.net = build(self.largest)
        self.set_active(slimming.start)

    def set_active(self, arch: ArchConfig) -> None:
        """Make forward() run `arch`'s channel counts (a deployment or proxy arch: only its widths are read)."""
        self.slimming.check(arch)
        self.arch = with_channels(self.largest, arch)

    def forward(self, x):
        m, a = self.net, self.arch
        for module, b in zip([m.stem, *m.blocks, *m.head], layers(a)):
            x = _layer(module, b, x)
        cls = m.classifier
        x = torch.flatten(cls.pool(x), 1)
        if a.hidden:
            x = cls.act(F.linear(x, cls.fc_hidden.weight[:a.hidden, :x.shape[1]], cls.fc_hidden.bias[:a.hidden]))
        return F.linear(cls.dropout(x), cls.fc.weight[:, :x.shape[1]], cls.fc.bias)

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> nn.Module:
        """`build(proxy arch)` carrying the first channels of every layer (weights and BatchNorm statistics), in
        eval mode."""
        self.set_active(arch)
        model = build(self.arch)
        src = self.net.state_dict()
        for name, dst in model.state_dict().items():
            dst.copy_(src[name][tuple(slice(0, n) for n in dst.shape)])
        return model.to(next(self.parameters()).device).eval()
