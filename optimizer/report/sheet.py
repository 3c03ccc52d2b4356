"""Signal-sheet outputs (I/O only): the DuckDB table ``signal_sheet`` and the files of one night's sheet.

``write_sheet_table(con, frame)`` replaces the frame's (date, params_hash) rows of ``signal_sheet`` (created by store
migration v3) in one transaction, casting each column to the table's own type (NaN -> NULL) and stamping
``created_at``. ``sheet_charts`` builds a small price + score figure per ENTER / EXIT symbol (the last
``sessions`` rows up to D: close, the position's entry, the score with the buy / sell thresholds; at most
``MAX_CHARTS``) and
``write_sheet_files`` writes ``sheet.csv`` (every symbol), ``sheet.json`` (the sheet's settings, the out-of-sample
quality buckets and every row) and ``sheet.html`` (tables per decision, the charts, the flag legend; plotly.js
embedded once, opens offline). The files hold no timestamp: the same sheet writes the same bytes.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optimizer.data.store import transaction
from optimizer.data.rolling import min_periods_label
from optimizer.engine.panel import Panel
from optimizer.engine.sheet import ENTER, EXIT, FLAG_RULES, HOLD
from optimizer.errors import DataError
from optimizer.paths import atomic_folder
from optimizer.report.research import Page
from optimizer.report.theme import themed

__all__ = ["SHEET_TABLE", "MAX_CHARTS", "write_sheet_table", "sheet_charts", "sheet_figure", "write_sheet_files", "sheet_records",
           "sheet_csv"]

SHEET_TABLE = "signal_sheet"
MAX_CHARTS = 60  # charts per sheet.html (ENTER by score, then EXIT)
_KEY = ("date", "params_hash")


def _table_types(con) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position", [SHEET_TABLE]).fetchall()
    if not rows:
        raise DataError(f"the store has no {SHEET_TABLE} table (schema older than v3); open it read-write once to "
                        "migrate it")
    return {c: t for c, t in rows}


def write_sheet_table(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Replace the (date, params_hash) rows of ``signal_sheet`` present in ``frame`` by ``frame``'s rows (one
    transaction). Columns the table lacks are an error naming them. Returns the rows written."""
    types = _table_types(con)
    extra = [c for c in frame.columns if c not in types]
    if extra:
        raise DataError(f"{SHEET_TABLE} has no column(s) {', '.join(extra)}")
    df = frame.assign(created_at=datetime.now(timezone.utc))  # an instant (TIMESTAMPTZ since store v9)
    sel = []
    for c in df.columns:
        t = types[c]
        src = f'src."{c}"'
        if t in ("DOUBLE", "INTEGER", "BIGINT") and pd.api.types.is_float_dtype(df[c]):
            src = f"NULLIF({src}, 'NaN'::DOUBLE)"
        if t == "INTEGER" and pd.api.types.is_float_dtype(df[c]):
            src = f"round({src})"
        sel.append(f"CAST({src} AS {t})")
    keys = df[list(_KEY)].drop_duplicates().itertuples(index=False)
    con.register("_sheet_src", df)
    try:
        with transaction(con):
            for date, h in keys:
                con.execute(f"DELETE FROM {SHEET_TABLE} WHERE date = ? AND params_hash = ?",
                            [pd.Timestamp(date).date(), str(h)])
            con.execute(f"INSERT INTO {SHEET_TABLE} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in df.columns)}) "
                        f"SELECT {', '.join(sel)} FROM _sheet_src src")
    finally:
        con.unregister("_sheet_src")
    return len(df)


