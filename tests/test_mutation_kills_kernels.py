"""Mutation-testing kill tests for the engine kernels (optimizer/engine/_kernels.py, simulate.py): issue 18 point 3.

Small inputs so that a mutant runs in about a second with the JIT off (bench/mutation, group ``kernels``): a tiny
random panel (5 symbols x 70 sessions) with missing bars, half-missing bars (a NaN high or low), opening gaps and
NaN displays, compared against the plain reference (tests/reference_engine.py) on both kernels, the fused path and
the parallel symbol blocks, for every exit rule, stop, sizing and portfolio rule; and the small kernels (median,
trade and curve statistics, correlation, Kelly, combine) against hand-computed values. With the JIT on the whole
file takes a few seconds (it reuses the kernels' compiled specializations).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import optimizer.engine.simulate as sim_mod
from optimizer.engine import _kernels as K
from optimizer.engine.metrics import portfolio_returns, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreTerms
from optimizer.engine.signals import count_signals
from optimizer.engine.simulate import (
    EXIT_REASONS, Caps, Costs, ExitParams, RiskParams, Span, SymbolMajorPrices, Thresholds, Trades, simulate,
    simulate_counted,
)
from optimizer.errors import ParameterError
from reference_engine import (
    RefExit, RefRisk, ref_atr14, ref_count_signals, ref_metrics, ref_portfolio_returns, ref_trades,
    ref_trades_capped, ref_weights,
)
from test_engine_oracle import compare_metrics, compare_trades, fast_frame

T, N = 70, 5
SECTORS = {"S0": "XLK", "S1": "XLK", "S2": "XLF", "S3": None, "S4": "XLF"}


def _market(seed: int = 17):
    """OHLC random walks with big opening gaps, 3 missing bars, a NaN high, a NaN low; terms of a display."""
    rng = np.random.default_rng(seed)
    close = rng.uniform(20, 80, N) * np.exp(np.cumsum(rng.normal(0.0, 0.025, (T, N)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    gap = rng.normal(0, 0.01, (T, N)) + np.where(rng.random((T, N)) < 0.06, rng.normal(0, 0.07, (T, N)), 0.0)
    op = prev * np.exp(gap)
    hi = np.maximum(op, close) * np.exp(np.abs(rng.normal(0, 0.015, (T, N))))
    lo = np.minimum(op, close) * np.exp(-np.abs(rng.normal(0, 0.015, (T, N))))
    # missing bars where no exit can fall due at their open (the reference does not move a fill due at a NaN open
    # to the next finite open; test_a_fill_due_at_a_missing_open_moves_to_the_next_open covers that by hand)
    for t, s in ((0, 3), (1, 3)):
        op[t, s] = hi[t, s] = lo[t, s] = close[t, s] = np.nan
    hi[30, 2] = np.nan  # half-missing bars: no trailing update, no take-profit, no stop on them
    lo[33, 0] = np.nan
    hi[12, 4] = np.nan
    close[35, 1] = np.nan  # a missing close: no portfolio return that day, no correlation pair
    dates = pd.bdate_range("2023-03-01", periods=T)
    syms = [f"S{j}" for j in range(N)]
    df = pd.DataFrame({"date": np.repeat(dates, N), "symbol": np.tile(syms, T), "open": op.ravel(),
                       "high": hi.ravel(), "low": lo.ravel(), "close": close.ravel()})
    panel = Panel.from_frame(df, sectors=SECTORS)
    # score terms with persistence (runs of distribution / accumulation days), NaN short terms
    walk = np.cumsum(rng.normal(0, 0.5, (T, N)), axis=0)
    ts = np.tanh(0.5 * (walk - walk.mean(0)) + rng.normal(0, 0.6, (T, N)))
    ts[rng.random((T, N)) < 0.05] = np.nan
    tl = np.tanh(rng.normal(0, 1, (T, N)))
    tp = np.tanh(rng.normal(0, 1, (T, N)))
    sg = 1 / (1 + np.exp(-rng.normal(0, 1, (T, N))))
    terms = tuple(np.asfortranarray(x) for x in (ts, tl, tp, sg))
    for x in terms:
        x.setflags(write=False)
    return panel, terms


PANEL, TERMS = _market()


def display_of(terms, ws, wl, wp, lo, hi) -> np.ndarray:
    """The display by the formula of docs/ENGINE.md, in numpy (the same operation order as the kernels)."""
    ts, tl, tp, sg = terms
    v = (ws * ts + wl * tl + wp * tp) * (lo + (hi - lo) * sg)
    with np.errstate(invalid="ignore"):
        return (np.clip(v, -1.0, 1.0) + 1.0) * 50.0


# ------------------------------------------------------------------------------------------ uncapped configurations

EXITS = [
    {"rule": "fixed", "hold_days": 3},
    {"rule": "fixed", "hold_days": 1, "stop_loss": 0.02},
    {"rule": "fixed", "hold_days": 6, "take_profit": 0.03, "trail_stop": 0.04},
    {"rule": "first_dist"},
    {"rule": "first_dist", "stop_loss": 0.03, "take_profit": 0.05},
    {"rule": "2x_consec_dist", "time_stop": 4},
    {"rule": "2x_consec_dist", "atr_stop": 1.0},
    {"rule": "score_decay"},
    {"rule": "score_decay", "trail_stop": 0.03, "time_stop": 9},
    {"rule": "hybrid", "max_days": 5},
    {"rule": "hybrid", "max_days": 8, "time_stop": 3, "atr_stop": 0.7, "take_profit": 0.04},
    {"rule": "fixed", "hold_days": 4, "time_stop": 2, "stop_loss": 0.04, "atr_stop": 0.5, "trail_stop": 0.06},
]
SPANS = [(0, T, T), (5, 50, 62), (20, T - 1, T), (3, 40, 40)]


def _uncapped_case(i: int):
    ex = EXITS[i % len(EXITS)]
    sig_start, sig_end, data_end = SPANS[i % len(SPANS)]
    weights = [(0.6, 0.3, 0.1, 0.7, 1.3), (0.9, 0.05, 0.05, 0.2, 1.8), (0.4, 0.4, 0.2, 1.0, 1.0)][i % 3]
    buy, sell = [(60.0, 40.0), (55.0, 45.0), (66.0, 35.0)][i % 3]
    costs = [(0.0, 0.0), (1.0, 5.0), (3.0, 7.0)][i % 3]
    return ex, (sig_start, sig_end, data_end), weights, buy, sell, costs


def _check_uncapped(i: int, rows: bool = False, entry_ok: bool = False) -> int:
    ex, (s0, s1, s2), (ws, wl, wp, lo, hi), buy, sell, costs = _uncapped_case(i)
    disp = display_of(TERMS, ws, wl, wp, lo, hi)
    if rows:  # per-session thresholds
        buy_r = buy + np.where(np.arange(T) % 5 == 0, 8.0, 0.0)
        sell_r = sell - np.where(np.arange(T) % 7 == 0, 6.0, 0.0)
    else:
        buy_r, sell_r = np.full(T, buy), np.full(T, sell)
    ok = (np.arange(T) % 4 != 2) if entry_ok else np.ones(T, bool)
    # entry_ok false at t is a session whose close never signals: a buy threshold of +inf for the reference
    buy_ref = np.where(ok, buy_r, np.inf)
    ref = ref_trades(PANEL, disp, buy_ref, sell_r, RefExit(**ex), costs, s0, s1, s2)
    n_ref = ref_count_signals(disp, buy_ref, s0, s1)
    span, cst = Span(s0, s1, s2), Costs(*costs)
    th = Thresholds(buy, sell)
    kw = {"rows": (buy_r, sell_r) if rows else None, "entry_ok": ok if entry_ok else None}
    where = f"case {i} {ex} span {(s0, s1, s2)} rows={rows} entry_ok={entry_ok}"
    terms = ScoreTerms(*TERMS, ws, wl, wp, lo, hi)
    for kernel in ("symbol", "date"):
        for src in (disp, terms):
            tr, n_sig = simulate_counted(PANEL, src, th, ExitParams(**ex), cst, span, kernel=kernel, **kw)
            w = f"{where} kernel={kernel} fused={src is terms}"
            compare_trades(ref, fast_frame(tr), w, PANEL.symbols)
            assert n_sig == n_ref, w
            assert tr.weight is None and tr.mult is None and not tr.absolute
        # each kernel's own trade order (symbol-major: an open trade can come before another symbol's trades)
        compare_metrics(ref_metrics(ref, PANEL, (s0, s1, s2), costs, n_ref),
                        run_metrics(tr, PANEL, span, n_ref), f"{where} kernel={kernel}")
    np.testing.assert_allclose(portfolio_returns(tr, PANEL, span),
                               ref_portfolio_returns(ref, PANEL, cst.per_side, s0, s2), rtol=1e-12, atol=1e-15)
    return len(ref)


@pytest.mark.parametrize("i", range(len(EXITS)))
def test_every_exit_rule_both_kernels_and_the_fused_path_equal_the_reference(i):
    assert _check_uncapped(i) > 0
    _check_uncapped(i + len(EXITS), rows=True, entry_ok=bool(i % 2))


def test_the_table_covers_every_exit_reason():
    """The configurations above really reach every exit reason (so each exit path is compared)."""
    seen = set()
    for i in range(2 * len(EXITS)):
        ex, (s0, s1, s2), (ws, wl, wp, lo, hi), buy, sell, costs = _uncapped_case(i)
        tr = simulate(PANEL, display_of(TERMS, ws, wl, wp, lo, hi), Thresholds(buy, sell), ExitParams(**ex),
                      Costs(*costs), Span(s0, s1, s2))
        seen |= {EXIT_REASONS[r] for r in tr.exit_reason}
    assert seen == set(EXIT_REASONS)


def test_parallel_blocks_equal_the_serial_kernel_and_the_reference(monkeypatch):
    """Uneven symbol blocks (the parallel driver, blocks collected in symbol order) give the reference's trades."""
    monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
    monkeypatch.setattr(sim_mod, "_blocks", lambda n: np.array([0, 2, 3, n], dtype=np.int64))
    # (not a fork of a process that launched the threads: the parallel driver really runs; _THREADS_OWNER is left
    # as it is, so a later fork in this process still knows who launched them)
    assert K.use_parallel(T * N, 0)
    for i in (0, 4, 7, 10):
        ex, (s0, s1, s2), (ws, wl, wp, lo, hi), buy, sell, costs = _uncapped_case(i)
        disp = display_of(TERMS, ws, wl, wp, lo, hi)
        ref = ref_trades(PANEL, disp, buy, sell, RefExit(**ex), costs, s0, s1, s2)
        for src in (disp, ScoreTerms(*TERMS, ws, wl, wp, lo, hi)):
            tr, n_sig = simulate_counted(PANEL, src, Thresholds(buy, sell), ExitParams(**ex), Costs(*costs),
                                         Span(s0, s1, s2))
            compare_trades(ref, fast_frame(tr), f"parallel case {i}", PANEL.symbols)
            # trades come back in symbol order (blocks in order)
            assert (np.diff(tr.symbol) >= 0).all()
            assert n_sig == ref_count_signals(disp, buy, s0, s1)


