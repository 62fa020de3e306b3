"""Issue 29's width-multiplied rival chosen by *measured* latency (mnas.prune.run.measured_width), trained with the
same recipe and seeds as the one-shot run of ../prune-v2-oneshot-cpu-fc/, whose pruned and unpruned rows (3 runs
each, the same host type) are reused; then all three networks measured side by side and summarized as mnas.prune
does. usage: python rival.py <out dir>"""
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

from mnas.data import config_args, load
from mnas.latency import Device
from mnas.nn.arch import ArchConfig
from mnas.nn.models import get_model
from mnas.prune.run import compare_width, format_checks, summarize_compare
from mnas.prune.settings import Settings

if __name__ == "__main__":
    src = Path(__file__).parent.parent / "prune-v2-oneshot-cpu-fc"
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    c = yaml.safe_load((src / "config.yaml").read_text())
    result = json.loads((src / "result.json").read_text())
    if not (out / "compare.csv").exists():
        rows = pd.read_csv(src / "compare.csv")
        rows[rows.network.isin(["pruned", "unpruned mobilenet_v2 x1"])].to_csv(out / "compare.csv", index=False)
    s = Settings.from_config(c, proxy_resolution=c["data"].get("proxy_resolution", 32))
    dev = Device(c["device"]["name"])
    data = load(**config_args(c["data"], c["seed"]))
    deploy = get_model(c["model"], c["width"], c["resolution"])
    table = compare_width(c["model"], c["width"], deploy, result["final"], data, result["total_steps"], dev,
                          dev.measure_fn(c["measure_repeats"]), out, c["lr"], s, c["max_stride"], True,
                          c["compare_seeds"])
    summary, checks = summarize_compare(table)
    print(summary.to_string(index=False))
    print(format_checks(checks))
    networks = summary.astype(object).where(summary.notna(), None).to_dict("records")
    (out / "compare.json").write_text(json.dumps({"networks": networks, "checks": checks}, indent=2, default=float))
    shutil.copy(src / "arch.txt", out / "pruned_arch.txt")
    print(ArchConfig.from_string(result["final"]["arch"]).to_string()[:80])
