"""Daily options activity -> ``options_daily``.

CSV ``date,symbol,call_volume,put_volume`` plus any of ``call_premium, put_premium, itm_call_volume,
otm_call_volume, itm_put_volume, otm_put_volume, atm_iv`` (absent columns or empty values -> NULL).
A file replaces the stored rows of the (date, symbol) keys it holds.
Row invariants (rejected, or fatal under strict): a valid symbol, the date an NYSE session between 1990-01-02
and today, volumes, premiums and atm_iv >= 0, volumes <= 1e13, (date, symbol) unique.
"""

from __future__ import annotations

from pathlib import Path

from optimizer.data.ingest._common import (
    EARLIEST_DATE,
    MAX_VOLUME,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    accepted,
    csv_header,
    date_rules,
    lines_relation,
    rejects_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Lines, RawFile

__all__ = ["JSON_OK", "prepare", "spec", "plan", "OPTIONAL_COLUMNS", "daily_value_rules", "csv_prep"]

JSON_OK = False
OPTIONAL_COLUMNS = (
    "call_premium",
    "put_premium",
    "itm_call_volume",
    "otm_call_volume",
    "itm_put_volume",
    "otm_put_volume",
    "atm_iv",
)
_VALUES = ("call_volume", "put_volume") + OPTIONAL_COLUMNS
_REQ = ("date", "symbol", "call_volume", "put_volume")


def daily_value_rules(ctx: Ctx, values: tuple[str, ...], capped: tuple[str, ...]) -> list[tuple[str, str]]:
    """Invariants of a (date, symbol) row of non-negative figures: date rules, values >= 0, volumes <= 1e13."""
    rules = date_rules(ctx, '"date"', "date", EARLIEST_DATE)
    rules += [(f'"{c}" < 0', f"printf('negative {c} %s', CAST(\"{c}\" AS VARCHAR))") for c in values]
    rules += [(f'"{c}" > {MAX_VOLUME:g}', f"printf('{c} %g is above the maximum {MAX_VOLUME:g}', \"{c}\")") for c in capped]
    return rules


def csv_prep(raw: RawFile, lines: Lines, required: tuple[str, ...], optional: tuple[str, ...],
             aliases: dict[str, str] | None = None, *, kind: str) -> Prep:
    """The Prep of a CSV file whose layout is its header (a warning names the columns it does not read)."""
    header = lines.first if lines.first_no == 1 else ""
    unread: list[str] = []
    index, ncols = csv_header(raw.file, header, required=required, optional=optional, aliases=aliases, unread=unread)
    return Prep(("csv", tuple(sorted(index.items())), ncols), warnings=unread_warnings(kind, raw.file, unread))


def prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    return csv_prep(raw, lines, _REQ, OPTIONAL_COLUMNS, kind="options")


def spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    index, ncols = dict(sig[1]), sig[2]
    present = [c for c in _VALUES if c in index]
    cols = [Col("date", "date"), Col("symbol", "symbol")] + [Col(c, "number", required=c in _REQ) for c in present]
    rules = daily_value_rules(ctx, tuple(present), tuple(c for c in present if c.endswith("_volume")))
    return Spec(lines_relation(index, ",", fids), cols, ncols, "expected %d comma-separated fields, found %d", "date",
                ("date", "symbol"), ("date", "symbol"), rejects=rules)


def plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    names = {c.name for c in sp.cols}
    vals = ", ".join(f'"{c}"' if c in names else "CAST(NULL AS DOUBLE)" for c in _VALUES)
    select = f'SELECT "date", "symbol", {vals}, {sql_str(Path(file).name)} {accepted(table, fid)}'
    delete = (f'DELETE FROM options_daily AS t USING (SELECT DISTINCT "date", "symbol" {accepted(table, fid)}) AS k '
              "WHERE t.date = k.date AND t.symbol = k.symbol")
    return Plan("options_daily", ["date", "symbol", *_VALUES, "source_file"], select, delete, s.n_rows, s.n_rejects,
                s.first_reject, rejects_sql(sp, table, fid))
