"""Truth benchmark: does the walk-forward verdict say "supported" when, and only when, the market holds an edge?

Every run is the full product path on a fresh synthetic market: ``synth_to_db`` (real-format raw files -> ingest ->
daily_metrics) then ``optimizer.validate.walkforward.run_walkforward`` through its public API with the spec
``bench/truth.toml`` (the demo's space, 20 trials per window, no final reserve). Markets:

* ``real`` market: the real prices of ``<repo>/../shared/data/real/prices_daily.csv.gz`` with the synthetic flow
  layer (``SynthConfig(prices_file=...)``: episodes oracle-placed before real moves; effect = the oracle share,
  capped at 1, so effects >= 1 are one market); used for the null and planted runs when that file exists;
* ``synth`` market: the embedded synthetic market (effect scales the planted drift); used otherwise;
* ``planted`` at each effect > 0 (default 0.25, 0.5, 1, 2) over seeds 1..N (default 10);
* ``null``: effect 0 over seeds 1..N0 (default 20): the very same flows as the planted market of the same seed,
  without the drift;
* ``corr_null``: effect 0 with ``price_feedback`` (default 1.0) over seeds 1..N0: flows that chase the trailing
  5-session return, correlated with past prices and across symbols. On the embedded market (always run) past prices
  carry no information about the future, so it is a clean null; on real prices (also run when the file exists)
  they may, through short-term reversal or momentum.

Per (market, kind, effect) it prints the rate of "supported" of

* ``old``: the verdict before the dependence-aware wiring, recomputed from the same run: i.i.d. t of the per-trade
  excess (> 2) and PSR of the per-trade excess list (>= 0.95), with the run's PBO (< 0.5) and n >= 30;
* ``now``: the walk-forward's own verdict (``result.verdict.supported``): HAC t of the daily excess series (> 2),
  PSR of the daily series (>= 0.95), PBO and n;
* ``+spa``: ``now`` with Hansen's SPA over every configuration tried as one more gate (combined p < 0.05), to
  decide whether SPA should gate (docs/STATS.md);
* ``mkt``: ``now`` with the market-adjusted daily series (``daily_excess(..., market_open=...)``) in place of the
  plain one,

with a Wilson 95 % interval, medians of the excess per trade, the i.i.d. and HAC t, the minimum detectable effect
(MDE per trade at the verdict's alpha, power 0.8) and the SPA p, the effect where each rate crosses 50 %, and the
load average. Each run's trades, excess and prices are saved under ``--out`` (``runs.jsonl`` plus one ``.npz`` per
run) so that ``--rescore`` recomputes every column without re-running a walk-forward, and an interrupted benchmark
resumes where it stopped (runs already in ``runs.jsonl`` are reused unless ``--fresh``).

Goals (for the verdict after wiring): supported <= 5 % at effect 0 and on the correlated null, >= 90 % at effect 1.

    .venv/bin/python bench/truth.py [--seeds 20,10] [--effects 0,0.25,0.5,1,2] [--feedback 1.0] [--jobs 1]
        [--market auto|real|synth] [--corr-market both|synth|real] [--trials 20] [--start 2023-01-03]
        [--end 2024-12-31] [--out output/truth] [--rescore] [--fresh] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine  # noqa: E402

__all__ = ["REAL_PRICES", "SPEC", "GOALS", "plan", "run_one", "score", "summarize", "crossing", "main"]

REAL_PRICES = ROOT.parent / "shared" / "data" / "real" / "prices_daily.csv.gz"
SPEC = ROOT / "bench" / "truth.toml"
GOALS = {"null_max": 0.05, "corr_null_max": 0.05, "power_at_1_min": 0.90}
GATES = ("old", "now", "spa", "mkt")
T_MIN, PSR_MIN, PBO_MAX, MIN_TRADES, SPA_MAX = 2.0, 0.95, 0.5, 30, 0.05


# ---- plan --------------------------------------------------------------------------------------------------------

def plan(seeds0: int, seeds: int, effects: list[float], feedback: float, market: str = "real",
         corr_markets: tuple[str, ...] = ("synth",)) -> list[dict]:
    """The runs: (market, kind, effect, seed, price_feedback) dicts, nulls first, then effects in increasing
    order. Null and planted markets use ``market``; the correlated null runs on each of ``corr_markets``."""
    jobs = []
    job = lambda mk, kind, e, s, fb: {"market": mk, "kind": kind, "effect": float(e), "seed": s, "feedback": fb}  # noqa: E731
    if any(e == 0 for e in effects):
        jobs += [job(market, "null", 0.0, s, 0.0) for s in range(1, seeds0 + 1)]
    if feedback:
        for mk in corr_markets:
            jobs += [job(mk, "corr_null", 0.0, s, feedback) for s in range(1, seeds0 + 1)]
    for e in sorted(effects):
        if e > 0:
            jobs += [job(market, "planted", e, s, 0.0) for s in range(1, seeds + 1)]
    return jobs


def _key(job: dict) -> str:
    return f"{job['market']}_{job['kind']}_e{job['effect']:g}_fb{job['feedback']:g}_s{job['seed']}"


# ---- one run -------------------------------------------------------------------------------------------------------

def run_one(job: dict, out: str, trials: int, start: str, end: str) -> dict:
    """Synthesize the market, run the walk-forward, save the trades (``<key>.npz``) and return the run's record."""
    import optuna

    from optimizer.data.synth import SynthConfig, synth_to_db
    from optimizer.study import load_study_data
    from optimizer.study.spec import load_spec
    from optimizer.validate.walkforward import concat_trades, run_walkforward

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    real = job["market"] == "real"
    work = Path(tempfile.mkdtemp(prefix="truth-", dir=out))
    try:
        cfg = SynthConfig(seed=int(job["seed"]), start=start, end=end, universe="tier1+3", effect=float(job["effect"]),
                          prices_file=str(REAL_PRICES) if real else None, price_feedback=float(job["feedback"]))
        synth_to_db(cfg, work / "raw", work / "m.duckdb")
        spec = load_spec(SPEC)
        res = run_walkforward(spec, work / "m.duckdb", f"journal:{work / 'studies.log'}", n_trials=trials,
                              out_dir=None)
        panel, _ = load_study_data(spec, work / "m.duckdb")
        trades = concat_trades([w.trades for w in res.windows])
        excess = np.concatenate([w.excess for w in res.windows]) if res.windows else np.empty(0)
        lo = res.windows[0].window.test_start
        hi = max(res.windows[-1].window.test_end, int(trades.exit_idx.max()) + 1 if len(trades) else 0)
        hi = min(hi, len(panel.dates))
        np.savez_compressed(
            Path(out) / f"{_key(job)}.npz", symbol=trades.symbol, signal_idx=trades.signal_idx,
            entry_idx=trades.entry_idx, exit_idx=trades.exit_idx, entry_price=trades.entry_price,
            exit_price=trades.exit_price, exit_reason=trades.exit_reason, score=trades.score,
            cost=np.float64(trades.cost), excess=excess, close=panel["close"], open=panel["open"],
            start=np.int64(lo), stop=np.int64(hi))
        nan = float("nan")
        spa = res.stats.get("spa") or {}
        rec = {**job, "key": _key(job),
               "supported_now": bool(res.verdict.supported), "verdict_line": res.verdict.line,
               "n_trades": int(excess.size), "mean_excess": float(excess.mean()) if excess.size else nan,
               "t_iid": float(res.oos.get("excess_t_iid", nan)), "t_hac": float(res.oos.get("excess_t", nan)),
               "psr": float(res.stats.get("psr", nan)), "pbo": float(res.stats.get("pbo", nan)),
               "dsr": float(res.stats.get("dsr", nan)), "spa_p": nan if spa.get("p") is None else float(spa["p"]),
               "spa_windows": spa.get("p_windows"), "n_configs": res.stats.get("n_configs"),
               "n_windows": len(res.windows), "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rec


# ---- scoring ---------------------------------------------------------------------------------------------------------

def _gate(inf, pbo: float) -> bool:
    return bool(inf.mean_per_trade > 0 and inf.t > T_MIN and inf.n_trades >= MIN_TRADES and inf.psr >= PSR_MIN
                and pbo < PBO_MAX)


def score(rec: dict, out: Path) -> dict:
    """Add the old (i.i.d.) verdict, the SPA-gated one and the market-adjusted one to a run's record."""
    from optimizer.engine.simulate import Trades
    from optimizer.validate._inference import daily_excess, dependent_inference
    from optimizer.validate._sharpe import probabilistic_sharpe_ratio, sharpe_stats
    from optimizer.validate.verdict import POWER, verdict_alpha

    z = np.load(out / f"{rec['key']}.npz")
    tr = Trades(z["symbol"], z["signal_idx"], z["entry_idx"], z["exit_idx"], z["entry_price"], z["exit_price"],
                z["exit_reason"], z["score"], cost=float(z["cost"]))
    rec = dict(rec)
    ex = z["excess"]
    nan = float("nan")
    rec.setdefault("spa_p", nan)
    if ex.size >= 3:
        ss = sharpe_stats(ex)
        psr_iid = float(probabilistic_sharpe_ratio(ss["sr"], 0.0, ss["n"], ss["skew"], ss["kurtosis"]))
    else:
        psr_iid = nan
    rec["psr_iid"] = psr_iid
    rec["supported_old"] = bool(ex.size >= MIN_TRADES and ex.mean() > 0 and rec["t_iid"] > T_MIN
                                and psr_iid >= PSR_MIN and rec["pbo"] < PBO_MAX)
    spa_p = rec["spa_p"] if rec["spa_p"] is not None else nan
    rec["supported_spa"] = bool(rec["supported_now"] and spa_p < SPA_MAX)
    for name, mopen in (("hac", None), ("mkt", z["open"])):
        d = daily_excess(tr, ex, z["close"], int(z["start"]), int(z["stop"]), market_open=mopen)
        inf = dependent_inference(d, alpha=verdict_alpha(T_MIN), power=POWER, reps=500, seed=0)
        rec[name] = inf.to_dict()
        if name == "mkt":
            rec["supported_mkt"] = _gate(inf, rec["pbo"]) if d.n_trades >= 3 else False
    return rec


def _wilson(k: int, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson") if n else (float("nan"), float("nan"))
    return float(lo), float(hi)


def _med(vals) -> float:
    v = np.array([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    return float(np.median(v)) if v.size else float("nan")


def summarize(records: list[dict]) -> list[dict]:
    """One row per (kind, effect): runs, rate of supported per gate with its Wilson 95 % interval, medians."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["market"], r["kind"], r["effect"], r["feedback"]), []).append(r)
    order = {"null": 0, "corr_null": 1, "planted": 2}
    rows = []
    for (mk, kind, eff, fb), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][1]], kv[0][2], kv[0][0])):
        row = {"market": mk, "kind": kind, "effect": eff, "feedback": fb, "runs": len(rs)}
        for g in GATES:
            k = sum(bool(r.get(f"supported_{g}")) for r in rs)
            lo, hi = _wilson(k, len(rs))
            row[g] = {"supported": k, "rate": k / len(rs), "lo": lo, "hi": hi}
        row["median"] = {
            "mean_excess": _med(r["mean_excess"] for r in rs), "n_trades": _med(r["n_trades"] for r in rs),
            "t_iid": _med(r["t_iid"] for r in rs), "pbo": _med(r["pbo"] for r in rs),
            "t_hac": _med(r["hac"]["t"] for r in rs if "hac" in r),
            "n_eff": _med(r["hac"]["n_eff"] for r in rs if "hac" in r),
            "mde_per_trade": _med(r["hac"]["mde_per_trade"] for r in rs if "hac" in r),
            "mean_excess_mkt": _med(r["mkt"]["mean_per_trade"] for r in rs if "mkt" in r),
            "t_hac_mkt": _med(r["mkt"]["t"] for r in rs if "mkt" in r),
            "mde_per_trade_mkt": _med(r["mkt"]["mde_per_trade"] for r in rs if "mkt" in r),
            "spa_p": _med(r.get("spa_p") for r in rs),
            "seconds": _med(r["seconds"] for r in rs)}
        rows.append(row)
    return rows


def crossing(rows: list[dict], gate: str, level: float = 0.5, market: str | None = None) -> float | None:
    """Effect where the planted rate of ``gate`` first reaches ``level`` (linear between effects, effect 0 = the
    null's rate) on ``market`` (default: the first null/planted row's); None when it never does."""
    base = [r for r in rows if r["kind"] in ("null", "planted")]
    market = market or (base[0]["market"] if base else None)
    pts = [(r["effect"], r[gate]["rate"]) for r in base if r["market"] == market]
    pts.sort()
    prev = None
    for e, rate in pts:
        if rate >= level:
            if prev is None or prev[1] >= level:
                return e
            (e0, r0) = prev
            return e0 + (level - r0) * (e - e0) / (rate - r0)
        prev = (e, rate)
    return None


# ---- output -----------------------------------------------------------------------------------------------------------

MARKETS = {"real": "real prices + synthetic flows", "synth": "embedded synthetic market"}


def _label(r: dict) -> str:
    if r["kind"] == "null":
        return f"null {r['market']}"
    if r["kind"] == "corr_null":
        return f"corr null {r['market']}"
    return f"effect {r['effect']:g} {r['market']}"


def _print(rows: list[dict], info: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 80)
    t = Table(title="truth benchmark: runs 'supported' by each verdict", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    for c in ("case", "old", "now", "+spa", "mkt", "ex/trade", "t iid", "t hac", "MDE", "SPA p"):
        t.add_column(c, justify="left" if c == "case" else "right")
    for r in rows:
        m = r["median"]
        t.add_row(_label(r), *(f"{r[g]['supported']}/{r['runs']}" for g in GATES),
                  f"{100 * m['mean_excess']:+.2f}%", f"{m['t_iid']:.1f}", f"{m['t_hac']:.1f}",
                  f"{100 * m['mde_per_trade']:.1f}%", f"{m['spa_p']:.2f}")
    con.print(t)
    con.print("old = i.i.d. t and per-trade PSR; now = the verdict (daily HAC t and PSR); +spa = now and SPA p < "
              "0.05; mkt = now on the market-adjusted series; medians per run; MDE per trade at the verdict's "
              "alpha (t > 2), power 0.8")
    for r in rows:
        if r["kind"] != "planted" or r["effect"] == 1.0:
            ci = "; ".join(f"{g} {100 * r[g]['rate']:.0f}% [{100 * r[g]['lo']:.0f}-{100 * r[g]['hi']:.0f}]"
                           for g in GATES)
            con.print(f"{_label(r)}: {ci} (Wilson 95%)")
    for g in GATES:
        x = info["crossing_50"][g]
        con.print(f"power crosses 50% ({g}): " + ("never in the effects run" if x is None else f"at effect {x:.2f}"))
    for mk in info["markets"]:
        con.print(f"{mk} = {MARKETS[mk]}")
    if "real" in info["markets"]:
        con.print("real prices: effect = share of oracle-placed episodes, capped at 1 (effects >= 1 are one market)")
    con.print(f"load average (1 min) {info['machine']['loadavg_1m']} on {info['machine']['cpus']} cpus; "
              f"wall {info['wall_seconds']:.0f} s")


# ---- main ---------------------------------------------------------------------------------------------------------------

def _load(out: Path) -> dict[str, dict]:
    f = out / "runs.jsonl"
    if not f.exists():
        return {}
    recs = {}
    for line in f.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if (out / f"{r['key']}.npz").exists():
                recs[r["key"]] = r
    return recs


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="20,10", help="N0[,N]: seeds at effect 0 and on the correlated null, and at "
                                                       "each other effect (default 20,10)")
    ap.add_argument("--effects", default="0,0.25,0.5,1,2")
    ap.add_argument("--feedback", type=float, default=1.0, help="correlated null's price_feedback (0: no such null)")
    ap.add_argument("--market", choices=("auto", "real", "synth"), default="auto",
                    help="market of the null and planted runs (auto: real prices when the file exists)")
    ap.add_argument("--corr-market", choices=("synth", "real", "both"), default="both",
                    help="market(s) of the correlated null (both: synth, and real when the file exists); on the "
                         "embedded market past prices carry no information about the future, on real prices they "
                         "may (short-term reversal)")
    ap.add_argument("--jobs", type=int, default=1, help="walk-forwards run in parallel processes")
    ap.add_argument("--trials", type=int, default=20, help="trials per walk-forward window")
    ap.add_argument("--start", default="2023-01-03")
    ap.add_argument("--end", default="2024-12-31")
    ap.add_argument("--out", default=str(ROOT / "output" / "truth"))
    ap.add_argument("--rescore", action="store_true", help="recompute the previews of the saved runs; run nothing")
    ap.add_argument("--fresh", action="store_true", help="ignore saved runs")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    parts = [int(x) for x in a.seeds.split(",")]
    seeds0, seeds = parts[0], parts[-1]
    effects = [float(x) for x in a.effects.split(",") if x.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    real_ok = REAL_PRICES.is_file()
    market = ("real" if real_ok else "synth") if a.market == "auto" else a.market
    if market == "real" and not real_ok:
        ap.error(f"--market real: {REAL_PRICES} does not exist")
    corr = {"synth": ("synth",), "real": ("real",), "both": ("synth", "real") if real_ok else ("synth",)}[a.corr_market]
    if "real" in corr and not real_ok:
        ap.error(f"--corr-market real: {REAL_PRICES} does not exist")
    jobs = plan(seeds0, seeds, effects, a.feedback, market, corr)
    have = {} if a.fresh else _load(out)
    if a.fresh and (out / "runs.jsonl").exists():
        (out / "runs.jsonl").unlink()
    todo = [] if a.rescore else [j for j in jobs if _key(j) not in have]
    if todo:
        if a.jobs > 1:
            os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one thread per process: no oversubscription
        import multiprocessing as mp

        log = (out / "runs.jsonl").open("a")
        with ProcessPoolExecutor(max_workers=max(1, a.jobs), mp_context=mp.get_context("spawn")) as ex:
            futs = {ex.submit(run_one, j, str(out), a.trials, a.start, a.end): j for j in todo}
            for i, f in enumerate(as_completed(futs), 1):
                rec = f.result()
                have[rec["key"]] = rec
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if not a.json:
                    print(f"[{i}/{len(todo)}] {rec['key']}: {'supported' if rec['supported_now'] else 'not supported'}"
                          f" ({rec['seconds']} s, load {os.getloadavg()[0]:.2f}) {rec['verdict_line']}", flush=True)
        log.close()
    wanted = {_key(j) for j in jobs}
    records = [score(r, out) for k, r in have.items() if k in wanted]
    rows = summarize(records)
    info = {"markets": sorted({r["market"] for r in records}), "machine": machine(),
            "wall_seconds": time.perf_counter() - t0, "spec": str(SPEC.relative_to(ROOT)), "trials": a.trials,
            "start": a.start, "end": a.end, "goals": GOALS,
            "crossing_50": {g: crossing(rows, g) for g in GATES}}
    result = {**info, "rows": rows, "runs": records}
    if a.json:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v
        print(json.dumps(clean(result)))
    else:
        _print(rows, info)
    return result


if __name__ == "__main__":
    main()