def sheet_figure(dates: np.ndarray, close: np.ndarray, score: np.ndarray, buy: float | np.ndarray, sell: float,
                 symbol: str, decision: str, entry_date: object | None = None,
                 entry_price: float | None = None) -> go.Figure:
    """Close (top) and display score with the buy / sell thresholds (bottom) over ``dates``; the entry of a held
    position and the signal at the last session are marked. ``buy``: one threshold, or one per session (a
    configuration with regime-conditional buy thresholds: each session's regime's)."""
    x = [str(np.datetime64(d, "D")) for d in dates]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.04)
    fig.add_trace(go.Scatter(x=x, y=_ys(close), mode="lines", name="close", line={"color": "#37474f"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=_ys(score), mode="lines", name="score", line={"color": "#1565c0"}), 2, 1)
    if np.ndim(buy):  # the buy threshold of each session's regime
        fig.add_trace(go.Scatter(x=x, y=_ys(buy), mode="lines", name="buy (by regime)",
                                 line={"color": "#2e7d32", "dash": "dot", "width": 1, "shape": "hv"}), 2, 1)
    for level, color, name in (((buy, "#2e7d32", "buy"),) if not np.ndim(buy) else ()) + ((sell, "#c62828", "sell"),):
        fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[level, level], mode="lines", name=f"{name} {level:g}",
                                 line={"color": color, "dash": "dot", "width": 1}), 2, 1)
    if entry_date is not None and not pd.isna(entry_date) and entry_price is not None and np.isfinite(entry_price):
        fig.add_trace(go.Scatter(x=[str(pd.Timestamp(entry_date).date())], y=[float(entry_price)], mode="markers",
                                 name="entry", marker={"symbol": "triangle-up", "size": 11, "color": "#2e7d32"}), 1, 1)
    mark = {ENTER: ("triangle-up", "#2e7d32"), EXIT: ("triangle-down", "#c62828")}.get(decision)
    if mark is not None and len(x):
        fig.add_trace(go.Scatter(x=[x[-1]], y=_ys(score[-1:]), mode="markers", name=f"{decision} signal",
                                 marker={"symbol": mark[0], "size": 11, "color": mark[1]}), 2, 1)
    fig.update_yaxes(title_text="close", row=1, col=1)
    fig.update_yaxes(title_text="score", range=[0, 100], row=2, col=1)
    themed(fig).update_layout(title=f"{symbol}: {decision} at the next open", height=330, width=560,
                              margin={"l": 50, "r": 10, "t": 40, "b": 30}, showlegend=False)
    return fig


