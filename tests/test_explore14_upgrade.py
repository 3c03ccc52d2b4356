"""Upgrades: artefacts written by an older accumopt (stores, study records, params files) read by this one.

Each old artefact is built here from today's code plus a documented transformation to the old layout (the layout
of the commit named), in tmp_path.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import sqlite3
from pathlib import Path

import duckdb
import optuna
import pandas as pd
import pytest

from _cli_helpers import cli, ok, one_line_error
import optimizer.data.store as store
import optimizer.study.records as records
from optimizer.errors import DataError
from optimizer.data.store import MIGRATIONS, SCHEMA_VERSION, connect, table_exists
from optimizer.study.records import metrics_tolerance, ranked_trials, rounded_metrics
from optimizer.study.storage import make_storage

ROOT = Path(__file__).resolve().parents[1]


def _store_of_main_at_ded9468(path) -> None:
    """A store created by main between ded9468 and the merge bedfacf (2026-12-02 18:42-19:30 UTC): its migrations
    were v1 (raw tables), v2 (market_regimes), v3 = signal_sheet (today's v5, identical DDL): schema version 3, with
    signal_sheet and without splits (today's v3)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, step in enumerate((MIGRATIONS[0], MIGRATIONS[1], MIGRATIONS[4]), start=1):
        con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    con.execute("INSERT INTO finra_short_daily VALUES ('2024-01-02', 'AAA', 'CNMS', 'B', 10, 0, 20, 'f.txt')")
    con.close()


def test_a_store_whose_v3_was_the_signal_sheet_gets_the_splits_table(tmp_path):
    db = tmp_path / "old.duckdb"
    _store_of_main_at_ded9468(db)
    con = connect(db)
    try:
        assert table_exists(con, "splits")
        assert table_exists(con, "signal_sheet")
        assert con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] == SCHEMA_VERSION
        # what metrics build asks of it (failed before: 'Table with name splits does not exist')
        assert con.execute("SELECT count(*) FROM (SELECT 1 FROM splits LIMIT 1)").fetchall() == [(0,)]
        assert con.execute("SELECT symbol, short_volume FROM finra_short_daily").fetchall() == [("AAA", 10)]
    finally:
        con.close()


def test_data_info_on_a_store_awaiting_a_migration_reads_it_as_it_is_and_says_so(tmp_path):
    db = tmp_path / "old.duckdb"
    _store_of_main_at_ded9468(db)
    res = ok(cli("data", "info", "--db", db, "--out", tmp_path))
    assert "tables (schema v3)" in res.stdout
    assert f"schema v3 is older than this accumopt's v{SCHEMA_VERSION}: the next command that writes to the store" \
        in " ".join(res.stdout.split())
    assert _tables(db) == sorted(["finra_short_daily", "prices_daily", "finra_otc_weekly", "lit_flow_daily",
                                  "options_daily", "ingest_log", "ingest_rejects", "symbol_map", "market_regimes",
                                  "signal_sheet", "schema_version"])  # read-only: nothing migrated


def test_a_store_already_migrated_without_splits_is_repaired_on_its_next_opening(tmp_path):
    """The same store after an accumopt of before the repair opened it: at the then-latest version (6), no splits."""
    db = tmp_path / "old.duckdb"
    _store_of_main_at_ded9468(db)
    con = duckdb.connect(str(db))
    for v, step in enumerate(MIGRATIONS[3:6], start=4):  # what the old code ran: v4..v6 (v5's DDL already applied)
        if step.startswith("_"):
            import optimizer.data.store as store

            getattr(store, step)(con)
        else:
            con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    assert not table_exists(con, "splits")
    con.close()
    con = connect(db)
    try:
        assert table_exists(con, "splits")
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            list(range(1, SCHEMA_VERSION + 1))
    finally:
        con.close()


def test_a_migration_stopped_midway_leaves_the_older_store_as_it_was_and_the_next_opening_finishes_it(tmp_path,
                                                                                                      monkeypatch):
    """The v4 migration (finra_short_daily rebuilt without its key) stopped after it copied the rows and dropped
    the old table, as a kill there would: the store stays at v3 with its table, key and rows; the next opening
    migrates it once. (A real SIGKILL of a v1 store of 4,016,566 rows at 0.3-2.4 s into its 2.7 s migration, 5
    times: v3, same rows and key each time, then migrated to the end; not a test: it needs timing.)"""
    db = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, step in enumerate(MIGRATIONS[:3], start=1):
        con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    con.execute("INSERT INTO finra_short_daily SELECT DATE '2024-01-02' + (i // 50)::INT, 'S' || (i % 50), 'CNMS', 'B', "
                "i, 0, 2 * i, 'f.txt' FROM range(500) t(i)")
    con.close()
    real = store._drop_finra_short_key

    def killed(con):
        real(con)
        raise KeyboardInterrupt  # after the new table replaced the old one, before the version row

    monkeypatch.setattr(store, "_drop_finra_short_key", killed)
    with pytest.raises(KeyboardInterrupt):
        connect(db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(3,)]
        assert con.execute("SELECT count(*), sum(short_volume) FROM finra_short_daily").fetchall() == [(500, 124750)]
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'finra_short_daily' AND "
                           "constraint_type = 'PRIMARY KEY'").fetchall() == [(1,)]
        assert not table_exists(con, "finra_short_daily_v3")
    finally:
        con.close()
    monkeypatch.setattr(store, "_drop_finra_short_key", real)
    con = connect(db)
    try:
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == \
            list(range(1, SCHEMA_VERSION + 1))
        assert con.execute("SELECT count(*), sum(short_volume) FROM finra_short_daily").fetchall() == [(500, 124750)]
    finally:
        con.close()


