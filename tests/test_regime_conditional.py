"""Regime-conditional score weights and buy thresholds (registry group "regime", docs/ENGINE.md
"Regime-conditional weights"): one display whose row t uses the weights of session t's market regime, per-session
buy thresholds in the kernels, point-in-time, and the same trades as the plain reference given that display."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.regime_filter import regime_codes
from optimizer.engine.score import display_score
from optimizer.engine.simulate import Span
from optimizer.errors import ParameterError
from reference_engine import RefExit, ref_count_signals, ref_trades


@pytest.fixture(scope="module")
def panel(synth_db):
    from optimizer.study.data import load_universe_panel
    return load_universe_panel(synth_db, "tier1+3")


COND = {"variant": "B", "z_window": 20, "w_short": 0.55, "w_lit": 0.30, "w_price": 0.15,
        "w_short_risk_on": 0.2, "w_lit_risk_on": 0.7, "w_price_transitional": 0.6, "w_short_risk_off": 0.9}


def test_each_row_uses_its_regimes_weights(panel):
    ev = Evaluator(panel)
    codes = ev.regime_codes()
    assert set(np.unique(codes)) == {-1, 0, 1}  # the synthetic market visits every regime
    cfg = Config.from_params(COND)
    d = ev.display(cfg)
    pooled = cfg.score
    by_hand = {1: replace(pooled, w_short=0.2, w_lit=0.7), 0: replace(pooled, w_price=0.6),
               -1: replace(pooled, w_short=0.9)}
    for code, sp in by_hand.items():
        rows = codes == code
        np.testing.assert_array_equal(d[rows], display_score(ev.features, sp)[rows])
    assert not np.array_equal(d, ev.display(Config.from_params({k: v for k, v in COND.items() if "_risk" not in k
                                                                 and "transitional" not in k})), equal_nan=True)
    # weights equal to the pooled ones in every regime: the pooled display exactly
    same = Config.from_params({"variant": "B", **{f"{w}_{r}": v for r in ("risk_on", "risk_off", "transitional")
                                                  for w, v in (("w_short", 0.55), ("w_lit", 0.3), ("w_price", 0.15))}})
    np.testing.assert_array_equal(ev.display(same), ev.display(Config.from_params({"variant": "B"})))


def test_regime_buy_thresholds_match_the_reference_with_per_session_thresholds(panel):
    ev = Evaluator(panel)
    codes = ev.regime_codes()
    T = panel.shape[0]
    cfg = Config.from_params({**COND, "exit": "fixed_5d", "buy_threshold": 70, "sell_threshold": 30,
                              "buy_threshold_risk_on": 62, "buy_threshold_transitional": 76})
    res = ev.run(cfg, Span(30, T, T))
    buy = np.where(codes == 1, 62.0, np.where(codes == 0, 76.0, 70.0))
    ref = ref_trades(panel, res.display, buy, 30.0, RefExit("fixed", hold_days=5), (1.0, 5.0), 30, T, T)
    got = res.trades.to_frame().sort_values(["symbol_idx", "entry_idx"])
    assert len(ref) > 30 and got["signal_idx"].tolist() == ref["signal_idx"].tolist()
    np.testing.assert_allclose(got["net_ret"], ref["net_ret"], rtol=1e-12)
    assert res.metrics["total_signals"] == ref_count_signals(res.display, buy, 30, T)
    # each regime's entries respect its own threshold
    sig = got["signal_idx"].to_numpy()
    assert (got["score"].to_numpy() >= buy[sig]).all() and ((codes[sig] == 1) & (got["score"].to_numpy() < 70)).any()
    with pytest.raises(ParameterError, match="buy_threshold_risk_on must be > sell_threshold=30.0"):
        ev.run(Config.from_params({"buy_threshold_risk_on": 25.0}))


def test_the_pooled_buy_threshold_decides_no_entry_when_every_regime_has_its_own(panel):
    """Why the spec refuses a searched buy_threshold beside all three regime thresholds (spec._check_pooled_buy):
    every session is labelled one of the three regimes, so the pooled threshold changes no trade and no metric;
    with one regime left to it (RISK_OFF here), it does."""
    ev = Evaluator(panel)
    T = panel.shape[0]
    own = {**COND, "exit": "fixed_5d", "sell_threshold": 30, "buy_threshold_risk_on": 62,
           "buy_threshold_transitional": 66}
    runs = {(b, off): ev.run(Config.from_params({**own, "buy_threshold": b,
                                                 **({"buy_threshold_risk_off": 64} if off else {})}), Span(30, T, T))
            for b in (60, 80) for off in (True, False)}
    assert len(runs[60, True].trades) > 30
    assert runs[60, True].metrics == runs[80, True].metrics
    assert runs[60, True].trades.to_frame().equals(runs[80, True].trades.to_frame())
    assert runs[60, False].metrics != runs[80, False].metrics  # RISK_OFF sessions take the pooled threshold


def test_regime_conditional_display_is_point_in_time(panel):
    cfg = Config.from_params({**COND, "buy_threshold_risk_on": 62})
    full_codes = regime_codes(panel)
    full = Evaluator(panel).display(cfg)
    for t in (80, 250, panel.shape[0] - 20):
        cut = panel.slice(0, t + 1)
        np.testing.assert_array_equal(regime_codes(cut), full_codes[: t + 1])
        np.testing.assert_array_equal(Evaluator(cut).display(cfg), full[: t + 1])


def test_regime_parameters_round_trip_and_are_refused_with_their_rule():
    cfg = Config.from_params(COND)
    assert Config.from_params(cfg.to_params()) == cfg and cfg.regime.weighted and not cfg.regime.thresholded
    with pytest.raises(ParameterError, match=r"w_lit_risk_off must be"):
        Config.from_params({"w_lit_risk_off": -0.1})
    with pytest.raises(ParameterError, match=r"buy_threshold_transitional must be in \[0, 100\]"):
        Config.from_params({"buy_threshold_transitional": 120})
