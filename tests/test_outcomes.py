"""Tests of optimizer.engine.outcomes (per-event outcomes, frequency baseline, summary) and optimizer.report.backtest
(bt_ tables, files). Hand-made 3-symbol x 30-session panel with literal prices and a literal display matrix;
oracles computed by hand from those literals; engine cross-checks on random and real prices."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.report import backtest as outputs
from optimizer.data.store import connect
from optimizer.engine.context import compute_context
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.outcomes import (
    BASELINE_COLUMNS, EVENT_COLUMNS, backtest_summary, frequency_baseline, high_quality_hit_rate, signal_events,
)
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import Span, Thresholds
from optimizer.errors import ParameterError
from optimizer.report.backtest import BASELINE_TABLE, EVENTS_TABLE, RUNS_TABLE, make_run_id, write_backtest, write_backtest_files

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
T = 30
C = 6e-4  # default costs: (1 + 5) bp per side
A, B, X = 0, 1, 2  # column order of the tiny panel (symbols sorted): AAA, BBB, XLK


# ------------------------------------------------------------------------------------------------ tiny panel


def _opens() -> dict[str, np.ndarray]:
    t = np.arange(T, dtype=float)
    bbb = np.where(t < 5, 50.0, np.where(t <= 11, 50 - 0.5 * (t - 5), np.where(t < 16, 47.0, 47 + (t - 16))))
    return {"AAA": 100 + t, "BBB": bbb, "XLK": 200 + 0.1 * t}


def tiny_panel(bbb_open_override: dict[int, float] | None = None) -> Panel:
    """AAA opens 100+t, BBB falls 0.5/day from t=5 to 11 then rises 1/day from t=16, XLK (AAA/BBB's sector ETF)
    drifts up. high = open+1, low = open−1, close = open+0.5, except AAA low[5] = 95 and high[6] = 115.
    SPY: opens 400+2t, closes move exactly half of AAA's close returns (so AAA's beta is 2)."""
    dates = pd.bdate_range("2024-01-02", periods=T)
    rows = []
    for sym, o in _opens().items():
        o = o.copy()
        if sym == "BBB" and bbb_open_override:
            for i, v in bbb_open_override.items():
                o[i] = v
        h, lo, c = o + 1, o - 1, o + 0.5
        if sym == "AAA":
            lo[5], h[6] = 95.0, 115.0
        if sym == "BBB" and bbb_open_override:  # keep the bars valid around a missing open
            for i in bbb_open_override:
                h[i], lo[i], c[i] = 48.0, 45.0, 47.0
        rows += [dict(date=dates[i], symbol=sym, open=o[i], high=h[i], low=lo[i], close=c[i], volume=1e6,
                      confidence=1.0) for i in range(T)]
    aaa_c = _opens()["AAA"] + 0.5
    spy_c = 400 * np.cumprod(np.r_[1.0, 1 + (aaa_c[1:] / aaa_c[:-1] - 1) / 2])
    market = pd.DataFrame({"date": dates, "spy_open": 400 + 2 * np.arange(T, dtype=float), "spy_close": spy_c})
    return Panel.from_frame(pd.DataFrame(rows), market=market, sectors={"AAA": "XLK", "BBB": "XLK"})


def tiny_display() -> np.ndarray:
    """buy 70 / sell 30. AAA: acc 2,3 (85) and 20,21 (75), dist 8,12,13. BBB: acc 4 (85), 15 (75), dist 10, 25.
    XLK: acc 2,3,4 (85)."""
    d = np.full((T, 3), 50.0)
    d[[2, 3], A] = 85
    d[[20, 21], A] = 75
    d[[8, 12, 13], A] = 20
    d[4, B] = 85
    d[15, B] = 75
    d[[10, 25], B] = 20
    d[[2, 3, 4], X] = 85
    return d


CFG = Config.from_params({"buy_threshold": 70, "sell_threshold": 30, "exit": "first_dist"})


def run_tiny(panel: Panel | None = None, span: Span | None = None, display: np.ndarray | None = None, cfg=CFG):
    p = panel or tiny_panel()
    res = Evaluator(p).run(cfg, span or Span.full(p), display=tiny_display() if display is None else display)
    return p, res, signal_events(res, p, compute_context(p))


@pytest.fixture(scope="module")
def tiny():
    return run_tiny()


def _row(ev: pd.DataFrame, symbol: str, signal_day: int) -> pd.Series:
    d = pd.bdate_range("2024-01-02", periods=T)[signal_day]
    sel = ev[(ev.symbol == symbol) & (ev.date == d)]
    assert len(sel) == 1, f"expected one {symbol} event signalled on row {signal_day}, got {len(sel)}"
    return sel.iloc[0]


# ------------------------------------------------------------------------------------------------ events


def test_events_tell_the_regime_buy_threshold_the_signal_crossed():
    """With regime-conditional buy thresholds the events stored the pooled buy_threshold only (80 beside a trade
    entered at 75: it reads as below the threshold) and graded the signals with the pooled threshold: the 75
    entries, signals at their session's threshold 70, were LOW, and a sector ETF at 75 was not "aligned".
    signal_buy_threshold is the threshold crossed; quality and alignment use it (= the pooled-70 run's)."""
    regime = Config.from_params({"buy_threshold": 80, "sell_threshold": 30, "exit": "first_dist",
                                 **{f"buy_threshold_{r}": 70 for r in ("risk_on", "risk_off", "transitional")}})
    disp = tiny_display()
    disp[20, X] = 75  # XLK signals with AAA at 75 on row 20
    _, _, pooled = run_tiny(display=disp)  # buy 70 on every session: the same trades
    _, _, ev = run_tiny(display=disp, cfg=regime)
    assert list(zip(ev.symbol, ev.entry_date)) == list(zip(pooled.symbol, pooled.entry_date))
    assert (ev.buy_threshold == 80).all() and (ev.signal_buy_threshold == 70).all()
    assert (pooled.signal_buy_threshold == 70).all() and (ev.score_value >= ev.signal_buy_threshold).all()
    assert (ev.score_value < ev.buy_threshold).sum() == 2  # AAA@20 and BBB@15 entered at 75 (XLK still held)
    aaa = _row(ev, "AAA", 20)
    assert aaa.signal_quality == "HIGH" and aaa.parent_etf_aligned  # score 75, its ETF also at its threshold
    assert ev.signal_quality.tolist() == pooled.signal_quality.tolist()
    assert ev.parent_etf_aligned.tolist() == pooled.parent_etf_aligned.tolist()


def test_event_rows_trade_columns_and_order(tiny):
    p, res, ev = tiny
    # AAA@2, XLK@2 enter at row 3; BBB@4 at 5; BBB@15 at 16; AAA@20 at 21 (signals while in a position ignored)
    assert list(zip(ev.symbol, ev.entry_date.dt.day)) == [("AAA", 5), ("XLK", 5), ("BBB", 9), ("BBB", 24), ("AAA", 31)]
    assert len(ev) == len(res.trades)
    assert list(ev.columns[:13]) == list(EVENT_COLUMNS[:13])
    assert set(EVENT_COLUMNS) <= set(ev.columns) and "options_boost" in ev.columns
    a = _row(ev, "AAA", 2)
    assert (a.entry_price, a.exit_price, a.exit_reason, a.hold_days) == (103.0, 109.0, "first_dist", 6)
    assert a.net_return == pytest.approx(109 * (1 - C) / (103 * (1 + C)) - 1, rel=1e-12)
    assert a.gross_return == pytest.approx(109 / 103 - 1, rel=1e-12)
    assert a.exit_date == pd.Timestamp("2024-01-15") and a.sector_etf == "XLK" and a.score_value == 85.0


def test_forward_returns_market_relative_and_hits_by_hand(tiny):
    _, _, ev = tiny
    a = _row(ev, "AAA", 2)  # entry open[3] = 103
    assert (a.fwd_return_5d, a.fwd_return_10d, a.fwd_return_20d) == pytest.approx((108 / 103 - 1, 113 / 103 - 1, 123 / 103 - 1))
    assert (a.hit_5d, a.hit_10d, a.hit_20d, a.hit) == (1.0, 1.0, 1.0, 1.0)
    b = _row(ev, "BBB", 4)  # entry open[5] = 50; open[10] = 47.5, open[15] = 47, open[25] = 56
    assert (b.fwd_return_5d, b.fwd_return_10d, b.fwd_return_20d) == pytest.approx((-0.05, -0.06, 0.12))
    assert (b.hit_5d, b.hit_10d, b.hit_20d, b.hit) == (0.0, 0.0, 1.0, 0.0)
    late = _row(ev, "AAA", 20)  # entry open[21] = 121; +10 = row 31 is past the data
    assert late.fwd_return_5d == pytest.approx(126 / 121 - 1)
    assert np.isnan(late.fwd_return_10d) and np.isnan(late.fwd_return_20d)
    assert late.hit_5d == 1.0 and pd.isna(late.hit_10d) and pd.isna(late.hit_20d)
    # planted beta 2 (SPY closes move half of AAA's); SPY opens 400 + 2t: 442 -> 452
    assert late.beta == pytest.approx(2.0, rel=1e-9)
    assert late.fwd_return_5d_rel == pytest.approx((126 / 121 - 1) - 2.0 * (452 / 442 - 1), rel=1e-8)
    assert np.isnan(a.beta) and np.isnan(a.fwd_return_5d_rel)  # fewer than 20 return pairs at row 2


def test_distribution_path_by_hand(tiny):
    _, _, ev = tiny
    a = _row(ev, "AAA", 2)  # entry row 3 @103; dist closes 8, 12, 13; low[5] = 95, high[6] = 115
    assert a.days_to_first_dist == 5 and a.return_at_first_dist == pytest.approx(109 / 103 - 1)
    assert a.days_to_2x_consec_dist == 10 and a.return_at_2x_consec_dist == pytest.approx(114 / 103 - 1)
    assert a.max_drawdown_before_dist == pytest.approx(95 / 103 - 1)
    assert a.max_gain_before_dist == pytest.approx(115 / 103 - 1)
    b2 = _row(ev, "BBB", 15)  # entry row 16 @47, dist 25 -> open[26] = 57; single dist day: no 2x
    assert b2.days_to_first_dist == 9 and b2.return_at_first_dist == pytest.approx(57 / 47 - 1)
    assert np.isnan(b2.days_to_2x_consec_dist) and np.isnan(b2.return_at_2x_consec_dist)
    assert b2.max_drawdown_before_dist == pytest.approx(46 / 47 - 1)      # low[16] = 46
    assert b2.max_gain_before_dist == pytest.approx(57 / 47 - 1)          # high[25] = 56 + 1
    late = _row(ev, "AAA", 20)  # no distribution after row 21: path runs to the exit row (29, open at end)
    assert np.isnan(late.days_to_first_dist) and np.isnan(late.return_at_first_dist)
    assert late.max_drawdown_before_dist == pytest.approx(120 / 121 - 1)  # low[21]
    assert late.max_gain_before_dist == pytest.approx(130 / 121 - 1)      # high[29]


def test_ret_at_first_dist_fills_at_next_finite_open():
    # BBB's open after its distribution close (row 10) is missing: the fill moves to row 12 (open 46), like the engine
    p, res, ev = run_tiny(tiny_panel({11: np.nan, 12: 46.0}))
    b = _row(ev, "BBB", 4)
    assert b.days_to_first_dist == 5
    assert b.return_at_first_dist == pytest.approx(46 / 50 - 1)
    assert b.exit_price == 46.0 and b.gross_return == pytest.approx(b.return_at_first_dist)


def test_outcomes_never_read_past_data_end():
    p = tiny_panel()
    _, _, ev = run_tiny(p, Span(0, 20, 25))
    b = _row(ev, "BBB", 4)  # entry row 5: +20 = row 25 >= data_end -> NaN (0.12 with the full data)
    assert b.fwd_return_10d == pytest.approx(-0.06) and np.isnan(b.fwd_return_20d) and pd.isna(b.hit_20d)
    b2 = _row(ev, "BBB", 15)  # its distribution close (row 25) is past data_end: open at end, no dist found
    assert b2.open_at_end and np.isnan(b2.days_to_first_dist) and pd.isna(b2.hit)
    assert b2.max_gain_before_dist == pytest.approx(56 / 47 - 1)  # high[24] = 55 + 1, not high[25]
    assert ev.exit_date.max() <= p.dates[24]
    # data_end 26: the distribution close (row 25) is in the data but its fill (open[26]) is not
    _, _, ev26 = run_tiny(p, Span(0, 20, 26))
    b3 = _row(ev26, "BBB", 15)
    assert b3.open_at_end and b3.days_to_first_dist == 9 and np.isnan(b3.return_at_first_dist)


def test_open_at_end_flagged_with_nan_hit_and_no_failure_mode(tiny):
    _, _, ev = tiny
    oae = ev[ev.open_at_end]
    assert sorted(zip(oae.symbol, oae.date.dt.day)) == [("AAA", 30), ("XLK", 4)]
    assert (oae.exit_reason == "open_at_end").all() and oae.hit.isna().all() and oae.failure_mode.isna().all()
    assert (oae.exit_date == pd.Timestamp("2024-02-12")).all()
    closed = ev[~ev.open_at_end]
    assert closed.hit.notna().all()
    # the design: failure_mode is NULL for a profitable trade, the reason for a loser
    assert (closed.failure_mode.isna() == (closed.net_return > 0)).all()


def test_failure_modes_quality_and_alignment(tiny):
    _, _, ev = tiny
    assert pd.isna(_row(ev, "AAA", 2).failure_mode) and pd.isna(_row(ev, "BBB", 15).failure_mode)  # winners
    # BBB@4: -0.5/day, no gap, closes 50.25/49.75 >= 49 (no reversal), 5 of 6 held closes below 50 -> SLOW_BLEED
    assert _row(ev, "BBB", 4).failure_mode == "SLOW_BLEED"
    # the design's rule: HIGH = score >= 75 with the parent ETF (XLK) accumulating the same day
    q = {(r.symbol, r.date.day): (r.signal_quality, r.parent_etf_aligned, r.parent_etf_available)
         for r in ev.itertuples()}
    assert q[("AAA", 4)] == ("HIGH", True, True)
    assert q[("BBB", 8)] == ("HIGH", True, True)
    assert q[("BBB", 23)] == ("LOW", False, True)    # 75, not aligned, no lit data (lit_z NULL), no options
    assert q[("XLK", 4)] == ("LOW", False, False)    # no parent ETF; trend not DOWN
    assert set(ev.trend_state) <= {"UP", "SIDEWAYS", "DOWN"} and ev.regime.notna().all() and ev.learned_regime.notna().all()
    assert high_quality_hit_rate(ev) == 0.5  # one HIGH winner (AAA), one HIGH loser (BBB)
    assert high_quality_hit_rate(ev.iloc[:0]) == 0.0


def test_event_design_columns_by_hand(tiny):
    p, res, ev = tiny
    assert ev.event_id.tolist() == [1, 2, 3, 4, 5]
    assert (ev.score_variant == "B").all() and (ev.buy_threshold == 70.0).all() and (ev.sell_threshold == 30.0).all()
    assert (ev.z_window == 20).all()
    a = _row(ev, "AAA", 2)
    assert a.signal_close == 102.5 and a.entry_price == 103.0    # close[2] = open[2] + 0.5; fill at open[3]
    assert a.hit_at_dist is True or a.hit_at_dist == True        # noqa: E712 - return_at_first_dist 109/103 - 1 > 0
    b = _row(ev, "BBB", 4)
    # BBB: entry open[5] = 50, first distribution close at row 10, fill open[11] = 50 - 0.5 * 6 = 47
    assert b.return_at_first_dist == pytest.approx(47 / 50 - 1) and b.hit_at_dist == False  # noqa: E712
    late = _row(ev, "AAA", 20)
    assert pd.isna(late.hit_at_dist)                             # no distribution day before the end of the data
    assert late.fwd_return_1d == pytest.approx(122 / 121 - 1) and late.fwd_return_3d == pytest.approx(124 / 121 - 1)
    ctx = compute_context(p)
    assert late.sma_20_slope == pytest.approx(ctx["sma_20_slope"][20, A])
    assert late.spy_vs_sma_50 is None or np.isnan(late.spy_vs_sma_50)  # 30 sessions: no SMA50 yet
    assert np.isnan(late.vix_level)                                    # the tiny panel has no VIX
    assert late.trend_state == "UP" and late.price_vs_sma_20_pct == pytest.approx(ctx["price_vs_sma_20_pct"][20, A])


def test_no_signal_gives_empty_events_with_columns():
    d = np.full((T, 3), 50.0)
    p, res, ev = run_tiny(display=d)
    assert ev.empty and set(EVENT_COLUMNS) <= set(ev.columns)
    s = backtest_summary(res, ev, p)
    assert s["high_quality_hit_rate"] == 0.0 and s["total_trades"] == 0.0


# ------------------------------------------------------------------------------------------------ baseline


def test_frequency_baseline_on_the_tiny_run(tiny):
    p, res, _ = tiny
    b = frequency_baseline(res.display, p, CFG.thresholds, res.span).set_index("symbol")
    assert list(b.reset_index().columns) == list(BASELINE_COLUMNS)
    # AAA: acc 2,3,20,21 (2 episodes), dist 8,12,13; episode 2 -> dist 8 = 6, episode 20 -> none
    assert tuple(b.loc["AAA", ["accum_signals_count", "dist_signals_count", "accum_episodes_count"]]) == (4, 3, 2)
    assert b.loc["AAA", "avg_gap_accum_to_dist"] == 6.0 and b.loc["AAA", "median_gap_accum_to_dist"] == 6.0
    assert b.loc["AAA", "signals_per_month"] == pytest.approx(4 / (30 / 21))
    assert tuple(b.loc["XLK", ["accum_signals_count", "dist_signals_count", "accum_episodes_count"]]) == (3, 0, 1)
    assert np.isnan(b.loc["XLK", "avg_gap_accum_to_dist"]) and np.isnan(b.loc["XLK", "median_gap_accum_to_dist"])


def test_frequency_baseline_episodes_gaps_and_window():
    p = tiny_panel()
    d = np.full((T, 3), 50.0)
    d[[1, 2, 3, 6, 10, 11], B] = 90   # episodes start 1, 6, 10
    d[[5, 8, 20], B] = 10             # next dist: 1->5 (4), 6->8 (2), 10->20 (10)
    th = Thresholds(70, 30)
    full = frequency_baseline(d, p, th, Span.full(p)).set_index("symbol").loc["BBB"]
    assert (full.accum_signals_count, full.dist_signals_count, full.accum_episodes_count) == (6, 3, 3)
    assert full.avg_gap_accum_to_dist == pytest.approx(16 / 3) and full.median_gap_accum_to_dist == 4.0
    # window rows [2, 12): the run 1..3 counts from row 2; gaps 2->5 = 3, 6->8 = 2, 10->20 = 10 (20 < data_end 25)
    win = frequency_baseline(d, p, th, Span(2, 12, 25)).set_index("symbol").loc["BBB"]
    assert (win.accum_signals_count, win.dist_signals_count, win.accum_episodes_count) == (5, 2, 3)
    assert win.avg_gap_accum_to_dist == pytest.approx(5.0) and win.median_gap_accum_to_dist == 3.0
    assert win.signals_per_month == pytest.approx(5 / (10 / 21))
    # data_end 20: the distribution at row 20 is not in the data -> that episode has no gap
    cut = frequency_baseline(d, p, th, Span(2, 12, 20)).set_index("symbol").loc["BBB"]
    assert cut.avg_gap_accum_to_dist == pytest.approx(2.5) and cut.median_gap_accum_to_dist == 2.5


def test_frequency_baseline_gap_from_distribution_to_accumulation_by_hand():
    p = tiny_panel()
    d = np.full((T, 3), 50.0)
    d[[2, 9, 10, 22], B] = 90     # accumulation days
    d[[5, 6, 14, 26], B] = 10     # distribution episodes start 5, 14, 26
    th = Thresholds(70, 30)
    b = frequency_baseline(d, p, th, Span.full(p), "B").set_index("symbol").loc["BBB"]
    # dist -> next accumulation: 5 -> 9 = 4, 14 -> 22 = 8, 26 -> none
    assert (b.dist_signals_count, b.dist_episodes_count) == (4, 3)
    assert b.avg_gap_dist_to_accum == pytest.approx(6.0) and b.median_gap_dist_to_accum == 6.0
    # accumulation -> next distribution: 2 -> 5 = 3, 9 -> 14 = 5, 22 -> 26 = 4
    assert b.avg_gap_accum_to_dist == pytest.approx(4.0) and b.median_gap_accum_to_dist == 4.0
    assert b.score_variant == "B" and b.date_start == pd.Timestamp("2024-01-02") and b.date_end == p.dates[-1]
    # the accumulation that answers a distribution episode may lie past the signal window, never past data_end
    w = frequency_baseline(d, p, th, Span(0, 15, 22), "B").set_index("symbol").loc["BBB"]
    assert w.avg_gap_dist_to_accum == pytest.approx(4.0)   # 14 -> 22 is at data_end: not found
    w2 = frequency_baseline(d, p, th, Span(0, 15, 23), "B").set_index("symbol").loc["BBB"]
    assert w2.avg_gap_dist_to_accum == pytest.approx(6.0)


# ------------------------------------------------------------------------------------------------ summary


def test_backtest_summary(tiny):
    p, res, ev = tiny
    s = backtest_summary(res, ev, p)
    for k, v in res.metrics.items():
        assert s[{"win_loss": "win_loss_ratio", "sharpe": "sharpe_ratio"}.get(k, k)] == v
    assert "win_loss" not in s and "sharpe" not in s  # one name per metric in the run record: the design's
    for k, v in CFG.to_params().items():
        assert s[k] == v
    assert (s["date_start"], s["date_end"], s["data_end_date"]) == ("2024-01-02", "2024-02-12", "2024-02-12")
    assert s["n_symbols"] == 3 and s["sessions"] == 30 and s["fingerprint"] == p.fingerprint()
    assert s["high_quality_hit_rate"] == 0.5 and s["high_quality_trades"] == 2.0


# ------------------------------------------------------------------------------------------------ outputs


def test_make_run_id_is_deterministic_and_sensitive():
    span = ("2024-01-02", "2024-02-12", "2024-02-12")
    rid = make_run_id(CFG, span, "abc")
    assert re.fullmatch(r"[0-9a-f]{12}", rid)
    assert make_run_id(CFG.to_params(), [pd.Timestamp(x) for x in span], "abc") == rid
    assert make_run_id(Config.from_params({"buy_threshold": 71, "sell_threshold": 30, "exit": "first_dist"}),
                       span, "abc") != rid
    assert make_run_id(CFG, ("2024-01-03", *span[1:]), "abc") != rid
    assert make_run_id(CFG, span, "abd") != rid


def _snapshot(con) -> dict[str, list]:
    """Every table's DDL and rows (sorted), so any change at all shows."""
    out = {}
    for name, sql in con.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY table_name").fetchall():
        out[name] = [sql, sorted(con.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)]
    return out


def _counts(con, run_id: str) -> tuple[int, int, int]:
    return tuple(con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchone()[0]
                 for t in (RUNS_TABLE, EVENTS_TABLE, BASELINE_TABLE))


@pytest.fixture
def store(tmp_path):
    con = connect(tmp_path / "t.duckdb")
    con.execute("CREATE TABLE daily_metrics (date DATE, symbol VARCHAR, close DOUBLE, confidence DOUBLE)")
    con.execute("INSERT INTO daily_metrics VALUES (DATE '2024-01-02', 'AAA', 100.5, 1.0)")
    yield con
    con.close()


def test_write_backtest_rows_replace_and_other_tables_untouched(store, tiny):
    p, res, ev = tiny
    con = store
    before = {k: v for k, v in _snapshot(con).items() if not k.startswith("bt_")}
    s = backtest_summary(res, ev, p)
    bl = frequency_baseline(res.display, p, CFG.thresholds, res.span)
    assert write_backtest(con, "run1", s, ev, bl) == {RUNS_TABLE: 1, EVENTS_TABLE: 5, BASELINE_TABLE: 3}
    write_backtest(con, "run2", s, ev.iloc[:1], bl)
    assert _counts(con, "run1") == (1, 5, 3) and _counts(con, "run2") == (1, 1, 3)
    # rerun run1 with other results: its rows are replaced, run2's are kept
    write_backtest(con, "run1", {**s, "hit_rate": 0.25}, ev.iloc[:2], bl.iloc[:1])
    assert _counts(con, "run1") == (1, 2, 1) and _counts(con, "run2") == (1, 1, 3)
    assert con.execute(f"SELECT hit_rate FROM {RUNS_TABLE} WHERE run_id = 'run1'").fetchone()[0] == 0.25
    after = {k: v for k, v in _snapshot(con).items() if not k.startswith("bt_")}
    assert after == before and after["daily_metrics"][1] == [(pd.Timestamp("2024-01-02").date(), "AAA", 100.5, 1.0)]
    # types and NULLs: dates are DATE, NaN became NULL, params is JSON of the config
    types = dict(con.execute(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{EVENTS_TABLE}'").fetchall())
    assert types["date"] == "DATE" and types["days_to_first_dist"] == "INTEGER" and types["open_at_end"] == "BOOLEAN"
    assert types["hit"] == types["hit_5d"] == types["hit_at_dist"] == "BOOLEAN" and types["event_id"] == "INTEGER"
    n_null = con.execute(f"SELECT count(*) FROM {EVENTS_TABLE} WHERE run_id = 'run2' AND days_to_first_dist IS NULL").fetchone()[0]
    assert n_null == 0
    write_backtest(con, "run3", s, ev, bl)
    nulls = con.execute(f"SELECT count(*) FILTER (days_to_first_dist IS NULL), count(*) FILTER (hit IS NULL), "
                        f"count(*) FILTER (hit), count(*) FILTER (failure_mode IS NULL) "
                        f"FROM {EVENTS_TABLE} WHERE run_id = 'run3'").fetchone()
    assert nulls == (2, 2, 2, 4)  # 2 open at end; 2 winners (+ the 2 open) without a failure mode
    params = json.loads(con.execute(f"SELECT params FROM {RUNS_TABLE} WHERE run_id = 'run3'").fetchone()[0])
    assert params["exit"] == "first_dist" and params["buy_threshold"] == 70.0 and "hit_rate" not in params
    row = con.execute(f"SELECT date_start, n_symbols, high_quality_hit_rate FROM {RUNS_TABLE} WHERE run_id = 'run3'").fetchone()
    assert row == (pd.Timestamp("2024-01-02").date(), 3, 0.5)
    assert "win_loss_ratio" not in params and "sharpe_ratio" not in params and "win_loss" not in params


# The design's SQL (Accumulation_Score_backtest_plan.md, section 2.2), column for column.
DESIGN_EVENT_COLUMNS = """event_id, date, symbol, sector_etf, score_variant, score_value, buy_threshold,
    sell_threshold, entry_price, signal_close, trend_state, sma_20_slope, price_vs_sma_20_pct, rsi_14,
    opt_put_call_ratio, opt_iv_percentile, opt_put_call_ratio_5d_chg, regime, spy_vs_sma_50, vix_level,
    fwd_return_5d, fwd_return_10d, fwd_return_20d, days_to_first_dist, days_to_2x_consec_dist, return_at_first_dist,
    return_at_2x_consec_dist, max_drawdown_before_dist, max_gain_before_dist, hit_at_dist, hit_5d, hit_10d,
    parent_etf_aligned, signal_quality, failure_mode, created_at"""
DESIGN_RUN_COLUMNS = """run_id, run_timestamp, score_variant, z_window, buy_threshold, sell_threshold, exit_strategy,
    ticker_universe, regime_filter, date_start, date_end, total_signals, total_trades, hit_rate, avg_return,
    median_return, win_loss_ratio, sharpe_ratio, max_drawdown, avg_hold_days, signals_per_month,
    false_positive_rate, high_quality_hit_rate"""
DESIGN_BASELINE_COLUMNS = """symbol, date_start, date_end, accum_signals_count, dist_signals_count,
    avg_gap_accum_to_dist, median_gap_accum_to_dist, avg_gap_dist_to_accum, signals_per_month"""


def test_sql_written_from_the_design_runs(store, tiny):
    p, res, ev = tiny
    con = store
    s = backtest_summary(res, ev, p, universe="tier1+3")
    write_backtest(con, "run1", s, ev, frequency_baseline(res.display, p, CFG.thresholds, res.span, "B"))
    rows = con.execute(f"SELECT {DESIGN_EVENT_COLUMNS} FROM bt_signal_events ORDER BY event_id").fetchall()
    assert len(rows) == 5 and rows[0][:3] == (1, pd.Timestamp("2024-01-04").date(), "AAA")
    run = con.execute(f"SELECT {DESIGN_RUN_COLUMNS} FROM bt_backtest_runs").fetchall()
    assert len(run) == 1
    r = dict(zip([c.strip() for c in DESIGN_RUN_COLUMNS.split(",")], run[0]))
    assert (r["score_variant"], r["z_window"], r["buy_threshold"], r["exit_strategy"]) == ("B", 20, 70.0, "first_dist")
    assert (r["ticker_universe"], r["regime_filter"]) == ("tier1+3", "ALL")
    assert r["win_loss_ratio"] == res.metrics["win_loss"] and r["sharpe_ratio"] == res.metrics["sharpe"]
    assert r["high_quality_hit_rate"] == 0.5 and r["date_end"] == pd.Timestamp("2024-02-12").date()
    base = con.execute(f"SELECT {DESIGN_BASELINE_COLUMNS} FROM bt_frequency_baseline ORDER BY symbol").fetchall()
    assert [b[0] for b in base] == ["AAA", "BBB", "XLK"] and base[0][3:5] == (4, 3)
    # typical analysis queries from the design: by quality, by trend, hit at the distribution exit
    q = dict(con.execute("SELECT signal_quality, count(*) FROM bt_signal_events GROUP BY 1").fetchall())
    assert q == {"HIGH": 2, "LOW": 3}
    assert con.execute("SELECT count(*) FROM bt_signal_events WHERE hit_at_dist").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM bt_signal_events WHERE failure_mode IS NOT NULL").fetchone()[0] == 1
    fixed = Config.from_params({"buy_threshold": 70, "sell_threshold": 30, "exit": "hybrid_30d", "stop_loss": 0.05})
    res2 = Evaluator(p).run(fixed, display=tiny_display())
    write_backtest(con, "run2", backtest_summary(res2, signal_events(res2, p, compute_context(p)), p), ev.iloc[:0],
                   frequency_baseline(res2.display, p, fixed.thresholds, res2.span))
    got = con.execute("SELECT exit_strategy, max_days, stop_loss, ticker_universe FROM bt_backtest_runs "
                      "WHERE run_id = 'run2'").fetchone()
    assert got == ("hybrid_30d", 30, 0.05, "AAA,BBB,XLK")
    params = json.loads(con.execute("SELECT params FROM bt_backtest_runs WHERE run_id = 'run2'").fetchone()[0])
    assert Config.from_params({k: params[k] for k in params if k in fixed.to_params()}) == fixed  # JSON round-trips


def test_failed_write_leaves_bt_tables_as_they_were(store, tiny, monkeypatch):
    p, res, ev = tiny
    con = store
    s = backtest_summary(res, ev, p)
    bl = frequency_baseline(res.display, p, CFG.thresholds, res.span)
    write_backtest(con, "run1", s, ev, bl)
    before = _snapshot(con)
    real = outputs._insert_frame

    def failing(con_, table, df, types):
        if table == BASELINE_TABLE:  # the runs and events rows are already inserted when this fails
            raise RuntimeError("disk full")
        return real(con_, table, df, types)

    monkeypatch.setattr(outputs, "_insert_frame", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_backtest(con, "run1", {**s, "hit_rate": 0.0}, ev.iloc[:1], bl)
    with pytest.raises(RuntimeError, match="disk full"):
        write_backtest(con, "run9", s, ev, bl)
    assert _snapshot(con) == before
    assert _counts(con, "run1") == (1, 5, 3) and _counts(con, "run9") == (0, 0, 0)


def test_failed_first_write_creates_no_bt_table(tmp_path, tiny, monkeypatch):
    p, res, ev = tiny
    con = connect(tmp_path / "fresh.duckdb")
    monkeypatch.setattr(outputs, "_insert_frame", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        write_backtest(con, "r", backtest_summary(res, ev, p), ev, frequency_baseline(res.display, p, CFG.thresholds, res.span))
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert not any(n.startswith("bt_") for n in names)
    con.close()


def test_write_backtest_files(tmp_path, tiny):
    p, res, ev = tiny
    s = backtest_summary(res, ev, p)
    bl = frequency_baseline(res.display, p, CFG.thresholds, res.span)
    out = tmp_path / "output"
    paths = write_backtest_files(s, ev, bl, out_dir=out, run_id="r1")
    assert set(paths) == {"signal_events", "frequency_baseline", "backtest_runs"}
    pq = pd.read_parquet(paths["signal_events"])
    assert len(pq) == 5 and (pq.run_id == "r1").all()
    pd.testing.assert_frame_equal(pq.drop(columns="run_id"), ev, check_dtype=False)
    fb = pd.read_csv(paths["frequency_baseline"])
    assert list(fb.columns) == ["run_id", *BASELINE_COLUMNS] and fb.accum_episodes_count.tolist() == [2, 2, 1]
    write_backtest_files(s, ev.iloc[:1], bl, out_dir=out, run_id="r2")
    text = paths["backtest_runs"].read_text().splitlines()
    assert len(text) == 3 and text[0].startswith("run_id,created_at,") and sum(t.startswith("run_id") for t in text) == 1
    assert len(pd.read_parquet(paths["signal_events"])) == 1  # per-run file replaced
    # a summary with a new key: the CSV is rewritten with the union of columns, earlier rows kept
    write_backtest_files({**s, "new_metric": 1.5}, ev, bl, out_dir=out, run_id="r3")
    runs = pd.read_csv(paths["backtest_runs"])
    assert runs.run_id.tolist() == ["r1", "r2", "r3"] and runs.new_metric.isna().tolist() == [True, True, False]
    assert runs.hit_rate.tolist() == pytest.approx([s["hit_rate"]] * 3)
    assert not list(out.glob(".*tmp"))


# ------------------------------------------------------------------------------------------------ cross-checks


def _random_panel(rng: np.random.Generator, T_: int, N: int, close: np.ndarray | None = None) -> Panel:
    if close is None:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T_, N)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    o = prev * np.exp(rng.normal(0, 0.01, close.shape))
    o[rng.random(o.shape) < 0.01] = np.nan  # missing opens: fills move to the next finite open
    hi = np.fmax(o, close) * 1.01
    lo = np.fmin(o, close) * 0.99
    dates = pd.bdate_range("2022-01-03", periods=T_)
    syms = [f"S{i:02d}" for i in range(N)]
    df = pd.DataFrame({
        "date": np.repeat(dates, N), "symbol": np.tile(syms, T_),
        "open": o.ravel(), "high": hi.ravel(), "low": lo.ravel(), "close": close.ravel(),
    })
    return Panel.from_frame(df)


def _reference_path(p: Panel, disp: np.ndarray, sell: float, data_end: int, sym: int, e: int, x: int, entry: float):
    """Plain loops: (days to first dist, ret at first dist, max drawdown, max gain) of one event."""
    O, H, L = p["open"][:, sym], p["high"][:, sym], p["low"][:, sym]
    k = next((k for k in range(e, data_end) if disp[k, sym] <= sell), None)
    end = x if k is None else k
    j = None if k is None else next((j for j in range(k + 1, data_end) if np.isfinite(O[j])), None)
    return (np.nan if k is None else k - e, np.nan if j is None else O[j] / entry - 1,
            np.nanmin(L[e:end + 1]) / entry - 1, np.nanmax(H[e:end + 1]) / entry - 1)


def _check_against_engine(p: Panel, rng: np.random.Generator) -> None:
    T_, N = p.shape
    disp = np.clip(50 + 25 * rng.standard_normal((T_, N)), 0, 100)
    ctx = compute_context(p)
    ev_ = Evaluator(p)
    span = Span(10, T_ - 40, T_ - 5)
    row_of = {d: i for i, d in enumerate(pd.DatetimeIndex(p.dates.astype("datetime64[ns]")))}
    sym_of = {s: i for i, s in enumerate(p.symbols)}
    for exit_, fwd_h in (("fixed_10d", 10), ("fixed_20d", 20), ("first_dist", None), ("2x_consec_dist", None)):
        cfg = Config.from_params({"buy_threshold": 80, "sell_threshold": 20, "exit": exit_})
        res = ev_.run(cfg, span, display=disp)
        ev = signal_events(res, p, ctx)
        assert len(ev) == len(res.trades) and ev.open_at_end.sum() == res.metrics["open_at_end"]
        closed = ev[~ev.open_at_end]
        assert len(closed) > 20
        e = closed.entry_date.map(row_of).to_numpy()
        x = closed.exit_date.map(row_of).to_numpy()
        if fwd_h is not None:  # fixed_N: the trade IS the N-session forward return when no open was skipped
            regular = closed[x - e == fwd_h]
            assert len(regular) > 10
            np.testing.assert_allclose(regular.gross_return, regular[f"fwd_return_{fwd_h}d"], rtol=1e-12)
            assert (regular.hit == (regular.net_return > 0)).all()
        else:  # signal exits: filled at the next finite open after the first qualifying distribution close
            days = "days_to_first_dist" if exit_ == "first_dist" else "days_to_2x_consec_dist"
            k = e + closed[days].to_numpy()
            assert (x >= k + 1).all() and (x == k + 1).mean() > 0.9
            np.testing.assert_allclose(closed.gross_return, closed[days.replace("days_to", "return_at")], rtol=1e-12)
        for r in ev.itertuples():
            s, ei, xi = sym_of[r.symbol], row_of[r.entry_date], row_of[r.exit_date]
            ref = _reference_path(p, disp, 20.0, span.data_end, s, ei, xi, r.entry_price)
            got = (r.days_to_first_dist, r.return_at_first_dist, r.max_drawdown_before_dist, r.max_gain_before_dist)
            np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=f"{r.symbol} entry row {ei}")
            assert r.max_drawdown_before_dist <= 0 <= r.max_gain_before_dist


def test_outcomes_agree_with_the_engine_on_random_prices():
    rng = np.random.default_rng(7)
    _check_against_engine(_random_panel(rng, 400, 8), rng)


def test_outcomes_agree_with_the_engine_on_real_prices():
    f = REAL / "prices_daily.csv.gz"
    if not f.exists():
        pytest.skip(f"real data not found at {f}")
    df = pd.read_csv(f)
    df = df[df.symbol.isin(["AAPL", "MSFT", "NVDA", "JPM", "XLE", "TSLA"])]
    close = df.pivot(index="date", columns="symbol", values="close").to_numpy(dtype=float)
    rng = np.random.default_rng(11)
    _check_against_engine(_random_panel(rng, close.shape[0], close.shape[1], close=close), rng)


def test_context_of_another_panel_is_rejected(tiny):
    p, res, _ = tiny
    with pytest.raises(ParameterError, match=r"context\['beta'\].shape must be equal to the panel shape \(30, 3\)"):
        signal_events(res, p, compute_context(p.slice(0, 20)))


# ------------------------------------------------------------------------------------------------ market_regimes


def test_market_regimes_table_from_the_store_migration_and_written_rows(tmp_path):
    from optimizer.engine.context import market_regime_frame
    from optimizer.report.backtest import REGIMES_TABLE, write_market_regimes

    rng = np.random.default_rng(3)
    T_ = 260
    dates = pd.bdate_range("2022-01-03", periods=T_)
    blocks = (np.arange(T_) // 40) % 2
    lr = np.where(blocks == 0, 0.001 + rng.normal(0, 0.005, T_), -0.002 + rng.normal(0, 0.025, T_))
    spy = 400 * np.exp(np.cumsum(lr))
    vix = np.where(blocks == 0, 14.0, 45.0) + rng.normal(0, 1, T_)
    df = pd.DataFrame({"date": dates, "symbol": "AAA", "open": spy, "high": spy, "low": spy, "close": spy})
    market = pd.DataFrame({"date": dates, "spy_open": spy, "spy_close": spy, "spy_high": spy * 1.005,
                           "spy_low": spy * 0.995, "spy_volume": rng.uniform(5e7, 1e8, T_), "vix": vix})
    p = Panel.from_frame(df, market=market)
    ctx = compute_context(p, {"min_train": 60})
    frame = market_regime_frame(p, ctx)
    assert len(frame) == T_ and (frame.symbol == "SPY").all()
    known = frame.regime != "UNKNOWN"
    assert known.sum() > 100 and frame.probability[~known].isna().all() and frame.probability[known].between(0.25, 1).all()
    # doc 004 multipliers, with the VIX > 40 override on the stressed blocks
    assert (frame.position_multiplier[frame.vix_level > 40] == 0.1).all()
    calm = known & (frame.vix_level < 40)
    mult = frame.regime[calm].map({"BULL_LOW_VOL": 1.0, "BULL_HIGH_VOL": 0.5, "BEAR_LOW_VOL": 0.5, "BEAR_HIGH_VOL": 0.25})
    np.testing.assert_array_equal(frame.position_multiplier[calm], mult)
    assert frame.detected_at.iloc[5] == dates[5] + pd.Timedelta(hours=16)
    assert set(frame.features.iloc[-1]) == {"rv20", "mom20", "trend", "volume_ratio", "range20", "iv", "iv_rv_spread"}
    con = connect(tmp_path / "s.duckdb")  # the migration created the table
    assert write_market_regimes(con, frame) == T_
    assert write_market_regimes(con, frame.iloc[200:]) == T_ - 200  # rewriting a span replaces its rows
    got = con.execute(f"SELECT count(*), count(DISTINCT date), count(probability) FROM {REGIMES_TABLE}").fetchone()
    assert got == (T_, T_, int(known.sum()))
    row = con.execute(f"SELECT regime, position_multiplier, features, detected_at FROM {REGIMES_TABLE} "
                      "WHERE date = ?", [dates[-1].date()]).fetchone()
    assert row[0] == frame.regime.iloc[-1] and row[1] == frame.position_multiplier.iloc[-1]
    assert json.loads(row[2])["iv"] == pytest.approx(vix[-1]) and row[3] == dates[-1] + pd.Timedelta(hours=16)
    con.close()
