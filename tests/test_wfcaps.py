"""The walk-forward's one book keeps the position caps across window boundaries (docs/STATS.md "One book").

Before: the book blocked a symbol it still held from an earlier window, but ``max_positions`` / ``max_per_sector``
saw only the window's own positions: right after a boundary the book held up to ``max_positions`` trades carried
from window k plus ``max_positions`` new ones of window k+1. Now the book's carried trades hold their slots (and
their sector's) in the window's run until they exit, by the engine's own rule (an exit due at an open frees the slot
for the entries at that open; an intraday or open-at-end exit at the next one).

Oracles: hand-computed candle tables run on the date-major kernel AND the independent reference engine
(tests/reference_engine.py ``ref_trades_capped(carried=)``); random configurations with random carried positions,
kernel vs reference; on the synthetic stores, the count of positions the stitched book holds at each open (the
engine's holding rule, counted from the stitched trades); a capless run identical to the run without the argument.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.engine.panel import Panel
from optimizer.engine.simulate import (
    EXIT_REASONS, INTRADAY_REASONS, Caps, Costs, ExitParams, RiskParams, Span, Thresholds, Trades, carried_slots,
    simulate, simulate_counted,
)
from optimizer.study.spec import load_spec
from reference_engine import RefExit, RefRisk, ref_trades_capped

ZERO = (0.0, 0.0)


def _panel(opens_by_symbol: dict[str, list], sectors: dict[str, str] | None = None) -> Panel:
    frames = []
    for sym, opens in opens_by_symbol.items():
        o = np.array(opens, dtype=float)
        frames.append(pd.DataFrame({"date": pd.bdate_range("2024-01-02", periods=len(o)), "symbol": sym,
                                    "open": o, "high": o + 0.5, "low": o - 0.3, "close": o}))
    return Panel.from_frame(pd.concat(frames), sectors=sectors or {s: "XLK" for s in opens_by_symbol})


def _carried(rows: list[tuple[int, int, int, str]]) -> Trades:
    """Trades from (symbol, entry_idx, exit_idx, exit reason) rows (prices do not matter to the slots)."""
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    n = len(rows)
    return Trades(i([r[0] for r in rows]), i([r[1] - 1 for r in rows]), i([r[1] for r in rows]),
                  i([r[2] for r in rows]), np.ones(n), np.ones(n), i([EXIT_REASONS.index(r[3]) for r in rows]),
                  np.zeros(n))


def _both(panel, disp, exit_kw, caps, carried, risk_kw=None):
    """(reference, kernel) trades as sorted (symbol, signal, entry, exit, reason) tuples."""
    T = disp.shape[0]
    ref = ref_trades_capped(panel, disp, 70.0, 30.0, RefExit(**exit_kw), ZERO, 0, T, T, max_positions=caps[0],
                            max_per_sector=caps[1], risk=RefRisk(**(risk_kw or {})), carried=carried)
    fast = simulate(panel, disp, Thresholds(70.0, 30.0), ExitParams(**exit_kw), Costs(0.0, 0.0), Span(0, T, T),
                    caps=Caps(*caps), risk=RiskParams(**(risk_kw or {})), carried=_carried(carried))
    names = panel.symbols
    ref_t = sorted((names[int(r.symbol)], int(r.signal_idx), int(r.entry_idx), int(r.exit_idx), r.exit_reason)
                   for r in ref.itertuples(index=False))
    fast_t = sorted((names[int(fast.symbol[i])], int(fast.signal_idx[i]), int(fast.entry_idx[i]),
                     int(fast.exit_idx[i]), EXIT_REASONS[int(fast.exit_reason[i])]) for i in range(len(fast)))
    return ref_t, fast_t


# ---- hand-computed tables -------------------------------------------------------------------------------------

def _four_signalling(T=12):
    """AAA..DDD signal at every close (display 80, 79, 78, 77: AAA ranks first); CR1, CR2 (the carried symbols)
    never signal."""
    names = ["AAA", "BBB", "CCC", "DDD", "CR1", "CR2"]
    panel = _panel({s: [10.0 + k] * T for k, s in enumerate(names)})
    disp = np.full((T, 6), 50.0)
    disp[:, :4] = [80.0, 79.0, 78.0, 77.0]
    return panel, disp


@pytest.mark.parametrize("second_reason, third_entry", [("stop_loss", 6), ("open_at_end", 6), ("fixed", 5)])
def test_two_carried_positions_hold_their_slots_until_their_exits(second_reason, third_entry):
    """max_positions 3. CR1 carried from row 0 to its exit at the OPEN of 3 (fixed); CR2 to row 5.
    Close 0: both carried positions hold 2 slots at open 1: one entry (AAA at 1).
    Close 1: still 2 carried + AAA = 3: nothing. Close 2: CR1 leaves at the open of 3: one slot, BBB enters at 3.
    CR2 leaving during bar 5 (a stop) or at its close (open at end) still holds its slot at the open of 5, so
    CCC enters at 6; leaving at the open of 5 (fixed) it frees it for CCC at 5. DDD never gets a slot (20-session
    exits: every position is still open at the data end, row 11). Without the carried positions AAA, BBB and CCC
    all enter at 1."""
    panel, disp = _four_signalling()
    ex = {"rule": "fixed", "hold_days": 20}
    carried = [(4, 0, 3, "fixed"), (5, 0, 5, second_reason)]
    want = [("AAA", 0, 1, 11, "open_at_end"), ("BBB", 2, 3, 11, "open_at_end"),
            ("CCC", third_entry - 1, third_entry, 11, "open_at_end")]
    for got in _both(panel, disp, ex, (3, None), carried):
        assert got == want
    for got in _both(panel, disp, ex, (3, None), []):
        assert [g[:3] for g in got] == [("AAA", 0, 1), ("BBB", 0, 1), ("CCC", 0, 1)]


def test_the_brief_case_one_entry_at_row_2_then_one_after_each_carried_exit():
    """2 carried positions exiting at rows 3 (at the open) and 5 (intraday), max_positions 3, 4 symbols signalling
    from the close of row 1 on (the signal window starts there): exactly 1 entry at row 2, one at row 3 (after the
    first exit's open), one at row 6 (the row after the intraday exit's bar)."""
    panel, disp = _four_signalling()
    disp[0, :4] = 50.0
    ex = {"rule": "fixed", "hold_days": 20}
    for got in _both(panel, disp, ex, (3, None), [(4, 0, 3, "fixed"), (5, 0, 5, "stop_loss")]):
        assert [g[2] for g in got] == [2, 3, 6] and [g[0] for g in got] == ["AAA", "BBB", "CCC"]


def test_a_carried_position_entering_later_takes_its_slot_from_its_entry_open():
    """max_positions 1; only AAA signals (every close; fixed 2-session exits). A carried position enters at the
    open of 4 (as the engine's own pending entry, it holds the slot at the close of 3) and exits at the open of 6.
    AAA: entry 1, exit at the open of 3 (flat at the close of 3); its signals at the closes 3 and 4 are refused
    (the carried position holds the opens 4 and 5); at the close of 5 the slot is free at 6: entry 6, exit 8; the
    close of 8 enters at 9 (open at the data end). Without it: entries 1, 4, 7."""
    panel, disp = _four_signalling(T=10)
    disp[:, 1:4] = 50.0
    ex = {"rule": "fixed", "hold_days": 2}
    for got in _both(panel, disp, ex, (1, None), [(4, 4, 6, "first_dist")]):
        assert [g[:3] for g in got] == [("AAA", 0, 1), ("AAA", 5, 6), ("AAA", 8, 9)]
    for got in _both(panel, disp, ex, (1, None), []):
        assert [g[:3] for g in got] == [("AAA", 0, 1), ("AAA", 3, 4), ("AAA", 6, 7)]


def test_a_carried_position_holds_its_sectors_slot():
    """max_per_sector 1: a carried XLK position until the open of 4. AAA (XLK, the higher display) is refused at
    the closes 0-2, CCC (XLF) enters at 1; at the close of 3 the XLK slot is free at open 4: AAA enters at 4."""
    panel = _panel({"AAA": [10.0] * 8, "CCC": [30.0] * 8, "CR1": [40.0] * 8},
                   sectors={"AAA": "XLK", "CCC": "XLF", "CR1": "XLK"})
    disp = np.full((8, 3), 50.0)
    disp[:, 0], disp[:, 1] = 90.0, 80.0
    ex = {"rule": "fixed", "hold_days": 10}
    for got in _both(panel, disp, ex, (None, 1), [(2, 0, 4, "fixed")]):
        assert [g[:3] for g in got] == [("AAA", 3, 4), ("CCC", 0, 1)]
    for got in _both(panel, disp, ex, (None, 1), []):
        assert [g[:3] for g in got] == [("AAA", 0, 1), ("CCC", 0, 1)]


def test_the_correlation_cap_compares_candidates_with_the_carried_positions():
    """corr_cap 0.5 over 5 returns: AAA moves exactly as the carried CR1 (correlation 1), BBB against it. While CR1
    is carried (to the open of 7) AAA is refused; at the close of 6 it enters. BBB enters at its first signal
    (without CR1, AAA and BBB enter at the close of 5: BBB moves against AAA too)."""
    base = [10.0, 11.0, 10.5, 11.5, 10.8, 12.0, 11.0, 12.5, 11.7, 12.9, 12.0, 13.0]
    anti = [30.0 - 0.5 * (x - 10.0) for x in base]
    panel = _panel({"AAA": base, "BBB": anti, "CR1": [2 * x for x in base]})
    disp = np.full((12, 3), 50.0)
    disp[5:, 0] = 90.0
    disp[5:, 1] = 80.0
    ex = {"rule": "fixed", "hold_days": 20}
    risk = {"corr_cap": 0.5, "corr_window": 5}
    for got in _both(panel, disp, ex, (None, None), [(2, 0, 7, "fixed")], risk):
        assert [g[:3] for g in got] == [("AAA", 6, 7), ("BBB", 5, 6)]
    for got in _both(panel, disp, ex, (None, None), [], risk):
        assert [g[:3] for g in got] == [("AAA", 5, 6), ("BBB", 5, 6)]


def test_carried_slots_free_at_the_exit_open_or_after_the_exit_bar():
    rows = [(0, 1, 5, r) for r in EXIT_REASONS]
    sym, ent, until = carried_slots(_carried(rows))
    want = [6 if (r in INTRADAY_REASONS or r == "open_at_end") else 5 for r in EXIT_REASONS]
    assert until.tolist() == want and ent.tolist() == [1] * len(rows) and sym.tolist() == [0] * len(rows)
    # kept: those holding a slot at some open after the start (until > start + 1)
    assert carried_slots(_carried([(0, 1, 5, "fixed"), (1, 1, 5, "stop_loss")]), start=4)[0].tolist() == [1]
    assert all(a.dtype == np.int64 and a.size == 0 for a in carried_slots(None))


# ---- random configurations: kernel vs reference ---------------------------------------------------------------

def test_carried_positions_match_the_reference_on_random_configurations():
    """Random exits, caps, correlation caps and carried positions (random symbols, rows and exit reasons) on the
    oracle's synthetic panel: the date-major kernel's trades equal the reference's; the carried positions bind
    (fewer or other trades than without them) in many configurations."""
    from test_engine_oracle import Oracle, compare_trades, fast_frame, random_config, synthetic_panel

    oracle = Oracle(synthetic_panel(seed=37, T=160, N=10))
    panel = oracle.panel
    T, N = panel.shape
    rng = np.random.default_rng(77)
    bound = 0
    for i in range(14):
        cfg = random_config(rng, T)
        cfg["buy"] = float(rng.uniform(55, 65))
        caps = [(3, None), (None, 1), (4, 2)][i % 3]
        rk = {"corr_cap": float(rng.uniform(0.1, 0.4)), "corr_window": int(rng.integers(5, 30))} if i % 4 == 3 else {}
        sig_start, sig_end, data_end = cfg["span"]
        n_car = int(rng.integers(1, 6))
        carried = []
        for _ in range(n_car):
            e = int(rng.integers(max(0, sig_start - 10), sig_end))
            carried.append((int(rng.integers(0, N)), e, int(e + rng.integers(0, 25)),
                            str(rng.choice(EXIT_REASONS))))
        where = f"config {i}: {cfg} caps {caps} {rk} carried {carried}"
        disp = oracle.ref_display(cfg["score"])
        args = (panel, disp, cfg["buy"], cfg["sell"], RefExit(**cfg["exit"]), cfg["costs"], sig_start, sig_end,
                data_end)
        kw = {"max_positions": caps[0], "max_per_sector": caps[1], "risk": RefRisk(**rk)}
        ref = ref_trades_capped(*args, **kw, carried=carried)
        free = ref_trades_capped(*args, **kw)
        fast, _ = simulate_counted(panel, disp, Thresholds(cfg["buy"], cfg["sell"]), ExitParams(**cfg["exit"]),
                                   Costs(*cfg["costs"]), Span(sig_start, sig_end, data_end), Caps(*caps),
                                   risk=RiskParams(**rk), carried=_carried(carried))
        compare_trades(ref, fast_frame(fast), where, panel.symbols)
        key = ["symbol", "entry_idx"]
        bound += not ref[key].reset_index(drop=True).equals(free[key].reset_index(drop=True))
    assert bound >= 10, bound  # 14 of 14 on this seed


def test_without_caps_the_carried_positions_change_nothing():
    """No cap and no correlation cap: the symbol-major kernel's trades (the run without the argument), bit for
    bit, with or without carried positions, on both kernels."""
    panel, disp = _four_signalling()
    ex = ExitParams("fixed", hold_days=3)
    car = _carried([(4, 0, 9, "fixed"), (5, 0, 9, "stop_loss")])
    base = simulate(panel, disp, Thresholds(), ex, Costs(), Span(0, 12, 12))
    for kernel in ("symbol", "date"):
        got, _ = simulate_counted(panel, disp, Thresholds(), ex, Costs(), Span(0, 12, 12), kernel=kernel,
                                  carried=car)
        for f in ("symbol", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason"):
            np.testing.assert_array_equal(np.sort(getattr(got, f)), np.sort(getattr(base, f)))


# ---- the walk-forward on the planted store ----------------------------------------------------------------------

# the tiny spec of tests/test_walkforward_distributed.py (5 windows of train 4 / test 2 months, 4 trials each)
_DIST = Path(__file__).with_name("test_walkforward_distributed.py").read_text(encoding="utf-8")
SPEC = (re.search(r'SPEC = f"""(.*?)"""', _DIST, re.S).group(1)
        .replace("{{", "{").replace("}}", "}").replace("{N}", "4").replace('name = "wfd"', 'name = "wfcaps"'))
MEMORY = "sqlite:///:memory:"
# gone before the open of their exit row: the reasons filled AT an open (every other exit holds its exit row's open)
AT_OPEN = ("fixed", "first_dist", "2x_consec_dist", "score_decay", "max_days", "time_stop")


def _walkforward(tmp_path, db, extra: str):
    p = tmp_path / "wfcaps.toml"
    p.write_text(SPEC.replace("time_stop = 10\n", f"time_stop = 10\n{extra}\n"), encoding="utf-8")
    spec = load_spec(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spec, wfmod.run_walkforward(spec, db, MEMORY, out_dir=None)


def _held_at_each_open(trades: pd.DataFrame, sectors) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Positions the stitched book holds at each open t (all, and per sector): entered at or before t and not gone
    before t's open (an exit at an open of t is gone; a stop or target during bar t, or an open-at-end trade that
    the account lets go at the close of t, still holds it)."""
    T = int(trades["exit_idx"].max()) + 1
    n = np.zeros(T, dtype=int)
    per: dict[str, np.ndarray] = {}
    for r in trades.itertuples(index=False):
        stop = r.exit_idx if r.exit_reason in AT_OPEN else r.exit_idx + 1
        n[r.entry_idx:stop] += 1
        sec = sectors[r.symbol_idx]
        if sec:
            per.setdefault(sec, np.zeros(T, dtype=int))[r.entry_idx:stop] += 1
    return n, per


def test_the_stitched_book_never_holds_more_than_the_caps(tmp_path, synth_db):
    """max_positions = 3, max_per_sector = 1 on the planted store. Before (the book blocked symbols only; the caps
    saw each window's own positions): the stitched book held 5 positions at some open, 2 of XLK and 2 of XLY
    (67 trades). Now: at most 3, at most 1 per sector (62 trades); the book says how many entries the caps refused
    for the slots its positions held (20 of 21 refused), and its figures are those of the trades it took."""
    spec, res = _walkforward(tmp_path, synth_db, "max_positions = 3\nmax_per_sector = 1")
    ctx, _, _ = wfmod._setup(spec, synth_db, MEMORY, False, None)
    n, per = _held_at_each_open(res.trades, ctx.panel.sectors)
    assert n.max() == 3, n.max()  # the cap binds, and is kept
    assert max(v.max() for v in per.values()) == 1
    book = res.stats["book"]
    assert book["windows_blocked"] >= 1 and book["capped"] >= 1 and book["capped"] <= book["refused"]
    assert "by the position caps" in wfmod.book_text(res.stats)
    assert sum(len(w.trades) for w in res.windows) == len(res.trades)
    closed = int((~res.trades["open_at_end"]).sum())
    assert res.stats["inference"]["n_trades"] == closed == res.oos["closed_trades"]


def test_a_capless_walkforward_is_the_same_with_the_carried_positions(tmp_path, synth_db, monkeypatch):
    """Without caps the carried positions hold no slot that matters: the walk-forward run with the book's carried
    trades passed to every window (now) and without them (``_carried`` answering None, as before) give the same
    trades, excess, statistics and verdict, bit for bit; no entry is counted as refused by the caps."""
    spec, now = _walkforward(tmp_path, synth_db, "")
    monkeypatch.setattr(wfmod, "_carried", lambda parts, start: None)
    _, before = _walkforward(tmp_path, synth_db, "")
    pd.testing.assert_frame_equal(now.trades, before.trades)
    for a, b in zip(now.windows, before.windows):
        np.testing.assert_array_equal(a.excess, b.excess)
        assert a.oos_metrics == b.oos_metrics
    assert now.stats["inference"] == before.stats["inference"] and now.oos == before.oos
    assert now.stats["cost_stress"] == before.stats["cost_stress"]
    assert now.stats["book"]["windows_blocked"] >= 1 and now.stats["book"]["capped"] == 0
