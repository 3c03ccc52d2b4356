"""Symbol universes and the sector map (stock -> parent sector ETF).

Tier 1: the 15 liquid ETFs. Tier 3: the 18 single names of the design. Tier 2: top holdings per sector ETF,
used for larger universes. ``resolve_universe`` turns a spec/CLI value into a symbol list: symbols are
canonicalized (``brk/b`` -> ``BRK.B``, ``optimizer.data.symbols``), and index / indicator symbols (``^VIX``,
``^GSPC``) are market context only: ``all`` leaves them out and naming one is refused.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Mapping, Sequence

from optimizer.errors import DataError, ParameterError
from optimizer.data.symbols import canonical_symbol, is_context_symbol

__all__ = [
    "TIER1",
    "TIER3",
    "TIER2",
    "SECTOR_ETFS",
    "SECTOR_MAP",
    "MARKET_SYMBOL",
    "VIX_SYMBOL",
    "UNIVERSE_NAMES",
    "resolve_universe",
    "is_listed",
    "refuse_listed_without_rows",
    "refuse_repeats",
    "parent_etf",
    "universe_label",
    "unpriced_note",
    "is_all",
]

MARKET_SYMBOL = "SPY"
VIX_SYMBOL = "^VIX"

TIER1: tuple[str, ...] = (
    "SPY", "QQQ", "IWM", "DIA", "TLT", "GLD", "USO",
    "XLF", "XLK", "XLE", "XLV", "XLY", "XLI", "XLP", "XLU",
)
TIER3: tuple[str, ...] = (
    "MSFT", "AAPL", "GOOGL", "AMZN", "NVDA", "AVGO", "META", "TSLA", "AMD",
    "BE", "CRWV", "HIMS", "HOOD", "IREN", "JPM", "NNE", "PLTR", "SOFI",
)
SECTOR_ETFS: tuple[str, ...] = ("XLF", "XLK", "XLE", "XLV", "XLY", "XLI", "XLP", "XLU")

# Parent sector ETF of each tier-3 / tier-2 stock (GICS sector of the company).
SECTOR_MAP: dict[str, str] = {
    "MSFT": "XLK", "AAPL": "XLK", "NVDA": "XLK", "AVGO": "XLK", "AMD": "XLK", "CRWV": "XLK",
    "IREN": "XLK", "PLTR": "XLK",
    "GOOGL": "XLK", "META": "XLK",  # communication services; XLK is the closest tier-1 parent
    "AMZN": "XLY", "TSLA": "XLY", "HIMS": "XLV", "NNE": "XLU", "BE": "XLI",
    "HOOD": "XLF", "JPM": "XLF", "SOFI": "XLF",
}

# Tier 2: top holdings of each tier-1 sector ETF, 100 names. The design: "Tier 2: Sector Constituents - Expand when
# ETF signals. From ticker_dictionary.py - top 10 holdings per sector ETF, ~100 unique stocks across all sectors."
# Its dictionary's top 10 of the eight tier-1 sector ETFs give 72 names besides tier 3; the next largest holdings
# of the same ETFs complete the 100, so every tier-2 name has its parent sector ETF in tier 1.
TIER2_BY_SECTOR: dict[str, tuple[str, ...]] = {
    "XLF": ("BRK.B", "V", "MA", "BAC", "WFC", "GS", "MS", "SPGI", "AXP", "C", "SCHW", "BLK", "CB", "BX"),
    "XLK": ("ORCL", "CRM", "ADBE", "CSCO", "ACN", "IBM", "INTU", "NOW", "TXN", "QCOM", "AMAT", "MU", "LRCX", "KLAC",
            "ADI", "APH", "PANW"),
    "XLE": ("XOM", "CVX", "COP", "SLB", "EOG", "OXY", "MPC", "VLO", "PSX", "HAL"),
    "XLV": ("LLY", "UNH", "JNJ", "ABBV", "MRK", "TMO", "ABT", "ISRG", "AMGN", "PFE", "BMY", "MDT", "GILD", "VRTX",
            "SYK", "ELV", "CI", "REGN", "ZTS"),
    "XLY": ("HD", "MCD", "LOW", "BKNG", "TJX", "SBUX", "NKE", "RCL"),
    "XLI": ("GE", "CAT", "RTX", "HON", "UNP", "ETN", "DE", "LMT", "BA", "NOC", "GD", "UBER"),
    "XLP": ("COST", "WMT", "PG", "KO", "PEP", "PM", "MO", "MDLZ", "CL", "KMB"),
    "XLU": ("NEE", "SO", "DUK", "AEP", "EXC", "SRE", "XEL", "ED", "EIX", "PEG"),
}
TIER2: tuple[str, ...] = tuple(s for v in TIER2_BY_SECTOR.values() for s in v)
for _etf, _names in TIER2_BY_SECTOR.items():
    for _s in _names:
        SECTOR_MAP.setdefault(_s, _etf)

UNIVERSE_NAMES = ("tier1", "tier3", "tier1+3", "tier1+2+3", "all")
_TIER_LIKE = re.compile(r"tier[0-9+]+")  # written like a tier name (lower-cased): never read as a ticker


def universe_label(value: str | Sequence[str]) -> str:
    """A universe as one line for a person: a tier name (or a comma list) as written, a list joined by commas."""
    return value if isinstance(value, str) else ",".join(str(s) for s in value)


def universe_spelling(value: str | Sequence[str]) -> str | list[str]:
    """A universe as a run records it, one spelling however the user wrote it: a tier name or ``all`` lower-cased
    (`` TIER1+3`` -> ``tier1+3``), a listed universe (a comma list or a list) as its canonical symbols in the order
    written (``brk/b, aapl`` -> ``["BRK.B", "AAPL"]``, as a spec's list). A value that names no universe, or
    lists a symbol twice, is refused as ``resolve_universe`` refuses it."""
    if isinstance(value, str) and not is_listed(value):
        return value.strip().lower()
    return resolve_universe(value)  # a listed universe: its canonical symbols, once each, as written (or refused)


def unpriced_note(unpriced: int | None) -> str | None:
    """The one line saying how many symbols universe ``all`` left out for want of a price (None when none were):
    ``all`` is every symbol of the store with a price in the span, not every FINRA symbol (a real FINRA day lists
    ~11,000 symbols; one with no price has no return to trade, and would only be an empty column of the panel); a
    study's span ends before its final reserve (``study.data.priced_before``)."""
    if not unpriced:
        return None
    return (f"universe all left out {unpriced:,} symbol{'s' if unpriced != 1 else ''} with no price in the span "
            "the study may see (FINRA data only, or first priced inside the final reserve; ingest the missing prices "
            "and rebuild the metrics to include the former)")


def parent_etf(symbol: str) -> str | None:
    """The stock's sector ETF, or None for ETFs and unknown names."""
    return SECTOR_MAP.get(symbol)


def is_listed(value: str | Sequence[str] | None) -> bool:
    """True when ``value`` is the user's own list of symbols (a list or a comma list), not a named tier or ``all``."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in (*UNIVERSE_NAMES, "tier2")
    return True


def refuse_listed_without_rows(universe: str | Sequence[str] | None, symbols: Sequence[str],
                               loaded: Iterable[str], source: str, first: object, last: object) -> None:
    """Raise a DataError naming the symbols of a *listed* ``universe`` that ``loaded`` (the panel's symbols) lacks:
    names in the store with no row between ``first`` and ``last`` would be dropped without a word, the list running
    on fewer names than it says. A named tier runs on what the span holds (no error)."""
    have = set(loaded)
    missing = [x for x in symbols if x not in have]
    if not missing or not is_listed(universe):
        return
    one = len(missing) == 1
    raise DataError(f"universe lists {len(missing)} symbol{'' if one else 's'} with no row in {source} between "
                    f"{first} and {last}: {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''} (a listed "
                    f"universe runs on every name it lists or not at all; remove {'it' if one else 'them'} or "
                    f"choose a span that holds {'it' if one else 'them'})")


def refuse_repeats(value: object, written: Sequence[str], syms: Sequence[str], name: str = "universe") -> None:
    """A list of symbols names each symbol once: a symbol listed twice (``SPY, SPY``; ``brk/b, BRK-B``: one
    canonical symbol, ``syms[i]`` of ``written[i]``) is refused naming it and ``name`` (the parameter ``value``
    came from), rather than recorded twice or dropped without a word (the one rule of a spec's ``[data] universe``,
    a ``--universe`` flag, the API's ``universe`` and ``fetch_finra_api``'s ``symbols``)."""
    first: dict[str, str] = {}
    for raw, sym in zip(written, syms):
        if sym in first:
            how = f" (as {first[sym]!r} and {raw!r})" if first[sym] != raw else ""
            raise ParameterError(f"{name} must list each symbol once, got {sym} twice{how} in "
                                 f"{name}={str(value)[:200]}")
        first[sym] = raw


def is_all(value: object) -> bool:
    """Whether a universe setting means ``all`` (None, or the name in any case)."""
    return value is None or (isinstance(value, str) and value.strip().lower() == "all")


def resolve_universe(value: str | Sequence[str] | None, available: Iterable[str] | None = None,
                     source: str = "the store") -> list[str]:
    """Turn ``tier1`` / ``tier1+3`` / ``all`` / a comma list / a list into canonical, tradable symbols.

    ``all`` needs ``available`` (the store's symbols) and leaves out index / indicator symbols (``^...``).
    A named tier is intersected with ``available`` when it is given, so a universe never asks for symbols the
    store lacks. A listed symbol that is not valid, or is an index, is refused (ParameterError); with
    ``available`` given, so is a list naming a symbol ``available`` lacks (DataError naming them and ``source``):
    the user's list would otherwise run on fewer names than it says.
    """
    avail = None if available is None else list(dict.fromkeys(available))
    if is_all(value):
        if avail is None:
            raise ParameterError("universe 'all' needs the store's symbol list")
        return sorted(s for s in avail if not is_context_symbol(s))
    if isinstance(value, str):
        key = value.strip().lower()
        tiers = {
            "tier1": TIER1, "tier3": TIER3, "tier2": TIER2,
            "tier1+3": TIER1 + TIER3, "tier1+2+3": TIER1 + TIER2 + TIER3,
        }
        if key in tiers:
            syms = list(tiers[key])
        elif _TIER_LIKE.fullmatch(key):  # 'tier9', 'tier3+1': a tier misspelt, not a ticker TIER9 to run on
            raise ParameterError(f"universe must be one of {', '.join(UNIVERSE_NAMES)} or a symbol list, "
                                 f"got universe={value!r} (not a tier)")
        elif "," in value or value.strip().isupper() or value.strip().replace("-", "").replace(".", "").replace("/", "").replace("^", "").isalnum():
            syms = [s.strip() for s in value.split(",") if s.strip()]
        else:
            raise ParameterError(f"universe must be one of {', '.join(UNIVERSE_NAMES)} or a symbol list, got universe={value!r}")
    else:
        items = None if isinstance(value, (Mapping, bytes)) or not isinstance(value, Iterable) else list(value)
        if items is None or not all(isinstance(s, str) for s in items):  # 5, {"AAPL": 1}, [1, 2]: no symbol list
            raise ParameterError(f"universe must be one of {', '.join(UNIVERSE_NAMES)}, a comma list or a list of "
                                 f"symbols (text), got universe={value!r}")
        syms = [s.strip() for s in items]
    written = syms
    syms = [canonical_symbol(s, "universe symbol") for s in syms]
    if not isinstance(value, str) or key not in tiers:
        refuse_repeats(value, written, syms)
    ctx = [s for s in syms if is_context_symbol(s)]
    if ctx:
        raise ParameterError(
            f"universe must list tradable symbols, got universe={value!r}: {', '.join(ctx)} "
            f"{'is an index or indicator' if len(ctx) == 1 else 'are indices or indicators'} (market context only)"
        )
    if not syms:
        raise ParameterError(f"universe must name at least one symbol, got universe={value!r}")
    syms = list(dict.fromkeys(syms))
    if avail is not None:
        have = set(avail)
        missing = [s for s in syms if s not in have]
        if missing and is_listed(value):
            raise DataError(
                f"universe lists {len(missing)} symbol{'s' if len(missing) != 1 else ''} that {source} does not "
                f"hold: {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''} (a listed universe runs on "
                f"every name it lists or not at all; remove {'it' if len(missing) == 1 else 'them'} or load "
                f"{'its' if len(missing) == 1 else 'their'} data), got universe={str(value)[:200]!s}")
        syms = [s for s in syms if s in have]
    return syms
