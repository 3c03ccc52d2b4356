"""FINRA Reg SHO daily files: the real published files, layouts, line ends and the consolidated view."""

from __future__ import annotations

import shutil
from datetime import date

import pandas as pd
import pytest
from _ingest_helpers import FINRA_RAW, REAL, finra_text, need, table, write

from optimizer.data.ingest import KINDS, ingest_paths
from optimizer.data.store import connect
from optimizer.data.symbols import canonical_symbol
from optimizer.errors import ParameterError

D = date(2020, 1, 2)


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


@pytest.mark.realdata
def test_real_raw_files_reproduce_the_tidy_table(con):
    need(FINRA_RAW)
    tidy_path = need(REAL / "finra_short_daily_2020.csv.gz")
    rep = ingest_paths(con, "finra-short", [FINRA_RAW])
    assert [f.status for f in rep.files] == ["ok"] * 6
    assert rep.exit_code == 0
    by_name = {f.file.split("/")[-1]: f.rows_accepted for f in rep.files}
    assert by_name["FNRAshvol20200102.txt.gz"] == 0  # header-only file is valid
    tidy = pd.read_csv(tidy_path, dtype=str, keep_default_na=False)
    tidy = tidy[tidy["date"] == "2020-01-02"]
    got = table(
        con,
        "SELECT symbol, facility, short_volume, short_exempt_volume, total_volume, market FROM finra_short_daily",
    )
    for fac in ("CNMS", "FNSQ", "FNQC", "FNYX", "FNRA", "FORF"):
        t = tidy[tidy["facility_file"] == fac]
        # symbols are canonical (BRK/B -> BRK.B, ABRpA -> ABR.PRA) and the schema's symbol map
        # (FB -> META before 2022-06-09) applies at ingest
        want = {
            ("META" if r.symbol == "FB" else canonical_symbol(r.symbol), fac, int(r.short_volume), int(r.short_exempt_volume), int(r.total_volume), r.market)
            for r in t.itertuples()
        }
        have = {row for row in got if row[1] == fac}
        assert have == want, fac
        assert len(have) == len(t)
    assert len(got) == len(tidy) == 29326


@pytest.mark.realdata
def test_cnms_equals_facility_sum_and_view_prefers_cnms(con):
    need(FINRA_RAW)
    ingest_paths(con, "finra-short", [FINRA_RAW])
    spy = table(con, "SELECT short_volume, total_volume, provenance FROM finra_short_consolidated WHERE symbol='SPY'")
    assert spy == [(5_795_407, 11_990_841, "CNMS")]
    for sym in ("SPY", "QQQ", "AAPL"):
        cnms = table(con, f"SELECT short_volume, total_volume FROM finra_short_daily WHERE symbol='{sym}' AND facility='CNMS'")
        fsum = table(
            con,
            f"SELECT sum(short_volume), sum(total_volume) FROM finra_short_daily WHERE symbol='{sym}' AND facility<>'CNMS'",
        )
        assert cnms == [tuple(int(x) for x in fsum[0])], sym
    # one row per (date, symbol) in the view
    n, distinct = table(con, "SELECT count(*), count(DISTINCT symbol) FROM finra_short_consolidated")[0]
    assert n == distinct


@pytest.mark.realdata
def test_view_sums_facilities_when_cnms_missing(con, tmp_path):
    need(FINRA_RAW)
    for f in FINRA_RAW.iterdir():
        if not f.name.startswith("CNMS"):
            shutil.copy(f, tmp_path / f.name)
    ingest_paths(con, "finra-short", [str(tmp_path / "*.txt.gz")])
    spy = table(con, "SELECT date, short_volume, total_volume, provenance FROM finra_short_consolidated WHERE symbol='SPY'")
    assert spy == [(D, 5_795_407, 11_990_841, "FACILITY_SUM:FNQC+FNSQ+FNYX")]
    # an OTC name reported only by the ORF
    aabb = table(con, "SELECT short_volume, total_volume, provenance FROM finra_short_consolidated WHERE symbol='AABB'")
    assert aabb == [(325100, 558799, "FACILITY_SUM:FORF")]


def test_older_layout_gives_null_exempt(con, tmp_path):
    p = write(
        tmp_path / "CNMSshvol20100104.txt",
        finra_text(["20100104|AAPL|100|300|Q", "20100104|MSFT|5|10|N"], header="Date|Symbol|ShortVolume|TotalVolume|Market"),
    )
    rep = ingest_paths(con, "finra-short", [p])
    assert rep.files[0].status == "ok"
    assert table(con, "SELECT symbol, short_volume, short_exempt_volume, total_volume, market FROM finra_short_daily ORDER BY 1") == [
        ("AAPL", 100, None, 300, "Q"),
        ("MSFT", 5, None, 10, "N"),
    ]


def test_lf_and_crlf_give_identical_rows(tmp_path):
    rows = ["20200106|AAPL|100|2|300|B,Q,N", "20200106|ABRpA|58|0|58|Q", "20200106|NA|1|0|2|Q"]
    out = []
    for eol, sub in (("\n", "lf"), ("\r\n", "crlf")):
        d = tmp_path / sub
        d.mkdir()
        p = write(d / "FNSQshvol20200106.txt", finra_text(rows, eol=eol))
        c = connect(":memory:")
        assert ingest_paths(c, "finra-short", [p]).files[0].status == "ok"
        out.append(table(c, "SELECT * FROM finra_short_daily ORDER BY symbol"))
        c.close()
    assert out[0] == out[1]
    # canonical symbols: the CQS preferred marker 'p' becomes '.PR' (ABRpA is not ABRPA); 'NA' is a symbol, not NaN
    assert [r[1] for r in out[0]] == ["AAPL", "ABR.PRA", "NA"]
    assert out[0][0][2:7] == ("FNSQ", "B,Q,N", 100, 2, 300)


