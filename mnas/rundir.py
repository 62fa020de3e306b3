"""What a run directory names: the deployment arch that a search, prune or train run (or a file, or a string) holds.

    arch_of("runs/search/pixel/<time>")        best.json's arch (the search's choice)
    arch_of("runs/search/pixel/<time>/prune")  arch.json (the pruned arch), as for a train run
    arch_of("best.json" | "arch.json")         the file itself
    arch_of("r224-in3-stem_k3_s2_c16_hswish-...")  an arch string
Anything else is one UserError line saying what is accepted.
"""
import json
import re
from pathlib import Path

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig

ACCEPTED = ("a search run directory (best.json), a prune or train run directory (arch.json), a best.json or "
            "arch.json file, or an arch string (r224-in3-stem_...)")


def arch_of(spec) -> tuple[ArchConfig, str]:
    """(deployment ArchConfig, where it was read: a file path or 'arch string') of `spec` (see the module)."""
    text = str(spec)
    if re.match(r"r\d+-", text) and "/" not in text:  # an arch string (too long for a file name, often)
        try:
            return ArchConfig.from_string(text), "arch string"
        except ValueError as e:
            raise UserError(f"arch={text[:60]!r} is not a valid arch string ({e}): pass {ACCEPTED}") from None
    path = Path(text)
    if path.is_dir():
        for name in ("best.json", "arch.json"):
            if (path / name).is_file():
                return _read(path / name), str(path / name)
        raise UserError(f"{path} holds neither best.json nor arch.json: pass {ACCEPTED}")
    if path.is_file():
        return _read(path), str(path)
    raise UserError(f"{text} not found: pass {ACCEPTED}")


def _read(path: Path) -> ArchConfig:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} does not parse as JSON ({e}): pass {ACCEPTED}") from None
    try:
        if isinstance(d, dict) and "arch" in d and "stem" not in d:  # a search's best.json
            if not d["arch"]:
                raise UserError(f"{path} names no arch (no trial of that search met its budget)")
            return ArchConfig.from_string(d["arch"])
        return ArchConfig.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path} holds no valid arch ({e}): pass {ACCEPTED}") from None
