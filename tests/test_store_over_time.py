"""The store over time: a user who ingests every evening for months must see the values a store built in one go
(and a store truncated at t) gives. docs/DATA.md "Coverage and gaps", DEVELOPERS.md "No lookahead".

* A store grown evening by evening (each session's files ingested and daily_metrics rebuilt that evening; in date
  order, or shuffled with a session arriving weeks late) holds exactly the rows, and builds exactly the
  daily_metrics, of the same files ingested in one call: every data table, bit for bit.

* A store truncated at t (every raw row known at the close of t: FINRA, prices, lit, options dated <= t, OTC weeks
  published <= t, splits in effect by t), rebuilt, loaded and scored end to end, gives the full store's values on
  every session <= t for every feature family: each daily_metrics column, every panel field and market series,
  every score variant's terms and display score, every context key (the rule regime and the learned regime
  included) and every regime entry filter.
* daily_metrics built before the raw data changed (a re-published FINRA day, a revised close, a split, a renamed
  symbol) is named stale by every command that reads it (``data info``, ``signals``, ``backtest``, ``study run``,
  ``table``, ``plot``, ``sandbox``, ...) and the Python API's loads until it is rebuilt in full: every score reads
  it, and nothing else would tell the user the change is not in them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _cli_helpers import cli, ok
from optimizer.data.ingest import ingest_paths
from optimizer.data.metrics import RAW_STATE_KEY, build_daily_metrics, metrics_staleness
from optimizer.data.synth import SynthConfig, generate_market, synth_to_db, write_market
from optimizer.data.store import connect, insert_finra_short
from optimizer.engine.context import CONTEXT_KEYS, compute_context
from optimizer.engine.features import VARIANTS, FeatureCache
from optimizer.engine.regime_filter import REGIME_NAMES, regime_entry_mask
from optimizer.engine.score import ScoreParams, display_score
from optimizer.study.data import load_universe_panel

# raw table -> the column that says when a row became known
KNOWN_AT = {"finra_short_daily": "date", "prices_daily": "date", "lit_flow_daily": "date", "options_daily": "date",
            "finra_otc_weekly": "publication_date", "splits": "ex_date"}


def _truncated_store(src_db, dst_db, t) -> None:
    src = connect(src_db, read_only=True)
    dst = connect(dst_db)
    try:
        for table, col in KNOWN_AT.items():
            frame = src.sql(f"SELECT * FROM {table} WHERE {col} <= ?", params=[t]).to_arrow_table()
            if frame.num_rows:
                dst.register("_src", frame)
                if table == "finra_short_daily":  # a view: its rows are stored with a source id
                    insert_finra_short(dst, "SELECT * FROM _src")
                else:
                    dst.execute(f"INSERT INTO {table} SELECT * FROM _src")
                dst.unregister("_src")
        build_daily_metrics(dst)
    finally:
        src.close()
        dst.close()


def _metrics(db, t=None) -> pd.DataFrame:
    con = connect(db, read_only=True)
    try:
        where = "" if t is None else f"WHERE date <= DATE '{t}'"
        return con.sql(f"SELECT * FROM daily_metrics {where} ORDER BY date, symbol").df()
    finally:
        con.close()


@pytest.mark.slow
def test_a_store_truncated_at_t_gives_every_feature_family_the_full_stores_values(synth_db, tmp_path):
    full = load_universe_panel(synth_db, "tier1+3")
    T = len(full.dates)
    ctx_full = compute_context(full)
    learned = ctx_full["learned_regime"]
    assert (learned >= 0).sum() > 100, "the learned regime labels sessions of the span (the check is not vacuous)"
    fc_full = FeatureCache(full)
    assert np.isfinite(full["otc_participation_rate"]).any() and np.isfinite(full["lit_flow_imbalance"]).any()
    assert np.isfinite(full["call_volume"]).any()
    r0 = int(np.argmax(learned >= 0))  # the first refit of the learned regime (then one every 21 sessions)
    for t_idx in (r0 + 1, r0 + 2 * 21 + 1, T - 40):  # just after refits (a fit that saw row t would differ there)
        t = str(full.dates[t_idx])[:10]
        cut_db = tmp_path / f"cut_{t}.duckdb"
        _truncated_store(synth_db, cut_db, t)
        pd.testing.assert_frame_equal(_metrics(cut_db), _metrics(synth_db, t), check_exact=True,
                                      obj=f"daily_metrics truncated at {t}")
        cut = load_universe_panel(cut_db, "tier1+3")
        assert cut.symbols == full.symbols and (cut.dates == full.dates[: t_idx + 1]).all()
        for k, v in full.fields.items():
            np.testing.assert_array_equal(cut.fields[k], v[: t_idx + 1], err_msg=f"panel field {k} at t={t}")
        for k, v in full.market.items():
            np.testing.assert_array_equal(cut.market[k], v[: t_idx + 1], err_msg=f"market {k} at t={t}")
        fc = FeatureCache(cut)
        for variant in VARIANTS:
            for w in (5, 20):
                sp = ScoreParams(variant=variant, z_window=w)
                np.testing.assert_array_equal(display_score(fc, sp), display_score(fc_full, sp)[: t_idx + 1],
                                              err_msg=f"display score {variant}/{w} at t={t}")
        for w in (5, 20):
            for name, a, b in (("lit_z", fc.lit_z(w), fc_full.lit_z(w)), ("price_z", fc.price_z(w), fc_full.price_z(w)),
                               ("otc_z", fc.otc_z(w), fc_full.otc_z(w))):
                np.testing.assert_array_equal(a, b[: t_idx + 1], err_msg=f"{name}({w}) at t={t}")
        ctx = compute_context(cut)
        for k in CONTEXT_KEYS:
            np.testing.assert_array_equal(ctx[k], ctx_full[k][: t_idx + 1], err_msg=f"context {k} at t={t}")
        for reg in REGIME_NAMES:
            a, b = regime_entry_mask(cut, reg), regime_entry_mask(full, reg)
            assert (a is None) == (b is None), reg
            if a is not None:
                np.testing.assert_array_equal(a, b[: t_idx + 1], err_msg=f"regime filter {reg} at t={t}")


def _evening_folders(raw, root) -> list:
    """The synthetic market's files cut into one folder per session, as a vendor delivers them each evening: the
    session's FINRA file, its prices / lit / options rows, and the OTC weeks published that day (delivered on the
    first session on or after their publication date)."""
    px = pd.read_csv(raw / "prices_daily.csv", dtype=str)
    days = sorted(px["date"].unique())
    for d in days:
        (root / d).mkdir(parents=True)
        f = raw / "finra" / f"CNMSshvol{d.replace('-', '')}.txt"
        if f.exists():
            (root / d / f.name).write_bytes(f.read_bytes())
    for name in ("prices_daily", "lit_flow_daily", "options_daily"):
        for d, g in pd.read_csv(raw / f"{name}.csv", dtype=str).groupby("date"):
            g.to_csv(root / d / f"{name}_{d}.csv", index=False)
    otc = pd.read_csv(raw / "otc_weekly.csv", dtype=str)
    for pub, g in otc.groupby("lastUpdateDate"):
        day = next((d for d in days if d >= pub), None)
        if day is not None:
            g.to_csv(root / day / f"otc_weekly_{pub}.csv", index=False)
    return [root / d for d in days]


_KINDS = {"CNMSshvol": "finra-short", "prices_daily": "prices", "lit_flow_daily": "lit-flow",
          "options_daily": "options", "otc_weekly": "otc-weekly"}
_DATA_TABLES = {"finra_short_daily": "date, symbol, facility", "prices_daily": "date, symbol",
                "lit_flow_daily": "date, symbol", "options_daily": "date, symbol", "finra_otc_weekly": "week_start_date, symbol",
                "daily_metrics": "date, symbol", "options_premium_daily": "date, symbol", "options_premium_summary": "symbol"}


def _grow(db, evenings: list[list], rebuild_each: bool) -> dict[str, pd.DataFrame]:
    """Ingest each evening's folders (kinds in the evening's order), rebuilding daily_metrics after each evening
    when ``rebuild_each``; return every data table sorted by its key."""
    con = connect(db)
    try:
        for folders in evenings:
            for prefix, kind in _KINDS.items():
                files = sorted(f for d in folders for f in d.iterdir() if f.name.startswith(prefix))
                if files:
                    assert ingest_paths(con, kind, files).exit_code == 0
            if rebuild_each:
                build_daily_metrics(con)
        build_daily_metrics(con)
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY {k}").df() for t, k in _DATA_TABLES.items()}
    finally:
        con.close()


@pytest.mark.slow
def test_a_store_grown_evening_by_evening_equals_the_store_built_in_one_go(tmp_path):
    # 24 evenings (each ~5 ingest calls, ~65 ms apiece whatever the symbol count) of the 33 tier1+3 symbols: the
    # z-scores (window 20) exist on 5 sessions x 32 FINRA symbols, three evenings bring OTC weeks (two before the late
    # session arrives), and the late session is in the z window of stored sessions, so its arrival changes them.
    market = generate_market(SynthConfig(seed=5, start="2024-02-01", end="2024-03-06", universe="tier1+3"))
    write_market(market, tmp_path / "raw")
    days = _evening_folders(tmp_path / "raw", tmp_path / "evenings")
    otc_days = [i for i, d in enumerate(days) if any(f.name.startswith("otc_weekly") for f in d.iterdir())]
    assert len(days) == 24 and len(otc_days) == 3 and otc_days[1] < 21
    once = _grow(tmp_path / "once.duckdb", [days], rebuild_each=False)
    assert len(once["finra_otc_weekly"]) and once["daily_metrics"]["otc_participation_rate"].notna().sum() > 100
    assert once["daily_metrics"]["short_buy_sell_ratio_z"].notna().sum() > 100
    late = [d for d in days if d != days[1]]
    late.insert(21, days[1])  # in date order, but session 1's files arrive 20 evenings late (two evenings follow)
    shuffled = list(days)
    np.random.default_rng(1).shuffle(shuffled)
    for name, order, each in (("in order, one session late", late, True), ("shuffled", shuffled, False)):
        grown = _grow(tmp_path / f"{name}.duckdb", [[d] for d in order], rebuild_each=each)
        for t, frame in once.items():
            pd.testing.assert_frame_equal(grown[t], frame, check_exact=True, obj=f"{t} ({name})")


@pytest.fixture(scope="module")
def jan_apr(tmp_path_factory) -> Path:
    """The tier1 store of 2024-01-02 .. 2024-04-30 (seed 3) the next three tests start from, built once (each test
    writes to a copy of it: ``_copy``); its raw files beside it, read only."""
    root = tmp_path_factory.mktemp("jan_apr")
    synth_to_db(SynthConfig(seed=3, start="2024-01-02", end="2024-04-30", universe="tier1"), root / "raw",
                root / "s.duckdb")
    return root / "s.duckdb"


def _copy(db: Path, tmp_path: Path) -> Path:
    assert not db.with_name(db.name + ".wal").exists()  # closed, so the file alone is the store
    shutil.copy(db, tmp_path / db.name)
    return tmp_path / db.name


def _staleness(db) -> str | None:
    con = connect(db, read_only=True)
    try:
        return metrics_staleness(con)
    finally:
        con.close()


def test_daily_metrics_older_than_the_raw_data_is_named_until_rebuilt(jan_apr, tmp_path, monkeypatch):
    """`accumopt ingest` of a corrected file (FINRA re-publishes a day under the same name) changed the raw table;
    every score, sheet and backtest kept reading the daily_metrics built before it, and nothing said so: the sheet
    of tonight silently used the old figures. data info, signals and backtest now warn until `metrics build`."""
    monkeypatch.chdir(tmp_path)  # its commands take no --out: the default output root is not the checkout's
    db = _copy(jan_apr, tmp_path)
    assert _staleness(db) is None
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 65, "sell_threshold": 35}))
    raw = jan_apr.parent / "raw" / "finra" / "CNMSshvol20240410.txt"
    con = connect(db)
    again = ingest_paths(con, "finra-short", [raw])  # the same file again: skipped, nothing changed
    con.close()
    assert again.to_dict()["totals"]["skipped_identical"] == 1 and _staleness(db) is None
    fixed = tmp_path / "republished" / raw.name  # FINRA re-publishes the day: same name, one row changed
    fixed.parent.mkdir()
    lines = raw.read_text().splitlines()
    f = lines[1].split("|")
    f[2] = str(int(f[2]) - 1000)
    fixed.write_text("\n".join([lines[0], "|".join(f), *lines[2:]]) + "\n")
    con = connect(db)
    assert ingest_paths(con, "finra-short", [fixed]).files[0].status == "replaced"
    con.close()
    want = f"daily_metrics is older than the raw data: 1 file(s) were ingested since it was built (the latest: {fixed})"
    assert _staleness(db).startswith(want) and "run `accumopt metrics build`" in _staleness(db)
    info = ok(cli("data", "info", "--db", db))
    assert f"warning: {want}" in " ".join(info.stderr.split())
    assert json.loads(ok(cli("data", "info", "--db", db, "--format", "json")).stdout)["daily_metrics_stale"] == \
        _staleness(db)
    sig = ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1", "--no-save"))
    assert f"warning: {want}" in " ".join(sig.stderr.split())
    bt = json.loads(ok(cli("backtest", "--params", params, "--db", db, "--universe", "tier1", "--no-save", "--format", "json")).stdout)
    assert any(w.startswith(f"warning: {want}") for w in bt["warnings"])
    con = connect(db)
    build_daily_metrics(con, symbols=["SPY"])  # a scoped build refreshes SPY only: still stale
    assert metrics_staleness(con).startswith(want)
    build_daily_metrics(con)
    assert metrics_staleness(con) is None
    con.close()
    assert "warning" not in ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1", "--no-save")).stderr
    bt = json.loads(ok(cli("backtest", "--params", params, "--db", db, "--universe", "tier1", "--no-save", "--format", "json")).stdout)
    assert bt["warnings"] == []
    ok(cli("symbols", "map", "add", "QQQ", "QQQX", "--from", "2024-03-01", "--db", db))  # renames stored rows
    assert _staleness(db) == ("daily_metrics is older than the raw data: the symbol map changed since it was built. "
                              "Scores, sheets, backtests and studies read daily_metrics and do not see the change: "
                              "run `accumopt metrics build`")
    con = connect(db)
    con.execute(f"DELETE FROM accumopt_meta WHERE key = '{RAW_STATE_KEY}'")  # built by an earlier accumopt: unknown
    assert metrics_staleness(con) is None
    con.close()


def test_a_sheet_without_any_score_says_which_finra_sessions_are_missing(jan_apr, tmp_path):
    """A FINRA file that never came (one session, days ago) blanks every z-score until the window no longer holds it
    (a gap is never bridged): the evening's sheet then read ENTER 0 / EXIT 0 with every score empty, night after
    night, and nothing said why. signals and evening now warn, naming the missing session."""
    db = _copy(jan_apr, tmp_path)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 65, "sell_threshold": 35}))
    sig = ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1", "--no-save"))
    assert "no symbol has a score" not in sig.stderr  # an intact store: scores, no warning
    con = connect(db)
    con.execute("DELETE FROM finra_short_rows WHERE date = DATE '2024-04-24'")  # 4 sessions before the last
    build_daily_metrics(con)
    con.close()
    want = ("no symbol has a score on 2024-04-30: the store has no FINRA short data on 1 of the last 10 sessions (the "
            "z-scores' window, 10 with data needed): 2024-04-24;")
    sig = ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1", "--no-save", "--all"))
    assert f"warning: {want}" in " ".join(sig.stderr.split())
    ev = json.loads(ok(cli("evening", "--params", params, "--db", db, "--universe", "tier1", "--no-fetch",
                           "--out", tmp_path / "out", "--format", "json")).stdout)
    assert any(w.startswith(want) for w in ev["warnings"]), ev["warnings"]
    assert ev["sheet"]["counts"]["ENTER"] == 0


def test_a_sheet_of_a_session_without_its_prices_says_so(jan_apr, tmp_path):
    """FINRA's file of the session in, its prices not (an --ingest folder without them, a fetch that missed some
    symbols): the sheet scored those symbols without the price term, judged their positions without the session's
    close and, without SPY's, ran the market regime on nothing; its decisions changed once the prices came (on the
    audit's store an EXIT read HOLD) and nothing said so. signals and evening now name the symbols."""
    db = _copy(jan_apr, tmp_path)
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 65, "sell_threshold": 35}))
    assert "price bar" not in ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1",
                                     "--no-save")).stderr
    con = connect(db)
    con.execute("DELETE FROM prices_daily WHERE date = DATE '2024-04-30' AND symbol IN ('XLK', 'XLI')")
    build_daily_metrics(con)
    con.close()
    want = ("2 symbol(s) of the sheet have FINRA data on 2024-04-30 but no price bar there: XLI, XLK; their scores "
            "lack the price term, their positions the session's close: ingest 2024-04-30's prices and run the sheet "
            "again")
    assert f"warning: {want}" in " ".join(ok(cli("signals", "--params", params, "--db", db, "--universe", "tier1",
                                                 "--no-save")).stderr.split())
    con = connect(db)
    con.execute("DELETE FROM prices_daily WHERE date = DATE '2024-04-30' AND symbol = 'SPY'")
    build_daily_metrics(con)
    con.close()
    ev = json.loads(ok(cli("evening", "--params", params, "--db", db, "--universe", "XLK", "--no-fetch",
                           "--out", tmp_path / "out", "--format", "json")).stdout)
    assert ("1 symbol(s) of the sheet have FINRA data on 2024-04-30 but no price bar there: XLK; their scores lack the "
            "price term, their positions the session's close; without SPY's close the market regime (and a regime "
            "filter) is not the session's: ingest 2024-04-30's prices and run the sheet again") in ev["warnings"]


