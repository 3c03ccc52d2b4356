"""Split adjustment of raw share volumes (docs/DATA.md "Splits").

Prices arrive split-adjusted (all history in today's shares); FINRA short-sale, lit and OTC volumes are raw share
counts of their day. A raw volume dated d is put on the adjusted basis by multiplying it with the product of the
ratios of the symbol's splits whose ex-date is AFTER d (``splits.ratio`` = new shares per old share: 10 for a
10-for-1 split). Scale-free figures (ratios, shares, z-scores of a window without a split) are unchanged;
volume levels and the z-scores of windows that contain a split stop jumping at the ex-date.
"""

from __future__ import annotations

__all__ = ["split_factors_sql", "adjusted_join_sql"]


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
