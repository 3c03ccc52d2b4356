"""Data commands: ingest, fetch, data synth / info, metrics build."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
from pathlib import Path

import click
import pandas as pd

from optimizer.cli._common import (
    Column,
    echo_json,
    progress_enabled,
    print_kv,
    print_table,
    console,
    err_console,
    format_option,
    shared_options,
    wait_option,
)
from optimizer.data.coverage import store_info, symbol_gap_lines
from optimizer.data.fetch import fetch_finra_api, fetch_finra_short, fetch_polygon_prices
from optimizer.data.ingest import expand_paths, ingest_paths
from optimizer.data.metrics import build_daily_metrics, old_rules_lit_files, old_rules_note, partial_days_warning
from optimizer.data.splitcheck import SuspectSplit, suspect_split_lines
from optimizer.data.store import SCHEMA_VERSION, connect
from optimizer.data.synth import SynthConfig, generate_market, synth_to_db, write_market
from optimizer.data.symbols import canonical_symbol
from optimizer.data.universe import UNIVERSE_NAMES, resolve_universe
from optimizer.errors import DataError, ParameterError
from optimizer.paths import DB_ENV, existing_store, output_root, resolve_db, content_label, run_label, under
from optimizer.settings import Settings

__all__ = ["COMMANDS"]


# ------------------------------------------------------------------------------------------------ ingest / fetch
@click.command("ingest")
@click.argument("kind", type=click.Choice(["finra-short", "prices", "otc-weekly", "lit-trades", "lit-flow", "options", "splits"]))
@click.argument("paths", nargs=-1, required=True)
@click.option("--strict", is_flag=True, help="Fail a whole file on any invariant-breaking row (default: reject rows).")
@click.option("--max-decompressed-mb", type=click.IntRange(min=1), default=None,
              help="Refuse a file whose content exceeds this many MiB (env MAX_DECOMPRESSED_MB, default 2048).")
@click.option("--max-expansion", type=click.FloatRange(min=1), default=None,
              help="Refuse a gzip that expands more than this many times (env MAX_EXPANSION_RATIO, default 100).")
@shared_options("db", "out")
@wait_option()
@format_option()
def ingest_cmd(kind, paths, strict, max_decompressed_mb, max_expansion, db, out, fmt):
    """Ingest raw files (files, directories or globs) of KIND into the store, one transaction per file.

    Re-ingesting a file whose rows are still the stored ones is a no-op (skipped_identical); a changed file, or
    one whose rows another file replaced, replaces its keys' rows. Malformed files are rejected with
    file:line: reason and leave the database unchanged. Exit code 2 when a file failed, else 1 when rows were
    rejected (into ingest_rejects); the report is printed either way, with --format json too.
    KIND splits: stock splits (CSV or Polygon JSON); run `accumopt metrics build` afterwards (docs/DATA.md).
    """
    settings = Settings.from_env()
    if max_decompressed_mb is not None:
        settings = dataclasses.replace(settings, max_decompressed_mb=max_decompressed_mb)
    if max_expansion is not None:
        settings = dataclasses.replace(settings, max_expansion_ratio=max_expansion)
    db = resolve_db(db, None, output_root(out))
    files = expand_paths(list(paths))  # a path that does not exist is refused before the store is created or opened
    con = connect(db)
    try:
        rep = ingest_paths(con, kind, files, strict=strict, progress=progress_enabled(fmt), settings=settings)
    finally:
        con.close()
    if fmt == "json":
        echo_json(rep.to_dict())
    else:
        _print_ingest(rep, kind, db)
        for f in rep.failed:
            err_console.print(f.message, style="red", markup=False, highlight=False, soft_wrap=True)
        for w in rep.warnings:
            err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    sys.exit(rep.exit_code)


_INGEST_SHOWN = 20  # above this many files, the table lists only the files that did not ingest cleanly


def _print_ingest(rep, kind, db) -> None:
    """The per-file table (file names; every file when few, else only those with rejected rows or failures) and one
    totals line."""
    files = pd.DataFrame([f.to_dict() for f in rep.files], columns=["file", "status", "rows_accepted", "rows_rejected",
                                                                    "message"])
    shown = files if len(files) <= _INGEST_SHOWN else files[~files["status"].isin(("ok", "replaced", "skipped_identical"))]
    if len(shown):
        print_table(shown, title=f"ingest {kind} -> {db}", hint=None,
                    columns=[Column("file", fmt=lambda v: Path(str(v)).name), Column("rows_accepted", label="accepted"),
                             Column("rows_rejected", label="rejected"), Column("message", wrap=True)])
    t = rep.to_dict()["totals"]
    by = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in rep.counts.items() if n)
    console.print(f"{t['files']:,} file(s) ({by or 'none'}): {t['rows_accepted']:,} rows accepted, "
                  f"{t['rows_rejected']:,} rejected" + (f"; {len(files) - len(shown):,} clean file(s) not listed "
                                                        "(--format json lists every file)" if len(shown) < len(files) else ""),
                  markup=False, highlight=False)


def _given(name: str) -> bool:
    """Whether the running command's option ``name`` was given on the command line (not left to its default)."""
    return click.get_current_context().get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def _check_no_ingest(no_ingest: bool, db: str | None) -> None:
    """--db and --wait name the store a fetch ingests into, and how long it waits for it: with --no-ingest, which
    only downloads, each is refused naming both, never silently ignored."""
    given = [f for f, v in (("--db", db is not None), ("--wait", _given("wait"))) if v]
    if no_ingest and given:
        raise ParameterError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for the store the fetched files "
                             f"are ingested into, and --no-ingest only downloads them: leave out {given[0]} or "
                             f"--no-ingest, got {given[0]} with --no-ingest")


