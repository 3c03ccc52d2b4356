"""mend12: three real-data defects found by the scale audit (explore11).

1. ``universe = "all"`` ran on every symbol of daily_metrics, FINRA symbols without a single price included (a real
   FINRA day lists ~11,000 symbols against the 128 the real price files hold): now ``all`` is the store's symbols
   with a price in the span, and how many it left out is counted (panel coverage, study record, command output).
2. FINRA volumes on the far side of a split the store does not record: warned, once per symbol (``data.splitcheck``).
3. A table's HTML file name: the canonical symbol, through ``paths.safe_name``.

Real data (../shared/data/real) is read where it exists and the tests that need it skip cleanly where it does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _cli_helpers import cli, ok
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect, insert_finra_short

UNPRICED = ("ZZA", "ZZB", "ZZC.W", "ZZD")  # FINRA symbols of the store with no price row


@pytest.fixture(scope="module")
def unpriced_db(synth_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted synthetic store (33 priced symbols, 374 sessions) plus four FINRA symbols that have short-sale
    rows on every session and no price at all, as a real FINRA year beside a few priced names; metrics rebuilt."""
    db = tmp_path_factory.mktemp("unpriced") / "store.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    try:
        # one INSERT ... SELECT (executemany of the 1,496 rows took 1.4 s of CPU, the whole rest of this fixture 0.2)
        unpriced = ", ".join(f"('{s}', {k})" for k, s in enumerate(UNPRICED))
        insert_finra_short(con, "SELECT d.date, u.symbol, 'CNMS', 1000 + u.k, 3000 + u.k, 0, "
                           "'mend12' FROM (SELECT DISTINCT date FROM finra_short_daily) d, "
                           f"(VALUES {unpriced}) u(symbol, k) ORDER BY d.date, u.k",
                           columns=["date", "symbol", "facility", "short_volume", "total_volume", "short_exempt_volume",
                                    "source_file"])
        build_daily_metrics(con)
        have = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics").fetchall()}
        priced = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM prices_daily").fetchall()}
    finally:
        con.close()
    assert set(UNPRICED) <= have and not set(UNPRICED) & priced  # the store holds them, without a price
    return db


def _priced(db: Path) -> list[str]:
    con = connect(db, read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT DISTINCT symbol FROM prices_daily WHERE symbol NOT LIKE '^%' "
                                          "ORDER BY 1").fetchall()]
    finally:
        con.close()


def test_universe_all_is_the_symbols_with_a_price_and_counts_the_finra_symbols_left_out(unpriced_db):
    """``all`` resolves to the 33 priced symbols (before: 37, four columns of the panel with no close at all), the
    panel's coverage counts the 4 left out, and the one wording states it. A span with prices for a symbol only
    outside it leaves that symbol out too."""
    import numpy as np

    from optimizer.data.universe import unpriced_note
    from optimizer.study.data import load_universe_panel, universe_symbols

    priced = _priced(unpriced_db)
    assert len(priced) == 33
    assert universe_symbols(unpriced_db, "all") == priced
    panel = load_universe_panel(unpriced_db, "all")
    assert list(panel.symbols) == priced
    assert np.isfinite(panel["close"]).any(axis=0).all()  # no empty price column
    assert panel.coverage.unpriced == 4 and panel.coverage.to_dict()["unpriced"] == 4
    assert "left out 4 symbols with no price" in panel.coverage.describe()
    assert unpriced_note(4).startswith("universe all left out 4 symbols with no price in the span")
    assert unpriced_note(0) is None
    # a named tier or a list is not touched: it never held them
    tier = load_universe_panel(unpriced_db, "tier1")
    assert tier.coverage.unpriced == 0 and len(tier.symbols) == 15


