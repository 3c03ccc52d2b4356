"""What a column of an input file says is used or told: a lit-trades ``side`` column classifies its trades, and a
column (or JSON record field) a kind does not read is named in a warning, for every kind (docs/DATA.md)."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from _cli_helpers import cli, ok
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect
from optimizer.settings import Settings

# 2024-03-08 is EST (UTC-5). By hand, with the side column:
# 1: S at mid of 99.5/100.5 (the quote rule could not tell; first trade, no tick) -> sell 100 (side)
# 2: empty side, 100.05 > mid 100.02 -> buy 200 (quote)
# 3: side 'buy' (case-insensitive), no quote; the tick rule would say downtick -> buy 300 (side)
# 4: side N (none), no quote, 100.00 < 100.01 downtick -> sell 400 (tick)
# Without the side column: unclassified 100, buy 200, sell 300 + 400.
SIDED = """timestamp,symbol,price,size,bid,ask,side
2024-03-08T09:30:00-05:00,AAPL,100.00,100,99.5,100.5,S
2024-03-08T09:31:00-05:00,AAPL,100.05,200,100.00,100.04,
2024-03-08T09:32:00-05:00,AAPL,100.01,300,,,buy
2024-03-08T09:33:00-05:00,AAPL,100.00,400,,,n
"""
FLOW = "SELECT date, symbol, lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method FROM lit_flow_daily"


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def test_lit_trades_side_column_is_the_trades_side(con, tmp_path):
    rep = ingest_paths(con, "lit-trades", [write(tmp_path / "trades.csv", SIDED)], settings=Settings())
    assert rep.files[0].status == "ok" and rep.warnings == []
    assert table(con, FLOW) == [(date(2024, 3, 8), "AAPL", 500.0, 500.0, 0.0, "side+quote+tick")]


def test_lit_trades_side_aliases_and_parquet_numbers(con, tmp_path):
    # the aggressor_side alias; a Parquet side of +1.0 / -1.0 (floats) reads as 1 / -1
    text = SIDED.replace(",side\n", ",aggressor_side\n")
    ingest_paths(con, "lit-trades", [write(tmp_path / "a.csv", text)], settings=Settings())
    assert table(con, FLOW) == [(date(2024, 3, 8), "AAPL", 500.0, 500.0, 0.0, "side+quote+tick")]
    df = pd.DataFrame({
        "timestamp": pd.to_datetime(["2024-03-11 14:00", "2024-03-11 14:01"]).tz_localize("UTC"),
        "symbol": ["NVDA", "NVDA"], "price": [10.0, 10.5], "size": [5.0, 7.0], "side": [1.0, -1.0],
    })
    df.to_parquet(tmp_path / "nvda.parquet")
    rep = ingest_paths(con, "lit-trades", [tmp_path / "nvda.parquet"], settings=Settings())
    assert rep.files[0].status == "ok", rep.files[0].message
    # the tick rule would have said unclassified 5, buy 7: the side says buy 5, sell 7
    assert table(con, FLOW + " WHERE symbol = 'NVDA'") == [(date(2024, 3, 11), "NVDA", 5.0, 7.0, 0.0, "side")]


def test_lit_trades_invalid_side_fails_the_file_with_its_line_and_the_rule(con, tmp_path):
    p = write(tmp_path / "trades.csv", SIDED.replace(",n\n", ",A\n"))
    rep = ingest_paths(con, "lit-trades", [p], settings=Settings())
    assert rep.exit_code == 2
    assert rep.files[0].message == (f"{p}:5: invalid side 'A' (expected B/BUY/1/+1 for a buy, S/SELL/-1 for a sell, "
                                    "empty or N for the quote and tick rules)")
    assert table(con, "SELECT count(*) FROM lit_flow_daily") == [(0,)]
    res = cli("ingest", "lit-trades", p, "--db", tmp_path / "x.duckdb")
    ok(res, 2)
    assert "trades.csv:5: invalid side 'A'" in res.stderr and "Traceback" not in res.output


PRICES = "date,symbol,open,high,low,close,volume{extra}\n2024-03-08,AAPL,10,11,9,10.5,1000{val}\n"


@pytest.mark.parametrize("kind,name,text,unread", [
    ("lit-trades", "t.csv", "timestamp,symbol,price,size,exchange,conditions\n2024-03-08T09:30:00-05:00,AAPL,100,1,Q,12\n",
     "columns 'exchange', 'conditions'"),
    ("prices", "p.csv", PRICES.format(extra=",adj_close", val=",9.8"), "column 'adj_close'"),
    ("lit-flow", "f.csv", "date,symbol,lit_buy_volume,lit_sell_volume,venue\n2024-03-08,AAPL,1,2,X\n", "column 'venue'"),
    ("options", "o.csv", "date,symbol,call_volume,put_volume,oi\n2024-03-08,AAPL,1,2,3\n", "column 'oi'"),
    ("splits", "s.csv", "symbol,date,ratio,note\nAAPL,2020-08-31,4,x\n", "column 'note'"),
    ("finra-short", "tidy_2024-03-08.csv",
     "date,symbol,short_volume,total_volume,facility,venue_count\n2024-03-08,AAPL,1,2,CNMS,3\n", "column 'venue_count'"),
    # two spellings of one thing: the one read is said (a disagreeing split_from / facility_file was dropped unseen)
    ("splits", "s2.csv", "symbol,date,ratio,split_from,split_to\nAAPL,2020-08-31,4,1,2\n",
     "columns 'split_from', 'split_to'"),
    ("finra-short", "tidy2_2024-03-08.csv",
     "date,symbol,short_volume,total_volume,facility,facility_file\n2024-03-08,AAPL,1,2,CNMS,FNSQ\n",
     "column 'facility_file'"),
])
def test_a_column_not_read_is_named_in_a_warning(con, tmp_path, kind, name, text, unread):
    rep = ingest_paths(con, kind, [write(tmp_path / name, text)], settings=Settings())
    assert rep.files[0].status == "ok", rep.files[0].message
    assert rep.warnings == [f"{kind}: {name}: {unread} not read: stored without "
                            f"{'them' if 'columns' in unread else 'it'} (docs/DATA.md lists the columns each kind reads)"]


def test_known_vendor_fields_are_not_warned_and_json_fields_are(con, tmp_path):
    bar = {"t": 1709903400000, "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 1000, "vw": 10.2, "n": 12}
    p = write(tmp_path / "AAPL.json", json.dumps({"ticker": "AAPL", "results": [bar]}))
    assert ingest_paths(con, "prices", [p], settings=Settings()).warnings == []
    p = write(tmp_path / "MSFT.json", json.dumps({"ticker": "MSFT", "results": [bar | {"adjclose": 1}]}))
    assert ingest_paths(con, "prices", [p], settings=Settings()).warnings == [
        "prices: MSFT.json: record field 'adjclose' not read: stored without it (docs/DATA.md lists the "
        "record fields each kind reads)"]
    rec = {"issueSymbolIdentifier": "AAPL", "tierIdentifier": "T1", "summaryStartDate": "2024-03-04",
           "totalWeeklyShareQuantity": 100, "totalWeeklyTradeCount": 3, "summaryTypeCode": "ATS_W_SMBL",
           "issueName": "Apple Inc.", "MPID": "", "totalNotionalSum": 1.0}
    p = write(tmp_path / "otc.json", json.dumps([rec]))
    assert ingest_paths(con, "otc-weekly", [p], settings=Settings()).warnings == []
    p = write(tmp_path / "otc2.json", json.dumps([rec | {"shareQuantityAdjusted": 7}]))
    assert ingest_paths(con, "otc-weekly", [p], settings=Settings()).warnings[0].startswith(
        "otc-weekly: otc2.json: record field 'shareQuantityAdjusted' not read")
    p = write(tmp_path / "tidy_2024-03-08.csv",
              "date,symbol,short_volume,total_volume,facility,source_repo\n2024-03-08,AAPL,1,2,CNMS,x/y\n")
    assert ingest_paths(con, "finra-short", [p], settings=Settings()).warnings == []


def test_cli_prints_the_unread_column_warning(tmp_path):
    p = write(tmp_path / "p.csv", PRICES.format(extra=",adj_close", val=",9.8"))
    res = ok(cli("ingest", "prices", p, "--db", tmp_path / "x.duckdb"))
    assert "warning: prices: p.csv: column 'adj_close' not read" in res.stderr


def test_one_warning_for_the_same_unread_columns_of_many_files(con, tmp_path):
    files = [write(tmp_path / f"f{i}.csv", "date,symbol,lit_buy_volume,lit_sell_volume,venue\n"
                   f"2024-03-0{4 + i},AAPL,1,2,X\n") for i in range(4)]
    other = write(tmp_path / "g.csv", "date,symbol,lit_buy_volume,lit_sell_volume,desk\n2024-03-08,AAPL,1,2,X\n")
    rep = ingest_paths(con, "lit-flow", [*files, other], settings=Settings())
    assert rep.warnings == [
        "lit-flow: 4 files (f0.csv, f1.csv, f2.csv, ...): column 'venue' not read: stored without it "
        "(docs/DATA.md lists the columns each kind reads)",
        "lit-flow: g.csv: column 'desk' not read: stored without it (docs/DATA.md lists the columns each "
        "kind reads)"]
    assert [len(f.warnings) for f in rep.files] == [1] * 5  # each file's own result keeps its warning
