"""Optuna studies over the engine: create / resume (spec-hash guard), run with per-fold pruning, workers.

One ``StudyData`` per process holds the panel (only sessions the study may see), its feature cache and the fold
spans; the ``TrialObjective`` only suggests, combines, simulates and measures. Each trial writes two JSON user
attributes (``metrics``: overall metrics, duration, pruning info; ``folds``: per-fold metrics), so
optuna-dashboard shows everything without this tool, at a fraction of the storage round trips of one attribute
per metric.
"""

from __future__ import annotations

import json
import math
import warnings
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from . import __version__
from .config import DEFAULT_STORAGE
from .data.store import connect
from .engine.evaluate import Evaluator
from .engine.panel import Panel, load_panel
from .engine.regime_filter import regime_entry_mask
from .engine.simulate import Span
from .errors import AccumoptError, DataError, SpecError
from .registry import build_pruner, build_sampler
from .space import grid_search_space, params_to_config, suggest
from .spec import StudySpec, WEIGHT_PRESETS
from .splits import FoldSpan, PurgedTimeSeriesSplit, reserve_cutoff
from .universe import resolve_universe

__all__ = [
    "StudyData", "TrialObjective", "load_study_data", "prepare_data", "open_study", "run_study", "make_storage",
    "StudyRunResult", "git_commit", "trial_counts",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class StudyData:
    """Everything a trial reads, built once per process. ``lo`` .. ``hi``: the span the study optimizes over."""

    spec: StudySpec
    panel: Panel
    evaluator: Evaluator
    folds: list[FoldSpan]
    entry_ok: np.ndarray | None
    lo: int
    hi: int
    fingerprint: str

    @property
    def train_dates(self) -> tuple[str, str]:
        d = self.panel.dates
        return str(d[self.lo]), str(d[self.hi - 1])


def load_study_data(spec: StudySpec, db: str | Path) -> tuple[Panel, int]:
    """The spec's universe and date range from the store, and the index where the final reserve starts."""
    db = spec.data.database if (db is None and spec.data.database) else db
    con = connect(db, read_only=True)
    try:
        try:
            avail = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM daily_metrics").fetchall()]
        except Exception as e:  # duckdb CatalogException
            raise DataError(f"{db}: no daily_metrics table ({e.__class__.__name__}); run `accumopt data synth --db {db}` or `accumopt metrics build`") from None
        uni = resolve_universe(spec.data.universe, avail)
        if not uni:
            raise DataError(f"universe {spec.data.universe!r} has no symbols in {db} (it has {len(avail)} symbols)")
        panel = load_panel(con, uni, spec.data.start, spec.data.end)
    finally:
        con.close()
    return panel, reserve_cutoff(len(panel.dates), spec.data.reserve_fraction)


def prepare_data(spec: StudySpec, panel: Panel, lo: int, hi: int, n_splits: int | None = None,
                 embargo: int | None = None) -> StudyData:
    """Truncate the panel at ``hi`` (nothing later is ever visible) and lay the purged folds over [lo, hi).

    ``n_splits`` / ``embargo`` override the spec's [cv] (walk-forward windows use [walkforward] n_splits/embargo).
    """
    if hi - lo < 10:
        raise DataError(f"the study span has {hi - lo} sessions; at least 10 are needed")
    visible = panel.slice(0, hi)
    warm = max(0, spec.max_z_window() - lo)
    cv = PurgedTimeSeriesSplit(
        n_splits=n_splits or spec.cv.n_splits, test_size=None if n_splits else spec.cv.test_size, purge=spec.purge(),
        embargo=spec.embargo() if embargo is None else embargo,
        mode=spec.cv.mode, max_train_size=spec.cv.max_train_size,
        min_train_size=max(spec.cv.min_train_size, warm),
    )
    folds = [FoldSpan(f.fold, f.test_start + lo, f.test_end + lo, f.data_end + lo) for f in cv.fold_spans(hi - lo)]
    ev = Evaluator(visible, min_periods=spec.data.min_periods)
    mask = regime_entry_mask(visible, spec.data.regime)
    return StudyData(spec, visible, ev, folds, mask, lo, hi, visible.fingerprint())


def _clean(m: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 10) if isinstance(v, float) and math.isfinite(v) else v) for k, v in m.items()}


