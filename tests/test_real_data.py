"""Issue 12 on the real files in ../shared/data/real (skipped when absent): coverage, gaps, share classes,
index exclusion and split adjustment; plus a store with a hole (synthetic) for the gap rule."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from _cli_helpers import cli
from _ingest_helpers import REAL, need, table, write

from optimizer.analytics.scanner import scan
from optimizer.analytics.tables import daily_table
from optimizer.data.coverage import MIN_COVERAGE, store_coverage
from optimizer.data.ingest import ingest_paths
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect
from optimizer.data.universe import resolve_universe
from optimizer.engine.panel import load_panel
from optimizer.data.rolling import rolling_zscore
from optimizer.errors import DataError

pytestmark = pytest.mark.realdata

SPLITS = {"NVDA": dt.date(2024, 6, 10), "AVGO": dt.date(2024, 7, 15)}


def _tidy_subset(tmp_path, symbols: set[str]):
    """The real tidy FINRA tables (2020 and 2025 days) restricted to a few symbols (keeps the test fast)."""
    out = []
    for name in ("finra_short_daily_2020.csv.gz", "finra_short_daily_2025.csv.gz"):
        df = pd.read_csv(need(REAL / name), dtype=str, keep_default_na=False)
        df = df[df["symbol"].isin(symbols)]
        p = tmp_path / name.replace(".csv.gz", "_subset.csv")
        df.to_csv(p, index=False)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    con = connect(tmp / "real.duckdb")
    prices = [need(REAL / "prices_daily.csv.gz"), need(REAL / "prices_daily_extra.csv.gz")]
    assert ingest_paths(con, "prices", prices).exit_code == 0
    keep = {"SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AVGO", "BRK/B", "JPM", "XLK", "XLF"}
    assert ingest_paths(con, "finra-short", _tidy_subset(tmp, keep)).exit_code == 0
    build_daily_metrics(con)
    con.close()
    ro = connect(tmp / "real.duckdb", read_only=True)  # read-only: other processes (the CLI) may open it too
    yield ro, tmp / "real.duckdb"
    ro.close()


def test_coverage_of_the_real_store(real_store):
    con, _ = real_store
    cov = {c.source: c for c in store_coverage(con)}
    f = cov["finra_short"]
    assert (f.start, f.end, f.sessions, f.expected) == (dt.date(2020, 1, 2), dt.date(2025, 9, 11), 8, 1431)
    assert [(g.first, g.last, g.sessions) for g in f.gaps] == [(dt.date(2020, 1, 10), dt.date(2025, 9, 9), 1423)]
    p = cov["prices"]
    assert (p.start, p.end, p.sessions, p.expected, p.gaps) == (dt.date(2022, 1, 3), dt.date(2025, 12, 31), 1003, 1003, ())
    assert cov["otc"].expected == 0 and cov["lit"].sessions == 0


def test_a_span_below_the_minimum_is_refused_naming_source_and_range(real_store):
    con, _ = real_store
    with pytest.raises(DataError) as e:
        load_panel(con, ["AAPL", "MSFT"])
    msg = str(e.value)
    assert "too little finra_short data: 8 of 1,508 NYSE sessions (0.5%) in 2020-01-02..2025-12-31" in msg
    assert "below the minimum 90%; missing 2020-01-10..2025-09-09 (1423 sessions)" in msg
    # the 2020 week alone is covered: the panel loads and states it
    p = load_panel(con, ["AAPL", "MSFT"], "2020-01-02", "2020-01-09", required=("finra_short",))
    assert p.coverage.source("finra_short").ratio == 1.0 and p.coverage.source("prices").sessions == 0
    assert p.coverage.to_dict()["sources"]["finra_short"]["sessions"] == 6
    assert MIN_COVERAGE == 0.9


@pytest.mark.slow
def test_walkforward_on_the_real_store_fails_early_with_the_coverage_message(real_store, tmp_path):
    _, db = real_store
    spec = tmp_path / "wf.toml"
    spec.write_text((__import__("pathlib").Path(__file__).resolve().parents[1] / "studies" / "demo.toml").read_text())
    # in-process (the command's refusal is the point, not the process): the same exit code 2 and stderr
    p = cli("walkforward", spec, "--db", db, "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", tmp_path / "out")
    assert p.exit_code == 2, (p.stderr[-2000:], p.exception)
    assert "too little finra_short data" in p.stderr and "Traceback" not in p.output
    assert len(p.stderr.strip().splitlines()) == 1


def test_share_classes_meet_and_indices_are_context_only(real_store):
    con, _ = real_store
    rows = table(con, "SELECT date, short_volume IS NOT NULL, close IS NOT NULL FROM daily_metrics "
                      "WHERE symbol = 'BRK.B' AND date = DATE '2025-09-10'")
    assert rows == [(dt.date(2025, 9, 10), True, True)]  # FINRA BRK/B and Yahoo BRK-B are one row
    assert table(con, "SELECT count(*) FROM daily_metrics WHERE symbol LIKE 'BRK%' AND symbol <> 'BRK.B'") == [(0,)]
    have = [r[0] for r in table(con, "SELECT DISTINCT symbol FROM daily_metrics")]
    assert "^GSPC" in have and "^IXIC" in have
    uni = resolve_universe("all", have)
    assert not any(s.startswith("^") for s in uni) and "BRK.B" in uni


def test_table_defaults_to_the_latest_finra_date_and_scan_explains_an_empty_result(real_store):
    con, _ = real_store
    t = daily_table(con, tickers=["AAPL", "BRK-B"])
    assert set(t["date"]) == {dt.date(2025, 9, 11)}  # prices run to 2025-12-31, FINRA to 2025-09-11
    assert t.attrs["coverage"]["with_finra_short"] == 2
    with pytest.raises(DataError, match=r"no FINRA short-sale data in daily_metrics for AAPL on 2025-12-31; nearest dates with it: 2025-09-11"):
        daily_table(con, "2025-12-31", tickers=["AAPL"])
    r = scan(con)
    assert r.top.empty and r.window_start == dt.date(2025, 5, 5)
    assert r.reason.startswith("nothing ranked: FINRA short data covers 2 of the 90 sessions of the lookback window "
                               "2025-05-05..2025-09-11 (2.2%), below the minimum 90%; missing 2025-05-05..2025-09-09 (88 sessions)")
    # two FINRA days: no window of >= 3 sessions is covered, and a 2-session one ranks noise (every z is +-1)
    assert r.reason.endswith("Ingest the missing days: a ranking needs FINRA data on at least 3 of the last 3 sessions "
                             "(a z-score over 2 values is always ±1, so every symbol would score alike)")


def test_the_scan_commands_hint_for_a_thin_window_is_a_command_that_runs(real_store, tmp_path):
    """On the real store (2 FINRA days in the 90-session window) ``accumopt scan`` ranks nothing. It used to suggest
    ``--lookback 2 --trend-days 2``: a 2-session z is always +-1, so that ranking was rounding noise. With no
    window of >= 3 sessions the data covers, the hint is to ingest more days, and a 2-session window is refused
    (exit 2, one line). The runnable hint on a store that covers a shorter window: test_cli."""
    import shutil

    from click.testing import CliRunner

    from optimizer.cli import main

    db = tmp_path / "store.duckdb"  # the scan writes scanner_daily_metrics: a copy, not the module's store
    shutil.copy(real_store[1], db)
    base = ["scan", "--db", str(db), "--out", str(tmp_path / "out"), "--no-png", "--no-export-full"]
    res = CliRunner().invoke(main, base, env={"ACCUMOPT_DB": None})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Ingest the missing days: a ranking needs FINRA data on at least 3 of the last 3 sessions" in text, text
    assert "--lookback" not in text
    res = CliRunner().invoke(main, base + ["--lookback", "2", "--trend-days", "2"], env={"ACCUMOPT_DB": None})
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: --lookback must be an integer >= 3 (a z-score over 2 values is always ±1")


# ---------------------------------------------------------------------------------------------- splits


def _raw_finra_from_prices(px: pd.DataFrame, symbol: str, ex: dt.date, seed: int) -> pd.DataFrame:
    """Raw FINRA CNMS rows for ``symbol`` built from its ADJUSTED price volume: before the ex-date the raw share
    count is the adjusted one / 10 (a 10:1 split), as FINRA published it."""
    rng = np.random.default_rng(seed)
    d = px[px["symbol"] == symbol].sort_values("date")
    adj = d["volume"].to_numpy(dtype=float)
    raw_total = adj * 0.4 * np.exp(rng.normal(0, 0.05, len(d)))
    raw_total = np.where(pd.to_datetime(d["date"]).dt.date.to_numpy() < ex, raw_total / 10, raw_total)
    short = raw_total * np.clip(rng.normal(0.5, 0.03, len(d)), 0.3, 0.7)
    return pd.DataFrame({"date": d["date"], "symbol": symbol, "short_volume": np.round(short).astype(np.int64),
                         "total_volume": np.round(raw_total).astype(np.int64), "facility_file": "CNMS"})


def test_a_10_for_1_split_leaves_the_volume_z_scores_unremarkable(tmp_path):
    px = pd.read_csv(need(REAL / "prices_daily.csv.gz"))
    px = px[px["symbol"].isin(list(SPLITS)) & (px["date"] >= "2024-01-02") & (px["date"] <= "2024-12-31")]
    con = connect(tmp_path / "s.duckdb")
    p = write(tmp_path / "px.csv", px[["date", "symbol", "open", "high", "low", "close", "volume"]].to_csv(index=False))
    assert ingest_paths(con, "prices", [p]).exit_code == 0
    fin = pd.concat([_raw_finra_from_prices(px, s, ex, i) for i, (s, ex) in enumerate(SPLITS.items())])
    f = write(tmp_path / "finra.csv", fin.to_csv(index=False))
    assert ingest_paths(con, "finra-short", [f]).exit_code == 0

    def around(symbol):
        build_daily_metrics(con, z_window=20)
        ex = SPLITS[symbol]
        z = con.execute("SELECT date, short_buy_volume_z FROM daily_metrics WHERE symbol = ? AND date BETWEEN ? AND ? "
                        "ORDER BY date", [symbol, ex - dt.timedelta(days=10), ex + dt.timedelta(days=21)]).fetchall()
        return max(abs(v) for _, v in z if v is not None)

    raw_peak = {s: around(s) for s in SPLITS}
    assert all(v > 3.5 for v in raw_peak.values()), raw_peak  # without the split table the volume z spikes
    s_csv = write(tmp_path / "splits.csv", "symbol,ex_date,split_from,split_to\nNVDA,2024-06-10,1,10\n")
    s_json = write(tmp_path / "avgo_splits.json", json.dumps({"status": "OK", "results": [
        {"execution_date": "2024-07-15", "split_from": 1, "split_to": 10, "ticker": "AVGO", "id": "x"}]}))
    assert ingest_paths(con, "splits", [s_csv]).exit_code == 0
    assert ingest_paths(con, "splits", [s_json]).exit_code == 0
    assert table(con, "SELECT symbol, ex_date, ratio FROM splits ORDER BY 1") == [
        ("AVGO", dt.date(2024, 7, 15), 10.0), ("NVDA", dt.date(2024, 6, 10), 10.0)]
    adj_peak = {s: around(s) for s in SPLITS}
    assert all(v < 3.0 for v in adj_peak.values()), adj_peak
    # volumes are on the adjusted basis; ratios unchanged (computed from the raw figures)
    pre = con.execute("SELECT total_volume, short_buy_sell_ratio FROM daily_metrics WHERE symbol = 'NVDA' AND date = '2024-06-07'").fetchone()
    raw = fin[(fin.symbol == "NVDA") & (fin.date == "2024-06-07")].iloc[0]
    assert pre[0] == int(raw.total_volume) * 10
    assert pre[1] == pytest.approx(raw.short_volume / (raw.total_volume - raw.short_volume), rel=1e-12)
    # the scanner's volume z on the ex-date is unremarkable too (20-session window across the split)
    r = scan(con, date="2024-06-10", lookback=20, min_periods=20, min_total_volume=0)
    assert abs(r.metrics.set_index("symbol").loc["NVDA", "volume_z"]) < 3.0
    con.close()


# ---------------------------------------------------------------------------------------------- a store with a hole


def test_a_hole_is_a_hole_in_the_panel_and_windows_wait_for_it_to_refill(tmp_path):
    days = pd.bdate_range("2024-01-02", "2024-03-28")
    from optimizer.data.calendar import session_days

    sess = [pd.Timestamp(d) for d in session_days("2024-01-02", "2024-03-28")]
    hole = sess[30:32]  # two sessions missing from every source
    rows = []
    for i, d in enumerate(sess):
        if d in hole:
            continue
        c = 100 + i
        rows.append(f"{d.date()},AAA,{c},{c + 1},{c - 1},{c},{1000 + 10 * i}\n")
    p = write(tmp_path / "px.csv", "date,symbol,open,high,low,close,volume\n" + "".join(rows))
    fin = "date,symbol,short_volume,total_volume,facility_file\n" + "".join(
        f"{d.date()},AAA,{400 + (i * 37) % 100},1000,CNMS\n" for i, d in enumerate(sess) if d not in hole)
    f = write(tmp_path / "f.csv", fin)
    con = connect(":memory:")
    assert ingest_paths(con, "prices", [p]).exit_code == 0 and ingest_paths(con, "finra-short", [f]).exit_code == 0
    build_daily_metrics(con, z_window=5)
    panel = load_panel(con, ["AAA"])  # 2 of 61 sessions missing: 96.7% >= 90%
    assert len(panel.dates) == len(sess) and len(days) >= len(sess)
    i0 = list(panel.dates).index(np.datetime64(hole[0].date(), "D"))
    assert np.isnan(panel["close"][i0:i0 + 2, 0]).all()
    r = panel["return"][:, 0]
    assert np.isnan(r[i0:i0 + 3]).all()  # the hole and the first session after it (no 3-session return)
    assert r[i0 + 3] == pytest.approx((100 + i0 + 3) / (100 + i0 + 2) - 1)
    z = rolling_zscore(panel["short_buy_volume"], 5)[:, 0]
    assert np.isnan(z[i0:i0 + 2 + 4]).all() and np.isfinite(z[i0 + 6])  # NaN until the 5-session window refills
    stored = con.execute("SELECT date, short_buy_volume_z FROM daily_metrics ORDER BY date").fetchall()
    after = [v for d, v in stored if d > hole[-1].date()]
    assert after[:4] == [None] * 4 and after[4] is not None
    cov = panel.coverage.source("finra_short")
    assert (cov.sessions, cov.expected, [(g.first, g.sessions) for g in cov.gaps]) == (len(sess) - 2, len(sess), [(hole[0].date(), 2)])
    # recomputing on the data truncated before the hole gives identical values up to there
    t = load_panel(con, ["AAA"], None, str(sess[i0 - 1].date()))
    assert np.array_equal(t["return"][:, 0], r[:i0], equal_nan=True)
