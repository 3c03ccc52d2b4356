"""CLI commands for out-of-sample research: walkforward, report, sandbox (the end-to-end demo: ``cli/demo.py``).

walkforward imports the walk-forward and report the research report (statistics, scipy.stats) in the command:
sandbox, and --help, load neither.
"""

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
    err_console,
    format_option,
    shared_options,
    table_options,
    wait_option,
    warn_stale_metrics,
)
from optimizer.errors import ParameterError
from optimizer.paths import content_label, existing_store, output_root, resolve_db, resolve_storage, run_label, under
from optimizer.report.sandbox import sandbox_figure, sandbox_run, write_sandbox
from optimizer.study.paramsfile import load_params_record
from optimizer.study.spec import load_spec

__all__ = ["COMMANDS"]


class _WithWorker(click.Command):
    """``walkforward SPEC ...`` runs (and coordinates) a walk-forward; ``walkforward worker SPEC ...`` joins one."""

    worker: click.Command | None = None

    def make_context(self, info_name, args, parent=None, **extra):
        if self.worker is not None and args[:1] == ["worker"]:
            return self.worker.make_context(f"{info_name} worker", args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        return ctx.command.invoke(ctx) if ctx.command is not self else super().invoke(ctx)


_JOBS_HELP = "Local processes running windows at once (each window is one sequential study; the result is the same)."


@click.command("walkforward", cls=_WithWorker)
@click.argument("spec", type=click.Path())
@click.option("--final", is_flag=True, help="Also open the final reserve (last [data].reserve_fraction of sessions). Recorded; a second opening warns.")
@click.option("--n-trials", type=int, help="Trials per window (default [walkforward].n_trials or [run].n_trials). Stored window studies are resumed up to it; fewer than they were run to is refused.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help=_JOBS_HELP)
@shared_options("db", "storage", "out")
@table_options
@format_option()
@wait_option()
def walkforward_cmd(spec, final, n_trials, jobs, storage, db, out, columns, wide, fmt):
    """Re-optimize SPEC on rolling train windows and evaluate each winner once on the following test window.

    Prints per-window in-sample vs out-of-sample metrics, the stitched out-of-sample result, DSR / PSR / PBO,
    cost stress and the verdict. Writes the run's files to <out>/walkforward/<study>/ (<study>-final/ with
    --final). An interrupted run resumes at the first unfinished window.

    \b
    Many machines: with an SQLite or PostgreSQL --storage, windows are claimed through the storage;
      accumopt walkforward worker SPEC --storage URL    (on other machines, same spec and data)
    runs whole windows for this run, which then stitches them in order (same result as one process).
    --wait is the store's, as every command's (a worker's own --wait is the coordinator's: see its --help).
    """
    from optimizer.validate.walkforward import (book_text, run_notes, run_walkforward, save_walkforward,
                                               settings_rows, walkforward_dir)

    s = load_spec(spec)
    root = output_root(out)
    stale = warn_stale_metrics(resolve_db(db, s.data.database, root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        res = run_walkforward(s, resolve_db(db, s.data.database, root), resolve_storage(storage, s.run.storage, root),
                              final=final, progress=progress_enabled(fmt), n_trials=n_trials,
                              out_dir=None, jobs=jobs)
    for m in run_notes(caught, res):
        err_console.print(m, style="bold red", markup=False, highlight=False, soft_wrap=True)
    d = save_walkforward(res, walkforward_dir(root, s.run.study_name, final))
    if fmt == "json":
        doc = res.to_dict()
        echo_json(doc | {"warnings": [*stale, *doc.get("warnings", [])], "files": str(d)})
        return
    print_kv(settings_rows(res.settings), title=f"walk-forward {s.run.study_name}: settings")
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
              "cost_stress": st.get("cost_stress_wording"), "one book": book_text(st)},
             title="statistics (on excess returns)")
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


# The worker's line on stderr once it is up and looks for its coordinator's run (a script, or a test, that starts
# the coordinator after its workers waits for it; README "Walk-forward on many machines"). No storage URL: it may
# hold a password.
WORKER_READY = "walkforward worker ready: joining the walk-forward of {name!r} (waiting up to {wait:.0f} s for it)"


@click.command("worker")
@click.argument("spec", type=click.Path())
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help=_JOBS_HELP)
@click.option("--wait", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the coordinator, `accumopt walkforward SPEC`, to register its run in the "
                   "storage (not the DuckDB store's lock: that is --store-wait).")
@click.option("--store-wait", "store_wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the DuckDB store while another process holds it (an ingest or evening "
                   "writing it), trying again; 0: fail at once naming that process (`walkforward SPEC --wait`).")
@shared_options("db", "storage", "out")
@format_option()
def walkforward_worker_cmd(spec, jobs, wait, store_wait, storage, db, out, fmt):
    """Join the walk-forward of SPEC running on --storage (SQLite or PostgreSQL): claim and run whole windows
    until every window is done. The coordinator (`accumopt walkforward SPEC`) stitches and judges them.
    Two waits: --wait for the coordinator to start, --store-wait for a store another process holds."""
    from optimizer.data.store import checked_wait, lock_wait

    with lock_wait(checked_wait(store_wait, "--store-wait")):
        _worker(spec, jobs, wait, storage, db, out, fmt)


def _worker(spec, jobs, wait, storage, db, out, fmt):
    from optimizer.validate.walkforward import run_walkforward_worker

    s = load_spec(spec)
    root = output_root(out)
    warn_stale_metrics(resolve_db(db, s.data.database, root))
    ran = run_walkforward_worker(s, resolve_db(db, s.data.database, root), resolve_storage(storage, s.run.storage, root),
                                 jobs=jobs, wait=wait, on_ready=lambda: click.echo(WORKER_READY.format(
                                     name=s.run.study_name, wait=wait), err=True),
                                 on_note=lambda m: err_console.print(m, style="bold red", markup=False,
                                                                     highlight=False, soft_wrap=True))
    if fmt == "json":
        echo_json({"windows_run": ran})
        return
    click.echo(f"ran {len(ran)} window(s): {', '.join(ran) or '-'}")


walkforward_cmd.worker = walkforward_worker_cmd


@click.command("report")
@click.argument("target")
@shared_options("storage", "out")
def report_cmd(target, storage, out):
    """Build a self-contained HTML report (under <out>/reports/) for a study NAME, a walk-forward run NAME under
    <out>/walkforward/ or a walk-forward run directory."""
    from optimizer.report.research import build_report, report_shadowed_run

    root = output_root(out)
    if storage is not None:  # given: it must be read, and exist (a missing file would just hold no study)
        from optimizer.study.storage import make_storage, shown_url

        if (Path(target) / "result.json").exists():
            raise ParameterError(f"--storage is not read for a walk-forward run folder ({target}: its result.json "
                                 f"holds the run); leave it out, got --storage={shown_url(storage)}")
        make_storage(storage, heartbeat=False, read_only=True, create=False)
    url = resolve_storage(storage, None, root)
    click.echo(str(build_report(target, url, out_dir=root / "reports", walkforward_root=root / "walkforward")))
    shadowed = report_shadowed_run(target, url, root / "walkforward")
    if shadowed is not None:  # a name that is both a study and a walk-forward run is the study: say so
        err_console.print(f"note: {target} is also a walk-forward run; this is the study's report. The run's:",
                          markup=False, highlight=False)
        err_console.print(f"accumopt report {shadowed}", markup=False, highlight=False, soft_wrap=True, crop=False)


@click.command("sandbox")
@click.argument("ticker")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The configuration whose score, thresholds and trades are drawn (a `study best --format json` "
                   "document or a flat JSON object; default: the engine defaults); its universe, span start and "
                   "regime filter are used when it holds them, as backtest --params uses them.")
@click.option("--start", default=None, help="First date shown (default: all; earlier rows still warm the z-scores "
                                            "and carry positions).")
@click.option("--end", default=None, help="Last date shown (default: all).")
@click.option("--z-window", default=None, type=int, help="Rolling z-score window of every score (default: the "
                                                         "configuration's, 20).")
@click.option("--dot-mode", type=click.Choice(["current", "option_a", "option_b", "all"]), default="current",
              show_default=True, help="Signal dots on every score panel: of score B (current), vw_flow (option_a), "
                                      "blended (option_b) or all three side by side (the design's DOT_MODE).")
@click.option("--buy", "buy_threshold", type=float, default=None,
              help="Buy threshold: entries and accumulation dots at score >= buy (default: the configuration's, 70).")
@click.option("--sell", "sell_threshold", type=float, default=None,
              help="Sell threshold: distribution at score <= sell (default: the configuration's, 30).")
@click.option("--universe", default=None,
              help="Universe a configuration with position caps runs on (default: the params file's, else tier1+3).")
@click.option("--png/--no-png", "png", default=None,
              help="Also write a PNG (kaleido, the png extra). Default: when kaleido is installed; --png makes a "
                   "missing kaleido an error.")
@click.option("--final", is_flag=True, help="Also simulate and draw the final reserve (recorded in the store's reserve "
                                            "ledger; a second opening warns). Default: end before it, as backtest.")
@shared_options("db", "out")
@wait_option()
def sandbox_cmd(ticker, params_file, start, end, z_window, dot_mode, buy_threshold, sell_threshold, universe, final,
                png, db, out):
    """The signal-sandbox chart for one symbol: price with the configuration's entries and exits (the trades
    `backtest` reports for it), the configuration's score, the flow inputs and three score variants; written to
    <out>/sandbox/<TICKER>[_<start>_<end>_<options>].html."""
    from optimizer.data.universe import universe_label, universe_spelling

    # the flags' parameters are the engine's names (buy_threshold), so an error names the flag typed (--buy)
    buy, sell = buy_threshold, sell_threshold
    rec = load_params_record(params_file) if params_file else None
    root = output_root(out)
    store = existing_store(resolve_db(db, None, root))
    warn_stale_metrics(store)
    loose = rec is not None and rec.record is None  # a parameters file without a trial's record: its span and
    run = sandbox_run(store, ticker, start,  # min_periods, as backtest's
                      end if end is not None or not loose else rec.end,
                      params=rec.params if rec else None, universe=universe or (rec.universe if loose else None),
                      z_window=z_window, buy=buy, sell=sell, final=final, record=rec.record if rec else None,
                      regime=rec.regime if rec else None, span_start=rec.start if loose else None,
                      min_periods=rec.min_periods if loose else None)
    for w in run.warnings:  # a repeated opening of the final reserve, loudly, as backtest --final
        err_console.print(w, style="bold red", markup=False, highlight=False, soft_wrap=True)
    fig = sandbox_figure(run.panel, ticker, start, end, dot_mode=dot_mode, config=run.config, trades=run.trades,
                         min_periods=run.min_periods, settings=run.settings)
    opts = [f"z{z_window}" if z_window is not None else None, dot_mode if dot_mode != "current" else None,
            f"b{buy:g}" if buy is not None else None, f"s{sell:g}" if sell is not None else None,
            f"p-{content_label(params_file)}" if params_file else None,
            f"u-{universe_label(universe_spelling(universe))}" if universe else None, "final" if final else None]
    opts = [o for o in opts if o]
    path = under(root, "sandbox", run_label(run.panel.symbols[0], start, end, "-".join(opts) or None), suffix=".html")
    for w in write_sandbox(fig, path, png=png):
        click.echo(str(w))


COMMANDS = (walkforward_cmd, report_cmd, sandbox_cmd)
