"""Export a network for deployment and check it: arch (JSON, string), PyTorch checkpoint, ONNX, ExecuTorch .pte.

    python -m mnas.export run=runs/search/pixel/<time> format=onnx,pt
    python -m mnas.export model=mobilenet_v3_small width=0.75
Every ONNX (and .pte) file is run on a random input at its input shape and compared with the PyTorch model; the
largest absolute difference goes into the manifest `export.json` next to the files, and one above `check_tol`
(1e-4; relative to the largest |output| where that exceeds 1) fails the export. Files land in <run>/export/ or,
for a baseline, runs/export/<model>-<width>/<time>/.
"""
import importlib.util
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mnas.cli import register_schema
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch
from mnas.nn.stats import count
from mnas.train import load_checkpoint, save_checkpoint

FILES = {"json": "arch.json", "string": "arch.txt", "pt": "model.pt", "onnx": "model.onnx", "pte": "model.pte"}
CHECKPOINTS = ("checkpoint.pt", "model.pt")  # preferred when a run directory holds several .pt files
OPSET = 17


class ExportCheckError(RuntimeError):
    """An exported file computes something else than the PyTorch model (difference above the tolerance)."""


def parse_formats(formats) -> list[str]:
    """'onnx,pt' or ['onnx', 'pt'] -> ['onnx', 'pt']; an unknown name, or pte without executorch, is a UserError."""
    names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    bad = [f for f in names if f not in FILES]
    if bad or not names:
        raise UserError(f"unknown format {','.join(bad)!r}: use one or more of {', '.join(FILES)} (comma-separated)")
    if "pte" in names and importlib.util.find_spec("executorch") is None:
        raise UserError("format pte needs the optional executorch package (ExecuTorch with XNNPACK): "
                        "pip install executorch")
    return list(dict.fromkeys(names))


def checkpoint_in(run: Path) -> Path | None:
    """The checkpoint of a run directory: checkpoint.pt or model.pt, else its only .pt file, else None."""
    found = sorted(run.glob("*.pt"))
    preferred = [run / n for n in CHECKPOINTS if run / n in found]
    if preferred or len(found) <= 1:
        return (preferred or found or [None])[0]
    raise UserError(f"run directory {run} holds several checkpoints ({', '.join(p.name for p in found)}): "
                    f"pass one as run={run}/<file>.pt")


def open_source(source) -> tuple[nn.Module, dict]:
    """(model in eval mode, manifest fields `source` and `weights`) for a model with `.arch`, an ArchConfig
    (freshly initialised), a checkpoint file, or a run directory (search run: best.json's arch, trained weights
    only when a checkpoint lies next to it; train or prune run: its checkpoint)."""
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "arch", None), ArchConfig):
            raise UserError(f"cannot export a {type(source).__name__} without an ArchConfig as .arch: "
                            "build it with mnas.nn.models.build(arch)")
        return source.eval(), {"source": "model passed to export()", "weights": "as passed"}
    if isinstance(source, ArchConfig):
        return build(source).eval(), {"source": "ArchConfig", "weights": "untrained"}
    path = Path(source)
    if path.is_file():
        return load_checkpoint(str(path)), {"source": str(path), "weights": "checkpoint"}
    if not path.is_dir():
        raise UserError(f"run={path} not found: pass a run directory (search, prune or train) or a checkpoint .pt")
    ckpt, best, arch_file = checkpoint_in(path), path / "best.json", path / "arch.json"
    arch = None
    if best.is_file():
        arch_string = json.loads(best.read_text()).get("arch")
        if not arch_string:
            raise UserError(f"{best} names no arch (no trial of that search met its budget)")
        arch, arch_file = ArchConfig.from_string(arch_string), best
    elif arch_file.is_file():
        arch = ArchConfig.from_json(arch_file.read_text())
    if ckpt is None and arch is None:
        raise UserError(f"{path} holds neither a checkpoint (*.pt) nor best.json/arch.json: pass a search, prune or "
                        "train run directory, or a checkpoint file")
    if ckpt is None:
        return build(arch).eval(), {"source": str(arch_file), "weights": "untrained"}
    model = load_checkpoint(str(ckpt))
    if arch is None:
        return model, {"source": str(ckpt), "weights": "checkpoint"}
    # Runs train the proxy variant (mnas.nn.proxy: fewer early strides, the proxy task's classes); what ships is the
    # deployment arch of the run (best.json / arch.json) with those weights: the parameter shapes are the same.
    deploy = build(arch.replace(num_classes=model.arch.num_classes, dropout=model.arch.dropout,
                                resolution=model.arch.resolution if model.metrics.get("trained_as") == "deployment"
                                else arch.resolution)).eval()
    try:
        deploy.load_state_dict(model.state_dict())
    except RuntimeError:
        raise UserError(f"{ckpt} holds another arch than {arch_file}: pass run={ckpt} to export the checkpoint "
                        "as saved") from None
    deploy.metrics = model.metrics
    return deploy, {"source": str(ckpt), "weights": "checkpoint", "deployment_arch": str(arch_file)}


