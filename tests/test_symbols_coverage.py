"""Canonical symbols, mappings from the CLI, tradable universes, coverage objects, short_share, batched metrics."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from _ingest_helpers import REAL, need, table, write
from click.testing import CliRunner

import optimizer.data.metrics as metrics
from optimizer.cli import main
from optimizer.data.coverage import Coverage, Gap, SourceCoverage, gaps_of, source_coverage
from optimizer.data.ingest import ingest_paths
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect
from optimizer.data.symbols import PLAIN_SYMBOL_SQL_RE, canonical_or_none, canonical_symbol, symbol_problem
from optimizer.data.universe import resolve_universe
from optimizer.engine.panel import load_panel
from optimizer.errors import DataError, ParameterError


# ---------------------------------------------------------------------------------------------- symbols


@pytest.mark.parametrize("raw,want", [
    ("aapl", "AAPL"), (" BRK/B ", "BRK.B"), ("BRK-B", "BRK.B"), ("brk.b", "BRK.B"), ("BRK B", "BRK.B"),
    ("ABRpD", "ABR.PRD"), ("BCpC", "BC.PRC"), ("BCPC", "BCPC"), ("ALLpA/CL", "ALL.PRA.CL"), ("RIVrw", "RIV.RTWI"),
    ("CELGr", "CELG.RT"), ("NTCOw", "NTCO.WI"), ("AIG/WS/A", "AIG.WS.A"), ("^gspc", "^GSPC"), ("NA", "NA"),
])
def test_canonical_symbol(raw, want):
    assert canonical_symbol(raw) == want


@pytest.mark.parametrize("raw,why", [
    ("", "empty symbol"), ("A\x00B", "control character U+0000"), ("A\nB", "control character U+000A"),
    ("../../x", "empty part"), ("x/", "empty part"), ("A..B", "empty part"), ("A\\B", "character '\\\\'"),
    ("$SPX", "character '$'"), ("X" * 25, "longer than 24 characters"), ("^", "nothing after '^'"),
])
def test_symbols_that_are_refused(raw, why):
    assert why in symbol_problem(raw)
    with pytest.raises(ParameterError, match="symbol must be a valid symbol"):
        canonical_symbol(raw)


def test_the_sql_fast_path_agrees_with_the_definition_on_every_real_finra_symbol():
    import re

    syms = set()
    for name in ("finra_short_daily_2020.csv.gz", "finra_short_daily_2025.csv.gz"):
        syms |= set(pd.read_csv(need(REAL / name), dtype=str, keep_default_na=False)["symbol"])
    plain = re.compile(PLAIN_SYMBOL_SQL_RE)
    canon = {}
    for s in syms:
        c = canonical_or_none(s)
        assert c is not None, s  # every real FINRA symbol is valid
        if plain.fullmatch(s):
            assert c == s  # what the SQL fast path keeps as is IS canonical
        canon.setdefault(c, set()).add(s)
    # different securities never merge: BCpC (a preferred) and BCPC (Balchem) stay apart
    merged = {c: v for c, v in canon.items() if len(v) > 1}
    assert merged == {}, list(merged.items())[:5]
    assert canonical_symbol("BCpC") != canonical_symbol("BCPC")


def test_universes_are_canonical_and_never_hold_an_index():
    assert resolve_universe("aapl,brk-b") == ["AAPL", "BRK.B"]
    assert resolve_universe("all", ["AAPL", "^GSPC", "^VIX", "BRK.B"]) == ["AAPL", "BRK.B"]
    assert "BRK.B" in resolve_universe("tier2")
    with pytest.raises(ParameterError, match=r"\^GSPC is an index or indicator \(market context only\)"):
        resolve_universe("SPY,^GSPC")
    with pytest.raises(ParameterError, match="universe symbol must be a valid symbol"):
        resolve_universe(["SPY", "../x"])


def test_a_listed_universe_is_refused_when_the_store_lacks_one_of_its_symbols():
    # a list is the user's: every name it lists runs, or the universe is refused naming the missing ones
    with pytest.raises(DataError, match=r"universe lists 1 symbol that the store does not hold: NOPE "):
        resolve_universe(["AAPL", "nope"], ["AAPL", "SPY"])
    with pytest.raises(DataError, match=r"universe lists 2 symbols that the store does not hold: NOPE, ZZZ "):
        resolve_universe("aapl,NOPE,zzz", ["AAPL"])
    with pytest.raises(DataError, match=r"does not hold: NOPE "):
        resolve_universe("NOPE", ["AAPL"])
    assert resolve_universe(["aapl", "SPY"], ["AAPL", "SPY"]) == ["AAPL", "SPY"]  # AAPL twice: refused (mend18)
    # a named tier is not a list: it runs on the tier's names the store holds
    assert resolve_universe("tier1+3", ["AAPL", "SPY", "XYZ"]) == ["SPY", "AAPL"]
    assert resolve_universe(["AAPL", "NOPE"]) == ["AAPL", "NOPE"]  # no store given: nothing to check against


def _one_symbol_store(tmp_path) -> str:
    db = str(tmp_path / "one.duckdb")
    con = connect(db)
    con.execute("DROP TABLE IF EXISTS daily_metrics")
    con.execute("CREATE TABLE daily_metrics AS SELECT DATE '2024-01-02' AS date, 'AAPL' AS symbol")
    con.close()
    return db


def test_every_command_refuses_a_listed_universe_the_store_lacks_a_symbol_of(tmp_path):
    """study run, walkforward (a spec's [data] universe list), backtest --universe A,B and ao.load_panel: before,
    ["AAPL", "NOPE"] ran on AAPL alone without a word."""
    import re

    import optimizer as ao
    from optimizer.study.data import load_universe_panel

    db = _one_symbol_store(tmp_path)
    with pytest.raises(DataError, match=re.escape(f"universe lists 1 symbol that daily_metrics of {db} does not hold: NOPE ")):
        ao.load_panel(db, ["AAPL", "NOPE"])
    with pytest.raises(DataError, match="does not hold: NOPE "):
        load_universe_panel(db, ("AAPL", "NOPE"))  # a spec's list, as the study and the walk-forward load it
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nuniverse = ["AAPL", "NOPE"]\n[space]\nbuy_threshold = 70\n', encoding="utf-8")
    r = CliRunner()
    storage = f"sqlite:///{tmp_path}/s.db"
    for args in (["backtest", "--universe", "AAPL,NOPE", "--db", db],
                 ["study", "run", str(spec), "--db", db, "--storage", storage],
                 ["walkforward", str(spec), "--db", db, "--storage", storage]):
        out = r.invoke(main, args)
        assert out.exit_code == 2, (args, out.output)
        assert "does not hold: NOPE (" in out.output and "Traceback" not in out.output, (args, out.output)


def test_a_listed_universe_is_refused_when_the_span_holds_no_row_of_one_of_its_symbols(tmp_path):
    """NEWCO is in the store from its 41st session on: a span before it loaded AAPL alone without a word."""
    from optimizer.data.calendar import nyse_sessions
    from optimizer.study.data import load_universe_panel

    db = str(tmp_path / "span.duckdb")
    days = [d.date() for d in nyse_sessions("2024-01-02", "2024-03-28")]
    df = pd.DataFrame([(d, s, 100.0, 1000.0, 500.0, 1.0) for s, first in (("AAPL", 0), ("NEWCO", 40))
                       for d in days[first:]],
                      columns=["date", "symbol", "close", "total_volume", "short_volume", "short_buy_sell_ratio"])
    con = connect(db)
    con.execute("DROP TABLE IF EXISTS daily_metrics")
    con.execute("CREATE TABLE daily_metrics AS SELECT * FROM df")
    con.execute("DROP VIEW IF EXISTS finra_short_daily")  # a daily_metrics-only store: its FINRA days are the ratio's
    con.close()
    with pytest.raises(DataError, match=r"universe lists 1 symbol with no row in daily_metrics of .* between "
                                        r"2024-01-02 and 2024-02-15: NEWCO \(a listed universe runs on every name"):
        load_universe_panel(db, ["AAPL", "NEWCO"], "2024-01-02", "2024-02-15")
    assert load_universe_panel(db, ["AAPL", "NEWCO"], "2024-03-01", "2024-03-28").symbols == ("AAPL", "NEWCO")
    assert load_universe_panel(db, "tier3", "2024-01-02", "2024-02-15").symbols == ("AAPL",)  # a tier: what it holds
    from optimizer.signals import signal_sheet  # the nightly sheet of that list on a night before NEWCO's first row
    with pytest.raises(DataError, match=r"universe lists 1 symbol with no row in daily_metrics of .* between "
                                        r"2024-01-02 and 2024-02-15: NEWCO \(a listed universe runs on every name"):
        signal_sheet({"buy_threshold": 70}, db, "2024-02-15", universe=["AAPL", "NEWCO"])


def test_symbol_map_cli_add_list_remove(tmp_path):
    db = str(tmp_path / "s.duckdb")
    con = connect(db)
    p = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2021-01-04,OLD,1,1,1,1,1\n2021-01-05,NEW,1,1,1,1,2\n")
    ingest_paths(con, "prices", [p])
    con.close()
    r = CliRunner()
    out = r.invoke(main, ["symbols", "map", "add", "old", "new", "--from", "2021-01-05", "--db", db, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["rows_rewritten"] == 1
    out = r.invoke(main, ["symbols", "map", "list", "--db", db, "--format", "json"])
    assert {"old_symbol": "OLD", "new_symbol": "NEW", "effective_date": "2021-01-05"} in json.loads(out.output)
    out = r.invoke(main, ["symbols", "map", "remove", "OLD", "--db", db])
    assert out.exit_code == 0 and "removed 1 mapping" in out.output
    out = r.invoke(main, ["symbols", "map", "remove", "OLD", "--db", db])
    assert out.exit_code == 2 and "no symbol mapping for OLD" in out.output
    out = r.invoke(main, ["symbols", "map", "add", "A", "../b", "--from", "2020-01-02", "--db", db])
    assert out.exit_code == 2 and "new must be a valid symbol" in out.output
    out = r.invoke(main, ["symbols", "show", "BRK/B", "ABRpD", "--format", "json"])
    assert [d["canonical"] for d in json.loads(out.output)] == ["BRK.B", "ABR.PRD"]
    out = r.invoke(main, ["symbols", "show", "BRK/B", "a..b"])  # a symbol breaking a rule: exit 2, the rule named
    assert out.exit_code == 2 and "BRK.B" in out.output and "Traceback" not in out.output, out.output
    assert "1 of 2 symbols break a rule: invalid symbol 'a..b': empty part" in out.output, out.output
    con = connect(db, read_only=True)
    assert table(con, "SELECT symbol, volume FROM prices_daily ORDER BY date") == [("NEW", 1.0), ("NEW", 2.0)]
    con.close()


# ---------------------------------------------------------------------------------------------- coverage


def test_gaps_and_weekly_coverage_hand_computed():
    exp = np.array(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"], dtype="datetime64[D]")
    have = np.array(["2024-01-02", "2024-01-05"], dtype="datetime64[D]")
    assert gaps_of(exp, have) == (Gap(dt.date(2024, 1, 3), dt.date(2024, 1, 4), 2), Gap(dt.date(2024, 1, 8), dt.date(2024, 1, 8), 1))
    c = source_coverage("prices", ["2024-01-02", "2024-01-05", "2024-01-06"], "2024-01-02", "2024-01-08")
    assert (c.sessions, c.expected, c.off_calendar, c.ratio) == (2, 5, 1, 0.4)  # 01-06 is a Saturday
    w = source_coverage("otc", ["2024-03-04", "2024-03-18"], weekly=True)  # a week covers its sessions
    assert (w.start, w.end, w.sessions, w.expected) == (dt.date(2024, 3, 4), dt.date(2024, 3, 22), 10, 15)
    assert w.gaps == (Gap(dt.date(2024, 3, 11), dt.date(2024, 3, 15), 5),)


def test_coverage_require_names_source_and_largest_gap():
    f = SourceCoverage("finra_short", dt.date(2024, 1, 2), dt.date(2024, 1, 31), 15, 21,
                       (Gap(dt.date(2024, 1, 3), dt.date(2024, 1, 3), 1), Gap(dt.date(2024, 1, 22), dt.date(2024, 1, 26), 5)))
    p = SourceCoverage("prices", dt.date(2024, 1, 2), dt.date(2024, 1, 31), 21, 21)
    cov = Coverage(dt.date(2024, 1, 2), dt.date(2024, 1, 31), 21, 3, (f, p))
    with pytest.raises(DataError) as e:
        cov.require("the span")
    assert str(e.value) == (
        "the span stands on too little finra_short data: 15 of 21 NYSE sessions (71.4%) in 2024-01-02..2024-01-31, "
        "below the minimum 90%; missing 2024-01-22..2024-01-26 (5 sessions) and 1 more gap "
        "(`accumopt data info` shows each source's coverage)")
    d = cov.to_dict()
    assert d["sources"]["finra_short"]["gaps"][1] == {"first": "2024-01-22", "last": "2024-01-26", "sessions": 5}
    assert json.loads(json.dumps(d)) == d
    assert Coverage(cov.start, cov.end, 21, 3, (f, p), minimum=0.7).require() is not None


def _small_store(tmp_path, days, symbols=("AAA", "BBB")):
    rows = "".join(f"{d},{s},10,11,9,10,{1000 + i}\n" for i, d in enumerate(days) for s in symbols)
    fin = "".join(f"{d},{s},{400 + i},1000,CNMS\n" for i, d in enumerate(days) for s in symbols)
    con = connect(":memory:")
    assert ingest_paths(con, "prices", [write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n" + rows)]).exit_code == 0
    assert ingest_paths(con, "finra-short", [write(tmp_path / "f.csv", "date,symbol,short_volume,total_volume,facility_file\n" + fin)]).exit_code == 0
    return con


def test_panel_carries_its_coverage_and_min_coverage_none_only_states_it(tmp_path):
    from optimizer.data.calendar import session_days

    days = [str(d) for d in session_days("2024-01-02", "2024-02-29")]
    con = _small_store(tmp_path, days[:10] + days[25:])  # a 15-session hole
    build_daily_metrics(con, z_window=3)
    with pytest.raises(DataError, match=r"too little finra_short data: 26 of 41 NYSE sessions .* missing 2024-01-17..2024-02-06 \(15 sessions\)"):
        load_panel(con)
    p = load_panel(con, min_coverage=None)
    assert len(p.dates) == 41 and p.coverage.source("finra_short").sessions == 26
    assert p.slice(0, 5).coverage is p.coverage and p.subset(["AAA"]).coverage is p.coverage
    assert load_panel(con, ["AAA"], days[25], None).coverage.source("prices").ratio == 1.0
    con.close()


# ---------------------------------------------------------------------------------------------- metrics


def test_short_share_beside_the_unbounded_ratio(tmp_path):
    con = connect(":memory:")
    text = ("date,symbol,short_volume,total_volume,facility_file\n2024-01-02,AAA,990,1000,CNMS\n"
            "2024-01-02,BBB,500,500,CNMS\n2024-01-02,CCC,0,0,CNMS\n")
    ingest_paths(con, "finra-short", [write(tmp_path / "f.csv", text)])
    build_daily_metrics(con)
    got = dict((s, (r, sh)) for s, r, sh in table(con, "SELECT symbol, short_buy_sell_ratio, short_share FROM daily_metrics"))
    assert got["AAA"] == (pytest.approx(99.0), pytest.approx(0.99))  # ratio 99, share 0.99
    assert got["BBB"] == (None, 1.0)  # short = total: the ratio is undefined, the share is 1
    assert got["CCC"] == (None, None)
    cols = [c for c, _ in metrics.DAILY_METRICS_COLUMNS]
    assert cols.index("short_share") == cols.index("short_buy_sell_ratio") + 1


def test_a_build_in_many_symbol_batches_equals_one_batch(tmp_path, monkeypatch):
    from optimizer.data.calendar import session_days

    days = [str(d) for d in session_days("2024-01-02", "2024-03-28")]
    con = _small_store(tmp_path, days, symbols=("AAA", "BBB", "CCC", "DDD", "EEE"))
    build_daily_metrics(con, z_window=5)
    one = con.execute("SELECT * FROM daily_metrics ORDER BY date, symbol").df()
    monkeypatch.setattr(metrics, "BATCH_ROWS", 2 * len(days))  # 2 symbols per batch -> 3 batches
    build_daily_metrics(con, z_window=5)
    many = con.execute("SELECT * FROM daily_metrics ORDER BY date, symbol").df()
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    monkeypatch.setattr(metrics, "Z_BLOCK_CELLS", len(days))  # one symbol per z grid block
    build_daily_metrics(con, z_window=5)
    pd.testing.assert_frame_equal(one, con.execute("SELECT * FROM daily_metrics ORDER BY date, symbol").df(), check_exact=True)


def test_data_info_json_has_coverage(tmp_path):
    db = str(tmp_path / "i.duckdb")
    con = connect(db)
    p = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2024-01-02,AAA,1,1,1,1,1\n2024-01-04,AAA,1,1,1,1,1\n")
    ingest_paths(con, "prices", [p])
    con.close()
    out = CliRunner().invoke(main, ["data", "info", "--db", db, "--format", "json"])
    assert out.exit_code == 0, out.output
    cov = {c["source"]: c for c in json.loads(out.output)["coverage"]}
    assert (cov["prices"]["sessions"], cov["prices"]["expected"]) == (2, 3)
    assert cov["prices"]["gaps"] == [{"first": "2024-01-03", "last": "2024-01-03", "sessions": 1}]
    out = CliRunner().invoke(main, ["data", "info", "--db", db])
    assert "prices       2024-01-02..2024-01-04  2/3 sessions (66.7%)\n               1 gap, largest" in out.output


def test_sandbox_loads_one_symbol_and_draws_the_same_numbers(synth_db):
    from optimizer.report.sandbox import load_sandbox_panel, sandbox_data

    con = connect(synth_db, read_only=True)
    try:
        full = load_panel(con)
        small = load_sandbox_panel(con, "aapl", "2024-03-01", "2024-04-30")
    finally:
        con.close()
    assert small.symbols == ("AAPL",) and len(small.dates) < len(full.dates) // 4
    a = sandbox_data(full, "AAPL", "2024-03-01", "2024-04-30")
    b = sandbox_data(small, "AAPL", "2024-03-01", "2024-04-30")
    # equal up to the rounding of pandas' online rolling sums, which depends on where the history starts
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_symbol_map_add_says_the_derived_tables_keep_the_old_name(tmp_path):
    """`symbols map add OLD NEW` renamed the raw rows, and daily_metrics (and saved scans) kept OLD until a
    `metrics build` with no word: a backtest of NEW saw half its history. The command now names what still holds
    OLD and what to run; after the rebuild it has nothing to say."""
    db = str(tmp_path / "s.duckdb")
    con = connect(db)
    p = write(tmp_path / "p.csv", "date,symbol,open,high,low,close,volume\n2021-01-04,OLD,1,1,1,1,1\n2021-01-05,NEW,1,1,1,1,2\n")
    ingest_paths(con, "prices", [p])
    build_daily_metrics(con)
    con.execute("CREATE TABLE scanner_daily_metrics (date DATE, symbol VARCHAR)")  # a saved scan of 2021-01-04
    con.execute("INSERT INTO scanner_daily_metrics VALUES ('2021-01-04', 'OLD'), ('2021-01-05', 'OLD')")
    con.close()
    r = CliRunner()
    out = r.invoke(main, ["symbols", "map", "add", "old", "new", "--from", "2021-01-05", "--db", db])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "OLD -> NEW from 2021-01-05: 1 stored rows renamed"
    err = " ".join(out.stderr.split())
    assert ("warning: derived tables still hold OLD before 2021-01-05 (daily_metrics 1 rows): they keep the old name "
            "until rebuilt; run `accumopt metrics build`") in err, err
    assert "warning: scanner_daily_metrics (1 rows of saved scans) still holds OLD before 2021-01-05" in err, err
    out = r.invoke(main, ["metrics", "build", "--db", db])
    assert out.exit_code == 0, out.output
    con = connect(db, read_only=True)
    assert table(con, "SELECT DISTINCT symbol FROM daily_metrics") == [("NEW",)]
    con.close()
    con = connect(db)
    con.execute("DELETE FROM scanner_daily_metrics")
    con.close()
    out = r.invoke(main, ["symbols", "map", "add", "OLD", "NEW", "--from", "2021-01-05", "--db", db, "--format", "json"])
    d = json.loads(out.stdout)
    assert out.exit_code == 0 and d["derived_rows_of_old"] == {} and d["warnings"] == [] and out.stderr == ""
