"""The one trainer: fit (SGD/RMSprop, cosine, label smoothing, EMA, resumable state), evaluate, BatchNorm
re-estimation, training state and checkpoint files. Every stage that trains a network (search estimators,
supernet, prune, compare, the benchmarks, `python -m mnas.train`) trains it here."""
import json
import math
import os
import pickle
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from mnas import data as datasets
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch

OPTIMIZERS = ("sgd", "rmsprop")
COLUMNS = ["epoch", "train_loss", "val_acc", "val_loss", "lr", "img_per_s", "seconds"]


def pick_device(device=None, key: str = "device") -> torch.device:
    """The torch device to train on: `device` ("cpu", "cuda", "cuda:1", a torch.device) or, when None or "auto",
    the GPU of this process (LOCAL_RANK under torchrun) when CUDA is available, else the CPU. A GPU asked for on a
    machine without one is a UserError."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"{key}={device!r} is invalid: use auto, cpu or cuda[:<index>]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}={device!r} asked for a GPU, but PyTorch sees none (torch {torch.__version__}): "
                        f"use {key}=cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"{key}={device!r} is not supported: use auto, cpu or cuda[:<index>]")
    return dev


def device_of(model) -> torch.device:
    """The device of the first parameter of `model`."""
    return next(model.parameters()).device


def _memory_format(model, channels_last: bool):
    """Put `model` in channels_last (or contiguous) memory format in place and return that format: on CPU,
    channels_last runs these depthwise/pointwise networks ~1.7x faster (measured: V2-1.0 proxy, 1 thread)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    return fmt


def eval_crop(augment) -> float:
    """The central crop evaluation uses after training with `augment`: 0.875 after random-resized crops (the
    deployment recipe: train on crops, test on the centre), else the whole image."""
    return 0.875 if augment == "rrc" else 1.0


def evaluate(model, split, resolution=32, batch_size=256, channels_last=True, crop=1.0):
    """(top-1 accuracy, mean cross-entropy) of `model` on `split`, images resized to `resolution` (after a central
    crop of `crop` of each side; see mnas.data.batches), on the model's device. The model is left in the memory
    format it ran in (channels_last by default, as `fit` trains)."""
    if len(split) == 0:
        raise UserError("cannot evaluate on an empty split: use a larger val_size")
    was_training = model.training
    model.eval()
    fmt, dev = _memory_format(model, channels_last), device_of(model)
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for x, y in datasets.batches(split, batch_size, resolution, channels=model.arch.in_chans, crop=crop):
            x, y = x.to(dev, memory_format=fmt), y.to(dev)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / len(split), loss / len(split)


def recalibrate_bn(model, split, resolution=32, images=1024, batch_size=128, seed=0, channels_last=True):
    """Re-estimate every BatchNorm's running mean/var with the current weights (forward passes, no training).

    After a short training the running averages still remember the early weights, and eval-mode accuracy is
    near chance even when the network has learned (OFA recalibrates its sub-networks the same way)."""
    was_training = model.training
    fmt, dev = _memory_format(model, channels_last), device_of(model)
    feed = datasets.batches(split, batch_size, resolution, shuffle=True, seed=seed, channels=model.arch.in_chans)
    xs = (x.to(dev, memory_format=fmt) for _, (x, _) in zip(range(math.ceil(images / batch_size)), feed))
    reestimate_bn(model, xs)
    model.train(was_training)


