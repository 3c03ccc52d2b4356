"""Splits that multiply past adjust.MAX_FACTOR are refused by the splits ingest itself (they used to be stored with
exit 0 and only `metrics build` / `scan` refused the store afterwards)."""

from __future__ import annotations

import datetime as dt

import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def _splits(con):
    return table(con, "SELECT symbol, ex_date, ratio, source_file FROM splits ORDER BY symbol, ex_date")


def test_a_splits_file_chaining_past_the_factor_limit_is_refused_whole(con, tmp_path):
    write(tmp_path / "splits.csv", "symbol,date,ratio\nNVDA,2024-01-04,10000\nNVDA,2024-01-05,10000\nAAPL,2024-01-04,4\n")
    rep = ingest_paths(con, "splits", [tmp_path / "splits.csv"])
    assert rep.exit_code == 2
    (f,) = rep.files
    assert f.status == "failed"
    assert f.message == (
        f"{tmp_path / 'splits.csv'}: splits of NVDA multiply to 1e+08 (2 splits, 2024-01-04 .. 2024-01-05, from "
        "splits.csv): above 100,000, the largest factor a raw volume (at most 1e+13 shares) can be adjusted by; fix "
        "the ratios and ingest the file again")
    assert _splits(con) == []  # AAPL's sound row is not written either: a file is all or nothing
    assert table(con, "SELECT status, rows_accepted FROM ingest_log") == [("failed", 0)]


def test_a_second_file_taking_a_stored_chain_past_the_limit_is_refused_and_the_first_stays(con, tmp_path):
    write(tmp_path / "a.csv", "symbol,date,ratio\nNVDA,2024-01-04,10000\n")
    write(tmp_path / "b.csv", "symbol,date,ratio\nNVDA,2024-01-05,20\nAAPL,2024-01-04,4\n")
    rep = ingest_paths(con, "splits", [tmp_path / "a.csv", tmp_path / "b.csv"])
    assert [x.status for x in rep.files] == ["ok", "failed"]
    assert "splits of NVDA multiply to 200000 (2 splits, 2024-01-04 .. 2024-01-05, from a.csv, b.csv)" in rep.files[1].message
    assert _splits(con) == [("NVDA", dt.date(2024, 1, 4), 10000.0, "a.csv")]
    # a corrected b.csv goes in: 10,000 x 10 = 1e5, the limit itself
    write(tmp_path / "b.csv", "symbol,date,ratio\nNVDA,2024-01-05,10\nAAPL,2024-01-04,4\n")
    assert ingest_paths(con, "splits", [tmp_path / "b.csv"]).exit_code == 0
    assert _splits(con) == [("AAPL", dt.date(2024, 1, 4), 4.0, "b.csv"), ("NVDA", dt.date(2024, 1, 4), 10000.0, "a.csv"),
                            ("NVDA", dt.date(2024, 1, 5), 10.0, "b.csv")]


def test_a_file_replacing_an_extreme_split_with_a_sound_one_is_accepted(con, tmp_path):
    # the check sees the file's own rows after they replaced the stored ones on the same key
    write(tmp_path / "a.csv", "symbol,date,ratio\nNVDA,2024-01-04,10000\nNVDA,2024-01-05,10\n")
    assert ingest_paths(con, "splits", [tmp_path / "a.csv"]).exit_code == 0
    write(tmp_path / "a.csv", "symbol,date,ratio\nNVDA,2024-01-05,100\nNVDA,2024-01-04,2\n")
    assert ingest_paths(con, "splits", [tmp_path / "a.csv"]).exit_code == 0
    assert [r[2] for r in _splits(con)] == [2.0, 100.0]


@pytest.mark.parametrize("bad, tail", [(1, ""), (2, " (+1 more rejected row)"), (3, " (+2 more rejected rows)")])
def test_a_files_rejected_rows_message_counts_the_others_only_when_there_are_others(con, tmp_path, bad, tail):
    # explore12 / tspeed20 noticed: a file with one rejected row said "(+0 more rejected rows)"
    rows = "".join(f"NVDA,2024-01-0{2 + i},1\n" for i in range(bad))  # a ratio of 1 changes nothing: rejected
    write(tmp_path / "s.csv", "symbol,date,ratio\nAAPL,2024-01-10,4\n" + rows)
    (f,) = ingest_paths(con, "splits", [tmp_path / "s.csv"]).files
    assert f.status == "rejected_rows" and f.rows_rejected == bad
    assert f.message == f"{tmp_path / 's.csv'}:3: a split ratio of 1 changes nothing{tail}"
