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


# Polygon day bars start at midnight New York time (05:00 UTC in March before the DST switch of 2024-03-10):
# New York reads them as Tue 5 .. Fri 8 March; Los Angeles (21:00 the evening before) as Mon 4 .. Thu 7
BARS = [(_ms(2024, 3, d, 5), 100.0 + d) for d in (5, 6, 7, 8)]


def _polygon(ticker: str = "AAPL") -> str:
    return json.dumps({"ticker": ticker, "results": [
        {"t": t, "o": c, "h": c + 1, "l": c - 1, "c": c, "v": 1000 + c} for t, c in BARS]})


@pytest.fixture()
def con():
    c = connect(":memory:")
    yield c
    c.close()


def test_a_polygon_file_read_again_under_another_zone_leaves_no_row_of_the_old_dates(con, tmp_path):
    p = write(tmp_path / "AAPL.json", _polygon())
    ingest_paths(con, "prices", [p], settings=NY)
    assert table(con, "SELECT min(date), max(date), count(*) FROM prices_daily") == [(date(2024, 3, 5), date(2024, 3, 8), 4)]
    rep = ingest_paths(con, "prices", [p], settings=LA)
    assert rep.files[0].status == "replaced"
    # as if only the Los Angeles reading had happened: Mon 4 .. Thu 7, the close of the bar of each
    assert table(con, "SELECT date, close FROM prices_daily ORDER BY date") == [
        (date(2024, 3, 4), 105.0), (date(2024, 3, 5), 106.0), (date(2024, 3, 6), 107.0), (date(2024, 3, 7), 108.0)]
    fresh = connect(":memory:")
    ingest_paths(fresh, "prices", [p], settings=LA)
    assert table(con, "SELECT * FROM prices_daily ORDER BY date") == table(fresh, "SELECT * FROM prices_daily ORDER BY date")
    fresh.close()
    # the same reading again changes nothing (skipped); back under New York, the New York rows only
    assert ingest_paths(con, "prices", [p], settings=LA).files[0].status == "skipped_identical"
    assert ingest_paths(con, "prices", [p], settings=NY).files[0].status == "replaced"
    assert table(con, "SELECT date, close FROM prices_daily ORDER BY date") == [
        (date(2024, 3, 5), 105.0), (date(2024, 3, 6), 106.0), (date(2024, 3, 7), 107.0), (date(2024, 3, 8), 108.0)]


def test_a_row_another_file_wrote_on_an_old_date_is_kept(con, tmp_path):
    p = write(tmp_path / "AAPL.json", _polygon())
    ingest_paths(con, "prices", [p], settings=NY)
    # a later CSV file owns Fri 8 March now
    csv = write(tmp_path / "fix.csv", "date,symbol,open,high,low,close,volume\n2024-03-08,AAPL,50,51,49,50,7\n")
    ingest_paths(con, "prices", [csv], settings=NY)
    ingest_paths(con, "prices", [p], settings=LA)
    assert table(con, "SELECT date, close, source FROM prices_daily ORDER BY date") == [
        (date(2024, 3, 4), 105.0, "polygon"), (date(2024, 3, 5), 106.0, "polygon"), (date(2024, 3, 6), 107.0, "polygon"),
        (date(2024, 3, 7), 108.0, "polygon"), (date(2024, 3, 8), 50.0, "fix.csv")]


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
