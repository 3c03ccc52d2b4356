"""Prices: the real daily file, Polygon JSON dates, and the symbol map."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import numpy as np
import pytest
from _ingest_helpers import REAL, need, table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.ingest.prices import polygon_dates
from optimizer.data.store import connect
from optimizer.data.symbols import add_symbol_mapping, apply_symbol_map
from optimizer.errors import DataError, ParameterError


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def _ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.realdata
def test_real_prices_file(con):
    p = need(REAL / "prices_daily.csv.gz")
    rep = ingest_paths(con, "prices", [p])
    assert rep.files[0].status == "ok" and rep.files[0].rows_accepted == 29_087
    assert table(con, "SELECT count(*), count(DISTINCT symbol), min(date), max(date) FROM prices_daily") == [
        (29_087, 29, date(2022, 1, 3), date(2025, 12, 31))
    ]
    assert set(table(con, "SELECT source, count(*) FROM prices_daily GROUP BY 1")) == {
        ("guydekowski/market-lab", 27 * 1003),
        ("cocoajonmat/quant-backtest", 2 * 1003),
    }
    assert table(con, "SELECT volume FROM prices_daily WHERE symbol='^VIX' LIMIT 1") == [(0.0,)]


def test_polygon_dates_use_the_eastern_calendar():
    ms = np.array([
        _ms(2024, 3, 8, 5, 0),  # 2024-03-08 00:00 EST: the session start Polygon reports
        _ms(2024, 7, 8, 4, 0),  # 2024-07-08 00:00 EDT
        _ms(2024, 3, 9, 3, 0),  # 2024-03-08 22:00 EST: a UTC-date conversion would say 03-09
    ])
    got = [d.date() for d in polygon_dates(ms)]
    assert got == [date(2024, 3, 8), date(2024, 7, 8), date(2024, 3, 8)]


def test_polygon_json_ingest(con, tmp_path):
    doc = {
        "ticker": "AAPL",
        "status": "OK",
        "results": [
            {"t": _ms(2024, 3, 7, 5), "o": 169.15, "h": 170.73, "l": 168.49, "c": 169.0, "v": 71765061},
            {"t": _ms(2024, 3, 8, 5), "o": 169.0, "h": 173.7, "l": 168.94, "c": 170.73, "v": 76267041},
        ],
    }
    p = write(tmp_path / "AAPL_2024-03-07_2024-03-08.json", json.dumps(doc))
    rep = ingest_paths(con, "prices", [p])
    assert rep.files[0].status == "ok"
    assert table(con, "SELECT date, symbol, close, volume, source FROM prices_daily ORDER BY date") == [
        (date(2024, 3, 7), "AAPL", 169.0, 71765061.0, "polygon"),
        (date(2024, 3, 8), "AAPL", 170.73, 76267041.0, "polygon"),
    ]


def test_polygon_json_is_dated_in_new_york_under_any_market_time_zone(con, tmp_path):
    """A Polygon bar's session is New York's date, whatever MARKET_TZ says (dated in MARKET_TZ, a zone west of New
    York stored every bar a session early; docs/DATA.md), so the zone is no part of the file's identity: the same
    file under Asia/Tokyo or America/Los_Angeles is the same reading (skipped as identical), on New York's date."""
    from optimizer.settings import Settings

    doc = {"ticker": "AAPL", "status": "OK",
           "results": [{"t": _ms(2024, 3, 8, 2), "o": 169.0, "h": 173.7, "l": 168.94, "c": 170.73, "v": 7}]}
    p = write(tmp_path / "AAPL.json", json.dumps(doc))
    tokyo, la = (Settings.from_env({"MARKET_TZ": z}) for z in ("Asia/Tokyo", "America/Los_Angeles"))
    ny = (date(2024, 3, 7),)  # 02:00 UTC: the evening before in New York (Tokyo's date is the 8th)
    for settings, status in ((tokyo, "ok"), (None, "skipped_identical"), (la, "skipped_identical")):
        assert ingest_paths(con, "prices", [p], settings=settings).files[0].status == status
        assert table(con, "SELECT date FROM prices_daily ORDER BY date") == [ny]


