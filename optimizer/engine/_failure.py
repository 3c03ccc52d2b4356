"""Failure modes of closed trades: OUTCOME labels computed after the trade from its own bars.

Labels (exactly one per trade): NONE (winner, net > 0), then for losers (net <= 0) the first that applies in the
precedence SECTOR_DRAG > GAP_DOWN > IMMEDIATE_REVERSAL > SLOW_BLEED > FALSE_SIGNAL; UNKNOWN for unusable input.
These read bars after the signal and are never features. Definitions: docs/CONTEXT.md.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from optimizer.engine.panel import Panel

__all__ = [
    "FAILURE_MODES", "GAP_DOWN_PCT", "REVERSAL_PCT", "BLEED_MAX_DAY_DROP", "BLEED_BELOW_SHARE", "BLEED_MIN_CLOSES",
    "SECTOR_MIN_DROP", "SECTOR_SHARE", "classify_failure_modes", "classify_trade",
]

FAILURE_MODES: tuple[str, ...] = (
    "NONE", "SECTOR_DRAG", "GAP_DOWN", "IMMEDIATE_REVERSAL", "SLOW_BLEED", "FALSE_SIGNAL", "UNKNOWN",
)
GAP_DOWN_PCT = 0.03          # open[k] < close[k-1] * (1 - 3%)
REVERSAL_PCT = 0.02          # a close of e or e+1 below entry * (1 - 2%)
BLEED_MAX_DAY_DROP = 0.03    # no day of the trade below -3%
BLEED_BELOW_SHARE = 0.60     # more than 60% of held closes below entry
BLEED_MIN_CLOSES = 3         # "slow" needs at least 3 held closes
SECTOR_MIN_DROP = 0.02       # parent ETF down more than 2% over the span
SECTOR_SHARE = 0.5           # ... and at least half of the trade's loss


def _etf_return(o: np.ndarray, c: np.ndarray, e: int, x: int) -> float:
    """Parent ETF over the trade's span: open[x]/open[e] - 1 (close[e]/open[e] - 1 for a same-bar exit)."""
    end = o[x] if x > e else c[e]
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(end / o[e] - 1.0) if o[e] > 0 else float("nan")


def classify_trade(
    o: np.ndarray, c: np.ndarray, e: int, x: int, entry: float, net: float,
    exit_price: float = float("nan"), etf_ret: float = float("nan"),
) -> str:
    """Label one trade on one symbol's open/close columns (see the module docstring for the precedence)."""
    T = len(c)
    if not (np.isfinite(net) and np.isfinite(entry) and entry > 0 and 0 <= e <= x < T):
        return "UNKNOWN"
    if net > 0:
        return "NONE"
    if np.isfinite(etf_ret) and etf_ret < -SECTOR_MIN_DROP and etf_ret <= SECTOR_SHARE * net:
        return "SECTOR_DRAG"
    ks = np.arange(e + 1, x + 1)
    with np.errstate(invalid="ignore"):
        if ks.size and np.any(o[ks] < c[ks - 1] * (1.0 - GAP_DOWN_PCT)):
            return "GAP_DOWN"
        first = c[e: min(e + 1, x) + 1]
        if np.any(first < entry * (1.0 - REVERSAL_PCT)):
            return "IMMEDIATE_REVERSAL"
    held = c[e:x]
    xp = exit_price if np.isfinite(exit_price) else o[x]
    path = np.concatenate([[entry], held, [xp]])
    path = path[np.isfinite(path)]
    days = path[1:] / path[:-1] - 1.0
    if (held.size >= BLEED_MIN_CLOSES and np.all(days >= -BLEED_MAX_DAY_DROP)
            and np.mean(held < entry) > BLEED_BELOW_SHARE):
        return "SLOW_BLEED"
    return "FALSE_SIGNAL"


def classify_failure_modes(sym_idx: ArrayLike, entry_idx: ArrayLike, exit_idx: ArrayLike, entry_price: ArrayLike,
                           net_ret: ArrayLike, panel: Panel, exit_price: ArrayLike | None = None) -> np.ndarray:
    """Object array of labels (``FAILURE_MODES``), one per trade.

    ``sym_idx``/``entry_idx``/``exit_idx`` index the panel's symbols/rows (e = entry bar, x = exit bar); the
    parent ETF is ``panel.sectors[s]`` when it is in the panel (else no SECTOR_DRAG). ``exit_price`` defaults to
    open[x]."""
    s_arr = np.asarray(sym_idx, dtype=np.int64)
    e_arr = np.asarray(entry_idx, dtype=np.int64)
    x_arr = np.asarray(exit_idx, dtype=np.int64)
    p_arr = np.asarray(entry_price, dtype=np.float64)
    n_arr = np.asarray(net_ret, dtype=np.float64)
    xp_arr = np.full(len(s_arr), np.nan) if exit_price is None else np.asarray(exit_price, dtype=np.float64)
    opens, closes = panel["open"], panel["close"]
    T = closes.shape[0]
    pos = {sym: i for i, sym in enumerate(panel.symbols)}
    out = np.empty(len(s_arr), dtype=object)
    for i, (s, e, x) in enumerate(zip(s_arr, e_arr, x_arr)):
        etf_ret = float("nan")
        j = pos.get(panel.sectors[s]) if 0 <= s < len(panel.symbols) else None
        if j is not None and 0 <= e <= x < T:
            etf_ret = _etf_return(opens[:, j], closes[:, j], int(e), int(x))
        if not 0 <= s < len(panel.symbols):
            out[i] = "UNKNOWN"
            continue
        out[i] = classify_trade(opens[:, s], closes[:, s], int(e), int(x), float(p_arr[i]), float(n_arr[i]),
                                float(xp_arr[i]), etf_ret)
    return out
