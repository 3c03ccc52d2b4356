"""Dependence-aware inference (optimizer/validate/_inference.py): the daily excess series of overlapping trades,
HAC and block-bootstrap tests of its mean, the daily PSR and the minimum detectable effect.

Oracles: hand-computed marks of a five-row candle table, the Newey-West formula written out, the identity
"daily contributions sum to each trade's excess", and simulations with planted dependence (a common factor that
moves every position open on a day) and planted effects on the synthetic market.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from optimizer.data.synth import SynthConfig, generate_market
from optimizer.engine.metrics import BenchmarkCache
from optimizer.engine.simulate import Span, Trades
from optimizer.errors import ParameterError
from optimizer.validate._inference import (
    block_bootstrap_mean,
    daily_excess,
    daily_psr,
    dependent_inference,
    hac_mean,
    minimum_detectable_effect,
    newey_west_lags,
)
from optimizer.validate._sharpe import probabilistic_sharpe_ratio, sharpe_stats


def _trades(sym, ent, ext, ep, xp, cost=0.0, open_at_end=None) -> Trades:
    n = len(sym)
    reason = np.zeros(n, dtype=np.int64)
    if open_at_end is not None:
        reason[np.asarray(open_at_end, dtype=bool)] = 8  # EXIT_REASONS.index("open_at_end")
    a = lambda v, t=np.int64: np.asarray(v, dtype=t)  # noqa: E731
    return Trades(a(sym), a(ent) - 1, a(ent), a(ext), a(ep, float), a(xp, float), reason, np.zeros(n), cost=cost)


# ---- the daily series: hand-computed candle table ----------------------------------------------------------------

def test_daily_excess_marks_a_hand_table():
    # rows 0..4, two symbols. Trade A: symbol 0, buy at the open of row 1 (10.0), sell at the open of row 4 (12.0).
    # Trade B: symbol 1, in and out on row 2 (stop inside the day): 20 -> 19. Close of symbol 0 on row 2 missing.
    close = np.array([[10.0, 20.0], [11.0, 20.5], [np.nan, 21.0], [11.5, 21.5], [12.5, 22.0]])
    tr = _trades([0, 1], [1, 2], [4, 2], [10.0, 20.0], [12.0, 19.0], cost=0.0)
    excess = np.array([0.20 - 0.08, -0.05 - 0.01])  # benchmarks 0.08 (A, 4 rows) and 0.01 (B, 1 row)
    d = daily_excess(tr, excess, close, 0, 5)
    # A at constant notional 10: row1 (11-10)/10, row2 carries 11 -> 0, row3 (11.5-11)/10, row4 (12-11.5)/10,
    # minus 0.08/4 per row. B: one row, -1/20 - 0.01.
    a = np.array([0.0, 0.1, 0.0, 0.05, 0.05]) - np.array([0, 0.02, 0.02, 0.02, 0.02])
    b = np.array([0.0, 0.0, -0.06, 0.0, 0.0])
    np.testing.assert_allclose(d.total, a + b, atol=1e-15)
    np.testing.assert_array_equal(d.n_open, [0, 1, 2, 1, 1])
    np.testing.assert_allclose(d.mean, [0.0, a[1], (a[2] + b[2]) / 2, a[3], a[4]], atol=1e-15)
    np.testing.assert_allclose(d.inv_hold, [0.0, 0.25, (0.25 + 1.0) / 2, 0.25, 0.25])
    raw = np.array([0.0, 0.1, -0.05, 0.05, 0.05])
    np.testing.assert_allclose(d.raw_total, raw, atol=1e-15)
    np.testing.assert_allclose(d.bench_mean, [0.0, 0.02, (0.02 + 0.01) / 2, 0.02, 0.02], atol=1e-15)
    assert d.n_trades == 2 and d.n_days == 5 and d.n_invested_days == 4
    assert d.mean_per_trade == pytest.approx(excess.mean(), abs=1e-15)
    f = d.to_frame(pd.bdate_range("2024-01-01", periods=5))
    assert list(f.columns) == ["total", "mean", "n_open"] and f.index[2] == pd.Timestamp("2024-01-03")
    np.testing.assert_allclose(f["total"].to_numpy(), d.total)


def test_daily_excess_costs_and_open_trades():
    close = np.array([[10.0], [10.5], [11.0], [11.0]])
    c = 0.001
    tr = _trades([0, 0], [1, 2], [2, 3], [10.0, 11.0], [11.0, 12.0], cost=c, open_at_end=[False, True])
    net = tr.net_ret[tr.closed]
    d = daily_excess(tr, net - 0.0, close, 0, 4)  # benchmark 0: excess = net return
    v0 = 10.0 * (1 + c)
    np.testing.assert_allclose(d.total, [0.0, 10.5 / v0 - 1.0, (11.0 * (1 - c) - 10.5) / v0, 0.0], atol=1e-15)
    assert d.total.sum() == pytest.approx(net[0], abs=1e-15)
    assert d.n_trades == 1  # the trade still open at the end has no excess and is left out


def _random_market(rng, t_n=260, n=12, factor_vol=0.012, idio_vol=0.004):
    f = rng.normal(0.0, factor_vol, t_n)
    e = rng.normal(0.0, idio_vol, (t_n, n))
    close = 50.0 * np.exp(np.cumsum(f[:, None] + e, axis=0))
    opn = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.002, (t_n, n)))
    return opn, close


def _bench_excess(tr: Trades, opn: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return BenchmarkCache({"open": opn}).excess(tr, Span(lo, hi, hi))


def test_contributions_sum_to_each_trades_excess_with_the_engine_benchmark():
    rng = np.random.default_rng(4)
    opn, close = _random_market(rng)
    n = 60
    ent = rng.integers(1, 230, n)
    ext = ent + rng.integers(0, 25, n)
    sym = rng.integers(0, 12, n)
    tr = _trades(sym, ent, ext, opn[ent, sym], opn[ext, sym], cost=0.0006)
    ex = _bench_excess(tr, opn, 0, 260)
    d = daily_excess(tr, ex, close, 0, 260)
    per_trade = np.zeros(n)
    # rebuild each trade's own series: a single-trade DailyExcess must sum to its excess
    for i in range(n):
        one = _trades(sym[i:i + 1], ent[i:i + 1], ext[i:i + 1], opn[ent[i:i + 1], sym[i:i + 1]],
                      opn[ext[i:i + 1], sym[i:i + 1]], cost=0.0006)
        per_trade[i] = daily_excess(one, ex[i:i + 1], close, 0, 260).total.sum()
    np.testing.assert_allclose(per_trade, ex, atol=1e-12)
    assert d.total.sum() == pytest.approx(ex.sum(), abs=1e-12)
    assert d.n_open.sum() == int((ext - ent + 1).sum())


def test_market_adjustment_removes_a_pure_market_path():
    # every symbol follows the same path: a trade's excess is pure market timing, and the adjusted excess is 0
    rng = np.random.default_rng(9)
    path = 30.0 * np.exp(np.cumsum(rng.normal(0, 0.015, 200)))
    close = np.tile(path[:, None], (1, 5))
    opn = np.vstack([close[:1], close[:-1]])
    ent = rng.integers(1, 170, 40)
    ext = ent + rng.integers(1, 20, 40)
    sym = rng.integers(0, 5, 40)
    tr = _trades(sym, ent, ext, opn[ent, sym], opn[ext, sym], cost=0.0)
    ex = _bench_excess(tr, opn, 0, 199)
    assert np.abs(ex).max() > 0.01  # unadjusted: the market path shows up as "excess"
    adj = daily_excess(tr, ex, close, 0, 199, market_open=opn)
    np.testing.assert_allclose(adj.trade_excess, 0.0, atol=1e-12)
    np.testing.assert_allclose(adj.total, 0.0, atol=1e-12)


def test_daily_excess_validation():
    close = np.ones((5, 2))
    tr = _trades([0], [1], [3], [1.0], [1.0])
    with pytest.raises(ParameterError, match="excess must be one value per closed trade"):
        daily_excess(tr, [0.0, 0.1], close)
    with pytest.raises(ParameterError, match="trades must be held inside rows"):
        daily_excess(tr, [0.0], close, 2, 5)
    with pytest.raises(ParameterError, match="market_open must be"):
        daily_excess(tr, [0.0], close, market_open=np.ones((4, 2)))



def test_daily_excess_keeps_only_the_rows_given():
    """``rows=`` keeps the days of those panel rows only (a walk-forward with step > test: the sessions no window
    tested are no observation). Rows 0..7, one symbol; A held on rows 1..2, B on rows 5..6; rows 3, 4 left out. The
    days kept are the same as in the full series, the left-out rows are not zeros: 4 days, not 6, and the mean
    daily total (what the HAC t and the PSR run on) is the trades' excess over 4 days."""
    close = np.array([[10.0], [11.0], [12.0], [13.0], [14.0], [15.0], [16.0], [17.0]])
    tr = _trades([0, 0], [1, 5], [2, 6], [10.0, 14.5], [12.5, 16.5])
    excess = np.array([0.25 - 0.05, 16.5 / 14.5 - 1 - 0.02])
    full = daily_excess(tr, excess, close, 1, 7)
    d = daily_excess(tr, excess, close, 1, 7, rows=np.array([1, 2, 5, 6]))
    assert full.n_days == 6 and full.rows is None and d.n_days == 4
    np.testing.assert_array_equal(d.rows, [1, 2, 5, 6])
    np.testing.assert_array_equal(d.row_index, [1, 2, 5, 6])
    np.testing.assert_array_equal(full.row_index, np.arange(1, 7))
    keep = [0, 1, 4, 5]
    for k in ("total", "mean", "n_open", "inv_hold", "raw_total"):
        np.testing.assert_array_equal(getattr(d, k), getattr(full, k)[keep])
    np.testing.assert_allclose(d.total, [0.1 - 0.025, 0.15 - 0.025, 0.5 / 14.5 - 0.01, 1.5 / 14.5 - 0.01],
                               atol=1e-15)
    assert d.total.mean() == pytest.approx(excess.sum() / 4, abs=1e-15)
    assert d.mean_per_trade == full.mean_per_trade == pytest.approx(excess.mean(), abs=1e-15)
    inf = dependent_inference(d, reps=200)
    assert inf.n_days == 4 and inf.n_invested_days == 4
    # every kept day holds one 2-row trade: a year's excess is 252 x 1/2 x the per-trade effect (the 2 left-out
    # rows would dilute it to 252 x 4/6 x 1/2)
    assert inf.mde_per_year == pytest.approx(inf.mde_per_trade * 252.0 * 0.5, rel=1e-12)
    np.testing.assert_array_equal(d.day_of([1, 5, 6]), [0, 2, 3])
    f = d.to_frame(pd.bdate_range("2024-01-01", periods=8))
    assert list(f.index) == list(pd.bdate_range("2024-01-01", periods=8)[[1, 2, 5, 6]])
    assert list(d.to_frame().index) == [1, 2, 5, 6] and d.to_frame().index.name == "row"
    # no closed trade: the days given, each a cash day
    still_open = _trades([0], [6], [7], [16.0], [17.0], open_at_end=[True])
    none = daily_excess(still_open, [], close, 1, 7, rows=np.array([1, 2, 5]))
    assert none.n_days == 3 and none.n_trades == 0
    np.testing.assert_array_equal(none.rows, [1, 2, 5])
    np.testing.assert_array_equal(none.total, np.zeros(3))
    # every row given: the plain series
    same = daily_excess(tr, excess, close, 1, 7, rows=np.arange(1, 7))
    assert same.rows is None
    np.testing.assert_array_equal(same.total, full.total)
    with pytest.raises(ParameterError, match="rows must be every row a closed trade is held on.*missing 5"):
        daily_excess(tr, excess, close, 1, 7, rows=np.array([1, 2, 6]))
    with pytest.raises(ParameterError, match=r"rows must be increasing rows inside \[start=1, stop=7\)"):
        daily_excess(tr, excess, close, 1, 7, rows=np.array([0, 1, 2, 5, 6]))
    with pytest.raises(ParameterError, match=r"rows must be increasing rows"):
        daily_excess(tr, excess, close, 1, 7, rows=np.array([1, 2, 6, 5]))
    with pytest.raises(ParameterError, match=r"rows must be increasing rows inside \[start=1, stop=7\)"):
        daily_excess(tr, excess, close, 1, 7, rows=np.array([1, 2, 5, 6, 7]))
    with pytest.raises(ParameterError, match=r"rows must be a non-empty array of panel rows"):
        daily_excess(tr, excess, close, 1, 7, rows=np.array([1.0, 2.0, 5.0, 6.0]))

