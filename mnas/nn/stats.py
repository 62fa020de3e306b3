"""MACs and parameters of an ArchConfig, computed from the config alone (no nn.Module needed).

Convention: MACs = multiply-accumulates of conv and linear layers (incl. the SE 1x1 convs), as the MobileNet
papers count them; BatchNorm, activations, pooling, the SE gate multiply and residual adds are not counted.
Parameters = every learnable tensor of `build(arch)`: conv/linear weights and biases and BatchNorm scale/shift.
"""
from dataclasses import dataclass

from mnas.nn.arch import ArchConfig, BlockConfig


@dataclass(frozen=True)
class Count:
    macs: int
    params: int

    def __add__(self, o: "Count") -> "Count":
        return Count(self.macs + o.macs, self.params + o.params)

    def __str__(self) -> str:
        return f"{self.macs / 1e6:.1f}M MACs, {self.params / 1e6:.2f}M params"


def _conv(cin: int, cout: int, k: int, out_res: int, groups: int = 1, bias: bool = False, bn: bool = True) -> Count:
    weights = k * k * (cin // groups) * cout
    return Count(weights * out_res * out_res, weights + (cout if bias else 0) + (2 * cout if bn else 0))


def _se(ch: int, sq: int) -> Count:
    return _conv(ch, sq, 1, 1, bias=True, bn=False) + _conv(sq, ch, 1, 1, bias=True, bn=False) if sq else Count(0, 0)


def block_count(b: BlockConfig, cin: int, res: int) -> Count:
    """Cost of one layer with `cin` input channels at input resolution `res`."""
    out_res = -(-res // b.stride)
    if b.type == "conv":
        return _conv(cin, b.out, b.kernel, out_res) + _se(b.out, b.se)
    if b.type == "ds":
        return (_conv(cin, cin, b.kernel, out_res, groups=cin) + _se(cin, b.se)
                + _conv(cin, b.out, 1, out_res))
    return (_conv(cin, b.exp, 1, res) + _conv(b.exp, b.exp, b.kernel, out_res, groups=b.exp) + _se(b.exp, b.se)
            + _conv(b.exp, b.out, 1, out_res))


def count(arch: ArchConfig, resolution: int | None = None) -> Count:
    """MACs and params of the whole network (at `resolution`, default the arch's deployment resolution)."""
    if resolution is not None:
        arch = arch.replace(resolution=resolution)
    total = Count(0, 0)
    for b, cin, res in arch.walk():
        total += block_count(b, cin, res)
    feat = arch.features
    if arch.hidden:
        total += Count(feat * arch.hidden, feat * arch.hidden + arch.hidden)
        feat = arch.hidden
    return total + Count(feat * arch.num_classes, feat * arch.num_classes + arch.num_classes)
