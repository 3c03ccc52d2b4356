"""Time, calendars and clocks (explore13): what a command computes must not depend on the machine's time zone.

"Today", "tonight's session" and "the future" are New York's (the NYSE's and FINRA's zone), read from one clock
(``calendar._utc_now``), which these tests fix; the machine's zone is set with ``TZ`` (``time.tzset``) to zones
ahead of and behind New York: Asia/Tokyo (UTC+9), Pacific/Kiritimati (UTC+14), America/Los_Angeles, UTC.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from optimizer.data import calendar
from optimizer.study.paramsfile import ParamsRecord

UTC = dt.timezone.utc
ZONES = ("Asia/Tokyo", "Pacific/Kiritimati", "America/Los_Angeles", "UTC", "America/New_York")


@pytest.fixture
def machine(monkeypatch):
    """``machine(tz, utc)``: the machine's time zone set to ``tz`` and the calendar's clock fixed at ``utc``
    (both restored afterwards)."""

    def set_(tz: str, utc: dt.datetime) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        monkeypatch.setattr(calendar, "_utc_now", lambda: utc)

    yield set_
    monkeypatch.undo()
    time.tzset()


class _Stop(Exception):
    pass


def _evening_through(monkeypatch, tmp_path, through=None, warnings=None) -> dt.date:
    """The last day the evening asks the fetch for (its ``_fetch`` replaced: nothing is downloaded or built);
    ``warnings``: a list that receives the evening's warnings so far."""
    import optimizer.evening as ev

    seen = {}

    def fake_fetch(db, cache, day, universe, settings, res, *a, **k):
        seen["through"] = day
        if warnings is not None:
            warnings.extend(res.warnings)
        raise _Stop

    monkeypatch.setattr(ev, "_fetch", fake_fetch)
    with pytest.raises(_Stop):
        ev.run_evening(ParamsRecord({}), tmp_path / "none.duckdb", tmp_path / "o", through=through)
    return seen["through"]


# (the clock in UTC, what it is in New York, tonight's session: the latest whose FINRA file is due, 18:00 New York)
TONIGHT = [
    (dt.datetime(2024, 6, 27, 23, 30, tzinfo=UTC), "Thu 19:30 EDT", dt.date(2024, 6, 27)),  # Tokyo: Fri 08:30
    (dt.datetime(2024, 6, 27, 21, 0, tzinfo=UTC), "Thu 17:00 EDT: not due yet", dt.date(2024, 6, 26)),
    (dt.datetime(2024, 6, 29, 4, 30, tzinfo=UTC), "Sat 00:30 EDT (LA: Fri 21:30)", dt.date(2024, 6, 28)),
    (dt.datetime(2024, 7, 1, 22, 0, tzinfo=UTC), "Mon 18:00 EDT exactly", dt.date(2024, 7, 1)),
    (dt.datetime(2025, 1, 10, 0, 0, tzinfo=UTC), "Thu 2025-01-09 19:00 EST: closed (mourning)", dt.date(2025, 1, 8)),
    (dt.datetime(2024, 3, 10, 23, 0, tzinfo=UTC), "Sun 19:00 EDT, the DST change day", dt.date(2024, 3, 8)),
    (dt.datetime(2024, 11, 4, 22, 59, tzinfo=UTC), "Mon 17:59 EST after the change back", dt.date(2024, 11, 1)),
]


