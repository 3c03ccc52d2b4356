"""The DuckDB store: schema, versioned migrations and read-only helpers.

Raw tables are never mixed: one per source. ``daily_metrics`` / ``options_premium_daily`` are derived
(point-in-time) tables built by ``optimizer.data.metrics``; the engine writes only ``bt_``-prefixed tables.
Opening a database created by an older schema version migrates it, one transaction per pending migration; a new
(empty) database gets every migration's own statements in one transaction and one call (``_new_store``: the same
catalog, at about half the cost).
A database built by the existing darkpool pipeline (it has ``daily_metrics`` but no ``schema_version``)
is opened read-compatible: missing raw tables are created, existing tables are never altered; a table of its own
under one of this schema's names without this schema's columns is refused before anything is written (one
DataError naming the table and the columns it lacks), as every ingest and summary would fail on it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from optimizer.errors import DataError, check_param, quoted
from optimizer.paths import not_utf8, shown_name

__all__ = [
    "SCHEMA_VERSION", "connect", "open_store", "transaction", "table_exists", "table_columns", "RAW_TABLES",
    "SPLITS_TABLE", "MIGRATIONS", "memory_budget", "checkpoint_budget", "INGEST_CHECKPOINT", "WORK_MEMORY",
    "FINRA_FAMILIES", "consolidated_short_sql",
    "create_consolidated_view", "check_writable", "lock_wait", "checked_wait", "DEFAULT_EVENING_WAIT",
    "FINRA_SHORT_ROWS", "FINRA_SHORT_SOURCES", "STORAGE_TABLES", "stored_in", "insert_finra_short",
]

# DuckDB's own memory during the big jobs (ingest, metrics build) on a file-backed store: beyond it DuckDB
# evicts cached pages and spills temp data to <db>.tmp, so a job's peak RSS stays bounded whatever the data size.
WORK_MEMORY = "512MB"

RAW_TABLES = (
    "finra_short_daily",
    "prices_daily",
    "finra_otc_weekly",
    "lit_flow_daily",
    "options_daily",
)

SPLITS_TABLE = "splits"

# FINRA Reg SHO daily file families (the ``facility`` of finra_short_daily rows, besides 'API'): CNMS is the
# consolidated file, the others are per-facility files.
FINRA_FAMILIES = ("CNMS", "FNSQ", "FNQC", "FNYX", "FNRA", "FORF")

_SPLITS_DDL = """
    CREATE TABLE IF NOT EXISTS splits (
        symbol VARCHAR NOT NULL,
        ex_date DATE NOT NULL,                -- first session traded on the new share basis
        split_from DOUBLE NOT NULL,           -- old shares ...
        split_to DOUBLE NOT NULL,             -- ... become this many new shares
        ratio DOUBLE NOT NULL,                -- split_to / split_from: 10 for a 10-for-1 split
        source_file VARCHAR NOT NULL,
        PRIMARY KEY (symbol, ex_date)
    );
    """

# Each migration takes the schema from version i to i+1. Never edit a released one: append. A migration is SQL,
# or the name of a function of this module taking the connection (inside the same transaction).
MIGRATIONS: list[str] = [
    # v1: raw tables, ingest bookkeeping, symbol map
    """
    CREATE TABLE IF NOT EXISTS finra_short_daily (
        date DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        facility VARCHAR NOT NULL,            -- CNMS, FNSQ, FNQC, FNYX, FNRA, FORF, or API
        market VARCHAR,                       -- the file's Market column (e.g. 'B,Q,N')
        short_volume BIGINT NOT NULL,
        short_exempt_volume BIGINT,           -- NULL in the older layout without the column
        total_volume BIGINT NOT NULL,
        source_file VARCHAR NOT NULL,
        PRIMARY KEY (date, symbol, facility)
    );
    CREATE TABLE IF NOT EXISTS prices_daily (
        date DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        open DOUBLE NOT NULL,
        high DOUBLE NOT NULL,
        low DOUBLE NOT NULL,
        close DOUBLE NOT NULL,
        volume DOUBLE NOT NULL,
        source VARCHAR NOT NULL,
        PRIMARY KEY (date, symbol)
    );
    CREATE TABLE IF NOT EXISTS finra_otc_weekly (
        week_start_date DATE NOT NULL,        -- Monday of the reported week
        symbol VARCHAR NOT NULL,
        tier VARCHAR,                         -- T1, T2, OTCE
        ats_volume BIGINT,
        ats_trade_count BIGINT,
        non_ats_volume BIGINT,
        non_ats_trade_count BIGINT,
        publication_date DATE NOT NULL,       -- first date the figures were public
        source_file VARCHAR NOT NULL,
        PRIMARY KEY (week_start_date, symbol)
    );
    CREATE TABLE IF NOT EXISTS lit_flow_daily (
        date DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        lit_buy_volume DOUBLE NOT NULL,
        lit_sell_volume DOUBLE NOT NULL,
        lit_unclassified_volume DOUBLE DEFAULT 0,
        method VARCHAR NOT NULL,              -- rules used, '+'-joined: side, quote, tick (quote+tick, side+tick, ...); provided
        source_file VARCHAR NOT NULL,
        PRIMARY KEY (date, symbol)
    );
    CREATE TABLE IF NOT EXISTS options_daily (
        date DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        call_volume DOUBLE,
        put_volume DOUBLE,
        call_premium DOUBLE,
        put_premium DOUBLE,
        itm_call_volume DOUBLE,
        otm_call_volume DOUBLE,
        itm_put_volume DOUBLE,
        otm_put_volume DOUBLE,
        atm_iv DOUBLE,
        source_file VARCHAR NOT NULL,
        PRIMARY KEY (date, symbol)
    );
    CREATE SEQUENCE IF NOT EXISTS ingest_log_seq START 1;
    CREATE TABLE IF NOT EXISTS ingest_log (
        id BIGINT PRIMARY KEY DEFAULT nextval('ingest_log_seq'),
        file VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        rows_accepted BIGINT NOT NULL,
        rows_rejected BIGINT NOT NULL,
        status VARCHAR NOT NULL,              -- ok, replaced, skipped_identical, rejected_rows, failed
        message VARCHAR,
        ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE IF NOT EXISTS ingest_rejects (
        ingest_id BIGINT NOT NULL,
        file VARCHAR NOT NULL,
        line BIGINT,
        reason VARCHAR NOT NULL,
        raw VARCHAR
    );
    CREATE TABLE IF NOT EXISTS symbol_map (
        old_symbol VARCHAR NOT NULL,
        new_symbol VARCHAR NOT NULL,
        effective_date DATE NOT NULL,         -- first session traded under new_symbol
        PRIMARY KEY (old_symbol, effective_date)
    );
    INSERT INTO symbol_map VALUES ('FB', 'META', DATE '2022-06-09') ON CONFLICT DO NOTHING;
    """,
    # v2: market_regimes (doc 004): the learned market regime per session, written by report.backtest
    """
    CREATE SEQUENCE IF NOT EXISTS market_regimes_seq START 1;
    CREATE TABLE IF NOT EXISTS market_regimes (
        id BIGINT PRIMARY KEY DEFAULT nextval('market_regimes_seq'),
        symbol VARCHAR NOT NULL,              -- the market the regime describes (SPY)
        date DATE NOT NULL,                   -- the session labelled; the label uses data up to its close only
        regime VARCHAR NOT NULL,              -- BULL_LOW_VOL, BULL_HIGH_VOL, BEAR_LOW_VOL, BEAR_HIGH_VOL or UNKNOWN
        probability DOUBLE,                   -- the model's posterior probability of the label (NULL when UNKNOWN)
        position_multiplier DOUBLE NOT NULL,  -- 1.0 / 0.5 / 0.5 / 0.25 (UNKNOWN 1.0); 0.1 when VIX > 40
        features VARCHAR,                     -- JSON object of the regime features at the session (null = missing)
        detected_at TIMESTAMP NOT NULL,       -- when the label is known: the session's close, 16:00 New York time
        rule_regime VARCHAR,                  -- RISK_ON / TRANSITIONAL / RISK_OFF (SPY/VIX rule)
        vix_level DOUBLE,                     -- the VIX the rule used (VIX, or its realized-vol proxy)
        UNIQUE (symbol, date)
    );
    CREATE INDEX IF NOT EXISTS market_regimes_symbol_detected_at ON market_regimes (symbol, detected_at);
    """,
    # v3: stock splits (FINRA / lit / OTC volumes are raw share counts; prices arrive split-adjusted)
    _SPLITS_DDL,
    # v4: finra_short_daily without its PRIMARY KEY index (see _drop_finra_short_key)
    "_drop_finra_short_key",
    # v5: signal_sheet: the evening signal sheet (optimizer/signals.py, docs/SIGNALS.md): every symbol's score on a
    # session and the configuration's decision for the next open; one night x configuration replaced as a whole
    """
    CREATE TABLE IF NOT EXISTS signal_sheet (
        date DATE NOT NULL,                   -- the session D whose close the sheet reads (nothing later)
        params_hash VARCHAR NOT NULL,         -- the configuration + universe + span start + regime filter
        symbol VARCHAR NOT NULL,
        next_session DATE NOT NULL,           -- the open the decision is for (next NYSE session after D)
        sector_etf VARCHAR,
        decision VARCHAR NOT NULL,            -- ENTER / EXIT / HOLD / NONE
        score DOUBLE,                         -- the configuration's display score at D (0..100)
        close DOUBLE,
        signal_date DATE,                     -- the accumulation close that opened (ENTER: D) the position
        entry_date DATE,
        entry_price DOUBLE,
        days_held INTEGER,                    -- sessions since the entry open (0 on the entry session)
        unrealised_return DOUBLE,             -- close at D / entry - 1, gross
        exit_reason VARCHAR,                  -- EXIT: the rule due at the next open
        stop_level DOUBLE,
        take_profit_level DOUBLE,
        scheduled_exit_in INTEGER,            -- HOLD: sessions until the fixed / max_days / time-stop exit
        trend VARCHAR,
        sma_20_slope DOUBLE,
        rsi_14 DOUBLE,
        atr_pct DOUBLE,
        regime VARCHAR,
        learned_regime VARCHAR,
        regime_multiplier DOUBLE,
        parent_etf_available BOOLEAN,
        parent_etf_aligned BOOLEAN,
        put_call DOUBLE,
        lit_z DOUBLE,
        options_boost DOUBLE,
        signal_quality VARCHAR,               -- HIGH / MEDIUM / LOW (accumulation rows only)
        flags VARCHAR,                        -- failure-mode risk flags, comma separated
        confidence DOUBLE,
        data_coverage DOUBLE,
        last_data_date DATE,
        oos_trades INTEGER,                   -- with a walk-forward run: its OOS closed trades of this quality
        oos_hit_rate DOUBLE,
        oos_avg_excess_return DOUBLE,
        buy_threshold DOUBLE,
        sell_threshold DOUBLE,
        score_variant VARCHAR,
        exit_strategy VARCHAR,
        ticker_universe VARCHAR,
        span_start DATE,                      -- positions are replayed from this session
        regime_filter VARCHAR,
        params VARCHAR NOT NULL,              -- the complete configuration (JSON, Config.to_params)
        created_at TIMESTAMP NOT NULL,        -- TIMESTAMPTZ since v9
        PRIMARY KEY (date, params_hash, symbol)
    );
    """,
    # v6: the ledger of openings of the final reserve (optimizer/study/reserve.py owns it)
    """
    CREATE TABLE IF NOT EXISTS reserve_ledger (
        reserve_start DATE NOT NULL,          -- first session of the final reserve that was opened
        opened_at TIMESTAMP NOT NULL,         -- TIMESTAMPTZ since v9
        command VARCHAR NOT NULL,             -- walkforward --final, backtest --final, ...
        subject VARCHAR,                      -- the study, or the configuration (params hash), evaluated on it
        span_end DATE                         -- the last session evaluated
    );
    """,
    # v7: splits again, for a store whose version 3 was not splits. From 2026-12-02 18:42 to 19:30 UTC main
    # numbered signal_sheet v3 (ded9468); the merge of the splits branch renumbered it v5 after splits (v3) and the
    # finra key (v4). A store created then is at v3 with signal_sheet and no splits: v4..v6 ran on it and splits
    # was never created (metrics build failed on 'Table with name splits does not exist'). A no-op elsewhere.
    _SPLITS_DDL,
    # v8: finra_short_daily's rows without their per-row facility / source_file strings (see _finra_short_sources)
    "_finra_short_sources",
    # v9: signal_sheet.created_at and reserve_ledger.opened_at stored with their zone (see _times_with_zone)
    "_times_with_zone",
]
SCHEMA_VERSION = len(MIGRATIONS)

# finra_short_daily (a VIEW since v8) is stored as these two tables: FINRA_SHORT_ROWS holds the rows with a
# source_id, FINRA_SHORT_SOURCES one row per (facility, source_file) of the rows, or per (facility, name pattern) of
# raw files named by their date (_finra_short_sources)
FINRA_SHORT_ROWS = "finra_short_rows"
FINRA_SHORT_SOURCES = "finra_short_sources"
# where a raw table's rows are written (UPDATE / DELETE / INSERT): the table itself, except finra_short_daily
STORED_IN = {"finra_short_daily": FINRA_SHORT_ROWS}
# tables that only store another one's rows: `data info` lists the view (finra_short_daily), not them
STORAGE_TABLES = (FINRA_SHORT_ROWS, FINRA_SHORT_SOURCES)
# every table the migrations create (tests/test_explore14_upgrade.py checks the list against them)
_TABLE_NAMES = (*RAW_TABLES, SPLITS_TABLE, "ingest_log", "ingest_rejects", "symbol_map", "market_regimes",
                "signal_sheet", "reserve_ledger", *STORAGE_TABLES)

_FINRA_SHORT_COLUMNS = ("date", "symbol", "facility", "market", "short_volume", "short_exempt_volume", "total_volume",
                        "source_file")
_FINRA_SHORT_VIEW = f"""
    CREATE VIEW finra_short_daily AS
    SELECT r.date, r.symbol, s.facility, r.market, r.short_volume, r.short_exempt_volume, r.total_volume,
           CASE WHEN s.dated THEN replace(s.source_file, '%Y%m%d', strftime(r.date, '%Y%m%d')) ELSE s.source_file END
           AS source_file
    FROM {FINRA_SHORT_ROWS} r JOIN {FINRA_SHORT_SOURCES} s ON s.source_id = r.source_id
    """


def _drop_finra_short_key(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild finra_short_daily without the (date, symbol, facility) PRIMARY KEY index this tool created.

    The index doubled the cost of every FINRA insert (~11,000 rows a day per facility), and uniqueness holds by
    construction: a file's duplicate keys are rejected and a file first deletes every stored row of the
    (date, facility) pairs it covers (tested). A table without that key (another tool's) is left as it is."""
    keys = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = 'finra_short_daily' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    if not keys or sorted(keys[0][0]) != ["date", "facility", "symbol"]:
        return
    cols = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'finra_short_daily' "
        "AND table_schema = 'main' ORDER BY ordinal_position"
    ).fetchall()
    ddl = ", ".join(f'"{c}" {t}{" NOT NULL" if n == "NO" else ""}' for c, t, n in cols)
    con.execute(f"CREATE TABLE finra_short_daily_v3 ({ddl})")
    con.execute("INSERT INTO finra_short_daily_v3 SELECT * FROM finra_short_daily ORDER BY date, facility, symbol")
    con.execute("DROP TABLE finra_short_daily")
    con.execute("ALTER TABLE finra_short_daily_v3 RENAME TO finra_short_daily")


