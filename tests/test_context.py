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
from optimizer.engine._indicators import blended_beta, rolling_beta
from optimizer.engine._regime import learned_regime_detail, position_multiplier
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
    # geometric series: sma20 grows by 1.01 per row, so the day-over-day relative slope is 0.01 exactly
    np.testing.assert_allclose(k[20:], 0.01, rtol=1e-10)
    assert np.isnan(k[:20]).all() and np.isnan(s[:19]).all()
    np.testing.assert_allclose(s[19], rising[:20].mean())
    assert (tr[20:] == TREND_UP).all() and (tr[:20] == TREND_SIDEWAYS).all()
    _, _, tr_down = _trend_of(100 * 0.99 ** t)
    assert (tr_down[20:] == TREND_DOWN).all()
    _, k_flat, tr_flat = _trend_of(np.full(60, 50.0))
    assert (k_flat[20:] == 0).all() and (tr_flat == TREND_SIDEWAYS).all()
    # above its SMA but slope 0.0005/session < 0.001: SIDEWAYS, not UP
    _, k_slow, tr_slow = _trend_of(100 * 1.0005 ** t)
    assert k_slow[30] == pytest.approx(0.0005)
    assert (tr_slow == TREND_SIDEWAYS).all()
    assert list(decode(np.array([1, 0, -1], dtype=np.int8), TREND_LABELS)) == ["UP", "SIDEWAYS", "DOWN"]


def test_sma_slope_is_day_over_day_as_the_design_writes_it():
    # the design: slope = (sma_20 - sma_20_prev) / sma_20_prev. A kink: the SMA rises 1 % at the last row only.
    sm = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 101.0])
    k = sma_slope(sm)
    assert np.isnan(k[0]) and (k[1:6] == 0).all() and k[6] == pytest.approx(0.01)
    # a 5-session average (the old rule) would have said 0.002 here and missed the day-over-day threshold test
    close = np.array([99.0, 99.0, 99.0, 99.0, 99.0, 99.0, 102.0])
    tr = trend_class(close, sm, k)
    assert list(tr) == [0, 0, 0, 0, 0, 0, 1]
    tr_dn = trend_class(np.full(3, 90.0), np.array([100.0, 100.0, 99.85]), sma_slope(np.array([100.0, 100.0, 99.85])))
    assert list(tr_dn) == [0, 0, -1]  # slope -0.0015 < -0.001 and close < SMA


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


def test_rolling_beta_against_pandas_and_by_hand():
    rng = np.random.default_rng(8)
    m = rng.normal(0, 0.01, 200)
    r = np.column_stack([2.0 * m, 0.7 * m + rng.normal(0, 0.01, 200)])
    b20 = rolling_beta(r, m, 20)
    np.testing.assert_allclose(b20[15:, 0], 2.0, rtol=1e-8)  # exact linear relation: beta 2 from 15 pairs on
    assert np.isnan(b20[:14, 0]).all()                      # min_periods = 3/4 of the window = 15 pairs
    ref = pd.Series(r[:, 1]).rolling(20).cov(pd.Series(m)) / pd.Series(m).rolling(20).var()
    np.testing.assert_allclose(b20[19:, 1], ref.to_numpy()[19:], rtol=1e-7)
    ref60 = pd.Series(r[:, 1]).rolling(60).cov(pd.Series(m)) / pd.Series(m).rolling(60).var()
    np.testing.assert_allclose(rolling_beta(r, m, 60)[59:, 1], ref60.to_numpy()[59:], rtol=1e-7)
    # by hand, window 3: market (1, 2, 3) %, stock (2, 2, 5) %: cov = 1e-4, var = 2/3 e-4 (population) -> 1.5
    mm = np.array([0.01, 0.02, 0.03])
    rr = np.array([0.02, 0.02, 0.05])
    assert rolling_beta(rr, mm, 3, min_periods=3)[2] == pytest.approx(1.5)
    gap = r.copy()
    gap[100, 0] = np.nan  # a missing day: the pair is skipped, 19 of 20 pairs remain >= 15
    np.testing.assert_allclose(rolling_beta(gap, m, 20)[100:120, 0], 2.0, rtol=1e-8)


def test_blended_beta_is_doc_004_weights():
    e, r20, r60 = np.array([1.0, 1.2, np.nan]), np.array([2.0, 0.8, 1.0]), np.array([0.5, 1.0, 1.0])
    b = blended_beta(e, r20, r60)
    assert b[0] == pytest.approx(0.5 * 1.0 + 0.3 * 2.0 + 0.2 * 0.5)
    assert b[1] == pytest.approx(0.6 + 0.24 + 0.2) and np.isnan(b[2])


