"""Split adjustment of raw share volumes (docs/DATA.md "Splits").

Prices arrive split-adjusted (all history in today's shares); FINRA short-sale, lit and OTC volumes are raw share
counts of their day. A raw volume dated d is put on the adjusted basis by multiplying it with the product of the
ratios of the symbol's splits whose ex-date is AFTER d (``splits.ratio`` = new shares per old share: 10 for a
10-for-1 split). Scale-free figures (ratios, shares, z-scores of a window without a split) are unchanged;
volume levels and the z-scores of windows that contain a split stop jumping at the ex-date.

A symbol's splits may multiply to at most ``MAX_FACTOR`` (:func:`check_split_factors`, before any adjustment): each
ratio is within [1e-4, 1e4] (the splits ingest), but two 10,000-for-1 splits would take a raw volume of 1e11 shares
past the INT64 of the adjusted volume.
"""

from __future__ import annotations

import duckdb

from optimizer.errors import DataError

__all__ = ["MAX_FACTOR", "split_factors_sql", "adjusted_join_sql", "check_split_factors"]

# the largest product of a symbol's split ratios: a raw volume (at most MAX_VOLUME = 1e13 shares a day, 2e13 for
# OTC's two figures) times it stays well inside INT64 (9.2e18); real securities' splits since 1990 multiply to a few
# hundred (NVDA 480, WMT 24)
MAX_FACTOR = 1e5
_MAX_RAW_VOLUME = 1e13  # ingest._common.MAX_VOLUME (a test checks they agree; the ingest package is not imported here)


def check_split_factors(con: duckdb.DuckDBPyConnection, where: str = "") -> None:
    """DataError naming the first symbol (by name) whose splits multiply to more than MAX_FACTOR, its ex-dates and
    source files; ``where`` filters ``splits`` as in :func:`split_factors_sql`."""
    w = f" WHERE {where}" if where else ""
    row = con.execute(
        "SELECT symbol, product(ratio), count(*), min(ex_date), max(ex_date), string_agg(DISTINCT source_file, ', ' "
        f"ORDER BY source_file) FROM splits{w} GROUP BY symbol HAVING product(ratio) > {MAX_FACTOR!r} ORDER BY symbol "
        "LIMIT 1").fetchone()
    if row is not None:
        sym, f, n, lo, hi, files = row
        raise DataError(f"splits of {sym} multiply to {f:g} ({n} splits, {lo} .. {hi}, from {files}): above "
                        f"{MAX_FACTOR:,.0f}, the largest factor a raw volume (at most {_MAX_RAW_VOLUME:g} shares) can be "
                        "adjusted by; fix the ratios and ingest the file again")


def split_factors_sql(where: str = "") -> str:
    """SELECT symbol, ex_date, factor: ``factor`` = product of the ratios of this and every later split of the
    symbol, i.e. the multiplier of a raw volume dated just before ``ex_date``. ``where`` filters ``splits``."""
    w = f" WHERE {where}" if where else ""
    return ("SELECT symbol, ex_date, product(ratio) OVER (PARTITION BY symbol ORDER BY ex_date DESC "
            f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS factor FROM splits{w}")


def adjusted_join_sql(alias: str = "sf", symbol: str = "x.symbol", date: str = "x.date") -> str:
    """The ASOF join clause attaching the split factor of (symbol, date) as ``coalesce({alias}.factor, 1.0)``:
    the first split after the date carries the product of it and every later one."""
    return f"ASOF LEFT JOIN ({split_factors_sql()}) {alias} ON {alias}.symbol = {symbol} AND {alias}.ex_date > {date}"
