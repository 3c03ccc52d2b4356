"""Commands of the trader's evening: signals (the signal sheet of a configuration) and evening (the whole night)."""

from __future__ import annotations

import io

import click
import pandas as pd

from optimizer.cli._common import console, echo_json, err_console, progress_enabled, shared_options, wait_option
from optimizer.data.rolling import min_periods_label
from optimizer.evening import run_evening
from optimizer.engine._regime import REGIME_LABELS
from optimizer.engine.regime_filter import regime_codes
from optimizer.errors import ParameterError
from optimizer.paths import check_out_writable, output_root, resolve_db
from optimizer.report.sheet import sheet_csv, sheet_records
from optimizer.report.terminal import Column, print_frame
from optimizer.data.splitcheck import panel_split_lines
from optimizer.data.store import DEFAULT_EVENING_WAIT, check_writable
from optimizer.signals import (
    signal_sheet, stale_metrics_warning, stale_sheet_warning, unpriced_warning, unscored_warning,
    walkforward_warning, write_signal_sheet,
)
from optimizer.study.paramsfile import load_params_record

__all__ = ["COMMANDS"]

_FLAG_CODES = {"SECTOR_WEAK": "SEC", "GAP_RISK": "GAP", "EXTENDED": "EXT", "FALLING": "FALL", "THIN_DATA": "THIN"}


def _sheet_options(f):
    for opt in reversed((
        click.option("--params", "params_file", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="JSON parameters (`accumopt study best NAME --format json`, or a flat object); its "
                          "universe, span start, regime filter and costs are used when it holds them."),
        click.option("--universe", default=None,
                     help="tier1, tier3, tier1+3, tier1+2+3, all or a comma list (default: the file's, else tier1+3)."),
        click.option("--start", default=None,
                     help="Replay positions from this session (default: the file's span start, else the first in "
                          "the store)."),
        click.option("--regime", default=None,
                     help="Regime filter on entries, e.g. RISK_ON (default: the file's, else ALL)."),
        click.option("--walkforward", "walkforward", type=click.Path(exists=True, file_okay=False), default=None,
                     help="A saved walk-forward run (its folder): each ENTER row gets its quality bucket's "
                          "out-of-sample hit rate and average excess return."),
    )):
        f = opt(f)
    return f


def _pct(v) -> str:
    return "" if v is None or v != v else f"{100 * float(v):+.1f}%"


def _share(v) -> str:
    """A rate or share (hit rate, data coverage) as a whole percentage, as the sheet's HTML and the other tables
    show rates (``optimizer.report.sheet``: kind "share")."""
    return "" if v is None or v != v else f"{100 * float(v):.0f}%"


def _num(v, spec: str = ".2f") -> str:
    return "" if v is None or v != v else format(float(v), spec)


def _day(v) -> str:
    return "" if v is None or v != v else str(v)[:10]


def _flags(v) -> str:
    return ",".join(_FLAG_CODES.get(x, x) for x in str(v or "").split(",") if x)


_LEFT = {"sym", "quality", "trend", "reason", "entry", "flags", "decision", "etf"}


def _print_table(title: str, cols: list[str], rows: list[list[str]]) -> None:
    """A borderless table of preformatted cells through the shared terminal printer
    (``optimizer.report.terminal.print_frame``): columns empty on every row are left out (e.g. stop and target when
    the configuration has none), and a column that does not fit 80 columns is left out and named, never cut (a
    four-digit price used to print as "1214.…" in the HOLD table)."""
    names = [c if c not in cols[:i] else f"{c} ({cols[:i].count(c) + 1})" for i, c in enumerate(cols)]  # --all's pairs
    df = pd.DataFrame(rows, columns=names, dtype=object)
    specs = [Column(n, label=c, justify="left" if c in _LEFT else "right") for n, c in zip(names, cols)]
    print_frame(df, console, title=title, columns=specs, hint="--format csv, or sheet.csv")


def _say(line: str) -> None:
    """A header line, wrapped at the terminal's width (80 in a pipe), as backtest prints its own: a long universe list
    ran past 80 columns."""
    console.print(line, markup=False, highlight=False)


