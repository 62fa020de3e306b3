"""Every command with a schema composes to the same values with and without it: the structured configs type the
keys, they change no default (issue 31: behaviour unchanged)."""
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import mnas.bench.proxy_check  # noqa: F401 - each command module registers its <command>_schema
import mnas.bench.rank_check  # noqa: F401
import mnas.bench.supernet_speed  # noqa: F401
import mnas.compare.__main__  # noqa: F401
import mnas.export  # noqa: F401
import mnas.latency.__main__  # noqa: F401
import mnas.prune.__main__  # noqa: F401
import mnas.search.__main__  # noqa: F401
import mnas.supernet.__main__  # noqa: F401
import mnas.train.__main__  # noqa: F401

CONF = Path(__file__).resolve().parents[1] / "conf"
COMMANDS = ["search", "train", "export", "compare", "prune", "latency", "supernet", "rank_check", "proxy_check",
            "supernet_speed"]


def composed(conf_dir: Path, name: str, overrides: list) -> dict:
    with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
        return OmegaConf.to_container(compose(name, overrides=overrides), resolve=True)


@pytest.mark.parametrize("name,overrides", [(c, []) for c in COMMANDS] + [
    ("search", ["device=cpu", "budget=5ms", "n_trials=40", "pipeline.prune=null"]),
    ("prune", ["scale=lean", "target=12ms", "jobs=2"]), ("compare", ["recipe=medium", "families=[v2,v3_small]"]),
    ("rank_check", ["iso_ms=15", "seeds=[0,1]", "standalone.max_steps=1000", "jobs=0"]),
    ("supernet", ["estimator.epochs=3", "max_steps=5"]), ("latency", ["verb=fidelity", "spaces=[v3_small,v3_large]"])])
def test_schemas_change_no_value(tmp_path, name, overrides):
    bare = tmp_path / "conf"
    shutil.copytree(CONF, bare)
    yaml_file = bare / f"{name}.yaml"
    lines = yaml_file.read_text().splitlines(keepends=True)
    assert sum(f"- {name}_schema" in x for x in lines) == 1  # the schema comes first in the defaults
    yaml_file.write_text("".join(x for x in lines if f"- {name}_schema" not in x))
    typed, plain = composed(CONF, name, overrides), composed(bare, name, overrides)
    assert all(typed[k] is None for k in set(typed) - set(plain))  # a group left unchosen (compare's data: null)
    typed = {k: v for k, v in typed.items() if k in plain}
    assert typed == plain  # the same values, and the same types but for a number a float key now types (15 -> 15.0)
    assert [type(v) for v in typed.values()] == [float if type(v) is float and type(plain[k]) is int
                                                  else type(plain[k]) for k, v in typed.items()]
