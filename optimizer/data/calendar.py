"""NYSE trading calendar (holidays and weekends excluded), from exchange_calendars.

The calendar is built once per process over a wide span (1990-01-02 .. the end of the year after next; building
it costs ~0.4 s) and sliced for every request.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

from optimizer.errors import check_param

__all__ = ["nyse_sessions", "session_days", "FIRST_SESSION", "to_day", "as_date", "DateLike"]

FIRST_SESSION = dt.date(1990, 1, 2)
# anything ``pd.Timestamp`` accepts as a day: "2024-01-02", a date / datetime, a Timestamp, a numpy datetime64
DateLike = str | dt.date | pd.Timestamp | np.datetime64


@lru_cache(maxsize=4)
def _all_sessions(last_year: int) -> np.ndarray:
    """Every NYSE session from FIRST_SESSION to the end of ``last_year`` as sorted ``datetime64[D]``."""
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
    days = _all_sessions(max(dt.date.today().year + 1, hi.year))
    a = np.searchsorted(days, np.datetime64(lo, "D"), side="left")
    b = np.searchsorted(days, np.datetime64(hi, "D"), side="right")
    return days[a:b]


def nyse_sessions(start: DateLike, end: DateLike) -> pd.DatetimeIndex:
    """NYSE sessions in ``[start, end]`` as a tz-naive DatetimeIndex."""
    return pd.DatetimeIndex(session_days(start, end).astype("datetime64[ns]"))


def to_day(values: object) -> np.ndarray:
    """Any date-like values as numpy ``datetime64[D]``."""
    return pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[D]")


def as_date(value: DateLike | None, name: str) -> dt.date | None:
    """``value`` as a date (None stays None); ParameterError naming ``name`` when it is not one."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    check_param(not pd.isna(ts), name, "a date (YYYY-MM-DD)", value)
    return ts.date()
