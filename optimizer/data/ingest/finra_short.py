"""FINRA Reg SHO daily short-sale volume files -> ``finra_short_daily``.

Accepted forms:

* The files exactly as FINRA publishes them (``CNMSshvol20200102.txt`` or ``.txt.gz``; families CNMS, FNSQ,
  FNQC, FNYX, FNRA, FORF): pipe-delimited, header ``Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market``
  or the older ``Date|Symbol|ShortVolume|TotalVolume|Market`` (short_exempt_volume -> NULL), LF or CRLF, and a
  last line holding the record count, which must equal the number of data rows. The facility is the file name
  prefix; every row's date must equal the file name's date. A header-only file (with trailer ``0``) is valid.
  Fractional volumes are rounded to whole shares.
* The tidy CSV ``date,symbol,short_volume[,short_exempt_volume],total_volume[,market],facility_file|facility``
  (e.g. ``finra_short_daily_2020.csv.gz`` or the FINRA API cache written by ``optimizer.data.fetch``): many
  dates/facilities in one file.

A file replaces every stored row of the (date, facility) pairs it covers; API rows (``facility = 'API'``, the FINRA
Query API cache) only those of the (date, symbol) keys it holds, since such a file holds only the symbols its query
asked for (``accumopt fetch finra-api --symbols``).

File-level rules (the file fails, nothing is written): the header, the trailer count, field counts, numbers and
dates that do not parse; a raw file's rows must carry the file name's date, which must be an NYSE session on or
after 2009-08-03 (the first FINRA Reg SHO daily file) and not in the future; a tidy file's facility must be one
of the families or API, and its dates must match the file name's date (one date in the name) or lie within its
two dates (``finra_api_regsho_20240102_20240131.csv``).
Row invariants (rejected, or fatal under strict): a valid symbol (``optimizer.data.symbols``), volumes <= 1e13
and >= 0, short_volume <= total_volume, short_exempt_volume <= short_volume, (date, symbol, facility) unique
within the file; a tidy file's dates follow the same date rules per row.

The consolidated view over the stored rows lives with the schema: ``optimizer.data.store.consolidated_short_sql``
gives one row per (date, symbol): the CNMS row when present (provenance 'CNMS'),
else the SUM of the per-facility rows (provenance 'FACILITY_SUM:FNQC+FNSQ+...', facilities sorted), else the
API row (provenance 'API'). ``create_consolidated_view(con)`` stores it as the view ``finra_short_consolidated``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from optimizer.errors import InputFileError
from optimizer.data.store import FINRA_FAMILIES, FINRA_SHORT_ROWS, FINRA_SHORT_SOURCES
from optimizer.data.ingest._common import (
    MAX_VOLUME,
    _typed,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    accepted,
    csv_header,
    csv_relation,
    date_rules,
    lines_relation,
    name_date,
    name_dates,
    quoted,
    rejects_sql,
    repr_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Delimited, Limits, Lines, RawFile, probe_delimited

__all__ = [
    "FAMILIES",
    "FIRST_FINRA_DATE",
    "JSON_OK",
    "probe",
    "prepare",
    "spec",
    "plan",
    "facility_of",
]

JSON_OK = False
FAMILIES = FINRA_FAMILIES
FIRST_FINRA_DATE = dt.date(2009, 8, 3)
_FIRST_WHY = "the first FINRA Reg SHO daily file"
_NEW = ("date", "symbol", "shortvolume", "shortexemptvolume", "totalvolume", "market")
_OLD = ("date", "symbol", "shortvolume", "totalvolume", "market")
# the columns of finra_short_rows a plan writes (finra_short_daily's, with the source id for facility and source_file)
_STORED = ["date", "symbol", "source_id", "market", "short_volume", "short_exempt_volume", "total_volume"]
_KEY_LABELS = ("date", "symbol", "facility")
_TIDY_REQ = ("date", "symbol", "short_volume", "total_volume")
_TIDY_OPT = ("short_exempt_volume", "market", "facility", "facility_file")
# a tidy file's columns not read, without a warning: where the rows were copied from (the real test data has it)
TIDY_KNOWN = ("source_repo", "source")


def facility_of(path: str | Path) -> str | None:
    """The family prefix of a FINRA file name (``CNMSshvol20200102.txt`` -> ``CNMS``), else None."""
    name = Path(path).name.upper()
    for fam in FAMILIES:
        if name.startswith(fam):
            return fam
    return None


def _pretty(cols: tuple[str, ...]) -> list[str]:
    names = {"date": "Date", "symbol": "Symbol", "shortvolume": "ShortVolume", "shortexemptvolume": "ShortExemptVolume",
             "totalvolume": "TotalVolume", "market": "Market"}
    return [names.get(c, c) for c in cols]


def _volume_rules(short: str, exempt: str | None, total: str) -> list[tuple[str, str]]:
    """The volume invariants, in order: plausible size, non-negative, short <= total, exempt <= short."""
    vols = [("short_volume", short), ("total_volume", total)] + ([("short_exempt_volume", exempt)] if exempt else [])
    rules = [(f"{v} > {MAX_VOLUME:g}", f"printf('{n} %g is above the maximum {MAX_VOLUME:g}', {v})") for n, v in vols]
    rules += [(f"{v} < 0", f"printf('negative {n} %.0f', {v})") for n, v in vols]
    rules.append((f"{short} > {total}", f"printf('short_volume %.0f > total_volume %.0f', {short}, {total})"))
    if exempt:
        rules.append((f"{exempt} > {short}", f"printf('short_exempt_volume %.0f > short_volume %.0f', {exempt}, {short})"))
    return rules


# --------------------------------------------------------------------------------------------------- prepare

_HEADERS = tuple("|".join(_pretty(h)).encode("ascii") for h in (_NEW, _OLD))


def probe(raw: RawFile, limits: Limits) -> Delimited | None:
    """The fast path of a raw FINRA file exactly as FINRA publishes it (``_source.probe_delimited``), else None."""
    return probe_delimited(raw, limits, _HEADERS, b"|")


def prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines, text: str | None) -> Prep:
    """Header (and for raw files trailer) checks of one staged FINRA file; its layout and per-file values."""
    file = raw.file
    if not lines.staged:
        raise InputFileError(file, 1, "empty file: expected the header Date|Symbol|ShortVolume|...")
    header = lines.first if lines.first_no == 1 else ""
    if "short_volume" in header.strip().lower():
        return _prepare_tidy(file, header)
    return _prepare_raw(file, header, lines)


def _prepare_raw(file: str, header_line: str, lines: Lines) -> Prep:
    header = [h.strip().lower() for h in header_line.split("|")]
    if len(header) == 1:
        for d, label in ((",", "','"), (";", "';'"), ("\t", "tab")):
            if d in header_line:
                raise InputFileError(file, 1, f"wrong delimiter: expected '|' between columns, found {label}")
        raise InputFileError(file, 1, f"header {quoted(header_line)} is not Date|Symbol|ShortVolume|...")
    if tuple(header) == _NEW:
        layout = _NEW
    elif tuple(header) == _OLD:
        layout = _OLD
    else:
        want = _NEW if "shortexemptvolume" in header else _OLD
        missing = [c for c in want if c not in header]
        what = f"missing column {_pretty((missing[0],))[0]!r}" if missing else "unexpected columns"
        raise InputFileError(file, 1, f"{what}: header is {quoted(header_line)}, expected {'|'.join(_pretty(want))!r}")
    facility = facility_of(file)
    if facility is None:
        raise InputFileError(file, None, f"cannot tell the facility: the file name must start with one of {', '.join(FAMILIES)}")
    if lines.last_no < 2:
        raise InputFileError(file, 2, "missing record-count trailer line")
    trailer = lines.last.strip()
    if not trailer.isdigit():
        raise InputFileError(
            file, lines.last_no, f"missing record-count trailer: last line {quoted(lines.last)} is not an integer (truncated file?)"
        )
    records = lines.staged - 2
    if int(trailer) != records:
        raise InputFileError(file, lines.last_no, f"trailer says {int(trailer)} records, file has {records}")
    fdate = name_date(file)
    params = {"p_date": None if fdate is None else fdate.date(), "p_facility": facility, "p_last": lines.last_no,
              "p_date_text": None if fdate is None else f"{fdate:%Y%m%d}"}
    if isinstance(lines, Delimited):  # read by DuckDB's CSV reader (probe): a group of its own
        return Prep(("raw", layout, "csv"), params, data=lines)
    return Prep(("raw", layout), params)


def _prepare_tidy(file: str, header_line: str) -> Prep:
    unread: list[str] = []
    index, ncols = csv_header(file, header_line, required=_TIDY_REQ, optional=_TIDY_OPT, unread=unread)
    if "facility" not in index and "facility_file" in index:
        index["facility"] = index.pop("facility_file")
    elif "facility_file" in index:  # both: 'facility' is read, 'facility_file' is not
        index.pop("facility_file")
        unread.append("facility_file")
    params: dict[str, object] = {}
    if "facility" not in index:
        fam = facility_of(file)
        if fam is None:
            raise InputFileError(file, 1, "missing column 'facility_file' (or 'facility'), and the file name has no family prefix")
        params["p_facility"] = fam
    dates = name_dates(file)
    if dates:
        params["p_lo"], params["p_hi"] = min(dates).date(), max(dates).date()
    span = 0 if not dates else (1 if len(dates) == 1 else 2)
    return Prep(("tidy", tuple(sorted(index.items())), ncols, span), params,
                warnings=unread_warnings("finra-short", file, unread, TIDY_KNOWN))


# --------------------------------------------------------------------------------------------------- validate


def spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    ctx.ensure_sessions()
    if sig[0] == "raw":
        fast = ([(f, preps[f].data.path, preps[f].data.rows, preps[f].data.first) for f in fids]
                if sig[2:] == ("csv",) else None)
        sp = _spec_raw(ctx, sig[1], fids, fast)
        if all(preps[f].params.get("p_date") is not None for f in fids):
            sp.dup_col = "symbol"  # every row of a file without a format error has its name's date and its facility
        return sp
    return _spec_tidy(ctx, dict(sig[1]), sig[2], sig[3], fids)


def _spec_raw(ctx: Ctx, layout: tuple[str, ...], fids: list[int], fast: list[tuple[int, str, int, int]] | None = None) -> Spec:
    cols = [Col("date", "date", "Date"), Col("symbol", "symbol"), Col("shortvolume", "number", "ShortVolume")]
    if layout is _NEW or layout == _NEW:
        cols.append(Col("shortexemptvolume", "number", "ShortExemptVolume", required=False))
    cols += [Col("totalvolume", "number", "TotalVolume"), Col("market", "text", "Market", required=False)]
    checks = [('"date" <> p_date', "printf('date %s does not match the file name date %s', \"t_date\", strftime(p_date, '%Y%m%d'))")]
    checks += date_rules(ctx, '"date"', "date", FIRST_FINRA_DATE, earliest_why=_FIRST_WHY)
    exempt = '"shortexemptvolume"' if layout == _NEW else None
    # every row of a raw file carries the file name's date: when the text is exactly that date no parse is needed
    generic = [c for c in cols if c.name == "date"][0]

    fast_date = f'(CASE WHEN "t_date" = p_date_text THEN p_date ELSE {_typed(generic)} END)'
    index = {c: i for i, c in enumerate(layout)}
    # fast-path files: the volumes parsed by DuckDB's CSV reader (a file with a format error is read again by the
    # line path, which words it: optimizer.data.ingest._stage_batch)
    parsed = tuple(c.name for c in cols if c.kind == "number") if fast is not None else ()
    return Spec(
        typed={"date": fast_date},
        relation=(lines_relation(index, "|", fids, trailer=True) if fast is None
                  else csv_relation(index, layout, "|", fast, parsed)),
        parsed=parsed,
        cols=cols,
        ncols=len(layout),
        count_error="expected %d '|'-separated fields, found %d",
        date_col="date",
        key=("date", "symbol", "facility"),
        key_labels=_KEY_LABELS,
        file_checks=checks,
        extra=[("facility", "p_facility")],
        rejects=_volume_rules('"shortvolume"', exempt, '"totalvolume"'),
    )


def _spec_tidy(ctx: Ctx, index: dict[str, int], ncols: int, span: int, fids: list[int]) -> Spec:
    cols = [Col("date", "date"), Col("symbol", "symbol"), Col("short_volume", "number")]
    if "short_exempt_volume" in index:
        cols.append(Col("short_exempt_volume", "number", required=False))
    cols.append(Col("total_volume", "number"))
    if "market" in index:
        cols.append(Col("market", "text", required=False))
    checks: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    if "facility" in index:
        cols.append(Col("facility", "upper"))
        known = FAMILIES + ("API",)
        checks.append((
            f"\"facility\" NOT IN ({', '.join(sql_str(f) for f in known)})",
            f"printf('unknown facility %s (expected one of {', '.join(FAMILIES)} or API)', {repr_sql(chr(34) + 't_facility' + chr(34))})",
        ))
    else:
        extra.append(("facility", "p_facility"))
    if span == 1:
        checks.append(('"date" <> p_lo', "printf('date %s does not match the file name date %s', \"t_date\", strftime(p_lo, '%Y%m%d'))"))
    elif span == 2:
        checks.append(('"date" NOT BETWEEN p_lo AND p_hi',
                       "printf('date %s is outside the file name dates %s..%s', \"t_date\", strftime(p_lo, '%Y%m%d'), strftime(p_hi, '%Y%m%d'))"))
    exempt = '"short_exempt_volume"' if "short_exempt_volume" in index else None
    return Spec(
        relation=lines_relation(index, ",", fids),
        cols=cols,
        ncols=ncols,
        count_error="expected %d comma-separated fields, found %d",
        date_col="date",
        key=("date", "symbol", "facility"),
        key_labels=_KEY_LABELS,
        file_checks=checks,
        extra=extra,
        rejects=date_rules(ctx, '"date"', "date", FIRST_FINRA_DATE, earliest_why=_FIRST_WHY)
        + _volume_rules('"short_volume"', exempt, '"total_volume"'),
    )


# --------------------------------------------------------------------------------------------------- write


# the stored rows per file name (``_History``'s count): counted per (source id, date) first, then named, not
# through the view (which would build a dated source's name once per row: ~150 ms of CPU per 2.5 million rows)
SOURCE_COUNTS = (
    "SELECT CASE WHEN s.dated THEN replace(s.source_file, '%Y%m%d', strftime(c.date, '%Y%m%d')) ELSE s.source_file END, "
    f"sum(c.n) FROM (SELECT source_id, date, count(*) AS n FROM {FINRA_SHORT_ROWS} GROUP BY ALL) c "
    f"JOIN {FINRA_SHORT_SOURCES} s ON s.source_id = c.source_id GROUP BY 1")


def plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    """finra_short_daily is a view (``optimizer.data.store._finra_short_sources``): the rows go to finra_short_rows
    with the source id of their (facility, file name), registered in finra_short_sources in the same transaction
    when new; the DELETE reads the facility of the stored rows through their source ids. A raw file whose name
    holds its date once (``CNMSshvol20200102.txt``; every row carries that date) is stored under the name's pattern
    (``CNMSshvol%Y%m%d.txt``, ``dated``): one source for every day's file of a family, none to add per file."""
    names = {c.name for c in sp.cols}
    raw_layout = sig[0] == "raw"
    short, total = ('"shortvolume"', '"totalvolume"') if raw_layout else ('"short_volume"', '"total_volume"')
    exempt = '"shortexemptvolume"' if "shortexemptvolume" in names else ('"short_exempt_volume"' if "short_exempt_volume" in names else None)
    exempt_out = f"CAST(floor({exempt} + 0.5) AS BIGINT)" if exempt else "CAST(NULL AS BIGINT)"
    market = '"market"' if "market" in names else "CAST(NULL AS VARCHAR)"
    name = Path(file).name
    if "facility" in names:  # a tidy file's own column: the facilities of its accepted rows
        facilities = sorted(str(f) for (f,) in ctx.con.execute(
            f"SELECT DISTINCT facility {accepted(table, fid)}").fetchall())
    else:
        facilities = [str(prep.params["p_facility"])]
    fdate, text = prep.params.get("p_date"), prep.params.get("p_date_text")
    dated = bool(raw_layout and fdate is not None and text and "%" not in name and name.count(str(text)) == 1)
    # (no '%' in the name: only the pattern's '%Y%m%d' is one)
    if dated:
        name = name.replace(str(text), "%Y%m%d")
    ids, new = ctx.source_ids(facilities, name, dated)
    if not ids:  # no accepted row
        source = "CAST(NULL AS INTEGER)"
    elif len(ids) == 1:
        source = str(next(iter(ids.values())))
    else:
        source = "CASE facility " + " ".join(f"WHEN {sql_str(f)} THEN {i}" for f, i in ids.items()) + " END"
    select = (f"SELECT \"date\", \"symbol\", {source}, {market}, CAST(floor({short} + 0.5) AS BIGINT), {exempt_out}, "
              f"CAST(floor({total} + 0.5) AS BIGINT) {accepted(table, fid)}")
    before = [f"INSERT INTO {FINRA_SHORT_SOURCES} VALUES " + ", ".join(
        f"({i}, {sql_str(f)}, {sql_str(n)}, {str(d).lower()})" for f, n, d, i in new)] if new else []
    if raw_layout and fdate is not None:
        delete = (f"DELETE FROM {FINRA_SHORT_ROWS} WHERE date = DATE '{fdate}' AND source_id IN (SELECT source_id FROM "
                  f"{FINRA_SHORT_SOURCES} WHERE facility = {sql_str(prep.params['p_facility'])})")
    else:  # every (date, facility) the file holds, rejected rows included; API rows per (date, symbol): a FINRA
        # Query API file holds only the symbols its query asked for (`fetch finra-api --symbols`)
        delete = (f"DELETE FROM {FINRA_SHORT_ROWS} AS t USING {FINRA_SHORT_SOURCES} AS s, (SELECT DISTINCT \"date\", "
                  "facility, facility = 'API' AS by_symbol, CASE WHEN facility = 'API' THEN \"symbol\" END AS symbol "
                  f"FROM {table} WHERE _fid = {int(fid)}) AS k "
                  "WHERE s.source_id = t.source_id AND t.date = k.date AND s.facility = k.facility "
                  "AND (NOT k.by_symbol OR t.symbol = k.symbol)")
    return Plan(FINRA_SHORT_ROWS, _STORED, select, delete, s.n_rows, s.n_rejects, s.first_reject,
                rejects_sql(sp, table, fid), before_write=before,
                fresh=("date", fdate) if raw_layout and fdate is not None else None,
                lost_id="source_id", source_names=ctx.source_names, new_sources=new)
