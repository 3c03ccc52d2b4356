"""The evening signal sheet (issue 17): decisions for the next open, their context, storage, files, the commands.

Oracles: hand-written candle tables (what the sheet must say on D), the backtest's own trades (for every session D
of a backtest span the sheet's ENTER / EXIT / HOLD rows equal the backtest's entries and exits at D+1's open and its
open positions), a store truncated at D and rebuilt (the same sheet: nothing after D is read), and the backtest's
signal events (the same context for the same signal). Markets: the shared planted synthetic store (``synth_db``)
and real prices (../shared/data/real/prices_daily.csv.gz) with a synthetic flow layer.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.data.calendar import nyse_sessions
from optimizer.data.metrics import build_daily_metrics
from optimizer.data.store import connect, insert_finra_short, stored_in
from optimizer.data.synth import SynthConfig, synth_to_db
from optimizer.data.universe import resolve_universe
from optimizer.engine.context import compute_context
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.outcomes import signal_events
from optimizer.engine.panel import Panel, load_panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.engine.sheet import EXIT, ENTER, HOLD, NONE, SHEET_COLUMNS, next_open, quality_buckets
from optimizer.engine.simulate import EXIT_REASONS, Span
from optimizer.errors import DataError, ParameterError
from optimizer.evening import classify_files, run_evening
from optimizer.signals import params_hash, signal_sheet, write_signal_sheet
from optimizer.study.paramsfile import ParamsRecord, load_params_record

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
NAN = float("nan")
_AT_OPEN = [r for r in EXIT_REASONS if r not in ("stop_loss", "take_profit", "open_at_end")]

# Configurations covering every exit family, caps, stops and a regime filter.
CONFIGS = {
    "first_dist": ({"variant": "B", "buy_threshold": 65, "sell_threshold": 35, "exit": "first_dist"}, "ALL"),
    "fixed_stops": ({"variant": "D", "buy_threshold": 65, "sell_threshold": 30, "exit": "fixed_10d",
                     "stop_loss": 0.03, "take_profit": 0.06}, "ALL"),
    "hybrid_capped": ({"variant": "C", "z_window": 30, "buy_threshold": 62, "sell_threshold": 35,
                       "exit": "hybrid_15d", "max_positions": 4, "max_per_sector": 1}, "ALL"),
    "decay_regime": ({"variant": "blended", "buy_threshold": 63, "sell_threshold": 35, "exit": "score_decay",
                      "time_stop": 12}, "TRANSITIONAL"),
}


# ------------------------------------------------------------------------------------------------ helpers


def _panel(db: Path, universe: str = "tier1+3") -> Panel:
    con = connect(db, read_only=True)
    try:
        avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics").fetchall()]
        return load_panel(con, resolve_universe(universe, avail))
    finally:
        con.close()


def _backtest_view(panel: Panel, trades, d: int) -> dict[str, set]:
    """What the BACKTEST says about the open of d + 1: entries there, exits there by a rule due at the open, and the
    positions held at the close of d that do not leave at that open."""
    sy = np.array(panel.symbols, dtype=object)
    reason = np.array(EXIT_REASONS, dtype=object)[trades.exit_reason]
    enter = trades.entry_idx == d + 1
    leave = (trades.exit_idx == d + 1) & np.isin(reason, _AT_OPEN)
    held = (trades.entry_idx <= d) & (trades.exit_idx > d) & ~leave  # d <= T - 2: open-at-end trades end at T - 1
    return {
        ENTER: {(sy[s], int(t), round(float(sc), 9)) for s, t, sc in
                zip(trades.symbol[enter], trades.signal_idx[enter], trades.score[enter])},
        EXIT: {(sy[s], int(e), r) for s, e, r in zip(trades.symbol[leave], trades.entry_idx[leave], reason[leave])},
        HOLD: {(sy[s], int(e), round(float(p), 9)) for s, e, p in
               zip(trades.symbol[held], trades.entry_idx[held], trades.entry_price[held])},
    }


def _date_index(panel: Panel) -> dict[pd.Timestamp, int]:
    return {pd.Timestamp(x): i for i, x in enumerate(panel.dates)}


def _sheet_view(panel: Panel, rows: pd.DataFrame, d: int, idx: dict[pd.Timestamp, int] | None = None) -> dict[str, set]:
    """The sheet's rows in ``_backtest_view``'s terms; ``idx``: ``_date_index(panel)`` when the caller has it (a loop
    over every session builds it once)."""
    idx = _date_index(panel) if idx is None else idx
    out: dict[str, set] = {ENTER: set(), EXIT: set(), HOLD: set()}
    # the columns read, row by row (DataFrame.itertuples extracts every column of the sheet on each call)
    cols = ("decision", "symbol", "signal_date", "score", "entry_date", "exit_reason", "entry_price")
    for dec, sym, sig, score, entry, reason, price in zip(*(rows[c].tolist() for c in cols)):
        if dec == ENTER:
            out[ENTER].add((sym, idx[pd.Timestamp(sig)], round(float(score), 9)))
        elif dec == EXIT:
            out[EXIT].add((sym, idx[pd.Timestamp(entry)], reason))
        elif dec == HOLD:
            out[HOLD].add((sym, idx[pd.Timestamp(entry)], round(float(price), 9)))
    return out


def _check_every_session(panel: Panel, params: dict, regime: str, start: int) -> dict[str, int]:
    """The sheet of every session D in [start, T-2] against one backtest over [start, T); returns the row counts."""
    cfg = Config.from_params(params)
    ev = Evaluator(panel)
    disp = ev.display(cfg)
    mask = regime_entry_mask(panel, regime)
    T = panel.shape[0]
    assert np.isfinite(panel["open"][start:]).all(), "this oracle needs an open on every session"
    trades = ev.run(cfg, Span(start, T, T), entry_ok=mask).trades
    counts = {ENTER: 0, EXIT: 0, HOLD: 0}
    idx = _date_index(panel)
    for d in range(start, T - 1):
        rows = next_open(panel.slice(0, d + 1), disp[:d + 1], cfg, start, None if mask is None else mask[:d + 1])
        got, want = _sheet_view(panel, rows, d, idx), _backtest_view(panel, trades, d)
        for k in counts:
            assert got[k] == want[k], f"{k} on {panel.dates[d]}: sheet only {got[k] - want[k]}, backtest only {want[k] - got[k]}"
            counts[k] += len(got[k])
        assert (rows["decision"] == NONE).sum() == panel.shape[1] - sum(len(v) for v in got.values())
    return counts


def _entry_sessions(db: Path, params: dict) -> list[str]:
    """Sessions whose close opened at least two trades in the full backtest of ``params`` on ``db``."""
    panel = _panel(db)
    tr = Evaluator(panel).run(Config.from_params(params)).trades
    idx, n = np.unique(tr.signal_idx, return_counts=True)
    return [str(panel.dates[i]) for i in idx[n >= 2]]


def _truncated_store(src: Path, dst: Path, day: str) -> Path:
    """A copy of the store holding only what was known at the close of ``day``: raw rows after it deleted (OTC weeks
    published after it too), daily_metrics rebuilt from the rest."""
    shutil.copy(src, dst)
    con = duckdb.connect(str(dst))
    try:
        for t in ("finra_short_daily", "prices_daily", "lit_flow_daily", "options_daily"):
            con.execute(f"DELETE FROM {stored_in(t)} WHERE date > ?", [pd.Timestamp(day).date()])
        con.execute("DELETE FROM finra_otc_weekly WHERE publication_date > ?", [pd.Timestamp(day).date()])
        build_daily_metrics(con)
    finally:
        con.close()
    return dst


# ------------------------------------------------------------------------------------------------ hand tables


def _hand_panel(opens: dict[str, list[float]], closes: dict[str, list[float]] | None = None,
                sectors: dict[str, str] | None = None, **fields: dict[str, list[float]]) -> Panel:
    """One row per (session, symbol): high / low = max / min(open, close) -/+ 0.5; ``fields`` = other panel fields
    per symbol (e.g. short_buy_sell_ratio, confidence)."""
    n = len(next(iter(opens.values())))
    rows = []
    for s, o in opens.items():
        c = (closes or {}).get(s, o)
        for i in range(n):
            hi = max(o[i], c[i]) + 0.5 if np.isfinite(o[i]) else NAN
            lo = min(o[i], c[i]) - 0.5 if np.isfinite(o[i]) else NAN
            row = {"date": pd.bdate_range("2024-01-02", periods=n)[i], "symbol": s, "open": o[i], "high": hi,
                   "low": lo, "close": c[i]}
            row.update({k: v[s][i] for k, v in fields.items() if s in v})
            rows.append(row)
    return Panel.from_frame(pd.DataFrame(rows), sectors={s: (sectors or {}).get(s) for s in opens})


def _cfg(**kw) -> Config:
    return Config.from_params({"buy_threshold": 70, "sell_threshold": 30, "commission_bps": 0, "slippage_bps": 0,
                               **kw})


def test_hand_table_enter_exit_hold_for_the_next_open():
    #          0    1    2    3    4   (D = row 4)
    opens = {"AAA": [10., 11., 12., 13., 14.],   # signal 1 -> entry open 2; distribution close 4 -> EXIT
             "BBB": [20., 20., 20., 20., 20.],   # flat; signal at D's close -> ENTER
             "CCC": [30., 31., 32., 33., 34.],   # signal 2 -> entry open 3 -> HOLD
             "DDD": [40., 40., 40., 40., 40.]}   # never signals -> NONE
    closes = {"CCC": [30., 31., 32., 33.5, 35.]}
    disp = np.array([[50, 50, 50, 50],
                     [75, 50, 50, 50],
                     [60, 50, 80, 50],
                     [60, 50, 60, 50],
                     [25, 72, 60, 69.9]], dtype=float)
    panel = _hand_panel(opens, closes)
    rows = next_open(panel, disp, _cfg(exit="first_dist", stop_loss=0.1, take_profit=0.25), next_date="2024-01-09")
    r = rows.set_index("symbol")
    assert r["decision"].to_dict() == {"AAA": EXIT, "BBB": ENTER, "CCC": HOLD, "DDD": NONE}
    a, b, c = r.loc["AAA"], r.loc["BBB"], r.loc["CCC"]
    assert a["exit_reason"] == "first_dist" and a["entry_date"] == pd.Timestamp("2024-01-04")
    assert a["entry_price"] == 12.0 and a["days_held"] == 2 and a["unrealised_return"] == pytest.approx(14 / 12 - 1)
    assert b["signal_date"] == pd.Timestamp("2024-01-08") and b["score"] == 72 and pd.isna(b["entry_price"])
    assert c["entry_date"] == pd.Timestamp("2024-01-05") and c["entry_price"] == 33.0 and c["days_held"] == 1
    assert c["unrealised_return"] == pytest.approx(35 / 33 - 1)
    assert c["stop_level"] == pytest.approx(33 * 0.9) and c["take_profit_level"] == pytest.approx(33 * 1.25)
    assert pd.isna(c["scheduled_exit_in"])  # first_dist without a time stop: no schedule


def test_hand_table_schedules_caps_and_a_missing_open():
    opens = {"AAA": [10., 10., 10., 10., 10., 10.], "BBB": [20.] * 6, "CCC": [30.] * 6}
    disp = np.array([[50, 50, 50],
                     [80, 50, 50],    # AAA signals -> entry open 2
                     [50, 50, 50],
                     [50, 50, 50],
                     [50, 50, 50],
                     [50, 75, 71]], dtype=float)  # D = 5: BBB and CCC signal, one slot after AAA leaves
    panel = _hand_panel(opens)
    # fixed 3 sessions: AAA entered at open 2 leaves at open 5 (before D's close): both signals enter
    r = next_open(panel, disp, _cfg(exit="fixed_3d")).set_index("symbol")["decision"].to_dict()
    assert r == {"AAA": NONE, "BBB": ENTER, "CCC": ENTER}
    # fixed 4 sessions: AAA leaves at the next open (EXIT, schedule) and frees its slot: with max_positions=1 the
    # higher score (BBB 75) takes it, CCC does not enter
    rows = next_open(panel, disp, _cfg(exit="fixed_4d", max_positions=1)).set_index("symbol")
    assert rows["decision"].to_dict() == {"AAA": EXIT, "BBB": ENTER, "CCC": NONE}
    assert rows.loc["AAA", "exit_reason"] == "fixed" and rows.loc["AAA", "days_held"] == 3
    # time stop 10: AAA is held with 10 - 3 = 7 sessions left; max_positions=1 keeps both signals out
    rows = next_open(panel, disp, _cfg(exit="first_dist", time_stop=10, max_positions=1)).set_index("symbol")
    assert rows["decision"].to_dict() == {"AAA": HOLD, "BBB": NONE, "CCC": NONE}
    assert rows.loc["AAA", "scheduled_exit_in"] == 7
    # a distribution at D while the next real open is missing: the sheet says EXIT on D, and again on D+1 (the fill
    # waits for the next open that exists), and the backtest fills at the open after the hole
    opens = {"AAA": [10., 10., 10., 10., 11., NAN, 12.]}
    disp = np.array([[50], [80], [50], [50], [20], [NAN], [50]], dtype=float)
    panel = _hand_panel(opens)
    cfg = _cfg(exit="first_dist")
    for d in (4, 5):
        row = next_open(panel.slice(0, d + 1), disp[:d + 1], cfg).iloc[0]
        assert row["decision"] == EXIT and row["entry_price"] == 10.0
    tr = Evaluator(panel).run(cfg, display=disp).trades
    assert (int(tr.entry_idx[0]), int(tr.exit_idx[0]), float(tr.exit_price[0])) == (2, 6, 12.0)


def test_start_and_regime_mask_gate_entries_only():
    opens = {"AAA": [10.] * 5, "BBB": [20.] * 5}
    disp = np.array([[50, 50], [80, 50], [50, 50], [50, 50], [50, 90]], dtype=float)
    panel = _hand_panel(opens)
    cfg = _cfg(exit="first_dist")
    assert next_open(panel, disp, cfg).set_index("symbol")["decision"].to_dict() == {"AAA": HOLD, "BBB": ENTER}
    # span from row 2: AAA's signal at row 1 is before the span
    assert next_open(panel, disp, cfg, start=2).set_index("symbol")["decision"].to_dict() == {"AAA": NONE,
                                                                                              "BBB": ENTER}
    # a regime filter closed on D blocks the new entry, never the held position
    mask = np.array([True, True, True, True, False])
    assert next_open(panel, disp, cfg, entry_ok=mask).set_index("symbol")["decision"].to_dict() == {"AAA": HOLD,
                                                                                                    "BBB": NONE}
    with pytest.raises(ParameterError, match="start must be"):
        next_open(panel, disp, cfg, start=5)


# ------------------------------------------------------------------------------------------------ sheet == backtest


@pytest.mark.parametrize("name", [n if n in ("first_dist", "fixed_stops") else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CONFIGS)])
def test_sheet_equals_backtest_on_every_session_synthetic(synth_db, name):
    params, regime = CONFIGS[name]
    counts = _check_every_session(_panel(synth_db), params, regime, start=25)
    assert counts[ENTER] >= 20 and counts[EXIT] >= 10 and counts[HOLD] >= 50, counts  # the oracle saw real work


def test_sheet_with_a_span_start_equals_backtest_with_that_start(synth_db, tmp_path):
    """A span start (the file's ``start`` or ``--start``) is where ``backtest`` loads the panel and counts signals
    (z-scores warm up inside the span). The sheet used to load the panel from the store's first session and replay
    from the start, so a trader's ``signals --params p.json`` held positions (entered while the backtest's z-scores
    were still warming up) that ``backtest --params p.json`` of the same file never took."""
    from optimizer.backtest import backtest

    params = dict(CONFIGS["first_dist"][0])
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**params, "start": "2023-03-01"}))
    rec = load_params_record(path)
    assert rec.start == "2023-03-01"
    days = [pd.Timestamp(d).date() for d in nyse_sessions("2023-03-29", "2023-05-12")]
    for d, d1 in list(zip(days[:-1], days[1:]))[::8]:
        run = backtest(params, synth_db, start=rec.start, end=str(d1), save=False)
        want = _backtest_view(run.panel, run.result.trades, len(run.panel.dates) - 2)
        for sheet in (signal_sheet(rec, synth_db, date=str(d)),  # the file's start
                      signal_sheet(ParamsRecord(params), synth_db, date=str(d), start="2023-03-01")):  # --start
            assert sheet.span_start == pd.Timestamp("2023-03-01").date()
            assert _sheet_view(run.panel, sheet.rows, len(run.panel.dates) - 2) == want, d
            held = sheet.rows["decision"].isin([HOLD, EXIT])
            assert (pd.to_datetime(sheet.rows.loc[held, "entry_date"]) >= pd.Timestamp("2023-03-01")).all()
        score = dict(zip(run.panel.symbols, run.result.display[len(run.panel.dates) - 2]))
        assert np.allclose(sheet.rows["score"].to_numpy(dtype=float), [score[x] for x in sheet.rows["symbol"]],
                           equal_nan=True)
    # a span too short to warm up the z-scores is refused, not a sheet without a score
    with pytest.raises(DataError, match=r"no symbol has a score on 2023-03-10: the span 2023-03-01..2023-03-10 holds "
                                        r"8 session\(s\) and the z-scores need 20"):
        signal_sheet(ParamsRecord(params), synth_db, date="2023-03-10", start="2023-03-01")


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> Path:
    """Real adjusted prices (2023) of the tier1+3 symbols in the file, with a synthetic flow layer (oracle-placed
    episodes so that signals and trades happen)."""
    f = REAL / "prices_daily.csv.gz"
    if not f.exists():
        pytest.skip(f"real prices not available at {f}")
    root = tmp_path_factory.mktemp("real_sheet")
    synth_to_db(SynthConfig(seed=5, start="2023-01-03", end="2023-12-29", universe="tier1+3", effect=1.0,
                            prices_file=str(f)), root / "raw", root / "store.duckdb")
    return root / "store.duckdb"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["first_dist", "hybrid_capped"])
def test_sheet_equals_backtest_on_every_session_real_prices(real_db, name):
    params, regime = CONFIGS[name]
    counts = _check_every_session(_panel(real_db), params, regime, start=30)
    assert counts[ENTER] >= 10 and counts[EXIT] >= 5, counts


# ------------------------------------------------------------------------------------------------ no lookahead


@pytest.mark.parametrize("day", ["2023-11-16", "2024-03-07"])
def test_store_truncated_at_d_gives_the_same_sheet(synth_db, tmp_path, day):
    rec = ParamsRecord(dict(CONFIGS["fixed_stops"][0]))
    full = signal_sheet(rec, synth_db, date=day)
    cut = signal_sheet(rec, _truncated_store(synth_db, tmp_path / "cut.duckdb", day))
    assert cut.date == full.date == pd.Timestamp(day).date()
    assert full.counts[HOLD] + full.counts[ENTER] + full.counts[EXIT] > 0
    pd.testing.assert_frame_equal(cut.rows, full.rows)


def test_real_store_truncated_at_d_gives_the_same_sheet(real_db, tmp_path):
    rec = ParamsRecord(dict(CONFIGS["first_dist"][0]))
    day = "2023-10-18"
    full = signal_sheet(rec, real_db, date=day)
    cut = signal_sheet(rec, _truncated_store(real_db, tmp_path / "cut.duckdb", day))
    assert full.counts[HOLD] + full.counts[ENTER] > 0
    pd.testing.assert_frame_equal(cut.rows, full.rows)


# ------------------------------------------------------------------------------------------------ context


# a regime-conditional buy threshold below the pooled one: RISK_ON entries at scores in [60, 70) (their quality was
# left empty on the sheet, while the backtest's signal events grade them LOW)
_RISK_ON_60 = {"variant": "B", "buy_threshold": 70, "sell_threshold": 35, "buy_threshold_risk_on": 60,
               "exit": "first_dist"}


@pytest.mark.parametrize("params", [CONFIGS["first_dist"][0], _RISK_ON_60], ids=["pooled", "regime_threshold"])
def test_enter_rows_carry_the_backtest_events_context(synth_db, params):
    panel = _panel(synth_db)
    cfg = Config.from_params(params)
    res = Evaluator(panel).run(cfg)
    events = signal_events(res, panel, compute_context(panel)).set_index(["date", "symbol"])
    rec = ParamsRecord(dict(params))
    checked = below = 0
    sig = sorted(set(res.trades.signal_idx.tolist()))
    if "buy_threshold_risk_on" in params:  # sessions whose close opened a trade below the pooled threshold
        low = res.trades.signal_idx[res.trades.score < params["buy_threshold"]]
        sig = sorted(set(low.tolist()))
    for k in (len(sig) // 4, len(sig) // 2, 3 * len(sig) // 4):  # three sessions whose close opened trades
        day = str(panel.dates[sig[k]])
        sheet = signal_sheet(rec, synth_db, date=day)
        for r in sheet.of(ENTER).itertuples(index=False):
            e = events.loc[(pd.Timestamp(day), r.symbol)]
            assert r.signal_quality == e["signal_quality"] and r.trend == e["trend_state"]
            assert bool(r.parent_etf_aligned) == bool(e["parent_etf_aligned"])
            for mine, theirs in (("options_boost", "options_boost"), ("lit_z", "lit_z"), ("confidence", "confidence"),
                                 ("put_call", "opt_put_call_ratio"), ("rsi_14", "rsi_14"), ("score", "score_value")):
                assert getattr(r, mine) == pytest.approx(e[theirs], nan_ok=True), mine
            assert r.regime == e["regime"] and r.learned_regime == e["learned_regime"]
            assert 0 < r.data_coverage <= 1
            checked += 1
            below += r.score < params["buy_threshold"]
        none = sheet.rows[sheet.rows["decision"] == NONE]
        assert none["signal_quality"].isna().all() and none["trend"].isna().all()  # context on actionable rows only
    assert checked >= 3 and (below >= 3 if "buy_threshold_risk_on" in params else below == 0)


def test_a_regime_buy_threshold_is_the_one_the_sheet_shows(synth_db, tmp_path, capsys):
    """With a regime-conditional buy threshold the sheet's chart drew the pooled buy line (an ENTER at 62 under a
    line at 70) and the header named only the pooled threshold: the chart shows each session's regime's threshold,
    the header names the regime thresholds."""
    import optimizer.cli.signals as cli_signals

    panel = _panel(synth_db)
    cfg = Config.from_params(_RISK_ON_60)
    res = Evaluator(panel).run(cfg)
    k = int(np.flatnonzero(res.trades.score < 70)[0])
    day = str(panel.dates[res.trades.signal_idx[k]])[:10]
    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    sheet = signal_sheet(ParamsRecord(dict(_RISK_ON_60)), db, date=day)
    low = sheet.of(ENTER)
    low = low[low["score"] < 70]
    assert len(low) >= 1
    page = write_signal_sheet(sheet, db, tmp_path / "out")["html"].read_text(encoding="utf-8")
    assert '"buy (by regime)"' in page and '"buy 70"' not in page
    cli_signals._render(sheet, False)
    assert "buy 70 (RISK_ON 60) / sell 35" in capsys.readouterr().out


def test_the_header_states_the_market_regime_on_a_night_without_positions(synth_db, capsys):
    """The header's "market regime at D" came from the context of the ENTER / EXIT / HOLD rows: a night without
    one (e.g. a RISK_ON filter on a RISK_OFF day, when the regime is the reason) printed no regime at all."""
    import optimizer.cli.signals as cli_signals
    from optimizer.engine._regime import REGIME_LABELS
    from optimizer.engine.context import decode

    rec = ParamsRecord({"variant": "B", "buy_threshold": 99.99, "sell_threshold": 0.01})  # no signal
    seen = set()
    for day in ("2023-06-01", "2023-10-26", "2024-02-13"):
        sheet = signal_sheet(rec, synth_db, date=day, universe="tier1")
        assert sheet.counts[NONE] == len(sheet.rows)
        want = decode(compute_context(sheet.panel)["regime"][-1:], REGIME_LABELS)[0]
        cli_signals._render(sheet, False)
        assert capsys.readouterr().out.splitlines()[3] == f"regime filter ALL, market regime on {day} {want}"
        seen.add(want)
    assert len(seen) >= 2, seen


def test_risk_flags_by_hand():
    # EEE: a 5% gap down at row 22, then extended (RSI-14 = 100 after a steady climb); its parent ETF XLK shows
    # distribution at D. FFF trends down without options (FALLING) and misses its FINRA ratio on the last 5 of 20
    # sessions (coverage 0.75: THIN_DATA). XLK itself: no parent, no flag.
    n = 40
    up = [50.0 + i for i in range(n)]
    up_open = list(up)
    up_open[22] = up[21] * 0.95
    down = [100.0 - i for i in range(n)]
    flat = [20.0] * n
    ratio = {"EEE": [1.0] * n, "FFF": [1.0] * (n - 5) + [NAN] * 5, "XLK": [1.0] * n}
    conf = {"EEE": [1.0] * n, "FFF": [1.0] * n, "XLK": [0.9] * n}
    panel = _hand_panel({"EEE": up_open, "FFF": down, "XLK": flat}, {"EEE": up, "FFF": down, "XLK": flat},
                        sectors={"EEE": "XLK"}, short_buy_sell_ratio=ratio, confidence=conf)
    disp = np.full((n, 3), 50.0)
    disp[-1] = [80, 80, 25]
    from optimizer.engine.sheet import sheet_context

    ctx = sheet_context(Evaluator(panel), _cfg(exit="first_dist"), disp, compute_context(panel), ["EEE", "FFF", "XLK"])
    assert ctx["flags"].to_dict() == {"EEE": "SECTOR_WEAK,GAP_RISK,EXTENDED", "FFF": "FALLING,THIN_DATA", "XLK": ""}
    assert ctx.loc["FFF", "data_coverage"] == 0.75 and ctx.loc["EEE", "data_coverage"] == 1.0
    assert ctx.loc["FFF", "last_data_date"] == pd.Timestamp(panel.dates[n - 6])
    assert ctx.loc["FFF", "trend"] == "DOWN" and ctx.loc["EEE", "trend"] == "UP"
    assert ctx.loc["EEE", "parent_etf_available"] and not ctx.loc["EEE", "parent_etf_aligned"]
    assert pd.isna(ctx.loc["XLK", "signal_quality"])  # 25 < buy: not a signal, not graded


def test_quality_buckets_by_hand():
    ev = pd.DataFrame({
        "signal_quality": ["HIGH", "HIGH", "LOW", "LOW", "LOW", "MEDIUM"],
        "net_return": [0.05, -0.02, 0.01, 0.02, -0.01, 0.3],
        "excess_return": [0.04, -0.03, NAN, 0.01, -0.02, 0.2],
        "open_at_end": [False, False, False, False, False, True],
    })
    b = quality_buckets(ev).set_index("signal_quality")
    assert b.loc["HIGH", "oos_trades"] == 2 and b.loc["HIGH", "oos_hit_rate"] == 0.5
    assert b.loc["HIGH", "oos_avg_excess_return"] == pytest.approx(0.005)
    assert b.loc["LOW", "oos_trades"] == 3 and b.loc["LOW", "oos_hit_rate"] == pytest.approx(2 / 3)
    assert b.loc["LOW", "oos_avg_excess_return"] == pytest.approx(-0.005)  # NaN excess left out
    assert "MEDIUM" not in b.index  # its only event is open at the end
    assert b.loc["ALL", "oos_trades"] == 5
    assert quality_buckets(pd.DataFrame()).empty


def test_walkforward_buckets_reach_enter_rows(synth_db, tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    events = pd.DataFrame({"signal_quality": ["LOW", "LOW", "MEDIUM", "HIGH"], "net_return": [0.1, -0.1, 0.2, 0.3],
                           "excess_return": [0.05, -0.15, 0.1, 0.2], "open_at_end": [False] * 4})
    (wf / "result.json").write_text("{}")
    for n in ("walk_forward_summary", "parameter_stability"):
        (wf / f"{n}.csv").write_text("a\n1\n")
    pd.DataFrame({"x": [1]}).to_parquet(wf / "oos_trades.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(wf / "oos_equity.parquet")
    events.to_parquet(wf / "oos_events.parquet")
    params = CONFIGS["first_dist"][0]
    day = _entry_sessions(synth_db, params)[-1]
    sheet = signal_sheet(ParamsRecord(dict(params)), synth_db, date=day, walkforward=wf)
    enter = sheet.of(ENTER)
    assert len(enter) >= 2
    want = {"LOW": (2, 0.5, -0.05), "MEDIUM": (1, 1.0, 0.1), "HIGH": (1, 1.0, 0.2)}
    for r in enter.itertuples(index=False):
        assert (r.oos_trades, r.oos_hit_rate, pytest.approx(r.oos_avg_excess_return)) == want[r.signal_quality]
    assert sheet.rows.loc[sheet.rows["decision"] != ENTER, "oos_trades"].isna().all()


def test_walkforward_buckets_of_a_run_on_other_settings_are_flagged(synth_db, tmp_path):
    """The OOS bucket figures describe the walk-forward run's trades: a run on another universe, regime filter or
    min_periods than the sheet's counted other trades. It was silent; the sheet now lists the differing settings
    (``walkforward_mismatch``, in ``meta()``) and ``walkforward_warning`` says so (``signals`` / ``evening`` print
    it). A run on the sheet's settings, and a run saved without settings, are not flagged."""
    from optimizer.signals import walkforward_warning

    def run(settings):
        wf = tmp_path / f"wf{len(list(tmp_path.iterdir()))}"
        wf.mkdir()
        (wf / "result.json").write_text(json.dumps({"settings": settings} if settings is not None else {}))
        for n in ("walk_forward_summary", "parameter_stability"):
            (wf / f"{n}.csv").write_text("a\n1\n")
        pd.DataFrame({"x": [1]}).to_parquet(wf / "oos_trades.parquet")
        pd.DataFrame({"x": [1]}).to_parquet(wf / "oos_equity.parquet")
        return wf

    params = CONFIGS["first_dist"][0]
    day = _entry_sessions(synth_db, params)[-1]
    other = signal_sheet(ParamsRecord(dict(params)), synth_db, date=day,
                         walkforward=run({"universe": "tier1", "regime": "RISK_ON", "min_periods": 8}))
    assert other.walkforward_mismatch == ("universe 'tier1' -> 'tier1+3'", "regime 'RISK_ON' -> 'ALL'",
                                          "min_periods 8 -> None")
    assert other.meta()["walkforward_mismatch"] == list(other.walkforward_mismatch)
    w = walkforward_warning(other)
    assert w is not None and w.startswith(f"the out-of-sample figures come from the walk-forward run {other.walkforward}")
    assert "universe 'tier1' -> 'tier1+3'; regime 'RISK_ON' -> 'ALL'; min_periods 8 -> None" in w
    # the same settings (the universe however spelt), or none stored: nothing to say
    for settings in ({"universe": "TIER1+3", "regime": "ALL", "min_periods": None}, None):
        same = signal_sheet(ParamsRecord(dict(params)), synth_db, date=day, walkforward=run(settings))
        assert same.walkforward_mismatch == () and walkforward_warning(same) is None


