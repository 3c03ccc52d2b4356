"""Rolling statistics (optimizer/data/rolling.py) and daily_metrics helpers: what mutation testing (bench/mutation)
found unasserted -- hand-computed z-scores and means on tiny series, the min_periods rule and its boundaries,
the flat-window rule, 1-D vs 2-D inputs, exact one-line errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from optimizer.data.rolling import STD_EPS, rolling_mean, rolling_zscore
from optimizer.errors import ParameterError

nan = float("nan")


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


def test_rolling_zscore_by_hand():
    x = np.array([1.0, 2.0, 3.0, 5.0])
    # window 2: population std of two values is |a - b| / 2, so z = +-1 whenever they differ
    np.testing.assert_allclose(rolling_zscore(x, 2), [nan, 1.0, 1.0, 1.0])
    # window 3, min_periods 2: row 1 uses [1, 2] (z 1), row 2 [1, 2, 3] (z (3 - 2) / sqrt(2/3)), row 3 [2, 3, 5]
    z = rolling_zscore(x, 3, min_periods=2)
    m3, s3 = np.mean([2, 3, 5]), np.std([2, 3, 5])
    np.testing.assert_allclose(z, [nan, 1.0, 1.0 / math.sqrt(2.0 / 3.0), (5 - m3) / s3])
    assert rolling_zscore(x, 3).shape == (4,) and math.isnan(rolling_zscore(x, 3)[1])  # min_periods = window
    # min_periods 1: a single value has std 0 -> NaN, never 0 / 0 = a number
    assert math.isnan(rolling_zscore(x, 3, min_periods=1)[0])


def test_rolling_zscore_two_dimensional_columns_and_holes():
    x = np.array([[1.0, 10.0], [2.0, nan], [3.0, 30.0], [4.0, 50.0]])
    z = rolling_zscore(x, 2, min_periods=1)
    assert z.shape == (4, 2)
    np.testing.assert_allclose(z[:, 0], [nan, 1.0, 1.0, 1.0])
    # a NaN value has no z; the window after it holds one finite value (std 0) -> NaN; then (50 - 40) / 10
    np.testing.assert_allclose(z[:, 1], [nan, nan, nan, 1.0])


def test_rolling_zscore_flat_windows_are_nan():
    flat = np.full(5, 7.0)
    assert np.isnan(rolling_zscore(flat, 3)).all()
    # relative flatness: std <= 1e-10 * |mean| (rounding noise around a large level) is flat too
    big = 1e6 + np.array([0.0, 1e-5, 0.0, 1e-5, 0.0])
    assert np.isnan(rolling_zscore(big, 3)).all()
    # ... but a real dispersion just above it is not
    ok = 1e6 + np.array([0.0, 1e-3, 0.0, 1e-3, 0.0])
    assert np.isfinite(rolling_zscore(ok, 3)[2:]).all()
    # absolute flatness: std <= STD_EPS
    tiny = np.array([0.0, 1e-13, 0.0, 1e-13])
    assert STD_EPS == 1e-12 and np.isnan(rolling_zscore(tiny, 2)).all()
    small = np.array([0.0, 1e-9, 0.0, 1e-9])  # std 5e-10 > STD_EPS and mean 5e-10: a z of +-1
    np.testing.assert_allclose(rolling_zscore(small, 2)[1:], [1.0, -1.0, 1.0])
    # an inf value gives NaN (not +-inf or a poisoned window read as a number)
    assert math.isnan(rolling_zscore(np.array([1.0, 2.0, np.inf, 3.0]), 2)[2])


def test_rolling_mean_by_hand():
    x = np.array([1.0, nan, 3.0, 5.0])
    np.testing.assert_allclose(rolling_mean(x, 2), [nan, nan, nan, 4.0])
    np.testing.assert_allclose(rolling_mean(x, 2, min_periods=1), [1.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(rolling_mean(x, 3, min_periods=2), [nan, nan, 2.0, 4.0])
    two = rolling_mean(np.column_stack([x, 2 * x]), 2, min_periods=1)
    assert two.shape == (4, 2)
    np.testing.assert_allclose(two[:, 1], [2.0, 2.0, 6.0, 8.0])


@pytest.mark.parametrize("call, message", [
    (lambda: rolling_zscore(np.ones(3), 1), "window must be >= 2, got window=1"),
    (lambda: rolling_mean(np.ones(3), 2.0), "window must be >= 2, got window=2.0"),
    (lambda: rolling_zscore(np.ones(3), 3, min_periods=0), "min_periods must be in [1, window=3], got min_periods=0"),
    (lambda: rolling_mean(np.ones(3), 3, min_periods=4), "min_periods must be in [1, window=3], got min_periods=4"),
])
def test_rolling_refuses_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_rolling_boundaries_are_allowed():
    assert rolling_zscore(np.arange(4.0), 2, min_periods=2).shape == (4,)
    assert rolling_mean(np.arange(4.0), 4, min_periods=4)[3] == 1.5
    assert rolling_mean(np.arange(4.0), np.int64(2))[1] == 0.5  # numpy integers are integers


def test_rolling_flat_rule_is_inclusive_reads_decimals_and_stays_quiet():
    import warnings
    from decimal import Decimal
    # a window whose std is exactly STD_EPS (1e-12) is flat: NaN, not (2e-12 - 1e-12) / 1e-12 = 1
    assert np.isnan(rolling_zscore(np.array([0.0, 2e-12, 0.0]), 2)).all()
    # Decimals (a DuckDB DECIMAL column) are read as floats
    dec = [Decimal("1"), Decimal("2"), Decimal("4"), Decimal("3")]
    np.testing.assert_array_equal(rolling_zscore(dec, 2), rolling_zscore(np.array([1.0, 2.0, 4.0, 3.0]), 2))
    np.testing.assert_array_equal(rolling_mean(dec, 2), [nan, 1.5, 3.0, 3.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # flat windows (x / 0, 0 / 0) give NaN without a RuntimeWarning
        assert np.isnan(rolling_zscore(np.full(6, 7.0), 3)).all()
        assert np.isnan(rolling_zscore(np.zeros(6), 3)).all()


def test_rolling_zscore_relative_flat_rule_is_inclusive():
    # std == 1e-10 * |mean| exactly: x = (m - d, m + d) with d = 2**-30, m = d * 1e10 (all exact in binary), so
    # the window's population std is d and 1e-10 * m rounds back to d: flat (NaN), not (m + d - m) / d = 1
    d = 2.0 ** -30
    m = d * 1e10
    assert d > STD_EPS  # the absolute rule does not catch it: only the relative one, at its boundary
    assert np.isnan(rolling_zscore(np.array([m - d, m + d]), 2)[1])
    # a std 1.5 times as large is not flat: z = 1 exactly
    assert rolling_zscore(np.array([m - 1.5 * d, m + 1.5 * d]), 2)[1] == 1.0


# ------------------------------------------------------------------------------------------------ data/metrics.py
# The helpers around the build (scope, ownership, summary, options) on the tiny store of test_metrics_build.py.

import datetime as dt  # noqa: E402

import pandas as pd  # noqa: E402

import optimizer.data.metrics as metrics  # noqa: E402
from optimizer.data.metrics import build_daily_metrics, latest_metrics_date, metrics_summary  # noqa: E402
from optimizer.data.store import connect  # noqa: E402
from optimizer.errors import DataError  # noqa: E402
from test_metrics_build import isnull, same, tiny_store  # noqa: E402  (the suite's hand-built store)


def test_scope_symbols_dates_and_filters():
    s = metrics._Scope("bbb", None, None)  # one symbol as a string, not its letters
    assert s.symbols == ["bbb"] and s.table == "_dm_scope_symbols" and s.has_otc is True and s.has_splits is True
    s = metrics._Scope(["B", "A", "B", "^VIX"], "2024-02-01", dt.date(2024, 2, 9), table="t")
    assert s.symbols == ["A", "B"] and (s.start, s.end) == (dt.date(2024, 2, 1), dt.date(2024, 2, 9)) and not s.full
    assert s.source_filter() == "symbol <> '^VIX' AND symbol IN (SELECT symbol FROM t) AND date <= DATE '2024-02-09'"
    assert s.source_filter("publication_date", "sym") == ("sym <> '^VIX' AND sym IN (SELECT symbol FROM t) AND "
                                                          "publication_date <= DATE '2024-02-09'")
    assert s.source_filter(date_col="") == "symbol <> '^VIX' AND symbol IN (SELECT symbol FROM t)"
    assert s.target_filter() == ("symbol <> '^VIX' AND symbol IN (SELECT symbol FROM t) AND date >= DATE '2024-02-01' "
                                 "AND date <= DATE '2024-02-09'")
    full = metrics._Scope(None, None, None)
    assert full.full and full.symbols is None and full.source_filter() == "symbol <> '^VIX'"
    assert full.target_filter() == "symbol <> '^VIX'"
    assert not metrics._Scope(None, "2024-01-01", None).full and not metrics._Scope(None, None, "2024-01-01").full
    assert metrics._Scope(None, "2024-02-09", "2024-02-09").start == dt.date(2024, 2, 9)  # start == end is allowed
    with _raises_exactly("start must be <= end=2024-02-01, got start=datetime.date(2024, 2, 2)"):
        metrics._Scope(None, "2024-02-02", "2024-02-01")
    with _raises_exactly("start must be a date (YYYY-MM-DD), got start='soon'"):
        metrics._Scope(None, "soon", None)
    with _raises_exactly("end must be a date (YYYY-MM-DD), got end='later'"):
        metrics._Scope(None, None, "later")
    with pytest.raises(DataError, match=r"^symbols=\['\^VIX'\] leaves no symbol to build \(\^VIX is market context "
                                        r"only\)$"):
        metrics._Scope(["^VIX"], None, None)


def test_summary_shares_of_every_source_and_foreign_tables():
    con = tiny_store()
    build_daily_metrics(con, z_window=3)
    s = metrics_summary(con)
    sh = s["share"]
    assert set(sh) == {"short", "cnms", "facility_sum", "prices", "lit", "lit_imbalance", "otc", "otc_rate", "options"}
    n = s["rows"]
    df = con.execute("SELECT * FROM daily_metrics").df()
    assert sh["lit_imbalance"] == pytest.approx(df["lit_flow_imbalance"].notna().sum() / n)
    assert sh["otc"] == pytest.approx(df["otc_week_start"].notna().sum() / n) and 0 < sh["otc"] < 1
    assert sh["otc_rate"] == pytest.approx(df["otc_participation_rate"].notna().sum() / n) and 0 < sh["otc_rate"] < sh["otc"]
    assert s["last_date"] == dt.date(2024, 2, 14) and isinstance(s["last_date"], dt.date)
    assert s["first_date"] == dt.date(2024, 1, 22) and type(s["first_date"]) is dt.date
    # no options table: no options share
    con.execute("DROP TABLE options_premium_daily")
    assert "options" not in metrics_summary(con)["share"]
    # a foreign table: only the shares its columns allow; an empty one: no dates, shares 0
    f = connect(":memory:")
    f.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, close DOUBLE, provenance VARCHAR, "
              "otc_week_start DATE)")
    f.execute("INSERT INTO daily_metrics VALUES ('2024-01-02', 'A', 1.0, 'CNMS', NULL), "
              "('2024-01-03', 'A', NULL, 'FACILITY_SUM:FNSQ', '2024-01-01'), ('2024-01-03', 'B', 2.0, NULL, NULL)")
    s = metrics_summary(f)
    assert s["owner"] == "foreign" and (s["rows"], s["symbols"], s["sessions"]) == (3, 2, 2)
    assert s["share"] == pytest.approx({"cnms": 1 / 3, "facility_sum": 1 / 3, "prices": 2 / 3, "otc": 1 / 3})
    f.execute("DELETE FROM daily_metrics")
    s = metrics_summary(f)
    assert s["rows"] == 0 and s["first_date"] is None and s["last_date"] is None
    assert s["share"] == {"cnms": 0.0, "facility_sum": 0.0, "prices": 0.0, "otc": 0.0}
    assert latest_metrics_date(f) is None
    f.execute("INSERT INTO daily_metrics VALUES ('2024-01-05', 'A', 1.0, 'CNMS', NULL)")
    assert latest_metrics_date(f) == dt.date(2024, 1, 5) and type(latest_metrics_date(f)) is dt.date
    with pytest.raises(DataError, match=r"^the store has no daily_metrics table; run `accumopt metrics build` first$"):
        metrics_summary(connect(":memory:"))


def test_ownership_refusal_message_and_forced_drop_of_views():
    con = tiny_store()
    assert metrics.owns_daily_metrics(con) is False
    con.execute("CREATE VIEW daily_metrics AS SELECT 1 AS x")
    con.execute("CREATE TABLE options_premium_summary (symbol VARCHAR)")
    assert metrics._table_type(con, "daily_metrics") == "VIEW"
    assert metrics._table_type(con, "options_premium_summary") == "BASE TABLE"
    assert metrics._table_type(con, "nothing") is None
    with pytest.raises(DataError) as e:
        build_daily_metrics(con)
    assert str(e.value) == (
        "the database already holds daily_metrics, options_premium_summary not built by accumopt (no "
        "'daily_metrics_owner' row in accumopt_meta; e.g. a darkpool-pipeline database): the optimizer only reads "
        "that table and will not overwrite it. Build metrics in a separate database, or pass force=True (--force) "
        "to replace it")
    build_daily_metrics(con, force=True)  # the view and the table are dropped, ours are built
    assert metrics._table_type(con, "daily_metrics") == "BASE TABLE" and metrics.owns_daily_metrics(con)
    assert con.execute("SELECT value FROM accumopt_meta WHERE key = 'daily_metrics_owner'").fetchall() == [("accumopt",)]
    # a meta table whose owner row says something else is not ours
    con.execute("UPDATE accumopt_meta SET value = 'other' WHERE key = 'daily_metrics_owner'")
    assert metrics.owns_daily_metrics(con) is False
    assert metrics._columns_of(con, "options_premium_summary") == [
        "symbol", "avg_daily_option_volume", "first_date", "last_date", "days"]
    assert metrics._columns_of(con, "nothing") == []


def test_scoped_build_refuses_a_table_of_another_layout():
    con = tiny_store()
    build_daily_metrics(con, z_window=3)
    con.execute("ALTER TABLE daily_metrics DROP COLUMN z_min_periods")
    with pytest.raises(DataError) as e:
        build_daily_metrics(con, z_window=3, symbols=["AAA"])
    msg = str(e.value)
    assert msg.startswith("table daily_metrics has columns ['date', 'symbol', ")
    assert msg.endswith("'z_window', 'z_min_periods']: rebuild it in full (no symbols/start/end) to change its layout")
    assert "'z_window'], this accumopt writes ['date'" in msg


def test_split_adjusts_raw_share_counts_before_each_ex_date():
    """AAA splits 2-for-1 on 2024-02-09 and 3-for-1 on 2024-02-13: raw FINRA / lit / OTC share counts dated before
    an ex-date are multiplied by the product of that and every later ratio (6 before 02-09, 3 until 02-12, 1 after);
    ratios of raw counts (short ratio, lit imbalance) do not move. BBB has no split."""
    from test_metrics_build import AAA_SHORT, AAA_TOTAL, FEB, row, table
    con = tiny_store()
    con.execute("INSERT INTO splits VALUES ('AAA', '2024-02-09', 1, 2, 2.0, 't'), ('AAA', '2024-02-13', 1, 3, 3.0, 't')")
    build_daily_metrics(con, z_window=3)
    df = table(con)
    plain = tiny_store()
    build_daily_metrics(plain, z_window=3)
    ref = table(plain)
    factor = [6, 6, 6, 6, 3, 3, 1, 1]
    lit_rows = {FEB[0]: (6000, 4000), FEB[1]: (3000, 2000), FEB[2]: (5000, 5000), FEB[3]: (8000, 2000),
                FEB[4]: (7000, 3000), FEB[5]: (9000, 1000), FEB[6]: (4000, 6000)}
    for d, f, s, t in zip(FEB, factor, AAA_SHORT, AAA_TOTAL):
        r, p = row(df, d, "AAA"), row(ref, d, "AAA")
        assert (r.short_volume, r.total_volume, r.short_sell_volume) == (s * f, t * f, (t - s) * f), d
        for c in ("short_buy_sell_ratio", "short_share", "lit_flow_imbalance"):
            assert r[c] == p[c] or (isnull(r[c]) and isnull(p[c])), (d, c)
        if d in lit_rows:
            assert (r.lit_buy_volume, r.lit_sell_volume) == (lit_rows[d][0] * f, lit_rows[d][1] * f), d
    # OTC weeks are adjusted by their week start: 2024-02-05 (450 raw, factor 6), visible from 2024-02-12
    for d in FEB[5:]:
        r = row(df, d, "AAA")
        assert r.otc_weekly_volume == 2700 and r.otc_participation_rate == pytest.approx(2700 / 1500)
    assert row(df, FEB[2], "AAA").otc_weekly_volume == 6000  # the 2024-01-29 week (1000 raw), visible 02-07
    same(df[df.symbol == "BBB"].reset_index(drop=True), ref[ref.symbol == "BBB"].reset_index(drop=True))


def _batches(con, scope):
    metrics._stage_scope(con, scope)  # as the build does first: a scope with symbols reads them from its table
    return metrics._symbol_batches(con, scope)


def test_symbol_batches_by_rows_and_a_batched_build_equals_one_batch(monkeypatch):
    from test_metrics_build import table
    con = tiny_store()
    scope = metrics._Scope(None, None, None)
    # a symbol's rows are its dates in prices or FINRA (counted, not the calendar's 17 sessions): AAA 8, BBB 13
    assert _batches(con, scope) == [["AAA", "BBB"]]
    monkeypatch.setattr(metrics, "BATCH_ROWS", 8 + 13)  # exactly the two symbols' rows: one batch
    assert _batches(con, scope) == [["AAA", "BBB"]]
    # CCC has no row: it adds none (the build writes nothing for it)
    assert _batches(con, metrics._Scope(["BBB", "AAA", "CCC"], None, None)) == [["AAA", "BBB", "CCC"]]
    monkeypatch.setattr(metrics, "BATCH_ROWS", 8 + 13 - 1)
    assert _batches(con, scope) == [["AAA"], ["BBB"]]
    monkeypatch.setattr(metrics, "BATCH_ROWS", 1)  # fewer rows than one symbol's: one symbol per batch
    assert _batches(con, scope) == [["AAA"], ["BBB"]]
    build_daily_metrics(con, z_window=3)
    batched = table(con)
    monkeypatch.setattr(metrics, "BATCH_ROWS", 400_000)
    build_daily_metrics(con, z_window=3)
    same(batched, table(con))


def test_zscores_by_symbol_blocks_gaps_and_empty_inputs(monkeypatch):
    """Rows given in any order, symbols 0, 1 and 3 (2 has no row: an empty block), a hole in symbol 1's sessions
    (counted, never bridged): each symbol's z is the plain rolling z of its own session column, whatever the
    block width (here one symbol per block, then all in one)."""
    rng = np.random.default_rng(4)
    sym = np.array([3, 0, 1, 0, 3, 1, 0, 1, 3, 0, 1, 3, 0, 1, 3])
    pos = np.array([0, 0, 0, 1, 1, 1, 2, 3, 2, 3, 4, 3, 4, 5, 4])
    x = rng.normal(size=sym.size)
    want = np.full(sym.size, np.nan)
    for s in (0, 1, 3):
        col = np.full(6, np.nan)
        rows = np.flatnonzero(sym == s)
        col[pos[rows]] = x[rows]
        want[rows] = rolling_zscore(col, 2)[pos[rows]]
    assert np.isfinite(want).sum() >= 8
    allnan = np.full(sym.size, np.nan)
    for cells in (6, 4_000_000):  # T = 6 sessions: width 1, one symbol per block; then one block
        monkeypatch.setattr(metrics, "Z_BLOCK_CELLS", cells)
        got = metrics.zscores_by_symbol({"x": x, "none": allnan}, sym.tolist(), pos.tolist(), 2, None)
        np.testing.assert_array_equal(got["x"], want)
        assert got["none"].dtype == np.float64 and np.isnan(got["none"]).all()
    one = metrics.zscores_by_symbol({"x": [5.0]}, [0], [0], 2, 1)
    assert one["x"].dtype == np.float64 and np.isnan(one["x"]).all() and one["x"].shape == (1,)
    empty = metrics.zscores_by_symbol({"x": [], "y": []}, [], [], 2, None)
    assert list(empty) == ["x", "y"] and all(v.shape == (0,) for v in empty.values())


def test_build_defaults_and_refusals(capsys):
    from test_metrics_build import FEB, row, table
    con = tiny_store()
    s = build_daily_metrics(con)  # defaults: z_window 20 (min periods 20), min_lit_volume 10000, quiet
    assert (s["z_window"], s["z_min_periods"]) == (20, 20) and capsys.readouterr().err == ""
    df = table(con)
    assert set(df["z_window"]) == {20} and set(df["z_min_periods"]) == {20}
    assert row(df, FEB[2], "AAA").lit_flow_imbalance == 0.0  # 5000 + 5000 = exactly the minimum lit volume
    assert isnull(row(df, FEB[1], "AAA").lit_flow_imbalance)  # 3000 + 2000 < 10000
    assert build_daily_metrics(con, z_window=2, z_min_periods=1)["z_min_periods"] == 1  # 1 is allowed
    build_daily_metrics(con, z_window=2, progress=True)
    assert "[metrics" in capsys.readouterr().err
    with _raises_exactly("z_window must be an integer in [2, 252], got z_window=1"):
        build_daily_metrics(con, z_window=1)
    with _raises_exactly("z_min_periods must be in [1, z_window=3], got z_min_periods=0"):
        build_daily_metrics(con, z_window=3, z_min_periods=0)
    with _raises_exactly("min_lit_volume must be >= 0, got min_lit_volume=-1"):
        build_daily_metrics(con, min_lit_volume=-1)


def test_build_of_an_empty_store_writes_an_empty_table():
    # no price and no FINRA row: no session, one empty batch, an empty daily_metrics of the full layout
    con = connect(":memory:")
    s = build_daily_metrics(con, z_window=3)
    assert (s["rows"], s["symbols"], s["sessions"], s["first_date"], s["last_date"]) == (0, 0, 0, None, None)
    assert metrics._columns_of(con, "daily_metrics") == [c for c, _ in metrics.DAILY_METRICS_COLUMNS]
    assert con.execute("SELECT count(*) FROM daily_metrics").fetchone() == (0,)
    assert latest_metrics_date(con) is None


def test_symbol_batches_count_the_rows_up_to_the_scopes_end(monkeypatch):
    # dated <= end (2024-02-05): AAA 1 row, BBB 6; a start keeps the history before it (counted)
    con = tiny_store()
    scope = metrics._Scope(["AAA", "BBB"], None, "2024-02-05")
    monkeypatch.setattr(metrics, "BATCH_ROWS", 7)
    assert _batches(con, scope) == [["AAA", "BBB"]]
    assert _batches(con, metrics._Scope(["AAA", "BBB"], "2024-02-05", "2024-02-05")) == [["AAA", "BBB"]]
    monkeypatch.setattr(metrics, "BATCH_ROWS", 6)
    assert _batches(con, scope) == [["AAA"], ["BBB"]]
    monkeypatch.setattr(metrics, "BATCH_ROWS", 1)
    assert _batches(con, metrics._Scope(["AAA"], None, "2024-02-05")) == [["AAA"]]


def test_builds_leave_no_frame_or_temp_table_behind():
    # the pandas frames registered for DuckDB and the staging tables of a scoped build are dropped
    import duckdb
    con = tiny_store()
    before = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    build_daily_metrics(con, z_window=3, symbols=["AAA"], start="2024-02-07")
    after = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert after - before == {"daily_metrics", "options_premium_daily", "options_premium_summary", "accumopt_meta"}
    for name in ("_dm_scope_frame", "_dm_sessions_frame", "_dm_z_frame", "_dm_base", "_dm_sessions",
                 "_dm_scope_symbols", "_dm_batch_symbols"):
        with pytest.raises(duckdb.CatalogException):
            con.execute(f"SELECT * FROM {name}")


def test_end_bounds_the_rows_a_build_writes_and_reports():
    from test_metrics_build import FEB, table
    con = tiny_store()
    s = build_daily_metrics(con, z_window=3, end=FEB[3])
    df = table(con)
    assert s["last_date"] == dt.date(2024, 2, 8) and df["date"].max() == pd.Timestamp(FEB[3])
    assert s["rows"] == len(df) == 4 + 5 + 4 and s["scoped"] is True


def test_a_batched_scoped_build_equals_the_full_build_in_its_scope(monkeypatch):
    # BATCH_ROWS = 1: one batch per symbol, each with the build's start and end and its own (dropped) symbol table
    import duckdb
    from test_metrics_build import FEB, table
    ref = tiny_store()
    build_daily_metrics(ref, z_window=3)
    lo, hi = pd.Timestamp(FEB[2]), pd.Timestamp(FEB[5])
    want = table(ref)
    want = want[(want.date >= lo) & (want.date <= hi)].reset_index(drop=True)
    want_o = table(ref, "options_premium_daily")
    want_o = want_o[(want_o.date >= lo) & (want_o.date <= hi)].reset_index(drop=True)
    con = tiny_store()
    monkeypatch.setattr(metrics, "BATCH_ROWS", 1)
    s = build_daily_metrics(con, z_window=3, symbols=["BBB", "AAA"], start=FEB[2], end=FEB[5])
    same(table(con), want)
    same(table(con, "options_premium_daily"), want_o)
    assert len(want_o) == 1 and (s["rows"], s["symbols"], s["sessions"], s["options_rows"]) == (8, 2, 4, 1)
    assert (s["first_date"], s["last_date"]) == (dt.date(2024, 2, 7), dt.date(2024, 2, 12))
    tables = "SELECT table_name FROM information_schema.tables"
    assert sorted(con.execute(tables).fetchall()) == sorted(ref.execute(tables).fetchall())  # no staging table left
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM _dm_batch_symbols")


def test_min_lit_volume_zero_is_allowed_and_the_progress_clock_is_the_builds(monkeypatch, capsys):
    from test_metrics_build import FEB, row, table

    class Clock:  # a fake perf_counter: 1000.3337 s at the start, 0.3337 s more at each later reading
        t = 1000.0

        @classmethod
        def perf_counter(cls):
            cls.t += 0.3337
            return cls.t

    con = tiny_store()
    monkeypatch.setattr(metrics, "time", Clock)
    s = build_daily_metrics(con, z_window=3, min_lit_volume=0, progress=True)
    assert row(table(con), FEB[1], "AAA").lit_flow_imbalance == pytest.approx(0.2)  # 5000 lit shares: enough
    assert capsys.readouterr().err.splitlines() == [
        "[metrics   0.33s] batch 1/1: 21 rows joined, z-scores computed, 21 daily_metrics rows so far",
        "[metrics   0.67s] options_premium_daily: 3 rows written"]
    assert s["seconds"] == 1.001  # 3 x 0.3337 to the millisecond


def test_zscores_by_symbol_reads_float_indices_as_integers():
    # symbol indices and positions that arrive as floats (a DOUBLE column) address the same grid cells
    sym = np.array([1, 0, 1, 0, 1, 0])
    pos = np.array([0, 0, 1, 1, 2, 2])
    x = np.array([1.0, 5.0, 2.0, 4.0, 4.0, 4.0])
    got = metrics.zscores_by_symbol({"x": x}, sym.astype(float), pos.astype(float), 2, None)["x"]
    np.testing.assert_array_equal(got, metrics.zscores_by_symbol({"x": x}, sym, pos, 2, None)["x"])
    np.testing.assert_array_equal(got, [nan, nan, 1.0, -1.0, 1.0, nan])  # symbol 0: 5, 4, then flat 4, 4


def test_zscores_by_symbol_reads_decimals_and_missing_values_as_floats():
    # values from a DECIMAL column (Decimal objects) or with None for a missing value: the floats' z-scores
    from decimal import Decimal
    sym, pos = [0, 0, 0, 0], [0, 1, 2, 3]
    want = metrics.zscores_by_symbol({"x": np.array([1.0, 3.0, nan, 2.0])}, sym, pos, 2, 1)["x"]
    got = metrics.zscores_by_symbol({"x": [Decimal("1"), Decimal("3"), None, Decimal("2")]}, sym, pos, 2, 1)["x"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, [nan, 1.0, nan, nan])
