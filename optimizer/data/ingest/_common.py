"""The one place the ingest rules live: DuckDB SQL over a staged file, and the atomic write.

Files are read in batches: each file is staged (``_source``) as its physical lines with its number ``_fid``
in the batch (or, a raw FINRA file proven regular, handed to DuckDB's CSV reader: :func:`csv_relation`), and its
header / trailer are checked in Python by its parser (one module per kind), which gives a layout signature and
per-file values (``_ing_files``: p_date, p_facility, p_last, ...). Files with the same layout are validated
TOGETHER by one SQL statement (planning a statement costs more than running it on a small file), and still written
one transaction per file:

1. :func:`stage_rows` builds the group's rows table: per data row its file, line number, the typed values,
   ``_ferr`` (the FORMAT error of the row: wrong field count, a value that is not a date / number, a
   file-level consistency rule such as the file-name date) and ``_reason`` (the first INVARIANT the row
   breaks: negative volume, low > high, a date that is not an NYSE session, ...). Symbols are canonicalized
   (``optimizer.data.symbols``: a SQL fast path for the plain ``[A-Z0-9]`` symbols, the Python definition for
   the few others) and the symbol map is applied, both before the invariants.
2. :func:`summarize` reads one aggregate per file: the first format error (by line) fails that whole file with
   ``file:line: reason`` (nothing of it is written); duplicate keys are marked; the counts decide the status.
3. :func:`write_rows` applies one file in the caller's ONE transaction: delete the covered keys, insert the
   accepted rows, the rejects (``ingest_rejects``: line, reason, raw text) and the ``ingest_log`` row.

The staging tables (``_ing_lines``, ``_ing_files``, the rows tables) are created unqualified in the in-memory
staging database that ``optimizer.data.ingest._Pipeline`` puts first on the search path of its two connections
(the staging one creates and validates them, the writing one reads them).

Line numbers are 1-based physical lines of the (decompressed) file, the header being line 1. For JSON inputs
the "line" is the 1-based record index; for Parquet the 1-based row index.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import QUOTE_MAX, InputFileError, quoted
from optimizer.data.calendar import nyse_sessions
from optimizer.data.symbols import PLAIN_SYMBOL_SQL_RE, _canon, symbol_map_case_sql

__all__ = [
    "Col",
    "Ctx",
    "Prep",
    "Spec",
    "Plan",
    "Summary",
    "FILES",
    "PARAMS",
    "EARLIEST_DATE",
    "MAX_VOLUME",
    "sha256_bytes",
    "sql_str",
    "quoted",
    "load_json",
    "repr_sql",
    "split_sql",
    "lines_relation",
    "csv_relation",
    "frame_relation",
    "csv_header",
    "unread_warnings",
    "stage_rows",
    "date_rules",
    "summarize",
    "rejects_sql",
    "accepted",
    "write_rows",
    "REPLACED_PREFIX",
    "log_failure",
    "name_date",
    "name_dates",
    "table_types",
]

FILES = "_ing_files"
# per-file values a layout's SQL may use (joined from _ing_files by _fid)
PARAMS: dict[str, str] = {
    "p_date": "DATE", "p_date_text": "VARCHAR", "p_lo": "DATE", "p_hi": "DATE", "p_facility": "VARCHAR", "p_last": "BIGINT",
}
EARLIEST_DATE = dt.date(1990, 1, 2)  # the NYSE calendar's first session in optimizer.data.calendar
MAX_VOLUME = 1e13  # shares (or contracts) in one day for one symbol: far above any real figure
DUP_LINES = 10  # a duplicate-key reason lists at most this many lines
_DELIMS = {",": "','", "|": "'|'", ";": "';'", "\t": "tab"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sql_str(s: object) -> str:
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def load_json(file: str, text: str) -> Any:
    """The JSON document of an input file; invalid JSON, or JSON nested deeper than Python's parser can follow
    (``[[[[...]]]]``: a RecursionError), is an InputFileError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(file, exc.lineno, f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputFileError(file, None, "invalid JSON (nested too deeply: arrays or objects inside each other more "
                                         "than ~1,000 levels)") from None


def repr_sql(e: str) -> str:
    """SQL giving :func:`quoted` of the string ``e``: Python's ``repr()`` (quotes, backslash and the usual control
    escapes) of its first ``QUOTE_MAX`` characters, then ``... (N characters)`` when it is longer."""
    cut = f"left({e}, {QUOTE_MAX})"
    esc = f"replace({cut}, '\\', '\\\\')"
    for code, rep in ((9, "\\t"), (10, "\\n"), (13, "\\r")):
        esc = f"replace({esc}, chr({code}), '{rep}')"
    more = f"CASE WHEN length({e}) > {QUOTE_MAX} THEN printf('... (%d characters)', length({e})) ELSE '' END"
    return (f"((CASE WHEN contains({cut}, '''') AND NOT contains({cut}, '\"') THEN '\"' || {esc} || '\"' "
            f"ELSE '''' || replace({esc}, '''', '\\''') || '''' END) || {more})")


@dataclass(frozen=True)
class Col:
    """One input column: its name in the rows table (``t_<name>`` holds the trimmed text), what it holds
    (``text``, ``upper`` (text in upper case), ``date``, ``number`` or ``symbol``), its label in messages, and
    whether an empty value is a format error (``required``) or NULL."""

    name: str
    kind: str
    label: str | None = None
    required: bool = True

    @property
    def lab(self) -> str:
        return self.label or self.name


@dataclass
class Prep:
    """One staged file as its parser saw it: the layout signature (files with the same one are validated by
    one statement), the per-file values (keys of PARAMS), and for JSON / Parquet inputs the staged frame
    (columns line, raw, t_<name>...; such a file is its own group)."""

    sig: tuple
    params: dict[str, object] = field(default_factory=dict)
    frame: pd.DataFrame | None = None
    data: object = None
    warnings: list[str] = field(default_factory=list)  # e.g. columns not read (unread_warnings), told once stored


@dataclass
class Spec:
    """How to validate a layout: the relation (columns _fid, line, _n, _q, t_<name>... plus the PARAMS), the
    columns, the expected field count and its message, the date the symbol map applies at, the file-level
    format checks, computed columns, the row invariants in order, the duplicate key and its labels."""

    relation: str
    cols: list[Col]
    ncols: int
    count_error: str
    date_col: str | None
    key: tuple[str, ...]
    key_labels: tuple[str, ...]
    file_checks: list[tuple[str, str]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    where: str | None = None
    reject_dups: bool = True
    keep: tuple[str, ...] = ()
    raw_in_rows: bool = False
    typed: dict[str, str] = field(default_factory=dict)  # column -> SQL replacing the generic typed expression
    # number columns the relation gives parsed (``_v_<name>``, no text: csv_relation); a row whose value there is not
    # finite is a format error worded only roughly: such a file must be read again by the line path to be told
    parsed: tuple[str, ...] = ()
    # a key column whose values are distinct within a file exactly when the key's are, in a file without a format
    # error (the other key columns then hold one value per file: a raw FINRA file's date and facility): the
    # duplicate count of summarize reads that one column
    dup_col: str | None = None


@dataclass
class Summary:
    n_rows: int = 0
    n_rejects: int = 0
    first_reject: tuple[int, str] | None = None
    error: InputFileError | None = None


@dataclass
class Plan:
    """How to write one validated file: the target table and columns, the SELECT of its accepted rows, the
    DELETE of the stored rows it replaces, statements to run first (inside the transaction), the SELECT
    (line, reason, raw) of its rejects, and ``fresh`` = (column, value) when every key the DELETE covers has
    that value in that column: a value above every stored one means there is nothing to delete (the DELETE,
    a scan of the growing table, is skipped; see :meth:`Ctx.nothing_stored`)."""

    table: str
    columns: list[str]
    select: str
    delete: str | None
    n_rows: int
    n_rejects: int
    first_reject: tuple[int, str] | None
    rejects: str | None
    before_write: list[str] = field(default_factory=list)
    fresh: tuple[str, object] | None = None
    # the table holds a source id, not the source's name: the column to return from the DELETE for the per-source
    # counts of write_rows' ``lost_by`` (with the row's ``date``), and each id's (name or dated pattern, dated)
    lost_id: str | None = None
    source_names: dict[int, tuple[str, bool]] | None = None
    # (facility, source_file, dated, source_id) sources this write registers (before_write inserts them): known to
    # the writer's Ctx once the file's transaction commits (Ctx.committed)
    new_sources: list[tuple[str, str, bool, int]] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def _session_bits(today: dt.date) -> str:
    """:meth:`Ctx.session_bits` for ``today``, built once per process and day (~5 ms a call otherwise)."""
    days = np.asarray(nyse_sessions(EARLIEST_DATE, today), dtype="datetime64[D]")
    n = (np.datetime64(today, "D") - np.datetime64(EARLIEST_DATE, "D")).astype(int) + 1
    bits = np.zeros(int(n), dtype=np.uint8)
    bits[(days - np.datetime64(EARLIEST_DATE, "D")).astype(int)] = 1
    return "'" + "".join("1" if b else "0" for b in bits.tolist()) + "'::BIT"


class _SymbolMap:
    """A symbol map frame keyed by its content (hashable), for :func:`_map_case_sql`."""

    def __init__(self, smap: pd.DataFrame) -> None:
        self.smap = smap
        self.key = tuple(smap.itertuples(index=False, name=None))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SymbolMap) and self.key == other.key


@functools.lru_cache(maxsize=32)
def _map_case_sql(smap: _SymbolMap, symbol_sql: str, date_sql: str) -> str:
    """``symbol_map_case_sql`` cached per process by the map's content (~10 ms a call otherwise: every ingest
    call reads the map again and builds the same CASE)."""
    return symbol_map_case_sql(smap.smap, symbol_sql, date_sql)


@dataclass
class Ctx:
    """What one ``ingest_paths`` call shares across its files (read once)."""
    con: duckdb.DuckDBPyConnection
    settings: object
    limits: object
    symmap: pd.DataFrame
    today: dt.date  # New York's today (calendar.market_today)
    types: dict[str, dict[str, str]] = field(default_factory=dict)
    symcache: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    mapcache: dict[tuple[str, str], str] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)
    highs: dict[tuple[str, str], object] = field(default_factory=dict)
    # finra_short_sources: (facility, source_file, dated) -> source_id (read when first needed)
    sources: dict[tuple[str, str, bool], int] | None = None
    source_names: dict[int, tuple[str, bool]] = field(default_factory=dict)  # source_id -> (source_file, dated)
    next_source: int = 0  # the next free source_id

    def source_ids(self, facilities: Sequence[str], name: str, dated: bool = False
                   ) -> tuple[dict[str, int], list[tuple[str, str, bool, int]]]:
        """The finra_short_sources id of each (facility, ``name``) (``dated``: ``name`` is the pattern of the file
        names, ``%Y%m%d`` standing for the rows' date) (read once per call, then kept by this Ctx's writes); the sources
        not stored yet get new ids, returned as the rows to insert with the file's rows."""
        if self.sources is None:
            self.sources = {}
            for sid, fac, src, d in self.con.execute(
                    "SELECT source_id, facility, source_file, dated FROM finra_short_sources").fetchall():
                self.sources[(str(fac), str(src), bool(d))] = int(sid)
                self.source_names[int(sid)] = (str(src), bool(d))
            self.next_source = max(self.source_names, default=0) + 1
        ids, new = {}, []
        for fac in facilities:
            sid = self.sources.get((fac, name, dated))
            if sid is None:
                sid, self.next_source = self.next_source, self.next_source + 1
                new.append((fac, name, dated, sid))
            ids[fac] = sid
        return ids, new

    def committed(self, plan: "Plan") -> None:
        """``plan``'s transaction committed: the sources it registered are stored (a rolled-back file's new ids are
        never used again, so a later file of that name registers its own)."""
        for fac, name, dated, sid in plan.new_sources:
            self.sources[(fac, name, dated)] = sid
            self.source_names[sid] = (name, dated)

    def nothing_stored(self, plan: "Plan") -> bool:
        """True when ``plan.fresh`` proves that no stored row matches the plan's DELETE: its value is above the
        largest value of its column in the table (read once per call, then raised by each write)."""
        if plan.fresh is None:
            return False
        col, value = plan.fresh
        key = (plan.table, col)
        if key not in self.highs:
            self.highs[key] = self.con.execute(f'SELECT max("{col}") FROM {plan.table}').fetchone()[0]
        high = self.highs[key]
        return value is not None and (high is None or value > high)

    def wrote(self, plan: "Plan") -> None:
        """Raise the remembered largest value after ``plan`` is written (a rollback leaves it higher than the
        table's: only ever a DELETE run that was not needed)."""
        if plan.fresh is not None and plan.fresh[1] is not None:
            key = (plan.table, plan.fresh[0])
            if key in self.highs:
                high = self.highs[key]
                self.highs[key] = plan.fresh[1] if high is None or plan.fresh[1] > high else high

    def types_of(self, table: str) -> dict[str, str]:
        if table not in self.types:
            self.types[table] = table_types(self.con, table)
        return self.types[table]

    def session_bits(self) -> str:
        """A BIT literal: bit i is 1 when EARLIEST_DATE + i days is an NYSE session (up to today)."""
        return _session_bits(self.today)

    def ensure_sessions(self) -> None:
        """Kept for the parsers' call sites: the session calendar is :meth:`session_bits`."""
        self.session_bits()

    def map_sql(self, symbol_sql: str, date_sql: str) -> str:
        k = (symbol_sql, date_sql)
        if k not in self.mapcache:
            self.mapcache[k] = _map_case_sql(_SymbolMap(self.symmap), symbol_sql, date_sql)
        return self.mapcache[k]

    def register(self, name: str, obj: object) -> None:
        self.con.register(name, obj)
        self.registered.append(name)

    def unregister(self, name: str) -> None:
        if name in self.registered:
            self.registered.remove(name)
            self.con.unregister(name)

    def unregister_all(self) -> None:
        while self.registered:
            self.unregister(self.registered[-1])


