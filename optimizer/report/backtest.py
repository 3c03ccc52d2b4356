"""Backtest outputs (I/O only): the DuckDB ``bt_`` tables and the files under ``output/``.

``write_backtest`` stores one run in bt_backtest_runs (one row), bt_signal_events and bt_frequency_baseline, all in
one transaction: a failure leaves every bt_ table as it was, and writing a run_id again replaces that run's rows.
Only the three bt_ tables are ever created, altered or written. Types are explicit; NaN is stored as NULL.
The columns carry the design's names (docs/ENGINE.md "bt_ tables"), so SQL written from the design runs: the
run's configuration is both in columns (score_variant, z_window, thresholds, exit_strategy and its parameters,
ticker_universe, regime_filter, ...) and, complete and canonical, in the JSON ``params`` column that
``Config.from_params`` reads back. Keys: run_id (bt_backtest_runs), (run_id, event_id) (bt_signal_events),
(run_id, symbol) (bt_frequency_baseline). A table created by an older accumopt gets the missing columns added
(its old columns are left in place, NULL for new runs).
``write_market_regimes`` stores the learned market regime per session in ``market_regimes`` (doc 004).
``write_backtest_files`` writes signal_events.parquet, frequency_baseline.csv (overwritten per run) and appends a
row to backtest_runs.csv. The frames come from ``optimizer.engine.outcomes``.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from optimizer.data.store import transaction
from optimizer.engine.context import OPTION_KEYS
from optimizer.engine.evaluate import PARAM_KEYS, Config
from optimizer.engine.metrics import METRIC_KEYS
from optimizer.engine.outcomes import (
    BASELINE_COLUMNS, EVENT_COLUMNS, RUN_METRIC_NAMES, SUMMARY_EXTRA_METRICS, SUMMARY_ID_KEYS,
)
from optimizer.errors import ParameterError
from optimizer.paths import atomic_write as _atomic

__all__ = [
    "RUNS_TABLE", "EVENTS_TABLE", "BASELINE_TABLE", "BT_TABLES", "RUN_COLUMNS", "EVENT_TYPES", "BASELINE_TYPES",
    "RUN_PARAM_COLUMNS", "REGIMES_TABLE", "make_run_id", "write_backtest", "write_backtest_files",
    "write_market_regimes",
]

RUNS_TABLE, EVENTS_TABLE, BASELINE_TABLE = "bt_backtest_runs", "bt_signal_events", "bt_frequency_baseline"
REGIMES_TABLE = "market_regimes"
BT_TABLES = (RUNS_TABLE, EVENTS_TABLE, BASELINE_TABLE)

_ID_TYPES = {"score_variant": "VARCHAR", "exit_strategy": "VARCHAR", "ticker_universe": "VARCHAR",
             "regime_filter": "VARCHAR", "date_start": "DATE", "date_end": "DATE", "data_end_date": "DATE",
             "sessions": "INTEGER", "n_symbols": "INTEGER", "fingerprint": "VARCHAR", "panel_start": "DATE",
             "min_periods": "INTEGER"}
# Configuration columns beside the JSON (parameter name -> type); the JSON stays the canonical, complete record.
RUN_PARAM_COLUMNS: dict[str, str] = {
    "z_window": "INTEGER", "buy_threshold": "DOUBLE", "sell_threshold": "DOUBLE", "w_short": "DOUBLE",
    "w_lit": "DOUBLE", "w_price": "DOUBLE", "hold_days": "INTEGER", "max_days": "INTEGER", "stop_loss": "DOUBLE",
    "take_profit": "DOUBLE", "time_stop": "INTEGER", "commission_bps": "DOUBLE", "slippage_bps": "DOUBLE",
    "max_positions": "INTEGER", "max_per_sector": "INTEGER", "sizing": "VARCHAR",
}
RUN_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR NOT NULL", "run_timestamp": "TIMESTAMP NOT NULL", "params": "VARCHAR NOT NULL",
    **{k: _ID_TYPES[k] for k in SUMMARY_ID_KEYS},
    **RUN_PARAM_COLUMNS,
    **{RUN_METRIC_NAMES.get(k, k): "DOUBLE" for k in (*METRIC_KEYS, *SUMMARY_EXTRA_METRICS)},
}
_EVENT_SPECIAL = {
    "event_id": "INTEGER", "date": "DATE", "entry_date": "DATE", "exit_date": "DATE", "symbol": "VARCHAR",
    "sector_etf": "VARCHAR", "score_variant": "VARCHAR", "z_window": "INTEGER", "exit_reason": "VARCHAR",
    "hold_days": "INTEGER", "open_at_end": "BOOLEAN", "days_to_first_dist": "INTEGER",
    "days_to_2x_consec_dist": "INTEGER", "trend_state": "VARCHAR", "regime": "VARCHAR", "learned_regime": "VARCHAR",
    "parent_etf_available": "BOOLEAN", "parent_etf_aligned": "BOOLEAN", "signal_quality": "VARCHAR",
    "failure_mode": "VARCHAR", "options_liquid": "BOOLEAN", "hit": "BOOLEAN", "hit_at_dist": "BOOLEAN",
    **{c: "BOOLEAN" for c in EVENT_COLUMNS if c.startswith("hit_")},
}
EVENT_TYPES: dict[str, str] = {
    "run_id": "VARCHAR NOT NULL",
    **{c: _EVENT_SPECIAL.get(c, "DOUBLE") for c in EVENT_COLUMNS},
    **{k: _EVENT_SPECIAL.get(k, "DOUBLE") for k in OPTION_KEYS},
    "created_at": "TIMESTAMP",
}
BASELINE_TYPES: dict[str, str] = {
    "run_id": "VARCHAR NOT NULL", "symbol": "VARCHAR", "sector_etf": "VARCHAR", "score_variant": "VARCHAR",
    "date_start": "DATE", "date_end": "DATE", "accum_signals_count": "INTEGER", "dist_signals_count": "INTEGER",
    "accum_episodes_count": "INTEGER", "dist_episodes_count": "INTEGER", "avg_gap_accum_to_dist": "DOUBLE",
    "median_gap_accum_to_dist": "DOUBLE", "avg_gap_dist_to_accum": "DOUBLE", "median_gap_dist_to_accum": "DOUBLE",
    "signals_per_month": "DOUBLE", "created_at": "TIMESTAMP",
}
assert set(BASELINE_TYPES) == {"run_id", "created_at", *BASELINE_COLUMNS}


# ------------------------------------------------------------------------------------------------ helpers


def _jsonable(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (pd.Timestamp, datetime)):
        return v.isoformat()
    return str(v)


def _iso_date(d: object) -> str:
    return pd.Timestamp(d).date().isoformat()  # type: ignore[arg-type]


def make_run_id(config: Config | Mapping[str, object], span_dates: Sequence[object], fingerprint: str) -> str:
    """12 hex chars of sha256 over the canonical parameters, the span's dates (any date-likes) and the panel
    fingerprint: the same configuration on the same data slice always gets the same id."""
    cfg = config if isinstance(config, Config) else Config.from_params(config)
    payload = json.dumps(
        {"params": cfg.to_params(), "span": [_iso_date(d) for d in span_dates], "fingerprint": str(fingerprint)},
        sort_keys=True, default=_jsonable,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _sql_type_of(s: pd.Series) -> str:
    """DuckDB type for a column outside the explicit schemas (new context keys)."""
    if pd.api.types.is_bool_dtype(s):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(s):
        return "BIGINT"
    if pd.api.types.is_float_dtype(s):
        return "DOUBLE"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "TIMESTAMP"
    return "VARCHAR"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ensure_table(con, table: str, types: Mapping[str, str]) -> None:
    """CREATE TABLE IF NOT EXISTS with ``types``; add any column an older table lacks, and let a NOT NULL column of
    an older layout that ``types`` no longer has take NULL (bt_ tables only): its rows stay as they were."""
    if not table.startswith("bt_"):
        raise ParameterError(f"table must start with 'bt_' (outputs never touch other tables), got table={table!r}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{_q(c)} {t}' for c, t in types.items())})")
    have = dict(con.execute(
        "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'",
        [table]).fetchall())
    for c, t in types.items():
        if c not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {_q(c)} {t.replace(' NOT NULL', '')}")
    for c, nullable in have.items():  # a NOT NULL column of an older layout that this writer no longer fills
        if c not in types and nullable == "NO":  # (created_at of 68c6f3b's bt_backtest_runs): kept, nullable
            con.execute(f"ALTER TABLE {table} ALTER COLUMN {_q(c)} DROP NOT NULL")


def _insert_frame(con, table: str, df: pd.DataFrame, types: Mapping[str, str]) -> None:
    """INSERT every row of ``df`` (columns among ``types``) with explicit casts; NaN -> NULL."""
    if df.empty:
        return
    view = f"_src_{table}"
    con.register(view, df)
    try:
        sel = []
        for c in df.columns:
            t = types[c].replace(" NOT NULL", "")
            src = f"src.{_q(c)}"
            if t in ("DOUBLE", "INTEGER", "BIGINT") and pd.api.types.is_float_dtype(df[c]):
                src = f"NULLIF({src}, 'NaN'::DOUBLE)"
            sel.append(f"CAST({src} AS {t})")
        con.execute(
            f"INSERT INTO {table} ({', '.join(_q(c) for c in df.columns)}) SELECT {', '.join(sel)} FROM {view} src"
        )
    finally:
        con.unregister(view)


def _with_types(df: pd.DataFrame, base: Mapping[str, str]) -> dict[str, str]:
    types = dict(base)
    for c in df.columns:
        if c not in types:
            types[c] = _sql_type_of(df[c])
    return types


def _run_row(run_id: str, summary: Mapping[str, object], created_at: datetime) -> pd.DataFrame:
    """One-row frame: identifier, configuration and metric columns (design names); the configuration and any
    other key also go to the ``params`` JSON (parameters only, never metrics)."""
    summ = {RUN_METRIC_NAMES.get(k, k): v for k, v in summary.items()}
    cols = set(RUN_COLUMNS) - set(RUN_PARAM_COLUMNS)
    metric_names = {*RUN_METRIC_NAMES, *RUN_METRIC_NAMES.values()}
    params = {k: summary[k] for k in PARAM_KEYS if k in summary}
    params.update({k: v for k, v in summary.items() if k not in cols and k not in params and k not in metric_names})
    row: dict[str, object] = {"run_id": run_id, "run_timestamp": created_at,
                              "params": json.dumps(params, sort_keys=True, default=_jsonable)}
    for k in RUN_COLUMNS:
        if k in row:
            continue
        v = summ.get(k)
        if RUN_COLUMNS[k] == "DOUBLE":
            row[k] = float("nan") if v is None else float(v)  # type: ignore[arg-type]
        elif RUN_COLUMNS[k] == "INTEGER":
            row[k] = pd.NA if v is None else int(v)  # type: ignore[call-overload]
        else:
            row[k] = v
    df = pd.DataFrame([row])
    for k in ("date_start", "date_end", "data_end_date", "panel_start"):
        df[k] = pd.to_datetime(df[k])
    for k, t in RUN_COLUMNS.items():
        if t == "INTEGER":
            df[k] = df[k].astype("Int64")
    return df


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not run_id.strip():
        raise ParameterError(f"run_id must be a non-empty string, got run_id={run_id!r}")


# ------------------------------------------------------------------------------------------------ DuckDB


def write_backtest(con: duckdb.DuckDBPyConnection, run_id: str, summary: Mapping[str, object], events: pd.DataFrame,
                   baseline: pd.DataFrame) -> dict[str, int]:
    """Store one run in the bt_ tables in ONE transaction; a run_id written again replaces its rows.

    Returns the row counts written per table. ``run_timestamp`` / ``created_at`` are the UTC time of the write.
    """
    _check_run_id(run_id)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    run = _run_row(run_id, summary, now)
    ev = events.assign(run_id=run_id, created_at=now)[["run_id", *events.columns, "created_at"]]
    bl = baseline.assign(run_id=run_id, created_at=now)[["run_id", *baseline.columns, "created_at"]]
    ev_types, bl_types = _with_types(ev, EVENT_TYPES), _with_types(bl, BASELINE_TYPES)
    with transaction(con):
        for table, types in ((RUNS_TABLE, RUN_COLUMNS), (EVENTS_TABLE, ev_types), (BASELINE_TABLE, bl_types)):
            _ensure_table(con, table, types)
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        _insert_frame(con, RUNS_TABLE, run, RUN_COLUMNS)
        _insert_frame(con, EVENTS_TABLE, ev, ev_types)
        _insert_frame(con, BASELINE_TABLE, bl, bl_types)
    return {RUNS_TABLE: len(run), EVENTS_TABLE: len(ev), BASELINE_TABLE: len(bl)}


def write_market_regimes(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Replace the frame's (symbol, date) rows of ``market_regimes`` (created by the store's migration) in one
    transaction; ``frame`` is ``engine.context.market_regime_frame``. Returns the rows written."""
    if frame.empty:
        return 0
    df = frame.copy()
    df["features"] = [json.dumps(f, sort_keys=True) for f in df["features"]]
    df["date"] = pd.to_datetime(df["date"]).dt.date
    cols = ["symbol", "date", "regime", "probability", "position_multiplier", "features", "detected_at",
            "rule_regime", "vix_level"]
    view = "_src_market_regimes"
    con.register(view, df[cols])
    try:
        with transaction(con):
            for sym, lo, hi in df.groupby("symbol")["date"].agg(["min", "max"]).itertuples():
                con.execute(f"DELETE FROM {REGIMES_TABLE} WHERE symbol = ? AND date BETWEEN ? AND ?", [sym, lo, hi])
            sel = ", ".join(f"NULLIF({_q(c)}, 'NaN'::DOUBLE)" if c in ("probability", "vix_level") else _q(c)
                            for c in cols)
            con.execute(f"INSERT INTO {REGIMES_TABLE} ({', '.join(cols)}) SELECT {sel} FROM {view}")
    finally:
        con.unregister(view)
    return len(df)


