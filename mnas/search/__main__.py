"""`python -m mnas.search device=pixel budget=15ms`: config (conf/search.yaml) -> run_search -> pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from mnas.cli import register_schema
from mnas.search.study import SearchSettings, check_budget, run_search


@dataclass
class PipelineConfig:
    """conf/search.yaml `pipeline:` (mnas.pipeline.PipelineSettings takes these keys as they are)."""
    enabled: bool = True
    finetune_steps: int = 300
    lr: float = 0.02
    prune: Optional[str] = "0.9x"
    prune_scale: str = "quick"
    prune_method: str = "auto"
    export: Optional[Any] = "json,string,pt,onnx"  # export=onnx,pt arrives as a list


@dataclass
class RerankConfig:
    """conf/search.yaml `rerank:` (mnas.search.rerank.RerankSettings takes these keys as they are)."""
    k: int = 0
    seeds: int = 2
    first_seed: int = 100
    max_steps: int = 600
    batch_size: int = 64
    lr: float = 0.1
    settle_steps: int = 1200
    settle_seeds: int = 4
    confirm: int = 2
    jobs: int = 1
    cache_dir: str = "runs/compare/cache"


@dataclass
class SearchConfig:
    """The schema of `python -m mnas.search` (conf/search.yaml lists it first: Hydra types and checks every key;
    the values and their comments live in the YAML). The groups are the YAML files they name."""
    device: Any = None
    space: Any = None
    sampler: Any = None
    data: Any = None
    estimator: Any = None
    budget: str = "15ms"
    objective: str = "constraint"
    w: float = -0.07
    tie_z: float = 2.0
    ship_margin: float = 2.6
    band: float = 0.0
    derived: bool = True
    measure_repeats: int = 30
    n_trials: int = 30
    timeout: Optional[float] = None
    seed: int = 0
    storage: Optional[str] = None
    resume: Optional[str] = None
    out_dir: Optional[str] = None
    rerank: RerankConfig = field(default_factory=RerankConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


register_schema("search", SearchConfig)


def main(cfg) -> dict:
    """Hydra config -> plain arguments -> run_search (see conf/search.yaml)."""
    from mnas.cli import open_run_dir, parse_ms, resumed_config, to_plain
    from mnas.data import config_args, load
    from mnas.latency import Device
    from mnas.nn.space import load_space
    from mnas.search.estimators import make_estimator
    from mnas.search.rerank import RerankSettings, rerank

    c = to_plain(cfg)
    budget = parse_ms(c["budget"])
    device = c["device"]["name"]
    if c.get("resume"):
        c = resumed_config(c, "search", keep=("n_trials", "timeout", "rerank"))
        budget, device = parse_ms(c["budget"]), c["device"]["name"]
    space = load_space(c["space"]["name"])
    settings = SearchSettings(budget_ms=budget, sampler=c["sampler"]["name"], objective=c["objective"], w=c["w"],
                              n_trials=c["n_trials"], timeout=c["timeout"], seed=c["seed"],
                              n_startup_trials=c["sampler"].get("n_startup_trials", 10),
                              population_size=c["sampler"].get("population_size", 20),
                              tie_z=c.get("tie_z", 2.0), ship_margin=c.get("ship_margin", 0.0),
                              band=c.get("band", 0.0), derived=c.get("derived", True),
                              measure_repeats=c.get("measure_repeats", 30))
    latency_fn = Device(device)
    check_budget(space, latency_fn, settings)  # a bad device, table or budget fails before anything is written
    d, e = c["data"], dict(c["estimator"])
    second = RerankSettings(**(c.get("rerank") or {}))  # bad settings fail before the search
    pipe, pipeline = dict(c.get("pipeline") or {}), None
    if pipe.pop("enabled", False):
        from mnas.pipeline import PipelineSettings
        pipeline = PipelineSettings(resolution=d.get("proxy_resolution", 32), seed=c["seed"], **pipe)
        pipeline.check(c["estimator"]["name"])  # bad pipeline settings fail before the search, not after it
    data = load(**config_args(d, c["seed"]))
    estimator = make_estimator(e.pop("name"), data, resolution=d.get("proxy_resolution", 32), seed=c["seed"], **e)
    out_dir = open_run_dir(c, "search", device)
    print(f"{space.describe()}; device {device}; budget {budget:g} ms; estimator {c['estimator']['name']} on "
          f"{d['name']} ({d.get('proxy_resolution', 32)}px proxy); run dir {out_dir}")
    best = run_search(space, latency_fn, estimator, settings, out_dir, storage=c.get("storage"),
                      resume=bool(c.get("resume")), meta={"device": device, "space": space.name,
                                                          "data": d["name"], "estimator": c["estimator"]["name"]},
                      correct_fn=estimator.correct, score_fn=estimator.score_slimming)
    if second.k:
        best = rerank(out_dir, space, d, second, max_stride=e.get("max_stride", 8))
    if pipeline is not None:
        from mnas.pipeline import run_pipeline
        run_pipeline(out_dir, estimator, data, latency_fn, device, pipeline)
    return best


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("search", main)
