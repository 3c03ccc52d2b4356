"""optimizer.data.rolling rolls every column of a (T x N) matrix in ONE pandas kernel call per statistic (the
columns laid end to end, windows restarting at each column's first row) instead of ``DataFrame.rolling``'s loop
over the columns: the values must be the DataFrame path's BIT FOR BIT (the reference below is the per-column
implementation it replaced), on holes, +-inf, flat runs, huge and tiny magnitudes, windows longer than the data,
1-D and 2-D input, and no rows or no columns. (Written by tspeed13 for its own per-column kernel variant, which
was not merged; it holds the merged explore11 code to the same reference.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from optimizer.data.rolling import STD_EPS, rolling_mean, rolling_zscore


def _zscore_ref(x, window, min_periods=None):
    mp = int(window) if min_periods is None else int(min_periods)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    df = pd.DataFrame(arr[:, None] if one_d else arr)
    r = df.rolling(int(window), min_periods=mp)
    mean = r.mean().to_numpy()
    std = r.std(ddof=0).to_numpy()
    a = df.to_numpy()
    tiny = (std <= STD_EPS) | (std <= 1e-10 * np.abs(mean))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (a - mean) / std
    z[tiny | ~np.isfinite(a) | ~np.isfinite(std)] = np.nan
    return z[:, 0] if one_d else z


def _mean_ref(x, window, min_periods=None):
    mp = int(window) if min_periods is None else int(min_periods)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    out = pd.DataFrame(arr[:, None] if one_d else arr).rolling(int(window), min_periods=mp).mean().to_numpy()
    return out[:, 0] if one_d else out


def _same(a, b) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    # bit for bit: equal where both are numbers, NaN at the same places (array_equal with equal_nan)
    assert np.array_equal(a, b, equal_nan=True), np.argwhere(~((a == b) | (np.isnan(a) & np.isnan(b))))[:5]


_values = st.one_of(st.floats(-1e9, 1e9, allow_nan=False, width=64), st.just(np.nan), st.just(np.inf),
                    st.just(-np.inf), st.just(0.0), st.just(1.0), st.floats(-1e-6, 1e-6, width=64))


@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=40), elements=_values),
       window=st.integers(2, 45), mp_frac=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_kernels_equal_the_dataframe_rolling_path_bit_for_bit(x, window, mp_frac):
    mp = None if mp_frac is None else max(1, min(window, int(round(mp_frac * window))))
    _same(rolling_zscore(x, window, mp), _zscore_ref(x, window, mp))
    _same(rolling_mean(x, window, mp), _mean_ref(x, window, mp))


@pytest.mark.parametrize("window,mp", [(10, None), (20, None), (30, 5), (2, 1), (400, 3)])
def test_a_panel_with_holes_and_steps_equals_the_dataframe_path(window, mp):
    """A panel as the features see it: 374 sessions x 33 symbols of flows with a symbol listed late, a gap, inf
    from a division by zero, a flat run, a price-like column of large magnitude and a step."""
    rng = np.random.default_rng(5)
    x = rng.lognormal(12, 1.5, size=(374, 33))
    x[:120, 4] = np.nan                  # listed late
    x[200:215, 7] = np.nan               # a gap
    x[50, 9], x[51, 9] = np.inf, -np.inf
    x[100:160, 11] = 3.25                # flat: std 0 -> NaN
    x[:, 12] = 1e12 + rng.normal(size=374)
    x[180:, 13] += 1e8                   # a step
    _same(rolling_zscore(x, window, mp), _zscore_ref(x, window, mp))
    _same(rolling_mean(x, window, mp), _mean_ref(x, window, mp))
    _same(rolling_zscore(x[:, 4], window, mp), _zscore_ref(x[:, 4], window, mp))
    assert np.isnan(rolling_zscore(x, window, mp)[120:160, 11][window:]).all()
