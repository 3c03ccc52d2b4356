"""Statistics behaviour that mutation testing (bench/mutation) found unasserted, on small hand-computed cases:
PBO / CPCV-PBO (flat configurations, callable and "mean" metrics, the degradation fit, boundaries, exact errors).
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
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
