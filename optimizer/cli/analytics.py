"""Commands of the evening workflow: scan, table, plot, chart.

``table`` imports the tables (and the engine's score), ``plot`` / ``chart`` the plots where they call them: ``scan``
loads neither.
"""

from __future__ import annotations

import json

import click

from optimizer.analytics.scanner import render_scan, scan, write_scan
from optimizer.cli._common import (
    echo_json, console, format_option, frame_json, shared_options, table_options, wait_option, warn_stale_metrics,
)
from optimizer.data.store import connect
from optimizer.data.symbols import canonical_symbol
from optimizer.paths import existing_store, output_root, resolve_db, run_label, under
from optimizer.report.files import save_figure
from optimizer.settings import Settings

__all__ = ["COMMANDS"]


def _png_option(f):
    return click.option("--png/--no-png", "png", default=None,
                        help="Also write PNG images (kaleido, the png extra). Default: when kaleido is installed; "
                             "--png makes a missing kaleido an error, --no-png skips them.")(f)


@click.command("scan")
@click.option("--date", default=None, help="Scan date (default: latest FINRA date in the store).")
@click.option("--lookback", type=int, default=None, help="FINRA sessions in the z-score window [env SCANNER_LOOKBACK_DAYS; 90].")
@click.option("--top", type=int, default=None, help="How many ranked symbols to list [env SCANNER_TOP_N; 50].")
@click.option("--trend-days", type=int, default=None, help="Sessions of the short-ratio trend [env SCANNER_TREND_DAYS; 3].")
@click.option("--outlier-z", type=float, default=None, help="|z| that flags an outlier [env SCANNER_OUTLIER_Z; 2.0].")
@click.option("--volume-z", type=float, default=None, help="Volume z-score threshold [env SCANNER_VOLUME_Z; 2.0].")
@click.option("--ratio-z", type=float, default=None, help="Short-ratio z-score threshold [env SCANNER_RATIO_Z; 2.0].")
@click.option("--export-full/--no-export-full", default=None,
              help="Write scanner_metrics.csv with every symbol [env SCANNER_EXPORT_FULL; on].")
@_png_option
@shared_options("db", "out", db_help="DuckDB store. Precedence: this flag > env SCANNER_DB_PATH (the pipeline's "
                                     "own variable) > env ACCUMOPT_DB > <out>/darkpool.duckdb.")
@wait_option()
@table_options
@format_option()
def scan_cmd(date, lookback, top, trend_days, outlier_z, volume_z, ratio_z, export_full, png, db, out, columns, wide,
             fmt):
    """Scan every symbol's FINRA short-sale data for accumulation outliers; writes scanner_daily_metrics and
    <out>/scanner/YYYY-MM-DD/ (CSV + HTML, PNG with kaleido). Unset flags take the pipeline's SCANNER_*
    environment variables (SCANNER_DB_PATH, the pipeline's own variable, is the store when --db is not given; it
    wins over ACCUMOPT_DB)."""
    st = Settings.from_env()
    root = output_root(out)
    db = existing_store(resolve_db(db or st.scanner_db_path, None, root))
    out_root = root / "scanner"

    def pick(flag, env_value):
        return env_value if flag is None else flag

    con = connect(db)
    try:
        res = scan(con, date=date, lookback=pick(lookback, st.scanner_lookback_days), top=pick(top, st.scanner_top_n),
                   trend_days=pick(trend_days, st.scanner_trend_days), outlier_z=pick(outlier_z, st.scanner_outlier_z),
                   volume_z=pick(volume_z, st.scanner_volume_z), ratio_z=pick(ratio_z, st.scanner_ratio_z),
                   inference_version=st.scanner_inference_version)
        paths = write_scan(con, res, out_root, export_full=pick(export_full, st.scanner_export_full), png=png)
    finally:
        con.close()
    if fmt == "json":
        echo_json({"date": str(res.date), "window_start": str(res.window_start), "params": res.params,
               "top": json.loads(frame_json(res.top)),
               "coverage": res.coverage.to_dict() if res.coverage is not None else None, "reason": res.reason, "files": paths})
    else:
        render_scan(res, console, select=columns, wide=wide)
        for k, v in paths.items():
            click.echo(f"{k}: {v}")


