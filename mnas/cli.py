"""Hydra at the edge: run a plain function from `python -m mnas.<cmd> key=value ...`, bad input as one line.

`hydra_main(config_name, fn)` checks config-group choices (device=, sampler=, data=, ...) before Hydra composes,
so an unknown choice is one line listing what exists and exit status 2 (Hydra's own message is several lines
and exit 1); then it composes the config once as Hydra will, so that an unknown key, a value of the wrong type
for a command with a schema (a structured config registered as `<command>_schema`, e.g. n_trials=abc) or an
unparsable override is one line and exit 2 as well; then it calls `fn(cfg)` under `one_line_errors`.
"""
import os
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


def compose_error(e: BaseException, config_name: str) -> str:
    """One line for a Hydra/OmegaConf composition failure: which key, what was wrong, what is accepted."""
    chain = [e]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    text = "\n".join(str(x) for x in chain)
    key = re.search(r"full_key: ([\w.\[\]]+)", text)
    if m := re.search(r"Key '([^']+)' (?:is not in struct|not in '\w+')", text):
        where = f"{key[1].rpartition('.')[0]}." if key and "." in key[1] else ""
        return (f"unknown key '{where}{m[1]}': the keys are those of conf/{config_name}.yaml "
                f"(and of the config groups it names)")
    if m := re.search(r"Value '([^']*)'(?: of type '\w+')? (?:could not be converted to|is not a valid) (\w+)", text):
        kind = {"bool": "true or false"}.get(m[2].lower(), m[2].lower())
        return f"{key[1] if key else 'a value'}={m[1]!r} is invalid: expected {kind}"
    first = next((line.strip() for x in chain for line in str(x).splitlines() if line.strip()), type(e).__name__)
    if type(e).__name__ == "OverrideParseException":
        return f"an override does not parse ({first}): write key=value, e.g. budget=15ms or 'seeds=[0,1]'"
    return f"{key[1]}: {first}" if key else first


def check_composes(config_name: str, argv: list[str]) -> None:
    """Compose conf/<config_name>.yaml with the overrides as Hydra is about to; a failure is one line, exit 2."""
    if any(a.startswith("-") for a in argv) or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return  # Hydra's own flags (--help, --cfg, ...) and full reports: leave them to Hydra
    from hydra import compose, initialize_config_dir
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            compose(config_name, overrides=argv)
    except Exception as e:  # noqa: BLE001 - hydra and omegaconf raise several types for bad overrides
        print(f"error: {compose_error(e, config_name)}", file=sys.stderr)
        sys.exit(2)


def register_schema(config_name: str, schema) -> None:
    """Make the dataclass `schema` the structured config `<config_name>_schema` that conf/<config_name>.yaml
    lists first in its defaults: Hydra then types and checks every key of the command against it."""
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name=f"{config_name}_schema", node=schema)


def hydra_main(config_name: str, fn):
    """Entry point for `python -m mnas.<cmd>`: Hydra composes conf/<config_name>.yaml + overrides, fn(cfg) runs."""
    check_group_overrides(sys.argv[1:])
    check_composes(config_name, sys.argv[1:])
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


def preset_label(c: dict, group: str, unnamed=()) -> str:
    """The preset a command ran with (a config group whose file sets top-level keys: conf/scale/<name>.yaml for
    mnas.prune, conf/recipe/<name>.yaml for mnas.compare), followed by the keys set beside it to other values
    (but those in `unnamed`), for reports: 'medium (max_steps=600)'."""
    name = c[group]
    changed = [f"{k}={c[k]}" for k, v in preset(group, name).items() if k not in unnamed and c.get(k) != v]
    return f"{name} ({', '.join(changed)})" if changed else name


def preset(group: str, name: str) -> dict:
    """The keys a preset sets (conf/<group>/<name>.yaml), for code that runs it outside its command (the search
    pipeline's pruning); an unknown name is a UserError listing the presets."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"{group}={name!r} is invalid: use one of {', '.join(choices(group))}")
    return {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != group}


def parse_ms(text, what: str = "budget") -> float:
    """'15ms', '15 ms', '0.015s', '15000us' (or a bare number of ms) -> 15.0; anything else is a UserError."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|us|µs)?", s)
    ms = float(m[1]) * _UNITS[m[2] or "ms"] if m else None
    if ms is None or not 0 < ms <= MAX_MS:
        raise UserError(f"{what} {text!r} is invalid: use a positive time up to {MAX_MS / 1000:g} s, "
                        f"like 15ms, '15 ms', 0.015s or 15000us")
    return ms