def _ys(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def sheet_charts(rows: pd.DataFrame, panel: Panel, display: np.ndarray, buy: float | np.ndarray, sell: float,
                 sessions: int = 120, limit: int = MAX_CHARTS) -> list[tuple[str, go.Figure]]:
    """(symbol, figure) per ENTER then EXIT row (ENTER by score), over the last ``sessions`` rows of ``panel``; at
    most ``limit`` figures (a night with hundreds of signals on a full-market universe stays a readable page).
    ``buy``: one threshold or one per session of ``panel``."""
    T = panel.shape[0]
    lo = max(0, T - int(sessions))
    out: list[tuple[str, go.Figure]] = []
    for decision in (ENTER, EXIT):
        sel = rows[rows["decision"] == decision]
        if decision == ENTER:
            sel = sel.sort_values(["score", "symbol"], ascending=[False, True], kind="mergesort")
        for r in sel.itertuples(index=False):
            if len(out) >= limit:
                return out
            j = panel.symbol_index(r.symbol)
            out.append((r.symbol, sheet_figure(panel.dates[lo:], panel["close"][lo:, j], display[lo:, j],
                                               buy[lo:] if np.ndim(buy) else buy, sell, r.symbol, decision,
                                               r.entry_date, r.entry_price)))
    return out


def _clean(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime)):
        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def sheet_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (dates as YYYY-MM-DD, NaN / NaT as None)."""
    return [{k: _clean(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]


def _fmt(v: Any, kind: str = "") -> str:
    v = _clean(v)
    if v is None:
        return ""
    if kind == "pct" and isinstance(v, (int, float)):
        return f"{100 * v:+.1f}%"
    if kind == "share" and isinstance(v, (int, float)):
        return f"{100 * v:.0f}%"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


_KIND = {"unrealised_return": "pct", "oos_avg_excess_return": "pct", "oos_avg_return": "pct",
         "oos_hit_rate": "share", "data_coverage": "share", "atr_pct": "share"}
_HTML_COLUMNS = {
    ENTER: ["symbol", "score", "signal_quality", "trend", "regime", "sector_etf", "parent_etf_aligned",
            "options_boost", "confidence", "data_coverage", "flags", "oos_trades", "oos_hit_rate",
            "oos_avg_excess_return", "close"],
    EXIT: ["symbol", "score", "exit_reason", "entry_date", "entry_price", "days_held", "close", "unrealised_return",
           "trend", "flags"],
    HOLD: ["symbol", "score", "entry_date", "entry_price", "days_held", "close", "unrealised_return", "stop_level",
           "take_profit_level", "scheduled_exit_in", "trend"],
}


def _rows_table(df: pd.DataFrame, cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c], _KIND.get(c, '')))}</td>" for c in cols)
                   + "</tr>" for _, r in df.iterrows())
    return f'<div class="scroll"><table class="tbl"><tr>{head}</tr>{body}</table></div>'


def sheet_csv(rows: pd.DataFrame, dest: Any) -> None:
    """The sheet's rows as CSV into ``dest`` (a path or a text buffer): sheet.csv and ``signals --format csv``. Numbers
    are written whole (the shortest text that reads back as the same float, as sheet.json and the signal_sheet table
    hold them), dates as YYYY-MM-DD."""
    rows.to_csv(dest, index=False, date_format="%Y-%m-%d")


def write_sheet_files(rows: pd.DataFrame, meta: Mapping[str, Any], charts: list[tuple[str, go.Figure]],
                      out_dir: str | Path, buckets: pd.DataFrame | None = None) -> dict[str, Path]:
    """sheet.csv, sheet.json and sheet.html in ``out_dir`` (created), all or nothing (``paths.atomic_folder``): a
    full disk or a kill while writing them leaves the folder's previous sheet whole, never a new sheet.csv beside
    the previous sheet.html (a re-run after the session's data changed writes different rows). Returns their
    paths."""
    d = Path(out_dir)
    b = buckets if buckets is not None else pd.DataFrame()
    doc = {"sheet": dict(meta), "oos_quality_buckets": sheet_records(b), "rows": sheet_records(rows)}
    text = json.dumps(doc, indent=2, default=_clean) + "\n"
    page = _page(rows, meta, charts, b)
    with atomic_folder(d) as t:
        sheet_csv(rows, t / "sheet.csv")
        (t / "sheet.json").write_text(text, encoding="utf-8")
        (t / "sheet.html").write_text(page.render(), encoding="utf-8")
    return {"csv": d / "sheet.csv", "json": d / "sheet.json", "html": d / "sheet.html"}


def _page(rows: pd.DataFrame, meta: Mapping[str, Any], charts, buckets: pd.DataFrame) -> Page:
    page = Page(f"Signal sheet {meta['date']} ({meta['params_hash']})")
    page.add(f"<h1>Signal sheet: {html.escape(str(meta['date']))} close, orders for the "
             f"{html.escape(str(meta['next_session']))} open</h1>")
    kv = [("configuration", meta["params_hash"]), ("exit", meta["exit_strategy"]),
          ("universe", f"{meta['universe']} ({meta['symbols']} symbols)"), ("positions replayed from", meta["span_start"]),
          ("regime filter", meta["regime_filter"]),
          ("z-scores", f"from {meta.get('panel_start') or meta['span_start']}, min_periods "
                       f"{min_periods_label(meta.get('min_periods'))}"),
          ("walk-forward", meta.get("walkforward") or "none given"),
          ("counts", ", ".join(f"{k} {v}" for k, v in meta["counts"].items())),
          ("parameters", json.dumps(meta["params"], sort_keys=True))]
    page.add('<table class="tbl kv">' + "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>"
                                                f"{html.escape(str(v))}</td></tr>" for k, v in kv) + "</table>")
    page.note("No orders are placed. ENTER / EXIT fill at the next open; HOLD keeps its resting stop-loss / "
              "take-profit levels. Decisions read data up to the close of the sheet's session only.")
    for decision in (ENTER, EXIT, HOLD):
        sel = rows[rows["decision"] == decision]
        if decision == ENTER:
            sel = sel.sort_values(["score", "symbol"], ascending=[False, True], kind="mergesort")
        page.h2(f"{decision} ({len(sel)})")
        if len(sel):
            page.add(_rows_table(sel, _HTML_COLUMNS[decision]))
        else:
            page.add("<p>none</p>")
    if charts:
        n_act = int(rows["decision"].isin([ENTER, EXIT]).sum())
        page.h2("Charts: close and score, last sessions")
        if len(charts) < n_act:
            page.note(f"Charts for the first {len(charts)} of {n_act} ENTER / EXIT symbols (ENTER by score, then EXIT).")
        page.add('<div class="grid">')
        for i, (_, fig) in enumerate(charts):
            page.figure(fig, f"chart-{i}")
        page.add("</div>")
    if len(buckets):
        page.h2("Out-of-sample by signal quality (walk-forward)")
        page.add(_rows_table(buckets, list(buckets.columns)))
    page.h2("Risk flags")
    page.add("<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in FLAG_RULES.items())
             + "</ul>")
    return page
