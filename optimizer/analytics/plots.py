"""Pressure plots (from ``daily_metrics``) and OHLCV price charts (from ``prices_daily``) as plotly Figures.

``pressure_plot(mode="layered")``: 4 panels on a shared date axis —
 1. short-sale buy/sell ratio with the BOT (1.25) and SELL (0.75) lines and a marker only where the ratio CROSSES
    a line: ▲ "BOT crossing" (from below 1.25 to at or above it), ▼ "SELL crossing" (from above 0.75 to at or below
    it); the hover names the day's agreement (▲ both bullish, ▼ both bearish, ◆ divergence;
    :func:`optimizer.analytics.tables.agreement`);
 2. lit flow imbalance with ±0.1 (dotted) / ±0.2 (dashed) lines, gaps where NULL (connectgaps=False);
 3. OTC participation bars coloured by its z-score, and week-over-week delta bars (drawn on the first session
    that sees a new OTC week);
 4. the engine's display score 0–100 (the score the backtest trades on, default parameters or ``score``;
    :func:`tables.engine_scores`) with confidence bars (×100), the buy / sell thresholds as lines and a marker only
    where the score crosses one: "Buy crossing" (to >= buy from below), "Sell crossing" (to <= sell from above).

A crossing needs the previous session's value: a session after a gap (NaN) is not a crossing.
``mode="short_only"``: short ratio (with lines), short-sale volume (with total volume), close price.
``mode="both"``: the tuple (layered, short_only).

Write them with ``optimizer.report.files.save_figure`` (self-contained HTML; a PNG when kaleido is importable by
default, always with ``png=True``, never with ``png=False``).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from rich.console import Console

from optimizer.errors import DataError, check_param
from optimizer.data.calendar import DateLike, as_date
from optimizer.data.symbols import canonical_symbol
from optimizer.analytics.tables import agreement, engine_scores, require_symbols, table_columns
from optimizer.engine.score import ScoreParams
from optimizer.engine.simulate import Thresholds
from optimizer.report.lines import add_hlines
from optimizer.report.theme import themed
from optimizer.report.terminal import Column, print_frame

__all__ = [
    "MODES",
    "crossings",
    "TIMEFRAMES",
    "BOT_LINE",
    "SELL_LINE",
    "pressure_data",
    "pressure_plot",
    "price_data",
    "resample_ohlcv",
    "price_chart",
    "render_pressure",
    "render_price",
]

MODES = ("layered", "short_only", "both")
TIMEFRAMES = ("daily", "weekly", "monthly")
BOT_LINE, SELL_LINE = 1.25, 0.75
_PRESSURE_COLS = (
    "date", "close", "return_z", "short_volume", "total_volume", "short_buy_sell_ratio", "short_buy_sell_ratio_z",
    "lit_flow_imbalance", "lit_flow_imbalance_z", "otc_week_start", "otc_participation_rate", "otc_participation_z",
    "otc_status", "confidence",
)
_GREEN, _RED, _GREY, _BLUE = "#4c9a6a", "#b85c5c", "#9a9a9a", "#4f6d9a"


def _range(start, end) -> tuple:
    s, e = as_date(start, "start"), as_date(end, "end")
    if s is not None and e is not None:
        check_param(s <= e, "start", f"<= end={e}", str(s))
    return s, e


def _load_range(con: duckdb.DuckDBPyConnection, table: str, ticker: str, cols: list[str], start, end) -> pd.DataFrame:
    """Rows of ``table`` for ``ticker`` in [start, end]; DataError for an unknown ticker or an empty range."""
    t = canonical_symbol(ticker, "ticker")
    require_symbols(con, table, [t])
    s, e = _range(start, end)
    have = table_columns(con, table)
    sel = ", ".join(c if c in have else f"NULL AS {c}" for c in cols)
    df = con.execute(
        f"SELECT {sel} FROM {table} WHERE symbol = ? AND (?::DATE IS NULL OR date >= ?::DATE) "
        f"AND (?::DATE IS NULL OR date <= ?::DATE) ORDER BY date",
        [t, s, s, e, e],
    ).df()
    if df.empty:
        lo, hi = con.execute(f"SELECT min(date), max(date) FROM {table} WHERE symbol = ?", [t]).fetchone()
        raise DataError(f"no {table} rows for {t} between {s or 'the start'} and {e or 'the end'}; {t} has data from {lo} to {hi}")
    df["date"] = pd.to_datetime(df["date"])
    return df


def _num(df: pd.DataFrame, c: str) -> np.ndarray:
    return pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)


def pressure_data(con: duckdb.DuckDBPyConnection, ticker: str, start: DateLike | None = None,
                  end: DateLike | None = None, score: ScoreParams | None = None) -> pd.DataFrame:
    """daily_metrics rows of ``ticker`` in [start, end] plus accumulation_score (the engine's display score),
    agreement and otc_wow_delta."""
    df = _load_range(con, "daily_metrics", ticker, list(_PRESSURE_COLS), start, end)
    sc = engine_scores(con, [canonical_symbol(ticker, "ticker")], df["date"].iloc[0], df["date"].iloc[-1], score)
    df["accumulation_score"] = sc.iloc[:, 0].reindex(pd.DatetimeIndex(df["date"])).to_numpy()
    df["agreement"] = agreement(_num(df, "short_buy_sell_ratio_z"), _num(df, "lit_flow_imbalance"))
    wk = pd.to_datetime(df["otc_week_start"])
    new_week = wk.notna() & (wk != wk.shift())
    firsts = df.loc[new_week, "otc_participation_rate"].astype(float)
    delta = pd.Series(np.nan, index=df.index)
    delta.loc[firsts.index] = firsts.diff().to_numpy()
    df["otc_wow_delta"] = delta
    return df


def _xs(df: pd.DataFrame) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in df["date"]]


def _ys(values) -> list:
    """Floats with None for NaN (plotly draws a gap)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def _ratio_panel(fig, df: pd.DataFrame, row: int, markers: bool, lines: list[dict]) -> None:
    """The ratio row: its trace (and crossing markers); its BOT / SELL lines added to ``lines`` (``add_hlines``)."""
    x, r = _xs(df), _num(df, "short_buy_sell_ratio")
    fig.add_trace(go.Scatter(x=x, y=_ys(r), name="Short buy/sell ratio", mode="lines", line=dict(color=_BLUE),
                             connectgaps=False), row=row, col=1)
    lines.append(dict(y=BOT_LINE, line=dict(color=_GREEN, dash="dash", width=1), annotation_text="BOT 1.25",
                      annotation_position="top left", row=row, col=1))
    lines.append(dict(y=SELL_LINE, line=dict(color=_RED, dash="dash", width=1), annotation_text="SELL 0.75",
                      annotation_position="bottom left", row=row, col=1))
    if not markers:
        return
    ag = df["agreement"].to_numpy(dtype=object)
    for name, mask, symbol, colour in (("BOT crossing", crossings(r, BOT_LINE, up=True), "triangle-up", _GREEN),
                                       ("SELL crossing", crossings(r, SELL_LINE, up=False), "triangle-down", _RED)):
        fig.add_trace(go.Scatter(
            x=[xi for xi, k in zip(x, mask) if k], y=_ys(r[mask]), name=name, mode="markers",
            marker=dict(symbol=symbol, size=10, color=colour), customdata=[a or "no agreement data" for a in ag[mask]],
            hovertemplate="%{x}<br>ratio %{y:.3f}<br>%{customdata}<extra>" + name + "</extra>"), row=row, col=1)


def crossings(values: np.ndarray, level: float, up: bool = True) -> np.ndarray:
    """True on the sessions where ``values`` crosses ``level``: up, from < level on the previous session to
    >= level; down, from > level to <= level. The first session and a session after a NaN are never crossings."""
    v = np.asarray(values, dtype=np.float64)
    prev = np.concatenate([[np.nan], v[:-1]])
    with np.errstate(invalid="ignore"):
        hit = (v >= level) & (prev < level) if up else (v <= level) & (prev > level)
    return hit & np.isfinite(prev) & np.isfinite(v)


def _layered(df: pd.DataFrame, ticker: str, buy: float = 70.0, sell: float = 30.0):
    fig = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.3, 0.22, 0.22, 0.26],
        subplot_titles=("Short-sale buy/sell ratio", "Lit flow imbalance", "OTC participation (weekly)",
                        "Accumulation score (engine, 0–100) & confidence ×100"),
    )
    x = _xs(df)
    lines: list[dict] = []  # the horizontal lines, drawn once every row has its traces (add_hlines)
    _ratio_panel(fig, df, 1, markers=True, lines=lines)
    fig.add_trace(go.Scatter(x=x, y=_ys(_num(df, "lit_flow_imbalance")), name="Lit flow imbalance", mode="lines+markers",
                             connectgaps=False, line=dict(color="#6a5a9a"), marker=dict(size=4)), row=2, col=1)
    for y, dash in ((0.1, "dot"), (-0.1, "dot"), (0.2, "dash"), (-0.2, "dash")):
        lines.append(dict(y=y, line=dict(color=_GREEN if y > 0 else _RED, dash=dash, width=1), row=2, col=1))
    z = np.nan_to_num(_num(df, "otc_participation_z"), nan=0.0)
    fig.add_trace(go.Bar(x=x, y=_ys(_num(df, "otc_participation_rate")), name="OTC participation",
                         marker=dict(color=z.tolist(), colorscale=[[0, "#c98b8b"], [0.5, "#d9d9d9"], [1, "#7fb08f"]],
                                     cmin=-3, cmax=3, cmid=0),
                         customdata=_ys(_num(df, "otc_participation_z")),
                         hovertemplate="%{x}<br>participation %{y:.1%}<br>z %{customdata:.2f}<extra></extra>"), row=3, col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(_num(df, "otc_wow_delta")), name="OTC WoW Δ", marker_color=_GREY, opacity=0.8),
                  row=3, col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(100 * _num(df, "confidence")), name="Confidence ×100", marker_color="#c8d3e6",
                         opacity=0.6), row=4, col=1)
    score = _num(df, "accumulation_score")
    fig.add_trace(go.Scatter(x=x, y=_ys(score), name="Accumulation score", mode="lines",
                             line=dict(color="#2f2f2f"), connectgaps=False), row=4, col=1)
    lines.append(dict(y=50, line=dict(color=_GREY, dash="dot", width=1), row=4, col=1))
    for name, level, up, symbol, colour in (("Buy crossing", buy, True, "triangle-up", _GREEN),
                                            ("Sell crossing", sell, False, "triangle-down", _RED)):
        lines.append(dict(y=level, line=dict(color=colour, dash="dash", width=1),
                          annotation_text=f"{name.split()[0].lower()} {level:g}", annotation_position="top left",
                          row=4, col=1))
        m = crossings(score, level, up)
        fig.add_trace(go.Scatter(x=[xi for xi, k in zip(x, m) if k], y=_ys(score[m]), name=name, mode="markers",
                                 marker=dict(symbol=symbol, size=10, color=colour),
                                 hovertemplate="%{x}<br>score %{y:.1f}<extra>" + name + "</extra>"), row=4, col=1)
    add_hlines(fig, lines)
    fig.update_yaxes(range=[0, 100], row=4, col=1)
    for row, unit in enumerate(("ratio (buy / sell)", "imbalance (−1..1)", "share of volume", "score (0–100)"), start=1):
        fig.update_yaxes(title_text=unit, title_font_size=10, row=row, col=1)
    fig.update_xaxes(title_text="date", row=4, col=1)
    themed(fig).update_layout(title=f"{ticker} accumulation/distribution pressure", height=1000,
                              barmode="overlay", legend=dict(orientation="h", y=-0.05))
    return fig


