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


_D = "20240103"


def _finra(short: int) -> str:
    from _ingest_helpers import finra_text

    return finra_text([f"{_D}|AAPL|{short}|0|300|Q"])


def test_a_browsers_second_download_comes_right_after_its_first_in_a_folder(tmp_path):
    # 'CNMSshvol20240103 (1).txt' (a browser's newer download) sorted before 'CNMSshvol20240103.txt' (' ' < '.'), so
    # in a folder the older file was ingested last and its rows stood; '(10)' sorted before '(2)'
    from optimizer.data.ingest import expand_paths

    names = ["CNMSshvol20240103 (10).txt", "CNMSshvol20240103 (2).txt", "CNMSshvol20240103.txt",
             "CNMSshvol20240103 (1).txt", "CNMSshvol20240102.txt", "CNMSshvol20240103(3).txt.gz", "CNMSshvol20240103.txt.gz"]
    for n in names:
        write(tmp_path / n, "x")
    want = ["CNMSshvol20240102.txt", "CNMSshvol20240103.txt", "CNMSshvol20240103 (1).txt", "CNMSshvol20240103 (2).txt",
            "CNMSshvol20240103 (10).txt", "CNMSshvol20240103.txt.gz", "CNMSshvol20240103(3).txt.gz"]
    assert [p.name for p in expand_paths(tmp_path)] == want
    assert [p.name for p in expand_paths(str(tmp_path / "CNMS*"))] == want
    # paths given one by one keep the order given (explore12's rule)
    given = [tmp_path / "CNMSshvol20240103 (1).txt", tmp_path / "CNMSshvol20240103.txt"]
    assert expand_paths(given) == given


def test_a_newer_download_of_a_finra_day_in_a_folder_is_stored_over_the_older_with_one_warning(con, tmp_path):
    write(tmp_path / f"CNMSshvol{_D}.txt", _finra(100))
    write(tmp_path / f"CNMSshvol{_D} (1).txt", _finra(150))
    rep = ingest_paths(con, "finra-short", [tmp_path])
    assert [(Path(f.file).name, f.status) for f in rep.files] == [
        (f"CNMSshvol{_D}.txt", "ok"), (f"CNMSshvol{_D} (1).txt", "replaced")]
    assert table(con, "SELECT short_volume FROM finra_short_daily") == [(150.0,)]
    assert rep.warnings == [
        f"finra-short: CNMSshvol{_D} (1).txt: read after CNMSshvol{_D}.txt, another download of the same file with "
        "other content: its rows stand where they overlap"]
    assert rep.exit_code == 0
    # the same content downloaded twice: nothing to say
    c2 = connect(":memory:")
    try:
        write(tmp_path / f"CNMSshvol{_D} (1).txt", _finra(100))
        rep = ingest_paths(c2, "finra-short", [tmp_path])
        assert rep.warnings == []
    finally:
        c2.close()
