"""explore11: scale (thousands of symbols) and the real market (../shared/data/real).

Speed figures live in bench/ (never timed here): these tests pin what makes the work scale -- how many times a
kernel runs, how many batches a build makes, what a load keeps in memory -- with exact-value oracles. Tests on
real data skip cleanly when ../shared/data/real is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas._libs.window import aggregations

from optimizer.data import rolling


def _column_by_column(x: np.ndarray, window: int, mp: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: each column rolled ON ITS OWN by pandas (1-D), mean and population std."""
    mean = np.column_stack([pd.Series(x[:, j]).rolling(window, min_periods=mp).mean().to_numpy()
                            for j in range(x.shape[1])])
    std = np.column_stack([pd.Series(x[:, j]).rolling(window, min_periods=mp).std(ddof=0).to_numpy()
                           for j in range(x.shape[1])])
    return mean, std



def _count_kernel_calls(monkeypatch, module, *names: str) -> dict[str, int]:
    """Count the calls of ``module``'s functions ``names`` (pandas' rolling kernels) during the test."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return calls

def test_rolling_zscore_runs_each_kernel_once_for_all_columns_with_each_columns_own_bits(monkeypatch):
    """A (T x N) rolling z-score is one call of pandas' mean and var kernels over the columns laid end to end,
    not one per column (DataFrame.rolling loops over the columns in Python: 20,000 symbols x 5 fields x 2
    statistics were 200,000 calls, most of a metrics build's 30 s on the real FINRA days). The values are those
    of every column rolled on its own, bit for bit: a window never reaches into the column before it and the
    kernels' running sums restart at each column's first row."""
    calls = _count_kernel_calls(monkeypatch, aggregations, "roll_mean", "roll_var")
    rng = np.random.default_rng(11)
    T, N, w = 40, 25, 5
    x = rng.normal(size=(T, N)) * 10.0 ** rng.integers(-2, 7, size=(1, N))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = 7.0  # a constant column: std 0 -> NaN
    x[:12, 4] = 1e9  # a large constant run before normal values (the running sums must not leak)
    z = rolling.rolling_zscore(x, w, 3)
    assert calls == {"roll_mean": 1, "roll_var": 1}
    m = rolling.rolling_mean(x, w, 2)
    assert calls == {"roll_mean": 2, "roll_var": 1}
    mean, std = _column_by_column(x, w, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (x - mean) / std
    want[(std <= rolling.STD_EPS) | (std <= 1e-10 * np.abs(mean)) | ~np.isfinite(x) | ~np.isfinite(std)] = np.nan
    np.testing.assert_array_equal(z, want)  # bit for bit (assert_array_equal: exact, NaN == NaN)
    np.testing.assert_array_equal(m, _column_by_column(x, w, 2)[0])
    assert np.isnan(z[:, 3]).all() and np.isfinite(z).sum() > T * N // 3
    one = rolling.rolling_zscore(x[:, 0], w, 3)  # 1-D in, 1-D out
    assert one.shape == (T,)
    np.testing.assert_array_equal(one, want[:, 0])
    assert rolling.rolling_zscore(np.empty((0, 4)), w).shape == (0, 4)
    assert rolling.rolling_zscore(np.empty((6, 0)), w).shape == (6, 0)


def test_a_metrics_build_batches_symbols_by_their_rows_not_by_the_calendar(monkeypatch):
    """A store of many sparse symbols (real FINRA days years apart, delisted names) is as cheap to build as its
    rows: batches hold up to BATCH_ROWS rows COUNTED per symbol. Before, a symbol counted as every session of the
    calendar (here 252), so BATCH_ROWS = 20 made one batch per symbol (each batch re-reads the raw tables: the
    real FINRA days + prices store, 214,683 rows, ran 76 batches). Six symbols of 2 rows each are one batch, and
    the table equals a build with the default batch size."""
    import optimizer.data.metrics as metrics
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.store import connect
    from test_metrics_build import prices, same, short, table

    con = connect(":memory:")
    syms = [f"S{i}" for i in range(6)]
    prices(con, [(d, s, 10.0 + i, 1000) for i, s in enumerate(syms) for d in ("2024-01-02", "2024-12-31")])
    short(con, [("2024-12-31", s, "CNMS", 100 + i, 400, 0) for i, s in enumerate(syms)])
    build_daily_metrics(con, z_window=2, z_min_periods=1)
    want = table(con)
    staged = []
    real = metrics._stage_base
    monkeypatch.setattr(metrics, "_stage_base", lambda c, scope, m: staged.append(1) or real(c, scope, m))
    monkeypatch.setattr(metrics, "BATCH_ROWS", 20)
    s = build_daily_metrics(con, z_window=2, z_min_periods=1)
    assert len(staged) == 1 and s["rows"] == 12
    same(table(con), want)
    monkeypatch.setattr(metrics, "BATCH_ROWS", 5)  # 2 + 2 rows per batch: three batches, the same table
    staged.clear()
    build_daily_metrics(con, z_window=2, z_min_periods=1)
    assert len(staged) == 3
    same(table(con), want)
    assert want.loc[want.symbol == "S3", "return"].isna().all()  # 2024-01-02 -> 12-31: no previous SESSION close


def _wide_metrics_store(n_symbols: int, n_sessions: int):
    """A store whose daily_metrics holds n_symbols x n_sessions rows of every panel field (values from the row
    numbers, some NULL), written straight into the table; n_sessions NYSE sessions from 2024-01-02."""
    import datetime as dt

    from optimizer.data.calendar import session_days
    from optimizer.data.metrics import DAILY_METRICS_COLUMNS, _ddl
    from optimizer.data.store import connect

    con = connect(":memory:")
    con.execute(_ddl("daily_metrics", DAILY_METRICS_COLUMNS))
    days = session_days(dt.date(2024, 1, 2), dt.date(2026, 12, 31))[:n_sessions]
    con.register("_days", pd.DataFrame({"date": pd.to_datetime(days), "t": np.arange(len(days))}))
    num = [c for c, t in DAILY_METRICS_COLUMNS if t in ("DOUBLE", "BIGINT") and c not in ("date", "symbol")]
    cols = ", ".join(
        f"CASE WHEN (s * 7 + t * {k + 3}) % 11 = 0 THEN NULL ELSE CAST(1 + s * 0.25 + t * 0.0625 + {k} AS "
        f"{'BIGINT' if dict(DAILY_METRICS_COLUMNS)[c] == 'BIGINT' else 'DOUBLE'}) END AS \"{c}\""
        for k, c in enumerate(num))
    con.execute(f"INSERT INTO daily_metrics BY NAME SELECT CAST(d.date AS DATE) AS date, "
                f"'S' || lpad(CAST(s AS VARCHAR), 4, '0') AS symbol, {cols} "
                f"FROM _days d, (SELECT range AS s FROM range({n_symbols}))")
    con.unregister("_days")
    return con


def test_load_panel_streams_rows_into_the_matrices_without_a_long_frame(monkeypatch):
    """load_panel's peak memory is the panel's matrices plus one chunk of rows, not a DataFrame of every row and
    its copy (3,000 symbols x 753 sessions: peak RSS 1,833 MB for a 379 MB panel before, 976 MB after). Oracle:
    the panel equals Panel.from_frame of the whole table (same fingerprint); traced allocations (numpy and pandas
    report to tracemalloc) peak below 1.6 x the matrices' bytes (1.35 x; before: 3.5 x)."""
    import tracemalloc

    import optimizer.engine.panel as panel_mod
    from optimizer.engine.panel import Panel, load_panel
    from optimizer.data.calendar import session_days
    from optimizer.data.metrics import DAILY_METRICS_COLUMNS

    con = _wide_metrics_store(120, 250)
    monkeypatch.setattr(panel_mod, "_CHUNK_VECTORS", 1, raising=False)  # 2,048 rows a chunk: 15 chunks
    tracemalloc.start()
    try:
        p = load_panel(con, None, None, None, min_coverage=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    matrices = sum(v.nbytes for v in p.fields.values())
    assert p.shape == (250, 120) and len(p.fields) == 14 and matrices == 14 * 250 * 120 * 8
    assert peak < 1.6 * matrices, (peak, matrices)
    df = con.execute("SELECT * FROM daily_metrics").df()
    want = Panel.from_frame(df, dates=session_days(df["date"].min(), df["date"].max()))
    assert p.fingerprint() == want.fingerprint() and list(p.fields) == list(want.fields)
    assert np.isnan(p["close"]).sum() == df["close"].isna().sum() > 0
    k = [c for c, t in DAILY_METRICS_COLUMNS if t in ("DOUBLE", "BIGINT")].index("close")  # the value's formula
    assert p["close"][3, 5] == 1 + 5 * 0.25 + 3 * 0.0625 + k
    assert np.isnan(p["close"][0, 0]) and np.isnan(p["close"][11, 0])  # (s * 7 + t * (k + 3)) % 11 == 0: NULL


def test_context_and_options_indicators_roll_every_column_in_one_kernel_call(monkeypatch):
    """The (T x N) indicators of the context and options layers (sma, Bollinger position, rolling beta, options
    liquidity, activity z, lookback max) run pandas' rolling kernels once per statistic for all symbols, not once
    per column (a signal sheet of 3,000 symbols made 54,000 such calls, 6 of its 30 s). Oracle: each column's
    value computed alone (a one-column matrix), bit for bit."""
    from optimizer.engine import _indicators as ind
    from optimizer.engine import _options as opt

    calls = _count_kernel_calls(monkeypatch, aggregations, "roll_mean", "roll_var", "roll_max")
    rng = np.random.default_rng(5)
    T, N = 90, 30
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    close[rng.random(close.shape) < 0.01] = np.nan
    ret = np.diff(np.log(close), axis=0, prepend=np.nan)
    mkt = rng.normal(0, 0.01, T)
    vol = rng.integers(0, 15_000, (T, N)).astype(float)  # calls + puts around the 10,000 liquidity floor
    fns = {
        "sma": (lambda x: ind.sma(x, 20), close, {"roll_mean": 1}),
        "bollinger_position": (lambda x: ind.bollinger_position(x, 20), close, {"roll_mean": 1, "roll_var": 1}),
        "rolling_beta": (lambda x: ind.rolling_beta(x, mkt, 20), ret, {"roll_mean": 4}),
        "options_liquid": (lambda x: opt.options_liquid(x, 0.5 * x), vol, {"roll_mean": 1}),
        "activity_zscore": (lambda x: opt.activity_zscore(x), vol, {"roll_mean": 1, "roll_var": 1}),
        "lookback_max": (lambda x: opt.lookback_max(x), ret, {"roll_max": 1}),
    }
    for name, (f, x, want_calls) in fns.items():
        for k in calls:
            calls[k] = 0
        got = f(x)
        assert {k: v for k, v in calls.items() if v} == want_calls, name
        for j in range(N):
            np.testing.assert_array_equal(got[:, j], f(x[:, [j]])[:, 0], err_msg=f"{name} column {j}")
        assert (np.isfinite(got).sum() > T * N // 3) if got.dtype != bool else got.any(), name