def _render(sheet, show_all: bool) -> None:
    """The sheet as terminal tables that fit 80 columns."""
    m = sheet.meta()
    cfg = sheet.config
    # the market regime at D (the SPY/VIX rule the regime filter reads), also on a night without a position: a
    # regime filter that blocks every entry is then visible
    regime = REGIME_LABELS.get(int(regime_codes(sheet.panel)[-1]), "UNKNOWN")
    _say(f"signal sheet {m['date']} close -> orders for the {m['next_session']} open")
    by_regime = "".join(f", {r.upper()} {b:g}" for r in ("risk_on", "transitional", "risk_off")
                        if (b := getattr(cfg.regime, f"buy_threshold_{r}")) is not None)
    _say(f"config {m['params_hash']}: variant {cfg.score.variant}, buy {cfg.thresholds.buy:g}"
               + (f" ({by_regime[2:]})" if by_regime else "") + f" / sell {cfg.thresholds.sell:g}, exit "
               f"{m['exit_strategy']}")
    _say(f"universe {m['universe']} ({m['symbols']} symbols), positions replayed from {m['span_start']}")
    if m["panel_start"] != m["span_start"] or m["min_periods"] is not None:
        _say(f"z-scores from {m['panel_start']}, min_periods {min_periods_label(m['min_periods'])}")
    _say(f"regime filter {m['regime_filter']}, market regime on {m['date']} {regime}")
    c = m["counts"]
    _say(f"ENTER {c['ENTER']}   EXIT {c['EXIT']}   HOLD {c['HOLD']}   no action {c['NONE']}")
    oos = sheet.walkforward is not None
    enter = sheet.of("ENTER")
    if len(enter):
        cols = ["sym", "score", "quality", "trend", "etf", "boost", "conf", "cov"]
        cols += ["oos hit", "oos exc"] if oos else []
        rows = []
        for r in enter.itertuples(index=False):
            etf = "" if not r.parent_etf_available else (r.sector_etf + ("+" if r.parent_etf_aligned else "-"))
            row = [r.symbol, _num(r.score), r.signal_quality or "", r.trend or "", etf, _num(r.options_boost, ".2f"),
                   _num(r.confidence, ".2f"), _share(r.data_coverage)]
            row += [_share(r.oos_hit_rate), _pct(r.oos_avg_excess_return)] if oos else []
            rows.append(row + [_flags(r.flags)])
        _print_table("ENTER at the next open", cols + ["flags"], rows)
    exits = sheet.of("EXIT")
    if len(exits):
        rows = [[r.symbol, _num(r.score), r.exit_reason or "", _day(r.entry_date), _num(r.entry_price, ".2f"),
                 str(r.days_held), _num(r.close, ".2f"), _pct(r.unrealised_return)] for r in exits.itertuples(index=False)]
        _print_table("EXIT at the next open", ["sym", "score", "reason", "entry", "fill", "held", "close",
                                               "unreal"], rows)
    hold = sheet.of("HOLD")
    if len(hold):
        rows = [[r.symbol, _num(r.score), _day(r.entry_date), _num(r.entry_price, ".2f"), str(r.days_held),
                 _num(r.close, ".2f"), _pct(r.unrealised_return), _num(r.stop_level, ".2f"),
                 _num(r.take_profit_level, ".2f"), _num(r.scheduled_exit_in, ".0f")] for r in hold.itertuples(index=False)]
        _print_table("HOLD", ["sym", "score", "entry", "fill", "held", "close", "unreal", "stop", "target",
                              "exit in"], rows)
    if show_all:
        recs = sheet.rows[["symbol", "score", "decision"]].to_numpy().tolist()
        half = (len(recs) + 1) // 2
        rows = [[str(a[0]), _num(a[1]), str(a[2]), str(b[0]), _num(b[1]), str(b[2])]
                for a, b in zip(recs[:half], recs[half:] + [["", float("nan"), ""]])]
        _print_table("every symbol", ["sym", "score", "decision", "sym", "score", "decision"], rows)
    if len(enter):
        _say("flags: " + ", ".join(f"{v}={k}" for k, v in _FLAG_CODES.items()))


@click.command("signals")
@_sheet_options
@click.option("--date", default=None, help="Session D (default: the latest session with FINRA data in the store).")
@click.option("--all", "show_all", is_flag=True, help="Also list every symbol's score and decision.")
@click.option("--save/--no-save", default=True, show_default=True,
              help="Write the signal_sheet table and sheet.csv / sheet.json / sheet.html.")
