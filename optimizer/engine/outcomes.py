"""Per-event OUTCOMES of a backtest, the frequency baseline and the run summary (pure numpy/pandas, no I/O).

``signal_events`` turns a ``Result`` into one row per accumulation signal that opened a trade (the rows of
``bt_signal_events``): the trade itself, forward returns, the path to the first distribution day, hit flags, the
point-in-time CONTEXT at the signal date and the trade's failure mode. Outcome columns read bars after the signal
by design; they are reports and must never feed a score or a filter.

Data limit: every outcome reads rows < ``span.data_end`` only (the same bars the simulation could read), so the
events of a fold never see data past that fold. Definitions (t = signal row, e = entry row = t + 1, s = symbol):

- fwd_ret_<h>d = open[e+h]/open[e] − 1 (``context.forward_returns``); NaN when e+h >= data_end or an open is NaN.
- fwd_ret_<h>d_rel = fwd_ret_<h>d − beta[t]·(SPY open[e+h]/open[e] − 1) (``market_relative_forward_returns``).
- days_to_first_dist = k − e for the first k >= e with a distribution close (display <= sell); NaN if none.
- days_to_2x_consec_dist = k − e for the first k >= e+1 with distribution at k and k−1; NaN if none.
- ret_at_first_dist / ret_at_2x_consec_dist = open[j]/entry − 1, j = first finite open at or after k+1
  (the engine's fill rule); gross, no costs; NaN when there is none before data_end.
- max_drawdown_before_dist = min(low[e..end])/entry − 1 and max_gain_before_dist = max(high[e..end])/entry − 1
  (signed returns), end = the first distribution row (inclusive), or the exit row when there is none.
- hit_<h>d = 1.0 when fwd_ret_<h>d > 0, 0.0 when <= 0, NaN when the return is NaN. hit = 1.0/0.0 on net_return,
  NaN for trades open at the end of the data (they are never in hit statistics).
- failure_mode: ``classify_failure_modes`` for closed trades (NONE for winners); None for open-at-end trades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from optimizer.errors import check_param
from optimizer.engine.context import (
    LEARNED_REGIME_LABELS, QUALITY_HIGH, QUALITY_LABELS, REGIME_LABELS, TREND_LABELS, classify_failure_modes, decode,
    forward_returns, market_relative_forward_returns, parent_etf_aligned, parent_etf_available, signal_quality,
)
from optimizer.engine.evaluate import PARAM_KEYS, Result
from optimizer.engine.metrics import SESSIONS_PER_MONTH
from optimizer.engine.panel import Panel
from optimizer.engine.signals import accumulation, distribution
from optimizer.engine.simulate import EXIT_REASONS, Span, Thresholds

__all__ = [
    "HORIZONS", "EVENT_COLUMNS", "BASELINE_COLUMNS", "SUMMARY_ID_KEYS", "SUMMARY_EXTRA_METRICS",
    "signal_events", "high_quality_hit_rate", "frequency_baseline", "backtest_summary", "next_true_index",
]

HORIZONS: tuple[int, ...] = (5, 10, 20)

# Fixed part of the event columns (options_* columns from the context are inserted before parent_etf_available).
EVENT_COLUMNS: tuple[str, ...] = (
    "signal_date", "entry_date", "exit_date", "symbol", "sector_etf", "display_score", "entry_price", "exit_price",
    "exit_reason", "net_return", "gross_return", "hold_days", "open_at_end",
    *(f"fwd_ret_{h}d" for h in HORIZONS), *(f"fwd_ret_{h}d_rel" for h in HORIZONS), "beta",
    "days_to_first_dist", "days_to_2x_consec_dist", "ret_at_first_dist", "ret_at_2x_consec_dist",
    "max_drawdown_before_dist", "max_gain_before_dist",
    *(f"hit_{h}d" for h in HORIZONS), "hit", "trend", "regime", "learned_regime",
    "parent_etf_available", "parent_etf_aligned", "confidence", "signal_quality", "failure_mode",
)
BASELINE_COLUMNS: tuple[str, ...] = (
    "symbol", "sector_etf", "n_accumulation", "n_distribution", "n_acc_episodes",
    "mean_gap_acc_to_dist", "median_gap_acc_to_dist", "signals_per_month",
)
SUMMARY_ID_KEYS: tuple[str, ...] = (
    "start_date", "end_date", "data_end_date", "sessions", "n_symbols", "fingerprint",
)
SUMMARY_EXTRA_METRICS: tuple[str, ...] = ("high_quality_hit_rate", "high_quality_trades")

_NONE = np.iinfo(np.int64).max  # "no such row" sentinel of next_true_index
_GATHER_CELLS = 2_000_000       # bound on the (events x path length) matrix built per chunk


# ------------------------------------------------------------------------------------------------ helpers


def next_true_index(mask: np.ndarray) -> np.ndarray:
    """int64 (T, N): smallest j >= t with mask[j] (per column), or a sentinel (int64 max) when there is none."""
    m = np.asarray(mask, dtype=bool)
    T = m.shape[0]
    idx = np.where(m, np.arange(T, dtype=np.int64).reshape((T,) + (1,) * (m.ndim - 1)), _NONE)
    return np.minimum.accumulate(idx[::-1], axis=0)[::-1] if T else idx


def _lookup(nxt: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """nxt[rows, cols] with rows past the end giving the sentinel."""
    T = nxt.shape[0]
    out = np.full(rows.shape, _NONE, dtype=np.int64)
    ok = rows < T
    out[ok] = nxt[rows[ok], cols[ok]]
    return out


def _range_extreme(mat: np.ndarray, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray, use_max: bool) -> np.ndarray:
    """max (or min) of mat[lo_i..hi_i, cols_i] per event (inclusive), NaN-ignoring; NaN when empty or all-NaN."""
    n = lo.shape[0]
    out = np.full(n, np.nan)
    if n == 0:
        return out
    length = np.maximum(hi - lo + 1, 0)
    L = int(length.max()) if n else 0
    if L == 0:
        return out
    fill = -np.inf if use_max else np.inf
    step = max(1, _GATHER_CELLS // L)
    T = mat.shape[0]
    for a in range(0, n, step):
        b = min(n, a + step)
        rows = lo[a:b, None] + np.arange(L)[None, :]
        inside = rows <= hi[a:b, None]
        v = mat[np.clip(rows, 0, T - 1), cols[a:b, None]]
        v = np.where(inside & np.isfinite(v), v, fill)
        r = v.max(axis=1) if use_max else v.min(axis=1)
        out[a:b] = np.where(np.isfinite(r), r, np.nan)
    return out


def _at(arr: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Value at (signal row, symbol) of a (T, N) context array, or at the row of a (T,) market array."""
    a = np.asarray(arr)
    return a[t] if a.ndim == 1 else a[t, s]


