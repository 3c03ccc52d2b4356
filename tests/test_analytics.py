"""Tests of optimizer.analytics: scanner, daily tables, pressure plots, price charts, constituents.

Every store here is hand-built in a tmp DuckDB (store.connect + direct INSERTs); oracles are hand arithmetic
or plain pandas/numpy re-computations of the documented formulas.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from optimizer.analytics import (
    DISCLAIMER,
    aggregate_pressure,
    daily_table,
    load_constituents,
    pressure_data,
    pressure_plot,
    price_chart,
    render_aggregate,
    render_daily_table,
    render_pressure,
    render_price,
    render_scan,
    resample_ohlcv,
    save_figure,
    scan,
    write_daily_table_html,
    write_scan,
)
from optimizer.analytics.constituents import PROXY_MAP
from optimizer.analytics.plots import crossings
from optimizer.data.store import connect, insert_finra_short
from optimizer.engine.features import FeatureCache
from optimizer.engine.panel import load_panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.errors import DataError, InputFileError, ParameterError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

# NYSE sessions around the 2024-07-04 holiday.
DATES = [dt.date(2024, 7, d) for d in (1, 2, 3, 5, 8, 9, 10)]
SCAN_DAY = DATES[-1]
AFTER = dt.date(2024, 7, 11)


def _finra_rows() -> list[tuple]:
    """(date, symbol, facility, short, total) rows of the hand store."""
    rows: list[tuple] = []
    # AAA: total 200k every day; ratio 1 (short 100k) except the scan day: ratio 3 (short 150k).
    for d in DATES:
        rows.append((d, "AAA", "CNMS", 150_000 if d == SCAN_DAY else 100_000, 200_000))
    # AAA also has facility rows with different numbers: CNMS must win.
    rows.append((SCAN_DAY, "AAA", "FNSQ", 10_000, 190_000))
    # BBB: varying short and total volume (a volume spike on the scan day).
    bbb_short = [60_000, 55_000, 70_000, 65_000, 50_000, 60_000, 120_000]
    bbb_total = [150_000, 140_000, 160_000, 150_000, 130_000, 150_000, 400_000]
    rows += [(d, "BBB", "CNMS", s, t) for d, s, t in zip(DATES, bbb_short, bbb_total)]
    # CCC: illiquid (1k shares/day) with a huge ratio jump: scored but never in the top.
    ccc_short = [400, 500, 450, 500, 400, 500, 950]
    rows += [(d, "CCC", "CNMS", s, 1_000) for d, s in zip(DATES, ccc_short)]
    # DDD: only per-facility rows (no CNMS): the consolidated value is the sum; bearish drift.
    ddd = [(100_000, 200_000), (95_000, 200_000), (90_000, 200_000), (85_000, 210_000), (80_000, 190_000),
           (70_000, 200_000), (50_000, 220_000)]
    for d, (s, t) in zip(DATES, ddd):
        rows.append((d, "DDD", "FNSQ", s // 2, t // 2))
        rows.append((d, "DDD", "FNYX", s - s // 2, t - t // 2))
    return rows


def _insert_finra(con, rows) -> None:
    df = pd.DataFrame(rows, columns=["date", "symbol", "facility", "short_volume", "total_volume"])
    df["market"] = "B,Q,N"
    df["short_exempt_volume"] = 0
    df["source_file"] = "hand"
    con.register("_f", df)
    insert_finra_short(
        con, "SELECT date, symbol, facility, market, short_volume, short_exempt_volume, total_volume, source_file FROM _f"
    )
    con.unregister("_f")


def _oracle(rows, symbol: str, lookback: int, trend_days: int, day=SCAN_DAY) -> dict:
    """Plain pandas re-computation of one symbol's scanner metrics (documented formulas)."""
    df = pd.DataFrame(rows, columns=["date", "symbol", "facility", "short", "total"])
    df = df[(df["symbol"] == symbol) & (df["date"] <= day)]
    if (df["facility"] == "CNMS").any():
        df = df[df["facility"] == "CNMS"]
    g = df.groupby("date")[["short", "total"]].sum().sort_index()
    window = sorted({r[0] for r in rows if r[0] <= day})[-lookback:]
    g = g[g.index >= window[0]]
    ratio = g["short"] / (g["total"] - g["short"])
    rz = (ratio.iloc[-1] - ratio.mean()) / ratio.std(ddof=0)
    vol = g["total"].astype(float)
    vz = (vol.iloc[-1] - vol.mean()) / vol.std(ddof=0) if vol.std(ddof=0) > 0 else np.nan
    tail = ratio.iloc[-trend_days:].to_numpy()
    slope = np.polyfit(np.arange(len(tail)), tail, 1)[0]
    tz = slope / ratio.std(ddof=0)
    score = rz + 0.5 * np.sign(rz) * np.clip(0 if np.isnan(vz) else vz, 0, 4) + 0.5 * np.clip(tz, -2, 2)
    return {"ratio": ratio.iloc[-1], "ratio_z": rz, "volume_z": vz, "trend": slope, "trend_z": tz, "score": score}


@pytest.fixture()
def store(tmp_path):
    con = connect(tmp_path / "t.duckdb")
    _insert_finra(con, _finra_rows())
    yield con
    con.close()


# --- scanner -------------------------------------------------------------------------------------------------


