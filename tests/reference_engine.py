"""Plain reference implementation of docs/ENGINE.md: the test oracle of the fast engine.

Written for clarity, not speed: pandas per symbol for the score's z-scores (the score's element-wise formulas
run on one (T, N) frame per component), a plain python loop over days for the trades
and the metrics. It shares no code with ``optimizer.engine`` (apart from reading a ``Panel``'s arrays), so a
disagreement between the two points at a bug in one of them; docs/ENGINE.md decides which.

Public API
----------
- ``ref_zscore(series, window, min_periods=None) -> pd.Series``
- ``ref_display(data, variant, w_short, w_lit, w_price, z_window, intensity_lo=0.7, intensity_hi=1.3,
  min_periods=None) -> np.ndarray (T, N)`` where ``data`` is a ``Panel`` or a long DataFrame.
- ``RefExit(rule, hold_days=None, max_days=None, stop_loss=None, take_profit=None, time_stop=None,
  atr_stop=None, trail_stop=None)``,
  ``RefExit.from_name("fixed_10d" | "first_dist" | "2x_consec_dist" | "hybrid_30d" | "score_decay")``
- ``RefRisk(sizing="equal", risk_fraction=0.02, max_weight=0.25, kelly_fraction=0.5, kelly_window=50,
  regime_mult=None, dd_breaker=None, dd_cooloff=10, corr_cap=None, corr_window=60)`` (sizing and portfolio rules)
- ``ref_atr14(panel) -> np.ndarray (T, N)`` (Wilder ATR-14, a plain loop)
- ``ref_trades(panel, display, buy, sell, exit, costs, sig_start, sig_end, data_end) -> pd.DataFrame``
  (one position per symbol, symbol-major loop; ``buy`` / ``sell`` a number or a (T,) array of per-session values)
- ``ref_trades_capped(panel, display, buy, sell, exit, costs, sig_start, sig_end, data_end,
  max_positions=None, max_per_sector=None, risk=None, carried=()) -> pd.DataFrame`` (date-major loop across
  symbols, with the portfolio rules of ``risk``; the frame carries ``weight`` and ``mult`` columns; ``carried``:
  positions held by someone else that count against the caps)
- ``ref_weights(trades, panel, exit, costs, risk) -> (weight, mult)`` (sizing of trades after the fact)
- ``ref_count_signals(display, buy, sig_start, sig_end) -> int``
- ``ref_benchmark(open_col, h, cost, sig_start, sig_end, data_end) -> float``
- ``ref_portfolio_returns(trades, panel, cost, sig_start, data_end, absolute=False) -> np.ndarray`` (weights from
  the frame's ``weight`` / ``mult`` columns when present)
- ``ref_metrics(trades, panel, span, costs, total_signals, absolute=False) -> dict``

``costs`` is ``(commission_bps, slippage_bps)``; ``span`` is ``(sig_start, sig_end, data_end)``.
Exit reasons: ``"fixed"``, ``"max_days"``, ``"time_stop"``, ``"stop_loss"``, ``"take_profit"``, ``"open_at_end"``
and, for a close-based exit signal, the rule's signal name (``"first_dist"`` also for hybrid, ``"2x_consec_dist"``,
``"score_decay"``). When several exits fall due at the same open they all fill
at that open; the reason is the first of: signal, fixed / max_days, time_stop.

Conventions ENGINE.md leaves open, fixed here (the fast engine agrees): an open-at-end trade has
``exit_idx = data_end - 1`` and ``exit_price = close[data_end - 1]`` with returns computed as if sold there (costs
on both sides); ``win_loss`` is clipped to ``WIN_LOSS_CAP`` (also when the mean loss is 0); the portfolio Sharpe
uses the sample std (ddof 1); position caps count the slots held at open t+1 (positions with an exit due at that
open free theirs) and symbols without a sector are not sector-capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

__all__ = [
    "REF_EXIT_REASONS",
    "STD_ZERO",
    "WIN_LOSS_CAP",
    "RefExit",
    "RefRisk",
    "ref_atr14",
    "ref_weights",
    "ref_zscore",
    "ref_components",
    "ref_display",
    "ref_trades",
    "ref_trades_capped",
    "ref_count_signals",
    "ref_benchmark",
    "ref_portfolio_returns",
    "ref_metrics",
    "cost_per_side",
]

STD_ZERO = 1e-12
WIN_LOSS_CAP = 10.0
REF_EXIT_REASONS = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop", "stop_loss",
                    "take_profit", "open_at_end", "atr_stop", "trail_stop")
KELLY_MIN_TRADES = 10
TRADE_COLUMNS = [
    "symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price",
    "gross_ret", "net_ret", "exit_reason", "open_at_end", "score",
]


# ----------------------------------------------------------------------------------------------------------- score

def ref_zscore(series: pd.Series, window: int, min_periods: int | None = None) -> pd.Series:
    """(x - rolling mean) / rolling population std over the last ``window`` rows; NaN rules of ENGINE.md."""
    s = pd.Series(np.asarray(series, dtype=np.float64))
    mp = window if min_periods is None else min_periods
    roll = s.rolling(window, min_periods=mp)
    mean = roll.mean()
    std = roll.std(ddof=0)
    z = (s - mean) / std
    bad = s.isna() | std.isna() | (std.abs() < STD_ZERO)
    z[bad] = np.nan
    return z


def _long_to_columns(data) -> tuple[dict[str, pd.DataFrame], int, int]:
    """Field name -> DataFrame (rows = panel dates, columns = symbol positions), from a Panel or a long frame."""
    if isinstance(data, pd.DataFrame):
        d = data.copy()
        d["date"] = pd.to_datetime(d["date"]).dt.normalize()
        d["symbol"] = d["symbol"].astype(str)
        dates = sorted(d["date"].unique())
        symbols = sorted(d["symbol"].unique())
        out = {}
        for f in d.columns:
            if f in ("date", "symbol"):
                continue
            p = d.pivot(index="date", columns="symbol", values=f).reindex(index=dates, columns=symbols)
            out[f] = pd.DataFrame(p.to_numpy(dtype=np.float64, na_value=np.nan))
        if "return" not in out and "close" in out:
            c = out["close"]
            out["return"] = c / c.shift(1) - 1.0
        return out, len(dates), len(symbols)
    T, N = data.shape
    return {k: pd.DataFrame(np.asarray(v, dtype=np.float64)) for k, v in data.fields.items()}, T, N


def _col(fields: dict[str, pd.DataFrame], name: str, j: int, T: int) -> pd.Series:
    if name not in fields:
        return pd.Series(np.full(T, np.nan))
    return fields[name][j].reset_index(drop=True).astype(np.float64)


def ref_components(data, z_window: int, min_periods: int | None = None) -> list[dict[str, pd.Series]]:
    """Per symbol: every z-scored input of the score (A, B, D, vw_flow, lit, price, otc)."""
    fields, T, N = _long_to_columns(data)
    out = []
    for j in range(N):
        sb = _col(fields, "short_buy_volume", j, T)
        ss = _col(fields, "short_sell_volume", j, T)
        ratio = _col(fields, "short_buy_sell_ratio", j, T)
        lb = _col(fields, "lit_buy_volume", j, T)
        ls = _col(fields, "lit_sell_volume", j, T)
        tot = sb + ss
        imb = (sb - ss) / tot
        imb[tot == 0] = np.nan
        flow = sb + lb.fillna(0.0) - ss - ls.fillna(0.0)
        z = lambda x: ref_zscore(x, z_window, min_periods)  # noqa: E731
        out.append({
            "A": z(sb),
            "B": z(ratio),
            "D": z(imb * np.log1p(tot)),
            "vw_flow": z(flow),
            "lit": z(_col(fields, "lit_flow_imbalance", j, T)),
            "price": z(_col(fields, "return", j, T)),
            "otc": z(_col(fields, "otc_participation_rate", j, T)),
        })
    return out


def _short_z(comp: dict[str, pd.Series], variant: str) -> pd.Series:
    if variant in ("A", "B", "D", "vw_flow"):
        return comp[variant]
    if variant == "C":
        return 0.5 * comp["A"] + 0.5 * comp["B"]  # NaN + x -> NaN
    if variant == "blended":
        b, v = comp["B"], comp["vw_flow"]
        return (0.6 * b + 0.4 * v).where(v.notna(), b)
    raise ValueError(f"unknown variant {variant!r}")


def ref_display(
    data,
    variant: str,
    w_short: float,
    w_lit: float,
    w_price: float,
    z_window: int,
    intensity_lo: float = 0.7,
    intensity_hi: float = 1.3,
    min_periods: int | None = None,
    components: list[dict[str, pd.Series]] | None = None,
) -> np.ndarray:
    """Display score (0..100, NaN where short_z is NaN) per ENGINE.md, a (T, N) array.

    ``components`` (the output of ``ref_components`` for the same data/z_window) may be passed to skip the
    z-scores; tests cache it per z_window.
    """
    comps = components if components is not None else ref_components(data, z_window, min_periods)
    if not comps:
        return np.empty((0, 0))
    comp = _frames(comps)  # the same per-symbol formulas, each symbol a column of one (T, N) frame
    total = w_short + w_lit + w_price
    ws, wl, wp = w_short / total, w_lit / total, w_price / total
    sz = _short_z(comp, variant)
    lit = comp["lit"].fillna(0.0)
    price = comp["price"].fillna(0.0)
    raw = ws * np.tanh(0.5 * sz) + wl * np.tanh(0.5 * lit) + wp * np.tanh(0.3 * price)
    sig = 1.0 / (1.0 + np.exp(-comp["otc"]))
    sig = sig.fillna(0.5)
    intensity = intensity_lo + (intensity_hi - intensity_lo) * sig
    score = (raw * intensity).clip(-1.0, 1.0)
    disp = (score + 1.0) * 50.0
    disp[sz.isna()] = np.nan
    return disp.to_numpy(dtype=np.float64)


_FRAMES: dict[int, tuple[list, dict[str, pd.DataFrame]]] = {}


def _frames(comps: list[dict[str, pd.Series]]) -> dict[str, pd.DataFrame]:
    """``ref_components``' per-symbol series as one (T, N) frame per component (column j = symbol j), built once per
    components list (the element-wise formulas of ``ref_display`` then run on all symbols at once: same values,
    without a pandas call per symbol and configuration)."""
    hit = _FRAMES.get(id(comps))
    if hit is not None and hit[0] is comps:
        return hit[1]
    frames = {k: pd.DataFrame({j: c[k].to_numpy(dtype=np.float64) for j, c in enumerate(comps)}) for k in comps[0]}
    if len(_FRAMES) >= 16:
        _FRAMES.pop(next(iter(_FRAMES)))
    _FRAMES[id(comps)] = (comps, frames)
    return frames


# ---------------------------------------------------------------------------------------------------------- trades

@dataclass(frozen=True)
class RefExit:
    """Exit rule: ``fixed`` (hold_days N), ``first_dist``, ``2x_consec_dist``, ``score_decay``, ``hybrid``
    (max_days M), plus optional stop_loss / take_profit fractions, time_stop sessions, an ATR stop (k: entry − k ×
    ATR14 at the signal close) and a trailing stop (fraction below the highest of the entry price and the highs of
    the bars held before the current one)."""

    rule: str
    hold_days: int | None = None
    max_days: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_stop: int | None = None
    atr_stop: float | None = None
    trail_stop: float | None = None

    @classmethod
    def from_name(cls, name: str, **extra) -> "RefExit":
        if name.startswith("fixed_"):
            return cls("fixed", hold_days=int(name[6:].rstrip("d")), **extra)
        if name.startswith("hybrid_"):
            return cls("hybrid", max_days=int(name[7:].rstrip("d")), **extra)
        return cls(name, **extra)


@dataclass(frozen=True)
class RefRisk:
    """Sizing and portfolio rules (docs/ENGINE.md "Position sizing", "Portfolio rules"). ``regime_mult``: the (T,)
    regime multipliers to apply (None = no regime sizing)."""

    sizing: str = "equal"
    risk_fraction: float = 0.02
    max_weight: float = 0.25
    kelly_fraction: float = 0.5
    kelly_window: int = 50
    regime_mult: object = None
    dd_breaker: float | None = None
    dd_cooloff: int = 10
    corr_cap: float | None = None
    corr_window: int = 60


def cost_per_side(costs) -> float:
    commission_bps, slippage_bps = costs
    return (commission_bps + slippage_bps) / 1e4


_ATR: list[tuple[tuple[np.ndarray, ...], np.ndarray]] = []


def ref_atr14(panel) -> np.ndarray:
    """Wilder ATR-14 per symbol: true range = max(high − low, |high − previous close|, |low − previous close|)
    (high − low without a previous close; missing when high or low is); the first value is the mean of the first
    14 true ranges, then atr = (previous atr × 13 + tr) / 14; a row without a true range is missing and leaves
    the average as it was. The loop runs once per distinct (high, low, close): a later call on equal prices gets
    the same (read-only) array back."""
    key = tuple(np.array(panel[f], dtype=np.float64) for f in ("high", "low", "close"))
    for k, out in _ATR:
        if all(a.shape == b.shape and np.array_equal(a, b, equal_nan=True) for a, b in zip(k, key)):
            return out
    out = _ref_atr14(panel)
    out.setflags(write=False)
    _ATR[:] = [*_ATR[-7:], (key, out)]
    return out


def _ref_atr14(panel) -> np.ndarray:
    high, low, close = (np.asarray(panel[f], dtype=np.float64) for f in ("high", "low", "close"))
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for s in range(N):
        seen = []
        avg = None
        for t in range(T):
            h, lo = high[t, s], low[t, s]
            if not (math.isfinite(h) and math.isfinite(lo)):
                continue
            tr = h - lo
            pc = close[t - 1, s] if t > 0 else float("nan")
            if math.isfinite(pc):
                tr = max(tr, abs(h - pc), abs(lo - pc))
            if avg is None:
                seen.append(tr)
                if len(seen) == 14:
                    avg = sum(seen) / 14
                    out[t, s] = avg
            else:
                avg = (avg * 13 + tr) / 14
                out[t, s] = avg
    return out


class _Pos:
    """One open position of one symbol."""

    def __init__(self, symbol: int, signal_idx: int, entry_idx: int, entry_price: float, score: float,
                 atr_at_signal: float = float("nan"), weight: float = 1.0, mult: float = 1.0):
        self.symbol = symbol
        self.signal_idx = signal_idx
        self.e = entry_idx
        self.entry = entry_price
        self.score = score
        self.signal_exit_at: int | None = None  # open index of a pending close-signal exit
        self.peak = entry_price                 # highest of the entry price and the highs of the bars held so far
        self.atr = atr_at_signal
        self.weight = weight
        self.mult = mult


def _open_exit_reason(pos: _Pos, k: int, rule: RefExit) -> str | None:
    """Reason of an exit due at open[k], or due at an earlier open that was missing (step 1 of bar k), or None.
    Priority: signal, fixed/max_days, time_stop."""
    if pos.signal_exit_at is not None and pos.signal_exit_at <= k:
        return "first_dist" if rule.rule == "hybrid" else rule.rule
    if rule.rule == "fixed" and k >= pos.e + rule.hold_days:
        return "fixed"
    if rule.rule == "hybrid" and k >= pos.e + rule.max_days:
        return "max_days"
    if rule.time_stop is not None and k >= pos.e + rule.time_stop:
        return "time_stop"
    return None


def _open_exit_index(pos: _Pos, rule: RefExit) -> int | None:
    """Earliest open index at which an exit is already scheduled (known at the close before it)."""
    cands = []
    if pos.signal_exit_at is not None:
        cands.append(pos.signal_exit_at)
    if rule.rule == "fixed":
        cands.append(pos.e + rule.hold_days)
    if rule.rule == "hybrid":
        cands.append(pos.e + rule.max_days)
    if rule.time_stop is not None:
        cands.append(pos.e + rule.time_stop)
    return min(cands) if cands else None


def _close_signal(rule: RefExit, k: int, e: int, disp: np.ndarray, dist: np.ndarray) -> bool:
    """Close-based exit signal of the rule at the close of k (k >= e)."""
    if rule.rule in ("first_dist", "hybrid"):
        return bool(dist[k])
    if rule.rule == "2x_consec_dist":
        return k >= e + 1 and bool(dist[k]) and bool(dist[k - 1])
    if rule.rule == "score_decay":
        return k >= e + 2 and all(disp[i] < 50.0 for i in (k, k - 1, k - 2))  # NaN < 50 is False
    return False


def _trade_row(pos: _Pos, exit_idx: int, exit_price: float, reason: str, c: float, open_at_end: bool) -> dict:
    return {
        "symbol": pos.symbol,
        "signal_idx": pos.signal_idx,
        "entry_idx": pos.e,
        "exit_idx": exit_idx,
        "entry_price": pos.entry,
        "exit_price": exit_price,
        "gross_ret": exit_price / pos.entry - 1.0,
        "net_ret": exit_price * (1.0 - c) / (pos.entry * (1.0 + c)) - 1.0,
        "exit_reason": reason,
        "open_at_end": open_at_end,
        "score": pos.score,
        "weight": pos.weight,
        "mult": pos.mult,
    }


def _stops(pos: _Pos, rule: RefExit) -> list[tuple[float, str]]:
    """The position's active protective stops as (level, reason), in tie order."""
    out = []
    if rule.stop_loss is not None:
        out.append((pos.entry * (1.0 - rule.stop_loss), "stop_loss"))
    if rule.atr_stop is not None and math.isfinite(pos.atr):
        out.append((pos.entry - rule.atr_stop * pos.atr, "atr_stop"))
    if rule.trail_stop is not None:
        out.append((pos.peak * (1.0 - rule.trail_stop), "trail_stop"))
    return out


