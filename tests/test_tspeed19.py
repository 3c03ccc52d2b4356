"""tspeed19: a panel load made cheaper without changing what it loads.

``store.table_columns`` reads DuckDB's ``duckdb_columns()`` instead of the ``information_schema.columns`` view (what
every panel load asked four times); ``Panel._from_chunks`` takes plain numeric and date columns as they come instead
of through ``pd.to_numeric`` / ``pd.to_datetime``; ``coverage.source_coverage`` takes an array of days as it is.
Each is compared here with the path it replaces.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from optimizer.data.coverage import source_coverage
from optimizer.data.store import table_columns
from optimizer.engine.panel import Panel, load_panel


def _info_schema(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    """The reading table_columns replaces."""
    return {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? AND "
                                      "table_schema = 'main'", [name]).fetchall()}


def test_table_columns_lists_what_information_schema_lists():
    con = duckdb.connect()
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, close DOUBLE)")
    con.execute("CREATE VIEW prices_daily AS SELECT date, symbol, close AS open FROM daily_metrics")
    con.execute("CREATE TEMP TABLE scratch (z INTEGER)")
    con.execute("ATTACH ':memory:' AS other")
    con.execute("CREATE TABLE other.daily_metrics (extra DOUBLE)")  # another database's table of the same name
    con.execute("CREATE SCHEMA side")
    con.execute("CREATE TABLE side.options_premium_daily (x INTEGER)")  # not in a schema main
    names = ["daily_metrics", "prices_daily", "scratch", "options_premium_daily", "nothing", "duckdb_columns",
             "duckdb_tables", "DAILY_METRICS"]
    got = {n: table_columns(con, n) for n in names}
    assert got == {n: _info_schema(con, n) for n in names}
    assert got["daily_metrics"] == {"date", "symbol", "close", "extra"}
    assert got["prices_daily"] == {"date", "symbol", "open"}
    assert got["scratch"] == {"z"}
    assert got["options_premium_daily"] == got["nothing"] == got["duckdb_columns"] == set()


def test_panel_from_long_frames_reads_numbers_and_dates_as_the_pandas_path_does():
    """A chunk's plain float, integer (with and without a NULL), nullable, text and boolean columns, and dates
    with a time of day: the matrices equal those of pd.to_numeric / pd.to_datetime(...).normalize()."""
    dates = np.array(["1969-12-31", "2024-02-29", "2024-03-01"], dtype="datetime64[D]")
    frame = pd.DataFrame({
        "date": np.array(["1969-12-31T23:00", "2024-02-29T23:59:59.999999", "2024-03-01", "2024-03-01"],
                         dtype="datetime64[us]"),
        "symbol": ["AAA", "AAA", "AAA", "BBB"],
        "open": [1.5, np.nan, -0.0, 1e300],
        "volume": np.array([2**53 + 1, 3, -4, 0], dtype=np.int64),  # beyond 2**53: the same rounding
        "short_buy_volume": pd.array([1, None, 3, 4], dtype="Int64"),
        "lit_buy_volume": np.array([1, 2, 3, 4], dtype=np.uint32),
        "confidence": ["0.5", "x", None, "1e3"],
        "close": [True, False, True, False],
    })
    panel = Panel._from_chunks([frame.iloc[:2], frame.iloc[2:]], dates, ("AAA", "BBB"),
                               ["open", "volume", "short_buy_volume", "lit_buy_volume", "confidence", "close"])
    day = pd.to_datetime(frame["date"]).dt.normalize().to_numpy(dtype="datetime64[D]")
    ti, si = np.searchsorted(dates, day), np.array([0, 0, 0, 1])
    assert list(ti) == [0, 1, 2, 2]
    for c in ("open", "volume", "short_buy_volume", "lit_buy_volume", "confidence", "close"):
        want = np.full((3, 2), np.nan)
        want[ti, si] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        assert panel[c].tobytes() == want.tobytes(), c
    assert panel["volume"][0, 0] == float(2**53 + 1) and np.isnan(panel["short_buy_volume"][1, 0])
    assert panel["confidence"][2, 1] == 1000.0 and np.isnan(panel["confidence"][1, 0])


def test_source_coverage_of_an_array_of_days_equals_that_of_its_dates():
    days = np.array(["2024-01-05", "2024-01-02", "2024-01-05", "NaT", "2024-01-09", "2024-01-13"],
                    dtype="datetime64[D]")  # unsorted, a repeat, a NaT, a Saturday (off calendar)
    as_dates = [None if np.isnat(d) else pd.Timestamp(d).date() for d in days]
    span = (dt.date(2024, 1, 2), dt.date(2024, 1, 12))
    assert source_coverage("x", days, *span) == source_coverage("x", as_dates, *span)
    known = ~np.isnat(days)  # its own span (no start or end given): of the dates it holds
    assert source_coverage("x", days[known]) == source_coverage("x", [d for d in as_dates if d is not None])
    got = source_coverage("x", days[[1, 0, 4]], dt.date(2024, 1, 2), dt.date(2024, 1, 9))
    assert (got.sessions, got.expected, [(g.first, g.last, g.sessions) for g in got.gaps]) == (
        3, 6, [(dt.date(2024, 1, 3), dt.date(2024, 1, 4), 2), (dt.date(2024, 1, 8), dt.date(2024, 1, 8), 1)])


@pytest.fixture(scope="module")
def _planted(synth_db):
    con = duckdb.connect(str(synth_db), read_only=True)
    yield con
    con.close()


def test_planted_panel_equals_the_pandas_reading_of_its_rows(_planted):
    """The planted store's panel, field by field, against daily_metrics read whole through pandas."""
    panel = load_panel(_planted, ["AAPL", "MSFT", "SPY"], "2023-03-01", "2023-06-30")
    rows = _planted.execute("SELECT * FROM daily_metrics WHERE symbol IN ('AAPL', 'MSFT', 'SPY') AND date BETWEEN "
                            "DATE '2023-03-01' AND DATE '2023-06-30'").df()
    assert panel.symbols == ("AAPL", "MSFT", "SPY") and len(panel.dates) == rows["date"].nunique()
    for name in ("open", "close", "volume", "short_buy_volume", "short_buy_sell_ratio", "confidence"):
        wide = rows.pivot(index="date", columns="symbol", values=name).reindex(columns=list(panel.symbols))
        want = pd.to_numeric(wide.stack(future_stack=True), errors="coerce").unstack().to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(panel[name], want, err_msg=name)


