"""Walk-forward out-of-sample evaluation: re-optimize on each train window, evaluate once on the next test window.

Nothing flows back: a window's study is built on the panel truncated at its train end (it cannot load a test or
reserve session), the winner is chosen from in-sample trials only, and out-of-sample results never feed a study.
The final reserve (last ``reserve_fraction`` of sessions) is used only with ``final=True``; opening it is recorded
in the store's reserve ledger (``optimizer.study.reserve``, shared with ``backtest --final``) and a second opening
warns loudly. Windows are never seeded from ``[seed_from]`` (the seed study saw sessions after each window's train
end). DSR and PBO count the distinct configurations each window's study tried (``records.distinct_configurations``).

Every verdict statistic runs on returns in excess of the matched random-entry benchmark; raw figures are kept
beside them. The run: ``_run_window`` per window (study, winner, OOS evaluation, the window's in-sample DSR, PBO
and SPA over every distinct configuration its study tried), then ``_book`` (the windows' OOS runs as one continuous
account: no window enters a symbol a previous window's trade still holds, whose positions count against its
caps), ``_stitch`` (the OOS trades as one record),
``_statistics``, ``_decide`` (the ``Verdict``) and ``_tables``; ``save_walkforward`` writes the files.

Out-of-sample trades overlap in time and move together, so the verdict's significance is computed on the DAILY
excess series of the stitched trades (``stats.daily_excess``, docs/STATS.md): the Newey-West t of its mean per
trade is the significance gate, the PSR is that of the daily series (its own skew and kurtosis, over the effective
number of days), the stationary bootstrap gives the interval, and the minimum detectable effect (per trade and per
year, at the verdict's alpha and 80 % power) says what the data could have shown. The same figures on the
market-adjusted series (the realized path of an equal-weight basket bought and sold at the same opens removed) are
reported beside them, not gated on: that adjustment also removes market timing from the estimate. The OOS equity
table holds the account (the engine's equal-weight portfolio of the open positions), its matched random-entry
benchmark and the excess day by day; its block bootstrap resamples the same days.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from optimizer.engine.context import compute_context
from optimizer.engine.evaluate import Evaluator, Result
from optimizer.engine.metrics import SESSIONS_PER_MONTH, BenchmarkCache, portfolio_returns, rank_score, run_metrics
from optimizer.engine.outcomes import signal_events
from optimizer.engine.panel import Panel
from optimizer.engine.regime_filter import regime_entry_mask
from optimizer.engine.simulate import EXIT_REASONS, Span, Trades
from optimizer.errors import DataError, ParameterError, SpecError
from optimizer.data.splitcheck import panel_split_lines
from optimizer.study.data import StudyData, load_study_data, prepare_data, span_lines
from optimizer.engine.evaluate import Config
from optimizer.paths import atomic_folder, atomic_write, recover_folder, resolve_db, resolve_storage, under
from optimizer.study.data_settings import data_settings_rows
from optimizer.study.records import (
    configuration_identities, direction_sign, distinct_configurations, group_configurations, ranked_trials,
    read_study, read_trial, read_window_result, trials_digest, window_attrs, write_window_result,
)
from optimizer.study.reserve import opening_warning, record_opening
from optimizer.study.splits import CombinatorialPurgedCV
from optimizer.study.run import run_study, worker_stop
from optimizer.study.space import params_to_config, trial_config
from optimizer.study.spec import CVSpec, RunSpec, StudySpec, aggregate_folds_rule, walkforward_step_rule
from optimizer.study.splits import WalkForward, Window
from optimizer.study.storage import make_storage, naming_its_storage, study_names
from optimizer.validate.distributed import DONE, Interrupted, WindowClaims, wait_for_run, work_windows
from optimizer.validate.stats import (
    DailyExcess, cost_stress, cost_stress_wording, cpcv_pbo, daily_excess, deflated_sharpe_from_study,
    dependent_inference, distinct_columns, equity_bootstrap, equity_point, flag_fragile,
    probability_of_backtest_overfitting, spa_test, validate_rules,
)
from optimizer.validate.verdict import POWER, T_MIN, Power, Verdict, verdict, verdict_alpha

__all__ = [
    "WindowResult", "WalkForwardResult", "run_walkforward", "run_walkforward_worker", "select_params", "concat_trades", "pbo_matrix",
    "tried_configs", "combine_pvalues", "save_walkforward", "load_walkforward", "walkforward_dir", "SPA_GATE",
    "run_settings", "settings_rows", "run_notes",
]

_NAN = float("nan")
_SUMMARY_METRICS = ("rank_score", "hit_rate", "avg_return", "avg_excess_return", "closed_trades", "win_loss",
                    "portfolio_sharpe")
_STABILITY_PARAMS = ("variant", "z_window", "exit", "weights", "buy_threshold", "sell_threshold")
# The SPA p-value is reported beside DSR and PBO; it gates the verdict only when this is a level (see docs/STATS.md).
SPA_GATE: float | None = None


@dataclass
class WindowResult:
    """One window: its study, the winner's parameters, in-sample (study) and out-of-sample metrics, the OOS
    trades and their per-trade excess returns, and the window's in-sample DSR, PBO and SPA (NaN with the reason in
    ``dsr_skipped`` / ``pbo_skipped`` / ``spa_skipped`` when they could not be estimated). ``n_configs``: distinct
    configurations the window's study tried (COMPLETE, PRUNED or FAILED), ``config_ids`` their identities
    (``records.configuration_identities``: the run counts a configuration several windows tried once); ``spa``: its
    ``RealityCheck.to_dict()``; ``cpcv``: with ``[cv] mode = "cpcv"``, the PBO's split and path figures."""

    window: Window
    study_name: str
    train_dates: tuple[str, str]
    test_dates: tuple[str, str]
    params: dict[str, Any]       # the winner's Optuna params (as the study shows them)
    is_metrics: dict[str, float]
    oos_metrics: dict[str, float]
    trades: Trades
    excess: np.ndarray
    n_trials_tried: int
    trial_sharpes: list[float]
    in_reserve: bool
    dsr_in_sample: float = _NAN
    pbo: float = _NAN
    dsr_skipped: str | None = None
    pbo_skipped: str | None = None
    n_configs: int = 0
    spa: dict[str, Any] | None = None
    spa_skipped: str | None = None
    cpcv: dict[str, Any] | None = None
    config: Config | None = None  # the winner's effective configuration (what the OOS evaluation ran)
    config_ids: tuple[str, ...] = ()  # identities of the n_configs distinct configurations the window tried
    book: dict[str, int] | None = None  # what the one book changed in the window's own OOS run (``_book_window``)

    @property
    def spa_p(self) -> float:
        return float(self.spa["p_value"]) if self.spa and self.spa.get("p_value") is not None else _NAN

    def cfg(self, spec: StudySpec) -> Config:
        """The winner's effective configuration (``config``; rebuilt from ``params`` for a result without it)."""
        return self.config if self.config is not None else params_to_config(self.params, spec)


