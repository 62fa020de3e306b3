"""mnas: latency-aware architecture search, pruning and export of MobileNet-style networks.

The public API, imported on first use (so `import mnas` stays light):

    ArchConfig                    an architecture (mnas.nn.arch): ArchConfig.from_string(...), .to_json()
    build(arch)                   its nn.Module (mnas.nn.models)
    get_model(name, width, ...)   a hand design's ArchConfig, e.g. get_model("mobilenet_v3_small", 0.75)
    count(arch)                   MACs and parameters (mnas.nn.stats)
    predict(arch, device)         latency in ms at the deployment shape (mnas.latency)
    load(path)                    the network of an mnas checkpoint (model.pt of an export, checkpoint.pt of a run)

Layout, bottom to top (each imports only from below): errors, cli, workers -> nn, data -> train, latency ->
supernet -> search, prune, export -> compare, pipeline -> the commands (search/__main__, bench).
"""
import importlib

_API = {"ArchConfig": "mnas.nn.arch", "build": "mnas.nn.models", "get_model": "mnas.nn.models",
        "count": "mnas.nn.stats", "predict": "mnas.latency", "load": "mnas.train"}
__all__ = list(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'mnas' has no attribute {name!r}")
    attr = "load_checkpoint" if name == "load" else name
    value = getattr(importlib.import_module(_API[name]), attr)
    globals()[name] = value
    return value
