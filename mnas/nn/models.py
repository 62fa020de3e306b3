"""Hand-designed baselines as ArchConfigs (MobileNetV1/V2/V3) and `build(arch) -> nn.Module`.

Layer tables follow the papers: V1 (Howard et al. 2017, Table 1), V2 (Sandler et al. 2018, Table 2),
V3-Large/Small (Howard et al. 2019, Tables 1-2). The width multiplier scales every channel count through one
`make_divisible(c * width, 8)`; the resolution multiplier is the `resolution` argument.
"""
import torch
from torch import nn

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig, BlockConfig, make_divisible
from mnas.nn.blocks import Classifier, build_block


def _check_args(width: float, resolution: int, num_classes: int) -> None:
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0 < width <= 4:
        raise UserError(f"width={width!r} is invalid: use a multiplier in (0, 4], e.g. 0.5, 1.0, 1.4")
    if not isinstance(resolution, int) or resolution < 32:
        raise UserError(f"resolution={resolution!r} is invalid: use an integer >= 32 (e.g. 224, 160, 96)")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"num_classes={num_classes!r} is invalid: use an integer >= 2")


def mobilenet_v1(width: float = 1.0, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.001) -> ArchConfig:
    """Depthwise-separable convs, ReLU after both the depthwise and the pointwise conv."""
    _check_args(width, resolution, num_classes)
    c = lambda v: make_divisible(v * width)  # noqa: E731
    stages = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    blocks = [BlockConfig("ds", 3, s, c(o), "relu", pw_act=True) for o, s in stages]
    return ArchConfig(stem=BlockConfig("conv", 3, 2, c(32), "relu"), blocks=tuple(blocks), dropout=dropout,
                      num_classes=num_classes, resolution=resolution, in_chans=in_chans)


def mobilenet_v2(width: float = 1.0, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.2) -> ArchConfig:
    """Inverted residuals with linear bottlenecks, ReLU6, expansion t=6; head conv 1280 (only widened above 1)."""
    _check_args(width, resolution, num_classes)
    c = lambda v: make_divisible(v * width)  # noqa: E731
    stem = BlockConfig("conv", 3, 2, c(32), "relu6")
    blocks, cin = [], stem.out
    for t, ch, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)]:
        for i in range(n):
            out, stride = c(ch), (s if i == 0 else 1)
            res = stride == 1 and cin == out
            blocks.append(BlockConfig("ds", 3, stride, out, "relu6", residual=res) if t == 1 else
                          BlockConfig("ir", 3, stride, out, "relu6", exp=cin * t, residual=res))
            cin = out
    head = (BlockConfig("conv", 1, 1, make_divisible(1280 * max(1.0, width)), "relu6"),)
    return ArchConfig(stem=stem, blocks=tuple(blocks), head=head, dropout=dropout, num_classes=num_classes,
                      resolution=resolution, in_chans=in_chans)


# MobileNetV3 bneck rows: kernel, expanded, out, SE, activation, stride (paper Tables 1 and 2).
_V3_LARGE = [(3, 16, 16, 0, "relu", 1), (3, 64, 24, 0, "relu", 2), (3, 72, 24, 0, "relu", 1),
             (5, 72, 40, 1, "relu", 2), (5, 120, 40, 1, "relu", 1), (5, 120, 40, 1, "relu", 1),
             (3, 240, 80, 0, "hswish", 2), (3, 200, 80, 0, "hswish", 1), (3, 184, 80, 0, "hswish", 1),
             (3, 184, 80, 0, "hswish", 1), (3, 480, 112, 1, "hswish", 1), (3, 672, 112, 1, "hswish", 1),
             (5, 672, 160, 1, "hswish", 2), (5, 960, 160, 1, "hswish", 1), (5, 960, 160, 1, "hswish", 1)]
_V3_SMALL = [(3, 16, 16, 1, "relu", 2), (3, 72, 24, 0, "relu", 2), (3, 88, 24, 0, "relu", 1),
             (5, 96, 40, 1, "hswish", 2), (5, 240, 40, 1, "hswish", 1), (5, 240, 40, 1, "hswish", 1),
             (5, 120, 48, 1, "hswish", 1), (5, 144, 48, 1, "hswish", 1), (5, 288, 96, 1, "hswish", 2),
             (5, 576, 96, 1, "hswish", 1), (5, 576, 96, 1, "hswish", 1)]


def se_channels(exp: int) -> int:
    """MobileNetV3 squeeze width: make_divisible(expanded / 4, 8)."""
    return make_divisible(exp / 4)


def v3_block(cin: int, kernel: int, exp: int, out: int, se: bool, act: str, stride: int) -> BlockConfig:
    """One V3 bneck; expansion 1 (exp == in) is a depthwise-separable block, as in the reference code."""
    res = stride == 1 and cin == out
    sq = se_channels(exp) if se else 0
    if exp == cin:
        return BlockConfig("ds", kernel, stride, out, act, se=sq, residual=res)
    return BlockConfig("ir", kernel, stride, out, act, exp=exp, se=sq, residual=res)