def test_position_multiplier_and_extreme_vix_override():
    lab = np.array([-1, 0, 1, 2, 3, 0, 3], dtype=np.int8)
    vix = np.array([15.0, 15.0, 30.0, 25.0, 39.9, 40.1, np.nan])
    np.testing.assert_array_equal(position_multiplier(lab), [1.0, 1.0, 0.5, 0.5, 0.25, 1.0, 0.25])
    np.testing.assert_array_equal(position_multiplier(lab, vix), [1.0, 1.0, 0.5, 0.5, 0.25, 0.1, 0.25])


def test_regime_features_volume_ratio_is_20_sessions_and_iv_rv_spread():
    T = 100
    spy = 100 * np.exp(np.cumsum(np.full(T, 0.001) * np.where(np.arange(T) % 2 == 0, 1, -0.5)))
    vol = np.full(T, 1e6)
    vol[70] = 3e6
    f = regime_features(spy, spy, spy, vol, np.full(T, 20.0))
    assert np.isnan(f["volume_ratio"][18]) and f["volume_ratio"][19] == pytest.approx(1.0)
    assert f["volume_ratio"][70] == pytest.approx(3e6 / ((19 * 1e6 + 3e6) / 20))
    assert f["volume_ratio"][89] == pytest.approx(1e6 / ((19 * 1e6 + 3e6) / 20))  # the spike: 20th row of the window
    assert f["volume_ratio"][90] == pytest.approx(1.0)                            # out of the 20-session window
    np.testing.assert_allclose(f["iv_rv_spread"][25:], 20.0 - realized_vol(spy)[25:])


def test_learned_regime_probability_is_the_posterior_of_the_label():
    c, h, lo, v, vix, _ = _planted_market()
    feats = regime_features(c, h, lo, v, vix)
    lab, prob = learned_regime_detail(feats)
    np.testing.assert_array_equal(lab, learned_regime(feats))
    known = lab != -1
    assert known.any() and np.isnan(prob[~known]).all()
    assert ((prob[known] >= 0.25 - 1e-12) & (prob[known] <= 1 + 1e-12)).all()  # argmax of 4: at least 1/4
    assert np.median(prob[known]) > 0.8  # planted blocks are well separated


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


@pytest.mark.slow
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
    monkeypatch.setattr(_regime, "_DETAIL_MEMO", {})  # labels this process already has for f would skip the fits

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


def test_options_activity_zscore_by_hand():
    T = 30
    base = np.where(np.arange(T) % 2 == 0, 100.0, 200.0)  # prior-20 mean 150, pop std 50
    otm_call = np.column_stack([base, base, base, base])
    otm_call[25] = [400.0, 300.0, 300.0, 5000.0]  # z = 5, 3, 3, 97
    z = opt.activity_zscore(otm_call)
    np.testing.assert_allclose(z[25], [5.0, 3.0, 3.0, (5000 - 150) / 50])
    assert np.isnan(z[:15]).all() and np.isfinite(z[15]).all()


def test_options_lookback_max_covers_t0_to_t5():
    z = np.array([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, np.nan])
    m = opt.lookback_max(z)
    # the spike at row 1 is inside [t-5, t] for t = 1..6 and gone at t = 7
    assert list(m[:8]) == [0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 0.0]
    assert m[8] == 0.0  # NaN today: the max of the finite lookback rows
    assert np.isnan(opt.lookback_max(np.array([np.nan, np.nan]))).all()