class TrialObjective:
    """Callable for ``study.optimize``: evaluates one configuration on every fold, reporting after each."""

    def __init__(self, data: StudyData) -> None:
        from objectives import make_objective

        self.data = data
        self.spec = data.spec
        self.objective = make_objective(self.spec.objective.name)
        self.multi = len(self.spec.objective.directions) > 1

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Pure re-evaluation of stored params (``study replay``): fold metrics, value(s) and overall metrics."""
        cfg = params_to_config(params, self.spec)
        ev = self.data.evaluator
        disp = ev.display(cfg)
        folds = [ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics for f in self.data.folds]
        values = self.objective.values(folds, self.spec.objective.aggregate, self.spec.objective.k)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        return {"folds": folds, "values": values, "overall": overall}

    def __call__(self, trial: optuna.trial.Trial):
        t0 = time.perf_counter()
        values = suggest(trial, self.spec)
        cfg = params_to_config(values, self.spec)
        ev = self.data.evaluator
        disp = ev.display(cfg)
        fold_metrics: list[dict[str, float]] = []
        min_trades = self.spec.objective.min_trades
        for f in self.data.folds:
            m = ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics
            fold_metrics.append(_clean(m))
            reason = None
            if m["closed_trades"] < min_trades:
                reason = f"fold {f.fold}: {int(m['closed_trades'])} closed trades < min_trades {min_trades}"
            elif not self.multi:
                trial.report(self.objective.fold_value(m), f.fold)
                if trial.should_prune():
                    reason = f"fold {f.fold}: pruner {self.spec.pruner.name} stopped the trial (fold value {self.objective.fold_value(m):.6g})"
            if reason is not None:
                trial.set_user_attr("folds", fold_metrics)
                trial.set_user_attr("metrics", {"pruned_at_fold": f.fold, "pruned_reason": reason,
                                                "duration_s": round(time.perf_counter() - t0, 6)})
                raise optuna.TrialPruned(reason)
        result = self.objective.values(fold_metrics, self.spec.objective.aggregate, self.spec.objective.k)
        f0 = self.data.folds[0]
        overall = ev.run(cfg, Span(f0.test_start, self.data.hi, self.data.hi), disp, self.data.entry_ok).metrics
        ws, wl, wp = cfg.score.weights
        overall = _clean(overall) | {"w_short_norm": round(ws, 6), "w_lit_norm": round(wl, 6), "w_price_norm": round(wp, 6),
                                     "duration_s": round(time.perf_counter() - t0, 6), "pruned_at_fold": None}
        trial.set_user_attr("folds", fold_metrics)
        trial.set_user_attr("metrics", overall)
        return result if self.multi else result[0]


# ---------------------------------------------------------------------------------------------------------
# storage and study creation


def make_storage(url: str | None, heartbeat: bool = True):
    """An Optuna storage for ``url`` (default sqlite:///output/studies.db).

    SQLite: WAL journal (readers never block the writer, a commit is one fsync of the WAL) and a 60 s busy
    timeout so several local worker processes never fail with "database is locked". Every RDB storage gets a
    heartbeat so trials left RUNNING by a killed process are failed and retried, never counted as complete.
    ``journal:PATH`` selects Optuna's journal-file storage.
    """
    url = url or os.environ.get("ACCUMOPT_STORAGE") or DEFAULT_STORAGE
    hb: dict[str, Any] = {}
    if heartbeat:
        cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        hb = dict(heartbeat_interval=5, grace_period=15)
        if cb is not None:
            hb["heartbeat_stale_trial_callback"] = cb(max_retry=1)
        else:  # optuna < 4.9
            hb["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            import sqlite3

            with sqlite3.connect(path, timeout=60) as c:
                c.execute("PRAGMA journal_mode=WAL")
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}}, skip_compatibility_check=False, **hb
        )
    return optuna.storages.RDBStorage(url, **hb)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def open_study(spec: StudySpec, storage, data: StudyData, name: str | None = None, new_name: bool = False,
               extra_attrs: dict[str, Any] | None = None) -> optuna.Study:
    """Create or resume the spec's study. A study of the same name made from a different spec is refused."""
    name = name or spec.run.study_name or spec.name
    sampler = build_sampler(spec.sampler.name, spec.sampler.seed, spec.sampler.options,
                            grid_search_space(spec) if spec.sampler.name == "grid" else None)
    pruner = build_pruner(spec.pruner.name, spec.pruner.options)
    directions = list(spec.objective.directions)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        st = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        old = st.user_attrs.get("spec_hash")
        if old is not None and old != spec.spec_hash and not new_name:
            raise SpecError("study", f"study {name!r} was created from a different spec (hash {old}, this spec {spec.spec_hash}); "
                                     f"refusing to resume it. Use --name NEW or --new-name to start a new study")
        if old is not None and old != spec.spec_hash and new_name:
            name = _next_free_name(name, existing)
        else:
            fp = st.user_attrs.get("data_fingerprint")
            if fp is not None and fp != data.fingerprint:
                raise SpecError("data", f"study {name!r} was run on different data (fingerprint {fp}, now {data.fingerprint}); "
                                        "refusing to mix trials. Use --new-name")
            return st
    st = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                             directions=directions)
    obj = TrialObjective(data).objective
    st.set_metric_names(obj.metric_names)
    d0, d1 = data.train_dates
    attrs = {
        "spec_hash": spec.spec_hash, "spec_text": spec.source, "spec_path": spec.path, "spec_name": spec.name,
        "data_fingerprint": data.fingerprint, "accumopt_version": __version__, "git_commit": git_commit(),
        "objective": spec.objective.name, "aggregate": spec.objective.aggregate,
        "train_start": d0, "train_end": d1, "symbols": len(data.panel.symbols),
        "folds": [[f.fold, str(data.panel.dates[f.test_start]), str(data.panel.dates[f.test_end - 1])] for f in data.folds],
        "purge": spec.purge(), "embargo": spec.embargo(), "regime": spec.data.regime, "n_trials_target": spec.run.n_trials,
    }
    attrs.update(extra_attrs or {})
    for k, v in attrs.items():
        st.set_user_attr(k, v)
    return st