# --------------------------------------------------------------------------------------------------- relations


def split_sql(expr: str, delim: str) -> str:
    """The fields of a line: ``string_split`` for '|' (no quoting in FINRA files); for ',' a CSV split that
    honours double-quoted fields (``"B,Q,N"``, ``""`` inside quotes) on lines that contain a quote."""
    if delim != ",":
        return f"string_split({expr}, {sql_str(delim)})"
    rx = r'("(?:[^"]|"")*"|[^,"]*)(?:,|$)'
    quoted = (f"list_transform(CASE WHEN ends_with({expr}, ',') THEN regexp_extract_all({expr}, {sql_str(rx)}, 1) "
              f"ELSE regexp_extract_all({expr}, {sql_str(rx)}, 1)[:-2] END, "
              "lambda x: CASE WHEN length(x) >= 2 AND starts_with(x, '\"') AND ends_with(x, '\"') "
              "THEN replace(x[2:-2], '\"\"', '\"') ELSE x END)")
    return f"(CASE WHEN contains({expr}, '\"') THEN {quoted} ELSE string_split({expr}, ',') END)"


def _fid_list(fids: Sequence[int]) -> str:
    return ", ".join(str(int(f)) for f in fids)


def lines_relation(index: dict[str, int], delim: str, fids: Sequence[int], *, trailer: bool = False) -> str:
    """SQL relation over the staged lines of files ``fids`` after their header (line 1) and, with ``trailer``,
    before their last line (``p_last``): _fid, line, _n (field count), _q (an unterminated quote), the trimmed
    text ``t_<name>`` of each column of ``index`` (name -> 0-based field position), and the PARAMS."""
    cols = ", ".join(f'f[{i + 1}] AS "t_{n}"' for n, i in index.items())
    q = "(length(l) - length(replace(l, '\"', ''))) % 2 = 1" if delim == "," else "false"
    last = " AND s.line < p.p_last" if trailer else ""
    # fields are trimmed of spaces; only lines holding a space or tab pay for it
    split = (f"CASE WHEN contains(l, ' ') OR contains(l, chr(9)) THEN list_transform({split_sql('l', delim)}, "
             f"lambda x: trim(x, ' ' || chr(9))) ELSE {split_sql('l', delim)} END")
    return (f"(SELECT s._fid, s.line, len(f) AS _n, {q} AS _q, {cols}, p.* EXCLUDE (_fid) "
            f"FROM (SELECT _fid, line, l, {split} AS f FROM _ing_lines "
            f"WHERE _fid IN ({_fid_list(fids)}) AND line > 1) s "
            f"JOIN {FILES} p ON p._fid = s._fid{last})")


