"""`python -m mnas.supernet space=v3_small data=fashion_mnist epochs=3`: train (or resume) the cached supernet,
then score its largest and smallest sub-networks and say how a search reuses it. Runs under torchrun too."""
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from mnas.cli import register_schema
from mnas.data import config_args, load
from mnas.nn.space import load_space
from mnas.search.estimators import SupernetEstimator
from mnas.supernet.evaluate import FINETUNE_KEYS, settings_from
from mnas.supernet.train import cache_dir, train_supernet

TOP_LEVEL = ("epochs", "batch_size", "lr", "n_random", "max_stride", "threads", "cache_dir")


def run(space, data, resolution=32, seed=0, max_steps=None, threads=None, cache_dir_root="runs/supernets",
        checkpoint_every=100, val_images=None, calib_images=1024, progress=True, **schedule) -> dict:
    """Train the supernet of (space, data, settings) up to max_steps (None = to the end); when complete, print
    the accuracy and cost of scoring its largest and smallest sub-networks. Returns the checkpoint info."""
    if threads:
        torch.set_num_threads(threads)
    finetune = {k: schedule.pop(k) for k in FINETUNE_KEYS if k in schedule}  # scoring options, not training ones
    settings = settings_from(resolution, seed, **schedule)
    out = cache_dir(space, data, settings, cache_dir_root)
    _, info = train_supernet(space, data, settings, out, max_steps, checkpoint_every, progress)
    info["rank"] = dist.get_rank() if dist.is_initialized() else 0
    if dist.is_initialized():
        dist.destroy_process_group()
    if info["rank"] != 0:
        return info
    if not info["complete"]:
        print(f"stopped at step {info['step']}/{info['total']}: run the same command again to resume ({out})")
        return info
    est = SupernetEstimator(data, space, resolution, seed, val_images=val_images, calib_images=calib_images,
                            cache_dir=cache_dir_root, progress=progress, **finetune, **schedule)
    images = sum(len(x) for x in est.calib) + sum(len(y) for _, y in est.val)
    for name in ("largest", "smallest"):
        t0 = time.perf_counter()
        acc = est(space.extreme(largest=name == "largest"))
        s = time.perf_counter() - t0
        print(f"{name} sub-network: val_acc {acc:.4f} ({s:.1f} s: BatchNorm re-estimation + "
              f"{sum(len(y) for _, y in est.val)} val images, {images / s:.0f} img/s)")
        info[f"{name}_acc"] = acc
    print(f"supernet ready in {out}")
    return info


@dataclass
class SupernetConfig:
    """The schema of `python -m mnas.supernet` (conf/supernet.yaml lists it first; the schedule's defaults are
    conf/estimator/supernet.yaml's, which the top-level keys interpolate)."""
    space: Any = None
    data: Any = None
    estimator: Any = None
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    n_random: int = 3
    max_stride: int = 8
    seed: int = 0
    max_steps: Optional[int] = None
    threads: Optional[int] = None
    cache_dir: str = "runs/supernets"


register_schema("supernet", SupernetConfig)


def main(cfg):
    """Hydra config (conf/supernet.yaml) -> plain arguments -> run."""
    from mnas.cli import to_plain
    c = to_plain(cfg)
    e = {**c["estimator"], **{k: c[k] for k in TOP_LEVEL}}
    for k in ("name", "space"):
        e.pop(k)
    d = c["data"]
    data = load(**config_args(d, c["seed"]))
    info = run(load_space(c["space"]["name"]), data, d.get("proxy_resolution", 32), c["seed"], c["max_steps"],
               cache_dir_root=e.pop("cache_dir"), **e)
    changed = [f"estimator.{k}={c[k]}" for k in TOP_LEVEL if c[k] != c["estimator"][k] and k != "threads"]
    space = c["space"]["name"]
    space = f"space.name={space}" if space.endswith((".yaml", ".yml")) else f"space={space}"
    if info["complete"] and info["rank"] == 0:
        print(f"a search with the same data options reuses it: python -m mnas.search estimator=supernet {space} "
              f"data={d['name']} seed={c['seed']} " + " ".join(changed))
    return info


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("supernet", main)
