"""A position held across a gap in its prices (sessions the store has no bar for the symbol: a halt, a missing
file) keeps its P&L in the daily portfolio: the account marks it at its last known close on the missing sessions
and books the move at the next close it has, so the account's daily returns compound to the trade's own return.

Found by the explore5 audit (independent recomputation of `backtest` / `walkforward` figures from the store's raw
prices): the daily portfolio left a position out of every day whose segment return was NaN, which is the missing
sessions AND the first session after them (close / previous close with a NaN previous close). The whole move from
the last close before the gap to the first close (or the exit fill) after it was never booked: on a store built
from the repository's real prices with AAPL missing 2024-03-04..08, NVDA 2023-10-16..17 and MSFT 2024-05-15,
`portfolio_sharpe` / `max_drawdown` (backtest, every trial), the walk-forward account, its equity bootstrap and the
PBO matrix all read a curve whose trades did not add up. The trade list itself (net returns, exits moved to the next
open that exists) was right, and `daily_excess` (the verdict's series) already marked at the last close.

Oracles: hand tables (closes written out, returns computed by hand below)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.metrics import portfolio_returns, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import Span, Trades

NAN = float("nan")


def _panel(close: list[list[float]]) -> Panel:
    c = np.array(close, dtype=float)
    return Panel(dates=pd.bdate_range("2024-03-01", periods=c.shape[0]).to_numpy(),
                 symbols=tuple(f"S{k}" for k in range(c.shape[1])), fields={"close": c, "open": c.copy()})


def _trades(sym, ent, ext, ep, xp, open_at_end=None, cost=0.0, weight=None, absolute=False) -> Trades:
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    reason = i([8 if o else 0 for o in (open_at_end or [False] * len(sym))])  # 8: open at end
    return Trades(i(sym), i([e - 1 for e in ent]), i(ent), i(ext), np.asarray(ep, dtype=float),
                  np.asarray(xp, dtype=float), reason, np.zeros(len(sym)), cost=cost,
                  weight=None if weight is None else np.asarray(weight, dtype=float), absolute=absolute)


def test_a_position_held_across_missing_closes_compounds_to_its_trade_return():
    # S0: entry at the open of row 1 (10.0), closes 11 on row 1, no bar on rows 2-3, 12.1 on row 4, exit at the
    # open of row 5 (13.0). Marked at 11 on rows 2-3 (return 0), +10 % booked on row 4, 13 / 12.1 on row 5.
    p = _panel([[9.0], [11.0], [NAN], [NAN], [12.1], [13.5], [14.0]])
    tr = _trades([0], [1], [5], [10.0], [13.0])
    assert tr.closed.tolist() == [True]
    r = portfolio_returns(tr, p, Span(0, 7, 7))
    np.testing.assert_allclose(r, [0.0, 0.1, 0.0, 0.0, 0.1, 13.0 / 12.1 - 1, 0.0], rtol=0, atol=1e-15)
    assert np.prod(1 + r) - 1 == pytest.approx(13.0 / 10.0 - 1, abs=1e-14)  # the trade's gross return


def test_the_exit_right_after_the_gap_is_booked_from_the_last_close_with_costs():
    # S0 exits at the open of row 3 (a close signal of row 2, whose bar is missing): fill 12.0 against the last
    # close 11.0, costs 10 bp a side. S1 (no gap) is held rows 1-3 beside it: on row 2 the gapped position is
    # held at its last mark (0) and still counts in the equal-weight mean.
    c = 0.001
    p = _panel([[10.0, 20.0], [11.0, 21.0], [NAN, 22.0], [12.5, 23.1], [13.0, 24.0]])
    tr = _trades([0, 1], [1, 1], [3, 3], [10.0, 20.0], [12.0, 23.0], cost=c)
    r = portfolio_returns(tr, p, Span(0, 5, 5))
    a = [11.0 / (10.0 * (1 + c)) - 1, 0.0, 12.0 * (1 - c) / 11.0 - 1]
    b = [21.0 / (20.0 * (1 + c)) - 1, 22.0 / 21.0 - 1, 23.0 * (1 - c) / 22.0 - 1]
    np.testing.assert_allclose(r, [0.0] + [(x + y) / 2 for x, y in zip(a, b)] + [0.0], rtol=0, atol=1e-15)
    net0 = 12.0 * (1 - c) / (10.0 * (1 + c)) - 1
    assert np.prod(1 + np.array(a)) - 1 == pytest.approx(net0, abs=1e-14)  # S0's segments: its net return


def test_a_span_that_starts_inside_the_gap_marks_from_the_last_close_since_entry():
    # The walk-forward's account and a fold's portfolio start at a row after some entries: S0 entered at row 1,
    # closes 11 on row 1, no bar on rows 2-3; the span starts at row 3: row 3 holds at 11 (0), row 4 books 12.1/11.
    p = _panel([[9.0], [11.0], [NAN], [NAN], [12.1], [12.1]])
    tr = _trades([0], [1], [5], [10.0], [12.1])
    np.testing.assert_allclose(portfolio_returns(tr, p, Span(3, 6, 6)), [0.0, 0.1, 0.0], rtol=0, atol=1e-15)


def test_an_open_position_with_missing_closes_is_marked_to_its_last_close_and_sized_positions_too():
    # Open at the end: marked to the close through the last row, no exit cost. Absolute sizing (fixed_fractional:
    # 50 % of equity): the day is w * r, the rest cash.
    p = _panel([[10.0], [10.0], [NAN], [11.0], [NAN]])
    tr = _trades([0], [1], [4], [10.0], [NAN], open_at_end=[True], weight=[0.5], absolute=True)
    np.testing.assert_allclose(portfolio_returns(tr, p, Span(0, 5, 5)), [0.0, 0.0, 0.0, 0.05, 0.0], rtol=0,
                               atol=1e-15)


def test_run_metrics_portfolio_figures_see_the_move_across_the_gap():
    # One trade +30 % across a gap: the portfolio curve's max drawdown is 0 and its Sharpe positive; before, the
    # +10 % booked after the gap was lost and the equity ended at 1.1 * 13 / 12.1 instead of 1.3.
    p = _panel([[9.0], [11.0], [NAN], [NAN], [12.1], [13.5], [14.0]])
    tr = _trades([0], [1], [5], [10.0], [13.0])
    m = run_metrics(tr, p, Span(0, 7, 7), total_signals=1)
    r = np.array([0.0, 0.1, 0.0, 0.0, 0.1, 13.0 / 12.1 - 1, 0.0])
    assert m["portfolio_sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252), rel=1e-12)
    assert m["max_drawdown"] == 0.0


def test_the_drawdown_breaker_sees_a_loss_realised_across_a_gap():
    # The date-major kernel compounds the same daily portfolio into the equity the breaker watches. AAA enters at
    # the open of row 1 (100), has no bar on rows 2-3 and closes at 80 on row 4: -20 %, below the 10 % breaker, so
    # no entry is accepted at the closes 4..13 and BBB's signal at the close of row 4 is refused. Before, the
    # row-4 return (80 / NaN) was dropped, equity stayed at 1 and BBB entered at the open of row 5.
    import sys
    from pathlib import Path

    from optimizer.engine.simulate import Costs, ExitParams, RiskParams, Thresholds, simulate_counted

    sys.path.insert(0, str(Path(__file__).parent))
    from reference_engine import RefExit, RefRisk, ref_trades_capped

    T = 8
    bar = lambda o: (o, o + 0.5, o - 0.5, o)  # noqa: E731
    aaa = [bar(100.0), bar(100.0), (NAN,) * 4, (NAN,) * 4, bar(80.0), bar(80.0), bar(80.0), bar(80.0)]
    bbb = [bar(50.0)] * T
    recs = [{"date": d, "symbol": s, "open": o, "high": h, "low": lo, "close": c}
            for s, rows in (("AAA", aaa), ("BBB", bbb))
            for d, (o, h, lo, c) in zip(pd.bdate_range("2024-03-01", periods=T), rows)]
    panel = Panel.from_frame(pd.DataFrame(recs), sectors={"AAA": None, "BBB": None})
    disp = np.full((T, 2), 50.0)
    disp[0, 0] = 80.0  # AAA signals at the close of row 0
    disp[4, 1] = 80.0  # BBB at the close of row 4, when AAA's loss is known
    span, exit_ = Span(0, T - 1, T), ExitParams("fixed", hold_days=5)
    fast, _ = simulate_counted(panel, disp, Thresholds(70.0, 30.0), exit_, Costs(0.0, 0.0), span,
                               risk=RiskParams(dd_breaker=0.1, dd_cooloff=10))
    assert [panel.symbols[k] for k in fast.symbol] == ["AAA"]
    assert (int(fast.entry_idx[0]), int(fast.exit_idx[0])) == (1, 6)
    ref = ref_trades_capped(panel, disp, 70.0, 30.0, RefExit("fixed", hold_days=5), (0.0, 0.0), 0, T - 1, T,
                            risk=RefRisk(dd_breaker=0.1, dd_cooloff=10))
    assert ref["symbol"].tolist() == [0]
    without = simulate_counted(panel, disp, Thresholds(70.0, 30.0), exit_, Costs(0.0, 0.0), span,
                               risk=RiskParams(dd_breaker=0.5, dd_cooloff=10))[0]
    assert [panel.symbols[k] for k in without.symbol] == ["AAA", "BBB"]  # a 50 % breaker lets BBB in
