"""Defects the last audits noticed and left (mend15): concurrency, versions, the reserve ledger."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from optimizer.data import store as store_mod
from optimizer.data.store import connect
from optimizer.errors import DataError, ParameterError
from tests._cli_helpers import cli, ok, one_line_error

# Opens the store in the mode asked, says so on stdout, and holds it until its stdin closes.
_HOLDER = ("import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
           "print('held', flush=True); sys.stdin.read(); con.close()")


class Holder:
    """Another process holding a store open; ``release()`` closes it and waits until that process has ended."""

    def __init__(self, db: Path, mode: str) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), mode], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "held"  # waits until the child holds the lock
        self.pid = self.p.pid

    def release(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)

    def close(self) -> None:
        self.release()
        self.p.stdout.close()


@contextmanager
def held(db: Path, mode: str = "rw") -> Iterator[Holder]:
    h = Holder(db, mode)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    return db


def _release_on_try(monkeypatch, holder: Holder, n: int) -> list[float]:
    """connect's pause between two tries releases ``holder`` at the ``n``-th pause (no real sleeping: the test
    decides when the other process lets go); returns the pauses asked for."""
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == n:
            holder.release()

    monkeypatch.setattr(store_mod, "_sleep", pause)
    return pauses


# ------------------------------------------------------------------ 6. a bounded wait for a store another process holds
@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_a_writer_given_a_wait_opens_the_store_once_the_other_process_lets_go_and_says_so_once(
        store, monkeypatch, capsys, mode):
    with held(store, mode) as h:
        pauses = _release_on_try(monkeypatch, h, 3)
        con = connect(store, wait=30)
        con.execute("CREATE TABLE t AS SELECT 1 AS x")  # a writer's connection
        con.close()
    assert len(pauses) == 3
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    what = "being written by" if mode == "rw" else "open for reading in"
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"waiting up to 30 s for database {store}: it is {what} another process (python")
    assert lines[0].endswith(f", PID {h.pid})")


def test_a_wait_that_runs_out_says_who_held_the_store_and_how_long_it_waited(store, monkeypatch, capsys):
    now = [0.0]
    monkeypatch.setattr(store_mod, "_clock", lambda: now[0])
    monkeypatch.setattr(store_mod, "_sleep", lambda s: now.__setitem__(0, now[0] + s))  # time passes, nobody lets go
    with held(store) as h:
        with pytest.raises(DataError) as e:
            connect(store, read_only=True, wait=1.5)
    msg = str(e.value)
    assert f"database {store} is being written by another process (python" in msg and f"PID {h.pid})" in msg
    assert msg.endswith("(waited 1.5 s for it)") and "\n" not in msg
    assert now[0] == pytest.approx(1.5)
    assert len([ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("waiting up to 1.5 s")]) == 1


def test_without_a_wait_a_held_store_fails_at_once(store, monkeypatch, capsys):
    monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without a wait"))
    with held(store) as h:
        with pytest.raises(DataError, match=f"PID {h.pid}") as e:
            connect(store)
    assert "waited" not in str(e.value) and capsys.readouterr().err == ""


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), True, "10"])
def test_a_negative_or_unbounded_wait_is_refused_by_name(store, bad):
    with pytest.raises(ParameterError, match=r"^wait must be a finite number of seconds >= 0 .*got wait="):
        connect(store, wait=bad)
    with pytest.raises(ParameterError, match=r"^wait must be"):
        with store_mod.lock_wait(bad):
            pass


@pytest.mark.parametrize("args", [("evening", "--params", "p.json"), ("ingest", "prices", "x.csv"),
                                  ("metrics", "build"), ("backtest",), ("signals", "--params", "p.json")])
def test_the_command_line_refuses_a_negative_wait_naming_the_flag(tmp_path, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.json").write_text("{}")
    res = cli(*args, "--wait", "-1", "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out")
    one_line_error(res, "--wait must be a finite number of seconds >= 0", "got -1.0")
    assert not (tmp_path / "s.duckdb").exists()


def test_metrics_build_waits_only_when_asked(store, tmp_path, monkeypatch):
    with held(store, "ro") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --wait"))
        one_line_error(cli("metrics", "build", "--db", store, "--out", tmp_path / "out"),
                       f"database {store} is open for reading in another process", f"PID {h.pid})")
        _release_on_try(monkeypatch, h, 1)
        res = cli("metrics", "build", "--db", store, "--out", tmp_path / "out", "--wait", "60")
    assert res.exit_code == 2 and "no raw data" in res.stderr  # it opened the store: the empty store's own error
    assert f"waiting up to 60 s for database {store}: it is open for reading in" in res.stderr


def test_evening_waits_120_s_by_default_and_its_flag_changes_it(monkeypatch, tmp_path):
    import optimizer.cli.signals as cli_signals

    seen: list[float] = []
    monkeypatch.setattr(cli_signals, "run_evening", lambda *a, wait, **k: seen.append(wait) or (_ for _ in ()).throw(
        DataError("stop here")))
    (tmp_path / "p.json").write_text("{}")
    for extra in ((), ("--wait", "0"), ("--wait", "7.5")):
        one_line_error(cli("evening", "--params", tmp_path / "p.json", "--db", tmp_path / "s.duckdb", "--out",
                           tmp_path / "out", *extra), "stop here")
    assert seen == [120.0, 0.0, 7.5]


def test_every_store_the_evening_opens_waits_for_a_study_loading_between_its_steps(store, monkeypatch):
    """A study loading its panel (1.3-1.4 s read-only) between two of evening's steps made that cron run exit 2."""
    import optimizer.evening as evening

    opened: list[str] = []

    def steps(*args, **kw):  # each step opens the store for itself, as the evening's do
        connect(store, read_only=True).close()
        connect(store).close()
        store_mod.check_writable(store)
        opened.append("all")
        return evening.EveningResult()

    monkeypatch.setattr(evening, "_run_evening", steps)
    with held(store, "ro") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept with wait=0"))
        with pytest.raises(DataError, match=f"PID {h.pid}"):
            evening.run_evening("unused.json", store, wait=0)
        _release_on_try(monkeypatch, h, 2)
        evening.run_evening("unused.json", store)  # the default wait
    assert opened == ["all"]
    assert store_mod._WAIT.get() == 0.0  # the wait ends with the evening


