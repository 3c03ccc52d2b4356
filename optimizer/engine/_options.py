"""Options context for liquid names: put/call ratio, IV percentile, abnormal-activity z-scores and a capped boost.

Inputs are (T, N) option-volume matrices from options_premium_daily (NaN = no row). Every value at t uses rows
<= t. Names that are not liquid at t get NaN features and boost 1.0. Definitions: docs/CONTEXT.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from optimizer.errors import check_param

__all__ = [
    "LIQUID_MIN_AVG_VOLUME", "LIQUID_WINDOW", "LIQUID_MIN_PERIODS", "IV_WINDOW", "IV_MIN_PERIODS",
    "ACTIVITY_WINDOW", "ACTIVITY_MIN_PERIODS", "BOOST_Z", "BOOST_SLOPE", "BOOST_CAP", "OPTION_KEYS",
    "options_liquid", "put_call_ratio", "change", "iv_percentile", "activity_zscore", "options_boost",
    "options_context",
]

LIQUID_MIN_AVG_VOLUME = 10_000.0
LIQUID_WINDOW, LIQUID_MIN_PERIODS = 20, 15
IV_WINDOW, IV_MIN_PERIODS = 252, 60
ACTIVITY_WINDOW, ACTIVITY_MIN_PERIODS = 20, 15
BOOST_Z, BOOST_SLOPE, BOOST_CAP = 2.0, 0.1, 1.5
OPTION_KEYS: tuple[str, ...] = (
    "options_liquid", "options_put_call", "options_put_call_change_5", "options_iv_percentile",
    "options_itm_call_z", "options_otm_call_z", "options_itm_put_z", "options_otm_put_z", "options_boost",
)


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def options_liquid(call_volume, put_volume, threshold: float = LIQUID_MIN_AVG_VOLUME) -> np.ndarray:
    """bool: trailing mean of call + put volume over the last 20 rows (>= 15 finite) > ``threshold``."""
    total = _f(call_volume) + _f(put_volume)
    two_d = total.reshape(len(total), -1)
    avg = pd.DataFrame(two_d).rolling(LIQUID_WINDOW, min_periods=LIQUID_MIN_PERIODS).mean().to_numpy()
    return (avg > threshold).reshape(total.shape)


def put_call_ratio(call_volume, put_volume) -> np.ndarray:
    """put_volume / call_volume (NaN when call volume is 0 or missing)."""
    c, p = _f(call_volume), _f(put_volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, p / c, np.nan)


def change(x, lag: int = 5) -> np.ndarray:
    """x[t] - x[t - lag] (absolute change; NaN on the first ``lag`` rows)."""
    a = _f(x)
    out = np.full_like(a, np.nan)
    out[lag:] = a[lag:] - a[:-lag]
    return out


def iv_percentile(atm_iv, window: int = IV_WINDOW, min_periods: int = IV_MIN_PERIODS) -> np.ndarray:
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


def activity_zscore(volume, window: int = ACTIVITY_WINDOW, min_periods: int = ACTIVITY_MIN_PERIODS) -> np.ndarray:
    """(v[t] - mean) / std (population) of the PRIOR ``window`` rows t-window..t-1 (today excluded, so a spike
    does not inflate its own baseline); NaN when v[t] is NaN, fewer than ``min_periods`` finite priors or std == 0."""
    a = _f(volume)
    one = a.ndim == 1
    df = pd.DataFrame(a[:, None] if one else a)
    r = df.shift(1).rolling(window, min_periods=min_periods)
    mean, sd = r.mean().to_numpy(), r.std(ddof=0).to_numpy()
    v = df.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 1e-12, (v - mean) / sd, np.nan)
    return z[:, 0] if one else z


def options_boost(liquid, otm_call_z, otm_put_z, put_call_change) -> np.ndarray:
    """Quality boost in [1, 1.5]: bullish unusual call activity = liquid and OTM call z >= 2 and OTM put z < 2
    (NaN counts as < 2) and the put/call ratio fell over 5 sessions (change < 0); then
    boost = min(1.5, 1 + 0.1 * otm_call_z), else 1.0."""
    cz, pz, dpc = _f(otm_call_z), _f(otm_put_z), _f(put_call_change)
    with np.errstate(invalid="ignore"):
        bullish = np.asarray(liquid, dtype=bool) & (cz >= BOOST_Z) & ~(pz >= BOOST_Z) & (dpc < 0)
    boost = np.ones(cz.shape)
    boost[bullish] = np.minimum(BOOST_CAP, 1.0 + BOOST_SLOPE * cz[bullish])
    return boost


def options_context(fields: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Every options feature (keys ``OPTION_KEYS``) from panel fields; missing option fields -> not liquid."""
    if "call_volume" not in fields or "put_volume" not in fields:
        out = {k: np.full(shape, np.nan) for k in OPTION_KEYS}
        out["options_liquid"] = np.zeros(shape, dtype=bool)
        out["options_boost"] = np.ones(shape)
        return out
    nan = np.full(shape, np.nan)
    liquid = options_liquid(fields["call_volume"], fields["put_volume"])
    pcr = put_call_ratio(fields["call_volume"], fields["put_volume"])
    out = {
        "options_liquid": liquid,
        "options_put_call": pcr,
        "options_put_call_change_5": change(pcr, 5),
        "options_iv_percentile": iv_percentile(fields["atm_iv"]) if "atm_iv" in fields else nan.copy(),
    }
    for side in ("itm_call", "otm_call", "itm_put", "otm_put"):
        v = fields.get(f"{side}_volume")
        out[f"options_{side}_z"] = activity_zscore(v) if v is not None else nan.copy()
    out["options_boost"] = options_boost(liquid, out["options_otm_call_z"], out["options_otm_put_z"],
                                         out["options_put_call_change_5"])
    for k in OPTION_KEYS:
        if k not in ("options_liquid", "options_boost"):
            out[k] = np.where(liquid, out[k], np.nan)
    return out