def _step_bar(pos: _Pos, k: int, s: int, P: dict[str, np.ndarray], disp, dist, rule: RefExit, c: float,
              data_end: int, sell=None) -> dict | None:
    """Run bar k of an open position (k >= e). Returns the trade row when it ends on this bar, else None."""
    o, h, lo, cl = P["open"][k, s], P["high"][k, s], P["low"][k, s], P["close"][k, s]
    # (1) exits due at the open of k; a fill due at a missing open moves to the next finite open (docs/ENGINE.md)
    if k > pos.e and math.isfinite(o):
        reason = _open_exit_reason(pos, k, rule)
        if reason is not None:
            return _trade_row(pos, k, o, reason, c, False)
    # (2) protective stops intraday: a falling price meets the highest level first (ties: the listed order)
    stops = _stops(pos, rule)
    if stops:
        level = max(lvl for lvl, _ in stops)
        reason = next(r for lvl, r in stops if lvl == level)
        if lo <= level:
            fill = level if k == pos.e else min(o, level)
            return _trade_row(pos, k, fill, reason, c, False)
    if rule.take_profit is not None:
        tp = pos.entry * (1.0 + rule.take_profit)
        if h >= tp:
            fill = tp if k == pos.e else max(o, tp)
            return _trade_row(pos, k, fill, "take_profit", c, False)
    # the trailing stop's peak takes this bar's high for the next bar
    if math.isfinite(h) and h > pos.peak:
        pos.peak = h
    # (3) close-based exit signal of k, filled at open[k+1]
    if pos.signal_exit_at is None and _close_signal(rule, k, pos.e, disp[:, s], dist[:, s]):
        pos.signal_exit_at = k + 1
    # nothing more can happen: the next bar does not exist
    if k == data_end - 1:
        return _trade_row(pos, k, cl, "open_at_end", c, True)
    return None


