"""Statistics behaviour that mutation testing (bench/mutation) found unasserted, on small hand-computed cases:
PBO / CPCV-PBO (flat configurations, callable and "mean" metrics, the degradation fit, boundaries, exact errors).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
import warnings

import numpy as np
import pandas as pd
import pytest

from optimizer.errors import ParameterError
from optimizer.study.splits import CombinatorialPurgedCV
from optimizer.validate._pbo import cpcv_pbo, probability_of_backtest_overfitting


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


def _noise(t: int, n: int, seed: int = 0, scale: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, size=(t, n))


# ------------------------------------------------------------------------------------------------ PBO (CSCV)
def test_flat_configurations_rank_as_plus_inf_zero_and_minus_inf_without_warnings():
    # a configuration that never trades (all zeros) has Sharpe 0, a constant gain +inf, a constant loss -inf
    t = 8
    noisy_negative = _noise(t, 1, seed=1)[:, 0] - 0.05
    zeros_best = np.column_stack([np.zeros(t), noisy_negative, np.full(t, -0.01)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the 0 / 0 of a flat configuration
        res = probability_of_backtest_overfitting(zeros_best, n_blocks=4)
    assert (res.selected == 0).all() and (res.is_metric == 0.0).all() and (res.oos_metric == 0.0).all()
    # OOS rank of the zeros: above the noisy loser and the -inf constant loss -> rank 3 of 3
    np.testing.assert_allclose(res.omega, 3 / 4)
    assert res.pbo == 0.0 and res.prob_oos_loss == 0.0
    # all selected IS metrics equal: the degradation fit is undefined (NaN), not an error
    assert math.isnan(res.degradation_slope) and math.isnan(res.degradation_intercept)
    assert (res.n_blocks, res.n_configs, res.n_combinations) == (4, 3, 6)

    gain_best = np.column_stack([np.full(t, 0.01), noisy_negative])
    res = probability_of_backtest_overfitting(gain_best, n_blocks=4)
    assert (res.selected == 0).all() and np.isposinf(res.is_metric).all()


def test_low_but_real_dispersion_keeps_a_finite_sharpe():
    # returns of 0.001 +- 5e-5 (Sharpe ~ 20 per period) and of 1.0 +- 2.2e-6 (Sharpe ~ 4.5e5 < 1e6): not flat
    t = 8
    sign = np.array([1, -1, -1, 1, 1, 1, -1, 1.0])
    low_vol = 0.001 + 5e-5 * sign
    near_one = 1.0 + 2.2e-6 * sign
    for col in (low_vol, near_one):
        perf = np.column_stack([col, np.zeros(t)])
        res = probability_of_backtest_overfitting(perf, n_blocks=2)
        expected = [col[rows].mean() / col[rows].std(ddof=1) for rows in (slice(0, 4), slice(4, 8))]
        got = sorted(res.is_metric)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, sorted(expected), rtol=1e-4)  # sums-based variance


def test_sharpe_of_two_periods_uses_ddof_one():
    # T=4, S=4: every IS half holds 2 rows; Sharpe([a, b]) = mean / |a - b| * sqrt(2)
    perf = np.array([[0.01, 0.0], [0.03, 0.0], [0.02, 0.0], [0.06, 0.0]])
    res = probability_of_backtest_overfitting(perf, n_blocks=4)
    assert (res.selected == 0).all()
    rows = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    expected = [perf[list(r), 0].mean() / perf[list(r), 0].std(ddof=1) for r in rows]
    np.testing.assert_allclose(res.is_metric, expected)


def test_degradation_fit_uses_finite_pairs_only_and_two_combinations_suffice():
    t = 8
    rng = np.random.default_rng(5)
    a = np.concatenate([np.full(4, 0.01), rng.normal(0.0, 0.01, 4)])  # flat (+inf IS) when blocks 0, 1 are IS
    perf = np.column_stack([a, rng.normal(0.0, 0.01, t), rng.normal(0.0, 0.01, t)])
    res = probability_of_backtest_overfitting(perf, n_blocks=4)
    finite = np.isfinite(res.is_metric) & np.isfinite(res.oos_metric)
    assert 2 <= finite.sum() < res.n_combinations
    slope, intercept = np.polyfit(res.is_metric[finite], res.oos_metric[finite], 1)
    assert res.degradation_slope == pytest.approx(slope) and res.degradation_intercept == pytest.approx(intercept)
    # S = 2: exactly two combinations, the line through their two points (spread of IS metrics well below 1)
    two = probability_of_backtest_overfitting(_noise(6, 3, seed=7), n_blocks=2)
    assert two.n_combinations == 2 and np.ptp(two.is_metric) < 1.0
    x, y = two.is_metric, two.oos_metric
    assert two.degradation_slope == pytest.approx((y[1] - y[0]) / (x[1] - x[0]))


def test_callable_metric_is_used_for_ranking():
    perf = _noise(12, 4, seed=11)
    worst = probability_of_backtest_overfitting(perf, n_blocks=4, metric=lambda x: -x.mean(axis=0))
    mirrored = probability_of_backtest_overfitting(-perf, n_blocks=4, metric="mean")
    np.testing.assert_array_equal(worst.selected, mirrored.selected)
    np.testing.assert_allclose(worst.is_metric, mirrored.is_metric)
    np.testing.assert_allclose(worst.logits, mirrored.logits)
    # a metric may answer yes / no (profitable over the rows?): ranked as 0 / 1
    yes_no = probability_of_backtest_overfitting(perf, n_blocks=4, metric=lambda x: x.sum(axis=0) > 0)
    assert set(np.unique(yes_no.is_metric)) <= {0.0, 1.0}


def test_default_is_sixteen_blocks_and_twenty_is_the_largest():
    res = probability_of_backtest_overfitting(_noise(32, 2, seed=2))
    assert (res.n_blocks, res.n_combinations) == (16, 12870)
    assert probability_of_backtest_overfitting(_noise(20, 2, seed=2), n_blocks=20).n_combinations == 184756


@pytest.mark.parametrize("perf, kwargs, message", [
    (np.zeros(8), {}, "perf must be a 2-D array (T_obs × N_configs), got perf='<array of shape (8,)>'"),
    (np.zeros((8, 1)), {"n_blocks": 4}, "perf must be at least 2 columns (N_configs), got perf='<array of shape (8, 1)>'"),
    (np.zeros((3, 2)), {"n_blocks": 4}, "perf must be at least n_blocks=4 rows (T_obs), got perf='<array of shape "
                                        "(3, 2)>'"),
    (np.full((8, 2), np.nan), {"n_blocks": 4}, "perf must be all finite (no NaN/inf), got perf='<array with "
                                               "non-finite values>'"),
    (np.zeros((8, 2)), {"n_blocks": 22}, "n_blocks must be <= 20 (C(S, S/2) combinations are held in memory), "
                                         "got n_blocks=22"),
    (np.zeros((8, 2)), {"n_blocks": 4, "metric": "median"}, "metric must be a callable or one of ('sharpe', "
                                                            "'mean'), got metric='median'"),
])
def test_pbo_refuses_with_one_exact_line(perf, kwargs, message):
    with _raises_exactly(message):
        probability_of_backtest_overfitting(perf, **kwargs)


# ------------------------------------------------------------------------------------------------ CPCV-PBO
def test_cpcv_mean_and_callable_metrics_select_on_the_train_rows():
    perf = _noise(24, 3, seed=13)
    cv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2, purge=1)
    train, test = cv.train_test_masks(24)
    for metric, fn in (("mean", lambda x: x.mean(axis=0)), (lambda x: x.min(axis=0), lambda x: x.min(axis=0))):
        res = cpcv_pbo(perf, cv, metric=metric)
        is_m = np.array([fn(perf[tr]) for tr in train])
        np.testing.assert_array_equal(res.pbo.selected, is_m.argmax(axis=1))
        np.testing.assert_allclose(res.pbo.is_metric, is_m.max(axis=1))
        np.testing.assert_allclose(res.pbo.oos_metric, [fn(perf[te])[k] for te, k in zip(test, res.pbo.selected)])
        np.testing.assert_allclose(res.path_metric, fn(res.path_returns))


def test_cpcv_flat_zero_paths_are_not_losses():
    # the zeros configuration (Sharpe 0) beats a constant loss everywhere: every path is flat at 0, Sharpe 0,
    # which is not a loss
    perf = np.column_stack([np.zeros(12), np.full(12, -0.01)])
    res = cpcv_pbo(perf, CombinatorialPurgedCV(n_groups=3, n_test_groups=1))
    assert (res.path_configs == 0).all()
    np.testing.assert_array_equal(res.path_metric, 0.0)
    assert res.prob_path_loss == 0.0 and res.path_metric_median == 0.0


def test_pbo_accepts_a_pandas_frame_with_nullable_float_columns():
    # DuckDB / pandas hand back nullable "Float64" frames, which numpy sees as an object array: read as floats
    perf = _noise(24, 4, seed=5)
    frame = pd.DataFrame(perf).astype("Float64")
    a, b = probability_of_backtest_overfitting(frame, n_blocks=4), probability_of_backtest_overfitting(perf, n_blocks=4)
    assert a.pbo == b.pbo and np.array_equal(a.logits, b.logits) and np.array_equal(a.selected, b.selected)
    cv = CombinatorialPurgedCV(n_groups=4, n_test_groups=2)
    c, d = cpcv_pbo(frame, cv), cpcv_pbo(perf, cv)
    assert c.pbo.pbo == d.pbo.pbo and np.array_equal(c.pbo.logits, d.pbo.logits)
    assert np.array_equal(c.path_returns, d.path_returns)


def test_cpcv_two_configurations_suffice():
    res = cpcv_pbo(_noise(12, 2, seed=17), CombinatorialPurgedCV(n_groups=3, n_test_groups=1))
    assert res.pbo.n_configs == 2 and res.n_splits == 3


@pytest.mark.parametrize("perf, cv, kwargs, message", [
    (np.zeros((12, 1)), CombinatorialPurgedCV(3, 1), {},
     "perf must be a 2-D array (T_obs × N_configs) with >= 2 columns, got perf='<array of shape (12, 1)>'"),
    (np.full((12, 2), np.inf), CombinatorialPurgedCV(3, 1), {},
     "perf must be all finite (no NaN/inf), got perf='<array with non-finite values>'"),
    (np.zeros((12, 2)), CombinatorialPurgedCV(3, 1), {"metric": "median"},
     "metric must be a callable or one of ('sharpe', 'mean'), got metric='median'"),
    (np.zeros((12, 2)), "cpcv", {}, "cv must be a CombinatorialPurgedCV, got cv='cpcv'"),
    # split {0, 2} trains on group 1 = [4, 8) minus 2 sessions after group 0 and 2 before group 2: nothing left
    (np.zeros((12, 2)), CombinatorialPurgedCV(3, 2, purge=2), {},
     "cv must be splits that each keep >= 1 train session after purge and embargo, got cv=CombinatorialPurgedCV("
     "n_groups=3, n_test_groups=2, purge=2, embargo=0, warmup=0)"),
])
def test_cpcv_pbo_refuses_with_one_exact_line(perf, cv, kwargs, message):
    with _raises_exactly(message):
        cpcv_pbo(perf, cv, **kwargs)


# ------------------------------------------------------------------------------------------------ Sharpe, PSR, DSR
from optimizer.validate._sharpe import (  # noqa: E402
    deflated_sharpe_from_study, deflated_sharpe_ratio, excess_t_stat, expected_max_sharpe,
    probabilistic_sharpe_ratio, sharpe_stats,
)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_sharpe_stats_degenerate_cases_keep_every_key():
    nan, inf = float("nan"), float("inf")
    assert _same(sharpe_stats([0.01]), {"sr": nan, "n": 1, "skew": nan, "kurtosis": nan})
    assert _same(sharpe_stats([0.0, 0.0, 0.0]), {"sr": nan, "n": 3, "skew": nan, "kurtosis": nan})
    assert _same(sharpe_stats([1.0, 1.0, 1.0]), {"sr": inf, "n": 3, "skew": nan, "kurtosis": nan})
    # 0.1 three times: the float mean is not exactly 0.1, so std(ddof=1) is ~1e-17, yet the series is flat
    assert _same(sharpe_stats([0.1, 0.1, 0.1]), {"sr": inf, "n": 3, "skew": nan, "kurtosis": nan})
    assert sharpe_stats([-0.02, -0.02])["sr"] == -inf


def test_sharpe_stats_hand_cases():
    # two points: sr = 0.02 / (0.02 / sqrt 2) = sqrt 2, skew 0, kurtosis m4 / m2^2 = 1
    two = sharpe_stats([0.01, 0.03])
    assert two["n"] == 2 and two["sr"] == pytest.approx(math.sqrt(2)) and two["skew"] == pytest.approx(0.0)
    assert two["kurtosis"] == pytest.approx(1.0)
    # std exactly 1 and range exactly 1: ordinary series (sr = 1), not flat ones
    one = sharpe_stats([0.0, 1.0, 2.0])
    assert one["sr"] == pytest.approx(1.0) and one["kurtosis"] == pytest.approx(1.5)
    assert sharpe_stats([0.0, 0.5, 1.0])["sr"] == pytest.approx(1.0)


def test_sharpe_statistics_read_decimal_returns_as_floats():
    # DuckDB hands a DECIMAL column back as Python Decimals (numpy: an object array): read as floats
    r = ["0.01", "-0.02", "0.03", "0.005", "-0.01"]
    dec, flt = [Decimal(x) for x in r], np.array([float(x) for x in r])
    assert _same(sharpe_stats(dec), sharpe_stats(flt))
    assert excess_t_stat(dec) == excess_t_stat(flt)


def test_excess_t_stat_unit_range_is_not_flat():
    mean, t, n = excess_t_stat([0.0, 1.0])
    assert (mean, n) == (0.5, 2) and t == pytest.approx(1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: excess_t_stat(np.zeros((2, 2))),
     "excess_returns must be a 1-D array, got excess_returns='<array of shape (2, 2)>'"),
    (lambda: sharpe_stats([0.1, 0.2, np.nan]),
     "returns must be all finite (no NaN/inf), got returns='<array with non-finite value at index 2>'"),
    (lambda: expected_max_sharpe(3, -1.0), "var_sr must be finite and >= 0, got var_sr=-1.0"),
    (lambda: deflated_sharpe_ratio(1.0, 3, 0.5, 100, 0.0, 3.0, periods_per_year=float("inf")),
     "periods_per_year must be finite and > 0, got periods_per_year=inf"),
    (lambda: deflated_sharpe_ratio(1.0, 3, 0.5, 100, 0.0, 3.0, periods_per_year=0.0),
     "periods_per_year must be finite and > 0, got periods_per_year=0.0"),
    (lambda: probabilistic_sharpe_ratio(2.0, 0.0, 10, 1.0, 2.0),
     "kurtosis must be such that 1 - skew*sr + (kurtosis-1)/4*sr^2 > 0 (got 0.0 with sr=2.0, skew=1.0), "
     "got kurtosis=2.0"),
    (lambda: deflated_sharpe_from_study([0.01, 0.02], [1.0, 2.0, 3.0], 2),
     "n_trials_tried must be an integer >= max(1, number of finite trial Sharpe ratios = 3), got n_trials_tried=2"),
])
def test_sharpe_statistics_refuse_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_psr_and_dsr_smallest_valid_inputs():
    # n_obs = 2: z = (sr - sr*) * sqrt(1) / sqrt(den); den = 1 with skew 0, kurtosis 1
    assert probabilistic_sharpe_ratio(0.5, 0.0, 2, 0.0, 1.0) == pytest.approx(st_norm_cdf(0.5))
    # periods_per_year below 1 (one observation every two years) is still a valid annualization
    dsr = deflated_sharpe_ratio(1.0, 1, 0.0, 10, 0.0, 3.0, periods_per_year=0.5)
    den = 1.0 + 2.0 / 4.0 * (1.0 / math.sqrt(0.5)) ** 2
    assert dsr == pytest.approx(st_norm_cdf((1.0 / math.sqrt(0.5)) * 3.0 / math.sqrt(den)))


def st_norm_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_dsr_from_study_hand_case_with_two_returns_and_two_trials():
    # best returns [0.01, 0.03]: sr = sqrt 2, skew 0, kurtosis 1; trials [1, 2]: V = 0.5; N = 2
    res = deflated_sharpe_from_study([0.01, 0.03], [1.0, 2.0, None, float("nan")], 2)
    g = 0.5772156649015329
    q = (1 - g) * 0.0 + g * 0.9004  # Phi^-1(1 - 1/2) = 0, Phi^-1(1 - 1/(2e)) = 0.9004
    assert res.var_sr == pytest.approx(0.5) and res.sr0 == pytest.approx(math.sqrt(0.5) * q, rel=1e-3)
    assert res.n_obs == 2 and res.sr == pytest.approx(math.sqrt(2))
    assert res.dsr == pytest.approx(st_norm_cdf(math.sqrt(2) - res.sr0), rel=1e-9)


def test_dsr_from_study_single_trial_has_no_selection():
    res = deflated_sharpe_from_study([0.01, 0.03, 0.02], [1.0], 1)
    assert res.var_sr == 0.0 and res.sr0 == 0.0 and res.n_trials == 1
    one = sharpe_stats([0.01, 0.03, 0.02])
    assert res.dsr == pytest.approx(probabilistic_sharpe_ratio(one["sr"], 0.0, 3, one["skew"], one["kurtosis"]))


# ------------------------------------------------------------------------------------------------ robustness
import pandas as pd  # noqa: E402
from scipy import stats as st  # noqa: E402

from optimizer.validate._robust import (  # noqa: E402
    bootstrap_ci, closed_trade_events, cost_stress, cost_stress_wording, equity_bootstrap, flag_fragile,
    max_drawdown, rule_conditions, rule_validation, total_return, validate_rules,
)

_TRADES = np.array([0.02, -0.01, 0.03, 0.01, -0.02, 0.04, 0.0, -0.03, 0.05, 0.01])


def _plain_mdd(x: np.ndarray) -> float:
    equity, peak, worst = 1.0, 1.0, 0.0
    for v in x:
        equity *= 1.0 + v
        peak = max(peak, equity)
        worst = max(worst, 1.0 - equity / peak)
    return worst


def test_bootstrap_ci_equals_scipy_bootstrap_of_the_plain_statistics():
    # oracle: scipy's bootstrap, one resample at a time (vectorized=False) of plain per-sample formulas
    ci = bootstrap_ci(_TRADES, n_boot=200, alpha=0.1, seed=3)
    plain = {"sharpe": (lambda x: x.mean() / x.std(ddof=1), "BCa"),
             "total_return": (lambda x: np.prod(1.0 + x) - 1.0, "BCa"),
             "max_drawdown": (_plain_mdd, "percentile")}
    for name, (fn, method) in plain.items():
        ref = st.bootstrap((_TRADES,), fn, method=method, n_resamples=200, confidence_level=0.9, vectorized=False,
                           rng=np.random.default_rng(3)).confidence_interval
        assert ci[name].point == pytest.approx(fn(_TRADES))
        assert (ci[name].lo, ci[name].hi) == pytest.approx((ref.low, ref.high), rel=1e-9), name


def test_bootstrap_ci_settings_take_effect():
    a = bootstrap_ci(_TRADES, stat="total_return", n_boot=100, seed=1)["total_return"]
    b = bootstrap_ci(_TRADES, stat="total_return", n_boot=400, seed=1)["total_return"]
    c = bootstrap_ci(_TRADES, stat="total_return", n_boot=100, alpha=0.5, seed=1)["total_return"]
    assert (a.lo, a.hi) != (b.lo, b.hi)
    assert c.lo > a.lo and c.hi < a.hi  # a 50% interval is inside the 95% one
    assert list(bootstrap_ci(_TRADES, stat=("sharpe", "max_drawdown"), n_boot=100, seed=1)) == ["sharpe",
                                                                                                 "max_drawdown"]
    assert list(bootstrap_ci(_TRADES[:2], stat="sharpe", n_boot=100, seed=1)) == ["sharpe"]  # 2 trades suffice


def test_bootstrap_ci_degenerate_bca_falls_back_to_finite_percentile_bounds():
    nearly_flat = np.array([0.01] * 9 + [0.02])
    ci = bootstrap_ci(nearly_flat, stat="sharpe", n_boot=200, seed=1)["sharpe"]
    # 0.9^10 = 35 % of the resamples are ten 0.01s: no dispersion, Sharpe +inf (mend21; their rounding std gave
    # a "finite" 5e15 before), so the upper percentile bound is +inf; the lower one is finite
    assert np.isfinite(ci.lo) and ci.hi == np.inf and ci.lo <= ci.point <= ci.hi


def test_path_statistics_along_an_axis_and_on_no_trade():
    paths = np.array([[0.1, -0.5, 0.2], [-0.1, 0.0, 0.3]])
    np.testing.assert_allclose(max_drawdown(paths), [_plain_mdd(p) for p in paths])
    np.testing.assert_allclose(max_drawdown(paths.T, axis=0), [_plain_mdd(p) for p in paths])
    np.testing.assert_allclose(total_return(paths), [1.1 * 0.5 * 1.2 - 1.0, 0.9 * 1.0 * 1.3 - 1.0])
    assert max_drawdown([]) == 0.0 and max_drawdown([0.1, 0.2]) == 0.0


def test_equity_bootstrap_losing_curve_has_a_negative_cagr():
    r = np.full(126, -0.001) + np.tile([0.0005, -0.0005], 63)  # half a year of small losses
    res = equity_bootstrap(r, reps=100, seed=0)
    tot = np.prod(1.0 + r) - 1.0
    assert res.total_return.point == pytest.approx(tot)
    assert res.cagr.point == pytest.approx((1.0 + tot) ** 2 - 1.0)  # 126 days = half of 252
    assert res.cagr.point < res.total_return.point < 0.0


def test_rule_validation_sides_ties_and_direction():
    # with: 0, 0, 1 (one win: a zero return is not a win); without: -1, 0.5, 0.2
    r = np.array([0.0, 0.0, 1.0, -1.0, 0.5, 0.2])
    cond = np.array([True, True, True, False, False, False])
    row = rule_validation(r, {"a": cond}, min_side=1).iloc[0]
    assert (row.n_with, row.n_without, row.n_na) == (3, 3, 0)
    assert row.win_rate_with == pytest.approx(1 / 3) and row.win_rate_without == pytest.approx(2 / 3)
    assert row.median_with == 0.0 and row.median_without == 0.2
    assert row.auc == pytest.approx(5 / 9) and row.direction == "+"
    # a side of one return: its median is that return
    one = rule_validation(r, {"b": np.array([True, False, False, False, False, False])}, min_side=1).iloc[0]
    assert (one.n_with, one.median_with, one.win_rate_with) == (1, 0.0, 0.0)
    # auc exactly 0.5 -> "0"; below -> "-"
    sym = np.array([1.0, -1.0, 1.0, -1.0])
    half = rule_validation(sym, {"c": np.array([True, True, False, False])}, min_side=1).iloc[0]
    assert half.auc == 0.5 and half.direction == "0"
    low = rule_validation(r, {"d": ~cond}, min_side=1).iloc[0]
    assert low.auc == pytest.approx(4 / 9) and low.direction == "-"
    # not applicable returns are on neither side and counted
    na = pd.array([True, None, True, False, None, False], dtype="boolean")
    row = rule_validation(r, {"e": na}, min_side=1).iloc[0]
    assert (row.n_with, row.n_without, row.n_na) == (2, 2, 2)
    assert list(rule_validation(r, {"a": cond}).columns) == [
        "condition", "n_with", "n_without", "n_na", "median_with", "median_without", "win_rate_with",
        "win_rate_without", "u_stat", "auc", "direction", "p_value", "q_value"]


def test_flag_fragile_boundaries():
    def table(mults, surv):
        return pd.DataFrame({"multiplier": mults, "survives": surv})
    assert flag_fragile(table([1.0, 1.5], [True, False])) is True
    assert flag_fragile(table([1.0, 1.5], [True, True])) is False
    with _raises_exactly("df must be a table with a 1x row and at least one row above 1x, got df=[1.0, 1.0]"):
        flag_fragile(table([1.0, 1.0], [True, False]))
    with _raises_exactly("df must be a cost_stress table with 'multiplier' and 'survives' columns, got "
                         "df=['multiplier']"):
        flag_fragile(pd.DataFrame({"multiplier": [1.0]}))
    assert cost_stress_wording(table([2.0, 1.0, 3.0], [True, True, False])) == "survives 1× and 2× costs but not 3×"


@pytest.mark.parametrize("call, message", [
    (lambda: bootstrap_ci(np.zeros((2, 2))), "trade_returns must be a 1-D array, got trade_returns='<array of "
                                             "shape (2, 2)>'"),
    (lambda: bootstrap_ci([0.01]), "trade_returns must be at least 2 values, got trade_returns='<array of "
                                   "length 1>'"),
    (lambda: bootstrap_ci([0.01, -1.5, np.nan]), "trade_returns must be finite and >= -1 (a trade cannot lose more "
                                                 "than 100%), got trade_returns='<array with -1.5 at index 1>'"),
    (lambda: bootstrap_ci(_TRADES, stat="median"), "stat must be 'all' or one of ('total_return', 'max_drawdown', "
                                                   "'sharpe'), got stat='median'"),
    (lambda: bootstrap_ci(_TRADES, n_boot=99), "n_boot must be an integer >= 100, got n_boot=99"),
    (lambda: bootstrap_ci(_TRADES, alpha=1.0), "alpha must be in (0, 1), got alpha=1.0"),
    (lambda: equity_bootstrap(np.zeros(9)), "daily_returns must be a 1-D array of at least 10 values, got "
                                            "daily_returns='<array of shape (9,)>'"),
    (lambda: equity_bootstrap(np.r_[np.zeros(10), -2.0]), "daily_returns must be finite and >= -1 (a portfolio "
                                                          "cannot lose more than 100% a day), got daily_returns="
                                                          "'<array with -2.0 at index 10>'"),
    (lambda: equity_bootstrap(np.zeros(10), reps=99), "reps must be an integer >= 100, got reps=99"),
    (lambda: equity_bootstrap(np.zeros(10), alpha=0.0), "alpha must be in (0, 1), got alpha=0.0"),
    (lambda: equity_bootstrap(np.zeros(10), block_size=0.5), "block_size must be None or >= 1, got block_size=0.5"),
    (lambda: rule_validation(np.array([0.1, np.nan]), {}), "returns must be a 1-D array of finite values, got "
                                                          "returns='<array of shape (2,)>'"),
    (lambda: rule_validation(np.zeros(3), {}, min_side=0), "min_side must be an integer >= 1, got min_side=0"),
    (lambda: rule_validation(np.zeros(3), {"x": np.zeros(3)}), "conditions['x'] must be a boolean array of the "
                                                              "returns' shape (3,), got conditions['x']='<float64 "
                                                              "array of shape (3,)>'"),
    (lambda: cost_stress(lambda m: {"x": 1.0}, [1, 0]), "multipliers must be all finite and > 0, got "
                                                       "multipliers=(1.0, 0.0)"),
    (lambda: cost_stress(lambda m: {"x": 1.0}, [1]), "key must be a key of the dict evaluate(1) returned ['x'], got "
                                                    "key='avg_excess_return'"),
])
def test_robustness_refuses_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_rule_validation_min_side_one_is_allowed_and_tests_single_returns():
    row = rule_validation(np.array([0.1, -0.1]), {"x": np.array([True, False])}, min_side=1).iloc[0]
    assert row.direction == "+" and row.auc == 1.0


def test_closed_trade_events_keep_finite_closed_trades_and_prefer_the_excess_return():
    ev = pd.DataFrame({"net_return": [0.1, 0.2, np.nan, 0.4, 0.5], "excess_return": [0.01, None, 0.03, 0.04, "x"],
                       "open_at_end": [False, False, False, True, None]})
    closed, col = closed_trade_events(ev)
    assert col == "excess_return" and list(closed.index) == [0, 2]  # NaN / None / text excess and open trades out
    closed, col = closed_trade_events(ev.drop(columns="excess_return"))
    assert col == "net_return" and list(closed.index) == [0, 1, 4]  # open_at_end None: not open
    closed, col = closed_trade_events(ev.drop(columns=["excess_return", "open_at_end"]))
    assert col == "net_return" and list(closed.index) == [0, 1, 3, 4]


def _as_lists(conds: dict) -> dict:
    return {k: [None if v is pd.NA else bool(v) for v in a] for k, a in conds.items()}


def test_rule_conditions_one_definition_per_context_column():
    closed = pd.DataFrame({
        "parent_etf_aligned": [True, False, None, True], "parent_etf_available": [True, True, False, None],
        "signal_quality": ["HIGH", "LOW", "MEDIUM", None], "trend_state": ["UP", "DOWN", "FLAT", "UP"],
        "regime": ["RISK_ON", "RISK_OFF", "TRANSITIONAL", None], "options_boost": [1.2, 1.0, None, "n/a"],
    })
    conds = rule_conditions(closed)
    for a in conds.values():
        assert isinstance(a.dtype, pd.BooleanDtype)
    assert _as_lists(conds) == {
        "parent ETF aligned": [True, False, None, None],  # no parent ETF (available False / missing): neither side
        "signal quality HIGH": [True, False, False, False], "signal quality LOW": [False, True, False, False],
        "trend UP": [True, False, False, True], "trend DOWN": [False, True, False, False],
        "regime RISK_ON": [True, False, False, False],
        "options boost": [True, False, False, False],  # a boost is > 1; missing or text is no boost
    }
    # a parent ETF that is available but whose alignment is missing: not aligned (False), not "not applicable"
    both = pd.DataFrame({"parent_etf_aligned": [None, True], "parent_etf_available": [True, True]})
    assert _as_lists(rule_conditions(both)) == {"parent ETF aligned": [False, True]}
    # without the availability column, a missing alignment marks a symbol without a parent ETF
    only = rule_conditions(closed[["parent_etf_aligned"]])
    assert _as_lists(only) == {"parent ETF aligned": [True, False, None, True]}
    assert rule_conditions(closed[[]]) == {}  # no context column, no condition


def test_validate_rules_runs_the_conditions_on_the_closed_trades_excess():
    r = np.array([0.05, 0.04, 0.03, 0.06, 0.02, -0.01, -0.02, -0.03, 0.0, -0.04, 0.5])
    ev = pd.DataFrame({"excess_return": r, "net_return": -r,
                       "trend_state": ["UP"] * 5 + ["DOWN"] * 5 + ["UP"],
                       "open_at_end": [False] * 10 + [True]})
    table = validate_rules(ev)
    expect = rule_validation(r[:10], rule_conditions(ev.iloc[:10]))
    pd.testing.assert_frame_equal(table, expect)
    up = table.set_index("condition").loc["trend UP"]
    assert (up.n_with, up.n_without, up.direction) == (5, 5, "+") and up.auc == 1.0
    assert validate_rules(ev.iloc[10:]).empty  # no closed trade
    assert validate_rules(ev.drop(columns="trend_state")).empty  # no condition column


def _plain_sharpe(x, axis=-1):
    """mean / std (ddof=1); a resample without dispersion (std <= 1e-10 |mean|: all ten values 0.01, whose std is
    rounding, not 0) has Sharpe +inf by the sign of its mean (mend21)."""
    m, sd = np.mean(x, axis=axis), np.std(x, axis=axis, ddof=1)
    return np.where(sd <= 1e-10 * np.abs(m), m / 0.0, m / sd)


def test_degenerate_bca_falls_back_to_the_percentile_interval_of_the_same_resamples():
    from scipy import stats as sst
    nearly_flat = np.array([0.01] * 9 + [0.02])
    ci = bootstrap_ci(nearly_flat, stat="sharpe", n_boot=200, alpha=0.1, seed=1)["sharpe"]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bca = sst.bootstrap((nearly_flat,), _plain_sharpe, method="BCa", n_resamples=200, confidence_level=0.9,
                            rng=np.random.default_rng(1))
        pct = sst.bootstrap((nearly_flat,), _plain_sharpe, method="percentile", n_resamples=200,
                            confidence_level=0.9, rng=np.random.default_rng(1))
    assert not np.isfinite(bca.confidence_interval).all()  # the case is degenerate for BCa
    assert (ci.lo, ci.hi) == tuple(float(v) for v in pct.confidence_interval)


def test_robustness_defaults_and_inputs():
    x = _TRADES
    a, b = bootstrap_ci(x, stat="total_return", seed=3), bootstrap_ci(x, stat="total_return", n_boot=2000, seed=3)
    assert a == b  # n_boot defaults to 2000
    with _raises_exactly("alpha must be in (0, 1), got alpha=0.0"):
        bootstrap_ci(x, alpha=0.0)
    # a trade (or a day) that loses exactly 100% is possible, not an error
    assert bootstrap_ci(np.r_[x, -1.0], stat="total_return", n_boot=100, seed=0)["total_return"].point == -1.0
    assert equity_bootstrap(np.r_[np.full(10, 0.01), -1.0], reps=100).total_return.point == -1.0
    # returns read from a DuckDB DECIMAL column (Python Decimals) are read as floats
    dec = [Decimal(str(v)) for v in x]
    assert bootstrap_ci(dec, n_boot=100, seed=0) == bootstrap_ci(x, n_boot=100, seed=0)
    assert total_return(dec) == total_return(x) and max_drawdown(dec) == max_drawdown(x)
    e1, e2 = equity_bootstrap(dec, reps=100), equity_bootstrap(x, reps=100)
    assert (e1.total_return, e1.sharpe) == (e2.total_return, e2.sharpe)
    cond = {"up": x > 0}
    pd.testing.assert_frame_equal(rule_validation(dec, cond, min_side=1), rule_validation(x, cond, min_side=1))


def test_equity_bootstrap_reports_its_settings_and_the_drawdown_distribution():
    r = np.r_[np.zeros(30), -0.5, np.zeros(29)]  # one loss day: every path that draws it once has drawdown 0.5
    res = equity_bootstrap(r, reps=300)
    assert (res.reps, res.level) == (300, 0.95)
    again = equity_bootstrap(r, reps=300, seed=0)  # seed defaults to 0
    np.testing.assert_array_equal(res.max_drawdowns, again.max_drawdowns)
    assert not np.array_equal(res.max_drawdowns, equity_bootstrap(r, reps=300, seed=1).max_drawdowns)
    lo, hi = np.nanquantile(res.max_drawdowns, [0.025, 0.975])
    assert (res.max_drawdown.lo, res.max_drawdown.hi) == (lo, hi)
    mdd, a = res.max_drawdown.point, res.max_drawdowns
    assert mdd == 0.5 and (a == mdd).any()  # ties with the actual drawdown count half ("mean" percentile)
    assert res.drawdown_percentile == pytest.approx(50.0 * (np.sum(a < mdd) + np.sum(a <= mdd)) / a.size)
    noise = np.random.default_rng(4).normal(0.0005, 0.01, 80)  # a continuous drawdown distribution
    for alpha in (0.05, 0.1):
        e = equity_bootstrap(noise, reps=300, alpha=alpha)
        assert e.level == pytest.approx(1.0 - alpha)
        lo, hi = np.nanquantile(e.max_drawdowns, [alpha / 2, 1.0 - alpha / 2])
        assert (e.max_drawdown.lo, e.max_drawdown.hi) == (lo, hi) and lo < hi
    assert equity_bootstrap(r).reps == 2000  # reps defaults to 2000
    with _raises_exactly("alpha must be in (0, 1), got alpha=1.0"):
        equity_bootstrap(r, alpha=1.0)


def test_cost_stress_a_zero_metric_does_not_survive_and_tables_are_checked():
    df = cost_stress(lambda m: {"avg_excess_return": 0.002 - 0.001 * m}, [1, 2, 3])
    assert df["survives"].tolist() == [True, False, False]  # exactly 0 at 2x: no edge left
    with _raises_exactly("multipliers must be non-empty, got multipliers=[]"):
        cost_stress(lambda m: {"avg_excess_return": 1.0}, [])
    with _raises_exactly("df must be a cost_stress table with 'multiplier' and 'survives' columns, got "
                         "df=['multiplier']"):
        cost_stress_wording(pd.DataFrame({"multiplier": [1.0]}))
    with _raises_exactly("df must be a cost_stress table with at least one row, got df=0"):
        cost_stress_wording(pd.DataFrame({"multiplier": [], "survives": []}))


def test_rule_validation_empty_and_one_sided_conditions():
    cols = ["condition", "n_with", "n_without", "n_na", "median_with", "median_without", "win_rate_with",
            "win_rate_without", "u_stat", "auc", "direction", "p_value", "q_value"]
    assert list(rule_validation(_TRADES, {}).columns) == cols and rule_validation(_TRADES, {}).empty
    row = rule_validation(_TRADES, {"always": np.ones(_TRADES.size, dtype=bool)}, min_side=1).iloc[0]
    assert (row.n_with, row.n_without) == (10, 0)
    for k in ("median_without", "win_rate_without", "u_stat", "auc", "p_value", "q_value"):
        assert isinstance(row[k], float) and math.isnan(row[k]), k  # untested: NaN, not None
    assert row.direction == ""


@pytest.mark.parametrize("values", [np.full(12, 0.5), np.zeros(12), np.r_[np.zeros(11), 0.5]],
                         ids=["constant gain", "no trade", "one trade"])
def test_degenerate_trade_lists_give_no_numpy_warnings(values):
    # 0 / 0 and x / 0 Sharpe ratios of flat (resampled) trade lists are NaN / +-inf by design, not RuntimeWarnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = bootstrap_ci(values, n_boot=100, seed=0)
    assert set(ci) == {"total_return", "max_drawdown", "sharpe"}


def test_equity_bootstrap_flat_resampled_paths_give_no_numpy_warnings():
    # some resampled paths are all zeros (0 / 0 Sharpe) and some all 0.5 (x / 0): NaN / inf, no RuntimeWarning.
    # (A series that is flat itself still warns in np.nanquantile: all-NaN or inf - inf; see bench/mutation/README.)
    values = np.r_[np.zeros(6), np.full(6, 0.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eq = equity_bootstrap(values, reps=400, block_size=6)
    assert eq.n_days == 12 and np.isfinite(eq.sharpe.point)


def test_bootstrap_ci_degenerate_bca_falls_back_to_percentile_at_the_asked_level():
    # 3 wins of 0.1 and one loss of 0.05: a resample's Sharpe only depends on j, its number of losses (j = 0:
    # std 0, Sharpe inf), so BCa is degenerate and the same resamples are read with the percentile method. At
    # alpha 0.5 (seed 0) the 25 % / 75 % quantiles are j = 2: mean 0.025, std sqrt(0.0075) and j = 1: mean
    # 0.0625, std 0.075 -- at the default 95 % they would be j = 3 (-1/6) and j = 0 (inf); one resample more
    # (drawn from the same generator) would move the upper bound.
    ci = bootstrap_ci([0.1, 0.1, 0.1, -0.05], stat="sharpe", n_boot=100, alpha=0.5, seed=0)["sharpe"]
    assert ci.lo == pytest.approx(0.025 / math.sqrt(0.0075), rel=1e-12)
    assert ci.hi == pytest.approx(0.0625 / 0.075, rel=1e-12)
    # three losses of 0.024 and one of 0.018: the fallback reads exactly the BCa call's 100 resamples (scipy's own
    # percentile interval of the same seed), not 101; by hand the bounds lie among j = 1 (-7.5), j = 3 (-6.5) and
    # j = 2 (-6.062) losses of 0.018
    r = [-0.024, -0.024, -0.024, -0.018]
    ci = bootstrap_ci(r, stat="sharpe", n_boot=100, alpha=0.5, seed=0)["sharpe"]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        ref = st.bootstrap((np.array(r),), lambda x, axis=-1: x.mean(axis) / x.std(axis, ddof=1),
                           method="percentile", n_resamples=100, confidence_level=0.5, vectorized=True,
                           rng=np.random.default_rng(0))
    lo, hi = ref.confidence_interval
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), rel=1e-12)
    assert ci.lo == pytest.approx(-7.5) and -6.5 < ci.hi < -6.062
