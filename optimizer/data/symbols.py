"""Symbols: one canonical spelling per security, and ticker changes (one company's history is one series).

Canonical form (``canonical_symbol``; docs/DATA.md "Symbols"):

* Surrounding whitespace is dropped and letters are upper case: ``aapl`` -> ``AAPL``.
* Share classes and other suffixes are joined to the root with ``.``: ``BRK/B`` (FINRA), ``BRK-B`` (Yahoo),
  ``BRK.B`` (CQS, Polygon) and ``BRK B`` (CMS) are all ``BRK.B``; ``AACT/WS`` -> ``AACT.WS``.
* FINRA/CQS lower-case suffix markers after an upper-case root become CMS suffix codes, so they never collide
  with another security once upper-cased: ``p`` (preferred) -> ``.PR``, ``r`` (rights) -> ``.RT``, ``w``
  (when issued) -> ``.WI``: ``ABRpD`` -> ``ABR.PRD``, ``BCpC`` -> ``BC.PRC`` (not Balchem's ``BCPC``),
  ``ALLpA/CL`` -> ``ALL.PRA.CL``, ``RIVrw`` -> ``RIV.RTWI``.
* A leading ``^`` marks an index or indicator (``^VIX``, ``^GSPC``): market context only, never tradable.
* Refused (``symbol_problem`` gives the rule): an empty symbol, control characters, any character other than
  letters, digits, the separators ``. / - space`` (only BETWEEN two non-empty parts, so ``..``, ``/x`` and
  ``x/`` are refused) and a leading ``^``, and symbols longer than 24 characters. A canonical symbol therefore
  never contains ``/``, ``\\`` or ``..`` and is safe inside a file name.

The ``symbol_map`` table holds (old_symbol, new_symbol, effective_date): rows of ``old_symbol`` dated BEFORE
``effective_date`` (the first session traded under the new symbol) are stored under ``new_symbol``. The schema
seeds FB -> META effective 2022-06-09. The ingest applies the map to every kind of file (after
canonicalization); mappings are applied in effective-date order, so chains (A -> B, later B -> C) end at the
latest symbol.

``add_symbol_mapping`` also rewrites rows already in the raw tables (``rewrite_existing=True``), because
re-ingesting an identical file is a no-op and would not pick the new mapping up. The rewrite stores what a fresh
ingest with every mapping would, whatever the order the mappings were added in (the mappings dated after the new
one were already applied to the stored rows: ``_stored_as``); when that is not decidable from the stored rows (a
link added before an earlier-dated one whose rows it would share) the rewrite is refused, the store unchanged.
``remove_symbol_mapping`` only affects later ingests: rows already renamed keep the new symbol (re-ingest the raw
files to undo).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import DataError, ParameterError, quoted
from optimizer.data.calendar import DateLike
from optimizer.data.store import stored_in, transaction

__all__ = [
    "MAX_SYMBOL_LENGTH",
    "PLAIN_SYMBOL_SQL_RE",
    "canonical_symbol",
    "symbol_problem",
    "canonical_or_none",
    "is_context_symbol",
    "load_symbol_map",
    "apply_symbol_map",
    "symbol_map_case_sql",
    "add_symbol_mapping",
    "remove_symbol_mapping",
    "list_symbol_mappings",
    "unknown_symbols_message",
    "DATE_COLUMNS",
]

MAX_SYMBOL_LENGTH = 24
# A symbol that is already canonical and needs no work (the vast majority): SQL fast path of the ingest.
PLAIN_SYMBOL_SQL_RE = "[A-Z0-9]{1,%d}" % MAX_SYMBOL_LENGTH

_CQS_MARKERS = {"p": "PR", "r": "RT", "w": "WI"}
_CQS_RE = re.compile(r"^([A-Z0-9]+)([prw]+)([A-Z0-9]*)((?:[./\- ][A-Za-z0-9]+)*)$")
_ALLOWED = re.compile(r"[A-Za-z0-9./\- ]+")
_SEP = re.compile(r"[./\- ]")

# The date column each raw table is keyed by.
DATE_COLUMNS: dict[str, str] = {
    "finra_short_daily": "date",
    "prices_daily": "date",
    "finra_otc_weekly": "week_start_date",
    "lit_flow_daily": "date",
    "options_daily": "date",
    "splits": "ex_date",
}


def _canon(raw: object) -> tuple[str | None, str | None]:
    """(canonical symbol, None) or (None, the rule the symbol breaks)."""
    s = "" if raw is None else str(raw)
    s = s.strip()
    if not s:
        return None, "empty symbol"
    bad = next((ch for ch in s if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        return None, f"invalid symbol {quoted(s)}: control character U+{ord(bad):04X}"
    if len(s) > MAX_SYMBOL_LENGTH:
        return None, f"invalid symbol {s[:40]!r}: longer than {MAX_SYMBOL_LENGTH} characters"
    index = s.startswith("^")
    body = s[1:] if index else s
    if not body:
        return None, f"invalid symbol {s!r}: nothing after '^'"
    if not _ALLOWED.fullmatch(body):
        ch = next(c for c in body if not _ALLOWED.fullmatch(c))
        return None, (f"invalid symbol {s!r}: character {ch!r} (allowed: letters, digits, a leading '^' and "
                      "'.', '/', '-' or a space between two parts)")
    m = _CQS_RE.match(body)
    if m:
        root, marks, series, rest = m.groups()
        body = f"{root}.{''.join(_CQS_MARKERS[c] for c in marks)}{series}{rest}"
    parts = _SEP.split(body.upper())
    if any(not p for p in parts):
        return None, (f"invalid symbol {s!r}: empty part (a separator '.', '/', '-' or space must stand between "
                      "two letters or digits)")
    return ("^" if index else "") + ".".join(parts), None


def canonical_symbol(raw: object, name: str = "symbol") -> str:
    """The canonical spelling of ``raw`` (module doc); ParameterError naming the rule when it is not a symbol."""
    sym, why = _canon(raw)
    if sym is None:
        shown = quoted(raw) if isinstance(raw, str) else repr(raw)
        raise ParameterError(f"{name} must be a valid symbol, got {name}={shown} ({why})")
    return sym


def symbol_problem(raw: object) -> str | None:
    """The rule ``raw`` breaks as a symbol (the ingest's reject reason), or None when it is valid."""
    return _canon(raw)[1]


def canonical_or_none(raw: object) -> str | None:
    """The canonical symbol, or None when ``raw`` is not a valid symbol."""
    return _canon(raw)[0]


def is_context_symbol(symbol: str) -> bool:
    """Index and indicator symbols (``^VIX``, ``^GSPC``): market context, never part of a tradable universe."""
    return str(symbol).startswith("^")


def load_symbol_map(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The map as a frame (old_symbol, new_symbol, effective_date), in effective-date order."""
    df = con.execute(
        "SELECT old_symbol, new_symbol, effective_date FROM symbol_map ORDER BY effective_date, old_symbol"
    ).df()
    df["effective_date"] = pd.to_datetime(df["effective_date"])
    return df


def list_symbol_mappings(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Every mapping as dicts (old_symbol, new_symbol, effective_date as a date), in effective-date order."""
    rows = con.execute(
        "SELECT old_symbol, new_symbol, effective_date FROM symbol_map ORDER BY effective_date, old_symbol"
    ).fetchall()
    return [{"old_symbol": o, "new_symbol": n, "effective_date": d} for o, n, d in rows]


def apply_symbol_map(
    df: pd.DataFrame,
    con_or_map: duckdb.DuckDBPyConnection | pd.DataFrame,
    *,
    date_col: str = "date",
    symbol_col: str = "symbol",
) -> pd.DataFrame:
    """Return a copy of ``df`` with old symbols renamed for rows dated before each mapping's effective date."""
    smap = con_or_map if isinstance(con_or_map, pd.DataFrame) else load_symbol_map(con_or_map)
    out = df.copy()
    if not len(out) or not len(smap):
        return out
    sym = out[symbol_col].astype(object).to_numpy(copy=True)
    dates = pd.to_datetime(out[date_col]).to_numpy(dtype="datetime64[ns]")
    for old, new, eff in smap[["old_symbol", "new_symbol", "effective_date"]].itertuples(index=False):
        m = (sym == old) & (dates < np.datetime64(pd.Timestamp(eff), "ns"))
        if m.any():
            sym[m] = new
    out[symbol_col] = pd.Series(sym, index=out.index, dtype=out[symbol_col].dtype)
    return out


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def symbol_map_case_sql(smap: pd.DataFrame, symbol_sql: str, date_sql: str) -> str:
    """A SQL expression giving the mapped symbol of (``symbol_sql``, ``date_sql``): the same result as
    :func:`apply_symbol_map` (chains resolved in effective-date order), as one CASE over the map's intervals."""
    if not len(smap):
        return symbol_sql
    effs = sorted({pd.Timestamp(e) for e in smap["effective_date"]})
    olds = sorted(set(smap["old_symbol"]) | set(smap["new_symbol"]))
    # the map is piecewise constant in the date between effective dates: resolve one date per interval
    probes = [effs[0] - pd.Timedelta(days=1)] + effs
    frame = pd.DataFrame([(o, d) for o in olds for d in probes], columns=["symbol", "date"])
    resolved = apply_symbol_map(frame, smap)["symbol"].to_numpy()
    branches = []
    for (o, d), r in zip(frame.itertuples(index=False), resolved):
        if r == o:
            continue
        i = probes.index(d)
        lo = None if i == 0 else probes[i]
        hi = effs[i] if i < len(effs) else None
        cond = [f"{symbol_sql} = {_sql_str(o)}"]
        if lo is not None:
            cond.append(f"{date_sql} >= DATE '{lo.date()}'")
        if hi is not None:
            cond.append(f"{date_sql} < DATE '{hi.date()}'")
        branches.append(f"WHEN {' AND '.join(cond)} THEN {_sql_str(r)}")
    if not branches:
        return symbol_sql
    return f"(CASE {' '.join(branches)} ELSE {symbol_sql} END)"


def _eff_date(effective_date) -> object:
    try:
        ts = pd.Timestamp(effective_date)
    except (ValueError, TypeError):
        ts = pd.NaT
    if pd.isna(ts):
        raise ParameterError(f"effective_date must be a date (YYYY-MM-DD), got effective_date={effective_date!r}")
    return ts.date()


def add_symbol_mapping(
    con: duckdb.DuckDBPyConnection, old: str, new: str, effective_date: DateLike, *, rewrite_existing: bool = True
) -> int:
    """Add (or update) a mapping ``old -> new`` from ``effective_date``; returns the number of rows rewritten.

    Both symbols are canonicalized first (``brk/b`` -> ``BRK.B``). With ``rewrite_existing`` the raw tables'
    ``old`` rows dated before the date are renamed in the same transaction; if ``new`` already has a row at one
    of those keys the whole change is refused (DataError). The derived tables are not renamed (they are computed
    from the raw tables: ``accumopt metrics build``); :func:`derived_rows_of` tells what they still hold.
    The stored rows go where a fresh ingest with every mapping would put them (``_stored_as``); when the stored
    rows cannot be told apart (a chain link added before an earlier-dated one sharing its rows; a mapping changed
    to another new symbol after its rows were renamed) the change is refused (DataError naming why).
    """
    if not str(old or "").strip() or not str(new or "").strip():
        raise ParameterError(f"old and new symbols must be non-empty, got old={old!r}, new={new!r}")
    old, new = canonical_symbol(old, "old"), canonical_symbol(new, "new")
    if old == new:
        raise ParameterError(f"old and new symbols must differ, got old={old!r}, new={new!r}")
    eff = _eff_date(effective_date)
    rewritten = 0
    with transaction(con):
        prev = con.execute("SELECT new_symbol FROM symbol_map WHERE old_symbol = ? AND effective_date = ?",
                           [old, eff]).fetchone()
        con.execute(
            "INSERT INTO symbol_map VALUES (?, ?, ?) ON CONFLICT (old_symbol, effective_date) "
            "DO UPDATE SET new_symbol = excluded.new_symbol",
            [old, new, eff],
        )
        if rewrite_existing:
            smap = load_symbol_map(con)
            if prev is not None and prev[0] != new:  # old's rows were stored where the previous target put them
                was = _stored_as(smap, old, prev[0], eff)[1]
                for table, dcol in DATE_COLUMNS.items():
                    n = con.execute(f"SELECT count(*) FROM {table} WHERE symbol = ? AND {dcol} < ?",
                                    [was, eff]).fetchone()[0]
                    if n:
                        raise DataError(
                            f"cannot change {old} -> {prev[0]} from {eff} to {old} -> {new}: {table} holds {n} {was} "
                            f"rows before it, {old}'s renamed by the earlier mapping or {was}'s own, which cannot be "
                            "told apart; add the mapping with --no-rewrite (rewrite_existing=False: later ingests use "
                            "it) and ingest the raw files into a fresh store with these mappings")
            src, dst, others, later = _stored_as(smap, old, new, eff)
            for table, dcol in DATE_COLUMNS.items():
                if others:  # the stored src rows before the date are not all old's: refuse if there are any
                    n = con.execute(f"SELECT count(*) FROM {table} WHERE symbol = ? AND {dcol} < ?",
                                    [src, eff]).fetchone()[0]
                    if n:
                        raise DataError(
                            f"cannot rewrite the stored rows for {old} -> {new} before {eff}: a fresh ingest would "
                            f"store {old}'s rows before it as {dst}, but {table} holds {n} {src} rows before it that "
                            f"may also be {' or '.join(others)}'s (mapped by {', '.join(later)}), which a fresh ingest "
                            f"stores as {src}; add the mapping with --no-rewrite (rewrite_existing=False: later "
                            "ingests use it) and ingest the raw files into a fresh store with these mappings")
                keys = [c for c in _key_columns(con, table) if c not in ("symbol", dcol)]
                join = " AND ".join([f"n.{dcol} = o.{dcol}"] + [f"n.{k} = o.{k}" for k in keys])
                clash = con.execute(
                    f"SELECT count(*) FROM {table} o JOIN {table} n ON {join} "
                    f"WHERE o.symbol = ? AND n.symbol = ? AND o.{dcol} < ?",
                    [src, dst, eff],
                ).fetchone()[0]
                if clash:
                    raise DataError(
                        f"cannot map {old} -> {new} before {eff}: {table} already holds {clash} {dst} rows "
                        f"at the same keys as {src} rows"
                    )
                got = con.execute(  # finra_short_daily is a view: its rows are stored in finra_short_rows
                    f"UPDATE {stored_in(table)} SET symbol = ? WHERE symbol = ? AND {dcol} < ?", [dst, src, eff]
                ).fetchone()
                rewritten += int(got[0]) if got else 0
    return rewritten


def _stored_as(smap: pd.DataFrame, old: str, new: str, eff: object) -> tuple[str, str, list[str], list[str]]:
    """Where the stored rows of ``old`` before ``eff`` are and where a fresh ingest with the map ``smap`` (which
    holds old -> new at eff) puts them: (src, dst, others, later). The ingest applies the mappings in (effective
    date, old symbol) order, each to the rows dated before its date; so the mappings after this one in that order
    (``later``, all dated on or after ``eff``) have already been applied to the stored rows: ``old``'s rows before
    ``eff`` are stored as ``src`` (= later(old)) and belong as ``dst`` (= later(new)). ``others``: the symbols
    whose rows are also stored as ``src`` (later(z) = src), which a fresh ingest keeps as ``src``: with any, the
    stored ``src`` rows cannot be told apart and are not rewritten (a chain added out of date order: A -> B, then
    B -> C from an earlier date)."""
    ts = pd.Timestamp(eff)
    rows = list(smap[["old_symbol", "new_symbol", "effective_date"]].itertuples(index=False))
    after = [(o, n, pd.Timestamp(e)) for o, n, e in rows if (pd.Timestamp(e), o) > (ts, old)]

    def chain(s: str, used: list[str] | None = None) -> str:
        for o, n, e in after:
            if s == o:
                s = n
                if used is not None:
                    used.append(f"{o} -> {n} from {e.date()}")
        return s

    src, dst = chain(old), chain(new)
    cands = {o for o, _, _ in after} | {n for _, n, _ in after} | {src}
    others = sorted(z for z in cands if z != old and chain(z) == src)
    later: list[str] = []
    for z in others:
        chain(z, later)
    return src, dst, others, list(dict.fromkeys(later))


# tables built FROM the raw tables that a rename of stored raw rows leaves under the old name: daily_metrics and
# options_premium_daily until `accumopt metrics build`; scanner_daily_metrics (saved scans) until those dates are
# scanned again
DERIVED_DATED = {"daily_metrics": "date", "options_premium_daily": "date", "scanner_daily_metrics": "date"}


def derived_rows_of(con: duckdb.DuckDBPyConnection, old: str, effective_date: DateLike) -> dict[str, int]:
    """How many rows of ``old`` dated before ``effective_date`` each derived table (DERIVED_DATED) still holds
    (tables that do not exist or hold none are left out): what ``add_symbol_mapping`` does not rename."""
    sym, eff = canonical_symbol(old, "old"), _eff_date(effective_date)
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema()").fetchall()}
    out = {}
    for table, dcol in DERIVED_DATED.items():
        if table in have:
            n = int(con.execute(f"SELECT count(*) FROM {table} WHERE symbol = ? AND {dcol} < ?",
                                [sym, eff]).fetchone()[0])
            if n:
                out[table] = n
    return out


def remove_symbol_mapping(con: duckdb.DuckDBPyConnection, old: str, effective_date: DateLike | None = None) -> int:
    """Delete the mapping(s) of ``old`` (only the one at ``effective_date`` when given); returns how many.

    DataError when there is none. Rows already renamed in the raw tables keep their symbol."""
    sym = canonical_symbol(old, "old")
    params: list = [sym]
    where = "old_symbol = ?"
    if effective_date is not None:
        where += " AND effective_date = ?"
        params.append(_eff_date(effective_date))
    with transaction(con):
        n = int(con.execute(f"SELECT count(*) FROM symbol_map WHERE {where}", params).fetchone()[0])
        if not n:
            at = f" effective {params[1]}" if effective_date is not None else ""
            raise DataError(f"no symbol mapping for {sym}{at}; `accumopt symbols map list` shows the mappings")
        con.execute(f"DELETE FROM symbol_map WHERE {where}", params)
    return n


def unknown_symbols_message(con: duckdb.DuckDBPyConnection, table: str, missing: Sequence[str]) -> str:
    """``no <table> rows for ZZZZ; known symbols include AAPL, MSFT, …`` (close matches first)."""
    import difflib

    known = [r[0] for r in con.execute(f"SELECT DISTINCT symbol FROM {table} ORDER BY symbol").fetchall()]
    if not known:
        return f"no {table} rows for {', '.join(missing)}; {table} is empty"
    close: list[str] = []
    for m in missing:
        close += difflib.get_close_matches(m, known, n=3, cutoff=0.6)
    shown = list(dict.fromkeys(close + known))[:8]
    more = ", …" if len(known) > len(shown) else ""
    ctx = [m for m in missing if table == "daily_metrics" and is_context_symbol(m)]
    why = (f" ({', '.join(ctx)} {'is an index or indicator' if len(ctx) == 1 else 'are indices or indicators'}: "
           "market context, not a tradable symbol)") if ctx else ""
    return f"no {table} rows for {', '.join(missing)}{why}; known symbols include {', '.join(shown)}{more}"


def _key_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [table],
    ).fetchall()
    defaults = {"finra_short_daily": ["date", "symbol", "facility"], "finra_otc_weekly": ["week_start_date", "symbol"]}
    return list(rows[0][0]) if rows else defaults.get(table, ["date", "symbol"])
