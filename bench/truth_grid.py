"""How much edge does the embedded market hold out of sample, and could any verdict detect it? (truth-bench diagnostic)

The truth benchmark (``bench/truth.py``) finds little power at effect 1 on the embedded synthetic market. This script
separates the market from the search and the statistics: for each seed it builds the same market as the benchmark
(``SynthConfig(seed, 2023-01-03..2024-12-31, tier1+3, effect)``) and evaluates a FIXED grid of configurations chosen in
advance (variants B, C, D x z-window 10, 20, 30 x buy threshold 70, 80 x exits fixed_10d, first_dist, hybrid_20d; no
search, no selection) over the walk-forward's out-of-sample span (2023-07-03 to the end), each with the verdict's
daily HAC t (``dependent_inference``). It prints, per seed and over the seeds, the median excess per trade of the
grid, its median HAC t and minimum detectable effect, the share of configurations with HAC t > 2, and the ex-post
best configuration (its t is inflated by the selection among the grid).

    .venv/bin/python bench/truth_grid.py [--effect 1] [--seeds 10] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine  # noqa: E402

__all__ = ["GRID", "grid_run", "main"]

SPEC = ROOT / "bench" / "truth.toml"
OOS_START = "2023-07-03"  # the first test window of bench/truth.toml (train 6 months from 2023-01-03)
GRID = [dict(variant=v, w_short=0.55, w_lit=0.3, w_price=0.15, z_window=z, buy_threshold=b, sell_threshold=30, exit=x)
        for v, z, b, x in itertools.product(["B", "C", "D"], [10, 20, 30], [70, 80],
                                            ["fixed_10d", "first_dist", "hybrid_20d"])]


def grid_run(seed: int, effect: float) -> dict:
    """The fixed grid on one market: per configuration (trades, mean excess per trade, HAC t, MDE per trade)."""
    import optuna

    from optimizer.data.synth import SynthConfig, synth_to_db
    from optimizer.engine.evaluate import Evaluator
    from optimizer.engine.simulate import Span
    from optimizer.study import load_study_data
    from optimizer.study.space import params_to_config
    from optimizer.study.spec import load_spec
    from optimizer.validate.stats import daily_excess, dependent_inference

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    spec = load_spec(SPEC)
    work = Path(tempfile.mkdtemp(prefix="truth-grid-"))
    try:
        synth_to_db(SynthConfig(seed=seed, start="2023-01-03", end="2024-12-31", universe="tier1+3", effect=effect),
                    work / "raw", work / "m.duckdb")
        panel, _ = load_study_data(spec, work / "m.duckdb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dates = np.asarray(panel.dates).astype("datetime64[D]")
    lo, hi = int(np.searchsorted(dates, np.datetime64(OOS_START))), len(dates)
    ev, span = Evaluator(panel), Span(lo, hi, hi)
    rows = []
    for g in GRID:
        cfg = params_to_config(g, spec)
        res = ev.run(cfg, span)
        ex = ev.bench.excess(res.trades, span)
        if ex.size < 30:
            continue
        inf = dependent_inference(daily_excess(res.trades, ex, panel["close"], lo, hi), reps=200, seed=0)
        rows.append({"config": f"{g['variant']} z{g['z_window']} buy{g['buy_threshold']} {g['exit']}",
                     "trades": int(ex.size), "excess": float(ex.mean()), "t": float(inf.t),
                     "mde": float(inf.mde_per_trade)})
    return {"seed": seed, "effect": effect, "configs": rows}


def _summary(run: dict) -> dict:
    r = run["configs"]
    t = np.array([x["t"] for x in r])
    best = max(r, key=lambda x: x["t"])
    return {"seed": run["seed"], "n_configs": len(r), "median_excess": float(np.median([x["excess"] for x in r])),
            "median_t": float(np.median(t)), "share_t_gt_2": float(np.mean(t > 2.0)),
            "median_mde": float(np.median([x["mde"] for x in r])), "best": best["config"],
            "best_excess": best["excess"], "best_t": best["t"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--effect", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 1..N (the truth benchmark's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    per_seed = [_summary(grid_run(s, a.effect)) for s in range(1, a.seeds + 1)]
    med = lambda k: float(np.median([x[k] for x in per_seed]))  # noqa: E731
    result = {"effect": a.effect, "seeds": a.seeds, "grid": len(GRID), "per_seed": per_seed,
              "median_excess": med("median_excess"), "median_t": med("median_t"), "median_mde": med("median_mde"),
              "share_t_gt_2": float(np.mean([x["share_t_gt_2"] for x in per_seed])),
              "machine": machine(), "wall_seconds": round(time.perf_counter() - t0, 1)}
    if a.json:
        print(json.dumps(result))
        return result
    for x in per_seed:
        print(f"seed {x['seed']:>2}: median excess {x['median_excess']:+.2%}/trade, HAC t {x['median_t']:.2f}, "
              f"MDE {x['median_mde']:.2%}, t > 2 in {x['share_t_gt_2']:.0%} of {x['n_configs']}; ex-post best "
              f"{x['best']}: {x['best_excess']:+.2%}, t {x['best_t']:.2f}")
    print(f"effect {a.effect:g}, {a.seeds} seeds x {len(GRID)} fixed configurations: median excess "
          f"{result['median_excess']:+.2%}/trade, median HAC t {result['median_t']:.2f}, median MDE "
          f"{result['median_mde']:.2%}, HAC t > 2 in {result['share_t_gt_2']:.0%} of (seed, configuration)")
    print(f"load average (1 min) {result['machine']['loadavg_1m']} on {result['machine']['cpus']} cpus; "
          f"wall {result['wall_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
