"""Adversarial inputs (explore4): what a careless or unlucky user feeds the tools. Each test is a defect found by
trying to break a command; each fails on the code before its fix.

The rule: bad input gets one line naming the file and line and the rule, exit code 2, no traceback; a failed
ingest leaves every data table as it was; no input makes a message (or the ingest_log) as big as the input.
"""

from __future__ import annotations

import pytest
from _ingest_helpers import copied_store, dump_tables, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect

PRICES_HEAD = "date,symbol,open,high,low,close,volume\n"
OTC_HEAD = ("issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,totalWeeklyTradeCount,"
            "summaryTypeCode,lastUpdateDate\n")


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("seed")
    c = connect(d / "seed.duckdb")
    write(d / "p.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10.5,100\n")
    write(d / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-04,1000,10,ATS_W_SMBL,2024-03-18\n")
    assert ingest_paths(c, "prices", [d / "p.csv"]).exit_code == 0
    assert ingest_paths(c, "otc-weekly", [d / "w.csv"]).exit_code == 0
    c.close()
    return d / "seed.duckdb"


@pytest.fixture()
def con(seed_store, tmp_path):
    yield from copied_store(seed_store, tmp_path)


def _failed(con, kind, path, message):
    """The file fails with exactly ``path:message``, on one line, and no data table changes."""
    before = dump_tables(con, exclude=("ingest_log",))
    rep = ingest_paths(con, kind, [path])
    (fr,) = rep.files
    assert fr.status == "failed", fr
    assert fr.message == f"{path}:{message}"
    assert dump_tables(con, exclude=("ingest_log",)) == before
    return fr


# ---------------------------------------------------------------------------------------------- ragged rows


def test_otc_weekly_ragged_row_fails_the_file_instead_of_vanishing(con, tmp_path):
    # a row cut short before its summaryTypeCode was dropped by the firm-record filter (NULL is not '_FIRM'):
    # the file was 'ok', IWM's week silently missing. It is a ragged row like in every other kind.
    p = write(tmp_path / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,2024-03-25\n"
              "IWM,T1\n" "MSFT,T1,2024-03-11,500,5,ATS_W_SMBL,2024-03-25\n")
    _failed(con, "otc-weekly", p, "3: expected 7 comma-separated fields, found 2")


def test_otc_weekly_firm_records_are_still_skipped(con, tmp_path):
    # the fix keeps the filter's purpose: firm-level records are not symbol data
    p = write(tmp_path / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,2024-03-25\n"
              "SOMEFIRM,T1,2024-03-11,1,1,ATS_W_FIRM,2024-03-25\n")
    (fr,) = ingest_paths(con, "otc-weekly", [p]).files
    assert (fr.status, fr.rows_accepted) == ("ok", 1), fr
    assert con.execute("SELECT count(*) FROM finra_otc_weekly WHERE week_start_date = DATE '2024-03-11'").fetchone() == (1,)
