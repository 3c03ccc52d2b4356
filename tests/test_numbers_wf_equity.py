"""The walk-forward's equity table (`oos_equity.parquet`, the report's three curves) sets the account against the
matched random-entry benchmark OF THE SAME POSITIONS.

Found by the explore5 audit (independent recomputation of the demo's walk-forward from the store's prices): the
account (`oos_return`) holds every stitched trade, including those a window left open at its data end (test end +
purge, or the reserve's start for the last window), while `bench_return` averaged the benchmark of the CLOSED trades
only, over the closed trades only. On the 29 of 278 days the demo's account held such a position, the excess was
"mean return over N positions minus mean benchmark over the N - k closed ones": the excess curve ended at 1.843
where the account against its own positions' benchmark ends at 1.939 (independent recomputation, each open trade
benchmarked by its window's random entries for the hold the account kept it). The verdict's series (closed trades,
`daily_excess`) was not affected.

Oracles: hand tables; the benchmark expectation written out from its definition (docs/ENGINE.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.engine.metrics import BenchmarkCache
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import Trades
from optimizer.study.splits import Window
from optimizer.validate.stats import daily_excess


def _i(v):
    return np.asarray(v, dtype=np.int64)


def _panel(close: np.ndarray) -> Panel:
    return Panel(dates=pd.bdate_range("2024-01-01", periods=close.shape[0]).to_numpy(),
                 symbols=tuple(f"S{k}" for k in range(close.shape[1])), fields={"close": close, "open": close.copy()})


def _hand_case(weight=None, absolute=False):
    # A: symbol 0, rows 1..3, closed, net 0.10, excess 0.04 -> benchmark 0.06 = 0.02 a row.
    # C: symbol 1, rows 2..4, left open at its window's data end (row 4 = the series' last row), benchmark 0.09
    #    given = 0.03 a row.
    close = np.array([[10.0, 20.0], [11.0, 20.0], [11.0, 21.0], [11.5, 22.0], [12.0, 23.0]])
    p = _panel(close)
    tr = Trades(_i([0, 1]), _i([0, 1]), _i([1, 2]), _i([3, 4]), np.array([10.0, 20.0]),
                np.array([10.0 * 1.10, 23.0]), _i([0, 8]), np.zeros(2), cost=0.0,
                weight=None if weight is None else np.asarray(weight, dtype=float), absolute=absolute)
    assert tr.closed.tolist() == [True, False] and tr.net_ret[0] == pytest.approx(0.10)
    daily = daily_excess(tr, np.array([0.04]), close, 1, 5)
    return p, tr, daily


def test_the_benchmark_holds_the_positions_the_account_holds():
    p, tr, daily = _hand_case()
    eq = wfmod._equity(p, tr, daily, np.array([0.09]))
    np.testing.assert_allclose(eq["bench_return"], [0.02, 0.025, 0.025, 0.03], rtol=0, atol=1e-15)
    # the account: A's and C's segments averaged over both while both are held (C marked at its closes)
    a = [11.0 / 10.0 - 1, 0.0, 11.0 / 11.0 - 1]
    c = [0.0, 21.0 / 20.0 - 1, 22.0 / 21.0 - 1, 23.0 / 22.0 - 1]
    np.testing.assert_allclose(eq["oos_return"], [a[0], (a[1] + c[1]) / 2, (a[2] + c[2]) / 2, c[3]], rtol=0,
                               atol=1e-15)
    np.testing.assert_allclose(eq["excess_return"], eq["oos_return"] - eq["bench_return"], rtol=0, atol=1e-15)


def test_sized_accounts_weigh_the_open_positions_benchmark_as_their_return():
    p, tr, daily = _hand_case(weight=[1.0, 3.0])  # relative (atr-like) weights: row 2-3 (1*0.02 + 3*0.03) / 4
    eq = wfmod._equity(p, tr, daily, np.array([0.09]))
    np.testing.assert_allclose(eq["bench_return"], [0.02, 0.0275, 0.0275, 0.03], rtol=0, atol=1e-15)
    p, tr, daily = _hand_case(weight=[0.5, 0.25], absolute=True)  # fractions of equity, the rest cash
    eq = wfmod._equity(p, tr, daily, np.array([0.09]))
    np.testing.assert_allclose(eq["bench_return"], [0.01, 0.0175, 0.0175, 0.0075], rtol=0, atol=1e-15)


def test_open_trades_are_benchmarked_by_their_windows_random_entries_for_the_rows_held():
    # Window test rows [2, 6), purge 3 -> data end 9; the series stops at 8 (stop - 1 = 7). An open trade of
    # symbol 0 entered at row 4 with exit_idx 8 (its window's data end - 1) is held by the account to row 7: hold
    # 3 sessions. Its benchmark: mean over entries e in [3, 6] with e + 3 < 9 of open[e+3]/open[e], minus 1.
    o = np.array([[100.0, 50.0], [101.0, 51.0], [103.0, 50.0], [104.0, 52.0], [102.0, 53.0], [108.0, 55.0],
                  [110.0, 54.0], [111.0, 56.0], [115.0, 57.0], [120.0, 58.0]])
    p = _panel(o)
    tr = Trades(_i([0]), _i([3]), _i([4]), _i([8]), np.array([102.0]), np.array([115.0]), _i([8]), np.zeros(1))
    assert tr.open_at_end.tolist() == [True]
    ctx = SimpleNamespace(bench=BenchmarkCache(p), purge=3, limit=10)
    res = [SimpleNamespace(trades=tr, window=Window(0, 0, 1, 2, 6))]
    expected = np.mean([o[e + 3, 0] / o[e, 0] for e in (3, 4, 5)]) - 1  # e = 6: 6 + 3 = 9 is not < 9
    np.testing.assert_allclose(wfmod._open_bench(ctx, res, stop=8), [expected], rtol=1e-15)
    np.testing.assert_allclose(wfmod._open_bench(ctx, res, stop=10), [np.mean([o[e + 4, 0] / o[e, 0]
                                                                               for e in (3, 4)]) - 1], rtol=1e-15)
