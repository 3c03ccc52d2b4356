"""The evening signal sheet (pure): what a configuration does at the NEXT open after the panel's last session.

``next_open(panel, display, config, start, entry_ok)`` replays the configuration from row ``start`` through the
panel's last row d = T - 1 (session D) with the engine's own ``simulate`` and reads the decision of every symbol for
the open of D+1:

* ENTER: an accumulation signal at D's close while flat (caps and regime filter applied by the kernel): the
  position opens at D+1's open.
* EXIT: a held position whose exit is due at D+1's open (a close-based exit signal of D: first_dist /
  2x_consec_dist / score_decay; or the fixed / max_days / time-stop schedule).
* HOLD: a held position with nothing due at that open (its entry, days held, unrealised return at D's close and its
  resting stop-loss / take-profit levels are reported).
* NONE: flat and no signal.

How the kernel tells us (docs/ENGINE.md "The next open"): the kernel decides an open's fills from closes up to the
previous session only, so the panel is extended by ONE placeholder session D+1 whose open is the symbol's last known
close (finite wherever the symbol ever traded: "assume it trades tomorrow"), whose high / low / close are NaN (no
intraday stop, target or close signal can fire on it) and whose display is NaN (no signal), and ``simulate`` runs
with sig_end = d + 1, data_end = d + 2. Trades entering at d + 1 are the ENTER rows, trades leaving at d + 1 (by a
reason due at the open) the EXIT rows, trades still open at the end the HOLD rows. Nothing at or after D+1 is real
data, so the sheet for D reads rows <= d only: truncating the data at D gives the same sheet (tested), and for every
D of a backtest the sheet's ENTER / EXIT rows are the backtest's entries and exits at D+1's open (tested), as long as
the symbol has an open at D+1 (a fill due at a missing open waits for the next one, docs/ENGINE.md).

Context of the actionable rows (``sheet_context``) is point-in-time at D (``compute_context`` keys at row d),
with the design's signal quality, options boost and parent-ETF alignment computed as ``outcomes.signal_events``
computes them for a trade, plus failure-mode risk flags (``FLAG_RULES``) and the symbol's data coverage.
``quality_buckets`` turns a walk-forward run's out-of-sample events into hit rate / excess return per quality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from optimizer.engine.context import (
    LEARNED_REGIME_LABELS, QUALITY_LABELS, REGIME_LABELS, TREND_DOWN, TREND_LABELS, decode, parent_etf_aligned,
    parent_etf_available, signal_quality, squeeze_boost,
)
from optimizer.engine._failure import GAP_DOWN_PCT
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_codes
from optimizer.engine.simulate import EXIT_REASONS, Span, Trades, simulate
from optimizer.errors import check_param

__all__ = [
    "DECISIONS", "ENTER", "EXIT", "HOLD", "NONE", "DECISION_COLUMNS", "CONTEXT_COLUMNS", "OOS_COLUMNS",
    "SHEET_COLUMNS", "FLAG_RULES",
    "COVERAGE_WINDOW", "next_open_panel", "next_open", "sheet_context", "quality_buckets",
]

ENTER, EXIT, HOLD, NONE = "ENTER", "EXIT", "HOLD", "NONE"
DECISIONS: tuple[str, ...] = (ENTER, EXIT, HOLD, NONE)
_AT_OPEN = {"fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop"}

# One row per symbol, in panel symbol order.
DECISION_COLUMNS: tuple[str, ...] = (
    "symbol", "sector_etf", "decision", "score", "close", "signal_date", "entry_date", "entry_price", "days_held",
    "unrealised_return", "exit_reason", "stop_level", "take_profit_level", "scheduled_exit_in",
)
CONTEXT_COLUMNS: tuple[str, ...] = (
    "trend", "sma_20_slope", "rsi_14", "atr_pct", "regime", "learned_regime", "regime_multiplier",
    "parent_etf_available", "parent_etf_aligned", "put_call", "lit_z", "options_boost", "signal_quality",
    "flags", "confidence", "data_coverage", "last_data_date",
)
# A walk-forward run's out-of-sample figures for the ENTER row's quality bucket (``quality_buckets``).
OOS_COLUMNS: tuple[str, ...] = ("oos_trades", "oos_hit_rate", "oos_avg_excess_return")
# A sheet row: the night and configuration, the decision, the context (actionable rows) and the OOS bucket (ENTER).
SHEET_COLUMNS: tuple[str, ...] = (
    "date", "params_hash", "symbol", "next_session", *DECISION_COLUMNS[1:], *CONTEXT_COLUMNS, *OOS_COLUMNS,
)
# Point-in-time risk flags for a new position, one per failure mode of docs/CONTEXT.md section 7 (the outcome labels
# read the trade's future; these read the signal's past only). Thresholds reuse the outcome labels' where they exist.
FLAG_RULES: dict[str, str] = {
    "SECTOR_WEAK": "parent ETF in the panel with a DOWN trend or a distribution score (<= sell) at D (SECTOR_DRAG)",
    "GAP_RISK": f"a gap down of more than {GAP_DOWN_PCT:.0%} (open < previous close) in the last 20 sessions (GAP_DOWN)",
    "EXTENDED": "RSI-14 > 70 or close above the upper Bollinger band at D (IMMEDIATE_REVERSAL)",
    "FALLING": "trend DOWN without the options confirmation (put/call < 0.7) of the reversal setup (SLOW_BLEED)",
    "THIN_DATA": "confidence < 0.7 or data coverage < 0.9 over the z-window (FALSE_SIGNAL)",
}
COVERAGE_WINDOW_MIN = 20
COVERAGE_WINDOW = "max(z_window, 20) sessions ending at D"


def next_open_panel(panel: Panel, next_date: object | None = None) -> Panel:
    """``panel`` plus one placeholder session for the next open (module docstring): open = each symbol's last
    finite close (NaN for a symbol without any), high / low / close NaN; only the price fields are kept.
    ``next_date`` defaults to D + 1 day (the caller passes the next exchange session)."""
    T, N = panel.shape
    check_param(T >= 1, "panel", "a panel with at least one session", T)
    close = panel["close"]
    last = np.full(N, np.nan)
    seen = np.isfinite(close)
    if seen.any():
        idx = np.where(seen.any(axis=0), T - 1 - np.argmax(seen[::-1], axis=0), -1)
        ok = idx >= 0
        last[ok] = close[idx[ok], np.flatnonzero(ok)]
    nd = np.datetime64(pd.Timestamp(next_date).date(), "D") if next_date is not None else \
        np.datetime64(panel.dates[-1], "D") + np.timedelta64(1, "D")
    check_param(nd > np.datetime64(panel.dates[-1], "D"), "next_date", f"after the last session {panel.dates[-1]}",
                next_date)
    nan_row = np.full((1, N), np.nan)
    fields = {
        "open": np.vstack([panel["open"], last[None, :]]),
        "high": np.vstack([panel["high"], nan_row]),
        "low": np.vstack([panel["low"], nan_row]),
        "close": np.vstack([close, nan_row]),
    }
    dates = np.append(np.asarray(panel.dates, dtype="datetime64[D]"), nd)
    return Panel(dates=dates, symbols=panel.symbols, fields=fields,
                 market={k: np.append(v, np.nan) for k, v in panel.market.items()}, sectors=panel.sectors)


def _pending_trades(panel: Panel, display: np.ndarray, config: Config, start: int,
                    entry_ok: np.ndarray | None, next_date: object | None) -> Trades:
    T, N = panel.shape
    ext = next_open_panel(panel, next_date)
    disp = np.vstack([np.asarray(display, dtype=np.float64), np.full((1, N), np.nan)])
    ok = None if entry_ok is None else np.append(np.asarray(entry_ok, dtype=bool), False)
    rows = None
    if config.regime.thresholded:  # the regime of each session, the placeholder's unknown (its buy: never a signal)
        codes = np.append(regime_codes(panel), np.int8(0))
        rows = config.regime.threshold_rows(config.thresholds, codes)
    return simulate(ext, disp, config.thresholds, config.exit, config.costs, Span(start, T, T + 1), config.caps, ok,
                    risk=config.risk, rows=rows)


def next_open(panel: Panel, display: np.ndarray, config: Config, start: int = 0, entry_ok: np.ndarray | None = None,
              next_date: object | None = None) -> pd.DataFrame:
    """The decision of every symbol for the open after the panel's last session (``DECISION_COLUMNS``, one row per
    symbol in panel order); see the module docstring. ``display`` is the configuration's display on ``panel``
    (``Evaluator(panel).display(config)``), ``start`` the first row whose close may open a position (the span the
    positions are replayed from), ``entry_ok`` the regime filter's (T,) mask (None = every session).

    days_held = d - entry row (0 on the entry session); unrealised_return = close[d] / entry - 1 (gross);
    scheduled_exit_in = sessions from D until the open of the fixed / max_days / time-stop exit (1 = the next open;
    NaN without a schedule); stop_level / take_profit_level = entry x (1 -/+ x) (NaN when unused or not yet entered).
    """
    T, N = panel.shape
    d = T - 1
    check_param(np.shape(display) == (T, N), "display.shape", f"equal to the panel shape {(T, N)}", np.shape(display))
    check_param(0 <= start <= d, "start", f"a row in [0, {d}] (the span must start on or before D)", start)
    tr = _pending_trades(panel, display, config, start, entry_ok, next_date)
    reasons = np.array(EXIT_REASONS, dtype=object)[tr.exit_reason] if len(tr) else np.array([], dtype=object)
    enter = tr.entry_idx == d + 1
    leave = (tr.exit_idx == d + 1) & ~tr.open_at_end & np.isin(reasons, list(_AT_OPEN))
    hold = tr.open_at_end & (tr.entry_idx <= d)
    decision = np.full(N, NONE, dtype=object)
    row = np.full(N, -1, dtype=np.int64)
    for mask, name in ((hold, HOLD), (leave, EXIT), (enter, ENTER)):
        decision[tr.symbol[mask]] = name
        row[tr.symbol[mask]] = np.flatnonzero(mask)
    # a trade stopped out on the placeholder bar cannot happen (its high / low are NaN): guard the invariant
    odd = (tr.exit_idx == d + 1) & ~tr.open_at_end & ~leave
    if odd.any():  # pragma: no cover - would mean the placeholder bar reached an intraday rule
        raise RuntimeError(f"{int(odd.sum())} trade(s) left at the placeholder session by an intraday rule")
    dates = np.asarray(panel.dates, dtype="datetime64[D]")
    close = panel["close"][d]
    has = row >= 0
    held = has & (decision != ENTER)
    r = row[has]
    e_idx = np.full(N, -1, dtype=np.int64)
    e_idx[has] = tr.entry_idx[r]
    entry_px = np.full(N, np.nan)
    entry_px[held] = tr.entry_price[row[held]]
    sig = np.full(N, np.datetime64("NaT"), dtype="datetime64[D]")
    sig[has] = dates[np.minimum(tr.signal_idx[r], d)]
    ent = np.full(N, np.datetime64("NaT"), dtype="datetime64[D]")
    ent[held] = dates[e_idx[held]]
    days = np.where(held, d - e_idx, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unreal = np.where(held, close / entry_px - 1.0, np.nan)
    ex = config.exit
    stop = np.where(held, entry_px * (1.0 - ex.stop_loss), np.nan) if ex.stop_loss is not None else np.full(N, np.nan)
    tp = np.where(held, entry_px * (1.0 + ex.take_profit), np.nan) if ex.take_profit is not None else np.full(N, np.nan)
    sched = np.full(N, np.nan)
    if ex.max_hold is not None:
        live = decision == HOLD
        sched[live] = e_idx[live] + int(ex.max_hold) - d
    why = np.full(N, None, dtype=object)
    why[decision == EXIT] = reasons[row[decision == EXIT]]
    score = np.asarray(display, dtype=np.float64)[d]
    return pd.DataFrame({
        "symbol": np.array(panel.symbols, dtype=object),
        "sector_etf": np.array(panel.sectors, dtype=object),
        "decision": decision,
        "score": score,
        "close": close,
        "signal_date": pd.to_datetime(sig),
        "entry_date": pd.to_datetime(ent),
        "entry_price": entry_px,
        "days_held": pd.arrays.IntegerArray(np.where(held, days, 0), ~held),
        "unrealised_return": unreal,
        "exit_reason": why,
        "stop_level": stop,
        "take_profit_level": tp,
        "scheduled_exit_in": sched,
    }, columns=list(DECISION_COLUMNS))


def _at(a: np.ndarray, d: int, cols: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.repeat(a[d], len(cols)) if a.ndim == 1 else a[d, cols]


def _coverage(panel: Panel, cols: np.ndarray, window: int) -> np.ndarray:
    """Share of the last ``window`` panel rows (ending at D) where the symbol has both a FINRA short ratio and a
    close (NaN when the panel lacks either field)."""
    f = panel.fields
    if "short_buy_sell_ratio" not in f or "close" not in f:
        return np.full(len(cols), np.nan)
    T = panel.shape[0]
    lo = max(0, T - window)
    ok = np.isfinite(f["short_buy_sell_ratio"][lo:, cols]) & np.isfinite(f["close"][lo:, cols])
    return ok.sum(axis=0) / float(window)


def sheet_context(evaluator: Evaluator, config: Config, display: np.ndarray, context: Mapping[str, np.ndarray],
                  symbols: Sequence[str], context_symbols: Sequence[str] | None = None) -> pd.DataFrame:
    """``CONTEXT_COLUMNS`` at the panel's last session D for ``symbols`` (index = symbol), point-in-time.

    ``context`` = ``compute_context`` of the evaluator's panel, or of its subset holding ``context_symbols`` (its
    columns' symbols, a superset of ``symbols``): every context key is per symbol or market-wide, so a subset's
    values are the full panel's (alignment and flags read the display and the panel itself). Signal quality, options boost,
    lit_z and parent-ETF alignment follow ``outcomes.signal_events`` (the design's rule at the signal);
    ``flags`` joins the ``FLAG_RULES`` names that apply (comma separated, "" when none);
    ``data_coverage`` = share of the last max(z_window, 20) sessions with FINRA and price data;
    ``last_data_date`` = the symbol's last session with a FINRA short ratio (<= D)."""
    panel = evaluator.panel
    T, N = panel.shape
    d = T - 1
    cols = np.array([panel.symbol_index(s) for s in symbols], dtype=np.int64)
    ctx_syms = list(panel.symbols) if context_symbols is None else list(context_symbols)
    check_param(np.shape(context["trend"]) == (T, len(ctx_syms)), "context", f"of shape {(T, len(ctx_syms))} "
                "(compute_context of the evaluator's panel, or of its subset given as context_symbols)",
                np.shape(context["trend"]))
    pos = {s: i for i, s in enumerate(ctx_syms)}
    missing = [s for s in symbols if s not in pos]
    check_param(not missing, "context_symbols", "holding every sheet symbol", missing[:5])
    ccols = np.array([pos[s] for s in symbols], dtype=np.int64)
    th = config.thresholds
    disp = np.asarray(display, dtype=np.float64)
    score = disp[d, cols]
    # only signals are graded (the design's rule): the signal is the engine's (a regime-conditional buy threshold:
    # D's regime's), so every ENTER row is graded, and its parent ETF's signal told, as the backtest's signal events
    rows = config.regime.threshold_rows(th, evaluator.regime_codes())
    buy_d = th.buy if rows is None else float(rows[0][d])
    trend = _at(context["trend"], d, ccols)
    put_call = _at(context["options_put_call"], d, ccols)
    lit_z = evaluator.features.z("lit_flow_imbalance", int(config.score.z_window))[d, cols] \
        if "lit_flow_imbalance" in panel.fields else np.full(len(cols), np.nan)
    aligned = parent_etf_aligned(disp[d:d + 1], panel.symbols, panel.sectors, buy_d)[0, cols]
    avail = parent_etf_available(panel.symbols, panel.sectors)[cols]
    base = _at(context["options_boost_base"], d, ccols)
    boost = squeeze_boost(base, _at(context["options_otm_put_z_max5"], d, ccols), score)
    quality = signal_quality(score, buy_d, trend, put_call, aligned, lit_z, boost)
    conf = panel.fields["confidence"][d, cols] if "confidence" in panel.fields else np.full(len(cols), np.nan)
    window = max(int(config.score.z_window), COVERAGE_WINDOW_MIN)
    cov = _coverage(panel, cols, window)
    flags = _flags(evaluator, config, disp, context, ctx_syms, ccols, cols, trend, put_call, conf, cov)
    ratio = panel.fields.get("short_buy_sell_ratio")
    last = np.full(len(cols), np.datetime64("NaT"), dtype="datetime64[D]")
    if ratio is not None:
        fin = np.isfinite(ratio[:, cols])
        have = fin.any(axis=0)
        idx = T - 1 - np.argmax(fin[::-1], axis=0)
        last[have] = np.asarray(panel.dates, dtype="datetime64[D]")[idx[have]]
    out = pd.DataFrame({
        "trend": decode(trend, TREND_LABELS),
        "sma_20_slope": _at(context["sma_20_slope"], d, ccols),
        "rsi_14": _at(context["rsi_14"], d, ccols),
        "atr_pct": _at(context["atr_pct"], d, ccols),
        "regime": decode(_at(context["regime"], d, ccols), REGIME_LABELS),
        "learned_regime": decode(_at(context["learned_regime"], d, ccols), LEARNED_REGIME_LABELS),
        "regime_multiplier": _at(context["regime_multiplier"], d, ccols),
        "parent_etf_available": avail,
        "parent_etf_aligned": aligned,
        "put_call": put_call,
        "lit_z": lit_z,
        "options_boost": boost,
        "signal_quality": decode(quality, QUALITY_LABELS),
        "flags": flags,
        "confidence": conf,
        "data_coverage": cov,
        "last_data_date": pd.to_datetime(last),
    }, index=pd.Index(list(symbols), name="symbol"), columns=list(CONTEXT_COLUMNS))
    # a row without an accumulation signal at D has no quality
    with np.errstate(invalid="ignore"):
        out.loc[~(score >= buy_d), "signal_quality"] = None
    return out


def _flags(evaluator: Evaluator, config: Config, disp: np.ndarray, context, ctx_syms, ccols, cols, trend, put_call,
           conf, cov) -> np.ndarray:
    panel = evaluator.panel
    T, _ = panel.shape
    d = T - 1
    n = len(cols)
    out: list[list[str]] = [[] for _ in range(n)]
    # SECTOR_WEAK: the parent ETF (in the panel) trends down or shows distribution at D
    pos = {s: i for i, s in enumerate(panel.symbols)}
    with np.errstate(invalid="ignore"):
        dist_now = disp[d] <= config.thresholds.sell
    etf_trend = _etf_trend(panel, context, ctx_syms)
    for k, c in enumerate(cols):
        j = pos.get(panel.sectors[c]) if panel.sectors[c] else None
        if j is not None and j != c and (bool(dist_now[j]) or etf_trend.get(j) == TREND_DOWN):
            out[k].append("SECTOR_WEAK")
    # GAP_RISK: a gap down of more than GAP_DOWN_PCT in the last 20 sessions
    lo = max(1, T - 20)
    o, c_ = panel["open"][lo:, cols], panel["close"][lo - 1:T - 1, cols]
    with np.errstate(invalid="ignore"):
        gap = (o < c_ * (1.0 - GAP_DOWN_PCT)).any(axis=0)
        ext = (_at(context["rsi_14"], d, ccols) > 70.0) | (_at(context["boll_pos"], d, ccols) > 1.0)
        falling = (trend == TREND_DOWN) & ~(put_call < 0.7)
        thin = (conf < 0.7) | (cov < 0.9)
    for name, m in (("GAP_RISK", gap), ("EXTENDED", ext), ("FALLING", falling), ("THIN_DATA", thin)):
        for k in np.flatnonzero(m):
            out[k].append(name)
    order = list(FLAG_RULES)
    return np.array([",".join(sorted(f, key=order.index)) for f in out], dtype=object)


def _etf_trend(panel: Panel, context, names: list[str]) -> dict[int, int]:
    """Trend code at D of every sector ETF the context covers (panel column -> code)."""
    d = panel.shape[0] - 1
    tr = np.asarray(context["trend"])
    out = {}
    for etf in {s for s in panel.sectors if s}:
        if etf in names and etf in panel.symbols:
            out[panel.symbols.index(etf)] = int(tr[d, names.index(etf)])
    return out


def quality_buckets(events: pd.DataFrame) -> pd.DataFrame:
    """Out-of-sample closed events of a walk-forward run per ``signal_quality`` (HIGH / MEDIUM / LOW and ALL):
    oos_trades, oos_hit_rate (net_return > 0), oos_avg_return and oos_avg_excess_return (mean excess over the
    matched random-entry benchmark, NaN-free events only). Empty frame (same columns) without events."""
    cols = ["signal_quality", "oos_trades", "oos_hit_rate", "oos_avg_return", "oos_avg_excess_return"]
    need = {"signal_quality", "net_return", "open_at_end"}
    if events is None or events.empty or not need <= set(events.columns):
        return pd.DataFrame(columns=cols)
    ev = events[~events["open_at_end"].astype(bool)]
    rows = []
    for name, g in [*sorted(ev.groupby("signal_quality", dropna=True)), ("ALL", ev)]:
        r = g["net_return"].to_numpy(dtype=np.float64)
        x = g["excess_return"].to_numpy(dtype=np.float64) if "excess_return" in g else np.full(len(g), np.nan)
        x = x[np.isfinite(x)]
        rows.append({"signal_quality": str(name), "oos_trades": int(len(g)),
                     "oos_hit_rate": float(np.mean(r > 0)) if len(r) else np.nan,
                     "oos_avg_return": float(np.mean(r)) if len(r) else np.nan,
                     "oos_avg_excess_return": float(np.mean(x)) if len(x) else np.nan})
    return pd.DataFrame(rows, columns=cols)