@dataclass
class WalkForwardResult:
    spec_name: str
    windows: list[WindowResult]
    oos: dict[str, float]
    stats: dict[str, Any]
    verdict: Verdict
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
    study: str = ""  # the run's name ([run].study_name): its window studies, folder and report are named after it
    settings: dict[str, Any] = field(default_factory=dict)  # what the run ran with (``run_settings``)

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-ready plain objects (NaN / inf -> None); the verdict as ``Verdict.to_dict``."""
        def clean(v: Any) -> Any:
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
            "study": self.study or self.spec_name,
            "final": self.final,
            "settings": self.settings,
            "windows": [
                {"index": w.window.index, "study": w.study_name, "train": list(w.train_dates), "test": list(w.test_dates),
                 "in_reserve": w.in_reserve, "best_params": w.params,
                 "config": w.config.to_params() if w.config is not None else None,
                 "in_sample": w.is_metrics, "out_of_sample": w.oos_metrics,
                 "n_trials_tried": w.n_trials_tried, "n_configs": w.n_configs, "book": w.book}
                for w in self.windows
            ],
            "oos": self.oos,
            "dsr": self.stats.get("dsr"),
            "psr": self.stats.get("psr"),
            "pbo": self.stats.get("pbo"),
            "spa": self.stats.get("spa"),
            "inference": self.stats.get("inference"),
            "degradation": self.stats.get("degradation"),
            "stats": self.stats,
            **self.verdict.to_dict(),
            "regimes": self.by_regime.to_dict(orient="records"),
            "by_sector": self.by_sector.to_dict(orient="records"),
            "warnings": self.warnings,
        })


def concat_trades(parts: list[Trades]) -> Trades:
    """The trades of several runs as one ``Trades``: one cost for all when every part has the same, else each
    trade keeps its own run's cost (windows whose winners trade at different searched costs). Their sizing (weight,
    regime multiplier) is kept when every part carries it and all size the same way (relative or absolute); otherwise
    (windows whose winners size differently) the stitched account weighs the trades equally."""
    if not parts:
        e = np.empty(0, np.int64)
        f = np.empty(0, np.float64)
        return Trades(e, e, e, e, f, f, e, f, cost=0.0)
    same = all(np.ndim(p.cost) == 0 and p.cost == parts[0].cost for p in parts)
    cost = parts[0].cost if same else np.concatenate([p.cost_per_trade for p in parts])
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    absolute = {bool(p.absolute) for p in parts}
    w = m = None
    if all(p.weight is not None for p in parts) and len(absolute) == 1:
        w = cat("weight")
        m = cat("mult") if all(p.mult is not None for p in parts) else None
    return Trades(cat("symbol"), cat("signal_idx"), cat("entry_idx"), cat("exit_idx"), cat("entry_price"),
                  cat("exit_price"), cat("exit_reason"), cat("score"), cost=cost, weight=w, mult=m,
                  absolute=w is not None and absolute == {True})


def _why_none(study: optuna.Study) -> str:
    """Why a study has no completed trial: its pruned / failed counts and the first trial's stored reason (a
    window whose every trial met too few trades in a fold says so, and what to change)."""
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    first = min(pruned + failed, key=lambda t: t.number, default=None)
    rec = read_trial(first) if first is not None else None
    reason = None if rec is None else (rec.pruned_reason or rec.fail_reason)
    out = f" ({len(pruned)} pruned, {len(failed)} failed of {len(trials)}"
    out += f"; trial {first.number}: {reason})" if reason else ")"
    if reason and "< min_trades" in reason:
        out += ("; every configuration met too few closed trades in a fold: lower [objective] min_trades, or give "
                "the window more sessions ([walkforward] train) or fewer inner folds ([walkforward] n_splits)")
    return out


def select_params(study: optuna.Study, how: str = "best", top_k: int = 5) -> optuna.trial.FrozenTrial:
    """The best trial, or (``robust``) among the top-k the one whose nearest neighbours in parameter space score
    best by median: a configuration on a plateau beats a lucky spike. A multi-objective study: its Pareto front
    ranked by the first objective (``records.ranked_trials``, as ``study best``), the neighbours' median of the first
    objective. A repeat (a trial that reused an earlier trial's result, ``repeat_of``) is its configuration again,
    not a neighbour: left out, so a configuration the sampler proposed three times is not its own plateau."""
    ranked = [t for t in ranked_trials(study) if read_trial(t).repeat_of is None]
    if not ranked:
        raise DataError(f"study {study.study_name!r} has no completed trial to select from{_why_none(study)}")
    sign = direction_sign(study.directions[0])
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
    vals = np.array([t.values[0] for t in ranked])
    m = max(3, len(ranked) // 10)
    best, best_score = ranked[0], -np.inf
    for i in range(min(top_k, len(ranked))):
        d = np.abs(Xn - Xn[i]).sum(axis=1) + (Cv != Cv[i]).sum(axis=1)  # a different category counts as a full range
        nn = np.argsort(d, kind="mergesort")[:m]
        score = -sign * float(np.median(vals[nn]))
        if score > best_score:
            best, best_score = ranked[i], score
    return best


def tried_configs(study: optuna.Study) -> tuple[list[optuna.trial.FrozenTrial], list[bool]]:
    """The distinct configurations ``study`` evaluated, in trial-number order (``records.group_configurations``: the
    trials' stored effective configurations, a repeat of the same configuration counted once): the first COMPLETE
    or PRUNED trial of each, and whether the configuration completed. What PBO and SPA run; failed trials have no
    evaluation to run (DSR still counts them: ``records.distinct_configurations``)."""
    evaluated = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    reps: list[optuna.trial.FrozenTrial] = []
    done: list[bool] = []
    for group in group_configurations(study):
        ran = [t for t in group if t.state in evaluated]
        if ran:
            reps.append(ran[0])
            done.append(any(t.state == optuna.trial.TrialState.COMPLETE and bool(t.values) for t in ran))
    return reps, done


def _held_rows(trades: Trades, lo: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per trade, the first row and one past the last row of [lo, lo + n) it is held on (entry to exit row, as the
    portfolio holds it; an exit past the span is held to its last row), and whether it is held on any."""
    a = np.maximum(np.asarray(trades.entry_idx, dtype=np.int64), lo) - lo
    b = np.minimum(np.asarray(trades.exit_idx, dtype=np.int64) - lo, n - 1) + 1
    return a, b, b > a


def _positions_held(trades: Trades, lo: int, n: int) -> np.ndarray:
    """Per session of [lo, lo + n): the number of positions the account holds (``_held_rows``: a trade left open
    at its data end included, to the last row of the span or its ``exit_idx``, as ``_account_trades`` holds it)."""
    a, b, ok = _held_rows(trades, lo, n)
    cnt = np.zeros(n + 1, dtype=np.int64)
    np.add.at(cnt, a[ok], 1)
    np.add.at(cnt, b[ok], -1)
    return np.cumsum(cnt)[:n]


def _exposure(trades: Trades, lo: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per session of [lo, lo + n): the share of the account held in its positions, as ``portfolio_returns`` sizes
    them (docs/ENGINE.md "Position sizing": 1 with equal weights; relative sizing sum w*m / sum w, absolute sizing
    min(1, sum w*m); 0 in cash), and whether any position is open (``_positions_held`` > 0)."""
    k = len(trades)
    w = np.ones(k) if trades.weight is None else np.asarray(trades.weight, dtype=float)
    m = np.ones(k) if trades.mult is None else np.asarray(trades.mult, dtype=float)
    a, b, ok = _held_rows(trades, lo, n)
    num, den = np.zeros(n + 1), np.zeros(n + 1)
    for arr, val in ((num, w * m), (den, w * m if trades.absolute else w)):
        np.add.at(arr, a[ok], val[ok])
        np.add.at(arr, b[ok], -val[ok])
    num, den, invested = np.cumsum(num)[:n], np.cumsum(den)[:n], _positions_held(trades, lo, n) > 0
    if trades.weight is None and trades.mult is None:
        return invested.astype(float), invested  # equal weights: fully invested whenever a position is open
    with np.errstate(invalid="ignore", divide="ignore"):
        expo = num / (np.maximum(den, 1.0) if trades.absolute else den)
    return np.where(invested & (den > 0), expo, 0.0), invested


def _universe_returns(close: np.ndarray) -> np.ndarray:
    """Per session (row of ``close``, sessions x symbols), the equal-weight universe's return: the mean over the
    symbols with a return that day, 0 when none has one. A symbol without a bar between two bars it has (a gap in
    its prices) is held at its last close, as the account holds a position there (``portfolio_returns``): 0 on
    the missing sessions and the move since its last close on the next bar (before 2026-12-04 that move was
    dropped, so the basket the PBO columns subtract missed what the account books); before its first bar and
    after its last it is not in the basket."""
    filled = pd.DataFrame(close).ffill(limit_area="inside").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        r = filled[1:] / filled[:-1] - 1.0
    ok = np.isfinite(r)
    n = ok.sum(axis=1)
    mean = np.where(ok, r, 0.0).sum(axis=1) / np.maximum(n, 1)
    return np.concatenate([[0.0], np.where(n > 0, mean, 0.0)])


def _config_matrices(data: StudyData, configs: list[optuna.trial.FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
    """Each configuration (a trial's stored effective configuration, ``space.trial_config``) run once over the
    study's span [first fold start, hi), as two sessions x configurations matrices: (PBO) daily portfolio return
    minus the equal-weight universe held at the portfolio's exposure (``_exposure``: all of it without sizing, the
    sized share with ``sizing`` / ``regime_sizing``) on invested days, 0 otherwise; (SPA) the daily excess P&L over
    the matched random-entry benchmark of its closed trades (``daily_excess(...).total``, the series the verdict
    tests)."""
    panel, ev = data.panel, data.evaluator
    lo = data.folds[0].test_start
    span = Span(lo, data.hi, data.hi)
    C = panel["close"]
    ew = _universe_returns(C)[lo:data.hi]
    ew_cols, ex_cols = [], []
    for t in configs:
        cfg = trial_config(t, data.spec)
        res = ev.run(cfg, span, entry_ok=data.entry_ok)
        daily = portfolio_returns(res.trades, panel, span)
        expo, invested = _exposure(res.trades, lo, span.data_end - span.sig_start)
        ew_cols.append(np.where(invested, daily - expo * ew, 0.0))
        ex = ev.bench.excess(res.trades, span)
        ex_cols.append(daily_excess(res.trades, ex, C, lo, data.hi).total)
    shape = (data.hi - lo, 0)
    return (np.array(ew_cols).T if ew_cols else np.empty(shape), np.array(ex_cols).T if ex_cols else np.empty(shape))


def pbo_matrix(data: StudyData, study: optuna.Study, max_configs: int | None = None) -> np.ndarray:
    """Sessions x configurations matrix of daily portfolio returns in excess of the equal-weight universe held at
    the portfolio's exposure (the daily random-entry analogue) over the study's span, one column per distinct COMPLETED configuration of the
    study (the first ``max_configs`` when given)."""
    configs, done = tried_configs(study)
    chosen = [c for c, d in zip(configs, done) if d][:max_configs]
    return _config_matrices(data, chosen)[0]


def combine_pvalues(p: Any) -> float:
    """One p-value from several computed on dependent data (overlapping train windows): Rüger's order-statistic
    bound K/k x p_(k) with k = ceil(K/2) (about twice the median), valid under ANY dependence (Rüger 1978; Vovk &
    Wang 2020, "Combining p-values via averaging", Biometrika 107(4)). NaN values are left out; NaN when none is
    left."""
    v = np.sort(np.asarray([x for x in np.ravel(p) if x is not None and np.isfinite(x)], dtype=float))
    if v.size == 0:
        return _NAN
    k = math.ceil(v.size / 2)
    return float(min(1.0, v.size / k * v[k - 1]))


def _reserve_record(db: str | Path, spec: StudySpec, reserve_start: str | None, final: bool,
                    last: str) -> list[str]:
    """Record an opening of the final reserve in the store's ledger (``final`` only); the loud warning of a
    repeated opening."""
    if not final or reserve_start is None:
        return []
    earlier = record_opening(db, reserve_start, "walkforward --final", spec.run.study_name, last)
    w = opening_warning(reserve_start, earlier)
    return [w] if w else []


# ------------------------------------------------------------------------------------------------ one window


@dataclass(frozen=True)
class _RunContext:
    """What every window of one walk-forward run shares."""

    spec: StudySpec
    panel: Panel              # every session of the spec's data (the reserve is cut by ``limit``)
    limit: int                # sessions the run may see: the reserve start, or all with ``final``
    reserve: int              # index of the first reserve session
    purge: int                # sessions after a test window that its trades may still use to close
    n_trials: int             # per window
    storage_url: str | None
    bench: BenchmarkCache     # matched random-entry benchmark over the visible sessions

    @functools.cached_property
    def fingerprint(self) -> str:
        """The fingerprint of the sessions the run may see (``panel.slice(0, limit)``), computed once."""
        return self.panel.slice(0, self.limit).fingerprint()


def _window_dsr(data: StudyData, cfg: Any, sharpes: np.ndarray, tried: int) -> tuple[float, str | None]:
    """Deflated Sharpe of the in-sample winner: its per-trade excess returns over the train span, deflated by the
    ``tried`` distinct configurations of the window (pruned included; a repeat of the same parameters counts once)
    and the dispersion of the distinct completed configurations' excess Sharpe ratios. (NaN, why) when it cannot be
    estimated."""
    f0 = data.folds[0]
    is_span = Span(f0.test_start, data.hi, data.hi)
    is_res = data.evaluator.run(cfg, is_span, entry_ok=data.entry_ok)
    is_ex = data.evaluator.bench.excess(is_res.trades, is_span)
    fin = sharpes[np.isfinite(sharpes)]
    if is_ex.size < 3 or fin.size < 2:
        return _NAN, f"{is_ex.size} in-sample trade(s) and {fin.size} finite trial Sharpe ratio(s); DSR needs >= 3 and >= 2"
    if np.ptp(is_ex) == 0.0:  # every in-sample trade earned the same excess: no dispersion, no Sharpe ratio (NaN)
        return _NAN, (f"the in-sample winner's {is_ex.size} trade excess returns are all {float(is_ex[0]):+.4g} "
                      "(zero dispersion): no Sharpe ratio to deflate")
    try:
        return float(deflated_sharpe_from_study(is_ex, fin, max(tried, fin.size)).dsr), None
    except ParameterError as e:  # degenerate moments
        return _NAN, str(e)


def _window_pbo(data: StudyData, M: np.ndarray) -> tuple[float, str | None, dict[str, Any] | None]:
    """PBO of the window's study from its completed configurations' daily excess over the train span: CSCV over
    <= 16 blocks, or with ``[cv] mode = "cpcv"`` over the study's own combinatorial purged splits (then also the
    paths' figures). (NaN, why, None) when it cannot be estimated: fewer than 2 configurations or 16 sessions, or
    configurations whose daily excess is all the same (e.g. none traded), which CSCV would score PBO 1.0."""
    if M.shape[1] < 2 or M.shape[0] < 16:
        return _NAN, f"{M.shape[1]} completed configuration(s) over {M.shape[0]} session(s); PBO needs >= 2 and >= 16", None
    if distinct_columns(M).size < 2:  # ties everywhere: every combination's winner ranks at the median (PBO 1.0)
        return _NAN, (f"the {M.shape[1]} completed configurations have the same daily excess over the train span "
                      "(none traded, or all traded alike); PBO needs >= 2 that differ"), None
    try:
        if isinstance(data.cv, CombinatorialPurgedCV):
            cv = CombinatorialPurgedCV(data.cv.n_groups, data.cv.n_test_groups, data.cv.purge, data.cv.embargo)
            r = cpcv_pbo(M, cv)
            return float(r.pbo.pbo), None, {
                "n_splits": r.n_splits, "n_paths": r.n_paths, "path_sharpe_median": r.path_metric_median,
                "prob_path_loss": r.prob_path_loss, "path_sharpe": [float(x) for x in r.path_metric]}
        return float(probability_of_backtest_overfitting(
            M, n_blocks=min(16, (M.shape[0] // 2) * 2 if M.shape[0] < 32 else 16)).pbo), None, None
    except ParameterError as e:
        return _NAN, str(e), None


def _window_spa(M: np.ndarray) -> tuple[dict[str, Any] | None, str | None]:
    """Hansen's SPA over every distinct configuration tried in the window (columns of ``M``, daily excess over the
    train span). (None, why) when it cannot be estimated."""
    if M.shape[1] < 1 or M.shape[0] < 10:
        return None, f"{M.shape[1]} configuration(s) over {M.shape[0]} session(s); SPA needs >= 1 and >= 10"
    r = spa_test(M, reps=1000, seed=0)
    if not np.isfinite(r.p_value):
        return r.to_dict(), f"none of the {r.n_configs} configuration(s) traded in the train span"
    return r.to_dict(), None


def _window_dates(ctx: _RunContext, w: Window) -> tuple[tuple[str, str], tuple[str, str]]:
    d = ctx.panel.dates
    return (str(d[w.train_start]), str(d[w.train_end - 1])), (str(d[w.test_start]), str(d[w.test_end - 1]))


def _window_name(ctx: _RunContext, w: Window) -> str:
    """The window's study name: ``<study>-wfNN-<train start>_<train end>``."""
    train, _ = _window_dates(ctx, w)
    return f"{ctx.spec.run.study_name}-wf{w.index:02d}-{train[0]}_{train[1]}"


def _window_data(ctx: _RunContext, w: Window) -> StudyData:
    """The window's study data: the panel cut at its train end (no test session visible)."""
    spec = ctx.spec
    n_splits = None if spec.cv.mode == "cpcv" else spec.walkforward.n_splits  # cpcv: the [cv] groups
    try:
        data = prepare_data(spec, ctx.panel, w.train_start, w.train_end, n_splits, spec.walkforward.embargo)
    except ParameterError as e:  # which window: its train span
        train, _ = _window_dates(ctx, w)
        raise ParameterError(f"walk-forward window {w.index} (train {train[0][:10]}..{train[1][:10]}): {e}") from None
    assert len(data.panel.dates) == w.train_end  # the study's panel ends at its train end: no test session visible
    return data


# what a window study that cannot be resumed (another spec, other data) tells the user to do
_WINDOW_REMEDY = ("Give the walk-forward another name ([study] name or [run].study_name) or delete its window studies "
                  "(accumopt study delete NAME)")


def _refuse_cut_back(ctx: _RunContext, windows: list[Window]) -> None:
    """Refuse a run that asks for fewer trials per window than a stored window study already holds: a window study
    is resumed UP TO ``n_trials`` (never cut back), so the run would report the larger study while the user asked
    for fewer trials (``walkforward --n-trials 5`` after a run of 10 per window)."""
    storage = make_storage(ctx.storage_url, heartbeat=False)
    try:
        names = set(study_names(storage))
        for w in windows:
            name = _window_name(ctx, w)
            if name not in names:
                continue
            held = storage.get_n_trials(storage.get_study_id_from_name(name),
                                        (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
            if held <= ctx.n_trials:
                continue
            asked = read_study(optuna.load_study(study_name=name, storage=storage)).n_trials_target
            if asked is not None and asked > ctx.n_trials:  # (a window run to this n_trials may hold one more
                # trial after a stalled worker lost its claim: not a smaller request, so not refused)
                raise ParameterError(
                    f"n_trials must be >= the {held} finished trials window study {name!r} already holds (run to "
                    f"n_trials={asked}), got n_trials={ctx.n_trials}: a window study is resumed up to n_trials, "
                    f"never cut back. {_WINDOW_REMEDY}")
    finally:
        if hasattr(storage, "engine"):
            storage.engine.dispose()  # no pooled connection crosses a later fork (--jobs)


def _window_study(ctx: _RunContext, w: Window, data: StudyData, callbacks: list | None = None):
    """Run (or resume) the window's study to ``ctx.n_trials`` trials: one sequential study (``run_study``, one
    process), whichever worker runs it."""
    train, test = _window_dates(ctx, w)
    # exactly n_trials per window: [run] timeout bounds `study run`, never a window (speed must not change the result)
    spec = replace(ctx.spec, run=replace(ctx.spec.run, timeout=None))
    return run_study(spec, None, ctx.storage_url, n_trials=ctx.n_trials, data=data, name=_window_name(ctx, w),
                     seed=False, extra_attrs=window_attrs(w.index, train, test, str(data.panel.dates[-1])),
                     callbacks=callbacks, remedy=_WINDOW_REMEDY)


def _run_window(ctx: _RunContext, w: Window) -> WindowResult:
    """Optimize on the window's train span (a study on the panel cut at the train end), evaluate the winner once
    on the test span, and measure the window's in-sample DSR and PBO while its data is at hand."""
    data = _window_data(ctx, w)
    r = _window_study(ctx, w, data)
    if r.interrupted:  # Ctrl-C: the study stopped short of its trials; never judged on those, nor the next windows
        done = r.counts["complete"] + r.counts["pruned"]
        raise Interrupted(f"walk-forward window {_window_name(ctx, w)!r} interrupted after {done} of its "
                          f"{ctx.n_trials} trials; run the walk-forward again to resume it (they are kept)")
    return _window_result(ctx, w, r.study, data)


def _window_result(ctx: _RunContext, w: Window, study: optuna.Study, data: StudyData) -> WindowResult:
    """The window's result from its stored study: the winner, its one OOS evaluation, the in-sample DSR, PBO and
    SPA (deterministic given the study: the same whichever worker ran the study). The evaluated figures are stored
    on the window's study (``records.write_window_result``) under the key of everything they are computed from
    (``_result_key``); a study that holds them for the same key (a resumed or re-run walk-forward, a window another
    worker ran) gives them back instead of computing them again: the same numbers, bit for bit."""
    spec = ctx.spec
    train, test = _window_dates(ctx, w)
    chosen = select_params(study, spec.walkforward.select, spec.walkforward.top_k)
    cfg = trial_config(chosen, spec)
    config_ids = tuple(configuration_identities(study))  # pruned and failed included, a repeated configuration once
    n_configs = len(config_ids)
    configs, done = tried_configs(study)
    sharpes = np.array([float(read_trial(t).metrics.get("excess_sharpe", np.nan)) for t, d in zip(configs, done) if d])
    key = _result_key(ctx, w, study, data)
    fig = read_window_result(study, key)
    if fig is None or fig.get("chosen") != chosen.number:
        fig = _window_figures(ctx, w, data, cfg, configs, done, sharpes, n_configs)
        fig["chosen"] = chosen.number
        write_window_result(study, key, fig)
    return WindowResult(
        w, _window_name(ctx, w), train, test, dict(chosen.params), dict(read_trial(chosen).metrics),
        fig["oos_metrics"], _trades_from(fig["trades"]), fig["excess"], len(study.get_trials(deepcopy=False)),
        list(map(float, sharpes)), w.test_end > ctx.reserve, fig["dsr"], fig["pbo"], fig["dsr_skipped"],
        fig["pbo_skipped"], n_configs, fig["spa"], fig["spa_skipped"], fig["cpcv"], cfg, config_ids,
    )


def _window_figures(ctx: _RunContext, w: Window, data: StudyData, cfg: Config, configs: list[optuna.trial.FrozenTrial],
                    done: list[bool], sharpes: np.ndarray, n_configs: int) -> dict[str, Any]:
    """What ``_window_result`` computes (and stores): the winner's OOS metrics, trades and per-trade excess over
    the benchmark (the window's own run, started flat: ``_book`` blocks what the book still holds at assembly),
    the window's in-sample DSR, PBO (with the CPCV paths' figures) and SPA, with the reasons of those that could
    not be estimated."""
    res, span = _oos_run(ctx, w, cfg)
    dsr, dsr_skipped = _window_dsr(data, cfg, sharpes, n_configs)
    M_pbo, M_spa = _config_matrices(data, configs)
    pbo, pbo_skipped, cpcv = _window_pbo(data, M_pbo[:, np.flatnonzero(done)])
    spa, spa_skipped = _window_spa(M_spa)
    return {"oos_metrics": res.metrics, "trades": _trades_fields(res.trades),
            "excess": ctx.bench.excess(res.trades, span), "dsr": dsr, "dsr_skipped": dsr_skipped, "pbo": pbo,
            "pbo_skipped": pbo_skipped, "cpcv": cpcv, "spa": spa, "spa_skipped": spa_skipped}


def _oos_run(ctx: _RunContext, w: Window, cfg: Config, held: np.ndarray | None = None,
             carried: Trades | None = None) -> tuple[Result, Span]:
    """The winner's one out-of-sample run on the window's test span: signals on [test start, test end), trades
    closing up to ``purge`` sessions later (data end = test end + purge, at most the visible sessions; a trade
    still open there is open at end), on the panel cut at that data end, with the spec's regime filter. ``held``
    (per symbol, the last row the book holds it on, ``_book``): no entry on a signal before that row
    (``_blocked_display``); ``carried``: the book's trades held into the window, which take their slots of the
    position caps until they exit (``simulate_counted(carried=)``)."""
    data_end = min(w.test_end + ctx.purge, ctx.limit)
    oos_panel = ctx.panel.slice(0, data_end)
    span = Span(w.test_start, w.test_end, data_end)
    ev = Evaluator(oos_panel, min_periods=ctx.spec.data.min_periods)
    disp = None if held is None else _blocked_display(ev.display(cfg), w.test_start, held)
    return ev.run(cfg, span, display=disp, entry_ok=regime_entry_mask(oos_panel, ctx.spec.data.regime),
                  carried=carried), span


def _blocked_display(display: np.ndarray, start: int, held: np.ndarray) -> np.ndarray:
    """A copy of the (T x N) ``display`` without the accumulation signals the book may not act on: symbol s's
    cells of rows [start, held[s]) are NaN (NaN is never a signal), where ``held[s]`` is the last row the book
    holds s on (its exit row; -1: not held). A signal at the close of held[s] itself enters at the next open, as
    after the engine's own exit (docs/ENGINE.md "Trades"). Exact as an entry mask, not only close to one: a run
    from ``start`` is flat in s until its first entry, after held[s], so no exit rule of s reads a NaN cell (they
    read the display from the entry row on, score_decay two rows back from entry + 2)."""
    out = np.array(display, dtype=np.float64, order="F")
    for s in np.flatnonzero(held > start):
        out[start:int(held[s]), s] = np.nan
    return out


def _book(results: list[Any], run: Callable[[Any, np.ndarray | None, Trades | None], Any],
          n_symbols: int) -> list[Any]:
    """The windows' out-of-sample runs as ONE continuous book, in window order: a trade a window opened runs to its
    own exit under that window's configuration (up to ``purge`` sessions past its test end, or open at its data
    end, where the account lets it go: ``_account_trades``), a later window's configuration may not enter a
    symbol on a signal before the row the book's trade of it exits on, and the book's trades still held take
    their slots of that configuration's position caps until they exit. ``run(result, held, carried)`` runs a
    window with ``held`` (per symbol, the last row the book holds it on) and ``carried`` (the book's trades that
    exit after the window's test start), both None when nothing the book holds reaches past the window's test
    start (then the window's own run, started flat, is the book's), and returns an object with the ``trades`` it
    took. Computed by the coordinator from the windows' stored results: the same in a single process, with
    ``--jobs`` and with workers, and from cached window studies."""
    held = np.full(n_symbols, -1, dtype=np.int64)
    taken: list[Trades] = []
    out = []
    for r in results:
        start = r.window.test_start
        block = carried = None
        if (held > start).any():
            block = held.copy()
            carried = _carried(taken, start)
        res = run(r, block, carried)
        t = res.trades
        np.maximum.at(held, np.asarray(t.symbol, dtype=np.int64), np.asarray(t.exit_idx, dtype=np.int64))
        taken.append(t)
        out.append(res)
    return out


def _carried(parts: list[Trades], start: int) -> Trades:
    """The book's trades (``parts``: each window's, in window order) whose exit row is after ``start``: those that
    can still hold a slot at an open after ``start`` (only their symbol, rows and exit reason are read)."""
    sym, ent, ext, rsn = (np.concatenate([np.asarray(getattr(p, k), dtype=np.int64) for p in parts])
                          for k in ("symbol", "entry_idx", "exit_idx", "exit_reason"))
    keep = ext > start
    z = np.zeros(int(keep.sum()))
    return Trades(sym[keep], ent[keep] - 1, ent[keep], ext[keep], z + 1.0, z + 1.0, rsn[keep], z)


def _book_window(ctx: _RunContext, r: WindowResult, held: np.ndarray | None,
                 carried: Trades | None = None) -> WindowResult:
    """``r`` as the book takes it (``_book``): unchanged when nothing is held into its test span, else its winner
    run again with the symbols the book holds blocked until their exit and the book's trades still held taking
    their slots of the position caps, with its per-trade excess over the window's benchmark and metrics, and
    ``book``: the symbols blocked, the window's own entries refused, the entries it made instead, and
    ``capped``: the refused entries whose symbol the book left free at the signal (neither blocked nor held by
    the window's own book run): refused by the caps (or a portfolio rule), whose slots the book's positions held."""
    if held is None:
        return r
    res, span = _oos_run(ctx, r.window, r.cfg(ctx.spec), held, carried)
    own = set(zip(r.trades.symbol.tolist(), r.trades.entry_idx.tolist()))
    took = set(zip(res.trades.symbol.tolist(), res.trades.entry_idx.tolist()))
    refused = own - took
    book = {"symbols_blocked": int(np.count_nonzero(held > r.window.test_start)), "refused": len(refused),
            "added": len(took - own), "capped": _capped(refused, held, res.trades)}
    return replace(r, trades=res.trades, excess=ctx.bench.excess(res.trades, span), oos_metrics=res.metrics,
                   book=book)


def _capped(refused: set[tuple[int, int]], held: np.ndarray, trades: Trades) -> int:
    """How many of the ``refused`` (symbol, entry row) entries had their symbol free in the book at the signal
    close (entry row - 1): not blocked (``held``: the book's exit row of the symbol before the window; a signal
    before it is blocked) and not in a position of the window's book run (``trades``) at that close. Such an entry
    was refused by the position caps (or a portfolio rule); without caps and portfolio rules there is none: the
    symbols are independent and a free symbol's signal enters."""
    n = 0
    for s, e in refused:
        g = e - 1
        if g < held[s]:
            continue
        mine = trades.symbol == s
        if np.any((trades.entry_idx[mine] <= g) & (trades.exit_idx[mine] > g)):
            continue
        n += 1
    return n


_TRADE_ARRAYS = ("symbol", "signal_idx", "entry_idx", "exit_idx", "entry_price", "exit_price", "exit_reason", "score")


def _trades_fields(t: Trades) -> dict[str, Any]:
    return {**{k: getattr(t, k) for k in _TRADE_ARRAYS}, "cost": t.cost, "weight": t.weight, "mult": t.mult,
            "absolute": t.absolute}


def _trades_from(d: dict[str, Any]) -> Trades:
    return Trades(*(d[k] for k in _TRADE_ARRAYS), cost=d["cost"], weight=d["weight"], mult=d["mult"],
                  absolute=d["absolute"])


# What a stored window result depends on besides its inputs: the accumopt code that computed it and the libraries
# its figures come from (a fixed statistic or another arch bootstrap must not be served from an earlier run).
_RESULT_LIBRARIES = ("numpy", "pandas", "scipy", "arch", "optuna", "numba", "scikit-learn", "statsmodels")


@functools.cache
def _code_digest() -> str:
    """16 hex chars of sha256 over the source of the ``optimizer`` package (every .py file, by path), the Python
    version and the versions of ``_RESULT_LIBRARIES``."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(f"python {platform.python_version()}\0".encode())
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for lib in _RESULT_LIBRARIES:
        try:
            v = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            v = "-"
        h.update(f"{lib}=={v}\0".encode())
    return h.hexdigest()[:16]


def _result_key(ctx: _RunContext, w: Window, study: optuna.Study, data: StudyData) -> str:
    """The key of a window's stored result: a digest of everything ``_window_figures`` reads. The spec as parsed
    (all but [run], its name, description, text, path and [data].database: [walkforward] included, which the spec
    hash leaves out, and a spec changed in code), the sessions the run may see (their fingerprint: the window's
    train and test data, the benchmark's), the window's rows, the purge and reserve, the window study's trials as
    stored (``records.trials_digest``) and the code (``_code_digest``)."""
    s = ctx.spec
    semantic = replace(s, name="", description="", source="", path=None, run=RunSpec(),
                       data=replace(s.data, database=None))
    rows = [int(x) for x in (ctx.limit, ctx.reserve, ctx.purge, w.index, w.train_start, w.train_end, w.test_start,
                             w.test_end)]
    doc = [2, _code_digest(), repr(semantic), ctx.fingerprint, data.fingerprint, rows, trials_digest(study)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ the run


def _setup(spec: StudySpec, db: str | Path, storage_url: str | None, final: bool,
           n_trials: int | None) -> tuple[_RunContext, list[Window], int]:
    """The run's shared context, its windows and the reserve start index (index of the first reserve session)."""
    wfs = spec.walkforward
    if wfs.step is not None and wfs.step < wfs.test:  # a spec built in code (the loader refuses it in a file)
        raise SpecError("walkforward.step", walkforward_step_rule(wfs.test, wfs.step), spec.path)
    rule = aggregate_folds_rule(spec.objective.aggregate, wfs.n_splits) if spec.cv.mode != "cpcv" else None
    if rule:  # each window's study scores [walkforward] n_splits inner folds (explore21)
        raise SpecError("objective.aggregate", f"would change nothing in a walk-forward window, whose study scores "
                                               f"[walkforward] n_splits = {wfs.n_splits} inner folds: the {rule}; set "
                                               f"[walkforward] n_splits >= 3 or aggregate = \"mean\"", spec.path)
    panel_full, reserve = load_study_data(spec, db)
    T = len(panel_full.dates)
    limit = T if final else reserve
    purge = wfs.purge if wfs.purge is not None else spec.max_hold()
    windows = WalkForward(wfs.train, wfs.test, wfs.step, wfs.unit, purge=purge, anchored=wfs.anchored).split(
        panel_full.dates[:limit])
    ctx = _RunContext(spec, panel_full, limit, reserve, purge, n_trials or wfs.n_trials or spec.run.n_trials,
                      resolve_storage(storage_url, spec.run.storage), BenchmarkCache(panel_full.slice(0, limit)))
    return ctx, windows, reserve


@naming_its_storage
def run_walkforward(
    spec: StudySpec,
    db: str | Path,
    storage_url: str | None = None,
    final: bool = False,
    progress: bool = False,
    n_trials: int | None = None,
    out_dir: str | Path | None = None,
    jobs: int = 1,
) -> WalkForwardResult:
    """Walk ``spec`` forward over the store ``db``: one study per train window (stored in ``storage_url``, resumed
    when it exists), the winner evaluated once on the following test window, the OOS trades stitched and judged.
    ``final``: also open the final reserve (recorded in the store's reserve ledger; a second opening warns).
    ``out_dir``: also write ``walk_forward_summary.csv`` there (``save_walkforward`` writes the full set of files,
    in ``walkforward_dir``).

    On a storage with heartbeats (SQLite, PostgreSQL: any RDB URL) the windows are claimed through the storage
    (``optimizer.validate.distributed``): ``jobs`` local processes (this one and ``jobs - 1`` forked ones) and
    any number of ``walkforward worker`` processes on other machines each run whole windows; this process then
    stitches the windows in order. The result is the single-process one (each window's study is the same
    sequential study whoever runs it). Journal and in-memory storages run the windows here, one after another."""
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got jobs={jobs}")
    if n_trials is not None and not (isinstance(n_trials, int) and not isinstance(n_trials, bool) and n_trials >= 1):
        raise ParameterError(f"n_trials must be an integer >= 1, got n_trials={n_trials!r}")  # 0 is not "not given"
    if final and spec.data.reserve_fraction == 0:  # a flag that changes nothing is refused, not ignored
        raise ParameterError(f"--final has no reserve to open: [data].reserve_fraction = 0 in spec {spec.name!r} "
                             "holds back no session; run without --final")
    db = resolve_db(db, spec.data.database)
    ctx, windows, reserve = _setup(spec, db, storage_url, final, n_trials)
    _refuse_cut_back(ctx, windows)
    T, limit = len(ctx.panel.dates), ctx.limit
    msgs = _reserve_record(db, spec, str(ctx.panel.dates[reserve])[:10] if reserve < T else None, final,
                           str(ctx.panel.dates[limit - 1])[:10])
    msgs += _setup_notes(ctx)
    for m in msgs:
        warnings.warn(m, stacklevel=2)
    prog = Progress(console=Console(stderr=True)) if progress else None  # stderr: stdout is the command's report
    if prog:
        prog.start()
        task = prog.add_task("walk-forward windows", total=len(windows))
    try:
        if _claimable(ctx.storage_url):
            run = {"spec_hash": spec.spec_hash, "n_trials": ctx.n_trials, "final": final,
                   "windows": [_window_name(ctx, w) for w in windows], "key": _run_key(ctx)}
            on_pass = (lambda st: prog.update(task, completed=sum(v == DONE for v in st.values()))) if prog else None
            results = _distributed(ctx, windows, run, jobs, collect=True, on_pass=on_pass)
        else:
            if jobs > 1:
                raise ParameterError(f"jobs must be 1 with storage {ctx.storage_url}: only a storage with heartbeats "
                                     f"(SQLite or another RDB URL) can share windows between processes, got jobs={jobs}")
            results = []
            for w in windows:
                results.append(_run_window(ctx, w))
                if prog:
                    prog.advance(task)
    finally:
        if prog:
            prog.stop()
    res = _assemble(ctx, results, final, msgs)
    if out_dir is not None:
        _write_summary(res, Path(out_dir))
    return res


def _setup_notes(ctx: _RunContext) -> list[str]:
    """What the coordinator and each worker say of the run they set up (the one list for both): the unrecorded
    splits in the data (once, not per window), a [data] start / end past the store's sessions (``span_lines``) and
    what the spec sets that no window uses."""
    return [*span_lines(ctx.spec, ctx.panel), *panel_split_lines(ctx.panel), *_unused_notes(ctx.spec, ctx.n_trials)]


def _unused_notes(spec: StudySpec, n_trials: int) -> list[str]:
    """What the spec sets that no walk-forward window uses, said by the coordinator and by each worker."""
    msgs = []
    if spec.seed_from is not None:
        msgs.append(f"[seed_from] {spec.seed_from.study!r} is not used by walk-forward windows: that study saw "
                    "sessions after each window's train end, so its trials would leak the future into the window")
    if spec.run.timeout is not None:  # [run] timeout bounds `study run` only (explore21: it was ignored unsaid)
        msgs.append(f"[run] timeout = {spec.run.timeout:g} is not used by walk-forward windows: each runs exactly its "
                    f"{n_trials} trials, so that the result does not depend on the machine's speed")
    cv = _cv_keys_unread(spec)
    if cv:  # each window's inner CV is [walkforward] n_splits / embargo (README [walkforward]); [cv]'s are study run's
        wfs = spec.walkforward
        inner = ("the [cv] cpcv groups" if spec.cv.mode == "cpcv"
                 else f"[walkforward] n_splits = {wfs.n_splits} inner folds")
        msgs.append(f"[cv] {', '.join(f'{k} = {getattr(spec.cv, k)}' for k in cv)} {'is' if len(cv) == 1 else 'are'} "
                    f"not used by walk-forward windows: each window's study scores {inner} with [walkforward] "
                    f"embargo = {wfs.embargo} (set those to change a window's folds)")
    return msgs


def run_notes(caught: list[warnings.WarningMessage], result: "WalkForwardResult") -> list[str]:
    """Of the warnings recorded while ``run_walkforward`` ran, the run's own, to be shown as lines (the CLI's
    ``walkforward``, ``make demo``): ``result.warnings`` (the reserve, [seed_from], [run] timeout, [cv] keys the
    windows do not read, unrecorded splits) and a forked worker process that died; not the libraries' warnings."""
    return [str(w.message) for w in caught
            if str(w.message) in result.warnings or "worker process(es) ended" in str(w.message)]


def _cv_keys_unread(spec: StudySpec) -> list[str]:
    """The ``[cv]`` keys the spec sets (its text writes them; a spec built in code: off their default) whose value a
    walk-forward window does not use: ``n_splits`` and ``test_size`` (a window's inner folds are ``[walkforward]
    n_splits`` equal blocks; with cpcv neither is read by any run) and ``embargo`` (``[walkforward] embargo``), each
    only when it differs from what the windows use."""
    keys, default = ("n_splits", "test_size", "embargo"), CVSpec()
    given = [k for k in keys if (spec.sets("cv", k) if spec.source else getattr(spec.cv, k) != getattr(default, k))]
    wfs, cpcv = spec.walkforward, spec.cv.mode == "cpcv"
    used = {"n_splits": None if cpcv else wfs.n_splits, "test_size": None, "embargo": wfs.embargo}
    return [k for k in given if not (cpcv and k != "embargo") and getattr(spec.cv, k) != used[k]]


@naming_its_storage
def run_walkforward_worker(spec: StudySpec, db: str | Path, storage_url: str | None = None, jobs: int = 1,
                           wait: float = 60.0, on_ready: Callable[[], None] | None = None,
                           on_note: Callable[[str], None] | None = None) -> list[str]:
    """Join the walk-forward of ``spec`` that a coordinator (``run_walkforward``) started on ``storage_url``: claim
    and run whole windows (``jobs`` local processes) until every window is done; the window studies this
    process ran (its forked processes' not included). Waits up to ``wait`` seconds for the coordinator to have
    registered the run (``on_ready``: called once when it starts looking for it, ``distributed.wait_for_run``).
    ``on_note``: called with each note the coordinator says of the run (``_setup_notes``: the unrecorded splits in
    this machine's data, what the spec sets that no window uses: ``[run] timeout``, ``[seed_from]``, ``[cv]``
    keys); default: a UserWarning.
    This machine's store must give the same windows (same spec, same data): else a ``DataError``. The coordinator
    computes the results."""
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got jobs={jobs}")
    db = resolve_db(db, spec.data.database)
    url = resolve_storage(storage_url, spec.run.storage)
    if not _claimable(url):
        raise ParameterError(f"walkforward worker needs a storage with heartbeats (SQLite or another RDB URL such as "
                             f"postgresql://...), got {url}")
    run = wait_for_run(make_storage(url), spec.run.study_name, wait, on_ready)
    if not spec.matches_stored(run.get("spec_hash")):
        raise SpecError("walkforward", f"the walk-forward running in {url} was started from a different spec (hash "
                                       f"{run.get('spec_hash')}, this spec {spec.spec_hash}); pass the same spec file")
    ctx, windows, _ = _setup(spec, db, url, bool(run.get("final")), int(run["n_trials"]))
    names = [_window_name(ctx, w) for w in windows]
    if names != list(run.get("windows") or []):
        raise DataError(f"the store {db} gives other walk-forward windows than the coordinator's ({len(names)} vs "
                        f"{len(run.get('windows') or [])}; first {names[:1]} vs {(run.get('windows') or [])[:1]}): "
                        "every worker needs the same data")
    if run.get("key") is not None and run["key"] != _run_key(ctx):
        raise DataError(f"this worker's window studies would differ from the coordinator's (settings key "
                        f"{_run_key(ctx)}, the coordinator's {run['key']}): the same windows, but other data in {db} "
                        "or other [walkforward] n_splits / embargo in the spec; every worker needs the same spec "
                        "file and data")
    for m in _setup_notes(ctx):
        on_note(m) if on_note is not None else warnings.warn(m, stacklevel=2)
    return _distributed(ctx, windows, run, jobs, collect=False)


def _run_key(ctx: _RunContext) -> str:
    """The hash of everything that decides the windows' studies (the spec, the trials per window, the inner CV of
    [walkforward], the data the run may see): what a window's claim is done for. A re-run whose key differs runs
    every window again through ``run_study``, which resumes a window's study to the trials asked for, or refuses
    one made from another spec or other data."""
    wfs = ctx.spec.walkforward
    doc = [ctx.spec.spec_hash, ctx.n_trials, wfs.n_splits, wfs.embargo, ctx.fingerprint]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _claimable(url: str) -> bool:
    """Whether windows can be claimed through this storage (an RDB storage with heartbeats)."""
    return not (url.startswith("journal:") or url in ("sqlite:///:memory:", "sqlite://"))


def _distributed(ctx: _RunContext, windows: list[Window], run: dict[str, Any], jobs: int, collect: bool,
                 on_pass: Any = None) -> Any:
    """Run the windows through claims in this process and ``jobs - 1`` forked ones (forked first, before this
    process opens any storage or starts a thread). ``collect``: also compute every window's result and return
    them in window order (a forked process computes the results of the windows it ran and sends them back; for
    the windows other machines ran, this process computes them from their stored studies, or reads back those an
    earlier run stored on them: the same numbers, they are deterministic given the study); else the names of the
    windows this process ran."""
    by_name = {_window_name(ctx, w): w for w in windows}
    storage = make_storage(ctx.storage_url)  # creates the schema once, before any other process opens the storage
    if hasattr(storage, "engine"):
        storage.engine.dispose()  # no pooled connection crosses the fork
    results: dict[str, WindowResult] = {}
    procs, pipes = [], []
    if jobs > 1:
        mp = multiprocessing.get_context("fork")
        sends = []
        for _ in range(jobs - 1):
            recv, send = mp.Pipe(duplex=False)
            procs.append(mp.Process(target=_child, args=(ctx, by_name, run, send if collect else None)))
            pipes.append(recv)
            sends.append(send)
        for p in procs:
            p.start()
        for send in sends:
            send.close()  # the children hold the sending ends: EOF once they exit
    receiver = threading.Thread(target=_receive, args=(pipes, results), name="wf-results", daemon=True)
    receiver.start()  # after the fork: the results the forked processes send, as they come

    run_one = _window_runner(ctx, by_name, results.__setitem__ if collect else None)
    try:
        claims = WindowClaims(storage, ctx.spec.run.study_name, run=run)
        try:
            ran = work_windows(claims, list(by_name), run_one, on_pass)
        finally:
            claims.close()
    except BaseException:
        for p in procs:  # this run failed or was interrupted: the forked processes stop after their running trial
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        raise
    finally:
        for p in procs:
            p.join()
        receiver.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        warnings.warn(f"{len(bad)} walk-forward worker process(es) ended with exit codes {bad}; their windows were "
                      "taken over", stacklevel=2)
    if not collect:
        return ran
    stored = set(study_names(storage))
    for name, w in by_name.items():
        if name not in results:  # run by another machine's worker (or an earlier run): its stored study
            data = _window_data(ctx, w)
            # a window done for these settings whose study was deleted since: run it again here (the same sequential
            # study); no worker takes it, its claim is done
            study = (optuna.load_study(study_name=name, storage=storage) if name in stored
                     else _window_study(ctx, w, data).study)
            results[name] = _window_result(ctx, w, study, data)
    return [results[n] for n in by_name]


def _receive(pipes: list[Any], results: dict[str, "WindowResult"]) -> None:
    """Collect ``(window name, WindowResult)`` from the forked processes' pipes until each is closed."""
    pipes = list(pipes)
    while pipes:
        for r in multiprocessing.connection.wait(pipes):
            try:
                name, res = r.recv()
                results[name] = res
            except EOFError:
                pipes.remove(r)


def _window_runner(ctx: _RunContext, by_name: dict[str, Window], deliver: Any = None,
                   should_stop: Any = lambda: False) -> Any:
    """``run_one(name, lost)`` for ``work_windows``: the window's study (stopped after the running trial once
    ``lost()`` or ``should_stop()``: a forked process whose coordinator is gone), then, with ``deliver``, the
    window's result handed to ``deliver(name, result)``. True when the study ran its trials."""
    def run_one(name: str, lost: Any) -> bool:
        if should_stop():
            return False
        w = by_name[name]
        data = _window_data(ctx, w)
        r = _window_study(ctx, w, data, callbacks=[_stop_when(lambda: lost() or should_stop())])
        if r.interrupted or lost() or should_stop():
            return False
        if deliver is not None:
            deliver(name, _window_result(ctx, w, r.study, data))
        return True
    return run_one


def _stop_when(lost: Any) -> Any:
    def cb(study: optuna.Study, trial: Any) -> None:
        if lost():
            study.stop()
    return cb


def _child(ctx: _RunContext, by_name: dict[str, Window], run: dict[str, Any], send: Any) -> None:
    """A forked ``--jobs`` process: claim and run window studies until every window is done; with ``send`` (a
    pipe to the coordinator), also compute and send each window's result."""
    # the coordinator stops its forked processes with SIGINT (handled even when the coordinator was started ignoring
    # SIGINT: nohup, a script's `cmd &`); a process whose coordinator is gone (killed) stops too, after its running
    # trial: the one helper `study run --jobs` workers use
    should_stop = worker_stop()
    run_one = _window_runner(ctx, by_name, (lambda name, res: send.send((name, res))) if send is not None else None,
                             should_stop)
    claims = WindowClaims(make_storage(ctx.storage_url), ctx.spec.run.study_name, run=run)

    def check(states: dict[str, str]) -> None:  # each pass over the windows, also while it waits for held ones
        if should_stop():
            raise Interrupted("walk-forward process stopped: its coordinator is gone or asked it to stop")

    try:
        work_windows(claims, list(by_name), run_one, on_pass=check)
    except Interrupted:
        if not should_stop():
            raise  # (stopped as asked: its window is released, whoever resumes the walk-forward runs it)
    finally:
        claims.close()
        if send is not None:
            send.close()


def _assemble(ctx: _RunContext, results: list[WindowResult], final: bool, msgs: list[str]) -> WalkForwardResult:
    # one book: no window enters a symbol the previous windows' trades still hold (every figure below is its own)
    results = _book(results, functools.partial(_book_window, ctx), len(ctx.panel.symbols))
    p = ctx.panel.slice(0, ctx.limit)
    trades, excess, span = _stitch(results, ctx.limit)
    daily = _daily(p, results, trades, excess)
    eq = _equity(p, trades, daily, _open_bench(ctx, results, daily.stop))
    oos = _oos_metrics(results, p, trades, excess, span)
    # One evaluator over every visible session serves all windows: features at t use rows <= t only, and a
    # window's simulation and benchmark read nothing past its own data_end (Span), so this equals per-window panels.
    ev_all = Evaluator(p, min_periods=ctx.spec.data.min_periods)
    stats = _statistics(ctx, results, trades, daily, eq, p, ev_all, regime_entry_mask(p, ctx.spec.data.regime))
    inf = stats["inference"]
    oos["excess_t"], oos["excess_t_iid"] = _f(inf["t"]), _f(inf["t_iid"])
    oos["portfolio_sharpe"], oos["max_drawdown"] = _account_figures(eq)
    v = _decide(stats)
    summary, tdf, stability = _tables(results, p, trades)
    events, by_symbol, by_sector, by_regime, rules = _segments(ctx.spec, p, results, span, ev_all)
    return WalkForwardResult(ctx.spec.name, results, oos, stats, v, summary, tdf, eq, stability, final, msgs,
                             events, by_symbol, by_sector, by_regime, rules, ctx.spec.run.study_name,
                             run_settings(ctx, results, final))


def run_settings(ctx: _RunContext, results: list[WindowResult], final: bool) -> dict[str, Any]:
    """What the run ran with, as it ran (the spec after its defaults, ``--n-trials`` and the store): its name and
    spec, the universe and span, the final reserve, the regime filter, min_periods, the costs the windows' winners
    traded at (one pair, or one per window when they differ), the windows, each window study's trials, sampler,
    pruner and inner CV, the objective and the selection rule. Stored in result.json (``settings``); the report
    and ``accumopt walkforward`` show it (``settings_rows``)."""
    s, wfs, d = ctx.spec, ctx.spec.walkforward, ctx.panel.dates
    costs: list[dict[str, float]] = []
    for r in results:
        p = r.cfg(s).to_params()
        c = {"commission_bps": float(p["commission_bps"]), "slippage_bps": float(p["slippage_bps"])}
        costs += [] if c in costs else [c]
    costs = costs or [{"commission_bps": s.data.commission_bps, "slippage_bps": s.data.slippage_bps}]
    if s.cv.mode == "cpcv":  # each window study scores the [cv] groups (``_window_data``)
        inner: dict[str, Any] = {"mode": "cpcv", "n_groups": s.cv.n_groups, "n_test_groups": s.cv.n_test_groups}
    else:
        inner = {"mode": s.cv.mode, "n_splits": wfs.n_splits, "min_train_size": s.cv.min_train_size}
    uni = s.data.universe
    return {
        "study": s.run.study_name, "spec": s.name, "spec_hash": s.spec_hash,
        "universe": list(uni) if isinstance(uni, (list, tuple)) else uni, "symbols": len(ctx.panel.symbols),
        **({"unpriced": ctx.panel.coverage.unpriced} if ctx.panel.coverage is not None and ctx.panel.coverage.unpriced
           else {}),
        "span": [str(d[0])[:10], str(d[ctx.limit - 1])[:10]],
        "reserve_start": str(d[ctx.reserve])[:10] if ctx.reserve < len(d) else None, "final": final,
        "regime": s.data.regime, "min_periods": s.data.min_periods,
        "costs": costs[0] if len(costs) == 1 else costs,
        "windows": {"n": len(results), "train": wfs.train, "test": wfs.test, "step": wfs.step or wfs.test,
                    "unit": wfs.unit, "purge": ctx.purge, "anchored": wfs.anchored},
        "window_study": {"n_trials": ctx.n_trials, "sampler": {"name": s.sampler.name, "seed": s.sampler.seed,
                                                               **s.sampler.options},
                         "pruner": {"name": s.pruner.name, **s.pruner.options},
                         "cv": {**inner, "purge": s.purge(), "embargo": wfs.embargo}},
        "objective": {"name": s.objective.name, "directions": list(s.objective.directions),
                      "aggregate": s.objective.aggregate, "k": s.objective.k, "min_trades": s.objective.min_trades,
                      "options": dict(s.objective.options)},
        "select": {"rule": wfs.select, "top_k": wfs.top_k if wfs.select == "robust" else None},
    }


def _opts(d: dict[str, Any], skip: tuple[str, ...] = ("name",)) -> str:
    return "".join(f", {k} {v}" for k, v in d.items() if k not in skip)


def settings_rows(st: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The run's settings (``run_settings``; result.json's ``settings``) as (label, text) rows, for the report and
    the terminal; [] for a run saved without them."""
    if not st:
        return []
    w, ws, o, sel = st["windows"], st["window_study"], st["objective"], st["select"]
    cv = ws["cv"]
    inner = (f"cpcv {cv['n_groups']} groups ({cv['n_test_groups']} per test)" if cv["mode"] == "cpcv" else
             f"{cv['n_splits']} purged folds" + (f", min train {cv['min_train_size']}" if cv.get("min_train_size") else ""))
    agg = o["aggregate"] + (f" k {o['k']:g}" if o["aggregate"] == "mean_minus_std" else "")
    return [
        ("study", f"{st['study']} (spec {st['spec']}, hash {st['spec_hash']})"),
        *data_settings_rows(st),
        ("windows", f"{w['n']}: train {w['train']} {w['unit']}, test {w['test']}, step {w['step']}, "
                    f"{'anchored' if w['anchored'] else 'rolling'}, purge {w['purge']} sessions"),
        ("window study", f"{ws['n_trials']} trials; sampler {ws['sampler']['name']} seed {ws['sampler']['seed']}"
                         f"{_opts(ws['sampler'], ('name', 'seed'))}; pruner {ws['pruner']['name']}{_opts(ws['pruner'])}; "
                         f"{inner}, purge {cv['purge']}, embargo {cv['embargo']}"),
        ("objective", f"{o['name']} ({', '.join(o['directions'])}), aggregate {agg}, min_trades {o['min_trades']}"
                      f"{_opts(o['options'], ())}"),
        ("selection", "the best trial" if sel["rule"] == "best" else f"robust: among the top {sel['top_k']} trials"),
    ]


def book_text(stats: dict[str, Any] | None) -> str:
    """What the one book changed (``stats["book"]``, docs/STATS.md "One book") as one line, for the terminal and the
    report: the windows run again with the book's positions, the symbols held into them (a symbol once per window
    it was held into), the entries those windows made on their own that their book run refused (a count of trades,
    not of symbols: a blocked symbol may have had no signal; of them, when any, those the position caps refused:
    the book's positions held the slots) and the entries their book run made instead. The words say which count
    is of what: "2 window(s) re-run with the book's positions: 3 held symbol(s) blocked (counted per window), 1 of
    those windows' own entries refused, 1 entry made instead"."""
    b = (stats or {}).get("book")
    if not b:
        return "not recorded (a run saved before result.json held it)"
    if not b["windows_blocked"]:
        return "no window blocked: no trade was held into a later window's test span"
    capped = f" ({b['capped']} by the position caps)" if b.get("capped") else ""
    return (f"{b['windows_blocked']} window(s) re-run with the book's positions: {b['symbols_blocked']} held symbol(s) "
            f"blocked (counted per window), {b['refused']} of those windows' own entries refused{capped}, "
            f"{b['added']} {'entry' if b['added'] == 1 else 'entries'} made instead")


def _f(v: Any) -> float:
    return _NAN if v is None else float(v)


def _stitch(results: list[WindowResult], limit: int) -> tuple[Trades, np.ndarray, Span]:
    """Every window's OOS trades and per-trade excess as one record, and the span from the first test session."""
    trades = concat_trades([r.trades for r in results])
    excess = np.concatenate([r.excess for r in results]) if results else np.empty(0)
    return trades, excess, Span(results[0].window.test_start, results[-1].window.test_end, limit)


def _daily(p: Panel, results: list[WindowResult], trades: Trades, excess: np.ndarray) -> DailyExcess:
    """The daily excess series of the stitched closed OOS trades, from the first test session to the last test
    session or the last exit, whichever is later, over the sessions observed (``_observed``: cash days inside a
    test window count as 0; a session no window tested and no position is held on is no day of the series)."""
    closed = trades.closed
    last = int(trades.exit_idx[closed].max()) + 1 if closed.any() else 0
    start = results[0].window.test_start
    stop = min(len(p.dates), max(results[-1].window.test_end, last))
    return daily_excess(trades, excess, p["close"], start, stop, rows=_observed(results, trades, start, stop))


def _observed(results: list[WindowResult], trades: Trades, start: int, stop: int) -> np.ndarray | None:
    """The rows of [start, stop) the stitched out-of-sample record observes: those some window tested (its
    [test_start, test_end)) and those the account holds a stitched trade on (entry to exit row, an open one to
    ``stop - 1``, as ``_equity`` holds it). With ``[walkforward] step`` larger than ``test`` no window tests the
    sessions between one test end and the next test start; ``None`` when every row is observed (step <= test)."""
    _, held = _exposure(trades, start, stop - start)  # the rows a stitched trade is held on, as the account holds them
    seen = held | _tested(results, start, stop)
    return None if seen.all() else np.flatnonzero(seen) + start


def _tested(results: list[WindowResult], start: int, stop: int) -> np.ndarray:
    """Per row of [start, stop): whether some window tested it (its [test_start, test_end): the sessions a signal
    was evaluated on out of sample)."""
    seen = np.zeros(stop - start, dtype=bool)
    for r in results:
        seen[max(r.window.test_start, start) - start:max(min(r.window.test_end, stop) - start, 0)] = True
    return seen


def _signal_rows(results: list[WindowResult], daily: DailyExcess) -> np.ndarray | None:
    """The rows the market-adjusted series' random entries follow (``daily_excess(signal_rows=)``): with test
    windows that leave sessions between them untested (``[walkforward] step`` > ``test``), the sessions some window
    tested, as each window's ``BenchmarkCache`` takes its entries only after a session of its test span; ``None``
    (every row of the series, as before) when the test windows tile."""
    gaps = any(b.window.test_start > a.window.test_end for a, b in zip(results, results[1:]))
    return np.flatnonzero(_tested(results, daily.start, daily.stop)) + daily.start if gaps else None


def _open_bench(ctx: _RunContext, results: list[WindowResult], stop: int) -> np.ndarray:
    """Per stitched trade left open at its window's data end (order of ``trades.open_at_end``), its matched
    random-entry benchmark for the rows the account holds it (``_account_trades``: entry row to its exit row, at
    most ``stop - 1``): the expectation of the window's ``BenchmarkCache`` over that window's span for a hold of
    (last row - entry row) sessions, the rule a closed trade's benchmark follows (0 where no entry session exists)."""
    out = []
    for r in results:
        tr, w = r.trades, r.window
        held = np.minimum(tr.exit_idx[tr.open_at_end], stop - 1) - tr.entry_idx[tr.open_at_end]
        if held.size:
            span = Span(w.test_start, w.test_end, min(w.test_end + ctx.purge, ctx.limit))
            ratio = ctx.bench.ratios(span, held.astype(np.int64))[np.arange(held.size), tr.symbol[tr.open_at_end]]
            out.append(np.where(np.isfinite(ratio), ratio - 1.0, 0.0))
    return np.concatenate(out) if out else np.zeros(0)


def _sized_bench(trades: Trades, daily: DailyExcess, open_bench: np.ndarray | None = None) -> np.ndarray:
    """Per day of ``daily``, the matched random-entry benchmark of the account's positions at the account's own
    sizing: each trade's benchmark expectation spread evenly over the rows the account holds it, weighted as
    ``portfolio_returns`` weighs the trade (docs/ENGINE.md "Position sizing": relative sizing sum w*m*b / sum w,
    absolute sizing sum w*m*b / max(1, sum w*m)). A closed trade's expectation is its net return minus its excess;
    a trade left open at its window's data end is held by the account too (``_account_trades``), with the
    expectation ``open_bench`` (``_open_bench``; None: the closed trades only). Before 2026-12-04 the open ones were left
    out of the benchmark while the account held them, so on their days the account's mean over every position was
    set against a benchmark averaged over the closed ones only. Without sizing and without open trades it is
    ``daily.bench_mean``."""
    closed = trades.closed
    is_open = trades.open_at_end
    held = closed if open_bench is None else np.ones(closed.size, dtype=bool)
    w = np.ones(closed.size) if trades.weight is None else np.asarray(trades.weight, dtype=float)
    m = np.ones(closed.size) if trades.mult is None else np.asarray(trades.mult, dtype=float)
    if not trades.absolute and bool((w == 1.0).all()) and bool((m == 1.0).all()) and not (held & is_open).any():
        return daily.bench_mean
    bench = np.zeros(closed.size)
    bench[closed] = trades.net_ret[closed] - daily.trade_excess
    if open_bench is not None:
        bench[is_open] = open_bench
    ent = trades.entry_idx[held].astype(np.int64)
    ext = np.minimum(trades.exit_idx[held].astype(np.int64), daily.stop - 1)
    L = ext - ent + 1
    per_row = bench[held] / L
    w, m = w[held], m[held]
    tid = np.repeat(np.arange(L.size), L)
    pos = daily.day_of(ent[tid] + np.arange(tid.size) - np.repeat(np.cumsum(L) - L, L))
    aw = w * m
    num = np.bincount(pos, weights=(aw * per_row)[tid], minlength=daily.n_days)
    den = np.bincount(pos, weights=(aw if trades.absolute else w)[tid], minlength=daily.n_days)
    den = np.maximum(den, 1.0) if trades.absolute else den
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _account_trades(trades: Trades, stop: int) -> Trades:
    """The stitched OOS trades as the account holds them over rows [.., stop): a trade that a window left open at
    its own data end (its ``exit_idx``, the window's test end + purge, before the stitched series' last row) is
    held through that row, marked at its close as its window valued it, and then leaves the account. Kept open,
    ``portfolio_returns`` would carry it at every later close to the end of the out-of-sample series: a position
    no rule exits and no statistic counts (the verdict counts closed trades only). It is passed to the kernel as
    closed on that row at the fill ``close / (1 - cost)``, whose exit-day return is exactly the close's."""
    ghost = trades.open_at_end & (trades.exit_idx < stop - 1)
    if not ghost.any():
        return trades
    reason = trades.exit_reason.copy()
    reason[ghost] = EXIT_REASONS.index("max_days")  # any closed reason: only open_at_end is read from it
    xp = np.asarray(trades.exit_price, dtype=float).copy()
    xp[ghost] = xp[ghost] / (1.0 - trades.cost_per_trade[ghost])  # an open trade's exit_price: its last row's close
    return Trades(trades.symbol, trades.signal_idx, trades.entry_idx, trades.exit_idx, trades.entry_price, xp,
                  reason, trades.score, cost=trades.cost, weight=trades.weight, mult=trades.mult,
                  absolute=trades.absolute)


def _equity(p: Panel, trades: Trades, daily: DailyExcess, open_bench: np.ndarray | None = None) -> pd.DataFrame:
    """The OOS account day by day over the days of ``daily``: ``oos_return`` = the engine's account of the open
    positions (``portfolio_returns``: equal weights unless the configuration sizes its positions, rebalanced
    daily, 0 on cash days; a trade left open at its window's data end leaves it there, ``_account_trades``);
    ``bench_return`` = their matched random-entry benchmark (each trade's benchmark expectation spread evenly over
    its holding days, weighted as the account weighs the trade: averaged over the open trades without sizing,
    ``DailyExcess.bench_mean``; ``_sized_bench``; a trade left open at its window's data end with its own matched
    expectation ``open_bench``, ``_open_bench``); ``excess_return`` = the difference; each with its equity curve
    (start = 1); ``n_open`` = the positions the account holds that day (``_positions_held``: a trade left open at its
    window's data end included, as the account holds it; before 2026-12-04 the closed trades only,
    ``DailyExcess.n_open``, so a day the account held only such a trade showed 0 beside its return); ``excess_pnl``
    = ``daily.total``, the daily excess P&L of one unit per open closed trade: the series the verdict's HAC t, PSR,
    effective n and bootstrap are computed on (its sum / closed trades = the mean excess per trade), which is not
    ``excess_return`` (before 2026-12-05 it was not exported: on a 4-window demo run the HAC t of ``excess_return``
    was 1.98, the gate's 0.78). A row left
    out of ``daily`` (no window tested it, nothing held) is left out here too: the account holds nothing on it, so
    no return is lost or bridged (the dates jump)."""
    r = portfolio_returns(_account_trades(trades, daily.stop), p, Span(daily.start, daily.stop, daily.stop))
    n_open = _positions_held(trades, daily.start, daily.stop - daily.start)
    if daily.rows is not None:
        r = r[daily.rows - daily.start]
        n_open = n_open[daily.rows - daily.start]
    b = _sized_bench(trades, daily, open_bench)
    x = r - b
    return pd.DataFrame({"date": pd.to_datetime(p.dates[daily.row_index]),
                         "oos_return": r, "oos_equity": np.cumprod(1 + r),
                         "bench_return": b, "bench_equity": np.cumprod(1 + b),
                         "excess_return": x, "excess_equity": np.cumprod(1 + x), "n_open": n_open,
                         "excess_pnl": daily.total})


def _oos_metrics(results: list[WindowResult], p: Panel, trades: Trades, excess: np.ndarray,
                 span: Span) -> dict[str, float]:
    """Run metrics of the stitched OOS trades, their mean excess and the number of windows. Signals per month
    count the sessions the windows tested: with ``[walkforward] step`` > ``test`` the span from the first test
    start to the last test end also holds months no window tested, in which no signal could be counted."""
    total_signals = int(sum(r.oos_metrics["total_signals"] for r in results))
    oos = run_metrics(trades, p, span, total_signals)
    tested = sum(r.window.test_end - r.window.test_start for r in results)
    if tested != span.sessions:
        oos["signals_per_month"] = total_signals / (tested / SESSIONS_PER_MONTH)
        oos["rank_score"] = rank_score(oos["hit_rate"], oos["avg_return"], oos["win_loss"], oos["signals_per_month"])
    oos["avg_excess_return"] = float(excess.mean()) if excess.size else 0.0
    oos["n_windows"] = len(results)
    return oos


def _account_figures(eq: pd.DataFrame) -> tuple[float, float]:
    """The stitched account's annualized Sharpe and maximum drawdown: those of its equity curve (``eq.oos_return``,
    what the report draws) over the days observed, by the definitions of the equity bootstrap's point estimates
    (``stats.equity_point``), whether the bootstrap ran or not (it needs 10 days and a position; it gives only the
    intervals). Not ``run_metrics``' figures, which run over every session from the first test start to the data
    end: the sessions no window tested and the tail after the last exit as cash days. A Sharpe without dispersion
    (one day, or every day alike) is 0, as ``run_metrics`` documents it."""
    pt = equity_point(eq["oos_return"].to_numpy(dtype=float))
    return (pt["sharpe"] if math.isfinite(pt["sharpe"]) else 0.0), pt["max_drawdown"]


def _equity_bootstrap(eq: pd.DataFrame) -> dict[str, Any] | None:
    """Block bootstrap of the OOS account's daily returns (``eq.oos_return``: the equity curve the report draws),
    from 10 days on with a day the account held a position (``eq.n_open``, a trade left open at its window's data
    end included: a return of such a trade alone is a return of the account). None otherwise."""
    if len(eq) < 10 or not eq["n_open"].any():
        return None
    b = equity_bootstrap(eq["oos_return"].to_numpy(dtype=float), reps=2000, seed=0)
    out: dict[str, Any] = {"resamples": b.resamples, "n_days": b.n_days, "block_size": b.block_size, "reps": b.reps,
                           "level": b.level, "drawdown_percentile": b.drawdown_percentile}
    for k in ("total_return", "cagr", "max_drawdown", "sharpe"):
        ci = getattr(b, k)
        out[k] = {"point": ci.point, "lo": ci.lo, "hi": ci.hi}
    q = np.quantile(b.max_drawdowns, [0.5, 0.9, 0.95])
    out["drawdown_quantiles"] = {"50%": float(q[0]), "90%": float(q[1]), "95%": float(q[2])}
    return out


def _statistics(ctx: _RunContext, results: list[WindowResult], trades: Trades, daily: DailyExcess, eq: pd.DataFrame,
                p: Panel, ev_all: Evaluator, mask_all: np.ndarray | None) -> dict[str, Any]:
    """In-sample vs OOS degradation; the windows' DSR (median), PBO (mean) and SPA (combined); the dependence-aware
    inference on the daily OOS excess series (plain: the verdict's; market-adjusted: beside it); the block
    bootstrap of the OOS account; and the cost stress of the stitched OOS winners."""
    is_vals = np.array([r.is_metrics.get("rank_score", np.nan) for r in results], dtype=float)
    oos_vals = np.array([r.oos_metrics.get("rank_score", np.nan) for r in results], dtype=float)
    is_ex = np.array([r.is_metrics.get("avg_excess_return", np.nan) for r in results], dtype=float)
    oos_ex = np.array([r.oos_metrics.get("avg_excess_return", np.nan) for r in results], dtype=float)
    is_mean = float(np.nanmean(is_vals))
    dsr_w = np.array([r.dsr_in_sample for r in results], dtype=float)
    stats: dict[str, Any] = {
        "n_trials_tried": int(sum(r.n_trials_tried for r in results)),
        "n_configs": _distinct_over_windows(results),
        "degradation": float(np.nanmean(oos_vals)) / is_mean if np.isfinite(is_mean) and is_mean != 0.0 else _NAN,
        "dsr": float(np.nanmedian(dsr_w)) if np.isfinite(dsr_w).any() else _NAN,
        "dsr_windows": [None if not np.isfinite(x) else float(x) for x in dsr_w],
        "degradation_excess": float(np.nanmean(oos_ex) / np.nanmean(is_ex)) if np.nanmean(is_ex) else _NAN,
    }
    alpha = verdict_alpha(T_MIN)
    inf = dependent_inference(daily, alpha=alpha, power=POWER, seed=0)
    stats["inference"] = inf.to_dict()
    mkt = daily_excess(trades, daily.trade_excess, p["close"], daily.start, daily.stop, market_open=p["open"],
                       rows=daily.rows, signal_rows=_signal_rows(results, daily)) if daily.n_trades else daily
    stats["inference_mkt"] = dependent_inference(mkt, alpha=alpha, power=POWER, seed=0).to_dict()
    stats["psr"] = inf.psr
    stats["equity_bootstrap"] = _equity_bootstrap(eq)
    for key, attr in (("dsr_skipped", "dsr_skipped"), ("pbo_skipped", "pbo_skipped"), ("spa_skipped", "spa_skipped")):
        skipped = [f"window {r.window.index}: {getattr(r, attr)}" for r in results if getattr(r, attr)]
        if skipped:
            stats[key] = skipped
    pbos = [r.pbo for r in results if np.isfinite(r.pbo)]
    stats["pbo_windows"] = pbos
    stats["pbo"] = float(np.mean(pbos)) if pbos else _NAN
    stats["pbo_method"] = "cpcv" if ctx.spec.cv.mode == "cpcv" else "cscv"
    if ctx.spec.cv.mode == "cpcv":
        paths = [r.cpcv for r in results if r.cpcv]
        stats["cpcv"] = {
            "windows": paths,
            "path_sharpe_median": float(np.median([x for c in paths for x in c["path_sharpe"]])) if paths else _NAN,
            "prob_path_loss": float(np.mean([x < 0 for c in paths for x in c["path_sharpe"]])) if paths else _NAN,
        }
    spa_w = [r.spa_p for r in results]
    stats["spa"] = {"p": combine_pvalues(spa_w), "p_median": float(np.nanmedian(spa_w)) if np.isfinite(spa_w).any()
                    else _NAN, "p_windows": [None if not np.isfinite(x) else x for x in spa_w],
                    "n_configs": stats["n_configs"], "n_trials_tried": stats["n_trials_tried"],
                    "gate": SPA_GATE}

    def at_cost(k: float) -> dict[str, float]:
        def run(r: WindowResult, held: np.ndarray | None, carried: Trades | None) -> Any:  # the book at k x costs
            cfg = r.cfg(ctx.spec)
            cfg = replace(cfg, costs=cfg.costs.scaled(k))
            sp = Span(r.window.test_start, r.window.test_end, min(r.window.test_end + ctx.purge, ctx.limit))
            disp = None if held is None else _blocked_display(ev_all.display(cfg), sp.sig_start, held)
            res = ev_all.run(cfg, sp, display=disp, entry_ok=mask_all, carried=carried)
            return SimpleNamespace(trades=res.trades, excess=ev_all.bench.excess(res.trades, sp))

        ex = [b.excess for b in _book(results, run, len(p.symbols))]
        e = np.concatenate(ex) if ex else np.empty(0)
        return {"avg_excess_return": float(e.mean()) if e.size else 0.0, "trades": int(e.size)}

    cs = cost_stress(at_cost, (1, 2, 3))
    stats["cost_stress"] = cs.to_dict(orient="records")
    stats["cost_fragile"] = bool(flag_fragile(cs))
    stats["cost_stress_wording"] = cost_stress_wording(cs)
    changed = [r.book for r in results if r.book]
    stats["book"] = {"windows_blocked": len(changed),
                     **{k: int(sum(b[k] for b in changed)) for k in ("symbols_blocked", "refused", "added", "capped")}}
    return stats


def _distinct_over_windows(results: list[WindowResult]) -> int:
    """The distinct configurations the run tried: a configuration several windows' studies tried counts once (each
    window's study draws from the same seeded sampler, so with few trials per window they try the same ones).
    Before 2026-12-05 the windows' counts were summed: 4 windows x 4 trials on the planted store said "16 distinct
    configurations" of 4. A result without identities (built by hand) counts its windows' own numbers."""
    if any(r.n_configs and not r.config_ids for r in results):
        return int(sum(r.n_configs for r in results))
    return len({k for r in results for k in r.config_ids})


def _decide(stats: dict[str, Any]) -> Verdict:
    """The verdict: the daily series' HAC t and PSR, the OOS trade count, the windows' PBO (and SPA when
    ``SPA_GATE`` is set), with the power of the data; the in-sample winners' DSR and the SPA p are context."""
    inf = stats["inference"]
    mean = _f(inf["mean_per_trade"])
    power = Power(_f(inf["mde_per_trade"]), _f(inf["mde_per_year"]), float(inf["alpha"]), float(inf["power"]),
                  int(inf["n_trades"]), int(inf["n_days"]), _f(inf["n_eff"]))
    dsr_s = "n/a" if not np.isfinite(stats["dsr"]) else f"{stats['dsr']:.2f}"
    spa_p = _f(stats["spa"]["p"])
    spa_s = "n/a" if not np.isfinite(spa_p) else f"{spa_p:.2f}"
    note = (f"in-sample winners' median DSR {dsr_s}" + ("" if SPA_GATE is not None else f", SPA p {spa_s}")
            + f" over {stats['n_trials_tried']} trials tried ({stats['n_configs']} distinct configurations)")
    return verdict(mean, _f(inf["t"]), _f(stats["psr"]), stats["pbo"],
                   int(inf["n_trades"]), sharpe="psr", t_kind="hac", power=power, note=note, spa_p=spa_p,
                   spa_max=SPA_GATE)


def _tables(results: list[WindowResult], p: Panel, trades: Trades) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The windows summary, the OOS trades (with their window) and parameter stability."""
    rows = []
    for r in results:
        row = {"window": r.window.index, "train_start": r.train_dates[0], "train_end": r.train_dates[1],
               "test_start": r.test_dates[0], "test_end": r.test_dates[1], "in_reserve": r.in_reserve,
               "study": r.study_name, "n_trials_tried": r.n_trials_tried}
        row.update({f"param_{k}": v for k, v in r.params.items()})
        for k in _SUMMARY_METRICS:
            row[f"is_{k}"] = r.is_metrics.get(k)
            row[f"oos_{k}"] = r.oos_metrics.get(k)
        rows.append(row)
    summary = pd.DataFrame(rows)
    tdf = trades.to_frame(p)
    if len(tdf):
        tdf["window"] = np.searchsorted([r.window.test_start for r in results], tdf["signal_idx"].to_numpy(), side="right") - 1
    stab = []
    for key in _STABILITY_PARAMS:
        vals = [str(r.params.get(key)) for r in results if key in r.params]
        if vals:
            for val, n in pd.Series(vals).value_counts().items():
                stab.append({"param": key, "value": val, "windows": int(n), "share": n / len(results)})
    return summary, tdf, pd.DataFrame(stab)


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


def _segments(spec: StudySpec, p: Panel, results: list[WindowResult], span: Span,
              ev: Evaluator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Out-of-sample events with context, cross-sectional (per symbol / sector) and per-regime tables, and the
    rule validation (Mann-Whitney U + BH on excess returns) of each context condition (``stats.validate_rules``,
    what the report shows)."""
    empty = pd.DataFrame()
    if not results or not sum(len(r.trades) for r in results):
        return empty, empty, empty, empty, empty
    ctx = compute_context(p)
    frames = []
    for r in results:
        cfg = r.cfg(spec)
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
    rules = validate_rules(events)
    return events, by_symbol, by_sector, by_regime, rules


# ------------------------------------------------------------------------------------------------ files


def _write_summary(result: WalkForwardResult, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "walk_forward_summary.csv", lambda p: result.summary.to_csv(p, index=False))


def walkforward_dir(out_root: str | Path, study_name: str, final: bool = False) -> Path:
    """The folder of a walk-forward run under the output root: ``<out>/walkforward/<study>`` (``<study>-final``
    when it opened the final reserve), so a final run never overwrites the run that stayed out of the reserve."""
    return under(out_root, "walkforward", f"{study_name}-final" if final else study_name)


def save_walkforward(result: WalkForwardResult, out_dir: str | Path) -> Path:
    """Persist a walk-forward run (JSON summary + trades/equity/summary/stability tables) for `accumopt report`.

    All or nothing (``paths.atomic_folder``): the files are written into a temporary folder beside ``out_dir``, which
    is put in its place only once every file is whole, so a full disk, a Ctrl-C or a kill while saving leaves the
    previous run in ``out_dir`` as it was (an OSError naming the file meant). A kill between the swap's two renames
    leaves ``out_dir`` missing and the new run beside it, which the next save and :func:`load_walkforward` rename in.
    Files of the folder that a run does not write (``regime_comparison.csv`` of bench/regime_compare.py, a user's
    notes) are kept; a run without events has no ``oos_events.parquet`` (the previous run's is not kept)."""
    d = Path(out_dir)
    text = json.dumps(result.to_dict(), indent=2, default=str)
    with atomic_folder(d, drop=("oos_events.parquet",)) as t:
        _write_summary(result, t)
        result.trades.to_parquet(t / "oos_trades.parquet", index=False)
        result.equity.to_parquet(t / "oos_equity.parquet", index=False)
        result.stability.to_csv(t / "parameter_stability.csv", index=False)
        if len(result.events):
            result.events.to_parquet(t / "oos_events.parquet", index=False)
        for name in ("by_symbol", "by_sector", "by_regime", "rules"):
            getattr(result, name).to_csv(t / f"{name}.csv", index=False)
        (t / "result.json").write_text(text)
    return d


def load_walkforward(out_dir: str | Path) -> dict[str, Any]:
    """The persisted walk-forward run as plain objects: ``result`` (dict), ``verdict`` (the ``Verdict``; None for a
    result.json written before verdicts were stored as gates) and DataFrames. A missing or unreadable file of the
    run (damaged, or cut short by a crash) is a DataError naming it."""
    d = recover_folder(out_dir)  # a save killed between its two renames: its new run renamed in
    if not (d / "result.json").exists():
        raise DataError(f"no walk-forward run in {d} (expected result.json); run `accumopt walkforward SPEC` first")

    def read(name: str, reader):
        try:
            return reader(d / name)
        except (OSError, ValueError, RecursionError) as exc:  # JSON, Parquet (ArrowInvalid), CSV errors are ValueErrors
            why = " ".join(str(exc).split())
            why = why if len(why) <= 160 else why[:157] + "..."
            raise DataError(f"walk-forward run in {d}: {name} is unreadable ({type(exc).__name__}: {why}); run "
                            f"`accumopt walkforward SPEC` again to rewrite it") from None

    result = read("result.json", lambda p: json.loads(p.read_text()))
    if not isinstance(result, dict):
        raise DataError(f"walk-forward run in {d}: result.json is unreadable (not a JSON object); run "
                        f"`accumopt walkforward SPEC` again to rewrite it")
    return {
        "result": result,
        "verdict": Verdict.from_dict(result) if isinstance(result.get("verdict_gates"), list) else None,
        "summary": read("walk_forward_summary.csv", pd.read_csv),
        "trades": read("oos_trades.parquet", pd.read_parquet),
        "equity": read("oos_equity.parquet", pd.read_parquet),
        "stability": read("parameter_stability.csv", lambda p: pd.read_csv(p) if p.stat().st_size > 1 else pd.DataFrame()),
        "events": read("oos_events.parquet", lambda p: pd.read_parquet(p) if p.exists() else pd.DataFrame()),
        **{n: read(f"{n}.csv", _read_csv) for n in ("by_symbol", "by_sector", "by_regime", "rules", "regime_comparison")},
    }


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.exists() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
