"""NYSE trading calendar (holidays and weekends excluded), from exchange_calendars.

The calendar is built once per process over a wide span (1990-01-02 .. the end of the year after next) and sliced
for every request. Building it (importing exchange_calendars and computing ~9,600 sessions) costs ~0.25 s of CPU,
which every command paid: the sessions are also kept on disk, in ``__pycache__`` next to this module (where Python
keeps its own compiled files), in a file whose name holds everything they depend on (the exchange_calendars and
pandas versions, the first session and the last year), written whole (a temporary file, then a rename). A process
that finds it loads ~80 KB instead; a file that cannot be read back as sorted unique days from FIRST_SESSION to
that year is ignored (rebuilt and rewritten); a folder that cannot be written to only means each process builds.

Time: the calendar's "now" and "today" are New York's (``MARKET_TZ``), whatever the machine's time zone: the NYSE's
sessions and a FINRA file's publication (``FINRA_PUBLISHED_BY`` on its session, New York time) are New York events.
Every reading of the clock goes through ``market_now`` (tests replace ``_utc_now``, the one clock).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import re
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from optimizer.errors import check_param

__all__ = ["nyse_sessions", "session_days", "FIRST_SESSION", "to_day", "as_date", "DateLike", "MARKET_TZ",
           "FINRA_PUBLISHED_BY", "market_now", "market_today", "tonight_session", "REGULAR_CLOSE", "early_closes",
           "stamp", "local_time", "is_midnight", "INSTANT_DAY_RULE"]

FIRST_SESSION = dt.date(1990, 1, 2)
# the NYSE's time zone: its sessions, "today" and a FINRA file's publication are New York's, whatever the machine's
MARKET_TZ = "America/New_York"
# FINRA posts a session's Reg SHO daily files "no later than 6:00:00 pm ET" of that day
FINRA_PUBLISHED_BY = dt.time(18, 0)
# anything ``pd.Timestamp`` accepts as a day: "2024-01-02", a date / datetime, a Timestamp, a numpy datetime64
DateLike = str | dt.date | pd.Timestamp | np.datetime64


# where the built sessions are kept between processes (see the module docstring); tests point it elsewhere
_CACHE_DIR = Path(__file__).resolve().parent / "__pycache__"


@lru_cache(maxsize=4)
def _all_sessions(last_year: int) -> np.ndarray:
    """Every NYSE session from FIRST_SESSION to the end of ``last_year`` as sorted ``datetime64[D]``: read from the
    disk copy when there is a valid one, else built (``_build_sessions``) and written there."""
    path = _cache_path(last_year)
    days = _read_cached(path, last_year)
    if days is None:
        days = _build_sessions(last_year)
        _write_cached(path, days)
    return days


def _cache_path(last_year: int) -> Path:
    versions = f"xc{importlib.metadata.version('exchange_calendars')}-pd{pd.__version__}"
    return _CACHE_DIR / f"nyse_sessions-{versions}-{FIRST_SESSION:%Y%m%d}-{last_year}.npy"


def _read_cached(path: Path, last_year: int) -> np.ndarray | None:
    """The sessions kept in ``path``, or None when there is none or it is not a calendar of that span (a truncated
    or foreign file: sorted unique days, the first FIRST_SESSION, the last in ``last_year``)."""
    try:
        days = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing or unreadable: built again
        return None
    ok = (days.dtype == np.dtype("datetime64[D]") and days.ndim == 1 and len(days) > 1
          and days[0] == np.datetime64(FIRST_SESSION, "D") and bool(np.all(days[1:] > days[:-1]))
          and days[-1].astype(object).year == last_year)
    return days if ok else None


def _write_cached(path: Path, days: np.ndarray) -> None:
    """Write ``days`` to ``path`` whole (a temporary file in the same folder, then a rename: a reader never sees
    half a file). A folder that cannot be written to (a read-only install) keeps nothing: the next process builds."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    except OSError:  # not writable: nothing is kept, nothing else changes
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, days, allow_pickle=False)
        os.chmod(tmp, 0o644)  # readable like Python's own compiled files (mkstemp makes it private)
        os.replace(tmp, path)
    except OSError:  # e.g. the disk is full: the partial temporary file is removed, the calendar is still returned
        Path(tmp).unlink(missing_ok=True)


def _build_sessions(last_year: int) -> np.ndarray:
    """Every NYSE session from FIRST_SESSION to the end of ``last_year``, from exchange_calendars."""
    import exchange_calendars as xc  # lazy: heavy (~0.4 s), only needed the first time a calendar is asked for

    with warnings.catch_warnings():  # exchange_calendars triggers a pandas deprecation warning internally
        warnings.simplefilter("ignore")
        cal = xc.get_calendar("XNYS", start=str(FIRST_SESSION), end=f"{last_year}-12-31")
    s = pd.DatetimeIndex(cal.sessions)
    if s.tz is not None:
        s = s.tz_localize(None)
    return np.asarray(s.normalize(), dtype="datetime64[D]")


def session_days(start: DateLike, end: DateLike) -> np.ndarray:
    """NYSE sessions in ``[start, end]`` as sorted ``datetime64[D]`` (empty before 1990-01-02 or when end < start)."""
    lo = max(pd.Timestamp(start).date(), FIRST_SESSION)
    hi = pd.Timestamp(end).date()
    if hi < lo:
        return np.array([], dtype="datetime64[D]")
    days = _all_sessions(max(market_today().year + 1, hi.year))
    a = np.searchsorted(days, np.datetime64(lo, "D"), side="left")
    b = np.searchsorted(days, np.datetime64(hi, "D"), side="right")
    return days[a:b]


REGULAR_CLOSE = dt.time(16, 0)  # the NYSE's regular close, New York time


