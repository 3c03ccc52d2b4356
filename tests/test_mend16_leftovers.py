"""Defects the last audits noticed and left (mend16): studies, walk-forward, backtest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optimizer.data import store as store_mod
from optimizer.data.store import connect
from tests._cli_helpers import cli, ok, one_line_error
from tests.test_mend15_leftovers import _release_on_try, held

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "studies" / "demo.toml"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    return db


# ------------------------------------------------------------------ 1. walkforward waits for a held store when asked
def test_walkforward_waits_for_a_writer_only_when_asked(store, tmp_path, monkeypatch):
    """A walk-forward started by cron while `evening` wrote the store exited 2 at once: the command had no --wait
    (fails before: no such option --wait)."""
    args = ("walkforward", DEMO_SPEC, "--db", store, "--out", tmp_path / "out",
            "--storage", f"sqlite:///{tmp_path / 'st.db'}")
    with held(store, "rw") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --wait"))
        one_line_error(cli(*args), f"database {store} is being written by another process", f"PID {h.pid})")
        pauses = _release_on_try(monkeypatch, h, 2)
        res = cli(*args, "--wait", "30")
    assert len(pauses) == 2 and f"waiting up to 30 s for database {store}" in res.stderr
    # it opened the store once the writer let go: the empty store's own error, not the held store's
    assert res.exit_code == 2 and "being written" not in res.stderr.split("error: ", 1)[1]


def test_a_walkforward_worker_waits_for_the_store_with_store_wait_and_for_its_coordinator_with_wait(
        store, tmp_path, monkeypatch):
    """The worker's --wait stays the coordinator's; the store's wait is --store-wait (fails before: no such option)."""
    from optimizer.validate import walkforward as wf

    seen: list[float] = []

    def worker(spec, db, url, jobs=1, wait=60.0, on_ready=None, on_note=None):
        seen.append(wait)
        connect(db, read_only=True).close()  # the worker's first reading of the store
        return ["w0"]

    monkeypatch.setattr(wf, "run_walkforward_worker", worker)
    args = ("walkforward", "worker", DEMO_SPEC, "--db", store, "--out", tmp_path / "out", "--format", "json")
    with held(store, "rw") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --store-wait"))
        one_line_error(cli(*args, "--wait", "5"), f"database {store} is being written", f"PID {h.pid})")
        pauses = _release_on_try(monkeypatch, h, 1)
        res = ok(cli(*args, "--wait", "5", "--store-wait", "20"))
    assert len(pauses) == 1 and f"waiting up to 20 s for database {store}" in res.stderr
    assert seen == [5.0] and '"windows_run"' in res.stdout


@pytest.mark.parametrize("args,flag", [(("walkforward", str(DEMO_SPEC), "--wait", "-1"), "--wait"),
                                       (("walkforward", "worker", str(DEMO_SPEC), "--store-wait", "nan"), "--store-wait")])
def test_walkforward_refuses_a_bad_store_wait_naming_its_flag(tmp_path, args, flag):
    res = cli(*args, "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out")
    one_line_error(res, f"{flag} must be a finite number of seconds >= 0")
    assert not (tmp_path / "s.duckdb").exists()


# ------------------------------------------------------------------ 2. a storage failing mid-run is named
def _failing_write(monkeypatch, after: int) -> None:
    """The storage's write of a finished trial fails as SQLite's does on a full disk, from the ``after``-th on."""
    import sqlite3

    import sqlalchemy.exc

    from optimizer.study import storage as storage_mod

    real = storage_mod._BudgetRDBStorage.append_finished_trial
    calls: list[int] = []

    def append(self, *a, **k):
        calls.append(1)
        if len(calls) >= after:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))
        return real(self, *a, **k)

    monkeypatch.setattr(storage_mod._BudgetRDBStorage, "append_finished_trial", append)


def test_a_study_run_whose_storage_fails_names_the_storage(synth_db, tmp_path, monkeypatch):
    """A study run on a full disk (`ulimit -f`, 125 kB storage: 'error: the study storage failed: OperationalError:
    disk I/O error') did not say which storage failed (fails before: 'the study storage failed')."""
    _failing_write(monkeypatch, after=2)
    url = f"sqlite:///{tmp_path / 'st.db'}"
    res = cli("study", "run", DEMO_SPEC, "--db", synth_db, "--out", tmp_path / "out", "--storage", url,
              "--n-trials", "4", "--format", "json")
    one_line_error(res, f"error: study storage {url} ", "disk I/O error")


