"""Full-market FINRA short-sale scanner: every symbol of one day, ranked by an accumulation score.

Uses only FINRA daily short-sale data (``finra_short_daily``, consolidated: CNMS, else the facility sum, else
the API row — :func:`optimizer.data.store.consolidated_short_sql`). No trade or price data.
All heavy lifting is one DuckDB query (window + grouped aggregates), so ~10,000 symbols a day is fast.

Definitions for scan date ``d`` (only rows dated <= d are read: point-in-time):

* lookback window: the last ``lookback`` NYSE sessions ending at ``d`` (inclusive; calendar sessions, so a
  hole in the data is a hole in the window, never filled with older rows); each symbol's statistics use its
  own rows inside that window. The window's FINRA coverage is stated (``ScanResult.coverage``); below the
  documented minimum (``optimizer.data.coverage.MIN_COVERAGE``) nothing is ranked and ``ScanResult.reason``
  says why (the metrics are still returned).
* volumes are split-adjusted (``optimizer.data.adjust``): a split inside the window does not make a volume
  spike; ratios and shares are computed from the raw figures (a split does not change them).
* ``short_buy_sell_ratio`` = short / (total − short) (NULL when total = short); ``short_share`` = short / total.
* ``short_buy_sell_ratio_z`` = (ratio_d − mean) / std_pop over the symbol's window rows (today included), the
  same convention as :func:`optimizer.data.rolling.rolling_zscore`. NULL with fewer than ``min_periods``
  ratios or a (numerically) zero std. ``short_share_z`` likewise.
* ``trend`` = regr_slope of the ratio on the session index over the symbol's last ``trend_days`` rows
  (ratio change per session); ``trend_z`` = trend / ratio std (per-session change in lookback std units).
* ``volume_z`` = z of today's total volume against the window (population std).
* ``short_share_xz`` = cross-sectional z of today's short share against the liquid symbols' mean and std (the share is used
  rather than the ratio because it is bounded; the ratio is a monotone transform of it).
* ``score`` = ratio_z + 0.5·sign(ratio_z)·clip(volume_z, 0, 4) + 0.5·clip(trend_z, −2, 2)
  (NULL volume_z / trend_z count as 0; NULL ratio_z -> NULL score). A volume spike amplifies whichever side the
  ratio is on, so the score is antisymmetric: high = accumulation, low = distribution.
* flags: ``outlier`` |ratio_z| >= outlier_z; ``volume_spike`` volume_z >= volume_z threshold;
  ``ratio_extreme`` |short_share_xz| >= ratio_z threshold; ``liquid`` mean window total volume >=
  ``min_total_volume`` (default 50,000 shares/day; illiquid names stay in ``metrics`` but never reach ``top``).

See docs/SCANNER.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from rich.console import Console

from optimizer.data.adjust import adjusted_join_sql, check_split_factors
from optimizer.data.calendar import DateLike, as_date, session_days
from optimizer.data.coverage import MIN_COVERAGE, SourceCoverage, source_coverage
from optimizer.data.store import consolidated_short_sql, table_exists, transaction
from optimizer.errors import DataError, check_param
from optimizer.paths import atomic_folder
from optimizer.report.files import write_figures
from optimizer.report.theme import themed
from optimizer.settings import SCANNER_MIN_SESSIONS
from optimizer.report.terminal import Column, print_frame

__all__ = ["ScanResult", "scan", "write_scan", "render_scan", "scan_figures", "window_sessions", "SCANNER_COLUMNS", "SIDES"]

SIDES = ("accumulation", "distribution", "both")
STD_EPS = 1e-12

# (column, DuckDB type) of ``ScanResult.metrics`` and of table ``scanner_daily_metrics``.
SCANNER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("date", "DATE"),
    ("symbol", "VARCHAR"),
    ("short_volume", "BIGINT"),
    ("short_exempt_volume", "BIGINT"),
    ("total_volume", "BIGINT"),
    ("short_buy_sell_ratio", "DOUBLE"),
    ("short_share", "DOUBLE"),
    ("n_sessions", "INTEGER"),
    ("ratio_mean", "DOUBLE"),
    ("ratio_std", "DOUBLE"),
    ("short_buy_sell_ratio_z", "DOUBLE"),
    ("short_share_z", "DOUBLE"),
    ("short_share_xz", "DOUBLE"),
    ("trend", "DOUBLE"),
    ("trend_z", "DOUBLE"),
    ("volume_mean", "DOUBLE"),
    ("volume_z", "DOUBLE"),
    ("score", "DOUBLE"),
    ("outlier", "BOOLEAN"),
    ("volume_spike", "BOOLEAN"),
    ("ratio_extreme", "BOOLEAN"),
    ("liquid", "BOOLEAN"),
    ("rank", "INTEGER"),
    ("provenance", "VARCHAR"),
    ("lookback", "INTEGER"),
    ("trend_days", "INTEGER"),
    ("inference_version", "VARCHAR"),
)


@dataclass(frozen=True)
class ScanResult:
    """One scan: ``metrics`` holds every symbol with a FINRA row on ``date``; ``top`` the ``top`` best by rank.

    ``coverage``: the FINRA short data's coverage of the lookback window; ``reason``: why ``top`` is empty
    (None when it is not)."""

    date: dt.date
    metrics: pd.DataFrame
    top: pd.DataFrame
    window_start: dt.date
    params: dict
    coverage: SourceCoverage | None = None
    reason: str | None = None


def nearest_dates_message(con: duckdb.DuckDBPyConnection, table: str, day: dt.date, what: str) -> str:
    """``no <what> on <day>; nearest dates: <before>, <after>`` from the distinct dates of ``table``."""
    before = con.execute(f"SELECT max(date) FROM {table} WHERE date < ?", [day]).fetchone()[0]
    after = con.execute(f"SELECT min(date) FROM {table} WHERE date > ?", [day]).fetchone()[0]
    near = [str(d) for d in (before, after) if d is not None]
    return f"no {what} on {day}; nearest dates: {', '.join(near) if near else 'none (the table is empty)'}"


def _resolve_date(con: duckdb.DuckDBPyConnection, date) -> dt.date:
    if not table_exists(con, "finra_short_daily"):
        raise DataError("table finra_short_daily is missing; run `accumopt ingest` with FINRA short-sale files first")
    if date is None:
        latest = con.execute("SELECT max(date) FROM finra_short_daily").fetchone()[0]
        if latest is None:
            raise DataError("no FINRA short-sale data in the store (finra_short_daily is empty); run `accumopt ingest` first")
        return latest
    day = as_date(date, "date")
    n = con.execute("SELECT count(*) FROM finra_short_daily WHERE date = ?", [day]).fetchone()[0]
    if not n:
        raise DataError(nearest_dates_message(con, "finra_short_daily", day, "FINRA data"))
    return day


def _check_params(lookback, top, trend_days, min_periods, outlier_z, volume_z, ratio_z, min_total_volume, side) -> int:
    few = "(a z-score over 2 values is always ±1: every symbol would score alike)"
    check_param(isinstance(lookback, (int, np.integer)) and lookback >= SCANNER_MIN_SESSIONS, "lookback",
                f"an integer >= {SCANNER_MIN_SESSIONS} {few}", lookback)
    check_param(isinstance(top, (int, np.integer)) and top >= 1, "top", "an integer >= 1", top)
    check_param(
        isinstance(trend_days, (int, np.integer)) and 2 <= trend_days <= lookback,
        "trend_days", f"an integer in [2, lookback={lookback}]", trend_days,
    )
    mp = min(20, int(lookback)) if min_periods is None else min_periods
    check_param(isinstance(mp, (int, np.integer)) and SCANNER_MIN_SESSIONS <= mp <= lookback, "min_periods",
                f"an integer in [{SCANNER_MIN_SESSIONS}, lookback={lookback}] {few}", mp)
    for name, v in (("outlier_z", outlier_z), ("volume_z", volume_z), ("ratio_z", ratio_z)):
        check_param(isinstance(v, (int, float)) and np.isfinite(v) and v > 0, name, "a finite number > 0", v)
    check_param(isinstance(min_total_volume, (int, float)) and min_total_volume >= 0, "min_total_volume", ">= 0", min_total_volume)
    check_param(side in SIDES, "side", f"one of {', '.join(SIDES)}", side)
    return int(mp)


def _scan_sql(start: dt.date, day: dt.date) -> str:
    src = consolidated_short_sql(
        f"(SELECT * FROM finra_short_daily WHERE date BETWEEN DATE '{start.isoformat()}' AND DATE '{day.isoformat()}') AS fsd"
    )
    # $1 trend_days, $2 min_periods, $3 min_total_volume, $4 outlier_z, $5 volume_z, $6 ratio_z, $7 scan date
    return f"""
