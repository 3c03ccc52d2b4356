"""plotly figures of the research and walk-forward reports, built from plain DataFrames (no I/O).

Study figures: :func:`sensitivity_heatmap` (mean objective per cell of two parameters, from the trials table) and
:func:`intermediate_figure` (per-fold intermediate values, complete in blue, pruned in red).
Walk-forward figures: :func:`equity_figure` (stitched OOS equity with its matched random-entry benchmark and the
excess, test windows shaded), :func:`is_oos_figure`
(in-sample vs out-of-sample rank_score and avg_excess_return per window), :func:`stability_figure` (how often each
parameter value won a window), :func:`failure_mode_figure`, :func:`alignment_box_figure` and
:func:`regime_comparison_figure`. Every figure carries a title; trace names are stated in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimizer.engine.context import FAILURE_MODES
from optimizer.errors import check_param
from optimizer.report.theme import TEMPLATE, themed
from optimizer.validate.stats import closed_trade_events, rule_conditions

__all__ = [
    "TEMPLATE", "GREEN", "RED", "BLUE", "GREY", "bin_numeric", "sensitivity_table", "sensitivity_heatmap",
    "intermediate_figure", "equity_figure", "is_oos_figure", "stability_figure", "failure_mode_figure",
    "alignment_box_figure", "regime_comparison_figure", "REGIME_COLUMNS", "closed_events",
]

GREEN, RED, BLUE, GREY = "#2e7d32", "#c62828", "#1f77b4", "#9e9e9e"
REGIME_COLUMNS = ("regime", "hit_rate", "avg_return", "avg_excess_return", "closed_trades")


def _ys(values) -> list:
    """Floats with None for NaN / None (plotly draws a gap, JSON stays valid)."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(f if math.isfinite(f) else None)
    return out


# ------------------------------------------------------------------------------------------------ study


def bin_numeric(s: pd.Series, max_levels: int = 8, n_bins: int = 5) -> pd.Series:
    """``s`` as ordered labels: its own values when it has at most ``max_levels`` distinct ones, else
    ``n_bins`` equal-width bins labelled ``"lo–hi"`` (3 significant digits). Missing stays missing."""
    check_param(n_bins >= 1, "n_bins", ">= 1", n_bins)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == 0 or s.dropna().nunique() <= max_levels:
        return s
    cut = pd.cut(num, bins=n_bins, include_lowest=True)
    labels = {iv: f"{iv.left:.3g}–{iv.right:.3g}" for iv in cut.cat.categories}
    return cut.map(labels)


def _order(values: Sequence) -> list:
    """Distinct values, numerically sorted when every value is numeric (bin labels by their lower bound)."""
    uniq = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))))

    def key(v):
        txt = str(v).split("–")[0]
        try:
            return (0, float(txt), "")
        except ValueError:
            return (1, 0.0, str(v))

    return sorted(uniq, key=key)


