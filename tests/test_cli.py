"""The ``accumopt`` command line, sqlite-utils style: every command is documented and exercised.

One small synthetic store (tier1 = 15 ETFs x 124 sessions, 2024-01-02..2024-06-28) is built ONCE per module
through ``data synth --db`` itself; tests that write to a store (scan, backtest --save, metrics build) work on a
copy, and every test that writes files runs in its own tmp cwd so ``output/`` never lands in the checkout.
Click >= 8.2: ``CliRunner`` always keeps stderr apart (``result.stdout`` / ``result.stderr``; no ``mix_stderr``).
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.analytics.tables import DISCLAIMER
from optimizer.data.calendar import nyse_sessions
from optimizer.cli import main
from optimizer.data.universe import TIER1

REPO = Path(__file__).resolve().parents[1]
START, END = "2024-01-02", "2024-06-28"
N_SESSIONS = len(nyse_sessions(START, END))
N_SYMBOLS = len(TIER1)
# the final reserve: the last 20% of the store's sessions; a backtest stops before it unless --final
N_BEFORE_RESERVE = N_SESSIONS - round(0.2 * N_SESSIONS)
LAST_BEFORE_RESERVE = str(nyse_sessions(START, END)[N_BEFORE_RESERVE - 1].date())

EXPECTED_COMMANDS = {
    "ingest",
    "fetch", "fetch finra-short", "fetch finra-api", "fetch prices",
    "data", "data synth", "data info",
    "metrics", "metrics build",
    "backtest",
    "study", "study run", "study worker", "study validate", "study list", "study show", "study best",
    "study compare", "study export", "study delete", "study replay",
    "dashboard", "walkforward", "report", "sandbox", "demo", "scan", "table", "plot", "chart", "signals", "evening",
}
BACKTEST_KEYS = (
    "total_signals", "total_trades", "hit_rate", "avg_return", "median_return", "win_loss", "sharpe",
    "max_drawdown", "avg_hold_days", "signals_per_month", "false_positive_rate", "rank_score", "avg_excess_return",
)
# Environment the CLI reads; cleared so a developer's shell cannot change what the tests see.
_CLEAN_ENV = {"ACCUMOPT_DB": None, "ACCUMOPT_STORAGE": None, "TICKERS": None, "MIN_LIT_VOLUME": None,
              **{f"SCANNER_{k}": None for k in ("DB_PATH", "LOOKBACK_DAYS", "TREND_DAYS", "TOP_N", "OUTLIER_Z",
                                               "VOLUME_Z", "RATIO_Z", "EXPORT_FULL", "INFERENCE_VERSION")}}


# ------------------------------------------------------------------------------------------------ helpers
def run(*args, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=_CLEAN_ENV | (env or {}), catch_exceptions=True)


def _describe(res) -> str:
    import traceback

    tb = "".join(traceback.format_exception(*res.exc_info)) if res.exc_info and not isinstance(res.exception, SystemExit) else ""
    return f"exit={res.exit_code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}\n{tb}"


def ok(res, code: int = 0):
    assert res.exit_code == code, _describe(res)
    assert res.exception is None or isinstance(res.exception, SystemExit), _describe(res)
    return res


def clean_error(res, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one ``error: ...`` line on stderr holding every fragment."""
    assert res.exit_code == 2, _describe(res)
    assert isinstance(res.exception, SystemExit), _describe(res)
    assert "Traceback" not in res.output, _describe(res)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), _describe(res)
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def as_json(res):
    ok(res)
    return json.loads(res.stdout)


def walk(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, (*path, name))


ALL_COMMANDS = {" ".join(p): c for p, c in walk(main) if p}


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def store(tmp_path_factory, tier1_h1_store):
    """(db path, synth JSON summary) of the small synthetic store, built through the CLI (``data synth``: once per
    session, tests/conftest.py's ``tier1_h1_store``, which tests/test_terminal.py reads too; START / END / tier1 are
    its span and universe, test_synth_summary and test_data_info_json check them); this module's own copy."""
    built, summary = tier1_h1_store
    db = tmp_path_factory.mktemp("store") / "db.duckdb"
    shutil.copy(built / "store.duckdb", db)
    return db, summary


@pytest.fixture
def db_copy(store, tmp_path):
    """A private copy of the store, for commands that write to it."""
    dst = tmp_path / "copy.duckdb"
    shutil.copy(store[0], dst)
    return dst


