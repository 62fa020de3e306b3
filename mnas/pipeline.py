"""After the search: fine-tune the best arch, prune it NetAdapt-style toward an extra speed-up, export it.

`python -m mnas.search` runs this on its run directory when the search found an arch within budget:
    <run>/model.pt           the best arch's proxy network, weights inherited from the supernet (or from scratch
                             with estimator=train), fine-tuned
    <run>/prune/             mnas.prune's run on it (history.csv, path.png, model.pt, arch.json, result.json)
    <run>/export/            mnas.export of the pruned model (arch JSON/string, model.pt, model.onnx checked)
Each step is skipped when its output exists, so a rerun with resume=<run> finishes what a kill interrupted.
"""
import json
from dataclasses import dataclass, replace
from pathlib import Path

from mnas.cli import preset
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch
from mnas.train import evaluate, fit, load_checkpoint, save_checkpoint


@dataclass
class PipelineSettings:
    finetune_steps: int = 300      # fine-tune of the best arch before pruning (inherited weights need little)
    lr: float = 0.02
    prune: str | None = "0.9x"     # extra speed-up target for NetAdapt after the budget (null = no pruning)
    prune_scale: str = "quick"     # NetAdapt preset of conf/prune.yaml: quick | full | lean
    prune_method: str = "auto"     # auto | surgery | oneshot (proposals scored as slimmings of the search's supernet)
    export: str | None = "json,string,pt,onnx"  # formats (null = no export)
    max_stride: int = 8
    resolution: int = 32
    batch_size: int = 128
    seed: int = 0

    def check(self, estimator: str) -> str:
        """The pruning method this search runs (auto: oneshot on a supernet estimator, surgery otherwise); UserError
        for one it cannot run (before the search starts)."""
        from mnas.prune.oneshot import METHODS
        if self.prune_method not in ("auto", *METHODS):
            raise UserError(f"pipeline.prune_method={self.prune_method!r} is invalid: use auto, "
                            f"{' or '.join(METHODS)}")
        if self.prune and self.prune_method == "oneshot" and estimator != "supernet":
            raise UserError("pipeline.prune_method=oneshot scores proposals on the search's supernet: use "
                            "estimator=supernet, or pipeline.prune_method=surgery")
        if self.prune_method == "auto":
            return "oneshot" if estimator == "supernet" else "surgery"
        return self.prune_method


def finetune_best(run: Path, arch: ArchConfig, estimator, data, p: PipelineSettings, progress: bool = True,
                  start: ArchConfig | None = None, scratch: bool = False):
    """<run>/model.pt: the best arch's proxy network, inherited weights when the estimator has them (with `start`,
    as a slimming of that arch of the space: a derived fill; `scratch`: none), fine-tuned."""
    path = run / "model.pt"
    if path.exists():
        return load_checkpoint(str(path))
    if scratch:
        model, source = build(proxy_arch(arch, data.num_classes, p.max_stride)), "scratch"
    else:
        model, source = estimator.start_model(arch, start), estimator.weights
    metrics = fit(model, data, epochs=None, max_steps=p.finetune_steps, batch_size=p.batch_size, lr=p.lr,
                  resolution=p.resolution, seed=p.seed, progress=progress)
    test_acc = evaluate(model, data.test, p.resolution)[0]
    save_checkpoint(str(path), model, dict(source=source, steps=p.finetune_steps, val_acc=metrics["val_acc"],
                                           test_acc=test_acc))
    print(f"fine-tuned the best arch ({source} weights, {p.finetune_steps} steps): proxy val "
          f"{100 * metrics['val_acc']:.2f}%, test {100 * test_acc:.2f}% -> {path}")
    return model


def run_pipeline(run: Path, estimator, data, latency_fn, device: str, p: PipelineSettings, progress: bool = True):
    """Fine-tune -> prune -> export the best arch of the search in `run` (see the module doc)."""
    from mnas.export import export
    from mnas.prune.oneshot import OneShot
    from mnas.prune.run import run_prune
    from mnas.prune.settings import Settings
    from mnas.search.estimators import SupernetEstimator

    best = json.loads((run / "best.json").read_text())
    if not best.get("arch"):
        print("no arch met the budget: nothing to fine-tune, prune or export")
        return None
    arch = ArchConfig.from_string(best["arch"])
    fill = next((r for r in best.get("derived_fills") or [] if r["arch"] == best["arch"]), None)
    start = ArchConfig.from_string(fill["start"]) if fill and fill.get("start") else None
    if fill is not None and start is None:  # no point of the space holds it: its weights start from scratch
        print(f"the find ({fill['model']}) is not a slimming of a point of the space: its {p.finetune_steps} "
              "fine-tune steps start from scratch")
    model = finetune_best(run, arch, estimator, data, p, progress, start, scratch=fill is not None and start is None)
    source = run
    if p.prune and fill is not None:  # one-shot NetAdapt slims points of the space; surgery works on any network
        p = replace(p, prune_method="surgery")
        print("the find is a derived fill, not a point of the space: pruned by surgery (torch-pruning cuts)")
    if p.prune:
        try:
            schedule = preset("scale", p.prune_scale)  # mnas.prune's presets, conf/scale/<name>.yaml
        except UserError as e:
            raise UserError(f"pipeline.prune_scale: {e}") from None
        s = Settings.from_config(schedule, proxy_resolution=p.resolution, seed=p.seed)
        method = p.check("supernet" if isinstance(estimator, SupernetEstimator) else "other")
        oneshot, slimmable = None, None
        print(f"pruning toward {p.prune} ({method}: " + ("each proposal a slimming of the search's supernet)"
                                                         if method == "oneshot" else "torch-pruning cuts, fine-tuned)"))
        if method == "oneshot":  # the search's supernet scores the slimmings: no second training
            oneshot = OneShot(final_init="finetune")
            slimmable = estimator.supernet.slimmings(arch, min_width=oneshot.min_width, step=s.step,
                                                     min_channels=s.min_channels)
        try:
            result = run_prune(arch, data, p.prune, latency_fn, run / "prune", s, checkpoint=str(run / "model.pt"),
                               init="checkpoint", final_steps=p.finetune_steps, max_stride=p.max_stride,
                               device=device, progress=progress, oneshot=oneshot, slimmable=slimmable)
        except UserError as e:  # e.g. a target the arch cannot reach: the search's own results stand
            print(f"pruning not done: {e}")
        else:
            print(f"pruned: {result['start_ms']:.2f} -> {result['final']['latency_ms']:.2f} ms predicted "
                  f"({result['speedup_predicted']:.2f}x), proxy test {100 * result['final']['test_acc']:.2f}% after "
                  f"{p.finetune_steps} fine-tune steps (short: mnas.compare retrains it from scratch to compare)")
            source = run / "prune"
    if p.export and not (run / "export").exists():
        manifest = export(source, run / "export", formats=p.export)
        print(f"exported {', '.join(manifest['files'])} -> {run / 'export'}")
    rec = best.get("recommendation") or {}
    if rec.get("ship") not in (None, "found"):  # the last line the user reads: what to ship is not what was exported
        print(f"note: {run / 'export'} holds the search's find; the recommendation is {rec['ship']}, a hand design"
              + (f": {rec['train']}" if rec.get("train") else ""))
    return model
