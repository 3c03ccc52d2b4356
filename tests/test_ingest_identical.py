"""``skipped_identical`` means "re-ingesting this file would change nothing": the same content was ingested before
AND its rows are still the stored rows of the keys it covers. A file whose rows a later file (of another name, or
of the same name in another folder) replaced is ingested again; files of one name in several folders are not
re-ingested on every run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from _ingest_helpers import dump_tables, finra_text, table, write

import optimizer.data.ingest as ingest
from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

PX = "date,symbol,open,high,low,close,volume"
COMBINED = "\n".join([PX, "2024-01-02,AAPL,10,11,9,10.5,100", "2024-01-02,MSFT,20,21,19,20.5,200",
                      "2024-01-03,AAPL,10,11,9,10.6,100", "2024-01-03,MSFT,20,21,19,20.6,200"]) + "\n"
# a per-symbol file with other closes for AAPL on both days
AAPL_ONLY = "\n".join([PX, "2024-01-02,AAPL,10,12,9,11.5,101", "2024-01-03,AAPL,10,12,9,11.6,101"]) + "\n"
# the same, plus a row breaking an invariant (low > high): status rejected_rows, it still replaces AAPL's rows
AAPL_ONLY_REJ = AAPL_ONLY + "2024-01-04,AAPL,10,9,11,10,1\n"


def _closes(con):
    return table(con, "SELECT date, symbol, close, source FROM prices_daily ORDER BY date, symbol")


def _statuses(rep):
    return [f.status for f in rep.files]


@pytest.fixture(params=[True, False], ids=["overlap", "serial"])
def overlap(request, monkeypatch):
    """Pipelined or serial, in batches of 1, 2, 2, ... files (a call's files cross batches and staging slots)."""
    monkeypatch.setattr(ingest, "FIRST_BATCH_FILES", 1)
    monkeypatch.setattr(ingest, "BATCH_FILES", 2)
    return request.param


@pytest.mark.parametrize("later", [AAPL_ONLY, AAPL_ONLY_REJ], ids=["replaced", "rejected_rows"])
@pytest.mark.parametrize("source_col", [False, True], ids=["name", "source_repo"])
def test_a_file_whose_rows_another_file_replaced_is_not_skipped(tmp_path, overlap, later, source_col):
    """(a) combined prices file A, then a per-symbol file B replacing A's AAPL rows: ingesting A again restores
    A's rows (status replaced) instead of reporting "identical file already ingested" over B's rows."""
    def text(t):
        if not source_col:
            return t
        head, *rows = t.strip().split("\n")
        return "\n".join([head + ",source_repo", *(r + ",vendor/x" for r in rows)]) + "\n"

    a = write(tmp_path / "all.csv", text(COMBINED))
    b = write(tmp_path / "AAPL.csv", text(later))
    con = connect(":memory:")
    ingest_paths(con, "prices", [a], overlap=overlap)
    only_a = _closes(con)
    assert _statuses(ingest_paths(con, "prices", [b], overlap=overlap)) == ["replaced" if later == AAPL_ONLY else "rejected_rows"]
    assert _closes(con) != only_a
    rep = ingest_paths(con, "prices", [a], overlap=overlap)
    assert _statuses(rep) == ["replaced"]
    assert rep.files[0].message == "replaced the stored rows of the keys this file covers"
    assert _closes(con) == only_a
    # now A's rows are the stored ones again: the next run skips it
    assert _statuses(ingest_paths(con, "prices", [a], overlap=overlap)) == ["skipped_identical"]


def test_a_corrected_finra_copy_under_another_name_then_the_original_again(tmp_path, overlap):
    """(a) FINRA: the original CNMS file, a corrected copy of the same (date, facility) under another name, then
    the original again: the original's rows are stored again (before: skipped, the copy's rows kept)."""
    orig = write(tmp_path / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|1|9|Q"]))
    fixed = write(tmp_path / "CNMSshvol20200102_fixed.txt", finra_text(["20200102|AAPL|11|0|22|Q", "20200102|MSFT|5|1|9|Q"]))
    con = connect(":memory:")
    q = "SELECT symbol, short_volume, total_volume, source_file FROM finra_short_daily ORDER BY symbol"
    ingest_paths(con, "finra-short", [orig], overlap=overlap)
    assert _statuses(ingest_paths(con, "finra-short", [fixed], overlap=overlap)) == ["replaced"]
    rep = ingest_paths(con, "finra-short", [orig], overlap=overlap)
    assert _statuses(rep) == ["replaced"]
    assert table(con, q) == [("AAPL", 10, 20, "CNMSshvol20200102.txt"), ("MSFT", 5, 9, "CNMSshvol20200102.txt")]


def test_same_name_in_two_folders_is_not_reingested_on_every_run(tmp_path, overlap):
    """(b) per-year folders holding a file of the same name (disjoint keys): the second run over both folders is a
    no-op (all skipped, ingest_log included), not two 'replaced' re-ingests."""
    y1, y2 = tmp_path / "2024", tmp_path / "2025"
    y1.mkdir()
    y2.mkdir()
    write(y1 / "AAPL.csv", "\n".join([PX, "2024-01-02,AAPL,10,11,9,10.5,100", "2024-01-03,AAPL,10,11,9,10.6,100"]) + "\n")
    write(y2 / "AAPL.csv", "\n".join([PX, "2025-01-02,AAPL,10,11,9,10.7,100", "2025-01-03,AAPL,10,11,9,10.8,100"]) + "\n")
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "prices", [y1, y2], overlap=overlap)) == ["ok", "ok"]
    once = dump_tables(con)
    for _ in range(2):
        assert _statuses(ingest_paths(con, "prices", [y1, y2], overlap=overlap)) == ["skipped_identical"] * 2
        assert dump_tables(con) == once
    # one folder at a time, too
    assert _statuses(ingest_paths(con, "prices", [y2], overlap=overlap)) == ["skipped_identical"]
    assert _statuses(ingest_paths(con, "prices", [y1], overlap=overlap)) == ["skipped_identical"]
    assert dump_tables(con) == once