@pytest.fixture(autouse=True)
def cwd(tmp_path, monkeypatch):
    """Every test runs in an empty tmp cwd: default ``output/`` paths never land in the checkout."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _tables(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()


def _query(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ 1. documentation
def test_expected_commands_exist():
    missing = EXPECTED_COMMANDS - set(ALL_COMMANDS)
    assert not missing, f"commands removed or renamed: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(ALL_COMMANDS))
def test_every_command_is_documented(name):
    cmd = ALL_COMMANDS[name]
    assert cmd.help and cmd.help.strip(), f"`accumopt {name}` has no help text"
    undocumented = [p.name for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not undocumented, f"`accumopt {name}` options without help: {undocumented}"
    res = ok(run(*name.split(), "--help"))
    assert res.stdout.startswith("Usage: ") and f" {name} " in res.stdout.splitlines()[0] + " "
    # the first sentence of the docstring is shown (not only the usage line)
    first = " ".join(cmd.help.split())[:30]
    assert first in " ".join(res.stdout.split())


def test_main_help_lists_every_top_level_command():
    out = ok(run("--help")).stdout
    for name in (n for n in EXPECTED_COMMANDS if " " not in n):
        assert f"  {name} " in out, name


def test_python_dash_m_entry_point_works():
    # `python -m optimizer.cli` used to fail on a circular import (the module ran as __main__ and as optimizer.cli)
    res = subprocess.run([sys.executable, "-m", "optimizer.cli", "study", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "validate" in res.stdout and "replay" in res.stdout


def test_unknown_option_is_a_usage_error():
    res = run("backtest", "--no-such-flag")
    assert res.exit_code == 2 and "No such option" in res.stderr and "Traceback" not in res.output


# ------------------------------------------------------------------------------------------------ 2. clean errors
BAD_SPEC = (REPO / "studies" / "demo.toml").read_text().replace(
    'z_window = { type = "categorical", choices = [10, 15, 20, 30] }', 'z_window = { type = "int", low = 30, high = 10 }'
)


def test_spec_errors_are_one_line_with_the_key_path(tmp_path, store):
    assert "low = 30, high = 10" in BAD_SPEC  # the planted error is really in the spec
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_SPEC)
    clean_error(run("study", "validate", tmp_path / "missing.toml"), "missing.toml", "[file]", "does not exist")
    # the key path must survive (rich markup used to swallow "[space.z_window...]")
    for args in (("study", "validate", bad), ("study", "run", bad, "--db", store[0], "--storage", f"sqlite:///{tmp_path}/s.db"),
                 ("walkforward", bad, "--db", store[0], "--storage", f"sqlite:///{tmp_path}/s.db")):
        clean_error(run(*args), "bad.toml", "[space.z_window")
    assert not (tmp_path / "s.db").exists()  # a bad spec touches no storage


def test_study_validate_all_shipped_specs(tmp_path):
    specs = sorted((REPO / "studies").glob("*.toml"))
    assert len(specs) >= 5
    res = ok(run("study", "validate", *specs, env={"COLUMNS": "80"}))
    lines = res.stdout.splitlines()
    oks = [i for i, ln in enumerate(lines) if ln.startswith("ok ")]
    assert [lines[i] for i in oks] == [f"ok {p}" for p in specs]  # the path alone on its line, never wrapped
    assert all(lines[i + 1].startswith("  study ") for i in oks) and max(len(ln) for ln in lines if " " in ln.strip()) <= 80
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_SPEC)
    res = run("study", "validate", specs[0], bad)
    clean_error(res, "[space.z_window")
    assert res.stdout.startswith(f"ok {specs[0]}")  # the good one before it was reported


@pytest.mark.parametrize("args", [
    ("data", "info"), ("table",), ("plot", "SPY"), ("chart", "SPY"), ("sandbox", "SPY"), ("backtest", "--no-save"),
])
def test_missing_database_for_read_only_commands(tmp_path, args):
    db = tmp_path / "nope" / "missing.duckdb"
    clean_error(run(*args, "--db", db), str(db), "does not exist")
    assert not db.exists() and not db.parent.exists()  # a read-only command must not create the store


def test_database_from_env_var(tmp_path, store):
    clean_error(run("data", "info", env={"ACCUMOPT_DB": str(tmp_path / "env.duckdb")}), "env.duckdb")
    d = as_json(run("data", "info", "--format", "json", env={"ACCUMOPT_DB": str(store[0])}))
    assert d["db"] == str(store[0])


def test_unopenable_database_file(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_text("this is not a duckdb file\n")
    clean_error(run("data", "info", "--db", junk), "cannot open the DuckDB store", "junk.duckdb")


@pytest.mark.parametrize("cmd", ["plot", "chart", "sandbox"])
def test_unknown_ticker(store, cwd, cmd):
    msg = clean_error(run(cmd, "AAPL", "--db", store[0]), "AAPL")
    assert "SPY" in msg  # names what the store does hold
    assert not any(cwd.rglob("*.html"))


def test_backtest_parameter_errors(store, tmp_path):
    db = store[0]
    clean_error(run("backtest", "--db", db, "--no-save", "--exit", "bogus"), "exit", "'bogus'", "fixed_<N>d")
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"params": {"buy_threshold": 75, "foo": 1}}))
    clean_error(run("backtest", "--db", db, "--no-save", "--params", p), "unknown parameter(s) foo", "valid:", "w_short")
    p.write_text("[1, 2]")
    clean_error(run("backtest", "--db", db, "--no-save", "--params", p), "p.json", "JSON object")
    p.write_text("{not json")
    clean_error(run("backtest", "--db", db, "--no-save", "--params", p), "p.json", "cannot read")
    clean_error(run("backtest", "--db", db, "--no-save", "--universe", "tier3"), "'tier3'", "no symbol", "SPY")


def test_metrics_build_on_empty_database_is_a_data_error(tmp_path):
    db = tmp_path / "empty.duckdb"
    clean_error(run("metrics", "build", "--db", db), "does not exist", "accumopt ingest", str(db))
    assert not db.exists()  # a command that only derives tables never creates an empty store
    duckdb.connect(str(db)).close()  # an empty store
    clean_error(run("metrics", "build", "--db", db), "no raw data", "accumopt ingest", str(db))
    # and the commands that need daily_metrics say what to run
    clean_error(run("backtest", "--db", db, "--no-save"), "daily_metrics", "metrics build")
    clean_error(run("table", "--db", db), "daily_metrics", "metrics build")


def test_backtest_on_store_without_daily_metrics(tmp_path):
    from optimizer.data.store import connect

    db = tmp_path / "raw_only.duckdb"
    connect(db).close()  # migrated schema, raw tables only
    clean_error(run("backtest", "--db", db, "--no-save"), "no daily_metrics table", "metrics build")


def test_study_delete_refuses_without_confirmation(tmp_path):
    clean_error(run("study", "delete", "x", "--storage", f"sqlite:///{tmp_path}/s.db"), "--yes")


# ------------------------------------------------------------------------------------------------ 3. ingest
HEADER = "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market"


def _finra(path: Path, rows: list[str], trailer: int | None = None) -> Path:
    n = len(rows) if trailer is None else trailer
    path.write_text("\r\n".join([HEADER, *rows, str(n)]) + "\r\n", newline="")
    return path


@pytest.fixture
def finra_files(tmp_path):
    d = tmp_path / "finra"
    d.mkdir()
    clean = _finra(d / "CNMSshvol20240102.txt", ["20240102|AAA|100|0|300|B,Q,N", "20240102|BBB|50|1|200|B,Q,N"])
    rejected = _finra(d / "CNMSshvol20240103.txt", ["20240103|AAA|120|0|300|B,Q,N", "20240103|BBB|500|1|200|B,Q,N"])
    failed = _finra(d / "CNMSshvol20240104.txt", ["20240104|AAA|100|0|300|B,Q,N"], trailer=5)
    return clean, rejected, failed


def test_ingest_clean_file_exit_0_and_idempotent(tmp_path, finra_files):
    db = tmp_path / "i.duckdb"
    d = as_json(run("ingest", "finra-short", finra_files[0], "--db", db, "--format", "json"))
    assert d["exit_code"] == 0
    assert d["totals"] | {} == {"files": 1, "rows_accepted": 2, "rows_rejected": 0, "ok": 1, "replaced": 0,
                                "skipped_identical": 0, "rejected_rows": 0, "failed": 0}
    assert _query(db, "SELECT symbol, short_volume, short_exempt_volume, total_volume, facility FROM finra_short_daily "
                      "ORDER BY symbol") == [("AAA", 100, 0, 300, "CNMS"), ("BBB", 50, 1, 200, "CNMS")]
    d = as_json(run("ingest", "finra-short", finra_files[0], "--db", db, "--format", "json"))
    assert d["totals"]["skipped_identical"] == 1 and d["totals"]["rows_accepted"] == 0
    assert _query(db, "SELECT count(*) FROM finra_short_daily") == [(2,)]


def test_ingest_rejected_rows_exit_1(tmp_path, finra_files):
    db = tmp_path / "i.duckdb"
    res = ok(run("ingest", "finra-short", finra_files[1], "--db", db, "--format", "json"), code=1)
    d = json.loads(res.stdout)
    assert d["exit_code"] == 1
    assert (d["totals"]["rows_accepted"], d["totals"]["rows_rejected"], d["totals"]["rejected_rows"]) == (1, 1, 1)
    assert _query(db, "SELECT symbol, short_volume FROM finra_short_daily") == [("AAA", 120)]
    reason = _query(db, "SELECT line, reason FROM ingest_rejects")
    assert reason[0][0] == 3 and "500" in reason[0][1] and "200" in reason[0][1]
    # --strict turns the invariant break into a failed file: nothing of it is stored
    db2 = tmp_path / "strict.duckdb"
    ok(run("ingest", "finra-short", finra_files[1], "--db", db2, "--strict", "--format", "json"), code=2)
    assert _query(db2, "SELECT count(*) FROM finra_short_daily") == [(0,)]


def test_ingest_failed_file_exit_2_and_database_unchanged(tmp_path, finra_files):
    db = tmp_path / "i.duckdb"
    ok(run("ingest", "finra-short", finra_files[0], "--db", db))
    before = _query(db, "SELECT * FROM finra_short_daily ORDER BY symbol")
    res = ok(run("ingest", "finra-short", finra_files[2], "--db", db), code=2)
    assert "Traceback" not in res.output
    assert "CNMSshvol20240104.txt:3: trailer says 5 records, file has 1" in res.stderr  # file:line: reason
    assert _query(db, "SELECT * FROM finra_short_daily ORDER BY symbol") == before


def test_ingest_prices_warns_of_a_split_the_file_is_not_adjusted_for(tmp_path):
    """A nightly prices file on the post-split basis next to the stored pre-split bars: stored (exit 0), and the
    user of `ingest` is told, on stderr in the table form and under "warnings" in the JSON form."""
    db = tmp_path / "p.duckdb"
    head = "date,symbol,open,high,low,close,volume\n"
    hist, night = tmp_path / "hist.csv", tmp_path / "night.csv"
    hist.write_text(head + "2024-06-06,NVDA,1224,1230,1190,1209,400\n2024-06-07,NVDA,1209,1216,1180,1208,400\n")
    night.write_text(head + "2024-06-10,NVDA,120,123,117,121.8,4000\n")
    res = ok(run("ingest", "prices", hist, "--db", db))
    assert "warning" not in res.stderr
    res = ok(run("ingest", "prices", night, "--db", db))
    err = " ".join(res.stderr.split())
    assert err.startswith("warning: prices: night.csv: NVDA close jumps from stored 1208 on 2024-06-07 (source "
                          "hist.csv) to this file's 121.8 on 2024-06-10, ratio 0.101"), err
    assert "`accumopt ingest splits`" in err
    d = as_json(run("ingest", "prices", hist, night, "--db", tmp_path / "q.duckdb", "--format", "json"))
    assert d["exit_code"] == 0 and [len(f["warnings"]) for f in d["files"]] == [0, 1]
    assert d["warnings"] == d["files"][1]["warnings"] and "NVDA" in d["warnings"][0]


def test_ingest_directory_mixed_outcomes_json(tmp_path, finra_files):
    db = tmp_path / "i.duckdb"
    res = ok(run("ingest", "finra-short", finra_files[0].parent, "--db", db, "--format", "json"), code=2)
    d = json.loads(res.stdout)
    t = d["totals"]
    assert (t["files"], t["ok"], t["rejected_rows"], t["failed"]) == (3, 1, 1, 1)
    assert (t["rows_accepted"], t["rows_rejected"]) == (3, 1)
    # files are processed in date order (from the names)
    assert [Path(f["file"]).name for f in d["files"]] == [p.name for p in finra_files]
    assert _query(db, "SELECT count(DISTINCT date) FROM finra_short_daily") == [(2,)]


def test_ingest_missing_path_is_a_clean_error(tmp_path):
    clean_error(run("ingest", "prices", tmp_path / "nothere.csv", "--db", tmp_path / "i.duckdb"), "nothere.csv", "must exist")


# ------------------------------------------------------------------------------------------------ 4. data / metrics / backtest
def test_synth_summary(store):
    _, s = store
    assert s["symbols"] == N_SYMBOLS and s["sessions"] == N_SESSIONS
    assert s["rows"]["daily_metrics"] == N_SYMBOLS * N_SESSIONS
    assert s["rows"]["finra_short_daily"] == N_SYMBOLS * N_SESSIONS  # one CNMS row per symbol-session
    assert all(v["exit_code"] == 0 for v in s["ingest"].values())
    assert s["ingest"]["finra-short"]["files"] == N_SESSIONS  # one daily FINRA file per session
    assert Path(s["files"]["prices"]).is_file()


def test_data_info_json(store):
    d = as_json(run("data", "info", "--db", store[0], "--format", "json"))
    assert d["schema_version"] >= 1
    t = {r["table"]: r for r in d["tables"]}
    dm = t["daily_metrics"]
    assert (dm["rows"], dm["symbols"], dm["first"], dm["last"]) == (N_SYMBOLS * N_SESSIONS, N_SYMBOLS, START, END)
    assert t["finra_otc_weekly"]["first"] != ""  # week-keyed tables get a range too
    # the table format shows the same numbers
    out = ok(run("data", "info", "--db", store[0])).stdout
    assert f"{N_SYMBOLS * N_SESSIONS:,}" in out and "daily_metrics" in out


def test_metrics_build_rebuilds_with_new_window(db_copy):
    d = as_json(run("metrics", "build", "--db", db_copy, "--z-window", "10", "--format", "json"))
    assert (d["rows"], d["symbols"], d["sessions"], d["z_window"]) == (N_SYMBOLS * N_SESSIONS, N_SYMBOLS, N_SESSIONS, 10)
    # z-scores need a full window: the first z_window-1 rows of each symbol have none (the ratio is never NULL here)
    nulls = _query(db_copy, "SELECT count(*) - count(short_buy_sell_ratio_z), count(*) - count(short_buy_sell_ratio), "
                            "min(z_window), max(z_window) FROM daily_metrics GROUP BY symbol")
    assert set(nulls) == {(9, 0, 10, 10)}
    d = as_json(run("metrics", "build", "--db", db_copy, "--format", "json"))
    assert d["z_window"] == 10  # a rebuild naming no window keeps the stored table's (evening's nightly rebuild)
    assert set(_query(db_copy, "SELECT count(*) - count(short_buy_sell_ratio_z) FROM daily_metrics GROUP BY symbol")) == {(9,)}
    d = as_json(run("metrics", "build", "--db", db_copy, "--z-window", "20", "--format", "json"))
    assert d["z_window"] == 20
    assert set(_query(db_copy, "SELECT count(*) - count(short_buy_sell_ratio_z) FROM daily_metrics GROUP BY symbol")) == {(19,)}
    clean_error(run("metrics", "build", "--db", db_copy, "--z-window", "1"),
                "--z-window must be an integer in [2, 252]")


def test_scan_hint_for_a_thin_window_is_a_command_that_ranks(db_copy, tmp_path):
    """Scanning the store's 5th session with the default 90-session lookback ranks nothing; the hint must be options
    the command accepts that rank (before: --lookback 5 --trend-days 2 here, and --lookback 2 when 2 days were held:
    a 2-session z is always +-1, a ranking by rounding noise)."""
    import re

    day = str(nyse_sessions(START, END)[4].date())
    base = ["scan", "--db", db_copy, "--date", day, "--out", tmp_path / "o", "--no-png", "--no-export-full"]
    d = as_json(run(*base, "--format", "json"))
    assert d["reason"].endswith("(e.g. --lookback 5)")
    hint = re.search(r"\(e\.g\. ([^)]*)\)", d["reason"]).group(1).split()
    d = as_json(run(*base, *hint, "--format", "json"))
    assert d["reason"] is None and d["params"]["lookback"] == 5 and len(d["top"]) > 1


def test_metrics_build_refuses_a_z_window_above_the_engines_and_warns_when_it_cannot_fill(db_copy):
    """--z-window 5000 was accepted and left every stored z column NULL; the engine's domain is [2, 252]."""
    before = _query(db_copy, "SELECT count(*), count(short_buy_sell_ratio_z), min(z_window) FROM daily_metrics")
    for w in ("5000", "253"):
        clean_error(run("metrics", "build", "--db", db_copy, "--z-window", w),
                    f"--z-window must be an integer in [2, 252], got {w}")  # the flag typed (mend18)
    assert _query(db_copy, "SELECT count(*), count(short_buy_sell_ratio_z), min(z_window) FROM daily_metrics") == before
    # a window the engine allows but longer than the store's sessions is built, with a warning saying why z is empty
    res = ok(run("metrics", "build", "--db", db_copy, "--z-window", str(N_SESSIONS + 1), "--format", "json"))
    assert json.loads(res.stdout)["z_window"] == N_SESSIONS + 1
    assert f"every stored z column is empty: a z-score needs z_min_periods={N_SESSIONS + 1} sessions and " \
           f"daily_metrics holds {N_SESSIONS}" in res.stderr
    assert _query(db_copy, "SELECT count(short_buy_sell_ratio_z) FROM daily_metrics") == [(0,)]
    res = ok(run("metrics", "build", "--db", db_copy, "--z-window", str(N_SESSIONS), "--format", "json"))
    assert "warning" not in res.stderr