def carries(model: nn.Module, weights: str) -> tuple[str, str]:
    """(kind, sentence) saying what the weights of an exported model are good for: 'task' (trained as this network
    by python -m mnas.train on the user's data: for shipping), 'proxy' (trained as the proxy variant on the proxy
    task, as every search, prune and compare run trains: for timing and checks only) or 'untrained'."""
    if weights == "untrained":
        return "untrained", "untrained weights: for latency and deployment checks only"
    m = getattr(model, "metrics", None) or {}
    if m.get("trained_as") == "deployment":
        return "task", (f"task weights: trained as this network at {m.get('train_resolution')} px on "
                        f"{m.get('data')} ({len(m.get('classes') or []) or model.arch.num_classes} classes): "
                        "for shipping")
    if weights == "as passed":
        return "as passed", "weights as passed to export()"
    return "proxy", (f"proxy-task weights ({model.arch.num_classes} classes, trained as the proxy variant at a "
                     "proxy resolution): for timing and checks, not for shipping; to ship, train the arch on your "
                     "data with python -m mnas.train arch=<run> data=imagefolder data.root=<folder>")


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> np.ndarray:
    """ONNX with the TorchScript exporter, as the latency profiler exports (opset 17, static shape); returns
    onnxruntime's output on `x`."""
    import onnxruntime as ort
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 1, 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]


class _Wrapped(nn.Module):
    """ExecuTorch's BatchNorm-fusion pass fails when the exported module is itself an nn.Sequential."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def export_pte(model: nn.Module, x: torch.Tensor, path: Path) -> np.ndarray:
    """ExecuTorch program lowered to XNNPACK; returns its output on `x` from the ExecuTorch runtime."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    with torch.no_grad():
        program = torch.export.export(_Wrapped(model).eval(), (x,))
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return Runtime.get().load_program(path).load_method("forward").execute([x])[0].numpy()