def _prices(panel) -> dict[str, np.ndarray]:
    return {f: np.asarray(panel[f], dtype=np.float64) for f in ("open", "high", "low", "close")}


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=TRADE_COLUMNS + ["weight", "mult"])
    if rows:
        df = df.sort_values(["symbol", "entry_idx"], kind="stable").reset_index(drop=True)
    return df.astype({"symbol": np.int64, "signal_idx": np.int64, "entry_idx": np.int64, "exit_idx": np.int64,
                      "open_at_end": bool}) if rows else df


def _check_span(sig_start: int, sig_end: int, data_end: int, T: int) -> None:
    if not (0 <= sig_start <= sig_end <= data_end <= T):
        raise ValueError(f"span must satisfy 0 <= sig_start <= sig_end <= data_end <= T={T}, "
                         f"got ({sig_start}, {sig_end}, {data_end})")


def _per_session(x, T: int) -> np.ndarray:
    """A threshold as a (T,) array: a number repeated, or the given per-session values."""
    a = np.asarray(x, dtype=np.float64)
    return np.full(T, float(a)) if a.ndim == 0 else a


def _signals(disp: np.ndarray, buy, sell) -> tuple[np.ndarray, np.ndarray]:
    T = disp.shape[0]
    b = _per_session(buy, T)[:, None]
    s = _per_session(sell, T)[:, None]
    acc = np.where(np.isnan(disp), False, disp >= b)
    dist = np.where(np.isnan(disp), False, disp <= s)
    return acc, dist