def _ret(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den - 1.0


def _flag(x: np.ndarray) -> np.ndarray:
    """1.0 where x > 0, 0.0 where x <= 0, NaN where x is NaN."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(x), (x > 0).astype(np.float64), np.nan)


def _dates(panel: Panel, idx: np.ndarray) -> np.ndarray:
    return np.asarray(panel.dates, dtype="datetime64[D]")[idx].astype("datetime64[ns]")


def _dist_path(
    panel: Panel, dist: np.ndarray, span: Span, s: np.ndarray, e: np.ndarray, x: np.ndarray, entry: np.ndarray
) -> dict[str, np.ndarray]:
    """Distribution-day timing and the price path before it (rows < span.data_end only)."""
    de = span.data_end
    O = panel["open"][:de]
    d = dist[:de]
    first = _lookup(next_true_index(d), e, s)
    pair = d.copy()
    pair[0] = False
    pair[1:] &= d[:-1]
    second = _lookup(next_true_index(pair), e + 1, s)
    next_open = next_true_index(np.isfinite(O))
    out: dict[str, np.ndarray] = {}
    for name, k in (("first_dist", first), ("2x_consec_dist", second)):
        found = k != _NONE
        out[f"days_to_{name}"] = np.where(found, k - e, np.nan).astype(np.float64)
        j = _lookup(next_open, np.where(found, k, de - 1) + 1, s)
        fill = np.full(e.shape, np.nan)
        ok = j != _NONE
        fill[ok] = O[j[ok], s[ok]]
        out[f"ret_at_{name}"] = _ret(fill, entry)
    end = np.where(first != _NONE, first, np.minimum(x, de - 1))
    out["max_drawdown_before_dist"] = _ret(_range_extreme(panel["low"][:de], s, e, end, use_max=False), entry)
    out["max_gain_before_dist"] = _ret(_range_extreme(panel["high"][:de], s, e, end, use_max=True), entry)
    return out


# ------------------------------------------------------------------------------------------------ events


def signal_events(
    result: Result,
    panel: Panel,
    context: Mapping[str, np.ndarray],
    thresholds: Thresholds | None = None,
    horizons: Sequence[int] = HORIZONS,
) -> pd.DataFrame:
    """One row per accumulation signal that opened a trade (closed and open-at-end), sorted by entry then symbol.

    ``context`` is ``compute_context(panel)`` (computed once by the caller); ``thresholds`` default to the
    result's config. Columns: ``EVENT_COLUMNS`` with the context's ``options_*`` keys inserted before
    ``parent_etf_available`` (fwd/hit columns follow ``horizons``). See the module docstring for definitions.
    """
    th = thresholds or result.config.thresholds
    disp = np.asarray(result.display, dtype=np.float64)
    T, N = panel.shape
    check_param(disp.shape == (T, N), "result.display.shape", f"equal to the panel shape {(T, N)}", disp.shape)
    tr, span = result.trades, result.span
    order = np.lexsort((tr.symbol, tr.entry_idx))
    s = tr.symbol[order].astype(np.int64)
    t = tr.signal_idx[order].astype(np.int64)
    e = tr.entry_idx[order].astype(np.int64)
    x = tr.exit_idx[order].astype(np.int64)
    entry, exit_ = tr.entry_price[order], tr.exit_price[order]
    net, gross = tr.net_ret[order], tr.gross_ret[order]
    oae = tr.open_at_end[order].astype(bool)
    de = span.data_end

    cols: dict[str, object] = {
        "signal_date": _dates(panel, t), "entry_date": _dates(panel, e), "exit_date": _dates(panel, x),
        "symbol": np.array(panel.symbols, dtype=object)[s],
        "sector_etf": np.array(panel.sectors, dtype=object)[s],
        "display_score": disp[t, s], "entry_price": entry, "exit_price": exit_,
        "exit_reason": np.array(EXIT_REASONS, dtype=object)[tr.exit_reason[order]],
        "net_return": net, "gross_return": gross, "hold_days": (x - e).astype(np.int64), "open_at_end": oae,
    }
    beta = np.asarray(context["beta"], dtype=np.float64)
    check_param(beta.shape == (T, N), "context['beta'].shape", f"equal to the panel shape {(T, N)} "
                "(pass compute_context(panel) of the same panel)", beta.shape)
    fwd = forward_returns(panel["open"][:de], horizons)
    rel = market_relative_forward_returns(panel["open"][:de], panel.market["spy_open"][:de], beta[:de], horizons)
    for h in horizons:
        cols[f"fwd_ret_{h}d"] = fwd[int(h)][t, s]
    for h in horizons:
        cols[f"fwd_ret_{h}d_rel"] = rel[int(h)][t, s]
    cols["beta"] = beta[t, s]
    cols.update(_dist_path(panel, distribution(disp, th.sell), span, s, e, x, entry))
    for h in horizons:
        cols[f"hit_{h}d"] = _flag(cols[f"fwd_ret_{h}d"])  # type: ignore[arg-type]
    cols["hit"] = np.where(oae, np.nan, _flag(net))

    trend, regime = _at(context["trend"], t, s), _at(context["regime"], t, s)
    cols["trend"] = decode(trend, TREND_LABELS)
    cols["regime"] = decode(regime, REGIME_LABELS)
    cols["learned_regime"] = decode(_at(context["learned_regime"], t, s), LEARNED_REGIME_LABELS)
    for k in sorted(k for k in context if k.startswith("options_")):
        cols[k] = _at(context[k], t, s)
    avail = parent_etf_available(panel.symbols, panel.sectors)[s]
    aligned = parent_etf_aligned(disp, panel.symbols, panel.sectors, th.buy)[t, s]
    conf = panel.fields["confidence"][t, s] if "confidence" in panel.fields else np.full(t.shape, np.nan)
    boost = _at(context["options_boost"], t, s) if "options_boost" in context else np.ones(t.shape)
    quality = signal_quality(disp[t, s], th.buy, conf, trend, regime, aligned, boost)
    cols["parent_etf_available"], cols["parent_etf_aligned"], cols["confidence"] = avail, aligned, conf
    cols["signal_quality"] = decode(quality, QUALITY_LABELS)
    fm = np.full(t.shape, None, dtype=object)
    closed = ~oae
    fm[closed] = classify_failure_modes(s[closed], e[closed], x[closed], entry[closed], net[closed], panel,
                                        exit_price=exit_[closed])
    cols["failure_mode"] = fm
    return pd.DataFrame(cols)


def high_quality_hit_rate(events: pd.DataFrame) -> float:
    """Share of HIGH-quality CLOSED events with net_return > 0; 0.0 when there is no such event (the same
    convention as the run metric hit_rate with no trades, so a summary never holds NaN)."""
    if events.empty:
        return 0.0
    sel = (events["signal_quality"] == QUALITY_LABELS[int(QUALITY_HIGH)]) & ~events["open_at_end"].astype(bool)
    r = events.loc[sel, "net_return"].to_numpy(dtype=np.float64)
    return float(np.mean(r > 0)) if r.size else 0.0


# ------------------------------------------------------------------------------------------------ baseline


def frequency_baseline(display: np.ndarray, panel: Panel, thresholds: Thresholds, span: Span) -> pd.DataFrame:
    """Per symbol, how often the score fires in the signal window [sig_start, sig_end) (one row per symbol).

    n_accumulation / n_distribution: days in the window; n_acc_episodes: runs of consecutive accumulation days
    (a run continuing from before sig_start counts from sig_start); gap = sessions from an episode's first day to
    the next distribution day (searched up to data_end, exclusive); mean/median over the episodes that have one,
    NaN when none does; signals_per_month = n_accumulation / (window sessions / 21).
    """
    d = np.asarray(display, dtype=np.float64)
    T, N = panel.shape
    check_param(d.shape == (T, N), "display.shape", f"equal to the panel shape {(T, N)}", d.shape)
    a, b, de = span.sig_start, span.sig_end, span.data_end
    acc = accumulation(d[a:b], thresholds.buy)
    dist = distribution(d, thresholds.sell)
    start = acc.copy()
    start[1:] &= ~acc[:-1]
    ts, ss = np.nonzero(start)
    k = _lookup(next_true_index(dist[:de]), ts + a, ss)
    gap = np.where(k != _NONE, k - (ts + a), np.nan).astype(np.float64)
    g = pd.DataFrame({"s": ss, "gap": gap}).groupby("s")["gap"]
    mean = g.mean().reindex(range(N)).to_numpy(dtype=np.float64, na_value=np.nan)
    median = g.median().reindex(range(N)).to_numpy(dtype=np.float64, na_value=np.nan)
    n_acc = acc.sum(axis=0).astype(np.int64)
    months = span.sessions / SESSIONS_PER_MONTH
    return pd.DataFrame({
        "symbol": np.array(panel.symbols, dtype=object),
        "sector_etf": np.array(panel.sectors, dtype=object),
        "n_accumulation": n_acc,
        "n_distribution": dist[a:b].sum(axis=0).astype(np.int64),
        "n_acc_episodes": start.sum(axis=0).astype(np.int64),
        "mean_gap_acc_to_dist": mean,
        "median_gap_acc_to_dist": median,
        "signals_per_month": n_acc / months if months > 0 else np.zeros(N),
    })


# ------------------------------------------------------------------------------------------------ summary


def _iso(panel: Panel, i: int) -> str:
    return str(np.datetime64(panel.dates[i], "D"))


def backtest_summary(result: Result, events: pd.DataFrame, panel: Panel) -> dict[str, object]:
    """Flat dict for one run: identifiers (``SUMMARY_ID_KEYS``: signal-window first/last session, last data
    session, sessions, n_symbols, panel fingerprint), the config (``Config.to_params`` keys), every metric
    of ``result.metrics`` (``METRIC_KEYS``) and ``high_quality_hit_rate`` / ``high_quality_trades`` (HIGH-quality closed events)."""
    sp = result.span
    out: dict[str, object] = {
        "start_date": _iso(panel, sp.sig_start),
        "end_date": _iso(panel, sp.sig_end - 1),
        "data_end_date": _iso(panel, sp.data_end - 1),
        "sessions": int(sp.sessions),
        "n_symbols": int(panel.shape[1]),
        "fingerprint": panel.fingerprint(),
    }
    params = result.config.to_params()
    out.update({k: params[k] for k in PARAM_KEYS if k in params})
    out.update({k: float(v) for k, v in result.metrics.items()})
    out["high_quality_hit_rate"] = high_quality_hit_rate(events)
    if events.empty:
        out["high_quality_trades"] = 0.0
    else:
        hq = (events["signal_quality"] == QUALITY_LABELS[int(QUALITY_HIGH)]) & ~events["open_at_end"].astype(bool)
        out["high_quality_trades"] = float(hq.sum())
    return out
