"""Tests written to kill surviving mutants of the skipped_identical rule (bench/mutation, group ``ingest_skip``):
``_History`` in optimizer/data/ingest/__init__.py. Small hand-written FINRA files, no real data."""

from __future__ import annotations

import datetime as dt
import errno
from pathlib import Path

from _ingest_helpers import finra_text, table, write

import optimizer.data.ingest as ingest
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


PX = "date,symbol,open,high,low,close,volume,source"


def test_prices_with_a_source_column_one_replaced_row_is_seen_an_unrelated_write_is_not(tmp_path):
    """Prices whose ``source`` comes from the file (a source column): the stored-row count cannot prove a file
    intact, only the delete history can, which the writer keeps up to date within a call. A file written earlier
    in the call that deleted nothing leaves A identical (mutant ``_History.add`` 11: every write counted as a
    delete); one that replaced exactly ONE of A's rows makes A not identical (mutant ``add`` 12: a write of one
    deleted row not counted as a delete). Order in a call: TSLA.csv / AAPL.csv given before all.csv (files of one
    date keep the order given)."""
    a = write(tmp_path / "all.csv", "\n".join([PX, "2024-01-02,AAPL,10,11,9,10.5,100,v/x",
                                               "2024-01-02,MSFT,20,21,19,20.5,200,v/x"]) + "\n")
    other = write(tmp_path / "TSLA.csv", "\n".join([PX, "2024-01-02,TSLA,5,6,4,5.5,10,v/x"]) + "\n")
    one = write(tmp_path / "AAPL.csv", "\n".join([PX, "2024-01-02,AAPL,10,12,9,11.5,101,v/x"]) + "\n")
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "prices", [a])) == [("all.csv", "ok")]
    assert _statuses(ingest_paths(con, "prices", [other, a])) == [("TSLA.csv", "ok"), ("all.csv", "skipped_identical")]
    assert _statuses(ingest_paths(con, "prices", [one, a])) == [("AAPL.csv", "replaced"), ("all.csv", "replaced")]
    assert table(con, "SELECT file, message FROM ingest_log WHERE status = 'replaced' ORDER BY id") == [
        (str(one), "replaced 1 existing rows"), (str(a), "replaced 2 existing rows")]
    assert table(con, "SELECT symbol, close FROM prices_daily ORDER BY symbol") == [
        ("AAPL", 10.5), ("MSFT", 20.5), ("TSLA", 5.5)]


FLOW = "date,symbol,lit_buy_volume,lit_sell_volume\n"


def test_stored_counts_follow_a_write_in_the_call_that_replaces_a_names_own_rows(tmp_path):
    """lit-flow files named flow.csv in two folders (disjoint keys). In one call: an earlier file is proven
    identical by the stored-row counts (they are read), then a/flow.csv, rewritten, replaces its own row, then
    b/flow.csv: the counts kept up to date by the write (flow.csv lost 1 row, gained 1) still prove b's rows
    intact, so it is skipped (mutants ``_History.add`` 21, 22: the lost rows added, or counted under None)."""
    early = write(tmp_path / "early.csv", FLOW + "2023-12-29,AAPL,1,1\n")
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    fa = write(d1 / "flow.csv", FLOW + "2024-01-02,AAPL,1,2\n")
    fb = write(d2 / "flow.csv", FLOW + "2024-01-02,MSFT,3,4\n")
    other = write(tmp_path / "other.csv", FLOW + "2023-12-28,TSLA,1,1\n")
    other_fixed = write(tmp_path / "other_fixed.csv", FLOW + "2023-12-28,TSLA,2,2\n")
    con = connect(":memory:")
    assert [s for _, s in _statuses(ingest_paths(con, "lit-flow", [early, fa, fb]))] == ["ok"] * 3
    assert _statuses(ingest_paths(con, "lit-flow", [other])) == [("other.csv", "ok")]
    assert _statuses(ingest_paths(con, "lit-flow", [other_fixed])) == [("other_fixed.csv", "replaced")]
    write(fa, FLOW + "2024-01-02,AAPL,5,6\n")
    rep = ingest_paths(con, "lit-flow", [early, fa, fb])
    assert _statuses(rep) == [("early.csv", "skipped_identical"), ("flow.csv", "replaced"),
                              ("flow.csv", "skipped_identical")]
    q = "SELECT date, symbol, lit_buy_volume, source_file FROM lit_flow_daily ORDER BY date, symbol"
    assert table(con, q)[2:] == [
        (dt.date(2024, 1, 2), "AAPL", 5, "flow.csv"),
        (dt.date(2024, 1, 2), "MSFT", 3, "flow.csv")]


