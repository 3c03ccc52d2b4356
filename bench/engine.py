"""Benchmark: the evaluation engine (feature cache, cached / uncached evaluation, plain reference).

Two synthetic panels (``optimizer.data.synth.generate_market`` -> daily_metrics-like frame -> ``Panel.from_frame``):
small 60 symbols x 252 sessions and big 500 x 1,260. Per panel it measures

* feature build: ``FeatureCache.warm()`` over every variant x z-window, its ``nbytes`` and bytes per (symbol x day);
* cached evaluation: ``Evaluator.run`` (full span) over ``--configs`` random configurations drawn like a study's
  space (variant, raw weights, z_window, thresholds, exit, time stop), features already warm: ms/config, configs/s;
  the score is combined inside the simulation (never materialised), as in a study trial; also the best of 3 runs
  per configuration (median over configurations), the figure other processes on a shared machine disturb least;
* a study-shaped trial as ``study.trial.TrialObjective`` runs it: the display materialised once
  (``Evaluator.display``), then ``Evaluator.run`` on 4 fold spans + the overall span with it, ms/trial;
* the Evaluator's symbol-major price copies (``SymbolMajorPrices.nbytes``) per (symbol x day), beside the cache;
* uncached evaluation: a fresh ``Evaluator`` per configuration (its z-scores for that (variant, window) included);
* the plain reference (tests/reference_engine.py: ref_display + ref_trades + ref_count_signals + ref_metrics) on
  ``--ref-configs`` configurations of the small panel (1 on the big panel, or none with ``--no-big-ref``), the
  speed-up over it and whether both agree on the metrics;
* peak RSS of each phase (the peak is reset between phases where Linux allows it).

Targets (issue 15): <= 0.25 ms/config (60 x 252), <= 5 ms/config (500 x 1260), feature cache <= 504 bytes per
(symbol x day), >= 150x the reference (small panel, cached).
The time targets are judged on the median per-config time (the mean is printed too: on a shared 2-core machine
other processes inflate the mean of a short loop); the speed-up uses the means.

    .venv/bin/python bench/engine.py [--configs 200] [--ref-configs 3] [--quick] [--no-big-ref] [--json]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import emit, machine, peak_rss_mb, reset_peak_rss, rss_mb, synth_panel  # noqa: E402

from optimizer.engine.evaluate import Config, Evaluator  # noqa: E402
from optimizer.engine.features import VARIANTS, Z_WINDOWS, FeatureCache  # noqa: E402
from optimizer.engine.simulate import Span  # noqa: E402

__all__ = ["random_configs", "bench_panel", "run", "TARGETS"]

TARGETS = {"small_ms_per_config": 0.25, "big_ms_per_config": 5.0, "speedup_vs_reference": 150.0,
           "feature_bytes_per_cell": 504.0}
EXITS = ("fixed_10d", "fixed_20d", "first_dist", "2x_consec_dist", "hybrid_30d", "score_decay")
COMPARE = ("total_signals", "total_trades", "closed_trades", "hit_rate", "avg_return", "win_loss", "sharpe",
           "portfolio_sharpe", "max_drawdown", "rank_score", "avg_excess_return")


def random_configs(n: int, seed: int = 0) -> list[dict]:
    """Flat parameter dicts drawn like the demo study's space (uncapped, default costs)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append({
            "variant": str(rng.choice(VARIANTS)),
            "w_short": round(float(rng.choice(np.arange(0.40, 0.701, 0.05))), 2),
            "w_lit": round(float(rng.choice(np.arange(0.20, 0.401, 0.05))), 2),
            "w_price": round(float(rng.choice(np.arange(0.10, 0.201, 0.05))), 2),
            "z_window": int(rng.choice(Z_WINDOWS)),
            "buy_threshold": float(rng.choice(np.arange(60, 81, 5))),
            "sell_threshold": float(rng.choice(np.arange(20, 41, 5))),
            "exit": str(rng.choice(EXITS)),
            "time_stop": [None, 20, 40][int(rng.integers(3))],
        })
    return out