def _finra_short_sources(con: duckdb.DuckDBPyConnection) -> None:
    """Store finra_short_daily as two tables and a VIEW of that name with the same columns, names, types and order:
    ``finra_short_rows`` (date, symbol, source_id, market, the volumes) and ``finra_short_sources`` (source_id,
    facility, source_file, dated: one row per facility and file name of the stored rows; ``dated``: source_file is
    the pattern of the names of files that each hold one date and are named by it, ``%Y%m%d`` standing for the
    rows' date (``CNMSshvol%Y%m%d.txt``: every raw FINRA file of a family has the same), so a day's file adds no
    source row).

    Every FINRA row carried its facility and its file name as strings, the same two strings for every row of a file:
    in a one-transaction-per-file ingest each cost ~0.3 s of COMMIT (WAL and string heap) per 2.5 million rows
    (issue 15.4; measured on 252 CNMS files of 10,000 rows: the writing thread's CPU 2.8-3.2 s -> 2.4-2.7 s).
    The rows of a table of this layout are copied in their order; the table is then dropped and the view created.
    Uniqueness of (facility, source_file) and of source_id holds by construction (the writer allocates an id for a
    pair it does not find), as the FINRA key does (_drop_finra_short_key)."""
    con.execute(f"""CREATE TABLE {FINRA_SHORT_SOURCES} (
        source_id INTEGER NOT NULL,
        facility VARCHAR NOT NULL,            -- CNMS, FNSQ, FNQC, FNYX, FNRA, FORF, or API
        source_file VARCHAR NOT NULL,         -- the file name the rows came from (dated: its pattern)
        dated BOOLEAN NOT NULL                -- the name is source_file with '%Y%m%d' replaced by the row's date
    )""")
    con.execute(f"""CREATE TABLE {FINRA_SHORT_ROWS} (
        date DATE NOT NULL,
        symbol VARCHAR NOT NULL,
        source_id INTEGER NOT NULL,           -- {FINRA_SHORT_SOURCES}.source_id: the row's facility and file name
        market VARCHAR,
        short_volume BIGINT NOT NULL,
        short_exempt_volume BIGINT,
        total_volume BIGINT NOT NULL
    )""")
    cols = [c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'finra_short_daily' AND schema_name = 'main' "
        "AND database_name = current_database() ORDER BY column_index").fetchall()]
    if cols:
        extra = [c for c in cols if c not in _FINRA_SHORT_COLUMNS]
        if extra:
            raise DataError(f"table finra_short_daily has column(s) {', '.join(extra)} beyond accumopt's layout (a table "
                            "another tool made?): keep accumopt's data in a store of its own (--db NEW.duckdb)")
        con.execute(f"INSERT INTO {FINRA_SHORT_SOURCES} SELECT CAST(row_number() OVER (ORDER BY facility, source_file) "
                    "AS INTEGER), facility, source_file, false FROM (SELECT DISTINCT facility, source_file FROM "
                    "finra_short_daily)")
        with memory_budget(con):  # the sort back into the table's order spills beyond WORK_MEMORY (13.9M rows: 4.5 s,
            # peak RSS ~1 GB without the budget)
            con.execute(f"INSERT INTO {FINRA_SHORT_ROWS} SELECT f.date, f.symbol, s.source_id, f.market, "
                        "f.short_volume, f.short_exempt_volume, f.total_volume FROM (SELECT *, rowid AS _row FROM "
                        f"finra_short_daily) f JOIN {FINRA_SHORT_SOURCES} s ON s.facility = f.facility "
                        "AND s.source_file = f.source_file AND NOT s.dated ORDER BY f._row")
        con.execute("DROP TABLE finra_short_daily")
    con.execute(_FINRA_SHORT_VIEW)