def test_universe_all_left_out_count_reaches_the_study_record_and_the_backtest_output(unpriced_db, tmp_path):
    """The study's record (its coverage) and the settings it prints carry the count; ``backtest --universe all``
    runs on the priced symbols and says how many it left out, in its JSON (coverage.unpriced) and its terminal
    line. Before: the study ran on 37 symbols, 4 of them without a price, and nothing said so."""
    from optimizer import api
    from optimizer.study.data_settings import data_settings_rows, study_settings
    from optimizer.study.records import read_study

    spec = {"study": {"name": "all12"}, "data": {"universe": "all"},
            "space": {"variant": "D", "buy_threshold": {"type": "int", "low": 60, "high": 70, "step": 10},
                      "exit": "fixed_10d"},
            "cv": {"n_splits": 2}, "objective": {"name": "hit_rate", "min_trades": 1},
            "sampler": {"name": "grid"}, "run": {"n_trials": 2}}
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = api.run_study(spec, unpriced_db, url)
    rec = read_study(run.study)
    assert rec.symbols == 33 and rec.coverage["unpriced"] == 4
    rows = dict(data_settings_rows(study_settings(rec)))
    assert "33 symbols (universe all left out 4 symbols with no price" in rows["data"]

    res = ok(cli("backtest", "--db", unpriced_db, "--universe", "all", "--variant", "D", "--no-save",
                 "--format", "json", "--out", tmp_path / "out"))
    doc = json.loads(res.stdout)
    assert doc["symbols"] == 33 and doc["coverage"]["unpriced"] == 4
    res = ok(cli("backtest", "--db", unpriced_db, "--universe", "all", "--variant", "D", "--no-save",
                 "--out", tmp_path / "out"))
    assert "universe all (universe all left out 4 symbols with no price" in " ".join(res.stdout.split())


# ------------------------------------------------------------------------------------ 3. a table's HTML file name


def test_a_tables_html_file_is_named_by_the_canonical_symbols_whatever_their_spelling(unpriced_db, tmp_path):
    """`table --tickers` named its HTML file from the raw text: `zzc/w,spy` -> `..._zzc_w_spy-<hash>.html`,
    `ZZC-W,SPY` -> another file, `ZZC.W,SPY` a third, the same table three times. Now the canonical symbols (the
    ones the table shows) name it: every spelling writes `<date>_scan_ZZC.W_SPY.html` under `<out>/tables`, and a
    path-like ticker is refused before anything is written."""
    from _cli_helpers import one_line_error

    out = tmp_path / "out"
    names = set()
    for spelling in ("zzc/w,spy", "ZZC-W,SPY", "ZZC.W, spy", "zzc.w;Spy", "ZZC W,SPY,spy"):
        res = ok(cli("table", "--db", unpriced_db, "--tickers", spelling, "--date", "2024-03-01", "--out", out))
        names.add(res.stdout.strip().splitlines()[-1])
    assert names == {f"html: {out / 'tables' / '2024-03-01_scan_ZZC.W_SPY.html'}"}
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["out/tables/2024-03-01_scan_ZZC.W_SPY.html"]
    one_line_error(cli("table", "--db", unpriced_db, "--tickers", "../../x", "--out", out), "ticker")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == written


# ---------------------------------------------------------------- 2. FINRA volumes across a split the store lacks

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _frame_con(frame):
    """An in-memory DuckDB holding ``frame`` (daily_metrics' columns symbol, date, open, close, volume,
    total_volume) as the relation ``dm``."""
    import duckdb

    con = duckdb.connect()
    con.register("dm", frame)
    return con


def _series(n=80, step_at=None, ratio=1.0, seed=3, noise=0.17):
    """One symbol's n sessions from 2024-01-02: a random-walk close, consolidated volume around 10M, FINRA total
    volume 0.35 of it with a log sd of ``noise`` (0.17: the day-to-day log sd of FINRA's share between the two real
    FINRA days of 2025, 123 symbols); before row ``step_at`` the FINRA volume is divided by ``ratio`` (raw shares
    of a ``ratio``-for-1 split the store does not record)."""
    import numpy as np
    import pandas as pd

    from optimizer.data.calendar import session_days

    rng = np.random.default_rng(seed)
    days = pd.to_datetime(session_days(pd.Timestamp("2024-01-02").date(), pd.Timestamp("2024-12-31").date())[:n])
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    vol = np.round(1e7 * np.exp(rng.normal(0, 0.3, n)))
    fin = vol * 0.35 * np.exp(rng.normal(0, noise, n))
    if step_at is not None:
        fin[:step_at] /= ratio
    return pd.DataFrame({"symbol": "XYZ", "date": days, "open": close, "close": close, "volume": vol,
                         "total_volume": np.round(fin)})