def test_scanner_hand_computed_values(store):
    r = scan(store, lookback=4, trend_days=3, min_periods=4)
    assert r.date == SCAN_DAY and r.window_start == DATES[-4]
    m = r.metrics.set_index("symbol")
    # AAA by hand: window ratios [1, 1, 1, 3] -> mean 1.5, pstd sqrt(3)/2, z = sqrt(3); volume constant -> NULL z;
    # trend = slope of [1, 1, 3] = 1.0, trend_z = 2/sqrt(3); score = sqrt(3) + 0.5 * 2/sqrt(3) = 4/sqrt(3).
    a = m.loc["AAA"]
    assert a["short_buy_sell_ratio"] == pytest.approx(3.0)
    assert a["short_buy_sell_ratio_z"] == pytest.approx(math.sqrt(3))
    assert pd.isna(a["volume_z"])
    assert a["trend"] == pytest.approx(1.0)
    assert a["trend_z"] == pytest.approx(2 / math.sqrt(3))
    assert a["score"] == pytest.approx(4 / math.sqrt(3))
    assert a["provenance"] == "CNMS" and a["total_volume"] == 200_000
    assert a["short_share"] == pytest.approx(0.75)
    for sym in ("BBB", "DDD"):
        o = _oracle(_finra_rows(), sym, lookback=4, trend_days=3)
        got = m.loc[sym]
        assert got["short_buy_sell_ratio"] == pytest.approx(o["ratio"])
        assert got["short_buy_sell_ratio_z"] == pytest.approx(o["ratio_z"], rel=1e-9)
        assert got["volume_z"] == pytest.approx(o["volume_z"], rel=1e-9)
        assert got["trend"] == pytest.approx(o["trend"], rel=1e-9)
        assert got["trend_z"] == pytest.approx(o["trend_z"], rel=1e-9)
        assert got["score"] == pytest.approx(o["score"], rel=1e-9)
    assert m.loc["DDD", "provenance"] == "FACILITY_SUM:FNSQ+FNYX"
    assert m.loc["DDD", "total_volume"] == 220_000
    # BBB: volume 400k vs window [150k, 130k, 150k, 400k]: mean 207.5k, pstd 111.4k -> z 1.727 < 2: no spike
    vol = np.array([150_000, 130_000, 150_000, 400_000.0])
    assert m.loc["BBB", "volume_z"] == pytest.approx((vol[-1] - vol.mean()) / vol.std())
    assert not bool(m.loc["BBB", "volume_spike"]) and not bool(m.loc["AAA", "volume_spike"])
    # illiquid CCC is scored but flagged illiquid and unranked
    assert not bool(m.loc["CCC", "liquid"]) and pd.isna(m.loc["CCC", "rank"]) and np.isfinite(m.loc["CCC", "score"])


def test_scanner_flags_and_cross_section(store):
    r = scan(store, lookback=7, trend_days=3, min_periods=4, outlier_z=2.0, volume_z=1.5, ratio_z=1.0)
    m = r.metrics.set_index("symbol")
    liquid = m[m["liquid"]]
    share = liquid["short_share"]
    xz = (share - share.mean()) / share.std(ddof=0)
    assert np.allclose(liquid["short_share_xz"], xz)
    # the cross-section's mean/std come from liquid symbols only; illiquid CCC is measured against them
    ccc = (m.loc["CCC", "short_share"] - share.mean()) / share.std(ddof=0)
    assert m.loc["CCC", "short_share_xz"] == pytest.approx(ccc)
    for sym, row in m.iterrows():
        assert bool(row["outlier"]) == bool(abs(row["short_buy_sell_ratio_z"]) >= 2.0)
        assert bool(row["volume_spike"]) == bool(pd.notna(row["volume_z"]) and row["volume_z"] >= 1.5)
    assert bool(m.loc["AAA", "outlier"])  # ratio 3 vs six days of 1: z = sqrt(6) > 2
    assert m.loc["AAA", "short_buy_sell_ratio_z"] == pytest.approx(math.sqrt(6))
    assert [bool(m.loc[s_, "outlier"]) for s_ in ("AAA", "BBB", "DDD")] == [True, True, False]
    assert [bool(m.loc[s_, "volume_spike"]) for s_ in ("AAA", "BBB", "DDD")] == [False, True, True]
    assert [bool(m.loc[s_, "ratio_extreme"]) for s_ in ("AAA", "BBB", "DDD", "CCC")] == [
        bool(abs(m.loc[s_, "short_share_xz"]) >= 1.0) for s_ in ("AAA", "BBB", "DDD", "CCC")]
    assert bool(m.loc["AAA", "ratio_extreme"]) and bool(m.loc["CCC", "ratio_extreme"])


def test_scanner_top_ordering_and_sides(store):
    r = scan(store, lookback=4, min_periods=4, top=2)
    # scores (see the oracle test): AAA 2.309, CCC 2.316 (illiquid), BBB -2.841, DDD -2.892
    assert list(r.top["symbol"]) == ["AAA", "BBB"] and list(r.top["rank"]) == [1, 2]
    liquid = r.metrics[r.metrics["liquid"] & r.metrics["score"].notna()]
    assert list(r.top["symbol"]) == list(liquid.sort_values("score", ascending=False)["symbol"][:2])
    assert "CCC" not in set(r.top["symbol"])
    d = scan(store, lookback=4, min_periods=4, top=3, side="distribution")
    assert list(d.top["symbol"]) == ["DDD", "BBB", "AAA"]
    b = scan(store, lookback=4, min_periods=4, top=3, side="both")
    assert list(b.top["symbol"]) == ["DDD", "BBB", "AAA"] and b.top["score"].abs().is_monotonic_decreasing
    assert list(scan(store, lookback=4, min_periods=4, top=3, min_total_volume=0).top["symbol"]) == ["CCC", "AAA", "BBB"]


def test_scanner_point_in_time(store):
    before = scan(store, date=SCAN_DAY, lookback=4, min_periods=4).metrics
    _insert_finra(store, [(AFTER, s, "CNMS", 10, 5_000_000) for s in ("AAA", "BBB", "DDD")]
                  + [(AFTER, "NEW", "CNMS", 1, 2)])
    after = scan(store, date=SCAN_DAY, lookback=4, min_periods=4).metrics
    pd.testing.assert_frame_equal(before, after)
    assert scan(store, lookback=4, min_periods=4).date == AFTER  # default date = latest


