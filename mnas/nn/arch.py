"""Architecture vocabulary: frozen BlockConfig/ArchConfig with absolute channels, a compact string and JSON.

Every other module speaks this language: builders turn an ArchConfig into an nn.Module, the latency table is
keyed by its ops, the search samples one, the pruner returns one with fewer channels.

String form (one token per layer, joined by '-'), e.g. MobileNetV3-Small starts
    r224-in3-stem_k3_s2_c16_hswish-ds_k3_s2_c16_se8_relu-ir_k3_s2_e72_c24_relu-...
    ...-head_k1_c576_hswish-fc1024_hswish-cls1000_d0.2
Tokens inside a layer are '_'-separated: k<kernel> s<stride> e<expanded channels> c<out channels> se<squeeze channels>
<activation> res (residual add) pwact (activation after a depthwise-separable block's pointwise conv).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from decimal import Decimal

BLOCK_TYPES = ("conv", "ds", "ir")  # plain conv-bn-act, depthwise-separable (dw, pw), inverted residual (pw, dw, pwl)
ACTIVATIONS = ("relu", "relu6", "hswish")
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
MAX_CHANNELS = 8192


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round v to the nearest multiple of divisor, never below min_value and never more than 10% below v."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _check(ok: bool, field: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}={value!r} is invalid: allowed {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_channels(field: str, value) -> None:
    _check(_is_int(value) and 1 <= value <= MAX_CHANNELS, field, value,
           f"an integer channel count 1..{MAX_CHANNELS}")


@dataclass(frozen=True)
class BlockConfig:
    """One layer. `exp` is the depthwise conv's channel count of an 'ir' block (0 for 'conv' and 'ds', whose
    depthwise conv runs on the input channels); `se` the squeeze channels (0 = no squeeze-excite)."""

    type: str
    kernel: int
    stride: int
    out: int
    act: str
    exp: int = 0
    se: int = 0
    residual: bool = False
    pw_act: bool = False

    def __post_init__(self):
        _check(self.type in BLOCK_TYPES, "type", self.type, f"one of {BLOCK_TYPES}")
        _check(_is_int(self.kernel) and self.kernel in KERNELS, "kernel", self.kernel, f"one of {KERNELS}")
        _check(_is_int(self.stride) and self.stride in STRIDES, "stride", self.stride, f"one of {STRIDES}")
        _check(self.act in ACTIVATIONS, "act", self.act, f"one of {ACTIVATIONS}")
        _check_channels("out", self.out)
        if self.type == "ir":
            _check_channels("exp", self.exp)
        else:
            _check(self.exp == 0, "exp", self.exp, f"0 for a '{self.type}' block (only 'ir' blocks expand)")
        _check(_is_int(self.se) and 0 <= self.se <= MAX_CHANNELS, "se", self.se,
               "0 (off) or the squeeze channel count")
        _check(isinstance(self.residual, bool), "residual", self.residual, "True or False")
        _check(isinstance(self.pw_act, bool) and (self.type == "ds" or not self.pw_act), "pw_act", self.pw_act,
               "True only for a 'ds' block")
        _check(self.type != "conv" or not self.residual, "residual", self.residual, "False for a 'conv' block")

    def replace(self, **kw) -> "BlockConfig":
        return dataclasses.replace(self, **kw)

    def to_string(self, prefix: str | None = None) -> str:
        t = [prefix or self.type, f"k{self.kernel}", f"s{self.stride}"]
        t += [f"e{self.exp}"] if self.type == "ir" else []
        t += [f"c{self.out}"] + ([f"se{self.se}"] if self.se else []) + [self.act]
        t += ["res"] if self.residual else []
        t += ["pwact"] if self.pw_act else []
        return "_".join(t)

    @classmethod
    def from_string(cls, s: str, type: str | None = None) -> "BlockConfig":
        parts = s.split("_")
        kw = {"type": type or parts[0]}
        for tok in parts[1:]:
            m = re.fullmatch(r"(k|s|e|c|se)(\d+)", tok)
            if m:
                key = {"k": "kernel", "s": "stride", "e": "exp", "c": "out", "se": "se"}[m[1]]
                _check(key not in kw, "token", tok, f"each of k/s/e/c/se at most once (in {s!r})")
                kw[key] = int(m[2])
            elif tok in ACTIVATIONS and "act" not in kw:
                kw["act"] = tok
            elif tok in ("res", "pwact") and tok not in kw:
                kw[{"res": "residual", "pwact": "pw_act"}[tok]] = True
            else:
                raise ValueError(f"unknown or repeated token {tok!r} in layer {s!r}: allowed k<n> s<n> e<n> c<n> "
                                 f"se<n> {'/'.join(ACTIVATIONS)} res pwact")
        missing = [f for f in ("kernel", "stride", "out", "act") if f not in kw]
        _check(not missing, "layer", s, f"a layer with all of k<n> s<n> c<n> and an activation (missing {missing})")
        return cls(**kw)


@dataclass(frozen=True)
class ArchConfig:
    """A whole network: stem conv, blocks, 1x1 head convs, global average pool, optional hidden linear layer
    (`hidden` units with `hidden_act`, no BatchNorm, as in MobileNetV3), dropout, classifier."""

    stem: BlockConfig
    blocks: tuple[BlockConfig, ...]
    head: tuple[BlockConfig, ...] = ()
    hidden: int = 0
    hidden_act: str = "hswish"
    dropout: float = 0.0
    num_classes: int = 1000
    resolution: int = 224
    in_chans: int = 3

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "head", tuple(self.head))
        _check(isinstance(self.stem, BlockConfig) and self.stem.type == "conv", "stem", self.stem,
               "a 'conv' BlockConfig")
        _check(len(self.blocks) >= 1 and all(isinstance(b, BlockConfig) for b in self.blocks), "blocks",
               self.blocks, "a non-empty tuple of BlockConfig")
        for h in self.head:
            _check(isinstance(h, BlockConfig) and h.type == "conv" and h.kernel == 1 and h.stride == 1, "head", h,
                   "1x1 stride-1 'conv' BlockConfigs")
        _check(_is_int(self.hidden) and 0 <= self.hidden <= MAX_CHANNELS, "hidden", self.hidden,
               f"0 (none) or a unit count up to {MAX_CHANNELS}")
        _check(self.hidden_act in ACTIVATIONS, "hidden_act", self.hidden_act, f"one of {ACTIVATIONS}")
        if not self.hidden:  # no hidden layer, no activation: one canonical form, so equal archs compare equal
            object.__setattr__(self, "hidden_act", "hswish")
        number = isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
        _check(number and 0 <= self.dropout < 1, "dropout", self.dropout, "a float in [0, 1)")
        object.__setattr__(self, "dropout", float(self.dropout))
        _check(_is_int(self.num_classes) and 2 <= self.num_classes <= 100000, "num_classes",
               self.num_classes, "an integer 2..100000")
        _check(_is_int(self.resolution) and 32 <= self.resolution <= 4096, "resolution",
               self.resolution, "an integer >= 32 (and <= 4096)")
        _check(_is_int(self.in_chans) and 1 <= self.in_chans <= 16, "in_chans", self.in_chans,
               "an integer 1..16")
        for i, (b, cin, _) in enumerate(self.walk()):
            if b.residual and (b.stride != 1 or cin != b.out):
                raise ValueError(f"blocks[{i}].residual=True is invalid: a residual add needs stride 1 and "
                                 f"in == out channels (here stride {b.stride}, {cin} -> {b.out})")

    def walk(self):
        """Yield (block, in_channels, input_resolution) for stem, blocks and head convs, in order."""
        cin, res = self.in_chans, self.resolution
        for b in (self.stem, *self.blocks, *self.head):
            yield b, cin, res
            cin, res = b.out, -(-res // b.stride)

    @property
    def features(self) -> int:
        """Channels reaching the global pool."""
        return (self.head[-1] if self.head else self.blocks[-1]).out

    def replace(self, **kw) -> "ArchConfig":
        return dataclasses.replace(self, **kw)

    # ---- string form -------------------------------------------------------------------------------------
    def to_string(self) -> str:
        toks = [f"r{self.resolution}", f"in{self.in_chans}", self.stem.to_string("stem")]
        toks += [b.to_string() for b in self.blocks] + [h.to_string("head") for h in self.head]
        toks += [f"fc{self.hidden}_{self.hidden_act}"] if self.hidden else []
        toks += [f"cls{self.num_classes}_d{Decimal(repr(self.dropout)):f}"]  # positional: "-" separates tokens
        return "-".join(toks)

    @classmethod
    def from_string(cls, s: str) -> "ArchConfig":
        if not isinstance(s, str) or not s.strip():
            raise ValueError("arch string is empty: expected e.g. 'r224-in3-stem_k3_s2_c16_hswish-...-cls1000_d0.2'")
        kw, blocks, head = {}, [], []
        for tok in s.strip().split("-"):
            kind = tok.split("_", 1)[0]
            if m := re.fullmatch(r"r(\d+)", tok):
                kw["resolution"] = int(m[1])
            elif m := re.fullmatch(r"in(\d+)", tok):
                kw["in_chans"] = int(m[1])
            elif kind == "stem":
                kw["stem"] = BlockConfig.from_string(tok, type="conv")
            elif kind in BLOCK_TYPES:
                blocks.append(BlockConfig.from_string(tok))
            elif kind == "head":
                head.append(BlockConfig.from_string(tok, type="conv"))
            elif m := re.fullmatch(r"fc(\d+)_(\w+)", tok):
                kw["hidden"], kw["hidden_act"] = int(m[1]), m[2]
            elif m := re.fullmatch(r"cls(\d+)_d(\d+(?:\.\d+)?)", tok):
                kw["num_classes"], kw["dropout"] = int(m[1]), float(m[2])
            else:
                raise ValueError(f"unknown token {tok!r} in arch string: allowed r<res> in<ch> stem_... "
                                 f"{'_... '.join(BLOCK_TYPES)}_... head_... fc<n>_<act> cls<n>_d<p>")
        for req, example in (("resolution", "r224"), ("in_chans", "in3"), ("stem", "stem_k3_s2_c16_hswish"),
                             ("num_classes", "cls1000_d0.2")):
            if req not in kw:
                raise ValueError(f"arch string lacks {req} (a token like {example!r})")
        return cls(blocks=tuple(blocks), head=tuple(head), **kw)

    # ---- JSON form ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchConfig":
        if not isinstance(d, dict):
            raise ValueError(f"arch JSON must be an object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        bnames = {f.name for f in dataclasses.fields(BlockConfig)}
        if unknown := set(d) - names:
            raise ValueError(f"unknown arch field(s) {sorted(unknown)}: allowed {sorted(names)}")

        def block(b):
            if not isinstance(b, dict) or (set(b) - bnames):
                raise ValueError(f"invalid block {b!r}: expected an object with fields from {sorted(bnames)}")
            return BlockConfig(**b)

        try:
            kw = dict(d, stem=block(d["stem"]), blocks=tuple(block(b) for b in d["blocks"]),
                      head=tuple(block(b) for b in d.get("head", ())))
            return cls(**kw)
        except (KeyError, TypeError) as e:
            raise ValueError(f"invalid arch JSON: {e}") from None

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, s: str) -> "ArchConfig":
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"arch JSON does not parse: {e}") from None
        return cls.from_dict(d)
