"""Issue 12.4: every kind of bad input is refused with ``file:line: rule`` and leaves the data tables unchanged.

File-level problems (encoding, compression, a file-name date that disagrees, an unknown facility, a Polygon ticker
that is a list, a weekend FINRA file) fail the whole file. Row-level problems (an invariant a row breaks) reject
that row into ``ingest_rejects`` and keep the rest; under ``strict`` the file fails and nothing is written.
"""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
import json
import os
import re

import pytest
from _ingest_helpers import OTC_HEAD, PRICES_HEAD, build_seed_store, copied_store, dump_tables, finra_text, table, write

from optimizer.data.calendar import market_today
from optimizer.data.ingest import ingest_paths
from optimizer.settings import Settings

TODAY = market_today()  # New York's: the ingest's today whatever the machine's zone
FUTURE = TODAY + dt.timedelta(days=400)


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    """A store holding rows in several tables, so 'unchanged' is a real check: built once per module, each test
    ingests into its own copy (``con``)."""
    return build_seed_store(tmp_path_factory.mktemp("seed"))


@pytest.fixture()
def con(seed_store, tmp_path):
    """This test's copy of ``seed_store``."""
    yield from copied_store(seed_store, tmp_path)


def _one(rep):
    assert len(rep.files) == 1
    return rep.files[0]


def _failed(con, kind, path, reason_re, line, **kw):
    before = dump_tables(con, exclude=("ingest_log",))
    fr = _one(ingest_paths(con, kind, [path], **kw))
    assert fr.status == "failed", fr
    where = re.escape(str(path)) + (f":{line}" if line is not None else "")
    assert re.fullmatch(where + ": " + reason_re, fr.message), fr.message
    assert "\n" not in fr.message
    assert dump_tables(con, exclude=("ingest_log",)) == before
    return fr


def _rejected(con, kind, path, line, reason_re, *, kept: int):
    """Default mode: the row is rejected (line and reason in ingest_rejects), the others are stored; strict
    mode on a fresh copy of the store: the file fails and no table changes."""
    before = dump_tables(con, exclude=("ingest_log",))
    fr = _one(ingest_paths(con, kind, [path], strict=True))
    assert fr.status == "failed" and re.fullmatch(re.escape(f"{path}:{line}: ") + reason_re + r" \(strict: .*", fr.message), fr.message
    assert dump_tables(con, exclude=("ingest_log",)) == before
    fr = _one(ingest_paths(con, kind, [path]))
    assert fr.status == "rejected_rows" and fr.rows_accepted == kept, fr
    got = table(con, f"SELECT line, reason FROM ingest_rejects WHERE file = '{path}' ORDER BY line")
    assert got[0][0] == line and re.fullmatch(reason_re, got[0][1]), got


# ---------------------------------------------------------------------------------------------- file level


