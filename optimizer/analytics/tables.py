"""Per-ticker daily tables from ``daily_metrics``: short buy/sell ratio, lit imbalance, OTC, display score.

The ``accumulation_score`` shown here is the engine's display score (``optimizer.engine.score.display_score``, the
score the backtest trades on: short, lit and price terms times the OTC-participation intensity) with the default
score parameters (or ``score``), computed on a panel that starts ``2 * z_window`` sessions before the date, so the
trailing z-scores are warm (``engine_scores``). 50 is neutral, > 50 accumulation; NaN where the short-flow z is
undefined (too little history).

Agreement marker: short ratio z > 0 and lit imbalance > 0 -> "▲ both bullish"; both < 0 -> "▼ both bearish";
both present otherwise -> "◆ divergence"; either missing -> "".
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from rich.console import Console

from optimizer.settings import Settings
from optimizer.data.calendar import DateLike, as_date
from optimizer.data.store import table_exists
from optimizer.engine.features import FeatureCache
from optimizer.engine.panel import load_panel, warmup_start
from optimizer.engine.score import ScoreParams, display_score
from optimizer.errors import DataError, check_param
from optimizer.paths import atomic_write
from optimizer.analytics.scanner import nearest_dates_message
from optimizer.report.terminal import Column, FrameView, cell_text, print_frame
from optimizer.data.symbols import canonical_symbol, unknown_symbols_message

__all__ = [
    "DISCLAIMER",
    "STYLES",
    "BULLISH",
    "BEARISH",
    "DIVERGENCE",
    "engine_scores",
    "agreement",
    "daily_table",
    "write_daily_table_html",
    "render_daily_table",
    "unknown_symbols_message",
    "require_symbols",
    "table_columns",
]

DISCLAIMER = (
    "FINRA does not publish trade direction for off-exchange volume. Buy/Sell values are inferred estimates "
    "derived from lit-market equity trades and applied proportionally to FINRA OTC volume."
)
STYLES = ("scan", "analysis")
BULLISH, BEARISH, DIVERGENCE = "▲ both bullish", "▼ both bearish", "◆ divergence"

_SCAN_COLS = (
    "symbol", "date", "close", "return", "short_buy_sell_ratio", "short_buy_sell_ratio_z", "lit_flow_imbalance",
    "lit_flow_imbalance_z", "otc_participation_rate", "otc_participation_z", "otc_status", "accumulation_score",
    "confidence", "agreement", "provenance",
)
_ANALYSIS_EXTRA = (
    "open", "high", "low", "volume", "return_z", "short_volume", "short_exempt_volume", "total_volume",
    "short_buy_volume", "short_sell_volume", "short_buy_volume_z", "lit_buy_volume", "lit_sell_volume",
    "otc_week_start", "otc_weekly_volume", "z_window", "z_min_periods",
)
_NEEDED = ("short_buy_sell_ratio_z", "lit_flow_imbalance", "lit_flow_imbalance_z", "return_z")


def engine_scores(con: duckdb.DuckDBPyConnection, symbols: Sequence[str], start: DateLike, end: DateLike,
                  score: ScoreParams | None = None) -> pd.DataFrame:
    """The engine's display score of ``symbols`` for every NYSE session in [start, end] (a DataFrame indexed by
    date, one column per symbol), computed on a panel loaded from ``2 * z_window`` sessions before ``start`` (the
    trailing windows' warm-up: the values equal those of a full-history panel)."""
    sp = score or ScoreParams()
    panel = load_panel(con, list(symbols), warmup_start(start, 2 * int(sp.z_window)), end, min_coverage=None)
    disp = display_score(FeatureCache(panel), sp)
    df = pd.DataFrame(disp, index=pd.to_datetime(np.asarray(panel.dates, dtype="datetime64[D]")), columns=panel.symbols)
    return df.loc[pd.Timestamp(start):pd.Timestamp(end)]


def agreement(ratio_z: ArrayLike, imbalance: ArrayLike) -> np.ndarray:
    """Agreement marker per row (module doc): bullish / bearish / divergence / "" when either is missing."""
    rz = np.asarray(ratio_z, dtype=np.float64)
    im = np.asarray(imbalance, dtype=np.float64)
    out = np.full(rz.shape, "", dtype=object)
    present = np.isfinite(rz) & np.isfinite(im)
    out[present] = DIVERGENCE
    out[present & (rz > 0) & (im > 0)] = BULLISH
    out[present & (rz < 0) & (im < 0)] = BEARISH
    return out


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position", [table]
    ).fetchall()
    return [r[0] for r in rows]


