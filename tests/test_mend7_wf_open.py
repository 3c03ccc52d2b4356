"""The walk-forward equity table's ``n_open`` (``oos_equity.parquet``) counts the positions the account holds that
day, a trade a window left open at its data end included.

Found by an audit: since 48e0d9b the account (``oos_return``) and its benchmark hold a trade a window left open at
its data end, but ``n_open`` was the daily excess series' count of CLOSED trades (``DailyExcess.n_open``), so the
last rows showed 0 positions beside a nonzero return from a trade still held, and the equity bootstrap, whose
guard reads ``n_open`` ("the account held a position"), was skipped for an account that held only such trades.

Oracles: hand tables (entry to exit rows written out)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

import optimizer.validate.walkforward as wfmod
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import Trades
from optimizer.study.splits import Window
from optimizer.validate.stats import daily_excess


def _i(v):
    return np.asarray(v, dtype=np.int64)


def _panel(close: np.ndarray) -> Panel:
    return Panel(dates=pd.bdate_range("2024-01-01", periods=close.shape[0]).to_numpy(),
                 symbols=tuple(f"S{k}" for k in range(close.shape[1])), fields={"close": close, "open": close.copy()})


def test_n_open_counts_the_positions_held_open_at_end_trades_included():
    # A: symbol 0, rows 1..3, closed. C: symbol 1, rows 2..4, left open at its window's data end (row 4, the
    # series' last row). Rows 1..4: A | A C | A C | C -> 1, 2, 2, 1 (before: 1, 1, 1, 0 beside C's return on row 4).
    close = np.array([[10.0, 20.0], [11.0, 20.0], [11.0, 21.0], [11.5, 22.0], [12.0, 23.0]])
    p = _panel(close)
    tr = Trades(_i([0, 1]), _i([0, 1]), _i([1, 2]), _i([3, 4]), np.array([10.0, 20.0]), np.array([11.0, 23.0]),
                _i([0, 8]), np.zeros(2), cost=0.0)
    assert tr.closed.tolist() == [True, False]
    daily = daily_excess(tr, np.array([0.04]), close, 1, 5)
    eq = wfmod._equity(p, tr, daily, np.array([0.09]))
    np.testing.assert_array_equal(eq["n_open"], [1, 2, 2, 1])
    assert eq["oos_return"].iloc[-1] == 23.0 / 22.0 - 1  # C's return on the row it alone is held
    assert ((eq["oos_return"] != 0) <= (eq["n_open"] > 0)).all()
    assert daily.n_open.tolist() == [1, 1, 1, 0]  # the verdict's series still counts its closed trades


def test_an_open_trade_left_at_a_window_end_before_the_series_end_is_counted_to_its_exit_row():
    # A window tests rows [1, 4) with data end 5: C (symbol 1) entered at row 2 is left open at row 4 (its
    # exit_idx); the account holds it to that row and then no more (_account_trades). B (symbol 0, next window)
    # closed, rows 6..8. Series rows 1..8 (the windows tile: every row is a day): - C C C - B B B.
    close = np.array([[10.0, 20.0], [10.0, 20.0], [10.0, 21.0], [10.0, 22.0], [10.0, 23.0], [10.0, 24.0],
                      [11.0, 25.0], [12.0, 26.0], [13.0, 27.0], [14.0, 28.0]])
    p = _panel(close)
    tr = Trades(_i([1, 0]), _i([1, 5]), _i([2, 6]), _i([4, 8]), np.array([20.0, 11.0]), np.array([23.0, 13.0]),
                _i([8, 0]), np.zeros(2), cost=0.0)
    assert tr.open_at_end.tolist() == [True, False]
    res = [SimpleNamespace(window=Window(k, 0, 1, a, b)) for k, (a, b) in enumerate([(1, 5), (5, 9)])]
    daily = wfmod._daily(p, res, tr, np.array([0.05]))
    assert (daily.start, daily.stop, daily.rows) == (1, 9, None)
    eq = wfmod._equity(p, tr, daily, np.array([0.0]))
    np.testing.assert_array_equal(eq["n_open"], [0, 1, 1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(eq["oos_return"] != 0, [False, True, True, True, False, False, True, True])


def test_the_equity_bootstrap_runs_for_an_account_that_held_only_trades_left_open():
    # One symbol; each of three windows (test 4 rows, data end = test end) leaves its one trade open at its end:
    # the account holds a position on 12 of 12 days and no trade ever closes. The bootstrap's guard ("a position
    # held on some day") read the closed-trade count, 0 everywhere, and skipped it.
    close = 10.0 * np.cumprod(1 + np.array([0.0, 0.01, -0.02, 0.015, 0.004, 0.03, -0.01, 0.005, 0.02, -0.005, 0.012,
                                            0.007, -0.03, 0.01]))[:, None]
    p = _panel(close)
    ent, ext = _i([1, 5, 9]), _i([4, 8, 12])
    tr = Trades(_i([0, 0, 0]), ent - 1, ent, ext, close[ent, 0], close[ext, 0], _i([8, 8, 8]), np.zeros(3), cost=0.0)
    assert not tr.closed.any()
    res = [SimpleNamespace(window=Window(k, 0, 1, a, a + 4)) for k, a in enumerate([1, 5, 9])]
    daily = wfmod._daily(p, res, tr, np.zeros(0))
    assert (daily.start, daily.stop, daily.n_days) == (1, 13, 12) and not daily.n_open.any()
    eq = wfmod._equity(p, tr, daily, np.zeros(3))
    np.testing.assert_array_equal(eq["n_open"], np.ones(12))
    assert (eq["oos_return"] != 0).sum() >= 9
    got = wfmod._equity_bootstrap(eq)
    assert got is not None and got["n_days"] == 12