def _times_with_zone(con: duckdb.DuckDBPyConnection) -> None:
    """The two real times a row records become TIMESTAMPTZ (an instant, read back in the session's zone: the
    machine's). Their older rows keep their meaning: signal_sheet.created_at was written as UTC without a zone;
    reserve_ledger.opened_at as the writing machine's local time without a zone, which ``calendar.local_time``
    printed as this machine's local time: each distinct value is given its offset here by that rule (Python's
    ``datetime.astimezone``, the offset of its own instant).

    The conversions are text with an explicit offset cast to TIMESTAMPTZ: DuckDB's time-zone functions
    (``timezone``) and a cast of a naive TIMESTAMP read the session's zone through the ICU extension, which a replay
    of the write-ahead log (a store killed before its checkpoint) binds before the built-in extension is loaded and
    then tries to download (measured: 'Failed to download extension "icu"'); a cast of text with its offset does
    not, and gives the same instant in any session zone."""
    import datetime as dt

    con.execute("ALTER TABLE signal_sheet ALTER COLUMN created_at TYPE TIMESTAMPTZ "
                "USING CAST(CAST(created_at AS VARCHAR) || '+00:00' AS TIMESTAMPTZ)")
    stored = [r[0] for r in con.execute("SELECT DISTINCT opened_at FROM reserve_ledger ORDER BY 1").fetchall()]
    # each value's text -> the same wall-clock time with this machine's offset at that instant (our own ISO text of
    # a stored datetime: no user text reaches the SQL)
    cases = " ".join(f"WHEN TIMESTAMP '{t.isoformat()}' THEN '{t.astimezone().isoformat()}'" for t in stored
                     if isinstance(t, dt.datetime))
    text = f"CASE opened_at {cases} END" if cases else "CAST(opened_at AS VARCHAR) || '+00:00'"
    con.execute(f"ALTER TABLE reserve_ledger ALTER COLUMN opened_at TYPE TIMESTAMPTZ USING CAST({text} AS TIMESTAMPTZ)")


