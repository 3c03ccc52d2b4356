"""Adversarial inputs (explore4): what a careless or unlucky user feeds the tools. Each test is a defect found by
trying to break a command; each fails on the code before its fix.

The rule: bad input gets one line naming the file and line and the rule, exit code 2, no traceback; a failed
ingest leaves every data table as it was; no input makes a message (or the ingest_log) as big as the input.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from _cli_helpers import cli
from _ingest_helpers import OTC_HEAD, PRICES_HEAD, build_seed_store, copied_store, dump_tables, write

from optimizer.data.ingest import ingest_paths
from optimizer.data.ingest import _common
from optimizer.data.ingest._common import repr_sql
from optimizer.data.ingest._source import MAX_LINE_BYTES
from optimizer.data.store import SCHEMA_VERSION, connect

QUOTE_MAX = 60  # the characters of a file's value a message quotes (_common.QUOTE_MAX)


def quoted(s: str) -> str:
    """The oracle, written out: repr() of the first QUOTE_MAX characters, then the full length when cut."""
    return repr(s[:QUOTE_MAX]) + (f"... ({len(s)} characters)" if len(s) > QUOTE_MAX else "")




@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    return build_seed_store(tmp_path_factory.mktemp("seed"), finra=False)


@pytest.fixture()
def con(seed_store, tmp_path):
    yield from copied_store(seed_store, tmp_path)


def _failed(con, kind, path, message):
    """The file fails with exactly ``path:message``, on one line, and no data table changes."""
    before = dump_tables(con, exclude=("ingest_log",))
    rep = ingest_paths(con, kind, [path])
    (fr,) = rep.files
    assert fr.status == "failed", fr
    assert fr.message == f"{path}:{message}"
    assert dump_tables(con, exclude=("ingest_log",)) == before
    return fr


# ---------------------------------------------------------------------------------------------- ragged rows


def test_otc_weekly_ragged_row_fails_the_file_instead_of_vanishing(con, tmp_path):
    # a row cut short before its summaryTypeCode was dropped by the firm-record filter (NULL is not '_FIRM'):
    # the file was 'ok', IWM's week silently missing. It is a ragged row like in every other kind.
    p = write(tmp_path / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,2024-03-25\n"
              "IWM,T1\n" "MSFT,T1,2024-03-11,500,5,ATS_W_SMBL,2024-03-25\n")
    _failed(con, "otc-weekly", p, "3: expected 7 comma-separated fields, found 2")


def test_otc_weekly_firm_records_are_still_skipped(con, tmp_path):
    # the fix keeps the filter's purpose: firm-level records are not symbol data
    p = write(tmp_path / "w.csv", OTC_HEAD + "AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,2024-03-25\n"
              "SOMEFIRM,T1,2024-03-11,1,1,ATS_W_FIRM,2024-03-25\n")
    (fr,) = ingest_paths(con, "otc-weekly", [p]).files
    assert (fr.status, fr.rows_accepted) == ("ok", 1), fr
    assert con.execute("SELECT count(*) FROM finra_otc_weekly WHERE week_start_date = DATE '2024-03-11'").fetchone() == (1,)


# ---------------------------------------------------------------------------------------------- huge lines


def test_a_line_over_the_limit_is_refused_when_other_lines_follow_it(con, tmp_path):
    # the 1 MiB line rule (docs/DATA.md) was only checked on a chunk's unterminated tail: a 10 MB line followed by
    # a normal one was staged, then quoted whole in the error, the ingest_log and the terminal table (whose
    # wrapping of a 10 MB word ran for minutes)
    big = "2024-01-03,AAPL," + "9" * (MAX_LINE_BYTES + 10) + ",11,9,10,100"
    p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-02,MSFT,10,11,9,10.5,100\n" + big + "\n"
              "2024-01-04,AAPL,10,11,9,10.5,100\n")
    _failed(con, "prices", p, "3: line longer than 1 MiB: not a line-oriented text file")


def test_cli_refuses_a_huge_line_on_one_short_line_with_exit_2(tmp_path):
    db = tmp_path / "s.duckdb"
    big = "2024-01-03,AAPL," + "9" * (MAX_LINE_BYTES + 100) + ",11,9,10,100"
    p = write(tmp_path / "p.csv", PRICES_HEAD + big + "\n2024-01-04,AAPL,10,11,9,10.5,100\n")
    r = cli("ingest", "--db", db, "--out", tmp_path / "out", "prices", p)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    err = r.stderr.strip().splitlines()
    assert err == [f"{p}:2: line longer than 1 MiB: not a line-oriented text file"]
    assert len(r.stdout) < 4000


# ---------------------------------------------------------------------------------------------- long values


def test_a_long_bad_value_is_quoted_cut_in_the_message_and_the_log(con, tmp_path):
    # a 500 kB non-numeric field made a 500 kB message, stored in ingest_log and printed whole
    val = "12" + "x" * 500_000
    p = write(tmp_path / "p.csv", PRICES_HEAD + f"2024-01-03,AAPL,10,11,9,10,{val}\n")
    fr = _failed(con, "prices", p, f"2: non-numeric volume {quoted(val)}")
    assert fr.message.endswith(f"... ({len(val)} characters)")
    assert len(fr.message) < len(str(p)) + 150
    (logged,) = con.execute("SELECT message FROM ingest_log WHERE status = 'failed' ORDER BY id DESC LIMIT 1").fetchone()
    assert logged == fr.message


def test_a_long_unknown_date_in_otc_weekly_is_quoted_cut(con, tmp_path):
    val = "2024-03-25" + "y" * 200_000
    p = write(tmp_path / "w.csv", OTC_HEAD + f"AAPL,T1,2024-03-11,1000,10,ATS_W_SMBL,{val}\n")
    _failed(con, "otc-weekly", p, f"2: unparseable lastUpdateDate {quoted(val)} (expected YYYY-MM-DD or YYYYMMDD)")


@pytest.mark.parametrize("s", [
    "", "abc", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\there", "cr\rlf\n",
    "x" * QUOTE_MAX, "x" * (QUOTE_MAX + 1), "it's " + "z" * 300, "\\" * 200, "é" * 100,
])
def test_repr_sql_is_the_sql_twin_of_quoted(s):
    got = duckdb.connect().execute(f"SELECT {repr_sql('$1')}", [s]).fetchone()[0]
    assert got == quoted(s)
    assert _common.quoted(s) == quoted(s)


def test_a_finra_header_of_a_whole_line_is_quoted_cut(con, tmp_path):
    head = "Date|Symbol|" + "Q" * 400_000
    p = write(tmp_path / "CNMSshvol20240103.txt", head + "\r\n20240103|AAPL|1|0|2|Q\r\n1\r\n")
    fr = _failed(con, "finra-short", p, f"1: missing column 'ShortVolume': header is {quoted(head)}, "
                 "expected 'Date|Symbol|ShortVolume|TotalVolume|Market'")
    assert len(fr.message) < len(str(p)) + 250


# ---------------------------------------------------------------------------------------------- interrupted saves


class _Run:
    """What ``save_walkforward`` reads of a WalkForwardResult: its tables and ``to_dict`` (a run tagged ``tag``)."""

    def __init__(self, tag: str, n_events: int = 2, fail_at: str | None = None):
        self.tag = tag
        col = lambda n: pd.DataFrame({"tag": [tag] * n, "x": range(n)})  # noqa: E731
        self.summary, self.trades, self.equity, self.stability = col(3), col(4), col(5), col(1)
        self.events = col(n_events)
        self.by_symbol, self.by_sector, self.by_regime, self.rules = col(1), col(1), col(1), col(1)
        if fail_at is not None:  # the save is interrupted (Ctrl-C) while it writes this table
            setattr(self, fail_at, _Interrupting(getattr(self, fail_at)))

    def to_dict(self):
        return {"spec": self.tag, "final": False}


class _Interrupting(pd.DataFrame):
    def to_parquet(self, *a, **k):
        raise KeyboardInterrupt

    to_csv = to_parquet


def test_a_walkforward_save_interrupted_midway_leaves_no_run_a_report_would_trust(tmp_path):
    # result.json was written FIRST and each file in place: Ctrl-C (or SIGKILL) while saving run B over run A left
    # B's result.json beside A's equity, which `accumopt report` read as one run
    from optimizer.validate.walkforward import load_walkforward, save_walkforward

    d = tmp_path / "wf"
    save_walkforward(_Run("A"), d)
    assert load_walkforward(d)["result"]["spec"] == "A"
    with pytest.raises(KeyboardInterrupt):
        save_walkforward(_Run("B", fail_at="equity"), d)
    # all or nothing (mend19): the interrupted save leaves run A whole (it left no run at all before)
    kept = load_walkforward(d)
    assert kept["result"]["spec"] == "A" and set(kept["equity"]["tag"]) == {"A"}
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf"]  # nor a temporary folder
    save_walkforward(_Run("C"), d)  # the re-run writes a whole run again
    got = load_walkforward(d)
    assert got["result"]["spec"] == "C"
    assert {t: set(got[t]["tag"]) for t in ("summary", "trades", "equity", "events")} == {
        t: {"C"} for t in ("summary", "trades", "equity", "events")}


def test_a_walkforward_without_events_does_not_keep_the_previous_runs_events(tmp_path):
    from optimizer.validate.walkforward import load_walkforward, save_walkforward

    d = tmp_path / "wf"
    save_walkforward(_Run("A", n_events=3), d)
    save_walkforward(_Run("B", n_events=0), d)
    got = load_walkforward(d)
    assert got["result"]["spec"] == "B" and got["events"].empty  # A's three events were reported as B's


@pytest.mark.parametrize("name, cut", [("result.json", 10), ("oos_trades.parquet", 30), ("oos_equity.parquet", 0),
                                       ("result.json", None)])
def test_report_on_a_damaged_walkforward_file_is_one_line_naming_it(tmp_path, name, cut):
    from optimizer.validate.walkforward import save_walkforward

    d = save_walkforward(_Run("A"), tmp_path / "out" / "walkforward" / "demo")
    if cut is None:  # JSON nested deeper than the parser follows (RecursionError)
        (d / name).write_text("[" * 100_000 + "]" * 100_000)
    else:
        (d / name).write_bytes((d / name).read_bytes()[:cut])
    r = cli("report", d, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"walk-forward run in {d}: {name} is unreadable (" in lines[0], r.stderr
    assert not (tmp_path / "out" / "reports").exists() or not list((tmp_path / "out" / "reports").iterdir())


def test_files_written_whole_get_the_umask_mode_not_0600(tmp_path):
    # the write-then-rename helper used tempfile.mkstemp: every signal sheet and backtest file it wrote was 0600
    import os

    from optimizer.report.backtest import _atomic

    p = tmp_path / "sheet.csv"
    _atomic(p, lambda t: open(t, "w").write("a\n"))
    old = os.umask(0o022)
    os.umask(old)
    assert p.read_text() == "a\n"
    assert p.stat().st_mode & 0o777 == 0o666 & ~old


# ---------------------------------------------------------------------------------------------- the store


@pytest.fixture()
def newer_store(seed_store, tmp_path):
    import shutil

    p = tmp_path / "newer.duckdb"
    shutil.copy(seed_store, p)
    c = duckdb.connect(str(p))
    c.execute("INSERT INTO schema_version (version) VALUES (99)")  # written by a future accumopt
    c.close()
    return p


def test_a_store_of_a_newer_schema_is_refused_by_readers_too(newer_store):
    # only a writer (migrate) checked the version: `data info`, `study run`, `backtest`... read a newer accumopt's
    # tables as their own
    from optimizer.errors import DataError

    msg = "database schema version 99 is newer than this accumopt supports"
    with pytest.raises(DataError, match=msg):
        connect(newer_store, read_only=True)
    with pytest.raises(DataError, match=msg):
        connect(newer_store)
    c = duckdb.connect(str(newer_store))  # the refused connections were closed: the file is not held open
    c.close()
    r = cli("data", "info", "--db", newer_store)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [f"error: {msg} ({SCHEMA_VERSION}); upgrade accumopt"]


# ---------------------------------------------------------------------------------------------- specs


def _spec_error(text: str):
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    with pytest.raises(SpecError) as e:
        parse_spec(text, path="x.toml")
    return str(e.value)


def test_a_step_too_small_for_its_range_is_refused_by_name():
    # step = 1e-300 crashed the spec's parse with decimal.InvalidOperation (a traceback); a grid over it would
    # never end
    msg = _spec_error('[space]\nw_short = { type = "float", low = 0.4, high = 0.7, step = 1e-300 }\n')
    assert msg == ("x.toml: [space.w_short.step] must leave at most 1,000,000 steps from low to high "
                   "(step >= 3e-07), got step=1e-300")
    msg = _spec_error('[space]\nz_window = { type = "int", low = 2, high = 2000000, step = 1 }\n')
    assert msg.startswith("x.toml: [space.z_window.step] must leave at most 1,000,000 steps")


def test_a_grid_too_large_to_hold_in_memory_is_refused_before_it_is_built():
    # Optuna's GridSampler lists every configuration when built: a 3e12 grid grew past 20 GB in the spec's check
    space = ('[sampler]\nname = "grid"\n[space]\nvariant = { type = "categorical", choices = ["A", "B"] }\n'
             'w_short = { type = "float", low = 0.001, high = 1.0, step = 0.001 }\n'
             'w_lit = { type = "float", low = 0.01, high = 1.0, step = 0.01 }\n'
             'w_price = { type = "float", low = 0.1, high = 1.0, step = 0.1 }\n'
             'z_window = 20\nbuy_threshold = 70\nsell_threshold = 30\nexit = "fixed_10d"\n')
    msg = _spec_error(space)
    assert msg == ("x.toml: [sampler.name] a grid must hold at most 1,000,000 configurations, got 2,000,000 (variant 2, "
                   "w_short 1000, w_lit 100, w_price 10): use larger steps or fewer choices, or another sampler (tpe)")


def test_the_specs_stand_in_study_does_not_run_a_step_per_fold_of_a_huge_n_splits(monkeypatch):
    # [cv] n_splits = 10**9: the check of the sampler and pruner options reported 10**9 steps per stand-in trial,
    # so loading the spec never ended (the data check that refuses so many folds came after it)
    from optimizer.study import registry, spec

    seen = []
    real = registry.dry_run

    def spy(part, sampler, pruner, dists, dirs, steps, **kw):
        seen.append(steps)
        return real(part, sampler, pruner, dists, dirs, min(steps, 16), **kw)

    monkeypatch.setattr(spec, "dry_run", spy)
    s = spec.parse_spec("[cv]\nn_splits = 1000000000\n")
    assert s.cv.n_splits == 1_000_000_000  # kept for the data check, which names the rule
    assert seen and max(seen) <= 16


# ---------------------------------------------------------------------------------------------- output files


def test_an_interrupted_figure_write_keeps_the_previous_page_whole(tmp_path, monkeypatch):
    # plotly wrote the 5 MB page in place: Ctrl-C mid-write left a truncated page under the old name
    import plotly.graph_objects as go

    from optimizer.report.files import save_figure

    p = tmp_path / "plots" / "SPY.html"
    save_figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), p, png=False)
    before = p.read_bytes()

    def cut(self, file, **kw):
        open(file, "w").write("<html><head>")  # the first bytes, then the interruption
        raise KeyboardInterrupt

    monkeypatch.setattr(go.Figure, "write_html", cut)
    with pytest.raises(KeyboardInterrupt):
        save_figure(go.Figure(go.Scatter(x=[1], y=[1])), p, png=False)
    assert p.read_bytes() == before
    assert [q.name for q in p.parent.iterdir()] == ["SPY.html"]


def test_a_report_never_writes_through_a_symlink_out_of_the_output_folder(tmp_path):
    # the page was written with write_text, which follows a symlink left at its name: a file outside --out was
    # overwritten; the page now replaces the link
    from optimizer.report.research import Page

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    page = tmp_path / "out" / "reports" / "demo.html"
    page.parent.mkdir(parents=True)
    page.symlink_to(outside)
    Page("demo").write(page)
    assert outside.read_text() == "keep me"
    assert not page.is_symlink() and page.read_text().startswith("<!DOCTYPE html>")


def test_a_store_path_through_a_file_is_one_line_not_a_traceback(tmp_path):
    # `--db notes.txt/x.duckdb`: connect's mkdir raised FileExistsError (NotADirectoryError one level deeper)
    (tmp_path / "notes.txt").write_text("x")
    for db in (tmp_path / "notes.txt" / "x.duckdb", tmp_path / "notes.txt" / "sub" / "x.duckdb"):
        p = write(tmp_path / "p.csv", PRICES_HEAD + "2024-01-02,AAPL,10,11,9,10.5,100\n")
        r = cli("ingest", "--db", db, "--out", tmp_path / "out", "prices", p)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [
            f"error: database {db}: cannot create its folder {db.parent} (a file, not a folder, is in its path)"]


def test_an_output_root_under_a_file_is_one_line_not_a_traceback(tmp_path):
    # `--out notes.txt/sub` (or ACCUMOPT_OUTPUT=notes.txt): click's DIRECTORY check passes a path that does not
    # exist yet, then the first mkdir raised NotADirectoryError / FileExistsError as a traceback
    (tmp_path / "notes.txt").write_text("x")
    synth = ("data", "synth", "--start", "2024-01-02", "--end", "2024-02-15", "--universe", "tier1")
    for args, env in ((("--out", tmp_path / "notes.txt" / "sub"), None),
                      ((), {"ACCUMOPT_OUTPUT": str(tmp_path / "notes.txt")})):
        r = cli(*synth, *args, env=env)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert line.startswith("error: the output root must be a folder, got ") and "notes.txt' is a file)" in line


# ---------------------------------------------------------------------------------------------- JSON inputs


@pytest.mark.parametrize("kind", ["otc-weekly", "prices", "splits"])
def test_json_nested_too_deeply_fails_the_file_in_one_line(con, tmp_path, kind):
    # json.loads raised RecursionError, which no handler caught: a traceback, exit 1
    p = write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000 + "\n")
    _failed(con, kind, p, " invalid JSON (nested too deeply: arrays or objects inside each other more than ~1,000 "
                          "levels)")
    r = cli("ingest", "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out", kind, p)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_a_params_file_nested_too_deeply_is_one_line(tmp_path):
    # `backtest --params deep.json`: RecursionError from json.loads was not caught (a traceback, exit 1)
    from optimizer.errors import ParameterError
    from optimizer.study.paramsfile import load_params_record

    p = write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ParameterError) as e:
        load_params_record(p)
    assert str(e.value) == f"{p}: cannot read a JSON params file: nested too deeply"


def test_a_journal_storage_whose_first_line_nests_too_deeply_is_refused_in_one_line(tmp_path):
    # the journal check's json.loads raised RecursionError (only ValueError was caught): a traceback
    p = write(tmp_path / "j.log", "[" * 30_000 + "]" * 30_000 + "\n")
    r = cli("study", "list", "--storage", f"journal:{p}", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"error: study storage journal:{p} is not an Optuna journal file")


# ---------------------------------------------------------------------------------------------- --jobs workers

_JOBS_SPEC = """
[study]
name = "jobsstop"
[data]
universe = "tier1+3"
[space]
variant = { type = "categorical", choices = ["A", "B", "C", "D"] }
z_window = { type = "categorical", choices = [10, 20] }
buy_threshold = { type = "int", low = 60, high = 80, step = 5 }
exit = "fixed_10d"
[cv]
n_splits = 3
[objective]
name = "_slow_objective:SlowRankExcess"
[pruner]
name = "none"
[run]
n_trials = 100000
"""


def _jobs_run(synth_db, tmp_path, tag):
    """`study run --jobs 2` of a study that would run for hours, in its own process group (as a terminal's
    foreground job), once its workers have finished a trial; returns (process, storage url)."""
    import os
    import subprocess
    import sys
    import time

    spec = tmp_path / "jobsstop.toml"
    spec.write_text(_JOBS_SPEC)
    url = f"sqlite:///{tmp_path / f'{tag}.db'}"
    tests = str(Path(__file__).resolve().parent)
    env = {k: v for k, v in os.environ.items() if k not in ("ACCUMOPT_STORAGE", "ACCUMOPT_DB")}
    env |= {"ACCUMOPT_TEST_FOLD_SLEEP": "0.05", "PYTHONPATH": os.pathsep.join([tests, env.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, "-m", "optimizer.cli", "study", "run", str(spec), "--db", str(synth_db),
                          "--storage", url, "--jobs", "2", "--out", str(tmp_path / "out")], cwd=tmp_path, env=env,
                         stdin=subprocess.DEVNULL, stdout=open(tmp_path / f"{tag}.out", "w"),
                         stderr=open(tmp_path / f"{tag}.err", "w"), start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _n_finished(url) < 2:
        assert p.poll() is None, (tmp_path / f"{tag}.err").read_text()
        time.sleep(0.2)
    assert _n_finished(url) >= 2
    return p, url


def _n_finished(url):
    import optuna

    from optimizer.errors import DataError
    from optimizer.study import make_storage

    try:
        st = optuna.load_study(study_name="jobsstop", storage=make_storage(url, heartbeat=False, read_only=True))
    except (KeyError, DataError):
        return 0
    return sum(t.state.is_finished() for t in st.get_trials(deepcopy=False))


def _group_gone(p, within):
    """Whether every process of ``p``'s group has exited within ``within`` seconds (``p`` reaped: a zombie is still
    a member)."""
    import os
    import time

    deadline = time.monotonic() + within
    while True:
        p.poll()
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_stops_study_run_jobs_2_and_its_workers(synth_db, tmp_path):
    # the forked workers inherited the parent's SIGINT handler, which set the parent's flag (their copy of it):
    # Ctrl-C left them running to their quota (hours here) and the parent waiting for them
    import os
    import signal

    p, url = _jobs_run(synth_db, tmp_path, "int")
    try:
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
        assert _group_gone(p, within=90), "study run --jobs 2 still running 90 s after Ctrl-C"
    finally:
        if not _group_gone(p, within=0):
            os.killpg(p.pid, signal.SIGKILL)
    assert p.wait() == 0
    assert "interrupted    yes" in (tmp_path / "int.out").read_text()
    assert 2 <= _n_finished(url) < 100000


@pytest.mark.slow
def test_workers_of_a_killed_study_run_stop_instead_of_running_on_orphaned(synth_db, tmp_path):
    import os
    import signal

    p, url = _jobs_run(synth_db, tmp_path, "kill")
    try:
        os.kill(p.pid, signal.SIGKILL)  # the OOM killer, `kill -9`: only the parent dies
        p.wait()
        assert _group_gone(p, within=90), "the --jobs workers ran on after their parent was killed"
    finally:
        if not _group_gone(p, within=0):
            os.killpg(p.pid, signal.SIGKILL)
    n = _n_finished(url)
    assert 2 <= n < 100000