def csv_relation(index: dict[str, int], names: Sequence[str], delim: str, files: Sequence[tuple[int, str, int, int]],
                 parsed: Sequence[str] = ()) -> str:
    """The relation :func:`lines_relation` gives, read by DuckDB's CSV reader from fast-path files
    (``_source.probe_delimited``): ``files`` = (fid, path of the in-memory file holding its data lines, number of
    data lines, the row of its first one there: ``_source.MemFiles``), ``names`` the header's field names in order,
    ``index`` as in :func:`lines_relation`. The number columns ``parsed`` are read as DOUBLE by the reader (the cast
    ``TRY_CAST(.. AS DOUBLE)`` is), given as ``_v_<name>`` (NULL when empty) instead of their text
    (:attr:`Spec.parsed`); a value the cast refuses fails the statement. Line numbers: the reader returns a file's
    rows in file order (DuckDB preserves insertion order), so row r belongs to the file whose rows start at the
    largest first <= r (a binary search in SQL), as its data line r - first + 1, physical line that + 1. The probe
    proved every data line holds ``len(names)`` fields, no quote and nothing to trim; an empty text field is ''
    (``force_not_null``), as the line path's split gives."""
    cols = {f"c{i}": n for i, n in enumerate(names)}
    types = ", ".join(f"'{c}': '{'DOUBLE' if n in parsed else 'VARCHAR'}'" for c, n in cols.items())
    text = [c for c, n in cols.items() if n not in parsed]
    fields = ", ".join(f'c."c{i}" AS "{_num_value_name(n) if n in parsed else "t_" + n}"' for n, i in index.items())
    by_path: dict[str, list[tuple[int, int]]] = {}
    for fid, path, _rows, first in files:
        by_path.setdefault(path, []).append((int(first), int(fid)))
    parts = []
    for path, got in by_path.items():
        got.sort()
        firsts, fids = [f for f, _ in got], [i for _, i in got]

        def which(lo: int, hi: int) -> str:  # the index of the file holding row _r, among got[lo..hi]
            if lo == hi:
                return str(lo + 1)
            mid = (lo + hi + 1) // 2
            return f"CASE WHEN _r < {firsts[mid]} THEN {which(lo, mid - 1)} ELSE {which(mid, hi)} END"
        reader = (f"read_csv({sql_str(path)}, delim={sql_str(delim)}, header=false, auto_detect=false, quote='', "
                  f"escape='', comment='', null_padding=false, strict_mode=true, columns={{{types}}}, "
                  f"force_not_null=[{', '.join(sql_str(c) for c in text)}])")
        parts.append(f"SELECT CAST([{', '.join(map(str, fids))}][_k] AS BIGINT) AS _fid, "
                     f"CAST(_r - [{', '.join(map(str, firsts))}][_k] + 2 AS BIGINT) AS line, * EXCLUDE (_k, _r) "
                     f"FROM (SELECT {which(0, len(got) - 1)} AS _k, * "
                     f"FROM (SELECT row_number() OVER () AS _r, * FROM {reader}))")
    return (f"(SELECT c._fid, c.line, CAST({len(names)} AS BIGINT) AS _n, false AS _q, {fields}, p.* EXCLUDE (_fid) "
            f"FROM ({' UNION ALL '.join(parts)}) c JOIN {FILES} p ON p._fid = c._fid)")


