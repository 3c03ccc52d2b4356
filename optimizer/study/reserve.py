"""The final reserve and the ONE ledger of its openings.

The final reserve is the last ``[data].reserve_fraction`` (default 0.2) of the sessions of a span: no study ever
sees it (``study.data.prepare_data`` truncates the panel at its start). Every command that evaluates a
configuration on the store refuses to include it unless asked (``--final``): ``backtest``, ``sandbox`` and
``api.load_panel`` (through ``guard_end`` / ``record_if_opened``) and ``walkforward``, whose windows stop before it. ``study replay`` re-evaluates a trial on its own span, which ends before the
reserve by construction.

Each opening is one row of the DuckDB table ``reserve_ledger`` of the store the reserve belongs to (the store's
data is what the reserve holds back), keyed by the reserve's first session: ``walkforward --final`` and
``backtest --final`` write to the same ledger, and a second opening of the same reserve warns loudly (its results
are no longer a clean out-of-sample test). Nothing about the reserve is stored in the Optuna storage.

The reserve of a span with no study behind it (a ``backtest`` without a parameters record) is the default share
of the sessions of the store's universe from its first to its last session (``store_reserve_start``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimizer.data.calendar import as_date, local_time, session_days
from optimizer.data.store import connect, table_exists, transaction
from optimizer.errors import ParameterError
from optimizer.study.spec import DataSpec
from optimizer.study.splits import reserve_cutoff

__all__ = [
    "LEDGER", "DEFAULT_FRACTION", "Opening", "reserve_start_of", "store_reserve_start", "openings",
    "record_opening", "opening_warning", "refuse_reserve", "guard_end", "record_if_opened",
]

LEDGER = "reserve_ledger"
DEFAULT_FRACTION = DataSpec.reserve_fraction


@dataclass(frozen=True)
class Opening:
    """One recorded opening of the reserve starting ``reserve_start`` (ISO dates / time)."""

    reserve_start: str
    opened_at: str
    command: str
    subject: str | None = None
    span_end: str | None = None


def _iso(d: Any) -> str | None:
    return None if d is None else pd.Timestamp(d).date().isoformat()


def reserve_start_of(dates: Any, fraction: float = DEFAULT_FRACTION) -> str | None:
    """The first session of the reserve of the sessions ``dates`` (sorted), None when the reserve is empty."""
    n = len(dates)
    cut = reserve_cutoff(n, fraction)
    return None if cut >= n else _iso(dates[cut])


def store_reserve_start(con: Any, symbols: list[str], fraction: float = DEFAULT_FRACTION) -> str | None:
    """The reserve start of the store's ``symbols``: the default share of the NYSE sessions (and stored dates)
    from their first to their last date in daily_metrics (the date axis ``load_panel`` builds)."""
    rows = con.execute("SELECT DISTINCT date FROM daily_metrics WHERE symbol IN (SELECT unnest(?::VARCHAR[])) "
                       "ORDER BY 1", [list(symbols)]).fetchall()
    if not rows:
        return None
    have = np.array([np.datetime64(pd.Timestamp(r[0]).date(), "D") for r in rows])
    axis = np.union1d(session_days(have.min(), have.max()), have)
    return reserve_start_of(axis, fraction)


def openings(db: str | Path, reserve_start: Any = None) -> list[Opening]:
    """Every recorded opening (of the reserve starting ``reserve_start``; None: all), oldest first. A store
    without the ledger (never opened, or an older schema) has none."""
    p = Path(db)
    if str(db) != ":memory:" and not p.exists():
        return []
    con = connect(db, read_only=True)
    try:
        if not table_exists(con, LEDGER):
            return []
        sql = f"SELECT reserve_start, opened_at, command, subject, span_end FROM {LEDGER}"
        args: list[Any] = []
        if reserve_start is not None:
            sql += " WHERE reserve_start = ?"
            args.append(pd.Timestamp(reserve_start).date())
        rows = con.execute(sql + " ORDER BY opened_at, reserve_start", args).fetchall()
    finally:
        con.close()
    return [Opening(_iso(r[0]), local_time(r[1]).isoformat(timespec="seconds"), r[2], r[3], _iso(r[4]))
            for r in rows]


def _overlapping(earlier: list[Opening], reserve_start: Any, span_end: Any) -> list[Opening]:
    """The openings of ``earlier`` that saw sessions of the reserve ``reserve_start`` .. ``span_end`` (None: open
    ended): those of the same reserve, and those of another reserve start whose span reaches into it -- a store that
    grew since moved the reserve's start (it is a share of the sessions), so most of it was seen by them."""
    lo = pd.Timestamp(reserve_start)
    hi = pd.Timestamp(span_end) if span_end is not None else pd.Timestamp.max

    def seen(o: Opening) -> bool:
        if pd.Timestamp(o.reserve_start) == lo:
            return True
        return pd.Timestamp(o.reserve_start) <= hi and (o.span_end is None or pd.Timestamp(o.span_end) >= lo)

    return [o for o in earlier if seen(o)]