def test_weekend_finra_file_fails(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200104.txt", finra_text(["20200104|AAPL|1|0|2|Q"]))
    _failed(con, "finra-short", p, re.escape("date 2020-01-04 is not an NYSE session (Saturday)"), 2)


def test_holiday_far_past_and_future_finra_files_fail(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20150101.txt", finra_text(["20150101|AAPL|1|0|2|Q"]))
    _failed(con, "finra-short", p, re.escape("date 2015-01-01 is not an NYSE session (holiday)"), 2)
    p = write(tmp_path / "CNMSshvol20050103.txt", finra_text(["20050103|AAPL|1|0|2|Q"]))
    _failed(con, "finra-short", p, re.escape("date 2005-01-03 is before 2009-08-03, the first FINRA Reg SHO daily file"), 2)
    f = FUTURE.strftime("%Y%m%d")
    p = write(tmp_path / f"CNMSshvol{f}.txt", finra_text([f"{f}|AAPL|1|0|2|Q"]))
    _failed(con, "finra-short", p, re.escape(f"date {FUTURE} is in the future (today in New York is {TODAY})"), 2)


def test_tidy_finra_name_date_and_unknown_facility_fail(con, tmp_path):
    head = "date,symbol,short_volume,total_volume,facility_file\n"
    p = write(tmp_path / "finra_20200103.csv", head + "2020-01-03,AAPL,1,2,CNMS\n2020-01-06,MSFT,1,2,CNMS\n")
    _failed(con, "finra-short", p, re.escape("date 2020-01-06 does not match the file name date 20200103"), 3)
    p = write(tmp_path / "finra_api_regsho_20200102_20200106.csv", head + "2020-01-03,AAPL,1,2,API\n2020-01-07,MSFT,1,2,API\n")
    _failed(con, "finra-short", p, re.escape("date 2020-01-07 is outside the file name dates 20200102..20200106"), 3)
    p = write(tmp_path / "tidy.csv", head + "2020-01-03,AAPL,1,2,CNMS\n2020-01-03,MSFT,1,2,XNYS\n")
    _failed(con, "finra-short", p, re.escape("unknown facility 'XNYS' (expected one of CNMS, FNSQ, FNQC, FNYX, FNRA, FORF or API)"), 3)


def test_polygon_ticker_that_is_a_list_fails(con, tmp_path):
    doc = {"ticker": ["AAPL", "MSFT"], "results": [{"t": 1704171600000, "o": 1, "h": 2, "l": 1, "c": 2, "v": 3}]}
    p = write(tmp_path / "AAPL.json", json.dumps(doc))
    _failed(con, "prices", p, re.escape('Polygon JSON \'ticker\' must be one string, got a list: ["AAPL", "MSFT"]'), None)


def test_mixed_utf8_and_latin1_fails_naming_the_line(con, tmp_path):
    text = PRICES_HEAD.encode() + "2024-01-03,CAFÉ,1,2,1,2,3\n".encode("utf-8") + "2024-01-04,CAFÉ,1,2,1,2,3\n".encode("latin-1")
    p = write(tmp_path / "mixed.csv", text)
    _failed(con, "prices", p, re.escape("invalid UTF-8 (byte 0xC9): the file is not UTF-8 or mixes encodings such as "
                                        "UTF-8 and Latin-1 (save it as UTF-8)"), 3)


def test_utf16_fails_with_a_clear_message(con, tmp_path):
    text = PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n"
    p = write(tmp_path / "u16.csv", codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    _failed(con, "prices", p, re.escape("UTF-16 text (byte-order mark FF FE): save the file as UTF-8"), 1)
    p = write(tmp_path / "u16nobom.csv", text.encode("utf-16-le"))
    _failed(con, "prices", p, re.escape("NUL byte: binary data or UTF-16 text without a byte-order mark (save the file as UTF-8 text)"), 1)


def test_gzip_of_gzip_and_cr_only_fail_clearly(con, tmp_path):
    inner = gzip.compress((PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n").encode())
    p = write(tmp_path / "twice.csv.gz", gzip.compress(inner))
    _failed(con, "prices", p, re.escape("gzip inside gzip: the file was compressed twice; decompress it once"), 1)
    p = write(tmp_path / "mac.csv", (PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n").replace("\n", "\r"))
    _failed(con, "prices", p, re.escape("CR-only line ends (classic Mac OS): save the file with LF or CRLF line ends"), 1)
    p = write(tmp_path / "CNMSshvol20200103.txt", "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\r"
              "20200103|AAPL|1|0|2|Q\r1\r")
    _failed(con, "finra-short", p, re.escape("CR-only line ends (classic Mac OS): save the file with LF or CRLF line ends"), 1)


def test_decompression_bomb_and_size_cap_are_refused_quickly(con, tmp_path):
    bomb = gzip.compress(PRICES_HEAD.encode() + b"\n" * (9 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    p = write(tmp_path / "bomb.csv.gz", bomb)
    fr = _failed(con, "prices", p, r"gzip expands more than 100x \(\d+ compressed bytes gave \d+ bytes so far\): refused as a "
                 r"possible decompression bomb \(set MAX_EXPANSION_RATIO or --max-expansion to allow more\)", None)
    assert int(re.search(r"gave (\d+) bytes", fr.message).group(1)) < 9 << 20  # stopped early, before the end
    big = write(tmp_path / "big.csv", PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n" * 45_000)  # 1.17 MB
    _failed(con, "prices", big, re.escape("content exceeds the size limit of 1 MiB (set MAX_DECOMPRESSED_MB or "
                                          "--max-decompressed-mb to allow more)"), None, settings=Settings(max_decompressed_mb=1))
    loose = Settings(max_expansion_ratio=1e6)
    fr = _one(ingest_paths(con, "prices", [p], settings=loose))  # allowed now: 9 MB of blank lines, no rows
    assert fr.status == "ok" and fr.rows_accepted == 0


def test_limits_come_from_the_environment():
    s = Settings.from_env({"MAX_DECOMPRESSED_MB": "5", "MAX_EXPANSION_RATIO": "7.5"})
    assert (s.max_decompressed_mb, s.max_expansion_ratio) == (5, 7.5)
    from optimizer.errors import ParameterError

    with pytest.raises(ParameterError, match="MAX_EXPANSION_RATIO must be a finite number >= 1, got MAX_EXPANSION_RATIO='x'"):
        Settings.from_env({"MAX_EXPANSION_RATIO": "x"})


# ---------------------------------------------------------------------------------------------- row level


def test_short_exempt_above_short_is_rejected(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|5|9|20|Q", "20200103|MSFT|1|0|2|Q"]))
    _rejected(con, "finra-short", p, 2, re.escape("short_exempt_volume 9 > short_volume 5"), kept=1)


def test_huge_volume_is_a_rejected_row_not_a_database_error(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|MSFT|1|0|2|Q", "20200103|AAPL|5|0|1e30|Q"]))
    _rejected(con, "finra-short", p, 3, re.escape("total_volume 1e+30 is above the maximum 1e+13"), kept=1)
    q = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,1e30\n2024-01-04,AAPL,1,2,1,2,3\n")
    _rejected(con, "prices", q, 2, re.escape("volume 1e+30 is above the maximum 1e+13"), kept=1)


@pytest.mark.parametrize("day,why", [
    ("2024-01-06", "date 2024-01-06 is not an NYSE session (Saturday)"),
    ("2015-01-01", "date 2015-01-01 is not an NYSE session (holiday)"),
    ("1985-01-02", "date 1985-01-02 is before 1990-01-02, the first date the NYSE calendar covers"),
    (str(FUTURE), f"date {FUTURE} is in the future (today in New York is {TODAY})"),
])
def test_price_rows_off_the_calendar_are_rejected(con, tmp_path, day, why):
    p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n" + f"{day},AAPL,1,2,1,2,3\n")
    _rejected(con, "prices", p, 3, re.escape(why), kept=1)
    assert table(con, f"SELECT count(*) FROM prices_daily WHERE date = DATE '{day}'") == [(0,)]


def test_otc_row_published_before_its_week_ends_is_rejected(con, tmp_path):
    p = write(tmp_path / "w.csv", OTC_HEAD + "MSFT,T1,2024-03-04,1000,10,ATS_W_SMBL,2024-03-18\n"
              "AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,2024-03-13\n")
    _rejected(con, "otc-weekly", p, 3, re.escape("lastUpdateDate 2024-03-13 is before the week ends (2024-03-15): figures "
                                                 "cannot be published before the week they describe"), kept=1)
    assert table(con, "SELECT count(*) FROM finra_otc_weekly WHERE week_start_date = DATE '2024-03-11'") == [(0,)]


@pytest.mark.parametrize("sym,why", [
    ("A\tB", "invalid symbol 'A\\tB': control character U+0009"),
    ("../../PWN", "invalid symbol '../../PWN': empty part (a separator '.', '/', '-' or space must stand between two letters or digits)"),
    ("A\\B", "invalid symbol 'A\\\\B': character '\\\\' (allowed: letters, digits, a leading '^' and '.', '/', '-' or a space between two parts)"),
    ("", "empty symbol"),
])
def test_bad_symbols_are_rejected_with_file_and_line(con, tmp_path, sym, why):
    p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-03,AAPL,1,2,1,2,3\n" + f"2024-01-04,{sym},1,2,1,2,3\n")
    _rejected(con, "prices", p, 3, re.escape(why), kept=1)


def test_nul_in_a_symbol_fails_the_file(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|AAPL|1|0|2|Q", "20200103|A\x00B|1|0|2|Q"]))
    _failed(con, "finra-short", p, re.escape("NUL byte: binary data or UTF-16 text without a byte-order mark (save the file as UTF-8 text)"), 3)


def test_case_and_share_class_spellings_are_one_symbol(con, tmp_path):
    p = write(tmp_path / "CNMSshvol20200103.txt", finra_text(["20200103|BRK/B|1|0|2|Q", "20200103|aapl|1|0|2|Q", "20200103|AAPL|1|0|3|Q"]))
    fr = _one(ingest_paths(con, "finra-short", [p]))
    assert fr.status == "rejected_rows" and fr.rows_accepted == 1
    assert table(con, "SELECT symbol FROM finra_short_daily WHERE date = DATE '2020-01-03'") == [("BRK.B",)]
    assert table(con, "SELECT line, reason FROM ingest_rejects ORDER BY line") == [
        (3, "duplicate key (date, symbol, facility) = (2020-01-03, AAPL, CNMS) on lines 3,4"),
        (4, "duplicate key (date, symbol, facility) = (2020-01-03, AAPL, CNMS) on lines 3,4"),
    ]
    q = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-03,brk-b,1,2,1,2,3\n2024-01-04,BRK.B,1,2,1,2,3\n")
    ingest_paths(con, "prices", [q])
    assert table(con, "SELECT DISTINCT symbol FROM prices_daily WHERE symbol LIKE 'BRK%'") == [("BRK.B",)]


def test_failed_file_in_a_batch_leaves_the_others_written(con, tmp_path):
    good1 = write(tmp_path / "CNMSshvol20200106.txt", finra_text(["20200106|AAPL|1|0|2|Q"]))
    bad = write(tmp_path / "CNMSshvol20200107.txt", finra_text(["20200107|AAPL|x|0|2|Q"]))
    good2 = write(tmp_path / "CNMSshvol20200108.txt", finra_text(["20200108|AAPL|1|0|2|Q"]))
    rep = ingest_paths(con, "finra-short", [good1, bad, good2])
    assert [f.status for f in rep.files] == ["ok", "failed", "ok"]
    assert rep.files[1].message == f"{bad}:2: non-numeric ShortVolume 'x'"
    assert table(con, "SELECT date FROM finra_short_daily WHERE date > DATE '2020-01-02' ORDER BY date") == [
        (dt.date(2020, 1, 6),), (dt.date(2020, 1, 8),)]
    # the failure is logged in file order, between the two successes
    assert [r[0] for r in table(con, "SELECT status FROM ingest_log ORDER BY id")][-3:] == ["ok", "failed", "ok"]


def test_a_file_twice_in_one_call_is_skipped_the_second_time(con, tmp_path):
    a = write(tmp_path / "a" / "CNMSshvol20200106.txt" if os.makedirs(tmp_path / "a") is None else None,
              finra_text(["20200106|AAPL|1|0|2|Q"]))
    b = tmp_path / "b"
    b.mkdir()
    b = write(b / "CNMSshvol20200106.txt", a.read_bytes())
    rep = ingest_paths(con, "finra-short", [a, b])
    assert [f.status for f in rep.files] == ["ok", "skipped_identical"]
