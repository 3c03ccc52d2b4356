"""Lit trades -> daily buy/sell flow (quote rule, tick fallback, RTH filter) and pre-aggregated lit flow."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
from _ingest_helpers import table, write

from optimizer.settings import Settings
from optimizer.data.ingest import ingest_paths
from optimizer.data.ingest.lit import classify_trades
from optimizer.data.store import connect

# 2024-03-08 is EST (UTC-5). Hand classification:
EIGHT = """timestamp,symbol,price,size,bid,ask
2024-03-08T09:29:00-05:00,AAPL,100.00,50,,
2024-03-08T09:30:00-05:00,AAPL,100.00,100,99.5,100.5
2024-03-08T09:31:00-05:00,AAPL,100.05,200,100.00,100.04
2024-03-08T09:32:00-05:00,AAPL,100.01,300,,
2024-03-08T09:33:00-05:00,AAPL,100.01,400,100.02,100.00
2024-03-08T09:34:00-05:00,AAPL,100.03,500,100.02,100.06
2024-03-08T20:59:00Z,AAPL,100.10,600,,
2024-03-08T16:20:00-05:00,AAPL,100.00,700,,
"""
# 1: 09:29 before the open -> dropped
# 2: at mid (100.0) -> tick fallback, first kept trade of the day -> unclassified 100
# 3: 100.05 > mid 100.02 -> buy 200 (quote)
# 4: no quote, 100.01 < 100.05 downtick -> sell 300 (tick)
# 5: crossed quote (ask < bid) is invalid; zero tick after a downtick -> sell 400 (tick)
# 6: 100.03 < mid 100.04 -> sell 500 (quote; the tick rule would have said buy)
# 7: 15:59 EST given in UTC; uptick -> buy 600 (tick)
# 8: 16:20 after rth_end 16:15 -> dropped


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def test_eight_trade_table(con, tmp_path):
    p = write(tmp_path / "trades.csv", EIGHT)
    rep = ingest_paths(con, "lit-trades", [p], settings=Settings())
    assert rep.files[0].status == "ok"
    assert table(con, "SELECT date, symbol, lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method FROM lit_flow_daily") == [
        (date(2024, 3, 8), "AAPL", 800.0, 1200.0, 100.0, "quote+tick")
    ]


def test_rth_window_follows_settings(con, tmp_path):
    p = write(tmp_path / "trades.csv", EIGHT)
    ingest_paths(con, "lit-trades", [p], settings=Settings(rth_start="09:00", rth_end="16:00"))
    # trade 1 (09:29, first of day: unclassified) is kept, so trade 2 becomes a zero tick after no move:
    # still unclassified; 16:20 and 15:59 as before -> unclassified 150
    assert table(con, "SELECT lit_buy_volume, lit_sell_volume, lit_unclassified_volume FROM lit_flow_daily") == [
        (800.0, 1200.0, 150.0)
    ]


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=timezone.utc).timestamp() * 1000)


def test_tick_rule_resets_each_day_symbol_from_file_name_epoch_ms(con, tmp_path):
    rows = [
        (_ms(2024, 3, 11, 14, 0), 50.0, 10),  # 2024-03-11 10:00 EDT, first -> unclassified
        (_ms(2024, 3, 11, 14, 1), 51.0, 20),  # uptick -> buy
        (_ms(2024, 3, 12, 14, 0), 50.5, 30),  # next day, first -> unclassified (not a downtick vs 51)
        (_ms(2024, 3, 12, 14, 1), 50.5, 40),  # zero tick with no earlier move today -> unclassified
        (_ms(2024, 3, 12, 14, 2), 50.4, 50),  # downtick -> sell
    ]
    text = "timestamp,price,size\n" + "".join(f"{t},{p},{s}\n" for t, p, s in rows)
    p = write(tmp_path / "MSFT_2024-03.csv", text)
    ingest_paths(con, "lit-trades", [p], settings=Settings())
    assert table(con, "SELECT date, symbol, lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method FROM lit_flow_daily ORDER BY date") == [
        (date(2024, 3, 11), "MSFT", 20.0, 0.0, 10.0, "tick"),
        (date(2024, 3, 12), "MSFT", 0.0, 50.0, 70.0, "tick"),
    ]


def test_parquet_trades_and_rejects(con, tmp_path):
    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-03-11 14:00", "2024-03-11 14:01", "2024-03-11 14:02"]).tz_localize("UTC"),
            "symbol": ["NVDA", "NVDA", "NVDA"],
            "price": [10.0, -1.0, 10.2],
            "size": [5.0, 6.0, 7.0],
            "bid": [9.9, np.nan, 10.0],
            "ask": [10.1, np.nan, 10.1],
        }
    )
    p = tmp_path / "nvda.parquet"
    df.to_parquet(p)
    rep = ingest_paths(con, "lit-trades", [p], settings=Settings())
    assert rep.files[0].status == "rejected_rows"
    assert table(con, "SELECT line, reason FROM ingest_rejects") == [(2, "non-positive price -1.0")]
    # trade 1 at mid -> unclassified (first); trade 3 above mid 10.05 -> buy 7 (quote)
    assert table(con, "SELECT lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method FROM lit_flow_daily") == [
        (7.0, 0.0, 5.0, "quote")
    ]


def test_classify_trades_function_directly():
    sym = np.array(["A"] * 4)
    day = np.array(["d"] * 4)
    price = np.array([1.0, 1.0, 0.9, 0.9])
    nan = np.nan
    direction, rule = classify_trades(sym, day, price, np.array([nan, 0.5, nan, nan]), np.array([nan, 1.0, nan, nan]))
    assert direction.tolist() == [0, 1, -1, -1]
    assert rule.tolist() == [0, 1, 2, 2]


def test_lit_flow_csv(con, tmp_path):
    text = (
        "date,symbol,lit_buy_volume,lit_sell_volume,method\n"
        "2024-03-08,AAPL,10,20,\n"
        "2024-03-11,AAPL,30,40,quote\n"
        "2024-03-12,AAPL,-1,40,quote\n"
    )
    p = write(tmp_path / "flow.csv", text)
    rep = ingest_paths(con, "lit-flow", [p])
    assert rep.files[0].status == "rejected_rows" and rep.files[0].rows_rejected == 1
    assert table(con, "SELECT date, lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method FROM lit_flow_daily ORDER BY date") == [
        (date(2024, 3, 8), 10.0, 20.0, 0.0, "provided"),
        (date(2024, 3, 11), 30.0, 40.0, 0.0, "quote"),
    ]
    assert table(con, "SELECT line, reason FROM ingest_rejects") == [(4, "negative lit_buy_volume -1.0")]


def test_naive_timestamps_are_utc(con, tmp_path):
    # 14:29 UTC = 09:29 EST (dropped), 14:31 UTC = 09:31 EST (kept), 21:10 UTC = 16:10 EST (kept), 21:20 (dropped)
    text = (
        "timestamp,symbol,price,size\n"
        "2024-03-08 14:29:00,AMD,10,1\n"
        "2024-03-08 14:31:00,AMD,10,2\n"
        "2024-03-08 21:10:00,AMD,11,4\n"
        "2024-03-08 21:20:00,AMD,12,8\n"
    )
    p = write(tmp_path / "t.csv", text)
    ingest_paths(con, "lit-trades", [p], settings=Settings())
    assert table(con, "SELECT lit_buy_volume, lit_sell_volume, lit_unclassified_volume FROM lit_flow_daily") == [(4.0, 0.0, 2.0)]