@torch.no_grad()
def reestimate_bn(model: nn.Module, xs) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them as a plain (cumulative) average over the
    input batches xs, in train mode; returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for x in xs:
        model(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return model.eval()


def lr_at(step, total, peak, warmup):
    """Linear warm-up to `peak` over `warmup` steps, then cosine decay towards 0 at step `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def check_args(epochs, batch_size, lr, optimizer, max_steps):
    if optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer={optimizer!r} is invalid: use one of {', '.join(OPTIMIZERS)}")
    if epochs is None and max_steps is None:
        raise UserError("epochs=null needs max_steps: give the number of epochs or of steps")
    if (epochs is not None and epochs < 1) or batch_size < 1 or not lr > 0 or (max_steps is not None and max_steps < 1):
        raise UserError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}, max_steps={max_steps}: "
                        "all must be positive (max_steps may be null, or epochs when max_steps is set)")


def save_state(path, state: dict) -> None:
    """torch.save `state` to `path` atomically: a kill during the write leaves the previous file intact."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path, what: str = "training checkpoint") -> dict:
    """The training state that save_state wrote (tensors and plain types only); unreadable: a UserError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, pickled code, ...: one line
        raise UserError(f"{what} {path} is unreadable ({_reason(e)}): delete it to start again") from None


def fit(model, data, epochs=1, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=4e-5, label_smoothing=0.1,
        resolution=32, augment=True, channels_last=True, threads=None, max_steps=None, seed=0, progress=True,
        log=None, bn_recalibration=True, device=None, ema=None, state_path=None, state_every=None):
    """Train `model` on data.train and evaluate on data.val after each epoch (and when max_steps stops it).
    `max_steps` caps the steps of `epochs` epochs; epochs=None runs as many epochs as max_steps needs.

    `lr` is the peak rate for batch 128, scaled linearly with batch_size (rmsprop wants ~10x less than sgd).
    Weight decay skips biases and BatchNorm. Before each evaluation the BatchNorm statistics are re-estimated on
    ~1000 training images (bn_recalibration, see recalibrate_bn). `log(row)` gets each epoch's row (COLUMNS;
    `seconds` is the wall time since the start). Returns {train_loss: per epoch, val_acc, val_loss, img_per_s,
    seconds, steps, epochs: the rows}. `model` is an mnas model (it carries `.arch`).

    It trains on `device` (pick_device: a GPU when there is one, unless device="cpu") and is left on the device
    it came on, so callers that export or measure it on the CPU need not know where it trained.

    `augment`: see mnas.data.batches (False, True/"crop", "rrc"). `ema` (e.g. 0.999): also keep an exponential
    moving average of the weights and buffers (torch.optim.swa_utils); it is what gets evaluated, and `model`
    ends with the averaged weights. `state_path`: the training state (weights, optimizer, EMA, RNG, step, rows)
    is saved there every `state_every` steps and after every epoch; if the file exists when fit starts, training
    continues from it and ends exactly as the uninterrupted run would (same data order and augmentation)."""
    check_args(epochs, batch_size, lr, optimizer, max_steps)
    if ema is not None and not 0 < ema < 1:
        raise UserError(f"ema={ema!r} is invalid: use null or a decay in (0, 1), e.g. 0.999")
    home, dev = device_of(model), pick_device(device)
    model.to(dev)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train = datasets.batches(data.train, batch_size, resolution, shuffle=True, augment=augment, seed=seed,
                             channels=model.arch.in_chans, drop_last=len(data.train) > batch_size)
    epochs = epochs or math.ceil(max_steps / len(train))
    total = len(train) * epochs if max_steps is None else min(max_steps, len(train) * epochs)
    peak, warmup = lr * batch_size / 128, max(1, total // 30)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt = (torch.optim.SGD(groups, lr=peak, momentum=0.9, nesterov=True) if optimizer == "sgd" else
           torch.optim.RMSprop(groups, lr=peak, alpha=0.9, eps=1e-3, momentum=0.9))
    model.train()
    fmt = _memory_format(model, channels_last)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    scored = averaged.module if ema else model  # what is evaluated (and, at the end, what `model` holds)

    rows, step, seen, train_s, start, resumed = [], 0, 0, 0.0, time.perf_counter(), None
    if state_path and os.path.isfile(state_path):
        resumed = load_state(state_path)
        if resumed.get("total") != total:
            raise UserError(f"{state_path} is the state of a {resumed.get('total')}-step training, this one has "
                            f"{total} steps: resume with the settings it was started with, or delete it")
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        if averaged is not None:
            averaged.load_state_dict(resumed["ema"])
        torch.set_rng_state(resumed["rng"])
        rows, step, seen, train_s = resumed["rows"], resumed["step"], resumed["seen"], resumed["train_s"]

    def save(losses, epoch_seen, epoch_elapsed):
        if state_path:
            save_state(state_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total": total,
                "rows": rows, "seen": seen, "train_s": train_s, "losses": losses, "epoch_seen": epoch_seen,
                "epoch_elapsed": epoch_elapsed, "rng": torch.get_rng_state(),
                "ema": averaged.state_dict() if averaged is not None else None})

    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not progress or not sys.stderr.isatty())
    every = max(1, total // 10) if progress and bar.disable else 0  # a log file gets a line per 10% instead
    rate = lr_at(max(0, step - 1), total, peak, warmup)
    for epoch in range(step // len(train) + 1, epochs + 1):
        if step >= total:
            break
        train.epoch = epoch - 1  # the data order and augmentation of this epoch, as in an uninterrupted run
        batches_of_epoch, done = iter(train), step - (epoch - 1) * len(train)
        for _ in range(done):  # resuming mid-epoch: skip the batches already trained on
            next(batches_of_epoch)
        t0, losses, epoch_seen = time.perf_counter(), [], 0
        if done:  # this epoch's figures so far, as they were when the state was saved
            losses, epoch_seen, t0 = list(resumed["losses"]), resumed["epoch_seen"], t0 - resumed["epoch_elapsed"]
        for x, y in batches_of_epoch:
            rate = lr_at(step, total, peak, warmup)
            for g in opt.param_groups:
                g["lr"] = rate
            x, y = x.to(dev, memory_format=fmt, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise UserError(f"training diverged (loss {losses[-1]} at step {step}): lower lr (now {lr})")
            step, epoch_seen = step + 1, epoch_seen + len(y)
            if state_every and step % state_every == 0 and step < total and step % len(train):
                save(losses, epoch_seen, time.perf_counter() - t0)
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", lr=f"{rate:.3g}")
            if every and (step % every == 0 or step == total):
                spent = time.perf_counter() - start
                print(f"train: step {step}/{total} ({100 * step / total:.0f}%), loss {losses[-1]:.3f}, "
                      f"{(seen + epoch_seen) / spent:.0f} img/s, {spent / 60:.1f} min", flush=True)
            if step >= total:
                break
        epoch_s = time.perf_counter() - t0
        train_s, seen = train_s + epoch_s, seen + epoch_seen
        if bn_recalibration:
            recalibrate_bn(scored, data.train, resolution, seed=seed + epoch, channels_last=channels_last)
        val_acc, val_loss = evaluate(scored, data.val, resolution, channels_last=channels_last, crop=eval_crop(augment))
        rows.append(dict(epoch=epoch, train_loss=sum(losses) / len(losses), val_acc=val_acc, val_loss=val_loss,
                         lr=rate, img_per_s=epoch_seen / epoch_s,
                         seconds=(rows[-1]["seconds"] if rows else 0.0) + time.perf_counter() - t0))
        save([], 0, 0.0)
        if log:
            log(rows[-1])
    bar.close()
    if averaged is not None:
        model.load_state_dict(scored.state_dict())
    model.to(home)
    return {"train_loss": [r["train_loss"] for r in rows], "val_acc": rows[-1]["val_acc"],
            "val_loss": rows[-1]["val_loss"], "img_per_s": seen / max(train_s, 1e-9),
            "seconds": time.perf_counter() - start, "steps": step, "epochs": rows}


def train_from_scratch(arch: ArchConfig, data, max_stride: int = 8, seed: int = 0, test: bool = False,
                       **fit_options) -> tuple[nn.Module, dict]:
    """The proxy network of deployment `arch` (mnas.nn.proxy: data's classes, total stride <= max_stride), its
    weights initialised from `seed`, trained from scratch by fit(seed=seed, **fit_options): (model, fit's metrics,
    plus test_acc and test_loss on data.test when `test`). Every stand-alone training (train, the train estimator,
    compare, proxy_check, prune's references) is this call."""
    model = build(proxy_arch(arch, data.num_classes, max_stride), seed=seed)
    metrics = fit(model, data, seed=seed, **fit_options)
    if test:
        metrics["test_acc"], metrics["test_loss"] = evaluate(model, data.test, fit_options.get("resolution", 32),
                                                             crop=eval_crop(fit_options.get("augment", True)))
    return model, metrics


def save_checkpoint(path, model, metrics=None):
    """Weights, the ArchConfig as JSON and plain-type metrics: loadable with torch.load(path, weights_only=True).
    `path` may also be a binary file object (io.BytesIO: a network sent to another process as bytes)."""
    if isinstance(path, (str, os.PathLike)):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    plain = json.loads(json.dumps(metrics or {}, default=float))  # numpy/torch scalars -> float
    torch.save({"state_dict": model.state_dict(), "arch": model.arch.to_json(), "metrics": plain}, path)


def load_checkpoint(path):
    """The model saved by save_checkpoint, rebuilt from its ArchConfig, in eval mode, with the metrics saved beside
    the weights as `model.metrics` (a dict; `trained_as` says proxy or deployment). Never unpickles code.

    Anything else is a one-line UserError: a missing, truncated or foreign file, pickled code or objects (refused
    by torch.load(weights_only=True)), a broken arch, or weights that do not fit the arch. `path` may also be a
    binary file object that save_checkpoint wrote to."""
    if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}: pass the checkpoint.pt of a run (runs/train/<time>/)")
    what = f"not an mnas checkpoint: {path}"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        code = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(e), re.IGNORECASE)  # torch < / >= 2.13 wording
        if code:
            raise UserError(f"{what} holds pickled code or objects ({code[1]}), which are refused") from None
        raise UserError(f"{what} is corrupt or not a torch.save file") from None
    except Exception as e:  # a truncated zip, an empty file...
        raise UserError(f"{what} is corrupt or not a torch.save file ({_reason(e)})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and isinstance(ckpt.get("arch"), str)):
        raise UserError(f"{what} lacks the 'state_dict' and 'arch' (JSON) that save_checkpoint writes")
    try:
        model = build(ArchConfig.from_json(ckpt["arch"]))
    except Exception as e:
        raise UserError(f"{what}: its arch is invalid ({_reason(e)})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        reason = re.sub(r"^Error\(s\) in loading state_dict for \w+: ", "", _reason(e))
        raise UserError(f"{what}: its weights do not fit its arch ({reason})") from None
    model.metrics = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}  # what save_checkpoint kept
    return model.eval()


def _reason(e: Exception, limit: int = 200) -> str:
    """An exception's message as one line of at most `limit` characters."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
