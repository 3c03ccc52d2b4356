"""Rolling statistics over (date x symbol) matrices, shared by daily_metrics, features and the scanner.

Built on pandas' rolling windows (numerically stable online algorithms in C), never hand-rolled cumsums.
Each value uses only rows up to and including its own date, so truncating the input at t leaves every value
up to t unchanged (tested).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from pandas.api.indexers import BaseIndexer

from optimizer.errors import check_param

__all__ = ["rolling_zscore", "rolling_mean", "rolling_std", "rolling_max", "min_periods_label", "STD_EPS",
           "REL_STD_EPS", "no_dispersion"]

STD_EPS = 1e-12
REL_STD_EPS = 1e-10


def no_dispersion(std: ArrayLike, mean: ArrayLike) -> np.ndarray:
    """True where a standard deviation is zero up to rounding: ``std <= REL_STD_EPS × |mean|`` (1e-10).

    A constant float series' computed std is not exactly 0 (eleven returns of 0.01 give ~1.8e-18, a Sharpe
    ratio of ~5e15): the rounding of its mean is a few ulps of its value with pairwise sums, at most n ulps
    with a plain running sum (n = 20,000 values: 5e-13 of the mean). The rule is relative, so it holds in any
    unit and for ratios (Sharpe, t statistics) of any scale; an all-zero series (std = mean = 0) has none.
    Works element-wise on arrays and on scalars."""
    return np.asarray(std) <= REL_STD_EPS * np.abs(mean)


def min_periods_label(min_periods: int | None) -> str:
    """The z-scores' ``min_periods`` as a person reads it: the number, or ``= the z-window`` (None, the default)."""
    return "= the z-window" if min_periods is None else str(min_periods)


def _check(window: int, min_periods: int | None, least: int = 2) -> int:
    check_param(isinstance(window, (int, np.integer)) and window >= least, "window", f">= {least}", window)
    mp = int(window) if min_periods is None else int(min_periods)
    check_param(1 <= mp <= window, "min_periods", f"in [1, window={window}]", min_periods)
    return mp


class _ColumnWindows(BaseIndexer):
    """Trailing windows of ``window_size`` rows over columns of ``n_rows`` rows laid end to end (column-major): a
    window never reaches into the column before it, and each column's first row starts a new window (pandas'
    rolling kernels then restart their running sums there, as for a column rolled on its own)."""

    def get_window_bounds(self, num_values: int = 0, min_periods=None, center=None, closed=None, step=None):
        T = int(self.n_rows)
        offsets = np.arange(0, num_values, T, dtype=np.int64)[:, None]  # each column's first row
        within = np.arange(1, T + 1, dtype=np.int64)  # end of each row's window inside its column
        start = (offsets + np.maximum(within - int(self.window_size), 0)).reshape(-1)
        return start, (offsets + within).reshape(-1)


def _by_column(arr: np.ndarray, window: int, mp: int):
    """(flat values, rolling window object, (T, N)): the columns of ``arr`` end to end in ONE 1-D pandas rolling
    call. The same kernels on the same windows as ``DataFrame(arr).rolling(window)``, so the same bits, without
    its Python-level loop over the columns (a few hundred microseconds each: seconds at thousands of symbols)."""
    T, N = arr.shape
    flat = np.ascontiguousarray(arr.T).reshape(-1)
    roll = pd.Series(flat, copy=False).rolling(_ColumnWindows(window_size=int(window), n_rows=max(T, 1)),
                                                min_periods=mp)
    return flat, roll, (T, N)


def _columns_back(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The (T, N) matrix of a column-major flat array: a view, Fortran-ordered as pandas' 2-D results were."""
    T, N = shape
    return flat.reshape(N, T).T


def rolling_zscore(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """z[t] = (x[t] - mean(window)) / std_pop(window) per column; see docs/ENGINE.md.

    NaN where x[t] is NaN, where fewer than ``min_periods`` (default ``window``) finite values are in the window,
    or where the window's std is (numerically) zero.
    """
    mp = _check(window, min_periods)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    a, r, shape = _by_column(arr[:, None] if one_d else arr, window, mp)
    mean = r.mean().to_numpy()
    std = r.std(ddof=0).to_numpy()
    tiny = (std <= STD_EPS) | no_dispersion(std, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (a - mean) / std
    z[tiny | ~np.isfinite(a) | ~np.isfinite(std)] = np.nan
    return z if one_d else _columns_back(z, shape)


def rolling_mean(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing mean per column (NaN ignored, ``min_periods`` finite values required)."""
    mp = _check(window, min_periods)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    _, r, shape = _by_column(arr[:, None] if one_d else arr, window, mp)
    out = r.mean().to_numpy()
    return out if one_d else _columns_back(out, shape)


def rolling_std(x: np.ndarray, window: int, min_periods: int | None = None, ddof: int = 1) -> np.ndarray:
    """Trailing standard deviation per column (``ddof`` 0: population), NaN ignored, ``min_periods`` finite values
    required; pandas' ``rolling(window).std(ddof)`` of each column, in one kernel call."""
    mp = _check(window, min_periods, least=1)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    _, r, shape = _by_column(arr[:, None] if one_d else arr, window, mp)
    out = r.std(ddof=ddof).to_numpy()
    return out if one_d else _columns_back(out, shape)


def rolling_max(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing maximum per column over the last ``window`` rows, NaN ignored, ``min_periods`` finite values
    required; pandas' ``rolling(window).max()`` of each column, in one kernel call."""
    mp = _check(window, min_periods, least=1)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    _, r, shape = _by_column(arr[:, None] if one_d else arr, window, mp)
    out = r.max().to_numpy()
    return out if one_d else _columns_back(out, shape)
