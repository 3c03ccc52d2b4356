"""What scripts and notebooks read (explore20): ``--format json`` documents, terminal output (80 columns, no escape
codes where none are wanted, a closed pipe) and the Python API (documented calls, clear refusals)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from _cli_helpers import drain_pty

ACCUMOPT = [sys.executable, "-m", "optimizer.cli"]
_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(**extra: str) -> dict[str, str]:
    drop = ("CI", "COLUMNS", "NO_COLOR", "TERM", "ACCUMOPT_DB", "ACCUMOPT_STORAGE", "ACCUMOPT_OUTPUT")
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _run_on_tty(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``accumopt ARGS`` with stdout on a pseudo-terminal of 80 columns: (exit code, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    p = subprocess.Popen(ACCUMOPT + args, stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         env=env, cwd=cwd)
    os.close(slave)
    got = drain_pty(master)
    rc = p.wait(timeout=120)
    os.close(master)
    return rc, got.decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------ terminal: escape codes
def test_no_color_writes_no_escape_code_to_a_terminal(tmp_path):
    """NO_COLOR=1 on a terminal: rich dropped the colours but still wrote bold and dim (46 escape codes in a
    `study show` table, \\x1b[1m / \\x1b[2m); now none, as TERM=dumb and a pipe. Without NO_COLOR the terminal
    still gets its bold header (the test can fail)."""
    args = ["symbols", "show", "brk/b", "bac-pl"]
    rc, plain = _run_on_tty(args, _env(TERM="xterm-256color"), tmp_path)
    assert rc == 0 and "BRK.B" in plain and _ESC.search(plain), plain
    rc, out = _run_on_tty(args, _env(TERM="xterm-256color", NO_COLOR="1"), tmp_path)
    assert rc == 0 and "BRK.B" in out
    assert not _ESC.search(out), repr(out)
    rc, out = _run_on_tty(args, _env(TERM="xterm-256color", NO_COLOR=""), tmp_path)  # empty: not set (no-color.org)
    assert _ESC.search(out)


# ------------------------------------------------------------------------------------------ terminal: 80 columns
def _printed(f, width: int = 80) -> str:
    import io

    from rich.console import Console

    buf = io.StringIO()
    f(Console(file=buf, width=width))
    return buf.getvalue()


def test_a_table_title_is_wrapped_at_the_terminal_width_never_inside_a_name():
    """`backtest --params best.json` titled its comparison table 'trial 1 of <study>: REPRODUCED' above a 46-column
    table: rich wrapped the title at the TABLE's width, over 3-4 lines, and cut a long study name in two
    ('e20_a_rather_long_study' / '_name_for_tables'). The title now takes the terminal's width, and breaks only at
    spaces."""
    import pandas as pd

    from optimizer.report.terminal import print_frame

    name = "e20_a_rather_long_study_name_for_tables"
    df = pd.DataFrame({"metric": ["hit_rate", "sharpe"], "stored": [0.5, 1.2], "equal": [True, True]})
    out = _printed(lambda c: print_frame(df, c, title=f"trial 1 of {name}: REPRODUCED"))
    lines = out.splitlines()
    assert lines[0] == f"trial 1 of {name}: REPRODUCED", out
    assert lines[1].split() == ["metric", "stored", "equal"]
    long_title = " ".join(["word"] * 30)  # 149 characters: wrapped at spaces within 80 columns
    lines = _printed(lambda c: print_frame(df, c, title=long_title)).splitlines()
    assert all(len(ln) <= 80 for ln in lines) and " ".join(lines[:2]).split() == long_title.split()


# ------------------------------------------------------------------------------------------ the Python API
_SPEC = {"study": {"name": "e20"}, "data": {"universe": "tier1", "start": "2023-02-01", "end": "2024-01-31"},
         "space": {"variant": {"type": "categorical", "choices": ["B", "D"]}},
         "sampler": {"name": "tpe", "seed": 1}, "run": {"n_trials": 4}}


@pytest.mark.parametrize("day", ["pd.Timestamp", "datetime", "datetime64", "date"])
def test_a_spec_date_may_be_a_midnight_timestamp_or_a_date(day):
    """ao.study_spec({... "data": {"start": pd.Timestamp("2023-02-01")}}) was refused ('[data.start] must be a date
    (YYYY-MM-DD), got datetime.datetime(2023, 2, 1, 0, 0)'), though a notebook's dates are Timestamps; a midnight
    Timestamp, datetime or datetime64 is now that day, the spec the text '2023-02-01' makes (same hash)."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    import optimizer as ao

    value = {"pd.Timestamp": pd.Timestamp("2023-02-01"), "datetime": dt.datetime(2023, 2, 1),
             "datetime64": np.datetime64("2023-02-01"), "date": dt.date(2023, 2, 1)}[day]
    text = ao.study_spec(_SPEC)
    spec = ao.study_spec({**_SPEC, "data": {**_SPEC["data"], "start": value}})
    assert spec.data.start == "2023-02-01" and spec.data.end == "2024-01-31"
    assert spec.spec_hash == text.spec_hash


@pytest.mark.parametrize("value", ["2023-02-01 10:30", "2023-02-01 00:00:00.000001", "tz", "nat"])
def test_a_spec_date_with_a_time_of_day_is_refused_naming_the_key(value):
    """A Timestamp with a time of day (or a time zone, or NaT) is no session: refused naming [data.end], never read
    as its day."""
    import pandas as pd

    import optimizer as ao
    from optimizer.errors import SpecError

    v = pd.NaT if value == "nat" else pd.Timestamp("2024-01-31", tz="America/New_York") if value == "tz" \
        else pd.Timestamp(value)
    with pytest.raises(SpecError, match=r"\[data\.end\]"):
        ao.study_spec({**_SPEC, "data": {**_SPEC["data"], "end": v}})


_STUDY = {"study": {"name": "e20s"}, "data": {"universe": "tier1"},
          "space": {"variant": {"type": "categorical", "choices": ["B", "D"]},
                    "buy_threshold": {"type": "int", "low": 60, "high": 75, "step": 5},
                    "exit": "first_dist", "time_stop": 20},
          "cv": {"n_splits": 2}, "objective": {"name": "composite_rank_excess", "min_trades": 1},
          "sampler": {"name": "tpe", "seed": 3, "n_startup_trials": 3}, "run": {"n_trials": 3}}


@pytest.fixture(scope="module")
def small_study(synth_db, tmp_path_factory):
    """(storage URL, study name) of a 3-trial study on the planted store's tier1."""
    import warnings

    import optimizer as ao

    url = f"sqlite:///{tmp_path_factory.mktemp('e20study') / 'studies.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ao.run_study(_STUDY, synth_db, url)
    return url, run.study_name


def _cli_json(args: list[str]) -> object:
    """``accumopt ARGS`` in-process (CliRunner): its stdout parsed as strict JSON, after checking the exit code."""
    import json

    from click.testing import CliRunner

    from optimizer.cli import main

    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_show_study_takes_trial_as_study_show_does(small_study):
    """The CLI has `study show NAME --trial N`; ao.show_study had no trial= (TypeError: unexpected keyword). It now
    returns that trial's document, the one `study show NAME --trial N --format json` prints (same keys, same
    numbers); top with trial, or a trial that is no integer, is refused naming the parameter."""
    import json

    import numpy as np

    import optimizer as ao
    from optimizer.cli._common import _jsonable
    from optimizer.errors import ParameterError

    url, name = small_study
    d = ao.show_study(url, name, trial=np.int64(1))
    assert d["number"] == 1 and d["study"] == name and d["params"]["variant"] in ("B", "D")
    cli = _cli_json(["study", "show", name, "--trial", "1", "--format", "json", "--storage", url])
    assert json.loads(json.dumps(d, default=_jsonable)) == cli
    assert list(d) == list(cli)
    assert len(ao.show_study(url, name)) == 3 and len(ao.show_study(url, name, top=2)) == 2  # the table as before
    with pytest.raises(ParameterError, match="top or trial"):
        ao.show_study(url, name, top=5, trial=1)
    with pytest.raises(ParameterError, match="trial must be"):
        ao.show_study(url, name, trial="1")


def test_evaluate_on_a_panel_names_the_loose_documents_own_universe_and_span(synth_db):
    """ao.evaluate(doc, panel) of a loose document naming its own universe / start / end ran on the panel without a
    word (a user reading the file's 'universe: tier1' got the metrics of tier1+3). It still runs on the panel (the
    panel fixes the sessions, as for a trial's record) and says which of the document's keys were not applied;
    a document naming none of them stays silent, and the numbers are the panel's either way."""
    import warnings

    import optimizer as ao

    panel = ao.load_panel(synth_db, "tier1", start="2023-03-01", end="2023-12-29")
    params = {"variant": "B", "z_window": 15, "buy_threshold": 65, "exit": "first_dist", "time_stop": 20}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plain = ao.evaluate(params, panel)
    assert not [x for x in w if "not applied" in str(x.message)]
    doc = {"params": params, "universe": "tier1+3", "start": "2023-06-01", "end": "2023-09-29"}
    with pytest.warns(UserWarning, match=r"universe='tier1\+3', start='2023-06-01', end='2023-09-29' not applied") \
            as rec:
        ev = ao.evaluate(doc, panel)
    assert rec[0].filename == __file__  # pointed at the caller's line
    assert ev.metrics.equals(plain.metrics)
    from optimizer.backtest import backtest  # a trial's document on a panel: documented to run on it, no warning

    r = backtest(params, synth_db, "tier1+3", save=False).record
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ao.evaluate({"study": "s", "number": 0, "value": 0.1, "params": dict(r.params), "metrics": {},
                     "config": r.to_dict()}, panel)
    assert not [x for x in w if "not applied" in str(x.message)]


# ------------------------------------------------------------------------------------------ JSON = files = table
def test_scan_csv_files_hold_the_numbers_its_json_prints(synth_db, tmp_path):
    """`scan --format json` printed volume_mean 13610719.333 while scanner_top.csv held 13610700 (float_format
    %.6g: 6 significant digits, a volume's units digits gone; every z-score and ratio cut to 6 digits). The CSV
    files now hold the very floats the JSON and scanner_daily_metrics hold."""
    import shutil

    import pandas as pd

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    doc = _cli_json(["scan", "--format", "json", "--no-png", "--db", str(db), "--out", str(tmp_path / "out"),
                     "--export-full"])
    top = pd.DataFrame(doc["top"])
    for name in ("top_csv", "metrics_csv"):
        csv = pd.read_csv(doc["files"][name])
        assert list(csv.columns) == list(top.columns)
        rows = csv.set_index("symbol").loc[top["symbol"]].reset_index()
        for c in top.columns:
            if not pd.api.types.is_numeric_dtype(top[c]) or pd.api.types.is_bool_dtype(top[c]):
                continue
            a, b = top[c].to_numpy(dtype=float), rows[c].to_numpy(dtype=float)
            assert ((a == b) | (pd.isna(a) & pd.isna(b))).all(), (name, c, a[:3], b[:3])
    assert (top["volume_mean"] % 1 != 0).any()  # not whole numbers: a 6-digit CSV could not have held them


# ------------------------------------------------------------------------------------------ errors under --format json
@pytest.mark.parametrize("args", [
    ["backtest", "--params", "{tmp}/missing.json", "--no-save"],  # click refused the flag: 4 lines before
    ["evening", "--params", "{tmp}/best.json", "--ingest", "{tmp}/no_dir"],
    ["symbols", "map", "add", "FB", "META"],  # a missing option
    ["backtest", "--variant", "Q", "--no-save"],  # a value not among the choices
    ["study", "show", "x", "--storage", "sqlite:///{tmp}/missing.db"],  # the library's own errors: one line already
    ["data", "info", "--db", "{tmp}/missing.duckdb"],
    ["study", "validate", "{tmp}/missing.toml"],
])
def test_an_error_under_format_json_is_one_line_on_stderr_and_nothing_on_stdout(tmp_path, args):
    """A script running `accumopt ... --format json` reads stdout as one JSON document and, on exit code 2, one error
    line on stderr. Errors of the library were so; a flag click itself refused (a --params file that does not
    exist, a missing --from, --variant Q) printed 4 lines: 'Usage: ...', 'Try ... for help.', '', 'Error: ...'.
    Now every one is `error: <what> (usage: <command> --help)`; stdout stays empty (no error object: the exit code
    says it failed)."""
    from click.testing import CliRunner

    from optimizer.cli import main

    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--format", "json"]
    r = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


@pytest.mark.parametrize("call, param", [
    (lambda ao: ao.run_study(_STUDY, None, "sqlite:///unused.db", progress="no"), "progress"),
    (lambda ao: ao.walk_forward(_STUDY, None, "sqlite:///unused.db", progress="no"), "progress"),
    (lambda ao: ao.compare_studies("sqlite:///unused.db", []), "studies"),
    (lambda ao: ao.build_report("some_study", "sqlite:///unused.db", name=5), "name"),
])
def test_api_arguments_are_checked_naming_the_parameter(call, param, tmp_path, monkeypatch):
    """ao.run_study / walk_forward(progress="no") drew a progress bar (a truthy string read as yes, where final="no"
    is refused); compare_studies(url, []) was refused as 'names must be ...', a name the caller never wrote;
    build_report(..., name=5) wrote a page named '5.html'. Each is now a ParameterError naming the parameter,
    before any store, storage or file is touched."""
    import optimizer as ao
    from optimizer.errors import ParameterError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParameterError, match=rf"^{param} must be"):
        call(ao)
    assert list(tmp_path.iterdir()) == []


def test_echo_json_writes_strict_json_whatever_floats_it_is_given(capsys):
    """Every `--format json` document goes through echo_json, whose json.dumps wrote a NaN or infinity as the bare
    words NaN / Infinity (np.float64 is a float, so the default hook never saw it): not JSON for jq or
    JSON.parse. Now null, wherever it sits; finite numbers, integers and key order unchanged."""
    import json

    import numpy as np

    from optimizer.cli._common import echo_json

    doc = {"a": float("nan"), "b": np.float64("inf"), "c": [float("-inf"), 1.5], "d": np.array([np.nan, 2.0]),
           "e": np.float32("nan"), "f": {"g": (1, np.float64(0.1))}, "h": np.int64(3), "i": "NaN"}
    echo_json(doc)
    out = capsys.readouterr().out
    back = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c} in {out}"))
    assert back == {"a": None, "b": None, "c": [None, 1.5], "d": [None, 2.0], "e": None, "f": {"g": [1, 0.1]},
                    "h": 3, "i": "NaN"}
    assert list(back) == list(doc)


def test_the_api_returns_the_numbers_the_commands_print_as_json(small_study, synth_db, tmp_path):
    """The README's promise, checked: `study best` = ao.best_params, `study show` = ao.show_study, `backtest
    --params best.json --no-save` = ao.evaluate(best, db=...) (every metric both hold, bit for bit; the JSON
    parsed strictly)."""
    import json

    import optimizer as ao
    from optimizer.cli._common import _jsonable, frame_json

    url, name = small_study
    best = _cli_json(["study", "best", name, "--format", "json", "--storage", url])
    assert json.loads(json.dumps(ao.best_params(url, name), default=_jsonable)) == best
    shown = _cli_json(["study", "show", name, "--format", "json", "--storage", url])
    assert json.loads(frame_json(ao.show_study(url, name))) == shown and len(shown) == 3
    f = tmp_path / "best.json"
    f.write_text(json.dumps(best), encoding="utf-8")
    bt = _cli_json(["backtest", "--params", str(f), "--no-save", "--db", str(synth_db), "--format", "json"])
    assert bt["reproduces_trial"] is True
    metrics = ao.evaluate(best, db=synth_db).metrics.iloc[0].to_dict()
    common = [k for k in metrics if k in bt]
    assert len(common) >= 17 and all(bt[k] == metrics[k] for k in common), \
        {k: (bt[k], metrics[k]) for k in common if bt[k] != metrics[k]}


def test_a_refused_flag_before_any_command_is_one_line_too():
    """`accumopt --nope` printed click's 4 lines (usage, hint, blank, 'Error: ...'); now the one error line, exit 2;
    --version and a bare `accumopt` (its help) are unchanged."""
    from click.testing import CliRunner

    from optimizer.cli import main

    r = CliRunner().invoke(main, ["--nope"], catch_exceptions=False, prog_name="accumopt")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["error: No such option '--nope'. (usage: accumopt --help)"]
    r = CliRunner().invoke(main, ["--version"], catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout.startswith("accumopt, version ")
    r = CliRunner().invoke(main, [], catch_exceptions=False)
    assert "Commands:" in r.output


@pytest.mark.parametrize("fn", ["load_panel", "evaluate", "sandbox_figure"])
def test_api_start_end_timestamps_are_days_a_time_of_day_is_refused(synth_db, fn):
    """ao.load_panel(db, "tier1", start=pd.Timestamp("2023-03-01 10:30")) loaded from 2023-03-01 without a word (the
    time of day dropped), where the same Timestamp in a spec is refused. A midnight Timestamp is that day (the same
    panel as the text); a time of day, a time zone or NaT is a ParameterError naming start / end."""
    import warnings

    import pandas as pd

    import optimizer as ao
    from optimizer.errors import ParameterError

    call = {"load_panel": lambda **kw: ao.load_panel(synth_db, "tier1", **kw),
            "evaluate": lambda **kw: ao.evaluate({"variant": "B"}, db=synth_db, universe="tier1", **kw),
            "sandbox_figure": lambda **kw: ao.sandbox_figure(synth_db, "SPY", **kw)}[fn]
    for kw in ({"start": pd.Timestamp("2023-03-01 10:30")}, {"end": pd.Timestamp("2023-12-29", tz="UTC")},
               {"start": pd.NaT}):
        with pytest.raises(ParameterError, match=rf"^{next(iter(kw))} must be a date"):
            call(**kw)
    if fn == "load_panel":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = call(start=pd.Timestamp("2023-03-01"), end=pd.Timestamp("2023-12-29"))
            b = call(start="2023-03-01", end="2023-12-29")
        assert list(a.dates) == list(b.dates) and str(a.dates[0])[:10] == "2023-03-01"


@pytest.mark.parametrize("call", [
    lambda ao: ao.load_panel(5), lambda ao: ao.open_store(b"x.duckdb"), lambda ao: ao.synth_store(None),
    lambda ao: ao.synth_store(""), lambda ao: ao.sandbox_figure(7, "SPY"),
    lambda ao: ao.evaluate({"variant": "B"}, db=3.5), lambda ao: ao.run_study(_STUDY, db=["x"]),
])
def test_a_db_that_is_no_path_is_refused_naming_db(call, tmp_path, monkeypatch):
    """ao.load_panel(5) and ao.synth_store(None) ended in 'TypeError: expected str, bytes or os.PathLike object, not
    int' from deep inside os.fspath; a db of the wrong type is now a ParameterError naming db."""
    import optimizer as ao
    from optimizer.errors import ParameterError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACCUMOPT_OUTPUT", str(tmp_path / "out"))
    with pytest.raises(ParameterError, match=r"^db must be the path of a DuckDB store"):
        call(ao)


@pytest.mark.parametrize("args", [
    ["study", "show", "x", "--columns", "number,value", "--format", "json"],
    ["study", "list", "--wide", "--format", "csv"],
    ["walkforward", "spec.toml", "--columns", "window", "--format", "json"],
    ["table", "--wide", "--columns", "symbol", "--format", "json"],
])
def test_columns_and_wide_with_format_json_or_csv_are_refused_not_ignored(args):
    """`study show NAME --columns number,value --format json` printed every column (22 keys per trial) without a word:
    --columns and --wide shape only the terminal table. With --format json|csv either is now refused naming it,
    before any store or storage is opened (the names here need none)."""
    from click.testing import CliRunner

    from optimizer.cli import main

    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 2 and r.stdout == "", r.output
    line = r.stderr.strip()
    assert line.startswith("error: --") and "what the terminal table shows" in line and len(r.stderr.splitlines()) == 1
    assert all(f in line for f in ("--columns", "--wide") if f in args)


@pytest.mark.parametrize("extra", [["--top", "5"], ["--top", "10"], ["--columns", "number"], ["--wide"]])
def test_study_show_trial_refuses_the_top_table_flags(small_study, extra):
    """`study show NAME --trial 1 --top 5` showed trial 1 and ignored --top (and --columns, --wide) without a word:
    they shape the top-trials table, which --trial replaces. Refused naming the flag (even --top 10, the default
    value, when written); ao.show_study refuses top with trial alike."""
    from click.testing import CliRunner

    from optimizer.cli import main

    url, name = small_study
    r = CliRunner().invoke(main, ["study", "show", name, "--trial", "1", *extra, "--storage", url],
                           catch_exceptions=False)
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr.startswith(f"error: {extra[0]} shapes the table of the top trials, which --trial N replaces")
    r = CliRunner().invoke(main, ["study", "show", name, "--trial", "1", "--storage", url], catch_exceptions=False)
    assert r.exit_code == 0 and "trial 1" in r.stdout


def test_frame_json_keeps_a_real_times_microseconds(small_study):
    """`study list --format json` wrote a study's created as '2026-12-05T09:57:17.107' where `--format csv` and
    ao.list_studies hold 09:57:17.107828: pandas' to_json cut every real time to milliseconds. Now the JSON time is
    the frame's, to the microsecond (session dates stay YYYY-MM-DD)."""
    import json

    import pandas as pd

    import optimizer as ao

    url, _ = small_study
    df = ao.list_studies(url)
    rows = _cli_json(["study", "list", "--format", "json", "--storage", url])
    assert [pd.Timestamp(r["created"]) for r in rows] == list(df["created"])
    from optimizer.cli._common import frame_json  # a planted time: the sub-millisecond digits are kept

    planted = pd.DataFrame({"created": pd.to_datetime(["2026-12-05 09:57:17.107828"])})
    assert json.loads(frame_json(planted)) == [{"created": "2026-12-05T09:57:17.107828"}]
