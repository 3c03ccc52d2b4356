"""Malformed files: exact ``file:line: reason`` messages, and no data table changes at all."""

from __future__ import annotations

import gzip
import re
import zlib

import pytest
from _ingest_helpers import copied_store, dump_tables, finra_text, table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect
from optimizer.errors import InputFileError

GOOD_PRICES = "date,symbol,open,high,low,close,volume\n2024-01-02,AAPL,10,11,9,10.5,100\n"


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    """A store that already holds data in several tables, so 'unchanged' is a real check: built once per module,
    each test ingests into its own copy (``con``)."""
    d = tmp_path_factory.mktemp("seed")
    c = connect(d / "seed.duckdb")
    write(d / "CNMSshvol20200102.txt", finra_text(["20200102|AAPL|10|0|20|Q", "20200102|SPY|5|0|6|Q"]))
    assert ingest_paths(c, "finra-short", [d / "CNMSshvol20200102.txt"]).exit_code == 0
    write(d / "p.csv", GOOD_PRICES)
    assert ingest_paths(c, "prices", [d / "p.csv"]).exit_code == 0
    write(d / "bad.csv", "date,symbol,open,high,low,close,volume\n2024-01-03,AAPL,10,9,11,10,5\n2024-01-04,AAPL,10,11,9,10,5\n")
    assert ingest_paths(c, "prices", [d / "bad.csv"]).exit_code == 1  # a reject row exists too
    c.close()
    return d / "seed.duckdb"


@pytest.fixture()
def con(seed_store, tmp_path):
    """This test's copy of ``seed_store``."""
    yield from copied_store(seed_store, tmp_path)


def _truncated_gz(text: str) -> bytes:
    data = gzip.compress(text.encode())
    return data[: len(data) * 2 // 3]


BIG = finra_text([f"20200103|S{i:04d}|{i}|0|{i + 10}|Q" for i in range(400)])

CASES = [
    # (kind, file name, content, expected reason regex after "file:line: ", expected line)
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103,AAPL,1,0,2,Q"], header="Date,Symbol,ShortVolume,ShortExemptVolume,TotalVolume,Market"),
     r"wrong delimiter: expected '\|' between columns, found ','", 1),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|Q"], header="Date|Symbol|ShortVolume|ShortExemptVolume|Market"),
     re.escape("missing column 'TotalVolume': header is 'Date|Symbol|ShortVolume|ShortExemptVolume|Market', "
               "expected 'Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market'"), 1),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q", "20200103|MSFT|12x|0|20|Q"]),
     re.escape("non-numeric ShortVolume '12x'"), 3),
    ("finra-short", "CNMSshvol20200103.txt.gz", None, r"truncated gzip stream: it ends after \d+ decompressed bytes", None),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q", "20200103|MSFT|1|0|2|Q"], trailer=5),
     re.escape("trailer says 5 records, file has 2"), 4),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q", "2020013|MSFT|1|0|2|Q"]),
     re.escape("unparseable Date '2020013' (expected YYYY-MM-DD or YYYYMMDD)"), 3),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q", "20200106|MSFT|1|0|2|Q"]),
     re.escape("date 20200106 does not match the file name date 20200103"), 3),
    ("finra-short", "CNMSshvol20200103.txt", "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r\n20200103|AAPL|1|0|2|Q\r\n",
     re.escape("missing record-count trailer: last line '20200103|AAPL|1|0|2|Q' is not an integer (truncated file?)"), 2),
    ("finra-short", "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q|extra"]),
     re.escape("expected 6 '|'-separated fields, found 7"), 2),
    ("prices", "p2.csv", "date;symbol;open;high;low;close;volume\n2024-01-05;AAPL;1;2;1;2;3\n",
     re.escape("wrong delimiter: expected ',' between columns, found ';'"), 1),
    ("prices", "p2.csv", "date,symbol,open,high,low,volume\n2024-01-05,AAPL,1,2,1,3\n",
     re.escape("missing column 'close' (header has: date,symbol,open,high,low,volume)"), 1),
    ("prices", "p2.csv", "date,symbol,open,high,low,close,volume\n2024-01-05,AAPL,1,2,1,2,3\n2024-01-08,AAPL,1,2,one,2,3\n",
     re.escape("non-numeric low 'one'"), 3),
    ("prices", "p2.csv", "date,symbol,open,high,low,close,volume\n2024-01-05,AAPL,1,2,1,2,3\n2024-13-45,AAPL,1,2,1,2,3\n",
     re.escape("unparseable date '2024-13-45' (expected YYYY-MM-DD or YYYYMMDD)"), 3),
    ("prices", "p2.csv", "date,symbol,open,high,low,close,volume\n2024-01-05,AAPL,1,2,1,2,3,9\n",
     re.escape("expected 7 comma-separated fields, found 8"), 2),
    ("prices", "p2.csv", "date,symbol,open,high,low,close,volume\n2024-01-05,AAPL,1,2,1,2\n",
     re.escape("expected 7 comma-separated fields, found 6"), 2),
    ("prices", "p2.csv.gz", None, r"truncated gzip stream: it ends after \d+ decompressed bytes", None),
    ("options", "o.csv", "date,symbol,call_volume,put_volume\n2024-01-05,AAPL,10,abc\n", re.escape("non-numeric put_volume 'abc'"), 2),
    ("lit-flow", "l.csv", "date,symbol,lit_buy_volume\n2024-01-05,AAPL,10\n",
     re.escape("missing column 'lit_sell_volume' (header has: date,symbol,lit_buy_volume)"), 1),
    ("otc-weekly", "w.csv", "issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,totalWeeklyTradeCount,summaryTypeCode\n"
     "AAPL,T1,04/03/2024,10,1,ATS_W_SMBL\n", re.escape("unparseable summaryStartDate '04/03/2024' (expected YYYY-MM-DD or YYYYMMDD)"), 2),
    ("lit-trades", "AAPL_t.csv", "timestamp,price,size\n2024-03-08T10:00:00-05:00,10,5\nyesterday,10,5\n",
     re.escape("unparseable timestamp 'yesterday' (expected ISO-8601 or epoch)"), 3),
]


