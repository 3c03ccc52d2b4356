"""Per-symbol price indicators (trend, RSI, MACD, Bollinger, ATR, beta) and forward-return OUTCOMES.

Every feature function takes (T,) or (T, N) float64 arrays and returns arrays of the same shape; the value at
row t uses only rows <= t (recursive/trailing windows), so truncating the input at t leaves rows <= t unchanged.
``forward_returns`` and ``market_relative_forward_returns`` are the exception: they are OUTCOME labels of a signal
at the close of t (they read opens after t) and must never be used as features. Definitions: docs/CONTEXT.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

from optimizer.data.rolling import rolling_mean, rolling_std
from optimizer.errors import check_param

__all__ = [
    "TREND_UP", "TREND_SIDEWAYS", "TREND_DOWN", "TREND_LABELS", "SLOPE_LOOKBACK", "SLOPE_THRESHOLD",
    "sma", "sma_slope", "price_vs_sma_pct", "trend_class", "wilder_smooth", "rsi", "macd", "ema",
    "bollinger_position", "true_range", "atr", "atr_pct", "simple_returns", "ewma_beta", "rolling_beta",
    "blended_beta", "BLEND_WEIGHTS", "forward_returns", "market_relative_forward_returns",
]

TREND_UP, TREND_SIDEWAYS, TREND_DOWN = np.int8(1), np.int8(0), np.int8(-1)
TREND_LABELS: dict[int, str] = {1: "UP", 0: "SIDEWAYS", -1: "DOWN"}
SLOPE_LOOKBACK = 1  # the design's slope is day over day: (sma_20 - sma_20_prev) / sma_20_prev
SLOPE_THRESHOLD = 0.001
# Doc 004's blended beta: EWMA (halflife 20) 50 %, rolling 20-session 30 %, rolling 60-session 20 %.
BLEND_WEIGHTS: tuple[float, float, float] = (0.5, 0.3, 0.2)


def _as2d(x) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"expected a (T,) or (T, N) array, got shape {a.shape}")
    return (a[:, None], True) if a.ndim == 1 else (a, False)


def _back(a: np.ndarray, one_d: bool) -> np.ndarray:
    return a[:, 0] if one_d else a


def _window(name: str, n: int, lo: int = 1) -> None:
    check_param(isinstance(n, (int, np.integer)) and n >= lo, name, f"an integer >= {lo}", n)


def sma(close: ArrayLike, window: int = 20) -> np.ndarray:
    """Trailing simple mean of the last ``window`` rows; NaN unless all ``window`` values are finite."""
    _window("window", window)
    a, one = _as2d(close)
    if int(window) == 1:  # the mean of one row (pandas' kernel, as ever); wider windows: one kernel call for all columns
        return _back(pd.DataFrame(a).rolling(1, min_periods=1).mean().to_numpy(), one)
    return _back(rolling_mean(a, int(window), int(window)), one)


def sma_slope(sma_values: ArrayLike, lookback: int = SLOPE_LOOKBACK) -> np.ndarray:
    """Per-session relative slope: (sma[t] - sma[t-k]) / (k * sma[t-k]); NaN when either end is NaN or sma[t-k] <= 0.

    The default k = 1 is the design's day-over-day slope ``(sma_20 - sma_20_prev) / sma_20_prev``."""
    _window("lookback", lookback)
    a, one = _as2d(sma_values)
    out = np.full_like(a, np.nan)
    prev = a[:-lookback]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[lookback:] = np.where(prev > 0, (a[lookback:] - prev) / (lookback * prev), np.nan)
    return _back(out, one)


def price_vs_sma_pct(close: ArrayLike, sma_values: ArrayLike) -> np.ndarray:
    """close / sma - 1 (NaN when sma is NaN or <= 0)."""
    c = np.asarray(close, dtype=np.float64)
    s = np.asarray(sma_values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, c / s - 1.0, np.nan)