def record_opening(db: str | Path, reserve_start: Any, command: str, subject: str | None = None,
                   span_end: Any = None) -> list[Opening]:
    """Record one opening of the reserve starting ``reserve_start`` by ``command`` (``subject``: the study or
    configuration evaluated; ``span_end``: its last session). Returns the earlier openings that saw sessions of it:
    of that reserve, or of an earlier reserve start whose span reaches into it (``_overlapping``)."""
    before = _overlapping(openings(db), reserve_start, span_end)
    con = connect(db)
    try:
        with transaction(con):
            con.execute(f"INSERT INTO {LEDGER} VALUES (?, ?, ?, ?, ?)",
                        [pd.Timestamp(reserve_start).date(), dt.datetime.now(dt.timezone.utc).replace(microsecond=0), command,
                         subject, None if span_end is None else pd.Timestamp(span_end).date()])
    finally:
        con.close()
    return before


def opening_warning(reserve_start: Any, earlier: list[Opening]) -> str | None:
    """The loud warning for a repeated opening (None for the first one)."""
    if not earlier:
        return None
    first = earlier[0]
    moved = [o for o in earlier if o.reserve_start != _iso(reserve_start)]
    grew = (f"; {len(moved)} of them as the reserve starting {moved[0].reserve_start}"
            f"{f' through {moved[0].span_end}' if moved[0].span_end else ''}, whose sessions this one holds: the store "
            "grew since, which moved the reserve's start") if moved else ""
    return (f"WARNING: the final reserve starting {_iso(reserve_start)} was already opened {len(earlier)} time(s) "
            f"(first on {first.opened_at} by {first.command}{f' for {first.subject}' if first.subject else ''}{grew}); "
            "results on it are no longer a clean out-of-sample test")


def refuse_reserve(last: Any, reserve_start: Any, what: str) -> None:
    """A ParameterError when the span ending ``last`` reaches the reserve starting ``reserve_start`` (``what``
    names the command and the option that set the span)."""
    if reserve_start is not None and last is not None and pd.Timestamp(last) >= pd.Timestamp(reserve_start):
        raise ParameterError(
            f"{what} must end before the final reserve, which starts {_iso(reserve_start)}, got a span ending "
            f"{_iso(last)}; pass --final (in Python final=True) to open the reserve (recorded in the store's reserve "
            "ledger; a second opening warns)")


def guard_end(db: str | Path, symbols: list[str], end: Any, final: bool, what: str) -> tuple[str | None, str | None]:
    """(the span's last day, the reserve start) of an evaluation of ``symbols`` on the store at ``db`` without a
    study behind it: without ``final`` the default end is the day before the reserve and an ``end`` inside it is
    refused (``what`` names the command and option); with ``final`` ``end`` stands (None: the store's last day)."""
    as_date(end, "end")  # a date, or a ParameterError naming end (a number is not read as nanoseconds after 1970)
    con = connect(db, read_only=True)
    try:
        reserve_start = store_reserve_start(con, symbols)
    finally:
        con.close()
    if end is None and not final and reserve_start is not None:
        end = (pd.Timestamp(reserve_start) - pd.Timedelta(days=1)).date().isoformat()
    if not final:
        refuse_reserve(end, reserve_start, what)
    return (None if end is None else _iso(end)), reserve_start


def record_if_opened(db: str | Path, reserve_start: Any, last_day: Any, command: str,
                     subject: str | None = None) -> list[Opening] | None:
    """Record the opening when a span ending ``last_day`` reaches the reserve; the earlier openings (None: the span
    did not reach it)."""
    if reserve_start is None or last_day is None or pd.Timestamp(last_day) < pd.Timestamp(reserve_start):
        return None
    return record_opening(db, reserve_start, command, subject, _iso(last_day))
