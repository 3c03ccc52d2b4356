"""The number rule of every ingest kind (``_common``: a number column's text parsed once, then refused when it
holds '_' or is not finite), pinned value by value: what is accepted and stored as what, and the exact message
of what is refused (issue 15.4 rewrote the SQL for speed; these values are the contract)."""

from __future__ import annotations

import datetime as dt

import pytest
from _ingest_helpers import finra_text, table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

D = "20200102"


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


@pytest.mark.parametrize(
    "short, exempt, total, stored",
    [
        ("10", "0", "20", (10, 0, 20)),
        ("1,000", "", "2,500", (1000, None, 2500)),  # thousands separators; an empty optional value is NULL
        ("12.5", "0.49", "20.5", (13, 0, 21)),  # fractions rounded half up to whole shares
        (" 7 ", "\t1", "9 ", (7, 1, 9)),  # fields are trimmed of spaces and tabs
        ("1e3", "0", "2E3", (1000, 0, 2000)),
        ("+5", "-0", "6", (5, 0, 6)),
    ],
)
def test_accepted_numbers_are_stored_as_whole_shares(con, tmp_path, short, exempt, total, stored):
    p = write(tmp_path / f"CNMSshvol{D}.txt", finra_text([f"{D}|AAPL|{short}|{exempt}|{total}|Q"]))
    rep = ingest_paths(con, "finra-short", [p])
    assert [f.status for f in rep.files] == ["ok"], rep.files[0].message
    assert table(con, "SELECT short_volume, short_exempt_volume, total_volume FROM finra_short_daily") == [stored]


@pytest.mark.parametrize(
    "short, exempt, total, message",
    [
        ("1_000", "0", "2000", "non-numeric ShortVolume '1_000'"),  # DuckDB alone would read 1000
        ("inf", "0", "2000", "non-numeric ShortVolume 'inf'"),
        ("10", "nan", "20", "non-numeric ShortExemptVolume 'nan'"),
        ("10", "0", "1e400", "non-numeric TotalVolume '1e400'"),  # overflows to infinity
        ("10", "0", "-", "non-numeric TotalVolume '-'"),
        # a comma only between groups of three digits (it was dropped anywhere: "1,0,0,0" read 1000, "0,99" 99)
        ("1,0,0,0", "0", "2000", "non-numeric ShortVolume '1,0,0,0' (a comma is read only as a thousands separator, as in 1,234.5)"),
        ("", "0", "20", "missing ShortVolume value"),
        ("10", "0", "", "missing TotalVolume value"),
    ],
)
def test_refused_numbers_fail_the_file_with_their_text(con, tmp_path, short, exempt, total, message):
    p = write(tmp_path / f"CNMSshvol{D}.txt", finra_text([f"{D}|AAPL|10|0|20|Q", f"{D}|MSFT|{short}|{exempt}|{total}|Q"]))
    rep = ingest_paths(con, "finra-short", [p])
    assert [(f.status, f.message) for f in rep.files] == [("failed", f"{p}:3: {message}")]
    assert table(con, "SELECT count(*) FROM finra_short_daily") == [(0,)]


def test_the_rule_is_the_same_for_a_csv_kind(con, tmp_path):
    head = "date,symbol,open,high,low,close,volume\n"
    ok = write(tmp_path / "p1.csv", head + '2024-01-02,AAPL,10,11,9,10.5,"1,200"\n')
    assert ingest_paths(con, "prices", [ok]).exit_code == 0
    assert table(con, "SELECT date, close, volume FROM prices_daily") == [(dt.date(2024, 1, 2), 10.5, 1200)]
    bad = write(tmp_path / "p2.csv", head + "2024-01-03,AAPL,10,11,9,1_0,100\n")
    rep = ingest_paths(con, "prices", [bad])
    assert [(f.status, f.message) for f in rep.files] == [("failed", f"{bad}:2: non-numeric close '1_0'")]