def ref_trades(panel, display, buy, sell, exit: RefExit, costs, sig_start: int, sig_end: int,
               data_end: int) -> pd.DataFrame:
    """Trades of every symbol, one position per symbol, a plain loop over days per symbol (no caps)."""
    P = _prices(panel)
    disp = np.asarray(display, dtype=np.float64)
    T, N = disp.shape
    _check_span(sig_start, sig_end, data_end, T)
    acc, dist = _signals(disp, buy, sell)
    atr14 = ref_atr14(panel) if exit.atr_stop is not None else None
    c = cost_per_side(costs)
    rows: list[dict] = []
    for s in range(N):
        pos: _Pos | None = None
        pending: tuple[int, int] | None = None  # (signal_idx, entry_idx)
        for k in range(sig_start, data_end):
            if pending is not None and pending[1] == k:
                sig = pending[0]
                pos = _Pos(s, sig, k, P["open"][k, s], disp[sig, s],
                           atr14[sig, s] if atr14 is not None else float("nan"))
                pending = None
            if pos is not None:
                row = _step_bar(pos, k, s, P, disp, dist, exit, c, data_end)
                if row is not None:
                    rows.append(row)
                    pos = None
                    if row["open_at_end"]:
                        continue
            # flat at the close of k: an accumulation signal enters at open[k+1]
            if pos is None and sig_start <= k < sig_end and acc[k, s]:
                if k + 1 < data_end and np.isfinite(P["open"][k + 1, s]):
                    pending = (k, k + 1)
    return _frame(rows)