@pytest.mark.parametrize("tz", ZONES)
def test_evening_fetches_through_tonights_new_york_session_in_every_machine_zone(tz, machine, monkeypatch, tmp_path):
    """`evening` without --through fetched through the MACHINE's date (dt.date.today()): in Tokyo at 08:30 on Fri
    2024-06-28 (Thu 19:30 in New York, Thursday's file just out) it asked for Friday's file too, which FINRA had not
    published (a 404 reported as "no file published for this session"); in Los Angeles at 21:30 on Friday (Sat
    00:30 New York) it was right by luck. It now fetches through tonight's session: the latest NYSE session whose
    FINRA file is due (18:00 New York time), the same in every zone."""
    for utc, _what, want in TONIGHT:
        machine(tz, utc)
        said: list[str] = []
        assert _evening_through(monkeypatch, tmp_path, warnings=said) == want, (tz, _what)
        # before 18:00 New York on a session day, the evening says why today's session is not fetched
        today = utc.astimezone(ZoneInfo("America/New_York")).date()
        assert said == ([f"fetch: today's session {today} is not in: its FINRA file is due by 18:00 New York time; "
                         f"fetched through {want} (--through {today} asks for it now)"]
                        if today > want and len(calendar.session_days(today, today)) else []), (tz, _what)


def test_evening_refuses_a_through_after_new_yorks_today_in_a_zone_ahead_of_it(machine, monkeypatch, tmp_path):
    """In Tokyo at 08:30 on Fri 2024-06-28 (Thu 19:30 in New York) `--through 2024-06-28` passed the "on or before
    today" check (the machine's today); New York's Friday has not begun trading. Refused, naming New York's today;
    Thursday is taken."""
    from optimizer.errors import ParameterError

    machine("Asia/Tokyo", dt.datetime(2024, 6, 27, 23, 30, tzinfo=UTC))
    with pytest.raises(ParameterError, match=r"through must be on or before today in New York \(2024-06-27\), "
                                             r"got through='2024-06-28'"):
        _evening_through(monkeypatch, tmp_path, through="2024-06-28")
    assert _evening_through(monkeypatch, tmp_path, through="2024-06-27") == dt.date(2024, 6, 27)


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_ingest_refuses_a_row_dated_after_new_yorks_today_in_every_machine_zone(tz, machine, tmp_path):
    """At 19:30 New York on Thu 2024-06-27 a prices row dated Fri 2024-06-28 is in the future. Under TZ=Asia/Tokyo
    or Pacific/Kiritimati (where it is already the 28th) the ingest accepted it (2 rows accepted, 0 rejected,
    measured with faketime); under America/New_York, Los_Angeles or UTC it was rejected. Rejected in every zone."""
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect

    machine(tz, dt.datetime(2024, 6, 27, 23, 30, tzinfo=UTC))
    f = tmp_path / "px.csv"
    f.write_text("date,symbol,open,high,low,close,volume\n2024-06-27,AAPL,10,11,9,10.5,1000\n"
                 "2024-06-28,AAPL,10,11,9,10.5,1000\n")
    con = connect(tmp_path / "s.duckdb")
    try:
        rep = ingest_paths(con, "prices", [f])
        assert (rep.rows_accepted, rep.rows_rejected) == (1, 1)
        reason, = con.execute("SELECT reason FROM ingest_rejects").fetchone()
        assert "date 2024-06-28 is in the future (today in New York is 2024-06-27)" in reason
        assert con.execute("SELECT max(date) FROM prices_daily").fetchone()[0] == dt.date(2024, 6, 27)
    finally:
        con.close()


def test_market_today_is_new_yorks_date_whatever_the_machine_zone(machine):
    for tz in ZONES:
        machine(tz, dt.datetime(2024, 6, 28, 3, 0, tzinfo=UTC))  # Thu 23:00 New York, Fri elsewhere east of it
        assert calendar.market_today() == dt.date(2024, 6, 27), tz
        assert calendar.market_now().utcoffset() == dt.timedelta(hours=-4)


# --- dates a user writes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["today", "now", "2024", "2024-01", "05/01/2024", "Jan 5 2024", "2024-01-05 15:30",
                                  "2024-01-05T23:00-10:00", "2024-01-05T00:00Z", "2024115", "2024-02-30"])