# ------------------------------------------------------------------------------------------------ files


def _append_csv_row(path: Path, row: pd.DataFrame) -> None:
    """Append ``row``; the header is written once. When the existing header differs, rewrite with the union.

    Several processes append to one index (two backtests finishing at once): the whole read-decide-write runs under
    an exclusive ``flock`` of the folder holding it (no lock file: one beside the index stayed there for good, and
    removing it is unsafe: a process that opened it before the removal would lock the removed file while the next
    one creates and locks a new one, both "holding" the lock; the folder is never replaced, the index's rewrite is a
    rename inside it), so a run that creates the file or rewrites it with a new column never replaces another run's
    row; an appended row is one complete line written by one ``write`` on an O_APPEND descriptor, so a reader (or a
    kill) never meets half a line. An append that fails (a full disk) leaves the file as it was, never a part of a
    row. (A ``.<name>.lock`` an earlier version left beside the index is no longer used: delete it when no backtest
    runs.)"""
    folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # released when the folder's descriptor closes
        _append_locked(path, row)
    finally:
        os.close(folder)


def _append_locked(path: Path, row: pd.DataFrame) -> None:
    """``_append_csv_row``'s work, under its lock."""
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if header == list(row.columns):
            line = row.to_csv(index=False, header=False).encode()
            size = path.stat().st_size
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(line)
                while view:  # a regular file takes the whole line in one write; a short write goes on
                    view = view[os.write(fd, view):]
            except BaseException:  # a full disk mid-row: cut the part written, the index keeps its whole rows
                os.ftruncate(fd, size)
                raise
            finally:
                os.close(fd)
            return
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        both = pd.concat([old, row.astype(object)], ignore_index=True)
        _atomic(path, lambda p: both.to_csv(p, index=False))
        return
    _atomic(path, lambda p: row.to_csv(p, index=False))