def sensitivity_table(trials: pd.DataFrame, x: str, y: str, value: str = "value") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean of ``value``, trial count) per (``y`` row, ``x`` column) cell; rows/columns in numeric order."""
    for c in (x, y, value):
        check_param(c in trials.columns, "column", f"one of the trials table's columns {list(trials.columns)}", c)
    df = pd.DataFrame({"x": trials[x].astype(object), "y": trials[y].astype(object),
                       "v": pd.to_numeric(trials[value], errors="coerce")}).dropna()
    mean = df.pivot_table(index="y", columns="x", values="v", aggfunc="mean")
    count = df.pivot_table(index="y", columns="x", values="v", aggfunc="count")
    rows, cols = _order(list(mean.index)), _order(list(mean.columns))
    return mean.reindex(index=rows, columns=cols), count.reindex(index=rows, columns=cols)


def sensitivity_heatmap(trials: pd.DataFrame, x: str, y: str, value: str = "value", title: str | None = None,
                        maximize: bool = True, x_label: str | None = None, y_label: str | None = None) -> go.Figure:
    """Heatmap of the mean objective per (y, x) cell (trace name ``"mean objective"``); hover shows the count.
    Green is better: red→green for maximize, reversed for minimize."""
    mean, count = sensitivity_table(trials, x, y, value)
    z = [[None if pd.isna(v) else float(v) for v in row] for row in mean.to_numpy()]
    n = [[0 if pd.isna(v) else int(v) for v in row] for row in count.to_numpy()]
    text = [["" if zz is None else f"{zz:.3g}<br>n={nn}" for zz, nn in zip(zr, nr)] for zr, nr in zip(z, n)]
    fig = go.Figure(go.Heatmap(
        x=[str(c) for c in mean.columns], y=[str(r) for r in mean.index], z=z, text=text, texttemplate="%{text}",
        customdata=n, colorscale="RdYlGn", reversescale=not maximize, name="mean objective",
        hovertemplate=f"{x_label or x}=%{{x}}<br>{y_label or y}=%{{y}}<br>mean %{{z:.4g}}<br>n=%{{customdata}}<extra></extra>",
        colorbar={"title": {"text": "mean"}},
    ))
    themed(fig).update_layout(title=title or f"Sensitivity: {y_label or y} × {x_label or x} (mean objective)",
                              height=420, xaxis={"title": {"text": x_label or x}, "type": "category"},
                              yaxis={"title": {"text": y_label or y}, "type": "category"})
    return fig


def intermediate_figure(rows: pd.DataFrame, title: str = "Intermediate values per fold (pruned vs complete)") -> go.Figure:
    """``rows``: trial, state (COMPLETE / PRUNED), step, value. Traces ``"complete"`` (blue) and ``"pruned"`` (red),
    one line piece per trial separated by gaps."""
    fig = go.Figure()
    for state, color in (("COMPLETE", "rgba(31,119,180,0.55)"), ("PRUNED", "rgba(198,40,40,0.55)")):
        sub = rows[rows["state"] == state]
        xs: list = []
        ys: list = []
        for _, g in sub.groupby("trial", sort=True):
            g = g.sort_values("step")
            xs += [*g["step"].astype(int).tolist(), None]
            ys += [*_ys(g["value"]), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=state.lower(), connectgaps=False,
                                 line={"color": color, "width": 1}, marker={"size": 5}))
    themed(fig).update_layout(title=title, height=420, xaxis={"title": {"text": "fold"}, "dtick": 1},
                              yaxis={"title": {"text": "fold objective"}})
    return fig


# ------------------------------------------------------------------------------------------------ walk-forward


def equity_figure(equity: pd.DataFrame, windows: pd.DataFrame | None = None,
                  title: str = "Stitched out-of-sample equity") -> go.Figure:
    """Line ``"OOS equity"`` of ``equity.oos_equity`` against ``equity.date``; when the frame has them, lines
    ``"matched random-entry benchmark"`` (``bench_equity``: the same positions at their benchmark's expected return)
    and ``"excess over the benchmark"`` (``excess_equity``: the daily difference, compounded); each test window of
    ``windows`` (columns window, test_start, test_end[, in_reserve]) shaded and labelled ``W<i>`` (reserve windows
    amber)."""
    x = pd.to_datetime(equity["date"]).dt.strftime("%Y-%m-%d").tolist() if len(equity) else []
    fig = go.Figure(go.Scatter(x=x, y=_ys(equity["oos_equity"]) if len(equity) else [], mode="lines",
                               name="OOS equity", line={"color": BLUE, "width": 2}))
    for col, name, style in (("bench_equity", "matched random-entry benchmark", {"color": GREY, "width": 1.5}),
                             ("excess_equity", "excess over the benchmark", {"color": GREEN, "width": 1.5, "dash": "dash"})):
        if col in equity.columns:
            fig.add_trace(go.Scatter(x=x, y=_ys(equity[col]), mode="lines", name=name, line=style))
    fig.add_hline(y=1.0, line={"color": GREY, "dash": "dot", "width": 1})
    if windows is not None and len(windows):
        for i, w in enumerate(windows.itertuples(index=False)):
            reserve = bool(getattr(w, "in_reserve", False)) and str(getattr(w, "in_reserve", "")).lower() != "false"
            color = "rgba(255,160,0,0.15)" if reserve else ("rgba(31,119,180,0.07)" if i % 2 == 0 else "rgba(31,119,180,0.14)")
            fig.add_vrect(x0=str(w.test_start), x1=str(w.test_end), fillcolor=color, line_width=0, layer="below",
                          annotation_text=f"W{w.window}" + (" reserve" if reserve else ""), annotation_position="top left",
                          annotation_font_size=10)
    themed(fig).update_layout(title=title, height=420, yaxis={"title": {"text": "equity (start = 1)"}},
                              showlegend=True)
    return fig


def is_oos_figure(summary: pd.DataFrame, title: str = "In-sample vs out-of-sample per window") -> go.Figure:
    """Grouped bars per window: traces ``"IS rank_score"``, ``"OOS rank_score"`` (left) and ``"IS avg_excess_return"``,
    ``"OOS avg_excess_return"`` (right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("rank_score", "avg_excess_return (per trade)"))
    x = [f"W{w}" for w in summary["window"]] if len(summary) else []
    for col, metric in ((1, "rank_score"), (2, "avg_excess_return")):
        for side, color in (("is", "#90a4ae"), ("oos", BLUE)):
            c = f"{side}_{metric}"
            y = _ys(summary[c]) if c in summary.columns else [None] * len(x)
            fig.add_trace(go.Bar(x=x, y=y, name=f"{side.upper()} {metric}", marker_color=color,
                                 legendgroup=side, offsetgroup=side), row=1, col=col)
    themed(fig).update_layout(title=title, height=400, barmode="group")
    fig.update_yaxes(tickformat=".2%", row=1, col=2)
    return fig


def stability_figure(stability: pd.DataFrame, title: str = "Parameter stability: how often each value won a window") -> go.Figure:
    """One bar subplot per parameter (columns param, value, windows, share); trace names ``"<param>"``."""
    params = list(dict.fromkeys(stability["param"])) if len(stability) else []
    if not params:
        fig = go.Figure()
        themed(fig).update_layout(title=title + " (no windows)", height=300)
        return fig
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=params)
    for i, p in enumerate(params):
        sub = stability[stability["param"] == p]
        order = _order(sub["value"].astype(str).tolist())
        sub = sub.assign(value=sub["value"].astype(str)).set_index("value").reindex(order)
        fig.add_trace(go.Bar(x=order, y=_ys(sub["share"]), name=str(p), customdata=sub["windows"].tolist(),
                             hovertemplate="%{x}: %{customdata} window(s), %{y:.0%}<extra></extra>", showlegend=False),
                      row=i // ncols + 1, col=i % ncols + 1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_xaxes(type="category")
    themed(fig).update_layout(title=title, height=300 * nrows)
    return fig


def closed_events(events: pd.DataFrame) -> pd.DataFrame:
    """Rows with a finite net_return that are not open at the end of the data."""
    ok = pd.to_numeric(events["net_return"], errors="coerce").notna()
    if "open_at_end" in events.columns:
        ok &= ~events["open_at_end"].fillna(False).astype(bool)
    return events[ok]


def failure_mode_figure(events: pd.DataFrame, modes: Sequence[str] | None = None,
                        title: str = "Failure modes of closed out-of-sample trades") -> go.Figure:
    """Bar ``"trades"``: closed trades per failure_mode (order ``modes``, default the engine's FAILURE_MODES, then
    any other label); hover shows the mean net return of the mode."""
    ev = closed_events(events)
    # the design stores NULL for a profitable trade: a closed trade without a failure mode is a winner (NONE)
    mode = ev["failure_mode"].where(ev["failure_mode"].notna(), "NONE").astype(str)
    labels = list(modes or FAILURE_MODES)
    labels += [m for m in _order(mode.tolist()) if m not in labels]
    g = ev.groupby(mode)["net_return"]
    counts = g.size().reindex(labels, fill_value=0)
    means = g.mean().reindex(labels)
    colors = [GREEN if m == "NONE" else RED for m in labels]
    fig = go.Figure(go.Bar(x=labels, y=counts.astype(int).tolist(), name="trades", marker_color=colors,
                           customdata=_ys(means), hovertemplate="%{x}: %{y} trades<br>mean net %{customdata:.2%}<extra></extra>"))
    themed(fig).update_layout(title=title, height=380, yaxis={"title": {"text": "closed trades"}})
    return fig


def alignment_box_figure(events: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Box traces ``"aligned with parent ETF (n=..)"`` and ``"not aligned (n=..)"`` of the closed trades' return
    (the excess return when the frame has it, else net), split by the ``"parent ETF aligned"`` condition of
    ``stats.rule_conditions`` (trades whose parent ETF is not available are on neither side): the counts of the
    rule-validation table's row."""
    ev, col = closed_trade_events(events)
    cond = rule_conditions(ev).get("parent ETF aligned")
    check_param(cond is not None, "events", "a frame with a parent_etf_aligned column", list(events.columns))
    known = ~pd.isna(cond)
    aligned = pd.Series(cond).fillna(False).to_numpy(dtype=bool)
    r = pd.to_numeric(ev[col], errors="coerce").to_numpy()
    fig = go.Figure()
    for name, mask, color in (("aligned with parent ETF", known & aligned, GREEN), ("not aligned", known & ~aligned, RED)):
        fig.add_trace(go.Box(y=_ys(r[mask]), name=f"{name} (n={int(mask.sum())})", marker_color=color, boxmean=True))
    what = col.replace("_", " ")
    themed(fig).update_layout(title=title or f"{what.capitalize()} with / without parent-ETF alignment",
                              height=400, showlegend=False, yaxis={"title": {"text": what}, "tickformat": ".1%"})
    return fig


def regime_comparison_figure(rows: pd.DataFrame, title: str = "Performance by market regime") -> go.Figure:
    """Four bar subplots (hit_rate, avg_return, avg_excess_return, closed_trades) with the regime on x; trace names
    are the metric names. ``rows`` needs the columns ``REGIME_COLUMNS``."""
    missing = [c for c in REGIME_COLUMNS if c not in rows.columns]
    check_param(not missing, "rows", f"a DataFrame with columns {list(REGIME_COLUMNS)} (missing {missing})", list(rows.columns))
    metrics = REGIME_COLUMNS[1:]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    x = rows["regime"].astype(str).tolist()
    for i, m in enumerate(metrics, start=1):
        y = _ys(rows[m])
        colors = [GREY if v is None else (GREEN if v > 0 else RED) for v in y] if m != "hit_rate" and m != "closed_trades" else BLUE
        fig.add_trace(go.Bar(x=x, y=y, name=m, marker_color=colors, showlegend=False), row=1, col=i)
        if m in ("hit_rate", "avg_return", "avg_excess_return"):
            fig.update_yaxes(tickformat=".1%" if m == "hit_rate" else ".2%", row=1, col=i)
    themed(fig).update_layout(title=title, height=380)
    return fig