def test_a_date_option_refuses_what_is_no_calendar_date(text):
    """calendar.as_date read anything pd.Timestamp reads: 'today' / 'now' as the MACHINE's date (2026-12-05 under
    UTC at 04:55 while New York was on 2026-12-04), '2024' and '2024-01' as 2024-01-01, '05/01/2024' as May 1st,
    '2024-01-05T23:00-10:00' as 2024-01-05 (January 6th in New York), '2024-01-05 15:30' as its day. Each is
    refused naming the option; only an invalid day (2024-02-30) was refused before."""
    from optimizer.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^start must be a date \(YYYY-MM-DD\), got start="):
        calendar.as_date(text, "start")


def test_a_date_option_reads_iso_dates_and_date_objects():
    import numpy as np
    import pandas as pd

    from optimizer.errors import ParameterError

    want = dt.date(2024, 1, 5)
    for v in ["2024-01-05", " 2024-1-5 ", "20240105", "2024-01-05 00:00:00", "2024-01-05T00:00", dt.date(2024, 1, 5),
              dt.datetime(2024, 1, 5), pd.Timestamp("2024-01-05"), np.datetime64("2024-01-05")]:
        assert calendar.as_date(v, "start") == want, v
    # an instant with a time of day names no day, as text with one does not (mend18: was read as its day)
    with pytest.raises(ParameterError, match=r"^start must be a date \(YYYY-MM-DD, a datetime.date or a midnight "):
        calendar.as_date(dt.datetime(2024, 1, 5, 15, 0), "start")


def test_the_commands_dates_follow_the_one_rule(synth_db, tmp_path):
    """`table --date` (the scanner's date rule), `signals --date` / `--start` and `data synth --start` each read
    dates their own way (pd.Timestamp): `table --date 2024` looked for 2024-01-01 ('no FINRA data on 2024-01-01'),
    `signals --date today` for the machine's date. Each is now refused by calendar.as_date's rule, naming the
    option, exit 2."""
    import json

    from click.testing import CliRunner

    from optimizer.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], env={"ACCUMOPT_DB": None, "ACCUMOPT_OUTPUT": None},
                                  catch_exceptions=True)

    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": {}}))
    for args, name, value in [
        (("table", "--db", synth_db, "--date", "2024", "--out", tmp_path / "o"), "date", "2024"),
        (("signals", "--params", p, "--db", synth_db, "--date", "today", "--no-save"), "date", "today"),
        (("signals", "--params", p, "--db", synth_db, "--start", "2024-01", "--no-save"), "start", "2024-01"),
        (("data", "synth", "--start", "now", "--end", "2024-01-31", "--out", tmp_path / "s"), "start", "now"),
    ]:
        res = run(*args)
        assert res.exit_code == 2, (args, res.output)
        # the flag typed (mend18)
        assert f"--{name} must be a date (YYYY-MM-DD), got '{value}'" in res.output, (args, res.output)
    assert not (tmp_path / "s").exists()


# --- lit-trades: the session a trade counts in ----------------------------------------------------------------------

