"""Terminal output fits 80 columns: the table renderer (``optimizer.report.terminal``) and every table the CLI prints.

Part 1 checks the renderer by hand: key columns first, the columns that do not fit left out and named, ``select``
and ``wide``, rounding, free-text wrapping, one record vertically, commands and paths never wrapped.

Part 2 renders EVERY table the command line prints (study list / show / show --trial / best / compare / replay /
run, table in both styles, scan, ingest, data info, data synth, metrics build, backtest, walkforward, signals,
symbols) at 80 columns in a pipe (``COLUMNS=80``, a non-tty ``CliRunner``), and asserts, for each command:

* no line is wider than 80 columns, except a line that is one unbroken token (a path) or a command to copy;
* no cell or header is cut to "…";
* no header is broken: every header rich was given (recorded from ``rich.table.Table.add_column``) stands whole on
  the header line of its table (the line above the rule under the header).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rich.table
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console

from optimizer.cli import main
from optimizer.errors import ParameterError
from optimizer.report.terminal import Column, cell_text, print_command, print_frame, print_record

WIDTH = 80
COPYABLE = ("accumopt ", "export ", ". ")


# ------------------------------------------------------------------------------------------------ 1. the renderer


def _console(width: int = WIDTH) -> Console:
    return Console(record=True, width=width, file=open("/dev/null", "w"), color_system=None)


def _lines(con: Console) -> list[str]:
    return [ln.rstrip() for ln in con.export_text(clear=False).splitlines()]


def test_cell_text_rounds_for_display():
    assert cell_text("value", 0.304738) == "0.3047" and cell_text("value", 12.3456) == "12.35"
    assert cell_text("value", 123456.7) == "123,457" and cell_text("rows", 16566) == "16,566"
    assert cell_text("value", 1e-5) == "1.00e-05" and cell_text("value", 3.0) == "3"
    assert cell_text("hit_rate", 0.6774) == "67.7%" and cell_text("oos_avg_excess_return", 0.0555) == "+5.55%"
    assert cell_text("x", float("nan")) == "-" and cell_text("x", None) == "-" and cell_text("x", pd.NaT) == "-"
    assert cell_text("created", pd.Timestamp("2026-12-02 19:54:35.1")) == "2026-12-02 19:54"
    assert cell_text("day", pd.Timestamp("2024-01-02")) == "2024-01-02" and cell_text("ok", True) == "yes"


def test_key_columns_that_fit_and_the_rest_named():
    df = pd.DataFrame({"name": ["alpha", "beta"], **{f"col_{i}": [1.5 * i, 2.25 * i] for i in range(12)}})
    con = _console()
    view = print_frame(df, con, title="t", key=["name", *[f"col_{i}" for i in range(12)]])
    lines = _lines(con)
    assert max(cell_len(ln) for ln in lines if ln) <= WIDTH
    # name (5) + 2 + 8 per col_i (width 5 < header 5) ... as many as fit in 80, in key order
    assert view.headers[0] == "name" and view.headers[1:] == tuple(f"col_{i}" for i in range(len(view.headers) - 1))
    assert view.hidden == tuple(f"col_{i}" for i in range(len(view.headers) - 1, 12))
    assert lines[-1].startswith(f"{len(view.hidden)} more columns (--columns A,B,... or --wide): col_")
    header = lines[1]
    assert header.split() == list(view.headers)  # one header line, every header whole
    assert set(lines[2]) == {"─"}
    # select: exactly these, by name or label, any width; unknown -> one-line error naming the available ones
    con = _console()
    v = print_frame(df, con, select="col_11,name", columns=[Column("col_11", label="eleven")])
    assert v.headers == ("eleven", "name") and v.hidden == ()
    with pytest.raises(ParameterError, match=r"columns: unknown column 'nope'; available: name, col_0"):
        print_frame(df, _console(), select=["nope"])
    # wide: every column, lines longer than the terminal, nothing cut
    con = _console()
    v = print_frame(df, con, wide=True)
    assert len(v.headers) == 13 and "…" not in con.export_text(clear=False)
    assert max(cell_len(ln) for ln in _lines(con)) > WIDTH


def test_a_first_column_cell_wider_than_the_terminal_is_printed_whole():
    # `study list` with a study name longer than 80 characters showed it cut ("a-very-long…"): the one name the user
    # needs to copy into `study show NAME`. The first column always stays; its long cell now stands whole
    name = "a-very-long-study-name-" * 4 + "end"
    df = pd.DataFrame({"name": [name, "short"], "complete": [3, 4]})
    con = _console()
    view = print_frame(df, con, title="studies", key=["name", "complete"])
    text = con.export_text(clear=False)
    assert "…" not in text and name in text.split() and "short" in text.split()
    assert view.headers == ("name",) and view.hidden == ("complete",)


def test_empty_columns_are_left_out_and_free_text_wraps_at_spaces():
    df = pd.DataFrame({"file": ["a.txt", "b.txt"], "empty": [np.nan, np.nan], "status": ["ok", "failed"],
                       "message": ["", "line 3: the date 2024-13-01 is not a valid date; the file is left out of "
                                       "the store and every table is unchanged"]})
    con = _console()
    v = print_frame(df, con, columns=[Column("message", wrap=True)], key=["file", "empty", "status", "message"])
    out = con.export_text(clear=False)
    assert v.headers == ("file", "status", "message") and "…" not in out
    assert max(cell_len(ln) for ln in _lines(con)) <= WIDTH
    assert "every table is unchanged" in " ".join(out.split())  # wrapped inside its cell, not cut


def test_one_record_vertically_paths_alone_and_commands_unwrapped():
    long_path = "/tmp/" + "x" * 90 + "/report.html"
    con = _console()
    print_record({"study": "s", "value": 0.30474, "params": {"variant": "D", "w_short": 0.44999999999999996},
                  "report": long_path, "verdict": "edge supported: " + "word " * 30}, con, title="best of s")
    lines = _lines(con)
    assert lines[:5] == ["best of s", "study      s", "value      0.3047", "params", "  variant  D"]
    assert "  w_short  0.45" in lines
    i = lines.index("report")
    assert lines[i + 1] == "  " + long_path  # alone on its line, whole
    assert all(cell_len(ln) <= WIDTH for ln in lines if " " in ln.strip())
    con = _console()
    cmd = "export ACCUMOPT_DB=" + "/d" * 50 + " ACCUMOPT_STORAGE=sqlite:///" + "/s" * 20
    print_command("then run:", cmd, con)
    assert _lines(con) == ["then run:", cmd]


# ------------------------------------------------------------------------------------------------ 2. every CLI table

SPEC = """
[study]
name = "{name}"
[data]
universe = "tier1"
[space]
variant = {{ type = "categorical", choices = ["B", "D"] }}
z_window = {{ type = "categorical", choices = [10, 20] }}
buy_threshold = {{ type = "int", low = 60, high = 75, step = 5 }}
sell_threshold = 30
exit = {{ type = "categorical", choices = ["first_dist", "fixed_10d"] }}
time_stop = 20
[cv]
n_splits = 2
[objective]
name = "composite_rank_excess"
min_trades = 1
[sampler]
name = "tpe"
seed = {seed}
n_startup_trials = 4
[pruner]
name = "median"
n_startup_trials = 2
[run]
n_trials = {n}
[walkforward]
train = 75
test = 20
unit = "sessions"
n_trials = 8
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory, tier1_h1_store):
    """A small store (tier1, 2024 H1: tests/conftest.py's ``tier1_h1_store``, built by ``data synth`` once per
    session) and two studies, in a working directory; paths relative to it."""
    d = tmp_path_factory.mktemp("term")
    built, _ = tier1_h1_store
    shutil.copy(built / "store.duckdb", d / "store.duckdb")  # this module's own copy: commands here may write it
    (d / "raw").symlink_to(built / "raw", target_is_directory=True)  # read only
    for name, seed, n in (("alpha", 1, 10), ("beta", 2, 8)):
        (d / f"{name}.toml").write_text(SPEC.format(name=name, seed=seed, n=n), encoding="utf-8")
    return d


