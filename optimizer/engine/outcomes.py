"""Per-event OUTCOMES of a backtest, the frequency baseline and the run summary (pure numpy/pandas, no I/O).

``signal_events`` turns a ``Result`` into one row per accumulation signal that opened a trade (the rows of
``bt_signal_events``, with the design's column names): the trade itself, forward returns, the path to the first
distribution day, hit flags, the point-in-time CONTEXT at the signal date and the trade's failure mode. Outcome
columns read bars after the signal by design; they are reports and must never feed a score or a filter.

Data limit: every outcome reads rows < ``span.data_end`` only (the same bars the simulation could read), so the
events of a fold never see data past that fold. Definitions (t = signal row, e = entry row = t + 1, s = symbol;
docs/ENGINE.md "bt_ tables" has every column):

- event_id = 1..n in the frame's order (entry row, then symbol); (run_id, event_id) is the stored key.
- date = the signal session; score_value = display[t, s]; score_variant / buy_threshold / sell_threshold / z_window
  = the run's configuration (per row, as the design's table keeps several configurations side by side);
  signal_buy_threshold = the buy threshold the signal crossed: its session's regime's ``buy_threshold_<r>`` when the
  configuration has one (``RegimeParams.threshold_rows``, as the engine applies it), else buy_threshold.
- signal_close = close[t, s]; entry_price = the fill at open[e].
- fwd_return_<h>d = open[e+h]/open[e] − 1 (``context.forward_returns``); NaN when e+h >= data_end or an open is NaN.
- fwd_return_<h>d_rel = fwd_return_<h>d − beta[t]·(SPY open[e+h]/open[e] − 1) (``market_relative_forward_returns``).
- days_to_first_dist = k − e for the first k >= e with a distribution close (display <= sell); NaN if none.
- days_to_2x_consec_dist = k − e for the first k >= e+1 with distribution at k and k−1; NaN if none.
- return_at_first_dist / return_at_2x_consec_dist = open[j]/entry − 1, j = first finite open at or after k+1
  (the engine's fill rule); gross, no costs; NaN when there is none before data_end.
- max_drawdown_before_dist = min(low[e..end])/entry − 1 and max_gain_before_dist = max(high[e..end])/entry − 1
  (signed returns), end = the first distribution row (inclusive), or the exit row when there is none.
- hit_<h>d = fwd_return_<h>d > 0; hit_at_dist = return_at_first_dist > 0 (profitable at the first-distribution
  exit); hit = net_return > 0 for closed trades. Nullable booleans: NULL when the return is NaN (hit: open at end).
- trend_state, sma_20_slope, price_vs_sma_20_pct, rsi_14, regime, spy_vs_sma_50, vix_level, learned_regime,
  opt_put_call_ratio, opt_iv_percentile, opt_put_call_ratio_5d_chg and options_*: the context at t.
- lit_z = rolling z of lit_flow_imbalance over the run's z_window at t (the score's lit term);
  options_boost = the design's boost at the signal (``squeeze_boost``: the score-independent part plus the squeeze
  term, which needs score >= 75); signal_quality = ``context.signal_quality`` (the design's rule).
- failure_mode: ``classify_failure_modes`` for losing closed trades; NULL for winners (the design: "NULL if
  profitable") and for trades open at the end of the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from optimizer.errors import check_param
from optimizer.engine.context import (
    LEARNED_REGIME_LABELS, QUALITY_HIGH, QUALITY_LABELS, REGIME_LABELS, TREND_LABELS, classify_failure_modes, decode,
    forward_returns, market_relative_forward_returns, parent_etf_aligned, parent_etf_available, signal_quality,
    squeeze_boost,
)
from optimizer.engine.evaluate import PARAM_KEYS, Result
from optimizer.engine.metrics import SESSIONS_PER_MONTH
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_codes
from optimizer.data.rolling import rolling_zscore
from optimizer.engine.signals import accumulation, distribution
from optimizer.engine.simulate import EXIT_REASONS, ExitParams, Span, Thresholds

__all__ = [
    "HORIZONS", "EVENT_COLUMNS", "BASELINE_COLUMNS", "SUMMARY_ID_KEYS", "SUMMARY_EXTRA_METRICS", "DESIGN_OPTION_COLUMNS",
    "RUN_METRIC_NAMES", "signal_events", "high_quality_hit_rate", "frequency_baseline", "backtest_summary",
    "next_true_index", "exit_strategy_name",
]

HORIZONS: tuple[int, ...] = (1, 3, 5, 10, 20)

# The design's names for three options context keys (the other options_* keys keep the context's names).
DESIGN_OPTION_COLUMNS: dict[str, str] = {
    "options_put_call": "opt_put_call_ratio",
    "options_iv_percentile": "opt_iv_percentile",
    "options_put_call_change_5": "opt_put_call_ratio_5d_chg",
}



def _event_columns(horizons: Sequence[int], option_keys: Sequence[str] = ()) -> tuple[str, ...]:
    """The event frame's column order: the design's columns, then extras; other options_* keys go before
    parent_etf_available."""
    hs = [int(h) for h in horizons]
    return (
        "event_id", "date", "symbol", "sector_etf", "score_variant", "score_value", "buy_threshold", "sell_threshold",
        "z_window", "entry_date", "entry_price", "signal_close", "exit_date", "exit_price", "exit_reason",
        "net_return", "gross_return", "hold_days", "open_at_end",
        "trend_state", "sma_20_slope", "price_vs_sma_20_pct", "rsi_14",
        "opt_put_call_ratio", "opt_iv_percentile", "opt_put_call_ratio_5d_chg",
        "regime", "spy_vs_sma_50", "vix_level", "learned_regime", "learned_regime_prob", "regime_multiplier",
        *(f"fwd_return_{h}d" for h in hs), *(f"fwd_return_{h}d_rel" for h in hs), "beta",
        "days_to_first_dist", "days_to_2x_consec_dist", "return_at_first_dist", "return_at_2x_consec_dist",
        "max_drawdown_before_dist", "max_gain_before_dist",
        "hit_at_dist", *(f"hit_{h}d" for h in hs), "hit", *option_keys,
        "parent_etf_available", "parent_etf_aligned", "confidence", "lit_z", "options_boost", "signal_quality",
        "failure_mode", "signal_buy_threshold",
    )


# Fixed part of the event columns (the other options_* context keys are inserted before parent_etf_available).
EVENT_COLUMNS: tuple[str, ...] = _event_columns(HORIZONS)
BASELINE_COLUMNS: tuple[str, ...] = (
    "symbol", "sector_etf", "score_variant", "date_start", "date_end", "accum_signals_count", "dist_signals_count",
    "accum_episodes_count", "dist_episodes_count", "avg_gap_accum_to_dist", "median_gap_accum_to_dist",
    "avg_gap_dist_to_accum", "median_gap_dist_to_accum", "signals_per_month",
)
SUMMARY_ID_KEYS: tuple[str, ...] = (
    "score_variant", "exit_strategy", "ticker_universe", "regime_filter", "date_start", "date_end", "data_end_date",
    "sessions", "n_symbols", "fingerprint", "panel_start", "min_periods",
)
SUMMARY_EXTRA_METRICS: tuple[str, ...] = ("high_quality_hit_rate", "high_quality_trades")
# Run metrics stored under the design's bt_backtest_runs names (METRIC_KEYS name -> design name).
RUN_METRIC_NAMES: dict[str, str] = {"win_loss": "win_loss_ratio", "sharpe": "sharpe_ratio"}

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


def _flag(x: np.ndarray) -> pd.arrays.BooleanArray:
    """Nullable boolean: True where x > 0, False where x <= 0, NULL (pd.NA) where x is NaN."""
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return pd.arrays.BooleanArray(a > 0, ~np.isfinite(a))


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
        out[f"return_at_{name}"] = _ret(fill, entry)
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
    result's config. Columns: ``EVENT_COLUMNS`` with the context's other ``options_*`` keys inserted before
    ``parent_etf_available`` (fwd/hit columns follow ``horizons``). See the module docstring for definitions.
    """
    cfg = result.config
    th = thresholds or cfg.thresholds
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
    n = len(order)
    score = disp[t, s]
    rows = cfg.regime.threshold_rows(th, regime_codes(panel)) if cfg.regime.thresholded else None
    buy_rows = np.full(T, float(th.buy)) if rows is None else np.asarray(rows[0], dtype=np.float64)
    signal_buy = buy_rows[t]  # the threshold each signal crossed (its session's regime's)
    close = panel.fields["close"] if "close" in panel.fields else np.full((T, N), np.nan)

    cols: dict[str, object] = {
        "event_id": np.arange(1, n + 1, dtype=np.int64),
        "date": _dates(panel, t), "symbol": np.array(panel.symbols, dtype=object)[s],
        "sector_etf": np.array(panel.sectors, dtype=object)[s],
        "score_variant": np.full(n, cfg.score.variant, dtype=object), "score_value": score,
        "buy_threshold": np.full(n, float(th.buy)), "sell_threshold": np.full(n, float(th.sell)),
        "z_window": np.full(n, int(cfg.score.z_window), dtype=np.int64),
        "entry_date": _dates(panel, e), "entry_price": entry, "signal_close": close[t, s],
        "exit_date": _dates(panel, x), "exit_price": exit_,
        "exit_reason": np.array(EXIT_REASONS, dtype=object)[tr.exit_reason[order]],
        "net_return": net, "gross_return": gross, "hold_days": (x - e).astype(np.int64), "open_at_end": oae,
    }
    beta = np.asarray(context["beta"], dtype=np.float64)
    check_param(beta.shape == (T, N), "context['beta'].shape", f"equal to the panel shape {(T, N)} "
                "(pass compute_context(panel) of the same panel)", beta.shape)
    trend = _at(context["trend"], t, s)
    cols["trend_state"] = decode(trend, TREND_LABELS)
    for k in ("sma_20_slope", "price_vs_sma_20_pct", "rsi_14"):
        cols[k] = _at(context[k], t, s)
    for k, name in DESIGN_OPTION_COLUMNS.items():
        cols[name] = _at(context[k], t, s)
    regime = _at(context["regime"], t, s)
    cols["regime"] = decode(regime, REGIME_LABELS)
    for k in ("spy_vs_sma_50", "vix_level"):
        cols[k] = _at(context[k], t, s)
    cols["learned_regime"] = decode(_at(context["learned_regime"], t, s), LEARNED_REGIME_LABELS)
    for k in ("learned_regime_prob", "regime_multiplier"):
        cols[k] = _at(context[k], t, s)
    fwd = forward_returns(panel["open"][:de], horizons)
    rel = market_relative_forward_returns(panel["open"][:de], panel.market["spy_open"][:de], beta[:de], horizons)
    for h in horizons:
        cols[f"fwd_return_{h}d"] = fwd[int(h)][t, s]
    for h in horizons:
        cols[f"fwd_return_{h}d_rel"] = rel[int(h)][t, s]
    cols["beta"] = beta[t, s]
    cols.update(_dist_path(panel, distribution(disp, th.sell), span, s, e, x, entry))
    cols["hit_at_dist"] = _flag(cols["return_at_first_dist"])  # type: ignore[arg-type]
    for h in horizons:
        cols[f"hit_{h}d"] = _flag(cols[f"fwd_return_{h}d"])  # type: ignore[arg-type]
    cols["hit"] = _flag(np.where(oae, np.nan, net))

    skip = {*DESIGN_OPTION_COLUMNS, "options_boost_base"}
    opt_keys = sorted(k for k in context if k.startswith("options_") and k not in skip)
    for k in opt_keys:
        cols[k] = _at(context[k], t, s)
    avail = parent_etf_available(panel.symbols, panel.sectors)[s]
    aligned = parent_etf_aligned(disp, panel.symbols, panel.sectors, buy_rows[:, None])[t, s]
    conf = panel.fields["confidence"][t, s] if "confidence" in panel.fields else np.full(n, np.nan)
    lit = panel.fields.get("lit_flow_imbalance")
    lit_z = (rolling_zscore(lit, int(cfg.score.z_window))[t, s] if lit is not None and n else np.full(n, np.nan))
    base = _at(context["options_boost_base"], t, s) if "options_boost_base" in context else np.ones(n)
    put_max = _at(context["options_otm_put_z_max5"], t, s) if "options_otm_put_z_max5" in context else np.full(n, np.nan)
    boost = squeeze_boost(base, put_max, score)
    pc = cols["opt_put_call_ratio"]
    quality = signal_quality(score, signal_buy, trend, pc, aligned, lit_z, boost)
    cols["parent_etf_available"], cols["parent_etf_aligned"], cols["confidence"] = avail, aligned, conf
    cols["lit_z"], cols["options_boost"] = lit_z, boost
    cols["signal_quality"] = decode(quality, QUALITY_LABELS)
    fm = np.full(n, None, dtype=object)
    closed = ~oae
    fm[closed] = classify_failure_modes(s[closed], e[closed], x[closed], entry[closed], net[closed], panel,
                                        exit_price=exit_[closed])
    fm[fm == "NONE"] = None
    cols["failure_mode"] = fm
    cols["signal_buy_threshold"] = signal_buy
    return pd.DataFrame({c: cols[c] for c in _event_columns(horizons, opt_keys)})


