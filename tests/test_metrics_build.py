"""daily_metrics / options_premium_* builder: hand-computed values, point-in-time (truncation), atomicity, ownership."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import optimizer.data.metrics as metrics
from optimizer.data.metrics import (
    DAILY_METRICS_COLUMNS,
    build_daily_metrics,
    latest_metrics_date,
    metrics_summary,
    owns_daily_metrics,
)
from optimizer.data.store import connect, insert_finra_short
from optimizer.errors import DataError, ParameterError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
D = pd.Timestamp


# ------------------------------------------------------------------------------------------------ raw-row helpers


def _ins(con, table: str, frame: pd.DataFrame) -> None:
    cols = ", ".join(frame.columns)
    con.register("_ins_frame", frame)
    if table == "finra_short_daily":  # a view: its rows are stored with a source id (store.insert_finra_short)
        insert_finra_short(con, f"SELECT {cols} FROM _ins_frame", columns=list(frame.columns))
    else:
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _ins_frame")
    con.unregister("_ins_frame")


def prices(con, rows) -> None:
    """rows: (date, symbol, close, volume); open/high/low = close."""
    f = pd.DataFrame(list(rows), columns=["date", "symbol", "close", "volume"])
    f["date"] = pd.to_datetime(f["date"])
    f["open"] = f["high"] = f["low"] = f["close"].astype(float)
    f["source"] = "test"
    _ins(con, "prices_daily", f)


def short(con, rows) -> None:
    """rows: (date, symbol, facility, short_volume, total_volume, short_exempt_volume)."""
    cols = ["date", "symbol", "facility", "short_volume", "total_volume", "short_exempt_volume"]
    f = pd.DataFrame(list(rows), columns=cols)
    f["date"] = pd.to_datetime(f["date"])
    f["source_file"] = "test"
    _ins(con, "finra_short_daily", f)


def lit(con, rows) -> None:
    """rows: (date, symbol, buy, sell)."""
    f = pd.DataFrame(list(rows), columns=["date", "symbol", "lit_buy_volume", "lit_sell_volume"])
    f["date"] = pd.to_datetime(f["date"])
    f["method"] = "tick"
    f["source_file"] = "test"
    _ins(con, "lit_flow_daily", f)


def otc(con, rows) -> None:
    """rows: (week_start_date, symbol, ats_volume, non_ats_volume, publication_date)."""
    cols = ["week_start_date", "symbol", "ats_volume", "non_ats_volume", "publication_date"]
    f = pd.DataFrame(list(rows), columns=cols)
    f["week_start_date"] = pd.to_datetime(f["week_start_date"])
    f["publication_date"] = pd.to_datetime(f["publication_date"])
    f["ats_volume"] = f["ats_volume"].astype("Int64")
    f["non_ats_volume"] = f["non_ats_volume"].astype("Int64")
    f["source_file"] = "test"
    _ins(con, "finra_otc_weekly", f)


def options(con, rows) -> None:
    """rows: (date, symbol, call_volume, put_volume[, call_premium, put_premium])."""
    rows = list(rows)
    cols = ["date", "symbol", "call_volume", "put_volume", "call_premium", "put_premium"]
    f = pd.DataFrame(rows, columns=cols[: len(rows[0])] if rows else cols[:4])
    f["date"] = pd.to_datetime(f["date"])
    f["source_file"] = "test"
    _ins(con, "options_daily", f)


def table(con, name: str = "daily_metrics") -> pd.DataFrame:
    df = con.execute(f"SELECT * FROM {name} ORDER BY date, symbol").df()
    return df.reset_index(drop=True)


def row(df: pd.DataFrame, date: str, symbol: str) -> pd.Series:
    hit = df[(df["date"] == D(date)) & (df["symbol"] == symbol)]
    assert len(hit) == 1, f"expected one row for {symbol} {date}, got {len(hit)}"
    return hit.iloc[0]


def same(got: pd.DataFrame, want: pd.DataFrame, what: str = "DataFrame") -> None:
    """Equal values in every column (NaN == NaN, NULL == NULL); nullable vs plain int dtypes may differ."""
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False, obj=what)


def isnull(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or pd.isna(v)


# ------------------------------------------------------------------------------------------------ the tiny store

FEB = ["2024-02-05", "2024-02-06", "2024-02-07", "2024-02-08", "2024-02-09", "2024-02-12", "2024-02-13", "2024-02-14"]
JAN_BBB = ["2024-01-22", "2024-01-23", "2024-01-24", "2024-01-25", "2024-01-26"]
AAA_CLOSE = [10, 11, 12, 11, 12, 13, 12, 13]
AAA_VOL = [100, 200, 300, 400, 500, 600, 700, 800]
AAA_SHORT = [100, 200, 300, 400, 500, 600, 700, 800]
AAA_TOTAL = [250, 1000, 300, 1000, 1000, 1000, 1000, 1000]


def tiny_store():
    """AAA and BBB over 8 February sessions (BBB also has 5 January price bars), plus ^VIX.

    AAA: CNMS every day; lit on all days but the last (day 1 below MIN_LIT_VOLUME, day 2 exactly at it);
    OTC week 2024-01-29 published Wed 2024-02-07 (no bars that week -> no rate), week 2024-02-05 published
    Mon 2024-02-12 (rate 450/1500), week 2024-02-12 published after the data.
    BBB: facility files only (FNSQ + FNQC) except 2024-02-06 which also has CNMS; no lit on 2024-02-09;
    OTC week 2024-01-22 (bars 5 x 1000) published 2024-01-31 -> rate 2000/5000 = 0.4.
    """
    con = connect(":memory:")
    prices(con, [(d, "AAA", c, v) for d, c, v in zip(FEB, AAA_CLOSE, AAA_VOL)])
    prices(con, [(d, "BBB", 50.0, 1000) for d in JAN_BBB] + [(d, "BBB", 50.0 + i, 2000) for i, d in enumerate(FEB)])
    prices(con, [(d, "^VIX", 15.0, 0) for d in FEB])
    short(con, [(d, "AAA", "CNMS", s, t, 0) for d, s, t in zip(FEB, AAA_SHORT, AAA_TOTAL)])
    short(con, [(d, "BBB", "FNSQ", 300, 1000, 5) for d in FEB] + [(d, "BBB", "FNQC", 100, 500, 1) for d in FEB])
    short(con, [("2024-02-06", "BBB", "CNMS", 900, 1200, 7)])
    lit(con, [
        (FEB[0], "AAA", 6000, 4000), (FEB[1], "AAA", 3000, 2000), (FEB[2], "AAA", 5000, 5000),
        (FEB[3], "AAA", 8000, 2000), (FEB[4], "AAA", 7000, 3000), (FEB[5], "AAA", 9000, 1000),
        (FEB[6], "AAA", 4000, 6000),
    ])
    lit(con, [(d, "BBB", 20000, 20000) for d in FEB if d != "2024-02-09"])
    otc(con, [
        ("2024-01-29", "AAA", 1000, None, "2024-02-07"),
        ("2024-02-05", "AAA", 300, 150, "2024-02-12"),
        ("2024-02-12", "AAA", 999, 999, "2024-02-20"),
        ("2024-01-22", "BBB", 1500, 500, "2024-01-31"),
    ])
    options(con, [(FEB[0], "AAA", 100.0, 50.0, 1000.0, 500.0), (FEB[1], "AAA", 0.0, 10.0, None, 20.0),
                  (FEB[2], "AAA", 200.0, None, None, None), (FEB[0], "^VIX", 5.0, 5.0, None, None)])
    return con


@pytest.fixture(scope="module")
def tiny():
    con = tiny_store()
    summary = build_daily_metrics(con, z_window=3)
    df = table(con)
    yield con, df, summary
    con.close()


def test_rows_columns_types_and_vix_excluded(tiny):
    con, df, summary = tiny
    assert list(df.columns) == [c for c, _ in DAILY_METRICS_COLUMNS]
    assert "^VIX" not in set(df["symbol"])
    assert len(df) == 8 + 13 and summary["rows"] == 21
    assert summary["symbols"] == 2 and summary["sessions"] == 13
    assert summary["first_date"] == dt.date(2024, 1, 22) and summary["last_date"] == dt.date(2024, 2, 14)
    assert not df.duplicated(["date", "symbol"]).any()
    types = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'daily_metrics'"
    ).fetchall())
    assert types == dict(DAILY_METRICS_COLUMNS)
    assert (df["z_window"] == 3).all() and (df["z_min_periods"] == 3).all()


def test_short_volumes_ratio_and_consolidation(tiny):
    _, df, _ = tiny
    r0 = row(df, FEB[0], "AAA")
    assert (r0.short_buy_volume, r0.short_sell_volume) == (100, 150)
    assert r0.short_buy_sell_ratio == pytest.approx(100 / 150, abs=1e-15)
    r2 = row(df, FEB[2], "AAA")  # short == total -> sell 0 -> ratio NULL
    assert r2.short_sell_volume == 0 and isnull(r2.short_buy_sell_ratio)
    # BBB: facility sum FNSQ+FNQC = 400 of 1500, except the CNMS day (CNMS preferred, not added)
    b = row(df, FEB[0], "BBB")
    assert (b.short_volume, b.total_volume, b.short_exempt_volume, b.short_sell_volume) == (400, 1500, 6, 1100)
    assert b.short_buy_sell_ratio == pytest.approx(400 / 1100, abs=1e-15)
    assert b.provenance.startswith("FACILITY_SUM:FNQC+FNSQ,")
    c = row(df, "2024-02-06", "BBB")
    assert (c.short_volume, c.total_volume, c.short_exempt_volume) == (900, 1200, 7)
    assert c.provenance.startswith("CNMS,")
    j = row(df, JAN_BBB[0], "BBB")  # a price bar without FINRA data is a row with NULL short columns
    assert isnull(j.short_volume) and isnull(j.short_buy_sell_ratio) and j.close == 50.0


def test_return_and_lit_imbalance(tiny):
    _, df, _ = tiny
    a = df[df.symbol == "AAA"].reset_index(drop=True)
    assert isnull(a["return"][0])
    assert a["return"][1] == pytest.approx(0.1, abs=1e-15)
    assert a["return"][3] == pytest.approx(11 / 12 - 1, abs=1e-15)
    # BBB has no bar on 2024-01-29..02-02: its first Feb return would span 6 sessions, so it is NULL (a gap is
    # never bridged as one session; docs/DATA.md "Coverage and gaps")
    assert isnull(row(df, FEB[0], "BBB")["return"])
    assert row(df, FEB[1], "BBB")["return"] == pytest.approx(51 / 50 - 1, abs=1e-15)
    assert a.lit_flow_imbalance[0] == pytest.approx(0.2, abs=1e-15)
    assert isnull(a.lit_flow_imbalance[1]) and a.lit_buy_volume[1] == 3000  # 5,000 < MIN_LIT_VOLUME
    assert a.lit_flow_imbalance[2] == 0.0  # exactly 10,000 is enough
    assert a.lit_flow_imbalance[5] == pytest.approx(0.8, abs=1e-15)
    assert isnull(a.lit_flow_imbalance[7]) and isnull(a.lit_buy_volume[7])  # no lit row


def test_rolling_z_by_hand(tiny):
    _, df, _ = tiny
    a = df[df.symbol == "AAA"].reset_index(drop=True)
    # short_buy_volume 100, 200, 300: mean 200, population std sqrt(20000/3) -> z = 100 / 81.6497 = sqrt(1.5)
    assert isnull(a.short_buy_volume_z[0]) and isnull(a.short_buy_volume_z[1])
    assert a.short_buy_volume_z[2] == pytest.approx(math.sqrt(1.5), abs=1e-12)
    assert a.short_buy_volume_z[7] == pytest.approx(math.sqrt(1.5), abs=1e-12)
    # ratio: NULL at row 2 propagates -> rows 2, 3 and 4 have < 3 finite values in their window
    assert all(isnull(a.short_buy_sell_ratio_z[i]) for i in (2, 3, 4))
    x = [400 / 600, 500 / 500, 600 / 400]  # rows 3..5
    m = sum(x) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / 3)
    assert a.short_buy_sell_ratio_z[5] == pytest.approx((x[2] - m) / sd, abs=1e-12)
    # return z at row 3 over returns 0.1, 1/11, -1/12
    r = [0.1, 12 / 11 - 1, 11 / 12 - 1]
    m = sum(r) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in r) / 3)
    assert a.return_z[3] == pytest.approx((r[2] - m) / sd, abs=1e-12)
    # lit: constant BBB imbalance 0 -> std 0 -> NULL z
    assert row(df, FEB[3], "BBB").lit_flow_imbalance == 0.0
    assert df[df.symbol == "BBB"].lit_flow_imbalance_z.isna().all()


def test_min_periods_setting_is_used_and_stored():
    con = tiny_store()
    build_daily_metrics(con, z_window=3, z_min_periods=2)
    df = table(con)
    a = df[df.symbol == "AAA"].reset_index(drop=True)
    # two values 0.25 (row 1) and 2/3 (row 3) in row 3's window: z of the larger of two = +1
    assert a.short_buy_sell_ratio_z[3] == pytest.approx(1.0, abs=1e-12)
    assert a.short_buy_volume_z[1] == pytest.approx(1.0, abs=1e-12)
    assert (df.z_min_periods == 2).all()
    with pytest.raises(ParameterError, match="z_min_periods must be in"):
        build_daily_metrics(con, z_window=3, z_min_periods=4)
    with pytest.raises(ParameterError, match=r"z_window must be an integer in \[2, 252\], got z_window=1"):
        build_daily_metrics(con, z_window=1)


def test_otc_point_in_time_rate_and_lag(tiny):
    _, df, _ = tiny
    a = df[df.symbol == "AAA"].set_index("date")
    # nothing published before Wed 2024-02-07
    assert a.loc[D(FEB[0]), "otc_week_start"] is pd.NaT or isnull(a.loc[D(FEB[0]), "otc_week_start"])
    assert isnull(a.loc[D(FEB[1]), "otc_status"])
    # week 01-29 visible from its publication day; no bars that week -> no rate
    for d in FEB[2:5]:
        assert a.loc[D(d), "otc_week_start"] == D("2024-01-29")
        assert a.loc[D(d), "otc_weekly_volume"] == 1000  # ats 1000 + non-ATS NULL
        assert isnull(a.loc[D(d), "otc_participation_rate"])
    # week 02-05 published Monday 02-12: invisible on Friday 02-09, visible from that Monday
    assert a.loc[D("2024-02-09"), "otc_week_start"] == D("2024-01-29")
    for d in FEB[5:]:
        assert a.loc[D(d), "otc_week_start"] == D("2024-02-05")
        assert a.loc[D(d), "otc_weekly_volume"] == 450
        assert a.loc[D(d), "otc_participation_rate"] == pytest.approx(450 / 1500, abs=1e-15)
        assert a.loc[D(d), "otc_status"] == "Anchored"
    b = row(df, FEB[0], "BBB")
    assert b.otc_week_start == D("2024-01-22") and b.otc_participation_rate == pytest.approx(0.4, abs=1e-15)
    assert isnull(row(df, JAN_BBB[-1], "BBB").otc_week_start)  # published 01-31, after the January bars


def test_otc_status_transitions_and_newest_week():
    con = connect(":memory:")
    dates = ["2024-01-05", "2024-01-08", "2024-01-15", "2024-01-16", "2024-02-12", "2024-02-13"]
    prices(con, [(d, "CCC", 10.0, 100) for d in ["2024-01-02", "2024-01-03"] + dates])
    otc(con, [("2024-01-01", "CCC", 50, 50, "2024-01-08")])  # published on a Monday
    # DDD: the newer week is published before an older one; the newest WEEK wins once both are visible
    prices(con, [(d, "DDD", 10.0, 100) for d in ["2024-01-08", "2024-01-09", "2024-01-16", "2024-01-17", "2024-01-19"]])
    otc(con, [("2024-01-15", "DDD", 10, 0, "2024-01-17"), ("2024-01-08", "DDD", 20, 0, "2024-01-19")])
    # GGG: a (malformed) week published on its own Wednesday: its total uses only the bars known by then
    prices(con, [(d, "GGG", 10.0, 100 * (i + 1)) for i, d in enumerate(pd.bdate_range("2024-01-08", "2024-01-12"))])
    otc(con, [("2024-01-08", "GGG", 60, 0, "2024-01-10")])
    build_daily_metrics(con, z_window=2)
    df = table(con)
    g = df[df.symbol == "GGG"].set_index("date")
    assert isnull(g.loc[D("2024-01-09"), "otc_participation_rate"])
    for d in ("2024-01-10", "2024-01-12"):
        assert g.loc[D(d), "otc_participation_rate"] == pytest.approx(60 / (100 + 200 + 300), abs=1e-15)
    c = df[df.symbol == "CCC"].set_index("date")
    got = [None if isnull(c.loc[D(d), "otc_status"]) else c.loc[D(d), "otc_status"] for d in dates]
    assert got == [None, "Anchored", "Anchored", "Staled", "Staled", None]  # ages -, 0, 7, 8, 35, 36
    assert isnull(c.loc[D("2024-01-05"), "otc_week_start"])  # the Friday before publication
    assert c.loc[D("2024-02-13"), "otc_week_start"] == D("2024-01-01")  # still the newest week, just stale
    # the week of Monday 01-01 has bars on 01-02, 01-03 and Friday 01-05: total 300 -> rate 100/300
    assert c.loc[D("2024-01-08"), "otc_participation_rate"] == pytest.approx(1 / 3, abs=1e-15)
    assert c.loc[D("2024-02-13"), "confidence"] == pytest.approx(0.5 * 0.5 * 0.9, abs=1e-12)
    d_ = df[df.symbol == "DDD"].set_index("date")
    assert isnull(d_.loc[D("2024-01-16"), "otc_week_start"])
    assert d_.loc[D("2024-01-17"), "otc_week_start"] == D("2024-01-15")
    assert d_.loc[D("2024-01-19"), "otc_week_start"] == D("2024-01-15")  # not the older week published later


def test_z_window_counts_sessions_and_a_hole_is_never_bridged():
    """EEE has no row on 01-04 (FFF does): its window of 3 at 01-05 is the SESSIONS 01-03..01-05, one of them a
    hole, so with min_periods 3 the z is NULL until the window refills; with min_periods 2 it uses the 2 values
    inside the window (never 01-02, which is outside it)."""
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]
    vols = [100, 200, None, 300, 400, 500]
    for mp, want_0105 in ((3, None), (2, 1.0)):
        con = connect(":memory:")
        short(con, [(d, "EEE", "CNMS", s, 1000, 0) for d, s in zip(days, vols) if s is not None])
        short(con, [(d, "FFF", "CNMS", 100, 1000, 0) for d in days])
        build_daily_metrics(con, z_window=3, z_min_periods=mp)
        e = table(con).query("symbol == 'EEE'").set_index("date")
        assert len(e) == 5
        z = e.loc[D("2024-01-05"), "short_buy_volume_z"]
        # population z of 300 in {200, 300}: (300 - 250) / 50 = 1
        assert isnull(z) if want_0105 is None else z == pytest.approx(want_0105, abs=1e-12)
        # 01-09: window 01-05, 01-08, 01-09 = 300, 400, 500 -> sqrt(1.5), whatever min_periods
        assert e.loc[D("2024-01-09"), "short_buy_volume_z"] == pytest.approx(math.sqrt(1.5), abs=1e-12)
        con.close()


def test_confidence_and_provenance(tiny):
    _, df, _ = tiny
    cases = {
        # (date, symbol): (confidence, provenance)
        (FEB[0], "AAA"): (0.5 * 0.8, "CNMS,PRICES,LIT"),                      # no OTC yet
        (FEB[1], "AAA"): (0.5 * 0.5 * 0.9, "CNMS,PRICES,LIT"),                # lit below min + no OTC
        (FEB[2], "AAA"): (1.0 * 0.8, "CNMS,PRICES,LIT,OTC"),                  # OTC week without a rate
        (FEB[5], "AAA"): (1.0, "CNMS,PRICES,LIT,OTC,POLYGON_TOTAL"),          # everything, Anchored
        (FEB[7], "AAA"): (1.0 * 0.8 * 0.9, "CNMS,PRICES,OTC,POLYGON_TOTAL"),  # no lit row
        (FEB[4], "BBB"): (0.7 * 0.8 * 0.9, "FACILITY_SUM:FNQC+FNSQ,PRICES,OTC,POLYGON_TOTAL"),  # Staled, no lit
        (FEB[0], "BBB"): (1.0, "FACILITY_SUM:FNQC+FNSQ,PRICES,LIT,OTC,POLYGON_TOTAL"),  # age 5
        (JAN_BBB[0], "BBB"): (0.5 * 0.5 * 0.9, "PRICES"),                     # price only
    }
    for (d, s), (conf, prov) in cases.items():
        r = row(df, d, s)
        assert r.confidence == pytest.approx(conf, abs=1e-12), (d, s)
        assert r.provenance == prov, (d, s)
    assert row(df, FEB[4], "BBB").confidence == pytest.approx(0.504, abs=1e-12)
    assert row(df, FEB[4], "BBB").otc_status == "Staled"


def test_options_tables(tiny):
    con, _, summary = tiny
    o = table(con, "options_premium_daily")
    assert list(o.symbol) == ["AAA", "AAA", "AAA"] and summary["options_rows"] == 3
    assert list(o.total_volume) == [150.0, 10.0, 200.0]
    assert o.put_call_ratio[0] == 0.5 and isnull(o.put_call_ratio[1]) and isnull(o.put_call_ratio[2])
    # total_premium = calls + puts, a missing side counting 0, NULL when both are missing (the options context's input)
    assert o.total_premium[0] == 1500.0 and o.total_premium[1] == 20.0 and isnull(o.total_premium[2])
    from optimizer.engine.panel import load_panel

    p = load_panel(con, ["AAA"])
    i = list(np.asarray(p.dates, dtype="datetime64[D]")).index(np.datetime64(FEB[0]))
    assert p["total_premium"][i, 0] == 1500.0 and p["total_premium"][i + 1, 0] == 20.0
    s = con.execute("SELECT * FROM options_premium_summary").df()
    assert list(s.symbol) == ["AAA"]
    assert s.avg_daily_option_volume[0] == pytest.approx(120.0, abs=1e-12)
    assert s.days[0] == 3 and s.first_date[0] == D(FEB[0]) and s.last_date[0] == D(FEB[2])


def test_summary_helpers(tiny):
    con, df, _ = tiny
    assert latest_metrics_date(con) == dt.date(2024, 2, 14)
    s = metrics_summary(con)
    assert (s["rows"], s["symbols"], s["sessions"]) == (21, 2, 13) and s["owner"] == "accumopt"
    assert s["first_date"] == dt.date(2024, 1, 22)
    sh = s["share"]
    assert sh["short"] == pytest.approx(16 / 21) and sh["cnms"] == pytest.approx(9 / 21)
    assert sh["facility_sum"] == pytest.approx(7 / 21) and sh["prices"] == 1.0
    assert sh["lit"] == pytest.approx(14 / 21) and sh["options"] == pytest.approx(3 / 21)
    empty = connect(":memory:")
    assert latest_metrics_date(empty) is None
    with pytest.raises(DataError, match="no daily_metrics"):
        metrics_summary(empty)


# ------------------------------------------------------------------------------------------------ point-in-time

RAW_DATE = {"prices_daily": "date", "finra_short_daily": "date", "lit_flow_daily": "date", "options_daily": "date",
            "finra_otc_weekly": "publication_date"}


def random_store(seed: int = 7, n_sessions: int = 70):
    """Four symbols with holes everywhere: missing bars, facility-only FINRA days, lit gaps, OTC weeks published
    3..25 days after their Monday (one even before its Friday), and options."""
    rng = np.random.default_rng(seed)
    con = connect(":memory:")
    days = pd.bdate_range("2024-03-04", periods=n_sessions)
    syms = ["AAA", "BBB", "CCC", "DDD"]
    px, sh, lf, op, ot = [], [], [], [], []
    for s in syms:
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, n_sessions)))
        for i, d in enumerate(days):
            if rng.random() > 0.1 or i == 0:
                px.append((d, s, float(close[i]), float(rng.integers(1000, 50000))))
            u = rng.random()
            tot = int(rng.integers(1000, 20000))
            if u < 0.6:
                sh.append((d, s, "CNMS", int(tot * rng.uniform(0.2, 0.9)), tot, 3))
            elif u < 0.85:
                sh.append((d, s, "FNSQ", int(tot * 0.5), tot, 1))
                sh.append((d, s, "FNYX", 5, 10, None))
            if rng.random() < 0.8:
                lf.append((d, s, float(rng.integers(0, 20000)), float(rng.integers(0, 20000))))
            if rng.random() < 0.5:
                op.append((d, s, float(rng.integers(0, 500)), float(rng.integers(0, 500))))
        for w in pd.date_range(days[0] - pd.Timedelta(days=7), days[-1], freq="W-MON"):
            if rng.random() < 0.85:
                lag = int(rng.integers(3, 26))
                ot.append((w, s, int(rng.integers(0, 9000)), int(rng.integers(0, 9000)), w + pd.Timedelta(days=lag)))
    prices(con, px)
    short(con, sh)
    lit(con, lf)
    options(con, op)
    otc(con, ot)
    return con, days


def truncated_copy(src, t: pd.Timestamp):
    """A new store holding the raw rows of ``src`` known at the close of t."""
    dst = connect(":memory:")
    for tbl, col in RAW_DATE.items():
        frame = src.sql(f"SELECT * FROM {tbl} WHERE {col} <= ?", params=[t.date()]).to_arrow_table()
        if frame.num_rows:
            dst.register("_src", frame)
            if tbl == "finra_short_daily":  # a view: its rows are stored with a source id
                insert_finra_short(dst, "SELECT * FROM _src")
            else:
                dst.execute(f"INSERT INTO {tbl} SELECT * FROM _src")
            dst.unregister("_src")
    return dst


def test_truncation_no_lookahead():
    con, days = random_store()
    build_daily_metrics(con, z_window=5, z_min_periods=3, min_lit_volume=5000)
    full = table(con)
    full_opt = table(con, "options_premium_daily")
    assert full.otc_status.eq("Staled").any() and full.otc_status.eq("Anchored").any()
    assert full.short_buy_sell_ratio_z.notna().sum() > 100 and full.otc_participation_z.notna().sum() > 50
    assert full.provenance.str.startswith("FACILITY_SUM:FNSQ+FNYX").any()
    for t in (days[9], days[23], days[40], days[-2]):
        cut = truncated_copy(con, t)
        build_daily_metrics(cut, z_window=5, z_min_periods=3, min_lit_volume=5000)
        got = table(cut)
        want = full[full.date <= t].reset_index(drop=True)
        same(got, want, f"daily_metrics truncated at {t.date()}")
        want_o = full_opt[full_opt.date <= t].reset_index(drop=True)
        same(table(cut, "options_premium_daily"), want_o, "options_premium_daily")
        cut.close()


def test_truncation_detects_a_lookahead(monkeypatch):
    """The truncation check is sharp: a builder that peeks at an unpublished OTC week fails it."""
    con, days = random_store(seed=3)
    orig = metrics._base_sql

    def peeking(scope, min_lit):  # visibility from the week's Monday instead of its publication date
        return orig(scope, min_lit).replace("publication_date AS vis_date", "week_start_date AS vis_date")

    monkeypatch.setattr(metrics, "_base_sql", peeking)
    build_daily_metrics(con, z_window=5)
    full = table(con)
    t = days[30]
    cut = truncated_copy(con, t)
    build_daily_metrics(cut, z_window=5)
    with pytest.raises(AssertionError, match="otc_"):
        same(table(cut), full[full.date <= t].reset_index(drop=True))


def test_scoped_build_equals_full_build():
    con, days = random_store(seed=11, n_sessions=40)
    build_daily_metrics(con, z_window=4)
    full = table(con)
    other = truncated_copy(con, pd.Timestamp("2100-01-01"))  # the same raw data
    build_daily_metrics(other, z_window=4, symbols=["BBB", "CCC", "DDD", "^VIX"])
    s = build_daily_metrics(other, z_window=4, symbols=["AAA"], start=days[20])
    assert s["scoped"] and s["symbols"] == 1
    got = table(other)
    want = full[(full.symbol != "AAA") | (full.date >= days[20])].reset_index(drop=True)
    same(got, want)
    # a date-range rebuild (every symbol) replaces exactly that range: AAA's rows from days[5] come back
    build_daily_metrics(other, z_window=4, start=days[5], end=days[30])
    want = full[(full.symbol != "AAA") | (full.date >= days[5])].reset_index(drop=True)
    same(table(other), want)


# ------------------------------------------------------------------------------------------------ atomicity, ownership


def test_rebuild_is_idempotent(tiny):
    con, df, _ = tiny
    build_daily_metrics(con, z_window=3)
    same(table(con), df)
    assert con.execute("SELECT count(*) FROM options_premium_summary").fetchone()[0] == 1


def test_rebuild_is_bit_reproducible_with_fractional_volumes():
    """Week totals / option averages of fractional doubles must not depend on DuckDB's parallel summation order."""
    rng = np.random.default_rng(5)
    con = connect(":memory:")
    days = pd.bdate_range("2024-01-01", periods=150)
    syms = [f"S{i:03d}" for i in range(200)]
    dd, ss = np.meshgrid(days, syms, indexing="ij")
    n = dd.size
    prices(con, zip(dd.ravel(), ss.ravel(), rng.uniform(10, 20, n), rng.uniform(1e5, 1e6, n)))
    options(con, zip(dd.ravel(), ss.ravel(), rng.uniform(0, 1e3, n), rng.uniform(0, 1e3, n)))
    weeks = pd.date_range(days[0], days[-1], freq="W-MON")
    ww, s2 = np.meshgrid(weeks, syms, indexing="ij")
    otc(con, zip(ww.ravel(), s2.ravel(), rng.integers(0, 10**5, ww.size), rng.integers(0, 10**5, ww.size),
                 ww.ravel() + pd.Timedelta(days=10)))
    build_daily_metrics(con, z_window=5)
    first = table(con)
    first_s = con.execute("SELECT * FROM options_premium_summary ORDER BY symbol").df()
    for _ in range(2):
        build_daily_metrics(con, z_window=5)
        same(table(con), first)
        same(con.execute("SELECT * FROM options_premium_summary ORDER BY symbol").df(), first_s)