# ------------------------------------------------------------------------------------------------ params file


def test_params_record_formats(tmp_path):
    def rec(doc) -> ParamsRecord:
        p = tmp_path / "p.json"
        p.write_text(json.dumps(doc))
        return load_params_record(p)

    flat = rec({"variant": "C", "buy_threshold": 66})
    assert flat.params == {"variant": "C", "buy_threshold": 66} and flat.universe is None and flat.regime is None
    best = rec({"study": "s", "number": 3, "value": 0.1, "params": {"exit": "fixed_10d"}, "metrics": {"x": 1},
                "costs": {"commission_bps": 2.0, "slippage_bps": 7.0}})
    cfg = best.config()
    assert cfg.costs.commission_bps == 2.0 and cfg.costs.slippage_bps == 7.0 and cfg.exit.hold_days == 10
    rich = rec({"params": {"weights": "balanced", "use_stop_loss": False, "stop_loss": 0.05}, "universe": ["SPY", "QQQ"],
                "span": ["2023-06-01", "2024-01-31"], "regime_filter": "RISK_ON"})
    assert rich.universe == ("SPY", "QQQ") and rich.start == "2023-06-01" and rich.regime == "RISK_ON"
    assert rich.config().exit.stop_loss is None and rich.config().score.w_short > 0  # switches and presets applied
    nested = rec({"config": {"params": {"variant": "D"}, "span_start": "2023-02-01", "universe": "tier1"}})
    assert nested.params == {"variant": "D"} and nested.start == "2023-02-01" and nested.universe == "tier1"
    for bad, msg in (([1, 2], "must hold a JSON object"), ({"regime": "SUNNY"}, "regime must be one of"),
                     ({"params": {"x": 1}, "costs": 5}, "costs must be an object"),
                     ({"span": 7}, "span must be")):
        with pytest.raises(ParameterError, match=msg):
            rec(bad)
    with pytest.raises(ParameterError, match="unknown parameter"):
        rec({"bogus": 1}).config()
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(ParameterError, match="broken.json: cannot read"):
        load_params_record(tmp_path / "broken.json")