@click.command("table")
@click.option("--date", default=None, help="Date (default: the latest date with FINRA short data).")
@click.option("--tickers", default=None, help="Comma-separated (default: $TICKERS or every symbol).")
@click.option("--style", type=click.Choice(["scan", "analysis"]), default="scan", show_default=True,
              help="scan: compact, best score first; analysis: every volume and z column, in ticker order.")
@shared_options("db", "out")
@table_options
@format_option()
@wait_option()
def table_cmd(date, tickers, style, db, out, columns, wide, fmt):
    """Daily table: short ratio, lit imbalance, OTC participation, score, confidence, agreement, provenance; also
    written as HTML to <out>/tables/<date>_<style>[_<TICKER>...].html (canonical symbols)."""
    from optimizer.analytics.tables import daily_table, render_daily_table, write_daily_table_html

    store = existing_store(resolve_db(db, None, output_root(out)))
    warn_stale_metrics(store)  # on stderr only: the JSON document is the table's rows
    con = connect(store, read_only=True)
    try:
        df = daily_table(con, date=date, tickers=tickers, style=style)
    finally:
        con.close()
    d = str(df["date"].iloc[0])[:10] if len(df) and "date" in df else (date or "latest")
    shown = df.attrs.get("tickers") or ()  # --tickers or $TICKERS, canonical: brk/b, BRK-B and BRK.B name one file
    path = write_daily_table_html(df, under(output_root(out), "tables", run_label(d, style, *shown), suffix=".html"))
    if fmt == "json":
        click.echo(frame_json(df))
    else:
        render_daily_table(df, console, style=style, select=columns, wide=wide)
        click.echo(f"html: {path}")


@click.command("plot")
@click.argument("ticker")
@click.option("--dates", nargs=2, default=(None, None), metavar="START END",
              help="First and last date, YYYY-MM-DD (default: all).")
@click.option("--mode", type=click.Choice(["layered", "short_only", "both"]), default="layered", show_default=True,
              help="layered: short ratio, lit imbalance and price together; short_only; both: one file each.")
@_png_option
@shared_options("db", "out")
@wait_option()
def plot_cmd(ticker, dates, mode, png, db, out):
    """Pressure plots for TICKER (plotly HTML; PNG too when kaleido is installed), written to
    <out>/plots/<TICKER>_<mode>[_<start>_<end>].html."""
    from optimizer.analytics.plots import pressure_plot

    store = existing_store(resolve_db(db, None, output_root(out)))
    warn_stale_metrics(store)
    con = connect(store, read_only=True)
    try:
        figs = pressure_plot(con, ticker, dates[0], dates[1], mode=mode)
    finally:
        con.close()
    figs = figs if isinstance(figs, (list, tuple)) else [figs]
    for i, fig in enumerate(figs):
        suffix = mode if len(figs) == 1 else ("layered", "short_only")[i]
        p = under(output_root(out), "plots", run_label(canonical_symbol(ticker, "ticker"), suffix, *dates), suffix=".html")
        for w in save_figure(fig, p, png=png):
            click.echo(str(w))


@click.command("chart")
@click.argument("ticker")
@click.option("--timeframe", type=click.Choice(["daily", "weekly", "monthly"]), default="daily", show_default=True,
              help="Bar size.")
@click.option("--start", default=None, help="First date (default: all).")
@click.option("--end", default=None, help="Last date (default: all).")
@_png_option
@shared_options("db", "out")
@wait_option()
def chart_cmd(ticker, timeframe, start, end, png, db, out):
    """OHLCV candles with volume for TICKER (plotly HTML), written to
    <out>/charts/<TICKER>_<timeframe>[_<start>_<end>].html."""
    from optimizer.analytics.plots import price_chart

    con = connect(existing_store(resolve_db(db, None, output_root(out))), read_only=True)
    try:
        fig = price_chart(con, ticker, timeframe=timeframe, start=start, end=end)
    finally:
        con.close()
    path = under(output_root(out), "charts", run_label(canonical_symbol(ticker, "ticker"), timeframe, start, end),
                 suffix=".html")
    for w in save_figure(fig, path, png=png):
        click.echo(str(w))


COMMANDS = (scan_cmd, table_cmd, plot_cmd, chart_cmd,)