def frame_relation(ctx: Ctx, fid: int, frame: pd.DataFrame, ncols: int) -> str:
    """Register ``frame`` (columns line, raw, t_<name> as str) of file ``fid`` as a relation like
    :func:`lines_relation` (plus ``raw``)."""
    name = f"_ing_frame_{int(fid)}"
    ctx.register(name, frame)
    cols = ", ".join(f'CAST(f."{c}" AS VARCHAR) AS "{c}"' if c.startswith("t_") else f'f."{c}"'
                     for c in frame.columns if c not in ("line", "raw"))
    return (f"(SELECT CAST({int(fid)} AS BIGINT) AS _fid, CAST(f.line AS BIGINT) AS line, {int(ncols)} AS _n, false AS _q, "
            f"CAST(f.raw AS VARCHAR) AS raw, {cols}, p.* EXCLUDE (_fid) FROM {name} f JOIN {FILES} p ON p._fid = {int(fid)})")


def csv_header(
    file: str,
    header_line: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    unread: list[str] | None = None,
) -> tuple[dict[str, int], int]:
    """The header of a comma-separated file: ({column name: field position} of the wanted columns, field count).

    Names are matched case-insensitively (quotes and spaces stripped); ``aliases`` maps an alternative name to
    the canonical one. InputFileError for a wrong delimiter, a missing or duplicate column. ``unread`` (a list)
    receives the names of the columns that are neither required nor optional (see :func:`unread_warnings`)."""
    import csv

    if not header_line.strip():
        raise InputFileError(file, 1, f"empty file: expected a header with columns {','.join(required)}")
    names = [h.strip().strip('"').strip().lower() for h in next(csv.reader([header_line]))]
    aliases = aliases or {}
    names = [aliases.get(n, n) for n in names]
    if len(names) == 1 and required and len(required) > 1:
        for d, label in _DELIMS.items():
            if d != "," and d in header_line:
                raise InputFileError(file, 1, f"wrong delimiter: expected ',' between columns, found {label}")
    missing = [c for c in required if c not in names]
    if missing:
        has = ",".join(names)
        has = has if len(has) <= 300 else f"{has[:300]}... ({len(has)} characters)"  # a header of real names is shorter
        raise InputFileError(file, 1, f"missing column {missing[0]!r} (header has: {has})")
    dups = sorted({n for n in names if names.count(n) > 1 and n in required + optional})
    if dups:
        raise InputFileError(file, 1, f"duplicate column {dups[0]!r} in header")
    if unread is not None:
        unread.extend(n for n in names if n not in required + optional)
    return {n: i for i, n in enumerate(names) if n in required + optional}, len(names)