def trend_class(close: ArrayLike, sma_values: ArrayLike, slope: ArrayLike,
                threshold: float = SLOPE_THRESHOLD) -> np.ndarray:
    """int8: UP (1) when close > sma and slope > +threshold; DOWN (-1) when close < sma and slope < -threshold;
    SIDEWAYS (0) otherwise, including rows where any input is NaN (not enough history counts as neutral)."""
    c = np.asarray(close, dtype=np.float64)
    s = np.asarray(sma_values, dtype=np.float64)
    k = np.asarray(slope, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        up = (c > s) & (k > threshold)
        down = (c < s) & (k < -threshold)
    out = np.zeros(c.shape, dtype=np.int8)
    out[up] = TREND_UP
    out[down] = TREND_DOWN
    return out


def wilder_smooth(x: ArrayLike, n: int) -> np.ndarray:
    """Wilder's running average per column: seed = mean of the first ``n`` finite values (at the n-th one),
    then avg[t] = (avg[prev] * (n - 1) + x[t]) / n. Rows where x is NaN output NaN and leave the state as is."""
    _window("n", n)
    a, one = _as2d(x)
    T, N = a.shape
    out = np.full((T, N), np.nan)
    state = np.full(N, np.nan)
    count = np.zeros(N, dtype=np.int64)
    acc = np.zeros(N)
    for t in range(T):
        row = a[t]
        ok = np.isfinite(row)
        seeding = ok & (count < n)
        acc[seeding] += row[seeding]
        count[seeding] += 1
        just = seeding & (count == n)
        state[just] = acc[just] / n
        run = ok & ~seeding
        state[run] = (state[run] * (n - 1) + row[run]) / n
        emit = ok & (count >= n)
        out[t, emit] = state[emit]
    return _back(out, one)


def _prev_finite(a: np.ndarray) -> np.ndarray:
    """Row t holds the last finite value strictly before t (NaN when none)."""
    prev = np.full_like(a, np.nan)
    prev[1:] = pd.DataFrame(a[:-1]).ffill().to_numpy()
    return prev


def rsi(close: ArrayLike, n: int = 14) -> np.ndarray:
    """Wilder RSI: change = close[t] - last finite close before t; avg gain/loss by ``wilder_smooth``;
    RSI = 100 - 100 / (1 + gain/loss); 100 when loss == 0 < gain, 50 when both are 0."""
    a, one = _as2d(close)
    d = a - _prev_finite(a)
    gain = wilder_smooth(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), n)
    loss = wilder_smooth(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 - 100.0 / (1.0 + gain / loss)
    out = np.where((loss == 0) & (gain > 0), 100.0, out)
    out = np.where((loss == 0) & (gain == 0), 50.0, out)
    return _back(out, one)


def ema(x: ArrayLike, span: int) -> np.ndarray:
    """Recursive EMA, alpha = 2/(span+1), seeded with the first finite value (pandas ``ewm(adjust=False)``);
    NaN until ``span`` finite values have been seen."""
    _window("span", span)
    a, one = _as2d(x)
    return _back(pd.DataFrame(a).ewm(span=span, adjust=False, min_periods=span).mean().to_numpy(), one)


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray,
         np.ndarray]:
    """(line, signal, hist): line = EMA_fast - EMA_slow; signal = EMA_signal(line); hist = line - signal."""
    check_param(fast < slow, "fast", f"< slow={slow}", fast)
    line = ema(close, fast) - ema(close, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def bollinger_position(close: ArrayLike, window: int = 20, k: float = 2.0) -> np.ndarray:
    """(close - mid) / (k * std): mid = trailing mean, std = population std of the last ``window`` closes.
    -1 at the lower band, 0 at the mid, +1 at the upper band (%B = (pos + 1) / 2). NaN when std == 0."""
    _window("window", window, 2)
    a, one = _as2d(close)
    mid, sd = rolling_mean(a, int(window), int(window)), rolling_std(a, int(window), int(window), ddof=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(sd > 1e-12 * np.maximum(np.abs(mid), 1.0), (a - mid) / (k * sd), np.nan)
    return _back(out, one)


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> np.ndarray:
    """max(high - low, |high - prev close|, |low - prev close|); high - low when there is no previous close."""
    h, one = _as2d(high)
    lo, _ = _as2d(low)
    c, _ = _as2d(close)
    pc = np.full_like(c, np.nan)
    pc[1:] = c[:-1]
    hl = h - lo
    with np.errstate(invalid="ignore"):
        tr = np.fmax(hl, np.fmax(np.abs(h - pc), np.abs(lo - pc)))
    tr[~np.isfinite(hl)] = np.nan
    return _back(tr, one)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, n: int = 14) -> np.ndarray:
    """Wilder ATR: ``wilder_smooth(true_range, n)`` (seed = mean of the first n true ranges)."""
    return wilder_smooth(true_range(high, low, close), n)


def atr_pct(atr_values: ArrayLike, close: ArrayLike) -> np.ndarray:
    """ATR / close (NaN when close <= 0)."""
    c = np.asarray(close, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, np.asarray(atr_values, dtype=np.float64) / c, np.nan)


def simple_returns(close: ArrayLike) -> np.ndarray:
    """close[t] / close[t-1] - 1 (NaN on the first row and next to a missing close)."""
    a, one = _as2d(close)
    r = np.full_like(a, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r[1:] = a[1:] / a[:-1] - 1.0
    return _back(r, one)


def _moment_beta(returns, market_returns, mean) -> np.ndarray:
    """cov / var from ``mean``-smoothed moments of r, r_m, r*r_m, r_m^2 on the rows where both returns are finite
    (the moment estimator's bias factor is shared by cov and var and cancels)."""
    r, one = _as2d(returns)
    m = np.asarray(market_returns, dtype=np.float64)
    check_param(m.shape == (r.shape[0],), "market_returns", f"of shape ({r.shape[0]},)", m.shape)
    mm = np.broadcast_to(m[:, None], r.shape)
    ok = np.isfinite(r) & np.isfinite(mm)
    x = np.where(ok, r, np.nan)
    y = np.where(ok, mm, np.nan)
    ex, ey = mean(x), mean(y)
    cov = mean(x * y) - ex * ey
    var = mean(y * y) - ey * ey
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(var > 1e-14, cov / var, np.nan)
    return _back(beta, one)


def ewma_beta(returns: ArrayLike, market_returns: ArrayLike, halflife: float = 60.0,
              min_periods: int = 20) -> np.ndarray:
    """EWMA beta = ewm_cov(r, r_m) / ewm_var(r_m) per column, over the rows where both returns are finite.

    Moments use pandas ``ewm(halflife, adjust=True)`` means of r, r_m, r*r_m, r_m^2 on the pairwise-complete rows
    (so the bias factor is shared by cov and var and cancels). NaN before ``min_periods`` pairs or when var == 0.
    """
    check_param(halflife > 0, "halflife", "> 0", halflife)
    return _moment_beta(returns, market_returns,
                        lambda v: pd.DataFrame(v).ewm(halflife=halflife, min_periods=min_periods).mean().to_numpy())


def rolling_beta(returns: ArrayLike, market_returns: ArrayLike, window: int = 20,
                 min_periods: int | None = None) -> np.ndarray:
    """Rolling-window beta = cov(r, r_m) / var(r_m) over the last ``window`` rows, on the rows where both returns
    are finite; NaN with fewer than ``min_periods`` (default 3/4 of the window) such pairs or var == 0.
    Equals pandas ``r.rolling(w).cov(m) / m.rolling(w).var()`` on complete data (the ddof cancels)."""
    _window("window", window, 2)
    mp = max(2, (3 * int(window)) // 4) if min_periods is None else int(min_periods)
    check_param(2 <= mp <= window, "min_periods", f"in [2, window={window}]", min_periods)
    return _moment_beta(returns, market_returns,
                        lambda v: rolling_mean(v, int(window), mp))


def blended_beta(ewma: ArrayLike, rolling_20: ArrayLike, rolling_60: ArrayLike,
                 weights: tuple[float, float, float] = BLEND_WEIGHTS) -> np.ndarray:
    """Doc 004's blend: 0.5 * EWMA + 0.3 * rolling-20 + 0.2 * rolling-60; NaN unless all three are finite."""
    w = np.asarray(weights, dtype=np.float64)
    check_param(w.shape == (3,) and np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-12, "weights",
                "three non-negative weights summing to 1", weights)
    return (w[0] * np.asarray(ewma, dtype=np.float64) + w[1] * np.asarray(rolling_20, dtype=np.float64)
            + w[2] * np.asarray(rolling_60, dtype=np.float64))


def forward_returns(open_: ArrayLike, horizons: Sequence[int] = (5, 10, 20)) -> dict[int, np.ndarray]:
    """OUTCOME (reads the future): return of a signal at the close of t entered at open[t+1] and held h sessions,
    open[t+1+h] / open[t+1] - 1. NaN when t+1+h is past the end or an open is missing."""
    a, one = _as2d(open_)
    T = a.shape[0]
    out: dict[int, np.ndarray] = {}
    for h in horizons:
        _window("horizon", h)
        r = np.full_like(a, np.nan)
        if T > h + 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                r[: T - 1 - h] = a[1 + h:] / a[1: T - h] - 1.0
        out[int(h)] = _back(r, one)
    return out


def market_relative_forward_returns(
    open_: ArrayLike, spy_open: ArrayLike, beta: ArrayLike, horizons: Sequence[int] = (5, 10, 20)
) -> dict[int, np.ndarray]:
    """OUTCOME: beta-adjusted forward return r[t] - beta[t] * r_spy[t], both from ``forward_returns`` (same
    entry/exit opens), beta as known at the close of t. NaN where any part is NaN."""
    r = forward_returns(open_, horizons)
    rm = forward_returns(np.asarray(spy_open, dtype=np.float64), horizons)
    b = np.asarray(beta, dtype=np.float64)
    out = {}
    for h in r:
        m = rm[h] if r[h].ndim == 1 else rm[h][:, None]
        out[h] = r[h] - b * m
    return out
