"""The fused evaluation path (score combined inside the simulation, never materialised) against the materialised
display, both simulation kernels against each other, the parallel symbol blocks against one block, the trade
buffer's retry, the plain reference on the fused path, and forked workers after a parallel launch.

The materialised display is the input the oracle tests (test_engine_oracle.py, test_engine_timing.py) check
against tests/reference_engine.py, so "fused == materialised, exactly" carries those checks over to the fast path.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pandas as pd
import pytest

import optimizer.engine.simulate as sim_mod
from optimizer.engine.evaluate import Config, Evaluator, Result
from optimizer.engine.features import VARIANTS, FeatureCache
from optimizer.engine.score import ScoreParams, display_score, score_terms
from optimizer.engine.signals import count_signals
from optimizer.engine.simulate import Caps, Costs, ExitParams, Span, Thresholds, simulate_counted

from reference_engine import RefExit, ref_count_signals, ref_metrics, ref_trades
from test_engine_lookahead import _panel
from test_engine_oracle import compare_metrics, compare_trades, fast_frame

EXITS = ["fixed_10d", "first_dist", "2x_consec_dist", "hybrid_30d", "score_decay", "fixed_1d"]
TRADE_FIELDS = ("symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason", "score")


def _configs(n: int, seed: int, caps: bool = False):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        p = {"variant": str(rng.choice(VARIANTS)), "z_window": int(rng.choice([10, 20])),
             "w_short": float(rng.uniform(0.2, 1.0)), "w_lit": float(rng.uniform(0.0, 0.6)),
             "w_price": float(rng.uniform(0.0, 0.4)),
             "buy_threshold": int(rng.choice([45, 55, 65, 75])), "sell_threshold": int(rng.choice([25, 35, 40])),
             "exit": str(rng.choice(EXITS))}
        if rng.random() < 0.3:
            p["intensity_lo"], p["intensity_hi"] = float(rng.uniform(0.0, 0.9)), float(rng.uniform(1.0, 1.8))
        if rng.random() < 0.4:
            p["stop_loss"] = float(rng.uniform(0.005, 0.06))
        if rng.random() < 0.3:
            p["take_profit"] = float(rng.uniform(0.01, 0.1))
        if rng.random() < 0.3:
            p["time_stop"] = int(rng.integers(1, 15))
        if caps:
            p["max_positions"] = int(rng.integers(1, 5))
            if rng.random() < 0.5:
                p["max_per_sector"] = int(rng.integers(1, 3))
        yield Config.from_params(p)


def _spans(T: int) -> list[Span]:
    return [Span(0, T, T), Span(30, 150, 190), Span(100, T - 1, T), Span(5, 60, 60)]


def _entry_ok(i: int, T: int) -> np.ndarray | None:
    return None if i % 3 else (np.arange(T) % 4 != 1)


def _same_trades(a, b, where: str) -> None:
    for f in TRADE_FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"{where}: {f}")


@pytest.fixture(scope="module")
def panel():
    return _panel(seed=11, T=220, N=12)


@pytest.mark.parametrize("caps", [False, True])
def test_fused_run_equals_materialised_display_exactly(panel, caps):
    """Evaluator.run without a display (fused) and with the materialised display (as studies pass it, and as a
    C-ordered copy) give the same trades in the same order, the same signal count and identical metrics."""
    ev = Evaluator(panel)
    T = panel.shape[0]
    n_trades = 0
    reasons: set[str] = set()
    for i, cfg in enumerate(_configs(40, seed=3, caps=caps)):
        sp, ok = _spans(T)[i % 4], _entry_ok(i, T)
        fused = ev.run(cfg, sp, entry_ok=ok)
        disp = ev.display(cfg)
        for d in (disp, np.ascontiguousarray(disp)):
            given = ev.run(cfg, sp, d, ok)
            _same_trades(fused.trades, given.trades, f"config {i}")
            assert fused.metrics == given.metrics, f"config {i}"
        assert fused.metrics["total_signals"] == count_signals(disp, cfg.thresholds.buy, sp, ok)
        n_trades += len(fused.trades)
        reasons |= set(fused.trades.to_frame()["exit_reason"])
    assert n_trades > 300
    assert {"fixed", "first_dist", "stop_loss", "take_profit", "open_at_end"} <= reasons


def test_date_major_and_symbol_major_kernels_give_the_same_trades(panel):
    """Uncapped configurations through both kernels (fused and materialised score): same trades, same count."""
    fc = FeatureCache(panel)
    T = panel.shape[0]
    n = 0
    for i, cfg in enumerate(_configs(50, seed=4)):
        sp, ok = _spans(T)[i % 4], _entry_ok(i, T)
        terms = score_terms(fc, cfg.score)
        out = {}
        for src_name, src in (("fused", terms), ("display", terms.display())):
            for kernel in ("date", "symbol"):
                out[(src_name, kernel)] = simulate_counted(panel, src, cfg.thresholds, cfg.exit, cfg.costs, sp,
                                                           entry_ok=ok, kernel=kernel)
        ref_tr, ref_n = out[("display", "date")]
        for key, (tr, k) in out.items():
            assert k == ref_n, f"config {i} {key}: signal count"
            pd.testing.assert_frame_equal(tr.to_frame(), ref_tr.to_frame(), obj=f"config {i} {key}")
        n += len(ref_tr)
    assert n > 300


def test_parallel_symbol_blocks_equal_one_block(panel, monkeypatch):
    """Blocks of symbols on threads (three uneven blocks forced here) write their trades in symbol order: the
    result equals the serial single-block run exactly, metrics included."""
    T = panel.shape[0]
    cfgs = list(_configs(30, seed=5))
    serial = Evaluator(panel)
    runs = [serial.run(cfg, _spans(T)[i % 4], entry_ok=_entry_ok(i, T)) for i, cfg in enumerate(cfgs)]
    monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
    monkeypatch.setattr(sim_mod, "_blocks", lambda N: np.array([0, 1, 7, N], dtype=np.int64))
    par = Evaluator(panel)
    for i, (cfg, a) in enumerate(zip(cfgs, runs)):
        b = par.run(cfg, _spans(T)[i % 4], entry_ok=_entry_ok(i, T))
        _same_trades(a.trades, b.trades, f"config {i}")
        assert a.metrics == b.metrics


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("kernel", ["date", "symbol"])
def test_trade_buffer_retry_when_trades_exceed_the_first_guess(panel, monkeypatch, parallel, kernel):
    """A 1-session hold re-entered on every signal (buy threshold 0) trades far more often than the kernels'
    first buffer guess (rows x symbols / 8): the retry returns every trade, equal to the reference."""
    if parallel:
        monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
    T, N = panel.shape
    sp = Span(0, T, T)
    disp = display_score(FeatureCache(panel), ScoreParams(z_window=10))
    ex = ExitParams("fixed", hold_days=1)
    tr, n_sig = simulate_counted(panel, disp, Thresholds(0.0001, 0.0), ex, Costs(), sp, kernel=kernel)
    assert len(tr) > T * N // 8 + 16  # the first guess was too small
    ref = ref_trades(panel, disp, 0.0001, 0.0, RefExit("fixed", hold_days=1), (1.0, 5.0), 0, T, T)
    compare_trades(ref, fast_frame(tr), f"retry {kernel} parallel={parallel}", panel.symbols)
    assert n_sig == ref_count_signals(disp, 0.0001, 0, T)


def test_fused_path_matches_the_reference_engine(panel):
    """Evaluator.run (fused, no display given) against the plain reference on the reference's own display."""
    from reference_engine import ref_display

    ev = Evaluator(panel)
    T = panel.shape[0]
    n = 0
    for i, cfg in enumerate(_configs(12, seed=6)):
        sp = _spans(T)[i % 4]
        res = ev.run(cfg, sp)
        s = cfg.score
        disp = ref_display(panel, s.variant, s.w_short, s.w_lit, s.w_price, s.z_window,
                           intensity_lo=s.intensity_lo, intensity_hi=s.intensity_hi)
        e = cfg.exit
        rex = RefExit(e.rule, hold_days=e.hold_days, max_days=e.max_days, stop_loss=e.stop_loss,
                      take_profit=e.take_profit, time_stop=e.time_stop)
        costs = (cfg.costs.commission_bps, cfg.costs.slippage_bps)
        ref = ref_trades(panel, disp, cfg.thresholds.buy, cfg.thresholds.sell, rex, costs, sp.sig_start, sp.sig_end, sp.data_end)
        compare_trades(ref, fast_frame(res.trades), f"config {i}", panel.symbols)
        k = ref_count_signals(disp, cfg.thresholds.buy, sp.sig_start, sp.sig_end)
        compare_metrics(ref_metrics(ref, panel, (sp.sig_start, sp.sig_end, sp.data_end), costs, k), res.metrics, f"config {i}")
        n += len(ref)
    assert n > 100


