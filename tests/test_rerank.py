"""The search's second stage (mnas.search.rerank): its top trials and the in-budget hand designs, trained."""
import json

import pandas as pd
import pytest

from mnas.compare.run import Recipe, cache_key
from mnas.data import load
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.stats import count
from mnas.search.estimators import TrainEstimator
from mnas.search.rerank import RerankSettings, confirm, decide, recipe_of, rerank
from mnas.search.study import SearchSettings, run_search

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = {"name": "digits", "val_size": 0.2, "proxy_resolution": 16}


def mac_latency(arch):
    """1 ms per MMAC: the tiny space's archs and MobileNetV3-Small 0.5 at 64x64 fit a 6 ms budget, V1 1.0 does not."""
    return count(arch).macs / 1e6


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_space):
    run = tmp_path_factory.mktemp("search")
    estimator = TrainEstimator(load("digits", val_size=0.2), max_steps=4, batch_size=32, resolution=16)
    run_search(tiny_space, mac_latency, estimator, SearchSettings(budget_ms=6, sampler="random", n_trials=5), run,
               progress=False)
    return run


def test_rerank_trains_the_top_trials_and_hand_designs_and_ships_by_the_spread(searched, tiny_space, tmp_path):
    before = json.loads((searched / "best.json").read_text())
    hand = [r["model"] for r in before["hand_designs"]]
    assert hand and "MobileNetV1 1.0" not in hand  # some hand designs fit, not all
    s = RerankSettings(k=2, seeds=2, first_seed=100, max_steps=3, batch_size=16, confirm=0, settle_steps=0,
                       cache_dir=str(tmp_path / "cache"))
    best = rerank(searched, tiny_space, DATA, s, progress=False)
    table = pd.read_csv(searched / "rerank.csv")
    assert sorted(table.loc[table["kind"] == "hand", "model"]) == sorted(hand)
    found = table[table["kind"] == "search"]
    assert 2 <= len(found) <= 3 and before["trial"] in set(found["trial"])  # top 2, plus the estimate's choice
    seeds = table["val_acc_per_seed"].str.split(";").map(lambda v: [float(x) for x in v])
    assert (seeds.map(len) == 2).all() and (abs(seeds.map(sum) / 2 - table["val_acc"]) < 1e-4).all()
    top = found.loc[found["val_acc"].idxmax()]
    assert best["trial"] == top["trial"] and best["arch"] == top["arch"]
    assert json.loads((searched / "best.json").read_text())["arch"] == top["arch"]
    hands = table[table["kind"] == "hand"]  # sorted by val_acc: the first is the best hand design
    wins = all(top["val_acc"] - h.val_acc > (top["val_std"] ** 2 + h.val_std ** 2) ** 0.5 for h in hands.itertuples())
    assert best["recommendation"]["ship"] == ("found" if wins else hands.iloc[0]["model"])
    assert best["rerank"]["wins"] == wins and best["rerank"]["trained_now"] == 2 * len(table)
    recipe = best["rerank"]["recipe"]  # the trainings use seeds 100, 101: none of mnas.compare's 0, 1, 2
    key = cache_key(ArchConfig.from_string(top["arch"]), 16, Recipe(**recipe), 101)
    assert (tmp_path / "cache" / f"{key}.json").exists()
    assert json.loads((tmp_path / "cache" / f"{key}.json").read_text())["seed"] == 101
    again = rerank(searched, tiny_space, DATA, s, progress=False)  # a rerun (resume) trains nothing
    assert again["rerank"]["trained_now"] == 0 and again["arch"] == best["arch"]


