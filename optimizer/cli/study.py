"""Commands: study run / worker / validate / list / show / best / compare / export / delete / replay, dashboard.

The commands that read a study storage (list, show, best, export, delete, dashboard) load Optuna and the stored
records, not the engine: run, worker and replay import the runner where they call it, compare the plots.
"""

from __future__ import annotations

import json
import socket
import sys

import click
import pandas as pd
from rich.markup import escape

from optimizer.cli._common import (
    Column,
    echo_json,
    frame_json,
    session_days,
    err_console,
    progress_enabled,
    print_cmd,
    print_kv,
    print_table,
    console,
    format_option,
    shared_options,
    table_options,
    wait_option,
    warn_stale_metrics,
)
from optimizer.errors import ParameterError
from optimizer.paths import output_root, resolve_db, resolve_storage, run_label, under
from optimizer.study.inspect import (
    KEY_METRICS, best_trial_json, compare_studies, delete_study, export_study, list_studies, open_named_study,
    show_study, trial_detail,
)
from optimizer.study.data_settings import data_settings_rows, study_settings
from optimizer.study.records import read_study, seeded_label, trial_counts
from optimizer.study.spec import check_study_name, load_spec
from optimizer.study.storage import IN_MEMORY, make_storage, shown_url

__all__ = ["COMMANDS"]


@click.group("study")
def study_grp():
    """Run and inspect Optuna studies defined by TOML specs (studies/*.toml)."""


@study_grp.command("validate")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@shared_options()
@format_option()
def study_validate(specs, fmt):
    """Validate spec files without running anything (exit 2 on the first invalid one, before anything is printed
    with --format json)."""
    rows = []
    for p in specs:
        s = load_spec(p)
        rows.append({"file": str(p), "study": s.run.study_name, "parameters": len(s.space), "sampler": s.sampler.name,
                     "pruner": s.pruner.name, "objective": s.objective.name, "purge": s.purge(),
                     "embargo": s.embargo(), "hash": s.spec_hash})
        if fmt == "json":
            continue
        r = rows[-1]
        console.print(f"[green]ok[/] {escape(str(p))}", soft_wrap=True, highlight=False)
        console.print(f"  study {r['study']!r}, {r['parameters']} parameters, sampler {r['sampler']}, pruner "
                      f"{r['pruner']}, objective {r['objective']}, purge {r['purge']}, embargo {r['embargo']}, hash "
                      f"{r['hash']}", markup=False, highlight=False)
    if fmt == "json":
        echo_json(rows)


def _run_opts(f):
    for opt in reversed([
        click.option("--n-trials", type=int, help="Total finished trials the study should hold (resuming counts earlier ones)."),
        click.option("--timeout", type=float, help="Stop starting new trials after this many seconds."),
        click.option("--name", help="Study name (default: [run].study_name or the spec's name)."),
        click.option("--new-name", is_flag=True, help="If the spec changed, start a new study NAME-2 instead of refusing."),
    ]):
        f = opt(f)
    return f


def _paths(spec, db, storage, out):
    """(store, storage URL) of a command running ``spec``: flag > env > spec > default under the output root."""
    return (resolve_db(db, spec.data.database, output_root(out)),
            resolve_storage(storage, spec.run.storage, output_root(out)))


@study_grp.command("run")
@click.argument("spec", type=click.Path())
@_run_opts
@click.option("--jobs", default=1, show_default=True, type=int, help="Worker processes on this machine.")
@shared_options("db", "storage", "out")
@format_option()
@wait_option()
def study_run(spec, n_trials, timeout, name, new_name, jobs, storage, db, out, fmt):
    """Create or resume the study of SPEC and run it. Ctrl-C stops after the running trial; re-run to resume."""
    from optimizer.study.run import run_study  # here: the engine and numba only for the commands that run trials

    s = load_spec(spec)
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got jobs={jobs}")
    if name is not None:
        check_study_name(name, "--name")
    db, storage = _paths(s, db, storage, out)
    stale = warn_stale_metrics(db)
    res = run_study(s, db, storage, n_trials=n_trials, timeout=timeout, jobs=jobs, name=name, new_name=new_name,
                    progress=progress_enabled(fmt))
    unseeded = _seed_note(s, f"--jobs {jobs}: {jobs} trials run at once and finish in an order nobody controls",
                          "--jobs 1") if jobs > 1 else []
    _print_run(res, fmt, [*stale, *unseeded])