def require_symbols(con: duckdb.DuckDBPyConnection, table: str, symbols: Sequence[str]) -> None:
    """Raise DataError naming every symbol of ``symbols`` with no row at all in ``table``."""
    if not table_exists(con, table):
        raise DataError(f"table {table} is missing; build it first (e.g. `accumopt metrics build`)")
    have = {
        r[0] for r in con.execute(
            f"SELECT DISTINCT symbol FROM {table} WHERE symbol IN (SELECT unnest(?::VARCHAR[]))", [list(symbols)]
        ).fetchall()
    }
    missing = [s for s in symbols if s not in have]
    if missing:
        raise DataError(unknown_symbols_message(con, table, missing))


def _tickers(tickers, settings: Settings | None) -> list[str] | None:
    if tickers is None:  # TICKERS spelled as the user likes (BRK-B): canonical like an explicit list
        st = settings if settings is not None else Settings.from_env()
        if not st.tickers:
            return None
        tickers = list(st.tickers)
    if isinstance(tickers, str):
        tickers = tickers.replace(";", ",").split(",")
    out = [canonical_symbol(t, "ticker") for t in tickers if str(t).strip()]
    check_param(bool(out), "tickers", "a non-empty symbol list", tickers)
    return list(dict.fromkeys(out))


def daily_table(
    con: duckdb.DuckDBPyConnection,
    date: DateLike | None = None,
    tickers: Sequence[str] | str | None = None,
    style: str = "scan",
    settings: Settings | None = None,
    score: ScoreParams | None = None,
) -> pd.DataFrame:
    """One row per ticker on ``date`` (default: the latest date with FINRA short data) with the display columns.

    The table states the canonical tickers it was asked for in ``df.attrs["tickers"]`` (None: every symbol of the
    day) and its coverage in ``df.attrs["coverage"]`` (date, symbols, how many have FINRA short data
    and which do not); a date without any FINRA short data is refused (DataError naming the nearest dates).

    ``tickers``: a list / comma string; None -> ``Settings.tickers`` (TICKERS env) or every symbol that day.
    ``style="scan"``: compact, sorted by accumulation score (best first); ``"analysis"``: every volume/z column
    too, in ticker order. Unknown tickers or a date without rows raise DataError.
    """
    check_param(style in STYLES, "style", f"one of {', '.join(STYLES)}", style)
    if not table_exists(con, "daily_metrics"):
        raise DataError("table daily_metrics is missing; run `accumopt metrics build` first")
    syms = _tickers(tickers, settings)
    if syms is not None:
        require_symbols(con, "daily_metrics", syms)
    have = table_columns(con, "daily_metrics")
    finra = "short_volume IS NOT NULL" if "short_volume" in have else "TRUE"
    # every symbol of the day: the names, not an index's context rows (^GSPC, ^IXIC of a prices file: no FINRA data
    # by nature, so they were listed as names lacking it; symbols.is_context_symbol); asked for by name, shown
    in_syms = " AND NOT starts_with(symbol, '^')" if syms is None else " AND symbol IN (SELECT unnest(?::VARCHAR[]))"
    if date is None:  # the latest date WITH FINRA data (a later prices-only date would show empty ratios)
        day = con.execute(f"SELECT max(date) FROM daily_metrics WHERE {finra}{in_syms}", [] if syms is None else [syms]).fetchone()[0]
        if day is None:
            raise DataError("daily_metrics holds no FINRA short-sale data" + ("" if syms is None else f" for {', '.join(syms)}")
                            + "; ingest FINRA files and run `accumopt metrics build` first")
    else:
        day = as_date(date, "date")
        n_all, n = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {finra}) FROM daily_metrics WHERE date = ?{in_syms}",
                               [day] + ([] if syms is None else [syms])).fetchone()
        if n_all and not n:  # rows (prices) but no FINRA data that day (no rows at all: the message below)
            what = "FINRA short-sale data in daily_metrics" + ("" if syms is None else f" for {', '.join(syms)}")
            near = con.execute(
                f"SELECT max(date) FILTER (WHERE date < ?), min(date) FILTER (WHERE date > ?) FROM daily_metrics WHERE {finra}{in_syms}",
                [day, day] + ([] if syms is None else [syms])).fetchone()
            shown = [str(d) for d in near if d is not None]
            raise DataError(f"no {what} on {day}; nearest dates with it: {', '.join(shown) if shown else 'none'}")
    wanted = list(_SCAN_COLS) + list(_ANALYSIS_EXTRA) + list(_NEEDED)
    select = ", ".join(c if c in have else f"NULL AS {c}" for c in dict.fromkeys(wanted) if c not in ("accumulation_score", "agreement"))
    where = "date = ?" + in_syms
    df = con.execute(f"SELECT {select} FROM daily_metrics WHERE {where}", [day] + ([] if syms is None else [syms])).df()
    if df.empty:
        what = "daily_metrics rows" + ("" if syms is None else f" for {', '.join(syms)}")
        raise DataError(nearest_dates_message(con, "daily_metrics", day, what))
    num = lambda c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)  # noqa: E731
    sc = engine_scores(con, df["symbol"].astype(str).tolist(), day, day, score)
    df["accumulation_score"] = sc.iloc[-1].reindex(df["symbol"].astype(str)).to_numpy() if len(sc) else np.nan
    df["agreement"] = agreement(num("short_buy_sell_ratio_z"), num("lit_flow_imbalance"))
    df["date"] = pd.to_datetime(df["date"]).dt.date
    with_finra = int(pd.to_numeric(df["total_volume"], errors="coerce").notna().sum()) if "total_volume" in df else len(df)
    coverage = {"date": str(day), "symbols": int(len(df)), "with_finra_short": with_finra,
                "without_finra_short": sorted(df.loc[pd.to_numeric(df["total_volume"], errors="coerce").isna(), "symbol"].astype(str))
                if "total_volume" in df else []}
    if style == "scan":
        df = df.sort_values(["accumulation_score", "symbol"], ascending=[False, True], na_position="last", kind="mergesort")
        cols = list(_SCAN_COLS)
    else:
        order = {s: i for i, s in enumerate(syms or sorted(df["symbol"]))}
        df = df.assign(_o=df["symbol"].map(order)).sort_values("_o", kind="mergesort").drop(columns="_o")
        cols = list(_SCAN_COLS) + list(_ANALYSIS_EXTRA)
    out = df[cols].reset_index(drop=True)
    out.attrs["coverage"] = coverage
    out.attrs["tickers"] = syms  # the canonical symbols asked for (None: every symbol), e.g. to name the table's file
    return out