def _reference(panel, p: dict) -> dict:
    from reference_engine import RefExit, ref_count_signals, ref_display, ref_metrics, ref_trades

    T = panel.shape[0]
    disp = ref_display(panel, p["variant"], p["w_short"], p["w_lit"], p["w_price"], p["z_window"])
    ex = RefExit.from_name(p["exit"], time_stop=p["time_stop"])
    tr = ref_trades(panel, disp, p["buy_threshold"], p["sell_threshold"], ex, (1.0, 5.0), 0, T, T)
    n = ref_count_signals(disp, p["buy_threshold"], 0, T)
    return ref_metrics(tr, panel, (0, T, T), (1.0, 5.0), n)


def _max_rel_diff(a: dict, b: dict) -> float:
    d = 0.0
    for k in COMPARE:
        if k in a and k in b:
            x, y = float(a[k]), float(b[k])
            d = max(d, abs(x - y) / max(1.0, abs(y)))
    return d


def bench_panel(label: str, n_symbols: int, n_sessions: int, n_configs: int, n_uncached: int, n_ref: int,
                seed: int = 7) -> dict:
    """Every figure for one panel size (see the module doc)."""
    reset_peak_rss()
    t0 = time.perf_counter()
    panel = synth_panel(n_symbols, n_sessions, seed=seed)
    build_panel_s = time.perf_counter() - t0
    T, N = panel.shape
    cells = T * N
    panel_bytes = sum(v.nbytes for v in panel.fields.values())
    base_rss = rss_mb()

    # feature build (fresh cache)
    reset_peak_rss()
    fc = FeatureCache(panel)
    t0 = time.perf_counter()
    fc.warm()
    warm_s = time.perf_counter() - t0
    nbytes = fc.nbytes
    warm_peak = peak_rss_mb()
    del fc
    gc.collect()

    params = random_configs(n_configs, seed=1)
    configs = [Config.from_params(p) for p in params]
    span = Span.full(panel)

    # numba JIT (compiled once per process, or loaded from the on-disk cache)
    ev = Evaluator(panel)
    t0 = time.perf_counter()
    ev.run(configs[0], span)
    first_call_s = time.perf_counter() - t0

    # cached: warm features, then time every run
    reset_peak_rss()
    ev.features.warm()
    for c in configs[:3]:
        ev.run(c, span)
    times = np.empty(len(configs))
    fast_metrics = []
    for i, c in enumerate(configs):
        t0 = time.perf_counter()
        r = ev.run(c, span)
        times[i] = time.perf_counter() - t0
        fast_metrics.append(r.metrics)
    cached_ms = float(times.mean() * 1e3)
    # best of 3 per configuration (two more passes), median over configurations: the least disturbed figure on a
    # machine other processes share (the verdict stays on the plain median of one pass)
    best = times.copy()
    for _ in range(2):
        for i, c in enumerate(configs):
            t0 = time.perf_counter()
            ev.run(c, span)
            best[i] = min(best[i], time.perf_counter() - t0)
    cached_peak = peak_rss_mb()
    trades_mean = float(np.mean([m["total_trades"] for m in fast_metrics]))
    price_bytes = ev.prices.nbytes

    # a study-shaped trial (as TrialObjective): one display, 4 consecutive fold spans (each reading 10 sessions
    # past its end) and the overall span
    edges = np.linspace(T // 5, T, 5).astype(int)
    spans = [Span(int(a), int(b), min(T, int(b) + 10)) for a, b in zip(edges[:-1], edges[1:])] + [Span(int(edges[0]), T, T)]

    def trial(c: Config) -> None:
        disp = ev.display(c)
        for sp in spans:
            ev.run(c, sp, disp)

    for c in configs[:2]:
        trial(c)
    tt = np.empty(min(len(configs), 50))
    for i in range(len(tt)):
        t0 = time.perf_counter()
        trial(configs[i])
        tt[i] = time.perf_counter() - t0
    del ev
    gc.collect()

    # uncached: fresh Evaluator per configuration (z-scores of its (variant, window) + benchmark cache)
    ut = np.empty(min(n_uncached, len(configs)))
    for i in range(len(ut)):
        t0 = time.perf_counter()
        Evaluator(panel).run(configs[i], span)
        ut[i] = time.perf_counter() - t0
    uncached_ms = float(ut.mean() * 1e3) if len(ut) else float("nan")

    # plain reference
    ref_ms = float("nan")
    agree = None
    max_diff = None
    if n_ref > 0:
        rt, diffs = [], []
        for p, fm in zip(params[:n_ref], fast_metrics[:n_ref]):
            t0 = time.perf_counter()
            rm = _reference(panel, p)
            rt.append(time.perf_counter() - t0)
            diffs.append(_max_rel_diff(fm, rm))
        ref_ms = float(np.mean(rt) * 1e3)
        max_diff = float(max(diffs))
        agree = max_diff < 1e-9
    speed_cached = ref_ms / cached_ms if math.isfinite(ref_ms) else None
    speed_uncached = ref_ms / uncached_ms if math.isfinite(ref_ms) and math.isfinite(uncached_ms) else None
    return {
        "label": label,
        "symbols": N,
        "sessions": T,
        "panel_build_s": round(build_panel_s, 3),
        "panel_mb": round(panel_bytes / 2**20, 1),
        "rss_after_panel_mb": base_rss,
        "feature_warm_s": round(warm_s, 4),
        "feature_cache_mb": round(nbytes / 2**20, 1),
        "feature_bytes_per_cell": round(nbytes / cells, 1),
        "feature_warm_peak_rss_mb": warm_peak,
        "first_call_s": round(first_call_s, 3),
        "configs": len(configs),
        "mean_trades": round(trades_mean, 1),
        "cached_ms_per_config": round(cached_ms, 4),
        "cached_p50_ms": round(float(np.median(times) * 1e3), 4),
        "cached_p95_ms": round(float(np.quantile(times, 0.95) * 1e3), 4),
        "cached_best_of_3_p50_ms": round(float(np.median(best) * 1e3), 4),
        "cached_configs_per_s": round(1e3 / cached_ms, 1),
        "cached_peak_rss_mb": cached_peak,
        "trial_5_spans_p50_ms": round(float(np.median(tt) * 1e3), 3),
        "evaluator_price_bytes_per_cell": round(price_bytes / cells, 1),
        "uncached_configs": int(len(ut)),
        "uncached_ms_per_config": round(uncached_ms, 3),
        "reference_configs": n_ref,
        "reference_ms_per_config": round(ref_ms, 1) if math.isfinite(ref_ms) else None,
        "speedup_cached_vs_reference": round(speed_cached, 1) if speed_cached else None,
        "speedup_uncached_vs_reference": round(speed_uncached, 1) if speed_uncached else None,
        "reference_max_rel_diff": max_diff,
        "reference_agrees": agree,
    }


def run(n_configs: int = 200, n_ref: int = 3, quick: bool = False, big_ref: bool = True) -> dict:
    small = bench_panel("small", 60, 252, n_configs, 50, n_ref)
    if quick:
        big = bench_panel("big", 500, 1260, max(20, n_configs // 4), 5, 0)
    else:
        big = bench_panel("big", 500, 1260, n_configs, 20, 1 if big_ref else 0)
    return {
        "small": small,
        "big": big,
        "targets": TARGETS,
        "machine": machine(),
        "small_ms_per_config": small["cached_ms_per_config"],
        "big_ms_per_config": big["cached_ms_per_config"],
        "small_p50_ms_per_config": small["cached_p50_ms"],
        "big_p50_ms_per_config": big["cached_p50_ms"],
        "speedup_vs_reference": small["speedup_cached_vs_reference"],
        # verdicts on the median: the mean of a short loop is inflated by other processes on a shared machine
        "small_ok": small["cached_p50_ms"] <= TARGETS["small_ms_per_config"],
        "big_ok": big["cached_p50_ms"] <= TARGETS["big_ms_per_config"],
        "speedup_ok": (small["speedup_cached_vs_reference"] or 0) >= TARGETS["speedup_vs_reference"],
        "feature_bytes_ok": big["feature_bytes_per_cell"] <= TARGETS["feature_bytes_per_cell"],
        "peak_rss_mb": peak_rss_mb(),
    }


def _rows(res: dict) -> list[tuple]:
    rows: list[tuple] = []
    for key, tgt in (("small", TARGETS["small_ms_per_config"]), ("big", TARGETS["big_ms_per_config"])):
        r = res[key]
        p = f"{r['symbols']}x{r['sessions']}"
        ms = r["cached_ms_per_config"]
        rows += [
            (f"[bold]{p}[/] panel build (synth -> frame -> Panel), s", r["panel_build_s"]),
            (f"{p} feature warm (6 variants x 7 windows), s", r["feature_warm_s"]),
            (f"{p} FeatureCache.nbytes, MiB", r["feature_cache_mb"]),
            (f"{p} feature bytes per (symbol x day)", r["feature_bytes_per_cell"],
             f"<= {TARGETS['feature_bytes_per_cell']:.0f}; panel fields: {r['panel_mb']} MiB",
             r["feature_bytes_per_cell"] <= TARGETS["feature_bytes_per_cell"]),
            (f"{p} evaluator price copies, bytes per (symbol x day)", r["evaluator_price_bytes_per_cell"]),
            (f"{p} peak RSS during warm, MiB", r["feature_warm_peak_rss_mb"]),
            (f"{p} first call (JIT / cache load), s", r["first_call_s"]),
            (f"{p} cached eval, ms/config (mean of {r['configs']})", ms),
            (f"{p} cached eval, ms/config (median)", r["cached_p50_ms"], f"<= {tgt}", r["cached_p50_ms"] <= tgt),
            (f"{p} cached eval p95, ms", r["cached_p95_ms"]),
            (f"{p} cached eval, best of 3 per config, ms (median)", r["cached_best_of_3_p50_ms"]),
            (f"{p} cached eval, configs/s", r["cached_configs_per_s"]),
            (f"{p} study-shaped trial (4 folds + overall), ms (median)", r["trial_5_spans_p50_ms"]),
            (f"{p} mean trades per config", r["mean_trades"]),
            (f"{p} uncached eval (fresh Evaluator), ms/config (n={r['uncached_configs']})", r["uncached_ms_per_config"]),
            (f"{p} peak RSS during cached eval, MiB", r["cached_peak_rss_mb"]),
        ]
        if r["reference_ms_per_config"] is not None:
            sp = r["speedup_cached_vs_reference"]
            rows += [
                (f"{p} reference, ms/config (n={r['reference_configs']})", r["reference_ms_per_config"]),
                (f"{p} speed-up cached vs reference, x", sp, f">= {TARGETS['speedup_vs_reference']:.0f}" if key == "small" else None,
                 sp >= TARGETS["speedup_vs_reference"] if key == "small" else None),
                (f"{p} speed-up uncached vs reference, x", r["speedup_uncached_vs_reference"]),
                (f"{p} metrics agree with reference (max rel diff)", f"{r['reference_agrees']} ({r['reference_max_rel_diff']:.2g})"),
            ]
        else:
            rows.append((f"{p} reference", "skipped", "too slow for this size (use the full run)"))
    rows.append(("process peak RSS, MiB", res["peak_rss_mb"]))
    rows.append(("machine: CPUs / 1-min load average", f"{res['machine']['cpus']} / {res['machine']['loadavg_1m']}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=200, help="random configurations per panel (cached)")
    ap.add_argument("--ref-configs", type=int, default=3, help="reference runs on the small panel")
    ap.add_argument("--quick", action="store_true", help="fewer big-panel configs, no big-panel reference")
    ap.add_argument("--no-big-ref", action="store_true", help="skip the 1-config reference on the big panel")
    ap.add_argument("--scale", type=str, default=None, metavar="SYMBOLSxSESSIONS",
                    help="only one panel of this size, e.g. 1000x1260 (1,000 symbols x 5 years): feature build, "
                         "per-config time and memory")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.scale:
        n_sym, n_ses = (int(x) for x in a.scale.lower().split("x"))
        res = {"scale": bench_panel("scale", n_sym, n_ses, a.configs, 3, 0)}
        rows = [(f"{n_sym}x{n_ses} {k}", v, None, None) for k, v in res["scale"].items() if not isinstance(v, (dict, list))]
        emit(res, a.json, f"Engine at scale: {n_sym} symbols x {n_ses} sessions", rows)
        return 0
    res = run(a.configs, a.ref_configs, a.quick, not a.no_big_ref)
    emit(res, a.json, "Engine benchmark (synthetic panels; features warm unless 'uncached')", _rows(res),
         notes=["cached = Evaluator.run over the full span with the feature cache warm (a study trial's inner step); "
                "the score is combined inside the simulation kernel, never materialised",
                "reference = tests/reference_engine.py ref_display + ref_trades + ref_count_signals + ref_metrics"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
