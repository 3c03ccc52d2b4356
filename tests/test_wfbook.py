"""The walk-forward's stitched out-of-sample record is ONE continuous book (optimizer/validate/walkforward.py,
``_book``): no symbol is held twice at once across window boundaries.

Before: each window's OOS run started flat, so window k+1's winner could buy a symbol that window k's trade still
held (its trades run up to ``purge`` sessions past the test end): on the tiny spec below 5 of 227 stitched trades
(planted store) and 33 of 425 (null store) overlapped a trade of the same symbol. Now window k+1 may not enter a
symbol before the book's trade of it has exited; it enters after that exit exactly as the engine would after its
own (a signal at the close of the exit session fills at the next open).

Oracles: a hand-computed two-window toy (which entry is refused, which later entry still happens, on the real
kernel through ``simulate``); on the synthetic stores, the engine itself (a symbol's trades in a blocked window are
the engine's trades of that symbol with the signal window starting at the book's exit session: symbols are
independent without caps); and the invariant (no two trades of one symbol overlap)."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.engine.evaluate import Evaluator
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.engine.simulate import Costs, ExitParams, Span, Thresholds, Trades, simulate
from optimizer.study.spec import load_spec
from optimizer.study.splits import Window
from optimizer.validate.stats import DailyExcess, daily_excess

# the tiny spec of tests/test_walkforward_distributed.py (5 windows of train 4 / test 2 months, 4 trials each)
_DIST = Path(__file__).with_name("test_walkforward_distributed.py").read_text(encoding="utf-8")
SPEC = (re.search(r'SPEC = f"""(.*?)"""', _DIST, re.S).group(1)
        .replace("{{", "{").replace("}}", "}").replace("{N}", "4").replace('name = "wfd"', 'name = "wfbook"'))
MEMORY = "sqlite:///:memory:"


def _overlaps(trades: pd.DataFrame) -> int:
    """Trades entering a symbol while an earlier trade of it is still held (entry row <= an earlier exit row)."""
    n = 0
    for _, g in trades.sort_values(["symbol_idx", "entry_idx"], kind="mergesort").groupby("symbol_idx"):
        e, x = g["entry_idx"].to_numpy(), g["exit_idx"].to_numpy()
        n += int((e[1:] <= np.maximum.accumulate(x)[:-1]).sum())
    return n


# ---- the hand-made toy ---------------------------------------------------------------------------------------

def _toy_panel() -> Panel:
    T = 20
    px = np.column_stack([np.linspace(10, 12, T), np.linspace(20, 21, T)])
    f = {k: px.copy() for k in ("open", "high", "low", "close")}
    return Panel(dates=pd.bdate_range("2024-01-01", periods=T).to_numpy(), symbols=("AAA", "BBB"), fields=f)


def _toy_display() -> np.ndarray:
    """Accumulation closes (display 90 >= buy 70): symbol 0 on rows 6, 8, 10, 11, 12; symbol 1 on row 9."""
    d = np.full((20, 2), 50.0)
    d[[6, 8, 10, 11, 12], 0] = 90.0
    d[9, 1] = 90.0
    return d


@pytest.mark.parametrize("regime_off_row", [None, 11])
def test_toy_two_windows_the_carried_trade_blocks_the_entry_and_the_later_entry_happens(regime_off_row):
    """fixed 4-session exit, purge 4. Window 0 tests rows [2, 8) (data end 12), window 1 rows [8, 14) (data end 18).

    Window 0: AAA signal at the close of 6 -> entry 7, exit at the open of 11 (held rows 7..11).
    Window 1 started flat (before): AAA signal 8 -> entry 9, exit 13: AAA held twice on rows 9..11. The book:
    the signals of 8 and 10 (< 11, the carried trade's exit) are refused; the one of 11 (the exit's own close, flat
    there as after the engine's own exit) enters at 12 -> exit 16. With the regime filter closing row 11 (AND-ed
    with the block), the next signal, 12, enters at 13 -> exit 17. BBB (signal 9 -> 10..14) is not touched."""
    p, D = _toy_panel(), _toy_display()
    ok = np.ones(20, dtype=bool)
    if regime_off_row is not None:
        ok[regime_off_row] = False
    wins = [Window(0, 0, 2, 2, 8), Window(1, 0, 8, 8, 14)]
    th, ex, co = Thresholds(70.0, 30.0), ExitParams("fixed", hold_days=4), Costs(0.0, 0.0)

    def run(r, held, carried=None):  # no caps: the carried trades hold no slot that matters
        w = r.window
        disp = D if held is None else wfmod._blocked_display(D, w.test_start, held)
        return SimpleNamespace(window=w, trades=simulate(p, disp, th, ex, co, Span(w.test_start, w.test_end,
                                                                                      w.test_end + 4), entry_ok=ok))

    flat = [run(SimpleNamespace(window=w), None) for w in wins]  # before: every window starts flat
    got = wfmod._book([SimpleNamespace(window=w) for w in wins], run, n_symbols=2)

    def rows(res):
        t = res.trades
        return sorted(zip(t.symbol.tolist(), t.signal_idx.tolist(), t.entry_idx.tolist(), t.exit_idx.tolist()))

    assert rows(flat[0]) == rows(got[0]) == [(0, 6, 7, 11)]
    assert rows(flat[1]) == [(0, 8, 9, 13), (1, 9, 10, 14)]  # AAA 9..13 overlaps the carried 7..11
    later = (0, 11, 12, 16) if regime_off_row is None else (0, 12, 13, 17)
    assert rows(got[1]) == sorted([later, (1, 9, 10, 14)])
    both = pd.concat([r.trades.to_frame() for r in got])
    assert _overlaps(pd.concat([r.trades.to_frame() for r in flat])) == 1 and _overlaps(both) == 0


def test_blocked_display_removes_only_the_cells_before_each_symbols_exit():
    D = _toy_display()
    held = np.array([11, 5])  # AAA held through row 11; BBB through row 5 (before the window: no block)
    B = wfmod._blocked_display(D, 8, held)
    assert np.isnan(B[8:11, 0]).all() and not np.isnan(B[[*range(8), *range(11, 20)], 0]).any()
    np.testing.assert_array_equal(B[:, 1], D[:, 1])
    assert not np.isnan(D).any()  # the input is not written


# ---- the synthetic stores ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    p = tmp_path_factory.mktemp("wfbook") / "wfbook.toml"
    p.write_text(SPEC, encoding="utf-8")
    return load_spec(p)


_RUNS: dict = {}


def _run(spec, db):
    """One walk-forward per store for the module (in-memory window studies)."""
    if db not in _RUNS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _RUNS[db] = wfmod.run_walkforward(spec, db, MEMORY, out_dir=None)
    return _RUNS[db]


@pytest.mark.parametrize("store", ["synth_db", "null_db"])
def test_stitched_oos_trades_of_one_symbol_never_overlap(spec, store, request):
    """Before: 5 overlapping trades of 227 on the planted store, 33 of 425 on the null one. Every downstream
    figure is the book's: the trades table, the windows' OOS trade counts, the daily series' trade count."""
    db = request.getfixturevalue(store)
    res = _run(spec, db)
    df = res.trades
    assert len(df) > 100 and _overlaps(df) == 0
    book = res.stats["book"]
    assert book["refused"] >= 1 and book["windows_blocked"] >= 1  # the fix did something on these markets
    assert sum(len(w.trades) for w in res.windows) == len(df)
    closed = int((~df["open_at_end"]).sum())
    assert res.stats["inference"]["n_trades"] == closed == res.oos["closed_trades"]
    assert sum(w.oos_metrics["closed_trades"] for w in res.windows) == closed
    _engine_oracle(spec, db, res)