@click.group("fetch")
def fetch_grp():
    """Download raw data (FINRA daily files, FINRA Query API, Polygon prices) into a cache, then ingest it.

    Keys come from the environment (FINRA_API_KEY, FINRA_API_SECRET, POLYGON_API_KEY) and are never written
    to the database, logs or study attributes.
    """


@fetch_grp.command("finra-short")
@click.option("--start", required=True, help="First trade date (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last trade date (YYYY-MM-DD).")
@click.option("--family", "families", multiple=True, default=["CNMS"], show_default=True,
              help="File family: CNMS, FNSQ, FNQC, FNYX, FNRA, FORF (repeatable).")
@click.option("--cache", default=None, help="Raw-file cache directory (default <out>/raw/finra).")
@click.option("--no-ingest", is_flag=True, help="Only download.")
@shared_options("db", "out")
@wait_option()
def fetch_finra_cmd(start, end, families, cache, no_ingest, db, out):
    """Download FINRA Reg SHO daily short-sale files (FINRA_CDN_URL) for each NYSE session, then ingest them."""
    _check_no_ingest(no_ingest, db)
    cache = cache or output_root(out) / "raw" / "finra"
    db = resolve_db(db, None, output_root(out))
    files = fetch_finra_short(start, end, cache, Settings.from_env(), families=tuple(families))
    console.print(f"{len(files)} file(s) in {cache}", markup=False)
    _print_missing(files)
    if not no_ingest and files:
        _ingest_after_fetch("finra-short", files, db)