@pytest.mark.parametrize("ratio", [2.0, 4.0, 10.0, 0.1])
def test_a_planted_unrecorded_split_in_the_finra_volumes_is_found_with_its_date_and_ratio(ratio):
    """Vendor-adjusted prices show no split; FINRA's raw volumes before it are 1/ratio of the prices' basis: FINRA's
    share of the volume steps by the ratio at the ex-date (a reverse 1-for-10 split: by 0.1), and only there."""
    from optimizer.data.splitcheck import suspect_splits

    f = _series(step_at=40, ratio=ratio)
    got = suspect_splits(_frame_con(f), source="dm")
    assert [(s.symbol, s.date, s.ratio, s.kind, s.recorded) for s in got] == [
        ("XYZ", f["date"][40].date(), ratio, "finra", False)], got
    assert abs(got[0].step / ratio - 1) < 0.2
    assert suspect_splits(_frame_con(_series()), source="dm") == []  # the same noise, no split: nothing


def test_unadjusted_prices_are_a_split_and_a_crash_is_not():
    """Prices not adjusted for a 4-for-1 split: the close AND the open quarter overnight while the volume
    quadruples and stays: found (kind prices). A -50 % overnight crash whose volume spikes for a day and returns,
    and a -20 % day: nothing. The FINRA volumes move with the raw volume in both (no FINRA step)."""
    from optimizer.data.splitcheck import suspect_split_lines, suspect_splits

    f = _series(n=60)
    split = f.copy()
    split.loc[30:, ["open", "close"]] /= 4
    split.loc[30:, ["volume", "total_volume"]] *= 4
    got = suspect_splits(_frame_con(split), source="dm")
    assert [(s.date, s.ratio, s.kind) for s in got] == [(f["date"][30].date(), 4.0, "prices")]
    (line,) = suspect_split_lines(got)
    assert line.startswith(f"splits: XYZ: {f['date'][30].date()} (a 4-for-1 split?)") and "accumopt ingest splits" in line
    for drop in (0.5, 0.8):
        crash = f.copy()
        crash.loc[30:, ["open", "close"]] *= drop
        crash.loc[30, ["volume", "total_volume"]] *= 5  # the day of the news
        assert suspect_splits(_frame_con(crash), source="dm") == [], drop


def _real_prices():
    import pandas as pd

    from _ingest_helpers import need

    p = pd.concat([pd.read_csv(need(REAL / "prices_daily.csv.gz")), pd.read_csv(need(REAL / "prices_daily_extra.csv.gz"))])
    p["date"] = pd.to_datetime(p["date"])
    return p


def test_the_real_prices_show_no_split_and_planted_finra_splits_on_them_are_found():
    """The 128 real price series (Yahoo, split- and dividend-adjusted, 2022-2025: NVDA's 10:1 of 2024-06-10 and
    AVGO's of 2024-07-15 adjusted away; META -26 % on 2022-02-03, NFLX -35 % on 2022-04-20, PLTR +31 % ...) with a
    FINRA layer at twice the real noise (log sd 0.35; real FINRA history is not here: its 2025 days overlap the
    prices on 2 sessions only): no suspect split in 126,378 rows. Raw (unadjusted) FINRA volumes before the two
    real splits: exactly those two, 10-for-1, on their ex-dates. NVDA's prices un-adjusted before its split: the
    prices are named."""
    import numpy as np

    from optimizer.data.splitcheck import suspect_splits

    p = _real_prices()
    rng = np.random.default_rng(12)
    p["total_volume"] = np.round(p["volume"] * 0.35 * np.exp(rng.normal(0, 0.35, len(p))))
    assert suspect_splits(_frame_con(p), source="dm") == []
    raw = p.copy()
    for sym, ex in (("NVDA", "2024-06-10"), ("AVGO", "2024-07-15")):
        before = (raw["symbol"] == sym) & (raw["date"] < ex)
        raw.loc[before, "total_volume"] = np.round(raw.loc[before, "total_volume"] / 10)
    got = suspect_splits(_frame_con(raw), source="dm")
    assert [(s.symbol, str(s.date), s.ratio, s.kind) for s in got] == [
        ("AVGO", "2024-07-15", 10.0, "finra"), ("NVDA", "2024-06-10", 10.0, "finra")]
    unadj = p.copy()
    before = (unadj["symbol"] == "NVDA") & (unadj["date"] < "2024-06-10")
    unadj.loc[before, ["open", "high", "low", "close"]] *= 10
    unadj.loc[before, ["volume", "total_volume"]] = np.round(unadj.loc[before, ["volume", "total_volume"]] / 10)
    got = suspect_splits(_frame_con(unadj), source="dm")
    assert [(s.symbol, str(s.date), s.ratio, s.kind) for s in got] == [("NVDA", "2024-06-10", 10.0, "prices")]