@pytest.mark.parametrize("parallel", [False, True])
def test_trade_buffer_retry_returns_every_trade(monkeypatch, parallel):
    """A 1-session hold re-entered on every close beats the first buffer guess (rows x symbols / 8 + 16)."""
    if parallel:
        monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
        monkeypatch.setattr(sim_mod, "_blocks", lambda n: np.array([0, 1, n], dtype=np.int64))
    disp = np.full((T, N), 90.0)
    ref = ref_trades(PANEL, disp, 50.0, 10.0, RefExit("fixed", hold_days=1), (0.0, 0.0), 0, T, T)
    assert len(ref) > T * N // 8 + 16
    for kernel in ("symbol", "date"):
        if parallel and kernel == "date":
            continue
        tr = simulate(PANEL, disp, Thresholds(50.0, 10.0), ExitParams("fixed", hold_days=1), Costs(0.0, 0.0),
                      Span(0, T, T)) if kernel == "symbol" else \
            simulate_counted(PANEL, disp, Thresholds(50.0, 10.0), ExitParams("fixed", hold_days=1), Costs(0.0, 0.0),
                             Span(0, T, T), kernel="date")[0]
        compare_trades(ref, fast_frame(tr), f"retry {kernel}", PANEL.symbols)


# ---------------------------------------------------------------------------------- caps, sizing, portfolio rules

PORTFOLIO = [
    # (exit, risk, caps, regime multiplier)
    ({"rule": "fixed", "hold_days": 4}, {}, (2, None), False),
    ({"rule": "first_dist", "stop_loss": 0.03}, {}, (None, 1), False),
    ({"rule": "hybrid", "max_days": 6, "trail_stop": 0.05}, {"sizing": "atr"}, (3, 1), True),
    ({"rule": "fixed", "hold_days": 2, "atr_stop": 1.0}, {"sizing": "fixed_fractional", "risk_fraction": 0.01,
                                                          "max_weight": 0.3}, None, True),
    ({"rule": "fixed", "hold_days": 2}, {"sizing": "kelly", "kelly_window": 12, "kelly_fraction": 0.8,
                                         "max_weight": 0.9}, None, False),
    ({"rule": "2x_consec_dist", "take_profit": 0.04}, {"dd_breaker": 0.02, "dd_cooloff": 3}, None, False),
    ({"rule": "fixed", "hold_days": 3, "stop_loss": 0.02}, {"sizing": "fixed_fractional", "dd_breaker": 0.015,
                                                            "dd_cooloff": 2, "risk_fraction": 0.05}, None, True),
    ({"rule": "score_decay", "time_stop": 5}, {"corr_cap": 0.1, "corr_window": 10}, None, False),
    ({"rule": "fixed", "hold_days": 5}, {"corr_cap": 0.2, "corr_window": 20, "sizing": "kelly", "kelly_window": 10},
     (3, None), True),
    ({"rule": "first_dist", "trail_stop": 0.04, "atr_stop": 0.8}, {"sizing": "atr", "dd_breaker": 0.03,
                                                                   "dd_cooloff": 4, "corr_cap": 0.3,
                                                                   "corr_window": 8}, (2, 1), False),
]
MULT = np.where(np.arange(T) % 6 == 0, 0.25, np.where(np.arange(T) % 6 == 3, 0.5, 1.0))


@pytest.mark.parametrize("i", range(len(PORTFOLIO)))
def test_caps_sizing_and_portfolio_rules_equal_the_reference(i):
    ex, rk, caps, regime = PORTFOLIO[i]
    ws, wl, wp, lo, hi = 0.6, 0.3, 0.1, 0.7, 1.3
    disp = display_of(TERMS, ws, wl, wp, lo, hi)
    s0, s1, s2 = SPANS[i % 2]
    costs = (1.0, 4.0)
    mult = MULT if regime else None
    kw = {} if caps is None else {"max_positions": caps[0], "max_per_sector": caps[1]}
    args = (PANEL, disp, 58.0, 42.0, RefExit(**ex), costs, s0, s1, s2)
    ref = ref_trades_capped(*args, **kw, risk=RefRisk(**rk, regime_mult=mult))
    free = ref_trades(*args)
    risk = RiskParams(**rk, regime_sizing=regime)
    span, cst = Span(s0, s1, s2), Costs(*costs)
    absolute = risk.sizing in ("fixed_fractional", "kelly")
    n_ref = ref_count_signals(disp, 58.0, s0, s1)
    for src in (disp, ScoreTerms(*TERMS, ws, wl, wp, lo, hi)):
        fast, n_sig = simulate_counted(PANEL, src, Thresholds(58.0, 42.0), ExitParams(**ex), cst, span,
                                       None if caps is None else Caps(*caps), risk=risk,
                                       prices=SymbolMajorPrices(PANEL, regime_multiplier=mult), kernel="date")
        where = f"portfolio case {i}: {ex} {rk} caps {caps} fused={src is not disp}"
        compare_trades(ref, fast_frame(fast), where, PANEL.symbols)
        assert n_sig == n_ref, where
        assert fast.absolute == absolute
        ff = fast.to_frame().sort_values(["symbol_idx", "entry_idx"], kind="stable")
        if risk.weighted:
            np.testing.assert_allclose(ff["weight"], ref["weight"], rtol=1e-12, err_msg=where)
        else:
            assert fast.weight is None
        if regime:
            np.testing.assert_array_equal(ff["regime_mult"], ref["mult"], err_msg=where)
        else:
            assert fast.mult is None
        np.testing.assert_allclose(portfolio_returns(fast, PANEL, span),
                                   ref_portfolio_returns(ref, PANEL, cst.per_side, s0, s2, absolute),
                                   rtol=1e-12, atol=1e-15, err_msg=where)
        compare_metrics(ref_metrics(ref, PANEL, (s0, s1, s2), costs, n_ref, absolute=absolute),
                        run_metrics(fast, PANEL, span, n_ref), where)
    if caps is not None or "dd_breaker" in rk or "corr_cap" in rk:
        assert len(ref) < len(free), f"portfolio case {i}: the rule does not bind"


@pytest.mark.parametrize("sizing", ["atr", "fixed_fractional", "kelly"])
def test_uncapped_sizing_weights_equal_the_reference_on_both_kernels(sizing):
    """Without caps or portfolio rules the symbol-major kernel runs and sizes afterwards (trade_weights_nb): the
    weights equal the reference's and the date-major kernel's (Kelly from the trades closed by each signal)."""
    disp = display_of(TERMS, 0.6, 0.3, 0.1, 0.7, 1.3)
    exits = [{"rule": "fixed", "hold_days": 2, "stop_loss": 0.06, "atr_stop": 1.5},
             {"rule": "fixed", "hold_days": 3, "trail_stop": 0.03},
             {"rule": "first_dist", "stop_loss": 0.5, "atr_stop": 4.0}]
    for j, ex in enumerate(exits):
        for regime in (False, True):
            mult = MULT if regime else None
            rk = {"sizing": sizing, "kelly_window": 10, "kelly_fraction": 0.9, "max_weight": 0.35 + 0.3 * j,
                  "risk_fraction": 0.004 * (j + 1)}
            ref = ref_trades(PANEL, disp, 55.0, 40.0, RefExit(**ex), (2.0, 3.0), 0, T, T)
            w, m = ref_weights(ref, PANEL, RefExit(**ex), (2.0, 3.0), RefRisk(**rk, regime_mult=mult))
            if sizing == "kelly":
                assert len(set(np.round(w, 12))) > 2  # Kelly estimates, not only the fallback
            out = []
            for kernel in ("symbol", "date"):
                tr, _ = simulate_counted(PANEL, disp, Thresholds(55.0, 40.0), ExitParams(**ex), Costs(2.0, 3.0),
                                         Span(0, T, T), risk=RiskParams(**rk, regime_sizing=regime),
                                         prices=SymbolMajorPrices(PANEL, regime_multiplier=mult), kernel=kernel)
                f = tr.to_frame().sort_values(["symbol_idx", "entry_idx"], kind="stable")
                np.testing.assert_allclose(f["weight"], w, rtol=1e-12, err_msg=f"{ex} {kernel} regime={regime}")
                if regime:
                    np.testing.assert_array_equal(f["regime_mult"], m)
                else:
                    assert "regime_mult" not in f
                out.append(f)
            pd.testing.assert_frame_equal(out[0].reset_index(drop=True), out[1].reset_index(drop=True))


def test_atr_sizing_falls_back_to_the_cross_sectional_median_then_to_one():
    """ATR sizing: 1 / (ATR14 / close) at the signal; a symbol without an ATR14 yet takes the session's median
    ATR% of the others (atr_median), a session where nobody has one weighs 1."""
    px = SymbolMajorPrices(PANEL)
    atr = ref_atr14(PANEL)
    close = PANEL["close"]
    med = px.atr_median()
    assert np.isnan(med[:13]).all() and np.isfinite(med[13:]).all()
    with np.errstate(invalid="ignore"):
        pct = atr / close
    np.testing.assert_allclose(med[20], np.median(pct[20]), rtol=1e-12)
    np.testing.assert_allclose(med[14], np.median(pct[14, [0, 1, 2, 4]]), rtol=1e-12)  # S3: no ATR14 yet
    np.testing.assert_allclose(px["atr14"], atr.T, rtol=1e-12)
    assert px.nbytes == 2 * T * N * 8  # atr14 and close (from the panel's own arrays)
    C, A = px["close"], px["atr14"]
    w = K._static_weight(K.SIZE_ATR, 3, 14, C, A, med, np.nan, np.nan, np.nan, 0.02, 0.25)
    assert w == pytest.approx(1.0 / med[14], rel=1e-12)
    assert K._static_weight(K.SIZE_ATR, 0, 5, C, A, med, np.nan, np.nan, np.nan, 0.02, 0.25) == 1.0
    assert math.isnan(atr[30, 2])  # S2's high is missing on 30: no ATR14 that session -> the median
    assert K._static_weight(K.SIZE_ATR, 2, 30, C, A, med, np.nan, np.nan, np.nan, 0.02, 0.25) == \
        pytest.approx(1.0 / med[30], rel=1e-12)
    assert K._static_weight(K.SIZE_ATR, 2, 31, C, A, med, np.nan, np.nan, np.nan, 0.02, 0.25) == \
        pytest.approx(close[31, 2] / atr[31, 2], rel=1e-12)


def test_fixed_fractional_weight_by_hand():
    """min(max_weight, risk_fraction / d), d the tightest of stop_loss, trail_stop and k x ATR14 / close; 1 when
    no stop (so the cap)."""
    C = np.array([[100.0, 100.0]])
    A = np.array([[2.0, np.nan]])
    med = np.ones(2)
    sw = K._static_weight
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.05, np.nan, np.nan, 0.01, 0.9) == pytest.approx(0.2)
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.05, np.nan, 0.04, 0.01, 0.9) == pytest.approx(0.25)
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.05, 1.5, 0.04, 0.01, 0.9) == pytest.approx(1 / 3)  # 1.5 x 2 / 100
    assert sw(K.SIZE_FF, 0, 1, C, A, med, 0.05, 1.5, np.nan, 0.01, 0.9) == pytest.approx(0.2)  # no ATR: ignored
    assert sw(K.SIZE_FF, 0, 0, C, A, med, np.nan, np.nan, np.nan, 0.01, 0.9) == pytest.approx(0.01)
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.005, np.nan, np.nan, 0.01, 0.9) == pytest.approx(0.9)  # capped
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 2.0, np.nan, np.nan, 0.01, 0.9) == pytest.approx(0.01)  # d <= 1
    assert sw(K.SIZE_EQUAL, 0, 0, C, A, med, 0.05, np.nan, np.nan, 0.01, 0.9) == 1.0


