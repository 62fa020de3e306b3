"""`python -m mnas.compare device=pixel budget=15ms run=<search run>`: config (conf/compare.yaml) -> run_compare."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import yaml

from mnas.cli import parse_ms, preset_label, register_schema, to_plain
from mnas.compare.report import FAMILIES
from mnas.compare.run import Recipe, read_search_run, run_compare
from mnas.errors import UserError
from mnas.latency import Device


@dataclass
class CompareConfig:
    """The schema of `python -m mnas.compare` (conf/compare.yaml lists it first; values and comments in the YAML).
    The recipe keys are set by the chosen conf/recipe/<recipe>.yaml (a config group)."""
    device: Any = None
    data: Any = None
    run: Optional[str] = None
    pruned: str = "auto"
    budget: Optional[str] = None
    resolution: int = 224
    recipe: str = "full"
    seeds: Optional[int] = None
    families: Optional[Any] = None
    variants: Optional[Any] = None
    filled: bool = True
    epochs: Optional[int] = None
    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    train_subset: Optional[int] = None
    val_size: Optional[Any] = None  # a count of images or a fraction
    test_images: Optional[int] = None
    bn_recalibration: Optional[bool] = None
    optimizer: str = "sgd"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    max_stride: int = 8
    measure_repeats: int = 30
    threads: Optional[int] = None
    jobs: int = 1
    cache_dir: str = "runs/compare/cache"
    out_dir: Optional[str] = None


register_schema("compare", CompareConfig)


def with_filled(variants: dict, budget_ms: float | None, latency_fn, resolution: int,
                measure=None) -> tuple[dict, dict]:
    """variants plus, for each width family with a listed variant within the budget (predicted latency), the width
    multiplier that fills the budget (mnas.search.ship.filled_width; on a device measured here, `measure(archs)
    -> [ms]`, stepped down until it measures within: measured_fill), the rival a user makes by hand; and
    {family: that width} for the ones added."""
    from mnas.compare.run import variant_rows
    from mnas.search.ship import WIDTH_FAMILIES, filled_width, measured_fill
    if budget_ms is None:
        return variants, {}
    out, added, done = {f: list(v or []) for f, v in variants.items()}, {}, set()
    for r in variant_rows({f: v for f, v in out.items() if f in WIDTH_FAMILIES}, resolution):
        f = r["family"]
        if f in done or latency_fn(r["arch"]) > budget_ms:
            continue
        done.add(f)  # one listed variant within the budget is enough: the filled width is the family's, not its
        w = filled_width(f, latency_fn, budget_ms, resolution, r["arch"].num_classes)
        if w is not None and measure is not None:
            w = measured_fill(f, w, budget_ms, measure, resolution, r["arch"].num_classes)[0]
        if w is not None and w not in out[f]:
            out[f].append(w)
            added[f] = w
    return out, added


def main(cfg) -> dict:
    """Hydra config (conf/compare.yaml) -> plain arguments -> run_compare; writes config.yaml next to the report."""
    c = to_plain(cfg)
    recipe_name = preset_label(c, "recipe", unnamed=("seeds", "variants"))  # the report lists both
    device = c["device"]["name"]
    dev = Device(device)  # an unknown device fails now
    budget = None if c["budget"] is None else parse_ms(c["budget"])
    best, search_cfg = read_search_run(c["run"])[1:] if c["run"] else ({}, {})
    budget = best.get("budget_ms") if budget is None else budget
    d = c.get("data") or search_cfg.get("data")
    if not d:
        raise UserError("no proxy task: pass data=<name> (e.g. data=fashion_mnist), or run=<search run dir> "
                        "whose config.yaml names one")
    families = c["families"] or list(c["variants"])
    if unknown := set(families) - set(FAMILIES):
        raise UserError(f"families={sorted(unknown)} are unknown: use {', '.join(FAMILIES)}")
    from_data = dict(data=d["name"], data_root=d.get("root"), proxy_resolution=d.get("proxy_resolution", 32),
                     **{k: d.get(k) if c[k] is None else c[k] for k in ("val_size", "train_subset")})  # else data's
    recipe = Recipe(**from_data, **{f.name: c[f.name] for f in fields(Recipe) if f.name not in from_data})
    measure_fn, measure = dev.measure_fn(c["measure_repeats"], progress=True), dev.how_measured(c["measure_repeats"])
    variants = {f: c["variants"].get(f) for f in families}
    if c["filled"]:
        variants, added = with_filled(variants, budget, dev, c["resolution"], dev.measure_fn(c["measure_repeats"]))
        if added:
            print("also at the width that fills the budget: " + ", ".join(
                f"{FAMILIES[f][1]} {w:g}" for f, w in added.items()) + " (filled=false: the listed variants only)")
    result = run_compare(device, recipe, variants, c["seeds"], budget, c["run"],
                         c["pruned"], c["resolution"], c["out_dir"], c["cache_dir"], c["threads"], measure_fn, measure,
                         recipe_name, jobs=c["jobs"], speed_fn=dev.speed)
    (result["out_dir"] / "config.yaml").write_text(yaml.safe_dump(dict(c, data=d), sort_keys=False))
    return result


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("compare", main)