def _library_metrics(db: Path, params: dict, end: str | None = None) -> dict:
    from optimizer.data.store import connect
    from optimizer.engine.evaluate import Config, Evaluator
    from optimizer.engine.panel import load_panel

    con = connect(db, read_only=True)
    try:
        panel = load_panel(con, list(TIER1), None, end)
    finally:
        con.close()
    return Evaluator(panel).run(Config.from_params(params)).metrics


def test_backtest_json_no_save(store, cwd):
    db = store[0]
    d = as_json(run("backtest", "--db", db, "--universe", "tier1", "--no-save", "--format", "json"))
    for k in BACKTEST_KEYS:
        assert k in d and isinstance(d[k], (int, float)), k
    assert abs(d["avg_return"]) < 1 and abs(d["median_return"]) < 1 and abs(d["avg_excess_return"]) < 1  # fractions
    assert 0 <= d["hit_rate"] <= 1 and 0 <= d["false_positive_rate"] <= 1 and 0 <= d["max_drawdown"] < 1
    assert d["total_trades"] > 0 and d["total_signals"] >= d["total_trades"]
    assert (d["start"], d["end"], d["symbols"]) == (START, LAST_BEFORE_RESERVE, N_SYMBOLS)  # the reserve is kept
    assert d["outputs"] == {} and d["reserve_opened"] is False
    # the CLI reports exactly what the library computes for the same configuration
    lib = _library_metrics(db, d["params"], LAST_BEFORE_RESERVE)
    for k in BACKTEST_KEYS:
        assert d[k] == pytest.approx(lib[k], rel=1e-12, abs=1e-12), k
    assert not any(t.startswith("bt_") for t in _tables(db))
    assert not (cwd / "output").exists()