@shared_options("db", "out")
@wait_option()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table: terminal tables (80 columns); json / csv: every symbol's row on stdout.")
def signals_cmd(params_file, universe, start, regime, walkforward, date, show_all, save, db, out, fmt):
    """Tonight's signal sheet: for a configuration, every symbol's score on session D and its decision for the next
    open (ENTER / EXIT / HOLD), from positions replayed by the backtest engine; no order is placed. The sheet goes
    to <out>/signals/<date>_<hash>/."""
    if show_all and fmt != "table":  # json and csv hold every symbol's row already
        raise ParameterError(f"--all adds every symbol to the terminal tables; --format {fmt} always holds every "
                             f"symbol's row: leave out --all or use --format table, got --all with --format {fmt}")
    out_root = output_root(out)
    db = resolve_db(db, None, out_root)
    rec = load_params_record(params_file)
    if save:  # the sheet ends by writing its signal_sheet table and files: a store another process holds, an
        check_writable(db)  # output root it could not write in, are refused first
        check_out_writable(out_root)
    sheet = signal_sheet(rec, db, date=date, universe=universe, start=start, regime=regime, walkforward=walkforward)
    stale = stale_sheet_warning(sheet, db) if date is None else None  # an explicit --date is deliberate
    for w in (stale_metrics_warning(db), unscored_warning(sheet), unpriced_warning(sheet), stale,
              walkforward_warning(sheet), *panel_split_lines(sheet.panel)):
        if w:
            err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    paths = write_signal_sheet(sheet, db, out_root) if save else {}
    if fmt == "json":
        echo_json({"sheet": sheet.meta(), "oos_quality_buckets": sheet_records(sheet.buckets),
               "rows": sheet_records(sheet.rows), "outputs": {k: str(v) for k, v in paths.items()}})
    elif fmt == "csv":
        buf = io.StringIO()
        sheet_csv(sheet.rows, buf)
        click.echo(buf.getvalue(), nl=False)
    else:
        _render(sheet, show_all)
        for k, v in paths.items():
            click.echo(f"{k}: {v}")


@click.command("evening")
@_sheet_options
@click.option("--ingest", "ingest_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Ingest the new raw files under this folder (kind from the folder or file name) instead of "
                   "fetching.")
@click.option("--fetch/--no-fetch", default=True, show_default=True,
              help="Fetch FINRA files (and Polygon prices with POLYGON_API_KEY) after the store's latest FINRA date.")
@click.option("--through", default=None,
              help="Last day to fetch (default: tonight's session: the latest whose FINRA file is due, 18:00 New York "
                   "time).")
@click.option("--png/--no-png", "png", default=False, show_default=True, help="Also write the scanner's PNG images.")
@shared_options("db", "out")
@wait_option(DEFAULT_EVENING_WAIT, passed=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: steps, the sheet and where the outputs are; json: the same for scripts.")
def evening_cmd(params_file, universe, start, regime, walkforward, ingest_dir, fetch, through, png, db, out, fmt,
                wait):
    """The whole evening on new files: fetch (or --ingest DIR), metrics build, scan, signal sheet; prints where the
    outputs are (under <out>). Running it twice on the same files changes nothing."""
    fetch_given = click.get_current_context().get_parameter_source("fetch") is not click.core.ParameterSource.DEFAULT
    if ingest_dir is not None and fetch and fetch_given:  # --ingest replaces the fetch
        raise ParameterError("--fetch and --ingest are two ways to get the night's files, and --ingest DIR reads "
                             "the files under DIR instead of fetching: leave out one of them, got --fetch with "
                             "--ingest")
    if through is not None and (ingest_dir is not None or not fetch):  # --through bounds the fetch only
        other = "--ingest" if ingest_dir is not None else "--no-fetch"
        raise ParameterError(f"--through is the last day to fetch, and {other} fetches nothing ("
                             f"{'it ingests the files under its folder' if ingest_dir is not None else 'the store is used as it is'}"
                             f"): leave out --through or {other}, got --through {through} with {other}")
    out_root = output_root(out)
    db = resolve_db(db, None, out_root)

    echo = (lambda line: err_console.print(line, markup=False, highlight=False)) if fmt == "table" else None
    res = run_evening(params_file, db, out_root, ingest_dir=ingest_dir, fetch=fetch, through=through,
                      universe=universe, start=start, regime=regime, walkforward=walkforward, png=png, progress=progress_enabled(fmt), echo=echo,
                      wait=wait)
    if fmt == "json":
        echo_json({"steps": res.steps, "ingest": res.ingest, "warnings": res.warnings, "sheet": res.sheet.meta(),
               "outputs": res.outputs()})
        return
    for w in res.warnings:
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    _render(res.sheet, False)
    click.echo("outputs:")
    for k, v in res.outputs().items():
        click.echo(f"  {k}: {v}")


COMMANDS = (signals_cmd, evening_cmd)
