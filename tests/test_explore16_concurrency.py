"""Two processes on one DuckDB store (explore16).

DuckDB lets one process write a store file, or several read it. A command or notebook blocked by another process
(tonight's ingest while a notebook holds the store, a study loading while an ingest writes) gets one line naming
that process (its program and PID) and what to do, exit 2; the Python API raises a DataError with that line, never
DuckDB's IOException (whose hint "open this database in read-only mode, e.g. by using the -readonly parameter in
the CLI" is the DuckDB shell's, not accumopt's).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import optimizer as ao
from optimizer.data.store import _held_by_other_process, connect
from optimizer.errors import DataError
from tests._cli_helpers import cli, one_line_error

# Opens the store in the mode asked, says so on stdout, and holds it until its stdin closes.
_HOLDER = ("import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
           "print('held', flush=True); sys.stdin.read(); con.close()")


@contextmanager
def held(db: Path, mode: str) -> Iterator[int]:
    """Another process holds ``db`` open (``mode`` 'ro' or 'rw') for the block; yields its PID."""
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), mode], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"  # waits until the child holds the lock
        yield p.pid
    finally:
        p.stdin.close()
        p.wait(timeout=30)
        p.stdout.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    connect(db).close()
    return db


def test_a_reader_blocked_by_a_writing_process_is_told_who_and_what_to_do(store):
    with held(store, "rw") as pid:
        with pytest.raises(DataError) as e:
            connect(store, read_only=True)
        with pytest.raises(DataError) as w:
            connect(store)
    for msg in (str(e.value), str(w.value)):
        assert f"database {store} is being written by another process (python" in msg
        assert f"PID {pid})" in msg
        assert "run this again when that process has finished" in msg and "--db a copy" in msg
        assert "-readonly parameter" not in msg and "\n" not in msg
    connect(store, read_only=True).close()  # the lock went with the other process


def test_a_writer_blocked_by_a_reading_process_is_told_to_wait_for_it_to_close(store):
    with held(store, "ro") as pid:
        with pytest.raises(DataError) as e:
            connect(store)
        connect(store, read_only=True).close()  # readers share the file
    msg = str(e.value)
    assert f"database {store} is open for reading in another process (python" in msg and f"PID {pid})" in msg
    assert "con.close()" in msg and "-readonly parameter" not in msg


def test_the_command_line_says_it_in_one_line_exit_2(store, tmp_path):
    with held(store, "ro") as pid:
        res = cli("metrics", "build", "--db", store, "--out", tmp_path / "out")
    one_line_error(res, f"database {store} is open for reading in another process", f"PID {pid})")


def test_a_notebook_gets_a_data_error_not_duckdbs_io_exception(store):
    with held(store, "rw") as pid:
        with pytest.raises(DataError, match=f"PID {pid}"):
            ao.load_panel(store, "tier1")


def test_other_io_errors_are_left_to_duckdb():
    assert _held_by_other_process("x.duckdb", 'IO Error: Cannot open file "x.duckdb": Permission denied', False) is None
    msg = _held_by_other_process("x.duckdb", 'IO Error: Could not set lock on file "x.duckdb": Conflicting lock is '
                                 'held in /usr/bin/python3.11 (PID 42) by user me. See also https://duckdb.org', True)
    assert "another process (python3.11, PID 42)" in msg


def test_an_interrupted_scan_leaves_the_previous_scanner_csvs_whole(tmp_path, monkeypatch):
    """Evening rewrites <out>/scanner/<day>/scanner_top.csv (and scanner_metrics.csv) each night; a write cut short
    (Ctrl-C, cron's timeout, a full disk) must leave last night's whole file, never a truncated one that a notebook
    or tomorrow's diff reads as a shorter ranking."""
    import pandas as pd

    from optimizer.analytics.scanner import scan, write_scan
    from tests.test_analytics import _finra_rows, _insert_finra

    con = connect(tmp_path / "t.duckdb")
    try:
        _insert_finra(con, _finra_rows())
        first = scan(con, lookback=4, min_periods=4, top=2)
        paths = write_scan(con, first, tmp_path / "scanner", export_full=True)
        before = {k: paths[k].read_bytes() for k in ("top_csv", "metrics_csv")}
        assert len(pd.read_csv(paths["metrics_csv"])) == 4

        real = pd.DataFrame.to_csv

        def cut_short(self, path, *args, **kwargs):  # writes the header and one row, then is interrupted
            real(self.head(1), path, *args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
        with pytest.raises(KeyboardInterrupt):
            write_scan(con, scan(con, lookback=5, min_periods=4, top=2), tmp_path / "scanner", export_full=True)
    finally:
        con.close()
    assert {k: paths[k].read_bytes() for k in before} == before
    assert not [p.name for p in paths["top_csv"].parent.iterdir() if p.name.endswith(".tmp")]


def _cut_short_write_text(monkeypatch):
    """Path.write_text writes the first 100 characters, then is interrupted (Ctrl-C, a full disk)."""
    real = Path.write_text

    def cut_short(self, data, *args, **kwargs):
        real(self, data[:100], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", cut_short)


def test_an_interrupted_daily_table_leaves_the_previous_page_whole(tmp_path, monkeypatch):
    import pandas as pd

    from optimizer.analytics.tables import write_daily_table_html

    page = write_daily_table_html(pd.DataFrame({"date": ["2024-07-10"], "symbol": ["AAA"]}), tmp_path / "t.html")
    before = page.read_bytes()
    assert before.rstrip().endswith(b"</html>")
    _cut_short_write_text(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_daily_table_html(pd.DataFrame({"date": ["2024-07-11"], "symbol": ["BBB"]}), page)
    assert page.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.html"]


def test_an_interrupted_study_comparison_leaves_the_previous_page_whole(tmp_path, monkeypatch):
    import pandas as pd
    import plotly.graph_objects as go

    from optimizer.report import compare
    from optimizer.study.inspect import CompareResult

    monkeypatch.setattr(compare, "compare_figure", lambda result: go.Figure())  # the file write is the subject here
    empty = pd.DataFrame()
    res = CompareResult(["a"], pd.DataFrame({"study": ["a"], "kernel_warmup_s": [0.5]}), empty, empty, empty)
    page = compare.write_compare_html(res, tmp_path / "cmp.html")
    before = page.read_bytes()
    assert before.rstrip().endswith(b"</html>")
    _cut_short_write_text(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        compare.write_compare_html(CompareResult(["b"], res.summary.assign(study=["b"]), empty, empty, empty), page)
    assert page.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cmp.html"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_interrupted_study_export_leaves_the_previous_file_whole(tmp_path, monkeypatch, fmt):
    import pandas as pd

    from optimizer.study import inspect

    tables = iter([pd.DataFrame({"number": [0, 1, 2], "value": [0.1, 0.2, 0.3]}), pd.DataFrame({"number": [0]})])
    monkeypatch.setattr(inspect, "trials_table", lambda storage, name: next(tables))  # the file write is the subject
    p = inspect.export_study("sqlite:///unused.db", "s", tmp_path / f"s.{fmt}", fmt=fmt)
    before = p.read_bytes()
    writer = "to_csv" if fmt == "csv" else "to_parquet"
    real = getattr(pd.DataFrame, writer)

    def cut_short(self, path, *args, **kwargs):  # writes a part (here: a whole smaller table), then is interrupted
        real(self.head(0), path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, writer, cut_short)
    with pytest.raises(KeyboardInterrupt):
        inspect.export_study("sqlite:///unused.db", "s", p, fmt=fmt)
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == [p.name]


def test_a_backtest_that_cannot_write_the_store_is_refused_before_it_evaluates(synth_db, tmp_path, monkeypatch):
    """`backtest` writes the store at its end (bt_ tables, market regimes); with a notebook or a study holding the
    store open it failed there, after loading the panel and the whole evaluation."""
    import shutil

    from optimizer import backtest as bt

    db = tmp_path / "copy.duckdb"
    shutil.copy(synth_db, db)

    def loaded(*args, **kwargs):
        raise AssertionError("the panel was loaded and evaluated before the store's write was refused")

    monkeypatch.setattr(bt, "load_universe_panel", loaded)
    with held(db, "ro") as pid:
        with pytest.raises(DataError, match=f"open for reading in another process .*PID {pid}"):
            bt.backtest({}, db, universe="tier1", save=True, out_root=tmp_path / "out")


def test_signals_that_cannot_write_the_store_are_refused_before_the_sheet_is_computed(store, tmp_path, monkeypatch):
    """`signals` (--save, the default) writes its signal_sheet table at its end; with the store held open by another
    process it computed the whole sheet first, then failed."""
    import json

    from optimizer.cli import signals as cli_signals

    def computed(*args, **kwargs):
        raise AssertionError("the sheet was computed before the store's write was refused")

    monkeypatch.setattr(cli_signals, "signal_sheet", computed)
    params = tmp_path / "best.json"
    params.write_text(json.dumps({"params": {}}), encoding="utf-8")
    with held(store, "ro") as pid:
        res = cli("signals", "--params", params, "--db", store, "--out", tmp_path / "out")
    one_line_error(res, "is open for reading in another process", f"PID {pid})")