def test_kelly_by_hand():
    """f* = p - (1 - p) / b over the last min(n, window) trades of the ring buffer; x fraction; clipped."""
    k = K._kelly
    hist = np.zeros(12)
    wins = [0.10, 0.10, 0.10, 0.10, 0.10, 0.10]       # p = 6/10, b = 0.10 / 0.05 = 2 -> f* = 0.6 - 0.4 / 2 = 0.4
    losses = [-0.05, -0.05, -0.05, -0.05]
    for j, r in enumerate(wins + losses):
        hist[j] = r
    assert k(hist, 10, 12, 0.5, 0.9, -1.0) == pytest.approx(0.2)
    assert k(hist, 9, 12, 0.5, 0.9, -1.0) == -1.0      # 9 < KELLY_MIN_TRADES: the fallback
    assert k(hist, 10, 12, 1.0, 0.3, -1.0) == pytest.approx(0.3)   # capped at max_weight
    neg = np.array([0.01] * 2 + [-0.05] * 8 + [0.0] * 2)   # p = 0.2, b = 0.2 -> f* < 0 -> 0
    assert k(neg, 10, 12, 1.0, 0.9, -1.0) == 0.0
    allwin = np.array([0.02] * 12)                      # no loss: f* = p = 1
    assert k(allwin, 12, 12, 0.5, 0.9, -1.0) == pytest.approx(0.5)
    nowin = np.array([-0.02] * 12)                      # no win: 0
    assert k(nowin, 12, 12, 0.5, 0.9, -1.0) == 0.0
    zero_loss = np.array([0.02] * 6 + [0.0] * 6)        # losses sum 0: f* = p = 0.5
    assert k(zero_loss, 12, 12, 1.0, 0.9, -1.0) == pytest.approx(0.5)
    # ring buffer: 14 written into a window of 10 -> slots hold the last 10 (written at n % 10)
    ring = np.zeros(10)
    seq = [-0.05] * 4 + wins + losses                   # the first four losses are overwritten
    for j, r in enumerate(seq):
        ring[j % 10] = r
    assert k(ring, len(seq), 10, 0.5, 0.9, -1.0) == pytest.approx(0.2)
    # a window larger than the history reads only what was written
    assert k(hist, 10, 12, 0.5, 0.9, -1.0) == k(hist[:10].copy(), 10, 10, 0.5, 0.9, -1.0)


def test_correlation_kernel_equals_numpy_and_needs_enough_pairs():
    rng = np.random.default_rng(4)
    C = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (3, 40)), axis=1))
    C[1, 10] = np.nan  # two returns of symbol 1 are missing
    for t, window in ((39, 10), (20, 15), (12, 30), (39, 39)):
        k0 = max(1, t - window + 1)
        ra = C[0, k0:t + 1] / C[0, k0 - 1:t] - 1
        rb = C[1, k0:t + 1] / C[1, k0 - 1:t] - 1
        ok = np.isfinite(ra) & np.isfinite(rb)
        want = np.corrcoef(ra[ok], rb[ok])[0, 1]
        assert K._corr(C, 0, 1, t, window, 3) == pytest.approx(want, rel=1e-10, abs=1e-12)
    k0 = 39 - 10 + 1
    n_ok = 10
    assert math.isnan(K._corr(C, 0, 2, 39, 10, n_ok + 1))   # fewer pairs than min_obs
    assert not math.isnan(K._corr(C, 0, 2, 39, 10, n_ok))
    flat = C.copy()
    flat[2] = 7.0                                           # a constant series: NaN
    assert math.isnan(K._corr(flat, 0, 2, 39, 10, 3))
    assert math.isnan(K._corr(flat, 2, 0, 39, 10, 3))
    assert K._corr(C, 0, 0, 39, 10, 3) == pytest.approx(1.0)
    assert k0 >= 1


def test_median_kernel_equals_numpy():
    rng = np.random.default_rng(8)
    for n in list(range(1, 14)) + [40, 41]:
        for _ in range(6):
            r = rng.choice([-0.02, 0.0, 0.01, 0.03], n) if n % 3 == 0 else rng.normal(0, 1, n)
            assert K._median(r) == np.median(r), (n, r)
    assert math.isnan(K._median(np.array([1.0, np.nan, 2.0])))
    x = np.array([3.0, 1.0, 2.0, 5.0])
    K._median(x)
    np.testing.assert_array_equal(x, [3.0, 1.0, 2.0, 5.0])   # works on a copy


def test_trade_and_curve_statistics_by_hand():
    r = np.array([0.1, -0.05, 0.0, 0.2])
    mean, sd, nw, mw, ml, nw2, nl = K.trade_stats_nb(r)
    assert mean == pytest.approx(0.0625)
    assert sd == pytest.approx(np.std(r, ddof=1))
    assert (nw, nw2, nl) == (2, 2, 2)
    assert mw == pytest.approx(0.15) and ml == pytest.approx(-0.025)   # 0 counts as a loss
    assert K.trade_stats_nb(np.array([0.3])) == (0.3, 0.0, 1, 0.3, 0.0, 1, 0)
    assert K.trade_stats_nb(np.array([0.1, 0.3]))[1] == pytest.approx(np.std([0.1, 0.3], ddof=1))  # two trades
    assert K.trade_stats_nb(np.array([-0.3])) == (-0.3, 0.0, 0, 0.0, -0.3, 0, 1)
    assert K.trade_stats_nb(np.zeros(0)) == (0.0, 0.0, 0, 0.0, 0.0, 0, 0)
    d = np.array([0.1, -0.2, 0.05, 0.1, -0.1])
    mean, sd, mdd = K.curve_stats_nb(d)
    eq = np.cumprod(1 + d)
    assert mean == pytest.approx(d.mean()) and sd == pytest.approx(np.std(d, ddof=1))
    assert mdd == pytest.approx(1 - (1.1 * 0.8) / 1.1)  # equity 1.1, 0.88, 0.924, 1.0164, 0.91476
    assert mdd == pytest.approx(np.max(1 - eq / np.maximum.accumulate(np.maximum(eq, 1.0))))
    assert K.curve_stats_nb(np.array([-0.1])) == pytest.approx((-0.1, 0.0, 0.1))
    assert K.curve_stats_nb(np.array([0.1, 0.2])) == pytest.approx((0.15, np.std([0.1, 0.2], ddof=1), 0.0))
    assert K.curve_stats_nb(np.zeros(0)) == (0.0, 0.0, 0.0)


def test_missing_holds_by_hand():
    ent = np.array([0, 2, 3, 5, 1], dtype=np.int64)
    ext = np.array([4, 4, 9, 9, 8], dtype=np.int64)   # holds 4, 2, 6, 4, 7 (the last one open)
    is_open = np.array([False, False, False, False, True])
    out, hmax = K.missing_holds_nb(ent, ext, is_open, np.zeros(0, np.bool_))
    assert out.tolist() == [2, 4, 6] and hmax == 6
    have = np.zeros(7, np.bool_)
    have[4] = True
    out, hmax = K.missing_holds_nb(ent, ext, is_open, have)
    assert out.tolist() == [2, 6] and hmax == 6
    have = np.ones(5, np.bool_)                        # 6 is beyond the table
    assert K.missing_holds_nb(ent, ext, is_open, have)[0].tolist() == [6]
    out, hmax = K.missing_holds_nb(ent[4:], ext[4:], is_open[4:], have)
    assert out.tolist() == [] and hmax == -1


def test_combine_kernel_by_hand_clips_both_sides_and_keeps_nan():
    ts = np.array([[0.5, np.nan, 1.0, -1.0, 0.2]])
    tl = np.array([[0.5, 0.5, 1.0, -1.0, -0.4]])
    tp = np.array([[0.0, 0.0, 1.0, -1.0, 0.1]])
    sg = np.array([[0.5, 0.5, 1.0, 0.0, 0.25]])
    out = K.combine_nb(ts, tl, tp, sg, 0.5, 0.3, 0.2, 0.5, 1.5)
    # intensity lo + (hi - lo) sg: 1.0, 1.0, 1.5, 0.5, 0.75; raw 0.4, nan, 1.0, -1.0, 0.1 - 0.12 + 0.02 = 0.0
    np.testing.assert_allclose(out[0, [0, 2, 3, 4]], [70.0, 100.0, 25.0, 50.0], rtol=0, atol=1e-12)
    assert math.isnan(out[0, 1])
    out = K.combine_nb(ts, tl, tp, sg, 1.0, 0.0, 0.0, 3.0, 3.0)  # 3 x ts: clipped at 1 and -1
    np.testing.assert_allclose(out[0, [0, 2, 3, 4]], [100.0, 100.0, 0.0, 80.0], atol=1e-12)
    terms = ScoreTerms(*TERMS, 0.6, 0.3, 0.1, 0.7, 1.3)
    np.testing.assert_array_equal(terms.display(), display_of(TERMS, 0.6, 0.3, 0.1, 0.7, 1.3))


def test_portfolio_returns_kernel_by_hand():
    """Entry day close/(entry (1+c)) - 1, held days close/prev - 1, exit day fill (1-c)/prev - 1, both on one day
    fill (1-c)/(entry (1+c)) - 1; open positions marked to the last close; relative vs absolute weights."""
    Cs = np.array([[10.0, 11.0, 12.0, 12.0, 9.0], [20.0, 20.0, 22.0, 22.0, 22.0]])
    c = 0.01
    sym = np.array([0, 1, 1], dtype=np.int64)
    ent = np.array([1, 2, 4], dtype=np.int64)
    ext = np.array([3, 2, 4], dtype=np.int64)
    ep = np.array([10.0, 21.0, 22.0])
    xp = np.array([13.0, 23.0, 22.0])
    is_open = np.array([False, False, True])
    none = np.zeros(0)
    out = K.portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, none, none, False, np.array([c]), 0, 5)
    d1 = 11.0 / (10.0 * 1.01) - 1
    d2a, d2b = 12.0 / 11.0 - 1, 23.0 * 0.99 / (21.0 * 1.01) - 1
    d3 = 13.0 * 0.99 / 12.0 - 1
    d4 = 22.0 / (22.0 * 1.01) - 1
    np.testing.assert_allclose(out, [0.0, d1, (d2a + d2b) / 2, d3, d4], rtol=1e-12)
    w = np.array([0.5, 2.0, 1.0])
    m = np.array([1.0, 0.5, 0.25])
    out = K.portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, w, m, False, np.array([c]), 1, 5)
    np.testing.assert_allclose(out, [d1, (0.5 * d2a + 1.0 * d2b) / 2.5, d3, 0.25 * d4], rtol=1e-12)
    out = K.portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, w, m, True, np.array([c]), 1, 4)
    # exposure 0.5, 1.5 (scaled down to 1), 0.5
    np.testing.assert_allclose(out, [0.5 * d1, (0.5 * d2a + 1.0 * d2b) / 1.5, 0.5 * d3], rtol=1e-12)
    # one cost per trade (the walk-forward's stitched trades): each trade's segments use its own cost
    out = K.portfolio_returns_nb(Cs, sym, ent, ext, ep, xp, is_open, none, none, False, np.array([0.01, 0.03, 0.02]),
                                 0, 5)
    d2b3 = 23.0 * 0.97 / (21.0 * 1.03) - 1
    d4_2 = 22.0 / (22.0 * 1.02) - 1
    np.testing.assert_allclose(out, [0.0, d1, (d2a + d2b3) / 2, d3, d4_2], rtol=1e-12)


