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
    for width in (0.5, 0.75, 1.0):  # the width-multiplied hand designs are points of the space
        v3 = get_model("mobilenet_" + name, width)
        params = space.params_for(v3)
        assert params is not None and space.sample(lambda n, o: params[n]) == v3, width
    assert {"stem_out", "head_out", "hidden_out"} <= set(params)
    assert space.params_for(get_model("mobilenet_" + name, 1.25)) is None
    assert space.params_for(get_model("mobilenet_v2")) is None
    stems = {space.random_arch(rng).stem.out for _ in range(40)}
    assert stems == set(space.stem_out) and len(stems) > 1  # the stem's width is sampled too


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


def test_stem_head_and_hidden_widths_as_choices(tmp_path):
    """`out: [..]` on the stem, head and hidden layer makes their widths choices: asked by name, enumerated in
    ops(), counted in the size; a single value stays fixed and is never asked."""
    text = TINY_SPACE.replace("stem: {kernel: 3, stride: 2, out: 8,", "stem: {kernel: 3, stride: 2, out: [4, 8],")
    text = text.replace("head: {out: 64,", "head: {out: [32, 64],")
    text = text.replace("hidden: {out: 0,", "hidden: {out: [0, 16],")
    (tmp_path / "w.yaml").write_text(text)
    space = load_space(str(tmp_path / "w.yaml"))
    assert space.size == 8 * load_space_text(tmp_path, TINY_SPACE).size
    asked = {}
    arch = space.sample(lambda n, o: asked.setdefault(n, o[-1]))
    assert asked["stem_out"] == 8 and asked["head_out"] == 64 and asked["hidden_out"] == 16
    assert (arch.stem.out, arch.features, arch.hidden) == (8, 64, 16)
    rng, seen = random.Random(2), set()
    for _ in range(3000):
        seen |= set(arch_ops(space.random_arch(rng)))
    assert seen == space.ops()
    narrow = space.sample(lambda n, o: o[0])
    assert (narrow.stem.out, narrow.features, narrow.hidden) == (4, 32, 0)
    assert space.params_for(narrow)["hidden_out"] == 0
    assert space.params_for(narrow.replace(hidden=8)) is None and space.params_for(arch.replace(hidden=8)) is None


def load_space_text(tmp_path, text):
    (tmp_path / "plain.yaml").write_text(text)
    return load_space(str(tmp_path / "plain.yaml"))


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
    (lambda s: s.replace("head: {out: 64,", "head: {out: [],"), "head.out"),
    (lambda s: s.replace("stem: {kernel: 3, stride: 2, out: 8,", "stem: {kernel: 3, stride: 2, out: [8, 0],"),
     "stem.out"),
])
def test_malformed_space_names_the_key(tmp_path, edit, match):
    p = tmp_path / "bad.yaml"
    p.write_text(edit(TINY_SPACE))
    with pytest.raises(UserError, match=match):
        load_space(str(p))
