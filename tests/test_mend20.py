"""mend20: what the last stop noticed and left (settings, outputs, times). One section per item of the brief."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

import optimizer.data.store as store

UTC = dt.timezone.utc


# ------------------------------------------------------------------ 1. times stored / written with their zone
# the `tokyo` fixture (the machine's zone set to Asia/Tokyo) is tests/conftest.py's


def _store_at_v8(path) -> None:
    """A store of the schema before the times got their zone (v8, 26c05ac), with one signal_sheet row written as
    that version wrote it (created_at: UTC without zone) and one reserve_ledger row (opened_at: the machine's local
    time without zone), both 2026-12-01 10:00:00."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for v, step in enumerate(store.MIGRATIONS[:8], start=1):
        getattr(store, step)(con) if step.startswith("_") else con.execute(step)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v])
    con.execute("INSERT INTO signal_sheet (date, params_hash, symbol, next_session, decision, params, created_at) "
                "VALUES ('2024-12-31', 'h', 'AAA', '2025-01-02', 'HOLD', '{}', TIMESTAMP '2026-12-01 10:00:00')")
    con.execute("INSERT INTO reserve_ledger VALUES ('2024-06-28', TIMESTAMP '2026-12-01 10:00:00', 'backtest --final', "
                "'config x', '2024-07-31')")
    con.close()


def _types(con) -> dict[tuple[str, str], str]:
    return {(t, c): ty for t, c, ty in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE (table_name, column_name) IN "
        "(('signal_sheet', 'created_at'), ('reserve_ledger', 'opened_at'))").fetchall()}


def test_a_v8_store_gets_its_times_as_instants_and_old_rows_keep_their_meaning(tmp_path, tokyo):
    """signal_sheet.created_at (UTC without zone) and reserve_ledger.opened_at (the machine's local time without
    zone) were TIMESTAMP (fails before: schema v8, both TIMESTAMP). A v8 store opened read-write is migrated to
    TIMESTAMPTZ; its old rows keep their meaning: the sheet's 10:00 is 10:00 UTC, the ledger's 10:00 is 10:00 on
    this (Tokyo) machine, 01:00 UTC, printed 10:00+09:00 as before."""
    from optimizer.study import reserve

    db = tmp_path / "v8.duckdb"
    _store_at_v8(db)
    assert reserve.openings(db)[0].opened_at == "2026-12-01T10:00:00+09:00"  # read-only: v8 as it is
    con = store.connect(db)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(store.SCHEMA_VERSION,)]
        assert store.SCHEMA_VERSION == 9
        assert set(_types(con).values()) == {"TIMESTAMP WITH TIME ZONE"}
        (sheet,), (ledger,) = (con.execute(f"SELECT {c} FROM {t}").fetchall()[0] for t, c in
                               (("signal_sheet", "created_at"), ("reserve_ledger", "opened_at")))
    finally:
        con.close()
    assert sheet == dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert ledger == dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert reserve.openings(db)[0].opened_at == "2026-12-01T10:00:00+09:00"  # the same text as before the migration