def test_storage_named_hides_the_password_and_leaves_other_errors_alone():
    import sqlite3

    import sqlalchemy.exc

    from optimizer.errors import DataError
    from optimizer.study.storage import storage_named

    with pytest.raises(DataError, match=r"^study storage postgresql://u:\*\*\*@db.example/x failed: OperationalError: "
                                        r"server closed the connection") as e:
        with storage_named("postgresql://u:hunter2@db.example/x"):
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(
                "server closed the connection"))
    assert "hunter2" not in str(e.value)
    with pytest.raises(RuntimeError, match="an objective's own bug"):  # not the storage's: passes as it is
        with storage_named("sqlite:///x.db"):
            raise RuntimeError("an objective's own bug")


def test_a_walkforward_whose_storage_fails_names_the_storage(synth_db, tmp_path, monkeypatch):
    """Same hole in `walkforward` (fails before: 'the study storage failed')."""
    _failing_write(monkeypatch, after=3)
    url = f"sqlite:///{tmp_path / 'st.db'}"
    res = cli("walkforward", DEMO_SPEC, "--db", synth_db, "--out", tmp_path / "out", "--storage", url,
              "--n-trials", "4", "--format", "json")
    one_line_error(res, f"error: study storage {url} ", "disk I/O error")


# ------------------------------------------------------------------ 3. a trial pruned for min_trades has no value
_PRUNED_SPEC = """
[study]
name = "mt"
[data]
universe = "tier1+3"
[space]
variant = { type = "categorical", choices = ["B", "D"] }
z_window = { type = "int", low = 10, high = 40, log = true }
buy_threshold = { type = "int", low = 60, high = 90, step = 5 }
sell_threshold = 30
time_stop = 20
[cv]
n_splits = 3
[objective]
name = "composite_rank_excess"
min_trades = 6
[sampler]
name = "random"
seed = 5
[pruner]
name = "median"
n_startup_trials = 2
"""


def test_a_trial_pruned_for_min_trades_shows_no_value_anywhere_and_a_pruned_one_its_own(synth_db, tmp_path):
    """A trial pruned for min_trades at fold 2 reported nothing there, so Optuna gave it fold 1's value: the
    dashboard showed 0.0039 as the value it was pruned with, `study show --trial` '-' (fails before: the stored
    value is fold 1's). A trial the pruner stopped shows its own fold's value in all three (before: '-' in show)."""
    import csv
    import json

    import optuna

    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec
    from optimizer.study.storage import make_storage
    from tests.test_mend7_claims_dashboard import _get

    dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'st.db'}"
    run_study(parse_spec(_PRUNED_SPEC), synth_db, url, n_trials=6)
    study = optuna.load_study(study_name="mt", storage=url)
    trials = study.get_trials(deepcopy=False)
    reasons = {t.number: json.loads(json.dumps(t.user_attrs["metrics"])).get("pruned_reason") or "" for t in trials}
    short = [t for t in trials if "min_trades" in reasons[t.number] and t.last_step is not None and t.last_step > 0]
    stopped = [t for t in trials if "pruner median" in reasons[t.number]]
    assert short and stopped, reasons  # the planted store and seed give both kinds
    status, body = _get(dashboard.wsgi(make_storage(url, heartbeat=False)), f"/api/studies/{study._study_id}")
    shown = {t["number"]: t for t in json.loads(body)["trials"]}
    ok(cli("study", "export", "mt", "--storage", url, "--out", tmp_path / "out"))
    with open(tmp_path / "out" / "exports" / "mt_trials.csv", newline="") as f:
        exported = {int(r["number"]): r for r in csv.DictReader(f)}
    for t in short:
        fold = int(reasons[t.number].split(":")[0].split()[1])
        assert t.values is None and np.isnan(t.intermediate_values[fold])  # no value at the fold it lacked one
        assert not shown[t.number].get("values")  # the dashboard: no value
        assert {"step": fold, "value": "nan"} in shown[t.number]["intermediate_values"]
        assert exported[t.number]["value_composite_rank_excess"] == ""
        d = json.loads(ok(cli("study", "show", "mt", "--trial", t.number, "--storage", url, "--format", "json")).stdout)
        # strict JSON (explore20): the fold's NaN is null there
        assert d["value"] is None and d["pruned_at_fold"] == fold and d["folds"][fold]["intermediate"] is None
    for t in stopped:
        v = t.intermediate_values[t.last_step]
        assert t.values == [v] and shown[t.number]["values"] == [v] and float(exported[t.number]["value_composite_rank_excess"]) == v
        d = json.loads(ok(cli("study", "show", "mt", "--trial", t.number, "--storage", url, "--format", "json")).stdout)
        assert d["value"] == v