# ------------------------------------------------------------------ 1. two backtests creating the runs index at once
def test_two_backtests_creating_the_runs_index_at_the_same_instant_keep_both_rows(tmp_path, monkeypatch):
    """Two runs finding no `backtest_runs.csv` both wrote a new file (header + their row) and renamed it into place:
    the later rename replaced the other run's row. Each thread here stops at its first step where the two can
    collide (creating the file, or taking its lock) until the other has reached one too, so the race is forced."""
    import fcntl
    import threading

    import pandas as pd

    from optimizer.report import backtest as report_backtest

    index = tmp_path / "backtest" / "backtest_runs.csv"
    racers: dict[int, bool] = {}
    both_there = threading.Barrier(2, timeout=30)  # a safety net: both threads always arrive

    def meet() -> None:
        me = threading.get_ident()
        if me in racers and not racers[me]:
            racers[me] = True
            both_there.wait()

    real_atomic, real_flock = report_backtest._atomic, fcntl.flock
    monkeypatch.setattr(report_backtest, "_atomic",  # the run's own files are not shared: only the index's creation
                        lambda path, write: (Path(path) == index and meet(), real_atomic(path, write))[1])
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (meet(), real_flock(fd, op))[1])
    errors: list[BaseException] = []

    def run(run_id: str) -> None:
        racers[threading.get_ident()] = False
        try:
            report_backtest.write_backtest_files({"hit_rate": 0.5, "trades": 3}, pd.DataFrame({"symbol": ["A"]}),
                                                 pd.DataFrame({"n": [1]}), tmp_path / run_id, run_id=run_id,
                                                 runs_index=index)
        except BaseException as e:  # noqa: BLE001 - re-raised by the test below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in ("r1", "r2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    runs = pd.read_csv(index)
    assert sorted(runs.run_id) == ["r1", "r2"] and runs.trades.tolist() == [3, 3]
    assert index.read_text().count("run_id,") == 1  # one header