def test_backtest_params_file_and_flag_override(store, tmp_path):
    db = store[0]
    base = as_json(run("backtest", "--db", db, "--universe", "tier1", "--no-save", "--format", "json"))
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": {**base["params"], "buy_threshold": 60.0, "exit": "fixed_10d"}, "value": 1.0}))
    d = as_json(run("backtest", "--db", db, "--universe", "tier1", "--no-save", "--format", "json", "--params", p,
                    "--buy", "85"))
    assert d["params"]["buy_threshold"] == 85.0 and d["params"]["exit"] == "fixed" and d["params"]["hold_days"] == 10
    # fixed_10d closes every trade after 10 sessions (or at the data end)
    assert d["avg_hold_days"] <= 10
    # a stricter buy threshold can only fire on fewer (or the same) days
    assert d["total_signals"] <= base["total_signals"]
    lib = _library_metrics(db, d["params"], LAST_BEFORE_RESERVE)
    assert d["total_signals"] == lib["total_signals"] and d["rank_score"] == pytest.approx(lib["rank_score"])


def test_backtest_default_saves_tables_and_files(db_copy, cwd):
    args = ("backtest", "--db", db_copy, "--universe", "tier1", "--format", "json")
    d = as_json(run(*args))
    run_id = d["outputs"]["run_id"]
    assert {"bt_backtest_runs", "bt_signal_events", "bt_frequency_baseline"} <= _tables(db_copy)
    assert _query(db_copy, "SELECT run_id FROM bt_backtest_runs") == [(run_id,)]
    n_events = _query(db_copy, "SELECT count(*), count(DISTINCT run_id) FROM bt_signal_events")[0]
    assert n_events == (int(d["total_trades"]), 1)  # one event per trade (closed and open at the end)
    assert _query(db_copy, "SELECT count(*) FROM bt_frequency_baseline") == [(N_SYMBOLS,)]
    # the design's run columns carry what the command was given; market_regimes holds the panel's sessions
    got = _query(db_copy, "SELECT ticker_universe, regime_filter, exit_strategy, score_variant FROM bt_backtest_runs")
    assert d["params"]["exit"] == "first_dist" and got == [("tier1", "ALL", "first_dist", "B")]
    assert _query(db_copy, "SELECT count(*), count(DISTINCT date), min(symbol) FROM market_regimes") == [
        (N_BEFORE_RESERVE, N_BEFORE_RESERVE, "SPY")]
    out = cwd / "output" / "backtest"
    ev = pd.read_parquet(out / run_id / "signal_events.parquet")  # one folder per run
    assert len(ev) == d["total_trades"] and set(ev["run_id"]) == {run_id}
    assert ev["symbol"].isin(TIER1).all()
    runs = pd.read_csv(out / "backtest_runs.csv")  # the index of every run
    assert list(runs["run_id"]) == [run_id]
    assert runs["total_trades"].iloc[0] == d["total_trades"]
    assert len(pd.read_csv(out / run_id / "frequency_baseline.csv")) == N_SYMBOLS
    # the same run again: its bt_ rows are replaced, the CSV log gets a second line
    d2 = as_json(run(*args))
    assert d2["outputs"]["run_id"] == run_id
    assert _query(db_copy, "SELECT count(*) FROM bt_backtest_runs") == [(1,)]
    assert len(pd.read_csv(out / "backtest_runs.csv")) == 2
    # another run (through the final reserve) gets its own folder: the first run's files stay as they were
    d3 = as_json(run(*args, "--final"))
    assert d3["outputs"]["run_id"] != run_id and d3["end"] == END and d3["reserve_opened"] is True
    assert len(pd.read_parquet(out / run_id / "signal_events.parquet")) == d["total_trades"]
    assert (out / d3["outputs"]["run_id"] / "signal_events.parquet").is_file()
    assert len(pd.read_csv(out / "backtest_runs.csv")) == 3