# ------------------------------------------------------------------------------------------------------- sizing

def _static_weight(risk: RefRisk, exit: RefExit, s: int, t: int, close: np.ndarray, atr14) -> float:
    """Weight that needs no trade history: equal 1; atr 1 / ATR% (the day's cross-sectional median ATR% when the
    symbol has none; 1 when nobody has one); fixed_fractional risk_fraction / tightest stop distance, capped."""
    if risk.sizing == "equal":
        return 1.0
    if risk.sizing == "atr":
        a = atr14[t, s] / close[t, s]
        if math.isfinite(a) and a > 0:
            return 1.0 / a
        day = [atr14[t, j] / close[t, j] for j in range(close.shape[1])]
        day = [v for v in day if math.isfinite(v) and v > 0]
        if day:
            return 1.0 / float(np.median(day))
        return 1.0
    dists = [1.0]
    if exit.stop_loss is not None:
        dists.append(exit.stop_loss)
    if exit.trail_stop is not None:
        dists.append(exit.trail_stop)
    if exit.atr_stop is not None:
        x = exit.atr_stop * atr14[t, s] / close[t, s]
        if math.isfinite(x) and x > 0:
            dists.append(x)
    return min(risk.max_weight, risk.risk_fraction / min(dists))


def _kelly_weight(risk: RefRisk, history: list[float], fallback: float) -> float:
    """Fractional Kelly from the last kelly_window closed trades' net returns (oldest first in ``history``)."""
    last = history[-risk.kelly_window:]
    if len(last) < KELLY_MIN_TRADES:
        return fallback
    wins = [r for r in last if r > 0]
    losses = [r for r in last if r <= 0]
    p = len(wins) / len(last)
    if not wins:
        f = 0.0
    elif not losses or sum(losses) == 0:
        f = p
    else:
        b = (sum(wins) / len(wins)) / abs(sum(losses) / len(losses))
        f = p - (1 - p) / b
    return min(risk.max_weight, max(0.0, risk.kelly_fraction * f))


def _weight(risk: RefRisk, exit: RefExit, s: int, t: int, close, atr14, history: list[float]) -> tuple[float, float]:
    if risk.sizing == "kelly":
        w = _kelly_weight(risk, history, _static_weight(replace(risk, sizing="fixed_fractional"), exit, s, t, close, atr14))
    else:
        w = _static_weight(risk, exit, s, t, close, atr14)
    m = 1.0 if risk.regime_mult is None else float(np.asarray(risk.regime_mult)[t])
    return w, m


