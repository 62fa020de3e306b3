"""The ops of an ArchConfig as latency-table keys: one row per layer, keyed by its configuration (never by module).

Op kinds: `stem` (first conv), `conv` / `ds` / `ir` (blocks), `head` (1x1 convs before the pool) and
`classifier` (global pool + optional hidden linear + final linear; cin = features, exp = hidden units,
cout = classes, act = hidden activation). `res` is the op's input resolution (square).
"""
from dataclasses import dataclass, fields

from mnas.nn.arch import ArchConfig


@dataclass(frozen=True)
class OpKey:
    op: str
    res: int
    cin: int
    exp: int
    cout: int
    kernel: int
    stride: int
    se: int
    act: str
    residual: bool
    pw_act: bool

    def astuple(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_COLUMNS)


KEY_COLUMNS = [f.name for f in fields(OpKey)]


def arch_ops(arch: ArchConfig) -> list[OpKey]:
    """Every op of `arch` at its deployment resolution, in network order."""
    keys, nblocks = [], len(arch.blocks)
    for i, (b, cin, res) in enumerate(arch.walk()):
        op = "stem" if i == 0 else ("head" if i > nblocks else b.type)
        keys.append(OpKey(op, res, cin, b.exp, b.out, b.kernel, b.stride, b.se, b.act, b.residual, b.pw_act))
        last_res = -(-res // b.stride)
    keys.append(OpKey("classifier", last_res, arch.features, arch.hidden, arch.num_classes, 1, 1, 0,
                      arch.hidden_act if arch.hidden else "relu", False, False))
    return keys
