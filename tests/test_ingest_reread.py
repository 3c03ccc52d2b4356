"""Re-reading a file under other settings (MARKET_TZ, RTH_START / RTH_END) leaves the store as if only the new
reading had happened: the rows of keys the earlier reading produced and the new one does not are removed, in the
file's transaction; rows another file wrote there are kept (docs/DATA.md "lit-trades session window")."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
from _ingest_helpers import table, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.store import connect
from optimizer.settings import Settings

NY, LA = Settings(), Settings(market_tz="America/Los_Angeles")


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=timezone.utc).timestamp() * 1000)


# Polygon day bars start at midnight New York time (05:00 UTC in March before the DST switch of 2024-03-10): their
# sessions are Tue 5 .. Fri 8 March. Dated in Los Angeles (21:00 the evening before) they would be Mon 4 .. Thu 7:
# every bar a session early, as an accumopt before 2026-12-05 stored them under MARKET_TZ=America/Los_Angeles.
BARS = [(_ms(2024, 3, d, 5), 100.0 + d) for d in (5, 6, 7, 8)]
NY_ROWS = [(date(2024, 3, 5), 105.0), (date(2024, 3, 6), 106.0), (date(2024, 3, 7), 107.0), (date(2024, 3, 8), 108.0)]
CHICAGO = Settings(market_tz="America/Chicago")


def _polygon(ticker: str = "AAPL") -> str:
    return json.dumps({"ticker": ticker, "results": [
        {"t": t, "o": c, "h": c + 1, "l": c - 1, "c": c, "v": 1000 + c} for t, c in BARS]})


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


@pytest.mark.parametrize("settings", [LA, CHICAGO, Settings(market_tz="Asia/Tokyo")],
                         ids=["los_angeles", "chicago", "tokyo"])
def test_a_polygon_bar_is_dated_in_new_york_whatever_market_tz_says(con, tmp_path, settings):
    p = write(tmp_path / "AAPL.json", _polygon())
    ingest_paths(con, "prices", [p], settings=settings)
    assert table(con, "SELECT date, close FROM prices_daily ORDER BY date") == NY_ROWS
    # the zone is no part of a prices file's identity: read again under New York, it is the same reading
    assert table(con, "SELECT sha256 NOT LIKE '%+%' FROM ingest_log") == [(True,)]
    assert ingest_paths(con, "prices", [p], settings=NY).files[0].status == "skipped_identical"


def _as_an_older_accumopt_read_it_under_los_angeles(con) -> None:
    """The store an accumopt before 2026-12-05 left after reading the file under MARKET_TZ=America/Los_Angeles:
    each bar one weekday early (all four are Tue..Fri, so a day early is the Mon..Thu session), the reading
    recorded with its zone."""
    con.execute("UPDATE prices_daily SET date = date - 1 WHERE source = 'polygon'")
    con.execute("UPDATE ingest_log SET sha256 = sha256 || '+tz=America/Los_Angeles' WHERE kind = 'prices'")


def test_a_polygon_file_an_older_accumopt_dated_in_los_angeles_is_read_again_on_new_york_dates(con, tmp_path):
    p = write(tmp_path / "AAPL.json", _polygon())
    ingest_paths(con, "prices", [p], settings=NY)
    _as_an_older_accumopt_read_it_under_los_angeles(con)
    assert table(con, "SELECT min(date), max(date) FROM prices_daily") == [(date(2024, 3, 4), date(2024, 3, 7))]
    rep = ingest_paths(con, "prices", [p], settings=LA)
    assert rep.files[0].status == "replaced"
    # as if only a New York reading had happened: no row left on Mon 4 (a bar shifted a session early)
    assert table(con, "SELECT date, close FROM prices_daily ORDER BY date") == NY_ROWS
    fresh = connect(":memory:")
    ingest_paths(fresh, "prices", [p], settings=NY)
    assert table(con, "SELECT * FROM prices_daily ORDER BY date") == table(fresh, "SELECT * FROM prices_daily ORDER BY date")
    fresh.close()
    assert ingest_paths(con, "prices", [p], settings=LA).files[0].status == "skipped_identical"


def test_a_row_another_file_wrote_on_an_old_date_is_kept(con, tmp_path):
    p = write(tmp_path / "AAPL.json", _polygon())
    ingest_paths(con, "prices", [p], settings=NY)
    _as_an_older_accumopt_read_it_under_los_angeles(con)
    # a later CSV file owns Mon 4 March now
    csv = write(tmp_path / "fix.csv", "date,symbol,open,high,low,close,volume\n2024-03-04,AAPL,50,51,49,50,7\n")
    ingest_paths(con, "prices", [csv], settings=NY)
    ingest_paths(con, "prices", [p], settings=NY)
    assert table(con, "SELECT date, close, source FROM prices_daily ORDER BY date") == [
        (date(2024, 3, 4), 50.0, "fix.csv"), (date(2024, 3, 5), 105.0, "polygon"), (date(2024, 3, 6), 106.0, "polygon"),
        (date(2024, 3, 7), 107.0, "polygon"), (date(2024, 3, 8), 108.0, "polygon")]


# Trades of MSFT at 15:30 New York time (20:30 UTC) and 23:00 UTC. New York, window 09:30-16:15: the 20:30 UTC
# trades only, on Mon 11 / Tue 12. Tokyo (window 00:00-24:00): every trade, on the next day (Tue 12 / Wed 13).
TRADES = "timestamp,symbol,price,size\n" + "".join(
    f"2024-03-{d}T{h}:00:00Z,MSFT,{p},{s}\n" for d, h, p, s in
    ((11, 20, 10.0, 5), (11, 23, 10.5, 7), (12, 20, 11.0, 3), (12, 23, 10.0, 2)))
TOKYO = Settings(market_tz="Asia/Tokyo", rth_start="00:00", rth_end="24:00")


def test_a_trades_file_read_again_under_another_zone_and_window_leaves_no_old_day(con, tmp_path):
    p = write(tmp_path / "MSFT_2024-03.csv", TRADES)
    ingest_paths(con, "lit-trades", [p], settings=NY)
    assert table(con, "SELECT date FROM lit_flow_daily ORDER BY date") == [(date(2024, 3, 11),), (date(2024, 3, 12),)]
    # another file takes over Mon 11 (the day the Tokyo reading no longer covers): its row is kept
    other = write(tmp_path / "flow.csv", "date,symbol,lit_buy_volume,lit_sell_volume\n2024-03-11,MSFT,1,2\n")
    ingest_paths(con, "lit-flow", [other], settings=NY)
    rep = ingest_paths(con, "lit-trades", [p], settings=TOKYO)
    assert rep.files[0].status == "replaced"
    fresh = connect(":memory:")
    ingest_paths(fresh, "lit-flow", [other], settings=NY)
    ingest_paths(fresh, "lit-trades", [p], settings=TOKYO)
    rows = "SELECT * FROM lit_flow_daily ORDER BY date"
    assert table(con, rows) == table(fresh, rows)
    assert [(r[0], r[-1]) for r in table(con, rows)] == [
        (date(2024, 3, 11), "flow.csv"), (date(2024, 3, 12), "MSFT_2024-03.csv"), (date(2024, 3, 13), "MSFT_2024-03.csv")]
    fresh.close()
