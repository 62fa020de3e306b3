"""Channel units of an ArchConfig: the sets of channels that can only shrink together, and arch-level resizing.

A *unit* is a set of channels that can only shrink together:
- `exp blocks.i`: an inverted residual's expanded channels (conv_pw out = conv_dw = SE = conv_pwl in);
- `out <layer>`: a layer's output channels (stem, block or head conv) with every residual block that adds onto
  them (a residual add needs in == out, so a stage's blocks shrink together); a depthwise-separable block's
  depthwise conv and SE run on its input channels, so they shrink with the unit that feeds them;
- `hidden`: the hidden linear layer of a V3 classifier.
Input channels and classes never change. SE squeeze widths follow the MobileNetV3 rule: when an SE's channels
shrink, its squeeze becomes min(squeeze, make_divisible(channels / 4)).

Config only (no torch): NetAdapt's loop (mnas.prune.netadapt), the slimmable network (mnas.supernet.slimmable) and
the latency fidelity check's pruned shapes all read units from here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mnas.nn.arch import ArchConfig, make_divisible


@dataclass(frozen=True)
class Unit:
    name: str
    kind: str                # exp | out | hidden
    layers: tuple[int, ...]  # indices into layers(arch) = [stem, *blocks, *head]


def layers(arch: ArchConfig) -> list:
    return [arch.stem, *arch.blocks, *arch.head]


def _label(arch: ArchConfig, i: int) -> str:
    n = len(arch.blocks)
    return "stem" if i == 0 else f"blocks.{i - 1}" if i <= n else f"head.{i - n - 1}"


def units(arch: ArchConfig) -> list[Unit]:
    """Every prunable unit of `arch`, in network order."""
    found, chain = [], None
    for i, b in enumerate(layers(arch)):
        if not b.residual:
            chain = [i]
            found.append(chain)
        else:
            chain.append(i)
        if b.type == "ir":
            found.append(Unit(f"exp {_label(arch, i)}", "exp", (i,)))
    out = [u if isinstance(u, Unit) else
           Unit(f"out {_label(arch, u[0])}" + (f"..{_label(arch, u[-1])}" if len(u) > 1 else ""), "out", tuple(u))
           for u in found]
    return out + ([Unit("hidden", "hidden", ())] if arch.hidden else [])


def channels(arch: ArchConfig, unit: Unit) -> int:
    if unit.kind == "hidden":
        return arch.hidden
    b = layers(arch)[unit.layers[0]]
    return b.exp if unit.kind == "exp" else b.out


def _se_channels(arch: ArchConfig) -> list[int]:
    """The channel count each layer's SE runs on: ir on its expansion, ds on its input, conv on its output."""
    return [b.exp if b.type == "ir" else cin if b.type == "ds" else b.out for b, cin, _ in arch.walk()]


def resize(arch: ArchConfig, unit: Unit, n: int) -> ArchConfig:
    """`arch` with `unit` at `n` channels (and the SE squeezes on those channels at most make_divisible(n/4))."""
    ls = layers(arch)
    for i in unit.layers:
        ls[i] = dataclasses.replace(ls[i], **{("exp" if unit.kind == "exp" else "out"): n})
    nb = len(arch.blocks)
    new = arch.replace(stem=ls[0], blocks=tuple(ls[1:1 + nb]), head=tuple(ls[1 + nb:]),
                       hidden=n if unit.kind == "hidden" else arch.hidden)
    ls = layers(new)
    for i, (old, ch) in enumerate(zip(_se_channels(arch), _se_channels(new))):
        if ls[i].se and ch != old:
            ls[i] = dataclasses.replace(ls[i], se=min(ls[i].se, make_divisible(ch / 4)))
    return new.replace(stem=ls[0], blocks=tuple(ls[1:1 + nb]), head=tuple(ls[1 + nb:]))


def smallest_keep(arch: ArchConfig, unit: Unit, min_channels: int = 8, step: int = 8) -> int:
    """The fewest channels `unit` can keep: removing multiples of `step`, never below `min_channels`."""
    c = channels(arch, unit)
    return c - max(0, (c - min_channels) // step) * step


def minimal_arch(arch: ArchConfig, min_channels: int = 8, step: int = 8) -> ArchConfig:
    """`arch` with every unit at its smallest width: the fastest network pruning can reach."""
    for u in units(arch):
        arch = resize(arch, u, smallest_keep(arch, u, min_channels, step))
    return arch


def random_pruned(arch: ArchConfig, rng, cuts: int, min_channels: int = 8, step: int = 8) -> ArchConfig:
    """`arch` after `cuts` NetAdapt-style cuts chosen at random (no accuracy involved): each removes a multiple of
    `step` channels, at most half of what may go, from a random unit that can still shrink. The channel counts
    and coupled residual widths a pruning run leaves, for checking a latency model on pruned shapes."""
    for _ in range(cuts):
        free = [u for u in units(arch) if channels(arch, u) > smallest_keep(arch, u, min_channels, step)]
        if not free:
            break
        u = rng.choice(free)
        slack = (channels(arch, u) - smallest_keep(arch, u, min_channels, step)) // step
        arch = resize(arch, u, channels(arch, u) - step * rng.randint(1, max(1, slack // 2)))
    return arch


def with_channels(arch: ArchConfig, source: ArchConfig) -> ArchConfig:
    """`arch` (e.g. the deployment shape) with the channel counts of `source` (e.g. the pruned proxy network)."""
    f = lambda t, s: dataclasses.replace(t, out=s.out, exp=s.exp, se=s.se)  # noqa: E731
    return arch.replace(stem=f(arch.stem, source.stem), blocks=tuple(map(f, arch.blocks, source.blocks)),
                        head=tuple(map(f, arch.head, source.head)), hidden=source.hidden)
