"""Invariant rejects, strict mode, idempotent re-ingest and replacement of changed files."""

from __future__ import annotations

from datetime import date

import pytest
from _ingest_helpers import FINRA_RAW, dump_tables, finra_text, need, table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

ROWS = [
    "20200103|AAPL|10|0|20|Q",  # line 2 ok
    "20200103|BAD1|200|0|100|Q",  # line 3 short > total
    "20200103|BAD2|5|0|-1|Q",  # line 4 negative total (also short > total: first rule wins)
    "20200103|DUP|1|0|2|Q",  # line 5 duplicate
    "20200103|MSFT|3|0|4|Q",  # line 6 ok
    "20200103|DUP|1|0|3|Q",  # line 7 duplicate
]


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def test_invariant_rows_go_to_ingest_rejects_and_rest_is_stored(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(ROWS))
    rep = ingest_paths(con, "finra-short", [p])
    fr = rep.files[0]
    assert (fr.status, fr.rows_accepted, fr.rows_rejected) == ("rejected_rows", 2, 4)
    assert rep.exit_code == 1
    assert fr.message.startswith(f"{p}:3: short_volume 200 > total_volume 100")
    assert table(con, "SELECT symbol FROM finra_short_daily ORDER BY 1") == [("AAPL",), ("MSFT",)]
    rj = table(con, "SELECT r.line, r.reason, r.raw, r.file, l.status FROM ingest_rejects r JOIN ingest_log l ON l.id = r.ingest_id ORDER BY line")
    assert rj == [
        (3, "short_volume 200 > total_volume 100", "20200103|BAD1|200|0|100|Q", str(p), "rejected_rows"),
        (4, "negative total_volume -1", "20200103|BAD2|5|0|-1|Q", str(p), "rejected_rows"),
        (5, "duplicate key (date, symbol, facility) = (2020-01-03, DUP, CNMS) on lines 5,7", "20200103|DUP|1|0|2|Q", str(p), "rejected_rows"),
        (7, "duplicate key (date, symbol, facility) = (2020-01-03, DUP, CNMS) on lines 5,7", "20200103|DUP|1|0|3|Q", str(p), "rejected_rows"),
    ]
    log = table(con, "SELECT file, kind, rows_accepted, rows_rejected, status FROM ingest_log")
    assert log == [(str(p), "finra-short", 2, 4, "rejected_rows")]


def test_strict_fails_the_file_and_writes_nothing(con, tmp_path):
    write(tmp_path / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|1|0|2|Q"]))
    ingest_paths(con, "finra-short", [tmp_path / "CNMSshvol20200102.txt"])
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(ROWS))
    before = dump_tables(con, exclude=("ingest_log",))
    rep = ingest_paths(con, "finra-short", [p], strict=True)
    assert dump_tables(con, exclude=("ingest_log",)) == before
    fr = rep.files[0]
    assert fr.status == "failed" and rep.exit_code == 2
    assert fr.message == f"{p}:3: short_volume 200 > total_volume 100 (strict: 4 rows break invariants, nothing written)"


def test_price_ohlc_invariants(con, tmp_path):
    text = (
        "Date,Symbol,Open,High,Low,Close,Volume,Extra\n"
        "2024-01-02,AAPL,10,11,9,10.5,100,x\n"  # 2 ok
        "2024-01-03,AAPL,10,9,11,10,100,x\n"  # 3 low > high
        "2024-01-04,AAPL,12,11,9,10,100,x\n"  # 4 open above high
        "2024-01-05,AAPL,10,11,9,8.5,100,x\n"  # 5 close below low
        "2024-01-08,AAPL,10,11,9,10,-5,x\n"  # 6 negative volume
        "2024-01-09,AAPL,10,11,9,11,0,x\n"  # 7 ok (close == high, volume 0)
    )
    p = write(tmp_path / "px.csv", text)
    rep = ingest_paths(con, "prices", [p])
    assert rep.files[0].status == "rejected_rows"
    assert table(con, "SELECT line, reason FROM ingest_rejects ORDER BY line") == [
        (3, "low 11.0 > high 9.0"),
        (4, "open 12.0 outside [low 9.0, high 11.0]"),
        (5, "close 8.5 outside [low 9.0, high 11.0]"),
        (6, "negative volume -5.0"),
    ]
    assert table(con, "SELECT date, close, source FROM prices_daily ORDER BY date") == [
        (date(2024, 1, 2), 10.5, "px.csv"),
        (date(2024, 1, 9), 11.0, "px.csv"),
    ]


@pytest.mark.realdata
def test_identical_reingest_is_a_noop(con):
    need(FINRA_RAW)
    ingest_paths(con, "finra-short", [FINRA_RAW])
    before = dump_tables(con)
    rep = ingest_paths(con, "finra-short", [FINRA_RAW])
    assert [f.status for f in rep.files] == ["skipped_identical"] * 6
    assert rep.exit_code == 0 and rep.rows_accepted == 0
    assert dump_tables(con) == before  # ingest_log included: a no-op writes nothing


def test_changed_file_replaces_that_date_and_facility(con, tmp_path):
    v1 = finra_text(["20200103|AAPL|10|0|20|Q", "20200103|SPY|5|0|6|Q"])
    v2 = finra_text(["20200103|AAPL|11|0|21|Q", "20200103|MSFT|1|0|2|Q"])
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    p1 = write(d1 / "CNMSshvol20200103.txt", v1)
    other = write(d1 / "FNSQshvol20200103.txt", finra_text(["20200103|AAPL|7|0|9|Q"]))
    keep = write(d1 / "CNMSshvol20200106.txt", finra_text(["20200106|AAPL|1|0|2|Q"]))
    assert [f.status for f in ingest_paths(con, "finra-short", [p1, other, keep]).files] == ["ok"] * 3
    p2 = write(d2 / "CNMSshvol20200103.txt", v2)
    rep = ingest_paths(con, "finra-short", [p2])
    assert rep.files[0].status == "replaced" and rep.exit_code == 0
    assert table(con, "SELECT date, symbol, facility, short_volume FROM finra_short_daily ORDER BY date, facility, symbol") == [
        (date(2020, 1, 3), "AAPL", "CNMS", 11),
        (date(2020, 1, 3), "MSFT", "CNMS", 1),
        (date(2020, 1, 3), "AAPL", "FNSQ", 7),  # other facility untouched
        (date(2020, 1, 6), "AAPL", "CNMS", 1),  # other date untouched
    ]
    assert table(con, "SELECT status, message FROM ingest_log ORDER BY id DESC LIMIT 1") == [("replaced", "replaced 2 existing rows")]
    # the first version again: its sha is known, but a newer version of that file name was stored since
    rep = ingest_paths(con, "finra-short", [p1])
    assert rep.files[0].status == "replaced"
    assert table(con, "SELECT symbol, short_volume FROM finra_short_daily WHERE facility='CNMS' AND date='2020-01-03' ORDER BY 1") == [
        ("AAPL", 10),
        ("SPY", 5),
    ]
