"""Tests written to kill surviving mutants of the skipped_identical rule (bench/mutation, group ``ingest_skip``):
``_History`` in optimizer/data/ingest/__init__.py. Small hand-written FINRA files, no real data."""

from __future__ import annotations

from pathlib import Path

from _ingest_helpers import finra_text, table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect


def _statuses(rep):
    return [(Path(f.file).name, f.status) for f in rep.files]


def test_a_file_of_no_rows_is_identical_after_a_later_unrelated_replace(tmp_path):
    """A CNMS file of no rows (status ok, 0 rows) stores nothing, so nothing can remove its rows: after another
    file replaced rows of ANOTHER day (a delete later than it, not replayed in the call), it is still skipped as
    identical. Its stored-row count is 0 although no row carries its name (mutants ``_History._stored`` 7, 9:
    a missing name counted as None, not 0, re-ingested it)."""
    empty = write(tmp_path / "CNMSshvol20200102.txt", finra_text([]))
    day = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|10|0|20|Q"]))
    fix = write(tmp_path / "CNMSshvol20200103_fixed.txt", finra_text(["20200103|AAPL|11|0|20|Q"]))
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "finra-short", [empty])) == [("CNMSshvol20200102.txt", "ok")]
    assert _statuses(ingest_paths(con, "finra-short", [day])) == [("CNMSshvol20200103.txt", "ok")]
    assert _statuses(ingest_paths(con, "finra-short", [fix])) == [("CNMSshvol20200103_fixed.txt", "replaced")]
    for _ in range(2):
        rep = ingest_paths(con, "finra-short", [empty])
        assert _statuses(rep) == [("CNMSshvol20200102.txt", "skipped_identical")]
    assert table(con, "SELECT count(*) FROM ingest_log") == [(3,)]
    assert table(con, "SELECT symbol, short_volume, source_file FROM finra_short_daily") == [
        ("AAPL", 11, "CNMSshvol20200103_fixed.txt")]


def test_a_file_rewritten_in_place_counts_only_its_latest_rows(tmp_path):
    """A path ingested, then rewritten with other content (2 rows, then 1: it replaces its own rows) holds the
    latest content's rows only: after another file replaced rows of ANOTHER day (a later delete, not in the call),
    the path is still identical by its stored-row count, 1, not 2 + 1 (mutants ``_History._add`` 22, 23, 26, 32:
    the path's earlier ingest not subtracted from its name's expected rows, or added)."""
    path = tmp_path / "CNMSshvol20200102.txt"
    write(path, finra_text(["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|0|9|Q"]))
    day = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|10|0|20|Q"]))
    fix = write(tmp_path / "CNMSshvol20200103_fixed.txt", finra_text(["20200103|AAPL|11|0|20|Q"]))
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "finra-short", [path])) == [("CNMSshvol20200102.txt", "ok")]
    write(path, finra_text(["20200102|AAPL|12|0|20|Q"]))
    assert _statuses(ingest_paths(con, "finra-short", [path])) == [("CNMSshvol20200102.txt", "replaced")]
    assert _statuses(ingest_paths(con, "finra-short", [day])) == [("CNMSshvol20200103.txt", "ok")]
    assert _statuses(ingest_paths(con, "finra-short", [fix])) == [("CNMSshvol20200103_fixed.txt", "replaced")]
    assert _statuses(ingest_paths(con, "finra-short", [path])) == [("CNMSshvol20200102.txt", "skipped_identical")]
    assert table(con, "SELECT count(*) FROM ingest_log") == [(4,)]
    assert table(con, "SELECT symbol, short_volume FROM finra_short_daily WHERE date = '2020-01-02'") == [("AAPL", 12)]
