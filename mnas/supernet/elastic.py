"""The weight-sharing supernet of a search space: elastic layers that slice the largest weights, any arch of the
space as a sub-network (`set_active(arch)`), and `extract(arch)` to an ordinary `mnas.nn.models.build` model.

Every dimension the space searches is a slice of the largest tensors (Once-for-All, Cai et al. 2020):
  depth      the first d blocks of each stage run;
  width      a stage's blocks produce the first `out` channels; so do the stem and the head conv, and the hidden
             layer its first `hidden` units (the widths that make width-multiplied hand designs points of a space);
  expansion  the first `exp` expanded channels (a t=1 block is depthwise-separable: it skips the expansion conv
             and runs the depthwise conv, SE and projection on its first `cin` channels);
  kernel     the centre of the largest depthwise kernel, passed through a small learned per-layer transform
             (a k*k x k*k matrix, identity at start; 7 -> 5 -> 3 in turn, as OFA does);
  SE         on/off; the squeeze slices to the first make_divisible(channels / 4) units;
  activation relu / relu6 / hswish per block (no weights).
The supernet is built for the proxy task (mnas.nn.proxy): its strides are those proxy_arch gives the space's largest
arch, which every arch of the space shares (the rule only ever changes the stem's and stages' first strides).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig, make_divisible
from mnas.nn.blocks import Classifier, make_act
from mnas.nn.models import build, init_weights
from mnas.nn.proxy import proxy_arch
from mnas.nn.space import Space, make_block
from mnas.nn.units import with_channels
from mnas.supernet.slimmable import Slimming, sliced_bn, sliced_conv, sliced_se

ACTS = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish}
# An extracted depthwise-separable block's modules and the elastic block's modules they are sliced from.
DS_FROM = {"conv_dw": "conv_dw", "bn1": "bn2", "se": "se", "conv_pw": "conv_pwl", "bn2": "bn3"}


class ElasticConv(nn.Conv2d):
    """A 1x1 conv whose active input channels are the input's and whose output is its first `out` channels."""

    def forward(self, x, out=None):
        return sliced_conv(x, self, out)


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the input's (first) channels: statistics, scale and shift are sliced views, so running
    averages update in place in the full buffers (momentum None = cumulative average, as nn.BatchNorm2d)."""

    def forward(self, x):
        return sliced_bn(x, self)


class ElasticDepthwise(nn.Conv2d):
    """Depthwise conv with the largest kernel of its stage; smaller kernels are transformed centre crops."""

    def __init__(self, channels: int, kernels, stride: int):
        k = max(kernels)
        super().__init__(channels, channels, k, stride, padding=k // 2, groups=channels, bias=False)
        self.kernels = sorted(kernels, reverse=True)
        self.transforms = nn.ParameterDict({str(s): nn.Parameter(torch.eye(s * s)) for s in self.kernels[1:]})

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        w = self.weight[:channels]
        for s in self.kernels[1:]:
            if s < kernel:
                break
            start = (w.shape[-1] - s) // 2
            w = w[:, :, start:start + s, start:start + s].reshape(channels, s * s)
            w = F.linear(w, self.transforms[str(s)]).view(channels, 1, s, s)
        return w

    def forward(self, x, kernel):
        c = x.shape[1]
        return F.conv2d(x, self.active_weight(c, kernel), None, self.stride, kernel // 2, 1, c)


class ElasticSE(nn.Module):
    """MobileNetV3 squeeze-excite over the input's channels with the first `squeeze` reduce units."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, squeeze, 1)
        self.conv_expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x, squeeze):
        return sliced_se(x, self, squeeze)


class ElasticBlock(nn.Module):
    """One block position of a stage, holding the largest inverted residual (conv_pw, bn1, conv_dw, bn2, se,
    conv_pwl, bn3). `self.cfg` (a BlockConfig of the active arch) says which slice runs."""

    def __init__(self, cin: int, mid: int, out: int, stride: int, kernels, expands: bool, se: bool):
        super().__init__()
        self.conv_pw = ElasticConv(cin, mid, 1, bias=False) if expands else None
        self.bn1 = ElasticBatchNorm(mid) if expands else None
        self.conv_dw = ElasticDepthwise(mid, kernels, stride)
        self.bn2 = ElasticBatchNorm(mid)
        self.se = ElasticSE(mid, make_divisible(mid / 4)) if se else None
        self.conv_pwl = ElasticConv(mid, out, 1, bias=False)
        self.bn3 = ElasticBatchNorm(out)
        self.cfg = None

    def forward(self, x):
        b = self.cfg
        act = ACTS[b.act]
        y = act(self.bn1(self.conv_pw(x, b.exp))) if b.type == "ir" else x
        y = act(self.bn2(self.conv_dw(y, b.kernel)))
        y = self.se(y, b.se) if b.se else y
        y = self.bn3(self.conv_pwl(y, b.out))
        return x + y if b.residual else y


