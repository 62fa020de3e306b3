"""Train a supernet (or a slimmable network, mnas.supernet.slimmable) once; cache it under runs/supernets/<hash>/;
resume after a kill.

Each step trains the largest and `n_random` random sub-networks on the same batch, and with smallest=True also the
smallest (the sandwich rule, Yu & Huang 2019; off by default since 2026-12-03, README): the largest learns the
labels, the others its soft predictions (in-place distillation, KL divergence). The random sub-networks are seeded
by (seed, step), so a resumed run and every rank of a distributed run draw the same ones. A checkpoint (weights,
optimizer, step, RNG state) is written every `checkpoint_every` steps and at each epoch's end; the learning rate is
a function of the step (warm-up, cosine).

Distributed (`torchrun --nproc_per_node N -m mnas.supernet ...`, gloo on CPU, nccl on GPUs): each rank trains
on its own shard of the training split and the gradients are averaged once per step, after all the sandwich's
backward passes. That is DistributedDataParallel's arithmetic, done by hand because DDP's reducer expects one
backward per step over a fixed set of parameters, while the sandwich rule runs several, each over a different
slice of the weights.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from mnas.data import Dataset
from mnas.data.sets import DiskImages, Split, batches
from mnas.errors import UserError
from mnas.nn.space import Space
from mnas.supernet.elastic import Supernet
from mnas.supernet.slimmable import Slimmable, Slimming
from mnas.train import load_state, lr_at, pick_device, save_state

CACHE_DIR = Path("runs") / "supernets"
VERSION = 1  # bump when a change to the supernet or its training makes cached supernets stale
LOG_COLUMNS = ["step", "epoch", "lr", "loss_largest", "loss_others", "subnet_img_per_s", "seconds"]


@dataclass(frozen=True)
class SupernetSettings:
    """Everything that changes the trained weights (with the space and the data, the cache key)."""

    epochs: int = 1  # sized for the 30-minute end-to-end budget on a 2-core CPU (log.csv has the img/s)
    batch_size: int = 128
    lr: float = 0.1  # peak, for a global batch of 128 (scaled linearly); SGD, Nesterov momentum 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    n_random: int = 3  # random sub-networks per step, besides the largest (and the smallest, if smallest)
    smallest: bool = False  # True: also the smallest every step (the full sandwich rule); the defaults here are
    #                         conf/estimator/supernet.yaml's, so code that builds settings gets the CLI's supernet
    distill: bool = True  # others learn the largest's soft targets (KL); False: the labels
    resolution: int = 32
    max_stride: int = 8  # the proxy rule (mnas.nn.proxy)
    augment: bool = True
    seed: int = 0
    precision: str = "fp32"  # "bf16": forward passes under CPU/GPU autocast to bfloat16 (weights, optimizer fp32)
    teacher: str = "largest"  # the arch trained on the labels first each step: the space's largest, or
    #                           "random_kernel": the largest with each block's kernel drawn anew every step
    classifier_lr: str = "same"  # "auto": the final linear layer's weights step at lr * min(1, FC_REF / E|f|^2),
    #                              f its input, measured once at the start (classifier_lr_factor)

    def __post_init__(self):
        for k in ("epochs", "batch_size", "resolution", "max_stride"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise UserError(f"supernet {k}={getattr(self, k)!r} is invalid: use a positive integer")
        if not self.lr > 0 or self.n_random < 0:
            raise UserError(f"supernet lr={self.lr}, n_random={self.n_random}: lr must be > 0, n_random >= 0")
        if self.teacher not in TEACHERS:
            raise UserError(f"supernet teacher={self.teacher!r} is invalid: use one of {', '.join(TEACHERS)}")
        if self.classifier_lr not in CLASSIFIER_LRS:
            raise UserError(f"classifier_lr={self.classifier_lr!r} is invalid: use one of {', '.join(CLASSIFIER_LRS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"supernet precision={self.precision!r} is invalid: use one of {', '.join(PRECISIONS)}")
        if not self.smallest and self.n_random == 0:
            raise UserError("supernet smallest=false with n_random=0 would train the largest sub-network only: "
                            "use n_random >= 1 or smallest=true")


PRECISIONS = ("fp32", "bf16")
TEACHERS = ("largest", "random_kernel")
CLASSIFIER_LRS = ("same", "auto")
# options added after VERSION 1, at the defaults of the old training
LATER_OPTIONS = {"smallest": True, "precision": "fp32", "teacher": "largest", "classifier_lr": "same"}
# The squared norm of the classifier's input at which its lr is left alone. The step of the final linear layer
# moves the logits by lr * |f|^2 per unit of gradient; MobileNetV3 heads feed it a hidden layer's small outputs
# (E|f|^2 ~2 at init), MobileNetV1/V2 their 1024/1280 pooled ReLU features, non-negative, E|f|^2 ~300 (two
# thirds of it their common mean): at lr 0.1 the batch's mean logits swing from class to class, the network
# predicts 1-3 classes per batch and its loss climbs above chance (runs/results/prune-v2-slimmable-lr/).
FC_REF = 10.0


def settings_key(s: SupernetSettings) -> dict:
    """The settings as stored and hashed; options added later are left out at their defaults, so the supernets
    cached before they existed stay valid."""
    return {k: v for k, v in dataclasses.asdict(s).items() if k not in LATER_OPTIONS or v != LATER_OPTIONS[k]}


def fingerprint(data: Dataset) -> str:
    """A hash of the training split's contents (images, labels, normalisation) and the class count."""
    h = hashlib.blake2b(digest_size=16)
    for t in (data.train.images, data.train.labels):
        h.update(t.digest() if isinstance(t, DiskImages) else t.contiguous().numpy().tobytes())
    h.update(json.dumps([data.name, data.num_classes, data.train.mean, data.train.std]).encode())
    return h.hexdigest()


