"""The signal-sandbox chart: one symbol's price with the trades of a configuration, its score, its flow inputs
and three score variants, stacked on a shared date axis (every axis labelled with its unit).

Ten rows (trace names in quotes):

1. price (USD): OHLC candles ("Price") with the configuration's trades: entry markers (triangle up at the entry
   fill, the next open after the signal) and exit markers (triangle down at the exit fill), coloured by outcome
   (win green, loss red, still open at the end grey), a dotted segment from entry to exit, hover with the dates,
   prices, net return, sessions held and exit reason; traces "Entries (win|loss|open)", "Exits (win|loss|open)",
   "Trades (win|loss|open)";
2. the configuration's own score, the display its trades come from (``Evaluator.display``: its variant, weights,
   z-window and OTC intensity, the regime-conditional weights and the options boost when it has them, a trial's
   min_periods), with its buy and sell thresholds as lines (a configuration with regime-conditional buy
   thresholds: the buy threshold of each session's regime, "Buy threshold (by regime)") — "Configuration score";
3. combined buy/sell ratio ``(short_buy + lit_buy) / (short_sell + lit_sell)`` — "Combined buy/sell ratio";
4. volume-weighted directional flow ``short_buy + lit_buy − short_sell − lit_sell`` — "VW directional flow";
5. FINRA short-sale buy volume bars — "FINRA buy volume";
6. short-sale buy/sell ratio with horizontal lines at 1.25 and 0.75 — "Short buy/sell ratio";
7.–9. the accumulation score of variants B (current), vw_flow and blended (the configuration's weights, z-window
   and intensity, the variant swapped) — "Score B (current)", "Score vw_flow", "Score blended" — as bars coloured
   by the score (red → grey → green over 0–100) with a low-opacity confidence bar (×100), and the DOT_MODE overlay:
   accumulation (score >= buy) dots above the bars at 104 and distribution (score <= sell) dots below them at −6,
   taken from the dot source(s) of ``dot_mode`` on every score row;
10. ``imbalance · log1p(B + S)`` with imb = (B − S)/(B + S) (the variant D input) — "Imbalance·log1p(B+S)".

The configuration (``Config``; default: the engine defaults) sets the thresholds of every score row and the trades
of row 1. Its trades come from the engine (``Evaluator.run`` over the whole panel, the same path as ``backtest``),
so they are the ones ``accumopt backtest`` reports for the symbol with the same parameters over the same sessions;
a configuration with position caps depends on the other symbols and is simulated on its universe's panel
(``sandbox_trades``'s ``universe_panel``).

Lit volumes missing on a day count as 0 inside the combined ratio and the flow (as in the engine's vw_flow). The
scores are computed on the whole panel (``FeatureCache`` + ``display_score``; trailing windows only) and then cut to
[start, end], so the first sessions of the range are not z-score warm-up.

DOT_MODE, as the design's sandbox notebook has it (``DOT_MODE = 'current'  # 'current', 'option_a', 'option_b',
'all'`` with ``dot_sources = {'current': acc_score_current, 'option_a': acc_score_a (vw_flow), 'option_b':
acc_score_b (blended)}``): ``current`` overlays the dots of score B, ``option_a`` those of vw_flow, ``option_b``
those of blended, on all three score rows, so one variant's signals can be read against the others' bars; ``all``
overlays the three sources side by side (x offsets −0.18 / 0 / +0.18 of a session, colours green/red, blue/purple,
yellow/orange as the design's DOT_SPECS). Dot traces are named "<mode> accumulation (<variant>)" /
"<mode> distribution (<variant>)".
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimizer.data.calendar import DateLike, as_date
from optimizer.data.store import connect
from optimizer.data.symbols import canonical_symbol, unknown_symbols_message
from optimizer.data.universe import universe_spelling
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.panel import Panel, load_panel, warmup_start
from optimizer.engine.score import display_score
from optimizer.errors import DataError, ParameterError, check_param
from optimizer.params import engine_params
from optimizer.report.files import save_figure
from optimizer.report.lines import add_hlines
from optimizer.report.theme import themed
from optimizer.study.data_settings import data_settings_rows
from optimizer.data.splitcheck import suspect_split_lines, suspect_splits
from optimizer.study.data import load_universe_panel, universe_symbols
from optimizer.engine.regime_filter import REGIME_NAMES, regime_entry_mask
from optimizer.engine.simulate import Span
from optimizer.study.records import ConfigRecord
from optimizer.study.reserve import guard_end, opening_warning, record_if_opened, refuse_reserve

__all__ = [
    "load_sandbox_panel", "sandbox_figure", "sandbox_data", "sandbox_trades", "sandbox_run", "SandboxRun",
    "write_sandbox", "SCORE_VARIANTS",
    "RATIO_LINES", "SCORE_COLORSCALE", "DOT_MODES", "DOT_SOURCES", "DOT_SPECS", "ROW", "OUTCOME_COLORS",
]

SCORE_VARIANTS: tuple[tuple[str, str], ...] = (("B", "Score B (current)"), ("vw_flow", "Score vw_flow"),
                                               ("blended", "Score blended"))
RATIO_LINES = (1.25, 0.75)
DOT_MODES: tuple[str, ...] = ("current", "option_a", "option_b", "all")
DOT_SOURCES: dict[str, str] = {"current": "B", "option_a": "vw_flow", "option_b": "blended"}
# (accumulation colour, distribution colour, x offset in sessions when every source is shown): the design's DOT_SPECS
DOT_SPECS: dict[str, tuple[str, str, float]] = {
    "current": ("#2e7d32", "#c62828", -0.18), "option_a": ("#1e88e5", "#8e24aa", 0.0),
    "option_b": ("#f9a825", "#ef6c00", 0.18),
}
DOT_ACC_Y, DOT_DIST_Y = 104.0, -6.0
SCORE_COLORSCALE = [[0.0, "#c62828"], [0.5, "#9e9e9e"], [1.0, "#2e7d32"]]
# (row title, y-axis title with the unit) per row, top to bottom
_ROWS = (
    ("Price and the configuration's trades", "price (USD)"),
    ("Configuration score", "score (0–100)"),
    ("Combined buy/sell ratio (short + lit)", "ratio (buy / sell)"),
    ("Volume-weighted directional flow", "shares (buy − sell)"),
    ("FINRA short-sale buy volume", "shares"),
    ("Short-sale buy/sell ratio", "ratio (buy / sell)"),
    ("Accumulation score — B (current)", "score (0–100)"),
    ("Accumulation score — vw_flow", "score (0–100)"),
    ("Accumulation score — blended", "score (0–100)"),
    ("Imbalance · log1p(B + S) (variant D input)", "imbalance × ln(1 + shares)"),
)
ROW = {"price": 1, "config": 2, "combined": 3, "flow": 4, "volume": 5, "ratio": 6, "B": 7, "vw_flow": 8, "blended": 9,
       "imbalance": 10}
OUTCOME_COLORS = {"win": "#2e7d32", "loss": "#c62828", "open": "#757575"}


def _field(panel: Panel, name: str, j: int) -> np.ndarray:
    f = panel.fields.get(name)
    return np.full(len(panel.dates), np.nan) if f is None else np.asarray(f[:, j], dtype=np.float64)


def _rows(panel: Panel, start, end) -> np.ndarray:
    d = np.asarray(panel.dates, dtype="datetime64[D]")
    lo = np.datetime64(pd.Timestamp(start).date(), "D") if start is not None else d[0] if len(d) else None
    hi = np.datetime64(pd.Timestamp(end).date(), "D") if end is not None else d[-1] if len(d) else None
    if start is not None and end is not None:
        check_param(lo <= hi, "start", f"<= end={hi}", str(lo))
    return np.flatnonzero((d >= lo) & (d <= hi)) if len(d) else np.empty(0, np.int64)


def load_sandbox_panel(con: duckdb.DuckDBPyConnection, symbol: str, start: DateLike | None = None,
                       end: DateLike | None = None, z_window: int = 20, *,
                       panel_start: DateLike | None = None) -> Panel:
    """The one symbol the sandbox draws, from ``2 * z_window`` sessions before ``start`` (the z-scores' warm-up:
    every score is a trailing window, so the values equal those of a full-history load) to ``end``; from exactly
    ``panel_start`` when given (a trial's panel start: its z-scores' min_periods count from there).

    Bounded memory and time whatever the store holds. The coverage is stated (``Panel.coverage``), not
    enforced: the chart shows holes as gaps."""
    sym = canonical_symbol(symbol, "ticker")
    lo = panel_start if panel_start is not None else None if start is None else warmup_start(start, 2 * int(z_window))
    found = con.execute("SELECT count(*) FROM daily_metrics WHERE symbol = ?", [sym]).fetchone()[0]
    if not found:
        raise DataError(unknown_symbols_message(con, "daily_metrics", [sym]))
    return load_panel(con, [sym], lo, end, min_coverage=None)


def _config(config: Config | None, z_window: int | None = None, buy: float | None = None,
            sell: float | None = None) -> Config:
    """``config`` (default: the engine defaults) with the given z-window / thresholds set (checked by the engine)."""
    cfg = config or Config()
    over = {k: v for k, v in (("z_window", z_window), ("buy_threshold", buy), ("sell_threshold", sell)) if v is not None}
    return Config.from_params(over, base=cfg) if over else cfg


def sandbox_data(panel: Panel, symbol: str, start: DateLike | None = None, end: DateLike | None = None,
                 z_window: int | None = None, config: Config | None = None, *,
                 min_periods: int | None = None) -> pd.DataFrame:
    """The chart's series for ``symbol`` in [start, end]: date, open, high, low, close, score_config,
    buy_threshold, combined_ratio, vw_flow, short_buy_volume, short_buy_sell_ratio, score_B, score_vw_flow,
    score_blended, confidence (0..1), imbalance_log.

    ``score_config`` is the configuration's display score as the engine trades on it (``Evaluator.display``:
    regime-conditional weights and the options boost included; default: the engine defaults) and
    ``buy_threshold`` its buy threshold of each session (regime-conditional buy thresholds applied); the variant
    scores use the configuration's weights, z-window and intensity with the variant swapped. ``z_window`` sets the
    z-window of every score, ``min_periods`` that of the z-scores (a trial's). DataError for a symbol not in the
    panel (naming some that are) and for a range without rows of the symbol.
    """
    sym = canonical_symbol(symbol, "symbol")
    if sym not in panel.symbols:
        some = ", ".join(panel.symbols[:12]) + (" ..." if len(panel.symbols) > 12 else "")
        raise DataError(f"symbol {symbol!r} is not in the panel ({len(panel.symbols)} symbols: {some})")
    cfg = _config(config, z_window)
    sp = cfg.score
    j = panel.symbols.index(sym)
    one = panel.subset([sym])
    ev = Evaluator(one, min_periods=min_periods)  # the engine's display: the score the trades come from
    cache = ev.features
    scores = {v: display_score(cache, replace(sp, variant=v))[:, 0] for v, _ in SCORE_VARIANTS}
    own = ev.display(cfg)[:, 0]
    rows_b = cfg.regime.threshold_rows(cfg.thresholds, ev.regime_codes())
    buy_line = np.full(len(one.dates), float(cfg.thresholds.buy)) if rows_b is None else rows_b[0]
    B, S = _field(panel, "short_buy_volume", j), _field(panel, "short_sell_volume", j)
    lb = np.nan_to_num(_field(panel, "lit_buy_volume", j), nan=0.0)
    ls = np.nan_to_num(_field(panel, "lit_sell_volume", j), nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = S + ls
        combined = np.where(den > 0, (B + lb) / den, np.nan)
        tot = B + S
        imb_log = np.where(tot > 0, (B - S) / tot * np.log1p(tot), np.nan)
    df = pd.DataFrame({
        "date": pd.to_datetime(np.asarray(panel.dates, dtype="datetime64[D]")),
        **{k: _field(panel, k, j) for k in ("open", "high", "low", "close")}, "score_config": own,
        "buy_threshold": buy_line,
        "combined_ratio": combined, "vw_flow": B + lb - S - ls, "short_buy_volume": B,
        "short_buy_sell_ratio": _field(panel, "short_buy_sell_ratio", j),
        **{f"score_{v}": scores[v] for v, _ in SCORE_VARIANTS},
        "confidence": _field(panel, "confidence", j), "imbalance_log": imb_log,
    })
    rows = _rows(panel, start, end)
    df = df.iloc[rows].reset_index(drop=True)
    flows = df.drop(columns=["date", "vw_flow", "open", "high", "low", "close", "buy_threshold"])
    has = flows.notna().any(axis=1) | np.isfinite(B[rows]) | np.isfinite(S[rows])
    if df.empty or not bool(has.any()):
        d = panel.dates
        span = f"{d[0]} to {d[-1]}" if len(d) else "no sessions"
        raise DataError(f"no rows for {sym} between {start or 'the start'} and {end or 'the end'}; the panel covers {span}")
    return df


def sandbox_trades(panel: Panel, symbol: str, config: Config | None = None,
                   universe_panel: Panel | None = None, *, signal_start: DateLike | None = None,
                   regime: str = "ALL", min_periods: int | None = None) -> pd.DataFrame:
    """The trades of ``config`` on ``symbol``: the engine's ``Evaluator.run`` over every session of the panel (the
    path ``backtest`` takes), one row per trade with symbol, signal/entry/exit dates and prices, gross and net
    return, sessions held, exit reason, open_at_end and ``outcome`` (win: net return > 0, loss, open).

    Without position caps the symbols are independent, so the symbol alone gives the trades a universe run gives
    it. With caps (max_positions / max_per_sector) its trades depend on the others: ``universe_panel`` (the
    universe the configuration runs on) is required and simulated whole. ``signal_start`` (first session signals
    count: a trial's span start), ``regime`` (the entry filter) and ``min_periods`` (of the z-scores): a trial's, as
    ``backtest`` runs them.
    """
    sym = canonical_symbol(symbol, "symbol")
    cfg = config or Config()
    capped = cfg.caps.max_positions is not None or cfg.caps.max_per_sector is not None
    if capped:
        if universe_panel is None or sym not in universe_panel.symbols:
            raise ParameterError(f"universe_panel: a configuration with position caps (max_positions="
                                 f"{cfg.caps.max_positions}, max_per_sector={cfg.caps.max_per_sector}) trades {sym} "
                                 "depending on the other symbols; pass the panel of its universe (holding the symbol)")
        p = universe_panel
    else:
        if sym not in panel.symbols:
            raise DataError(f"symbol {symbol!r} is not in the panel ({len(panel.symbols)} symbols)")
        p = panel.subset([sym])
    lo = 0 if signal_start is None else p.index_of(signal_start)
    res = Evaluator(p, min_periods=min_periods).run(cfg, Span(lo, len(p.dates), len(p.dates)),
                                                    entry_ok=regime_entry_mask(p, regime))
    df = res.trades.to_frame(p)
    if df.empty:
        return pd.DataFrame(columns=_TRADE_COLUMNS)
    df = df[df["symbol"] == sym].reset_index(drop=True)
    df["outcome"] = np.where(df["open_at_end"], "open", np.where(df["net_ret"] > 0, "win", "loss"))
    return df[list(_TRADE_COLUMNS)]


_TRADE_COLUMNS = ("symbol", "signal_date", "entry_date", "exit_date", "entry_price", "exit_price", "gross_ret",
                  "net_ret", "hold_days", "exit_reason", "open_at_end", "score", "outcome")


def _ys(a) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def _shift(x: list[str], sessions: float) -> list[str]:
    if sessions == 0:
        return x
    return [(pd.Timestamp(v) + pd.Timedelta(hours=24 * sessions)).strftime("%Y-%m-%d %H:%M:%S") for v in x]


def _score_row(fig: go.Figure, x: list[str], df: pd.DataFrame, variant: str, label: str, row: int,
               buy: float, sell: float, dot_mode: str, lines: list[dict]) -> None:
    s = df[f"score_{variant}"].to_numpy(dtype=float)
    first = row == ROW["B"]
    fig.add_trace(go.Bar(x=x, y=_ys(100 * df["confidence"].to_numpy(dtype=float)), name=f"Confidence ×100 ({variant})",
                         marker_color="#90a4ae", opacity=0.25, legendgroup="confidence", showlegend=first),
                  row=row, col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(s), name=label, marker=dict(color=np.nan_to_num(s, nan=50.0).tolist(),
                                                                  colorscale=SCORE_COLORSCALE, cmin=0, cmax=100),
                         hovertemplate="%{x}<br>score %{y:.1f}<extra>" + label + "</extra>"), row=row, col=1)
    for key in (("current", "option_a", "option_b") if dot_mode == "all" else (dot_mode,)):
        src = DOT_SOURCES[key]
        v = df[f"score_{src}"].to_numpy(dtype=float)
        acc_c, dist_c, off = DOT_SPECS[key]
        xs = _shift(x, off if dot_mode == "all" else 0.0)
        with np.errstate(invalid="ignore"):
            acc, dist = v >= buy, v <= sell
        for mask, kind, y, color in ((acc, "accumulation", DOT_ACC_Y, acc_c), (dist, "distribution", DOT_DIST_Y, dist_c)):
            fig.add_trace(go.Scatter(x=[xi for xi, k in zip(xs, mask) if k], y=[y] * int(mask.sum()), mode="markers",
                                     name=f"{key} {kind} ({src})", marker=dict(color=color, size=7),
                                     customdata=_ys(v[mask]), legendgroup=f"{key}-{kind}", showlegend=first,
                                     hovertemplate="%{x}<br>" + src + " %{customdata:.1f}<extra>" + kind + "</extra>"),
                          row=row, col=1)
    _threshold_lines(fig, row, buy, sell, lines)


def _threshold_lines(fig: go.Figure, row: int, buy: float | None, sell: float, lines: list[dict]) -> None:
    """The buy and sell lines of a score row, added to ``lines`` (drawn by ``add_hlines``), and its y range."""
    for y, color, text in ((buy, "#2e7d32", f"buy {buy:g}" if buy is not None else ""),
                           (sell, "#c62828", f"sell {sell:g}")):
        if y is None:  # drawn per session (regime-conditional buy thresholds)
            continue
        lines.append(dict(y=y, line=dict(color=color, dash="dot", width=1), annotation_text=text,
                          annotation_position="top right", annotation_font_size=9, row=row, col=1))
    fig.update_yaxes(range=[-10, 108], row=row, col=1)


def _day(v) -> str:
    return pd.Timestamp(v).strftime("%Y-%m-%d")


def _price_row(fig: go.Figure, x: list[str], df: pd.DataFrame, trades: pd.DataFrame) -> None:
    """Row 1: OHLC candles and the trades whose entry or exit falls in the shown range (module docstring)."""
    fig.add_trace(go.Candlestick(x=x, open=_ys(df["open"]), high=_ys(df["high"]), low=_ys(df["low"]),
                                 close=_ys(df["close"]), name="Price", increasing_line_color="#4c9a6a",
                                 decreasing_line_color="#b85c5c", showlegend=False), row=1, col=1)
    shown = set(x)
    for outcome, color in OUTCOME_COLORS.items():
        t = trades[trades["outcome"] == outcome] if len(trades) else trades
        info = [f"entry {_day(r.entry_date)} @ {r.entry_price:.2f}<br>"
                + (f"open at {_day(r.exit_date)}, marked @ {r.exit_price:.2f}" if r.open_at_end
                   else f"exit {_day(r.exit_date)} @ {r.exit_price:.2f} ({r.exit_reason})")
                + f"<br>net {100 * r.net_ret:+.2f}% in {int(r.hold_days)} sessions" for r in t.itertuples(index=False)]
        ent = [i for i, r in enumerate(t.itertuples(index=False)) if _day(r.entry_date) in shown]
        ext = [i for i, r in enumerate(t.itertuples(index=False)) if _day(r.exit_date) in shown]
        label = {"win": "win", "loss": "loss", "open": "open at the end"}[outcome]
        seg_x: list = []
        seg_y: list = []
        for r in t.itertuples(index=False):
            if _day(r.entry_date) in shown or _day(r.exit_date) in shown:
                seg_x += [_day(r.entry_date), _day(r.exit_date), None]
                seg_y += [float(r.entry_price), float(r.exit_price), None]
        fig.add_trace(go.Scatter(x=seg_x, y=seg_y, mode="lines", name=f"Trades ({outcome})", hoverinfo="skip",
                                 line=dict(color=color, width=1, dash="dot"), legendgroup=f"trades-{outcome}",
                                 showlegend=False), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=[_day(t["entry_date"].iloc[i]) for i in ent], y=[float(t["entry_price"].iloc[i]) for i in ent],
            mode="markers", name=f"Entries ({outcome})", legendgroup=f"trades-{outcome}",
            marker=dict(symbol="triangle-up", size=11, color=color, line=dict(color="#212121", width=1)),
            customdata=[info[i] for i in ent], hovertemplate="%{customdata}<extra>entry, " + label + "</extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(
            x=[_day(t["exit_date"].iloc[i]) for i in ext], y=[float(t["exit_price"].iloc[i]) for i in ext],
            mode="markers", name=f"Exits ({outcome})", legendgroup=f"trades-{outcome}",
            marker=dict(symbol="circle-open" if outcome == "open" else "triangle-down", size=11, color=color,
                        line=dict(color=color if outcome == "open" else "#212121", width=1 if outcome != "open" else 2)),
            customdata=[info[i] for i in ext], hovertemplate="%{customdata}<extra>exit, " + label + "</extra>"),
            row=1, col=1)
    fig.update_xaxes(rangeslider_visible=False, row=1, col=1)


def sandbox_figure(panel: Panel, symbol: str, start: DateLike | None = None, end: DateLike | None = None,
                   z_window: int | None = None, buy: float | None = None, sell: float | None = None,
                   dot_mode: str = "current", config: Config | None = None, trades: pd.DataFrame | None = None,
                   universe_panel: Panel | None = None, *, min_periods: int | None = None,
                   settings: Mapping[str, Any] | None = None) -> go.Figure:
    """The ten-row sandbox Figure for ``symbol`` (see the module docstring; ``dot_mode`` in ``DOT_MODES``).

    ``config``: the configuration whose score, thresholds and trades are drawn (default: the engine defaults);
    ``z_window`` / ``buy`` / ``sell`` override its z-window and thresholds. ``trades``: the configuration's trades
    (default: ``sandbox_trades`` on ``panel``, or on ``universe_panel`` for a configuration with position caps).
    ``settings``: the data settings the trades ran with (``SandboxRun.settings``), stated under the title in the
    wording of ``study.data_settings`` (universe, span and final reserve, regime filter, min_periods, costs).
    """
    check_param(dot_mode in DOT_MODES, "dot_mode", f"one of {', '.join(DOT_MODES)}", dot_mode)
    cfg = _config(config, z_window, buy, sell)
    buy, sell, zw = cfg.thresholds.buy, cfg.thresholds.sell, cfg.score.z_window
    df = sandbox_data(panel, symbol, start, end, config=cfg, min_periods=min_periods)
    if trades is None:
        trades = sandbox_trades(panel, symbol, cfg, universe_panel)
    sym = canonical_symbol(symbol, "symbol")
    x = [d.strftime("%Y-%m-%d") for d in df["date"]]
    heights = [0.2, 0.09] + [0.0885] * 8
    fig = make_subplots(rows=len(_ROWS), cols=1, shared_xaxes=True, vertical_spacing=0.022, row_heights=heights,
                        subplot_titles=[t for t, _ in _ROWS])
    _price_row(fig, x, df, trades)
    lines: list[dict] = []  # the horizontal lines, drawn once every row has its traces (add_hlines)
    sc = df["score_config"].to_numpy(dtype=float)
    fig.add_trace(go.Scatter(x=x, y=_ys(sc), name="Configuration score", mode="lines", line=dict(color="#37474f"),
                             connectgaps=False, hovertemplate="%{x}<br>score %{y:.1f}<extra>configuration</extra>"),
                  row=ROW["config"], col=1)
    by_regime = df["buy_threshold"].to_numpy(dtype=float)
    if cfg.regime.thresholded:  # the buy threshold of each session's regime, as the engine applies it
        fig.add_trace(go.Scatter(x=x, y=_ys(by_regime), name="Buy threshold (by regime)", mode="lines",
                                 line=dict(color="#2e7d32", dash="dot", width=1, shape="hv"),
                                 hovertemplate="%{x}<br>buy %{y:g}<extra>regime threshold</extra>"),
                      row=ROW["config"], col=1)
        _threshold_lines(fig, ROW["config"], None, sell, lines)
    else:
        _threshold_lines(fig, ROW["config"], buy, sell, lines)
    r = ROW["combined"]
    fig.add_trace(go.Scatter(x=x, y=_ys(df["combined_ratio"]), name="Combined buy/sell ratio", mode="lines",
                             line=dict(color="#1f77b4"), connectgaps=False), row=r, col=1)
    lines.append(dict(y=1.0, line=dict(color="#9e9e9e", dash="dot", width=1), row=r, col=1))
    flow = df["vw_flow"].to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=x, y=_ys(flow), name="VW directional flow",
                         marker_color=["#2e7d32" if v > 0 else "#c62828" for v in np.nan_to_num(flow)]),
                  row=ROW["flow"], col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(df["short_buy_volume"]), name="FINRA buy volume", marker_color="#4f6d9a"),
                  row=ROW["volume"], col=1)
    r = ROW["ratio"]
    fig.add_trace(go.Scatter(x=x, y=_ys(df["short_buy_sell_ratio"]), name="Short buy/sell ratio", mode="lines",
                             line=dict(color="#4f6d9a"), connectgaps=False), row=r, col=1)
    for y, color, text in ((RATIO_LINES[0], "#2e7d32", "1.25"), (RATIO_LINES[1], "#c62828", "0.75")):
        lines.append(dict(y=y, line=dict(color=color, dash="dash", width=1), annotation_text=text,
                          annotation_position="top left", row=r, col=1))
    for variant, label in SCORE_VARIANTS:
        _score_row(fig, x, df, variant, label, ROW[variant], buy, sell, dot_mode, lines)
    r = ROW["imbalance"]
    fig.add_trace(go.Scatter(x=x, y=_ys(df["imbalance_log"]), name="Imbalance·log1p(B+S)", mode="lines",
                             line=dict(color="#6a5a9a"), connectgaps=False), row=r, col=1)
    lines.append(dict(y=0.0, line=dict(color="#9e9e9e", dash="dot", width=1), row=r, col=1))
    add_hlines(fig, lines)
    for i, (_, unit) in enumerate(_ROWS, start=1):
        fig.update_yaxes(title_text=unit, title_font_size=10, row=i, col=1)
    fig.update_xaxes(title_text="date (NYSE sessions)", row=len(_ROWS), col=1)
    n = len(trades)
    closed = trades[~trades["open_at_end"].astype(bool)] if n else trades
    wins = int((closed["net_ret"] > 0).sum()) if n else 0
    sp = cfg.score
    themed(fig).update_layout(
        title=dict(text=f"{sym} signal sandbox: variant {sp.variant}, z_window {zw}, buy {buy:g} / sell {sell:g}, exit "
                        f"{_exit_name(cfg)}; {n} trade{'s' if n != 1 else ''} ({wins} of {len(closed)} closed won) "
                        f"over {_day(panel.dates[0])}..{_day(panel.dates[-1])}; dots {dot_mode}"
                        + ("" if not settings else
                           "<br><sup>" + html.escape("; ".join(t for _, t in data_settings_rows(settings))) + "</sup>"),
                   font_size=14),
        height=2300, barmode="overlay", bargap=0.1, legend=dict(orientation="h", y=-0.03))
    fig.update_xaxes(rangebreaks=[dict(bounds=["sat", "mon"])])  # sessions only: no weekend gaps between bars
    return fig


def _exit_name(cfg: Config) -> str:
    e = cfg.exit
    if e.rule == "fixed":
        return f"fixed_{e.hold_days}d"
    if e.rule == "hybrid":
        return f"hybrid_{e.max_days}d"
    return e.rule


@dataclass(frozen=True, eq=False)
class SandboxRun:
    """What the sandbox draws for one symbol: its ``panel`` (every session up to the end, so the scores are warm
    and positions carry in), the ``config``, its ``trades`` (``sandbox_trades``) and the z-scores' ``min_periods``
    (a trial's; None = the window)."""

    panel: Panel
    config: Config
    trades: pd.DataFrame
    min_periods: int | None = None
    warnings: tuple[str, ...] = ()  # the loud warning of a repeated opening of the final reserve
    settings: Mapping[str, Any] | None = None  # the data settings it ran with (``study.data_settings``), for the page


def sandbox_run(db: str | Path, symbol: str, start: DateLike | None = None, end: DateLike | None = None,
                params: Mapping[str, Any] | None = None, universe: Any = None, z_window: int | None = None,
                buy: float | None = None, sell: float | None = None, final: bool = False,
                record: ConfigRecord | None = None, regime: str | None = None, span_start: DateLike | None = None,
                min_periods: int | None = None) -> SandboxRun:
    """Load ``symbol`` from the store at ``db`` and simulate the configuration ``params`` (a flat parameter dict,
    presets and switches accepted; default: the engine defaults; ``z_window`` / ``buy`` / ``sell`` override it)
    over every session up to ``end``, exactly as ``backtest`` does; ``start`` only limits what is drawn. A
    configuration with position caps runs on ``universe`` (default tier1+3), like ``backtest --universe``.

    The final reserve is guarded as ``backtest`` guards it: without ``final`` the default end is the last session
    before the reserve of ``universe`` (default tier1+3) and an ``end`` inside it is refused; with ``final`` the
    run may include it and the opening is recorded in the store's reserve ledger.

    ``record``: a trial's effective configuration (``study best``): the simulation starts at its panel start, counts
    signals from its span start, filters entries by its regime and uses its min_periods and universe; its default
    end is the trial's data end (with ``final``: its study's last session, the reserve's end, or the store's last
    session for a record without it) and its reserve the trial's, as ``backtest --params`` runs it. ``regime``:
    the entry filter (default: the record's, else ALL). ``span_start`` / ``min_periods``: of a configuration
    without a record (a loose parameters file's): the simulation starts at ``span_start`` as ``backtest --params`` starts it (panel
    and signals; the z-scores warm up inside the span) and its z-scores use ``min_periods``; both are ignored with
    a ``record``, whose panel start and min_periods rule."""
    as_date(start, "start"), as_date(end, "end")  # a date that does not parse is one line naming the flag
    cfg = _config(Config.from_params(engine_params(params)) if params else None, z_window, buy, sell)
    capped = cfg.caps.max_positions is not None or cfg.caps.max_per_sector is not None
    if universe is not None and record is not None and not capped:  # nothing would read it (explore21)
        raise ParameterError(f"universe has no effect: the configuration has no position caps, so {symbol}'s trades "
                             f"depend on no other symbol, and the trial's record sets its span and reserve; leave "
                             f"it out, got universe={universe!r}")
    # a universe given here in one spelling, as resolved (``universe_spelling``: ' TIER1 ' is tier1), as backtest's
    uni_name = ((universe_spelling(universe) if universe else None)
                or (record.universe if record is not None else None) or "tier1+3")
    uni_name = list(uni_name) if isinstance(uni_name, tuple) else uni_name
    reg = regime if regime is not None else (record.regime if record is not None else "ALL")
    check_param(reg in REGIME_NAMES, "regime", f"one of {', '.join(REGIME_NAMES)}", reg)
    if record is not None:  # the trial's reserve; its default end: its data end, with ``final`` its study's end
        end = end if end is not None else (record.data_end if not final else record.study_end)
        if not final:
            refuse_reserve(end, record.reserve_start, "sandbox (--end)")
        reserve_start = record.reserve_start
    else:
        end, reserve_start = guard_end(db, universe_symbols(db, uni_name), end, final, "sandbox (--end)")
    panel_start = record.panel_start if record is not None else span_start
    con = connect(db, read_only=True)
    try:
        panel = load_sandbox_panel(con, symbol, None, end, panel_start=panel_start)
        splits = suspect_split_lines(suspect_splits(con, panel.symbols, panel.dates[0], panel.dates[-1]))
    finally:
        con.close()
    if start is not None:
        _rows(panel, start, end)  # a start after the end is refused here, before any simulation
    notes: tuple[str, ...] = tuple(f"warning: {w}" for w in splits)  # a split the store does not record
    if final:
        earlier = record_if_opened(db, reserve_start, panel.dates[-1], "sandbox --final", str(panel.symbols[0]))
        w = opening_warning(reserve_start, earlier or [])
        notes += (w,) if w else ()
    uni = load_universe_panel(db, uni_name, panel_start, end) if capped else None
    signal_start = span_start
    if record is not None:
        signal_start, min_periods = record.signal_start, record.min_periods
    trades = sandbox_trades(panel, symbol, cfg, uni, signal_start=signal_start, regime=reg, min_periods=min_periods)
    first = _day(panel.dates[0] if signal_start is None else panel.dates[panel.index_of(signal_start)])
    settings = {
        "universe": uni_name if capped else f"none: {panel.symbols[0]} alone (no position caps, its trades do not "
                                            "depend on other symbols)",
        "span": [first, _day(panel.dates[-1])], "reserve_start": reserve_start, "final": final, "regime": reg,
        "min_periods": min_periods, "panel_start": _day(panel.dates[0]) if _day(panel.dates[0]) != first else None,
        "costs": {"commission_bps": cfg.costs.commission_bps, "slippage_bps": cfg.costs.slippage_bps},
    }
    return SandboxRun(panel, cfg, trades, min_periods, notes, settings)


def write_sandbox(fig: go.Figure, path: str | Path, png: bool | None = None) -> list[Path]:
    """Write ``path`` as self-contained HTML, plus a PNG beside it (``png``: None = when kaleido is installed,
    True = required, False = never); the paths written."""
    return save_figure(fig, path, png=png)