def _seed_note(spec, why: str, instead: str) -> list[str]:
    """Say once, on stderr, that the spec's [sampler] seed did not make this run reproducible (``why``; after the run,
    so a refused command prints its one error line only), and return the line for the JSON ``warnings``; [] for an
    unseeded spec (nothing was promised)."""
    from optimizer.study.run import unreproducible_note  # loaded already: the command ran its trials

    note = unreproducible_note(spec, why, instead)
    if note is None:
        return []
    err_console.print(f"warning: {note}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    return [note]


def _print_run(res, fmt, stale=()):
    """The run's summary, then the data settings its trials ran with (``study.data_settings``: universe, span and
    reserve, regime filter, min_periods, costs; JSON ``settings``). ``stale``: the warning that daily_metrics is
    older than the raw data (``warn_stale_metrics``, printed when the run started), first of the JSON ``warnings``."""
    settings = study_settings(read_study(res.study)) if res.study is not None else None
    seeds = seeded_label(res.study) if res.study is not None else None  # phase A -> phase B: what it started from
    d = {"study": res.study_name, "storage": shown_url(res.storage), **res.counts, "best_value": res.best_value,
         "best_params": res.best_params, "seeded": seeds, "seconds": round(res.seconds, 2),
         "interrupted": res.interrupted, "first_failure": res.first_failure, "warnings": [*stale, *res.warnings],
         "settings": settings}
    if fmt == "json":
        echo_json(d)
    else:
        d.pop("warnings"), d.pop("settings")
        if seeds is None:
            d.pop("seeded")
        print_kv({k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in d.items()},
                 title=f"study {res.study_name}")
        if settings is not None:
            print_kv(data_settings_rows(settings), title=f"study {res.study_name}: settings")
        if res.first_failure:
            err_console.print(f"warning: {res.counts['failed']} trial(s) failed; first failure, {res.first_failure}",
                              style="yellow", markup=False, highlight=False, soft_wrap=True)
        for w in res.warnings:
            err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
        if res.storage not in IN_MEMORY:  # an in-process storage is gone with the run: nothing to show
            shown = shown_url(res.storage)
            print_cmd("dashboard:" if shown == res.storage else "dashboard (the password shown as ***: put "
                      "yours back):", f"accumopt dashboard --storage {shown}")


@study_grp.command("worker")
@click.argument("spec", type=click.Path())
@_run_opts
@shared_options("db", "storage", "out")
@format_option()
@wait_option()
def study_worker(spec, n_trials, timeout, name, new_name, storage, db, out, fmt):
    """Join a running study from another process or machine (same spec, same data, shared storage: --storage,
    env ACCUMOPT_STORAGE or the spec's [run].storage)."""
    from optimizer.study.run import run_study

    s = load_spec(spec)
    if name is not None:
        check_study_name(name, "--name")
    db, storage = _paths(s, db, storage, out)
    stale = warn_stale_metrics(db)
    res = run_study(s, db, storage, n_trials=n_trials, timeout=timeout, name=name, new_name=new_name, worker=True,
                    progress=progress_enabled(fmt))
    unseeded = _seed_note(s, "a study worker draws with its seed plus its process id (workers started together "
                             "must not draw the same trials) and shares the study with others", "one `study run`")
    _print_run(res, fmt, [*stale, *unseeded])


# Display of the study tables: short headers for long names (--columns takes either), key columns first.
_LABELS = {"best_value": "best", "n_trials_target": "target", "pareto_size": "pareto", "spec_name": "spec",
           "closed_trades": "trades", "hit_rate": "hit", "avg_return": "avg_ret", "avg_excess_return": "excess",
           "win_loss": "w/l", "signals_per_month": "sig/mo", "portfolio_sharpe": "port_sh", "max_drawdown": "max_dd",
           "false_positive_rate": "fp_rate", "rank_score": "rank", "duration_s": "secs", "directions": "direction",
           "best_number": "best#", "total_trial_s": "trial_s", "mean_complete_s": "complete_s",
           "mean_pruned_s": "pruned_s", "time_saved_s": "saved_s", "saved_pct": "saved%",
           "kernel_warmup_s": "warmup_s", "buy_threshold": "buy", "sell_threshold": "sell",
           "param_buy_threshold": "buy", "param_sell_threshold": "sell"}
_LIST_KEY = ("name", "complete", "pruned", "failed", "running", "best_value", "created", "n_trials_target",
             "pareto_size", "directions", "spec_name")
_COMPARE_KEY = ("study", "complete", "pruned", "best_value", "mean_complete_s", "mean_pruned_s", "time_saved_s",
                "saved_pct", "kernel_warmup_s", "elapsed_s", "failed", "running", "best_number", "total_trial_s",
                "directions")
_SHOW_METRICS = ("closed_trades", "hit_rate", "avg_excess_return", "avg_return", "win_loss")


def _specs(df, fmts=None):
    fmts = fmts or {}
    return [Column(c, label=_LABELS.get(c, c[6:] if c.startswith("param_") else c), fmt=fmts.get(c)) for c in df.columns]


@study_grp.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list the tool's internal marker studies.")
@shared_options("storage", "out")
@table_options
@format_option("table", "json", "csv")
def study_list(show_all, storage, out, columns, wide, fmt):
    """List studies: trials complete/pruned/failed/running, best value, created, trials asked for."""
    df = list_studies(_storage(storage, out), internal=show_all)
    _emit_df(df, fmt, "studies", key=_LIST_KEY, select=columns, wide=wide)


def _storage(url, out, read_only=True):
    """The study storage (flag > env > default under the output root), read-only unless asked; a command that
    does not run studies never creates a storage file."""
    return make_storage(resolve_storage(url, None, output_root(out)), heartbeat=False, read_only=read_only,
                        create=False)


def _emit_df(df, fmt, title, key=None, select=None, wide=False, fmts=None):
    if fmt == "json":
        click.echo(frame_json(df))
    elif fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    else:
        print_table(df, title=title, columns=_specs(df, fmts), key=key, select=select, wide=wide)


@study_grp.command("show")
@click.argument("name")
@click.option("--top", default=10, show_default=True, type=int, help="How many trials to show.")
@click.option("--trial", "number", default=None, type=int,
              help="Show trial N alone, vertically: state, value, every parameter and metric, per-fold results.")
@shared_options("storage", "out")
@table_options
@format_option("table", "json", "csv")
def study_show(name, top, number, storage, out, columns, wide, fmt):
    """Top trials of study NAME with parameters and metrics (the Pareto front for multi-objective studies).

    The table shows the value, the key metrics and the parameters that fit the terminal; --columns picks others
    (e.g. --columns number,value,param_exit,sharpe), --wide shows all, --trial N shows one trial in full."""
    if number is not None:  # one trial, vertically: --top, --columns and --wide shape the top-trials table only
        src = click.get_current_context().get_parameter_source("top")
        given = [f for f, v in (("--top", src is not click.core.ParameterSource.DEFAULT), ("--columns", columns),
                                ("--wide", wide)) if v]
        if given:
            raise ParameterError(f"{given[0]} shapes the table of the top trials, which --trial N replaces by one "
                                 f"trial shown whole: leave out {' and '.join(given)} or --trial, got "
                                 f"{given[0]} with --trial {number}")
        d = trial_detail(_storage(storage, out), name, number)
        if fmt == "json":
            echo_json(d)
        elif fmt == "csv":
            folds = pd.DataFrame(d["folds"])
            click.echo(folds.to_csv(index=False), nl=False)
        else:
            folds = d.pop("folds")
            print_kv(d, title=f"study {name}: trial {number}")
            if folds:
                fdf = pd.DataFrame(folds)
                print_table(fdf, title="folds", columns=_specs(fdf), key=["fold", "intermediate", *_SHOW_METRICS,
                                                                           "signals_per_month", "sharpe"])
        return
    st = _storage(storage, out)
    df = show_study(st, name, top=top)
    if df.empty and fmt == "table":  # an empty table is a title wrapped around one header: say why, as best does
        c = trial_counts(open_named_study(st, name)[0])
        click.echo(f"study {name}: no completed trial (pruned {c['pruned']}, failed {c['failed']}, "
                   f"running {c['running']})")
        return
    vcols = [c for c in df.columns if c == "value" or c.startswith("values_")]
    params = [c for c in df.columns if c.startswith("param_")]
    # the value, trades, hit rate and excess first, then the parameters that fit, then the other metrics
    key = ["number", *vcols, *_SHOW_METRICS[:3], *params, *[m for m in KEY_METRICS if m not in _SHOW_METRICS[:3]],
           "duration_s"]
    _emit_df(df, fmt, f"study {name}: top {top}", key=key, select=columns, wide=wide)


@study_grp.command("best")
@click.argument("name")
@click.option("--trial", "number", type=int, default=None, help="This trial instead of the best one.")
@shared_options("storage", "out")
@format_option("json", "table")
def study_best(name, number, storage, out, fmt):
    """The best trial: its complete effective configuration (parameters, costs, universe, span, regime filter,
    data fingerprint), value and metrics; `backtest --params FILE` reproduces it exactly."""
    d = best_trial_json(_storage(storage, out), name, number)
    if fmt == "json":
        echo_json(d)
    else:
        print_kv(d, title=f"best of {name}")


@study_grp.command("compare")
@click.argument("names", nargs=-1, required=True)
@shared_options("storage", "out")
@table_options
@format_option()
def study_compare(names, storage, out, columns, wide, fmt):
    """Compare studies: completed vs pruned vs failed, prune folds, best-so-far curves, time saved by pruning.
    Writes <out>/reports/compare_<names>.html."""
    from optimizer.report.compare import warmup_note, write_compare_html  # plotly only for the command that plots

    res = compare_studies(_storage(storage, out), list(names))
    path = under(output_root(out), "reports", run_label("compare", *names), suffix=".html")
    write_compare_html(res, path)
    if fmt == "json":
        echo_json({"summary": json.loads(frame_json(res.summary)), "html": str(path)})
    else:
        _emit_df(res.summary, "table", "study comparison", key=_COMPARE_KEY, select=columns, wide=wide)
        console.print(warmup_note(res.summary), markup=False, highlight=False)
        click.echo(f"report: {path}")


@study_grp.command("export")
@click.argument("name")
@click.option("--file-format", "file_fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="File format of the export.")
@shared_options("storage", "out")
@format_option()
def study_export(name, file_fmt, storage, out, fmt):
    """Export every trial (params, values, states, metrics, configuration) to <out>/exports/<name>_trials.<csv|parquet>."""
    p = export_study(_storage(storage, out), name, under(output_root(out), "exports", f"{name}_trials",
                                                         suffix=f".{file_fmt}"), fmt=file_fmt)
    if fmt == "json":
        echo_json({"study": name, "file": str(p)})
    else:
        click.echo(str(p))


@study_grp.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@shared_options("storage", "out")
def study_delete(name, yes, storage, out):
    """Delete study NAME and all its trials (asks first unless --yes)."""
    if not yes:
        if not sys.stdin.isatty():
            raise ParameterError("refusing to delete without confirmation on a non-interactive stdin; pass --yes")
        click.confirm(f"Delete study {name!r} and all its trials?", abort=True)
    delete_study(_storage(storage, out, read_only=False), name)
    console.print(f"deleted {name}", markup=False)


@study_grp.command("replay")
@click.argument("name")
@click.argument("trial", type=int)
@shared_options("db", "storage", "out")
@format_option()
def study_replay(name, trial, storage, db, out, fmt):
    """Re-evaluate stored trial TRIAL of study NAME on the same data and show that it reproduces."""
    from optimizer.study.replay import replay_trial

    path = resolve_db(db, None, output_root(out))
    stale = warn_stale_metrics(path)
    rep = replay_trial(_storage(storage, out), name, trial, path)
    if fmt == "json":
        echo_json(rep | {"comparison": rep["comparison"].to_dict(orient="records"), "warnings": stale})
    else:
        print_table(rep["comparison"], title=f"replay {name} #{trial}: {'REPRODUCED' if rep['reproduced'] else 'DIFFERENT'}",
                    hint=None)
        for note in rep["notes"]:
            err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    if not rep["reproduced"]:
        sys.exit(1)


def _check_listen(host: str, port: int) -> None:
    """Bind (host, port) once, as the dashboard's server binds it (SO_REUSEADDR), and let go: a port in use or a
    host that is no address of this machine is one line naming the option, not the server's traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise ParameterError(f"--host/--port must be a free address of this machine to listen on, got host={host!r}, "
                             f"port={port} ({exc.strerror or exc})") from None


@click.command("dashboard")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port to listen on (1-65535).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@shared_options("storage", "out")
def dashboard_cmd(port, host, storage, out):
    """Start optuna-dashboard on the study storage (http://127.0.0.1:PORT)."""
    import optuna_dashboard  # lazy: the dashboard server (and its web stack) is only needed by this command

    url = resolve_storage(storage, None, output_root(out))
    st = _storage(url, out, read_only=False)  # the dashboard writes notes; a missing file is refused, never created
    _check_listen(host, port)
    console.print(f"optuna-dashboard on http://{host}:{port} for {url} (Ctrl-C to stop)", markup=False, soft_wrap=True)
    optuna_dashboard.run_server(st, host=host, port=port)


COMMANDS = (study_grp, dashboard_cmd,)