def test_scanner_no_data_date_and_params(store):
    with pytest.raises(DataError, match=r"^no FINRA data on 2024-07-04; nearest dates: 2024-07-03, 2024-07-05$"):
        scan(store, date="2024-07-04")
    with pytest.raises(ParameterError, match=r"lookback must be an integer >= 3 \(.*\), got lookback=1"):
        scan(store, lookback=1)
    with pytest.raises(ParameterError, match="side must be one of"):
        scan(store, side="up")


def test_thin_window_hint_never_proposes_a_window_whose_ranking_is_rounding_noise(tmp_path):
    """A z-score over 2 values is always +-1: the old hint (--lookback 2 --trend-days 2) ranked every symbol on the
    same few scores. The scan refuses such settings, and the hint names the longest window the data covers with at
    least 3 sessions (a command that ranks), or says to ingest more days."""
    con = connect(tmp_path / "h.duckdb")
    _insert_finra(con, _finra_rows())  # 7 consecutive sessions 2024-07-01..10
    r = scan(con)  # lookback 90: 7/90 covered
    assert r.top.empty and r.reason.endswith("Ingest the missing days, or scan a window the data covers (e.g. --lookback 7)")
    ranked = scan(con, lookback=7)
    assert ranked.reason is None and sorted(ranked.top["symbol"]) == ["AAA", "BBB", "DDD"]  # CCC: illiquid
    assert ranked.top["score"].nunique() == 3
    for kw, name in (({"lookback": 2, "trend_days": 2}, "lookback must be an integer >= 3"),
                     ({"lookback": 7, "min_periods": 2}, "min_periods must be an integer in [3, lookback=7]")):
        with pytest.raises(ParameterError, match=re.escape(name + " (a z-score over 2 values is always ±1")):
            scan(con, **kw)
    # a hole 3 sessions back: no window of >= 3 sessions is 90% covered -> ingest, never a 2-session window
    con.execute("DELETE FROM finra_short_rows WHERE date = ?", [DATES[-3]])
    r = scan(con)
    assert r.top.empty and "--lookback" not in r.reason
    assert r.reason.endswith("Ingest the missing days: a ranking needs FINRA data on at least 3 of the last 3 sessions "
                             "(a z-score over 2 values is always ±1, so every symbol would score alike)")
    con.close()


def test_write_scan_replaces_rows_and_files(store, tmp_path):
    r1 = scan(store, lookback=4, min_periods=4, top=2)
    paths = write_scan(store, r1, tmp_path / "scanner")
    prev = scan(store, date=DATES[-2], lookback=4, min_periods=4)
    write_scan(store, prev, tmp_path / "scanner")
    n = lambda d: store.execute("SELECT count(*) FROM scanner_daily_metrics WHERE date = ?", [d]).fetchone()[0]  # noqa: E731
    assert n(SCAN_DAY) == 4 and n(DATES[-2]) == 4
    r2 = scan(store, lookback=5, min_periods=4, top=2)  # different params -> different values, same date
    write_scan(store, r2, tmp_path / "scanner")
    assert n(SCAN_DAY) == 4 and n(DATES[-2]) == 4
    stored = store.execute(
        "SELECT short_buy_sell_ratio_z, lookback FROM scanner_daily_metrics WHERE date = ? AND symbol = 'AAA'", [SCAN_DAY]
    ).fetchone()
    assert stored[1] == 5 and stored[0] == pytest.approx(r2.metrics.set_index("symbol").loc["AAA", "short_buy_sell_ratio_z"])
    day_dir = tmp_path / "scanner" / "2024-07-10"
    assert paths["metrics_csv"] == day_dir / "scanner_metrics.csv"
    assert len(pd.read_csv(day_dir / "scanner_metrics.csv")) == 4
    assert list(pd.read_csv(day_dir / "scanner_top.csv")["symbol"]) == list(r2.top["symbol"])
    data, _ = _html_figure(day_dir / "scanner_top.html")
    assert data[0]["name"] == "Scanner score" and list(data[0]["x"]) == list(r2.top["symbol"])
    hist, _ = _html_figure(day_dir / "scanner_scores.html")
    assert hist[0]["type"] == "histogram" and len(hist[0]["x"]) == 3  # the three liquid symbols
    buf = Console(record=True, width=200)
    render_scan(r2, buf)
    text = buf.export_text()
    assert "AAA" in text and "CCC" not in text
    none = scan(store, lookback=4, min_periods=4, top=2, min_total_volume=1e15)  # nothing ranked: no bare header
    buf = Console(record=True, width=200)
    render_scan(none, buf)
    lines = buf.export_text().splitlines()
    assert none.top.empty and none.reason.startswith("nothing ranked: no liquid symbol")
    assert lines[0].startswith("FINRA short-sale scanner") and lines[1].startswith("coverage: finra_short 4/4")
    assert lines[2].startswith("nothing ranked: no liquid symbol")


def test_write_scan_export_full_inference_version_and_older_table(store, tmp_path):
    # a scanner table written before the inference_version column existed gets it added
    store.execute("DROP TABLE IF EXISTS scanner_daily_metrics")
    store.execute("CREATE TABLE scanner_daily_metrics (date DATE NOT NULL, symbol VARCHAR NOT NULL, score DOUBLE, "
                  "PRIMARY KEY (date, symbol))")
    r = scan(store, lookback=4, min_periods=4, top=2, inference_version="Scanner_v2")
    paths = write_scan(store, r, tmp_path / "scanner", export_full=False, png=False)
    assert "metrics_csv" not in paths and not (tmp_path / "scanner" / "2024-07-10" / "scanner_metrics.csv").exists()
    assert not list((tmp_path / "scanner").rglob("*.png"))
    got = store.execute("SELECT DISTINCT inference_version FROM scanner_daily_metrics").fetchall()
    assert got == [("Scanner_v2",)] and (r.metrics["inference_version"] == "Scanner_v2").all()