# ------------------------------------------------------------------ 4. a trial that drew nothing shows no params
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")  # ask(): a killed trial
def test_a_trial_that_failed_before_drawing_shows_no_parameters_and_says_why(synth_db, tmp_path):
    """`study show --trial` of a trial killed before it drew listed the spec's fixed values (sell_threshold 30,
    time_stop 20) as its params (fails before: params == {'sell_threshold': 30, 'time_stop': 20})."""
    import json

    import optuna

    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec
    from optimizer.study.storage import make_storage
    from tests.test_study_workers import age_heartbeats

    url = f"sqlite:///{tmp_path / 'st.db'}"
    run_study(parse_spec(_PRUNED_SPEC.replace("min_trades = 6", "min_trades = 0")), synth_db, url, n_trials=1)
    storage = make_storage(url, grace_period=2)
    study = optuna.load_study(study_name="mt", storage=storage)
    study.ask()  # trial 1: RUNNING, its process killed before drawing anything
    age_heartbeats(storage, 60)
    optuna.storages.fail_stale_trials(study)  # trial 1 FAIL (lost), trial 2 its retry, WAITING
    t2 = study.ask()
    study.tell(t2, state=optuna.trial.TrialState.FAIL)  # trial 2 failed with no reason stored

    def show(n: int, *fmt: str):
        return ok(cli("study", "show", "mt", "--trial", n, "--storage", url, *fmt))

    drew = json.loads(show(0, "--format", "json").stdout)
    assert drew["params"]["sell_threshold"] == 30 and drew["params"]["time_stop"] == 20 and "params_note" not in drew
    lost = json.loads(show(1, "--format", "json").stdout)
    assert lost["state"] == "FAIL" and lost["params"] == {}
    assert lost["params_note"].startswith("none: the trial failed before drawing its parameters (")
    assert lost["lost"] and lost["lost"] in lost["params_note"]  # why: its process was killed
    bare = json.loads(show(2, "--format", "json").stdout)
    assert bare["params"] == {} and "no reason was stored" in bare["params_note"]
    text = show(1).stdout
    assert "sell_threshold" not in text and "time_stop" not in text and "failed before drawing" in text


# ------------------------------------------------------------------ 5. compare's elapsed_s: the time trials ran
def test_compare_elapsed_s_of_a_resumed_study_counts_the_time_its_trials_ran_not_the_pause(synth_db, tmp_path):
    """A study run twice an hour apart reported elapsed_s 3604 s for 9 s of trials (fails before: 3604.0 != 9.0).
    Planted times: run 1 trials 0..2 s and 2..5 s; an hour later run 2 (two processes) 0..2 s and 1..4 s, so the
    union is 5 + 4 = 9 s, the sum of durations 10 s."""
    import sqlite3

    from optimizer.study.inspect import compare_studies
    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec

    db = tmp_path / "st.db"
    run_study(parse_spec(_PRUNED_SPEC.replace("min_trades = 6", "min_trades = 0")), synth_db, f"sqlite:///{db}",
              n_trials=4)
    times = [("10:00:00", "10:00:02"), ("10:00:02", "10:00:05"), ("11:00:00", "11:00:02"), ("11:00:01", "11:00:04")]
    with sqlite3.connect(db) as con:
        for n, (a, b) in enumerate(times):
            con.execute("UPDATE trials SET datetime_start = ?, datetime_complete = ? WHERE number = ?",
                        (f"2026-12-04 {a}.000000", f"2026-12-04 {b}.000000", n))
    res = compare_studies(f"sqlite:///{db}", ["mt"])
    row = res.summary.iloc[0]
    assert (row["complete"] + row["pruned"], row["total_trial_s"], row["elapsed_s"]) == (4, 10.0, 9.0)
    curve = res.best_so_far.sort_values("n_finished")
    assert curve["elapsed_s"].tolist() == [2.0, 5.0, 7.0, 9.0]  # the pause is not on the time axis either