def test_a_final_reserve_opened_before_the_store_grew_warns_when_opened_again(synth_db, tmp_path):
    """The final reserve is the last share of the sessions, so a store that grows moves its start; the ledger keyed
    openings by that start alone, so `backtest --final` a month later opened a reserve most of whose sessions the
    first opening had already shown, and said nothing (the hold-out silently re-used). An opening whose span reaches
    into the reserve now counts as an earlier opening of it."""
    full = synth_db  # the session's store (read only), its last month arriving later in the copy that grows
    db = tmp_path / "grows.duckdb"
    _truncated_store(full, db, "2024-05-31")
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"variant": "B", "z_window": 10, "buy_threshold": 65, "sell_threshold": 35}))
    args = ("backtest", "--params", params, "--db", db, "--universe", "tier1", "--final", "--no-save", "--format", "json")
    first = json.loads(ok(cli(*args)).stdout)
    assert first["reserve_opened"] and first["warnings"] == []
    src, dst = connect(full, read_only=True), connect(db)  # a month of evenings later: the rest of the raw rows
    for table, col in KNOWN_AT.items():
        frame = src.sql(f"SELECT * FROM {table} WHERE {col} > DATE '2024-05-31'").to_arrow_table()
        if frame.num_rows:
            dst.register("_src", frame)
            if table == "finra_short_daily":  # a view: its rows are stored with a source id
                insert_finra_short(dst, "SELECT * FROM _src")
            else:
                dst.execute(f"INSERT INTO {table} SELECT * FROM _src")
            dst.unregister("_src")
    src.close()
    build_daily_metrics(dst)
    (r0, e0), = dst.execute("SELECT reserve_start, span_end FROM reserve_ledger").fetchall()
    dst.close()
    second = json.loads(ok(cli(*args)).stdout)
    con = connect(db, read_only=True)
    r1 = con.execute("SELECT max(reserve_start) FROM reserve_ledger").fetchone()[0]
    con.close()
    assert r0 < r1 <= e0  # the reserve moved, and the first opening had shown its first sessions
    assert len(second["warnings"]) == 1, second["warnings"]
    w = second["warnings"][0]
    assert w.startswith(f"WARNING: the final reserve starting {r1} was already opened 1 time(s)")
    assert f"1 of them as the reserve starting {r0} through {e0}, whose sessions this one holds: the store grew since" in w


