"""The parallel kernels (symbol-major simulation, parallel score combine) used on big panels give exactly the
trades and scores of the serial date-major kernels that the reference oracle checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import optimizer.engine.score as score_mod
import optimizer.engine.simulate as sim_mod
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.simulate import Span

from test_engine_lookahead import _panel

EXITS = ["fixed_10d", "first_dist", "2x_consec_dist", "hybrid_30d", "score_decay"]


def _configs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        p = {"variant": str(rng.choice(["A", "B", "C", "D", "vw_flow", "blended"])), "z_window": int(rng.choice([10, 20])),
             "buy_threshold": int(rng.choice([45, 55, 65, 75])), "sell_threshold": int(rng.choice([25, 35, 40])),
             "exit": str(rng.choice(EXITS))}
        if rng.random() < 0.4:
            p["stop_loss"] = float(rng.uniform(0.01, 0.06))
        if rng.random() < 0.3:
            p["take_profit"] = float(rng.uniform(0.02, 0.1))
        if rng.random() < 0.3:
            p["time_stop"] = int(rng.integers(2, 15))
        yield Config.from_params(p)


@pytest.mark.slow
def test_parallel_kernels_match_serial_kernels(monkeypatch):
    panel = _panel(seed=11, T=220, N=12)
    serial = Evaluator(panel)
    spans = [Span.full(panel), Span(30, 150, 190), Span(100, 219, 220)]
    runs = []
    for i, cfg in enumerate(_configs(60)):
        sp = spans[i % len(spans)]
        ok = None if i % 4 else (np.arange(len(panel.dates)) % 3 != 0)
        runs.append((cfg, sp, ok, serial.run(cfg, sp, entry_ok=ok)))
    monkeypatch.setattr(sim_mod, "PARALLEL_MIN_CELLS", 0)
    monkeypatch.setattr(score_mod, "PARALLEL_MIN_CELLS", 0)
    par = Evaluator(panel)
    n_trades = 0
    for cfg, sp, ok, a in runs:
        b = par.run(cfg, sp, entry_ok=ok)
        np.testing.assert_array_equal(a.display, b.display)
        fa, fb = a.trades.to_frame(), b.trades.to_frame()
        pd.testing.assert_frame_equal(fa, fb)
        assert a.metrics == pytest.approx(b.metrics, rel=1e-12, abs=1e-15)
        n_trades += len(fa)
    assert n_trades > 500  # the comparison covered many trades and every exit reason below
    reasons = set()
    for cfg, sp, ok, a in runs:
        reasons |= set(a.trades.to_frame()["exit_reason"])
    assert {"fixed", "first_dist", "2x_consec_dist", "score_decay", "stop_loss", "take_profit", "open_at_end"} <= reasons