def test_params_hash_identifies_what_decides_the_rows():
    cfg = Config.from_params({"variant": "B"})
    h = params_hash(cfg, "tier1+3", "2023-01-03", "ALL")
    assert h == params_hash(Config.from_params({"variant": "B"}), "tier1+3", "2023-01-03", "ALL")
    assert len({h, params_hash(cfg, "tier1", "2023-01-03", "ALL"), params_hash(cfg, "tier1+3", "2023-02-01", "ALL"),
                params_hash(cfg, "tier1+3", "2023-01-03", "RISK_ON"),
                params_hash(Config.from_params({"variant": "C"}), "tier1+3", "2023-01-03", "ALL")}) == 5


# ------------------------------------------------------------------------------------------------ sheet on the store


def test_sheet_defaults_to_latest_finra_session_and_refuses_bad_dates(synth_db, tmp_path):
    rec = ParamsRecord({"variant": "B"})
    sheet = signal_sheet(rec, synth_db)
    assert str(sheet.date) == "2024-06-28" and str(sheet.next_session) == "2024-07-01"
    assert list(sheet.rows.columns) == list(SHEET_COLUMNS) and len(sheet.rows) == 33
    assert sheet.span_start == pd.Timestamp("2023-01-03").date()
    with pytest.raises(DataError, match="no FINRA data on 2024-06-29; nearest dates: 2024-06-28"):
        signal_sheet(rec, synth_db, date="2024-06-29")
    # FINRA data for a session whose prices are not in yet: the sheet refuses rather than use an older session
    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    con = duckdb.connect(str(db))
    insert_finra_short(con, "SELECT DATE '2024-07-01', symbol, facility, market, short_volume, "
                       "short_exempt_volume, total_volume, source_file FROM finra_short_daily WHERE date = DATE '2024-06-28'")
    con.close()
    with pytest.raises(DataError, match="daily_metrics has no row on 2024-07-01"):
        signal_sheet(rec, db)