def test_decide_ships_the_find_only_beyond_the_combined_spread():
    def table(find, hand, std=0.01):
        return pd.DataFrame([dict(model="trial 3", kind="search", val_acc=find, val_std=std),
                             dict(model="MobileNetV3-Small 0.75", kind="hand", val_acc=hand, val_std=std)])
    assert decide(table(0.80, 0.78))["ship"] == "found"  # +2 points, spread 1.41
    close = decide(table(0.80, 0.79))  # +1 point, spread 1.41: a tie goes to the published design
    assert close["ship"] == "MobileNetV3-Small 0.75" and close["wins"] is False
    assert close["lead_points"] == pytest.approx(1.0) and close["spread_points"] == pytest.approx(2 ** 0.5)
    assert decide(table(0.78, 0.80))["ship"] == "MobileNetV3-Small 0.75"
    wide = pd.concat([table(0.80, 0.77), pd.DataFrame([dict(model="MobileNetV1 0.25", kind="hand", val_acc=0.76,
                                                            val_std=0.04)])])
    d = decide(wide)  # 4 points over V1 0.25, but its spread is 4.1: every hand design must be beaten
    assert d["ship"] == "MobileNetV3-Small 0.75" and d["rival"] == "MobileNetV1 0.25" and d["hand"] != d["rival"]
    alone = pd.DataFrame([dict(model="trial 3", kind="search", val_acc=0.7, val_std=0.01)])
    assert decide(alone)["ship"] == "found"


def test_a_winning_find_is_decided_on_fresh_seeds(searched, tmp_path):
    """The pick's seeds (100, 101) chose the find; its confirmation trains it on 102, 103 and decides on those alone,
    against the hand designs' trainings as they were."""
    best = json.loads((searched / "best.json").read_text())
    row = dict(model=f"trial {best['trial']}", kind="search", trial=best["trial"], latency_ms=1.0, macs=1.0,
               estimate=0.5, arch=ArchConfig.from_string(best["arch"]), proxy_resolution=16)
    s = RerankSettings(k=1, seeds=2, first_seed=100, max_steps=3, batch_size=16, cache_dir=str(tmp_path / "cache"))
    recipe = recipe_of(DATA, s)
    choice = dict(find=row["model"], hand="MobileNetV3-Small 0.5", rival="MobileNetV3-Small 0.5", lead_points=9.0,
                  spread_points=1.0, wins=True, ship="found")

    def hand(acc):
        return pd.DataFrame([dict(model=row["model"], kind="search", val_acc=0.99, val_std=0.0),
                             dict(model="MobileNetV3-Small 0.5", kind="hand", val_acc=acc, val_std=0.0)])
    beaten, fresh, trained = confirm(row, hand(0.0), choice, recipe, recipe.load_data(), s, progress=False)
    assert trained == 2 and beaten["confirm_seeds"] == [102, 103] and fresh["kind"] == "confirm"
    for seed in (102, 103):
        key = cache_key(row["arch"], 16, recipe, seed)
        assert json.loads((tmp_path / "cache" / f"{key}.json").read_text())["seed"] == seed
    accs = [float(v) for v in fresh["val_acc_per_seed"].split(";")]
    assert fresh["val_acc"] == pytest.approx(sum(accs) / 2, abs=1e-4)
    assert fresh["val_acc"] < 0.99  # its own trainings, not the pick's figure
    assert beaten["ship"] == "found" and beaten["selection"]["lead_points"] == 9.0
    assert beaten["lead_points"] == pytest.approx(100 * fresh["val_acc"])
    kept, _, again = confirm(row, hand(1.0), choice, recipe, recipe.load_data(), s, progress=False)
    assert again == 0  # cached
    assert kept["ship"] == "MobileNetV3-Small 0.5" and kept["wins"] is False and kept["selection"]["wins"] is True


@pytest.mark.parametrize("bad,msg", [({"seeds": 1}, "rerank.seeds=1"), ({"confirm": 1}, "rerank.confirm=1"),
                                     ({"k": -2}, "rerank.k=-2"), ({"lr": 0}, "rerank.lr=0"),
                                     ({"jobs": 0}, "rerank.jobs=0"),
                                     ({"settle_steps": -1}, "rerank.settle_steps=-1"),
                                     ({"settle_seeds": 1}, "rerank.settle_seeds=1")])
def test_bad_settings(bad, msg):
    with pytest.raises(UserError, match=msg):
        RerankSettings(**bad)