def test_market_adjustment_expects_the_basket_over_entries_after_the_signal_rows_only():
    """The market adjustment adds back the basket's expected return over a trade's hold for a random entry row.
    It averaged over EVERY entry row of (start, stop), so a walk-forward whose step exceeds its test took entries
    after sessions no window tested, where no signal was ever evaluated (no window's ``BenchmarkCache`` takes
    them: its entries follow a session of its test span, e in (sig_start, sig_end]). With ``signal_rows`` (the
    tested sessions) it averages over the rows after them only. Hand table: rows 0..9, two symbols; windows test
    rows [1, 3) and [6, 8); A (symbol 0) entry 2, exit 3; B (symbol 1) entry 7, exit 8; the series [1, 9) keeps
    rows 1, 2, 3, 6, 7, 8. For h = 1 the entries are 2, 3 (after 1, 2) and 7 (after 6; 8 + 1 is not < 9). The
    basket doubles at the open of row 5, inside the untested gap: the entries 4, 5 every row would have taken."""
    opn = np.array([[10, 20], [10, 20], [11, 20], [11, 22], [11, 22], [22, 44], [22, 44], [22, 44], [24, 44],
                    [24, 48]], dtype=float)
    close = opn.copy()
    tr = _trades([0, 1], [2, 7], [3, 8], [11.0, 44.0], [11.0, 44.0])
    ex = np.array([0.01, -0.02])
    kept, tested = np.array([1, 2, 3, 6, 7, 8]), np.array([1, 2, 6, 7])
    basket = lambda e, x: (opn[x] / opn[e]).mean() - 1.0  # noqa: E731 - the equal-weight basket, open to open
    want_e = np.mean([(opn[e + 1] / opn[e]).mean() for e in (2, 3, 7)]) - 1.0  # 1.05, 1.0, (24/22 + 1)/2
    got = daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=tested)
    want = ex - np.array([basket(2, 3), basket(7, 8)]) + want_e
    np.testing.assert_allclose(got.trade_excess, want, rtol=0, atol=1e-15)
    assert got.total.sum() == pytest.approx(want.sum(), abs=1e-15)
    # every row (before): the entries 2..7, the gap's doubling among them
    every = np.mean([(opn[e + 1] / opn[e]).mean() for e in range(2, 8)]) - 1.0
    assert every - want_e > 0.15
    whole = daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=np.arange(1, 9))
    np.testing.assert_allclose(whole.trade_excess, ex - np.array([basket(2, 3), basket(7, 8)]) + every, atol=1e-15)
    # without signal_rows the series' own rows are the signal rows: entries 2, 3, 4, 7 (4 follows the held row 3)
    dflt = daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept)
    own = np.mean([(opn[e + 1] / opn[e]).mean() for e in (2, 3, 4, 7)]) - 1.0
    np.testing.assert_allclose(dflt.trade_excess, ex - np.array([basket(2, 3), basket(7, 8)]) + own, atol=1e-15)
    # a hold no entry row allows (e + 6 < 9 only for e = 2, which follows row 1): that one; then none at all
    long = _trades([0], [2], [8], [11.0], [24.0])
    one = daily_excess(long, [0.0], close, 1, 9, market_open=opn, rows=np.arange(1, 9), signal_rows=tested)
    assert one.trade_excess[0] == pytest.approx(-basket(2, 8) + (opn[8] / opn[2]).mean() - 1.0, abs=1e-15)
    none = daily_excess(long, [0.0], close, 1, 9, market_open=opn, rows=np.arange(1, 9), signal_rows=[6, 7])
    assert none.trade_excess[0] == pytest.approx(-basket(2, 8), abs=1e-15)
    with pytest.raises(ParameterError, match="signal_rows must be given only with market_open"):
        daily_excess(tr, ex, close, 1, 9, rows=kept, signal_rows=tested)
    with pytest.raises(ParameterError, match=r"signal_rows must be increasing rows inside \[start=1, stop=9\)"):
        daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=[0, 1, 2])
    with pytest.raises(ParameterError, match=r"signal_rows must be increasing rows"):
        daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=[2, 1])
    with pytest.raises(ParameterError, match=r"signal_rows must be increasing rows inside \[start=1, stop=9\)"):
        daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=[1, 9])
    with pytest.raises(ParameterError, match="signal_rows must be a non-empty array of panel rows"):
        daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=np.array([1.0, 2.0]))
    with pytest.raises(ParameterError, match="signal_rows must be a non-empty array of panel rows"):
        daily_excess(tr, ex, close, 1, 9, market_open=opn, rows=kept, signal_rows=np.array([], dtype=np.int64))


