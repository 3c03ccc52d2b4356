"""Optuna storages for the tool: SQLite in WAL mode, heartbeats, an exact trial budget shared by independent
workers, fewer commits per trial. Every override of Optuna's private storage code lives in this module."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from sqlalchemy import event

from optimizer.errors import AccumoptError, ParameterError
from optimizer.settings import DEFAULT_STORAGE

__all__ = ["make_storage", "StudyFull"]


def make_storage(url: str | None, heartbeat: bool = True,
                 grace_period: int | None = None) -> optuna.storages.BaseStorage:
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
        path = url[len("journal:"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _BudgetJournalStorage(JournalFileBackend(path), f"{path}.budget.lock")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path, timeout=60) as c:
                c.execute("PRAGMA journal_mode=WAL")
        st = _BudgetRDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}}, skip_compatibility_check=False, **hb
        )
        _sqlite_pragmas(st.engine)
        return st
    return _BudgetRDBStorage(_rdb_url(url), **hb)


def _sqlite_pragmas(engine: Any) -> None:
    """WAL + synchronous=NORMAL on every SQLite connection (an SQLAlchemy 'connect' listener).

    In WAL mode, NORMAL syncs the WAL at checkpoints instead of at every commit: a committed trial survives a crash
    or SIGKILL of the process (the WAL is in the OS page cache and is replayed on open); only a power loss can drop
    the last commits. The file stays an ordinary SQLite database for optuna-dashboard and ``optuna.load_study``.
    """

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


class StudyFull(Exception):
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
        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_intermediate_value_without_commit(session, trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id, key, value) -> None:
        with _create_scoped_session(self.scoped_session, True) as session:
            self._flush_params(session)
            self._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key, value)

    def _flush_pending(self) -> None:
        if self._pending:
            with _create_scoped_session(self.scoped_session, True) as session:
                self._flush_params(session)

    def set_trial_budget(self, study_id: int, budget: int | None) -> None:
        self._budgets[study_id] = budget

    def _get_prepared_new_trial(self, study_id, template_trial, session):
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if template_trial is None and self.heartbeat_interval is not None:
            session.add(models.TrialHeartbeatModel(trial_id=trial.trial_id))  # DB server time, like every beat
        budget = self._budgets.get(study_id)
        if template_trial is None and budget is not None:
            taken = (session.query(models.TrialModel)
                     .filter(models.TrialModel.study_id == study_id, models.TrialModel.state.in_(_SLOT_STATES))
                     .count())  # includes the trial being created
            if taken > budget:
                raise StudyFull(f"study id {study_id}: {taken - 1} trials already hold the budget of {budget}")
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
                    raise StudyFull(f"study id {study_id}: {taken} trials already hold the budget of {budget}")
                return super().create_new_trial(study_id)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