# --- presentation -------------------------------------------------------------------------------------------

_GREEN, _RED, _AMBER = "#e3f1e6", "#f6e3e1", "#f7f0da"
_FMT = {
    "close": ".2f", "open": ".2f", "high": ".2f", "low": ".2f", "return": "+.2%", "short_buy_sell_ratio": ".3f",
    "lit_flow_imbalance": "+.3f", "otc_participation_rate": ".1%", "accumulation_score": ".1f", "confidence": ".2f",
}
_SIGNAL_COLS = ("short_buy_sell_ratio", "lit_flow_imbalance", "accumulation_score", "short_buy_sell_ratio_z", "lit_flow_imbalance_z")


def _signal(col: str, v) -> int:
    """+1 bullish / −1 bearish / 0 neutral colour of a cell."""
    if isinstance(v, str):
        return 1 if v == BULLISH else -1 if v == BEARISH else 2 if v == DIVERGENCE else 0
    if col not in _SIGNAL_COLS or v is None or pd.isna(v):
        return 0
    x = float(v)
    if col == "short_buy_sell_ratio":
        return 1 if x >= 1.25 else -1 if x <= 0.75 else 0
    if col == "lit_flow_imbalance":
        return 1 if x >= 0.1 else -1 if x <= -0.1 else 0
    if col == "accumulation_score":
        return 1 if x >= 60 else -1 if x <= 40 else 0
    if col in ("short_buy_sell_ratio_z", "lit_flow_imbalance_z"):
        return 1 if x >= 1 else -1 if x <= -1 else 0
    return 0