def high_quality_hit_rate(events: pd.DataFrame) -> float:
    """Share of HIGH-quality CLOSED events with net_return > 0; 0.0 when there is no such event (the same
    convention as the run metric hit_rate with no trades, so a summary never holds NaN)."""
    if events.empty:
        return 0.0
    sel = (events["signal_quality"] == QUALITY_LABELS[int(QUALITY_HIGH)]) & ~events["open_at_end"].astype(bool)
    r = events.loc[sel, "net_return"].to_numpy(dtype=np.float64)
    return float(np.mean(r > 0)) if r.size else 0.0


# ------------------------------------------------------------------------------------------------ baseline


def _episode_gaps(start: np.ndarray, target: np.ndarray, offset: int, de: int) -> tuple[np.ndarray, np.ndarray]:
    """(symbol, gap) per episode start: sessions from the episode's first day (row ts + offset) to the next
    ``target`` day at or after it, searched up to data_end (exclusive); NaN when there is none."""
    ts, ss = np.nonzero(start)
    k = _lookup(next_true_index(target[:de]), ts + offset, ss)
    return ss, np.where(k != _NONE, k - (ts + offset), np.nan).astype(np.float64)


def frequency_baseline(display: np.ndarray, panel: Panel, thresholds: Thresholds, span: Span,
                       score_variant: str | None = None) -> pd.DataFrame:
    """Per symbol, how often the score fires in the signal window [sig_start, sig_end) (one row per symbol; the
    design's bt_frequency_baseline columns).

    accum_signals_count / dist_signals_count: accumulation / distribution days in the window; accum / dist
    episodes: runs of consecutive such days (a run continuing from before sig_start counts from sig_start);
    gap accum->dist = sessions from an accumulation episode's first day to the next distribution day, gap
    dist->accum = from a distribution episode's first day to the next accumulation day (both searched up to
    data_end, exclusive); avg / median over the episodes that have one, NaN when none does;
    signals_per_month = accum_signals_count / (window sessions / 21); date_start / date_end = the window's first /
    last session; score_variant as given (the design keeps one baseline per variant).
    """
    d = np.asarray(display, dtype=np.float64)
    T, N = panel.shape
    check_param(d.shape == (T, N), "display.shape", f"equal to the panel shape {(T, N)}", d.shape)
    a, b, de = span.sig_start, span.sig_end, span.data_end
    acc_all = accumulation(d, thresholds.buy)
    dist_all = distribution(d, thresholds.sell)
    acc, dist = acc_all[a:b], dist_all[a:b]
    starts = {}
    for name, m in (("acc", acc), ("dist", dist)):
        st = m.copy()
        st[1:] &= ~m[:-1]
        starts[name] = st

    def stats(ss: np.ndarray, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = pd.DataFrame({"s": ss, "gap": gap}).groupby("s")["gap"]
        return (g.mean().reindex(range(N)).to_numpy(dtype=np.float64, na_value=np.nan),
                g.median().reindex(range(N)).to_numpy(dtype=np.float64, na_value=np.nan))

    ad_mean, ad_median = stats(*_episode_gaps(starts["acc"], dist_all, a, de))
    da_mean, da_median = stats(*_episode_gaps(starts["dist"], acc_all, a, de))
    n_acc = acc.sum(axis=0).astype(np.int64)
    months = span.sessions / SESSIONS_PER_MONTH
    dates = np.asarray(panel.dates, dtype="datetime64[D]")
    return pd.DataFrame({
        "symbol": np.array(panel.symbols, dtype=object),
        "sector_etf": np.array(panel.sectors, dtype=object),
        "score_variant": np.full(N, score_variant, dtype=object),
        "date_start": np.full(N, dates[a]).astype("datetime64[ns]") if b > a else np.full(N, np.datetime64("NaT", "ns")),
        "date_end": np.full(N, dates[b - 1]).astype("datetime64[ns]") if b > a else np.full(N, np.datetime64("NaT", "ns")),
        "accum_signals_count": n_acc,
        "dist_signals_count": dist.sum(axis=0).astype(np.int64),
        "accum_episodes_count": starts["acc"].sum(axis=0).astype(np.int64),
        "dist_episodes_count": starts["dist"].sum(axis=0).astype(np.int64),
        "avg_gap_accum_to_dist": ad_mean,
        "median_gap_accum_to_dist": ad_median,
        "avg_gap_dist_to_accum": da_mean,
        "median_gap_dist_to_accum": da_median,
        "signals_per_month": n_acc / months if months > 0 else np.zeros(N),
    })


# ------------------------------------------------------------------------------------------------ summary


def _iso(panel: Panel, i: int) -> str:
    return str(np.datetime64(panel.dates[i], "D"))


def exit_strategy_name(exit_params: ExitParams) -> str:
    """The design's exit_strategy label: fixed_<N>d, first_dist, 2x_consec_dist, score_decay, hybrid_<M>d."""
    if exit_params.rule == "fixed":
        return f"fixed_{int(exit_params.hold_days)}d"
    if exit_params.rule == "hybrid":
        return f"hybrid_{int(exit_params.max_days)}d"
    return str(exit_params.rule)


def backtest_summary(result: Result, events: pd.DataFrame, panel: Panel, universe: str | None = None,
                     regime_filter: str = "ALL", min_periods: int | None = None) -> dict[str, object]:
    """Flat dict for one run (a row of bt_backtest_runs): identifiers (``SUMMARY_ID_KEYS``: score_variant,
    exit_strategy, ticker_universe, regime_filter, date_start / date_end = the signal window's first / last
    session, last data session, sessions, n_symbols, panel fingerprint, panel_start = the panel's first session,
    where the z-scores warm up from, min_periods = of the z-scores, None = the z-window), the config
    (``Config.to_params`` keys), every metric of ``result.metrics`` (``METRIC_KEYS``, with win_loss and sharpe under the design's names
    win_loss_ratio and sharpe_ratio, ``RUN_METRIC_NAMES``) and ``high_quality_hit_rate`` / ``high_quality_trades`` (HIGH-quality closed
    events). ``universe`` is the name or list the panel was built from (default: the panel's symbols, comma
    separated); ``regime_filter`` the regime the entries were restricted to (ALL = none)."""
    sp = result.span
    cfg = result.config
    out: dict[str, object] = {
        "score_variant": cfg.score.variant,
        "exit_strategy": exit_strategy_name(cfg.exit),
        "ticker_universe": str(universe) if universe is not None else ",".join(panel.symbols),
        "regime_filter": str(regime_filter),
        "date_start": _iso(panel, sp.sig_start),
        "date_end": _iso(panel, sp.sig_end - 1),
        "data_end_date": _iso(panel, sp.data_end - 1),
        "sessions": int(sp.sessions),
        "n_symbols": int(panel.shape[1]),
        "fingerprint": panel.fingerprint(),
        "panel_start": _iso(panel, 0),
        "min_periods": None if min_periods is None else int(min_periods),
    }
    params = cfg.to_params()
    out.update({k: params[k] for k in PARAM_KEYS if k in params})
    out.update({RUN_METRIC_NAMES.get(k, k): float(v) for k, v in result.metrics.items()})
    out["high_quality_hit_rate"] = high_quality_hit_rate(events)
    if events.empty:
        out["high_quality_trades"] = 0.0
    else:
        hq = (events["signal_quality"] == QUALITY_LABELS[int(QUALITY_HIGH)]) & ~events["open_at_end"].astype(bool)
        out["high_quality_trades"] = float(hq.sum())
    return out