def _pipeline_db(path) -> None:
    """A darkpool-pipeline database: its own daily_metrics and its own finra_short_daily (no facility, no
    short_exempt_volume, no source_file), no schema_version."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, short_buy_sell_ratio DOUBLE)")
    con.execute("INSERT INTO daily_metrics VALUES ('2024-01-02', 'AAPL', 1.3)")
    con.execute("CREATE TABLE finra_short_daily (date DATE, symbol VARCHAR, short_volume BIGINT, total_volume BIGINT, "
                "market VARCHAR)")
    con.execute("INSERT INTO finra_short_daily VALUES ('2024-01-02', 'AAPL', 100, 200, 'Q')")
    con.close()


def _tables(path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_pipeline_table_under_an_accumopt_name_is_refused_in_one_line_and_left_untouched(tmp_path, read_only):
    db = tmp_path / "pipeline.duckdb"
    _pipeline_db(db)
    with pytest.raises(DataError) as e:  # before: opened, then data info / ingest died with DuckDB's Binder Error
        connect(db, read_only=read_only).close()
    msg = str(e.value)
    assert "table finra_short_daily lacks column(s) facility, short_exempt_volume, source_file" in msg
    assert "--db NEW.duckdb" in msg and "\n" not in msg
    assert _tables(db) == ["daily_metrics", "finra_short_daily"]  # no migration wrote into it


def test_data_info_and_ingest_on_a_pipeline_table_under_an_accumopt_name_say_so_without_a_traceback(tmp_path):
    db = tmp_path / "pipeline.duckdb"
    _pipeline_db(db)
    f = tmp_path / "CNMSshvol20240103.txt"
    f.write_text("Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\n20240103|AAPL|10|0|20|Q\n")
    for args in (("data", "info"), ("ingest", "finra-short", f)):
        one_line_error(cli(*args, "--db", db, "--out", tmp_path), "finra_short_daily lacks column(s) facility")


def test_the_layout_check_knows_every_table_the_migrations_create():
    assert set(store._own_layout()) == set(store._TABLE_NAMES)


def test_a_pipeline_database_with_only_its_daily_metrics_still_opens(tmp_path):
    db = tmp_path / "pipeline.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, short_buy_sell_ratio DOUBLE)")
    con.close()
    connect(db, read_only=True).close()
    connect(db).close()
    assert "splits" in _tables(db)


def test_a_pipeline_daily_metrics_without_prices_is_one_line_not_a_key_error(tmp_path):
    """A darkpool-pipeline database whose daily_metrics holds the flows and a close but no open / high / low and
    that has no prices_daily: the panel had no open and backtest died with KeyError "panel has no field 'open'"."""
    db = tmp_path / "pipeline.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, short_volume BIGINT, total_volume BIGINT, "
                "short_buy_sell_ratio DOUBLE, close DOUBLE)")
    con.execute("INSERT INTO daily_metrics SELECT d::DATE, s, 100, 200, 1.0, 100.0 FROM (SELECT unnest(range(DATE "
                "'2024-01-01', DATE '2024-12-31', INTERVAL 1 DAY)) d), (SELECT unnest(['AAPL', 'MSFT', 'SPY']) s) "
                "WHERE dayofweek(d) BETWEEN 1 AND 5")
    con.close()
    one_line_error(cli("backtest", "--db", db, "--out", tmp_path, "--no-save"),
                   "daily_metrics has no column open, high, low and the store has no prices_daily",
                   "accumopt ingest prices")


def test_backtest_saves_into_a_bt_backtest_runs_table_of_the_first_layout(tmp_path):
    """bt_backtest_runs as 68c6f3b / e2b928a^ created it (2026-12-02 17:40-17:59; before that optimizer/report.py):
    ``created_at TIMESTAMP NOT NULL`` where today's writer fills ``run_timestamp``. The writer adds the columns an
    older table lacks, but left created_at NOT NULL: every saved backtest on such a store died with DuckDB's
    'NOT NULL constraint failed: bt_backtest_runs.created_at' traceback (exit 1; measured with `backtest --params`
    on a store of 68c6f3b)."""
    from optimizer.report.backtest import write_backtest

    con = connect(tmp_path / "store.duckdb")
    con.execute("CREATE TABLE bt_backtest_runs (run_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, "
                "params VARCHAR NOT NULL, start_date DATE, end_date DATE, total_trades DOUBLE)")
    con.execute("INSERT INTO bt_backtest_runs VALUES ('old', TIMESTAMP '2026-12-02 17:45:00', '{}', '2023-01-03', "
                "'2024-12-31', 262)")
    try:
        write_backtest(con, "new", {"total_trades": 208.0}, pd.DataFrame(), pd.DataFrame())
        rows = con.execute("SELECT run_id, created_at, total_trades, run_timestamp IS NOT NULL FROM bt_backtest_runs "
                           "ORDER BY run_id DESC").fetchall()
    finally:
        con.close()
    assert rows == [("old", datetime.datetime(2026, 12, 2, 17, 45), 262.0, False), ("new", None, 208.0, True)]


# ------------------------------------------------------------------------------------------------ trial records


def _rounded_before_00b213b(metrics: dict) -> dict:
    """A trial's metrics as accumopt stored them before 2026-12-03 (00b213b, trial._clean): every finite float
    rounded to 10 decimals."""
    return {k: (round(v, 10) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def demo_study(synth_db, tmp_path_factory):
    d = tmp_path_factory.mktemp("e14_study")
    storage = f"sqlite:///{d / 'studies.db'}"
    ok(cli("study", "run", ROOT / "studies" / "demo.toml", "--db", synth_db, "--storage", storage, "--n-trials", "2",
           "--format", "json", "--out", d))
    return {"storage": storage, "db": synth_db, "dir": d}


def test_a_best_file_with_metrics_rounded_by_an_older_accumopt_reproduces_and_says_how_it_was_compared(demo_study,
                                                                                                      tmp_path):
    doc = json.loads(ok(cli("study", "best", "demo", "--storage", demo_study["storage"])).stdout)
    assert not rounded_metrics(doc["metrics"])  # today's record: full precision, compared bit for bit
    old = doc | {"metrics": _rounded_before_00b213b(doc["metrics"])}
    assert rounded_metrics(old["metrics"])
    f = tmp_path / "old_best.json"
    f.write_text(json.dumps(old))
    run = json.loads(ok(cli("backtest", "--params", f, "--db", demo_study["db"], "--no-save", "--format", "json",
                            "--out", tmp_path)).stdout)
    assert run["reproduces_trial"] is True, run["comparison"]  # failed before: DIFFERENT on every rounded metric
    assert any("recorded before 2026-12-03" in w and "rounded to 10 decimals" in w for w in run["warnings"])
    # the tolerance is that version's 1e-9, not a blanket pass: a metric off by 1e-6 is still different
    off = old | {"metrics": old["metrics"] | {"avg_return": round(old["metrics"]["avg_return"] * (1 + 1e-6), 10)}}
    f.write_text(json.dumps(off))
    run = json.loads(ok(cli("backtest", "--params", f, "--db", demo_study["db"], "--no-save", "--format", "json",
                            "--out", tmp_path)).stdout)
    assert run["reproduces_trial"] is False
    assert [r["metric"] for r in run["comparison"] if not r["equal"]] == ["avg_return"]
    # today's file: compared bit for bit, no note
    f.write_text(json.dumps(doc))
    run = json.loads(ok(cli("backtest", "--params", f, "--db", demo_study["db"], "--no-save", "--format", "json",
                            "--out", tmp_path)).stdout)
    assert run["reproduces_trial"] is True and not any("recorded before" in w for w in run["warnings"])


def test_backtest_of_a_record_without_the_later_parameters_names_each_and_its_default(demo_study, tmp_path):
    doc = json.loads(ok(cli("study", "best", "demo", "--storage", demo_study["storage"])).stdout)
    f = tmp_path / "old_best.json"
    f.write_text(json.dumps(doc | {"config": _old_layout(doc["config"])}))
    run = json.loads(ok(cli("backtest", "--params", f, "--db", demo_study["db"], "--no-save", "--format", "json",
                            "--out", tmp_path)).stdout)
    assert run["reproduces_trial"] is True, run["comparison"]  # the defaults are how the trial ran
    note = [w for w in run["warnings"] if "predates" in w]
    assert len(note) == 1 and f"predates {len(_ADDED_LATER)} engine parameter(s)" in note[0]
    assert "atr_stop=None" in note[0] and "options_boost=0.0" in note[0] and "dd_cooloff=10" in note[0]
    f.write_text(json.dumps(doc))  # today's record: nothing to say
    run = json.loads(ok(cli("backtest", "--params", f, "--db", demo_study["db"], "--no-save", "--format", "json",
                            "--out", tmp_path)).stdout)
    assert not any("predates" in w for w in run["warnings"])


def test_replay_of_a_trial_recorded_with_rounded_metrics_reproduces(demo_study, tmp_path):
    """The stored trial as an accumopt of before 2026-12-03 left it: metrics and fold metrics rounded to 10
    decimals, the value computed from the rounded folds (here: the stored value moved by 6e-12, as measured on a
    study of 8431966 replayed today: 0.007047646738239106 stored, 0.007047646744386698 replayed)."""
    src = Path(demo_study["storage"].removeprefix("sqlite:///"))
    db = tmp_path / "studies.db"
    with sqlite3.connect(src) as a, sqlite3.connect(db) as b:  # (WAL mode: a file copy may miss the last commits)
        a.backup(b)
    storage = f"sqlite:///{db}"
    study = optuna.load_study(study_name="demo", storage=make_storage(storage, read_only=True))
    t = ranked_trials(study)[0]
    con = sqlite3.connect(db)
    con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = 'metrics'",
                [json.dumps(_rounded_before_00b213b(t.user_attrs["metrics"])), t._trial_id])
    con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = 'folds'",
                [json.dumps([_rounded_before_00b213b(f) for f in t.user_attrs["folds"]]), t._trial_id])
    con.execute("UPDATE trial_values SET value = value + 6e-12 WHERE trial_id = ?", [t._trial_id])
    con.commit()
    con.close()
    res = cli("study", "replay", "demo", t.number, "--db", demo_study["db"], "--storage", storage, "--format", "json")
    rep = json.loads(ok(res).stdout)  # failed before: exit 1, DIFFERENT
    assert rep["reproduced"] is True, [r for r in rep["comparison"] if not r["equal"]]
    assert rep["notes"] and "rounded to 10 decimals" in rep["notes"][0]
    # a value off by more than that version's tolerance is still different
    con = sqlite3.connect(db)
    con.execute("UPDATE trial_values SET value = value + 1e-6 WHERE trial_id = ?", [t._trial_id])
    con.commit()
    con.close()
    rep = json.loads(ok(cli("study", "replay", "demo", t.number, "--db", demo_study["db"], "--storage", storage,
                            "--format", "json"), 1).stdout)
    assert [r["metric"] for r in rep["comparison"] if not r["equal"]] == ["value"]


def test_the_rounding_of_an_older_record_is_told_from_full_precision_metrics():
    # exact fractions (a hit rate of 39/64) and integers are short at full precision too: they decide nothing
    assert not rounded_metrics({"hit_rate": 0.609375, "total_trades": 198.0, "duration_s": 0.123456})
    assert not rounded_metrics({"a": 0.02908470792057491, "b": 0.0063952577, "c": 0.0150149552, "d": 1.4203612543})
    assert rounded_metrics({"a": 0.0290847079, "b": 0.0063952577, "c": 0.0150149552, "hit_rate": 0.609375,
                            "duration_s": 0.123456})
    assert not rounded_metrics({"a": 0.0290847079, "b": 0.0063952577})  # two could be chance
    assert metrics_tolerance({"a": 0.02908470792057491}) == 0.0


# the engine parameters a trial's record did not hold before 2026-12-02 18:12 (a record of 5080b8c: 20 of today's 44)
_ADDED_LATER = ("atr_stop", "trail_stop", "kelly_fraction", "kelly_window", "max_weight", "risk_fraction",
                "options_boost", "regime_sizing", "corr_cap", "corr_window", "dd_breaker", "dd_cooloff",
                *(f"{w}_{r}" for w in ("w_short", "w_lit", "w_price", "buy_threshold")
                  for r in ("risk_on", "risk_off", "transitional")))


def _old_layout(config: dict) -> dict:
    """A ConfigRecord JSON as an accumopt of 5080b8c wrote it: params without the parameters added since (each at
    its default in today's record), and the key of those shorter params (the same hash over what it held)."""
    params = {k: v for k, v in config["params"].items() if k not in _ADDED_LATER}
    key = hashlib.sha256(json.dumps(records._canonical(params), sort_keys=True).encode()).hexdigest()[:16]
    return config | {"params": params, "key": key}


def _trial(number: int, config: dict, value: float) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                                  value=value, user_attrs={"config": config})
    t.number = number
    return t