def test_backtest_table_format(store, cwd):
    out = ok(run("backtest", "--db", store[0], "--universe", "tier1", "--no-save")).stdout
    for k in ("hit_rate", "avg_return", "rank_score"):
        assert k in out
    assert f"{START}..{LAST_BEFORE_RESERVE}" in out


# ------------------------------------------------------------------------------------------------ 5. analytics commands
def test_scan_writes_table_and_files(db_copy, cwd):
    d = as_json(run("scan", "--db", db_copy, "--top", "5", "--format", "json"))
    assert d["date"] == END  # default: latest FINRA date
    assert len(d["top"]) == 5 and [r["rank"] for r in d["top"]] == [1, 2, 3, 4, 5]
    assert {r["date"] for r in d["top"]} == {END}  # ISO dates like every JSON output (were epoch milliseconds)
    for k in ("metrics_csv", "top_csv", "top_html", "scores_html"):
        assert (cwd / d["files"][k]).is_file(), k
    assert Path(d["files"]["metrics_csv"]).parent == Path("output/scanner") / END
    assert len(pd.read_csv(cwd / d["files"]["metrics_csv"])) == N_SYMBOLS
    assert _query(db_copy, f"SELECT count(*) FROM scanner_daily_metrics WHERE date = DATE '{END}'") == [(N_SYMBOLS,)]


