"""Adversarial inputs (explore4): what a careless or unlucky user feeds the tools. Each test is a defect found by
trying to break a command; each fails on the code before its fix.

The rule: bad input gets one line naming the file and line and the rule, exit code 2, no traceback; a failed
ingest leaves every data table as it was; no input makes a message (or the ingest_log) as big as the input.
"""

from __future__ import annotations

import duckdb
import pytest
from _cli_helpers import cli
from _ingest_helpers import copied_store, dump_tables, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.ingest import _common
from optimizer.data.ingest._common import repr_sql
from optimizer.data.ingest._source import MAX_LINE_BYTES
from optimizer.data.store import connect

PRICES_HEAD = "date,symbol,open,high,low,close,volume\n"
QUOTE_MAX = 60  # the characters of a file's value a message quotes (_common.QUOTE_MAX)


def quoted(s: str) -> str:
    """The oracle, written out: repr() of the first QUOTE_MAX characters, then the full length when cut."""
    return repr(s[:QUOTE_MAX]) + (f"... ({len(s)} characters)" if len(s) > QUOTE_MAX else "")


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


# ---------------------------------------------------------------------------------------------- huge lines


def test_a_line_over_the_limit_is_refused_when_other_lines_follow_it(con, tmp_path):
    # the 1 MiB line rule (docs/DATA.md) was only checked on a chunk's unterminated tail: a 10 MB line followed by
    # a normal one was staged, then quoted whole in the error, the ingest_log and the terminal table (whose
    # wrapping of a 10 MB word ran for minutes)
    big = "2024-01-03,AAPL," + "9" * (MAX_LINE_BYTES + 10) + ",11,9,10,100"
    p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-02,MSFT,10,11,9,10.5,100\n" + big + "\n"
              "2024-01-04,AAPL,10,11,9,10.5,100\n")
    _failed(con, "prices", p, "3: line longer than 1 MiB: not a line-oriented text file")


def test_cli_refuses_a_huge_line_on_one_short_line_with_exit_2(tmp_path):
    db = tmp_path / "s.duckdb"
    big = "2024-01-03,AAPL," + "9" * (MAX_LINE_BYTES + 100) + ",11,9,10,100"
    p = write(tmp_path / "p.csv", PRICES_HEAD + big + "\n2024-01-04,AAPL,10,11,9,10.5,100\n")
    r = cli("ingest", "--db", db, "--out", tmp_path / "out", "prices", p)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    err = r.stderr.strip().splitlines()
    assert err == [f"{p}:2: line longer than 1 MiB: not a line-oriented text file"]
    assert len(r.stdout) < 4000


# ---------------------------------------------------------------------------------------------- long values


def test_a_long_bad_value_is_quoted_cut_in_the_message_and_the_log(con, tmp_path):
    # a 500 kB non-numeric field made a 500 kB message, stored in ingest_log and printed whole
    val = "12" + "x" * 500_000
    p = write(tmp_path / "p.csv", PRICES_HEAD + f"2024-01-03,AAPL,10,11,9,10,{val}\n")
    fr = _failed(con, "prices", p, f"2: non-numeric volume {quoted(val)}")
    assert fr.message.endswith(f"... ({len(val)} characters)")
    assert len(fr.message) < len(str(p)) + 150
    (logged,) = con.execute("SELECT message FROM ingest_log WHERE status = 'failed' ORDER BY id DESC LIMIT 1").fetchone()
    assert logged == fr.message


def test_a_long_unknown_date_in_otc_weekly_is_quoted_cut(con, tmp_path):
    val = "2024-03-25" + "y" * 200_000
    p = write(tmp_path / "w.csv", OTC_HEAD + f"AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,{val}\n")
    _failed(con, "otc-weekly", p, f"2: unparseable lastUpdateDate {quoted(val)} (expected YYYY-MM-DD or YYYYMMDD)")


@pytest.mark.parametrize("s", [
    "", "abc", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\there", "cr\rlf\n",
    "x" * QUOTE_MAX, "x" * (QUOTE_MAX + 1), "it's " + "z" * 300, "\\" * 200, "é" * 100,
])
def test_repr_sql_is_the_sql_twin_of_quoted(s):
    got = duckdb.connect().execute(f"SELECT {repr_sql('$1')}", [s]).fetchone()[0]
    assert got == quoted(s)
    assert _common.quoted(s) == quoted(s)


def test_a_finra_header_of_a_whole_line_is_quoted_cut(con, tmp_path):
    head = "Date|Symbol|" + "Q" * 400_000
    p = write(tmp_path / "CNMSshvol20240103.txt", head + "\r\n20240103|AAPL|1|0|2|Q\r\n1\r\n")
    fr = _failed(con, "finra-short", p, f"1: missing column 'ShortVolume': header is {quoted(head)}, "
                 "expected 'Date|Symbol|ShortVolume|TotalVolume|Market'")
    assert len(fr.message) < len(str(p)) + 250