def test_files_replacing_each_others_rows_rerun_as_a_noop(tmp_path, overlap):
    """Two folders with a file of the same name covering the same key (the later one's rows are stored): a second
    run over both skips both (the second file comes again after the first: skipping the first ends the call with
    the rows re-ingesting it would), ingest_log included; the first folder ALONE is ingested again (its rows are
    not the stored ones), and then both folders end as one run leaves them."""
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    write(d1 / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q"]))
    write(d2 / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|11|0|22|Q"]))
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "finra-short", [d1, d2], overlap=overlap)) == ["ok", "replaced"]
    once = dump_tables(con)
    assert table(con, "SELECT short_volume FROM finra_short_daily") == [(11,)]
    assert _statuses(ingest_paths(con, "finra-short", [d1, d2], overlap=overlap)) == ["skipped_identical"] * 2
    assert dump_tables(con) == once
    assert _statuses(ingest_paths(con, "finra-short", [d2], overlap=overlap)) == ["skipped_identical"]
    assert _statuses(ingest_paths(con, "finra-short", [d1], overlap=overlap)) == ["replaced"]
    assert table(con, "SELECT short_volume FROM finra_short_daily") == [(10,)]
    assert _statuses(ingest_paths(con, "finra-short", [d1, d2], overlap=overlap)) == ["skipped_identical", "replaced"]
    assert dump_tables(con, exclude=("ingest_log",)) == {k: v for k, v in once.items() if k != "ingest_log"}


def test_raw_finra_files_and_a_tidy_file_of_the_same_days_rerun_as_a_noop(tmp_path, overlap):
    """Raw CNMS files, then a tidy file re-stating one of their days (another name): a second run over both is a
    no-op; the raw files alone restore their rows; both again end as one run leaves them."""
    raw, tidy = tmp_path / "raw", tmp_path / "tidy"
    raw.mkdir()
    tidy.mkdir()
    write(raw / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|MSFT|5|0|9|Q"]))
    write(raw / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|12|0|20|Q"]))
    write(tidy / "finra_short_daily_2020.csv", "date,symbol,short_volume,total_volume,facility\n"
          "2020-01-02,AAPL,1,2,CNMS\n2020-01-02,MSFT,3,4,CNMS\n")
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "finra-short", [raw, tidy], overlap=overlap)) == ["ok", "replaced", "ok"]
    once = dump_tables(con)
    assert _statuses(ingest_paths(con, "finra-short", [raw, tidy], overlap=overlap)) == ["skipped_identical"] * 3
    assert dump_tables(con) == once
    assert _statuses(ingest_paths(con, "finra-short", [raw], overlap=overlap)) == ["replaced", "skipped_identical"]
    assert table(con, "SELECT symbol, short_volume, source_file FROM finra_short_daily WHERE date = '2020-01-02' "
                      "ORDER BY symbol") == [("AAPL", 10, "CNMSshvol20200102.txt"), ("MSFT", 5, "CNMSshvol20200102.txt")]
    assert _statuses(ingest_paths(con, "finra-short", [raw, tidy], overlap=overlap)) == [
        "skipped_identical", "replaced", "skipped_identical"]
    assert dump_tables(con, exclude=("ingest_log",)) == {k: v for k, v in once.items() if k != "ingest_log"}


