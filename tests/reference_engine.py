"""Plain reference implementation of docs/ENGINE.md: the test oracle of the fast engine.

Written for clarity, not speed: pandas per symbol for the score, a plain python loop over days for the trades
and the metrics. It shares no code with ``optimizer.engine`` (apart from reading a ``Panel``'s arrays), so a
disagreement between the two points at a bug in one of them; docs/ENGINE.md decides which.

Public API
----------
- ``ref_zscore(series, window, min_periods=None) -> pd.Series``
- ``ref_display(data, variant, w_short, w_lit, w_price, z_window, intensity_lo=0.7, intensity_hi=1.3,
  min_periods=None) -> np.ndarray (T, N)`` where ``data`` is a ``Panel`` or a long DataFrame.
- ``RefExit(rule, hold_days=None, max_days=None, stop_loss=None, take_profit=None, time_stop=None)``,
  ``RefExit.from_name("fixed_10d" | "first_dist" | "2x_consec_dist" | "hybrid_30d" | "score_decay")``
- ``ref_trades(panel, display, buy, sell, exit, costs, sig_start, sig_end, data_end) -> pd.DataFrame``
  (one position per symbol, symbol-major loop)
- ``ref_trades_capped(panel, display, buy, sell, exit, costs, sig_start, sig_end, data_end,
  max_positions=None, max_per_sector=None) -> pd.DataFrame`` (date-major loop across symbols)
- ``ref_count_signals(display, buy, sig_start, sig_end) -> int``
- ``ref_benchmark(open_col, h, cost, sig_start, sig_end, data_end) -> float``
- ``ref_portfolio_returns(trades, panel, cost, sig_start, data_end) -> np.ndarray``
- ``ref_metrics(trades, panel, span, costs, total_signals) -> dict``

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
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "REF_EXIT_REASONS",
    "STD_ZERO",
    "WIN_LOSS_CAP",
    "RefExit",
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
                    "take_profit", "open_at_end")
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
    total = w_short + w_lit + w_price
    ws, wl, wp = w_short / total, w_lit / total, w_price / total
    cols = []
    for comp in comps:
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
        cols.append(disp.to_numpy(dtype=np.float64))
    return np.column_stack(cols) if cols else np.empty((0, 0))


# ---------------------------------------------------------------------------------------------------------- trades

@dataclass(frozen=True)
class RefExit:
    """Exit rule: ``fixed`` (hold_days N), ``first_dist``, ``2x_consec_dist``, ``score_decay``, ``hybrid``
    (max_days M), plus optional stop_loss / take_profit fractions and time_stop sessions."""

    rule: str
    hold_days: int | None = None
    max_days: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    time_stop: int | None = None

    @classmethod
    def from_name(cls, name: str, **extra) -> "RefExit":
        if name.startswith("fixed_"):
            return cls("fixed", hold_days=int(name[6:].rstrip("d")), **extra)
        if name.startswith("hybrid_"):
            return cls("hybrid", max_days=int(name[7:].rstrip("d")), **extra)
        return cls(name, **extra)


def cost_per_side(costs) -> float:
    commission_bps, slippage_bps = costs
    return (commission_bps + slippage_bps) / 1e4


class _Pos:
    """One open position of one symbol."""

    def __init__(self, symbol: int, signal_idx: int, entry_idx: int, entry_price: float, score: float):
        self.symbol = symbol
        self.signal_idx = signal_idx
        self.e = entry_idx
        self.entry = entry_price
        self.score = score
        self.signal_exit_at: int | None = None  # open index of a pending close-signal exit


def _open_exit_reason(pos: _Pos, k: int, rule: RefExit) -> str | None:
    """Reason of an exit due at open[k] (step 1 of bar k), or None. Priority: signal, fixed/max_days, time_stop."""
    if pos.signal_exit_at == k:
        return "first_dist" if rule.rule == "hybrid" else rule.rule
    if rule.rule == "fixed" and k == pos.e + rule.hold_days:
        return "fixed"
    if rule.rule == "hybrid" and k == pos.e + rule.max_days:
        return "max_days"
    if rule.time_stop is not None and k == pos.e + rule.time_stop:
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
    }


def _step_bar(pos: _Pos, k: int, s: int, P: dict[str, np.ndarray], disp, dist, rule: RefExit, c: float,
              data_end: int) -> dict | None:
    """Run bar k of an open position (k >= e). Returns the trade row when it ends on this bar, else None."""
    o, h, lo, cl = P["open"][k, s], P["high"][k, s], P["low"][k, s], P["close"][k, s]
    # (1) exits due at the open of k
    if k > pos.e:
        reason = _open_exit_reason(pos, k, rule)
        if reason is not None:
            return _trade_row(pos, k, o, reason, c, False)
    # (2) stop-loss, then take-profit, intraday
    if rule.stop_loss is not None:
        stop = pos.entry * (1.0 - rule.stop_loss)
        if lo <= stop:
            fill = stop if k == pos.e else min(o, stop)
            return _trade_row(pos, k, fill, "stop_loss", c, False)
    if rule.take_profit is not None:
        tp = pos.entry * (1.0 + rule.take_profit)
        if h >= tp:
            fill = tp if k == pos.e else max(o, tp)
            return _trade_row(pos, k, fill, "take_profit", c, False)
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
    df = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    if rows:
        df = df.sort_values(["symbol", "entry_idx"], kind="stable").reset_index(drop=True)
    return df.astype({"symbol": np.int64, "signal_idx": np.int64, "entry_idx": np.int64, "exit_idx": np.int64,
                      "open_at_end": bool}) if rows else df


def _check_span(sig_start: int, sig_end: int, data_end: int, T: int) -> None:
    if not (0 <= sig_start <= sig_end <= data_end <= T):
        raise ValueError(f"span must satisfy 0 <= sig_start <= sig_end <= data_end <= T={T}, "
                         f"got ({sig_start}, {sig_end}, {data_end})")


def ref_trades(panel, display, buy: float, sell: float, exit: RefExit, costs, sig_start: int, sig_end: int,
               data_end: int) -> pd.DataFrame:
    """Trades of every symbol, one position per symbol, a plain loop over days per symbol (no caps)."""
    P = _prices(panel)
    disp = np.asarray(display, dtype=np.float64)
    T, N = disp.shape
    _check_span(sig_start, sig_end, data_end, T)
    acc = np.where(np.isnan(disp), False, disp >= buy)
    dist = np.where(np.isnan(disp), False, disp <= sell)
    c = cost_per_side(costs)
    rows: list[dict] = []
    for s in range(N):
        pos: _Pos | None = None
        pending: tuple[int, int] | None = None  # (signal_idx, entry_idx)
        for k in range(sig_start, data_end):
            if pending is not None and pending[1] == k:
                pos = _Pos(s, pending[0], k, P["open"][k, s], disp[pending[0], s])
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


def ref_trades_capped(panel, display, buy: float, sell: float, exit: RefExit, costs, sig_start: int, sig_end: int,
                      data_end: int, max_positions: int | None = None,
                      max_per_sector: int | None = None) -> pd.DataFrame:
    """Trades with position caps: a date-major loop across symbols.

    At the close of t the flat symbols with an accumulation signal compete for the slots free at open t+1
    (positions held at the close of t minus those with an exit due at open t+1); the highest display at t
    wins, ties to the lower symbol index. Symbols whose sector is None are not sector-capped.
    """
    P = _prices(panel)
    disp = np.asarray(display, dtype=np.float64)
    T, N = disp.shape
    _check_span(sig_start, sig_end, data_end, T)
    acc = np.where(np.isnan(disp), False, disp >= buy)
    dist = np.where(np.isnan(disp), False, disp <= sell)
    c = cost_per_side(costs)
    sectors = list(panel.sectors) if len(panel.sectors) == N else [None] * N
    rows: list[dict] = []
    pos: list[_Pos | None] = [None] * N
    pending: list[tuple[int, int] | None] = [None] * N
    for k in range(sig_start, data_end):
        for s in range(N):
            if pending[s] is not None and pending[s][1] == k:
                sig = pending[s][0]
                pos[s] = _Pos(s, sig, k, P["open"][k, s], disp[sig, s])
                pending[s] = None
            if pos[s] is not None:
                row = _step_bar(pos[s], k, s, P, disp, dist, exit, c, data_end)
                if row is not None:
                    rows.append(row)
                    pos[s] = None
        if not (sig_start <= k < sig_end) or k + 1 >= data_end:
            continue
        cands = [s for s in range(N)
                 if pos[s] is None and acc[k, s] and np.isfinite(P["open"][k + 1, s])]
        held = [s for s in range(N) if pos[s] is not None and _open_exit_index(pos[s], exit) != k + 1]
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
            pending[s] = (k, k + 1)
            n_held += 1
            if sec is not None:
                per_sector[sec] = per_sector.get(sec, 0) + 1
    return _frame(rows)


# --------------------------------------------------------------------------------------------------------- metrics

def ref_count_signals(display, buy: float, sig_start: int, sig_end: int) -> int:
    """Accumulation days (display >= buy, NaN excluded) over every symbol in [sig_start, sig_end)."""
    disp = np.asarray(display, dtype=np.float64)
    n = 0
    for t in range(sig_start, sig_end):
        for v in disp[t]:
            if not math.isnan(v) and v >= buy:
                n += 1
    return n


def ref_benchmark(open_col: np.ndarray, h: int, c: float, sig_start: int, sig_end: int, data_end: int) -> float:
    """mean over entry sessions e in [sig_start+1, sig_end] of open[e+h]/open[e], minus 1 (gross: a passive
    holder pays no per-trade costs; ``c`` is accepted for signature stability and unused)."""
    ratios = []
    for e in range(sig_start + 1, sig_end + 1):
        if e + h >= data_end:
            continue
        a, b = open_col[e], open_col[e + h]
        if math.isfinite(a) and math.isfinite(b):
            ratios.append(b / a)
    if not ratios:
        return 0.0
    return sum(ratios) / len(ratios) - 1.0


def ref_portfolio_returns(trades: pd.DataFrame, panel, c: float, sig_start: int, data_end: int) -> np.ndarray:
    """Equal-weight daily returns over days [sig_start, data_end); cash days return 0."""
    close = np.asarray(panel["close"], dtype=np.float64)
    per_day: dict[int, list[float]] = {d: [] for d in range(sig_start, data_end)}
    for tr in trades.itertuples(index=False):
        s, e, x = tr.symbol, tr.entry_idx, tr.exit_idx
        entry = tr.entry_price
        last = data_end - 1 if tr.open_at_end else x
        for d in range(e, last + 1):
            closing = (not tr.open_at_end) and d == x
            if closing and d == e:
                r = tr.exit_price * (1.0 - c) / (entry * (1.0 + c)) - 1.0
            elif closing:
                r = tr.exit_price * (1.0 - c) / close[d - 1, s] - 1.0
            elif d == e:
                r = close[e, s] / (entry * (1.0 + c)) - 1.0
            else:
                r = close[d, s] / close[d - 1, s] - 1.0
            per_day[d].append(r)
    return np.array([sum(v) / len(v) if v else 0.0 for _, v in sorted(per_day.items())], dtype=np.float64)


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
                portfolio_ddof: int = 1) -> dict:
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
        sharpe = avg / sd if sd > 0 else 0.0
    port = ref_portfolio_returns(trades, panel, c, sig_start, data_end)
    if len(port) > portfolio_ddof:
        psd = _std(port, portfolio_ddof)
        psharpe = _mean(port) / psd * math.sqrt(252.0) if psd > 0 else 0.0
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
