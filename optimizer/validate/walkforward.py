"""Walk-forward out-of-sample evaluation: re-optimize on each train window, evaluate once on the next test window.

Nothing flows back: a window's study is built on the panel truncated at its train end (it cannot load a test or
reserve session), the winner is chosen from in-sample trials only, and out-of-sample results never feed a study.
The final reserve (last ``reserve_fraction`` of sessions) is used only with ``final=True``; opening it is recorded
in the storage and a second opening warns loudly.

Every verdict statistic runs on returns in excess of the matched random-entry benchmark; raw figures are kept
beside them.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from optimizer.engine.evaluate import Evaluator
from optimizer.engine.metrics import BenchmarkCache, portfolio_returns, run_metrics
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.engine.simulate import Span, Trades
from optimizer.errors import DataError
from optimizer.study.space import params_to_config
from optimizer.study.spec import StudySpec
from optimizer.study.splits import WalkForward, Window
from optimizer.validate.stats import (
    bootstrap_ci, cost_stress, deflated_sharpe_from_study, excess_t_stat, flag_fragile,
    probabilistic_sharpe_ratio, probability_of_backtest_overfitting, sharpe_stats, verdict,
)
from optimizer.study import load_study_data, make_storage, prepare_data, run_study

__all__ = ["WalkForwardResult", "run_walkforward", "select_params", "concat_trades", "pbo_matrix"]


@dataclass
class WindowResult:
    window: Window
    study_name: str
    train_dates: tuple[str, str]
    test_dates: tuple[str, str]
    params: dict[str, Any]
    is_metrics: dict[str, float]
    oos_metrics: dict[str, float]
    trades: Trades
    excess: np.ndarray
    n_trials_tried: int
    trial_sharpes: list[float]
    in_reserve: bool
    dsr_in_sample: float = float("nan")


@dataclass
class WalkForwardResult:
    spec_name: str
    windows: list[WindowResult]
    oos: dict[str, float]
    stats: dict[str, Any]
    verdict: Any
    summary: pd.DataFrame
    trades: pd.DataFrame
    equity: pd.DataFrame
    stability: pd.DataFrame
    final: bool
    warnings: list[str] = field(default_factory=list)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_symbol: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_sector: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_regime: pd.DataFrame = field(default_factory=pd.DataFrame)
    rules: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, (np.floating, np.integer)):
                return clean(v.item())
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "spec": self.spec_name,
            "final": self.final,
            "windows": [
                {"index": w.window.index, "study": w.study_name, "train": list(w.train_dates), "test": list(w.test_dates),
                 "in_reserve": w.in_reserve, "best_params": w.params, "in_sample": w.is_metrics, "out_of_sample": w.oos_metrics,
                 "n_trials_tried": w.n_trials_tried}
                for w in self.windows
            ],
            "oos": self.oos,
            "dsr": self.stats.get("dsr"),
            "psr": self.stats.get("psr"),
            "pbo": self.stats.get("pbo"),
            "degradation": self.stats.get("degradation"),
            "stats": self.stats,
            "verdict": "supported" if self.verdict.supported else "not supported",
            "verdict_line": self.verdict.line,
            "sharpe_gate": "psr",
            "regimes": self.by_regime.to_dict(orient="records"),
            "by_sector": self.by_sector.to_dict(orient="records"),
            "warnings": self.warnings,
        })


def concat_trades(parts: list[Trades]) -> Trades:
    if not parts:
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        return Trades(e, e, e, e, f, f, e, f, cost=0.0)
    cost = parts[0].cost
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return Trades(cat("symbol"), cat("signal_idx"), cat("entry_idx"), cat("exit_idx"), cat("entry_price"),
                  cat("exit_price"), cat("exit_reason"), cat("score"), cost=cost)


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]


def select_params(study: optuna.Study, how: str = "best", top_k: int = 5) -> optuna.trial.FrozenTrial:
    """The best trial, or (``robust``) among the top-k the one whose nearest neighbours in parameter space score
    best by median: a configuration on a plateau beats a lucky spike."""
    done = _completed(study)
    if not done:
        raise DataError(f"study {study.study_name!r} has no completed trial to select from (all pruned or failed)")
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(done, key=lambda t: sign * t.value)
    if how == "best" or len(ranked) < 3:
        return ranked[0]
    keys = sorted({k for t in ranked for k in t.params})
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    num = [k for k in keys if all(is_num(t.params.get(k)) for t in ranked)]
    cat = [k for k in keys if k not in num]  # categorical or conditional (absent = its own value)
    X = np.array([[float(t.params[k]) for k in num] for t in ranked], dtype=float).reshape(len(ranked), len(num))
    Cv = np.array([[str(t.params.get(k)) for k in cat] for t in ranked], dtype=object).reshape(len(ranked), len(cat))
    span = X.max(axis=0) - X.min(axis=0)
    span[span == 0] = 1.0
    Xn = X / span
    vals = np.array([t.value for t in ranked])
    m = max(3, len(ranked) // 10)
    best, best_score = ranked[0], -np.inf
    for i in range(min(top_k, len(ranked))):
        d = np.abs(Xn - Xn[i]).sum(axis=1) + (Cv != Cv[i]).sum(axis=1)  # a different category counts as a full range
        nn = np.argsort(d, kind="mergesort")[:m]
        score = -sign * float(np.median(vals[nn]))
        if score > best_score:
            best, best_score = ranked[i], score
    return best


def pbo_matrix(data, study: optuna.Study, max_configs: int = 100) -> np.ndarray:
    """Trials x sessions matrix of daily portfolio returns in excess of the equal-weight universe (the daily
    random-entry analogue) over the study's span, for the study's completed trials (top ``max_configs``)."""
    done = sorted(_completed(study), key=lambda t: t.number)[:max_configs]
    panel, ev = data.panel, data.evaluator
    lo = data.folds[0].test_start
    span = Span(lo, data.hi, data.hi)
    C = panel["close"]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = C[1:] / C[:-1] - 1.0
    ew = np.concatenate([[np.nan], np.nanmean(np.where(np.isfinite(r), r, np.nan), axis=1)])[lo:data.hi]
    ew = np.nan_to_num(ew)
    cols = []
    for t in done:
        cfg = params_to_config(t.params, data.spec)
        res = ev.run(cfg, span, entry_ok=data.entry_ok)
        daily = portfolio_returns(res.trades, panel, span)
        invested = np.zeros(span.data_end - span.sig_start, dtype=bool)
        for e, x in zip(res.trades.entry_idx, res.trades.exit_idx):
            invested[max(e, lo) - lo: x - lo + 1] = True
        cols.append(np.where(invested, daily - ew, 0.0))
    return np.array(cols).T if cols else np.empty((0, 0))


def _reserve_record(storage, spec: StudySpec, reserve_start: str, final: bool) -> list[str]:
    """Record (and warn about repeated) openings of the final reserve in a small marker study."""
    name = f"{spec.run.study_name}-reserve-log"
    msgs: list[str] = []
    try:
        st = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        st = optuna.create_study(study_name=name, storage=storage)
    opened = st.user_attrs.get("openings", [])
    if final:
        same = [o for o in opened if o.get("reserve_start") == reserve_start]
        if same:
            msgs.append(
                f"WARNING: the final reserve starting {reserve_start} was already opened {len(same)} time(s) "
                f"(first on {same[0]['at']}); results on it are no longer a clean out-of-sample test"
            )
        opened = opened + [{"reserve_start": reserve_start, "at": _dt.datetime.now().isoformat(timespec="seconds")}]
        st.set_user_attr("openings", opened)
    return msgs


def run_walkforward(
    spec: StudySpec,
    db: str | Path,
    storage_url: str | None = None,
    final: bool = False,
    progress: bool = False,
    n_trials: int | None = None,
    out_dir: str | Path | None = "output",
) -> WalkForwardResult:
    panel_full, reserve = load_study_data(spec, db)
    T = len(panel_full.dates)
    limit = T if final else reserve
    wfs = spec.walkforward
    purge = wfs.purge if wfs.purge is not None else spec.max_hold()
    wf = WalkForward(wfs.train, wfs.test, wfs.step, wfs.unit, purge=purge, anchored=wfs.anchored)
    windows = wf.split(panel_full.dates[:limit])
    storage = make_storage(storage_url or spec.run.storage)
    msgs = _reserve_record(storage, spec, str(panel_full.dates[reserve]) if reserve < T else "none", final)
    for m in msgs:
        warnings.warn(m, stacklevel=2)
    trials = n_trials or wfs.n_trials or spec.run.n_trials
    bench = BenchmarkCache(panel_full.slice(0, limit))
    results: list[WindowResult] = []
    it = windows
    prog = None
    if progress:
        from rich.progress import Progress

        prog = Progress()
        prog.start()
        task = prog.add_task("walk-forward windows", total=len(windows))
    try:
        for w in it:
            results.append(_run_window(spec, panel_full, w, limit, reserve, storage_url, storage, trials, purge, bench))
            if prog:
                prog.advance(task)
    finally:
        if prog:
            prog.stop()
    return _aggregate(spec, panel_full, results, limit, final, msgs, out_dir, storage_url, storage)


def _run_window(spec, panel_full: Panel, w: Window, limit: int, reserve: int, storage_url, storage, trials, purge, bench) -> WindowResult:
    d = panel_full.dates
    name = f"{spec.run.study_name}-wf{w.index:02d}-{d[w.train_start]}_{d[w.train_end - 1]}"
    data = prepare_data(spec, panel_full, w.train_start, w.train_end, spec.walkforward.n_splits, spec.walkforward.embargo)
    assert len(data.panel.dates) == w.train_end  # the study's panel ends at its train end: no test session visible
    extra = {"wf_window": w.index, "wf_train": [str(d[w.train_start]), str(d[w.train_end - 1])],
             "wf_test": [str(d[w.test_start]), str(d[w.test_end - 1])], "last_session_seen": str(data.panel.dates[-1])}
    run_study(spec, None, storage_url, n_trials=trials, data=data, name=name, extra_attrs=extra)
    study = optuna.load_study(study_name=name, storage=storage)
    chosen = select_params(study, spec.walkforward.select, spec.walkforward.top_k)
    cfg = params_to_config(chosen.params, spec)
    data_end = min(w.test_end + purge, limit)
    oos_panel = panel_full.slice(0, data_end)
    ev = Evaluator(oos_panel, min_periods=spec.data.min_periods)
    mask = regime_entry_mask(oos_panel, spec.data.regime)
    span = Span(w.test_start, w.test_end, data_end)
    res = ev.run(cfg, span, entry_ok=mask)
    excess = bench.excess(res.trades, span, cfg.costs)
    tried = len(study.get_trials(deepcopy=False))
    sharpes = np.array([float(t.user_attrs.get("metrics", {}).get("excess_sharpe", np.nan)) for t in _completed(study)])
    # Deflated Sharpe of the in-sample winner: its per-trade excess returns over the train span, deflated by every
    # trial tried in the window (pruned and failed included) and the dispersion of the trials' excess Sharpe ratios.
    f0 = data.folds[0]
    is_span = Span(f0.test_start, data.hi, data.hi)
    is_res = data.evaluator.run(cfg, is_span, entry_ok=data.entry_ok)
    is_ex = data.evaluator.bench.excess(is_res.trades, is_span, cfg.costs)
    fin = sharpes[np.isfinite(sharpes)]
    try:
        dsr_is = float(deflated_sharpe_from_study(is_ex, fin, max(tried, fin.size)).dsr) if is_ex.size >= 3 and fin.size >= 2 else float("nan")
    except Exception:  # noqa: BLE001 - degenerate moments: no DSR for this window
        dsr_is = float("nan")
    return WindowResult(
        w, name, (str(d[w.train_start]), str(d[w.train_end - 1])), (str(d[w.test_start]), str(d[w.test_end - 1])),
        dict(chosen.params), dict(chosen.user_attrs.get("metrics", {})), res.metrics, res.trades, excess, tried,
        list(map(float, sharpes)), w.test_end > reserve, dsr_is,
    )


def _aggregate(spec, panel_full, results: list[WindowResult], limit, final, msgs, out_dir, storage_url, storage) -> WalkForwardResult:
    d = panel_full.dates
    trades = concat_trades([r.trades for r in results])
    excess = np.concatenate([r.excess for r in results]) if results else np.empty(0)
    first, last = results[0].window.test_start, results[-1].window.test_end
    span = Span(first, last, limit)
    p = panel_full.slice(0, limit)
    costs = params_to_config(results[0].params, spec).costs
    total_signals = int(sum(r.oos_metrics["total_signals"] for r in results))
    oos = run_metrics(trades, p, span, costs, total_signals)
    oos["avg_excess_return"] = float(excess.mean()) if excess.size else 0.0
    mean_ex, t_ex, n_ex = excess_t_stat(excess)
    oos["excess_t"] = t_ex
    oos["n_windows"] = len(results)
    # in-sample vs out-of-sample
    is_vals = np.array([r.is_metrics.get("rank_score", np.nan) for r in results], dtype=float)
    oos_vals = np.array([r.oos_metrics.get("rank_score", np.nan) for r in results], dtype=float)
    is_ex = np.array([r.is_metrics.get("avg_excess_return", np.nan) for r in results], dtype=float)
    oos_ex = np.array([r.oos_metrics.get("avg_excess_return", np.nan) for r in results], dtype=float)
    is_mean = float(np.nanmean(is_vals))
    degradation = float(np.nanmean(oos_vals)) / is_mean if np.isfinite(is_mean) and is_mean != 0.0 else float("nan")
    # statistics on excess returns
    tried = int(sum(r.n_trials_tried for r in results))
    dsr_w = np.array([r.dsr_in_sample for r in results], dtype=float)
    stats: dict[str, Any] = {"n_trials_tried": tried, "degradation": degradation,
                             "dsr": float(np.nanmedian(dsr_w)) if np.isfinite(dsr_w).any() else float("nan"),
                             "dsr_windows": [None if not np.isfinite(x) else float(x) for x in dsr_w],
                             "degradation_excess": float(np.nanmean(oos_ex) / np.nanmean(is_ex)) if np.nanmean(is_ex) else float("nan")}
    if excess.size >= 3:
        ss = sharpe_stats(excess)
        stats["psr"] = float(probabilistic_sharpe_ratio(ss["sr"], 0.0, ss["n"], ss["skew"], ss["kurtosis"]))
        ci = bootstrap_ci(excess, stat="all", n_boot=1000, seed=0)
        stats["bootstrap"] = {k: {"point": v.point, "lo": v.lo, "hi": v.hi} for k, v in ci.items()}
    else:
        stats["psr"] = float("nan")
    # PBO on each window's study (its trials x daily excess over the train span), averaged
    pbos = []
    for r in results:
        try:
            data = prepare_data(spec, panel_full, r.window.train_start, r.window.train_end, spec.walkforward.n_splits,
                                spec.walkforward.embargo)
            st = optuna.load_study(study_name=r.study_name, storage=storage)
            M = pbo_matrix(data, st)
            if M.shape[1] >= 2 and M.shape[0] >= 16:
                pbos.append(probability_of_backtest_overfitting(M, n_blocks=min(16, (M.shape[0] // 2) * 2 if M.shape[0] < 32 else 16)).pbo)
        except Exception as e:  # noqa: BLE001 - a window without enough trials simply has no PBO
            stats.setdefault("pbo_skipped", []).append(f"window {r.window.index}: {e}")
    stats["pbo_windows"] = pbos
    stats["pbo"] = float(np.mean(pbos)) if pbos else float("nan")
    # cost stress on the stitched OOS winners
    # One evaluator over every visible session serves all windows: features at t use rows <= t only, and a
    # window's simulation and benchmark read nothing past its own data_end (Span), so this equals per-window panels.
    ev_all = Evaluator(p, min_periods=spec.data.min_periods)
    mask_all = regime_entry_mask(p, spec.data.regime)
    purge = spec.walkforward.purge if spec.walkforward.purge is not None else spec.max_hold()

    def at_cost(k: float) -> dict:
        from dataclasses import replace

        ex = []
        for r in results:
            cfg = params_to_config(r.params, spec)
            cfg = replace(cfg, costs=cfg.costs.scaled(k))
            data_end = min(r.window.test_end + purge, limit)
            sp = Span(r.window.test_start, r.window.test_end, data_end)
            res = ev_all.run(cfg, sp, entry_ok=mask_all)
            ex.append(ev_all.bench.excess(res.trades, sp, cfg.costs))
        e = np.concatenate(ex) if ex else np.empty(0)
        return {"avg_excess_return": float(e.mean()) if e.size else 0.0, "trades": int(e.size)}

    cs = cost_stress(at_cost, (1, 2, 3))
    stats["cost_stress"] = cs.to_dict(orient="records")
    stats["cost_fragile"] = bool(flag_fragile(cs))
    dsr_s = "n/a" if not np.isfinite(stats["dsr"]) else f"{stats['dsr']:.2f}"
    v = verdict(mean_ex if np.isfinite(mean_ex) else 0.0, t_ex, stats["psr"], stats["pbo"], int(n_ex),
                sharpe_label=("OOS Probabilistic Sharpe Ratio of excess returns", "PSR"),
                note=f"in-sample winners' median DSR {dsr_s} over {tried} trials tried")
    # tables
    rows = []
    for r in results:
        row = {"window": r.window.index, "train_start": r.train_dates[0], "train_end": r.train_dates[1],
               "test_start": r.test_dates[0], "test_end": r.test_dates[1], "in_reserve": r.in_reserve,
               "study": r.study_name, "n_trials_tried": r.n_trials_tried}
        row.update({f"param_{k}": v_ for k, v_ in r.params.items()})
        for k in ("rank_score", "hit_rate", "avg_return", "avg_excess_return", "closed_trades", "win_loss", "portfolio_sharpe"):
            row[f"is_{k}"] = r.is_metrics.get(k)
            row[f"oos_{k}"] = r.oos_metrics.get(k)
        rows.append(row)
    summary = pd.DataFrame(rows)
    tdf = trades.to_frame(p)
    if len(tdf):
        win_of = np.searchsorted([r.window.test_start for r in results], tdf["signal_idx"].to_numpy(), side="right") - 1
        tdf["window"] = win_of
    daily = portfolio_returns(trades, p, span)
    eq = pd.DataFrame({"date": pd.to_datetime(d[first:limit]), "oos_return": daily, "oos_equity": np.cumprod(1 + daily)})
    stab = []
    for key in ("variant", "z_window", "exit", "weights", "buy_threshold", "sell_threshold"):
        vals = [str(r.params.get(key)) for r in results if key in r.params]
        if vals:
            for val, n in pd.Series(vals).value_counts().items():
                stab.append({"param": key, "value": val, "windows": int(n), "share": n / len(results)})
    stability = pd.DataFrame(stab)
    events, by_symbol, by_sector, by_regime, rules = _segments(spec, p, results, span, ev_all)
    res = WalkForwardResult(spec.name, results, oos, stats, v, summary, tdf, eq, stability, final, msgs,
                            events, by_symbol, by_sector, by_regime, rules)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary.to_csv(out / "walk_forward_summary.csv", index=False)
    return res


def _group_table(df: pd.DataFrame, key: str) -> pd.DataFrame:
    closed = df[~df["open_at_end"].astype(bool)]
    if closed.empty:
        return pd.DataFrame(columns=[key, "closed_trades", "hit_rate", "avg_return", "avg_excess_return"])
    g = closed.groupby(key, dropna=False)
    out = pd.DataFrame({
        "closed_trades": g.size(),
        "hit_rate": g["net_return"].apply(lambda r: float((r > 0).mean())),
        "avg_return": g["net_return"].mean(),
        "avg_excess_return": g["excess_return"].mean(),
    }).reset_index()
    return out.sort_values("closed_trades", ascending=False, kind="mergesort").reset_index(drop=True)


def _segments(spec: StudySpec, p: Panel, results: list[WindowResult], span: Span, ev: Evaluator):
    """Out-of-sample events with context, cross-sectional (per symbol / sector) and per-regime tables, and the
    rule validation (Mann-Whitney U + BH on excess returns) of each context condition."""
    from optimizer.engine.context import compute_context
    from optimizer.engine.evaluate import Result
    from optimizer.engine.outcomes import signal_events
    from optimizer.validate.stats import rule_validation

    empty = pd.DataFrame()
    if not results or not sum(len(r.trades) for r in results):
        return empty, empty, empty, empty, empty
    ctx = compute_context(p)
    frames = []
    for r in results:
        cfg = params_to_config(r.params, spec)
        disp = ev.display(cfg)
        sp = Span(r.window.test_start, r.window.test_end, span.data_end)
        res = Result(cfg, sp, r.trades, r.oos_metrics, disp)
        e = signal_events(res, p, ctx, cfg.thresholds)
        # per-trade excess, keyed by (symbol, entry date) since events are re-sorted
        closed = r.trades.closed
        key = dict(zip(zip(np.array(p.symbols, dtype=object)[r.trades.symbol[closed]],
                           pd.to_datetime(p.dates[r.trades.entry_idx[closed]])), r.excess))
        e["excess_return"] = [key.get((s, pd.Timestamp(d)), np.nan) for s, d in zip(e["symbol"], e["entry_date"])]
        e.insert(0, "window", r.window.index)
        frames.append(e)
    events = pd.concat(frames, ignore_index=True)
    by_symbol = _group_table(events, "symbol")
    events["sector"] = events["sector_etf"].fillna("(ETF)")
    by_sector = _group_table(events, "sector")
    by_regime = _group_table(events, "regime")
    closed = events[~events["open_at_end"].astype(bool) & events["excess_return"].notna()]
    conds = {}
    if len(closed):
        conds = {
            "parent_etf_aligned": closed["parent_etf_aligned"].astype(bool).to_numpy(),
            "quality_high": (closed["signal_quality"] == "HIGH").to_numpy(),
            "trend_up": (closed["trend_state"] == "UP").to_numpy(),
            "regime_risk_on": (closed["regime"] == "RISK_ON").to_numpy(),
        }
        if "options_boost" in closed:
            conds["options_boost"] = (closed["options_boost"].fillna(1.0) > 1.0).to_numpy()
    rules = rule_validation(closed["excess_return"].to_numpy(), conds) if conds else empty
    return events, by_symbol, by_sector, by_regime, rules


def save_walkforward(result: WalkForwardResult, out_dir: str | Path) -> Path:
    """Persist a walk-forward run (JSON summary + trades/equity/summary/stability tables) for `accumopt report`."""
    import json

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    result.summary.to_csv(d / "walk_forward_summary.csv", index=False)
    result.trades.to_parquet(d / "oos_trades.parquet", index=False)
    result.equity.to_parquet(d / "oos_equity.parquet", index=False)
    result.stability.to_csv(d / "parameter_stability.csv", index=False)
    if len(result.events):
        result.events.to_parquet(d / "oos_events.parquet", index=False)
    for name in ("by_symbol", "by_sector", "by_regime", "rules"):
        getattr(result, name).to_csv(d / f"{name}.csv", index=False)
    return d


def load_walkforward(out_dir: str | Path) -> dict[str, Any]:
    """The persisted walk-forward run as plain objects: ``result`` (dict) and DataFrames."""
    import json

    d = Path(out_dir)
    if not (d / "result.json").exists():
        raise DataError(f"no walk-forward run in {d} (expected result.json); run `accumopt walkforward SPEC` first")
    return {
        "result": json.loads((d / "result.json").read_text()),
        "summary": pd.read_csv(d / "walk_forward_summary.csv"),
        "trades": pd.read_parquet(d / "oos_trades.parquet"),
        "equity": pd.read_parquet(d / "oos_equity.parquet"),
        "stability": pd.read_csv(d / "parameter_stability.csv") if (d / "parameter_stability.csv").stat().st_size > 1 else pd.DataFrame(),
        "events": pd.read_parquet(d / "oos_events.parquet") if (d / "oos_events.parquet").exists() else pd.DataFrame(),
        **{n: _read_csv(d / f"{n}.csv") for n in ("by_symbol", "by_sector", "by_regime", "rules")},
    }


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.exists() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
