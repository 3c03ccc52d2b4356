"""mend12: three real-data defects found by the scale audit (explore11).

1. ``universe = "all"`` ran on every symbol of daily_metrics, FINRA symbols without a single price included (a real
   FINRA day lists ~11,000 symbols against the 128 the real price files hold): now ``all`` is the store's symbols
   with a price in the span, and how many it left out is counted (panel coverage, study record, command output).
2. FINRA volumes on the far side of a split the store does not record: warned, once per symbol (``data.splitcheck``).
3. A table's HTML file name: the canonical symbol, through ``paths.safe_name``.

Real data (../shared/data/real) is read where it exists and the tests that need it skip cleanly where it does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _cli_helpers import cli, ok
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect

UNPRICED = ("ZZA", "ZZB", "ZZC.W", "ZZD")  # FINRA symbols of the store with no price row


@pytest.fixture(scope="module")
def unpriced_db(synth_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted synthetic store (33 priced symbols, 374 sessions) plus four FINRA symbols that have short-sale
    rows on every session and no price at all, as a real FINRA year beside a few priced names; metrics rebuilt."""
    db = tmp_path_factory.mktemp("unpriced") / "store.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    try:
        days = [r[0] for r in con.execute("SELECT DISTINCT date FROM finra_short_daily ORDER BY 1").fetchall()]
        rows = [(d, s, "CNMS", 1000 + k, 3000 + k, 0) for d in days for k, s in enumerate(UNPRICED)]
        con.executemany("INSERT INTO finra_short_daily (date, symbol, facility, short_volume, total_volume, "
                        "short_exempt_volume, source_file) VALUES (?, ?, ?, ?, ?, ?, 'mend12')", rows)
        build_daily_metrics(con)
        have = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics").fetchall()}
        priced = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM prices_daily").fetchall()}
    finally:
        con.close()
    assert set(UNPRICED) <= have and not set(UNPRICED) & priced  # the store holds them, without a price
    return db


def _priced(db: Path) -> list[str]:
    con = connect(db, read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT DISTINCT symbol FROM prices_daily WHERE symbol NOT LIKE '^%' "
                                          "ORDER BY 1").fetchall()]
    finally:
        con.close()


def test_universe_all_is_the_symbols_with_a_price_and_counts_the_finra_symbols_left_out(unpriced_db):
    """``all`` resolves to the 33 priced symbols (before: 37, four columns of the panel with no close at all), the
    panel's coverage counts the 4 left out, and the one wording states it. A span with prices for a symbol only
    outside it leaves that symbol out too."""
    import numpy as np

    from optimizer.data.universe import unpriced_note
    from optimizer.study.data import load_universe_panel, universe_symbols

    priced = _priced(unpriced_db)
    assert len(priced) == 33
    assert universe_symbols(unpriced_db, "all") == priced
    panel = load_universe_panel(unpriced_db, "all")
    assert list(panel.symbols) == priced
    assert np.isfinite(panel["close"]).any(axis=0).all()  # no empty price column
    assert panel.coverage.unpriced == 4 and panel.coverage.to_dict()["unpriced"] == 4
    assert "left out 4 symbols with no price" in panel.coverage.describe()
    assert unpriced_note(4).startswith("universe all left out 4 symbols with no price in the span")
    assert unpriced_note(0) is None
    # a named tier or a list is not touched: it never held them
    tier = load_universe_panel(unpriced_db, "tier1")
    assert tier.coverage.unpriced == 0 and len(tier.symbols) == 15


def test_universe_all_left_out_count_reaches_the_study_record_and_the_backtest_output(unpriced_db, tmp_path):
    """The study's record (its coverage) and the settings it prints carry the count; ``backtest --universe all``
    runs on the priced symbols and says how many it left out, in its JSON (coverage.unpriced) and its terminal
    line. Before: the study ran on 37 symbols, 4 of them without a price, and nothing said so."""
    from optimizer import api
    from optimizer.study.data_settings import data_settings_rows, study_settings
    from optimizer.study.records import read_study

    spec = {"study": {"name": "all12"}, "data": {"universe": "all"},
            "space": {"variant": "D", "buy_threshold": {"type": "int", "low": 60, "high": 70, "step": 10},
                      "exit": "fixed_10d"},
            "cv": {"n_splits": 2}, "objective": {"name": "hit_rate", "min_trades": 1},
            "sampler": {"name": "grid"}, "run": {"n_trials": 2}}
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = api.run_study(spec, unpriced_db, url)
    rec = read_study(run.study)
    assert rec.symbols == 33 and rec.coverage["unpriced"] == 4
    rows = dict(data_settings_rows(study_settings(rec)))
    assert "33 symbols (universe all left out 4 symbols with no price" in rows["data"]

    res = ok(cli("backtest", "--db", unpriced_db, "--universe", "all", "--variant", "D", "--no-save",
                 "--format", "json", "--out", tmp_path / "out"))
    doc = json.loads(res.stdout)
    assert doc["symbols"] == 33 and doc["coverage"]["unpriced"] == 4
    res = ok(cli("backtest", "--db", unpriced_db, "--universe", "all", "--variant", "D", "--no-save",
                 "--out", tmp_path / "out"))
    assert "universe all (universe all left out 4 symbols with no price" in " ".join(res.stdout.split())


# ------------------------------------------------------------------------------------ 3. a table's HTML file name


def test_a_tables_html_file_is_named_by_the_canonical_symbols_whatever_their_spelling(unpriced_db, tmp_path):
    """`table --tickers` named its HTML file from the raw text: `zzc/w,spy` -> `..._zzc_w_spy-<hash>.html`,
    `ZZC-W,SPY` -> another file, `ZZC.W,SPY` a third, the same table three times. Now the canonical symbols (the
    ones the table shows) name it: every spelling writes `<date>_scan_ZZC.W_SPY.html` under `<out>/tables`, and a
    path-like ticker is refused before anything is written."""
    from _cli_helpers import one_line_error

    out = tmp_path / "out"
    names = set()
    for spelling in ("zzc/w,spy", "ZZC-W,SPY", "ZZC.W, spy", "zzc.w;Spy", "ZZC W,SPY,spy"):
        res = ok(cli("table", "--db", unpriced_db, "--tickers", spelling, "--date", "2024-03-01", "--out", out))
        names.add(res.stdout.strip().splitlines()[-1])
    assert names == {f"html: {out / 'tables' / '2024-03-01_scan_ZZC.W_SPY.html'}"}
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["out/tables/2024-03-01_scan_ZZC.W_SPY.html"]
    one_line_error(cli("table", "--db", unpriced_db, "--tickers", "../../x", "--out", out), "ticker")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == written
