"""CLI commands for out-of-sample research: walkforward, report, sandbox, and the end-to-end demo."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from optimizer.cli._common import (
    Column,
    echo_json,
    progress_enabled,
    print_cmd,
    print_kv,
    print_table,
    console,
    db_option,
    err_console,
    format_option,
    storage_option,
    table_options,
)
from optimizer.demo import run_demo
from optimizer.report.research import build_report
from optimizer.report.sandbox import sandbox_figure, sandbox_run, write_sandbox
from optimizer.study.paramsfile import load_params_record
from optimizer.study.spec import load_spec
from optimizer.validate.walkforward import run_walkforward, save_walkforward

__all__ = ["COMMANDS"]


@click.command("walkforward")
@click.argument("spec", type=click.Path())
@click.option("--final", is_flag=True, help="Also open the final reserve (last [data].reserve_fraction of sessions). Recorded; a second opening warns.")
@click.option("--n-trials", type=int, help="Trials per window (default [walkforward].n_trials or [run].n_trials).")
@click.option("--out", "out_dir", default=None, help="Directory for the run's files (default output/walkforward/<study>).")
@storage_option
@db_option
@table_options
@format_option()
def walkforward_cmd(spec, final, n_trials, out_dir, storage, db, columns, wide, fmt):
    """Re-optimize SPEC on rolling train windows and evaluate each winner once on the following test window.

    Prints per-window in-sample vs out-of-sample metrics, the stitched out-of-sample result, DSR / PSR / PBO,
    cost stress and the verdict. Writes output/walk_forward_summary.csv and output/walkforward/<study>/.
    An interrupted run resumes at the first unfinished window.
    """
    s = load_spec(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        res = run_walkforward(s, db, storage, final=final, progress=progress_enabled() and fmt == "table", n_trials=n_trials)
    for w in caught:
        if "reserve" in str(w.message):
            err_console.print(str(w.message), style="bold red", markup=False, highlight=False, soft_wrap=True)
    d = save_walkforward(res, out_dir or f"output/walkforward/{s.run.study_name}")
    if fmt == "json":
        echo_json(res.to_dict() | {"files": str(d)})
        return
    print_table(res.summary, title=f"walk-forward {s.run.study_name}: {len(res.windows)} windows",
                columns=[Column(c, label=_WF_LABELS.get(c, c[6:] if c.startswith("param_") else c))
                         for c in res.summary.columns],
                key=_WF_KEY, select=columns, wide=wide)
    o = res.oos
    print_kv({k: o.get(k) for k in ("closed_trades", "hit_rate", "avg_return", "avg_excess_return", "excess_t",
                                    "excess_t_iid", "portfolio_sharpe", "max_drawdown", "rank_score")},
             title="stitched out-of-sample (excess_t: HAC)")
    st, inf = res.stats, res.stats.get("inference") or {}
    print_kv({"n_days": inf.get("n_days"), "n_eff": inf.get("n_eff"), "mde_per_trade": inf.get("mde_per_trade"),
              "mde_per_year": inf.get("mde_per_year"), "psr": st.get("psr"), "dsr": st.get("dsr"), "pbo": st.get("pbo"),
              "spa_p": (st.get("spa") or {}).get("p"), "degradation": st.get("degradation"),
              "n_trials_tried": st.get("n_trials_tried"), "n_configs": st.get("n_configs"),
              "cost_stress": st.get("cost_stress_wording")}, title="statistics (on excess returns)")
    color = "green" if res.verdict.supported else "red"
    console.print(res.verdict.line, style=f"bold {color}", markup=False, highlight=False)
    click.echo(f"files: {d}")
    print_cmd("report:", f"accumopt report {d}")


# The windows table: out-of-sample columns first (what the user decides on), then in-sample, then parameters.
_WF_KEY = ("window", "test_start", "oos_closed_trades", "oos_hit_rate", "oos_avg_excess_return", "oos_rank_score",
           "is_avg_excess_return", "is_rank_score", "test_end", "param_variant", "param_z_window", "param_exit")
_WF_LABELS = {"window": "win", "test_start": "test from", "test_end": "test to", "oos_closed_trades": "oos trades",
              "oos_hit_rate": "oos hit", "oos_avg_excess_return": "oos excess", "oos_rank_score": "oos rank",
              "is_avg_excess_return": "is excess", "is_rank_score": "is rank"}


@click.command("report")
@click.argument("target")
@click.option("--out", "out_dir", default="output/reports", show_default=True, help="Directory for the HTML report.")
@storage_option
def report_cmd(target, out_dir, storage):
    """Build a self-contained HTML report for a study NAME or a walk-forward run directory."""
    click.echo(str(build_report(target, storage, out_dir=out_dir)))


@click.command("sandbox")
@click.argument("ticker")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The configuration whose score, thresholds and trades are drawn (a `study best --format json` "
                   "document or a flat JSON object; default: the engine defaults).")
@click.option("--start", default=None, help="First date shown (default: all; earlier rows still warm the z-scores "
                                            "and carry positions).")
@click.option("--end", default=None, help="Last date shown (default: all).")
@click.option("--z-window", default=None, type=int, help="Rolling z-score window of every score (default: the "
                                                         "configuration's, 20).")
@click.option("--dot-mode", type=click.Choice(["current", "option_a", "option_b", "all"]), default="current",
              show_default=True, help="Signal dots on every score panel: of score B (current), vw_flow (option_a), "
                                      "blended (option_b) or all three side by side (the design's DOT_MODE).")
@click.option("--buy", type=float, default=None, help="Buy threshold: entries and accumulation dots at score >= buy "
                                                      "(default: the configuration's, 70).")
@click.option("--sell", type=float, default=None, help="Sell threshold: distribution at score <= sell (default: the "
                                                       "configuration's, 30).")
@click.option("--universe", default=None,
              help="Universe a configuration with position caps runs on (default: the params file's, else tier1+3).")
@click.option("--out", default=None, help="Output HTML (default output/sandbox/<TICKER>.html).")
@click.option("--png/--no-png", "png", default=None,
              help="Also write a PNG (kaleido, the png extra). Default: when kaleido is installed; --png makes a "
                   "missing kaleido an error.")
@db_option
def sandbox_cmd(ticker, params_file, start, end, z_window, dot_mode, buy, sell, universe, out, png, db):
    """The signal-sandbox chart for one symbol: price with the configuration's entries and exits (the trades
    `backtest` reports for it), the configuration's score, the flow inputs and three score variants."""
    rec = load_params_record(params_file) if params_file else None
    run = sandbox_run(db, ticker, start, end, params=rec.params if rec else None,
                      universe=universe or (rec.universe if rec else None), z_window=z_window, buy=buy, sell=sell)
    fig = sandbox_figure(run.panel, ticker, start, end, dot_mode=dot_mode, config=run.config, trades=run.trades)
    for w in write_sandbox(fig, out or f"output/sandbox/{run.panel.symbols[0]}.html", png=png):
        click.echo(str(w))


@click.command("demo")
@click.option("--out", "out_root", default="output", show_default=True, help="Root directory; data, studies and reports go to <OUT>/demo/.")
@click.option("--effect", default=3.0, show_default=True, type=float, help="Planted effect of the synthetic market (0 = a null market: the verdict should be not supported).")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the synthetic market.")
@click.option("--fresh", is_flag=True, help="Delete earlier demo studies and data first.")
def demo_cmd(out_root, effect, seed, fresh):
    """End to end on the embedded synthetic market: synth -> ingest -> metrics -> phase A -> phase B ->
    walk-forward -> report. Prints the verdict, the report path and the dashboard command."""
    run_demo(Path(out_root), effect=effect, seed=seed, fresh=fresh, console=console, progress=progress_enabled())


COMMANDS = (walkforward_cmd, report_cmd, sandbox_cmd, demo_cmd)
