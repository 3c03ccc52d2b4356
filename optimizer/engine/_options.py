"""Options context for liquid names: put/call and call/put ratios and their 5-day changes, ITM/OTM ratios, the
5-day premium change, the IV percentile over 30 sessions, abnormal-activity z-scores (T-0 and their maximum over the
T-0..T-5 lookback) and the design's capped quality boost.

Inputs are (T, N) option matrices from options_premium_daily (NaN = no row). Every value at t uses rows <= t. Names
that are not liquid at t get NaN features and boost 1.0. Definitions: docs/CONTEXT.md section 4.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

from optimizer.data.rolling import rolling_max, rolling_mean, rolling_std
from optimizer.errors import check_param

__all__ = [
    "LIQUID_MIN_AVG_VOLUME", "LIQUID_WINDOW", "LIQUID_MIN_PERIODS", "IV_WINDOW", "IV_MIN_PERIODS",
    "ACTIVITY_WINDOW", "ACTIVITY_MIN_PERIODS", "LOOKBACK", "CHANGE_LAG", "BOOST_CAP", "BOOST_RULES", "SQUEEZE_SCORE",
    "OPTION_KEYS", "SIDES",
    "options_liquid", "put_call_ratio", "ratio", "change", "pct_change", "iv_percentile", "activity_zscore",
    "lookback_max", "options_boost", "squeeze_boost", "options_context", "boosted_display",
]

LIQUID_MIN_AVG_VOLUME = 10_000.0
LIQUID_WINDOW, LIQUID_MIN_PERIODS = 20, 15
IV_WINDOW, IV_MIN_PERIODS = 30, 20       # the design's iv_percentile_30d: 30 sessions
ACTIVITY_WINDOW, ACTIVITY_MIN_PERIODS = 20, 15
LOOKBACK = 5                             # T-0 plus the 5 sessions before the signal (T-1..T-5)
CHANGE_LAG = 5                           # the design's 5-day changes
BOOST_CAP = 1.5
# The design's options_activity_boost, term by term: (name, added boost). Each is documented in docs/CONTEXT.md.
BOOST_RULES: tuple[tuple[str, float], ...] = (
    ("itm_call_spike", 0.15),    # max ITM call z over T-0..T-5 > 2.0
    ("otm_call_sentiment", 0.10),  # max OTM call z over T-0..T-5 > 1.5 and call/put ratio 5d change (T-0) > 0
    ("premium_growth", 0.10),    # total premium 5-day change (T-0) > +20%
    ("squeeze", 0.15),           # max OTM put z over T-0..T-5 > 2.0 and score >= 75 (score-dependent)
)
SQUEEZE_SCORE = 75.0
SIDES: tuple[str, ...] = ("itm_call", "otm_call", "itm_put", "otm_put")
OPTION_KEYS: tuple[str, ...] = (
    "options_liquid", "options_put_call", "options_put_call_change_5", "options_call_put_change_5",
    "options_iv_percentile", "options_itm_otm_call_ratio", "options_itm_otm_put_ratio", "options_total_premium_5d_chg",
    *(f"options_{s}_z" for s in SIDES), *(f"options_{s}_z_max5" for s in SIDES), "options_boost_base",
)


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def options_liquid(call_volume: ArrayLike, put_volume: ArrayLike,
                   threshold: float = LIQUID_MIN_AVG_VOLUME) -> np.ndarray:
    """bool: trailing mean of call + put volume over the last 20 rows (>= 15 finite) > ``threshold``."""
    total = _f(call_volume) + _f(put_volume)
    two_d = total.reshape(len(total), -1)
    avg = rolling_mean(two_d, LIQUID_WINDOW, LIQUID_MIN_PERIODS)
    return (avg > threshold).reshape(total.shape)


def put_call_ratio(call_volume: ArrayLike, put_volume: ArrayLike) -> np.ndarray:
    """put_volume / call_volume (NaN when call volume is 0 or missing)."""
    c, p = _f(call_volume), _f(put_volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, p / c, np.nan)


def ratio(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """num / den (NaN when den is 0 or missing): call/put, ITM/OTM call and ITM/OTM put ratios."""
    n, d = _f(num), _f(den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, n / d, np.nan)


def pct_change(x: ArrayLike, lag: int = CHANGE_LAG) -> np.ndarray:
    """x[t] / x[t - lag] - 1 (relative change; NaN on the first ``lag`` rows or when x[t - lag] <= 0)."""
    a = _f(x)
    out = np.full_like(a, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[lag:] = np.where(a[:-lag] > 0, a[lag:] / a[:-lag] - 1.0, np.nan)
    return out


def change(x: ArrayLike, lag: int = 5) -> np.ndarray:
    """x[t] - x[t - lag] (absolute change; NaN on the first ``lag`` rows)."""
    a = _f(x)
    out = np.full_like(a, np.nan)
    out[lag:] = a[lag:] - a[:-lag]
    return out


def iv_percentile(atm_iv: ArrayLike, window: int = IV_WINDOW, min_periods: int = IV_MIN_PERIODS) -> np.ndarray:
    """100 * #(finite IVs in rows [t-window+1, t] strictly below iv[t]) / (n - 1), n = finite IVs in the window
    (including t); NaN when iv[t] is NaN or n < ``min_periods``. 0 = lowest of the window, 100 = highest."""
    check_param(2 <= min_periods <= window, "min_periods", f"in [2, window={window}]", min_periods)
    a = _f(atm_iv)
    one = a.ndim == 1
    a2 = a[:, None] if one else a
    T = a2.shape[0]
    out = np.full(a2.shape, np.nan)
    for t in range(T):
        w = a2[max(0, t - window + 1): t + 1]
        x = a2[t]
        n = np.isfinite(w).sum(axis=0)
        below = (w < x).sum(axis=0)
        ok = np.isfinite(x) & (n >= min_periods)
        out[t, ok] = 100.0 * below[ok] / (n[ok] - 1)
    return out[:, 0] if one else out


def activity_zscore(volume: ArrayLike, window: int = ACTIVITY_WINDOW,
                    min_periods: int = ACTIVITY_MIN_PERIODS) -> np.ndarray:
    """(v[t] - mean) / std (population) of the PRIOR ``window`` rows t-window..t-1 (today excluded, so a spike
    does not inflate its own baseline); NaN when v[t] is NaN, fewer than ``min_periods`` finite priors or std == 0."""
    a = _f(volume)
    one = a.ndim == 1
    v = np.asfortranarray(a[:, None] if one else a)  # column-major, as the frame's values were
    prior = np.full_like(v, np.nan)  # row t holds v[t - 1]: the window of rows t-window..t-1
    prior[1:] = v[:-1]
    mean, sd = rolling_mean(prior, window, min_periods), rolling_std(prior, window, min_periods, ddof=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 1e-12, (v - mean) / sd, np.nan)
    return z[:, 0] if one else z


def lookback_max(x: ArrayLike, lookback: int = LOOKBACK) -> np.ndarray:
    """max of x over rows [t - lookback, t] per column, NaN ignored (NaN when all are NaN): the design's
    "T-0 plus T-1..T-5" window with lookback = 5."""
    a = _f(x)
    one = a.ndim == 1
    out = rolling_max(a[:, None] if one else a, int(lookback) + 1, 1)
    return out[:, 0] if one else out


def options_boost(liquid: ArrayLike, itm_call_z_max: ArrayLike, otm_call_z_max: ArrayLike,
                  call_put_change: ArrayLike, premium_change: ArrayLike) -> np.ndarray:
    """The score-independent part of the design's ``options_activity_boost`` (liquid names; else 1.0):
    1 + 0.15 [max ITM call z over T-0..T-5 > 2] + 0.10 [max OTM call z > 1.5 and call/put 5d change > 0]
    + 0.10 [total premium 5d change > 0.20]; capped at 1.5. NaN never satisfies a condition.
    ``squeeze_boost`` adds the score-dependent term at a signal."""
    ic, oc, dcp, dp = _f(itm_call_z_max), _f(otm_call_z_max), _f(call_put_change), _f(premium_change)
    w = dict(BOOST_RULES)
    with np.errstate(invalid="ignore"):
        b = (1.0 + w["itm_call_spike"] * (ic > 2.0) + w["otm_call_sentiment"] * ((oc > 1.5) & (dcp > 0))
             + w["premium_growth"] * (dp > 0.20))
    b = np.where(np.asarray(liquid, dtype=bool), b, 1.0)
    return np.minimum(b, BOOST_CAP)


def squeeze_boost(boost_base: ArrayLike, otm_put_z_max: ArrayLike, score: ArrayLike) -> np.ndarray:
    """Full boost at a signal: ``boost_base`` + 0.15 when max OTM put z over T-0..T-5 > 2 and score >= 75 (the
    design's contrarian squeeze setup), capped at 1.5. ``otm_put_z_max`` is NaN on non-liquid names."""
    b, pz, sc = _f(boost_base), _f(otm_put_z_max), _f(score)
    with np.errstate(invalid="ignore"):
        add = dict(BOOST_RULES)["squeeze"] * ((pz > 2.0) & (sc >= SQUEEZE_SCORE))
    return np.minimum(b + add, BOOST_CAP)


def boosted_display(display: ArrayLike, boost_base: ArrayLike, otm_put_z_max: ArrayLike, weight: float) -> np.ndarray:
    """The display score with the options boost as a score multiplier (the ``options_boost`` parameter, docs/
    CONTEXT.md section 4): min(100, display x (1 + weight x (boost - 1))), boost = ``squeeze_boost`` of the cell
    (the design's additive rule, its squeeze term read on this display), ``weight`` in [0, 1] (1 = the design's
    boost, 0 = none). Point-in-time: every input at t uses rows <= t. Non-liquid cells (boost 1.0) and NaN displays
    are unchanged, so a store without options gives the display exactly."""
    check_param(0.0 <= weight <= 1.0, "options_boost", "in [0, 1]", weight)
    d = _f(display)
    mult = 1.0 + float(weight) * (squeeze_boost(boost_base, otm_put_z_max, d) - 1.0)
    with np.errstate(invalid="ignore"):
        return np.minimum(d * mult, 100.0)


def options_context(fields: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Every options feature (keys ``OPTION_KEYS``) from panel fields; missing option fields -> not liquid."""
    if "call_volume" not in fields or "put_volume" not in fields:
        out = {k: np.full(shape, np.nan) for k in OPTION_KEYS}
        out["options_liquid"] = np.zeros(shape, dtype=bool)
        out["options_boost_base"] = np.ones(shape)
        return out
    nan = np.full(shape, np.nan)

    def fld(name: str) -> np.ndarray:
        v = fields.get(name)
        return nan.copy() if v is None else _f(v)

    call, put = fld("call_volume"), fld("put_volume")
    liquid = options_liquid(call, put)
    pcr = put_call_ratio(call, put)
    cpr = ratio(call, put)
    out = {
        "options_liquid": liquid,
        "options_put_call": pcr,
        "options_put_call_change_5": change(pcr, CHANGE_LAG),
        "options_call_put_change_5": change(cpr, CHANGE_LAG),
        "options_iv_percentile": iv_percentile(fld("atm_iv")),
        "options_itm_otm_call_ratio": ratio(fld("itm_call_volume"), fld("otm_call_volume")),
        "options_itm_otm_put_ratio": ratio(fld("itm_put_volume"), fld("otm_put_volume")),
        "options_total_premium_5d_chg": pct_change(fld("total_premium"), CHANGE_LAG),
    }
    for side in SIDES:
        v = fields.get(f"{side}_volume")
        z = activity_zscore(v) if v is not None else nan.copy()
        out[f"options_{side}_z"] = z
        out[f"options_{side}_z_max5"] = lookback_max(z)
    out["options_boost_base"] = options_boost(liquid, out["options_itm_call_z_max5"], out["options_otm_call_z_max5"],
                                              out["options_call_put_change_5"], out["options_total_premium_5d_chg"])
    for k in OPTION_KEYS:
        if k not in ("options_liquid", "options_boost_base"):
            out[k] = np.where(liquid, out[k], np.nan)
    return {k: out[k] for k in OPTION_KEYS}
