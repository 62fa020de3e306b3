"""Search spaces: loading and validation, define-by-run sampling, op enumeration, baselines as points."""
import random

import optuna
import pytest
from conftest import TINY_SPACE

from mnas.errors import UserError
from mnas.nn.models import get_model
from mnas.nn.ops import arch_ops
from mnas.nn.space import available_spaces, load_space


@pytest.fixture
def tiny(tiny_space):
    return tiny_space


@pytest.mark.parametrize("name", ["v3_small", "v3_large"])
def test_shipped_spaces_contain_their_v3_and_all_sampled_ops(name):
    space = load_space(name)
    ops = space.ops()
    rng = random.Random(0)
    for _ in range(50):
        arch = space.random_arch(rng)
        assert set(arch_ops(arch)) <= ops
        params = space.params_for(arch)
        assert space.sample(lambda n, o: params[n]) == arch
    v3 = get_model("mobilenet_" + name)
    assert space.params_for(v3) is not None
    assert space.params_for(get_model("mobilenet_v2")) is None


def test_define_by_run_with_optuna(tiny):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    depths = set()
    for _ in range(20):
        trial = study.ask()
        arch = tiny.sample(trial.suggest_categorical)
        depth = trial.params["s0_depth"]
        depths.add(depth)
        # only the blocks the sampled depth creates are asked for
        assert ("s0_b1_kernel" in trial.params) == (depth == 2)
        assert len(arch.blocks) == trial.params["s0_depth"] + trial.params["s1_depth"]
        study.tell(trial, 0.0)
    assert depths == {1, 2}


def test_ops_cover_the_space_exactly(tiny):
    ops = tiny.ops()
    rng = random.Random(1)
    seen = set()
    for _ in range(3000):
        seen |= set(arch_ops(tiny.random_arch(rng)))
    assert seen == ops  # enumerates nothing the space cannot produce, misses nothing it can


def test_extremes_and_size(tiny):
    from mnas.nn.stats import count
    assert count(tiny.extreme(True)).macs > count(tiny.extreme(False)).macs
    assert tiny.size == 2 * (16 + 16 ** 2) * 2 * (16 + 16 ** 2)


def test_unknown_space_lists_available():
    with pytest.raises(UserError, match="v3_small"):
        load_space("nope")
    assert {"v3_small", "v3_large"} <= set(available_spaces())


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.replace("stride: 2}\n  - {depth", "stride: 2, colour: red}\n  - {depth"), "colour"),
    (lambda s: s.replace("kernel: [3, 5]", "kernel: [3, 4]"), "kernel"),
    (lambda s: s.replace("act: [relu, hswish]}", "act: [relu, gelu]}"), "act"),
    (lambda s: s.replace("name: tiny", "name: tiny\nwidth: 2"), "width"),
    (lambda s: s.replace("depth: [1, 2], out: [8, 16]", "depth: [], out: [8, 16]"), "depth"),
    (lambda s: s + "\n  bad: [", "YAML"),
])
def test_malformed_space_names_the_key(tmp_path, edit, match):
    p = tmp_path / "bad.yaml"
    p.write_text(edit(TINY_SPACE))
    with pytest.raises(UserError, match=match):
        load_space(str(p))