STALE_SPEC = """
[study]
name = "stale"
[data]
universe = "tier1"
end = "2024-03-28"
[space]
variant = "B"
z_window = 20
buy_threshold = { type = "int", low = 60, high = 70, step = 5 }
exit = "first_dist"
[cv]
n_splits = 2
purge = 20
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 1
[pruner]
name = "none"
[run]
n_trials = 1
"""


def test_every_command_that_reads_daily_metrics_says_it_is_older_than_the_raw_data(synth_db, tmp_path):
    """data info, signals and backtest warned that daily_metrics predates the raw data (a file ingested since the
    last full build); study run, walkforward, table, plot, sandbox and the Python API's load paths read the same
    daily_metrics without a word. Each now says it once (stderr; a JSON object's ``warnings``): the store here is
    the session store with its build marked as made before its latest ingested file (planted)."""
    import shutil
    import warnings as _warnings

    import optimizer as ao

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    last = con.execute("SELECT max(id) FROM ingest_log WHERE status IN ('ok', 'replaced', 'rejected_rows')").fetchone()[0]
    built = json.loads(con.execute(f"SELECT value FROM accumopt_meta WHERE key = '{RAW_STATE_KEY}'").fetchone()[0])
    assert built["ingest_id"] == last and metrics_staleness(con) is None
    con.execute(f"UPDATE accumopt_meta SET value = ? WHERE key = '{RAW_STATE_KEY}'",
                [json.dumps(built | {"ingest_id": last - 1})])  # as if the latest file came after the build
    stale = metrics_staleness(con)
    con.close()
    assert stale.startswith("daily_metrics is older than the raw data: 1 file(s) were ingested since it was built")

    def said_once(res) -> None:
        assert " ".join(res.stderr.split()).count(f"warning: {' '.join(stale.split())}") == 1, res.stderr

    out = ("--db", db, "--out", tmp_path / "out")
    said_once(ok(cli("table", *out)))
    res = ok(cli("table", "--format", "json", *out))
    said_once(res)
    assert isinstance(json.loads(res.stdout), list)  # the rows, as before: the warning is on stderr
    said_once(ok(cli("plot", "AAPL", "--no-png", *out)))
    said_once(ok(cli("sandbox", "AAPL", "--no-png", *out)))
    spec = tmp_path / "stale.toml"
    spec.write_text(STALE_SPEC)
    res = ok(cli("study", "run", spec, "--storage", f"sqlite:///{tmp_path / 's.db'}", "--format", "json", *out))
    said_once(res)
    assert json.loads(res.stdout)["warnings"] == [stale]
    said_once(ok(cli("study", "run", spec, "--storage", f"sqlite:///{tmp_path / 's.db'}", *out)))  # resumed
    with pytest.warns(UserWarning, match="daily_metrics is older than the raw data") as caught:
        ao.load_panel(db, "tier1")
    assert sum("daily_metrics is older" in str(w.message) for w in caught) == 1
    with pytest.warns(UserWarning, match="daily_metrics is older than the raw data"):
        ao.sandbox_figure(db, "AAPL")
    # the store as built says nothing
    assert "daily_metrics is older" not in ok(cli("table", "--db", synth_db, "--out", tmp_path / "o2")).stderr
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        ao.load_panel(synth_db, "tier1")