def test_scan_reads_the_pipelines_scanner_environment(db_copy, cwd):
    env = {"SCANNER_TOP_N": "3", "SCANNER_LOOKBACK_DAYS": "40", "SCANNER_TREND_DAYS": "5", "SCANNER_OUTLIER_Z": "1.5",
           "SCANNER_EXPORT_FULL": "false", "SCANNER_INFERENCE_VERSION": "Scanner_v9"}
    d = as_json(run("scan", "--db", db_copy, "--no-png", "--format", "json", env=env))
    assert len(d["top"]) == 3 and "metrics_csv" not in d["files"]  # SCANNER_TOP_N, SCANNER_EXPORT_FULL=false
    assert (d["params"]["lookback"], d["params"]["trend_days"], d["params"]["outlier_z"]) == (40, 5, 1.5)
    assert not (cwd / "output" / "scanner" / END / "scanner_metrics.csv").exists()
    assert _query(db_copy, "SELECT DISTINCT inference_version FROM scanner_daily_metrics") == [("Scanner_v9",)]
    # a flag wins over the variable
    d2 = as_json(run("scan", "--db", db_copy, "--top", "4", "--export-full", "--no-png", "--format", "json", env=env))
    assert len(d2["top"]) == 4 and (cwd / d2["files"]["metrics_csv"]).is_file()
    # SCANNER_DB_PATH is the store when --db is not given (and wins over ACCUMOPT_DB, the generic default)
    d3 = as_json(run("scan", "--no-png", "--format", "json",
                     env={"SCANNER_DB_PATH": str(db_copy), "ACCUMOPT_DB": str(cwd / "nowhere.duckdb")}))
    assert d3["date"] == END and len(d3["top"]) == min(50, N_SYMBOLS)
    clean_error(run("scan", "--db", db_copy, env={"SCANNER_TOP_N": "many"}),
                "SCANNER_TOP_N must be an integer >= 1, got SCANNER_TOP_N='many'")
    clean_error(run("scan", "--db", db_copy, env={"SCANNER_EXPORT_FULL": "perhaps"}), "SCANNER_EXPORT_FULL must be true or false")
    clean_error(run("scan", "--db", db_copy, env={"SCANNER_RATIO_Z": "-1"}), "SCANNER_RATIO_Z must be a finite number > 0")


def test_png_flag_refuses_clearly_without_kaleido(db_copy, cwd, monkeypatch):
    from optimizer.report import files as _export

    monkeypatch.setattr(_export, "png_available", lambda: False)
    clean_error(run("scan", "--db", db_copy, "--png"), "PNG output needs kaleido", "accumopt[png]")
    d = as_json(run("scan", "--db", db_copy, "--format", "json"))  # auto: HTML only, no error
    assert "top_png" not in d["files"] and (cwd / d["files"]["top_html"]).is_file()


def test_table_html_has_disclaimer(store, cwd):
    rows = as_json(run("table", "--db", store[0], "--format", "json"))
    assert len(rows) == N_SYMBOLS and {r["symbol"] for r in rows} == set(TIER1)
    page = (cwd / "output" / "tables" / f"{END}_scan.html").read_text(encoding="utf-8")
    assert html.escape(DISCLAIMER) in page
    sub = as_json(run("table", "--db", store[0], "--tickers", "spy,QQQ", "--date", "2024-03-01",
                      "--out", "t", "--format", "json"))
    assert sorted(r["symbol"] for r in sub) == ["QQQ", "SPY"]
    assert all(str(r["date"]).startswith("2024-03-01") for r in sub)
    (written,) = (cwd / "t" / "tables").glob("2024-03-01_scan_*.html")  # the tickers tell this run's file apart
    assert html.escape(DISCLAIMER) in written.read_text(encoding="utf-8")
    res = ok(run("table", "--db", store[0], "--tickers", "SPY"))
    assert "FINRA does not publish trade direction" in " ".join(res.stdout.split())


def test_json_outputs_write_session_dates_as_yyyy_mm_dd(store, db_copy):
    """`table --format json` wrote dates as 2024-06-28T00:00:00.000 while `scan --format json` wrote 2024-06-28:
    every JSON output writes a session date as YYYY-MM-DD; a real time (a study's created) stays ISO 8601."""
    import datetime as dt
    import re

    import pandas as pd

    day = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for style in ("scan", "analysis"):
        rows = as_json(run("table", "--db", store[0], "--style", style, "--format", "json"))
        dated = {k: v for r in rows for k, v in r.items() if k in ("date", "otc_week_start") and v is not None}
        assert dated and all(day.match(v) for v in dated.values()), dated
        assert rows[0]["date"] == END
    d = as_json(run("scan", "--db", db_copy, "--no-png", "--top", "3", "--format", "json"))
    assert d["date"] == END and all(r["date"] == END for r in d["top"])
    from optimizer.cli._common import _jsonable, frame_json  # the one home of the rule

    frame = pd.DataFrame({"date": pd.to_datetime(["2024-06-27", "2024-06-28"]), "d": [dt.date(2024, 6, 27), None],
                          "created": pd.to_datetime(["2024-06-27 09:30:01", "2024-06-28 00:00:00"])})
    assert json.loads(frame_json(frame)) == [
        {"date": "2024-06-27", "d": "2024-06-27", "created": "2024-06-27T09:30:01.000000"},
        {"date": "2024-06-28", "d": None, "created": "2024-06-28T00:00:00.000000"}]
    assert _jsonable(pd.Timestamp("2024-06-28")) == "2024-06-28" == _jsonable(dt.date(2024, 6, 28))
    assert _jsonable(pd.Timestamp("2024-06-28 16:00")) == "2024-06-28T16:00:00"
    assert _jsonable(pd.Timestamp("2024-06-28", tz="UTC")) == "2024-06-28T00:00:00+00:00"