def test_a_configuration_recorded_before_its_newer_parameters_existed_is_the_same_configuration():
    """A study resumed by today's accumopt holds old trials (20-parameter records) and new ones (44): the same
    configuration drawn again must be found as a repeat and counted once by DSR / PBO / SPA (before: two keys,
    3f14ada9d833dc73 and ad700019f5f25ccf for one configuration of a study of 5080b8c, so two configurations)."""
    from optimizer.engine.evaluate import Config

    full = records.ConfigRecord(Config.from_params({"variant": "D", "buy_threshold": 80.0}).to_params()).to_dict()
    assert set(_ADDED_LATER) <= set(full["params"])
    old = _old_layout(full)
    assert old["key"] != full["key"] and all(full["params"][k] == Config.from_params({}).to_params()[k] for k in _ADDED_LATER)
    trials = [_trial(0, old, 1.0), _trial(1, full, 1.0)]
    assert len(records.distinct_configurations(trials)) == 1
    assert records.find_repeat(trials, full["key"]) is trials[0]
    assert records.ConfigRecord.from_dict(old).key == full["key"]
    # a parameter that differs is another configuration, whatever the layout
    other = records.ConfigRecord(Config.from_params({"variant": "D", "buy_threshold": 75.0}).to_params()).to_dict()
    assert len(records.distinct_configurations([*trials, _trial(2, _old_layout(other), 0.5)])) == 2
    # a later parameter away from its default is not the old record's configuration
    boosted = records.ConfigRecord(Config.from_params({"variant": "D", "buy_threshold": 80.0,
                                                       "options_boost": 0.5}).to_params()).to_dict()
    assert records.find_repeat(trials, boosted["key"]) is None


# ------------------------------------------------------------------------------------------------ library upgrades


def test_a_study_storage_of_an_older_optuna_schema_names_the_upgrade_command_with_its_url(tmp_path):
    """An SQLite storage whose tables an older Optuna set up: today's file with the alembic revision and library
    version an Optuna 3.0 file carries (v3.0.0.c, 3.0.0). Optuna refuses it and says to run `optuna storage upgrade
    --storage $STORAGE_URL`; the line now names the storage's own URL (and what the upgrade means)."""
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    optuna.create_study(study_name="s", storage=url).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.c'")
    con.execute("UPDATE version_info SET library_version = '3.0.0'")
    con.commit()
    con.close()
    line = one_line_error(cli("study", "list", "--storage", url), "was written by Optuna 3.0.0")
    assert line.endswith(f"optuna storage upgrade --storage {url}"), line  # before: '... --storage $STORAGE_URL` ...'
    assert "$STORAGE_URL" not in line
