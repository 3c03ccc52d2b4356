"""Versions of derived data: a lit-trades file read under older reading rules is read again (its key records the
rules' version), and daily_metrics built by older metrics code is stale (docs/DATA.md)."""

from __future__ import annotations

from datetime import date

import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths, lit
from optimizer.data.store import connect

# AAPL trades (aggressor side given: every trade classified by it). Wed 2024-11-27 is a regular session; Fri
# 2024-11-29 and Tue 2024-12-24 close at 13:00, so the window ends at 13:15 there (rules 2): the 13:30 / 15:59 / 14:00
# prints are after-hours. Rules 1 (an accumopt before 2026-12-05) kept every print to 16:15 on every session.
TRADES = "timestamp,symbol,price,size,side\n" + "".join(f"{t},AAPL,100,{n},{s}\n" for t, n, s in (
    ("2024-11-27T10:00:00-05:00", 100, "B"),
    ("2024-11-27T15:00:00-05:00", 50, "S"),
    ("2024-11-29T12:59:59-05:00", 100, "B"),
    ("2024-11-29T13:00:00-05:00", 10, "B"),   # the early close's closing print: in the window
    ("2024-11-29T13:30:00-05:00", 1000, "S"),  # after hours
    ("2024-11-29T15:59:00-05:00", 5000, "S"),  # after hours
    ("2024-12-24T14:00:00-05:00", 700, "S"),   # after hours: the only print of the day
))
NAME = "AAPL_trades.csv"
ROWS = "SELECT date, lit_buy_volume, lit_sell_volume, lit_unclassified_volume, method, source_file FROM lit_flow_daily ORDER BY date"
# by hand from TRADES: (date, buy, sell, unclassified, method, source_file)
OLD_ROWS = [(date(2024, 11, 27), 100.0, 50.0, 0.0, "side", NAME), (date(2024, 11, 29), 110.0, 6000.0, 0.0, "side", NAME),
            (date(2024, 12, 24), 0.0, 700.0, 0.0, "side", NAME)]
NEW_ROWS = [(date(2024, 11, 27), 100.0, 50.0, 0.0, "side", NAME), (date(2024, 11, 29), 110.0, 0.0, 0.0, "side", NAME)]


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def _as_the_rules_1_accumopt_left_it(con, path, monkeypatch) -> None:
    """The store an accumopt before 2026-12-05 (rules 1) left after ingesting ``path``, made with today's code by
    this transformation: the file read with no early close known (``lit.early_closes`` empty: rules 1's window,
    09:30-16:15 on every session), then the reading's key stripped of its ``+rules=2`` (rules 1 recorded the bare
    checksum under the default zone and window)."""
    with monkeypatch.context() as m:
        m.setattr(lit, "early_closes", lambda: {})
        assert ingest_paths(con, "lit-trades", [path]).files[0].status == "ok"
    con.execute("UPDATE ingest_log SET sha256 = split_part(sha256, '+', 1) WHERE kind = 'lit-trades'")


def test_a_lit_trades_file_read_by_older_rules_is_read_again_once(con, tmp_path, monkeypatch):
    p = write(tmp_path / NAME, TRADES)
    _as_the_rules_1_accumopt_left_it(con, p, monkeypatch)
    assert table(con, ROWS) == OLD_ROWS
    sha = table(con, "SELECT sha256 FROM ingest_log")[0][0]
    assert len(sha) == 64
    rep = ingest_paths(con, "lit-trades", [p])
    assert rep.files[0].status == "replaced"
    # as if only today's reading had happened: 2024-11-29 without its after-hours sells, no row left on 2024-12-24
    assert table(con, ROWS) == NEW_ROWS
    fresh = connect(":memory:")
    ingest_paths(fresh, "lit-trades", [p])
    assert table(con, "SELECT * FROM lit_flow_daily ORDER BY date") == table(fresh, "SELECT * FROM lit_flow_daily ORDER BY date")
    fresh.close()
    assert table(con, "SELECT sha256 FROM ingest_log ORDER BY id")[-1][0] == f"{sha}+rules={lit.TRADES_RULES}"
    assert ingest_paths(con, "lit-trades", [p]).files[0].status == "skipped_identical"
    assert table(con, "SELECT count(*) FROM ingest_log") == [(2,)]