def test_write_signal_sheet_table_and_files(synth_db, tmp_path):
    db = tmp_path / "w.duckdb"
    shutil.copy(synth_db, db)
    rec = ParamsRecord(dict(CONFIGS["fixed_stops"][0]))
    sheet = signal_sheet(rec, db, date="2024-02-13")
    paths = write_signal_sheet(sheet, db, tmp_path / "out")
    first = {k: Path(v).read_bytes() for k, v in paths.items() if k != "table"}
    write_signal_sheet(signal_sheet(rec, db, date="2024-02-13"), db, tmp_path / "out")  # again: replaced, same bytes
    assert {k: Path(v).read_bytes() for k, v in paths.items() if k != "table"} == first
    other = signal_sheet(rec, db, date="2024-02-13", universe="tier1")
    write_signal_sheet(other, db, tmp_path / "out")
    con = duckdb.connect(str(db), read_only=True)
    got = con.execute("SELECT params_hash, count(*), count(DISTINCT symbol) FROM signal_sheet GROUP BY 1 ORDER BY 2"
                      ).fetchall()
    stored = con.execute("SELECT * FROM signal_sheet WHERE params_hash = ? ORDER BY symbol", [sheet.params_hash]).df()
    con.close()
    assert sorted(got) == sorted([(sheet.params_hash, 33, 33), (other.params_hash, 15, 15)])
    mine = sheet.rows.sort_values("symbol").reset_index(drop=True)
    assert stored["decision"].tolist() == mine["decision"].tolist()
    assert np.allclose(stored["score"], mine["score"], equal_nan=True)
    assert stored["entry_date"].isna().tolist() == mine["entry_date"].isna().tolist()
    assert json.loads(stored["params"][0]) == sheet.config.to_params() and (stored["exit_strategy"] == "fixed_10d").all()
    doc = json.loads(first["json"])
    assert doc["sheet"]["params_hash"] == sheet.params_hash and len(doc["rows"]) == 33
    page = first["html"].decode()
    n_charts = sheet.counts[ENTER] + sheet.counts[EXIT]
    assert n_charts > 0 and page.count("Plotly.newPlot") == n_charts and f'data-plots-expected="{n_charts}"' in page
    assert paths["html"].parent.name == f"2024-02-13_{sheet.params_hash}"


