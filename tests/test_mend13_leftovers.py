"""mend13: what the explore12 / mend12 audits left (a share-class trades file name, a browser's duplicate download,
chained extreme splits, evening's universe "all")."""

from __future__ import annotations

from pathlib import Path

import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


_TRADES = ("timestamp,price,size\n2024-01-03T10:00:00-05:00,10,100\n2024-01-03T10:01:00-05:00,10.5,50\n")


@pytest.mark.parametrize("name", ["BRK.B_2024-01-03.csv", "BRK-B_2024-01-03.csv", "brk.b_x.csv"])
def test_a_trades_file_named_for_a_share_class_is_read_as_that_ticker(con, tmp_path, name):
    # 'BRK.B_x.csv' was refused: the stem was cut at the first '.', leaving 'BRK' with no '_' ('missing column
    # 'symbol' and the file name is not TICKER_*.csv'), though BRK.B is a ticker; BRK-B / brk.b are BRK.B everywhere
    rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
    (f,) = rep.files
    assert (f.status, f.message) == ("ok", None)
    assert table(con, "SELECT symbol, lit_buy_volume + lit_sell_volume + lit_unclassified_volume FROM lit_flow_daily") == [
        ("BRK.B", 150.0)]


@pytest.mark.parametrize("name, stem", [("2024.01.03_x.csv", "2024.01.03"), ("2024-01-03_AAPL.csv", "2024-01-03"),
                                        ("20240103_trades.csv", "20240103")])
def test_a_trades_file_whose_name_starts_with_a_date_is_refused_saying_so(con, tmp_path, name, stem):
    # a date-like stem is not a ticker (explore12 reverted a fix that read '2024.01.03_x.csv' as the symbol 2024.01.03)
    rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
    (f,) = rep.files
    assert f.status == "failed"
    assert f.message == (f"{tmp_path / name}:1: missing column 'symbol', and the file name's part before the first "
                         f"'_' ('{stem}') is a date, not a ticker: add a 'symbol' column or name the file "
                         "TICKER_*.csv (AAPL_2024-01-03.csv)")
    assert table(con, "SELECT count(*) FROM lit_flow_daily") == [(0,)]


def test_a_trades_file_without_a_ticker_in_its_name_is_refused_with_the_naming_rule(con, tmp_path):
    for name, why in [("trades.csv", "has no '_'"), ("_x.csv", "has no '_'"),
                      ("A#B_x.csv", "('A#B') is not a ticker (invalid symbol 'A#B': character '#'")]:
        rep = ingest_paths(con, "lit-trades", [write(tmp_path / name, _TRADES)])
        (f,) = rep.files
        assert f.status == "failed", name
        assert f.message.startswith(f"{tmp_path / name}:1: missing column 'symbol', and the file name"), f.message
        assert why in f.message and "TICKER_*.csv" in f.message, f.message