def test_lit_trades_count_the_regular_session_across_dst_and_early_closes(tmp_path):
    """Trades at the window's edges on the first Monday after each DST change (2024-03-11 EDT, 2024-11-04 EST) in
    UTC, with offsets and in another zone are counted by New York time (right before and after). On the early-close
    session 2024-11-29 (13:00) the window still ran to 16:15: a 13:30 sell of 1,000 and a 15:59 sell of 5,000
    (after-hours, which that day's FINRA short volume does not count) made the day's lit flow buy 110 / sell 6,000;
    the window now ends at 13:15 there (15 minutes after the close, as 16:15 is after 16:00): buy 110 / sell 0."""
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect

    rows = [
        ("2024-03-11T13:29:59Z", "B", 1),        # 09:29:59 EDT: before the open
        ("2024-03-11T13:30:00Z", "B", 2),        # 09:30:00 EDT
        ("2024-03-11T20:00:00Z", "S", 4),        # 16:00:00 EDT: the closing print
        ("2024-03-11T20:15:00Z", "S", 8),        # 16:15:00 EDT: outside the half-open window
        ("2024-11-04T14:29:59Z", "B", 16),       # 09:29:59 EST
        ("2024-11-04T09:30:00-05:00", "B", 32),
        ("2024-11-04T21:00:00+00:00", "S", 64),  # 16:00 EST
        ("2024-11-04T16:00:00-08:00", "S", 128),  # 19:00 EST: after hours
        ("2024-11-29T12:59:59-05:00", "B", 100),
        ("2024-11-29T13:00:00-05:00", "B", 10),  # the early close's closing print
        ("2024-11-29T18:30:00Z", "S", 1000),     # 13:30 EST: after the early close
        ("2024-11-29T15:59:00-05:00", "S", 5000),
    ]
    f = tmp_path / "AAPL_trades.csv"
    f.write_text("timestamp,price,size,side\n" + "".join(f"{t},100.0,{n},{s}\n" for t, s, n in rows))
    con = connect(tmp_path / "s.duckdb")
    try:
        rep = ingest_paths(con, "lit-trades", [f])
        assert rep.exit_code == 0, rep.to_dict()
        got = con.execute("SELECT CAST(date AS VARCHAR), lit_buy_volume, lit_sell_volume FROM lit_flow_daily "
                          "ORDER BY date").fetchall()
    finally:
        con.close()
    assert got == [("2024-03-11", 2, 4), ("2024-11-04", 32, 64), ("2024-11-29", 110, 0)]


# --- fetch: the days a source can have ------------------------------------------------------------------------------

def test_fetch_refuses_a_future_end_and_says_which_files_are_not_due_yet(machine, monkeypatch, tmp_path):
    """At 16:00 New York on Thu 2024-06-27 (Fri 05:00 in Tokyo): `fetch finra-short --end 2099-12-31` asked FINRA
    for every session to 2099 (19,000 requests, each a 404 'no file published for this session'); --end 2024-06-28
    (the machine's today in Tokyo) asked for Friday's. An end after New York's today is refused by every fetcher;
    the 404 of today's file before 18:00 New York says it is not published yet, an earlier session's that there is
    none."""
    import optimizer.data.fetch as fetch
    from optimizer.errors import ParameterError
    from optimizer.settings import Settings

    machine("Asia/Tokyo", dt.datetime(2024, 6, 27, 20, 0, tzinfo=UTC))
    asked = []
    monkeypatch.setattr(fetch, "http_request", lambda url, **k: asked.append(url.rsplit("/", 1)[-1]))  # all 404
    for end in ("2024-06-28", "2099-12-31"):
        with pytest.raises(ParameterError, match=rf"^end must be on or before today in New York \(2024-06-27\), "
                                                 rf"got end='{end}'$"):
            fetch.fetch_finra_short("2024-06-26", end, tmp_path, Settings())
        with pytest.raises(ParameterError, match=r"^end must be on or before today in New York"):
            fetch.fetch_polygon_prices(["AAPL"], "2024-06-26", end, tmp_path, Settings(polygon_api_key="k"))
    assert asked == []
    got = fetch.fetch_finra_short("2024-06-26", "2024-06-27", tmp_path, Settings())
    assert asked == ["CNMSshvol20240626.txt", "CNMSshvol20240627.txt"]
    assert got.missing == [("CNMSshvol20240626.txt", "HTTP 404: no file published for this session"),
                           ("CNMSshvol20240627.txt", "HTTP 404: not published yet (FINRA posts a session's file by "
                                                     "18:00 New York time)")]


# --- times a command writes -----------------------------------------------------------------------------------------

