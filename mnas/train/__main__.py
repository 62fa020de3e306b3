"""`python -m mnas.train model=mobilenet_v2 width=0.5` or `arch=<run | best.json | arch string> data=imagefolder
data.root=<folder> resolution=224`: config (conf/train.yaml) -> run_train; writes runs/train/<YYYYmmdd-HHMMSS>/
{config.yaml, metrics.csv, arch.json, checkpoint.pt}."""
from dataclasses import dataclass
from typing import Any, Optional

from mnas.cli import register_schema
from mnas.train.run import run_train


@dataclass
class TrainConfig:
    """The schema of `python -m mnas.train` (conf/train.yaml lists it first; values and their comments are in the
    YAML); the keys are run_train's arguments, and the data group's keys become its data_* arguments."""
    data: Any = None
    model: str = "mobilenet_v2"
    width: float = 1.0
    arch: Optional[str] = None
    proxy: Optional[bool] = None
    resolution: Optional[int] = None
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    augment: Optional[str] = None
    ema: Optional[float] = None
    accelerator: str = "auto"
    threads: Optional[int] = None
    seed: int = 0
    max_stride: int = 8
    max_steps: Optional[int] = None
    checkpoint_every: Optional[int] = 200
    resume: Optional[str] = None
    out_dir: Optional[str] = None


register_schema("train", TrainConfig)


def main(cfg):
    """Hydra config (conf/train.yaml + conf/data/<name>.yaml) -> plain arguments -> run_train; resume=<run dir>
    continues a killed training with the settings saved in its config.yaml."""
    from mnas.cli import resumed_config, to_plain
    c = to_plain(cfg)
    if c.get("resume"):
        saved = resumed_config(c, "train")  # run_train's own arguments, as it saved them
        return run_train(**{**saved, "out_dir": saved["resume"], "resume": True})
    c.pop("resume", None)
    d = c.pop("data")
    return run_train(data=d["name"], data_root=d.get("root"), val_size=d.get("val_size", 0.1),
                     train_subset=d.get("train_subset"), proxy_resolution=d.get("proxy_resolution", 32),
                     image_size=d.get("image_size"), data_cache=d.get("cache_dir"), **c)


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("train", main)