def _short_only(df: pd.DataFrame, ticker: str):
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.4, 0.3, 0.3],
                        subplot_titles=("Short-sale buy/sell ratio", "Short-sale volume", "Close"))
    x = _xs(df)
    lines: list[dict] = []
    _ratio_panel(fig, df, 1, markers=False, lines=lines)
    add_hlines(fig, lines)
    fig.add_trace(go.Bar(x=x, y=_ys(_num(df, "total_volume")), name="FINRA total volume", marker_color="#d5d9e0"), row=2, col=1)
    fig.add_trace(go.Bar(x=x, y=_ys(_num(df, "short_volume")), name="Short-sale volume", marker_color=_BLUE), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=_ys(_num(df, "close")), name="Close", mode="lines", line=dict(color="#2f2f2f"),
                             connectgaps=False), row=3, col=1)
    for row, unit in enumerate(("ratio (buy / sell)", "shares", "price (USD)"), start=1):
        fig.update_yaxes(title_text=unit, title_font_size=10, row=row, col=1)
    fig.update_xaxes(title_text="date", row=3, col=1)
    themed(fig).update_layout(title=f"{ticker} FINRA short-sale pressure", height=800,
                              barmode="overlay", legend=dict(orientation="h", y=-0.06))
    return fig


def pressure_plot(con: duckdb.DuckDBPyConnection, ticker: str, start: DateLike | None = None,
                  end: DateLike | None = None, mode: str = "layered", score: ScoreParams | None = None,
                  buy: float = 70.0, sell: float = 30.0) -> go.Figure | tuple[go.Figure, go.Figure]:
    """Figure for ``mode`` layered / short_only, or the tuple (layered, short_only) for ``both``; ``score``: the
    score parameters (default: the engine's), ``buy`` / ``sell``: the thresholds whose crossings are marked."""
    check_param(mode in MODES, "mode", f"one of {', '.join(MODES)}", mode)
    Thresholds(buy, sell)  # the engine's rule for a pair of thresholds
    df = pressure_data(con, ticker, start, end, score)
    t = canonical_symbol(ticker, "ticker")
    if mode == "layered":
        return _layered(df, t, buy, sell)
    if mode == "short_only":
        return _short_only(df, t)
    return _layered(df, t, buy, sell), _short_only(df, t)


