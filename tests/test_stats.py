"""Tests of optimizer.validate.stats: paper oracles (DSR), hand-computed values and planted effects."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import ParameterError
from optimizer.validate.stats import (
    bootstrap_ci,
    cost_stress,
    deflated_sharpe_from_study,
    deflated_sharpe_ratio,
    excess_t_stat,
    expected_max_sharpe,
    flag_fragile,
    max_drawdown,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    rule_validation,
    sharpe_stats,
    total_return,
    verdict,
)

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- PSR / DSR


def test_psr_hand_values():
    # kurtosis 1, skew 0 -> denominator 1; z = 0.1 * sqrt(100) = 1 -> Phi(1)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 1.0) == pytest.approx(0.8413447461, abs=1e-9)
    assert probabilistic_sharpe_ratio(0.1, 0.1, 50, -1.0, 6.0) == pytest.approx(0.5, abs=1e-12)
    # normal moments: den = 1 + 2/4 * 0.01 = 1.005
    z = 0.1 * 10 / math.sqrt(1.005)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)))
    # negative skew and fat tails lower the confidence in a positive SR
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, -2.0, 10.0) < probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0)


def test_psr_rejects_bad_inputs():
    with pytest.raises(ParameterError, match="n_obs must be an integer >= 2, got n_obs=1"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ParameterError, match="kurtosis must be"):
        probabilistic_sharpe_ratio(1.0, 0.0, 100, 3.0, 1.0)  # 1 - 3 + 0 < 0: impossible moments


def test_expected_max_sharpe():
    assert expected_max_sharpe(1, 0.7) == 0.0
    assert expected_max_sharpe(100, 0.0) == 0.0
    # E[max of 100 iid N(0,1)] = 2.50759 (exact); the paper's approximation is within 0.03 of it
    assert expected_max_sharpe(100, 1.0) == pytest.approx(2.50759, abs=0.03)
    # scales with sqrt(V) and grows with N
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))
    assert expected_max_sharpe(1000, 1.0) > expected_max_sharpe(100, 1.0)
    with pytest.raises(ParameterError, match="n_trials must be an integer >= 1, got n_trials=0"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ParameterError, match="var_sr must be finite and >= 0"):
        expected_max_sharpe(10, -1.0)


def test_dsr_paper_numerical_example():
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example
    assert deflated_sharpe_ratio(2.5, 100, 0.5, 1250, -3.0, 10.0, periods_per_year=250) == pytest.approx(0.9004, abs=5e-4)
    assert deflated_sharpe_ratio(2.5, 46, 0.5, 1250, -3.0, 10.0, periods_per_year=250) == pytest.approx(0.9505, abs=5e-4)


def test_dsr_per_observation_units_match_annualized():
    per_obs = deflated_sharpe_ratio(2.5 / math.sqrt(250), 100, 0.5 / 250, 1250, -3.0, 10.0)
    assert per_obs == pytest.approx(0.9004, abs=5e-4)
    # one trial: no deflation, DSR == PSR against 0
    assert deflated_sharpe_ratio(0.05, 1, 0.3, 500, 0.0, 3.0) == pytest.approx(
        probabilistic_sharpe_ratio(0.05, 0.0, 500, 0.0, 3.0))


# --------------------------------------------------------------------------- sharpe_stats / study wrapper


def test_sharpe_stats_hand_values():
    s = sharpe_stats([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4
    assert s["sr"] == pytest.approx(2.5 / math.sqrt(5.0 / 3.0))
    assert s["skew"] == pytest.approx(0.0, abs=1e-12)
    assert s["kurtosis"] == pytest.approx(2.5625 / 1.5625)  # m4 / m2^2, non-excess
    big = sharpe_stats(np.random.default_rng(1).normal(size=200_000))
    assert big["kurtosis"] == pytest.approx(3.0, abs=0.05)
    assert math.isnan(sharpe_stats([0.5])["sr"])
    assert sharpe_stats([0.01, 0.01, 0.01])["sr"] == math.inf
    with pytest.raises(ParameterError, match="returns must be all finite"):
        sharpe_stats([0.1, float("nan")])


def test_deflated_sharpe_from_study_matches_formula_and_counts_pruned_trials():
    rng = np.random.default_rng(7)
    best = rng.normal(0.002, 0.01, 750)
    trials = rng.normal(0.0, 0.05, 40)
    m = sharpe_stats(best)
    res = deflated_sharpe_from_study(best, trials, 40)
    expected = deflated_sharpe_ratio(m["sr"], 40, float(np.var(trials, ddof=1)), 750, m["skew"], m["kurtosis"])
    assert res.dsr == pytest.approx(expected)
    assert res.var_sr == pytest.approx(np.var(trials, ddof=1))
    assert res.n_obs == 750 and res.n_trials == 40
    # pruned/failed trials raise N and therefore lower the DSR
    assert deflated_sharpe_from_study(best, trials, 400).dsr < res.dsr
    # non-finite trial Sharpe ratios are ignored for V[SR]
    with_nan = deflated_sharpe_from_study(best, np.append(trials, np.nan), 41)
    assert with_nan.var_sr == pytest.approx(res.var_sr)
    # annualized variant: SR scaled by sqrt(P), same DSR when trial SRs are annualized too
    ann = deflated_sharpe_from_study(best, trials * math.sqrt(252), 40, periods_per_year=252)
    assert ann.sr == pytest.approx(m["sr"] * math.sqrt(252))
    assert ann.dsr == pytest.approx(res.dsr)


def test_deflated_sharpe_from_study_degenerate_and_invalid():
    best = np.random.default_rng(3).normal(0.001, 0.01, 100)
    assert math.isnan(deflated_sharpe_from_study(best, [0.1], 10).dsr)  # V[SR] unknown
    one = deflated_sharpe_from_study(best, [0.1], 1)
    assert one.dsr == pytest.approx(probabilistic_sharpe_ratio(one.sr, 0.0, 100, one.skew, one.kurtosis))
    with pytest.raises(ParameterError, match="n_trials_tried must be an integer >= max"):
        deflated_sharpe_from_study(best, [0.1, 0.2, 0.3], 2)


def test_excess_t_stat():
    mean, t, n = excess_t_stat([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert t == pytest.approx(2.0 / (1.0 / math.sqrt(3.0)))
    m0, t0, n0 = excess_t_stat([])
    assert math.isnan(m0) and math.isnan(t0) and n0 == 0
    m1, t1, n1 = excess_t_stat([0.004])
    assert m1 == 0.004 and math.isnan(t1) and n1 == 1
    assert excess_t_stat([0.01, 0.01])[1] == math.inf
    assert excess_t_stat([-0.01, -0.01])[1] == -math.inf
    assert math.isnan(excess_t_stat([0.0, 0.0])[1])


# --------------------------------------------------------------------------- PBO


def test_pbo_hand_checked_s4():
    # one row per block; config 0 block values 5, 2, -1, -3; config 1 always 0; metric = mean.
    # IS blocks -> IS mean of cfg0 -> selected -> OOS mean of selected vs other -> logit
    # {0,1}: 3.5 -> cfg0, OOS -2 < 0 -> rank 1 -> ln(1/2)   {0,2}: 2 -> cfg0, OOS -0.5 -> ln(1/2)
    # {0,3}: 1 -> cfg0, OOS 0.5 -> ln 2                     {1,2}: 0.5 -> cfg0, OOS 1 -> ln 2
    # {1,3}: -0.5 -> cfg1, OOS cfg0 = 2 > 0 -> ln(1/2)      {2,3}: -2 -> cfg1, OOS cfg0 3.5 -> ln(1/2)
    perf = np.array([[5.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    r = probability_of_backtest_overfitting(perf, n_blocks=4, metric="mean")
    assert r.n_combinations == 6
    assert r.pbo == pytest.approx(4 / 6)
    np.testing.assert_allclose(r.logits, [-LN2, -LN2, LN2, LN2, -LN2, -LN2])
    np.testing.assert_array_equal(r.selected, [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(r.is_metric, [3.5, 2.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(r.oos_metric, [-2.0, -0.5, 0.5, 1.0, 0.0, 0.0])
    assert r.prob_oos_loss == pytest.approx(2 / 6)


def test_pbo_hand_checked_s2_always_overfit():
    # cfg0 wins the first half and loses the second; whichever half is IS, the pick is worst OOS
    perf = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    r = probability_of_backtest_overfitting(perf, n_blocks=2, metric="mean")
    assert r.n_combinations == 2 and r.pbo == 1.0
    np.testing.assert_array_equal(r.selected, [0, 1])
    np.testing.assert_allclose(r.omega, [1 / 3, 1 / 3])


def test_pbo_pure_noise_is_near_half():
    pbos = [probability_of_backtest_overfitting(np.random.default_rng(seed).normal(0, 0.01, (160, 30)),
                                                n_blocks=8).pbo for seed in range(12)]
    assert 0.35 <= float(np.mean(pbos)) <= 0.65
    assert min(pbos) > 0.0 and max(pbos) < 1.0


def test_pbo_real_edge_is_near_zero():
    for seed in range(3):
        perf = np.random.default_rng(seed).normal(0, 0.01, (480, 40))
        perf[:, 17] += 0.004
        r = probability_of_backtest_overfitting(perf, n_blocks=16)
        assert r.pbo < 0.1
        assert np.mean(r.selected == 17) > 0.9
        assert r.prob_oos_loss < 0.1


def test_pbo_sharpe_fast_path_matches_callable_with_uneven_blocks():
    perf = np.random.default_rng(5).normal(0.0003, 0.01, (203, 12))  # 203 rows: blocks of 26 and 25
    fast = probability_of_backtest_overfitting(perf, n_blocks=8, metric="sharpe")
    slow = probability_of_backtest_overfitting(perf, n_blocks=8, metric=lambda x: x.mean(0) / x.std(0, ddof=1))
    np.testing.assert_array_equal(fast.selected, slow.selected)
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.oos_metric, slow.oos_metric, rtol=1e-9)
    assert fast.pbo == slow.pbo


def test_pbo_s16_combinations_and_speed():
    perf = np.random.default_rng(0).normal(0, 0.01, (1000, 200))
    t0 = time.perf_counter()
    r = probability_of_backtest_overfitting(perf, n_blocks=16)
    elapsed = time.perf_counter() - t0
    assert r.n_combinations == 12870 and r.logits.shape == (12870,)
    assert elapsed < 5.0
    assert np.all((r.omega > 0) & (r.omega < 1))


def test_pbo_validation_messages():
    perf = np.zeros((20, 3))
    with pytest.raises(ParameterError, match="n_blocks must be an even integer >= 2, got n_blocks=5"):
        probability_of_backtest_overfitting(perf, n_blocks=5)
    with pytest.raises(ParameterError, match="n_blocks must be an even integer >= 2, got n_blocks=0"):
        probability_of_backtest_overfitting(perf, n_blocks=0)
    with pytest.raises(ParameterError, match=r"perf must be at least n_blocks=16 rows"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), n_blocks=16)
    with pytest.raises(ParameterError, match="perf must be at least 2 columns"):
        probability_of_backtest_overfitting(np.zeros((20, 1)), n_blocks=4)
    with pytest.raises(ParameterError, match="perf must be all finite"):
        probability_of_backtest_overfitting(np.full((20, 3), np.nan), n_blocks=4)
    with pytest.raises(ParameterError, match="metric must be a callable or one of"):
        probability_of_backtest_overfitting(perf, n_blocks=4, metric="sortino")


# --------------------------------------------------------------------------- bootstrap


def test_path_statistics_hand_values():
    r = np.array([0.1, -0.5, 0.2])
    assert total_return(r) == pytest.approx(1.1 * 0.5 * 1.2 - 1.0)
    assert max_drawdown(r) == pytest.approx(0.5)  # 1.1 -> 0.55
    assert max_drawdown([-0.1, 0.2]) == pytest.approx(0.1)  # starting equity is a peak
    assert max_drawdown([0.1, 0.2]) == 0.0


def test_bootstrap_ci_points_intervals_and_seed():
    r = np.random.default_rng(11).normal(0.01, 0.02, 400)
    ci = bootstrap_ci(r, seed=3, n_boot=1000)
    assert set(ci) == {"total_return", "max_drawdown", "sharpe"}
    assert ci["total_return"].point == pytest.approx(np.prod(1 + r) - 1)
    assert ci["sharpe"].point == pytest.approx(r.mean() / r.std(ddof=1))
    assert ci["max_drawdown"].point == pytest.approx(max_drawdown(r))
    for name in ("total_return", "sharpe"):
        assert ci[name].lo < ci[name].point < ci[name].hi
    # planted edge: per-trade Sharpe 0.5 on 400 trades -> interval excludes 0, contains 0.5
    assert 0.0 < ci["sharpe"].lo < 0.5 < ci["sharpe"].hi
    assert 0.0 <= ci["max_drawdown"].lo <= ci["max_drawdown"].hi
    assert bootstrap_ci(r, "sharpe", seed=3, n_boot=1000) == {"sharpe": ci["sharpe"]}
    narrower = bootstrap_ci(np.tile(r, 4), "sharpe", seed=3, n_boot=1000)["sharpe"]
    assert narrower.hi - narrower.lo < ci["sharpe"].hi - ci["sharpe"].lo


def test_bootstrap_ci_validation():
    with pytest.raises(ParameterError, match="stat must be 'all' or one of"):
        bootstrap_ci([0.1, 0.2, 0.3], "calmar")
    with pytest.raises(ParameterError, match="trade_returns must be finite and >= -1"):
        bootstrap_ci([0.1, -1.5, 0.3])
    with pytest.raises(ParameterError, match="alpha must be in"):
        bootstrap_ci([0.1, 0.2, 0.3], alpha=1.5)


# --------------------------------------------------------------------------- cost stress


def _fake_evaluate(base: float, cost: float, calls: list):
    def evaluate(mult: float) -> dict:
        calls.append(mult)
        return {"avg_excess_return": base - cost * mult, "n_trades": 100}
    return evaluate


def test_cost_stress_table_and_fragility():
    calls: list = []
    df = cost_stress(_fake_evaluate(0.003, 0.002, calls))
    assert calls == [1.0, 2.0, 3.0]
    assert list(df.columns) == ["multiplier", "avg_excess_return", "n_trades", "survives"]
    np.testing.assert_allclose(df["avg_excess_return"], [0.001, -0.001, -0.003])
    assert df["survives"].tolist() == [True, False, False]
    assert flag_fragile(df) is True
    robust = cost_stress(_fake_evaluate(0.01, 0.002, []), multipliers=(1, 2, 4))
    assert robust["survives"].all() and flag_fragile(robust) is False
    dead = cost_stress(_fake_evaluate(-0.001, 0.001, []))
    assert not dead["survives"].any() and flag_fragile(dead) is False


def test_cost_stress_errors():
    with pytest.raises(ParameterError, match="key must be a key of the dict evaluate"):
        cost_stress(lambda m: {"sharpe": 1.0})
    with pytest.raises(ParameterError, match="multipliers must be all finite and > 0"):
        cost_stress(lambda m: {"avg_excess_return": 1.0}, multipliers=(1, -2))
    with pytest.raises(ParameterError, match="df must be a table with a 1x row"):
        flag_fragile(pd.DataFrame({"multiplier": [2.0, 3.0], "survives": [True, False]}))


# --------------------------------------------------------------------------- rule validation


def test_rule_validation_planted_null_and_small():
    rng = np.random.default_rng(4)
    n = 400
    returns = rng.normal(0.0, 0.02, n)
    planted = rng.random(n) < 0.5
    returns[planted] += 0.01
    hurt = rng.random(n) < 0.5
    returns[hurt] -= 0.01
    null = rng.random(n) < 0.5
    tiny = np.zeros(n, dtype=bool)
    tiny[:3] = True
    df = rule_validation(returns, {"planted": planted, "hurt": hurt, "null": null, "tiny": tiny}).set_index("condition")
    assert df.loc["planted", "q_value"] < 0.05 and df.loc["planted", "direction"] == "+"
    assert df.loc["hurt", "q_value"] < 0.05 and df.loc["hurt", "direction"] == "-"
    assert df.loc["null", "q_value"] > 0.05
    assert df.loc["planted", "median_with"] > df.loc["planted", "median_without"]
    assert df.loc["planted", "n_with"] == planted.sum() and df.loc["planted", "n_without"] == n - planted.sum()
    assert df.loc["planted", "win_rate_with"] == pytest.approx(np.mean(returns[planted] > 0))
    # fewer than 5 on a side: untested, excluded from the BH family
    assert math.isnan(df.loc["tiny", "p_value"]) and math.isnan(df.loc["tiny", "q_value"])
    assert df.loc["tiny", "direction"] == "" and df.loc["tiny", "n_with"] == 3
    p = df.loc[["planted", "hurt", "null"], "p_value"].to_numpy()
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * 3 / np.arange(1, 4))[::-1])[::-1]
    np.testing.assert_allclose(df.loc[["planted", "hurt", "null"], "q_value"].to_numpy()[order], bh)


def test_rule_validation_hand_values_and_errors():
    returns = np.array([1.0, 2.0, 3.0, 4.0, 5.0, -1.0, -2.0, -3.0, -4.0, -5.0])
    cond = np.array([True] * 5 + [False] * 5)
    row = rule_validation(returns, {"c": cond}).iloc[0]
    assert row["u_stat"] == 25.0 and row["auc"] == 1.0 and row["direction"] == "+"
    assert row["median_with"] == 3.0 and row["median_without"] == -3.0
    assert row["win_rate_with"] == 1.0 and row["win_rate_without"] == 0.0
    assert row["p_value"] < 0.05 and row["q_value"] == row["p_value"]
    with pytest.raises(ParameterError, match=r"conditions\['c'\] must be a boolean array"):
        rule_validation(returns, {"c": cond.astype(int)})
    with pytest.raises(ParameterError, match=r"conditions\['c'\] must be a boolean array"):
        rule_validation(returns, {"c": cond[:4]})


# --------------------------------------------------------------------------- verdict


def test_verdict_passing():
    v = verdict(0.0035, 3.1, 0.97, 0.21, 143)
    assert v.supported and v.reasons == []
    assert v.line == "edge supported: OOS excess +0.35%/trade (t=3.1, n=143), DSR 0.97 >= 0.95, PBO 0.21 < 0.50"
    assert verdict(0.0035, 3.1, 0.95, 0.21, 30).supported  # boundaries: DSR >= 0.95, n >= 30 pass


def test_verdict_example_line():
    v = verdict(0.0012, 0.8, 0.41, 0.62, 143)
    assert not v.supported
    assert v.line == "edge NOT supported: OOS excess +0.12%/trade (t=0.8, n=143), DSR 0.41 < 0.95, PBO 0.62 >= 0.50"
    assert len(v.reasons) == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((-0.001, 3.0, 0.97, 0.2, 100), "is not positive"),
        ((0.002, 1.9, 0.97, 0.2, 100), "not significant: t=1.9 <= 2"),
        ((0.002, 3.0, 0.97, 0.2, 29), "too few OOS trades: n=29 < 30"),
        ((0.002, 3.0, 0.94, 0.2, 100), "Deflated Sharpe Ratio 0.94 < 0.95"),
        ((0.002, 3.0, 0.97, 0.5, 100), "Probability of Backtest Overfitting 0.50 >= 0.50"),
        ((0.002, 3.0, float("nan"), 0.2, 100), "Deflated Sharpe Ratio n/a < 0.95"),
        ((0.002, 3.0, 0.97, float("nan"), 100), "Probability of Backtest Overfitting n/a"),
    ],
)
def test_verdict_each_failing_gate(args, fragment):
    v = verdict(*args)
    assert not v.supported
    assert len(v.reasons) == 1 and fragment in v.reasons[0]
    assert v.line.startswith("edge NOT supported: ")


def test_verdict_thresholds_are_keywords():
    assert verdict(0.002, 3.0, 0.90, 0.55, 20, min_trades=10, dsr_min=0.9, pbo_max=0.6).supported
    v = verdict(0.002, 3.0, 0.97, 0.2, 20)
    assert "n=20 < 30" in v.line


def test_pbo_tie_at_median_counts_as_overfit():
    # identical configs: the IS pick (first on ties) has the average OOS rank 1.5 of 2 -> omega 1/2,
    # logit 0, and lambda <= 0 counts as overfit
    col = np.random.default_rng(9).normal(0, 0.01, 40)
    r = probability_of_backtest_overfitting(np.column_stack([col, col]), n_blocks=4)
    np.testing.assert_allclose(r.omega, 0.5)
    np.testing.assert_allclose(r.logits, 0.0, atol=1e-15)
    assert r.pbo == 1.0


def test_pbo_rejects_too_many_blocks():
    with pytest.raises(ParameterError, match="n_blocks must be <= 20"):
        probability_of_backtest_overfitting(np.zeros((40, 3)), n_blocks=22)


# --------------------------------------------------------------------------- equity block bootstrap


def test_equity_bootstrap_points_are_the_equity_curve_and_it_resamples_days():
    from optimizer.validate._robust import equity_bootstrap

    r = np.random.default_rng(0).normal(0.0008, 0.01, 400)
    e = equity_bootstrap(r, reps=500, seed=2)
    curve = np.cumprod(1.0 + r)
    assert e.total_return.point == pytest.approx(curve[-1] - 1.0, rel=1e-12)   # agrees with the chart
    assert e.cagr.point == pytest.approx(curve[-1] ** (252 / 400) - 1.0, rel=1e-12)
    peak = np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:]
    assert e.max_drawdown.point == pytest.approx(np.max(1 - curve / peak), rel=1e-12)
    assert e.sharpe.point == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    for ci in (e.total_return, e.cagr, e.sharpe):
        assert ci.lo < ci.point < ci.hi
    assert "days" in e.resamples and e.n_days == 400 and e.max_drawdowns.shape == (500,)
    assert 0 <= e.drawdown_percentile <= 100
    again = equity_bootstrap(r, reps=500, seed=2)
    np.testing.assert_array_equal(again.max_drawdowns, e.max_drawdowns)


def test_equity_point_is_the_bootstraps_point_and_needs_one_day():
    """``equity_point``: the equity curve's figures (the equity bootstrap's point estimates, one definition) from
    any number of days, for a caller whose series is too short to bootstrap. Hand values: returns +10 %, -20 %,
    +5 %: equity 1.1, 0.88, 0.924; drawdown 1 - 0.88 / 1.1 = 0.2; Sharpe mean / std(ddof=1) x sqrt(252)."""
    from optimizer.validate._robust import equity_bootstrap, equity_point

    r = np.array([0.10, -0.20, 0.05])
    pt = equity_point(r)
    assert pt["total_return"] == pytest.approx(1.1 * 0.8 * 1.05 - 1.0, rel=1e-14)
    assert pt["cagr"] == pytest.approx((1.1 * 0.8 * 1.05) ** (252 / 3) - 1.0, rel=1e-12)
    assert pt["max_drawdown"] == pytest.approx(0.2, rel=1e-14)
    sd = math.sqrt(((0.1 + 0.05 / 3) ** 2 + (-0.2 + 0.05 / 3) ** 2 + (0.05 + 0.05 / 3) ** 2) / 2)
    assert pt["sharpe"] == pytest.approx(-0.05 / 3 / sd * math.sqrt(252), rel=1e-12)
    x = np.random.default_rng(0).normal(0.0008, 0.01, 40)
    b, q = equity_bootstrap(x, reps=100, seed=1), equity_point(x)
    assert q == {k: getattr(b, k).point for k in ("total_return", "cagr", "max_drawdown", "sharpe")}
    one = equity_point([-0.1])  # one day: no standard deviation (and no numpy warning)
    assert math.isnan(one["sharpe"]) and one["max_drawdown"] == pytest.approx(0.1, rel=1e-14)
    assert one["total_return"] == pytest.approx(-0.1, rel=1e-14)
    assert math.isnan(equity_point(np.zeros(5))["sharpe"]) and equity_point(np.zeros(5))["max_drawdown"] == 0.0
    with pytest.raises(ParameterError, match="daily_returns must be a 1-D array of at least 1 value"):
        equity_point(np.zeros(0))
    with pytest.raises(ParameterError, match="daily_returns must be a 1-D array of at least 1 value"):
        equity_point(np.zeros((2, 3)))


def test_equity_bootstrap_blocks_widen_the_interval_of_a_trending_series():
    from optimizer.validate._robust import equity_bootstrap

    rng = np.random.default_rng(1)
    x = np.zeros(600)
    eps = rng.normal(0, 0.006, 600)
    for i in range(1, 600):  # AR(1), phi 0.6: momentum in daily portfolio returns (overlapping positions)
        x[i] = 0.6 * x[i - 1] + eps[i]
    blocks = equity_bootstrap(x, reps=800, seed=3)
    iid = equity_bootstrap(x, reps=800, seed=3, block_size=1)
    assert blocks.block_size > 3
    width = lambda ci: ci.hi - ci.lo  # noqa: E731
    assert width(blocks.total_return) > 1.4 * width(iid.total_return)
    assert np.median(blocks.max_drawdowns) > np.median(iid.max_drawdowns)


def test_equity_bootstrap_validation():
    from optimizer.validate._robust import equity_bootstrap

    with pytest.raises(ParameterError, match="daily_returns must be finite and >= -1"):
        equity_bootstrap(np.r_[np.zeros(20), -2.0])
    with pytest.raises(ParameterError, match="daily_returns must be a 1-D array of at least 10 values"):
        equity_bootstrap(np.zeros(5))
    with pytest.raises(ParameterError, match="block_size must be"):
        equity_bootstrap(np.zeros(50), block_size=0.5)


def test_cost_stress_wording_follows_the_table():
    from optimizer.validate._robust import cost_stress_wording

    def table(*surv):
        return pd.DataFrame({"multiplier": [1.0, 2.0, 3.0][:len(surv)], "survives": list(surv)})

    assert cost_stress_wording(table(True, True, True)) == "survives 1×, 2× and 3× costs"
    assert cost_stress_wording(table(True, False, False)) == "survives 1× costs but not 2× or 3×"
    assert flag_fragile(table(True, False, False)) and not flag_fragile(table(True, True, True))
    assert cost_stress_wording(table(True, True, False)) == "survives 1× and 2× costs but not 3×"
    assert cost_stress_wording(table(False, False, False)) == "does not survive 1×, 2× or 3× costs"
    assert cost_stress_wording(table(True)) == "survives 1× costs"
    shuffled = pd.DataFrame({"multiplier": [3.0, 1.0, 2.0], "survives": [False, True, True]})
    assert cost_stress_wording(shuffled) == "survives 1× and 2× costs but not 3×"
    with pytest.raises(ParameterError, match="df must be a cost_stress table"):
        cost_stress_wording(pd.DataFrame({"x": [1]}))