# ------------------------------------------------------------------ 2. the evening's rewrite of a fetched price file
def test_a_cut_rewrite_of_a_fetched_price_file_leaves_the_whole_vendor_file(tmp_path, monkeypatch):
    """evening drops the overlap bar from Polygon's JSON and wrote the rest back over the file in place: a write cut
    short (a kill, a full disk) left half a JSON document, which that night's ingest failed on."""
    import datetime as dt
    import json

    import optimizer.evening as evening
    from optimizer.data.fetch import FetchedFiles
    from optimizer.settings import Settings

    db = tmp_path / "s.duckdb"
    con = connect(db)
    con.execute("INSERT INTO prices_daily VALUES ('2024-07-10', 'AAA', 10, 11, 9, 10.5, 1000, 'f.csv')")
    con.close()
    ms = lambda day: int(dt.datetime(*day, 4, tzinfo=dt.timezone.utc).timestamp() * 1000)  # noqa: E731 - NY midnight
    bar = lambda day, c: {"t": ms(day), "o": c, "h": c + 1, "l": c - 1, "c": c, "v": 1000}  # noqa: E731
    doc = {"ticker": "AAA", "results": [bar((2024, 7, 10), 10.5), bar((2024, 7, 11), 11.0), bar((2024, 7, 12), 12.0)]}
    fetched = tmp_path / "cache" / "AAA.json"
    fetched.parent.mkdir()
    fetched.write_text(json.dumps(doc))
    monkeypatch.setattr(evening, "fetch_polygon_prices", lambda *a, **k: FetchedFiles([fetched]))
    last = dt.date(2024, 7, 10)
    args = (db, ["AAA"], last, dt.date(2024, 7, 11), dt.date(2024, 7, 12), tmp_path / "cache",
            Settings(polygon_api_key="k"))

    real = Path.write_text

    def cut_short(self, data, *a, **k):  # writes the first 60 characters, then the process is stopped
        real(self, data[:60], *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", cut_short)
    with pytest.raises(KeyboardInterrupt):
        evening._fetch_prices(*args, evening.EveningResult())
    monkeypatch.setattr(Path, "write_text", real)
    assert json.loads(fetched.read_text()) == doc  # the vendor's file, whole: the next run drops the overlap again
    assert [p.name for p in fetched.parent.iterdir()] == ["AAA.json"]  # no temporary file left

    assert evening._fetch_prices(*args, evening.EveningResult()) == [fetched]
    assert json.loads(fetched.read_text()) == {**doc, "results": doc["results"][1:]}  # the overlap bar dropped


# ------------------------------------------------------------------ 3. backtest --final records before the reserve is seen
def test_backtest_final_records_its_opening_before_it_evaluates_the_reserve(synth_db, tmp_path, monkeypatch):
    """`backtest --final --no-save` recorded its opening after the evaluation: a run interrupted (Ctrl-C, a kill)
    once it had computed, or shown, figures on the reserve was never counted. walkforward --final and sandbox
    --final record first; so does backtest now."""
    import shutil

    from optimizer import backtest as bt
    from optimizer.study.reserve import openings

    db = tmp_path / "copy.duckdb"
    shutil.copy(synth_db, db)
    seen: list[list] = []

    class Interrupted(bt.Evaluator):
        def run(self, *args, **kwargs):  # the evaluation starts: the opening must be in the ledger already
            seen.append(openings(db))
            raise KeyboardInterrupt

    monkeypatch.setattr(bt, "Evaluator", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        bt.backtest({}, db, universe="tier1", save=False, final=True, out_root=tmp_path / "out")
    assert len(seen) == 1 and [o.command for o in seen[0]] == ["backtest --final"]
    (o,) = openings(db)
    assert o.subject.startswith("config ") and o.span_end is not None and o.reserve_start < o.span_end
    monkeypatch.undo()
    run = bt.backtest({}, db, universe="tier1", save=False, final=True, out_root=tmp_path / "out")
    assert run.opened_reserve and len(openings(db)) == 2
    assert any("already opened 1 time(s)" in w for w in run.warnings)  # the interrupted opening counts


# ------------------------------------------------------------------ 5. lit-trades files read under older reading rules
def test_data_info_and_the_stale_data_warning_name_lit_files_read_under_older_rules_with_the_command(
        tmp_path, monkeypatch):
    """A lit-trades file ingested before 2026-12-05 (rules 1, no `rules=` in its key) keeps its rows as first read
    until its next ingest; nothing said so. `data info` and the stale-data warning every reading command gives now
    count those files and print the command that re-reads them."""
    import json
    import shlex

    from tests.test_mend14_versions import PRICES, TRADES, _as_the_rules_1_accumopt_left_it
    from tests._ingest_helpers import write

    from optimizer.data.ingest import ingest_paths, lit
    from optimizer.data.metrics import build_daily_metrics, old_rules_lit_files, store_metrics_staleness

    db = tmp_path / "s.duckdb"
    (tmp_path / "in dir").mkdir()
    old = write(tmp_path / "in dir" / "AAPL_trades.csv", TRADES)  # a path a shell must quote
    new = write(tmp_path / "MSFT_trades.csv", TRADES.replace("AAPL", "MSFT"))
    con = connect(db)
    ingest_paths(con, "prices", [write(tmp_path / "p.csv", PRICES)])
    _as_the_rules_1_accumopt_left_it(con, old, monkeypatch)
    assert ingest_paths(con, "lit-trades", [new]).files[0].status == "ok"  # today's rules: not named
    assert old_rules_lit_files(con) == [str(old)]
    con.close()
    command = f"accumopt ingest lit-trades {shlex.quote(str(old))}"
    note = (f"1 lit-trades file(s) keep rows read under older reading rules than this accumopt's version "
            f"{lit.TRADES_RULES}: re-read them with `{command}`, then run `accumopt metrics build`")

    # no daily_metrics yet: data info says it on its own
    info = json.loads(ok(cli("data", "info", "--db", db, "--format", "json")).stdout)
    assert info["lit_trades_old_rules"] == [str(old)]
    assert f"warning: {note}" in " ".join(ok(cli("data", "info", "--db", db)).stderr.split())

    con = connect(db)
    build_daily_metrics(con)
    con.close()
    want = f"{note}; until then scores, sheets, backtests and studies read the older rows"
    assert store_metrics_staleness(db) == want  # every reading command's warning (backtest, signals, study, ...)
    info = json.loads(ok(cli("data", "info", "--db", db, "--format", "json")).stdout)
    assert info["daily_metrics_stale"] == want and info["lit_trades_old_rules"] == [str(old)]
    assert " ".join(ok(cli("data", "info", "--db", db)).stderr.split()).count(command) == 1  # said once

    # the command as printed re-reads it; the rebuild then leaves nothing to say
    args = shlex.split(command)[1:]
    ok(cli(*args, "--db", db))
    con = connect(db)
    assert old_rules_lit_files(con) == []
    build_daily_metrics(con)
    con.close()
    assert store_metrics_staleness(db) is None


def test_only_files_whose_old_rows_are_still_stored_are_named(tmp_path, monkeypatch):
    """A file read under rules 1 whose rows a later file replaced on every key is not named: ingesting it again
    would overwrite the later file's rows, and nothing of its older reading is left."""
    from tests.test_mend14_versions import TRADES, _as_the_rules_1_accumopt_left_it
    from tests._ingest_helpers import write

    from optimizer.data.ingest import ingest_paths
    from optimizer.data.metrics import old_rules_lit_files

    con = connect(tmp_path / "s.duckdb")
    try:
        _as_the_rules_1_accumopt_left_it(con, write(tmp_path / "AAPL_trades.csv", TRADES), monkeypatch)
        assert old_rules_lit_files(con) == [str(tmp_path / "AAPL_trades.csv")]
        flow = "date,symbol,lit_buy_volume,lit_sell_volume\n" + "".join(
            f"{d},AAPL,1,2\n" for d in ("2024-11-27", "2024-11-29"))
        assert ingest_paths(con, "lit-flow", [write(tmp_path / "AAPL_flow.csv", flow)]).files[0].status == "replaced"
        assert old_rules_lit_files(con) == [str(tmp_path / "AAPL_trades.csv")]  # its 2024-12-24 row is still stored
        ingest_paths(con, "lit-flow", [write(tmp_path / "AAPL_flow.csv", flow + "2024-12-24,AAPL,1,2\n")])
        assert old_rules_lit_files(con) == []
    finally:
        con.close()


# ------------------------------------------------------------------ 4. the metrics version of a scoped build
_PRICES4 = "date,symbol,open,high,low,close,volume\n" + "".join(
    f"2024-03-{d:02d},{s},{c},{c},{c},{c},1000\n" for s in ("MSFT", "AAPL") for d, c in ((11, 10.0), (12, 11.0), (13, 12.0)))


@pytest.fixture()
def raw_store(tmp_path):
    from tests._ingest_helpers import write

    from optimizer.data.ingest import ingest_paths

    db = tmp_path / "s.duckdb"
    con = connect(db)
    ingest_paths(con, "prices", [write(tmp_path / "p.csv", _PRICES4)])
    con.close()
    return db


def _version(db: Path) -> str | None:
    con = connect(db, read_only=True)
    try:
        rows = con.execute("SELECT value FROM accumopt_meta WHERE key = 'daily_metrics_version'").fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def test_a_scoped_build_that_writes_every_row_records_its_metrics_version(raw_store, monkeypatch):
    """A scoped build (Python: symbols / start / end) recorded no version, so the table it created whole was read as
    an unversioned, version-1 build: once the metrics code moved on, a table this code built was called older."""
    from optimizer.data import metrics

    monkeypatch.setattr(metrics, "METRICS_VERSION", 2)  # this accumopt computes version 2's values
    con = connect(raw_store)
    try:
        metrics.build_daily_metrics(con, symbols=["MSFT"])  # a new table: every row is this build's
        assert metrics.built_version(con) == (2, True)
        assert metrics.metrics_staleness(con) is None
    finally:
        con.close()
    assert _version(raw_store) == "2"


def test_a_scoped_build_over_an_older_table_keeps_the_older_version_and_says_why(raw_store, monkeypatch):
    """A scoped build over rows an older metrics version built must not mark the whole table current: the stale
    warning stays true (it names the older version) and the build says which rows it kept; once a scoped build has
    rewritten every row the table is current."""
    from optimizer.data import metrics

    con = connect(raw_store)
    try:
        metrics.build_daily_metrics(con)  # version 1, in full: 6 rows (MSFT, AAPL x 3 sessions)
        monkeypatch.setattr(metrics, "METRICS_VERSION", 2)
        older = metrics.metrics_staleness(con)
        assert older.startswith("daily_metrics was built by metrics version 1, older than this accumopt's version 2")
        got = metrics.build_daily_metrics(con, symbols=["MSFT"], start="2024-03-12")  # rewrites 2 of 6 rows
        assert metrics.built_version(con) == (1, True) and metrics.metrics_staleness(con) == older
        assert [w for w in got["warnings"] if "scoped build" in w] == [
            "this scoped build kept 4 row(s) of daily_metrics / options_premium_daily outside its scope, built by "
            "metrics version 1 (this accumopt's is 2): the tables stay marked version 1; run `accumopt metrics "
            "build` (no scope) to rebuild every row"]
        metrics.build_daily_metrics(con, symbols=["MSFT", "AAPL"])  # every row again, scoped: current
        assert metrics.built_version(con) == (2, True) and metrics.metrics_staleness(con) is None
    finally:
        con.close()


def test_a_scoped_build_of_this_version_over_a_newer_table_keeps_the_newer_version(raw_store, monkeypatch):
    from optimizer.data import metrics

    monkeypatch.setattr(metrics, "METRICS_VERSION", 3)
    con = connect(raw_store)
    try:
        metrics.build_daily_metrics(con)
        monkeypatch.setattr(metrics, "METRICS_VERSION", 2)  # an older checkout
        metrics.build_daily_metrics(con, symbols=["AAPL"])
        assert metrics.built_version(con) == (3, True)
        assert "built by metrics version 3, newer than this accumopt's version 2" in metrics.metrics_staleness(con)
    finally:
        con.close()


@pytest.mark.parametrize("args", [("data", "info"), ("table", "--date", "2024-01-02")])
def test_a_reading_command_waits_for_a_writer_only_when_asked(store, tmp_path, monkeypatch, args):
    """Readers failed at once while a writer (an ingest, `evening`) held the store, so a study or a table started
    by cron during the night's ingest exited 2 (lead, stop 36; fails before: no such option --wait)."""
    with held(store, "rw") as h:
        monkeypatch.setattr(store_mod, "_sleep", lambda s: pytest.fail("slept without --wait"))
        one_line_error(cli(*args, "--db", store, "--out", tmp_path / "out"),
                       f"database {store} is being written by another process", f"PID {h.pid})")
        pauses = _release_on_try(monkeypatch, h, 2)
        res = cli(*args, "--db", store, "--out", tmp_path / "out", "--wait", "30")
    assert len(pauses) == 2 and f"waiting up to 30 s for database {store}" in res.stderr
    assert f"error: database {store} is being written" not in res.stderr  # it opened the store once the writer let go
    assert res.exit_code == 0 or "error: " in res.stderr and "being written" not in res.stderr.split("error: ", 1)[1]
