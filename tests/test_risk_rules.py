"""Risk rules (docs/ENGINE.md "Risk rules"): trailing and ATR-multiple stops, fixed-fractional and fractional-Kelly
sizing, regime-multiplier sizing, the drawdown circuit breaker and the correlation cap, on hand-written candle
tables (freqtrade style). Every expected bar, price and weight below is worked out by hand from the table; each
case runs against BOTH the plain reference (tests/reference_engine.py) and the fast engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.metrics import portfolio_returns, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import (
    EXIT_REASONS, Caps, Costs, ExitParams, RiskParams, Span, SymbolMajorPrices, Thresholds, simulate, simulate_counted,
)
from optimizer.errors import ParameterError
from reference_engine import RefExit, RefRisk, ref_portfolio_returns, ref_trades, ref_trades_capped, ref_weights

ZERO = Costs(0.0, 0.0)


def panel_multi(rows_by_symbol: dict[str, list[tuple]]) -> tuple[Panel, np.ndarray]:
    """rows_by_symbol: symbol -> [(open, high, low, close, display), ...] (same length); symbols in sorted order."""
    syms = sorted(rows_by_symbol)
    T = len(rows_by_symbol[syms[0]])
    dates = pd.bdate_range("2024-01-02", periods=T)
    recs, disp = [], np.full((T, len(syms)), np.nan)
    for j, s in enumerate(syms):
        for t, (o, h, lo, c, d) in enumerate(rows_by_symbol[s]):
            recs.append({"date": dates[t], "symbol": s, "open": o, "high": h, "low": lo, "close": c})
            disp[t, j] = d
    return Panel.from_frame(pd.DataFrame(recs), sectors={s: None for s in syms}), disp


def flat(opens, displays):
    """Quiet bars: high = open + 0.5, low = open - 0.5, close = open."""
    return [(o, o + 0.5, o - 0.5, o, d) for o, d in zip(opens, displays)]


def as_tuples(ref: pd.DataFrame) -> list[tuple]:
    return sorted((int(r.symbol), int(r.signal_idx), int(r.entry_idx), int(r.exit_idx), round(float(r.entry_price), 9),
                   round(float(r.exit_price), 9), r.exit_reason) for r in ref.itertuples(index=False))


def fast_tuples(tr) -> list[tuple]:
    return sorted((int(tr.symbol[i]), int(tr.signal_idx[i]), int(tr.entry_idx[i]), int(tr.exit_idx[i]),
                   round(float(tr.entry_price[i]), 9), round(float(tr.exit_price[i]), 9),
                   EXIT_REASONS[int(tr.exit_reason[i])]) for i in range(len(tr)))


def run_exit(rows, exit_kw, buy=70.0, sell=30.0):
    """One symbol, uncapped: the reference's and both fast kernels' trades; asserts they agree, returns them."""
    panel, disp = panel_multi({"AAA": rows})
    T = len(rows)
    ref = as_tuples(ref_trades(panel, disp, buy, sell, RefExit(**exit_kw), (0.0, 0.0), 0, T, T))
    for kernel in ("symbol", "date"):
        fast, _ = simulate_counted(panel, disp, Thresholds(buy, sell), ExitParams(**exit_kw), ZERO, Span(0, T, T),
                                   kernel=kernel)
        assert fast_tuples(fast) == ref, f"{kernel} kernel: {fast_tuples(fast)} vs reference {ref}"
    return ref


def run_portfolio(rows_by_symbol, exit_kw, risk_kw, caps=None, regime_mult=None):
    """Date-major run with portfolio rules: the reference and the fast engine agree on trades and weights."""
    panel, disp = panel_multi(rows_by_symbol)
    T = panel.shape[0]
    rrisk = RefRisk(**risk_kw, regime_mult=regime_mult)
    ref = ref_trades_capped(panel, disp, 70.0, 30.0, RefExit(**exit_kw), (0.0, 0.0), 0, T, T, risk=rrisk)
    risk = RiskParams(**risk_kw, regime_sizing=regime_mult is not None)
    px = SymbolMajorPrices(panel, regime_multiplier=regime_mult)
    fast, _ = simulate_counted(panel, disp, Thresholds(70.0, 30.0), ExitParams(**exit_kw), ZERO, Span(0, T, T),
                               prices=px, risk=risk, kernel="date")
    assert fast_tuples(fast) == as_tuples(ref)
    if risk.weighted:
        f = fast.to_frame().sort_values(["symbol_idx", "entry_idx"])
        np.testing.assert_allclose(f["weight"].to_numpy(), ref["weight"].to_numpy(), rtol=1e-12)
    return panel, ref, fast


# ------------------------------------------------------------------------------------------------ trailing stop


TRAIL_ROWS = [
    (100, 101, 99, 100, 50),   # 0
    (100, 101, 99, 100, 75),   # 1 signal
    (100, 104, 99, 103, 50),   # 2 entry 100; level = 100 x 0.95 = 95 (the entry bar: peak = entry); peak -> 104
    (103, 110, 102, 108, 50),  # 3 level = 104 x 0.95 = 98.8, low 102; peak -> 110
    (108, 112, 104, 105, 50),  # 4 level = 110 x 0.95 = 104.5 (NOT this bar's high 112: 106.4); low 104 -> fill 104.5
    (105, 106, 104, 105, 50),  # 5
]


def test_trailing_stop_trails_the_highs_of_the_bars_before_and_fills_at_its_level():
    assert run_exit(TRAIL_ROWS, {"rule": "fixed", "hold_days": 4, "trail_stop": 0.05}) == \
        [(0, 1, 2, 4, 100.0, 104.5, "trail_stop")]


def test_trailing_stop_gap_through_fills_at_the_open():
    rows = [r if i != 4 else (100, 101, 98, 99, 50) for i, r in enumerate(TRAIL_ROWS)]  # opens at 100 < 104.5
    assert run_exit(rows, {"rule": "fixed", "hold_days": 4, "trail_stop": 0.05}) == \
        [(0, 1, 2, 4, 100.0, 100.0, "trail_stop")]


def test_trailing_stop_on_the_entry_bar_is_entry_times_one_minus_x():
    rows = [(100, 101, 99, 100, 50), (100, 101, 99, 100, 75), (100, 100.5, 96, 97, 50), (97, 98, 96, 97, 50)]
    # entry 100, level 100 x 0.97 = 97 on the entry bar (its own high does not count), low 96 -> 97
    assert run_exit(rows, {"rule": "first_dist", "trail_stop": 0.03}) == [(0, 1, 2, 2, 100.0, 97.0, "trail_stop")]


def test_highest_stop_wins_and_ties_go_to_the_fixed_stop():
    # stop_loss 10% (90) and trailing 5% (peak 104 -> 98.8 on bar 3): the trailing level is the higher one
    rows = TRAIL_ROWS[:3] + [(103, 104, 98, 99, 50), (99, 100, 98, 99, 50)]
    assert run_exit(rows, {"rule": "fixed", "hold_days": 4, "stop_loss": 0.10, "trail_stop": 0.05}) == \
        [(0, 1, 2, 3, 100.0, 98.8, "trail_stop")]
    # on the entry bar both are entry x 0.95 = 95: the tie goes to stop_loss
    rows = [(100, 101, 99, 100, 50), (100, 101, 99, 100, 75), (100, 100.5, 94, 95, 50), (95, 96, 94, 95, 50)]
    assert run_exit(rows, {"rule": "first_dist", "stop_loss": 0.05, "trail_stop": 0.05}) == \
        [(0, 1, 2, 2, 100.0, 95.0, "stop_loss")]


# ------------------------------------------------------------------------------------------------ ATR stop


def atr_rows(n_quiet: int, signal_at: int, tail: list[tuple]) -> list[tuple]:
    """Quiet bars open = close = 100, high 101, low 99: every true range is 2, so ATR14 = 2 from bar 13 on."""
    rows = [(100, 101, 99, 100, 75 if t == signal_at else 50) for t in range(n_quiet)]
    return rows + tail


def test_atr_stop_is_k_atr14_at_the_signal_below_the_entry():
    # signal at 15 (ATR14 = 2), entry at the open of 16 (100); k = 2 -> level 96; bar 17 dips to 95.5 -> 96
    rows = atr_rows(17, 15, [(99, 100, 95.5, 97, 50), (97, 98, 96, 97, 50)])
    assert run_exit(rows, {"rule": "fixed", "hold_days": 5, "atr_stop": 2.0}) == \
        [(0, 15, 16, 17, 100.0, 96.0, "atr_stop")]
    # the same dip with k = 3 (level 94) does not stop: the fixed exit (open of 21 does not exist -> open at end)
    out = run_exit(rows + [(97, 98, 96, 97, 50)] * 3, {"rule": "fixed", "hold_days": 5, "atr_stop": 3.0})
    assert out == [(0, 15, 16, 21, 100.0, 97.0, "fixed")]


def test_atr_stop_needs_an_atr_at_the_signal():
    # a signal at bar 5: no ATR14 yet (14 true ranges needed), so the trade has no ATR stop and the dip passes
    rows = atr_rows(7, 5, [(99, 100, 80, 97, 50), (97, 98, 96, 97, 50), (97, 98, 96, 97, 50)])
    assert run_exit(rows, {"rule": "fixed", "hold_days": 3, "atr_stop": 1.0}) == [(0, 5, 6, 9, 100.0, 97.0, "fixed")]


def test_atr_stop_gap_through_fills_at_the_open():
    rows = atr_rows(17, 15, [(93, 95, 92, 94, 50), (94, 95, 93, 94, 50)])  # opens at 93 below the level 96
    assert run_exit(rows, {"rule": "fixed", "hold_days": 5, "atr_stop": 2.0}) == \
        [(0, 15, 16, 17, 100.0, 93.0, "atr_stop")]


# ------------------------------------------------------------------------------------------------ sizing


def test_fixed_fractional_weight_is_risk_over_the_initial_stop_distance_capped():
    # signal at 15 (ATR14 = 2), entry at the open of 16 (100), close 102; the fixed_1d exit at the open of 17 (100)
    rows = atr_rows(16, 15, [(100, 101, 99, 102, 50), (100, 103, 99, 102, 50)])
    cases = [  # (exit, risk, expected weight)
        ({"stop_loss": 0.05}, {"risk_fraction": 0.01}, 0.2),               # 1% / 5%
        ({"stop_loss": 0.05, "trail_stop": 0.02}, {"risk_fraction": 0.01}, 0.25),  # 1% / 2% = 0.5 -> max_weight
        ({}, {"risk_fraction": 0.01}, 0.01),                                # no stop: the whole position at risk
        ({"atr_stop": 2.0}, {"risk_fraction": 0.01, "max_weight": 1.0}, 0.25),  # 2 x ATR 2 / close 100 = 4%
    ]
    for ex, rk, w in cases:
        panel, ref, fast = run_portfolio({"AAA": rows}, {"rule": "fixed", "hold_days": 1, **ex},
                                         {"sizing": "fixed_fractional", **rk})
        assert ref["weight"].tolist() == pytest.approx([w], rel=1e-12), (ex, rk)
        # absolute sizing: one position of weight w, the rest cash -> the day's return is w x the position's
        T = panel.shape[0]
        daily = portfolio_returns(fast, panel, Span(0, T, T))
        assert daily[16] == pytest.approx(w * (102 / 100 - 1), rel=1e-12)  # entry day: close 102 / entry 100
        assert daily[17] == pytest.approx(w * (100 / 102 - 1), rel=1e-12)  # exit at the open of 17: 100 / 102
        assert daily[:16].tolist() == [0.0] * 16


KELLY_WINS = [True, True, False, True, True, False, True, True, False, True, True]


def kelly_rows(wins: list[bool] = KELLY_WINS) -> list[tuple]:
    """One symbol, fixed_1d trades back to back: trade j signals at the close of 2j+1, enters at the open of 2j+2
    (100) and exits at the open of 2j+3 (102 = +2% when wins[j], else 99 = -1%); the exit bar's close signals the
    next trade. With KELLY_WINS: 7 wins and 3 losses among the first ten, then an eleventh trade."""
    opens = [100.0, 100.0]
    for win in wins:
        opens += [100.0, 102.0 if win else 99.0]
    disp = [75.0 if t % 2 == 1 else 50.0 for t in range(len(opens))]  # the last bar's signal has no next open
    return flat(opens, disp)


def test_kelly_weight_by_hand_from_the_trades_closed_by_the_signal():
    rows = kelly_rows()
    panel, ref, fast = run_portfolio({"AAA": rows}, {"rule": "fixed", "hold_days": 1},
                                     {"sizing": "kelly", "kelly_fraction": 0.5, "max_weight": 0.5})
    assert len(ref) == 11
    # trades 0..9 find fewer than 10 closed trades at their signal: fixed-fractional without a stop = risk_fraction
    assert ref["weight"].tolist()[:10] == pytest.approx([0.02] * 10)
    # trade 10 signals at bar 21, the exit bar of trade 9 (closed at 21 <= 21: counted): 10 trades, 7 wins of
    # +2%, 3 losses of -1% -> p = 0.7, b = 2, f* = 0.7 - 0.3 / 2 = 0.55, half Kelly = 0.275
    assert int(ref["signal_idx"].iloc[10]) == 21 and int(ref["exit_idx"].iloc[9]) == 21
    assert ref["weight"].iloc[10] == pytest.approx(0.275, rel=1e-9)
    # the same weights after the fact (uncapped, symbol-major path) and by the reference's post-hoc rule
    T = panel.shape[0]
    post, _ = simulate_counted(panel, panel_multi({"AAA": rows})[1], Thresholds(70.0, 30.0),
                               ExitParams("fixed", hold_days=1), ZERO, Span(0, T, T),
                               risk=RiskParams(sizing="kelly", kelly_fraction=0.5, max_weight=0.5))
    np.testing.assert_allclose(post.weight, fast.to_frame().sort_values("entry_idx")["weight"], rtol=0)
    w, _ = ref_weights(ref, panel, RefExit("fixed", hold_days=1), (0.0, 0.0), RefRisk(sizing="kelly", max_weight=0.5))
    np.testing.assert_allclose(w, ref["weight"], rtol=1e-12)


def test_kelly_caps_no_edge_and_window():
    rows = kelly_rows()
    # max_weight caps the bet; kelly_fraction 1 -> f* = 0.55 -> capped at 0.25
    _, ref, _ = run_portfolio({"AAA": rows}, {"rule": "fixed", "hold_days": 1}, {"sizing": "kelly", "kelly_fraction": 1.0})
    assert ref["weight"].iloc[10] == pytest.approx(0.25, rel=1e-12)
    # all ten closed trades lost: no edge, no bet
    _, ref, _ = run_portfolio({"AAA": kelly_rows([False] * 11)}, {"rule": "fixed", "hold_days": 1}, {"sizing": "kelly"})
    assert ref["weight"].iloc[10] == 0.0
    # three early losses, then the 7-3 pattern: trade 13 sees 13 closed trades. A window of 10 reads the last ten
    # (p = 0.7, b = 2: half Kelly 0.275); a window of 13 reads all (p = 7/13, b = 2: f* = 7/13 - 3/13 = 4/13)
    rows = kelly_rows([False] * 3 + KELLY_WINS)
    _, ref10, _ = run_portfolio({"AAA": rows}, {"rule": "fixed", "hold_days": 1},
                                {"sizing": "kelly", "kelly_window": 10, "max_weight": 0.5})
    _, ref13, _ = run_portfolio({"AAA": rows}, {"rule": "fixed", "hold_days": 1},
                                {"sizing": "kelly", "kelly_window": 13, "max_weight": 0.5})
    assert ref10["weight"].iloc[13] == pytest.approx(0.275, rel=1e-9)
    assert ref13["weight"].iloc[13] == pytest.approx(0.5 * 4 / 13, rel=1e-9)


def test_sizing_changes_portfolio_metrics_not_trade_returns():
    rows = kelly_rows()
    panel, disp = panel_multi({"AAA": rows})
    T = panel.shape[0]
    ev = Evaluator(panel)
    base = ev.run(Config.from_params({"exit": "fixed_1d"}), display=disp)
    for sizing in ("atr", "fixed_fractional", "kelly"):
        r = ev.run(Config.from_params({"exit": "fixed_1d", "sizing": sizing, "max_weight": 0.5}), display=disp)
        np.testing.assert_array_equal(r.trades.net_ret, base.trades.net_ret)
        for k in ("hit_rate", "avg_return", "win_loss", "sharpe", "avg_excess_return", "rank_score"):
            assert r.metrics[k] == base.metrics[k], (sizing, k)
        if sizing != "atr":  # one position at a time: relative atr weights change nothing, absolute ones do
            assert r.metrics["portfolio_sharpe"] != base.metrics["portfolio_sharpe"] or r.metrics["max_drawdown"] != base.metrics["max_drawdown"]
    assert T == len(rows)


def test_regime_sizing_scales_each_position_by_its_signal_multiplier():
    rows = flat([100, 100, 100, 101, 102, 103, 104, 105], [50, 75, 50, 50, 50, 50, 50, 50])
    mult = np.array([1.0, 0.25, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])  # 0.25 at the signal close (bar 1)
    panel, ref, fast = run_portfolio({"AAA": [(o, h, lo, c, d) for o, h, lo, c, d in rows]},
                                     {"rule": "fixed", "hold_days": 3}, {}, regime_mult=mult)
    assert fast.mult.tolist() == [0.25] and ref["mult"].tolist() == [0.25]
    T = panel.shape[0]
    daily = portfolio_returns(fast, panel, Span(0, T, T))
    # relative sizing, one position: the day's return is 0.25 x the position's (the rest of the portfolio in cash)
    assert daily[3] == pytest.approx(0.25 * (101 / 100 - 1), rel=1e-12)
    assert daily[5] == pytest.approx(0.25 * (103 / 102 - 1), rel=1e-12)  # exit at the open of 5: 103 / 102
    np.testing.assert_allclose(daily, ref_portfolio_returns(ref, panel, 0.0, 0, T), rtol=1e-12)


def test_regime_multiplier_is_the_contexts():
    from optimizer.engine.context import compute_context
    from test_context import _synthetic_panel

    p = _synthetic_panel(T=400, seed=4)
    m = SymbolMajorPrices(p).regime_multiplier()
    np.testing.assert_array_equal(m, compute_context(p)["regime_multiplier"])
    assert {1.0} < set(np.unique(m))  # the learned regime reduces some sessions


# ------------------------------------------------------------------------------------------------ breaker


def breaker_rows() -> dict[str, list[tuple]]:
    # fixed_3d trades; equity = the one position's path (relative sizing, zero costs):
    # entry at the open of 2 (100); closes 100, 95, 85 -> equity 0.85 at the close of 4: 15% below the peak 1.0
    closes = [100, 100, 100, 95, 85, 86, 86, 86, 86, 87, 88, 89, 90, 91]
    opens = [100, 100, 100, 96, 90, 86, 86, 86, 86, 87, 88, 89, 90, 91]
    disp = [50, 75, 50, 50, 50, 75, 75, 75, 50, 50, 50, 50, 50, 50]
    return {"AAA": [(o, max(o, c) + 0.5, min(o, c) - 0.5, c, d) for o, c, d in zip(opens, closes, disp)]}


def test_drawdown_breaker_refuses_entries_then_resumes_from_a_fresh_peak():
    ex = {"rule": "fixed", "hold_days": 3}
    # without the breaker the signal at the close of 5 (flat after the exit at the open of 5) enters at 6
    _, free, _ = run_portfolio(breaker_rows(), ex, {})
    assert as_tuples(free)[:2] == [(0, 1, 2, 5, 100.0, 86.0, "fixed"), (0, 5, 6, 9, 86.0, 87.0, "fixed")]
    # breaker 10%, cool-off 3: trips at the close of 4 (equity 0.85); closes 4, 5, 6 refuse entries; at the close
    # of 7 the peak restarts at the equity (0.86) and the signal of 7 enters at 8
    _, ref, _ = run_portfolio(breaker_rows(), ex, {"dd_breaker": 0.10, "dd_cooloff": 3})
    assert as_tuples(ref) == [(0, 1, 2, 5, 100.0, 86.0, "fixed"), (0, 7, 8, 11, 86.0, 89.0, "fixed")]
    # a 20% breaker never trips (the worst drawdown is 15%): the same trades as without it
    _, ref20, _ = run_portfolio(breaker_rows(), ex, {"dd_breaker": 0.20, "dd_cooloff": 3})
    assert as_tuples(ref20) == as_tuples(free)


# ------------------------------------------------------------------------------------------------ correlation cap


def corr_rows() -> dict[str, list[tuple]]:
    """AAA and BBB share every return (correlation 1), CCC has the opposite ones (-1). AAA signals at 12 (held
    from 13, fixed_10d); BBB (display 80) and CCC (75) both signal at 14."""
    T = 30
    r = 0.01 * np.sin(np.arange(T) * 1.7)
    paths = {"AAA": 100 * np.cumprod(1 + r), "BBB": 50 * np.cumprod(1 + r), "CCC": 80 * np.cumprod(1 - r)}
    sig = {"AAA": {12: 75}, "BBB": {14: 80}, "CCC": {14: 75}}
    return {s: [(c, c * 1.01, c * 0.99, c, sig[s].get(t, 50)) for t, c in enumerate(paths[s])] for s in paths}


def test_correlation_cap_refuses_a_correlated_entry_and_admits_an_uncorrelated_one():
    ex = {"rule": "fixed", "hold_days": 10}
    _, free, _ = run_portfolio(corr_rows(), ex, {})
    assert sorted((t[0], t[1]) for t in as_tuples(free)) == [(0, 12), (1, 14), (2, 14)]
    _, ref, _ = run_portfolio(corr_rows(), ex, {"corr_cap": 0.8, "corr_window": 10})
    assert sorted((t[0], t[1]) for t in as_tuples(ref)) == [(0, 12), (2, 14)]  # BBB refused (rho = 1 > 0.8)
    # too little history for the minimum number of return pairs (max(3, window // 2) = 5 of a 10-session window):
    # BBB's signal at 14 is admitted when the returns start at 11 (closes before 10 missing in every symbol)
    rows = corr_rows()
    for s in rows:
        rows[s] = [(np.nan, np.nan, np.nan, np.nan, 50) if t < 10 else r for t, r in enumerate(rows[s])]
    _, ref, _ = run_portfolio(rows, ex, {"corr_cap": 0.8, "corr_window": 10})
    assert sorted((t[0], t[1]) for t in as_tuples(ref)) == [(0, 12), (1, 14), (2, 14)]


def test_an_entry_accepted_at_the_same_close_counts_for_the_correlation_cap():
    rows = corr_rows()
    rows["AAA"] = [(o, h, lo, c, 50) for o, h, lo, c, _ in rows["AAA"]]
    rows["AAA"][14] = (*rows["AAA"][14][:4], 90)  # AAA now signals at 14 too, ranked first (90)
    _, ref, _ = run_portfolio(rows, {"rule": "fixed", "hold_days": 10}, {"corr_cap": 0.8, "corr_window": 10})
    assert sorted((t[0], t[1]) for t in as_tuples(ref)) == [(0, 14), (2, 14)]  # BBB refused against AAA's entry


# ------------------------------------------------------------------------------------------------ parameters


def test_portfolio_rules_force_the_date_major_kernel_and_refuse_the_symbol_kernel():
    panel, disp = panel_multi(breaker_rows())
    with pytest.raises(ParameterError, match="kernel"):
        simulate_counted(panel, disp, Thresholds(), ExitParams(), ZERO, Span(0, 14, 14),
                         risk=RiskParams(dd_breaker=0.1), kernel="symbol")


@pytest.mark.parametrize(("params", "message"), [
    ({"trail_stop": 1.0}, "trail_stop must be in (0, 1)"),
    ({"atr_stop": 0.0}, "atr_stop must be > 0"),
    ({"sizing": "optimal_f"}, "sizing must be one of equal, atr, fixed_fractional, kelly"),
    ({"kelly_window": 5}, "kelly_window must be an integer in [10, 1000]"),
    ({"dd_breaker": 0.0}, "dd_breaker must be in (0, 1)"),
    ({"corr_cap": 1.0}, "corr_cap must be in (0, 1)"),
    ({"corr_window": 2}, "corr_window must be an integer in [5, 252]"),
    ({"regime_sizing": "yes"}, "regime_sizing must be one of true, false"),
])
def test_risk_parameters_are_refused_with_their_rule(params, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        Config.from_params(params)


# ------------------------------------------------------------------------------------------------ random oracle


def test_portfolio_rules_match_the_reference_on_random_configurations():
    """Random exits, sizings, breakers, correlation caps, regime multipliers and caps on the oracle's synthetic
    panel: the date-major kernel's trades, weights, multipliers, daily portfolio returns and metrics equal the
    plain reference's; the rules really bind (fewer trades than without them) in many configurations."""
    from test_engine_oracle import Oracle, compare_metrics, compare_trades, fast_frame, random_config, synthetic_panel

    from optimizer.engine.signals import count_signals
    from reference_engine import ref_count_signals, ref_metrics

    oracle = Oracle(synthetic_panel(seed=31, T=220, N=12))
    panel = oracle.panel
    T = panel.shape[0]
    rng = np.random.default_rng(2026)
    bound = tripped = 0
    sizings = ("equal", "atr", "fixed_fractional", "kelly")
    for i in range(24):
        cfg = random_config(rng, T)
        cfg["buy"] = float(rng.uniform(55, 65))
        rk = {"sizing": sizings[i % 4], "risk_fraction": float(rng.uniform(0.005, 0.05)),
              "max_weight": float(rng.uniform(0.1, 0.6)), "kelly_fraction": float(rng.uniform(0.2, 1.0)),
              "kelly_window": int(rng.integers(10, 40))}
        if i % 3 != 2:
            rk["dd_breaker"] = float(rng.uniform(0.01, 0.08))
            rk["dd_cooloff"] = int(rng.integers(1, 15))
        if i % 3 != 1:
            rk["corr_cap"] = float(rng.uniform(0.05, 0.4))
            rk["corr_window"] = int(rng.integers(5, 40))
        mult = rng.choice([1.0, 0.5, 0.25, 0.1], T) if i % 2 else None
        caps = [None, (4, None), (None, 2)][i % 3]
        where = f"config {i}: {cfg} {rk} caps {caps}"
        disp = oracle.ref_display(cfg["score"])
        sig_start, sig_end, data_end = cfg["span"]
        args = (panel, disp, cfg["buy"], cfg["sell"], RefExit(**cfg["exit"]), cfg["costs"], sig_start, sig_end,
                data_end)
        kw = {} if caps is None else {"max_positions": caps[0], "max_per_sector": caps[1]}
        ref = ref_trades_capped(*args, **kw, risk=RefRisk(**rk, regime_mult=mult))
        free = ref_trades_capped(*args, **kw)
        span = Span(sig_start, sig_end, data_end)
        costs = Costs(*cfg["costs"])
        risk = RiskParams(**rk, regime_sizing=mult is not None)
        fast, _ = simulate_counted(panel, disp, Thresholds(cfg["buy"], cfg["sell"]), ExitParams(**cfg["exit"]),
                                   costs, span, None if caps is None else Caps(*caps), risk=risk,
                                   prices=SymbolMajorPrices(panel, regime_multiplier=mult))
        ff = fast.to_frame().rename(columns={"symbol_idx": "symbol", "regime_mult": "mult"})
        ff = ff.sort_values(["symbol", "entry_idx"], kind="stable").reset_index(drop=True)
        compare_trades(ref, fast_frame(fast), where, panel.symbols)
        if risk.weighted:
            np.testing.assert_allclose(ff["weight"], ref["weight"], rtol=1e-12, err_msg=where)
        if mult is not None:
            np.testing.assert_allclose(ff["mult"], ref["mult"], rtol=0, err_msg=where)
        absolute = rk["sizing"] in ("fixed_fractional", "kelly")
        np.testing.assert_allclose(portfolio_returns(fast, panel, span),
                                   ref_portfolio_returns(ref, panel, costs.per_side, sig_start, data_end, absolute),
                                   rtol=1e-10, atol=1e-14, err_msg=where)
        n_sig = ref_count_signals(disp, cfg["buy"], sig_start, sig_end)
        assert count_signals(disp, cfg["buy"], span) == n_sig
        compare_metrics(ref_metrics(ref, panel, cfg["span"], cfg["costs"], n_sig, absolute=absolute),
                        run_metrics(fast, panel, span, n_sig), where)
        bound += len(ref) < len(free)
        tripped += "dd_breaker" in rk and len(ref) < len(free)
    assert bound >= 8 and tripped >= 3, (bound, tripped)