def write_backtest_files(
    summary: Mapping[str, object],
    events: pd.DataFrame,
    baseline: pd.DataFrame,
    out_dir: str | Path = "output",
    run_id: str | None = None,
    runs_index: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``signal_events.parquet`` (pyarrow) and ``frequency_baseline.csv`` (replaced) under ``out_dir`` (the
    run's folder, created) and append one row to ``runs_index`` (default ``out_dir/backtest_runs.csv``: one index of
    every run). With ``run_id`` every file carries a run_id column.
    Returns {"signal_events", "frequency_baseline", "backtest_runs"} -> path."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    ev, bl = events, baseline
    row = {k: (json.dumps(v, default=_jsonable) if isinstance(v, (dict, list, tuple)) else v) for k, v in summary.items()}
    run = pd.DataFrame([row])
    if run_id is not None:
        _check_run_id(run_id)
        ev = events.assign(run_id=run_id)[["run_id", *events.columns]]
        bl = baseline.assign(run_id=run_id)[["run_id", *baseline.columns]]
        run.insert(0, "run_id", run_id)
    run.insert(1 if run_id is not None else 0, "created_at",
               datetime.now(timezone.utc).isoformat(timespec="seconds"))  # with its offset, +00:00
    paths = {
        "signal_events": d / "signal_events.parquet",
        "frequency_baseline": d / "frequency_baseline.csv",
        "backtest_runs": Path(runs_index) if runs_index is not None else d / "backtest_runs.csv",
    }
    paths["backtest_runs"].parent.mkdir(parents=True, exist_ok=True)
    _atomic(paths["signal_events"], lambda p: ev.to_parquet(p, engine="pyarrow", index=False))
    _atomic(paths["frequency_baseline"], lambda p: bl.to_csv(p, index=False))
    _append_csv_row(paths["backtest_runs"], run)
    return paths