@lru_cache(maxsize=1)
def early_closes() -> dict[dt.date, dt.time]:
    """The NYSE sessions from FIRST_SESSION to the end of next year that close early, with their close (New York
    time): 13:00 (14:00 on four days of 1990-1992), from exchange_calendars (imported here only: ~0.2 s, once per
    process)."""
    import exchange_calendars as xc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = xc.get_calendar("XNYS", start=str(FIRST_SESSION), end=f"{market_today().year + 1}-12-31")
    closes = cal.schedule.loc[cal.early_closes, "close"].dt.tz_convert(MARKET_TZ)
    return {ts.date(): c.time() for ts, c in zip(pd.DatetimeIndex(closes.index), closes)}


def _utc_now() -> dt.datetime:
    """The clock (aware, UTC): the one place the calendar reads the time (tests replace it)."""
    return dt.datetime.now(dt.timezone.utc)


def market_now() -> dt.datetime:
    """Now in New York (aware), whatever the machine's time zone."""
    return _utc_now().astimezone(ZoneInfo(MARKET_TZ))


def market_today() -> dt.date:
    """Today's date in New York: the day after which a session, a bar or a file's date is in the future."""
    return market_now().date()


def stamp() -> str:
    """Now as ISO 8601 in New York time with its UTC offset (``2026-12-04T23:12:06-05:00``): a time a command
    writes (a report's "generated", a study's "created") states its zone and is the same on every machine."""
    return market_now().isoformat(timespec="seconds")


def local_time(value: object) -> pd.Timestamp:
    """A real time as the machine's local time with its UTC offset (``2026-12-05T07:39:11-05:00`` on a New York
    machine, ``...+00:00`` on a UTC one), NaT for None / NaT: an aware value converted; a naive one (an Optuna trial's
    start, a reserve-ledger row, a study record written before 2026-12-05) taken as the local time it was written
    in, which is this machine's when the storage or store was written here (the offset is that of its own instant:
    a summer and a winter time differ by the daylight-saving hour)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return pd.NaT
    ts = pd.Timestamp(value)
    return pd.Timestamp(ts.to_pydatetime().astimezone())  # naive: as local time (datetime.astimezone's rule)


def tonight_session(now: dt.datetime | None = None) -> dt.date:
    """The latest NYSE session whose FINRA daily file is due by ``now`` (default: ``market_now()``): a session D
    counts from D at FINRA_PUBLISHED_BY, New York time (so at 17:00 New York on a session day, the session before
    it; in Tokyo at 08:00 on D + 1, D)."""
    now = (now or market_now()).astimezone(ZoneInfo(MARKET_TZ))
    day = now.date() if now.time() >= FINRA_PUBLISHED_BY else now.date() - dt.timedelta(days=1)
    past = session_days(day - dt.timedelta(days=14), day)  # the NYSE never closes for 14 days running
    return past[-1].astype(object)


def nyse_sessions(start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """NYSE sessions in ``[start, end]`` as a tz-naive DatetimeIndex."""
    return pd.DatetimeIndex(session_days(start, end).astype("datetime64[ns]"))


def to_day(values: object) -> np.ndarray:
    """Any date-like values as numpy ``datetime64[D]``."""
    return pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[D]")


# a date written as text: YYYY-MM-DD (or YYYYMMDD), at most with a midnight time and no zone (what str() of a
# Timestamp gives); the rest of what pd.Timestamp reads is refused: 'today' / 'now' (the machine's date, not New
# York's), '2024' or '2024-01' (read as January 1st), '05/01/2024' (May 1st, or January 5th?), a time of day or a
# zone (a session is a New York day: 2024-01-05T23:00-10:00 is January 6th there)
_DATE_TEXT = re.compile(r"(?:(\d{4})-(\d{1,2})-(\d{1,2})|(\d{4})(\d{2})(\d{2}))(?:[ T]00:00(?::00(?:\.0+)?)?)?")


# what an instant given for a day must be (a datetime, Timestamp or datetime64): the day it names, never one guessed
INSTANT_DAY_RULE = "a date (YYYY-MM-DD, a datetime.date or a midnight Timestamp without a time zone)"


def is_midnight(ts: object) -> bool:
    """The one rule for an instant given where a day is asked for (a user's date, a spec's, the API's): a tz-naive
    midnight (not NaT) is that day; a time of day or a time zone names no session (2024-01-05T23:00-10:00 is
    January 6th in New York), and is refused by ``as_date``."""
    ts = pd.Timestamp(ts)
    return not pd.isna(ts) and ts.tzinfo is None and ts == ts.normalize()


def as_date(value: DateLike | None, name: str) -> dt.date | None:
    """``value`` as a date (None stays None); ParameterError naming ``name`` when it is not one. Text must be a
    date, YYYY-MM-DD (``_DATE_TEXT``); a date gives itself, a datetime, Timestamp or datetime64 its day when it is a
    midnight without a time zone (``is_midnight``; a time of day or a zone is refused naming ``name`` and the value:
    it was read as its calendar day without a word). The sessions the code passes (tz-naive midnights) are days."""
    if value is None:
        return None
    ts = pd.NaT
    try:  # a number is no date: pd.Timestamp(20240102) is nanoseconds after 1970-01-01, not 2024-01-02
        if isinstance(value, str):
            m = _DATE_TEXT.fullmatch(value.strip())
            ts = pd.Timestamp(dt.date(*(int(g) for g in m.groups() if g is not None))) if m else pd.NaT
        elif not isinstance(value, (int, float, np.number)):
            ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if isinstance(value, (dt.datetime, np.datetime64)) and not pd.isna(ts):
        check_param(is_midnight(ts), name, INSTANT_DAY_RULE, value)
    check_param(not pd.isna(ts), name, "a date (YYYY-MM-DD)", value)
    return ts.date()
