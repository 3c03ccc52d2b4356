"""CLI commands over the engine, the studies and the daily analytics (registered on the main group)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from .cli import _json, _progress, _table, console, db_option, err_console, format_option, storage_option
from .config import DEFAULT_STORAGE
from .errors import DataError, ParameterError

__all__ = ["register"]

BACKTEST_KEYS = (
    "total_signals", "total_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
    "portfolio_sharpe", "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate", "rank_score",
    "avg_excess_return", "avg_benchmark_return", "closed_trades", "open_at_end",
)


def _load_params_file(path: str) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ParameterError(f"{path}: cannot read a JSON params file: {e}") from None
    if isinstance(doc, dict) and isinstance(doc.get("params"), dict):
        return dict(doc["params"])
    if not isinstance(doc, dict):
        raise ParameterError(f"{path}: must hold a JSON object of parameters or {{\"params\": {{...}}}}")
    return doc


@click.command("backtest")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON parameters (e.g. from `accumopt study best NAME --format json`); flags override them.")
@click.option("--variant", type=click.Choice(["A", "B", "C", "D", "vw_flow", "blended"]), help="Score variant (default B).")
@click.option("--w-short", type=float, help="Weight of the short-ratio term (default 0.55; weights are normalized).")
@click.option("--w-lit", type=float, help="Weight of the lit-imbalance term (default 0.30).")
@click.option("--w-price", type=float, help="Weight of the price term (default 0.15).")
@click.option("--z-window", type=int, help="Rolling z-score window in sessions (default 20).")
@click.option("--buy", "buy_threshold", type=float, help="Accumulation when display >= buy (default 70).")
@click.option("--sell", "sell_threshold", type=float, help="Distribution when display <= sell (default 30).")
@click.option("--exit", "exit_", help="fixed_<N>d, first_dist, 2x_consec_dist, score_decay, hybrid_<M>d.")
@click.option("--stop-loss", type=float, help="Fraction, e.g. 0.05.")
@click.option("--take-profit", type=float, help="Fraction, e.g. 0.10.")
@click.option("--time-stop", type=int, help="Maximum holding sessions for any exit.")
@click.option("--commission-bps", type=float, help="Per side (default 1.0).")
@click.option("--slippage-bps", type=float, help="Per side (default 5.0).")
@click.option("--max-positions", type=int, help="Maximum open positions at once (default: no cap).")
@click.option("--max-per-sector", type=int, help="Maximum open positions per sector ETF (default: no cap).")
@click.option("--sizing", type=click.Choice(["equal", "atr"]), help="Portfolio weights: equal per open position (default) or inverse ATR% at the signal (volatility targeting).")
@click.option("--universe", default="tier1+3", show_default=True, help="tier1, tier3, tier1+3, tier1+2+3, all or a comma list.")
@click.option("--start", default=None, help="First session (default: the first in daily_metrics).")
@click.option("--end", default=None, help="Last session (default: the last in daily_metrics).")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Write bt_ tables and output/signal_events.parquet, backtest_runs.csv, frequency_baseline.csv.")
@db_option
@format_option()
def backtest_cmd(params_file, universe, start, end, save, db, fmt, **flags):
    """Backtest one configuration on the store and print its metrics (returns are fractions)."""
    from .data.store import connect, table_exists
    from .engine.evaluate import Config, Evaluator
    from .engine.panel import load_panel
    from .universe import resolve_universe

    params = _load_params_file(params_file) if params_file else {}
    for k, v in flags.items():
        if v is not None:
            params["exit" if k == "exit_" else k] = v
    from .space import engine_params

    cfg = Config.from_params(engine_params(params))
    con = connect(db, read_only=True)
    try:
        if not table_exists(con, "daily_metrics"):
            raise DataError(f"{db} has no daily_metrics table; run `accumopt metrics build --db {db}` first")
        avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics ORDER BY 1").fetchall()]
        if not avail:
            raise DataError(f"daily_metrics in {db} is empty; run `accumopt metrics build --db {db}` first")
        syms = resolve_universe(universe, avail)
        if not syms:
            raise DataError(f"universe {universe!r} has no symbol in daily_metrics of {db}; "
                            f"it holds {len(avail)}: {', '.join(avail[:12])}{' ...' if len(avail) > 12 else ''}")
        panel = load_panel(con, syms, start, end)
    finally:
        con.close()
    ev = Evaluator(panel)
    res = ev.run(cfg)
    out = {k: res.metrics[k] for k in BACKTEST_KEYS}
    paths = {}
    if save:
        paths = _save_backtest(res, panel, db)
    if fmt == "json":
        _json(out | {"params": cfg.to_params(), "start": str(panel.dates[0]), "end": str(panel.dates[-1]),
                     "symbols": len(panel.symbols), "outputs": paths})
    else:
        _table([{"metric": k, "value": v} for k, v in out.items()],
               title=f"backtest {panel.dates[0]}..{panel.dates[-1]}, {len(panel.symbols)} symbols")
        for k, v in paths.items():
            click.echo(f"{k}: {v}")


def _save_backtest(res, panel, db) -> dict:
    try:
        from .engine.context import compute_context
        from .engine.outcomes import backtest_summary, frequency_baseline, signal_events
        from .outputs import make_run_id, write_backtest, write_backtest_files
    except ImportError as e:  # pragma: no cover - only during partial installs
        err_console.print(f"[yellow]outputs not written: {e}[/]")
        return {}
    from .data.store import connect

    ctx = compute_context(panel)
    events = signal_events(res, panel, ctx)
    base = frequency_baseline(res.display, panel, res.config.thresholds, res.span)
    summary = backtest_summary(res, events, panel)
    run_id = make_run_id(res.config, (str(panel.dates[0]), str(panel.dates[-1])), panel.fingerprint())
    con = connect(db)
    try:
        write_backtest(con, run_id, summary, events, base)
    finally:
        con.close()
    files = write_backtest_files(summary, events, base, "output", run_id=run_id)
    return {"run_id": run_id, **{k: str(v) for k, v in files.items()}}


# ------------------------------------------------------------------------------------------------ studies
@click.group("study")
def study_grp():
    """Run and inspect Optuna studies defined by TOML specs (studies/*.toml)."""


def _spec(path):
    from .spec import load_spec

    return load_spec(path)


@study_grp.command("validate")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
def study_validate(specs):
    """Validate spec files without running anything (exit 2 on the first invalid one)."""
    for p in specs:
        s = _spec(p)
        console.print(f"[green]ok[/] {escape(str(p))}: study {s.run.study_name!r}, {len(s.space)} parameters, sampler {s.sampler.name}, "
                      f"pruner {s.pruner.name}, objective {s.objective.name}, purge {s.purge()}, embargo {s.embargo()}, hash {s.spec_hash}",
                      soft_wrap=True, highlight=False)


def _run_opts(f):
    for opt in reversed([
        click.option("--n-trials", type=int, help="Total finished trials the study should hold (resuming counts earlier ones)."),
        click.option("--timeout", type=float, help="Stop starting new trials after this many seconds."),
        click.option("--name", help="Study name (default: [run].study_name or the spec's name)."),
        click.option("--new-name", is_flag=True, help="If the spec changed, start a new study NAME-2 instead of refusing."),
    ]):
        f = opt(f)
    return f


@study_grp.command("run")
@click.argument("spec", type=click.Path())
@_run_opts
@click.option("--jobs", default=1, show_default=True, type=int, help="Worker processes on this machine.")
@storage_option
@db_option
@format_option()
def study_run(spec, n_trials, timeout, name, new_name, jobs, storage, db, fmt):
    """Create or resume the study of SPEC and run it. Ctrl-C stops after the running trial; re-run to resume."""
    from .study import run_study

    s = _spec(spec)
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got jobs={jobs}")
    res = run_study(s, db, storage, n_trials=n_trials, timeout=timeout, jobs=jobs, name=name, new_name=new_name,
                    progress=_progress() and fmt == "table")
    _print_run(res, fmt)


def _print_run(res, fmt):
    d = {"study": res.study_name, "storage": res.storage, **res.counts, "best_value": res.best_value,
         "best_params": res.best_params, "seconds": round(res.seconds, 2), "interrupted": res.interrupted}
    if fmt == "json":
        _json(d)
    else:
        _table([{"key": k, "value": json.dumps(v, default=str) if isinstance(v, (dict, list)) else v} for k, v in d.items()],
               title=f"study {res.study_name}")
        console.print(f"dashboard: accumopt dashboard --storage {res.storage}")


@study_grp.command("worker")
@click.argument("spec", type=click.Path())
@click.option("--storage", required=True, envvar="ACCUMOPT_STORAGE", help="Shared storage URL (e.g. postgresql://...).")
@_run_opts
@db_option
@format_option()
def study_worker(spec, storage, n_trials, timeout, name, new_name, db, fmt):
    """Join a running study from another process or machine (same spec, same data, shared storage)."""
    from .study import run_study

    res = run_study(_spec(spec), db, storage, n_trials=n_trials, timeout=timeout, name=name, new_name=new_name, worker=True,
                    progress=_progress() and fmt == "table")
    _print_run(res, fmt)


@study_grp.command("list")
@storage_option
@format_option("table", "json", "csv")
def study_list(storage, fmt):
    """List studies: trials complete/pruned/failed/running, best value, created."""
    from .inspect_studies import list_studies

    df = list_studies(_storage(storage))
    _emit_df(df, fmt, "studies")


def _storage(url):
    from .study import make_storage

    return make_storage(url, heartbeat=False)


def _emit_df(df, fmt, title):
    if fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso", indent=2))
    elif fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    else:
        _table(df, title=title)


@study_grp.command("show")
@click.argument("name")
@click.option("--top", default=10, show_default=True, type=int, help="How many trials to show.")
@storage_option
@format_option("table", "json", "csv")
def study_show(name, top, storage, fmt):
    """Top trials of study NAME with parameters and metrics (the Pareto front for multi-objective studies)."""
    from .inspect_studies import show_study

    _emit_df(show_study(_storage(storage), name, top=top), fmt, f"study {name}: top {top}")


@study_grp.command("best")
@click.argument("name")
@storage_option
@format_option("json", "table")
def study_best(name, storage, fmt):
    """The best trial: params (accepted as-is by `backtest --params FILE`), value and metrics."""
    from .inspect_studies import best_trial_json

    d = best_trial_json(_storage(storage), name)
    if fmt == "json":
        _json(d)
    else:
        _table([{"key": k, "value": json.dumps(v, default=str) if isinstance(v, (dict, list)) else v} for k, v in d.items()],
               title=f"best of {name}")


@study_grp.command("compare")
@click.argument("names", nargs=-1, required=True)
@click.option("--out", default=None, help="HTML path (default output/reports/compare_<names>.html).")
@storage_option
@format_option()
def study_compare(names, out, storage, fmt):
    """Compare studies: completed vs pruned vs failed, prune folds, best-so-far curves, time saved by pruning."""
    from .inspect_studies import compare_studies, write_compare_html

    res = compare_studies(_storage(storage), list(names))
    path = Path(out or f"output/reports/compare_{'_'.join(names)}.html")
    write_compare_html(res, path)
    if fmt == "json":
        _json({"summary": json.loads(res.summary.to_json(orient="records")), "html": str(path)})
    else:
        _table(res.summary, title="study comparison")
        click.echo(f"report: {path}")


@study_grp.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="File format of the export.")
@click.option("--out", default=None, help="Output path (default output/<name>_trials.<format>).")
@storage_option
def study_export(name, fmt, out, storage):
    """Export every trial (params, values, states, metrics) to CSV or Parquet."""
    from .inspect_studies import export_study

    p = export_study(_storage(storage), name, out or f"output/{name}_trials.{fmt}", fmt=fmt)
    click.echo(str(p))


@study_grp.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@storage_option
def study_delete(name, yes, storage):
    """Delete study NAME and all its trials (asks first unless --yes)."""
    from .inspect_studies import delete_study

    if not yes:
        if not sys.stdin.isatty():
            raise ParameterError("refusing to delete without confirmation on a non-interactive stdin; pass --yes")
        click.confirm(f"Delete study {name!r} and all its trials?", abort=True)
    delete_study(_storage(storage), name)
    console.print(f"deleted {name}")


@study_grp.command("replay")
@click.argument("name")
@click.argument("trial", type=int)
@storage_option
@db_option
@format_option()
def study_replay(name, trial, storage, db, fmt):
    """Re-evaluate stored trial TRIAL of study NAME on the same data and show that it reproduces."""
    from .replay import replay_trial

    rep = replay_trial(_storage(storage), name, trial, db)
    if fmt == "json":
        _json(rep | {"comparison": rep["comparison"].to_dict(orient="records")})
    else:
        _table(rep["comparison"], title=f"replay {name} #{trial}: {'REPRODUCED' if rep['reproduced'] else 'DIFFERENT'}")
    if not rep["reproduced"]:
        sys.exit(1)


@click.command("dashboard")
@storage_option
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
def dashboard_cmd(storage, port, host):
    """Start optuna-dashboard on the study storage (http://127.0.0.1:PORT)."""
    import optuna_dashboard

    url = storage or DEFAULT_STORAGE
    console.print(f"optuna-dashboard on http://{host}:{port} for {url} (Ctrl-C to stop)")
    optuna_dashboard.run_server(_storage(url), host=host, port=port)


# ------------------------------------------------------------------------------------------------ analytics
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
    from .analytics.scanner import render_scan, scan, write_scan
    from .data.store import connect

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
    from .analytics.tables import daily_table, render_daily_table, write_daily_table_html
    from .data.store import connect

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
    from .analytics.plots import pressure_plot, save_figure
    from .data.store import connect

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
    from .analytics.plots import price_chart, save_figure
    from .data.store import connect

    con = connect(db, read_only=True)
    try:
        fig = price_chart(con, ticker.upper(), timeframe=timeframe, start=start, end=end)
    finally:
        con.close()
    for w in save_figure(fig, out or f"output/charts/{ticker.upper()}_{timeframe}.html"):
        click.echo(str(w))


def register(main: click.Group) -> None:
    for cmd in (backtest_cmd, study_grp, dashboard_cmd, scan_cmd, table_cmd, plot_cmd, chart_cmd):
        main.add_command(cmd)
    try:
        from .cli_research import register as reg2
    except ImportError:  # pragma: no cover
        return
    reg2(main)