@pytest.mark.parametrize("step", ["_compute_z", "_write_options"])
def test_failure_mid_build_leaves_previous_tables(monkeypatch, step):
    con = tiny_store()
    build_daily_metrics(con, z_window=3)
    before, before_opt = table(con), table(con, "options_premium_daily")
    prices(con, [("2024-02-15", "AAA", 99.0, 1)])  # new data the failed build would have added
    con.execute("DELETE FROM options_daily")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(metrics, step, boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_daily_metrics(con, z_window=5)
    same(table(con), before)
    same(table(con, "options_premium_daily"), before_opt)
    monkeypatch.undo()
    build_daily_metrics(con, z_window=5)  # the connection is usable afterwards
    assert latest_metrics_date(con) == dt.date(2024, 2, 15)
    assert table(con, "options_premium_daily").empty


def test_failed_first_build_leaves_no_table(monkeypatch):
    con = tiny_store()
    monkeypatch.setattr(metrics, "_write_options", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_daily_metrics(con)
    assert latest_metrics_date(con) is None and not owns_daily_metrics(con)


def test_refuses_foreign_daily_metrics():
    con = tiny_store()
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, short_buy_sell_ratio DOUBLE)")
    con.execute("INSERT INTO daily_metrics VALUES ('2023-06-01', 'XYZ', 1.5)")
    with pytest.raises(DataError, match=r"not built by accumopt.*darkpool.*only reads.*force"):
        build_daily_metrics(con)
    assert con.execute("SELECT * FROM daily_metrics").fetchall() == [(dt.date(2023, 6, 1), "XYZ", 1.5)]
    assert latest_metrics_date(con) == dt.date(2023, 6, 1)
    s = metrics_summary(con)
    assert s["owner"] == "foreign" and s["rows"] == 1 and "short" not in s["share"]
    build_daily_metrics(con, force=True)
    assert owns_daily_metrics(con) and len(table(con)) == 21
    build_daily_metrics(con)  # ours now: no force needed


# ------------------------------------------------------------------------------------------------ real data


def test_real_finra_facility_sum_equals_cnms():
    path = REAL / "finra_short_daily_2020.csv.gz"
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    raw = pd.read_csv(path, usecols=["date", "symbol", "short_volume", "short_exempt_volume", "total_volume",
                                     "facility_file"])
    raw = raw[raw.symbol.isin(["SPY", "QQQ", "AAPL"])].rename(columns={"facility_file": "facility"})
    cnms = raw[raw.facility == "CNMS"].set_index(["date", "symbol"]).sort_index()
    fac = raw[raw.facility != "CNMS"]
    con = connect(":memory:")
    short(con, fac[["date", "symbol", "facility", "short_volume", "total_volume", "short_exempt_volume"]]
          .itertuples(index=False, name=None))
    build_daily_metrics(con, z_window=3)
    got = table(con)
    got["date"] = got["date"].dt.strftime("%Y-%m-%d")
    got = got.set_index(["date", "symbol"]).sort_index()
    assert len(got) == len(cnms) == 18
    assert (got.short_volume.to_numpy() == cnms.short_volume.to_numpy()).all()
    assert (got.total_volume.to_numpy() == cnms.total_volume.to_numpy()).all()
    assert got.loc[("2020-01-02", "SPY"), "short_volume"] == 5_795_407
    assert got.loc[("2020-01-02", "SPY"), "provenance"] == "FACILITY_SUM:FNQC+FNSQ+FNYX"
    assert got.loc[("2020-01-02", "SPY"), "short_sell_volume"] == 11_990_841 - 5_795_407


def test_real_prices_returns_and_vix():
    path = REAL / "prices_daily.csv.gz"
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    raw = pd.read_csv(path)
    raw = raw[raw.symbol.isin(["META", "SPY", "^VIX"])]
    con = connect(":memory:")
    prices(con, raw[["date", "symbol", "close", "volume"]].itertuples(index=False, name=None))
    build_daily_metrics(con)
    df = table(con)
    assert set(df.symbol) == {"META", "SPY"} and len(df) == 2 * 1003
    meta = df[df.symbol == "META"].set_index("date")
    assert meta.loc[D("2022-02-03"), "return"] < -0.25  # the real 2022-02-03 crash
    assert -math.sqrt(19) <= meta.loc[D("2022-02-03"), "return_z"] < -3.5  # |z| <= sqrt(w - 1) for pop. std
    assert (df.provenance == "PRICES").all() and (df.confidence == 0.5 * 0.5 * 0.9).all()
