"""`python -m mnas.train model=mobilenet_v2 width=0.5` or `arch=<run | best.json | arch string> data=imagefolder
data.root=<folder> resolution=224`: config (conf/train.yaml) -> run_train; writes runs/train/<YYYYmmdd-HHMMSS>/
{config.yaml, metrics.csv, arch.json, checkpoint.pt}."""
from mnas.train.run import run_train


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
