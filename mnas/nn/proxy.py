"""The proxy variant of an architecture: the same layers, trained on small images with fewer early strides.

Accuracy is measured on a small proxy task (e.g. 32x32) while latency is for the deployment shape (224x224).
A network built for 224x224 downsamples 32x, which leaves a 32x32 proxy image as a 1x1 map halfway through the
network, where kernel size and depth stop mattering. One rule for every model (V1/V2/V3 baselines and searched
archs alike, so they are compared on equal terms): set the stride of the earliest stride-2 layers (stem
included) to 1 until the network's total stride is at most `max_stride` (default 8: a 32x32 proxy image ends as
a 4x4 map, as CIFAR-style networks do). Channels, kernels, SE and activations are unchanged, and so are the
parameter shapes: a proxy-trained state_dict loads into the deployment arch.
"""
import dataclasses

from mnas.nn.arch import ArchConfig


def total_stride(arch: ArchConfig) -> int:
    s = 1
    for b, _, _ in arch.walk():
        s *= b.stride
    return s


def proxy_arch(arch: ArchConfig, num_classes: int | None = None, max_stride: int = 8) -> ArchConfig:
    """`arch` with its earliest strides set to 1 until its total stride is <= max_stride (and the proxy task's
    class count). Residual adds are unchanged: a stride-1 layer whose in and out channels differ gets none."""
    layers = [arch.stem, *arch.blocks]
    stride = total_stride(arch)
    for i, b in enumerate(layers):
        if stride <= max_stride:
            break
        if b.stride == 2:
            layers[i] = dataclasses.replace(b, stride=1)
            stride //= 2
    return arch.replace(stem=layers[0], blocks=tuple(layers[1:]),
                        num_classes=arch.num_classes if num_classes is None else num_classes)