class ElasticConvBnAct(nn.Module):
    """A plain conv (the stem, the 1x1 head conv) with ConvBnAct's module names whose output is its first `out`
    channels and whose input width follows the input's."""

    def __init__(self, cin: int, out: int, kernel: int, stride: int, act: str):
        super().__init__()
        self.conv = nn.Conv2d(cin, out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn1 = ElasticBatchNorm(out)
        self.act1 = make_act(act)

    def forward(self, x, out):
        return self.act1(self.bn1(sliced_conv(x, self.conv, out)))


class ElasticClassifier(Classifier):
    """Classifier (pool, hidden linear + act, dropout, linear) over the input's features and the first `hidden`
    hidden units."""

    def forward(self, x, hidden):
        x = torch.flatten(self.pool(x), 1)
        if hidden:
            x = self.act(F.linear(x, self.fc_hidden.weight[:hidden, :x.shape[1]], self.fc_hidden.bias[:hidden]))
        return F.linear(self.dropout(x), self.fc.weight[:, :x.shape[1]], self.fc.bias)


class Supernet(nn.Module):
    """All archs of `space` in one network, for a proxy task with `num_classes` classes. Structure mirrors
    mnas.nn.models.MobileNet (stem, blocks, head, classifier), with max(depth) block positions per stage."""

    def __init__(self, space: Space, num_classes: int, max_stride: int = 8, in_chans: int = 3):
        super().__init__()
        self.space, self.num_classes, self.max_stride = space, num_classes, max_stride
        largest = proxy_arch(space.extreme(largest=True).replace(in_chans=in_chans), num_classes, max_stride)
        st = largest.stem
        self.stem = ElasticConvBnAct(in_chans, st.out, st.kernel, st.stride, st.act)
        self.starts, blocks, cins = [], [], set(space.stem_out)
        for st in space.stages:
            self.starts.append(len(blocks))
            stride = largest.blocks[len(blocks)].stride  # the largest arch has every block position
            for j in range(max(st.depth)):
                cins = cins if j == 0 else set(st.out)
                mid = max(make_divisible(c * t) if t != 1 else c for c in cins for t in st.expand)
                blocks.append(ElasticBlock(max(cins), mid, max(st.out), stride if j == 0 else 1, st.kernel,
                                           any(t != 1 for t in st.expand), any(st.se)))
            cins = set(st.out)
        self.blocks = nn.ModuleList(blocks)
        heads, cin = [], max(cins)
        for h in largest.head:
            heads.append(ElasticConvBnAct(cin, h.out, 1, 1, h.act))
            cin = h.out
        self.head = nn.Sequential(*heads)
        self.classifier = ElasticClassifier(largest.features, largest.hidden, largest.hidden_act, largest.dropout,
                                     num_classes)
        init_weights(self)
        self.largest = largest
        self.set_active(space.extreme(largest=True))

    # ---- which blocks an arch uses ----------------------------------------------------------------------
    def _fits(self, st, b, cin: int, first: bool) -> bool:
        stride = st.stride if first else 1
        return any(make_block(cin, b.out, stride, b.kernel, t, bool(b.se), b.act) == b for t in st.expand) and \
            b.kernel in st.kernel and bool(b.se) in st.se and b.act in st.act and b.out in st.out

    def _positions(self, arch: ArchConfig, i: int = 0, pos: int = 0, cin: int | None = None):
        """Supernet block indices of arch.blocks (stage depths tried in the space's order), or None."""
        if i == len(self.space.stages):
            return [] if pos == len(arch.blocks) else None
        st, cin = self.space.stages[i], arch.stem.out if cin is None else cin
        for d in st.depth:
            bs = arch.blocks[pos:pos + d]
            if len(bs) == d and all(b.out == bs[0].out and self._fits(st, b, cin if j == 0 else b.out, j == 0)
                                    for j, b in enumerate(bs)):
                rest = self._positions(arch, i + 1, pos + d, bs[0].out)
                if rest is not None:
                    return [self.starts[i] + j for j in range(d)] + rest
        return None

    def decode(self, arch: ArchConfig) -> tuple[list[int], ArchConfig]:
        """(supernet block index of each of the arch's blocks, the arch's proxy variant); UserError if the arch
        is not in the space. About a millisecond."""
        sp = self.space
        idx = self._positions(arch) if sp.frame_fits(arch) else None
        if idx is None:
            raise UserError(f"arch is not in search space {sp.name!r}, so the supernet has no weights for it: "
                            f"{arch.to_string()}")
        proxy = proxy_arch(arch.replace(in_chans=self.largest.in_chans, dropout=self.largest.dropout),
                           self.num_classes, self.max_stride)
        if any(p.stride != self.blocks[i].conv_dw.stride[0] for p, i in zip(proxy.blocks, idx)):
            raise UserError(f"arch {arch.to_string()} has other strides than its space {sp.name!r}")
        return idx, proxy

    # ---- running a sub-network ---------------------------------------------------------------------------
    def set_active(self, arch: ArchConfig) -> None:
        """Make forward() run `arch` (an arch of the space, deployment or any resolution/class count)."""
        self.active, self.arch = self.decode(arch)
        for i, b in zip(self.active, self.arch.blocks):
            self.blocks[i].cfg = b

    def forward(self, x):
        a = self.arch
        x = self.stem(x, a.stem.out)
        for i in self.active:
            x = self.blocks[i](x)
        for h, cfg in zip(self.head, a.head):
            x = h(x, cfg.out)
        return self.classifier(x, a.hidden)

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> nn.Module:
        """`build(proxy arch)` carrying this supernet's weights and BatchNorm statistics for `arch` (eval mode).
        The proxy arch has the deployment arch's parameter shapes, so the state_dict also loads into
        build(arch.replace(num_classes=<proxy classes>)) at 224x224."""
        self.set_active(arch)
        return self._extract()

    def slimmings(self, arch: ArchConfig, label: str = "find", min_width: float = 0.25, step: int = 8,
                  min_channels: int = 8) -> SupernetSlimmings:
        """The slimmings of `arch` (an arch of the space) run on this supernet's weights: one-shot NetAdapt's
        scorer for a searched arch, with no training of its own (mnas.prune.oneshot)."""
        return SupernetSlimmings(self, Slimming(arch, label, min_width, step, min_channels))

    @torch.no_grad()
    def _extract(self) -> nn.Module:
        model = build(self.arch)
        src = self.state_dict()
        for name, dst in model.state_dict().items():
            if name.startswith("blocks."):
                _, n, module, rest = name.split(".", 3)
                b, i = self.arch.blocks[int(n)], self.active[int(n)]
                module = DS_FROM[module] if b.type == "ds" else module
                if module == "conv_dw" and rest == "weight":
                    dst.copy_(self.blocks[i].conv_dw.active_weight(dst.shape[0], b.kernel))
                    continue
                name = f"blocks.{i}.{module}.{rest}"
            dst.copy_(src[name][tuple(slice(0, n) for n in dst.shape)])
        return model.to(next(self.parameters()).device).eval()


class SupernetSlimmings:
    """Any slimming of one arch of a supernet's space (its widths cut in multiples of 8, as NetAdapt cuts them,
    most of them between the space's width choices) as a sub-network of the supernet: the arch's blocks, the
    first channels of each layer. `slimming` and `extract` are what mnas.prune.netadapt asks of a Slimmable."""

    def __init__(self, supernet: Supernet, slimming: Slimming):
        self.supernet, self.slimming = supernet, slimming
        self.active, self.proxy = supernet.decode(slimming.start)

    def extract(self, arch: ArchConfig) -> nn.Module:
        self.slimming.check(arch)
        net = self.supernet
        net.active, net.arch = self.active, with_channels(self.proxy, arch)
        for i, b in zip(net.active, net.arch.blocks):
            net.blocks[i].cfg = b
        return net._extract()
