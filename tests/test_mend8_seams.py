"""Seams of non-default settings left by explore6's audit (mend8): what a step decided reaches the next step, and
what a command prints or stores about its settings is what it ran with."""

from __future__ import annotations

import json
import shutil

import optuna

from _cli_helpers import cli, ok
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = """
[study]
name = "seam"
[data]
universe = "tier1"
end = "2024-03-28"
[space]
variant = { type = "categorical", choices = ["B", "C"] }
z_window = { type = "categorical", choices = [20, 30] }
buy_threshold = { type = "int", low = 60, high = 75, step = 5 }
exit = "first_dist"
[cv]
n_splits = 2
purge = 20
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 4
[pruner]
name = "none"
[run]
n_trials = 2
"""


def test_backtest_final_of_a_trial_stops_at_its_studys_end(synth_db, tmp_path):
    """`backtest --params best.json --final` ran to the store's LAST session (2024-06-28) while `walkforward
    --final` of the same spec stops at its [data].end (2024-03-28): the trial's record did not carry the end of the
    study's data. Now the record holds it (span.study_end), `backtest --final` and `sandbox --final` stop there and
    backtest says where its end came from; `--end` still runs further; a record written before (no study_end) runs
    to the store's last session, as it did, and says so."""
    from optimizer.report.sandbox import sandbox_run
    from optimizer.study.data import load_study_data
    from optimizer.study.paramsfile import load_params_record

    spec = parse_spec(TINY)
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_study(spec, synth_db, url)
    db = tmp_path / "store.duckdb"  # --final writes the reserve ledger: a private store
    shutil.copy(synth_db, db)
    panel, reserve = load_study_data(spec, db)  # what walkforward --final loads: its last session is the end
    study_end = str(panel.dates[-1])[:10]
    assert study_end == "2024-03-28"
    best = tmp_path / "best.json"
    best.write_text(ok(cli("study", "best", "seam", "--storage", url)).stdout)
    rec = json.loads(best.read_text())["config"]
    assert rec["span"]["study_end"] == study_end and rec["reserve_start"] == str(panel.dates[reserve])[:10]
    env = ("--db", db, "--no-save")
    d = json.loads(ok(cli("backtest", "--params", best, "--final", "--format", "json", *env)).stdout)
    assert d["end"] == study_end and d["reserve_opened"] and "study's last session" in d["end_from"]
    assert d["config"]["span"]["study_end"] == study_end  # the run's record passes it on
    out = ok(cli("backtest", "--params", best, "--final", *env)).stdout
    assert f"span ends {study_end}: the study's last session" in out and f"..{study_end}," in out
    out = ok(cli("backtest", "--params", best, "--final", "--end", "2024-05-31", *env)).stdout
    assert "span ends 2024-05-31: --end" in out
    out = ok(cli("backtest", "--params", best, *env)).stdout  # without --final: the trial's data end
    assert f"span ends {rec['span']['data_end']}: the trial's data end" in out
    sb = sandbox_run(db, "AAPL", record=load_params_record(best).record, params=rec["params"], final=True)
    assert str(sb.panel.dates[-1])[:10] == study_end
    # a record written before records held the study's end: the store's last session, said so
    doc = json.loads(best.read_text())
    del doc["config"]["span"]["study_end"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    d = json.loads(ok(cli("backtest", "--params", old, "--final", "--format", "json", *env)).stdout)
    assert d["end"] == "2024-06-28" and "does not hold its study's end" in d["end_from"]
    sb = sandbox_run(db, "AAPL", record=load_params_record(old).record, params=rec["params"], final=True)
    assert str(sb.panel.dates[-1])[:10] == "2024-06-28"


def test_study_run_and_sandbox_state_their_data_settings(synth_db, tmp_path):
    """`study run` (terminal and --format json) and the sandbox page did not state the data settings the trials /
    trades ran with (universe, span and reserve, regime filter, min_periods, costs) as `walkforward` and `backtest`
    do: a run at the default costs or without the regime filter looked the same. Both now state them in the one
    wording of study.data_settings."""
    import html as _html
    import re

    from optimizer.study.data import load_study_data

    text = TINY.replace('end = "2024-03-28"', 'end = "2024-03-28"\nregime = "RISK_ON"\nmin_periods = 9\n'
                        "[data.costs]\ncommission_bps = 2.5\nslippage_bps = 8.0")
    spec = tmp_path / "seam.toml"
    spec.write_text(text)
    url = f"sqlite:///{tmp_path / 's.db'}"
    panel, reserve = load_study_data(parse_spec(text), synth_db)
    d = [str(x)[:10] for x in (panel.dates[0], panel.dates[reserve - 1], panel.dates[reserve])]
    doc = json.loads(ok(cli("study", "run", spec, "--db", synth_db, "--storage", url, "--format", "json")).stdout)
    assert doc["settings"] == {"universe": "tier1", "symbols": len(panel.symbols), "span": d[:2],
                               "reserve_start": d[2], "final": False, "regime": "RISK_ON", "min_periods": 9,
                               "costs": {"commission_bps": 2.5, "slippage_bps": 8.0}}
    out = " ".join(ok(cli("study", "run", spec, "--db", synth_db, "--storage", url)).stdout.split())
    for fragment in (f"universe tier1, {len(panel.symbols)} symbols, {d[0]}..{d[1]}; final reserve from {d[2]} kept out",
                     "regime filter RISK_ON", "min_periods 9", "2.5 + 8 bp per side"):
        assert fragment in out, fragment
    best = tmp_path / "best.json"
    best.write_text(ok(cli("study", "best", "seam", "--storage", url)).stdout)
    page = ok(cli("sandbox", "XLK", "--params", best, "--db", synth_db, "--out", tmp_path / "out", "--no-png")).stdout
    title = _html.unescape(re.sub(r"\\u003c|\\u003e", "", open(page.strip().splitlines()[-1], encoding="utf-8").read()))
    for fragment in ("universe none: XLK alone (no position caps", f"..{d[1]}; final reserve from {d[2]} kept out",
                     "regime filter RISK_ON", f"from {d[0]}, min_periods 9", "2.5 + 8 bp per side"):
        assert fragment in title, fragment


def test_backtest_runs_store_min_periods_and_panel_start(synth_db, tmp_path):
    """bt_backtest_runs and backtest_runs.csv held neither the z-scores' min_periods nor the panel start, though
    the run id includes both: two runs differing only there showed identical rows but for run_id and metrics. Both
    are columns now (panel_start, min_periods; NULL = the z-window). A store whose bt_backtest_runs was created
    before (without them) and an index CSV with the old header get the columns on the next run, the old rows NULL
    / empty there."""
    import pandas as pd

    from optimizer.backtest import backtest
    from optimizer.data.store import connect
    from optimizer.report.backtest import RUN_COLUMNS
    from optimizer.study.records import ConfigRecord

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    old_cols = {k: v for k, v in RUN_COLUMNS.items() if k not in ("panel_start", "min_periods")}
    con = connect(db)
    con.execute(f"CREATE TABLE bt_backtest_runs ({', '.join(f'{k} {t}' for k, t in old_cols.items())})")
    con.execute("INSERT INTO bt_backtest_runs (run_id, run_timestamp, params) VALUES ('old', now(), '{}')")
    con.close()
    out = tmp_path / "out"
    (out / "backtest").mkdir(parents=True)
    (out / "backtest" / "backtest_runs.csv").write_text("run_id,created_at,score_variant\nold,2026-01-01,B\n")
    p = {"variant": "B", "z_window": 20, "buy_threshold": 60, "sell_threshold": 35, "exit": "fixed", "hold_days": 7}

    def rec(panel_start: str) -> ConfigRecord:
        return ConfigRecord(p, universe="tier1", panel_start=panel_start, signal_start="2023-06-01",
                            data_end="2024-01-31", reserve_start="2024-03-01")

    runs = [backtest(p, db, record=rec("2023-02-01"), min_periods=m, out_root=out).outputs["run_id"] for m in (8, 12)]
    runs.append(backtest(p, db, record=rec("2023-03-01"), min_periods=8, out_root=out).outputs["run_id"])
    assert len(set(runs)) == 3
    con = connect(db, read_only=True)
    got = con.execute("SELECT run_id, panel_start::VARCHAR, min_periods FROM bt_backtest_runs ORDER BY run_timestamp, "
                      "run_id").fetchall()
    con.close()
    assert got == [("old", None, None), (runs[0], "2023-02-01", 8), (runs[1], "2023-02-01", 12),
                   (runs[2], "2023-03-01", 8)]
    csv = pd.read_csv(out / "backtest" / "backtest_runs.csv", dtype=str, keep_default_na=False)
    assert [tuple(r) for r in csv[["run_id", "panel_start", "min_periods"]].itertuples(index=False)] == [
        ("old", "", ""), (runs[0], "2023-02-01", "8"), (runs[1], "2023-02-01", "12"), (runs[2], "2023-03-01", "8")]
    # without min_periods (the z-window): NULL, not a number
    rid = backtest(p, db, record=rec("2023-02-01"), out_root=out).outputs["run_id"]
    con = connect(db, read_only=True)
    assert con.execute("SELECT min_periods FROM bt_backtest_runs WHERE run_id = ?", [rid]).fetchall() == [(None,)]
    con.close()


def test_folds_that_do_not_fit_name_the_keys_set_and_the_values_that_fit(synth_db, tmp_path):
    """A walk-forward window whose inner folds did not fit said "2 folds of test_size=2 (the smallest) ...: lower
    n_splits, test_size, purge, embargo or min_train_size": a test_size the user never set (a window has none) and
    no value that would fit. Now it names the window, each value with the key it comes from (set, or not set and
    why), and the largest value of each key that alone makes the folds fit; each such value fits and one more does
    not (the splitter's own oracle)."""
    from _cli_helpers import one_line_error
    from optimizer.errors import ParameterError

    src = open(__file__.replace("test_mend8_seams.py", "test_explore6_seams.py"), encoding="utf-8").read()
    wf = src.split('WF = """')[1].split('"""')[0].replace("embargo = 3", "embargo = 60")
    spec = tmp_path / "wf.toml"
    spec.write_text(wf)
    res = cli("walkforward", spec, "--n-trials", 2, "--db", synth_db, "--storage", f"sqlite:///{tmp_path / 's.db'}",
              "--out", tmp_path / "out")
    line = one_line_error(res, "walk-forward window 0 (train 2023-02-01..", "its inner folds do not fit: 2 purged folds "
                          "need 93 sessions (2 test blocks of at least 2 sessions", "its train span has 92",
                          "[walkforward] n_splits = 2; [cv] purge = 9; [walkforward] embargo = 60; [cv] min_train_size "
                          "= 20: they fit with [walkforward] n_splits <= 1, or [cv] purge <= 8, or [walkforward] "
                          "embargo <= 59, or [cv] min_train_size <= 19 alone, or with a longer [walkforward] train")
    assert "test_size" not in line
    # a study: keys not set are named with where their value comes from; a given test_size is a key to lower
    text = TINY.replace("purge = 20", "purge = 20\ntest_size = 60").replace('end = "2024-03-28"', 'end = "2023-09-29"')
    with __import__("pytest").raises(ParameterError) as ei:
        run_study(parse_spec(text), synth_db, f"sqlite:///{tmp_path / 't.db'}")
    msg = str(ei.value)
    assert msg.startswith("the study's folds do not fit: 2 purged folds need 200 sessions (2 test blocks of 60 "
                          "sessions"), msg  # 2 x 60 + purge 20 + embargo 30 + the warm-up's 30
    assert "min_train_size 30 (the z-scores' warm-up" in msg and "[cv] min_train_size" not in msg
    assert msg.endswith("the span has 150; [cv] n_splits = 2; [cv] test_size = 60; [cv] purge = 20; [cv] embargo not "
                        "set: 30, the largest z_window the space allows; min_train_size 30 (the z-scores' warm-up: the "
                        "largest z_window minus the sessions before the span): they fit with [cv] n_splits <= 1, or "
                        "[cv] test_size <= 35 alone, or with a wider [data] start .. end")
    # the splitter's values: each alone fits, one more does not
    from optimizer.study.splits import FoldsDoNotFit, PurgedTimeSeriesSplit

    for kw, n in ((dict(n_splits=2, purge=9, embargo=60, min_train_size=20), 92),
                  (dict(n_splits=3, test_size=10, purge=4, embargo=5, min_train_size=7), 40),
                  (dict(n_splits=5), 7)):
        with __import__("pytest").raises(FoldsDoNotFit) as ei:
            PurgedTimeSeriesSplit(**kw).fold_spans(n)
        assert ei.value.fits and "test_size=2" not in str(ei.value)
        for p, v in ei.value.fits.items():
            assert len(PurgedTimeSeriesSplit(**(kw | {p: v})).fold_spans(n)) == (v if p == "n_splits" else kw["n_splits"])
            with __import__("pytest").raises(FoldsDoNotFit):
                PurgedTimeSeriesSplit(**(kw | {p: v + 1})).fold_spans(n)


def _mixed_storage(url: str) -> None:
    """Studies with complete, pruned, failed and running trials, repeats, +-inf values, a study without a complete
    trial, a multi-objective one and one with no trial."""
    import math

    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    from optimizer.study.records import REPEAT_OF
    from optimizer.study.storage import make_storage

    st = make_storage(url, heartbeat=False)
    dist = {"x": IntDistribution(0, 100)}

    def add(study, state, value=None, x=0, repeat=None):
        attrs = {} if repeat is None else {REPEAT_OF: repeat}
        study.add_trial(create_trial(state=state, value=value, params={"x": x}, distributions=dist, user_attrs=attrs))

    a = optuna.create_study(study_name="a_max", storage=st, direction="maximize")
    a.set_user_attr("spec_name", "spec_a")
    a.set_user_attr("n_trials_target", 12)
    for i, v in enumerate([0.5, 2.25, -1.0, 2.25]):
        add(a, TrialState.COMPLETE, v, i, repeat=1 if i == 3 else None)
    for i in range(3):
        add(a, TrialState.PRUNED, None, 10 + i, repeat=0 if i == 0 else None)
    add(a, TrialState.FAIL, None, 20)
    add(a, TrialState.RUNNING, None, 21)
    b = optuna.create_study(study_name="b_min", storage=st, direction="minimize")
    for v in (3.0, -math.inf, 1.0):
        add(b, TrialState.COMPLETE, v)
    c = optuna.create_study(study_name="c_max_inf", storage=st, direction="maximize")
    for v in (-math.inf, math.inf, 7.0):
        add(c, TrialState.COMPLETE, v)
    d = optuna.create_study(study_name="d_none_complete", storage=st, direction="minimize")
    add(d, TrialState.PRUNED)
    add(d, TrialState.FAIL)
    e = optuna.create_study(study_name="e_multi", storage=st, directions=["maximize", "minimize"])
    for v in ((1.0, 2.0), (2.0, 3.0), (0.5, 3.5)):
        e.add_trial(create_trial(state=TrialState.COMPLETE, values=list(v), params={"x": 1}, distributions=dist))
    f = optuna.create_study(study_name="f_empty", storage=st, direction="maximize")
    f.set_user_attr("created", "2026-02-03T04:05:06")
    g = optuna.create_study(study_name="g_only_neg_inf", storage=st, direction="maximize")
    add(g, TrialState.COMPLETE, -math.inf)


def test_study_list_sums_trials_up_in_sql_with_the_same_table(tmp_path, monkeypatch):
    """`study list` read every trial through Optuna's ORM (~1.9 ms a trial on a slow host: 6.7 s for 3,600 trials).
    On an RDB storage it now sums a single-objective study's trials up in one SQL query per study
    (storage.trial_summary). The table is the one the trials give (the ORM path, kept for multi-objective studies
    and non-RDB storages), on complete, pruned, failed and running trials, repeats and +-inf values."""
    import pandas as pd

    from optimizer.study.inspect import _list_row_orm, list_studies, open_storage
    from optimizer.study.records import REPEAT_OF
    from optimizer.study.storage import trial_summary

    import time

    monkeypatch.setenv("TZ", "America/New_York")  # Optuna stores UTC and shows local time: the SQL path must too
    time.tzset()
    try:
        url = f"sqlite:///{tmp_path / 's.db'}"
        _mixed_storage(url)
        got = list_studies(url)
        st, _ = open_storage(url)
        rows = [_list_row_orm(st, s) for s in sorted(st.get_all_studies(), key=lambda s: s.study_name)]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert trial_summary(st, "a_max", REPEAT_OF) is not None  # the SQL path runs on this storage
    want = pd.DataFrame(rows, columns=got.columns)
    want["pareto_size"] = want["pareto_size"].astype("Int64")
    want["n_trials_target"] = pd.array(want["n_trials_target"].tolist(), dtype="Int64")
    pd.testing.assert_frame_equal(got, want)
    a = got.set_index("name")
    assert (a.loc["a_max", ["complete", "pruned", "failed", "running", "repeats"]].tolist() == [4, 3, 1, 1, 2])
    assert a.loc["a_max", "best_value"] == 2.25 and a.loc["b_min", "best_value"] == float("-inf")
    assert a.loc["c_max_inf", "best_value"] == float("inf") and a.loc["g_only_neg_inf", "best_value"] == float("-inf")
    assert pd.isna(a.loc["d_none_complete", "best_value"]) and pd.isna(a.loc["f_empty", "best_value"])
    assert a.loc["f_empty", "created"].tz_localize(None) == pd.Timestamp("2026-02-03T04:05:06")  # no trial: the stored
    # creation, naive: local time (shown with the local offset since mend18)
    assert a.loc["e_multi", "pareto_size"] == 2 and a.loc["a_max", "spec_name"] == "spec_a"
    assert a.loc["a_max", "n_trials_target"] == 12
    # the command's table and JSON are the ones the trials give
    out = json.loads(ok(cli("study", "list", "--storage", url, "--format", "json")).stdout)
    assert [r["name"] for r in out] == sorted(["a_max", "b_min", "c_max_inf", "d_none_complete", "e_multi", "f_empty",
                                               "g_only_neg_inf"])


def _prices_store(tmp_path, name: str, rows: list[tuple[str, str, int]], maps: list[tuple[str, str, str]],
                  maps_first: bool):
    """A store of prices_daily ``rows`` (date, symbol, volume) with the mappings ``maps`` added in the order given,
    before the ingest (``maps_first``: what a fresh ingest stores) or after it (the stored rows are rewritten)."""
    from _ingest_helpers import write

    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect
    from optimizer.data.symbols import add_symbol_mapping

    con = connect(str(tmp_path / f"{name}.duckdb"))
    text = "date,symbol,open,high,low,close,volume\n" + "".join(f"{d},{s},1,1,1,1,{v}\n" for d, s, v in rows)
    path = write(tmp_path / f"{name}.csv", text)
    if maps_first:
        for m in maps:
            add_symbol_mapping(con, *m)
    ingest_paths(con, "prices", [path])
    if not maps_first:
        for m in maps:
            add_symbol_mapping(con, *m)
    return con


def _stored(con) -> list[tuple]:
    return con.execute("SELECT date::VARCHAR, symbol, volume FROM prices_daily ORDER BY date, volume").fetchall()


def test_symbol_mappings_added_in_any_order_store_what_a_fresh_ingest_stores(tmp_path):
    """add_symbol_mapping rewrote the stored rows of OLD before the date to NEW, whatever the other mappings: a
    chain added out of order stored other symbols than a fresh ingest with the same mappings (which applies them
    in effective-date order). A -> B from 2024-01-02, B -> C from 2024-06-03, added B -> C first: A's old rows
    stayed B (a fresh ingest: C). Now the rewrite goes where a fresh ingest would put them. A -> B from 2024-06-03
    then B -> C from an EARLIER date (2024-01-02): the rewrite renamed A's rows (stored as B) to C, where a fresh
    ingest keeps them B; the stored B rows cannot be told apart any more, so that rewrite is refused naming why and
    what to do, and the store is left as it was."""
    import pytest

    from optimizer.data.symbols import add_symbol_mapping
    from optimizer.errors import DataError

    rows = [("2023-12-01", "A", 1), ("2023-12-29", "A", 2), ("2024-03-01", "B", 3), ("2024-07-01", "B", 4),
            ("2024-07-01", "C", 5)]
    chain = [("A", "B", "2024-01-02"), ("B", "C", "2024-06-03")]
    fresh = _stored(_prices_store(tmp_path, "fresh", rows, chain, True))
    assert [s for _, s, _ in fresh] == ["C", "C", "C", "B", "C"]
    for i, order in enumerate((chain, chain[::-1])):
        assert _stored(_prices_store(tmp_path, f"inc{i}", rows, order, False)) == fresh, order
    # a chain whose later link is dated first: A -> B from 2024-06-03, B -> C from 2024-01-02
    rows = [("2023-12-01", "A", 1), ("2023-12-15", "B", 2), ("2024-03-01", "A", 3), ("2024-07-01", "B", 4)]
    back = [("A", "B", "2024-06-03"), ("B", "C", "2024-01-02")]
    fresh = _stored(_prices_store(tmp_path, "fresh2", rows, back, True))
    assert [s for _, s, _ in fresh] == ["B", "C", "B", "B"]
    assert _stored(_prices_store(tmp_path, "inc2", rows, back[::-1], False)) == fresh  # in date order
    con = _prices_store(tmp_path, "inc3", rows, back[:1], False)
    before = _stored(con)
    with pytest.raises(DataError, match=r"cannot rewrite the stored rows for B -> C before 2024-01-02: a fresh ingest "
                                        r"would store B's rows before it as C, but prices_daily holds 2 B rows before "
                                        r"it that may also be A's \(mapped by A -> B from 2024-06-03\)"):
        add_symbol_mapping(con, "B", "C", "2024-01-02")
    assert _stored(con) == before and len(con.execute("SELECT * FROM symbol_map WHERE old_symbol = 'B'").fetchall()) == 0
    assert add_symbol_mapping(con, "B", "C", "2024-01-02", rewrite_existing=False) == 0  # later ingests only


def test_a_mapping_changed_to_another_symbol_is_refused_when_its_rows_were_renamed(tmp_path):
    """`symbols map add A B --from D`, then `map add A B2 --from D` updated the mapping but rewrote nothing: A's rows
    were already stored as B, so the store kept B where a fresh ingest stores B2. The stored B rows are A's or B's
    own, which cannot be told apart: the change is refused, the store and the map as they were; on a store without
    such rows it goes through; re-adding the same mapping is a no-op."""
    import pytest

    from optimizer.data.symbols import add_symbol_mapping
    from optimizer.errors import DataError

    rows = [("2023-12-01", "A", 1), ("2024-07-01", "B", 2)]
    con = _prices_store(tmp_path, "upd", rows, [("A", "B", "2024-01-02")], False)
    before = _stored(con)
    assert [s for _, s, _ in before] == ["B", "B"]
    assert add_symbol_mapping(con, "A", "B", "2024-01-02") == 0
    with pytest.raises(DataError, match=r"cannot change A -> B from 2024-01-02 to A -> B2: prices_daily holds 1 B "
                                        r"rows before it"):
        add_symbol_mapping(con, "A", "B2", "2024-01-02")
    assert _stored(con) == before
    assert con.execute("SELECT new_symbol FROM symbol_map WHERE old_symbol = 'A'").fetchall() == [("B",)]
    fresh = _stored(_prices_store(tmp_path, "upd_fresh", rows, [("A", "B2", "2024-01-02")], True))
    assert _stored(_prices_store(tmp_path, "upd_ok", rows, [("A", "B", "2024-01-02"), ("A", "B2", "2024-01-02")],
                                 True)) == fresh  # mapped before any row: nothing to tell apart