def test_the_v9_migration_stopped_midway_leaves_the_v8_store_as_it_was(tmp_path, monkeypatch):
    """The v9 migration is one transaction: stopped after its two ALTERs (a Ctrl-C there), the store stays at v8,
    both columns TIMESTAMP and the rows unchanged (fails before: there is no v9 migration to stop); the next opening
    finishes it."""
    db = tmp_path / "v8.duckdb"
    _store_at_v8(db)
    real = store._times_with_zone

    def killed(con):
        real(con)
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_times_with_zone", killed)
    with pytest.raises(KeyboardInterrupt):
        store.connect(db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall() == [(8,)]
        assert set(_types(con).values()) == {"TIMESTAMP"}
        assert con.execute("SELECT created_at FROM signal_sheet").fetchall() == [(dt.datetime(2026, 12, 1, 10, 0),)]
        assert con.execute("SELECT opened_at FROM reserve_ledger").fetchall() == [(dt.datetime(2026, 12, 1, 10, 0),)]
    finally:
        con.close()
    monkeypatch.setattr(store, "_times_with_zone", real)
    con = store.connect(db)
    try:
        assert set(_types(con).values()) == {"TIMESTAMP WITH TIME ZONE"}
    finally:
        con.close()


_KILLED_AFTER_MIGRATING = """
import os, sys
import optimizer.data.store as store
con = store.connect(sys.argv[1])  # migrated to v9 in the write-ahead log
con.execute("INSERT INTO reserve_ledger VALUES ('2024-06-28', TIMESTAMPTZ '2026-12-02 10:00:00+00', 'x', NULL, NULL)")
os._exit(0)  # killed before any checkpoint: the next opening replays the log
"""


def test_a_store_killed_right_after_the_v9_migration_opens_without_the_network(tmp_path):
    """A store killed before its checkpoint is opened by replaying DuckDB's write-ahead log. A v9 written with
    DuckDB's time-zone function (timezone('UTC', ...)) made that replay fail: it binds the ICU extension before the
    built-in one is loaded and tries to download it ('Failed to download extension "icu"', measured in
    test_explore18_resources' full-disk ingest, whose store stays in its log). The migration casts text with an
    explicit offset; the replayed store holds the migrated rows (here a v8 store, then a new store)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, make in (("v8.duckdb", _store_at_v8), ("new.duckdb", None)):
        db = tmp_path / name
        if make is not None:
            make(db)
        p = subprocess.run([sys.executable, "-c", _KILLED_AFTER_MIGRATING, str(db)], cwd=root, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        assert Path(f"{db}.wal").exists()  # the migration is in the log only
        con = duckdb.connect(str(db), read_only=True)
        try:
            assert set(_types(con).values()) == {"TIMESTAMP WITH TIME ZONE"}
            got = [r[0] for r in con.execute("SELECT opened_at FROM reserve_ledger ORDER BY 1").fetchall()]
        finally:
            con.close()
        assert got[-1] == dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC) and len(got) == (2 if make else 1)


def test_new_sheet_rows_and_ledger_openings_store_the_instant_of_the_write(tmp_path, tokyo):
    """Written on a Tokyo machine: each stored value is the instant of the write, within a minute of now (fails
    before: the sheet's column gave back a naive UTC time and the ledger's a naive Tokyo one, 9 hours apart)."""
    from optimizer.report.sheet import write_sheet_table
    from optimizer.study import reserve

    db = tmp_path / "s.duckdb"
    reserve.record_opening(db, "2024-06-28", "backtest --final", "config x", "2024-07-31")
    con = store.connect(db)
    try:
        write_sheet_table(con, pd.DataFrame({"date": [pd.Timestamp("2024-12-31")], "params_hash": ["h"],
                                             "symbol": ["AAA"], "next_session": [pd.Timestamp("2025-01-02")],
                                             "decision": ["HOLD"], "params": ["{}"]}))
        got = [con.execute(f"SELECT {c} FROM {t}").fetchall()[0][0] for t, c in
               (("signal_sheet", "created_at"), ("reserve_ledger", "opened_at"))]
    finally:
        con.close()
    now = dt.datetime.now(UTC)
    for value in got:
        assert value.tzinfo is not None and abs(value - now) < dt.timedelta(minutes=1), value


def test_backtest_runs_csv_created_at_states_its_offset(tmp_path, tokyo):
    """backtest_runs.csv's created_at was UTC without a zone ('2026-12-05T14:50:55'; fails before: no offset). It
    is the UTC time of the write with its offset, the same column as before (old rows stay UTC)."""
    from optimizer.report.backtest import write_backtest_files

    paths = write_backtest_files({"score_variant": "B"}, pd.DataFrame({"symbol": ["AAA"]}),
                                 pd.DataFrame({"symbol": ["AAA"]}), tmp_path / "run", run_id="r1")
    (created,) = pd.read_csv(paths["backtest_runs"], dtype=str)["created_at"]
    when = dt.datetime.fromisoformat(created)
    assert when.utcoffset() == dt.timedelta(0), created
    assert abs(when - dt.datetime.now(UTC)) < dt.timedelta(minutes=1)


# ------------------------------------------------------------------ 2. the scanner's day folder, all or nothing
@pytest.fixture
def scan_store(tmp_path):
    from test_analytics import _finra_rows, _insert_finra

    con = store.connect(tmp_path / "t.duckdb")
    _insert_finra(con, _finra_rows())
    yield con
    con.close()


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_scanner_rerun_leaves_none_of_the_previous_runs_files_beside_the_new_ones(scan_store, tmp_path):
    """A re-run without --export-full left the previous scanner_metrics.csv, and one without PNGs the previous
    PNGs, beside the new HTML (fails before: both still there). Now the scanner's own files are replaced as a set;
    a file of the user's in the folder is kept."""
    from optimizer.analytics.scanner import scan, write_scan

    r = scan(scan_store, lookback=4, min_periods=4, top=2)
    first = write_scan(scan_store, r, tmp_path / "scanner", export_full=True, png=False)
    day = first["top_csv"].parent
    for name in ("scanner_top.png", "scanner_scores.png"):  # as a run with kaleido wrote them
        (day / name).write_bytes(b"\x89PNG old")
    (day / "notes.txt").write_text("mine")
    again = write_scan(scan_store, scan(scan_store, lookback=4, min_periods=4, top=1), tmp_path / "scanner",
                       export_full=False, png=False)
    assert sorted(_files(day)) == ["notes.txt", "scanner_scores.html", "scanner_top.csv", "scanner_top.html"]
    assert "metrics_csv" not in again and len(pd.read_csv(again["top_csv"])) == 1
    assert [p.name for p in day.parent.iterdir()] == [day.name]  # no temporary folder left


def test_a_required_png_that_fails_leaves_the_previous_scan_whole_and_names_the_files(scan_store, tmp_path,
                                                                                      monkeypatch, capsys):
    """`scan --png` whose export fails (kaleido without a browser): before, the new CSVs and HTML were written
    beside the previous PNGs and the table held the new rows (fails before: files changed). The user asked for a
    set with PNGs and got an error: the folder and the table stay as the previous run left them, and the message
    names the PNGs as they would have been named in the day's folder (not a temporary one)."""
    import plotly.io as pio

    from optimizer.analytics.scanner import scan, write_scan
    from optimizer.errors import DataError
    from optimizer.report import files

    r = scan(scan_store, lookback=4, min_periods=4, top=2)
    first = write_scan(scan_store, r, tmp_path / "scanner", export_full=True, png=False)
    day = first["top_csv"].parent
    before, rows = _files(day), scan_store.execute("SELECT * FROM scanner_daily_metrics ORDER BY ALL").fetchall()

    def no_browser(*a, **k):
        raise RuntimeError("Kaleido requires Google Chrome to be installed")

    monkeypatch.setattr(files, "png_available", lambda: True)
    monkeypatch.setattr(pio, "write_images", no_browser)
    with pytest.raises(DataError) as e:
        write_scan(scan_store, scan(scan_store, lookback=5, min_periods=4, top=1), tmp_path / "scanner",
                   export_full=False, png=True)
    assert str(e.value).startswith(f"PNG export failed for {day / 'scanner_top.png'}, {day / 'scanner_scores.png'}: "
                                   "RuntimeError: Kaleido requires Google Chrome"), e.value
    assert _files(day) == before
    assert scan_store.execute("SELECT * FROM scanner_daily_metrics ORDER BY ALL").fetchall() == rows
    assert [p.name for p in day.parent.iterdir()] == [day.name]


# ------------------------------------------------------------------ 3. plot --dates names the flag and the value
@pytest.mark.parametrize("dates, said", [
    (("2024-02-01", "soon"), "--dates END must be a date (YYYY-MM-DD), got 'soon'"),
    (("x", "2024-05-31"), "--dates START must be a date (YYYY-MM-DD), got 'x'"),
    (("2024-05-31", "2024-02-01"), "--dates START must be <= --dates END 2024-02-01, got '2024-05-31'"),
])
def test_plot_dates_refusals_name_the_flag_and_which_value(synth_db, tmp_path, dates, said):
    """`plot --dates A B` said `start must be a date (YYYY-MM-DD), got start='x'` (fails before: the library's
    names, and no flag `start`/`end` exists). The one option's two values are named by its metavar START END."""
    from _cli_helpers import cli, one_line_error

    line = one_line_error(cli("plot", "XLK", "--dates", *dates, "--no-png", "--db", synth_db, "--out", tmp_path))
    assert line == f"error: {said}", line


# ------------------------------------------------------------------ 4. the walk-forward worker says the split warning
def test_a_walkforward_worker_says_the_unrecorded_splits_as_the_coordinator_does(tmp_path, monkeypatch):
    """The coordinator warns of the unrecorded splits its panel shows (`panel_split_lines`); `walkforward worker`
    said only the spec's unused keys (fails before: notes == []). Both now say `_setup_notes`: here a planted split
    line on the tiny walk-forward of test_mutation_kills_wf, the worker joining a registered run."""
    import optimizer.validate.walkforward as wfmod
    from optimizer.study.spec import parse_spec
    from test_mutation_kills_wf import N, RESERVE, SPEC, T, _panel

    spec, p = parse_spec(SPEC), _panel(seed=3, T=T, N=N)
    line = "AAA: volume doubles and the close halves on 2024-03-04 with no split recorded (a 2-for-1 split?)"
    monkeypatch.setattr(wfmod, "load_study_data", lambda s, db: (p, RESERVE))
    monkeypatch.setattr(wfmod, "panel_split_lines", lambda panel: [line] if panel is p else [])
    db, url = tmp_path / "none.duckdb", f"sqlite:///{tmp_path / 'wf.db'}"
    ctx, windows, _ = wfmod._setup(spec, db, url, False, None)
    run = {"spec_hash": spec.spec_hash, "n_trials": ctx.n_trials, "final": False,
           "windows": [wfmod._window_name(ctx, w) for w in windows], "key": wfmod._run_key(ctx)}
    monkeypatch.setattr(wfmod, "wait_for_run", lambda *a, **k: run)  # the coordinator's registered run
    monkeypatch.setattr(wfmod, "_distributed", lambda *a, **k: [])  # every window already done
    notes: list[str] = []
    assert wfmod.run_walkforward_worker(spec, db, url, wait=0.0, on_note=notes.append) == []
    assert notes == [line]
    with pytest.warns(UserWarning, match="no split recorded"):  # without on_note: a warning, as the coordinator's
        wfmod.run_walkforward_worker(spec, db, url, wait=0.0)


# ------------------------------------------------------------------ 5. fetch finra-api --symbols listed twice
@pytest.mark.parametrize("symbols, said", [
    ("AAPL,MSFT,AAPL", "--symbols must list each symbol once, got AAPL twice in --symbols AAPL,MSFT,AAPL"),
    ("brk/b,AAPL,BRK-B", "--symbols must list each symbol once, got BRK.B twice (as 'brk/b' and 'BRK-B') in "
                         "--symbols brk/b,AAPL,BRK-B"),
])
def test_fetch_finra_api_refuses_a_symbol_listed_twice_as_a_universe_does(tmp_path, symbols, said):
    """`fetch finra-api --symbols AAPL,MSFT,AAPL` dropped the second AAPL without a word (fails before: the token
    request went to the closed port, `POST ... failed after 5 attempts`), where every other list of symbols
    (`--universe`, a spec's universe, `fetch prices --symbols`) refuses it since mend18: the same rule
    (universe.refuse_repeats), before any request (the API URL is a closed port on 127.0.0.1)."""
    from _cli_helpers import cli, one_line_error

    env = {"FINRA_API_KEY": "k", "FINRA_API_SECRET": "s", "FINRA_TOKEN_URL": "http://127.0.0.1:9/token",
           "FINRA_API_URL": "http://127.0.0.1:9"}
    line = one_line_error(cli("fetch", "finra-api", "--start", "2025-09-10", "--end", "2025-09-11", "--symbols",
                              symbols, "--db", tmp_path / "db.duckdb", env=env))
    assert line == f"error: {said}", line
    assert not (tmp_path / "db.duckdb").exists()


# ------------------------------------------------------------------ 6. one name for the recomputed value
# `backtest --params`'s comparison named this run's value `backtest`, `study replay`'s `replayed` (fails before: the
# columns differ): one set now, records.COMPARISON_COLUMNS, checked in the JSON rows and the table by
# test_mend17_leftovers::test_replay_and_backtest_name_the_compared_field_metric (the same runs, not made twice).


# ------------------------------------------------------------------ 7. every key of sheet.json is in docs/SIGNALS.md
def test_every_key_of_a_written_sheet_json_is_named_in_the_signals_doc(synth_db, tmp_path):
    """docs/SIGNALS.md named neither sheet.json's `sheet` section (its keys) nor the buckets' `oos_avg_return`
    (fails before: those keys missing from the doc). A sheet with a walk-forward's buckets is written, and each key
    of the file -- its sections, the `sheet` settings (and their `counts`), a bucket row, a symbol row -- must be
    named in the doc as `key` (the configuration under `params` is the engine's parameters, docs/ENGINE.md)."""
    import json
    import re
    from pathlib import Path

    from test_signals import CONFIGS

    from optimizer.report.sheet import write_sheet_files
    from optimizer.signals import ParamsRecord, signal_sheet

    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "result.json").write_text("{}")
    for n in ("walk_forward_summary", "parameter_stability"):
        (wf / f"{n}.csv").write_text("a\n1\n")
    for n in ("oos_trades", "oos_equity"):
        pd.DataFrame({"x": [1]}).to_parquet(wf / f"{n}.parquet")
    pd.DataFrame({"signal_quality": ["LOW", "HIGH"], "net_return": [0.1, -0.1], "excess_return": [0.05, -0.15],
                  "open_at_end": [False, False]}).to_parquet(wf / "oos_events.parquet")
    params = CONFIGS["first_dist"][0]
    sheet = signal_sheet(ParamsRecord(dict(params)), synth_db, date="2024-02-13", walkforward=wf)
    paths = write_sheet_files(sheet.rows, sheet.meta(), [], tmp_path / "out", sheet.buckets)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    keys = {*doc, *doc["sheet"], *doc["sheet"]["counts"], *doc["oos_quality_buckets"][0], *doc["rows"][0]}
    assert {"sheet", "oos_quality_buckets", "rows", "oos_avg_return", "walkforward_mismatch"} <= keys
    text = (Path(__file__).resolve().parents[1] / "docs" / "SIGNALS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][\w]*)`", text))
    assert sorted(keys - named) == [], " ".join(sorted(keys - named))