@pytest.fixture
def headers(monkeypatch):
    """Every header given to a rich Table while a command runs."""
    seen: list[str] = []
    orig = rich.table.Table.add_column

    def add_column(self, header="", *a, **k):
        seen.append(str(header))
        return orig(self, header, *a, **k)

    monkeypatch.setattr(rich.table.Table, "add_column", add_column)
    return seen


def _run(cwd: Path, monkeypatch, *args: str, code: int = 0) -> str:
    monkeypatch.chdir(cwd)
    env = {"COLUMNS": str(WIDTH), "ACCUMOPT_DB": "store.duckdb", "ACCUMOPT_STORAGE": "sqlite:///studies.db",
           "TICKERS": None, "LINES": None}
    res = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert res.exit_code == code, f"{args}: exit {res.exit_code}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _check(out: str, headers: list[str], what: str, tables: int = 1) -> None:
    lines = out.splitlines()
    assert "…" not in out, f"{what}: a cell or header cut to '…'\n{out}"
    for ln in lines:
        s = ln.strip()
        if cell_len(ln.rstrip()) > WIDTH:
            assert " " not in s or s.startswith(COPYABLE), f"{what}: line wider than {WIDTH}: {ln!r}"
    rules = [i for i, ln in enumerate(lines) if ln.strip() and set(ln.strip()) <= {"─", " "} and i > 0]
    assert len(rules) >= tables, f"{what}: expected {tables} table(s)\n{out}"
    head_lines = [lines[i - 1] for i in rules]
    for h in headers:
        if h.strip():
            assert any(h in hl for hl in head_lines), f"{what}: header {h!r} broken or missing\n{out}"


