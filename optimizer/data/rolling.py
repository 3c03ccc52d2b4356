"""Rolling statistics over (date x symbol) matrices, shared by daily_metrics, features and the scanner.

Built on pandas' rolling windows (numerically stable online algorithms in C), never hand-rolled cumsums.
Each value uses only rows up to and including its own date, so truncating the input at t leaves every value
up to t unchanged (tested).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.errors import check_param

__all__ = ["rolling_zscore", "rolling_mean", "min_periods_label", "STD_EPS"]

STD_EPS = 1e-12


def min_periods_label(min_periods: int | None) -> str:
    """The z-scores' ``min_periods`` as a person reads it: the number, or ``= the z-window`` (None, the default)."""
    return "= the z-window" if min_periods is None else str(min_periods)


def _check(window: int, min_periods: int | None) -> int:
    check_param(isinstance(window, (int, np.integer)) and window >= 2, "window", ">= 2", window)
    mp = int(window) if min_periods is None else int(min_periods)
    check_param(1 <= mp <= window, "min_periods", f"in [1, window={window}]", min_periods)
    return mp


def rolling_zscore(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """z[t] = (x[t] - mean(window)) / std_pop(window) per column; see docs/ENGINE.md.

    NaN where x[t] is NaN, where fewer than ``min_periods`` (default ``window``) finite values are in the window,
    or where the window's std is (numerically) zero.
    """
    mp = _check(window, min_periods)
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


def rolling_mean(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing mean per column (NaN ignored, ``min_periods`` finite values required)."""
    mp = _check(window, min_periods)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    out = pd.DataFrame(arr[:, None] if one_d else arr).rolling(int(window), min_periods=mp).mean().to_numpy()
    return out[:, 0] if one_d else out
