"""Symbol commands: canonical spellings and effective-dated ticker mappings (``accumopt symbols ...``)."""

from __future__ import annotations

import click

from optimizer.cli._common import (
    console, echo_json, err_console, format_option, print_table, shared_options, wait_option,
)
from optimizer.data.calendar import as_date
from optimizer.data.store import connect
from optimizer.errors import ParameterError
from optimizer.paths import existing_store, output_root, resolve_db
from optimizer.data.symbols import (
    add_symbol_mapping, canonical_or_none, derived_rows_of, canonical_symbol, is_context_symbol, list_symbol_mappings,
    remove_symbol_mapping, symbol_problem,
)

__all__ = ["COMMANDS"]


@click.group("symbols")
def symbols_grp():
    """Canonical symbols and ticker changes (docs/DATA.md "Symbols")."""


@symbols_grp.command("show")
@click.argument("symbols", nargs=-1, required=True)
@shared_options()
@format_option()
def show_cmd(symbols, fmt):
    """Print the canonical form of each SYMBOL (BRK/B, BRK-B, brk.b -> BRK.B; ABRpD -> ABR.PRD); a symbol that breaks
    a rule is named with the rule, exit code 2."""
    rows = [{"input": s, "canonical": canonical_or_none(s) or "", "context_only": bool(canonical_or_none(s)) and
             is_context_symbol(canonical_or_none(s)), "problem": symbol_problem(s) or ""} for s in symbols]
    if fmt == "json":
        echo_json(rows)
    else:  # an invalid input's cell says so: an empty one would drop the column when every input is invalid
        shown = [r | {"canonical": r["canonical"] or "(invalid)"} for r in rows]
        print_table(shown, title="canonical symbols", key=("input", "canonical", "context_only"), hint=None)
    bad = [r["problem"] for r in rows if r["problem"]]
    if bad:  # the table cannot hold the rule in 80 columns; a script must see the failure: one line, exit 2
        raise ParameterError(f"{len(bad)} of {len(rows)} symbols break a rule: {'; '.join(bad)}")


@symbols_grp.group("map")
def map_grp():
    """Effective-dated ticker mappings: rows of OLD dated before the date are stored under NEW."""


@map_grp.command("add")
@click.argument("old")
@click.argument("new")
@click.option("--from", "effective", required=True, help="First session traded under NEW (YYYY-MM-DD).")
@click.option("--no-rewrite", is_flag=True, help="Only map later ingests; leave the stored rows of OLD as they are.")
@shared_options("db", "out")
@wait_option()
@format_option()
def map_add_cmd(old, new, effective, no_rewrite, db, out, fmt):
    """Map OLD -> NEW from --from on; the stored rows of OLD before that date are renamed in the same transaction."""
    as_date(effective, "--from")  # named as the user wrote it, before the store is opened (or created)
    con = connect(resolve_db(db, None, output_root(out)))
    try:
        n = add_symbol_mapping(con, old, new, effective, rewrite_existing=not no_rewrite)
        stale = derived_rows_of(con, old, effective) if not no_rewrite else {}
    finally:
        con.close()
    o, nw = canonical_symbol(old, "old"), canonical_symbol(new, "new")
    notes = []
    built = {t: k for t, k in stale.items() if t != "scanner_daily_metrics"}
    if built:
        notes.append(f"derived tables still hold {o} before {effective} "
                     f"({', '.join(f'{t} {k} rows' for t, k in built.items())}): they keep the old name until "
                     "rebuilt; run `accumopt metrics build`")
    if "scanner_daily_metrics" in stale:
        notes.append(f"scanner_daily_metrics ({stale['scanner_daily_metrics']} rows of saved scans) still holds {o} "
                     f"before {effective}: scan those dates again (`accumopt scan --date D`) to rename them")
    out = {"old_symbol": o, "new_symbol": nw, "effective_date": effective, "rows_rewritten": n,
           "derived_rows_of_old": stale, "warnings": notes}
    if fmt == "json":
        echo_json(out)
    else:
        console.print(f"{o} -> {nw} from {effective}: {n} stored rows renamed", markup=False)
        for w in notes:
            err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)


@map_grp.command("list")
@shared_options("db", "out")
@format_option()
def map_list_cmd(db, out, fmt):
    """List the mappings in effective-date order."""
    db = existing_store(resolve_db(db, None, output_root(out)))
    con = connect(db, read_only=True)
    try:
        rows = list_symbol_mappings(con)
    finally:
        con.close()
    if fmt == "json":
        echo_json([{**r, "effective_date": str(r["effective_date"])} for r in rows])
    else:
        print_table(rows, title=f"symbol mappings in {db}", columns=["old_symbol", "new_symbol", "effective_date"])


@map_grp.command("remove")
@click.argument("old")
@click.option("--from", "effective", default=None, help="Only the mapping effective on this date (default: every mapping of OLD).")
@shared_options("db", "out")
@wait_option()
def map_remove_cmd(old, effective, db, out):
    """Remove the mapping(s) of OLD. Later ingests keep OLD's rows under OLD; rows already renamed keep NEW
    (re-ingest the raw files to undo that)."""
    as_date(effective, "--from")
    con = connect(existing_store(resolve_db(db, None, output_root(out))))
    try:
        n = remove_symbol_mapping(con, old, effective)
    finally:
        con.close()
    console.print(f"removed {n} mapping(s) of {old.strip().upper()}", markup=False)


COMMANDS = (symbols_grp,)
