"""Rolling statistics (optimizer/data/rolling.py) and daily_metrics helpers: what mutation testing (bench/mutation)
found unasserted -- hand-computed z-scores and means on tiny series, the min_periods rule and its boundaries,
the flat-window rule, 1-D vs 2-D inputs, exact one-line errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from optimizer.data.rolling import STD_EPS, rolling_mean, rolling_zscore
from optimizer.errors import ParameterError

nan = float("nan")


def _raises_exactly(message: str):
    return pytest.raises(ParameterError, match="^" + re.escape(message) + "$")


def test_rolling_zscore_by_hand():
    x = np.array([1.0, 2.0, 3.0, 5.0])
    # window 2: population std of two values is |a - b| / 2, so z = +-1 whenever they differ
    np.testing.assert_allclose(rolling_zscore(x, 2), [nan, 1.0, 1.0, 1.0])
    # window 3, min_periods 2: row 1 uses [1, 2] (z 1), row 2 [1, 2, 3] (z (3 - 2) / sqrt(2/3)), row 3 [2, 3, 5]
    z = rolling_zscore(x, 3, min_periods=2)
    m3, s3 = np.mean([2, 3, 5]), np.std([2, 3, 5])
    np.testing.assert_allclose(z, [nan, 1.0, 1.0 / math.sqrt(2.0 / 3.0), (5 - m3) / s3])
    assert rolling_zscore(x, 3).shape == (4,) and math.isnan(rolling_zscore(x, 3)[1])  # min_periods = window
    # min_periods 1: a single value has std 0 -> NaN, never 0 / 0 = a number
    assert math.isnan(rolling_zscore(x, 3, min_periods=1)[0])


def test_rolling_zscore_two_dimensional_columns_and_holes():
    x = np.array([[1.0, 10.0], [2.0, nan], [3.0, 30.0], [4.0, 50.0]])
    z = rolling_zscore(x, 2, min_periods=1)
    assert z.shape == (4, 2)
    np.testing.assert_allclose(z[:, 0], [nan, 1.0, 1.0, 1.0])
    # a NaN value has no z; the window after it holds one finite value (std 0) -> NaN; then (50 - 40) / 10
    np.testing.assert_allclose(z[:, 1], [nan, nan, nan, 1.0])


def test_rolling_zscore_flat_windows_are_nan():
    flat = np.full(5, 7.0)
    assert np.isnan(rolling_zscore(flat, 3)).all()
    # relative flatness: std <= 1e-10 * |mean| (rounding noise around a large level) is flat too
    big = 1e6 + np.array([0.0, 1e-5, 0.0, 1e-5, 0.0])
    assert np.isnan(rolling_zscore(big, 3)).all()
    # ... but a real dispersion just above it is not
    ok = 1e6 + np.array([0.0, 1e-3, 0.0, 1e-3, 0.0])
    assert np.isfinite(rolling_zscore(ok, 3)[2:]).all()
    # absolute flatness: std <= STD_EPS
    tiny = np.array([0.0, 1e-13, 0.0, 1e-13])
    assert STD_EPS == 1e-12 and np.isnan(rolling_zscore(tiny, 2)).all()
    small = np.array([0.0, 1e-9, 0.0, 1e-9])  # std 5e-10 > STD_EPS and mean 5e-10: a z of +-1
    np.testing.assert_allclose(rolling_zscore(small, 2)[1:], [1.0, -1.0, 1.0])
    # an inf value gives NaN (not +-inf or a poisoned window read as a number)
    assert math.isnan(rolling_zscore(np.array([1.0, 2.0, np.inf, 3.0]), 2)[2])


def test_rolling_mean_by_hand():
    x = np.array([1.0, nan, 3.0, 5.0])
    np.testing.assert_allclose(rolling_mean(x, 2), [nan, nan, nan, 4.0])
    np.testing.assert_allclose(rolling_mean(x, 2, min_periods=1), [1.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(rolling_mean(x, 3, min_periods=2), [nan, nan, 2.0, 4.0])
    two = rolling_mean(np.column_stack([x, 2 * x]), 2, min_periods=1)
    assert two.shape == (4, 2)
    np.testing.assert_allclose(two[:, 1], [2.0, 2.0, 6.0, 8.0])


@pytest.mark.parametrize("call, message", [
    (lambda: rolling_zscore(np.ones(3), 1), "window must be >= 2, got window=1"),
    (lambda: rolling_mean(np.ones(3), 2.0), "window must be >= 2, got window=2.0"),
    (lambda: rolling_zscore(np.ones(3), 3, min_periods=0), "min_periods must be in [1, window=3], got min_periods=0"),
    (lambda: rolling_mean(np.ones(3), 3, min_periods=4), "min_periods must be in [1, window=3], got min_periods=4"),
])
def test_rolling_refuses_with_one_exact_line(call, message):
    with _raises_exactly(message):
        call()


def test_rolling_boundaries_are_allowed():
    assert rolling_zscore(np.arange(4.0), 2, min_periods=2).shape == (4,)
    assert rolling_mean(np.arange(4.0), 4, min_periods=4)[3] == 1.5
    assert rolling_mean(np.arange(4.0), np.int64(2))[1] == 0.5  # numpy integers are integers


def test_rolling_flat_rule_is_inclusive_reads_decimals_and_stays_quiet():
    import warnings
    from decimal import Decimal
    # a window whose std is exactly STD_EPS (1e-12) is flat: NaN, not (2e-12 - 1e-12) / 1e-12 = 1
    assert np.isnan(rolling_zscore(np.array([0.0, 2e-12, 0.0]), 2)).all()
    # Decimals (a DuckDB DECIMAL column) are read as floats
    dec = [Decimal("1"), Decimal("2"), Decimal("4"), Decimal("3")]
    np.testing.assert_array_equal(rolling_zscore(dec, 2), rolling_zscore(np.array([1.0, 2.0, 4.0, 3.0]), 2))
    np.testing.assert_array_equal(rolling_mean(dec, 2), [nan, 1.5, 3.0, 3.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # flat windows (x / 0, 0 / 0) give NaN without a RuntimeWarning
        assert np.isnan(rolling_zscore(np.full(6, 7.0), 3)).all()
        assert np.isnan(rolling_zscore(np.zeros(6), 3)).all()


def test_rolling_zscore_relative_flat_rule_is_inclusive():
    # std == 1e-10 * |mean| exactly: x = (m - d, m + d) with d = 2**-30, m = d * 1e10 (all exact in binary), so
    # the window's population std is d and 1e-10 * m rounds back to d: flat (NaN), not (m + d - m) / d = 1
    d = 2.0 ** -30
    m = d * 1e10
    assert d > STD_EPS  # the absolute rule does not catch it: only the relative one, at its boundary
    assert np.isnan(rolling_zscore(np.array([m - d, m + d]), 2)[1])
    # a std 1.5 times as large is not flat: z = 1 exactly
    assert rolling_zscore(np.array([m - 1.5 * d, m + 1.5 * d]), 2)[1] == 1.0