WITH src AS ({src}),
x AS (
    SELECT x.date, x.symbol,
           CAST(round(x.short_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS short_volume,
           CAST(round(x.short_exempt_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS short_exempt_volume,
           CAST(round(x.total_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS total_volume, x.provenance,
           CASE WHEN x.total_volume - x.short_volume > 0
                THEN x.short_volume::DOUBLE / (x.total_volume - x.short_volume) END AS r,
           CASE WHEN x.total_volume > 0 THEN x.short_volume::DOUBLE / x.total_volume END AS s,
           row_number() OVER (PARTITION BY x.symbol ORDER BY x.date DESC) AS rn
    FROM src x {adjusted_join_sql()}
),
agg AS (
    SELECT symbol, count(*) AS n_sessions, count(r) AS n_ratio, count(s) AS n_share,  -- ordered: bit-reproducible
           avg(r ORDER BY date) AS ratio_mean, stddev_pop(r ORDER BY date) AS ratio_std,
           avg(s ORDER BY date) AS share_mean, stddev_pop(s ORDER BY date) AS share_std,
           avg(total_volume::DOUBLE ORDER BY date) AS volume_mean,
           stddev_pop(total_volume::DOUBLE ORDER BY date) AS volume_std,
           regr_slope(r, -rn::DOUBLE ORDER BY date) FILTER (WHERE rn <= $1) AS trend
    FROM x GROUP BY symbol
),
t AS (
    SELECT x.date, x.symbol, x.short_volume, x.short_exempt_volume, x.total_volume,
           x.r AS short_buy_sell_ratio, x.s AS short_share, a.n_sessions, a.ratio_mean, a.ratio_std,
           CASE WHEN a.n_ratio >= $2 AND a.ratio_std > {STD_EPS} AND a.ratio_std > 1e-10 * abs(a.ratio_mean)
                THEN (x.r - a.ratio_mean) / a.ratio_std END AS short_buy_sell_ratio_z,
           CASE WHEN a.n_share >= $2 AND a.share_std > {STD_EPS} AND a.share_std > 1e-10 * abs(a.share_mean)
                THEN (x.s - a.share_mean) / a.share_std END AS short_share_z,
           a.trend,
           CASE WHEN a.n_ratio >= $2 AND a.ratio_std > {STD_EPS} AND a.ratio_std > 1e-10 * abs(a.ratio_mean)
                THEN a.trend / a.ratio_std END AS trend_z,
           a.volume_mean,
           CASE WHEN a.n_sessions >= $2 AND a.volume_std > {STD_EPS} AND a.volume_std > 1e-10 * abs(a.volume_mean)
                THEN (x.total_volume - a.volume_mean) / a.volume_std END AS volume_z,
           a.volume_mean >= $3 AS liquid,
           x.provenance
    FROM x JOIN agg a USING (symbol)
    WHERE x.rn = 1 AND x.date = $7
),
xs AS (
    SELECT avg(short_share ORDER BY symbol) AS m, stddev_pop(short_share ORDER BY symbol) AS sd  -- in symbol order,
    FROM t WHERE liquid                                   -- whatever order the rows were stored in: bit-reproducible
),
s AS (
    SELECT t.*,
           CASE WHEN xs.sd > {STD_EPS} THEN (t.short_share - xs.m) / xs.sd END AS short_share_xz,
           t.short_buy_sell_ratio_z
             + 0.5 * sign(t.short_buy_sell_ratio_z) * least(greatest(coalesce(t.volume_z, 0), 0), 4)
             + 0.5 * least(greatest(coalesce(t.trend_z, 0), -2), 2) AS score
    FROM t CROSS JOIN xs
)
SELECT *,
       coalesce(abs(short_buy_sell_ratio_z) >= $4, false) AS outlier,
       coalesce(volume_z >= $5, false) AS volume_spike,
       coalesce(abs(short_share_xz) >= $6, false) AS ratio_extreme
FROM s
"""


def _rank(metrics: pd.DataFrame, side: str) -> pd.Series:
    eligible = metrics["liquid"].fillna(False).astype(bool) & metrics["score"].notna()
    key = {"accumulation": -metrics["score"], "distribution": metrics["score"], "both": -metrics["score"].abs()}[side]
    order = pd.DataFrame({"k": key, "sym": metrics["symbol"]})[eligible].sort_values(["k", "sym"], kind="mergesort")
    rank = pd.Series(pd.NA, index=metrics.index, dtype="Int64")
    rank.loc[order.index] = np.arange(1, len(order) + 1)
    return rank


def scan(
    con: duckdb.DuckDBPyConnection,
    date: DateLike | None = None,
    lookback: int = 90,
    top: int = 50,
    trend_days: int = 3,
    outlier_z: float = 2.0,
    volume_z: float = 2.0,
    ratio_z: float = 2.0,
    min_total_volume: float = 50_000,
    min_periods: int | None = None,
    side: str = "accumulation",
    inference_version: str = "Scanner_v1",
) -> ScanResult:
    """Scan every symbol with FINRA data on ``date`` (default: the latest FINRA date); see the module doc.

    ``min_periods`` (default min(20, lookback)) ratios are needed in the window for a z-score.
    ``side`` orders ``top``: accumulation (score descending), distribution (ascending) or both (|score|).
    ``inference_version`` labels every row (column inference_version; the pipeline's SCANNER_INFERENCE_VERSION).
    Raises DataError when the store has no FINRA data on ``date`` (naming the nearest dates).
    """
    mp = _check_params(lookback, top, trend_days, min_periods, outlier_z, volume_z, ratio_z, min_total_volume, side)
    day = _resolve_date(con, date)
    window = window_sessions(day, int(lookback))
    start = window[0]
    have = [r[0] for r in con.execute(
        "SELECT DISTINCT date FROM finra_short_daily WHERE date BETWEEN ? AND ? ORDER BY 1", [start, day]
    ).fetchall()]
    cov = source_coverage("finra_short", have, start, day)
    params = [int(trend_days), mp, float(min_total_volume), float(outlier_z), float(volume_z), float(ratio_z), day]
    check_split_factors(con)
    raw = con.execute(_scan_sql(start, day), params).df()
    raw["lookback"] = int(lookback)
    raw["trend_days"] = int(trend_days)
    raw["inference_version"] = str(inference_version)
    raw["rank"] = _rank(raw, side)
    metrics = raw[[c for c, _ in SCANNER_COLUMNS]].copy()
    metrics["date"] = pd.to_datetime(metrics["date"]).dt.date
    metrics = metrics.sort_values(["rank", "symbol"], na_position="last", kind="mergesort").reset_index(drop=True)
    reason = None
    if cov.ratio < MIN_COVERAGE:
        gap = cov.largest_gap
        reason = (f"nothing ranked: FINRA short data covers {cov.sessions} of the {cov.expected} sessions of the "
                  f"lookback window {start}..{day} ({100 * cov.ratio:.1f}%), below the minimum {100 * MIN_COVERAGE:.0f}%"
                  + (f"; missing {gap}" if gap else "") + ". " + _thin_window_hint(window, have, int(trend_days)))
        metrics["rank"] = pd.array([pd.NA] * len(metrics), dtype="Int64")
    elif not metrics["rank"].notna().any():
        reason = (f"nothing ranked: no liquid symbol (mean total volume >= {min_total_volume:,.0f}) has a z-score "
                  f"(min_periods {mp} FINRA sessions in the window)")
    top_df = metrics[metrics["rank"].notna() & (metrics["rank"] <= top)].reset_index(drop=True)
    p = dict(lookback=lookback, top=top, trend_days=trend_days, outlier_z=outlier_z, volume_z=volume_z, ratio_z=ratio_z,
             min_total_volume=min_total_volume, min_periods=mp, side=side, inference_version=str(inference_version))
    return ScanResult(date=day, metrics=metrics, top=top_df, window_start=start, params=p, coverage=cov, reason=reason)


def _thin_window_hint(window: Sequence[dt.date], have: Sequence[dt.date], trend_days: int) -> str:
    """What to do when the window's coverage is below MIN_COVERAGE: the longest lookback (>= SCANNER_MIN_SESSIONS)
    whose last sessions the data covers, or, when there is none, ingest more days (never a window too short for a
    z-score to vary: one over 2 values is always +-1, so every symbol would score alike)."""
    held = set(have)
    covered = np.cumsum([d in held for d in reversed(window)])  # covered[n - 1]: sessions held among the last n
    for n in range(len(window) - 1, SCANNER_MIN_SESSIONS - 1, -1):
        if covered[n - 1] >= MIN_COVERAGE * n:
            td = f" --trend-days {n}" if trend_days > n else ""
            return f"Ingest the missing days, or scan a window the data covers (e.g. --lookback {n}{td})"
    return (f"Ingest the missing days: a ranking needs FINRA data on at least {SCANNER_MIN_SESSIONS} of the last "
            f"{SCANNER_MIN_SESSIONS} sessions (a z-score over 2 values is always ±1, so every symbol would score alike)")


def window_sessions(day: dt.date, lookback: int) -> list[dt.date]:
    """The last ``lookback`` NYSE sessions ending at ``day`` (``day`` itself included even when it is not one)."""
    days = session_days(day - dt.timedelta(days=int(lookback) * 2 + 14), day)
    out = [pd.Timestamp(d).date() for d in days[-int(lookback):]]
    if not out or out[-1] != day:
        out = (out + [day])[-int(lookback):]
    return out


def _ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    cols = ",\n    ".join(f"{c} {t}" + (" NOT NULL" if c in ("date", "symbol") else "") for c, t in SCANNER_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS scanner_daily_metrics (\n    {cols},\n    PRIMARY KEY (date, symbol)\n)")
    for c, t in SCANNER_COLUMNS:  # a table written by an older accumopt gets the newer columns
        con.execute(f"ALTER TABLE scanner_daily_metrics ADD COLUMN IF NOT EXISTS {c} {t}")


def scan_figures(result: ScanResult) -> tuple[go.Figure, go.Figure]:
    """(bar chart of the top-N scores, histogram of every liquid symbol's score) as plotly Figures."""
    top = result.top
    colors = np.where(top["score"].to_numpy(dtype=float) >= 0, "#4c9a6a", "#b85c5c")
    bar = go.Figure(
        go.Bar(
            x=top["symbol"].astype(str).tolist(), y=top["score"].astype(float).tolist(), name="Scanner score",
            marker_color=colors.tolist(),
            customdata=np.column_stack([
                top["short_buy_sell_ratio"].astype(float), top["short_buy_sell_ratio_z"].astype(float),
                top["volume_z"].astype(float).fillna(np.nan), top["trend_z"].astype(float).fillna(np.nan),
            ]).tolist() if len(top) else None,
            hovertemplate="%{x}<br>score %{y:.2f}<br>ratio %{customdata[0]:.3f} (z %{customdata[1]:.2f})"
                          "<br>volume z %{customdata[2]:.2f}<br>trend z %{customdata[3]:.2f}<extra></extra>",
        )
    )
    themed(bar).update_layout(title=f"FINRA short-sale scanner — top {len(top)} ({result.params['side']}) on {result.date}",
                              xaxis_title="symbol", yaxis_title="score")
    m = result.metrics
    scores = m.loc[m["liquid"].fillna(False).astype(bool) & m["score"].notna(), "score"].astype(float)
    hist = go.Figure(go.Histogram(x=scores.tolist(), nbinsx=80, name="Scanner score (liquid symbols)", marker_color="#6b7fa3"))
    themed(hist).update_layout(title=f"Scanner score distribution on {result.date} ({len(scores)} liquid symbols)",
                               xaxis_title="score", yaxis_title="symbols")
    return bar, hist


# every file write_scan writes in a day's folder: a re-run replaces them as a set (one it does not write this time,
# scanner_metrics.csv without export_full or a PNG without kaleido, is removed, never left beside the new files)
_SCAN_FILES = ("scanner_metrics.csv", "scanner_top.csv", "scanner_top.html", "scanner_scores.html", "scanner_top.png",
               "scanner_scores.png")


def write_scan(con: duckdb.DuckDBPyConnection, result: ScanResult, out_root: str | Path = "output/scanner",
               export_full: bool = True, png: bool | None = None) -> dict[str, Path]:
    """Write the files and replace ``result.date``'s rows of ``scanner_daily_metrics`` (one transaction), all or
    nothing.

    Files in ``out_root/YYYY-MM-DD/``: scanner_metrics.csv (all symbols; only with ``export_full``, the pipeline's
    SCANNER_EXPORT_FULL), scanner_top.csv, scanner_top.html (bar chart of the top scores), scanner_scores.html
    (score histogram), and scanner_top.png / scanner_scores.png as the design's scanner writes them (``png``: None
    = when kaleido is installed, True = required, False = never; see ``optimizer.report.files``). HTML embeds
    plotly.js (opens offline). Returns {"table", "metrics_csv", "top_csv", "top_html", "scores_html"[, "top_png",
    "scores_png"]} paths (table: a pseudo-path name; metrics_csv absent without ``export_full``).

    The day's folder is written whole (``paths.atomic_folder``): the files into a temporary folder, then the table's
    rows, then the folder swapped in. An error (a required PNG that cannot be made, a full disk, Ctrl-C) leaves the
    folder and the table as they were and names what failed; a re-run leaves none of the previous run's scanner
    files beside the new ones (``_SCAN_FILES``; other files in the folder are kept).
    """
    _ensure_table(con)
    frame = result.metrics[[c for c, _ in SCANNER_COLUMNS]]
    cols = ", ".join(c for c, _ in SCANNER_COLUMNS)
    out = Path(out_root) / result.date.isoformat()
    paths: dict[str, Path] = {}
    bar, hist = scan_figures(result)
    with atomic_folder(out, drop=_SCAN_FILES) as t:
        if export_full:
            paths["metrics_csv"] = out / "scanner_metrics.csv"
            result.metrics.to_csv(t / "scanner_metrics.csv", index=False)
        paths["top_csv"] = out / "scanner_top.csv"
        result.top.to_csv(t / "scanner_top.csv", index=False)
        written = write_figures([(bar, t / "scanner_top.html"), (hist, t / "scanner_scores.html")], png, shown_in=out)
        paths["top_html"], paths["scores_html"] = out / "scanner_top.html", out / "scanner_scores.html"
        for key, name in (("top_png", "scanner_top.png"), ("scores_png", "scanner_scores.png")):
            if t / name in written:
                paths[key] = out / name
        con.register("_scan_frame", frame)  # last: a failure above leaves the table as it was
        try:
            with transaction(con):
                con.execute("DELETE FROM scanner_daily_metrics WHERE date = ?", [result.date])
                con.execute(f"INSERT INTO scanner_daily_metrics ({cols}) SELECT {cols} FROM _scan_frame")
        finally:
            con.unregister("_scan_frame")
    return {"table": Path("scanner_daily_metrics"), **paths}


_SCAN_VIEW = (
    Column("rank", label="#"), Column("symbol"), Column("short_share", label="short/total", fmt=".3f"),
    Column("short_buy_sell_ratio", label="buy/sell", fmt=".3f"), Column("short_buy_sell_ratio_z", label="ratio_z", fmt=".2f"),
    Column("volume_z", fmt=".2f"), Column("trend_z", fmt=".2f"),
    Column("score", fmt=".2f", style=lambda v: "green" if v > 0 else "red"), Column("flags"),
)


def render_scan(result: ScanResult, console: Console, limit: int | None = None, select: Sequence[str] | str | None = None,
                wide: bool = False) -> None:
    """Print the top table (rank, symbol, ratio, z-scores, score, flags) to a rich Console, fitting its width."""
    top = result.top if limit is None else result.top.head(limit)
    n_liquid = int(result.metrics["liquid"].fillna(False).astype(bool).sum())
    view = top.assign(flags=[",".join(f for f, on in (("outlier", r.outlier), ("volume", r.volume_spike),
                                                      ("extreme", r.ratio_extreme)) if on)
                             for r in top.itertuples(index=False)])
    console.print(f"FINRA short-sale scanner {result.date}: window {result.window_start}..{result.date}, "
                  f"{len(result.metrics)} symbols ({n_liquid} liquid), side={result.params['side']}",
                  markup=False, highlight=False, style="bold")
    if len(view):  # nothing ranked: no table (its header alone printed a bare '#'); the reason below says why
        print_frame(view, console, columns=_SCAN_VIEW, key=[c.name for c in _SCAN_VIEW], select=select, wide=wide)
    if result.coverage is not None:
        console.print(f"coverage: {result.coverage.describe()}", markup=False, highlight=False)
    if result.reason:
        console.print(result.reason, style="yellow", markup=False, highlight=False)