@pytest.fixture(scope="module")
def studies(env):
    """Run both studies once (module scope): the tables below read them."""
    mp = pytest.MonkeyPatch()
    try:
        for name in ("alpha", "beta"):
            _run(env, mp, "study", "run", f"{name}.toml", "--format", "json")
        best = _run(env, mp, "study", "best", "alpha", "--format", "json")
        (env / "best.json").write_text(best, encoding="utf-8")
    finally:
        mp.undo()
    return env


@pytest.mark.parametrize("args, tables", [
    (("study", "list"), 1),
    (("study", "show", "alpha", "--top", "10"), 1),
    (("study", "show", "alpha", "--trial", "3"), 1),
    (("study", "best", "alpha", "--format", "table"), 0),
    (("study", "compare", "alpha", "beta"), 1),
    (("study", "replay", "alpha", "0"), 1),
    (("study", "list", "--columns", "name,complete,best_value"), 1),
    (("table",), 1),
    (("table", "--style", "analysis"), 1),
    (("table", "--tickers", "SPY,QQQ"), 1),
    (("scan",), 1),
    (("data", "info"), 1),
    (("backtest", "--params", "best.json", "--no-save"), 0),
    (("signals", "--params", "best.json", "--no-save", "--all"), 1),
    (("symbols", "show", "brk/b", "ABRpD", "spy"), 1),
])
def test_every_table_fits_80_columns(studies, monkeypatch, headers, args, tables):
    out = _run(studies, monkeypatch, *args)
    _check(out, headers, " ".join(args), tables)
    if not tables:  # a vertical view: key  value lines
        assert len(out.splitlines()) > 5


def test_study_run_walkforward_ingest_synth_and_metrics_fit_80_columns(studies, monkeypatch, headers, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(studies / "store.duckdb", work / "store.duckdb")
    shutil.copy(studies / "alpha.toml", work / "gamma.toml")
    (work / "gamma.toml").write_text((work / "gamma.toml").read_text().replace('"alpha"', '"gamma"'), encoding="utf-8")
    out = _run(work, monkeypatch, "study", "run", "gamma.toml")
    _check(out, headers, "study run", 0)
    assert "accumopt dashboard --storage sqlite:///studies.db" in out.splitlines()  # the command on its own line
    headers.clear()
    out = _run(work, monkeypatch, "walkforward", "gamma.toml")
    _check(out, headers, "walkforward", 1)
    assert "accumopt report output/walkforward/gamma" in out.splitlines()
    headers.clear()
    out = _run(work, monkeypatch, "metrics", "build")
    _check(out, headers, "metrics build", 0)
    headers.clear()
    _run(work, monkeypatch, "symbols", "map", "add", "FB", "META", "--from", "2022-06-09")
    out = _run(work, monkeypatch, "symbols", "map", "list")
    _check(out, headers, "symbols map list", 1)
    headers.clear()
    # ingest: a few files (listed) plus a broken one whose message wraps inside its cell
    finra = sorted((studies / "raw").rglob("CNMSshvol*.txt"))[:3]  # data synth writes under its output root
    bad = work / "CNMSshvol20240105.txt"
    bad.write_text("Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\n20240105|SPY|x|0|100|B\n")
    out = _run(work, monkeypatch, "ingest", "finra-short", *map(str, finra), str(bad), "--db", "fresh.duckdb", code=2)
    _check(out, headers, "ingest", 1)
    assert "4 file(s) (" in out and "CNMSshvol20240105.txt" in out
    headers.clear()
    out = _run(work, monkeypatch, "data", "synth", "--out", "raw2", "--db", "synth2.duckdb", "--start", "2024-05-01",
               "--end", "2024-06-28", "--universe", "SPY,QQQ")
    _check(out, headers, "data synth", 0)