def test_times_a_command_writes_state_new_york_time_whatever_the_machine_zone(machine, tmp_path):
    """A study's ``created`` (and a legacy reserve-log opening's ``at``, and a research / walk-forward report's
    "generated") were the machine's local time without a zone: the same instant, 2024-06-27 23:30 UTC, was
    '2024-06-28T08:30:00' under TZ=Asia/Tokyo and '2024-06-27T16:30:00' under America/Los_Angeles (measured with
    faketime on a 12-trial study: '2026-12-05T13:00:02' in Tokyo, '2026-12-05T04:00:02' under UTC). They are now New
    York time with its offset, '2024-06-27T19:30:00-04:00' in every zone; `study list` shows such a created in local
    time, as Optuna shows a trial's start (the column's other source), with its UTC offset since mend18."""
    from types import SimpleNamespace

    import optuna

    from optimizer.study import records
    from optimizer.study.inspect import list_studies
    from optimizer.study.run import study_record
    from optimizer.study.spec import parse_spec

    spec = parse_spec((Path(__file__).resolve().parents[1] / "studies" / "demo.toml").read_text())
    panel = SimpleNamespace(symbols=("AAPL",), dates=[], coverage=None)
    data = SimpleNamespace(train_dates=("2024-01-02", "2024-06-27"), panel=panel, folds=[], fingerprint="f", lo=0,
                           hi=1, cv_embargo=0, cv_n_splits=2, reserve_start="2024-06-28")
    for tz, local in (("Asia/Tokyo", "2024-06-28 08:30:00"), ("America/Los_Angeles", "2024-06-27 16:30:00"),
                      ("UTC", "2024-06-27 23:30:00")):
        machine(tz, dt.datetime(2024, 6, 27, 23, 30, tzinfo=UTC))
        assert study_record(spec, data).created == "2024-06-27T19:30:00-04:00", tz
        assert records._now_iso() == calendar.stamp() == "2024-06-27T19:30:00-04:00", tz
        url = f"sqlite:///{tmp_path / (tz.replace('/', '_') + '.db')}"
        s = optuna.create_study(study_name="s", storage=url)
        s.set_user_attr("created", calendar.stamp())
        got = list_studies(url).loc[0, "created"]  # local time with its offset (mend18: was without zone)
        assert got.replace(tzinfo=None) == dt.datetime.fromisoformat(local) and got.tzinfo is not None, tz


def test_a_lit_trades_file_none_of_whose_trades_lies_in_the_window_is_warned_of(tmp_path):
    """A user in Tokyo who sets MARKET_TZ=Asia/Tokyo (the machine's zone): a trades file with New York offsets
    (09:30 and 15:00 EST, i.e. 23:30 and 05:00 in Tokyo) was ingested 'ok', 0 rows, no word (the naive-times
    warning only looks at times without an offset). It is warned of, naming the window, the zone and the NYSE's."""
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect
    from optimizer.settings import Settings

    f = tmp_path / "AAPL_t.csv"
    f.write_text("timestamp,price,size,side\n2024-11-04T09:30:00-05:00,100,32,B\n2024-11-04T15:00:00-05:00,100,64,S\n")
    con = connect(tmp_path / "s.duckdb")
    try:
        rep = ingest_paths(con, "lit-trades", [f], settings=Settings(market_tz="Asia/Tokyo"))
        assert rep.rows_accepted == 0
        assert rep.warnings == ["lit-trades: AAPL_t.csv: none of its 2 trades lies inside the session window "
                                "09:30-16:15 Asia/Tokyo: nothing was counted; MARKET_TZ is the market's zone, the "
                                "NYSE's is America/New_York"]
        rep = ingest_paths(con, "lit-trades", [f])  # New York: both counted, no warning
        assert rep.rows_accepted == 1 and rep.warnings == []
    finally:
        con.close()


