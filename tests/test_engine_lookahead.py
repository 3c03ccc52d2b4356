"""No lookahead in the engine: every feature and score at t is unchanged when the data after t is removed, and
trades opened from signals up to t are unchanged when the future is replaced by garbage (until they exit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.features import VARIANTS, FeatureCache
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.engine.simulate import Span


def _panel(seed: int = 3, T: int = 160, N: int = 6) -> Panel:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), 0))
    op = close * np.exp(rng.normal(0, 0.004, (T, N)))
    hi = np.maximum(op, close) * (1 + rng.uniform(0, 0.01, (T, N)))
    lo = np.minimum(op, close) * (1 - rng.uniform(0, 0.01, (T, N)))
    tot = rng.lognormal(13, 0.4, (T, N))
    sh = tot * rng.uniform(0.3, 0.6, (T, N))
    lb = rng.lognormal(11, 0.5, (T, N))
    ls = rng.lognormal(11, 0.5, (T, N))
    imb = (lb - ls) / (lb + ls)
    imb[rng.random((T, N)) < 0.1] = np.nan
    otc = rng.uniform(0.1, 0.3, (T, N))
    otc[:40] = np.nan
    dates = pd.bdate_range("2024-01-02", periods=T)
    syms = [f"S{i}" for i in range(N)]
    df = pd.DataFrame({
        "date": np.repeat(dates, N), "symbol": np.tile(syms, T),
        "open": op.ravel(), "high": hi.ravel(), "low": lo.ravel(), "close": close.ravel(),
        "short_buy_volume": sh.ravel(), "short_sell_volume": (tot - sh).ravel(),
        "short_buy_sell_ratio": (sh / (tot - sh)).ravel(), "lit_buy_volume": lb.ravel(), "lit_sell_volume": ls.ravel(),
        "lit_flow_imbalance": imb.ravel(), "otc_participation_rate": otc.ravel(),
    })
    return Panel.from_frame(df)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("window", [10, 30])
def test_scores_truncation_invariant(variant, window):
    p = _panel()
    full = display_score(FeatureCache(p), ScoreParams(variant=variant, z_window=window))
    assert np.isfinite(full).sum() > 100  # the comparison is not vacuous
    for t in (window + 5, 80, 140):
        cut = display_score(FeatureCache(p.slice(0, t + 1)), ScoreParams(variant=variant, z_window=window))
        np.testing.assert_array_equal(cut, full[: t + 1])


def test_future_garbage_does_not_change_past_trades():
    """Replace every bar after t with wild values: trades that exited by t and their entries are identical."""
    p = _panel(seed=5)
    t = 100
    fields = {k: v.copy() for k, v in p.fields.items()}
    rng = np.random.default_rng(0)
    for k in fields:
        fields[k][t + 1:] = rng.uniform(1, 1000, fields[k][t + 1:].shape)
    q = Panel(dates=p.dates, symbols=p.symbols, fields=fields, market=p.market, sectors=p.sectors)
    cfg = Config.from_params({"variant": "B", "buy_threshold": 60, "sell_threshold": 40, "exit": "first_dist", "z_window": 10})
    a = Evaluator(p).run(cfg, Span(0, t + 1, len(p.dates))).trades.to_frame()
    b = Evaluator(q).run(cfg, Span(0, t + 1, len(p.dates))).trades.to_frame()
    done_a = a[a.exit_idx <= t].reset_index(drop=True)
    done_b = b[b.exit_idx <= t].reset_index(drop=True)
    assert len(done_a) > 5
    pd.testing.assert_frame_equal(done_a, done_b)
    # and every entry decided by t (signal at or before t) is the same trade start
    ea = a[["symbol_idx", "signal_idx", "entry_idx", "entry_price"]]
    eb = b[["symbol_idx", "signal_idx", "entry_idx", "entry_price"]]
    pd.testing.assert_frame_equal(ea[ea.signal_idx < t].reset_index(drop=True), eb[eb.signal_idx < t].reset_index(drop=True))


def test_entry_fills_at_next_open_not_signal_close():
    p = _panel(seed=9)
    cfg = Config.from_params({"variant": "B", "buy_threshold": 60, "exit": "fixed_5d", "z_window": 10})
    tr = Evaluator(p).run(cfg).trades
    assert len(tr) > 0
    np.testing.assert_array_equal(tr.entry_idx, tr.signal_idx + 1)
    np.testing.assert_array_equal(tr.entry_price, p["open"][tr.entry_idx, tr.symbol])
