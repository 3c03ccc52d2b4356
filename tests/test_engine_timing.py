"""Hand-written candle tables (freqtrade style): entry/exit timing, fills and metrics of docs/ENGINE.md.

Every expected bar, price and metric below is written by hand from the table, not computed by an engine.
Each trade case runs against BOTH the plain reference (tests/reference_engine.py) and the fast engine.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.metrics import run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import EXIT_REASONS, Caps, Costs, ExitParams, Span, Thresholds, Trades, simulate
from reference_engine import RefExit, ref_metrics, ref_trades

NAN = float("nan")
ZERO_COSTS = (0.0, 0.0)


def panel_of(rows) -> tuple[Panel, np.ndarray]:
    """rows: (open, high, low, close, display) per session, one symbol 'AAA'."""
    a = np.array(rows, dtype=float)
    df = pd.DataFrame({
        "date": pd.bdate_range("2024-01-02", periods=len(rows)),
        "symbol": "AAA",
        "open": a[:, 0], "high": a[:, 1], "low": a[:, 2], "close": a[:, 3],
    })
    return Panel.from_frame(df, sectors={"AAA": "XLK"}), a[:, 4:5].copy()


def flat_rows(opens, displays):
    """Quiet bars: high = max(open, close) + 0.5, low = min(open, close) - 0.5, close = open."""
    return [(o, o + 0.5, o - 0.5, o, d) for o, d in zip(opens, displays)]


def run_both(rows, exit_kw: dict, span=None, costs=ZERO_COSTS, buy=70.0, sell=30.0):
    """Trades of the reference and the fast engine as sorted tuples
    (signal_idx, entry_idx, exit_idx, entry_price, exit_price, reason, open_at_end); prices rounded to 1e-9."""
    panel, disp = panel_of(rows)
    T = len(rows)
    sig_start, sig_end, data_end = span or (0, T, T)
    ref = ref_trades(panel, disp, buy, sell, RefExit(**exit_kw), costs, sig_start, sig_end, data_end)
    ref_t = sorted(
        (int(r.signal_idx), int(r.entry_idx), int(r.exit_idx), round(float(r.entry_price), 9),
         round(float(r.exit_price), 9), r.exit_reason, bool(r.open_at_end))
        for r in ref.itertuples(index=False)
    )
    fast = simulate(panel, disp, Thresholds(buy=buy, sell=sell), ExitParams(**exit_kw),
                    Costs(commission_bps=costs[0], slippage_bps=costs[1]), Span(sig_start, sig_end, data_end))
    fast_t = sorted(
        (int(fast.signal_idx[i]), int(fast.entry_idx[i]), int(fast.exit_idx[i]), round(float(fast.entry_price[i]), 9),
         round(float(fast.exit_price[i]), 9), EXIT_REASONS[int(fast.exit_reason[i])], bool(fast.open_at_end[i]))
        for i in range(len(fast.symbol))
    )
    return ref, ref_t, fast, fast_t


def check(rows, exit_kw, expected, **kw):
    ref, ref_t, fast, fast_t = run_both(rows, exit_kw, **kw)
    assert ref_t == expected, f"reference: {ref_t}"
    assert fast_t == expected, f"fast engine: {fast_t}"
    return ref, fast


# ------------------------------------------------------------------------------------------------ exit rules

def test_fixed_hold_ignores_signals_in_position():
    #            0   1   2   3   4   5   6   7
    opens = [10, 11, 12, 13, 14, 15, 16, 17]
    disp = [50, 75, 50, 80, 90, 50, 50, 50]  # 3 and 4 signal while held (e=2 .. exit at open 5): ignored
    check(flat_rows(opens, disp), {"rule": "fixed", "hold_days": 3},
          [(1, 2, 5, 12.0, 15.0, "fixed", False)])


def test_reentry_on_exit_day_close_but_not_the_day_before():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18]
    # e=2, fixed_2 -> exit at open 4; signal at close 3 ignored (still held at close 3);
    # signal at close 4 (exit day) enters at open 5, exits at open 7
    disp = [50, 75, 50, 75, 75, 50, 50, 50, 50]
    check(flat_rows(opens, disp), {"rule": "fixed", "hold_days": 2},
          [(1, 2, 4, 12.0, 14.0, "fixed", False), (4, 5, 7, 15.0, 17.0, "fixed", False)])


def test_first_dist_on_entry_bar_exits_next_open():
    opens = [10, 11, 12, 13, 14, 15]
    disp = [50, 75, 25, 50, 50, 50]  # distribution at the close of the entry bar (k = e = 2)
    check(flat_rows(opens, disp), {"rule": "first_dist"}, [(1, 2, 3, 12.0, 13.0, "first_dist", False)])


def test_sell_threshold_is_inclusive_and_buy_threshold_inclusive():
    opens = [10, 11, 12, 13, 14, 15, 16]
    disp = [69.99, 70.0, 30.01, 30.0, 50, 50, 50]  # buy at exactly 70 (t=1), sell at exactly 30 (t=3)
    check(flat_rows(opens, disp), {"rule": "first_dist"}, [(1, 2, 4, 12.0, 14.0, "first_dist", False)])


def test_two_consecutive_distribution_days():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18]
    #        0   1   2   3   4   5   6   7   8
    disp = [50, 75, 25, 40, 25, 20, 50, 50, 50]  # dist at 2, 4, 5 -> first pair (4, 5) -> exit open 6
    check(flat_rows(opens, disp), {"rule": "2x_consec_dist"}, [(1, 2, 6, 12.0, 16.0, "2x_consec_dist", False)])


def test_two_consecutive_distribution_days_entry_bar_counts_as_first():
    opens = [10, 11, 12, 13, 14, 15]
    disp = [50, 75, 25, 25, 50, 50]  # dist at e=2 and e+1=3 -> k=3 -> exit open 4
    check(flat_rows(opens, disp), {"rule": "2x_consec_dist"}, [(1, 2, 4, 12.0, 14.0, "2x_consec_dist", False)])


def test_score_decay_three_closes_below_50_nan_breaks_the_run():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    #        0   1   2   3    4   5   6   7   8   9
    disp = [50, 75, 45, 45, NAN, 45, 49.9, 45, 50, 50]  # NaN is not < 50: first run of 3 is 5,6,7 -> exit open 8
    check(flat_rows(opens, disp), {"rule": "score_decay"}, [(1, 2, 8, 12.0, 18.0, "score_decay", False)])


def test_score_decay_needs_three_closes_in_position():
    opens = [10, 11, 12, 13, 14, 15, 16]
    disp = [40, 75, 45, 45, 45, 50, 50]  # k=e+2=4 is the first eligible close; 2,3,4 < 50 -> exit open 5
    check(flat_rows(opens, disp), {"rule": "score_decay"}, [(1, 2, 5, 12.0, 15.0, "score_decay", False)])


def test_hybrid_max_days_when_no_distribution():
    opens = [10, 11, 12, 13, 14, 15, 16, 17]
    disp = [50, 75, 50, 50, 50, 50, 50, 50]
    check(flat_rows(opens, disp), {"rule": "hybrid", "max_days": 3}, [(1, 2, 5, 12.0, 15.0, "max_days", False)])


def test_hybrid_distribution_first():
    opens = [10, 11, 12, 13, 14, 15, 16, 17]
    disp = [50, 75, 50, 25, 50, 50, 50, 50]  # dist at 3 -> open 4 < e+M = 5
    check(flat_rows(opens, disp), {"rule": "hybrid", "max_days": 3}, [(1, 2, 4, 12.0, 14.0, "first_dist", False)])


def test_time_stop_caps_a_signal_rule():
    opens = [10, 11, 12, 13, 14, 15, 16, 17]
    disp = [50, 75, 50, 50, 50, 25, 50, 50]  # first_dist would exit at open 6; time_stop 2 -> open 4
    check(flat_rows(opens, disp), {"rule": "first_dist", "time_stop": 2}, [(1, 2, 4, 12.0, 14.0, "time_stop", False)])


# ------------------------------------------------------------------------------------------- stops and targets

def test_stop_loss_intraday_fills_at_stop():
    rows = [
        (100, 101, 99, 100, 50),   # 0
        (100, 101, 99, 100, 75),   # 1 signal
        (100, 102, 98, 101, 50),   # 2 entry at 100; stop = 95
        (99, 100, 94, 96, 50),     # 3 low 94 <= 95, open 99 above -> fill 95
        (96, 97, 95, 96, 50),      # 4
        (96, 97, 95, 96, 50),      # 5
    ]
    check(rows, {"rule": "fixed", "hold_days": 3, "stop_loss": 0.05}, [(1, 2, 3, 100.0, 95.0, "stop_loss", False)])


def test_stop_loss_gap_through_fills_at_open():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),
        (100, 102, 98, 101, 50),   # entry 100, stop 95
        (90, 92, 89, 91, 50),      # gaps below the stop -> fill at the open 90
        (91, 92, 90, 91, 50),
        (91, 92, 90, 91, 50),
    ]
    check(rows, {"rule": "fixed", "hold_days": 3, "stop_loss": 0.05}, [(1, 2, 3, 100.0, 90.0, "stop_loss", False)])


def test_stop_on_entry_bar_fills_at_stop_then_reenters_next_open():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),   # signal
        (100, 101, 90, 92, 75),    # entry 100, low 90 <= 95 on the entry bar -> 95 (not the open); signal again
        (92, 93, 91, 92, 50),      # re-entry at 92 (flat at the close of the exit bar 2)
        (93, 94, 92, 93, 50),
        (94, 95, 93, 94, 50),
        (95, 96, 94, 95, 50),
    ]
    check(rows, {"rule": "fixed", "hold_days": 3, "stop_loss": 0.05},
          [(1, 2, 2, 100.0, 95.0, "stop_loss", False), (2, 3, 6, 92.0, 95.0, "fixed", False)])


def test_take_profit_intraday_and_gap_up():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),   # signal
        (100, 105, 99, 104, 50),   # entry 100, tp 110, high 105 no
        (104, 111, 103, 108, 75),  # high 111 >= 110, open 104 -> fill 110; signal at close of exit bar
        (120, 125, 119, 121, 50),  # re-entry at 120, tp 132
        (135, 136, 130, 131, 50),  # gap above tp -> fill at the open 135
        (131, 132, 130, 131, 50),
    ]
    check(rows, {"rule": "fixed", "hold_days": 5, "take_profit": 0.10},
          [(1, 2, 3, 100.0, 110.0, "take_profit", False), (3, 4, 5, 120.0, 135.0, "take_profit", False)])


def test_take_profit_on_entry_bar_fills_at_target():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),
        (100, 115, 99, 112, 50),   # entry 100, high 115 on the entry bar -> 110
        (112, 113, 111, 112, 50),
    ]
    check(rows, {"rule": "first_dist", "take_profit": 0.10}, [(1, 2, 2, 100.0, 110.0, "take_profit", False)])


def test_stop_and_target_on_same_bar_stop_wins():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),
        (100, 102, 98, 101, 50),   # entry 100: stop 95, tp 110
        (100, 112, 94, 100, 50),   # both hit -> stop at 95
        (100, 101, 99, 100, 50),
    ]
    check(rows, {"rule": "first_dist", "stop_loss": 0.05, "take_profit": 0.10},
          [(1, 2, 3, 100.0, 95.0, "stop_loss", False)])


def test_exit_due_at_open_beats_intraday_stop():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),
        (100, 102, 98, 101, 50),   # entry 100, fixed_2 -> exit at open 4
        (101, 102, 100, 101, 50),
        (98, 99, 80, 85, 50),      # the low breaks the stop 95, but the fixed exit fills at the open 98 first
        (85, 86, 84, 85, 50),
    ]
    check(rows, {"rule": "fixed", "hold_days": 2, "stop_loss": 0.05}, [(1, 2, 4, 100.0, 98.0, "fixed", False)])


def test_close_signal_exit_beats_next_bar_stop():
    rows = [
        (100, 101, 99, 100, 50),
        (100, 101, 99, 100, 75),
        (100, 102, 98, 101, 25),   # entry 100; distribution at the close of 2 -> exit at open 3
        (97, 98, 80, 85, 50),      # the stop (95) would hit intraday, but the position left at the open 97
        (85, 86, 84, 85, 50),
    ]
    check(rows, {"rule": "first_dist", "stop_loss": 0.05}, [(1, 2, 3, 100.0, 97.0, "first_dist", False)])


# ------------------------------------------------------------------------------------------------ end of data

def test_exit_signal_on_last_bar_leaves_trade_open_at_end():
    opens = [10, 11, 12, 13, 14, 15]
    disp = [50, 75, 50, 50, 50, 25]  # distribution at the last close: the fill would need bar 6
    rows = flat_rows(opens, disp)
    ref, fast = check(rows, {"rule": "first_dist"}, [(1, 2, 5, 12.0, 15.0, "open_at_end", True)])
    span = (0, 6, 6)
    for m in (ref_metrics(ref, panel_of(rows)[0], span, ZERO_COSTS, 1),
              run_metrics(fast, panel_of(rows)[0], Span(*span), 1)):
        assert m["total_trades"] == 1 and m["closed_trades"] == 0 and m["open_at_end"] == 1
        assert m["hit_rate"] == 0.0 and m["avg_return"] == 0.0 and m["win_loss"] == 0.0


def test_fixed_exit_past_data_end_is_open_at_end_marked_at_last_close():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    disp = [50, 75, 50, 50, 50, 50, 50, 50, 50, 50]
    rows = flat_rows(opens, disp)
    rows[5] = (15, 15.5, 14.5, 15.25, 50)
    # data_end = 6 < T: the fixed exit at open 2+5=7 is past data_end; marked at close[5] = 15.25
    check(rows, {"rule": "fixed", "hold_days": 5}, [(1, 2, 5, 12.0, 15.25, "open_at_end", True)], span=(0, 4, 6))


def test_entry_signal_on_last_bar_gives_no_trade():
    opens = [10, 11, 12, 13, 14, 15]
    disp = [50, 50, 50, 50, 50, 75]
    check(flat_rows(opens, disp), {"rule": "first_dist"}, [])


def test_signal_window_bounds_and_trades_run_past_sig_end():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    #        0   1   2   3   4   5   6   7   8   9
    disp = [75, 50, 50, 75, 50, 75, 50, 50, 50, 50]
    # window [1, 4): the signal at 0 is before it, the one at 5 after it; the one at 3 enters at 4 and, with
    # fixed_4, exits at open 8 (past sig_end, before data_end 9)
    check(flat_rows(opens, disp), {"rule": "fixed", "hold_days": 4},
          [(3, 4, 8, 14.0, 18.0, "fixed", False)], span=(1, 4, 9))


def test_no_entry_when_next_open_is_missing():
    rows = flat_rows([10, 11, 12, 13, 14, 15, 16], [50, 75, 75, 50, 50, 50, 50])
    rows[2] = (NAN, NAN, NAN, NAN, 75)  # open[2] missing: the signal at 1 cannot fill; the one at 2 enters at 3
    check(rows, {"rule": "fixed", "hold_days": 2}, [(2, 3, 5, 13.0, 15.0, "fixed", False)])


# ------------------------------------------------------------------------------------------------------ costs

def test_costs_applied_per_side():
    opens = [100, 100, 100, 104, 110, 110]
    disp = [50, 75, 50, 50, 50, 50]
    rows = flat_rows(opens, disp)
    ref, fast = check(rows, {"rule": "fixed", "hold_days": 2}, [(1, 2, 4, 100.0, 110.0, "fixed", False)],
                      costs=(1.0, 5.0))
    # c = 6 bps per side: net = 110 * 0.9994 / (100 * 1.0006) - 1 = 109.934 / 100.06 - 1
    net = 109.934 / 100.06 - 1.0
    assert abs(net - 0.0986807915) < 1e-9
    assert ref["gross_ret"].iloc[0] == pytest.approx(0.10, abs=1e-12)
    assert fast.gross_ret[0] == pytest.approx(0.10, abs=1e-12)
    assert ref["net_ret"].iloc[0] == pytest.approx(net, abs=1e-12)
    assert fast.net_ret[0] == pytest.approx(net, abs=1e-12)


# ------------------------------------------------------------------------------------------------------ metrics

def _trades_pair(panel, rows, cost_bps=(0.0, 0.0)):
    """rows: (symbol, entry_idx, exit_idx, entry_price, exit_price, open_at_end) -> (reference frame, fast Trades)."""
    c = (cost_bps[0] + cost_bps[1]) / 1e4
    code = {n: i for i, n in enumerate(EXIT_REASONS)}
    recs = []
    for s, e, x, ep, xp, oae in rows:
        recs.append({
            "symbol": s, "signal_idx": e - 1, "entry_idx": e, "exit_idx": x, "entry_price": ep, "exit_price": xp,
            "gross_ret": xp / ep - 1, "net_ret": xp * (1 - c) / (ep * (1 + c)) - 1,
            "exit_reason": "open_at_end" if oae else "fixed", "open_at_end": oae, "score": 80.0,
        })
    ref = pd.DataFrame(recs, columns=["symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price",
                                      "gross_ret", "net_ret", "exit_reason", "open_at_end", "score"])
    fast = Trades(
        symbol=np.array([r[0] for r in rows], dtype=np.int64),
        signal_idx=np.array([r[1] - 1 for r in rows], dtype=np.int64),
        entry_idx=np.array([r[1] for r in rows], dtype=np.int64),
        exit_idx=np.array([r[2] for r in rows], dtype=np.int64),
        entry_price=np.array([r[3] for r in rows], dtype=float),
        exit_price=np.array([r[4] for r in rows], dtype=float),
        exit_reason=np.array([code["open_at_end" if r[5] else "fixed"] for r in rows], dtype=np.int64),
        score=np.full(len(rows), 80.0),
        cost=c,
    )
    return ref, fast


def _both_metrics(panel, rows, span, total_signals, cost_bps=(0.0, 0.0)):
    ref, fast = _trades_pair(panel, rows, cost_bps)
    return (ref_metrics(ref, panel, span, cost_bps, total_signals),
            run_metrics(fast, panel, Span(*span), total_signals))


def _price_panel(opens, closes=None):
    closes = opens if closes is None else closes
    rows = [(o, max(o, c) + 1, min(o, c) - 1, c, 50) for o, c in zip(opens, closes)]
    return panel_of(rows)[0]


def test_metrics_zero_trades_are_all_zero():
    panel = _price_panel([10, 11, 12, 13, 14, 15])
    for m in _both_metrics(panel, [], (0, 6, 6), 0):
        for k in ("total_trades", "closed_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
                  "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate",
                  "rank_score", "avg_excess_return"):
            assert m[k] == 0.0, k


def test_metrics_hand_computed_mixed_trades():
    # 21 sessions -> sessions / 21 = 1 month; 4 signals -> signals_per_month 4
    opens = [100.0] * 21
    panel = _price_panel(opens)
    # four closed trades, zero costs: +10%, -5%, +20%, -10%  and one open at end (excluded)
    rows = [(0, 1, 3, 100.0, 110.0, False), (0, 4, 6, 100.0, 95.0, False), (0, 7, 9, 100.0, 120.0, False),
            (0, 10, 12, 100.0, 90.0, False), (0, 15, 20, 100.0, 150.0, True)]
    for m in _both_metrics(panel, rows, (0, 21, 21), 4):
        assert m["total_trades"] == 5 and m["closed_trades"] == 4 and m["open_at_end"] == 1
        assert m["hit_rate"] == pytest.approx(0.5)
        assert m["avg_return"] == pytest.approx(0.0375)           # (0.10 - 0.05 + 0.20 - 0.10) / 4
        assert m["median_return"] == pytest.approx(0.025)        # (-0.05 + 0.10) / 2
        assert m["win_loss"] == pytest.approx(0.15 / 0.075)      # mean win 0.15 / |mean loss| 0.075 = 2
        # sample std of (0.1, -0.05, 0.2, -0.1): deviations 0.0625, -0.0875, 0.1625, -0.1375
        sd = math.sqrt((0.0625**2 + 0.0875**2 + 0.1625**2 + 0.1375**2) / 3)
        assert m["sharpe"] == pytest.approx(0.0375 / sd)
        assert m["avg_hold_days"] == pytest.approx(2.0)
        assert m["signals_per_month"] == pytest.approx(4.0)
        assert m["rank_score"] == pytest.approx(0.5 * 0.0375 * 2.0 / 2.0)
        # flat opens at 100: every matched benchmark is 100/100 - 1 = 0, so excess = net
        assert m["avg_benchmark_return"] == pytest.approx(0.0)
        assert m["avg_excess_return"] == pytest.approx(0.0375)


def test_win_loss_all_wins_is_capped_and_all_losses_zero():
    panel = _price_panel([100.0] * 10)
    for m in _both_metrics(panel, [(0, 1, 3, 100.0, 110.0, False), (0, 4, 6, 100.0, 105.0, False)], (0, 10, 10), 2):
        assert m["win_loss"] == 10.0 and m["hit_rate"] == 1.0
    for m in _both_metrics(panel, [(0, 1, 3, 100.0, 90.0, False), (0, 4, 6, 100.0, 95.0, False)], (0, 10, 10), 2):
        assert m["win_loss"] == 0.0 and m["hit_rate"] == 0.0
        assert m["rank_score"] == 0.0


def test_sharpe_needs_two_trades():
    panel = _price_panel([100.0] * 10)
    for m in _both_metrics(panel, [(0, 1, 3, 100.0, 110.0, False)], (0, 10, 10), 1):
        assert m["sharpe"] == 0.0
        assert m["avg_return"] == pytest.approx(0.10) and m["median_return"] == pytest.approx(0.10)


def test_false_positive_by_hand():
    # the design: a false positive is a signal whose price reverses within 3 days = a close of the first three
    # sessions from the entry bar e (e, e+1, e+2; never past the exit bar x) below the entry price
    #         0    1    2    3    4    5    6    7    8    9
    closes = [100, 100, 100, 99, 100, 102, 100, 100, 98, 100]
    panel = _price_panel([100.0] * 10, closes)
    rows = [
        (0, 1, 5, 100.0, 110.0, False),  # closes 1..3 = 100, 100, 99: 99 < 100 -> false positive
        (0, 3, 6, 100.0, 110.0, False),  # closes 3..5 = 99, 100, 102: day-1 reversal -> false positive
        (0, 5, 6, 100.0, 110.0, False),  # closes 5, 6 (capped at x = 6) = 102, 100 -> not
        (0, 7, 8, 100.0, 110.0, False),  # closes 7, 8 (capped at x = 8) = 100, 98 -> false positive
        (0, 9, 9, 100.0, 95.0, False),   # close[9] = 100, not below -> not
    ]
    for m in _both_metrics(panel, rows, (0, 10, 10), 5):
        assert m["false_positive_rate"] == pytest.approx(0.6)
    # only the close at e+2 (the rule before) would have missed the day-1 reversal of the second trade: 0.4


def test_matched_benchmark_by_hand_on_six_opens():
    opens = [10.0, 11.0, 12.0, 10.0, 15.0, 12.0]
    panel = _price_panel(opens)
    # span (0, 4, 6): entry sessions e in [1, 4]; h = 2 needs e + 2 < 6 -> e in {1, 2, 3}:
    # open[3]/open[1] = 10/11, open[4]/open[2] = 15/12, open[5]/open[3] = 12/10
    cost = (1.0, 5.0)
    c = 0.0006
    mean_ratio = (10 / 11 + 15 / 12 + 12 / 10) / 3
    bench = mean_ratio - 1  # a passive holder pays no per-trade costs: the benchmark is gross
    net = 12.0 * (1 - c) / (11.0 * (1 + c)) - 1  # trade entered at open[1] = 11, exit at open[3] = 12 (say)
    rows = [(0, 1, 3, 11.0, 12.0, False)]
    for m in _both_metrics(panel, rows, (0, 4, 6), 1, cost):
        assert m["avg_benchmark_return"] == pytest.approx(bench, abs=1e-12)
        assert m["avg_excess_return"] == pytest.approx(net - bench, abs=1e-12)
    # h = 0: holding zero sessions earns nothing
    for m in _both_metrics(panel, [(0, 2, 2, 12.0, 12.5, False)], (0, 4, 6), 1, cost):
        assert m["avg_benchmark_return"] == pytest.approx(0.0, abs=1e-12)
    # h = 5: no entry session e in [1, 4] with e + 5 < 6 -> benchmark 0, excess = net
    for m in _both_metrics(panel, [(0, 0, 5, 10.0, 12.0, False)], (0, 4, 6), 1, cost):
        assert m["avg_benchmark_return"] == 0.0
        assert m["avg_excess_return"] == pytest.approx(12 * (1 - c) / (10 * (1 + c)) - 1, abs=1e-12)


def test_portfolio_returns_and_drawdown_by_hand():
    #          0    1    2    3    4    5
    opens = [100, 100, 100, 100, 100, 100]
    closes = [100, 110, 99, 99, 120, 100]
    panel = _price_panel(opens, closes)
    # trade A: sym 0, e=1 at 100, exit at open 3 (100). trade B: open at end from e=4.
    rows = [(0, 1, 3, 100.0, 100.0, False), (0, 4, 5, 100.0, 100.0, True)]
    # day 0: cash 0; day 1: 110/100 - 1 = 0.10; day 2: 99/110 - 1 = -0.10; day 3: exit 100/99 - 1;
    # day 4 (B entry): 120/100 - 1 = 0.20; day 5: 100/120 - 1
    r = [0.0, 0.10, -0.10, 100 / 99 - 1, 0.20, 100 / 120 - 1]
    eq = np.cumprod(1 + np.array(r))  # 1, 1.1, 0.99, 1.0, 1.2, 1.0
    mdd = 1 - 0.99 / 1.1  # = 0.1, then 1 - 1.0/1.2 = 0.1667 is larger
    mdd = max(mdd, 1 - 1.0 / 1.2)
    assert eq[-1] == pytest.approx(1.0)
    for m in _both_metrics(panel, rows, (0, 6, 6), 2):
        assert m["max_drawdown"] == pytest.approx(mdd, abs=1e-12)
        mean = np.mean(r)
        assert m["portfolio_sharpe"] == pytest.approx(mean / np.std(r, ddof=1) * math.sqrt(252), rel=1e-9)


# ------------------------------------------------------------------------------- several exits due at one open

def test_exits_due_at_the_same_open_reason_priority():
    # ENGINE.md leaves the label open when several exits fall due at one open (all fill there); both engines
    # use: close signal of k-1, then fixed / max_days, then time_stop.
    opens = [10, 11, 12, 13, 14, 15, 16, 17]
    quiet = [50, 75, 50, 50, 50, 50, 50, 50]
    dist4 = [50, 75, 50, 50, 25, 50, 50, 50]  # e=2: distribution at close 4 -> open 5 = e + 3
    check(flat_rows(opens, dist4), {"rule": "hybrid", "max_days": 3}, [(1, 2, 5, 12.0, 15.0, "first_dist", False)])
    check(flat_rows(opens, dist4), {"rule": "first_dist", "time_stop": 3},
          [(1, 2, 5, 12.0, 15.0, "first_dist", False)])
    check(flat_rows(opens, quiet), {"rule": "fixed", "hold_days": 3, "time_stop": 3},
          [(1, 2, 5, 12.0, 15.0, "fixed", False)])
    check(flat_rows(opens, quiet), {"rule": "hybrid", "max_days": 3, "time_stop": 3},
          [(1, 2, 5, 12.0, 15.0, "max_days", False)])


# ------------------------------------------------------------------------------------------------------- caps

def panel_multi(opens_by_symbol: dict[str, list], lows: dict[str, dict[int, float]] | None = None,
                sectors: dict[str, str] | None = None) -> Panel:
    frames = []
    for sym, opens in opens_by_symbol.items():
        o = np.array(opens, dtype=float)
        lo = o - 0.3
        for i, v in (lows or {}).get(sym, {}).items():
            lo[i] = v
        frames.append(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=len(o)), "symbol": sym,
                                    "open": o, "high": o + 0.5, "low": lo, "close": o}))
    return Panel.from_frame(pd.concat(frames), sectors=sectors or {s: "XLK" for s in opens_by_symbol})


def run_caps(panel, disp, exit_kw, caps):
    from reference_engine import ref_trades_capped
    T = disp.shape[0]
    ref = ref_trades_capped(panel, disp, 70.0, 30.0, RefExit(**exit_kw), ZERO_COSTS, 0, T, T,
                            max_positions=caps[0], max_per_sector=caps[1])
    fast = simulate(panel, disp, Thresholds(70.0, 30.0), ExitParams(**exit_kw), Costs(0.0, 0.0), Span(0, T, T),
                    caps=Caps(max_positions=caps[0], max_per_sector=caps[1]))
    names = panel.symbols
    ref_t = sorted((names[int(r.symbol)], int(r.signal_idx), int(r.entry_idx), int(r.exit_idx), r.exit_reason)
                   for r in ref.itertuples(index=False))
    fast_t = sorted((names[int(fast.symbol[i])], int(fast.signal_idx[i]), int(fast.entry_idx[i]),
                     int(fast.exit_idx[i]), EXIT_REASONS[int(fast.exit_reason[i])]) for i in range(len(fast.symbol)))
    return ref_t, fast_t


def test_caps_tie_goes_to_lower_symbol_index_and_higher_score_wins():
    panel = panel_multi({"AAA": [10.0] * 6, "BBB": [20.0] * 6})
    disp = np.full((6, 2), 50.0)
    disp[1] = [75.0, 75.0]  # tie -> AAA (index 0)
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (1, None)):
        assert got == [("AAA", 1, 2, 4, "fixed")]
    disp[1] = [75.0, 76.0]  # BBB scores higher
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (1, None)):
        assert got == [("BBB", 1, 2, 4, "fixed")]


def test_caps_slot_freed_by_an_exit_at_the_next_open_but_not_by_an_intraday_stop():
    # max 1 position. AAA: signal 1, e=2, fixed_2 -> exits at open 4, so a signal at the close of 3 can take the
    # slot at open 4; the signal at close 2 cannot (AAA still holds the slot at open 3).
    panel = panel_multi({"AAA": [10.0] * 9, "BBB": [20.0] * 9})
    disp = np.full((9, 2), 50.0)
    disp[1, 0] = 75.0
    disp[2, 1] = 75.0
    disp[3, 1] = 75.0
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (1, None)):
        assert got == [("AAA", 1, 2, 4, "fixed"), ("BBB", 3, 4, 6, "fixed")]
    # AAA is stopped out intraday on bar 3 (low 9 <= 10 * 0.95; other lows are open - 0.3): it still held the
    # slot at open 3, so BBB's signal at close 2 is refused; BBB's signal at close 3 enters at 4.
    panel = panel_multi({"AAA": [10.0] * 9, "BBB": [20.0] * 9}, lows={"AAA": {3: 9.0}})
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 4, "stop_loss": 0.05}, (1, None)):
        assert got == [("AAA", 1, 2, 3, "stop_loss"), ("BBB", 3, 4, 8, "fixed")]


def test_caps_per_sector():
    panel = panel_multi({"AAA": [10.0] * 6, "BBB": [20.0] * 6, "CCC": [30.0] * 6},
                        sectors={"AAA": "XLK", "BBB": "XLK", "CCC": "XLF"})
    disp = np.full((6, 3), 50.0)
    disp[1] = [80.0, 90.0, 70.0]  # one per sector: BBB (best XLK) and CCC; AAA refused
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (None, 1)):
        assert got == [("BBB", 1, 2, 4, "fixed"), ("CCC", 1, 2, 4, "fixed")]
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (1, 1)):
        assert got == [("BBB", 1, 2, 4, "fixed")]


# ---------------------------------------------------------------------------------------------- score by hand

def test_display_by_hand_with_window_two():
    """With z_window = 2 every z is +1 (rise), -1 (fall) or NaN (first row / NaN input), so the score is by hand."""
    from optimizer.engine.features import FeatureCache
    from optimizer.engine.score import ScoreParams, display_score
    from reference_engine import ref_display

    df = pd.DataFrame({
        "date": pd.bdate_range("2024-01-02", periods=3), "symbol": "AAA",
        "open": [10.0, 11.0, 10.5], "high": [10.5, 11.5, 11.0], "low": [9.5, 10.5, 10.0], "close": [10.0, 11.0, 10.5],
        "short_buy_volume": [100.0, 120.0, 130.0], "short_sell_volume": [100.0, 80.0, 170.0],
        "short_buy_sell_ratio": [1.0, 1.5, 130 / 170],
        "lit_buy_volume": [50.0, 60.0, NAN], "lit_sell_volume": [50.0, 40.0, NAN],
        "lit_flow_imbalance": [0.0, 0.2, NAN], "otc_participation_rate": [0.2, 0.3, NAN],
    })
    panel = Panel.from_frame(df)
    # row 1: every input rises (price z NaN: return[0] is NaN -> only one value in the window) -> short z +1,
    #   lit z +1, price 0, otc z +1.  row 2: short_buy up (A +1), ratio down (B -1), C = 0, imbalance*log1p down
    #   (D -1), flow 130 - 170 = -40 < 60 (vw_flow -1), blended -1; lit NaN -> 0; return down (-1); otc NaN -> 0.5
    ws, wl, wp = 0.5, 0.3, 0.2  # (1.0, 0.6, 0.4) normalized
    sig1 = 1 / (1 + math.exp(-1))
    row1 = (ws * math.tanh(0.5) + wl * math.tanh(0.5)) * (0.7 + 0.6 * sig1)
    short2 = {"A": 1.0, "B": -1.0, "C": 0.0, "D": -1.0, "vw_flow": -1.0, "blended": -1.0}
    cache = FeatureCache(panel)
    for variant, sz in short2.items():
        row2 = ws * math.tanh(0.5 * sz) + wp * math.tanh(-0.3)  # intensity 0.7 + 0.6 * 0.5 = 1
        expected = [NAN, (row1 + 1) * 50, (row2 + 1) * 50]
        ref = ref_display(panel, variant, 1.0, 0.6, 0.4, 2)[:, 0]
        fast = display_score(cache, ScoreParams(variant=variant, w_short=1.0, w_lit=0.6, w_price=0.4, z_window=2))[:, 0]
        for got in (ref, fast):
            assert math.isnan(got[0]), variant
            assert got[1:] == pytest.approx(expected[1:], abs=1e-12), variant


def test_display_nan_on_constant_window_and_clip():
    from optimizer.engine.features import FeatureCache
    from optimizer.engine.score import ScoreParams, display_score
    from reference_engine import ref_display

    n = 8
    ratio = [1.0, 2.0, 1.3, 1.3, 1.3, 1.3, 5.0, 1.3]  # window 3: rows 4, 5 are constant windows -> NaN
    df = pd.DataFrame({
        "date": pd.bdate_range("2024-01-02", periods=n), "symbol": "AAA",
        "open": [10.0] * n, "high": [11.0] * n, "low": [9.0] * n, "close": [10.0] * n,
        "short_buy_volume": [1.0] * n, "short_sell_volume": [1.0] * n, "short_buy_sell_ratio": ratio,
    })
    panel = Panel.from_frame(df)
    # row 6: z = (5 - 2.5333) / std_pop(1.3, 1.3, 5) = 1.4142 (= sqrt 2, two equal values and one outlier);
    # with intensity_hi 3 and otc NaN (sigmoid 0.5) the intensity is 0.7 + 2.3 * 0.5 = 1.85;
    # raw = tanh(0.5 * sqrt 2) = 0.6089 -> 1.1265 -> clipped to 1 -> display 100
    for got in (ref_display(panel, "B", 1.0, 0.0, 0.0, 3, intensity_hi=3.0)[:, 0],
                display_score(FeatureCache(panel), ScoreParams(variant="B", w_short=1.0, w_lit=0.0, w_price=0.0,
                                                               z_window=3, intensity_hi=3.0))[:, 0]):
        assert np.isnan(got[[0, 1, 4, 5]]).all()
        assert got[6] == pytest.approx(100.0)
        m = 4.3 / 3  # row 2: window (1, 2, 1.3)
        sd = math.sqrt(((1 - m) ** 2 + (2 - m) ** 2 + (1.3 - m) ** 2) / 3)
        assert got[2] == pytest.approx(50 * (1 + 1.85 * math.tanh(0.5 * (1.3 - m) / sd)), abs=1e-12)


def test_caps_per_sector_leaves_symbols_without_sector_uncapped():
    panel = panel_multi({"AAA": [10.0] * 6, "BBB": [20.0] * 6, "CCC": [30.0] * 6}, sectors={"AAA": "XLK"})
    assert panel.sectors == ("XLK", None, None)
    disp = np.full((6, 3), 50.0)
    disp[1] = [80.0, 90.0, 85.0]
    for got in run_caps(panel, disp, {"rule": "fixed", "hold_days": 2}, (None, 1)):
        assert got == [("AAA", 1, 2, 4, "fixed"), ("BBB", 1, 2, 4, "fixed"), ("CCC", 1, 2, 4, "fixed")]