def test_fb_rows_before_effective_date_become_meta(con, tmp_path):
    text = (
        "date,symbol,open,high,low,close,volume\n"
        "2022-06-07,FB,190,195,189,194,1\n"
        "2022-06-08,FB,194,197,193,196,2\n"
        "2022-06-09,META,196,199,195,198,3\n"
        "2022-06-09,FB,5,6,4,5,4\n"  # a later 'FB' (another issuer) keeps its symbol
    )
    p = write(tmp_path / "p.csv", text)
    assert ingest_paths(con, "prices", [p]).files[0].status == "ok"
    assert table(con, "SELECT date, symbol, volume FROM prices_daily ORDER BY date, symbol") == [
        (date(2022, 6, 7), "META", 1.0),
        (date(2022, 6, 8), "META", 2.0),
        (date(2022, 6, 9), "FB", 4.0),
        (date(2022, 6, 9), "META", 3.0),
    ]


def test_symbol_map_applies_to_finra_and_chains(con):
    import pandas as pd

    smap = pd.DataFrame(
        {"old_symbol": ["A", "B"], "new_symbol": ["B", "C"], "effective_date": pd.to_datetime(["2020-01-01", "2021-01-01"])}
    )
    df = pd.DataFrame({"date": pd.to_datetime(["2019-06-01", "2020-06-01", "2021-06-01"]), "symbol": ["A", "B", "B"]})
    assert apply_symbol_map(df, smap)["symbol"].tolist() == ["C", "C", "B"]
    assert df["symbol"].tolist() == ["A", "B", "B"]  # input untouched


def test_add_symbol_mapping_rewrites_stored_rows(con, tmp_path):
    p = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2021-01-04,OLD,1,1,1,1,1\n2021-01-05,NEW,1,1,1,1,2\n")
    ingest_paths(con, "prices", [p])
    n = add_symbol_mapping(con, "OLD", "NEW", "2021-01-05")
    assert n == 1
    assert table(con, "SELECT symbol, volume FROM prices_daily ORDER BY date") == [("NEW", 1.0), ("NEW", 2.0)]
    assert ("OLD", "NEW", date(2021, 1, 5)) in table(con, "SELECT * FROM symbol_map")
    # new data under the old name is mapped at ingest too
    q = write(tmp_path / "q.csv", "date,symbol,open,high,low,close,volume\n2020-12-31,OLD,1,1,1,1,9\n")
    ingest_paths(con, "prices", [q])
    assert table(con, "SELECT symbol FROM prices_daily WHERE volume = 9") == [("NEW",)]


def test_add_symbol_mapping_refuses_clash_and_bad_args(con, tmp_path):
    p = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2021-01-04,X1,1,1,1,1,1\n2021-01-04,Y1,1,1,1,1,2\n")
    ingest_paths(con, "prices", [p])
    with pytest.raises(DataError, match="prices_daily already holds 1 Y1 rows"):
        add_symbol_mapping(con, "X1", "Y1", "2021-02-01")
    assert table(con, "SELECT count(*) FROM symbol_map WHERE old_symbol = 'X1'") == [(0,)]  # rolled back
    with pytest.raises(ParameterError, match="old and new symbols must differ"):
        add_symbol_mapping(con, "X1", "X1", "2021-02-01")


_HIST = """date,symbol,open,high,low,close,volume
2024-06-05,NVDA,1150,1230,1140,1224,400000
2024-06-06,NVDA,1224,1230,1190,1209,400000
2024-06-07,NVDA,1209,1216,1180,1208,400000
2024-06-07,SPY,530,535,528,534,1000000
2024-06-07,^VIX,12,13,11.5,12.2,0
"""
# the night after NVDA's 10:1 split, on the post-split basis; SPY moved a little, ^VIX (an index) more than doubled
_NIGHT = """date,symbol,open,high,low,close,volume
2024-06-10,NVDA,120,123,117,121.8,4000000
2024-06-10,SPY,534,536,532,535,1000000
2024-06-10,^VIX,13,30,13,29,0
"""


def _split_warning(w: str, name: str, a: str, b: str) -> None:
    assert w.startswith(f"prices: {name}: NVDA close jumps from {a} to {b}, ratio 0.101: "), w
    assert "ingest NVDA's whole split-adjusted price history again" in w and "`accumopt ingest splits`" in w, w


