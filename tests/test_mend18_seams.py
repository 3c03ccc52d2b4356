"""Settings and outputs that did not hold at their seam (mend18): the integer rule in the hash and in [objective]
options, a symbol listed twice, the flag a refusal names, timestamps with their offset, a closed pipe, the notes of
the same situation, ingest's tag rule's public home, a day given with a time of day."""

from __future__ import annotations

import json
import re

import pytest

from tests._cli_helpers import cli, ok
from tests.test_explore21_settings import _SMALL


# ------------------------------------------------------------------ 1. one integer rule, the hash and the options
def test_an_integer_written_20_0_hashes_as_20_and_resumes_the_study(synth_db, tmp_path):
    """Integers written 20.0 were read as 20 (mend17) but hashed as the text: a study run
    with `time_stop = 20.0` was refused when resumed with `time_stop = 20` ('created from a different spec'), fails
    before. Now both spellings hash alike, and the hash the text had before is still accepted for a stored study."""
    from optimizer.study.spec import parse_spec

    int_text = _SMALL.replace('exit = "fixed_10d"', 'exit = "first_dist"\ntime_stop = 20\n[data.costs]\n'
                              'commission_bps = 1').replace("n_trials = 2", "n_trials = 1")
    int_text = int_text.replace("[cv]\n", "[cv]\npurge = 20\n")
    float_text = int_text.replace("time_stop = 20", "time_stop = 20.0").replace("purge = 20", "purge = 20.0") \
        .replace("commission_bps = 1", "commission_bps = 1.0").replace("seed = 5", "seed = 5.0")
    a, b = parse_spec(int_text), parse_spec(float_text)
    assert a.spec_hash == b.spec_hash and a.differences(float_text) is None
    assert parse_spec(int_text.replace("time_stop = 20", "time_stop = 21")).spec_hash != a.spec_hash
    common = ("--db", synth_db, "--storage", f"sqlite:///{tmp_path / 'st.db'}", "--format", "json")
    spec = tmp_path / "small.toml"
    spec.write_text(float_text, encoding="utf-8")
    ok(cli("study", "run", spec, *common))
    spec.write_text(int_text.replace("n_trials = 1", "n_trials = 2"), encoding="utf-8")  # resumed, other spelling
    res = ok(cli("study", "run", spec, *common))
    assert json.loads(res.stdout)["complete"] == 2


def test_a_study_stored_with_the_hash_of_the_text_as_written_still_matches():
    """The hash a study stored before this change (of the text as written: '719e6319130fb126' for choices
    [15, 20.0], mend17's measured figure) is still accepted for that text and for the text written [15, 20]."""
    from tests.test_mend17_leftovers import _int_spec

    was = _int_spec(time_stop="{ type = 'categorical', choices = [15, 20.0] }")
    now = _int_spec(time_stop="{ type = 'categorical', choices = [15, 20] }")
    assert was.spec_hash == now.spec_hash != "719e6319130fb126"
    assert was.matches_stored("719e6319130fb126") and now.matches_stored("719e6319130fb126", was.source)
    assert not now.matches_stored("719e6319130fb126")  # no text stored: only this text's own earlier hashes