def ref_weights(trades: pd.DataFrame, panel, exit: RefExit, costs, risk: RefRisk) -> tuple[np.ndarray, np.ndarray]:
    """(weight, mult) per trade row, from each trade's signal close: Kelly reads the trades closed at or before the
    signal session (exit_idx <= signal_idx), oldest first by (exit session, symbol)."""
    close = np.asarray(panel["close"], dtype=np.float64)
    atr14 = ref_atr14(panel)
    closed = trades[~trades["open_at_end"].astype(bool)].sort_values(["exit_idx", "symbol"], kind="stable")
    w, m = [], []
    for tr in trades.itertuples(index=False):
        hist = [float(r) for r, x in zip(closed["net_ret"], closed["exit_idx"]) if x <= tr.signal_idx]
        a, b = _weight(risk, exit, int(tr.symbol), int(tr.signal_idx), close, atr14, hist)
        w.append(a)
        m.append(b)
    return np.array(w, dtype=np.float64), np.array(m, dtype=np.float64)


def _corr(close: np.ndarray, a: int, b: int, t: int, window: int) -> float:
    """Correlation of the two symbols' close-to-close returns over the ``window`` returns ending at t (pairs where
    both exist); NaN with fewer than max(3, window // 2) pairs or a constant series."""
    xs, ys = [], []
    for k in range(max(1, t - window + 1), t + 1):
        x = close[k, a] / close[k - 1, a] - 1.0
        y = close[k, b] / close[k - 1, b] - 1.0
        if math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    if len(xs) < max(3, window // 2):
        return float("nan")
    x, y = np.array(xs), np.array(ys)
    if x.std() <= 1e-12 or y.std() <= 1e-12:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def ref_trades_capped(panel, display, buy, sell, exit: RefExit, costs, sig_start: int, sig_end: int,
                      data_end: int, max_positions: int | None = None,
                      max_per_sector: int | None = None, risk: RefRisk | None = None,
                      carried=()) -> pd.DataFrame:
    """Trades with position caps and portfolio rules: a date-major loop across symbols.

    At the close of t the flat symbols with an accumulation signal compete for the slots free at open t+1
    (positions held at the close of t minus those with an exit due at open t+1); the highest display at t
    wins, ties to the lower symbol index. Symbols whose sector is None are not sector-capped. With ``risk``: a
    candidate too correlated with a position held through open t+1 (or accepted before it at this close) is
    refused (corr_cap); no candidate enters while the drawdown breaker is tripped (equity more than dd_breaker
    below its peak at the close of t; dd_cooloff sessions later the peak restarts at the equity of that close);
    every position gets its sizing weight at its signal close.

    ``carried``: positions someone else holds, ``(symbol, entry_idx, exit_idx, exit_reason)`` (a reason of
    ``REF_EXIT_REASONS``): each is in the list of positions held through open k+1 (the caps, its sector, the
    correlation cap) when it has entered by that open and has not left before it. A position that exits AT an
    open (a close signal, fixed, max_days, time_stop) has left before the open of its exit row; one that exits
    during its exit bar (a stop, the target) still holds it at that open; an open-at-end one leaves at that row's
    close. Carried positions are never traded or reported; the caller keeps their symbols out of the candidates.
    """
    risk = risk or RefRisk()
    at_open = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop")
    for cs, ce, cx, cr in carried:
        assert cr in REF_EXIT_REASONS, cr
    P = _prices(panel)
    close = P["close"]
    disp = np.asarray(display, dtype=np.float64)
    T, N = disp.shape
    _check_span(sig_start, sig_end, data_end, T)
    acc, dist = _signals(disp, buy, sell)
    atr14 = ref_atr14(panel)
    c = cost_per_side(costs)
    absolute = risk.sizing in ("fixed_fractional", "kelly")
    sectors = list(panel.sectors) if len(panel.sectors) == N else [None] * N
    rows: list[dict] = []
    history: list[float] = []  # net returns of the closed trades, in closing order
    pos: list[_Pos | None] = [None] * N
    pending: list[tuple[int, int, float, float] | None] = [None] * N
    marks = [float("nan")] * N
    equity, peak, blocked_until = 1.0, 1.0, None
    for k in range(sig_start, data_end):
        day: list[tuple[float, float, float]] = []  # (exposure w*m, denominator weight, return) of the day
        for s in range(N):
            if pending[s] is not None and pending[s][1] == k:
                sig, _, w, m = pending[s]
                pos[s] = _Pos(s, sig, k, P["open"][k, s], disp[sig, s], atr14[sig, s], w, m)
                marks[s] = P["open"][k, s] * (1 + c)  # the position's mark: its entry cost, then its last close
                pending[s] = None
            if pos[s] is not None:
                p = pos[s]
                row = _step_bar(p, k, s, P, disp, dist, exit, c, data_end)
                if row is not None and row["open_at_end"]:
                    row = None  # still held through the last close: reported below like any open position
                if row is not None:
                    rows.append(row)
                    history.append(row["net_ret"])
                    pos[s] = None
                    r = row["exit_price"] * (1 - c) / marks[s] - 1.0
                elif math.isfinite(close[k, s]):
                    r = close[k, s] / marks[s] - 1.0
                    marks[s] = close[k, s]
                else:
                    r = 0.0  # no bar: held at its last mark (ref_portfolio_returns)
                day.append((p.weight * p.mult, p.weight * p.mult if absolute else p.weight, r))
        if risk.dd_breaker is not None:
            den = sum(d for _, d, _ in day)
            if den > 0:
                num = sum(a * r for a, _, r in day)
                equity *= 1.0 + (num / max(1.0, den) if absolute else num / den)
            if blocked_until is not None and k >= blocked_until:
                peak, blocked_until = equity, None
            peak = max(peak, equity)
            if blocked_until is None and equity < peak * (1.0 - risk.dd_breaker):
                blocked_until = k + risk.dd_cooloff
        if not (sig_start <= k < sig_end) or k + 1 >= data_end:
            continue
        if blocked_until is not None:
            continue
        cands = [s for s in range(N)
                 if pos[s] is None and acc[k, s] and np.isfinite(P["open"][k + 1, s])]

        def frees(s: int) -> bool:  # an exit due at the next open (that open exists) frees the slot
            due = _open_exit_index(pos[s], exit)
            return due is not None and due <= k + 1 and bool(np.isfinite(P["open"][k + 1, s]))

        held = [s for s in range(N) if pos[s] is not None and not frees(s)]
        for cs, ce, cx, cr in carried:
            left = cx < k + 1 or (cx == k + 1 and cr in at_open)
            if ce <= k + 1 and not left:
                held.append(int(cs))
        n_held = len(held)
        per_sector: dict[str, int] = {}
        for s in held:
            if sectors[s] is not None:
                per_sector[sectors[s]] = per_sector.get(sectors[s], 0) + 1
        for s in sorted(cands, key=lambda s: (-disp[k, s], s)):
            if max_positions is not None and n_held >= max_positions:
                break
            sec = sectors[s]
            if max_per_sector is not None and sec is not None and per_sector.get(sec, 0) >= max_per_sector:
                continue
            if risk.corr_cap is not None and any(_corr(close, s, q, k, risk.corr_window) > risk.corr_cap for q in held):
                continue
            w, m = _weight(risk, exit, s, k, close, atr14, history)
            pending[s] = (k, k + 1, w, m)
            held.append(s)
            n_held += 1
            if sec is not None:
                per_sector[sec] = per_sector.get(sec, 0) + 1
    for s in range(N):
        if pos[s] is not None:
            rows.append(_trade_row(pos[s], data_end - 1, close[data_end - 1, s], "open_at_end", c, True))
    return _frame(rows)


# --------------------------------------------------------------------------------------------------------- metrics

def ref_count_signals(display, buy, sig_start: int, sig_end: int) -> int:
    """Accumulation days (display >= buy, NaN excluded) over every symbol in [sig_start, sig_end); ``buy`` a number
    or per-session thresholds."""
    disp = np.asarray(display, dtype=np.float64)
    b = _per_session(buy, disp.shape[0])
    n = 0
    for t in range(sig_start, sig_end):
        for v in disp[t]:
            if not math.isnan(v) and v >= b[t]:
                n += 1
    return n


def ref_benchmark(open_col: np.ndarray, h: int, c: float, sig_start: int, sig_end: int, data_end: int) -> float:
    """mean over entry sessions e in [sig_start+1, sig_end] of open[e+h]/open[e], minus 1 (gross: a passive
    holder pays no per-trade costs; ``c`` is accepted for signature stability and unused)."""
    opens = np.asarray(open_col, dtype=np.float64).tolist()  # python floats: the same values, read ~10x faster
    ratios = []
    for e in range(sig_start + 1, sig_end + 1):
        if e + h >= data_end:
            continue
        a, b = opens[e], opens[e + h]
        if math.isfinite(a) and math.isfinite(b):
            ratios.append(b / a)
    if not ratios:
        return 0.0
    return sum(ratios) / len(ratios) - 1.0


def ref_portfolio_returns(trades: pd.DataFrame, panel, c: float, sig_start: int, data_end: int,
                          absolute: bool = False) -> np.ndarray:
    """Daily portfolio returns over days [sig_start, data_end); cash days return 0. Without ``weight`` / ``mult``
    columns every position weighs 1 (equal weights). Relative sizing: day = sum(w·m·r) / sum(w); ``absolute``
    sizing (fixed_fractional, kelly): day = sum(w·m·r) / max(1, sum(w·m)). A position without a close that day
    (no bar) is held at its last known close (return 0) and the move is booked at its next close or exit fill."""
    close = np.asarray(panel["close"], dtype=np.float64).tolist()  # rows of python floats: the same values, read faster
    per_day: dict[int, list[tuple[float, float, float]]] = {d: [] for d in range(sig_start, data_end)}
    has_w = "weight" in trades.columns
    has_m = "mult" in trades.columns
    for tr in trades.itertuples(index=False):
        s, e, x = tr.symbol, tr.entry_idx, tr.exit_idx
        entry = tr.entry_price
        w = float(tr.weight) if has_w else 1.0
        m = float(tr.mult) if has_m else 1.0
        last = data_end - 1 if tr.open_at_end else x
        mark = entry * (1.0 + c)  # what the position is worth: its entry cost, then its last known close
        for d in range(e, last + 1):
            closing = (not tr.open_at_end) and d == x
            if closing:
                r = tr.exit_price * (1.0 - c) / mark - 1.0
            elif math.isfinite(close[d][s]):
                r = close[d][s] / mark - 1.0
                mark = close[d][s]
            else:
                r = 0.0  # no bar: held at its last mark
            if d >= sig_start:
                per_day[d].append((w * m, w * m if absolute else w, r))
    out = []
    for _, v in sorted(per_day.items()):
        den = sum(b for _, b, _ in v)
        num = sum(a * r for a, _, r in v)
        out.append(0.0 if den <= 0 else (num / max(1.0, den) if absolute else num / den))
    return np.array(out, dtype=np.float64)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def _median(xs) -> float:
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return 0.0
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _std(xs, ddof: int) -> float:
    xs = list(xs)
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - ddof))


