"""Optuna studies over the engine: create / resume (spec-hash guard), run with per-fold pruning, workers.

One ``StudyData`` per process holds the panel (only sessions the study may see), its feature cache and the fold
spans; the ``TrialObjective`` only suggests, combines, simulates and measures. Each trial writes two JSON user
attributes (``metrics``: overall metrics, duration, pruning info; ``folds``: per-fold metrics), so
optuna-dashboard shows everything without this tool, at a fraction of the storage round trips of one attribute
per metric.
"""

from __future__ import annotations

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
from .errors import AccumoptError, DataError, ParameterError, SpecError
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
    cv_n_splits: int = 0
    cv_embargo: int = 0

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
    return StudyData(spec, visible, ev, folds, mask, lo, hi, visible.fingerprint(), cv.n_splits, cv.embargo)


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
        folds = [_clean(ev.run(cfg, Span(f.test_start, f.test_end, f.data_end), disp, self.data.entry_ok).metrics)
                 for f in self.data.folds]
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


def make_storage(url: str | None, heartbeat: bool = True, grace_period: int | None = None):
    """An Optuna storage for ``url`` (default sqlite:///output/studies.db).

    SQLite: WAL journal (readers never block the writer, a commit is one fsync of the WAL) and a 60 s busy
    timeout so several local worker processes never fail with "database is locked". Every RDB storage gets a
    heartbeat so trials left RUNNING by a killed process are failed and retried, never counted as complete.
    ``grace_period``: seconds without a heartbeat after which a RUNNING trial counts as stale (default: env
    ACCUMOPT_HEARTBEAT_GRACE, else 15; the heartbeat interval is min(5, grace // 3), at least 1).
    ``journal:PATH`` selects Optuna's journal-file storage (no heartbeat: a killed trial stays RUNNING, it is
    never counted as finished). ``sqlite:///:memory:`` (or ``sqlite://``) is an in-process InMemoryStorage:
    visible to this process only, so no heartbeat and no worker processes.
    ``postgresql://`` URLs get an explicit installed driver (``_rdb_url``). RDB and journal storages hold an
    exact per-study trial budget that ``run_study`` sets (``_BudgetRDBStorage``, ``_BudgetJournalStorage``: the
    journal one locks ``PATH.budget.lock``), so any number of workers on any machines end with exactly N trials.
    """
    url = url or os.environ.get("ACCUMOPT_STORAGE") or DEFAULT_STORAGE
    if url in ("sqlite:///:memory:", "sqlite://"):
        return optuna.storages.InMemoryStorage()
    hb: dict[str, Any] = {}
    if heartbeat:
        cb = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        grace = _grace_period(grace_period)
        hb = dict(heartbeat_interval=max(1, min(5, grace // 3)), grace_period=grace)
        if cb is not None:
            hb["heartbeat_stale_trial_callback"] = cb(max_retry=1)
        else:  # optuna < 4.9
            hb["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _BudgetJournalStorage(JournalFileBackend(path), f"{path}.budget.lock")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            import sqlite3

            with sqlite3.connect(path, timeout=60) as c:
                c.execute("PRAGMA journal_mode=WAL")
        st = _BudgetRDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}}, skip_compatibility_check=False, **hb
        )
        _sqlite_pragmas(st.engine)
        return st
    return _BudgetRDBStorage(_rdb_url(url), **hb)


def _sqlite_pragmas(engine) -> None:
    """WAL + synchronous=NORMAL on every SQLite connection (an SQLAlchemy 'connect' listener).

    In WAL mode, NORMAL syncs the WAL at checkpoints instead of at every commit: a committed trial survives a crash
    or SIGKILL of the process (the WAL is in the OS page cache and is replayed on open); only a power loss can drop
    the last commits. The file stays an ordinary SQLite database for optuna-dashboard and ``optuna.load_study``.
    """
    from sqlalchemy import event

    def _pragmas(dbapi_con, record) -> None:
        cur = dbapi_con.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", _pragmas)
    engine.dispose()  # connections opened while creating the schema are reopened with the pragmas


def _grace_period(value: int | None) -> int:
    raw: Any = value if value is not None else os.environ.get("ACCUMOPT_HEARTBEAT_GRACE") or 15
    try:
        grace = int(raw)
    except (TypeError, ValueError):
        grace = 0
    if grace < 2:
        raise ParameterError(f"heartbeat grace_period (env ACCUMOPT_HEARTBEAT_GRACE) must be an integer >= 2 seconds, got {raw!r}")
    return grace


def _rdb_url(url: str) -> str:
    """A bare ``postgresql://`` / ``postgres://`` URL with an explicit, installed driver (psycopg2 first).

    SQLAlchemy >= 2.1 maps a bare ``postgresql://`` to psycopg 3 (and rejects ``postgres://``), while the
    ``postgres`` extra installs psycopg2-binary: without this, every PostgreSQL URL failed to import its driver.
    A URL naming its driver (``postgresql+psycopg://``) is left alone.
    """
    import importlib.util

    head, sep, rest = url.partition("://")
    if sep and head in ("postgresql", "postgres"):
        for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
            if importlib.util.find_spec(module) is not None:
                return f"postgresql+{driver}://{rest}"
        raise AccumoptError(f"storage {head}://...: no PostgreSQL driver is installed; "
                            "install it with `pip install 'accumopt[postgres]'` (psycopg2-binary)")
    return url


# ---------------------------------------------------------------------------------------------------------
# an exact trial budget shared by independent workers

# States that hold one of the study's N trial slots: finished, in flight, or queued (enqueued seeds and
# heartbeat retries). FAIL frees the slot (its retry, if any, takes it back as WAITING).
_SLOT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class _StudyFull(Exception):
    """A new trial was refused: the study's trial budget is used up (control flow, caught by run_study)."""


class _BudgetRDBStorage(optuna.storages.RDBStorage):
    """RDBStorage that creates a NEW trial only while fewer than the study's budget of trials hold a slot.

    The count runs inside Optuna's own trial-creation transaction, after it locked the study row (PostgreSQL,
    MySQL: ``SELECT ... FOR UPDATE``; SQLite: the single writer lock taken by the INSERT), so two workers on two
    machines can never both take the last slot. Trials made from a template (enqueue, heartbeat retry) are
    never refused. ``MaxTrialsCallback`` alone cannot do this: it runs after a trial, so workers whose trials
    finish together each start one more.

    With a heartbeat, a new trial gets its first heartbeat in the same transaction, and a popped WAITING trial
    right after the pop: Optuna never marks a RUNNING trial without any heartbeat stale, so a worker killed
    between ``ask`` and its heartbeat thread's first beat used to leave a trial RUNNING forever.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._budgets: dict[int, int] = {}
        self._pending: list[tuple] = []
        super().__init__(*args, **kwargs)

    # -- fewer commits: a trial's suggested params are written with its next write (a fold report, an attribute
    # or its final state) in ONE transaction instead of one commit per suggest_* call. This process's trial cache
    # holds them at once; other processes see them from the trial's first report on.
    def _set_trial_param(self, trial_id, param_name, param_value_internal, distribution, previous_distribution):
        self._pending.append((trial_id, param_name, param_value_internal, distribution, previous_distribution))

    def _flush_params(self, session) -> None:
        pending, self._pending = self._pending, []
        for p in pending:
            self._set_trial_param_without_commit(session, *p)

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value) -> None:
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_intermediate_value_without_commit(session, trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id, key, value) -> None:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)

    def _flush_pending(self) -> None:
        if self._pending:
            from optuna.storages._rdb.storage import _create_scoped_session

            with _create_scoped_session(self.scoped_session, True) as session:
                self._flush_params(session)

    def set_trial_budget(self, study_id: int, budget: int | None) -> None:
        self._budgets[study_id] = budget

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        from optuna.storages._rdb import models

        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if template_trial is None and self.heartbeat_interval is not None:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))  # DB server time, like every beat
        budget = self._budgets.get(study_id)
        if template_trial is None and budget is not None:
            taken = (session.query(models.TrialModel)
                     .filter(models.TrialModel.study_id == study_id, models.TrialModel.state.in_(_SLOT_STATES))
                     .count())  # includes the trial being created
            if taken > budget:
                raise _StudyFull(f"study id {study_id}: {taken - 1} trials already hold the budget of {budget}")
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        self._flush_pending()
        ok = super().set_trial_state_values(trial_id, state, values)
        if ok and state == TrialState.RUNNING and self.heartbeat_interval is not None:
            self.record_heartbeat(trial_id)  # a popped WAITING trial (retry, enqueued seed)
        return ok


class _BudgetJournalStorage(optuna.storages.JournalStorage):
    """JournalStorage with the same budget; count + create run under an exclusive ``flock`` on ``lock_path``
    (the journal's own lock covers one append only). Killed holders release it with their file descriptor."""

    def __init__(self, backend: Any, lock_path: str) -> None:
        self._budgets: dict[int, int] = {}
        self._budget_lock = lock_path
        super().__init__(backend)

    def set_trial_budget(self, study_id: int, budget: int | None) -> None:
        self._budgets[study_id] = budget

    def create_new_trial(self, study_id: int, template_trial=None) -> int:
        budget = self._budgets.get(study_id)
        if template_trial is not None or budget is None:
            return super().create_new_trial(study_id, template_trial)
        import fcntl

        with open(self._budget_lock, "a") as fh:
            t_end = time.monotonic() + 120
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > t_end:
                        raise AccumoptError(f"{self._budget_lock}: trial-budget lock held for over 120 s") from None
                    time.sleep(0.01)
            try:
                taken = len(self.get_all_trials(study_id, deepcopy=False, states=_SLOT_STATES))
                if taken >= budget:
                    raise _StudyFull(f"study id {study_id}: {taken} trials already hold the budget of {budget}")
                return super().create_new_trial(study_id)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _optimize_mirrored(study: optuna.Study, storage: Any, objective: Callable, target: int, timeout: float | None,
                       callbacks: list[Callable]) -> None:
    """Single-worker fast path: run trials on an in-process copy of the stored study and write each finished
    trial back to the storage in ONE transaction (params, fold reports, attributes, values, state).

    The sampler and pruner read the in-memory copy, so a trial costs no storage reads and one write instead of a
    round trip per suggest, report and attribute. Every finished trial is committed before the next one starts,
    so a SIGKILL loses at most the running trial, which never reaches the storage (it is never counted).
    Stored WAITING trials (enqueued seeds) run first and are completed in place. Used only when this process is
    the study's only writer (``--jobs 1``, not ``study worker``); several workers go through the storage itself.
    """
    sid = storage.get_study_id_from_name(study.study_name)
    local = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=study.sampler,
                                pruner=study.pruner, directions=study.directions, study_name=study.study_name)
    waiting: dict[int, int] = {}  # local trial number -> stored trial id of an enqueued (WAITING) trial
    for t in study.get_trials(deepcopy=True):
        if t.state == TrialState.RUNNING:
            continue  # another writer's (or a stale) trial: not ours to run or count
        if t.state == TrialState.WAITING:
            waiting[len(local.get_trials(deepcopy=False))] = t._trial_id
        local.add_trial(t)

    def write_back(st: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        stored_id = waiting.pop(frozen.number, None)
        if stored_id is None:
            storage.create_new_trial(sid, template_trial=frozen)
            return
        storage.set_trial_state_values(stored_id, TrialState.RUNNING)  # the enqueued trial, completed in place
        for k, d in frozen.distributions.items():
            if k not in storage.get_trial(stored_id).params:
                storage.set_trial_param(stored_id, k, d.to_internal_repr(frozen.params[k]), d)
        for step, v in frozen.intermediate_values.items():
            storage.set_trial_intermediate_value(stored_id, step, v)
        for k, v in frozen.user_attrs.items():
            storage.set_trial_user_attr(stored_id, k, v)
        storage.set_trial_state_values(stored_id, frozen.state, frozen.values)

    c = trial_counts(local)
    remaining = target - c["complete"] - c["pruned"]
    if remaining <= 0:
        return
    local.optimize(objective, n_trials=remaining + len(waiting), timeout=timeout, catch=(),
                   callbacks=[write_back, optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                              *callbacks])


def _optimize_budget(study: optuna.Study, storage: Any, objective: Callable, target: int, timeout: float | None,
                     callbacks: list[Callable], should_stop: Callable[[], bool] = lambda: False,
                     n_trials: int | None = None) -> None:
    """Run trials until the study holds ``target`` finished (complete + pruned) trials, never more.

    Every worker gets the same budget (see ``_BudgetRDBStorage``). When the budget is used up by trials other
    workers still run, this worker waits (polling every heartbeat interval) until they finish, or until the
    heartbeat marks them stale (FAIL + a WAITING retry that this worker then runs). It stops waiting when the
    study has not changed for max(60 s, 4 x grace period) (a slow live worker, or a foreign one without a
    heartbeat). Storages without a heartbeat cannot tell a dead worker from a slow one, so there it stops at once.
    ``n_trials``: at most this many trials in this process; ``timeout`` and ``should_stop`` end the loop between
    trials.
    """
    if hasattr(storage, "set_trial_budget"):
        storage.set_trial_budget(study._study_id, target)
    t_end = None if timeout is None else time.monotonic() + timeout
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    idle_limit = max(60.0, 4.0 * (getattr(storage, "grace_period", None) or 2 * (interval or 0)))
    ran = [0]
    seen, changed = None, time.monotonic()

    def _count(st: optuna.Study, tr) -> None:
        ran[0] += 1

    while not should_stop():
        c = trial_counts(study)
        if (snap := tuple(c.values())) != seen:
            seen, changed = snap, time.monotonic()
        left = target - c["complete"] - c["pruned"]
        quota = left if n_trials is None else min(left, n_trials - ran[0])
        t_left = None if t_end is None else t_end - time.monotonic()
        if quota <= 0 or (t_left is not None and t_left <= 0):
            return
        try:
            study.optimize(objective, n_trials=quota, timeout=t_left, catch=(), callbacks=[_count, *callbacks])
            return  # quota, timeout or stop(): nothing left for this process to do
        except _StudyFull:
            pass
        if interval is None or time.monotonic() - changed > idle_limit:
            return
        time.sleep(interval)
        optuna.storages.fail_stale_trials(study)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _sampler(spec: StudySpec, offset: int = 0):
    """The spec's sampler with seed ``spec seed + offset`` (unseeded when the spec's seed is None)."""
    seed = None if spec.sampler.seed is None else (spec.sampler.seed + offset) % 2**32
    return build_sampler(spec.sampler.name, seed, spec.sampler.options,
                         grid_search_space(spec) if spec.sampler.name == "grid" else None)


def open_study(spec: StudySpec, storage, data: StudyData, name: str | None = None, new_name: bool = False,
               extra_attrs: dict[str, Any] | None = None, seed_offset: int = 0) -> optuna.Study:
    """Create or resume the spec's study. A study of the same name made from a different spec is refused;
    with ``new_name`` the first ``NAME-k`` made from this spec is resumed, else a free ``NAME-k`` is created.

    A resumed study's sampler is seeded with ``seed + number of trials already stored (+ seed_offset)``: reusing
    the seed would re-draw the parameters of the study's first trials.
    """
    asked = name
    name = name or spec.run.study_name or spec.name
    pruner = build_pruner(spec.pruner.name, spec.pruner.options)
    directions = list(spec.objective.directions)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        st = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        old = st.user_attrs.get("spec_hash")
        if old is not None and old != spec.spec_hash:
            if not new_name:
                raise SpecError("study", f"study {name!r} was created from a different spec (hash {old}, this spec {spec.spec_hash}); "
                                         f"refusing to resume it. Use --name NEW or --new-name to start a new study")
            name = _next_free_name(name, existing, storage, spec.spec_hash)
            st = optuna.load_study(study_name=name, storage=storage, pruner=pruner) if name in existing else None
        if st is not None:
            fp = st.user_attrs.get("data_fingerprint")
            if fp is not None and fp != data.fingerprint:
                raise SpecError("data", f"study {name!r} was run on different data (fingerprint {fp}, now {data.fingerprint}); "
                                        "refusing to mix trials. Use --new-name")
            st.sampler = _sampler(spec, len(st.get_trials(deepcopy=False)) + seed_offset)
            return st
    try:
        st = optuna.create_study(study_name=name, storage=storage, sampler=_sampler(spec, seed_offset), pruner=pruner,
                                 directions=directions)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it since the listing above: join it
        return open_study(spec, storage, data, asked, new_name, extra_attrs, seed_offset)
    obj = TrialObjective(data).objective
    st.set_metric_names(obj.metric_names)
    d0, d1 = data.train_dates
    attrs = {
        "spec_hash": spec.spec_hash, "spec_text": spec.source, "spec_path": spec.path, "spec_name": spec.name,
        "data_fingerprint": data.fingerprint, "accumopt_version": __version__, "git_commit": git_commit(),
        "objective": spec.objective.name, "aggregate": spec.objective.aggregate,
        "train_start": d0, "train_end": d1, "symbols": len(data.panel.symbols),
        "folds": [[f.fold, str(data.panel.dates[f.test_start]), str(data.panel.dates[f.test_end - 1])] for f in data.folds],
        "purge": spec.purge(), "embargo": data.cv_embargo, "cv_n_splits": data.cv_n_splits,
        "span_lo": data.lo, "span_hi": data.hi, "regime": spec.data.regime, "n_trials_target": spec.run.n_trials,
    }
    attrs.update(extra_attrs or {})
    for k, v in attrs.items():
        st.set_user_attr(k, v)
    return st


def _next_free_name(name: str, existing, storage, spec_hash: str) -> str:
    """The first ``NAME-k`` (k >= 2) made from the spec ``spec_hash`` (resumed), else the first free one."""
    i = 2
    while f"{name}-{i}" in existing:
        if optuna.load_study(study_name=f"{name}-{i}", storage=storage).user_attrs.get("spec_hash") == spec_hash:
            return f"{name}-{i}"
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


def _worker(spec: StudySpec, storage_url: str | None, name: str, quota: int, data: StudyData, timeout: float | None,
            target: int, seed_offset: int) -> None:
    """One forked ``--jobs`` process: its own storage connection, sampler seed ``seed + seed_offset``."""
    storage = make_storage(storage_url)
    study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(spec, seed_offset),
                              pruner=build_pruner(spec.pruner.name, spec.pruner.options))
    _optimize_budget(study, storage, TrialObjective(data), target, timeout, n_trials=quota,
                     callbacks=[optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED))])


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
    worker: bool = False,
) -> StudyRunResult:
    """Create or resume the study and run it until it holds ``n_trials`` finished (complete + pruned) trials.

    ``worker``: this process joins a study other processes run (``study worker``); its sampler seed also mixes
    in the process id, so workers started together do not draw the same parameters (not reproducible).
    """
    t0 = time.perf_counter()
    if data is None:
        panel, reserve = load_study_data(spec, db)
        data = prepare_data(spec, panel, 0, reserve)
    storage_url = storage_url or spec.run.storage
    storage = make_storage(storage_url)
    if jobs > 1 and isinstance(storage, optuna.storages.InMemoryStorage):
        raise ParameterError(f"jobs must be 1 with an in-memory storage ({storage_url}): worker processes cannot see it, got jobs={jobs}")
    study = open_study(spec, storage, data, name=name, new_name=new_name, extra_attrs=extra_attrs,
                       seed_offset=1_000_003 * (os.getpid() % 997 + 1) if worker else 0)
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
        if remaining > 0 and jobs <= 1 and not worker and not isinstance(storage, optuna.storages.InMemoryStorage):
            _optimize_mirrored(
                study, storage, TrialObjective(data), target, timeout,
                callbacks=[prog, _stopper, *(callbacks or [])],
            )
        elif remaining > 0 and jobs <= 1:
            _optimize_budget(
                study, storage, TrialObjective(data), target, timeout, should_stop=lambda: stop_flag["stop"],
                callbacks=[prog, _stopper, optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                           *(callbacks or [])],
            )
        elif remaining > 0:
            import multiprocessing as mp

            data.evaluator.features.warm()  # shared copy-on-write by the forked workers
            ctx = mp.get_context("fork")
            quotas = [remaining // jobs + (1 if i < remaining % jobs else 0) for i in range(jobs)]
            n0 = len(study.get_trials(deepcopy=False))
            procs = [ctx.Process(target=_worker, args=(spec, storage_url, study.study_name, q, data, timeout, target,
                                                       n0 + 100_003 * (i + 1)))
                     for i, q in enumerate(quotas) if q > 0]
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