def _cell_text(col: str, v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        spec = _FMT.get(col, ".2f" if col.endswith("_z") else ",.0f" if "volume" in col else ".4g")
        return format(float(v), spec)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if "volume" in col else str(v)
    if isinstance(v, str):
        return v
    return cell_text(col, v)  # dates and timestamps as the terminal tables show them


def write_daily_table_html(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Self-contained HTML table with muted green/red signal colouring and the mandatory disclaimer."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    colour = {1: _GREEN, -1: _RED, 2: _AMBER}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            bg = colour.get(_signal(c, v))
            style = f' style="background:{bg}"' if bg else ""
            cells.append(f"<td{style}>{html.escape(_cell_text(c, v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    t = html.escape(title or "Daily accumulation/distribution table")
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f4f4f4; }}
td:first-child {{ text-align: left; font-weight: 600; }}
p.disclaimer {{ font-size: 12px; color: #555; max-width: 60em; }}
</style></head><body>
<h2>{t}</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""
    atomic_write(p, lambda t: t.write_text(doc, encoding="utf-8"))
    return p


# The terminal view: short headers, the key columns of each style in priority order (the rest with --columns /
# --wide: ``render_daily_table``'s ``select`` / ``wide``).
_LABELS = {
    "short_buy_sell_ratio": "ratio", "short_buy_sell_ratio_z": "ratio_z", "lit_flow_imbalance": "lit_imb",
    "lit_flow_imbalance_z": "lit_z", "otc_participation_rate": "otc", "otc_participation_z": "otc_z",
    "otc_status": "otc_status", "accumulation_score": "score", "confidence": "conf", "return": "ret",
    "short_buy_volume": "short_buy", "short_sell_volume": "short_sell", "total_volume": "total",
    "lit_buy_volume": "lit_buy", "lit_sell_volume": "lit_sell", "short_buy_volume_z": "buy_z", "short_volume": "short",
    "short_exempt_volume": "exempt", "otc_weekly_volume": "otc_week_vol", "otc_week_start": "otc_week",
}
_KEY = {
    "scan": ("symbol", "accumulation_score", "short_buy_sell_ratio", "short_buy_sell_ratio_z", "lit_flow_imbalance",
             "otc_participation_rate", "confidence", "agreement", "close", "return", "lit_flow_imbalance_z",
             "otc_participation_z", "otc_status", "provenance"),
    "analysis": ("symbol", "short_buy_volume", "short_sell_volume", "total_volume", "short_buy_sell_ratio",
                 "short_buy_sell_ratio_z", "short_buy_volume_z", "lit_buy_volume", "lit_sell_volume",
                 "lit_flow_imbalance_z", "return_z", "otc_weekly_volume", "accumulation_score", "close", "volume",
                 "return", "open", "high", "low", "short_volume", "short_exempt_volume", "lit_flow_imbalance",
                 "otc_participation_rate", "otc_participation_z", "otc_week_start", "otc_status", "confidence",
                 "agreement", "provenance", "z_window", "z_min_periods"),
}
_RICH_STYLE = {1: "green", -1: "red", 2: "yellow"}


def _column(c: str) -> Column:
    return Column(c, label=_LABELS.get(c), fmt=lambda v, c=c: _cell_text(c, v),
                  style=lambda v, c=c: _RICH_STYLE.get(_signal(c, v)),
                  justify="left" if c in ("symbol", "otc_status", "agreement", "provenance") else None)


def render_daily_table(df: pd.DataFrame, console: Console, title: str | None = None, style: str | None = None,
                       select: Sequence[str] | str | None = None, wide: bool = False) -> FrameView:
    """Print the table to a rich Console: green/red signal colouring, the key columns of ``style`` (``scan`` /
    ``analysis``; default: analysis when the frame has its extra columns) that fit the console, ``select`` exactly
    or every column with ``wide``; the coverage and the disclaimer below it."""
    style = style or ("analysis" if "short_volume" in df.columns else "scan")
    check_param(style in STYLES, "style", f"one of {', '.join(STYLES)}", style)
    day = df["date"].iloc[0] if len(df) and "date" in df.columns else ""
    cov = df.attrs.get("coverage")
    caption = DISCLAIMER
    if cov:
        caption = (f"FINRA short data for {cov['with_finra_short']} of {cov['symbols']} symbols on {cov['date']}"
                   + (f" (none for {', '.join(cov['without_finra_short'][:8])}{' ...' if len(cov['without_finra_short']) > 8 else ''})"
                      if cov["without_finra_short"] else "") + ". " + DISCLAIMER)
    view = df.drop(columns=[c for c in ("date",) if c in df.columns])
    return print_frame(view, console, title=title or f"Daily accumulation/distribution table {day}",
                       columns=[_column(c) for c in view.columns], key=_KEY[style], select=select, wide=wide,
                       caption=caption)