def stored_in(table: str) -> str:
    """The table that holds ``table``'s rows, for a statement that changes them (a view cannot be written):
    ``finra_short_rows`` for finra_short_daily, else ``table`` itself."""
    return STORED_IN.get(table, table)


def insert_finra_short(con: duckdb.DuckDBPyConnection, select: str, parameters: object = None,
                       columns: Sequence[str] = _FINRA_SHORT_COLUMNS) -> int:
    """Append to finra_short_daily the rows of ``select`` (a SELECT or VALUES of ``columns``, by default its eight
    in its order: date, symbol, facility, market, short_volume, short_exempt_volume, total_volume, source_file; a
    column left out is NULL), as a view cannot be inserted into: the (facility, source_file) pairs not yet known get
    a source id, then the rows are stored with theirs. For notebooks, tests and benchmarks that build a store by hand
    (the ingest writes its own way); returns the rows inserted. Run it inside the caller's transaction to make it
    atomic."""
    unknown = [c for c in columns if c not in _FINRA_SHORT_COLUMNS]
    check_param(not unknown, "columns", f"columns of finra_short_daily ({', '.join(_FINRA_SHORT_COLUMNS)})", unknown)
    cols = ", ".join(f'"{c}"' if c in columns else f"NULL AS {c}" for c in _FINRA_SHORT_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _finra_short_new AS SELECT {cols} FROM (" + select + ") t("
                + ", ".join(f'"{c}"' for c in columns) + ")", parameters)
    try:
        con.execute(f"INSERT INTO {FINRA_SHORT_SOURCES} SELECT CAST((SELECT coalesce(max(source_id), 0) FROM "
                    f"{FINRA_SHORT_SOURCES}) + row_number() OVER (ORDER BY facility, source_file) AS INTEGER), "
                    f"facility, source_file, false FROM (SELECT DISTINCT facility, source_file FROM _finra_short_new) n "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {FINRA_SHORT_SOURCES} s WHERE s.facility = n.facility "
                    "AND s.source_file = n.source_file AND NOT s.dated)")
        got = con.execute(
            f"INSERT INTO {FINRA_SHORT_ROWS} SELECT n.date, n.symbol, s.source_id, n.market, n.short_volume, "
            "n.short_exempt_volume, n.total_volume FROM (SELECT *, rowid AS _row FROM _finra_short_new) n "
            f"JOIN {FINRA_SHORT_SOURCES} s ON s.facility = n.facility AND s.source_file = n.source_file AND NOT s.dated "
            "ORDER BY n._row").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS temp.main._finra_short_new")
    return int(got[0][0]) if got else 0


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table or a view ``name`` is in a schema ``main`` (of any attached database): what
    ``information_schema.tables`` lists (DuckDB's ``duckdb_tables()`` and its non-internal ``duckdb_views()``).

    A plain lower-case name (every table of this schema) is first looked up as ``main.<name>`` by DuckDB's binder
    (``con.table``: no statement runs, the connection's open result and transaction are left as they are): ~0.06 ms
    of CPU when found instead of ~0.6 ms for a table, ~1.3 ms for a view, from the catalog functions (the suite asks
    ~5,600 times, each open of a store once); not found, ~0.65 ms (one read of ``duckdb_databases()``: no other
    database is attached) instead of ~1.1 ms. A name not found that way while another database is attached (an
    ingest's staging databases), a name with upper-case letters (compared exactly) and DuckDB's own views' names
    (``duckdb_tables``) are read from the catalog functions, the views only when no table has the name. DuckDB
    resolves names case-insensitively: a table another tool made as ``"Daily_Metrics"`` counts as ``daily_metrics``
    (which every statement reads it as).
    Python objects are never taken for a table: DuckDB looks for one of the name only in the calling frame's names
    (this function's ``con`` and ``name``, this module's globals: none is a data frame)."""
    if _PLAIN_NAME.fullmatch(name) and not name.startswith(_DUCKDB_VIEW_PREFIXES):
        try:
            con.table(f"main.{name}")
            return True
        except duckdb.CatalogException:  # not in the current database nor among the temporary tables: only
            # another attached database can still hold it (an ingest's staging databases)
            if not con.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal AND database_name <> "
                               "current_database()").fetchall()[0][0]:
                return False
    # fetchall, not fetchone: DuckDB 2 refuses the relation API (con.sql) on a connection whose last result was
    # not read to its end, so a connection handed out by connect() must not keep one
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
                   [name]).fetchall()[0][0]:
        return True
    return bool(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND schema_name = 'main' "
                            "AND NOT internal", [name]).fetchall()[0][0])


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# the names of DuckDB's internal views in schema main (duckdb_tables, pragma_database_list, sqlite_master, ...)
_DUCKDB_VIEW_PREFIXES = ("duckdb_", "pragma_", "sqlite_")


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    """The column names of the tables and views ``name`` in a schema ``main`` (of any attached database): what
    ``information_schema.columns`` lists for them, read from DuckDB's ``duckdb_columns()`` (its non-internal rows)
    directly: ~0.5 ms of CPU instead of ~1.3 ms through the information_schema view (every panel load asks 4 times).
    Empty when there is no such table."""
    return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name "
                                      "= 'main' AND NOT internal", [name]).fetchall()}


def _current_version(con: duckdb.DuckDBPyConnection) -> int:
    if not table_exists(con, "schema_version"):
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return int(row[0] or 0)


def _refuse_newer(v: int) -> None:
    if v > SCHEMA_VERSION:
        raise DataError(
            f"database schema version {v} is newer than this accumopt supports ({SCHEMA_VERSION}); upgrade accumopt"
        )


@functools.cache
def _own_layout() -> dict[str, tuple[str, ...]]:
    """The columns of every table the migrations create, by running them on an in-memory database (once)."""
    con = duckdb.connect(":memory:")
    try:
        migrate(con)
        rows = con.execute("SELECT table_name, list(column_name ORDER BY ordinal_position) FROM information_schema.columns "
                           "WHERE table_schema = 'main' AND table_name <> 'schema_version' GROUP BY 1").fetchall()
    finally:
        con.close()
    return {t: tuple(c) for t, c in rows}


def _refuse_foreign_layout(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """A DataError when the store holds a table under one of this schema's names without all of its columns: a
    table another tool made (a darkpool-pipeline database's own raw tables), which the migrations leave as it is
    (``CREATE TABLE IF NOT EXISTS``) and every ingest, summary and load would then fail on with DuckDB's error.
    Checked only before a migration (a store of an older schema, or of another tool): every table of a store at the
    current version was created by these migrations."""
    have = dict(con.execute(
        "SELECT table_name, list(column_name) FROM information_schema.columns WHERE table_schema = 'main' "
        "AND table_name IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1", [list(_TABLE_NAMES)]).fetchall())
    if not have:
        return
    bad = [(t, [c for c in cols if c not in have[t]]) for t, cols in _own_layout().items() if t in have]
    bad = [(t, miss) for t, miss in bad if miss]
    if bad:
        what = "; ".join(f"table {t} lacks column(s) {', '.join(miss)}" for t, miss in bad)
        raise DataError(f"database {path}: {what} of accumopt's layout: tables another tool made under accumopt's names "
                        "(a darkpool-pipeline database?), which accumopt would fail on or misread; keep accumopt's data in "
                        "a store of its own (--db NEW.duckdb, filled by `accumopt ingest`), or rename those tables")


_SCHEMA_VERSION_DDL = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                       "applied_at TIMESTAMP DEFAULT current_timestamp)")


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration, each in its own transaction. Returns the resulting version.

    An empty database (a new store) gets all of them in one transaction and one call instead (:func:`_new_store`)."""
    if _current_version(con) == 0 and _is_empty(con):
        _new_store(con)
        return SCHEMA_VERSION
    return _run_migrations(con)


def _run_migrations(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration, each in its own transaction. Returns the resulting version."""
    con.execute(_SCHEMA_VERSION_DDL)
    v = _current_version(con)
    _refuse_newer(v)
    while v < SCHEMA_VERSION:
        con.execute("BEGIN TRANSACTION")
        try:
            step = MIGRATIONS[v]
            if step.startswith("_"):  # a migration that needs Python (named function of this module)
                globals()[step](con)
            else:
                con.execute(step)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [v + 1])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        v += 1
    return v


def _is_empty(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's database holds no table, view or sequence: a new store, which
    :func:`_new_store` may create (the migrations' ``IF NOT EXISTS`` and Python steps then see what they saw on
    the reference database)."""
    return not con.execute(
        "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()) "
        "+ (SELECT count(*) FROM duckdb_views() WHERE database_name = current_database() AND NOT internal) "
        "+ (SELECT count(*) FROM duckdb_sequences() WHERE database_name = current_database())").fetchall()[0][0]


class _Recorder:
    """A connection that runs every statement a migration gives it and keeps those that may change the database
    (all but ``SELECT``), for :func:`_new_store_script`. A statement with parameters cannot be kept as text."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.statements: list[str] = []
        self.parameterised = False

    def execute(self, sql: str, parameters: object = None) -> duckdb.DuckDBPyConnection:
        if parameters is not None:
            self.parameterised = True
        if not sql.lstrip().upper().startswith("SELECT"):
            self.statements.append(sql)
        return self.con.execute(sql) if parameters is None else self.con.execute(sql, parameters)


@functools.cache
def _new_store_script() -> str | None:
    """The statements the migrations run on an empty database, in their order, as one script (once per process,
    on an in-memory database): ``schema_version``'s DDL, each SQL migration verbatim, each Python migration's own
    statements (its reads left out: on an empty database they find what they found here), then the schema_version
    rows 1..N in one INSERT. None when a Python migration ran a statement with parameters (not replayable as text):
    an empty store is then migrated step by step."""
    con = duckdb.connect(":memory:")
    rec = _Recorder(con)
    try:
        rec.execute(_SCHEMA_VERSION_DDL)
        for step in MIGRATIONS:
            if step.startswith("_"):
                globals()[step](rec)
            else:
                rec.execute(step)
    finally:
        con.close()
    if rec.parameterised:
        return None
    versions = "INSERT INTO schema_version (version) VALUES " + ", ".join(f"({i})" for i in range(1, SCHEMA_VERSION + 1))
    # each statement on lines of its own: a migration's last line may be a -- comment
    return "\n;\n".join([*(s.strip().rstrip(";") for s in rec.statements), versions])


def _new_store(con: duckdb.DuckDBPyConnection) -> None:
    """Give an empty database the current schema: the migrations' own statements (:func:`_new_store_script`) in
    one transaction and one call, the version rows in one INSERT. The same tables, columns, constraints (in the
    same order), indexes, sequences and rows as the migrations run one transaction each (tests/test_tspeed18.py),
    at about half the cost: ~16 ms of CPU instead of ~32 ms on top of DuckDB's own ~18 ms for a new in-memory
    database (its seven commits, one INSERT per version and the catalog reads of the Python migration)."""
    script = _new_store_script()
    if script is None:
        _run_migrations(con)
        return
    with transaction(con):
        con.execute(script)


def _refuse_not_duckdb(path: Path) -> None:
    """A DataError for a folder or a SQLite file given as the store (an Optuna study storage is a SQLite file with the
    same ``.db`` look): DuckDB would read a SQLite file through its sqlite extension, downloading it first."""
    if path.is_dir():
        raise DataError(f"database {path} is a folder, not a DuckDB store file")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(16)
        if head == b"SQLite format 3\x00":
            raise DataError(f"database {path} is a SQLite file (an Optuna study storage? pass it as the storage, "
                            f"sqlite:///{path}), not a DuckDB store")


# how long ``accumopt evening`` waits by default for a store another process holds (a study loading its panel for
# 1-2 s between two of its steps): a cron run should not fail on that; every other command fails at once unless
# asked to wait (``--wait SECONDS``)
DEFAULT_EVENING_WAIT = 120.0

# the wait ``connect`` uses when its caller passes none (``lock_wait``): 0, fail at once
_WAIT: contextvars.ContextVar[float] = contextvars.ContextVar("accumopt_store_wait", default=0.0)
_RETRY_EVERY = 0.2  # seconds between two tries of a held store's lock
_clock, _sleep = time.monotonic, time.sleep  # seams for the tests


def checked_wait(wait: object, name: str = "wait") -> float:
    """``wait`` as float seconds; a ParameterError naming ``name`` unless it is a finite number >= 0 (a wait is
    bounded: a cron run must end)."""
    ok = isinstance(wait, (int, float)) and not isinstance(wait, bool) and math.isfinite(wait) and wait >= 0
    check_param(ok, name, "a finite number of seconds >= 0 (0: fail at once when another process holds the store)", wait)
    return float(wait)


@contextlib.contextmanager
def lock_wait(seconds: float) -> Iterator[None]:
    """Every ``connect`` in the block that is given no ``wait`` waits up to ``seconds`` for a store another process
    holds (a command's ``--wait``; ``evening`` waits ``DEFAULT_EVENING_WAIT`` by default)."""
    token = _WAIT.set(checked_wait(seconds))
    try:
        yield
    finally:
        _WAIT.reset(token)


def connect(path: str | Path, read_only: bool = False, wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating and migrating if needed) the store at ``path``; ``:memory:`` works too.

    ``wait``: seconds to wait, trying again, when another process holds the store's lock (default: the enclosing
    ``lock_wait``'s, else 0: a DataError at once naming that process). A wait says once on stderr who holds the
    store and how long it waits; when the time is up the DataError says it waited."""
    limit = _WAIT.get() if wait is None else checked_wait(wait)
    p = str(path)
    if p != ":memory:":
        pp = Path(p)
        if not_utf8(p):  # bytes the file system took that are no UTF-8: DuckDB fails with std::bad_cast
            raise DataError(f"database {quoted(shown_name(p))}: "
                            "its path is not valid UTF-8 (DuckDB opens UTF-8 paths only); rename it")
        if read_only and not pp.exists():
            raise DataError(f"database {p} does not exist; run `accumopt data synth --db {p}` or `accumopt ingest` first")
        _refuse_not_duckdb(pp)
        try:
            pp.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder of the path should be, a read-only folder
            why = "a file, not a folder, is in its path" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
            raise DataError(f"database {p}: cannot create its folder {pp.parent} ({why})") from None
    deadline, said = _clock() + limit, False
    while True:
        try:
            con = duckdb.connect(p, read_only=read_only)
            break
        except duckdb.ConnectionException as e:  # this process holds the file open in the other mode (a notebook)
            if "different configuration" not in str(e):
                raise
            raise DataError(f"database {p} is already open in this process {'for writing' if read_only else 'read-only'} "
                            f"and DuckDB opens a file in one mode per process; close that connection (con.close()) "
                            f"and call again") from None
        except duckdb.IOException as e:  # another process holds the file's lock
            held = _held_by_other_process(p, str(e), read_only)
            if held is None:
                raise
            left = deadline - _clock()
            if left <= 0:
                raise DataError(held + (f" (waited {limit:g} s for it)" if limit > 0 else "")) from None
            if not said:
                said = True
                print(f"waiting up to {limit:g} s for database {p}: {_holder_line(str(e), read_only)}",
                      file=sys.stderr, flush=True)
            _sleep(min(_RETRY_EVERY, left))
    try:
        if p == ":memory:":  # a new database, empty
            if not read_only:
                _new_store(con)
        else:
            v = _current_version(con)
            _refuse_newer(v)  # a reader cannot migrate, but must not read a newer accumopt's tables as its own
            if v < SCHEMA_VERSION:
                new = v == 0 and _is_empty(con)
                if not new:
                    _refuse_foreign_layout(con, p)  # before a migration writes anything into another tool's database
                if not read_only:
                    (_new_store if new else _run_migrations)(con)
    except BaseException:
        con.close()
        raise
    return con


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")


def _who(message: str) -> str:
    """``another process (python, PID 42)``: the process DuckDB's lock error names."""
    m = _LOCK_HOLDER.search(message)
    return f"another process ({Path(m['prog']).name or m['prog']}, PID {m['pid']})" if m else "another process"


def _by_writer(message: str, read_only: bool) -> bool:
    """Whether DuckDB's lock error means a writer holds the store: a reader is blocked only by a writer; a writer by a
    writer, or by readers when DuckDB adds that the file could be opened read-only."""
    return read_only or "read-only mode" not in message


def _holder_line(message: str, read_only: bool) -> str:
    """``it is being written by another process (python, PID 42)``: who holds a store, for the wait line."""
    if _by_writer(message, read_only):
        return f"it is being written by {_who(message)}"
    return f"it is open for reading in {_who(message)}"


def _held_by_other_process(path: str, message: str, read_only: bool) -> str | None:
    """The one-line message for DuckDB's "Could not set lock on file" (another process holds the store: DuckDB lets
    one process write a file, or several read it), naming that process and what to do; None for any other error."""
    if "Could not set lock on file" not in message:
        return None
    who = _who(message)
    if _by_writer(message, read_only):
        return (f"database {path} is being written by {who}, e.g. an ingest, a metrics build or an evening; DuckDB "
                f"lets no other process open a store while one writes it; run this again when that process has "
                f"finished, or pass --db a copy of the store made before it started")
    return (f"database {path} is open for reading in {who}, e.g. a study loading it or a notebook's connection; "
            f"DuckDB lets no process write a store while another has it open; run this again when that process has "
            f"finished or closed it (a notebook: con.close())")


def check_writable(path: str | Path) -> None:
    """Open the store at ``path`` for writing and close it at once, for a command that reads first and writes at its
    end: a store another process holds is refused before the work (a DataError naming that process), not after
    it. A store that does not exist yet is left to the command's own check."""
    if str(path) != ":memory:" and Path(path).exists():
        connect(path).close()


@contextlib.contextmanager
def open_store(path: str | Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing: commit on success, roll back on any exception (then re-raise)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def _parse_bytes(text: str) -> float:
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    num, unit = "".join(c for c in text if c.isdigit() or c == "."), "".join(c for c in text if c.isalpha()).upper()
    return float(num or 0) * units.get(unit or "B", 1)


def _shown_middle(text: str) -> int:
    """The bytes in the middle of the values DuckDB shows as ``text`` (it truncates to the digits shown: '1.1 GiB'
    is [1.1, 1.2) GiB, so 1.15 GiB), which DuckDB shows as ``text`` again."""
    digits = "".join(c for c in text if c.isdigit() or c == ".")
    step = 10.0 ** -(len(digits.split(".")[1]) if "." in digits else 0)
    unit = _parse_bytes(text) / float(digits or 1) if float(digits or 0) else 1.0
    return int((float(digits or 0) + step / 2.0) * unit)


def _file_backed(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con``'s current database is a file (not ``:memory:``): the stores whose settings for spilling and
    checkpointing matter."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return bool(row) and row[0][0] is not None


@contextlib.contextmanager
def memory_budget(con: duckdb.DuckDBPyConnection, limit: str = WORK_MEMORY) -> Iterator[duckdb.DuckDBPyConnection]:
    """Lower DuckDB's ``memory_limit`` to ``limit`` for the block (a file-backed store only: an in-memory store
    cannot spill, and a lower limit already set is kept); the previous limit is restored afterwards.

    DuckDB shows the limit only truncated to one decimal (``current_setting`` and ``duckdb_settings()`` give
    '18.8 GiB' for the default of a 23.5 GiB machine, 80 % = ~20.22e9 bytes), so setting that text back moved it
    down, each time (20.19e9, shown '18.7 GiB'; 1,234,567,891 bytes, '1.1 GiB', came back as '1.0 GiB'). The limit
    DuckDB starts with (80 % of the RAM, the usual case) is restored exactly by ``RESET``: it is the one before when
    its text is the default's. A limit set otherwise (a notebook's ``SET memory_limit``) is set back to the middle
    of the values its text shows (``_shown_middle``: within half its last digit, shown the same): DuckDB exposes no
    exact bytes."""
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    if not _file_backed(con) or _parse_bytes(str(before)) <= _parse_bytes(limit):
        yield con
        return
    con.execute("RESET memory_limit")  # about to be lowered anyway: read the default's text to compare
    default = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    con.execute(f"SET memory_limit = '{limit}'")
    try:
        yield con
    finally:
        con.execute("RESET memory_limit" if before == default else f"SET memory_limit = '{_shown_middle(before)}B'")


# An ingest's WAL before DuckDB checkpoints on a commit (its default is 16 MiB): see ``checkpoint_budget``.
INGEST_CHECKPOINT = "128MB"


@contextlib.contextmanager
def checkpoint_budget(con: duckdb.DuckDBPyConnection, threshold: str = INGEST_CHECKPOINT
                      ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Raise DuckDB's ``checkpoint_threshold`` from its default to ``threshold`` for the block, then ``RESET`` it
    (exact). A file-backed store only; a threshold the connection's owner set (any other value) is theirs and kept.

    Why: DuckDB checkpoints inside the COMMIT that takes its WAL past the threshold, on the committing thread. In an
    ingest's pipeline that is the writing thread, the critical one, at DuckDB ``threads = 1``: a year of CNMS files
    (252 x 10,000 rows) ran 7 such checkpoints (~0.085 CPU s each, 0.57 of the writer's 1.04 COMMIT CPU s). With the
    WAL allowed to 128 MB they happen once, after the pipeline (the next commit past DuckDB's default, or the caller's
    CHECKPOINT, or the close), at the connection's own threads: 939k-1.03M -> 1.01M-1.12M rows/s (the final
    CHECKPOINT included; idle, alternated). Every file is still its own transaction, committed to the WAL with its
    fsync: nothing is less durable; a store killed before the checkpoint replays a WAL of up to 128 MB when next
    opened. The committed rows not yet checkpointed stay in DuckDB's buffer pool (peak RSS 300 -> 365 MiB for the
    year), under the ingest's ``memory_budget``."""
    before = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]
    if not _file_backed(con) or before != _default_setting("checkpoint_threshold"):
        yield con
        return
    con.execute(f"SET checkpoint_threshold = '{threshold}'")
    try:
        yield con
    finally:
        con.execute("RESET checkpoint_threshold")


@functools.lru_cache(maxsize=None)
def _default_setting(name: str) -> str:
    """DuckDB's default value of setting ``name`` as ``current_setting`` shows it (read once per process from a new
    in-memory database: a connection's own value may be its owner's)."""
    con = duckdb.connect(":memory:")
    try:
        return str(con.execute("SELECT current_setting(?)", [name]).fetchall()[0][0])
    finally:
        con.close()


def consolidated_short_sql(table: str = "finra_short_daily") -> str:
    """SQL for one row per (date, symbol) of FINRA short volume: the CNMS row when present (provenance 'CNMS'),
    else the SUM of the per-facility rows (provenance 'FACILITY_SUM:FNQC+FNSQ+...', facilities sorted), else the
    API row (provenance 'API'). Read by daily_metrics, the scanner and the view below."""
    fac = ", ".join(f"'{f}'" for f in FINRA_FAMILIES if f != "CNMS")
    return f"""
WITH cnms AS (
    SELECT date, symbol, short_volume, short_exempt_volume, total_volume, 'CNMS' AS provenance
    FROM {table} WHERE facility = 'CNMS'
), fsum AS (
    SELECT date, symbol,
           CAST(sum(short_volume) AS BIGINT) AS short_volume,
           CAST(sum(short_exempt_volume) AS BIGINT) AS short_exempt_volume,
           CAST(sum(total_volume) AS BIGINT) AS total_volume,
           'FACILITY_SUM:' || string_agg(facility, '+' ORDER BY facility) AS provenance
    FROM {table} WHERE facility IN ({fac})
    GROUP BY date, symbol
), api AS (
    SELECT date, symbol, short_volume, short_exempt_volume, total_volume, 'API' AS provenance
    FROM {table} WHERE facility = 'API'
)
SELECT * FROM cnms
UNION ALL
SELECT * FROM fsum f WHERE NOT EXISTS (SELECT 1 FROM cnms c WHERE c.date = f.date AND c.symbol = f.symbol)
UNION ALL
SELECT * FROM api a WHERE NOT EXISTS (SELECT 1 FROM cnms c WHERE c.date = a.date AND c.symbol = a.symbol)
                      AND NOT EXISTS (SELECT 1 FROM fsum f WHERE f.date = a.date AND f.symbol = a.symbol)
""".strip()


def create_consolidated_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the view ``finra_short_consolidated`` from :func:`consolidated_short_sql`."""
    con.execute(f"CREATE OR REPLACE VIEW finra_short_consolidated AS {consolidated_short_sql()}")