def test_a_file_unreadable_when_staged_fails_by_its_own_name_and_the_others_are_ingested(tmp_path, monkeypatch):
    """A file that exists when the paths are expanded but cannot be read when staged (permissions, removed
    meanwhile: the tests run as any user, so the read is made to fail) is reported failed under its own name with
    the OS reason; the other file is ingested (mutants ``_stage`` 7, 8: no error recorded, or one naming None)."""
    good = write(tmp_path / "AAPL.csv", "date,symbol,open,high,low,close,volume\n2024-01-02,AAPL,10,11,9,10.5,100\n")
    bad = write(tmp_path / "MSFT.csv", "date,symbol,open,high,low,close,volume\n2024-01-02,MSFT,20,21,19,20.5,200\n")
    real = ingest.read_raw

    def read_raw(path, file):
        if Path(path).name == "MSFT.csv":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, file)

    monkeypatch.setattr(ingest, "read_raw", read_raw)
    con = connect(":memory:")
    rep = ingest_paths(con, "prices", [good, bad])
    got = [(Path(f.file).name, f.status, f.message) for f in rep.files]
    assert got == [("AAPL.csv", "ok", None), ("MSFT.csv", "failed", f"{bad}: unreadable file (Permission denied)")]
    assert table(con, "SELECT symbol FROM prices_daily") == [("AAPL",)]


def test_history_reads_the_stored_counts_again_when_a_write_could_not_report_its_losses(tmp_path):
    """``_History.add`` keeps the per-source stored-row counts exact without reading them again only when the write
    reported which sources lost rows (``lost``) and the source column holds the file name. A write that deleted
    rows without reporting them (its ``lost_by`` was asked before the counts were read: the staging thread may read
    them meanwhile), or any write of prices (whose source may come from the file), makes the counts be read again
    (mutants ``add`` 14, 16, 18: stale counts or a non-dict; ``add`` 17: prices rows counted under the file name
    although they are stored under their ``source``)."""
    day = write(tmp_path / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|0|9|Q"]))
    con = connect(":memory:")
    ingest_paths(con, "finra-short", [day])
    h = ingest._History(con, "finra-short")
    assert h._stored(con, day.name) == 2
    con.execute("DELETE FROM finra_short_rows WHERE symbol = 'MSFT'")  # the unreported write's deletion
    h.add(str(tmp_path / "other.txt"), "0" * 64, 0, 1, None)
    assert h._stored(con, day.name) == 1

    px = write(tmp_path / "AAPL.csv", "\n".join([PX, "2024-01-02,AAPL,10,11,9,10.5,100,v/x"]) + "\n")
    ingest_paths(con, "prices", [px])
    h = ingest._History(con, "prices")
    assert h._stored(con, "v/x") == 1
    h.add(str(px), "1" * 64, 1, 0, {})
    assert h._stored(con, "AAPL.csv") == 0
    assert h._stored(con, "v/x") == 1


def test_a_new_name_written_in_the_call_is_counted_from_zero(tmp_path):
    """A name first stored by a write of this call (b/new.csv, 1 row), after the counts were read: its count is
    that write's rows, so a same-name file of no rows in another folder (a/new.csv, ingested before) is still proven
    identical (mutant ``_History.add`` 35: a name absent from the counts started at 1)."""
    early = write(tmp_path / "early.csv", FLOW + "2023-12-29,AAPL,1,1\n")
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    empty = write(d1 / "new.csv", FLOW)
    other = write(tmp_path / "other.csv", FLOW + "2023-12-28,TSLA,1,1\n")
    other_fixed = write(tmp_path / "other_fixed.csv", FLOW + "2023-12-28,TSLA,2,2\n")
    con = connect(":memory:")
    assert [s for _, s in _statuses(ingest_paths(con, "lit-flow", [early, empty]))] == ["ok", "ok"]
    assert _statuses(ingest_paths(con, "lit-flow", [other])) == [("other.csv", "ok")]
    assert _statuses(ingest_paths(con, "lit-flow", [other_fixed])) == [("other_fixed.csv", "replaced")]
    fresh = write(d2 / "new.csv", FLOW + "2024-01-02,MSFT,3,4\n")
    rep = ingest_paths(con, "lit-flow", [early, empty, fresh])
    assert [(Path(f.file).parent.name, Path(f.file).name, f.status) for f in rep.files] == [
        (tmp_path.name, "early.csv", "skipped_identical"), ("b", "new.csv", "ok"), ("a", "new.csv", "skipped_identical")]