def _objective_module(tmp_path, monkeypatch):
    mod = tmp_path / "mend18_objective.py"
    mod.write_text(
        "from objectives import Objective\n"
        "class Windowed(Objective):\n"
        "    metrics = ('rank_score',)\n"
        "    def __init__(self, window: int = 5, scale: float = 1.0):\n"
        "        self.window, self.scale = window, scale\n"
        "    def fold_values(self, m):\n"
        "        return (m['rank_score'] * self.scale,)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mend18_objective:Windowed"


def test_objective_options_take_the_integer_rule(tmp_path, monkeypatch):
    """`[objective] options = { window = 5.0 }` for an option annotated `int` was handed to the constructor as the
    float 5.0 and `window = 5.5` accepted (fails before: options {'window': 5.0}, no refusal); now 5.0 is 5 (and
    hashes as 5), 5.5 is refused naming its key and value, a float option keeps its value."""
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    name = _objective_module(tmp_path, monkeypatch)
    text = _SMALL.replace("[objective]\n", f'[objective]\nname = "{name}"\noptions = {{ window = @W@, scale = 2.0 }}\n')
    s5, s50 = parse_spec(text.replace("@W@", "5")), parse_spec(text.replace("@W@", "5.0"))
    assert s50.objective.options == {"window": 5, "scale": 2.0} and type(s50.objective.options["window"]) is int
    assert s5.spec_hash == s50.spec_hash
    with pytest.raises(SpecError) as e:
        parse_spec(text.replace("@W@", "5.5"))
    assert str(e.value) == "[objective.options.window] must be an integer (an option of objective " \
                           f"'{name}'), got window=5.5"


# ------------------------------------------------------------------ 2. a symbol listed twice
@pytest.mark.parametrize("toml,flag,twice", [('["SPY", "SPY"]', "SPY,SPY", "SPY twice"),
                                             ('["brk/b", "QQQ", "BRK-B"]', "brk/b,QQQ,BRK-B",
                                              "BRK.B twice (as 'brk/b' and 'BRK-B')")])
def test_a_symbol_listed_twice_is_refused_in_specs_flags_and_the_api(synth_db, tmp_path, toml, flag, twice):
    """`universe = ["SPY", "SPY"]` loaded and was recorded with the duplicate (a flag or the API dropped it without a
    word); fails before: the spec loaded. Now the spec, a --universe flag and the API refuse it by one rule
    (``resolve_universe``), naming the symbol and the key."""
    import optimizer.api as ao
    from optimizer.errors import ParameterError
    from tests._cli_helpers import one_line_error

    spec = tmp_path / "twice.toml"
    spec.write_text(_SMALL.replace('universe = "tier1"', f"universe = {toml}"), encoding="utf-8")
    one_line_error(cli("study", "validate", spec), "[data.universe] must list each symbol once, got " + twice)
    one_line_error(cli("data", "synth", "--universe", flag, "--out", tmp_path / "out"),
                   "must list each symbol once, got " + twice)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ParameterError, match=r"universe must list each symbol once, got " + re.escape(twice)):
        ao.load_panel(synth_db, universe=flag.split(","))


# ------------------------------------------------------------------ 3. a refusal names the flag typed
@pytest.mark.parametrize("args,line", [
    (("backtest", "--z-window", "1", "--no-save"), "error: --z-window must be an integer in [2, 252], got 1"),
    (("backtest", "--z-window=1", "--no-save"), "error: --z-window must be an integer in [2, 252], got 1"),
    (("backtest", "--buy", "120", "--no-save"), "error: --buy must be in [0, 100], got 120.0"),
    (("backtest", "--buy-threshold", "20", "--sell", "30", "--no-save"),
     "error: --sell must be < --buy-threshold 20.0, got 30.0"),
    (("sandbox", "SPY", "--buy", "120"), "error: --buy must be in [0, 100], got 120.0"),
    (("sandbox", "SPY", "--sell", "80"), "error: --sell must be < buy_threshold=70.0, got 80.0"),  # 70: no flag
    (("data", "synth", "--universe", "SPY,SPY"), "error: --universe must list each symbol once, got SPY twice in "
                                                 "--universe SPY,SPY"),
    (("symbols", "map", "add", "FOO", "BAR", "--from", "2024-13-01"),  # a message naming the flag by hand: one form
     "error: --from must be a date (YYYY-MM-DD), got '2024-13-01'"),
])
def test_a_refused_flag_value_is_named_by_the_flag_typed(synth_db, tmp_path, args, line):
    """`--z-window 1` was refused as `z_window must be ..., got z_window=1`, the library's parameter, which the
    user never typed (fails before: every line named the parameter). The flag->parameter mapping is click's options
    (the engine parameters' flags made from the registry); a value not typed as a flag keeps its name."""
    from tests._cli_helpers import one_line_error

    assert one_line_error(cli(*args, "--db", synth_db, "--out", tmp_path / "out")) == line


