"""Command: backtest one configuration on the store (the library is ``optimizer.backtest``).

Every engine parameter is a flag, generated from the registry (``optimizer.params.PARAMS``): ``--<name>`` with
underscores as dashes, plus the entry's extra spellings (``--buy``, ``--sell``)."""

from __future__ import annotations

from collections.abc import Callable

import click

from optimizer.backtest import backtest
from optimizer.cli._common import echo_json, print_kv, db_option, format_option
from optimizer.params import PARAMS, Choice, Param
from optimizer.study.paramsfile import load_params_record

__all__ = ["COMMANDS"]


def _param_type(p: Param) -> click.ParamType:
    if isinstance(p.domain, Choice):
        return click.Choice([str(v) for v in p.domain.values])
    return {int: click.INT, float: click.FLOAT}.get(p.type, click.STRING)


def _param_flags(f: Callable) -> Callable:
    """One option per registry parameter, in registry order."""
    for p in reversed(PARAMS.values()):
        default = "none" if p.default is None else p.default
        f = click.option(f"--{p.name.replace('_', '-')}", *p.flags, p.name, type=_param_type(p), default=None,
                         help=f"{p.doc} Default: {default}.")(f)
    return f


@click.command("backtest")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON parameters (e.g. from `accumopt study best NAME --format json`); flags override them.")
@_param_flags
@click.option("--universe", default="tier1+3", show_default=True, help="tier1, tier3, tier1+3, tier1+2+3, all or a comma list.")
@click.option("--start", default=None, help="First session (default: the first in daily_metrics).")
@click.option("--end", default=None, help="Last session (default: the last in daily_metrics).")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Write bt_ tables and output/signal_events.parquet, backtest_runs.csv, frequency_baseline.csv.")
@db_option
@format_option()
def backtest_cmd(params_file, universe, start, end, save, db, fmt, **flags):
    """Backtest one configuration on the store and print its metrics (returns are fractions)."""
    params = load_params_record(params_file).params if params_file else {}
    params.update({k: v for k, v in flags.items() if v is not None})
    run = backtest(params, db, universe, start, end, save=save)
    panel = run.panel
    if fmt == "json":
        echo_json(run.metrics | {"params": run.result.config.to_params(), "start": str(panel.dates[0]),
                             "end": str(panel.dates[-1]), "symbols": len(panel.symbols), "outputs": run.outputs})
    else:
        print_kv(run.metrics, title=f"backtest {panel.dates[0]}..{panel.dates[-1]}, {len(panel.symbols)} symbols")
        for k, v in run.outputs.items():
            click.echo(f"{k}: {v}")


COMMANDS = (backtest_cmd,)