def checked(model: nn.Module, shape: tuple, path: Path, write_and_run) -> dict:
    """Write `path` and compare what it computes on a random input of `shape` with the PyTorch model."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x).numpy()
    got = write_and_run(model, x, path)
    return {"file": path.name, "input_shape": list(shape), "max_abs_diff": float(np.abs(got - expected).max()),
            "max_abs_output": float(np.abs(expected).max())}  # the scale the difference is measured against


def export(model_or_source, out_dir, formats=("json", "string", "pt", "onnx"), proxy_resolution=None,
           check_tol=1e-4) -> dict:
    """Write the requested formats of a model (or source, see open_source) into `out_dir` (a new or empty folder:
    nothing is overwritten) with the manifest export.json, and return the manifest.

    ONNX and .pte run at the arch's deployment shape (1, in_chans, resolution, resolution). With
    `proxy_resolution`, model_proxy.onnx is written as well, whatever the formats: the arch's proxy variant
    (mnas.nn.proxy: earliest strides set to 1) with the same weights, at that input size, i.e. the network as
    trained and evaluated on the proxy task. Raises ExportCheckError (after writing the manifest) if an
    exported file's output differs from PyTorch's by more than `check_tol` (times the largest |output| when that
    exceeds 1: float32 rounding is relative)."""
    formats = parse_formats(formats)
    if proxy_resolution is not None and not (isinstance(proxy_resolution, int) and proxy_resolution >= 8):
        raise UserError(f"proxy_resolution={proxy_resolution!r} is invalid: use null or an integer >= 8, e.g. 32")
    model, manifest = open_source(model_or_source)
    manifest["carries"], manifest["carries_text"] = carries(model, manifest["weights"])
    if manifest["carries"] == "task":  # what a caller needs to feed the exported network and read its output
        m = model.metrics
        manifest["classes"] = list(m.get("classes") or [])
        manifest["preprocess"] = m.get("preprocess")  # None for runs trained before it was recorded
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} already holds files and nothing is overwritten: pass another out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    arch, files = model.arch, {}
    shape = (1, arch.in_chans, arch.resolution, arch.resolution)
    for f in formats:
        path = out_dir / FILES[f]
        if f == "json":
            path.write_text(arch.to_json(indent=2) + "\n")
        elif f == "string":
            path.write_text(arch.to_string() + "\n")
        elif f == "pt":
            save_checkpoint(str(path), model, {**(getattr(model, "metrics", None) or {}),
                                               "weights": manifest["weights"]})
        elif f == "onnx":
            files["onnx"] = checked(model, shape, path, export_onnx)
        elif f == "pte":
            files["pte"] = checked(model, shape, path, export_pte)
        files.setdefault(f, {"file": path.name})
    if proxy_resolution:
        proxy = build(proxy_arch(arch)).eval()
        proxy.load_state_dict(model.state_dict())
        files["onnx_proxy"] = dict(checked(proxy, shape[:2] + (proxy_resolution,) * 2, out_dir / "model_proxy.onnx",
                                           export_onnx), arch=proxy.arch.to_string())
    for entry in files.values():
        entry["bytes"] = (out_dir / entry["file"]).stat().st_size
    checks = [e for e in files.values() if "max_abs_diff" in e]
    for e in checks:  # float32 rounding grows with the outputs: check_tol is absolute up to |output| 1, then relative
        e["tol"] = check_tol * max(1.0, e["max_abs_output"])
    bad = [f"{e['file']} {e['max_abs_diff']:.3g} > {e['tol']:.3g}" for e in checks if not e["max_abs_diff"] <= e["tol"]]
    stats = count(arch)
    manifest.update(arch=arch.to_string(), resolution=arch.resolution, num_classes=arch.num_classes,
                    macs=stats.macs, params=stats.params, files=files, check_tol=check_tol, ok=not bad, opset=OPSET,
                    torch=torch.__version__, created=time.strftime("%Y-%m-%d %H:%M:%S"))
    (out_dir / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if bad:
        raise ExportCheckError(f"exported files compute something else than the PyTorch model ({', '.join(bad)}, "
                               f"max |diff| vs tolerance); see {out_dir / 'export.json'}")
    return manifest


@dataclass
class ExportConfig:
    """The schema of `python -m mnas.export` (conf/export.yaml lists it first; values and comments in the YAML)."""
    run: Optional[str] = None
    model: Optional[str] = None
    arch: Optional[str] = None
    width: float = 1.0
    resolution: int = 224
    num_classes: int = 1000
    format: Any = "json,string,pt,onnx"  # a comma list: format=onnx,pt arrives as a list
    proxy_resolution: Optional[int] = None
    check_tol: float = 1e-4
    out_dir: Optional[str] = None


register_schema("export", ExportConfig)


def main(cfg) -> dict:
    """Hydra config (conf/export.yaml) -> a source and an output folder -> export()."""
    from mnas.cli import new_run_dir, to_plain
    from mnas.nn.models import get_model
    c = to_plain(cfg)
    formats = parse_formats(c["format"])
    if sum(bool(c.get(k)) for k in ("run", "model", "arch")) != 1:
        raise UserError("pass one of run=<run directory or checkpoint .pt>, model=<baseline name> (with width=) "
                        "or arch=<arch string>")
    if c.get("arch"):
        try:
            source = ArchConfig.from_string(str(c["arch"]))
        except ValueError as e:
            raise UserError(f"arch=: {e}") from None
        label, out_dir = "arch", c["out_dir"] or new_run_dir("export", "arch")
    elif c["run"]:
        source = label = Path(c["run"])
        if not source.exists():
            raise UserError(f"run={source} not found: pass a run directory (search, prune or train) or a checkpoint")
        out_dir = c["out_dir"] or (source if source.is_dir() else source.parent) / "export"
    else:
        source = get_model(c["model"], c["width"], c["resolution"], c["num_classes"])
        label = f"{c['model']} x{c['width']:g}"
        out_dir = c["out_dir"] or new_run_dir("export", f"{c['model']}-{c['width']:g}")
    try:
        m = export(source, out_dir, formats, c["proxy_resolution"], c["check_tol"])
    except ExportCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"exported {label} ({m['macs'] / 1e6:.1f} MMACs, {m['params'] / 1e6:.2f} M params) -> {out_dir}")
    for name, e in m["files"].items():
        check = (f", max |diff| vs PyTorch {e['max_abs_diff']:.2g} (|output| up to {e['max_abs_output']:.3g}) at "
                 f"{e['input_shape']}" if "max_abs_diff" in e else "")
        print(f"  {e['file']:<18} {e['bytes'] / 1e6:7.2f} MB{check}")
    if m["weights"] == "untrained":
        print(f"WARNING: weights are UNTRAINED (freshly initialised, no checkpoint in {label}): "
              "these files are for latency and deployment checks only, not for accuracy")
    else:
        print(f"weights: {m['carries_text']}")
    if m.get("preprocess"):
        p = m["preprocess"]
        print(f"input: RGB resized to {p['image_size']}x{p['image_size']} (bilinear), central {p['crop']:g} of each "
              f"side, at {p['resolution']} px, /255, minus mean {[round(v, 4) for v in p['mean']]}, divided by std "
              f"{[round(v, 4) for v in p['std']]} (mnas.data.prepare_image(path, export.json's preprocess)); "
              f"outputs: {len(m['classes'])} logits in the order of export.json's classes")
    return m


if __name__ == "__main__":
    from mnas.cli import hydra_main
    # `format=onnx,pt` would be a Hydra sweep; read it as the list format=[onnx,pt]
    sys.argv = [re.sub(r"^(format=)([^\[\]'\"]*,[^\[\]'\"]*)$", r"\1[\2]", a) for a in sys.argv]
    hydra_main("export", main)
