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