# ------------------------------------------------------------------ 6. backtest --universe: the universe it ran on
@pytest.mark.parametrize("given,spelt,n", [(" Tier1 ", "tier1", None), ("nvda, aapl", ["NVDA", "AAPL"], 2)])
def test_backtest_echoes_the_universe_it_resolved_not_the_string_typed(synth_db, tmp_path, given, spelt, n):
    """`backtest --universe ' Tier1 '` echoed ' Tier1 ' in its JSON config, bt_backtest_runs and backtest_runs.csv
    (fails before: ' Tier1 ' != 'tier1'; 'nvda, aapl' != ['NVDA', 'AAPL']; a symbol listed twice is refused since
    mend18)."""
    import json

    from optimizer.study.data import universe_symbols

    res = ok(cli("backtest", "--universe", given, "--db", synth_db, "--out", tmp_path / "out", "--no-save",
                 "--format", "json"))
    d = json.loads(res.stdout)
    assert d["universe"] == spelt and d["config"]["universe"] == spelt
    assert d["symbols"] == (n if n is not None else len(universe_symbols(synth_db, "tier1"))) > 0


def test_universe_spelling_is_one_per_universe_and_refuses_what_names_none():
    from optimizer.data.universe import universe_spelling
    from optimizer.errors import ParameterError

    assert universe_spelling(" TIER1+3 ") == "tier1+3" and universe_spelling("All") == "all"
    assert universe_spelling("brk/b, aapl") == ["BRK.B", "AAPL"] == universe_spelling(["BRK-B", "aapl"])
    for bad in ("tier9", "foo bar", "AAPL,^VIX", "aapl,AAPL"):
        with pytest.raises(ParameterError, match="universe"):
            universe_spelling(bad)


# ------------------------------------------------------------------ 7. no lock file beside the runs index
_FOLDER_HOLDER = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
                  "print('held', flush=True); sys.stdin.read(); os.close(fd)")


def test_the_runs_index_is_appended_under_a_lock_that_leaves_no_file_and_excludes_another_process(
        tmp_path, monkeypatch):
    """`.backtest_runs.csv.lock` stayed beside the index for good (fails before: it is listed). The lock is now the
    index's folder: another process holding it makes the append wait (asked without blocking first: it would have
    blocked), and once it lets go the row is appended."""
    import fcntl
    import subprocess
    import sys

    import pandas as pd

    from optimizer.report import backtest as report_backtest

    index = tmp_path / "backtest" / "backtest_runs.csv"
    index.parent.mkdir()
    report_backtest._append_csv_row(index, pd.DataFrame([{"run_id": "r1"}]))
    holder = subprocess.Popen([sys.executable, "-c", _FOLDER_HOLDER, str(index.parent)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        real, blocked = fcntl.flock, []

        def flock(fd, op):  # the append's lock, tried without blocking first: held by the other process?
            try:
                real(fd, op | fcntl.LOCK_NB)
            except BlockingIOError:
                blocked.append(op)
                holder.stdin.close()  # the other process lets go; the append then takes the lock
                holder.wait(timeout=30)
                real(fd, op)

        monkeypatch.setattr(fcntl, "flock", flock)
        report_backtest._append_csv_row(index, pd.DataFrame([{"run_id": "r2"}]))
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=30)
        holder.stdout.close()
    assert blocked == [fcntl.LOCK_EX]
    assert pd.read_csv(index)["run_id"].tolist() == ["r1", "r2"]
    assert sorted(p.name for p in index.parent.iterdir()) == ["backtest_runs.csv"]