# ------------------------------------------------------------------------------------- missing opens (by hand)

def _one_symbol(rows):
    """rows: (open, high, low, close, display) per session, one symbol; NaN marks a missing value."""
    a = np.array(rows, dtype=float)
    df = pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=len(rows)), "symbol": "AAA",
                       "open": a[:, 0], "high": a[:, 1], "low": a[:, 2], "close": a[:, 3]})
    return Panel.from_frame(df, sectors={"AAA": None}), a[:, 4:5].copy()


def _both_kernels(rows, exit_kw):
    panel, disp = _one_symbol(rows)
    n = len(rows)
    out = []
    for kernel in ("symbol", "date"):
        tr, _ = simulate_counted(panel, disp, Thresholds(70.0, 30.0), ExitParams(**exit_kw), Costs(0.0, 0.0),
                                 Span(0, n, n), kernel=kernel)
        out.append([(int(tr.signal_idx[i]), int(tr.entry_idx[i]), int(tr.exit_idx[i]), float(tr.entry_price[i]),
                     float(tr.exit_price[i]), EXIT_REASONS[int(tr.exit_reason[i])]) for i in range(len(tr))])
    assert out[0] == out[1], out
    return out[0]


NA = (np.nan, np.nan, np.nan, np.nan, 50.0)


def test_a_fill_due_at_a_missing_open_moves_to_the_next_open():
    """docs/ENGINE.md: a fill due at an open that is NaN moves to the next session with a finite open."""
    q = lambda o, d=50.0: (o, o + 0.5, o - 0.5, o, d)  # noqa: E731
    rows = [q(10), q(10, 80), q(11), q(12), NA, q(14), q(15)]
    assert _both_kernels(rows, {"rule": "fixed", "hold_days": 2}) == [(1, 2, 5, 11.0, 14.0, "fixed")]
    rows = [q(10), q(10, 80), q(11), q(12, 20), NA, NA, q(15), q(16)]  # a distribution close at 3: open 4, 5 missing
    assert _both_kernels(rows, {"rule": "first_dist"}) == [(1, 2, 6, 11.0, 15.0, "first_dist")]
    rows = [q(10), q(10, 80), q(11), q(12), q(13), (np.nan, np.nan, np.nan, 13.5, 50.0)]
    # due at open 4 with hold 2... hold 3: open 5 is missing and the data ends: open at end, marked at close 13.5
    assert _both_kernels(rows, {"rule": "fixed", "hold_days": 3}) == [(1, 2, 5, 11.0, 13.5, "open_at_end")]
    # a time stop due at a missing open while a stop is set: no fill at the missing open, the next open fills
    rows = [q(10), q(10, 80), q(11), NA, q(10.8), q(11)]
    assert _both_kernels(rows, {"rule": "first_dist", "time_stop": 1, "stop_loss": 0.5}) == \
        [(1, 2, 4, 11.0, 10.8, "time_stop")]
    # the entry needs the next open: a signal before a missing open does not enter
    rows = [q(10), q(10, 80), NA, q(12, 80), q(13), q(14)]
    assert _both_kernels(rows, {"rule": "fixed", "hold_days": 1}) == [(3, 4, 5, 13.0, 14.0, "fixed")]


# ---------------------------------------------------------------------------------- simulate.py's surface, by hand

def _gapped_panel() -> tuple[Panel, np.ndarray]:
    """PANEL with whole bars missing inside the sample (about 1 in 10 of sessions 3..66): exits fall due at them."""
    gone = np.random.default_rng(23).random((T, N)) < 0.1
    gone[:3] = gone[-3:] = False
    fields = {k: np.where(gone, np.nan, PANEL[k]) for k in ("open", "high", "low", "close")}
    return Panel(dates=PANEL.dates, symbols=PANEL.symbols, fields=fields, sectors=PANEL.sectors), gone


GAPPED, GONE = _gapped_panel()


def test_fills_due_at_missing_opens_equal_the_reference_on_both_kernels():
    """Every exit rule on a panel with missing bars mid-position: both kernels (and the capped date-major path)
    give the reference's trades, whose fills due at a missing open wait for the next finite open (fixed, max_days and
    time-stop exits are seen to move: held longer than their schedule, none filled at a NaN price)."""
    moved = 0
    for i in range(len(EXITS)):
        ex, (s0, s1, s2), (ws, wl, wp, lo, hi), buy, sell, costs = _uncapped_case(i)
        disp = display_of(TERMS, ws, wl, wp, lo, hi)
        ref = ref_trades(GAPPED, disp, buy, sell, RefExit(**ex), costs, s0, s1, s2)
        assert np.isfinite(ref["exit_price"]).all() and np.isfinite(ref["entry_price"]).all()
        for kernel in ("symbol", "date"):
            tr, _ = simulate_counted(GAPPED, disp, Thresholds(buy, sell), ExitParams(**ex), Costs(*costs),
                                     Span(s0, s1, s2), kernel=kernel)
            compare_trades(ref, fast_frame(tr), f"gapped case {i} {ex} kernel={kernel}", GAPPED.symbols)
        due = {"fixed": ex.get("hold_days"), "max_days": ex.get("max_days"), "time_stop": ex.get("time_stop")}
        for r in ref.itertuples():
            n = due.get(r.exit_reason)
            moved += n is not None and r.exit_idx > r.entry_idx + n and GONE[r.entry_idx + n, r.symbol]
    assert moved >= 3, moved
    for ex, caps in (({"rule": "fixed", "hold_days": 4}, (2, None)), ({"rule": "hybrid", "max_days": 3}, (None, 1))):
        disp = display_of(TERMS, 0.6, 0.3, 0.1, 0.7, 1.3)
        ref = ref_trades_capped(GAPPED, disp, 58.0, 42.0, RefExit(**ex), (1.0, 4.0), 0, T, T,
                                max_positions=caps[0], max_per_sector=caps[1])
        fast = simulate(GAPPED, disp, Thresholds(58.0, 42.0), ExitParams(**ex), Costs(1.0, 4.0), Span(0, T, T),
                        Caps(*caps))
        compare_trades(ref, fast_frame(fast), f"gapped capped {ex} {caps}", GAPPED.symbols)


@pytest.mark.parametrize("call, message", [
    (lambda: ExitParams("nope"),
     "exit rule must be one of fixed, first_dist, 2x_consec_dist, score_decay, hybrid, got exit rule='nope'"),
    (lambda: ExitParams("fixed"), "hold_days must be >= 1 for the fixed exit, got hold_days=None"),
    (lambda: ExitParams("hybrid"), "max_days must be >= 1 for the hybrid exit, got max_days=None"),
    (lambda: Thresholds(60, 60), "sell_threshold must be < buy_threshold=60, got sell_threshold=60"),
    (lambda: Span(5, 5, 6), "sig_start must be in [0, sig_end=5), got sig_start=5"),
    (lambda: Span(-1, 5, 6), "sig_start must be in [0, sig_end=5), got sig_start=-1"),
    (lambda: Span(0, 7, 6), "data_end must be >= sig_end=7, got data_end=6"),
    (lambda: SymbolMajorPrices(PANEL, regime_multiplier=np.ones(3)),
     "regime_multiplier must be a (70,) array, got regime_multiplier=(3,)"),
    (lambda: simulate(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                      rows=(np.ones(3), np.ones(T))), "rows must be two (70,) threshold arrays, got rows=((3,), (70,))"),
    (lambda: simulate(PANEL, np.zeros((5, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T)),
     "display.shape must be equal to the panel shape (70, 5), got display.shape=(5, 5)"),
    (lambda: simulate(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T + 1)),
     "span.data_end must be <= number of sessions 70, got span.data_end=71"),
    (lambda: simulate(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                      entry_ok=np.ones(3, bool)), "entry_ok.shape must be equal to (70,), got entry_ok.shape=(3,)"),
    (lambda: simulate_counted(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                              caps=Caps(2), kernel="symbol"),
     "kernel must be None, 'date' or 'symbol' ('date' with caps, dd_breaker or corr_cap), got kernel='symbol'"),
    (lambda: simulate_counted(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                              risk=RiskParams(corr_cap=0.5), kernel="symbol"), "got kernel='symbol'"),
    (lambda: simulate_counted(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                              risk=RiskParams(dd_breaker=0.1), kernel="symbol"), "got kernel='symbol'"),
    (lambda: simulate_counted(PANEL, np.zeros((T, N)), Thresholds(), ExitParams(), Costs(), Span(0, T, T),
                              kernel="x"), "got kernel='x'"),
])
def test_bad_arguments_are_refused_with_their_rule(call, message):
    with pytest.raises(ParameterError) as err:
        call()
    assert message in str(err.value)


def test_parameter_objects_by_hand():
    assert ExitParams("fixed", hold_days=5).max_hold == 5
    assert ExitParams("fixed", hold_days=5, time_stop=3).max_hold == 3
    assert ExitParams("fixed", hold_days=5, max_days=2).max_hold == 5       # max_days only counts for hybrid
    assert ExitParams("hybrid", max_days=8, hold_days=2).max_hold == 8      # hold_days only counts for fixed
    assert ExitParams("hybrid", max_days=8, time_stop=9).max_hold == 8
    assert ExitParams("first_dist").max_hold is None
    assert ExitParams("score_decay", time_stop=4).max_hold == 4
    c = Costs(2.0, 3.0)
    assert c.per_side == pytest.approx(5e-4)
    assert c.scaled(2.0) == Costs(4.0, 6.0)
    assert Costs().per_side == pytest.approx(6e-4)
    assert (Thresholds().buy, Thresholds().sell) == (70.0, 30.0)
    sp = Span.full(PANEL)
    assert (sp.sig_start, sp.sig_end, sp.data_end, sp.sessions) == (0, T, T, T)
    assert Span(3, 10, 12).sessions == 7
    assert Caps() == Caps(None, None)
    r = RiskParams()
    assert not r.portfolio_state and not r.weighted
    assert RiskParams(dd_breaker=0.1).portfolio_state and RiskParams(corr_cap=0.5).portfolio_state
    assert RiskParams(sizing="atr").weighted and RiskParams(regime_sizing=True).weighted
    assert not RiskParams(dd_breaker=0.1).weighted
    assert (r.sizing, r.risk_fraction, r.max_weight, r.kelly_fraction, r.kelly_window, r.dd_cooloff,
            r.corr_window) == ("equal", 0.02, 0.25, 0.5, 50, 10, 60)