def test_a_popped_waiting_trial_starts_at_the_time_it_was_popped_in_every_machine_zone(monkeypatch, tmp_path):
    """The storage's WAITING -> RUNNING update (an enqueued seed, a heartbeat retry) wrote ``datetime.now()`` --
    the machine's naive local time -- into Optuna's datetime_start column, which holds naive UTC (Optuna's model
    converts on its attribute; a Core UPDATE bypasses it). Under TZ=Asia/Tokyo such a trial showed a start 9 hours
    late (+9:00:00.0 against the clock), under America/Los_Angeles 8 hours early, and `study list`'s created
    followed. It is written in UTC."""
    import optuna

    from optimizer.study.storage import make_storage

    for tz in ("Asia/Tokyo", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        try:
            url = f"sqlite:///{tmp_path / (tz.replace('/', '_') + '.db')}"
            study = optuna.create_study(study_name="s", storage=make_storage(url))
            study.enqueue_trial({"x": 1.0})
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
            assert trial.params == {"x": 1.0}  # the popped seed
            shown = study.get_trials(deepcopy=False)[0].datetime_start  # naive local, as Optuna shows it
            assert abs((shown - dt.datetime.now()).total_seconds()) < 600, (tz, shown, dt.datetime.now())
        finally:
            monkeypatch.undo()
            time.tzset()


def test_a_synthetic_store_past_new_yorks_today_is_refused_before_anything_is_written(machine, tmp_path):
    """`data synth --db --end 2027-03-31` (on 2026-12-05) wrote the raw files, ingested the FINRA files up to
    2026-12-04 (92 rows), then failed on CNMSshvol20261207.txt ('date 2026-12-07 is in the future'), leaving a
    half-built store and the raw folder. Refused before anything is written, naming New York's today."""
    from optimizer.data.synth import SynthConfig, synth_to_db
    from optimizer.errors import ParameterError

    machine("Asia/Tokyo", dt.datetime(2024, 6, 27, 23, 30, tzinfo=UTC))  # Fri 08:30 in Tokyo, Thu in New York
    cfg = SynthConfig(start="2024-06-03", end="2024-06-28", universe=["AAPL", "SPY"])
    with pytest.raises(ParameterError, match=r"^end must be on or before today in New York \(2024-06-27\) to be "
                                             r"ingested \(a store holds no future session\), got end='2024-06-28'$"):
        synth_to_db(cfg, tmp_path / "raw", tmp_path / "s.duckdb")
    assert list(tmp_path.iterdir()) == []


# --- a study's timeout ----------------------------------------------------------------------------------------------

def test_a_study_timeout_is_not_moved_by_a_daylight_saving_change(monkeypatch):
    """`study run` handed its remaining time to Optuna's ``optimize(timeout=...)``, which measures the machine's
    local wall clock (``datetime.now()``). Across the New York spring-forward (2024-03-10 01:59 EST -> 03:00 EDT) a
    run with 30 minutes left ran no trial at all (0 of 5: Optuna saw an hour pass before the first); in November
    it would run an hour past its end. The deadline is now kept on ``time.monotonic()`` (_pool.deadline): 5 of 5."""
    from types import SimpleNamespace

    import optuna
    import optuna.study._optimize as optimize_mod

    from optimizer.study.run import _optimize_budget

    class _SpringForward(dt.datetime):  # the wall clock Optuna reads: the first reading, then an hour later
        readings = 0

        @classmethod
        def now(cls, tz=None):
            cls.readings += 1
            start = dt.datetime(2024, 3, 10, 1, 59, 30)
            return start if cls.readings == 1 else start + dt.timedelta(hours=1, seconds=1)

    monkeypatch.setattr(optimize_mod, "datetime", SimpleNamespace(datetime=_SpringForward))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    _optimize_budget(study, study._storage, lambda t: t.suggest_float("x", 0, 1), target=5, timeout=1800.0,
                     callbacks=[])
    assert _SpringForward.readings >= 1  # Optuna read the (jumping) clock
    assert len(study.trials) == 5


# --- OTC weekly data across a year end and a holiday --------------------------------------------------------------

def test_an_otc_week_across_the_year_end_is_visible_from_its_publication_date(tmp_path):
    """The OTC week of Mon 2024-12-30 .. Fri 2025-01-03 (Tier 1, no lastUpdateDate) is scheduled for Mon 2025-01-20,
    Martin Luther King Day, the NYSE closed: it is first visible on Tue 2025-01-21 (the first session on or after
    its publication), never before; its participation is over the week's own bars (2024-12-30 .. 2025-01-03, the
    New Year holiday holding none). A week with lastUpdateDate Sat 2025-01-11 is visible from Mon 01-13. Right
    before (no change): this pins it."""
    from optimizer.data.calendar import session_days
    from optimizer.data.ingest import ingest_paths
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.store import connect

    days = [str(d) for d in session_days("2024-12-02", "2025-01-31")]
    px = tmp_path / "p.csv"
    px.write_text("date,symbol,open,high,low,close,volume\n" + "".join(f"{d},AAPL,10,11,9,10,1000\n" for d in days))
    otc = tmp_path / "w.csv"
    otc.write_text("issueSymbolIdentifier,tierIdentifier,summaryStartDate,totalWeeklyShareQuantity,"
                   "totalWeeklyTradeCount,summaryTypeCode,lastUpdateDate\n"
                   "AAPL,T1,2024-12-30,400,10,ATS_W_SMBL,\n"
                   "AAPL,T1,2024-12-23,300,10,ATS_W_SMBL,2025-01-11\n")
    con = connect(tmp_path / "s.duckdb")
    try:
        assert ingest_paths(con, "prices", [px]).exit_code == 0
        assert ingest_paths(con, "otc-weekly", [otc]).exit_code == 0
        assert con.execute("SELECT CAST(publication_date AS VARCHAR) FROM finra_otc_weekly ORDER BY week_start_date"
                           ).fetchall() == [("2025-01-11",), ("2025-01-20",)]
        build_daily_metrics(con)
        got = dict(con.execute("SELECT CAST(date AS VARCHAR), CAST(otc_week_start AS VARCHAR) FROM daily_metrics "
                               "WHERE symbol = 'AAPL'").fetchall())
        rate = con.execute("SELECT otc_participation_rate FROM daily_metrics WHERE date = '2025-01-21'").fetchone()[0]
    finally:
        con.close()
    assert [got[d] for d in ("2025-01-10", "2025-01-13", "2025-01-17", "2025-01-21")] == [
        None, "2024-12-23", "2024-12-23", "2024-12-30"]
    assert rate == pytest.approx(400 / 4000)  # the week's 4 sessions (Jan 1 closed) x 1,000 shares


def test_the_session_calendar_knows_the_unscheduled_closures_and_runs_past_next_year():
    """NYSE full closures the calendar must hold (exchange_calendars 4.13): 2025-01-09 (President Carter's national
    day of mourning), 2018-12-05 (President G.H.W. Bush), 2012-10-29/30 (Hurricane Sandy), 2001-09-11..14; the real
    prices of /shared (2022-2025) hold no row on 2025-01-09 either. Early closes at 13:00 (2024-11-29,
    2024-12-24). The calendar extends to whatever year is asked (2030), New York's today + 1 at least."""
    closed = ["2025-01-09", "2018-12-05", "2012-10-29", "2012-10-30", "2001-09-11", "2001-09-14"]
    s = {str(d) for d in calendar.session_days("2001-01-01", "2030-12-31")}
    assert not s & set(closed)
    assert {"2025-01-08", "2025-01-10", "2012-10-31", "2001-09-17", "2030-12-31"} <= s
    assert len(calendar.session_days("2025-01-06", "2025-01-10")) == 4
    early = calendar.early_closes()
    assert early[dt.date(2024, 11, 29)] == early[dt.date(2024, 12, 24)] == dt.time(13, 0)
    assert dt.date(2024, 11, 27) not in early