def test_a_lit_trades_file_read_by_older_rules_under_another_window_is_read_again(con, tmp_path, monkeypatch):
    """An older key with a zone and window (``<sha>+tz=...;rth=...``, rules 1) is re-read under the same window."""
    from optimizer.settings import Settings

    late = Settings(rth_start="10:00")
    p = write(tmp_path / NAME, TRADES)
    with monkeypatch.context() as m:
        m.setattr(lit, "early_closes", lambda: {})
        ingest_paths(con, "lit-trades", [p], settings=late)
    con.execute("UPDATE ingest_log SET sha256 = replace(sha256, ';rules=2', '')")
    sha = table(con, "SELECT sha256 FROM ingest_log")[0][0]
    assert sha.endswith("+tz=America/New_York;rth=10:00-16:15")
    # the 10:00 print of 2024-11-27 is in the 10:00 window: the rows are those of the default window
    assert table(con, ROWS) == OLD_ROWS
    assert ingest_paths(con, "lit-trades", [p], settings=late).files[0].status == "replaced"
    assert table(con, ROWS) == NEW_ROWS
    assert table(con, "SELECT sha256 FROM ingest_log ORDER BY id")[-1][0] == f"{sha};rules=2"
    assert ingest_paths(con, "lit-trades", [p], settings=late).files[0].status == "skipped_identical"


def test_the_rules_version_is_recorded_for_lit_trades_only(con, tmp_path):
    """Today's readings of the other kinds keep the bare checksum (their store format is unchanged)."""
    flow = write(tmp_path / "flow.csv", "date,symbol,lit_buy_volume,lit_sell_volume\n2024-11-27,MSFT,1,2\n")
    prices = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2024-11-27,MSFT,1,1,1,1,5\n")
    trades = write(tmp_path / NAME, TRADES)
    ingest_paths(con, "lit-flow", [flow])
    ingest_paths(con, "prices", [prices])
    ingest_paths(con, "lit-trades", [trades])
    keys = dict(table(con, "SELECT kind, sha256 FROM ingest_log"))
    assert len(keys["lit-flow"]) == 64 and len(keys["prices"]) == 64
    assert keys["lit-trades"].endswith("+rules=2") and len(keys["lit-trades"]) == 64 + len("+rules=2")


# --- daily_metrics: the version of the metrics code that built it ------------------------------------------------

PRICES = "date,symbol,open,high,low,close,volume\n" + "".join(
    f"2024-03-{d:02d},MSFT,{c},{c},{c},{c},1000\n" for d, c in ((11, 10.0), (12, 11.0), (13, 12.0)))
FIX = "run `accumopt metrics build`"
TAIL = "Scores, sheets, backtests and studies read daily_metrics and do not see the change: " + FIX


@pytest.fixture()
def built(tmp_path):
    """A store whose daily_metrics today's accumopt built in full (from three MSFT closes)."""
    from optimizer.data.metrics import build_daily_metrics

    db = tmp_path / "s.duckdb"
    c = connect(db)
    ingest_paths(c, "prices", [write(tmp_path / "p.csv", PRICES)])
    build_daily_metrics(c)
    c.close()
    return db


def _meta(db, key):
    c = connect(db, read_only=True)
    try:
        got = table(c, f"SELECT value FROM accumopt_meta WHERE key = '{key}'")
    finally:
        c.close()
    return got[0][0] if got else None