def test_a_one_file_ingest_leaves_duckdb_threads_alone(tmp_path, monkeypatch):
    """A one-file call has one batch, staged then written, nothing beside either: DuckDB's threads are not set to 1
    and back for it (~5-8 ms of CPU per call); a call of several files still runs its writes at threads = 1."""
    import optimizer.data.ingest as ingest
    from _ingest_helpers import finra_text, write

    from optimizer.data.store import connect

    files = [write(tmp_path / f"CNMSshvol2020010{d}.txt", finra_text([f"2020010{d}|AAPL|10|0|20|Q"])) for d in (2, 3, 6)]
    seen: list[int] = []
    write_one = ingest._write

    def spy(ctx, *a, **k):
        seen.append(ctx.con.execute("SELECT current_setting('threads')").fetchone()[0])
        return write_one(ctx, *a, **k)

    monkeypatch.setattr(ingest, "_write", spy)
    con = connect(":memory:")
    con.execute("SET threads = 3")
    assert ingest.ingest_paths(con, "finra-short", [files[0]]).exit_code == 0
    assert seen == [3]
    seen.clear()
    assert ingest.ingest_paths(con, "finra-short", files[1:]).exit_code == 0
    assert seen == [1, 1] and con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    assert con.execute("SELECT date, short_volume FROM finra_short_daily ORDER BY 1").fetchall() == [
        (dt.date(2020, 1, 2), 10), (dt.date(2020, 1, 3), 10), (dt.date(2020, 1, 6), 10)]
