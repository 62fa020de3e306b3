"""Hydra at the edge: run a plain function from `python -m mnas.<cmd> key=value ...`, bad input as one line.

`hydra_main(config_name, fn)` checks config-group choices (device=, sampler=, data=, ...) before Hydra composes,
so an unknown choice is one line listing what exists and exit status 2 (Hydra's own message is several lines
and exit 1); then it calls `fn(cfg)` under `one_line_errors`.
"""
import re
import sys
import time
from pathlib import Path

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from mnas.errors import UserError, one_line_errors

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
RUNS_DIR = Path("runs")


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_overrides(argv: list[str]) -> None:
    """Exit 2 with one line when an override names a config-group option that does not exist."""
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and (CONF_DIR / key).is_dir() and value not in choices(key):
            print(f"error: unknown {key} {value!r}: available {', '.join(choices(key))}", file=sys.stderr)
            sys.exit(2)


def hydra_main(config_name: str, fn):
    """Entry point for `python -m mnas.<cmd>`: Hydra composes conf/<config_name>.yaml + overrides, fn(cfg) runs."""
    check_group_overrides(sys.argv[1:])
    wrapped = one_line_errors(fn)

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base=None)
    def _main(cfg: DictConfig):
        return wrapped(cfg)

    _main()


def to_plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def new_run_dir(command: str, device: str | None = None) -> Path:
    """runs/<command>/<device>/<timestamp>/, never an existing folder (a suffix is added if needed)."""
    base = RUNS_DIR / command / (device or "") / time.strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def resumed_config(c: dict, command: str, keep=()) -> dict:
    """For `resume=<run dir>`, every command's way: the config saved in that run's config.yaml, with the keys in
    `keep` taken from the command line instead (e.g. n_trials) and `resume` set. A folder without a readable
    config.yaml is a UserError naming the command."""
    run = Path(c["resume"])
    if not (run / "config.yaml").is_file():
        raise UserError(f"resume={run} is not a {command} run directory (no config.yaml there)")
    try:
        saved = yaml.safe_load((run / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{run / 'config.yaml'} does not parse ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(saved, dict):
        raise UserError(f"{run / 'config.yaml'} holds no {command} settings")
    return {**saved, **{k: c[k] for k in keep if k in c}, "resume": str(run)}


def open_run_dir(c: dict, command: str, device: str | None = None) -> Path:
    """The run directory of a command: the resumed one (c['resume']), else c['out_dir'] or a new
    runs/<command>/<device>/<time>/, made, with the resolved config written to its config.yaml."""
    if c.get("resume"):
        return Path(c["resume"])
    out = Path(c["out_dir"]) if c.get("out_dir") else new_run_dir(command, device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    return out


_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
MAX_MS = 60_000.0


def apply_preset(c: dict, key: str, presets: str, unnamed=()) -> str:
    """Fill every null key of config c from the preset c[presets][c[key]] (recipe=medium, scale=lean, ...); a
    preset that does not exist is a UserError. Returns the preset's name, followed by the keys given beside it
    that differ from it (but those in `unnamed`), for reports: 'medium (max_steps=600)'."""
    name = c[key]
    if name not in c[presets]:
        raise UserError(f"{key}={name!r} is invalid: use one of {', '.join(c[presets])}")
    changed = []
    for k, value in c[presets][name].items():
        if c.get(k) is None:
            c[k] = value
        elif c[k] != value and k not in unnamed:
            changed.append(f"{k}={c[k]}")
    return f"{name} ({', '.join(changed)})" if changed else name


def parse_ms(text, what: str = "budget") -> float:
    """'15ms', '15 ms', '0.015s', '15000us' (or a bare number of ms) -> 15.0; anything else is a UserError."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|us|µs)?", s)
    ms = float(m[1]) * _UNITS[m[2] or "ms"] if m else None
    if ms is None or not 0 < ms <= MAX_MS:
        raise UserError(f"{what} {text!r} is invalid: use a positive time up to {MAX_MS / 1000:g} s, "
                        f"like 15ms, '15 ms', 0.015s or 15000us")
    return ms