# --- price charts -------------------------------------------------------------------------------------------


def price_data(con: duckdb.DuckDBPyConnection, ticker: str, start: DateLike | None = None,
               end: DateLike | None = None) -> pd.DataFrame:
    """prices_daily OHLCV rows of ``ticker`` in [start, end] (date, open, high, low, close, volume)."""
    return _load_range(con, "prices_daily", ticker, ["date", "open", "high", "low", "close", "volume"], start, end)


def resample_ohlcv(df: pd.DataFrame, timeframe: str = "weekly") -> pd.DataFrame:
    """Daily bars -> weekly (weeks ending Friday) / monthly bars: open first, high max, low min, close last,
    volume sum. ``date`` is the period's LAST session (the bar is complete then); ``sessions`` counts days."""
    check_param(timeframe in TIMEFRAMES, "timeframe", f"one of {', '.join(TIMEFRAMES)}", timeframe)
    d = df.assign(date=pd.to_datetime(df["date"])).sort_values("date")
    if timeframe == "daily":
        return d.assign(sessions=1).reset_index(drop=True)
    rule = "W-FRI" if timeframe == "weekly" else "ME"
    out = d.set_index("date").resample(rule).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    last = d.set_index("date").assign(_d=d["date"].to_numpy()).resample(rule)["_d"].agg(["max", "count"])
    out = out.assign(date=last["max"], sessions=last["count"])[last["count"] > 0]
    return out.reset_index(drop=True)[["date", "open", "high", "low", "close", "volume", "sessions"]]