def unread_warnings(kind: str, file: str, unread: Sequence[str], known: Sequence[str] = (),
                    what: str = "column") -> list[str]:
    """The warning of a file whose columns (or JSON record fields) ``unread`` the kind does not read, leaving out the
    ``known`` ones (documented vendor fields the kind has no use for): what a column says is never dropped silently
    (a ``side`` the parser does not know, an ``adj_close`` beside an unadjusted ``close``). Names lower case."""
    known_l = {k.lower() for k in known}
    left = list(dict.fromkeys(n for n in unread if n.lower() not in known_l))
    if not left:
        return []
    shown = ", ".join(repr(n) for n in left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
    return [f"{kind}: {Path(file).name}: {what}{'s' if len(left) > 1 else ''} {shown} not read: stored without "
            f"{'them' if len(left) > 1 else 'it'} (docs/DATA.md lists the {what}s each kind reads)"]


# --------------------------------------------------------------------------------------------------- rules


def _typed(c: Col) -> str:
    t = f'"t_{c.name}"'
    if c.kind == "date":
        return (f"CAST(CASE length({t}) WHEN 10 THEN CASE WHEN regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') "
                f"THEN TRY_STRPTIME({t}, '%Y-%m-%d') END "
                f"WHEN 8 THEN CASE WHEN regexp_full_match({t}, '[0-9]{{8}}') THEN TRY_STRPTIME({t}, '%Y%m%d') END END AS DATE)")
    if c.kind == "number":  # thousands separators allowed; no '_' (DuckDB would accept 1_000); finite only
        v = f'"{_num_value(c)}"'  # the parsed value, computed once a layer below (stage_rows)
        return f"(CASE WHEN NOT contains({t}, '_') AND isfinite({v}) THEN {v} END)"
    if c.kind == "symbol":
        return f"(CASE WHEN regexp_full_match({t}, '{PLAIN_SYMBOL_SQL_RE}') THEN {t} END)"
    if c.kind == "upper":
        return f"NULLIF(upper({t}), '')"
    return f"NULLIF({t}, '')"


def _num_value(c: Col) -> str:
    """The column of the rows relation holding a number column's parsed value (before the '_' / finite rules)."""
    return _num_value_name(c.name)


def _num_value_name(name: str) -> str:
    return f"_v_{name}"


# a number with thousands separators: commas only between groups of three digits (1,234.5); a decimal comma
# (10,5), or a comma anywhere else, is not a number (it was dropped wherever it stood: "0,99" read 99)
_GROUPED_SQL_RE = r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?"


def _num_value_sql(c: Col) -> str:
    t = f'"t_{c.name}"'
    return (f"coalesce(TRY_CAST({t} AS DOUBLE), CASE WHEN contains({t}, ',') AND regexp_full_match({t}, "
            f"{sql_str(_GROUPED_SQL_RE)}) THEN TRY_CAST(replace({t}, ',', '') AS DOUBLE) END)")


def _pat(s: str) -> str:
    """``s`` escaped for use inside a printf pattern literal."""
    return s.replace("'", "''").replace("%", "%%")


def _format_checks(c: Col) -> list[tuple[str, str]]:
    t, v = f'"t_{c.name}"', f'"{c.name}"'
    lab = _pat(c.lab)
    if c.kind == "date":
        if not c.required:
            return [(f"{t} <> '' AND {v} IS NULL", f"printf('unparseable {lab} %s (expected YYYY-MM-DD or YYYYMMDD)', {repr_sql(t)})")]
        return [(f"{v} IS NULL", f"printf('unparseable {lab} %s (expected YYYY-MM-DD or YYYYMMDD)', {repr_sql(t)})")]
    if c.kind == "number":
        out = []
        if c.required:
            out.append((f"{t} = ''", sql_str(f"missing {c.lab} value")))
        # one test per row for both messages (every row of a file runs through the whole chain of checks); the
        # value's quoted form written once (each copy of repr_sql's expression costs DuckDB ~1 ms to plan)
        out.append((f"{t} <> '' AND {v} IS NULL",
                    f"printf('non-numeric {lab} %s%s', {repr_sql(t)}, CASE WHEN contains({t}, ',') THEN ' (a comma "
                    f"is read only as a thousands separator, as in 1,234.5)' ELSE '' END)"))
        return out
    if c.kind in ("text", "upper") and c.required:
        return [(f"{t} = ''", sql_str(f"missing {c.lab} value"))]
    return []


def _case(branches: Sequence[tuple[str, str]]) -> str:
    if not branches:
        return "CAST(NULL AS VARCHAR)"
    return "(CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r in branches) + " END)"


