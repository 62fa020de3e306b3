"""CLI: `python -m mnas.latency <build|fidelity|export|import> key=value ...` (conf/latency.yaml); Hydra only here.

Each verb turns the config into plain arguments for a function that tests call directly. `export`/`import`
(latency bundles) live in mnas.latency.bundle, imported only when used.
"""
import importlib
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnas.cli import check_composes, register_schema
from mnas.errors import UserError, one_line_errors
from mnas.latency.fidelity import run_fidelity
from mnas.latency.predict import build_table
from mnas.latency.table import load_device, table_path
from mnas.nn.models import BASELINES, get_model, hand_designs
from mnas.nn.ops import arch_ops


@dataclass
class LatencyConfig:
    """The schema of `python -m mnas.latency <verb>` (conf/latency.yaml lists it first; values and comments in the
    YAML)."""
    device: Any = None
    space: Any = None
    verb: Optional[str] = None
    model: Optional[str] = None
    resolution: int = 224
    num_classes: int = 1000
    repeats: int = 100
    warmup: int = 5
    chunk: int = 64
    calib_random: int = 20
    calib_spaces: Optional[Any] = None  # a list of space names
    calib_pruned: int = 12
    arch_repeats: int = 100
    n: int = 100
    baselines: bool = True
    spaces: Optional[Any] = None  # a list of space names
    pruned: int = 12
    seed: int = 0
    table: Optional[str] = None
    out_dir: Optional[str] = None
    path: Optional[str] = None
    results: Optional[str] = None
    phone: Optional[str] = None


register_schema("latency", LatencyConfig)


def _device() -> str:
    """The chosen conf/device/<name>.yaml (its file name, whether or not it has a name: field)."""
    return HydraConfig.get().runtime.choices["device"]


def build(cfg: DictConfig) -> None:
    if cfg.model:
        keys = arch_ops(get_model(cfg.model, resolution=cfg.resolution, num_classes=cfg.num_classes))
        res, classes, extra = cfg.resolution, cfg.num_classes, []
    else:
        from mnas.nn.space import load_space
        space = load_space(cfg.space.name)
        keys = sorted(space.ops(), key=lambda k: k.astuple())
        res, classes = space.resolution, space.num_classes
        extra = [a for *_, a in hand_designs(res, classes)] + [a for _, _, a in pruned_archs(
            cfg.calib_pruned, cfg.seed, "calibrate-pruned", res, classes)]
        for name in list(cfg.calib_spaces or [space.name]):  # their ops are measured as well, where missing
            other = load_space(name)
            if (other.resolution, other.num_classes) != (res, classes):
                print(f"calibration: space {name} left out ({other.resolution} px, {other.num_classes} classes; the "
                      f"table is for {res} px, {classes} classes)")
                continue
            rng = random.Random(f"calibrate{cfg.seed}" + ("" if name == space.name else name))
            extra += [other.random_arch(rng) for _ in range(cfg.calib_random)]
    archs = list(dict.fromkeys([f(resolution=res, num_classes=classes) for f in BASELINES.values()] + extra))
    path = cfg.table or table_path(load_device(_device()))
    df = build_table(_device(), keys, archs, path, repeats=cfg.repeats, warmup=cfg.warmup, chunk=cfg.chunk,
                     arch_repeats=cfg.arch_repeats, resolution=res, num_classes=classes)
    c, drift = df.attrs["meta"]["calibration"], [d["factor"] for d in df.attrs["meta"].get("drift", [])]
    form = (" + ".join(f"{v:.3f}" + ("" if t == "1" else f" * {t}") for t, v in c["coef"].items()) if c.get("coef")
            else f"{c['a']:.3f} + {c['b']:.3f} * sum(ops)")
    print(f"{len(df)} ops in {path}; calibration: measured = {form} over {len(c['points'])} networks"
          + (f"; machine speed over the build (anchor ops, table units / then): {min(drift):.3f}-{max(drift):.3f} "
             f"over {len(drift)} chunks" if drift else ""))


PRUNE_STARTS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")


def pruned_archs(count: int, seed: int, label: str = "pruned", resolution: int = 224,
                 num_classes: int = 1000) -> list[tuple[str, str, object]]:
    """`count` pruned hand designs (family 'pruned'): V1/V2/V3-Small/V3-Large 1.0 in turn, each after 3-12
    NetAdapt-style random cuts (mnas.nn.units.random_pruned): the shapes a pruning run leaves. `label` seeds the
    draw (the build's calibration draws other networks than fidelity's)."""
    from mnas.nn.units import random_pruned
    rng, out = random.Random(f"{label}{seed}"), []
    for i in range(count):
        start = PRUNE_STARTS[i % len(PRUNE_STARTS)]
        cuts = rng.randint(3, 12)
        net = random_pruned(get_model(start, 1.0, resolution, num_classes), rng, cuts)
        out.append(("pruned", f"{start} 1.0, {cuts} random cuts", net))
    return out


def fidelity(cfg: DictConfig) -> None:
    spaces = list(cfg.spaces) if cfg.get("spaces") else cfg.space.name
    summary, out = run_fidelity(_device(), cfg.n, spaces, cfg.seed, cfg.arch_repeats, cfg.out_dir,
                                baselines=cfg.baselines, extra=pruned_archs(cfg.get("pruned") or 0, cfg.seed))
    OmegaConf.save(cfg, Path(out) / "config.yaml")
    print((Path(out) / "summary.txt").read_text().rstrip() + f"\n-> {out}")


def _bundle(verb: str):
    """export/import: mnas.latency.bundle.<verb>_cmd(config as a plain dict, device and space by name)."""
    return lambda cfg: getattr(importlib.import_module("mnas.latency.bundle"), f"{verb}_cmd")(
        {**OmegaConf.to_container(cfg, resolve=True), "space": cfg.space.name, "device": _device()})


VERBS = {"build": build, "fidelity": fidelity, "export": _bundle("export"), "import": _bundle("import")}


@hydra.main(config_path="../../conf", config_name="latency", version_base=None)
@one_line_errors
def _run(cfg: DictConfig) -> None:
    if cfg.verb not in VERBS:
        raise UserError(f"unknown verb {cfg.verb!r}: use python -m mnas.latency <{'|'.join(VERBS)}> key=value ...")
    VERBS[cfg.verb](cfg)


@one_line_errors
def main() -> None:
    args = sys.argv[1:]
    if not args or "=" in args[0] or args[0].startswith("-"):
        raise UserError(f"usage: python -m mnas.latency <{'|'.join(VERBS)}> key=value ...  (see conf/latency.yaml)")
    for key, _, value in (a.partition("=") for a in args[1:]):  # unknown names: one line listing the available
        if key == "device":
            load_device(value)
        elif key == "space":
            from mnas.nn.space import load_space
            load_space(value)
    sys.argv[1:] = [f"verb={args[0]}", *args[1:]]
    check_composes("latency", sys.argv[1:])
    _run()


if __name__ == "__main__":
    main()