def _old_basket_expectation(opn, lo, hi, holds):
    """The market adjustment's expectation as it was before ``signal_rows`` (entries [lo + 1, hi - h)): the
    reference that keeps a series over every row bit-identical."""
    out = {}
    for h in np.unique(holds):
        h = int(h)
        if hi - h <= lo + 1 or h == 0:
            out[h] = 0.0
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            r = opn[lo + 1 + h:hi] / opn[lo + 1:hi - h]
        ok = np.isfinite(r)
        cnt = ok.sum(axis=1)
        per_day = np.where(cnt > 0, np.where(ok, r, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
        out[h] = float(np.nanmean(per_day) - 1.0) if np.isfinite(per_day).any() else 0.0
    return out


def test_market_adjustment_over_every_row_is_bit_identical_to_before(monkeypatch):
    """A series over every row (no ``rows``: a walk-forward whose test windows tile) keeps every figure of the
    market-adjusted series bit for bit: the same random market with missing opens, trades of holds 0..24, the
    series built with the expectation as it was (monkeypatched in) and as it is, compared with ``==``."""
    import optimizer.validate._inference as inf_mod

    rng = np.random.default_rng(4)
    opn, close = _random_market(rng)
    opn[rng.random(opn.shape) < 0.03] = np.nan
    n = 60
    ent = rng.integers(1, 230, n)
    ext = ent + rng.integers(0, 25, n)
    sym = rng.integers(0, 12, n)
    tr = _trades(sym, ent, ext, close[ent, sym], close[ext, sym], cost=0.0006)
    ex = rng.normal(0.0, 0.02, n)
    now = daily_excess(tr, ex, close, 0, 260, market_open=opn)
    spelled = daily_excess(tr, ex, close, 0, 260, market_open=opn, signal_rows=np.arange(260))
    with monkeypatch.context() as m:
        m.setattr(inf_mod, "_basket_expectation", lambda o, entries, hi, holds: _old_basket_expectation(
            o, int(entries[0]) - 1, hi, holds))
        before = daily_excess(tr, ex, close, 0, 260, market_open=opn)
    for k in ("total", "mean", "n_open", "inv_hold", "trade_excess", "raw_total"):
        np.testing.assert_array_equal(getattr(now, k), getattr(before, k), err_msg=k)
        np.testing.assert_array_equal(getattr(spelled, k), getattr(before, k), err_msg=k)
    assert now.rows is None and not np.array_equal(now.trade_excess, ex)  # the adjustment did something
    holds = ext - ent
    assert inf_mod._basket_expectation(opn, np.arange(1, 261), 260, holds) == _old_basket_expectation(opn, 0, 260, holds)
    assert _old_basket_expectation(opn, 0, 260, holds)[0] == 0.0 and _old_basket_expectation(opn, 250, 260, [20]) == {20: 0.0}
    assert inf_mod._basket_expectation(opn, np.arange(251, 261), 260, np.array([20])) == {20: 0.0}


# ---- HAC ----------------------------------------------------------------------------------------------------------

def _nw_by_hand(x: np.ndarray, lags: int) -> float:
    n = x.size
    u = x - x.mean()
    s = u @ u / n
    for lag in range(1, lags + 1):
        s += 2.0 * (1.0 - lag / (lags + 1.0)) * (u[lag:] @ u[:-lag]) / n
    return math.sqrt(s / n * n / (n - 1))  # statsmodels' small-sample correction n / (n - k), k = 1


def test_hac_mean_is_the_newey_west_formula():
    x = np.random.default_rng(1).normal(0.001, 0.01, 300)
    x = np.convolve(x, [1.0, 0.6, 0.3], mode="same")
    for lags in (0, 3, 12):
        h = hac_mean(x, lags)
        assert h.se == pytest.approx(_nw_by_hand(x, lags), rel=1e-10)
        assert h.t == pytest.approx(x.mean() / h.se)
        assert h.p == pytest.approx(st.norm.sf(h.t))
        assert h.t_iid == pytest.approx(st.ttest_1samp(x, 0.0).statistic)
    assert hac_mean(x).lags == newey_west_lags(300) == 5
    # MA(2) with weights 1, 0.6, 0.3: long-run / short-run variance = 1.9^2 / 1.45 = 2.5 -> n_eff ~ n / 2.5
    y = np.convolve(np.random.default_rng(2).normal(0, 1, 4000), [1.0, 0.6, 0.3], mode="same")
    assert 0.3 * 4000 < hac_mean(y, 15).n_eff < 0.55 * 4000
    assert math.isnan(hac_mean(np.zeros(10)).t)


def test_iid_inference_calls_correlated_trades_significant_the_daily_hac_does_not():
    """Null: trades come in clusters entering the same day on different symbols that share one market factor.
    Their excess has no edge, but within a cluster all trades move together, so the per-trade i.i.d. t counts 20
    observations where there is about one. Over 150 such markets the i.i.d. t > 2 far more often than 2.3 %; the
    HAC t of the daily series does not."""
    rng = np.random.default_rng(2024)
    iid_rej = hac_rej = 0
    reps = 150
    n_eff = []
    for _ in range(reps):
        opn, close = _random_market(rng, t_n=300, n=20, factor_vol=0.012, idio_vol=0.003)
        days = np.sort(rng.choice(np.arange(5, 280, 12), 12, replace=False))
        ent = np.repeat(days, 20)
        sym = np.tile(np.arange(20), 12)
        ext = ent + 10
        tr = _trades(sym, ent, ext, opn[ent, sym], opn[ext, sym])
        ex = _bench_excess(tr, opn, 0, 299)
        d = daily_excess(tr, ex, close, 0, 300)
        inf = dependent_inference(d, reps=100, seed=1)
        iid_rej += inf.t_iid > 2.0
        hac_rej += inf.t > 2.0
        n_eff.append(inf.n_eff)
    assert iid_rej / reps > 0.25
    assert hac_rej / reps < 0.08
    assert np.median(n_eff) < 40  # of 240 trades: about 12 clusters' worth


# ---- bootstrap, PSR -----------------------------------------------------------------------------------------------

def test_block_bootstrap_mean_widens_for_autocorrelated_days_and_is_reproducible():
    rng = np.random.default_rng(5)
    e = rng.normal(0, 1.0, 2000)
    ar = np.empty_like(e)
    ar[0] = e[0]
    for i in range(1, e.size):
        ar[i] = 0.5 * ar[i - 1] + e[i]
    iid = block_bootstrap_mean(e, reps=1000, seed=3)
    dep = block_bootstrap_mean(ar, reps=1000, seed=3)
    sd_iid = np.std(iid.means) / (e.std(ddof=1) / math.sqrt(e.size))
    sd_dep = np.std(dep.means) / (ar.std(ddof=1) / math.sqrt(ar.size))
    assert 0.85 < sd_iid < 1.15
    assert sd_dep > 1.35  # sqrt((1 + 0.5) / (1 - 0.5)) = 1.73 asymptotically
    assert dep.block_size > iid.block_size
    again = block_bootstrap_mean(ar, reps=1000, seed=3)
    np.testing.assert_array_equal(again.means, dep.means)
    assert iid.lo < iid.mean < iid.hi
    shifted = block_bootstrap_mean(e + 0.2, reps=1000, seed=3)
    assert shifted.p < 0.01 < iid.p
    with pytest.raises(ParameterError, match="reps must be"):
        block_bootstrap_mean(e, reps=10)


def test_daily_psr_uses_the_series_moments_and_effective_n():
    x = np.random.default_rng(8).standard_t(4, 500) * 0.01 + 0.001
    m = sharpe_stats(x)
    out = daily_psr(x)
    assert out["psr"] == pytest.approx(probabilistic_sharpe_ratio(m["sr"], 0.0, 500, m["skew"], m["kurtosis"]))
    fewer = daily_psr(x, n_eff=100.4)
    assert fewer["n_used"] == 100 and fewer["psr"] < out["psr"]
    assert daily_psr(x, n_eff=10_000)["n_used"] == 500


# ---- power ------------------------------------------------------------------------------------------------------------

def test_mde_formula():
    m = minimum_detectable_effect(0.01, alpha=0.025, power=0.8, year_factor=10.0)
    assert m.t_multiple == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert m.per_trade == pytest.approx(0.01 * m.t_multiple)
    assert m.per_year == pytest.approx(10 * m.per_trade)
    with pytest.raises(ParameterError, match="power must be"):
        minimum_detectable_effect(0.01, power=1.2)


@pytest.fixture(scope="module")
def null_prices():
    m = generate_market(SynthConfig(seed=21, effect=0.0))
    px = m.prices[m.prices["symbol"] != "^VIX"]
    opn = px.pivot(index="date", columns="symbol", values="open").to_numpy()
    close = px.pivot(index="date", columns="symbol", values="close").to_numpy()
    return opn, close


def _clustered_trades(rng, opn, n_days=40, per_day=6, hold=10, delta=0.0, cost=0.0006):
    t_n, n = opn.shape
    days = rng.choice(np.arange(25, t_n - hold - 1), n_days, replace=False)
    ent = np.repeat(days, per_day)
    sym = np.concatenate([rng.choice(n, per_day, replace=False) for _ in days])
    ext = ent + hold
    ep = opn[ent, sym]
    # planted effect: the exit fill is raised so that every trade's net return gains exactly `delta`
    xp = opn[ext, sym] + delta * ep * (1 + cost) / (1 - cost)
    return _trades(sym, ent, ext, ep, xp, cost=cost)


def _t_and_mde(tr, opn, close, alpha):
    t_n = opn.shape[0]
    ex = BenchmarkCache({"open": opn}).excess(tr, Span(24, t_n - 1, t_n))
    d = daily_excess(tr, ex, close, 24, t_n)
    h = hac_mean(d.total)
    se = h.se * d.n_days / d.n_trades
    return h.t, minimum_detectable_effect(se, alpha=alpha, power=0.8).per_trade


def test_mde_matches_the_power_of_the_test_in_a_simulation_on_the_synthetic_market(null_prices):
    """Random, clustered entries on the null synthetic market (33 symbols, 2 years): the MDE estimated from each
    sample, planted as a true excess per trade, is detected about 80 % of the time; with no effect the test
    rejects about alpha of the time."""
    opn, close = null_prices
    alpha = 0.025
    rng = np.random.default_rng(77)
    reps = 250
    null = [_t_and_mde(_clustered_trades(rng, opn), opn, close, alpha) for _ in range(reps)]
    size = np.mean([t > st.norm.isf(alpha) for t, _ in null])
    mde = float(np.median([m for _, m in null]))
    hits = [_t_and_mde(_clustered_trades(rng, opn, delta=mde), opn, close, alpha)[0] > st.norm.isf(alpha)
            for _ in range(reps)]
    power = float(np.mean(hits))
    assert size < 0.06
    assert 0.70 <= power <= 0.90, (power, mde)
    # and the same MDE as dependent_inference reports
    tr = _clustered_trades(np.random.default_rng(1), opn)
    ex = BenchmarkCache({"open": opn}).excess(tr, Span(24, opn.shape[0] - 1, opn.shape[0]))
    inf = dependent_inference(daily_excess(tr, ex, close, 24, opn.shape[0]), alpha=alpha, reps=200)
    assert inf.mde_per_trade == pytest.approx(inf.se * (st.norm.isf(alpha) + st.norm.ppf(0.8)))
    assert inf.mde_per_year > inf.mde_per_trade  # ~20 trades a year at 1/11 of the account each


def test_dependent_inference_ties_every_figure_to_the_daily_series():
    rng = np.random.default_rng(12)
    opn, close = _random_market(rng, t_n=300, n=15)
    ent = np.sort(rng.integers(5, 270, 120))
    sym = rng.integers(0, 15, 120)
    ext = ent + rng.integers(3, 25, 120)
    tr = _trades(sym, ent, ext, opn[ent, sym], opn[ext, sym], cost=0.0006)
    ex = _bench_excess(tr, opn, 0, 299)
    d = daily_excess(tr, ex, close, 0, 300)
    inf = dependent_inference(d, reps=300, seed=5)
    h = hac_mean(d.total)
    scale = d.n_days / d.n_trades
    assert inf.mean_per_trade == pytest.approx(ex.mean(), abs=1e-14)
    assert inf.se == pytest.approx(h.se * scale) and inf.t == pytest.approx(h.t) and inf.p == pytest.approx(h.p)
    assert inf.t_iid == pytest.approx(st.ttest_1samp(ex, 0.0).statistic)
    assert inf.n_eff == pytest.approx(min(120, 120 * (ex.std(ddof=1) / math.sqrt(120) / inf.se) ** 2))
    ps = daily_psr(d.total, 0.0, h.n_eff)
    assert (inf.psr, inf.psr_n, inf.skew) == (ps["psr"], ps["n_used"], ps["skew"])
    b = block_bootstrap_mean(d.total, reps=300, seed=5)
    assert (inf.boot_lo, inf.boot_hi, inf.boot_p) == pytest.approx((b.lo * scale, b.hi * scale, b.p))
    assert inf.mde_per_year == pytest.approx(inf.mde_per_trade * 252 * d.inv_hold.mean())
    assert inf.n_days == 300 and inf.n_invested_days == d.n_invested_days
    js = inf.to_dict()
    assert js["n_trades"] == 120 and all(v is None or isinstance(v, (int, float)) for v in js.values())