def test_a_study_refused_on_a_grown_store_names_the_key_that_keeps_it_resumable(synth_db, tmp_path):
    """A study whose spec sets no [data].end follows the store's last session: after the next evening's ingest its
    span end and final reserve moved, the fingerprint changed and `study run` refused it ('run on different data
    ...; Use --name NEW ...'), every night, without saying why or that [data].end keeps a study resumable. The
    refusal stays; it now says the end moved (from, to, the reserves) and names [data].end, --name and --new-name;
    and following it works: the spec with [data].end pinned, started with --new-name, resumes on the grown store."""
    import shutil

    from _cli_helpers import one_line_error

    early = tmp_path / "early.duckdb"  # the store a month before: the session store without its last sessions
    shutil.copy(synth_db, early)
    con = connect(early)
    con.execute("DELETE FROM daily_metrics WHERE date > DATE '2024-05-31'")
    con.close()
    spec = tmp_path / "grow.toml"
    spec.write_text(STALE_SPEC.replace('name = "stale"', 'name = "grow"').replace('end = "2024-03-28"\n', ""))
    url = f"sqlite:///{tmp_path / 's.db'}"
    ok(cli("study", "run", spec, "--db", early, "--storage", url, "--out", tmp_path / "o"))
    line = one_line_error(cli("study", "run", spec, "--db", synth_db, "--storage", url, "--out", tmp_path / "o"),
                          "study 'grow' was run on different data", "the spec sets no [data].end",
                          "moved from 2024-05-31", "refusing to mix trials",
                          'set [data].end in the spec (e.g. end = "2024-06-28"', "--name NEW", "--new-name")
    assert "(final reserve from 2024-02-21) to 2024-06-28 (final reserve from 2024-03-13)" in line
    pinned = tmp_path / "pinned.toml"  # as told: [data].end pinned, a new study
    pinned.write_text(spec.read_text().replace('universe = "tier1"', 'universe = "tier1"\nend = "2024-05-31"'))
    one_line_error(cli("study", "run", pinned, "--db", synth_db, "--storage", url, "--out", tmp_path / "o"),
                   "created from a different spec", "--new-name")
    res = json.loads(ok(cli("study", "run", pinned, "--db", early, "--storage", url, "--new-name", "--n-trials", "1",
                            "--format", "json", "--out", tmp_path / "o")).stdout)
    assert res["study"] == "grow-2" and res["complete"] + res["pruned"] == 1
    res = json.loads(ok(cli("study", "run", pinned, "--db", synth_db, "--storage", url, "--new-name", "--n-trials",
                            "2", "--format", "json", "--out", tmp_path / "o")).stdout)  # the grown store: resumed
    assert res["study"] == "grow-2" and res["complete"] + res["pruned"] == 2


