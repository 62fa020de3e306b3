"""What a network is, from its config alone: the bottom layer every other package builds on.

    arch    BlockConfig, ArchConfig (absolute channels; compact string and JSON)
    blocks  the nn.Modules of the layers (conv-bn-act, depthwise-separable, inverted residual, SE)
    models  MobileNetV1/V2/V3 as ArchConfigs, the hand designs and their families, build(arch) -> nn.Module
    proxy   proxy_arch: the same layers with fewer early strides, for training on small images
    stats   count(arch): MACs and parameters
    ops     arch_ops(arch): its layers as latency-table keys
    space   declarative search spaces (search_spaces/*.yaml): validate, sample, list their ops
    units   channel units (the channels that shrink together) and resizing an arch by them: pruning and slimming
"""