# ------------------------------------------------------------------------------------------------ commands


def _run(*args, env=None):
    base = {"ACCUMOPT_DB": None, "ACCUMOPT_OUTPUT": None, "POLYGON_API_KEY": None}
    return CliRunner().invoke(main, [str(a) for a in args], env=base | (env or {}), catch_exceptions=True)


def test_signals_command_table_json_csv(synth_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output root (./output) is here: --no-save must not create it
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0], "costs": {"commission_bps": 1, "slippage_bps": 5}}))
    day = _entry_sessions(synth_db, CONFIGS["first_dist"][0])[-1]
    nxt = str(nyse_sessions(pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(day) + pd.Timedelta(days=9))[0].date())
    res = _run("signals", "--params", p, "--db", synth_db, "--date", day, "--no-save", "--all")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"signal sheet {day} close -> orders for the {nxt} open"
    assert max(len(x) for x in lines) <= 80 and "ENTER at the next open" in res.stdout and "every symbol" in res.stdout
    assert not (tmp_path / "output").exists()
    js = _run("signals", "--params", p, "--db", synth_db, "--date", day, "--no-save", "--format", "json")
    doc = json.loads(js.stdout)
    assert doc["sheet"]["date"] == day and len(doc["rows"]) == 33 and doc["outputs"] == {}
    csv = _run("signals", "--params", p, "--db", synth_db, "--date", day, "--no-save", "--format", "csv")
    df = pd.read_csv(io.StringIO(csv.stdout))
    assert list(df.columns) == list(SHEET_COLUMNS) and len(df) == 33
    assert sorted(df.loc[df.decision == ENTER, "symbol"]) == sorted(r["symbol"] for r in doc["rows"]
                                                                    if r["decision"] == ENTER)
    bad = _run("signals", "--params", p, "--db", synth_db, "--date", "2024-02-17", "--no-save")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: no FINRA data on 2024-02-17") and "Traceback" not in bad.output
    bad = _run("signals", "--params", p, "--db", synth_db, "--regime", "SUNNY", "--no-save")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --regime must be one of ALL, RISK_ON")
    bad = _run("signals", "--params", p, "--db", synth_db, "--date", "2024-02-13", "--start", "2024-03-01", "--no-save")
    assert bad.exit_code == 2 and "start must be on or before the sheet's session 2024-02-13" in bad.stderr


def test_signal_tables_never_cut_a_price_to_fit_80_columns(synth_db, monkeypatch):
    """The HOLD table (entry, fill, close, stop, target, exit in) of a store with four-digit prices (KLAC, LLY,
    BKNG on the real files) did not fit 80 columns and rich cut cells: the close printed "1214.…", the stop level
    "1205.…". Every number is shown whole or its column is left out and named."""
    import dataclasses

    from rich.console import Console

    import optimizer.cli.signals as cli_signals

    sheet = signal_sheet(ParamsRecord(dict(CONFIGS["fixed_stops"][0])), synth_db, date="2024-02-13")
    rows = sheet.rows.copy()
    for c in ("close", "entry_price", "stop_level", "take_profit_level"):
        rows[c] = rows[c] * 10 + 1000  # four-digit prices
    sheet = dataclasses.replace(sheet, rows=rows)
    assert sheet.counts[HOLD] >= 3 and sheet.counts[EXIT] >= 1
    buf = io.StringIO()
    monkeypatch.setattr(cli_signals, "console", Console(file=buf, width=80, color_system=None))
    cli_signals._render(sheet, False)
    lines = buf.getvalue().splitlines()
    assert lines and max(len(x) for x in lines) <= 80 and "…" not in buf.getvalue(), buf.getvalue()
    for r in sheet.of(HOLD).itertuples(index=False):
        (line,) = [x for x in lines if x.startswith(r.symbol + " ")]
        for v in (r.entry_price, r.close, r.stop_level, r.take_profit_level):
            assert f"{v:.2f}" in line.split(), (line, v)
    assert any(x.startswith("1 more column") and x.endswith(": exit in") for x in lines), lines


def _tonight(raw: Path, day: str, db_src: Path, db: Path, folder: Path) -> None:
    """``db``: the store as it was before the night of ``day`` (a copy of ``db_src`` without that session's raw rows
    and ingest records); ``folder``: that night's new files (its CNMS file and that day's rows of the prices,
    lit-flow and options CSVs, as a data vendor would deliver them)."""
    (folder / "finra").mkdir(parents=True)
    stamp = pd.Timestamp(day).strftime("%Y%m%d")
    shutil.copy(raw / "finra" / f"CNMSshvol{stamp}.txt", folder / "finra")
    for name in ("prices_daily.csv", "lit_flow_daily.csv", "options_daily.csv"):
        df = pd.read_csv(raw / name, dtype=str, keep_default_na=False)
        df[df["date"] == day].to_csv(folder / name, index=False)
    shutil.copy(db_src, db)
    con = duckdb.connect(str(db))
    try:
        for t in ("finra_short_daily", "prices_daily", "lit_flow_daily", "options_daily"):
            con.execute(f"DELETE FROM {stored_in(t)} WHERE date = ?", [pd.Timestamp(day).date()])
        con.execute("DELETE FROM ingest_log WHERE file LIKE ?", [f"%CNMSshvol{stamp}%"])
    finally:
        con.close()


