"""Universe ``all`` is decided on the sessions a study may see. A symbol first priced inside the final reserve (a
listing of the reserve's months: with real data, any IPO of the last fifth of the span) was in the study's
universe, so `backtest --params` of any of its trials (which resolves ``all`` over the trial's span) refused:
"the store's data differs from the trial's: the universe 'all' resolves to 33 symbols, the trial ran on 34"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import cli, ok

from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect, insert_finra_short

LATE = 15  # sessions of the new listing's prices, all inside the final reserve (20 % of 502 sessions)


@pytest.fixture(scope="module")
def listing_db(synth_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted synthetic store plus ZZR: short-sale rows on every session (a copy of the first symbol's),
    prices on the last 15 sessions only; metrics rebuilt."""
    db = tmp_path_factory.mktemp("listing") / "store.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    try:
        dates = [r[0] for r in con.execute("SELECT DISTINCT date FROM prices_daily ORDER BY 1").fetchall()]
        src = con.execute("SELECT min(symbol) FROM prices_daily WHERE symbol NOT LIKE '^%'").fetchone()[0]
        for t, extra in (("prices_daily", " AND date >= ?"), ("finra_short_daily", "")):
            cols = [r[0] for r in con.execute(f"SELECT column_name FROM information_schema.columns WHERE table_name = "
                                              f"'{t}' ORDER BY ordinal_position").fetchall()]
            sel = ", ".join("'ZZR'" if c == "symbol" else c for c in cols)
            if t == "finra_short_daily":  # a view: its rows are stored with a source id (store.insert_finra_short)
                insert_finra_short(con, f"SELECT {sel} FROM {t} WHERE symbol = ?", [src])
            else:
                con.execute(f"INSERT INTO {t} SELECT {sel} FROM {t} WHERE symbol = ?{extra}",
                            [src, dates[-LATE]] if extra else [src])
        build_daily_metrics(con)
    finally:
        con.close()
    return db


@pytest.fixture(scope="module")
def study(listing_db: Path, tmp_path_factory: pytest.TempPathFactory):
    from optimizer import api

    d = tmp_path_factory.mktemp("listing_study")
    spec = {"study": {"name": "listing"}, "data": {"universe": "all", "reserve_fraction": 0.2},
            "space": {"variant": "D", "buy_threshold": {"type": "int", "low": 60, "high": 70, "step": 10},
                      "exit": "fixed_10d"},
            "cv": {"n_splits": 2}, "objective": {"name": "hit_rate", "min_trades": 1},
            "sampler": {"name": "grid"}, "run": {"n_trials": 2}}
    url = f"sqlite:///{d / 's.db'}"
    run = api.run_study(spec, listing_db, url)
    params = d / "p.json"
    params.write_text(ok(cli("study", "best", "listing", "--storage", url, "--format", "json")).stdout)
    return run, params, d


def test_the_studys_universe_all_leaves_out_a_symbol_first_priced_inside_the_reserve(study):
    from optimizer.study.records import read_study

    rec = read_study(study[0].study)
    assert rec.symbols == 33  # before: 34, ZZR an empty column of every fold
    assert rec.coverage["unpriced"] == 1  # counted with the symbols 'all' left out for want of a price
    from optimizer.data.universe import unpriced_note

    # the note does not only say "ingest their prices" (explore22: ZZR has prices, inside the reserve)
    assert "or first priced inside the final reserve" in unpriced_note(rec.coverage["unpriced"])


def test_backtest_of_the_trial_reproduces_it(study, listing_db):
    _, params, d = study
    doc = json.loads(ok(cli("backtest", "--db", listing_db, "--params", params, "--no-save", "--format", "json",
                            "--out", d / "out")).stdout)
    # before: exit 2, "the store's data differs from the trial's ... resolves to 33 symbols, the trial ran on 34";
    # and with the study's panel cut to 33 symbols by Panel.subset (Fortran-ordered columns), avg_excess_return /
    # avg_benchmark_return differed from the backtest's in the last bits
    assert doc["symbols"] == 33 and doc["reproduces_trial"] is True
    assert [r["metric"] for r in doc["comparison"] if not r["equal"]] == []
    assert {r["metric"] for r in doc["comparison"]} >= {"avg_excess_return", "avg_benchmark_return"}


def test_backtest_final_of_the_trial_keeps_the_trials_universe(study, listing_db):
    _, params, d = study
    doc = json.loads(ok(cli("backtest", "--db", listing_db, "--params", params, "--no-save", "--final",
                            "--format", "json", "--out", d / "out")).stdout)
    con = connect(listing_db, read_only=True)
    try:
        last = str(con.execute("SELECT max(date) FROM daily_metrics").fetchone()[0])
    finally:
        con.close()
    # before: 34 symbols (the listing's 'all' over the whole span) against the trial's 33 -> "data differs" once the
    # study left it out; now through the reserve on the trial's symbols
    assert doc["symbols"] == 33 and doc["end"] == last


def test_a_subset_panel_is_c_ordered_like_a_loaded_one(listing_db):
    from optimizer.study.data import load_universe_panel

    p = load_universe_panel(listing_db, "tier1")
    sub = p.subset(list(p.symbols[::2]))
    assert all(v.flags["C_CONTIGUOUS"] for v in sub.fields.values())
    assert np.array_equal(sub["close"], p["close"][:, ::2], equal_nan=True)


def test_backtest_json_reports_every_engine_metric_with_counts_as_integers(listing_db, tmp_path):
    """explore20 noticed: `backtest --format json` left out excess_sharpe (the engine, the stored trial and the
    comparison have it) and wrote counts as floats ("total_trades": 82.0)."""
    from optimizer.engine.metrics import METRIC_KEYS

    out = ok(cli("backtest", "--db", listing_db, "--universe", "tier1", "--variant", "D", "--no-save",
                 "--format", "json", "--out", tmp_path / "out")).stdout
    doc = json.loads(out)
    assert set(METRIC_KEYS) <= set(doc)
    for k in ("total_signals", "total_trades", "closed_trades", "open_at_end"):
        assert type(doc[k]) is int and f'"{k}": {doc[k]},' in out
    assert doc["total_trades"] == doc["closed_trades"] + doc["open_at_end"] > 0
    assert isinstance(doc["excess_sharpe"], float)
