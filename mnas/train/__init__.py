"""Training: the one trainer (mnas.train.trainer) and the training run of `python -m mnas.train`.

    trainer   fit, evaluate, BatchNorm re-estimation, learning-rate schedule, training state and checkpoints
    run       run_train: a baseline or an arch trained on a dataset into a run directory (resumable)
    __main__  the command: config (conf/train.yaml) -> run_train
"""
from mnas.train.run import run_train
from mnas.train.trainer import (
    COLUMNS,
    OPTIMIZERS,
    check_args,
    device_of,
    eval_crop,
    evaluate,
    fit,
    load_checkpoint,
    load_state,
    lr_at,
    pick_device,
    recalibrate_bn,
    reestimate_bn,
    save_checkpoint,
    save_state,
    train_from_scratch,
)

__all__ = ["COLUMNS", "OPTIMIZERS", "check_args", "device_of", "eval_crop", "evaluate", "fit", "load_checkpoint",
           "load_state", "lr_at", "pick_device", "recalibrate_bn", "reestimate_bn", "run_train", "save_checkpoint",
           "save_state", "train_from_scratch"]