def _engine_oracle(spec, db, res):
    """Each blocked window's trades = the engine's own: a symbol the book held through row x trades as the engine
    trades it with signals from x on (Span(max(test start, x), ...)); the other symbols as the flat run."""
    ctx, _, _ = wfmod._setup(spec, db, MEMORY, False, None)
    held = np.full(len(ctx.panel.symbols), -1)
    for r in res.windows:
        w = r.window
        data_end = min(w.test_end + ctx.purge, ctx.limit)
        sub = ctx.panel.slice(0, data_end)
        ev = Evaluator(sub, min_periods=spec.data.min_periods)
        ok = regime_entry_mask(sub, spec.data.regime)
        cfg = r.cfg(spec)
        mine = r.trades.to_frame()
        runs: dict[int, pd.DataFrame] = {}
        for s in range(len(ctx.panel.symbols)):
            start = max(w.test_start, int(held[s]))
            if start not in runs:
                runs[start] = (ev.run(cfg, Span(start, w.test_end, data_end), entry_ok=ok).trades.to_frame()
                               if start < w.test_end else mine.iloc[:0])
            want = runs[start]
            want = want[want["symbol_idx"] == s]
            got = mine[mine["symbol_idx"] == s]
            for c in ("signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason"):
                np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=f"window {w.index} {s} {c}")
        # the benchmark is matched to the trades the book took: the window's BenchmarkCache over its span
        np.testing.assert_array_equal(r.excess, ctx.bench.excess(r.trades, Span(w.test_start, w.test_end, data_end)))
        np.maximum.at(held, r.trades.symbol, r.trades.exit_idx)
    assert res.stats["inference"]["mean_per_trade"] == float(np.concatenate([r.excess for r in res.windows]).mean())


def test_mean_excess_per_trade_is_one_number(spec, synth_db):
    """inference.mean_per_trade (the verdict's) and oos.avg_excess_return are one computation: before, the first
    was the daily series' total / trades and the second the per-trade mean, 0.003532587918566848 vs
    0.0035325879185668426 on this run."""
    res = _run(spec, synth_db)
    assert res.stats["inference"]["mean_per_trade"] == res.oos["avg_excess_return"]
    assert res.verdict.to_dict()["verdict_gates"][0]["value"] == res.oos["avg_excess_return"]


def test_daily_excess_mean_per_trade_is_the_mean_of_the_trade_excess():
    close = np.array([[10.0], [11.0], [12.0], [13.0], [14.0], [15.0]])
    i = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    tr = Trades(i([0, 0, 0]), i([0, 1, 2]), i([1, 2, 3]), i([3, 4, 5]), np.array([11.0, 12.0, 13.0]),
                np.array([13.0, 14.0, 15.0]), i([0, 0, 0]), np.zeros(3), cost=0.0)
    ex = np.array([0.013, -0.004, 0.021])
    d = daily_excess(tr, ex, close, 1, 6)
    # one computation: the per-trade list's mean, bit for bit (before: total.sum() / 3 = 0.00999999999999999)
    assert d.mean_per_trade == float(ex.mean()) == 0.01
    z = np.zeros(1)
    assert math.isnan(DailyExcess(1, 2, z, z, z.astype(np.int64), z, np.zeros(0), z).mean_per_trade)
