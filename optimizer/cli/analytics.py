"""Commands of the evening workflow: scan, table, plot, chart."""

from __future__ import annotations

import json

import click

from optimizer.cli._common import _json, console, db_option, format_option


@click.command("scan")
@click.option("--date", default=None, help="Scan date (default: latest FINRA date in the store).")
@click.option("--lookback", default=90, show_default=True, type=int, help="FINRA sessions in the z-score window.")
@click.option("--top", default=50, show_default=True, type=int, help="How many ranked symbols to list.")
@click.option("--trend-days", default=3, show_default=True, type=int, help="Sessions of the short-ratio trend flag.")
@click.option("--outlier-z", default=2.0, show_default=True, type=float, help="|z| that flags an outlier.")
@click.option("--volume-z", default=2.0, show_default=True, type=float, help="Volume z-score threshold.")
@click.option("--ratio-z", default=2.0, show_default=True, type=float, help="Short-ratio z-score threshold.")
@click.option("--out", "out_root", default="output/scanner", show_default=True, help="Root directory of the dated output folders.")
@db_option
@format_option()
def scan_cmd(date, lookback, top, trend_days, outlier_z, volume_z, ratio_z, out_root, db, fmt):
    """Scan every symbol's FINRA short-sale data for accumulation outliers; writes scanner_daily_metrics and
    output/scanner/YYYY-MM-DD/ (CSV + HTML)."""
    from optimizer.analytics.scanner import render_scan, scan, write_scan
    from optimizer.data.store import connect

    con = connect(db)
    try:
        res = scan(con, date=date, lookback=lookback, top=top, trend_days=trend_days, outlier_z=outlier_z,
                   volume_z=volume_z, ratio_z=ratio_z)
        paths = write_scan(con, res, out_root)
    finally:
        con.close()
    if fmt == "json":
        _json({"date": str(res.date), "top": json.loads(res.top.to_json(orient="records")), "files": paths})
    else:
        render_scan(res, console)
        for k, v in paths.items():
            click.echo(f"{k}: {v}")


@click.command("table")
@click.option("--date", default=None, help="Date (default: latest in daily_metrics).")
@click.option("--tickers", default=None, help="Comma-separated (default: $TICKERS or every symbol).")
@click.option("--style", type=click.Choice(["scan", "analysis"]), default="scan", show_default=True,
              help="scan: compact, best score first; analysis: every volume and z column, in ticker order.")
@click.option("--html", "html_path", default=None, help="Also write an HTML table here (default output/tables/<date>.html).")
@db_option
@format_option()
def table_cmd(date, tickers, style, html_path, db, fmt):
    """Daily table: short ratio, lit imbalance, OTC participation, score, confidence, agreement, provenance."""
    from optimizer.analytics.tables import (
        daily_table,
        render_daily_table,
        write_daily_table_html,
    )
    from optimizer.data.store import connect

    con = connect(db, read_only=True)
    try:
        df = daily_table(con, date=date, tickers=tickers, style=style)
    finally:
        con.close()
    d = str(df["date"].iloc[0])[:10] if len(df) and "date" in df else (date or "latest")
    path = write_daily_table_html(df, html_path or f"output/tables/{d}.html")
    if fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso", indent=2))
    else:
        render_daily_table(df, console)
        click.echo(f"html: {path}")


@click.command("plot")
@click.argument("ticker")
@click.option("--dates", nargs=2, default=(None, None), help="START END (default: all).")
@click.option("--mode", type=click.Choice(["layered", "short_only", "both"]), default="layered", show_default=True,
              help="layered: short ratio, lit imbalance and price together; short_only; both: one file each.")
@click.option("--out", default=None, help="Output HTML (default output/plots/<TICKER>_<mode>.html).")
@db_option
def plot_cmd(ticker, dates, mode, out, db):
    """Pressure plots for TICKER (plotly HTML; PNG too when kaleido is installed)."""
    from optimizer.analytics.plots import pressure_plot, save_figure
    from optimizer.data.store import connect

    con = connect(db, read_only=True)
    try:
        figs = pressure_plot(con, ticker.upper(), dates[0], dates[1], mode=mode)
    finally:
        con.close()
    figs = figs if isinstance(figs, (list, tuple)) else [figs]
    for i, fig in enumerate(figs):
        suffix = mode if len(figs) == 1 else ("layered", "short_only")[i]
        p = out if (out and len(figs) == 1) else f"output/plots/{ticker.upper()}_{suffix}.html"
        for w in save_figure(fig, p):
            click.echo(str(w))


@click.command("chart")
@click.argument("ticker")
@click.option("--timeframe", type=click.Choice(["daily", "weekly", "monthly"]), default="daily", show_default=True,
              help="Bar size.")
@click.option("--start", default=None, help="First date (default: all).")
@click.option("--end", default=None, help="Last date (default: all).")
@click.option("--out", default=None, help="Output HTML (default output/charts/<TICKER>_<timeframe>.html).")
@db_option
def chart_cmd(ticker, timeframe, start, end, out, db):
    """OHLCV candles with volume for TICKER (plotly HTML)."""
    from optimizer.analytics.plots import price_chart, save_figure
    from optimizer.data.store import connect

    con = connect(db, read_only=True)
    try:
        fig = price_chart(con, ticker.upper(), timeframe=timeframe, start=start, end=end)
    finally:
        con.close()
    for w in save_figure(fig, out or f"output/charts/{ticker.upper()}_{timeframe}.html"):
        click.echo(str(w))



__all__ = ["COMMANDS"]

COMMANDS = (scan_cmd, table_cmd, plot_cmd, chart_cmd,)