# ------------------------------------------------------------------ 8. bench/regime_compare.py: where and how it writes
def _regime_bench():
    from _cli_helpers import bench_module

    return bench_module("regime_compare", "_mend20_regime_compare")


def test_the_regime_bench_writes_under_the_output_root_whole_and_keeps_a_run_left_mid_swap(tmp_path, monkeypatch):
    """bench/regime_compare.py wrote `output/` relative to the current directory whatever ACCUMOPT_OUTPUT said
    (from the checkout: into it), and wrote its CSV in place into the run folder: a kill mid-write left a half
    CSV that `accumopt report` reads, and a run folder left mid-swap by a killed save (the run whole in
    `.<name>.new-*`) got a new empty folder in front of it, so the next save threw the run away (fails before:
    files in the current directory; the run not recovered). Now the output root is every command's
    (output_root), and the CSV is added as save_walkforward saves (atomic_folder). The walk-forwards themselves
    (compare_regimes) are replaced by a stand-in table."""
    from pathlib import Path

    from optimizer.study.spec import load_spec

    bench = _regime_bench()
    root = Path(__file__).resolve().parents[1]
    spec_file = root / "studies" / "regime_conditional.toml"
    seen: list[str] = []

    def compare(spec, db, storage, n_trials=None):
        seen.append(storage)
        return pd.DataFrame({"approach": ["pooled", "conditional"], "closed_trades": [3, 4]})

    monkeypatch.setattr(bench, "compare_regimes", compare)
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ACCUMOPT_OUTPUT", str(out))
    run = out / "walkforward" / load_spec(spec_file).run.study_name
    new = run.parent / f".{run.name}.new-0123456789ab"  # a save killed between its two renames
    new.mkdir(parents=True)
    (new / "result.json").write_text('{"spec": "x"}')
    assert bench.main([str(spec_file)]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["regime_comparison.csv", "result.json"]
    assert (run / "result.json").read_text() == '{"spec": "x"}'
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]  # nothing beside it
    assert list(cwd.iterdir()) == [] and seen == [f"sqlite:///{(out / 'regime_compare.db').resolve()}"]
    before = (run / "regime_comparison.csv").read_bytes()

    real = pd.DataFrame.to_csv

    def cut_short(self, path, *args, **kwargs):  # the header and one row, then Ctrl-C
        real(self.head(1), path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
    with pytest.raises(KeyboardInterrupt):
        bench.main([str(spec_file), "--out", str(out)])
    assert (run / "regime_comparison.csv").read_bytes() == before
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]