@pytest.mark.slow
def test_evening_ingests_new_files_and_is_idempotent(synth_db, tmp_path):
    day = "2024-06-28"
    evening, db = tmp_path / "tonight", tmp_path / "e.duckdb"
    _tonight(synth_db.parent / "raw", day, synth_db, db, evening)
    con = duckdb.connect(str(db), read_only=True)
    assert str(con.execute("SELECT max(date) FROM finra_short_daily").fetchone()[0]) == "2024-06-27"
    con.close()
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0]}))
    out = tmp_path / "out"
    res = _run("evening", "--params", p, "--db", db, "--ingest", evening, "--out", out)
    assert res.exit_code == 0, res.output
    assert "signal sheet 2024-06-28 close -> orders for the 2024-07-01 open" in res.stdout
    assert f"sheet_html: {out}/signals/2024-06-28_" in res.stdout and f"scan_top_csv: {out}/scanner/2024-06-28" in res.stdout

    def state():
        con = duckdb.connect(str(db), read_only=True)
        try:
            tables = {t: con.execute(f"SELECT * EXCLUDE (created_at) FROM {t} ORDER BY ALL").df() if t == "signal_sheet"
                      else con.execute(f"SELECT * FROM {t} ORDER BY ALL").df()
                      for t in ("finra_short_daily", "prices_daily", "daily_metrics", "scanner_daily_metrics",
                                "signal_sheet")}
        finally:
            con.close()
        files = {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}
        return tables, files

    t1, f1 = state()
    assert pd.Timestamp(t1["daily_metrics"]["date"].max()).date() == pd.Timestamp(day).date()
    assert len(t1["signal_sheet"]) == 33 and (t1["signal_sheet"]["date"] == pd.Timestamp(day)).all()
    # the sheet equals the one computed on the store that always had the night's files
    direct = signal_sheet(ParamsRecord(dict(CONFIGS["first_dist"][0])), synth_db)
    stored = t1["signal_sheet"].sort_values("symbol").reset_index(drop=True)
    assert stored["decision"].tolist() == direct.rows.sort_values("symbol")["decision"].tolist()
    again = _run("evening", "--params", p, "--db", db, "--ingest", evening, "--out", out, "--format", "json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["ingest"]["finra-short"]["skipped_identical"] == 1 and doc["ingest"]["prices"]["skipped_identical"] == 1
    t2, f2 = state()
    assert f2 == f1
    for k in t1:
        pd.testing.assert_frame_equal(t2[k], t1[k], obj=k)


def test_evening_warns_of_a_prices_file_not_adjusted_for_a_split(synth_db, tmp_path):
    """`evening --ingest DIR` with tonight's prices file on a post-split basis for one symbol (its stored bars
    pre-split): the -90 % day went into the metrics, scan and sheet with no word. The evening warns, naming it."""
    day = "2024-06-28"
    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    prices = pd.read_csv(synth_db.parent / "raw" / "prices_daily.csv", dtype={"symbol": str})
    night = prices[prices["date"] == day].copy()
    sym = sorted(night["symbol"])[0]
    hit = night["symbol"] == sym
    night.loc[hit, ["open", "high", "low", "close"]] /= 10
    (tmp_path / "tonight" / "prices").mkdir(parents=True)
    night.to_csv(tmp_path / "tonight" / "prices" / "bars_20240628.csv", index=False)
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0]}))
    res = _run("evening", "--params", p, "--db", db, "--ingest", tmp_path / "tonight", "--out", tmp_path / "o",
               "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    got = [w for w in doc["warnings"] if "close jumps" in w]
    assert len(got) == 1 and got[0].startswith(f"prices: bars_20240628.csv: {sym} close jumps from stored "), got
    assert "on 2024-06-27" in got[0] and "on 2024-06-28" in got[0]
    assert 0.09 < float(re.search(r", ratio ([0-9.]+): ", got[0]).group(1)) < 0.11, got[0]


def test_evening_says_why_the_scan_ranked_nothing(synth_db, tmp_path):
    """A store whose FINRA history is shorter than the scanner's lookback (a new user's first months; here
    SCANNER_LOOKBACK_DAYS=600 on 375 sessions): the evening printed 'scan: ... top 0' and nothing else, while
    ``accumopt scan`` says why nothing was ranked and what to run. The evening now warns with the scan's reason,
    also when a later step fails."""
    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0]}))
    res = _run("evening", "--params", p, "--db", db, "--no-fetch", "--out", tmp_path / "o", "--format", "json",
               env={"SCANNER_LOOKBACK_DAYS": "600"})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [s["detail"] for s in doc["steps"] if s["step"] == "scan"] == ["33 symbols on 2024-06-28, top 0"]
    (w,) = [w for w in doc["warnings"] if w.startswith("scan 2024-06-28: nothing ranked: FINRA short data covers")]
    assert "of the 600 sessions" in w and "--lookback" in w

    # When a later step failed (here the sheet: a universe name the store lacks), the evening printed only the
    # error: the warnings gathered before, which often say why, were lost. They now come first on stderr, then the
    # one error line, exit 2.
    res = _run("evening", "--params", p, "--db", db, "--no-fetch", "--out", tmp_path / "o", "--universe", "AAPL,ZZZZ",
               env={"SCANNER_LOOKBACK_DAYS": "600"})
    assert res.exit_code == 2, res.output
    lines = [" ".join(ln.split()) for ln in " ".join(res.stderr.split("\n  ")).splitlines() if ln.strip()]
    warn = [i for i, ln in enumerate(lines) if ln.startswith("warning: scan 2024-06-28: nothing ranked")]
    err = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
    assert len(warn) == 1 and len(err) == 1 and warn[0] < err[0] and "ZZZZ" in lines[err[0]], res.stderr


def test_a_sheet_whose_orders_have_passed_is_flagged(synth_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its signals runs take no --out: the default output root is not the checkout's
    """Tonight's prices are in, tonight's FINRA file is not (published later, or not fetched): the evening and
    ``signals`` printed the previous night's sheet, "orders for the <today> open", an open that has passed, with no
    word of it. Both now warn, naming the FINRA session to ingest; an explicit --date is deliberate and silent."""
    day, nxt = "2024-06-27", "2024-06-28"
    db = tmp_path / "s.duckdb"
    shutil.copy(synth_db, db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM finra_short_rows WHERE date = ?", [pd.Timestamp(nxt).date()])  # prices of 06-28 stay
    con.close()
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0]}))
    res = _run("evening", "--params", p, "--db", db, "--no-fetch", "--out", tmp_path / "o", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sheet"]["date"] == day and doc["sheet"]["next_session"] == nxt
    want = (f"the sheet is for {day}, the latest session with FINRA data, but the store holds prices through {nxt}: "
            f"its orders were for the {nxt} open, which has passed. Ingest the FINRA file(s) of {nxt}")
    assert [w for w in doc["warnings"] if w.startswith("the sheet is for")] == [want + " for a current sheet"]
    res = _run("signals", "--params", p, "--db", db, "--no-save")
    assert res.exit_code == 0 and " ".join(res.stderr.split()).startswith("warning: " + want), res.stderr
    res = _run("signals", "--params", p, "--db", db, "--no-save", "--date", day)
    assert res.exit_code == 0 and "warning" not in res.stderr
    res = _run("signals", "--params", p, "--db", synth_db, "--no-save")  # FINRA and prices through the same day
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_evening_refuses_unknown_files_and_a_store_without_finra(tmp_path, synth_db):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ParameterError, match="cannot tell the kind of 1 file"):
        classify_files(folder)
    (folder / "notes.txt").unlink()
    (folder / "prices").mkdir()
    (folder / "prices" / "a.csv").write_text("x")
    (folder / "CNMSshvol20240102.txt").write_text("x")
    assert {k: [f.name for f in v] for k, v in classify_files(folder).items()} == {
        "finra-short": ["CNMSshvol20240102.txt"], "prices": ["a.csv"]}
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"variant": "B"}))
    res = _run("evening", "--params", p, "--db", tmp_path / "none.duckdb", "--through", "2024-01-05", "--out",
               tmp_path / "o")
    assert res.exit_code == 2 and "none.duckdb does not exist" in res.stderr and not (tmp_path / "none.duckdb").exists()
    connect(tmp_path / "empty.duckdb").close()  # a store with the schema and no data: nothing to fetch after
    res = _run("evening", "--params", p, "--db", tmp_path / "empty.duckdb", "--through", "2024-01-05", "--out",
               tmp_path / "o")
    assert res.exit_code == 2 and res.stderr.startswith("error: the store holds no FINRA short-sale data")
    with pytest.raises(ParameterError, match="unknown parameter"):
        run_evening(ParamsRecord({"bogus": 1}), synth_db, tmp_path / "o", fetch=False)