def test_write_scan_png_required_without_kaleido_fails_before_nothing_is_lost(store, tmp_path, monkeypatch):
    from optimizer.report import files as _export

    monkeypatch.setattr(_export, "png_available", lambda: False)
    r = scan(store, lookback=4, min_periods=4, top=2)
    with pytest.raises(DataError, match=r"PNG output needs kaleido: install the png extra"):
        write_scan(store, r, tmp_path / "scanner", png=True)
    # all or nothing (mend20): no HTML / CSV without the PNGs asked for, no table rows, no temporary folder
    assert not (tmp_path / "scanner" / "2024-07-10").exists() and not list((tmp_path / "scanner").iterdir())
    assert store.execute("SELECT count(*) FROM scanner_daily_metrics").fetchall() == [(0,)]
    paths = write_scan(store, r, tmp_path / "auto")  # auto: no kaleido -> HTML only, no error
    assert "top_png" not in paths


def test_write_scan_writes_the_designs_pngs_with_kaleido(store, tmp_path):
    pytest.importorskip("kaleido", reason="PNG output needs the png extra (kaleido)")
    r = scan(store, lookback=4, min_periods=4, top=2)
    try:
        paths = write_scan(store, r, tmp_path / "scanner", png=True)
    except DataError as e:  # kaleido present but no Chrome/Chromium it can drive on this machine
        pytest.skip(str(e))
    for k, name in (("top_png", "scanner_top.png"), ("scores_png", "scanner_scores.png")):
        assert paths[k] == tmp_path / "scanner" / "2024-07-10" / name
        head = paths[k].read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and paths[k].stat().st_size > 5_000


@pytest.mark.realdata
def test_scanner_on_real_finra_universe(tmp_path):
    f = REAL / "finra_short_daily_2025.csv.gz"
    if not f.exists():
        pytest.skip("real data absent")
    raw = pd.read_csv(f, keep_default_na=False, dtype={"symbol": str})
    con = connect(tmp_path / "real.duckdb")
    rows = raw.rename(columns={"facility_file": "facility"})
    rows = rows.assign(date=pd.to_datetime(rows["date"]).dt.date, source_file="real")
    con.register("_r", rows)
    insert_finra_short(con, "SELECT date, symbol, facility, market, short_volume, short_exempt_volume, "
                       "total_volume, source_file FROM _r")
    # two FINRA days: a 2-session window would give every z +-1 (a ranking by rounding noise), so it is refused and
    # the shortest window (3) ranks nothing, saying to ingest more days; the metrics are still computed
    with pytest.raises(ParameterError, match=r"lookback must be an integer >= 3 \(a z-score over 2 values is always"):
        scan(con, lookback=2, trend_days=2, min_periods=2)
    r = scan(con, lookback=3, trend_days=2)
    assert r.date == dt.date(2025, 9, 11)
    assert len(r.metrics) == (raw["date"] == "2025-09-11").sum()
    spy = raw[(raw["symbol"] == "SPY") & (raw["date"] == "2025-09-11")].iloc[0]
    got = r.metrics.set_index("symbol").loc["SPY"]
    assert got["short_buy_sell_ratio"] == pytest.approx(spy.short_volume / (spy.total_volume - spy.short_volume))
    assert got["n_sessions"] == 2 and r.metrics["short_buy_sell_ratio_z"].isna().all()
    assert r.top.empty and "Ingest the missing days: a ranking needs FINRA data on at least 3" in r.reason
    con.close()


# --- daily_metrics fixtures -------------------------------------------------------------------------------------

DM_DATES = [dt.date(2024, 7, d) for d in (1, 2, 3, 5, 8, 9, 10, 11, 12, 15)]


@pytest.fixture()
def dm_store(tmp_path):
    con = connect(tmp_path / "dm.duckdb")
    con.execute("""
        CREATE TABLE daily_metrics (
            date DATE, symbol VARCHAR, close DOUBLE, "return" DOUBLE, short_volume BIGINT, total_volume BIGINT,
            short_buy_volume BIGINT, short_sell_volume BIGINT, short_buy_sell_ratio DOUBLE, short_buy_sell_ratio_z DOUBLE,
            lit_buy_volume DOUBLE, lit_sell_volume DOUBLE, lit_flow_imbalance DOUBLE, lit_flow_imbalance_z DOUBLE,
            return_z DOUBLE, otc_week_start DATE, otc_participation_rate DOUBLE, otc_participation_z DOUBLE,
            otc_status VARCHAR, confidence DOUBLE, provenance VARCHAR)""")
    rz = [0.5, 1.0, -0.5, 2.0, None, -1.5, 0.3, 1.2, -0.2, 0.8]
    im = [0.12, None, -0.05, 0.25, 0.1, -0.2, None, 0.05, 0.02, -0.3]
    iz = [1.0, None, -0.4, 2.2, 0.8, -1.7, None, 0.3, 0.1, -2.0]
    wk = [dt.date(2024, 6, 17)] * 3 + [dt.date(2024, 6, 24)] * 4 + [dt.date(2024, 7, 1)] * 3
    rate = {dt.date(2024, 6, 17): 0.40, dt.date(2024, 6, 24): 0.46, dt.date(2024, 7, 1): 0.43}
    rows = []
    for i, d in enumerate(DM_DATES):
        sv, tv = 1_000 + 10 * i, 2_000
        rows.append((d, "AAPL", 100 + i, 0.01 if i else None, sv, tv, sv, tv - sv, sv / (tv - sv), rz[i],
                     500.0, 400.0, im[i], iz[i], 0.5 if i else None, wk[i], rate[wk[i]], (i - 5) / 2,
                     "Anchored", 0.9, "CNMS,PRICES,LIT,OTC"))
        rows.append((d, "MSFT", 400 + i, -0.01, 3_000, 5_000, 3_000, 2_000, 1.5, -1.0, 1.0, 2.0, -0.3, -1.2, -0.4,
                     None, None, None, "None", 0.5, "CNMS,PRICES"))
    df = pd.DataFrame(rows, columns=[
        "date", "symbol", "close", "return", "short_volume", "total_volume", "short_buy_volume", "short_sell_volume",
        "short_buy_sell_ratio", "short_buy_sell_ratio_z", "lit_buy_volume", "lit_sell_volume", "lit_flow_imbalance",
        "lit_flow_imbalance_z", "return_z", "otc_week_start", "otc_participation_rate", "otc_participation_z",
        "otc_status", "confidence", "provenance"])
    con.register("_dm", df)
    con.execute("INSERT INTO daily_metrics SELECT * FROM _dm")
    con.unregister("_dm")
    # prices for the weekly resample: 2024-07-01 .. 2024-07-15 (07-04 holiday)
    px = [(d, "AAPL", 10.0 + i, 12.0 + i + (3 if i == 2 else 0), 9.0 + i - (2 if i == 1 else 0), 11.0 + i, 100.0 * (i + 1), "hand")
          for i, d in enumerate(DM_DATES)]
    con.executemany("INSERT INTO prices_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)", px)
    yield con
    con.close()


