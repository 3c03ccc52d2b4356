"""The NYSE calendar kept on disk between processes (``optimizer.data.calendar``): the same sessions as
exchange_calendars builds, a second process reads them without importing exchange_calendars, and a bad or missing
copy, or a folder that cannot be written to, only means the calendar is built again.

Oracle: ``exchange_calendars.get_calendar("XNYS", ...).sessions`` called here, not through the module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from optimizer.data import calendar

ROOT = Path(__file__).resolve().parents[1]
LAST_YEAR = calendar.market_today().year + 1  # the span session_days builds whatever it is asked for


def _oracle(last_year: int) -> np.ndarray:
    import exchange_calendars as xc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = xc.get_calendar("XNYS", start="1990-01-02", end=f"{last_year}-12-31").sessions
    return np.asarray(s.tz_localize(None) if s.tz is not None else s, dtype="datetime64[D]")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The calendar's disk copy in ``tmp_path/cache`` and its per-process memory emptied (again afterwards)."""
    monkeypatch.setattr(calendar, "_CACHE_DIR", tmp_path / "cache")
    calendar._all_sessions.cache_clear()
    yield tmp_path / "cache"
    calendar._all_sessions.cache_clear()


_PROBE = r"""
import json, sys
from pathlib import Path
import numpy as np
from optimizer.data import calendar
calendar._CACHE_DIR = Path(sys.argv[1])
days = calendar.session_days("1990-01-01", f"{calendar.market_today().year + 1}-12-31")
np.save(sys.argv[2], days)
print(json.dumps({"built": "exchange_calendars" in sys.modules,
                  "files": sorted(p.name for p in Path(sys.argv[1]).iterdir())}))
"""


def _probe(cache: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", _PROBE, str(cache), str(out)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_sessions_exchange_calendars_built(tmp_path):
    cache = tmp_path / "cache"
    first = _probe(cache, tmp_path / "first.npy")
    assert first["built"] is True  # nothing on disk yet: built with exchange_calendars
    assert len(first["files"]) == 1 and first["files"][0].endswith(f"-19900102-{LAST_YEAR}.npy")
    assert not [f for f in first["files"] if f.endswith(".tmp")]  # written whole, no temporary file left
    second = _probe(cache, tmp_path / "second.npy")
    assert second["built"] is False and second["files"] == first["files"]  # read from disk
    oracle = _oracle(LAST_YEAR)
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), oracle)
    np.testing.assert_array_equal(np.load(tmp_path / "second.npy"), oracle)


def test_the_file_name_holds_what_the_sessions_depend_on(cache_dir):
    import importlib.metadata

    import pandas as pd

    name = calendar._cache_path(2031).name
    assert name == (f"nyse_sessions-xc{importlib.metadata.version('exchange_calendars')}-pd{pd.__version__}"
                    f"-19900102-2031.npy")


@pytest.mark.parametrize("bad", ["truncated", "not_numpy", "wrong_dtype", "wrong_start", "unsorted", "short_span"])
def test_a_bad_copy_is_ignored_and_replaced(cache_dir, bad):
    oracle = _oracle(LAST_YEAR)
    path = calendar._cache_path(LAST_YEAR)
    path.parent.mkdir(parents=True)
    if bad == "truncated":
        np.save(path, oracle)
        path.write_bytes(path.read_bytes()[:-800])
    elif bad == "not_numpy":
        path.write_text("not a calendar")
    else:
        arr = {"wrong_dtype": oracle.astype("datetime64[s]"), "wrong_start": oracle[1:],
               "unsorted": oracle[::-1].copy(), "short_span": oracle[oracle < np.datetime64(f"{LAST_YEAR}-01-01")]}[bad]
        np.save(path, arr)
    days = calendar.session_days("1990-01-01", f"{LAST_YEAR}-12-31")
    np.testing.assert_array_equal(days, oracle)
    assert days.dtype == np.dtype("datetime64[D]")
    kept = np.load(path)  # rewritten with the built calendar
    np.testing.assert_array_equal(kept, oracle)
    assert kept.dtype == np.dtype("datetime64[D]")


def test_an_unwritable_folder_still_gives_the_calendar(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(calendar, "_CACHE_DIR", blocker / "cache")  # a folder under a file cannot be made
    calendar._all_sessions.cache_clear()
    try:
        days = calendar.session_days("2024-01-01", "2024-12-31")
    finally:
        calendar._all_sessions.cache_clear()
    oracle = _oracle(LAST_YEAR)
    np.testing.assert_array_equal(days, oracle[(oracle >= np.datetime64("2024-01-01"))
                                               & (oracle <= np.datetime64("2024-12-31"))])
    assert len(days) == 252 and str(days[0]) == "2024-01-02" and str(days[-1]) == "2024-12-31"
