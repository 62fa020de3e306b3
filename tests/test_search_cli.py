"""The search CLI as a user runs it: real processes, SIGKILL and resume, two workers on one study, bad input."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import postgres
import pytest
from conftest import TINY_SPACE

ROOT = Path(__file__).resolve().parents[1]



def search_cmd(tmp_path, *args, budget="1000ms"):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    return [sys.executable, "-m", "mnas.search", "device=pixel", f"budget={budget}", f"space.name={space}",
            "data=digits", "estimator=train", "estimator.max_steps=3", "estimator.threads=1", "sampler=random",
            "pipeline.enabled=false", *args]


def complete(storage) -> list:
    try:
        study = optuna.load_study(study_name="mnas-search", storage=storage)
    except KeyError:  # the database file exists, the study is not created in it yet
        return []
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def finished_in_sqlite(path) -> int:
    """Completed trials, read-only: polling through Optuna could race the worker's schema creation."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # no file, or no tables yet
        return 0


def test_sigkill_then_resume_keeps_every_finished_trial(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(search_cmd(tmp_path, "n_trials=8", f"out_dir={run}"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    storage = f"sqlite:///{run / 'study.db'}"
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if finished_in_sqlite(run / "study.db") >= 2:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t.user_attrs["arch"] for t in complete(storage)}
    assert 2 <= len(before) < 8, "the study should have been killed mid-way"
    r = subprocess.run(search_cmd(tmp_path, "n_trials=8", f"resume={run}"), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = complete(storage)
    assert len(after) == 8
    assert all(before[n] == t.user_attrs["arch"] for t in after if (n := t.number) in before)
    trials = pd.read_csv(run / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 8 and (trials["state"] == "RUNNING").sum() == 0


def test_rerank_added_to_a_finished_search_on_resume(tmp_path):
    """rerank.* is taken from the command line on resume (like n_trials): a finished search gains its second stage.
    At 1.3 ms on pixel (64x64 tiny space) MobileNetV1 0.25 (1.28 ms) is the one hand design within the budget."""
    run = tmp_path / "run"
    r = subprocess.run(search_cmd(tmp_path, "n_trials=4", f"out_dir={run}", budget="1.3ms"), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not (run / "rerank.csv").exists() and "re-rank" not in r.stdout  # rerank.k=0: no second stage
    rerank = ["rerank.k=1", "rerank.max_steps=1", "rerank.batch_size=8", f"rerank.cache_dir={tmp_path / 'cache'}"]
    r = subprocess.run(search_cmd(tmp_path, "n_trials=4", f"resume={run}", *rerank), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ranked = pd.read_csv(run / "rerank.csv")
    assert (ranked["kind"] == "search").sum() == 1
    assert list(ranked.loc[ranked["kind"] == "hand", "model"]) == ["MobileNetV1 0.25"]
    assert "re-rank, proxy validation accuracy after 1 steps" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("recommended (second stage, final): ")


def run_two_workers(tmp_path, storage):
    """Two search processes on one study, 6 trials asked for in all, started together; both must succeed."""
    procs = [subprocess.Popen(search_cmd(tmp_path, "n_trials=6", f"storage={storage}", f"seed={w}",
                                         f"out_dir={tmp_path / f'w{w}'}"), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for w in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


def test_two_workers_on_one_journal_finish_the_count_together(tmp_path):
    run_two_workers(tmp_path, f"journal:{tmp_path / 'shared.log'}")
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    done = complete(JournalStorage(JournalFileBackend(str(tmp_path / "shared.log"))))
    assert 6 <= len(done) <= 7  # MaxTrialsCallback: a worker may finish the one trial it had started


@pytest.fixture
def postgres_url():
    """A real server; CI (MNAS_REQUIRE_POSTGRES=1, set by .ci/run) fails rather than skips without one."""
    try:
        url, stop = postgres.start()
    except RuntimeError as e:
        if os.environ.get("MNAS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"MNAS_REQUIRE_POSTGRES=1 but {e}")
        pytest.skip(f"no PostgreSQL server could be started here: {e}")
    yield url
    stop()


def test_two_workers_on_one_postgresql_study_finish_the_count_together(tmp_path, postgres_url):
    run_two_workers(tmp_path, postgres_url)
    trials = optuna.load_study(study_name="mnas-search", storage=postgres_url).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 6 <= len(done) <= 7 and len({t.number for t in done}) == len(done)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)  # none lost half-way
    for w in range(2):  # each worker wrote the study as it saw it when it finished: never more than there is
        assert 1 <= (pd.read_csv(tmp_path / f"w{w}" / "trials.csv")["state"] == "COMPLETE").sum() <= len(done)


@pytest.mark.parametrize("args,match", [
    (["budget=-5ms"], "budget '-5ms' is invalid"), (["budget=abc"], "budget 'abc' is invalid"),
    (["budget=15 parsecs"], "is invalid"), (["budget=0"], "is invalid"), (["budget=1e9ms"], "is invalid"),
    (["device=nokia3310"], "unknown device 'nokia3310': available .*pixel"),
    (["sampler=annealing"], "unknown sampler 'annealing'"), (["budget=0.001ms"], "below the fastest arch"),
    (["n_trials=abc"], "n_trials='abc' is invalid: expected integer"),  # typed by the schema (SearchConfig)
    (["pipeline.enabled=maybe"], "pipeline.enabled='maybe' is invalid: expected true or false"),
    (["n_trails=5"], "unknown key 'n_trails'.*conf/search.yaml"),
    (["pipeline.steps=5"], "unknown key 'pipeline.steps'"),
    (["pipeline.prune_method=magic"], "pipeline.prune_method='magic' is invalid: use auto, surgery or oneshot"),
    (["pipeline.prune_method=oneshot"], "oneshot scores proposals on the search's supernet: use estimator=supernet"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, match):
    cmd = [a for a in search_cmd(tmp_path, f"out_dir={tmp_path / 'run'}") if not a.startswith("budget=")
           and (a != "pipeline.enabled=false" or "prune_method" not in " ".join(args))] + args
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and __import__("re").search(match, lines[0]), r.stderr
    assert not (tmp_path / "run").exists()
