"""The signal-sandbox chart: one symbol's flow inputs and three score variants, stacked on a shared date axis.

Eight rows (trace names in quotes):

1. combined buy/sell ratio ``(short_buy + lit_buy) / (short_sell + lit_sell)`` — "Combined buy/sell ratio";
2. volume-weighted directional flow ``short_buy + lit_buy − short_sell − lit_sell`` — "VW directional flow";
3. FINRA short-sale buy volume bars — "FINRA buy volume";
4. short-sale buy/sell ratio with horizontal lines at 1.25 and 0.75 — "Short buy/sell ratio";
5.–7. the accumulation score of variants B (current), vw_flow and blended — "Score B (current)", "Score vw_flow",
   "Score blended" — as bars coloured by the score (red → grey → green over 0–100) with a low-opacity confidence
   bar (×100), and the DOT_MODE overlay: accumulation (score >= buy) dots above the bars at 104 and distribution
   (score <= sell) dots below them at −6, taken from the dot source(s) of ``dot_mode`` on every score row;
8. ``imbalance · log1p(B + S)`` with imb = (B − S)/(B + S) (the variant D input) — "Imbalance·log1p(B+S)".

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

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimizer.data.calendar import DateLike, session_days
from optimizer.data.symbols import canonical_symbol, unknown_symbols_message
from optimizer.engine.features import FeatureCache
from optimizer.engine.panel import Panel, load_panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.errors import DataError, check_param
from optimizer.report.files import save_figure

__all__ = [
    "load_sandbox_panel", "sandbox_figure", "sandbox_data", "write_sandbox", "SCORE_VARIANTS", "RATIO_LINES",
    "SCORE_COLORSCALE", "DOT_MODES", "DOT_SOURCES", "DOT_SPECS",
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
_ROW_TITLES = (
    "Combined buy/sell ratio (short + lit)", "Volume-weighted directional flow", "FINRA short-sale buy volume",
    "Short-sale buy/sell ratio", "Accumulation score — B (current)", "Accumulation score — vw_flow",
    "Accumulation score — blended", "Imbalance · log1p(B + S) (variant D input)",
)


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
                       end: DateLike | None = None, z_window: int = 20) -> Panel:
    """The one symbol the sandbox draws, from ``2 * z_window`` sessions before ``start`` (the z-scores' warm-up:
    every score is a trailing window, so the values equal those of a full-history load) to ``end``.

    Bounded memory and time whatever the store holds. The coverage is stated (``Panel.coverage``), not
    enforced: the chart shows holes as gaps."""
    sym = canonical_symbol(symbol, "ticker")
    lo = None
    if start is not None:
        s0 = pd.Timestamp(start).date()
        warm = session_days(s0 - dt.timedelta(days=4 * int(z_window) + 30), s0)
        lo = pd.Timestamp(warm[-min(len(warm), 2 * int(z_window) + 1)]).date() if len(warm) else s0
    found = con.execute("SELECT count(*) FROM daily_metrics WHERE symbol = ?", [sym]).fetchone()[0]
    if not found:
        raise DataError(unknown_symbols_message(con, "daily_metrics", [sym]))
    return load_panel(con, [sym], lo, end, min_coverage=None)


def sandbox_data(panel: Panel, symbol: str, start: DateLike | None = None, end: DateLike | None = None,
                 z_window: int = 20) -> pd.DataFrame:
    """The chart's series for ``symbol`` in [start, end]: date, combined_ratio, vw_flow, short_buy_volume,
    short_buy_sell_ratio, score_B, score_vw_flow, score_blended, confidence (0..1), imbalance_log.

    DataError for a symbol not in the panel (naming some that are) and for a range without rows of the symbol.
    """
    sym = canonical_symbol(symbol, "symbol")
    if sym not in panel.symbols:
        some = ", ".join(panel.symbols[:12]) + (" ..." if len(panel.symbols) > 12 else "")
        raise DataError(f"symbol {symbol!r} is not in the panel ({len(panel.symbols)} symbols: {some})")
    j = panel.symbols.index(sym)
    one = panel.subset([sym])
    cache = FeatureCache(one)
    scores = {v: display_score(cache, ScoreParams(variant=v, z_window=int(z_window)))[:, 0] for v, _ in SCORE_VARIANTS}
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
        "combined_ratio": combined, "vw_flow": B + lb - S - ls, "short_buy_volume": B,
        "short_buy_sell_ratio": _field(panel, "short_buy_sell_ratio", j),
        **{f"score_{v}": scores[v] for v, _ in SCORE_VARIANTS},
        "confidence": _field(panel, "confidence", j), "imbalance_log": imb_log,
    })
    rows = _rows(panel, start, end)
    df = df.iloc[rows].reset_index(drop=True)
    has = df.drop(columns=["date", "vw_flow"]).notna().any(axis=1) | np.isfinite(B[rows]) | np.isfinite(S[rows])
    if df.empty or not bool(has.any()):
        d = panel.dates
        span = f"{d[0]} to {d[-1]}" if len(d) else "no sessions"
        raise DataError(f"no rows for {sym} between {start or 'the start'} and {end or 'the end'}; the panel covers {span}")
    return df


def _ys(a) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def _shift(x: list[str], sessions: float) -> list[str]:
    if sessions == 0:
        return x
    return [(pd.Timestamp(v) + pd.Timedelta(hours=24 * sessions)).strftime("%Y-%m-%d %H:%M:%S") for v in x]


def _score_row(fig: go.Figure, x: list[str], df: pd.DataFrame, variant: str, label: str, row: int,
               buy: float, sell: float, dot_mode: str) -> None:
    s = df[f"score_{variant}"].to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=x, y=_ys(100 * df["confidence"].to_numpy(dtype=float)), name=f"Confidence ×100 ({variant})",
                         marker_color="#90a4ae", opacity=0.25, legendgroup="confidence", showlegend=row == 5),
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
                                     customdata=_ys(v[mask]), legendgroup=f"{key}-{kind}", showlegend=row == 5,
                                     hovertemplate="%{x}<br>" + src + " %{customdata:.1f}<extra>" + kind + "</extra>"),
                          row=row, col=1)
    for y, color in ((buy, "#2e7d32"), (sell, "#c62828")):
        fig.add_hline(y=y, line=dict(color=color, dash="dot", width=1), row=row, col=1)
    fig.update_yaxes(range=[-10, 108], row=row, col=1)


def sandbox_figure(panel: Panel, symbol: str, start: DateLike | None = None, end: DateLike | None = None,
                   z_window: int = 20, buy: float = 70, sell: float = 30, dot_mode: str = "current") -> go.Figure:
    """The eight-row sandbox Figure for ``symbol`` (see the module docstring; ``dot_mode`` in ``DOT_MODES``)."""
    check_param(0 <= sell < buy <= 100, "sell", f"in [0, buy={buy}) with buy <= 100", sell)
    check_param(dot_mode in DOT_MODES, "dot_mode", f"one of {', '.join(DOT_MODES)}", dot_mode)
    df = sandbox_data(panel, symbol, start, end, z_window)
    sym = canonical_symbol(symbol, "symbol")
    x = [d.strftime("%Y-%m-%d") for d in df["date"]]
    fig = make_subplots(rows=8, cols=1, shared_xaxes=True, vertical_spacing=0.025, subplot_titles=_ROW_TITLES)
    fig.add_trace(go.Scatter(x=x, y=_ys(df["combined_ratio"]), name="Combined buy/sell ratio", mode="lines",
                             line=dict(color="#1f77b4"), connectgaps=False), row=1, col=1)
    fig.add_hline(y=1.0, line=dict(color="#9e9e9e", dash="dot", width=1), row=1, col=1)
    flow = df["vw_flow"].to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=x, y=_ys(flow), name="VW directional flow",
                         marker_color=["#2e7d32" if v > 0 else "#c62828" for v in np.nan_to_num(flow)]), row=2, col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(df["short_buy_volume"]), name="FINRA buy volume", marker_color="#4f6d9a"),
                  row=3, col=1)
    fig.add_trace(go.Scatter(x=x, y=_ys(df["short_buy_sell_ratio"]), name="Short buy/sell ratio", mode="lines",
                             line=dict(color="#4f6d9a"), connectgaps=False), row=4, col=1)
    for y, color, text in ((RATIO_LINES[0], "#2e7d32", "1.25"), (RATIO_LINES[1], "#c62828", "0.75")):
        fig.add_hline(y=y, line=dict(color=color, dash="dash", width=1), annotation_text=text,
                      annotation_position="top left", row=4, col=1)
    for i, (variant, label) in enumerate(SCORE_VARIANTS):
        _score_row(fig, x, df, variant, label, 5 + i, buy, sell, dot_mode)
    fig.add_trace(go.Scatter(x=x, y=_ys(df["imbalance_log"]), name="Imbalance·log1p(B+S)", mode="lines",
                             line=dict(color="#6a5a9a"), connectgaps=False), row=8, col=1)
    fig.add_hline(y=0.0, line=dict(color="#9e9e9e", dash="dot", width=1), row=8, col=1)
    fig.update_layout(title=f"{sym} signal sandbox (z_window {z_window}, buy {buy:g}, sell {sell:g}, dots {dot_mode})",
                      template="plotly_white", height=1900, barmode="overlay", bargap=0.1,
                      legend=dict(orientation="h", y=-0.03))
    fig.update_xaxes(rangebreaks=[dict(bounds=["sat", "mon"])])  # sessions only: no weekend gaps between bars
    return fig


def write_sandbox(fig: go.Figure, path: str | Path, png: bool | None = None) -> list[Path]:
    """Write ``path`` as self-contained HTML, plus a PNG beside it (``png``: None = when kaleido is installed,
    True = required, False = never); the paths written."""
    return save_figure(fig, path, png=png)