def cache_dir(space: Space | Slimming, data: Dataset, settings: SupernetSettings, root=CACHE_DIR) -> Path:
    """runs/supernets/<hash of space, training data, settings>/."""
    key = json.dumps({"version": VERSION, "space": dataclasses.asdict(space), "data": fingerprint(data),
                      "settings": settings_key(settings)}, sort_keys=True, default=str)
    return Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]


def elastic_net(space: Space | Slimming, num_classes: int, max_stride: int) -> Supernet | Slimmable:
    """The weight-sharing network of a search space (a Supernet) or of one network's slimmings (a Slimmable)."""
    return (Slimmable if isinstance(space, Slimming) else Supernet)(space, num_classes, max_stride)


def _rank_world() -> tuple[int, int]:
    """(rank, world size); a process started by torchrun joins the process group here."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(pick_device())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _shard(split: Split, rank: int, world: int, seed: int) -> Split:
    """Rank's equal share of a seeded permutation of the split (the whole split for one process)."""
    if world == 1:
        return split
    m = len(split) // world
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.take(perm[rank * m:(rank + 1) * m].sort().values)


def sandwich(space: Space | Slimming, step: int, n_random: int, seed: int, largest, smallest=None,
             teacher: str = "largest") -> list:
    """The archs trained at `step`: largest first (the teacher; with teacher="random_kernel" its kernels drawn
    from their own seeded stream, so the other archs stay those of the default), smallest (unless None), then
    n_random seeded random ones."""
    rng = random.Random(seed * 1_000_003 + step)
    if teacher == "random_kernel":
        largest = space.extreme(largest=True, kernel_rng=random.Random(f"teacher {seed} {step}"))
    return [largest] + ([smallest] if smallest is not None else []) + [space.random_arch(rng) for _ in range(n_random)]


def _average_gradients(net, world: int) -> None:
    """All-reduce the gradients once (one flat tensor); every rank used the same archs, so the same params."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def train_step(net: Supernet, opt, archs, x, y, s: SupernetSettings, world: int = 1) -> list[float]:
    """One sandwich step: forward/backward each arch (gradients accumulate), average across ranks, update."""
    opt.zero_grad(set_to_none=True)
    losses = []
    for n, arch in enumerate(archs):
        net.set_active(arch)
        with torch.autocast(x.device.type, torch.bfloat16, enabled=s.precision == "bf16"):
            logits = net(x)
        logits = logits.float()
        if n == 0 or not s.distill:
            loss = F.cross_entropy(logits, y, label_smoothing=s.label_smoothing)
            soft = logits.detach().softmax(1)
        else:
            loss = F.kl_div(logits.log_softmax(1), soft, reduction="batchmean")
        loss.backward()
        losses.append(loss.item())
    if world > 1:
        _average_gradients(net, world)
    opt.step()
    return losses


def _classifier(net):
    """The classifier module (pool, optional hidden layer, dropout, fc) of a Supernet or a Slimmable."""
    return next(m for n, m in net.named_modules() if n.rsplit(".", 1)[-1] == "classifier")


@torch.no_grad()
def classifier_lr_factor(net: Supernet | Slimmable, arch, x) -> float:
    """min(1, FC_REF / E|f|^2), f the final linear layer's input for `arch` on batch x in training mode (batch
    statistics); BatchNorm running statistics are left as they were."""
    buffers = {k: v.clone() for k, v in net.state_dict().items() if "running_" in k or "num_batches" in k}
    seen = []
    hook = _classifier(net).dropout.register_forward_hook(lambda m, i, o: seen.append(i[0].float()))
    was = net.training
    try:
        net.train()
        net.set_active(arch)
        net(x)
    finally:
        hook.remove()
        net.train(was)
        net.load_state_dict(buffers, strict=False)
    return min(1.0, FC_REF / max(float(seen[0].pow(2).sum(1).mean()), 1e-12))


def make_optimizer(net: Supernet, s: SupernetSettings, fc_factor: float = 1.0) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; no weight decay on BatchNorm, biases and the kernel transforms; the final
    linear layer's weights in a group of their own whose lr is the schedule's times `fc_factor` (`lr_scale`)."""
    fc = _classifier(net).fc.weight if fc_factor != 1.0 else None
    decay = [p for n, p in net.named_parameters() if p.ndim > 1 and ".transforms." not in n and p is not fc]
    rest = [p for n, p in net.named_parameters() if not (p.ndim > 1 and ".transforms." not in n)]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if fc is not None:
        groups.append({"params": [fc], "weight_decay": s.weight_decay, "lr_scale": fc_factor})
    return torch.optim.SGD(groups, lr=s.lr, momentum=0.9, nesterov=True)