def test_the_second_stage_trains_the_width_that_fills_the_budget():
    """A filled width among best.json's hand designs (mnas.search.ship.hand_rivals) is a hand-design candidate of
    the second stage, built at its width, beside the published ones."""
    from mnas.nn.models import mobilenet_v3_small
    from mnas.nn.space import load_space
    from mnas.search.rerank import candidates
    space = load_space("v3_small")
    hand = [dict(model="MobileNetV3-Small 0.75", family="v3_small", variant=0.75, latency_ms=13.05, macs=39e6,
                 accuracy=None, filled=False),
            dict(model="MobileNetV3-Small 0.88 (width filling the budget)", family="v3_small", variant=0.88,
                 latency_ms=14.97, macs=47e6, accuracy=None, filled=True)]
    trials = pd.DataFrame(columns=["state", "estimated", "latency_ms", "baseline", "accuracy", "arch", "number"])
    rows = candidates(trials, dict(budget_ms=15.0, hand_designs=hand), space, k=2, proxy_resolution=32)
    assert [r["model"] for r in rows] == [h["model"] for h in hand] and all(r["kind"] == "hand" for r in rows)
    assert rows[1]["arch"] == mobilenet_v3_small(0.88) and rows[1]["latency_ms"] == 14.97


def test_a_tie_the_find_leads_is_settled_by_longer_trainings_of_the_close_ones(searched, tmp_path):
    """The find, and only the hand designs it does not beat beyond the spread, are trained settle_steps steps on
    settle_seeds fresh seeds; the decision is taken on those trainings."""
    from mnas.nn.models import mobilenet_v3_small
    from mnas.search.rerank import settle
    best = json.loads((searched / "best.json").read_text())
    arch = ArchConfig.from_string(best["arch"])
    rows = [dict(model="trial 1", kind="search", trial=1, latency_ms=5.0, macs=1.0, estimate=0.5, arch=arch,
                 proxy_resolution=16),
            dict(model="close", kind="hand", trial=None, latency_ms=5.0, macs=1.0, estimate=None,
                 arch=mobilenet_v3_small(0.5, resolution=64), proxy_resolution=16),
            dict(model="beaten", kind="hand", trial=None, latency_ms=5.0, macs=1.0, estimate=None,
                 arch=mobilenet_v3_small(0.75, resolution=64), proxy_resolution=16)]
    table = pd.DataFrame([dict(model="trial 1", kind="search", val_acc=0.80, val_std=0.01),
                          dict(model="close", kind="hand", val_acc=0.795, val_std=0.01),  # +0.5, spread 1.41
                          dict(model="beaten", kind="hand", val_acc=0.70, val_std=0.01)])
    choice = decide(table)
    assert choice["wins"] is False and choice["lead_points"] > 0
    s = RerankSettings(k=1, seeds=2, first_seed=100, max_steps=3, settle_steps=5, settle_seeds=3, batch_size=16,
                       cache_dir=str(tmp_path / "cache"))
    recipe = recipe_of(DATA, s)
    settled, final, trained, longer = settle(rows, table, choice, recipe, recipe.load_data(), s, progress=False)
    assert trained == 6 and longer.max_steps == 5 and set(settled["model"]) == {"trial 1", "close"}
    assert (settled["steps"] == 5).all() and (settled["seeds"] == 3).all()
    assert final["settle_seeds"] == [102, 103, 104]  # fresh: after the pick's 100, 101
    for seed in (102, 103, 104):
        assert (tmp_path / "cache" / f"{cache_key(arch, 16, longer, seed)}.json").exists()
    find, close = (settled[settled["model"] == m].iloc[0] for m in ("trial 1", "close"))
    assert final["find"] == "trial 1" and final["pick"]["rival"] == "close" and final["settle_steps"] == 5
    assert final["lead_points"] == pytest.approx(100 * (find["val_acc"] - close["val_acc"]))
    assert final["ship"] == ("found" if final["wins"] else "close")