def test_trades_returns_and_frame_by_hand():
    i64 = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
    tr = Trades(i64([1, 0]), i64([3, 1]), i64([4, 2]), i64([6, 5]), np.array([10.0, 20.0]), np.array([11.0, 19.0]),
                i64([0, EXIT_REASONS.index("open_at_end")]), np.array([71.0, 80.0]), cost=0.01,
                weight=np.array([0.5, 2.0]), mult=np.array([1.0, 0.25]))
    np.testing.assert_allclose(tr.gross_ret, [0.1, -0.05])
    np.testing.assert_allclose(tr.net_ret, [11 * 0.99 / (10 * 1.01) - 1, 19 * 0.99 / (20 * 1.01) - 1])
    assert tr.open_at_end.tolist() == [False, True] and tr.closed.tolist() == [True, False]
    assert tr.hold_days.tolist() == [2, 3] and len(tr) == 2
    f = tr.to_frame(PANEL)
    assert list(f.columns) == ["symbol", "exit_date", "entry_date", "signal_date", "symbol_idx", "signal_idx",
                               "entry_idx", "exit_idx", "entry_price", "exit_price", "gross_ret", "net_ret",
                               "hold_days", "exit_reason", "open_at_end", "score", "weight", "regime_mult"]
    assert f["symbol"].tolist() == ["S0", "S1"]  # sorted by entry
    assert f["exit_reason"].tolist() == ["open_at_end", "fixed"]
    assert f["entry_date"].tolist() == [PANEL.dates[2], PANEL.dates[4]]
    assert f["signal_date"].iloc[1] == PANEL.dates[3] and f["exit_date"].iloc[1] == PANEL.dates[6]
    assert f["weight"].tolist() == [2.0, 0.5] and f["regime_mult"].tolist() == [0.25, 1.0]
    # ties on the entry: the lower symbol first (a stable sort)
    tie = Trades(i64([3, 1, 2]), i64([1, 1, 1]), i64([2, 2, 2]), i64([3, 3, 3]), np.ones(3), np.ones(3),
                 i64([0, 0, 0]), np.ones(3))
    assert tie.to_frame()["symbol_idx"].tolist() == [1, 2, 3]
    empty = Trades(*(i64([]) for _ in range(4)), np.zeros(0), np.zeros(0), i64([]), np.zeros(0))
    e = empty.to_frame(PANEL)
    assert len(e) == 0 and "symbol" not in e and "weight" not in e and "regime_mult" not in e
    with np.errstate(all="raise"):
        zero = Trades(i64([0]), i64([0]), i64([1]), i64([2]), np.array([0.0]), np.array([1.0]), i64([0]),
                      np.ones(1))
    assert np.isinf(zero.gross_ret[0])


def test_sector_ids_and_threshold_rows():
    ids, n = sim_mod._sector_ids(PANEL)
    assert ids.tolist() == [1, 1, 0, -1, 0] and n == 2 and ids.dtype == np.int64  # XLF 0, XLK 1, None -1
    px = SymbolMajorPrices(PANEL)
    b, s = sim_mod._threshold_rows(Thresholds(61.5, 20.0), None, T, px)
    assert b.tolist() == [61.5] * T and s.tolist() == [20.0] * T and b.flags.writeable
    assert sim_mod._threshold_rows(Thresholds(61.5, 20.0), None, T, px)[0] is b  # kept per threshold pair
    assert sim_mod._threshold_rows(Thresholds(62.0, 20.0), None, T, px)[0] is not b
    rows = (np.arange(T), np.zeros(T, np.int64))
    b2, s2 = sim_mod._threshold_rows(Thresholds(), rows, T, px)
    assert b2.dtype == np.float64 and s2.dtype == np.float64 and b2.tolist() == list(range(T))


def test_symbol_major_prices_fields_and_regime_multiplier():
    px = SymbolMajorPrices(PANEL)
    o = px["open"]
    assert px["open"] is o and o.shape == (N, T) and not o.flags.writeable and o.flags.c_contiguous
    np.testing.assert_array_equal(o, PANEL["open"].T)
    assert px.nbytes == N * T * 8
    given = np.linspace(0.1, 1.0, T)
    assert SymbolMajorPrices(PANEL, regime_multiplier=given).regime_multiplier().tolist() == given.tolist()
    blocks = sim_mod._blocks(7)
    assert blocks[0] == 0 and blocks[-1] == 7 and (np.diff(blocks) >= 1).all()
    assert sim_mod._blocks(1).tolist() == [0, 1]


def test_signal_count_is_inclusive_and_respects_the_window_and_entry_ok():
    """count = closes t in [sig_start, sig_end) with display[t] >= buy[t] (equality counts, NaN never) and
    entry_ok[t]; the same on both kernels, fused or not, and ``count_signals``."""
    rows = [(10, 10.5, 9.5, 10, d) for d in (70.0, 69.999, np.nan, 70.0, 75.0, 10.0, 70.0, 71.0)]
    panel, disp = _one_symbol(rows)
    n = len(rows)
    cases = [((0, n, n), None, 5), ((1, 7, n), None, 3), ((0, n, n), np.array([1, 1, 1, 0, 1, 1, 1, 0], bool), 3),
             ((4, 5, 6), None, 1), ((2, 3, n), None, 0)]
    for (s0, s1, s2), ok, want in cases:
        for kernel in ("symbol", "date"):
            _, got = simulate_counted(panel, disp, Thresholds(70.0, 30.0), ExitParams("fixed", hold_days=1),
                                      Costs(0.0, 0.0), Span(s0, s1, s2), entry_ok=ok, kernel=kernel)
            assert got == want, ((s0, s1, s2), ok, kernel, got)
        if ok is None:
            assert count_signals(disp, 70.0, Span(s0, s1, s2)) == want


def test_kelly_history_order_on_a_panel_wider_than_long():
    """Kelly's history is the closed trades in (exit session, symbol) order; with more symbols than sessions a
    key of exit x sessions + symbol would misorder them: the window of the last 10 then holds other trades."""
    rng = np.random.default_rng(12)
    n_t, n_s = 9, 14
    drift = np.linspace(-0.02, 0.05, n_s)  # the symbols differ: which trades are the last 10 matters
    op = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, (n_t, n_s)) + drift, axis=0))
    dates = pd.bdate_range("2024-01-02", periods=n_t)
    syms = [f"W{j:02d}" for j in range(n_s)]
    df = pd.DataFrame({"date": np.repeat(dates, n_s), "symbol": np.tile(syms, n_t), "open": op.ravel(),
                       "high": op.ravel() * 1.01, "low": op.ravel() * 0.99, "close": op.ravel()})
    panel = Panel.from_frame(df, sectors={s: None for s in syms})
    disp = np.where(rng.random((n_t, n_s)) < 0.6, 90.0, 50.0)  # staggered entries: exits on every session
    rk = {"sizing": "kelly", "kelly_window": 10, "kelly_fraction": 1.0, "max_weight": 1.0, "risk_fraction": 0.01}
    ref = ref_trades(panel, disp, 60.0, 10.0, RefExit("fixed", hold_days=1), (0.0, 0.0), 0, n_t, n_t)
    w, _ = ref_weights(ref, panel, RefExit("fixed", hold_days=1), (0.0, 0.0), RefRisk(**rk))
    assert len(set(np.round(w, 12))) > 4
    for kernel in ("symbol", "date"):
        tr, _ = simulate_counted(panel, disp, Thresholds(60.0, 10.0), ExitParams("fixed", hold_days=1),
                                 Costs(0.0, 0.0), Span(0, n_t, n_t), risk=RiskParams(**rk), kernel=kernel)
        f = tr.to_frame().sort_values(["symbol_idx", "entry_idx"], kind="stable")
        np.testing.assert_allclose(f["weight"], w, rtol=1e-12, err_msg=kernel)


def test_simulate_passes_every_argument_on():
    """``simulate`` is ``simulate_counted(...)[0]`` with caps, entry_ok, risk and per-session rows passed on."""
    disp = display_of(TERMS, 0.6, 0.3, 0.1, 0.7, 1.3)
    ok = np.arange(T) % 3 != 0
    rows = (np.full(T, 57.0), np.where(np.arange(T) % 2 == 0, 45.0, 38.0))
    risk = RiskParams(sizing="fixed_fractional", dd_breaker=0.03, dd_cooloff=2)
    args = (PANEL, disp, Thresholds(80.0, 20.0), ExitParams("first_dist", stop_loss=0.04), Costs(1.0, 2.0),
            Span(2, 60, 66), Caps(2, 1), ok)
    a = simulate(*args, risk=risk, rows=rows)
    b, _ = simulate_counted(*args, risk=risk, rows=rows)
    assert len(a) > 5
    for f in ("symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason", "weight"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.cost == b.cost == pytest.approx(3e-4) and a.absolute
    for other in (simulate(*args[:7], risk=risk, rows=rows), simulate(*args[:6], None, ok, risk=risk, rows=rows),
                  simulate(*args, rows=rows), simulate(*args, risk=risk)):
        assert len(other) != len(a) or not np.array_equal(other.entry_idx, a.entry_idx) or other.weight is None
    assert ok[a.signal_idx].all()
    assert (a.signal_idx >= 2).all() and (a.signal_idx < 60).all() and (a.exit_idx < 66).all()


# ----------------------------------------------------------------------- exit and sizing helpers at their bounds

def test_exit_helpers_return_their_documented_no_exit_values():
    nan = np.nan
    assert K._scheduled_exit(5, K.RULE_FIRST_DIST, -1, -1, -1) == (-1, -1)
    assert K._scheduled_exit(5, K.RULE_FIXED, 3, -1, -1) == (8, K.R_FIXED)
    assert K._scheduled_exit(5, K.RULE_HYBRID, -1, 4, 2) == (7, K.R_TIME_STOP)
    assert K._scheduled_exit(5, K.RULE_HYBRID, -1, 2, 4) == (7, K.R_MAX_DAYS)
    assert K._scheduled_exit(5, K.RULE_FIXED, 3, -1, 3) == (8, K.R_FIXED)  # a tie: the rule's own reason
    assert K._scheduled_exit(5, K.RULE_SCORE_DECAY, -1, -1, 6) == (11, K.R_TIME_STOP)
    assert K._stop_level(100.0, nan, nan, nan, 120.0) == (0.0, -1)
    assert K._stop_level(100.0, 0.25, nan, nan, 120.0) == (75.0, K.R_STOP)
    assert K._stop_level(100.0, 0.25, 75.0, nan, 120.0) == (75.0, K.R_STOP)     # a tie goes to the fixed stop
    assert K._stop_level(100.0, 0.25, 80.0, nan, 120.0) == (80.0, K.R_ATR)
    assert K._stop_level(100.0, nan, 60.0, 0.5, 120.0) == (60.0, K.R_ATR)       # trail 120 x 0.5 = 60: a tie
    assert K._stop_level(100.0, 0.5, 40.0, 0.25, 120.0) == (90.0, K.R_TRAIL)
    assert K._stop_level(100.0, nan, nan, 0.25, 120.0) == (90.0, K.R_TRAIL)
    assert K._intraday_exit(100.0, 101.0, 99.0, 100.0, False, nan, nan, nan, nan, 100.0) == (False, 0.0, -1)
    assert K._intraday_exit(100.0, 101.0, 99.0, 100.0, False, 0.5, 0.5, nan, nan, 100.0) == (False, 0.0, -1)
    r, n_dist, n_low = K._close_signal(60.0, 30.0, K.RULE_FIRST_DIST, 0, 0)
    assert (r, n_dist, n_low) == (-1, 0, 0)
    assert K._close_signal(30.0, 30.0, K.RULE_HYBRID, 0, 0) == (K.R_FIRST_DIST, 1, 1)
    assert K._close_signal(30.0, 30.0, K.RULE_2X_DIST, 1, 0) == (K.R_2X_DIST, 2, 1)
    assert K._close_signal(49.0, 30.0, K.RULE_SCORE_DECAY, 0, 2) == (K.R_SCORE_DECAY, 0, 3)
    assert K._close_signal(50.0, 30.0, K.RULE_SCORE_DECAY, 0, 2) == (-1, 0, 0)  # 50 is not below 50
    assert K._close_signal(nan, 30.0, K.RULE_FIRST_DIST, 3, 4) == (-1, 0, 0)    # NaN breaks both runs
    assert math.isnan(K._atr_level(100.0, nan, np.array([2.0]), 0))
    assert K._atr_level(100.0, 1.5, np.array([9.0, 2.0]), 1) == 97.0


def test_stops_and_target_fill_when_the_bar_touches_the_level_exactly():
    """low == stop level and high == target count as hits (<=, >=); display exactly 50 never counts as a decay."""
    q = lambda o, d=50.0: (o, o + 0.5, o - 0.5, o, d)  # noqa: E731
    rows = [q(100), q(100, 80), q(100), (100, 100.5, 75.0, 90, 50), q(90)]      # entry 100, stop 25%: low 75
    assert _both_kernels(rows, {"rule": "fixed", "hold_days": 3, "stop_loss": 0.25}) == \
        [(1, 2, 3, 100.0, 75.0, "stop_loss")]
    rows = [q(100), q(100, 80), q(100), (100, 125.0, 99.5, 110, 50), q(110)]    # target 25%: high 125
    assert _both_kernels(rows, {"rule": "fixed", "hold_days": 3, "take_profit": 0.25}) == \
        [(1, 2, 3, 100.0, 125.0, "take_profit")]
    rows = [q(100), q(100, 80), q(100, 50.0), q(101, 50.0), q(102, 50.0), q(103, 50.0), q(104)]
    assert _both_kernels(rows, {"rule": "score_decay"}) == [(1, 2, 6, 100.0, 104.0, "open_at_end")]


def test_atr_and_fixed_fractional_weights_at_zero_and_infinite_atr():
    """ATR sizing skips an ATR% that is 0 or missing (a flat symbol, no ATR14 yet) for the session's median, and
    a median that is 0 or infinite for weight 1; fixed-fractional ignores an ATR stop distance of 0 and takes the
    tightest stop."""
    C = np.array([[100.0, 100.0, 100.0]])
    A = np.array([[0.0, np.nan, 4.0]])
    sw = K._static_weight
    med = np.array([0.02, 0.04, 0.0])
    nan = np.nan
    assert sw(K.SIZE_ATR, 0, 0, C, A, med, nan, nan, nan, 0.01, 0.9) == pytest.approx(50.0)  # ATR 0: median 2%
    assert sw(K.SIZE_ATR, 0, 1, C, A, med, nan, nan, nan, 0.01, 0.9) == pytest.approx(25.0)  # no ATR: median 4%
    assert sw(K.SIZE_ATR, 0, 2, C, A, med, nan, nan, nan, 0.01, 0.9) == pytest.approx(25.0)  # its own 4%
    assert sw(K.SIZE_ATR, 0, 0, C, A, np.array([0.0]), nan, nan, nan, 0.01, 0.9) == 1.0
    assert sw(K.SIZE_ATR, 0, 0, C, A, np.array([np.inf]), nan, nan, nan, 0.01, 0.9) == 1.0
    assert sw(K.SIZE_ATR, 0, 0, C, A, np.array([nan]), nan, nan, nan, 0.01, 0.9) == 1.0
    assert sw(K.SIZE_FF, 0, 0, C, A, med, nan, 2.0, nan, 0.01, 0.9) == pytest.approx(0.01)   # ATR 0: no distance
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.02, nan, 0.05, 0.01, 0.9) == pytest.approx(0.5)  # the tighter 2%
    assert sw(K.SIZE_FF, 0, 0, C, A, med, 0.05, nan, 0.02, 0.01, 0.9) == pytest.approx(0.5)
    assert sw(K.SIZE_FF, 0, 2, C, A, med, 0.05, 0.25, nan, 0.01, 0.9) == pytest.approx(1.0 / 1.0 * 0.9)  # capped
    assert sw(K.SIZE_FF, 0, 2, C, A, med, 0.05, 0.25, nan, 0.001, 0.9) == pytest.approx(0.1)  # 0.25 x 4% = 1%