@pytest.fixture
def vendor(synth_db):
    """A local stand-in (127.0.0.1) for the FINRA CDN and Polygon serving the synthetic market's files: the CNMS
    file of each session and each ticker's daily aggregates (from the market's prices CSV)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote, urlparse

    raw = synth_db.parent / "raw"
    prices = pd.read_csv(raw / "prices_daily.csv")
    hits: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            u = urlparse(self.path)
            hits.append(u.path)
            if u.path.startswith("/cdn/"):
                f = raw / "finra" / u.path.rsplit("/", 1)[1]
                return self._send(200, f.read_bytes()) if f.exists() else self._send(404)
            if u.path.startswith("/poly/v2/aggs/ticker/"):
                parts = u.path.split("/")
                t, d0, d1 = unquote(parts[5]), parts[9], parts[10]
                t = "^" + t[2:] if t.startswith("I:") else ("" if t.startswith("^") else t)  # Polygon: I:VIX
                sel = prices[(prices.symbol == t) & (prices.date >= d0) & (prices.date <= d1)]
                bars = [{"t": int(pd.Timestamp(r.date, tz="America/New_York").timestamp() * 1000), "o": r.open,
                         "h": r.high, "l": r.low, "c": r.close, "v": r.volume} for r in sel.itertuples()]
                return self._send(200, json.dumps({"ticker": t, "status": "OK", "results": bars}).encode())
            return self._send(404)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield {"FINRA_CDN_URL": f"{base}/cdn", "POLYGON_BASE_URL": f"{base}/poly", "POLYGON_API_KEY": "k-test"}, hits
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_evening_fetches_the_sessions_after_the_store_and_then_has_nothing_new(synth_db, tmp_path, vendor):
    env, hits = vendor
    db = tmp_path / "f.duckdb"
    _tonight(synth_db.parent / "raw", "2024-06-28", synth_db, db, tmp_path / "unused")
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": CONFIGS["first_dist"][0], "universe": "tier1"}))
    out = tmp_path / "out"
    res = _run("evening", "--params", p, "--db", db, "--through", "2024-06-30", "--out", out, "--format", "json",
               env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ingest"]["finra-short"]["files"] == 1 and doc["ingest"]["finra-short"]["rows_accepted"] == 33
    assert doc["ingest"]["prices"]["rows_accepted"] == 16  # the 15 tier1 symbols (SPY among them) and ^VIX
    assert doc["sheet"]["date"] == "2024-06-28" and doc["sheet"]["universe"] == "tier1"
    assert "/cdn/CNMSshvol20240628.txt" in hits and not any("20240627" in h for h in hits)  # only the new session
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM prices_daily WHERE date = DATE '2024-06-28'").fetchone()[0]
    con.close()
    assert n == 16
    hits.clear()
    again = _run("evening", "--params", p, "--db", db, "--through", "2024-06-30", "--out", out, "--format", "json",
                 env=env)
    doc2 = json.loads(again.stdout)
    assert not hits and doc2["ingest"] == {} and any("already holds FINRA data through 2024-06-28" in w
                                                     for w in doc2["warnings"])
    assert doc2["sheet"] == doc["sheet"]


def test_charts_enter_by_score_then_exit_and_capped():
    from optimizer.report.sheet import sheet_charts

    n = 30
    panel = _hand_panel({s: [10.0] * n for s in ("A", "B", "C", "D")})
    rows = pd.DataFrame({"symbol": ["A", "B", "C", "D"], "decision": [ENTER, EXIT, ENTER, HOLD],
                         "score": [80.0, 20.0, 90.0, 50.0], "entry_date": [pd.NaT, pd.Timestamp("2024-01-05"), pd.NaT,
                                                                         pd.Timestamp("2024-01-04")],
                         "entry_price": [NAN, 10.0, NAN, 10.0]})
    disp = np.full((n, 4), 50.0)
    assert [s for s, _ in sheet_charts(rows, panel, disp, 70, 30)] == ["C", "A", "B"]  # no chart for HOLD
    assert [s for s, _ in sheet_charts(rows, panel, disp, 70, 30, limit=2)] == ["C", "A"]
    fig = dict(sheet_charts(rows, panel, disp, 70, 30, sessions=10))["B"]
    assert len(fig.data[0].x) == 10 and any(t.name == "entry" for t in fig.data)  # the held position's entry marked


def test_evening_folder_ingests_splits_and_tells_them_from_lit_flow(tmp_path):
    """`evening --ingest DIR` with a `splits/` folder (a kind `accumopt ingest` takes) ingested nothing of it: the
    classified kinds were filtered through an order that lacked splits, so the night's splits were dropped silently
    (volumes then jump at the ex-date). A file named *splits* was taken for lit-flow ('lit' in 'splits'), and so
    was a price file named *split_adjusted*."""
    folder = tmp_path / "in"
    (folder / "splits").mkdir(parents=True)
    (folder / "splits" / "nvda.csv").write_text("symbol,date,ratio\nNVDA,2024-06-10,10\n")
    (folder / "avgo_splits.json").write_text("[]")
    (folder / "prices_split_adjusted.csv").write_text("x")
    (folder / "lit_flow.csv").write_text("x")
    got = {k: sorted(f.name for f in v) for k, v in classify_files(folder).items()}
    assert got == {"lit-flow": ["lit_flow.csv"], "prices": ["prices_split_adjusted.csv"],
                   "splits": ["avgo_splits.json", "nvda.csv"]}


def _evening_fetch(tmp_path, monkeypatch, vendor: dict[str, float], universe: str, lacking: dict | None = None):
    """A store holding NVDA at 1200 and SPY at 500 for 2024-06-03..07 (FINRA through 06-07), then the evening's fetch
    through 2024-06-11 from a stand-in Polygon serving flat split-adjusted bars at ``vendor``'s prices, ingested.
    ``lacking``: symbol -> indices of those sessions the store has no bar of (a night whose price fetch failed).
    Returns (the sessions, the (symbol, start, end) requests, the EveningResult, the stored (symbol, date, close))."""
    import optimizer.evening as ev
    from optimizer.data.fetch import FetchedFiles
    from optimizer.data.ingest import ingest_paths
    from optimizer.settings import Settings

    days = [d.date() for d in nyse_sessions("2024-06-03", "2024-06-11")]
    db = tmp_path / "s.duckdb"
    con = connect(db)
    (tmp_path / "CNMSshvol20240607.txt").write_text(
        "Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\n20240607|NVDA|1|0|2|Q\n1\n")
    rows = ["date,symbol,open,high,low,close,volume"]
    rows += [f"{d},{s},{c},{c},{c},{c},100" for i, d in enumerate(days[:5]) for s, c in (("NVDA", 1200.0), ("SPY", 500.0))
             if i not in (lacking or {}).get(s, ())]
    (tmp_path / "prices.csv").write_text("\n".join(rows) + "\n")
    assert ingest_paths(con, "finra-short", [tmp_path / "CNMSshvol20240607.txt"]).exit_code == 0
    assert ingest_paths(con, "prices", [tmp_path / "prices.csv"]).exit_code == 0
    con.close()
    calls: list[tuple[str, str, str]] = []

    def fake_polygon(symbols, start, end, out_dir, settings, **kw):  # Polygon's split-adjusted daily bars
        got = FetchedFiles()
        for s in symbols:
            calls.append((s, str(start), str(end)))
            c = vendor.get(s)
            bars = [{"t": int(pd.Timestamp(d, tz="America/New_York").timestamp() * 1000), "o": c, "h": c, "l": c,
                     "c": c, "v": 1000} for d in days if c is not None and str(start) <= str(d) <= str(end)]
            if not bars:
                got.missing.append((s, "no bars returned"))
                continue
            p = Path(out_dir) / f"{s}_{start}_{end}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"ticker": s, "results": bars}))
            got.append(p)
        return got

    monkeypatch.setattr(ev, "fetch_polygon_prices", fake_polygon)
    monkeypatch.setattr(ev, "fetch_finra_short", lambda *a, **k: FetchedFiles())  # no FINRA file tonight
    res = ev.EveningResult()
    files = ev._fetch(db, tmp_path / "cache", days[-1], universe, Settings(polygon_api_key="k"), res)
    ev._ingest(db, files, res, Settings(), False)
    con = connect(db, read_only=True)
    closes = con.execute("SELECT symbol, date, close FROM prices_daily ORDER BY symbol, date").fetchall()
    con.close()
    return days, calls, res, closes


def test_evening_fetch_refetches_the_price_history_a_split_readjusted(tmp_path, monkeypatch):
    """The evening fetched Polygon's split-ADJUSTED bars of the new sessions only: after a 10:1 split the stored
    history stayed in pre-split prices and the ex-date's return read -90 %. The fetch now overlaps the last stored
    session; a symbol whose stored close there no longer matches the vendor's (its adjusted history changed) has
    its whole price history fetched again (with a warning to ingest the split); others get only the new sessions."""
    # today's split-adjusted history: NVDA 1200 / 10 before the 10:1 split of 2024-06-10
    days, calls, res, closes = _evening_fetch(tmp_path, monkeypatch, {"NVDA": 120.0, "SPY": 500.0}, "NVDA")
    assert [c for s, d, c in closes if s == "NVDA"] == [120.0] * len(days)  # history re-adjusted: no -90 % day
    assert [c for s, d, c in closes if s == "SPY"] == [500.0] * len(days)
    assert ("NVDA", str(days[0]), str(days[-1])) in calls  # NVDA's whole stored history fetched again
    assert ("SPY", str(days[0]), str(days[-1])) not in calls  # unchanged: only the overlap and the new sessions
    assert res.ingest["prices"]["rows_accepted"] == len(days) + 2  # NVDA in full, SPY's 2 new sessions only
    assert any("NVDA" in w and "split" in w for w in res.warnings)


def test_evening_fetch_gets_a_universe_symbol_the_store_has_no_price_for(tmp_path, monkeypatch):
    """The evening fetched prices only for the universe's symbols the store ALREADY had prices for (the universe was
    intersected with them), so a symbol added to the universe (a new name, an IPO) was never fetched, night after
    night, without a word. It is fetched, with its history from the store's first price session."""
    days, calls, res, closes = _evening_fetch(tmp_path, monkeypatch, {"NVDA": 1200.0, "SPY": 500.0, "AMD": 160.0},
                                              "NVDA,AMD")
    assert ("AMD", str(days[0]), str(days[-1])) in calls
    assert [(d, c) for s, d, c in closes if s == "AMD"] == [(d, 160.0) for d in days]
    assert ("NVDA", str(days[0]), str(days[-1])) not in calls  # no split: NVDA gets only the new sessions
    assert [c for s, d, c in closes if s == "NVDA"] == [1200.0] * len(days)


