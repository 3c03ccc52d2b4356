"""Compile (or load from numba's on-disk cache) every engine kernel before anything is timed.

The kernels are ``@njit(cache=True)``: the first call in a fresh environment compiles them (about 10 s on a
2-core machine), later processes load them from the cache (well under a second). Either way it happens on the
first call, which would land in the first trial of a study and dominate its duration and the study comparison.
``warm_kernels`` runs the engine's public path (score, simulate, metrics) on small in-memory panels, so every
kernel a trial uses (with or without position caps, equal or ATR sizing) is ready before the first trial starts.
It returns the seconds it took (0.0 when this process is already warm: the kernels stay loaded).

The parallel kernels (panels of ``PARALLEL_MIN_CELLS`` cells and more) are warmed only with ``parallel=True``:
running them starts numba's threading layer, and a process that did (GNU OpenMP) must not fork afterwards, so a
run that forks workers warms them in each worker instead (``optimizer.study.run``).
"""

from __future__ import annotations

import time

import numpy as np

from optimizer.engine._kernels import PARALLEL_MIN_CELLS
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.engine.panel import PANEL_FIELDS, Panel
from optimizer.engine.simulate import Caps

__all__ = ["warm_kernels", "kernels_warm", "needs_parallel"]

PARTS = ("serial", "capped", "parallel")  # the warm-up's parts: plain, with caps or ATR sizing, parallel kernels
_DONE: dict[str, float] = {}  # mode -> seconds of its warm-up in this process (filled by calls, never at import)


def _panel(T: int, N: int, seed: int) -> Panel:
    """A random-walk market whose score crosses every threshold: trades open and close on every symbol."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (T, N)), axis=0))
    opn = close * (1.0 + rng.normal(0.0, 0.005, (T, N)))
    f = {k: rng.uniform(0.5, 1.5, (T, N)) for k in PANEL_FIELDS}
    f.update(open=opn, close=close, high=np.maximum(opn, close) * 1.01, low=np.minimum(opn, close) * 0.99,
             short_buy_volume=rng.uniform(1e5, 2e5, (T, N)), short_sell_volume=rng.uniform(1e5, 2e5, (T, N)))
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + T)
    return Panel(dates=dates, symbols=tuple(f"W{i}" for i in range(N)), fields=f)


def needs_parallel(panel: Panel) -> bool:
    """Whether evaluations on ``panel`` use the parallel kernels (the engine's size rule)."""
    T, N = panel.shape
    return T * N >= PARALLEL_MIN_CELLS


def kernels_warm(parallel: bool = False) -> bool:
    """True once ``warm_kernels`` warmed the serial kernels (and the parallel ones with ``parallel``) here."""
    return all(p in _DONE for p in PARTS[:2] + PARTS[2:] * parallel)


def warm_kernels(parallel: bool = False, parts: tuple[str, ...] | None = None) -> float:
    """Run every serial engine kernel once, and the parallel ones with ``parallel`` (see the module docstring);
    the seconds taken (0.0 when already warm). ``parts``: only these of ``PARTS`` (priming numba's cache with
    two processes side by side, as the test suite does: ``("serial", "parallel")`` and ``("capped",)`` compile
    mostly different kernels); ``kernels_warm`` is True only once every part ran."""
    took = 0.0
    base = Config.from_params({"buy_threshold": 55.0, "sell_threshold": 45.0, "z_window": 5})
    wanted = PARTS[:2] + PARTS[2:] * parallel if parts is None else parts
    for mode in wanted:
        if mode in _DONE:
            continue
        t0 = time.perf_counter()
        if mode == "parallel":
            Evaluator(_panel(-(-PARALLEL_MIN_CELLS // 100), 100, 2), min_periods=5).run(base)
        elif mode == "serial":
            Evaluator(_panel(80, 4, 1), min_periods=5).run(base)
        elif mode == "capped":  # position caps and ATR sizing always take the serial kernel
            ev = Evaluator(_panel(80, 4, 1), min_periods=5)
            ev.run(Config(score=base.score, thresholds=base.thresholds, exit=base.exit, caps=Caps(max_positions=3)))
            ev.run(Config.from_params({**base.to_params(), "sizing": "atr"}))
        else:
            raise ValueError(f"parts must be among {PARTS}, got {mode!r}")
        _DONE[mode] = time.perf_counter() - t0
        took += _DONE[mode]
    return took