def test_the_same_value_from_a_file_or_the_api_keeps_its_parameter_name(synth_db, tmp_path):
    import optimizer.api as ao
    from optimizer.errors import ParameterError
    from tests._cli_helpers import one_line_error

    params = tmp_path / "p.json"
    params.write_text(json.dumps({"z_window": 1}), encoding="utf-8")
    one_line_error(cli("backtest", "--params", params, "--no-save", "--db", synth_db, "--out", tmp_path / "out"),
                   "z_window must be an integer in [2, 252], got z_window=1")
    with pytest.raises(ParameterError, match=r"^z_window must be an integer in \[2, 252\], got z_window=1$"):
        ao.evaluate({"z_window": 1}, db=synth_db)


# ------------------------------------------------------------------ 4. timestamps with their offset
# the `tokyo` fixture (the machine's zone set to Asia/Tokyo) is tests/conftest.py's


def test_study_list_and_the_reserve_ledger_print_times_with_their_offset(tokyo, tmp_path):
    """`study list --format json` wrote `created` as the machine's local time without an offset
    ('2026-12-05T12:39:11.113859') and a reserve ledger opening's `opened_at` likewise (fails before: no offset).
    Now both are ISO 8601 with the machine's UTC offset; a record written before 2026-12-05 (a naive `created`) and
    a trial start (Optuna's naive local time) still read, taken as local time."""
    import datetime as dt

    import optuna

    from optimizer.data.store import connect
    from optimizer.study import reserve

    url = f"sqlite:///{tmp_path / 'st.db'}"
    old = optuna.create_study(study_name="old", storage=url)
    old.set_user_attr("created", "2026-12-01T10:00:00")  # a record of before 2026-12-05: naive local time
    new = optuna.create_study(study_name="new", storage=url)
    new.set_user_attr("created", "2026-12-04T23:12:06-05:00")  # New York time, as a record states it now
    ran = optuna.create_study(study_name="ran", storage=url)
    ran.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    start = ran.trials[0].datetime_start  # naive, this machine's local time
    rows = {r["name"]: r["created"] for r in json.loads(ok(cli("study", "list", "--storage", url,
                                                               "--format", "json")).stdout)}
    assert rows == {"old": "2026-12-01T10:00:00+09:00", "new": "2026-12-05T13:12:06+09:00",
                    "ran": start.isoformat() + "+09:00"}
    table = ok(cli("study", "list", "--storage", url)).stdout
    assert "2026-12-05 13:12" in table and "2026-12-01 10:00" in table  # the table: local wall-clock time

    db = tmp_path / "s.duckdb"
    connect(db).close()
    reserve.record_opening(db, "2024-06-28", "backtest --final", "config x", "2024-07-31")
    (opening,) = reserve.openings(db)
    assert dt.datetime.fromisoformat(opening.opened_at).utcoffset() == dt.timedelta(hours=9), opening.opened_at
    assert abs(dt.datetime.fromisoformat(opening.opened_at) - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(hours=1)


# ------------------------------------------------------------------ 5. a closed pipe: quiet, exit 0
@pytest.mark.parametrize("args", [("study", "list"), ("study", "list", "--format", "json"), ("--help",)])
def test_a_pipe_closed_before_the_output_is_written_ends_quietly_with_exit_0(tmp_path, args):
    """`accumopt study list | head -1` exited 1 after a table (rich's reaction to a closed pipe) and 0 or 1 after
    JSON (click's, by timing: 1 when the reader was gone before the write); fails before: exit 1 for each here.
    Now every command and format does what ripgrep does (a broken pipe is graceful termination): no message, exit
    0 (git, killed by SIGPIPE, ends quietly with 141). Here the pipe's reader is closed before the command
    writes, so the write always meets it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import optuna

    url = f"sqlite:///{tmp_path / 'st.db'}"
    optuna.create_study(study_name="s", storage=url).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    read, write = os.pipe()
    os.close(read)  # the reader is gone: `| head -0`, or `| head -1` once it has its line
    try:
        res = subprocess.run([sys.executable, "-m", "optimizer.cli", *args], stdout=write, stderr=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[1], timeout=120,
                             env={**os.environ, "ACCUMOPT_STORAGE": url, "CI": "true"})
    finally:
        os.close(write)
    assert (res.returncode, res.stderr.decode()) == (0, "")


# ------------------------------------------------------------------ 8. a day given with a time of day
def test_the_one_date_rule_refuses_a_time_of_day_and_keeps_the_sessions(synth_db):
    """`calendar.as_date` (the one rule for a date a user writes) read `Timestamp('2024-03-01 15:00')` as the day
    2024-03-01 while the API refused it before calling it (fails before: no error, a date back). Now the rule
    refuses a time of day or a time zone, naming the parameter and the value; a session (a tz-naive midnight
    Timestamp, a datetime64 day, a date) is still its day, so a library call fed the store's sessions works."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from optimizer.analytics.scanner import scan
    from optimizer.data.calendar import as_date, nyse_sessions
    from optimizer.data.store import connect
    from optimizer.errors import ParameterError

    rule = r"a date \(YYYY-MM-DD, a datetime.date or a midnight Timestamp without a time zone\)"
    for bad in (pd.Timestamp("2024-03-01 15:00"), dt.datetime(2024, 3, 1, 9, 30), np.datetime64("2024-03-01T15:00"),
                pd.Timestamp("2024-03-01", tz="America/New_York")):
        with pytest.raises(ParameterError, match=rf"^date must be {rule}, got date="):
            as_date(bad, "date")
    for day in (pd.Timestamp("2024-03-01"), dt.datetime(2024, 3, 1), np.datetime64("2024-03-01"), dt.date(2024, 3, 1),
                nyse_sessions("2024-03-01", "2024-03-01")[0]):
        assert as_date(day, "date") == dt.date(2024, 3, 1)
    con = connect(synth_db, read_only=True)
    try:
        last = con.execute("SELECT max(date) FROM finra_short_daily").fetchone()[0]
        with pytest.raises(ParameterError, match=rf"^date must be {rule}, got date=Timestamp"):
            scan(con, date=pd.Timestamp(last) + pd.Timedelta(hours=15))  # was: the scan of that day
        assert scan(con, date=pd.Timestamp(last)).date == last  # a session Timestamp, as the code passes them
    finally:
        con.close()


def test_study_export_writes_trial_times_with_their_offset(tokyo, tmp_path):
    """`study export`'s datetime_start / datetime_complete were Optuna's naive local times ('2026-12-05
    12:39:11.113859' in the CSV; fails before: no offset). The CSV now states the machine's UTC offset; parquet
    holds the same instants in UTC (its own time zone field)."""
    import datetime as dt

    import optuna
    import pandas as pd

    url = f"sqlite:///{tmp_path / 'st.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    start = study.trials[0].datetime_start.astimezone()  # naive local time -> its instant
    for fmt in ("csv", "parquet"):
        ok(cli("study", "export", "s", "--storage", url, "--out", tmp_path / "out", "--file-format", fmt))
    row = (tmp_path / "out" / "exports" / "s_trials.csv").read_text(encoding="utf-8").splitlines()[1].split(",")
    assert row[2] == f"{start.replace(tzinfo=None)}+09:00"
    back = pd.read_parquet(tmp_path / "out" / "exports" / "s_trials.parquet")
    assert back.loc[0, "datetime_start"] == start and str(back["datetime_start"].dt.tz) == "UTC"
    assert start.utcoffset() == dt.timedelta(hours=9)


def test_fetch_symbols_listed_twice_are_refused_naming_where_the_list_came_from(tmp_path):
    """`fetch prices --symbols AAPL,aapl` met the universe's rule but was told 'universe must list each symbol
    once' (a word the user never typed); it names --symbols, or env TICKERS when the list came from there. Nothing
    is fetched (the key is a dummy, no request is sent)."""
    from tests._cli_helpers import one_line_error

    args = ("fetch", "prices", "--start", "2024-01-02", "--end", "2024-01-03", "--out", tmp_path / "out")
    env = {"POLYGON_API_KEY": "x", "POLYGON_BASE_URL": "http://127.0.0.1:9"}
    one_line_error(cli(*args, "--symbols", "AAPL,aapl", env=env),
                   "--symbols must list each symbol once, got AAPL twice (as 'AAPL' and 'aapl') in --symbols AAPL,aapl")
    one_line_error(cli(*args, env=env | {"TICKERS": "SPY,SPY"}),
                   "TICKERS must list each symbol once, got SPY twice in TICKERS=SPY,SPY")