def ref_metrics(trades: pd.DataFrame, panel, span, costs, total_signals: int,
                portfolio_ddof: int = 1, absolute: bool = False) -> dict:
    """Every run metric of ENGINE.md, by explicit loops. ``span`` = (sig_start, sig_end, data_end)."""
    sig_start, sig_end, data_end = span
    c = cost_per_side(costs)
    opens = np.asarray(panel["open"], dtype=np.float64)
    close = np.asarray(panel["close"], dtype=np.float64)
    closed = trades[~trades["open_at_end"].astype(bool)]
    nets = [float(v) for v in closed["net_ret"]]
    n = len(nets)
    wins = [r for r in nets if r > 0]
    losses = [r for r in nets if r <= 0]
    hit = len(wins) / n if n else 0.0
    avg = _mean(nets)
    # win_loss is bounded by WIN_LOSS_CAP: ENGINE.md names the no-loss value a cap; a finite ratio above it
    # (or a zero mean loss) is clipped to the same bound.
    if not wins:
        wl = 0.0
    elif not losses or _mean(losses) == 0.0:
        wl = WIN_LOSS_CAP
    else:
        wl = min(_mean(wins) / abs(_mean(losses)), WIN_LOSS_CAP)
    if n < 2:
        sharpe = 0.0
    else:
        sd = _std(nets, 1)
        sharpe = avg / sd if sd > 1e-10 * abs(avg) else 0.0  # std within rounding of a constant: none
    port = ref_portfolio_returns(trades, panel, c, sig_start, data_end, absolute)
    if len(port) > portfolio_ddof:
        psd = _std(port, portfolio_ddof)
        psharpe = _mean(port) / psd * math.sqrt(252.0) if psd > 1e-10 * abs(_mean(port)) else 0.0
    else:
        psharpe = 0.0
    equity, peak, mdd = 1.0, 1.0, 0.0
    for r in port:
        equity *= 1.0 + r
        peak = max(peak, equity)
        mdd = max(mdd, 1.0 - equity / peak)
    sessions = sig_end - sig_start
    spm = total_signals / (sessions / 21.0) if sessions > 0 else 0.0
    fp = 0
    benches, excess = [], []
    bench_memo: dict[tuple[int, int], float] = {}
    for tr in closed.itertuples(index=False):
        s, e, x = tr.symbol, tr.entry_idx, tr.exit_idx
        # false positive (ENGINE.md): the price reverses within 3 days = a close of e, e+1 or e+2 (never past
        # the exit bar x) below the entry price
        if any(close[min(e + j, x), s] < tr.entry_price for j in range(3)):
            fp += 1
        if (s, x - e) not in bench_memo:  # the same (symbol, hold) recurs: compute each once
            bench_memo[(s, x - e)] = ref_benchmark(opens[:, s], x - e, c, sig_start, sig_end, data_end)
        b = bench_memo[(s, x - e)]
        benches.append(b)
        excess.append(tr.net_ret - b)
    rank = hit * avg * wl / math.sqrt(spm) if spm > 0 else 0.0
    return {
        "total_signals": int(total_signals),
        "total_trades": int(len(trades)),
        "closed_trades": n,
        "open_at_end": int(len(trades) - n),
        "hit_rate": hit,
        "avg_return": avg,
        "median_return": _median(nets),
        "win_loss": wl,
        "sharpe": sharpe,
        "portfolio_sharpe": psharpe,
        "max_drawdown": mdd,
        "avg_hold_days": _mean(int(x) - int(e) for x, e in zip(closed["exit_idx"], closed["entry_idx"])),
        "signals_per_month": spm,
        "false_positive_rate": fp / n if n else 0.0,
        "rank_score": rank,
        "avg_excess_return": _mean(excess),
        "avg_benchmark_return": _mean(benches),
    }