def price_chart(con: duckdb.DuckDBPyConnection, ticker: str, timeframe: str = "daily",
                start: DateLike | None = None, end: DateLike | None = None) -> go.Figure:
    """Candlestick OHLCV chart with a volume subplot at the daily / weekly / monthly timeframe."""
    check_param(timeframe in TIMEFRAMES, "timeframe", f"one of {', '.join(TIMEFRAMES)}", timeframe)
    t = canonical_symbol(ticker, "ticker")
    bars = resample_ohlcv(price_data(con, t, start, end), timeframe)
    x = _xs(bars)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.75, 0.25])
    fig.add_trace(go.Candlestick(
        x=x, open=_ys(bars["open"]), high=_ys(bars["high"]), low=_ys(bars["low"]), close=_ys(bars["close"]),
        name=f"{t} {timeframe}", increasing_line_color=_GREEN, decreasing_line_color=_RED,
    ), row=1, col=1)
    up = bars["close"].to_numpy(dtype=float) >= bars["open"].to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=x, y=_ys(bars["volume"]), name="Volume", marker_color=np.where(up, _GREEN, _RED).tolist(),
                         opacity=0.6), row=2, col=1)
    themed(fig).update_layout(title=f"{t} {timeframe} OHLCV", height=700, showlegend=False,
                              xaxis_rangeslider_visible=False)
    fig.update_yaxes(title_text="price (USD)", row=1, col=1)  # every axis names its unit, as the other pages'
    fig.update_yaxes(title_text="volume (shares)", row=2, col=1)
    fig.update_xaxes(title_text="date" if timeframe == "daily" else f"date ({timeframe} bar's last session)",
                     row=2, col=1)
    if timeframe == "daily":
        fig.update_xaxes(rangebreaks=[dict(bounds=["sat", "mon"])])
    return fig