@pytest.fixture(scope="module")
def split_db(synth_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The planted synthetic store with NVDA's FINRA volumes before its 120th session divided by 4, as FINRA's raw
    shares before a 4-for-1 split the store does not record; metrics rebuilt. Returns (db, the ex-date)."""
    db = tmp_path_factory.mktemp("split") / "store.duckdb"
    shutil.copy(synth_db, db)
    con = connect(db)
    try:
        ex = str(con.execute("SELECT DISTINCT date FROM finra_short_daily ORDER BY 1 LIMIT 1 OFFSET 120").fetchone()[0])
        con.execute("UPDATE finra_short_rows SET short_volume = round(short_volume / 4), total_volume = "
                    "round(total_volume / 4), short_exempt_volume = round(short_exempt_volume / 4) "
                    "WHERE symbol = 'NVDA' AND date < CAST(? AS DATE)", [ex])
        build_daily_metrics(con)
    finally:
        con.close()
    return db, ex


def test_data_info_and_the_panel_commands_warn_of_an_unrecorded_split_once_until_it_is_ingested(split_db, tmp_path):
    """Before: nothing said that NVDA's volume features compare two share bases. Now `data info` names NVDA, the
    ex-date and the likely 4-for-1 ratio (JSON: suspect_splits), `backtest` and `sandbox` warn once (one line for
    NVDA), the panel's coverage (a study's record) holds it; after `ingest splits` + `metrics build` the warning is gone. The planted store
    itself (33 symbols x 374 sessions) has none."""
    from optimizer.study.data import load_universe_panel

    db, ex = split_db
    want = f"splits: NVDA: {ex} (x"
    res = ok(cli("data", "info", "--db", db))
    lines = [ln for ln in res.stderr.splitlines() if "splits:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {want}") and "a 4-for-1 split?" in lines[0], res.stderr
    doc = json.loads(ok(cli("data", "info", "--db", db, "--format", "json")).stdout)
    assert [(s["symbol"], s["date"], s["ratio"], s["kind"]) for s in doc["suspect_splits"]] == [
        ("NVDA", ex, 4.0, "finra")]
    res = ok(cli("backtest", "--db", db, "--universe", "tier3", "--variant", "D", "--no-save", "--out", tmp_path))
    assert sum(want in ln for ln in res.stderr.splitlines()) == 1, res.stderr
    res = ok(cli("backtest", "--db", db, "--universe", "tier1", "--variant", "D", "--no-save", "--out", tmp_path))
    assert "splits:" not in res.stderr  # NVDA is not in it
    res = ok(cli("sandbox", "NVDA", "--db", db, "--out", tmp_path / "sb", "--no-png"))
    assert sum(want in ln for ln in res.stderr.splitlines()) == 1, res.stderr
    assert load_universe_panel(db, "tier3").coverage.to_dict()["suspect_splits"][0]["date"] == ex
    from optimizer import api
    from optimizer.study.records import read_study

    spec = {"study": {"name": "split12"}, "data": {"universe": "tier3"}, "space": {"variant": "D", "buy_threshold": 60,
            "exit": "fixed_10d"}, "cv": {"n_splits": 2}, "objective": {"name": "hit_rate", "min_trades": 1},
            "sampler": {"name": "grid"}, "run": {"n_trials": 1}}
    with pytest.warns(UserWarning, match=f"splits: NVDA: {ex}"):  # the API says what the command line prints
        run = api.run_study(spec, db, f"sqlite:///{tmp_path / 's.db'}")
    assert sum(w.startswith(want) for w in run.warnings) == 1, run.warnings
    assert [x["symbol"] for x in read_study(run.study).coverage["suspect_splits"]] == ["NVDA"]

    splits = tmp_path / "splits.csv"
    splits.write_text(f"symbol,date,ratio\nNVDA,{ex},4\n", encoding="utf-8")
    ok(cli("ingest", "splits", splits, "--db", db))
    ok(cli("metrics", "build", "--db", db))
    assert "splits:" not in ok(cli("data", "info", "--db", db)).stderr
    assert load_universe_panel(db, "tier3").coverage.suspect_splits == ()
