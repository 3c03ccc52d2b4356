"""Command: backtest one configuration on the store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from optimizer.cli._common import _json, _table, db_option, err_console, format_option
from optimizer.errors import DataError, ParameterError

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
    from optimizer.data.store import connect, table_exists
    from optimizer.data.universe import resolve_universe
    from optimizer.engine.evaluate import Config, Evaluator
    from optimizer.engine.panel import load_panel

    params = _load_params_file(params_file) if params_file else {}
    for k, v in flags.items():
        if v is not None:
            params["exit" if k == "exit_" else k] = v
    from optimizer.study.space import engine_params

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
        paths = _save_backtest(res, panel, db, universe)
    if fmt == "json":
        _json(out | {"params": cfg.to_params(), "start": str(panel.dates[0]), "end": str(panel.dates[-1]),
                     "symbols": len(panel.symbols), "outputs": paths})
    else:
        _table([{"metric": k, "value": v} for k, v in out.items()],
               title=f"backtest {panel.dates[0]}..{panel.dates[-1]}, {len(panel.symbols)} symbols")
        for k, v in paths.items():
            click.echo(f"{k}: {v}")


def _save_backtest(res, panel, db, universe=None) -> dict:
    try:
        from optimizer.engine.context import compute_context, market_regime_frame
        from optimizer.engine.outcomes import (
            backtest_summary,
            frequency_baseline,
            signal_events,
        )
        from optimizer.report.backtest import (
            make_run_id,
            write_backtest,
            write_backtest_files,
            write_market_regimes,
        )
    except ImportError as e:  # pragma: no cover - only during partial installs
        err_console.print(f"[yellow]outputs not written: {e}[/]")
        return {}
    from optimizer.data.store import connect

    ctx = compute_context(panel)
    events = signal_events(res, panel, ctx)
    base = frequency_baseline(res.display, panel, res.config.thresholds, res.span, res.config.score.variant)
    summary = backtest_summary(res, events, panel, universe=universe)
    run_id = make_run_id(res.config, (str(panel.dates[0]), str(panel.dates[-1])), panel.fingerprint())
    con = connect(db)
    try:
        write_backtest(con, run_id, summary, events, base)
        write_market_regimes(con, market_regime_frame(panel, ctx))
    finally:
        con.close()
    files = write_backtest_files(summary, events, base, "output", run_id=run_id)
    return {"run_id": run_id, **{k: str(v) for k, v in files.items()}}


# ------------------------------------------------------------------------------------------------ studies

__all__ = ["COMMANDS"]

COMMANDS = (backtest_cmd,)