# --- daily tables ------------------------------------------------------------------------------------------------


def _hand_score(dm: pd.DataFrame, sym: str, day: str, window: int) -> float:
    """The engine's score formula (docs/ENGINE.md) by hand from the fixture's columns: population z over the last
    ``window`` sessions of the short ratio, lit imbalance, return and OTC participation; tanh terms (a missing lit /
    price z counts 0), intensity 0.7 + 0.6 sigmoid(otc z) (0.5 when missing); clip to [-1, 1]; (s + 1) 50."""
    d = dm[dm["symbol"] == sym].set_index("date").sort_index()

    def z(col: str) -> float:
        x = d[col].astype(float)
        r = x.rolling(window)
        v = ((x - r.mean()) / r.std(ddof=0)).loc[pd.Timestamp(day)]
        return float(v) if np.isfinite(v) else math.nan

    zs, zl, zp, zo = z("short_buy_sell_ratio"), z("lit_flow_imbalance"), z("return"), z("otc_participation_rate")
    raw = 0.55 * math.tanh(0.5 * zs) + 0.30 * (0.0 if math.isnan(zl) else math.tanh(0.5 * zl)) \
        + 0.15 * (0.0 if math.isnan(zp) else math.tanh(0.3 * zp))
    sg = 0.5 if math.isnan(zo) else 1 / (1 + math.exp(-zo))
    return (max(-1.0, min(1.0, raw * (0.7 + 0.6 * sg))) + 1) * 50


def test_daily_table_scores_are_the_engines_and_markers(dm_store):
    sp = ScoreParams(z_window=3)
    dm = dm_store.execute("SELECT * FROM daily_metrics").df().assign(date=lambda f: pd.to_datetime(f["date"]))
    df = daily_table(dm_store, "2024-07-05", tickers=["AAPL", "MSFT"], style="scan", score=sp).set_index("symbol")
    # the engine's score, OTC intensity included: the same function the backtest trades on
    panel = load_panel(dm_store, ["AAPL", "MSFT"], min_coverage=None)
    engine = display_score(FeatureCache(panel), sp)[panel.index_of("2024-07-05")]
    a = df.loc["AAPL", "accumulation_score"]
    assert a == pytest.approx(engine[panel.symbols.index("AAPL")], rel=1e-12) and 0 < a < 100
    assert a == pytest.approx(_hand_score(dm, "AAPL", "2024-07-05", 3), rel=1e-9)
    # MSFT's short ratio is constant: its z (and so its score) is undefined, in the engine as in the table
    assert pd.isna(df.loc["MSFT", "accumulation_score"]) and np.isnan(engine[panel.symbols.index("MSFT")])
    assert df.loc["AAPL", "agreement"] == "▲ both bullish"
    assert df.loc["MSFT", "agreement"] == "▼ both bearish"  # rz -1, imbalance -0.3
    assert list(df.index) == ["AAPL", "MSFT"]  # scan style: best score first, undefined last
    d2 = daily_table(dm_store, "2024-07-02", tickers="AAPL", score=sp).iloc[0]
    assert d2["agreement"] == "" and pd.isna(d2["accumulation_score"])  # lit imbalance NULL; 2 sessions < window 3
    d3 = daily_table(dm_store, "2024-07-03", tickers="AAPL").iloc[0]
    assert d3["agreement"] == "▼ both bearish"  # rz -0.5, imbalance -0.05
    assert pd.isna(d3["accumulation_score"])  # the default z-window (20) is not warm on a 3-session history
    d9 = daily_table(dm_store, "2024-07-09", tickers=["AAPL"]).iloc[0]
    assert d9["agreement"] == "▼ both bearish"
    d15 = daily_table(dm_store, "2024-07-15", tickers=["AAPL"], score=sp).iloc[0]
    assert d15["agreement"] == "◆ divergence"  # rz 0.8 > 0, imbalance -0.3 < 0
    assert d15["accumulation_score"] == pytest.approx(_hand_score(dm, "AAPL", "2024-07-15", 3), rel=1e-9)


def test_daily_table_styles_and_defaults(dm_store):
    a = daily_table(dm_store, "2024-07-05", tickers=["MSFT", "AAPL"], style="analysis")
    assert list(a["symbol"]) == ["MSFT", "AAPL"] and "short_sell_volume" in a.columns and "open" in a.columns
    assert a["open"].isna().all()  # a column missing from daily_metrics comes back NULL
    latest = daily_table(dm_store, tickers=["AAPL"])
    assert latest["date"].iloc[0] == dt.date(2024, 7, 15)
    from optimizer.settings import Settings

    only = daily_table(dm_store, "2024-07-05", settings=Settings(tickers=("MSFT",)))
    assert list(only["symbol"]) == ["MSFT"]
    everyone = daily_table(dm_store, "2024-07-05", settings=Settings())
    assert set(everyone["symbol"]) == {"AAPL", "MSFT"}
    with pytest.raises(ParameterError, match="style must be one of scan, analysis"):
        daily_table(dm_store, "2024-07-05", style="wide")


