"""The exported model.onnx of the Fashion-MNIST training, run as a user would ship it: each of the 10000 test PNG
files prepared by mnas.data.prepare_image and classified by onnxruntime (1 thread). Its accuracy should be the
trainer's test_acc (the same images, preprocessing and weights).

    .venv/bin/python runs/results/train-fmnist-imagefolder-20261207/check_onnx.py runs/train/fmnist-v3s088-224 \
        runs/data/fmnist-tree

The training ran before the preprocessing was recorded at training time (2026-12-07, evening), so when export.json
lacks it, the record is rebuilt from the run's settings: stored at ceil(224 * 8 / 7) = 256 px, central 7/8, and
the training split's mean and std, recomputed by loading the data as the run did (seeded, deterministic).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from mnas import data

run, root = Path(sys.argv[1]), Path(sys.argv[2])
m = json.loads((run / "export" / "export.json").read_text())
spec = m.get("preprocess")
if not spec:
    c = yaml.safe_load((run / "config.yaml").read_text())
    side = -(-m["resolution"] * 8 // 7)
    ds = data.load("imagefolder", root=str(root), val_size=c["val_size"], seed=c["seed"], image_size=side,
                   cache_dir="runs/data")
    spec = dict(image_size=side, crop=0.875, resolution=m["resolution"], mean=list(ds.train.mean),
                std=list(ds.train.std))
classes = m.get("classes") or sorted(p.name for p in (root / "train").iterdir())
opts = ort.SessionOptions()
opts.intra_op_num_threads = opts.inter_op_num_threads = 1
sess = ort.InferenceSession(str(run / "export" / "model.onnx"), opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
right = total = 0
confusion = np.zeros((len(classes), len(classes)), int)
start = time.perf_counter()
for label, c in enumerate(classes):
    for f in sorted((root / "test" / c).iterdir()):
        pred = int(sess.run(None, {name: data.prepare_image(f, spec)})[0].argmax())
        confusion[label, pred] += 1
        right += pred == label
        total += 1
print(f"model.onnx on {total} test files: accuracy {right / total:.4f} ({time.perf_counter() - start:.0f} s); "
      f"preprocess {json.dumps({k: (np.round(v, 4).tolist() if k in ('mean', 'std') else v) for k, v in spec.items()})}")
print("per class:", ", ".join(f"{c} {confusion[i, i] / confusion[i].sum():.3f}" for i, c in enumerate(classes)))