def test_options_boost_design_rule_term_by_term():
    # the design's options_activity_boost: +0.15 ITM call z max > 2; +0.10 OTM call z max > 1.5 and call/put
    # 5d change > 0; +0.10 premium 5d change > 20 %; +0.15 OTM put z max > 2 and score >= 75; cap 1.5.
    liquid = np.ones(8, dtype=bool)
    itm = np.array([2.1, 2.0, 0.0, 0.0, 0.0, 0.0, 2.5, 2.5])
    otm = np.array([0.0, 0.0, 1.6, 1.6, 0.0, 0.0, 1.6, 1.6])
    dcp = np.array([0.0, 0.0, 0.1, -0.1, 0.0, 0.0, 0.1, 0.1])
    dprem = np.array([0.0, 0.0, 0.0, 0.0, 0.21, 0.20, 0.5, 0.5])
    b = opt.options_boost(liquid, itm, otm, dcp, dprem)
    np.testing.assert_allclose(b, [1.15, 1.0, 1.10, 1.0, 1.10, 1.0, 1.35, 1.35])
    put_max = np.array([2.1, 2.1, 2.1, 2.0, 2.1, 2.1, 2.1, 0.0])
    score = np.array([75.0, 74.9, 80.0, 80.0, 80.0, 80.0, 80.0, 80.0])
    full = opt.squeeze_boost(b, put_max, score)
    np.testing.assert_allclose(full, [1.30, 1.0, 1.25, 1.0, 1.25, 1.15, 1.5, 1.35])  # 1.35 + 0.15 = 1.5 = the cap
    assert (opt.options_boost(~liquid, itm, otm, dcp, dprem) == 1.0).all()
    nan = np.full(8, np.nan)
    assert (opt.options_boost(liquid, nan, nan, nan, nan) == 1.0).all()  # NaN never satisfies a condition
    rng = np.random.default_rng(5)
    zz = rng.normal(0, 10, (200, 5))
    bb = opt.squeeze_boost(opt.options_boost(np.ones_like(zz, bool), zz, zz, zz, zz), zz, np.full(zz.shape, 90.0))
    assert bb.max() == 1.5 and bb.min() >= 1.0


def test_options_ratios_and_premium_change_by_hand():
    itm_c, otm_c = np.array([30.0, 10.0, 5.0]), np.array([10.0, 0.0, 20.0])
    np.testing.assert_allclose(opt.ratio(itm_c, otm_c), [3.0, np.nan, 0.25])
    prem = np.array([100.0, 1.0, 1.0, 1.0, 1.0, 125.0, 0.0, 50.0])
    ch = opt.pct_change(prem, 5)
    assert np.isnan(ch[:5]).all() and ch[5] == pytest.approx(0.25) and ch[6] == pytest.approx(-1.0)
    assert ch[7] == pytest.approx(49.0)
    assert np.isnan(opt.pct_change(np.array([0.0, 1, 1, 1, 1, 2.0]), 5)[5])  # from 0: undefined


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
    for k in ("itm_call_volume", "otm_call_volume", "itm_put_volume", "otm_put_volume", "atm_iv", "total_premium"):
        f[k] = rng.uniform(50, 150, (T, 2))
    out = options_context(f, (T, 2))
    assert set(out) == set(opt.OPTION_KEYS)
    assert np.isnan(out["options_put_call"][:, 1]).all() and (out["options_boost_base"][:, 1] == 1.0).all()
    assert out["options_put_call"][20, 0] == pytest.approx(5000 / 6000)
    assert np.isfinite(out["options_otm_call_z"][20:, 0]).all()
    np.testing.assert_allclose(out["options_itm_otm_call_ratio"][20:, 0],
                               f["itm_call_volume"][20:, 0] / f["otm_call_volume"][20:, 0])
    np.testing.assert_allclose(out["options_total_premium_5d_chg"][20:, 0],
                               f["total_premium"][20:, 0] / f["total_premium"][15:25, 0] - 1)
    assert np.isnan(out["options_itm_otm_put_ratio"][:, 1]).all()
    empty = options_context({}, (T, 2))
    assert not empty["options_liquid"].any() and (empty["options_boost_base"] == 1).all()


def test_options_boost_base_planted_itm_call_spike_in_the_lookback():
    T = 40
    alt = np.where(np.arange(T) % 2 == 0, 100.0, 200.0)
    f = {"call_volume": np.full((T, 1), 8000.0), "put_volume": np.full((T, 1), 4000.0),
         "itm_call_volume": alt[:, None].copy(), "otm_call_volume": alt[:, None].copy(),
         "itm_put_volume": alt[:, None].copy(), "otm_put_volume": alt[:, None].copy()}
    f["itm_call_volume"][30, 0] = 400.0  # z = 5 at T-0 = 30
    out = options_context(f, (T, 1))
    b = out["options_boost_base"][:, 0]
    assert (b[30:36] == 1.15).all()          # visible from T-0 and for the 5 sessions after (T-1..T-5 of them)
    assert (b[:30] == 1.0).all() and (b[36:] == 1.0).all()


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