def test_daily_table_errors(dm_store):
    with pytest.raises(DataError, match=r"^no daily_metrics rows for ZZZZ; known symbols include AAPL, MSFT$"):
        daily_table(dm_store, "2024-07-05", tickers=["AAPL", "ZZZZ"])
    with pytest.raises(DataError, match=r"^no daily_metrics rows for \^VIX \(\^VIX is an index or indicator: market "
                                        r"context, not a tradable symbol\); known symbols include AAPL, MSFT$"):
        daily_table(dm_store, "2024-07-05", tickers=["^VIX"])
    with pytest.raises(DataError, match=r"no daily_metrics rows .*on 2024-07-04; nearest dates: 2024-07-03, 2024-07-05"):
        daily_table(dm_store, "2024-07-04", tickers=["AAPL"])


def test_daily_table_html_and_render(dm_store, tmp_path):
    df = daily_table(dm_store, "2024-07-05", tickers=["AAPL", "MSFT"])
    p = write_daily_table_html(df, tmp_path / "out" / "table.html")
    text = p.read_text(encoding="utf-8")
    assert DISCLAIMER in text
    assert DISCLAIMER == ("FINRA does not publish trade direction for off-exchange volume. Buy/Sell values are "
                          "inferred estimates derived from lit-market equity trades and applied proportionally to "
                          "FINRA OTC volume.")
    # the AAPL row's bullish marker cell is green, MSFT's bearish marker cell is red
    assert re.search(r'<td style="background:#e3f1e6">▲ both bullish</td>', text)
    assert re.search(r'<td style="background:#f6e3e1">▼ both bearish</td>', text)
    assert text.count("<tr>") == 3  # header + 2 rows
    buf = Console(record=True, width=250)
    render_daily_table(df, buf)
    out = buf.export_text()
    assert "AAPL" in out and "both bullish" in out and "FINRA does not publish trade direction" in out


# --- pressure plots -------------------------------------------------------------------------------------------


