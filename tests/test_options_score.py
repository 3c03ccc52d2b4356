"""The options boost as a score multiplier (parameter ``options_boost``, docs/CONTEXT.md section 4): the design's
additive boost by hand, point-in-time, and a store without options behaving exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.engine._options import boosted_display, options_context
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.panel import Panel
from optimizer.errors import ParameterError


def test_boosted_display_by_hand():
    display = np.array([[80.0, 60.0, 90.0, np.nan, 70.0]])
    base = np.array([[1.25, 1.25, 1.5, 1.25, 1.0]])
    otm_put_z = np.array([[2.5, 2.5, 0.0, 2.5, np.nan]])
    out = boosted_display(display, base, otm_put_z, 0.5)
    # 80: squeeze (put z 2.5 > 2, score >= 75) -> boost 1.25 + 0.15 = 1.4, multiplier 1 + 0.5 x 0.4 = 1.2 -> 96
    # 60: no squeeze (score < 75) -> 1.25, multiplier 1.125 -> 67.5; 90: 1.5 (cap), multiplier 1.25 -> 112.5 -> 100
    # NaN stays NaN; a non-liquid cell (boost 1.0) is unchanged
    np.testing.assert_allclose(out, [[96.0, 67.5, 100.0, np.nan, 70.0]], rtol=1e-15)
    np.testing.assert_allclose(boosted_display(display, base, otm_put_z, 1.0)[0, :2], [100.0, 60 * 1.25])  # 112 -> 100
    with pytest.raises(ParameterError, match=r"options_boost must be in \[0, 1\]"):
        boosted_display(display, base, otm_put_z, 1.5)


def _panel_from(db) -> Panel:
    from optimizer.study.data import load_universe_panel
    return load_universe_panel(db, "tier1+3")


def test_options_boost_changes_signals_point_in_time_and_matches_the_context(synth_db):
    panel = _panel_from(synth_db)
    assert panel.has("call_volume")  # the synthetic store has options
    ev = Evaluator(panel)
    base_cfg = Config.from_params({"variant": "B", "z_window": 20, "buy_threshold": 70, "exit": "fixed_10d"})
    cfg = Config.from_params({"options_boost": 1.0}, base=base_cfg)
    plain, boosted = ev.display(base_cfg), ev.display(cfg)
    ctx = options_context(panel.fields, panel.shape)
    np.testing.assert_array_equal(boosted, boosted_display(plain, ctx["options_boost_base"],
                                                           ctx["options_otm_put_z_max5"], 1.0))
    assert (ctx["options_boost_base"] > 1).any() and (boosted > plain).sum() > 20
    r0, r1 = ev.run(base_cfg), ev.run(cfg)
    assert r1.metrics["total_signals"] > r0.metrics["total_signals"]
    # the run uses the boosted display (materialised, not fused): equal to a run given that display
    r2 = ev.run(cfg, display=boosted)
    np.testing.assert_array_equal(r1.trades.entry_idx, r2.trades.entry_idx)
    assert r1.metrics == r2.metrics
    # point-in-time: the boosted display on the panel truncated at t equals the full one up to t
    for t in (60, 200, panel.shape[0] - 30):
        cut = Evaluator(panel.slice(0, t + 1)).display(cfg)
        np.testing.assert_array_equal(cut, boosted[: t + 1])


def test_a_store_without_options_behaves_as_before(synth_db):
    panel = _panel_from(synth_db)
    opt = [k for k in panel.fields if any(w in k for w in ("call", "put", "iv", "premium"))]
    assert "call_volume" in opt
    bare = Panel(dates=panel.dates, symbols=panel.symbols, fields={k: v for k, v in panel.fields.items() if k not in opt},
                 market=panel.market, sectors=panel.sectors)
    ev = Evaluator(bare)
    for params in ({"variant": "B", "exit": "first_dist", "buy_threshold": 65}, {"variant": "D", "exit": "fixed_10d"}):
        cfg0 = Config.from_params(params)
        cfg1 = Config.from_params({**params, "options_boost": 1.0})
        np.testing.assert_array_equal(ev.display(cfg1), ev.display(cfg0))
        r0, r1 = ev.run(cfg0), ev.run(cfg1)
        assert r0.metrics == r1.metrics and len(r0.trades) > 0
        np.testing.assert_array_equal(r0.trades.exit_price, r1.trades.exit_price)
