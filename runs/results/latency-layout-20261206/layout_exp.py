"""Issue 28 experiment: does an op table timed with onnxruntime's layout optimisation off (ORT_ENABLE_EXTENDED:
no NCHWc reorders at each one-op model's edges) predict whole networks timed with every optimisation on (what
onnxruntime_perf_test runs) better than the current table? Leave-one-family-out error of each predictor.

    python runs/results/latency-layout-20261206/layout_exp.py <out dir>
"""
import io
import random
import sys
import time
import warnings
from pathlib import Path

import onnxruntime as ort
import pandas as pd
import torch

from mnas.latency.__main__ import pruned_archs
from mnas.latency.predict import op_latencies
from mnas.latency.profile import op_module, summarize, time_alone, time_interleaved
from mnas.nn.models import build, hand_designs
from mnas.nn.ops import arch_ops
from mnas.nn.space import load_space

LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "ext": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def runner(module, x, level):
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = LEVELS[level]
    so.log_severity_level = 3
    s = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: s.run(None, feed)


def main(out: Path, n: int = 20):
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in ("v3_small", "v3_large"):
        sp, rng = load_space(name), random.Random(1)
        rows += [(f"{name} random", f"random {i}", sp.random_arch(rng)) for i in range(n)]
    rows += [(f, nm, a) for f, _, nm, a in hand_designs()]
    rows += pruned_archs(12, 1)
    archs = [a for *_, a in rows]
    t0 = time.time()
    # whole networks, both levels, each alone and warm
    nets = {}
    for level in LEVELS:
        ms = []
        for i in range(0, len(archs), 10):
            rs = [runner(build(a).eval(), torch.randn(1, 3, a.resolution, a.resolution), level)
                  for a in archs[i:i + 10]]
            ms += list(summarize(time_alone(rs, 60, 10), "min")["ms"])
        nets[level] = ms
        print(f"networks at {level}: {time.time() - t0:.0f} s", flush=True)
    # op table at the ext level for these networks' ops (the 'all' table is the device's own, built today)
    keys = list(dict.fromkeys(k for a in archs for k in arch_ops(a)))
    ext = {}
    for i in range(0, len(keys), 64):
        batch = keys[i:i + 64]
        rs = [runner(*op_module(k), "ext") for k in batch]
        for k, m in zip(batch, summarize(time_interleaved(rs, 100, 5), "min")["ms"]):
            ext[k] = m
    print(f"{len(keys)} ops at ext: {time.time() - t0:.0f} s", flush=True)
    df = pd.DataFrame({"family": [f for f, *_ in rows], "name": [nm for _, nm, _ in rows],
                       "arch": [a.to_string() for a in archs], "net_all": nets["all"], "net_ext": nets["ext"],
                       "ops_all": [sum(op_latencies(a, "cpu")) for a in archs],
                       "ops_ext": [sum(ext[k] for k in arch_ops(a)) for a in archs],
                       "n_ops": [len(arch_ops(a)) for a in archs]})
    df.to_csv(out / "layout.csv", index=False)
    print(df.groupby("family")[["net_all", "net_ext", "ops_all", "ops_ext"]].mean().round(2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