def test_result_display_is_materialised_on_demand_and_read_only(panel):
    ev = Evaluator(panel)
    cfg = Config.from_params({"variant": "D", "z_window": 10, "exit": "first_dist"})
    res = ev.run(cfg)
    assert isinstance(res, Result)
    d = res.display
    np.testing.assert_array_equal(d, display_score(FeatureCache(panel), cfg.score))
    assert res.display is d  # materialised once
    with pytest.raises(AttributeError):
        res.metrics = {}  # type: ignore[misc]
    given = Result(res.config, res.span, res.trades, res.metrics, d)
    assert given.display is d
    back = pickle.loads(pickle.dumps(ev.run(cfg)))  # a lazy Result pickles its materialised display
    np.testing.assert_array_equal(back.display, d)
    assert back.metrics == res.metrics and len(back.trades) == len(res.trades)


def test_feature_cache_stores_terms_symbol_major_at_504_bytes_per_cell(panel):
    """63 float64 matrices (6 variant terms + 3 shared terms per window, 7 windows) = 504 bytes per cell; each
    returned (T x N) term is the transpose view of a contiguous read-only (N x T) array."""
    fc = FeatureCache(panel)
    fc.warm()
    T, N = panel.shape
    assert fc.nbytes == 504 * T * N
    for a in fc.tanh_terms("B", 20):
        assert a.shape == (T, N) and a.T.flags.c_contiguous and not a.flags.writeable