@fetch_grp.command("finra-api")
@click.option("--start", required=True, help="First trade date (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last trade date (YYYY-MM-DD).")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: all).")
@click.option("--cache", default=None, help="Directory for the downloaded CSV (default <out>/raw/finra_api).")
@click.option("--no-ingest", is_flag=True, help="Only download.")
@shared_options("db", "out")
@wait_option()
def fetch_finra_api_cmd(start, end, symbols, cache, no_ingest, db, out):
    """Query the FINRA Query API (OAuth client credentials) for Reg SHO daily data, then ingest it. Symbols are
    read canonically (brk/b, BRK-B -> BRK.B); those no row came back for are named on stderr."""
    _check_no_ingest(no_ingest, db)
    cache = cache or output_root(out) / "raw" / "finra_api"
    db = resolve_db(db, None, output_root(out))
    syms = [s for s in symbols.split(",") if s.strip()] if symbols is not None else None
    if syms == []:
        raise ParameterError(f"--symbols must name at least one symbol (leave it out for every symbol), "
                             f"got --symbols={symbols!r}")
    res = fetch_finra_api(start, end, Settings.from_env(), syms, out_dir=cache)
    written = res.attrs.get("path") if res is not None else None
    files = [Path(written)] if written else []  # only this run's file, not every CSV in the cache
    console.print(f"{0 if res is None else len(res)} row(s) -> {written or '(nothing written)'}", markup=False)
    for sym in res.attrs.get("missing", []):
        err_console.print(f"missing {sym}: no row returned for {start}..{end}", style="yellow", markup=False,
                          highlight=False, soft_wrap=True)
    if not no_ingest and files:
        _ingest_after_fetch("finra-short", files, db)


@fetch_grp.command("prices")
@click.option("--symbols", default=None,
              help="Comma-separated symbols (an index such as ^VIX too) or a tier (default: $TICKERS or tier1+3).")
@click.option("--start", required=True, help="First date (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last date (YYYY-MM-DD).")
@click.option("--cache", default=None, help="Directory for the downloaded JSON files (default <out>/raw/prices).")
@click.option("--no-ingest", is_flag=True, help="Only download.")
@shared_options("db", "out")
@wait_option()
def fetch_prices_cmd(symbols, start, end, cache, no_ingest, db, out):
    """Download Polygon daily aggregates (POLYGON_API_KEY, POLYGON_BASE_URL), then ingest them."""
    _check_no_ingest(no_ingest, db)
    cache = cache or output_root(out) / "raw" / "prices"
    db = resolve_db(db, None, output_root(out))
    s = Settings.from_env()
    syms = (_fetch_symbols(symbols or ",".join(s.tickers), "--symbols" if symbols else "TICKERS")
            if symbols or s.tickers else resolve_universe("tier1+3"))
    files = fetch_polygon_prices(syms, start, end, cache, s)
    console.print(f"{len(files)} file(s) in {cache}", markup=False)
    _print_missing(files)
    if not no_ingest and files:
        _ingest_after_fetch("prices", files, db)