def test_kelly_weight_of_the_last_trade_signalled_after_every_close():
    """The last signal comes after every closed trade's exit (the history loop runs to its end) and its own trade
    is open at the end: weights equal the reference's on both kernels."""
    q = lambda o, d=50.0: (o, o + 0.5, o - 0.5, o, d)  # noqa: E731
    opens = [10, 11, 10.5, 12, 11, 12.5, 12, 13, 12.8, 14, 13.5, 15, 14, 15.5, 15, 16, 15.5, 17, 16, 17.5,
             17, 18, 17.5, 19, 18, 19.5, 19, 20]
    disp = [80.0 if k % 2 == 0 else 50.0 for k in range(len(opens))]
    rows = [q(o, d) for o, d in zip(opens, disp)]
    panel, dsp = _one_symbol(rows)
    n = len(rows)
    rk = {"sizing": "kelly", "kelly_window": 10, "kelly_fraction": 1.0, "max_weight": 1.0}
    ref = ref_trades(panel, dsp, 70.0, 30.0, RefExit("fixed", hold_days=1), (0.0, 0.0), 0, n - 2, n - 2)
    assert bool(ref["open_at_end"].iloc[-1]) and int(ref["exit_idx"].iloc[-2]) <= int(ref["signal_idx"].iloc[-1])
    w, _ = ref_weights(ref, panel, RefExit("fixed", hold_days=1), (0.0, 0.0), RefRisk(**rk))
    assert w[-1] != w[0]  # a Kelly estimate, not the fallback
    for kernel in ("symbol", "date"):
        tr, _ = simulate_counted(panel, dsp, Thresholds(70.0, 30.0), ExitParams("fixed", hold_days=1),
                                 Costs(0.0, 0.0), Span(0, n - 2, n - 2), risk=RiskParams(**rk), kernel=kernel)
        np.testing.assert_allclose(tr.to_frame()["weight"], w, rtol=1e-12, err_msg=kernel)


def test_portfolio_segments_and_window_by_hand():
    """The breaker's segments (portfolio_returns_nb's formulas) and the [start, stop) window: a trade running past
    stop counts only inside it; an open position is marked through stop - 1 whatever its recorded exit."""
    c = 0.01
    assert K._exit_segment(5, 5, 95.0, 100.0, 99.0, c) == pytest.approx(95.0 * 0.99 / (100.0 * 1.01) - 1)
    assert K._exit_segment(6, 5, 95.0, 100.0, 99.0, c) == pytest.approx(95.0 * 0.99 / 99.0 - 1)
    assert K._held_segment(5, 5, 102.0, 100.0, 99.0, c) == pytest.approx(102.0 / (100.0 * 1.01) - 1)
    assert K._held_segment(6, 5, 102.0, 100.0, 99.0, c) == pytest.approx(102.0 / 99.0 - 1)
    Cs = np.array([[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]])
    one = np.array([0], dtype=np.int64)
    none = np.zeros(0)
    # a closed trade entered at 1, exited at 4, over the window [0, 3): days 1 and 2 only
    out = K.portfolio_returns_nb(Cs, one, one + 1, np.array([4]), np.array([10.5]), np.array([14.0]),
                                 np.array([False]), none, none, False, np.zeros(1), 0, 3)
    np.testing.assert_allclose(out, [0.0, 11.0 / 10.5 - 1, 12.0 / 11.0 - 1], rtol=1e-12)
    # an open position whose recorded exit is 2 is marked through stop - 1 = 4
    out = K.portfolio_returns_nb(Cs, one, one + 1, np.array([2]), np.array([10.5]), np.array([12.0]),
                                 np.array([True]), none, none, False, np.zeros(1), 0, 5)
    np.testing.assert_allclose(out, [0.0, 11.0 / 10.5 - 1, 12 / 11 - 1, 13 / 12 - 1, 14 / 13 - 1], rtol=1e-12)


def test_correlation_of_a_near_constant_series_is_nan_without_a_warning():
    import warnings

    rng = np.random.default_rng(3)
    C = np.empty((2, 12))
    C[0] = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 12)))
    C[1] = 7.0 * (1.0 + 2e-13 * (-1.0) ** np.arange(12))  # returns of about 4e-13: below the 1e-12 floor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(K._corr(C, 0, 1, 11, 10, 3))
        assert math.isnan(K._corr(C, 1, 0, 11, 10, 3))
        C[1] = 7.0
        assert math.isnan(K._corr(C, 0, 1, 11, 10, 3))   # exactly constant: never 0 / 0


def test_atr_median_leaves_out_a_flat_symbol():
    """A symbol whose bars never move has ATR14 = 0: not part of the session's median ATR% (only ATR% > 0 count)."""
    n = 20
    rng = np.random.default_rng(2)
    frames = []
    for j, vol in enumerate((0.0, 0.02, 0.04)):
        c = 30.0 * np.exp(np.cumsum(rng.normal(0, vol, n))) if vol else np.full(n, 30.0)
        frames.append(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=n), "symbol": f"F{j}",
                                    "open": c, "high": c * (1 + vol), "low": c * (1 - vol), "close": c}))
    panel = Panel.from_frame(pd.concat(frames))
    atr = ref_atr14(panel)
    assert (atr[13:, 0] == 0.0).all()
    med = SymbolMajorPrices(panel).atr_median()
    np.testing.assert_allclose(med[13:], np.median(atr[13:, 1:] / panel["close"][13:, 1:], axis=1), rtol=1e-12)


def test_use_parallel_only_in_the_process_that_first_launched_the_threads(monkeypatch):
    """Small panels run serial and record no owner; the first parallel launch records its process, which keeps
    running parallel; any other process (a fork of the launcher) runs serial."""
    import os

    monkeypatch.setattr(K, "_THREADS_OWNER", [])  # as in a fresh process (the real list is restored after)
    assert not K.use_parallel(99, 100) and K._THREADS_OWNER == []
    assert K.use_parallel(100, 100) and K._THREADS_OWNER == [os.getpid()]
    assert K.use_parallel(10**6, 100) and K._THREADS_OWNER == [os.getpid()]
    monkeypatch.setattr(K, "_THREADS_OWNER", [os.getpid() + 1])  # this process is a fork of the launcher
    assert not K.use_parallel(10**6, 100) and K._THREADS_OWNER == [os.getpid() + 1]


def test_correlation_floor_is_inclusive_a_std_of_exactly_1e_12_is_flat():
    """docs/ENGINE.md's flat rule is std <= 1e-12 (tests/reference_engine.py too). 1375 returns k x 2^-52 (integers
    k found by a search) whose std, computed as the kernel does (two passes, sequential sums), is exactly 1e-12: the
    pair is flat (NaN) on either side; twice the spread gives a correlation."""
    import base64

    x = np.ldexp(np.frombuffer(base64.b64decode("".join(_FLOOR_STEPS)), dtype="<i2").astype(np.float64), -52)
    n = x.size
    sx = 0.0
    for v in x.tolist():
        sx += v
    sxx = 0.0
    for v in x.tolist():
        sxx += (v - sx / n) * (v - sx / n)
    assert math.sqrt(sxx / n) == 1e-12
    # closes 1, 1 + x_i, NaN, 1, ...: each pair's return is x_i exactly; the NaN columns leave no other pair
    C = np.full((2, 3 * n + 1), np.nan)
    C[:, 0::3] = 1.0
    C[0, 1::3] = 1.0 + x
    C[1, 1::3] = 1.0 + np.random.default_rng(5).normal(0, 0.01, n)
    t = 3 * n
    assert (C[0, 1::3] / C[0, 0:-1:3] - 1.0 == x).all()
    assert math.isnan(K._corr(C, 0, 1, t, t, n))
    assert math.isnan(K._corr(C, 1, 0, t, t, n))
    C[0, 1::3] = 1.0 + 2.0 * x
    assert not math.isnan(K._corr(C, 0, 1, t, t, n)) and not math.isnan(K._corr(C, 1, 0, t, t, n))