def test_a_file_not_adjusted_for_a_split_is_stored_and_warned(con, tmp_path):
    """A local nightly prices file on the post-split basis next to the stored pre-split bars of another file read
    as a -90 % day with no word (only the Polygon fetch of the evening compared the bases). The file is stored (a
    real crash would look the same) and warned of, naming the symbol, both bars, the ratio and what to do; both
    directions (the stored bars after the file's last one too), an index never (^VIX), a distant bar never."""
    hist, night = write(tmp_path / "hist.csv", _HIST), write(tmp_path / "night.csv", _NIGHT)
    assert ingest_paths(con, "prices", [hist]).warnings == []
    rep = ingest_paths(con, "prices", [night])
    assert [(f.status, f.rows_accepted) for f in rep.files] == [("ok", 3)] and rep.exit_code == 0
    assert rep.warnings == list(rep.files[0].warnings) == rep.to_dict()["warnings"]
    assert rep.to_dict()["files"][0]["warnings"] == rep.warnings and len(rep.warnings) == 1
    _split_warning(rep.warnings[0], "night.csv", "stored 1208 on 2024-06-07 (source hist.csv)",
                   "this file's 121.8 on 2024-06-10")
    assert table(con, "SELECT close FROM prices_daily WHERE symbol = 'NVDA' AND date = '2024-06-10'") == [(121.8,)]
    # the other order: the stored bar after the file's last one
    other = connect(":memory:")
    try:
        assert ingest_paths(other, "prices", [night]).warnings == []
        (w,) = ingest_paths(other, "prices", [hist]).warnings
        _split_warning(w, "hist.csv", "this file's 1208 on 2024-06-07", "stored 121.8 on 2024-06-10 (source night.csv)")
    finally:
        other.close()
    # what the warning advises: the split-adjusted history again -> on one basis, no warning
    adjusted = _HIST.replace("1150,1230,1140,1224", "115,123,114,122.4").replace("1224,1230,1190,1209", "122.4,123,119,120.9")
    adjusted = adjusted.replace("1209,1216,1180,1208", "120.9,121.6,118,120.8")
    rep = ingest_paths(con, "prices", [write(tmp_path / "hist_adjusted.csv", adjusted)])
    assert rep.files[0].status == "replaced" and rep.warnings == []
    # a bar three weeks on is not "the previous session": no warning for a halving since
    late = write(tmp_path / "late.csv", "date,symbol,open,high,low,close,volume\n2024-07-01,NVDA,60,61,59,60,100\n")
    assert ingest_paths(con, "prices", [late]).warnings == []


@pytest.mark.realdata
def test_real_prices_split_like_jumps_across_files(con, tmp_path):
    """The real adjusted prices cut into files at the days of their largest real moves (META -26 % 2022-02-03, ^VIX
    +65 % 2024-08-05, +74 % 2024-12-18, -36 % 2025-04-09): no warning. The history before NVDA's 10:1 split
    (2024-06-10) on the pre-split basis, as a store filled before it holds it: one warning, for NVDA only."""
    import pandas as pd

    d = pd.read_csv(need(REAL / "prices_daily.csv.gz"))
    cuts = ["2022-02-03", "2024-06-10", "2024-08-05", "2024-12-18", "2025-04-09"]
    edges = ["2000-01-01", *cuts, "2100-01-01"]
    parts = [d[(d.date >= a) & (d.date < b)] for a, b in zip(edges, edges[1:])]
    for i, part in enumerate(parts):
        part.to_csv(tmp_path / f"p{i}.csv", index=False)
    rep = ingest_paths(con, "prices", [tmp_path / f"p{i}.csv" for i in range(len(parts))])
    assert [f.status for f in rep.files] == ["ok"] * len(parts) and rep.warnings == []
    pre = parts[1].copy()
    nvda = pre.symbol == "NVDA"
    pre.loc[nvda, ["open", "high", "low", "close"]] *= 10
    pre.to_csv(tmp_path / "pre_split.csv", index=False)
    fresh = connect(":memory:")
    try:
        rep = ingest_paths(fresh, "prices", [tmp_path / "pre_split.csv", tmp_path / "p2.csv"])
        (w,) = rep.warnings
        assert w.startswith("prices: p2.csv: NVDA close jumps from stored 1206.79 on 2024-06-07 (source "
                            "guydekowski/market-lab) to this file's 121.58 on 2024-06-10, ratio 0.101"), w
    finally:
        fresh.close()