def test_table_of_the_tickers_env_gets_its_own_html(store, cwd):
    # TICKERS filters the table as --tickers does, so its page is named by them too: it was <date>_scan.html, the
    # file of the every-symbol table, which it overwrote (and which overwrote it)
    full = as_json(run("table", "--db", store[0], "--format", "json"))
    sub = as_json(run("table", "--db", store[0], "--format", "json", env={"TICKERS": "SPY,QQQ"}))
    assert sorted(r["symbol"] for r in sub) == ["QQQ", "SPY"] and len(full) == N_SYMBOLS
    pages = {p.name: p.read_text(encoding="utf-8") for p in (cwd / "output" / "tables").glob("*.html")}
    assert len(pages) == 2 and all(f">{s}<" in pages[f"{END}_scan.html"] for s in TIER1)


def test_plot_chart_sandbox_write_html(store, cwd):
    db = store[0]
    res = ok(run("plot", "spy", "--db", db))
    assert res.stdout.splitlines()[0] == "output/plots/SPY_layered.html"
    # --no-png: HTML only, whether or not kaleido is installed; the dates name the run's files
    res = ok(run("plot", "XLK", "--mode", "both", "--dates", "2024-02-01", "2024-05-31", "--no-png", "--db", db))
    assert res.stdout.splitlines()[:2] == ["output/plots/XLK_layered_2024-02-01_2024-05-31.html",
                                           "output/plots/XLK_short_only_2024-02-01_2024-05-31.html"]
    res = ok(run("chart", "SPY", "--timeframe", "weekly", "--db", db))
    assert res.stdout.splitlines()[0] == "output/charts/SPY_weekly.html"
    res = ok(run("sandbox", "SPY", "--db", db, "--out", "sb"))
    assert res.stdout.splitlines()[0] == "sb/sandbox/SPY.html"
    for p in ("output/plots/SPY_layered.html", "output/plots/XLK_layered_2024-02-01_2024-05-31.html",
              "output/plots/XLK_short_only_2024-02-01_2024-05-31.html", "output/charts/SPY_weekly.html",
              "sb/sandbox/SPY.html"):
        text = (cwd / p).read_text(encoding="utf-8")
        assert "<html" in text[:200].lower() and "plotly" in text.lower(), p
        assert ("SPY" if "SPY" in p or "spy" in p else "XLK") in text, p


def test_paths_are_never_wrapped(store, tmp_path, monkeypatch):
    # a long output path is printed on ONE line (rich used to wrap it at 80 columns)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    out = deep / "charts" / "SPY_daily.html"
    res = ok(run("chart", "SPY", "--db", store[0], "--out", deep))
    assert res.stdout.splitlines()[0] == str(out) and out.is_file()


# ------------------------------------------------------------------------------------------------ 7. dashboard
def test_dashboard_help_only():
    out = ok(run("dashboard", "--help")).stdout
    assert "--port" in out and "--host" in out and "127.0.0.1" in out


# ------------------------------------------------------------------------------------------------ fetch (local server)
POLY_KEY, FINRA_KEY, FINRA_SECRET = "pk-SECRET-cli-1", "fk-SECRET-cli-2", "fs-SECRET-cli-3"
_CNMS_0102 = f"{HEADER}\r\n20240102|SPY|40|0|100|B,Q,N\r\n20240102|QQQ|30|0|90|B,Q,N\r\n2\r\n"
_API_ROWS = [{"tradeReportDate": "2024-01-02", "securitiesInformationProcessorSymbolIdentifier": "SPY",
              "shortParQuantity": 5, "shortExemptParQuantity": 0, "totalParQuantity": 10, "marketCode": "Q"}]


def _ms_utc(y, m, d, h) -> int:
    return int(pd.Timestamp(year=y, month=m, day=d, hour=h, tz="UTC").timestamp() * 1000)