def date_rules(ctx: Ctx, d: str, label: str, earliest: dt.date, *, session: bool = True,
               earliest_why: str = "the first date the NYSE calendar covers") -> list[tuple[str, str]]:
    """(condition, reason) SQL pairs refusing a date before ``earliest``, after today, or (``session``) not an
    NYSE session (a lookup in :meth:`Ctx.session_bits`)."""
    ds = f"strftime({d}, '%Y-%m-%d')"
    today = ctx.today
    rules = [
        (f"{d} < DATE '{max(earliest, EARLIEST_DATE)}'", f"printf('{label} %s is before {earliest}, {earliest_why}', {ds})"),
        (f"{d} > DATE '{today}'", f"printf('{label} %s is in the future (today in New York is {today})', {ds})"),
    ]
    if session:
        idx = f"CAST(date_diff('day', DATE '{EARLIEST_DATE}', {d}) AS INTEGER)"
        rules.append((
            f"get_bit({ctx.session_bits()}, {idx}) = 0",
            f"printf('{label} %s is not an NYSE session (%s)', {ds}, "
            f"CASE WHEN isodow({d}) >= 6 THEN dayname({d}) ELSE 'holiday' END)",
        ))
    return rules


def stage_rows(ctx: Ctx, spec: Spec, table: str) -> None:
    """Build the rows table ``table`` of a group of files from ``spec`` (module doc)."""
    con = ctx.con
    cols = spec.cols
    parsed = [c for c in cols if c.name in spec.parsed]
    typed = [f'{spec.typed.get(c.name) or (_parsed_typed(c) if c in parsed else _typed(c))} AS "{c.name}"' for c in cols]
    checks: list[tuple[str, str]] = [
        ("_q", sql_str("unterminated quoted field (a quoted value spanning lines is not supported)")),
        (f"_n <> {int(spec.ncols)}", f"printf({sql_str(spec.count_error)}, {int(spec.ncols)}, _n)"),
    ]
    for c in cols:
        checks += _parsed_checks(c) if c in parsed else _format_checks(c)
    checks += list(spec.file_checks)
    sym = next((c.name for c in cols if c.kind == "symbol"), None)
    extras = "".join(f', {e} AS "{n}"' for n, e in spec.extra)
    where = f" WHERE {spec.where}" if spec.where else ""
    drop = [f"t_{c.name}" for c in cols if c.kind != "symbol" and c.name not in spec.keep and c not in parsed]
    drop += list(PARAMS) + [_num_value(c) for c in parsed]
    # a number's parsed value is used twice by its typed expression: computed once, in a layer of its own
    nums = [c for c in cols if c.kind == "number" and c.name not in spec.typed and c not in parsed]
    drop += [_num_value(c) for c in nums]
    drop_sql = ", ".join(f'"{d}"' for d in drop)
    rel = spec.relation
    if nums:
        values = ", ".join(f'{_num_value_sql(c)} AS "{_num_value(c)}"' for c in nums)
        rel = f"(SELECT *, {values} FROM {rel})"
    inner = f"SELECT *, {', '.join(typed)}{extras} FROM {rel}{where}"
    if sym is not None:
        sym_ref = '"' + sym + '"'
        date_ref = '"' + spec.date_col + '"' if spec.date_col else "NULL"
        middle = f'SELECT * EXCLUDE ("{sym}"), {ctx.map_sql(sym_ref, date_ref)} AS "{sym}", {_case(checks)} AS _ferr0 FROM ({inner})'
    else:
        middle = f"SELECT *, {_case(checks)} AS _ferr0 FROM ({inner})"
    # what the rows table keeps is what the writer and _fix_symbols read: not the field count and quote flag, and the
    # symbol's text only where the SQL fast path left the symbol NULL (each column kept costs ~0.03 s a million rows)
    keep_text = f', CASE WHEN "{sym}" IS NULL THEN "t_{sym}" END AS "t_{sym}"' if sym is not None else ""
    if sym is not None:
        drop_sql += f', "t_{sym}"'
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS "
        f"SELECT * EXCLUDE (_ferr0, _n, _q, {drop_sql}){keep_text}, _ferr0 AS _ferr, {_case(spec.rejects)} AS _reason "
        f"FROM ({middle})"
    )
    if sym is not None:
        _fix_symbols(ctx, table, sym, next(c.lab for c in cols if c.name == sym), spec.date_col)


def _parsed_typed(c: Col) -> str:
    """The typed value of a number column the relation gives parsed (:attr:`Spec.parsed`): as :func:`_typed` (the
    relation's reader refuses no '_': the fast path takes no file holding one)."""
    v = f'"{_num_value(c)}"'
    return f"(CASE WHEN isfinite({v}) THEN {v} END)"


def _parsed_checks(c: Col) -> list[tuple[str, str]]:
    """:func:`_format_checks` of a number column given parsed: empty is 'missing' as there; a value that is not
    finite is 'non-numeric' without the text (the fast path reads such a file again by the line path, which
    quotes it)."""
    v = f'"{_num_value(c)}"'
    out = [(f"{v} IS NULL", sql_str(f"missing {c.lab} value"))] if c.required else []
    return out + [(f"{v} IS NOT NULL AND NOT isfinite({v})", sql_str(f"non-numeric {c.lab} (not finite)"))]