def _rng_states(world: int) -> list:
    state = [torch.get_rng_state()] + ([torch.cuda.get_rng_state()] if torch.cuda.is_available() else [])
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


def train_supernet(space: Space | Slimming, data: Dataset, s: SupernetSettings, out_dir, max_steps: int | None = None,
                   checkpoint_every: int = 100, progress: bool = True, device=None) -> tuple[Supernet, dict]:
    """Train (or resume, or just load) the supernet whose checkpoint lives in out_dir. Stops when the schedule
    is done or the step count reaches max_steps (a later call resumes). Returns (supernet, checkpoint info:
    step, total, complete, dir)."""
    rank, world = _rank_world()
    device = pick_device(device)
    out_dir, fmt = Path(out_dir), torch.channels_last
    ckpt_path = out_dir / "checkpoint.pt"
    torch.manual_seed(s.seed)
    net = elastic_net(space, data.num_classes, s.max_stride).to(device, memory_format=fmt)
    loader = batches(_shard(data.train, rank, world, s.seed), s.batch_size, s.resolution, shuffle=True,
                     augment=s.augment, seed=s.seed + rank, drop_last=True)
    if len(loader) == 0:
        raise UserError(f"{len(data.train) // world} training images per process is fewer than batch_size="
                        f"{s.batch_size}: use a smaller batch or more data")
    spe = len(loader)
    total = s.epochs * spe
    peak, warmup = s.lr * s.batch_size * world / 128, max(1, total // 30)
    step, seconds, ck = 0, 0.0, None
    if ckpt_path.exists():
        ck = load_state(ckpt_path, "supernet checkpoint")
        done = ck["step"] >= ck["total"]  # a finished supernet serves any process count
        if ck["settings"] != settings_key(s) or not done and (ck["total"], ck["world"]) != (total, world):
            raise UserError(f"{ckpt_path} was written by another schedule ({ck['settings']}, {ck['world']} "
                            f"process(es)): delete it or pass the same settings and process count")
        net.load_state_dict(ck["model"])
        step, seconds, total = ck["step"], ck["seconds"], ck["total"]
    stop = total if max_steps is None else min(total, max_steps)
    info = lambda: {"step": step, "total": total, "complete": step >= total, "dir": str(out_dir)}  # noqa: E731
    if step >= stop:
        return net, info()

    largest, smallest = space.extreme(largest=True), space.extreme(largest=False) if s.smallest else None
    if ck is not None:
        fc_factor = ck.get("fc_factor", 1.0)
    elif s.classifier_lr == "auto":
        x0 = next(iter(loader))[0].to(device, memory_format=fmt)
        fc_factor = classifier_lr_factor(net, largest, x0)
        if world > 1:  # rank 0's measure on every rank: the same optimizer everywhere
            t = torch.tensor([fc_factor], dtype=torch.float64, device=device)
            dist.broadcast(t, 0)
            fc_factor = float(t)
    else:
        fc_factor = 1.0
    opt = make_optimizer(net, s, fc_factor)
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"][rank][0])
        if torch.cuda.is_available() and len(ck["rng"][rank]) > 1:
            torch.cuda.set_rng_state(ck["rng"][rank][1])
    else:
        for t in net.state_dict().values() if world > 1 else ():
            dist.broadcast(t, 0)  # identical start on every rank (the seed already makes it so; this proves it)
        torch.manual_seed(s.seed + 1000 * rank)  # dropout differs per rank; a resumed run restores its state
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "settings.json").write_text(json.dumps({"space": space.name, "data": data.name,
                                                            "train_images": len(data.train), "world": world,
                                                            **dataclasses.asdict(s), "classifier_lr_factor": fc_factor},
                                                           indent=2))
    if s.precision == "bf16" and device.type == "cpu" and rank == 0 and \
            "AVX512" not in torch.backends.cpu.get_cpu_capability():
        print(f"warning: precision=bf16 on a CPU without AVX-512 (PyTorch reports "
              f"{torch.backends.cpu.get_cpu_capability()}): convolutions take PyTorch's slow path, measured 14x "
              "slower than fp32 on such a CPU; check with python -m mnas.bench.supernet_speed", file=sys.stderr)
    if s.teacher != "largest" and not isinstance(space, Space):
        raise UserError(f"supernet teacher={s.teacher} needs a search space with kernel choices; a slimmable "
                        "network has none: use teacher=largest")
    bar = tqdm(total=total, initial=step, desc="supernet", unit="step",
               disable=not progress or rank != 0 or not sys.stderr.isatty())
    net.train()
    it, window, t0, start, images = None, [], time.perf_counter(), time.perf_counter(), 0
    while step < stop:
        epoch, k = divmod(step, spe)
        if it is None or k == 0:
            loader.epoch = epoch
            it = iter(loader)
            for _ in range(k):  # resuming mid-epoch: the same batches as an uninterrupted run
                next(it)
        x, y = next(it)
        x, y = x.to(device, memory_format=fmt), y.to(device)
        rate = lr_at(step, total, peak, warmup)
        for g in opt.param_groups:
            g["lr"] = rate * g.get("lr_scale", 1.0)
        archs = sandwich(space, step, s.n_random, s.seed, largest, smallest, s.teacher)
        losses = train_step(net, opt, archs, x, y, s, world)
        if not all(math.isfinite(v) for v in losses):
            raise UserError(f"supernet training diverged (losses {losses} at step {step}): lower lr (now {s.lr})")
        step, images = step + 1, images + len(losses) * len(y) * world
        window.append(losses)
        bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[0]:.3f}", kd=f"{sum(losses[1:]) / max(1, len(losses) - 1):.3f}")
        if step % checkpoint_every == 0 or step % spe == 0 or step == stop:
            now = time.perf_counter()
            seconds += now - t0
            row = dict(step=step, epoch=step / spe, lr=rate, loss_largest=sum(w[0] for w in window) / len(window),
                       loss_others=sum(sum(w[1:]) / max(1, len(w) - 1) for w in window) / len(window),
                       subnet_img_per_s=len(window) * len(losses) * len(y) * world / (now - t0), seconds=seconds)
            state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "total": total,
                     "world": world, "seconds": seconds, "rng": _rng_states(world), "settings": settings_key(s),
                     "fc_factor": fc_factor}
            if rank == 0:
                save_state(ckpt_path, state)
                _log(out_dir / "log.csv", row)
            if world > 1:
                dist.barrier()
            if progress and rank == 0 and not sys.stderr.isatty():  # no bar in a log file: a line per checkpoint
                print(f"supernet step {step}/{total} (epoch {step / spe:.2f}/{s.epochs}): "
                      f"loss {row['loss_largest']:.3f} (largest), {row['loss_others']:.3f} (others); "
                      f"{images / (now - start):.0f} sub-network img/s, {seconds:.0f} s", flush=True)
            window, t0 = [], time.perf_counter()
    bar.close()
    return net, info()


def _log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, LOG_COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def load_or_train(space: Space | Slimming, data: Dataset, s: SupernetSettings, root=CACHE_DIR, progress: bool = True,
                  checkpoint_every: int = 100, device=None) -> Supernet:
    """The trained supernet for (space, data, settings): from the cache, or trained (resumed) now and cached."""
    out = cache_dir(space, data, s, root)
    if not (out / "checkpoint.pt").exists() and _rank_world()[0] == 0:
        print(f"training the supernet for {space.name} on {data.name} ({s.epochs} epochs at {s.resolution}px, "
              f"cached in {out}; once per space, data and settings)")
    net, info = train_supernet(space, data, s, out, checkpoint_every=checkpoint_every, progress=progress,
                               device=device)
    return net
