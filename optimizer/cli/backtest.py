"""Command: backtest one configuration on the store (the library is ``optimizer.backtest``).

Every engine parameter is a flag, generated from the registry (``optimizer.params.PARAMS``): ``--<name>`` with
underscores as dashes, plus the entry's extra spellings (``--buy``, ``--sell``)."""

from __future__ import annotations

from collections.abc import Callable

import click

from optimizer.backtest import backtest, compare_metrics
from optimizer.cli._common import (
    console, echo_json, err_console, print_kv, print_table, format_option, shared_options, wait_option,
)
from optimizer.data.rolling import min_periods_label
from optimizer.data.universe import universe_label, unpriced_note
from optimizer.params import PARAMS, Choice, Param, check_given_active
from optimizer.paths import output_root, resolve_db
from optimizer.study.paramsfile import load_params_record
from optimizer.study.records import defaulted_note, metrics_tolerance, rounded_note

__all__ = ["COMMANDS"]


def _param_type(p: Param) -> click.ParamType:
    if p.type is bool:  # true/false (also yes/no, 1/0) -> a Python bool, which is what the registry accepts
        return click.BOOL
    if isinstance(p.domain, Choice):
        return click.Choice([str(v) for v in p.domain.values])
    return {int: click.INT, float: click.FLOAT}.get(p.type, click.STRING)


def _param_flags(f: Callable) -> Callable:
    """One option per registry parameter, in registry order."""
    for p in reversed(PARAMS.values()):
        # as the flag takes it (true / false for a boolean, as the README's parameter table writes it)
        default = "none" if p.default is None else str(p.default).lower() if p.type is bool else p.default
        f = click.option(f"--{p.name.replace('_', '-')}", *p.flags, p.name, type=_param_type(p), default=None,
                         help=f"{p.doc} Default: {default}.")(f)
    return f


@click.command("backtest")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON parameters (e.g. from `accumopt study best NAME --format json`: the trial's universe, span, "
                   "regime filter and costs come with it, and the run reproduces the trial); flags override them.")
@_param_flags
@click.option("--universe", default=None, help="tier1, tier3, tier1+3, tier1+2+3, all or a comma list (default: the "
                                               "parameters file's, else tier1+3).")
@click.option("--start", default=None, help="First signal session (default: the file's span start, else the first "
                                            "in daily_metrics).")
@click.option("--end", default=None, help="Last session (default: the file's data end or span end, else the last "
                                          "session before the final reserve; with --final, a trial's study end, "
                                          "else the store's last session).")
@click.option("--regime", default=None, help="Regime filter on entries, e.g. RISK_ON (default: the file's, else ALL).")
@click.option("--final", is_flag=True, help="Allow the span to include the final reserve (recorded in the store's "
                                            "reserve ledger; a second opening warns).")
@click.option("--allow-data-change", is_flag=True,
              help="Run a parameters file's trial even when the store's data differs from the trial's (it will not "
                   "reproduce the trial's metrics).")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Write bt_ tables and <out>/backtest/<run_id>/ (signal_events.parquet, frequency_baseline.csv; "
                   "one row in <out>/backtest/backtest_runs.csv).")
@shared_options("db", "out")
@wait_option()
@format_option()
def backtest_cmd(params_file, universe, start, end, regime, final, allow_data_change, save, db, out, fmt, **flags):
    """Backtest one configuration on the store and print its metrics (returns are fractions). With the parameters
    file of a trial, the run reproduces the trial and shows its stored metrics beside the backtest's."""
    rec = load_params_record(params_file) if params_file else None
    params = dict(rec.params) if rec is not None else {}
    overrides = {k: v for k, v in flags.items() if v is not None}
    params.update(overrides)
    check_given_active(params, overrides)
    loose = rec is not None and rec.record is None  # a parameters file without a trial's record
    universe = universe if universe is not None else (rec.universe if loose else None)
    start = start if start is not None else (rec.start if loose else None)
    end_given = end
    end = end if end is not None else (rec.end if loose else None)
    run = backtest(params, resolve_db(db, None, output_root(out)), universe, start, end, save=save,
                   out_root=output_root(out), record=rec.record if rec is not None else None,
                   regime=regime if regime is not None else (rec.regime if rec is not None and rec.record is None else None),
                   final=final, allow_data_change=allow_data_change, min_periods=rec.min_periods if loose else None)
    panel = run.panel
    stored = rec.trial.get("metrics") if rec is not None and rec.trial and rec.record is not None else None
    reproduces, notes = None, []
    if rec is not None and rec.record is not None and rec.record.defaulted():
        notes.append(defaulted_note(rec.record.defaulted()))
    if stored and not overrides and not loose and universe is None and start is None and end_given is None \
            and regime is None and not final:
        tol = metrics_tolerance(stored)
        comp = compare_metrics(stored, run.result.metrics, tol=tol)
        reproduces = bool(comp["equal"].all()) if len(comp) else None
        if tol:  # a record of before 2026-12-03 rounded its metrics: compared by that version's rule, and said so
            notes.append(rounded_note(f"trial {rec.trial.get('number')} of {rec.trial.get('study')}"))
    else:
        comp = None
    for w in run.warnings:
        err_console.print(w, style="bold red", markup=False, highlight=False, soft_wrap=True)
    for w in notes:
        err_console.print(w, markup=False, highlight=False, soft_wrap=True)
    end_from = ("--end" if end_given is not None else "the parameters file's span end" if end is not None
                else run.end_from)
    if fmt == "json":
        echo_json(run.metrics | {"params": run.result.config.to_params(), "start": str(panel.dates[run.result.span.sig_start])[:10],
                                 "end": str(panel.dates[-1])[:10], "end_from": end_from,
                                 "universe": run.record.universe, "symbols": len(panel.symbols),
                                 "config": run.record.to_dict() if run.record else None, "reserve_opened": run.opened_reserve,
                                 "coverage": panel.coverage.to_dict() if panel.coverage is not None else None,
                                 "reproduces_trial": reproduces,
                                 "comparison": None if comp is None else comp.to_dict(orient="records"),
                                 "warnings": run.warnings + notes, "outputs": run.outputs})
        return
    d = panel.dates
    r, c = run.record, run.result.config.costs
    uni, mp = universe_label(r.universe), min_periods_label(r.min_periods)
    left = unpriced_note(panel.coverage.unpriced if panel.coverage is not None else 0)
    for line in (f"universe {uni}{f' ({left})' if left else ''}, regime filter {r.regime}",  # wrapped at the terminal's width (80 in a pipe)
                 f"costs {c.commission_bps:g} + {c.slippage_bps:g} bp per side; z-scores from {r.panel_start}, "
                 f"min_periods {mp}",
                 f"span ends {str(d[-1])[:10]}: {end_from}"):
        console.print(line, markup=False, highlight=False)
    print_kv(run.metrics, title=f"backtest {str(d[run.result.span.sig_start])[:10]}..{str(d[-1])[:10]}, "
                                f"{len(panel.symbols)} symbols")
    if comp is not None and len(comp):
        t = rec.trial
        print_table(comp, title=f"trial {t.get('number')} of {t.get('study')}: "
                                f"{'REPRODUCED' if reproduces else 'DIFFERENT'}", hint=None)
    for k, v in run.outputs.items():
        click.echo(f"{k}: {v}")


COMMANDS = (backtest_cmd,)