def _fix_symbols(ctx: Ctx, table: str, sym: str, label: str, date_col: str | None) -> None:
    """Canonicalize the symbols the SQL fast path left NULL (the Python definition, cached per call); a
    symbol that is not valid makes its row's reject reason (the first rule)."""
    con = ctx.con
    raws = [r[0] for r in con.execute(f'SELECT DISTINCT "t_{sym}" FROM {table} WHERE "{sym}" IS NULL').fetchall()]
    if not raws:
        return
    out = []
    for r in raws:
        if r not in ctx.symcache:
            ctx.symcache[r] = _canon(r)
        out.append((r, *ctx.symcache[r]))
    frame = pd.DataFrame(out, columns=["raw", "canon", "problem"]).astype(object)
    if label != "symbol":
        frame["problem"] = frame["problem"].replace("empty symbol", f"empty {label}")
    ctx.register("_ing_symfix", frame)
    try:
        mapped = ctx.map_sql("CAST(x.canon AS VARCHAR)", f'r."{date_col}"' if date_col else "NULL")
        con.execute(
            f'UPDATE {table} AS r SET "{sym}" = {mapped}, '
            f"_reason = CASE WHEN x.problem IS NOT NULL THEN CAST(x.problem AS VARCHAR) ELSE r._reason END "
            f'FROM _ing_symfix x WHERE r."{sym}" IS NULL AND r."t_{sym}" = CAST(x.raw AS VARCHAR)'
        )
    finally:
        ctx.unregister("_ing_symfix")


def summarize(ctx: Ctx, spec: Spec, table: str, files: dict[int, str]) -> dict[int, Summary]:
    """Per file of the group: its first format error (the file fails), else duplicate keys marked and the
    counts of accepted and rejected rows with the first reject."""
    con = ctx.con
    kexpr = ", ".join(f'"{k}"' for k in spec.key)
    out = {fid: Summary() for fid in files}
    dup_fids = []
    # duplicates: distinct key HASHES first (cheap); equal counts prove there is no duplicate key, fewer trigger
    # the exact check below (a hash collision only costs that check)
    if spec.dup_col is not None:  # NULL is one value, as in a key: hash() of it is one
        d = f'"{spec.dup_col}"'
        n_dup_sql = f"count(*) - count(DISTINCT {d}) - CASE WHEN count({d}) < count(*) THEN 1 ELSE 0 END"
    else:
        n_dup_sql = f"count(*) - count(DISTINCT hash({kexpr}))"
    for fid, ferr_line, ferr, n, n_rej, n_dup in con.execute(
        f"SELECT _fid, min(line) FILTER (WHERE _ferr IS NOT NULL), arg_min(_ferr, line) FILTER (WHERE _ferr IS NOT NULL), "
        f"count(*), count(_reason), {n_dup_sql} FROM {table} GROUP BY _fid"
    ).fetchall():
        s = out[int(fid)]
        s.n_rows = int(n)
        if ferr_line is not None:
            s.error = InputFileError(files[int(fid)], int(ferr_line), str(ferr))
            continue
        s.n_rejects = int(n_rej)
        if spec.reject_dups and n_dup:
            exact = con.execute(f"SELECT count(*) - count(DISTINCT ({kexpr})) FROM {table} WHERE _fid = {int(fid)}").fetchall()[0][0]
            if exact:
                dup_fids.append(int(fid))
    if dup_fids:
        parts = [f"strftime(r.\"{k}\", '%Y-%m-%d')" if _is_date(con, table, k) else f'CAST(r."{k}" AS VARCHAR)' for k in spec.key]
        kv = " || ', ' || ".join(parts)
        on = " AND ".join(["d._fid = r._fid"] + [f'd."{k}" IS NOT DISTINCT FROM r."{k}"' for k in spec.key])
        # the lines of a duplicated key, at most DUP_LINES of them (a file of 40,000 copies of one row must not
        # produce 40,000 reasons listing 40,000 lines each)
        lines = (f"CASE WHEN count(*) > {DUP_LINES} THEN array_to_string(list(line ORDER BY line)[1:{DUP_LINES}], ',') "
                 f"|| printf(',... (%d lines)', count(*)) ELSE array_to_string(list(line ORDER BY line), ',') END")
        con.execute(
            f"UPDATE {table} AS r SET _reason = printf('duplicate key ({', '.join(spec.key_labels)}) = (%s) on lines %s', {kv}, d.lines) "
            f"FROM (SELECT _fid, {kexpr}, {lines} AS lines FROM {table} "
            f"WHERE _fid IN ({_fid_list(dup_fids)}) GROUP BY _fid, {kexpr} HAVING count(*) > 1) d WHERE {on} AND r._reason IS NULL"
        )
    rej_fids = [f for f, s in out.items() if s.error is None and (s.n_rejects or f in dup_fids)]
    if rej_fids:
        for fid, ln, reason, n_rej in con.execute(
            f"SELECT _fid, min(line), arg_min(_reason, line), count(*) FROM {table} "
            f"WHERE _reason IS NOT NULL AND _fid IN ({_fid_list(rej_fids)}) GROUP BY _fid"
        ).fetchall():
            s = out[int(fid)]
            s.n_rejects = int(n_rej)
            s.first_reject = (int(ln), str(reason))
    for s in out.values():
        s.n_rows -= s.n_rejects
    return out


def _is_date(con: duckdb.DuckDBPyConnection, table: str, col: str) -> bool:
    rows = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ?", [table, col]
    ).fetchall()
    return bool(rows) and rows[0][0] == "DATE"


def rejects_sql(spec: Spec, table: str, fid: int) -> str:
    """SELECT line, reason, raw of file ``fid``'s rejected rows (raw: the physical line, or the staged record)."""
    if spec.raw_in_rows:
        return f"SELECT line, _reason, raw FROM {table} WHERE _fid = {int(fid)} AND _reason IS NOT NULL ORDER BY line"
    return (f"SELECT r.line, r._reason, l.l FROM {table} r JOIN _ing_lines l ON l._fid = r._fid AND l.line = r.line "
            f"WHERE r._fid = {int(fid)} AND r._reason IS NOT NULL ORDER BY r.line")


def accepted(table: str, fid: int) -> str:
    """The WHERE of file ``fid``'s accepted rows."""
    return f"FROM {table} WHERE _fid = {int(fid)} AND _reason IS NULL"