def _v3(rows, head_ch: int, hidden: int, width: float, resolution: int, num_classes: int, in_chans: int,
        dropout: float) -> ArchConfig:
    _check_args(width, resolution, num_classes)
    c = lambda v: make_divisible(v * width)  # noqa: E731
    stem = BlockConfig("conv", 3, 2, c(16), "hswish")
    blocks, cin = [], stem.out
    for k, exp, out, se, act, s in rows:
        blocks.append(v3_block(cin, k, c(exp), c(out), bool(se), act, s))
        cin = blocks[-1].out
    head = (BlockConfig("conv", 1, 1, c(head_ch), "hswish"),)
    return ArchConfig(stem=stem, blocks=tuple(blocks), head=head, hidden=c(hidden), hidden_act="hswish",
                      dropout=dropout, num_classes=num_classes, resolution=resolution, in_chans=in_chans)


def mobilenet_v3_large(width: float = 1.0, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3,
                       dropout: float = 0.2) -> ArchConfig:
    return _v3(_V3_LARGE, 960, 1280, width, resolution, num_classes, in_chans, dropout)


def mobilenet_v3_small(width: float = 1.0, resolution: int = 224, num_classes: int = 1000, in_chans: int = 3,
                       dropout: float = 0.2) -> ArchConfig:
    """The last 1x1 conv (576) carries no SE, as in the TF and torchvision reference code (the paper's table
    marks one); see README for the counting convention."""
    return _v3(_V3_SMALL, 576, 1024, width, resolution, num_classes, in_chans, dropout)


BASELINES = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2,
             "mobilenet_v3_large": mobilenet_v3_large, "mobilenet_v3_small": mobilenet_v3_small}

# The published hand-designed variants a search is measured against, by family (mnas.compare's names): widths,
# and for v2_res the deployment resolutions of MobileNetV2 1.0 (the papers' width and resolution multipliers).
HAND_DESIGNS = {"v1": [0.25, 0.5, 0.75, 1.0], "v2": [0.35, 0.5, 0.75, 1.0, 1.4], "v2_res": [96, 128, 160, 192],
                "v3_large": [0.5, 0.75, 1.0], "v3_small": [0.5, 0.75, 1.0]}
FAMILIES = {"v1": ("mobilenet_v1", "MobileNetV1"), "v2": ("mobilenet_v2", "MobileNetV2"),
            "v2_res": ("mobilenet_v2", "MobileNetV2"), "v3_large": ("mobilenet_v3_large", "MobileNetV3-Large"),
            "v3_small": ("mobilenet_v3_small", "MobileNetV3-Small")}  # family -> (model name, label)


def variant(family: str, v: float, resolution: int = 224, num_classes: int = 1000) -> tuple[float, int, ArchConfig]:
    """(width, resolution, arch) of one variant of a family: v is the width, or for v2_res the resolution of
    MobileNetV2 1.0."""
    width, res = (1.0, int(v)) if family == "v2_res" else (float(v), resolution)
    return width, res, get_model(FAMILIES[family][0], width, res, num_classes)


def hand_designs(resolution: int = 224, num_classes: int = 1000) -> list[tuple[str, float, str, ArchConfig]]:
    """(family, width or resolution, label, arch) of every HAND_DESIGNS variant at the deployment shape; the
    resolution variants only below that shape's resolution."""
    out = []
    for family, values in HAND_DESIGNS.items():
        label = FAMILIES[family][1]
        for v in values:
            if family != "v2_res" or v < resolution:
                name = f"{label} 1.0 @{v}px" if family == "v2_res" else f"{label} {float(v)}"
                out.append((family, v, name, variant(family, v, resolution, num_classes)[2]))
    return out


def get_model(name: str, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
              in_chans: int = 3) -> ArchConfig:
    """A baseline by name; an unknown name is a UserError listing the available ones."""
    if name not in BASELINES:
        raise UserError(f"unknown model {name!r}: available {', '.join(BASELINES)}")
    return BASELINES[name](width=width, resolution=resolution, num_classes=num_classes, in_chans=in_chans)


class MobileNet(nn.Module):
    """An ordinary network built from an ArchConfig: stem, blocks, head, classifier. `self.arch` is its config."""

    def __init__(self, arch: ArchConfig):
        super().__init__()
        self.arch = arch
        layers = [build_block(cin, b) for b, cin, _ in arch.walk()]
        n = len(arch.blocks)
        self.stem = layers[0]
        self.blocks = nn.Sequential(*layers[1:1 + n])
        self.head = nn.Sequential(*layers[1 + n:])
        self.classifier = Classifier(arch.features, arch.hidden, arch.hidden_act, arch.dropout, arch.num_classes)
        init_weights(self)

    def forward(self, x):
        return self.classifier(self.head(self.blocks(self.stem(x))))


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(arch: ArchConfig, seed: int | None = None) -> MobileNet:
    """The network of `arch`, freshly initialised: from torch's global generator, or reproducibly from `seed`."""
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"build() takes an ArchConfig, got {type(arch).__name__}")
    if seed is not None:
        torch.manual_seed(seed)
    return MobileNet(arch)