def test_gz_and_plain_and_files_processed_in_date_order(con, tmp_path):
    write(tmp_path / "CNMSshvol20200107.txt.gz", finra_text(["20200107|AAPL|1|0|2|Q"]), gz=True)
    write(tmp_path / "CNMSshvol20200106.txt", finra_text(["20200106|AAPL|3|0|4|Q"]))
    rep = ingest_paths(con, "finra-short", [tmp_path])
    assert [f.file.split("/")[-1] for f in rep.files] == ["CNMSshvol20200106.txt", "CNMSshvol20200107.txt.gz"]
    assert table(con, "SELECT date, short_volume FROM finra_short_daily ORDER BY date") == [
        (date(2020, 1, 6), 3),
        (date(2020, 1, 7), 1),
    ]


def test_unknown_kind_lists_valid_kinds(con, tmp_path):
    with pytest.raises(ParameterError) as e:
        ingest_paths(con, "finra", [tmp_path])
    assert str(e.value) == f"kind must be one of {', '.join(KINDS)}, got kind='finra'"


def test_tidy_csv_form_holds_many_dates_and_facilities(con, tmp_path):
    text = (
        "date,symbol,short_volume,short_exempt_volume,total_volume,market,facility_file,source_repo\n"
        '2020-01-02,AAPL,10,1,20,"B,Q,N",CNMS,x\n'
        "2020-01-02,AAPL,4,0,8,Q,FNSQ,x\n"
        "2020-01-03,AAPL,6,0,9,Q,FNSQ,x\n"
    )
    p = write(tmp_path / "tidy.csv", text)
    rep = ingest_paths(con, "finra-short", [p])
    assert rep.files[0].rows_accepted == 3
    assert table(con, "SELECT date, symbol, provenance, short_volume FROM finra_short_consolidated ORDER BY date") == [
        (date(2020, 1, 2), "AAPL", "CNMS", 10),
        (date(2020, 1, 3), "AAPL", "FACILITY_SUM:FNSQ", 6),
    ]


_API_HEAD = "date,symbol,short_volume,short_exempt_volume,total_volume,market,facility\n"


def test_api_file_of_other_symbols_keeps_the_stored_api_rows(con, tmp_path):
    """`accumopt fetch finra-api --symbols AAPL`, then `--symbols MSFT` for the same dates: each run's CSV holds only
    the symbols asked for, so an API file replaces the stored API rows of the (date, symbol) keys it holds, never
    every API row of its dates (before: AAPL's rows were deleted by MSFT's file)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write(tmp_path / "a" / "finra_api_regsho_20240102_20240103.csv",
              _API_HEAD + "2024-01-02,AAPL,100,0,200,Q,API\n2024-01-03,AAPL,110,0,200,Q,API\n")
    b = write(tmp_path / "b" / "finra_api_regsho_20240102_20240103.csv",
              _API_HEAD + "2024-01-02,MSFT,50,0,100,Q,API\n2024-01-03,MSFT,60,0,100,Q,API\n")
    assert ingest_paths(con, "finra-short", [a]).exit_code == 0
    assert [f.status for f in ingest_paths(con, "finra-short", [b]).files] == ["ok"]
    assert table(con, "SELECT date, symbol, short_volume FROM finra_short_consolidated ORDER BY date, symbol") == [
        (date(2024, 1, 2), "AAPL", 100), (date(2024, 1, 2), "MSFT", 50),
        (date(2024, 1, 3), "AAPL", 110), (date(2024, 1, 3), "MSFT", 60),
    ]
    # a corrected API file for AAPL replaces AAPL's rows only (its dates' other symbols stay)
    c = write(tmp_path / "finra_api_regsho_20240102_20240102.csv", _API_HEAD + "2024-01-02,AAPL,101,0,200,Q,API\n")
    assert [f.status for f in ingest_paths(con, "finra-short", [c]).files] == ["replaced"]
    assert table(con, "SELECT date, symbol, short_volume FROM finra_short_daily ORDER BY date, symbol") == [
        (date(2024, 1, 2), "AAPL", 101), (date(2024, 1, 2), "MSFT", 50),
        (date(2024, 1, 3), "AAPL", 110), (date(2024, 1, 3), "MSFT", 60),
    ]


def test_family_tidy_file_still_replaces_its_whole_date_and_facility(con, tmp_path):
    """A tidy file of a FINRA family (a whole published file per (date, facility)) replaces every stored row of the
    (date, facility) pairs it covers: a symbol a corrected file no longer lists is gone."""
    head = "date,symbol,short_volume,total_volume,facility\n"
    a = write(tmp_path / "v1_20200102.csv", head + "2020-01-02,AAPL,1,2,CNMS\n2020-01-02,MSFT,1,2,CNMS\n")
    b = write(tmp_path / "v2_20200102.csv", head + "2020-01-02,AAPL,3,4,CNMS\n")
    ingest_paths(con, "finra-short", [a])
    assert [f.status for f in ingest_paths(con, "finra-short", [b]).files] == ["replaced"]
    assert table(con, "SELECT symbol, short_volume FROM finra_short_daily") == [("AAPL", 3)]