def _regime_panel(T: int = 240, seed: int = 11) -> Panel:
    """Two symbols and a market whose SPY range and VIX matter to the learned regime (calm and stormy stretches of
    40 sessions, a random daily range, a VIX that follows the storms) and whose VIX alone passes 40 on 3 days."""
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2022-01-03"), np.datetime64("2022-01-03") + T).astype("datetime64[D]")
    vol = np.where((np.arange(T) // 40) % 2 == 0, 0.006, 0.02)
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0003, vol)))
    span = np.abs(rng.normal(0, 1, T)) * 0.01 + 0.002
    vix = 15 + 8 * rng.random(T) + 400 * vol
    vix[[200, 215, 231]] = [41.0, 45.0, 52.0]
    c = np.column_stack([spy * 0.2, spy * 0.1])
    fields = {"open": c, "close": c, "high": c * 1.01, "low": c * 0.99}
    market = {"spy_close": spy, "spy_open": spy, "spy_high": spy * (1 + span), "spy_low": spy * (1 - span),
              "spy_volume": rng.uniform(5e7, 1e8, T), "vix": vix}
    return Panel(dates=dates, symbols=("A", "B"), fields=fields, market=market, sectors=(None, None))


def test_regime_multiplier_reads_every_market_column():
    """SymbolMajorPrices.regime_multiplier equals the context's on a market where dropping the SPY high, low or the
    VIX changes the learned regime, and 0.1 on the 3 days the VIX passes 40 (2 of them with a proxy below 40: the
    override reads the VIX, not the proxy)."""
    from optimizer.engine._regime import (
        effective_vix, learned_regime, position_multiplier, regime_features, vix_proxy,
    )
    from optimizer.engine.context import compute_context

    p = _regime_panel()
    m = p.market
    mult = SymbolMajorPrices(p).regime_multiplier()
    np.testing.assert_array_equal(mult, compute_context(p)["regime_multiplier"])
    assert mult[[200, 215, 231]].tolist() == [0.1] * 3 and (mult[m["vix"] <= 40] > 0.1).all()
    assert (vix_proxy(m["spy_close"])[[200, 215]] < 40).all()
    # the panel exercises each column: without it the multiplier is not the same
    for drop in ("spy_high", "spy_low", "vix"):
        cols = {k: (None if k == drop else m[k]) for k in ("spy_high", "spy_low", "vix")}
        feats = regime_features(m["spy_close"], cols["spy_high"], cols["spy_low"], m["spy_volume"], cols["vix"])
        other = position_multiplier(learned_regime(feats), effective_vix(m["vix"], m["spy_close"]))
        assert (other != mult).sum() >= 10, drop


_FLOOR_STEPS = (  # 1375 int16 (little-endian, base64): returns of k x 2^-52 whose std is exactly 1e-12
    "g/BfDYIQTAOr7DYRIhq0+Ej7vQvx9gEIuhgAB4EDZyTwCm/vwvKA8Pr8YuclHzIIAgUC73j6APCSHwgAGuk4I/8J3vtmHvX0SBRa5mkWJu+C5QD9"
    "wCq5/EbqY+f4J3kDXw/q7SPsHQgl+lQBuBFD/7IHv/4dDAEEvwBN+Fb4I/w2Fv7wyRhPAWQfmAK07AzuLALU8mwCl/Xl7FMX9fwADiX1rf0Y970G"
    "Uvln4WweRg0NHGIP6QF+6JoILQQ//Eb1VvNB/1/1ivtrAzXhTPxy6UUhVREDDncYTwzlBmP/GctK5i77RQDbAhvnef8E/9gg6yPN8efmqiDh7KkH"
    "2+n6CagdTu5fCtjpuPUUKo/4SQ6VHUHtEQMeBhTzEOgF4fIHmiJgBQAesQNLGJb9IfjU/WQA3eUt/BwNzfxU6kkBCvt6Bu35wxV0/pH5nRiE+ZP/"
    "wPe+/OP37PJDFKr3DQ70+sPz0BQ97db7cxxN/jj8mQjzDz4ZcwEeBzH4GfXm9i8NyP/i783rkPw5/5v79+/DCEwJl8vWAQXqNvV8EDDpqQZu+UAE"
    "ZwtG6ybmTAz2ESYKUOTYBo8UsAcp5qn60QueCXH/TgXP7Y3+AQBDC7EOKfJK5HsDFwoE/t/88/mpBJ8iN+KG/rUFdv9v42wLrgc/BlMQzAZABoLo"
    "5wLz3WoeVBu3/fcC3/L+BL0KkxysDIQF1evH3ij6pglaE1YM7+1N4rHrOQJ8+CriCgaY7oT0URBtCDbeuh9qE90Y0QIqB04RR+GK3ovrsuoRB/X/"
    "SABpCYP2T/q87rP57ex3A7vuhOQI/h/zXjF0Bmr6gP66Cpz6pOtoHbrqYxEO9dcKLRumHBMKahVBCKb5tAH6GJUOAecdCkXzRPRDDLj26QCeIOv+"
    "0O0vEsMFaQUK+sYJShoi6gb6F/KgFr7/uRV7DRIWF/Mv8ozpLA8r52wKdQCk+gXnqelTE/sJSPNF/N0ewBTUDTn7WPm097YKYgV6Anjg/OYc0cLs"
    "Wfx/CywLCwrqAtoLgd0KAEYiTfrp8y4Wlfd/3FDwmO2u8Kv/jvwE9jzczwn1BaEZl+mnJG8EyN2M+9zdEfHlB9kB9h5DDIgERufo/6cO7xK21ZoF"
    "yRve9boR9Av78i7fAv4iBWH2AvZsFz/t7PcS9AIV8/uxFOb2X+Ip+K3z5wPkKl0FtBLb/nHrbOzJBs7xU/V2KBH12OGcHFXih/jGDUnMvQbW8zTy"
    "Qt4F+zIFEQPTDmHxgMcIMx/nofV49fz9MxG2HM8E5g3A6jQRavC79AbwF+U3/rEPj+of7dn3LAOB9dnqwyDDKWkOZfsR+zTlM/FdDt/s+A4T/vjp"
    "JRqpDsfmqurOBtr8f95W/nsDPhvmEvX90/QNCnEDawy8+qv69AN/6TXvMv1ZCBYL6wCW8ab9ePxA8ZECQems/EEClixE667zN/xtECvlaw0i9pAV"
    "BwRX91nlrv2T/+fnh/0nADTqkwWnGfUGIP7293wLCiZkCBrx0QWbCakCEg4x8gMH8uUL/7Hxjuvl+fDyRr2h8bYDvOu4BQf2nAa48sr+PeDC57cQ"
    "yP7dFnP14QnD6MgKjPJk5O/pYveEANgBTQ5v/I8Drv05+oPuKP4QBar4YdZ28ocTNfrK+uDoiPAwDNLnvQeT/+YYqRCFDOASTesUFQPX8vWqBWfu"
    "OwGl8U7vfP/a/TkWHQCX9M0Hu/3eDfYI7BYNDZnxLNlVEykYEPvOCFwcdxNjB/r5RAvbBqPpLgFBAEsFZgAC7QkL4xIeD5b79goF7xUF3ChYAw4o"
    "F+pLDDYVNPqw+AL4f/I5+AYSQgAeGUAEp/4NA64SqBWu8jj/DPTU2fj36eBwF10T2QleDu7wSBvt9Vb0WNiN9VzhX+lp83v2MeQfMbIO/RBK1U0C"
    "8vVtByIDJu7+BVonxRL667TtGAFc+Z3t8Pr59GLr/vKuCmz7DgC0DO0Y2PMrBqkY0fclDXwJbPd29qz+9QFaF1rvcimt8oP4ePdlFe4X4vyeCEvn"
    "5N2y6wcRbP5ZBu0LO/2+E+L3yvl97PT3uO2K7zjv2gTKBjkDoeaY9LPkswYWAzr/ygZd/ej3pfnDBSz7ZPcPGSUN3uWvDRALsgpkBIbt8wNX+yn7"
    "4RdY63L52Bgj+sEDIfoVAHwMHBiNCpn4Wx3l84wGRAaX8jT7DgZN/REF0f6HEKTozAo/ENrb1u3a5joETNZOECn6K/Z99oQAAibH+o8PC/RMAEjj"
    "Nvrv9moCnCBB9h/4X/YBAeXxMPN5/kX87fXW9tYhDtal9nr+KxddDGoSCQnQ47797d319/EBew9L9P3v5+2UE4j+FwUbAOwWEfKO6SPwcwaPBTsH"
    "kPjrCMIVFfTYCOfzxAyL9M8JYBrc9Pn/hwYV4Nb0rgZD7I/0zvgZ69kFlvWFHOrtfg2i9fgIoQEzDMcVbgmIFH3uGPyICUUUg/zM/FHkhg/y/ELt"
    "R/fE+sf9KxH6ADUB1R6N/gf7jQREAY0XQAQ4AxQZYheZ6lb5b+gX/Z0EEQyJ/n8Oj+hA+8D1BQLh9ZcFCQJiAZ8Ln/TcDg/nhvUJu6AZkfKqDUUA"
    "1xdd4XD9v/l7FaADwPJ39eHtPgwP++314N7hErv5AxNLH5kSWhfN6Y/+Qu/J6xcmxg3+/0cfmPtN/agSfuvi+XYFDQDQ7bcGfRfj4ZABxgLf6tw2"
    "ugUD//wLCe41HdMUD/RULBXT/vuBDiv0yQ4V+G/nJwwO/v0GtAsF7GH6zQiuD78XugbwB8L2ERUeCh31rB9UGEkSCRXaJe4PRgQr8rDlSe8y+34V"
    "hQfq8Ir3ExWJ+7wPGfRGFtb/x/ol6rII+O+5Be0GbP27EHD0F/mvCOoCWR29Ac7zDQNiCbb2Ww7+Bhjy6wg98K72bf+9DNDzeeg3EkACKfzpBgsW"
    "Igwo9IX1NAisBf76QPYtH0YZTfKjDbL34PrnDYQMxuFE9zYG+O+tGMP3QwN89JL+wvSv8qT89OwvABQCh+7xDoIVtv/fA0bqTBmr+/UEnvmo71cg"
    "JAT5Enn/lhp4FJwGDvJhGzwCfQM5+rEUsBMCBlzyDOzjD3zwitft+V4KyRDSGHX2CAJgDu8AjhgE58vTFuj181T/SenQ7T/tEQGv9pf4sO/4Be0U"
    "qvyn/YAGiPSwC6TfQeX2BhcP9hJcCEQDd/IIFR7rQfQyDiXMxPsfEZ8OFgGX+nvp0/niAh7JgyPsFLoJ4/fi6Q79pfl0CvP3LQMMGOkdUQWlAfwb"
    "uvLJCmcR4wM18IbvEQ7vExEd0QiuBYz3l/nm7esaof2OAg33ZwY1E0IUru8OBHEX2/kO5lwKLvPNBAT9DgaK4WINI/MD7pzTdhE1BJ8TlQtmBp/9"
    "/P6++az5DQ5C7i8XM/M68xMMyCF5D8wOwC3c/48XxgOuEA0KSe3KCI4Fkvpl7hYPXQ/mI/PwYxGSC7cGhA1KCjj4igIPIzUICQzY8l8P/P7q9p/y"
    "qw5I9mAAVA07Fr72pOrdB/r5khPzDJMThQhxH3PygBjmAbAIAAIx+jEU3vybExDijSeu/kkW7QftEYIS+CN0HQsAaO3AC7jwyxKh/4ENZiDtDa/T"
    "NfDq5cIIr/Zo/VP7IQdV9N35QQ6/9SDvDgfK8IvaXgc7AIv0Uu06C2Uafe6Q9Hozw/scBWbprRBYAfgRk+g="
)


