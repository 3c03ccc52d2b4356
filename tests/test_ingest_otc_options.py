"""FINRA OTC weekly summaries (ATS + non-ATS combined, publication dates) and daily options files."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.ingest.otc_weekly import scheduled_publication
from optimizer.data.store import connect

HEAD = "issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,totalWeeklyTradeCount,summaryTypeCode,lastUpdateDate\n"


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def test_schedule_t1_two_weeks_others_four_weeks_next_monday():
    ws = pd.Series(pd.to_datetime(["2024-03-04", "2024-03-04"]))
    got = scheduled_publication(ws, pd.Series(["T1", "T2"]))
    # week ends Fri 2024-03-08; +14 = Fri 03-22 -> Mon 03-25; +28 = Fri 04-05 -> Mon 04-08
    assert [d.date() for d in got] == [date(2024, 3, 25), date(2024, 4, 8)]


def test_ats_and_non_ats_rows_combine(con, tmp_path):
    text = HEAD + (
        "AAPL,T1,2024-03-04,1000,10,ATS_W_SMBL,2024-03-18\n"
        "AAPL,T1,2024-03-04,3000,30,OTC_W_SMBL,2024-03-19\n"
        "AAPL,T1,2024-03-04,999,9,ATS_W_FIRM,2024-03-18\n"  # firm level: skipped
        "XYZ,T2,2024-03-04,50,5,ATS_W_SMBL,\n"
        "BAD,T2,2024-03-05,50,5,ATS_W_SMBL,\n"  # not a Monday
        "NEG,T1,2024-03-04,-5,5,OTC_W_SMBL,\n"
    )
    p = write(tmp_path / "otc.csv", text)
    rep = ingest_paths(con, "otc-weekly", [p])
    fr = rep.files[0]
    assert (fr.status, fr.rows_accepted, fr.rows_rejected) == ("rejected_rows", 2, 2)
    assert table(
        con,
        "SELECT week_start_date, symbol, tier, ats_volume, ats_trade_count, non_ats_volume, non_ats_trade_count, publication_date "
        "FROM finra_otc_weekly ORDER BY symbol",
    ) == [
        (date(2024, 3, 4), "AAPL", "T1", 1000, 10, 3000, 30, date(2024, 3, 19)),
        (date(2024, 3, 4), "XYZ", "T2", 50, 5, None, None, date(2024, 4, 8)),
    ]
    assert table(con, "SELECT line, reason FROM ingest_rejects ORDER BY line") == [
        (6, "summaryStartDate 2024-03-05 is not a Monday"),
        (7, "negative totalWeeklyShareQuantity -5"),
    ]


def test_json_file_with_the_other_side_keeps_stored_side(con, tmp_path):
    p = write(tmp_path / "ats.csv", HEAD + "XYZ,T2,2024-03-04,50,5,ATS_W_SMBL,\n")
    ingest_paths(con, "otc-weekly", [p])
    recs = [
        {"issueSymbolIdentifier": "XYZ", "tierIdentifier": "T2", "summaryStartDate": "2024-03-04",
         "totalWeeklyShareQuantity": 70, "totalWeeklyTradeCount": 7, "summaryTypeCode": "OTC_W_SMBL",
         "lastUpdateDate": "2024-04-10"},
    ]
    q = write(tmp_path / "otc.json", json.dumps(recs))
    rep = ingest_paths(con, "otc-weekly", [q])
    assert rep.files[0].status == "replaced"
    assert table(con, "SELECT ats_volume, non_ats_volume, non_ats_trade_count, publication_date FROM finra_otc_weekly") == [
        (50, 70, 7, date(2024, 4, 10))  # later of scheduled 04-08 and update 04-10
    ]


def test_options_optional_columns_and_rejects(con, tmp_path):
    text = (
        "date,symbol,call_volume,put_volume,call_premium,atm_iv\n"
        "2024-03-08,AAPL,100,50,12.5,0.25\n"
        "2024-03-08,MSFT,10,-5,,\n"
        "2024-03-11,AAPL,200,80,,\n"
    )
    p = write(tmp_path / "opt.csv", text)
    rep = ingest_paths(con, "options", [p])
    assert rep.files[0].status == "rejected_rows"
    assert table(
        con,
        "SELECT date, symbol, call_volume, put_volume, call_premium, put_premium, itm_call_volume, atm_iv, source_file "
        "FROM options_daily ORDER BY date",
    ) == [
        (date(2024, 3, 8), "AAPL", 100.0, 50.0, 12.5, None, None, 0.25, "opt.csv"),
        (date(2024, 3, 11), "AAPL", 200.0, 80.0, None, None, None, None, "opt.csv"),
    ]
    assert table(con, "SELECT line, reason, raw FROM ingest_rejects") == [(3, "negative put_volume -5.0", "2024-03-08,MSFT,10,-5,,")]
