"""Declarative search spaces (search_spaces/*.yaml): load and validate, sample an ArchConfig, list its ops.

A space is a stem, stages (searched depth and width, fixed stride) of blocks (searched kernel, expansion t,
SE, activation), a head conv and a hidden layer; the stem's, head's and hidden layer's widths may be choices too
(`out: [8, 16]`), so that width-multiplied hand designs are points of the space. Sampling is define-by-run:
`space.sample(trial.suggest_categorical)` asks only for the blocks that the sampled depth creates;
`space.random_arch(rng)` uses the same code path. A single-valued choice is fixed and never asked.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from mnas.errors import UserError
from mnas.nn.arch import ACTIVATIONS, KERNELS, ArchConfig, BlockConfig, make_divisible
from mnas.nn.ops import OpKey

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
TOP_KEYS = {"name", "resolution", "num_classes", "stem", "block", "stages", "head", "hidden", "dropout"}
CHOICE_KEYS = ("kernel", "expand", "se", "act")
STAGE_KEYS = {"depth", "out", "stride", *CHOICE_KEYS}


@dataclass(frozen=True)
class Stage:
    depth: tuple[int, ...]
    out: tuple[int, ...]
    stride: int
    kernel: tuple[int, ...]
    expand: tuple[float, ...]
    se: tuple[bool, ...]
    act: tuple[str, ...]


def make_block(cin: int, out: int, stride: int, kernel: int, expand: float, se: bool, act: str) -> BlockConfig:
    """One searchable block: expand 1 is a depthwise-separable block (V3's first), else an inverted residual."""
    residual = stride == 1 and cin == out
    if expand == 1:
        return BlockConfig("ds", kernel, stride, out, act, se=make_divisible(cin / 4) if se else 0, residual=residual)
    exp = make_divisible(cin * expand)
    return BlockConfig("ir", kernel, stride, out, act, exp=exp, se=make_divisible(exp / 4) if se else 0,
                       residual=residual)


@dataclass(frozen=True)
class Space:
    """`stem` and `head` are templates whose `out` is the first of `stem_out` / `head_out` (the choices)."""
    name: str
    resolution: int
    num_classes: int
    stem: BlockConfig
    stages: tuple[Stage, ...]
    head: tuple[BlockConfig, ...]
    hidden_out: tuple[int, ...]
    hidden_act: str
    dropout: float
    stem_out: tuple[int, ...]
    head_out: tuple[int, ...]

    def sample(self, choose) -> ArchConfig:
        """Build an arch from `choose(name, choices) -> value` (e.g. optuna's trial.suggest_categorical).
        Single-valued choices are fixed and not asked."""
        pick = lambda name, options: options[0] if len(options) == 1 else choose(name, list(options))  # noqa: E731
        stem = self.stem.replace(out=pick("stem_out", self.stem_out))
        blocks, cin = [], stem.out
        for i, st in enumerate(self.stages):
            depth, out = pick(f"s{i}_depth", st.depth), pick(f"s{i}_out", st.out)
            for j in range(depth):
                p = f"s{i}_b{j}_"
                blocks.append(make_block(cin, out, st.stride if j == 0 else 1, pick(p + "kernel", st.kernel),
                                         pick(p + "expand", st.expand), pick(p + "se", st.se), pick(p + "act", st.act)))
                cin = out
        head = tuple(h.replace(out=pick("head_out", self.head_out)) for h in self.head)
        return ArchConfig(stem=stem, blocks=tuple(blocks), head=head, hidden=pick("hidden_out", self.hidden_out),
                          hidden_act=self.hidden_act, dropout=self.dropout, num_classes=self.num_classes,
                          resolution=self.resolution)

    def random_arch(self, rng: random.Random) -> ArchConfig:
        return self.sample(lambda name, options: rng.choice(options))

    def extreme(self, largest: bool, kernel_rng: random.Random | None = None) -> ArchConfig:
        """The largest (deepest, widest, k7, max t, SE, h-swish) or smallest arch of the space; with kernel_rng,
        each block's kernel drawn at random from its stage's choices instead."""
        f = max if largest else min
        key = lambda v: (v == "hswish", v) if isinstance(v, str) else v  # noqa: E731
        return self.sample(lambda name, options: kernel_rng.choice(options)
                           if kernel_rng and name.endswith("_kernel") else f(options, key=key))

    def params_for(self, arch: ArchConfig) -> dict | None:
        """The trial parameters that make `sample` return `arch` (ignoring num_classes/resolution), or None."""
        if not self.frame_fits(arch):
            return None
        options = []
        for i, st in enumerate(self.stages):
            options.append([(f"s{i}", d, o) for d in st.depth for o in st.out])

        def blocks_match(params, start, cin, i, depth, out):
            st = self.stages[i]
            for j in range(depth):
                if start + j >= len(arch.blocks):
                    return None
                b = arch.blocks[start + j]
                for k, t, se, act in itertools.product(st.kernel, st.expand, st.se, st.act):
                    if make_block(cin, out, st.stride if j == 0 else 1, k, t, se, act) == b:
                        params.update({f"s{i}_b{j}_kernel": k, f"s{i}_b{j}_expand": t, f"s{i}_b{j}_se": se,
                                       f"s{i}_b{j}_act": act})
                        break
                else:
                    return None
                cin = out
            return params

        def search(i, start, cin, params):
            if i == len(self.stages):
                return params if start == len(arch.blocks) else None
            st = self.stages[i]
            for depth, out in itertools.product(st.depth, st.out):
                found = blocks_match(dict(params, **{f"s{i}_depth": depth, f"s{i}_out": out}), start, cin, i,
                                     depth, out)
                if found is not None and (done := search(i + 1, start + depth, out, found)) is not None:
                    return done
            return None

        params = search(0, 0, arch.stem.out, {})
        if params is None:
            return None
        params.update(stem_out=arch.stem.out, head_out=arch.features, hidden_out=arch.hidden)
        names = set(self._choice_names())
        return {k: v for k, v in params.items() if k in names}

    def frame_fits(self, arch: ArchConfig) -> bool:
        """Whether the arch's stem, head convs and hidden layer are those of the space at one of its widths."""
        if arch.stem.out not in self.stem_out or arch.stem != self.stem.replace(out=arch.stem.out):
            return False
        if arch.hidden not in self.hidden_out or arch.hidden and arch.hidden_act != self.hidden_act:
            return False
        if len(arch.head) != len(self.head):
            return False
        return not self.head or arch.head[0].out in self.head_out and \
            arch.head == tuple(h.replace(out=arch.head[0].out) for h in self.head)

    def _choice_names(self):
        yield from [k for k in ("stem_out", "head_out", "hidden_out") if len(getattr(self, k)) > 1]
        for i, st in enumerate(self.stages):
            yield from [f"s{i}_{k}" for k in ("depth", "out") if len(getattr(st, k)) > 1]
            for j in range(max(st.depth)):
                yield from [f"s{i}_b{j}_{k}" for k in CHOICE_KEYS if len(getattr(st, k)) > 1]

    def ops(self) -> set[OpKey]:
        """Every op any arch of the space can contain, at the deployment resolution."""
        res = self.resolution
        keys = {_op(self.stem.replace(out=c), 3, res, "stem") for c in self.stem_out}
        couts, res = set(self.stem_out), -(-res // self.stem.stride)
        for st in self.stages:
            for cin, out, k, t, se, act in itertools.product(couts, st.out, st.kernel, st.expand, st.se, st.act):
                keys.add(_op(make_block(cin, out, st.stride, k, t, se, act), cin, res))
                if max(st.depth) > 1:
                    keys.add(_op(make_block(out, out, 1, k, t, se, act), out, -(-res // st.stride)))
            couts, res = set(st.out), -(-res // st.stride)
        for cin, out in itertools.product(couts, self.head_out if self.head else ()):
            for h in self.head:
                keys.add(_op(h.replace(out=out), cin, res, "head"))
                cin = out
        for cin, hidden in itertools.product(self.head_out if self.head else couts, self.hidden_out):
            keys.add(OpKey("classifier", res, cin, hidden, self.num_classes, 1, 1, 0,
                           self.hidden_act if hidden else "relu", False, False))
        return keys

    @property
    def size(self) -> int:
        """Number of distinct architectures in the space."""
        total = len(self.stem_out) * len(self.head_out) * len(self.hidden_out)
        for st in self.stages:
            per_block = len(st.kernel) * len(st.expand) * len(st.se) * len(st.act)
            total *= len(st.out) * sum(per_block ** d for d in st.depth)
        return total

    def describe(self) -> str:
        return f"space {self.name}: {len(self.stages)} stages, ~10^{math.log10(self.size):.1f} architectures"


def _op(b: BlockConfig, cin: int, res: int, op: str | None = None) -> OpKey:
    return OpKey(op or b.type, res, cin, b.exp, b.out, b.kernel, b.stride, b.se, b.act, b.residual, b.pw_act)


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name: str) -> Space:
    """A space by name (search_spaces/<name>.yaml) or by path to a YAML file."""
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else SPACES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown search space {name!r}: available {', '.join(available_spaces())} "
                        f"(or a path to a .yaml file)")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"search space {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        return _parse(d)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"search space {path}: {e}") from None


def _parse(d) -> Space:
    if not isinstance(d, dict):
        raise ValueError("the file must hold a mapping with keys " + ", ".join(sorted(TOP_KEYS)))
    if unknown := set(d) - TOP_KEYS:
        raise ValueError(f"unknown key(s) {sorted(unknown)}: allowed {sorted(TOP_KEYS)}")
    if missing := {"name", "stem", "block", "stages", "head"} - set(d):
        raise ValueError(f"missing key(s) {sorted(missing)}")
    default = d["block"]
    if not isinstance(default, dict) or (bad := set(default) - set(CHOICE_KEYS)):
        raise ValueError(f"'block' must map {list(CHOICE_KEYS)} to lists of choices")
    stages = []
    if not isinstance(d["stages"], list) or not d["stages"]:
        raise ValueError("'stages' must be a non-empty list")
    for i, s in enumerate(d["stages"]):
        if not isinstance(s, dict) or (bad := set(s) - STAGE_KEYS):
            raise ValueError(f"stages[{i}]: unknown key(s) {sorted(bad) if isinstance(s, dict) else s!r}: "
                             f"allowed {sorted(STAGE_KEYS)}")
        merged = {**default, **s}
        for k in ("depth", "out", *CHOICE_KEYS):
            v = merged.get(k)
            if not isinstance(v, list) or not v:
                raise ValueError(f"stages[{i}].{k} must be a non-empty list of choices, got {v!r}")
        _validate_choices(f"stages[{i}]", merged)
        stages.append(Stage(tuple(merged["depth"]), tuple(merged["out"]), merged["stride"], tuple(merged["kernel"]),
                            tuple(merged["expand"]), tuple(merged["se"]), tuple(merged["act"])))
    hidden = d.get("hidden") or {"out": 0, "act": "hswish"}
    stem_out, head_out, hidden_out = (_widths(k, v) for k, v in (("stem", d["stem"]), ("head", d["head"]),
                                                                  ("hidden", hidden)))
    stem = BlockConfig("conv", d["stem"]["kernel"], d["stem"]["stride"], stem_out[0], d["stem"]["act"])
    head = (BlockConfig("conv", 1, 1, head_out[0], d["head"]["act"]),)
    space = Space(str(d["name"]), int(d.get("resolution", 224)), int(d.get("num_classes", 1000)), stem, tuple(stages),
                  head, hidden_out, hidden["act"], float(d.get("dropout", 0.0)), stem_out, head_out)
    space.extreme(True), space.extreme(False)  # both ends build valid ArchConfigs
    return space


def _widths(where: str, d) -> tuple[int, ...]:
    """A layer's `out`: one channel count or a list of choices (hidden may be 0: no hidden layer)."""
    v = d.get("out") if isinstance(d, dict) else None
    v = v if isinstance(v, list) else [v]
    lo = 0 if where == "hidden" else 1
    if not v or not all(isinstance(c, int) and not isinstance(c, bool) and lo <= c <= 8192 for c in v):
        raise ValueError(f"{where}.out must be a channel count {lo}..8192 or a non-empty list of them, got "
                         f"{d.get('out') if isinstance(d, dict) else d!r}")
    return tuple(v)


def _validate_choices(where: str, s: dict) -> None:
    checks = {"depth": (lambda v: isinstance(v, int) and 1 <= v <= 16, "integers 1..16"),
              "out": (lambda v: isinstance(v, int) and 1 <= v <= 8192, "channel counts 1..8192"),
              "kernel": (lambda v: v in KERNELS and v > 1, "3, 5, 7"),
              "expand": (lambda v: isinstance(v, (int, float)) and v >= 1, "numbers >= 1 (1 = no expansion conv)"),
              "se": (lambda v: isinstance(v, bool), "true/false"),
              "act": (lambda v: v in ACTIVATIONS, "/".join(ACTIVATIONS))}
    for key, (ok, allowed) in checks.items():
        for v in s[key]:
            if not ok(v):
                raise ValueError(f"{where}.{key} has {v!r}: allowed {allowed}")
    if s.get("stride") not in (1, 2):
        raise ValueError(f"{where}.stride={s.get('stride')!r}: allowed 1 or 2")
