"""`python -m mnas.prune model=mobilenet_v2 target=0.7x`: config (conf/prune.yaml) -> run_prune."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from mnas.cli import register_schema
from mnas.errors import UserError
from mnas.prune.oneshot import METHODS, OneShot
from mnas.prune.run import RESUME_OVERRIDES, check_seeds, check_target, resolve_input, run_prune
from mnas.prune.settings import Settings


@dataclass
class PruneConfig:
    """The schema of `python -m mnas.prune` (conf/prune.yaml lists it first; values and comments in the YAML).
    The schedule keys are set by the chosen conf/scale/<scale>.yaml (a config group); the rest are Settings'
    fields."""
    device: Any = None
    data: Any = None
    model: str = "mobilenet_v2"
    width: float = 1.0
    resolution: int = 224
    search: Optional[str] = None
    checkpoint: Optional[str] = None
    init: Optional[str] = None
    target: str = "0.7x"
    select: str = "ratio"
    compare_width: bool = False
    compare_seeds: int = 1
    scale: str = "full"
    init_steps: Optional[int] = None
    finetune_steps: Optional[int] = None
    chosen_steps: Optional[int] = None
    final_steps: Optional[int] = None
    final_lr: Optional[float] = None
    eval_images: Optional[int] = None
    delta: Optional[float] = None
    delta_decay: Optional[float] = None
    batch_size: Optional[int] = None
    lr: float = 0.05
    finetune_lr: float = 0.01
    min_channels: int = 8
    importance_p: int = 1
    max_iterations: int = 100
    max_stride: int = 8
    measure_repeats: int = 30
    threads: Optional[int] = None
    jobs: int = 1
    method: str = "oneshot"
    slim_epochs: int = 1
    slim_min_width: float = 0.25
    slim_n_random: int = 2
    slim_lr: float = 0.1
    slim_classifier_lr: str = "auto"
    final_init: str = "scratch"
    seed: int = 0
    resume: Optional[str] = None
    out_dir: Optional[str] = None


register_schema("prune", PruneConfig)


def main(cfg) -> dict:
    """Hydra config (conf/prune.yaml) -> plain arguments -> run_prune."""
    from mnas.cli import open_run_dir, preset_label, resumed_config, to_plain
    from mnas.data import config_args, load
    from mnas.latency import Device

    c = to_plain(cfg)
    if c.get("resume"):
        c = resumed_config(c, "prune", keep=RESUME_OVERRIDES)  # the saved settings win, except these
    preset_label(c, "scale")  # an unknown scale in a resumed run's config is one line
    device = c["device"]["name"]
    latency_fn = Device(device)
    measure_fn = latency_fn.measure_fn(c["measure_repeats"])
    s = Settings.from_config(c, proxy_resolution=c["data"].get("proxy_resolution", 32))
    deploy, checkpoint, compare = resolve_input(c)
    s.check()
    check_seeds(c.get("compare_seeds", 1))
    method = c.get("method", "surgery")  # runs saved before the method key pruned by surgery
    if method not in METHODS:
        raise UserError(f"method={method!r} is invalid: use one of {', '.join(METHODS)}")
    oneshot = OneShot(c["slim_epochs"], c["slim_min_width"], c["slim_n_random"], c["final_init"],
                      c.get("slim_lr", 0.1), c.get("slim_classifier_lr", "same")) if method == "oneshot" else None
    # runs saved before slim_lr / slim_classifier_lr: 0.1 / same
    check_target(deploy, c["target"], latency_fn, s, oneshot)  # a bad target fails before a run folder is made
    d = c["data"]
    data = load(**config_args(d, c["seed"]))
    out_dir = open_run_dir(c, "prune", device)
    source = checkpoint if checkpoint and c["init"] != "scratch" else f"from scratch, {c['init_steps']} steps"
    source = f"a slimmable network trained {c['slim_epochs']} epoch(s)" if oneshot else source
    source = f"resuming {out_dir}" if c.get("resume") else source
    print(f"pruning {deploy.to_string()[:60]}... for {device} to {c['target']}; proxy {d['name']} "
          f"{s.proxy_resolution}px; start weights: {source}; run dir {out_dir}")
    return run_prune(deploy, data, c["target"], latency_fn, out_dir, s, measure_fn, checkpoint, c["init"],
                     c["init_steps"], c["final_steps"], c["lr"], c["max_stride"], compare, device,
                     compare_seeds=c.get("compare_seeds", 1), final_lr=c.get("final_lr"), oneshot=oneshot,
                     label=f"search find {c['search']}" if c.get("search") else f"{c['model']} x{c['width']:g}")


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("prune", main)