def test_a_finra_session_summed_from_fewer_facility_files_than_its_neighbours_is_named(tmp_path):
    """A session without the consolidated CNMS file is summed from the facility files it holds
    (store.consolidated_short_sql): with FNSQ alone where the sessions around it hold CNMS, or FNSQ without the
    FNYX its neighbours hold, daily_metrics read a fraction of the day's short volume as the whole day, silently (a
    shock in every short z-score). `metrics build` and `data info` now name those sessions and what they lack;
    a session with CNMS (whatever facility files it lacks) and one holding its neighbours' facilities are whole."""
    db = tmp_path / "s.duckdb"
    synth_to_db(SynthConfig(seed=3, start="2024-01-02", end="2024-02-28", universe="tier1"), tmp_path / "raw", db)
    fin = tmp_path / "raw" / "finra"
    extra = tmp_path / "facility"
    extra.mkdir()

    def facility(fac, day):  # the facility's share of the day's CNMS file (FNSQ 60%, FNYX 40% of each volume)
        share = {"FNSQ": 0.6, "FNYX": 0.4}[fac]
        head, *rows = (fin / f"CNMSshvol{day.replace('-', '')}.txt").read_text().splitlines()
        cut = [r.split("|") for r in rows[:-1]]  # the last line: the record count
        rows = ["|".join([f[0], f[1], *(str(int(int(v) * share)) for v in f[2:5]), *f[5:]]) for f in cut]
        p = extra / f"{fac}shvol{day.replace('-', '')}.txt"
        p.write_text("\r\n".join([head, *rows, str(len(rows))]) + "\r\n")
        return p

    con = connect(db)
    for day in ("2024-01-10", "2024-02-05", "2024-02-06", "2024-02-07"):  # their CNMS file never came
        con.execute("DELETE FROM finra_short_rows WHERE date = ? AND source_id IN (SELECT source_id FROM "
                    "finra_short_sources WHERE facility = 'CNMS')", [day])
    files = [facility("FNSQ", d) for d in ("2024-01-10", "2024-02-05", "2024-02-06", "2024-02-07", "2024-01-17")]
    files += [facility("FNYX", d) for d in ("2024-02-05", "2024-02-07")]
    got = ingest_paths(con, "finra-short", files).files
    assert all(f.status == "ok" for f in got), [(f.status, getattr(f, "message", None)) for f in got]
    con.close()
    built = ok(cli("metrics", "build", "--db", db, "--format", "json"))
    said = " ".join(built.stderr.split())
    assert ("warning: 2 FINRA session(s) hold fewer facility files than the sessions around them, so their short "
            "volume is a partial sum read as the whole day (provenance FACILITY_SUM:...): 2024-01-10 summed from FNSQ "
            "without CNMS; 2024-02-06 summed from FNSQ without FNYX. Ingest the missing files") in said, said
    info = ok(cli("data", "info", "--db", db))
    assert "2024-01-10 summed from FNSQ without CNMS; 2024-02-06 summed from FNSQ without FNYX" in \
        " ".join(info.stderr.split())
    assert json.loads(ok(cli("data", "info", "--db", db, "--format", "json")).stdout)["finra_partial_days"] == [
        {"date": "2024-01-10", "facilities": ["FNSQ"], "missing": ["CNMS"]},
        {"date": "2024-02-06", "facilities": ["FNSQ"], "missing": ["FNYX"]}]
    con = connect(db, read_only=True)
    prov = dict(con.execute("SELECT strftime(date, '%Y-%m-%d'), any_value(split_part(provenance, ',', 1)) "
                            "FROM daily_metrics WHERE symbol = 'QQQ' GROUP BY 1").fetchall())
    con.close()
    assert (prov["2024-01-10"], prov["2024-02-05"], prov["2024-02-06"], prov["2024-01-17"]) == (
        "FACILITY_SUM:FNSQ", "FACILITY_SUM:FNSQ+FNYX", "FACILITY_SUM:FNSQ", "CNMS")