def test_signal_quality_follows_the_design_rule():
    # The design (section 2.3): HIGH = score >= 80 & trend DOWN & put/call < 0.7 (reversal setup with options
    # confirmation), or score >= 75 & parent ETF aligned; MEDIUM = score >= 70 & (lit_z > 1 or aligned); else LOW.
    buy = 70.0
    n = np.nan
    #            rev.  pc>.7  UP    al76  al74  lit   lit=1 nosig  78DN  78DNx1.1 pcNaN  NaN  UPx1.5
    display = np.array([[85.0, 85.0, 85.0, 76.0, 74.0, 72.0, 72.0, 65.0, 78.0, 78.0, 85.0, n, 95.0]])
    trend = np.array([[-1, -1, 1, 0, 0, 0, 0, -1, -1, -1, -1, -1, 1]], dtype=np.int8)
    pc = np.array([[0.5, 0.8, 0.5, n, n, n, n, 0.5, 0.5, 0.5, n, 0.5, 0.5]])
    aligned = np.array([[False, False, False, True, True, False, False, True, False, False, False, True, False]])
    lit = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 1.0, 2.0, 0.0, 0.0, 0.0, 2.0, n]])
    boost = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.0, 1.0, 1.5]])
    q = signal_quality(display, buy, trend, pc, aligned, lit, boost)
    H, M, L = QUALITY_HIGH, QUALITY_MEDIUM, QUALITY_LOW
    assert list(q[0]) == [H, L, L, H, M, M, L, L, L, H, L, L, L]
    # DOWN + accumulation is the HIGH setup, UP with the same numbers is not (the old rule had it inverted)
    assert q[0, 0] == H and q[0, 2] == L
    # the score thresholds are the design's absolute 80 / 75 / 70, not offsets from buy_threshold
    q60 = signal_quality(np.array([65.0, 72.0]), 60.0, np.zeros(2, np.int8), np.full(2, n), np.array([True, True]),
                         np.zeros(2))
    assert list(q60) == [L, M]
    # without options (boost defaults to 1.0) the same grades hold
    assert list(signal_quality(display, buy, trend, pc, aligned, lit)[0][:9]) == [H, L, L, H, M, M, L, L, L]


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


# ---------------------------------------------------------------- VIX missing in the MIDDLE (issue 18, first bug)


def _vix_gap_market(T=260, seed=11):
    rng = np.random.default_rng(seed)
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0003, 0.011, T)))
    vix = 18 + 4 * np.sin(np.arange(T) / 15) + rng.normal(0, 1.5, T)
    for a, b in ((130, 133), (170, 171), (200, 208), (231, 235)):  # gaps after row 120: 3, 1, 8 and 4 sessions
        vix[a:b] = np.nan
    return spy, vix, rng.uniform(5e7, 1e8, T)


def test_regime_features_truncation_with_vix_missing_in_the_middle():
    spy, vix, vol = _vix_gap_market()
    args = (spy, spy * 1.004, spy * 0.996, vol, vix)
    full = regime_features(*args)
    # forward fill only, at most 5 sessions: never a later VIX on an earlier row
    assert full["iv"][131] == vix[129] and full["iv"][132] == vix[129] and full["iv"][170] == vix[169]
    assert full["iv"][204] == vix[199] and np.isnan(full["iv"][205:208]).all()
    np.testing.assert_array_equal(full["iv_rv_spread"], full["iv"] - full["rv20"])
    for t in (130, 131, 132, 170, 200, 203, 207, 231, 233):
        cut = regime_features(*(a[: t + 1] for a in args))
        pd.testing.assert_frame_equal(cut, full.iloc[: t + 1], obj=f"regime_features cut at t={t}")


def test_compute_context_truncation_with_vix_missing_in_the_middle():
    # Every gap here is <= 5 sessions, so the forward-filled iv is finite on every row and the learned regime uses
    # it: a back-fill (tomorrow's VIX on today's row) changes learned_regime at the gap rows of a truncated run.
    p = _synthetic_panel(T=260)
    spy, vix, vol = _vix_gap_market(T=260)
    vix[200:208] = np.nan
    vix[200:203] = 19.0
    market = dict(p.market, spy_close=spy, spy_open=spy, spy_high=spy * 1.004, spy_low=spy * 0.996, spy_volume=vol,
                  vix=vix)
    p = Panel(dates=p.dates, symbols=p.symbols, fields=p.fields, market=market, sectors=p.sectors)
    kw = {"min_train": 60, "refit_every": 21}
    full = compute_context(p, kw)
    feats = regime_features(spy, spy * 1.004, spy * 0.996, vol, vix)
    assert feats["iv"][60:].notna().all()  # so iv and iv_rv_spread are among the model's columns
    assert (full["learned_regime"][130:133] != -1).all()
    for t in (130, 131, 132, 170, 203, 205, 231, 234):
        cut = compute_context(p.slice(0, t + 1), kw)
        for k in CONTEXT_KEYS:
            np.testing.assert_array_equal(cut[k], full[k][: t + 1], err_msg=f"{k} changed at t={t}")