@pytest.mark.parametrize("kind,name,content,reason,line", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_file_fails_with_file_line_reason_and_changes_nothing(con, tmp_path, kind, name, content, reason, line):
    if content is None:  # truncated gzip of a valid file
        src = BIG if kind == "finra-short" else GOOD_PRICES * 1 + "".join(f"2023-01-{i:02d},X,1,2,1,2,3\n" for i in range(1, 29))
        data = _truncated_gz(src)
    else:
        data = content.encode()
    p = tmp_path / name
    p.write_bytes(data)
    before = dump_tables(con, exclude=("ingest_log",))
    log_before = table(con, "SELECT * FROM ingest_log ORDER BY id")

    rep = ingest_paths(con, kind, [p])

    assert dump_tables(con, exclude=("ingest_log",)) == before
    fr = rep.files[0]
    assert fr.status == "failed" and fr.rows_accepted == 0
    assert rep.exit_code == 2
    m = re.fullmatch(re.escape(str(p)) + r":(\d+): (.*)", fr.message)
    assert m, fr.message
    assert re.fullmatch(reason, m.group(2)), m.group(2)
    if line is not None:
        assert int(m.group(1)) == line
    else:  # truncated gzip: the line where the stream breaks, counted on what could be decompressed
        d = zlib.decompressobj(wbits=31)
        got = d.decompress(data)
        assert int(m.group(1)) == got.count(b"\n") + 1
        assert int(m.group(1)) > 2  # it broke well inside the file, and the earlier good lines were not stored
    # the failure is the one new ingest_log row (written after the rollback)
    log_after = table(con, "SELECT * FROM ingest_log ORDER BY id")
    assert log_after[: len(log_before)] == log_before
    assert len(log_after) == len(log_before) + 1
    assert log_after[-1][6] == "failed" and log_after[-1][7] == fr.message


def test_raise_on_error_raises_input_file_error(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q"], trailer=3))
    before = dump_tables(con, exclude=("ingest_log",))
    with pytest.raises(InputFileError) as e:
        ingest_paths(con, "finra-short", [p], raise_on_error=True)
    assert str(e.value) == f"{p}:3: trailer says 3 records, file has 1"
    assert (e.value.file, e.value.line) == (str(p), 3)
    assert dump_tables(con, exclude=("ingest_log",)) == before


def test_failed_file_does_not_stop_the_batch(con, tmp_path):
    bad = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|x|0|2|Q"]))
    good = write(tmp_path / "CNMSshvol20200106.txt", finra_text(["20200106|AAPL|1|0|2|Q"]))
    rep = ingest_paths(con, "finra-short", [bad, good])
    assert [f.status for f in rep.files] == ["failed", "ok"]
    assert rep.exit_code == 2
    assert rep.to_dict()["totals"]["failed"] == 1
    assert table(con, "SELECT count(*) FROM finra_short_daily WHERE date = DATE '2020-01-06'") == [(1,)]