def _candles(cols: dict[str, list[tuple]]) -> tuple[Panel, np.ndarray]:
    """cols: symbol -> (open, high, low, close, display) per session; NaN marks a missing value."""
    frames, disp = [], []
    for sym, rows in cols.items():
        a = np.array(rows, dtype=float)
        frames.append(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=len(rows)), "symbol": sym,
                                    "open": a[:, 0], "high": a[:, 1], "low": a[:, 2], "close": a[:, 3]}))
        disp.append(a[:, 4])
    panel = Panel.from_frame(pd.concat(frames), sectors={s: None for s in cols})
    return panel, np.column_stack(disp)


def _portfolio_run(panel, disp, ex: dict, rk: dict, mult=None) -> list[tuple[int, int, int]]:
    """(symbol, entry, exit) of the date-major kernel, checked against ref_trades_capped."""
    n = panel.shape[0]
    ref = ref_trades_capped(panel, disp, 60.0, 40.0, RefExit(**ex), (0.0, 0.0), 0, n, n,
                            risk=RefRisk(**rk, regime_mult=mult))
    fast, _ = simulate_counted(panel, disp, Thresholds(60.0, 40.0), ExitParams(**ex), Costs(0.0, 0.0),
                               Span(0, n, n), risk=RiskParams(**rk, regime_sizing=mult is not None),
                               prices=SymbolMajorPrices(panel, regime_multiplier=mult), kernel="date")
    compare_trades(ref, fast_frame(fast), f"{ex} {rk}", panel.symbols)
    return [(int(fast.symbol[i]), int(fast.entry_idx[i]), int(fast.exit_idx[i])) for i in range(len(fast))]


def test_correlation_cap_with_an_odd_window_needs_window_floor_half_pairs():
    """corr_window 9: at least max(3, 9 // 2) = 4 pairs. A held symbol and a candidate with the same returns and
    exactly 4 pairs in the window (the candidate's closes 3, 6, 9 missing): correlation 1 > 0.5, refused; without
    the cap it enters."""
    n = 20
    c = 10.0 * np.exp(np.cumsum(np.random.default_rng(4).normal(0, 0.03, n)))
    a = [(x, x * 1.01, x * 0.99, x, 80.0 if t == 2 else 50.0) for t, x in enumerate(c)]
    b = [(2 * x, 2 * x * 1.01, 2 * x * 0.99, np.nan if t in (3, 6, 9) else 2 * x, 80.0 if t == 12 else 50.0)
         for t, x in enumerate(c)]
    panel, disp = _candles({"A": a, "B": b})
    ex = {"rule": "fixed", "hold_days": 12}
    assert _portfolio_run(panel, disp, ex, {"corr_cap": 0.5, "corr_window": 9}) == [(0, 3, 15)]
    assert _portfolio_run(panel, disp, ex, {}) == [(0, 3, 15), (1, 13, 19)]


def _breaker_table(n_sym: int) -> dict[str, list[tuple]]:
    """n_sym symbols signalling at the close of 15, held 2 sessions from the open of 16 and sold at the open of 18
    30 % down (close 10, 8.5, then the open 7: the exit day's segment is a loss too); bars 0-15 swing 5..40 around
    a close of 10 (ATR14 = 35: 3.5 x the price); a last symbol signals at the close of 20."""
    wild = [(10.0, 40.0, 5.0, 10.0)] * 16
    calm = [(10.0, 10.01, 9.99, 10.0), (9.0, 9.01, 8.49, 8.5)] + [(7.0, 7.01, 6.99, 7.0)] * 6
    fallers = [r + (80.0 if t == 15 else 50.0,) for t, r in enumerate(wild + calm)]
    late = [r + (80.0 if t == 20 else 50.0,) for t, r in enumerate([(10.0, 10.01, 9.99, 10.0)] * 24)]
    return {**{f"F{j}": fallers for j in range(n_sym)}, "L": late}


def test_breaker_equity_of_relative_weights_below_one_in_total():
    """ATR sizing: a weight of 1 / 3.5 (ATR% 350 %). Relative weights: the day's return is the weighted mean of the
    positions' returns, whatever their total, so the lone position's 30 % fall trips a 25 % breaker and the late
    signal does not enter (num / max(1, den) would see 30 % / 3.5 and let it in); a 35 % breaker lets it in."""
    panel, disp = _candles(_breaker_table(1))
    rk = {"sizing": "atr", "dd_breaker": 0.25, "dd_cooloff": 10}
    ex = {"rule": "fixed", "hold_days": 2}
    assert _portfolio_run(panel, disp, ex, rk) == [(0, 16, 18)]
    assert _portfolio_run(panel, disp, ex, {**rk, "dd_breaker": 0.35}) == [(0, 16, 18), (1, 21, 23)]


def test_breaker_equity_of_absolute_weights_counts_the_regime_multiplier():
    """Fixed-fractional weights of 1 (risk 0.5 over a 50 % stop) times a regime multiplier of 0.5: two positions
    are an exposure of 1, so their 30 % fall is a 30 % fall of the equity and trips a 25 % breaker (dividing by
    the weights alone, 2, on the held day or on the exit day would leave the fall below 25 % and let the late signal
    in); a 35 % breaker lets it in."""
    panel, disp = _candles(_breaker_table(2))
    rk = {"sizing": "fixed_fractional", "risk_fraction": 0.5, "max_weight": 1.0, "dd_breaker": 0.25,
          "dd_cooloff": 10}
    ex = {"rule": "fixed", "hold_days": 2, "stop_loss": 0.5}
    mult = np.full(panel.shape[0], 0.5)
    assert _portfolio_run(panel, disp, ex, rk, mult) == [(0, 16, 18), (1, 16, 18)]
    assert _portfolio_run(panel, disp, ex, {**rk, "dd_breaker": 0.35}, mult) == [(0, 16, 18), (1, 16, 18),
                                                                                (2, 21, 23)]


def test_breaker_trips_only_more_than_its_fraction_below_the_peak():
    """Equal weights, one position whose close falls from 10 to 8: the equity is exactly 0.8 = peak x (1 - 0.2), not
    MORE than 20 % below the peak, so a 20 % breaker stays open and the late signal enters; 19 % trips it."""
    calm = [(10.0, 10.01, 9.99, 10.0)] * 17 + [(9.0, 9.01, 7.99, 8.0)] + [(8.0, 8.01, 7.99, 8.0)] * 6
    fall = [r + (80.0 if t == 15 else 50.0,) for t, r in enumerate(calm)]
    late = [(10.0, 10.01, 9.99, 10.0, 80.0 if t == 20 else 50.0) for t in range(24)]
    panel, disp = _candles({"F": fall, "L": late})
    ex = {"rule": "fixed", "hold_days": 2}
    assert _portfolio_run(panel, disp, ex, {"dd_breaker": 0.2}) == [(0, 16, 18), (1, 21, 23)]
    assert _portfolio_run(panel, disp, ex, {"dd_breaker": 0.19}) == [(0, 16, 18)]


def test_correlation_cap_refuses_only_above_the_cap():
    """Returns (0.5, 0, -0.5) and (0.5, -0.5, 0): a correlation of exactly 0.25 / 0.5 = 0.5 (exact in binary) over
    the 3 pairs of a 5-session window; a cap of 0.5 is not exceeded (the candidate enters), 0.49 is."""
    a = [(c, c, c, c, 80.0 if t == 0 else 50.0) for t, c in enumerate([8.0, 12.0, 12.0, 6.0, 6.0, 6.0, 6.0])]
    b = [(c, c, c, c, 80.0 if t == 3 else 50.0) for t, c in enumerate([8.0, 12.0, 6.0, 6.0, 6.0, 6.0, 6.0])]
    panel, disp = _candles({"A": a, "B": b})
    assert K._corr(panel["close"].T.copy(), 0, 1, 3, 5, 3) == 0.5
    ex = {"rule": "fixed", "hold_days": 10}
    assert _portfolio_run(panel, disp, ex, {"corr_cap": 0.5, "corr_window": 5}) == [(0, 1, 6), (1, 4, 6)]
    assert _portfolio_run(panel, disp, ex, {"corr_cap": 0.49, "corr_window": 5}) == [(0, 1, 6)]


def test_caps_rank_tied_candidates_by_symbol_index_among_many():
    """17 symbols signal at one close with tied displays (90 x 5, 80 x 6, 70 x 6) for 2 slots: the two lowest
    symbols of 90 enter (a stable rank; numpy's default quicksort reorders such ties)."""
    scores = [90, 80, 80, 70, 70, 70, 70, 70, 70, 90, 80, 90, 80, 80, 90, 90, 80]
    cols = {f"S{j:02d}": [(10.0, 10.01, 9.99, 10.0, float(sc) if t == 2 else 50.0) for t in range(6)]
            for j, sc in enumerate(scores)}
    panel, disp = _candles(cols)
    n = panel.shape[0]
    ex = {"rule": "fixed", "hold_days": 2}
    ref = ref_trades_capped(panel, disp, 60.0, 40.0, RefExit(**ex), (0.0, 0.0), 0, n, n, max_positions=2)
    fast = simulate(panel, disp, Thresholds(60.0, 40.0), ExitParams(**ex), Costs(0.0, 0.0), Span(0, n, n), Caps(2))
    compare_trades(ref, fast_frame(fast), "17 tied candidates", panel.symbols)
    assert sorted(fast.symbol.tolist()) == [0, 9]


def test_date_kernel_retries_when_the_open_trades_overflow_the_buffer():
    """4 symbols x 12 sessions, a 1-session hold re-entered at every other open: 20 closed trades and 4 open at the
    end; the first buffer (12 x 4 // 8 + 16 = 22 trades) fills while the open ones are written: the retry returns
    all 24, as the reference."""
    rng = np.random.default_rng(8)
    cols = {f"S{j}": [(c, c * 1.01, c * 0.99, c, 90.0) for c in 20 * np.exp(np.cumsum(rng.normal(0, 0.02, 12)))]
            for j in range(4)}
    panel, disp = _candles(cols)
    ex = {"rule": "fixed", "hold_days": 1}
    ref = ref_trades(panel, disp, 50.0, 10.0, RefExit(**ex), (0.0, 0.0), 0, 12, 12)
    assert len(ref) == 24 and int(ref["open_at_end"].sum()) == 4
    tr, _ = simulate_counted(panel, disp, Thresholds(50.0, 10.0), ExitParams(**ex), Costs(0.0, 0.0), Span(0, 12, 12),
                             kernel="date")
    compare_trades(ref, fast_frame(tr), "date kernel retry", panel.symbols)
