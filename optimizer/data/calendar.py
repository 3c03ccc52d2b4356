"""NYSE trading calendar (holidays and weekends excluded), from exchange_calendars."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["nyse_sessions"]


@lru_cache(maxsize=32)
def _sessions(start: str, end: str) -> tuple:
    import exchange_calendars as xc

    lo = max(pd.Timestamp(start), pd.Timestamp("1990-01-02"))
    hi = pd.Timestamp(end)
    if hi < lo:
        return ()
    with warnings.catch_warnings():  # exchange_calendars triggers a pandas deprecation warning internally
        warnings.simplefilter("ignore")
        cal = xc.get_calendar(
            "XNYS", start=(lo - pd.Timedelta(days=7)).strftime("%Y-%m-%d"), end=(hi + pd.Timedelta(days=7)).strftime("%Y-%m-%d")
        )
    s = pd.DatetimeIndex(cal.sessions)
    if s.tz is not None:
        s = s.tz_localize(None)
    s = s.normalize()
    return tuple(s[(s >= lo) & (s <= hi)])


def nyse_sessions(start, end) -> pd.DatetimeIndex:
    """NYSE sessions in ``[start, end]`` as a tz-naive DatetimeIndex."""
    return pd.DatetimeIndex(list(_sessions(str(pd.Timestamp(start).date()), str(pd.Timestamp(end).date()))))


def to_day(values) -> np.ndarray:
    """Any date-like values as numpy ``datetime64[D]``."""
    return pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[D]")
