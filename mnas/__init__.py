"""mnas: latency-aware architecture search, pruning and export of MobileNet-style networks (`mnas.load(path)`)."""


def load(path):
    """The network saved in an mnas checkpoint (model.pt of an export, checkpoint.pt of a run), in eval mode, with
    its ArchConfig as `model.arch`. Loads with torch.load(weights_only=True); anything else is a one-line UserError."""
    from mnas.train import load_checkpoint
    return load_checkpoint(str(path))