def test_daily_metrics_built_by_an_older_metrics_version_is_stale_until_rebuilt(built, tmp_path, monkeypatch):
    import json

    from _cli_helpers import cli, ok

    from optimizer.data import metrics
    from optimizer.data.metrics import build_daily_metrics, store_metrics_staleness

    assert _meta(built, "daily_metrics_version") == "1" and store_metrics_staleness(built) is None
    monkeypatch.setattr(metrics, "METRICS_VERSION", 2)  # a later fix of a metric bumps the version
    want = ("daily_metrics was built by metrics version 1, older than this accumopt's version 2, which computes some "
            f"values otherwise. {TAIL}")
    assert store_metrics_staleness(built) == want
    # every command's check (data info shown here; signals, backtest, study, ... call the same one)
    info = ok(cli("data", "info", "--db", built))
    assert f"warning: {want}" in " ".join(info.stderr.split())
    assert json.loads(ok(cli("data", "info", "--db", built, "--format", "json")).stdout)["daily_metrics_stale"] == want
    con = connect(built)
    build_daily_metrics(con, symbols=["MSFT"], start="2024-03-12")  # a scoped build leaves older rows: still stale
    assert metrics.metrics_staleness(con) == want
    # newer raw data as well: both are said, the fix once
    ingest_paths(con, "prices", [write(tmp_path / "q.csv", PRICES.replace("2024-03-13", "2024-03-14"))])
    both = metrics.metrics_staleness(con)
    assert both == ("daily_metrics is older than the raw data: 1 file(s) were ingested since it was built (the latest: "
                    f"{tmp_path / 'q.csv'}). It was built by metrics version 1, older than this accumopt's version 2, "
                    f"which computes some values otherwise. {TAIL}")
    build_daily_metrics(con)
    assert metrics.metrics_staleness(con) is None
    con.close()
    assert _meta(built, "daily_metrics_version") == "2"


def test_a_daily_metrics_built_before_versions_were_recorded_counts_as_version_1(built, monkeypatch):
    """No record = version 1, today's values (audits found every older build's values identical): not stale today,
    stale once a fix bumps the version."""
    from optimizer.data import metrics
    from optimizer.data.metrics import store_metrics_staleness

    con = connect(built)
    con.execute("DELETE FROM accumopt_meta WHERE key = 'daily_metrics_version'")  # as an accumopt before 2026-12-05 left it
    con.close()
    assert store_metrics_staleness(built) is None
    monkeypatch.setattr(metrics, "METRICS_VERSION", 2)
    assert store_metrics_staleness(built) == (
        "daily_metrics was built by metrics version 1 (no version recorded: a build before versions were recorded "
        f"counts as 1), older than this accumopt's version 2, which computes some values otherwise. {TAIL}")


def test_a_daily_metrics_built_by_a_newer_metrics_version_is_said_and_data_info_shows_the_version(built):
    """A store a newer accumopt built (its metrics version above this one's: the user went back to an older
    checkout) holds values this accumopt does not compute: said as the older case is; `data info` shows the version
    that built daily_metrics (table title and JSON)."""
    import json

    from _cli_helpers import cli, ok

    from optimizer.data.metrics import METRICS_VERSION, store_metrics_staleness

    info = json.loads(ok(cli("data", "info", "--db", built, "--format", "json")).stdout)
    assert info["metrics_version"] == METRICS_VERSION and info["daily_metrics_stale"] is None
    assert f"built by metrics v{METRICS_VERSION}" in ok(cli("data", "info", "--db", built)).stdout
    con = connect(built)
    con.execute("UPDATE accumopt_meta SET value = ? WHERE key = 'daily_metrics_version'", [str(METRICS_VERSION + 1)])
    con.close()
    want = (f"daily_metrics was built by metrics version {METRICS_VERSION + 1}, newer than this accumopt's version "
            f"{METRICS_VERSION}: a newer accumopt built it (upgrade this one to use its values). {TAIL}")
    assert store_metrics_staleness(built) == want
    info = json.loads(ok(cli("data", "info", "--db", built, "--format", "json")).stdout)
    assert info["metrics_version"] == METRICS_VERSION + 1 and info["daily_metrics_stale"] == want
