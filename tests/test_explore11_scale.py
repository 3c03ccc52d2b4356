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


def test_rolling_zscore_runs_each_kernel_once_for_all_columns_with_each_columns_own_bits(monkeypatch):
    """A (T x N) rolling z-score is one call of pandas' mean and var kernels over the columns laid end to end,
    not one per column (DataFrame.rolling loops over the columns in Python: 20,000 symbols x 5 fields x 2
    statistics were 200,000 calls, most of a metrics build's 30 s on the real FINRA days). The values are those
    of every column rolled on its own, bit for bit: a window never reaches into the column before it and the
    kernels' running sums restart at each column's first row."""
    calls = {"roll_mean": 0, "roll_var": 0}
    for name in calls:
        real = getattr(aggregations, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(aggregations, name, counted)
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