def _fetch_symbols(value: str, name: str = "--symbols") -> list[str]:
    """The symbols of ``fetch prices --symbols``: a tier or a list of names (``resolve_universe``), plus any index
    (``^VIX``, ``^GSPC``): market context a universe refuses, but data the store needs. A list's refusal (a symbol
    listed twice) names ``name``, where the list came from (``--symbols``, else env ``TICKERS``)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        return resolve_universe(value)  # its error names the empty list
    if len(parts) > 1 or parts[0].lower() not in (*UNIVERSE_NAMES, "tier2"):
        for p in parts:  # a list: each name is refused as --symbols, not as 'universe symbol'
            canonical_symbol(p, "--symbols")
    names = ",".join(p for p in parts if not p.startswith("^"))
    try:
        listed = resolve_universe(names) if names else []
    except ParameterError as e:  # the universe's rule, named as the user gave the list
        given = f"{name} " if name.startswith("--") else f"{name}="  # a flag as typed, a variable as VAR=value
        raise ParameterError(f"{name} {str(e).removeprefix('universe ')}".replace("universe=", given)) from None
    return listed + [canonical_symbol(p, "symbols") for p in parts if p.startswith("^")]


def _print_missing(files) -> None:
    """One stderr line per file or symbol the source did not provide (FetchedFiles.missing)."""
    for name, why in getattr(files, "missing", []):
        err_console.print(f"missing {name}: {why}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _ingest_after_fetch(kind, files, db):

    con = connect(db)
    try:
        rep = ingest_paths(con, kind, [str(f) for f in files], progress=progress_enabled())
    finally:
        con.close()
    t = rep.to_dict()["totals"]
    console.print(f"ingested {t.get('rows_accepted')} rows from {t.get('files')} file(s) into {db}", markup=False,
                  soft_wrap=True)
    for w in rep.warnings:
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    # the exit code says a file failed (2) or rows were rejected (1): the lines say which and why (as `ingest`)
    for f in rep.files:
        if f.status == "failed":
            err_console.print(f"error: {f.message}", style="red", markup=False, highlight=False, soft_wrap=True)
        elif f.rows_rejected:
            err_console.print(f"warning: {f.rows_rejected} row(s) of {f.file} rejected (in ingest_rejects): "
                              f"{f.message}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if rep.exit_code:
        sys.exit(rep.exit_code)


# ------------------------------------------------------------------------------------------------ data / metrics
@click.group("data")
def data_grp():
    """The embedded synthetic market and store summaries."""


@data_grp.command("synth")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed (same seed -> identical files).")
@click.option("--effect", default=1.0, show_default=True, type=float, help="Planted effect strength; 0 = a null market with no edge.")
@click.option("--family", default="ratio", show_default=True, type=click.Choice(["ratio", "volume", "lit"]),
              help="Which signal family carries the planted effect.")
@click.option("--start", default="2023-01-03", show_default=True, help="First session (YYYY-MM-DD).")
@click.option("--end", default="2024-12-31", show_default=True, help="Last session (YYYY-MM-DD).")
@click.option("--universe", default="tier1+3", show_default=True, help="tier1, tier3, tier1+3, tier1+2+3 or a comma list.")
@click.option("--n-symbols", type=int, default=None, help="Keep the first N symbols of the universe, or add synthetic names (SYN0001..) up to N (scale tests).")
@click.option("--prices", "prices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Keep real prices from this CSV and synthesize only the flow layers.")
@shared_options("db", "out")
@wait_option()
@format_option()
def synth_cmd(seed, effect, family, start, end, universe, n_symbols, prices_file, db, out, fmt):
    """Write the embedded synthetic market as real-format raw files (FINRA CNMS, prices, lit flow, OTC weekly,
    options) plus a ground-truth folder the optimizer never reads, under <out>/synth/<seed, effect, family, span,
    universe>/; with a store (--db, or env ACCUMOPT_DB), also ingest them and build daily_metrics there."""

    cfg = SynthConfig(seed=seed, start=start, end=end, universe=universe, n_symbols=n_symbols, effect=effect,
                      family=family, prices_file=prices_file)
    out_dir = under(output_root(out), "synth", run_label(
        f"seed{seed}", f"effect{effect:g}", family, start, end, universe, None if n_symbols is None else f"n{n_symbols}",
        None if prices_file is None else f"prices-{content_label(prices_file)}"))
    db = db or os.environ.get(DB_ENV) or None
    if not db and _given("wait"):  # --wait is for the store the files are ingested into
        raise ParameterError(f"--wait is how long to wait for the store the files are ingested into, and no store is "
                             f"named (--db or env {DB_ENV}): the files are only written; leave out --wait or name a "
                             f"store, got --wait without --db")
    if db:
        summary = synth_to_db(cfg, out_dir, db, progress=progress_enabled(fmt))
    else:
        paths = write_market(generate_market(cfg), out_dir)
        summary = {"out": str(out_dir), "files": {k: str(v) for k, v in paths.items()}}
    if fmt == "json":
        echo_json(summary)
    else:
        print_kv(summary, title="synthetic market")


@data_grp.command("info")
@shared_options("db", "out")
@format_option()
@wait_option()
def info_cmd(db, out, fmt):
    """Summarize the store: schema version, rows per table, date ranges, and each source's coverage of the NYSE
    sessions between its first and last date (sessions present, gaps, the largest gap), with how many symbols
    lack sessions the source holds for others inside their own first..last date, and the worst of them."""
    db = existing_store(resolve_db(db, None, output_root(out)))
    con = connect(db, read_only=True)
    try:
        info = store_info(con)
        info["lit_trades_old_rules"] = old_rules_lit_files(con)  # re-read on their next ingest: the note says how
    finally:
        con.close()
    if fmt == "json":
        echo_json({"db": db, **info})
        return
    tables = pd.DataFrame(info["tables"])
    tables["symbols"] = tables["symbols"].astype("Int64")
    console.print(f"store: {db}", markup=False, highlight=False, soft_wrap=True)
    mv = "" if info["metrics_version"] is None else f", daily_metrics built by metrics v{info['metrics_version']}"
    print_table(tables, title=f"tables (schema v{info['schema_version']}{mv})", hint=None)
    if (info["schema_version"] or 0) < SCHEMA_VERSION:  # data info reads a store as it is: it never migrates
        console.print(f"schema v{info['schema_version'] or 0} is older than this accumopt's v{SCHEMA_VERSION}: the next "
                      "command that writes to the store (ingest, metrics build, backtest, signals) migrates it; "
                      "reading commands read it as it is", markup=False, highlight=False, soft_wrap=True)
    console.print(f"coverage of the NYSE sessions from each source's first to last date (a span needs >= "
                  f"{100 * info['minimum']:.0f}% for {' and '.join(info['required'])}):", markup=False)
    for c in info["coverage"]:
        if not c["expected"]:
            console.print(f"  {c['source']:<12} no data", markup=False)
            continue
        gaps = c["gaps"]
        line = (f"  {c['source']:<12} {c['start']}..{c['end']}  {c['sessions']:,}/{c['expected']:,} sessions "
                f"({100 * c['ratio']:.1f}%)")
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        if gaps:  # on its own line, under the span: with the sessions it ran past 80 columns (real FINRA files)
            big = max(gaps, key=lambda g: g["sessions"])
            console.print(f"  {'':<12} {len(gaps)} gap{'s' if len(gaps) != 1 else ''}, largest "
                          f"{big['first']}..{big['last']} ({big['sessions']:,})", markup=False, highlight=False,
                          soft_wrap=True)
        for text in symbol_gap_lines(c["symbol_gaps"]):
            console.print(f"  {'':<12} {text}", markup=False, highlight=False, soft_wrap=True)
    found = [SuspectSplit(**{**x, "date": dt.date.fromisoformat(x["date"])}) for x in info["suspect_splits"]]
    old_rules = old_rules_note(info["lit_trades_old_rules"])  # in the staleness line when accumopt built daily_metrics
    for w in (info["daily_metrics_stale"], old_rules if old_rules and old_rules not in (info["daily_metrics_stale"] or "") else None,
              partial_days_warning(info["finra_partial_days"]), *suspect_split_lines(found)):
        if w:
            err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)


@click.group("metrics")
def metrics_grp():
    """Derived point-in-time tables (daily_metrics, options_premium_daily)."""


@metrics_grp.command("build")
@click.option("--z-window", default=None, type=int, help="Window of the stored z-score columns (an integer in [2, 252], the engine's z_window; default: the window the stored table was built with, 20 for a new one).")
@click.option("--min-lit-volume", default=None, type=int, help="Lit imbalance is NULL below this volume (env MIN_LIT_VOLUME; default: the floor the stored tables were built with, 10000 for new ones).")
@shared_options("db", "out")
@wait_option()
@format_option()
def metrics_build_cmd(z_window, min_lit_volume, db, out, fmt):
    """Rebuild daily_metrics from the raw tables (one transaction; point-in-time; OTC publication lag applied)."""
    mlv = min_lit_volume if min_lit_volume is not None else Settings.from_env().min_lit_volume
    db = existing_store(resolve_db(db, None, output_root(out)))
    con = connect(db)
    try:
        summary = build_daily_metrics(con, z_window=z_window, min_lit_volume=mlv, progress=progress_enabled(fmt))
    finally:
        con.close()
    if not summary.get("rows"):
        raise DataError(f"no raw data to build daily_metrics from in {db} (0 rows: prices_daily and the FINRA short "
                        f"tables give no joined rows); run `accumopt ingest` or `accumopt data synth --db {db}` first")
    for w in summary.pop("warnings", ()):
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if fmt == "json":
        echo_json(summary)
    else:
        print_kv(summary, title="daily_metrics")


COMMANDS = (ingest_cmd, fetch_grp, data_grp, metrics_grp)
