"""Ticker changes: one company's history is one series.

The ``symbol_map`` table holds (old_symbol, new_symbol, effective_date): rows of ``old_symbol`` dated BEFORE
``effective_date`` (the first session traded under the new symbol) are stored under ``new_symbol``. The schema
seeds FB -> META effective 2022-06-09. The ingest applies the map to every kind of file; mappings are applied in
effective-date order, so chains (A -> B, later B -> C) end at the latest symbol.

``add_symbol_mapping`` also rewrites rows already in the raw tables (``rewrite_existing=True``), because
re-ingesting an identical file is a no-op and would not pick the new mapping up.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import DataError, ParameterError
from optimizer.data.store import transaction

__all__ = ["load_symbol_map", "apply_symbol_map", "add_symbol_mapping", "DATE_COLUMNS"]

# The date column each raw table is keyed by.
DATE_COLUMNS: dict[str, str] = {
    "finra_short_daily": "date",
    "prices_daily": "date",
    "finra_otc_weekly": "week_start_date",
    "lit_flow_daily": "date",
    "options_daily": "date",
}


def load_symbol_map(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The map as a frame (old_symbol, new_symbol, effective_date), in effective-date order."""
    df = con.execute(
        "SELECT old_symbol, new_symbol, effective_date FROM symbol_map ORDER BY effective_date, old_symbol"
    ).df()
    df["effective_date"] = pd.to_datetime(df["effective_date"])
    return df


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


def add_symbol_mapping(
    con: duckdb.DuckDBPyConnection, old: str, new: str, effective_date, *, rewrite_existing: bool = True
) -> int:
    """Add (or update) a mapping ``old -> new`` from ``effective_date``; returns the number of rows rewritten.

    With ``rewrite_existing`` the raw tables' ``old`` rows dated before the date are renamed in the same
    transaction; if ``new`` already has a row at one of those keys the whole change is refused (DataError).
    """
    old, new = str(old).strip(), str(new).strip()
    if not old or not new:
        raise ParameterError(f"old and new symbols must be non-empty, got old={old!r}, new={new!r}")
    if old == new:
        raise ParameterError(f"old and new symbols must differ, got old={old!r}, new={new!r}")
    try:
        eff = pd.Timestamp(effective_date).date()
    except (ValueError, TypeError):
        raise ParameterError(f"effective_date must be a date, got effective_date={effective_date!r}") from None
    rewritten = 0
    with transaction(con):
        con.execute(
            "INSERT INTO symbol_map VALUES (?, ?, ?) ON CONFLICT (old_symbol, effective_date) "
            "DO UPDATE SET new_symbol = excluded.new_symbol",
            [old, new, eff],
        )
        if rewrite_existing:
            for table, dcol in DATE_COLUMNS.items():
                keys = [c for c in _key_columns(con, table) if c not in ("symbol", dcol)]
                join = " AND ".join([f"n.{dcol} = o.{dcol}"] + [f"n.{k} = o.{k}" for k in keys])
                clash = con.execute(
                    f"SELECT count(*) FROM {table} o JOIN {table} n ON {join} "
                    f"WHERE o.symbol = ? AND n.symbol = ? AND o.{dcol} < ?",
                    [old, new, eff],
                ).fetchone()[0]
                if clash:
                    raise DataError(
                        f"cannot map {old} -> {new} before {eff}: {table} already holds {clash} {new} rows "
                        f"at the same keys as {old} rows"
                    )
                got = con.execute(
                    f"UPDATE {table} SET symbol = ? WHERE symbol = ? AND {dcol} < ?", [new, old, eff]
                ).fetchone()
                rewritten += int(got[0]) if got else 0
    return rewritten


def _key_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [table],
    ).fetchall()
    return list(rows[0][0]) if rows else ["symbol", DATE_COLUMNS[table]]
