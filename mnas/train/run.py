"""A training run: `run_train` trains a baseline or an arch (its proxy variant, or the deployment network to ship)
on a dataset and writes a run directory that `mnas.export run=` and `mnas.load` read."""
import csv
import os

import torch
import yaml

from mnas import data as datasets
from mnas.errors import UserError
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.train.trainer import (
    COLUMNS,
    check_args,
    eval_crop,
    evaluate,
    fit,
    load_checkpoint,
    load_state,
    pick_device,
    save_checkpoint,
)


def run_train(model="mobilenet_v2", width=1.0, resolution=None, proxy_resolution=32, data="fashion_mnist",
              data_root=None, val_size=0.1, train_subset=None, epochs=1, batch_size=128, lr=0.05, optimizer="sgd",
              threads=None, seed=0, max_steps=None, out_dir=None, progress=True, max_stride=8, arch=None, proxy=None,
              augment=None, ema=None, weight_decay=4e-5, label_smoothing=0.1, image_size=None, data_cache=None,
              accelerator="auto", checkpoint_every=200, resume=False):
    """Train a network on dataset `data` and write config.yaml, metrics.csv, checkpoint.pt and arch.json (the
    deployment arch with the data's classes) to out_dir (default runs/train/<timestamp>/). Returns the metrics.

    The network is baseline `model` x `width`, or `arch` (mnas.rundir.arch_of: a search, prune or train run, a
    best.json/arch.json, an arch string). `resolution` is its deployment input size (None: the arch's own; 224 for
    a baseline). proxy=True trains its proxy variant (mnas.nn.proxy: earliest strides set to 1 until the total
    stride is <= max_stride) at `proxy_resolution`, as search and compare score archs; proxy=False trains the
    deployment network itself at `resolution`, the network to ship; None: False for `arch`, True for a baseline.
    augment (None: "crop" for the proxy, "rrc" for the deployment network), ema: see fit; `accelerator`: fit's
    device (auto: a GPU when PyTorch sees one; the config key is not `device`, which names a latency device).
    An imagefolder's images are stored at `image_size` (None: 64 for the proxy, 8/7 of the resolution otherwise),
    in memory, or with `data_cache` (a folder) decoded once into a file there and read batch by batch.

    The training state is saved to out_dir/state.pt every `checkpoint_every` steps and each epoch (and removed
    once checkpoint.pt is written); resume=True continues a killed run in out_dir from it (its config.yaml's
    settings), ending as the uninterrupted run would."""
    from mnas.rundir import arch_of
    config = {k: v for k, v in locals().items() if k not in ("progress", "resume", "arch_of")}
    if arch is not None:
        deploy, source = arch_of(arch)
        name = f"arch from {source}"
    else:
        deploy, name = get_model(model, width, resolution or 224), f"{model} x{width}"
    resolution = resolution or deploy.resolution
    proxy = arch is None if proxy is None else proxy
    augment = ("crop" if proxy else "rrc") if augment is None else augment
    if not isinstance(proxy, bool):
        raise UserError(f"proxy={proxy!r} is invalid: use true (the proxy variant), false (the deployment network) "
                        "or null")
    try:
        deploy = deploy.replace(resolution=resolution)
    except ValueError as e:
        raise UserError(f"resolution={resolution!r}: {e}") from None
    check_args(epochs, batch_size, lr, optimizer, max_steps)
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise UserError(f"checkpoint_every={checkpoint_every!r} is invalid: use a number of steps >= 1 or null")
    datasets.batches(datasets.Split(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), torch.zeros(0)), 1,
                     augment=augment)  # a bad augment fails now, before loading data or making the run dir
    if ema is not None and not (isinstance(ema, float) and 0 < ema < 1):
        raise UserError(f"ema={ema!r} is invalid: use null or a decay in (0, 1), e.g. 0.999")
    pick_device(accelerator, "accelerator")
    if resume and out_dir and not os.path.exists(os.path.join(out_dir, "state.pt")) and \
            os.path.exists(os.path.join(out_dir, "checkpoint.pt")):
        print(f"{out_dir} is finished (checkpoint.pt): nothing to resume")
        return dict(load_checkpoint(os.path.join(out_dir, "checkpoint.pt")).metrics, out_dir=str(out_dir))
    train_res = proxy_resolution if proxy else resolution
    options = {} if data != "imagefolder" else {"image_size": image_size or (64 if proxy else -(-resolution * 8 // 7)),
                                                "cache_dir": data_cache}
    ds = datasets.load(data, root=data_root, val_size=val_size, seed=seed, train_subset=train_subset, **options)
    deploy = deploy.replace(num_classes=ds.num_classes)
    net_arch = proxy_arch(deploy, ds.num_classes, max_stride) if proxy else deploy
    if out_dir is None:
        from mnas.cli import new_run_dir  # runs/train/<YYYYmmdd-HHMMSS>, never an existing folder
        out_dir = new_run_dir("train")
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, "state.pt")
    if not resume:
        if os.path.exists(state_path):
            raise UserError(f"{out_dir} holds a started training (state.pt): continue it with resume={out_dir}, "
                            "or pass another out_dir")
        with open(os.path.join(out_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(dict(config, out_dir=str(out_dir)), f, sort_keys=False)
    with open(os.path.join(out_dir, "arch.json"), "w") as f:
        f.write(deploy.to_json(indent=2))
    what = (f"the proxy variant ({train_res} px, total stride <= {max_stride})" if proxy else
            f"the deployment network ({train_res} px)")
    print(f"training {name}: {what} on {data} ({len(ds.train)} train images, {ds.num_classes} classes), "
          f"augment {augment}{f', ema {ema}' if ema else ''}, on {pick_device(accelerator)}; run dir {out_dir}"
          f"{' (resuming)' if resume and os.path.exists(state_path) else ''}", flush=True)
    metrics_path = os.path.join(out_dir, "metrics.csv")
    done = 0
    if resume and os.path.exists(metrics_path) and os.path.exists(state_path):
        done = len(load_state(state_path)["rows"])  # epochs already logged there (later rows are rewritten)
    keep = []
    if done and os.path.exists(metrics_path):
        with open(metrics_path, newline="") as f:
            keep = list(csv.DictReader(f))[:done]
    with open(metrics_path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(keep)
        f.flush()
        net = build(net_arch, seed=seed)
        metrics = fit(net, ds, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                      weight_decay=weight_decay, label_smoothing=label_smoothing, resolution=train_res,
                      augment=augment, threads=threads, max_steps=max_steps, progress=progress, device=accelerator,
                      ema=ema, state_path=state_path, state_every=checkpoint_every,
                      log=lambda row: (writer.writerow(row), f.flush()))
    crop = eval_crop(augment)
    metrics["test_acc"], metrics["test_loss"] = evaluate(net, ds.test, train_res, crop=crop)
    save_checkpoint(os.path.join(out_dir, "checkpoint.pt"), net,
                    dict(metrics, trained_as="proxy" if proxy else "deployment", data=data, classes=ds.classes,
                         train_resolution=train_res, epochs=metrics["epochs"],
                         preprocess=dict(image_size=int(ds.test.images.shape[-1]), crop=crop,
                                         resolution=train_res, mean=list(ds.train.mean), std=list(ds.train.std))))
    os.remove(state_path)  # finished: checkpoint.pt is the result; the training state is no longer needed
    print(f"{name} on {data} ({len(ds.train)} train images, {train_res} px): val_acc {metrics['val_acc']:.4f}, "
          f"test_acc {metrics['test_acc']:.4f}, {metrics['img_per_s']:.0f} img/s, {metrics['seconds']:.0f} s "
          f"-> {out_dir}")
    return dict(metrics, out_dir=str(out_dir))