@pytest.fixture
def http_base():
    """A local stand-in for the FINRA CDN, the FINRA API and Polygon (127.0.0.1 only; never a 5xx, so no retries)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, unquote, urlparse

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code, body=b"", ctype="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urlparse(self.path)
            if u.path == "/cdn/CNMSshvol20240102.txt":
                return self._send(200, _CNMS_0102.encode())
            if u.path.startswith("/poly/v2/aggs/ticker/"):
                if parse_qs(u.query).get("apiKey") != [POLY_KEY]:
                    return self._send(401, b'{"status":"ERROR"}')
                t = unquote(u.path.split("/")[5])
                bars = [{"t": _ms_utc(2024, 1, 2, 5), "o": 10, "h": 11, "l": 9, "c": 10.5, "v": 100},
                        {"t": _ms_utc(2024, 1, 3, 5), "o": 10.5, "h": 12, "l": 10, "c": 11.5, "v": 200}]
                if t == "I:VIX":  # Polygon's index aggregates carry no volume
                    bars = [{k: v for k, v in b.items() if k != "v"} for b in bars]
                doc = {"ticker": t, "status": "OK", "results": bars if t in ("SPY", "I:VIX") else []}
                return self._send(200, json.dumps(doc).encode(), "application/json")
            return self._send(404, b"not found")

        def do_POST(self):
            u = urlparse(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if u.path == "/token":
                return self._send(200, json.dumps({"access_token": "tok-CLI", "expires_in": 1800}).encode(), "application/json")
            if u.path == "/api/data/group/otcMarket/name/regShoDaily" and self.headers.get("Authorization") == "Bearer tok-CLI":
                req = json.loads(body)
                rows = _API_ROWS[req["offset"]:req["offset"] + req["limit"]]
                return self._send(200, json.dumps(rows).encode(), "application/json")
            return self._send(404)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield {"FINRA_CDN_URL": f"{base}/cdn", "POLYGON_BASE_URL": f"{base}/poly", "FINRA_API_URL": f"{base}/api",
           "FINRA_TOKEN_URL": f"{base}/token", "POLYGON_API_KEY": POLY_KEY, "FINRA_API_KEY": FINRA_KEY,
           "FINRA_API_SECRET": FINRA_SECRET}
    srv.shutdown()
    srv.server_close()


def test_fetch_finra_short_downloads_reports_missing_and_ingests(http_base, tmp_path):
    db = tmp_path / "f.duckdb"
    res = ok(run("fetch", "finra-short", "--start", "2024-01-02", "--end", "2024-01-03", "--cache", tmp_path / "c",
                 "--db", db, env=http_base))
    assert "1 file(s)" in res.stdout and "ingested 2 rows from 1 file(s)" in res.stdout
    assert "missing CNMSshvol20240103.txt" in res.stderr  # 404 for the second session: reported, not fatal
    assert _query(db, "SELECT symbol, short_volume, total_volume FROM finra_short_daily ORDER BY 1") == [
        ("QQQ", 30, 90), ("SPY", 40, 100)]
    ok(run("fetch", "finra-short", "--start", "2024-01-02", "--end", "2024-01-02", "--cache", tmp_path / "c2",
           "--no-ingest", env=http_base))
    assert (tmp_path / "c2" / "CNMSshvol20240102.txt").is_file()
    # --db names the store --no-ingest never opens: refused naming both (explore21), nothing created
    clean_error(run("fetch", "finra-short", "--start", "2024-01-02", "--end", "2024-01-02", "--cache", tmp_path / "c3",
                    "--db", tmp_path / "g.duckdb", "--no-ingest", env=http_base), "--db", "--no-ingest")
    assert not (tmp_path / "g.duckdb").exists() and not (tmp_path / "c3").exists()


def test_fetch_prices_ingests_and_never_leaks_the_key(http_base, tmp_path):
    db = tmp_path / "p.duckdb"
    res = ok(run("fetch", "prices", "--symbols", "SPY,NOPE", "--start", "2024-01-02", "--end", "2024-01-03",
                 "--cache", tmp_path / "c", "--db", db, env=http_base))
    assert "missing NOPE" in res.stderr
    assert _query(db, "SELECT CAST(date AS VARCHAR), close, volume FROM prices_daily WHERE symbol = 'SPY' ORDER BY 1") == [
        ("2024-01-02", 10.5, 100.0), ("2024-01-03", 11.5, 200.0)]
    assert POLY_KEY not in res.output
    assert not any(POLY_KEY in p.name or POLY_KEY.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    env = dict(http_base, POLYGON_API_KEY=None)
    clean_error(run("fetch", "prices", "--symbols", "SPY", "--start", "2024-01-02", "--end", "2024-01-03",
                    "--cache", tmp_path / "c3", "--db", db, env=env), "POLYGON_API_KEY")


def test_fetch_prices_takes_an_index_symbol(http_base, tmp_path):
    """`fetch prices --symbols SPY,^VIX`: ^VIX (the market context the regime filter reads) was refused as 'not a
    tradable universe symbol', so no command could fetch it. An index symbol is fetched beside the names."""
    db = tmp_path / "p.duckdb"
    ok(run("fetch", "prices", "--symbols", "SPY,^vix", "--start", "2024-01-02", "--end", "2024-01-03",
           "--cache", tmp_path / "c", "--db", db, env=http_base))
    assert _query(db, "SELECT symbol, CAST(date AS VARCHAR), close, volume FROM prices_daily WHERE symbol = '^VIX' "
                      "ORDER BY 2") == [("^VIX", "2024-01-02", 10.5, 0.0), ("^VIX", "2024-01-03", 11.5, 0.0)]


@pytest.mark.parametrize("kind", ["finra-short", "finra-api", "prices"])
def test_fetch_refuses_a_bad_span_in_one_line(http_base, tmp_path, kind):
    """A mistyped --start / --end gave a pandas traceback (exit 1), and finra-short with --end before --start
    downloaded nothing and exited 0 ('0 file(s)'): both are one-line errors naming the option (exit 2), before any
    request."""
    args = ["--cache", tmp_path / "c", "--no-ingest"]
    clean_error(run("fetch", kind, "--start", "2024-13-01", "--end", "2024-01-05", *args, env=http_base),
                "start", "2024-13-01")
    clean_error(run("fetch", kind, "--start", "2024-01-02", "--end", "2024-01-0x", *args, env=http_base),
                "end", "2024-01-0x")
    clean_error(run("fetch", kind, "--start", "2024-01-05", "--end", "2024-01-02", *args, env=http_base),
                "end must be >= start")
    assert not (tmp_path / "c").exists()


def test_fetch_finra_api_ingests_only_this_runs_file(http_base, tmp_path):
    cache = tmp_path / "c"
    cache.mkdir()
    # a stale CSV from an earlier run in the same cache must not be re-ingested
    (cache / "stale.csv").write_text("date,symbol,short_volume,total_volume,facility\n2023-12-29,ZZZ,1,2,API\n")
    db = tmp_path / "a.duckdb"
    res = ok(run("fetch", "finra-api", "--start", "2024-01-02", "--end", "2024-01-02", "--cache", cache, "--db", db,
                 env=http_base))
    assert _query(db, "SELECT symbol, short_volume, total_volume, facility FROM finra_short_daily") == [("SPY", 5, 10, "API")]
    for secret in (FINRA_KEY, FINRA_SECRET, "tok-CLI"):
        assert secret not in res.output
