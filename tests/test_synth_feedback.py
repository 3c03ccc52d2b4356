"""The correlated null of the synthetic market (``SynthConfig.price_feedback``): flows that chase past prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.data import _synth_flows as fl
from optimizer.data.synth import SynthConfig, generate_market
from optimizer.errors import ParameterError

CFG = dict(seed=4, start="2023-01-03", end="2023-12-29", universe="tier1+3", effect=0.0)


@pytest.fixture(scope="module")
def pair():
    return generate_market(SynthConfig(**CFG)), generate_market(SynthConfig(**CFG, price_feedback=1.0))


def _wide(df, col):
    return df.pivot(index="date", columns="symbol", values=col)


def test_feedback_moves_only_the_flows(pair):
    base, fb = pair
    for name in ("prices", "otc_weekly", "options", "episodes"):
        pd.testing.assert_frame_equal(getattr(base, name), getattr(fb, name))
    pd.testing.assert_series_equal(base.finra_short["total_volume"], fb.finra_short["total_volume"])
    assert not base.finra_short["short_volume"].equals(fb.finra_short["short_volume"])
    assert not base.lit_flow["lit_buy_volume"].equals(fb.lit_flow["lit_buy_volume"])
    assert "price_feedback" not in base.truth["config"] and "price_feedback" not in base.truth["parameters"]
    assert fb.truth["parameters"]["price_feedback"]["strength"] == 1.0


def test_feedback_flows_follow_past_prices_not_future_ones(pair):
    base, fb = pair
    px = fb.prices[fb.prices["symbol"] != "^VIX"]
    close = _wide(px, "close")
    past = np.log(close / close.shift(5))
    future = np.log(close.shift(-11) / close.shift(-1))

    def share(m):
        f = m.finra_short
        return _wide(f.assign(s=f["short_volume"] / f["total_volume"]), "s")[close.columns]

    def corr(a, b):
        return float(np.nanmean([a[c].corr(b[c]) for c in close.columns]))

    assert corr(share(fb), past) > 0.4 and abs(corr(share(base), past)) < 0.1
    assert abs(corr(share(fb), future)) < 0.05
    # the flows of different symbols move together (they chase a shared market): signals cluster in time
    d = share(fb).diff().iloc[6:].to_numpy()
    d0 = share(base).diff().iloc[6:].to_numpy()
    offdiag = lambda m: m[np.triu_indices(m.shape[0], 1)]  # noqa: E731
    assert np.nanmean(offdiag(np.corrcoef(d.T))) > np.nanmean(offdiag(np.corrcoef(d0.T))) + 0.03


def test_price_feedback_z_uses_past_and_same_day_closes_only():
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (60, 3)), axis=0))
    z = fl.price_feedback(close, np.full(3, 0.02))
    cut = fl.price_feedback(close[:40], np.full(3, 0.02))
    np.testing.assert_array_equal(z[:40], cut)  # recomputing on data truncated at t gives the same values up to t
    assert (z[:5] == 0).all() and np.abs(z).max() <= fl.FEEDBACK["clip"]
    lr = np.diff(np.log(close), axis=0)
    sig10 = lr[:10].std(axis=0, ddof=1)  # the 10 returns up to row 10 (the trailing window needs >= 10)
    np.testing.assert_allclose(z[10], np.clip(np.log(close[10] / close[5]) / (sig10 * np.sqrt(5)), -3, 3))
    sig30 = lr[10:30].std(axis=0, ddof=1)  # 20 returns up to row 30
    np.testing.assert_allclose(z[30], np.clip(np.log(close[30] / close[25]) / (sig30 * np.sqrt(5)), -3, 3))
    np.testing.assert_allclose(z[6], np.clip(np.log(close[6] / close[1]) / (0.02 * np.sqrt(5)), -3, 3))


def test_price_feedback_validation():
    with pytest.raises(ParameterError, match="price_feedback must be a number in"):
        SynthConfig(price_feedback=9.0)
