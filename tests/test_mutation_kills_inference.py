"""Dependence-aware inference (optimizer/validate/_inference.py): what mutation testing (bench/mutation) found
unasserted -- exact one-line errors, boundaries (smallest valid inputs, degenerate series), defaults, the
lag rule, the block-length clip, the bootstrap's p / interval by definition, the MDE and PSR bookkeeping."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from optimizer.engine.simulate import Trades
from optimizer.errors import ParameterError
from optimizer.validate._inference import (
    TRADING_DAYS, DailyExcess, block_bootstrap_mean, daily_excess, daily_psr, dependent_inference, hac_mean,
    minimum_detectable_effect, newey_west_lags, politis_white_block,
)
from optimizer.validate._sharpe import probabilistic_sharpe_ratio, sharpe_stats
from test_inference import _trades  # Trades from hand-written rows (the suite's one helper)


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


_CLOSE = np.array([[10.0, 20.0], [11.0, 20.5], [10.5, 21.0], [11.5, 21.5], [12.5, 22.0]])


# ---- daily_excess -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0, 0.1], _CLOSE),
     "excess must be one value per closed trade (1), got excess='<array of length 2>'"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [np.nan], _CLOSE),
     "excess must be all finite (no NaN/inf), got excess='<array with non-finite values>'"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE[:, 0]),
     "close must be a 2-D (sessions x symbols) array, got close='<array of shape (5,)>'"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE, market_open=np.ones((5, 3))),
     "market_open must be an array of the close matrix's shape (5, 2), got market_open='<array of shape (5, 3)>'"),
    (lambda: daily_excess(_trades([0], [3], [2], [10.0], [11.0]), [0.0], _CLOSE),
     "trades must be exit_idx >= entry_idx for every trade, got trades='<exit before entry>'"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE, 0, 6),
     "stop must be in (start=0, number of sessions 5], got stop=6"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE, 2, 2),
     "stop must be in (start=2, number of sessions 5], got stop=2"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE, -1, 5),
     "stop must be in (start=-1, number of sessions 5], got stop=5"),
    (lambda: daily_excess(_trades([0], [1], [3], [10.0], [11.0]), [0.0], _CLOSE, 0, 3),
     "trades must be held inside rows [start=0, stop=3), got trades='<rows 1..3>'"),
])
def test_daily_excess_refuses_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_daily_excess_default_rows_edges_and_no_trades():
    tr = _trades([0], [1], [3], [10.0], [11.5])
    d = daily_excess(tr, [0.05], _CLOSE)  # rows default to [first entry, last exit]
    assert (d.start, d.stop, d.n_days) == (1, 4, 3)
    assert d.total.sum() == pytest.approx(0.05) and d.raw_total.sum() == pytest.approx(0.15)
    full = daily_excess(tr, [0.05], _CLOSE, 0, 5)  # a trade on the last row and the first row of the span: allowed
    edge = daily_excess(_trades([0, 1], [0, 4], [2, 4], [10.0, 22.0], [10.5, 22.0]), [0.0, 0.0], _CLOSE, 0, 5)
    assert full.n_days == 5 and edge.n_open.tolist() == [1, 1, 1, 0, 1]
    none = daily_excess(_trades([], [], [], [], []), [], _CLOSE, 1, 4)
    assert (none.start, none.stop, none.n_days, none.n_trades, none.n_invested_days) == (1, 4, 3, 0, 0)
    for a in (none.total, none.mean, none.inv_hold, none.raw_total):
        np.testing.assert_array_equal(a, np.zeros(3))
    assert none.n_open.dtype == np.int64 and math.isnan(none.mean_per_trade)
    assert daily_excess(_trades([], [], [], [], []), [], _CLOSE).n_days == 1  # no trade, no rows given: one row
    # open trades are left out (only closed trades count)
    opened = _trades([0, 1], [1, 1], [3, 4], [10.0, 20.0], [11.0, 22.0], open_at_end=[False, True])
    assert daily_excess(opened, [0.01], _CLOSE, 0, 5).n_trades == 1


def test_daily_excess_frame_and_means():
    tr = _trades([0, 1], [1, 1], [2, 3], [10.0, 20.0], [10.5, 21.5])
    d = daily_excess(tr, [0.02, 0.04], _CLOSE, 0, 5)
    f = d.to_frame()
    assert f.index.name == "row" and list(f.index) == [0, 1, 2, 3, 4]
    g = d.to_frame(pd.bdate_range("2024-01-01", periods=5))
    assert g.index.name == "date" and g.index[0] == pd.Timestamp("2024-01-01")
    np.testing.assert_array_equal(f["n_open"].to_numpy(), [0, 2, 2, 1, 0])
    # the account's daily return: raw total over the open trades, 0 in cash
    np.testing.assert_allclose(d.raw_mean, np.where(d.n_open > 0, d.raw_total / np.maximum(d.n_open, 1), 0.0))
    assert d.raw_mean[0] == 0.0 and d.raw_mean[4] == 0.0
    np.testing.assert_allclose(d.bench_mean, d.raw_mean - d.mean)


def test_market_adjustment_expectation_edges():
    # a one-row trade (hold 0 extra rows): its basket expectation is 0; the adjusted excess still sums per trade
    opn = _CLOSE * 0.99
    tr = _trades([0, 1], [2, 1], [2, 3], [opn[2, 0], opn[1, 1]], [opn[2, 0], opn[3, 1]])
    d = daily_excess(tr, [0.0, 0.0], _CLOSE, 0, 5, market_open=opn)
    assert d.trade_excess.size == 2 and np.isfinite(d.trade_excess).all()
    # the one-row trade: its basket is bought and sold at the same open -> no adjustment at all
    assert d.trade_excess[0] == pytest.approx(0.0, abs=1e-15)


# ---- HAC ----------------------------------------------------------------------------------------------------------

def test_newey_west_lag_rule_values():
    # floor(4 (n / 100)^(2/9))
    assert [newey_west_lags(n) for n in (0, 1, 99, 100, 101, 1000)] == [1, 1, 3, 4, 4, 6]


def test_hac_mean_degenerate_and_small_samples():
    nan_fields = ("se", "t", "p", "se_iid", "t_iid", "n_eff")
    for x, mean in (([], None), ([0.1, 0.2], 0.15), ([0.3] * 5, 0.3)):
        h = hac_mean(x)
        assert h.n == len(x)
        assert (math.isnan(h.mean) if mean is None else h.mean == pytest.approx(mean))
        assert all(math.isnan(getattr(h, k)) for k in nan_fields), h
    # three values: the smallest tested sample; lags are capped at n - 2
    h = hac_mean([0.01, 0.03, 0.02], lags=5)
    assert h.lags == 1 and h.n == 3 and np.isfinite(h.se) and h.mean == pytest.approx(0.02)
    assert h.se_iid == pytest.approx(0.01 / math.sqrt(3)) and h.t_iid == pytest.approx(0.02 / (0.01 / math.sqrt(3)))
    assert h.n_eff <= 3
    # lags = 0: the HAC error is the i.i.d. one with statsmodels' small-sample correction (n / (n - 1))
    x = np.random.default_rng(0).normal(0.001, 0.01, 50)
    z = hac_mean(x, 0)
    assert z.se == pytest.approx(z.se_iid, rel=1e-12) and z.n_eff == pytest.approx(50.0)
    assert z.p == pytest.approx(st.norm.sf(z.t))
    with _raises_exactly("x must be all finite (no NaN/inf), got x='<array with non-finite values>'"):
        hac_mean([0.1, np.inf, 0.2])
    with _raises_exactly("lags must be >= 0, got lags=-1"):
        hac_mean(x, -1)


# ---- bootstrap --------------------------------------------------------------------------------------------------

def test_politis_white_block_edges():
    assert politis_white_block(np.arange(7.0)) == 1.0  # fewer than 8 values
    assert politis_white_block(np.full(50, 0.2)) == 1.0  # no dispersion
    from arch.bootstrap import optimal_block_length
    walk = np.cumsum(np.random.default_rng(0).normal(size=12))  # a random walk: a long optimal block ...
    assert optimal_block_length(walk)["stationary"].iloc[0] > 3.0
    assert politis_white_block(walk) == 3.0  # ... clipped to n / 4
    b = politis_white_block(np.random.default_rng(1).normal(size=400))
    assert 1.0 <= b <= 100.0


def test_block_bootstrap_mean_by_definition():
    x = np.random.default_rng(2).normal(0.001, 0.01, 60)
    b = block_bootstrap_mean(x, reps=300, level=0.9, block_size=3.0, seed=4)
    assert (b.reps, b.level, b.block_size, b.means.size) == (300, 0.9, 3.0, 300)
    assert b.mean == pytest.approx(x.mean())
    a = (1.0 - 0.9) / 2.0
    lo, hi = np.quantile(b.means, [a, 1.0 - a])
    assert (b.lo, b.hi) == (lo, hi)
    assert b.p == (np.count_nonzero(b.means - b.mean >= b.mean) + 1) / 301
    d = block_bootstrap_mean(x)  # defaults: 2000 resamples, 95 %, Politis-White block, seed 0
    assert (d.reps, d.level, d.block_size) == (2000, 0.95, politis_white_block(x))
    np.testing.assert_array_equal(d.means, block_bootstrap_mean(x, 2000, 0.95, None, 0).means)
    assert block_bootstrap_mean([0.1, 0.2, 0.3], reps=100, block_size=1.0).means.size == 100  # 3 values, block 1


@pytest.mark.parametrize("kwargs, message", [
    ({"x": [0.1, 0.2]}, "x must be at least 3 values, got x='<array of length 2>'"),
    ({"x": [0.1, np.nan, 0.2]}, "x must be all finite (no NaN/inf), got x='<array with non-finite values>'"),
    ({"reps": 99}, "reps must be an integer >= 100, got reps=99"),
    ({"reps": 100.0}, "reps must be an integer >= 100, got reps=100.0"),
    ({"level": 1.0}, "level must be in (0, 1), got level=1.0"),
    ({"level": 0.0}, "level must be in (0, 1), got level=0.0"),
    ({"block_size": 0.5}, "block_size must be >= 1, got block_size=0.5"),
])
def test_block_bootstrap_refuses_with_one_exact_line(kwargs, message):
    kw = {"x": np.arange(10.0), "reps": 100, **kwargs}
    with _raises_exactly(message):
        block_bootstrap_mean(**kw)


# ---- PSR, MDE ------------------------------------------------------------------------------------------------------

def test_daily_psr_effective_n_bookkeeping():
    x = np.random.default_rng(3).normal(0.002, 0.01, 30)
    m = sharpe_stats(x)
    assert daily_psr(x, n_eff=float("nan"))["n_used"] == 30
    assert daily_psr(x, n_eff=1.5)["n_used"] == 2  # never below 2
    low = daily_psr(x, n_eff=10.9)
    assert low["n_used"] == 10
    assert low["psr"] == pytest.approx(probabilistic_sharpe_ratio(m["sr"], 0.0, 10, m["skew"], m["kurtosis"]))
    bench = daily_psr(x, sr_benchmark=0.1)
    assert bench["psr"] == pytest.approx(probabilistic_sharpe_ratio(m["sr"], 0.1, 30, m["skew"], m["kurtosis"]))
    three = daily_psr([0.01, 0.03, 0.02])  # the smallest series with a PSR
    assert np.isfinite(three["psr"]) and three["n"] == 3
    assert math.isnan(daily_psr([0.01, 0.03])["psr"]) and math.isnan(daily_psr([0.02] * 5)["psr"])
    assert set(low) == {"psr", "sr", "skew", "kurtosis", "n", "n_used"}


def test_mde_boundaries_and_defaults():
    m = minimum_detectable_effect(0.01)
    assert (m.alpha, m.power, m.se) == (0.025, 0.8, 0.01) and math.isnan(m.per_year)
    assert m.t_multiple == pytest.approx(st.norm.isf(0.025) + st.norm.ppf(0.8))
    assert math.isnan(minimum_detectable_effect(float("nan")).per_trade)
    ok = minimum_detectable_effect(0.01, alpha=0.49, power=0.01)
    assert ok.t_multiple == pytest.approx(st.norm.isf(0.49) + st.norm.ppf(0.01))
    for kw, message in (({"alpha": 0.5}, "alpha must be in (0, 0.5), got alpha=0.5"),
                        ({"alpha": 0.0}, "alpha must be in (0, 0.5), got alpha=0.0"),
                        ({"power": 1.0}, "power must be in (0, 1), got power=1.0"),
                        ({"power": 0.0}, "power must be in (0, 1), got power=0.0")):
        with _raises_exactly(message):
            minimum_detectable_effect(0.01, **kw)


# ---- everything at once ---------------------------------------------------------------------------------------

def _series(total, trade_excess, n_open=None, inv_hold=None) -> DailyExcess:
    total = np.asarray(total, dtype=float)
    n_open = np.ones(total.size, dtype=np.int64) if n_open is None else np.asarray(n_open, dtype=np.int64)
    inv = np.full(total.size, 0.1) if inv_hold is None else np.asarray(inv_hold, dtype=float)
    return DailyExcess(0, total.size, total, total.copy(), n_open, inv, np.asarray(trade_excess, dtype=float),
                       total.copy())


def test_dependent_inference_scales_to_the_trade_and_reports_its_settings():
    rng = np.random.default_rng(6)
    total = rng.normal(0.001, 0.01, 40)
    tx = rng.normal(0.002, 0.02, 20)
    d = _series(total, tx, inv_hold=np.r_[np.full(20, 0.1), np.zeros(20)])
    inf = dependent_inference(d, alpha=0.05, power=0.9, lags=2, reps=200, seed=3)
    h = hac_mean(total, 2)
    scale = 40 / 20
    assert inf.se == pytest.approx(h.se * scale) and inf.t == h.t and inf.p == h.p and inf.hac_lags == 2
    se_iid = tx.std(ddof=1) / math.sqrt(20)
    assert inf.se_iid == pytest.approx(se_iid) and inf.t_iid == pytest.approx(tx.mean() / se_iid)
    assert inf.n_eff == pytest.approx(min(20, 20 * (se_iid / inf.se) ** 2))
    b = block_bootstrap_mean(total, reps=200, seed=3)
    assert (inf.boot_lo, inf.boot_hi, inf.boot_p, inf.block_size) == (b.lo * scale, b.hi * scale, b.p, b.block_size)
    ps = daily_psr(total, 0.0, h.n_eff)
    assert (inf.psr, inf.daily_sharpe, inf.psr_n) == (ps["psr"], ps["sr"], ps["n_used"])
    mde = minimum_detectable_effect(inf.se, 0.05, 0.9, TRADING_DAYS * 0.05)
    assert (inf.mde_per_trade, inf.mde_per_year) == (mde.per_trade, pytest.approx(mde.per_year))
    assert (inf.alpha, inf.power, inf.n_trades, inf.n_days, inf.n_invested_days) == (0.05, 0.9, 20, 40, 40)
    dflt = dependent_inference(d)
    assert (dflt.alpha, dflt.power, dflt.hac_lags) == (0.025, 0.8, newey_west_lags(40))
    assert dflt.to_dict() == dependent_inference(d, 0.025, 0.8, None, 2000, 0).to_dict()  # reps 2000, seed 0


def test_dependent_inference_degenerate_series():
    one = dependent_inference(_series([0.0, 0.01, 0.0], [0.01]), reps=100)  # one trade: no i.i.d. figures
    assert one.n_trades == 1 and math.isnan(one.se_iid) and math.isnan(one.t_iid) and math.isnan(one.n_eff)
    flat_tx = dependent_inference(_series([0.0, 0.01, -0.01, 0.0], [0.01, 0.01]), reps=100)
    assert flat_tx.se_iid == 0.0 and math.isnan(flat_tx.t_iid)
    flat = dependent_inference(_series(np.zeros(5), [0.0, 0.0], n_open=np.zeros(5)), reps=100)
    for k in ("se", "t", "p", "boot_lo", "boot_hi", "boot_p", "block_size", "psr", "mde_per_trade"):
        assert math.isnan(getattr(flat, k)), k
    d = flat.to_dict()
    assert d["se"] is None and d["boot_p"] is None and d["n_trades"] == 2 and d["alpha"] == 0.025
    none = dependent_inference(_series([], []), reps=100)
    assert none.n_days == 0 and math.isnan(none.mde_per_year) and math.isnan(none.mean_per_trade)
    three = dependent_inference(_series([0.01, -0.02, 0.015], [0.01, 0.0, -0.005]), reps=100)  # 3 days: bootstrapped
    assert np.isfinite(three.boot_lo) and np.isfinite(three.block_size)


# ---- the market adjustment against a plain-loop reference ----------------------------------------------------------

def _reference_market_adjusted(tr: Trades, excess, close, opn, lo: int, hi: int):
    """The module docstring's construction written as loops: per trade, the basket of every symbol bought at the
    entry open (symbols without both prices left out of a row; a row with none carries the last value, 1 at the
    start), marked at each close and at the exit open; minus its expectation over uniformly random entries in
    (lo, hi) for the same hold (0 when no entry row fits or the hold is 0 extra rows), spread evenly."""
    closed = np.asarray(tr.closed, dtype=bool)
    ent, ext = tr.entry_idx[closed], tr.exit_idx[closed]
    T, N = close.shape

    def basket_mean(num, den):
        vals = [num[j] / den[j] for j in range(N) if np.isfinite(num[j] / den[j])]
        return sum(vals) / len(vals) if vals else float("nan")

    def expectation(h):
        if h == 0 or hi - h <= lo + 1:
            return 0.0
        days = [basket_mean(opn[e + h], opn[e]) for e in range(lo + 1, hi - h)]
        days = [d for d in days if np.isfinite(d)]
        return sum(days) / len(days) - 1.0 if days else 0.0

    adj_trade, adj_day = [], np.zeros(hi - lo)
    for e, x in zip(ent, ext):
        L = x - e + 1
        w_prev = 1.0
        e_h = expectation(L - 1)
        for r in range(e, x + 1):
            mark = opn[r] if r == x else close[r]
            w = basket_mean(mark, opn[e])
            w = w_prev if not np.isfinite(w) else w
            adj_day[r - lo] += (w - w_prev) - e_h / L
            w_prev = w
        adj_trade.append(w_prev - 1.0 - e_h)
    return np.asarray(excess, dtype=float) - np.array(adj_trade), adj_day


def test_market_adjustment_equals_the_reference_with_missing_prices():
    rng = np.random.default_rng(12)
    T, N = 60, 4
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (T, N)), axis=0))
    opn = close * np.exp(rng.normal(0.0, 0.005, (T, N)))
    opn[10:14, 1] = np.nan  # a symbol without prices for a while: left out of those rows' basket
    close[20:23, 2] = np.nan
    opn[30, :] = np.nan  # a session with no open at all: no basket expectation from it
    close[31, :] = np.nan  # no close at all: the basket carries its last value
    opn[40:43, :3] = np.nan  # one symbol left in the basket (a mean of one)
    close[40:43, :3] = np.nan
    opn[31, :] = np.nan  # ... and no open either
    # a one-row trade (hold 0); in span 27..59 a hold of 30 rows leaves exactly one random entry row (28); in span
    # 30..60 a hold of 28 leaves one (31) that has no open: no finite expectation, 0
    sym = np.array([0, 3, 3, 0, 2, 3, 1, 0, 1, 2])
    ent = np.array([2, 5, 29, 31, 39, 40, 44, 55, 28, 31])
    ext = np.array([8, 5, 33, 35, 45, 41, 50, 58, 58, 59])
    ep, xp = np.nan_to_num(opn[ent, sym], nan=50.0), np.nan_to_num(opn[ext, sym], nan=50.0)
    tr = _trades(sym, ent, ext, ep, xp)
    excess = rng.normal(0.0, 0.02, ent.size)
    for lo, hi in ((0, T), (2, 59), (27, 59), (30, 60)):
        keep = (ent >= lo) & (ext < hi)
        t2 = _trades(sym[keep], ent[keep], ext[keep], ep[keep], xp[keep])
        d = daily_excess(t2, excess[keep], close, lo, hi, market_open=opn)
        want_trade, adj_day = _reference_market_adjusted(t2, excess[keep], close, opn, lo, hi)
        plain = daily_excess(t2, excess[keep], close, lo, hi)
        np.testing.assert_allclose(d.trade_excess, want_trade, atol=1e-12, err_msg=f"span {lo}..{hi}")
        np.testing.assert_allclose(d.total, plain.total - adj_day, atol=1e-12, err_msg=f"span {lo}..{hi}")
        assert d.total.sum() == pytest.approx(d.trade_excess.sum(), abs=1e-12)


# ---- more boundaries ----------------------------------------------------------------------------------------------

def test_inference_edges_by_hand():
    # eight values are enough for a Politis-White block (clipped to 8 / 4 = 2); a white noise's block of 1.65
    # stays as it is (the lower clip is 1)
    assert politis_white_block(np.cumsum(np.random.default_rng(0).normal(size=8))) == 2.0
    assert politis_white_block(np.random.default_rng(3).normal(size=400)) == pytest.approx(1.6474986116)
    # the bootstrap p counts resampled means AT LEAST as far above the mean as the mean is above 0: ties count
    x = np.array([0.0, 0.0, 3.0])  # mean 1; resampled means are k/3 * 3 = 0, 1, 2, 3 exactly
    b = block_bootstrap_mean(x, reps=200, block_size=1.0, seed=5)
    assert np.any(b.means == 2.0)
    assert b.p == (np.count_nonzero(b.means >= 2.0) + 1) / 201
    # the HAC effective n: n (se_iid / se)^2, capped at n
    e = np.random.default_rng(4).normal(size=300)
    ar = np.convolve(e, [1.0, 0.8, 0.5], mode="same")
    h = hac_mean(ar, 6)
    assert h.n_eff == pytest.approx(300 * (h.se_iid / h.se) ** 2) and h.n_eff < 200
    # a degenerate series still reports the lag rule it would use
    assert hac_mean(np.zeros(250)).lags == newey_west_lags(250) == 4
    # rows: a frame indexed by panel row starts at the span's start
    tr = _trades([0], [2], [3], [10.5], [11.5])
    f = daily_excess(tr, [0.01], _CLOSE, 1, 5).to_frame()
    assert list(f.index) == [1, 2, 3, 4]
    d = daily_excess(tr, [0.01], _CLOSE, 1, 5)
    assert d.n_open.dtype == np.int64 and d.n_open.tolist() == [0, 1, 1, 0]
    assert daily_excess(_trades([], [], [], [], []), [], _CLOSE).start == 0  # no trade, no rows: row 0


def test_inference_reads_decimals_and_stays_quiet_on_degenerate_input():
    from decimal import Decimal
    x = np.random.default_rng(9).normal(0.001, 0.01, 40)
    dec = [Decimal(str(float(v))) for v in x]
    assert hac_mean(dec, 3) == hac_mean(x, 3)
    assert politis_white_block(dec) == politis_white_block(x)
    np.testing.assert_array_equal(block_bootstrap_mean(dec, reps=100).means, block_bootstrap_mean(x, reps=100).means)
    tr = _trades([0], [1], [3], [10.0], [11.5])
    a = daily_excess(tr, [Decimal("0.05")], _CLOSE.astype(object))
    np.testing.assert_array_equal(a.total, daily_excess(tr, [0.05], _CLOSE).total)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" / "degrees of freedom" RuntimeWarning
        assert math.isnan(hac_mean([]).mean)
        one = dependent_inference(_series([0.0, 0.01, 0.0], [0.01]), reps=100)
        none = dependent_inference(_series([], []), reps=100)
    assert math.isnan(one.se_iid) and math.isnan(none.mde_per_year)


def test_dependent_inference_two_trades_and_moments():
    two = dependent_inference(_series([0.01, -0.02, 0.015, 0.0], [0.03, 0.01]), reps=100)
    se_iid = np.std([0.03, 0.01], ddof=1) / math.sqrt(2)
    assert two.se_iid == pytest.approx(se_iid) and two.t_iid == pytest.approx(0.02 / se_iid)  # two trades suffice
    ps = daily_psr(np.array([0.01, -0.02, 0.015, 0.0]), 0.0, hac_mean([0.01, -0.02, 0.015, 0.0]).n_eff)
    assert (two.skew, two.kurtosis) == (ps["skew"], ps["kurtosis"])


def test_politis_white_block_is_one_when_arch_cannot_estimate_it():
    # values so large that the autocovariances overflow: arch's block length is inf / inf = NaN; the documented
    # fallback is 1 (not NaN, not another length)
    with np.errstate(over="ignore", invalid="ignore"):
        assert politis_white_block(1e200 * np.arange(8.0)) == 1.0
        assert politis_white_block(np.tile([0.0, 1e300], 6)) == 1.0


# ---- daily_excess(rows=) and DailyExcess.day_of / to_frame: the exact refusals and the boundaries ------------------

def test_daily_excess_rows_refusals_name_the_rows_and_one_row_is_enough():
    """Rows 0..7, one symbol; A held on rows 1..2, B on rows 5..6 (as test_inference's rows test). The refusals name
    what was given (the dtype and length, the first and last row); an empty integer array and a repeated row are
    refused; one row is a valid series (a one-day trade); ``day_of`` of the plain series is row - start."""
    close = np.array([[10.0], [11.0], [12.0], [13.0], [14.0], [15.0], [16.0], [17.0]])
    tr = _trades([0, 0], [1, 5], [2, 6], [10.0, 14.5], [12.5, 16.5])
    ex = np.array([0.2, 0.1])
    with _raises_exactly("rows must be a non-empty array of panel rows, got rows='<array of dtype float64, length 4>'"):
        daily_excess(tr, ex, close, 1, 7, rows=np.array([1.0, 2.0, 5.0, 6.0]))
    with _raises_exactly("rows must be a non-empty array of panel rows, got rows='<array of dtype int64, length 0>'"):
        daily_excess(tr, ex, close, 1, 7, rows=np.array([], dtype=np.int64))
    with _raises_exactly("rows must be increasing rows inside [start=1, stop=7), got rows='<rows 0..6>'"):
        daily_excess(tr, ex, close, 1, 7, rows=np.array([0, 1, 2, 5, 6]))
    with _raises_exactly("rows must be increasing rows inside [start=1, stop=7), got rows='<rows 1..6>'"):
        daily_excess(tr, ex, close, 1, 7, rows=np.array([1, 2, 2, 5, 6]))
    one = daily_excess(_trades([0], [3], [3], [12.5], [13.0]), [0.01], close, 1, 7, rows=np.array([3]))
    assert one.n_days == 1 and one.rows.tolist() == [3]
    assert one.total[0] == pytest.approx(13.0 / 12.5 - 1 - (13.0 / 12.5 - 1 - 0.01), abs=1e-15)
    full = daily_excess(tr, ex, close, 1, 7)
    np.testing.assert_array_equal(full.day_of([1, 5, 6]), [0, 4, 5])
    np.testing.assert_array_equal(full.day_of(np.array([2])), [1])
    dates = pd.bdate_range("2024-01-01", periods=8)
    kept = daily_excess(tr, ex, close, 1, 7, rows=np.array([1, 2, 5, 6]))
    assert kept.to_frame(dates).index.name == "date" and full.to_frame(dates).index.name == "date"
