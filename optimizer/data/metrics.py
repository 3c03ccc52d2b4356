"""Build the derived, point-in-time tables ``daily_metrics``, ``options_premium_daily`` and ``options_premium_summary``.

The contract is docs/DATA.md. Everything but the rolling z-scores is one DuckDB query over the raw tables:
the FINRA consolidated short volume (``consolidated_short_sql``: CNMS, else the facility sum), prices, lit flow,
and the FINRA OTC weekly figures joined AS OF their publication date (at date t only weeks with
``publication_date <= t`` are visible; the newest visible week is used). The z-scores come from
:func:`optimizer.data.rolling.rolling_zscore`, computed over each symbol's own rows: the rows are laid out in a
(row-within-symbol x symbol) matrix, so one vectorized call serves every symbol.

The whole rebuild runs in one transaction: a failure leaves the previous tables as they were. It works through
the symbols in batches (at most ``BATCH_ROWS`` rows each, counted per symbol), so memory stays bounded for any universe. A build limited by
``symbols``/``start``/``end`` replaces only the rows in that scope; its values still use the history before
``start`` (previous close, z windows, OTC weeks), so they equal those of a full build.

``daily_metrics`` of a darkpool-pipeline database (a table this tool did not create, recognised by the missing
owner row in ``accumopt_meta``) is never overwritten unless ``force=True``: the optimizer only reads it.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from optimizer.data.rolling import rolling_zscore
from optimizer.data.calendar import DateLike
from optimizer.errors import DataError, check_param
from optimizer.params import PARAMS
from optimizer.data.universe import VIX_SYMBOL
from optimizer.data.adjust import check_split_factors, split_factors_sql
from optimizer.data.calendar import as_date, session_days
from optimizer.data.ingest import tag_rules  # the one reading of a recorded reading's tag
from optimizer.data.ingest.lit import TRADES_RULES
from optimizer.data.store import connect, consolidated_short_sql, memory_budget, table_exists, transaction

__all__ = [
    "DAILY_METRICS_COLUMNS",
    "OPTIONS_PREMIUM_COLUMNS",
    "Z_COLUMNS",
    "META_TABLE",
    "METRICS_VERSION",
    "VERSION_KEY",
    "DEFAULT_Z_WINDOW",
    "stored_z_window",
    "DEFAULT_MIN_LIT_VOLUME",
    "stored_min_lit_volume",
    "OWNER_KEY",
    "OWNER_VALUE",
    "build_daily_metrics",
    "built_version",
    "finra_partial_days",
    "partial_days_warning",
    "latest_metrics_date",
    "metrics_staleness",
    "old_rules_lit_files",
    "old_rules_note",
    "store_metrics_staleness",
    "metrics_summary",
    "owns_daily_metrics",
    "zscores_by_symbol",
]

META_TABLE = "accumopt_meta"
OWNER_KEY = "daily_metrics_owner"
OWNER_VALUE = "accumopt"
DERIVED_TABLES = ("daily_metrics", "options_premium_daily", "options_premium_summary")

# The version of the code that computes the derived tables' values. Bump it by hand when a change makes a stored value
# differ from what an earlier build stored (a metric fixed, a rule changed); never for a change that leaves every
# value as it was. A full build records it (key VERSION_KEY of accumopt_meta), and a table an older version built is
# stale (metrics_staleness names both versions) until `accumopt metrics build`.
#   1  every accumopt up to 2026-12-05. A table built before the version was recorded counts as 1: audits of the
#      older builds found their values identical to this version's, so such a store is not sent into a rebuild.
METRICS_VERSION = 1
VERSION_KEY = "daily_metrics_version"

DAILY_METRICS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("date", "DATE"),
    ("symbol", "VARCHAR"),
    ("open", "DOUBLE"),
    ("high", "DOUBLE"),
    ("low", "DOUBLE"),
    ("close", "DOUBLE"),
    ("volume", "DOUBLE"),
    ("return", "DOUBLE"),
    ("short_volume", "BIGINT"),
    ("short_exempt_volume", "BIGINT"),
    ("total_volume", "BIGINT"),
    ("short_buy_volume", "BIGINT"),
    ("short_sell_volume", "BIGINT"),
    ("short_buy_sell_ratio", "DOUBLE"),
    ("short_share", "DOUBLE"),
    ("short_buy_sell_ratio_z", "DOUBLE"),
    ("short_buy_volume_z", "DOUBLE"),
    ("lit_buy_volume", "DOUBLE"),
    ("lit_sell_volume", "DOUBLE"),
    ("lit_flow_imbalance", "DOUBLE"),
    ("lit_flow_imbalance_z", "DOUBLE"),
    ("return_z", "DOUBLE"),
    ("otc_week_start", "DATE"),
    ("otc_weekly_volume", "BIGINT"),
    ("otc_participation_rate", "DOUBLE"),
    ("otc_participation_z", "DOUBLE"),
    ("otc_status", "VARCHAR"),
    ("confidence", "DOUBLE"),
    ("provenance", "VARCHAR"),
    ("z_window", "INTEGER"),
    ("z_min_periods", "INTEGER"),
)

# stored z column -> the raw column it standardizes
Z_COLUMNS: dict[str, str] = {
    "short_buy_sell_ratio_z": "short_buy_sell_ratio",
    "short_buy_volume_z": "short_buy_volume",
    "lit_flow_imbalance_z": "lit_flow_imbalance",
    "return_z": "return",
    "otc_participation_z": "otc_participation_rate",
}

OPTIONS_PREMIUM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("date", "DATE"),
    ("symbol", "VARCHAR"),
    ("call_volume", "DOUBLE"),
    ("put_volume", "DOUBLE"),
    ("total_volume", "DOUBLE"),
    ("call_premium", "DOUBLE"),
    ("put_premium", "DOUBLE"),
    ("total_premium", "DOUBLE"),
    ("put_call_ratio", "DOUBLE"),
    ("itm_call_volume", "DOUBLE"),
    ("otm_call_volume", "DOUBLE"),
    ("itm_put_volume", "DOUBLE"),
    ("otm_put_volume", "DOUBLE"),
    ("atm_iv", "DOUBLE"),
)

_SUMMARY_DDL = """
CREATE TABLE options_premium_summary (
    symbol VARCHAR PRIMARY KEY,
    avg_daily_option_volume DOUBLE,
    first_date DATE,
    last_date DATE,
    days BIGINT
)"""

_SCOPE_TABLE = "_dm_scope_symbols"
_BATCH_TABLE = "_dm_batch_symbols"
_BASE_TABLE = "_dm_base"
_SESSIONS_TABLE = "_dm_sessions"
Z_BLOCK_CELLS = 4_000_000  # z-scores are computed on (sessions x symbols) grids of at most this many cells
BATCH_ROWS = 400_000  # a full build joins and writes at most about this many (symbol x date) rows at a time
_Z_VIEW = "_dm_z_frame"


def _q(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """Execute and fetch every row (DuckDB 2 refuses register/unregister while a result is left unfinished)."""
    return con.execute(sql, params or []).fetchall()


# --------------------------------------------------------------------------------------------------- scope


class _Scope:
    """Which rows a build replaces. ``symbols`` None = every symbol; ``start``/``end`` None = unbounded."""

    def __init__(self, symbols: Sequence[str] | None, start, end, table: str = "_dm_scope_symbols") -> None:
        self.table = table
        self.has_otc = True  # whether OTC rows / splits exist in scope (set by _stage_base; True is always correct)
        self.has_splits = True
        if isinstance(symbols, str):
            symbols = [symbols]
        self.symbols = None if symbols is None else sorted({str(s) for s in symbols} - {VIX_SYMBOL})
        self.start = _to_date(start, "start")
        self.end = _to_date(end, "end")
        if self.start is not None and self.end is not None:
            check_param(self.start <= self.end, "start", f"<= end={self.end}", self.start)
        if self.symbols is not None and not self.symbols:
            raise DataError(
                f"symbols={list(symbols)!r} leaves no symbol to build ({VIX_SYMBOL} is market context only)"
            )

    @property
    def full(self) -> bool:
        return self.symbols is None and self.start is None and self.end is None

    def source_filter(self, date_col: str = "date", symbol_col: str = "symbol") -> str:
        """Rows of a raw table the build reads: the scope's symbols, dated <= end (history before start kept)."""
        parts = [f"{symbol_col} <> '{VIX_SYMBOL}'"]
        if self.symbols is not None:
            parts.append(f"{symbol_col} IN (SELECT symbol FROM {self.table})")
        if self.end is not None and date_col:
            parts.append(f"{date_col} <= DATE '{self.end.isoformat()}'")
        return " AND ".join(parts)

    def target_filter(self) -> str:
        """Rows of a derived table the build replaces."""
        parts = [f"symbol <> '{VIX_SYMBOL}'"]
        if self.symbols is not None:
            parts.append(f"symbol IN (SELECT symbol FROM {self.table})")
        if self.start is not None:
            parts.append(f"date >= DATE '{self.start.isoformat()}'")
        if self.end is not None:
            parts.append(f"date <= DATE '{self.end.isoformat()}'")
        return " AND ".join(parts)


