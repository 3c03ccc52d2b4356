"""Stock splits -> ``splits`` (symbol, ex_date, split_from, split_to, ratio, source_file).

FINRA short-sale, lit and OTC volumes are RAW share counts, while prices arrive split-adjusted; the split table
lets ``optimizer.data.metrics`` (and the scanner) put every volume on the adjusted basis (docs/DATA.md "Splits").

Accepted forms:

* CSV with ``symbol`` (or ``ticker``), the ex-date as ``date`` / ``ex_date`` / ``execution_date``, and either
  ``ratio`` (new shares per old share: 10 for a 10-for-1 split, 0.1 for a 1-for-10 reverse split) or
  ``split_from`` and ``split_to`` (Polygon's fields: 1 and 10 for a 10-for-1 split).
* Polygon's splits JSON (``/v3/reference/splits``): ``{"results": [{"ticker", "execution_date", "split_from",
  "split_to"}, ...]}`` or a list of such records or documents.

A file replaces the stored rows of the (symbol, ex_date) keys it holds. Row invariants (rejected, or fatal under
strict): a valid symbol, the ex-date an NYSE session between 1990-01-02 and today (an announced future split
must be ingested once it has taken effect: the adjusted prices only change then), split_from and split_to > 0,
a ratio that is finite, not 1 and within [1e-4, 1e4] (1-for-10,000 .. 10,000-for-1), (symbol, ex_date) unique.
A file after which a symbol's stored splits multiply to more than ``adjust.MAX_FACTOR`` is refused whole (nothing
written, the file logged failed): ``metrics build`` and ``scan`` could not adjust that symbol's volumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from optimizer.data.adjust import check_split_factors
from optimizer.errors import DataError, InputFileError
from optimizer.data.ingest._common import (
    EARLIEST_DATE,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    accepted,
    csv_header,
    date_rules,
    frame_relation,
    lines_relation,
    load_json,
    rejects_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Lines, RawFile

__all__ = ["JSON_OK", "prepare", "spec", "plan", "factor_check"]

JSON_OK = True
# the ratios a split may have (new shares per old): the largest real ones are a 1-for-10,000 cash-out reverse split
# and far smaller forward splits; beyond, a unit error or a typo (1e300 made every adjusted volume overflow and
# `metrics build` crash)
MIN_RATIO, MAX_RATIO = 1e-4, 1e4
JSON_KNOWN = ("id",)  # Polygon's split id: not read, without a warning
_ALIASES = {"ticker": "symbol", "ex_date": "date", "execution_date": "date", "exdate": "date", "split_ratio": "ratio"}


def _json_frame(file: str, text: str) -> tuple[pd.DataFrame, list[str]]:
    doc = load_json(file, text)
    docs = doc if isinstance(doc, list) else [doc]
    recs: list = []
    for d in docs:
        if isinstance(d, dict) and "results" in d:
            res = d["results"] or []
            if not isinstance(res, list):
                raise InputFileError(file, None, "Polygon splits JSON 'results' is not a list")
            recs += res
        elif isinstance(d, dict):
            recs.append(d)
        else:
            raise InputFileError(file, None, "JSON is not a Polygon splits response (expected objects with 'results')")
    rows = []
    unread: dict[str, None] = {}
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise InputFileError(file, i + 1, "split record is not an object")
        low = {_ALIASES.get(str(k).lower(), str(k).lower()): v for k, v in r.items()}
        unread.update((str(k), None) for k in r if _ALIASES.get(str(k).lower(), str(k).lower()) not in
                      ("symbol", "date", "split_from", "split_to"))
        for k in ("symbol", "date", "split_from", "split_to"):
            if k not in low:
                raise InputFileError(file, i + 1, f"split record lacks field {k!r}")
        if not isinstance(low["symbol"], str):
            raise InputFileError(file, i + 1, f"split record 'ticker' must be one string, got a {type(low['symbol']).__name__}")
        rows.append({"line": i + 1, "raw": json.dumps(r, default=str),
                     **{f"t_{k}": "" if low[k] is None else str(low[k]).strip() for k in ("symbol", "date", "split_from", "split_to")}})
    cols = ["line", "raw", "t_symbol", "t_date", "t_split_from", "t_split_to"]
    return pd.DataFrame(rows, columns=cols).astype({c: str for c in cols if c != "line"}), list(unread)


def prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    if text is not None:
        frame, unread = _json_frame(raw.file, text)
        return Prep(("json", fid), frame=frame, warnings=unread_warnings("splits", raw.file, unread, JSON_KNOWN, "record field"))
    header = lines.first if lines.first_no == 1 else ""
    unread = []
    index, ncols = csv_header(raw.file, header, required=("symbol", "date"), optional=("ratio", "split_from", "split_to"),
                              aliases=_ALIASES, unread=unread)
    if "ratio" not in index and not ("split_from" in index and "split_to" in index):
        raise InputFileError(raw.file, 1, f"missing column 'ratio' (or 'split_from' and 'split_to') (header has: {header.strip()})")
    if "ratio" in index:  # the ratio is read; split_from / split_to beside it are not
        unread += [c for c in ("split_from", "split_to") if c in index]
        index = {k: v for k, v in index.items() if k not in ("split_from", "split_to")}
    return Prep(("csv", tuple(sorted(index.items())), ncols), warnings=unread_warnings("splits", raw.file, unread))


def _ratio_terms(sp: Spec) -> tuple[str, str]:
    names = {c.name for c in sp.cols}
    return ("1.0", '"ratio"') if "ratio" in names else ('"split_from"', '"split_to"')


def spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    if sig[0] == "json":
        rel, ncols, count_error, has_ratio = frame_relation(ctx, sig[1], preps[sig[1]].frame, 4), 4, "expected %d fields, found %d", False
    else:
        index, ncols = dict(sig[1]), sig[2]
        rel, count_error, has_ratio = lines_relation(index, ",", fids), "expected %d comma-separated fields, found %d", "ratio" in index
    cols = [Col("symbol", "symbol"), Col("date", "date")]
    cols += [Col("ratio", "number")] if has_ratio else [Col("split_from", "number"), Col("split_to", "number")]
    frm, to = ("1.0", '"ratio"') if has_ratio else ('"split_from"', '"split_to"')
    rejects = date_rules(ctx, '"date"', "ex-date", EARLIEST_DATE) + [
        (f"NOT ({frm} > 0 AND {to} > 0)",
         f"printf('split_from %s and split_to %s must be > 0', CAST({frm} AS VARCHAR), CAST({to} AS VARCHAR))"),
        (f"{to} = {frm}", "'a split ratio of 1 changes nothing'"),
        (f"NOT ({to} / {frm} BETWEEN {MIN_RATIO!r} AND {MAX_RATIO!r})",
         f"printf('split ratio %s is outside [{MIN_RATIO:g}, {MAX_RATIO:g}]: no real split is that large "
         f"(1-for-10,000 .. 10,000-for-1)', CAST({to} / {frm} AS VARCHAR))"),
    ]
    return Spec(rel, cols, ncols, count_error, "date", ("symbol", "date"), ("symbol", "ex_date"), rejects=rejects,
                raw_in_rows=sig[0] == "json")


def plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    frm, to = _ratio_terms(sp)
    select = f'SELECT "symbol", "date", {frm}, {to}, {to} / {frm}, {sql_str(Path(file).name)} {accepted(table, fid)}'
    delete = (f'DELETE FROM splits AS t USING (SELECT DISTINCT "symbol", "date" {accepted(table, fid)}) AS k '
              "WHERE t.symbol = k.symbol AND t.ex_date = k.date")
    return Plan("splits", ["symbol", "ex_date", "split_from", "split_to", "ratio", "source_file"], select, delete,
                s.n_rows, s.n_rejects, s.first_reject, rejects_sql(sp, table, fid))


def factor_check(ctx: Ctx, table: str, fid: int, file: str) -> list[str]:
    """Run in the file's write transaction, after its rows are written: the splits of each symbol the file holds
    (its own and those stored before it) multiply to at most ``MAX_FACTOR``, else InputFileError (the file refused
    whole, as ``metrics build`` would refuse the store later)."""
    try:
        check_split_factors(ctx.con, where=f'symbol IN (SELECT DISTINCT "symbol" {accepted(table, fid)})')
    except DataError as exc:
        raise InputFileError(file, None, str(exc)) from None
    return []
