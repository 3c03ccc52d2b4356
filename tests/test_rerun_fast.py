"""Re-running a study that already holds its n_trials finished trials (``accumopt study run SPEC`` after the demo,
the README's first everyday line) reports what it reported, and pays no numba warm-up and builds no feature: it
loads the panel (the data-fingerprint and folds refusals need it) and finds nothing to run. The refusals still
refuse: a complete study whose data changed is refused as before.

Oracles: a counter on ``warm_kernels`` and on the feature cache's ``z`` / ``warm`` (they were called on every
re-run before: the run warmed the kernels before looking at the study); the CLI's JSON report of the first run.
"""

from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from optimizer.cli import main as cli_main
from optimizer.engine.features import FeatureCache
from optimizer.errors import SpecError
from optimizer.study import run as run_mod
from optimizer.study.spec import parse_spec

SPEC = """
[study]
name = "again"
[data]
universe = "tier1+3"
reserve_fraction = 0.2
[space]
variant = { type = "categorical", choices = ["B", "C"] }
z_window = { type = "categorical", choices = [10, 20] }
buy_threshold = { type = "int", low = 60, high = 80, step = 10 }
sell_threshold = 30
exit = "fixed_10d"
time_stop = 20
[cv]
mode = "expanding"
n_splits = 2
[objective]
name = "composite_rank_excess"
aggregate = "mean"
min_trades = 1
[sampler]
name = "random"
seed = 3
[pruner]
name = "none"
[run]
n_trials = 3
"""


@pytest.fixture
def counted(monkeypatch):
    """Counts kernel warm-ups and feature computations in this process."""
    calls = {"warm": 0, "features": 0}
    real_warm, real_z, real_fwarm = run_mod.warm_kernels, FeatureCache.z, FeatureCache.warm

    def warm(*a, **k):
        calls["warm"] += 1
        return real_warm(*a, **k)

    def z(self, *a, **k):
        calls["features"] += 1
        return real_z(self, *a, **k)

    def fwarm(self, *a, **k):
        calls["features"] += 1
        return real_fwarm(self, *a, **k)

    monkeypatch.setattr(run_mod, "warm_kernels", warm)
    monkeypatch.setattr(FeatureCache, "z", z)
    monkeypatch.setattr(FeatureCache, "warm", fwarm)
    return calls


def _run(args):
    res = CliRunner().invoke(cli_main, args, catch_exceptions=False)
    return res


def test_rerun_of_a_complete_study_reports_the_same_without_warmup_or_features(synth_db, tmp_path, counted):
    spec = tmp_path / "again.toml"
    spec.write_text(SPEC, encoding="utf-8")
    args = ["study", "run", str(spec), "--db", str(synth_db), "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--format", "json"]
    first = _run(args)
    assert first.exit_code == 0, first.output
    assert counted["warm"] == 1 and counted["features"] > 0  # the first run warms and computes features
    counted.update(warm=0, features=0)
    again = _run(args)
    assert again.exit_code == 0, again.output
    a, b = json.loads(first.output), json.loads(again.output)
    assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0
    assert b == a and b["complete"] == 3
    assert counted == {"warm": 0, "features": 0}
    # a study with trials left still warms (once) before running them
    more = _run([*args, "--n-trials", "4"])
    assert more.exit_code == 0 and json.loads(more.output)["complete"] == 4
    assert counted["warm"] == 1 and counted["features"] > 0


def test_a_complete_study_on_changed_data_is_still_refused(synth_db, tmp_path, counted):
    db = tmp_path / "store.duckdb"
    db.write_bytes(synth_db.read_bytes())
    spec = parse_spec(SPEC)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert run_mod.run_study(spec, db, url).counts["complete"] == 3
    con = duckdb.connect(str(db))
    day = con.execute("SELECT min(date) FROM daily_metrics WHERE symbol = 'AAPL'").fetchone()[0]
    con.execute("UPDATE daily_metrics SET close = close * 1.01 WHERE symbol = 'AAPL' AND date = ?", [day])
    con.close()
    counted.update(warm=0, features=0)
    with pytest.raises(SpecError, match="different data"):
        run_mod.run_study(spec, db, url)
    assert counted == {"warm": 0, "features": 0}


def test_two_workers_never_both_pop_the_same_waiting_trial(tmp_path, monkeypatch):
    """``study run phase_b_fine --jobs 2`` (the README's line) enqueues phase A's seeds as WAITING trials. Optuna
    pops one by reading its state and then writing RUNNING; on SQLite the second worker could pop it between the
    first one's read and write, both ran it (the study ended with n_trials - 1 trials, or a worker died of
    UpdateFinishedTrialError). Here the second worker pops exactly there: exactly one of the two takes it."""
    import optuna
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    from optimizer.study.storage import make_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    a, b = make_storage(url), make_storage(url)
    study = optuna.create_study(study_name="pop", storage=a)
    study.enqueue_trial({"x": 1.0})
    tid = study.get_trials(deepcopy=False)[0]._trial_id
    real = models.TrialModel.find_or_raise_by_id
    popped, fired = [], []

    def read_then_other_pops(trial_id, session, for_update=False):
        model = real(trial_id, session, for_update=for_update)
        if model.state == TrialState.WAITING and not fired:  # worker A read WAITING; B pops before A writes
            fired.append(True)
            popped.append(("b", b.set_trial_state_values(trial_id, TrialState.RUNNING)))
        return model

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", staticmethod(read_then_other_pops))
    popped.append(("a", a.set_trial_state_values(tid, TrialState.RUNNING)))
    if len(popped) == 1:  # A took it in one statement: B comes after
        popped.append(("b", b.set_trial_state_values(tid, TrialState.RUNNING)))
    assert sorted(ok for _, ok in popped) == [False, True], popped
    monkeypatch.undo()
    assert [t.state for t in optuna.load_study(study_name="pop", storage=url).get_trials()] == [TrialState.RUNNING]
    a.set_trial_state_values(tid, TrialState.COMPLETE, [1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # a finished trial: Optuna's own error
        b.set_trial_state_values(tid, TrialState.RUNNING)