@pytest.mark.parametrize("lacking", [(4,), (2, 3, 4)])
def test_evening_fetch_fills_the_sessions_a_failed_night_left_without_prices(tmp_path, monkeypatch, lacking):
    """A night whose Polygon fetch failed for a symbol (FINRA came in, the symbol's bars did not) left a hole that no
    later evening filled: the next fetch starts at the store's last FINRA session and dropped that session's bar as
    an overlap already stored, so the symbol lacked it for good (its return there NULL, its z windows broken) while
    the bar had been downloaded. Each symbol now gets the bars after its own last stored bar."""
    days, calls, res, closes = _evening_fetch(tmp_path, monkeypatch, {"NVDA": 1200.0, "SPY": 500.0}, "NVDA",
                                              lacking={"NVDA": lacking})
    assert [(d, c) for s, d, c in closes if s == "NVDA"] == [(d, 1200.0) for d in days]  # no hole left
    assert [(d, c) for s, d, c in closes if s == "SPY"] == [(d, 500.0) for d in days]
    assert res.ingest["prices"]["rows_accepted"] == 2 + len(lacking) + 2  # SPY's and NVDA's new sessions + the hole
    assert not any("split" in w for w in res.warnings)
    assert ("NVDA", str(days[0]), str(days[-1])) not in calls  # not the whole history: no split


@pytest.mark.parametrize("through", ["2024-06-11", "2024-06-07"])
def test_evening_fetch_asks_again_for_a_finra_file_a_night_missed(tmp_path, monkeypatch, through):
    """The evening fetched FINRA files only for the sessions after the store's latest: a file that did not come on
    its night (FINRA late, a 404) while a later one did was never asked for again, and that one missing session
    emptied every z-score for a window's length. The sessions of the last REFETCH_SESSIONS the store lacks are
    fetched again (never those before its first FINRA session), also on a night with no new session."""
    import optimizer.evening as ev
    from optimizer.data.fetch import FetchedFiles
    from optimizer.data.ingest import ingest_paths
    from optimizer.settings import Settings

    days = [d.date() for d in nyse_sessions("2024-06-03", "2024-06-11")]
    db = tmp_path / "s.duckdb"

    def cnms(d):
        p = tmp_path / "vendor" / f"CNMSshvol{d:%Y%m%d}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text(f"Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market\n{d:%Y%m%d}|NVDA|1|0|2|Q\n1\n")
        return p

    con = connect(db)
    stored = [d for i, d in enumerate(days[:5]) if i != 2]  # 06-05's file never came
    assert ingest_paths(con, "finra-short", [cnms(d) for d in stored]).exit_code == 0
    con.close()
    calls = []

    def fake_finra(start, end, out_dir, settings, **kw):
        calls.append((str(start), str(end)))
        got = FetchedFiles()
        for d in nyse_sessions(start, end):
            got.append(cnms(d.date()))
        return got

    monkeypatch.setattr(ev, "fetch_finra_short", fake_finra)
    res = ev.EveningResult()
    files = ev._fetch(db, tmp_path / "cache", pd.Timestamp(through).date(), "NVDA", Settings(), res)
    ev._ingest(db, files, res, Settings(), False)
    con = connect(db, read_only=True)
    have = [r[0] for r in con.execute("SELECT DISTINCT date FROM finra_short_daily ORDER BY 1").fetchall()]
    con.close()
    assert ("2024-06-05", "2024-06-05") in calls and not any(c[0] < "2024-06-03" for c in calls)
    assert have == [d for d in days if str(d) <= through]  # the hole filled (and the new sessions fetched)
    assert any("already holds FINRA data through 2024-06-07" in w for w in res.warnings) == (through == "2024-06-07")


def test_evening_refuses_a_mistyped_through_in_one_line(tmp_path):
    """`evening --through 2024-13-01` gave a pandas traceback (exit 1): a one-line error naming --through (exit 2)."""
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"variant": "B"}))
    connect(tmp_path / "s.duckdb").close()
    res = _run("evening", "--params", p, "--db", tmp_path / "s.duckdb", "--through", "2024-13-01",
               "--out", tmp_path / "o")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.stderr.startswith("error: --through must be a date (YYYY-MM-DD), got '2024-13-01'"), res.stderr


# ------------------------------------------------------------------------------------------------ regime memo


def test_learned_regime_is_computed_once_per_market_and_never_served_stale(monkeypatch):
    """Each sheet's context fits the learned regime (a GaussianMixture per 21 sessions) on the market's features; the
    labels are remembered per feature content, and each fit per training rows, so a second sheet of the same store
    does not refit and a sheet of an earlier session reuses the fits of its refit points. The memos must give what
    fresh fits give, hand out copies, and miss on any changed value."""
    from optimizer.engine import _regime

    rng = np.random.default_rng(4)
    T = 300
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, T)))
    high, low = spy * (1 + rng.uniform(0, 0.01, T)), spy * (1 - rng.uniform(0, 0.01, T))
    feats = _regime.regime_features(spy, high, low, rng.uniform(5e7, 9e7, T), 15 + rng.gamma(2.0, 2.0, T))

    def fresh(f, refit_every=21):  # the fits themselves, no memo
        monkeypatch.setattr(_regime, "_FIT_MEMO", {})
        out = _regime._learned_regime_detail(f, refit_every, 120, 4, 0)
        return (*out, len(_regime._FIT_MEMO))  # labels, probabilities and how many fits

    (*full, n_full), (*cut, n_cut_fits) = fresh(feats), fresh(feats.iloc[:240])
    assert n_full > n_cut_fits >= 3
    monkeypatch.setattr(_regime, "_DETAIL_MEMO", {})
    monkeypatch.setattr(_regime, "_FIT_MEMO", {})
    fits = []
    real_fit = _regime._fit
    monkeypatch.setattr(_regime, "_fit", lambda train, *a: fits.append(len(train)) or real_fit(train, *a))
    first = _regime.learned_regime_detail(feats.iloc[:240])  # the market as it was at row 239
    n_cut = len(fits)
    assert n_cut == n_cut_fits and len(_regime._DETAIL_MEMO) == 1
    np.testing.assert_array_equal(first[0], cut[0])
    np.testing.assert_array_equal(first[1], cut[1])
    later = _regime.learned_regime_detail(feats)  # later: only the refit points after row 239 are fitted
    assert len(fits) == n_full and min(fits[n_cut:]) > max(fits[:n_cut])  # the cut's fits were all reused
    np.testing.assert_array_equal(later[0], full[0])
    np.testing.assert_array_equal(later[1], full[1])
    assert (later[0] != _regime.LEARNED_UNKNOWN).sum() > 100
    later[0][:] = 0  # a caller writing into its copy ...
    later[1][:] = 0.0
    n_fits = len(fits)
    again = _regime.learned_regime_detail(feats.copy())  # ... and an equal frame: the memo, unchanged, no fit
    assert len(fits) == n_fits and len(_regime._DETAIL_MEMO) == 2
    np.testing.assert_array_equal(again[0], full[0])
    np.testing.assert_array_equal(again[1], full[1])
    flipped = feats.assign(mom20=-feats["mom20"])  # bull <-> bear: other fits, other labels
    got = _regime.learned_regime_detail(flipped)
    assert len(fits) > n_fits and not np.array_equal(got[0], full[0])
    want = fresh(flipped)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    other = _regime.learned_regime_detail(feats, refit_every=42)  # other settings: labels of their own
    want = fresh(feats, 42)
    np.testing.assert_array_equal(other[0], want[0])
    np.testing.assert_array_equal(other[1], want[1])