def test_sizing_without_portfolio_rules_keeps_the_symbol_major_kernel_and_the_same_weights():
    """Uncapped sizing (atr, fixed_fractional, kelly, regime) runs the symbol-major kernel and sizes the trades
    afterwards (``trade_weights_nb``): the weights equal the date-major kernel's and the reference's."""
    from test_engine_oracle import synthetic_panel

    panel = synthetic_panel(seed=5, T=200, N=10)
    ev = Evaluator(panel)
    T = panel.shape[0]
    mult = np.where(np.arange(T) % 7 == 0, 0.25, 1.0)
    px = SymbolMajorPrices(panel, regime_multiplier=mult)
    disp = ev.display(Config.from_params({"variant": "B", "z_window": 10}))
    for sizing in ("atr", "fixed_fractional", "kelly"):
        ex = ExitParams("fixed", hold_days=5, stop_loss=0.04, atr_stop=2.0)
        risk = RiskParams(sizing=sizing, kelly_window=10, regime_sizing=True)
        out = [simulate_counted(panel, disp, Thresholds(60.0, 30.0), ex, ZERO, Span(20, T, T), prices=px, risk=risk,
                                kernel=k)[0].to_frame() for k in ("symbol", "date")]
        assert len(out[0]) > 30
        pd.testing.assert_frame_equal(out[0], out[1])
        ref = ref_trades(panel, disp, 60.0, 30.0, RefExit("fixed", hold_days=5, stop_loss=0.04, atr_stop=2.0),
                         (0.0, 0.0), 20, T, T)
        w, m = ref_weights(ref, panel, RefExit("fixed", hold_days=5, stop_loss=0.04, atr_stop=2.0), (0.0, 0.0),
                           RefRisk(sizing=sizing, kelly_window=10, regime_mult=mult))
        f = out[0].sort_values(["symbol_idx", "entry_idx"], kind="stable")
        np.testing.assert_allclose(f["weight"], w, rtol=1e-12)
        np.testing.assert_array_equal(f["regime_mult"], m)