def _html_figure(path) -> tuple[list, dict]:
    """The (data, layout) JSON that plotly embedded in a saved HTML file."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"responsive"', text, re.S)
    assert m, f"figure JSON not found in {path}"
    return json.loads(m.group(1)), json.loads(m.group(2))


def _trace(fig, name):
    ts = [t for t in fig.to_dict()["data"] if t.get("name") == name]
    assert ts, f"no trace {name!r}: {[t.get('name') for t in fig.to_dict()['data']]}"
    return ts[0]


def test_pressure_layered_traces_lines_and_gaps(dm_store, tmp_path):
    fig = pressure_plot(dm_store, "aapl", "2024-07-01", "2024-07-15", mode="layered")
    d = fig.to_dict()
    names = {t.get("name") for t in d["data"]}
    assert {"Short buy/sell ratio", "Lit flow imbalance", "OTC participation", "OTC WoW Δ", "Accumulation score",
            "Confidence ×100", "BOT crossing", "SELL crossing", "Buy crossing", "Sell crossing"} <= names
    hlines = sorted({round(s["y0"], 6) for s in d["layout"]["shapes"] if s["y0"] == s["y1"]})
    for y in (1.25, 0.75, 0.1, -0.1, 0.2, -0.2, 70, 30):
        assert y in hlines
    lit = _trace(fig, "Lit flow imbalance")
    assert lit["connectgaps"] is False
    assert [v is None for v in lit["y"]] == [x is None for x in [0.12, None, -0.05, 0.25, 0.1, -0.2, None, 0.05, 0.02, -0.3]]
    # AAPL's ratio (1000 + 10i) / (1000 - 10i) rises from 1.0 to 1.198: it never crosses 1.25 nor 0.75, so no marker
    assert list(_trace(fig, "BOT crossing")["x"]) == [] and list(_trace(fig, "SELL crossing")["x"]) == []
    # the score panel marks only the sessions where the engine score crosses a threshold (hand loop below)
    sp = ScoreParams(z_window=3)
    fig = pressure_plot(dm_store, "aapl", mode="layered", score=sp, buy=60, sell=57)
    sc = pressure_data(dm_store, "AAPL", score=sp)
    days, v = [d.strftime("%Y-%m-%d") for d in sc["date"]], sc["accumulation_score"].to_numpy()
    up = [days[i] for i in range(1, len(v)) if v[i - 1] < 60 <= v[i]]
    down = [days[i] for i in range(1, len(v)) if v[i - 1] > 57 >= v[i]]
    assert up and down and len(up) + len(down) < np.isfinite(v).sum()
    assert list(_trace(fig, "Buy crossing")["x"]) == up and list(_trace(fig, "Sell crossing")["x"]) == down
    assert sorted(s["y0"] for s in fig.to_dict()["layout"]["shapes"] if s.get("yref") == "y4" and s["y0"] in (60, 57)) == [57, 60]
    with pytest.raises(ParameterError, match="sell_threshold"):
        pressure_plot(dm_store, "aapl", buy=40, sell=60)
    # WoW delta on the first session of each new OTC week: 0.46 - 0.40 on 07-05, 0.43 - 0.46 on 07-11
    wow = _trace(fig, "OTC WoW Δ")["y"]
    assert wow[3] == pytest.approx(0.06) and wow[7] == pytest.approx(-0.03)
    assert sum(v is not None for v in wow) == 2
    paths = save_figure(fig, tmp_path / "plots" / "aapl_layered.html")
    html_text = paths[0].read_text()
    data, _ = _html_figure(paths[0])
    assert paths[0].suffix == ".html" and data[0]["name"] == "Short buy/sell ratio"
    # plotly.js embedded (no external <script src=...>): the file opens offline
    assert re.search(r"<script[^>]*\bsrc=", html_text) is None and len(html_text) > 1_000_000


def test_crossings_by_hand():
    v = np.array([1.0, 1.3, 1.4, 1.2, np.nan, 1.3, 1.25, 0.7, 0.8, 0.75])
    assert np.flatnonzero(crossings(v, 1.25, up=True)).tolist() == [1]  # 5 follows a gap: not a crossing
    assert np.flatnonzero(crossings(v, 0.75, up=False)).tolist() == [7, 9]  # 0.75 itself counts, from above


def test_pressure_short_only_both_and_errors(dm_store):
    fig = pressure_plot(dm_store, "MSFT", mode="short_only")
    names = [t.get("name") for t in fig.to_dict()["data"]]
    assert names == ["Short buy/sell ratio", "FINRA total volume", "Short-sale volume", "Close"]
    assert _trace(fig, "Close")["y"][0] == 400
    both = pressure_plot(dm_store, "MSFT", "2024-07-02", "2024-07-03", mode="both")
    assert isinstance(both, tuple) and len(both) == 2 and len(_trace(both[0], "Short buy/sell ratio")["x"]) == 2
    with pytest.raises(DataError, match=r"^no daily_metrics rows for ZZZZ; known symbols include AAPL, MSFT$"):
        pressure_plot(dm_store, "ZZZZ")
    with pytest.raises(DataError, match="no daily_metrics rows for AAPL between 2025-01-01 and 2025-02-01; AAPL has data from 2024-07-01 to 2024-07-15"):
        pressure_plot(dm_store, "AAPL", "2025-01-01", "2025-02-01")
    with pytest.raises(ParameterError, match="mode must be one of"):
        pressure_plot(dm_store, "AAPL", mode="fancy")
    buf = Console(record=True, width=200)
    render_pressure(pressure_data(dm_store, "AAPL"), buf, last=3)
    out = buf.export_text()
    assert "2024-07-15" in out and "2024-07-10" not in out


# --- price charts ------------------------------------------------------------------------------------------------


def test_weekly_and_monthly_resample_by_hand(dm_store):
    daily = pd.DataFrame({
        "date": pd.to_datetime(["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08", "2024-08-01"]),
        "open": [10, 11, 12, 13, 14, 15.0], "high": [12, 13, 17, 15, 16, 17.0], "low": [9, 8, 11, 12, 13, 14.0],
        "close": [11, 12, 13, 14, 15, 16.0], "volume": [100, 200, 300, 400, 500, 600.0],
    })
    w = resample_ohlcv(daily, "weekly")
    assert list(w["date"].dt.strftime("%Y-%m-%d")) == ["2024-07-05", "2024-07-08", "2024-08-01"]
    first = w.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"], first["sessions"]) == (10, 17, 8, 14, 1000, 4)
    m = resample_ohlcv(daily, "monthly")
    assert len(m) == 2 and m.iloc[0]["volume"] == 1500 and m.iloc[0]["close"] == 15 and m.iloc[1]["open"] == 15
    fig = price_chart(dm_store, "AAPL", "weekly")
    c = _trace(fig, "AAPL weekly")
    # prices: open 10+i, high 12+i (+3 on i=2), low 9+i (-2 on i=1), close 11+i, volume 100(i+1); weeks end 07-05, 07-12, 07-15
    assert list(c["x"]) == ["2024-07-05", "2024-07-12", "2024-07-15"]
    assert list(c["open"]) == [10, 14, 19] and list(c["high"]) == [17, 20, 21]
    assert list(c["low"]) == [8, 13, 18] and list(c["close"]) == [14, 19, 20]
    assert list(_trace(fig, "Volume")["y"]) == [1000, 3500, 1000]
    daily_fig = price_chart(dm_store, "AAPL", "daily", start="2024-07-08")
    assert len(_trace(daily_fig, "AAPL daily")["x"]) == 6
    with pytest.raises(DataError, match="no prices_daily rows for TSLA; known symbols include AAPL"):
        price_chart(dm_store, "TSLA")
    with pytest.raises(ParameterError, match="timeframe must be one of daily, weekly, monthly"):
        price_chart(dm_store, "AAPL", "hourly")
    buf = Console(record=True, width=200)
    render_price(resample_ohlcv(daily, "weekly"), buf)
    assert "1,000" in buf.export_text()


# --- constituents ----------------------------------------------------------------------------------------------


def test_constituents_load_and_aggregate(tmp_path):
    f = tmp_path / "cons.csv"
    f.write_text("symbol,index,weight\nAAA,SPX,2\nBBB,SPX,1\nCCC,SPX,1\n# comment\n\nAAA,XLK,0.5\nDDD,XLK,0.5\n")
    cons = load_constituents(f)
    assert list(cons["etf"]) == ["SPY", "SPY", "SPY", "XLK", "XLK"]
    assert PROXY_MAP["NDX"] == "QQQ" and PROXY_MAP["XLF"] == "XLF"
    metrics = pd.DataFrame({"symbol": ["AAA", "BBB", "CCC", "ZZZ"], "score": [3.0, 0.0, np.nan, 9.0]})
    agg = aggregate_pressure(metrics, cons, "score").set_index("etf")
    # SPY: CCC missing -> (2*3 + 1*0) / 3 = 2; XLK: only AAA present -> 3
    assert agg.loc["SPY", "score"] == pytest.approx(2.0)
    assert agg.loc["SPY", "members_present"] == 2 and agg.loc["SPY", "weight_coverage"] == pytest.approx(0.75)
    assert agg.loc["XLK", "score"] == pytest.approx(3.0) and agg.loc["XLK", "weight_coverage"] == pytest.approx(0.5)
    by_date = pd.DataFrame({"date": ["d1", "d1", "d2"], "symbol": ["AAA", "BBB", "BBB"], "v": [1.0, 4.0, 5.0]})
    g = aggregate_pressure(by_date, cons, "v")
    spy = g[g["etf"] == "SPY"].set_index("date")["v"]
    assert spy["d1"] == pytest.approx((2 * 1 + 4) / 3) and spy["d2"] == pytest.approx(5.0)
    xlk_d2 = g[(g["etf"] == "XLK") & (g["date"] == "d2")]
    assert len(xlk_d2) == 1 and np.isnan(xlk_d2["v"].iloc[0])  # no member present -> NaN
    buf = Console(record=True, width=150)
    render_aggregate(agg.reset_index(), "score", buf)
    out = buf.export_text()
    assert "SPY" in out and "2/3" in out and "75%" in out
    with pytest.raises(ParameterError, match="value_col must be a column"):
        aggregate_pressure(metrics, cons, "nope")


def test_constituents_symbols_are_read_in_the_stores_spelling(tmp_path):
    """An index file spells share classes its own way (BRK-B, BRK/B, lower case); the store holds the canonical
    BRK.B. They were only upper-cased, so BRK-B matched no row of the store: the member was silently missing from
    the weighted average (which renormalizes over the members present) and its weight from the coverage."""
    f = tmp_path / "cons.csv"
    f.write_text("symbol,index,weight\nBRK-B,SPX,3\naapl,SPX,1\nBF/B,SPX,1\n")
    cons = load_constituents(f)
    assert list(cons["symbol"]) == ["BRK.B", "AAPL", "BF.B"]
    metrics = pd.DataFrame({"symbol": ["BRK.B", "AAPL", "BF.B"], "score": [1.0, 5.0, 0.0]})
    agg = aggregate_pressure(metrics, cons, "score").set_index("etf")
    assert agg.loc["SPY", "members_present"] == 3 and agg.loc["SPY", "weight_coverage"] == pytest.approx(1.0)
    assert agg.loc["SPY", "score"] == pytest.approx((3 * 1.0 + 5.0 + 0.0) / 5)


@pytest.mark.parametrize(
    "text, msg",
    [
        ("sym,index,weight\nAAA,SPX,1\n", r"cons\.csv:1: header must be 'symbol,index,weight'"),
        ("symbol,index,weight\nAAA,SPX,1\nBBB,SPX,abc\n", r"cons\.csv:3: weight must be a number, got weight='abc'"),
        ("symbol,index,weight\nAAA,SPX,-1\n", r"cons\.csv:2: weight must be a finite number >= 0, got weight='-1'"),
        ("symbol,index,weight\nAAA,SPX\n", r"cons\.csv:2: expected 3 fields"),
        ("symbol,index,weight\nAAA,SPX,1\nAAA,SPX,2\n", r"cons\.csv:3: duplicate member AAA of SPX \(first on line 2\)"),
        ("", r"cons\.csv:1: empty file"),
        ("symbol,index,weight\nAAA,SPX,1\nBR$K,SPX,2\n", r"cons\.csv:3: symbol 'BR\$K' is not a valid symbol"),
        # one security in two spellings is one member
        ("symbol,index,weight\nBRK.B,SPX,1\nBRK-B,SPX,2\n", r"cons\.csv:3: duplicate member BRK\.B of SPX \(first on line 2\)"),
    ],
)
def test_constituents_errors(tmp_path, text, msg):
    f = tmp_path / "cons.csv"
    f.write_text(text)
    with pytest.raises(InputFileError, match=msg):
        load_constituents(f)


def test_html_plotly_json_is_parseable(dm_store, tmp_path):
    """The saved HTML holds the figure JSON: the 1.25/0.75 lines are recoverable from the file itself."""
    fig = pressure_plot(dm_store, "AAPL", mode="short_only")
    p = save_figure(fig, tmp_path / "s.html")[0]
    _, layout = _html_figure(p)
    ys = {s["y0"] for s in layout["shapes"]}
    assert {1.25, 0.75} <= ys


def test_daily_table_tickers_setting_takes_any_spelling(tmp_path):
    """TICKERS=brk-b (Yahoo's spelling) was used as typed, so `accumopt table` refused it ('no daily_metrics rows for
    BRK-B'), while `--tickers brk-b` worked: the setting is canonicalized like an explicit list."""
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.settings import Settings

    con = connect(tmp_path / "s.duckdb")
    f = tmp_path / "CNMSshvol20240102.txt"
    f.write_text("Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\n"
                 "20240102|BRK/B|10|0|20|N\n20240102|AAPL|5|0|20|Q\n2\n")
    assert ingest_paths(con, "finra-short", [f]).exit_code == 0
    build_daily_metrics(con)
    got = daily_table(con, settings=Settings.from_env({"TICKERS": "brk-b"}))
    assert list(got["symbol"]) == ["BRK.B"]
    con.close()


def test_scanner_is_bit_identical_whatever_order_the_rows_were_stored_in(tmp_path):
    """The scan of a session recomputed later (the evening's saved scan of D against `scan --date D` weeks after, on
    a store grown evening by evening) differed in the last bits of short_share_xz: the cross-sectional mean and std
    summed the symbols in whatever order the rows reached the aggregate, which depends on how the rows were stored.
    The same data must give the same scan bit for bit (the aggregates are ordered)."""
    rng = np.random.default_rng(5)
    days = [d.date() for d in pd.bdate_range("2024-03-04", periods=25)]
    syms = [f"S{j:03d}" for j in range(60)]
    rows = []
    for s in syms:
        base = rng.uniform(0.2, 0.7)
        for d in days:
            tot = int(rng.integers(60_000, 2_000_000))
            rows.append((d, s, "CNMS", int(tot * np.clip(base + rng.normal(0, 0.08), 0.01, 0.99)), tot))
    outs = []
    for seed in (None, 1, 2, 3):
        con = connect(tmp_path / f"o{seed}.duckdb")
        order = range(len(rows)) if seed is None else np.random.default_rng(seed).permutation(len(rows))
        _insert_finra(con, [rows[i] for i in order])
        if seed == 3:  # later sessions in the store too: the scan of the earlier day must not change
            _insert_finra(con, [(AFTER, s, "CNMS", 1_000, 100_000) for s in syms])
        m = scan(con, date=days[-1], lookback=20, min_periods=10).metrics
        outs.append(m.sort_values("symbol").reset_index(drop=True))
        con.close()
    assert outs[0]["short_share_xz"].notna().all()
    for o in outs[1:]:
        pd.testing.assert_frame_equal(o, outs[0], check_exact=True)