def test_files_untouched_by_a_later_replace_are_still_skipped(tmp_path, overlap):
    """Precision: after a corrected copy (another name) replaced ONE day, a run over the original folder re-ingests
    that day only; every other file is still skipped (stored-row counts prove its rows intact), in every batch."""
    days = ["20200102", "20200103", "20200106", "20200107", "20200108", "20200109", "20200110"]
    folder = tmp_path / "raw"
    folder.mkdir()
    for i, d in enumerate(days):
        write(folder / f"CNMSshvol{d}.txt", finra_text([f"{d}|AAPL|{i}|0|20|Q", f"{d}|MSFT|{i}|0|9|Q"]))
    fixes = tmp_path / "fixes"
    fixes.mkdir()
    write(fixes / "CNMSshvol20200106_fixed.txt", finra_text(["20200106|AAPL|7|0|21|Q"]))
    con = connect(":memory:")
    assert _statuses(ingest_paths(con, "finra-short", [folder], overlap=overlap)) == ["ok"] * len(days)
    once = dump_tables(con, exclude=("ingest_log",))
    assert _statuses(ingest_paths(con, "finra-short", [fixes], overlap=overlap)) == ["replaced"]
    want = ["skipped_identical"] * len(days)
    want[2] = "replaced"
    assert _statuses(ingest_paths(con, "finra-short", [folder], overlap=overlap)) == want
    assert dump_tables(con, exclude=("ingest_log",)) == once
    assert _statuses(ingest_paths(con, "finra-short", [folder], overlap=overlap)) == ["skipped_identical"] * len(days)
    # the copy again, then another correction (not in the next call) of another day
    assert _statuses(ingest_paths(con, "finra-short", [fixes], overlap=overlap)) == ["replaced"]
    more = tmp_path / "more"
    more.mkdir()
    write(more / "CNMSshvol20200107_fixed.txt", finra_text(["20200107|AAPL|8|0|21|Q"]))
    assert _statuses(ingest_paths(con, "finra-short", [more], overlap=overlap)) == ["replaced"]
    with_fixes = dump_tables(con, exclude=("ingest_log",))
    # the original and the copy in one call (the copy sorts after it): the original's write deletes the copy's row,
    # so the copy is not identical either (the stored-row counts follow each write of the call)
    rep = ingest_paths(con, "finra-short", [folder / "CNMSshvol20200106.txt", fixes], overlap=overlap)
    assert [(Path(f.file).name, f.status) for f in rep.files] == [
        ("CNMSshvol20200106.txt", "replaced"), ("CNMSshvol20200106_fixed.txt", "replaced")]
    assert dump_tables(con, exclude=("ingest_log",)) == with_fixes


def test_a_lit_flow_file_replacing_lit_trades_rows_makes_the_trades_file_not_identical(tmp_path, overlap):
    """lit-trades and lit-flow write the same table: a flow file replacing a trades file's day is seen."""
    trades = write(tmp_path / "AAPL_trades.csv", "timestamp,symbol,price,size\n"
                   "2024-01-02T10:00:00-05:00,AAPL,10,100\n2024-01-02T10:01:00-05:00,AAPL,10.1,50\n")
    flow = write(tmp_path / "flow.csv", "date,symbol,lit_buy_volume,lit_sell_volume\n2024-01-02,AAPL,1,2\n")
    con = connect(":memory:")
    q = "SELECT date, symbol, lit_buy_volume, lit_sell_volume, source_file FROM lit_flow_daily"
    assert _statuses(ingest_paths(con, "lit-trades", [trades], overlap=overlap)) == ["ok"]
    from_trades = table(con, q)
    assert _statuses(ingest_paths(con, "lit-flow", [flow], overlap=overlap)) == ["replaced"]
    assert _statuses(ingest_paths(con, "lit-trades", [trades], overlap=overlap)) == ["replaced"]
    assert table(con, q) == from_trades
    assert from_trades[0][:2] == (dt.date(2024, 1, 2), "AAPL")