def _child(panel, cfg, q) -> None:
    q.put(Evaluator(panel).run(cfg).metrics)


def test_forked_worker_after_a_parallel_launch_runs_and_agrees(panel, monkeypatch):
    """A process that launched the parallel kernels, then forks (study --jobs, walk-forward workers): the child's
    evaluation must run (GNU OpenMP terminates a forked child at its first parallel launch) and agree."""
    monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
    cfg = Config.from_params({"variant": "B", "z_window": 10, "exit": "2x_consec_dist", "stop_loss": 0.03})
    parent = Evaluator(panel).run(cfg).metrics  # launches the parallel kernel in this process
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(panel, cfg, q))
    p.start()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
    assert p.exitcode == 0, f"forked child exit code {p.exitcode}"
    assert q.get(timeout=5) == parent


_SERIAL_PROBE = """
import sys
sys.path.insert(0, {tests!r})
import numba
from test_engine_lookahead import _panel
from optimizer.engine.evaluate import Config, Evaluator
ev = Evaluator(_panel(seed=1, T=120, N=5))
for ex in ("fixed_10d", "first_dist"):
    ev.run(Config.from_params({{"exit": ex, "z_window": 10}}))
ev.display(Config.from_params({{"z_window": 10}}))
try:
    print("launched", numba.threading_layer())
except ValueError:
    print("serial")
"""


@pytest.mark.slow
def test_small_panels_never_launch_threads_even_from_the_on_disk_cache():
    """Below PARALLEL_MIN_CELLS only serial machine code runs, also when loaded from numba's on-disk cache (twin
    serial/parallel jits of one Python function would share a cache entry and load each other's code)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = _SERIAL_PROBE.format(tests=str(Path(__file__).resolve().parent))
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1"}  # numba prints "[cache] data saved/loaded ..." per kernel
    for _ in range(2):  # until a process loads every kernel from the cache: the second one loads what the first wrote
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        lines = out.stdout.strip().splitlines()
        assert lines[-1] == "serial"
        saved = sum(ln.startswith("[cache] data saved") for ln in lines)
        if not saved:  # the session's warm cache (tests/conftest.py) usually serves the first process already
            break
    assert saved == 0 and sum(ln.startswith("[cache] data loaded") for ln in lines) > 0, out.stdout[-2000:]