def render_pressure(df: pd.DataFrame, console: Console, last: int = 10, title: str | None = None) -> None:
    """Print the last ``last`` rows of :func:`pressure_data` as a table fitting the console."""
    spec = (("date", "%Y-%m-%d"), ("short_buy_sell_ratio", ".3f"), ("short_buy_sell_ratio_z", "+.2f"),
            ("lit_flow_imbalance", "+.3f"), ("otc_participation_rate", ".1%"), ("otc_status", None),
            ("accumulation_score", ".1f"), ("confidence", ".2f"), ("agreement", None))
    labels = {"short_buy_sell_ratio": "ratio", "short_buy_sell_ratio_z": "ratio_z", "lit_flow_imbalance": "lit_imb",
              "otc_participation_rate": "otc", "accumulation_score": "score", "confidence": "conf"}
    cols = [Column(c, label=labels.get(c), fmt=(lambda v, f=f: pd.Timestamp(v).strftime(f)) if c == "date" else f)
            for c, f in spec]
    print_frame(df.tail(last)[[c for c, _ in spec]], console, title=title or "Pressure (last sessions)", columns=cols,
                hint=None)


def render_price(df: pd.DataFrame, console: Console, last: int = 10, title: str | None = None) -> None:
    """Print the last ``last`` OHLCV bars (daily or resampled) as a table fitting the console."""
    names = ["date", "open", "high", "low", "close", "volume"] + (["sessions"] if "sessions" in df.columns else [])
    cols = [Column("date", fmt=lambda v: pd.Timestamp(v).strftime("%Y-%m-%d"))]
    cols += [Column(c, fmt=",.0f" if c in ("volume", "sessions") else ".2f") for c in names[1:]]
    print_frame(df.tail(last)[names], console, title=title or "OHLCV (last bars)", columns=cols, hint=None)