def _next_free_name(name: str, existing) -> str:
    i = 2
    while f"{name}-{i}" in existing:
        i += 1
    return f"{name}-{i}"


def trial_counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "complete": sum(s == TrialState.COMPLETE for s in states),
        "pruned": sum(s == TrialState.PRUNED for s in states),
        "failed": sum(s == TrialState.FAIL for s in states),
        "running": sum(s == TrialState.RUNNING for s in states),
        "waiting": sum(s == TrialState.WAITING for s in states),
    }


def seed_from_study(study: optuna.Study, spec: StudySpec, storage) -> list[dict[str, Any]]:
    """Enqueue the top-k trials of ``spec.seed_from.study`` (phase A -> phase B). Returns the enqueued params."""
    if spec.seed_from is None or study.user_attrs.get("seeded"):
        return []
    src = spec.seed_from
    try:
        a = optuna.load_study(study_name=src.study, storage=storage)
    except KeyError:
        raise SpecError("seed_from.study", f"no study named {src.study!r} in the storage; run it first") from None
    done = [t for t in a.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        raise SpecError("seed_from.study", f"study {src.study!r} has no completed trials to seed from")
    sign = -1 if a.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    top = sorted(done, key=lambda t: sign * t.value)[: src.top]
    names = {p.name: p for p in spec.space}
    out = []
    for t in top:
        p = dict(t.params)
        if "weights" in p:
            ws, wl, wp = WEIGHT_PRESETS[p.pop("weights")]
            p.update(w_short=ws, w_lit=wl, w_price=wp)
        seed = {}
        for k, v in p.items():
            ps = names.get(k)
            if ps is None or ps.kind == "fixed":
                continue
            if ps.kind == "categorical" and v not in ps.choices:
                continue
            if ps.kind in ("int", "float"):
                v = min(max(v, ps.low), ps.high)
                if ps.step:
                    v = ps.low + round((v - ps.low) / ps.step) * ps.step
                    v = int(round(v)) if ps.kind == "int" else round(v, 10)
            seed[k] = v
        study.enqueue_trial(seed, skip_if_exists=True)
        out.append(seed)
    study.set_user_attr("seeded", {"from": src.study, "n": len(out)})
    return out


@dataclass
class StudyRunResult:
    study_name: str
    storage: str
    counts: dict[str, int]
    best_value: Any
    best_params: dict[str, Any] | None
    seconds: float
    interrupted: bool


def _best(study: optuna.Study):
    try:
        if len(study.directions) > 1:
            return [t.values for t in study.best_trials], None
        return study.best_value, study.best_params
    except ValueError:
        return None, None


class _Progress:
    """rich progress bar callback: done/total, pruned, failed, best so far, ETA."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        self.task = self.p.add_task("trials", total=total, completed=already, info="")
        self.p.start()

    def __call__(self, study: optuna.Study, trial) -> None:
        if not self.enabled:
            return
        c = trial_counts(study)
        best, _ = _best(study)
        b = f"{best:.6g}" if isinstance(best, float) else "-"
        self.p.update(self.task, completed=min(self.total, c["complete"] + c["pruned"]),
                      info=f"pruned {c['pruned']} failed {c['failed']} best {b}")

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def _worker(spec: StudySpec, storage_url: str | None, name: str, quota: int, data: StudyData, timeout: float | None) -> None:
    storage = make_storage(storage_url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=build_sampler(spec.sampler.name, (spec.sampler.seed or 0) + os.getpid() % 1000 if spec.sampler.seed is not None else None,
                                                    spec.sampler.options, grid_search_space(spec) if spec.sampler.name == "grid" else None),
                              pruner=build_pruner(spec.pruner.name, spec.pruner.options))
    study.optimize(TrialObjective(data), n_trials=quota, timeout=timeout, catch=(),
                   callbacks=[optuna.study.MaxTrialsCallback(spec.run.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))])


def run_study(
    spec: StudySpec,
    db: str | Path,
    storage_url: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    name: str | None = None,
    new_name: bool = False,
    progress: bool = False,
    data: StudyData | None = None,
    extra_attrs: dict[str, Any] | None = None,
    callbacks: list[Callable] | None = None,
) -> StudyRunResult:
    """Create or resume the study and run it until it holds ``n_trials`` finished (complete + pruned) trials."""
    t0 = time.perf_counter()
    if data is None:
        panel, reserve = load_study_data(spec, db)
        data = prepare_data(spec, panel, 0, reserve)
    storage_url = storage_url or spec.run.storage
    storage = make_storage(storage_url)
    study = open_study(spec, storage, data, name=name, new_name=new_name, extra_attrs=extra_attrs)
    optuna.storages.fail_stale_trials(study)  # trials left RUNNING by a killed process: FAIL (+ retried)
    seed_from_study(study, spec, storage)
    target = n_trials or spec.run.n_trials
    timeout = timeout or spec.run.timeout
    c = trial_counts(study)
    remaining = max(0, target - c["complete"] - c["pruned"])
    interrupted = False
    prog = _Progress(target, c["complete"] + c["pruned"], progress)
    stop_flag = {"stop": False}

    def _sigint(signum, frame):  # Ctrl-C: finish the running trial, then stop; the study stays resumable
        stop_flag["stop"] = True

    def _stopper(st: optuna.Study, tr) -> None:
        if stop_flag["stop"]:
            st.stop()

    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, _sigint)
    except ValueError:  # not the main thread
        old = None
    try:
        if remaining > 0 and jobs <= 1:
            study.optimize(
                TrialObjective(data), n_trials=remaining, timeout=timeout, catch=(),
                callbacks=[prog, _stopper, optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                           *(callbacks or [])],
            )
        elif remaining > 0:
            import multiprocessing as mp

            data.evaluator.features.warm()  # shared copy-on-write by the forked workers
            ctx = mp.get_context("fork")
            quotas = [remaining // jobs + (1 if i < remaining % jobs else 0) for i in range(jobs)]
            procs = [ctx.Process(target=_worker, args=(spec, storage_url, study.study_name, q, data, timeout)) for q in quotas if q > 0]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                for p in procs:
                    p.join(timeout=0.5)
                prog(study, None)
                if stop_flag["stop"]:
                    for p in procs:
                        if p.is_alive():
                            os.kill(p.pid, signal.SIGINT)
            bad = [p.exitcode for p in procs if p.exitcode not in (0, None, -signal.SIGINT)]
            if bad:
                raise AccumoptError(f"{len(bad)} worker process(es) failed with exit codes {bad}")
        interrupted = stop_flag["stop"]
    finally:
        prog.close()
        if old is not None:
            signal.signal(signal.SIGINT, old)
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    best, params = _best(study)
    return StudyRunResult(study.study_name, storage_url or DEFAULT_STORAGE, trial_counts(study), best, params,
                          time.perf_counter() - t0, interrupted)


def study_json(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=True)