def _to_date(value, name: str) -> _dt.date | None:
    return as_date(value, name)


# --------------------------------------------------------------------------------------------------- ownership


def _meta_get(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """The value ``accumopt_meta`` holds for ``key`` (None: no such row, or no such table)."""
    if not table_exists(con, META_TABLE):
        return None
    rows = _q(con, f"SELECT value FROM {META_TABLE} WHERE key = ?", [key])
    return str(rows[0][0]) if rows else None


def _meta_set(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    _q(con, f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", [key, value])


DEFAULT_Z_WINDOW = 20  # the stored z columns' window of a new daily_metrics (the engine's default z_window)
DEFAULT_MIN_LIT_VOLUME = 10_000  # the lit-volume floor of a new daily_metrics (MIN_LIT_VOLUME's default)
LIT_FLOOR_KEY = "daily_metrics_min_lit_volume"  # accumopt_meta: the floor the tables were built with


def stored_min_lit_volume(con: duckdb.DuckDBPyConnection) -> int | None:
    """The lit-volume floor the stored derived tables were built with (recorded by a build that wrote every row),
    None when no build recorded one."""
    if not owns_daily_metrics(con):
        return None
    text = (_meta_get(con, LIT_FLOOR_KEY) or "").strip()
    return int(text) if text.isdigit() else None


def stored_z_window(con: duckdb.DuckDBPyConnection) -> tuple[int, int] | None:
    """``(z_window, z_min_periods)`` the stored ``daily_metrics`` was built with (the most rows', should a scoped
    build have mixed them), None when this tool has built no rows."""
    if not owns_daily_metrics(con) or not table_exists(con, "daily_metrics"):
        return None
    rows = _q(con, "SELECT z_window, z_min_periods FROM daily_metrics WHERE z_window IS NOT NULL "
                   "GROUP BY ALL ORDER BY count(*) DESC, z_window LIMIT 1")
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def owns_daily_metrics(con: duckdb.DuckDBPyConnection) -> bool:
    """True when ``accumopt_meta`` says this tool created the derived tables."""
    return _meta_get(con, OWNER_KEY) == OWNER_VALUE


def _table_type(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    rows = _q(
        con, "SELECT table_type FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [name]
    )
    return str(rows[0][0]) if rows else None


def _check_owner(con: duckdb.DuckDBPyConnection, force: bool) -> None:
    """Refuse to overwrite derived tables another tool created; with ``force`` drop them instead."""
    if owns_daily_metrics(con):
        return
    foreign = [t for t in DERIVED_TABLES if _table_type(con, t) is not None]
    if not foreign:
        return
    if not force:
        raise DataError(
            f"the database already holds {', '.join(foreign)} not built by accumopt (no '{OWNER_KEY}' row in "
            f"{META_TABLE}; e.g. a darkpool-pipeline database): the optimizer only reads that table and will not "
            "overwrite it. Build metrics in a separate database, or pass force=True (--force) to replace it"
        )
    for t in foreign:
        kind = "VIEW" if _table_type(con, t) == "VIEW" else "TABLE"
        _q(con, f'DROP {kind} "{t}"')


def _mark_owner(con: duckdb.DuckDBPyConnection) -> None:
    _q(con, f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    _meta_set(con, OWNER_KEY, OWNER_VALUE)


# ------------------------------------------------------------------------------------- built from which raw data

RAW_STATE_KEY = "daily_metrics_raw_state"
_WROTE = "status IN ('ok', 'replaced', 'rejected_rows')"  # ingest_log statuses of a file that changed a data table


def _raw_state(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What the raw tables hold, as the store records it: the newest ``ingest_log`` row of a file that changed a
    data table, and the symbol map (``symbols map add`` renames stored rows without an ingest)."""
    last = _q(con, f"SELECT coalesce(max(id), 0) FROM ingest_log WHERE {_WROTE}")[0][0] \
        if table_exists(con, "ingest_log") else 0
    smap = _q(con, "SELECT coalesce(md5(string_agg(old_symbol || '>' || new_symbol || '@' || effective_date, ',' "
                   "ORDER BY old_symbol, effective_date, new_symbol)), '') FROM symbol_map")[0][0] \
        if table_exists(con, "symbol_map") else ""
    return {"ingest_id": int(last), "symbol_map": str(smap)}


def _mark_raw_state(con: duckdb.DuckDBPyConnection) -> None:
    """Record the raw data a full build read and the metrics version that built it (in its transaction), for
    :func:`metrics_staleness`."""
    _meta_set(con, RAW_STATE_KEY, json.dumps(_raw_state(con)))
    _mark_version(con)


def _mark_version(con: duckdb.DuckDBPyConnection) -> None:
    _meta_set(con, VERSION_KEY, str(METRICS_VERSION))


def _rows_outside(con: duckdb.DuckDBPyConnection, scope: _Scope) -> int:
    """Rows of the owned derived tables a build of ``scope`` keeps (0 for a full build): built by an earlier build,
    whose metrics version they keep."""
    if scope.full:
        return 0
    return sum(_q(con, f"SELECT count(*) FROM {t} WHERE NOT ({scope.target_filter()})")[0][0]
               for t in ("daily_metrics", "options_premium_daily") if table_exists(con, t))


def built_version(con: duckdb.DuckDBPyConnection) -> tuple[int, bool]:
    """The :data:`METRICS_VERSION` that last built the owned derived tables in full, and whether the store records it
    (a table built before versions were recorded counts as version 1; a value that is not a whole number as 0)."""
    value = _meta_get(con, VERSION_KEY)
    if value is None:
        return 1, False
    text = value.strip()
    return (int(text) if text.isdigit() else 0), True


def old_rules_lit_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The lit-trades files whose stored rows were read under older reading rules than this accumopt's
    (``ingest.lit.TRADES_RULES``; a reading recorded without ``rules=`` is version 1), as their paths were given to
    the ingest, in ingest order: the latest ingest that wrote rows of a file of that name (lit-trades and lit-flow
    share ``lit_flow_daily``) is a lit-trades reading under older rules, and rows of it are still stored. The next
    ingest of such a file re-reads it (``ingest._parse_tag``), but nothing else does. Reads ``ingest_log`` (its lit
    rows), and ``lit_flow_daily``'s sources only when a candidate is found."""
    if not table_exists(con, "ingest_log") or not table_exists(con, "lit_flow_daily"):
        return []
    latest: dict[str, tuple[str, str, str]] = {}  # file name -> (kind, path, key) of its latest ingest that wrote
    for kind, path, key in _q(con, f"SELECT kind, file, sha256 FROM ingest_log WHERE kind IN ('lit-trades', "
                                   f"'lit-flow') AND {_WROTE} ORDER BY id"):
        name = Path(path).name
        latest.pop(name, None)  # dict order: the order of the latest ingests
        latest[name] = (kind, path, key)
    if not latest:
        return []
    old = {name: path for name, (kind, path, key) in latest.items()
           if kind == "lit-trades" and tag_rules(key.partition("+")[2]) < TRADES_RULES}
    if not old:
        return []
    stored = {r[0] for r in _q(con, "SELECT DISTINCT source_file FROM lit_flow_daily WHERE source_file IN "
                                    "(SELECT unnest(?::VARCHAR[]))", [list(old)])}
    return [path for name, path in old.items() if name in stored]


def old_rules_note(paths: Sequence[str], show: int = 3) -> str | None:
    """The line for the user about lit-trades files read under older reading rules (:func:`old_rules_lit_files`),
    with the command that re-reads them (the first ``show`` paths; ``data info --format json`` lists all)."""
    if not paths:
        return None
    more = len(paths) - show
    cmd = "accumopt ingest lit-trades " + " ".join(shlex.quote(str(p)) for p in paths[:show])
    return (f"{len(paths)} lit-trades file(s) keep rows read under older reading rules than this accumopt's version "
            f"{TRADES_RULES}: re-read them with `{cmd}`"
            + (f" and {more} more (`accumopt data info --format json` lists them: lit_trades_old_rules)"
               if more > 0 else "") + ", then run `accumopt metrics build`")


def metrics_staleness(con: duckdb.DuckDBPyConnection) -> str | None:
    """A line for the user when the raw data changed since ``daily_metrics`` was last built in full (files ingested
    since -- a new session, a re-published day, a revised close, a split -- or the symbol map changed): every score,
    sheet, backtest and study reads daily_metrics, so none of them sees the change until ``accumopt metrics build``;
    also when an older version of the metrics code built it (:data:`METRICS_VERSION`, :func:`built_version`: its
    values are not the ones this accumopt computes), or a newer one (a newer accumopt's values); and when lit-trades
    files keep rows read under older reading rules (:func:`old_rules_lit_files`, with the command that re-reads
    them). None when it is current; the raw data is not judged for a table built before it was recorded, and
    nothing for a table another tool built."""
    if not owns_daily_metrics(con):
        return None
    recorded = _meta_get(con, RAW_STATE_KEY)
    what = []
    if recorded is not None:
        built, now = json.loads(recorded), _raw_state(con)
        if now["ingest_id"] != built.get("ingest_id"):
            n, latest = _q(con, f"SELECT count(*), arg_max(file, id) FROM ingest_log WHERE {_WROTE} AND id > ?",
                           [int(built.get("ingest_id") or 0)])[0]
            what.append(f"{n} file(s) were ingested since it was built (the latest: {latest})" if n
                        else "the ingest log changed since it was built")
        if now["symbol_map"] != built.get("symbol_map"):
            what.append("the symbol map changed since it was built")
    parts = [f"daily_metrics is older than the raw data: {'; '.join(what)}"] if what else []
    version, recorded = built_version(con)
    if version < METRICS_VERSION:
        how = "" if recorded else " (no version recorded: a build before versions were recorded counts as 1)"
        parts.append(f"{'It' if parts else 'daily_metrics'} was built by metrics version {version}{how}, older than "
                     f"this accumopt's version {METRICS_VERSION}, which computes some values otherwise")
    elif version > METRICS_VERSION:  # a newer accumopt built it: this one reads values it does not compute itself
        parts.append(f"{'It' if parts else 'daily_metrics'} was built by metrics version {version}, newer than this "
                     f"accumopt's version {METRICS_VERSION}: a newer accumopt built it (upgrade this one to use its "
                     "values)")
    note = old_rules_note(old_rules_lit_files(con))
    if not parts:
        return None if note is None else f"{note}; until then scores, sheets, backtests and studies read the older rows"
    return (f"{'. '.join(parts)}. Scores, sheets, backtests and studies read daily_metrics and do not see the change: "
            "run `accumopt metrics build`" + (f". {note}" if note else ""))


def store_metrics_staleness(db: str | Path) -> str | None:
    """:func:`metrics_staleness` of the store at ``db`` (a path), opened read-only for it: the one check every
    command and API call that reads daily_metrics makes once (two small queries: the newest ``ingest_log`` id and
    the symbol map's digest, never a scan of the data). None for a path that is not a file (the command's own
    load says what is wrong with it)."""
    if str(db) == ":memory:" or not Path(db).is_file():
        return None
    con = connect(db, read_only=True)
    try:
        return metrics_staleness(con)
    finally:
        con.close()


# --------------------------------------------------------------------------------------------------- base rows


def _base_sql(scope: _Scope, min_lit_volume: int) -> str:
    """Every column of daily_metrics except the z-scores, for the scope's symbols and all dates <= end.

    ``sym_idx``/``pos`` (symbol rank, session index on the calendar) key each row and place it in the
    (session x symbol) grid the z-scores are computed on.

    The OTC as-of join is a window over the union of the (date, symbol) keys and the "visibility events" (a
    publication date and the newest week published by then; events sort before rows of the same date, so a week
    is visible on its publication date); without OTC rows in scope it is skipped, and so is the split join
    without splits (``scope.has_otc`` / ``scope.has_splits``, set by ``_stage_base``).
    """
    f = scope.source_filter()
    otc_f = scope.source_filter(date_col="publication_date")
    adj = (lambda x, d: f"ASOF LEFT JOIN sf ON sf.symbol = {x}.symbol AND sf.ex_date > {x}.{d}") if scope.has_splits else (
        lambda x, d: "LEFT JOIN sf ON false")
    if scope.has_otc:
        ows_sql = """SELECT date, symbol, otc_week_start FROM (
        SELECT date, symbol, kind, last_value(vis_week IGNORE NULLS) OVER (
                   PARTITION BY symbol ORDER BY date, kind ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
               ) AS otc_week_start
        FROM (SELECT date, symbol, 1 AS kind, CAST(NULL AS DATE) AS vis_week FROM b
              UNION ALL SELECT vis_date, symbol, 0, week_start_date FROM otc_vis)
    ) WHERE kind = 1"""
    else:
        ows_sql = "SELECT CAST(NULL AS DATE) AS date, CAST(NULL AS VARCHAR) AS symbol, CAST(NULL AS DATE) AS otc_week_start WHERE false"
    return f"""
WITH px AS (
    SELECT date, symbol, open, high, low, close, volume FROM prices_daily WHERE {f}
), sf AS (          -- split factor: raw shares before ex_date x factor = today's (adjusted) shares
    {split_factors_sql(scope.source_filter(date_col=''))}
), sh AS (
    SELECT x.date, x.symbol, x.short_volume AS short_raw, x.total_volume AS total_raw,
           CAST(round(x.short_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS short_volume,
           CAST(round(x.short_exempt_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS short_exempt_volume,
           CAST(round(x.total_volume * coalesce(sf.factor, 1.0)) AS BIGINT) AS total_volume, x.provenance
    FROM ({consolidated_short_sql(f"(SELECT * FROM finra_short_daily WHERE {f}) AS fsd")}) x
    {adj("x", "date")}
), lit AS (
    SELECT x.date, x.symbol, x.lit_buy_volume + x.lit_sell_volume AS lit_raw_total,
           x.lit_buy_volume * coalesce(sf.factor, 1.0) AS lit_buy_volume,
           x.lit_sell_volume * coalesce(sf.factor, 1.0) AS lit_sell_volume
    FROM (SELECT date, symbol, lit_buy_volume, lit_sell_volume FROM lit_flow_daily WHERE {f}) x
    {adj("x", "date")}
), otc AS (
    SELECT x.symbol, x.week_start_date, x.publication_date,
           round(x.otc_raw * coalesce(sf.factor, 1.0)) AS otc_weekly_volume
    FROM (SELECT symbol, week_start_date, publication_date,
                 CASE WHEN ats_volume IS NULL AND non_ats_volume IS NULL THEN NULL
                      ELSE coalesce(ats_volume, 0) + coalesce(non_ats_volume, 0) END AS otc_raw
          FROM finra_otc_weekly WHERE {otc_f}) x
    {adj("x", "week_start_date")}
), otc_total AS (   -- the week's share volume, Monday..Friday, from bars known at publication
    SELECT o.symbol, o.week_start_date, sum(p.volume ORDER BY p.date) AS week_total  -- ordered: bit-reproducible
    FROM otc o JOIN px p
      ON p.symbol = o.symbol AND p.date BETWEEN o.week_start_date AND o.week_start_date + 4
     AND p.date <= o.publication_date
    GROUP BY o.symbol, o.week_start_date
), otc_vis AS (     -- from vis_date on, the newest week published so far
    SELECT symbol, vis_date, max(newest) AS week_start_date FROM (
        SELECT symbol, publication_date AS vis_date,
               max(week_start_date) OVER (PARTITION BY symbol ORDER BY publication_date) AS newest
        FROM otc
    ) GROUP BY symbol, vis_date
), b AS (
    SELECT coalesce(px.date, sh.date) AS date, coalesce(px.symbol, sh.symbol) AS symbol,
           px.open, px.high, px.low, px.close, px.volume,
           CAST(sh.short_volume AS BIGINT) AS short_volume,
           CAST(sh.short_exempt_volume AS BIGINT) AS short_exempt_volume,
           CAST(sh.total_volume AS BIGINT) AS total_volume,
           sh.short_raw, sh.total_raw,
           sh.provenance AS short_prov,
           px.symbol IS NOT NULL AS has_px
    FROM px FULL OUTER JOIN sh ON px.date = sh.date AND px.symbol = sh.symbol
), bi AS (           -- pos: the session's index on the calendar (gaps keep their place, never bridged)
    SELECT b.*, s.idx AS pos FROM b JOIN {_SESSIONS_TABLE} s ON s.date = b.date
), ows AS (          -- rows (kind 1) and OTC visibility events (kind 0) of each symbol: the newest visible week
    {ows_sql}
), r AS (            -- the previous SESSION's row (a self-join on pos - 1: a missing session gives no previous close)
    SELECT bi.*, prev.close AS prev_close, o.otc_week_start
    FROM bi
    LEFT JOIN bi prev ON prev.symbol = bi.symbol AND prev.pos = bi.pos - 1
    LEFT JOIN ows o ON o.symbol = bi.symbol AND o.date = bi.date
), m AS (
    SELECT r.*, s.sym_idx,
           CAST(lit.lit_buy_volume AS DOUBLE) AS lit_buy_volume,
           CAST(lit.lit_sell_volume AS DOUBLE) AS lit_sell_volume,
           CAST(lit.lit_raw_total AS DOUBLE) AS lit_raw_total,
           lit.symbol IS NOT NULL AS has_lit,
           r.total_volume - r.short_volume AS short_sell_volume,
           CAST(o.otc_weekly_volume AS BIGINT) AS otc_weekly_volume,
           CASE WHEN t.week_total > 0 THEN o.otc_weekly_volume / t.week_total END AS otc_participation_rate,
           date_diff('day', o.publication_date, r.date) AS otc_age
    FROM r
    JOIN (SELECT symbol, CAST(row_number() OVER (ORDER BY symbol) - 1 AS BIGINT) AS sym_idx
          FROM (SELECT DISTINCT symbol FROM b)) s ON s.symbol = r.symbol
    LEFT JOIN lit ON lit.date = r.date AND lit.symbol = r.symbol
    LEFT JOIN otc o ON o.symbol = r.symbol AND o.week_start_date = r.otc_week_start
    LEFT JOIN otc_total t ON t.symbol = r.symbol AND t.week_start_date = r.otc_week_start
), v AS (
    SELECT m.*,
           CASE WHEN prev_close > 0 THEN close / prev_close - 1 END AS "return",
           CASE WHEN total_raw - short_raw > 0 THEN CAST(short_raw AS DOUBLE) / (total_raw - short_raw) END
               AS short_buy_sell_ratio,
           CASE WHEN total_raw > 0 THEN CAST(short_raw AS DOUBLE) / total_raw END AS short_share,
           lit_buy_volume + lit_sell_volume AS lit_total,
           CASE WHEN lit_raw_total >= {int(min_lit_volume)} AND lit_total > 0
                THEN (lit_buy_volume - lit_sell_volume) / lit_total END AS lit_flow_imbalance,
           CASE WHEN otc_age IS NULL THEN NULL WHEN otc_age <= 7 THEN 'Anchored'
                WHEN otc_age <= 35 THEN 'Staled' END AS otc_status
    FROM m
)
SELECT sym_idx, pos,
       date, symbol, open, high, low, close, volume, "return",
       short_volume, short_exempt_volume, total_volume,
       short_volume AS short_buy_volume, short_sell_volume, short_buy_sell_ratio, short_share,
       lit_buy_volume, lit_sell_volume, lit_flow_imbalance,
       otc_week_start, otc_weekly_volume, otc_participation_rate, otc_status,
       (CASE otc_status WHEN 'Anchored' THEN 1.0 WHEN 'Staled' THEN 0.7 ELSE 0.5 END)
         * (CASE (CAST(short_volume IS NULL AS INTEGER) + CAST(lit_flow_imbalance IS NULL AS INTEGER)
                  + CAST(otc_participation_rate IS NULL AS INTEGER))
                WHEN 0 THEN 1.0 WHEN 1 THEN 0.8 ELSE 0.5 END)
         * (CASE WHEN lit_flow_imbalance IS NULL THEN 0.9 ELSE 1.0 END) AS confidence,
       concat_ws(',', short_prov,
                 CASE WHEN has_px THEN 'PRICES' END,
                 CASE WHEN has_lit THEN 'LIT' END,
                 CASE WHEN otc_week_start IS NOT NULL THEN 'OTC' END,
                 CASE WHEN otc_participation_rate IS NOT NULL THEN 'POLYGON_TOTAL' END) AS provenance
FROM v
"""


def _symbol_batches(con: duckdb.DuckDBPyConnection, scope: _Scope) -> list[list[str]]:
    """The scope's symbols, in order, in batches of at most BATCH_ROWS base rows (one batch when it is small; a
    symbol with more rows than that is a batch of its own).

    A symbol's rows are counted, not assumed: its distinct dates in prices_daily and finra_short_daily within the
    scope's filter (the keys of its base rows). Each batch re-reads the raw tables, so counting the calendar's
    sessions for every symbol instead made a store of many short-lived or sparse symbols (delisted names, real
    FINRA days years apart) run hundreds of batches of a few rows each (one query, a scan of both tables)."""
    f = scope.source_filter()
    counts = _q(
        con,
        f"SELECT symbol, count(DISTINCT date) FROM (SELECT date, symbol FROM prices_daily WHERE {f} "
        f"UNION ALL SELECT date, symbol FROM finra_short_daily WHERE {f}) GROUP BY symbol",
    )
    rows = {str(sym): int(n) for sym, n in counts}
    syms = list(scope.symbols) if scope.symbols is not None else sorted(rows)
    batches: list[list[str]] = [[]]
    filled = 0
    for sym in syms:
        n = rows.get(sym, 0)
        if batches[-1] and filled + n > BATCH_ROWS:
            batches.append([])
            filled = 0
        batches[-1].append(sym)
        filled += n
    return batches


def _stage_sessions(con: duckdb.DuckDBPyConnection, scope: _Scope) -> int:
    """``_dm_sessions(date, idx)``: every NYSE session from the first to the last date of the rows read (plus any
    off-calendar date they hold), numbered: a row's z-score window and previous close are counted in sessions."""
    f = scope.source_filter()
    dates = [r[0] for r in _q(
        con,
        f"SELECT DISTINCT date FROM prices_daily WHERE {f} UNION SELECT DISTINCT date FROM finra_short_daily WHERE {f}",
    )]
    days = np.asarray(pd.to_datetime(pd.Series(dates, dtype=object)), dtype="datetime64[D]") if dates else np.array([], "datetime64[D]")
    if len(days):
        days = np.union1d(session_days(days.min(), days.max()), days)
    frame = pd.DataFrame({"date": days.astype("datetime64[s]"), "idx": np.arange(len(days), dtype=np.int64)})
    con.register("_dm_sessions_frame", frame)
    try:
        _q(con, f"CREATE OR REPLACE TEMP TABLE {_SESSIONS_TABLE} AS SELECT CAST(date AS DATE) AS date, idx FROM _dm_sessions_frame")
    finally:
        con.unregister("_dm_sessions_frame")
    return int(len(days))


def _stage_scope(con: duckdb.DuckDBPyConnection, scope: _Scope) -> None:
    """The temp table of the scope's symbols (its ``table``), when it has a symbol list."""
    if scope.symbols is None:
        return
    con.register("_dm_scope_frame", pd.DataFrame({"symbol": pd.Series(scope.symbols, dtype=object)}))
    try:
        _q(con, f"CREATE OR REPLACE TEMP TABLE {scope.table} AS SELECT CAST(symbol AS VARCHAR) AS symbol FROM _dm_scope_frame")
    finally:
        con.unregister("_dm_scope_frame")


def _stage_base(con: duckdb.DuckDBPyConnection, scope: _Scope, min_lit_volume: int) -> int:
    """Materialize the base rows in a temp table; returns its row count."""
    _stage_scope(con, scope)
    scope.has_otc = bool(_q(con, f"SELECT count(*) FROM (SELECT 1 FROM finra_otc_weekly WHERE {scope.source_filter(date_col='publication_date')} LIMIT 1)")[0][0])
    scope.has_splits = bool(_q(con, f"SELECT count(*) FROM (SELECT 1 FROM splits WHERE {scope.source_filter(date_col='')} LIMIT 1)")[0][0])
    if scope.has_splits:
        check_split_factors(con, scope.source_filter(date_col=''))
    _q(con, f"CREATE OR REPLACE TEMP TABLE {_BASE_TABLE} AS {_base_sql(scope, min_lit_volume)}")
    return int(_q(con, f"SELECT count(*) FROM {_BASE_TABLE}")[0][0])


# --------------------------------------------------------------------------------------------------- z-scores


def zscores_by_symbol(
    values: dict[str, np.ndarray], sym_idx: np.ndarray, pos: np.ndarray, window: int, min_periods: int | None
) -> dict[str, np.ndarray]:
    """Rolling z of each 1-D array over each symbol's own rows (pure; rows are given by symbol index and position).

    ``pos`` is the row's session index (rows of one symbol in date order; a missing session is a hole the window
    counts, never bridged). The (session x symbol) grid is built in blocks of symbols of at most Z_BLOCK_CELLS
    cells, so memory stays bounded for any number of symbols. Returns arrays aligned with the input.
    """
    sym_idx = np.asarray(sym_idx, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.int64)
    if len(sym_idx) == 0:
        return {k: np.empty(0) for k in values}
    T, N = int(pos.max()) + 1, int(sym_idx.max()) + 1
    width = max(1, Z_BLOCK_CELLS // T)
    order = np.argsort(sym_idx, kind="stable")
    bounds = np.searchsorted(sym_idx[order], np.arange(0, N + width, width))
    out = {name: np.full(len(sym_idx), np.nan) for name in values}
    arrays = {name: np.asarray(x, dtype=np.float64) for name, x in values.items()}
    empty = {name for name, x in arrays.items() if not np.isfinite(x).any()}  # e.g. no lit / OTC data: all NaN
    for b in range(len(bounds) - 1):
        rows = order[bounds[b]:bounds[b + 1]]
        if not len(rows):
            continue
        lo = b * width
        p, s = pos[rows], sym_idx[rows] - lo
        grid = np.empty((T, int(s.max()) + 1))
        for name, x in arrays.items():
            if name in empty:
                continue
            grid.fill(np.nan)
            grid[p, s] = x[rows]
            out[name][rows] = rolling_zscore(grid, window, min_periods)[p, s]
    return out


def _compute_z(con: duckdb.DuckDBPyConnection, z_window: int, z_min_periods: int) -> pd.DataFrame:
    raw = sorted(set(Z_COLUMNS.values()))
    sel = ", ".join(f'coalesce(CAST("{c}" AS DOUBLE), CAST(\'nan\' AS DOUBLE)) AS "{c}"' for c in raw)
    arr = con.execute(f"SELECT sym_idx, pos, {sel} FROM {_BASE_TABLE}").fetchnumpy()
    z = zscores_by_symbol({c: np.asarray(arr[c]) for c in raw}, arr["sym_idx"], arr["pos"], z_window, z_min_periods)
    frame = pd.DataFrame({k: np.asarray(arr[k], dtype=np.int64) for k in ("sym_idx", "pos")})
    for zc, rc in Z_COLUMNS.items():
        frame[zc] = z[rc]
    return frame


# --------------------------------------------------------------------------------------------------- writes


def _ddl(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    """No PRIMARY KEY: (date, symbol) is unique by construction (tested) and the index would double the write."""
    cols = ",\n    ".join(f'"{c}" {t}' for c, t in columns)
    return f"CREATE TABLE {table} (\n    {cols}\n)"


def _columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = _q(
        con,
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position",
        [table],
    )
    return [r[0] for r in rows]


def _prepare_target(con: duckdb.DuckDBPyConnection, table: str, columns, scope: _Scope) -> None:
    """Full build: a fresh table. Scoped build: keep the table (same layout required), delete the scope's rows."""
    if scope.full or not table_exists(con, table):
        _q(con, f"DROP TABLE IF EXISTS {table}")
        _q(con, _ddl(table, columns))
        return
    have = _columns_of(con, table)
    want = [c for c, _ in columns]
    if have != want:
        raise DataError(
            f"table {table} has columns {have}, this accumopt writes {want}: rebuild it in full "
            "(no symbols/start/end) to change its layout"
        )
    _q(con, f"DELETE FROM {table} WHERE {scope.target_filter()}")


def _write_daily_metrics(
    con: duckdb.DuckDBPyConnection, zframe: pd.DataFrame, scope: _Scope, z_window: int, z_min_periods: int
) -> int:
    """Insert the staged batch (the target was prepared once by the caller)."""
    con.register(_Z_VIEW, zframe)
    try:
        sel = []
        for c, _ in DAILY_METRICS_COLUMNS:
            if c in Z_COLUMNS:
                sel.append(f'CASE WHEN isnan(z."{c}") THEN NULL ELSE z."{c}" END')
            elif c == "z_window":
                sel.append(f"CAST({int(z_window)} AS INTEGER)")
            elif c == "z_min_periods":
                sel.append(f"CAST({int(z_min_periods)} AS INTEGER)")
            else:
                sel.append(f'b."{c}"')
        where = f"b.date >= DATE '{scope.start.isoformat()}'" if scope.start is not None else "TRUE"
        n = _q(
            con,
            f"INSERT INTO daily_metrics SELECT {', '.join(sel)} FROM {_BASE_TABLE} b "
            f"JOIN {_Z_VIEW} z ON z.sym_idx = b.sym_idx AND z.pos = b.pos WHERE {where}",
        )[0][0]
    finally:
        con.unregister(_Z_VIEW)
    return int(n)


def _write_options(con: duckdb.DuckDBPyConnection, scope: _Scope) -> int:
    """options_premium_daily for the scope, then options_premium_summary over the whole table."""
    _prepare_target(con, "options_premium_daily", OPTIONS_PREMIUM_COLUMNS, scope)
    n = _q(
        con,
        f"""
        INSERT INTO options_premium_daily
        SELECT date, symbol, call_volume, put_volume,
               CASE WHEN call_volume IS NULL AND put_volume IS NULL THEN NULL
                    ELSE coalesce(call_volume, 0) + coalesce(put_volume, 0) END,
               call_premium, put_premium,
               CASE WHEN call_premium IS NULL AND put_premium IS NULL THEN NULL
                    ELSE coalesce(call_premium, 0) + coalesce(put_premium, 0) END,
               CASE WHEN call_volume > 0 THEN put_volume / call_volume END,
               itm_call_volume, otm_call_volume, itm_put_volume, otm_put_volume, atm_iv
        FROM options_daily WHERE {scope.target_filter()}
        ORDER BY date, symbol
        """,
    )[0][0]
    _q(con, "DROP TABLE IF EXISTS options_premium_summary")
    _q(con, _SUMMARY_DDL)
    _q(
        con,
        """
        INSERT INTO options_premium_summary
        SELECT symbol, avg(total_volume ORDER BY date), min(date), max(date), count(*)
        FROM options_premium_daily GROUP BY symbol ORDER BY symbol
        """
    )
    return int(n)


# --------------------------------------------------------------------------------------------------- public API


def build_daily_metrics(
    con: duckdb.DuckDBPyConnection,
    *,
    z_window: int | None = None,
    z_min_periods: int | None = None,
    min_lit_volume: int | None = None,
    symbols: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    progress: bool = False,
    force: bool = False,
) -> dict:
    """(Re)build daily_metrics, options_premium_daily and options_premium_summary in one transaction.

    Without ``symbols``/``start``/``end`` the tables are replaced; with them only the rows in that scope are.
    ``z_window`` / ``z_min_periods`` (the stored z columns' window): None keeps the ones the stored table was built
    with (:func:`stored_z_window`; ``DEFAULT_Z_WINDOW`` for a new table), so a nightly rebuild (``evening``) keeps
    a user's ``metrics build --z-window``. ``min_lit_volume`` (the lit-volume floor of ``lit_flow_imbalance``): None
    keeps the one the stored tables were built with (:func:`stored_min_lit_volume`; ``DEFAULT_MIN_LIT_VOLUME`` for
    a new table).
    Returns ``{rows, symbols, sessions, first_date, last_date, options_rows, z_window, z_min_periods, scoped,
    seconds, warnings}`` describing the rows written (``warnings``: lines for the user, e.g. every stored z column
    empty because the store holds fewer sessions than ``z_min_periods``). Raises DataError on a foreign (darkpool-pipeline) daily_metrics
    unless ``force``.
    """
    t0 = time.perf_counter()
    if z_window is None:
        z_window, stored_mp = stored_z_window(con) or (DEFAULT_Z_WINDOW, None)
        if z_min_periods is None:
            z_min_periods = stored_mp
    if min_lit_volume is None:
        min_lit_volume = stored_min_lit_volume(con)
        if min_lit_volume is None:
            min_lit_volume = DEFAULT_MIN_LIT_VOLUME
    PARAMS["z_window"].check(z_window)  # the engine's domain (optimizer.params): the stored z use the same windows
    mp = int(z_window) if z_min_periods is None else z_min_periods
    check_param(
        isinstance(mp, (int, np.integer)) and 1 <= mp <= z_window, "z_min_periods", f"in [1, z_window={z_window}]",
        z_min_periods,
    )
    check_param(
        isinstance(min_lit_volume, (int, float, np.integer)) and min_lit_volume >= 0, "min_lit_volume", ">= 0",
        min_lit_volume,
    )
    scope = _Scope(symbols, start, end)

    def say(msg: str) -> None:
        if progress:
            print(f"[metrics {time.perf_counter() - t0:6.2f}s] {msg}", file=sys.stderr, flush=True)

    stale_rest = None
    with memory_budget(con), transaction(con):
        _check_owner(con, force)
        _stage_scope(con, scope)
        kept = _rows_outside(con, scope)  # rows an earlier build wrote, left as they are
        _stage_sessions(con, scope)
        _prepare_target(con, "daily_metrics", DAILY_METRICS_COLUMNS, scope)
        rows = 0
        batches = _symbol_batches(con, scope)
        for i, batch in enumerate(batches):  # bounded memory: a batch of symbols at a time, one transaction
            sub = scope if len(batches) == 1 else _Scope(batch, scope.start, scope.end, table=_BATCH_TABLE)
            n_base = _stage_base(con, sub, int(min_lit_volume))
            zframe = _compute_z(con, int(z_window), int(mp))
            rows += _write_daily_metrics(con, zframe, sub, int(z_window), int(mp))
            del zframe
            say(f"batch {i + 1}/{len(batches)}: {n_base} rows joined, z-scores computed, {rows} daily_metrics rows so far")
        opt_rows = _write_options(con, scope)
        say(f"options_premium_daily: {opt_rows} rows written")
        recorded = built_version(con) if owns_daily_metrics(con) else None  # before this build marks the owner
        _mark_owner(con)
        if scope.full or not kept:  # every row is this build's: its lit-volume floor is the tables'
            _meta_set(con, LIT_FLOOR_KEY, str(int(min_lit_volume)))
        if scope.full:  # a scoped build refreshes its scope only: the rest may still predate an ingest
            _mark_raw_state(con)
        elif not kept:  # every row is this build's: its metrics version is the table's (the raw data is not judged)
            _mark_version(con)
        elif recorded is not None and recorded[0] != METRICS_VERSION:  # the rows it kept are an older (newer) build's
            stale_rest = (f"this scoped build kept {kept} row(s) of daily_metrics / options_premium_daily outside its "
                          f"scope, built by metrics version {recorded[0]} (this accumopt's is {METRICS_VERSION}): the "
                          f"tables stay marked version {recorded[0]}; run `accumopt metrics build` (no scope) to "
                          "rebuild every row")
        stats = _q(
            con,
            f"SELECT count(DISTINCT symbol), count(DISTINCT date), min(date), max(date) FROM daily_metrics "
            f"WHERE {scope.target_filter()}",
        )[0]
        for t in (_BASE_TABLE, _SCOPE_TABLE, _BATCH_TABLE, _SESSIONS_TABLE):
            _q(con, f"DROP TABLE IF EXISTS {t}")
    return {
        "rows": rows,
        "symbols": int(stats[0]),
        "sessions": int(stats[1]),
        "first_date": stats[2],
        "last_date": stats[3],
        "options_rows": opt_rows,
        "z_window": int(z_window),
        "z_min_periods": int(mp),
        "min_lit_volume": int(min_lit_volume),
        "scoped": not scope.full,
        "seconds": round(time.perf_counter() - t0, 3),
        "warnings": [*_z_fill_warnings(int(stats[1]), int(mp), not scope.full),
                     *filter(None, [partial_days_warning(finra_partial_days(con)), stale_rest])],
    }


def _z_fill_warnings(sessions: int, z_min_periods: int, scoped: bool) -> list[str]:
    """What a full build stored that the user should know: every z column empty when daily_metrics holds fewer
    sessions than a z-score needs (the build is not refused: a young store fills as days arrive)."""
    if scoped or sessions >= z_min_periods:
        return []
    return [f"every stored z column is empty: a z-score needs z_min_periods={z_min_periods} sessions and "
            f"daily_metrics holds {sessions} (the engine recomputes z at its own window; ingest more days or pass a "
            f"smaller --z-window)"]


def finra_partial_days(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """FINRA sessions whose short volume is a partial facility sum: a session without the consolidated CNMS file
    is summed from the facility files it holds (``store.consolidated_short_sql``, provenance ``FACILITY_SUM:...``),
    and when it holds fewer of them than the FINRA sessions just before and after it (the nearest stored ones), the
    sum lacks those facilities' volume, a fraction of the day's short volume read as the whole. Each item:
    ``date``, ``facilities`` (the files it holds) and ``missing`` (the facilities its neighbours hold and it lacks;
    ``CNMS`` when its neighbours hold only the consolidated file, so nothing says its sum is whole). A session
    with CNMS is whole whatever facility files it lacks (CNMS wins). One grouped query over the table's dates."""
    if not table_exists(con, "finra_short_daily"):
        return []
    rows = _q(con, "SELECT date, list(DISTINCT facility ORDER BY facility) FROM finra_short_daily GROUP BY date "
                   "ORDER BY date")
    days = [(d, set(f)) for d, f in rows]
    out = []
    for i, (d, have) in enumerate(days):
        if "CNMS" in have:
            continue
        ref = (days[i - 1][1] if i else set()) | (days[i + 1][1] if i + 1 < len(days) else set())
        others = ref - {"CNMS"}
        missing = sorted(others - have) if others else (["CNMS"] if "CNMS" in ref else [])
        if missing:
            out.append({"date": str(d)[:10], "facilities": sorted(have), "missing": missing})
    return out


def partial_days_warning(days: Sequence[dict[str, object]], show: int = 5) -> str | None:
    """A line naming the sessions of :func:`finra_partial_days` (the first ``show``), None without any."""
    if not days:
        return None
    named = "; ".join(f"{d['date']} summed from {'+'.join(d['facilities'])} without {'+'.join(d['missing'])}"
                      for d in days[:show])
    more = f"; and {len(days) - show} more" if len(days) > show else ""
    return (f"{len(days)} FINRA session(s) hold fewer facility files than the sessions around them, so their short "
            f"volume is a partial sum read as the whole day (provenance FACILITY_SUM:...): {named}{more}. Ingest "
            "the missing files (or the day's CNMS file) and run `accumopt metrics build`")


def latest_metrics_date(con: duckdb.DuckDBPyConnection) -> _dt.date | None:
    """The newest date in daily_metrics (any owner); None when the table is absent or empty."""
    if not table_exists(con, "daily_metrics"):
        return None
    value = _q(con, "SELECT max(date) FROM daily_metrics")[0][0]
    if value is None:
        return None
    return pd.Timestamp(value).date()


def metrics_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Rows, symbols, sessions, first/last date, owner, and the share of rows carrying each source.

    ``share`` keys: short (FINRA short data), cnms, facility_sum, prices, lit (lit flow row), lit_imbalance,
    otc (an OTC week visible), otc_rate, options (a row in options_premium_daily); a key is absent when the
    table lacks the column it needs (a darkpool-pipeline table).
    """
    if not table_exists(con, "daily_metrics"):
        raise DataError("the store has no daily_metrics table; run `accumopt metrics build` first")
    cols = set(_columns_of(con, "daily_metrics"))
    tests: dict[str, str] = {}
    if "short_volume" in cols:
        tests["short"] = "short_volume IS NOT NULL"
    if "provenance" in cols:
        tests["cnms"] = "provenance LIKE 'CNMS%'"
        tests["facility_sum"] = "provenance LIKE 'FACILITY_SUM:%'"
    if "close" in cols:
        tests["prices"] = "close IS NOT NULL"
    if "lit_buy_volume" in cols:
        tests["lit"] = "lit_buy_volume IS NOT NULL"
    if "lit_flow_imbalance" in cols:
        tests["lit_imbalance"] = "lit_flow_imbalance IS NOT NULL"
    if "otc_week_start" in cols:
        tests["otc"] = "otc_week_start IS NOT NULL"
    if "otc_participation_rate" in cols:
        tests["otc_rate"] = "otc_participation_rate IS NOT NULL"
    share_sql = "".join(f", avg(CASE WHEN {cond} THEN 1.0 ELSE 0.0 END)" for cond in tests.values())
    row = _q(
        con,
        f"SELECT count(*), count(DISTINCT symbol), count(DISTINCT date), min(date), max(date){share_sql} "
        "FROM daily_metrics",
    )[0]
    n = int(row[0])
    share = {k: (float(v) if v is not None else 0.0) for k, v in zip(tests, row[5:])}
    if table_exists(con, "options_premium_daily") and n:
        hit = _q(
            con,
            "SELECT count(*) FROM daily_metrics m SEMI JOIN options_premium_daily o "
            "ON o.date = m.date AND o.symbol = m.symbol",
        )[0][0]
        share["options"] = int(hit) / n
    return {
        "rows": n,
        "symbols": int(row[1]),
        "sessions": int(row[2]),
        "first_date": None if row[3] is None else pd.Timestamp(row[3]).date(),
        "last_date": None if row[4] is None else pd.Timestamp(row[4]).date(),
        "owner": "accumopt" if owns_daily_metrics(con) else "foreign",
        "share": share,
    }
