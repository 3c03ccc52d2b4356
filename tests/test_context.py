"""Tests of optimizer.engine.context: hand-computed oracles, planted effects and truncation (no lookahead)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.mixture  # noqa: F401  (imported up front so the speed test times labelling, not the import)

from optimizer.engine import _options as opt
from optimizer.engine._regime import VIX_PROXY_SCALE, realized_vol
from optimizer.engine.context import (
    CONTEXT_KEYS, LEARNED_REGIME_LABELS, QUALITY_HIGH, QUALITY_LOW, QUALITY_MEDIUM, REGIME_RISK_OFF, REGIME_RISK_ON,
    REGIME_TRANSITIONAL, TREND_DOWN, TREND_LABELS, TREND_SIDEWAYS, TREND_UP, atr, bollinger_position,
    classify_failure_modes, compute_context, decode, effective_vix, ewma_beta, forward_returns, learned_regime,
    macd, market_regime, market_relative_forward_returns, options_context, parent_etf_aligned, parent_etf_available,
    price_vs_sma_pct, regime_features, rsi, signal_quality, sma, sma_slope, trend_class,
)
from optimizer.engine.panel import Panel

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


# ---------------------------------------------------------------- trend


def _trend_of(close):
    s = sma(close, 20)
    k = sma_slope(s)
    return s, k, trend_class(close, s, k)


def test_trend_rising_falling_flat_and_slope_by_hand():
    t = np.arange(60, dtype=float)
    rising = 100 * 1.01 ** t
    s, k, tr = _trend_of(rising)
    # geometric series: sma20 grows by 1.01 per row, so the 5-row relative slope is (1.01^5 - 1) / 5 exactly
    np.testing.assert_allclose(k[24:], (1.01 ** 5 - 1) / 5, rtol=1e-10)
    assert np.isnan(k[:24]).all() and np.isnan(s[:19]).all()
    np.testing.assert_allclose(s[19], rising[:20].mean())
    assert (tr[24:] == TREND_UP).all() and (tr[:24] == TREND_SIDEWAYS).all()
    _, _, tr_down = _trend_of(100 * 0.99 ** t)
    assert (tr_down[24:] == TREND_DOWN).all()
    _, k_flat, tr_flat = _trend_of(np.full(60, 50.0))
    assert (k_flat[24:] == 0).all() and (tr_flat == TREND_SIDEWAYS).all()
    # above its SMA but slope 0.0005/session < 0.001: SIDEWAYS, not UP
    _, k_slow, tr_slow = _trend_of(100 * 1.0005 ** t)
    assert k_slow[30] == pytest.approx((1.0005 ** 5 - 1) / 5)
    assert (tr_slow == TREND_SIDEWAYS).all()
    assert list(decode(np.array([1, 0, -1], dtype=np.int8), TREND_LABELS)) == ["UP", "SIDEWAYS", "DOWN"]


def test_price_vs_sma_matches_pandas():
    rng = np.random.default_rng(1)
    c = 100 + np.cumsum(rng.normal(0, 1, (80, 3)), axis=0)
    s = sma(c, 20)
    ref = pd.DataFrame(c).rolling(20).mean().to_numpy()
    np.testing.assert_allclose(s, ref, equal_nan=True)
    np.testing.assert_allclose(price_vs_sma_pct(c, s), c / ref - 1, equal_nan=True)


# ---------------------------------------------------------------- RSI / MACD / Bollinger / ATR

WILDER = [44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28,
          46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18, 44.22, 44.57]


def test_rsi_classic_wilder_example():
    r = rsi(np.array(WILDER))
    assert np.isnan(r[:14]).all()
    # first 14 changes: gains sum 3.34, losses sum 1.40 (hand-summed); seed = simple means
    g, lo = 3.34 / 14, 1.40 / 14
    assert r[14] == pytest.approx(100 - 100 / (1 + g / lo), abs=1e-9)  # 70.46
    g, lo = (g * 13 + 0.0) / 14, (lo * 13 + 0.28) / 14               # change 46.00 - 46.28 = -0.28
    assert r[15] == pytest.approx(100 - 100 / (1 + g / lo), abs=1e-9)
    # StockCharts' published table (rounded averages): 70.53, 66.32, 66.55 ... within 0.1
    np.testing.assert_allclose(r[14:17], [70.53, 66.32, 66.55], atol=0.1)


def test_rsi_monotone_series():
    up = rsi(np.arange(1.0, 31.0))
    assert np.isnan(up[:14]).all() and (up[14:] == 100).all()
    assert (rsi(np.arange(30.0, 0.0, -1))[14:] == 0).all()
    assert (rsi(np.full(20, 5.0))[14:] == 50).all()


def test_macd_against_pandas_ewm():
    rng = np.random.default_rng(2)
    c = 50 + np.cumsum(rng.normal(0, 1, 120))
    line, sig, hist = macd(c)
    s = pd.Series(c)
    ref_line = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    ref_line[:25] = np.nan
    ref_sig = ref_line.ewm(span=9, adjust=False, min_periods=9).mean()
    np.testing.assert_allclose(line, ref_line.to_numpy(), equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose(sig, ref_sig.to_numpy(), equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose(hist, line - sig, equal_nan=True)
    assert np.isnan(line[:25]).all() and np.isfinite(line[25]) and np.isnan(sig[:33]).all() and np.isfinite(sig[33])


def test_bollinger_position_by_hand():
    c = np.array([1.0, 2.0, 3.0, 3.0])
    b = bollinger_position(c, window=3)
    # window [1,2,3]: mid 2, pop std sqrt(2/3): (3-2)/(2*0.8165) = 0.6124
    assert b[2] == pytest.approx(1 / (2 * np.sqrt(2 / 3)))
    # window [2,3,3]: mid 8/3, pop std sqrt(2/9)
    assert b[3] == pytest.approx((3 - 8 / 3) / (2 * np.sqrt(2 / 9)))
    assert np.isnan(b[:2]).all() and np.isnan(bollinger_position(np.full(5, 7.0), 3)).all()


def test_atr_five_bars_by_hand():
    high = np.array([10.0, 11.0, 12.0, 11.5, 13.0])
    low = np.array([9.0, 10.0, 10.5, 10.0, 11.0])
    close = np.array([9.5, 10.8, 11.0, 10.2, 12.5])
    # TR: 1.0 (H-L, no prev) | max(1, |11-9.5|=1.5, |10-9.5|=.5)=1.5 | max(1.5, 1.2, .3)=1.5
    #     | max(1.5, .5, 1.0)=1.5 | max(2, |13-10.2|=2.8, .8)=2.8
    a = atr(high, low, close, n=3)
    assert np.isnan(a[:2]).all()
    assert a[2] == pytest.approx((1.0 + 1.5 + 1.5) / 3)
    assert a[3] == pytest.approx((a[2] * 2 + 1.5) / 3)
    assert a[4] == pytest.approx((a[3] * 2 + 2.8) / 3)


# ---------------------------------------------------------------- beta and forward outcomes


def test_ewma_beta_planted_and_against_pandas():
    rng = np.random.default_rng(3)
    m = rng.normal(0, 0.01, 300)
    r = np.column_stack([1.5 * m, 0.5 * m + rng.normal(0, 0.01, 300)])
    r[100:110, 1] = np.nan
    b = ewma_beta(r, m, halflife=60)
    np.testing.assert_allclose(b[19:, 0], 1.5, rtol=1e-8)
    assert np.isnan(b[:19, 0]).all()
    x = pd.Series(r[:, 1])
    y = pd.Series(np.where(np.isfinite(r[:, 1]), m, np.nan))
    ref = x.ewm(halflife=60, min_periods=20).cov(y) / y.ewm(halflife=60, min_periods=20).var()
    np.testing.assert_allclose(b[30:, 1], ref.to_numpy()[30:], rtol=1e-6, equal_nan=True)


def test_forward_and_market_relative_returns():
    o = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 22.0], [13.2, 24.0], [12.0, 30.0]])
    spy = np.array([100.0, 100.0, 101.0, 102.0, 99.0])
    f = forward_returns(o, horizons=(1, 2))
    # signal at close 0 enters open[1]: h=1 exits open[2]
    assert f[1][0, 0] == pytest.approx(12 / 11 - 1) and f[2][0, 0] == pytest.approx(13.2 / 11 - 1)
    assert f[1][2, 1] == pytest.approx(30 / 24 - 1)
    assert np.isnan(f[1][3:]).all() and np.isnan(f[2][2:]).all()
    beta = np.full((5, 2), 2.0)
    rel = market_relative_forward_returns(o, spy, beta, horizons=(2,))
    assert rel[2][1, 1] == pytest.approx((30 / 22 - 1) - 2.0 * (99 / 101 - 1))


# ---------------------------------------------------------------- market regime


def test_market_regime_three_outcomes_and_nan():
    spy = np.concatenate([np.full(50, 100.0), [110.0, 110.0, 90.0, 90.0, 110.0, 90.0]])
    vix = np.array([15.0] * 50 + [15.0, 22.0, 30.0, 22.0, 30.0, 15.0])
    reg = market_regime(spy, vix)
    # rows 50..55: SMA50 ~ 100.2 .. 100; above & calm | above & 22 | below & 30 | below & 22 | above & 30 | below & 15
    assert list(reg[50:]) == [REGIME_RISK_ON, REGIME_TRANSITIONAL, REGIME_RISK_OFF, REGIME_TRANSITIONAL,
                              REGIME_TRANSITIONAL, REGIME_TRANSITIONAL]
    assert (reg[:49] == REGIME_TRANSITIONAL).all()  # no SMA50 yet


def _alternating(n, a, drift):
    lr = drift + a * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    lr[0] = 0.0
    return 100 * np.exp(np.cumsum(lr))


def test_regime_vix_absent_uses_realized_vol_proxy():
    a = 0.03
    calm, wild = _alternating(80, 0.002, 0.003), _alternating(80, a, -0.004)
    nan = np.full(80, np.nan)
    # 20 alternating log returns +-a around the drift: sample std = a * sqrt(20/19)
    expected = a * np.sqrt(20 / 19) * np.sqrt(252) * 100 * VIX_PROXY_SCALE
    assert effective_vix(nan, wild)[79] == pytest.approx(expected)
    assert expected > 25
    assert market_regime(calm, nan)[79] == REGIME_RISK_ON
    assert market_regime(wild, nan)[79] == REGIME_RISK_OFF
    # a real VIX value on a date wins over the proxy on that date only
    v = nan.copy()
    v[79] = 15.0
    assert effective_vix(v, wild)[79] == 15.0 and effective_vix(v, wild)[78] == pytest.approx(effective_vix(nan, wild)[78])
    assert market_regime(wild, v)[79] == REGIME_TRANSITIONAL


def test_vix_proxy_calibrated_on_real_spy_and_vix():
    f = REAL / "prices_daily.csv.gz"
    if not f.exists():
        pytest.skip("real data absent")
    d = pd.read_csv(f, usecols=["date", "symbol", "close"])
    spy = d[d.symbol == "SPY"].set_index("date").close
    vix = d[d.symbol == "^VIX"].set_index("date").close.reindex(spy.index)
    proxy = realized_vol(spy.to_numpy()) * VIX_PROXY_SCALE
    ok = np.isfinite(proxy) & np.isfinite(vix.to_numpy())
    ratio = np.median(proxy[ok]) / np.median(vix.to_numpy()[ok])
    assert 0.9 < ratio < 1.1
    calm = vix.to_numpy()[ok] < 16
    assert 11 < np.median(proxy[ok][calm]) < 16


# ---------------------------------------------------------------- learned regime


def _planted_market(T=500, seed=4):
    """Blocks of 60 sessions alternating calm uptrend / volatile downtrend."""
    rng = np.random.default_rng(seed)
    block = (np.arange(T) // 60) % 2
    lr = np.where(block == 0, 0.002 + rng.normal(0, 0.004, T), -0.004 + rng.normal(0, 0.025, T))
    c = 100 * np.exp(np.cumsum(lr))
    rngv = np.where(block == 0, 0.006, 0.03)
    vol = np.where(block == 0, 1e6, 2e6) * (1 + 0.1 * rng.random(T))
    vix = np.where(block == 0, 13.0, 32.0) + rng.normal(0, 1, T)
    return c, c * (1 + rngv / 2), c * (1 - rngv / 2), vol, vix, block


def test_learned_regime_unknown_before_min_train_and_planted_blocks():
    c, h, lo, v, vix, block = _planted_market()
    f = regime_features(c, h, lo, v, vix)
    t0 = time.process_time()  # CPU time: other jobs share the 2 cores
    lab = learned_regime(f, refit_every=21, min_train=120)
    assert time.process_time() - t0 < 3.0
    # first row with every core feature is 49 (SMA50); r0 = 49 + 120 = 169
    assert (lab[:169] == -1).all() and lab[169] != -1
    names = decode(lab, LEARNED_REGIME_LABELS)
    late = np.arange(len(lab)) >= 200
    calm_rows = late & (block == 0) & (np.arange(len(lab)) % 60 >= 25)
    wild_rows = late & (block == 1) & (np.arange(len(lab)) % 60 >= 25)
    assert np.mean(names[calm_rows] == "BULL_LOW_VOL") > 0.8
    assert np.mean(np.char.startswith(names[wild_rows].astype(str), "BEAR")) > 0.6
    assert np.mean(np.char.endswith(names[wild_rows].astype(str), "HIGH_VOL")) > 0.8


def test_learned_regime_truncation_and_no_lookahead():
    c, h, lo, v, vix, _ = _planted_market(T=320)
    full = learned_regime(regime_features(c, h, lo, v, vix), min_train=120)
    for t in (168, 169, 189, 190, 230, 319):
        cut = learned_regime(regime_features(c[: t + 1], h[: t + 1], lo[: t + 1], v[: t + 1], vix[: t + 1]),
                             min_train=120)
        np.testing.assert_array_equal(cut, full[: t + 1])
        # wild data after t never changes labels <= t
        c2, v2 = c.copy(), vix.copy()
        c2[t + 1:] *= 3.0
        v2[t + 1:] = 80.0
        wild = learned_regime(regime_features(c2, h, lo, v, v2), min_train=120)
        np.testing.assert_array_equal(wild[: t + 1], full[: t + 1])


def test_learned_regime_fits_only_on_rows_strictly_before_the_refit(monkeypatch):
    """Truncation cannot see a model that also trains on row t itself; spy on the fits instead."""
    from optimizer.engine import _regime

    c, h, lo, v, vix, _ = _planted_market(T=260)
    f = regime_features(c, h, lo, v, vix)
    seen = []
    real = _regime._fit_and_label

    def spy(train, cols, *a):
        seen.append((train.copy(), list(cols)))
        return real(train, cols, *a)

    monkeypatch.setattr(_regime, "_fit_and_label", spy)
    learned_regime(f, refit_every=21, min_train=120)
    refits = list(range(169, 260, 21))
    assert len(seen) == len(refits)
    for (train, cols), r in zip(seen, refits):
        assert cols == list(_regime.REGIME_FEATURES)  # volume, range and IV present on every training row
        np.testing.assert_array_equal(train, f.iloc[49:r][cols].to_numpy())


# ---------------------------------------------------------------- options


def test_options_liquid_threshold():
    call = np.array([[5000.0, 5000.0]] * 25)
    put = np.column_stack([np.full(25, 4999.0), np.full(25, 5001.0)])
    liq = opt.options_liquid(call, put)
    assert not liq[:, 0].any()
    assert not liq[:14, 1].any() and liq[14:, 1].all()  # >= 15 of 20 rows needed


def test_options_zscore_boost_values_and_cap():
    T = 30
    base = np.where(np.arange(T) % 2 == 0, 100.0, 200.0)  # prior-20 mean 150, pop std 50
    otm_call = np.column_stack([base, base, base, base])
    otm_call[25] = [400.0, 300.0, 300.0, 5000.0]  # z = 5, 3, 3, 97
    z = opt.activity_zscore(otm_call)
    np.testing.assert_allclose(z[25], [5.0, 3.0, 3.0, (5000 - 150) / 50])
    assert np.isnan(z[:15]).all() and np.isfinite(z[15]).all()
    liquid = np.ones((T, 4), dtype=bool)
    put_z = np.zeros((T, 4))
    put_z[25, 2] = 2.5  # puts also unusual: not a directional bullish bet
    dpc = np.full((T, 4), -0.1)
    boost = opt.options_boost(liquid, z, put_z, dpc)
    np.testing.assert_allclose(boost[25], [1.5, 1.3, 1.0, 1.5])
    assert opt.options_boost(liquid, z, put_z, -dpc)[25].max() == 1.0  # put/call rising: no boost
    assert opt.options_boost(~liquid, z, put_z, dpc).max() == 1.0
    rng = np.random.default_rng(5)
    zz = rng.normal(0, 10, (200, 5))
    b = opt.options_boost(np.ones_like(zz, bool), zz, rng.normal(0, 1, zz.shape), rng.normal(0, 1, zz.shape))
    assert b.max() <= 1.5 and b.min() >= 1.0 and (b == 1.5).any()


def test_iv_percentile_by_hand():
    iv = np.array([20.0, 10.0, 30.0, 25.0, 5.0, 25.0])
    p = opt.iv_percentile(iv, window=4, min_periods=3)
    assert np.isnan(p[:2]).all()
    assert p[2] == pytest.approx(100.0)            # [20,10,30]: 2 of 2 others below
    assert p[3] == pytest.approx(100 * 2 / 3)      # [20,10,30,25]: 20, 10 below
    assert p[4] == pytest.approx(0.0)              # [10,30,25,5]
    assert p[5] == pytest.approx(100 * 1 / 3)      # [30,25,5,25]: only 5 strictly below


def test_options_context_masks_non_liquid_names():
    T = 30
    f = {
        "call_volume": np.column_stack([np.full(T, 6000.0), np.full(T, 100.0)]),
        "put_volume": np.column_stack([np.full(T, 5000.0), np.full(T, 100.0)]),
    }
    rng = np.random.default_rng(6)
    for k in ("itm_call_volume", "otm_call_volume", "itm_put_volume", "otm_put_volume", "atm_iv"):
        f[k] = rng.uniform(50, 150, (T, 2))
    out = options_context(f, (T, 2))
    assert np.isnan(out["options_put_call"][:, 1]).all() and (out["options_boost"][:, 1] == 1.0).all()
    assert out["options_put_call"][20, 0] == pytest.approx(5000 / 6000)
    assert np.isfinite(out["options_otm_call_z"][20:, 0]).all()
    empty = options_context({}, (T, 2))
    assert not empty["options_liquid"].any() and (empty["options_boost"] == 1).all()


# ---------------------------------------------------------------- ETF alignment and quality


def test_parent_etf_aligned():
    symbols = ("AAPL", "XLK", "JPM", "SPY")
    sectors = ("XLK", None, "XLF", None)
    display = np.array([
        [80.0, 75.0, 80.0, 90.0],
        [80.0, 60.0, 80.0, 90.0],
        [80.0, np.nan, 80.0, 90.0],
        [40.0, 70.0, 80.0, 90.0],
    ])
    al = parent_etf_aligned(display, symbols, sectors, buy_threshold=70.0)
    assert list(al[:, 0]) == [True, False, False, True]  # XLK >= 70 at rows 0 and 3 (row 3: XLK exactly 70)
    assert not al[:, 1:].any()  # ETFs have no parent; XLF is not in the panel
    assert list(parent_etf_available(symbols, sectors)) == [True, False, False, False]


def test_signal_quality_levels():
    buy = 70.0
    #          HIGH  margin<10  conf<.8  no support  DOWN  RISK_OFF  conf<.6  no signal  NaN conf  boost support
    display = np.array([[85.0, 75.0, 85.0, 85.0, 85.0, 85.0, 85.0, 65.0, 85.0, 80.0]])
    conf = np.array([[0.9, 0.9, 0.7, 0.9, 0.9, 0.9, 0.5, 0.9, np.nan, 0.8]])
    trend = np.array([[1, 1, 1, 0, -1, 1, 1, 1, 1, 0]], dtype=np.int8)
    aligned = np.array([[False, True, True, False, True, True, True, True, True, False]])
    boost = np.array([[1.0, 1.0, 1.0, 1.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.2]])
    regime = np.array([0], dtype=np.int8)
    q = signal_quality(display, buy, conf, trend, regime, aligned, boost)
    H, M, L = QUALITY_HIGH, QUALITY_MEDIUM, QUALITY_LOW
    assert list(q[0]) == [H, M, M, M, L, H, L, L, L, H]
    q_off = signal_quality(display, buy, conf, trend, np.array([REGIME_RISK_OFF]), aligned, boost)
    assert (q_off == L).all()


# ---------------------------------------------------------------- failure modes


def _trade_panel(stock_close, stock_open, etf_close=None, etf_open=None):
    T = len(stock_close)
    syms, sec = ["AAA"], {"AAA": "XLK"}
    cl, op = [stock_close], [stock_open]
    if etf_close is not None:
        syms.append("XLK")
        cl.append(etf_close)
        op.append(etf_open)
    close, open_ = np.column_stack(cl).astype(float), np.column_stack(op).astype(float)
    return Panel(dates=np.arange(T).astype("datetime64[D]"), symbols=tuple(syms),
                 fields={"open": open_, "close": close, "high": np.maximum(open_, close), "low": np.minimum(open_, close)},
                 sectors=tuple(sec.get(s) for s in syms))


def test_failure_modes_each_label():
    # entry e=1 at open 100, exit x=6 at open[6]
    cases = {
        # winner
        "NONE": ([100, 101, 102, 103, 104, 105, 106, 107], [100, 100, 101, 102, 103, 104, 106, 107], 0.05),
        # close of e+1 (97.5) below 100 * 0.98, no gaps
        "IMMEDIATE_REVERSAL": ([100, 99, 97.5, 97.5, 98, 98.5, 98.5, 98], [100, 100, 99, 97.5, 97.5, 98, 98.5, 98], -0.015),
        # open[4] = 94 < close[3] 99 * 0.97
        "GAP_DOWN": ([100, 100, 99.5, 99, 95, 95, 95, 95], [100, 100, 100, 99.5, 94, 95, 95, 95], -0.05),
        # every day > -3%, 4 of 5 held closes below entry (80%), losing
        "SLOW_BLEED": ([100, 100.5, 99.5, 99, 98.5, 98, 97.8, 97], [100, 100, 100.5, 99.5, 99, 98.5, 97.8, 97], -0.022),
        # losing, none of the above: drops late, by one bad close-to-close day
        "FALSE_SIGNAL": ([100, 101, 102, 102, 102, 97, 97, 97], [100, 100, 101, 102, 102, 101, 97, 97], -0.03),
    }
    for want, (cl, op, net) in cases.items():
        p = _trade_panel(np.array(cl, float), np.array(op, float))
        got = classify_failure_modes([0], [1], [6], [100.0], [net], p)
        assert got[0] == want, (want, got[0])


def test_failure_mode_sector_drag_and_precedence():
    cl = np.array([100, 100, 99.5, 99, 95, 95, 95, 95], float)   # a GAP_DOWN trade ...
    op = np.array([100, 100, 100, 99.5, 94, 95, 95, 95], float)
    etf_o = np.array([50, 50, 50, 49, 47, 47, 47, 47], float)    # ... while the ETF fell 6% over open[1] -> open[6]
    etf_c = etf_o.copy()
    p = _trade_panel(cl, op, etf_c, etf_o)
    assert classify_failure_modes([0], [1], [6], [100.0], [-0.05], p)[0] == "SECTOR_DRAG"
    # ETF down 6% explains less than half of a 15% loss -> falls back to GAP_DOWN
    assert classify_failure_modes([0], [1], [6], [100.0], [-0.15], p)[0] == "GAP_DOWN"
    # ETF down only 1.2%: not a drag
    etf_small = np.array([50, 50, 50, 49.8, 49.5, 49.4, 49.2, 49], float)
    p2 = _trade_panel(cl, op, etf_small, etf_small)
    assert classify_failure_modes([0], [1], [6], [100.0], [-0.05], p2)[0] == "GAP_DOWN"
    # unusable: NaN net, exit before entry, symbol index out of range
    bad = classify_failure_modes([0, 0, 5], [1, 6, 1], [6, 1, 6], [100.0] * 3, [np.nan, -0.05, -0.05], p)
    assert list(bad) == ["UNKNOWN"] * 3


# ---------------------------------------------------------------- compute_context: truncation of every feature


def _synthetic_panel(T=230, seed=7):
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + T).astype("datetime64[D]")
    syms = ("AAPL", "NVDA", "XLK")
    N = len(syms)
    c = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (T, N)), axis=0))
    o = c * (1 + rng.normal(0, 0.005, (T, N)))
    fields = {
        "open": o, "close": c, "high": np.maximum(o, c) * 1.01, "low": np.minimum(o, c) * 0.99,
        "volume": rng.uniform(1e6, 2e6, (T, N)),
        "call_volume": np.column_stack([rng.uniform(5e3, 1e4, T), rng.uniform(50, 100, T), rng.uniform(1e4, 2e4, T)]),
        "put_volume": rng.uniform(3e3, 6e3, (T, N)),
        "itm_call_volume": rng.uniform(1e3, 2e3, (T, N)), "otm_call_volume": rng.uniform(1e3, 3e3, (T, N)),
        "itm_put_volume": rng.uniform(1e3, 2e3, (T, N)), "otm_put_volume": rng.uniform(1e3, 2e3, (T, N)),
        "atm_iv": rng.uniform(0.2, 0.6, (T, N)),
    }
    fields["otm_call_volume"][150, 0] = 20000.0  # a planted unusual-call spike
    fields["close"][100, 1] = np.nan               # a gap
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0004, 0.01, T)))
    vix = 18 + rng.normal(0, 3, T)
    vix[:120] = np.nan                             # VIX only from row 120: proxy before, per date
    market = {"spy_close": spy, "spy_open": spy, "spy_high": spy * 1.005, "spy_low": spy * 0.995,
              "spy_volume": rng.uniform(5e7, 1e8, T), "vix": vix}
    return Panel(dates=dates, symbols=syms, fields=fields, market=market, sectors=("XLK", "XLK", None))


def test_compute_context_truncation_every_feature():
    p = _synthetic_panel()
    kw = {"min_train": 60, "refit_every": 21}
    full = compute_context(p, kw)
    assert set(full) == set(CONTEXT_KEYS)
    T, N = p.shape
    for k, v in full.items():
        assert v.shape[0] == T and v.shape[1:] in ((), (N,)), k
    assert (full["learned_regime"] != -1).any() and np.isfinite(full["options_otm_call_z"]).any()
    assert np.isfinite(full["beta"][60:, 0]).all()
    for t in (20, 60, 119, 121, 150, 200):
        cut = compute_context(p.slice(0, t + 1), kw)
        for k in CONTEXT_KEYS:
            np.testing.assert_array_equal(cut[k], full[k][: t + 1], err_msg=f"{k} changed at t={t}")