# --------------------------------------------------------------------------------------------------- write


def table_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {str(n): str(t) for n, t in rows}


# the ingest_log message of a write that deleted stored rows starts with this (read back by the identical-file check
# of optimizer.data.ingest: a rejected_rows status does not say whether the write replaced rows, the message does)
REPLACED_PREFIX = "replaced "


def write_rows(ctx: Ctx, plan: Plan, *, file: str, sha256: str, kind: str,
               lost_by: str | None = None, deleted_before: int = 0) -> tuple[str, int, dict[str, int] | None]:
    """Apply ``plan`` (the caller holds the transaction); returns the status (ok / replaced / rejected_rows), the
    number of stored rows the write deleted and, with ``lost_by`` (a column of the table), how many of them each
    value of that column lost (else None). ``deleted_before``: rows the caller already deleted for this file in the
    transaction (an earlier reading's stale keys), counted in the status, the message and the returned count (not
    in the returned ``lost``)."""
    con = ctx.con
    for sql in plan.before_write:
        con.execute(sql)
    deleted = int(deleted_before)
    lost: dict[str, int] | None = {} if lost_by is not None else None
    if plan.delete and not ctx.nothing_stored(plan):
        if lost_by is not None and plan.lost_id:  # by source id and date: (name or pattern, dated) of each id
            gone = con.execute(f"{plan.delete} RETURNING {plan.lost_id}, date").fetchall()
            for (sid, day), n in collections.Counter(gone).items():
                src, dated = plan.source_names[int(sid)]
                name = src.replace("%Y%m%d", f"{day:%Y%m%d}") if dated else src
                lost[name] = lost.get(name, 0) + n
            deleted += len(gone)
        elif lost_by is not None:
            gone = con.execute(f"{plan.delete} RETURNING {lost_by}").fetchnumpy()[lost_by]
            values, counts = np.unique(np.asarray(gone, dtype=str), return_counts=True)
            lost = dict(zip(values.tolist(), counts.tolist()))
            deleted += len(gone)
        else:
            got = con.execute(plan.delete).fetchone()
            deleted += int(got[0]) if got else 0
    types = ctx.types_of(plan.table)
    cols = [c for c in plan.columns if c in types]
    con.execute(f"INSERT INTO {plan.table} ({', '.join(cols)}) {plan.select}")
    ctx.wrote(plan)
    status = "rejected_rows" if plan.n_rejects else ("replaced" if deleted else "ok")
    msg_parts = []
    if deleted:
        msg_parts.append(f"{REPLACED_PREFIX}{deleted} existing rows")
    if plan.n_rejects and plan.first_reject:
        ln, reason = plan.first_reject
        msg_parts.append(f"{plan.n_rejects} rows rejected, first {file}:{ln}: {reason}")
    msg = "; ".join(msg_parts) or None
    if plan.n_rejects:
        ingest_id = int(con.execute("SELECT nextval('ingest_log_seq')").fetchone()[0])
        con.execute(f"INSERT INTO ingest_rejects SELECT ?, ?, * FROM ({plan.rejects})", [ingest_id, file])
        con.execute(
            "INSERT INTO ingest_log (id, file, sha256, kind, rows_accepted, rows_rejected, status, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [ingest_id, file, sha256, kind, plan.n_rows, plan.n_rejects, status, msg],
        )
    else:
        con.execute(
            "INSERT INTO ingest_log (file, sha256, kind, rows_accepted, rows_rejected, status, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [file, sha256, kind, plan.n_rows, 0, status, msg],
        )
    return status, deleted, lost


def log_failure(con: duckdb.DuckDBPyConnection, *, file: str, sha256: str, kind: str, message: str) -> None:
    """Append a ``failed`` ingest_log row in its own small transaction (after the file's rollback)."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO ingest_log (file, sha256, kind, rows_accepted, rows_rejected, status, message) "
            "VALUES (?, ?, ?, 0, 0, 'failed', ?)",
            [file, sha256, kind, message],
        )
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------------------------------- names

_NAME_DATE = ((r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)", "%Y-%m-%d"), (r"(?<!\d)(\d{8})(?!\d)", "%Y%m%d"))


def name_dates(path: str | Path) -> list[pd.Timestamp]:
    """Every valid date in a file name, in order (``finra_api_regsho_20240102_20240131.csv`` -> two)."""
    name = Path(path).name
    found: list[tuple[int, pd.Timestamp]] = []
    for pat, fmt in _NAME_DATE:
        for m in re.finditer(pat, name):
            ts = pd.to_datetime(m.group(1), format=fmt, errors="coerce")
            if not pd.isna(ts):
                found.append((m.start(), pd.Timestamp(ts)))
    return [ts for _, ts in sorted(found, key=lambda x: x[0])]


def name_date(path: str | Path) -> pd.Timestamp | None:
    """The date in a file name: ``CNMSshvol20200102.txt`` or ``..._2020-01-02...``; None when absent or invalid."""
    return _name_date(Path(path).name)


@functools.lru_cache(maxsize=1 << 16)
def _name_date(name: str) -> pd.Timestamp | None:
    """:func:`name_date` of a name, once per process (pandas' parse costs ~0.4 ms; an ingest asks twice per file:
    to order the files, then to check a FINRA file's rows)."""
    for pat, fmt in _NAME_DATE:
        m = re.search(pat, name)
        if m:
            ts = pd.to_datetime(m.group(1), format=fmt, errors="coerce")
            if not pd.isna(ts):
                return pd.Timestamp(ts)
    return None
